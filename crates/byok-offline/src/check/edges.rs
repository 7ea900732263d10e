//! `check`'s encoding edge cases on the token ([`crate::edge`]): each imported as a session
//! object in each form, wrapped as a real key is, judged, compared with the software key and
//! destroyed.
//!
//! One pattern needs the token's generator to judge: a scalar given without its leading zero
//! bytes comes out short while the same scalar given at full length comes out right. The token
//! then writes `CKA_VALUE` as it holds it, and the keys it generates come out short exactly
//! when its generator holds them without leading zeros (kryoptic, from OpenSSL's big numbers)
//! and at full length when it keeps them (NSS softokn). That is seen on P-521 throwaway keys,
//! half of whose scalars have a zero top byte, once per check.

use super::{Checker, EdgeCases, Finding, TryOutcome, unsupported_or};
use crate::edge::{self, EdgeKey};
use crate::error::{OfflineError, Result};
use crate::{keys, package};
use byok_cli_common::progress::Progress;
use byok_core::conformance::{Defect, Judgement};
use byok_core::target::{Curve, KeyKind, TargetKey};
use cryptoki::object::Attribute;

/// At most this many P-521 keys ask the generator: none with a zero top byte in 40 has
/// probability 2^-40.
const PROBE_TRIES: usize = 40;

/// One import of an edge case: what it was ("a scalar whose top byte is zero (CKA_VALUE of
/// 31 bytes)") and how it went.
type Tried = (String, TryOutcome);

