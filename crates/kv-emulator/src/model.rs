//! Stored keys and the JSON the service returns for them (KeyBundle, DeletedKeyBundle).

use crate::flavor::Flavor;
use byok_core::KeyOp;
use byok_core::b64;
use byok_core::jwk::PublicJwk;
use byok_core::target::{KeyKind, KeyType, Kty, TargetKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// Why a stored key cannot be used or shown. The service answers each in its shape
/// (`impl From<ModelError> for ApiError`, in [`crate::service`]).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    /// The key is disabled, not yet valid, or expired.
    #[error("{0}")]
    Unusable(Unusable),
    /// What is stored cannot be read back: the emulator's fault, not the client's.
    #[error("{0}")]
    Stored(String),
}

/// Why a key may not be used now, in the service's words.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum Unusable {
    #[error("Operation is not allowed on a disabled key.")]
    Disabled,
    #[error("Operation is not allowed before the key's nbf.")]
    NotYetValid,
    #[error("Operation is not allowed on an expired key.")]
    Expired,
}

pub type ModelResult<T> = Result<T, ModelError>;

/// Days a deleted key stays recoverable.
pub const RECOVERABLE_DAYS: i64 = 90;

/// `hsmPlatform` of a vault's HSM keys: a string, as the service sends it (`"2"` on 2026
/// Premium-vault RSA-HSM keys; docs/azure-behaviour.md 7d).
pub const HSM_PLATFORM: &str = "2";

/// Where and as which service keys are shown: the vault URL in their ids, and the flavor,
/// which decides some attributes.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub vault_url: &'a str,
    pub flavor: Flavor,
    /// `--legacy-rsa-exponent`: RSA keys' `e` as `AAEAAQ` (65537 in four bytes, a leading
    /// zero kept), as vaults answered in 2020–2022, not `AQAB`.
    pub padded_rsa_exponent: bool,
}

/// 65537 as current vaults send it (minimal big-endian), and as older ones did: four bytes,
/// a leading zero kept (Azure/azure-sdk-for-js recordings of 2020–2022, docs/azure-behaviour.md
/// 7h).
pub const E_MINIMAL: &str = "AQAB";
pub const E_PADDED: &str = "AAEAAQ";

/// Key attributes as stored; times are Unix seconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attributes {
    pub enabled: bool,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub created: i64,
    pub updated: i64,
    pub exportable: Option<bool>,
}

impl Attributes {
    /// The attributes JSON of a key of type `kty`. Managed HSM always sends `exportable`
    /// (false when never set; R-MHSM-OCT); a vault sends it, with `hsmPlatform` as a string,
    /// on HSM keys (docs/azure-behaviour.md 7d), and on software keys only when set.
    pub fn to_json(&self, flavor: Flavor, kty: KeyType) -> Value {
        let mut m = Map::new();
        m.insert("enabled".into(), json!(self.enabled));
        if let Some(nbf) = self.nbf {
            m.insert("nbf".into(), json!(nbf));
        }
        if let Some(exp) = self.exp {
            m.insert("exp".into(), json!(exp));
        }
        m.insert("created".into(), json!(self.created));
        m.insert("updated".into(), json!(self.updated));
        m.insert("recoveryLevel".into(), json!("Recoverable+Purgeable"));
        m.insert("recoverableDays".into(), json!(RECOVERABLE_DAYS));
        let vault_hsm_key = flavor == Flavor::Vault && kty.hsm;
        if flavor == Flavor::ManagedHsm || vault_hsm_key || self.exportable.is_some() {
            m.insert("exportable".into(), json!(self.exportable.unwrap_or(false)));
        }
        if vault_hsm_key {
            m.insert("hsmPlatform".into(), json!(HSM_PLATFORM));
        }
        Value::Object(m)
    }

    /// Whether the key may be used now.
    pub fn usable_at(&self, now: i64) -> Result<(), Unusable> {
        if !self.enabled {
            return Err(Unusable::Disabled);
        }
        if self.nbf.is_some_and(|nbf| now < nbf) {
            return Err(Unusable::NotYetValid);
        }
        if self.exp.is_some_and(|exp| now >= exp) {
            return Err(Unusable::Expired);
        }
        Ok(())
    }
}

/// The attributes a request may set.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AttributesIn {
    pub enabled: Option<bool>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub exportable: Option<bool>,
}

/// One version of a key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyVersion {
    pub version: String,
    /// `RSA`, `RSA-HSM`, `EC`, `EC-HSM` or `oct-HSM` in the state (by its name).
    #[serde(with = "key_type_name")]
    pub kty: KeyType,
    pub bits: u32,
    pub crv: Option<String>,
    /// Stored by Key Vault's names (`wrapKey`, ...), as state files have always held them.
    pub key_ops: Vec<KeyOp>,
    /// PKCS#8 DER (RSA, EC) or raw AES bytes, base64url. The emulator keeps its keys in its
    /// state file in the clear: it is a rehearsal tool, not a vault.
    pub material: String,
    pub attributes: Attributes,
    pub tags: BTreeMap<String, String>,
    pub release_policy: Option<Value>,
    /// Set when the key came in through BYOK (`key_hsm`).
    pub imported_byok: bool,
    /// The public members (`n`, `e` or `crv`, `x`, `y`), kept when the version is written so
    /// that a GET does not parse the private key (an RSA parse costs more than the rest of
    /// the request). Versions stored before it existed have none: [`KeyVersion::jwk`] derives
    /// it then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public: Option<PublicJwk>,
}

