//! The keys API's behaviour, independent of HTTP: validation as the service does it, BYOK
//! unwrap, versions, soft delete.

use crate::crypto::{self, Material};
use crate::error::{ApiError, ApiResult};
use crate::model::{self, Attributes, AttributesIn, Deleted, KeyEntry, KeyVersion};
use crate::store::{State, Store};
use byok_core::b64;
use byok_core::target::{Curve, KeyKind, Kty, TargetKey};
use byok_core::{KeyId, KeyTransferPackage};
use pkcs8::{DecodePrivateKey, EncodePrivateKey};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// Which service the emulator plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Vault,
    ManagedHsm,
}

/// Behaviour switches.
#[derive(Debug, Clone)]
pub struct Options {
    pub flavor: Flavor,
    /// Accept a BYOK plaintext that is one DER object followed by 1 to 7 zero bytes, as
    /// SoftHSM 2.6.1's CKM_AES_KEY_WRAP_PAD produces. Off by default: Azure may refuse such
    /// packages.
    pub accept_zero_padded_kwp: bool,
}

pub struct Service {
    pub store: Store,
    pub vault_url: String,
    pub options: Options,
}

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

fn validate_name(name: &str) -> ApiResult<()> {
    byok_core::kid::validate_key_name(name).map_err(|e| ApiError::bad_parameter(e.to_string()))
}

fn hsm_kty(kty: &str, flavor: Flavor) -> ApiResult<(Kty, String)> {
    let k = Kty::from_jwk_kty(kty).ok_or_else(|| {
        ApiError::bad_parameter(format!(
            "The kty '{kty}' is not valid: use RSA, RSA-HSM, EC, EC-HSM or oct-HSM."
        ))
    })?;
    let hsm = kty.ends_with("-HSM");
    match (k, flavor) {
        (Kty::Oct, Flavor::Vault) => Err(ApiError::bad_parameter(
            "oct-HSM keys are supported on Managed HSM only.",
        )),
        (Kty::Oct, _) if kty != "oct-HSM" && kty != "oct" => Err(ApiError::bad_parameter(format!(
            "The kty '{kty}' is not valid."
        ))),
        (_, Flavor::ManagedHsm) => Ok((k, k.hsm_name().to_string())),
        (_, Flavor::Vault) if hsm => Ok((k, k.hsm_name().to_string())),
        (Kty::Rsa, _) => Ok((k, "RSA".into())),
        (Kty::Ec, _) => Ok((k, "EC".into())),
    }
}

fn kind_of(kty: Kty, size: Option<u32>, crv: Option<&str>) -> ApiResult<KeyKind> {
    let kind = match kty {
        Kty::Rsa => KeyKind::Rsa {
            bits: size.unwrap_or(2048),
        },
        Kty::Oct => KeyKind::Oct {
            bits: size.unwrap_or(256),
        },
        Kty::Ec => KeyKind::Ec {
            curve: crv
                .unwrap_or("P-256")
                .parse::<Curve>()
                .ok()
                .filter(|c| c.name() == crv.unwrap_or("P-256"))
                .ok_or_else(|| {
                    ApiError::bad_parameter(format!(
                        "The curve '{}' is not valid: use P-256, P-384, P-521 or P-256K.",
                        crv.unwrap_or_default()
                    ))
                })?,
        },
    };
    kind.check_importable().map_err(|_| {
        ApiError::bad_parameter(format!("The key size or curve of {kind} is not supported."))
    })
}

fn attributes(input: Option<&AttributesIn>, now: i64) -> Attributes {
    let a = input.cloned().unwrap_or_default();
    Attributes {
        enabled: a.enabled.unwrap_or(true),
        nbf: a.nbf,
        exp: a.exp,
        created: now,
        updated: now,
        exportable: a.exportable,
    }
}

fn store_new_version(state: &mut State, name: &str, version: KeyVersion) -> ApiResult<()> {
    let entry = state
        .keys
        .entry(name.to_ascii_lowercase())
        .or_insert_with(|| KeyEntry {
            name: name.to_string(),
            versions: Vec::new(),
            deleted: None,
        });
    if entry.deleted.is_some() {
        return Err(ApiError::conflict(format!(
            "Key {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the key can only be recovered or purged."
        )));
    }
    entry.versions.push(version);
    Ok(())
}

