//! `byok-offline`: the air-gapped half of a BYOK ceremony. This file only parses arguments,
//! calls the library, and prints.

use byok_offline::commands::{self, Connection, GenerateOptions, KekSource, PackageOptions};
use byok_offline::pin::{DEFAULT_PIN_ENV, PinSource};
use byok_offline::token::TokenSelector;
use byok_offline::wrap_path::WrapChoice;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

/// Generate a key inside your HSM and wrap it for Azure Key Vault BYOK, on a workstation with
/// no network. PINs come from an environment variable, a file or a prompt, never arguments.
#[derive(Parser)]
#[command(name = "byok-offline", version, about, long_about = None)]
struct Cli {
    /// The HSM vendor's PKCS#11 library (SoftHSM: /usr/lib/softhsm/libsofthsm2.so).
    #[arg(long, env = "PKCS11_MODULE", global = true)]
    module: Option<PathBuf>,
    /// The token, by label.
    #[arg(long, global = true, conflicts_with = "slot")]
    token: Option<String>,
    /// The token, by slot id.
    #[arg(long, global = true)]
    slot: Option<u64>,
    /// Environment variable holding the user PIN; if unset, prompt on a terminal.
    #[arg(long, global = true, default_value = DEFAULT_PIN_ENV)]
    pin_env: String,
    /// File whose first line is the user PIN (instead of --pin-env).
    #[arg(long, global = true)]
    pin_file: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Human)]
    output: Output,
    /// More diagnostics on stderr (-v, -vv, -vvv); RUST_LOG overrides. Never shows a PIN or key.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

/// Diagnostics go to stderr; `-v` raises the level unless RUST_LOG says otherwise.
fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// List slots and tokens, with each token's verdict on BYOK.
    Tokens,
    /// List key objects on the token.
    Keys,
    /// Generate the target key inside the token.
    Generate(GenerateArgs),
    /// Wrap a target key under the KEK and write the .byok and its sidecar.
    Package(PackageArgs),
    /// Decrypt `byok-online prove-aes`'s challenge with the HSM's AES key: proves the vault holds it.
    ProveAes {
        /// The AES key's label.
        #[arg(long)]
        label: String,
        /// The challenge file from the online side.
        #[arg(long)]
        challenge: PathBuf,
    },
    /// Generate and package every key of a manifest (resumable; --jobs sessions at once).
    Batch(BatchArgs),
    /// The ceremony's evidence log.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Validate a .byok and show its header, without any key.
    Inspect {
        /// The .byok file.
        file: PathBuf,
    },
}

#[derive(Args, Clone)]
struct KeySpecArgs {
    /// Key type: RSA, EC or oct (AES; Managed HSM only).
    #[arg(long)]
    kty: Option<String>,
    /// RSA: 2048, 3072 (default) or 4096; oct: 128, 192 or 256 (default).
    #[arg(long)]
    size: Option<u32>,
    /// EC curve: P-256 (default), P-384, P-521 or P-256K.
    #[arg(long)]
    curve: Option<String>,
    /// Key operations to allow in the HSM, comma-separated (sign,verify,encrypt,decrypt,wrapKey,unwrapKey).
    #[arg(long)]
    ops: Option<String>,
    /// Where to write the public key PEM (default: <label>.public.pem).
    #[arg(long)]
    public_key_out: Option<PathBuf>,
}

#[derive(Args)]
struct GenerateArgs {
    /// Label of the new key (must not be in use).
    #[arg(long)]
    label: String,
    /// CKA_ID in hex (default: 16 random bytes).
    #[arg(long)]
    id: Option<String>,
    #[command(flatten)]
    spec: KeySpecArgs,
}

#[derive(Args)]
struct PackageArgs {
    /// The KEK transfer file from `byok-online kek download`.
    #[arg(long, required_unless_present = "kek_pem", conflicts_with_all = ["kek_pem", "kid"])]
    kek: Option<PathBuf>,
    /// The KEK public key as PEM (with --kid), instead of a transfer file.
    #[arg(long, requires = "kid")]
    kek_pem: Option<PathBuf>,
    /// The KEK's full, versioned key id (with --kek-pem).
    #[arg(long, requires = "kek_pem")]
    kid: Option<String>,
    /// The target key's label.
    #[arg(long, required_unless_present = "id")]
    label: Option<String>,
    /// The target key's CKA_ID in hex.
    #[arg(long)]
    id: Option<String>,
    /// Generate the target first (with --kty and friends) and package it.
    #[arg(long)]
    generate: bool,
    #[command(flatten)]
    spec: KeySpecArgs,
    /// Output file (default: KeyTransferPackage-<label>.byok); never overwritten.
    #[arg(long)]
    out: Option<PathBuf>,
    /// auto: native CKM_RSA_AES_KEY_WRAP when offered, else two-step.
    #[arg(long, value_enum, default_value_t = WrapArg::Auto)]
    wrap_mechanism: WrapArg,
    /// Accept a 0x210A that zero-pads before RFC 5649 (SoftHSM 2.6.1); for rehearsals only.
    #[arg(long)]
    allow_zero_padded_kwp: bool,
}

