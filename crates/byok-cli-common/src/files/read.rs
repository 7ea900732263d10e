//! Reading an operator-supplied file: a regular file (checked on the opened descriptor),
//! opened without blocking, and bounded by counting the bytes as they are read.

use super::{FileError, read_error};
use std::io::Read;
use std::path::Path;

/// Reads a whole file of at most `limit` bytes. The file must be a regular file (checked on
/// the opened descriptor, so a name swapped after a check cannot slip through); it is opened
/// with `O_NONBLOCK`, so a FIFO is refused rather than waited on, and the bytes are counted
/// as they are read.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let file = open_input(path)?;
    read_bounded(file, path, limit)
}

/// What a PIN file may also be: a pipe, as `--pin-file <(command)` gives, which keeps the PIN
/// off the disk. Devices, sockets and directories are still refused, and the read is bounded.
pub fn read_limited_or_pipe(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    // Opened blocking: a pipe's writer may not have written yet.
    let file = std::fs::File::open(path).map_err(|e| read_error(path, &e))?;
    let meta = file.metadata().map_err(|e| read_error(path, &e))?;
    if !meta.is_file() && !is_fifo(&meta) {
        return Err(FileError::NotRegular {
            path: path.into(),
            kind: kind_of(&meta),
        });
    }
    read_bounded(file, path, limit)
}

/// Opens `path` for reading without blocking, and refuses anything but a regular file.
fn open_input(path: &Path) -> Result<std::fs::File, FileError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Opening a FIFO for reading otherwise waits for a writer, forever.
        options.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    let file = options.open(path).map_err(|e| read_error(path, &e))?;
    let meta = file.metadata().map_err(|e| read_error(path, &e))?;
    if !meta.is_file() {
        return Err(FileError::NotRegular {
            path: path.into(),
            kind: kind_of(&meta),
        });
    }
    Ok(file)
}

/// Reads `file` to its end, failing once more than `limit` bytes have come.
fn read_bounded(file: std::fs::File, path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| read_error(path, &e))?;
    if bytes.len() as u64 > limit {
        return Err(FileError::TooLarge {
            path: path.into(),
            limit,
        });
    }
    Ok(bytes)
}

#[cfg(unix)]
fn is_fifo(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_fifo()
}

#[cfg(not(unix))]
fn is_fifo(_: &std::fs::Metadata) -> bool {
    false
}

/// What a file that is not a regular one is, for the error.
pub(super) fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "not a regular file"
}

/// Reads a whole UTF-8 file of at most `limit` bytes.
pub fn read_text_limited(path: &Path, limit: u64) -> Result<String, FileError> {
    String::from_utf8(read_limited(path, limit)?).map_err(|e| read_error(path, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, vec![b'x'; 100]).unwrap();
        assert!(matches!(
            read_limited(&path, 99),
            Err(FileError::TooLarge { limit: 99, .. })
        ));
        assert_eq!(read_limited(&path, 100).unwrap().len(), 100);
        assert!(matches!(
            read_limited(&dir.path().join("none"), 10),
            Err(FileError::Read { .. })
        ));
    }

    #[test]
    fn devices_fifos_and_directories_are_refused_without_reading() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success(), "mkfifo (coreutils)");
        for (path, kind) in [
            (Path::new("/dev/zero"), "a device"),
            (fifo.as_path(), "a FIFO (named pipe)"),
            (dir.path(), "a directory"),
        ] {
            match read_limited(path, 10) {
                Err(FileError::NotRegular { kind: k, .. }) => assert_eq!(k, kind),
                other => panic!("{}: {other:?}", path.display()),
            }
        }
        // A PIN file may be a pipe, never a device.
        assert!(matches!(
            read_limited_or_pipe(Path::new("/dev/zero"), 10),
            Err(FileError::NotRegular { .. })
        ));
    }
}
