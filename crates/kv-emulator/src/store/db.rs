//! The key database: SQLite, one row per key (`keys`) and one per key version (`versions`,
//! the version as JSON), and what opening one checks (whose database it is, which schema).

use crate::model::{Deleted, KeyEntry, KeyVersion};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The schema this kv-emulator writes; a database with a higher one is refused.
pub const SCHEMA_VERSION: i64 = 1;

/// `PRAGMA application_id` of a kv-emulator database ("kvem"), which tells it from another
/// program's SQLite file.
const APPLICATION_ID: i64 = 0x6b76_656d;

/// How long a connection waits for another's lock before giving up: commits are
/// milliseconds, so this is only reached when something is wrong.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS keys (
        name_lc TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        deleted_date INTEGER,
        scheduled_purge_date INTEGER
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS versions (
        name_lc TEXT NOT NULL,
        seq INTEGER NOT NULL,
        version TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (name_lc, seq)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX IF NOT EXISTS versions_by_id ON versions (name_lc, version);
";

/// Deletions and recoveries still running (`--delete-delay`), so that with `--persist` they
/// survive a restart: the key's kind of pending change and when it ends (Unix milliseconds).
/// Added after schema 1 without changing it: made when missing, which an older kv-emulator
/// ignores.
pub const PENDING_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS pending (
        name_lc TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        until_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
";

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Writes (or with None removes) the pending change of a key.
pub fn save_pending(
    conn: &Connection,
    name_lc: &str,
    pending: Option<&crate::model::Pending>,
) -> rusqlite::Result<()> {
    use crate::model::PendingKind;
    let Some(p) = pending else {
        conn.prepare_cached("DELETE FROM pending WHERE name_lc = ?1")?
            .execute([name_lc])?;
        return Ok(());
    };
    let left = p.until.saturating_duration_since(std::time::Instant::now());
    let kind = match p.kind {
        PendingKind::Deleting => "deleting",
        PendingKind::Recovering => "recovering",
    };
    conn.prepare_cached(
        "INSERT OR REPLACE INTO pending (name_lc, kind, until_ms) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![name_lc, kind, unix_ms() + left.as_millis() as i64])?;
    Ok(())
}

/// The pending changes that have not ended yet, by lowercase name (ended ones are removed).
pub fn load_pendings(
    conn: &Connection,
) -> rusqlite::Result<std::collections::HashMap<String, crate::model::Pending>> {
    use crate::model::{Pending, PendingKind};
    let now = unix_ms();
    conn.execute("DELETE FROM pending WHERE until_ms <= ?1", [now])?;
    let mut stmt = conn.prepare("SELECT name_lc, kind, until_ms FROM pending")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut map = std::collections::HashMap::new();
    for row in rows {
        let (name, kind, until) = row?;
        let kind = match kind.as_str() {
            "deleting" => PendingKind::Deleting,
            _ => PendingKind::Recovering,
        };
        let left = Duration::from_millis((until - now).max(0) as u64);
        map.insert(
            name,
            Pending {
                kind,
                until: std::time::Instant::now() + left,
            },
        );
    }
    Ok(map)
}

/// Where the database is: `state.db` (with `--persist`), or a private one in a temporary
/// directory in memory (`/dev/shm` where there is one), removed when the store closes.
///
/// Not SQLite's `memdb` VFS: there a reader waits for any write transaction to end (its
/// locks are all-or-nothing), so every GET would stall behind every write. A WAL database
/// on tmpfs lets readers go on during writes, as on disk; without `--persist` its commits
/// are not fsynced (nothing is kept anyway).
#[derive(Debug, Clone)]
pub struct Location {
    pub path: PathBuf,
    durable: bool,
    _temp: Option<Arc<tempfile::TempDir>>,
}

impl Location {
    pub fn file(path: PathBuf) -> Self {
        Self {
            path,
            durable: true,
            _temp: None,
        }
    }

    /// A fresh database private to this store, in a directory named after this process
    /// (`kv-emulator-PID-...`), so that one left by a killed emulator can be told and removed.
    pub fn memory() -> std::io::Result<Self> {
        let shm = Path::new("/dev/shm");
        let parent = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        remove_orphans(&parent);
        let prefix = format!("{MEMORY_PREFIX}{}-", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in(&parent)?;
        Ok(Self {
            path: dir.path().join("keys.db"),
            durable: false,
            _temp: Some(Arc::new(dir)),
        })
    }

    fn open(&self, create: bool) -> rusqlite::Result<Connection> {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = Connection::open_with_flags(&self.path, flags)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        Ok(conn)
    }

    /// The connection all writes go through: WAL, and with `--persist` `synchronous=FULL`,
    /// so a commit is on disk (the WAL fsynced) when it returns. The database holds private
    /// keys in the clear: it is made owner-only (0600) before SQLite opens it, and SQLite
    /// gives its `-wal` and `-shm` files the database's mode.
    pub fn open_writer(&self) -> rusqlite::Result<Connection> {
        owner_only(&self.path).map_err(|e| {
            rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(format!("cannot make it owner-only: {e}")),
            )
        })?;
        let conn = self.open(true)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let sync = if self.durable { "FULL" } else { "OFF" };
        conn.pragma_update(None, "synchronous", sync)?;
        Ok(conn)
    }

    /// A connection for reads: it sees committed data only.
    pub fn open_reader(&self) -> rusqlite::Result<Connection> {
        let conn = self.open(false)?;
        conn.pragma_update(None, "query_only", true)?;
        Ok(conn)
    }
}

/// Creates `path` empty if it does not exist (SQLite reads an empty file as a new
/// database), and narrows it to 0600 either way.
fn owner_only(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(())
}

/// The start of an in-memory database's directory name; the process id follows.
const MEMORY_PREFIX: &str = "kv-emulator-";

/// Removes in-memory databases whose emulator is gone (killed: a clean stop removes its
/// own), so they do not hold memory until the next reboot. Best effort.
fn remove_orphans(parent: &Path) {
    let Ok(dirs) = std::fs::read_dir(parent) else {
        return;
    };
    for dir in dirs.flatten() {
        let name = dir.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix(MEMORY_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        let gone = pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
        if gone && Path::new("/proc/self").exists() {
            let _ = std::fs::remove_dir_all(dir.path());
        }
    }
}

/// What a database that is there already turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// No table at all: a new database.
    Empty,
    /// A kv-emulator database with this schema version.
    Ours(i64),
    /// Someone else's: why we think so.
    Foreign(String),
}

/// Tells what `conn`'s database is, without changing it.
pub fn inspect(conn: &Connection) -> rusqlite::Result<Found> {
    let id: i64 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
    if id != APPLICATION_ID {
        return Ok(match tables {
            0 => Found::Empty,
            _ => Found::Foreign(format!(
                "a SQLite database of another program: application_id {id}"
            )),
        });
    }
    let version: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    match version.as_deref().map(str::parse::<i64>) {
        Some(Ok(v)) => Ok(Found::Ours(v)),
        _ => Ok(Found::Foreign("it has no schema version".into())),
    }
}

/// Makes the tables of a new database (inside the caller's transaction).
pub fn create_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)?;
    conn.pragma_update(None, "application_id", APPLICATION_ID)?;
    set_meta(conn, "schema_version", &SCHEMA_VERSION.to_string())
}

pub fn set_meta(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
        params![key, value],
    )?;
    Ok(())
}

