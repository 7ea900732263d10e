//! The command line: clap's types, and their conversion into the library's options.
//!
//! The vault and credential flags are taken before the subcommand (`byok-online --vault-name
//! V show ...`, as before) and after it (`byok-online show --vault-name V ...`), the latter
//! winning; only the commands that reach a vault take them, so `inspect --help`, `minutes`,
//! `completions` and `man` do not list them. Their environment fallbacks are read by
//! `ConnectOptions`, only when no flag names the vault, so they never compete with a flag.

use byok_cli_common::flags::{LogFlags, VAULT_HEADING};
use byok_cli_common::minutes::MinutesArgs;
use byok_cli_common::shell::{CompletionsArgs, ManArgs};
use byok_cli_common::{GlobalFlags, KindFlags};
use byok_core::KeyOp;
use byok_online::OnlineError;
use byok_online::batch::BatchImportOptions;
use byok_online::commands::KekFormat;
use byok_online::connect::{AuthMode, ConnectOptions, EmulatorIdentity};
use byok_online::existing::{OnExisting, WriteOptions};
use byok_online::import::ImportOptions;
use byok_online::vault::AesGcm;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// Create the Key Exchange Key, carry it to the HSM as a file, import the .byok it returns, and
/// prove the vault holds the HSM's key.
#[derive(Parser)]
#[command(
    name = "byok-online",
    version = byok_cli_common::version::LONG_VERSION,
    about,
    long_about = None
)]
pub struct Cli {
    #[command(flatten)]
    pub vault: VaultArgs,
    #[command(flatten)]
    pub global: GlobalFlags,
    #[command(subcommand)]
    pub command: Command,
}

/// Which vault, and how to authenticate to it.
#[derive(Args, Clone, Default)]
#[command(next_help_heading = VAULT_HEADING)]
pub struct VaultArgs {
    /// Key Vault name: https://NAME.vault.azure.net [env: AZURE_KEYVAULT_NAME]
    #[arg(long, value_name = "NAME")]
    vault_name: Option<String>,
    /// Managed HSM name: https://NAME.managedhsm.azure.net [env: AZURE_MANAGEDHSM_NAME]
    #[arg(long, value_name = "NAME")]
    hsm_name: Option<String>,
    /// Vault URL, for sovereign clouds and emulators [env: BYOK_VAULT_URL]
    #[arg(long, value_name = "URL")]
    vault_url: Option<String>,
    /// Use a kv-emulator: reads STATE_DIR/connection.json for the URL (and the address its
    /// host resolves to), the CA and the credentials (--auth picks another credential).
    #[arg(long, value_name = "STATE_DIR")]
    emulator: Option<PathBuf>,
    /// Testing aid: with --emulator, authenticate as its reader client (no role on the
    /// vault) instead of its client.
    #[arg(long, value_enum, hide = true)]
    emulator_identity: Option<EmulatorIdentityArg>,
    /// An extra CA certificate (PEM) to trust.
    #[arg(long, value_name = "PEM")]
    ca_cert: Option<PathBuf>,
    /// Credential: auto tries the environment's client secret, workload identity, managed
    /// identity (only when the instance-metadata endpoint answers a 1 s probe), then az/azd,
    /// and keeps the first that gives a token; -v shows each step and its time.
    #[arg(long, value_enum)]
    auth: Option<AuthArg>,
    /// Entra ID authority host, for sovereign clouds and emulators [env: AZURE_AUTHORITY_HOST]
    #[arg(long, value_name = "URL")]
    authority_host: Option<String>,
    /// Testing aid: send managed identity's instance-metadata requests (auto's probe and the
    /// token requests) to http://HOST:PORT instead of http://169.254.169.254.
    #[arg(long, hide = true, value_name = "URL")]
    imds_endpoint: Option<String>,
    /// Key Vault REST API version (default: the SDK's).
    #[arg(long, value_name = "VERSION")]
    api_version: Option<String>,
    /// Testing aid: the vault's throttling window in ms (Azure's is 10000). batch-import
    /// paces to it, and every command's 429/5xx backoff (1, 2, 4, 8, 16 s at Azure's window)
    /// scales with it: tests shorten it, as kv-emulator's --throttle-window-ms.
    #[arg(long, hide = true, value_name = "MS")]
    pace_window_ms: Option<u64>,
}

