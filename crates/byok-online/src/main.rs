//! `byok-online`: the connected half of a BYOK ceremony. This file only parses arguments,
//! calls the library, and prints.

use byok_online::commands::{self, ImportOptions, KekFormat};
use byok_online::connect::{AuthMode, ConnectOptions};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

/// Create the Key Exchange Key, carry it to the HSM as a file, import the .byok it returns, and
/// prove the vault holds the HSM's key.
#[derive(Parser)]
#[command(name = "byok-online", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    vault: VaultArgs,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Human)]
    output: Output,
    /// More diagnostics on stderr (-v, -vv, -vvv); RUST_LOG overrides. Never shows a secret or token.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct VaultArgs {
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
enum AuthArg {
    Auto,
    Cli,
    ManagedIdentity,
    ClientSecret,
    WorkloadIdentity,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
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
        /// The challenge file to carry to the HSM side.
        #[arg(long)]
        out: PathBuf,
    },
    /// Import and verify every key of a manifest from a directory of packages (resumable).
    BatchImport {
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
    },
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
enum KekCommand {
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
enum FormatArg {
    Transfer,
    Pem,
    Der,
}

#[derive(Args)]
struct ImportArgs {
    /// Name of the key to create in the vault.
    #[arg(long)]
    name: String,
    /// The .byok file from byok-offline.
    #[arg(long)]
    byok_file: PathBuf,
    /// The sidecar (default: <byok-file>.sidecar.json when present).
    #[arg(long)]
    sidecar: Option<PathBuf>,
    /// Key type when there is no sidecar: RSA, EC or oct.
    #[arg(long)]
    kty: Option<String>,
    /// Key size when there is no sidecar.
    #[arg(long)]
    size: Option<u32>,
    /// EC curve when there is no sidecar: P-256, P-384, P-521, P-256K.
    #[arg(long)]
    curve: Option<String>,
    /// Key operations, comma-separated (default: all the key type allows).
    #[arg(long, value_delimiter = ',')]
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

fn parse_tag(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("`{s}` is not a tag: use key=value"))
}

fn print<T: Serialize>(json: bool, value: &T, human: impl FnOnce(&T)) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("reports serialize")
        );
    } else {
        human(value);
    }
}

