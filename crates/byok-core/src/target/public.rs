//! The public half of a target key: read from SubjectPublicKeyInfo DER or PEM, built from a
//! JWK's RSA components or EC coordinates, and given back in each of those forms.

use super::{Curve, EncodingError, KeyKind, public_err, with_curve};
use crate::fingerprint::Fingerprint;
use crate::oid::{EC_PUBLIC_KEY, RSA_ENCRYPTION};
use crate::pem::{algorithm_name, strip_leading_zeros};
use der::Decode;
use rsa::pkcs8::EncodePublicKey;
use rsa::traits::PublicKeyParts;
use rsa::{BoxedUint, PublicKey as RsaPublicKey};
use std::fmt;

/// The public half of an RSA or EC key, as SubjectPublicKeyInfo DER.
#[derive(Clone, PartialEq, Eq)]
pub struct TargetPublicKey {
    pub(super) kind: KeyKind,
    pub(super) spki_der: Vec<u8>,
}

impl fmt::Debug for TargetPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TargetPublicKey({}, {})", self.kind, self.fingerprint())
    }
}

impl TargetPublicKey {
    /// The file the offline half writes a target's public key to: `<label>.public.pem`.
    pub fn file_name(label: &str) -> String {
        format!("{label}.public.pem")
    }

    /// Reads an RSA or EC SubjectPublicKeyInfo, checking the key is well formed.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, EncodingError> {
        let info = spki::SubjectPublicKeyInfoRef::from_der(der).map_err(public_err)?;
        let oid = info.algorithm.oid;
        let kind = if oid == RSA_ENCRYPTION {
            let key = <RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(der)
                .map_err(public_err)?;
            KeyKind::Rsa {
                bits: key.n().bit_width(),
            }
        } else if oid == EC_PUBLIC_KEY {
            let curve_oid = info.algorithm.parameters_oid().map_err(public_err)?;
            let curve = Curve::from_oid(curve_oid).ok_or(EncodingError::UnsupportedCurveOid {
                oid: curve_oid.to_string(),
            })?;
            with_curve!(curve, C => {
                <elliptic_curve::PublicKey<C> as spki::DecodePublicKey>::from_public_key_der(der)
                    .map_err(public_err)?;
            });
            KeyKind::Ec { curve }
        } else {
            return Err(EncodingError::PublicKey {
                reason: format!("{} keys are not RSA or EC", algorithm_name(oid)),
            });
        };
        Ok(Self {
            kind,
            spki_der: der.to_vec(),
        })
    }

    /// Reads `-----BEGIN PUBLIC KEY-----` PEM.
    pub fn from_pem(pem: &str) -> Result<Self, EncodingError> {
        let start = pem.find("-----BEGIN ").unwrap_or(0);
        let (label, der) = crate::pem::decode(&pem[start..]).map_err(public_err)?;
        if label != "PUBLIC KEY" {
            return Err(EncodingError::PublicKey {
                reason: format!("the PEM block is `{label}`, expected `PUBLIC KEY`"),
            });
        }
        Self::from_spki_der(&der)
    }

    /// Builds the SPKI of an RSA key from big-endian `n` and `e`.
    pub fn from_rsa_components(n: &[u8], e: &[u8]) -> Result<Self, EncodingError> {
        let n = strip_leading_zeros(n);
        let e = strip_leading_zeros(e);
        if n.is_empty() || e.is_empty() || e.len() > 8 {
            return Err(EncodingError::PublicKey {
                reason: "empty modulus or exponent, or exponent over 64 bits".into(),
            });
        }
        let n = BoxedUint::from_be_slice(n, n.len() as u32 * 8).map_err(public_err)?;
        let e = BoxedUint::from_be_slice(e, 64).map_err(public_err)?;
        let key = RsaPublicKey::new(n, e).map_err(public_err)?;
        Self::from_spki_der(key.to_public_key_der().map_err(public_err)?.as_bytes())
    }

    /// Builds the SPKI of an EC key from its affine coordinates (left-padded if short).
    pub fn from_ec_coordinates(curve: Curve, x: &[u8], y: &[u8]) -> Result<Self, EncodingError> {
        let len = curve.coordinate_len();
        let (x, y) = (strip_leading_zeros(x), strip_leading_zeros(y));
        if x.len() > len || y.len() > len {
            return Err(EncodingError::PublicKey {
                reason: format!("a {curve} coordinate is at most {len} bytes"),
            });
        }
        let mut sec1 = vec![0u8; 1 + 2 * len];
        sec1[0] = 0x04;
        sec1[1 + len - x.len()..1 + len].copy_from_slice(x);
        sec1[1 + 2 * len - y.len()..].copy_from_slice(y);
        let der = with_curve!(curve, C => {
            let key = elliptic_curve::PublicKey::<C>::from_sec1_bytes(&sec1).map_err(public_err)?;
            key.to_public_key_der().map_err(public_err)?
        });
        Self::from_spki_der(der.as_bytes())
    }

    /// RSA `(n, e)` big-endian without leading zeros, or EC `(x, y)` at full coordinate length.
    pub fn components(&self) -> (Vec<u8>, Vec<u8>) {
        match self.kind {
            KeyKind::Rsa { .. } => {
                let key = <RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(
                    &self.spki_der,
                )
                .expect("checked when built");
                (
                    key.n_bytes().into_vec(),
                    strip_leading_zeros(&key.e_bytes()).to_vec(),
                )
            }
            KeyKind::Ec { curve } => {
                let info = spki::SubjectPublicKeyInfoRef::from_der(&self.spki_der)
                    .expect("checked when built");
                let point = info.subject_public_key.raw_bytes();
                let len = curve.coordinate_len();
                (point[1..1 + len].to_vec(), point[1 + len..].to_vec())
            }
            KeyKind::Oct { .. } => unreachable!("AES keys have no public key"),
        }
    }

    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// SHA-256 of the SPKI DER.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_spki_der(&self.spki_der)
    }

    /// `-----BEGIN PUBLIC KEY-----` PEM with LF line endings.
    pub fn to_pem(&self) -> String {
        crate::pem::encode("PUBLIC KEY", &self.spki_der)
    }
}
