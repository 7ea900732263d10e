//! `cargo xtask e2e`: the whole ceremony on one machine, as two workstations would run it.
//!
//! A fresh token (its own files in the offline workstation's directory under target/e2e/;
//! kryoptic unless `--token` names another), a fresh kv-emulator, and the real binaries. The
//! online and offline "workstations" are two directories; the only things that pass between
//! them are files, copied across. Only SoftHSM 2.6.1 runs with the leniency flags
//! (`--allow-zero-padded-kwp`, `--accept-zero-padded-kwp`): its RFC 5649 zero-pads RSA/EC keys.
//! On openCryptoki (`--token opencryptoki`) byok-offline runs inside the token's Debian sid
//! root and must pick the native `CKM_RSA_AES_KEY_WRAP`; the emulator runs on the host.

use crate::matrix::{Expect, expected};
use byok_core::evidence::{Event, Logged};
use byok_tests::{Emulator, ModuleKind, Profile, TestToken};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PIN: &str = "1234";
const TOKEN_LABEL: &str = "byok-e2e";

/// Where Debian's `chromium` puts the browser `minutes --format pdf` prints with.
const CHROMIUM: &str = "/usr/bin/chromium";

/// Each workstation's evidence log, in its directory (the binaries' default).
pub const LOG: &str = byok_core::evidence::DEFAULT_FILE_NAME;

/// The token `cargo xtask e2e` runs on: conformant, so it needs no leniency flag.
pub const DEFAULT_TOKEN: ModuleKind = ModuleKind::Kryoptic;

/// One target key of the ceremony.
pub(crate) struct Target {
    pub label: &'static str,
    /// The key kind as byok-core names it ("RSA 3072"), for the matrix's table.
    pub kind: &'static str,
    pub offline_args: &'static [&'static str],
    pub aes: bool,
}

impl Target {
    /// An AES target's size, as its `--size` flag gives it (256 when none is given).
    pub fn aes_bits(&self) -> &'static str {
        self.offline_args
            .windows(2)
            .find(|w| w[0] == "--size")
            .map_or("256", |w| w[1])
    }
}

const DEFAULT: &[Target] = &[Target {
    label: "target-rsa3072",
    kind: "RSA 3072",
    offline_args: &["--kty", "RSA", "--size", "3072"],
    aes: false,
}];

pub(crate) struct Ceremony {
    pub bin: PathBuf,
    pub online: PathBuf,
    pub offline: PathBuf,
    /// The offline workstation's token, made by the first step.
    token: Option<TestToken>,
    /// SoftHSM 2.6.1's zero padding allowed on both sides (`--allow-zero-padded-kwp`,
    /// `--accept-zero-padded-kwp`).
    lenient: bool,
    pub steps: Vec<(String, Duration)>,
}

/// `cargo xtask e2e [--token T]`: one RSA 3072 target under a 4096-bit KEK in a vault.
pub fn run(kind: ModuleKind) -> Result<(), String> {
    let started = Instant::now();
    let dir = work_dir("run");
    let mut c = Ceremony::prepare(&dir, kind, kind == ModuleKind::SoftHsm)?;
    let mut summary = Vec::new();
    let emulator = c.start_emulator(&dir.join("emulator-vault"), "vault")?;
    println!("e2e: kv-emulator (vault) at {}", emulator.url());
    c.check_token(DEFAULT)?;
    c.online_group(&emulator, "vault", DEFAULT, &mut summary)?;
    c.check_record(&emulator)?;
    drop(emulator);
    c.minutes(&dir)?;
    println!(
        "\ne2e summary ({:.1} s in all, on {kind}{}):",
        started.elapsed().as_secs_f32(),
        if c.lenient {
            ", with the zero-padding leniency"
        } else {
            ", no leniency flag"
        }
    );
    c.print_steps();
    for line in &summary {
        println!("  PROVEN    {line}");
    }
    let n = summary.len();
    println!("e2e: {n} target{} proven", if n == 1 { "" } else { "s" });
    Ok(())
}

/// A new directory target/e2e/<prefix>-<ms>/ for one run.
pub(crate) fn work_dir(prefix: &str) -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    byok_tests::target_dir()
        .join("e2e")
        .join(format!("{prefix}-{stamp}"))
}

