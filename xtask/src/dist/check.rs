//! `cargo xtask dist --check`: the release artefacts proven, as `cargo xtask ci` runs it.
//!
//! 1. Reproducible: `dist` in the workspace, then in a copy of its source files (tracked and
//!    untracked-but-not-ignored, as they are on disk, so an uncommitted tree is testable) in
//!    `target/dist-repro/tree/`, a cold build with its own target directory; the two
//!    `SHA256SUMS` must be identical.
//! 2. The SBOMs: byok-offline's lists cryptoki and no HTTP, TLS or async crate; byok-online's
//!    lists reqwest and azure_identity.
//! 3. Installable: both `.deb`s installed with `dpkg -i`; `--version` names the commit; `ldd`
//!    shows glibc and the loader only (no libssl, no libgcc_s); `byok-offline tokens` sees a
//!    fresh SoftHSM token; `byok-online` creates and shows a KEK in kv-emulator; then
//!    `dpkg -r`, whether or not the checks passed.

use super::{BINARIES, DistProfile, Source, Tree};
use crate::util::run_checked;
use byok_tests::{Emulator, ModuleKind, Profile, TestToken};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What `ldd` may list: the vDSO, glibc (libc, libm) and the loader.
const ALLOWED_LIBS: [&str; 4] = [
    "linux-vdso.so.1",
    "libc.so.6",
    "libm.so.6",
    "ld-linux-x86-64.so.2",
];

/// Crate name prefixes the air-gapped binary must not link: HTTP, TLS, async I/O, the SDK.
const OFFLINE_FORBIDDEN: [&str; 13] = [
    "reqwest",
    "hyper",
    "h2",
    "http",
    "rustls",
    "tokio",
    "mio",
    "socket2",
    "azure_",
    "aws-lc",
    "ring",
    "openssl",
    "native-tls",
];

/// `cargo xtask dist --check`.
pub fn run(profile: DistProfile) -> Result<(), String> {
    let mut times: Vec<(&str, Duration)> = Vec::new();
    let workspace = byok_tests::workspace();
    let source = Source::of(&workspace)?;
    // The copy is taken first: a file edited while the workspace builds then shows up as
    // that, not as a build that is not reproducible.
    let copy = byok_tests::target_dir().join("dist-repro").join("tree");
    let files = copy_sources(&workspace, &copy)?;
    let t = Instant::now();
    let a = Tree::new(workspace.clone(), &byok_tests::target_dir());
    let b = Tree::new(copy.clone(), &copy.join("target"));
    // Both trees build at once: each cargo leaves a core idle while it links or compiles one
    // large crate alone, and the other fills it. Nothing is shared but the cargo registry,
    // which cargo locks itself.
    std::thread::scope(|scope| {
        let copy_build = scope.spawn(|| super::make(&b, &source, profile));
        let workspace_build = super::make(&a, &source, profile);
        let copy_build = copy_build
            .join()
            .unwrap_or_else(|_| Err("the copy's dist build panicked".into()));
        workspace_build.and(copy_build)
    })?;
    times.push((
        "dist in the workspace and, at once, in a copy of the tree (cold)",
        t.elapsed(),
    ));
    unchanged(&workspace, &copy, &files)?;
    same_sums(&a.out, &b.out)?;
    // Kept when they differ, for diffoscope; a cold build's gigabytes otherwise.
    let _ = std::fs::remove_dir_all(&b.build);
    println!("dist --check: reproducible: both trees give the same SHA256SUMS");
    sboms(&a.out)?;
    let t = Instant::now();
    install(&a.out, &source)?;
    times.push(("dpkg -i, run, dpkg -r", t.elapsed()));
    println!("\ndist --check: time per part (profile {})", profile.name());
    for (part, took) in &times {
        println!("  {:>6.0} s  {part}", took.as_secs_f32());
    }
    Ok(())
}

