//! Writing files atomically and never over an existing one; reading them with a size bound.
//!
//! A write goes to a temporary file beside the target, is synced, gets the mode its
//! [`FileKind`] states, and is renamed into place (only if the target does not exist, for
//! [`write_new`]); the directory is synced after the rename, so a crash leaves either no file
//! or the whole one.
//!
//! A batch that writes many files defers the syncs ([`write_new_unsynced`]) and makes a group
//! of files durable at once ([`sync_group`]): one filesystem sync instead of two per file.
//! Until then a power loss may leave such a file empty or torn (never a temporary file under
//! its name half-renamed); the batch records nothing about a file before its group is synced.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Why a file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error(
        "{path} already exists; this tool never overwrites a file: move it away or pass another --out"
    )]
    Exists { path: PathBuf },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error(
        "cannot read {path}: {size} bytes is far too large for this file (the limit is {limit}); \
         check that it is the right file"
    )]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
}

/// The kinds of file the workstation binaries write, each with its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A `.byok`: the target wrapped under the KEK.
    Package,
    /// What the offline half tells the online half about a package.
    Sidecar,
    /// A target's public key PEM.
    PublicKey,
    /// The KEK transfer file, or the KEK public key as PEM or DER.
    Kek,
    /// The AES proof challenge (ciphertext and a hash; the value itself is never written).
    Challenge,
    /// A JSON report (`import-report.json`).
    Report,
    /// The hash-chained evidence log.
    EvidenceLog,
}

impl FileKind {
    pub const ALL: [FileKind; 7] = [
        FileKind::Package,
        FileKind::Sidecar,
        FileKind::PublicKey,
        FileKind::Kek,
        FileKind::Challenge,
        FileKind::Report,
        FileKind::EvidenceLog,
    ];

    /// The Unix mode. Nothing either binary writes is secret (packages are wrapped, public keys
    /// are public, logs carry hashes and ids), and the operator carries them across the gap and
    /// into the ceremony's records: readable by all, writable by the owner.
    pub fn mode(self) -> u32 {
        match self {
            FileKind::Package
            | FileKind::Sidecar
            | FileKind::PublicKey
            | FileKind::Kek
            | FileKind::Challenge
            | FileKind::Report
            | FileKind::EvidenceLog => 0o644,
        }
    }
}

/// Fails if any of `paths` exists: checked before work whose result could not be written.
pub fn ensure_absent(paths: &[&Path]) -> Result<(), FileError> {
    match paths.iter().find(|p| p.exists()) {
        Some(path) => Err(FileError::Exists {
            path: path.to_path_buf(),
        }),
        None => Ok(()),
    }
}

/// How a new file is written: [`write_new`] or [`write_new_unsynced`].
pub type WriteNew = fn(&Path, &[u8], FileKind) -> Result<(), FileError>;

/// Writes a new file; fails with [`FileError::Exists`] if `path` exists, leaving it untouched.
pub fn write_new(path: &Path, bytes: &[u8], kind: FileKind) -> Result<(), FileError> {
    persist_new(temp(path, bytes, kind, true)?, path)?;
    sync_dir(path)
}

/// [`write_new`] without its two syncs: the file appears whole under its name or not at all
/// for other processes, and survives the process being killed, but not a power loss until
/// [`sync_group`] has run on its directory. Nothing may be recorded about it before that.
pub fn write_new_unsynced(path: &Path, bytes: &[u8], kind: FileKind) -> Result<(), FileError> {
    persist_new(temp(path, bytes, kind, false)?, path)
}

/// Makes durable every file written into `dir` with [`write_new_unsynced`] (`written` lists
/// them), and their names: on Linux one `syncfs` of `dir`'s filesystem, elsewhere one fsync
/// per file; then the directory's own fsync.
pub fn sync_group(dir: &Path, written: &[PathBuf]) -> Result<(), FileError> {
    let err = |e: &dyn std::fmt::Display| write_error(dir, e);
    let d = std::fs::File::open(dir).map_err(|e| err(&e))?;
    #[cfg(target_os = "linux")]
    {
        // One sync of the filesystem costs about what one fsync does; a group of files then
        // costs one journal commit instead of one per file.
        let _ = written;
        rustix::fs::syncfs(&d).map_err(|e| err(&e))?;
    }
    #[cfg(not(target_os = "linux"))]
    for path in written {
        std::fs::File::open(path)
            .and_then(|f| f.sync_all())
            .map_err(|e| write_error(path, &e))?;
    }
    #[cfg(unix)]
    d.sync_all().map_err(|e| err(&e))?;
    Ok(())
}

/// Renames `tmp` to `path` unless `path` exists.
fn persist_new(tmp: tempfile::NamedTempFile, path: &Path) -> Result<(), FileError> {
    tmp.persist_noclobber(path).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            FileError::Exists { path: path.into() }
        } else {
            write_error(path, &e.error)
        }
    })?;
    Ok(())
}

