//! Each report as lines for a person (`--output human`); `--output json` prints the report
//! itself.

use byok_core::package::PackageSummary;
use byok_online::batch::BatchImportReport;
use byok_online::commands::{ChallengeReport, KekReport, VerifyReport};
use byok_online::import::ImportReport;
use byok_online::vault::KeyView;

pub fn kek(r: &KekReport) {
    println!("KEK kid:    {}", r.kid);
    println!("size:       {} bits", r.key_size);
    println!("sha256:     {}", r.sha256);
    if let Some(p) = &r.written {
        println!(
            "wrote:      {} ({})",
            p.display(),
            r.format.as_deref().unwrap_or_default()
        );
    }
}

pub fn key(k: &KeyView) {
    println!("kid:        {}", k.kid);
    println!(
        "kty:        {}{}",
        k.kty,
        k.kind
            .as_ref()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default()
    );
    println!("key_ops:    {}", k.key_ops.join(", "));
    println!(
        "enabled:    {}",
        k.enabled.map_or("-".into(), |e| e.to_string())
    );
    if let Some(c) = &k.created {
        println!("created:    {c}");
    }
    if let Some(f) = &k.public_key_sha256 {
        println!("public key sha256: {f}");
    }
}

pub fn import(r: &ImportReport) {
    println!("imported with KEK {}", r.kek_kid);
    key(&r.key);
    println!("public key check: {}", r.public_key_check);
}

pub fn verify(r: &VerifyReport) {
    println!(
        "verified {}: public keys equal (sha256 {}), {} signature made in the vault verifies locally",
        r.kid, r.public_key_sha256, r.algorithm
    );
}

pub fn challenge(r: &ChallengeReport) {
    println!(
        "the vault encrypted a random value with {}; challenge written to {}",
        r.kid,
        r.challenge.display()
    );
    println!(
        "carry it to the HSM side: byok-offline prove-aes --label <key> --challenge {}",
        r.challenge.display()
    );
}

pub fn batch(r: &BatchImportReport) {
    println!(
        "batch-import: {} imported, {} already imported, {} failed, in {:.1} s; report {}, evidence log {}",
        r.imported,
        r.already_imported,
        r.failed,
        r.seconds,
        r.report.display(),
        r.log.display()
    );
}

pub fn inspect(r: &PackageSummary) {
    println!(
        "a valid .byok for KEK {} version {} in {}",
        r.kek_name, r.kek_version, r.vault
    );
    println!(
        "ciphertext: {} bytes (fits a {:?}-bit KEK)",
        r.ciphertext_bytes, r.fits_kek_bits
    );
    println!("generator:  {}", r.generator);
    println!("sha256:     {}", r.sha256);
}
