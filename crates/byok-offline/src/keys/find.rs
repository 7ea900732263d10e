//! Finding the target key: by label or id (a search of the token) or in a batch's index,
//! checked importable, extractable and sensitive, with its public key read from the token.

use super::describe::describe;
use super::{Origin, Target};
use crate::error::{OfflineError, PublicKeyError, Result};
use crate::index::TokenIndex;
use crate::raw::RawModule;
use crate::token::TokenSession;
use byok_core::TargetPublicKey;
use byok_core::target::{Curve, KeyKind};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use der::Decode;

/// Finds the target key (private or secret) by label or id, searching the token.
pub fn find_target(token: &TokenSession, label: Option<&str>, id: Option<&[u8]>) -> Result<Target> {
    let handle = find_one_private(token, label, id)?;
    target_at(token, handle, PublicAt::Search)
}

/// Finds the target key labelled `label` in `index` (a batch's: no search of the token when
/// it holds every object, else one search of the label the first time it is asked).
pub fn find_target_in(
    token: &TokenSession,
    raw: &RawModule,
    index: &TokenIndex,
    label: &str,
) -> Result<Target> {
    index.learn_label(token, raw, label)?;
    let handle = index.target(label)?;
    target_at(token, handle, PublicAt::Index(index, raw))
}

/// The target key at `handle`, checked importable, extractable and sensitive, with its
/// public key.
fn target_at(token: &TokenSession, handle: ObjectHandle, public: PublicAt<'_>) -> Result<Target> {
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
    let public_key = public_key_of(token, handle, kind, &object.label, &id, public)?;
    tracing::info!(label = %object.label, id = %object.id, %kind, "target key found");
    Ok(Target {
        private: handle,
        label: object.label,
        id,
        kind,
        public_key,
        origin: Origin::of_local(object.local),
    })
}

/// Where an EC key's public key object is: found by a search for its `CKA_ID`, in a batch's
/// index, or known (the key was just generated).
#[derive(Clone, Copy)]
pub(super) enum PublicAt<'a> {
    Search,
    Index(&'a TokenIndex, &'a RawModule),
    Handle(Option<ObjectHandle>),
}

/// The one private or secret key with this label and/or id.
fn find_one_private(
    token: &TokenSession,
    label: Option<&str>,
    id: Option<&[u8]>,
) -> Result<ObjectHandle> {
    let mut template = Vec::new();
    if let Some(l) = label {
        template.push(Attribute::Label(l.as_bytes().to_vec()));
    }
    if let Some(id) = id {
        template.push(Attribute::Id(id.to_vec()));
    }
    let what = match (label, id) {
        (Some(l), _) => format!("label `{l}`"),
        (None, Some(id)) => format!("id {}", hex::encode(id)),
        (None, None) => {
            return Err(OfflineError::NoTarget);
        }
    };
    let mut found = Vec::new();
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::SECRET_KEY] {
        let mut t = template.clone();
        t.push(Attribute::Class(class));
        found.extend(token.session.find_objects(&t)?);
    }
    match found.as_slice() {
        [] => Err(match label {
            Some(l) => OfflineError::NoSuchLabel(l.into()),
            None => OfflineError::NoSuchId(hex::encode(id.unwrap_or_default())),
        }),
        [one] => Ok(*one),
        many => Err(OfflineError::AmbiguousKey {
            what,
            count: many.len(),
        }),
    }
}

/// The public key of an RSA or EC target: from the private key's public attributes (RSA) or
/// from the public key object with the same `CKA_ID` (EC). `None` for an AES key.
pub(super) fn public_key_of(
    token: &TokenSession,
    private: ObjectHandle,
    kind: KeyKind,
    label: &str,
    id: &[u8],
    public: PublicAt<'_>,
) -> Result<Option<TargetPublicKey>> {
    let unreadable = |source| OfflineError::PublicKeyUnreadable {
        label: label.into(),
        source,
    };
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
            let (Some(n), Some(e)) = (n, e) else {
                return Err(unreadable(PublicKeyError::RsaComponentsHidden));
            };
            Ok(Some(TargetPublicKey::from_rsa_components(&n, &e)?))
        }
        KeyKind::Ec { curve } => {
            let handle = match public {
                PublicAt::Search => token
                    .session
                    .find_objects(&[
                        Attribute::Class(ObjectClass::PUBLIC_KEY),
                        Attribute::Id(id.to_vec()),
                    ])?
                    .first()
                    .copied(),
                PublicAt::Index(index, raw) => {
                    index.learn_public_id(token, raw, id)?;
                    index.public_by_id(id)
                }
                PublicAt::Handle(handle) => handle,
            };
            let id = hex::encode(id);
            let handle = handle
                .ok_or_else(|| unreadable(PublicKeyError::NoEcPublicObject { id: id.clone() }))?;
            let attrs = token
                .session
                .get_attributes(handle, &[AttributeType::EcPoint])?;
            let point = attrs
                .into_iter()
                .find_map(|a| match a {
                    Attribute::EcPoint(p) => Some(p),
                    _ => None,
                })
                .ok_or_else(|| unreadable(PublicKeyError::NoEcPoint { id }))?;
            Ok(Some(
                ec_point_to_public_key(curve, &point).map_err(unreadable)?,
            ))
        }
    }
}

