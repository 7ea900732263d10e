//! Cold starts, one process each:
//! - `cold_start`: `package --recheck` of an existing key (start, load, login, the token's
//!   check, wrap, files) against a process that only loads the module and logs in;
//! - `package_vs_floor`: `package --generate` (start, load, login, the key's generation and
//!   wrap, its files and evidence entry) against its floor, an `xtask __floor generate --count
//!   1` making the same PKCS#11 calls for one key of the kind on the same token (start, load,
//!   login, the key pair, its public key read, the two-step wrap) and nothing else. Two rows
//!   per token and kind: after `check --log` recorded the token's verdict (reused: no
//!   throwaway key), and with no recorded verdict (a fresh log per run), which checks the kind
//!   first as every package did before verdicts were reused.

use super::PIN;
use super::results::Results;
use super::timing::{measured, median};
use super::work::Bench;
use byok_tests::TestToken;
use std::path::Path;
use std::process::Command;

/// The kinds measured: a name, `package`'s kind flags, and the runs of each command (RSA key
/// generation is slow).
const KINDS: [(&str, &[&str], usize); 2] = [
    ("EC P-256", &["--kty", "EC", "--curve", "P-256"], 15),
    ("RSA 2048", &["--kty", "RSA", "--size", "2048"], 9),
];

/// The token's leniency flag for a kind it wraps non-conformantly (the bench measures cost,
/// not conformance): SoftHSM 2.6.1's zero padding; kryoptic's short EC scalars.
fn leniency(token: &TestToken, kind: &str) -> &'static [&'static str] {
    match (token.kind(), kind) {
        (byok_tests::ModuleKind::SoftHsm, _) => &["--allow-zero-padded-kwp"],
        (byok_tests::ModuleKind::Kryoptic, "EC P-256") => &["--allow-nonconformant"],
        _ => &[],
    }
}

/// `byok-offline ARGS` on `token`, in its directory.
fn offline(bin: &Path, token: &TestToken, args: &[&str]) -> Command {
    let mut c = token.command_with_pin(bin.join("byok-offline"));
    c.args(token.token_args()).args(args);
    c
}

/// One key, cold, checking the token first as every package did before verdicts were reused
/// (`--recheck`): process start + module load + login + check + wrap, against module load +
/// login.
pub(super) fn cold_start(b: &mut Bench) -> Result<(), String> {
    const RUNS: usize = 20;
    println!("\ncold start (median of {RUNS} processes):");
    let (mut package, mut floor) = (Vec::new(), Vec::new());
    let mut kb_package = 0;
    let mut kb_floor = 0;
    for i in 0..RUNS {
        let out = format!("cold-{i}.byok");
        let (t, _, kb) = measured(
            &mut b.offline(&[
                "package",
                "--kek",
                "kek.transfer",
                "--label",
                "x-000",
                "--out",
                &out,
                "--allow-zero-padded-kwp",
                "--recheck",
            ]),
            &b.dir.join("mem.txt"),
        )?;
        package.push(t);
        kb_package = kb_package.max(kb);
        // The floor: a process that loads the module and logs in, and does nothing else.
        let mut login = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
        login.arg("__login").envs(b.token.env().iter().cloned());
        let (t, _, kb) = measured(&mut login, &b.dir.join("mem.txt"))?;
        floor.push(t);
        kb_floor = kb_floor.max(kb);
    }
    b.results
        .mem("byok-offline package (one key, cold)", kb_package);
    b.results.mem(
        "module load + login floor (cryptoki, xtask __login)",
        kb_floor,
    );
    b.results.row(
        "byok-offline package --recheck, one existing RSA 2048 key, cold",
        median(&mut package) * 1000.0,
        "ms",
        "process start + module load + login (cryptoki)",
        median(&mut floor) * 1000.0,
    );
    Ok(())
}

/// One cold `package --generate` with and without a recorded check, against the floor for
/// that key, on SoftHSM and on kryoptic (a token of its own, with the same KEK).
pub(super) fn cold_package(b: &mut Bench) -> Result<(), String> {
    println!("\ncold package --generate against the floor for that key (medians):");
    package_vs_floor(&mut b.results, &b.bin, &b.token)?;
    crate::tokens::ensure_token(byok_tests::ModuleKind::Kryoptic)?;
    let kryoptic = TestToken::kryoptic_in(&b.dir.join("kryoptic"), "bench-k", PIN)?;
    std::fs::copy(b.dir.join("kek.transfer"), kryoptic.path("kek.transfer"))
        .map_err(|e| format!("kek.transfer: {e}"))?;
    package_vs_floor(&mut b.results, &b.bin, &kryoptic)
}

/// Both rows for each kind on `token`, whose directory holds `kek.transfer`.
pub fn package_vs_floor(r: &mut Results, bin: &Path, token: &TestToken) -> Result<(), String> {
    let mem = token.path("mem.txt");
    let xtask = std::env::current_exe().map_err(|e| e.to_string())?;
    for (kind, flags, runs) in KINDS {
        let lenient = leniency(token, kind);
        // The ceremony's check, once, untimed.
        let mut check = offline(bin, token, &["check", "--log", "cold.jsonl"]);
        crate::util::run_checked(check.args(flags).stdout(std::process::Stdio::null()))?;
        let (mut reused, mut checked, mut floor) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..runs {
            let tag = format!("{}-{i}", kind.replace(' ', "-"));
            let pair = [
                ("cold.jsonl".to_string(), &mut reused),
                (format!("fresh-{tag}.jsonl"), &mut checked),
            ];
            for (j, (log, times)) in pair.into_iter().enumerate() {
                let label = format!("cold-{tag}-{j}");
                let mut args = vec!["package", "--kek", "kek.transfer", "--generate"];
                args.extend(["--label", &label, "--log", &log]);
                args.extend_from_slice(flags);
                args.extend_from_slice(lenient);
                times.push(measured(&mut offline(bin, token, &args), &mem)?.0);
            }
            let mut f = token.command(&xtask);
            f.args(["__floor", "generate", "--module"])
                .arg(token.module())
                .args(["--token", token.label(), "--kek", "kek.transfer"])
                .args(["--prefix", &format!("floor-{tag}"), "--count", "1"])
                .args(["--kind", kind]);
            floor.push(measured(&mut f, &mem)?.0);
        }
        let floor = median(&mut floor) * 1000.0;
        let name = token.kind().name();
        let base = format!("floor: start + load + login + {kind} keygen + wrap ({name})");
        r.row(
            format!("package --generate {kind}, cold, check recorded ({name})"),
            median(&mut reused) * 1000.0,
            "ms",
            base.clone(),
            floor,
        );
        r.row(
            format!("package --generate {kind}, cold, no recorded check ({name})"),
            median(&mut checked) * 1000.0,
            "ms",
            base,
            floor,
        );
    }
    Ok(())
}