#[derive(Args)]
struct BatchArgs {
    /// The manifest (TOML) naming the keys.
    #[arg(long)]
    manifest: PathBuf,
    /// The KEK transfer file from `byok-online kek download`.
    #[arg(long)]
    kek: PathBuf,
    /// Directory for the .byok files, sidecars and public keys.
    #[arg(long)]
    out: PathBuf,
    /// PKCS#11 sessions at once.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// The evidence log (default: OUT/ceremony-log.jsonl).
    #[arg(long)]
    log: Option<PathBuf>,
    /// Who runs the ceremony, for the evidence log (default: $USER).
    #[arg(long)]
    operator: Option<String>,
    #[arg(long, value_enum, default_value_t = WrapArg::Auto)]
    wrap_mechanism: WrapArg,
    /// Accept a 0x210A that zero-pads before RFC 5649 (SoftHSM 2.6.1); for rehearsals only.
    #[arg(long)]
    allow_zero_padded_kwp: bool,
}

#[derive(Subcommand)]
enum LogCommand {
    /// Check the hash chain of an evidence log.
    Verify { file: PathBuf },
}

/// Progress: a bar on a terminal, plain lines otherwise.
struct BatchProgress {
    bar: Option<indicatif::ProgressBar>,
    total: usize,
    done: std::sync::atomic::AtomicUsize,
}

