//! `cargo xtask bench`: each half measured against what a user would pick instead, side by side
//! in one run. Figures are printed and written to target/bench/bench.{md,json}; nothing fails on
//! a number. `--scale` ([`scale`]) measures how the per-key cost grows with the token's and the
//! vault's size instead (target/bench/scale.{md,json}).
//!
//! The children it starts (this binary again) are in [`floor`] (PKCS#11 loops) and [`load`]
//! (the emulator's load generator).

pub mod check_cost;
mod cold;
pub mod floor;
pub mod load;
pub mod scale;

use crate::util::run_checked;
use byok_tests::{Emulator, Profile, TestToken};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PIN: &str = "1234";
const TOKEN_LABEL: &str = "bench";

struct Row {
    what: String,
    value: f64,
    unit: &'static str,
    baseline: String,
    baseline_value: f64,
}

/// What a bench run found: ratio rows, peak memory, and free-form tables and notes.
#[derive(Default)]
struct Results {
    rows: Vec<Row>,
    memory: Vec<(String, u64)>,
    /// Markdown written after the rows (scale tables, load details).
    extra: Vec<String>,
}

impl Results {
    fn row(
        &mut self,
        what: impl Into<String>,
        value: f64,
        unit: &'static str,
        baseline: impl Into<String>,
        baseline_value: f64,
    ) {
        let row = Row {
            what: what.into(),
            value,
            unit,
            baseline: baseline.into(),
            baseline_value,
        };
        println!(
            "  {:<62} {:>10.3} {unit:<6} vs {:<48} {:>10.3}  ratio {:.2}",
            row.what,
            row.value,
            row.baseline,
            row.baseline_value,
            row.value / row.baseline_value
        );
        self.rows.push(row);
    }

    fn mem(&mut self, what: &str, kb: u64) {
        self.memory.push((what.to_string(), kb));
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Runs a command under /usr/bin/time; returns wall seconds, stdout and peak RSS in KiB.
fn measured(cmd: &mut Command, mem_file: &Path) -> Result<(f64, String, u64), String> {
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let envs: Vec<_> = cmd
        .get_envs()
        .map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned())))
        .collect();
    let cwd = cmd.get_current_dir().map(Path::to_path_buf);
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(mem_file)
        .arg(&program)
        .args(&args);
    for (k, v) in envs {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    if let Some(d) = cwd {
        timed.current_dir(d);
    }
    let t = Instant::now();
    let out = timed
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program:?}: {e}"))?;
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!(
            "{program:?} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let kb = std::fs::read_to_string(mem_file)
        .ok()
        .and_then(|s| s.trim().lines().last()?.trim().parse().ok())
        .unwrap_or(0);
    Ok((secs, String::from_utf8_lossy(&out.stdout).into_owned(), kb))
}

/// Per key (kind, seconds, generated), the wall seconds, and the peak KiB of a batch run.
type BatchRun = (Vec<(String, f64, bool)>, f64, u64);

struct Bench {
    bin: PathBuf,
    dir: PathBuf,
    token: TestToken,
    state: PathBuf,
    results: Results,
}

impl Bench {
    /// A fresh work directory `dir` with the SoftHSM token `bench` in it.
    fn new(bin: PathBuf, dir: PathBuf) -> Result<Self, String> {
        let _ = std::fs::remove_dir_all(&dir);
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
    fn transfer(&self) -> Result<byok_core::KekTransfer, String> {
        let text =
            std::fs::read_to_string(self.dir.join("kek.transfer")).map_err(|e| e.to_string())?;
        byok_core::KekTransfer::parse(&text).map_err(|e| e.to_string())
    }

    fn offline(&self, args: &[&str]) -> Command {
        let mut c = self.token.command_with_pin(self.bin.join("byok-offline"));
        c.arg("--module")
            .arg(self.token.module())
            .args(["--token", self.token.label()])
            .args(args)
            .current_dir(&self.dir);
        c
    }

    fn online(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.bin.join("byok-online"));
        c.arg("--emulator")
            .arg(&self.state)
            .args(args)
            .current_dir(&self.dir);
        c
    }

    fn row(
        &mut self,
        what: impl Into<String>,
        value: f64,
        unit: &'static str,
        baseline: impl Into<String>,
        baseline_value: f64,
    ) {
        self.results
            .row(what, value, unit, baseline, baseline_value);
    }

