//! Each report as lines for a person (`--output human`); `--output json` prints the report
//! itself. A value is labelled with its JSON field's name, so what a person reads is what a
//! script queries (`--query`).

use byok_cli_common::minutes::MinutesReport;
use byok_cli_common::output::Hex;
use byok_cli_common::terminal::escape;
use byok_cli_common::{Document, say};
use byok_offline::batch::BatchReport;
use byok_offline::check::CheckReport;
use byok_offline::commands::{
    GenerateReport, InspectReport, KeysReport, PackageOutcome, ProofReport, PublicKeyFile,
    TokensReport,
};
use byok_offline::index::Lookup;
use byok_offline::log::LogReport;
use serde::Serialize;
use std::fmt::Display;
use std::path::PathBuf;

/// One `name: value` line, values aligned. The value is escaped: it may come from a file
/// or the token (a label, a generator, a token's manufacturer), and no control character in
/// it may reach the terminal.
fn field(name: &str, value: impl Display) {
    say!("{:<25} {}", format!("{name}:"), escape(&value.to_string()));
}

/// As [`field`], indented under a heading line.
fn sub_field(name: &str, value: impl Display) {
    say!(
        "  {:<23} {}",
        format!("{name}:"),
        escape(&value.to_string())
    );
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

pub fn tokens(r: &TokensReport) {
    for t in &r.tokens {
        let i = &t.identity;
        say!("slot {}: token `{}`", i.slot, escape(&i.label));
        sub_field("manufacturer", &i.manufacturer);
        sub_field("model", &i.model);
        sub_field("serial", &i.serial);
        sub_field("firmware", &i.firmware);
        sub_field("user_pin_locked", yes_no(i.user_pin_locked));
        let c = &t.capabilities;
        let offered: Vec<&str> = [
            ("rsa_aes_key_wrap", c.rsa_aes_key_wrap),
            ("aes_key_wrap_kwp", c.aes_key_wrap_kwp),
            ("aes_key_wrap_pad", c.aes_key_wrap_pad),
            ("rsa_pkcs_oaep", c.rsa_pkcs_oaep),
            ("aes_key_gen", c.aes_key_gen),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect();
        sub_field("capabilities", offered.join(", "));
        if let Some(test) = t.kwp_pad_self_test {
            sub_field("kwp_pad_self_test", test);
        }
        sub_field("byok_possible", yes_no(t.byok_possible));
        sub_field("byok", &t.byok);
    }
}

pub fn check(r: &CheckReport) {
    let t = &r.token;
    say!(
        "token `{}` (slot {}): {} {}, serial {}, firmware {}",
        escape(&t.label),
        t.slot,
        escape(&t.manufacturer),
        escape(&t.model),
        escape(&t.serial),
        escape(&t.firmware)
    );
    field("wrap_path", &r.wrap_path);
    say!("kinds:");
    for kind in &r.kinds {
        for line in kind.lines() {
            say!("  {line}");
        }
    }
    field("throwaway_keys", r.throwaway_keys);
    field("edge_case_imports", r.edge_case_imports);
    field(
        "seconds",
        format!("{:.1} (every throwaway key destroyed)", r.seconds),
    );
}

pub fn keys(r: &KeysReport) {
    if r.keys.is_empty() {
        say!("no key objects on token `{}`", escape(&r.token));
        return;
    }
    // The JSON names head the columns, as `-o table` shows them.
    let rows = serde_json::to_value(&r.keys).expect("key objects serialize");
    say!("{}", byok_cli_common::table::render_table(&rows));
}

pub fn generated(r: &GenerateReport) {
    say!(
        "generated {} `{}` (id {}) on token `{}`",
        r.kind,
        escape(&r.label),
        Hex(&r.id),
        escape(&r.token)
    );
    if let Some(p) = &r.public_key {
        field("public_key", p.display());
    }
    if let Some(f) = &r.public_key_sha256 {
        field("public_key_sha256", f);
    }
}

pub fn packaged(outcome: &PackageOutcome) {
    if let Some(g) = &outcome.generated {
        say!(
            "generated {} `{}` (id {})",
            g.kind,
            escape(&g.label),
            Hex(&g.id)
        );
    }
    if let (Some(p), Some(how)) = (&outcome.public_key, outcome.public_key_file) {
        let note = match how {
            PublicKeyFile::Written => "written",
            PublicKeyFile::AlreadyPresent => "already present with this key: left as it is",
        };
        field("public_key", format!("{} ({note})", p.display()));
    }
    field("check", &outcome.check);
    let r = &outcome.package;
    field("kek_kid", &r.kek_kid);
    field("kek_sha256", r.kek_sha256);
    field("wrap_path", r.wrap_path);
    field("target_kind", r.target_kind);
    field("target_label", &r.target_label);
    field("target_id", Hex(&r.target_id));
    if let Some(f) = &r.target_public_key_sha256 {
        field("target_public_key_sha256", f);
    }
    field("byok", r.byok.display());
    field("byok_sha256", r.byok_sha256);
    field("sidecar", r.sidecar.display());
}

pub fn proof(r: &ProofReport) {
    say!(
        "the HSM key `{}` decrypts the vault's challenge: the vault holds the same AES key",
        escape(&r.label)
    );
    field("vault_kid", &r.vault_kid);
}

pub fn batch(r: &BatchReport) {
    say!(
        "batch: {} packaged ({} generated), {} skipped (done by an earlier run), in {:.1} s",
        r.packaged,
        r.generated,
        r.skipped,
        r.seconds
    );
    for key in &r.keys {
        // A key's line names it as the manifest does: one line, whatever the name holds.
        say!("  {}", escape(&key.to_string()));
    }
    for check in &r.checks {
        field(&format!("check {}", check.kind), check);
    }
    if let Some(p) = &r.lookup_probe {
        let how = match p.lookup {
            Lookup::Index => format!("every token object read once ({} objects)", p.objects),
            Lookup::Search => "searched for per key".to_string(),
        };
        let why = match (p.read_ms, p.search_ms) {
            (Some(read), Some(search)) => format!(
                "measured: {read:.3} ms a read, {search:.3} ms a search, {} objects, {} keys",
                p.objects, p.keys
            ),
            _ => p.chosen_by.to_string(),
        };
        field("keys found by", format!("{how} ({why})"));
    }
    field("log", r.log.display());
    field(
        "log_head",
        format!("{} (record it in the minutes)", r.log_head),
    );
}

pub fn log(r: &LogReport) {
    say!(
        "{}: {} entries, the hash chain is intact",
        escape(&r.file.display().to_string()),
        r.entries
    );
    field("head", &r.head);
    if r.head_checked {
        say!("the head is the one --expect-head gave");
    }
}

pub fn inspect(report: &InspectReport) {
    let r = &report.summary;
    say!(
        "{}: a valid .byok",
        escape(&report.file.display().to_string())
    );
    field("schema_version", r.schema_version);
    field("alg", r.alg);
    field("enc", r.enc);
    field("kid", &r.kid);
    field("vault", &r.vault);
    field("kek_name", &r.kek_name);
    field("kek_version", &r.kek_version);
    field("ciphertext_bytes", r.ciphertext_bytes);
    let fits: Vec<String> = r.fits_kek_bits.iter().map(ToString::to_string).collect();
    field("fits_kek_bits", fits.join(", "));
    field("generator", &r.generator);
    field("sha256", &r.sha256);
}

/// `minutes`: the file written and each log's head (byok-cli-common's report).
#[derive(Serialize)]
#[serde(transparent)]
pub struct Minutes(pub MinutesReport);

impl Document for Minutes {
    const SCHEMA: &'static str = "byok-offline.minutes/1";
}

pub fn minutes(Minutes(r): &Minutes) {
    r.print_human();
}

/// `man --dir`: the pages written.
#[derive(Serialize)]
pub struct ManReport {
    pub pages: Vec<PathBuf>,
}

impl Document for ManReport {
    const SCHEMA: &'static str = "byok-offline.man/1";
}

pub fn man(r: &ManReport) {
    for page in &r.pages {
        say!("wrote {}", page.display());
    }
}