impl byok_offline::batch::Progress for BatchProgress {
    fn done(&self, r: &byok_offline::batch::EntryReport) {
        let n = self.done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let line = format!(
            "[{n:>3}/{}] {}: {}{} ({:.2} s)",
            self.total,
            r.name,
            r.outcome,
            if r.generated {
                format!(", generated {}", r.kind)
            } else {
                String::new()
            },
            r.seconds
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

#[derive(Clone, Copy, ValueEnum)]
enum WrapArg {
    Auto,
    Native,
    TwoStep,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let json = cli.output == Output::Json;
    match run(cli) {
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

fn generate_options(
    label: String,
    id: Option<String>,
    spec: KeySpecArgs,
) -> Result<GenerateOptions, byok_offline::OfflineError> {
    Ok(GenerateOptions {
        kty: spec.kty.ok_or_else(|| {
            byok_offline::OfflineError::Usage(
                "--kty is required to generate a key (RSA, EC or oct)".into(),
            )
        })?,
        size: spec.size,
        curve: spec.curve,
        label,
        id_hex: id,
        ops: spec.ops,
        public_key_out: spec.public_key_out,
    })
}

fn run(cli: Cli) -> Result<(), byok_offline::OfflineError> {
    let json = cli.output == Output::Json;
    let conn = Connection {
        module: cli.module,
        token: match (cli.token, cli.slot) {
            (Some(label), _) => TokenSelector::Label(label),
            (None, Some(slot)) => TokenSelector::Slot(slot),
            (None, None) => TokenSelector::Only,
        },
        pin: match cli.pin_file {
            Some(path) => PinSource::File(path),
            None => PinSource::Env(cli.pin_env),
        },
    };
    match cli.command {
        Command::Tokens => {
            let tokens = commands::tokens(&conn)?;
            print(json, &tokens, |tokens| {
                for t in tokens {
                    let i = &t.identity;
                    println!(
                        "slot {}: `{}` {} {} serial {} firmware {}",
                        i.slot, i.label, i.manufacturer, i.model, i.serial, i.firmware
                    );
                    println!("  BYOK: {}", t.byok);
                }
            });
        }
        Command::Keys => {
            let keys = commands::list_keys(&conn)?;
            print(json, &keys, |keys| {
                for k in keys {
                    let flag = |v: Option<bool>| v.map_or("-", |b| if b { "yes" } else { "no" });
                    println!(
                        "{:<24} id {:<34} {:<12} {:<16} extractable {:<3} sensitive {}",
                        k.label,
                        k.id,
                        k.class,
                        k.kind,
                        flag(k.extractable),
                        flag(k.sensitive)
                    );
                }
            });
        }
        Command::Generate(args) => {
            let opts = generate_options(args.label, args.id, args.spec)?;
            let report = commands::generate(&conn, &opts)?;
            print(json, &report, |r| {
                println!(
                    "generated {} `{}` (id {}) on token `{}`",
                    r.kind, r.label, r.id, r.token
                );
                if let (Some(p), Some(f)) = (&r.public_key, &r.public_key_sha256) {
                    println!("public key: {} (sha256 {f})", p.display());
                }
            });
        }
        Command::Package(args) => {
            let generate = if args.generate {
                let label = args.label.clone().ok_or_else(|| {
                    byok_offline::OfflineError::Usage(
                        "--generate needs --label for the new key".into(),
                    )
                })?;
                Some(generate_options(label, args.id.clone(), args.spec)?)
            } else {
                None
            };
            let opts = PackageOptions {
                kek: match (args.kek, args.kek_pem, args.kid) {
                    (Some(path), _, _) => KekSource::TransferFile(path),
                    (None, Some(pem), Some(kid)) => KekSource::PemAndKid { pem, kid },
                    _ => {
                        return Err(byok_offline::OfflineError::Usage(
                            "give the KEK with --kek TRANSFER_FILE, or --kek-pem PEM with --kid KID".into(),
                        ));
                    }
                },
                label: args.label,
                id_hex: args.id,
                generate,
                out: args.out,
                wrap: match args.wrap_mechanism {
                    WrapArg::Auto => WrapChoice::Auto,
                    WrapArg::Native => WrapChoice::Native,
                    WrapArg::TwoStep => WrapChoice::TwoStep,
                },
                allow_zero_padded_kwp: args.allow_zero_padded_kwp,
            };
            let (generated, report) = commands::package(&conn, &opts)?;
            #[derive(Serialize)]
            struct Both {
                generated: Option<commands::GenerateReport>,
                package: byok_offline::package::PackageReport,
            }
            print(
                json,
                &Both {
                    generated,
                    package: report,
                },
                |b| {
                    if let Some(g) = &b.generated {
                        println!("generated {} `{}` (id {})", g.kind, g.label, g.id);
                        if let Some(p) = &g.public_key {
                            println!("public key: {}", p.display());
                        }
                    }
                    let r = &b.package;
                    println!("KEK:        {} (sha256 {})", r.kek_kid, r.kek_sha256);
                    println!("wrap path:  {}", r.wrap_path);
                    println!(
                        "target:     {} `{}` (id {})",
                        r.target_kind, r.target_label, r.target_id
                    );
                    if let Some(f) = &r.target_public_key_sha256 {
                        println!("public key sha256: {f}");
                    }
                    println!(
                        "wrote:      {} (sha256 {})",
                        r.byok.display(),
                        r.byok_sha256
                    );
                    println!("            {}", r.sidecar.display());
                },
            );
        }
        Command::ProveAes { label, challenge } => {
            let report = commands::prove_aes(&conn, &label, &challenge)?;
            print(json, &report, |r| {
                println!(
                    "the HSM key `{}` decrypts the vault's challenge from {}: the vault holds the same AES key",
                    r.label, r.vault_kid
                );
            });
        }
        Command::Batch(a) => {
            let total = std::fs::read_to_string(&a.manifest)
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
            let progress = BatchProgress {
                bar,
                total,
                done: Default::default(),
            };
            let opts = byok_offline::batch::BatchOptions {
                manifest: a.manifest,
                kek: KekSource::TransferFile(a.kek),
                out_dir: a.out,
                jobs: a.jobs,
                wrap: match a.wrap_mechanism {
                    WrapArg::Auto => WrapChoice::Auto,
                    WrapArg::Native => WrapChoice::Native,
                    WrapArg::TwoStep => WrapChoice::TwoStep,
                },
                allow_zero_padded_kwp: a.allow_zero_padded_kwp,
                log: a.log,
                operator: a.operator,
            };
            let report = byok_offline::batch::run(&conn, &opts, &progress);
            if let Some(bar) = &progress.bar {
                bar.finish_and_clear();
            }
            let report = report?;
            print(json, &report, |r| {
                println!(
                    "batch: {} packaged ({} generated), {} already done, in {:.1} s; evidence log {}",
                    r.packaged,
                    r.generated,
                    r.skipped,
                    r.seconds,
                    r.log.display()
                );
            });
        }
        Command::Log {
            command: LogCommand::Verify { file },
        } => {
            let text =
                std::fs::read_to_string(&file).map_err(|e| byok_offline::OfflineError::Read {
                    path: file.clone(),
                    reason: e.to_string(),
                })?;
            let entries = byok_core::evidence::verify(&text).map_err(|e| {
                byok_offline::OfflineError::BadResult(format!("{}: {e}", file.display()))
            })?;
            #[derive(Serialize)]
            struct Verified {
                file: PathBuf,
                entries: usize,
                chain_intact: bool,
            }
            print(
                json,
                &Verified {
                    file: file.clone(),
                    entries,
                    chain_intact: true,
                },
                |v| {
                    println!(
                        "{}: {} entries, the hash chain is intact",
                        v.file.display(),
                        v.entries
                    );
                },
            );
        }
        Command::Inspect { file } => {
            let report = commands::inspect(&file)?;
            print(json, &report, |report| {
                let r = &report.summary;
                println!(
                    "{}: a valid .byok (schema {} alg {} enc {})",
                    report.file.display(),
                    r.schema_version,
                    r.alg,
                    r.enc
                );
                println!("vault:      {}", r.vault);
                println!("KEK:        {} version {}", r.kek_name, r.kek_version);
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
