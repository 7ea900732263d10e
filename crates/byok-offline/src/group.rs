//! `batch`'s durability by group: the files of finished keys are made durable together, and
//! only then are their evidence entries appended (one write, one sync) and their progress lines
//! printed.
//!
//! Syncing each key's three files and its log entry costs several journal commits per key;
//! a group of up to [`GROUP_KEYS`] keys, or whatever finished within [`GROUP_WAIT`], costs one
//! filesystem sync, one directory sync and one log sync. The invariant stays the single-key
//! one: an entry is written only once what it records is durable. What a crash loses is the
//! last group's entries, never a key: a resumed batch finds the files (complete after a killed
//! process; perhaps torn after a power loss, which it repackages) or the key on the token (which
//! it packages, never generates again).

use crate::error::{OfflineError, Result};
use byok_cli_common::evidence::EvidenceLog;
use byok_cli_common::files::{self, FileKind, NewFile};
use byok_cli_common::progress::Progress;
use byok_cli_common::sync::lock;
use byok_core::evidence::{Entry, Event};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// At most this many keys wait for their sync. One `syncfs` measured 3–9 ms on the bench
/// machine: at 32 keys a group that was 0.1–0.3 ms a key, the size of SoftHSM's whole per-key
/// floor; at 256 it is a few hundredths, and [`GROUP_WAIT`] still bounds how long a key waits.
pub const GROUP_KEYS: usize = 256;
/// No key waits longer than this for its sync (when nothing more finishes).
pub const GROUP_WAIT: Duration = Duration::from_millis(250);

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
    wait: Duration,
    pending: Mutex<Pending>,
    /// Wakes the committer: a full group, or the close.
    wake: Condvar,
    /// Wakes workers waiting for room (see [`Group::add`]).
    room: Condvar,
    /// Told the number of keys pending and taken each time the committer is about to wait, the lock
    /// still held: a test that hears it and then takes the lock knows the committer is waiting
    /// (ordering without sleeps).
    #[cfg(test)]
    idle: Option<std::sync::mpsc::Sender<(usize, usize)>>,
}

#[derive(Default)]
struct Pending {
    keys: Vec<Finished>,
    /// When the oldest waiting key finished.
    since: Option<Instant>,
    /// No more keys will come: commit what is left and stop.
    closed: bool,
    /// Keys taken for a commit so far (told to a test's listener).
    #[cfg(test)]
    taken: usize,
}

