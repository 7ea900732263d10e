//! `cargo xtask bench --scale`: how the per-key cost grows with the token and the vault.
//!
//! - byok-offline `batch` (generate + package, and packaging keys already on the token) at
//!   token sizes 0, 1,000 and 5,000 keys on SoftHSM (0 and 1,000 on kryoptic), against the
//!   module's floor (`__floor`: the same PKCS#11 calls in a loop, same token, same size, same
//!   run) and the openssl CLI pipeline. The tool's per-key cost is its marginal cost: the wall time of a
//!   batch of [`LARGE`] keys less that of a batch of [`SMALL`] keys on the same token, over the
//!   difference, so process start, module load, login, the self-test and the token index (once
//!   per batch) drop out; they are shown as the fixed cost.
//! - kv-emulator BYOK imports/s and GET/s with 0, 10,000 and 100,000 keys stored, in memory
//!   and persisted (`--persist`), from a `__load` child on the same machine.
//! - Peak memory of each at the largest size.

use super::results::{Results, write_results};
use super::software::{openssl_in, openssl_pipeline};
use super::timing::{measured, median};
use super::{PIN, load};
use crate::util::run_checked;
use byok_tests::{Emulator, ModuleKind, Profile, TestToken};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Token sizes: keys on the token before the measured batches run.
const TOKEN_SIZES: [usize; 3] = [0, 1_000, 5_000];
/// kryoptic 1.5.4 reads an attribute of a token object in time that grows with the number
/// of objects (its sqlite store), so reading the token once costs O(N²): about 12 s per
/// batch at 1,000 keys and minutes at 5,000. Its largest size here is 1,000.
const KRYOPTIC_TOKEN_SIZES: [usize; 2] = [0, 1_000];
/// Vault sizes: keys stored before the measured loads run.
const VAULT_SIZES: [usize; 3] = [0, 10_000, 100_000];
/// The small and the large batch whose difference gives the per-key cost.
const SMALL: usize = 10;
const LARGE: usize = 210;
/// Runs of each existing-key batch (their medians count): at about a millisecond a key,
/// one run's noise would hide the difference.
const EXISTING_RUNS: usize = 3;
/// Each load's length.
const LOAD_SECONDS: &str = "5";
const TOKEN_LABEL: &str = "scale";

/// The halves of `--scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Offline,
    Emulator,
}

