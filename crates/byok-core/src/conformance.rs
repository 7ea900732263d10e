//! What Azure parses after the unwrap, checked strictly: the test a token's output must pass
//! before a real ceremony trusts it (`byok-offline check`), and the emulator's reading of an
//! unwrapped `key_hsm`.
//!
//! - RSA and EC: exactly one DER PKCS#8 `PrivateKeyInfo` (RFC 5208/5958), canonical (its
//!   re-encoding is byte-identical), nothing after it; inside, an RFC 8017 `RSAPrivateKey`
//!   or an RFC 5915 `ECPrivateKey` whose scalar is exactly the curve's length (66 bytes for
//!   P-521) and whose curve OID, if repeated inside, is the algorithm's.
//! - AES: exactly 16, 24 or 32 bytes.
//!
//! Each refusal names the defect, so an operator can tell a token's bug ("65-byte P-521
//! scalar", "7 trailing zero bytes") from a wrong key.

use crate::oid::RSA_ENCRYPTION;
use crate::target::{Curve, EncodingError, KeyKind, Kty, TargetKey};
use der::{Decode, Encode, Reader};

/// A KEK made in memory to judge a token: what the token wraps under it is unwrapped here and
/// read with [`read_plaintext_of`]. Only throwaway targets are ever wrapped under it; a real
/// target never leaves the HSM but under the vault's KEK.
pub struct ThrowawayKek {
    private: rsa::PrivateKey,
    public: crate::KekPublicKey,
}

impl ThrowawayKek {
    /// A fresh RSA 2048 KEK (the size does not change what the token's AES wrap produces).
    pub fn generate() -> Result<Self, EncodingError> {
        let gen_err = |e: &dyn std::fmt::Display| EncodingError::Generate {
            reason: e.to_string(),
        };
        let private =
            rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).map_err(|e| gen_err(&e))?;
        let public =
            crate::KekPublicKey::from_rsa(private.to_public_key()).map_err(|e| gen_err(&e))?;
        Ok(Self { private, public })
    }

    /// The public half, to import into the token as the wrapping key.
    pub fn public(&self) -> &crate::KekPublicKey {
        &self.public
    }

    /// Unwraps what the token made, without reading it: for a caller that must look at the
    /// key in front of a defect (the zero padding a rehearsal override forgives).
    pub fn unwrap(
        &self,
        ciphertext: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, crate::wrap::WrapError> {
        crate::wrap::unwrap(ciphertext, &self.private)
    }

    /// Unwraps what the token made and reads it strictly as a key of `kind`.
    pub fn judge(&self, kind: KeyKind, ciphertext: &[u8]) -> Result<TargetKey, Judgement> {
        let plaintext =
            crate::wrap::unwrap(ciphertext, &self.private).map_err(Judgement::Unwrap)?;
        read_plaintext_of(kind, &plaintext).map_err(Judgement::Defect)
    }
}

/// Why a token's wrap of a throwaway key failed the check.
#[derive(Debug, thiserror::Error)]
pub enum Judgement {
    /// RSA-OAEP or RFC 5649 integrity failed: the wrap itself is wrong.
    #[error("the wrap does not unwrap: {0}")]
    Unwrap(crate::wrap::WrapError),
    /// It unwraps, but not to what Azure parses.
    #[error("{0}")]
    Defect(Defect),
}

/// How an unwrapped plaintext departs from what Azure parses.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Defect {
    #[error("{count} trailing {} after the DER key", zeros_or_bytes(*.count, *.zeros))]
    TrailingBytes { count: usize, zeros: bool },
    #[error("not one DER PKCS#8 PrivateKeyInfo ({reason})")]
    NotDer { reason: String },
    #[error("the DER is not canonical: re-encoding it gives other bytes ({what})")]
    NotCanonical { what: &'static str },
    #[error("{len}-byte {curve} scalar; RFC 5915 requires {expected} bytes")]
    ScalarLength {
        curve: Curve,
        len: usize,
        expected: usize,
    },
    #[error("the ECPrivateKey names curve {inner}, but the PKCS#8 algorithm names {outer}")]
    CurveOidDiffers { outer: String, inner: String },
    #[error("{0}")]
    Key(EncodingError),
    #[error("an AES key is 16, 24 or 32 bytes; this one is {len}")]
    AesLength { len: usize },
}

fn zeros_or_bytes(count: usize, zeros: bool) -> String {
    let noun = if count == 1 { "byte" } else { "bytes" };
    if zeros {
        format!("zero {noun}")
    } else {
        noun.to_string()
    }
}

