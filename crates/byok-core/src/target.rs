//! The target key: what the HSM wraps and the vault imports.
//!
//! Plaintext encodings, as Azure expects them inside the wrap:
//! RSA and EC private keys as PKCS#8 `PrivateKeyInfo` DER (RFC 3447 `RSAPrivateKey` or RFC 5915
//! `ECPrivateKey` with the named-curve OID inside); AES keys as their raw 16, 24 or 32 bytes.
//!
//! The public half of an RSA or EC key, [`TargetPublicKey`], is in `target/public.rs`.

use crate::oid::{EC_PUBLIC_KEY, RSA_ENCRYPTION};
use crate::pem::algorithm_name;
use der::Decode;
use getrandom::SysRng;
use rsa::PrivateKey as RsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use spki::ObjectIdentifier;
use std::fmt;
use std::str::FromStr;
use zeroize::Zeroizing;

mod public;

pub use public::TargetPublicKey;

/// Longest plaintext we accept: a 4096-bit RSA PKCS#8 is about 2.4 KiB.
pub const MAX_PLAINTEXT: usize = 8 * 1024;

/// The elliptic curves Key Vault imports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    P256,
    P384,
    P521,
    /// secp256k1.
    P256K,
}

impl Curve {
    pub const ALL: [Curve; 4] = [Curve::P256, Curve::P384, Curve::P521, Curve::P256K];

    /// Key Vault's name: `P-256`, `P-384`, `P-521`, `P-256K`.
    pub fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
            Curve::P256K => "P-256K",
        }
    }

    /// The named-curve OID.
    pub fn oid(self) -> ObjectIdentifier {
        ObjectIdentifier::new_unwrap(match self {
            Curve::P256 => "1.2.840.10045.3.1.7",
            Curve::P384 => "1.3.132.0.34",
            Curve::P521 => "1.3.132.0.35",
            Curve::P256K => "1.3.132.0.10",
        })
    }

    /// The named-curve OID's DER (tag, length, value), as PKCS#11's `CKA_EC_PARAMS` holds it.
    pub fn oid_der(self) -> Vec<u8> {
        der::Encode::to_der(&self.oid()).expect("a constant OID encodes")
    }

    /// Bytes in one coordinate (and in the private scalar).
    pub fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 | Curve::P256K => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }

    /// Size of the field in bits, as Key Vault reports EC key sizes.
    pub fn bits(self) -> u32 {
        match self {
            Curve::P256 | Curve::P256K => 256,
            Curve::P384 => 384,
            Curve::P521 => 521,
        }
    }

    /// The curve with this OID, if Key Vault supports it.
    pub fn from_oid(oid: ObjectIdentifier) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.oid() == oid)
    }
}

impl fmt::Display for Curve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Curve {
    type Err = EncodingError;
    /// Key Vault's names, and the common aliases (`secp256r1`, `SECP256K1`, ...).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "P-256" | "P256" | "SECP256R1" | "PRIME256V1" => Ok(Curve::P256),
            "P-384" | "P384" | "SECP384R1" => Ok(Curve::P384),
            "P-521" | "P521" | "SECP521R1" => Ok(Curve::P521),
            "P-256K" | "P256K" | "SECP256K1" => Ok(Curve::P256K),
            _ => Err(EncodingError::UnknownCurve { name: s.into() }),
        }
    }
}

/// Key type families, as Key Vault's `kty` names them without `-HSM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kty {
    Rsa,
    Ec,
    Oct,
}

