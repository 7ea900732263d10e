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
use crate::model::{KeyEntry, PendingKind, View};
use crate::store::Store;

pub use keys::{CreateRequest, ImportRequest, JwkIn, UpdateRequest};
pub use operations::OperationRequest;
pub use rules::release_policy_json;

/// Which service the emulator plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Vault,
    ManagedHsm,
}

impl Flavor {
    /// `vault` or `managedhsm`, as `connection.json` names it.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Vault => "vault",
            Flavor::ManagedHsm => "managedhsm",
        }
    }

    /// The token audience the service expects.
    pub fn resource(self) -> &'static str {
        match self {
            Flavor::Vault => "https://vault.azure.net",
            Flavor::ManagedHsm => "https://managedhsm.azure.net",
        }
    }
}

/// A vault's pricing tier. Only a Premium vault holds HSM keys (`RSA-HSM`, `EC-HSM`); a
/// Managed HSM has no tier (the setting is ignored there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sku {
    Standard,
    #[default]
    Premium,
}

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

/// Whether a key is, right now, a live key (`deleted` false) or a deleted one (`deleted`
/// true). While a deletion runs the key is neither; while a recovery runs, neither either.
pub(crate) fn visible(e: &KeyEntry, deleted: bool) -> bool {
    shown(e.deleted.is_some(), e.pending_now(), deleted)
}

/// [`visible`] from a key's parts: whether it is deleted, and what still runs on it.
pub(crate) fn shown(is_deleted: bool, pending: Option<PendingKind>, deleted: bool) -> bool {
    match deleted {
        false => !is_deleted && pending != Some(PendingKind::Recovering),
        true => is_deleted && pending != Some(PendingKind::Deleting),
    }
}

/// The key in `slot` if it is, now, a live one (or with `deleted`, a soft-deleted one).
fn found(slot: Option<KeyEntry>, name: &str, deleted: bool) -> ApiResult<KeyEntry> {
    slot.filter(|e| visible(e, deleted))
        .ok_or_else(|| ApiError::key_not_found(name, None))
}

/// [`found`] inside a change (on the writer thread).
fn found_mut<'a>(
    slot: &'a mut Option<KeyEntry>,
    name: &str,
    deleted: bool,
) -> ApiResult<&'a mut KeyEntry> {
    slot.as_mut()
        .filter(|e| visible(e, deleted))
        .ok_or_else(|| ApiError::key_not_found(name, None))
}

impl Service {
    /// A key by name (names are case-insensitive): a live one, or with `deleted` a
    /// soft-deleted one.
    async fn key(&self, name: &str, deleted: bool) -> ApiResult<KeyEntry> {
        found(self.store.entry(name).await?, name, deleted)
    }

    /// A key that is not deleted.
    pub(crate) async fn live(&self, name: &str) -> ApiResult<KeyEntry> {
        self.key(name, false).await
    }
}
