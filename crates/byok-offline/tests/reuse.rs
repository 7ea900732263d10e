//! A ceremony checks its token once: a `token checked` entry in the ceremony's log stands in
//! for the check `package` and `batch` run before packaging, for the same token (serial,
//! model, firmware, module file's SHA-256), wrap path and kind, within `--check-max-age`.
//!
//! Every command here runs through OpenSC's PKCS#11 spy (`pkcs11-spy.so`, which logs each call
//! it passes on to SoftHSM), so whether a check ran is read from the module's own calls, not
//! from what the tool says: a reused verdict leaves one `C_GenerateKeyPair` (the target's),
//! a check at least 20 more. SoftHSM 2.6.1's EC P-256 wrap carries trailing zeros, so every
//! package takes `--allow-zero-padded-kwp`, and a reused verdict must still say so.

mod common;

use byok_core::evidence::{self, Entry, Logged};
use byok_tests::{ok, stderr};
use common::Hsm;
use serde_json::Value;
use std::path::{Path, PathBuf};

const LOG: &str = "ceremony-log.jsonl";

/// OpenSC's spy module (Debian's `opensc-pkcs11`).
fn spy() -> PathBuf {
    let path = PathBuf::from(format!(
        "/usr/lib/{}-linux-gnu/pkcs11-spy.so",
        std::env::consts::ARCH
    ));
    assert!(
        path.exists(),
        "no PKCS#11 spy at {}: apt-get install opensc-pkcs11",
        path.display()
    );
    path
}

/// Runs `byok-offline --output json ARGS` on `hsm`'s SoftHSM through the spy at `module`;
/// the output, and how many key pairs the module was asked to generate.
fn spied(hsm: &Hsm, module: &Path, args: &[&str]) -> (std::process::Output, usize) {
    let calls = hsm.path("spy.log");
    let _ = std::fs::remove_file(&calls);
    let out = hsm
        .command_with_pin(env!("CARGO_BIN_EXE_byok-offline"))
        .arg("--module")
        .arg(module)
        .args(["--output", "json"])
        .args(args)
        .env("PKCS11SPY", hsm.module())
        .env("PKCS11SPY_OUTPUT", &calls)
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&calls).unwrap_or_default();
    let pairs = text
        .lines()
        .filter(|l| l.ends_with(": C_GenerateKeyPair"))
        .count();
    (out, pairs)
}

/// `check --log` of EC P-256 through the spy.
fn check(hsm: &Hsm) {
    let (out, pairs) = spied(
        hsm,
        &spy(),
        &["check", "--log", LOG, "--kty", "EC", "--curve", "P-256"],
    );
    ok(&out);
    assert!(pairs >= 20, "the check made {pairs} key pairs");
}

/// `package --generate` of an EC P-256 key `label` through the spy at `module`, plus `extra`;
/// its report and the key pairs the module made.
fn package(hsm: &Hsm, module: &Path, label: &str, extra: &[&str]) -> (Value, usize) {
    let kek = hsm.transfer_file(&common::kek_pair(2048).1);
    let kek = kek.to_str().unwrap();
    let mut args = vec!["package", "--kek", kek, "--generate", "--label", label];
    args.extend(["--kty", "EC", "--curve", "P-256", "--allow-zero-padded-kwp"]);
    args.extend_from_slice(extra);
    let (out, pairs) = spied(hsm, module, &args);
    (ok(&out), pairs)
}

/// The log's entries, its chain verified.
fn entries(hsm: &Hsm) -> Vec<Entry> {
    let text = std::fs::read_to_string(hsm.path(LOG)).unwrap();
    evidence::verify(&text).unwrap();
    text.lines()
        .map(|l| Logged::of_line(l).unwrap().entry)
        .collect()
}

fn token_checks(hsm: &Hsm) -> usize {
    let checked = |e: &Entry| matches!(e, Entry::TokenChecked(_));
    entries(hsm).iter().filter(|e| checked(e)).count()
}

