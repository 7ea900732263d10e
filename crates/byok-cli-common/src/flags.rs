//! The flags every command of both workstation binaries takes.

use crate::output::OutputFormat;

/// `--output` and `-v`, flattened into each binary's top-level parser.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalFlags {
    /// Output format: lines for a person, or one JSON document for scripts.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
    /// More diagnostics on stderr (-v, -vv, -vvv); RUST_LOG overrides. Never shows a PIN,
    /// secret, token or key.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// `--kty`, `--size`, `--curve`: a target key's kind, read by byok-core's
/// `KeyKind::from_parts` (one set of defaults for every command).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KindFlags {
    /// Key type: RSA, EC or oct (AES; Managed HSM only).
    #[arg(long)]
    pub kty: Option<String>,
    /// Key size: RSA 2048, 3072 (default) or 4096; oct 128, 192 or 256 (default).
    #[arg(long)]
    pub size: Option<u32>,
    /// EC curve: P-256 (default), P-384, P-521 or P-256K.
    #[arg(long)]
    pub curve: Option<String>,
}
