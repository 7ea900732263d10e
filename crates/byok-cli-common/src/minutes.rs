//! `minutes`: the ceremony's record for people. Both binaries' `minutes LOG...` run this.
//!
//! - `read`: each evidence log, its chain verified first (a broken or cut-short chain
//!   refuses: exit 3, nothing rendered, no file written);
//! - `join`: the logs joined into one ceremony: the KEK, the tokens and their checks, each
//!   key (by `key_name`, and by the package's SHA-256 across the gap), the timeline;
//! - `doc`: the minutes as sections of fields, tables and signature lines, the same for
//!   every format; `html` and `markdown` write them, escaping every string a log holds
//!   (a log comes on removable media: it may be hostile); `pdf` prints the HTML with
//!   headless Chromium.
//!
//! The document is self-contained: inline CSS with print rules, each log's head as an inline
//! SVG QR code, no script and nothing fetched.

mod doc;
mod html;
mod join;
mod markdown;
mod pdf;
mod qr;
mod read;
#[cfg(test)]
mod tests;
mod text;

use crate::exit::{Classify, ExitKind};
use crate::files::{self, FileError, FileKind};
use byok_core::evidence::ReadChainError;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;
use text::clean;

pub use pdf::{CHROMIUM, CHROMIUM_TIMEOUT};

/// `minutes`' flags, the same on both binaries.
#[derive(Debug, Clone, clap::Args)]
pub struct MinutesArgs {
    /// The evidence logs to join: the air-gapped workstation's and the connected one's
    /// (ceremony-log.jsonl on each). Every chain is verified first: a broken one exits 3 and
    /// nothing is written.
    #[arg(value_name = "LOG", required = true)]
    pub logs: Vec<PathBuf>,
    /// A witness who signs the minutes (repeat for each); every operator the logs name gets
    /// a signature line too.
    #[arg(long = "witness", value_name = "NAME")]
    pub witnesses: Vec<String>,
    /// html (prints the same from any browser), pdf (headless Chromium: Debian's chromium
    /// package) or md.
    #[arg(long, value_enum, default_value_t = MinutesFormat::Html)]
    pub format: MinutesFormat,
    /// The file to write (default: minutes.html, minutes.pdf or minutes.md in the current
    /// directory); never overwritten.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The paper the document is laid out for when printed (it fits the other too).
    #[arg(long, value_enum, default_value_t = Paper::A4)]
    pub paper: Paper,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MinutesFormat {
    /// One self-contained HTML file: print it from any browser.
    Html,
    /// The HTML printed to PDF by headless Chromium.
    Pdf,
    /// The same content as Markdown.
    Md,
}

impl MinutesFormat {
    /// The file written when `--out` is not given.
    pub fn default_file(self) -> &'static str {
        match self {
            MinutesFormat::Html => "minutes.html",
            MinutesFormat::Pdf => "minutes.pdf",
            MinutesFormat::Md => "minutes.md",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MinutesFormat::Html => "html",
            MinutesFormat::Pdf => "pdf",
            MinutesFormat::Md => "md",
        }
    }
}

/// `--paper`: the CSS `@page` size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Paper {
    /// ISO A4, 210 x 297 mm.
    #[default]
    A4,
    /// US Letter, 8.5 x 11 in.
    Letter,
}

impl Paper {
    /// The `@page { size }` value.
    pub fn css_size(self) -> &'static str {
        match self {
            Paper::A4 => "A4",
            Paper::Letter => "letter",
        }
    }
}

/// Why no minutes were written.
#[derive(Debug, thiserror::Error)]
pub enum MinutesError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(
        "the evidence log {path} does not verify: {source}. No minutes were written: a log's \
         record must be whole; keep it as it is and check it with `byok-offline log verify`"
    )]
    Chain {
        path: PathBuf,
        source: ReadChainError,
    },
    #[error(
        "the log {path} is given twice; name each log once (the air-gapped side's and the \
         connected side's)"
    )]
    Twice { path: PathBuf },
    #[error(
        "--format pdf needs headless Chromium, and `{program}` is not on PATH: install Debian's \
         package (apt-get install chromium), or write --format html and print it from any \
         browser: it prints the same way"
    )]
    NoChromium { program: String },
    #[error("cannot run {program} to print the PDF: {reason}")]
    ChromiumStart { program: String, reason: String },
    #[error(
        "{program} did not finish printing the PDF within {seconds} s and was stopped; no file \
         was written. Write --format html and print it from a browser instead"
    )]
    ChromiumTimeout { program: String, seconds: u64 },
    #[error(
        "{program} failed to print the PDF ({status}); no file was written. Its last words: \
         {stderr}. Write --format html and print it from a browser instead"
    )]
    ChromiumFailed {
        program: String,
        status: String,
        stderr: String,
    },
    #[error("cannot prepare the page for Chromium in a temporary directory: {0}")]
    Temp(String),
}

impl Classify for MinutesError {
    fn exit_kind(&self) -> ExitKind {
        match self {
            MinutesError::Chain { .. } => ExitKind::Mismatch,
            MinutesError::Twice { .. } => ExitKind::Usage,
            _ => ExitKind::Failure,
        }
    }
}

