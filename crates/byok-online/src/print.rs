//! Each report as lines for a person (`--output human`); `--output json` prints the report's
//! document. A labelled line is labelled with its JSON field's name, so what a person reads
//! is what a script queries.

use byok_cli_common::minutes::MinutesReport;
use byok_cli_common::terminal::escape;
use byok_cli_common::{Document, say};
use byok_online::batch::BatchImportReport;
use byok_online::commands::{
    ChallengeReport, InspectReport, KekReport, ManReport, ShowReport, VerifyReport,
};
use byok_online::import::ImportReport;
use byok_online::vault::KeyView;
use serde::Serialize;
use std::fmt::Display;

/// `name:` padded to one column (the longest name, `signature_verified:`, and a space),
/// then the value, escaped: it may come from a file or the vault (a name, a tag, a
/// generator), and no control character in it may reach the terminal.
fn field(name: &str, value: impl Display) {
    say!("{:<20}{}", format!("{name}:"), escape(&value.to_string()));
}

fn dry_run_note(dry_run: bool) {
    if dry_run {
        say!("dry run: nothing was written, to the vault or to disk");
    }
}

pub fn kek(r: &KekReport) {
    say!("{}", r.action);
    if let Some(kid) = &r.kid {
        field("kid", kid);
    }
    field("key_size", format!("{} bits", r.key_size));
    if let Some(sha) = &r.public_key_sha256 {
        field("public_key_sha256", sha);
    }
    if let Some(p) = &r.written {
        field("written", p.display());
        field("format", r.format.as_deref().unwrap_or_default());
    }
    dry_run_note(r.dry_run);
}

fn key_view(k: &KeyView) {
    field("kid", &k.kid);
    let kind = k
        .kind
        .as_ref()
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    field("kty", format!("{}{kind}", k.kty));
    field("key_ops", k.key_ops.join(", "));
    field("enabled", k.enabled.map_or("-".into(), |e| e.to_string()));
    for (name, value) in [
        ("created", &k.created),
        ("not_before", &k.not_before),
        ("expires", &k.expires),
    ] {
        if let Some(v) = value {
            field(name, v);
        }
    }
    if k.exportable == Some(true) {
        field("exportable", true);
    }
    if !k.tags.is_empty() {
        let tags: Vec<String> = k.tags.iter().map(|(t, v)| format!("{t}={v}")).collect();
        field("tags", tags.join(", "));
    }
    if let Some(f) = &k.public_key_sha256 {
        field("public_key_sha256", f);
    }
}

pub fn key(r: &ShowReport) {
    key_view(&r.key);
}

pub fn import(r: &ImportReport) {
    say!("{}", r.action);
    if let Some(key) = &r.key {
        key_view(key);
    }
    field("byok_sha256", r.byok_sha256);
    field("public_key_check", &r.public_key_check);
    for note in &r.package_ignored {
        field("package_ignored", note);
    }
    dry_run_note(r.dry_run);
}

pub fn verify(r: &VerifyReport) {
    field("kid", &r.kid);
    field("public_key_sha256", &r.public_key_sha256);
    field("public_keys_equal", r.public_keys_equal);
    field("algorithm", &r.algorithm);
    field("signature_verified", r.signature_verified);
    say!(
        "verified: the vault's public key is the HSM's, and an {} signature made in the vault \
         verifies locally",
        r.algorithm
    );
}

pub fn challenge(r: &ChallengeReport) {
    say!(
        "the vault encrypted a random value with {} ({})",
        escape(&r.kid.to_string()),
        r.alg
    );
    field("challenge", r.challenge.display());
    field("plaintext_sha256", &r.plaintext_sha256);
    say!("carry the challenge to the HSM side and run:");
    say!("  {}", r.offline_command);
    say!(
        "(--label is the key's label in the HSM, if it differs from the vault name {})",
        r.name
    );
}

pub fn batch(r: &BatchImportReport) {
    for k in &r.keys {
        // One line per key, whatever the vault's error text in it holds.
        say!("{}", escape(&k.line()));
    }
    let would = if r.dry_run {
        format!(", {} would import", r.would_import)
    } else {
        String::new()
    };
    say!(
        "batch-import: {} imported, {} already imported{would}, {} failed, in {:.1} s",
        r.imported,
        r.already_imported,
        r.failed,
        r.seconds,
    );
    field(
        "throttled",
        format!(
            "{} (429 answers from the vault, each retried after a backoff)",
            r.throttled
        ),
    );
    if let Some(p) = &r.report {
        field("report", p.display());
    }
    field("log", r.log.display());
    field(
        "log_head",
        format!("{} (record it in the minutes)", r.log_head),
    );
    dry_run_note(r.dry_run);
}

pub fn inspect(r: &InspectReport) {
    let p = &r.package;
    say!(
        "a valid .byok (schema_version {}, {} / {})",
        escape(p.schema_version),
        escape(p.alg),
        escape(p.enc)
    );
    field("kid", &p.kid);
    field("vault", &p.vault);
    field("kek_name", &p.kek_name);
    field("kek_version", &p.kek_version);
    let fits: Vec<String> = p.fits_kek_bits.iter().map(|b| b.to_string()).collect();
    field("ciphertext_bytes", p.ciphertext_bytes);
    field("fits_kek_bits", fits.join(", "));
    field("generator", &p.generator);
    field("sha256", &p.sha256);
}

/// `minutes`: the file written and each log's head (byok-cli-common's report).
#[derive(Serialize)]
#[serde(transparent)]
pub struct Minutes(pub MinutesReport);

impl Document for Minutes {
    const SCHEMA: &'static str = "byok-online.minutes/1";
}

pub fn minutes(Minutes(r): &Minutes) {
    r.print_human();
}

pub fn man(r: &ManReport) {
    for page in &r.pages {
        say!("{}", page.display());
    }
}
