//! The command line: clap's types, and their conversion into the library's options.

use byok_cli_common::{GlobalFlags, KindFlags};
use byok_core::KeyOp;
use byok_online::OnlineError;
use byok_online::batch::BatchImportOptions;
use byok_online::commands::KekFormat;
use byok_online::connect::{AuthMode, ConnectOptions};
use byok_online::import::ImportOptions;
use byok_online::vault::AesGcm;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Create the Key Exchange Key, carry it to the HSM as a file, import the .byok it returns, and
/// prove the vault holds the HSM's key.
#[derive(Parser)]
#[command(name = "byok-online", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub vault: VaultArgs,
    #[command(flatten)]
    pub global: GlobalFlags,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args)]
pub struct VaultArgs {
    /// Key Vault name (https://NAME.vault.azure.net).
    #[arg(long, global = true, env = "AZURE_KEYVAULT_NAME")]
    vault_name: Option<String>,
    /// Managed HSM name (https://NAME.managedhsm.azure.net).
    #[arg(long, global = true, env = "AZURE_MANAGEDHSM_NAME")]
    hsm_name: Option<String>,
    /// Vault URL (sovereign clouds, an emulator).
    #[arg(long, global = true, env = "BYOK_VAULT_URL")]
    vault_url: Option<String>,
    /// Use a kv-emulator: reads STATE_DIR/connection.json for URL, CA and credentials.
    #[arg(long, global = true)]
    emulator: Option<PathBuf>,
    /// An extra CA certificate (PEM) to trust.
    #[arg(long, global = true)]
    ca_cert: Option<PathBuf>,
    /// Credential: auto tries the environment's client secret, workload identity, managed identity, then az/azd.
    #[arg(long, global = true, value_enum)]
    auth: Option<AuthArg>,
    /// Entra ID authority host (sovereign clouds, an emulator).
    #[arg(long, global = true, env = "AZURE_AUTHORITY_HOST")]
    authority_host: Option<String>,
    /// Accept a challenge whose resource is not a parent domain of the vault host (a vault on an IP address).
    #[arg(long, global = true)]
    no_verify_challenge_resource: bool,
    /// Key Vault REST API version.
    #[arg(long, global = true)]
    api_version: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum AuthArg {
    Auto,
    Cli,
    ManagedIdentity,
    ClientSecret,
    WorkloadIdentity,
}

#[derive(Subcommand)]
pub enum Command {
    /// The Key Exchange Key.
    Kek {
        #[command(subcommand)]
        command: KekCommand,
    },
    /// Upload a .byok (PUT /keys/NAME with key_hsm) after checking it and its KEK.
    Import(ImportArgs),
    /// Prove the vault holds the key: public keys equal, and a vault signature verifies locally.
    Verify {
        #[arg(long)]
        name: String,
        #[arg(long)]
        version: Option<String>,
        /// The public key the HSM reported (PEM).
        #[arg(long)]
        public_key: PathBuf,
    },
    /// For an AES key: have the vault encrypt a random value (AES-256-GCM) and write the
    /// challenge file that `byok-offline prove-aes` decrypts in the HSM.
    ProveAes {
        #[arg(long)]
        name: String,
        #[arg(long)]
        version: Option<String>,
        /// The AES key's size in bits: the vault encrypts with the AES-GCM of that size.
        #[arg(long, default_value_t = 256, value_parser = aes_bits)]
        size: u32,
        /// The challenge file to carry to the HSM side.
        #[arg(long)]
        out: PathBuf,
    },
    /// Import and verify every key of a manifest from a directory of packages (resumable).
    BatchImport(BatchImportArgs),
    /// Show a key's properties.
    Show {
        #[arg(long)]
        name: String,
        #[arg(long)]
        version: Option<String>,
    },
    /// Validate a .byok and show its header (no network).
    Inspect { file: PathBuf },
}

#[derive(Subcommand)]
pub enum KekCommand {
    /// Create an RSA-HSM KEK whose only key operation is import.
    Create {
        #[arg(long, default_value = "KEKforBYOK")]
        name: String,
        #[arg(long, default_value_t = 4096)]
        size: u32,
        /// Also write the KEK transfer file here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write the KEK transfer file (kid + public key + fingerprint) for the offline side.
    Download {
        #[arg(long, default_value = "KEKforBYOK")]
        name: String,
        #[arg(long)]
        version: Option<String>,
        #[arg(long)]
        out: PathBuf,
        /// transfer (default), or the public key alone as pem or der.
        #[arg(long, value_enum, default_value_t = FormatArg::Transfer)]
        format: FormatArg,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Transfer,
    Pem,
    Der,
}

#[derive(Args)]
pub struct ImportArgs {
    /// Name of the key to create in the vault.
    #[arg(long)]
    name: String,
    /// The .byok file from byok-offline.
    #[arg(long)]
    byok_file: PathBuf,
    /// The sidecar (default: <byok-file>.sidecar.json when present).
    #[arg(long)]
    sidecar: Option<PathBuf>,
    /// What the package holds, when there is no sidecar (with a sidecar, they must agree).
    #[command(flatten)]
    kind: KindFlags,
    /// Key operations, comma- or space-separated (default: all the key type allows).
    #[arg(long, num_args = 1..)]
    ops: Option<Vec<String>>,
    /// Tags, k=v (repeatable).
    #[arg(long = "tags", value_parser = parse_tag)]
    tags: Vec<(String, String)>,
    /// Import the key disabled.
    #[arg(long)]
    disabled: bool,
    /// RFC 3339 time before which the key cannot be used.
    #[arg(long)]
    not_before: Option<String>,
    /// RFC 3339 expiry.
    #[arg(long)]
    expires: Option<String>,
    /// Mark the key exportable (needs --release-policy).
    #[arg(long, requires = "release_policy")]
    exportable: bool,
    /// Release policy JSON file.
    #[arg(long)]
    release_policy: Option<PathBuf>,
    /// The expected public key (PEM), instead of the sidecar's.
    #[arg(long)]
    expect_public_key: Option<PathBuf>,
}

#[derive(Args)]
pub struct BatchImportArgs {
    /// The manifest (TOML) the offline batch used.
    #[arg(long)]
    manifest: PathBuf,
    /// The directory with the .byok files and sidecars.
    #[arg(long)]
    dir: PathBuf,
    /// Imports at once.
    #[arg(long, default_value_t = 4)]
    jobs: usize,
    /// The evidence log (default: DIR/ceremony-log.jsonl).
    #[arg(long)]
    log: Option<PathBuf>,
    /// The JSON report (default: DIR/import-report.json).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Who runs the ceremony, for the evidence log (default: $USER).
    #[arg(long)]
    operator: Option<String>,
}

fn aes_bits(s: &str) -> Result<u32, String> {
    s.parse::<u32>()
        .ok()
        .filter(|b| AesGcm::for_bits(*b).is_some())
        .ok_or_else(|| format!("`{s}`: an AES key is 128, 192 or 256 bits"))
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("`{s}` is not a tag: use key=value"))
}

impl From<AuthArg> for AuthMode {
    fn from(a: AuthArg) -> Self {
        match a {
            AuthArg::Auto => AuthMode::Auto,
            AuthArg::Cli => AuthMode::Cli,
            AuthArg::ManagedIdentity => AuthMode::ManagedIdentity,
            AuthArg::ClientSecret => AuthMode::ClientSecret,
            AuthArg::WorkloadIdentity => AuthMode::WorkloadIdentity,
        }
    }
}

impl From<FormatArg> for KekFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Transfer => KekFormat::Transfer,
            FormatArg::Pem => KekFormat::Pem,
            FormatArg::Der => KekFormat::Der,
        }
    }
}