/// Reads an unwrapped plaintext of the declared key type, strictly.
pub fn read_plaintext(kty: Kty, plaintext: &[u8]) -> Result<TargetKey, Defect> {
    match kty {
        Kty::Oct => {
            let len = plaintext.len();
            let zeros = trailing_zeros(plaintext);
            // The longest AES length the zero tail can be cut back to: the key's own last
            // bytes may be zero too (one AES key in 256 ends in 0x00).
            let key_len = [32, 24, 16]
                .into_iter()
                .find(|&l| l < len && len - l <= zeros);
            if is_aes_len(len) {
                TargetKey::from_aes_bytes(plaintext).map_err(Defect::Key)
            } else if let Some(key_len) = key_len {
                Err(Defect::TrailingBytes {
                    count: len - key_len,
                    zeros: true,
                })
            } else {
                Err(Defect::AesLength { len })
            }
        }
        Kty::Rsa | Kty::Ec => {
            let der_len = outer_len(plaintext)?;
            let rest = &plaintext[der_len..];
            let zeros = rest.iter().all(|b| *b == 0);
            if !zeros {
                return Err(Defect::TrailingBytes {
                    count: rest.len(),
                    zeros,
                });
            }
            // Zero padding must not hide a defect of the key in front of it.
            let der = &plaintext[..der_len];
            check_canonical(der)?;
            let key = TargetKey::from_pkcs8_der(der).map_err(Defect::Key)?;
            if !rest.is_empty() {
                return Err(Defect::TrailingBytes {
                    count: rest.len(),
                    zeros,
                });
            }
            if key.kind().kty() != kty {
                return Err(Defect::Key(EncodingError::KindMismatch {
                    declared: kty.hsm_name().into(),
                    found: key.kind().to_string(),
                }));
            }
            Ok(key)
        }
    }
}

/// Reads a plaintext that should hold a key of `kind`, checking the kind too.
pub fn read_plaintext_of(kind: KeyKind, plaintext: &[u8]) -> Result<TargetKey, Defect> {
    let key = read_plaintext(kind.kty(), plaintext)?;
    if key.kind() != kind {
        return Err(Defect::Key(EncodingError::KindMismatch {
            declared: kind.to_string(),
            found: key.kind().to_string(),
        }));
    }
    Ok(key)
}

fn is_aes_len(len: usize) -> bool {
    matches!(len, 16 | 24 | 32)
}

fn trailing_zeros(bytes: &[u8]) -> usize {
    bytes.iter().rev().take_while(|b| **b == 0).count()
}

/// The length of the outer DER element (header and contents).
fn outer_len(bytes: &[u8]) -> Result<usize, Defect> {
    let not_der = |e: der::Error| Defect::NotDer {
        reason: e.to_string(),
    };
    let mut reader = der::SliceReader::new(bytes).map_err(not_der)?;
    let header = der::Header::decode(&mut reader).map_err(not_der)?;
    let header_len = usize::try_from(reader.position()).map_err(not_der)?;
    let body_len = usize::try_from(header.length()).map_err(not_der)?;
    let total = header_len + body_len;
    if total > bytes.len() {
        return Err(Defect::NotDer {
            reason: format!(
                "the outer SEQUENCE says {total} bytes, {} are there",
                bytes.len()
            ),
        });
    }
    Ok(total)
}

