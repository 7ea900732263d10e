//! Appending to the ceremony's evidence record (the chain itself is byok-core's `evidence`).

use crate::error::{OfflineError, Result};
use byok_core::evidence;
use serde_json::{Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// An append-only, hash-chained JSON-lines log, safe to share between threads.
pub struct EvidenceLog {
    path: PathBuf,
    last: Mutex<Option<String>>,
    /// The `.byok` hashes the log already records.
    recorded: Mutex<std::collections::HashSet<String>>,
    host: String,
    operator: String,
}

fn io(path: &Path, e: std::io::Error) -> OfflineError {
    OfflineError::Write {
        path: path.into(),
        reason: e.to_string(),
    }
}

/// This machine's name, for the record.
pub fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Now, RFC 3339 UTC.
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl EvidenceLog {
    /// Opens (or starts) the log at `path`; an existing log must verify first.
    pub fn open(path: &Path, operator: Option<&str>) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => {
                evidence::verify(&text).map_err(|e| {
                    OfflineError::BadResult(format!("the evidence log {}: {e}", path.display()))
                })?;
                text
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(path, e)),
        };
        let last = evidence::last_line(&text).map(String::from);
        let recorded = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| {
                v.get("byok_sha256")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .collect();
        Ok(Self {
            path: path.into(),
            last: Mutex::new(last),
            recorded: Mutex::new(recorded),
            host: host_name(),
            operator: operator
                .map(String::from)
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "unknown".into()),
        })
    }

    /// Whether the log already records the package with this SHA-256.
    pub fn records(&self, byok_sha256: &str) -> bool {
        self.recorded
            .lock()
            .expect("log lock")
            .contains(byok_sha256)
    }

    /// Appends one entry (time, host, operator, tool are added) and syncs it to disk.
    pub fn append(&self, event: &str, fields: Value) -> Result<()> {
        let mut entry = Map::new();
        entry.insert("time".into(), now().into());
        entry.insert("host".into(), self.host.clone().into());
        entry.insert("operator".into(), self.operator.clone().into());
        entry.insert("tool".into(), byok_core::TOOL_NAME_VERSION.into());
        entry.insert("event".into(), event.into());
        if let Value::Object(f) = fields {
            entry.extend(f);
        }
        if let Some(sha) = entry.get("byok_sha256").and_then(Value::as_str) {
            self.recorded
                .lock()
                .expect("log lock")
                .insert(sha.to_string());
        }
        let mut last = self.last.lock().expect("log lock");
        let line = evidence::next_line(last.as_deref(), entry);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| io(&self.path, e))?;
        file.write_all(format!("{line}\n").as_bytes())
            .map_err(|e| io(&self.path, e))?;
        file.sync_all().map_err(|e| io(&self.path, e))?;
        *last = Some(line);
        Ok(())
    }
}