impl<'a> Group<'a> {
    /// Groups of `size` keys or `wait`, writing into `dir` and recording in `log`.
    pub fn new(
        dir: &'a Path,
        log: &'a EvidenceLog,
        progress: &'a Progress,
        size: usize,
        wait: Duration,
    ) -> Self {
        Self {
            dir,
            log,
            progress,
            size: size.max(1),
            wait,
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            room: Condvar::new(),
            #[cfg(test)]
            idle: None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        lock(&self.pending, "durability group")
    }

    /// A key finished: it waits for its group. While two groups' worth wait already (the
    /// disk is slower than the token), the worker waits too: what a power loss leaves to
    /// redo stays bounded.
    pub fn add(&self, key: Finished) {
        let mut p = self.lock();
        while p.keys.len() >= 2 * self.size && !p.closed {
            p = self.room.wait(p).expect("group lock");
        }
        // The first key of a group starts its deadline: the committer, which waits without one
        // while nothing is pending, must be woken to wait with it, or a lone key would wait for
        // a full group or the close.
        let first = p.since.is_none();
        p.since.get_or_insert_with(Instant::now);
        p.keys.push(key);
        if first || p.keys.len() >= self.size {
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

    /// Commits groups until [`Group::close`] and then the rest; the first failure ends it (the
    /// keys then waiting are not recorded: a rerun confirms them from their files).
    pub fn run(&self) -> Result<()> {
        loop {
            let (keys, last) = self.next();
            if let Err(e) = self.commit(keys) {
                // No worker may wait for room that will never come.
                self.close();
                return Err(e);
            }
            if last {
                return Ok(());
            }
        }
    }

    /// Waits for a full group, the oldest key's deadline, or the close; takes the keys, and
    /// says whether this is the last group.
    fn next(&self) -> (Vec<Finished>, bool) {
        let mut p = self.lock();
        loop {
            if p.closed || p.keys.len() >= self.size {
                break;
            }
            p = match p.since {
                None => {
                    self.signal_idle(&p);
                    self.wake.wait(p).expect("group lock")
                }
                Some(since) => {
                    let left = self.wait.saturating_sub(since.elapsed());
                    if left.is_zero() {
                        break;
                    }
                    self.signal_idle(&p);
                    self.wake.wait_timeout(p, left).expect("group lock").0
                }
            };
        }
        p.since = None;
        #[cfg(test)]
        {
            p.taken += p.keys.len();
        }
        self.room.notify_all();
        (std::mem::take(&mut p.keys), p.closed)
    }

    /// Tells a test's listener that the committer is about to wait (a no-op outside tests).
    fn signal_idle(&self, _pending: &Pending) {
        #[cfg(test)]
        if let Some(idle) = &self.idle {
            let _ = idle.send((_pending.keys.len(), _pending.taken));
        }
    }

    /// Writes the keys' files, makes them durable, then appends their entries, then prints
    /// their lines. A key whose file cannot be written (one appeared under its name since the
    /// run began) stops the run, named: the keys before it in the group are still made durable
    /// and recorded, those after it are not written (a rerun packages them from the token).
    fn commit(&self, keys: Vec<Finished>) -> Result<()> {
        let mut written_keys = Vec::with_capacity(keys.len());
        let mut failure = None;
        for mut key in keys {
            match files::write_all_new(&key.to_write, files::write_new_unsynced) {
                Ok(()) => {
                    let package = key.to_write.iter().find(|f| f.kind == FileKind::Package);
                    if let Some(p) = package {
                        tracing::info!(key = %key.key, path = %p.path.display(), "package written");
                    }
                    key.files.extend(key.to_write.drain(..).map(|f| f.path));
                    written_keys.push(key);
                }
                Err(e) => {
                    failure = Some(OfflineError::BatchKey {
                        name: key.key,
                        source: Box::new(e.into()),
                    });
                    break;
                }
            }
        }
        self.record(written_keys)?;
        failure.map_or(Ok(()), Err)
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
        wait: Duration,
    ) -> (Group<'a>, Idle) {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut group = Group::new(dir, log, progress, size, wait);
        group.idle = Some(tx);
        (group, rx)
    }

    type Idle = std::sync::mpsc::Receiver<(usize, usize)>;

    /// Returns once the committer waits with `pending` keys and `taken` committed (it told
    /// `idle` holding the lock, which the caller's next `add` takes only once the wait released
    /// it; what it told before a spurious wakeup is passed over); false after 10 s, which is a
    /// committer that never woke, not a slow one.
    fn waits_with(idle: &Idle, pending: usize, taken: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Ok(told) = idle.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            if told == (pending, taken) {
                return true;
            }
        }
        false
    }

    #[test]
    fn a_full_group_is_recorded_before_the_close_and_the_rest_at_it() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("log.jsonl");
        let log = EvidenceLog::open(&log_path, Some("t")).unwrap();
        let progress = Progress::new(3);
        // A long wait: only the size (and the close) may commit.
        let (group, idle) = observed(dir.path(), &log, &progress, 2, Duration::from_secs(600));
        // Counts taken inside, asserted outside: a failed assertion must not leave the
        // committer waiting for a close.
        let counts = std::thread::scope(|s| {
            let runner = s.spawn(|| group.run());
            let mut seen = vec![waits_with(&idle, 0, 0)];
            group.add(finished(dir.path(), "a"));
            seen.push(waits_with(&idle, 1, 0));
            let one = entries(&log_path);
            group.add(finished(dir.path(), "b"));
            seen.push(waits_with(&idle, 0, 2));
            let full = entries(&log_path);
            group.add(finished(dir.path(), "c"));
            seen.push(waits_with(&idle, 1, 2));
            let third = entries(&log_path);
            group.close();
            runner.join().unwrap().unwrap();
            (seen, one, full, third)
        });
        assert_eq!(
            counts,
            (vec![true; 4], 0, 2, 2),
            "one key is no group; the full one is recorded"
        );
        assert_eq!(entries(&log_path), 3, "the rest at the close");
        assert!(log.records("c", &[Event::Packaged]));
        let text = std::fs::read_to_string(&log_path).unwrap();
        assert_eq!(byok_core::evidence::verify(&text), Ok(3));
    }

    /// The committer already waits, with no key pending, when a lone key comes: it must wake
    /// and commit it once the group's wait is over, before any close.
    #[test]
    fn a_lone_key_is_recorded_after_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("log.jsonl");
        let log = EvidenceLog::open(&log_path, Some("t")).unwrap();
        let progress = Progress::new(1);
        let (group, idle) = observed(dir.path(), &log, &progress, 32, Duration::ZERO);
        let (waiting, recorded) = std::thread::scope(|s| {
            let runner = s.spawn(|| group.run());
            let waiting = waits_with(&idle, 0, 0);
            group.add(finished(dir.path(), "a"));
            // Woken by the key, the committer commits it at once (no wait) and waits again.
            let recorded = waits_with(&idle, 0, 1).then(|| entries(&log_path));
            group.close();
            runner.join().unwrap().unwrap();
            (waiting, recorded)
        });
        assert!(waiting, "the committer waits before the key comes");
        assert_eq!(recorded, Some(1), "recorded without a close");
    }

    #[test]
    fn a_failed_sync_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("log.jsonl");
        let log = EvidenceLog::open(&log_path, Some("t")).unwrap();
        let progress = Progress::new(1);
        let gone = dir.path().join("gone");
        let group = Group::new(&gone, &log, &progress, 1, GROUP_WAIT);
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
        let group = Group::new(dir.path(), &log, &progress, 3, Duration::from_secs(600));
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
