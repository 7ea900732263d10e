//! `cargo xtask dist`: the release artefacts the two workstations install, for Linux x86_64
//! (glibc), written to `target/dist/`:
//!
//! - per binary, `BIN-VERSION-x86_64-unknown-linux-gnu.tar.gz` ([`tarball`]) and
//!   `BIN_VERSION_amd64.deb` ([`deb`]): the binary, a README excerpt, the licences, shell
//!   completions, man pages and the SBOM;
//! - per binary, `BIN.cdx.json` ([`sbom`]): a CycloneDX 1.5 SBOM of exactly the crates linked
//!   into it, read from the build itself;
//! - `SHA256SUMS` over all of them (`sha256sum -c SHA256SUMS`).
//!
//! The build is reproducible ([`compile`]): a copy of the tree built elsewhere, later, gives the
//! same `SHA256SUMS`. `cargo xtask dist --check` ([`check`]) proves that by building twice, then
//! asserts what the binaries link, installs both `.deb`s with `dpkg -i`, runs them against
//! SoftHSM and kv-emulator, and removes them; `cargo xtask ci` runs it.
//!
//! Two profiles (root Cargo.toml): `dist` is `release` unchanged: no LTO and 16 codegen units,
//! since a ceremony waits on the HSM and the network, not on our code, and a cold build of both
//! binaries already takes several minutes on two cores. `dist-ci` is `dist` unoptimised (the
//! same flags and packaging, the archives compressed at the tools' fastest level), so that CI's
//! two cold builds take minutes, not a quarter hour; its artefacts are for the checks, not for
//! release.

mod check;
mod compile;
mod deb;
mod files;
mod sbom;
mod tarball;

pub use check::run as check;
pub use files::{
    copy_file, file_name, files_in, fresh_dir, normalize, sha256_file, sha256_hex, write_file,
};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

/// The one platform the workstations run: Debian's baseline, x86_64 with glibc.
pub const TARGET: &str = "x86_64-unknown-linux-gnu";
/// The binaries shipped (kv-emulator is a test tool and is not).
pub const BINARIES: [&str; 2] = ["byok-offline", "byok-online"];

/// The cargo profile of a dist build (both in the root Cargo.toml).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DistProfile {
    /// The release artefacts.
    Dist,
    /// CI's: the same flags and packaging, built faster (less optimisation); not for release.
    DistCi,
}

impl DistProfile {
    pub fn name(self) -> &'static str {
        match self {
            DistProfile::Dist => "dist",
            DistProfile::DistCi => "dist-ci",
        }
    }

    /// How hard the archives are compressed. The release's: gzip -9 and dpkg-deb's xz -6.
    /// CI's: the fastest levels of the same tools, equally deterministic; xz -6 over two
    /// unoptimised binaries took about 30 s per tree, a minute of every CI run spent on bytes
    /// nobody downloads.
    pub fn compression(self) -> Compression {
        match self {
            DistProfile::Dist => Compression {
                gzip: "-9",
                xz: "-z6",
            },
            DistProfile::DistCi => Compression {
                gzip: "-1",
                xz: "-z0",
            },
        }
    }
}

/// The compression level flags of `gzip` (the tarball) and `dpkg-deb` (the `.deb`'s xz).
#[derive(Clone, Copy, Debug)]
pub struct Compression {
    pub gzip: &'static str,
    pub xz: &'static str,
}

/// What the artefacts say about their source; the same for every copy of the tree.
pub struct Source {
    /// The workspace version (`0.1.0`).
    pub version: String,
    /// 12 hex digits of the commit.
    pub commit: String,
    /// Tracked files differ from the commit.
    pub dirty: bool,
    /// `SOURCE_DATE_EPOCH`: the commit's time, the only time any artefact carries.
    pub epoch: i64,
}