/// Copies the source files of `workspace` (what git tracks or would, as they are on disk) into
/// a fresh `to`; returns their paths, relative.
fn copy_sources(workspace: &Path, to: &Path) -> Result<Vec<PathBuf>, String> {
    super::fresh_dir(to)?;
    let out = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(workspace)
        .output()
        .map_err(|e| format!("could not run git ls-files: {e}"))?;
    if !out.status.success() {
        return Err("git ls-files failed: the check copies what git lists".into());
    }
    let mut copied = Vec::new();
    for name in out.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let rel = PathBuf::from(String::from_utf8_lossy(name).into_owned());
        let from = workspace.join(&rel);
        let Ok(meta) = std::fs::symlink_metadata(&from) else {
            continue; // deleted in the work tree
        };
        let dest = to.join(&rel);
        if meta.file_type().is_symlink() {
            let link = std::fs::read_link(&from).map_err(|e| e.to_string())?;
            std::fs::create_dir_all(dest.parent().unwrap_or(to)).map_err(|e| e.to_string())?;
            std::os::unix::fs::symlink(link, &dest).map_err(|e| e.to_string())?;
        } else if meta.is_file() {
            use std::os::unix::fs::PermissionsExt;
            super::copy_file(&from, &dest, meta.permissions().mode() & 0o777)?;
        }
        copied.push(rel);
    }
    println!(
        "dist --check: copied {} source files to {}",
        copied.len(),
        to.display()
    );
    Ok(copied)
}

/// Whether a source file can change an artefact: the crates' sources and manifests, the lock
/// file, what the packages copy (README, licences, xtask/dist/); not tests, docs or the xtask's
/// own code, which was compiled before the copy was taken.
fn feeds_artefacts(rel: &Path) -> bool {
    let top = [
        "Cargo.toml",
        "Cargo.lock",
        "README.md",
        "LICENSE-MIT",
        "LICENSE-APACHE",
    ];
    let in_tests = rel.components().any(|c| c.as_os_str() == "tests");
    top.iter().any(|t| rel == Path::new(t))
        || rel.starts_with("xtask/dist")
        || (rel.starts_with("crates") && !in_tests)
}

/// The workspace's files still read as the copy's: nobody edited the tree while it built.
fn unchanged(workspace: &Path, copy: &Path, files: &[PathBuf]) -> Result<(), String> {
    let changed: Vec<String> = files
        .iter()
        .filter(|f| feeds_artefacts(f))
        .filter(|f| std::fs::read(workspace.join(f)).ok() != std::fs::read(copy.join(f)).ok())
        .map(|f| f.display().to_string())
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the work tree changed while dist built it ({}): the two builds would not have the same \
         source; run the check again when nobody is editing",
        changed.join(", ")
    ))
}

/// The two SHA256SUMS are the same bytes, or which artefacts differ.
fn same_sums(a: &Path, b: &Path) -> Result<(), String> {
    let read = |d: &Path| {
        std::fs::read_to_string(d.join("SHA256SUMS"))
            .map_err(|e| format!("{}: {e}", d.join("SHA256SUMS").display()))
    };
    let (sa, sb) = (read(a)?, read(b)?);
    if sa == sb {
        return Ok(());
    }
    let differ: Vec<String> = sa
        .lines()
        .filter(|l| !sb.lines().any(|m| m == *l))
        .map(|l| {
            let name = l.get(66..).unwrap_or(l);
            format!(
                "  diffoscope {} {}",
                a.join(name).display(),
                b.join(name).display()
            )
        })
        .collect();
    Err(format!(
        "the build is not reproducible: SHA256SUMS in {} and {} differ; see how with:\n{}",
        a.display(),
        b.display(),
        differ.join("\n")
    ))
}

/// The SBOMs list what each binary must and must not link.
fn sboms(out: &Path) -> Result<(), String> {
    let offline = component_names(&out.join("byok-offline.cdx.json"))?;
    let forbidden: Vec<&String> = offline
        .iter()
        .filter(|n| OFFLINE_FORBIDDEN.iter().any(|f| n.starts_with(f)))
        .collect();
    if !forbidden.is_empty() {
        return Err(format!(
            "byok-offline links {forbidden:?}: the air-gapped binary must link no HTTP, TLS or \
             async crate; `cargo tree -p byok-offline -e normal -i CRATE` shows who pulls it in"
        ));
    }
    let online = component_names(&out.join("byok-online.cdx.json"))?;
    for (names, bin, needed) in [
        (&offline, "byok-offline", "cryptoki"),
        (&online, "byok-online", "reqwest"),
        (&online, "byok-online", "azure_identity"),
    ] {
        if !names.iter().any(|n| n == needed) {
            return Err(format!(
                "{bin}'s SBOM does not list {needed}, which it links"
            ));
        }
    }
    println!(
        "dist --check: SBOMs: byok-offline {} crates (cryptoki, no HTTP/TLS/async), byok-online {} \
         (reqwest, azure_identity)",
        offline.len(),
        online.len()
    );
    Ok(())
}

