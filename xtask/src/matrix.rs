//! `cargo xtask e2e --matrix [--token T]`: every key kind on every token, with no leniency
//! flag, ending with a table token × kind → proven, or refused with the tool's reason.
//!
//! Each cell runs `byok-offline package --generate` for the kind. When it packages, the key is
//! imported into a strict kv-emulator and proven (`verify` for RSA/EC, `prove-aes` for AES);
//! any failure on that way (an import the emulator refuses included) fails the run. When it
//! refuses, the refusal counts only if it came before anything was generated or written (the
//! token's key list, read with `keys --output json`, is unchanged and no package file exists),
//! with exit code 1, naming the defect and `byok-offline check`. Each outcome is then held
//! against what the token is known to do ([`expected`]): a conformant kind refused, or a
//! defective kind packaged, fails the run too.

use crate::ceremony::{Ceremony, Target, work_dir};
use crate::expectations::{Expect, expected};
use byok_core::target::{KeyKind, Kty};
use byok_tests::{Emulator, ModuleKind};
use std::collections::BTreeSet;
use std::process::Output;
use std::time::{Duration, Instant};

/// A flavor's kinds, each a target: the vault's every RSA and EC kind Key Vault imports,
/// Managed HSM's AES 128, 192 and 256 (`prove-aes --size` picks the AES-GCM of the key's
/// size).
fn targets(aes: bool) -> Vec<Target> {
    KeyKind::IMPORTABLE
        .into_iter()
        .filter(|k| (k.kty() == Kty::Oct) == aes)
        .map(Target::of)
        .collect()
}

/// One cell's outcome.
enum Outcome {
    Proven,
    Refused(String),
    Failed(String),
}

/// One row of the table.
struct Cell {
    token: ModuleKind,
    /// `None` for a token whose setup failed.
    kind: Option<KeyKind>,
    outcome: Outcome,
}

impl Cell {
    /// Why this cell fails the run, if it does: a failure, or an outcome the token's record
    /// contradicts.
    fn problem(&self) -> Option<String> {
        let expect = self.kind.map(|kind| expected(self.token, kind));
        match (&self.outcome, expect) {
            (Outcome::Failed(why), _) => Some(why.clone()),
            (Outcome::Proven, Some(Expect::Refused)) => Some(format!(
                "packaged although {} is recorded as defective for {}: the tool's check missed it",
                self.token,
                self.kind_name()
            )),
            (Outcome::Refused(why), Some(Expect::Proven)) => Some(format!(
                "refused although {} is recorded as conformant for {}: {why}",
                self.token,
                self.kind_name()
            )),
            _ => None,
        }
    }

    /// The kind as the table shows it: `RSA 2048`, or `(setup)`.
    fn kind_name(&self) -> String {
        self.kind
            .map_or_else(|| "(setup)".into(), |k| k.to_string())
    }

    fn word(&self) -> &'static str {
        match (&self.outcome, self.problem()) {
            (_, Some(_)) => "FAILED",
            (Outcome::Proven, None) => "proven",
            _ => "refused",
        }
    }
}

/// Runs the matrix on `tokens`, prints the table, and fails when any cell does.
pub fn run(tokens: Vec<ModuleKind>) -> Result<(), String> {
    let started = Instant::now();
    let root = work_dir("matrix");
    let mut cells = Vec::new();
    let mut times = Vec::new();
    let mut paths = Vec::new();
    for token in tokens {
        let t = Instant::now();
        println!("\ne2e --matrix: {token} (no leniency flag)");
        let ran = run_token(&root.join(token.id()), token, &mut cells);
        paths.push(ran.as_ref().map_or_else(|_| "-".into(), Clone::clone));
        if let Err(e) = ran {
            cells.push(Cell {
                token,
                kind: None,
                outcome: Outcome::Failed(e),
            });
        }
        times.push((token, t.elapsed()));
    }
    print_table(&cells, &times, &paths, started.elapsed());
    let failed = cells.iter().filter(|c| c.problem().is_some()).count();
    if failed > 0 {
        return Err(format!(
            "e2e --matrix: {failed} cells failed (see the table)"
        ));
    }
    Ok(())
}

