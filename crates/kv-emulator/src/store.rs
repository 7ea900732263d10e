//! The emulator's keys, in a SQLite database: `STATE_DIR/state.db` with `--persist` (WAL,
//! `synchronous=FULL`: a change is on disk before its response), otherwise a database in
//! memory (tmpfs) private to this process, through the same code.
//!
//! - reads ([`Store::entry`], [`Store::page`]) go through a small pool of reader
//!   connections and see committed changes only;
//! - writes ([`Store::modify`]) go to one writer thread ([`writer`]), which groups the
//!   changes waiting for it into one commit, each in its own savepoint;
//! - one row per key and one per key version ([`db`]): a write saves the rows it changed,
//!   so its cost does not grow with the number of keys, and opening a database loads none;
//! - a deletion or recovery still running (`--delete-delay`) is kept in memory and, with
//!   `--persist`, in the `pending` table, so it goes on running across a restart;
//! - a `state.json` from an older kv-emulator is imported once ([`migrate`]).

mod db;
mod migrate;
mod writer;

use crate::model::{KeyEntry, Pending};
use crate::state_dir::{DB_FILE, FileError, STATE_FILE};
use crate::sync;
use db::{Found, Location, SCHEMA_VERSION};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use writer::{Answer, Job, Pendings, Work, Writer};

/// Why the key database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(
        "{} is not a state file this kv-emulator reads ({reason}); move it away to start with \
         no keys, or run the kv-emulator version that wrote it",
        path.display()
    )]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "cannot open the key database {} ({reason}); make it and its directory readable and \
         writable by this user, or pass another --state-dir",
        path.display()
    )]
    Open { path: PathBuf, reason: String },
    #[error(
        "{} is in use by another kv-emulator (it holds the lock on its state directory); stop \
         that emulator first, or pass another --state-dir",
        path.display()
    )]
    Locked { path: PathBuf },
    #[error(
        "{} is not a kv-emulator key database ({reason}); move it away to start with no keys, \
         or pass another --state-dir",
        path.display()
    )]
    NotOurs { path: PathBuf, reason: String },
    #[error(
        "{} has schema version {found}, newer than this kv-emulator reads ({supported}); run \
         the kv-emulator version that wrote it, or move the file away to start with no keys",
        path.display()
    )]
    Newer {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
}

/// Why a read or a change of the key database failed (while serving; [`StoreError`] is why it
/// could not be opened). The service answers each with a 500.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DbError {
    #[error("could not read the key database: {0}")]
    Read(String),
    #[error("could not save the change: {0}")]
    Save(String),
    #[error("the key database is closed: the emulator is stopping")]
    Closed,
    #[error("the change was not saved: the key database failed (the emulator's log says why)")]
    Failed,
}

pub type DbResult<T> = Result<T, DbError>;

/// Reader connections kept open between reads.
const MAX_IDLE_READERS: usize = 16;

pub struct Store {
    location: Location,
    readers: Mutex<Vec<Connection>>,
    writer: Writer,
    pendings: Pendings,
    /// With `--persist`: the state directory, locked so no other kv-emulator serves it.
    lock: Mutex<Option<std::fs::File>>,
}

impl Store {
    /// The database in `dir` (`--persist`), or a new in-memory one.
    pub fn open(dir: Option<&Path>) -> Result<Self, StoreError> {
        let (location, lock) = match dir {
            Some(dir) => (Location::file(dir.join(DB_FILE)), Some(lock_dir(dir)?)),
            None => (Location::memory().map_err(memory_error)?, None),
        };
        let path = location.path.clone();
        let conn = location.open_writer().map_err(|e| open_error(&path, e))?;
        prepare(&conn, dir, &path)?;
        // Deletions and recoveries a persisted run left running go on where they were.
        conn.execute_batch(db::PENDING_SCHEMA)
            .map_err(|e| open_error(&path, e))?;
        let pendings = Pendings::default();
        *sync::lock(&pendings) = db::load_pendings(&conn).map_err(|e| open_error(&path, e))?;
        let writer = Writer::start(conn, pendings.clone()).map_err(|e| StoreError::Open {
            path: path.clone(),
            reason: format!("cannot start its writer thread: {e}"),
        })?;
        Ok(Self {
            location,
            readers: Mutex::default(),
            writer,
            pendings,
            lock: Mutex::new(lock),
        })
    }

    /// The key `name` (any case), all its versions; None if there is none.
    pub async fn entry(&self, name: &str) -> DbResult<Option<KeyEntry>> {
        let name_lc = name.to_ascii_lowercase();
        let entry = self.read(|conn| db::load_entry(conn, &name_lc))?;
        Ok(entry.map(|mut e| {
            e.pending = self.pending_of(&name_lc);
            e
        }))
    }