pub fn meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

/// Whether the database holds any key (deleted ones included).
pub fn holds_keys(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row("SELECT EXISTS (SELECT 1 FROM keys)", [], |r| r.get(0))
}

fn bad_row(e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
}

fn deleted_of(date: Option<i64>, purge: Option<i64>) -> Option<Deleted> {
    Some(Deleted {
        deleted_date: date?,
        scheduled_purge_date: purge.unwrap_or_default(),
    })
}

/// One key with all its versions, oldest first, in one statement (so one snapshot); `None`
/// if there is no such key. `pending` is left empty: it is not stored.
pub fn load_entry(conn: &Connection, name_lc: &str) -> rusqlite::Result<Option<KeyEntry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT k.name, k.deleted_date, k.scheduled_purge_date, v.body
         FROM keys k JOIN versions v ON v.name_lc = k.name_lc
         WHERE k.name_lc = ?1 ORDER BY v.seq",
    )?;
    let mut rows = stmt.query([name_lc])?;
    let mut entry: Option<KeyEntry> = None;
    while let Some(row) = rows.next()? {
        let body: String = row.get(3)?;
        let version: KeyVersion = serde_json::from_str(&body).map_err(bad_row)?;
        match &mut entry {
            Some(e) => e.versions.push(version),
            None => {
                entry = Some(KeyEntry {
                    name: row.get(0)?,
                    versions: vec![version],
                    deleted: deleted_of(row.get(1)?, row.get(2)?),
                    pending: None,
                })
            }
        }
    }
    Ok(entry)
}