/// One token's column: a ceremony of its own, both flavors, every kind; returns the wrap path
/// the token takes.
fn run_token(
    dir: &std::path::Path,
    token: ModuleKind,
    cells: &mut Vec<Cell>,
) -> Result<String, String> {
    let mut c = Ceremony::prepare(dir, token, false)?;
    let path = wrap_path(&c)?;
    println!("      wrap path: {path}");
    for (flavor, targets) in [("vault", targets(false)), ("managedhsm", targets(true))] {
        let emu = c.start_emulator(&dir.join(format!("emulator-{flavor}")), flavor)?;
        let transfer = format!("kek-{flavor}.transfer");
        c.kek(&emu, flavor, &transfer)?;
        for t in &targets {
            let outcome = cell(&mut c, &emu, flavor, &transfer, t);
            if let Outcome::Failed(why) = &outcome {
                println!("      FAILED: {why}");
            }
            cells.push(Cell {
                token,
                kind: Some(t.kind),
                outcome,
            });
        }
    }
    Ok(path)
}

/// The wrap path the token takes, as `byok-offline tokens` names it, in a word: `native`
/// (CKM_RSA_AES_KEY_WRAP in the token) or `two-step 0x210B` / `two-step 0x210A`.
fn wrap_path(c: &Ceremony) -> Result<String, String> {
    let out = c.offline(&["--output", "json", "tokens"])?;
    let tokens: serde_json::Value = serde_json::from_str(&out)
        .map_err(|e| format!("`tokens --output json` printed no JSON ({e}): {out}"))?;
    let byok = tokens["tokens"][0]["byok"].as_str().unwrap_or_default();
    short_path(byok).ok_or_else(|| format!("`tokens` names no wrap path: {byok}"))
}

fn short_path(byok: &str) -> Option<String> {
    if byok.starts_with("native") {
        return Some("native".into());
    }
    ["0x210B", "0x210A"]
        .into_iter()
        .find(|m| byok.starts_with("two-step") && byok.contains(m))
        .map(|m| format!("two-step {m}"))
}

/// One kind on one token: packaged, imported and proven; or refused before anything happened.
fn cell(c: &mut Ceremony, emu: &Emulator, flavor: &str, transfer: &str, t: &Target) -> Outcome {
    let before = match token_keys(c) {
        Ok(keys) => keys,
        Err(e) => return Outcome::Failed(e),
    };
    let args = c.package_args(transfer, t);
    let name = format!(
        "3. offline: package --generate {} ({}) in {}",
        t.label,
        t.kind,
        c.token().kind()
    );
    print!("[{:>2}] {name} ... ", c.steps.len() + 1);
    let started = Instant::now();
    let out = c.offline_cmd(&c.offline, &args).output();
    let took = started.elapsed();
    c.steps.push((name, took));
    let out = match out {
        Ok(out) => out,
        Err(e) => return Outcome::Failed(format!("could not run byok-offline: {e}")),
    };
    let word = if out.status.success() {
        "ok"
    } else {
        "refused"
    };
    println!("{word} ({:.2} s)", took.as_secs_f32());
    if !out.status.success() {
        return refusal(c, t, &before, &out);
    }
    let proven = c
        .carry_package(t)
        .and_then(|()| c.import(emu, flavor, t))
        .and_then(|()| c.prove(emu, t));
    match proven {
        Ok(_) => Outcome::Proven,
        Err(e) => Outcome::Failed(format!("packaged, then: {e}")),
    }
}

/// Judges a failed `package`: a refusal only when it changed nothing, exited 1 and named the
/// defect and `byok-offline check`.
fn refusal(c: &Ceremony, t: &Target, before: &BTreeSet<String>, out: &Output) -> Outcome {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let reason = reason_of(&stderr);
    if out.status.code() != Some(1) {
        return Outcome::Failed(format!(
            "package exited with {} (a refusal exits 1): {reason}",
            out.status
        ));
    }
    match token_keys(c) {
        Ok(after) if &after == before => {}
        Ok(after) => {
            return Outcome::Failed(format!(
                "package failed after changing the token's keys ({} before, {} after): {reason}",
                before.len(),
                after.len()
            ));
        }
        Err(e) => return Outcome::Failed(e),
    }
    let written: Vec<String> = Ceremony::package_files(t)
        .into_iter()
        .filter(|f| c.offline.join(f).exists())
        .collect();
    if !written.is_empty() {
        return Outcome::Failed(format!(
            "package refused but wrote {}: {reason}",
            written.join(", ")
        ));
    }
    if !names_defect(&stderr) {
        return Outcome::Failed(format!(
            "package failed without naming a token defect and `byok-offline check`: {reason}"
        ));
    }
    Outcome::Refused(reason)
}