/// The package reused entry 1 (the check): one key pair made (the target), the report and the
/// `packaged` entry both cite it, and no check was recorded since.
fn assert_reused(hsm: &Hsm, report: &Value, pairs: usize) {
    assert_eq!(pairs, 1, "a check ran: {report}");
    let check = &report["check"];
    assert_eq!(check["entry"]["entry"], 1, "{report}");
    assert_eq!(check["entry"]["reused"], true, "{report}");
    assert_eq!(check["throwaway_keys"], 0, "{report}");
    assert!(check.get("why_checked").is_none(), "{report}");
    let log = entries(hsm);
    let Some(Entry::Packaged(p)) = log.last() else {
        panic!("no packaged entry last: {log:?}")
    };
    let cited = p.check_entry.as_ref().expect("the check it relied on");
    assert_eq!((cited.entry, cited.reused), (1, true));
    assert!(
        p.check_verdict
            .as_deref()
            .unwrap()
            .contains("trailing zero")
    );
    assert_eq!(token_checks(hsm), 1);
}

/// The package checked the token itself, saying why (`why` in its reason), and recorded that
/// check in the log, whose entry its `packaged` entry cites.
fn assert_rechecked(hsm: &Hsm, report: &Value, pairs: usize, why: &str) {
    assert!(pairs > 20, "{pairs} key pairs: no check ran: {report}");
    let check = &report["check"];
    let reason = check["why_checked"].as_str().unwrap_or_default();
    assert!(reason.contains(why), "`{why}` not in `{reason}`");
    assert_eq!(check["entry"]["reused"], false, "{report}");
    assert!(check["throwaway_keys"].as_u64().unwrap() >= 20, "{report}");
    assert_eq!(token_checks(hsm), 2);
    let log = entries(hsm);
    let Some(Entry::Packaged(p)) = log.last() else {
        panic!("no packaged entry last: {log:?}")
    };
    let cited = p.check_entry.as_ref().unwrap();
    assert_eq!(cited.entry, log.len() - 1, "the entry just before it");
}

/// Rewrites the log's first line (the check) with `edit` applied to its JSON. The check is
/// the log's only entry, so the chain stays valid (its `prev_sha256` is the genesis): this is
/// what a log recorded on such a token would hold, and it verifies as one.
fn rewrite_check(hsm: &Hsm, edit: impl FnOnce(&mut Value)) {
    let path = hsm.path(LOG);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 1, "the check is the only entry");
    let mut line: Value = serde_json::from_str(text.trim_end()).unwrap();
    edit(&mut line);
    std::fs::write(&path, format!("{line}\n")).unwrap();
    evidence::verify(&std::fs::read_to_string(&path).unwrap()).unwrap();
}

#[test]
fn a_recorded_check_of_the_same_token_is_reused_and_no_throwaway_key_is_made() {
    let hsm = Hsm::new();
    check(&hsm);
    let (report, pairs) = package(&hsm, &spy(), "k1", &[]);
    assert_reused(&hsm, &report, pairs);
    // The same module's bytes at another path are the same code: still reused.
    let copy = hsm.path("spy-copy.so");
    std::fs::copy(spy(), &copy).unwrap();
    let (report, pairs) = package(&hsm, &copy, "k2", &[]);
    assert_eq!(pairs, 1, "{report}");
    assert_eq!(report["check"]["entry"]["entry"], 1);
}

#[test]
fn another_token_serial_is_checked_again() {
    let hsm = Hsm::new();
    check(&hsm);
    // A second token in the same SoftHSM: same module, model and firmware, another serial.
    let init = std::process::Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", "other"])
        .args(["--so-pin", "5678", "--pin", common::PIN])
        .envs(hsm.env().iter().cloned())
        .output()
        .expect("softhsm2-util (apt-get install softhsm2)");
    assert!(init.status.success(), "{}", stderr(&init));
    let (report, pairs) = package(&hsm, &spy(), "k1", &["--token", "other"]);
    assert_rechecked(&hsm, &report, pairs, "another token serial");
}