impl Kty {
    /// `RSA-HSM`, `EC-HSM` or `oct-HSM`: what an HSM-protected import declares.
    pub fn hsm_name(self) -> &'static str {
        match self {
            Kty::Rsa => "RSA-HSM",
            Kty::Ec => "EC-HSM",
            Kty::Oct => "oct-HSM",
        }
    }

    /// Reads `RSA`, `RSA-HSM`, `EC`, `EC-HSM`, `oct`, `oct-HSM` (any case).
    pub fn from_jwk_kty(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "RSA" | "RSA-HSM" => Some(Kty::Rsa),
            "EC" | "EC-HSM" => Some(Kty::Ec),
            "OCT" | "OCT-HSM" | "AES" => Some(Kty::Oct),
            _ => None,
        }
    }

    /// As [`Kty::from_jwk_kty`], refusing any other name (quoted, cut to 20 characters).
    pub fn parse(s: &str) -> Result<Self, EncodingError> {
        Self::from_jwk_kty(s).ok_or_else(|| EncodingError::UnknownKty {
            name: s.chars().take(20).collect(),
        })
    }
}

impl fmt::Display for Kty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kty::Rsa => "RSA",
            Kty::Ec => "EC",
            Kty::Oct => "oct",
        })
    }
}

/// A vault key's `kty` as Key Vault names it: the family, and whether the key is
/// HSM-protected (`RSA-HSM`, `EC-HSM`, `oct-HSM`) or a software key (`RSA`, `EC`, `oct`).
/// Typed inside both sides; the name is its form in JSON and in the emulator's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyType {
    pub kty: Kty,
    pub hsm: bool,
}

impl KeyType {
    /// An HSM-protected key of `kty`.
    pub const fn hsm(kty: Kty) -> Self {
        Self { kty, hsm: true }
    }

    /// Key Vault's name: `RSA`, `RSA-HSM`, `EC`, `EC-HSM`, `oct` or `oct-HSM`.
    pub fn name(self) -> &'static str {
        match (self.kty, self.hsm) {
            (kty, true) => kty.hsm_name(),
            (Kty::Rsa, false) => "RSA",
            (Kty::Ec, false) => "EC",
            (Kty::Oct, false) => "oct",
        }
    }

    /// Reads exactly one of Key Vault's names (as [`KeyType::name`] spells them).
    pub fn from_name(s: &str) -> Option<Self> {
        [Kty::Rsa, Kty::Ec, Kty::Oct]
            .into_iter()
            .flat_map(|kty| [Self { kty, hsm: false }, Self::hsm(kty)])
            .find(|t| t.name() == s)
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A key's type and size or curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    Rsa { bits: u32 },
    Ec { curve: Curve },
    Oct { bits: u32 },
}

impl KeyKind {
    /// RSA size when none is named.
    pub const DEFAULT_RSA_BITS: u32 = 3072;
    /// EC curve when none is named.
    pub const DEFAULT_CURVE: Curve = Curve::P256;
    /// AES size when none is named.
    pub const DEFAULT_AES_BITS: u32 = 256;

    /// The one reading of "kty + size/curve" for every command, file and the emulator.
    ///
    /// `kty` is any of `RSA`, `RSA-HSM`, `EC`, `EC-HSM`, `oct`, `oct-HSM`, `AES` (any case).
    /// A missing size or curve takes the defaults above; a size on an EC key must be its
    /// curve's (sidecars write it), a curve on an RSA or AES key is refused. The result is a
    /// kind Key Vault imports.
    pub fn from_parts(
        kty: &str,
        size: Option<u32>,
        curve: Option<&str>,
    ) -> Result<KeyKind, EncodingError> {
        let kty = Kty::parse(kty)?;
        let kind = match kty {
            Kty::Ec => {
                let curve = curve.map_or(Ok(Self::DEFAULT_CURVE), str::parse::<Curve>)?;
                if let Some(bits) = size.filter(|b| *b != curve.bits()) {
                    return Err(EncodingError::SizeNotCurve { bits, curve });
                }
                KeyKind::Ec { curve }
            }
            Kty::Rsa | Kty::Oct if curve.is_some() => {
                return Err(EncodingError::CurveNotEc { kty });
            }
            Kty::Rsa => KeyKind::Rsa {
                bits: size.unwrap_or(Self::DEFAULT_RSA_BITS),
            },
            Kty::Oct => KeyKind::Oct {
                bits: size.unwrap_or(Self::DEFAULT_AES_BITS),
            },
        };
        kind.check_importable()
    }