/// A refusal names the fix (`byok-offline check`) and what is wrong: a PKCS#11 return code
/// or the defect the check found.
fn names_defect(stderr: &str) -> bool {
    const DEFECTS: [&str; 6] = [
        "CKR_",
        "trailing zero",
        "scalar",
        "not supported",
        "non-conformant",
        "could not generate",
    ];
    stderr.contains("byok-offline check") && DEFECTS.iter().any(|d| stderr.contains(d))
}

/// The tool's error on one line: its first sentence after the last `error: ` (progress
/// lines come before it).
fn reason_of(stderr: &str) -> String {
    let text = stderr.split_whitespace().collect::<Vec<_>>().join(" ");
    let error = text
        .rsplit_once("error: ")
        .map_or(text.as_str(), |(_, e)| e);
    let first = error.split_once(". ").map_or(error, |(first, _)| first);
    first.trim_end_matches('.').to_string()
}

/// The token's objects (`keys --output json`), each as its JSON text.
fn token_keys(c: &Ceremony) -> Result<BTreeSet<String>, String> {
    let out = c.offline(&["--output", "json", "keys"])?;
    let keys: serde_json::Value = serde_json::from_str(&out)
        .map_err(|e| format!("`keys --output json` printed no JSON ({e}): {out}"))?;
    Ok(keys["keys"]
        .as_array()
        .ok_or_else(|| format!("`keys --output json` printed no key list: {out}"))?
        .iter()
        .map(|k| k.to_string())
        .collect())
}

