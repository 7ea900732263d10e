//! The command line: clap's types, and their conversion into the library's options. What clap
//! cannot check alone (`--kty` for a key to generate, `--label` for `--generate`) is checked
//! here, as a usage error (exit 2).

use byok_cli_common::{GlobalFlags, KindFlags};
use byok_core::KeyOp;
use byok_core::target::KeyKind;
use byok_offline::batch::BatchOptions;
use byok_offline::check::Overrides;
use byok_offline::commands::{
    self, CheckOptions, Connection, GenerateOptions, KekSource, PackageOptions,
};
use byok_offline::keys::GenerateSpec;
use byok_offline::pin::{DEFAULT_PIN_ENV, PinSource};
use byok_offline::token::TokenSelector;
use byok_offline::wrap_path::WrapChoice;
use byok_offline::{OfflineError, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Generate a key inside your HSM and wrap it for Azure Key Vault BYOK, on a workstation with
/// no network. PINs come from an environment variable, a file or a prompt, never arguments.
#[derive(Parser)]
#[command(name = "byok-offline", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub global: GlobalFlags,
    #[command(subcommand)]
    pub command: Command,
}

/// Which module and token, and where the PIN comes from.
#[derive(Args)]
pub struct ConnectionArgs {
    /// The HSM vendor's PKCS#11 library (SoftHSM: /usr/lib/softhsm/libsofthsm2.so).
    #[arg(long, env = "PKCS11_MODULE", global = true)]
    module: Option<PathBuf>,
    /// The module's init string, passed in C_Initialize's pReserved (NSS softokn:
    /// "configdir='sql:DIR' certPrefix='' keyPrefix='' secmod='secmod.db' flags=").
    #[arg(long, env = "PKCS11_INIT_ARGS", global = true, hide_env_values = true)]
    init_args: Option<String>,
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
}

