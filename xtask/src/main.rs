//! Build and test automation for the workspace (the `cargo xtask` pattern).
//!
//! - `cargo xtask ci`: format check, clippy with `-D warnings`, and the whole test suite.

mod bench;
mod e2e;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("e2e") => match &args[1..] {
            [] => e2e::run(&workspace_root(), false),
            [m] if m == "--matrix" => e2e::run(&workspace_root(), true),
            [b, n] if b == "--batch" => match n.parse::<usize>() {
                Ok(n) if n >= 2 => e2e::run_batch(&workspace_root(), n),
                _ => Err(format!(
                    "--batch takes a number of keys, at least 2 (got `{n}`)"
                )),
            },
            other => Err(format!(
                "unknown e2e options {other:?}: use --matrix or --batch N"
            )),
        },
        Some("bench") => bench::run(&workspace_root()),
        // Children of `bench` (a separate process each, so the measured side stays apart).
        Some("__keygen") if args.len() == 3 => {
            bench::keygen_loop(&args[1], args[2].parse().unwrap_or(1))
        }
        Some("__login") => bench::login_only(),
        Some("__load") if args.len() == 4 => {
            bench::load(Path::new(&args[1]), &args[2], Path::new(&args[3]))
        }
        Some("help") | Some("--help") | Some("-h") | None => {
            print_help();
            Ok(())
        }
        Some(other) => Err(format!("unknown task `{other}`; run `cargo xtask help`")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn print_help() {
    println!(
        "cargo xtask <task>\n\n\
         tasks:\n  \
         e2e [--matrix | --batch N]  the whole BYOK ceremony against SoftHSM and kv-emulator (default:\n                 RSA 3072 under a 4096-bit KEK; --matrix: every RSA/EC kind, and AES 256 on Managed HSM;\n                 --batch N: N mixed keys, each half interrupted and resumed)\n  \
         bench           each half against the tools a user would pick instead (target/bench/)\n  \
         ci              fmt check, clippy -D warnings, cargo test --workspace, e2e --matrix, e2e --batch 12"
    );
}

/// The test command the README gives and `.ci/run` runs.
fn ci() -> Result<(), String> {
    // The offline tests drive a real SoftHSM token.
    e2e::ensure_softhsm()?;
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    let python = python_venv()?;
    let (passed, failed) = cargo_test(
        &["test", "--workspace"],
        &[("BYOK_PYTHON", python.as_os_str())],
    )?;
    // One closing line for the whole run: cargo prints one per test binary, the last of
    // which (doc-tests) often counts none.
    println!("ci: {passed} passed, {failed} failed");
    if failed > 0 {
        return Err(format!("{failed} tests failed"));
    }
    e2e::run(&workspace_root(), true)?;
    e2e::run_batch(&workspace_root(), 12)?;
    // The closing count once more, after the e2e output, for whoever reads the log's end.
    println!("ci: {passed} passed, {failed} failed");
    Ok(())
}

/// Runs `cargo test`, echoing its output, and adds up its `test result:` lines.
fn cargo_test(args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Result<(u64, u64), String> {
    use std::io::{BufRead, BufReader};
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask: cargo {}", args.join(" "));
    let mut child = Command::new(&cargo)
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not run {cargo}: {e}"))?;
    let (mut passed, mut failed) = (0, 0);
    let stdout = child.stdout.take().expect("piped");
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| e.to_string())?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(label), Some(count)) = (words.next(), words.next()) else {
                    continue;
                };
                let count: u64 = count.trim_start_matches("ok.").trim().parse().unwrap_or(0);
                match label {
                    "passed" => passed += count,
                    "failed" => failed += count,
                    _ => {}
                }
            }
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("`cargo {}` failed ({status})", args.join(" ")));
    }
    Ok((passed, failed))
}

/// The Azure SDK for Python, pinned, in `target/pyvenv`: the emulator's tests run it as an
/// independent client.
const PYTHON_PACKAGES: [&str; 2] = ["azure-keyvault-keys==4.11.3", "azure-identity==1.27.0"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}

/// Makes (once) the venv with the Azure Python SDK and returns its interpreter.
fn python_venv() -> Result<PathBuf, String> {
    let venv = workspace_root().join("target").join("pyvenv");
    let python = venv.join("bin").join("python");
    let ready = python.exists()
        && Command::new(&python)
            .args(["-c", "import azure.keyvault.keys, azure.identity"])
            .status()
            .is_ok_and(|s| s.success());
    if ready {
        return Ok(python);
    }
    eprintln!(
        "xtask: making {} with {}",
        venv.display(),
        PYTHON_PACKAGES.join(" ")
    );
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    run(Command::new(venv.join("bin").join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(PYTHON_PACKAGES))?;
    Ok(python)
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let status = cmd
        .status()
        .map_err(|e| format!("could not run {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed ({status})"))
    }
}

fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn cargo(args: &[&str]) -> Result<(), String> {
    let cargo = cargo_bin();
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .status()
        .map_err(|e| format!("could not run {cargo}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed ({status})", args.join(" ")))
    }
}
