//! The command line, and the [`Config`] it makes. With no subcommand the emulator serves (the
//! flags below); `completions` and `man` print what the flags are, from this definition.

use byok_cli_common::shell::{CompletionsArgs, ManArgs};
use clap::{Args, Parser, Subcommand, ValueEnum};
use kv_emulator::{Config, Flavor, Sku, ThrottleConfig, ThrottleLimits};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Serve the Key Vault keys API (with BYOK import) over HTTPS on this machine.
#[derive(Parser)]
#[command(
    name = "kv-emulator",
    version = byok_cli_common::version::LONG_VERSION,
    about,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

const LONG_ABOUT: &str = "Serve the Key Vault keys API (with BYOK import) over HTTPS on this \
machine, so a whole ceremony can be rehearsed with no Azure account. It makes a test CA, a \
server certificate and client credentials in --state-dir, writes STATE_DIR/connection.json \
(what `byok-online --emulator STATE_DIR` reads) and prints `listening on https://IP:PORT \
(vault URL)` when it serves. The vault URL is https://NAME.vault.azure.net:PORT (see \
--vault-name), which no DNS resolves: clients connect to IP:PORT for it (connection.json's \
vault_address), so the SDKs' challenge-resource verification stays on. \
It is not an HSM: keys are held in the clear in a SQLite database, in memory, or with \
--persist in STATE_DIR/state.db.";

const AFTER_HELP: &str = "Example:\n  kv-emulator --state-dir ./emu --listen 127.0.0.1:8443 &\n  \
byok-online --emulator ./emu kek create --name KEKforBYOK\n\n\
Exit status: 0 after a clean stop (SIGINT or SIGTERM); 1 when it cannot start or serve (the \
state directory, TLS material, the address); 2 for a usage error or settings that cannot work.";

#[derive(Subcommand)]
pub enum Command {
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(CompletionsArgs),
    /// Print the man page on stdout, or write kv-emulator.1 into --dir.
    Man(ManArgs),
}

/// The serving flags (no subcommand).
#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (IP:PORT). Port 0 picks a free one, except with --persist and
    /// keys from an earlier run: then the earlier run's IP:PORT, which their key ids name
    /// (another explicit address is refused unless --public-url is given).
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Directory for the test CA (ca.pem), the server certificate, the client credentials,
    /// connection.json and (with --persist) state.db; made if missing, reused if present.
    /// One emulator at a time serves a directory with --persist.
    #[arg(long, value_name = "DIR", required = true)]
    state_dir: Option<PathBuf>,
    /// Which service to play: a Key Vault (RSA and EC keys) or a Managed HSM (also AES keys).
    #[arg(long, value_enum, default_value_t = FlavorArg::Vault)]
    flavor: FlavorArg,
    /// Keep keys in STATE_DIR/state.db (SQLite, WAL, one row per key version), each change
    /// on disk before its response (concurrent changes share a commit), across restarts
    /// (which then come back at the same URL: see --listen). A state.json from an older
    /// kv-emulator is imported once and kept as state.json.imported. Without it, keys are
    /// in an in-memory database, gone at exit.
    #[arg(long)]
    persist: bool,
    /// Lifetime of issued access tokens, in seconds (a short one tests clients' token
    /// renewal).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 3600,
        allow_negative_numbers = true
    )]
    token_lifetime: i64,
    /// SoftHSM rehearsals only: accept an RSA/EC BYOK plaintext followed by 1-7 zero bytes
    /// (SoftHSM 2.6.1's 0x210A); Azure refuses them. Every other defect is refused even so.
    #[arg(long)]
    accept_zero_padded_kwp: bool,
    /// Testing aid: answer every authenticated data-plane request with this HTTP status, 400
    /// to 599 (429 adds Retry-After: 1).
    #[arg(long, value_name = "STATUS")]
    fault_status: Option<u16>,
    /// The URL clients reach the emulator by when it sits behind a proxy (https://host:port);
    /// key ids and the token authority use it instead of https://IP:PORT of --listen.
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// With --public-url: the IP:PORT clients resolve its host to (connection.json's
    /// vault_address); without it, clients resolve the host by DNS.
    #[arg(long, value_name = "IP:PORT", requires = "public_url")]
    public_address: Option<SocketAddr>,
    /// The vault's name: it is served as https://NAME.vault.azure.net:PORT (with --flavor
    /// managedhsm, https://NAME.managedhsm.azure.net:PORT), which key ids name.
    #[arg(long, value_name = "NAME", default_value = kv_emulator::DEFAULT_VAULT_NAME)]
    vault_name: String,
    /// Fidelity: a deletion (and a recovery) keeps running this long after its 200, as on
    /// Key Vault (20 s to 2 minutes): GET /deletedkeys/NAME answers 404 and a re-create 409
    /// meanwhile. 0 is at once, as on Managed HSM.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    delete_delay: u64,
    /// Fidelity: throttle as the service does: `azure` (the published limits: a vault, per
    /// 10 s, 10 HSM-key or 20 software-key creates, and ONE weighted budget of 2,000 RSA 2048
    /// HSM-key or 4,000 software-key transactions, RSA 3072 costing 4 and RSA 4096 8 times as
    /// much; a Managed HSM, per second, 1 create, 10 deletes, 10 purges, 1,100 reads), or
    /// `create=N,other=M` for HSM keys (software keys cost half). 429s carry no Retry-After.
    #[arg(long, value_name = "azure|create=N,other=M")]
    throttle: Option<ThrottleLimits>,
    /// The window --throttle's limits are per, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    throttle_window_ms: u64,
    /// The vault's tier: a standard vault refuses HSM keys (RSA-HSM, EC-HSM). Ignored with
    /// --flavor managedhsm.
    #[arg(long, value_enum, default_value_t = SkuArg::Premium)]
    sku: SkuArg,
    /// Fidelity: answer RSA keys' public exponent as "AAEAAQ" (65537 in four bytes, a leading
    /// zero kept), as vaults did for keys made in 2020-2022, instead of today's "AQAB".
    #[arg(long)]
    legacy_rsa_exponent: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum SkuArg {
    /// Software keys only.
    Standard,
    /// Software and HSM keys.
    Premium,
}