impl From<VaultArgs> for ConnectOptions {
    fn from(v: VaultArgs) -> Self {
        ConnectOptions {
            vault_name: v.vault_name,
            hsm_name: v.hsm_name,
            vault_url: v.vault_url,
            emulator: v.emulator,
            ca_cert: v.ca_cert,
            auth: v.auth.map(AuthMode::from),
            authority_host: v.authority_host,
            no_verify_challenge_resource: v.no_verify_challenge_resource,
            api_version: v.api_version,
        }
    }
}

impl TryFrom<ImportArgs> for ImportOptions {
    type Error = OnlineError;
    /// Fails when --ops names something that is not a key operation.
    fn try_from(a: ImportArgs) -> Result<Self, OnlineError> {
        Ok(ImportOptions {
            ops: a.ops.as_deref().map(KeyOp::parse_list).transpose()?,
            name: a.name,
            byok_file: a.byok_file,
            sidecar: a.sidecar,
            kty: a.kind.kty,
            size: a.kind.size,
            curve: a.kind.curve,
            tags: a.tags,
            disabled: a.disabled,
            not_before: a.not_before,
            expires: a.expires,
            exportable: a.exportable,
            release_policy: a.release_policy,
            expect_public_key: a.expect_public_key,
        })
    }
}

impl From<BatchImportArgs> for BatchImportOptions {
    fn from(a: BatchImportArgs) -> Self {
        BatchImportOptions {
            manifest: a.manifest,
            dir: a.dir,
            jobs: a.jobs,
            log: a.log,
            report: a.report,
            operator: a.operator,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prove_aes_takes_the_three_aes_sizes() {
        for bits in [128, 192, 256] {
            assert_eq!(aes_bits(&bits.to_string()), Ok(bits));
        }
        assert!(aes_bits("512").unwrap_err().contains("128, 192 or 256"));
        let cli = Cli::try_parse_from(["byok-online", "prove-aes", "--name", "k", "--out", "c"]);
        assert!(matches!(
            cli.unwrap().command,
            Command::ProveAes { size: 256, .. }
        ));
    }

    fn import_ops(args: &[&str]) -> Option<Vec<KeyOp>> {
        let mut argv = vec![
            "byok-online",
            "import",
            "--name",
            "k",
            "--byok-file",
            "k.byok",
        ];
        argv.extend_from_slice(args);
        let Command::Import(a) = Cli::try_parse_from(argv).unwrap().command else {
            unreachable!("an import command line")
        };
        ImportOptions::try_from(a).unwrap().ops
    }

    #[test]
    fn ops_read_in_the_forms_az_and_this_tool_use() {
        let want = Some(vec![KeyOp::Sign, KeyOp::Verify]);
        assert_eq!(import_ops(&["--ops", "sign,verify"]), want);
        assert_eq!(import_ops(&["--ops", "sign", "verify"]), want);
        assert_eq!(import_ops(&["--ops", "sign verify"]), want);
        assert_eq!(import_ops(&[]), None);
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn tags_need_a_key() {
        assert_eq!(parse_tag("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_tag("=x").is_err());
        assert!(parse_tag("novalue").is_err());
    }
}
