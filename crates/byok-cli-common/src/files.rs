//! Writing files atomically and never over an existing one; reading them with a size bound.
//!
//! A write goes to a temporary file beside the target, is synced, gets the mode its
//! [`FileKind`] states, and is renamed into place (only if the target does not exist, for
//! [`write_new`]); the directory is synced after the rename, so a crash leaves either no file
//! or the whole one.
//!
//! Nothing here writes through a symbolic link: an output name that is a link, dangling or
//! not, is refused ([`ensure_absent`], and the no-replace rename itself), and the evidence log
//! is appended to only through a descriptor opened with `O_NOFOLLOW` ([`open_append`]).
//! Whoever prepares a directory on removable media cannot make this tool create or append to
//! a file elsewhere.
//!
//! Every read of an operator-supplied file goes through [`read_limited`]: the file is opened
//! without blocking, the opened descriptor must be a regular file (a FIFO would hang the read,
//! a device such as `/dev/zero` never ends), and the bytes are counted as they are read, so a
//! size the file system reports (0 for devices) bounds nothing.
//!
//! Temporary files are named `.byok-tmp-<pid>-<random>`; [`remove_stale_temps`] removes those
//! of processes no longer running (a run killed before its rename) from the directory a file
//! is written to ([`write_new`], [`replace`]; a batch once, at its start).
//!
//! A batch that writes many files defers the syncs ([`write_new_unsynced`]) and makes a group
//! of files durable at once ([`sync_group`]): one filesystem sync instead of two per file.
//! Until then a power loss may leave such a file empty or torn (never a temporary file under
//! its name half-renamed); the batch records nothing about a file before its group is synced.
//! It reads its output directory's names once ([`Listing`]) rather than looking each up.

mod listing;
mod read;

use std::io::Write;
use std::path::{Path, PathBuf};

pub use listing::Listing;
use read::kind_of;
pub use read::{read_limited, read_limited_or_pipe, read_text_limited};

/// The prefix of every temporary file this tool makes; the process id follows.
const TEMP_PREFIX: &str = ".byok-tmp-";

/// Why a file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error(
        "{path} already exists; this tool never overwrites a file: move it away or pass another --out"
    )]
    Exists { path: PathBuf },
    #[error(
        "{path} is a symbolic link; this tool never writes through one (it could point \
         anywhere): remove the link, or pass another path"
    )]
    Symlink { path: PathBuf },
    #[error(
        "cannot read {path}: it is {kind}, not a regular file; copy the file onto this \
         workstation's disk and name the copy"
    )]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error(
        "cannot read {path}: it holds more than {limit} bytes, far too many for this file; \
         check that it is the right file"
    )]
    TooLarge { path: PathBuf, limit: u64 },
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

/// Fails if any of `paths` exists, or is a symbolic link (dangling or not): checked before
/// work whose result could not be written, such as a key generated on the token.
pub fn ensure_absent(paths: &[&Path]) -> Result<(), FileError> {
    for path in paths {
        // symlink_metadata: a dangling link does not "exist" to `Path::exists`, yet the
        // write would fail on it after the work was done.
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(FileError::Symlink { path: path.into() });
            }
            Ok(_) => return Err(FileError::Exists { path: path.into() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(write_error(path, &e)),
        }
    }
    Ok(())
}

/// Fails if any of `paths` is a symbolic link (dangling or not); files that exist are let
/// be. For outputs a resumed run may find already written.
pub fn refuse_symlinks(paths: &[&Path]) -> Result<(), FileError> {
    match paths.iter().find(|p| is_symlink(p)) {
        Some(path) => Err(FileError::Symlink { path: path.into() }),
        None => Ok(()),
    }
}

/// Whether `path` is a symbolic link (a dangling one included).
pub fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// How a new file is written: [`write_new`] or [`write_new_unsynced`].
pub type WriteNew = fn(&Path, &[u8], FileKind) -> Result<(), FileError>;

