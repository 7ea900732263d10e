//! The timeline's one line for each entry: what happened, with hashes shortened (the KEK,
//! token and key tables give them whole).

use crate::minutes::read::Line;
use byok_core::evidence::{Entry, Imported, KeyRecord, Packaged, TokenChecked, TokenRecord};

/// A 64-hex-digit hash shortened for the timeline (the KEK, token and key tables give it
/// whole); anything else as it is.
fn short(hash: &str) -> String {
    if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        format!("{}...", &hash[..16])
    } else {
        hash.to_string()
    }
}

/// The timeline's one line for an entry: what happened, with hashes shortened (the tables
/// above give them whole).
pub(super) fn summary(line: &Line) -> String {
    let Some(entry) = &line.entry else {
        let fields = if line.fields.len() > 12 {
            format!("{}, ...", line.fields[..12].join(", "))
        } else {
            line.fields.join(", ")
        };
        return format!("an entry this version does not read; its fields: {fields}");
    };
    match entry {
        Entry::KekCreated(k) => format!(
            "created the KEK {} (RSA {}, key operations: {}); SHA-256 {}",
            k.kek.kid,
            k.size,
            k.key_ops.join(", "),
            short(&k.kek.sha256)
        ),
        Entry::KekDownloaded(k) => format!(
            "wrote the KEK's transfer file {} (SHA-256 {})",
            k.transfer_file,
            short(&k.transfer_sha256)
        ),
        Entry::TokensListed(t) => {
            let each: Vec<String> = t
                .tokens
                .iter()
                .map(|l| format!("slot {}: {}: {}", l.slot, token(&l.token), l.byok))
                .collect();
            format!("{} token(s): {}", t.tokens.len(), each.join("; "))
        }
        Entry::TokenChecked(t) => checked(t),
        Entry::KeyGenerated(g) => format!(
            "generated {} on {}{}",
            key(&g.key),
            token(&g.token),
            fingerprint(&g.key.public_key_sha256)
        ),
        Entry::Packaged(p) => packaged(p, "wrapped"),
        Entry::PackageConfirmed(p) => packaged(p, "found the package of"),
        Entry::Imported(i) => imported(i, "imported as"),
        Entry::ImportConfirmed(i) => imported(i, "already in the vault as"),
        Entry::Verified(v) => format!(
            "{} ({}): {} [{}]",
            v.key_name, v.vault_kid, v.outcome, v.algorithm
        ),
        Entry::AesChallengeMade(a) => format!(
            "{} ({}): {} challenge written to {} (SHA-256 {})",
            a.key_name,
            a.vault_kid,
            a.alg,
            a.challenge_file,
            short(&a.challenge_sha256)
        ),
        Entry::AesProved(a) => format!(
            "{} on {}: {} (vault key {})",
            a.hsm_label,
            token(&a.token),
            a.outcome,
            a.vault_kid
        ),
    }
}

/// `token LABEL (serial S)`.
fn token(t: &TokenRecord) -> String {
    format!("token {} (serial {})", t.label, t.serial)
}

/// `KIND LABEL (CKA_ID ID)`, without the id when the entry gives none.
fn key(k: &KeyRecord) -> String {
    let id = if k.hsm_id.is_empty() {
        String::new()
    } else {
        format!(" (CKA_ID {})", k.hsm_id)
    };
    format!("{} {}{id}", k.kind, k.hsm_label)
}

/// `; public key SHA-256 ...`, or nothing when the entry gives no fingerprint.
fn fingerprint(f: &Option<String>) -> String {
    f.as_ref()
        .map(|f| format!("; public key SHA-256 {}", short(f)))
        .unwrap_or_default()
}

/// `token checked`: the token, the wrap path, and each verdict with the number of kinds that
/// got it on each side.
fn checked(t: &TokenChecked) -> String {
    format!(
        "{}: wrap path {}; {} kinds: generated {}; imported {}; {} throwaway keys, {} \
         edge-case imports",
        token(&t.token),
        t.wrap_path,
        t.kinds.len(),
        tally(t.kinds.iter().map(|k| k.generated.as_str())),
        tally(t.kinds.iter().map(|k| k.imported.as_str())),
        t.throwaway_keys,
        t.edge_case_imports
    )
}

/// Each verdict with the number of kinds that got it: `ok 7, not supported 1`.
fn tally<'v>(verdicts: impl Iterator<Item = &'v str>) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for v in verdicts {
        match counts.iter_mut().find(|(seen, _)| *seen == v) {
            Some((_, n)) => *n += 1,
            None => counts.push((v, 1)),
        }
    }
    let parts: Vec<String> = counts.iter().map(|(v, n)| format!("{v} {n}")).collect();
    parts.join(", ")
}

/// `packaged` (`wrapped`) or `package confirmed` (`found the package of`).
fn packaged(p: &Packaged, verb: &str) -> String {
    let how = match &p.wrap_path {
        Some(w) => format!(" by {w}"),
        None => String::new(),
    };
    format!(
        "{}: {verb} {}{how}; package SHA-256 {}",
        p.key_name,
        key(&p.key),
        short(&p.byok_sha256),
    )
}

/// `imported` (`imported as`) or `import confirmed` (`already in the vault as`).
fn imported(i: &Imported, verb: &str) -> String {
    format!(
        "{}: {verb} {} from package SHA-256 {}; {}",
        i.key_name,
        i.vault_kid,
        short(&i.byok_sha256),
        i.verification
    )
}
