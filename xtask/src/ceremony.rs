//! The ceremony harness `cargo xtask e2e`, its batch and its matrix drive: a fresh token, a
//! fresh kv-emulator and the real binaries, with two workstation directories that only files
//! pass between.

use crate::util::expect;
use byok_cli_common::KindFlags;
use byok_core::target::{KeyKind, Kty};
use byok_core::{TargetPublicKey, package, sidecar};
use byok_tests::{Emulator, ModuleKind, Profile, TestToken};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const PIN: &str = "1234";
const TOKEN_LABEL: &str = "byok-e2e";

/// Where Debian's `chromium` puts the browser `minutes --format pdf` prints with.
const CHROMIUM: &str = "/usr/bin/chromium";

/// Each workstation's evidence log, in its directory (the binaries' default).
pub const LOG: &str = byok_core::evidence::DEFAULT_FILE_NAME;

/// One target key of the ceremony.
pub(crate) struct Target {
    /// `target-rsa3072`, `target-p256k`, `target-aes128`.
    pub label: String,
    pub kind: KeyKind,
    /// `--kty`, `--size`, `--curve` for the kind ([`KindFlags`]).
    pub offline_args: Vec<String>,
}

impl Target {
    /// The target of `kind`, labelled after it.
    pub fn of(kind: KeyKind) -> Self {
        let name = match kind {
            KeyKind::Rsa { bits } => format!("rsa{bits}"),
            KeyKind::Ec { curve } => curve.name().replace('-', "").to_ascii_lowercase(),
            KeyKind::Oct { bits } => format!("aes{bits}"),
        };
        Self {
            label: format!("target-{name}"),
            kind,
            offline_args: KindFlags::of(kind).to_args(),
        }
    }

    /// An AES key (proved with `prove-aes`; no public key file).
    pub fn aes(&self) -> bool {
        self.kind.kty() == Kty::Oct
    }

    /// An AES target's size, for `prove-aes --size`.
    pub fn aes_bits(&self) -> String {
        self.kind.bits().to_string()
    }
}

pub(crate) struct Ceremony {
    pub bin: PathBuf,
    pub online: PathBuf,
    pub offline: PathBuf,
    /// The offline workstation's token, made by the first step.
    pub(crate) token: Option<TestToken>,
    /// SoftHSM 2.6.1's zero padding allowed on both sides (`--allow-zero-padded-kwp`,
    /// `--accept-zero-padded-kwp`).
    pub lenient: bool,
    pub steps: Vec<(String, Duration)>,
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
        crate::tokens::ensure_token(kind)?;
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
    pub(crate) fn online_cmd(&self, emulator: &Emulator, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.bin.join("byok-online"));
        cmd.arg("--emulator")
            .arg(emulator.state())
            .args(args)
            .current_dir(&self.online);
        cmd
    }

    pub(crate) fn online(&self, emulator: &Emulator, args: &[&str]) -> Result<String, String> {
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

    pub(crate) fn offline_at(&self, dir: &Path, args: &[&str]) -> Result<String, String> {
        capture(&mut self.offline_cmd(dir, args))
    }

    /// Copies files from one workstation to the other: the air gap.
    pub(crate) fn carry(&self, to_offline: bool, names: &[&str]) -> Result<(), String> {
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
    pub(crate) fn online_group(
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
                args.extend(t.offline_args.iter().map(String::as_str));
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
                let n = crate::record::expect_offline_steps(&offline)?;
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
            &t.label,
        ];
        args.extend(t.offline_args.iter().map(String::as_str));
        if self.lenient {
            args.push("--allow-zero-padded-kwp");
        }
        args
    }

    /// The files `package` writes for `t`: the .byok, its sidecar and (RSA/EC) the public key.
    pub fn package_files(t: &Target) -> Vec<String> {
        let byok = package::file_name(&t.label);
        let sidecar = sidecar::path_for(Path::new(&byok));
        let mut files = vec![sidecar.display().to_string(), byok];
        if !t.aes() {
            files.push(TargetPublicKey::file_name(&t.label));
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
    pub(crate) fn package_and_import(
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
            let out = crate::record::reused_check(c.offline(&c.package_args(transfer, t))?)?;
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
        let byok = package::file_name(&t.label);
        self.step(
            &format!(
                "4. online ({flavor}): import {} (sidecar checks the public key)",
                t.label
            ),
            |c| {
                let out = c.online(emu, &["import", "--name", &t.label, "--byok-file", &byok])?;
                expect(
                    &out,
                    if t.aes() {
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
        if t.aes() {
            self.prove_aes(emu, t)
        } else {
            self.prove_public_key(emu, t)
        }
    }

    /// The AES proof: the vault encrypts, the HSM decrypts. Returns the summary line.
    pub(crate) fn prove_aes(&mut self, emu: &Emulator, t: &Target) -> Result<String, String> {
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
                        &t.label,
                        "--size",
                        &t.aes_bits(),
                        "--out",
                        &challenge,
                    ],
                )?;
                c.carry(true, &[&challenge])?;
                let out =
                    c.offline(&["prove-aes", "--label", &t.label, "--challenge", &challenge])?;
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
    pub(crate) fn prove_public_key(
        &mut self,
        emu: &Emulator,
        t: &Target,
    ) -> Result<String, String> {
        let public = TargetPublicKey::file_name(&t.label);
        self.step(
            &format!(
                "   proof: byok-online verify {} (public keys equal, vault signature verifies)",
                t.label
            ),
            |c| {
                let out = c.online(
                    emu,
                    &["verify", "--name", &t.label, "--public-key", &public],
                )?;
                expect(&out, "verifies locally")
            },
        )?;
        Ok(format!(
            "{}: vault public key = HSM public key; vault signature verifies",
            t.label
        ))
    }
}

pub(crate) fn capture(cmd: &mut Command) -> Result<String, String> {
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