/// Writes a new file; fails with [`FileError::Exists`] if `path` exists, leaving it untouched.
/// A killed run's temporary files in the directory are removed first ([`remove_stale_temps`]).
pub fn write_new(path: &Path, bytes: &[u8], kind: FileKind) -> Result<(), FileError> {
    remove_stale_temps(parent_dir(path))?;
    persist_new(temp(path, bytes, kind, true)?, path)?;
    sync_dir(path)
}

/// A file made in memory and not yet written: a batch's worker makes them and its committer
/// writes them, so that the filesystem's work overlaps the worker's next PKCS#11 calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFile {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub kind: FileKind,
}

/// Writes `files` in their order with `write` (never overwriting). On a failure the ones this
/// call wrote are removed again, so that a set (a package and its sidecar) is left whole or
/// not at all (a kill in between leaves the ones written before it: order them for that).
pub fn write_all_new(files: &[NewFile], write: WriteNew) -> Result<(), FileError> {
    for (done, file) in files.iter().enumerate() {
        if let Err(e) = write(&file.path, &file.bytes, file.kind) {
            for written in &files[..done] {
                let _ = remove(&written.path);
            }
            return Err(e);
        }
    }
    Ok(())
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

/// Renames `tmp` to `path` unless `path` exists. The rename (`renameat2` with
/// `RENAME_NOREPLACE`, or `link`) fails on any name taken, a symbolic link included: it never
/// follows one.
fn persist_new(tmp: tempfile::NamedTempFile, path: &Path) -> Result<(), FileError> {
    tmp.persist_noclobber(path).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists && is_symlink(path) {
            FileError::Symlink { path: path.into() }
        } else if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            FileError::Exists { path: path.into() }
        } else {
            write_error(path, &e.error)
        }
    })?;
    Ok(())
}

/// Replaces a file (or makes it) atomically: readers see the old or the new whole file.
/// For files a rerun rewrites, such as a report. A symbolic link at `path` is refused: the
/// rename would replace the link, not write through it, but a link there is not ours.
pub fn replace(path: &Path, bytes: &[u8], kind: FileKind) -> Result<(), FileError> {
    if is_symlink(path) {
        return Err(FileError::Symlink { path: path.into() });
    }
    remove_stale_temps(parent_dir(path))?;
    let tmp = temp(path, bytes, kind, true)?;
    tmp.persist(path).map_err(|e| write_error(path, &e.error))?;
    sync_dir(path)
}

/// Removes a file this tool wrote, when what it belonged to failed.
pub fn remove(path: &Path) -> Result<(), FileError> {
    std::fs::remove_file(path).map_err(|e| write_error(path, &e))
}

/// Opens the file at `path` for appending, creating it with `kind`'s mode if it is absent:
/// never through a symbolic link (`O_NOFOLLOW`), and only a regular file (checked on the
/// opened descriptor). Returns the file and whether it was created.
pub fn open_append(path: &Path, kind: FileKind) -> Result<(std::fs::File, bool), FileError> {
    let err = |e: &dyn std::fmt::Display| write_error(path, e);
    let mut options = std::fs::OpenOptions::new();
    options.append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
        options.custom_flags(flags.bits() as i32);
    }
    // Created only if absent (O_EXCL), so that "created" is known, not guessed.
    let (file, created) = match options.clone().create_new(true).open(path) {
        Ok(file) => (file, true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            (options.open(path).map_err(|e| link_or(path, e))?, false)
        }
        Err(e) => return Err(link_or(path, e)),
    };
    let meta = file.metadata().map_err(|e| err(&e))?;
    if !meta.is_file() {
        return Err(FileError::NotRegular {
            path: path.into(),
            kind: kind_of(&meta),
        });
    }
    if created {
        // Set after creation: a mode given at open time is masked by the umask.
        set_mode(&file, kind.mode()).map_err(|e| err(&e))?;
    }
    Ok((file, created))
}

