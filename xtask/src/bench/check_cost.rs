//! `cargo xtask bench --check-cost`: what `byok-offline check` costs per kind on every token
//! the kit has, against one cold `generate` of the same kind on the same token (process start,
//! module load, login and one key: the least a `package --generate` does). The check's EC
//! generated-key verdict generates until it has seen a scalar whose top byte is zero, so its
//! cost is a number of keys drawn by chance: each row gives the mean keys per run beside the
//! median wall time.
//!
//! Then the check's share of one `package --generate` (RSA 2048, EC P-256, AES 256, on every
//! token): one cold `package --generate` with no recorded verdict (a fresh evidence log: it
//! checks the kind first, and says why in its report's `check.why_checked`) against the same
//! after `check --log` recorded the token's verdict (reused: no throwaway key). The difference
//! is the check; its share is that over the first. Figures in target/bench/check.{md,json};
//! the tokens and runs can be shrunk for a smoke run ([`super::smoke`]).

use super::results::{Results, write_results};
use super::smoke;
use super::timing::{measured, median};
use byok_tests::{ModuleKind, Profile, TestToken};
use serde_json::Value;
use std::path::Path;
use std::time::Instant;

/// Runs of each command per kind and token (median wall time).
const RUNS: usize = 3;

/// The kinds measured: `check`'s flags for each.
const KINDS: [(&str, &[&str]); 6] = [
    ("RSA 2048", &["--kty", "RSA", "--size", "2048"]),
    ("EC P-256", &["--kty", "EC", "--curve", "P-256"]),
    ("EC P-384", &["--kty", "EC", "--curve", "P-384"]),
    ("EC P-521", &["--kty", "EC", "--curve", "P-521"]),
    ("EC P-256K", &["--kty", "EC", "--curve", "P-256K"]),
    ("AES 256", &["--kty", "oct", "--size", "256"]),
];

/// The kinds whose share of one `package --generate` is measured (of [`KINDS`]).
const SHARE_KINDS: [&str; 3] = ["RSA 2048", "EC P-256", "AES 256"];

/// The check table's header.
const CHECK_HEADER: &str = "| token | kind | generated verdict | keys generated (mean) | with a zero top byte (mean) | edge cases | check (median) | ms per generated key | one cold generate | ratio |\n\
     | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
/// The share table's header.
const SHARE_HEADER: &str = "| token | kind | wrap | `package --generate`, no recorded check (median) | the same, check recorded (median) | the check | its share | throwaway keys (mean) |\n\
     | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |\n";

pub fn run() -> Result<(), String> {
    let started = Instant::now();
    let tokens = smoke::tokens()?;
    let runs = smoke::runs(RUNS)?;
    for &kind in &tokens {
        crate::tokens::ensure_token(kind)?;
    }
    println!("bench: building release binaries");
    let bin = byok_tests::build_bins(Profile::Release)?;
    let out = byok_tests::target_dir().join("bench");
    let work = out.join("check-work");
    let _old = super::fresh::set_aside(&work)?;
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let kek = super::scale::kek_transfer(&bin, &work)?;
    let mut results = Results::default();
    results.note = smoke::note();
    let (mut table, mut shares) = (String::from(CHECK_HEADER), String::from(SHARE_HEADER));
    for kind in tokens {
        let dir = work.join(kind.id());
        let token = TestToken::new_in(kind, &dir, super::TOKEN_LABEL, super::PIN)?;
        std::fs::copy(&kek, token.path("kek.transfer")).map_err(|e| e.to_string())?;
        println!("\ncheck's cost on {kind} (median of {runs} runs, against one cold generate):");
        let supported = check_rows(&bin, &token, runs, &mut results, &mut table)?;
        println!("\nthe check's share of one package --generate on {kind} (median of {runs}):");
        for name in SHARE_KINDS.into_iter().filter(|n| supported.contains(n)) {
            let row = share(&bin, &token, name, runs)?;
            row.push(&token, name, &mut results, &mut shares);
        }
    }
    results.extra.push(format!(
        "### check's cost per token and kind\n\nGenerated and imported verdicts of one kind \
         (`byok-offline check --kty ...`), median of {runs} cold runs; EC keys are generated \
         until one has a scalar whose top byte is zero (1 in 2 on P-521, 1 in 256 on the \
         others; at most 40 and 2,048). The baseline is one cold `generate` of the kind on the \
         same token.\n\n{table}"
    ));
    results.extra.push(format!(
        "### The check's share of one package\n\nOne cold `byok-offline package --generate` \
         with no recorded verdict (a fresh evidence log: it checks the kind first) against the \
         same after `check --log` recorded the token's verdict (reused), medians of {runs}; the \
         check is their difference, its share that over the first. The wrap is the one `auto` \
         takes on the token.\n\n{shares}"
    ));
    write_results(&results, &out, "check", started.elapsed())
}

