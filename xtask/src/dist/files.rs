//! The file operations every artefact needs: written with a stated mode whatever the umask,
//! hashed, and normalised (modes, times) before tar or dpkg-deb records them.

use super::Source;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub fn sha256_file(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(sha256_hex(&bytes))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Removes `dir` with everything in it and makes it again, empty.
pub fn fresh_dir(dir: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("could not empty {}: {e}", dir.display())),
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("could not make {}: {e}", dir.display()))
}

/// Writes `bytes` to `path` (parents made) with `mode`, whatever the umask.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::write(path, bytes).map_err(|e| format!("could not write {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Copies `from` to `to` with `mode`.
pub fn copy_file(from: &Path, to: &Path, mode: u32) -> Result<(), String> {
    let bytes = std::fs::read(from).map_err(|e| format!("{}: {e}", from.display()))?;
    write_file(to, &bytes, mode)
}

/// The regular files directly in `dir`, sorted.
pub fn files_in(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Gives every directory mode 0755 and every file 0755 or 0644 (by its owner's execute bit),
/// and all of them the source's time: what tar and dpkg-deb record must not depend on the
/// umask or on when the build ran.
pub fn normalize(dir: &Path, source: &Source) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            normalize(&entry.map_err(|e| e.to_string())?.path(), source)?;
        }
    }
    let mode = if meta.is_dir() || meta.permissions().mode() & 0o100 != 0 {
        0o755
    } else {
        0o644
    };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let file = std::fs::File::open(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    file.set_modified(source.mtime())
        .map_err(|e| format!("could not set the time of {}: {e}", dir.display()))
}
