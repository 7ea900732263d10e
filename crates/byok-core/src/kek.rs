//! The Key Exchange Key's public half: RSA 2048, 3072 or 4096 bits, nothing else.

use crate::fingerprint::Fingerprint;
use crate::oid::RSA_ENCRYPTION;
use crate::ops::KeyOp;
use crate::target::{KeyType, Kty};
use der::Decode;
use rsa::{BoxedUint, PublicKey as RsaPublicKey, traits::PublicKeyParts};
use spki::SubjectPublicKeyInfoRef;

/// The modulus sizes Azure accepts for a KEK.
pub const KEK_SIZES: [usize; 3] = [2048, 3072, 4096];

/// The one public exponent a KEK may have: Key Vault makes its RSA keys with 65537
/// (`AQAB`). A KEK file with another exponent was not made by Key Vault.
pub const KEK_EXPONENT: u64 = 65_537;

/// A KEK's modulus is refused when a prime below this divides it: a real RSA modulus has
/// two primes of half its size, and trial division this far costs microseconds.
pub const SMALL_PRIME_BOUND: u32 = 10_000;

/// Longest PEM or DER we read as a KEK (a 4096-bit SPKI is 550 bytes of DER).
const MAX_KEK_INPUT: usize = 16 * 1024;

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
    #[error(
        "the KEK's public exponent is {exponent}, but Key Vault makes its keys with 65537 only: \
         this KEK file was not made from a Key Vault key, or was altered on its way. Download \
         the KEK again from the vault (`byok-online kek download --name KEK --out \
         kek.transfer`) and carry that file across"
    )]
    WeakExponent { exponent: String },
    #[error(
        "the KEK's modulus is divisible by {prime}, so it is no RSA key a vault made (anyone \
         could unwrap what it wraps): this KEK file was altered on its way. Download the KEK \
         again from the vault (`byok-online kek download --name KEK --out kek.transfer`) and \
         carry that file across"
    )]
    SmallFactor { prime: u32 },
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
pub fn check_kek_policy(
    key_type: KeyType,
    key_ops: &[KeyOp],
    enabled: bool,
) -> Result<(), KekPolicyError> {
    if key_type != KeyType::hsm(Kty::Rsa) {
        return Err(KekPolicyError::NotRsaHsm {
            kty: key_type.name().into(),
        });
    }
    if key_ops != [KeyOp::Import] {
        return Err(KekPolicyError::Operations {
            ops: KeyOp::names(key_ops).join(", "),
        });
    }
    if !enabled {
        return Err(KekPolicyError::Disabled);
    }
    Ok(())
}

