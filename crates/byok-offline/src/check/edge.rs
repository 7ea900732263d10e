//! The encoding edge cases `check` imports into the token beside the keys it generates there.
//!
//! A token that writes a key's integers at the wrong length does so only for some values: an
//! EC scalar whose top byte is zero (1 key in 256 on P-256/P-384, 1 in 2 on P-521), an RSA
//! CRT value a byte shorter than the primes. Keys generated in the token meet such values by
//! luck; these keys, made in software with the value chosen, meet them every time. Each is
//! given to the token as a session object in each form a PKCS#11 big integer may take: without
//! leading zero bytes (what a token's own generator often stores) and at the value's nominal
//! length. They are throwaway keys: nothing real is ever imported or unwrapped.

use byok_core::target::{Curve, EncodingError, KeyKind, TargetKey};
use cryptoki::object::Attribute;
use der::{Decode, Encode};
use rsa::BoxedUint;
use rsa::pkcs8;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use zeroize::Zeroizing;

/// One edge case: a key made in software and the forms in which the token is given it.
pub struct EdgeKey {
    /// What makes the key an edge case: "a scalar whose top byte is zero".
    pub what: &'static str,
    /// How often a key of the kind has such a value: 1 in `one_in` (a P-256 scalar's top byte
    /// is zero in 1 key in 256).
    pub one_in: u32,
    pub key: TargetKey,
    pub imports: Vec<Import>,
}

/// One way of giving the key to the token: the private key's material attributes
/// (`CKA_EC_PARAMS` + `CKA_VALUE`, or the RSA components).
pub struct Import {
    /// "CKA_VALUE of 31 bytes", "components without leading zeros".
    pub form: String,
    pub material: Vec<Attribute>,
}

/// How often a key of `curve` has a scalar whose top byte is zero: 1 in 256, and 1 in 2 on
/// P-521, whose 66-byte scalar holds a single bit in its top byte.
pub fn top_byte_zero_one_in(curve: Curve) -> u32 {
    if curve == Curve::P521 { 2 } else { 256 }
}

/// How many imports [`edge_keys`] makes for `kind` (AES has no edge case: its key is raw
/// bytes of a fixed length).
pub fn planned(kind: KeyKind) -> usize {
    match kind {
        KeyKind::Ec { curve: Curve::P521 } => 5,
        KeyKind::Ec { .. } => 4,
        KeyKind::Rsa { .. } => 2,
        KeyKind::Oct { .. } => 0,
    }
}

/// The edge-case keys of `kind`, freshly made.
pub fn edge_keys(kind: KeyKind) -> Result<Vec<EdgeKey>, EncodingError> {
    match kind {
        KeyKind::Ec { curve } => {
            let top = top_byte_zero_one_in(curve);
            let mut keys = vec![
                ec_key(curve, &[0], top, "a scalar whose top byte is zero")?,
                ec_key(
                    curve,
                    &[0, 0],
                    top * 256,
                    "a scalar whose top two bytes are zero",
                )?,
            ];
            if curve == Curve::P521 {
                keys.push(ec_key(curve, &[1], 2, "a scalar whose top byte is 0x01")?);
            }
            Ok(keys)
        }
        KeyKind::Rsa { bits } => Ok(vec![rsa_key(bits)?]),
        KeyKind::Oct { .. } => Ok(Vec::new()),
    }
}

fn generate_err(reason: impl std::fmt::Display) -> EncodingError {
    EncodingError::Generate {
        reason: reason.to_string(),
    }
}

/// `bytes` without its leading zero bytes (at least one byte): a PKCS#11 big integer as a
/// generator that drops them stores it.
fn minimal(bytes: &[u8]) -> Vec<u8> {
    let start = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len() - 1);
    bytes[start..].to_vec()
}

/// `bytes` at `len` bytes, zeros in front.
fn fixed(bytes: &[u8], len: usize) -> Vec<u8> {
    let value = minimal(bytes);
    let mut out = vec![0; len.saturating_sub(value.len())];
    out.extend_from_slice(&value);
    out
}