impl Source {
    /// The workspace's version, and its commit, dirtiness and time from git; `SOURCE_DATE_EPOCH`
    /// and `BYOK_GIT_COMMIT_OVERRIDE` win when set (a build from a source tarball has no git).
    pub fn of(workspace: &Path) -> Result<Self, String> {
        let version = sbom::workspace_version(workspace)?;
        let (commit, dirty) = match std::env::var("BYOK_GIT_COMMIT_OVERRIDE") {
            Ok(v) if !v.trim().is_empty() => match v.trim().strip_suffix("-dirty") {
                Some(c) => (c.to_string(), true),
                None => (v.trim().to_string(), false),
            },
            _ => {
                let head = git(workspace, &["rev-parse", "HEAD"])?;
                let status = git(
                    workspace,
                    &["status", "--porcelain", "--untracked-files=no"],
                )?;
                (head, !status.trim().is_empty())
            }
        };
        let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) if !v.trim().is_empty() => v.trim().parse::<i64>().map_err(|_| {
                format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds; unset it or fix it")
            })?,
            _ => git(workspace, &["log", "-1", "--format=%ct"])?
                .trim()
                .parse::<i64>()
                .map_err(|e| format!("git log gave no commit time: {e}"))?,
        };
        let commit: String = commit.trim().chars().take(12).collect();
        Ok(Source {
            version,
            commit,
            dirty,
            epoch,
        })
    }

    /// `BYOK_GIT_COMMIT_OVERRIDE` for the build: `COMMIT` or `COMMIT-dirty`.
    pub fn commit_override(&self) -> String {
        let suffix = if self.dirty { "-dirty" } else { "" };
        format!("{}{suffix}", self.commit)
    }

    /// What `--version` must print after the binary's name (byok-cli-common's `LONG_VERSION`).
    pub fn long_version(&self) -> String {
        let tree = if self.dirty { "dirty" } else { "clean" };
        format!("{} (commit {}, {tree})", self.version, self.commit)
    }

    pub fn mtime(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(self.epoch.max(0) as u64)
    }
}

fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .arg("--no-optional-locks")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| {
            format!("could not run git ({e}); set BYOK_GIT_COMMIT_OVERRIDE and SOURCE_DATE_EPOCH")
        })?;
    if !out.status.success() {
        return Err(format!(
            "`git {}` failed in {}: {}; outside a git checkout set BYOK_GIT_COMMIT_OVERRIDE and \
             SOURCE_DATE_EPOCH",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// One source tree, and where its build and its artefacts go.
pub struct Tree {
    pub root: PathBuf,
    /// Cargo's target directory for dist builds: apart from target/debug and target/release,
    /// so a dist build never invalidates the developers' caches.
    pub build: PathBuf,
    /// The artefacts.
    pub out: PathBuf,
}

impl Tree {
    /// A tree whose cargo target directory is `target`.
    pub fn new(root: PathBuf, target: &Path) -> Self {
        Tree {
            root,
            build: target.join("dist-build"),
            out: target.join("dist"),
        }
    }

    /// A staging directory below the build directory, emptied.
    fn stage(&self, parts: &[&str]) -> Result<PathBuf, String> {
        let dir = parts
            .iter()
            .fold(self.build.join("stage"), |d, p| d.join(p));
        fresh_dir(&dir)?;
        Ok(dir)
    }
}

/// `cargo xtask dist`: builds the artefacts of this workspace into target/dist/ and lists them.
pub fn run(profile: DistProfile) -> Result<(), String> {
    let started = std::time::Instant::now();
    let workspace = byok_tests::workspace();
    let source = Source::of(&workspace)?;
    if source.dirty {
        println!(
            "dist: the work tree has uncommitted changes, so the binaries will say `dirty`: \
             commit first when these are for release"
        );
    }
    let tree = Tree::new(workspace, &byok_tests::target_dir());
    let artefacts = make(&tree, &source, profile)?;
    list(&tree, &artefacts)?;
    println!(
        "dist: {} artefacts in {} ({:.0} s)",
        artefacts.len(),
        tree.out.display(),
        started.elapsed().as_secs_f32()
    );
    Ok(())
}

/// Builds every artefact of `tree` into `tree.out` (emptied first); returns their paths, then
/// SHA256SUMS last.
pub fn make(tree: &Tree, source: &Source, profile: DistProfile) -> Result<Vec<PathBuf>, String> {
    println!(
        "dist: {} {} in {} (profile {}, SOURCE_DATE_EPOCH={})",
        BINARIES.join(" and "),
        source.long_version(),
        tree.root.display(),
        profile.name(),
        source.epoch
    );
    fresh_dir(&tree.out)?;
    let metadata = sbom::Metadata::load(&tree.root)?;
    let mut artefacts = Vec::new();
    for bin in BINARIES {
        let built = compile::binary(tree, source, profile, bin)?;
        let docs = Docs::generate(tree, bin, &built.exe)?;
        let sbom = sbom::write(&metadata, &built, source, &tree.out)?;
        let readme = tarball::readme_excerpt(&tree.root, bin, source)?;
        let parts = Parts {
            bin,
            compression: profile.compression(),
            exe: &built.exe,
            docs: &docs,
            sbom: &sbom,
            readme: &readme,
        };
        artefacts.push(tarball::write(tree, source, &parts)?);
        artefacts.push(deb::write(tree, source, &parts)?);
        artefacts.push(sbom);
    }
    artefacts.push(write_sums(&tree.out, &artefacts)?);
    Ok(artefacts)
}

/// What both packages of one binary hold.
pub struct Parts<'a> {
    pub bin: &'a str,
    pub compression: Compression,
    pub exe: &'a Path,
    pub docs: &'a Docs,
    pub sbom: &'a Path,
    pub readme: &'a str,
}

/// Completion scripts and man pages, made by the built binary itself (`completions SHELL`,
/// `man --dir DIR`), so they always match its flags.
pub struct Docs {
    /// (shell, script) for bash, zsh, fish, elvish, powershell.
    pub completions: Vec<(&'static str, Vec<u8>)>,
    /// The `.1` pages, sorted.
    pub man: Vec<PathBuf>,
}

impl Docs {
    fn generate(tree: &Tree, bin: &str, exe: &Path) -> Result<Self, String> {
        let mut completions = Vec::new();
        for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
            let script = run_bin(Command::new(exe).args(["completions", shell]))?;
            completions.push((shell, script));
        }
        let dir = tree.stage(&["man", bin])?;
        run_bin(Command::new(exe).arg("man").arg("--dir").arg(&dir))?;
        let mut man = files_in(&dir)?;
        man.retain(|p| p.extension().is_some_and(|e| e == "1"));
        if man.is_empty() {
            return Err(format!(
                "`{bin} man --dir {}` wrote no .1 page",
                dir.display()
            ));
        }
        Ok(Docs { completions, man })
    }
}

/// Runs the freshly built binary with an empty environment (clap shows environment values in
/// help, and an artefact must not depend on the builder's) and returns its stdout.
fn run_bin(cmd: &mut Command) -> Result<Vec<u8>, String> {
    cmd.env_clear().env("LC_ALL", "C");
    let out = cmd
        .output()
        .map_err(|e| format!("could not run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}\n(the binaries must have `completions <shell>` and \
             `man --dir DIR`, see byok-cli-common's shell module)",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout)
}

/// `SHA256SUMS` in `sha256sum`'s format, sorted by name.
fn write_sums(out: &Path, artefacts: &[PathBuf]) -> Result<PathBuf, String> {
    let mut lines = Vec::new();
    for path in artefacts {
        let name = file_name(path);
        lines.push(format!("{}  {name}\n", sha256_file(path)?));
    }
    lines.sort_by(|a, b| a[66..].cmp(&b[66..]));
    let path = out.join("SHA256SUMS");
    write_file(&path, lines.concat().as_bytes(), 0o644)?;
    Ok(path)
}

fn list(tree: &Tree, artefacts: &[PathBuf]) -> Result<(), String> {
    for path in artefacts {
        let size = std::fs::metadata(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .len();
        println!("  {size:>10}  {}", file_name(path));
    }
    let sums = std::fs::read_to_string(tree.out.join("SHA256SUMS")).unwrap_or_default();
    print!("{sums}");
    Ok(())
}
