//! `batch`'s durability by group: the files of finished keys are written as they come and made
//! durable together, and only then are their evidence entries appended (one write, one sync)
//! and their progress lines printed.
//!
//! Syncing each key's three files and its log entry costs several journal commits per key.
//! The committer thread writes each key's files (unsynced) as soon as its worker hands them
//! over, so the writes overlap the worker's next PKCS#11 calls, and makes what it has written
//! durable whenever it has written every key waiting, or once [`GROUP_KEYS`] keys are: one
//! filesystem sync, one directory sync and one log sync per group (a group commit). A slow
//! token gets a sync per key, overlapping the next key's calls; a fast one gets groups as large
//! as the disk needs to keep up, and the run's last group, the one sync nothing overlaps, stays
//! small. The invariant stays the single-key one: an entry is written only once what it
//! records is durable. What a crash loses is the last group's entries, never a key: a resumed
//! batch finds the files (complete after a killed process; perhaps torn after a power loss,
//! which it repackages) or the key on the token (which it packages, never generates again).

use crate::error::{OfflineError, Result};
use byok_cli_common::evidence::EvidenceLog;
use byok_cli_common::files::{self, FileKind, NewFile};
use byok_cli_common::progress::Progress;
use byok_cli_common::sync::lock;
use byok_core::evidence::{Entry, Event};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

/// At most this many keys wait for their sync while keys keep coming faster than the disk
/// syncs (one `syncfs` measured 3–9 ms on the bench machine).
pub const GROUP_KEYS: usize = 256;

/// A finished key waiting for its files to be written and its group's sync.
pub struct Finished {
    /// Its name in the manifest (what a failed write names).
    pub key: String,
    /// Its progress line (printed once it is durable and recorded).
    pub line: String,
    /// Its evidence entry, if the run has one to add.
    pub entry: Option<Entry>,
    /// The files its worker wrote already with [`files::write_new_unsynced`].
    pub files: Vec<PathBuf>,
    /// The files the committer writes for it, in this order, before the group's sync: the
    /// worker meanwhile makes the next key's PKCS#11 calls.
    pub to_write: Vec<NewFile>,
}

/// The keys finished and not yet durable, filled by the workers and emptied by [`Group::run`].
pub struct Group<'a> {
    dir: &'a Path,
    log: &'a EvidenceLog,
    progress: &'a Progress,
    size: usize,
    pending: Mutex<Pending>,
    /// Wakes the committer: a key to write, or the close.
    wake: Condvar,
    /// Wakes workers waiting for room (see [`Group::add`]).
    room: Condvar,
    /// Told the number of keys recorded each time the committer is about to wait, the lock
    /// still held: a test that hears it and then takes the lock knows the committer is waiting
    /// (ordering without sleeps).
    #[cfg(test)]
    idle: Option<std::sync::mpsc::Sender<usize>>,
    /// The size of each group recorded, in order.
    #[cfg(test)]
    groups: Mutex<Vec<usize>>,
}

#[derive(Default)]
struct Pending {
    /// Finished keys whose files are still to be written.
    keys: std::collections::VecDeque<Finished>,
    /// No more keys will come: commit what is left and stop.
    closed: bool,
}

/// What the committer took: keys to write, and whether they are the last.
struct Taken {
    keys: Vec<Finished>,
    /// None are left to write after these: the group is due.
    drained: bool,
    /// None will come after these.
    last: bool,
}

impl<'a> Group<'a> {
    /// Groups of at most `size` keys, writing into `dir` and recording in `log`.
    pub fn new(dir: &'a Path, log: &'a EvidenceLog, progress: &'a Progress, size: usize) -> Self {
        Self {
            dir,
            log,
            progress,
            size: size.max(1),
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            room: Condvar::new(),
            #[cfg(test)]
            idle: None,
            #[cfg(test)]
            groups: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        lock(&self.pending, "durability group")
    }

    /// A key finished: the committer writes its files as soon as it can, and records it with
    /// its group. While two groups' worth wait to be written already (the disk is slower than
    /// the token), the worker waits too: what a power loss leaves to redo stays bounded.
    pub fn add(&self, key: Finished) {
        let mut p = self.lock();
        while p.keys.len() >= 2 * self.size && !p.closed {
            p = self.room.wait(p).expect("group lock");
        }
        p.keys.push_back(key);
        // The committer waits only while nothing is pending: the first key wakes it.
        if p.keys.len() == 1 {
            self.wake.notify_all();
        }
    }

    /// No more keys will come (the workers have stopped, on success or on an error): what is
    /// waiting is committed and [`Group::run`] returns.
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_all();
        self.room.notify_all();
    }