/// A key of `curve` whose scalar starts with `prefix` (and, where the prefix is zeros, whose
/// next byte is not), the rest random.
fn ec_key(
    curve: Curve,
    prefix: &[u8],
    one_in: u32,
    what: &'static str,
) -> Result<EdgeKey, EncodingError> {
    let len = curve.coordinate_len();
    // The template gives the AlgorithmIdentifier and ECParameters this build writes.
    let template = TargetKey::generate(KeyKind::Ec { curve })?;
    let info = pkcs8::PrivateKeyInfoRef::from_der(template.plaintext()).map_err(generate_err)?;
    let parameters = sec1::EcPrivateKey::from_der(info.private_key.as_bytes())
        .map_err(generate_err)?
        .parameters;
    let mut scalar = Zeroizing::new(vec![0u8; len]);
    for _ in 0..64 {
        getrandom::fill(&mut scalar[prefix.len()..]).map_err(generate_err)?;
        scalar[..prefix.len()].copy_from_slice(prefix);
        if prefix.iter().all(|b| *b == 0) && scalar[prefix.len()] == 0 {
            continue;
        }
        let inner = Zeroizing::new(
            sec1::EcPrivateKey {
                private_key: &scalar,
                parameters,
                public_key: None,
            }
            .to_der()
            .map_err(generate_err)?,
        );
        let der = Zeroizing::new(
            pkcs8::PrivateKeyInfoRef {
                algorithm: info.algorithm,
                private_key: der::asn1::OctetStringRef::new(&inner).map_err(generate_err)?,
                public_key: None,
            }
            .to_der()
            .map_err(generate_err)?,
        );
        // A scalar outside [1, n) (P-521 with a 0x01 prefix, rarely) is refused: try again.
        let Ok(key) = TargetKey::from_pkcs8_der(&der) else {
            continue;
        };
        let form = |value: Vec<u8>| Import {
            form: format!("CKA_VALUE of {} bytes", value.len()),
            material: vec![
                Attribute::EcParams(curve.oid_der()),
                Attribute::Value(value),
            ],
        };
        let mut imports = vec![form(minimal(&scalar))];
        if prefix[0] == 0 {
            imports.push(form(scalar.to_vec()));
        }
        return Ok(EdgeKey {
            what,
            one_in,
            key,
            imports,
        });
    }
    Err(generate_err(format!(
        "no {curve} scalar starting with {prefix:02x?} in 64 tries"
    )))
}

/// The top byte of an EC key's scalar as its PKCS#8 writes it (`None` for another key).
pub fn scalar_top_byte(key: &TargetKey) -> Option<u8> {
    let info = pkcs8::PrivateKeyInfoRef::from_der(key.plaintext()).ok()?;
    let ec = sec1::EcPrivateKey::from_der(info.private_key.as_bytes()).ok()?;
    ec.private_key.first().copied()
}

/// RSA's public exponent, the one every token and Key Vault take.
const E: u64 = 65537;

/// An RSA component: its attribute, its value, its nominal length in bytes.
type Component<'a> = (fn(Vec<u8>) -> Attribute, &'a BoxedUint, usize);

