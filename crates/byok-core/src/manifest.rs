//! The batch manifest (TOML): the target keys of one ceremony.
//!
//! ```toml
//! [[key]]
//! name = "payments-signing"      # the vault key name; also the HSM label unless hsm_label is set
//! kty = "RSA"                    # RSA | EC | oct
//! size = 3072                    # RSA and oct
//! ops = ["sign", "verify"]       # optional: Key Vault key operations
//! tags = { owner = "payments" }  # optional
//!
//! [[key]]
//! name = "ledger-ec"
//! kty = "EC"
//! curve = "P-384"
//! hsm_label = "ledger-2019"      # optional: package this existing HSM key instead of generating
//! ```

use crate::ops::KeyOp;
use crate::target::{KeyKind, Kty};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("the manifest is not valid TOML for this tool: {0}")]
    Toml(String),
    #[error("the manifest names no keys: add [[key]] tables")]
    Empty,
    #[error("key #{index} ({name}): {reason}")]
    Entry {
        index: usize,
        name: String,
        reason: String,
    },
    #[error("the key name `{0}` appears twice; each vault key name must be unique")]
    Duplicate(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    key: Vec<RawKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    name: String,
    kty: String,
    size: Option<u32>,
    curve: Option<String>,
    ops: Option<Vec<String>>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    hsm_label: Option<String>,
}

/// One target key of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestKey {
    pub name: String,
    pub kind: KeyKind,
    /// Key Vault key operations; the kind's defaults when the manifest names none.
    pub ops: Vec<KeyOp>,
    pub tags: BTreeMap<String, String>,
    /// The HSM label: the existing key to package, or the label of the key to generate.
    pub hsm_label: String,
    /// True when the manifest names an existing HSM key.
    pub existing: bool,
}

/// A `[[key]]` table's lines for `kind`, as [`parse`] reads them: `kty = "EC"` and
/// `curve = "P-384"`, or `kty = "RSA"` and `size = 3072` (the manifest states both, never a
/// default).
pub fn kind_fields(kind: KeyKind) -> String {
    match kind.curve() {
        Some(curve) => format!("kty = \"{}\"\ncurve = \"{curve}\"", kind.kty()),
        None => format!("kty = \"{}\"\nsize = {}", kind.kty(), kind.bits()),
    }
}

/// Reads and checks a manifest.
pub fn parse(text: &str) -> Result<Vec<ManifestKey>, ManifestError> {
    let raw: Raw = toml::from_str(text).map_err(|e| ManifestError::Toml(e.to_string()))?;
    if raw.key.is_empty() {
        return Err(ManifestError::Empty);
    }
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for (i, k) in raw.key.into_iter().enumerate() {
        let entry = |reason: String| ManifestError::Entry {
            index: i + 1,
            name: k.name.clone(),
            reason,
        };
        crate::kid::validate_key_name(&k.name).map_err(|e| entry(e.to_string()))?;
        if !names.insert(k.name.to_ascii_lowercase()) {
            return Err(ManifestError::Duplicate(k.name.clone()));
        }
        // The manifest is the ceremony's record: it states sizes and curves, no defaults.
        match Kty::from_jwk_kty(&k.kty) {
            Some(Kty::Rsa) if k.size.is_none() => {
                return Err(entry("RSA needs size = 2048, 3072 or 4096".into()));
            }
            Some(Kty::Ec) if k.curve.is_none() => {
                return Err(entry(
                    "EC needs curve = \"P-256\", \"P-384\", \"P-521\" or \"P-256K\"".into(),
                ));
            }
            None => return Err(entry(format!("kty `{}`: use RSA, EC or oct", k.kty))),
            _ => {}
        }
        let kind = KeyKind::from_parts(&k.kty, k.size, k.curve.as_deref())
            .map_err(|e| entry(e.to_string()))?;
        let ops = match &k.ops {
            Some(names) => KeyOp::parse_list(names).map_err(|e| entry(e.to_string()))?,
            None => KeyOp::defaults(kind.kty()).to_vec(),
        };
        KeyOp::check_for_target(kind.kty(), &ops).map_err(|e| entry(format!("{e} ({kind})")))?;
        out.push(ManifestKey {
            hsm_label: k.hsm_label.clone().unwrap_or_else(|| k.name.clone()),
            existing: k.hsm_label.is_some(),
            name: k.name,
            kind,
            ops,
            tags: k.tags,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_from_its_fields() {
        for kind in KeyKind::IMPORTABLE {
            let text = format!("[[key]]\nname = \"k\"\n{}\n", kind_fields(kind));
            assert_eq!(parse(&text).unwrap()[0].kind, kind, "{text}");
        }
        assert_eq!(
            kind_fields(KeyKind::Ec {
                curve: crate::target::Curve::P256
            }),
            "kty = \"EC\"\ncurve = \"P-256\""
        );
    }

    #[test]
    fn reads_and_checks() {
        let keys = parse(
            r#"
            [[key]]
            name = "a"
            kty = "RSA"
            size = 3072
            tags = { owner = "x" }
            [[key]]
            name = "b"
            kty = "EC"
            curve = "P-384"
            ops = ["sign"]
            hsm_label = "old-b"
            [[key]]
            name = "c"
            kty = "oct"
            "#,
        )
        .unwrap();
        assert_eq!(keys.len(), 3);
        assert_eq!(keys[0].kind, KeyKind::Rsa { bits: 3072 });
        assert_eq!(keys[0].hsm_label, "a");
        assert!(!keys[0].existing);
        assert_eq!(keys[1].hsm_label, "old-b");
        assert!(keys[1].existing);
        assert_eq!(keys[1].ops, [KeyOp::Sign]);
        assert_eq!(keys[2].kind, KeyKind::Oct { bits: 256 });
        assert_eq!(keys[2].ops, KeyOp::defaults(Kty::Oct));
    }

    #[test]
    fn each_fault_is_named() {
        let cases = [
            ("", "names no keys"),
            ("[[key]]\nname = \"a\"\nkty = \"RSA\"", "RSA needs size"),
            ("[[key]]\nname = \"a\"\nkty = \"EC\"", "EC needs curve"),
            (
                "[[key]]\nname = \"a\"\nkty = \"EC\"\ncurve = \"P-192\"",
                "not a curve",
            ),
            (
                "[[key]]\nname = \"a\"\nkty = \"RSA\"\nsize = 1024",
                "cannot be imported",
            ),
            (
                "[[key]]\nname = \"a_b\"\nkty = \"oct\"",
                "not a valid key name",
            ),
            (
                "[[key]]\nname = \"a\"\nkty = \"EC\"\ncurve = \"P-256\"\nops = [\"encrypt\"]",
                "not valid for EC",
            ),
            (
                "[[key]]\nname = \"a\"\nkty = \"oct\"\n[[key]]\nname = \"A\"\nkty = \"oct\"",
                "appears twice",
            ),
            (
                "[[key]]\nname = \"a\"\nkty = \"oct\"\ncolour = \"red\"",
                "unknown field",
            ),
            ("[[key]]\nname = \"a\"\nkty = \"DSA\"", "use RSA, EC or oct"),
        ];
        for (text, needle) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