fn live<'a>(state: &'a State, name: &str) -> ApiResult<&'a KeyEntry> {
    state
        .keys
        .get(&name.to_ascii_lowercase())
        .filter(|e| e.deleted.is_none())
        .ok_or_else(|| ApiError::key_not_found(name, None))
}

impl Service {
    pub async fn create(&self, name: &str, req: CreateRequest) -> ApiResult<Value> {
        validate_name(name)?;
        let (kty, kty_name) = hsm_kty(&req.kty, self.options.flavor)?;
        if req.public_exponent.is_some_and(|e| e != 65537) {
            return Err(ApiError::bad_parameter(
                "Only the public exponent 65537 is supported.",
            ));
        }
        let kind = kind_of(kty, req.key_size, req.crv.as_deref())?;
        let ops = req.key_ops.clone().unwrap_or_else(|| kty.default_key_ops());
        model::validate_ops(&ops, kty)?;
        let key = tokio::task::spawn_blocking(move || TargetKey::generate(kind))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let version = self.new_version(
            kty_name,
            kind,
            ops,
            &key,
            req.attributes.as_ref(),
            req.tags,
            req.release_policy,
            false,
        );
        self.store
            .write(|state| {
                store_new_version(state, name, version.clone())?;
                version.bundle(
                    &self.vault_url,
                    &state.keys[&name.to_ascii_lowercase()].name,
                )
            })
            .await
    }

    #[allow(clippy::too_many_arguments)]
    fn new_version(
        &self,
        kty_name: String,
        kind: KeyKind,
        key_ops: Vec<String>,
        key: &TargetKey,
        attrs: Option<&AttributesIn>,
        tags: Option<BTreeMap<String, String>>,
        release_policy: Option<Value>,
        imported_byok: bool,
    ) -> KeyVersion {
        KeyVersion {
            version: model::new_version(),
            kty: kty_name,
            bits: kind.bits(),
            crv: kind.curve().map(|c| c.name().to_string()),
            key_ops,
            material: b64::encode(key.plaintext()),
            attributes: attributes(attrs, model::now()),
            tags: tags.unwrap_or_default(),
            release_policy,
            imported_byok,
        }
    }

    pub async fn import(&self, name: &str, req: ImportRequest) -> ApiResult<Value> {
        validate_name(name)?;
        let kty_in = req.key.kty.clone();
        let (kty, mut kty_name) = hsm_kty(&kty_in, self.options.flavor)?;
        let (key, byok) = match &req.key.key_hsm {
            Some(blob) => (
                self.unwrap_byok(blob, kty, req.key.crv.as_deref()).await?,
                true,
            ),
            None => (jwk_private_key(&req.key, kty)?, false),
        };
        if byok || req.hsm == Some(true) {
            kty_name = kty.hsm_name().to_string();
        }
        let kind = key.kind();
        kind.check_importable()
            .map_err(|_| ApiError::bad_parameter(format!("{kind} keys cannot be imported.")))?;
        let ops = req
            .key
            .key_ops
            .clone()
            .unwrap_or_else(|| kty.default_key_ops());
        model::validate_ops(&ops, kty)?;
        if ops.iter().any(|o| o == "import") {
            return Err(ApiError::bad_parameter(
                "An imported key cannot carry the 'import' operation.",
            ));
        }
        let version = self.new_version(
            kty_name,
            kind,
            ops,
            &key,
            req.attributes.as_ref(),
            req.tags,
            req.release_policy,
            byok,
        );
        self.store
            .write(|state| {
                store_new_version(state, name, version.clone())?;
                version.bundle(
                    &self.vault_url,
                    &state.keys[&name.to_ascii_lowercase()].name,
                )
            })
            .await
    }

