//! `import`: a `.byok` into the vault, in three steps.
//!
//! [`ImportPlan::prepare`] reads the package, its sidecar, the expected public key and the
//! release policy, and makes every check that needs no network: the key name, the cloud, the
//! KEK's vault, the sidecar's hash, the key kind, operations and times. A refused import sends
//! nothing. [`ImportPlan::check_kek`] then reads the KEK in the vault and checks its policy,
//! and the name is read to see whether it exists ([`crate::existing`]); only then does
//! [`ImportPlan::send`] upload (never in a dry run), and the vault's public key is compared
//! with the one the HSM reported.

use crate::connect::{ConnectOptions, Vault};
use crate::error::{KekProblem, KeyMismatch, OnlineError, Result};
use crate::existing::{self, WriteOptions};
use crate::vault::{ImportRequest, KeyView};
use azure_security_keyvault_keys::models::KeyReleasePolicy;
use byok_cli_common::files;
use byok_cli_common::output::as_display;
use byok_cli_common::{Document, KindFlags};
use byok_core::kid::{Cloud, VaultKind};
use byok_core::package::MAX_PACKAGE_BYTES;
use byok_core::sidecar::{self, Sidecar};
use byok_core::target::{KeyKind, Kty};
use byok_core::{Fingerprint, KeyId, KeyOp, KeyTransferPackage, TargetPublicKey, VaultUrl};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

/// The tag that ties a vault key to the package it came from: every import (single or
/// batch) sets it to the SHA-256 of the `.byok`, so `show` tells which package a key holds
/// and a batch rerun knows what it already imported.
pub const BYOK_SHA256_TAG: &str = "byok-sha256";

/// Largest sidecar, public key PEM or release policy we read.
pub(crate) const MAX_SMALL_FILE: u64 = 64 * 1024;

/// What `import` takes.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub name: String,
    pub byok_file: PathBuf,
    /// Default: the sidecar beside `byok_file` when it exists.
    pub sidecar: Option<PathBuf>,
    /// `--kty`, `--size`, `--curve`: what the package holds, checked against its sidecar.
    pub kind: KindFlags,
    /// Default: every operation the key type allows.
    pub ops: Option<Vec<KeyOp>>,
    pub tags: Vec<(String, String)>,
    pub disabled: bool,
    pub not_before: Option<String>,
    pub expires: Option<String>,
    pub exportable: bool,
    pub release_policy: Option<PathBuf>,
    pub expect_public_key: Option<PathBuf>,
}

/// What `import` reports (`byok-online.import/1`).
#[derive(Debug, Serialize)]
pub struct ImportReport {
    /// The key's name in the vault.
    pub name: String,
    /// Nothing was written: `action` says what would have been.
    pub dry_run: bool,
    /// What was done (`imported k1 (RSA 3072) under KEK ...`), or would be in a dry run.
    pub action: String,
    /// The name existed, so the import added (or would add) a version to it.
    pub new_version: bool,
    /// What the package holds: `RSA 3072`, `EC P-256`, `AES 256`.
    #[serde(serialize_with = "as_display")]
    pub kind: KeyKind,
    #[serde(serialize_with = "as_display")]
    pub kek_kid: KeyId,
    pub byok_sha256: Fingerprint,
    /// `matches`, `not checked (...)` with the reason (an AES key, no expected key, a dry run).
    pub public_key_check: String,
    /// The imported key as the vault shows it; null in a dry run.
    pub key: Option<KeyView>,
    /// What the check before the upload ignored in a package from another tool (a missing
    /// `generator`, members the format does not define), as Azure ignores them; absent when
    /// nothing was.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub package_ignored: Vec<String>,
}

impl Document for ImportReport {
    const SCHEMA: &'static str = "byok-online.import/1";
}

/// An import that passed every local check.
#[derive(Debug)]
pub struct ImportPlan {
    name: String,
    bytes: Vec<u8>,
    package: KeyTransferPackage,
    byok_sha256: Fingerprint,
    sidecar: Option<Sidecar>,
    kind: KeyKind,
    ops: Vec<KeyOp>,
    expected: Option<TargetPublicKey>,
    tags: HashMap<String, String>,
    enabled: bool,
    not_before: Option<OffsetDateTime>,
    expires: Option<OffsetDateTime>,
    exportable: bool,
    release_policy: Option<KeyReleasePolicy>,
    /// What reading the package tolerated ([`byok_core::package::Tolerated::notes`]).
    ignored: Vec<String>,
}