    /// Changes the key `name` (any case): `f` gets its slot (None: no such key; set it to
    /// None to remove the key) and runs on the writer thread. The change is saved, and the
    /// result returned, only if `f` succeeds, and only once the change is committed. `f`'s
    /// error is the caller's; the database's own failures are turned into it.
    pub async fn modify<T, E, F>(&self, name: &str, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&mut Option<KeyEntry>) -> Result<T, E> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let work: Work = Box::new(move |slot| match f(slot) {
            Ok(value) => {
                let answer: Answer = Box::new(move |saved| {
                    let _ = tx.send(saved.map(|()| value).map_err(E::from));
                });
                (true, answer)
            }
            Err(e) => {
                let answer: Answer = Box::new(move |_| {
                    let _ = tx.send(Err(e));
                });
                (false, answer)
            }
        });
        let job = Job {
            name_lc: name.to_ascii_lowercase(),
            work,
        };
        if !self.writer.send(job) {
            return Err(DbError::Closed.into());
        }
        rx.await.unwrap_or_else(|_| Err(DbError::Failed.into()))
    }

    /// A page of keys in name order: deleted ones or live ones, those `keep` accepts given
    /// what is still running on them, from the `skip`th, at most `max`; and whether more
    /// follow. Only the page's keys are loaded.
    pub async fn page(
        &self,
        deleted: bool,
        skip: usize,
        max: usize,
        keep: impl Fn(Option<Pending>) -> bool,
    ) -> DbResult<(Vec<KeyEntry>, bool)> {
        self.read(|conn| {
            // One snapshot for the scan and the loads.
            let tx = conn.unchecked_transaction()?;
            let (mut names, mut skipped, mut more) = (Vec::new(), 0, false);
            db::scan_names(&tx, deleted, |name_lc| {
                if !keep(self.pending_of(&name_lc)) {
                    return true;
                }
                if skipped < skip {
                    skipped += 1;
                    return true;
                }
                if names.len() == max {
                    more = true;
                    return false;
                }
                names.push(name_lc);
                true
            })?;
            let mut entries = Vec::with_capacity(names.len());
            for name_lc in names {
                if let Some(mut e) = db::load_entry(&tx, &name_lc)? {
                    e.pending = self.pending_of(&name_lc);
                    entries.push(e);
                }
            }
            Ok((entries, more))
        })
    }

    /// Stops the writer (queued changes finish), closes the connections and unlocks the
    /// state directory, so another emulator may open it.
    pub fn close(&self) {
        self.writer.stop();
        sync::lock(&self.readers).clear();
        sync::lock(&self.lock).take();
    }

    fn pending_of(&self, name_lc: &str) -> Option<Pending> {
        let map = sync::lock(&self.pendings);
        map.get(name_lc).copied()
    }

    /// Runs `f` on an idle reader connection (a new one if none is idle). Reads are short
    /// indexed lookups, so they run on the calling thread.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> DbResult<T> {
        let idle = sync::lock(&self.readers).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.location.open_reader().map_err(read_error)?,
        };
        let out = f(&conn).map_err(read_error);
        let mut readers = sync::lock(&self.readers);
        if readers.len() < MAX_IDLE_READERS {
            readers.push(conn);
        }
        out
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

/// Whether `dir` holds keys from an earlier `--persist` run (a database with a key in it,
/// or a `state.json` still to import). A database that cannot be read counts as holding
/// keys: opening it will say what is wrong.
pub fn holds_keys(dir: &Path) -> bool {
    if dir.join(STATE_FILE).exists() {
        return true;
    }
    let path = dir.join(DB_FILE);
    path.exists()
        && Location::file(path)
            .open_reader()
            .and_then(|conn| db::holds_keys(&conn))
            .unwrap_or(true)
}

fn read_error(e: rusqlite::Error) -> DbError {
    DbError::Read(e.to_string())
}

fn memory_error(e: std::io::Error) -> StoreError {
    StoreError::Open {
        path: std::env::temp_dir(),
        reason: format!("cannot make a temporary directory for the in-memory database: {e}"),
    }
}

/// Locks the state directory for this process (released when the file closes).
fn lock_dir(dir: &Path) -> Result<std::fs::File, StoreError> {
    let path = dir.join(DB_FILE);
    let file = std::fs::File::open(dir).map_err(|e| StoreError::Open {
        path: path.clone(),
        reason: format!("cannot open its directory: {e}"),
    })?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(StoreError::Locked { path }),
        Err(e) => Err(StoreError::Open {
            path,
            reason: format!("cannot lock its directory: {e}"),
        }),
    }
}

fn open_error(path: &Path, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => StoreError::NotOurs {
            path: path.into(),
            reason: "it is not a SQLite database".into(),
        },
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Locked { path: path.into() }
        }
        _ => StoreError::Open {
            path: path.into(),
            reason: e.to_string(),
        },
    }
}

/// Checks the database is a kv-emulator's with a schema this version reads; a new one gets
/// its tables, and `state.json` if there is one.
fn prepare(conn: &Connection, dir: Option<&Path>, path: &Path) -> Result<(), StoreError> {
    let fail = |e| open_error(path, e);
    let mut imported = None;
    match db::inspect(conn).map_err(fail)? {
        Found::Foreign(reason) => {
            return Err(StoreError::NotOurs {
                path: path.into(),
                reason,
            });
        }
        Found::Ours(found) if found > SCHEMA_VERSION => {
            return Err(StoreError::Newer {
                path: path.into(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Found::Ours(_) => {}
        Found::Empty => {
            let tx = conn.unchecked_transaction().map_err(fail)?;
            db::create_schema(&tx).map_err(fail)?;
            if let Some(dir) = dir {
                imported = migrate::import(&tx, dir)?;
            }
            tx.commit().map_err(fail)?;
        }
    }
    match dir {
        Some(dir) => migrate::finish(conn, dir, imported),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