/// What the leniency means, printed by every run that uses it.
fn leniency_note(kind: ModuleKind) {
    println!(
        "e2e: on {kind}: Debian's SoftHSM 2.6.1 zero-pads RSA/EC keys before RFC 5649, so this \
         run passes --allow-zero-padded-kwp to byok-offline and --accept-zero-padded-kwp to \
         kv-emulator. It rehearses the steps; it does not prove what Azure accepts (the \
         default token, kryoptic, needs neither flag)."
    );
}

impl Ceremony {
    /// Builds the binaries and lays out a fresh ceremony in `dir`: two workstation
    /// directories and a token `byok-e2e` of `kind` in the offline one.
    pub fn prepare(dir: &Path, kind: ModuleKind, lenient: bool) -> Result<Self, String> {
        crate::packages::ensure_token(kind)?;
        let bin = byok_tests::build_bins(Profile::Debug)?;
        let mut c = Ceremony {
            online: dir.join("online-workstation"),
            offline: dir.join("offline-workstation"),
            token: None,
            lenient,
            bin,
            steps: Vec::new(),
        };
        for d in [&c.online, &c.offline] {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        println!("e2e: working in {}", dir.display());
        if lenient {
            leniency_note(kind);
        }
        c.step(&format!("{kind}: fresh token"), |c| {
            c.token = Some(TestToken::new_in(kind, &c.offline, TOKEN_LABEL, PIN)?);
            Ok(())
        })?;
        let token = c.token();
        println!(
            "e2e: token `{}`, module {}{}",
            token.label(),
            token.module().display(),
            match token.daemon_pid() {
                Some(pid) => format!(
                    " inside {} (pkcsslotd pid {pid})",
                    byok_tests::opencryptoki_root().display()
                ),
                None => String::new(),
            }
        );
        Ok(c)
    }

    /// The emulator of one flavor; it accepts SoftHSM's zero-padded KWP only when lenient.
    pub fn start_emulator(&self, state: &Path, flavor: &str) -> Result<Emulator, String> {
        let mut args = vec!["--flavor", flavor];
        if self.lenient {
            args.push("--accept-zero-padded-kwp");
        }
        Emulator::start(&self.bin.join("kv-emulator"), state, &args)
    }

    pub fn print_steps(&self) {
        for (step, took) in &self.steps {
            println!("  {took:>10.2?}  {step}");
        }
    }

    pub fn step(
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

    pub fn token(&self) -> &TestToken {
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

    /// `byok-offline --module M --token LABEL ARGS` in `dir` (NSS's init string in the
    /// environment, from the kit).
    pub fn offline_cmd(&self, dir: &Path, args: &[&str]) -> Command {
        let token = self.token();
        // The PIN travels in the environment, never on the command line.
        let mut cmd = token.command_with_pin(self.bin.join("byok-offline"));
        cmd.arg("--module")
            .arg(token.module())
            .args(token.token_args())
            .args(args)
            .current_dir(dir);
        cmd
    }

    pub fn offline(&self, args: &[&str]) -> Result<String, String> {
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
            summary.push(self.prove(emu, t)?);
        }
        Ok(())
    }

    /// Before the ceremony: `check --log` of each kind the run packages, recorded in the
    /// offline workstation's log.
    pub fn check_token(&mut self, targets: &[Target]) -> Result<(), String> {
        for t in targets {
            let name = format!("0. offline: check --log {} ({})", LOG, t.kind);
            self.step(&name, |c| {
                let mut args = vec!["check", "--log", LOG];
                args.extend(t.offline_args.iter().filter(|a| **a != "--generate"));
                c.offline(&args).map(drop)
            })?;
        }
        Ok(())
    }

    /// The record: each workstation's log verifies, holds every step in order, and no
    /// secret (the PIN, the client secret, a token, key material) is in any byte of it.
    pub fn check_record(&mut self, emu: &Emulator) -> Result<(), String> {
        let connection = emu.state().join("connection.json");
        let text = std::fs::read_to_string(&connection)
            .map_err(|e| format!("{}: {e}", connection.display()))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", connection.display()))?;
        let client_secret = json["client_secret"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let pin = self.token().pin().to_string();
        let (offline, online) = (self.offline.join(LOG), self.online.join(LOG));
        self.step(
            "   record: both logs verify, every step in order, no secret",
            |_| {
                let secrets = [
                    ("the PIN", pin.as_str()),
                    ("the client secret", client_secret.as_str()),
                ];
                let n = crate::record::expect_steps(&offline, &crate::record::OFFLINE_STEPS)?;
                let m = crate::record::expect_steps(&online, &crate::record::ONLINE_STEPS)?;
                for log in [&offline, &online] {
                    crate::record::expect_no_secret(log, &secrets)?;
                }
                print!("({n} offline entries, {m} online) ");
                Ok(())
            },
        )
    }

    /// Step 5: the minutes from both logs, as PDF where Chromium is installed (checked with
    /// poppler's pdftotext and zbar's zbarimg, page 1 left as a PNG), else as HTML (checked
    /// for the same text); a tampered log refuses to render.
    pub fn minutes(&mut self, dir: &Path) -> Result<(), String> {
        let (offline, online) = (self.offline.join(LOG), self.online.join(LOG));
        let pdf = Path::new(CHROMIUM).exists();
        let format = if pdf { "pdf" } else { "html" };
        let out = dir.join(format!("minutes.{format}"));
        let name = format!("5. minutes: both logs verified and joined, {format} rendered");
        self.step(&name, |c| {
            let minutes = |logs: &[&Path], out: &Path| {
                let mut cmd = Command::new(c.bin.join("byok-online"));
                cmd.arg("minutes")
                    .args(logs)
                    .args(["--witness", "E2E Witness", "--format", format, "--out"])
                    .arg(out)
                    .current_dir(&c.online);
                cmd
            };
            capture(&mut minutes(&[&offline, &online], &out))?;
            let needles = crate::record::expected_in_minutes(&[&offline, &online])?;
            let heads: Vec<String> = [&offline, &online]
                .iter()
                .map(|log| {
                    let bytes = std::fs::read(log).map_err(|e| e.to_string())?;
                    byok_core::evidence::read_chain(&bytes)
                        .map(|chain| chain.head())
                        .map_err(|e| e.to_string())
                })
                .collect::<Result<_, String>>()?;
            if pdf {
                let page = crate::record::page_one_png();
                crate::record::check_minutes_pdf(&out, &needles, &heads, &page)?;
                print!(
                    "({} found by pdftotext, heads decoded by zbarimg, page 1: {}) ",
                    needles.len(),
                    page.display()
                );
            } else {
                let html = std::fs::read_to_string(&out).map_err(|e| e.to_string())?;
                if let Some(missing) = needles.iter().find(|n| !html.contains(n.as_str())) {
                    return Err(format!("{} does not show {missing}", out.display()));
                }
                print!("(no Chromium: HTML, {} found) ", needles.len());
            }
            // A log edited after the fact: the minutes refuse it and write nothing.
            let text = std::fs::read_to_string(&online).map_err(|e| e.to_string())?;
            let tampered = dir.join("tampered-log.jsonl");
            std::fs::write(&tampered, text.replacen("4096", "2048", 1))
                .map_err(|e| e.to_string())?;
            let refused_out = dir.join(format!("tampered-minutes.{format}"));
            let refused = minutes(&[&offline, &tampered], &refused_out)
                .output()
                .map_err(|e| e.to_string())?;
            if refused.status.code() != Some(3) || refused_out.exists() {
                return Err(format!(
                    "minutes of a tampered log: exit {}, file written: {} (want exit 3, none)",
                    refused.status,
                    refused_out.exists()
                ));
            }
            Ok(())
        })
    }

    /// Steps 1 and 2: the KEK made in the vault, its transfer file carried offline.
    pub fn kek(&mut self, emu: &Emulator, flavor: &str, transfer: &str) -> Result<(), String> {
        self.step(
            &format!("1. online ({flavor}): kek create KEKforBYOK, RSA-HSM 4096, import only"),
            |c| {
                let out = c.online(
                    emu,
                    &["kek", "create", "--name", "KEKforBYOK", "--size", "4096"],
                )?;
                expect(&out, "4096 bits")
            },
        )?;
        self.step(&format!("2. online ({flavor}): kek download -> {transfer}, carried to the offline workstation"), |c| {
            c.online(emu, &["kek", "download", "--name", "KEKforBYOK", "--out", transfer])?;
            c.carry(true, &[transfer])
        })
    }

    /// `package --generate` for `t` under the KEK in `transfer`: the leniency flag only on a
    /// lenient run.
    pub fn package_args<'a>(&self, transfer: &'a str, t: &'a Target) -> Vec<&'a str> {
        let mut args = vec![
            "package",
            "--kek",
            transfer,
            "--generate",
            "--label",
            t.label,
        ];
        args.extend_from_slice(t.offline_args);
        if self.lenient {
            args.push("--allow-zero-padded-kwp");
        }
        args
    }

    /// The files `package` writes for `t`: the .byok, its sidecar and (RSA/EC) the public key.
    pub fn package_files(t: &Target) -> Vec<String> {
        let byok = format!("KeyTransferPackage-{}.byok", t.label);
        let mut files = vec![format!("{byok}.sidecar.json"), byok];
        if !t.aes {
            files.push(format!("{}.public.pem", t.label));
        }
        files
    }

    /// Carries `t`'s package files from the offline workstation to the online one.
    pub fn carry_package(&self, t: &Target) -> Result<(), String> {
        let files = Self::package_files(t);
        let names: Vec<&str> = files.iter().map(String::as_str).collect();
        self.carry(false, &names)
    }

    /// Steps 3 and 4 for one target: generated and packaged in the token, imported in the vault.
    fn package_and_import(
        &mut self,
        emu: &Emulator,
        flavor: &str,
        transfer: &str,
        t: &Target,
    ) -> Result<(), String> {
        let name = format!(
            "3. offline: generate {} in {} + package, carried back",
            t.label,
            self.token().kind()
        );
        self.step(&name, |c| {
            let out = c.offline(&c.package_args(transfer, t))?;
            // byok-offline names the wrap it picked; openCryptoki's must be the native one.
            if let Some(line) = out
                .lines()
                .find(|l| l.trim_start().starts_with("wrap_path"))
            {
                let words: Vec<&str> = line.split_whitespace().collect();
                print!("({}) ", words.join(" "));
            }
            if c.token().kind() == ModuleKind::OpenCryptoki {
                expect(&out, "native CKM_RSA_AES_KEY_WRAP")?;
            }
            c.carry_package(t)
        })?;
        self.import(emu, flavor, t)
    }

    /// Step 4: the package imported (the sidecar checks the public key).
    pub fn import(&mut self, emu: &Emulator, flavor: &str, t: &Target) -> Result<(), String> {
        let byok = format!("KeyTransferPackage-{}.byok", t.label);
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
                        "matches"
                    },
                )
            },
        )
    }

    /// The proof that the vault holds the token's key; returns the summary line.
    pub fn prove(&mut self, emu: &Emulator, t: &Target) -> Result<String, String> {
        if t.aes {
            self.prove_aes(emu, t)
        } else {
            self.prove_public_key(emu, t)
        }
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
                c.online(
                    emu,
                    &[
                        "prove-aes",
                        "--name",
                        t.label,
                        "--size",
                        t.aes_bits(),
                        "--out",
                        &challenge,
                    ],
                )?;
                c.carry(true, &[&challenge])?;
                let out =
                    c.offline(&["prove-aes", "--label", t.label, "--challenge", &challenge])?;
                expect(&out, "the vault holds the same AES key")
            },
        )?;
        Ok(format!(
            "{}: vault AES-{}-GCM ciphertext decrypts in the HSM",
            t.label,
            t.aes_bits()
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

pub(crate) fn expect(out: &str, needle: &str) -> Result<(), String> {
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

/// The kinds a batch cycles through (vault flavor: RSA and EC), with their manifest lines.
const BATCH_KINDS: [(&str, &str); 6] = [
    ("RSA 2048", "kty = \"RSA\"\nsize = 2048"),
    ("EC P-256", "kty = \"EC\"\ncurve = \"P-256\""),
    ("EC P-384", "kty = \"EC\"\ncurve = \"P-384\""),
    ("RSA 3072", "kty = \"RSA\"\nsize = 3072"),
    ("EC P-256K", "kty = \"EC\"\ncurve = \"P-256K\""),
    ("EC P-521", "kty = \"EC\"\ncurve = \"P-521\""),
];

/// The batch kinds a token runs: on a lenient run (SoftHSM) all of them, else those the
/// token is known to do correctly (the matrix's expectations), since `batch` refuses the rest:
/// on kryoptic RSA 2048 and 3072 (it writes short EC scalars), on NSS softokn RSA and EC
/// P-256/P-384/P-521 mixed.
fn batch_kinds(kind: ModuleKind, lenient: bool) -> Vec<(&'static str, &'static str)> {
    BATCH_KINDS
        .into_iter()
        .filter(|(name, _)| lenient || expected(kind, name) == Expect::Proven)
        .collect()
}

/// `cargo xtask e2e --batch N [--token T]`: a batch ceremony of N mixed keys, each half
/// killed (SIGKILL) halfway and run again; then no key is doubled and the evidence log verifies.
pub fn run_batch(n: usize, kind: ModuleKind) -> Result<(), String> {
    let started = Instant::now();
    let dir = work_dir("batch");
    let mut c = Ceremony::prepare(&dir, kind, kind == ModuleKind::SoftHsm)?;
    let kinds = batch_kinds(kind, c.lenient);
    let names: Vec<&str> = kinds.iter().map(|(name, _)| *name).collect();
    println!("e2e: the batch cycles through {}", names.join(", "));
    let manifest = batch_manifest(n, &kinds);
    for d in [&c.online, &c.offline] {
        std::fs::write(d.join("keys.toml"), &manifest).map_err(|e| e.to_string())?;
    }
    let emu = c.start_emulator(&dir.join("emulator"), "vault")?;
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
    c.step(
        &format!("5. minutes of the batch: {n} keys, each packaged, imported and verified"),
        |c| batch_minutes(c, &dir, n),
    )?;
    drop(emu);
    println!(
        "\ne2e --batch {n} summary ({:.1} s in all, on {kind}):",
        started.elapsed().as_secs_f32()
    );
    c.print_steps();
    println!(
        "e2e: batch of {n} keys proven: packaged, imported and verified once each; evidence log intact"
    );
    Ok(())
}

/// `keys.toml` for a batch of `n` keys cycling through `kinds`.
fn batch_manifest(n: usize, kinds: &[(&str, &str)]) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[[key]]\nname = \"batch-{i:03}\"\n{}\ntags = {{ wave = \"1\" }}\n\n",
                kinds[i % kinds.len()].1
            )
        })
        .collect()
}

