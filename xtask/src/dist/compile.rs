//! One binary built reproducibly, and the crates cargo linked into it.
//!
//! What makes two builds of the same source in different directories, at different times,
//! byte-identical:
//!
//! - `--remap-path-prefix` (rustc) and `-ffile-prefix-map` (C code: aws-lc-sys under
//!   byok-online) rewrite the workspace, `CARGO_HOME` and the target directory to fixed names,
//!   so panic locations and C `__FILE__`s carry no builder's path;
//! - `SOURCE_DATE_EPOCH` is the commit's time, and `BYOK_GIT_COMMIT_OVERRIDE` stamps the commit,
//!   since a copy of the tree has no `.git`;
//! - `--locked`, `CARGO_INCREMENTAL=0`, a fixed profile (`codegen-units` set) and our own
//!   flags only: `RUSTFLAGS` and cargo config rustflags are overridden.
//!
//! Each binary is built alone (`-p BIN`), so cargo unifies features as a user's
//! `cargo build -p BIN` would and the other binary's features never reach it; `--target` keeps
//! build scripts and proc-macros apart from what is linked, which is how [`Built::linked`] tells
//! them apart.
//!
//! Rust's std on linux-gnu links GCC's unwinder as `libgcc_s.so.1`, with `panic = "abort"` as
//! well (std's backtraces use it). We offer the linker GCC's static unwinder (`libgcc_eh.a`) under
//! the name `libgcc_s.a`, first on its search path, so the binaries need only glibc and the
//! loader at run time and still unwind on a panic (destructors, such as zeroize's, run).

use super::{DistProfile, Source, TARGET, Tree};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where the workspace, the target directory and CARGO_HOME appear to be, in the binaries.
const REMAP_WORKSPACE: &str = "/build/byok-toolkit";
const REMAP_TARGET: &str = "/build/target";
const REMAP_CARGO_HOME: &str = "/cargo";

/// A built binary.
pub struct Built {
    pub bin: String,
    pub exe: PathBuf,
    /// The package id of the binary's own package.
    pub package: String,
    /// Cargo package ids of everything linked in, the binary's own package included.
    pub linked: BTreeSet<String>,
}

/// `cargo build --profile P --target x86_64-unknown-linux-gnu -p BIN --bin BIN` in `tree`.
pub fn binary(
    tree: &Tree,
    source: &Source,
    profile: DistProfile,
    bin: &str,
) -> Result<Built, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&tree.root)
        .args(["build", "--locked", "--profile", profile.name()])
        .args(["--target", TARGET, "-p", bin, "--bin", bin])
        .arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped());
    environment(&mut cmd, tree, source)?;
    eprintln!(
        "xtask: cargo build --profile {} -p {bin} (in {})",
        profile.name(),
        tree.root.display()
    );
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("could not run {cargo}: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    let target_dir = tree.build.join(TARGET);
    let mut built = Built {
        bin: bin.to_string(),
        exe: PathBuf::new(),
        package: String::new(),
        linked: BTreeSet::new(),
    };
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("reading cargo's output: {e}"))?;
        built.note(&line, &target_dir);
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!(
            "the dist build of {bin} failed ({status}); cargo's errors are above"
        ));
    }
    if built.exe.as_os_str().is_empty() {
        return Err(format!("cargo reported no executable for {bin}"));
    }
    Ok(built)
}

impl Built {
    /// Takes in one of cargo's JSON messages: the executable, and every library compiled for
    /// the target (build scripts, proc-macros and build-dependencies are compiled for the host,
    /// outside `target_dir`, and are not linked).
    fn note(&mut self, line: &str, target_dir: &Path) {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            return;
        };
        if msg["reason"] != "compiler-artifact" {
            return;
        }
        let id = msg["package_id"].as_str().unwrap_or_default().to_string();
        if let Some(exe) = msg["executable"].as_str()
            && msg["target"]["name"] == self.bin.as_str()
        {
            self.exe = PathBuf::from(exe);
            self.package = id.clone();
        }
        let kinds = msg["target"]["kind"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let host_only = kinds
            .iter()
            .any(|k| k == "proc-macro" || k == "custom-build");
        let files = msg["filenames"].as_array().cloned().unwrap_or_default();
        let for_target = !files.is_empty()
            && files.iter().all(|f| {
                f.as_str()
                    .is_some_and(|f| Path::new(f).starts_with(target_dir))
            });
        if for_target && !host_only && !id.is_empty() {
            self.linked.insert(id);
        }
    }
}

/// The build's environment: our flags only, the source's commit and time.
fn environment(cmd: &mut Command, tree: &Tree, source: &Source) -> Result<(), String> {
    let cargo_home = cargo_home()?;
    let root = tree.root.display().to_string();
    let target = tree.build.display().to_string();
    let home = cargo_home.display().to_string();
    // The last matching prefix wins in rustc and GCC: the target directory sits in the tree.
    let maps = [
        (root.as_str(), REMAP_WORKSPACE),
        (home.as_str(), REMAP_CARGO_HOME),
        (target.as_str(), REMAP_TARGET),
    ];
    let mut rustflags: Vec<String> = maps
        .iter()
        .map(|(from, to)| format!("--remap-path-prefix={from}={to}"))
        .collect();
    let libgcc = static_unwinder(&tree.build)?;
    rustflags.push(format!("-Lnative={}", libgcc.display()));
    let cflags: Vec<String> = maps
        .iter()
        .map(|(from, to)| format!("-ffile-prefix-map={from}={to}"))
        .collect();
    for var in [
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("CARGO_ENCODED_RUSTFLAGS", rustflags.join("\x1f"))
        .env("CARGO_TARGET_DIR", &tree.build)
        .env("CARGO_INCREMENTAL", "0")
        .env("CFLAGS", cflags.join(" "))
        .env("SOURCE_DATE_EPOCH", source.epoch.to_string())
        .env("BYOK_GIT_COMMIT_OVERRIDE", source.commit_override());
    Ok(())
}

fn cargo_home() -> Result<PathBuf, String> {
    if let Some(home) = std::env::var_os("CARGO_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cargo"))
        .ok_or_else(|| "neither CARGO_HOME nor HOME is set: set CARGO_HOME".to_string())
}

/// A directory holding GCC's `libgcc_eh.a` as `libgcc_s.a` (see the module's doc).
fn static_unwinder(build: &Path) -> Result<PathBuf, String> {
    let out = Command::new("cc")
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .map_err(|e| {
            format!("could not run cc ({e}); install gcc (Debian: apt-get install gcc)")
        })?;
    let found = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !found.is_absolute() || !found.is_file() {
        return Err(
            "cc knows no libgcc_eh.a (GCC's static unwinder); install gcc (Debian: apt-get \
             install gcc)"
                .into(),
        );
    }
    let dir = build.join("static-unwinder");
    super::copy_file(&found, &dir.join("libgcc_s.a"), 0o644)?;
    Ok(dir)
}
