//! The wrap done in software, what a user would pick instead of the HSM: the openssl CLI
//! pipeline they would script, and byok-core's own wrap of a key it holds.

use std::path::Path;
use std::time::Instant;

/// Runs the openssl CLI in `dir`; only whether it succeeded counts.
pub(super) fn openssl_in(dir: &Path, args: &[&str]) -> Result<(), String> {
    byok_tests::try_openssl(args, dir).map(drop)
}

/// The openssl CLI pipeline a user would script, per key, on the software keys `KEYS0.pem` ..
/// `KEYS19.pem` round-robin, with the KEK in `kek.pem`: the key to PKCS#8 DER, then the wrap
/// ([`byok_tests::try_openssl_wrap`]).
pub(super) fn openssl_pipeline(sw: &Path, keys: &str, count: usize) -> Result<Vec<f64>, String> {
    let mut pipeline = Vec::new();
    for i in 0..count {
        let k = format!("{keys}{}.pem", i % 20);
        let t = Instant::now();
        openssl_in(
            sw,
            &[
                "pkcs8", "-topk8", "-nocrypt", "-in", &k, "-outform", "DER", "-out", "t.der",
            ],
        )?;
        byok_tests::try_openssl_wrap(sw, "t.der", "kek.pem")?;
        pipeline.push(t.elapsed().as_secs_f64());
    }
    Ok(pipeline)
}

/// A fresh EC P-256 target wrapped in software under the transfer file's KEK, at `path`.
pub(super) fn software_package(
    transfer: &byok_core::KekTransfer,
    path: &Path,
) -> Result<(), String> {
    let target = byok_core::TargetKey::generate(byok_core::KeyKind::Ec {
        curve: byok_core::Curve::P256,
    })
    .map_err(|e| e.to_string())?;
    let pkg = wrap_package(transfer, target.plaintext())?;
    std::fs::write(path, pkg.to_json_bytes()).map_err(|e| e.to_string())
}

/// `plaintext` wrapped in software under the transfer file's KEK: a whole package.
pub(super) fn wrap_package(
    transfer: &byok_core::KekTransfer,
    plaintext: &[u8],
) -> Result<byok_core::KeyTransferPackage, String> {
    let ct = byok_core::wrap::wrap(plaintext, &transfer.key).map_err(|e| e.to_string())?;
    byok_core::KeyTransferPackage::new(
        transfer.kid.clone(),
        ct,
        &byok_core::package::Generator::default(),
    )
    .map_err(|e| e.to_string())
}
