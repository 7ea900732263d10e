//! The Key Exchange Key's public half: RSA 2048, 3072 or 4096 bits, nothing else.

use crate::fingerprint::Fingerprint;
use der::Decode;
use rsa::{BoxedUint, PublicKey as RsaPublicKey, traits::PublicKeyParts};
use spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};

/// The modulus sizes Azure accepts for a KEK.
pub const KEK_SIZES: [usize; 3] = [2048, 3072, 4096];

/// Longest PEM or DER we read as a KEK (a 4096-bit SPKI is 550 bytes of DER).
const MAX_KEK_INPUT: usize = 16 * 1024;

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const RSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// Why a KEK public key was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KekError {
    #[error(
        "the KEK public key is not valid PEM ({reason}); expected a block starting \
         -----BEGIN PUBLIC KEY----- (as `byok-online kek download --format pem` or \
         `az keyvault key download --encoding PEM` writes) or -----BEGIN RSA PUBLIC KEY-----"
    )]
    Pem { reason: String },
    #[error(
        "the PEM block is labelled `{label}`; a KEK public key is `PUBLIC KEY` or `RSA PUBLIC KEY`"
    )]
    PemLabel { label: String },
    #[error(
        "the KEK public key is not a valid SubjectPublicKeyInfo or PKCS#1 RSAPublicKey ({reason})"
    )]
    Der { reason: String },
    #[error(
        "the KEK is an {algorithm} key, but a Key Exchange Key must be RSA-HSM of 2048, 3072 or \
         4096 bits: create one with `byok-online kek create --name KEKforBYOK --size 4096`"
    )]
    NotRsa { algorithm: String },
    #[error(
        "the KEK has a {bits}-bit modulus; Azure accepts KEKs of 2048, 3072 or 4096 bits only: \
         create one with `byok-online kek create --name KEKforBYOK --size 4096`"
    )]
    WrongSize { bits: usize },
    #[error("the KEK's RSA key is not usable: {reason}")]
    BadKey { reason: String },
    #[error("the KEK input is {len} bytes; a KEK public key is under {MAX_KEK_INPUT} bytes")]
    TooLarge { len: usize },
}

/// Why a vault key cannot serve as a Key Exchange Key.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KekPolicyError {
    #[error(
        "it is {kty}, but a KEK must be RSA-HSM (an HSM-protected RSA key): create one with \
         `byok-online kek create`"
    )]
    NotRsaHsm { kty: String },
    #[error(
        "its key operations are [{ops}], but a KEK must have `import` as its only operation: \
         create one with `byok-online kek create`"
    )]
    Operations { ops: String },
    #[error("it is disabled: enable it in the vault or create another KEK")]
    Disabled,
}

/// The KEK rule both the client (before it sends anything) and the emulator (before it
/// unwraps) apply: RSA-HSM, `import` as the only operation, enabled. The size rule is
/// [`KEK_SIZES`], checked when the public key is read.
pub fn check_kek_policy<S: AsRef<str>>(
    kty: &str,
    key_ops: &[S],
    enabled: bool,
) -> Result<(), KekPolicyError> {
    if kty != "RSA-HSM" {
        return Err(KekPolicyError::NotRsaHsm {
            kty: kty.chars().take(20).collect(),
        });
    }
    let import_only =
        matches!(key_ops, [only] if only.as_ref() == crate::ops::KeyOp::Import.name());
    if !import_only {
        let ops: Vec<&str> = key_ops.iter().map(AsRef::as_ref).collect();
        return Err(KekPolicyError::Operations {
            ops: ops.join(", "),
        });
    }
    if !enabled {
        return Err(KekPolicyError::Disabled);
    }
    Ok(())
}

/// An RSA public key of an allowed KEK size, with its SubjectPublicKeyInfo DER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KekPublicKey {
    key: RsaPublicKey,
    spki_der: Vec<u8>,
}

impl KekPublicKey {
    /// Reads PEM: `PUBLIC KEY` (SPKI) or `RSA PUBLIC KEY` (PKCS#1). Text before the first
    /// `-----BEGIN` line is ignored, as RFC 7468 allows.
    pub fn from_pem(pem: &str) -> Result<Self, KekError> {
        if pem.len() > MAX_KEK_INPUT {
            return Err(KekError::TooLarge { len: pem.len() });
        }
        let start = pem.find("-----BEGIN ").ok_or_else(|| KekError::Pem {
            reason: "no -----BEGIN line".into(),
        })?;
        let (label, der) = pem_rfc7468_decode(&pem[start..])?;
        match label.as_str() {
            "PUBLIC KEY" => Self::from_spki_der(&der),
            "RSA PUBLIC KEY" => Self::from_pkcs1_der(&der),
            _ => Err(KekError::PemLabel { label }),
        }
    }

    /// Reads DER: SPKI first, then PKCS#1 `RSAPublicKey`.
    pub fn from_der(der: &[u8]) -> Result<Self, KekError> {
        if der.len() > MAX_KEK_INPUT {
            return Err(KekError::TooLarge { len: der.len() });
        }
        match Self::from_spki_der(der) {
            Err(KekError::Der { reason }) => {
                Self::from_pkcs1_der(der).map_err(|_| KekError::Der { reason })
            }
            other => other,
        }
    }

