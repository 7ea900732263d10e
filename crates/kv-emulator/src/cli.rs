//! The command line, and the [`Config`] it makes.

use clap::{Parser, ValueEnum};
use kv_emulator::{Config, Flavor};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Serve the Key Vault keys API (with BYOK import) over HTTPS on this machine.
#[derive(Parser)]
#[command(name = "kv-emulator", version, about)]
pub struct Cli {
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
    /// SoftHSM rehearsals only: accept an RSA/EC BYOK plaintext followed by 1-7 zero bytes (SoftHSM 2.6.1's 0x210A); Azure refuses them. Every other defect is refused even so.
    #[arg(long)]
    accept_zero_padded_kwp: bool,
    /// Testing aid: answer every authenticated data-plane request with this HTTP status, 400 to 599 (429 adds Retry-After: 1).
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

impl From<FlavorArg> for Flavor {
    fn from(arg: FlavorArg) -> Self {
        match arg {
            FlavorArg::Vault => Flavor::Vault,
            FlavorArg::Managedhsm => Flavor::ManagedHsm,
        }
    }
}

impl From<Cli> for Config {
    fn from(cli: Cli) -> Self {
        Config {
            listen: cli.listen,
            state_dir: cli.state_dir,
            flavor: cli.flavor.into(),
            persist: cli.persist,
            token_lifetime_secs: cli.token_lifetime,
            accept_zero_padded_kwp: cli.accept_zero_padded_kwp,
            fault_status: cli.fault_status,
            public_url: cli.public_url,
        }
    }
}
