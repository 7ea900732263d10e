//! Reading the logs the minutes are made of. Each chain is verified (byok-core's
//! `read_chain`) before any entry is read: the minutes never show a record that does not
//! check out.

use super::MinutesError;
use crate::files;
use byok_core::evidence::{self, Chain, Entry, Envelope, Logged};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// The most a log may hold for the minutes: about a hundred thousand entries, far more than
/// a printed document can show.
pub const MAX_LOG_BYTES: u64 = 64 * 1024 * 1024;

/// One log, verified.
#[derive(Debug, Clone)]
pub struct Log {
    pub path: PathBuf,
    pub chain: Chain,
    /// One per entry, in the file's order.
    pub lines: Vec<Line>,
}

/// One entry of a log.
#[derive(Debug, Clone)]
pub struct Line {
    /// The line's number in the file (1-based).
    pub number: usize,
    /// When, where, who and which tool: the entry's own, or as much of it as an entry of an
    /// unknown shape has.
    pub envelope: Envelope,
    /// The `event` field as written.
    pub event: String,
    /// The typed entry; `None` for an event this version does not know, or whose fields do
    /// not read.
    pub entry: Option<Entry>,
    /// The field names of an entry that did not read (for the timeline).
    pub fields: Vec<String>,
}

/// Reads every log; refuses a log named twice (the same file, by any path).
pub fn read_all(paths: &[PathBuf]) -> Result<Vec<Log>, MinutesError> {
    let mut seen = Vec::new();
    let mut logs = Vec::with_capacity(paths.len());
    for path in paths {
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        if seen.contains(&canonical) {
            return Err(MinutesError::Twice { path: path.clone() });
        }
        seen.push(canonical);
        logs.push(read(path)?);
    }
    Ok(logs)
}

/// Reads one log and verifies its chain.
pub fn read(path: &Path) -> Result<Log, MinutesError> {
    let bytes = files::read_limited(path, MAX_LOG_BYTES)?;
    let chain = evidence::read_chain(&bytes).map_err(|source| MinutesError::Chain {
        path: path.into(),
        source,
    })?;
    Ok(of_verified(path, &bytes, chain))
}

/// The entries of a log whose chain verified as `chain`.
pub fn of_verified(path: &Path, bytes: &[u8], chain: Chain) -> Log {
    let raw: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    let lines = chain
        .links
        .iter()
        .map(|(number, _)| {
            let line = raw[number - 1];
            line_of(*number, line.strip_suffix(b"\r").unwrap_or(line))
        })
        .collect();
    Log {
        path: path.into(),
        chain,
        lines,
    }
}

/// One verified line: a JSON object with `prev_sha256`.
fn line_of(number: usize, bytes: &[u8]) -> Line {
    let map = match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => map,
        // read_chain found `prev_sha256` in it, so it is an object.
        _ => Map::new(),
    };
    let event = string(&map, "event");
    match serde_json::from_value::<Logged>(Value::Object(map.clone())) {
        Ok(logged) => Line {
            number,
            envelope: logged.envelope,
            event,
            entry: Some(logged.entry),
            fields: Vec::new(),
        },
        Err(_) => Line {
            number,
            envelope: Envelope {
                time: string(&map, "time"),
                host: string(&map, "host"),
                operator: string(&map, "operator"),
                tool: string(&map, "tool"),
                commit: map.get("commit").map(|_| string(&map, "commit")),
            },
            event,
            entry: None,
            fields: map
                .keys()
                .filter(|k| !ENVELOPE_FIELDS.contains(&k.as_str()))
                .cloned()
                .collect(),
        },
    }
}

/// The fields every entry has, left out of an unknown entry's field list.
const ENVELOPE_FIELDS: [&str; 7] = [
    "time",
    "host",
    "operator",
    "tool",
    "commit",
    "event",
    "prev_sha256",
];

/// A field as text: a string as it is, any other value as JSON, a missing one empty.
fn string(map: &Map<String, Value>, name: &str) -> String {
    match map.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}
