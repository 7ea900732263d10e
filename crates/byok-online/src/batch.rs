//! `byok-online batch-import`: import and verify every key of a manifest, a bounded number at
//! once, resumably, recording each in the evidence log and writing a JSON report.
//!
//! Each imported key is tagged `byok-sha256=<SHA-256 of its .byok>`; a rerun skips a key the
//! vault already holds with that tag, so nothing is imported twice. A vault key of the same name
//! with other material is refused, not overwritten with a new version.

use crate::commands::{ImportOptions, import_into, verify_in};
use crate::connect::{ConnectOptions, Vault};
use crate::error::{OnlineError, Result};
use crate::evidence::EvidenceLog;
use byok_core::Fingerprint;
use byok_core::manifest::{self, ManifestKey};
use byok_core::sidecar::Sidecar;
use byok_core::target::Kty;
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The tag that ties a vault key to the package it came from.
pub const TAG: &str = "byok-sha256";

#[derive(Debug, Clone)]
pub struct BatchImportOptions {
    pub manifest: PathBuf,
    pub dir: PathBuf,
    pub jobs: usize,
    pub log: Option<PathBuf>,
    pub report: Option<PathBuf>,
    pub operator: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyOutcome {
    pub name: String,
    /// `imported`, `already imported`, or `failed`.
    pub outcome: String,
    pub vault_kid: Option<String>,
    /// `public key equal, signature verified`, `not applicable (AES)`, or the failure.
    pub verification: String,
    pub error: Option<String>,
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct BatchImportReport {
    pub keys: Vec<KeyOutcome>,
    pub imported: usize,
    pub already_imported: usize,
    pub failed: usize,
    pub seconds: f64,
    pub report: PathBuf,
    pub log: PathBuf,
}

/// Progress, reported as each key finishes.
pub trait Progress: Sync {
    fn done(&self, outcome: &KeyOutcome);
}

fn byok_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("KeyTransferPackage-{name}.byok"))
}

pub async fn run(
    conn: &ConnectOptions,
    opts: &BatchImportOptions,
    progress: &dyn Progress,
) -> Result<BatchImportReport> {
    let started = Instant::now();
    let text = std::fs::read_to_string(&opts.manifest).map_err(|e| OnlineError::Read {
        path: opts.manifest.clone(),
        reason: e.to_string(),
    })?;
    let keys = manifest::parse(&text)
        .map_err(|e| OnlineError::Usage(format!("{}: {e}", opts.manifest.display())))?;
    let log_path = opts
        .log
        .clone()
        .unwrap_or_else(|| opts.dir.join("ceremony-log.jsonl"));
    let report_path = opts
        .report
        .clone()
        .unwrap_or_else(|| opts.dir.join("import-report.json"));
    let log = EvidenceLog::open(&log_path, opts.operator.as_deref())?;
    let vault = conn.connect()?;
    let outcomes: Vec<KeyOutcome> = futures::stream::iter(keys.iter())
        .map(|key| {
            let (vault, log, dir) = (&vault, &log, &opts.dir);
            async move {
                let t = Instant::now();
                let outcome = match one(vault, log, dir, key).await {
                    Ok((outcome, kid, verification)) => KeyOutcome {
                        name: key.name.clone(),
                        outcome,
                        vault_kid: Some(kid),
                        verification,
                        error: None,
                        seconds: t.elapsed().as_secs_f64(),
                    },
                    Err(e) => KeyOutcome {
                        name: key.name.clone(),
                        outcome: "failed".into(),
                        vault_kid: None,
                        verification: "not verified".into(),
                        error: Some(e.to_string()),
                        seconds: t.elapsed().as_secs_f64(),
                    },
                };
                progress.done(&outcome);
                outcome
            }
        })
        .buffer_unordered(opts.jobs.max(1))
        .collect()
        .await;
    let report = BatchImportReport {
        imported: outcomes.iter().filter(|o| o.outcome == "imported").count(),
        already_imported: outcomes
            .iter()
            .filter(|o| o.outcome == "already imported")
            .count(),
        failed: outcomes.iter().filter(|o| o.outcome == "failed").count(),
        keys: outcomes,
        seconds: started.elapsed().as_secs_f64(),
        report: report_path.clone(),
        log: log_path,
    };
    let json = serde_json::to_vec_pretty(&report).expect("reports serialize");
    let tmp = report_path.with_extension("json.tmp");
    std::fs::write(&tmp, &json)
        .and_then(|()| std::fs::rename(&tmp, &report_path))
        .map_err(|e| OnlineError::Write {
            path: report_path.clone(),
            reason: e.to_string(),
        })?;
    Ok(report)
}

async fn one(
    vault: &Vault,
    log: &EvidenceLog,
    dir: &Path,
    key: &ManifestKey,
) -> Result<(String, String, String)> {
    let byok = byok_path(dir, &key.name);
    let bytes = std::fs::read(&byok).map_err(|e| OnlineError::Read {
        path: byok.clone(),
        reason: e.to_string(),
    })?;
    let sha = Fingerprint::of_bytes(&bytes).to_hex();
    let sidecar_path = PathBuf::from(format!("{}{}", byok.display(), byok_core::sidecar::SUFFIX));
    let sidecar =
        Sidecar::parse(
            &std::fs::read(&sidecar_path).map_err(|e| OnlineError::Read {
                path: sidecar_path.clone(),
                reason: e.to_string(),
            })?,
        )?;
    if sidecar.kind != key.kind {
        return Err(OnlineError::Mismatch(format!(
            "the manifest says {} but the package holds {}",
            key.kind, sidecar.kind
        )));
    }
    let (outcome, kid) = match vault.get(&key.name, None).await {
        Ok(existing) if existing.tags.get(TAG) == Some(&sha) => {
            ("already imported".to_string(), existing.kid)
        }
        Ok(existing) => {
            return Err(OnlineError::Mismatch(format!(
                "the vault already holds a key named {} ({}) that did not come from this package; refusing to add a version",
                key.name, existing.kid
            )));
        }
        Err(OnlineError::KeyNotFound { .. }) => {
            let mut tags: Vec<(String, String)> = key
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            tags.push((TAG.into(), sha.clone()));
            let opts = ImportOptions {
                name: key.name.clone(),
                byok_file: byok.clone(),
                sidecar: Some(sidecar_path.clone()),
                ops: Some(key.ops.clone()),
                tags,
                ..Default::default()
            };
            let report = import_into(vault, &opts).await?;
            ("imported".to_string(), report.key.kid)
        }
        Err(e) => return Err(e),
    };
    let verification = match (&sidecar.public_key, key.kind.kty()) {
        (Some(public), Kty::Rsa | Kty::Ec) => {
            let r = verify_in(vault, &key.name, None, public).await?;
            format!("public key equal, {} signature verified", r.algorithm)
        }
        _ => "not applicable (AES: prove with prove-aes)".to_string(),
    };
    log.append(
        if outcome == "imported" {
            "imported"
        } else {
            "import confirmed"
        },
        json!({
            "key_name": key.name,
            "vault_kid": kid,
            "byok_sha256": sha,
            "kek_kid": sidecar.kek_kid,
            "public_key_sha256": sidecar.public_key.as_ref().map(|p| p.fingerprint().to_hex()),
            "verification": verification,
        }),
    )
    .await?;
    Ok((outcome, kid, verification))
}
