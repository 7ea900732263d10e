//! Key objects on the token: listing, finding the target, generating it, and reading its
//! public key.

use crate::error::{OfflineError, Result};
use crate::token::TokenSession;
use byok_core::TargetPublicKey;
use byok_core::target::{Curve, KeyKind};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use der::Decode;
use serde::Serialize;

/// One key object as `byok-offline keys` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyObject {
    #[serde(skip)]
    pub handle: ObjectHandle,
    pub label: String,
    /// `CKA_ID` in hex.
    pub id: String,
    pub class: String,
    pub key_type: String,
    /// `RSA 3072`, `EC P-256`, `AES 256`, or what the token reports for other kinds.
    pub kind: String,
    #[serde(skip)]
    pub key_kind: Option<KeyKind>,
    pub extractable: Option<bool>,
    pub sensitive: Option<bool>,
}

/// Key operations a target is generated for, as Key Vault names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOp {
    Sign,
    Verify,
    Encrypt,
    Decrypt,
    WrapKey,
    UnwrapKey,
}

impl KeyOp {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "sign" => KeyOp::Sign,
            "verify" => KeyOp::Verify,
            "encrypt" => KeyOp::Encrypt,
            "decrypt" => KeyOp::Decrypt,
            "wrapKey" => KeyOp::WrapKey,
            "unwrapKey" => KeyOp::UnwrapKey,
            other => {
                return Err(OfflineError::Usage(format!(
                    "unknown key operation `{other}`: use sign, verify, encrypt, decrypt, wrapKey, unwrapKey"
                )));
            }
        })
    }

    /// The operations a kind supports, which is the default.
    pub fn defaults(kind: KeyKind) -> Vec<KeyOp> {
        use KeyOp::*;
        match kind {
            KeyKind::Rsa { .. } => vec![Sign, Verify, Encrypt, Decrypt, WrapKey, UnwrapKey],
            KeyKind::Ec { .. } => vec![Sign, Verify],
            KeyKind::Oct { .. } => vec![Encrypt, Decrypt, WrapKey, UnwrapKey],
        }
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateSpec {
    pub kind: KeyKind,
    pub label: String,
    /// `CKA_ID`; random 16 bytes when empty.
    pub id: Vec<u8>,
    pub ops: Vec<KeyOp>,
}

/// A generated or found target key.
#[derive(Debug, Clone)]
pub struct Target {
    pub private: ObjectHandle,
    pub label: String,
    pub id: Vec<u8>,
    pub kind: KeyKind,
    /// `None` for AES keys.
    pub public_key: Option<TargetPublicKey>,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Lists private and secret key objects.
pub fn list_keys(token: &TokenSession) -> Result<Vec<KeyObject>> {
    let mut out = Vec::new();
    for class in [
        ObjectClass::PRIVATE_KEY,
        ObjectClass::SECRET_KEY,
        ObjectClass::PUBLIC_KEY,
    ] {
        for handle in token.session.find_objects(&[Attribute::Class(class)])? {
            out.push(describe(token, handle)?);
        }
    }
    Ok(out)
}

/// Reads what a key object is.
pub fn describe(token: &TokenSession, handle: ObjectHandle) -> Result<KeyObject> {
    let attrs = token.session.get_attributes(
        handle,
        &[
            AttributeType::Label,
            AttributeType::Id,
            AttributeType::Class,
            AttributeType::KeyType,
            AttributeType::Modulus,
            AttributeType::EcParams,
            AttributeType::ValueLen,
            AttributeType::Extractable,
            AttributeType::Sensitive,
        ],
    )?;
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
    };
    let (mut key_type, mut modulus, mut params, mut value_len) = (None, None, None, None);
    for attr in attrs {
        match attr {
            Attribute::Label(l) => key.label = text(&l),
            Attribute::Id(id) => key.id = hex::encode(id),
            Attribute::Class(c) => key.class = c.to_string(),
            Attribute::KeyType(t) => key_type = Some(t),
            Attribute::Modulus(m) => modulus = Some(m),
            Attribute::EcParams(p) => params = Some(p),
            Attribute::ValueLen(v) => value_len = Some(u64::from(v)),
            Attribute::Extractable(e) => key.extractable = Some(e),
            Attribute::Sensitive(s) => key.sensitive = Some(s),
            _ => {}
        }
    }
    key.key_type = key_type.map(|t| t.to_string()).unwrap_or_default();
    key.key_kind = match key_type {
        Some(KeyType::RSA) => modulus.map(|m| KeyKind::Rsa {
            bits: bit_length(&m),
        }),
        Some(KeyType::EC) => params
            .as_deref()
            .and_then(curve_from_params)
            .map(|curve| KeyKind::Ec { curve }),
        Some(KeyType::AES) => value_len.map(|len| KeyKind::Oct {
            bits: len as u32 * 8,
        }),
        _ => None,
    };
    key.kind = match key.key_kind {
        Some(kind) => kind.to_string(),
        None => format!("{} (not importable)", key.key_type),
    };
    Ok(key)
}

fn bit_length(be: &[u8]) -> u32 {
    let be = &be[be.iter().position(|b| *b != 0).unwrap_or(be.len())..];
    match be.first() {
        None => 0,
        Some(top) => (be.len() * 8) as u32 - top.leading_zeros(),
    }
}

fn curve_from_params(params: &[u8]) -> Option<Curve> {
    // CKA_EC_PARAMS holds the named curve's OID in DER.
    Curve::ALL.into_iter().find(|c| c.oid_der() == params)
}

/// Finds the target key (private or secret) by label or id.
pub fn find_target(token: &TokenSession, label: Option<&str>, id: Option<&[u8]>) -> Result<Target> {
    let mut template = Vec::new();
    let what = match (label, id) {
        (Some(l), _) => {
            template.push(Attribute::Label(l.as_bytes().to_vec()));
            format!("label `{l}`")
        }
        (None, Some(id)) => {
            template.push(Attribute::Id(id.to_vec()));
            format!("id {}", hex::encode(id))
        }
        (None, None) => {
            return Err(OfflineError::Usage(
                "name the target key with --label or --id".into(),
            ));
        }
    };
    if let (Some(_), Some(id)) = (label, id) {
        template.push(Attribute::Id(id.to_vec()));
    }
    let mut found = Vec::new();
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::SECRET_KEY] {
        let mut t = template.clone();
        t.push(Attribute::Class(class));
        found.extend(token.session.find_objects(&t)?);
    }
    let handle = match found.as_slice() {
        [] => {
            return Err(match label {
                Some(l) => OfflineError::NoSuchLabel(l.into()),
                None => OfflineError::NoSuchId(hex::encode(id.unwrap_or_default())),
            });
        }
        [one] => *one,
        many => {
            return Err(OfflineError::AmbiguousKey {
                what,
                count: many.len(),
            });
        }
    };
    let object = describe(token, handle)?;
    let kind = object
        .key_kind
        .ok_or_else(|| OfflineError::UnsupportedTarget {
            label: object.label.clone(),
            found: object.kind.clone(),
            reason: "Key Vault takes RSA, EC P-256/P-384/P-521/P-256K and AES keys".into(),
        })?;
    kind.check_importable()
        .map_err(|e| OfflineError::UnsupportedTarget {
            label: object.label.clone(),
            found: kind.to_string(),
            reason: e.to_string(),
        })?;
    if object.extractable != Some(true) {
        return Err(OfflineError::NotExtractable(object.label));
    }
    if object.sensitive != Some(true) {
        return Err(OfflineError::NotSensitive(object.label));
    }
    let id = hex::decode(&object.id).unwrap_or_default();
    let public_key = public_key_of(token, handle, kind, &id)?;
    Ok(Target {
        private: handle,
        label: object.label,
        id,
        kind,
        public_key,
    })
}

