//! `byok-online batch-import`: import and verify every key of a manifest, a bounded number at
//! once, resumably, recording each in the evidence log and writing a JSON report.
//!
//! Each imported key is tagged `byok-sha256=<SHA-256 of its .byok>`; a rerun skips a key the
//! vault already holds with that tag, so nothing is imported twice. A vault key of the same
//! name with other material is refused, unless `--new-version` asks to add a version to it.
//! The results come in manifest order, whatever order the imports finish in. Every request
//! is paced to the vault's throttling limits ([`crate::pace`]), and the 429s are counted.

use crate::commands::verify_in;
use crate::connect::{ConnectOptions, Vault};
use crate::error::{OnlineError, Result};
use crate::existing::{self, OnExisting, WriteOptions};
use crate::import::{BYOK_SHA256_TAG, ImportOptions, ImportPlan};
use crate::pace::Pacer;
use byok_cli_common::evidence::EvidenceLog;
use byok_cli_common::files::{self, FileKind};
use byok_cli_common::output::as_display;
use byok_cli_common::progress::Progress;
use byok_cli_common::{Document, Output};
use byok_core::evidence::{self, Entry, Event};
use byok_core::manifest::{self, ManifestKey};
use byok_core::sidecar::Sidecar;
use byok_core::{package, sidecar};
use futures::StreamExt;
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

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
    /// `--dry-run`, and `--new-version` ([`OnExisting::AddVersion`]); a batch never asks.
    pub write: WriteOptions,
}

/// What happened to one key of the manifest.
#[derive(Debug, Clone, Serialize)]
pub struct KeyOutcome {
    pub name: String,
    /// `imported`, `already imported`, `would import` (a dry run), or `failed`.
    #[serde(serialize_with = "as_display")]
    pub outcome: Outcome,
    /// The name existed without this package's tag and `--new-version` was given: a version
    /// was (or would be) added.
    pub new_version: bool,
    pub vault_kid: Option<String>,
    /// `public key equal, ... signature verified`, `not applicable (AES ...)`, `not verified`
    /// (a failure or a dry run).
    pub verification: String,
    pub error: Option<String>,
    pub seconds: f64,
}

/// What a batch import did with one key: its progress line and the report's `outcome`
/// spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Imported now.
    Imported,
    /// The vault holds it already, tagged with this package's SHA-256.
    AlreadyImported,
    /// A dry run would import it.
    WouldImport,
    Failed,
}

impl Outcome {
    /// `imported`, `already imported`, `would import` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Imported => "imported",
            Outcome::AlreadyImported => "already imported",
            Outcome::WouldImport => "would import",
            Outcome::Failed => "failed",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `batch-import` reports (`byok-online.batch-import/1`), and writes to its report file.
#[derive(Debug, Serialize)]
pub struct BatchImportReport {
    /// Nothing was written to the vault, the log or the report file.
    pub dry_run: bool,
    pub imported: usize,
    pub already_imported: usize,
    /// Keys a dry run would import (0 otherwise).
    pub would_import: usize,
    pub failed: usize,
    /// How many times the vault answered 429 (Throttled); each was retried after a backoff.
    pub throttled: usize,
    pub seconds: f64,
    /// The JSON report written; null in a dry run.
    pub report: Option<PathBuf>,
    pub log: PathBuf,
    /// SHA-256 of the evidence log's last line (what the next entry's `prev_sha256` will
    /// be; 64 zeros for an empty log): recorded elsewhere, it pins the log as it stands.
    pub log_head: String,
    /// One per manifest key, in manifest order.
    pub keys: Vec<KeyOutcome>,
}

impl Document for BatchImportReport {
    const SCHEMA: &'static str = "byok-online.batch-import/1";
}

impl KeyOutcome {
    fn of(name: &str, result: Result<Done>, started: Instant) -> Self {
        let seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(done) => KeyOutcome {
                name: name.into(),
                outcome: done.outcome,
                new_version: done.new_version,
                vault_kid: done.kid,
                verification: done.verification,
                error: None,
                seconds,
            },
            Err(e) => KeyOutcome {
                name: name.into(),
                outcome: Outcome::Failed,
                new_version: false,
                vault_kid: None,
                verification: "not verified".into(),
                error: Some(e.to_string()),
                seconds,
            },
        }
    }

    /// One line: `name: outcome (verification) 1.23 s[: error]`.
    pub fn line(&self) -> String {
        format!(
            "{}: {}{} ({}) {:.2} s{}",
            self.name,
            self.outcome,
            if self.new_version {
                " as a new version"
            } else {
                ""
            },
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
            report: self
                .report
                .clone()
                .unwrap_or_else(|| "the output above (a dry run writes no report)".into()),
        })
    }
}

