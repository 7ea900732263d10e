//! The workspace root and its three binaries.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The binaries the tests and the xtask drive.
pub const BINARIES: [&str; 3] = ["byok-offline", "byok-online", "kv-emulator"];

/// The cargo profile to build the binaries with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    Debug,
    Release,
}

impl Profile {
    fn dir(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }
}

/// The workspace root (this crate sits in `tests/` directly below it).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the test kit sits in the workspace")
        .to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set, else `target/` in the workspace.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

/// Builds the three binaries (cargo does nothing when they are fresh) and returns the
/// directory that holds them.
pub fn build_bins(profile: Profile) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut args = vec!["build", "--quiet"];
    if profile == Profile::Release {
        args.push("--release");
    }
    for bin in BINARIES {
        args.extend(["-p", bin]);
    }
    args.push("--bins");
    let status = Command::new(&cargo)
        .args(&args)
        .current_dir(workspace())
        .status()
        .map_err(|e| format!("could not run {cargo}: {e}"))?;
    if !status.success() {
        return Err(format!("`cargo {}` failed ({status})", args.join(" ")));
    }
    Ok(target_dir().join(profile.dir()))
}

/// The three debug binaries, built once; panics when the build fails.
///
/// `BYOK_TEST_BIN_DIR` names another directory holding the three binaries (an older build, or a
/// release's artefacts): the suites then run against those, which is how a test is shown to fail
/// on the code it guards against.
pub fn bins() -> PathBuf {
    if let Some(dir) = std::env::var_os("BYOK_TEST_BIN_DIR") {
        return PathBuf::from(dir);
    }
    build_bins(Profile::Debug).unwrap_or_else(|e| panic!("{e}"))
}
