//! Stored keys and the JSON the service returns for them (KeyBundle, DeletedKeyBundle).

use crate::error::{ApiError, ApiResult};
use crate::service::Flavor;
use byok_core::KeyOp;
use byok_core::b64;
use byok_core::jwk::PublicJwk;
use byok_core::target::{KeyKind, Kty, TargetKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

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
    pub fn to_json(&self, flavor: Flavor, kty: &str) -> Value {
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
        let vault_hsm_key = flavor == Flavor::Vault && kty.ends_with("-HSM");
        if flavor == Flavor::ManagedHsm || vault_hsm_key || self.exportable.is_some() {
            m.insert("exportable".into(), json!(self.exportable.unwrap_or(false)));
        }
        if vault_hsm_key {
            m.insert("hsmPlatform".into(), json!(HSM_PLATFORM));
        }
        Value::Object(m)
    }

    /// Whether the key may be used now.
    pub fn usable_at(&self, now: i64) -> ApiResult<()> {
        if !self.enabled {
            return Err(ApiError::forbidden(
                "Operation is not allowed on a disabled key.",
            ));
        }
        if self.nbf.is_some_and(|nbf| now < nbf) {
            return Err(ApiError::forbidden(
                "Operation is not allowed before the key's nbf.",
            ));
        }
        if self.exp.is_some_and(|exp| now >= exp) {
            return Err(ApiError::forbidden(
                "Operation is not allowed on an expired key.",
            ));
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
    /// `RSA`, `RSA-HSM`, `EC`, `EC-HSM` or `oct-HSM`.
    pub kty: String,
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
    pub fn kind(&self) -> ApiResult<KeyKind> {
        KeyKind::from_parts(&self.kty, Some(self.bits), self.crv.as_deref())
            .map_err(|e| ApiError::internal(format!("bad stored key type: {e}")))
    }

    pub fn plaintext(&self) -> ApiResult<Zeroizing<Vec<u8>>> {
        b64::decode("material", &self.material)
            .map(Zeroizing::new)
            .map_err(|_| ApiError::internal("bad stored material"))
    }

    /// The public members derived from the private material (none for an AES key).
    pub fn derive_public(&self) -> ApiResult<Option<PublicJwk>> {
        let kind = self.kind()?;
        if kind.kty() == Kty::Oct {
            return Ok(None);
        }
        let key = TargetKey::from_plaintext(kind.kty(), &self.plaintext()?)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(key.public_key().map(PublicJwk::from_public_key))
    }

    /// Fills [`KeyVersion::public`] of a version stored before it existed.
    pub fn fill_public(&mut self) -> ApiResult<()> {
        if self.public.is_none() {
            self.public = self.derive_public()?;
        }
        Ok(())
    }

    /// The public JWK with `kid`, `kty` and `key_ops` (no private member, ever); with
    /// `padded_e`, an RSA exponent of 65537 as [`E_PADDED`].
    pub fn jwk(&self, kid: &str, padded_e: bool) -> ApiResult<Value> {
        let mut jwk = Map::new();
        jwk.insert("kid".into(), json!(kid));
        jwk.insert("kty".into(), json!(self.kty));
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
    pub fn bundle(&self, view: View<'_>, name: &str) -> ApiResult<Value> {
        let kid = format!("{}/keys/{name}/{}", view.vault_url, self.version);
        let mut bundle = Map::new();
        bundle.insert("key".into(), self.jwk(&kid, view.padded_rsa_exponent)?);
        bundle.insert(
            "attributes".into(),
            self.attributes.to_json(view.flavor, &self.kty),
        );
        if !self.tags.is_empty() {
            bundle.insert("tags".into(), json!(self.tags));
        }
        if let Some(policy) = &self.release_policy {
            bundle.insert(
                "release_policy".into(),
                crate::service::release_policy_json(policy),
            );
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
        let attributes = self.attributes.to_json(view.flavor, &self.kty);
        let mut item = json!({"kid": kid, "attributes": attributes});
        if !self.tags.is_empty() {
            item["tags"] = json!(self.tags);
        }
        item
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

    pub fn version(&self, version: &str) -> Option<&KeyVersion> {
        if version.is_empty() {
            return Some(self.latest());
        }
        self.versions
            .iter()
            .find(|v| v.version.eq_ignore_ascii_case(version))
    }

    /// What is still running on the key now, if anything.
    pub fn pending_now(&self) -> Option<PendingKind> {
        self.pending
            .filter(|p| std::time::Instant::now() < p.until)
            .map(|p| p.kind)
    }

    pub fn deleted_bundle(&self, view: View<'_>) -> ApiResult<Value> {
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

/// A fresh 32-hex version id.
pub fn new_version() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("system RNG");
    hex::encode(bytes)
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
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
