//! The BYOK half of import: a `key_hsm` blob is the base64url of a `.byok` file, read strictly
//! (byok-core), checked against the KEK it names (this vault's, RSA-HSM, `import` only,
//! enabled and within its dates), and unwrapped with that KEK's private key. The plaintext
//! is read as Key Vault parses it (`byok_core::conformance`, the same reading as
//! `byok-offline check`): one canonical DER PKCS#8 with nothing after it, the EC scalar at
//! its fixed length, AES keys of exactly 16, 24 or 32 bytes; a key of the declared type, on
//! the declared curve.

use crate::error::ApiError;
use crate::model::{KeyEntry, KeyVersion, Unusable};
use crate::sync;
use aws_lc_rs::rsa::{OAEP_SHA1_MGF1SHA1, OaepPrivateDecryptingKey, PrivateDecryptingKey};
use byok_core::conformance::{self, Defect};
use byok_core::kek::{KekPolicyError, check_kek_policy};
use byok_core::target::{Curve, EncodingError, KeyKind, Kty, TargetKey};
use byok_core::wrap::{self, WrapError};
use byok_core::{KekPublicKey, KeyId, KeyTransferPackage, b64};
use pkcs8::DecodePrivateKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

/// Why a `key_hsm` was refused. Each is a `BadParameter` answer, but for a stored KEK that
/// cannot be read or an unwrap that did not finish, which are the emulator's faults.
#[derive(Debug, thiserror::Error)]
pub enum ByokError {
    /// The service's wording for a field that is not base64url (docs/azure-behaviour.md
    /// section 3); for `key_hsm` it is inferred by analogy. Standard base64, padding and
    /// whitespace are refused (stricter than the SDKs need: they all send base64url).
    #[error("Content of 'key_hsm' is not base64url.\r\nProperty 'key_hsm' is required.\r\n")]
    NotBase64,
    #[error("key_hsm is not a valid BYOK package: {reason}")]
    NotAPackage { reason: String },
    #[error(
        "The KEK {kid} in the BYOK package belongs to another vault; the KEK must be in this \
         vault ({ours})."
    )]
    ForeignVault { kid: String, ours: String },
    #[error("The KEK {kid} was not found in this vault.")]
    KekNotFound { kid: String },
    #[error("The KEK version {kid} was not found in this vault.")]
    KekVersionNotFound { kid: String },
    #[error("The KEK {kid} {}", policy_message(policy))]
    NotAKek { kid: String, policy: KekPolicyError },
    #[error("The KEK {kid} cannot be used: {reason}")]
    KekUnusable { kid: String, reason: Unusable },
    #[error("The BYOK package does not fit its KEK: {reason}")]
    DoesNotFit { reason: String },
    #[error("The BYOK package could not be unwrapped: {reason}")]
    Unwrap { reason: String },
    #[error("The unwrapped key does not match the declared kty {kty}: {reason}")]
    WrongKty { kty: &'static str, reason: String },
    #[error(
        "The unwrapped key is not what Key Vault parses: {defect} ({}).",
        defect_fix(defect)
    )]
    NotConformant { defect: Defect },
    #[error("The unwrapped key is on {curve}, but the request declares crv {crv}.")]
    WrongCurve { curve: Curve, crv: String },
    #[error("The stored KEK {kid} is unreadable: {reason}")]
    StoredKek { kid: String, reason: String },
    #[error("The unwrap did not finish: {reason}")]
    Task { reason: String },
}

/// The service's wording of the shared KEK rule.
fn policy_message(e: &KekPolicyError) -> String {
    match e {
        KekPolicyError::NotRsaHsm { kty } => format!("is {kty}, but a KEK must be RSA-HSM."),
        KekPolicyError::Operations { ops } => {
            format!("has key operations [{ops}]; a KEK must have 'import' as its only operation.")
        }
        KekPolicyError::Disabled => "is disabled; a KEK must be enabled to import with.".into(),
    }
}

/// What to do about a defect in the unwrapped plaintext.
fn defect_fix(defect: &Defect) -> &'static str {
    match defect {
        Defect::TrailingBytes { zeros: true, .. } => {
            "the HSM's AES key wrap padded the key: use CKM_AES_KEY_WRAP_KWP or a conformant \
             RFC 5649"
        }
        Defect::ScalarLength { .. } => {
            "the HSM dropped the scalar's leading zero byte: run `byok-offline check` on it and \
             use a token that passes"
        }
        _ => "run `byok-offline check` on the HSM that made the package",
    }
}

