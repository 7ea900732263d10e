//! A private key from plain JWK members (an import without `key_hsm`).

use super::JwkIn;
use crate::crypto;
use crate::error::{ApiError, ApiResult};
use byok_core::TargetPublicKey;
use byok_core::target::{Curve, EncodingError, Kty, TargetKey};
use ecdsa::elliptic_curve::{CurveArithmetic, SecretKey};
use pkcs8::EncodePrivateKey;
use zeroize::Zeroizing;

/// Builds the key the JWK's private members describe.
pub fn private_key(jwk: &JwkIn, kty: Kty) -> ApiResult<TargetKey> {
    match kty {
        Kty::Rsa => rsa_key(jwk),
        Kty::Ec => ec_key(jwk),
        Kty::Oct => TargetKey::from_aes_bytes(&member("k", &jwk.k)?).map_err(|e| invalid(&e)),
    }
}

/// A required member, decoded.
fn member(name: &'static str, value: &Option<String>) -> ApiResult<Zeroizing<Vec<u8>>> {
    let value = value
        .as_ref()
        .ok_or_else(|| ApiError::bad_parameter(format!("The JWK lacks '{name}'.")))?;
    crypto::field(name, value).map(Zeroizing::new)
}

fn invalid(e: &dyn std::fmt::Display) -> ApiError {
    ApiError::bad_parameter(format!("The JWK is not a valid private key: {e}"))
}

fn rsa_key(jwk: &JwkIn) -> ApiResult<TargetKey> {
    let uint = |b: &[u8]| rsa::BoxedUint::from_be_slice_vartime(b);
    let (n, e, d, p, q) = (
        member("n", &jwk.n)?,
        member("e", &jwk.e)?,
        member("d", &jwk.d)?,
        member("p", &jwk.p)?,
        member("q", &jwk.q)?,
    );
    let key =
        rsa::PrivateKey::from_components(uint(&n), uint(&e), uint(&d), vec![uint(&p), uint(&q)])
            .map_err(|e| invalid(&e))?;
    let der = key.to_pkcs8_der().map_err(|e| invalid(&e))?;
    TargetKey::from_pkcs8_der(der.as_bytes()).map_err(|e| invalid(&e))
}

fn ec_key(jwk: &JwkIn) -> ApiResult<TargetKey> {
    let crv: Curve = jwk
        .crv
        .as_deref()
        .unwrap_or_default()
        .parse()
        .map_err(|e: EncodingError| ApiError::bad_parameter(e.to_string()))?;
    let d = member("d", &jwk.d)?;
    let der = match crv {
        Curve::P256 => ec_pkcs8::<p256::NistP256>(&d),
        Curve::P384 => ec_pkcs8::<p384::NistP384>(&d),
        Curve::P521 => ec_pkcs8::<p521::NistP521>(&d),
        Curve::P256K => ec_pkcs8::<k256::Secp256k1>(&d),
    }?;
    let key = TargetKey::from_pkcs8_der(&der).map_err(|e| invalid(&e))?;
    // x and y, when given, must be the key's public point.
    if let (Some(x), Some(y)) = (&jwk.x, &jwk.y) {
        let given = TargetPublicKey::from_ec_coordinates(
            crv,
            &crypto::field("x", x)?,
            &crypto::field("y", y)?,
        )
        .map_err(|e| invalid(&e))?;
        if Some(&given) != key.public_key() {
            return Err(ApiError::bad_parameter(
                "The JWK's x and y do not match its d.",
            ));
        }
    }
    Ok(key)
}

/// The PKCS#8 of the EC private scalar `d` on curve `C`.
fn ec_pkcs8<C>(d: &[u8]) -> ApiResult<Zeroizing<Vec<u8>>>
where
    C: CurveArithmetic,
    SecretKey<C>: EncodePrivateKey,
{
    let secret = SecretKey::<C>::from_slice(d).map_err(|e| invalid(&e))?;
    let der = secret.to_pkcs8_der().map_err(|e| invalid(&e))?;
    Ok(Zeroizing::new(der.as_bytes().to_vec()))
}
