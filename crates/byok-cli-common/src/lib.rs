//! What both workstation binaries (`byok-offline`, `byok-online`) do with files and the
//! terminal, in one place so the two cannot drift:
//!
//! - [`files`]: atomic, fsynced, never-overwriting writes with the mode stated per file kind,
//!   and reads bounded by size;
//! - [`evidence`]: the ceremony's evidence log appender (the chain itself is byok-core's);
//! - [`progress`]: a bar on a terminal, plain lines otherwise;
//! - [`logging`]: `-v` levels and `RUST_LOG`;
//! - [`output`]: `--output human|json|table|tsv`, `--query`, the `schema` of every JSON
//!   document and the error report ([`table`] draws tables); [`flags`]: the flags every
//!   command takes and the help headings;
//! - [`minutes`]: `minutes LOG...`: the ceremony's logs joined and rendered for people to
//!   read and sign (HTML, PDF through headless Chromium, Markdown);
//! - [`process`]: core dumps off, and secrets out of the environment, first thing in `main`;
//! - [`shell`]: `completions <shell>` and `man`; [`version`]: `--version` with the commit;
//! - [`exit`]: the exit codes scripts can rely on;
//! - [`terminal`]: strings from files and servers escaped before they reach a terminal;
//! - [`sync`]: the one way they take a lock (a poisoned one stops the command).
//!
//! It links no HTTP client, TLS stack, async runtime or PKCS#11 library: the air-gapped
//! binary depends on it.
#![forbid(unsafe_code)]

pub mod evidence;
pub mod exit;
pub mod files;
pub mod flags;
pub mod logging;
pub mod minutes;
pub mod output;
pub mod process;
pub mod progress;
pub mod shell;
pub mod sync;
pub mod table;
pub mod terminal;
pub mod version;

pub use exit::ExitKind;
pub use files::{FileError, FileKind};
pub use flags::{GlobalFlags, KindFlags};
pub use output::{Document, Output, OutputFormat};
