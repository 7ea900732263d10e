//! SHA-256 fingerprints of public keys, printed as lowercase hex.

use sha2::{Digest, Sha256};
use std::fmt;

/// The SHA-256 of a public key's SubjectPublicKeyInfo DER: the same figure as
/// `openssl pkey -pubin -outform DER | sha256sum`, so an operator can check it by hand.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

/// A fingerprint that is not 64 hex digits.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a SHA-256 fingerprint: expected 64 hex digits")]
pub struct FingerprintParseError(pub String);

impl Fingerprint {
    /// The fingerprint of a SubjectPublicKeyInfo in DER.
    pub fn of_spki_der(spki_der: &[u8]) -> Self {
        Self::of_bytes(spki_der)
    }

    /// The SHA-256 of any bytes (a `.byok` file, say).
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Reads 64 hex digits, either case, with or without `:` separators.
    pub fn from_hex(text: &str) -> Result<Self, FingerprintParseError> {
        let digits: String = text.trim().chars().filter(|c| *c != ':').collect();
        let mut out = [0u8; 32];
        hex::decode_to_slice(&digits, &mut out)
            .map_err(|_| FingerprintParseError(text.chars().take(100).collect()))?;
        Ok(Self(out))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, 64 digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.to_hex())
    }
}

/// In JSON, as everywhere it is shown: 64 lowercase hex digits.
impl serde::Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl std::str::FromStr for Fingerprint {
    type Err = FingerprintParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_answer() {
        // FIPS 180-2 example: SHA-256("abc").
        assert_eq!(
            Fingerprint::of_bytes(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let f = Fingerprint::of_bytes(b"x");
        assert_eq!(Fingerprint::from_hex(&f.to_hex()).unwrap(), f);
        assert_eq!(
            Fingerprint::from_hex(&f.to_hex().to_uppercase()).unwrap(),
            f
        );
        assert!(Fingerprint::from_hex("abcd").is_err());
        assert!(Fingerprint::from_hex(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn serializes_as_its_hex() {
        let f = Fingerprint::of_bytes(b"abc");
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            format!("\"{}\"", f.to_hex())
        );
    }
}
