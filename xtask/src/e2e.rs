//! `cargo xtask e2e`: the whole ceremony on one machine, as two workstations would run it.
//!
//! A fresh token (its own files in the offline workstation's directory under target/e2e/;
//! kryoptic unless `--token` names another), a fresh kv-emulator, and the real binaries. The
//! online and offline "workstations" are two directories; the only things that pass between
//! them are files, copied across. Only SoftHSM 2.6.1 runs with the leniency flags
//! (`--allow-zero-padded-kwp`, `--accept-zero-padded-kwp`): its RFC 5649 zero-pads RSA/EC keys.
//! On openCryptoki (`--token opencryptoki`) byok-offline runs inside the token's Debian sid
//! root and must pick the native `CKM_RSA_AES_KEY_WRAP`; the emulator runs on the host.

use crate::ceremony::{Ceremony, LOG, Target, capture, work_dir};
use crate::expectations::{Expect, expected};
use crate::util::expect;
use byok_core::evidence::{Event, Logged};
use byok_core::manifest;
use byok_core::target::{Curve, KeyKind};
use byok_tests::{Emulator, ModuleKind};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// The token `cargo xtask e2e` runs on: conformant, so it needs no leniency flag.
pub const DEFAULT_TOKEN: ModuleKind = ModuleKind::Kryoptic;

/// The one target of `cargo xtask e2e`: RSA 3072.
const DEFAULT: KeyKind = KeyKind::Rsa { bits: 3072 };

/// `cargo xtask e2e [--token T]`: one RSA 3072 target under a 4096-bit KEK in a vault.
pub fn run(kind: ModuleKind) -> Result<(), String> {
    let started = Instant::now();
    let dir = work_dir("run");
    let mut c = Ceremony::prepare(&dir, kind, kind == ModuleKind::SoftHsm)?;
    let mut summary = Vec::new();
    let emulator = c.start_emulator(&dir.join("emulator-vault"), "vault")?;
    println!("e2e: kv-emulator (vault) at {}", emulator.url());
    let targets = [Target::of(DEFAULT)];
    c.check_token(&targets)?;
    c.online_group(&emulator, "vault", &targets, &mut summary)?;
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

/// The kinds a batch cycles through (vault flavor: RSA and EC), in its order.
const BATCH_KINDS: [KeyKind; 6] = [
    KeyKind::Rsa { bits: 2048 },
    KeyKind::Ec { curve: Curve::P256 },
    KeyKind::Ec { curve: Curve::P384 },
    KeyKind::Rsa { bits: 3072 },
    KeyKind::Ec {
        curve: Curve::P256K,
    },
    KeyKind::Ec { curve: Curve::P521 },
];

/// The batch kinds a token runs: on a lenient run (SoftHSM) all of them, else those the
/// token is known to do correctly (the matrix's expectations), since `batch` refuses the rest:
/// on kryoptic RSA 2048 and 3072 (it writes short EC scalars), on NSS softokn RSA and EC
/// P-256/P-384/P-521 mixed.
fn batch_kinds(token: ModuleKind, lenient: bool) -> Vec<KeyKind> {
    BATCH_KINDS
        .into_iter()
        .filter(|kind| lenient || expected(token, *kind) == Expect::Proven)
        .collect()
}

/// `cargo xtask e2e --batch N [--token T]`: a batch ceremony of N mixed keys, each half
/// killed (SIGKILL) halfway and run again; then no key is doubled and the evidence log verifies.
pub fn run_batch(n: usize, kind: ModuleKind) -> Result<(), String> {
    let started = Instant::now();
    let dir = work_dir("batch");
    let mut c = Ceremony::prepare(&dir, kind, kind == ModuleKind::SoftHsm)?;
    let kinds = batch_kinds(kind, c.lenient);
    let names: Vec<String> = kinds.iter().map(KeyKind::to_string).collect();
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
fn batch_manifest(n: usize, kinds: &[KeyKind]) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[[key]]\nname = \"batch-{i:03}\"\n{}\ntags = {{ wave = \"1\" }}\n\n",
                manifest::kind_fields(kinds[i % kinds.len()])
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

/// The batch's evidence log, where `batch` keeps it: beside its packages, carried across with
/// them.
fn batch_log() -> String {
    format!("packages/{LOG}")
}

/// The evidence log verifies, no key was packaged or imported twice, and all `n` are on
/// record on both sides.
fn check_evidence(c: &Ceremony, n: usize) -> Result<(), String> {
    let log = batch_log();
    let out = c.offline_at(&c.online, &["log", "verify", &log])?;
    expect(&out, "the hash chain is intact")?;
    let text = std::fs::read_to_string(c.online.join(&log)).map_err(|e| e.to_string())?;
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
    cmd.args(["--output", "json", "minutes", LOG, &batch_log(), "--out"])
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

    fn names(kinds: &[KeyKind]) -> Vec<String> {
        kinds.iter().map(KeyKind::to_string).collect()
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
        let t = &Target::of(DEFAULT);
        let mut c = Ceremony {
            bin: std::path::PathBuf::new(),
            online: std::path::PathBuf::new(),
            offline: std::path::PathBuf::new(),
            token: None,
            lenient: false,
            steps: Vec::new(),
        };
        assert!(!c.package_args("k", t).contains(&"--allow-zero-padded-kwp"));
        c.lenient = true;
        assert!(c.package_args("k", t).contains(&"--allow-zero-padded-kwp"));
    }
}