pub fn run(only: Option<Part>) -> Result<(), String> {
    let started = Instant::now();
    let wanted = |part| only.is_none_or(|o| o == part);
    if wanted(Part::Offline) {
        for kind in [ModuleKind::SoftHsm, ModuleKind::Kryoptic] {
            crate::tokens::ensure_token(kind)?;
        }
    }
    println!("bench --scale: building release binaries");
    let bin = byok_tests::build_bins(Profile::Release)?;
    let out = byok_tests::target_dir().join("bench");
    let work = out.join("scale-work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let mut r = Results::default();
    if wanted(Part::Offline) {
        let kek = kek_transfer(&bin, &work)?;
        offline(&bin, &work, &kek, &mut r)?;
    }
    if wanted(Part::Emulator) {
        emulator(&bin, &work, &mut r)?;
    }
    write_results(&r, &out, "scale", started.elapsed())
}

/// An RSA-2048 KEK's transfer file, from a short-lived emulator.
fn kek_transfer(bin: &Path, work: &Path) -> Result<PathBuf, String> {
    let state = work.join("kek-emulator");
    let _emulator = Emulator::start(&bin.join("kv-emulator"), &state, &[])?;
    let path = work.join("kek.transfer");
    create_kek(bin, &state, &path)?;
    Ok(path)
}

fn create_kek(bin: &Path, state: &Path, out: &Path) -> Result<(), String> {
    let mut cmd = Command::new(bin.join("byok-online"));
    cmd.arg("--emulator")
        .arg(state)
        .args(["kek", "create", "--name", "KEK", "--size", "2048", "--out"])
        .arg(out)
        .stdout(Stdio::null());
    run_checked(&mut cmd)
}

/// One token at one size, and the commands that run against it.
struct Sized {
    bin: PathBuf,
    kek: PathBuf,
    token: TestToken,
    size: usize,
}

/// What one token size gave: per-key ms of the tool and of the floor, and the tool's fixed
/// cost (s) and peak memory (KiB).
struct Figures {
    generate: (f64, f64),
    existing: (f64, f64),
    fixed: f64,
    kib: u64,
}

fn offline(bin: &Path, work: &Path, kek: &Path, r: &mut Results) -> Result<(), String> {
    let pipeline = openssl_ec_pipeline(work, kek)?;
    println!(
        "\noffline, per key (ms), marginal over {SMALL}..{LARGE} keys (existing: medians of {EXISTING_RUNS} runs), --jobs 1:"
    );
    let mut table = String::from(
        "| token | keys on it | generate + package | its floor | ratio | existing key | its floor | ratio | fixed cost per batch | peak RSS |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for kind in [ModuleKind::SoftHsm, ModuleKind::Kryoptic] {
        let sizes: &[usize] = match kind {
            ModuleKind::Kryoptic => &KRYOPTIC_TOKEN_SIZES,
            _ => &TOKEN_SIZES,
        };
        for &size in sizes {
            let dir = work.join(format!("{}-{size}", kind.id()));
            let token = TestToken::new_in(kind, &dir, TOKEN_LABEL, PIN)?;
            let s = Sized {
                bin: bin.to_path_buf(),
                kek: kek.to_path_buf(),
                token,
                size,
            };
            let f = s.measure()?;
            let name = kind.name();
            table.push_str(&format!(
                "| {name} | {size} | {:.2} ms | {:.2} ms | {:.2} | {:.2} ms | {:.2} ms | {:.2} | {:.2} s | {} KiB |\n",
                f.generate.0,
                f.generate.1,
                f.generate.0 / f.generate.1,
                f.existing.0,
                f.existing.1,
                f.existing.0 / f.existing.1,
                f.fixed,
                f.kib
            ));
            let at = format!("{name}, {size} keys on the token");
            r.row(
                format!("byok-offline generate + package EC P-256, {at}"),
                f.generate.0,
                "ms",
                "the module's floor, same calls",
                f.generate.1,
            );
            r.row(
                format!("byok-offline existing EC P-256 key, {at}"),
                f.existing.0,
                "ms",
                "the module's floor, same calls",
                f.existing.1,
            );
            r.row(
                format!("byok-offline existing EC P-256 key, {at}"),
                f.existing.0,
                "ms",
                "openssl CLI pipeline (software key)",
                pipeline,
            );
            if Some(&size) == sizes.last() {
                r.mem(&format!("byok-offline batch of {LARGE}, {at}"), f.kib);
            }
        }
    }
    table.push_str(&format!(
        "\nThe openssl CLI pipeline (4 commands, software EC P-256 key): {pipeline:.2} ms per key.\n"
    ));
    r.extra.push(table);
    Ok(())
}

impl Sized {
    fn measure(&self) -> Result<Figures, String> {
        let size = self.size;
        let name = self.token.kind().name();
        println!("  {name}, {size} keys on the token:");
        self.child(&[
            "__populate",
            "--prefix",
            "fill",
            "--count",
            &size.to_string(),
        ])?;
        let n = LARGE - SMALL;
        let floor_generate = self.floor("generate", "floor", n)?;
        let (small, _) = self.batch("a", SMALL)?;
        let (large, _) = self.batch("b", LARGE)?;
        let generate = (large - small) / n as f64 * 1000.0;
        let (mut smalls, mut larges, mut kib) = (Vec::new(), Vec::new(), 0);
        for _ in 0..EXISTING_RUNS {
            for out in ["out-a", "out-b"] {
                let _ = std::fs::remove_dir_all(self.token.path(out));
            }
            smalls.push(self.batch("a", SMALL)?.0);
            let (wall, k) = self.batch("b", LARGE)?;
            larges.push(wall);
            kib = kib.max(k);
        }
        let (small_existing, large_existing) = (median(&mut smalls), median(&mut larges));
        let existing = (large_existing - small_existing) / n as f64 * 1000.0;
        let floor_existing = self.floor("existing", "b", LARGE)?;
        let fixed = small_existing - SMALL as f64 * existing / 1000.0;
        println!(
            "    generate + package {generate:.2} ms (floor {floor_generate:.2}), existing {existing:.2} ms (floor {floor_existing:.2}), fixed {fixed:.2} s"
        );
        Ok(Figures {
            generate: (generate, floor_generate),
            existing: (existing, floor_existing),
            fixed,
            kib,
        })
    }

    /// This binary as a child (`__populate`, `__floor`) on the token.
    fn child(&self, args: &[&str]) -> Result<Value, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let out = Command::new(exe)
            .args(args)
            .arg("--module")
            .arg(self.token.module())
            .args(["--token", self.token.label()])
            .arg("--kek")
            .arg(&self.kek)
            .envs(self.token.env().iter().cloned())
            .current_dir(self.token.dir())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(serde_json::from_str(text.trim()).unwrap_or(Value::Null))
    }

    /// The floor's ms per key over `count` keys labelled PREFIX-NNN.
    fn floor(&self, mode: &str, prefix: &str, count: usize) -> Result<f64, String> {
        let v = self.child(&[
            "__floor",
            mode,
            "--prefix",
            prefix,
            "--count",
            &count.to_string(),
        ])?;
        let seconds = v["seconds"].as_f64().ok_or("__floor printed no seconds")?;
        Ok(seconds / count as f64 * 1000.0)
    }

    /// `byok-offline batch` of `count` EC P-256 keys PREFIX-000.. into out-PREFIX: wall
    /// seconds and peak KiB. Every key must come back packaged.
    fn batch(&self, prefix: &str, count: usize) -> Result<(f64, u64), String> {
        let manifest = self.token.path(&format!("{prefix}.toml"));
        super::work::manifest(&manifest, prefix, count, "kty = \"EC\"\ncurve = \"P-256\"")?;
        let mut cmd = self.token.command_with_pin(self.bin.join("byok-offline"));
        cmd.arg("--module")
            .arg(self.token.module())
            .args(["--token", self.token.label(), "--output", "json", "batch"])
            .arg("--manifest")
            .arg(&manifest)
            .arg("--kek")
            .arg(&self.kek)
            .args(["--dir", &format!("out-{prefix}"), "--jobs", "1"]);
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
        Ok((wall, kib))
    }
}

