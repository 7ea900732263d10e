//! The command line: clap's types, and their conversion into the library's options. What clap
//! cannot check alone (`--kty` for a key to generate, `--label` for `--generate`) is checked
//! here, as a usage error (exit 2).
//!
//! The module, token and PIN flags are taken before the subcommand (`byok-offline --token X
//! keys`, as the README shows) and after it (`byok-offline keys --token X`); the
//! subcommand's win. They are not `global`, so the commands that never touch a token
//! (`inspect`, `log verify`, `minutes`, `completions`, `man`) do not list them.

use byok_cli_common::flags::{LogFlags, TOKEN_HEADING};
use byok_cli_common::minutes::MinutesArgs;
use byok_cli_common::shell::{CompletionsArgs, ManArgs};
use byok_cli_common::version::LONG_VERSION;
use byok_cli_common::{GlobalFlags, KindFlags};
use byok_core::KeyOp;
use byok_core::target::KeyKind;
use byok_offline::batch::BatchOptions;
use byok_offline::check::Overrides;
use byok_offline::check::reuse::ReuseArgs;
use byok_offline::commands::{
    self, CheckOptions, Connection, GenerateOptions, KekSource, KindExpectation, PackageOptions,
};
use byok_offline::keys::GenerateSpec;
use byok_offline::pin::{DEFAULT_PIN_ENV, PinSource};
use byok_offline::token::TokenSelector;
use byok_offline::{OfflineError, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

mod choices;

pub use choices::{LookupArg, WrapArg};

/// The variable `--module` defaults to.
const MODULE_ENV: &str = "PKCS11_MODULE";
/// The variable `--init-args` defaults to.
const INIT_ARGS_ENV: &str = "PKCS11_INIT_ARGS";

/// Generate a key inside your HSM and wrap it for Azure Key Vault BYOK, on a workstation with
/// no network. PINs come from an environment variable, a file or a prompt, never arguments.
#[derive(Parser)]
#[command(name = "byok-offline", version = LONG_VERSION, about, long_about = None)]
pub struct Cli {
    /// The token flags given before the subcommand; the subcommand's own win.
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub global: GlobalFlags,
    #[command(subcommand)]
    pub command: Command,
}

/// Which module and which token.
#[derive(Args, Clone, Debug, Default)]
pub struct TokenArgs {
    /// The HSM vendor's PKCS#11 library (SoftHSM: /usr/lib/softhsm/libsofthsm2.so) [default:
    /// $PKCS11_MODULE].
    #[arg(long, value_name = "PATH", help_heading = TOKEN_HEADING)]
    module: Option<PathBuf>,
    /// The module's init string, passed in C_Initialize's pReserved (NSS softokn:
    /// "configdir='sql:DIR' certPrefix='' keyPrefix='' secmod='secmod.db' flags=") [default:
    /// $PKCS11_INIT_ARGS].
    #[arg(long, value_name = "STRING", help_heading = TOKEN_HEADING)]
    init_args: Option<String>,
    /// The token, by label (default: the only token present).
    #[arg(long, value_name = "LABEL", conflicts_with = "slot", help_heading = TOKEN_HEADING)]
    token: Option<String>,
    /// The token, by slot id.
    #[arg(long, value_name = "ID", help_heading = TOKEN_HEADING)]
    slot: Option<u64>,
}

/// Where the user PIN comes from.
#[derive(Args, Clone, Debug, Default)]
pub struct PinArgs {
    /// The NAME of the environment variable holding the user PIN (not the PIN itself)
    /// [default: BYOK_PKCS11_PIN]; when it is unset, the PIN is asked for on a terminal.
    #[arg(long, value_name = "NAME", conflicts_with = "pin_file", help_heading = TOKEN_HEADING)]
    pin_env: Option<String>,
    /// A file whose first line is the user PIN (a regular file, or a pipe such as
    /// `<(command)`); preferred over a variable at the ceremony.
    #[arg(long, value_name = "PATH", help_heading = TOKEN_HEADING)]
    pin_file: Option<PathBuf>,
}

/// The module, the token and the PIN: what a command that logs in takes.
#[derive(Args, Clone, Debug, Default)]
pub struct ConnectionArgs {
    #[command(flatten)]
    token: TokenArgs,
    #[command(flatten)]
    pin: PinArgs,
}

#[derive(Subcommand)]
pub enum Command {
    /// List slots and tokens (or the one --token/--slot names), with each token's verdict on
    /// BYOK; needs no PIN.
    Tokens(TokensArgs),
    /// Prove the token's wrap of each key kind on throwaway keys (session objects, destroyed
    /// after), with two verdicts: for keys the token generates (EC: until one whose scalar's
    /// top byte is zero was seen) and for keys imported into it (encoding edge cases made in
    /// software); needs the user PIN. Exits 0 whatever the verdicts.
    Check(CheckArgs),
    /// List key objects on the token.
    Keys(KeysArgs),
    /// Generate the target key inside the token, and write its public key.
    Generate(GenerateArgs),
    /// Wrap a target key under the KEK and write the .byok, its sidecar and the public key.
    Package(PackageArgs),
    /// Decrypt `byok-online prove-aes`'s challenge with the HSM's AES key: proves the vault holds it.
    ProveAes(ProveAesArgs),
    /// Generate and package every key of a manifest (resumable; --jobs sessions at once).
    Batch(BatchArgs),
    /// The ceremony's evidence log.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Render the ceremony's minutes from its evidence logs (this side's and the connected
    /// side's): one document to print, sign and file. Exit 3 when a log's chain is broken.
    Minutes(MinutesArgs),
    /// Validate a .byok and show its header, without any key.
    Inspect(InspectArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print the manual page, or write one page per subcommand with --dir.
    Man(ManArgs),
}

#[derive(Args)]
pub struct TokensArgs {
    #[command(flatten)]
    pub token: TokenArgs,
    /// Record the verdict in this evidence log (the ceremony's: ceremony-log.jsonl in its
    /// directory); without it nothing is recorded.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Who runs the ceremony, for the evidence log (default: $USER, else the OS account).
    #[arg(long, value_name = "NAME", requires = "log")]
    pub operator: Option<String>,
}

impl TokensArgs {
    /// The evidence log to record in, when `--log` was given.
    pub fn log(&self) -> LogFlags {
        LogFlags {
            log: self.log.clone(),
            operator: self.operator.clone(),
        }
    }
}

impl CheckArgs {
    /// The evidence log to record in, when `--log` was given.
    pub fn log(&self) -> LogFlags {
        LogFlags {
            log: self.log.clone(),
            operator: self.operator.clone(),
        }
    }
}

#[derive(Args)]
pub struct KeysArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Record the verdict in this evidence log (the ceremony's: ceremony-log.jsonl in its
    /// directory); without it nothing is recorded.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Who runs the ceremony, for the evidence log (default: $USER, else the OS account).
    #[arg(long, value_name = "NAME", requires = "log")]
    pub operator: Option<String>,
    /// One kind only (with --size / --curve); default: every kind Key Vault imports.
    #[command(flatten)]
    kind: KindFlags,
    /// Throwaway keys generated per kind at least (default: 20 per EC curve, 4 for RSA 2048 and
    /// AES, 2 for RSA 3072 and 4096); EC goes on until a zero top byte was seen (at most 40 on
    /// P-521, 2,048 on the others), and the edge cases are imported besides.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    tries: Option<u32>,
    /// Which wrap to prove.
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
    /// The key's kind: required to generate; for an existing key, checked against it.
    #[command(flatten)]
    kind: KindFlags,
    /// Key operations to allow in the HSM when generating, comma- or space-separated, or as
    /// separate values as az takes them (sign verify encrypt decrypt wrapKey unwrapKey;
    /// default: all the key type supports).
    #[arg(long, value_name = "OP", num_args = 1..)]
    ops: Option<Vec<String>>,
    /// Where to write the public key PEM (default: <label>.public.pem); an existing file must
    /// hold the same key.
    #[arg(long, value_name = "PATH")]
    public_key_out: Option<PathBuf>,
}

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub log: LogFlags,
    /// Label of the new key (must not be in use).
    #[arg(long)]
    label: String,
    /// CKA_ID in hex (default: 16 random bytes).
    #[arg(long, value_name = "HEX")]
    id: Option<String>,
    #[command(flatten)]
    spec: KeySpecArgs,
}

#[derive(Args)]
pub struct PackageArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub log: LogFlags,
    /// The KEK transfer file from `byok-online kek download`.
    #[arg(long, value_name = "PATH", required_unless_present = "kek_pem", conflicts_with_all = ["kek_pem", "kid"])]
    kek: Option<PathBuf>,
    /// The KEK public key as PEM (with --kid), instead of a transfer file.
    #[arg(long, value_name = "PATH", requires = "kid")]
    kek_pem: Option<PathBuf>,
    /// The KEK's full, versioned key id (with --kek-pem).
    #[arg(long, value_name = "URL", requires = "kek_pem")]
    kid: Option<String>,
    /// The target key's label.
    #[arg(long, required_unless_present = "id")]
    label: Option<String>,
    /// The target key's CKA_ID in hex.
    #[arg(long, value_name = "HEX")]
    id: Option<String>,
    /// Generate the target first (with --kty and friends) and package it.
    #[arg(long)]
    generate: bool,
    #[command(flatten)]
    spec: KeySpecArgs,
    /// Output file (default: KeyTransferPackage-<label>.byok); never overwritten.
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
    /// Which wrap to use.
    #[arg(long, value_enum, default_value_t = WrapArg::Auto)]
    wrap_mechanism: WrapArg,
    #[command(flatten)]
    overrides: OverrideArgs,
    #[command(flatten)]
    reuse: ReuseArgs,
}