    /// Reads a `key_hsm` blob: base64 of the `.byok` file, unwrapped with the KEK it names.
    async fn unwrap_byok(&self, blob: &str, kty: Kty, crv: Option<&str>) -> ApiResult<TargetKey> {
        let bad = |m: String| ApiError::bad_parameter(m);
        let bytes = b64::decode_lenient("key_hsm", blob)
            .map_err(|e| bad(format!("key_hsm is not base64: {e}")))?;
        let package = KeyTransferPackage::parse(&bytes)
            .map_err(|e| bad(format!("key_hsm is not a valid BYOK package: {e}")))?;
        let kid: &KeyId = package.kid();
        let ours = self.vault_url.trim_end_matches('/');
        if kid.vault().to_string() != ours {
            return Err(bad(format!(
                "The KEK {kid} in the BYOK package belongs to another vault; the KEK must be in this vault ({ours})."
            )));
        }
        let version = kid.version().unwrap_or_default().to_string();
        let (kek_version, kek_material) = self
            .store
            .read(|state| {
                let entry = live(state, kid.name())
                    .map_err(|_| bad(format!("The KEK {kid} was not found in this vault.")))?;
                let v = entry
                    .versions
                    .iter()
                    .find(|v| v.version.eq_ignore_ascii_case(&version))
                    .ok_or_else(|| {
                        bad(format!(
                            "The KEK version {kid} was not found in this vault."
                        ))
                    })?;
                Ok((v.clone(), v.plaintext()?))
            })
            .await?;
        if kek_version.kty != "RSA-HSM" {
            return Err(bad(format!(
                "The KEK {kid} is {}, but a KEK must be RSA-HSM.",
                kek_version.kty
            )));
        }
        if kek_version.key_ops != ["import"] {
            return Err(bad(format!(
                "The KEK {kid} has key operations {:?}; a KEK must have 'import' as its only operation.",
                kek_version.key_ops
            )));
        }
        kek_version
            .attributes
            .usable_at(model::now())
            .map_err(|e| bad(format!("The KEK {kid} cannot be used: {}", e.message)))?;
        let kek = rsa::PrivateKey::from_pkcs8_der(&kek_material)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        package
            .check_against_kek(
                &byok_core::KekPublicKey::from_rsa(kek.to_public_key())
                    .map_err(|e| ApiError::internal(e.to_string()))?,
            )
            .map_err(|e| bad(format!("The BYOK package does not fit its KEK: {e}")))?;
        let ciphertext = package.ciphertext().to_vec();
        let plaintext =
            tokio::task::spawn_blocking(move || byok_core::wrap::unwrap(&ciphertext, &kek))
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?
                .map_err(|e| bad(format!("The BYOK package could not be unwrapped: {e}")))?;
        let key = match TargetKey::from_plaintext(kty, &plaintext) {
            Ok(key) => key,
            Err(strict) => match self.strip_zero_padding(kty, &plaintext) {
                Some(key) => key,
                None => {
                    return Err(bad(format!(
                        "The unwrapped key does not match the declared kty {}: {strict}",
                        kty.hsm_name()
                    )));
                }
            },
        };
        if let (KeyKind::Ec { curve }, Some(crv)) = (key.kind(), crv)
            && curve.name() != crv
        {
            return Err(bad(format!(
                "The unwrapped key is on {curve}, but the request declares crv {crv}."
            )));
        }
        Ok(key)
    }

    /// SoftHSM 2.6.1 leniency: one DER object followed by 1 to 7 zero bytes.
    fn strip_zero_padding(&self, kty: Kty, plaintext: &[u8]) -> Option<TargetKey> {
        if !self.options.accept_zero_padded_kwp || kty == Kty::Oct {
            return None;
        }
        let trimmed = plaintext.len() - plaintext.iter().rev().take_while(|b| **b == 0).count();
        (1..8)
            .filter_map(|pad| plaintext.len().checked_sub(pad))
            .filter(|len| *len >= trimmed)
            .find_map(|len| TargetKey::from_plaintext(kty, &plaintext[..len]).ok())
    }

    pub async fn get(&self, name: &str, version: &str) -> ApiResult<Value> {
        self.store
            .read(|state| {
                let entry = live(state, name)?;
                entry
                    .version(version)
                    .ok_or_else(|| ApiError::key_not_found(name, Some(version)))?
                    .bundle(&self.vault_url, &entry.name)
            })
            .await
    }