fn print_key(k: &byok_online::vault::KeyView) {
    println!("kid:        {}", k.kid);
    println!(
        "kty:        {}{}",
        k.kty,
        k.kind
            .as_ref()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default()
    );
    println!("key_ops:    {}", k.key_ops.join(", "));
    println!(
        "enabled:    {}",
        k.enabled.map_or("-".into(), |e| e.to_string())
    );
    if let Some(c) = &k.created {
        println!("created:    {c}");
    }
    if let Some(f) = &k.public_key_sha256 {
        println!("public key sha256: {f}");
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .init();
    let json = cli.output == Output::Json;
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if json {
                println!("{}", serde_json::json!({ "error": e.to_string() }));
            }
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> byok_online::Result<()> {
    let json = cli.output == Output::Json;
    let v = cli.vault;
    let conn = ConnectOptions {
        vault_name: v.vault_name,
        hsm_name: v.hsm_name,
        vault_url: v.vault_url,
        emulator: v.emulator,
        ca_cert: v.ca_cert,
        auth: v.auth.map(|a| match a {
            AuthArg::Auto => AuthMode::Auto,
            AuthArg::Cli => AuthMode::Cli,
            AuthArg::ManagedIdentity => AuthMode::ManagedIdentity,
            AuthArg::ClientSecret => AuthMode::ClientSecret,
            AuthArg::WorkloadIdentity => AuthMode::WorkloadIdentity,
        }),
        authority_host: v.authority_host,
        no_verify_challenge_resource: v.no_verify_challenge_resource,
        api_version: v.api_version,
    };
    match cli.command {
        Command::Kek { command } => {
            let report = match command {
                KekCommand::Create { name, size, out } => {
                    commands::kek_create(&conn, &name, size, out.as_deref()).await?
                }
                KekCommand::Download {
                    name,
                    version,
                    out,
                    format,
                } => {
                    let format = match format {
                        FormatArg::Transfer => KekFormat::Transfer,
                        FormatArg::Pem => KekFormat::Pem,
                        FormatArg::Der => KekFormat::Der,
                    };
                    commands::kek_download(&conn, &name, version.as_deref(), &out, format).await?
                }
            };
            print(json, &report, |r| {
                println!("KEK kid:    {}", r.kid);
                println!("size:       {} bits", r.key_size);
                println!("sha256:     {}", r.sha256);
                if let Some(p) = &r.written {
                    println!(
                        "wrote:      {} ({})",
                        p.display(),
                        r.format.as_deref().unwrap_or_default()
                    );
                }
            });
        }
        Command::Import(a) => {
            let opts = ImportOptions {
                name: a.name,
                byok_file: a.byok_file,
                sidecar: a.sidecar,
                kty: a.kty,
                size: a.size,
                curve: a.curve,
                ops: a.ops,
                tags: a.tags,
                disabled: a.disabled,
                not_before: a.not_before,
                expires: a.expires,
                exportable: a.exportable,
                release_policy: a.release_policy,
                expect_public_key: a.expect_public_key,
            };
            let report = commands::import(&conn, &opts).await?;
            print(json, &report, |r| {
                println!("imported with KEK {}", r.kek_kid);
                print_key(&r.key);
                println!("public key check: {}", r.public_key_check);
            });
        }
        Command::Verify {
            name,
            version,
            public_key,
        } => {
            let report = commands::verify(&conn, &name, version.as_deref(), &public_key).await?;
            print(json, &report, |r| {
                println!(
                    "verified {}: public keys equal (sha256 {}), {} signature made in the vault verifies locally",
                    r.kid, r.public_key_sha256, r.algorithm
                );
            });
        }
        Command::ProveAes { name, version, out } => {
            let r = commands::prove_aes(&conn, &name, version.as_deref(), &out).await?;
            print(json, &r, |r| {
                println!(
                    "the vault encrypted a random value with {}; challenge written to {}",
                    r.kid,
                    r.challenge.display()
                );
                println!(
                    "carry it to the HSM side: byok-offline prove-aes --label <key> --challenge {}",
                    r.challenge.display()
                );
            });
        }
        Command::BatchImport {
            manifest,
            dir,
            jobs,
            log,
            report,
            operator,
        } => {
            struct Lines {
                bar: Option<indicatif::ProgressBar>,
                total: usize,
                done: std::sync::atomic::AtomicUsize,
            }
            impl byok_online::batch::Progress for Lines {
                fn done(&self, o: &byok_online::batch::KeyOutcome) {
                    let n = self.done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    let line = format!(
                        "[{n:>3}/{}] {}: {} ({}) {:.2} s{}",
                        self.total,
                        o.name,
                        o.outcome,
                        o.verification,
                        o.seconds,
                        o.error
                            .as_ref()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    );
                    match &self.bar {
                        Some(bar) => {
                            bar.inc(1);
                            bar.set_message(line);
                        }
                        None => eprintln!("{line}"),
                    }
                }
            }
            let total = std::fs::read_to_string(&manifest)
                .ok()
                .and_then(|t| byok_core::manifest::parse(&t).ok())
                .map_or(0, |k| k.len());
            let bar =
                (std::io::IsTerminal::is_terminal(&std::io::stderr()) && total > 0).then(|| {
                    let bar = indicatif::ProgressBar::new(total as u64);
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{bar:40} {pos}/{len} {elapsed} {msg}",
                        )
                        .expect("a valid template"),
                    );
                    bar
                });
            let progress = Lines {
                bar,
                total,
                done: Default::default(),
            };
            let opts = byok_online::batch::BatchImportOptions {
                manifest,
                dir,
                jobs,
                log,
                report,
                operator,
            };
            let result = byok_online::batch::run(&conn, &opts, &progress).await;
            if let Some(bar) = &progress.bar {
                bar.finish_and_clear();
            }
            let r = result?;
            print(json, &r, |r| {
                println!(
                    "batch-import: {} imported, {} already imported, {} failed, in {:.1} s; report {}, evidence log {}",
                    r.imported,
                    r.already_imported,
                    r.failed,
                    r.seconds,
                    r.report.display(),
                    r.log.display()
                );
            });
            if r.failed > 0 {
                return Err(byok_online::OnlineError::Mismatch(format!(
                    "{} of {} keys failed; see {} and run batch-import again once fixed (it skips the keys already imported)",
                    r.failed,
                    r.keys.len(),
                    r.report.display()
                )));
            }
        }
        Command::Show { name, version } => {
            let key = commands::show(&conn, &name, version.as_deref()).await?;
            print(json, &key, print_key);
        }
        Command::Inspect { file } => {
            let r = commands::inspect(&file)?;
            print(json, &r, |r| {
                println!(
                    "a valid .byok for KEK {} version {} in {}",
                    r.kek_name, r.kek_version, r.vault
                );
                println!(
                    "ciphertext: {} bytes (fits a {:?}-bit KEK)",
                    r.ciphertext_bytes, r.fits_kek_bits
                );
                println!("generator:  {}", r.generator);
                println!("sha256:     {}", r.sha256);
            });
        }
    }
    Ok(())
}