#[derive(Args)]
pub struct ProveAesArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub log: LogFlags,
    /// The AES key's label.
    #[arg(long)]
    pub label: String,
    /// The challenge file from `byok-online prove-aes`.
    #[arg(long, value_name = "PATH")]
    pub challenge: PathBuf,
}

#[derive(Args)]
pub struct BatchArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// The manifest (TOML) naming the keys.
    #[arg(long, value_name = "PATH")]
    manifest: PathBuf,
    /// The KEK transfer file from `byok-online kek download`.
    #[arg(long, value_name = "PATH")]
    kek: PathBuf,
    /// Directory for the .byok files, sidecars, public keys and evidence log (the directory
    /// `byok-online batch-import --dir` reads).
    #[arg(long, value_name = "DIR", alias = "out")]
    dir: PathBuf,
    /// PKCS#11 sessions at once.
    #[arg(long, value_name = "N", default_value_t = 1)]
    jobs: usize,
    /// The evidence log (default: DIR/ceremony-log.jsonl).
    #[arg(long, value_name = "PATH")]
    log: Option<PathBuf>,
    /// Who runs the ceremony, for the evidence log (default: $USER, else the OS account).
    #[arg(long, value_name = "NAME")]
    operator: Option<String>,
    /// Which wrap to use.
    #[arg(long, value_enum, default_value_t = WrapArg::Auto)]
    wrap_mechanism: WrapArg,
    /// How keys are found on the token: read every token object once (index), or search
    /// per key (search). auto measures both on the token first and takes the cheaper
    /// (docs/performance.md, "Finding the keys").
    #[arg(long, value_enum, default_value_t = LookupArg::Auto)]
    lookup: LookupArg,
    #[command(flatten)]
    overrides: OverrideArgs,
    #[command(flatten)]
    reuse: ReuseArgs,
}

