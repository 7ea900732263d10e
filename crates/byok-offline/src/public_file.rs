//! The target's public key file (`<name>.public.pem`): written beside its package, or left
//! as it is when it holds the same key already.

use crate::error::{OfflineError, Result};
use crate::limits::MAX_INPUT_BYTES;
use byok_cli_common::files::{self, FileKind, Listing, NewFile};
use byok_core::TargetPublicKey;
use serde::Serialize;
use std::fmt;
use std::path::PathBuf;

/// What happened to the target's public key PEM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PublicKeyFile {
    /// Written now.
    #[serde(rename = "written")]
    Written,
    /// A file holding the same key was there (from `generate` or an earlier run): left as is.
    #[serde(rename = "already present")]
    AlreadyPresent,
}

impl fmt::Display for PublicKeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PublicKeyFile::Written => "written",
            PublicKeyFile::AlreadyPresent => "already present",
        })
    }
}

/// An existing target's public key PEM: to write, or already there with the same key.
pub(crate) struct PemPlan {
    path: PathBuf,
    /// `None` when a file with the same key is there.
    pem: Option<String>,
}

impl PemPlan {
    /// A file at `path` must hold the same key or be absent (a link there is refused).
    pub(crate) fn new(path: PathBuf, key: &TargetPublicKey, label: &str) -> Result<Self> {
        if files::refuse_symlinks(&[&path]).map(|()| !path.exists())? {
            return Ok(Self::absent(path, key));
        }
        let same = files::read_text_limited(&path, MAX_INPUT_BYTES)
            .ok()
            .and_then(|text| TargetPublicKey::from_pem(&text).ok())
            .is_some_and(|found| &found == key);
        if !same {
            return Err(OfflineError::PublicKeyFileDiffers {
                path,
                label: label.into(),
            });
        }
        tracing::info!(path = %path.display(), "the public key file holds this key already");
        Ok(Self { path, pem: None })
    }

    /// As [`PemPlan::new`], for a file in the directory `listing` was read from: a name it
    /// did not hold is taken as absent without asking the filesystem (a batch writes it with
    /// a no-replace rename, which refuses one that appeared since).
    pub(crate) fn new_in(
        listing: &Listing,
        path: PathBuf,
        key: &TargetPublicKey,
        label: &str,
    ) -> Result<Self> {
        match listing.has(&path) {
            true => Self::new(path, key, label),
            false => Ok(Self::absent(path, key)),
        }
    }

    /// The plan for a file not there: `key` written under `path`.
    fn absent(path: PathBuf, key: &TargetPublicKey) -> Self {
        Self {
            pem: Some(key.to_pem()),
            path,
        }
    }

    pub(crate) fn write(self) -> Result<(PathBuf, PublicKeyFile)> {
        let path = self.path.clone();
        match self.into_new_file() {
            Some(file) => {
                files::write_new(&file.path, &file.bytes, file.kind)?;
                tracing::info!(path = %path.display(), "public key written");
                Ok((path, PublicKeyFile::Written))
            }
            None => Ok((path, PublicKeyFile::AlreadyPresent)),
        }
    }

    /// The file to write, `None` when one with the same key is there (a batch's committer
    /// writes it).
    pub(crate) fn into_new_file(self) -> Option<NewFile> {
        self.pem.map(|pem| NewFile {
            path: self.path,
            bytes: pem.into_bytes(),
            kind: FileKind::PublicKey,
        })
    }
}
