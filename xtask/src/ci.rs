//! `cargo xtask ci`: the test command the README gives and `.ci/run` runs.

use crate::e2e::DEFAULT_TOKEN;
use crate::util::{cargo, cargo_bin, run_checked};
use byok_tests::ModuleKind;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The Azure SDK for Python, pinned, in `target/pyvenv`: the emulator's tests run it as an
/// independent client.
const PYTHON_PACKAGES: [&str; 2] = ["azure-keyvault-keys==4.11.3", "azure-identity==1.27.0"];

/// The Azure SDK for JavaScript, pinned and locked in tests/js (package.json,
/// package-lock.json), installed with `npm ci` into `target/js/node_modules`: the emulator's
/// MSAL Node test and the JavaScript SDK ceremony (tests/tests/js_sdk.rs) run it.
const JS_DIR: &str = "tests/js";
/// The oldest Node the locked packages run on (their `engines`).
const NODE_MAJOR: u32 = 20;

/// What the minutes' test needs from Debian: the browser that prints them, and the tools
/// that read the PDF's text and its QR codes.
const MINUTES_PACKAGES: [&str; 3] = ["chromium", "poppler-utils", "zbar-tools"];

/// fmt check, clippy `-D warnings`, `cargo test --workspace`, `e2e` on kryoptic (no
/// leniency), `e2e --matrix` on every token, `e2e --batch 12` on NSS softokn, `e2e` on
/// openCryptoki (native CKM_RSA_AES_KEY_WRAP), `dist --check` (reproducible, installable);
/// then how long each part took.
pub fn run() -> Result<(), String> {
    let mut times = Times::default();
    disk_before()?;
    prerequisites(&mut times)?;
    times.time("fmt check + clippy", || {
        cargo(&["fmt", "--all", "--check"])?;
        cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])
    })?;
    let (passed, failed) = tests(&mut times)?;
    // One closing line for the whole run: cargo prints one per test binary, the last of
    // which (doc-tests) often counts none.
    println!("ci: {passed} passed, {failed} failed");
    if failed > 0 {
        return Err(format!("{failed} tests failed"));
    }
    ceremonies(&mut times)?;
    // Two cold builds of both binaries: the dist-ci profile (unoptimised, same flags and
    // packaging) keeps them to minutes; `cargo xtask dist` makes the release ones.
    times.time(
        "dist --check (dist-ci: built in two trees, SHA256SUMS equal; .debs installed and run)",
        || crate::dist::check(crate::dist::DistProfile::DistCi),
    )?;
    println!("\nci: time per part");
    for (part, took) in &times.0 {
        println!("  {:>6.0} s  {part}", took.as_secs_f32());
    }
    disk_after()?;
    // The closing count once more, after the e2e output, for whoever reads the log's end.
    println!("ci: {passed} passed, {failed} failed");
    Ok(())
}

/// Says how much disk the run has, and warns when a cold run may not fit: out of space, it
/// would fail inside a link with no word about why.
fn disk_before() -> Result<(), String> {
    let target = byok_tests::target_dir();
    std::fs::create_dir_all(&target)
        .map_err(|e| format!("could not create {}: {e}", target.display()))?;
    let free = crate::disk::free_bytes(&target)?;
    println!("ci: {} free for target/", crate::disk::gb(free));
    if free < crate::disk::COLD_RUN_BYTES {
        eprintln!(
            "ci: warning: a cold run writes about {} under target/; free space or remove an old \
             target/ (`cargo clean`) if the build fails with \"No space left on device\"",
            crate::disk::gb(crate::disk::COLD_RUN_BYTES)
        );
    }
    Ok(())
}

/// Says what the run left under target/, so growth shows in the log before it fills a disk.
fn disk_after() -> Result<(), String> {
    let target = byok_tests::target_dir();
    let used = crate::disk::used_bytes(&target)?;
    let free = crate::disk::free_bytes(&target)?;
    println!(
        "ci: target/ holds {}; {} still free",
        crate::disk::gb(used),
        crate::disk::gb(free)
    );
    Ok(())
}