/// The grid (kind × token, one word a cell), then each refusal's and failure's reason.
fn print_table(cells: &[Cell], times: &[(ModuleKind, Duration)], paths: &[String], took: Duration) {
    let tokens: Vec<ModuleKind> = times.iter().map(|(t, _)| *t).collect();
    let mut kinds: Vec<String> = Vec::new();
    for c in cells {
        if !kinds.contains(&c.kind_name()) {
            kinds.push(c.kind_name());
        }
    }
    println!(
        "\ne2e --matrix: token x kind, no leniency flag ({:.0} s in all)",
        took.as_secs_f32()
    );
    let header: String = tokens.iter().map(|t| format!("{:<16}", t.name())).collect();
    println!("  {:<11}{header}", "");
    let row: String = paths.iter().map(|p| format!("{p:<16}")).collect();
    println!("  {:<11}{row}", "wrap path");
    for kind in &kinds {
        let row: String = tokens
            .iter()
            .map(|t| {
                let word = cells
                    .iter()
                    .find(|c| c.token == *t && c.kind_name() == *kind)
                    .map_or("-", Cell::word);
                format!("{word:<16}")
            })
            .collect();
        println!("  {kind:<11}{row}");
    }
    println!("\n  token        kind       result");
    for c in cells {
        let result = match (&c.outcome, c.problem()) {
            (_, Some(why)) => format!("FAILED: {why}"),
            (Outcome::Proven, None) => "proven".into(),
            (Outcome::Refused(why), None) => format!("refused: {why}"),
            (Outcome::Failed(_), None) => unreachable!("a failure is a problem"),
        };
        println!("  {:<12} {:<10} {result}", c.token.name(), c.kind_name());
    }
    let per_token: Vec<String> = times
        .iter()
        .map(|(t, d)| format!("{t} {:.0} s", d.as_secs_f32()))
        .collect();
    println!("  time per token: {}", per_token.join(", "));
    let count = |w: &str| cells.iter().filter(|c| c.word() == w).count();
    println!(
        "e2e --matrix: {} proven, {} refused before anything was generated, {} failed",
        count("proven"),
        count("refused"),
        count("FAILED")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What byok-offline printed for kryoptic's P-521 (progress lines, then the error).
    const P521: &str = "[ 1/20] EC P-521 1/20: ok\n[ 2/20] EC P-521 2/20: 65-byte P-521 scalar; \
        RFC 5915 requires 66 bytes\nerror: EC P-521 keys cannot be packaged on this token: the \
        token's wrap of them is non-conformant (65-byte P-521 scalar; RFC 5915 requires 66 \
        bytes, in 7 of 20 throwaway keys). Nothing was generated or written; run \
        `byok-offline check` to see every kind.\n";

    #[test]
    fn the_wrap_path_in_a_word() {
        let native = "native: CKM_RSA_AES_KEY_WRAP (0x1054) in the token";
        assert_eq!(short_path(native).as_deref(), Some("native"));
        let kwp = "two-step: session AES-256 key, CKM_AES_KEY_WRAP_KWP (0x210B), \
                   CKM_RSA_PKCS_OAEP (SHA-1); run `byok-offline check` for each kind";
        assert_eq!(short_path(kwp).as_deref(), Some("two-step 0x210B"));
        assert_eq!(short_path("none: no wrap path"), None);
    }

    #[test]
    fn the_reason_is_the_errors_first_sentence() {
        assert_eq!(
            reason_of(P521),
            "EC P-521 keys cannot be packaged on this token: the token's wrap of them is \
             non-conformant (65-byte P-521 scalar; RFC 5915 requires 66 bytes, in 7 of 20 \
             throwaway keys)"
        );
        assert_eq!(
            reason_of("no error prefix at all"),
            "no error prefix at all"
        );
    }

    #[test]
    fn a_refusal_must_name_the_defect_and_the_check() {
        assert!(names_defect(P521));
        let crash = "error: Some horrible, unrecoverable error has occurred";
        assert!(!names_defect(crash), "a crash is no refusal");
        let no_defect = "error: something failed; run `byok-offline check`";
        assert!(!names_defect(no_defect), "the check named, the defect not");
        let no_check = "error: 7 trailing zero bytes after the DER key";
        assert!(!names_defect(no_check), "the defect named, the fix not");
    }

    /// The importable kind byok-core names `name`.
    fn kind(name: &str) -> KeyKind {
        KeyKind::IMPORTABLE
            .into_iter()
            .find(|k| k.to_string() == name)
            .unwrap()
    }

    #[test]
    fn the_flavors_take_every_importable_kind_under_its_label() {
        let labels = |aes| {
            targets(aes)
                .into_iter()
                .map(|t| t.label)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            labels(false),
            [
                "target-rsa2048",
                "target-rsa3072",
                "target-rsa4096",
                "target-p256",
                "target-p384",
                "target-p521",
                "target-p256k"
            ]
        );
        assert_eq!(
            labels(true),
            ["target-aes128", "target-aes192", "target-aes256"]
        );
        let p256k = &targets(false)[6];
        assert_eq!(p256k.offline_args, ["--kty", "EC", "--curve", "P-256K"]);
        assert_eq!(targets(true)[1].aes_bits(), "192");
    }

    #[test]
    fn expectations_follow_the_token_table() {
        use ModuleKind::*;
        for ec in ["EC P-256", "EC P-384", "EC P-521", "EC P-256K"] {
            assert_eq!(expected(Kryoptic, kind(ec)), Expect::Refused, "{ec}");
        }
        assert_eq!(expected(Kryoptic, kind("RSA 4096")), Expect::Proven);
        assert_eq!(expected(Kryoptic, kind("AES 192")), Expect::Proven);
        assert_eq!(expected(Nss, kind("EC P-256")), Expect::Proven);
        assert_eq!(expected(Nss, kind("EC P-521")), Expect::Proven);
        assert_eq!(expected(Nss, kind("EC P-256K")), Expect::Refused);
        assert_eq!(expected(SoftHsm, kind("RSA 2048")), Expect::Refused);
        assert_eq!(expected(SoftHsm, kind("EC P-256")), Expect::Refused);
        assert_eq!(expected(SoftHsm, kind("EC P-384")), Expect::Proven);
        assert_eq!(expected(SoftHsm, kind("AES 256")), Expect::Proven);
        for name in ["RSA 3072", "EC P-256", "EC P-521", "EC P-256K", "AES 192"] {
            assert_eq!(expected(OpenCryptoki, kind(name)), Expect::Proven, "{name}");
        }
    }

    #[test]
    fn a_cell_fails_on_a_failure_or_a_contradicted_record() {
        let cell = |token, name, outcome| Cell {
            token,
            kind: Some(kind(name)),
            outcome,
        };
        let refused = || Outcome::Refused("why".into());
        assert!(
            cell(ModuleKind::Nss, "RSA 2048", Outcome::Proven)
                .problem()
                .is_none()
        );
        assert!(
            cell(ModuleKind::Nss, "EC P-256K", refused())
                .problem()
                .is_none()
        );
        assert!(
            cell(ModuleKind::Nss, "RSA 2048", refused())
                .problem()
                .is_some()
        );
        assert!(
            cell(ModuleKind::Kryoptic, "EC P-521", Outcome::Proven)
                .problem()
                .is_some()
        );
        let failed = Outcome::Failed("the emulator refused the import".into());
        assert!(
            cell(ModuleKind::Kryoptic, "EC P-521", failed)
                .problem()
                .is_some()
        );
    }
}
