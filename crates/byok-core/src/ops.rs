//! Key Vault key operations (`key_ops`): one list for every binary, the manifest and the
//! emulator.
//!
//! The names are Key Vault's, case-sensitive as the REST API spells them. Which operations a
//! key type allows, and the rule that `import` (a Key Exchange Key's only operation) stands
//! alone on an RSA key, live here too.

use crate::target::Kty;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One key operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum KeyOp {
    #[serde(rename = "encrypt")]
    Encrypt,
    #[serde(rename = "decrypt")]
    Decrypt,
    #[serde(rename = "sign")]
    Sign,
    #[serde(rename = "verify")]
    Verify,
    #[serde(rename = "wrapKey")]
    WrapKey,
    #[serde(rename = "unwrapKey")]
    UnwrapKey,
    /// A Key Exchange Key's operation: it imports `.byok` packages and does nothing else.
    #[serde(rename = "import")]
    Import,
}

/// Why a list of key operations was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum OpError {
    #[error(
        "`{name}` is not a key operation: use encrypt, decrypt, sign, verify, wrapKey, unwrapKey \
         (or import, for a Key Exchange Key)"
    )]
    Unknown { name: String },
    #[error("key operation `{op}` is not valid for {kty} keys; {kty} keys allow {allowed}")]
    NotValidFor {
        op: KeyOp,
        kty: Kty,
        allowed: String,
    },
    #[error("key operation `import` cannot be combined with any other operation")]
    ImportNotAlone,
    #[error("key operation `import` is only valid for an RSA-HSM Key Exchange Key")]
    ImportNotRsa,
    #[error(
        "key operation `import` belongs to a Key Exchange Key; a target key cannot carry it: \
         drop it from the list"
    )]
    ImportOnTarget,
}

impl KeyOp {
    pub const ALL: [KeyOp; 7] = [
        KeyOp::Encrypt,
        KeyOp::Decrypt,
        KeyOp::Sign,
        KeyOp::Verify,
        KeyOp::WrapKey,
        KeyOp::UnwrapKey,
        KeyOp::Import,
    ];

    /// Key Vault's name: `encrypt`, `wrapKey`, ...
    pub fn name(self) -> &'static str {
        match self {
            KeyOp::Encrypt => "encrypt",
            KeyOp::Decrypt => "decrypt",
            KeyOp::Sign => "sign",
            KeyOp::Verify => "verify",
            KeyOp::WrapKey => "wrapKey",
            KeyOp::UnwrapKey => "unwrapKey",
            KeyOp::Import => "import",
        }
    }

    /// What a target key of this type may do, which is also what it gets when none are named.
    pub fn defaults(kty: Kty) -> &'static [KeyOp] {
        use KeyOp::*;
        match kty {
            Kty::Rsa => &[Encrypt, Decrypt, Sign, Verify, WrapKey, UnwrapKey],
            Kty::Ec => &[Sign, Verify],
            Kty::Oct => &[Encrypt, Decrypt, WrapKey, UnwrapKey],
        }
    }

    /// Reads Key Vault names; each item may itself hold a comma- or space-separated list, so
    /// `["sign,verify"]`, `["sign verify"]` and `["sign", "verify"]` read alike. Duplicates
    /// collapse; the order is kept.
    pub fn parse_list<S: AsRef<str>>(items: &[S]) -> Result<Vec<KeyOp>, OpError> {
        let mut out = Vec::new();
        for item in items {
            for name in item
                .as_ref()
                .split([',', ' '])
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                let op = name.parse::<KeyOp>()?;
                if !out.contains(&op) {
                    out.push(op);
                }
            }
        }
        Ok(out)
    }

    /// Checks a list as the service does: `import` alone and on RSA only, every other
    /// operation one that the key type supports.
    pub fn check_for(kty: Kty, ops: &[KeyOp]) -> Result<(), OpError> {
        if ops.contains(&KeyOp::Import) {
            if ops.len() > 1 {
                return Err(OpError::ImportNotAlone);
            }
            if kty != Kty::Rsa {
                return Err(OpError::ImportNotRsa);
            }
            return Ok(());
        }
        let allowed = Self::defaults(kty);
        match ops.iter().find(|op| !allowed.contains(op)) {
            Some(op) => Err(OpError::NotValidFor {
                op: *op,
                kty,
                allowed: Self::names(allowed).join(", "),
            }),
            None => Ok(()),
        }
    }

    /// Checks the operations of a target key (one being generated, packaged or imported):
    /// [`KeyOp::check_for`], and never `import`.
    pub fn check_for_target(kty: Kty, ops: &[KeyOp]) -> Result<(), OpError> {
        if ops.contains(&KeyOp::Import) {
            return Err(OpError::ImportOnTarget);
        }
        Self::check_for(kty, ops)
    }

    /// The names, for a request body or a report.
    pub fn names(ops: &[KeyOp]) -> Vec<String> {
        ops.iter().map(|op| op.name().to_string()).collect()
    }
}

impl fmt::Display for KeyOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyOp {
    type Err = OpError;
    /// Exactly Key Vault's spelling (`wrapKey`, not `wrapkey`), as the service demands.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|op| op.name() == s)
            .ok_or_else(|| OpError::Unknown {
                name: s.chars().take(40).collect(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_lists_read_in_every_form() {
        for op in KeyOp::ALL {
            assert_eq!(op.name().parse::<KeyOp>(), Ok(op));
            assert_eq!(
                serde_json::to_string(&op).unwrap(),
                format!("\"{}\"", op.name())
            );
        }
        let want = vec![KeyOp::Sign, KeyOp::Verify];
        assert_eq!(KeyOp::parse_list(&["sign,verify"]), Ok(want.clone()));
        assert_eq!(KeyOp::parse_list(&["sign verify"]), Ok(want.clone()));
        assert_eq!(KeyOp::parse_list(&["sign", "verify", "sign"]), Ok(want));
        assert!(matches!(
            KeyOp::parse_list(&["wrapkey"]),
            Err(OpError::Unknown { .. })
        ));
    }

    #[test]
    fn the_service_rules_hold() {
        assert_eq!(KeyOp::check_for(Kty::Rsa, &[KeyOp::Import]), Ok(()));
        assert_eq!(
            KeyOp::check_for(Kty::Rsa, &[KeyOp::Import, KeyOp::Sign]),
            Err(OpError::ImportNotAlone)
        );
        assert_eq!(
            KeyOp::check_for(Kty::Ec, &[KeyOp::Import]),
            Err(OpError::ImportNotRsa)
        );
        let err = KeyOp::check_for(Kty::Ec, &[KeyOp::Encrypt]).unwrap_err();
        assert!(err.to_string().contains("allow sign, verify"), "{err}");
        assert_eq!(
            KeyOp::check_for_target(Kty::Rsa, &[KeyOp::Import]),
            Err(OpError::ImportOnTarget)
        );
        for kty in [Kty::Rsa, Kty::Ec, Kty::Oct] {
            assert_eq!(KeyOp::check_for(kty, KeyOp::defaults(kty)), Ok(()));
        }
    }
}