    fn mem(&mut self, what: &str, kb: u64) {
        self.results.mem(what, kb);
    }

    /// Runs a batch and returns (per-key seconds by kind, wall seconds, peak KiB).
    fn batch(&self, manifest: &str, out: &str, jobs: usize) -> Result<BatchRun, String> {
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

fn manifest(path: &Path, prefix: &str, count: usize, kind: &str) -> Result<(), String> {
    let text: String = (0..count)
        .map(|i| format!("[[key]]\nname = \"{prefix}-{i:03}\"\n{kind}\n\n"))
        .collect();
    std::fs::write(path, text).map_err(|e| e.to_string())
}

pub fn run() -> Result<(), String> {
    let started = Instant::now();
    crate::tokens::ensure_token(byok_tests::ModuleKind::SoftHsm)?;
    println!("bench: building release binaries");
    let bin = byok_tests::build_bins(Profile::Release)?;
    let out_dir = byok_tests::target_dir().join("bench");
    let mut b = Bench::new(bin, out_dir.join("work"))?;
    let emulator = Emulator::start(
        &b.bin.join("kv-emulator"),
        &b.state,
        &["--accept-zero-padded-kwp"],
    )?;
    measure_all(&mut b, &emulator)?;
    drop(emulator);
    write_results(&b.results, &out_dir, "bench", started.elapsed())
}

/// Every measurement, against the running emulator.
fn measure_all(b: &mut Bench, emulator: &Emulator) -> Result<(), String> {
    run_checked(
        b.online(&[
            "kek",
            "create",
            "--name",
            "KEK",
            "--size",
            "2048",
            "--out",
            "kek.transfer",
        ])
        .stdout(Stdio::null()),
    )?;
    offline_generate(b)?;
    offline_existing(b)?;
    cold::cold_start(b)?;
    cold::cold_package(b)?;
    online(b, emulator.id())
}

/// Generate + package per key, against SoftHSM keygen alone; --jobs 2 against --jobs 1.
fn offline_generate(b: &mut Bench) -> Result<(), String> {
    println!(
        "\noffline, generate + package (per key, mean: RSA keygen's spread is wide), against SoftHSM keygen alone (cryptoki loop):"
    );
    for (prefix, count, kind, label) in [
        ("g2048", 60, "kty = \"RSA\"\nsize = 2048", "RSA 2048"),
        ("g3072", 30, "kty = \"RSA\"\nsize = 3072", "RSA 3072"),
        ("gp256", 100, "kty = \"EC\"\ncurve = \"P-256\"", "EC P-256"),
    ] {
        let m = b.dir.join(format!("{prefix}.toml"));
        manifest(&m, prefix, count, kind)?;
        let (keys, _, kb) = b.batch(m.to_str().unwrap(), &format!("out-{prefix}"), 1)?;
        b.mem(
            &format!("byok-offline batch, {count} × {label} generate + package"),
            kb,
        );
        let per_key: Vec<f64> = keys.iter().filter(|k| k.2).map(|k| k.1).collect();
        let floor = keygen_floor(b, label, count)?;
        b.row(
            format!("byok-offline generate + package, {label} (mean, n={count})"),
            mean(&per_key) * 1000.0,
            "ms",
            format!("SoftHSM keygen alone, {label} (mean, n={count})"),
            mean(&floor) * 1000.0,
        );
    }
    // Parallel sessions.
    let m = b.dir.join("jobs.toml");
    manifest(&m, "j1", 32, "kty = \"RSA\"\nsize = 2048")?;
    let (_, one, _) = b.batch(m.to_str().unwrap(), "out-j1", 1)?;
    manifest(&m, "j2", 32, "kty = \"RSA\"\nsize = 2048")?;
    let (_, two, _) = b.batch(m.to_str().unwrap(), "out-j2", 2)?;
    b.row(
        "batch of 32 × RSA 2048, generate + package, --jobs 2 (wall)",
        two,
        "s",
        "the same with --jobs 1 (wall)",
        one,
    );
    Ok(())
}

/// SoftHSM keygen alone: a child process (this binary, `__keygen`) runs a cryptoki loop.
fn keygen_floor(b: &Bench, kind: &str, count: usize) -> Result<Vec<f64>, String> {
    let out = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .args(["__keygen", kind, &count.to_string()])
        .envs(b.token.env().iter().cloned())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "keygen loop: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// How many existing keys `offline_existing` packages.
const EXISTING: usize = 200;

/// Packaging 200 existing RSA-2048 keys: byok-offline (one process) against the openssl CLI
/// pipeline a user would script and against byok-core alone in process.
fn offline_existing(b: &mut Bench) -> Result<(), String> {
    const N: usize = EXISTING;
    println!("\noffline, wrap of {N} existing RSA-2048 keys (per key, median):");
    let (ours_ms, wall) = package_existing(b)?;
    // Software copies: 20 RSA-2048 keys made by openssl, reused round-robin.
    let sw = b.dir.join("software");
    software_keys(b, &sw)?;
    let mut pipeline = openssl_pipeline(&sw, "k", EXISTING)?;
    // byok-core alone, in this process, on the same software keys.
    let mut core = core_alone(b, &sw)?;
    let pipe_ms = median(&mut pipeline) * 1000.0;
    let core_ms = median(&mut core) * 1000.0;
    b.row(
        format!("byok-offline, existing RSA 2048 in SoftHSM (n={N}, one process)"),
        ours_ms,
        "ms",
        "openssl CLI pipeline, 4 commands (n=200)",
        pipe_ms,
    );
    b.row(
        format!("byok-offline, existing RSA 2048 in SoftHSM (n={N}, one process)"),
        ours_ms,
        "ms",
        "byok-core alone in process (n=200)",
        core_ms,
    );
    b.row(
        format!("byok-offline, {N} existing keys, whole run (wall)"),
        wall,
        "s",
        "openssl pipeline × 200 (sum)",
        pipeline.iter().sum::<f64>(),
    );
    Ok(())
}

/// byok-offline packaging keys already on the token: per key median (ms) and wall seconds.
fn package_existing(b: &mut Bench) -> Result<(f64, f64), String> {
    const N: usize = EXISTING;
    let m = b.dir.join("existing.toml");
    manifest(&m, "x", N, "kty = \"RSA\"\nsize = 2048")?;
    b.batch(m.to_str().unwrap(), "out-existing", 2)?; // makes the keys (not measured)
    for entry in std::fs::read_dir(b.dir.join("out-existing")).map_err(|e| e.to_string())? {
        let p = entry.map_err(|e| e.to_string())?.path();
        if p.extension()
            .is_some_and(|e| e == "byok" || e == "json" || e == "jsonl")
        {
            std::fs::remove_file(p).map_err(|e| e.to_string())?;
        }
    }
    let (keys, wall, kb) = b.batch(m.to_str().unwrap(), "out-existing", 1)?;
    b.mem(
        &format!("byok-offline batch, {N} × RSA 2048 existing keys packaged"),
        kb,
    );
    let mut ours: Vec<f64> = keys.iter().filter(|k| !k.2).map(|k| k.1).collect();
    if ours.len() != N {
        return Err(format!(
            "expected {N} existing keys packaged, got {}",
            ours.len()
        ));
    }
    Ok((median(&mut ours) * 1000.0, wall))
}

/// Runs the openssl CLI in `dir`; only whether it succeeded counts.
fn openssl_in(dir: &Path, args: &[&str]) -> Result<(), String> {
    byok_tests::try_openssl(args, dir).map(drop)
}

/// 20 RSA-2048 keys made by openssl in `sw` (k0.pem ..), and the KEK beside them (kek.pem).
fn software_keys(b: &Bench, sw: &Path) -> Result<(), String> {
    std::fs::create_dir_all(sw).map_err(|e| e.to_string())?;
    for i in 0..20 {
        openssl_in(
            sw,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                &format!("k{i}.pem"),
            ],
        )?;
    }
    std::fs::copy(b.dir.join("kek.transfer"), sw.join("kek.pem")).map_err(|e| e.to_string())?;
    Ok(())
}

/// The openssl CLI pipeline a user would script, per key, on the software keys `KEYS0.pem` ..
/// `KEYS19.pem` round-robin, with the KEK in `kek.pem`.
fn openssl_pipeline(sw: &Path, keys: &str, count: usize) -> Result<Vec<f64>, String> {
    let openssl = |args: &[&str]| openssl_in(sw, args);
    let mut pipeline = Vec::new();
    for i in 0..count {
        let k = format!("{keys}{}.pem", i % 20);
        let t = Instant::now();
        openssl(&[
            "pkcs8", "-topk8", "-nocrypt", "-in", &k, "-outform", "DER", "-out", "t.der",
        ])?;
        openssl(&["rand", "-out", "aes.bin", "32"])?;
        let aes = std::fs::read(sw.join("aes.bin")).map_err(|e| e.to_string())?;
        let hex: String = aes.iter().map(|b| format!("{b:02x}")).collect();
        openssl(&[
            "enc",
            "-id-aes256-wrap-pad",
            "-K",
            &hex,
            "-iv",
            "A65959A6",
            "-in",
            "t.der",
            "-out",
            "kwp.bin",
        ])?;
        openssl(&[
            "pkeyutl",
            "-encrypt",
            "-pubin",
            "-inkey",
            "kek.pem",
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha1",
            "-pkeyopt",
            "rsa_mgf1_md:sha1",
            "-in",
            "aes.bin",
            "-out",
            "rsa.bin",
        ])?;
        pipeline.push(t.elapsed().as_secs_f64());
    }
    Ok(pipeline)
}

/// byok-core alone, in this process, wrapping the software keys round-robin, per key.
fn core_alone(b: &Bench, sw: &Path) -> Result<Vec<f64>, String> {
    let transfer = b.transfer()?;
    let mut ders = Vec::new();
    for i in 0..20 {
        openssl_in(
            sw,
            &[
                "pkcs8",
                "-topk8",
                "-nocrypt",
                "-in",
                &format!("k{i}.pem"),
                "-outform",
                "DER",
                "-out",
                &format!("k{i}.der"),
            ],
        )?;
        ders.push(std::fs::read(sw.join(format!("k{i}.der"))).map_err(|e| e.to_string())?);
    }
    let mut core = Vec::new();
    for i in 0..EXISTING {
        let t = Instant::now();
        let pkg = wrap_package(&transfer, &ders[i % 20])?;
        std::hint::black_box(byok_core::Fingerprint::of_bytes(&pkg.to_json_bytes()));
        core.push(t.elapsed().as_secs_f64());
    }
    Ok(core)
}

/// Cold imports against the emulator, and the emulator's throughput under a bounded load.
fn online(b: &mut Bench, emulator_pid: u32) -> Result<(), String> {
    const RUNS: usize = 30;
    println!("\nonline (median of {RUNS} processes; load from a second process, 10 s each):");
    cold_online(b, RUNS)?;
    emulator_load(b)?;
    let status =
        std::fs::read_to_string(format!("/proc/{emulator_pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    b.mem("kv-emulator (whole bench, incl. the load)", hwm);
    Ok(())
}

/// `runs` cold `byok-online import`s of fresh EC packages, against as many cold `show`s.
fn cold_online(b: &mut Bench, runs: usize) -> Result<(), String> {
    let transfer = b.transfer()?;
    let (mut import, mut show) = (Vec::new(), Vec::new());
    let (mut kb_import, mut kb_show) = (0, 0);
    for i in 0..runs {
        let file = format!("online-{i}.byok");
        software_package(&transfer, &b.dir.join(&file))?;
        let name = format!("cold-{i}");
        let (t, _, kb) = measured(
            &mut b.online(&[
                "import",
                "--name",
                &name,
                "--byok-file",
                &file,
                "--kty",
                "EC",
            ]),
            &b.dir.join("mem.txt"),
        )?;
        import.push(t);
        kb_import = kb_import.max(kb);
        let (t, _, kb) = measured(
            &mut b.online(&["show", "--name", "KEK"]),
            &b.dir.join("mem.txt"),
        )?;
        show.push(t);
        kb_show = kb_show.max(kb);
    }
    b.mem("byok-online import (cold)", kb_import);
    b.mem("byok-online show (cold)", kb_show);
    b.row(
        "byok-online import, cold (process, token, TLS, KEK check, upload)",
        median(&mut import) * 1000.0,
        "ms",
        "byok-online show, cold (process, token, TLS, GET)",
        median(&mut show) * 1000.0,
    );
    Ok(())
}

/// A fresh EC P-256 target wrapped in software under the transfer file's KEK, at `path`.
fn software_package(transfer: &byok_core::KekTransfer, path: &Path) -> Result<(), String> {
    let target = byok_core::TargetKey::generate(byok_core::KeyKind::Ec {
        curve: byok_core::Curve::P256,
    })
    .map_err(|e| e.to_string())?;
    let pkg = wrap_package(transfer, target.plaintext())?;
    std::fs::write(path, pkg.to_json_bytes()).map_err(|e| e.to_string())
}

/// `plaintext` wrapped in software under the transfer file's KEK: a whole package.
fn wrap_package(
    transfer: &byok_core::KekTransfer,
    plaintext: &[u8],
) -> Result<byok_core::KeyTransferPackage, String> {
    let ct = byok_core::wrap::wrap(plaintext, &transfer.key).map_err(|e| e.to_string())?;
    byok_core::KeyTransferPackage::new(
        transfer.kid.clone(),
        ct,
        &byok_core::package::Generator::default(),
    )
    .map_err(|e| e.to_string())
}

/// The emulator's throughput: GETs against BYOK imports, each from a `__load` child.
fn emulator_load(b: &mut Bench) -> Result<(), String> {
    let package = b.dir.join("online-0.byok");
    let package = package.to_str().ok_or("non-UTF-8 path")?;
    let secs = "10";
    let connections = load::CONNECTIONS.to_string();
    let common = ["--seconds", secs, "--connections", &connections];
    let get = load::child(&b.state, &str_args(&load::get_args(false, secs)))?;
    let pipelined = load::child(&b.state, &str_args(&load::get_args(true, secs)))?;
    let imp = load::child(
        &b.state,
        &[&["import", "--package", package], &common[..]].concat(),
    )?;
    println!("  load GET: {get}\n  load GET, pipelined: {pipelined}\n  load import: {imp}");
    b.row(
        format!("kv-emulator BYOK imports/s ({connections} connections, {secs} s)"),
        load::rate(&imp),
        "req/s",
        format!("kv-emulator GET key/s ({connections} connections, {secs} s)"),
        load::rate(&get),
    );
    let (c, depth) = load::PIPELINED;
    b.row(
        format!("kv-emulator GET key/s, pipelined ({c} connections × {depth} in flight)"),
        load::rate(&pipelined),
        "req/s",
        format!("the same, reqwest ({connections} connections × 1)"),
        load::rate(&get),
    );
    Ok(())
}

/// `&str`s of owned arguments.
fn str_args(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kb| format!("{:.0} GiB", kb as f64 / 1048576.0))
        .unwrap_or_default();
    let softhsm = Command::new("softhsm2-util")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, {mem} RAM; SoftHSM {softhsm}; release builds")
}

fn write_results(b: &Results, out: &Path, stem: &str, took: Duration) -> Result<(), String> {
    let mut md = String::new();
    md.push_str(&format!(
        "Machine: {}. Bench run took {:.0} s.\n\n",
        machine(),
        took.as_secs_f64()
    ));
    md.push_str("| measurement | value | baseline | baseline value | ratio |\n| --- | ---: | --- | ---: | ---: |\n");
    for r in &b.rows {
        md.push_str(&format!(
            "| {} | {:.3} {} | {} | {:.3} {} | {:.2} |\n",
            r.what,
            r.value,
            r.unit,
            r.baseline,
            r.baseline_value,
            r.unit,
            r.value / r.baseline_value
        ));
    }
    md.push_str("\n| peak memory (max RSS) | KiB |\n| --- | ---: |\n");
    for (what, kb) in &b.memory {
        md.push_str(&format!("| {what} | {kb} |\n"));
    }
    for extra in &b.extra {
        md.push('\n');
        md.push_str(extra);
    }
    let json = json!({
        "machine": machine(),
        "seconds": took.as_secs_f64(),
        "rows": b.rows.iter().map(|r| json!({"measurement": r.what, "value": r.value, "unit": r.unit, "baseline": r.baseline, "baseline_value": r.baseline_value, "ratio": r.value / r.baseline_value})).collect::<Vec<_>>(),
        "peak_memory_kib": b.memory.iter().map(|(w, k)| json!({"what": w, "kib": k})).collect::<Vec<_>>(),
    });
    std::fs::create_dir_all(out).map_err(|e| e.to_string())?;
    std::fs::write(out.join(format!("{stem}.md")), &md).map_err(|e| e.to_string())?;
    let mut f =
        std::fs::File::create(out.join(format!("{stem}.json"))).map_err(|e| e.to_string())?;
    f.write_all(
        serde_json::to_string_pretty(&json)
            .expect("json")
            .as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    println!(
        "\n{md}\nbench: wrote {} and {stem}.json",
        out.join(format!("{stem}.md")).display()
    );
    Ok(())
}