/// `import`: every local check first (nothing is sent if one fails), then the KEK and the
/// name in the vault, then the upload (not in a dry run).
pub async fn import(
    conn: &ConnectOptions,
    opts: &ImportOptions,
    write: WriteOptions,
) -> Result<ImportReport> {
    let mut plan = ImportPlan::prepare(opts, &conn.vault_url()?)?;
    let byok_sha256 = *plan.byok_sha256();
    let sha = byok_sha256.to_hex();
    plan.tag(BYOK_SHA256_TAG, &sha);
    let vault = conn.connect()?;
    plan.check_kek(&vault).await?;
    let existing = existing::current(&vault, &plan.name).await?;
    if let Some(key) = &existing {
        let same = (key.tags.get(BYOK_SHA256_TAG) == Some(&sha)).then_some(
            "its current version came from this same package (byok-sha256 tag): the import \
             already happened; prove it with `byok-online verify`",
        );
        write.on_existing.allow(key, same)?;
    }
    let action = plan.action(write.dry_run, existing.as_ref());
    let mut report = ImportReport {
        name: plan.name.clone(),
        dry_run: write.dry_run,
        action,
        new_version: existing.is_some(),
        kind: plan.kind,
        kek_kid: plan.package.kid().clone(),
        byok_sha256,
        public_key_check: "not checked (dry run: nothing was imported)".into(),
        key: None,
        package_ignored: plan.ignored.clone(),
    };
    if !write.dry_run {
        let key = plan.send(&vault).await?;
        report.public_key_check = plan.public_key_check(&key)?;
        report.key = Some(key);
    }
    Ok(report)
}

impl ImportPlan {
    /// Reads the files and makes every check that needs no network, for an import into
    /// `vault`.
    pub fn prepare(opts: &ImportOptions, vault: &VaultUrl) -> Result<ImportPlan> {
        byok_core::kid::validate_key_name(&opts.name)?;
        let bytes = read_package(&opts.byok_file)?;
        // A vendor tool's package may lack the informational `generator` or carry members
        // of its own: Azure reads it, so the check does too, and says what it ignored.
        let (package, tolerated) = KeyTransferPackage::parse_tolerant(&bytes)?;
        let ignored = tolerated.notes();
        for note in &ignored {
            tracing::warn!("package {}: {note}", opts.byok_file.display());
        }
        check_vault(&package, vault)?;
        let byok_sha256 = Fingerprint::of_bytes(&bytes);
        let sidecar = read_sidecar(opts, &byok_sha256, &package.kid().to_string())?;
        let kind = kind_of(opts, sidecar.as_ref())?;
        tracing::info!(
            "package {}: sha256 {byok_sha256}, holds {kind}, for KEK {}{}",
            opts.byok_file.display(),
            package.kid(),
            if sidecar.is_some() {
                ", sidecar agrees"
            } else {
                ", no sidecar"
            }
        );
        let ops = match &opts.ops {
            Some(ops) => ops.clone(),
            None => KeyOp::defaults(kind.kty()).to_vec(),
        };
        KeyOp::check_for_target(kind.kty(), &ops)?;
        let expected = match (&opts.expect_public_key, &sidecar) {
            (Some(path), _) => Some(TargetPublicKey::from_pem(&files::read_text_limited(
                path,
                MAX_SMALL_FILE,
            )?)?),
            (None, Some(s)) => s.public_key.clone(),
            (None, None) => None,
        };
        let release_policy = opts
            .release_policy
            .as_deref()
            .map(read_release_policy)
            .transpose()?;
        if opts.exportable && release_policy.is_none() {
            return Err(OnlineError::Usage(
                "--exportable needs --release-policy FILE".into(),
            ));
        }
        Ok(ImportPlan {
            name: opts.name.clone(),
            bytes,
            package,
            byok_sha256,
            sidecar,
            kind,
            ops,
            expected,
            tags: opts.tags.iter().cloned().collect(),
            enabled: !opts.disabled,
            not_before: parse_time("--not-before", opts.not_before.as_deref())?,
            expires: parse_time("--expires", opts.expires.as_deref())?,
            exportable: opts.exportable,
            release_policy,
            ignored,
        })
    }

    /// The SHA-256 of the `.byok`.
    pub fn byok_sha256(&self) -> &Fingerprint {
        &self.byok_sha256
    }

    /// What the package holds.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The sidecar read, if any.
    pub fn sidecar(&self) -> Option<&Sidecar> {
        self.sidecar.as_ref()
    }