#[test]
fn another_firmware_is_checked_again() {
    let hsm = Hsm::new();
    check(&hsm);
    // SoftHSM's firmware cannot change: a log recorded on the same token under another
    // firmware is simulated by rewriting the entry (its chain still verifies).
    rewrite_check(&hsm, |line| line["token_firmware"] = "2.5".into());
    let (report, pairs) = package(&hsm, &spy(), "k1", &[]);
    assert_rechecked(&hsm, &report, pairs, "another token firmware (2.5;");
}

#[test]
fn another_module_file_is_checked_again() {
    let hsm = Hsm::new();
    check(&hsm);
    // The same library with one byte appended: it loads and behaves the same, but it is
    // another file (another build, as far as its SHA-256 can tell).
    let mut bytes = std::fs::read(spy()).unwrap();
    bytes.push(0);
    let other = hsm.path("spy-other.so");
    std::fs::write(&other, bytes).unwrap();
    let (report, pairs) = package(&hsm, &other, "k1", &[]);
    assert_rechecked(&hsm, &report, pairs, "another module file");
}

#[test]
fn a_check_older_than_the_max_age_is_checked_again() {
    let hsm = Hsm::new();
    check(&hsm);
    // Nine hours ago: the entry's time rewritten, as a log kept since then would hold it.
    let nine_hours_ago = time::OffsetDateTime::now_utc() - time::Duration::hours(9);
    let stamp = nine_hours_ago
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    rewrite_check(&hsm, |line| line["time"] = stamp.into());
    let (report, pairs) = package(&hsm, &spy(), "k1", &["--check-max-age", "10h"]);
    assert_reused(&hsm, &report, pairs);
    let (report, pairs) = package(&hsm, &spy(), "k2", &[]);
    assert_rechecked(&hsm, &report, pairs, "older than --check-max-age 8h");
}

#[test]
fn recheck_checks_again_and_a_later_package_reuses_that_check() {
    let hsm = Hsm::new();
    check(&hsm);
    let (report, pairs) = package(&hsm, &spy(), "k1", &["--recheck"]);
    assert_rechecked(&hsm, &report, pairs, "--recheck");
    // The newest entry that stands for the token wins: the one --recheck recorded.
    let (report, pairs) = package(&hsm, &spy(), "k2", &[]);
    assert_eq!(pairs, 1, "{report}");
    assert_eq!(report["check"]["entry"]["entry"], 2, "{report}");
}

#[test]
fn a_package_with_no_recorded_check_checks_records_it_and_says_why() {
    let hsm = Hsm::new();
    let (report, pairs) = package(&hsm, &spy(), "k1", &[]);
    assert!(pairs > 20, "{report}");
    let why = report["check"]["why_checked"].as_str().unwrap();
    assert!(why.contains("records no check"), "{why}");
    // The next package of the ceremony reuses the check the first one recorded.
    let (report, pairs) = package(&hsm, &spy(), "k2", &[]);
    assert_eq!(pairs, 1, "{report}");
    assert_eq!(report["check"]["entry"]["entry"], 1, "{report}");
}

#[test]
fn a_batch_reuses_the_recorded_check_for_its_keys() {
    let hsm = Hsm::new();
    check(&hsm);
    let manifest = hsm.path("keys.toml");
    let keys = "[[key]]\nname = \"b1\"\nkty = \"EC\"\ncurve = \"P-256\"\n\n\
                [[key]]\nname = \"b2\"\nkty = \"EC\"\ncurve = \"P-256\"\n";
    std::fs::write(&manifest, keys).unwrap();
    let kek = hsm.transfer_file(&common::kek_pair(2048).1);
    let args = [
        "batch",
        "--manifest",
        "keys.toml",
        "--kek",
        kek.to_str().unwrap(),
    ];
    let more = ["--dir", "packages", "--log", LOG, "--allow-zero-padded-kwp"];
    let (out, pairs) = spied(&hsm, &spy(), &[&args[..], &more[..]].concat());
    let report = ok(&out);
    assert_eq!(pairs, 2, "one per key, no check: {report}");
    assert_eq!(report["checks"][0]["entry"]["entry"], 1, "{report}");
    assert_eq!(report["checks"][0]["entry"]["reused"], true, "{report}");
    assert_eq!(token_checks(&hsm), 1);
}
