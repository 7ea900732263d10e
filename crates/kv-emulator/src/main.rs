//! `kv-emulator`: a local Key Vault data-plane emulator over HTTPS. This file only reads the
//! command line ([`cli`]), then prints completions or man pages, or starts the library's
//! server and stops it on SIGINT or SIGTERM.
//!
//! Exit status: 0 after a clean stop; 1 when the emulator cannot start or serve (the state
//! directory, TLS material, listen address); 2 for settings no machine could make work (and
//! clap's own usage errors).

mod cli;

use clap::{CommandFactory, Parser};
use std::process::ExitCode;
use tokio::signal::unix::{SignalKind, signal};

const USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        Some(cli::Command::Completions(args)) => {
            done(args.run(cli::Cli::command()), "the completion script")
        }
        Some(cli::Command::Man(args)) => done(args.run(cli::Cli::command()), "the man page"),
        None => match cli.serve.config() {
            Some(config) => serve(config),
            // clap requires --state-dir when there is no subcommand; this is a second guard.
            None => fail(
                "--state-dir DIR is required to serve; see kv-emulator --help",
                ExitCode::from(USAGE),
            ),
        },
    }
}

/// The exit status of `completions` or `man`.
fn done<T>(result: std::io::Result<T>, what: &str) -> ExitCode {
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(
            format!("cannot write {what} ({e}); check the output or the --dir"),
            ExitCode::FAILURE,
        ),
    }
}

/// Serves until SIGINT or SIGTERM. The runtime starts only here: `completions` and `man`
/// need none.
#[tokio::main]
async fn serve(config: kv_emulator::Config) -> ExitCode {
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
    // Scripts wait for this line: where it listens, then the vault URL clients use.
    println!(
        "listening on {} (vault {})",
        kv_emulator::url_of(running.addr),
        running.connection.vault_url
    );
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
