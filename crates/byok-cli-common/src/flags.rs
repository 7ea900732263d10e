//! The flags every command of both workstation binaries takes, and the help headings that
//! group every binary's flags.

use crate::evidence::{EvidenceError, EvidenceLog};
use crate::output::{Output, OutputFormat, QueryError};

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