    /// Adds a tag to the imported key.
    pub fn tag(&mut self, key: &str, value: &str) {
        self.tags.insert(key.into(), value.into());
    }

    /// The key's name in the vault.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the import does (or, in a dry run, would do) to the name, `existing` or new.
    pub fn action(&self, dry_run: bool, existing: Option<&KeyView>) -> String {
        let (name, kind, kek) = (&self.name, self.kind, self.package.kid());
        match (dry_run, existing) {
            (true, None) => format!("would import {name} ({kind}) under KEK {kek}"),
            (false, None) => format!("imported {name} ({kind}) under KEK {kek}"),
            (true, Some(k)) => format!(
                "would add a version to existing key {name} (current version {}): {kind} under KEK {kek}",
                k.version
            ),
            (false, Some(k)) => format!(
                "added a version to existing key {name} (previous version {}): {kind} under KEK {kek}",
                k.version
            ),
        }
    }

    /// Reads the package's KEK in the vault and checks that it can import this package: it
    /// exists, its policy is import only, and the ciphertext fits its size. Writes nothing.
    pub async fn check_kek(&self, vault: &Vault) -> Result<()> {
        let kid = self.package.kid();
        let kek_view = vault
            .get(kid.name(), kid.version())
            .await
            .map_err(|e| match e {
                OnlineError::KeyNotFound { .. } => OnlineError::BadKek {
                    kid: kid.to_string(),
                    problem: KekProblem::Missing,
                },
                other => other,
            })?;
        let kek = kek_view.kek_public()?;
        self.package.check_against_kek(&kek)?;
        tracing::info!(
            "KEK {kid}: RSA {}, key_ops {:?}, enabled: it can import this package",
            kek.bits(),
            kek_view.key_ops
        );
        Ok(())
    }

    /// Uploads the package (`PUT /keys/NAME`): a new key, or a new version of an existing one.
    /// `vault` must be the one the plan was prepared for, and [`Self::check_kek`] passed.
    pub async fn send(&self, vault: &Vault) -> Result<KeyView> {
        let request = ImportRequest {
            byok: &self.bytes,
            kind: self.kind,
            ops: &self.ops,
            enabled: self.enabled,
            not_before: self.not_before,
            expires: self.expires,
            exportable: self.exportable,
            tags: self.tags.clone(),
            release_policy: self.release_policy.clone(),
        };
        vault
            .import_byok(&self.name, &request)
            .await
            .map_err(|e| match e {
                OnlineError::Unreachable(reason) => OnlineError::ImportInterrupted {
                    name: self.name.clone(),
                    reason,
                },
                other => other,
            })
    }

    /// `matches` when the vault's public key is the expected one, or why it was not
    /// checked; an error when it differs (the key is imported but is not the HSM's).
    pub fn public_key_check(&self, key: &KeyView) -> Result<String> {
        match (&self.expected, &key.public_key) {
            (None, _) if self.kind.kty() == Kty::Oct => {
                Ok("not checked (AES key has no public key)".into())
            }
            (None, _) => Ok("not checked (no sidecar and no --expect-public-key)".into()),
            (Some(want), Some(got)) if want == got => Ok("matches".into()),
            (Some(want), got) => Err(OnlineError::VerifyMismatch {
                kid: key.kid.clone(),
                mismatch: KeyMismatch::Imported {
                    vault: got
                        .as_ref()
                        .map_or_else(|| "none".into(), |g| g.fingerprint().to_hex()),
                    expected: want.fingerprint(),
                },
            }),
        }
    }
}

/// BYOK needs the KEK in the target vault, and a cloud that offers it.
fn check_vault(package: &KeyTransferPackage, vault: &VaultUrl) -> Result<()> {
    if vault.kind() == VaultKind::KeyVault(Cloud::China) {
        return Err(OnlineError::ChinaCloud {
            vault: vault.to_string(),
        });
    }
    let kid = package.kid();
    if kid.vault() != vault {
        return Err(OnlineError::ForeignKek {
            kid: kid.to_string(),
            package_vault: kid.vault().to_string(),
            target_vault: vault.to_string(),
        });
    }
    Ok(())
}

