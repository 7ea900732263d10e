//! Appending to the ceremony's evidence log, from either workstation. The chain (each line
//! carries the SHA-256 of the one before) is byok-core's `evidence`; this is the file.
//!
//! An entry is appended and synced only after what it records is durable, so the log never
//! claims more than happened; a resumed run appends to the same chain.

use crate::files::{self, FileError, FileKind};
use byok_core::evidence::{self, Entry, Event, Logged, ReadChainError};
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
    Chain {
        path: PathBuf,
        source: ReadChainError,
    },
    #[error(transparent)]
    File(#[from] FileError),
}

/// The largest evidence log read before appending: the bound `byok-offline log verify` reads
/// with.
pub const MAX_LOG_BYTES: u64 = 1 << 30;

/// An append-only, hash-chained JSON-lines log, safe to share between threads and tasks.
pub struct EvidenceLog {
    path: PathBuf,
    state: Mutex<State>,
    host: String,
    operator: String,
}

struct State {
    last: Option<String>,
    /// The file's last entry has no newline (an editor's save): the next append starts one.
    unterminated: bool,
    /// The `.byok` hashes the log records, with the events recorded for each.
    recorded: HashSet<(String, Event)>,
    /// The key names the log records, with the events recorded for each: what a resumed
    /// batch asks of a package it cannot read.
    names: HashSet<(String, Event)>,
}

