//! `cargo xtask opencryptoki`: the Debian sid root in which the openCryptoki 3.27 test token
//! runs (`target/opencryptoki/root`), made once from Debian's packages with mmdebstrap; later
//! runs find it there.
//!
//! Debian 12 has no openCryptoki 3.27 and its module needs glibc 2.38, so the token runs in a
//! root of its own ([`byok_tests::opencryptoki`] says how). The root holds `opencryptoki` and
//! `libopencryptoki0` at exactly [`OPENCRYPTOKI_VERSION`] (asked of apt, then checked with
//! `dpkg-query`), and opensc's `pkcs11-tool`; `/etc/opencryptoki/opencryptoki.conf` names the
//! soft token alone (slot 3); the directories openCryptoki's tmpfiles.d names exist with the
//! owners its daemon needs. A marker file written last tells a finished root from a half-made
//! one, which is made again.

use crate::packages;
use crate::util::run_checked;
use byok_tests::{
    OPENCRYPTOKI_CONF, OPENCRYPTOKI_PACKAGES, OPENCRYPTOKI_VERSION, opencryptoki_check_root,
    opencryptoki_host_ready, opencryptoki_root, opencryptoki_root_default,
    opencryptoki_root_marker,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The variable naming the Debian mirror the root is made from (e.g. a snapshot.debian.org
/// date, should sid have moved past the pinned version).
pub const MIRROR_ENV: &str = "BYOK_OPENCRYPTOKI_MIRROR";
const MIRROR_DEFAULT: &str = "http://deb.debian.org/debian";

/// Run inside the new root with /proc mounted (in a mount namespace of its own): the
/// directories of openCryptoki's tmpfiles.d, and `/var/lib/opencryptoki` group-writable by
/// pkcs11 (without it pkcsslotd sees no slot).
const PREPARE: &str = r#"set -eu
mount --bind /proc "$1/proc"
exec chroot "$1" sh -c '
  systemd-tmpfiles --create /usr/lib/tmpfiles.d/opencryptoki.conf
  chown -R root:pkcs11 /var/lib/opencryptoki
  chmod -R g+rwX /var/lib/opencryptoki
  mkdir -p /run/lock/opencryptoki
  chown root:pkcs11 /run/lock/opencryptoki
  chmod 0770 /run/lock/opencryptoki
  test -d /run/opencryptoki'
"#;

/// The root the tests use: `BYOK_TEST_OPENCRYPTOKI_ROOT` when set (checked, never made), else
/// `target/opencryptoki/root`, made when missing or half made (mmdebstrap installed first
/// when missing). A finished root of another version is refused, not remade.
pub fn ensure() -> Result<PathBuf, String> {
    let root = opencryptoki_root();
    if root != opencryptoki_root_default() || opencryptoki_root_marker(&root).is_file() {
        opencryptoki_check_root(&root)?;
        return Ok(root);
    }
    make(&root)?;
    Ok(root)
}

/// `cargo xtask opencryptoki`: makes the root when needed and says where it is.
pub fn run() -> Result<(), String> {
    let root = ensure()?;
    let stopped = byok_tests::sweep_orphaned_daemons();
    if !stopped.is_empty() {
        println!("opencryptoki: stopped orphaned pkcsslotd {stopped:?}");
    }
    println!(
        "opencryptoki: {} (openCryptoki {OPENCRYPTOKI_VERSION}; module {} inside it)",
        root.display(),
        byok_tests::opencryptoki_module().display()
    );
    Ok(())
}

/// mmdebstrap into `root` (removed first when half made), the version checked, the root
/// prepared, then the marker.
fn make(root: &Path) -> Result<(), String> {
    opencryptoki_host_ready()?;
    packages::ensure(&["mmdebstrap"], "to make the openCryptoki root")?;
    if !packages::on_path("mmdebstrap") {
        return Err("mmdebstrap is not on PATH: apt-get install mmdebstrap".into());
    }
    remove_half_made(root)?;
    let parent = root.parent().expect("the root sits in target/opencryptoki");
    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let mirror = std::env::var(MIRROR_ENV)
        .ok()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| MIRROR_DEFAULT.into());
    let include: Vec<String> = OPENCRYPTOKI_PACKAGES
        .iter()
        .map(|p| format!("{p}={OPENCRYPTOKI_VERSION}"))
        .chain(["opensc".to_string()])
        .collect();
    println!(
        "opencryptoki: making a Debian sid root with {} from {mirror} in {} (about 160 MB, \
         under a minute; once, then cached)",
        include.join(", "),
        root.display()
    );
    let started = Instant::now();
    run_checked(
        Command::new("mmdebstrap")
            .args([
                "--variant=apt",
                "--aptopt=Acquire::Check-Valid-Until \"false\"",
                &format!("--include={}", include.join(",")),
                "sid",
            ])
            .arg(root)
            .arg(&mirror),
    )
    .map_err(|e| {
        format!(
            "{e}\nmmdebstrap could not make the root (its output above says why; if apt found \
             no {OPENCRYPTOKI_VERSION}, sid has moved on: set {MIRROR_ENV} to a \
             snapshot.debian.org URL of a date that has it)"
        )
    })?;
    for package in OPENCRYPTOKI_PACKAGES {
        let found = byok_tests::opencryptoki_installed_version(root, package)?;
        if let Some(refusal) = byok_tests::opencryptoki_version_refusal(root, package, &found) {
            return Err(refusal);
        }
    }
    let conf = root.join("etc/opencryptoki/opencryptoki.conf");
    std::fs::write(&conf, OPENCRYPTOKI_CONF).map_err(|e| format!("{}: {e}", conf.display()))?;
    run_checked(
        Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                PREPARE,
                "sh",
            ])
            .arg(root),
    )?;
    let marker = opencryptoki_root_marker(root);
    let note = format!(
        "made by `cargo xtask opencryptoki` from {mirror}: opencryptoki {OPENCRYPTOKI_VERSION}\n"
    );
    std::fs::write(&marker, note).map_err(|e| format!("{}: {e}", marker.display()))?;
    opencryptoki_check_root(root)?;
    println!(
        "opencryptoki: root made in {:.0} s -> {}",
        started.elapsed().as_secs_f32(),
        root.display()
    );
    Ok(())
}

/// Removes what an interrupted `make` left at `root`, unless something is still mounted there.
fn remove_half_made(root: &Path) -> Result<(), String> {
    if !root.exists() {
        return Ok(());
    }
    if let Some(mount) = mount_under(root) {
        return Err(format!(
            "{} is half made and {mount} is mounted in it: unmount it, then run again",
            root.display()
        ));
    }
    println!(
        "opencryptoki: {} is half made; making it again",
        root.display()
    );
    std::fs::remove_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))
}

/// A mount point at or under `root` in this process's namespace, if any.
fn mount_under(root: &Path) -> Option<String> {
    let root = root.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mounts
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .find(|point| Path::new(point).starts_with(&root))
        .map(str::to_string)
}
