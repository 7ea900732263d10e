//! Key Vault operations through the SDK, and what they return in this tool's terms.

use crate::connect::Vault;
use crate::error::{KekProblem, OnlineError, Result, from_azure};
use azure_core::http::headers::HeaderName;
use azure_core::http::{RequestContent, Response};
use azure_security_keyvault_keys::models::{
    self as sdk, CreateKeyParameters, CurveName, EncryptionAlgorithm, ImportKeyParameters,
    JsonWebKey, Key, KeyAttributes, KeyClientEncryptOptions, KeyClientGetKeyOptions,
    KeyClientSignOptions, KeyOperation, KeyOperationParameters, KeyType, SignParameters,
};
use byok_core::jwk::PublicJwk;
use byok_core::signature::SignatureAlgorithm;
use byok_core::target::{Curve, KeyKind, Kty};
use byok_core::{KekPublicKey, KeyId, KeyOp, TargetPublicKey, b64};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// A key as the vault shows it, public parts only: `show`'s document, and the `key` of
/// `import`'s. Field names are Key Vault's where it has one.
#[derive(Debug, Clone, Serialize)]
pub struct KeyView {
    /// The key's name and version, read from its kid.
    pub name: String,
    pub version: String,
    pub kid: String,
    pub kty: String,
    pub key_ops: Vec<String>,
    /// `RSA 3072`, `EC P-256`, `AES 256`.
    pub kind: Option<String>,
    pub enabled: Option<bool>,
    pub created: Option<String>,
    pub not_before: Option<String>,
    pub expires: Option<String>,
    pub exportable: Option<bool>,
    /// Sorted, so the output is stable.
    pub tags: BTreeMap<String, String>,
    pub public_key_sha256: Option<String>,
    #[serde(skip)]
    pub public_key: Option<TargetPublicKey>,
    #[serde(skip)]
    pub n: Option<Vec<u8>>,
    #[serde(skip)]
    pub e: Option<Vec<u8>>,
}

fn text<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn rfc3339(t: Option<time::OffsetDateTime>) -> Option<String> {
    t.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
}

impl KeyView {
    pub fn from_sdk(key: Key) -> Result<Self> {
        let jwk = key
            .key
            .ok_or_else(|| OnlineError::BadResponse("no key in the response".into()))?;
        let kty = jwk.kty.as_ref().map(text).unwrap_or_default();
        let crv = jwk.crv.as_ref().map(text);
        let b = |v: &Option<Vec<u8>>| v.as_deref().map(b64::encode);
        let public = match Kty::from_jwk_kty(&kty) {
            Some(Kty::Rsa) | Some(Kty::Ec) => Some(
                PublicJwk {
                    kty: kty.clone(),
                    n: b(&jwk.n),
                    e: b(&jwk.e),
                    crv: crv.clone(),
                    x: b(&jwk.x),
                    y: b(&jwk.y),
                }
                .to_public_key()
                .map_err(|e| OnlineError::BadResponse(e.to_string()))?,
            ),
            _ => None,
        };
        let attrs = key.attributes.unwrap_or_default();
        let kid = jwk.kid.clone().unwrap_or_default();
        let id = KeyId::parse(&kid).ok();
        Ok(Self {
            name: id
                .as_ref()
                .map(|i| i.name().to_string())
                .unwrap_or_default(),
            version: id
                .as_ref()
                .and_then(|i| i.version())
                .unwrap_or_default()
                .to_string(),
            kid,
            kind: public.as_ref().map(|p| p.kind().to_string()),
            kty,
            key_ops: jwk.key_ops.clone().unwrap_or_default(),
            enabled: attrs.enabled,
            created: rfc3339(attrs.created),
            not_before: rfc3339(attrs.not_before),
            expires: rfc3339(attrs.expires),
            exportable: attrs.exportable,
            tags: key.tags.unwrap_or_default().into_iter().collect(),
            public_key_sha256: public.as_ref().map(|p| p.fingerprint().to_hex()),
            public_key: public,
            n: jwk.n,
            e: jwk.e,
        })
    }
}

