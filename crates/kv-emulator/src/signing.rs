//! The key the emulator's tokens are signed with, and the JWKS that publishes it.
//!
//! Entra ID signs its tokens RS256 with a key its tenant's JWKS
//! (`/{tenant}/discovery/v2.0/keys`, the discovery document's `jwks_uri`) lists by `kid`; each
//! entry carries `kty`, `use`, `kid`, `x5t` (equal to `kid`: the SHA-1 thumbprint of the
//! certificate, base64url), `n`, `e`, `x5c` (the self-signed certificate) and `issuer`. MSAL
//! Node refuses a discovery document without `jwks_uri` (msal-common `isOpenIdConfigResponse`).
//! The emulator does the same with an RSA 2048 key made once per state directory (kept in
//! `identity.json` with its certificate, so tokens and the JWKS survive restarts).

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use byok_core::b64;
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde_json::{Value, json};
use sha1::Digest;

/// Why a signing key could not be made or read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SigningKeyError(pub String);

/// A new RSA 2048 key (PKCS#8 DER) and its self-signed certificate (DER).
pub fn make() -> Result<(Vec<u8>, Vec<u8>), SigningKeyError> {
    let err = |e: &dyn std::fmt::Display| SigningKeyError(e.to_string());
    let key = KeyPair::generate(KeySize::Rsa2048).map_err(|e| err(&e))?;
    let pkcs8 = key.as_der().map_err(|e| err(&e))?.as_ref().to_vec();
    let cert = certificate(&pkcs8)?;
    Ok((pkcs8, cert))
}

/// A self-signed certificate for the key, as Entra's JWKS entries carry one in `x5c`.
fn certificate(pkcs8: &[u8]) -> Result<Vec<u8>, SigningKeyError> {
    let err = |e: rcgen::Error| SigningKeyError(e.to_string());
    let der = rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8.to_vec());
    let key =
        rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256).map_err(err)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kv-emulator token signing");
    Ok(params.self_signed(&key).map_err(err)?.der().to_vec())
}

/// The signing key as the token endpoint and the token check use it.
pub struct Signer {
    /// `kid` and `x5t`: base64url of the certificate's SHA-1.
    pub kid: String,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    n: Vec<u8>,
    e: Vec<u8>,
    cert: Vec<u8>,
}

impl Signer {
    /// Reads a key made by [`make`] and its certificate.
    pub fn new(pkcs8: &[u8], cert: &[u8]) -> Result<Self, SigningKeyError> {
        let err = |e: &dyn std::fmt::Display| SigningKeyError(e.to_string());
        let pair = KeyPair::from_pkcs8(pkcs8).map_err(|e| err(&e))?;
        let public = pair.public_key();
        let n = public.modulus().big_endian_without_leading_zero().to_vec();
        let e = public.exponent().big_endian_without_leading_zero().to_vec();
        // jsonwebtoken's aws-lc signer reads PKCS#1 RSAPrivateKey: the PKCS#8 wraps one.
        let info = pkcs8::PrivateKeyInfoRef::try_from(pkcs8).map_err(|e| err(&e))?;
        let encoding = EncodingKey::from_rsa_der(info.private_key.as_bytes());
        let decoding = DecodingKey::from_rsa_raw_components(&n, &e);
        let kid = b64::encode(&sha1::Sha1::digest(cert));
        Ok(Self {
            kid,
            encoding,
            decoding,
            n,
            e,
            cert: cert.to_vec(),
        })
    }

    /// The JWKS entry: Entra's members, `issuer` being the tenant's v2.0 issuer.
    pub fn jwk(&self, issuer: &str) -> Value {
        use base64ct::Encoding;
        json!({
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": b64::encode(&self.n),
            "e": b64::encode(&self.e),
            "x5c": [base64ct::Base64::encode_string(&self.cert)],
            "cloud_instance_name": "microsoftonline.com",
            "issuer": issuer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_made_key_reads_back_with_a_thumbprint_kid() {
        let (pkcs8, cert) = make().unwrap();
        let signer = Signer::new(&pkcs8, &cert).unwrap();
        assert_eq!(signer.kid.len(), 27, "{}", signer.kid);
        let jwk = signer.jwk("https://issuer/v2.0");
        assert_eq!(jwk["e"], "AQAB");
        assert_eq!(jwk["x5t"], jwk["kid"]);
        assert_eq!(
            b64::decode("n", jwk["n"].as_str().unwrap()).unwrap().len(),
            256
        );
        assert!(Signer::new(b"junk", &cert).is_err());
    }
}
