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
    /// The floor's runs, least and most: its own run-to-run spread.
    pub(super) floor_range: (f64, f64),
    /// The tool's worker time per key (the large batch's median key; existing: the median over
    /// the runs).
    pub(super) worker: f64,
    pub(super) lookup: String,
}

impl Job {
    /// The floor as a table cell: `0.65 ms (0.61–0.70)`.
    pub(super) fn floor_cell(&self) -> String {
        let (lo, hi) = self.floor_range;
        format!("{:.2} ms ({lo:.2}–{hi:.2})", self.floor)
    }
}

/// The least and the most of `runs`.
fn range(runs: &[f64]) -> (f64, f64) {
    let lo = runs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = runs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
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
    /// The median of its keys' own times (ms): what the worker spent on each key (its
    /// PKCS#11 calls and the package made), without the process's fixed cost or the disk.
    worker: f64,
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
        let count = self.large - self.small;
        // Both batches choose their look-up (`--lookup auto`), the small one first, so that
        // each reads the token as the other did (less the 10 keys the small one adds): a batch
        // run after the other would read an index of 420 more objects, which on kryoptic, whose
        // reads grow with the token, is no fixed cost. The floor runs twice after them (its
        // own run-to-run spread), by the large batch's look-up, as the existing-key runs are.
        let small = self.batch("a", self.small, ("out-a", "auto"))?;
        let large = self.batch("b", self.large, ("out-b", "auto"))?;
        let floors = [
            self.floor("generate", "floor1", count, &large.lookup)?,
            self.floor("generate", "floor2", count, &large.lookup)?,
        ];
        let wrap = floors[1].1.clone();
        let chosen = large.lookup.clone();
        let lookup = match small.lookup == large.lookup {
            true => large.lookup,
            false => format!(
                "{} keys: {}, {} keys: {}",
                self.small, small.lookup, self.large, large.lookup
            ),
        };
        let generate = Job {
            tool: (large.wall - small.wall) / n * 1000.0,
            floor: (floors[0].0 + floors[1].0) / 2.0,
            floor_range: range(&[floors[0].0, floors[1].0]),
            worker: large.worker,
            lookup,
        };
        let (existing, small_existing, kib) = self.existing(&chosen)?;
        let fixed = small_existing - self.small as f64 * existing.tool / 1000.0;
        println!(
            "    filled in {filled:.1} s; lookup {}, wrap {wrap}: generate + package {:.2} ms (worker {:.2}, floor {}), existing {:.2} ms (worker {:.2}, floor {}), fixed {fixed:.2} s",
            generate.lookup,
            generate.tool,
            generate.worker,
            generate.floor_cell(),
            existing.tool,
            existing.worker,
            existing.floor_cell()
        );
        Ok(Figures {
            generate,
            existing,
            wrap,
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

    /// The keys of both batches packaged again as existing keys, and the floor over the large
    /// batch's keys, in turn, `runs` times (a drift of the machine's speed then falls on both
    /// alike); each run's batches write into directories of their own (none emptied:
    /// [`crate::bench::fresh`] says why). The job (medians: the tool's per-key cost of each run,
    /// and the floor's), the small batch's median wall, and the large one's peak KiB.
    fn existing(&self, chosen: &str) -> Result<(Job, f64, u64), String> {
        let n = (self.large - self.small) as f64;
        let (mut tools, mut smalls, mut floors, mut kib) = (vec![], vec![], vec![], 0);
        let mut workers = vec![];
        let mut lookup = String::new();
        for run in 1..=self.runs {
            let out = |prefix: &str| format!("out-{prefix}-existing-{run}");
            let small = self.batch("a", self.small, (&out("a"), chosen))?.wall;
            let large = self.batch("b", self.large, (&out("b"), chosen))?;
            tools.push((large.wall - small) / n * 1000.0);
            workers.push(large.worker);
            smalls.push(small);
            kib = kib.max(large.kib);
            lookup = large.lookup;
            floors.push(self.floor("existing", "b", self.large, &lookup)?.0);
        }
        let job = Job {
            tool: median(&mut tools),
            floor: median(&mut floors),
            floor_range: range(&floors),
            worker: median(&mut workers),
            lookup,
        };
        Ok((job, median(&mut smalls), kib))
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

    /// `byok-offline batch --lookup LOOKUP` of `count` EC P-256 keys PREFIX-000.. into the
    /// new directory OUT. Every key must come back packaged.
    fn batch(
        &self,
        prefix: &str,
        count: usize,
        (out, lookup): (&str, &str),
    ) -> Result<BatchRun, String> {
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
            .args(["--dir", out, "--jobs", "1", "--log", &log])
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
        let mut seconds: Vec<f64> = report["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k["seconds"].as_f64())
            .collect();
        let worker = median(&mut seconds) * 1000.0;
        Ok(BatchRun {
            wall,
            kib,
            lookup,
            worker,
        })
    }
}
