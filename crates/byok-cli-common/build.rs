//! Stamps the git commit and whether the work tree was dirty into the crate, for the binaries'
//! `--version` ([`version`](src/version.rs)): `BYOK_GIT_COMMIT` (12 hex digits, or `unknown`
//! outside a git checkout) and `BYOK_GIT_DIRTY` (`true` or `false`).
//!
//! `BYOK_GIT_COMMIT_OVERRIDE` (`COMMIT` or `COMMIT-dirty`) replaces what git says: a build
//! from a source tarball has no `.git`, and `cargo xtask dist` sets it so that a copy of the
//! tree elsewhere builds the same bytes. No timestamps: the build must be reproducible.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const OVERRIDE: &str = "BYOK_GIT_COMMIT_OVERRIDE";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed={OVERRIDE}");
    let (commit, dirty) = match std::env::var(OVERRIDE) {
        Ok(value) if !value.trim().is_empty() => parse_override(value.trim()),
        _ => from_git(),
    };
    println!("cargo:rustc-env=BYOK_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=BYOK_GIT_DIRTY={dirty}");
}

/// `COMMIT` or `COMMIT-dirty`; the commit is cut to 12 digits like git's.
fn parse_override(value: &str) -> (String, bool) {
    let (commit, dirty) = match value.strip_suffix("-dirty") {
        Some(commit) => (commit, true),
        None => (value, false),
    };
    if commit.is_empty() || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        panic!(
            "{OVERRIDE}={value:?} is not a commit: give its hex id, with `-dirty` appended when \
             the tree had uncommitted changes (e.g. 3ded9f9a1b2c or 3ded9f9a1b2c-dirty)"
        );
    }
    (short(commit), dirty)
}

/// The commit and dirtiness from git; `unknown` (and clean) without git or a repository.
fn from_git() -> (String, bool) {
    let Some(commit) = git(&["rev-parse", "HEAD"]) else {
        return ("unknown".into(), false);
    };
    for path in watched_paths() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    // Untracked files are not part of the build's source; a modified tracked file is.
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
        .is_none_or(|status| !status.trim().is_empty());
    (short(commit.trim()), dirty)
}

fn short(commit: &str) -> String {
    commit
        .chars()
        .take(12)
        .collect::<String>()
        .to_ascii_lowercase()
}

/// What changes when a commit is made or checked out, or a file is staged: HEAD, the index
/// and the branch HEAD points at (a loose ref, else `packed-refs`). Only existing paths, since
/// cargo reruns a build script on every build while a watched path is missing.
fn watched_paths() -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        let dir = PathBuf::from(dir.trim());
        paths.push(dir.join("HEAD"));
        paths.push(dir.join("index"));
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        let loose = git(&["rev-parse", "--git-path", branch.trim()]);
        let packed = git(&["rev-parse", "--git-path", "packed-refs"]);
        paths.extend(loose.into_iter().chain(packed).map(|p| absolute(p.trim())));
    }
    paths.retain(|p| p.exists());
    paths
}

/// `git --git-path` answers relative to the current directory (the crate's).
fn absolute(path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    }
}

/// `git ARGS`'s stdout when it ran and succeeded. `--no-optional-locks` keeps `status` from
/// refreshing the index, which would change a watched file and rerun this script next build.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("--no-optional-locks")
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout).ok()
}