    pub async fn update(&self, name: &str, version: &str, req: UpdateRequest) -> ApiResult<Value> {
        self.store
            .write(|state| {
                let entry = state
                    .keys
                    .get_mut(&name.to_ascii_lowercase())
                    .filter(|e| e.deleted.is_none())
                    .ok_or_else(|| ApiError::key_not_found(name, None))?;
                let display = entry.name.clone();
                let v = if version.is_empty() {
                    entry.versions.last_mut()
                } else {
                    entry
                        .versions
                        .iter_mut()
                        .find(|v| v.version.eq_ignore_ascii_case(version))
                }
                .ok_or_else(|| ApiError::key_not_found(name, Some(version)))?;
                let kty = Kty::from_jwk_kty(&v.kty).ok_or_else(|| ApiError::internal("kty"))?;
                if let Some(ops) = req.key_ops {
                    model::validate_ops(&ops, kty)?;
                    if (v.key_ops == ["import"] || ops == ["import"]) && ops != v.key_ops {
                        return Err(ApiError::bad_parameter(
                            "The 'import' operation of a KEK cannot be added or removed.",
                        ));
                    }
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
                v.attributes.updated = model::now();
                v.bundle(&self.vault_url, &display)
            })
            .await
    }

    pub async fn delete(&self, name: &str) -> ApiResult<Value> {
        self.store
            .write(|state| {
                let entry = state
                    .keys
                    .get_mut(&name.to_ascii_lowercase())
                    .filter(|e| e.deleted.is_none())
                    .ok_or_else(|| ApiError::key_not_found(name, None))?;
                let now = model::now();
                entry.deleted = Some(Deleted {
                    deleted_date: now,
                    scheduled_purge_date: now + model::RECOVERABLE_DAYS * 86400,
                });
                entry.deleted_bundle(&self.vault_url)
            })
            .await
    }

    fn deleted<'a>(state: &'a State, name: &str) -> ApiResult<&'a KeyEntry> {
        state
            .keys
            .get(&name.to_ascii_lowercase())
            .filter(|e| e.deleted.is_some())
            .ok_or_else(|| ApiError::key_not_found(name, None))
    }

    pub async fn get_deleted(&self, name: &str) -> ApiResult<Value> {
        self.store
            .read(|state| Self::deleted(state, name)?.deleted_bundle(&self.vault_url))
            .await
    }

    pub async fn recover(&self, name: &str) -> ApiResult<Value> {
        self.store
            .write(|state| {
                Self::deleted(state, name)?;
                let entry = state
                    .keys
                    .get_mut(&name.to_ascii_lowercase())
                    .expect("checked");
                entry.deleted = None;
                entry.latest().bundle(&self.vault_url, &entry.name)
            })
            .await
    }

    pub async fn purge(&self, name: &str) -> ApiResult<()> {
        self.store
            .write(|state| {
                Self::deleted(state, name)?;
                state.keys.remove(&name.to_ascii_lowercase());
                Ok(())
            })
            .await
    }

    /// Keys (latest version each) or one key's versions, paged.
    pub async fn list(
        &self,
        versions_of: Option<&str>,
        deleted: bool,
        skip: usize,
        max: usize,
    ) -> ApiResult<(Vec<Value>, bool)> {
        self.store
            .read(|state| {
                let items: Vec<Value> = match versions_of {
                    Some(name) => {
                        let entry = live(state, name)?;
                        entry
                            .versions
                            .iter()
                            .map(|v| v.item(&self.vault_url, &entry.name, true))
                            .collect()
                    }
                    None => state
                        .keys
                        .values()
                        .filter(|e| e.deleted.is_some() == deleted)
                        .map(|e| {
                            let mut item = e.latest().item(&self.vault_url, &e.name, false);
                            if let (true, Some(d)) = (deleted, &e.deleted) {
                                item["recoveryId"] =
                                    json!(format!("{}/deletedkeys/{}", self.vault_url, e.name));
                                item["deletedDate"] = json!(d.deleted_date);
                                item["scheduledPurgeDate"] = json!(d.scheduled_purge_date);
                            }
                            item
                        })
                        .collect(),
                };
                let more = items.len() > skip + max;
                Ok((items.into_iter().skip(skip).take(max).collect(), more))
            })
            .await
    }

    /// Loads a usable key version for an operation, checking key_ops, enabled, nbf and exp.
    pub async fn for_operation(
        &self,
        name: &str,
        version: &str,
        op: &str,
    ) -> ApiResult<(String, Material)> {
        let v = self
            .store
            .read(|state| {
                let entry = live(state, name)?;
                let v = entry
                    .version(version)
                    .ok_or_else(|| ApiError::key_not_found(name, Some(version)))?;
                Ok((
                    format!("{}/keys/{}/{}", self.vault_url, entry.name, v.version),
                    v.clone(),
                ))
            })
            .await?;
        let (kid, v) = v;
        if !v.key_ops.iter().any(|o| o == op) {
            return Err(ApiError::forbidden(format!(
                "Operation {op} is not permitted on this key."
            )));
        }
        v.attributes.usable_at(model::now())?;
        let material = Material::from_plaintext(v.kind()?, &v.plaintext()?)?;
        Ok((kid, material))
    }
}

