//! `byok-online batch-import`: import and verify every key of a manifest, a bounded number at
//! once, resumably, recording each in the evidence log and writing a JSON report.
//!
//! Each imported key is tagged `byok-sha256=<SHA-256 of its .byok>`; a rerun skips a key the
//! vault already holds with that tag, so nothing is imported twice. A vault key of the same name
//! with other material is refused, not overwritten with a new version.

use crate::commands::verify_in;
use crate::connect::{ConnectOptions, Vault};
use crate::error::{OnlineError, Result};
use crate::import::{ImportOptions, ImportPlan};
use byok_cli_common::evidence::EvidenceLog;
use byok_cli_common::files::{self, FileKind};
use byok_cli_common::progress::Progress;
use byok_core::evidence::{self, Event};
use byok_core::manifest::{self, ManifestKey};
use byok_core::{package, sidecar};
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The tag that ties a vault key to the package it came from.
pub const TAG: &str = "byok-sha256";

/// The report's file name in the batch directory, unless --report names another.
pub const REPORT_FILE_NAME: &str = "import-report.json";

/// Largest manifest we read.
const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

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

impl KeyOutcome {
    fn of(name: &str, result: Result<Done>, started: Instant) -> Self {
        let seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(done) => KeyOutcome {
                name: name.into(),
                outcome: match done.event {
                    Event::Imported => "imported",
                    _ => "already imported",
                }
                .into(),
                vault_kid: Some(done.kid),
                verification: done.verification,
                error: None,
                seconds,
            },
            Err(e) => KeyOutcome {
                name: name.into(),
                outcome: "failed".into(),
                vault_kid: None,
                verification: "not verified".into(),
                error: Some(e.to_string()),
                seconds,
            },
        }
    }

    /// One progress line: `name: outcome (verification) 1.23 s[: error]`.
    fn line(&self) -> String {
        format!(
            "{}: {} ({}) {:.2} s{}",
            self.name,
            self.outcome,
            self.verification,
            self.seconds,
            self.error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )
    }
}

impl BatchImportReport {
    /// Fails when a key failed, naming the report (printed first, so the operator sees which).
    pub fn check(&self) -> Result<()> {
        if self.failed == 0 {
            return Ok(());
        }
        Err(OnlineError::BatchFailed {
            failed: self.failed,
            total: self.keys.len(),
            report: self.report.clone(),
        })
    }
}

pub async fn run(conn: &ConnectOptions, opts: &BatchImportOptions) -> Result<BatchImportReport> {
    let started = Instant::now();
    let text = files::read_text_limited(&opts.manifest, MAX_MANIFEST_BYTES)?;
    let keys = manifest::parse(&text).map_err(|source| OnlineError::Manifest {
        path: opts.manifest.clone(),
        source,
    })?;
    let log_path = opts
        .log
        .clone()
        .unwrap_or_else(|| opts.dir.join(evidence::DEFAULT_FILE_NAME));
    let report_path = opts
        .report
        .clone()
        .unwrap_or_else(|| opts.dir.join(REPORT_FILE_NAME));
    let log = EvidenceLog::open(&log_path, opts.operator.as_deref())?;
    let vault = conn.connect()?;
    let progress = Progress::new(keys.len());
    let outcomes: Vec<KeyOutcome> = futures::stream::iter(keys.iter())
        .map(|key| {
            let (vault, log, dir, progress) = (&vault, &log, &opts.dir, &progress);
            async move {
                let t = Instant::now();
                let outcome = KeyOutcome::of(&key.name, one(vault, log, dir, key).await, t);
                progress.step(&outcome.line());
                outcome
            }
        })
        .buffer_unordered(opts.jobs.max(1))
        .collect()
        .await;
    progress.finish();
    let count = |what: &str| outcomes.iter().filter(|o| o.outcome == what).count();
    let report = BatchImportReport {
        imported: count("imported"),
        already_imported: count("already imported"),
        failed: count("failed"),
        keys: outcomes,
        seconds: started.elapsed().as_secs_f64(),
        report: report_path,
        log: log_path,
    };
    let json = serde_json::to_vec_pretty(&report).expect("reports serialize");
    files::replace(&report.report, &json, FileKind::Report)?;
    Ok(report)
}

/// What happened to one key.
struct Done {
    /// [`Event::Imported`], or [`Event::ImportConfirmed`] when the vault already held it.
    event: Event,
    kid: String,
    verification: String,
}

async fn one(vault: &Vault, log: &EvidenceLog, dir: &Path, key: &ManifestKey) -> Result<Done> {
    let byok_file = dir.join(package::file_name(&key.name));
    let opts = ImportOptions {
        name: key.name.clone(),
        sidecar: Some(sidecar::path_for(&byok_file)),
        byok_file,
        ops: Some(key.ops.clone()),
        tags: key.tags.clone().into_iter().collect(),
        ..Default::default()
    };
    let mut plan = ImportPlan::prepare(&opts, &vault.url)?;
    let sidecar = plan.sidecar().expect("the sidecar is named").clone();
    if sidecar.kind != key.kind {
        return Err(OnlineError::ManifestKindDiffers {
            manifest: key.kind,
            sidecar: sidecar.kind,
        });
    }
    let sha = plan.byok_sha256().to_hex();
    plan.tag(TAG, &sha);
    let (event, kid) = match vault.get(&key.name, None).await {
        Ok(existing) if existing.tags.get(TAG) == Some(&sha) => {
            (Event::ImportConfirmed, existing.kid)
        }
        Ok(existing) => {
            return Err(OnlineError::ForeignKey {
                name: key.name.clone(),
                kid: existing.kid,
            });
        }
        Err(OnlineError::KeyNotFound { .. }) => {
            (Event::Imported, plan.upload(vault).await?.key.kid)
        }
        Err(e) => return Err(e),
    };
    let verification = match &sidecar.public_key {
        Some(public) => {
            let r = verify_in(vault, &key.name, None, public).await?;
            format!("public key equal, {} signature verified", r.algorithm)
        }
        None => "not applicable (AES: prove with prove-aes)".to_string(),
    };
    log.append(
        event,
        json!({
            "key_name": key.name,
            "vault_kid": kid,
            "byok_sha256": sha,
            "kek_kid": sidecar.kek_kid,
            "public_key_sha256": sidecar.public_key.as_ref().map(|p| p.fingerprint().to_hex()),
            "verification": verification,
        }),
    )?;
    Ok(Done {
        event,
        kid,
        verification,
    })
}