impl KeyView {
    /// Checks that this key can serve as a KEK (byok-core's rule) and returns its public key.
    pub fn kek_public(&self) -> Result<KekPublicKey> {
        let bad = |problem: KekProblem| OnlineError::BadKek {
            kid: self.kid.clone(),
            problem,
        };
        let enabled = self.enabled != Some(false);
        byok_core::kek::check_kek_policy_of_names(&self.kty, &self.key_ops, enabled)
            .map_err(|e| bad(e.into()))?;
        let (Some(n), Some(e)) = (&self.n, &self.e) else {
            return Err(bad(KekProblem::NoPublicKey));
        };
        Ok(KekPublicKey::from_components(n, e)?)
    }
}

fn not_found(name: &str, err: OnlineError) -> OnlineError {
    match err {
        OnlineError::Service {
            status: 404,
            request_id,
            ..
        } => OnlineError::KeyNotFound {
            name: name.into(),
            request_id,
        },
        other => other,
    }
}

/// A create or import of a name that a deleted key still holds: 409 Conflict, with the
/// innererror `ObjectIsBeingDeleted` or `ObjectIsDeletedButRecoverable` (docs/azure-behaviour.md
/// 1d; the message says the same when the innererror is missing).
fn deleted_name(name: &str, err: OnlineError) -> OnlineError {
    match err {
        OnlineError::Service {
            status: 409,
            inner,
            message,
            request_id,
            ..
        } if inner == "ObjectIsBeingDeleted" || message.contains("is currently being deleted") => {
            OnlineError::NameBeingDeleted {
                name: name.into(),
                request_id,
            }
        }
        OnlineError::Service {
            status: 409,
            inner,
            message,
            request_id,
            ..
        } if inner == "ObjectIsDeletedButRecoverable"
            || message.contains("deleted but recoverable") =>
        {
            OnlineError::NameDeleted {
                name: name.into(),
                request_id,
            }
        }
        other => other,
    }
}

/// A deleted key, as `GET /deletedkeys/{name}` shows it.
#[derive(Debug, Clone)]
pub struct DeletedView {
    pub deleted: Option<String>,
    pub scheduled_purge: Option<String>,
    pub request_id: Option<String>,
}

/// The key a create or an import (`what`, logged with its answer) wrote under `name`, said
/// `done` at `-v`; a name a deleted key still holds is named in the error.
fn written(
    name: &str,
    what: &str,
    done: &str,
    response: azure_core::Result<Response<Key>>,
) -> Result<KeyView> {
    let key = logged(
        what,
        response.map_err(|e| deleted_name(name, from_azure(e)))?,
    )
    .into_model()
    .map_err(|e| OnlineError::BadResponse(e.to_string()))?;
    let view = KeyView::from_sdk(key)?;
    tracing::info!("{done} {}", view.kid);
    Ok(view)
}

/// Logs a response's status and request id (`-v`): the id is what Azure support asks for.
fn logged<T, F>(what: &str, response: Response<T, F>) -> Response<T, F> {
    let id = response
        .headers()
        .get_optional_str(&HeaderName::from_static("x-ms-request-id"))
        .map(|id| format!(", x-ms-request-id {id}"))
        .unwrap_or_default();
    tracing::info!("{what}: HTTP {}{id}", u16::from(response.status()));
    response
}

/// The SDK's name for a signature algorithm.
fn sdk_algorithm(alg: SignatureAlgorithm) -> sdk::SignatureAlgorithm {
    match alg {
        SignatureAlgorithm::Ps256 => sdk::SignatureAlgorithm::Ps256,
        SignatureAlgorithm::Es256 => sdk::SignatureAlgorithm::Es256,
        SignatureAlgorithm::Es256K => sdk::SignatureAlgorithm::Es256K,
        SignatureAlgorithm::Es384 => sdk::SignatureAlgorithm::Es384,
        SignatureAlgorithm::Es512 => sdk::SignatureAlgorithm::Es512,
    }
}

