//! Each report as lines for a person (`--output human`); `--output json` prints the report
//! itself.

use byok_offline::batch::BatchReport;
use byok_offline::check::{CheckReport, throwaway_keys};
use byok_offline::commands::{
    GenerateReport, InspectReport, LogReport, PackageOutcome, ProofReport, TokenReport,
};
use byok_offline::keys::KeyObject;

pub fn tokens(tokens: &[TokenReport]) {
    for t in tokens {
        let i = &t.identity;
        println!(
            "slot {}: `{}` {} {} serial {} firmware {}",
            i.slot, i.label, i.manufacturer, i.model, i.serial, i.firmware
        );
        println!("  BYOK: {}", t.byok);
    }
}

pub fn check(r: &CheckReport) {
    let t = &r.token;
    println!(
        "token `{}` (slot {}): {} {} serial {} firmware {}",
        t.label, t.slot, t.manufacturer, t.model, t.serial, t.firmware
    );
    println!("wrap path: {}", r.wrap_path);
    for kind in &r.kinds {
        println!("{kind}");
    }
    println!(
        "{} and {} edge-case imports tried in {:.1} s (all destroyed)",
        throwaway_keys(r.throwaway_keys),
        r.edge_case_imports,
        r.seconds
    );
}

pub fn keys(keys: &[KeyObject]) {
    let flag = |v: Option<bool>| v.map_or("-", |b| if b { "yes" } else { "no" });
    for k in keys {
        println!(
            "{:<24} id {:<34} {:<12} {:<16} extractable {:<3} sensitive {}",
            k.label,
            k.id,
            k.class,
            k.kind,
            flag(k.extractable),
            flag(k.sensitive)
        );
    }
}

pub fn generated(r: &GenerateReport) {
    println!(
        "generated {} `{}` (id {}) on token `{}`",
        r.kind, r.label, r.id, r.token
    );
    if let (Some(p), Some(f)) = (&r.public_key, &r.public_key_sha256) {
        println!("public key: {} (sha256 {f})", p.display());
    }
}

pub fn packaged(outcome: &PackageOutcome) {
    if let Some(g) = &outcome.generated {
        println!("generated {} `{}` (id {})", g.kind, g.label, g.id);
        if let Some(p) = &g.public_key {
            println!("public key: {}", p.display());
        }
    }
    let r = &outcome.package;
    println!("KEK:        {} (sha256 {})", r.kek_kid, r.kek_sha256);
    println!("wrap path:  {}", r.wrap_path);
    println!(
        "target:     {} `{}` (id {})",
        r.target_kind, r.target_label, r.target_id
    );
    if let Some(f) = &r.target_public_key_sha256 {
        println!("public key sha256: {f}");
    }
    println!(
        "wrote:      {} (sha256 {})",
        r.byok.display(),
        r.byok_sha256
    );
    println!("            {}", r.sidecar.display());
}

pub fn proof(r: &ProofReport) {
    println!(
        "the HSM key `{}` decrypts the vault's challenge from {}: the vault holds the same AES key",
        r.label, r.vault_kid
    );
}

pub fn batch(r: &BatchReport) {
    println!(
        "batch: {} packaged ({} generated), {} already done, in {:.1} s; evidence log {}",
        r.packaged,
        r.generated,
        r.skipped,
        r.seconds,
        r.log.display()
    );
}

pub fn log(r: &LogReport) {
    println!(
        "{}: {} entries, the hash chain is intact",
        r.file.display(),
        r.entries
    );
}

pub fn inspect(report: &InspectReport) {
    let r = &report.summary;
    println!(
        "{}: a valid .byok (schema {} alg {} enc {})",
        report.file.display(),
        r.schema_version,
        r.alg,
        r.enc
    );
    println!("vault:      {}", r.vault);
    println!("KEK:        {} version {}", r.kek_name, r.kek_version);
    println!(
        "ciphertext: {} bytes (fits a {:?}-bit KEK)",
        r.ciphertext_bytes, r.fits_kek_bits
    );
    println!("generator:  {}", r.generator);
    println!("sha256:     {}", r.sha256);
}
