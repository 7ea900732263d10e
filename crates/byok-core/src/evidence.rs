//! The ceremony's evidence record: JSON lines, each carrying the SHA-256 of the line before it
//! (`prev_sha256`; 64 zeros for the first), so an edited, removed or reordered line shows.
//! Entries carry ids, fingerprints and hashes, never a secret.

use crate::fingerprint::Fingerprint;
use serde_json::{Map, Value};

/// The evidence log's file name beside the packages when none is given.
pub const DEFAULT_FILE_NAME: &str = "ceremony-log.jsonl";

mod entries;

pub use entries::{
    AesChallengeMade, AesProved, CheckEntryRef, CheckedKind, Entry, Envelope, Imported, JudgedSide,
    KekCreated, KekDownloaded, KekRecord, KeyGenerated, KeyRecord, ListedToken, Logged, Packaged,
    TokenChecked, TokenRecord, TokensListed, Verified,
};

/// What an entry records ([`Entry`]'s kinds). The JSON spells them as the `event` field's
/// value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Event {
    #[serde(rename = "kek created")]
    KekCreated,
    #[serde(rename = "kek downloaded")]
    KekDownloaded,
    #[serde(rename = "tokens listed")]
    TokensListed,
    #[serde(rename = "token checked")]
    TokenChecked,
    #[serde(rename = "key generated")]
    KeyGenerated,
    /// The offline half wrapped a key and wrote its package.
    #[serde(rename = "packaged")]
    Packaged,
    /// A package found on disk (an interrupted run made it) was recorded after the fact.
    #[serde(rename = "package confirmed")]
    PackageConfirmed,
    /// The online half imported a package.
    #[serde(rename = "imported")]
    Imported,
    /// The vault already held the package's key (tagged with its SHA-256): recorded, not
    /// imported again.
    #[serde(rename = "import confirmed")]
    ImportConfirmed,
    #[serde(rename = "verified")]
    Verified,
    #[serde(rename = "aes challenge made")]
    AesChallengeMade,
    #[serde(rename = "aes proved")]
    AesProved,
}

impl Event {
    pub const ALL: [Event; 12] = [
        Event::KekCreated,
        Event::KekDownloaded,
        Event::TokensListed,
        Event::TokenChecked,
        Event::KeyGenerated,
        Event::Packaged,
        Event::PackageConfirmed,
        Event::Imported,
        Event::ImportConfirmed,
        Event::Verified,
        Event::AesChallengeMade,
        Event::AesProved,
    ];

    /// The `event` field's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::KekCreated => "kek created",
            Event::KekDownloaded => "kek downloaded",
            Event::TokensListed => "tokens listed",
            Event::TokenChecked => "token checked",
            Event::KeyGenerated => "key generated",
            Event::Packaged => "packaged",
            Event::PackageConfirmed => "package confirmed",
            Event::Imported => "imported",
            Event::ImportConfirmed => "import confirmed",
            Event::Verified => "verified",
            Event::AesChallengeMade => "aes challenge made",
            Event::AesProved => "aes proved",
        }
    }

    /// Whether the entry says a package exists (made now or found).
    pub fn records_package(self) -> bool {
        matches!(self, Event::Packaged | Event::PackageConfirmed)
    }

    /// Whether the entry says the vault holds the key (imported now or found).
    pub fn records_import(self) -> bool {
        matches!(self, Event::Imported | Event::ImportConfirmed)
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `prev_sha256` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Why a log does not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    #[error("line {line} is not a JSON object: {reason}")]
    Json { line: usize, reason: String },
    #[error(
        "line {line} says the previous line's SHA-256 is {stated}, but it is {actual}: a line before \
         it was edited, removed or reordered"
    )]
    Broken {
        line: usize,
        stated: String,
        actual: String,
    },
    #[error("line {line} has no prev_sha256")]
    Missing { line: usize },
}

/// The `prev_sha256` a line following `previous` must carry.
pub fn link_after(previous: Option<&str>) -> String {
    previous.map_or_else(
        || GENESIS.to_string(),
        |p| Fingerprint::of_bytes(p.as_bytes()).to_hex(),
    )
}

/// The line to append after `previous` (without its newline): `entry` plus `prev_sha256`.
pub fn next_line(previous: Option<&str>, entry: Map<String, Value>) -> String {
    let mut entry = entry;
    entry.insert("prev_sha256".into(), Value::String(link_after(previous)));
    serde_json::to_string(&Value::Object(entry)).expect("JSON values serialize")
}

/// Checks every link; returns the number of entries.
pub fn verify(text: &str) -> Result<usize, ReadChainError> {
    read_chain(text.as_bytes()).map(|chain| chain.entries())
}

/// The last non-empty line of a log, to chain the next entry to.
pub fn last_line(text: &str) -> Option<&str> {
    text.lines().rev().find(|l| !l.trim().is_empty())
}

/// A log's chain once every link checks: each entry's line number (1-based) and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// `(line, link)` per entry, in order; `link` is the SHA-256 of the line, which is the
    /// `prev_sha256` the entry after it carries.
    pub links: Vec<(usize, String)>,
}

impl Chain {
    /// How many entries the log holds.
    pub fn entries(&self) -> usize {
        self.links.len()
    }

    /// The log's head: the `prev_sha256` the next entry would carry ([`GENESIS`] for an empty
    /// log). Recorded in a ceremony's minutes, it shows later whether entries were removed
    /// from the end or added after.
    pub fn head(&self) -> String {
        self.links
            .last()
            .map_or_else(|| GENESIS.to_string(), |(_, link)| link.clone())
    }

