//! Appending to the ceremony's evidence record from the connected side (the chain is
//! byok-core's `evidence`; the air-gapped binary has its own appender, as the two binaries
//! share no code but byok-core).

use crate::error::{OnlineError, Result};
use byok_core::evidence;
use serde_json::{Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use tokio::sync::Mutex;

pub struct EvidenceLog {
    path: PathBuf,
    last: Mutex<Option<String>>,
    host: String,
    operator: String,
}

fn io(path: &Path, e: std::io::Error) -> OnlineError {
    OnlineError::Write {
        path: path.into(),
        reason: e.to_string(),
    }
}

impl EvidenceLog {
    /// Opens (or starts) the log; an existing log must verify first.
    pub fn open(path: &Path, operator: Option<&str>) -> Result<Self> {
        let last = match std::fs::read_to_string(path) {
            Ok(text) => {
                evidence::verify(&text).map_err(|e| {
                    OnlineError::Mismatch(format!("the evidence log {}: {e}", path.display()))
                })?;
                evidence::last_line(&text).map(String::from)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(path, e)),
        };
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".into());
        Ok(Self {
            path: path.into(),
            last: Mutex::new(last),
            host,
            operator: operator
                .map(String::from)
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "unknown".into()),
        })
    }

    /// Appends one entry and syncs it to disk.
    pub async fn append(&self, event: &str, fields: Value) -> Result<()> {
        let mut entry = Map::new();
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        entry.insert("time".into(), time.into());
        entry.insert("host".into(), self.host.clone().into());
        entry.insert("operator".into(), self.operator.clone().into());
        entry.insert("tool".into(), byok_core::TOOL_NAME_VERSION.into());
        entry.insert("event".into(), event.into());
        if let Value::Object(f) = fields {
            entry.extend(f);
        }
        let mut last = self.last.lock().await;
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
