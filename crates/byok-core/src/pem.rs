//! The PEM and DER helpers both key readers use: the KEK's ([`crate::kek`]) and the
//! targets' public keys ([`crate::target`]).

use crate::oid::{EC_PUBLIC_KEY, ED25519, RSA_PSS};
use spki::ObjectIdentifier;

/// `bytes` without its leading zero bytes: a DER INTEGER's magnitude, as JWK wants it.
pub(crate) fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// A readable name for a public-key algorithm OID.
pub(crate) fn algorithm_name(oid: ObjectIdentifier) -> String {
    match oid {
        EC_PUBLIC_KEY => "EC (id-ecPublicKey)".into(),
        RSA_PSS => "RSA-PSS (id-RSASSA-PSS)".into(),
        ED25519 => "Ed25519".into(),
        other => format!("unknown algorithm ({other})"),
    }
}

/// Decodes one PEM block (RFC 7468), returning its label and DER, or why it is not one.
pub(crate) fn decode(pem: &str) -> Result<(String, Vec<u8>), String> {
    let (label, der) =
        der::pem::decode_vec(pem.trim_end().as_bytes()).map_err(|e| e.to_string())?;
    Ok((label.to_string(), der))
}

/// Encodes DER as PEM with LF line endings.
pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    der::pem::encode_string(label, der::pem::LineEnding::LF, der)
        .expect("PEM encoding of an in-memory buffer cannot fail")
}