/// Replaces a file (or makes it) atomically: readers see the old or the new whole file.
/// For files a rerun rewrites, such as a report.
pub fn replace(path: &Path, bytes: &[u8], kind: FileKind) -> Result<(), FileError> {
    let tmp = temp(path, bytes, kind, true)?;
    tmp.persist(path).map_err(|e| write_error(path, &e.error))?;
    sync_dir(path)
}

/// Removes a file this tool wrote, when what it belonged to failed.
pub fn remove(path: &Path) -> Result<(), FileError> {
    std::fs::remove_file(path).map_err(|e| write_error(path, &e))
}

/// Reads a whole file of at most `limit` bytes.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let meta = std::fs::metadata(path).map_err(|e| read_error(path, &e))?;
    if meta.len() > limit {
        return Err(FileError::TooLarge {
            path: path.into(),
            size: meta.len(),
            limit,
        });
    }
    std::fs::read(path).map_err(|e| read_error(path, &e))
}

/// Reads a whole UTF-8 file of at most `limit` bytes.
pub fn read_text_limited(path: &Path, limit: u64) -> Result<String, FileError> {
    String::from_utf8(read_limited(path, limit)?).map_err(|e| read_error(path, &e))
}

/// The directory a path's file lives in (`.` for a bare name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A temporary file beside `path` holding `bytes` with `kind`'s mode, synced when `sync`.
fn temp(
    path: &Path,
    bytes: &[u8],
    kind: FileKind,
    sync: bool,
) -> Result<tempfile::NamedTempFile, FileError> {
    let err = |e: &dyn std::fmt::Display| write_error(path, e);
    let mut tmp = tempfile::Builder::new()
        .prefix(".byok-tmp-")
        .tempfile_in(parent_dir(path))
        .map_err(|e| err(&e))?;
    tmp.write_all(bytes).map_err(|e| err(&e))?;
    set_mode(tmp.as_file(), kind.mode()).map_err(|e| err(&e))?;
    if sync {
        tmp.as_file().sync_all().map_err(|e| err(&e))?;
    }
    Ok(tmp)
}

/// Makes a rename (or a new file) durable: on Linux the directory entry needs its own sync.
pub fn sync_dir(path: &Path) -> Result<(), FileError> {
    #[cfg(unix)]
    {
        std::fs::File::open(parent_dir(path))
            .and_then(|d| d.sync_all())
            .map_err(|e| write_error(path, &e))?;
    }
    Ok(())
}

/// Gives a file the mode its kind states, whatever the umask.
#[cfg(unix)]
pub fn set_mode(file: &std::fs::File, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
pub fn set_mode(_: &std::fs::File, _: u32) -> std::io::Result<()> {
    Ok(())
}

fn write_error(path: &Path, e: &dyn std::fmt::Display) -> FileError {
    FileError::Write {
        path: path.into(),
        reason: e.to_string(),
    }
}

fn read_error(path: &Path, e: &dyn std::fmt::Display) -> FileError {
    FileError::Read {
        path: path.into(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_files_get_their_mode_and_are_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.byok");
        write_new(&path, b"one", FileKind::Package).unwrap();
        let err = write_new(&path, b"two", FileKind::Package).unwrap_err();
        assert!(matches!(err, FileError::Exists { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, FileKind::Package.mode());
        }
        replace(&path, b"three", FileKind::Report).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"three");
        // No temporary file is left beside the outputs.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn unsynced_writes_keep_no_clobber_and_modes_and_a_group_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.byok");
        let b = dir.path().join("a.byok.sidecar.json");
        write_new_unsynced(&a, b"one", FileKind::Package).unwrap();
        write_new_unsynced(&b, b"{}", FileKind::Sidecar).unwrap();
        let err = write_new_unsynced(&a, b"two", FileKind::Package).unwrap_err();
        assert!(matches!(err, FileError::Exists { .. }), "{err}");
        assert_eq!(std::fs::read(&a).unwrap(), b"one");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&b).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, FileKind::Sidecar.mode());
        }
        sync_group(dir.path(), &[a, b]).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        let gone = dir.path().join("gone");
        assert!(matches!(
            sync_group(&gone, &[]),
            Err(FileError::Write { path, .. }) if path == gone
        ));
    }

    #[test]
    fn reads_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, vec![b'x'; 100]).unwrap();
        assert!(matches!(
            read_limited(&path, 99),
            Err(FileError::TooLarge { size: 100, .. })
        ));
        assert_eq!(read_limited(&path, 100).unwrap().len(), 100);
        assert!(matches!(
            read_limited(&dir.path().join("none"), 10),
            Err(FileError::Read { .. })
        ));
    }
}
