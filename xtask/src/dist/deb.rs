//! `BIN_VERSION_amd64.deb`, built by `dpkg-deb --root-owner-group --build` from a staged tree
//! and a control file (`xtask/dist/BIN.control`, `xtask/dist/copyright.in`).
//!
//! Why not cargo-deb: it would be one more tool to build from crates.io in every fresh CI run,
//! and it drives its own `cargo build`, where ours sets the flags that make the binary
//! reproducible ([`super::compile`]). `dpkg-deb` is on every Debian machine, and since dpkg
//! 1.18.11 it takes the ar member times and clamps the tar entries' times to
//! `SOURCE_DATE_EPOCH`; we give every staged file that time and a fixed mode as well, and
//! `--root-owner-group` records root:root, so the same tree gives the same `.deb`.
//!
//! The package installs `/usr/bin/BIN`, man pages in `/usr/share/man/man1` (gzip -n), the
//! bash, zsh and fish completions where Debian's shells look for them, and `copyright`,
//! `README.md` and the SBOM in `/usr/share/doc/BIN`. `Depends: libc6 (>= V)`, V the newest
//! `GLIBC_` symbol version the binary uses, as dpkg-shlibdeps would compute it.

use super::{Parts, Source, Tree};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where each shell's completion goes in the package (the others are in the tarball only).
fn completion_path(shell: &str, bin: &str) -> Option<String> {
    match shell {
        "bash" => Some(format!("usr/share/bash-completion/completions/{bin}")),
        "zsh" => Some(format!("usr/share/zsh/vendor-completions/_{bin}")),
        "fish" => Some(format!("usr/share/fish/vendor_completions.d/{bin}.fish")),
        _ => None,
    }
}

/// The package's file name in `target/dist/`.
pub fn file_name(bin: &str, source: &Source) -> String {
    format!("{bin}_{}_amd64.deb", source.version)
}

/// Stages the package tree and builds the `.deb` into `tree.out`.
pub fn write(tree: &Tree, source: &Source, parts: &Parts<'_>) -> Result<PathBuf, String> {
    let bin = parts.bin;
    let stage = tree.stage(&["deb", bin])?;
    super::copy_file(parts.exe, &stage.join("usr/bin").join(bin), 0o755)?;
    for page in &parts.docs.man {
        let name = format!("{}.gz", super::file_name(page));
        let bytes = std::fs::read(page).map_err(|e| format!("{}: {e}", page.display()))?;
        let to = stage.join("usr/share/man/man1").join(name);
        super::write_file(&to, &gzip(&bytes)?, 0o644)?;
    }
    for (shell, script) in &parts.docs.completions {
        if let Some(path) = completion_path(shell, bin) {
            super::write_file(&stage.join(path), script, 0o644)?;
        }
    }
    let doc = stage.join("usr/share/doc").join(bin);
    super::write_file(
        &doc.join("copyright"),
        copyright(tree, bin)?.as_bytes(),
        0o644,
    )?;
    super::write_file(&doc.join("README.md"), parts.readme.as_bytes(), 0o644)?;
    super::copy_file(parts.sbom, &doc.join(super::file_name(parts.sbom)), 0o644)?;
    let md5sums = md5sums(&stage)?;
    let control = control(tree, bin, source, &stage, parts.exe)?;
    super::write_file(&stage.join("DEBIAN/md5sums"), md5sums.as_bytes(), 0o644)?;
    super::write_file(&stage.join("DEBIAN/control"), control.as_bytes(), 0o644)?;
    super::normalize(&stage, source)?;
    let out = tree.out.join(file_name(bin, source));
    let status = Command::new("dpkg-deb")
        .args([
            "--root-owner-group",
            "-Zxz",
            parts.compression.xz,
            "--build",
        ])
        .arg(&stage)
        .arg(&out)
        .env("SOURCE_DATE_EPOCH", source.epoch.to_string())
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("could not run dpkg-deb ({e}); on Debian: apt-get install dpkg"))?;
    if !status.success() {
        return Err(format!(
            "dpkg-deb --build {} failed ({status})",
            stage.display()
        ));
    }
    Ok(out)
}