/// The `.byok` at `path`. `byok-offline` writes a package's sidecar first and the package
/// last, so a sidecar with no package beside it is a packaging run stopped in between: said
/// so, with what to do.
fn read_package(path: &Path) -> Result<Vec<u8>> {
    match files::read_limited(path, MAX_PACKAGE_BYTES as u64) {
        Err(files::FileError::Read { .. })
            if !path.exists() && sidecar::path_for(path).exists() =>
        {
            Err(files::FileError::Read {
                path: path.into(),
                reason: format!(
                    "it is missing, and its sidecar {} is there without it: the packaging run \
                     stopped before writing the package. Run `byok-offline batch` again on the \
                     air-gapped side (it resumes), or package the key again, and bring both files",
                    sidecar::path_for(path).display()
                ),
            }
            .into())
        }
        other => Ok(other?),
    }
}

/// The sidecar named, or the one beside the package; it must describe this package: its hash,
/// and the KEK the package names (`kek_kid`, which the sidecar's other claims were made for).
fn read_sidecar(
    opts: &ImportOptions,
    byok_sha256: &Fingerprint,
    package_kid: &str,
) -> Result<Option<Sidecar>> {
    let beside = sidecar::path_for(&opts.byok_file);
    let Some(path) = opts
        .sidecar
        .clone()
        .or_else(|| beside.exists().then_some(beside))
    else {
        return Ok(None);
    };
    let s = Sidecar::parse(&files::read_limited(&path, MAX_SMALL_FILE)?)?;
    if &s.byok_sha256 != byok_sha256 {
        return Err(OnlineError::SidecarMismatch { sidecar: path });
    }
    if s.kek_kid != package_kid {
        return Err(OnlineError::SidecarKek {
            sidecar: path,
            sidecar_kid: byok_cli_common::terminal::escape(&s.kek_kid).into_owned(),
            package_kid: package_kid.to_string(),
        });
    }
    Ok(Some(s))
}

/// What the package holds: the sidecar says, and --kty/--size/--curve must agree with it;
/// without a sidecar the flags say.
fn kind_of(opts: &ImportOptions, sidecar: Option<&Sidecar>) -> Result<KeyKind> {
    let stated = sidecar.map(|s| s.kind);
    // Flags left out take the sidecar's values, when the key types agree.
    let Some(flags) = opts.kind.kind_like(stated) else {
        return stated.ok_or_else(|| {
            OnlineError::Usage(
                "no sidecar next to the .byok: say what it holds with --kty RSA|EC|oct (and --curve for EC)".into(),
            )
        });
    };
    let flags = flags.map_err(OnlineError::KindFlags)?;
    match stated {
        Some(sidecar) if sidecar != flags => Err(OnlineError::KindDiffers { flags, sidecar }),
        _ => Ok(flags),
    }
}

fn read_release_policy(path: &Path) -> Result<KeyReleasePolicy> {
    Ok(KeyReleasePolicy {
        content_type: Some("application/json; charset=utf-8".into()),
        encoded_policy: Some(files::read_limited(path, MAX_SMALL_FILE)?),
        immutable: None,
    })
}

