//! A vault's public JWK (`n`,`e` or `crv`,`x`,`y`) to and from SubjectPublicKeyInfo, so the
//! key a vault holds can be compared with the key an HSM made.

use crate::b64::{self, B64Error};
use crate::target::{EncodingError, KeyKind, Kty, TargetPublicKey};
use serde::{Deserialize, Serialize};

/// The public members of a JSON Web Key as Key Vault returns them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PublicJwk {
    pub kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
}

/// Why a JWK could not be turned into a public key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwkError {
    #[error("the JWK has kty `{kty}`; only RSA and EC keys have a public key to compare")]
    NoPublicKey { kty: String },
    #[error("the JWK lacks its `{member}` member")]
    Missing { member: &'static str },
    #[error(transparent)]
    Base64(#[from] B64Error),
    #[error(transparent)]
    Key(#[from] EncodingError),
}

impl PublicJwk {
    /// The public key this JWK describes.
    pub fn to_public_key(&self) -> Result<TargetPublicKey, JwkError> {
        let need =
            |value: &Option<String>, member| value.clone().ok_or(JwkError::Missing { member });
        match Kty::from_jwk_kty(&self.kty) {
            Some(Kty::Rsa) => {
                let n = b64::decode("n", &need(&self.n, "n")?)?;
                let e = b64::decode("e", &need(&self.e, "e")?)?;
                Ok(TargetPublicKey::from_rsa_components(&n, &e)?)
            }
            Some(Kty::Ec) => {
                let curve = need(&self.crv, "crv")?.parse()?;
                let x = b64::decode("x", &need(&self.x, "x")?)?;
                let y = b64::decode("y", &need(&self.y, "y")?)?;
                Ok(TargetPublicKey::from_ec_coordinates(curve, &x, &y)?)
            }
            _ => Err(JwkError::NoPublicKey {
                kty: self.kty.chars().take(40).collect(),
            }),
        }
    }

    /// The JWK of a public key; `kty` is `RSA` or `EC` (add `-HSM` yourself where needed).
    pub fn from_public_key(key: &TargetPublicKey) -> Self {
        let (a, b) = key.components();
        match key.kind() {
            KeyKind::Rsa { .. } => Self {
                kty: "RSA".into(),
                n: Some(b64::encode(&a)),
                e: Some(b64::encode(&b)),
                ..Self::default()
            },
            KeyKind::Ec { curve } => Self {
                kty: "EC".into(),
                crv: Some(curve.name().into()),
                x: Some(b64::encode(&a)),
                y: Some(b64::encode(&b)),
                ..Self::default()
            },
            KeyKind::Oct { .. } => unreachable!("TargetPublicKey is never oct"),
        }
    }
}
