//! The writer: one thread owns the connection every change goes through. It takes the jobs
//! waiting in its queue as one group, runs each inside its own SAVEPOINT (a job that fails
//! is rolled back alone and answered with its error), commits the group once, and only then
//! answers every job. So concurrent writes share a commit (one fsync with `--persist`), and
//! no one is answered before the change is durable.

use super::DbError;
use crate::model::{KeyEntry, Pending};
use crate::sync::lock;
use rusqlite::Connection;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

/// Sends a job's outcome to whoever waits for it. It is given the group's fate (committed,
/// or why not); a job that failed answers its own error whatever it is given.
pub type Answer = Box<dyn FnOnce(Result<(), DbError>) + Send>;

/// A change to one key: works on the key's slot and says whether it succeeded.
pub type Work = Box<dyn FnOnce(&mut Option<KeyEntry>) -> (bool, Answer) + Send>;

/// The most jobs one commit takes; more wait for the next.
const MAX_GROUP: usize = 512;

/// Deletions and recoveries in progress, by lowercase name. In memory only: after a restart
/// they have finished.
pub type Pendings = Arc<Mutex<HashMap<String, Pending>>>;

pub struct Job {
    pub name_lc: String,
    pub work: Work,
}

/// The queue to the writer thread; dropping the last sender stops it.
pub struct Writer {
    tx: Mutex<Option<Sender<Job>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Writer {
    pub fn start(conn: Connection, pendings: Pendings) -> std::io::Result<Self> {
        let (tx, rx) = channel();
        let thread = std::thread::Builder::new()
            .name("kv-emulator-store".into())
            .spawn(move || run(conn, rx, pendings))?;
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues a job; false when the writer has stopped.
    pub fn send(&self, job: Job) -> bool {
        let tx = lock(&self.tx);
        tx.as_ref().is_some_and(|tx| tx.send(job).is_ok())
    }

    /// Stops taking jobs, lets the queued ones finish, and closes the connection.
    pub fn stop(&self) {
        lock(&self.tx).take();
        let thread = lock(&self.thread).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

fn run(conn: Connection, rx: Receiver<Job>, pendings: Pendings) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        commit_group(&conn, group, &pendings);
    }
}

/// Runs a group in one transaction and answers each job once it is committed (or failed).
pub(super) fn commit_group(conn: &Connection, group: Vec<Job>, pendings: &Pendings) {
    // A transaction a failed COMMIT (and ROLLBACK) left open would refuse every later
    // BEGIN: end it and try once more.
    let begun = conn.execute_batch("BEGIN IMMEDIATE").or_else(|_| {
        let _ = conn.execute_batch("ROLLBACK");
        conn.execute_batch("BEGIN IMMEDIATE")
    });
    if let Err(e) = begun {
        // The work never ran: dropping it drops its answer, and the waiting side reports
        // an internal error; the reason is in the log.
        log(&e);
        drop(group);
        return;
    }
    let mut overlay: HashMap<String, Option<Pending>> = HashMap::new();
    let mut answers = Vec::with_capacity(group.len());
    for job in group {
        if let Some(answer) = run_job(conn, job, pendings, &mut overlay) {
            answers.push(answer);
        }
    }
    // Pendings go in before the commit: they only hide a key that is between states, so
    // showing one a moment early is harmless, while a key shown deleted without its
    // pending deletion would be wrong.
    let undo = apply(pendings, overlay);
    let outcome = conn.execute_batch("COMMIT").map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        apply(pendings, undo);
        not_saved(&e)
    });
    for answer in answers {
        answer(outcome.clone());
    }
}

/// One job inside its own savepoint; its answer, or none if it panicked or the database
/// failed before it ran (the waiting side then reports an internal error).
fn run_job(
    conn: &Connection,
    job: Job,
    pendings: &Pendings,
    overlay: &mut HashMap<String, Option<Pending>>,
) -> Option<Answer> {
    let Job { name_lc, work } = job;
    if let Err(e) = conn.execute_batch("SAVEPOINT job") {
        log(&e);
        return None;
    }
    let rollback = || {
        let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
    };
    let before = match crate::store::db::load_entry(conn, &name_lc) {
        Ok(entry) => entry.map(|mut e| {
            e.pending = match overlay.get(&name_lc) {
                Some(p) => *p,
                None => lock(pendings).get(&name_lc).copied(),
            };
            e
        }),
        Err(e) => {
            log(&e);
            rollback();
            return None;
        }
    };
    let mut slot = before.clone();
    let Ok((ok, answer)) = catch_unwind(AssertUnwindSafe(|| work(&mut slot))) else {
        rollback();
        return None;
    };
    if !ok {
        rollback();
        return Some(answer);
    }
    let before_pending = before.as_ref().and_then(|e| e.pending);
    let after_pending = slot.as_ref().and_then(|e| e.pending);
    let saved = crate::store::db::save_change(conn, &name_lc, before.as_ref(), slot.as_ref())
        .and_then(|()| {
            // The pending change is saved with the key, so a restart finds it still running.
            if before_pending != after_pending {
                crate::store::db::save_pending(conn, &name_lc, after_pending.as_ref())?;
            }
            Ok(())
        });
    match saved {
        Ok(()) => {
            let _ = conn.execute_batch("RELEASE job");
            overlay.insert(name_lc, slot.and_then(|e| e.pending));
            Some(answer)
        }
        Err(e) => {
            rollback();
            let why = not_saved(&e);
            Some(Box::new(move |_| answer(Err(why))))
        }
    }
}

/// Puts `changes` into the pendings; returns what they replaced (to undo them).
fn apply(
    pendings: &Pendings,
    changes: HashMap<String, Option<Pending>>,
) -> HashMap<String, Option<Pending>> {
    let mut map = lock(pendings);
    changes
        .into_iter()
        .map(|(name, pending)| {
            let old = match pending {
                Some(p) => map.insert(name.clone(), p),
                None => map.remove(&name),
            };
            (name, old)
        })
        .collect()
}

fn not_saved(e: &rusqlite::Error) -> DbError {
    DbError::Save(e.to_string())
}

fn log(e: &rusqlite::Error) {
    eprintln!("kv-emulator: the key database refused a change: {e}");
}