impl From<SkuArg> for Sku {
    fn from(arg: SkuArg) -> Self {
        match arg {
            SkuArg::Standard => Sku::Standard,
            SkuArg::Premium => Sku::Premium,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum FlavorArg {
    /// https://vault.azure.net: RSA and EC keys.
    Vault,
    /// https://managedhsm.azure.net: RSA, EC and AES (oct-HSM) keys.
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

impl ServeArgs {
    /// The configuration; `None` without `--state-dir`, which clap requires when there is no
    /// subcommand (so only a caller that skipped clap sees it).
    pub fn config(self) -> Option<Config> {
        Some(Config {
            listen: self.listen,
            state_dir: self.state_dir?,
            flavor: self.flavor.into(),
            persist: self.persist,
            token_lifetime_secs: self.token_lifetime,
            accept_zero_padded_kwp: self.accept_zero_padded_kwp,
            fault_status: self.fault_status,
            public_url: self.public_url,
            vault_name: self.vault_name,
            public_address: self.public_address,
            delete_delay_ms: self.delete_delay,
            throttle: self.throttle.map(|limits| ThrottleConfig {
                limits,
                window_ms: self.throttle_window_ms,
            }),
            sku: self.sku.into(),
            legacy_rsa_exponent: self.legacy_rsa_exponent,
            clock: kv_emulator::Clock::system(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kv-emulator").chain(args.iter().copied()))
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serving_needs_a_state_dir_and_subcommands_do_not() {
        let err = parse(&[]).err().unwrap();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let cli = parse(&["--state-dir", "d", "--persist"]).unwrap();
        assert!(cli.command.is_none());
        let config = cli.serve.config().unwrap();
        assert!(config.persist);
        assert_eq!(config.state_dir, PathBuf::from("d"));
        let cli = parse(&["completions", "bash"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Completions(_))));
        let cli = parse(&["man", "--dir", "out"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Man(_))));
        // Serving flags with a subcommand are a mistake, not something to ignore.
        assert!(parse(&["--state-dir", "d", "man"]).is_err());
    }

    #[test]
    fn every_flag_is_described() {
        let cmd = Cli::command();
        for arg in cmd.get_arguments() {
            assert!(arg.get_help().is_some(), "--{} has no help", arg.get_id());
        }
    }
}