/// The openssl CLI pipeline on 20 software EC P-256 keys: median ms per key.
fn openssl_ec_pipeline(work: &Path, kek: &Path) -> Result<f64, String> {
    let sw = work.join("software");
    std::fs::create_dir_all(&sw).map_err(|e| e.to_string())?;
    for i in 0..20 {
        openssl_in(
            &sw,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &format!("ec{i}.pem"),
            ],
        )?;
    }
    std::fs::copy(kek, sw.join("kek.pem")).map_err(|e| e.to_string())?;
    let mut times = openssl_pipeline(&sw, "ec", 100)?;
    Ok(median(&mut times) * 1000.0)
}

/// The emulator at each vault size, in memory and persisted.
fn emulator(bin: &Path, work: &Path, r: &mut Results) -> Result<(), String> {
    let (c, depth) = load::PIPELINED;
    println!(
        "\nkv-emulator ({LOAD_SECONDS} s per load; imports and plain GETs: {} connections, one request in flight each; pipelined GETs: {c} connections × {depth}):",
        load::CONNECTIONS
    );
    let mut table = String::from(
        "| store | keys stored | BYOK imports/s | vs empty | GET/s (pipelined) | vs empty | GET/s (reqwest) | vs empty | peak RSS |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let mut empty_imports = Vec::new();
    for persisted in [false, true] {
        let rates = vault(bin, work, persisted, r, &mut table)?;
        empty_imports.push(rates);
    }
    if let [memory, persisted] = empty_imports[..] {
        r.row(
            "kv-emulator BYOK imports/s, persisted, empty store",
            persisted,
            "req/s",
            "the same in memory",
            memory,
        );
    }
    r.extra.push(table);
    Ok(())
}

/// One emulator through the vault sizes; its empty store's imports/s.
fn vault(
    bin: &Path,
    work: &Path,
    persisted: bool,
    r: &mut Results,
    table: &mut String,
) -> Result<f64, String> {
    let mut v = Vault::start(bin, work, persisted)?;
    let store = v.store;
    let mut empty = Rates::default();
    for size in VAULT_SIZES {
        v.fill(size)?;
        let rates = v.rates(size)?;
        if size == 0 {
            empty = rates;
        }
        let kib = peak_kib(v.emulator.id());
        table.push_str(&format!(
            "| {store} | {size} | {:.0} | {:.2} | {:.0} | {:.2} | {:.0} | {:.2} | {kib} KiB |\n",
            rates.imports,
            rates.imports / empty.imports,
            rates.gets,
            rates.gets / empty.gets,
            rates.plain_gets,
            rates.plain_gets / empty.plain_gets
        ));
        if size > 0 {
            for (what, value, base) in [
                ("BYOK imports/s", rates.imports, empty.imports),
                ("GET/s (pipelined)", rates.gets, empty.gets),
                ("GET/s (reqwest)", rates.plain_gets, empty.plain_gets),
            ] {
                r.row(
                    format!("kv-emulator {what}, {store}, {size} keys stored"),
                    value,
                    "req/s",
                    "the same, empty store",
                    base,
                );
            }
        }
    }
    r.mem(
        &format!("kv-emulator, {store}, {} keys stored (whole run)", v.stored),
        peak_kib(v.emulator.id()),
    );
    Ok(empty.imports)
}

/// Requests per second at one vault size.
#[derive(Debug, Clone, Copy, Default)]
struct Rates {
    imports: f64,
    gets: f64,
    plain_gets: f64,
}

/// A running emulator with its KEK, a package made for it, and how many keys it holds.
struct Vault {
    emulator: Emulator,
    state: PathBuf,
    package: String,
    store: &'static str,
    stored: usize,
}

impl Vault {
    fn start(bin: &Path, work: &Path, persisted: bool) -> Result<Self, String> {
        let (store, dir, extra): (_, _, &[&str]) = if persisted {
            ("persisted", "emu-persisted", &["--persist"])
        } else {
            ("in memory", "emu-memory", &[])
        };
        let state = work.join(dir);
        let emulator = Emulator::start(&bin.join("kv-emulator"), &state, extra)?;
        let kek = state.join("kek.transfer");
        create_kek(bin, &state, &kek)?;
        let text = std::fs::read_to_string(&kek).map_err(|e| e.to_string())?;
        let transfer = byok_core::KekTransfer::parse(&text).map_err(|e| e.to_string())?;
        let package = state.join("load.byok");
        super::software::software_package(&transfer, &package)?;
        Ok(Self {
            emulator,
            package: package.to_str().ok_or("non-UTF-8 path")?.to_string(),
            state,
            store,
            stored: 1, // the KEK
        })
    }

    /// Creates keys until `size` are stored.
    fn fill(&mut self, size: usize) -> Result<(), String> {
        if size <= self.stored {
            return Ok(());
        }
        let t = Instant::now();
        let (count, prefix) = ((size - self.stored).to_string(), format!("fill{size}"));
        let connections = load::CONNECTIONS.to_string();
        let v = load::child(
            &self.state,
            &["create", "--count", &count, "--prefix", &prefix]
                .into_iter()
                .chain(["--connections", &connections])
                .collect::<Vec<_>>(),
        )?;
        self.stored += v["requests"].as_u64().unwrap_or(0) as usize;
        println!(
            "  {}: filled to {} keys in {:.0} s",
            self.store,
            self.stored,
            t.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// GETs (pipelined, then plain) and BYOK imports (each under a new name), one load each.
    fn rates(&mut self, size: usize) -> Result<Rates, String> {
        let get = |pipelined| load::get(&self.state, pipelined, LOAD_SECONDS);
        let (gets, plain) = (get(true)?, get(false)?);
        let (prefix, connections) = (format!("imp{size}"), load::CONNECTIONS.to_string());
        let imp = load::child(
            &self.state,
            &[
                "import",
                "--package",
                &self.package,
                "--prefix",
                &prefix,
                "--seconds",
                LOAD_SECONDS,
                "--connections",
                &connections,
            ],
        )?;
        self.stored += imp["requests"].as_u64().unwrap_or(0) as usize;
        let store = self.store;
        println!(
            "  {store}, {size} keys: imports {imp}\n  {store}, {size} keys: GET {gets}\n  {store}, {size} keys: GET (reqwest) {plain}"
        );
        Ok(Rates {
            imports: load::rate(&imp),
            gets: load::rate(&gets),
            plain_gets: load::rate(&plain),
        })
    }
}

/// A process's peak resident memory (VmHWM), KiB.
fn peak_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}
