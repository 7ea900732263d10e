//! A key's lifecycle: create, import, get, update.

use super::{Service, found_mut, jwk, rules};
use crate::byok;
use crate::error::{ApiError, ApiResult};
use crate::model::{Attributes, AttributesIn, KeyEntry, KeyVersion, PendingKind};
use byok_core::KeyOp;
use byok_core::b64;
use byok_core::target::{KeyType, TargetKey};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// `POST /keys/{name}/create`.
#[derive(Debug, Deserialize)]
pub struct CreateRequest {
    pub kty: String,
    pub key_size: Option<u32>,
    pub crv: Option<String>,
    pub key_ops: Option<Vec<String>>,
    pub attributes: Option<AttributesIn>,
    pub tags: Option<BTreeMap<String, String>>,
    pub public_exponent: Option<u32>,
    pub release_policy: Option<Value>,
}

/// `PUT /keys/{name}`.
#[derive(Debug, Deserialize)]
pub struct ImportRequest {
    pub key: JwkIn,
    #[serde(rename = "Hsm")]
    pub hsm: Option<bool>,
    pub attributes: Option<AttributesIn>,
    pub tags: Option<BTreeMap<String, String>>,
    pub release_policy: Option<Value>,
}

/// A JWK with private members, or `key_hsm`.
#[derive(Debug, Deserialize)]
pub struct JwkIn {
    pub kty: String,
    pub key_ops: Option<Vec<String>>,
    pub n: Option<String>,
    pub e: Option<String>,
    pub d: Option<String>,
    pub dp: Option<String>,
    pub dq: Option<String>,
    pub qi: Option<String>,
    pub p: Option<String>,
    pub q: Option<String>,
    pub k: Option<String>,
    pub crv: Option<String>,
    pub x: Option<String>,
    pub y: Option<String>,
    pub key_hsm: Option<String>,
}

/// `PATCH /keys/{name}/{version}`.
#[derive(Debug, Deserialize)]
pub struct UpdateRequest {
    pub key_ops: Option<Vec<String>>,
    pub attributes: Option<AttributesIn>,
    pub tags: Option<BTreeMap<String, String>>,
    pub release_policy: Option<Value>,
}

/// What create and import set besides the key: attributes, tags, release policy.
struct Properties {
    attributes: Option<AttributesIn>,
    tags: Option<BTreeMap<String, String>>,
    release_policy: Option<Value>,
}

impl Service {
    pub async fn create(&self, name: &str, req: CreateRequest) -> ApiResult<Value> {
        rules::name(name)?;
        let key_type = rules::kty(&req.kty, self.options.flavor)?;
        let kty = key_type.kty;
        let (attributes, policy) = (req.attributes.as_ref(), req.release_policy.as_ref());
        self.may_add(name, key_type, attributes, policy).await?;
        rules::public_exponent(req.public_exponent)?;
        let kind = rules::created_kind(kty, req.key_size, req.crv.as_deref())?;
        let key_ops = rules::requested_ops(req.key_ops.as_deref(), kty)?;
        let key = tokio::task::spawn_blocking(move || TargetKey::generate(kind))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let properties = Properties {
            attributes: req.attributes,
            tags: req.tags,
            release_policy: req.release_policy,
        };
        let version = new_version(key_type, key_ops, &key, properties, false);
        self.add_version(name, version).await
    }

    /// Imports plain JWK members, or a BYOK `key_hsm` (which makes the key HSM-backed).
    pub async fn import(&self, name: &str, req: ImportRequest) -> ApiResult<Value> {
        rules::name(name)?;
        if req.key.key_hsm.is_some() {
            rules::byok_kty(&req.key.kty, req.key.crv.as_deref(), self.options.flavor)?;
        }
        let requested = rules::kty(&req.key.kty, self.options.flavor)?;
        let kty = requested.kty;
        let hsm = req.key.key_hsm.is_some() || req.hsm == Some(true);
        let key_type = match hsm {
            true => KeyType::hsm(kty),
            false => requested,
        };
        let (attributes, policy) = (req.attributes.as_ref(), req.release_policy.as_ref());
        self.may_add(name, key_type, attributes, policy).await?;
        let (key, byok) = match &req.key.key_hsm {
            Some(blob) => {
                let crv = req.key.crv.as_deref();
                let package = byok::Package::read(blob, &self.vault_url)?;
                let kek = self.entry(package.kek_name(), false).await?;
                let with = byok::Unwrapping {
                    keks: &self.keks,
                    accept_zero_padded_kwp: self.options.accept_zero_padded_kwp,
                };
                let key = package.unwrap(kek, with, kty, crv).await?;
                (key, true)
            }
            None => (jwk::private_key(&req.key, kty)?, false),
        };
        let kind = key.kind();
        kind.check_importable()
            .map_err(|_| ApiError::bad_parameter(format!("{kind} keys cannot be imported.")))?;
        let key_ops = rules::imported_ops(req.key.key_ops.as_deref(), kty)?;
        let properties = Properties {
            attributes: req.attributes,
            tags: req.tags,
            release_policy: req.release_policy,
        };
        let version = new_version(key_type, key_ops, &key, properties, byok);
        self.add_version(name, version).await
    }

    /// Whether a create or import of `name` would make its first version.
    async fn first_version(&self, name: &str) -> ApiResult<bool> {
        Ok(self.store.entry(name).await?.is_none())
    }

    pub async fn get(&self, name: &str, version: &str) -> ApiResult<Value> {
        let entry = self.live(name).await?;
        let v = entry
            .version(version)
            .ok_or_else(|| ApiError::key_not_found(name, Some(version)))?;
        Ok(v.bundle(self.view(), &entry.name)?)
    }

