//! The cryptographic operations of stored keys: sign/verify, encrypt/decrypt, wrap/unwrap.
//! Private material never leaves this module except as a result of the operation.

use crate::error::{ApiError, ApiResult};
use byok_core::b64;
use byok_core::target::{Curve, KeyKind};
use ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use getrandom::SysRng;
use pkcs8::DecodePrivateKey;
use rsa::{Oaep, Pkcs1v15Encrypt, Pkcs1v15Sign, PrivateKey as RsaPrivateKey, Pss};
use sha1::Sha1;
use sha2::{Sha256, Sha384, Sha512};
use zeroize::Zeroizing;

/// Decoded key material.
pub enum Material {
    Rsa(Box<RsaPrivateKey>),
    Ec(Curve, Zeroizing<Vec<u8>>),
    Oct(Zeroizing<Vec<u8>>),
}

impl Material {
    pub fn from_plaintext(kind: KeyKind, plaintext: &[u8]) -> ApiResult<Self> {
        match kind {
            KeyKind::Rsa { .. } => RsaPrivateKey::from_pkcs8_der(plaintext)
                .map(|k| Material::Rsa(Box::new(k)))
                .map_err(|e| ApiError::internal(format!("stored RSA key unreadable: {e}"))),
            KeyKind::Ec { curve } => Ok(Material::Ec(curve, Zeroizing::new(plaintext.to_vec()))),
            KeyKind::Oct { .. } => Ok(Material::Oct(Zeroizing::new(plaintext.to_vec()))),
        }
    }
}

fn unsupported(alg: &str, what: &str) -> ApiError {
    ApiError::bad_parameter(format!("Algorithm {alg} is not supported for {what}."))
}

fn digest_len(alg: &str) -> Option<usize> {
    Some(match alg {
        "RS256" | "PS256" | "ES256" | "ES256K" => 32,
        "RS384" | "PS384" | "ES384" => 48,
        "RS512" | "PS512" | "ES512" => 64,
        _ => return None,
    })
}

fn check_digest(alg: &str, digest: &[u8]) -> ApiResult<()> {
    match digest_len(alg) {
        Some(len) if len == digest.len() => Ok(()),
        Some(len) => Err(ApiError::bad_parameter(format!(
            "Invalid digest length {} for algorithm {alg}: expected {len} bytes.",
            digest.len()
        ))),
        None => Err(unsupported(alg, "signing")),
    }
}

macro_rules! with_ec {
    ($curve:expr, $alg:expr, $C:ident => $body:expr) => {
        match ($curve, $alg) {
            (Curve::P256, "ES256") => {
                type $C = p256::NistP256;
                $body
            }
            (Curve::P384, "ES384") => {
                type $C = p384::NistP384;
                $body
            }
            (Curve::P521, "ES512") => {
                type $C = p521::NistP521;
                $body
            }
            (Curve::P256K, "ES256K") => {
                type $C = k256::Secp256k1;
                $body
            }
            (curve, alg) => {
                return Err(ApiError::bad_parameter(format!(
                    "Algorithm {alg} does not match the key's curve {curve}."
                )));
            }
        }
    };
}

/// Signs a digest; EC signatures are `r || s` as JWS writes them.
pub fn sign(material: &Material, alg: &str, digest: &[u8]) -> ApiResult<Vec<u8>> {
    check_digest(alg, digest)?;
    let fail = |e: &dyn std::fmt::Display| ApiError::bad_parameter(format!("Signing failed: {e}"));
    match material {
        Material::Rsa(key) => match alg {
            "RS256" => key.sign(Pkcs1v15Sign::new::<Sha256>(), digest),
            "RS384" => key.sign(Pkcs1v15Sign::new::<Sha384>(), digest),
            "RS512" => key.sign(Pkcs1v15Sign::new::<Sha512>(), digest),
            "PS256" => key.sign_with_rng(&mut SysRng, Pss::<Sha256>::new(), digest),
            "PS384" => key.sign_with_rng(&mut SysRng, Pss::<Sha384>::new(), digest),
            "PS512" => key.sign_with_rng(&mut SysRng, Pss::<Sha512>::new(), digest),
            _ => return Err(unsupported(alg, "RSA keys")),
        }
        .map_err(|e| fail(&e)),
        Material::Ec(curve, pkcs8) => with_ec!(*curve, alg, C => {
            let key = ecdsa::SigningKey::<C>::from_pkcs8_der(pkcs8).map_err(|e| fail(&e))?;
            let sig: ecdsa::Signature<C> = key.sign_prehash(digest).map_err(|e| fail(&e))?;
            Ok(sig.to_bytes().to_vec())
        }),
        Material::Oct(_) => Err(unsupported(alg, "symmetric keys")),
    }
}

