//! Checking a vault's signature with a local public key.

use byok_core::TargetPublicKey;
use byok_core::target::{Curve, KeyKind};
use ecdsa::signature::hazmat::PrehashVerifier;

/// Verifies a PS256 (RSA) or ES256/ES256K/ES384/ES512 (EC, `r || s`) signature over a digest.
pub fn verify(key: &TargetPublicKey, digest: &[u8], signature: &[u8]) -> bool {
    match key.kind() {
        KeyKind::Rsa { .. } => {
            use rsa::pkcs8::DecodePublicKey;
            rsa::PublicKey::from_public_key_der(key.spki_der()).is_ok_and(|k| {
                k.verify(rsa::Pss::<sha2::Sha256>::new(), digest, signature)
                    .is_ok()
            })
        }
        KeyKind::Ec { curve } => {
            macro_rules! check {
                ($C:ty) => {{
                    use ecdsa::elliptic_curve::pkcs8::DecodePublicKey;
                    let Ok(vk) = ecdsa::VerifyingKey::<$C>::from_public_key_der(key.spki_der())
                    else {
                        return false;
                    };
                    let Ok(sig) = ecdsa::Signature::<$C>::from_slice(signature) else {
                        return false;
                    };
                    vk.verify_prehash(digest, &sig).is_ok()
                }};
            }
            match curve {
                Curve::P256 => check!(p256::NistP256),
                Curve::P384 => check!(p384::NistP384),
                Curve::P521 => check!(p521::NistP521),
                Curve::P256K => check!(k256::Secp256k1),
            }
        }
        KeyKind::Oct { .. } => false,
    }
}
