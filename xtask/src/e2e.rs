//! `cargo xtask e2e`: the whole ceremony on one machine, as two workstations would run it.
//!
//! A fresh SoftHSM token (its own directory and SOFTHSM2_CONF under target/e2e/), a fresh
//! kv-emulator, and the real binaries. The online and offline "workstations" are two
//! directories; the only things that pass between them are files, copied across.

use crate::ci::run_checked;
use byok_tests::{Emulator, Profile, TestToken};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PIN: &str = "1234";
const TOKEN_LABEL: &str = "byok-e2e";

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

struct Ceremony {
    bin: PathBuf,
    online: PathBuf,
    offline: PathBuf,
    /// The offline workstation's token, made by the first step.
    token: Option<TestToken>,
    steps: Vec<(String, Duration)>,
}

pub fn run(matrix: bool) -> Result<(), String> {
    let started = Instant::now();
    let (mut c, dir) = prepare("run")?;

    let mut summary = Vec::new();
    let groups: Vec<(&str, &[Target])> = if matrix {
        vec![("vault", MATRIX_VAULT), ("managedhsm", MATRIX_MHSM)]
    } else {
        vec![("vault", DEFAULT)]
    };
    for (flavor, targets) in groups {
        let emulator = start_emulator(&c.bin, &dir.join(format!("emulator-{flavor}")), flavor)?;
        println!("e2e: kv-emulator ({flavor}) at {}", emulator.url());
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
    let n = summary.len();
    println!("e2e: {n} target{} proven", if n == 1 { "" } else { "s" });
    Ok(())
}

/// Builds the binaries and lays out a fresh ceremony: two workstation directories under
/// target/e2e/<prefix>-<ms>/ and a SoftHSM token `byok-e2e` of its own.
fn prepare(prefix: &str) -> Result<(Ceremony, PathBuf), String> {
    ensure_softhsm()?;
    let bin = byok_tests::build_bins(Profile::Debug)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let dir = byok_tests::target_dir()
        .join("e2e")
        .join(format!("{prefix}-{stamp}"));
    let mut c = Ceremony {
        online: dir.join("online-workstation"),
        offline: dir.join("offline-workstation"),
        token: None,
        bin,
        steps: Vec::new(),
    };
    for d in [&c.online, &c.offline] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    println!("e2e: working in {}", dir.display());
    c.step(&format!("SoftHSM: fresh token `{TOKEN_LABEL}`"), |c| {
        c.token = Some(TestToken::softhsm_in(&c.offline, TOKEN_LABEL, PIN)?);
        Ok(())
    })?;
    Ok((c, dir))
}

/// The emulator of one flavor, accepting SoftHSM's zero-padded KWP.
fn start_emulator(bin: &Path, state: &Path, flavor: &str) -> Result<Emulator, String> {
    Emulator::start(
        &bin.join("kv-emulator"),
        state,
        &["--flavor", flavor, "--accept-zero-padded-kwp"],
    )
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

    fn token(&self) -> &TestToken {
        self.token
            .as_ref()
            .expect("prepare() makes the token first")
    }

    /// `byok-online --emulator STATE ARGS` on the online workstation.
    fn online_cmd(&self, emulator: &Emulator, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.bin.join("byok-online"));
        cmd.arg("--emulator")
            .arg(emulator.state())
            .args(args)
            .current_dir(&self.online);
        cmd
    }

    fn online(&self, emulator: &Emulator, args: &[&str]) -> Result<String, String> {
        capture(&mut self.online_cmd(emulator, args))
    }

    /// `byok-offline --module M --token byok-e2e ARGS` in `dir`.
    fn offline_cmd(&self, dir: &Path, args: &[&str]) -> Command {
        let token = self.token();
        // The PIN travels in the environment, never on the command line.
        let mut cmd = token.command_with_pin(self.bin.join("byok-offline"));
        cmd.arg("--module")
            .arg(token.module())
            .args(["--token", token.label()])
            .args(args)
            .current_dir(dir);
        cmd
    }

    fn offline(&self, args: &[&str]) -> Result<String, String> {
        self.offline_at(&self.offline, args)
    }

    fn offline_at(&self, dir: &Path, args: &[&str]) -> Result<String, String> {
        capture(&mut self.offline_cmd(dir, args))
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

    /// One emulator's part: its KEK, then each target packaged, imported and proven.
    fn online_group(
        &mut self,
        emu: &Emulator,
        flavor: &str,
        targets: &[Target],
        summary: &mut Vec<String>,
    ) -> Result<(), String> {
        let transfer = format!("kek-{flavor}.transfer");
        self.kek(emu, flavor, &transfer)?;
        for t in targets {
            self.package_and_import(emu, flavor, &transfer, t)?;
            let proven = if t.aes {
                self.prove_aes(emu, t)?
            } else {
                self.prove_public_key(emu, t)?
            };
            summary.push(proven);
        }
        Ok(())
    }

    /// Steps 1 and 2: the KEK made in the vault, its transfer file carried offline.
    fn kek(&mut self, emu: &Emulator, flavor: &str, transfer: &str) -> Result<(), String> {
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
            c.online(emu, &["kek", "download", "--name", "KEKforBYOK", "--out", transfer])?;
            c.carry(true, &[transfer])
        })
    }

    /// Steps 3 and 4 for one target: generated and packaged in SoftHSM, imported in the vault.
    fn package_and_import(
        &mut self,
        emu: &Emulator,
        flavor: &str,
        transfer: &str,
        t: &Target,
    ) -> Result<(), String> {
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
                    transfer,
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
                let out = c.online(emu, &["import", "--name", t.label, "--byok-file", &byok])?;
                expect(
                    &out,
                    if t.aes {
                        "not checked (AES key"
                    } else {
                        "public key check: matches"
                    },
                )
            },
        )
    }

    /// The AES proof: the vault encrypts, the HSM decrypts. Returns the summary line.
    fn prove_aes(&mut self, emu: &Emulator, t: &Target) -> Result<String, String> {
        let challenge = format!("{}.challenge.json", t.label);
        self.step(
            &format!(
                "   proof: the vault encrypts, the HSM decrypts ({})",
                t.label
            ),
            |c| {
                c.online(emu, &["prove-aes", "--name", t.label, "--out", &challenge])?;
                c.carry(true, &[&challenge])?;
                let out =
                    c.offline(&["prove-aes", "--label", t.label, "--challenge", &challenge])?;
                expect(&out, "the vault holds the same AES key")
            },
        )?;
        Ok(format!(
            "{}: vault AES-256-GCM ciphertext decrypts in the HSM",
            t.label
        ))
    }

    /// The RSA/EC proof: `byok-online verify`. Returns the summary line.
    fn prove_public_key(&mut self, emu: &Emulator, t: &Target) -> Result<String, String> {
        let public = format!("{}.public.pem", t.label);
        self.step(
            &format!(
                "   proof: byok-online verify {} (public keys equal, vault signature verifies)",
                t.label
            ),
            |c| {
                let out = c.online(emu, &["verify", "--name", t.label, "--public-key", &public])?;
                expect(&out, "verifies locally")
            },
        )?;
        Ok(format!(
            "{}: vault public key = HSM public key; vault signature verifies",
            t.label
        ))
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

/// SoftHSM from Debian's packages: installed here when we are root on Debian, otherwise the
/// exact command is named.
pub fn ensure_softhsm() -> Result<(), String> {
    let present = byok_tests::softhsm_module().exists()
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
        run_checked(Command::new("apt-get").args(["update", "-qq"]))?;
        run_checked(
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
pub fn run_batch(n: usize) -> Result<(), String> {
    let started = Instant::now();
    let (mut c, dir) = prepare("batch")?;
    let manifest = batch_manifest(n);
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
    c.batch_offline(n)?;
    c.step(
        "    carry packages/ (packages, sidecars, public keys, evidence log) across",
        |c| copy_dir(&c.offline.join("packages"), &c.online.join("packages")),
    )?;
    c.batch_online(&emu, n)?;
    c.step(
        "    check: the evidence log verifies, and no key was imported twice",
        |c| check_evidence(c, n),
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

/// `keys.toml` for a batch of `n` keys cycling through [`BATCH_KINDS`].
fn batch_manifest(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[[key]]\nname = \"batch-{i:03}\"\n{}\ntags = {{ wave = \"1\" }}\n\n",
                BATCH_KINDS[i % BATCH_KINDS.len()]
            )
        })
        .collect()
}

/// The offline batch, the same both times it runs.
const OFFLINE_BATCH: [&str; 12] = [
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
];

impl Ceremony {
    /// Step 3: the offline batch killed halfway and resumed; then the token is counted.
    fn batch_offline(&mut self, n: usize) -> Result<(), String> {
        let half = n / 2;
        self.step(
            &format!("3a. offline: batch --jobs 2, killed (SIGKILL) after {half} keys"),
            |c| kill_after(&mut c.offline_cmd(&c.offline, &OFFLINE_BATCH), half),
        )?;
        self.step("3b. offline: batch again, resumed to the end", |c| {
            let out = c.offline(&OFFLINE_BATCH)?;
            expect(&out, "batch:")
        })?;
        self.step(
            &format!("    check: exactly {n} target keys on the token, none doubled"),
            |c| check_token_keys(c, n),
        )
    }

    /// Step 4: the online batch import killed halfway and resumed.
    fn batch_online(&mut self, emu: &Emulator, n: usize) -> Result<(), String> {
        let half = n / 2;
        self.step(
            &format!("4a. online: batch-import --jobs 4, killed (SIGKILL) after {half} keys"),
            |c| {
                let mut cmd = c.online_cmd(
                    emu,
                    &[
                        "batch-import",
                        "--manifest",
                        "keys.toml",
                        "--dir",
                        "packages",
                        "--jobs",
                        "4",
                        "--operator",
                        "e2e",
                    ],
                );
                kill_after(&mut cmd, half)
            },
        )?;
        self.step("4b. online: batch-import again, resumed to the end (imports and verifies)", |c| {
            let out = c.online(emu, &["--output", "json", "batch-import", "--manifest", "keys.toml", "--dir", "packages", "--operator", "e2e"])?;
            let r: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
            let (imported, already) = (r["imported"].as_u64().unwrap_or(0) as usize, r["already_imported"].as_u64().unwrap_or(0) as usize);
            if imported + already == n && r["failed"] == 0 {
                Ok(())
            } else {
                Err(format!("resumed run: {imported} imported + {already} already imported, {} failed; expected {n}", r["failed"]))
            }
        })
    }
}

/// Exactly `n` private keys `batch-*` on the token, each label once.
fn check_token_keys(c: &Ceremony, n: usize) -> Result<(), String> {
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
    let unique: BTreeSet<&str> = labels.iter().copied().collect();
    if labels.len() == n && unique.len() == n {
        Ok(())
    } else {
        Err(format!(
            "{} private keys, {} distinct labels; expected {n} and {n}",
            labels.len(),
            unique.len()
        ))
    }
}

/// The evidence log verifies, no key was packaged or imported twice, and all `n` are on
/// record on both sides.
fn check_evidence(c: &Ceremony, n: usize) -> Result<(), String> {
    let out = c.offline_at(&c.online, &["log", "verify", "packages/ceremony-log.jsonl"])?;
    expect(&out, "the hash chain is intact")?;
    let text = std::fs::read_to_string(c.online.join("packages/ceremony-log.jsonl"))
        .map_err(|e| e.to_string())?;
    let (imported, packaged) = event_counts(&text)?;
    if let Some((k, c)) = imported.iter().find(|(_, c)| **c > 1) {
        return Err(format!("{k} was imported {c} times"));
    }
    if let Some((k, c)) = packaged.iter().find(|(_, c)| **c > 1) {
        return Err(format!("{k} was packaged {c} times"));
    }
    let complete = complete_records(&text)?;
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
}

/// Per key name, how many `imported` and how many `packaged` entries the log holds.
type EventCounts = (BTreeMap<String, usize>, BTreeMap<String, usize>);

fn event_counts(log: &str) -> Result<EventCounts, String> {
    let mut imported = BTreeMap::<String, usize>::new();
    let mut packaged = BTreeMap::<String, usize>::new();
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let name = v["key_name"].as_str().unwrap_or_default().to_string();
        match v["event"].as_str() {
            Some("imported") => *imported.entry(name).or_default() += 1,
            Some("packaged") => *packaged.entry(name).or_default() += 1,
            _ => {}
        }
    }
    Ok((imported, packaged))
}

/// How many keys are on record as both packaged and imported (a run killed between a step and
/// its log entry records the key as confirmed when resumed).
fn complete_records(log: &str) -> Result<usize, String> {
    let mut recorded = BTreeMap::<String, (bool, bool)>::new();
    for line in log.lines() {
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
    Ok(recorded.values().filter(|(p, i)| *p && *i).count())
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