/// What every key's task shares.
struct Ctx<'a> {
    vault: &'a Vault,
    log: &'a EvidenceLog,
    dir: &'a Path,
    write: WriteOptions,
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
    // Opening reads and verifies the chain; only an append writes, and a dry run appends
    // nothing.
    let log = EvidenceLog::open(&log_path, opts.operator.as_deref())?;
    // Before any import: the report is never written through a symbolic link.
    let report_path = (!opts.write.dry_run).then(|| {
        opts.report
            .clone()
            .unwrap_or_else(|| opts.dir.join(REPORT_FILE_NAME))
    });
    if let Some(path) = report_path.as_ref().filter(|p| files::is_symlink(p)) {
        return Err(files::FileError::Symlink { path: path.clone() }.into());
    }
    // One pacer for the whole batch: every request takes its tokens first.
    let pacer = Arc::new(Pacer::for_vault(
        &conn.vault_url()?,
        conn.window.unwrap_or(crate::pace::AZURE_WINDOW),
    ));
    for key in &keys {
        pacer.learn(&key.name, key.kind);
    }
    let mut conn = conn.clone();
    conn.pace = Some(pacer.clone());
    let vault = conn.connect()?;
    let ctx = Ctx {
        vault: &vault,
        log: &log,
        dir: &opts.dir,
        write: opts.write,
    };
    let progress = Progress::new(keys.len());
    // `buffered`, not `buffer_unordered`: as many at once, results in manifest order.
    let outcomes: Vec<KeyOutcome> = futures::stream::iter(keys.iter())
        .map(|key| {
            let (ctx, progress) = (&ctx, &progress);
            async move {
                let t = Instant::now();
                let outcome = KeyOutcome::of(&key.name, one(ctx, key).await, t);
                progress.step(&outcome.line());
                outcome
            }
        })
        .buffered(opts.jobs.max(1))
        .collect()
        .await;
    progress.finish();
    let count = |what: Outcome| outcomes.iter().filter(|o| o.outcome == what).count();
    let report = BatchImportReport {
        dry_run: opts.write.dry_run,
        imported: count(Outcome::Imported),
        already_imported: count(Outcome::AlreadyImported),
        would_import: count(Outcome::WouldImport),
        failed: count(Outcome::Failed),
        throttled: pacer.throttled(),
        keys: outcomes,
        seconds: started.elapsed().as_secs_f64(),
        report: report_path,
        log_head: log.head(),
        log: log_path,
    };
    if let Some(path) = &report.report {
        let json =
            serde_json::to_vec_pretty(&Output::document(&report)).expect("reports serialize");
        files::replace(path, &json, FileKind::Report)?;
    }
    Ok(report)
}

/// What happened to one key.
struct Done {
    /// Imported, already imported, or would be (a dry run).
    outcome: Outcome,
    new_version: bool,
    kid: Option<String>,
    verification: String,
}

/// The key's package, checked locally against its sidecar and the manifest, and tagged.
fn plan_for(ctx: &Ctx<'_>, key: &ManifestKey) -> Result<(ImportPlan, Sidecar)> {
    let byok_file = ctx.dir.join(package::file_name(&key.name));
    let opts = ImportOptions {
        name: key.name.clone(),
        sidecar: Some(sidecar::path_for(&byok_file)),
        byok_file,
        ops: Some(key.ops.clone()),
        tags: key.tags.clone().into_iter().collect(),
        ..Default::default()
    };
    let mut plan = ImportPlan::prepare(&opts, &ctx.vault.url)?;
    let sidecar = plan.sidecar().expect("the sidecar is named").clone();
    if sidecar.kind != key.kind {
        return Err(OnlineError::ManifestKindDiffers {
            manifest: key.kind,
            sidecar: sidecar.kind,
        });
    }
    let sha = plan.byok_sha256().to_hex();
    plan.tag(BYOK_SHA256_TAG, &sha);
    Ok((plan, sidecar))
}

async fn one(ctx: &Ctx<'_>, key: &ManifestKey) -> Result<Done> {
    let (plan, sidecar) = plan_for(ctx, key)?;
    let sha = plan.byok_sha256().to_hex();
    let new_version = match existing::current(ctx.vault, &key.name).await? {
        Some(k) if k.tags.get(BYOK_SHA256_TAG) == Some(&sha) => {
            return recorded(ctx, key, &sidecar, Event::ImportConfirmed, k.kid, false).await;
        }
        Some(k) if ctx.write.on_existing != OnExisting::AddVersion => {
            return Err(OnlineError::ForeignKey {
                name: key.name.clone(),
                kid: k.kid,
            });
        }
        Some(_) => true,
        None => false,
    };
    plan.check_kek(ctx.vault).await?;
    if ctx.write.dry_run {
        return Ok(Done {
            outcome: Outcome::WouldImport,
            new_version,
            kid: None,
            verification: "not verified in a dry run".into(),
        });
    }
    let kid = plan.send(ctx.vault).await?.kid;
    recorded(ctx, key, &sidecar, Event::Imported, kid, new_version).await
}

/// Verifies a key the vault holds (imported now, or before) and records it in the log; a
/// dry run does neither.
async fn recorded(
    ctx: &Ctx<'_>,
    key: &ManifestKey,
    sidecar: &Sidecar,
    event: Event,
    kid: String,
    new_version: bool,
) -> Result<Done> {
    let outcome = match event {
        Event::Imported => Outcome::Imported,
        _ => Outcome::AlreadyImported,
    };
    if ctx.write.dry_run {
        return Ok(Done {
            outcome,
            new_version,
            kid: Some(kid),
            verification: "not verified in a dry run".into(),
        });
    }
    let (verification, verified) = match &sidecar.public_key {
        Some(public) => {
            let r = verify_in(ctx.vault, &key.name, None, public).await?;
            let text = format!("public key equal, {} signature verified", r.algorithm);
            (text, Some(crate::record::verified(&key.name, &r)))
        }
        None => (
            "not applicable (AES: prove with prove-aes)".to_string(),
            None,
        ),
    };
    let imported = evidence::Imported {
        key_name: key.name.clone(),
        vault_kid: kid.clone(),
        byok_sha256: sidecar.byok_sha256.to_hex(),
        kek_kid: sidecar.kek_kid.clone(),
        public_key_sha256: sidecar
            .public_key
            .as_ref()
            .map(|p| p.fingerprint().to_hex()),
        verification: verification.clone(),
    };
    let imported = match event {
        Event::ImportConfirmed => Entry::ImportConfirmed(imported),
        _ => Entry::Imported(imported),
    };
    // The import and its proof, recorded together once both happened.
    ctx.log
        .append_all(std::iter::once(imported).chain(verified).collect())?;
    Ok(Done {
        outcome,
        new_version,
        kid: Some(kid),
        verification,
    })
}
