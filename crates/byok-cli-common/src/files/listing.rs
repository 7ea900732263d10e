//! A directory's names, read once: a batch asks it whether each key's output files are there,
//! instead of asking the filesystem once per name.
//!
//! A lookup of a name a directory does not hold costs a directory search the first time (13 µs
//! on ext4 here, against a whole per-key floor under a millisecond on a software token); a
//! batch asks of three names per key, twice. A name that appears after the listing was read
//! is still never overwritten: every write is a no-replace rename, which fails on any name
//! taken, and a batch stops there naming the key ([`super::write_new_unsynced`]).

use super::{FileError, read_error};
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The names in one directory when it was read, and which of them are symbolic links.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    dir: PathBuf,
    /// Name → whether it is a symbolic link.
    names: HashMap<OsString, bool>,
}

impl Listing {
    /// Reads `dir`'s names (none when it does not exist yet).
    pub fn read(dir: &Path) -> Result<Self, FileError> {
        let mut names = HashMap::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    dir: dir.into(),
                    names,
                });
            }
            Err(e) => return Err(read_error(dir, &e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| read_error(dir, &e))?;
            let link = entry
                .file_type()
                .map_err(|e| read_error(&entry.path(), &e))?
                .is_symlink();
            names.insert(entry.file_name(), link);
        }
        Ok(Self {
            dir: dir.into(),
            names,
        })
    }

    /// Whether `path` (a name in this directory) was there, as anything, a link included.
    pub fn has(&self, path: &Path) -> bool {
        self.name_in_dir(path)
            .is_some_and(|name| self.names.contains_key(name))
    }

    /// Fails if any of `paths` (names in this directory) was a symbolic link, as
    /// [`super::refuse_symlinks`] does.
    pub fn refuse_symlinks(&self, paths: &[&Path]) -> Result<(), FileError> {
        let link = |p: &&Path| self.name_in_dir(p).and_then(|n| self.names.get(n)) == Some(&true);
        match paths.iter().copied().find(link) {
            Some(path) => Err(FileError::Symlink { path: path.into() }),
            None => Ok(()),
        }
    }

    /// `path`'s name, if `path` is in this directory; a path elsewhere is a caller's bug.
    fn name_in_dir<'p>(&self, path: &'p Path) -> Option<&'p std::ffi::OsStr> {
        debug_assert_eq!(
            path.parent(),
            Some(self.dir.as_path()),
            "{}",
            path.display()
        );
        path.file_name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_files_and_links_as_the_directory_held_them() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("a.byok"), b"x").unwrap();
        std::os::unix::fs::symlink(d.join("nowhere"), d.join("b.byok")).unwrap();
        let listing = Listing::read(d).unwrap();
        std::fs::write(d.join("late.byok"), b"x").unwrap();
        assert!(listing.has(&d.join("a.byok")));
        // A dangling link is there, though `Path::exists` says otherwise.
        assert!(listing.has(&d.join("b.byok")) && !d.join("b.byok").exists());
        assert!(!listing.has(&d.join("late.byok")) && !listing.has(&d.join("c.byok")));
        assert!(listing.refuse_symlinks(&[&d.join("a.byok")]).is_ok());
        let err = listing
            .refuse_symlinks(&[&d.join("a.byok"), &d.join("b.byok")])
            .unwrap_err();
        assert!(matches!(err, FileError::Symlink { path } if path == d.join("b.byok")));
        let none = Listing::read(&d.join("absent")).unwrap();
        assert!(!none.has(&d.join("absent/a.byok")));
    }
}
