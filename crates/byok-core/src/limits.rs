//! Key Vault's and Managed HSM's published request limits: the one table that kv-emulator's
//! `--throttle azure` enforces and byok-online's pacing keeps under.
//!
//! Source: Microsoft Learn, "Azure Key Vault service limits"
//! (https://learn.microsoft.com/en-us/azure/key-vault/general/service-limits; the include
//! `MicrosoftDocs/azure-docs` `includes/key-vault-limits.md`), docs/azure-behaviour.md 6a.
//!
//! **Key Vault** (per vault, per 10 seconds): HSM-key CREATE 10, software-key CREATE 20; all
//! other transactions 2,000 on an RSA 2048 or EC HSM key, 500 on RSA 3072, 250 on RSA 4096,
//! and twice that on a software key. "The throttling thresholds are weighted, and enforcement
//! is on their sum": "an Azure Key Vault client can do only one of the following operations
//! before it encounters a 429: 4,000 RSA 2,048-bit software-key GET transactions; 2,000 RSA
//! 2,048-bit HSM-key GET transactions; 250 RSA 4,096-bit HSM-key GET transactions; 248 RSA
//! 4,096-bit HSM-key GET transactions and 16 RSA 2,048-bit HSM-key GET transactions". So there
//! is ONE budget for all the vault's key transactions, HSM and software alike: 4,000 units, a
//! transaction costing 4,000 / its limit (an RSA 2048 software-key GET 1, an HSM one 2, an RSA
//! 4096 HSM one 16). Creates likewise share one budget of 20 units (an HSM-key create 2).
//!
//! **Managed HSM** (per HSM instance, per second, the same include): Create Key 1; Delete Key,
//! Purge Key 10 each (Backup, Restore too); Get Key Information 1,100. The page lists these
//! per key type (RSA 2048/3072/4096, EC, AES) with the same values. Cryptographic operations
//! are not throttled ("Managed HSM does not throttle on cryptographic operation transactions",
//! the Managed HSM scaling guidance); operations the page does not list (recover) neither.

use crate::target::KeyKind;
use std::time::Duration;

/// Key Vault's throttling window.
pub const KV_WINDOW: Duration = Duration::from_secs(10);
/// Managed HSM's: its limits are per second.
pub const MHSM_WINDOW: Duration = Duration::from_secs(1);

/// Key Vault: the create budget per window, in units (a software-key create costs 1, an
/// HSM-key create 2: 20 software or 10 HSM creates).
pub const KV_CREATE_UNITS: u32 = 20;
/// Key Vault: the budget of every other key transaction per window, in units (an RSA 2048 or
/// EC software-key transaction costs 1: 4,000 of them).
pub const KV_OTHER_UNITS: u32 = 4000;

/// Key Vault: what a create or import costs, in [`KV_CREATE_UNITS`].
pub fn kv_create_cost(hsm: bool) -> u32 {
    if hsm { 2 } else { 1 }
}

/// Key Vault: what any other transaction on a key of `kind` costs, in [`KV_OTHER_UNITS`]:
/// 4,000 / the table's limit for it (RSA 2048 and EC: 4,000 software, 2,000 HSM; RSA 3072:
/// 1,000 / 500; RSA 4096: 500 / 250).
pub fn kv_other_cost(kind: KeyKind, hsm: bool) -> u32 {
    let software = match kind {
        KeyKind::Rsa { bits } if bits > 3072 => 8,
        KeyKind::Rsa { bits } if bits > 2048 => 4,
        _ => 1,
    };
    if hsm { software * 2 } else { software }
}

/// A Managed HSM operation the page limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MhsmOperation {
    /// Create Key (an import creates a key too).
    Create,
    /// Delete Key.
    Delete,
    /// Purge Key.
    Purge,
    /// Get Key Information (a key, a version, a list).
    Get,
}

/// Managed HSM: operations of this kind allowed per second per HSM instance.
pub fn mhsm_per_second(op: MhsmOperation) -> u32 {
    match op {
        MhsmOperation::Create => 1,
        MhsmOperation::Delete | MhsmOperation::Purge => 10,
        MhsmOperation::Get => 1100,
    }
}

/// Which limited Managed HSM operation a request is, from its method and path (the keys
/// API's: `/keys/{name}/create`, `PUT /keys/{name}`, `DELETE /keys/{name}`,
/// `DELETE /deletedkeys/{name}`, `GET /keys...`); None for the rest, which is not limited.
pub fn mhsm_operation(method: &str, path: &str) -> Option<MhsmOperation> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (method, segments.as_slice()) {
        ("POST", ["keys", _, "create"]) | ("PUT", ["keys", _]) => Some(MhsmOperation::Create),
        ("DELETE", ["keys", _]) => Some(MhsmOperation::Delete),
        ("DELETE", ["deletedkeys", _]) => Some(MhsmOperation::Purge),
        ("GET", ["keys", ..]) => Some(MhsmOperation::Get),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Curve;

    #[test]
    fn the_pages_examples_fill_the_one_budget_exactly() {
        let rsa = |bits| KeyKind::Rsa { bits };
        // 4,000 RSA 2048 software-key GETs; 2,000 HSM ones; 250 RSA 4096 HSM ones;
        // 248 RSA 4096 HSM ones and 16 RSA 2048 HSM ones.
        assert_eq!(4000 * kv_other_cost(rsa(2048), false), KV_OTHER_UNITS);
        assert_eq!(2000 * kv_other_cost(rsa(2048), true), KV_OTHER_UNITS);
        assert_eq!(250 * kv_other_cost(rsa(4096), true), KV_OTHER_UNITS);
        assert_eq!(
            248 * kv_other_cost(rsa(4096), true) + 16 * kv_other_cost(rsa(2048), true),
            KV_OTHER_UNITS
        );
        assert_eq!(500 * kv_other_cost(rsa(3072), true), KV_OTHER_UNITS);
        let ec = KeyKind::Ec { curve: Curve::P521 };
        assert_eq!(2000 * kv_other_cost(ec, true), KV_OTHER_UNITS);
        assert_eq!(10 * kv_create_cost(true), KV_CREATE_UNITS);
        assert_eq!(20 * kv_create_cost(false), KV_CREATE_UNITS);
    }

    #[test]
    fn managed_hsm_operations_are_told_by_method_and_path() {
        use MhsmOperation::*;
        for (method, path, want) in [
            ("POST", "/keys/k/create", Some(Create)),
            ("PUT", "/keys/k", Some(Create)),
            ("DELETE", "/keys/k", Some(Delete)),
            ("DELETE", "/deletedkeys/k", Some(Purge)),
            ("GET", "/keys/k/0123", Some(Get)),
            ("GET", "/keys", Some(Get)),
            ("POST", "/keys/k/0123/sign", None),
            ("POST", "/deletedkeys/k/recover", None),
            ("GET", "/deletedkeys/k", None),
        ] {
            assert_eq!(mhsm_operation(method, path), want, "{method} {path}");
        }
        assert_eq!(mhsm_per_second(Create), 1);
        assert_eq!(mhsm_per_second(Purge), 10);
        assert_eq!(mhsm_per_second(Get), 1100);
    }
}
