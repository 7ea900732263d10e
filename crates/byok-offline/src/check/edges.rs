//! The imported-key verdict: `check`'s encoding edge cases ([`super::edge`]) imported into the
//! token as session objects in each form, wrapped as a real key is, judged, compared with the
//! software key and destroyed.
//!
//! Each edge case is a value a key of the kind has now and then (1 key in 256 has a P-256
//! scalar whose top byte is zero), so a defect that shows only on such values is stated as that
//! share of imported keys. A defect that shows on every form (trailing zeros from the wrap) is
//! one of every key. A token may strip the leading zeros of a value given to it in any form
//! (openCryptoki 3.27), or write a value as it was given (kryoptic, NSS softokn: a short value
//! comes out short, a full-length one right); the verdict says which.

use super::edge::{self, EdgeKey};
use super::report::{Imported, Judged, Verdict, edge_cases};
use super::run::{
    Checker, Finding, TryOutcome, ZERO_PADDED, distinct, non_conformant, padded_by_chance,
};
use crate::error::{OfflineError, Result};
use crate::keys;
use byok_cli_common::progress::Progress;
use byok_core::target::{KeyKind, Kty, TargetKey};
use cryptoki::object::Attribute;

/// One import of an edge case: what it was ("a scalar whose top byte is zero (CKA_VALUE of
/// 31 bytes)") and how it went.
type Tried = (String, TryOutcome);

impl Checker<'_> {
    /// Each edge case of `kind` in each of its forms, and the verdict for imported keys.
    pub(super) fn imported(&self, kind: KeyKind, progress: &Progress) -> Result<Imported> {
        let mut report = Imported::none_needed();
        let mut findings = Vec::new();
        let mut notes = Vec::new();
        let mut step = Step {
            kind,
            planned: edge::planned(kind),
            done: 0,
            progress,
        };
        for case in edge::edge_keys(kind)? {
            let one_in = case.one_in;
            let tried = self.case(case, &mut step)?;
            if written_as_given(&tried) {
                notes.push(
                    "a value given at its full length comes out right: only keys imported \
                     without their leading zero bytes are affected",
                );
            }
            for (what, outcome) in tried {
                match outcome {
                    TryOutcome::Conformant | TryOutcome::Note(_) => report.tried += 1,
                    TryOutcome::Defect(mut f) => {
                        report.tried += 1;
                        report.defective += 1;
                        f.one_in = if f.value_dependent { one_in } else { 1 };
                        f.edge_case = Some(what);
                        findings.push(f);
                    }
                    TryOutcome::Unsupported(reason) => {
                        report.untested += 1;
                        report.untested_reason.get_or_insert(reason);
                    }
                }
            }
        }
        report.judged = if !findings.is_empty() {
            let mut judged = non_conformant(&findings, 0);
            if !notes.is_empty() {
                judged.detail = format!("{}; {}", judged.detail, distinct(notes.into_iter()));
            }
            judged
        } else if let Some(reason) = &report.untested_reason {
            let which = match report.tried {
                0 => "not tested".to_string(),
                n => format!(
                    "ok on {}, {} not tested",
                    edge_cases(n),
                    edge_cases(report.untested)
                ),
            };
            Judged::other(Verdict::Untested, format!("{which}: {reason}"))
        } else if self.path == ZERO_PADDED && kind.kty() == Kty::Rsa {
            padded_by_chance(report.tried)
        } else {
            Judged::ok(String::new())
        };
        Ok(report)
    }

    /// Each form of one edge case, reported on the progress.
    fn case(&self, case: EdgeKey, step: &mut Step<'_>) -> Result<Vec<Tried>> {
        let mut tried = Vec::new();
        for import in case.imports {
            let what = format!("{} ({})", case.what, import.form);
            let outcome = self.imported_once(&case.key, import.material)?;
            step.report(&what, &outcome);
            tried.push((what, outcome));
        }
        Ok(tried)
    }

    /// One edge case: `key` imported as a session object from `material`, wrapped as a real
    /// key is, judged against `key`, destroyed. A token that refuses to import or wrap it
    /// leaves it untested.
    fn imported_once(&self, key: &TargetKey, material: Vec<Attribute>) -> Result<TryOutcome> {
        let public = key
            .public_key()
            .cloned()
            .expect("RSA and EC keys have a public key");
        let throwaway = match keys::import_throwaway(self.token, key.kind(), material, public) {
            Ok(t) => t,
            Err(OfflineError::Pkcs11 { rv, .. }) => {
                return Ok(TryOutcome::Unsupported(format!(
                    "the token refused to import a throwaway key ({rv})"
                )));
            }
            Err(e) => return Err(e),
        };
        let outcome = match self
            .wrapped_and_judged(&throwaway.target, "the imported key's")?
            .outcome
        {
            TryOutcome::Unsupported(reason) => TryOutcome::Unsupported(format!(
                "the token refused to wrap an imported throwaway key ({reason})"
            )),
            outcome => outcome,
        };
        throwaway.destroy()?;
        Ok(outcome)
    }
}

/// A value given without its leading zeros comes out short, and the same value given at full
/// length comes out right: the token writes a value as it was given.
fn written_as_given(tried: &[Tried]) -> bool {
    matches!(
        tried,
        [
            (
                _,
                TryOutcome::Defect(Finding {
                    value_dependent: true,
                    ..
                })
            ),
            (_, TryOutcome::Conformant | TryOutcome::Note(_)),
        ]
    )
}

/// The progress of one kind's edge cases.
struct Step<'p> {
    kind: KeyKind,
    planned: usize,
    done: usize,
    progress: &'p Progress,
}

impl Step<'_> {
    fn report(&mut self, what: &str, outcome: &TryOutcome) {
        self.done += 1;
        self.progress.step(&format!(
            "{} edge case {}/{}, {what}: {outcome}",
            self.kind, self.done, self.planned
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defect(value_dependent: bool) -> TryOutcome {
        TryOutcome::Defect(Finding {
            value_dependent,
            ..Finding::other("31-byte P-256 scalar")
        })
    }

    fn tried(outcomes: Vec<TryOutcome>) -> Vec<Tried> {
        outcomes.into_iter().map(|o| (String::new(), o)).collect()
    }

    #[test]
    fn only_a_short_value_short_and_the_full_one_right_is_written_as_given() {
        use TryOutcome::Conformant;
        assert!(written_as_given(&tried(vec![defect(true), Conformant])));
        // Short either way: the token strips the zeros itself (openCryptoki).
        assert!(!written_as_given(&tried(vec![defect(true), defect(true)])));
        // Another defect (trailing zeros), or one form only (P-521's 0x01 key), or refused.
        assert!(!written_as_given(&tried(vec![defect(false), Conformant])));
        assert!(!written_as_given(&tried(vec![defect(true)])));
        let refused = TryOutcome::Unsupported("CKR_TEMPLATE_INCONSISTENT".into());
        assert!(!written_as_given(&tried(vec![defect(true), refused])));
    }
}
