//! The service's checks, with the messages it answers: key names, key types per flavor, sizes
//! and curves, key operations.

use crate::error::{ApiError, ApiResult};
use crate::flavor::{Flavor, Sku};
use crate::model::AttributesIn;
use byok_core::KeyOp;
use byok_core::ops::OpError;
use byok_core::target::{Curve, EncodingError, KeyKind, KeyType, Kty};
use serde_json::Value;

/// The RSA size Azure's create gives a key when the request names none. This is the
/// service's default, not the tool's: byok-core's `KeyKind::DEFAULT_RSA_BITS` (what a
/// ceremony generates) is larger.
pub const SERVICE_DEFAULT_RSA_BITS: u32 = 2048;

pub fn name(name: &str) -> ApiResult<()> {
    byok_core::kid::validate_key_name(name).map_err(|e| ApiError::bad_parameter(e.to_string()))
}

/// Reads a request's `kty` for this flavor: the type the key is stored under (always HSM on
/// Managed HSM; oct keys exist on Managed HSM only).
pub fn kty(kty: &str, flavor: Flavor) -> ApiResult<KeyType> {
    let k = Kty::from_jwk_kty(kty).ok_or_else(|| {
        ApiError::bad_parameter(format!(
            "The kty '{kty}' is not valid: use RSA, RSA-HSM, EC, EC-HSM or oct-HSM."
        ))
    })?;
    let hsm = kty.ends_with("-HSM");
    match (k, flavor) {
        (Kty::Oct, Flavor::Vault) => Err(ApiError::bad_parameter(
            "oct-HSM keys are supported on Managed HSM only.",
        )),
        (Kty::Oct, _) if kty != "oct-HSM" && kty != "oct" => Err(ApiError::bad_parameter(format!(
            "The kty '{kty}' is not valid."
        ))),
        (_, Flavor::ManagedHsm) => Ok(KeyType::hsm(k)),
        (_, Flavor::Vault) => Ok(KeyType { kty: k, hsm }),
    }
}

/// A Standard vault holds no HSM keys. The message is the service's (Azure/azure-sdk-for-net
/// issue #6551, Azure/azure-sdk-for-js issue #18267, MicrosoftDocs/azure-docs issue #63888);
/// its status and code were not recorded (docs/azure-behaviour.md 5a). Inferred: 403
/// `Forbidden`, because the request is well formed and refused for what the vault is, as the
/// service's other "not allowed" refusals are 403s (`KeyManagedByKeyVault`: "Operation
/// \"delete\" is not allowed ..."). A Managed HSM has no tier.
pub fn sku(stored: KeyType, flavor: Flavor, sku: Sku) -> ApiResult<()> {
    if flavor == Flavor::Vault && sku == Sku::Standard && stored.hsm {
        return Err(ApiError::forbidden(
            "Hardware key operation not allowed on standard vault",
        ));
    }
    Ok(())
}

/// An exportable key needs a release policy, and only an exportable key may have one. A
/// vault answers "AKV.SKR.1004: Exportable keys must have release policy." and "AKV.SKR.1005:
/// Non-exportable keys must not have release policy." (Azure/azure-sdk-for-js recordings of
/// Dec 2021, docs/azure-behaviour.md 7b); a Managed HSM the older texts without code or full
/// stop (R-MHSM-NOPOLICY). The policy is required on a key's first version only: a new
/// version of an exportable key keeps the policy it has (`first_version` false). `exportable`
/// left out counts as false (stricter).
pub fn release_policy(
    flavor: Flavor,
    attributes: Option<&AttributesIn>,
    policy: Option<&Value>,
    first_version: bool,
) -> ApiResult<()> {
    let exportable = attributes.and_then(|a| a.exportable).unwrap_or(false);
    let (missing, forbidden) = match flavor {
        Flavor::Vault => (
            "AKV.SKR.1004: Exportable keys must have release policy.",
            "AKV.SKR.1005: Non-exportable keys must not have release policy.",
        ),
        Flavor::ManagedHsm => (
            "Exportable keys must have release policy",
            "Non-exportable keys must not have release policy",
        ),
    };
    match (exportable, policy.is_some()) {
        (true, false) if first_version => Err(ApiError::bad_parameter(missing)),
        (false, true) => Err(ApiError::bad_parameter(forbidden)),
        _ => Ok(()),
    }
}