impl Vault {
    pub async fn get(&self, name: &str, version: Option<&str>) -> Result<KeyView> {
        let options = KeyClientGetKeyOptions {
            key_version: version.map(String::from),
            ..Default::default()
        };
        let what = match version {
            Some(v) => format!("GET /keys/{name}/{v}"),
            None => format!("GET /keys/{name}"),
        };
        tracing::info!("{what}");
        let response = self
            .keys
            .get_key(name, Some(options))
            .await
            .map_err(|e| not_found(name, from_azure(e)))?;
        let key = logged(&what, response)
            .into_model()
            .map_err(|e| OnlineError::BadResponse(e.to_string()))?;
        KeyView::from_sdk(key)
    }

    /// `GET /deletedkeys/{name}`: the deleted key, or `None` when the vault has none of that
    /// name (or not yet: a deletion in progress answers 404 too).
    pub async fn get_deleted(&self, name: &str) -> Result<Option<DeletedView>> {
        let what = format!("GET /deletedkeys/{name}");
        tracing::info!("{what}");
        let response = match self.keys.get_deleted_key(name, None).await {
            Ok(r) => r,
            Err(e) => {
                return match not_found(name, from_azure(e)) {
                    OnlineError::KeyNotFound { .. } => Ok(None),
                    other => Err(other),
                };
            }
        };
        let request_id = response
            .headers()
            .get_optional_str(&HeaderName::from_static("x-ms-request-id"))
            .map(String::from);
        let key = logged(&what, response)
            .into_model()
            .map_err(|e| OnlineError::BadResponse(e.to_string()))?;
        Ok(Some(DeletedView {
            deleted: rfc3339(key.deleted_date),
            scheduled_purge: rfc3339(key.scheduled_purge_date),
            request_id,
        }))
    }

    /// Creates an RSA-HSM key whose only operation is `import`.
    pub async fn create_kek(&self, name: &str, bits: u32) -> Result<KeyView> {
        let params = CreateKeyParameters {
            kty: Some(KeyType::RsaHsm),
            key_size: Some(bits as i32),
            key_ops: Some(vec![KeyOperation::Import]),
            key_attributes: Some(KeyAttributes {
                enabled: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let what = format!("POST /keys/{name}/create (RSA-HSM {bits}, import only)");
        tracing::info!("{what}");
        let response = self
            .keys
            .create_key(
                name,
                RequestContent::try_from(params).map_err(from_azure)?,
                None,
            )
            .await;
        written(name, &what, "created", response)
    }

    /// `PUT /keys/{name}` with `key_hsm` = the whole `.byok` file.
    pub async fn import_byok(&self, name: &str, request: &ImportRequest<'_>) -> Result<KeyView> {
        let jwk = JsonWebKey {
            kty: Some(match request.kind.kty() {
                Kty::Rsa => KeyType::RsaHsm,
                Kty::Ec => KeyType::EcHsm,
                Kty::Oct => KeyType::OctHsm,
            }),
            crv: request.kind.curve().map(|c| match c {
                Curve::P256 => CurveName::P256,
                Curve::P384 => CurveName::P384,
                Curve::P521 => CurveName::P521,
                Curve::P256K => CurveName::P256K,
            }),
            key_ops: Some(KeyOp::names(request.ops)),
            t: Some(request.byok.to_vec()),
            ..Default::default()
        };
        let params = ImportKeyParameters {
            hsm: Some(true),
            key: Some(jwk),
            key_attributes: Some(KeyAttributes {
                enabled: Some(request.enabled),
                not_before: request.not_before,
                expires: request.expires,
                exportable: request.exportable.then_some(true),
                ..Default::default()
            }),
            tags: (!request.tags.is_empty()).then(|| request.tags.clone()),
            release_policy: request.release_policy.clone(),
        };
        let what = format!(
            "PUT /keys/{name} (key_hsm: a {}-byte .byok, {})",
            request.byok.len(),
            request.kind
        );
        tracing::info!("{what}");
        let response = self
            .keys
            .import_key(
                name,
                RequestContent::try_from(params).map_err(from_azure)?,
                None,
            )
            .await;
        written(name, &what, "imported", response)
    }

    /// Signs a digest with the vault's key.
    pub async fn sign(
        &self,
        kid: &KeyId,
        alg: SignatureAlgorithm,
        digest: &[u8],
    ) -> Result<Vec<u8>> {
        let params = SignParameters {
            algorithm: Some(sdk_algorithm(alg)),
            value: Some(digest.to_vec()),
        };
        let options = KeyClientSignOptions {
            key_version: kid.version().map(String::from),
            ..Default::default()
        };
        let what = format!("POST {kid}/sign ({})", alg.name());
        tracing::info!("{what}");
        let response = self
            .keys
            .sign(
                kid.name(),
                RequestContent::try_from(params).map_err(from_azure)?,
                Some(options),
            )
            .await
            .map_err(from_azure)?;
        logged(&what, response)
            .into_model()
            .map_err(|e| OnlineError::BadResponse(e.to_string()))?
            .result
            .ok_or_else(|| OnlineError::BadResponse("no signature in the response".into()))
    }
}

/// The AES-GCM algorithm for an AES key of each size: Key Vault encrypts only with the one
/// that matches the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AesGcm {
    A128,
    A192,
    A256,
}

impl AesGcm {
    /// The algorithm for a key of `bits`; `None` for a size AES does not have.
    pub fn for_bits(bits: u32) -> Option<Self> {
        match bits {
            128 => Some(Self::A128),
            192 => Some(Self::A192),
            256 => Some(Self::A256),
            _ => None,
        }
    }

    /// The JWA name the challenge file carries (`A256GCM`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::A128 => "A128GCM",
            Self::A192 => "A192GCM",
            Self::A256 => "A256GCM",
        }
    }