/// [`check_kek_policy`] on a key as a vault's JSON names it (`kty` and `key_ops` as sent):
/// a type or an operation Key Vault does not name fails the rule, named as it was sent.
pub fn check_kek_policy_of_names<S: AsRef<str>>(
    kty: &str,
    key_ops: &[S],
    enabled: bool,
) -> Result<(), KekPolicyError> {
    let key_type = KeyType::from_name(kty).ok_or_else(|| KekPolicyError::NotRsaHsm {
        kty: kty.chars().take(20).collect(),
    })?;
    let ops = key_ops
        .iter()
        .map(|op| op.as_ref().parse::<KeyOp>())
        .collect::<Result<Vec<_>, _>>();
    match ops {
        Ok(ops) => check_kek_policy(key_type, &ops, enabled),
        // An operation Key Vault does not name: the type is still checked first.
        Err(_) => match check_kek_policy(key_type, &[KeyOp::Import], enabled) {
            Err(e @ KekPolicyError::NotRsaHsm { .. }) => Err(e),
            _ => Err(KekPolicyError::Operations {
                ops: key_ops
                    .iter()
                    .map(AsRef::as_ref)
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        },
    }
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
        let (label, der) =
            crate::pem::decode(&pem[start..]).map_err(|reason| KekError::Pem { reason })?;
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
                algorithm: crate::pem::algorithm_name(oid),
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
        let n = crate::pem::strip_leading_zeros(n);
        let e = crate::pem::strip_leading_zeros(e);
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

    /// Wraps an `rsa` public key, checking it is one Key Vault could have made: its size, its
    /// exponent (65537), and no small prime factor of its modulus.
    pub fn from_rsa(key: RsaPublicKey) -> Result<Self, KekError> {
        let bits = key.n().bit_width() as usize;
        if !KEK_SIZES.contains(&bits) {
            return Err(KekError::WrongSize { bits });
        }
        let e = key.e_bytes();
        let e = crate::pem::strip_leading_zeros(&e);
        if e != &KEK_EXPONENT.to_be_bytes()[5..] {
            return Err(KekError::WeakExponent {
                exponent: exponent_text(e),
            });
        }
        if let Some(prime) = small_factor(&key.n_bytes()) {
            return Err(KekError::SmallFactor { prime });
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
        crate::pem::encode("PUBLIC KEY", &self.spki_der)
    }

    /// Modulus, big-endian, without leading zeros.
    pub fn n_bytes(&self) -> Vec<u8> {
        self.key.n_bytes().into_vec()
    }

    /// Public exponent, big-endian, without leading zeros.
    pub fn e_bytes(&self) -> Vec<u8> {
        crate::pem::strip_leading_zeros(&self.key.e_bytes()).to_vec()
    }

    /// The `rsa` crate's key, for encryption.
    pub fn rsa(&self) -> &RsaPublicKey {
        &self.key
    }
}

/// The exponent as a decimal number (it is at most 64 bits here: `from_components` refuses
/// longer ones), or in hex when longer.
fn exponent_text(e: &[u8]) -> String {
    if e.len() <= 8 {
        let mut v = [0u8; 8];
        v[8 - e.len()..].copy_from_slice(e);
        u64::from_be_bytes(v).to_string()
    } else {
        format!("0x{}", hex_string(e))
    }
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The smallest prime below [`SMALL_PRIME_BOUND`] that divides the big-endian `n`, if any.
fn small_factor(n: &[u8]) -> Option<u32> {
    let bound = SMALL_PRIME_BOUND as usize;
    let mut composite = vec![false; bound];
    for p in 2..bound {
        if composite[p] {
            continue;
        }
        for multiple in (p * p..bound).step_by(p) {
            composite[multiple] = true;
        }
        let p = p as u64;
        let rest = n.iter().fold(0u64, |r, &b| (r * 256 + u64::from(b)) % p);
        if rest == 0 {
            return Some(p as u32);
        }
    }
    None
}

fn pkcs1_ref(der: &[u8]) -> Result<(&[u8], &[u8]), KekError> {
    let key = rsa::pkcs1::RsaPublicKeyRef::from_der(der).map_err(|e| KekError::Der {
        reason: e.to_string(),
    })?;
    Ok((key.modulus.as_bytes(), key.public_exponent.as_bytes()))
}

fn bit_length(be: &[u8]) -> usize {
    match be.first() {
        None => 0,
        Some(top) => be.len() * 8 - top.leading_zeros() as usize,
    }
}

#[cfg(test)]
mod policy_tests {
    use super::*;

    #[test]
    fn the_kek_rule_reads_typed_keys_and_the_vaults_names_alike() {
        let kek = KeyType::hsm(Kty::Rsa);
        assert_eq!(check_kek_policy(kek, &[KeyOp::Import], true), Ok(()));
        let soft = KeyType { hsm: false, ..kek };
        assert_eq!(
            check_kek_policy(soft, &[KeyOp::Import], true),
            Err(KekPolicyError::NotRsaHsm { kty: "RSA".into() })
        );
        assert_eq!(
            check_kek_policy(kek, &[KeyOp::Import, KeyOp::Sign], true),
            Err(KekPolicyError::Operations {
                ops: "import, sign".into()
            })
        );
        assert_eq!(
            check_kek_policy(kek, &[KeyOp::Import], false),
            Err(KekPolicyError::Disabled)
        );
        // The vault's JSON: what it names is read; what it does not fails, named as sent.
        assert_eq!(
            check_kek_policy_of_names("RSA-HSM", &["import"], true),
            Ok(())
        );
        assert_eq!(
            check_kek_policy_of_names("rsa-hsm", &["import"], true),
            Err(KekPolicyError::NotRsaHsm {
                kty: "rsa-hsm".into()
            })
        );
        assert_eq!(
            check_kek_policy_of_names("EC-HSM", &["fly"], true),
            Err(KekPolicyError::NotRsaHsm {
                kty: "EC-HSM".into()
            })
        );
        assert_eq!(
            check_kek_policy_of_names("RSA-HSM", &["import", "fly"], true),
            Err(KekPolicyError::Operations {
                ops: "import, fly".into()
            })
        );
        assert_eq!(
            check_kek_policy_of_names::<&str>("RSA-HSM", &[], true),
            Err(KekPolicyError::Operations { ops: String::new() })
        );
    }
}
