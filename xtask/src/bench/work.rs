//! The default bench's work directory: the SoftHSM token `bench` in it, the emulator's state,
//! the two binaries run there, and the batch manifests it writes.

use super::results::Results;
use super::timing::measured;
use super::{PIN, TOKEN_LABEL};
use byok_tests::TestToken;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Per key (kind, seconds, generated), the wall seconds, and the peak KiB of a batch run.
pub(super) type BatchRun = (Vec<(String, f64, bool)>, f64, u64);

pub(super) struct Bench {
    pub(super) bin: PathBuf,
    pub(super) dir: PathBuf,
    pub(super) token: TestToken,
    pub(super) state: PathBuf,
    pub(super) results: Results,
}

impl Bench {
    /// The work directory `dir` (absent: see [`super::fresh`]) with the SoftHSM token
    /// `bench` in it.
    pub(super) fn new(bin: PathBuf, dir: PathBuf) -> Result<Self, String> {
        let token = TestToken::softhsm_in(&dir, TOKEN_LABEL, PIN)?;
        Ok(Self {
            bin,
            state: dir.join("emulator"),
            dir,
            token,
            results: Results::default(),
        })
    }

    /// The KEK transfer file `kek create` wrote into the work directory.
    pub(super) fn transfer(&self) -> Result<byok_core::KekTransfer, String> {
        let text =
            std::fs::read_to_string(self.dir.join("kek.transfer")).map_err(|e| e.to_string())?;
        byok_core::KekTransfer::parse(&text).map_err(|e| e.to_string())
    }

    pub(super) fn offline(&self, args: &[&str]) -> Command {
        let mut c = self.token.command_with_pin(self.bin.join("byok-offline"));
        c.arg("--module")
            .arg(self.token.module())
            .args(["--token", self.token.label()])
            .args(args)
            .current_dir(&self.dir);
        c
    }

    pub(super) fn online(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.bin.join("byok-online"));
        c.arg("--emulator")
            .arg(&self.state)
            .args(args)
            .current_dir(&self.dir);
        c
    }

    /// Runs a batch and returns (per-key seconds by kind, wall seconds, peak KiB).
    pub(super) fn batch(&self, manifest: &str, out: &str, jobs: usize) -> Result<BatchRun, String> {
        let jobs = jobs.to_string();
        let mut cmd = self.offline(&[
            "--output",
            "json",
            "batch",
            "--manifest",
            manifest,
            "--kek",
            "kek.transfer",
            "--dir",
            out,
            "--jobs",
            &jobs,
            "--allow-zero-padded-kwp",
        ]);
        let (wall, stdout, kb) = measured(&mut cmd, &self.dir.join("mem.txt"))?;
        let report: Value = serde_json::from_str(&stdout).map_err(|e| format!("{e}: {stdout}"))?;
        let keys = report["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|k| {
                (
                    k["kind"].as_str().unwrap_or_default().to_string(),
                    k["seconds"].as_f64().unwrap_or(0.0),
                    k["generated"] == true,
                )
            })
            .collect();
        Ok((keys, wall, kb))
    }
}

/// A batch manifest at `path`: `count` keys PREFIX-000.. of `kind` (its TOML lines).
pub(super) fn manifest(path: &Path, prefix: &str, count: usize, kind: &str) -> Result<(), String> {
    let text: String = (0..count)
        .map(|i| format!("[[key]]\nname = \"{prefix}-{i:03}\"\n{kind}\n\n"))
        .collect();
    std::fs::write(path, text).map_err(|e| e.to_string())
}