/// The check table's rows for `token`, every kind; the kinds it supports.
fn check_rows(
    bin: &Path,
    token: &TestToken,
    runs: usize,
    results: &mut Results,
    table: &mut String,
) -> Result<Vec<&'static str>, String> {
    let kind = token.kind();
    let mut supported = Vec::new();
    for (name, flags) in KINDS {
        let Some(m) = measure(bin, token, flags, runs)? else {
            println!("  {name}: not supported by {kind}");
            table.push_str(&format!(
                "| {kind} | {name} | not supported | | | | | | | |\n"
            ));
            continue;
        };
        supported.push(name);
        results.row(
            format!("check {name} on {kind} ({:.0} keys generated)", m.tries),
            m.check,
            "s",
            format!("one cold generate of {name} on {kind}"),
            m.generate,
        );
        table.push_str(&format!(
            "| {kind} | {name} | {} | {:.0} | {} | {} | {:.2} s | {} | {:.3} s | {:.1} |\n",
            m.verdict,
            m.tries,
            m.zero_top.map_or("-".into(), |z| format!("{z:.1}")),
            m.edge_cases,
            m.check,
            if m.tries > 0.0 {
                format!("{:.1}", 1000.0 * m.check / m.tries)
            } else {
                "-".into()
            },
            m.generate,
            m.check / m.generate,
        ));
    }
    Ok(supported)
}

/// One kind on one token: the medians of a cold `package --generate` that checks first and
/// of one that reuses a recorded verdict, and what the checking one reported.
struct Share {
    checked: f64,
    reused: f64,
    throwaway_keys: f64,
    wrap: &'static str,
}

impl Share {
    /// Its row in the share table and in the results.
    fn push(&self, token: &TestToken, name: &str, results: &mut Results, table: &mut String) {
        let kind = token.kind();
        let check = self.checked - self.reused;
        results.row(
            format!("package --generate {name}, cold, no recorded check ({kind})"),
            self.checked * 1000.0,
            "ms",
            "the same, check recorded",
            self.reused * 1000.0,
        );
        table.push_str(&format!(
            "| {kind} | {name} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.0} % | {:.1} |\n",
            self.wrap,
            self.checked * 1000.0,
            self.reused * 1000.0,
            check * 1000.0,
            100.0 * check / self.checked,
            self.throwaway_keys,
        ));
    }
}

/// The token's leniency flag for a kind it wraps non-conformantly (the bench measures cost,
/// not conformance): SoftHSM 2.6.1's zero padding; the others' findings, whatever they are.
fn leniency(token: &TestToken) -> &'static str {
    match token.kind() {
        ModuleKind::SoftHsm => "--allow-zero-padded-kwp",
        _ => "--allow-nonconformant",
    }
}