#[derive(Subcommand)]
pub enum LogCommand {
    /// Check the hash chain of an evidence log, and print its head and entry count. Exit 3
    /// when a link is broken, the last entry is cut short, or the head is not --expect-head.
    Verify(LogVerifyArgs),
}

#[derive(Args)]
pub struct LogVerifyArgs {
    /// The evidence log (ceremony-log.jsonl).
    pub file: PathBuf,
    /// The head recorded in the ceremony's minutes (as `batch` or `log verify` printed it):
    /// shows entries removed from the end, or added after.
    #[arg(long, value_name = "SHA256")]
    pub expect_head: Option<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// The .byok file.
    pub file: PathBuf,
}

/// A variable's value, when it is set and not empty.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl TokenArgs {
    /// These flags (the subcommand's), else `top`'s (given before the subcommand). The token
    /// is chosen by one side's --token or --slot, never half from each.
    pub fn or(self, top: TokenArgs) -> TokenArgs {
        let (token, slot) = if self.token.is_some() || self.slot.is_some() {
            (self.token, self.slot)
        } else {
            (top.token, top.slot)
        };
        TokenArgs {
            module: self.module.or(top.module),
            init_args: self.init_args.or(top.init_args),
            token,
            slot,
        }
    }

    /// The module (flag, else `$PKCS11_MODULE`) and the token.
    fn into_parts(self) -> (Option<PathBuf>, Option<String>, TokenSelector) {
        let selector = match (self.token, self.slot) {
            (Some(label), _) => TokenSelector::Label(label),
            (None, Some(slot)) => TokenSelector::Slot(slot),
            (None, None) => TokenSelector::Only,
        };
        (
            self.module
                .or_else(|| env_var(MODULE_ENV).map(PathBuf::from)),
            self.init_args.or_else(|| env_var(INIT_ARGS_ENV)),
            selector,
        )
    }

    /// A connection for `tokens`, which never logs in.
    pub fn into_connection(self) -> Connection {
        let (module, init_args, token) = self.into_parts();
        Connection {
            module,
            init_args,
            token,
            pin: PinSource::Env(DEFAULT_PIN_ENV.into()),
        }
    }
}

