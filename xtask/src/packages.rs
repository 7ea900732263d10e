//! Debian's packages: checked with `dpkg-query`, installed with `apt-get` when we are root on
//! Debian, otherwise the exact command is named.

use crate::util::run_checked;
use std::path::Path;
use std::process::{Command, Stdio};

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

/// Whether `program` is an executable file in a `PATH` directory.
pub(crate) fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
}
