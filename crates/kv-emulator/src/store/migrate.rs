//! The one-time import of `state.json`, the whole-state file versions before the database
//! wrote, into a new database; the file is then renamed `state.json.imported`.

use super::StoreError;
use super::db;
use crate::model::KeyEntry;
use crate::state_dir::{self, IMPORTED_STATE_FILE, STATE_FILE};
use rusqlite::Connection;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// `state.json` as it was written: every key by lowercase name.
#[derive(Deserialize)]
struct OldState {
    keys: BTreeMap<String, KeyEntry>,
}

/// The meta row that says the import committed (so a crash before the rename is finished
/// on the next start, not imported twice).
const IMPORTED: &str = "imported_state_json";

/// Imports `dir`'s `state.json` into a new database inside the caller's transaction;
/// the number of keys, or None when there is no such file.
pub fn import(conn: &Connection, dir: &Path) -> Result<Option<usize>, StoreError> {
    let path = dir.join(STATE_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let invalid = |reason: String| StoreError::Invalid {
        path: path.clone(),
        reason,
    };
    let old: OldState =
        serde_json::from_slice(&state_dir::read(&path)?).map_err(|e| invalid(e.to_string()))?;
    let failed = |e: rusqlite::Error| invalid(format!("importing it failed: {e}"));
    // Older files hold no public members: saving a version derives them, once.
    for (name_lc, entry) in old.keys {
        db::save_change(conn, &name_lc, None, Some(&entry)).map_err(failed)?;
    }
    db::set_meta(conn, IMPORTED, "1").map_err(failed)?;
    let count = conn
        .query_row("SELECT count(*) FROM keys", [], |r| r.get::<_, i64>(0))
        .map_err(failed)?;
    Ok(Some(count as usize))
}

/// After the import committed: renames `state.json` to `state.json.imported` (nothing is
/// deleted) and says so. Also finishes an import whose rename a crash interrupted.
pub fn finish(conn: &Connection, dir: &Path, count: Option<usize>) -> Result<(), StoreError> {
    let path = dir.join(STATE_FILE);
    let imported = db::meta(conn, IMPORTED).ok().flatten().is_some();
    if !imported || !path.exists() {
        return Ok(());
    }
    let to = dir.join(IMPORTED_STATE_FILE);
    std::fs::rename(&path, &to)
        .and_then(|()| std::fs::File::open(dir)?.sync_all())
        .map_err(|e| state_dir::FileError::Write {
            path: to.clone(),
            reason: e.to_string(),
        })?;
    let keys = count.map(|n| format!("{n} keys from ")).unwrap_or_default();
    eprintln!(
        "kv-emulator: imported {keys}{} into {}; the old file is kept as {}",
        path.display(),
        dir.join(state_dir::DB_FILE).display(),
        to.display()
    );
    Ok(())
}
