//! Soft delete, and what a deleted key allows: get, recover, purge.

use super::{Service, entry, entry_mut};
use crate::error::ApiResult;
use crate::model::{self, Deleted};
use serde_json::Value;

impl Service {
    /// Soft-deletes a key; it stays recoverable for [`model::RECOVERABLE_DAYS`].
    pub async fn delete(&self, name: &str) -> ApiResult<Value> {
        self.store
            .write(|state| {
                let entry = entry_mut(state, name, false)?;
                let now = model::now();
                entry.deleted = Some(Deleted {
                    deleted_date: now,
                    scheduled_purge_date: now + model::RECOVERABLE_DAYS * 86400,
                });
                entry.deleted_bundle(&self.vault_url)
            })
            .await
    }

    pub async fn get_deleted(&self, name: &str) -> ApiResult<Value> {
        self.store
            .read(|state| entry(state, name, true)?.deleted_bundle(&self.vault_url))
            .await
    }

    pub async fn recover(&self, name: &str) -> ApiResult<Value> {
        self.store
            .write(|state| {
                let entry = entry_mut(state, name, true)?;
                entry.deleted = None;
                entry.latest().bundle(&self.vault_url, &entry.name)
            })
            .await
    }

    pub async fn purge(&self, name: &str) -> ApiResult<()> {
        self.store
            .write(|state| {
                entry(state, name, true)?;
                state.keys.remove(&name.to_ascii_lowercase());
                Ok(())
            })
            .await
    }
}
