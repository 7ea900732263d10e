//! The openssl CLI, and reading the outputs of a run.

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs the `openssl` CLI in `dir`; its stdout, or why it failed (with its stderr).
pub fn try_openssl(args: &[&str], dir: &Path) -> Result<Vec<u8>, String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run openssl (it is on every machine we run on): {e}"))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!("openssl {args:?} failed: {}", stderr(&out)))
    }
}

/// Runs the `openssl` CLI in `dir` and returns its stdout; panics with its stderr if it fails.
pub fn openssl(args: &[&str], dir: &Path) -> Vec<u8> {
    try_openssl(args, dir).unwrap_or_else(|e| panic!("{e}"))
}

/// A run's stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the run succeeded and returns its stdout as JSON (Null when it is not JSON).
pub fn ok(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "failed: {}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}
