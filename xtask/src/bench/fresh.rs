//! Work directories made fresh without deleting anything before a measurement.
//!
//! ext4 without a journal (this project's bench and CI machines) avoids reusing an inode freed
//! within the last minute (five while its inode-table block is unwritten): each new file's
//! allocation steps past every such inode of its block group, one buffer lookup each
//! (`recently_deleted` in Linux's fs/ext4/ialloc.c). Emptying a directory of a few hundred
//! files and then creating as many measured 0.7 ms per `openat(O_CREAT)` here, more than the
//! whole per-key floor of SoftHSM: a bench that deletes its last run's files before the next
//! measures the allocator, not the tool. So an old directory is renamed aside (no inode is
//! freed) and deleted only once the measurements are done.

use std::path::{Path, PathBuf};

/// A directory that was in the way, renamed aside, deleted when this is dropped (after the
/// measurements).
#[must_use = "dropping it deletes the old directory: keep it until the measurements are done"]
pub(super) struct Aside {
    stale: Option<PathBuf>,
}

/// Makes `dir` absent by renaming what is there to `<dir>.stale-<pid>`; creates nothing.
pub(super) fn set_aside(dir: &Path) -> Result<Aside, String> {
    if std::fs::symlink_metadata(dir).is_err() {
        return Ok(Aside { stale: None });
    }
    let mut name = dir.as_os_str().to_os_string();
    name.push(format!(".stale-{}", std::process::id()));
    let stale = PathBuf::from(name);
    std::fs::rename(dir, &stale)
        .map_err(|e| format!("{}: cannot rename it aside: {e}", dir.display()))?;
    Ok(Aside { stale: Some(stale) })
}

impl Drop for Aside {
    fn drop(&mut self) {
        if let Some(stale) = self.stale.take() {
            let _ = std::fs::remove_dir_all(stale);
        }
    }
}