    /// Every kind Key Vault imports through BYOK (oct on Managed HSM only).
    pub const IMPORTABLE: [KeyKind; 10] = [
        KeyKind::Rsa { bits: 2048 },
        KeyKind::Rsa { bits: 3072 },
        KeyKind::Rsa { bits: 4096 },
        KeyKind::Ec { curve: Curve::P256 },
        KeyKind::Ec { curve: Curve::P384 },
        KeyKind::Ec { curve: Curve::P521 },
        KeyKind::Ec {
            curve: Curve::P256K,
        },
        KeyKind::Oct { bits: 128 },
        KeyKind::Oct { bits: 192 },
        KeyKind::Oct { bits: 256 },
    ];

    pub fn kty(self) -> Kty {
        match self {
            KeyKind::Rsa { .. } => Kty::Rsa,
            KeyKind::Ec { .. } => Kty::Ec,
            KeyKind::Oct { .. } => Kty::Oct,
        }
    }

    /// Checks that Key Vault imports this kind, naming what is allowed if not.
    pub fn check_importable(self) -> Result<Self, EncodingError> {
        if Self::IMPORTABLE.contains(&self) {
            Ok(self)
        } else {
            Err(EncodingError::UnsupportedKind { kind: self })
        }
    }

    /// The key size in bits (the field size for EC).
    pub fn bits(self) -> u32 {
        match self {
            KeyKind::Rsa { bits } | KeyKind::Oct { bits } => bits,
            KeyKind::Ec { curve } => curve.bits(),
        }
    }

    pub fn curve(self) -> Option<Curve> {
        match self {
            KeyKind::Ec { curve } => Some(curve),
            _ => None,
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyKind::Rsa { bits } => write!(f, "RSA {bits}"),
            KeyKind::Ec { curve } => write!(f, "EC {curve}"),
            KeyKind::Oct { bits } => write!(f, "AES {bits}"),
        }
    }
}

/// Why a target key's encoding was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncodingError {
    #[error("`{name}` is not a key type: use RSA, EC or oct (AES, Managed HSM only)")]
    UnknownKty { name: String },
    #[error("a curve applies to EC keys only, not {kty}: drop --curve or use --kty EC")]
    CurveNotEc { kty: Kty },
    #[error("{curve} keys are {} bits, not {bits}: drop the size or name the curve it belongs to", curve.bits())]
    SizeNotCurve { bits: u32, curve: Curve },
    #[error("`{name}` is not a curve Key Vault supports: use P-256, P-384, P-521 or P-256K")]
    UnknownCurve { name: String },
    #[error(
        "{kind} keys cannot be imported: Key Vault takes RSA 2048/3072/4096, EC P-256/P-384/P-521/P-256K \
         and AES 128/192/256 (Managed HSM only)"
    )]
    UnsupportedKind { kind: KeyKind },
    #[error("the key is not a valid PKCS#8 PrivateKeyInfo ({reason})")]
    Pkcs8 { reason: String },
    #[error("the key was declared {declared} but the plaintext holds {found}")]
    KindMismatch { declared: String, found: String },
    #[error("the EC key names curve {oid}, which Key Vault does not support")]
    UnsupportedCurveOid { oid: String },
    #[error("an AES key is 16, 24 or 32 bytes; this one is {len}")]
    BadAesLength { len: usize },
    #[error("the key material is {len} bytes; the limit is {MAX_PLAINTEXT}")]
    TooLarge { len: usize },
    #[error("the public key is not valid ({reason})")]
    PublicKey { reason: String },
    #[error("the key could not be generated ({reason})")]
    Generate { reason: String },
}

fn pkcs8_err(e: impl fmt::Display) -> EncodingError {
    EncodingError::Pkcs8 {
        reason: e.to_string(),
    }
}

fn public_err(e: impl fmt::Display) -> EncodingError {
    EncodingError::PublicKey {
        reason: e.to_string(),
    }
}

