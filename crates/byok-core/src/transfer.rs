//! The KEK transfer file: what `byok-online kek download` writes and `byok-offline package`
//! reads, so that the KEK's versioned id and its public key cross the air gap as one file.
//!
//! It is a PEM file with explanatory lines before the block (RFC 7468 allows them), so
//! `openssl pkey -pubin -in kek.transfer` reads it too:
//!
//! ```text
//! BYOK KEK transfer file v1
//! kid: https://contoso.vault.azure.net/keys/KEKforBYOK/0123456789abcdef0123456789abcdef
//! key-size: 4096
//! sha256: <SHA-256 of the SubjectPublicKeyInfo DER, 64 hex digits>
//! -----BEGIN PUBLIC KEY-----
//! ...
//! -----END PUBLIC KEY-----
//! ```
//! Reading checks that the kid carries a version, the key is an allowed KEK, and the stated
//! size and fingerprint match the key: a hand-edited or mixed-up file is refused.

use crate::fingerprint::Fingerprint;
use crate::kek::{KekError, KekPublicKey};
use crate::kid::{KeyId, KidError};

/// The first line of every transfer file.
pub const MAGIC: &str = "BYOK KEK transfer file v1";
const MAX_TRANSFER_BYTES: usize = 16 * 1024;

/// Why a transfer file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TransferError {
    #[error(
        "this is not a KEK transfer file (its first line is not `{MAGIC}`); make one with \
         `byok-online kek download --name <KEK> --out kek.transfer`, or pass the PEM and the \
         versioned kid separately with --kek-pem and --kid"
    )]
    NotTransferFile,
    #[error("the transfer file is {len} bytes; the limit is {MAX_TRANSFER_BYTES}")]
    TooLarge { len: usize },
    #[error("line {line} of the transfer file is not understood: `{text}`")]
    BadLine { line: usize, text: String },
    #[error("the transfer file gives `{field}` twice")]
    Duplicate { field: &'static str },
    #[error("the transfer file lacks its `{field}:` line")]
    Missing { field: &'static str },
    #[error("kid: {0}")]
    Kid(#[from] KidError),
    #[error("public key: {0}")]
    Key(#[from] KekError),
    #[error(
        "the transfer file says key-size {stated} but its public key has {actual} bits: the file \
         was edited or mixed up; download it again"
    )]
    SizeMismatch { stated: String, actual: usize },
    #[error(
        "the transfer file's sha256 {stated} does not match its public key ({actual}): the file \
         was edited or damaged; download it again"
    )]
    FingerprintMismatch { stated: String, actual: Fingerprint },
}

/// A KEK's versioned id and public key, as carried across the air gap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KekTransfer {
    pub kid: KeyId,
    pub key: KekPublicKey,
}

impl KekTransfer {
    /// Pairs a versioned kid with its public key.
    pub fn new(kid: KeyId, key: KekPublicKey) -> Result<Self, TransferError> {
        let kid = KeyId::parse_versioned(&kid.to_string())?;
        Ok(Self { kid, key })
    }

    /// Reads and checks a transfer file.
    pub fn parse(text: &str) -> Result<Self, TransferError> {
        if text.len() > MAX_TRANSFER_BYTES {
            return Err(TransferError::TooLarge { len: text.len() });
        }
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, first)) if first.trim_end() == MAGIC => {}
            _ => return Err(TransferError::NotTransferFile),
        }
        let (mut kid, mut size, mut sha) = (None, None, None);
        let pem_start = text
            .find("-----BEGIN ")
            .ok_or(TransferError::Key(KekError::Pem {
                reason: "no -----BEGIN line".into(),
            }))?;
        for (index, line) in lines {
            let line = line.trim_end();
            if line.starts_with("-----BEGIN ") {
                break;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (field, value) = line
                .split_once(':')
                .map(|(f, v)| (f.trim(), v.trim()))
                .ok_or_else(|| bad_line(index, line))?;
            let slot = match field {
                "kid" => (&mut kid, "kid"),
                "key-size" => (&mut size, "key-size"),
                "sha256" => (&mut sha, "sha256"),
                _ => return Err(bad_line(index, line)),
            };
            if slot.0.replace(value.to_string()).is_some() {
                return Err(TransferError::Duplicate { field: slot.1 });
            }
        }
        let kid = KeyId::parse_versioned(&kid.ok_or(TransferError::Missing { field: "kid" })?)?;
        let key = KekPublicKey::from_pem(&text[pem_start..])?;
        let size = size.ok_or(TransferError::Missing { field: "key-size" })?;
        if size.parse::<usize>().ok() != Some(key.bits()) {
            return Err(TransferError::SizeMismatch {
                stated: size.chars().take(20).collect(),
                actual: key.bits(),
            });
        }
        let sha = sha.ok_or(TransferError::Missing { field: "sha256" })?;
        if Fingerprint::from_hex(&sha).ok() != Some(key.fingerprint()) {
            return Err(TransferError::FingerprintMismatch {
                stated: sha.chars().take(80).collect(),
                actual: key.fingerprint(),
            });
        }
        Ok(Self { kid, key })
    }

    /// The file's text.
    pub fn to_text(&self) -> String {
        format!(
            "{MAGIC}\nkid: {}\nkey-size: {}\nsha256: {}\n{}",
            self.kid,
            self.key.bits(),
            self.key.fingerprint(),
            self.key.to_pem()
        )
    }
}

fn bad_line(index: usize, line: &str) -> TransferError {
    TransferError::BadLine {
        line: index + 1,
        text: line.chars().take(80).collect(),
    }
}