/// An RSA key whose dP is a byte shorter than its primes, the next byte below 0x80 (so a
/// token writing it at the primes' length writes a DER INTEGER with a superfluous zero), and
/// whose d (Carmichael's, below n/2) needs no sign byte.
fn rsa_key(bits: u32) -> Result<EdgeKey, EncodingError> {
    let half = bits / 2;
    // dP = (1 + k(p-1))/e is about k·p/e: k = 64 puts its top byte at zero and its second
    // between 0x18 and 0x3f.
    let p = prime_with_short_dp(half, 64)?;
    // A q with e | q-1 (1 in 65537) has no private exponent: take another.
    let key = loop {
        let q = prime(half)?;
        if q == p {
            continue;
        }
        if let Ok(key) = rsa::PrivateKey::from_p_q(p.clone(), q, BoxedUint::from(E)) {
            break key;
        }
    };
    let der = rsa::pkcs8::EncodePrivateKey::to_pkcs8_der(&key).map_err(generate_err)?;
    let target = TargetKey::from_pkcs8_der(der.as_bytes())?;
    let n_len = bits as usize / 8;
    let qinv = key.crt_coefficient();
    let (Some(dp), Some(dq), Some(qinv)) = (key.dp(), key.dq(), qinv.as_ref()) else {
        return Err(generate_err("no CRT values"));
    };
    let short = fixed(&dp.to_be_bytes(), n_len / 2);
    if short[0] != 0 || short[1] == 0 || short[1] >= 0x80 {
        return Err(generate_err("dP is not a byte shorter than the primes"));
    }
    let (p, q): (&BoxedUint, &BoxedUint) = (key.primes()[0].as_ref(), key.primes()[1].as_ref());
    let n: &BoxedUint = key.n().as_ref();
    let parts: [Component<'_>; 8] = [
        (Attribute::Modulus, n, n_len),
        (Attribute::PublicExponent, key.e(), 3),
        (Attribute::PrivateExponent, key.d(), n_len),
        (Attribute::Prime1, p, n_len / 2),
        (Attribute::Prime2, q, n_len / 2),
        (Attribute::Exponent1, dp, n_len / 2),
        (Attribute::Exponent2, dq, n_len / 2),
        (Attribute::Coefficient, qinv, n_len / 2),
    ];
    let form = |name: &str, encode: &dyn Fn(&[u8], usize) -> Vec<u8>| Import {
        form: name.to_string(),
        material: parts
            .iter()
            .map(|(attribute, value, len)| attribute(encode(&value.to_be_bytes(), *len)))
            .collect(),
    };
    Ok(EdgeKey {
        what: "an RSA key whose dP is a byte shorter than its primes",
        // dP, dQ and qInv are each a byte short on 1 key in 256.
        one_in: 85,
        key: target,
        imports: vec![
            form("components without leading zeros", &|b, _| minimal(b)),
            form("components at their nominal lengths", &fixed),
        ],
    })
}

/// An RSA prime of `bits` bits, its top two bits set (so two make a modulus of twice the bits).
fn prime(bits: u32) -> Result<BoxedUint, EncodingError> {
    use crypto_primes::hazmat::{SetBits, SmallFactorsSieveFactory};
    use crypto_primes::{Flavor, is_prime, sieve_and_find};
    let factory =
        SmallFactorsSieveFactory::new(Flavor::Any, bits, SetBits::TwoMsb).map_err(generate_err)?;
    let mut rng = rsa::rand_core::UnwrapErr(getrandom::SysRng);
    sieve_and_find(&mut rng, factory, |_, c| is_prime(Flavor::Any, c))
        .map_err(generate_err)?
        .ok_or_else(|| generate_err("the prime sieve ran dry"))
}

/// A prime p of `bits` bits (top two set) with e·dP = 1 + k(p-1), i.e. dP = e⁻¹ mod (p-1)
/// about k·p/e. Such p are those ≡ 1 - k⁻¹ (mod e): an arithmetic progression of step 2e
/// (odd), searched from a random start past small factors.
fn prime_with_short_dp(bits: u32, k: u64) -> Result<BoxedUint, EncodingError> {
    let residue = (1 + E - pow_mod(k, E - 2, E)) % E;
    let step = 2 * E;
    let residue = if residue % 2 == 1 {
        residue
    } else {
        residue + E
    };
    let small = small_primes();
    for _ in 0..16 {
        let mut start = vec![0u8; bits as usize / 8];
        getrandom::fill(&mut start).map_err(generate_err)?;
        start[0] |= 0xc0;
        let offset = rem(&start, step);
        let mut candidate = BoxedUint::from_be_slice(&start, bits)
            .map_err(generate_err)?
            .wrapping_sub(BoxedUint::from(offset))
            .wrapping_add(BoxedUint::from(residue));
        let first = candidate.to_be_bytes();
        let mut residues: Vec<u64> = small.iter().map(|s| rem(&first, *s)).collect();
        for _ in 0..8192 {
            let top_two = candidate.bit_width() == bits && candidate.bit_vartime(bits - 2);
            if top_two
                && residues.iter().all(|r| *r != 0)
                && crypto_primes::is_prime(crypto_primes::Flavor::Any, &candidate)
            {
                return Ok(candidate);
            }
            for (r, s) in residues.iter_mut().zip(&small) {
                *r = (*r + step) % s;
            }
            candidate = candidate.wrapping_add(BoxedUint::from(step));
        }
    }
    Err(generate_err("no prime with a short dP found"))
}