/// The public key of an RSA or EC target: from the private key's public attributes (RSA) or
/// from the public key object with the same `CKA_ID` (EC).
fn public_key_of(
    token: &TokenSession,
    private: ObjectHandle,
    kind: KeyKind,
    id: &[u8],
) -> Result<Option<TargetPublicKey>> {
    match kind {
        KeyKind::Oct { .. } => Ok(None),
        KeyKind::Rsa { .. } => {
            let attrs = token.session.get_attributes(
                private,
                &[AttributeType::Modulus, AttributeType::PublicExponent],
            )?;
            let (mut n, mut e) = (None, None);
            for a in attrs {
                match a {
                    Attribute::Modulus(m) => n = Some(m),
                    Attribute::PublicExponent(x) => e = Some(x),
                    _ => {}
                }
            }
            match (n, e) {
                (Some(n), Some(e)) => Ok(Some(TargetPublicKey::from_rsa_components(&n, &e)?)),
                _ => Err(OfflineError::BadResult(
                    "the RSA private key does not show its modulus and public exponent".into(),
                )),
            }
        }
        KeyKind::Ec { curve } => {
            let publics = token.session.find_objects(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::Id(id.to_vec()),
            ])?;
            let handle = publics.first().ok_or_else(|| {
                OfflineError::BadResult(format!(
                    "no EC public key object with CKA_ID {} beside the private key",
                    hex::encode(id)
                ))
            })?;
            let attrs = token
                .session
                .get_attributes(*handle, &[AttributeType::EcPoint])?;
            let point = attrs
                .into_iter()
                .find_map(|a| match a {
                    Attribute::EcPoint(p) => Some(p),
                    _ => None,
                })
                .ok_or_else(|| {
                    OfflineError::BadResult("the EC public key has no CKA_EC_POINT".into())
                })?;
            Ok(Some(ec_point_to_public_key(curve, &point)?))
        }
    }
}