/// The offline batch, the same both times it runs.
const OFFLINE_BATCH: [&str; 11] = [
    "batch",
    "--manifest",
    "keys.toml",
    "--kek",
    "kek.transfer",
    "--dir",
    "packages",
    "--jobs",
    "2",
    "--operator",
    "e2e",
];

impl Ceremony {
    /// Step 3: the offline batch killed halfway and resumed; then the token is counted.
    fn batch_offline(&mut self, n: usize) -> Result<(), String> {
        let half = n / 2;
        let mut args = OFFLINE_BATCH.to_vec();
        if self.lenient {
            args.push("--allow-zero-padded-kwp");
        }
        self.step(
            &format!("3a. offline: batch --jobs 2, killed (SIGKILL) after {half} keys"),
            |c| kill_after(&mut c.offline_cmd(&c.offline, &args), half),
        )?;
        self.step("3b. offline: batch again, resumed to the end", |c| {
            let out = c.offline(&args)?;
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
    let labels: Vec<&str> = keys["keys"]
        .as_array()
        .ok_or_else(|| format!("`keys --output json` printed no key list: {out}"))?
        .iter()
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

/// The batch's minutes (HTML: the single-key e2e proves the PDF path) from the connected
/// side's logs: its own (the KEK) and the batch's (carried across, then appended to); they
/// list every key, each verified.
fn batch_minutes(c: &Ceremony, dir: &Path, n: usize) -> Result<(), String> {
    let out = dir.join("minutes.html");
    let mut cmd = Command::new(c.bin.join("byok-online"));
    cmd.args([
        "--output",
        "json",
        "minutes",
        LOG,
        "packages/ceremony-log.jsonl",
        "--out",
    ])
    .arg(&out)
    .current_dir(&c.online);
    let report: serde_json::Value = serde_json::from_str(&capture(&mut cmd)?)
        .map_err(|e| format!("minutes --output json: {e}"))?;
    let keys = report["keys"].as_array().cloned().unwrap_or_default();
    let verified = keys.iter().filter(|k| k["verified"] == true).count();
    if keys.len() != n || verified != n {
        return Err(format!(
            "the minutes list {} keys, {verified} verified; want {n} and {n}: {report}",
            keys.len()
        ));
    }
    print!("({n} keys listed, {verified} verified) ");
    Ok(())
}

/// Per key name, how many `imported` and how many `packaged` entries the log holds.
type EventCounts = (BTreeMap<String, usize>, BTreeMap<String, usize>);

fn event_counts(log: &str) -> Result<EventCounts, String> {
    let mut imported = BTreeMap::<String, usize>::new();
    let mut packaged = BTreeMap::<String, usize>::new();
    for logged in entries(log)? {
        let name = logged.entry.key_name().unwrap_or_default().to_string();
        match logged.entry.event() {
            Event::Imported => *imported.entry(name).or_default() += 1,
            Event::Packaged => *packaged.entry(name).or_default() += 1,
            _ => {}
        }
    }
    Ok((imported, packaged))
}

/// How many keys are on record as both packaged and imported (a run killed between a step and
/// its log entry records the key as confirmed when resumed).
fn complete_records(log: &str) -> Result<usize, String> {
    let mut recorded = BTreeMap::<String, (bool, bool)>::new();
    for logged in entries(log)? {
        let event = logged.entry.event();
        let entry = recorded
            .entry(logged.entry.key_name().unwrap_or_default().to_string())
            .or_default();
        entry.0 |= event.records_package();
        entry.1 |= event.records_import();
    }
    Ok(recorded.values().filter(|(p, i)| *p && *i).count())
}

/// Every line of a log as its typed entry.
fn entries(log: &str) -> Result<Vec<Logged>, String> {
    log.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Logged::of_line(l).ok_or_else(|| format!("not a known entry: {l}")))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names(kinds: &[(&'static str, &'static str)]) -> Vec<&'static str> {
        kinds.iter().map(|(name, _)| *name).collect()
    }

    #[test]
    fn a_batch_runs_only_the_kinds_its_token_does_correctly() {
        assert_eq!(
            names(&batch_kinds(ModuleKind::Kryoptic, false)),
            ["RSA 2048", "RSA 3072"]
        );
        assert_eq!(
            names(&batch_kinds(ModuleKind::Nss, false)),
            ["RSA 2048", "EC P-256", "EC P-384", "RSA 3072", "EC P-521"]
        );
        assert_eq!(
            batch_kinds(ModuleKind::SoftHsm, true).len(),
            BATCH_KINDS.len()
        );
    }

    #[test]
    fn the_batch_manifest_cycles_through_the_kinds() {
        let kinds = batch_kinds(ModuleKind::Kryoptic, false);
        let manifest = batch_manifest(6, &kinds);
        assert_eq!(manifest.matches("[[key]]").count(), 6);
        assert_eq!(manifest.matches("size = 2048").count(), 3);
        assert!(manifest.contains("name = \"batch-005\""));
        assert!(!manifest.contains("kty = \"EC\""));
        let nss = batch_manifest(6, &batch_kinds(ModuleKind::Nss, false));
        assert_eq!(nss.matches("kty = \"EC\"").count(), 3);
    }

    #[test]
    fn only_a_lenient_run_passes_the_leniency_flag() {
        let t = &DEFAULT[0];
        let mut c = Ceremony {
            bin: PathBuf::new(),
            online: PathBuf::new(),
            offline: PathBuf::new(),
            token: None,
            lenient: false,
            steps: Vec::new(),
        };
        assert!(!c.package_args("k", t).contains(&"--allow-zero-padded-kwp"));
        c.lenient = true;
        assert!(c.package_args("k", t).contains(&"--allow-zero-padded-kwp"));
    }
}
