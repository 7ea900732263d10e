//! What the test tokens need from Debian's packages: checked with `dpkg-query`, installed with
//! `apt-get` when we are root on Debian, otherwise the exact command is named.

use crate::ci::run_checked;
use byok_tests::ModuleKind;
use std::path::Path;
use std::process::{Command, Stdio};

/// Each token's initialising tool and the Debian packages holding it and its module.
fn needs(kind: ModuleKind) -> (&'static str, &'static [&'static str]) {
    match kind {
        ModuleKind::SoftHsm => ("softhsm2-util", &["softhsm2"]),
        ModuleKind::Kryoptic => ("pkcs11-tool", &["opensc"]),
        ModuleKind::Nss => ("certutil", &["libnss3", "libnss3-tools"]),
        // The tools run inside the sid root; the host only needs mmdebstrap to make it.
        ModuleKind::OpenCryptoki => ("mmdebstrap", &["mmdebstrap"]),
        _ => ("true", &[]),
    }
}

/// Makes a token of `kind` possible: its packages installed, for kryoptic the module built
/// (`cargo xtask kryoptic`), for openCryptoki mmdebstrap installed and the sid root made
/// (`cargo xtask opencryptoki`); then the module is where the kit looks for it.
pub fn ensure_token(kind: ModuleKind) -> Result<(), String> {
    let (tool, packages) = needs(kind);
    if kind == ModuleKind::OpenCryptoki {
        ensure(packages, "to make the openCryptoki token's Debian sid root")?;
        crate::opencryptoki::ensure()?;
        return kind.present_module().map(drop);
    }
    let module_missing = kind != ModuleKind::Kryoptic && !kind.module().exists();
    if module_missing || !on_path(tool) {
        ensure(packages, &format!("for the {kind} token"))?;
    }
    if kind == ModuleKind::Kryoptic {
        crate::kryoptic::ensure()?;
    }
    kind.present_module().map(drop)
}

/// Installs those of `packages` that `dpkg-query` does not list as installed (as root on
/// Debian), or names the command that would; elsewhere it leaves the check to the tools.
pub fn ensure(packages: &[&str], why: &str) -> Result<(), String> {
    if !Path::new("/etc/debian_version").exists() {
        return Ok(());
    }
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !is_root() {
        return Err(format!(
            "Debian packages missing {why}: {list}; install them with `sudo apt-get install \
             {list}`, then run again"
        ));
    }
    println!("xtask: installing {list} from Debian's packages ({why})");
    run_checked(Command::new("apt-get").args(["update", "-qq"]))?;
    run_checked(
        Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null()),
    )
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.ends_with(b" installed"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

pub(crate) fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
}