impl KeyVersion {
    pub fn kind(&self) -> ModelResult<KeyKind> {
        KeyKind::from_parts(self.kty.name(), Some(self.bits), self.crv.as_deref())
            .map_err(|e| ModelError::Stored(format!("bad stored key type: {e}")))
    }

    pub fn plaintext(&self) -> ModelResult<Zeroizing<Vec<u8>>> {
        b64::decode("material", &self.material)
            .map(Zeroizing::new)
            .map_err(|_| ModelError::Stored("bad stored material".into()))
    }

    /// The public members derived from the private material (none for an AES key).
    pub fn derive_public(&self) -> ModelResult<Option<PublicJwk>> {
        let kind = self.kind()?;
        if kind.kty() == Kty::Oct {
            return Ok(None);
        }
        let key = TargetKey::from_plaintext(kind.kty(), &self.plaintext()?)
            .map_err(|e| ModelError::Stored(e.to_string()))?;
        Ok(key.public_key().map(PublicJwk::from_public_key))
    }

    /// Fills [`KeyVersion::public`] of a version stored before it existed.
    pub fn fill_public(&mut self) -> ModelResult<()> {
        if self.public.is_none() {
            self.public = self.derive_public()?;
        }
        Ok(())
    }

    /// The public JWK with `kid`, `kty` and `key_ops` (no private member, ever); with
    /// `padded_e`, an RSA exponent of 65537 as [`E_PADDED`].
    pub fn jwk(&self, kid: &str, padded_e: bool) -> ModelResult<Value> {
        let mut jwk = Map::new();
        jwk.insert("kid".into(), json!(kid));
        jwk.insert("kty".into(), json!(self.kty.name()));
        jwk.insert("key_ops".into(), json!(self.key_ops));
        let derived;
        let public = match &self.public {
            Some(public) => Some(public),
            None => {
                derived = self.derive_public()?;
                derived.as_ref()
            }
        };
        if let Some(public) = public {
            for (k, v) in [
                ("n", &public.n),
                ("e", &public.e),
                ("crv", &public.crv),
                ("x", &public.x),
                ("y", &public.y),
            ] {
                if let Some(v) = v {
                    let v = match (k, v.as_str()) {
                        ("e", E_MINIMAL) if padded_e => E_PADDED,
                        _ => v.as_str(),
                    };
                    jwk.insert(k.into(), json!(v));
                }
            }
        }
        Ok(Value::Object(jwk))
    }

    /// The KeyBundle JSON.
    pub fn bundle(&self, view: View<'_>, name: &str) -> ModelResult<Value> {
        let kid = format!("{}/keys/{name}/{}", view.vault_url, self.version);
        let mut bundle = Map::new();
        bundle.insert("key".into(), self.jwk(&kid, view.padded_rsa_exponent)?);
        bundle.insert(
            "attributes".into(),
            self.attributes.to_json(view.flavor, self.kty),
        );
        if !self.tags.is_empty() {
            bundle.insert("tags".into(), json!(self.tags));
        }
        if let Some(policy) = &self.release_policy {
            bundle.insert("release_policy".into(), release_policy_json(policy));
        }
        Ok(Value::Object(bundle))
    }

    /// The KeyItem JSON used in lists.
    pub fn item(&self, view: View<'_>, name: &str, with_version: bool) -> Value {
        let vault_url = view.vault_url;
        let kid = if with_version {
            format!("{vault_url}/keys/{name}/{}", self.version)
        } else {
            format!("{vault_url}/keys/{name}")
        };
        let attributes = self.attributes.to_json(view.flavor, self.kty);
        let mut item = json!({"kid": kid, "attributes": attributes});
        if !self.tags.is_empty() {
            item["tags"] = json!(self.tags);
        }
        item
    }
}

/// A [`KeyType`] as the state holds it: Key Vault's name (`EC-HSM`), as state files have
/// always held it.
mod key_type_name {
    use byok_core::target::KeyType;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(kty: &KeyType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(kty.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<KeyType, D::Error> {
        let name = String::deserialize(d)?;
        KeyType::from_name(&name).ok_or_else(|| D::Error::custom(format!("unknown kty {name:?}")))
    }
}

/// A key name and its versions (oldest first); deleted keys keep theirs until purged.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyEntry {
    pub name: String,
    pub versions: Vec<KeyVersion>,
    pub deleted: Option<Deleted>,
    /// A deletion or recovery still running (with `--delete-delay`); not in the version rows
    /// but in the store's `pending` table, so that with `--persist` it survives a restart.
    #[serde(skip)]
    pub pending: Option<Pending>,
}

/// What is still running on a key, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub kind: PendingKind,
    pub until: std::time::Instant,
}

