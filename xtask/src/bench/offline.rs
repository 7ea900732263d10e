//! The air-gapped half's rows: generate + package per key against SoftHSM's keygen alone,
//! `--jobs 2` against `--jobs 1`, and existing keys packaged against the openssl CLI pipeline
//! and byok-core alone in process.

use super::software::{openssl_in, openssl_pipeline, wrap_package};
use super::timing::{mean, median};
use super::work::{Bench, manifest};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// Generate + package per key, against SoftHSM keygen alone; --jobs 2 against --jobs 1.
pub(super) fn offline_generate(b: &mut Bench) -> Result<(), String> {
    println!(
        "\noffline, generate + package (per key, mean: RSA keygen's spread is wide), against SoftHSM keygen alone (cryptoki loop):"
    );
    for (prefix, count, kind, label) in [
        ("g2048", 60, "kty = \"RSA\"\nsize = 2048", "RSA 2048"),
        ("g3072", 30, "kty = \"RSA\"\nsize = 3072", "RSA 3072"),
        ("gp256", 100, "kty = \"EC\"\ncurve = \"P-256\"", "EC P-256"),
    ] {
        let m = b.dir.join(format!("{prefix}.toml"));
        manifest(&m, prefix, count, kind)?;
        let (keys, _, kb) = b.batch(m.to_str().unwrap(), &format!("out-{prefix}"), 1)?;
        b.results.mem(
            &format!("byok-offline batch, {count} × {label} generate + package"),
            kb,
        );
        let per_key: Vec<f64> = keys.iter().filter(|k| k.2).map(|k| k.1).collect();
        let floor = keygen_floor(b, label, count)?;
        b.results.row(
            format!("byok-offline generate + package, {label} (mean, n={count})"),
            mean(&per_key) * 1000.0,
            "ms",
            format!("SoftHSM keygen alone, {label} (mean, n={count})"),
            mean(&floor) * 1000.0,
        );
    }
    // Parallel sessions.
    let m = b.dir.join("jobs.toml");
    manifest(&m, "j1", 32, "kty = \"RSA\"\nsize = 2048")?;
    let (_, one, _) = b.batch(m.to_str().unwrap(), "out-j1", 1)?;
    manifest(&m, "j2", 32, "kty = \"RSA\"\nsize = 2048")?;
    let (_, two, _) = b.batch(m.to_str().unwrap(), "out-j2", 2)?;
    b.results.row(
        "batch of 32 × RSA 2048, generate + package, --jobs 2 (wall)",
        two,
        "s",
        "the same with --jobs 1 (wall)",
        one,
    );
    Ok(())
}

/// SoftHSM keygen alone: a child process (this binary, `__keygen`) runs a cryptoki loop.
fn keygen_floor(b: &Bench, kind: &str, count: usize) -> Result<Vec<f64>, String> {
    let out = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .args(["__keygen", kind, &count.to_string()])
        .envs(b.token.env().iter().cloned())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "keygen loop: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// How many existing keys `offline_existing` packages.
const EXISTING: usize = 200;

/// Packaging 200 existing RSA-2048 keys: byok-offline (one process) against the openssl CLI
/// pipeline a user would script and against byok-core alone in process.
pub(super) fn offline_existing(b: &mut Bench) -> Result<(), String> {
    const N: usize = EXISTING;
    println!("\noffline, wrap of {N} existing RSA-2048 keys (per key, median):");
    let (ours_ms, wall) = package_existing(b)?;
    // Software copies: 20 RSA-2048 keys made by openssl, reused round-robin.
    let sw = b.dir.join("software");
    software_keys(b, &sw)?;
    let mut pipeline = openssl_pipeline(&sw, "k", EXISTING)?;
    // byok-core alone, in this process, on the same software keys.
    let mut core = core_alone(b, &sw)?;
    let pipe_ms = median(&mut pipeline) * 1000.0;
    let core_ms = median(&mut core) * 1000.0;
    b.results.row(
        format!("byok-offline, existing RSA 2048 in SoftHSM (n={N}, one process)"),
        ours_ms,
        "ms",
        "openssl CLI pipeline, 4 commands (n=200)",
        pipe_ms,
    );
    b.results.row(
        format!("byok-offline, existing RSA 2048 in SoftHSM (n={N}, one process)"),
        ours_ms,
        "ms",
        "byok-core alone in process (n=200)",
        core_ms,
    );
    b.results.row(
        format!("byok-offline, {N} existing keys, whole run (wall)"),
        wall,
        "s",
        "openssl pipeline × 200 (sum)",
        pipeline.iter().sum::<f64>(),
    );
    Ok(())
}

/// byok-offline packaging keys already on the token: per key median (ms) and wall seconds.
fn package_existing(b: &mut Bench) -> Result<(f64, f64), String> {
    const N: usize = EXISTING;
    let m = b.dir.join("existing.toml");
    manifest(&m, "x", N, "kty = \"RSA\"\nsize = 2048")?;
    b.batch(m.to_str().unwrap(), "out-made", 2)?; // makes the keys (not measured)
    // Packaged again into a directory of their own (none emptied: [`super::fresh`] says why).
    let (keys, wall, kb) = b.batch(m.to_str().unwrap(), "out-existing", 1)?;
    b.results.mem(
        &format!("byok-offline batch, {N} × RSA 2048 existing keys packaged"),
        kb,
    );
    let mut ours: Vec<f64> = keys.iter().filter(|k| !k.2).map(|k| k.1).collect();
    if ours.len() != N {
        return Err(format!(
            "expected {N} existing keys packaged, got {}",
            ours.len()
        ));
    }
    Ok((median(&mut ours) * 1000.0, wall))
}

/// 20 RSA-2048 keys made by openssl in `sw` (k0.pem ..), and the KEK beside them (kek.pem).
fn software_keys(b: &Bench, sw: &Path) -> Result<(), String> {
    std::fs::create_dir_all(sw).map_err(|e| e.to_string())?;
    for i in 0..20 {
        openssl_in(
            sw,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                &format!("k{i}.pem"),
            ],
        )?;
    }
    std::fs::copy(b.dir.join("kek.transfer"), sw.join("kek.pem")).map_err(|e| e.to_string())?;
    Ok(())
}

/// byok-core alone, in this process, wrapping the software keys round-robin, per key.
fn core_alone(b: &Bench, sw: &Path) -> Result<Vec<f64>, String> {
    let transfer = b.transfer()?;
    let mut ders = Vec::new();
    for i in 0..20 {
        openssl_in(
            sw,
            &[
                "pkcs8",
                "-topk8",
                "-nocrypt",
                "-in",
                &format!("k{i}.pem"),
                "-outform",
                "DER",
                "-out",
                &format!("k{i}.der"),
            ],
        )?;
        ders.push(std::fs::read(sw.join(format!("k{i}.der"))).map_err(|e| e.to_string())?);
    }
    let mut core = Vec::new();
    for i in 0..EXISTING {
        let t = Instant::now();
        let pkg = wrap_package(&transfer, &ders[i % 20])?;
        std::hint::black_box(byok_core::Fingerprint::of_bytes(&pkg.to_json_bytes()));
        core.push(t.elapsed().as_secs_f64());
    }
    Ok(core)
}