/// How long each part of the run took, in order.
#[derive(Default)]
struct Times(Vec<(&'static str, Duration)>);

impl Times {
    /// Runs `part`, noting how long it took under `label`.
    fn time<T>(
        &mut self,
        label: &'static str,
        part: impl FnOnce() -> Result<T, String>,
    ) -> Result<T, String> {
        let t = Instant::now();
        let out = part()?;
        self.0.push((label, t.elapsed()));
        Ok(out)
    }
}

/// The tokens and the programs the tests drive, made or installed once.
fn prerequisites(times: &mut Times) -> Result<(), String> {
    // The tests drive real tokens: SoftHSM, kryoptic (built once into target/kryoptic/), NSS
    // softokn and openCryptoki (in a Debian sid root made once in target/opencryptoki/).
    times.time(
        "tokens ready (Debian packages; kryoptic built, openCryptoki root made, or cached)",
        || {
            ModuleKind::ALL
                .into_iter()
                .try_for_each(crate::tokens::ensure_token)
        },
    )?;
    // The minutes are printed to PDF by a real browser and read back by poppler and zbar.
    times.time("chromium, poppler-utils, zbar-tools ready", || {
        crate::packages::ensure(
            &MINUTES_PACKAGES,
            "to print the minutes to PDF and read them back",
        )
    })?;
    // tests/tests/hostile_files.rs kills a run at one exact rename with strace, and gives
    // a run a terminal with `script` (Debian's bsdutils, built from util-linux).
    times.time("strace, bsdutils ready", || {
        let why = "for tests/tests/hostile_files.rs";
        crate::packages::ensure(&["strace", "util-linux", "bsdutils"], why)
    })
}

/// `cargo test --workspace` with the Python and JavaScript SDKs at hand: (passed, failed).
fn tests(times: &mut Times) -> Result<(u64, u64), String> {
    let python = python_venv()?;
    let node_modules = times.time(
        "JavaScript SDK: npm ci into target/js (or cached)",
        node_modules,
    )?;
    times.time("cargo test --workspace", || {
        cargo_test(
            &["test", "--workspace"],
            &[
                ("BYOK_PYTHON", python.as_os_str()),
                ("BYOK_NODE_MODULES", node_modules.as_os_str()),
            ],
        )
    })
}

/// The ceremonies end to end: on kryoptic, on every token, a batch, and the native wrap.
fn ceremonies(times: &mut Times) -> Result<(), String> {
    times.time("e2e (kryoptic, no leniency)", || {
        crate::e2e::run(DEFAULT_TOKEN)
    })?;
    times.time(
        "e2e --matrix (SoftHSM, kryoptic, NSS softokn, openCryptoki)",
        || crate::matrix::run(ModuleKind::ALL.to_vec()),
    )?;
    // NSS softokn makes RSA and EC conformantly (kryoptic only RSA), so the batch mixes kinds.
    times.time("e2e --batch 12 (NSS softokn, RSA and EC mixed)", || {
        crate::e2e::run_batch(12, ModuleKind::Nss)
    })?;
    // The one token with native CKM_RSA_AES_KEY_WRAP, no leniency.
    times.time(
        "e2e --token opencryptoki (native CKM_RSA_AES_KEY_WRAP, no leniency)",
        || crate::e2e::run(ModuleKind::OpenCryptoki),
    )
}

/// Runs `cargo test`, echoing its output, and adds up its `test result:` lines.
fn cargo_test(args: &[&str], env: &[(&str, &OsStr)]) -> Result<(u64, u64), String> {
    let cargo = cargo_bin();
    eprintln!("xtask: cargo {}", args.join(" "));
    let mut child = Command::new(&cargo)
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not run {cargo}: {e}"))?;
    let (mut passed, mut failed) = (0, 0);
    let stdout = child.stdout.take().expect("piped");
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| e.to_string())?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            let (p, f) = counts(rest);
            passed += p;
            failed += f;
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("`cargo {}` failed ({status})", args.join(" ")));
    }
    Ok((passed, failed))
}

/// The passed and failed counts of one `test result:` line (what follows that prefix).
fn counts(rest: &str) -> (u64, u64) {
    let (mut passed, mut failed) = (0, 0);
    for part in rest.split(';') {
        let mut words = part.split_whitespace().rev();
        let (Some(label), Some(count)) = (words.next(), words.next()) else {
            continue;
        };
        let count: u64 = count.trim_start_matches("ok.").trim().parse().unwrap_or(0);
        match label {
            "passed" => passed += count,
            "failed" => failed += count,
            _ => {}
        }
    }
    (passed, failed)
}

/// Makes (once) the venv with the Azure Python SDK and returns its interpreter.
fn python_venv() -> Result<PathBuf, String> {
    let venv = byok_tests::workspace().join("target").join("pyvenv");
    let python = venv.join("bin").join("python");
    let ready = python.exists()
        && Command::new(&python)
            .args(["-c", "import azure.keyvault.keys, azure.identity"])
            .status()
            .is_ok_and(|s| s.success());
    if ready {
        return Ok(python);
    }
    eprintln!(
        "xtask: making {} with {}",
        venv.display(),
        PYTHON_PACKAGES.join(" ")
    );
    run_checked(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    run_checked(
        Command::new(venv.join("bin").join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(PYTHON_PACKAGES),
    )?;
    Ok(python)
}

/// Installs (once per lock file) tests/js's locked packages into `target/js/node_modules` with
/// `npm ci`, and returns that directory. Node must be there (`.ci/run` installs Debian's
/// `nodejs` and `npm` where `node` is missing), at least [`NODE_MAJOR`].
fn node_modules() -> Result<PathBuf, String> {
    let version = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|e| format!("node is not installed ({e}): `apt-get install nodejs npm`"))?;
    let text = String::from_utf8_lossy(&version.stdout);
    let major: u32 = text
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < NODE_MAJOR {
        return Err(format!(
            "node {} is older than {NODE_MAJOR}, which tests/js's packages need",
            text.trim()
        ));
    }
    let source = byok_tests::workspace().join(JS_DIR);
    let target = byok_tests::workspace().join("target").join("js");
    let modules = target.join("node_modules");
    let lock = std::fs::read(source.join("package-lock.json"))
        .map_err(|e| format!("{JS_DIR}/package-lock.json: {e}"))?;
    // npm ci writes node_modules/.package-lock.json: there, and the same lock, is installed.
    let installed = std::fs::read(target.join("package-lock.json")).ok() == Some(lock.clone())
        && modules.join(".package-lock.json").exists();
    if installed {
        return Ok(modules);
    }
    std::fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(source.join(file), target.join(file))
            .map_err(|e| format!("{JS_DIR}/{file}: {e}"))?;
    }
    eprintln!("xtask: npm ci in {} ({JS_DIR}'s lock)", target.display());
    run_checked(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&target),
    )?;
    Ok(modules)
}