#[derive(Subcommand)]
pub enum Command {
    /// List slots and tokens, with each token's verdict on BYOK.
    Tokens,
    /// Prove the token's wrap of each key kind on throwaway keys (session objects, destroyed
    /// after): generated in the token, and for RSA/EC also imported encoding edge cases (an EC
    /// scalar whose top byte is zero, ...), before a ceremony; needs the user PIN. Exits 0
    /// whatever the verdicts.
    Check(CheckArgs),
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

#[derive(Args)]
pub struct CheckArgs {
    /// One kind only (with --size / --curve); default: every kind Key Vault imports.
    #[command(flatten)]
    kind: KindFlags,
    /// Throwaway keys generated per kind (default: 20 per EC curve, 4 for RSA 2048 and AES, 2
    /// for RSA 3072 and 4096); the edge cases are imported besides, whatever this says.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    tries: Option<u32>,
    /// auto: native CKM_RSA_AES_KEY_WRAP when offered, else two-step.
    #[arg(long, value_enum, default_value_t = WrapArg::Auto)]
    wrap_mechanism: WrapArg,
}

/// The overrides of a kind `check` refuses; rehearsals only.
#[derive(Args, Clone, Copy)]
pub struct OverrideArgs {
    /// Package RSA/EC keys through a 0x210A that zero-pads before RFC 5649 (SoftHSM 2.6.1),
    /// which leaves trailing zero bytes Azure may refuse; for rehearsals only.
    #[arg(long)]
    allow_zero_padded_kwp: bool,
    /// Package a kind `byok-offline check` finds non-conformant or not supported, with a
    /// warning; for rehearsals only.
    #[arg(long)]
    allow_nonconformant: bool,
}

impl From<OverrideArgs> for Overrides {
    fn from(a: OverrideArgs) -> Self {
        Overrides {
            zero_padded_kwp: a.allow_zero_padded_kwp,
            nonconformant: a.allow_nonconformant,
        }
    }
}

#[derive(Args, Clone)]
pub struct KeySpecArgs {
    #[command(flatten)]
    kind: KindFlags,
    /// Key operations to allow in the HSM, comma- or space-separated (sign, verify, encrypt,
    /// decrypt, wrapKey, unwrapKey; default: all the key type supports).
    #[arg(long)]
    ops: Option<String>,
    /// Where to write the public key PEM (default: <label>.public.pem).
    #[arg(long)]
    public_key_out: Option<PathBuf>,
}

#[derive(Args)]
pub struct GenerateArgs {
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
pub struct PackageArgs {
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
    #[command(flatten)]
    overrides: OverrideArgs,
}

#[derive(Args)]
pub struct BatchArgs {
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
    /// auto: native CKM_RSA_AES_KEY_WRAP when offered, else two-step.
    #[arg(long, value_enum, default_value_t = WrapArg::Auto)]
    wrap_mechanism: WrapArg,
    #[command(flatten)]
    overrides: OverrideArgs,
}

#[derive(Subcommand)]
pub enum LogCommand {
    /// Check the hash chain of an evidence log.
    Verify { file: PathBuf },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum WrapArg {
    Auto,
    Native,
    TwoStep,
}

impl From<WrapArg> for WrapChoice {
    fn from(arg: WrapArg) -> Self {
        match arg {
            WrapArg::Auto => WrapChoice::Auto,
            WrapArg::Native => WrapChoice::Native,
            WrapArg::TwoStep => WrapChoice::TwoStep,
        }
    }
}

impl From<ConnectionArgs> for Connection {
    fn from(a: ConnectionArgs) -> Self {
        Connection {
            module: a.module,
            init_args: a.init_args,
            token: match (a.token, a.slot) {
                (Some(label), _) => TokenSelector::Label(label),
                (None, Some(slot)) => TokenSelector::Slot(slot),
                (None, None) => TokenSelector::Only,
            },
            pin: match a.pin_file {
                Some(path) => PinSource::File(path),
                None => PinSource::Env(a.pin_env),
            },
        }
    }
}

impl KeySpecArgs {
    /// The key to generate, labelled `label`: `--kty` is required, the size or curve and the
    /// operations default to what the key type takes.
    fn generate_options(self, label: String, id: Option<&str>) -> Result<GenerateOptions> {
        let kty = self.kind.kty.ok_or_else(|| {
            OfflineError::Usage("--kty is required to generate a key (RSA, EC or oct)".into())
        })?;
        let kind = KeyKind::from_parts(&kty, self.kind.size, self.kind.curve.as_deref())
            .map_err(OfflineError::KindFlags)?;
        let ops = match self.ops {
            Some(list) => KeyOp::parse_list(&[list])?,
            None => KeyOp::defaults(kind.kty()).to_vec(),
        };
        Ok(GenerateOptions {
            spec: GenerateSpec {
                kind,
                label,
                id: commands::parse_id(id)?.unwrap_or_default(),
                ops,
            },
            public_key_out: self.public_key_out,
        })
    }
}

impl TryFrom<CheckArgs> for CheckOptions {
    type Error = OfflineError;

    /// No kind flag: every importable kind; else the one kind the flags name.
    fn try_from(a: CheckArgs) -> Result<Self> {
        let k = &a.kind;
        let kinds = match &k.kty {
            None if k.size.is_none() && k.curve.is_none() => KeyKind::IMPORTABLE.to_vec(),
            None => {
                return Err(OfflineError::Usage(
                    "--size and --curve need --kty (RSA, EC or oct)".into(),
                ));
            }
            Some(kty) => vec![
                KeyKind::from_parts(kty, k.size, k.curve.as_deref())
                    .map_err(OfflineError::KindFlags)?,
            ],
        };
        Ok(CheckOptions {
            kinds,
            tries: a.tries.map(|n| n as usize),
            wrap: a.wrap_mechanism.into(),
        })
    }
}

impl TryFrom<GenerateArgs> for GenerateOptions {
    type Error = OfflineError;

    fn try_from(a: GenerateArgs) -> Result<Self> {
        a.spec.generate_options(a.label, a.id.as_deref())
    }
}

impl TryFrom<PackageArgs> for PackageOptions {
    type Error = OfflineError;