/// PKCS#8 and the key inside it re-encode to the same bytes, and the EC scalar has its
/// fixed length.
fn check_canonical(der: &[u8]) -> Result<(), Defect> {
    let not_der = |e: der::Error| Defect::NotDer {
        reason: e.to_string(),
    };
    let info = pkcs8::PrivateKeyInfoRef::from_der(der).map_err(not_der)?;
    if info.to_der().map_err(not_der)? != der {
        return Err(Defect::NotCanonical {
            what: "PrivateKeyInfo",
        });
    }
    let inner = info.private_key.as_bytes();
    if info.algorithm.oid == RSA_ENCRYPTION {
        let key = pkcs1::RsaPrivateKeyRef::from_der(inner).map_err(not_der)?;
        if key.to_der().map_err(not_der)? != inner {
            return Err(Defect::NotCanonical {
                what: "RSAPrivateKey",
            });
        }
        return Ok(());
    }
    let outer_oid = info
        .algorithm
        .parameters_oid()
        .map_err(|e| Defect::NotDer {
            reason: format!("no named-curve OID: {e}"),
        })?;
    let curve =
        Curve::from_oid(outer_oid).ok_or(Defect::Key(EncodingError::UnsupportedCurveOid {
            oid: outer_oid.to_string(),
        }))?;
    let ec = sec1::EcPrivateKey::from_der(inner).map_err(not_der)?;
    if ec.to_der().map_err(not_der)? != inner {
        return Err(Defect::NotCanonical {
            what: "ECPrivateKey",
        });
    }
    if ec.private_key.len() != curve.coordinate_len() {
        return Err(Defect::ScalarLength {
            curve,
            len: ec.private_key.len(),
            expected: curve.coordinate_len(),
        });
    }
    if let Some(sec1::EcParameters::NamedCurve(inner_oid)) = ec.parameters
        && inner_oid != outer_oid
    {
        return Err(Defect::CurveOidDiffers {
            outer: outer_oid.to_string(),
            inner: inner_oid.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_keys_read_and_trailing_bytes_are_named() {
        for kind in [
            KeyKind::Rsa { bits: 2048 },
            KeyKind::Ec { curve: Curve::P256 },
            KeyKind::Ec { curve: Curve::P521 },
            KeyKind::Oct { bits: 256 },
        ] {
            let key = TargetKey::generate(kind).unwrap();
            assert_eq!(
                read_plaintext_of(kind, key.plaintext()).unwrap().kind(),
                kind
            );
            let mut padded = key.plaintext().to_vec();
            padded.extend_from_slice(&[0; 7]);
            let err = read_plaintext(kind.kty(), &padded).unwrap_err();
            assert_eq!(
                err,
                Defect::TrailingBytes {
                    count: 7,
                    zeros: true
                },
                "{kind}"
            );
            assert_eq!(err.to_string(), "7 trailing zero bytes after the DER key");
        }
        // An AES key whose own last bytes are zero, padded: the padding is what is named.
        let mut padded = [0x5a; 32];
        padded[30..].fill(0);
        let mut padded = padded.to_vec();
        padded.extend_from_slice(&[0; 8]);
        assert_eq!(
            read_plaintext(Kty::Oct, &padded).unwrap_err(),
            Defect::TrailingBytes {
                count: 8,
                zeros: true
            }
        );
        let key = TargetKey::generate(KeyKind::Ec { curve: Curve::P384 }).unwrap();
        let mut junk = key.plaintext().to_vec();
        junk.push(0x42);
        assert_eq!(
            read_plaintext(Kty::Ec, &junk).unwrap_err(),
            Defect::TrailingBytes {
                count: 1,
                zeros: false
            }
        );
        assert_eq!(
            read_plaintext(Kty::Oct, &[1; 20]).unwrap_err(),
            Defect::AesLength { len: 20 }
        );
        assert!(matches!(
            read_plaintext_of(
                KeyKind::Ec { curve: Curve::P384 },
                TargetKey::generate(KeyKind::Ec { curve: Curve::P256 })
                    .unwrap()
                    .plaintext()
            ),
            Err(Defect::Key(EncodingError::KindMismatch { .. }))
        ));
    }

    /// A P-521 key whose scalar's top byte is zero, written in 65 bytes as a defective token
    /// does.
    fn short_p521() -> Vec<u8> {
        loop {
            let key = TargetKey::generate(KeyKind::Ec { curve: Curve::P521 }).unwrap();
            let info = pkcs8::PrivateKeyInfoRef::from_der(key.plaintext()).unwrap();
            let ec = sec1::EcPrivateKey::from_der(info.private_key.as_bytes()).unwrap();
            if ec.private_key[0] != 0 {
                continue;
            }
            let short = sec1::EcPrivateKey {
                private_key: &ec.private_key[1..],
                parameters: ec.parameters,
                public_key: ec.public_key,
            }
            .to_der()
            .unwrap();
            let octets = der::asn1::OctetStringRef::new(&short).unwrap();
            let info = pkcs8::PrivateKeyInfoRef {
                algorithm: info.algorithm,
                private_key: octets,
                public_key: None,
            };
            return info.to_der().unwrap();
        }
    }

    #[test]
    fn a_throwaway_kek_judges_a_software_wrap() {
        let kek = ThrowawayKek::generate().unwrap();
        let kind = KeyKind::Ec { curve: Curve::P384 };
        let key = TargetKey::generate(kind).unwrap();
        let ct = crate::wrap::wrap(key.plaintext(), kek.public()).unwrap();
        assert_eq!(kek.judge(kind, &ct).unwrap().kind(), kind);
        let mut padded = key.plaintext().to_vec();
        padded.extend_from_slice(&[0; 3]);
        let ct = crate::wrap::wrap(&padded, kek.public()).unwrap();
        assert!(matches!(
            kek.judge(kind, &ct),
            Err(Judgement::Defect(Defect::TrailingBytes {
                count: 3,
                zeros: true
            }))
        ));
        let mut broken = crate::wrap::wrap(key.plaintext(), kek.public()).unwrap();
        let last = broken.len() - 1;
        broken[last] ^= 1;
        assert!(matches!(
            kek.judge(kind, &broken),
            Err(Judgement::Unwrap(_))
        ));
    }

    #[test]
    fn a_short_p521_scalar_is_named() {
        let err = read_plaintext(Kty::Ec, &short_p521()).unwrap_err();
        assert_eq!(
            err,
            Defect::ScalarLength {
                curve: Curve::P521,
                len: 65,
                expected: 66
            }
        );
        assert_eq!(
            err.to_string(),
            "65-byte P-521 scalar; RFC 5915 requires 66 bytes"
        );
        // The keys this crate makes are well formed.
        let key = TargetKey::generate(KeyKind::Ec { curve: Curve::P521 }).unwrap();
        let again = key.plaintext().to_vec();
        assert!(read_plaintext(Kty::Ec, &again).is_ok());
    }
}