impl ConnectionArgs {
    /// These flags (the subcommand's), else `top`'s: each of module, init string, token and
    /// PIN source is taken whole from one side.
    pub fn or(self, top: ConnectionArgs) -> ConnectionArgs {
        let pin = if self.pin.pin_env.is_some() || self.pin.pin_file.is_some() {
            self.pin
        } else {
            top.pin
        };
        ConnectionArgs {
            token: self.token.or(top.token),
            pin,
        }
    }

    /// The module and token flags alone, for `tokens`.
    pub fn token_args(&self) -> TokenArgs {
        self.token.clone()
    }

    /// The connection; a --pin-env that cannot name a variable is a usage error here, before
    /// the module is loaded.
    pub fn into_connection(self) -> Result<Connection> {
        let pin = match (self.pin.pin_file, self.pin.pin_env) {
            (Some(path), _) => PinSource::File(path),
            (None, Some(name)) => PinSource::Env(name),
            (None, None) => PinSource::Env(DEFAULT_PIN_ENV.into()),
        };
        let conn = Connection {
            pin,
            ..self.token.into_connection()
        };
        conn.check()?;
        Ok(conn)
    }
}

/// `--kty`, `--size`, `--curve` as what an existing key must be.
fn expectation(kind: &KindFlags) -> Result<KindExpectation> {
    Ok(KindExpectation {
        kty: kind.kty().map_err(OfflineError::KindFlags)?,
        size: kind.size,
        curve: kind.curve().map_err(OfflineError::KindFlags)?,
    })
}