    fn try_from(a: PackageArgs) -> Result<Self> {
        let generate = if a.generate {
            let label = a.label.clone().ok_or_else(|| {
                OfflineError::Usage("--generate needs --label for the new key".into())
            })?;
            Some(a.spec.generate_options(label, a.id.as_deref())?)
        } else {
            None
        };
        let kek = match (a.kek, a.kek_pem, a.kid) {
            (Some(path), _, _) => KekSource::TransferFile(path),
            (None, Some(pem), Some(kid)) => KekSource::PemAndKid { pem, kid },
            _ => {
                return Err(OfflineError::Usage(
                    "give the KEK with --kek TRANSFER_FILE, or --kek-pem PEM with --kid KID".into(),
                ));
            }
        };
        Ok(PackageOptions {
            kek,
            label: a.label,
            id_hex: a.id,
            generate,
            out: a.out,
            wrap: a.wrap_mechanism.into(),
            overrides: a.overrides.into(),
        })
    }
}

impl From<BatchArgs> for BatchOptions {
    fn from(a: BatchArgs) -> Self {
        BatchOptions {
            manifest: a.manifest,
            kek: KekSource::TransferFile(a.kek),
            out_dir: a.out,
            jobs: a.jobs,
            wrap: a.wrap_mechanism.into(),
            overrides: a.overrides.into(),
            log: a.log,
            operator: a.operator,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("byok-offline").chain(args.iter().copied())).unwrap()
    }

    fn generate_options(args: &[&str]) -> Result<GenerateOptions> {
        match parse(args).command {
            Command::Generate(a) => a.try_into(),
            _ => unreachable!("a generate command"),
        }
    }

    #[test]
    fn generate_reads_kinds_and_ops_with_their_defaults() {
        let o = generate_options(&["generate", "--label", "k", "--kty", "rsa"]).unwrap();
        assert_eq!(o.spec.kind, KeyKind::Rsa { bits: 3072 });
        assert_eq!(o.spec.ops, KeyOp::defaults(byok_core::target::Kty::Rsa));
        for ops in ["sign,verify", "sign verify"] {
            let o = generate_options(&["generate", "--label", "k", "--kty", "EC", "--ops", ops])
                .unwrap();
            assert_eq!(o.spec.ops, [KeyOp::Sign, KeyOp::Verify]);
        }
        let err = generate_options(&["generate", "--label", "k"]).unwrap_err();
        assert!(matches!(err, OfflineError::Usage(_)), "{err}");
        let err = generate_options(&["generate", "--label", "k", "--kty", "EC", "--ops", "sing"])
            .unwrap_err();
        assert!(matches!(err, OfflineError::Ops(_)), "{err}");
    }

    fn check_options(args: &[&str]) -> Result<CheckOptions> {
        match parse(args).command {
            Command::Check(a) => a.try_into(),
            _ => unreachable!("a check command"),
        }
    }

    #[test]
    fn check_takes_every_kind_or_the_one_named() {
        let all = check_options(&["check"]).unwrap();
        assert_eq!(all.kinds, KeyKind::IMPORTABLE);
        assert_eq!(all.tries, None);
        let one =
            check_options(&["check", "--kty", "EC", "--curve", "P-521", "--tries", "3"]).unwrap();
        assert_eq!(
            one.kinds,
            [KeyKind::Ec {
                curve: byok_core::target::Curve::P521
            }]
        );
        assert_eq!(one.tries, Some(3));
        let err = check_options(&["check", "--curve", "P-384"]).unwrap_err();
        assert!(matches!(err, OfflineError::Usage(_)), "{err}");
        assert!(Cli::try_parse_from(["byok-offline", "check", "--tries", "0"]).is_err());
    }

    #[test]
    fn init_args_come_from_the_flag_or_the_environment() {
        let cli = parse(&["--init-args", "configdir='sql:/x'", "tokens"]);
        assert_eq!(
            Connection::from(cli.connection).init_args.as_deref(),
            Some("configdir='sql:/x'")
        );
    }
}
