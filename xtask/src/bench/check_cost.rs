//! `cargo xtask bench --check-cost`: what `byok-offline check` costs per kind on every token
//! the kit has, against one cold `generate` of the same kind on the same token (process start,
//! module load, login and one key: the least a `package --generate` does). The check's EC
//! generated-key verdict generates until it has seen a scalar whose top byte is zero, so its
//! cost is a number of keys drawn by chance: each row gives the mean keys per run beside the
//! median wall time. Figures in target/bench/check.{md,json}.

use super::results::{Results, write_results};
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

pub fn run() -> Result<(), String> {
    let started = Instant::now();
    for kind in ModuleKind::ALL {
        crate::tokens::ensure_token(kind)?;
    }
    println!("bench: building release binaries");
    let bin = byok_tests::build_bins(Profile::Release)?;
    let out = byok_tests::target_dir().join("bench");
    let work = out.join("check-work");
    let _ = std::fs::remove_dir_all(&work);
    let mut results = Results::default();
    let mut table = String::from(
        "| token | kind | generated verdict | keys generated (mean) | with a zero top byte (mean) | edge cases | check (median) | ms per generated key | one cold generate | ratio |\n\
         | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for kind in ModuleKind::ALL {
        let dir = work.join(kind.id());
        let token = TestToken::new_in(kind, &dir, super::TOKEN_LABEL, super::PIN)?;
        println!("\ncheck's cost on {kind} (median of {RUNS} runs, against one cold generate):");
        for (name, flags) in KINDS {
            let Some(m) = measure(&bin, &token, flags)? else {
                println!("  {name}: not supported by {kind}");
                table.push_str(&format!(
                    "| {kind} | {name} | not supported | | | | | | | |\n"
                ));
                continue;
            };
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
    }
    results.extra.push(format!(
        "### check's cost per token and kind\n\nGenerated and imported verdicts of one kind \
         (`byok-offline check --kty ...`), median of {RUNS} cold runs; EC keys are generated \
         until one has a scalar whose top byte is zero (1 in 2 on P-521, 1 in 256 on the \
         others; at most 40 and 2,048). The baseline is one cold `generate` of the kind on the \
         same token.\n\n{table}"
    ));
    write_results(&results, &out, "check", started.elapsed())
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
fn measure(bin: &Path, token: &TestToken, flags: &[&str]) -> Result<Option<Measured>, String> {
    let mem = token.path("mem.txt");
    let mut checks = Vec::new();
    let mut tries = Vec::new();
    let mut zero_top = Vec::new();
    let mut edge_cases = 0;
    let mut verdict = String::new();
    for _ in 0..RUNS {
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
    for i in 0..RUNS {
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
