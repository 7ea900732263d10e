//! Running other programs: cargo and the tools every task drives, each failing with a message
//! that names the command.

use std::process::Command;

/// Runs `cmd` (inheriting stdio) and fails unless it exits 0.
pub fn run_checked(cmd: &mut Command) -> Result<(), String> {
    let status = cmd
        .status()
        .map_err(|e| format!("could not run {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed ({status})"))
    }
}

pub fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Runs `cargo ARGS` (inheriting stdio) and fails unless it exits 0.
pub fn cargo(args: &[&str]) -> Result<(), String> {
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

/// `Ok` when `out` holds `needle`, else an error showing `out`.
pub fn expect(out: &str, needle: &str) -> Result<(), String> {
    if out.contains(needle) {
        Ok(())
    } else {
        Err(format!("expected `{needle}` in the output:\n{out}"))
    }
}