    /// Until [`Group::close`], and then for the rest: writes each key's files as it comes
    /// (unsynced, while the worker goes on with the next key's PKCS#11 calls), and records the
    /// keys written as a group whenever it took every key waiting, or [`GROUP_KEYS`] are
    /// written.
    /// The first failure ends it: the keys written before it are still recorded (a key whose
    /// file cannot be written is named; those after it are not written, and a rerun packages
    /// them from the token).
    pub fn run(&self) -> Result<()> {
        let (mut group, mut recorded) = (Vec::new(), 0);
        loop {
            let taken = self.next(self.size - group.len(), recorded);
            let failure = self.write(taken.keys, &mut group);
            let due = taken.drained || failure.is_some() || group.len() >= self.size;
            if due && !group.is_empty() {
                recorded += group.len();
                #[cfg(test)]
                lock(&self.groups, "groups recorded").push(group.len());
                if let Err(e) = self.record(std::mem::take(&mut group)) {
                    // No worker may wait for room that will never come.
                    self.close();
                    return Err(e);
                }
            }
            if let Some(e) = failure {
                self.close();
                return Err(e);
            }
            if taken.last {
                return Ok(());
            }
        }
    }

    /// Waits for a key to write or the close; takes up to `room` keys.
    fn next(&self, room: usize, _recorded: usize) -> Taken {
        let mut p = self.lock();
        while p.keys.is_empty() && !p.closed {
            #[cfg(test)]
            if let Some(idle) = &self.idle {
                let _ = idle.send(_recorded);
            }
            p = self.wake.wait(p).expect("group lock");
        }
        let count = room.min(p.keys.len());
        let keys: Vec<Finished> = p.keys.drain(..count).collect();
        self.room.notify_all();
        Taken {
            keys,
            drained: p.keys.is_empty(),
            last: p.closed && p.keys.is_empty(),
        }
    }

    /// Writes the keys' files, unsynced, adding each key written to `group`. The first key
    /// whose file cannot be written (one appeared under its name since the run began) is
    /// the failure, named; the keys after it are not written.
    fn write(&self, keys: Vec<Finished>, group: &mut Vec<Finished>) -> Option<OfflineError> {
        for mut key in keys {
            if let Err(e) = files::write_all_new(&key.to_write, files::write_new_unsynced) {
                return Some(OfflineError::BatchKey {
                    name: key.key,
                    source: Box::new(e.into()),
                });
            }
            let package = key.to_write.iter().find(|f| f.kind == FileKind::Package);
            if let Some(p) = package {
                tracing::info!(key = %key.key, path = %p.path.display(), "package written");
            }
            key.files.extend(key.to_write.drain(..).map(|f| f.path));
            group.push(key);
        }
        None
    }

    /// Makes the keys' written files durable, then appends their entries, then prints their
    /// lines.
    fn record(&self, keys: Vec<Finished>) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let written: Vec<PathBuf> = keys.iter().flat_map(|k| k.files.clone()).collect();
        let mut entries = Vec::new();
        let mut lines = Vec::with_capacity(keys.len());
        for key in keys {
            entries.extend(key.entry);
            lines.push(key.line);
        }
        // Keys that wrote nothing and record nothing (packaged by an earlier run) need no sync.
        if !written.is_empty() || !entries.is_empty() {
            files::sync_group(self.dir, &written)?;
        }
        let recorded: Vec<(String, Event)> = entries
            .iter()
            .map(|e| (e.key_name().unwrap_or_default().into(), e.event()))
            .collect();
        tracing::info!(files = written.len(), keys = lines.len(), "group durable");
        self.log.append_all(entries)?;
        for (key, event) in recorded {
            tracing::info!(%key, %event, "evidence appended");
        }
        for line in lines {
            self.progress.step(&line);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use byok_core::evidence::{KekRecord, KeyRecord, Packaged, TokenRecord};
    use std::time::{Duration, Instant};

    fn finished(dir: &Path, name: &str) -> Finished {
        let path = dir.join(name);
        let entry = Entry::Packaged(Packaged {
            key_name: name.into(),
            key: KeyRecord {
                hsm_label: name.into(),
                kind: "EC P-256".into(),
                ..KeyRecord::default()
            },
            generated: Some(true),
            token: TokenRecord::default(),
            kek: KekRecord::default(),
            byok_sha256: name.into(),
            wrap_path: None,
            check_verdict: None,
            check_entry: None,
            package_file: None,
        });
        Finished {
            key: name.into(),
            line: name.into(),
            entry: Some(entry),
            files: Vec::new(),
            to_write: vec![
                NewFile {
                    path: path.with_extension("sidecar"),
                    bytes: b"s".to_vec(),
                    kind: FileKind::Sidecar,
                },
                NewFile {
                    path,
                    bytes: b"x".to_vec(),
                    kind: FileKind::Package,
                },
            ],
        }
    }

    fn entries(log: &Path) -> usize {
        std::fs::read_to_string(log)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    /// A group whose committer tells `idle` each time it is about to wait.
    fn observed<'a>(
        dir: &'a Path,
        log: &'a EvidenceLog,
        progress: &'a Progress,
        size: usize,
    ) -> (Group<'a>, Idle) {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut group = Group::new(dir, log, progress, size);
        group.idle = Some(tx);
        (group, rx)
    }

    type Idle = std::sync::mpsc::Receiver<usize>;

    /// Returns once the committer waits with `recorded` keys recorded (it told `idle` holding
    /// the lock, which the caller's next `add` takes only once the wait released it; what it
    /// told before a spurious wakeup is passed over); false after 10 s, which is a committer
    /// that never woke, not a slow one.
    fn waits_with(idle: &Idle, recorded: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Ok(told) = idle.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            if told == recorded {
                return true;
            }
        }
        false
    }

