//! Soft delete, and what a deleted key allows: get, recover, purge.
//!
//! With `--delete-delay MS` a deletion keeps running for that long after its 200, as on Key
//! Vault (20 s to 2 minutes in the recordings; docs/azure-behaviour.md section 1): meanwhile
//! `GET /deletedkeys/{name}` answers 404 "Deleted Key not found: NAME", a purge answers 409
//! `ObjectIsBeingDeleted`, and a create or import of the name 409 `ObjectIsBeingDeleted`. A
//! recovery runs for as long: `GET /keys/{name}` answers 404 until it ends. With no delay
//! (the default) everything happens at once, as on Managed HSM.

use super::{Service, found_mut};
use crate::error::{ApiError, ApiResult};
use crate::model::{self, Deleted, KeyEntry, Pending, PendingKind};
use axum::http::StatusCode;
use serde_json::Value;
use std::time::Instant;

/// The 404 while a deletion runs (R-PURGE, R-RESUME: no innererror).
pub(crate) fn deleted_key_not_found(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "KeyNotFound",
        format!("Deleted Key not found: {name}"),
    )
}

/// The 409 for purging while a deletion runs (recorded: docs/azure-behaviour.md 1e).
fn being_deleted() -> ApiError {
    ApiError::conflict("Key is currently being deleted.").with_inner("ObjectIsBeingDeleted")
}

impl Service {
    /// A deletion or recovery that ends after the configured delay, if there is one.
    fn pending(&self, kind: PendingKind) -> Option<Pending> {
        let delay = self.options.delete_delay;
        (!delay.is_zero()).then(|| Pending {
            kind,
            until: self.clock.instant() + delay,
        })
    }

    /// Soft-deletes a key; it stays recoverable for [`model::RECOVERABLE_DAYS`].
    pub async fn delete(&self, name: &str) -> ApiResult<Value> {
        let pending = self.pending(PendingKind::Deleting);
        let (key, at) = (name.to_string(), self.clock.instant());
        let entry = self
            .change(name, move |slot| {
                let entry = found_mut(slot, &key, false, at)?;
                let now = crate::flavor::now();
                entry.deleted = Some(Deleted {
                    deleted_date: now,
                    scheduled_purge_date: now + model::RECOVERABLE_DAYS * 86400,
                });
                entry.pending = pending;
                Ok(entry.clone())
            })
            .await?;
        Ok(entry.deleted_bundle(self.view())?)
    }

    pub async fn get_deleted(&self, name: &str) -> ApiResult<Value> {
        let entry = self
            .key(name, true)
            .await
            .map_err(|_| deleted_key_not_found(name))?;
        Ok(entry.deleted_bundle(self.view())?)
    }

    /// Recovers a deleted key. While its deletion still runs: 409 `ObjectIsBeingDeleted`,
    /// as a purge gets (inferred: no recording of a recover that early was found).
    pub async fn recover(&self, name: &str) -> ApiResult<Value> {
        let pending = self.pending(PendingKind::Recovering);
        let (key, at) = (name.to_string(), self.clock.instant());
        let (display, latest) = self
            .change(name, move |slot| {
                let entry = deleted_entry(slot, &key, at)?;
                entry.deleted = None;
                entry.pending = pending;
                Ok((entry.name.clone(), entry.latest().clone()))
            })
            .await?;
        Ok(latest.bundle(self.view(), &display)?)
    }

    /// Purges a deleted key (the route answers 204 with no body).
    pub async fn purge(&self, name: &str) -> ApiResult<()> {
        let (key, at) = (name.to_string(), self.clock.instant());
        self.change(name, move |slot| {
            deleted_entry(slot, &key, at)?;
            *slot = None;
            Ok(())
        })
        .await?;
        // Its versions are gone: a KEK's parsed private key goes with them.
        self.keks.forget(name);
        Ok(())
    }
}

/// The deleted key in `slot`, or the service's answer while its deletion still runs.
fn deleted_entry<'a>(
    slot: &'a mut Option<KeyEntry>,
    name: &str,
    at: Instant,
) -> ApiResult<&'a mut KeyEntry> {
    let deleting = slot
        .as_ref()
        .is_some_and(|e| e.deleted.is_some() && e.pending_at(at) == Some(PendingKind::Deleting));
    if deleting {
        return Err(being_deleted());
    }
    found_mut(slot, name, true, at)
}