/// What `minutes` wrote: the body of each binary's `minutes` JSON document.
#[derive(Debug, Serialize)]
pub struct MinutesReport {
    /// The file written.
    pub file: PathBuf,
    pub format: MinutesFormat,
    pub paper: Paper,
    pub logs: Vec<LogSummary>,
    /// Keys packaged, imported and verified (or proved, for AES) by the logs.
    pub packaged: usize,
    pub imported: usize,
    pub verified: usize,
    pub keys: Vec<KeySummary>,
    pub witnesses: Vec<String>,
    pub seconds: f64,
}

impl MinutesReport {
    /// The human output of both binaries' `minutes`: the file written, then each log with its
    /// entry count and head (what the paper copy shows).
    pub fn print_human(&self) {
        crate::say!(
            "wrote {} ({}, {} keys packaged, {} imported, {} verified)",
            self.file.display(),
            self.format.as_str(),
            self.packaged,
            self.imported,
            self.verified
        );
        for log in &self.logs {
            crate::say!(
                "{}: {} entries",
                crate::terminal::escape(&log.path.display().to_string()),
                log.entries
            );
            crate::say!("  head: {}", crate::terminal::escape(&log.head.to_string()));
        }
    }
}

/// A log as the minutes record it.
#[derive(Debug, Serialize)]
pub struct LogSummary {
    pub path: PathBuf,
    pub entries: usize,
    /// The SHA-256 of its last line: what `log verify --expect-head` checks later.
    pub head: String,
    /// Another log given holds all of this one's entries first (a copy carried across the
    /// gap and appended to): its entries are listed once, from that log.
    pub within: Option<PathBuf>,
}

/// A key as the minutes record it.
#[derive(Debug, Serialize)]
pub struct KeySummary {
    pub name: String,
    pub kind: Option<String>,
    pub hsm_label: Option<String>,
    pub hsm_id: Option<String>,
    /// The SHA-256 of each `.byok` made of it.
    pub packages: Vec<String>,
    pub public_key_sha256: Option<String>,
    /// The vault's key ids it was imported as.
    pub vault_kids: Vec<String>,
    /// Whether a `verified` (signature) or `aes proved` entry proves the vault holds it.
    pub verified: bool,
    /// How, or why not.
    pub verification: String,
}

/// Who renders the minutes, for the document's footer: the binary's name and version.
#[derive(Debug, Clone)]
pub struct Context {
    pub tool: String,
    /// RFC 3339 UTC.
    pub rendered_at: String,
    pub witnesses: Vec<String>,
    pub paper: Paper,
}

/// `minutes`: reads and verifies every log, joins them, renders and writes the document.
/// `tool` names the binary (`byok-offline`).
pub fn run(args: &MinutesArgs, tool: &str) -> Result<MinutesReport, MinutesError> {
    let started = Instant::now();
    let logs = read::read_all(&args.logs)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(args.format.default_file()));
    // Before the work, so a name taken costs no Chromium run; write_new checks again.
    files::ensure_absent(&[&out])?;
    let ceremony = join::join(&logs);
    let context = Context {
        tool: format!("{tool} {}", crate::version::LONG_VERSION),
        rendered_at: crate::evidence::now_rfc3339(),
        witnesses: args.witnesses.clone(),
        paper: args.paper,
    };
    let bytes = render(args.format, &ceremony, &context)?;
    files::write_new(&out, &bytes, FileKind::Report)?;
    Ok(report(args, out, &ceremony, started))
}

/// The document's bytes in `format` (a PDF through Chromium).
fn render(
    format: MinutesFormat,
    ceremony: &join::Ceremony,
    context: &Context,
) -> Result<Vec<u8>, MinutesError> {
    let minutes = doc::build(ceremony, context);
    Ok(match format {
        MinutesFormat::Html => html::render(&minutes, context).into_bytes(),
        MinutesFormat::Md => markdown::render(&minutes).into_bytes(),
        MinutesFormat::Pdf => pdf::print(&html::render(&minutes, context))?,
    })
}

fn report(
    args: &MinutesArgs,
    file: PathBuf,
    ceremony: &join::Ceremony,
    started: Instant,
) -> MinutesReport {
    let path_of = |i: usize| PathBuf::from(&ceremony.logs[i].path);
    MinutesReport {
        file,
        format: args.format,
        paper: args.paper,
        logs: ceremony
            .logs
            .iter()
            .map(|l| LogSummary {
                path: PathBuf::from(&l.path),
                entries: l.entries,
                head: l.head.clone(),
                within: l.within.map(path_of),
            })
            .collect(),
        packaged: ceremony.counts.packaged,
        imported: ceremony.counts.imported,
        verified: ceremony.counts.verified,
        // Cleaned: `-o table` and `-o tsv` print these on a terminal.
        keys: ceremony
            .keys
            .iter()
            .map(|k| {
                let opt = |v: &Option<String>| v.as_deref().map(clean);
                KeySummary {
                    name: clean(&k.name),
                    kind: opt(&k.kind),
                    hsm_label: opt(&k.hsm_label),
                    hsm_id: opt(&k.hsm_id),
                    packages: k.packages.iter().map(|p| clean(p)).collect(),
                    public_key_sha256: opt(&k.public_key_sha256),
                    vault_kids: k.vault_kids.iter().map(|v| clean(v)).collect(),
                    verified: k.is_verified(),
                    verification: clean(&k.verification()),
                }
            })
            .collect(),
        witnesses: args.witnesses.clone(),
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// The path as the minutes show it.
fn shown(path: &Path) -> String {
    path.display().to_string()
}