impl From<ByokError> for ApiError {
    fn from(e: ByokError) -> Self {
        match e {
            ByokError::StoredKek { .. } | ByokError::Task { .. } => {
                ApiError::internal(e.to_string())
            }
            _ => ApiError::bad_parameter(e.to_string()),
        }
    }
}

/// A `key_hsm` package, read and checked to name a KEK of this vault. The service looks the
/// KEK up in its store (by [`Package::kek_name`]) and hands it to [`Package::unwrap`]: this
/// module reads no store and calls nothing of the service.
pub struct Package {
    package: KeyTransferPackage,
    kid: KeyId,
}

/// What an unwrap needs besides the package and its KEK: the parsed KEKs, and whether
/// SoftHSM's zero-padded plaintexts are let through (`--accept-zero-padded-kwp`).
#[derive(Clone, Copy)]
pub struct Unwrapping<'a> {
    pub keks: &'a KekCache,
    pub accept_zero_padded_kwp: bool,
}

impl Package {
    /// Reads a `key_hsm` blob; its KEK must be in the vault at `vault_url`.
    pub fn read(blob: &str, vault_url: &str) -> Result<Self, ByokError> {
        let package = read_package(blob)?;
        let kid = package.kid().clone();
        let ours = vault_url.trim_end_matches('/');
        if kid.vault().to_string() != ours {
            return Err(ByokError::ForeignVault {
                kid: kid.to_string(),
                ours: ours.into(),
            });
        }
        Ok(Self { package, kid })
    }

    /// The name of the KEK the package names.
    pub fn kek_name(&self) -> &str {
        self.kid.name()
    }

    /// Unwraps the key the package carries, declared as `kty` (and `crv`, if given), with
    /// `kek`: the live key named [`Package::kek_name`], if there is one.
    pub async fn unwrap(
        self,
        kek: Option<KeyEntry>,
        with: Unwrapping<'_>,
        kty: Kty,
        crv: Option<&str>,
    ) -> Result<TargetKey, ByokError> {
        let Self { package, kid } = self;
        let kek = find_kek(kek, &kid)?;
        check_kek(&kid, &kek)?;
        let private = with.keks.get(&kid, &kek)?;
        package
            .check_against_kek(&private.public)
            .map_err(|e| ByokError::DoesNotFit {
                reason: e.to_string(),
            })?;
        let plaintext = unwrap(package, private).await?;
        let key = read_key(kty, &plaintext, with.accept_zero_padded_kwp)?;
        check_curve(&key, crv)?;
        Ok(key)
    }
}

/// The package in `key_hsm`, read as Azure reads a vendor tool's: `generator` is
/// informational (the BYOK specification), so a package without it, or with members the
/// format does not define, is read, the rest as strictly as ever (docs/azure-behaviour.md 4b).
fn read_package(blob: &str) -> Result<KeyTransferPackage, ByokError> {
    let bytes = b64::decode("key_hsm", blob).map_err(|_| ByokError::NotBase64)?;
    KeyTransferPackage::parse_tolerant(&bytes)
        .map(|(package, _)| package)
        .map_err(|e| ByokError::NotAPackage {
            reason: e.to_string(),
        })
}

/// The KEK version the package names, of `entry` (the live key of that name, if any).
fn find_kek(entry: Option<KeyEntry>, kid: &KeyId) -> Result<KeyVersion, ByokError> {
    let entry = entry.ok_or_else(|| ByokError::KekNotFound {
        kid: kid.to_string(),
    })?;
    // A package names one version: a kid without one finds none (never "the latest").
    kid.version()
        .filter(|v| !v.is_empty())
        .and_then(|v| entry.version(v))
        .cloned()
        .ok_or_else(|| ByokError::KekVersionNotFound {
            kid: kid.to_string(),
        })
}

/// Checks the key is a KEK usable now: checked on every import, since a KEK's operations,
/// `enabled` and dates can change.
fn check_kek(kid: &KeyId, kek: &KeyVersion) -> Result<(), ByokError> {
    check_kek_policy(kek.kty, &kek.key_ops, kek.attributes.enabled).map_err(|policy| {
        ByokError::NotAKek {
            kid: kid.to_string(),
            policy,
        }
    })?;
    kek.attributes
        .usable_at(crate::flavor::now())
        .map_err(|reason| ByokError::KekUnusable {
            kid: kid.to_string(),
            reason,
        })
}

