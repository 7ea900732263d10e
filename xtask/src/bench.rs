//! `cargo xtask bench`: each half measured against what a user would pick instead, side by side
//! in one run. Figures are printed and written to target/bench/bench.{md,json}; nothing fails on
//! a number.

use crate::ci::run_checked;
use byok_tests::{Emulator, Profile, TestToken};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;
use cryptoki::session::Session;
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
    rows: Vec<Row>,
    memory: Vec<(String, u64)>,
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
            rows: Vec::new(),
            memory: Vec::new(),
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
    crate::packages::ensure_token(byok_tests::ModuleKind::SoftHsm)?;
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
    write_results(&b, &out_dir, started.elapsed())
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
    cold_start(b)?;
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

/// The child side of `keygen_floor`.
pub fn keygen_loop(kind: &str, count: usize) -> Result<(), String> {
    let s = logged_in_session()?;
    let mut times = Vec::new();
    for i in 0..count {
        let label = format!("floor-{kind}-{i}").into_bytes();
        let (mechanism, public, private) = key_pair_template(kind, label)?;
        let t = Instant::now();
        s.generate_key_pair(&mechanism, &public, &private)
            .map_err(|e| e.to_string())?;
        times.push(t.elapsed().as_secs_f64());
    }
    println!("{}", serde_json::to_string(&times).expect("numbers"));
    Ok(())
}

/// The mechanism and the public and private templates of a token key pair of `kind`
/// ("EC P-256" or "RSA <bits>") labelled `label`.
fn key_pair_template(
    kind: &str,
    label: Vec<u8>,
) -> Result<(Mechanism<'static>, Vec<Attribute>, Vec<Attribute>), String> {
    let common = |private: bool| {
        vec![
            Attribute::Token(true),
            Attribute::Private(private),
            Attribute::Label(label.clone()),
        ]
    };
    let mut public = common(false);
    let mut private = common(true);
    private.extend([
        Attribute::Sensitive(true),
        Attribute::Extractable(true),
        Attribute::Sign(true),
    ]);
    let mechanism = match kind {
        "EC P-256" => {
            public.extend([
                Attribute::EcParams(vec![6, 8, 42, 134, 72, 206, 61, 3, 1, 7]),
                Attribute::Verify(true),
            ]);
            Mechanism::EccKeyPairGen
        }
        rsa => {
            let bits: u64 = rsa
                .trim_start_matches("RSA ")
                .parse()
                .map_err(|_| "bad kind")?;
            public.extend([
                Attribute::ModulusBits(bits.into()),
                Attribute::PublicExponent(vec![1, 0, 1]),
                Attribute::Verify(true),
            ]);
            Mechanism::RsaPkcsKeyPairGen
        }
    };
    Ok((mechanism, public, private))
}

/// The child that only loads the module and logs in: the cold-start floor.
pub fn login_only() -> Result<(), String> {
    logged_in_session().map(drop)
}

