//! The sidecar: a small JSON file the offline half writes beside each `.byok`, telling the
//! online half what the package should import as, so the import can be checked. The `.byok`
//! itself stays exactly Azure's format.
//!
//! ```json
//! {"format":"byok-sidecar/1",
//!  "byok_sha256":"<SHA-256 of the .byok file's bytes>",
//!  "kek_kid":"<versioned KEK id>",
//!  "kty":"RSA","key_size":3072,
//!  "public_key_pem":"-----BEGIN PUBLIC KEY-----...","public_key_sha256":"<hex>",
//!  "source":{"label":"...","id":"<hex>","token_label":"...","token_serial":"...",
//!            "manufacturer":"...","model":"...","firmware":"..."}}
//! ```

use crate::fingerprint::Fingerprint;
use crate::target::{EncodingError, KeyKind, Kty, TargetPublicKey};
use serde::{Deserialize, Serialize};

pub const FORMAT: &str = "byok-sidecar/1";
const MAX_SIDECAR_BYTES: usize = 64 * 1024;

/// The file name suffix: `X.byok` gets `X.byok.sidecar.json`.
pub const SUFFIX: &str = ".sidecar.json";

/// The sidecar's path beside a package: `X.byok` → `X.byok.sidecar.json`.
pub fn path_for(byok: &std::path::Path) -> std::path::PathBuf {
    let mut name = byok.as_os_str().to_owned();
    name.push(SUFFIX);
    std::path::PathBuf::from(name)
}

/// Why a sidecar was refused.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error("the sidecar is not valid JSON of format {FORMAT}: {0}")]
    Json(String),
    #[error("the sidecar's format is `{0}`; this tool reads `{FORMAT}`")]
    Format(String),
    #[error("the sidecar describes {kind}, which is not an importable key: {source}")]
    Kind { kind: String, source: EncodingError },
    #[error("the sidecar's public key is not valid: {0}")]
    PublicKey(EncodingError),
    #[error("the sidecar's public_key_sha256 does not match its public_key_pem: it was edited")]
    FingerprintMismatch,
    #[error("the sidecar says {stated} but its public key is {actual}: it was edited")]
    KindMismatch { stated: KeyKind, actual: KeyKind },
    #[error("the sidecar is {0} bytes; the limit is {MAX_SIDECAR_BYTES}")]
    TooLarge(usize),
}

/// Where a target key came from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Source {
    pub label: String,
    /// `CKA_ID` in hex.
    pub id: String,
    pub token_label: String,
    pub token_serial: String,
    pub manufacturer: String,
    pub model: String,
    pub firmware: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSidecar {
    format: String,
    byok_sha256: String,
    kek_kid: String,
    kty: String,
    key_size: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    curve: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    public_key_pem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    public_key_sha256: Option<String>,
    source: Source,
}

/// What the online half needs to check an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sidecar {
    pub byok_sha256: Fingerprint,
    pub kek_kid: String,
    pub kind: KeyKind,
    /// `None` for AES keys.
    pub public_key: Option<TargetPublicKey>,
    pub source: Source,
}

impl Sidecar {
    /// Reads and cross-checks a sidecar.
    pub fn parse(bytes: &[u8]) -> Result<Self, SidecarError> {
        if bytes.len() > MAX_SIDECAR_BYTES {
            return Err(SidecarError::TooLarge(bytes.len()));
        }
        let raw: RawSidecar =
            serde_json::from_slice(bytes).map_err(|e| SidecarError::Json(e.to_string()))?;
        if raw.format != FORMAT {
            return Err(SidecarError::Format(raw.format.chars().take(40).collect()));
        }
        let byok_sha256 = Fingerprint::from_hex(&raw.byok_sha256)
            .map_err(|e| SidecarError::Json(e.to_string()))?;
        let is_ec = Kty::from_jwk_kty(&raw.kty) == Some(Kty::Ec);
        if is_ec && raw.curve.is_none() {
            return Err(SidecarError::Json("an EC sidecar names its curve".into()));
        }
        // An EC key's size follows from its curve: compared below, once the public key has
        // shown whether the curve itself was edited.
        let size = (!is_ec).then_some(raw.key_size);
        let kind = KeyKind::from_parts(&raw.kty, size, raw.curve.as_deref()).map_err(|source| {
            SidecarError::Kind {
                kind: format!(
                    "{} {}",
                    raw.kty.chars().take(20).collect::<String>(),
                    raw.key_size
                ),
                source,
            }
        })?;
        let public_key = match &raw.public_key_pem {
            None => None,
            Some(pem) => {
                let key = TargetPublicKey::from_pem(pem).map_err(SidecarError::PublicKey)?;
                if key.kind() != kind {
                    return Err(SidecarError::KindMismatch {
                        stated: kind,
                        actual: key.kind(),
                    });
                }
                if let Some(curve) = kind.curve().filter(|c| c.bits() != raw.key_size) {
                    return Err(SidecarError::Kind {
                        kind: kind.to_string(),
                        source: EncodingError::SizeNotCurve {
                            bits: raw.key_size,
                            curve,
                        },
                    });
                }
                let stated = raw.public_key_sha256.as_deref().map(Fingerprint::from_hex);
                if !matches!(stated, Some(Ok(f)) if f == key.fingerprint()) {
                    return Err(SidecarError::FingerprintMismatch);
                }
                Some(key)
            }
        };
        Ok(Self {
            byok_sha256,
            kek_kid: raw.kek_kid,
            kind,
            public_key,
            source: raw.source,
        })
    }

    /// The file's bytes, pretty-printed JSON.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let raw = RawSidecar {
            format: FORMAT.into(),
            byok_sha256: self.byok_sha256.to_hex(),
            kek_kid: self.kek_kid.clone(),
            kty: self.kind.kty().to_string(),
            key_size: self.kind.bits(),
            curve: self.kind.curve().map(|c| c.name().into()),
            public_key_pem: self.public_key.as_ref().map(TargetPublicKey::to_pem),
            public_key_sha256: self.public_key.as_ref().map(|k| k.fingerprint().to_hex()),
            source: self.source.clone(),
        };
        let mut out = serde_json::to_vec_pretty(&raw).expect("plain data serializes");
        out.push(b'\n');
        out
    }
}