    /// The committer already waits, with nothing to write, when a key comes: it writes it and,
    /// having taken every key waiting, records it at once, before any close.
    #[test]
    fn a_key_is_recorded_as_soon_as_nothing_more_waits() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("log.jsonl");
        let log = EvidenceLog::open(&log_path, Some("t")).unwrap();
        let progress = Progress::new(2);
        let (group, idle) = observed(dir.path(), &log, &progress, 32);
        // Counts taken inside, asserted outside: a failed assertion must not leave the
        // committer waiting for a close.
        let seen = std::thread::scope(|s| {
            let runner = s.spawn(|| group.run());
            let waiting = waits_with(&idle, 0);
            group.add(finished(dir.path(), "a"));
            let one = waits_with(&idle, 1).then(|| entries(&log_path));
            group.add(finished(dir.path(), "b"));
            let two = waits_with(&idle, 2).then(|| entries(&log_path));
            group.close();
            runner.join().unwrap().unwrap();
            (waiting, one, two)
        });
        assert_eq!(
            seen,
            (true, Some(1), Some(2)),
            "each recorded without a close"
        );
        assert!(dir.path().join("a").exists() && dir.path().join("b.sidecar").exists());
        assert_eq!(*lock(&group.groups, "groups"), [1, 1]);
    }

    /// Keys that came faster than the committer took them: written and recorded in groups of
    /// at most the size, in order, the rest at the close.
    #[test]
    fn keys_waiting_are_recorded_in_groups_of_at_most_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("log.jsonl");
        let log = EvidenceLog::open(&log_path, Some("t")).unwrap();
        let progress = Progress::new(5);
        // Size 3: a worker waits for room from 6 keys waiting.
        let group = Group::new(dir.path(), &log, &progress, 3);
        for name in ["a", "b", "c", "d", "e"] {
            group.add(finished(dir.path(), name));
        }
        group.close();
        group.run().unwrap();
        assert_eq!(*lock(&group.groups, "groups"), [3, 2]);
        let text = std::fs::read_to_string(&log_path).unwrap();
        assert_eq!(byok_core::evidence::verify(&text), Ok(5));
        let names: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["key_name"].to_string())
            .collect();
        assert_eq!(names, ["\"a\"", "\"b\"", "\"c\"", "\"d\"", "\"e\""]);
    }

    #[test]
    fn a_failed_sync_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("log.jsonl");
        let log = EvidenceLog::open(&log_path, Some("t")).unwrap();
        let progress = Progress::new(1);
        let gone = dir.path().join("gone");
        let group = Group::new(&gone, &log, &progress, 1);
        group.add(finished(dir.path(), "a"));
        group.close();
        assert!(group.run().is_err());
        assert_eq!(entries(&log_path), 0);
    }

    /// A file that appeared under a key's name since the run began: the run stops naming the
    /// key, the key before it in the group is still durable and recorded, the one after it is
    /// not written, and the failed key's own first file (the sidecar) is removed again.
    #[test]
    fn a_file_in_the_way_stops_the_run_naming_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("log.jsonl");
        let log = EvidenceLog::open(&log_path, Some("t")).unwrap();
        let progress = Progress::new(3);
        std::fs::write(dir.path().join("b"), b"someone else's").unwrap();
        let group = Group::new(dir.path(), &log, &progress, 3);
        for name in ["a", "b", "c"] {
            group.add(finished(dir.path(), name));
        }
        group.close();
        let err = group.run().unwrap_err();
        assert!(
            matches!(&err, OfflineError::BatchKey { name, .. } if name == "b"),
            "{err}"
        );
        assert!(err.to_string().contains('b'), "{err}");
        assert_eq!(entries(&log_path), 1, "a is recorded, b and c are not");
        assert!(log.records("a", &[Event::Packaged]));
        assert!(dir.path().join("a").exists() && dir.path().join("a.sidecar").exists());
        assert!(
            !dir.path().join("b.sidecar").exists(),
            "b's sidecar removed again"
        );
        assert_eq!(
            std::fs::read(dir.path().join("b")).unwrap(),
            b"someone else's"
        );
        assert!(!dir.path().join("c").exists() && !dir.path().join("c.sidecar").exists());
    }
}
