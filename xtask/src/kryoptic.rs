//! `cargo xtask kryoptic`: kryoptic, a PKCS#11 soft token written in Rust, built from its
//! published crate on crates.io (pinned, with the lock kept in `xtask/kryoptic/Cargo.lock`)
//! into `target/kryoptic/libkryoptic_pkcs11.so`, once; later runs find it there.
//!
//! The build is a throwaway Cargo project in `target/kryoptic/build` (its own `[workspace]`,
//! an empty library) depending on `kryoptic` with the `minimal` feature and `kryoptic-lib`
//! with `dynamic` (the system's libcrypto: kryoptic's default features need OpenSSL >= 3.2,
//! Debian 12 has 3.0). It needs Debian's libclang-dev (bindgen), libssl-dev, libsqlite3-dev
//! and pkg-config. None of kryoptic's code is kept in this repository.

use crate::packages;
use crate::util::run_checked;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The throwaway project's manifest: the two crates, pinned.
const MANIFEST: &str = r#"[package]
name = "kryoptic-build"
version = "0.0.0"
edition = "2021"
publish = false

[lib]
path = "lib.rs"

[dependencies]
kryoptic = { version = "=1.5.4", default-features = false, features = ["minimal"] }
kryoptic-lib = { version = "=1.5.4", default-features = false, features = ["dynamic"] }

[workspace]
"#;

/// The lock of every crate the build uses, so each build compiles the same sources.
const LOCK: &str = include_str!("../kryoptic/Cargo.lock");

/// What the build needs from Debian.
const BUILD_PACKAGES: [&str; 4] = ["libclang-dev", "libssl-dev", "libsqlite3-dev", "pkg-config"];

/// The module kryoptic's build leaves among its dependencies' outputs (named with a hash).
const CDYLIB_PREFIX: &str = "libkryoptic_pkcs11-";

/// The module the tests use: `BYOK_TEST_KRYOPTIC_MODULE` when set (not built then), else
/// `target/kryoptic/libkryoptic_pkcs11.so`, built when missing or made from another pin.
pub fn ensure() -> Result<PathBuf, String> {
    let module = byok_tests::kryoptic_module();
    if module != byok_tests::kryoptic_module_default() {
        return byok_tests::ModuleKind::Kryoptic.present_module();
    }
    let stamp = stamp_path(&module);
    let fresh =
        module.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == pin_digest());
    if fresh {
        return Ok(module);
    }
    build(&module)?;
    Ok(module)
}

/// `cargo xtask kryoptic`: builds when needed and prints where the module is.
pub fn run() -> Result<(), String> {
    let module = ensure()?;
    println!("kryoptic: {}", module.display());
    Ok(())
}

/// The stamp beside the module: the digest of the manifest and lock it was built from.
fn stamp_path(module: &Path) -> PathBuf {
    module.with_extension("so.pin")
}

fn pin_digest() -> String {
    digest_of(MANIFEST, LOCK)
}

/// FNV-1a (64 bits) of a manifest and a lock: a cache key, not a security check.
fn digest_of(manifest: &str, lock: &str) -> String {
    let hash = manifest
        .bytes()
        .chain(lock.bytes())
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("kryoptic =1.5.4 minimal, kryoptic-lib =1.5.4 dynamic, fnv1a64 {hash:016x}")
}

/// Writes the throwaway project, builds it (release, `--locked`) and copies the module to
/// `module`, then writes the stamp.
fn build(module: &Path) -> Result<(), String> {
    packages::ensure(&BUILD_PACKAGES, "to build kryoptic")?;
    let root = module.parent().expect("the module sits in target/kryoptic");
    let project = root.join("build");
    std::fs::create_dir_all(&project).map_err(|e| format!("{}: {e}", project.display()))?;
    for (name, text) in [
        ("Cargo.toml", MANIFEST),
        ("Cargo.lock", LOCK),
        ("lib.rs", "//! Empty: this project only builds kryoptic.\n"),
    ] {
        let path = project.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    println!(
        "kryoptic: building kryoptic 1.5.4 from crates.io in {} (about 2 minutes on 2 cores; \
         once, then cached)",
        project.display()
    );
    let started = Instant::now();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = project.join("target");
    run_checked(
        Command::new(cargo)
            .args(["build", "--release", "--locked", "--quiet", "--lib"])
            .arg("--manifest-path")
            .arg(project.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target)
            .current_dir(&project),
    )
    .map_err(|e| format!("{e}\nkryoptic did not build; the output above says why"))?;
    let built = find_cdylib(&target.join("release").join("deps"))?;
    let partial = module.with_extension("so.partial");
    std::fs::copy(&built, &partial).map_err(|e| format!("{}: {e}", partial.display()))?;
    std::fs::rename(&partial, module).map_err(|e| format!("{}: {e}", module.display()))?;
    std::fs::write(stamp_path(module), pin_digest() + "\n").map_err(|e| e.to_string())?;
    println!(
        "kryoptic: built in {:.0} s -> {}",
        started.elapsed().as_secs_f32(),
        module.display()
    );
    Ok(())
}

/// The newest `libkryoptic_pkcs11-<hash>.so` in `deps`.
fn find_cdylib(deps: &Path) -> Result<PathBuf, String> {
    let entries = std::fs::read_dir(deps).map_err(|e| format!("{}: {e}", deps.display()))?;
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with(CDYLIB_PREFIX) && name.ends_with(".so")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()
        .map(|(_, path)| path)
        .ok_or_else(|| {
            format!(
                "the build left no {CDYLIB_PREFIX}*.so in {}: kryoptic's crate layout changed",
                deps.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_pins_the_manifests_crates() {
        for name in ["kryoptic", "kryoptic-lib"] {
            let entry = format!("name = \"{name}\"\nversion = \"1.5.4\"\n");
            assert!(LOCK.contains(&entry), "the lock pins {name} 1.5.4");
            assert!(MANIFEST.contains(&format!("{name} = {{ version = \"=1.5.4\"")));
        }
        assert!(LOCK.contains("name = \"kryoptic-build\"\nversion = \"0.0.0\""));
        assert!(MANIFEST.contains("name = \"kryoptic-build\"\nversion = \"0.0.0\""));
    }

    #[test]
    fn another_pin_is_another_stamp() {
        assert_eq!(pin_digest(), digest_of(MANIFEST, LOCK));
        let bumped = LOCK.replacen("version = \"1.5.4\"", "version = \"1.5.5\"", 1);
        assert_ne!(pin_digest(), digest_of(MANIFEST, &bumped));
        assert_ne!(
            pin_digest(),
            digest_of(&MANIFEST.replace("minimal", "standard"), LOCK)
        );
    }
}