/// A KEK's private key, parsed for RSA-OAEP decryption (aws-lc), with its public key.
pub struct ParsedKek {
    public: KekPublicKey,
    private: OaepPrivateDecryptingKey,
}

/// The KEKs' parsed private keys by (lowercase name, lowercase version). A version's
/// material never changes, so a parse is good until the key is purged; parsing PKCS#8 on
/// every import cost more than the RSA decryption itself.
#[derive(Default)]
pub struct KekCache {
    keys: Mutex<HashMap<(String, String), Arc<ParsedKek>>>,
}

impl KekCache {
    /// The parsed private key of the KEK version `kek` (named by `kid`).
    fn get(&self, kid: &KeyId, kek: &KeyVersion) -> Result<Arc<ParsedKek>, ByokError> {
        let slot = (
            kid.name().to_ascii_lowercase(),
            kek.version.to_ascii_lowercase(),
        );
        if let Some(parsed) = self.lock().get(&slot) {
            return Ok(parsed.clone());
        }
        let parsed = Arc::new(parse_kek(kid, kek)?);
        self.lock().insert(slot, parsed.clone());
        Ok(parsed)
    }

    /// Drops every version of the key `name` (it was purged).
    pub fn forget(&self, name: &str) {
        let name = name.to_ascii_lowercase();
        self.lock().retain(|(n, _), _| *n != name);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<ParsedKek>>> {
        sync::lock(&self.keys)
    }
}

fn parse_kek(kid: &KeyId, kek: &KeyVersion) -> Result<ParsedKek, ByokError> {
    let stored = |reason: String| ByokError::StoredKek {
        kid: kid.to_string(),
        reason,
    };
    let der = kek.plaintext().map_err(|e| stored(e.to_string()))?;
    let rsa = rsa::PrivateKey::from_pkcs8_der(&der).map_err(|e| stored(e.to_string()))?;
    let public = KekPublicKey::from_rsa(rsa.to_public_key()).map_err(|e| stored(e.to_string()))?;
    let private = PrivateDecryptingKey::from_pkcs8(&der)
        .map_err(|e| stored(e.to_string()))
        .and_then(|k| OaepPrivateDecryptingKey::new(k).map_err(|e| stored(e.to_string())))?;
    Ok(ParsedKek { public, private })
}

/// RSA-OAEP then AES key unwrap, off the async threads (RSA decryption takes milliseconds).
async fn unwrap(
    package: KeyTransferPackage,
    kek: Arc<ParsedKek>,
) -> Result<Zeroizing<Vec<u8>>, ByokError> {
    tokio::task::spawn_blocking(move || unwrap_with(package.ciphertext(), &kek))
        .await
        .map_err(|e| ByokError::Task {
            reason: e.to_string(),
        })?
        .map_err(|e| ByokError::Unwrap {
            reason: e.to_string(),
        })
}

/// `byok_core::wrap::unwrap` with aws-lc's RSA-OAEP-SHA-1 (which checks the encoded
/// message's leading zero octet itself), answering the same errors.
fn unwrap_with(ciphertext: &[u8], kek: &ParsedKek) -> Result<Zeroizing<Vec<u8>>, WrapError> {
    let (rsa_part, kwp_part) = wrap::split(ciphertext, kek.public.modulus_len())?;
    let mut out = Zeroizing::new(vec![0u8; kek.private.min_output_size()]);
    let aes_key = kek
        .private
        .decrypt(&OAEP_SHA1_MGF1SHA1, rsa_part, &mut out, None)
        .map_err(|_| WrapError::OaepDecrypt)?;
    wrap::kwp_unwrap(aes_key, kwp_part)
}

/// Reads the plaintext as Key Vault parses it. With `accept_zero_padded` (SoftHSM rehearsals
/// only), an RSA or EC key followed by 1 to 7 zero bytes, as SoftHSM 2.6.1's
/// CKM_AES_KEY_WRAP_PAD leaves it, is read without them, strictly again; every other defect
/// is refused even then, and AES keys (never padded) are never trimmed.
fn read_key(kty: Kty, plaintext: &[u8], accept_zero_padded: bool) -> Result<TargetKey, ByokError> {
    match conformance::read_plaintext(kty, plaintext) {
        Err(Defect::TrailingBytes {
            count: count @ 1..=7,
            zeros: true,
        }) if accept_zero_padded && kty != Kty::Oct => {
            conformance::read_plaintext(kty, &plaintext[..plaintext.len() - count])
                .map_err(|defect| refusal(kty, defect))
        }
        read => read.map_err(|defect| refusal(kty, defect)),
    }
}

/// A key of another type than declared is a wrong `kty`; anything else is a defect of the
/// plaintext, named.
fn refusal(kty: Kty, defect: Defect) -> ByokError {
    match defect {
        Defect::Key(EncodingError::KindMismatch { .. }) | Defect::AesLength { .. } => {
            ByokError::WrongKty {
                kty: kty.hsm_name(),
                reason: defect.to_string(),
            }
        }
        defect => ByokError::NotConformant { defect },
    }
}

fn check_curve(key: &TargetKey, crv: Option<&str>) -> Result<(), ByokError> {
    match (key.kind(), crv) {
        (KeyKind::Ec { curve }, Some(crv)) if curve.name() != crv => Err(ByokError::WrongCurve {
            curve,
            crv: crv.into(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use byok_core::KeyOp;
    use byok_core::target::KeyType;

    #[test]
    fn the_kek_rule_answers_in_the_service_words() {
        let kid = "https://127.0.0.1:1/keys/KEK/v".to_string();
        let answer = |policy| {
            ApiError::from(ByokError::NotAKek {
                kid: kid.clone(),
                policy,
            })
        };
        let rsa_hsm = KeyType::hsm(Kty::Rsa);
        let rsa = KeyType {
            hsm: false,
            ..rsa_hsm
        };
        let soft = check_kek_policy(rsa, &[KeyOp::Import], true).unwrap_err();
        let ops = check_kek_policy(rsa_hsm, &[KeyOp::Import, KeyOp::Sign], true).unwrap_err();
        let off = check_kek_policy(rsa_hsm, &[KeyOp::Import], false).unwrap_err();
        assert_eq!(
            answer(soft).message,
            format!("The KEK {kid} is RSA, but a KEK must be RSA-HSM.")
        );
        assert_eq!(
            answer(ops).message,
            format!(
                "The KEK {kid} has key operations [import, sign]; a KEK must have 'import' as \
                 its only operation."
            )
        );
        let off = answer(off);
        assert_eq!(off.code, "BadParameter");
        assert!(off.message.contains("is disabled"), "{}", off.message);
    }

    #[test]
    fn zero_padding_is_trimmed_only_when_allowed_and_never_from_aes_keys() {
        let ec = TargetKey::generate(KeyKind::Ec { curve: Curve::P256 }).unwrap();
        let with = |tail: &[u8]| [ec.plaintext(), tail].concat();
        let padded = with(&[0; 3]);
        assert_eq!(
            read_key(Kty::Ec, &padded, true).unwrap().plaintext(),
            ec.plaintext()
        );
        let strict = read_key(Kty::Ec, &padded, false).unwrap_err().to_string();
        assert_eq!(
            strict,
            "The unwrapped key is not what Key Vault parses: 3 trailing zero bytes after the DER \
             key (the HSM's AES key wrap padded the key: use CKM_AES_KEY_WRAP_KWP or a \
             conformant RFC 5649)."
        );
        // Only 1 to 7 zeros, as an 8-byte padding leaves; nothing but zeros.
        for tail in [&[0u8; 8][..], &[0, 0, 1], &[1]] {
            let err = read_key(Kty::Ec, &with(tail), true).unwrap_err();
            assert!(
                matches!(err, ByokError::NotConformant { .. }),
                "{tail:?}: {err}"
            );
        }
        // An AES key has no length inside it: 16 bytes and 3 zeros are not an AES-128 key.
        let aes = [[7u8; 16].as_slice(), &[0u8; 3]].concat();
        let err = read_key(Kty::Oct, &aes, true).unwrap_err().to_string();
        assert!(err.contains("3 trailing zero bytes"), "{err}");
        // A key of another type is a wrong kty, as before.
        let err = read_key(Kty::Rsa, ec.plaintext(), true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("declared kty RSA-HSM"), "{err}");
    }

    #[test]
    fn a_declared_curve_must_be_the_keys() {
        let ec = TargetKey::generate(KeyKind::Ec { curve: Curve::P256 }).unwrap();
        assert!(check_curve(&ec, None).is_ok());
        assert!(check_curve(&ec, Some("P-256")).is_ok());
        let wrong = check_curve(&ec, Some("P-384")).unwrap_err();
        assert_eq!(
            wrong.to_string(),
            "The unwrapped key is on P-256, but the request declares crv P-384."
        );
    }
}