/// `xtask/dist/BIN.control` with the version, size and glibc dependency filled in.
fn control(
    tree: &Tree,
    bin: &str,
    source: &Source,
    stage: &Path,
    exe: &Path,
) -> Result<String, String> {
    let path = tree.root.join("xtask/dist").join(format!("{bin}.control"));
    let template =
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let depends = match glibc_needed(exe)? {
        Some(v) => format!("libc6 (>= {v})"),
        None => "libc6".to_string(),
    };
    Ok(template
        .replace("@VERSION@", &source.version)
        .replace("@INSTALLED_SIZE@", &installed_size(stage)?.to_string())
        .replace("@DEPENDS@", &depends))
}

/// `copyright.in` with the package name and the MIT text (Debian's format indents it and
/// writes blank lines as ` .`).
fn copyright(tree: &Tree, bin: &str) -> Result<String, String> {
    let read =
        |p: PathBuf| std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()));
    let template = read(tree.root.join("xtask/dist/copyright.in"))?;
    let mit: Vec<String> = read(tree.root.join("LICENSE-MIT"))?
        .lines()
        .map(|l| {
            if l.trim().is_empty() {
                " .".to_string()
            } else {
                format!(" {l}")
            }
        })
        .collect();
    Ok(template
        .replace("@PACKAGE@", bin)
        .replace("@MIT@", &mit.join("\n")))
}

/// The newest `GLIBC_x.y` version among the binary's dynamic symbols (`objdump -T`).
fn glibc_needed(exe: &Path) -> Result<Option<String>, String> {
    let out = Command::new("objdump")
        .arg("-T")
        .arg(exe)
        .output()
        .map_err(|e| format!("could not run objdump ({e}); install binutils"))?;
    if !out.status.success() {
        return Err(format!("objdump -T {} failed", exe.display()));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let newest = text
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let parts: Option<Vec<u32>> = v.split('.').map(|n| n.parse().ok()).collect();
            parts.map(|p| (p, v.to_string()))
        })
        .max();
    Ok(newest.map(|(_, v)| v))
}

/// KiB the package takes once installed, counted as dpkg-gencontrol does: each file rounded
/// up to a KiB, each directory one.
fn installed_size(stage: &Path) -> Result<u64, String> {
    fn walk(dir: &Path, total: &mut u64) -> Result<(), String> {
        for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.file_name().is_some_and(|n| n == "DEBIAN") {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).map_err(|e| e.to_string())?;
            if meta.is_dir() {
                *total += 1;
                walk(&path, total)?;
            } else {
                *total += meta.len().div_ceil(1024);
            }
        }
        Ok(())
    }
    let mut total = 0;
    walk(stage, &mut total)?;
    Ok(total)
}

/// `DEBIAN/md5sums` (what `dpkg --verify` checks), paths relative to the root, sorted.
fn md5sums(stage: &Path) -> Result<String, String> {
    let mut files = Vec::new();
    collect_files(stage, stage, &mut files)?;
    files.sort();
    let out = Command::new("md5sum")
        .args(&files)
        .current_dir(stage)
        .output()
        .map_err(|e| format!("could not run md5sum ({e}); install coreutils"))?;
    if !out.status.success() {
        return Err(format!("md5sum in {} failed", stage.display()));
    }
    String::from_utf8(out.stdout).map_err(|e| e.to_string())
}

fn collect_files(root: &Path, dir: &Path, files: &mut Vec<String>) -> Result<(), String> {
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_dir() {
            collect_files(root, &path, files)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            files.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

/// `gzip -9n`: no name or time in the header, so the same page compresses to the same bytes.
fn gzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let mut child = Command::new("gzip")
        .args(["-9", "-n", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not run gzip ({e}); install gzip"))?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    writer
        .join()
        .map_err(|_| "gzip's writer panicked".to_string())?
        .map_err(|e| format!("writing to gzip: {e}"))?;
    if !out.status.success() {
        return Err(format!("gzip failed ({})", out.status));
    }
    Ok(out.stdout)
}