/// Names (lowercase) of keys, live or deleted, in name order from the start, for a paged
/// list; `f` says, per name, whether to go on.
pub fn scan_names(
    conn: &Connection,
    deleted: bool,
    mut f: impl FnMut(String) -> bool,
) -> rusqlite::Result<()> {
    let sql = if deleted {
        "SELECT name_lc FROM keys WHERE deleted_date IS NOT NULL ORDER BY name_lc"
    } else {
        "SELECT name_lc FROM keys WHERE deleted_date IS NULL ORDER BY name_lc"
    };
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        if !f(row.get(0)?) {
            break;
        }
    }
    Ok(())
}

/// Writes what changed from `before` to `after` of one key: its row if its name or deletion
/// changed, each version that is new or changed, nothing else. So the cost of a write
/// depends on the key, not on how many keys there are.
pub fn save_change(
    conn: &Connection,
    name_lc: &str,
    before: Option<&KeyEntry>,
    after: Option<&KeyEntry>,
) -> rusqlite::Result<()> {
    let Some(after) = after.filter(|a| !a.versions.is_empty()) else {
        if before.is_some() {
            conn.prepare_cached("DELETE FROM versions WHERE name_lc = ?1")?
                .execute([name_lc])?;
            conn.prepare_cached("DELETE FROM keys WHERE name_lc = ?1")?
                .execute([name_lc])?;
        }
        return Ok(());
    };
    if before.map(|b| (&b.name, &b.deleted)) != Some((&after.name, &after.deleted)) {
        let d = after.deleted.as_ref();
        conn.prepare_cached(
            "INSERT OR REPLACE INTO keys (name_lc, name, deleted_date, scheduled_purge_date)
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            name_lc,
            after.name,
            d.map(|d| d.deleted_date),
            d.map(|d| d.scheduled_purge_date)
        ])?;
    }
    for (seq, version) in after.versions.iter().enumerate() {
        if before.and_then(|b| b.versions.get(seq)) != Some(version) {
            save_version(conn, name_lc, seq, version)?;
        }
    }
    if before.is_some_and(|b| b.versions.len() > after.versions.len()) {
        conn.prepare_cached("DELETE FROM versions WHERE name_lc = ?1 AND seq >= ?2")?
            .execute(params![name_lc, after.versions.len() as i64])?;
    }
    Ok(())
}

pub fn save_version(
    conn: &Connection,
    name_lc: &str,
    seq: usize,
    version: &KeyVersion,
) -> rusqlite::Result<()> {
    // Every row gets the public members, so no read parses a private key; a version made
    // without them (none is, but a caller may forget) gets them here, once.
    let filled;
    let version = match version.public {
        Some(_) => version,
        None => {
            let mut v = version.clone();
            v.fill_public()
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            filled = v;
            &filled
        }
    };
    let body = serde_json::to_string(version)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO versions (name_lc, seq, version, body) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![name_lc, seq as i64, version.version, body])?;
    Ok(())
}