impl Checker<'_> {
    /// Each edge case of `kind` in each of its forms; defects join `findings`, what the check
    /// learned about the generator `notes`.
    pub(super) fn edge_cases(
        &self,
        kind: KeyKind,
        progress: &Progress,
        findings: &mut Vec<Finding>,
        notes: &mut Vec<String>,
    ) -> Result<EdgeCases> {
        let mut counts = EdgeCases::default();
        let mut step = Step {
            kind,
            planned: edge::planned(kind),
            done: 0,
            progress,
        };
        let mut as_held = Vec::new();
        for case in edge::edge_keys(kind)? {
            let tried = self.case(case, &mut step)?;
            let written_as_held = written_as_held(&tried);
            for (i, (what, outcome)) in tried.into_iter().enumerate() {
                match outcome {
                    TryOutcome::Conformant | TryOutcome::Note(_) => counts.tried += 1,
                    TryOutcome::Defect(mut f) => {
                        counts.tried += 1;
                        f.edge_case = Some(what);
                        if written_as_held && i == 0 {
                            as_held.push(f);
                        } else {
                            counts.defective += 1;
                            findings.push(f);
                        }
                    }
                    TryOutcome::Unsupported(reason) => {
                        counts.untested += 1;
                        counts.untested_reason.get_or_insert(reason);
                    }
                }
            }
        }
        if !as_held.is_empty() {
            self.judge_as_held(as_held, &mut counts, findings, notes)?;
        }
        Ok(counts)
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
        let outcome = match self.wrapped_and_judged(&throwaway.target, "the imported key's")? {
            TryOutcome::Unsupported(reason) => TryOutcome::Unsupported(format!(
                "the token refused to wrap an imported throwaway key ({reason})"
            )),
            outcome => outcome,
        };
        throwaway.destroy()?;
        Ok(outcome)
    }

    /// Short scalars that came from a short `CKA_VALUE` the token wrote as it held it: a
    /// defect of the keys it generates only if its generator holds scalars so.
    fn judge_as_held(
        &self,
        held: Vec<Finding>,
        counts: &mut EdgeCases,
        findings: &mut Vec<Finding>,
        notes: &mut Vec<String>,
    ) -> Result<()> {
        let because = match self.generator_keeps_zeros()? {
            Ok(true) => {
                notes.push(
                    "a short CKA_VALUE comes out short, but the token's generator keeps leading \
                     zero bytes (seen on P-521), so the keys it generates come out at full length"
                        .into(),
                );
                return Ok(());
            }
            Ok(false) => "as the token's generator holds it (seen on P-521)".to_string(),
            Err(why) => format!(
                "written as given; whether the token's generator holds scalars so is unknown \
                 ({why})"
            ),
        };
        for mut f in held {
            f.edge_case = f.edge_case.map(|what| format!("{what}, {because}"));
            counts.defective += 1;
            findings.push(f);
        }
        Ok(())
    }

    /// Whether the token's EC generator keeps a scalar's leading zero bytes (asked once):
    /// `Ok(true)` keeps them, `Ok(false)` drops them, `Err(why)` could not be seen.
    fn generator_keeps_zeros(&self) -> Result<std::result::Result<bool, String>> {
        if let Some(known) = self.generator_keeps_zeros.get() {
            return Ok(known.clone());
        }
        let seen = self.probe_generator()?;
        tracing::info!(
            ?seen,
            "does the token's EC generator keep leading zero bytes"
        );
        Ok(self.generator_keeps_zeros.get_or_init(|| seen).clone())
    }

    /// P-521 throwaway keys until one's scalar has a zero top byte: written in 65 bytes, the
    /// generator dropped it; in 66, it kept it.
    fn probe_generator(&self) -> Result<std::result::Result<bool, String>> {
        const P521: KeyKind = KeyKind::Ec { curve: Curve::P521 };
        for _ in 0..PROBE_TRIES {
            let throwaway = match keys::generate_throwaway(self.token, P521) {
                Ok(t) => t,
                Err(e) => {
                    let outcome = unsupported_or(e, "key generation")?;
                    return Ok(Err(format!("P-521 throwaway keys: {outcome}")));
                }
            };
            let wrapped = package::wrap_in_token(
                self.token,
                self.raw,
                self.kek.public(),
                &throwaway.target,
                self.path,
            );
            throwaway.destroy()?;
            let ciphertext = match wrapped {
                Ok(c) => c,
                Err(e) => return Ok(Err(format!("a P-521 throwaway key's wrap: {e}"))),
            };
            match self.kek.judge(P521, &ciphertext) {
                Err(Judgement::Defect(Defect::ScalarLength { len, expected, .. }))
                    if len < expected =>
                {
                    return Ok(Ok(false));
                }
                Ok(key) if edge::scalar_top_byte(&key) == Some(0) => return Ok(Ok(true)),
                Ok(_) => {}
                Err(e) => return Ok(Err(format!("a P-521 throwaway key's wrap: {e}"))),
            }
        }
        Ok(Err(format!(
            "none of {PROBE_TRIES} P-521 throwaway keys had a scalar whose top byte is zero"
        )))
    }
}

/// A short scalar given without its leading zeros, and the same scalar given in full right:
/// the token writes `CKA_VALUE` as it holds it.
fn written_as_held(tried: &[Tried]) -> bool {
    matches!(
        tried,
        [
            (
                _,
                TryOutcome::Defect(Finding {
                    short_scalar: true,
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

    fn defect(short_scalar: bool) -> TryOutcome {
        TryOutcome::Defect(Finding {
            short_scalar,
            ..Finding::other("31-byte P-256 scalar")
        })
    }

    fn tried(outcomes: Vec<TryOutcome>) -> Vec<Tried> {
        outcomes.into_iter().map(|o| (String::new(), o)).collect()
    }

    #[test]
    fn only_a_short_value_short_and_the_full_one_right_asks_the_generator() {
        use TryOutcome::Conformant;
        assert!(written_as_held(&tried(vec![defect(true), Conformant])));
        // Short either way: the token strips the zeros itself, whatever its generator does.
        assert!(!written_as_held(&tried(vec![defect(true), defect(true)])));
        // Another defect (trailing zeros), or one form only (P-521's 0x01 key), or refused.
        assert!(!written_as_held(&tried(vec![defect(false), Conformant])));
        assert!(!written_as_held(&tried(vec![defect(true)])));
        let refused = TryOutcome::Unsupported("CKR_TEMPLATE_INCONSISTENT".into());
        assert!(!written_as_held(&tried(vec![defect(true), refused])));
    }
}