/// The `kty` (and `crv`) of a BYOK import (`key_hsm`). The BYOK specification
/// (MicrosoftDocs/azure-security-docs `articles/key-vault/keys/byok-specification.md`)
/// documents only `RSA-HSM` and `EC-HSM` (AES: Managed HSM only) and says "To import an EC
/// key, you must specify key type and the curve name." The errors' wording is inferred (no
/// recording found): 400 `BadParameter` naming the field.
pub fn byok_kty(kty: &str, crv: Option<&str>, flavor: Flavor) -> ApiResult<()> {
    match kty {
        "RSA-HSM" => Ok(()),
        "EC-HSM" if crv.is_none() => Err(ApiError::bad_parameter(
            "Property 'crv' is required: to import an EC key with key_hsm, you must specify \
             the key type and the curve name.",
        )),
        "EC-HSM" => Ok(()),
        "oct-HSM" if flavor == Flavor::ManagedHsm => Ok(()),
        "oct-HSM" => Err(ApiError::bad_parameter(
            "oct-HSM keys are supported on Managed HSM only.",
        )),
        _ => Err(ApiError::bad_parameter(format!(
            "The kty '{kty}' cannot be imported with key_hsm: property 'kty' must be RSA-HSM, \
             EC-HSM or (on Managed HSM) oct-HSM."
        ))),
    }
}

pub fn public_exponent(e: Option<u32>) -> ApiResult<()> {
    match e {
        Some(e) if e != 65537 => Err(ApiError::bad_parameter(
            "Only the public exponent 65537 is supported.",
        )),
        _ => Ok(()),
    }
}

/// The kind a create request asks for. The curve must be spelled as Key Vault spells it
/// (`P-256`, not `secp256r1`). As the emulator always has, a create ignores `key_size` on an
/// EC key and `crv` on an RSA or oct key, which `KeyKind::from_parts` would refuse.
pub fn created_kind(kty: Kty, size: Option<u32>, crv: Option<&str>) -> ApiResult<KeyKind> {
    let (size, crv) = match kty {
        Kty::Rsa => (Some(size.unwrap_or(SERVICE_DEFAULT_RSA_BITS)), None),
        Kty::Oct => (size, None),
        Kty::Ec => (None, crv),
    };
    if let Some(crv) = crv.filter(|c| !Curve::ALL.iter().any(|k| k.name() == *c)) {
        return Err(unknown_curve(crv));
    }
    KeyKind::from_parts(kty.hsm_name(), size, crv).map_err(|e| match e {
        EncodingError::UnsupportedKind { kind } => {
            ApiError::bad_parameter(format!("The key size or curve of {kind} is not supported."))
        }
        EncodingError::UnknownCurve { name } => unknown_curve(&name),
        other => ApiError::bad_parameter(other.to_string()),
    })
}

fn unknown_curve(crv: &str) -> ApiError {
    ApiError::bad_parameter(format!(
        "The curve '{crv}' is not valid: use P-256, P-384, P-521 or P-256K."
    ))
}

