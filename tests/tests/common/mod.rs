//! The real binaries for workspace-level tests: built once, an emulator process stopped on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The three binaries, built once (cargo does nothing when they are fresh).
pub fn bins() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "byok-offline",
            "-p",
            "byok-online",
            "-p",
            "kv-emulator",
            "--bins",
        ])
        .current_dir(workspace())
        .status()
        .unwrap();
    assert!(status.success());
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
        .join("debug")
}

pub struct Emulator(pub Child);
impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn emulator(bin: &Path, state: &Path, extra: &[&str]) -> Emulator {
    let mut child = Command::new(bin.join("kv-emulator"))
        .args(["--accept-zero-padded-kwp", "--state-dir"])
        .arg(state)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening on"), "{line}");
    Emulator(child)
}
