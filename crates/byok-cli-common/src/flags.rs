//! The flags every command of both workstation binaries takes, and the help headings that
//! group every binary's flags.

use crate::evidence::{EvidenceError, EvidenceLog};
use crate::output::{Output, OutputFormat, QueryError};
use byok_core::target::{Curve, EncodingError, KeyKind, Kty};

/// Help heading of the output and diagnostics flags.
pub const OUTPUT_HEADING: &str = "Output";
/// Help heading of byok-offline's module, token and PIN flags.
pub const TOKEN_HEADING: &str = "Token";
/// Help heading of byok-online's vault and credential flags.
pub const VAULT_HEADING: &str = "Vault and authentication";

/// `-o/--output`, `--query` and `-v`, flattened into each binary's top-level parser.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalFlags {
    /// Output format: lines for a person (human), one JSON document (json), or az's table and
    /// tsv views of that document.
    #[arg(short, long, global = true, value_enum, default_value_t = OutputFormat::Human, help_heading = OUTPUT_HEADING)]
    pub output: OutputFormat,
    /// JMESPath query on the JSON document, as az's --query (implies JSON with human output).
    #[arg(long, global = true, value_name = "JMESPATH", help_heading = OUTPUT_HEADING)]
    pub query: Option<String>,
    /// More diagnostics on stderr: -v the tool's steps, -vv its details, -vvv every library's
    /// debug too. RUST_LOG overrides. Never shows a PIN, secret, token or key.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = OUTPUT_HEADING)]
    pub verbose: u8,
}

impl GlobalFlags {
    /// The output settings; a malformed `--query` is a usage error.
    pub fn output(&self) -> Result<Output, QueryError> {
        Output::new(self.output, self.query.clone())
    }
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

/// The one reading of `--kty`, `--size` and `--curve`, for both binaries; each command says
/// what it needs when `--kty` is missing.
impl KindFlags {
    /// The flags that name `kind`: `--kty RSA --size 2048`, `--kty EC --curve P-384`.
    pub fn of(kind: KeyKind) -> Self {
        Self {
            kty: Some(kind.kty().to_string()),
            size: kind.curve().is_none().then(|| kind.bits()),
            curve: kind.curve().map(|c| c.name().to_string()),
        }
    }

    /// The flags as command-line arguments, in the order `--kty`, `--size`, `--curve`.
    pub fn to_args(&self) -> Vec<String> {
        let kty = self.kty.iter().flat_map(|k| ["--kty".into(), k.clone()]);
        let size = self
            .size
            .iter()
            .flat_map(|s| ["--size".into(), s.to_string()]);
        let curve = self
            .curve
            .iter()
            .flat_map(|c| ["--curve".into(), c.clone()]);
        kty.chain(size).chain(curve).collect()
    }

    /// The kind the flags name, read by [`KeyKind::from_parts`] (its defaults for a size or
    /// curve left out); `None` without `--kty`.
    pub fn kind(&self) -> Option<Result<KeyKind, EncodingError>> {
        self.kind_like(None)
    }

    /// As [`KindFlags::kind`], but a size or curve left out is `stated`'s (a sidecar's kind)
    /// when `--kty` names its key type, so that `--kty EC` agrees with a P-384 sidecar.
    pub fn kind_like(&self, stated: Option<KeyKind>) -> Option<Result<KeyKind, EncodingError>> {
        let kty = self.kty.as_deref()?;
        let same_type = stated.filter(|k| Kty::from_jwk_kty(kty) == Some(k.kty()));
        let size = self
            .size
            .or(same_type.filter(|k| k.curve().is_none()).map(KeyKind::bits));
        let curve = self
            .curve
            .as_deref()
            .or(same_type.and_then(KeyKind::curve).map(Curve::name));
        Some(KeyKind::from_parts(kty, size, curve))
    }

    /// `--kty` alone, read as [`KeyKind::from_parts`] reads it.
    pub fn kty(&self) -> Result<Option<Kty>, EncodingError> {
        self.kty.as_deref().map(Kty::parse).transpose()
    }

    /// `--curve` alone, read as [`KeyKind::from_parts`] reads it.
    pub fn curve(&self) -> Result<Option<Curve>, EncodingError> {
        self.curve.as_deref().map(str::parse).transpose()
    }
}

/// `--log` and `--operator`: where a command records what it did, and who did it.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LogFlags {
    /// The ceremony's evidence log (default: ceremony-log.jsonl in the current directory: run
    /// a ceremony's commands from its directory, and each workstation keeps one log).
    #[arg(long, value_name = "FILE")]
    pub log: Option<std::path::PathBuf>,
    /// Who runs the ceremony, for the evidence log (default: $USER, else the OS account).
    #[arg(long, value_name = "NAME")]
    pub operator: Option<String>,
}

impl LogFlags {
    /// The log file: `--log`, else [`DEFAULT_FILE_NAME`] in the current directory.
    ///
    /// [`DEFAULT_FILE_NAME`]: byok_core::evidence::DEFAULT_FILE_NAME
    pub fn path(&self) -> std::path::PathBuf {
        self.log
            .clone()
            .unwrap_or_else(|| byok_core::evidence::DEFAULT_FILE_NAME.into())
    }

    /// Opens the log a command appends to, verifying its chain first: a command refuses to
    /// start on a log it could not append to.
    pub fn open(&self) -> Result<EvidenceLog, EvidenceError> {
        EvidenceLog::open(&self.path(), self.operator.as_deref())
    }

    /// Opens the log only when `--log` was given (`tokens`, `check`: they record on request).
    pub fn open_if_given(&self) -> Result<Option<EvidenceLog>, EvidenceError> {
        self.log.as_ref().map(|_| self.open()).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        kind: KindFlags,
    }

    fn flags(args: &[&str]) -> KindFlags {
        Cli::parse_from(std::iter::once("t").chain(args.iter().copied())).kind
    }

    #[test]
    fn every_kind_round_trips_through_its_flags() {
        for kind in KeyKind::IMPORTABLE {
            let args = KindFlags::of(kind).to_args();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            assert_eq!(flags(&args).kind(), Some(Ok(kind)), "{args:?}");
        }
        assert_eq!(
            KindFlags::of(KeyKind::Ec { curve: Curve::P384 }).to_args(),
            ["--kty", "EC", "--curve", "P-384"]
        );
        assert_eq!(
            KindFlags::of(KeyKind::Oct { bits: 128 }).to_args(),
            ["--kty", "oct", "--size", "128"]
        );
    }

    #[test]
    fn flags_left_out_take_the_stated_kind_of_the_same_type() {
        let p384 = KeyKind::Ec { curve: Curve::P384 };
        assert_eq!(
            flags(&["--kty", "ec"]).kind_like(Some(p384)),
            Some(Ok(p384))
        );
        assert_eq!(
            flags(&["--kty", "RSA"]).kind_like(Some(p384)),
            Some(Ok(KeyKind::Rsa { bits: 3072 }))
        );
        assert_eq!(flags(&["--size", "2048"]).kind_like(Some(p384)), None);
        assert!(matches!(
            flags(&["--kty", "DSA"]).kind(),
            Some(Err(EncodingError::UnknownKty { .. }))
        ));
        assert!(matches!(
            flags(&["--kty", "DSA"]).kty(),
            Err(EncodingError::UnknownKty { .. })
        ));
        assert_eq!(flags(&["--curve", "P-521"]).curve(), Ok(Some(Curve::P521)));
    }
}