impl Pending {
    /// What of `pending` still runs at `now`.
    pub fn running_at(pending: Option<Pending>, now: std::time::Instant) -> Option<PendingKind> {
        pending.filter(|p| now < p.until).map(|p| p.kind)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingKind {
    /// Deleted, but not yet a deleted key: `GET /deletedkeys/{name}` still answers 404.
    Deleting,
    /// Recovered, but not yet a key again: `GET /keys/{name}` still answers 404.
    Recovering,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Deleted {
    pub deleted_date: i64,
    pub scheduled_purge_date: i64,
}

impl KeyEntry {
    pub fn latest(&self) -> &KeyVersion {
        self.versions.last().expect("an entry always has a version")
    }

    /// The version with this id (ids are case-insensitive); an empty `version` is the latest.
    pub fn version(&self, version: &str) -> Option<&KeyVersion> {
        self.position(version).map(|i| &self.versions[i])
    }

    /// [`KeyEntry::version`], to change it.
    pub fn version_mut(&mut self, version: &str) -> Option<&mut KeyVersion> {
        self.position(version).map(|i| &mut self.versions[i])
    }

    /// The one lookup of a version by id.
    fn position(&self, version: &str) -> Option<usize> {
        match version {
            "" => self.versions.len().checked_sub(1),
            version => self
                .versions
                .iter()
                .position(|v| v.version.eq_ignore_ascii_case(version)),
        }
    }

    /// What is still running on the key at `now` (by the service's [`crate::flavor::Clock`]),
    /// if anything.
    pub fn pending_at(&self, now: std::time::Instant) -> Option<PendingKind> {
        Pending::running_at(self.pending, now)
    }

    pub fn deleted_bundle(&self, view: View<'_>) -> ModelResult<Value> {
        let mut bundle = self.latest().bundle(view, &self.name)?;
        if let Some(d) = &self.deleted {
            let vault_url = view.vault_url;
            bundle["recoveryId"] = json!(format!("{vault_url}/deletedkeys/{}", self.name));
            bundle["deletedDate"] = json!(d.deleted_date);
            bundle["scheduledPurgeDate"] = json!(d.scheduled_purge_date);
        }
        Ok(bundle)
    }
}

pub use crate::flavor::now;

/// A release policy as the service answers it (Azure/azure-sdk-for-js recordings of Dec 2021
/// and Jan 2022, docs/azure-behaviour.md 7g): `contentType` added
/// (`application/json; charset=utf-8` when the request gave none), `data` decoded and
/// serialised again in the service's member order (`version`, `anyOf`; `authority`,
/// `allOf`; `claim`, `equals`; the rest after), and `immutable` echoed when the request set
/// it. A `data` that is not base64url of JSON is answered as given.
pub fn release_policy_json(policy: &Value) -> Value {
    let content_type = policy
        .get("contentType")
        .cloned()
        .unwrap_or_else(|| Value::from("application/json; charset=utf-8"));
    let data = policy.get("data").cloned().unwrap_or(Value::Null);
    let data = data
        .as_str()
        .and_then(|d| byok_core::b64::decode("data", d).ok())
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .map(|json| {
            Value::from(byok_core::b64::encode(
                reordered(json).to_string().as_bytes(),
            ))
        })
        .unwrap_or(data);
    let mut out = serde_json::Map::new();
    out.insert("contentType".into(), content_type);
    out.insert("data".into(), data);
    if let Some(immutable) = policy.get("immutable") {
        out.insert("immutable".into(), immutable.clone());
    }
    Value::Object(out)
}

/// `value` with every object's members in the policy grammar's order.
fn reordered(value: Value) -> Value {
    const ORDER: [&str; 6] = ["version", "anyOf", "authority", "allOf", "claim", "equals"];
    match value {
        Value::Object(map) => {
            let rank = |k: &str| ORDER.iter().position(|o| *o == k).unwrap_or(ORDER.len());
            let mut members: Vec<(String, Value)> = map.into_iter().collect();
            members.sort_by_key(|(k, _)| rank(k));
            Value::Object(
                members
                    .into_iter()
                    .map(|(k, v)| (k, reordered(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(reordered).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use byok_core::target::Curve;

    /// A version as state files written before `key_ops` became [`KeyOp`] hold it.
    const STORED: &str = r#"{"version":"0123456789abcdef0123456789abcdef","kty":"EC-HSM","bits":384,"crv":"P-384","key_ops":["sign","verify","wrapKey","unwrapKey"],"material":"","attributes":{"enabled":true,"nbf":null,"exp":null,"created":1,"updated":1,"exportable":null},"tags":{},"release_policy":null,"imported_byok":true}"#;

    #[test]
    fn stored_versions_load_and_save_unchanged() {
        let v: KeyVersion = serde_json::from_str(STORED).unwrap();
        assert_eq!(
            v.key_ops,
            [KeyOp::Sign, KeyOp::Verify, KeyOp::WrapKey, KeyOp::UnwrapKey]
        );
        assert_eq!(v.kind().unwrap(), KeyKind::Ec { curve: Curve::P384 });
        assert_eq!(serde_json::to_string(&v).unwrap(), STORED);
    }
}