impl KeySpecArgs {
    /// The key to generate, labelled `label`: `--kty` is required, the size or curve and the
    /// operations default to what the key type takes.
    fn generate_options(self, label: String, id: Option<&str>) -> Result<GenerateOptions> {
        let kind = self
            .kind
            .kind()
            .ok_or_else(|| {
                OfflineError::Usage("--kty is required to generate a key (RSA, EC or oct)".into())
            })?
            .map_err(OfflineError::KindFlags)?;
        let ops = match self.ops {
            Some(list) => KeyOp::parse_list(&list)?,
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
        let kinds = match k.kind() {
            None if k.size.is_none() && k.curve.is_none() => KeyKind::IMPORTABLE.to_vec(),
            None => {
                return Err(OfflineError::Usage(
                    "--size and --curve need --kty (RSA, EC or oct)".into(),
                ));
            }
            Some(kind) => vec![kind.map_err(OfflineError::KindFlags)?],
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
        let expect = expectation(&a.spec.kind)?;
        let public_key_out = a.spec.public_key_out.clone();
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
            expect,
            public_key_out,
            out: a.out,
            wrap: a.wrap_mechanism.into(),
            overrides: a.overrides.into(),
            reuse: a.reuse.into(),
        })
    }
}

impl From<BatchArgs> for BatchOptions {
    fn from(a: BatchArgs) -> Self {
        BatchOptions {
            manifest: a.manifest,
            kek: KekSource::TransferFile(a.kek),
            out_dir: a.dir,
            jobs: a.jobs,
            wrap: a.wrap_mechanism.into(),
            lookup: a.lookup.into(),
            overrides: a.overrides.into(),
            reuse: a.reuse.into(),
            log: a.log,
            operator: a.operator,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use byok_cli_common::flags::OUTPUT_HEADING;
    use clap::CommandFactory;

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
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every subcommand, with its path from the top (`log verify`).
    fn all_commands() -> Vec<(String, clap::Command)> {
        let mut cmd = Cli::command();
        cmd.build();
        let mut out = Vec::new();
        let mut stack = vec![(String::new(), cmd)];
        while let Some((path, cmd)) = stack.pop() {
            for sub in cmd.get_subcommands() {
                stack.push((
                    format!("{path} {}", sub.get_name()).trim().into(),
                    sub.clone(),
                ));
            }
            out.push((path, cmd));
        }
        out
    }

    #[test]
    fn every_flag_is_described_under_its_heading() {
        for (path, cmd) in all_commands() {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                assert!(
                    arg.get_help().is_some(),
                    "`{path}`: --{id} has no help text"
                );
                let heading = arg.get_help_heading();
                match id {
                    "module" | "init_args" | "token" | "slot" | "pin_env" | "pin_file" => {
                        assert_eq!(heading, Some(TOKEN_HEADING), "`{path}` --{id}")
                    }
                    "output" | "query" | "verbose" => {
                        assert_eq!(heading, Some(OUTPUT_HEADING), "`{path}` --{id}")
                    }
                    _ => assert_eq!(heading, None, "`{path}` --{id}: under Options"),
                }
            }
        }
    }

    #[test]
    fn commands_that_never_touch_a_token_take_no_token_flags() {
        let commands = all_commands();
        let args_of = |name: &str| -> Vec<String> {
            let (_, cmd) = commands.iter().find(|(p, _)| p == name).unwrap();
            cmd.get_arguments()
                .map(|a| a.get_id().to_string())
                .collect()
        };
        for name in ["inspect", "log verify", "minutes", "completions", "man"] {
            let args = args_of(name);
            for flag in [
                "module",
                "token",
                "slot",
                "pin_env",
                "pin_file",
                "init_args",
            ] {
                assert!(!args.contains(&flag.to_string()), "`{name}` lists --{flag}");
            }
        }
        assert!(args_of("keys").contains(&"pin_file".to_string()));
        assert!(!args_of("tokens").contains(&"pin_file".to_string()));
    }

    fn connection(cli: Cli) -> Connection {
        let top = cli.connection;
        let args = match cli.command {
            Command::Keys(a) => a.connection,
            _ => unreachable!("a keys command"),
        };
        args.or(top).into_connection().unwrap()
    }

    #[test]
    fn the_subcommands_token_flags_win_over_the_top_levels() {
        let label = |c: &Connection| match &c.token {
            TokenSelector::Label(l) => format!("label {l}"),
            TokenSelector::Slot(s) => format!("slot {s}"),
            TokenSelector::Only => "only".into(),
        };
        let c = connection(parse(&["--token", "A", "keys"]));
        assert_eq!(label(&c), "label A");
        let c = connection(parse(&["--token", "A", "keys", "--token", "B"]));
        assert_eq!(label(&c), "label B");
        let c = connection(parse(&["--token", "A", "keys", "--slot", "3"]));
        assert_eq!(label(&c), "slot 3");
        let c = connection(parse(&["--pin-file", "p", "keys", "--pin-env", "MY_PIN"]));
        assert!(matches!(c.pin, PinSource::Env(ref v) if v == "MY_PIN"));
        let c = connection(parse(&["--module", "/m.so", "--pin-file", "p", "keys"]));
        assert_eq!(c.module.as_deref(), Some(std::path::Path::new("/m.so")));
        assert!(matches!(c.pin, PinSource::File(_)));
        let cli = parse(&["keys", "--pin-env", "123456"]);
        let Command::Keys(a) = cli.command else {
            unreachable!()
        };
        let err = a.connection.into_connection().unwrap_err();
        assert!(matches!(err, OfflineError::PinEnvNotAName), "{err}");
    }

    #[test]
    fn generate_reads_kinds_and_ops_with_their_defaults() {
        let o = generate_options(&["generate", "--label", "k", "--kty", "rsa"]).unwrap();
        assert_eq!(o.spec.kind, KeyKind::Rsa { bits: 3072 });
        assert_eq!(o.spec.ops, KeyOp::defaults(byok_core::target::Kty::Rsa));
        let forms: [&[&str]; 3] = [&["sign,verify"], &["sign verify"], &["sign", "verify"]];
        for ops in forms {
            let mut args = vec!["generate", "--label", "k", "--kty", "EC", "--ops"];
            args.extend_from_slice(ops);
            let o = generate_options(&args).unwrap();
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
    fn init_args_come_from_the_flag() {
        let cli = parse(&["--init-args", "configdir='sql:/x'", "keys"]);
        assert_eq!(
            connection(cli).init_args.as_deref(),
            Some("configdir='sql:/x'")
        );
    }

    #[test]
    fn package_checks_an_existing_keys_kind_against_the_flags_given() {
        let opts = |args: &[&str]| -> Result<PackageOptions> {
            let mut all = vec!["package", "--kek", "k.transfer", "--label", "k"];
            all.extend_from_slice(args);
            match parse(&all).command {
                Command::Package(a) => a.try_into(),
                _ => unreachable!("a package command"),
            }
        };
        let o = opts(&["--kty", "ec", "--curve", "P-384"]).unwrap();
        let p384 = KeyKind::Ec {
            curve: byok_core::target::Curve::P384,
        };
        assert!(o.expect.check("k", p384).is_ok());
        let err = o
            .expect
            .check("k", KeyKind::Rsa { bits: 2048 })
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("is RSA 2048") && text.contains("--kty EC --curve P-384"),
            "{text}"
        );
        let o = opts(&["--size", "2048"]).unwrap();
        assert!(o.expect.check("k", KeyKind::Rsa { bits: 2048 }).is_ok());
        assert!(o.expect.check("k", KeyKind::Rsa { bits: 3072 }).is_err());
        assert!(opts(&[]).unwrap().expect.check("k", p384).is_ok());
        assert!(matches!(
            opts(&["--kty", "DSA"]),
            Err(OfflineError::KindFlags(_))
        ));
    }

    #[test]
    fn batch_takes_dir_and_its_old_name_out() {
        for flag in ["--dir", "--out"] {
            let cli = parse(&["batch", "--manifest", "m", "--kek", "k", flag, "d"]);
            let Command::Batch(a) = cli.command else {
                unreachable!()
            };
            assert_eq!(BatchOptions::from(a).out_dir, PathBuf::from("d"));
        }
    }
}