fn component_names(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bom: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(bom["components"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect())
}

/// Installs both packages, checks them, and removes them on every path.
fn install(out: &Path, source: &Source) -> Result<(), String> {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if !is_root {
        return Err(
            "the install test runs dpkg -i and needs root: run `cargo xtask dist --check` as \
             root (CI does), or `cargo xtask dist` alone"
                .into(),
        );
    }
    crate::tokens::ensure_token(ModuleKind::SoftHsm)?;
    let bin = byok_tests::build_bins(Profile::Debug)?; // kv-emulator, as e2e builds it
    let debs = BINARIES.map(|b| out.join(super::deb::file_name(b, source)));
    run_checked(Command::new("dpkg").arg("-i").args(&debs))?;
    let checked = installed(&bin, source);
    let removed = run_checked(Command::new("dpkg").arg("-r").args(BINARIES));
    checked?;
    removed?;
    println!("dist --check: both .debs installed, ran, and were removed");
    Ok(())
}

/// The installed binaries: version, links, files, and one command each against a test service.
fn installed(bin: &Path, source: &Source) -> Result<(), String> {
    for b in BINARIES {
        let exe = PathBuf::from("/usr/bin").join(b);
        let version = stdout_of(Command::new(&exe).arg("--version"))?;
        let want = format!("{b} {}", source.long_version());
        if version.trim() != want {
            return Err(format!(
                "`{b} --version` printed `{}`, not `{want}`: its clap parser must say \
                 #[command(version = byok_cli_common::version::LONG_VERSION)]",
                version.trim()
            ));
        }
        println!("dist --check: {}", version.trim());
        only_glibc(&exe)?;
        let bash = format!(". /usr/share/bash-completion/completions/{b} && complete -p {b}");
        stdout_of(Command::new("bash").args(["-c", &bash]))
            .map_err(|e| format!("the installed bash completion does not load: {e}"))?;
        let man = format!("/usr/share/man/man1/{b}.1.gz");
        if !Path::new(&man).is_file() {
            return Err(format!("the package installed no {man}"));
        }
    }
    let dir = crate::ceremony::work_dir("dist-install");
    let token = TestToken::softhsm_in(&dir.join("token"), "byok-dist", "1234")?;
    let tokens = stdout_of(token.command("/usr/bin/byok-offline").arg("tokens"))?;
    crate::util::expect(&tokens, "byok-dist")?;
    println!("dist --check: byok-offline tokens sees SoftHSM's `byok-dist`");
    let emu = Emulator::start(&bin.join("kv-emulator"), &dir.join("emulator"), &[])?;
    let online = |args: &[&str]| {
        let mut cmd = Command::new("/usr/bin/byok-online");
        // Run in the work directory: `kek create` records in ./ceremony-log.jsonl, which must
        // not land in the repository.
        cmd.arg("--emulator")
            .arg(emu.state())
            .args(args)
            .current_dir(&dir);
        stdout_of(&mut cmd)
    };
    online(&["kek", "create", "--name", "dist-kek", "--size", "2048"])?;
    crate::util::expect(&online(&["show", "--name", "dist-kek"])?, "dist-kek")?;
    println!("dist --check: byok-online created and showed a KEK in kv-emulator");
    Ok(())
}

/// `ldd exe` lists only [`ALLOWED_LIBS`].
fn only_glibc(exe: &Path) -> Result<(), String> {
    let out = stdout_of(Command::new("ldd").arg(exe))?;
    print!("dist --check: ldd {}\n{out}", exe.display());
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let lib = line.split_whitespace().next().unwrap_or_default();
        let name = Path::new(lib)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        if !name.is_some_and(|n| ALLOWED_LIBS.contains(&n.as_str())) {
            return Err(format!(
                "{} needs {lib} at run time; the binaries may need only glibc and the loader \
                 ({}): see the static unwinder in xtask/src/dist/compile.rs",
                exe.display(),
                ALLOWED_LIBS.join(", ")
            ));
        }
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout, or its stderr as the error.
fn stdout_of(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_the_artefacts_are_made_of_must_stay_unchanged() {
        for (path, feeds) in [
            ("crates/byok-offline/src/main.rs", true),
            ("crates/byok-cli-common/build.rs", true),
            ("Cargo.lock", true),
            ("xtask/dist/copyright.in", true),
            ("crates/byok-offline/tests/package.rs", false),
            ("xtask/src/ci.rs", false),
            ("docs/security.md", false),
        ] {
            assert_eq!(feeds_artefacts(Path::new(path)), feeds, "{path}");
        }
    }
}
