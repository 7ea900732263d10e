//! One token at one size: filled by `__populate`, its EC P-256 verdict recorded by `check
//! --log` (each batch reuses it), then byok-offline `batch` (generate + package, then the
//! same keys again as existing keys) against `__floor` making the same
//! calls: the wrap path the tool takes (`--wrap-mechanism`, and the floor's `--wrap`), and the
//! look-up the batch's report names (`lookup`: `index` when absent), which the floor is then
//! run with.

use super::Plan;
use crate::bench::PIN;
use crate::bench::floor::FloorWrap;
use crate::bench::timing::{measured, median};
use byok_tests::{ModuleKind, TestToken};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One token at one size, and the commands that run against it.
pub(super) struct Sized {
    bin: PathBuf,
    kek: PathBuf,
    token: TestToken,
    size: usize,
    /// The wrap the tool and the floor are told to take.
    wrap: FloorWrap,
    small: usize,
    large: usize,
    runs: usize,
}

/// One job's per-key ms, the tool's and its floor's, and the look-up the tool reported.
#[derive(Debug, Clone)]
pub(super) struct Job {
    pub(super) tool: f64,
    pub(super) floor: f64,
    pub(super) lookup: String,
}

/// What one token size gave.
#[derive(Debug, Clone)]
pub(super) struct Figures {
    pub(super) generate: Job,
    pub(super) existing: Job,
    /// The wrap path the floor took (`native` or `two-step`), the tool's by the same choice.
    pub(super) wrap: String,
    /// The tool's fixed cost per batch (s).
    pub(super) fixed: f64,
    /// The large batch's peak memory (KiB).
    pub(super) kib: u64,
    /// How long filling the token took (s).
    pub(super) filled: f64,
}

impl Figures {
    /// The look-up the tool reported: one word, or each job's when they differ.
    pub(super) fn lookup(&self) -> String {
        let (g, e) = (&self.generate.lookup, &self.existing.lookup);
        if g == e {
            g.clone()
        } else {
            format!("generate: {g}, existing: {e}")
        }
    }
}

/// Why a size was not measured.
#[derive(Debug, Clone)]
pub(super) enum Failed {
    /// The token refused a key while being filled: it holds `made` and no more.
    Full { made: usize, error: String },
    /// Anything else: a batch or a floor failed.
    Other(String),
}

impl From<String> for Failed {
    fn from(e: String) -> Self {
        Failed::Other(e)
    }
}

/// A batch's wall seconds, peak KiB and reported look-up.
struct BatchRun {
    wall: f64,
    kib: u64,
    lookup: String,
}

impl Sized {
    /// A fresh token of `kind` in `dir`, to be measured at `size` by `wrap`.
    pub(super) fn new(
        (bin, kek): (&Path, &Path),
        kind: ModuleKind,
        dir: &Path,
        (size, wrap): (usize, FloorWrap),
        plan: &Plan,
    ) -> Result<Self, String> {
        let _ = std::fs::remove_dir_all(dir);
        let token = TestToken::new_in(kind, dir, super::TOKEN_LABEL, PIN)?;
        Ok(Self {
            bin: bin.to_path_buf(),
            kek: kek.to_path_buf(),
            token,
            size,
            wrap,
            small: plan.small,
            large: plan.large,
            runs: plan.runs,
        })
    }

    pub(super) fn measure(&self) -> Result<Figures, Failed> {
        let (size, name, wrap) = (self.size, self.token.kind().name(), self.wrap.as_str());
        println!("  {name}, {size} keys on the token, --wrap-mechanism {wrap}:");
        let t = Instant::now();
        let count = size.to_string();
        let v = self.child(&["__populate", "--prefix", "fill", "--count", &count])?;
        let made = v["made"].as_u64().unwrap_or(0) as usize;
        if made < size {
            let error = v["error"].as_str().unwrap_or("no reason given").to_string();
            return Err(Failed::Full { made, error });
        }
        let filled = t.elapsed().as_secs_f64();
        self.record_check()?;
        let n = (self.large - self.small) as f64;
        // The large batch chooses its look-up (`--lookup auto`); every other batch here is
        // told the same one, so that the two batches differ only in their keys (auto could
        // choose otherwise for 10 keys than for 210).
        let large = self.batch("b", self.large, "auto")?;
        let small = self.batch("a", self.small, &large.lookup)?;
        let count = self.large - self.small;
        let floor = self.floor("generate", "floor", count, &large.lookup)?;
        let chosen = large.lookup.clone();
        let generate = Job {
            tool: (large.wall - small.wall) / n * 1000.0,
            floor: floor.0,
            lookup: large.lookup,
        };
        let (small_existing, large_existing, kib, lookup) = self.existing_batches(&chosen)?;
        let tool = (large_existing - small_existing) / n * 1000.0;
        let (floor_existing, _) = self.floor("existing", "b", self.large, &lookup)?;
        let existing = Job {
            tool,
            floor: floor_existing,
            lookup,
        };
        let fixed = small_existing - self.small as f64 * existing.tool / 1000.0;
        println!(
            "    filled in {filled:.1} s; lookup {}, wrap {}: generate + package {:.2} ms (floor {:.2}), existing {:.2} ms (floor {:.2}), fixed {fixed:.2} s",
            generate.lookup, floor.1, generate.tool, generate.floor, existing.tool, existing.floor
        );
        Ok(Figures {
            generate,
            existing,
            wrap: floor.1,
            fixed,
            kib,
            filled,
        })
    }