    /// Reads a SubjectPublicKeyInfo; non-RSA keys are named in the error.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KekError> {
        let spki = SubjectPublicKeyInfoRef::from_der(der).map_err(|e| KekError::Der {
            reason: e.to_string(),
        })?;
        let oid = spki.algorithm.oid;
        if oid != RSA_ENCRYPTION {
            return Err(KekError::NotRsa {
                algorithm: algorithm_name(oid),
            });
        }
        let bits = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| KekError::Der {
                reason: "the key's BIT STRING has unused bits".into(),
            })?;
        Self::from_pkcs1_der(bits)
    }

    /// Reads a PKCS#1 `RSAPublicKey`.
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self, KekError> {
        let key = pkcs1_ref(der)?;
        Self::from_components(key.0, key.1)
    }

    /// Builds the key from big-endian `n` and `e`, as a JWK carries them; leading zero
    /// bytes are tolerated.
    pub fn from_components(n: &[u8], e: &[u8]) -> Result<Self, KekError> {
        let n = strip_leading_zeros(n);
        let e = strip_leading_zeros(e);
        let bits = bit_length(n);
        if !KEK_SIZES.contains(&bits) {
            return Err(KekError::WrongSize { bits });
        }
        let bad = |reason: &str| KekError::BadKey {
            reason: reason.into(),
        };
        if e.is_empty() || e.len() > 8 {
            return Err(bad("the public exponent is zero or longer than 64 bits"));
        }
        let n = BoxedUint::from_be_slice(n, bits as u32).map_err(|_| bad("modulus"))?;
        let e = BoxedUint::from_be_slice(e, 64).map_err(|_| bad("exponent"))?;
        let key = RsaPublicKey::new(n, e).map_err(|err| KekError::BadKey {
            reason: err.to_string(),
        })?;
        Self::from_rsa(key)
    }

    /// Wraps an `rsa` public key, checking its size.
    pub fn from_rsa(key: RsaPublicKey) -> Result<Self, KekError> {
        let bits = key.n().bit_width() as usize;
        if !KEK_SIZES.contains(&bits) {
            return Err(KekError::WrongSize { bits });
        }
        let spki_der = rsa::pkcs8::EncodePublicKey::to_public_key_der(&key)
            .map_err(|e| KekError::BadKey {
                reason: e.to_string(),
            })?
            .into_vec();
        Ok(Self { key, spki_der })
    }

    /// Modulus size in bits: 2048, 3072 or 4096.
    pub fn bits(&self) -> usize {
        self.key.n().bit_width() as usize
    }

    /// Modulus size in bytes, which is also the length of the RSA-OAEP part of a `.byok`.
    pub fn modulus_len(&self) -> usize {
        self.key.size()
    }

    /// SHA-256 of the SPKI DER.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_spki_der(&self.spki_der)
    }

    /// The SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// `-----BEGIN PUBLIC KEY-----` PEM with LF line endings.
    pub fn to_pem(&self) -> String {
        pem_encode("PUBLIC KEY", &self.spki_der)
    }

    /// Modulus, big-endian, without leading zeros.
    pub fn n_bytes(&self) -> Vec<u8> {
        self.key.n_bytes().into_vec()
    }

    /// Public exponent, big-endian, without leading zeros.
    pub fn e_bytes(&self) -> Vec<u8> {
        strip_leading_zeros(&self.key.e_bytes()).to_vec()
    }

    /// The `rsa` crate's key, for encryption.
    pub fn rsa(&self) -> &RsaPublicKey {
        &self.key
    }
}

fn pkcs1_ref(der: &[u8]) -> Result<(&[u8], &[u8]), KekError> {
    let key = rsa::pkcs1::RsaPublicKeyRef::from_der(der).map_err(|e| KekError::Der {
        reason: e.to_string(),
    })?;
    Ok((key.modulus.as_bytes(), key.public_exponent.as_bytes()))
}

pub(crate) fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

fn bit_length(be: &[u8]) -> usize {
    match be.first() {
        None => 0,
        Some(top) => be.len() * 8 - top.leading_zeros() as usize,
    }
}

/// A readable name for a public-key algorithm OID.
pub(crate) fn algorithm_name(oid: ObjectIdentifier) -> String {
    match oid {
        EC_PUBLIC_KEY => "EC (id-ecPublicKey)".into(),
        RSA_PSS => "RSA-PSS (id-RSASSA-PSS)".into(),
        ED25519 => "Ed25519".into(),
        other => format!("unknown algorithm ({other})"),
    }
}

/// Decodes one PEM block, returning its label and DER.
pub(crate) fn pem_rfc7468_decode(pem: &str) -> Result<(String, Vec<u8>), KekError> {
    let (label, der) =
        der::pem::decode_vec(pem.trim_end().as_bytes()).map_err(|e| KekError::Pem {
            reason: e.to_string(),
        })?;
    Ok((label.to_string(), der))
}

/// Encodes DER as PEM with LF line endings.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    der::pem::encode_string(label, der::pem::LineEnding::LF, der)
        .expect("PEM encoding of an in-memory buffer cannot fail")
}