/// Loads the SoftHSM module (the kit's path; SOFTHSM2_CONF from the parent) and logs in to
/// the first token as the user.
fn logged_in_session() -> Result<Session, String> {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::session::UserType;
    let err = |e: cryptoki::error::Error| e.to_string();
    let p = Pkcs11::new(byok_tests::softhsm_module()).map_err(err)?;
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(err)?;
    let slot = *p
        .get_slots_with_initialized_token()
        .map_err(err)?
        .first()
        .ok_or("no token")?;
    let s = p.open_rw_session(slot).map_err(err)?;
    s.login(UserType::User, Some(&PIN.to_string().into()))
        .map_err(err)?;
    Ok(s)
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
    let mut pipeline = openssl_pipeline(&sw)?;
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

/// The openssl CLI pipeline a user would script, per key, on the software keys round-robin.
fn openssl_pipeline(sw: &Path) -> Result<Vec<f64>, String> {
    let openssl = |args: &[&str]| openssl_in(sw, args);
    let mut pipeline = Vec::new();
    for i in 0..EXISTING {
        let k = format!("k{}.pem", i % 20);
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

/// One key, cold: process start + module load + login + wrap, against module load + login.
fn cold_start(b: &mut Bench) -> Result<(), String> {
    const RUNS: usize = 20;
    println!("\ncold start (median of {RUNS} processes):");
    let (mut package, mut floor) = (Vec::new(), Vec::new());
    let mut kb_package = 0;
    let mut kb_floor = 0;
    for i in 0..RUNS {
        let out = format!("cold-{i}.byok");
        let (t, _, kb) = measured(
            &mut b.offline(&[
                "package",
                "--kek",
                "kek.transfer",
                "--label",
                "x-000",
                "--out",
                &out,
                "--allow-zero-padded-kwp",
            ]),
            &b.dir.join("mem.txt"),
        )?;
        package.push(t);
        kb_package = kb_package.max(kb);
        // The floor: a process that loads the module and logs in, and does nothing else.
        let mut login = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
        login.arg("__login").envs(b.token.env().iter().cloned());
        let (t, _, kb) = measured(&mut login, &b.dir.join("mem.txt"))?;
        floor.push(t);
        kb_floor = kb_floor.max(kb);
    }
    b.mem("byok-offline package (one key, cold)", kb_package);
    b.mem(
        "module load + login floor (cryptoki, xtask __login)",
        kb_floor,
    );
    b.row(
        "byok-offline package, one RSA 2048 key, cold",
        median(&mut package) * 1000.0,
        "ms",
        "process start + module load + login (cryptoki)",
        median(&mut floor) * 1000.0,
    );
    Ok(())
}

/// Cold imports against the emulator, and the emulator's throughput under a bounded load.
fn online(b: &mut Bench, emulator_pid: u32) -> Result<(), String> {
    const RUNS: usize = 30;
    println!(
        "\nonline (median of {RUNS} processes; load from a second process, 8 connections, 10 s each):"
    );
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
    std::fs::copy(b.dir.join("online-0.byok"), b.dir.join("load.byok"))
        .map_err(|e| e.to_string())?;
    let load = |mode: &str| -> Result<Value, String> {
        let out = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
            .args(["__load"])
            .arg(&b.state)
            .arg(mode)
            .arg(b.dir.join("load.byok"))
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("load: {}", String::from_utf8_lossy(&out.stderr)));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
    };
    let get = load("get")?;
    let imp = load("import")?;
    let rps =
        |v: &Value| v["requests"].as_f64().unwrap_or(0.0) / v["seconds"].as_f64().unwrap_or(1.0);
    println!("  load GET: {get}\n  load import: {imp}");
    b.row(
        "kv-emulator BYOK imports/s (8 connections, 10 s)",
        rps(&imp),
        "req/s",
        "kv-emulator GET key/s (8 connections, 10 s)",
        rps(&get),
    );
    Ok(())
}

/// The child side of the load test: `__load STATE_DIR get|import PACKAGE`.
pub fn load(state: &Path, mode: &str, package: &Path) -> Result<(), String> {
    let conn: Value = serde_json::from_slice(
        &std::fs::read(state.join("connection.json")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let s = |k: &str| conn[k].as_str().unwrap_or_default().to_string();
    let ca = std::fs::read(s("ca_cert")).map_err(|e| e.to_string())?;
    let file = std::fs::read(package).map_err(|e| e.to_string())?;
    // The package is software_package's EC P-256 target; Key Vault needs crv with EC-HSM.
    let body = json!({"key": {"kty": "EC-HSM", "crv": "P-256", "key_ops": ["sign", "verify"], "key_hsm": byok_core::b64::encode(&file)}});
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let token_conn = conn.clone();
    rt.block_on(async move {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        // The vault URL's host (emulator.vault.azure.net) resolves only to connection.json's
        // vault_address.
        let host = vault_host(&s("vault_url"));
        let address = s("vault_address").parse::<std::net::SocketAddr>().ok();
        let client = |_| {
            let builder = reqwest::Client::builder()
                .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("CA")])
                .pool_max_idle_per_host(1);
            match address {
                Some(addr) => builder.resolve(&host, addr),
                None => builder,
            }
            .build()
            .expect("client")
        };
        let token = client_token(&client(0), &token_conn).await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut tasks = Vec::new();
        for c in 0..8 {
            let (http, token, url, body, mode) = (
                client(c),
                token.clone(),
                s("vault_url"),
                body.clone(),
                mode.to_string(),
            );
            let request = move |http: &reqwest::Client| {
                if mode == "get" {
                    http.get(format!("{url}/keys/KEK?api-version=7.4"))
                } else {
                    http.put(format!("{url}/keys/load-{c}?api-version=7.4"))
                        .json(&body)
                }
            };
            tasks.push(tokio::spawn(load_connection(
                http, token, request, deadline,
            )));
        }
        let started = Instant::now();
        let (mut ok, mut errors, mut lat) = (0, 0, Vec::new());
        for t in tasks {
            let (o, e, l) = t.await.map_err(|e| e.to_string())?;
            ok += o;
            errors += e;
            lat.extend(l);
        }
        print_load(mode, ok, errors, started.elapsed().as_secs_f64(), lat);
        Ok::<(), String>(())
    })
}

/// An access token from the emulator's token endpoint, as its connection file's client.
async fn client_token(http: &reqwest::Client, conn: &Value) -> Result<String, String> {
    let s = |k: &str| conn[k].as_str().unwrap_or_default().to_string();
    let token: Value = http
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            s("authority_host"),
            s("tenant_id")
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &s("client_id")),
            ("client_secret", &s("client_secret")),
            ("scope", "https://vault.azure.net/.default"),
        ])
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    Ok(token["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// One connection of `__load`: `request` over and over until `deadline`; successes, errors
/// and each success's latency.
async fn load_connection(
    http: reqwest::Client,
    token: String,
    request: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    deadline: Instant,
) -> (u64, u64, Vec<f64>) {
    let (mut ok, mut errors, mut latencies) = (0u64, 0u64, Vec::new());
    while Instant::now() < deadline {
        let t = Instant::now();
        match request(&http).bearer_auth(&token).send().await {
            Ok(r) if r.status().is_success() => {
                let _ = r.bytes().await;
                ok += 1;
                latencies.push(t.elapsed().as_secs_f64());
            }
            _ => errors += 1,
        }
    }
    (ok, errors, latencies)
}

/// One JSON line: requests, errors, seconds and latency percentiles of a `__load` run.
fn print_load(mode: &str, ok: u64, errors: u64, secs: f64, mut lat: Vec<f64>) {
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        let i = ((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1));
        lat.get(i).copied().unwrap_or(0.0) * 1000.0
    };
    let line = json!({"mode": mode, "requests": ok, "errors": errors, "seconds": secs,
        "p50_ms": pct(0.5), "p99_ms": pct(0.99)});
    println!("{line}");
}

/// The host of an `https://HOST[:PORT]` URL.
fn vault_host(url: &str) -> String {
    let authority = url.trim_start_matches("https://");
    let authority = authority.split('/').next().unwrap_or_default();
    authority.split(':').next().unwrap_or_default().to_string()
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

fn write_results(b: &Bench, out: &Path, took: Duration) -> Result<(), String> {
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
    let json = json!({
        "machine": machine(),
        "seconds": took.as_secs_f64(),
        "rows": b.rows.iter().map(|r| json!({"measurement": r.what, "value": r.value, "unit": r.unit, "baseline": r.baseline, "baseline_value": r.baseline_value, "ratio": r.value / r.baseline_value})).collect::<Vec<_>>(),
        "peak_memory_kib": b.memory.iter().map(|(w, k)| json!({"what": w, "kib": k})).collect::<Vec<_>>(),
    });
    std::fs::create_dir_all(out).map_err(|e| e.to_string())?;
    std::fs::write(out.join("bench.md"), &md).map_err(|e| e.to_string())?;
    let mut f = std::fs::File::create(out.join("bench.json")).map_err(|e| e.to_string())?;
    f.write_all(
        serde_json::to_string_pretty(&json)
            .expect("json")
            .as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    println!(
        "\n{md}\nbench: wrote {} and bench.json",
        out.join("bench.md").display()
    );
    Ok(())
}
