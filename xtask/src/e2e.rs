//! `cargo xtask e2e`: the whole ceremony on one machine, as two workstations would run it.
//!
//! A fresh SoftHSM token (its own directory and SOFTHSM2_CONF under target/e2e/), a fresh
//! kv-emulator, and the real binaries. The online and offline "workstations" are two
//! directories; the only things that pass between them are files, copied across.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "1234";
const SO_PIN: &str = "5678";

/// One target key of the ceremony.
struct Target {
    label: &'static str,
    offline_args: &'static [&'static str],
    aes: bool,
}

const DEFAULT: &[Target] = &[Target {
    label: "target-rsa3072",
    offline_args: &["--kty", "RSA", "--size", "3072"],
    aes: false,
}];

const MATRIX_VAULT: &[Target] = &[
    Target {
        label: "target-rsa2048",
        offline_args: &["--kty", "RSA", "--size", "2048"],
        aes: false,
    },
    Target {
        label: "target-rsa3072",
        offline_args: &["--kty", "RSA", "--size", "3072"],
        aes: false,
    },
    Target {
        label: "target-rsa4096",
        offline_args: &["--kty", "RSA", "--size", "4096"],
        aes: false,
    },
    Target {
        label: "target-p256",
        offline_args: &["--kty", "EC", "--curve", "P-256"],
        aes: false,
    },
    Target {
        label: "target-p384",
        offline_args: &["--kty", "EC", "--curve", "P-384"],
        aes: false,
    },
    Target {
        label: "target-p521",
        offline_args: &["--kty", "EC", "--curve", "P-521"],
        aes: false,
    },
    Target {
        label: "target-p256k",
        offline_args: &["--kty", "EC", "--curve", "P-256K"],
        aes: false,
    },
];

const MATRIX_MHSM: &[Target] = &[Target {
    label: "target-aes256",
    offline_args: &["--kty", "oct", "--size", "256"],
    aes: true,
}];

/// The emulator process, stopped on every path (Drop).
struct Emulator {
    child: Child,
    state: PathBuf,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Ceremony {
    bin: PathBuf,
    online: PathBuf,
    offline: PathBuf,
    softhsm_conf: PathBuf,
    steps: Vec<(String, Duration)>,
}

pub fn run(root: &Path, matrix: bool) -> Result<(), String> {
    let started = Instant::now();
    let (mut c, dir) = prepare(root, "run")?;

    let mut summary = Vec::new();
    let groups: Vec<(&str, &[Target])> = if matrix {
        vec![("vault", MATRIX_VAULT), ("managedhsm", MATRIX_MHSM)]
    } else {
        vec![("vault", DEFAULT)]
    };
    for (flavor, targets) in groups {
        let emulator = start_emulator(&c.bin, &dir.join(format!("emulator-{flavor}")), flavor)?;
        println!(
            "e2e: kv-emulator ({flavor}) at {}",
            read_url(&emulator.state)?
        );
        c.online_group(&emulator, flavor, targets, &mut summary)?;
        drop(emulator);
    }
    println!(
        "\ne2e summary ({} s in all):",
        started.elapsed().as_secs_f32()
    );
    for (step, took) in &c.steps {
        println!("  {took:>8.2?}  {step}");
    }
    for line in &summary {
        println!("  PROVEN    {line}");
    }
    println!("e2e: {} of {} targets proven", summary.len(), summary.len());
    Ok(())
}

/// Builds the binaries and lays out a fresh ceremony: two workstation directories under
/// target/e2e/<prefix>-<ms>/ and a SoftHSM token `byok-e2e` of its own.
fn prepare(root: &Path, prefix: &str) -> Result<(Ceremony, PathBuf), String> {
    ensure_softhsm()?;
    crate::run(Command::new(crate::cargo_bin()).current_dir(root).args([
        "build",
        "--quiet",
        "-p",
        "byok-offline",
        "-p",
        "byok-online",
        "-p",
        "kv-emulator",
        "--bins",
    ]))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let dir = target_dir(root)
        .join("e2e")
        .join(format!("{prefix}-{stamp}"));
    let mut c = Ceremony {
        online: dir.join("online-workstation"),
        offline: dir.join("offline-workstation"),
        softhsm_conf: dir.join("offline-workstation").join("softhsm2.conf"),
        bin: target_dir(root).join("debug"),
        steps: Vec::new(),
    };
    for d in [&c.online, &c.offline, &c.offline.join("tokens")] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    std::fs::write(
        &c.softhsm_conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            c.offline.join("tokens").display()
        ),
    )
    .map_err(|e| e.to_string())?;
    println!("e2e: working in {}", dir.display());
    c.step("SoftHSM: fresh token `byok-e2e`", |c| {
        crate::run(
            Command::new("softhsm2-util")
                .args([
                    "--init-token",
                    "--free",
                    "--label",
                    "byok-e2e",
                    "--so-pin",
                    SO_PIN,
                    "--pin",
                    PIN,
                ])
                .env("SOFTHSM2_CONF", &c.softhsm_conf)
                .stdout(Stdio::null()),
        )
    })?;
    Ok((c, dir))
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

impl Ceremony {
    fn step(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        let n = self.steps.len() + 1;
        print!("[{n:>2}] {name} ... ");
        let t = Instant::now();
        let result = f(self);
        let took = t.elapsed();
        match &result {
            Ok(()) => println!("ok ({:.2} s)", took.as_secs_f32()),
            Err(_) => println!("FAILED ({:.2} s)", took.as_secs_f32()),
        }
        self.steps.push((name.to_string(), took));
        result.map_err(|e| format!("step `{name}` failed:\n{e}"))
    }