/// The error of an open with `O_NOFOLLOW`: a link at the name fails it with `ELOOP` (and with
/// `EEXIST` under `O_CREAT | O_EXCL`, dangling or not).
fn link_or(path: &Path, e: std::io::Error) -> FileError {
    if is_symlink(path) {
        FileError::Symlink { path: path.into() }
    } else {
        write_error(path, &e)
    }
}

/// Removes from `dir` the temporary files of runs of this tool that are no longer running
/// (`.byok-tmp-<pid>-…` whose process is gone): what a run killed between writing a file and
/// renaming it leaves. Another running process's files, and every other name, are left alone.
/// Returns the names removed.
pub fn remove_stale_temps(dir: &Path) -> Result<Vec<PathBuf>, FileError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(write_error(dir, &e)),
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_owner) else {
            continue;
        };
        // Only plain files: a link or directory under our prefix is not ours.
        if !entry.file_type().is_ok_and(|t| t.is_file()) || process_running(pid) {
            continue;
        }
        // A leftover that cannot be removed (another user's, read-only media) must not stop
        // the write this cleanup comes before: it is named and left.
        let path = entry.path();
        match remove(&path) {
            Ok(()) => removed.push(path),
            Err(e) => crate::say_err!("warning: left a stale temporary file: {e}"),
        }
    }
    Ok(removed)
}

/// The process id in a temporary file's name `.byok-tmp-<pid>-<random>`.
fn temp_owner(name: &str) -> Option<u32> {
    let (pid, random) = name.strip_prefix(TEMP_PREFIX)?.split_once('-')?;
    (!random.is_empty()).then_some(())?;
    pid.parse().ok().filter(|&p| p > 0)
}

/// Whether a process with this id exists (signal 0: sends nothing).
#[cfg(target_os = "linux")]
fn process_running(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        // It exists, and belongs to someone else.
        Err(rustix::io::Errno::PERM) => true,
        Err(_) => false,
    }
}

#[cfg(not(target_os = "linux"))]
fn process_running(_: u32) -> bool {
    // Without a way to ask, every temporary file may be another run's: keep it.
    true
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
    // The process id in the name tells a later run whether the file is a dead run's.
    let prefix = format!("{TEMP_PREFIX}{}-", std::process::id());
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
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

    #[cfg(unix)]
    #[test]
    fn no_write_or_append_goes_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        let dangling = dir.path().join("out.byok");
        std::os::unix::fs::symlink(&victim, &dangling).unwrap();
        let refused = |r: Result<(), FileError>| {
            assert!(matches!(r, Err(FileError::Symlink { .. })), "{r:?}");
        };
        refused(ensure_absent(&[&dangling]));
        refused(write_new(&dangling, b"x", FileKind::Package));
        refused(write_new_unsynced(&dangling, b"x", FileKind::Package));
        refused(replace(&dangling, b"x", FileKind::Report));
        refused(open_append(&dangling, FileKind::EvidenceLog).map(|_| ()));
        assert!(!victim.exists());
        std::fs::write(&victim, "").unwrap();
        refused(open_append(&dangling, FileKind::EvidenceLog).map(|_| ()));
        assert_eq!(std::fs::read(&victim).unwrap(), b"");
        // A plain name: created once with the log's mode, then appended to.
        let log = dir.path().join("log.jsonl");
        assert!(open_append(&log, FileKind::EvidenceLog).unwrap().1);
        assert!(!open_append(&log, FileKind::EvidenceLog).unwrap().1);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn only_dead_runs_temporary_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let names = [
            format!(".byok-tmp-{dead}-AbC123"),
            format!(".byok-tmp-{}-AbC123", std::process::id()),
            ".byok-tmp-notes".to_string(),
            "KeyTransferPackage-k.byok".to_string(),
        ];
        for name in &names {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let removed = remove_stale_temps(dir.path()).unwrap();
        assert_eq!(removed, [dir.path().join(&names[0])]);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
    }
}