/// The check's share of one `package --generate` of kind `name` on `token` (whose directory
/// holds `kek.transfer`): `runs` of each, interleaved, after one untimed `check --log`.
fn share(bin: &Path, token: &TestToken, name: &str, runs: usize) -> Result<Share, String> {
    let flags = KINDS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .ok_or_else(|| format!("no kind {name}"))?;
    let tag = name.replace(' ', "-");
    let recorded = format!("share-{tag}.jsonl");
    let mut check = offline(
        bin,
        token,
        &[&["check", "--log", &recorded], flags].concat(),
    );
    crate::util::run_checked(check.stdout(std::process::Stdio::null()))?;
    let (mut reused, mut checked, mut keys) = (Vec::new(), Vec::new(), Vec::new());
    let mut wrap = "";
    for i in 0..runs {
        for (log, fresh) in [
            (recorded.clone(), false),
            (format!("fresh-{tag}-{i}.jsonl"), true),
        ] {
            let label = format!("share-{tag}-{i}-{}", u8::from(fresh));
            let mut args = vec!["--output", "json", "package", "--kek", "kek.transfer"];
            args.extend(["--generate", "--label", &label, "--log", &log]);
            args.extend_from_slice(flags);
            args.push(leniency(token));
            let mut cmd = offline(bin, token, &args);
            let (wall, stdout, _) = measured(&mut cmd, &token.path("mem.txt"))?;
            let report: Value =
                serde_json::from_str(&stdout).map_err(|e| format!("{e}: {stdout}"))?;
            let why = report["check"]["why_checked"].as_str();
            if why.is_some() != fresh {
                return Err(format!(
                    "package {name} on {} with log {log}: expected the check {}: {report}",
                    token.kind(),
                    if fresh { "made" } else { "reused" }
                ));
            }
            wrap = match report["package"]["wrap_path"].as_str() {
                Some(p) if p.starts_with("native") => "native",
                _ => "two-step",
            };
            if fresh {
                checked.push(wall);
                keys.push(report["check"]["throwaway_keys"].as_f64().unwrap_or(0.0));
            } else {
                reused.push(wall);
            }
        }
    }
    println!(
        "  {name}: {:.1} ms checking first, {:.1} ms reusing",
        median(&mut checked.clone()) * 1000.0,
        median(&mut reused.clone()) * 1000.0
    );
    Ok(Share {
        checked: median(&mut checked),
        reused: median(&mut reused),
        throwaway_keys: keys.iter().sum::<f64>() / keys.len() as f64,
        wrap,
    })
}

/// One kind on one token: medians of the check and of a cold generate, and what the check saw.
struct Measured {
    check: f64,
    generate: f64,
    tries: f64,
    zero_top: Option<f64>,
    edge_cases: u64,
    verdict: String,
}

/// `None` when the token cannot generate the kind (its check says "not supported").
fn measure(
    bin: &Path,
    token: &TestToken,
    flags: &[&str],
    runs: usize,
) -> Result<Option<Measured>, String> {
    let mem = token.path("mem.txt");
    let mut checks = Vec::new();
    let mut tries = Vec::new();
    let mut zero_top = Vec::new();
    let mut edge_cases = 0;
    let mut verdict = String::new();
    for _ in 0..runs {
        let mut cmd = offline(
            bin,
            token,
            &[&["--output", "json", "check"], flags].concat(),
        );
        let (wall, stdout, _) = measured(&mut cmd, &mem)?;
        let report: Value = serde_json::from_str(&stdout).map_err(|e| format!("{e}: {stdout}"))?;
        let kind = &report["kinds"][0];
        let generated = &kind["generated"];
        checks.push(wall);
        tries.push(generated["tries"].as_f64().unwrap_or(0.0));
        zero_top.extend(generated["zero_top_byte"].as_f64());
        edge_cases = kind["imported"]["tried"].as_u64().unwrap_or(0);
        verdict = generated["verdict"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if verdict == "not supported" {
            return Ok(None);
        }
    }
    let mut generates = Vec::new();
    for i in 0..runs {
        let label = format!("bench-{}-{i}", flags.join("").replace('-', ""));
        let mut cmd = offline(
            bin,
            token,
            &[&["generate", "--label", &label][..], flags].concat(),
        );
        let (wall, _, _) = measured(&mut cmd, &mem)?;
        generates.push(wall);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    Ok(Some(Measured {
        check: median(&mut checks),
        generate: median(&mut generates),
        tries: mean(&tries),
        zero_top: (!zero_top.is_empty()).then(|| mean(&zero_top)),
        edge_cases,
        verdict,
    }))
}

/// `byok-offline` (release) on `token` with `args`, in the token's directory.
fn offline(bin: &Path, token: &TestToken, args: &[&str]) -> std::process::Command {
    let mut c = token.command_with_pin(bin.join("byok-offline"));
    c.arg("--module")
        .arg(token.module())
        .args(token.token_args())
        .args(args)
        .current_dir(token.dir());
    c
}