    /// The token's verdict on EC P-256 by this wrap path, recorded once (untimed) by `check
    /// --log` in `check.jsonl`, as a ceremony records it before packaging: each batch is
    /// given a copy of that log (so that none reads a longer log than another) and reuses the
    /// verdict, instead of checking the kind on throwaway keys first: for EC a number of keys
    /// that can be drawn by chance, which would not drop out of the difference between two
    /// batches (`--check-cost` measures what the check costs).
    fn record_check(&self) -> Result<(), String> {
        let mut cmd = self.token.command_with_pin(self.bin.join("byok-offline"));
        cmd.arg("--module")
            .arg(self.token.module())
            .args([
                "--token",
                self.token.label(),
                "check",
                "--log",
                "check.jsonl",
            ])
            .args(["--kty", "EC", "--curve", "P-256"])
            .args(["--wrap-mechanism", self.wrap.as_str()])
            .stdout(std::process::Stdio::null());
        crate::util::run_checked(&mut cmd)
    }

    /// The keys of both batches packaged again as existing keys (their output directories
    /// emptied first), `runs` times: the median walls of the small and the large batch, the
    /// large one's peak KiB, and the look-up reported.
    fn existing_batches(&self, chosen: &str) -> Result<(f64, f64, u64, String), String> {
        let (mut smalls, mut larges, mut kib) = (Vec::new(), Vec::new(), 0);
        let mut lookup = String::new();
        for _ in 0..self.runs {
            for out in ["out-a", "out-b"] {
                let _ = std::fs::remove_dir_all(self.token.path(out));
            }
            smalls.push(self.batch("a", self.small, chosen)?.wall);
            let large = self.batch("b", self.large, chosen)?;
            larges.push(large.wall);
            kib = kib.max(large.kib);
            lookup = large.lookup;
        }
        Ok((median(&mut smalls), median(&mut larges), kib, lookup))
    }

    /// This binary as a child (`__populate`, `__floor`) on the token, run as the token's
    /// programs are (inside openCryptoki's root, for that token).
    fn child(&self, args: &[&str]) -> Result<Value, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let out = self
            .token
            .command(exe)
            .args(args)
            .arg("--module")
            .arg(self.token.module())
            .args(["--token", self.token.label()])
            .arg("--kek")
            .arg(&self.kek)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(serde_json::from_str(text.trim()).unwrap_or(Value::Null))
    }

    /// The floor's ms per key over `count` keys labelled PREFIX-NNN by `lookup`, and the wrap
    /// path it took.
    fn floor(
        &self,
        mode: &str,
        prefix: &str,
        count: usize,
        lookup: &str,
    ) -> Result<(f64, String), String> {
        let count_arg = count.to_string();
        let v = self.child(&[
            "__floor",
            mode,
            "--prefix",
            prefix,
            "--count",
            &count_arg,
            "--wrap",
            self.wrap.as_str(),
            "--lookup",
            lookup,
        ])?;
        let seconds = v["seconds"].as_f64().ok_or("__floor printed no seconds")?;
        let wrap = v["wrap"].as_str().unwrap_or("two-step").to_string();
        Ok((seconds / count as f64 * 1000.0, wrap))
    }

    /// `byok-offline batch --lookup LOOKUP` of `count` EC P-256 keys PREFIX-000.. into
    /// out-PREFIX. Every key must come back packaged.
    fn batch(&self, prefix: &str, count: usize, lookup: &str) -> Result<BatchRun, String> {
        let manifest = self.token.path(&format!("{prefix}.toml"));
        let kind = "kty = \"EC\"\ncurve = \"P-256\"";
        crate::bench::work::manifest(&manifest, prefix, count, kind)?;
        let log = format!("log-{prefix}.jsonl");
        std::fs::copy(self.token.path("check.jsonl"), self.token.path(&log))
            .map_err(|e| format!("check.jsonl: {e}"))?;
        let mut cmd = self.token.command_with_pin(self.bin.join("byok-offline"));
        cmd.arg("--module")
            .arg(self.token.module())
            .args(["--token", self.token.label(), "--output", "json", "batch"])
            .arg("--manifest")
            .arg(&manifest)
            .arg("--kek")
            .arg(&self.kek)
            .args([
                "--dir",
                &format!("out-{prefix}"),
                "--jobs",
                "1",
                "--log",
                &log,
            ])
            .args(["--wrap-mechanism", self.wrap.as_str()])
            .args(["--lookup", lookup]);
        // Rehearsal flags, for the cost of a kind these tokens do not wrap conformantly:
        // SoftHSM 2.6.1 zero-pads RSA/EC keys before RFC 5649; kryoptic writes some P-256
        // scalars short (the DESIGN table of tokens).
        cmd.arg(match self.token.kind() {
            ModuleKind::SoftHsm => "--allow-zero-padded-kwp",
            _ => "--allow-nonconformant",
        });
        let (wall, stdout, kib) = measured(&mut cmd, &self.token.path("mem.txt"))?;
        let report: Value = serde_json::from_str(&stdout).map_err(|e| format!("{e}: {stdout}"))?;
        if report["packaged"].as_u64() != Some(count as u64) {
            return Err(format!("batch {prefix}: not every key packaged: {report}"));
        }
        if report["checks"][0]["why_checked"].is_string() {
            return Err(format!(
                "batch {prefix}: the recorded check was not reused: {report}"
            ));
        }
        let lookup = report["lookup"].as_str().unwrap_or("index").to_string();
        Ok(BatchRun { wall, kib, lookup })
    }
}
