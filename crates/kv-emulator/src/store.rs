//! The emulator's state: in memory, and with `--persist` durable before a response is sent
//! (written to a temporary file, fsynced, renamed over the state file, directory fsynced).

use crate::error::{ApiError, ApiResult};
use crate::model::KeyEntry;
use crate::state_dir::{self, FileError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use tokio::sync::Mutex;

/// Every key, by lowercase name (names are case-insensitive, as in the service).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    pub keys: BTreeMap<String, KeyEntry>,
}

/// Why the saved state could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(
        "{} is not a state file this kv-emulator reads ({reason}); move it away to start with \
         no keys, or run the kv-emulator version that wrote it",
        path.display()
    )]
    Invalid { path: PathBuf, reason: String },
}

pub struct Store {
    state: Mutex<State>,
    file: Option<PathBuf>,
}

impl Store {
    /// An in-memory store, or one loaded from (and saved to) `file`.
    pub fn open(file: Option<PathBuf>) -> Result<Self, StoreError> {
        let state = match &file {
            Some(path) if path.exists() => serde_json::from_slice(&state_dir::read(path)?)
                .map_err(|e| StoreError::Invalid {
                    path: path.clone(),
                    reason: e.to_string(),
                })?,
            _ => State::default(),
        };
        Ok(Self {
            state: Mutex::new(state),
            file,
        })
    }

    /// Reads the state.
    pub async fn read<T>(&self, f: impl FnOnce(&State) -> ApiResult<T>) -> ApiResult<T> {
        let state = self.state.lock().await;
        f(&state)
    }

    /// Changes the state all or nothing: `f` works on a copy, which replaces the state only if
    /// `f` succeeds and (with persistence) the copy is durably on disk.
    pub async fn write<T>(&self, f: impl FnOnce(&mut State) -> ApiResult<T>) -> ApiResult<T> {
        let mut state = self.state.lock().await;
        let mut next = state.clone();
        let out = f(&mut next)?;
        if let Some(path) = &self.file {
            let bytes = serde_json::to_vec(&next).map_err(|e| ApiError::internal(e.to_string()))?;
            let path = path.clone();
            tokio::task::spawn_blocking(move || save(&path, &bytes))
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?
                .map_err(|e| ApiError::internal(format!("could not persist the state: {e}")))?;
        }
        *state = next;
        Ok(out)
    }
}

fn save(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".state-")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}
