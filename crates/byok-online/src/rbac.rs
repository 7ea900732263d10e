//! Which built-in role grants a Key Vault data action, for the error of a 403
//! `ForbiddenByRbac` (its message names the action: `Action: 'Microsoft.KeyVault/vaults/keys/create/action'`).
//!
//! Least privilege: the Crypto Officer roles manage keys (create, import, update, delete,
//! backup, restore, rotate, purge, recover); the Crypto User roles use them (read, sign,
//! verify, encrypt, decrypt, wrap, unwrap). Managed HSM has its own local RBAC roles with the
//! same split.
//! Sources: Microsoft Learn, "Azure built-in roles for Key Vault data plane operations"
//! (articles/key-vault/general/rbac-guide.md) and "Managed HSM local RBAC built-in roles"
//! (articles/key-vault/managed-hsm/built-in-roles.md).

/// The role to assign for `action` (`Microsoft.KeyVault/vaults/keys/create/action`, ...):
/// `Key Vault Crypto Officer` or `Key Vault Crypto User` (for a Managed HSM action,
/// `Managed HSM Crypto Officer` / `Managed HSM Crypto User`).
pub fn role_for_action(action: &str) -> &'static str {
    let hsm = action
        .to_ascii_lowercase()
        .starts_with("microsoft.keyvault/managedhsm/");
    let op = action
        .rsplit_once("/keys/")
        .map(|(_, op)| op)
        .unwrap_or(action)
        .trim_end_matches("/action");
    let user = !action.contains("/deletedKeys/")
        && matches!(
            op,
            "read" | "sign" | "verify" | "encrypt" | "decrypt" | "wrap" | "unwrap"
        );
    match (hsm, user) {
        (false, false) => "Key Vault Crypto Officer",
        (false, true) => "Key Vault Crypto User",
        (true, false) => "Managed HSM Crypto Officer",
        (true, true) => "Managed HSM Crypto User",
    }
}

/// The action a 403 `ForbiddenByRbac` message names (`Action: '...'`).
pub fn action_in_message(message: &str) -> Option<&str> {
    let rest = message.split("Action: '").nth(1)?;
    rest.split('\'').next().filter(|a| !a.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managing_keys_needs_the_officer_and_using_them_the_user() {
        for (action, role) in [
            (
                "Microsoft.KeyVault/vaults/keys/create/action",
                "Key Vault Crypto Officer",
            ),
            (
                "Microsoft.KeyVault/vaults/keys/import/action",
                "Key Vault Crypto Officer",
            ),
            (
                "Microsoft.KeyVault/vaults/keys/delete",
                "Key Vault Crypto Officer",
            ),
            (
                "Microsoft.KeyVault/vaults/keys/update/action",
                "Key Vault Crypto Officer",
            ),
            (
                "Microsoft.KeyVault/vaults/deletedKeys/read",
                "Key Vault Crypto Officer",
            ),
            (
                "Microsoft.KeyVault/vaults/keys/read",
                "Key Vault Crypto User",
            ),
            (
                "Microsoft.KeyVault/vaults/keys/sign/action",
                "Key Vault Crypto User",
            ),
            (
                "Microsoft.KeyVault/vaults/keys/encrypt/action",
                "Key Vault Crypto User",
            ),
            (
                "Microsoft.KeyVault/managedHsm/keys/import/action",
                "Managed HSM Crypto Officer",
            ),
            (
                "Microsoft.KeyVault/managedHsm/keys/read",
                "Managed HSM Crypto User",
            ),
        ] {
            assert_eq!(role_for_action(action), role, "{action}");
        }
    }

    #[test]
    fn the_action_is_read_from_the_message() {
        let message = "Caller is not authorized to perform action on resource.\r\nCaller: appid=a;oid=b;iss=https://sts.windows.net/t/\r\nAction: 'Microsoft.KeyVault/vaults/keys/create/action'\r\nResource: '/x'\r\n";
        assert_eq!(
            action_in_message(message),
            Some("Microsoft.KeyVault/vaults/keys/create/action")
        );
        assert_eq!(action_in_message("no action here"), None);
    }
}
