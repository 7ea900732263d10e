//! The AES proof: the key by its label, and the vault's challenge decrypted with it inside
//! the token (AES-GCM), a tag that does not verify told apart from a key that cannot decrypt.

use crate::error::{OfflineError, Result};
use crate::token::TokenSession;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};

/// Finds an AES key by label.
pub fn find_secret(token: &TokenSession, label: &str) -> Result<ObjectHandle> {
    let found = token.session.find_objects(&[
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::Label(label.as_bytes().to_vec()),
    ])?;
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(OfflineError::NoSuchLabel(label.into())),
        many => Err(OfflineError::AmbiguousKey {
            what: format!("label `{label}`"),
            count: many.len(),
        }),
    }
}

/// AES-GCM decryption of the vault's challenge inside the token, with the key labelled
/// `label`; the plaintext is zeroized on drop. A tag that does not verify means the key is
/// not the vault's: [`OfflineError::ProofMismatch`].
pub fn decrypt_gcm(
    token: &TokenSession,
    key: ObjectHandle,
    label: &str,
    challenge: &byok_core::challenge::AesChallenge,
) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    let mut iv = challenge.iv.clone();
    let params = cryptoki::mechanism::aead::GcmParams::new(
        &mut iv,
        &[],
        (challenge.tag.len() as u64 * 8).into(),
    )?;
    let mut input = challenge.ciphertext.clone();
    input.extend_from_slice(&challenge.tag);
    let plain = token
        .session
        .decrypt(&Mechanism::AesGcm(params), key, &input)
        .map_err(|e| {
            if tag_refused(&e) {
                OfflineError::ProofMismatch {
                    label: label.into(),
                }
            } else {
                OfflineError::ChallengeDecrypt {
                    label: label.into(),
                    reason: e.to_string(),
                }
            }
        })?;
    Ok(zeroize::Zeroizing::new(plain))
}

/// `CKR_AEAD_DECRYPT_FAILED` (PKCS#11 3.0), which cryptoki cannot name.
const CKR_AEAD_DECRYPT_FAILED: u64 = 0x35;

/// Whether a GCM decryption failed on its tag, i.e. the key is not the one that encrypted:
/// PKCS#11 2.40 says `CKR_ENCRYPTED_DATA_INVALID`, 3.0 `CKR_AEAD_DECRYPT_FAILED`, and
/// SoftHSM 2.6 `CKR_GENERAL_ERROR`. A key without `CKA_DECRYPT` or a token without GCM
/// fails with other codes, before any tag is checked.
fn tag_refused(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::EncryptedDataInvalid
                | RvError::GeneralError
                | RvError::UnknownErrorCode(CKR_AEAD_DECRYPT_FAILED),
            _
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::context::Function;

    fn decrypt_failed(rv: RvError) -> CkError {
        CkError::Pkcs11(rv, Function::Decrypt)
    }

    #[test]
    fn a_tag_that_does_not_verify_is_told_apart_from_a_key_that_cannot_decrypt() {
        // PKCS#11 2.40, PKCS#11 3.0 (by number: cryptoki cannot name it), SoftHSM 2.6.
        assert!(tag_refused(&decrypt_failed(RvError::EncryptedDataInvalid)));
        assert!(tag_refused(&decrypt_failed(RvError::UnknownErrorCode(
            0x35
        ))));
        assert!(tag_refused(&decrypt_failed(RvError::GeneralError)));
        // Refused before any tag is checked: no CKA_DECRYPT, no GCM, a bad IV, another code.
        for rv in [
            RvError::KeyFunctionNotPermitted,
            RvError::MechanismInvalid,
            RvError::MechanismParamInvalid,
            RvError::KeyTypeInconsistent,
            RvError::UnknownErrorCode(0x36),
        ] {
            assert!(!tag_refused(&decrypt_failed(rv)), "{rv:?}");
        }
        assert!(!tag_refused(&CkError::NullFunctionPointer));
    }
}
