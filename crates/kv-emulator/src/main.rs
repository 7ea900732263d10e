//! `kv-emulator`: a local Key Vault data-plane emulator over HTTPS. This file only parses
//! arguments, starts the library's server, and waits for SIGINT or SIGTERM.

use clap::{Parser, ValueEnum};
use kv_emulator::{Config, Flavor};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Serve the Key Vault keys API (with BYOK import) over HTTPS on this machine.
#[derive(Parser)]
#[command(name = "kv-emulator", version, about)]
struct Cli {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Directory for the CA, the connection file, secrets and (with --persist) the keys.
    #[arg(long)]
    state_dir: PathBuf,
    /// Which service to play.
    #[arg(long, value_enum, default_value_t = FlavorArg::Vault)]
    flavor: FlavorArg,
    /// Keep keys in STATE_DIR/state.json, durable before each response.
    #[arg(long)]
    persist: bool,
    /// Lifetime of issued access tokens, in seconds.
    #[arg(long, default_value_t = 3600, allow_negative_numbers = true)]
    token_lifetime: i64,
    /// Accept a BYOK plaintext followed by 1-7 zero bytes (SoftHSM 2.6.1's 0x210A); Azure may not.
    #[arg(long)]
    accept_zero_padded_kwp: bool,
    /// Testing aid: answer every authenticated data-plane request with this HTTP status (429 adds Retry-After: 1).
    #[arg(long)]
    fault_status: Option<u16>,
    /// The URL clients reach the emulator by when it sits behind a proxy (key ids use it).
    #[arg(long)]
    public_url: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum FlavorArg {
    Vault,
    Managedhsm,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let config = Config {
        listen: cli.listen,
        state_dir: cli.state_dir,
        flavor: match cli.flavor {
            FlavorArg::Vault => Flavor::Vault,
            FlavorArg::Managedhsm => Flavor::ManagedHsm,
        },
        persist: cli.persist,
        token_lifetime_secs: cli.token_lifetime,
        accept_zero_padded_kwp: cli.accept_zero_padded_kwp,
        fault_status: cli.fault_status,
        public_url: cli.public_url,
    };
    let running = match kv_emulator::start(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Scripts wait for this line.
    println!("listening on {}", running.connection.vault_url);
    let handle = running.handle();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        handle.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
    });
    match running.wait().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