impl EvidenceLog {
    /// Opens the log at `path`, or starts one; an existing log must verify first. A symbolic
    /// link at `path` (dangling or not) is refused: appends never go through one.
    pub fn open(path: &Path, operator: Option<&str>) -> Result<Self, EvidenceError> {
        if files::is_symlink(path) {
            return Err(FileError::Symlink { path: path.into() }.into());
        }
        let text = match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            _ => files::read_text_limited(path, MAX_LOG_BYTES)?,
        };
        evidence::verify(&text).map_err(|source| EvidenceError::Chain {
            path: path.into(),
            source,
        })?;
        let (mut recorded, mut names) = (HashSet::new(), HashSet::new());
        for logged in text.lines().filter_map(Logged::of_line) {
            let event = logged.entry.event();
            if let Some(name) = logged.entry.key_name() {
                names.insert((name.to_string(), event));
            }
            if let Some(sha) = logged.entry.byok_sha256() {
                recorded.insert((sha.to_string(), event));
            }
        }
        Ok(Self {
            path: path.into(),
            state: Mutex::new(State {
                last: evidence::last_line(&text).map(String::from),
                unterminated: !text.is_empty() && !text.ends_with('\n'),
                recorded,
                names,
            }),
            host: host_name(),
            operator: operator.map_or_else(operator_name, String::from),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The log's head: the SHA-256 of its last line, which the next entry will carry as
    /// `prev_sha256` (64 zeros for an empty log). Recorded in the minutes, it lets
    /// `byok-offline log verify --expect-head` show entries later removed from the end.
    pub fn head(&self) -> String {
        let state = crate::sync::lock(&self.state, "evidence log");
        evidence::link_after(state.last.as_deref())
    }

    /// Whether the log records the package with this SHA-256 under any of `events`.
    pub fn records(&self, byok_sha256: &str, events: &[Event]) -> bool {
        let state = crate::sync::lock(&self.state, "evidence log");
        events
            .iter()
            .any(|e| state.recorded.contains(&(byok_sha256.to_string(), *e)))
    }

    /// Whether the log records the key named `key_name` under any of `events`.
    pub fn records_key(&self, key_name: &str, events: &[Event]) -> bool {
        let state = crate::sync::lock(&self.state, "evidence log");
        events
            .iter()
            .any(|e| state.names.contains(&(key_name.to_string(), *e)))
    }

    /// Appends one entry (time, host, operator, tool and commit go before it) and syncs it to
    /// disk before returning.
    pub fn append(&self, entry: Entry) -> Result<(), EvidenceError> {
        self.append_all(vec![entry])
    }

    /// Appends the entries in order, chained, with one write and one sync: a batch's group,
    /// once what they record is durable. On a failure none of them counts as recorded
    /// ([`records`](Self::records) and [`head`](Self::head) are unchanged); a crash in the
    /// middle of the write can leave a torn last line, which `log verify` names.
    pub fn append_all(&self, entries: Vec<Entry>) -> Result<(), EvidenceError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut state = crate::sync::lock(&self.state, "evidence log");
        let mut last = state.last.clone();
        let mut record = String::new();
        if state.unterminated {
            record.push('\n');
        }
        let mut keys = Vec::with_capacity(entries.len());
        for entry in entries {
            keys.push((
                entry.byok_sha256().map(String::from),
                entry.key_name().map(String::from),
                entry.event(),
            ));
            let line = evidence::next_line(last.as_deref(), self.entry(&entry));
            record.push_str(&line);
            record.push('\n');
            last = Some(line);
        }
        self.write_record(&record)?;
        state.unterminated = false;
        state.last = last;
        for (sha, name, event) in keys {
            if let Some(sha) = sha {
                state.recorded.insert((sha, event));
            }
            if let Some(name) = name {
                state.names.insert((name, event));
            }
        }
        Ok(())
    }

    /// One line's fields: the envelope (time, host, operator, tool, commit), then the
    /// entry's event and fields.
    fn entry(&self, entry: &Entry) -> Map<String, Value> {
        let envelope = evidence::Envelope {
            time: now_rfc3339(),
            host: self.host.clone(),
            operator: self.operator.clone(),
            tool: byok_core::TOOL_NAME_VERSION.into(),
            commit: Some(crate::version::COMMIT.into()),
        };
        let mut line = as_map(&envelope);
        line.extend(as_map(entry));
        line
    }

    fn write_record(&self, record: &str) -> Result<(), FileError> {
        let err = |e: std::io::Error| FileError::Write {
            path: self.path.clone(),
            reason: e.to_string(),
        };
        // Never through a symbolic link put there since `open`, and only a regular file.
        let (mut file, created) = files::open_append(&self.path, FileKind::EvidenceLog)?;
        file.write_all(record.as_bytes()).map_err(err)?;
        file.sync_all().map_err(err)?;
        if created {
            files::sync_dir(&self.path)?;
        }
        Ok(())
    }
}

/// A struct's JSON fields, in order.
fn as_map(value: &impl serde::Serialize) -> Map<String, Value> {
    match serde_json::to_value(value).expect("entries serialize") {
        Value::Object(map) => map,
        other => unreachable!("an entry is a JSON object, not {other}"),
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

/// Who runs the ceremony when `--operator` is not given: the login name, else the OS
/// account this process runs as (`$USER` is unset under cron, systemd and `env -i`).
pub fn operator_name() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(os_account_name)
}

/// The account of this process's user id, from /etc/passwd; `uid:N` when it has no entry.
fn os_account_name() -> String {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's user: its uid without a libc call.
    let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
        return "unknown".into();
    };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    account_of(&passwd, uid).unwrap_or_else(|| format!("uid:{uid}"))
}

fn account_of(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let entry_uid: u32 = fields.nth(1)?.parse().ok()?;
        (entry_uid == uid && !name.is_empty()).then(|| name.to_string())
    })
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
    use byok_core::evidence::{Imported, KekRecord, KeyRecord, Packaged, TokenRecord};

    /// A `packaged` (or, `confirmed`, a `package confirmed`) entry of key `name`, package `sha`.
    fn packaged(name: &str, sha: &str, confirmed: bool) -> Entry {
        let p = Packaged {
            key_name: name.into(),
            key: KeyRecord {
                hsm_label: name.into(),
                kind: "EC P-256".into(),
                ..KeyRecord::default()
            },
            generated: Some(true),
            token: TokenRecord::default(),
            kek: KekRecord::default(),
            byok_sha256: sha.into(),
            wrap_path: None,
            check_verdict: None,
            check_entry: None,
            package_file: None,
        };
        if confirmed {
            Entry::PackageConfirmed(p)
        } else {
            Entry::Packaged(p)
        }
    }

    fn imported(sha: &str) -> Entry {
        Entry::Imported(Imported {
            key_name: "k".into(),
            vault_kid: "kid".into(),
            byok_sha256: sha.into(),
            kek_kid: "kek".into(),
            public_key_sha256: None,
            verification: "v".into(),
        })
    }

    #[test]
    fn the_os_account_is_read_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        assert_eq!(account_of(passwd, 1000).as_deref(), Some("alice"));
        assert_eq!(account_of(passwd, 0).as_deref(), Some("root"));
        assert_eq!(account_of(passwd, 7), None);
        assert_ne!(os_account_name(), "unknown");
    }

    #[test]
    fn an_entry_after_a_last_line_without_newline_gets_its_own_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let log = EvidenceLog::open(&path, Some("alice")).unwrap();
        log.append(packaged("a", "aa", false)).unwrap();
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.trim_end()).unwrap();
        let log = EvidenceLog::open(&path, None).unwrap();
        log.append(imported("aa")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(evidence::verify(&text), Ok(2));
        assert_eq!(text.lines().count(), 2);
    }

    #[test]
    fn a_group_is_appended_chained_with_one_write_and_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let log = EvidenceLog::open(&path, Some("alice")).unwrap();
        log.append(packaged("k0", "00", false)).unwrap();
        log.append_all(Vec::new()).unwrap();
        log.append_all(vec![
            packaged("k1", "11", false),
            packaged("k2", "22", true),
        ])
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(evidence::verify(&text), Ok(3));
        assert_eq!(log.head(), evidence::link_after(evidence::last_line(&text)));
        for log in [log, EvidenceLog::open(&path, None).unwrap()] {
            assert!(log.records("11", &[Event::Packaged]));
            assert!(log.records("22", &[Event::PackageConfirmed]));
            assert!(log.records_key("k2", &[Event::Packaged, Event::PackageConfirmed]));
            assert!(!log.records_key("k2", &[Event::Packaged]));
            assert!(!log.records_key("k3", &[Event::Packaged]));
        }
    }

    #[test]
    fn appends_a_verifying_chain_and_refuses_a_broken_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let log = EvidenceLog::open(&path, Some("alice")).unwrap();
        log.append(packaged("a", "aa", false)).unwrap();
        assert!(log.records("aa", &[Event::Packaged]));
        assert!(!log.records("aa", &[Event::Imported]));
        drop(log);
        let log = EvidenceLog::open(&path, None).unwrap();
        assert!(log.records("aa", &[Event::Packaged, Event::PackageConfirmed]));
        log.append(imported("aa")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(evidence::verify(&text), Ok(2));
        assert_eq!(log.head(), evidence::link_after(evidence::last_line(&text)));
        assert!(text.contains("\"operator\":\"alice\""));
        std::fs::write(&path, text.replacen("alice", "mallory", 1)).unwrap();
        assert!(matches!(
            EvidenceLog::open(&path, None),
            Err(EvidenceError::Chain { .. })
        ));
    }
}