    fn online(&self, emulator: &Emulator, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new(self.bin.join("byok-online"));
        cmd.arg("--emulator")
            .arg(&emulator.state)
            .args(args)
            .current_dir(&self.online);
        capture(&mut cmd)
    }

    fn offline(&self, args: &[&str]) -> Result<String, String> {
        self.offline_at(&self.offline, args)
    }

    fn offline_at(&self, dir: &Path, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new(self.bin.join("byok-offline"));
        // The PIN travels in the environment, never on the command line.
        cmd.args(["--module", MODULE, "--token", "byok-e2e"])
            .args(args)
            .current_dir(dir)
            .env("SOFTHSM2_CONF", &self.softhsm_conf)
            .env("BYOK_PKCS11_PIN", PIN);
        capture(&mut cmd)
    }

    /// Copies files from one workstation to the other: the air gap.
    fn carry(&self, to_offline: bool, names: &[&str]) -> Result<(), String> {
        let (from, to) = if to_offline {
            (&self.online, &self.offline)
        } else {
            (&self.offline, &self.online)
        };
        for name in names {
            std::fs::copy(from.join(name), to.join(name))
                .map_err(|e| format!("carrying {name}: {e}"))?;
        }
        Ok(())
    }

    fn online_group(
        &mut self,
        emu: &Emulator,
        flavor: &str,
        targets: &[Target],
        summary: &mut Vec<String>,
    ) -> Result<(), String> {
        let transfer = format!("kek-{flavor}.transfer");
        self.step(
            &format!("1. online ({flavor}): kek create KEKforBYOK, RSA-HSM 4096, import only"),
            |c| {
                let out = c.online(
                    emu,
                    &["kek", "create", "--name", "KEKforBYOK", "--size", "4096"],
                )?;
                expect(&out, "size:       4096 bits")
            },
        )?;
        self.step(&format!("2. online ({flavor}): kek download -> {transfer}, carried to the offline workstation"), |c| {
            c.online(emu, &["kek", "download", "--name", "KEKforBYOK", "--out", &transfer])?;
            c.carry(true, &[&transfer])
        })?;
        for t in targets {
            let byok = format!("KeyTransferPackage-{}.byok", t.label);
            let sidecar = format!("{byok}.sidecar.json");
            let public = format!("{}.public.pem", t.label);
            self.step(
                &format!(
                    "3. offline: generate {} in SoftHSM + package, carried back",
                    t.label
                ),
                |c| {
                    let mut args = vec![
                        "package",
                        "--kek",
                        &transfer,
                        "--generate",
                        "--label",
                        t.label,
                        "--allow-zero-padded-kwp",
                    ];
                    args.extend_from_slice(t.offline_args);
                    c.offline(&args)?;
                    let mut files = vec![byok.as_str(), sidecar.as_str()];
                    if !t.aes {
                        files.push(&public);
                    }
                    c.carry(false, &files)
                },
            )?;
            self.step(
                &format!(
                    "4. online ({flavor}): import {} (sidecar checks the public key)",
                    t.label
                ),
                |c| {
                    let out =
                        c.online(emu, &["import", "--name", t.label, "--byok-file", &byok])?;
                    expect(
                        &out,
                        if t.aes {
                            "not checked (AES key"
                        } else {
                            "public key check: matches"
                        },
                    )
                },
            )?;
            if t.aes {
                let challenge = format!("{}.challenge.json", t.label);
                self.step(
                    &format!(
                        "   proof: the vault encrypts, the HSM decrypts ({})",
                        t.label
                    ),
                    |c| {
                        c.online(emu, &["prove-aes", "--name", t.label, "--out", &challenge])?;
                        c.carry(true, &[&challenge])?;
                        let out = c.offline(&[
                            "prove-aes",
                            "--label",
                            t.label,
                            "--challenge",
                            &challenge,
                        ])?;
                        expect(&out, "the vault holds the same AES key")
                    },
                )?;
                summary.push(format!(
                    "{}: vault AES-256-GCM ciphertext decrypts in the HSM",
                    t.label
                ));
            } else {
                self.step(&format!("   proof: byok-online verify {} (public keys equal, vault signature verifies)", t.label), |c| {
                    let out = c.online(emu, &["verify", "--name", t.label, "--public-key", &public])?;
                    expect(&out, "verifies locally")
                })?;
                summary.push(format!(
                    "{}: vault public key = HSM public key; vault signature verifies",
                    t.label
                ));
            }
        }
        Ok(())
    }
}

fn expect(out: &str, needle: &str) -> Result<(), String> {
    if out.contains(needle) {
        Ok(())
    } else {
        Err(format!("expected `{needle}` in the output:\n{out}"))
    }
}

fn capture(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("could not run {cmd:?}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{:?} {:?} exited with {}\nstdout:\n{stdout}\nstderr:\n{}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn start_emulator(bin: &Path, state: &Path, flavor: &str) -> Result<Emulator, String> {
    let mut child = Command::new(bin.join("kv-emulator"))
        .args([
            "--flavor",
            flavor,
            "--accept-zero-padded-kwp",
            "--state-dir",
        ])
        .arg(state)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("could not start kv-emulator: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    let emulator = Emulator {
        child,
        state: state.into(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(line) if line.starts_with("listening on ") => Ok(emulator),
        Ok(line) => Err(format!("kv-emulator did not start: `{}`", line.trim())),
        Err(_) => Err("kv-emulator did not start within 30 s".into()),
    }
}

fn read_url(state: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(state.join("connection.json")).map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    Ok(v["vault_url"].as_str().unwrap_or_default().to_string())
}

/// SoftHSM from Debian's packages: installed here when we are root on Debian, otherwise the
/// exact command is named.
pub fn ensure_softhsm() -> Result<(), String> {
    let present = Path::new(MODULE).exists()
        && Command::new("softhsm2-util")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if root && Path::new("/etc/debian_version").exists() {
        println!("e2e: SoftHSM is missing; installing Debian's softhsm2 with apt-get");
        crate::run(Command::new("apt-get").args(["update", "-qq"]))?;
        crate::run(
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "softhsm2"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null()),
        )?;
        return Ok(());
    }
    Err("SoftHSM is missing: install it with `sudo apt-get install softhsm2` (Debian/Ubuntu), then run again".into())
}

/// The kinds a batch cycles through (vault flavor: RSA and EC).
const BATCH_KINDS: [&str; 6] = [
    "kty = \"RSA\"\nsize = 2048",
    "kty = \"EC\"\ncurve = \"P-256\"",
    "kty = \"EC\"\ncurve = \"P-384\"",
    "kty = \"RSA\"\nsize = 3072",
    "kty = \"EC\"\ncurve = \"P-256K\"",
    "kty = \"EC\"\ncurve = \"P-521\"",
];

/// `cargo xtask e2e --batch N`: a batch ceremony of N mixed keys, each half killed (SIGKILL)
/// halfway and run again; then no key is doubled and the evidence log verifies.
pub fn run_batch(root: &Path, n: usize) -> Result<(), String> {
    let started = Instant::now();
    let (mut c, dir) = prepare(root, "batch")?;
    let manifest: String = (0..n)
        .map(|i| {
            format!(
                "[[key]]\nname = \"batch-{i:03}\"\n{}\ntags = {{ wave = \"1\" }}\n\n",
                BATCH_KINDS[i % BATCH_KINDS.len()]
            )
        })
        .collect();
    for d in [&c.online, &c.offline] {
        std::fs::write(d.join("keys.toml"), &manifest).map_err(|e| e.to_string())?;
    }
    let emu = start_emulator(&c.bin, &dir.join("emulator"), "vault")?;
    c.step(
        "1-2. online: kek create (RSA-HSM 4096) + download, carried across",
        |c| {
            c.online(
                &emu,
                &[
                    "kek",
                    "create",
                    "--name",
                    "KEKforBYOK",
                    "--size",
                    "4096",
                    "--out",
                    "kek.transfer",
                ],
            )?;
            c.carry(true, &["kek.transfer"])
        },
    )?;
    let half = n / 2;
    c.step(
        &format!("3a. offline: batch --jobs 2, killed (SIGKILL) after {half} keys"),
        |c| {
            let mut cmd = Command::new(c.bin.join("byok-offline"));
            cmd.args([
                "--module",
                MODULE,
                "--token",
                "byok-e2e",
                "batch",
                "--manifest",
                "keys.toml",
                "--kek",
                "kek.transfer",
                "--out",
                "packages",
                "--jobs",
                "2",
                "--allow-zero-padded-kwp",
                "--operator",
                "e2e",
            ])
            .current_dir(&c.offline)
            .env("SOFTHSM2_CONF", &c.softhsm_conf)
            .env("BYOK_PKCS11_PIN", PIN);
            kill_after(&mut cmd, half)
        },
    )?;
    c.step("3b. offline: batch again, resumed to the end", |c| {
        let out = c.offline(&[
            "batch",
            "--manifest",
            "keys.toml",
            "--kek",
            "kek.transfer",
            "--out",
            "packages",
            "--jobs",
            "2",
            "--allow-zero-padded-kwp",
            "--operator",
            "e2e",
        ])?;
        expect(&out, "batch:")
    })?;
    c.step(
        &format!("    check: exactly {n} target keys on the token, none doubled"),
        |c| {
            let out = c.offline(&["--output", "json", "keys"])?;
            let keys: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
            let labels: Vec<&str> = keys
                .as_array()
                .into_iter()
                .flatten()
                .filter(|k| {
                    k["class"] == "CKO_PRIVATE_KEY"
                        && k["label"].as_str().is_some_and(|l| l.starts_with("batch-"))
                })
                .filter_map(|k| k["label"].as_str())
                .collect();
            let unique: std::collections::BTreeSet<&str> = labels.iter().copied().collect();
            if labels.len() == n && unique.len() == n {
                Ok(())
            } else {
                Err(format!(
                    "{} private keys, {} distinct labels; expected {n} and {n}",
                    labels.len(),
                    unique.len()
                ))
            }
        },
    )?;
    c.step(
        "    carry packages/ (packages, sidecars, public keys, evidence log) across",
        |c| copy_dir(&c.offline.join("packages"), &c.online.join("packages")),
    )?;
    c.step(
        &format!("4a. online: batch-import --jobs 4, killed (SIGKILL) after {half} keys"),
        |c| {
            let mut cmd = Command::new(c.bin.join("byok-online"));
            cmd.arg("--emulator")
                .arg(&emu.state)
                .args([
                    "batch-import",
                    "--manifest",
                    "keys.toml",
                    "--dir",
                    "packages",
                    "--jobs",
                    "4",
                    "--operator",
                    "e2e",
                ])
                .current_dir(&c.online);
            kill_after(&mut cmd, half)
        },
    )?;
    c.step("4b. online: batch-import again, resumed to the end (imports and verifies)", |c| {
        let out = c.online(&emu, &["--output", "json", "batch-import", "--manifest", "keys.toml", "--dir", "packages", "--operator", "e2e"])?;
        let r: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
        let (imported, already) = (r["imported"].as_u64().unwrap_or(0) as usize, r["already_imported"].as_u64().unwrap_or(0) as usize);
        if imported + already == n && r["failed"] == 0 {
            Ok(())
        } else {
            Err(format!("resumed run: {imported} imported + {already} already imported, {} failed; expected {n}", r["failed"]))
        }
    })?;
    c.step(
        "    check: the evidence log verifies, and no key was imported twice",
        |c| {
            let out = c.offline_at(&c.online, &["log", "verify", "packages/ceremony-log.jsonl"])?;
            expect(&out, "the hash chain is intact")?;
            let text = std::fs::read_to_string(c.online.join("packages/ceremony-log.jsonl"))
                .map_err(|e| e.to_string())?;
            let mut imported = std::collections::BTreeMap::<String, usize>::new();
            let mut packaged = std::collections::BTreeMap::<String, usize>::new();
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
                let name = v["key_name"].as_str().unwrap_or_default().to_string();
                match v["event"].as_str() {
                    Some("imported") => *imported.entry(name).or_default() += 1,
                    Some("packaged") => *packaged.entry(name).or_default() += 1,
                    _ => {}
                }
            }
            if let Some((k, c)) = imported.iter().find(|(_, c)| **c > 1) {
                return Err(format!("{k} was imported {c} times"));
            }
            if let Some((k, c)) = packaged.iter().find(|(_, c)| **c > 1) {
                return Err(format!("{k} was packaged {c} times"));
            }
            // Every key is on record on both sides (a run killed between a step and its log entry
            // records the key as confirmed when resumed).
            let mut recorded = std::collections::BTreeMap::<String, (bool, bool)>::new();
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
                let entry = recorded
                    .entry(v["key_name"].as_str().unwrap_or_default().to_string())
                    .or_default();
                match v["event"].as_str() {
                    Some("packaged" | "package confirmed") => entry.0 = true,
                    Some("imported" | "import confirmed") => entry.1 = true,
                    _ => {}
                }
            }
            let complete = recorded.values().filter(|(p, i)| *p && *i).count();
            if complete != n {
                return Err(format!(
                    "{complete} of {n} keys are on record as both packaged and imported"
                ));
            }
            println!(
                "      evidence: {} entries, {} keys packaged, {} imported",
                text.lines().count(),
                packaged.len(),
                imported.len()
            );
            Ok(())
        },
    )?;
    drop(emu);
    println!(
        "\ne2e --batch {n} summary ({:.1} s in all):",
        started.elapsed().as_secs_f32()
    );
    for (step, took) in &c.steps {
        println!("  {took:>10.2?}  {step}");
    }
    println!(
        "e2e: batch of {n} keys proven: packaged, imported and verified once each; evidence log intact"
    );
    Ok(())
}

/// Runs `cmd` and kills it with SIGKILL once it has reported `after` finished keys.
fn kill_after(cmd: &mut Command, after: usize) -> Result<(), String> {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stderr = child.stderr.take().expect("piped");
    let mut seen = 0;
    for line in BufReader::new(stderr).lines() {
        let line = line.map_err(|e| e.to_string())?;
        if line.starts_with('[') {
            seen += 1;
        }
        if seen >= after {
            break;
        }
    }
    child.kill().map_err(|e| e.to_string())?;
    let _ = child.wait();
    if seen < after {
        return Err(format!(
            "the run ended after {seen} keys, before it could be interrupted"
        ));
    }
    println!("      killed after {seen} keys");
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| e.to_string())?;
    for entry in std::fs::read_dir(from).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        std::fs::copy(entry.path(), to.join(entry.file_name())).map_err(|e| e.to_string())?;
    }
    Ok(())
}