/// `CKA_EC_POINT` is a DER OCTET STRING around the uncompressed point (some tokens give the
/// raw point); both are read.
fn ec_point_to_public_key(
    curve: Curve,
    point: &[u8],
) -> std::result::Result<TargetPublicKey, PublicKeyError> {
    let len = curve.coordinate_len();
    let expected = 1 + 2 * len;
    let raw = match der::asn1::OctetString::from_der(point) {
        Ok(os) if os.as_bytes().len() == expected => os.as_bytes().to_vec(),
        _ => point.to_vec(),
    };
    if raw.len() != expected {
        return Err(PublicKeyError::EcPointLength {
            curve,
            len: raw.len(),
            expected,
        });
    }
    if raw[0] != 0x04 {
        return Err(PublicKeyError::EcPointCompressed {
            curve,
            first: raw[0],
        });
    }
    TargetPublicKey::from_ec_coordinates(curve, &raw[1..1 + len], &raw[1 + len..])
        .map_err(|source| PublicKeyError::EcPointInvalid { curve, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use byok_core::target::TargetKey;
    use der::Encode;

    /// P-256's base point (SEC 2, section 2.4.2): the public key of the private key 1.
    const P256_GX: &str = "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296";
    const P256_GY: &str = "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5";

    fn uncompressed(x: &[u8], y: &[u8]) -> Vec<u8> {
        [&[0x04][..], x, y].concat()
    }

    fn octet_string(raw: &[u8]) -> Vec<u8> {
        der::asn1::OctetString::new(raw).unwrap().to_der().unwrap()
    }

    #[test]
    fn a_known_point_reads_in_der_and_raw() {
        let (x, y) = (hex::decode(P256_GX).unwrap(), hex::decode(P256_GY).unwrap());
        let raw = uncompressed(&x, &y);
        let der = octet_string(&raw);
        assert_eq!(&der[..2], &[0x04, 0x41]);
        for point in [der, raw] {
            let key = ec_point_to_public_key(Curve::P256, &point).unwrap();
            assert_eq!(key.kind(), KeyKind::Ec { curve: Curve::P256 });
            assert_eq!(key.components(), (x.clone(), y.clone()));
        }
    }

    #[test]
    fn every_curve_s_point_gives_back_its_public_key() {
        for curve in Curve::ALL {
            let key = TargetKey::generate(KeyKind::Ec { curve }).unwrap();
            let public = key.public_key().unwrap();
            let (x, y) = public.components();
            let raw = uncompressed(&x, &y);
            // P-521's point (133 bytes) takes DER's long length form.
            let der = octet_string(&raw);
            for point in [der, raw] {
                assert_eq!(
                    &ec_point_to_public_key(curve, &point).unwrap(),
                    public,
                    "{curve}"
                );
            }
        }
    }

    #[test]
    fn a_point_that_is_not_uncompressed_or_not_on_the_curve_is_named() {
        let x = hex::decode(P256_GX).unwrap();
        let p256 = uncompressed(&x, &hex::decode(P256_GY).unwrap());
        // Compressed (0x03: Gy is odd), DER-wrapped; a P-256 point given for P-384.
        let compressed = octet_string(&[&[0x03][..], &x].concat());
        for (curve, point, lengths) in [
            (Curve::P256, &compressed, (35, 65)),
            (Curve::P384, &p256, (65, 97)),
        ] {
            match ec_point_to_public_key(curve, point) {
                Err(PublicKeyError::EcPointLength {
                    curve: named,
                    len,
                    expected,
                }) => assert_eq!((named, (len, expected)), (curve, lengths)),
                other => panic!("{curve}: {other:?}"),
            }
        }
        // The right length with another first byte (a hybrid point, 0x06).
        let mut hybrid = p256.clone();
        hybrid[0] = 0x06;
        assert!(matches!(
            ec_point_to_public_key(Curve::P256, &hybrid),
            Err(PublicKeyError::EcPointCompressed { first: 0x06, .. })
        ));
        // A raw point whose first bytes read as a shorter OCTET STRING (04 3f ...) is taken
        // raw, and refused as off the curve, not as 63 bytes long.
        let off_curve = [&[0x04, 0x3f][..], &[0x01; 63]].concat();
        let err = ec_point_to_public_key(Curve::P256, &off_curve).unwrap_err();
        assert!(
            matches!(
                err,
                PublicKeyError::EcPointInvalid {
                    curve: Curve::P256,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("report it to the HSM vendor"),
            "{err}"
        );
    }
}