    /// Changes a version's operations, attributes, tags or release policy; an empty
    /// `version` is the latest.
    pub async fn update(&self, name: &str, version: &str, req: UpdateRequest) -> ApiResult<Value> {
        let (key, wanted) = (name.to_string(), version.to_string());
        let at = self.clock.instant();
        let (display, v) = self
            .change(name, move |slot| {
                let entry = found_mut(slot, &key, false, at)?;
                let display = entry.name.clone();
                let v = entry
                    .version_mut(&wanted)
                    .ok_or_else(|| ApiError::key_not_found(&key, Some(&wanted)))?;
                apply_update(v, req)?;
                Ok((display, v.clone()))
            })
            .await?;
        Ok(v.bundle(self.view(), &display)?)
    }

    /// The checks create and import share before a key is made: this vault may hold a key
    /// of `key_type` (its SKU), and the release policy fits `exportable` (required on a
    /// key's first version only).
    async fn may_add(
        &self,
        name: &str,
        key_type: KeyType,
        attributes: Option<&AttributesIn>,
        policy: Option<&Value>,
    ) -> ApiResult<()> {
        let flavor = self.options.flavor;
        rules::sku(key_type, flavor, self.options.sku)?;
        let first = self.first_version(name).await?;
        rules::release_policy(flavor, attributes, policy, first)
    }

    /// Adds a version under `name` (a new key if there is none) and answers its bundle,
    /// made once the version is saved (off the writer thread).
    async fn add_version(&self, name: &str, version: KeyVersion) -> ApiResult<Value> {
        let (key, at) = (name.to_string(), self.clock.instant());
        let (display, answer) = self
            .change(name, move |slot| {
                let entry = entry_for_new_version(slot, &key, at)?;
                let mut version = version;
                // A new version of an exportable key keeps the key's release policy when the
                // request gives none (the policy is required on the first version only).
                if version.release_policy.is_none() && version.attributes.exportable == Some(true) {
                    version.release_policy =
                        entry.versions.last().and_then(|v| v.release_policy.clone());
                }
                entry.versions.push(version.clone());
                Ok((entry.name.clone(), version))
            })
            .await?;
        Ok(answer.bundle(self.view(), &display)?)
    }
}

fn new_version(
    key_type: KeyType,
    key_ops: Vec<KeyOp>,
    key: &TargetKey,
    properties: Properties,
    imported_byok: bool,
) -> KeyVersion {
    let kind = key.kind();
    let now = crate::flavor::now();
    let a = properties.attributes.unwrap_or_default();
    // Kept with the version: a GET then needs no private-key parse.
    let public = key
        .public_key()
        .map(byok_core::jwk::PublicJwk::from_public_key);
    KeyVersion {
        version: crate::ids::new_version(),
        kty: key_type,
        bits: kind.bits(),
        crv: kind.curve().map(|c| c.name().to_string()),
        key_ops,
        material: b64::encode(key.plaintext()),
        attributes: Attributes {
            enabled: a.enabled.unwrap_or(true),
            nbf: a.nbf,
            exp: a.exp,
            created: now,
            updated: now,
            exportable: a.exportable,
        },
        tags: properties.tags.unwrap_or_default(),
        release_policy: properties.release_policy,
        imported_byok,
        public,
    }
}

/// The entry a new version goes into; a deleted key's name cannot be reused until purged.
/// The messages are the service's (Azure/azure-sdk-for-cpp `key_client_delete_test_live.cpp`);
/// the innererror codes are inferred from the secrets client's and the recorded purge
/// conflict (docs/azure-behaviour.md 1d).
fn entry_for_new_version<'a>(
    slot: &'a mut Option<KeyEntry>,
    name: &str,
    at: std::time::Instant,
) -> ApiResult<&'a mut KeyEntry> {
    let entry = slot.get_or_insert_with(|| KeyEntry {
        name: name.to_string(),
        versions: Vec::new(),
        deleted: None,
        pending: None,
    });
    match (entry.deleted.is_some(), entry.pending_at(at)) {
        (true, Some(PendingKind::Deleting)) => Err(ApiError::conflict(format!(
            "Key {name} is currently being deleted and cannot be re-created; retry later."
        ))
        .with_inner("ObjectIsBeingDeleted")),
        (true, _) => Err(ApiError::conflict(format!(
            "Key {name} is currently in a deleted but recoverable state, and its name cannot be \
             reused; in this state, the key can only be recovered or purged."
        ))
        .with_inner("ObjectIsDeletedButRecoverable")),
        // Inferred (no recording): a new version while a recovery runs is refused too.
        (false, Some(PendingKind::Recovering)) => Err(ApiError::conflict(format!(
            "Key {name} is currently being recovered and cannot be re-created; retry later."
        ))),
        _ => Ok(entry),
    }
}

fn apply_update(v: &mut KeyVersion, req: UpdateRequest) -> ApiResult<()> {
    if let Some(names) = req.key_ops {
        let kty = v.kind()?.kty();
        let ops = rules::requested_ops(Some(names.as_slice()), kty)?;
        rules::ops_change(&v.key_ops, &ops)?;
        v.key_ops = ops;
    }
    if let Some(a) = req.attributes {
        if let Some(e) = a.enabled {
            v.attributes.enabled = e;
        }
        if a.nbf.is_some() {
            v.attributes.nbf = a.nbf;
        }
        if a.exp.is_some() {
            v.attributes.exp = a.exp;
        }
    }
    if let Some(tags) = req.tags {
        v.tags = tags;
    }
    if req.release_policy.is_some() {
        v.release_policy = req.release_policy;
    }
    v.attributes.updated = crate::flavor::now();
    Ok(())
}
