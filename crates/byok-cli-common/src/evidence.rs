//! Appending to the ceremony's evidence log, from either workstation. The chain (each line
//! carries the SHA-256 of the one before) is byok-core's `evidence`; this is the file.
//!
//! An entry is appended and synced only after what it records is durable, so the log never
//! claims more than happened; a resumed run appends to the same chain.

use crate::files::{self, FileError, FileKind};
use byok_core::evidence::{self, ChainError, EntryHead, Event};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why the evidence log could not be opened or appended to.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error(
        "the evidence log {path} does not verify: {source}. Keep it as it is for the ceremony's \
         records, and pass another --log for this run"
    )]
    Chain { path: PathBuf, source: ChainError },
    #[error(transparent)]
    File(#[from] FileError),
}

/// An append-only, hash-chained JSON-lines log, safe to share between threads and tasks.
pub struct EvidenceLog {
    path: PathBuf,
    state: Mutex<State>,
    host: String,
    operator: String,
}

struct State {
    last: Option<String>,
    /// The `.byok` hashes the log records, with the events recorded for each.
    recorded: HashSet<(String, Event)>,
}

impl EvidenceLog {
    /// Opens the log at `path`, or starts one; an existing log must verify first.
    pub fn open(path: &Path, operator: Option<&str>) -> Result<Self, EvidenceError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(FileError::Read {
                    path: path.into(),
                    reason: e.to_string(),
                }
                .into());
            }
        };
        evidence::verify(&text).map_err(|source| EvidenceError::Chain {
            path: path.into(),
            source,
        })?;
        let recorded = text
            .lines()
            .filter_map(EntryHead::of_line)
            .filter_map(|h| h.byok_sha256.map(|sha| (sha, h.event)))
            .collect();
        Ok(Self {
            path: path.into(),
            state: Mutex::new(State {
                last: evidence::last_line(&text).map(String::from),
                recorded,
            }),
            host: host_name(),
            operator: operator.map_or_else(operator_name, String::from),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the log records the package with this SHA-256 under any of `events`.
    pub fn records(&self, byok_sha256: &str, events: &[Event]) -> bool {
        let state = self.state.lock().expect("evidence log lock");
        events
            .iter()
            .any(|e| state.recorded.contains(&(byok_sha256.to_string(), *e)))
    }

    /// Appends one entry (time, host, operator, tool and event are added to `fields`) and
    /// syncs it to disk before returning.
    pub fn append(&self, event: Event, fields: Value) -> Result<(), EvidenceError> {
        let mut entry = Map::new();
        entry.insert("time".into(), now_rfc3339().into());
        entry.insert("host".into(), self.host.clone().into());
        entry.insert("operator".into(), self.operator.clone().into());
        entry.insert("tool".into(), byok_core::TOOL_NAME_VERSION.into());
        entry.insert("event".into(), event.as_str().into());
        if let Value::Object(f) = fields {
            entry.extend(f);
        }
        let sha = entry
            .get("byok_sha256")
            .and_then(Value::as_str)
            .map(String::from);
        let mut state = self.state.lock().expect("evidence log lock");
        let line = evidence::next_line(state.last.as_deref(), entry);
        self.write_line(&line)?;
        if let Some(sha) = sha {
            state.recorded.insert((sha, event));
        }
        state.last = Some(line);
        Ok(())
    }

    fn write_line(&self, line: &str) -> Result<(), FileError> {
        let err = |e: std::io::Error| FileError::Write {
            path: self.path.clone(),
            reason: e.to_string(),
        };
        let created = !self.path.exists();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(err)?;
        if created {
            // Set after creation: a mode given at open time is masked by the umask.
            files::set_mode(&file, FileKind::EvidenceLog.mode()).map_err(err)?;
        }
        file.write_all(format!("{line}\n").as_bytes())
            .map_err(err)?;
        file.sync_all().map_err(err)?;
        if created {
            files::sync_dir(&self.path)?;
        }
        Ok(())
    }
}

/// This machine's name, for the record.
pub fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

/// Who runs the ceremony when `--operator` is not given: the login name.
pub fn operator_name() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

/// Now, RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn appends_a_verifying_chain_and_refuses_a_broken_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let log = EvidenceLog::open(&path, Some("alice")).unwrap();
        log.append(Event::Packaged, json!({"byok_sha256": "aa"}))
            .unwrap();
        assert!(log.records("aa", &[Event::Packaged]));
        assert!(!log.records("aa", &[Event::Imported]));
        drop(log);
        let log = EvidenceLog::open(&path, None).unwrap();
        assert!(log.records("aa", &[Event::Packaged, Event::PackageConfirmed]));
        log.append(Event::Imported, json!({"byok_sha256": "aa"}))
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(evidence::verify(&text), Ok(2));
        assert!(text.contains("\"operator\":\"alice\""));
        std::fs::write(&path, text.replacen("alice", "mallory", 1)).unwrap();
        assert!(matches!(
            EvidenceLog::open(&path, None),
            Err(EvidenceError::Chain { .. })
        ));
    }
}
