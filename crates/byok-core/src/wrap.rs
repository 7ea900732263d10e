//! `CKM_RSA_AES_KEY_WRAP` in software, as Azure's HSMs unwrap it:
//!
//! `ciphertext = RSA-OAEP(KEK, aes_key) || AES-KWP(aes_key, plaintext)`
//!
//! - `aes_key` is a fresh 256-bit AES key used once and zeroized after use;
//! - RSA-OAEP uses SHA-1 for the hash and for MGF1, with an empty label; its output is exactly
//!   the KEK's modulus length, which is where a reader splits;
//! - AES-KWP is RFC 5649 key wrap with padding (alternative IV `A65959A6` + 32-bit length).

use crate::kek::KekPublicKey;
use aes_kw::{KeyInit, KwpAes128, KwpAes192, KwpAes256};
use rsa::{BoxedUint, Oaep, PrivateKey as RsaPrivateKey, traits::PublicKeyParts};
use sha1::Sha1;
use zeroize::Zeroizing;

/// Bytes in the one-time AES key this crate generates.
pub const AES_KEY_LEN: usize = 32;

/// Smallest AES-KWP output that can hold an importable key (an AES-128 key wraps to 24 bytes).
pub const MIN_KWP_LEN: usize = 24;

/// Smallest plaintext [`wrap`] takes: the shortest that wraps to [`MIN_KWP_LEN`], so that
/// nothing is wrapped that [`unwrap`] (and Key Vault) would refuse.
pub const MIN_PLAINTEXT: usize = MIN_KWP_LEN - 15;

/// Largest plaintext we wrap or unwrap: far above a 4096-bit RSA PKCS#8 (about 2.4 KiB).
pub const MAX_PLAINTEXT: usize = crate::target::MAX_PLAINTEXT;

/// Why a wrap or unwrap failed. Messages carry lengths, never key bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WrapError {
    #[error(
        "the ciphertext is {len} bytes; under a {modulus_len}-byte KEK it must be {modulus_len} bytes \
         of RSA-OAEP followed by a multiple of 8 bytes (at least {MIN_KWP_LEN}) of AES key wrap: \
         the package is truncated or was made for a KEK of another size"
    )]
    BadLength { len: usize, modulus_len: usize },
    #[error(
        "the RSA-OAEP part does not decrypt under this KEK: the package was made for another KEK, \
         with OAEP-SHA-256 instead of OAEP-SHA-1, or it was altered"
    )]
    OaepDecrypt,
    #[error("RSA-OAEP encryption failed: {reason}")]
    OaepEncrypt { reason: String },
    #[error("the unwrapped AES key is {len} bytes; CKM_RSA_AES_KEY_WRAP uses 16, 24 or 32")]
    AesKeyLength { len: usize },
    #[error(
        "the AES key wrap failed its integrity check (RFC 5649): the package was altered or \
         truncated, or it was not wrapped with AES-KWP"
    )]
    Integrity,
    #[error(
        "the plaintext is {len} bytes; a key to wrap is {MIN_PLAINTEXT} to {MAX_PLAINTEXT} bytes \
         (AES-KWP alone takes 1 to {MAX_PLAINTEXT})"
    )]
    PlaintextLength { len: usize },
    #[error("the system random number generator failed: {0}")]
    Rng(String),
}

/// Wraps `plaintext` under the KEK with a fresh AES-256 key.
pub fn wrap(plaintext: &[u8], kek: &KekPublicKey) -> Result<Vec<u8>, WrapError> {
    let mut aes_key = Zeroizing::new([0u8; AES_KEY_LEN]);
    getrandom::fill(aes_key.as_mut()).map_err(|e| WrapError::Rng(e.to_string()))?;
    wrap_with_aes_key(plaintext, kek, aes_key.as_ref())
}

/// Wraps `plaintext` under the KEK with the given one-time AES key. Use [`wrap`] unless an
/// HSM already made the AES key.
pub fn wrap_with_aes_key(
    plaintext: &[u8],
    kek: &KekPublicKey,
    aes_key: &[u8],
) -> Result<Vec<u8>, WrapError> {
    if plaintext.len() < MIN_PLAINTEXT {
        return Err(WrapError::PlaintextLength {
            len: plaintext.len(),
        });
    }
    let mut out = oaep_sha1_encrypt(kek, aes_key)?;
    out.extend_from_slice(&kwp_wrap(aes_key, plaintext)?);
    Ok(out)
}

/// Unwraps a `.byok` ciphertext with the KEK's private key (the vault's side of the exchange).
pub fn unwrap(ciphertext: &[u8], kek: &RsaPrivateKey) -> Result<Zeroizing<Vec<u8>>, WrapError> {
    let (rsa_part, kwp_part) = split(ciphertext, kek.size())?;
    let aes_key = oaep_sha1_decrypt(kek, rsa_part)?;
    kwp_unwrap(&aes_key, kwp_part)
}

/// Splits a ciphertext into its RSA-OAEP and AES-KWP parts, checking the lengths.
pub fn split(ciphertext: &[u8], modulus_len: usize) -> Result<(&[u8], &[u8]), WrapError> {
    check_len(ciphertext.len(), modulus_len)?;
    Ok(ciphertext.split_at(modulus_len))
}