/// The odd primes below 2^13 but e: the sieve's small factors.
fn small_primes() -> Vec<u64> {
    const LIMIT: usize = 1 << 13;
    let mut composite = vec![false; LIMIT];
    let mut out = Vec::new();
    for i in 3..LIMIT {
        if composite[i] {
            continue;
        }
        out.push(i as u64);
        for j in (i * i..LIMIT).step_by(i) {
            composite[j] = true;
        }
    }
    out
}

/// A big-endian integer modulo a small `m`.
fn rem(bytes: &[u8], m: u64) -> u64 {
    bytes.iter().fold(0, |r, b| (r * 256 + u64::from(*b)) % m)
}

fn pow_mod(mut base: u64, mut exp: u64, m: u64) -> u64 {
    let mut result = 1;
    base %= m;
    while exp > 0 {
        if exp & 1 == 1 {
            result = result * base % m;
        }
        base = base * base % m;
        exp >>= 1;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(import: &Import, pick: impl Fn(&Attribute) -> Option<&Vec<u8>>) -> Vec<u8> {
        import.material.iter().find_map(pick).unwrap().clone()
    }

    #[test]
    fn ec_edge_keys_have_the_scalars_they_name() {
        for curve in [Curve::P256, Curve::P521] {
            let kind = KeyKind::Ec { curve };
            let keys = edge_keys(kind).unwrap();
            let imports: usize = keys.iter().map(|k| k.imports.len()).sum();
            assert_eq!(imports, planned(kind), "{curve}");
            let len = curve.coordinate_len();
            let scalar = |i: &Import| {
                value(i, |a| match a {
                    Attribute::Value(v) => Some(v),
                    _ => None,
                })
            };
            // Top byte zero: without it (len - 1 bytes, the next byte not zero), then in full.
            let short = scalar(&keys[0].imports[0]);
            assert_eq!((short.len(), short[0] != 0), (len - 1, true), "{curve}");
            let full = scalar(&keys[0].imports[1]);
            assert_eq!((full.len(), full[0]), (len, 0), "{curve}");
            assert_eq!(&full[1..], &short[..]);
            assert_eq!(
                keys[0].imports[0].form,
                format!("CKA_VALUE of {} bytes", len - 1)
            );
            // Top two bytes zero.
            assert_eq!(scalar(&keys[1].imports[0]).len(), len - 2, "{curve}");
            // Each is a valid key of the curve.
            for k in &keys {
                assert_eq!(k.key.kind(), kind);
            }
        }
        let p521 = edge_keys(KeyKind::Ec { curve: Curve::P521 }).unwrap();
        let top = value(&p521[2].imports[0], |a| match a {
            Attribute::Value(v) => Some(v),
            _ => None,
        });
        assert_eq!((top.len(), top[0]), (66, 1));
    }

    #[test]
    fn the_rsa_edge_key_has_a_short_dp_in_both_forms() {
        let kind = KeyKind::Rsa { bits: 2048 };
        let keys = edge_keys(kind).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].imports.len(), planned(kind));
        assert_eq!(keys[0].key.kind(), kind);
        let dp = |i: &Import| {
            value(i, |a| match a {
                Attribute::Exponent1(v) => Some(v),
                _ => None,
            })
        };
        let d = |i: &Import| {
            value(i, |a| match a {
                Attribute::PrivateExponent(v) => Some(v),
                _ => None,
            })
        };
        let [minimal, nominal] = &keys[0].imports[..] else {
            panic!("two forms")
        };
        let short = dp(minimal);
        assert_eq!(short.len(), 127);
        assert!(short[0] < 0x80, "no sign byte needed either");
        let padded = dp(nominal);
        assert_eq!((padded.len(), padded[0], padded[1] < 0x80), (128, 0, true));
        // d is Carmichael's, below n/2: no sign byte at the modulus's length.
        assert!(d(nominal)[0] < 0x80);
        assert_eq!(d(nominal).len(), 256);
    }

    #[test]
    fn big_integer_forms() {
        assert_eq!(minimal(&[0, 0, 5, 0]), [5, 0]);
        assert_eq!(minimal(&[0, 0]), [0]);
        assert_eq!(fixed(&[0, 0, 0, 7], 2), [0, 7]);
        assert_eq!(fixed(&[9], 3), [0, 0, 9]);
        assert_eq!(pow_mod(64, E - 2, E) * 64 % E, 1);
        assert_eq!(rem(&[1, 0], 7), 256 % 7);
    }
}