/// `CKA_EC_POINT` is a DER OCTET STRING around the uncompressed point (some tokens give the
/// raw point); both are read.
fn ec_point_to_public_key(curve: Curve, point: &[u8]) -> Result<TargetPublicKey> {
    let len = curve.coordinate_len();
    let raw = match der::asn1::OctetString::from_der(point) {
        Ok(os) if os.as_bytes().len() == 1 + 2 * len => os.as_bytes().to_vec(),
        _ => point.to_vec(),
    };
    if raw.len() != 1 + 2 * len || raw[0] != 0x04 {
        return Err(OfflineError::BadResult(format!(
            "the {curve} public point is {} bytes, expected an uncompressed point of {}",
            raw.len(),
            1 + 2 * len
        )));
    }
    Ok(TargetPublicKey::from_ec_coordinates(
        curve,
        &raw[1..1 + len],
        &raw[1 + len..],
    )?)
}

/// Generates the target key inside the token: persistent, private, sensitive, extractable
/// (the wrap needs it), with usage flags for `spec.ops`.
pub fn generate(token: &TokenSession, spec: &GenerateSpec) -> Result<Target> {
    let kind = spec.kind.check_importable()?;
    if !token
        .session
        .find_objects(&[Attribute::Label(spec.label.as_bytes().to_vec())])?
        .is_empty()
    {
        return Err(OfflineError::LabelInUse(spec.label.clone()));
    }
    let id = if spec.id.is_empty() {
        token.session.generate_random_vec(16)?
    } else {
        spec.id.clone()
    };
    let has = |op| spec.ops.contains(&op);
    let common = |private: bool| {
        vec![
            Attribute::Token(true),
            Attribute::Label(spec.label.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
            Attribute::Private(private),
        ]
    };
    let secret_flags = vec![Attribute::Sensitive(true), Attribute::Extractable(true)];
    let private = match kind {
        KeyKind::Rsa { bits } => {
            let mut public = common(false);
            public.extend([
                Attribute::ModulusBits((bits as u64).into()),
                Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
                Attribute::Verify(has(KeyOp::Verify)),
                Attribute::Encrypt(has(KeyOp::Encrypt)),
                Attribute::Wrap(has(KeyOp::WrapKey)),
            ]);
            let mut private = common(true);
            private.extend(secret_flags);
            private.extend([
                Attribute::Sign(has(KeyOp::Sign)),
                Attribute::Decrypt(has(KeyOp::Decrypt)),
                Attribute::Unwrap(has(KeyOp::UnwrapKey)),
            ]);
            token
                .session
                .generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private)?
                .1
        }
        KeyKind::Ec { curve } => {
            let mut public = common(false);
            public.extend([
                Attribute::EcParams(curve.oid_der()),
                Attribute::Verify(has(KeyOp::Verify)),
            ]);
            let mut private = common(true);
            private.extend(secret_flags);
            private.push(Attribute::Sign(has(KeyOp::Sign)));
            token
                .session
                .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)?
                .1
        }
        KeyKind::Oct { bits } => {
            let mut template = common(true);
            template.extend(secret_flags);
            template.extend([
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen((bits as u64 / 8).into()),
                Attribute::Encrypt(has(KeyOp::Encrypt)),
                Attribute::Decrypt(has(KeyOp::Decrypt)),
                Attribute::Wrap(has(KeyOp::WrapKey)),
                Attribute::Unwrap(has(KeyOp::UnwrapKey)),
            ]);
            token
                .session
                .generate_key(&Mechanism::AesKeyGen, &template)?
        }
    };
    let public_key = public_key_of(token, private, kind, &id)?;
    Ok(Target {
        private,
        label: spec.label.clone(),
        id,
        kind,
        public_key,
    })
}

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

/// AES-GCM decryption inside the token; the plaintext is zeroized on drop.
pub fn decrypt_gcm(
    token: &TokenSession,
    key: ObjectHandle,
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
            OfflineError::BadResult(format!("the HSM could not decrypt the challenge: {e}"))
        })?;
    Ok(zeroize::Zeroizing::new(plain))
}
