//! Checking a vault's signature with the public key the HSM reported: the second half of the
//! proof that the vault holds the HSM's key (the first is equal public keys).

use crate::target::{Curve, KeyKind, TargetPublicKey};
use std::fmt;

/// The algorithm the proof asks the vault to sign with, by key kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    /// RSASSA-PSS with SHA-256 (any RSA size).
    Ps256,
    Es256,
    Es256K,
    Es384,
    Es512,
}

impl SignatureAlgorithm {
    /// The algorithm for a key; `None` for AES keys, which have no signature to check.
    pub fn for_kind(kind: KeyKind) -> Option<Self> {
        Some(match kind {
            KeyKind::Rsa { .. } => Self::Ps256,
            KeyKind::Ec { curve: Curve::P256 } => Self::Es256,
            KeyKind::Ec {
                curve: Curve::P256K,
            } => Self::Es256K,
            KeyKind::Ec { curve: Curve::P384 } => Self::Es384,
            KeyKind::Ec { curve: Curve::P521 } => Self::Es512,
            KeyKind::Oct { .. } => return None,
        })
    }

    /// Key Vault's (JWA) name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ps256 => "PS256",
            Self::Es256 => "ES256",
            Self::Es256K => "ES256K",
            Self::Es384 => "ES384",
            Self::Es512 => "ES512",
        }
    }

    /// Bytes of the digest the vault signs.
    pub fn digest_len(self) -> usize {
        match self {
            Self::Ps256 | Self::Es256 | Self::Es256K => 32,
            Self::Es384 => 48,
            Self::Es512 => 64,
        }
    }
}

impl fmt::Display for SignatureAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether `signature` (PS256, or ECDSA as `r || s`) over `digest` verifies with `key`.
pub fn verify_prehash(key: &TargetPublicKey, digest: &[u8], signature: &[u8]) -> bool {
    match key.kind() {
        KeyKind::Rsa { .. } => {
            use rsa::pkcs8::DecodePublicKey;
            rsa::PublicKey::from_public_key_der(key.spki_der()).is_ok_and(|k| {
                k.verify(rsa::pss::Pss::<sha2::Sha256>::new(), digest, signature)
                    .is_ok()
            })
        }
        KeyKind::Ec { curve } => {
            macro_rules! check {
                ($ecdsa:path) => {{
                    use ec::signature::hazmat::PrehashVerifier;
                    use elliptic_curve::pkcs8::DecodePublicKey;
                    use $ecdsa as ec;
                    let Ok(vk) = ec::VerifyingKey::from_public_key_der(key.spki_der()) else {
                        return false;
                    };
                    let Ok(sig) = ec::Signature::from_slice(signature) else {
                        return false;
                    };
                    vk.verify_prehash(digest, &sig).is_ok()
                }};
            }
            match curve {
                Curve::P256 => check!(p256::ecdsa),
                Curve::P384 => check!(p384::ecdsa),
                Curve::P521 => check!(p521::ecdsa),
                Curve::P256K => check!(k256::ecdsa),
            }
        }
        KeyKind::Oct { .. } => false,
    }
}
