//! What is left once the keys are joined: the counts, a key's check verdict taken from its
//! token's check where its packaging entry gives none, and the findings an auditor should look
//! at (keys not verified, disagreements, a KEK with two fingerprints, unknown entries).

use super::model::{Ceremony, Counts, Kek};

/// Counts, a check verdict from the token's check where the packaging entry has none, and
/// the findings.
pub(super) fn finish(c: &mut Ceremony) {
    for key in &mut c.keys {
        if key.check_verdict.is_none()
            && let Some(kind) = &key.kind
            && let Some((check, verdict)) = c.tokens.iter().find_map(|t| {
                let token = key.token.as_deref()?;
                (t.name() == token).then_some(())?;
                let check = t.checks.last()?;
                Some((check, check.kinds.iter().find(|k| &k.kind == kind)?))
            })
        {
            key.check_verdict = Some(format!(
                "generated: {}; imported: {} (from the token's check, {})",
                verdict.generated,
                verdict.imported,
                check.at.place()
            ));
        }
    }
    c.counts = Counts {
        packaged: c.keys.iter().filter(|k| !k.packaged.is_empty()).count(),
        imported: c.keys.iter().filter(|k| !k.imports.is_empty()).count(),
        verified: c.keys.iter().filter(|k| k.is_verified()).count(),
    };
    let mut findings = Vec::new();
    for (i, log) in c.logs.iter().enumerate() {
        if let Some(j) = log.within {
            findings.push(format!(
                "Log L{}'s {} entries are the first {} of log L{}: they are listed once, from \
                 L{}.",
                i + 1,
                log.entries,
                log.entries,
                j + 1,
                j + 1
            ));
        }
    }
    for key in &c.keys {
        let name = &key.name;
        if !key.is_verified() {
            let what = match (key.packaged.is_empty(), key.imports.is_empty()) {
                (false, true) => "packaged; no import is recorded",
                (_, false) => "imported; no proof that the vault holds the HSM's key is recorded",
                (true, true) => "no package or import is recorded",
            };
            findings.push(format!("Key {name}: {what}."));
        }
        for note in &key.notes {
            findings.push(format!("Key {name}: {note}."));
        }
    }
    for kek in &c.keks {
        let others: Vec<&Kek> = c
            .keks
            .iter()
            .filter(|k| k.kid == kek.kid && k.sha256 != kek.sha256)
            .collect();
        if !others.is_empty() && kek.created.is_some() {
            findings.push(format!(
                "KEK {}: entries give it another fingerprint than {}: {}.",
                kek.kid,
                kek.sha256,
                others
                    .iter()
                    .map(|k| k.sha256.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let unknown = c.timeline.iter().filter(|r| !r.known).count();
    if unknown > 0 {
        findings.push(format!(
            "{unknown} entries are of an event this version does not read (or with fields it \
             does not read): they are listed in the timeline only."
        ));
    }
    c.findings = findings;
}