    fn sdk(self) -> EncryptionAlgorithm {
        match self {
            Self::A128 => EncryptionAlgorithm::A128Gcm,
            Self::A192 => EncryptionAlgorithm::A192Gcm,
            Self::A256 => EncryptionAlgorithm::A256Gcm,
        }
    }
}

/// What an AES-GCM encryption in the vault returns.
pub struct Sealed {
    pub iv: Vec<u8>,
    pub tag: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl Vault {
    /// Encrypts with the vault's AES key, AES-GCM of the key's size, the IV chosen by the vault.
    pub async fn encrypt_gcm(&self, kid: &KeyId, gcm: AesGcm, plaintext: &[u8]) -> Result<Sealed> {
        let params = KeyOperationParameters {
            algorithm: Some(gcm.sdk()),
            value: Some(plaintext.to_vec()),
            ..Default::default()
        };
        let options = KeyClientEncryptOptions {
            key_version: kid.version().map(String::from),
            ..Default::default()
        };
        let what = format!("POST {kid}/encrypt ({})", gcm.name());
        tracing::info!("{what}");
        let response = self
            .keys
            .encrypt(
                kid.name(),
                RequestContent::try_from(params).map_err(from_azure)?,
                Some(options),
            )
            .await
            .map_err(from_azure)?;
        let result = logged(&what, response)
            .into_model()
            .map_err(|e| OnlineError::BadResponse(e.to_string()))?;
        match (result.iv, result.authentication_tag, result.result) {
            (Some(iv), Some(tag), Some(ciphertext)) => Ok(Sealed {
                iv,
                tag,
                ciphertext,
            }),
            _ => Err(OnlineError::BadResponse(
                "the encryption result lacks iv, tag or value".into(),
            )),
        }
    }
}

/// What an import sends.
pub struct ImportRequest<'a> {
    pub byok: &'a [u8],
    pub kind: KeyKind,
    pub ops: &'a [KeyOp],
    pub enabled: bool,
    pub not_before: Option<time::OffsetDateTime>,
    pub expires: Option<time::OffsetDateTime>,
    pub exportable: bool,
    pub tags: HashMap<String, String>,
    pub release_policy: Option<azure_security_keyvault_keys::models::KeyReleasePolicy>,
}
