//! The ceremony's evidence record: JSON lines, each carrying the SHA-256 of the line before it
//! (`prev_sha256`; 64 zeros for the first), so an edited, removed or reordered line shows.
//! Entries carry ids, fingerprints and hashes, never a secret.

use crate::fingerprint::Fingerprint;
use serde_json::{Map, Value};

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
pub fn verify(text: &str) -> Result<usize, ChainError> {
    let mut previous: Option<&str> = None;
    let mut count = 0;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line).map_err(|e| ChainError::Json {
            line: i + 1,
            reason: e.to_string(),
        })?;
        let stated = value
            .get("prev_sha256")
            .and_then(Value::as_str)
            .ok_or(ChainError::Missing { line: i + 1 })?;
        let actual = link_after(previous);
        if stated != actual {
            return Err(ChainError::Broken {
                line: i + 1,
                stated: stated.into(),
                actual,
            });
        }
        previous = Some(line);
        count += 1;
    }
    Ok(count)
}

/// The last non-empty line of a log, to chain the next entry to.
pub fn last_line(text: &str) -> Option<&str> {
    text.lines().rev().find(|l| !l.trim().is_empty())
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
            Err(ChainError::Broken { line: 3, .. })
        ));
        // Remove line 2.
        let lines: Vec<&str> = log.lines().collect();
        let removed = [lines[0], lines[2], lines[3], lines[4]].join("\n");
        assert!(matches!(
            verify(&removed),
            Err(ChainError::Broken { line: 2, .. })
        ));
        // Swap lines 4 and 5.
        let swapped = [lines[0], lines[1], lines[2], lines[4], lines[3]].join("\n");
        assert!(matches!(
            verify(&swapped),
            Err(ChainError::Broken { line: 4, .. })
        ));
        assert!(matches!(
            verify("{\"a\":1}"),
            Err(ChainError::Missing { line: 1 })
        ));
        assert!(matches!(
            verify("nope"),
            Err(ChainError::Json { line: 1, .. })
        ));
    }
}
