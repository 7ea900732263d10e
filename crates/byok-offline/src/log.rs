//! `log verify`: the evidence log's hash chain, its head, and the head the ceremony's minutes
//! recorded (`--expect-head`).
//!
//! Each verdict is its own error, since each calls for something different: a broken link
//! means an entry was edited, removed or reordered; a last line cut short means a crash while
//! it was written (the entries before it stand); a head that differs from the minutes means
//! entries were added after them, or removed from the end, or that this is another log.

use byok_cli_common::exit::{Classify, ExitKind};
use byok_cli_common::files::{self, FileError};
use byok_core::evidence::{self, ChainError, ReadChainError};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The most `log verify` reads: about a million entries.
const MAX_LOG_BYTES: u64 = 1024 * 1024 * 1024;

/// Why a log does not verify, or does not match the head the minutes recorded.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Unreadable(#[from] FileError),
    #[error(
        "the evidence log {path} does not verify: {source}. Keep it as it is for the ceremony's \
         records"
    )]
    Broken { path: PathBuf, source: ChainError },
    #[error(
        "the evidence log {path} ends in a partly written entry: line {line} is cut short (the \
         tool stopped while writing it). The {intact} entries before it are intact, with head \
         {head}. Keep a copy for the records; to append to this log again, remove the cut-short \
         last line"
    )]
    PartialLastLine {
        path: PathBuf,
        line: usize,
        intact: usize,
        head: String,
    },
    #[error(
        "the evidence log {path} verifies, but it has {after} entries after the head recorded \
         in the minutes (the head of its first {recorded} entries); its head now is {head}. \
         Check that those entries belong to this ceremony"
    )]
    EntriesAfterHead {
        path: PathBuf,
        after: usize,
        recorded: usize,
        head: String,
    },
    #[error(
        "the evidence log {path} verifies, but no entry of it has the head recorded in the \
         minutes ({expected}): entries are missing at the end (truncated), or this is another \
         ceremony's log; the log's head is {head} ({entries} entries)"
    )]
    HeadNotFound {
        path: PathBuf,
        expected: String,
        head: String,
        entries: usize,
    },
    #[error(
        "--expect-head takes the log's head as 64 hex digits (as `log verify` and `batch` print \
         it); the value given is {len} characters long or not hex"
    )]
    BadExpectedHead { len: usize },
}

impl Classify for LogError {
    fn exit_kind(&self) -> ExitKind {
        match self {
            LogError::Unreadable(_) => ExitKind::Failure,
            LogError::BadExpectedHead { .. } => ExitKind::Usage,
            LogError::Broken { .. }
            | LogError::PartialLastLine { .. }
            | LogError::EntriesAfterHead { .. }
            | LogError::HeadNotFound { .. } => ExitKind::Mismatch,
        }
    }
}

/// What `log verify` found.
#[derive(Debug, Serialize)]
pub struct LogReport {
    pub file: PathBuf,
    pub entries: usize,
    pub chain_intact: bool,
    /// The SHA-256 of the last line: the `prev_sha256` the next entry will carry.
    pub head: String,
    /// Whether `--expect-head` was given (and matched: a differing head is an error).
    pub head_checked: bool,
}

impl byok_cli_common::Document for LogReport {
    const SCHEMA: &'static str = "byok-offline.log-verify/1";
}

/// The head as given, lower-cased; refused unless it is 64 hex digits.
fn parse_head(head: &str) -> Result<String, LogError> {
    let head = head.trim();
    if head.len() == 64 && head.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(head.to_ascii_lowercase())
    } else {
        Err(LogError::BadExpectedHead { len: head.len() })
    }
}

/// Checks the log's chain and, with `expect_head`, that its head is the one recorded.
pub fn verify(file: &Path, expect_head: Option<&str>) -> Result<LogReport, LogError> {
    let expected = expect_head.map(parse_head).transpose()?;
    let bytes = files::read_limited(file, MAX_LOG_BYTES)?;
    let chain = evidence::read_chain(&bytes).map_err(|e| match e {
        ReadChainError::Chain(source) => LogError::Broken {
            path: file.into(),
            source,
        },
        ReadChainError::PartialLastLine { line, intact } => {
            let head = evidence::read_chain(before_last_line(&bytes))
                .map(|c| c.head())
                .unwrap_or_default();
            LogError::PartialLastLine {
                path: file.into(),
                line,
                intact,
                head,
            }
        }
    })?;
    let head = chain.head();
    tracing::info!(file = %file.display(), entries = chain.entries(), %head, "evidence log verified");
    if let Some(expected) = &expected
        && *expected != head
    {
        return Err(match chain.entries_up_to(expected) {
            Some(recorded) => LogError::EntriesAfterHead {
                path: file.into(),
                after: chain.entries() - recorded,
                recorded,
                head,
            },
            None => LogError::HeadNotFound {
                path: file.into(),
                expected: expected.clone(),
                head,
                entries: chain.entries(),
            },
        });
    }
    Ok(LogReport {
        file: file.into(),
        entries: chain.entries(),
        chain_intact: true,
        head,
        head_checked: expected.is_some(),
    })
}

/// The bytes up to and including the last newline: a log without its cut-short last line.
fn before_last_line(bytes: &[u8]) -> &[u8] {
    match bytes.iter().rposition(|b| *b == b'\n') {
        Some(i) => &bytes[..=i],
        None => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_must_be_64_hex_digits() {
        assert_eq!(parse_head(&"AB".repeat(32)).unwrap(), "ab".repeat(32));
        assert!(matches!(
            parse_head("123456"),
            Err(LogError::BadExpectedHead { len: 6 })
        ));
        assert_eq!(
            LogError::BadExpectedHead { len: 1 }.exit_kind(),
            ExitKind::Usage
        );
    }
}
