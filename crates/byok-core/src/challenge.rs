//! The AES proof challenge: an AES key has no public key to compare, so the online side has
//! the vault encrypt a random value with AES-256-GCM under the imported key, and the offline
//! side decrypts it in the HSM with the key it made. Equal SHA-256 of the plaintext proves the
//! two hold the same key. The file carries no secret: the value is random and used once.

use crate::b64;
use crate::fingerprint::Fingerprint;
use serde::{Deserialize, Serialize};

pub const FORMAT: &str = "byok-aes-challenge/1";

/// Why a challenge file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChallengeError {
    #[error("the challenge file is not valid ({0})")]
    Json(String),
    #[error("the challenge file's format is `{0}`; this tool reads `{FORMAT}`")]
    Format(String),
    #[error(
        "the challenge uses {0}; only A256GCM, A192GCM and A128GCM with a 12-byte iv and 16-byte tag are read"
    )]
    Algorithm(String),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    format: String,
    kid: String,
    alg: String,
    iv: String,
    tag: String,
    ciphertext: String,
    plaintext_sha256: String,
}

/// A vault-made AES-GCM ciphertext of a random value, and that value's SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AesChallenge {
    pub kid: String,
    pub alg: String,
    pub iv: Vec<u8>,
    pub tag: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub plaintext_sha256: Fingerprint,
}

impl AesChallenge {
    pub fn parse(bytes: &[u8]) -> Result<Self, ChallengeError> {
        let raw: Raw =
            serde_json::from_slice(bytes).map_err(|e| ChallengeError::Json(e.to_string()))?;
        if raw.format != FORMAT {
            return Err(ChallengeError::Format(
                raw.format.chars().take(40).collect(),
            ));
        }
        let field = |name: &'static str, v: &str| {
            b64::decode(name, v).map_err(|e| ChallengeError::Json(e.to_string()))
        };
        let challenge = Self {
            iv: field("iv", &raw.iv)?,
            tag: field("tag", &raw.tag)?,
            ciphertext: field("ciphertext", &raw.ciphertext)?,
            plaintext_sha256: Fingerprint::from_hex(&raw.plaintext_sha256)
                .map_err(|e| ChallengeError::Json(e.to_string()))?,
            kid: raw.kid,
            alg: raw.alg,
        };
        let gcm = ["A128GCM", "A192GCM", "A256GCM"].contains(&challenge.alg.as_str());
        if !gcm || challenge.iv.len() != 12 || challenge.tag.len() != 16 {
            return Err(ChallengeError::Algorithm(
                challenge.alg.chars().take(20).collect(),
            ));
        }
        Ok(challenge)
    }

    pub fn to_json_bytes(&self) -> Vec<u8> {
        let raw = Raw {
            format: FORMAT.into(),
            kid: self.kid.clone(),
            alg: self.alg.clone(),
            iv: b64::encode(&self.iv),
            tag: b64::encode(&self.tag),
            ciphertext: b64::encode(&self.ciphertext),
            plaintext_sha256: self.plaintext_sha256.to_hex(),
        };
        let mut out = serde_json::to_vec_pretty(&raw).expect("plain data serializes");
        out.push(b'\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_checks() {
        let c = AesChallenge {
            kid: "https://h.managedhsm.azure.net/keys/k/0123456789abcdef0123456789abcdef".into(),
            alg: "A256GCM".into(),
            iv: vec![1; 12],
            tag: vec![2; 16],
            ciphertext: vec![3; 32],
            plaintext_sha256: Fingerprint::of_bytes(b"x"),
        };
        let bytes = c.to_json_bytes();
        assert_eq!(AesChallenge::parse(&bytes).unwrap(), c);
        let text = String::from_utf8(bytes).unwrap();
        assert!(matches!(
            AesChallenge::parse(text.replace("A256GCM", "A256KW").as_bytes()),
            Err(ChallengeError::Algorithm(_))
        ));
        assert!(matches!(
            AesChallenge::parse(text.replace(FORMAT, "other").as_bytes()),
            Err(ChallengeError::Format(_))
        ));
    }
}