/// Runs `$body` with `$C` bound to the RustCrypto curve type for `$curve`.
macro_rules! with_curve {
    ($curve:expr, $C:ident => $body:expr) => {
        match $curve {
            Curve::P256 => {
                type $C = p256::NistP256;
                $body
            }
            Curve::P384 => {
                type $C = p384::NistP384;
                $body
            }
            Curve::P521 => {
                type $C = p521::NistP521;
                $body
            }
            Curve::P256K => {
                type $C = k256::Secp256k1;
                $body
            }
        }
    };
}
// By path, for `public`, which reads and builds public keys per curve too.
use with_curve;

/// A target key's plaintext, validated, with its kind and (RSA, EC) public key.
///
/// The plaintext is zeroized when this value is dropped.
pub struct TargetKey {
    kind: KeyKind,
    plaintext: Zeroizing<Vec<u8>>,
    public: Option<TargetPublicKey>,
}

impl fmt::Debug for TargetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetKey")
            .field("kind", &self.kind)
            .field("plaintext", &"<redacted>")
            .finish()
    }
}

impl TargetKey {
    /// Reads an unwrapped plaintext as the key type the importer declared.
    pub fn from_plaintext(kty: Kty, plaintext: &[u8]) -> Result<Self, EncodingError> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(EncodingError::TooLarge {
                len: plaintext.len(),
            });
        }
        match kty {
            Kty::Oct => Self::from_aes_bytes(plaintext),
            Kty::Rsa | Kty::Ec => {
                let key = Self::from_pkcs8_der(plaintext)?;
                if key.kind.kty() != kty {
                    return Err(EncodingError::KindMismatch {
                        declared: kty.hsm_name().into(),
                        found: key.kind.to_string(),
                    });
                }
                Ok(key)
            }
        }
    }

    /// Reads a PKCS#8 `PrivateKeyInfo` holding an RSA or EC key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, EncodingError> {
        let info = pkcs8::PrivateKeyInfoRef::from_der(der).map_err(pkcs8_err)?;
        let oid = info.algorithm.oid;
        let (kind, spki_der) = if oid == RSA_ENCRYPTION {
            let key = RsaPrivateKey::from_pkcs8_der(der).map_err(pkcs8_err)?;
            let bits = key.n().bit_width();
            let spki = key.to_public_key().to_public_key_der().map_err(pkcs8_err)?;
            (KeyKind::Rsa { bits }, spki.into_vec())
        } else if oid == EC_PUBLIC_KEY {
            let curve_oid = info.algorithm.parameters_oid().map_err(pkcs8_err)?;
            let curve = Curve::from_oid(curve_oid).ok_or(EncodingError::UnsupportedCurveOid {
                oid: curve_oid.to_string(),
            })?;
            let spki = with_curve!(curve, C => {
                let secret = elliptic_curve::SecretKey::<C>::from_pkcs8_der(der).map_err(pkcs8_err)?;
                secret.public_key().to_public_key_der().map_err(pkcs8_err)?
            });
            (KeyKind::Ec { curve }, spki.into_vec())
        } else {
            return Err(EncodingError::KindMismatch {
                declared: "an RSA or EC private key".into(),
                found: algorithm_name(oid),
            });
        };
        Ok(Self {
            kind,
            plaintext: Zeroizing::new(der.to_vec()),
            public: Some(TargetPublicKey { kind, spki_der }),
        })
    }

    /// Takes raw AES key bytes (16, 24 or 32).
    pub fn from_aes_bytes(bytes: &[u8]) -> Result<Self, EncodingError> {
        if ![16, 24, 32].contains(&bytes.len()) {
            return Err(EncodingError::BadAesLength { len: bytes.len() });
        }
        Ok(Self {
            kind: KeyKind::Oct {
                bits: bytes.len() as u32 * 8,
            },
            plaintext: Zeroizing::new(bytes.to_vec()),
            public: None,
        })
    }

    /// Generates a fresh key of an importable kind in software (for the emulator and tests;
    /// a real ceremony generates the key inside the HSM).
    pub fn generate(kind: KeyKind) -> Result<Self, EncodingError> {
        let kind = kind.check_importable()?;
        let gen_err = |e: &dyn fmt::Display| EncodingError::Generate {
            reason: e.to_string(),
        };
        match kind {
            KeyKind::Rsa { bits } => {
                let key =
                    RsaPrivateKey::new(&mut SysRng, bits as usize).map_err(|e| gen_err(&e))?;
                let der = key.to_pkcs8_der().map_err(|e| gen_err(&e))?;
                Self::from_pkcs8_der(der.as_bytes())
            }
            KeyKind::Ec { curve } => {
                let der = with_curve!(curve, C => {
                    use rsa::rand_core::UnwrapErr;
                    let secret = <elliptic_curve::SecretKey<C> as elliptic_curve::Generate>::generate_from_rng(
                        &mut UnwrapErr(SysRng),
                    );
                    secret.to_pkcs8_der().map_err(|e| gen_err(&e))?
                });
                Self::from_pkcs8_der(der.as_bytes())
            }
            KeyKind::Oct { bits } => {
                let mut bytes = Zeroizing::new(vec![0u8; bits as usize / 8]);
                getrandom::fill(&mut bytes).map_err(|e| gen_err(&e))?;
                Self::from_aes_bytes(&bytes)
            }
        }
    }

    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The bytes that go inside the wrap: PKCS#8 DER or raw AES bytes.
    pub fn plaintext(&self) -> &[u8] {
        &self.plaintext
    }

    /// The public key of an RSA or EC key; `None` for AES.
    pub fn public_key(&self) -> Option<&TargetPublicKey> {
        self.public.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_with_one_set_of_defaults() {
        let k = |kty, size, curve| KeyKind::from_parts(kty, size, curve);
        assert_eq!(k("RSA", None, None), Ok(KeyKind::Rsa { bits: 3072 }));
        assert_eq!(
            k("rsa-hsm", Some(2048), None),
            Ok(KeyKind::Rsa { bits: 2048 })
        );
        assert_eq!(k("EC", None, None), Ok(KeyKind::Ec { curve: Curve::P256 }));
        assert_eq!(
            k("EC-HSM", Some(384), Some("P-384")),
            Ok(KeyKind::Ec { curve: Curve::P384 })
        );
        assert_eq!(k("oct", None, None), Ok(KeyKind::Oct { bits: 256 }));
        assert_eq!(k("AES", Some(128), None), Ok(KeyKind::Oct { bits: 128 }));
        assert!(matches!(
            k("DSA", None, None),
            Err(EncodingError::UnknownKty { .. })
        ));
        assert!(matches!(
            k("RSA", None, Some("P-256")),
            Err(EncodingError::CurveNotEc { .. })
        ));
        assert!(matches!(
            k("EC", Some(256), Some("P-384")),
            Err(EncodingError::SizeNotCurve { .. })
        ));
        assert!(matches!(
            k("RSA", Some(1024), None),
            Err(EncodingError::UnsupportedKind { .. })
        ));
        assert!(matches!(
            k("EC", None, Some("P-192")),
            Err(EncodingError::UnknownCurve { .. })
        ));
    }

    #[test]
    fn key_types_read_exactly_the_names_they_write() {
        for kty in [Kty::Rsa, Kty::Ec, Kty::Oct] {
            for hsm in [false, true] {
                let t = KeyType { kty, hsm };
                assert_eq!(KeyType::from_name(t.name()), Some(t));
            }
        }
        assert_eq!(KeyType::hsm(Kty::Ec).name(), "EC-HSM");
        assert_eq!(KeyType::from_name("oct").map(|t| t.hsm), Some(false));
        for bad in ["rsa", "RSA-hsm", "AES", "", "EC-HSM "] {
            assert_eq!(KeyType::from_name(bad), None, "{bad}");
        }
    }
}