/// Verifies a signature over a digest.
pub fn verify(material: &Material, alg: &str, digest: &[u8], signature: &[u8]) -> ApiResult<bool> {
    check_digest(alg, digest)?;
    match material {
        Material::Rsa(key) => {
            let public = key.to_public_key();
            let result = match alg {
                "RS256" => public.verify(Pkcs1v15Sign::new::<Sha256>(), digest, signature),
                "RS384" => public.verify(Pkcs1v15Sign::new::<Sha384>(), digest, signature),
                "RS512" => public.verify(Pkcs1v15Sign::new::<Sha512>(), digest, signature),
                "PS256" => public.verify(Pss::<Sha256>::new(), digest, signature),
                "PS384" => public.verify(Pss::<Sha384>::new(), digest, signature),
                "PS512" => public.verify(Pss::<Sha512>::new(), digest, signature),
                _ => return Err(unsupported(alg, "RSA keys")),
            };
            Ok(result.is_ok())
        }
        Material::Ec(curve, pkcs8) => with_ec!(*curve, alg, C => {
            let key = ecdsa::SigningKey::<C>::from_pkcs8_der(pkcs8)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            let Ok(sig) = ecdsa::Signature::<C>::from_slice(signature) else {
                return Ok(false);
            };
            Ok(key.verifying_key().verify_prehash(digest, &sig).is_ok())
        }),
        Material::Oct(_) => Err(unsupported(alg, "symmetric keys")),
    }
}

/// The result of an encryption: value, and for AES-GCM the IV and tag.
pub struct Sealed {
    pub value: Vec<u8>,
    pub iv: Option<Vec<u8>>,
    pub tag: Option<Vec<u8>>,
}

/// Encrypts (or wraps) with the key.
pub fn encrypt(
    material: &Material,
    alg: &str,
    plaintext: &[u8],
    iv: Option<&[u8]>,
    aad: Option<&[u8]>,
) -> ApiResult<Sealed> {
    let fail =
        |e: &dyn std::fmt::Display| ApiError::bad_parameter(format!("Encryption failed: {e}"));
    let plain = |value| Sealed {
        value,
        iv: None,
        tag: None,
    };
    match material {
        Material::Rsa(key) => {
            let public = key.to_public_key();
            let value = match alg {
                "RSA-OAEP" => public.encrypt(&mut SysRng, Oaep::<Sha1>::new(), plaintext),
                "RSA-OAEP-256" => public.encrypt(&mut SysRng, Oaep::<Sha256>::new(), plaintext),
                "RSA1_5" => public.encrypt(&mut SysRng, Pkcs1v15Encrypt, plaintext),
                _ => return Err(unsupported(alg, "RSA keys")),
            }
            .map_err(|e| fail(&e))?;
            Ok(plain(value))
        }
        Material::Oct(key) => {
            if let Some(bits) = alg.strip_prefix('A').and_then(|a| a.strip_suffix("KW")) {
                check_aes_size(alg, bits, key)?;
                return kw_wrap(key, plaintext).map(plain);
            }
            if let Some(bits) = alg.strip_prefix('A').and_then(|a| a.strip_suffix("GCM")) {
                check_aes_size(alg, bits, key)?;
                let iv = match iv {
                    Some(iv) => iv.to_vec(),
                    None => {
                        let mut iv = vec![0u8; 12];
                        getrandom::fill(&mut iv).map_err(|e| ApiError::internal(e.to_string()))?;
                        iv
                    }
                };
                let (value, tag) = gcm(key, &iv, aad.unwrap_or_default(), plaintext, None)?;
                return Ok(Sealed {
                    value,
                    iv: Some(iv),
                    tag,
                });
            }
            Err(unsupported(alg, "symmetric keys"))
        }
        Material::Ec(..) => Err(unsupported(alg, "EC keys")),
    }
}

/// Decrypts (or unwraps) with the key.
pub fn decrypt(
    material: &Material,
    alg: &str,
    ciphertext: &[u8],
    iv: Option<&[u8]>,
    aad: Option<&[u8]>,
    tag: Option<&[u8]>,
) -> ApiResult<Zeroizing<Vec<u8>>> {
    let fail = || {
        ApiError::bad_parameter(
            "Decryption failed: the ciphertext is not valid for this key and algorithm.",
        )
    };
    match material {
        Material::Rsa(key) => match alg {
            "RSA-OAEP" => key.decrypt(Oaep::<Sha1>::new(), ciphertext),
            "RSA-OAEP-256" => key.decrypt(Oaep::<Sha256>::new(), ciphertext),
            "RSA1_5" => key.decrypt(Pkcs1v15Encrypt, ciphertext),
            _ => return Err(unsupported(alg, "RSA keys")),
        }
        .map(Zeroizing::new)
        .map_err(|_| fail()),
        Material::Oct(key) => {
            if let Some(bits) = alg.strip_prefix('A').and_then(|a| a.strip_suffix("KW")) {
                check_aes_size(alg, bits, key)?;
                return kw_unwrap(key, ciphertext).ok_or_else(fail);
            }
            if let Some(bits) = alg.strip_prefix('A').and_then(|a| a.strip_suffix("GCM")) {
                check_aes_size(alg, bits, key)?;
                let iv =
                    iv.ok_or_else(|| ApiError::bad_parameter("AES-GCM decryption needs the iv."))?;
                let tag = tag
                    .ok_or_else(|| ApiError::bad_parameter("AES-GCM decryption needs the tag."))?;
                let (value, _) = gcm(key, iv, aad.unwrap_or_default(), ciphertext, Some(tag))?;
                return Ok(Zeroizing::new(value));
            }
            Err(unsupported(alg, "symmetric keys"))
        }
        Material::Ec(..) => Err(unsupported(alg, "EC keys")),
    }
}