/// Checks that a ciphertext length fits a KEK of `modulus_len` bytes.
pub fn check_len(len: usize, modulus_len: usize) -> Result<(), WrapError> {
    let kwp = len.checked_sub(modulus_len);
    match kwp {
        Some(kwp) if kwp >= MIN_KWP_LEN && kwp.is_multiple_of(8) && kwp <= MAX_PLAINTEXT + 16 => {
            Ok(())
        }
        _ => Err(WrapError::BadLength { len, modulus_len }),
    }
}

/// RSA-OAEP encryption with SHA-1 and MGF1-SHA-1, empty label.
pub fn oaep_sha1_encrypt(kek: &KekPublicKey, data: &[u8]) -> Result<Vec<u8>, WrapError> {
    kek.rsa()
        .oaep_encrypt::<Sha1>(data)
        .map_err(|e| WrapError::OaepEncrypt {
            reason: e.to_string(),
        })
}

/// RFC 5649 AES key wrap with padding under a 16-, 24- or 32-byte AES key.
pub fn kwp_wrap(aes_key: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, WrapError> {
    if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT {
        return Err(WrapError::PlaintextLength {
            len: plaintext.len(),
        });
    }
    let mut buf = vec![0u8; plaintext.len().div_ceil(8) * 8 + 8];
    let result =
        match aes_key.len() {
            16 => KwpAes128::new_from_slice(aes_key)
                .map(|k| k.wrap_key(plaintext, &mut buf).map(|_| ())),
            24 => KwpAes192::new_from_slice(aes_key)
                .map(|k| k.wrap_key(plaintext, &mut buf).map(|_| ())),
            32 => KwpAes256::new_from_slice(aes_key)
                .map(|k| k.wrap_key(plaintext, &mut buf).map(|_| ())),
            len => return Err(WrapError::AesKeyLength { len }),
        };
    match result {
        Ok(Ok(())) => Ok(buf),
        _ => Err(WrapError::AesKeyLength { len: aes_key.len() }),
    }
}

/// RFC 5649 AES key unwrap with padding; the result is zeroized on drop.
pub fn kwp_unwrap(aes_key: &[u8], ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, WrapError> {
    if ciphertext.len() < 16
        || !ciphertext.len().is_multiple_of(8)
        || ciphertext.len() > MAX_PLAINTEXT + 16
    {
        return Err(WrapError::Integrity);
    }
    let mut buf = Zeroizing::new(vec![0u8; ciphertext.len() - 8]);
    let unwrapped_len = match aes_key.len() {
        16 => KwpAes128::new_from_slice(aes_key)
            .map(|k| k.unwrap_key(ciphertext, &mut buf).map(<[u8]>::len)),
        24 => KwpAes192::new_from_slice(aes_key)
            .map(|k| k.unwrap_key(ciphertext, &mut buf).map(<[u8]>::len)),
        32 => KwpAes256::new_from_slice(aes_key)
            .map(|k| k.unwrap_key(ciphertext, &mut buf).map(<[u8]>::len)),
        len => return Err(WrapError::AesKeyLength { len }),
    };
    match unwrapped_len {
        Ok(Ok(len)) => {
            buf.truncate(len);
            Ok(buf)
        }
        _ => Err(WrapError::Integrity),
    }
}

/// RSA-OAEP decryption with SHA-1 and MGF1-SHA-1, empty label; the result is zeroized on drop.
pub fn oaep_sha1_decrypt(
    kek: &RsaPrivateKey,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, WrapError> {
    let decoded = kek.decrypt(Oaep::<Sha1>::new(), ciphertext);
    // Both checks run before either outcome is looked at, so a caller cannot tell by timing
    // which one failed (the distinction Manger's attack feeds on).
    let first_octet_ok = encoded_message_starts_with_zero(kek, ciphertext);
    match decoded {
        Ok(plain) if first_octet_ok => Ok(Zeroizing::new(plain)),
        Ok(mut plain) => {
            zeroize::Zeroize::zeroize(&mut plain);
            Err(WrapError::OaepDecrypt)
        }
        Err(_) => Err(WrapError::OaepDecrypt),
    }
}

/// RFC 8017 section 7.1.2 step 3g requires the encoded message's first octet to be zero.
/// rsa 0.10.0's OAEP decoding skips that check (Wycheproof's `rsa_oaep_2048_sha1_mgf1sha1`
/// tcId 23, "First byte is 1", decrypts with it alone), so we repeat the raw RSA operation
/// and check the octet ourselves.
fn encoded_message_starts_with_zero(kek: &RsaPrivateKey, ciphertext: &[u8]) -> bool {
    let k = kek.size();
    if ciphertext.len() != k {
        return false;
    }
    let Ok(c) = BoxedUint::from_be_slice(ciphertext, kek.n().bits_precision()) else {
        return false;
    };
    let Ok(m) = rsa::hazmat::rsa_decrypt_and_check(kek, Some(&mut getrandom::SysRng), &c) else {
        return false;
    };
    let em = Zeroizing::new(m.to_be_bytes());
    // `em` is the modulus precision wide; every octet before the last k - 1 must be zero.
    let leading = em.len() - (k - 1);
    em[..leading].iter().fold(0u8, |acc, b| acc | b) == 0
}