fn parse_time(flag: &str, s: Option<&str>) -> Result<Option<OffsetDateTime>> {
    let Some(s) = s else { return Ok(None) };
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(Some)
        .map_err(|e| {
            OnlineError::Usage(format!(
                "{flag} `{s}` is not an RFC 3339 time such as 2027-01-31T00:00:00Z: {e}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use byok_core::package::Generator;
    use byok_core::target::Curve;
    use byok_core::{TargetKey, wrap};

    const VAULT: &str = "https://contoso.vault.azure.net";

    /// Writes a package of an EC P-256 key for a KEK in `vault` (and its sidecar if asked) and
    /// returns the import options that name it.
    fn package(dir: &Path, vault: &str, with_sidecar: bool) -> ImportOptions {
        let target = TargetKey::generate(KeyKind::Ec { curve: Curve::P256 }).unwrap();
        let kid = KeyId::parse(&format!(
            "{vault}/keys/KEK/0123456789abcdef0123456789abcdef"
        ))
        .unwrap();
        let ct = wrap::wrap(target.plaintext(), &byok_tests::kek_pair(2048).1).unwrap();
        let bytes =
            KeyTransferPackage::new(kid.clone(), ct, &Generator::this_tool("test", "sw", "0"))
                .unwrap()
                .to_json_bytes();
        let byok_file = dir.join("t.byok");
        std::fs::write(&byok_file, &bytes).unwrap();
        if with_sidecar {
            let s = Sidecar {
                byok_sha256: Fingerprint::of_bytes(&bytes),
                kek_kid: kid.to_string(),
                kind: target.kind(),
                public_key: target.public_key().cloned(),
                source: Default::default(),
            };
            std::fs::write(sidecar::path_for(&byok_file), s.to_json_bytes()).unwrap();
        }
        ImportOptions {
            name: "t".into(),
            byok_file,
            ..Default::default()
        }
    }

    fn prepare(opts: &ImportOptions) -> Result<ImportPlan> {
        ImportPlan::prepare(opts, &VaultUrl::parse(VAULT).unwrap())
    }

    #[test]
    fn a_package_with_its_sidecar_is_ready_with_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let plan = prepare(&package(dir.path(), VAULT, true)).unwrap();
        assert_eq!(plan.kind(), KeyKind::Ec { curve: Curve::P256 });
        assert_eq!(plan.ops, KeyOp::defaults(Kty::Ec));
        assert!(plan.expected.is_some());
        // Flags that agree with the sidecar are fine.
        let mut opts = package(dir.path(), VAULT, true);
        opts.kind.kty = Some("EC".into());
        opts.kind.curve = Some("P-256".into());
        assert!(prepare(&opts).is_ok());
    }

    #[test]
    fn a_kek_in_another_vault_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let opts = package(dir.path(), "https://fabrikam.vault.azure.net", true);
        let err = prepare(&opts).unwrap_err();
        assert!(matches!(err, OnlineError::ForeignKek { .. }), "{err}");
        assert!(err.to_string().contains("Nothing was sent"), "{err}");
    }

    #[test]
    fn flags_contradicting_the_sidecar_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = package(dir.path(), VAULT, true);
        opts.kind.kty = Some("RSA".into());
        let err = prepare(&opts).unwrap_err();
        assert!(
            matches!(
                err,
                OnlineError::KindDiffers {
                    flags: KeyKind::Rsa { bits: 3072 },
                    sidecar: KeyKind::Ec { curve: Curve::P256 }
                }
            ),
            "{err}"
        );
        opts.kind.kty = Some("EC".into());
        opts.kind.curve = Some("P-384".into());
        assert!(matches!(
            prepare(&opts),
            Err(OnlineError::KindDiffers { .. })
        ));
    }

    #[test]
    fn without_a_sidecar_the_flags_must_say_what_the_package_holds() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = package(dir.path(), VAULT, false);
        let err = prepare(&opts).unwrap_err();
        assert!(matches!(err, OnlineError::Usage(_)), "{err}");
        assert!(err.to_string().contains("--kty"), "{err}");
        opts.kind.kty = Some("EC".into());
        let plan = prepare(&opts).unwrap();
        assert_eq!(plan.kind(), KeyKind::Ec { curve: Curve::P256 });
        assert!(plan.expected.is_none());
        opts.kind.kty = Some("DSA".into());
        assert!(matches!(prepare(&opts), Err(OnlineError::KindFlags(_))));
    }

    #[test]
    fn bad_times_and_operations_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = package(dir.path(), VAULT, true);
        opts.not_before = Some("tomorrow".into());
        let err = prepare(&opts).unwrap_err();
        assert!(err.to_string().contains("--not-before `tomorrow`"), "{err}");
        opts.not_before = Some("2027-01-31T00:00:00Z".into());
        opts.ops = Some(vec![KeyOp::Import]);
        assert!(matches!(
            prepare(&opts),
            Err(OnlineError::Ops(byok_core::ops::OpError::ImportOnTarget))
        ));
        opts.ops = Some(vec![KeyOp::Encrypt]);
        assert!(matches!(
            prepare(&opts),
            Err(OnlineError::Ops(
                byok_core::ops::OpError::NotValidFor { .. }
            ))
        ));
        opts.ops = Some(vec![KeyOp::Sign]);
        assert!(prepare(&opts).is_ok());
    }

    #[test]
    fn china_and_bad_names_and_sidecars_of_other_packages_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let opts = package(dir.path(), "https://contoso.vault.azure.cn", true);
        let china = ImportPlan::prepare(
            &opts,
            &VaultUrl::parse("https://contoso.vault.azure.cn").unwrap(),
        );
        assert!(matches!(china, Err(OnlineError::ChinaCloud { .. })));
        let mut opts = package(dir.path(), VAULT, true);
        opts.name = "bad_name".into();
        assert!(matches!(prepare(&opts), Err(OnlineError::Kid(_))));
        opts.name = "t".into();
        let other = tempfile::tempdir().unwrap();
        let elsewhere = package(other.path(), VAULT, true);
        opts.sidecar = Some(sidecar::path_for(&elsewhere.byok_file));
        assert!(matches!(
            prepare(&opts),
            Err(OnlineError::SidecarMismatch { .. })
        ));
    }
}
