//! The cryptographic operations on a stored key: sign, verify, encrypt, decrypt, wrapKey,
//! unwrapKey. Each needs the operation among the key's `key_ops` and the key usable now.

use super::Service;
use crate::crypto::{self, Material};
use crate::error::{ApiError, ApiResult};
use byok_core::KeyOp;
use byok_core::b64;
use serde::Deserialize;
use serde_json::{Value, json};

/// The body of `POST /keys/{name}/{version}/{operation}`.
#[derive(Debug, Deserialize)]
pub struct OperationRequest {
    pub alg: String,
    pub value: String,
    pub digest: Option<String>,
    pub iv: Option<String>,
    pub aad: Option<String>,
    pub tag: Option<String>,
}

/// The request's base64url fields, decoded.
struct Input {
    alg: String,
    value: Vec<u8>,
    /// Read by verify only, so it is decoded there.
    digest: Option<String>,
    iv: Option<Vec<u8>>,
    aad: Option<Vec<u8>>,
    tag: Option<Vec<u8>>,
}

impl Input {
    fn decode(req: OperationRequest) -> ApiResult<Self> {
        let opt =
            |name: &'static str, v: Option<String>| v.map(|s| crypto::field(name, &s)).transpose();
        Ok(Self {
            value: crypto::field("value", &req.value)?,
            iv: opt("iv", req.iv)?,
            aad: opt("aad", req.aad)?,
            tag: opt("tag", req.tag)?,
            digest: req.digest,
            alg: req.alg,
        })
    }
}

impl Service {
    /// Runs `op` with a key version (empty: the latest).
    pub async fn operate(
        &self,
        name: &str,
        version: &str,
        op: KeyOp,
        req: OperationRequest,
    ) -> ApiResult<Value> {
        let input = Input::decode(req)?;
        let (kid, material) = self.usable_key(name, version, op).await?;
        tokio::task::spawn_blocking(move || run(op, &kid, &material, &input))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
    }

    /// A key version's id and material, checking that it allows `op` now.
    async fn usable_key(
        &self,
        name: &str,
        version: &str,
        op: KeyOp,
    ) -> ApiResult<(String, Material)> {
        let entry = self.live(name).await?;
        let v = entry
            .version(version)
            .ok_or_else(|| ApiError::key_not_found(name, Some(version)))?;
        let kid = format!("{}/keys/{}/{}", self.vault_url, entry.name, v.version);
        // The service's 403: innererror KeyOperationForbidden (docs/azure-behaviour.md 7f).
        if !v.key_ops.contains(&op) {
            return Err(ApiError::forbidden(format!(
                "Operation {op} is not permitted on this key."
            ))
            .with_inner("KeyOperationForbidden"));
        }
        v.attributes.usable_at(crate::flavor::now())?;
        let material = Material::from_plaintext(v.kind()?, &v.plaintext()?)?;
        Ok((kid, material))
    }
}

/// The operation itself, on a blocking thread (RSA private-key operations take milliseconds).
fn run(op: KeyOp, kid: &str, material: &Material, input: &Input) -> ApiResult<Value> {
    let (alg, value) = (input.alg.as_str(), input.value.as_slice());
    let (iv, aad) = (input.iv.as_deref(), input.aad.as_deref());
    Ok(match op {
        KeyOp::Sign => {
            json!({"kid": kid, "value": b64::encode(&crypto::sign(material, alg, value)?)})
        }
        KeyOp::Verify => {
            let digest = input
                .digest
                .as_deref()
                .ok_or_else(|| ApiError::bad_parameter("verify needs 'digest'."))?;
            let digest = crypto::field("digest", digest)?;
            json!({"value": crypto::verify(material, alg, &digest, value)?})
        }
        KeyOp::Encrypt | KeyOp::WrapKey => {
            let sealed = crypto::encrypt(material, alg, value, iv, aad)?;
            let mut out = json!({"kid": kid, "value": b64::encode(&sealed.value)});
            if let Some(iv) = sealed.iv {
                out["iv"] = json!(b64::encode(&iv));
            }
            if let Some(tag) = sealed.tag {
                out["tag"] = json!(b64::encode(&tag));
            }
            out
        }
        KeyOp::Decrypt | KeyOp::UnwrapKey => {
            let plain = crypto::decrypt(material, alg, value, iv, aad, input.tag.as_deref())?;
            json!({"kid": kid, "value": b64::encode(&plain)})
        }
        // A KEK's operation is the BYOK import itself (`PUT /keys/{name}`), not a route.
        KeyOp::Import => {
            return Err(ApiError::bad_parameter(
                "'import' is not an operation on a key: import a key with PUT /keys/{name}.",
            ));
        }
    })
}