/// Builds a private key from plain JWK members (non-BYOK import).
fn jwk_private_key(jwk: &JwkIn, kty: Kty) -> ApiResult<TargetKey> {
    let get = |name: &'static str, v: &Option<String>| -> ApiResult<Zeroizing<Vec<u8>>> {
        let v = v
            .as_ref()
            .ok_or_else(|| ApiError::bad_parameter(format!("The JWK lacks '{name}'.")))?;
        crypto::field(name, v).map(Zeroizing::new)
    };
    let encode_err = |e: &dyn std::fmt::Display| {
        ApiError::bad_parameter(format!("The JWK is not a valid private key: {e}"))
    };
    match kty {
        Kty::Rsa => {
            let uint = |b: &[u8]| rsa::BoxedUint::from_be_slice_vartime(b);
            let (n, e, d, p, q) = (
                get("n", &jwk.n)?,
                get("e", &jwk.e)?,
                get("d", &jwk.d)?,
                get("p", &jwk.p)?,
                get("q", &jwk.q)?,
            );
            let key = rsa::PrivateKey::from_components(
                uint(&n),
                uint(&e),
                uint(&d),
                vec![uint(&p), uint(&q)],
            )
            .map_err(|e| encode_err(&e))?;
            let der = key.to_pkcs8_der().map_err(|e| encode_err(&e))?;
            TargetKey::from_pkcs8_der(der.as_bytes()).map_err(|e| encode_err(&e))
        }
        Kty::Ec => {
            let crv: Curve = jwk.crv.as_deref().unwrap_or_default().parse().map_err(
                |e: byok_core::target::EncodingError| ApiError::bad_parameter(e.to_string()),
            )?;
            let d = get("d", &jwk.d)?;
            macro_rules! pkcs8_of {
                ($C:ty) => {{
                    let secret = elliptic_curve_secret::<$C>(&d).map_err(|e| encode_err(&e))?;
                    secret.to_pkcs8_der().map_err(|e| encode_err(&e))?
                }};
            }
            let der = match crv {
                Curve::P256 => pkcs8_of!(p256::NistP256),
                Curve::P384 => pkcs8_of!(p384::NistP384),
                Curve::P521 => pkcs8_of!(p521::NistP521),
                Curve::P256K => pkcs8_of!(k256::Secp256k1),
            };
            let key = TargetKey::from_pkcs8_der(der.as_bytes()).map_err(|e| encode_err(&e))?;
            // x and y, when given, must be the key's public point.
            if let (Some(x), Some(y)) = (&jwk.x, &jwk.y) {
                let given = byok_core::TargetPublicKey::from_ec_coordinates(
                    crv,
                    &crypto::field("x", x)?,
                    &crypto::field("y", y)?,
                )
                .map_err(|e| encode_err(&e))?;
                if Some(&given) != key.public_key() {
                    return Err(ApiError::bad_parameter(
                        "The JWK's x and y do not match its d.",
                    ));
                }
            }
            Ok(key)
        }
        Kty::Oct => TargetKey::from_aes_bytes(&get("k", &jwk.k)?).map_err(|e| encode_err(&e)),
    }
}

fn elliptic_curve_secret<C>(d: &[u8]) -> Result<ecdsa::elliptic_curve::SecretKey<C>, String>
where
    C: ecdsa::elliptic_curve::CurveArithmetic,
{
    ecdsa::elliptic_curve::SecretKey::<C>::from_slice(d).map_err(|e| e.to_string())
}