/// The operations a new key gets: those named (each checked), or all its type supports.
pub fn requested_ops(names: Option<&[String]>, kty: Kty) -> ApiResult<Vec<KeyOp>> {
    let Some(names) = names else {
        return Ok(KeyOp::defaults(kty).to_vec());
    };
    let ops = names
        .iter()
        .map(|name| name.parse::<KeyOp>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(op_error)?;
    KeyOp::check_for(kty, &ops).map_err(op_error)?;
    Ok(ops)
}

/// [`requested_ops`] for an imported key, which cannot be a KEK.
pub fn imported_ops(names: Option<&[String]>, kty: Kty) -> ApiResult<Vec<KeyOp>> {
    let ops = requested_ops(names, kty)?;
    if ops.contains(&KeyOp::Import) {
        return Err(op_error(OpError::ImportOnTarget));
    }
    Ok(ops)
}

/// A KEK stays a KEK and no other key becomes one.
pub fn ops_change(old: &[KeyOp], new: &[KeyOp]) -> ApiResult<()> {
    let kek = [KeyOp::Import];
    if (old == kek || new == kek) && old != new {
        return Err(ApiError::bad_parameter(
            "The 'import' operation of a KEK cannot be added or removed.",
        ));
    }
    Ok(())
}

fn op_error(e: OpError) -> ApiError {
    ApiError::bad_parameter(match e {
        OpError::Unknown { name } => format!("Invalid key operation: {name}"),
        OpError::NotValidFor { op, kty, .. } => {
            format!("Key operation '{op}' is not valid for {kty} keys.")
        }
        OpError::ImportNotAlone => {
            "Key operation 'import' cannot be combined with any other operation.".into()
        }
        OpError::ImportNotRsa => {
            "Key operation 'import' is only valid for RSA-HSM keys (a Key Exchange Key).".into()
        }
        OpError::ImportOnTarget => "An imported key cannot carry the 'import' operation.".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use byok_core::target::Curve;

    fn message(r: ApiResult<impl std::fmt::Debug>) -> String {
        r.expect_err("refused").message
    }

    #[test]
    fn create_reads_kinds_with_the_service_defaults_and_exact_curve_names() {
        assert_eq!(
            created_kind(Kty::Rsa, None, None).unwrap(),
            KeyKind::Rsa { bits: 2048 }
        );
        assert_eq!(
            created_kind(Kty::Ec, Some(4096), None).unwrap(),
            KeyKind::Ec { curve: Curve::P256 }
        );
        assert_eq!(
            created_kind(Kty::Rsa, Some(3072), Some("P-384")).unwrap(),
            KeyKind::Rsa { bits: 3072 }
        );
        assert_eq!(
            created_kind(Kty::Oct, None, None).unwrap(),
            KeyKind::Oct { bits: 256 }
        );
        assert_eq!(
            message(created_kind(Kty::Ec, None, Some("secp256r1"))),
            "The curve 'secp256r1' is not valid: use P-256, P-384, P-521 or P-256K."
        );
        assert_eq!(
            message(created_kind(Kty::Rsa, Some(1024), None)),
            "The key size or curve of RSA 1024 is not supported."
        );
    }

    #[test]
    fn key_operations_answer_the_service_messages() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            requested_ops(None, Kty::Ec).unwrap(),
            [KeyOp::Sign, KeyOp::Verify]
        );
        assert_eq!(
            requested_ops(Some(&names(&["wrapKey", "sign"])), Kty::Rsa).unwrap(),
            [KeyOp::WrapKey, KeyOp::Sign]
        );
        for (ops, kty, want) in [
            (&["sign", "fly"][..], Kty::Rsa, "Invalid key operation: fly"),
            (&["wrapkey"], Kty::Rsa, "Invalid key operation: wrapkey"),
            (
                &["import", "sign"],
                Kty::Rsa,
                "Key operation 'import' cannot be combined with any other operation.",
            ),
            (
                &["import"],
                Kty::Ec,
                "Key operation 'import' is only valid for RSA-HSM keys (a Key Exchange Key).",
            ),
            (
                &["sign", "encrypt"],
                Kty::Ec,
                "Key operation 'encrypt' is not valid for EC keys.",
            ),
        ] {
            assert_eq!(message(requested_ops(Some(&names(ops)), kty)), want);
        }
        assert_eq!(
            message(imported_ops(Some(&names(&["import"])), Kty::Rsa)),
            "An imported key cannot carry the 'import' operation."
        );
        let kek = [KeyOp::Import];
        assert!(ops_change(&kek, &kek).is_ok());
        assert!(ops_change(&[KeyOp::Sign], &[KeyOp::Verify]).is_ok());
        assert!(ops_change(&kek, &[KeyOp::Sign]).is_err());
        assert!(ops_change(&[KeyOp::Sign], &kek).is_err());
    }
}
