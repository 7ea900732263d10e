//! AES keys have no public key: the check proves an unwrapped throwaway AES key is the
//! token's by having the token decrypt an AES-GCM ciphertext made with it (`prove-aes`'s
//! decryption).

use super::run::{Finding, TryOutcome};
use crate::error::{OfflineError, Result};
use crate::keys::{self, Target};
use crate::token::TokenSession;
use byok_core::target::TargetKey;

/// AES has no public key: the token decrypts an AES-GCM ciphertext made here with the
/// unwrapped key (`prove-aes`'s decryption). A token without AES-GCM leaves it unproved.
pub(super) fn same_aes_key(
    token: &TokenSession,
    target: &Target,
    key: &TargetKey,
) -> Result<TryOutcome> {
    let challenge = aes_challenge(key.plaintext());
    match keys::decrypt_gcm(token, target.private, &target.label, &challenge) {
        Ok(plain) if *plain == AES_PROBE => Ok(TryOutcome::Conformant),
        Ok(_) | Err(OfflineError::ProofMismatch { .. }) => Ok(TryOutcome::Defect(Finding::other(
            "the unwrapped AES key is not the token's",
        ))),
        Err(OfflineError::ChallengeDecrypt { reason, .. }) => Ok(TryOutcome::Note(format!(
            "the AES key's identity is not proved: the token cannot decrypt AES-GCM ({reason})"
        ))),
        Err(e) => Err(e),
    }
}

/// The value the AES comparison encrypts (any value does: the key is a throwaway).
const AES_PROBE: [u8; 32] = [0x5a; 32];

fn aes_challenge(key: &[u8]) -> byok_core::challenge::AesChallenge {
    use aes_gcm::aead::consts::U12;
    use aes_gcm::aead::{AeadInOut, KeyInit};
    use aes_gcm::{AesGcm, Nonce, aes};
    let iv = [0x42; 12];
    let nonce = Nonce::try_from(&iv[..]).expect("12 bytes");
    let mut data = AES_PROBE.to_vec();
    macro_rules! seal {
        ($cipher:ty) => {
            <AesGcm<$cipher, U12>>::new_from_slice(key)
                .expect("the key's length was checked")
                .encrypt_inout_detached(&nonce, &[], data.as_mut_slice().into())
                .expect("a short value encrypts")
                .to_vec()
        };
    }
    let tag = match key.len() {
        16 => seal!(aes::Aes128),
        24 => seal!(aes::Aes192),
        _ => seal!(aes::Aes256),
    };
    byok_core::challenge::AesChallenge {
        kid: String::new(),
        alg: format!("A{}GCM", key.len() * 8),
        iv: iv.to_vec(),
        tag,
        ciphertext: data,
        plaintext_sha256: byok_core::Fingerprint::of_bytes(&AES_PROBE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_aes_probe_is_what_prove_aes_reads() {
        for len in [16, 24, 32] {
            let c = aes_challenge(&vec![7; len]);
            let parsed = byok_core::challenge::AesChallenge::parse(&c.to_json_bytes()).unwrap();
            assert_eq!(parsed.ciphertext.len(), 32);
            assert_eq!(parsed.alg, format!("A{}GCM", len * 8));
        }
    }
}
