//! The keys API's behaviour, independent of HTTP, as a list of operations:
//!
//! - `keys`: create, import (a plain JWK, or a BYOK `key_hsm` that [`crate::byok`]
//!   unwraps), get, update;
//! - `deleted`: soft delete, get a deleted key, recover, purge;
//! - `listing`: keys, one key's versions, deleted keys, paged;
//! - `operations`: sign, verify, encrypt, decrypt, wrapKey, unwrapKey;
//! - `throttle` (a sibling module, [`crate::throttle`]) limits requests before they get here;
//! - `rules`: the service's checks of names, key types, sizes, curves and key operations,
//!   with its messages; `jwk`: a private key from plain JWK members.

mod deleted;
mod jwk;
mod keys;
mod listing;
mod operations;
mod rules;

use crate::error::{ApiError, ApiResult};
pub use crate::flavor::{Clock, Flavor, Sku};
use crate::model::{KeyEntry, ModelError, PendingKind, Unusable, View};
use crate::store::{DbError, Store};
use std::time::Instant;

pub use crate::model::release_policy_json;
pub use keys::{CreateRequest, ImportRequest, JwkIn, UpdateRequest};
pub use operations::OperationRequest;

/// Behaviour switches.
#[derive(Debug, Clone)]
pub struct Options {
    pub flavor: Flavor,
    /// Accept an RSA or EC BYOK plaintext that is one conformant DER key followed by 1 to 7
    /// zero bytes, as SoftHSM 2.6.1's CKM_AES_KEY_WRAP_PAD produces (SoftHSM rehearsals only).
    /// Off by default: Azure's strict parser refuses such packages.
    pub accept_zero_padded_kwp: bool,
    /// How long a deletion (and a recovery) keeps running after its 200; zero: at once.
    pub delete_delay: std::time::Duration,
    pub sku: Sku,
    /// Serve RSA keys' `e` as `AAEAAQ`, as vaults did in 2020–2022 (`--legacy-rsa-exponent`).
    pub padded_rsa_exponent: bool,
}

pub struct Service {
    pub store: Store,
    /// The KEKs' private keys, parsed once per version ([`crate::byok`]).
    pub keks: crate::byok::KekCache,
    pub vault_url: String,
    pub options: Options,
    /// The time deletions and recoveries run by (`--delete-delay`): the system's, or a
    /// test's held one.
    pub clock: Clock,
}

impl Service {
    /// How keys are shown: this vault's URL and flavor.
    pub fn view(&self) -> View<'_> {
        View {
            vault_url: &self.vault_url,
            flavor: self.options.flavor,
            padded_rsa_exponent: self.options.padded_rsa_exponent,
        }
    }
}

/// A stored key's trouble, in the service's shape: 403 `Forbidden` for a key that may not be
/// used now, 500 for what the emulator stored and cannot read back.
impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::Unusable(why) => why.into(),
            ModelError::Stored(reason) => ApiError::internal(reason),
        }
    }
}

impl From<Unusable> for ApiError {
    fn from(why: Unusable) -> Self {
        ApiError::forbidden(why.to_string())
    }
}

/// The key database failed: 500, with what failed.
impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        ApiError::internal(e.to_string())
    }
}

/// Whether a key is, right now, a live key (`deleted` false) or a deleted one (`deleted`
/// true). While a deletion runs the key is neither; while a recovery runs, neither either.
pub(crate) fn visible(e: &KeyEntry, deleted: bool, now: Instant) -> bool {
    shown(e.deleted.is_some(), e.pending_at(now), deleted)
}

/// [`visible`] from a key's parts: whether it is deleted, and what still runs on it.
pub(crate) fn shown(is_deleted: bool, pending: Option<PendingKind>, deleted: bool) -> bool {
    match deleted {
        false => !is_deleted && pending != Some(PendingKind::Recovering),
        true => is_deleted && pending != Some(PendingKind::Deleting),
    }
}

/// [`found`] inside a change (on the writer thread).
fn found_mut<'a>(
    slot: &'a mut Option<KeyEntry>,
    name: &str,
    deleted: bool,
    now: Instant,
) -> ApiResult<&'a mut KeyEntry> {
    slot.as_mut()
        .filter(|e| visible(e, deleted, now))
        .ok_or_else(|| ApiError::key_not_found(name, None))
}

impl Service {
    /// The key `name` (names are case-insensitive) if there is one, and it is now a live one
    /// (or with `deleted`, a soft-deleted one).
    async fn entry(&self, name: &str, deleted: bool) -> ApiResult<Option<KeyEntry>> {
        Ok(self
            .store
            .entry(name)
            .await?
            .filter(|e| visible(e, deleted, self.clock.instant())))
    }

    /// A key by name (names are case-insensitive): a live one, or with `deleted` a
    /// soft-deleted one.
    async fn key(&self, name: &str, deleted: bool) -> ApiResult<KeyEntry> {
        self.entry(name, deleted)
            .await?
            .ok_or_else(|| ApiError::key_not_found(name, None))
    }

    /// Changes the key `name` in the store ([`Store::modify`]), answered in the service's
    /// errors.
    async fn change<T: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce(&mut Option<KeyEntry>) -> ApiResult<T> + Send + 'static,
    ) -> ApiResult<T> {
        self.store.modify(name, f).await
    }

    /// A key that is not deleted.
    pub(crate) async fn live(&self, name: &str) -> ApiResult<KeyEntry> {
        self.key(name, false).await
    }
}