impl VaultArgs {
    /// These flags (given after the subcommand), each falling back to `top`'s (given before).
    pub fn or(self, top: &VaultArgs) -> VaultArgs {
        let top = top.clone();
        VaultArgs {
            vault_name: self.vault_name.or(top.vault_name),
            hsm_name: self.hsm_name.or(top.hsm_name),
            vault_url: self.vault_url.or(top.vault_url),
            emulator: self.emulator.or(top.emulator),
            ca_cert: self.ca_cert.or(top.ca_cert),
            auth: self.auth.or(top.auth),
            authority_host: self.authority_host.or(top.authority_host),
            imds_endpoint: self.imds_endpoint.or(top.imds_endpoint),
            emulator_identity: self.emulator_identity.or(top.emulator_identity),
            api_version: self.api_version.or(top.api_version),
            pace_window_ms: self.pace_window_ms.or(top.pace_window_ms),
        }
    }
}

/// Which of a kv-emulator's clients to use.
#[derive(Clone, Copy, ValueEnum)]
pub enum EmulatorIdentityArg {
    /// connection.json's client_id: every right.
    Client,
    /// connection.json's reader_client_id: no role on the vault.
    Reader,
}

impl From<EmulatorIdentityArg> for EmulatorIdentity {
    fn from(a: EmulatorIdentityArg) -> Self {
        match a {
            EmulatorIdentityArg::Client => EmulatorIdentity::Client,
            EmulatorIdentityArg::Reader => EmulatorIdentity::Reader,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum AuthArg {
    /// The environment's client secret, workload identity, managed identity (when the
    /// instance-metadata endpoint answers a 1 s probe), then az/azd; the first that works is
    /// kept.
    Auto,
    /// az or azd, logged in.
    Cli,
    /// The managed identity of this machine (no probe; the SDK's full retries).
    ManagedIdentity,
    /// AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET.
    ClientSecret,
    /// Workload identity (AZURE_FEDERATED_TOKEN_FILE).
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
    Verify(VerifyArgs),
    /// For an AES key: have the vault encrypt a random value (AES-GCM) and write the
    /// challenge file that `byok-offline prove-aes` decrypts in the HSM.
    ProveAes(ProveAesArgs),
    /// Import and verify every key of a manifest from a directory of packages (resumable).
    BatchImport(BatchImportArgs),
    /// Show a key's properties.
    Show(ShowArgs),
    /// Render the ceremony's minutes from its evidence logs (this side's and the air-gapped
    /// side's): one document to print, sign and file; no network. Exit 3 when a log's chain
    /// is broken.
    Minutes(MinutesArgs),
    /// Validate a .byok and show its header (no network).
    Inspect(InspectArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Print the man page, or write one page per command into --dir.
    Man(ManArgs),
}

#[derive(Subcommand)]
pub enum KekCommand {
    /// Create an RSA-HSM KEK whose only key operation is import.
    Create(KekCreateArgs),
    /// Write the KEK transfer file (kid + public key + fingerprint) for the offline side.
    Download(KekDownloadArgs),
}

/// `--dry-run` and `--new-version`: the commands that write a key.
#[derive(Args, Clone, Copy)]
pub struct WriteFlags {
    /// Run every check, local and vault-side reads (does the name exist, the KEK and its
    /// policy), and report what would be done; write nothing, to the vault or to disk.
    #[arg(long)]
    pub dry_run: bool,
    /// When the key name already exists in the vault, add a new version to it. Without this
    /// an existing name is refused (kek create and import ask instead on a terminal).
    #[arg(long)]
    pub new_version: bool,
}

impl WriteFlags {
    /// The library's options; `may_ask` when a question on stderr can be answered (a
    /// terminal on stdin, not a dry run, not a batch).
    pub fn options(self, may_ask: bool) -> WriteOptions {
        let on_existing = if self.new_version {
            OnExisting::AddVersion
        } else if may_ask && !self.dry_run {
            OnExisting::Ask
        } else {
            OnExisting::Refuse
        };
        WriteOptions {
            dry_run: self.dry_run,
            on_existing,
        }
    }
}

#[derive(Args)]
pub struct KekCreateArgs {
    /// Name of the KEK in the vault.
    #[arg(short, long, default_value = "KEKforBYOK")]
    pub name: String,
    /// RSA key size in bits: 2048, 3072 or 4096.
    #[arg(long, default_value_t = 4096)]
    pub size: u32,
    /// Also write the KEK transfer file here.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub write: WriteFlags,
    #[command(flatten)]
    pub log: LogFlags,
    #[command(flatten)]
    pub vault: VaultArgs,
}

#[derive(Args)]
pub struct KekDownloadArgs {
    /// Name of the KEK in the vault.
    #[arg(short, long, default_value = "KEKforBYOK")]
    pub name: String,
    /// KEK version (default: the current one).
    #[arg(long)]
    pub version: Option<String>,
    /// The file to write (never overwritten).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// transfer (the file byok-offline reads), or the public key alone as pem or der.
    #[arg(long, value_enum, default_value_t = FormatArg::Transfer)]
    pub format: FormatArg,
    #[command(flatten)]
    pub log: LogFlags,
    #[command(flatten)]
    pub vault: VaultArgs,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum FormatArg {
    /// kid, public key and fingerprint: what byok-offline package --kek reads.
    Transfer,
    /// The SubjectPublicKeyInfo as PEM.
    Pem,
    /// The SubjectPublicKeyInfo as DER.
    Der,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// Name of the key in the vault.
    #[arg(short, long)]
    pub name: String,
    /// Key version (default: the current one).
    #[arg(long)]
    pub version: Option<String>,
    /// The public key the HSM reported (PEM).
    #[arg(long, value_name = "PEM")]
    pub public_key: PathBuf,
    #[command(flatten)]
    pub log: LogFlags,
    #[command(flatten)]
    pub vault: VaultArgs,
}

#[derive(Args)]
pub struct ProveAesArgs {
    /// Name of the AES key in the vault.
    #[arg(short, long)]
    pub name: String,
    /// Key version (default: the current one).
    #[arg(long)]
    pub version: Option<String>,
    /// The AES key's size in bits: the vault encrypts with the AES-GCM of that size.
    #[arg(long, default_value_t = 256, value_parser = aes_bits)]
    pub size: u32,
    /// The challenge file to carry to the HSM side.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub log: LogFlags,
    #[command(flatten)]
    pub vault: VaultArgs,
}

#[derive(Args)]
pub struct ShowArgs {
    /// Name of the key in the vault.
    #[arg(short, long)]
    pub name: String,
    /// Key version (default: the current one).
    #[arg(long)]
    pub version: Option<String>,
    #[command(flatten)]
    pub vault: VaultArgs,
}

#[derive(Args)]
pub struct InspectArgs {
    /// The .byok file.
    pub file: PathBuf,
}

#[derive(Args)]
pub struct ImportArgs {
    /// Name of the key to create in the vault (or to add a version to, with --new-version).
    #[arg(short, long)]
    name: String,
    /// The .byok file from byok-offline.
    #[arg(long, value_name = "FILE")]
    byok_file: PathBuf,
    /// The sidecar (default: <byok-file>.sidecar.json when present).
    #[arg(long, value_name = "FILE")]
    sidecar: Option<PathBuf>,
    /// What the package holds, when there is no sidecar (with a sidecar, they must agree).
    #[command(flatten)]
    kind: KindFlags,
    /// Key operations, comma- or space-separated (default: all the key type allows).
    #[arg(long, num_args = 1..)]
    ops: Option<Vec<String>>,
    /// Tags, k=v (repeatable); byok-sha256=<SHA-256 of the .byok> is always added.
    #[arg(long = "tags", value_parser = parse_tag, value_name = "KEY=VALUE")]
    tags: Vec<(String, String)>,
    /// Import the key disabled.
    #[arg(long)]
    disabled: bool,
    /// RFC 3339 time before which the key cannot be used.
    #[arg(long, value_name = "TIME")]
    not_before: Option<String>,
    /// RFC 3339 expiry.
    #[arg(long, value_name = "TIME")]
    expires: Option<String>,
    /// Mark the key exportable (needs --release-policy).
    #[arg(long, requires = "release_policy")]
    exportable: bool,
    /// Release policy JSON file.
    #[arg(long, value_name = "FILE")]
    release_policy: Option<PathBuf>,
    /// The expected public key (PEM), instead of the sidecar's.
    #[arg(long, value_name = "PEM")]
    expect_public_key: Option<PathBuf>,
    #[command(flatten)]
    pub write: WriteFlags,
    #[command(flatten)]
    pub log: LogFlags,
    #[command(flatten)]
    pub vault: VaultArgs,
}

#[derive(Args)]
pub struct BatchImportArgs {
    /// The manifest (TOML) the offline batch used.
    #[arg(long, value_name = "FILE")]
    manifest: PathBuf,
    /// The directory with the .byok files and sidecars.
    #[arg(long)]
    dir: PathBuf,
    /// Imports at once.
    #[arg(long, default_value_t = 4)]
    jobs: usize,
    /// The evidence log (default: DIR/ceremony-log.jsonl).
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// The JSON report (default: DIR/import-report.json).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Who runs the ceremony, for the evidence log (default: $USER).
    #[arg(long, value_name = "NAME")]
    operator: Option<String>,
    #[command(flatten)]
    pub write: WriteFlags,
    #[command(flatten)]
    pub vault: VaultArgs,
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
            imds_endpoint: v.imds_endpoint,
            emulator_identity: v
                .emulator_identity
                .map(EmulatorIdentity::from)
                .unwrap_or_default(),
            api_version: v.api_version,
            window: v.pace_window_ms.map(|ms| Duration::from_millis(ms.max(1))),
            pace: None,
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
            kind: a.kind,
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
    /// A batch never asks: it runs unattended, several imports at once.
    fn from(a: BatchImportArgs) -> Self {
        BatchImportOptions {
            manifest: a.manifest,
            dir: a.dir,
            jobs: a.jobs,
            log: a.log,
            report: a.report,
            operator: a.operator,
            write: a.write.options(false),
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
            Command::ProveAes(ProveAesArgs { size: 256, .. })
        ));
    }

    fn show_vault(argv: &[&str]) -> ConnectOptions {
        let cli = Cli::try_parse_from(argv).unwrap();
        let Command::Show(a) = cli.command else {
            unreachable!("a show command line")
        };
        assert_eq!(a.name, "k");
        a.vault.or(&cli.vault).into()
    }

    #[test]
    fn vault_flags_go_before_or_after_the_subcommand_and_after_wins() {
        let before = show_vault(&["byok-online", "--vault-name", "a", "show", "-n", "k"]);
        assert_eq!(before.vault_name.as_deref(), Some("a"));
        let after = show_vault(&["byok-online", "show", "--vault-name", "b", "--name", "k"]);
        assert_eq!(after.vault_name.as_deref(), Some("b"));
        let both = show_vault(&[
            "byok-online",
            "--vault-name",
            "a",
            "--auth",
            "cli",
            "show",
            "-n",
            "k",
            "--vault-name",
            "b",
        ]);
        assert_eq!(both.vault_name.as_deref(), Some("b"));
        assert_eq!(both.auth, Some(AuthMode::Cli));
    }

    /// Every argument of every command, with the command's path.
    fn all_args(cmd: &clap::Command, path: String, out: &mut Vec<(String, clap::Arg)>) {
        for a in cmd.get_arguments() {
            out.push((path.clone(), a.clone()));
        }
        for sub in cmd.get_subcommands() {
            all_args(sub, format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_flag_has_help_and_local_commands_take_no_vault_flags() {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        cmd.build();
        let mut args = Vec::new();
        all_args(&cmd, "byok-online".into(), &mut args);
        for (path, arg) in &args {
            assert!(
                arg.get_help().is_some(),
                "{path}: --{} has no help",
                arg.get_id()
            );
        }
        for local in ["inspect", "minutes", "completions", "man"] {
            let sub = cmd.find_subcommand(local).unwrap();
            assert!(
                sub.get_arguments().all(|a| a.get_id() != "vault_name"),
                "{local} takes vault flags"
            );
        }
        let show = cmd.find_subcommand("show").unwrap();
        let vault_name = show
            .get_arguments()
            .find(|a| a.get_id() == "vault_name")
            .unwrap();
        assert_eq!(vault_name.get_help_heading(), Some(VAULT_HEADING));
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