    /// How many entries lead up to the head `head` (0 for [`GENESIS`]); `None` when no
    /// prefix of this log has that head.
    pub fn entries_up_to(&self, head: &str) -> Option<usize> {
        if head.eq_ignore_ascii_case(GENESIS) {
            return Some(0);
        }
        self.links
            .iter()
            .position(|(_, link)| link.eq_ignore_ascii_case(head))
            .map(|i| i + 1)
    }
}

/// Why a log file's bytes do not verify: a link, or a last line cut short by a crash.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReadChainError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The file ends without a newline in the middle of a line that is not a JSON object:
    /// the write of that entry was cut short. The `intact` entries before it verify.
    #[error(
        "line {line}, the last, is cut short (a crash while it was written); the {intact} \
         entries before it are intact"
    )]
    PartialLastLine { line: usize, intact: usize },
}

/// Checks every link of a log file's bytes, as [`verify`] does, telling a last line cut
/// short (no final newline, not JSON) apart from a broken link; returns each entry's link.
pub fn read_chain(bytes: &[u8]) -> Result<Chain, ReadChainError> {
    let ends_with_newline = bytes.last().is_none_or(|b| *b == b'\n');
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    let last_index = lines.len() - 1;
    let mut links: Vec<(usize, String)> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let value = match serde_json::from_slice::<Value>(line) {
            Ok(value) => value,
            Err(_) if i == last_index && !ends_with_newline => {
                return Err(ReadChainError::PartialLastLine {
                    line: i + 1,
                    intact: links.len(),
                });
            }
            Err(e) => {
                return Err(ChainError::Json {
                    line: i + 1,
                    reason: e.to_string(),
                }
                .into());
            }
        };
        let stated = value
            .get("prev_sha256")
            .and_then(Value::as_str)
            .ok_or(ChainError::Missing { line: i + 1 })?;
        let actual = links
            .last()
            .map_or_else(|| GENESIS.to_string(), |(_, link)| link.clone());
        if stated != actual {
            return Err(ChainError::Broken {
                line: i + 1,
                stated: stated.into(),
                actual,
            }
            .into());
        }
        links.push((i + 1, Fingerprint::of_bytes(line).to_hex()));
    }
    Ok(Chain { links })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(n: u32) -> Map<String, Value> {
        json!({"event": "packaged", "n": n})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn read_chain_gives_the_head_and_tells_a_cut_short_line_apart() {
        let mut log = String::new();
        for n in 0..3 {
            let line = next_line(last_line(&log), entry(n));
            log.push_str(&line);
            log.push('\n');
        }
        let chain = read_chain(log.as_bytes()).unwrap();
        assert_eq!(chain.entries(), 3);
        assert_eq!(chain.head(), link_after(last_line(&log)));
        assert_eq!(read_chain(b"").unwrap().head(), GENESIS);
        let first_head = link_after(log.lines().next());
        assert_eq!(chain.entries_up_to(&first_head), Some(1));
        assert_eq!(chain.entries_up_to(GENESIS), Some(0));
        assert_eq!(chain.entries_up_to(&"ab".repeat(32)), None);
        // A crash mid-write: the last line ends early, with no newline.
        let cut = &log[..log.len() - 10];
        assert_eq!(
            read_chain(cut.as_bytes()),
            Err(ReadChainError::PartialLastLine { line: 3, intact: 2 })
        );
        // Not JSON with its newline: a damaged line, not a cut-short one.
        let damaged = format!("{cut}\n");
        assert!(matches!(
            read_chain(damaged.as_bytes()),
            Err(ReadChainError::Chain(ChainError::Json { line: 3, .. }))
        ));
        let edited = log.replacen("\"n\":0", "\"n\":9", 1);
        assert!(matches!(
            read_chain(edited.as_bytes()),
            Err(ReadChainError::Chain(ChainError::Broken { line: 2, .. }))
        ));
    }

    #[test]
    fn chain_verifies_and_edits_show() {
        let mut log = String::new();
        for n in 0..5 {
            let line = next_line(last_line(&log), entry(n));
            log.push_str(&line);
            log.push('\n');
        }
        assert_eq!(verify(&log), Ok(5));
        assert!(log.lines().next().unwrap().contains(GENESIS));
        // Edit a value in line 2: line 3's link breaks.
        let edited = log.replacen("\"n\":1", "\"n\":9", 1);
        assert!(matches!(
            verify(&edited),
            Err(ReadChainError::Chain(ChainError::Broken { line: 3, .. }))
        ));
        // Remove line 2.
        let lines: Vec<&str> = log.lines().collect();
        let removed = [lines[0], lines[2], lines[3], lines[4]].join("\n");
        assert!(matches!(
            verify(&removed),
            Err(ReadChainError::Chain(ChainError::Broken { line: 2, .. }))
        ));
        // Swap lines 4 and 5.
        let swapped = [lines[0], lines[1], lines[2], lines[4], lines[3]].join("\n");
        assert!(matches!(
            verify(&swapped),
            Err(ReadChainError::Chain(ChainError::Broken { line: 4, .. }))
        ));
        assert!(matches!(
            verify("{\"a\":1}"),
            Err(ReadChainError::Chain(ChainError::Missing { line: 1 }))
        ));
        assert!(matches!(
            verify("nope\n"),
            Err(ReadChainError::Chain(ChainError::Json { line: 1, .. }))
        ));
        assert!(matches!(
            verify("nope"),
            Err(ReadChainError::PartialLastLine { line: 1, intact: 0 })
        ));
    }
}
