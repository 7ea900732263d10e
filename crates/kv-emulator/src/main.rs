//! `kv-emulator`: a local Key Vault data-plane emulator over HTTPS. This file only reads the
//! command line ([`cli`]), starts the library's server, and stops it on SIGINT or SIGTERM.
//!
//! Exit status: 0 after a clean stop; 1 when the emulator cannot start or serve (the state
//! directory, TLS material, listen address); 2 for settings no machine could make work (and
//! clap's own usage errors).

mod cli;

use clap::Parser;
use std::process::ExitCode;
use tokio::signal::unix::{SignalKind, signal};

const USAGE: u8 = 2;

#[tokio::main]
async fn main() -> ExitCode {
    let config = kv_emulator::Config::from(cli::Cli::parse());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => return fail(format!("cannot watch for SIGTERM ({e})"), ExitCode::FAILURE),
    };
    let running = match kv_emulator::start(config).await {
        Ok(running) => running,
        Err(e) if e.is_usage() => return fail(e, ExitCode::from(USAGE)),
        Err(e) => return fail(e, ExitCode::FAILURE),
    };
    // Scripts wait for this line.
    println!("listening on {}", running.connection.vault_url);
    let handle = running.handle();
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        handle.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
    });
    match running.wait().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(
            format!("the server stopped ({e}); start kv-emulator again"),
            ExitCode::FAILURE,
        ),
    }
}

fn fail(message: impl std::fmt::Display, code: ExitCode) -> ExitCode {
    eprintln!("error: {message}");
    code
}
