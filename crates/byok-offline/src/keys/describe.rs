//! What a key object is: its label, id, class and flags, and its kind read from
//! `CKA_KEY_TYPE` with `CKA_MODULUS`, `CKA_EC_PARAMS` or `CKA_VALUE_LEN`.

use super::KeyObject;
use crate::error::Result;
use crate::token::TokenSession;
use byok_core::target::{Curve, KeyKind};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectHandle};

/// The attributes read to describe a key object (one `C_GetAttributeValue` pair); the bench's
/// floor reads the same.
pub const DESCRIBE: [AttributeType; 10] = [
    AttributeType::Label,
    AttributeType::Id,
    AttributeType::Class,
    AttributeType::KeyType,
    AttributeType::Modulus,
    AttributeType::EcParams,
    AttributeType::ValueLen,
    AttributeType::Extractable,
    AttributeType::Sensitive,
    AttributeType::Local,
];

/// The attributes that say what kind of key an object is.
#[derive(Default)]
pub(super) struct KindAttributes {
    pub(super) key_type: Option<KeyType>,
    pub(super) modulus: Option<Vec<u8>>,
    pub(super) ec_params: Option<Vec<u8>>,
    pub(super) value_len: Option<u64>,
}

impl KindAttributes {
    /// The kind, when it is one this tool names (RSA, a known curve, AES).
    pub(super) fn kind(&self) -> Option<KeyKind> {
        match self.key_type? {
            KeyType::RSA => self.modulus.as_deref().map(|m| KeyKind::Rsa {
                bits: bit_length(m),
            }),
            KeyType::EC => self
                .ec_params
                .as_deref()
                .and_then(curve_from_params)
                .map(|curve| KeyKind::Ec { curve }),
            KeyType::AES => self.value_len.map(|len| KeyKind::Oct {
                bits: len as u32 * 8,
            }),
            _ => None,
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Reads what a key object is.
pub(super) fn describe(token: &TokenSession, handle: ObjectHandle) -> Result<KeyObject> {
    let attrs = token.session.get_attributes(handle, &DESCRIBE)?;
    let mut key = KeyObject {
        handle,
        label: String::new(),
        id: String::new(),
        class: String::new(),
        key_type: String::new(),
        kind: String::new(),
        key_kind: None,
        extractable: None,
        sensitive: None,
        local: None,
    };
    let mut k = KindAttributes::default();
    for attr in attrs {
        match attr {
            Attribute::Label(l) => key.label = text(&l),
            Attribute::Id(id) => key.id = hex::encode(id),
            Attribute::Class(c) => key.class = c.to_string(),
            Attribute::KeyType(t) => k.key_type = Some(t),
            Attribute::Modulus(m) => k.modulus = Some(m),
            Attribute::EcParams(p) => k.ec_params = Some(p),
            Attribute::ValueLen(v) => k.value_len = Some(u64::from(v)),
            Attribute::Extractable(e) => key.extractable = Some(e),
            Attribute::Sensitive(s) => key.sensitive = Some(s),
            Attribute::Local(l) => key.local = Some(l),
            _ => {}
        }
    }
    key.key_type = k.key_type.map(|t| t.to_string()).unwrap_or_default();
    key.key_kind = k.kind();
    key.kind = match key.key_kind {
        Some(kind) => kind.to_string(),
        None => format!("{} (not importable)", key.key_type),
    };
    Ok(key)
}

/// The bit length of a big-endian unsigned integer (`CKA_MODULUS`), leading zeros ignored.
fn bit_length(be: &[u8]) -> u32 {
    let be = &be[be.iter().position(|b| *b != 0).unwrap_or(be.len())..];
    match be.first() {
        None => 0,
        Some(top) => (be.len() * 8) as u32 - top.leading_zeros(),
    }
}

/// The curve whose named-curve OID `CKA_EC_PARAMS` holds in DER.
fn curve_from_params(params: &[u8]) -> Option<Curve> {
    Curve::ALL.into_iter().find(|c| c.oid_der() == params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_length_skips_leading_zeros() {
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[0, 0]), 0);
        assert_eq!(bit_length(&[0x01]), 1);
        assert_eq!(bit_length(&[0x80]), 8);
        assert_eq!(bit_length(&[0x00, 0x80, 0x00]), 16);
        // An RSA 2048 modulus, with and without the sign byte some tokens prepend.
        let mut modulus = vec![0xc5; 256];
        assert_eq!(bit_length(&modulus), 2048);
        modulus.insert(0, 0);
        assert_eq!(bit_length(&modulus), 2048);
        // A modulus one bit short of its bytes.
        assert_eq!(bit_length(&[&[0x7f][..], &[0xff; 383]].concat()), 3071);
    }

    #[test]
    fn ec_params_name_the_curve_by_its_oid() {
        // The DER of each named-curve OID (RFC 5480, SEC 2), as tokens store it.
        let cases: [(&[u8], Curve); 4] = [
            (
                &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
                Curve::P256,
            ),
            (&[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22], Curve::P384),
            (&[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23], Curve::P521),
            (&[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a], Curve::P256K),
        ];
        for (der, curve) in cases {
            assert_eq!(curve_from_params(der), Some(curve), "{curve}");
        }
        // brainpoolP256r1, which Key Vault does not import; a printable name; nothing.
        let brainpool = [
            0x06, 0x09, 0x2b, 0x24, 0x03, 0x03, 0x02, 0x08, 0x01, 0x01, 0x07,
        ];
        assert_eq!(curve_from_params(&brainpool), None);
        assert_eq!(
            curve_from_params(&[0x13, 0x05, b'P', b'-', b'2', b'5', b'6']),
            None
        );
        assert_eq!(curve_from_params(&[]), None);
    }

    #[test]
    fn the_kind_comes_from_the_key_type_and_its_size_attribute() {
        let rsa = KindAttributes {
            key_type: Some(KeyType::RSA),
            modulus: Some(vec![0xff; 384]),
            ..Default::default()
        };
        assert_eq!(rsa.kind(), Some(KeyKind::Rsa { bits: 3072 }));
        let ec = KindAttributes {
            key_type: Some(KeyType::EC),
            ec_params: Some(Curve::P384.oid_der()),
            ..Default::default()
        };
        assert_eq!(ec.kind(), Some(KeyKind::Ec { curve: Curve::P384 }));
        let aes = KindAttributes {
            key_type: Some(KeyType::AES),
            value_len: Some(24),
            ..Default::default()
        };
        assert_eq!(aes.kind(), Some(KeyKind::Oct { bits: 192 }));
        // A kind this tool does not name, or one whose size attribute is missing.
        let des3 = KindAttributes {
            key_type: Some(KeyType::DES3),
            value_len: Some(24),
            ..Default::default()
        };
        assert_eq!(des3.kind(), None);
        let rsa_without_modulus = KindAttributes {
            key_type: Some(KeyType::RSA),
            ..Default::default()
        };
        assert_eq!(rsa_without_modulus.kind(), None);
        let ec_on_another_curve = KindAttributes {
            key_type: Some(KeyType::EC),
            ec_params: Some(vec![0x06, 0x03, 0x2b, 0x65, 0x70]),
            ..Default::default()
        };
        assert_eq!(ec_on_another_curve.kind(), None);
        assert_eq!(KindAttributes::default().kind(), None);
    }
}