fn check_aes_size(alg: &str, bits: &str, key: &[u8]) -> ApiResult<()> {
    if bits.parse::<usize>().ok() == Some(key.len() * 8) {
        Ok(())
    } else {
        Err(ApiError::bad_parameter(format!(
            "Algorithm {alg} does not match the {}-bit key.",
            key.len() * 8
        )))
    }
}

fn kw_wrap(key: &[u8], data: &[u8]) -> ApiResult<Vec<u8>> {
    use aes_kw::{KeyInit, KwAes128, KwAes192, KwAes256};
    if data.len() < 16 || !data.len().is_multiple_of(8) {
        return Err(ApiError::bad_parameter(
            "AES key wrap (RFC 3394) takes a multiple of 8 bytes, at least 16.",
        ));
    }
    let mut out = vec![0u8; data.len() + 8];
    let ok = match key.len() {
        16 => KwAes128::new_from_slice(key).map(|k| k.wrap_key(data, &mut out).is_ok()),
        24 => KwAes192::new_from_slice(key).map(|k| k.wrap_key(data, &mut out).is_ok()),
        _ => KwAes256::new_from_slice(key).map(|k| k.wrap_key(data, &mut out).is_ok()),
    };
    match ok {
        Ok(true) => Ok(out),
        _ => Err(ApiError::internal("AES key wrap failed")),
    }
}

fn kw_unwrap(key: &[u8], data: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    use aes_kw::{KeyInit, KwAes128, KwAes192, KwAes256};
    if data.len() < 24 || !data.len().is_multiple_of(8) {
        return None;
    }
    let mut out = Zeroizing::new(vec![0u8; data.len() - 8]);
    let ok = match key.len() {
        16 => KwAes128::new_from_slice(key).map(|k| k.unwrap_key(data, &mut out).is_ok()),
        24 => KwAes192::new_from_slice(key).map(|k| k.unwrap_key(data, &mut out).is_ok()),
        _ => KwAes256::new_from_slice(key).map(|k| k.unwrap_key(data, &mut out).is_ok()),
    };
    matches!(ok, Ok(true)).then_some(out)
}

/// AES-GCM with a 16-byte tag; `tag` given means decrypt.
fn gcm(
    key: &[u8],
    iv: &[u8],
    aad: &[u8],
    data: &[u8],
    tag: Option<&[u8]>,
) -> ApiResult<(Vec<u8>, Option<Vec<u8>>)> {
    use aes_gcm::aead::{AeadInOut, KeyInit};
    use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm, Nonce, Tag};
    // Key Vault's A192GCM: the crate names only the 128- and 256-bit types.
    type Aes192Gcm = AesGcm<aes_gcm::aes::Aes192, aes_gcm::aead::consts::U12>;
    if iv.len() != 12 {
        return Err(ApiError::bad_parameter("AES-GCM takes a 12-byte iv."));
    }
    let nonce = Nonce::try_from(iv).map_err(|_| ApiError::bad_parameter("bad iv"))?;
    let mut buf = data.to_vec();
    macro_rules! run {
        ($cipher:ty) => {{
            let cipher =
                <$cipher>::new_from_slice(key).map_err(|_| ApiError::internal("AES key"))?;
            match tag {
                None => {
                    let tag = cipher
                        .encrypt_inout_detached(&nonce, aad, buf.as_mut_slice().into())
                        .map_err(|_| ApiError::internal("AES-GCM failed"))?;
                    Ok((buf, Some(tag.to_vec())))
                }
                Some(tag) => {
                    let tag = Tag::try_from(tag)
                        .map_err(|_| ApiError::bad_parameter("AES-GCM tag is 16 bytes."))?;
                    cipher
                        .decrypt_inout_detached(&nonce, aad, buf.as_mut_slice().into(), &tag)
                        .map_err(|_| {
                            ApiError::bad_parameter(
                                "Decryption failed: the AES-GCM tag does not verify.",
                            )
                        })?;
                    Ok((buf, None))
                }
            }
        }};
    }
    match key.len() {
        16 => run!(Aes128Gcm),
        24 => run!(Aes192Gcm),
        32 => run!(Aes256Gcm),
        _ => Err(ApiError::bad_parameter(
            "AES-GCM takes 128-, 192- or 256-bit keys.",
        )),
    }
}

/// Reads a base64url field of a request: unpadded, URL-safe alphabet, no whitespace. Anything
/// else gets the service's "Content of 'FIELD' is not base64url." (docs/azure-behaviour.md
/// section 3; for JWK members the wording is inferred by analogy).
pub fn field(name: &'static str, value: &str) -> ApiResult<Vec<u8>> {
    b64::decode(name, value).map_err(|_| ApiError::not_base64url(name))
}
