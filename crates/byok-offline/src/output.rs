//! Writing files atomically and never over an existing one.

use crate::error::{OfflineError, Result};
use std::io::Write;
use std::path::Path;

/// Fails if any of `paths` exists.
pub fn ensure_absent(paths: &[&Path]) -> Result<()> {
    for path in paths {
        if path.exists() {
            return Err(OfflineError::OutputExists {
                path: path.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it into place only
/// if `path` does not exist. No partial file is ever left at `path`.
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    let write_err = |e: &dyn std::fmt::Display| OfflineError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".byok-tmp-")
        .tempfile_in(dir)
        .map_err(|e| write_err(&e))?;
    tmp.write_all(bytes).map_err(|e| write_err(&e))?;
    tmp.as_file().sync_all().map_err(|e| write_err(&e))?;
    set_readable(tmp.path()).map_err(|e| write_err(&e))?;
    tmp.persist_noclobber(path).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            OfflineError::OutputExists {
                path: path.to_path_buf(),
            }
        } else {
            write_err(&e.error)
        }
    })?;
    Ok(())
}

/// Packages and public keys are not secret: 0644 so the operator can copy them off.
#[cfg(unix)]
fn set_readable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
}

#[cfg(not(unix))]
fn set_readable(_: &Path) -> std::io::Result<()> {
    Ok(())
}
