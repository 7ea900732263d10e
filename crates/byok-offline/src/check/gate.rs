//! The gate before a real package: each key is held to the verdict for keys like it.
//!
//! - A key to generate (`package --generate`, `batch`), or an existing key the token generated
//!   (`CKA_LOCAL` true), is held to the generated-key verdict.
//! - An existing key imported into the token (`CKA_LOCAL` false), or one whose origin the token
//!   does not say, is held to the imported-key verdict.
//!
//! A refusal before a key is generated costs nothing: the operator picks another token or
//! kind. An existing key cannot be picked again, so a defect that shows only on some values (1
//! key in 256 has the awkward scalar) does not refuse it: it is packaged with a warning that
//! names the share, since for the other 255 the package is exactly right and for that one Azure
//! refuses the import (nothing is lost: the key stays in the HSM). A defect of every key (the
//! wrap's trailing zeros, another key) refuses it as it refuses a new key: the package could
//! never be imported. Refusing the 255 would teach operators to pass `--allow-nonconformant`,
//! which then lets through what it should not.

use super::report::{Judged, KindReport, Verdict};
use super::reuse::{CheckBasis, RecordedChecks, ReusePolicy};
use super::run::{Checker, Sides, ZERO_PADDED, default_tries};
use crate::error::{OfflineError, Result};
use crate::keys::Origin;
use crate::raw::RawModule;
use crate::token::TokenSession;
use crate::wrap_path::WrapPath;
use byok_cli_common::evidence::EvidenceLog;
use byok_cli_common::sync::lock;
use byok_core::evidence::CheckEntryRef;
use byok_core::target::KeyKind;
use std::sync::Mutex;

/// The operator's overrides of a refused kind, both for rehearsals only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--allow-zero-padded-kwp`: trailing zero bytes from a zero-padding 0x210A (SoftHSM
    /// 2.6.1), and nothing else.
    pub zero_padded_kwp: bool,
    /// `--allow-nonconformant`: any verdict; a warning names what is let through.
    pub nonconformant: bool,
}

/// The key a package is for: one about to be generated, or one the token holds already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    New,
    Existing(Origin),
}

impl Held {
    /// Which verdict a key of `kind` is held to. An AES key is raw bytes whatever its origin:
    /// the generated keys' verdict is its own.
    fn sides(self, kind: KeyKind) -> Sides {
        let generated = matches!(self, Held::New | Held::Existing(Origin::Generated))
            || kind.kty() == byok_core::target::Kty::Oct;
        Sides {
            generated,
            imported: !generated,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Held::New => "a key generated in the token",
            Held::Existing(Origin::Generated) => "an existing key the token generated",
            Held::Existing(Origin::Imported) => "an existing key imported into the token",
            Held::Existing(Origin::Unknown) => {
                "an existing key whose origin the token does not say (no CKA_LOCAL), held to \
                 the imported-key verdict"
            }
        }
    }
}

/// A key let through: the verdict it was admitted by, and the warning a defect let through
/// deserves (the same for every key of its kind and side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    pub verdict: String,
    pub warning: Option<String>,
}

impl KindReport {
    /// Lets `key` of this kind through to a real package, returning the verdict it was
    /// admitted by (for the evidence log), or refuses it naming the defect and the fix.
    pub fn admit(&self, key: Held, path: WrapPath, overrides: Overrides) -> Result<Admitted> {
        let warning = self.judge(key, path, overrides)?;
        let [generated, imported] = self.lines();
        let verdict = match key.sides(self.kind).generated {
            true => generated,
            false => imported,
        };
        Ok(Admitted { verdict, warning })
    }

    /// Whether `key` may be packaged: `Ok` with the warning a let-through defect deserves.
    fn judge(&self, key: Held, path: WrapPath, overrides: Overrides) -> Result<Option<String>> {
        let judged = match key.sides(self.kind).generated {
            true => &self.generated.judged,
            false => &self.imported.judged,
        };
        let kind = self.kind;
        let what = key.what();
        let zero_padded = path == ZERO_PADDED
            && judged.verdict == Verdict::NonConformant
            && judged.only_trailing_zeros;
        let rare = judged.one_in.is_some_and(|n| n > 1);
        match judged.verdict {
            Verdict::Ok => Ok(None),
            Verdict::Untested => Ok(Some(format!(
                "{kind}, {what}: the token's wrap of such keys is untested ({}); packaging \
                     such keys: one with an awkward value with an awkward value may still come out in a form \
                     Azure refuses",
                judged.detail
            ))),
            Verdict::NonConformant if rare && matches!(key, Held::Existing(_)) => {
                Ok(Some(format!(
                    "{kind}, {what}: the token's wrap is non-conformant for {} ({}); packaging \
                     such keys: if a key is one of them, Azure refuses the import and the key \
                     stays in the HSM",
                    judged.share(),
                    judged.detail
                )))
            }
            _ if zero_padded && overrides.zero_padded_kwp => Ok(Some(format!(
                "--allow-zero-padded-kwp: packaging {kind} although {}; for rehearsals only",
                judged.detail
            ))),
            _ if overrides.nonconformant => Ok(Some(format!(
                "--allow-nonconformant: packaging {kind} although the check found: {} {}; \
                     Azure may refuse the package; for rehearsals only",
                judged.verdict, judged.detail
            ))),
            _ => Err(refusal(kind, what, judged, zero_padded)),
        }
    }
}

fn refusal(kind: KeyKind, what: &str, judged: &Judged, zero_padded: bool) -> OfflineError {
    OfflineError::KindRefused {
        kind,
        finding: match judged.verdict {
            Verdict::NotSupported => {
                format!("the token does not support them ({})", judged.detail)
            }
            _ => format!(
                "the token's wrap of {what} is non-conformant for {} ({})",
                judged.share(),
                judged.detail
            ),
        },
        fix: if zero_padded {
            "For a rehearsal on SoftHSM 2.6.1 (whose 0x210A zero-pads before RFC 5649) pass \
             --allow-zero-padded-kwp; for a real ceremony use an HSM whose wrap passes the check"
        } else {
            "For a real ceremony use an HSM whose wrap of this kind passes the check (for a \
             rehearsal only, --allow-nonconformant lets it through)"
        },
    }
}

/// The verdicts a run of packages relies on, checked once.
pub struct Verdicts {
    path: WrapPath,
    overrides: Overrides,
    reports: Vec<KindReport>,
    /// The warnings given so far: each once a run, however many keys it applies to.
    warned: Mutex<Vec<String>>,
}

/// Each distinct kind of `keys` once, with the sides its keys are held to.
fn plan_of(keys: &[(KeyKind, Held)]) -> Vec<(KeyKind, usize, Sides)> {
    let mut plan: Vec<(KeyKind, usize, Sides)> = Vec::new();
    for &(kind, held) in keys {
        let need = held.sides(kind);
        match plan.iter_mut().find(|(k, ..)| *k == kind) {
            Some((_, _, sides)) => {
                sides.generated |= need.generated;
                sides.imported |= need.imported;
            }
            None => plan.push((kind, default_tries(kind), need)),
        }
    }
    plan
}

/// What a run's verdicts rest on: the kinds a recorded entry stood for, and the kinds this
/// run checked itself (with why), whose reports the caller records.
pub struct Obtained {
    pub verdicts: Verdicts,
    /// `(kind, entry)` for each kind a recorded verdict stood for.
    pub reused: Vec<(KeyKind, CheckEntryRef)>,
    /// `(kind, why no recorded verdict stood for it)` for each kind checked now.
    pub checked: Vec<(KeyKind, String)>,
}

impl Obtained {
    /// The reports of the kinds this run checked, to record as a `token checked` entry.
    fn checked_reports(&self) -> Vec<KindReport> {
        let reports = &self.verdicts.reports;
        reports
            .iter()
            .filter(|r| self.checked.iter().any(|(k, _)| *k == r.kind))
            .cloned()
            .collect()
    }

    /// Records the kinds this run checked (if any) in `log` as a `token checked` entry, so
    /// their throwaway keys are on record and a later command can reuse them, before any key
    /// is admitted or refused; what each kind rests on.
    pub fn record(&self, token: &TokenSession, log: &EvidenceLog) -> Result<Vec<CheckBasis>> {
        let reports = self.checked_reports();
        let entry = if reports.is_empty() {
            None
        } else {
            let path = self.verdicts.path.to_string();
            log.append(super::evidence::gate_checked(token, &path, &reports))?;
            RecordedChecks::read(log.path())?.newest()
        };
        Ok(self.basis(entry.as_ref()))
    }

    /// What each kind rests on, once the kinds checked now are recorded as `entry` (none when
    /// nothing was checked).
    fn basis(&self, entry: Option<&CheckEntryRef>) -> Vec<CheckBasis> {
        let reused = self.reused.iter().map(|(kind, e)| CheckBasis {
            kind: *kind,
            entry: e.clone(),
            why_checked: None,
            throwaway_keys: 0,
        });
        let checked = self.checked.iter().filter_map(|(kind, why)| {
            let report = self.verdicts.reports.iter().find(|r| r.kind == *kind)?;
            Some(CheckBasis {
                kind: *kind,
                entry: entry?.clone(),
                why_checked: Some(why.clone()),
                throwaway_keys: report.generated.tries,
            })
        });
        reused.chain(checked).collect()
    }
}

impl Verdicts {
    /// Checks what `keys` need on `path` (each distinct kind once, default tries, only the
    /// sides their keys are held to).
    pub fn check(
        token: &TokenSession,
        raw: &RawModule,
        path: WrapPath,
        keys: &[(KeyKind, Held)],
        overrides: Overrides,
    ) -> Result<Self> {
        let plan = plan_of(keys);
        let reports = if plan.is_empty() {
            Vec::new()
        } else {
            tracing::info!(
                ?plan,
                "checking the token on throwaway keys before packaging"
            );
            Checker::new(token, raw, path)?.run(&plan)?
        };
        Ok(Self {
            path,
            overrides,
            reports,
            warned: Mutex::default(),
        })
    }

    /// What `keys` need on `path`: each kind's verdict from the newest entry of `recorded`
    /// that stands for it ([`RecordedChecks::find`]), else checked now, after a line on
    /// stderr saying why this run is slower.
    pub fn obtain(
        token: &TokenSession,
        raw: &RawModule,
        path: WrapPath,
        keys: &[(KeyKind, Held)],
        overrides: Overrides,
        (recorded, policy): (&RecordedChecks, ReusePolicy),
    ) -> Result<Obtained> {
        let current = token.record();
        let (mut reports, mut reused, mut to_check, mut checked) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (kind, tries, sides) in plan_of(keys) {
            match recorded.find(&current, path, (kind, sides), policy) {
                Ok((entry, report)) => {
                    tracing::info!(%kind, entry = entry.entry, "reusing the recorded verdict");
                    reused.push((kind, entry));
                    reports.push(report);
                }
                Err(why) => {
                    let hint = match policy.recheck {
                        true => "",
                        false => " (`byok-offline check --log` before the ceremony spares this)",
                    };
                    // `why` quotes the log's fields (token model, serial, time): escaped.
                    let why_shown =
                        byok_cli_common::terminal::escape(&why.to_string()).into_owned();
                    eprintln!(
                        "{why_shown}; checking {kind} first, on at least {}{hint}",
                        super::throwaway_keys(tries)
                    );
                    to_check.push((kind, tries, sides));
                    checked.push((kind, why));
                }
            }
        }
        if !to_check.is_empty() {
            reports.extend(Checker::new(token, raw, path)?.run(&to_check)?);
        }
        Ok(Obtained {
            verdicts: Self {
                path,
                overrides,
                reports,
                warned: Mutex::default(),
            },
            reused,
            checked,
        })
    }

    /// Lets `key` of `kind` through (the verdict it was admitted by), or refuses it (a kind
    /// not checked is refused: a bug).
    pub fn admit(&self, kind: KeyKind, key: Held) -> Result<String> {
        let report = self
            .reports
            .iter()
            .find(|r| r.kind == kind)
            .ok_or_else(|| OfflineError::Usage(format!("{kind} was not checked before use")))?;
        let admitted = report.admit(key, self.path, self.overrides)?;
        if let Some(warning) = admitted.warning {
            let mut warned = lock(&self.warned, "warnings given");
            if !warned.contains(&warning) {
                tracing::warn!("{warning}");
                warned.push(warning);
            }
        }
        Ok(admitted.verdict)
    }
}

/// The gate before a real package: checks what `keys` need, then admits each; the verdicts
/// they were admitted by, in order.
pub fn require(
    token: &TokenSession,
    raw: &RawModule,
    path: WrapPath,
    keys: &[(KeyKind, Held)],
    overrides: Overrides,
) -> Result<Vec<String>> {
    let verdicts = Verdicts::check(token, raw, path, keys, overrides)?;
    keys.iter()
        .map(|&(kind, held)| verdicts.admit(kind, held))
        .collect()
}

/// The gate before the one key a `package` makes: its kind's verdict from the newest entry of
/// the log that stands for this token ([`super::reuse`]), else checked now on throwaway keys
/// and recorded in `log`; then the key admitted. The verdict line it was admitted by, and the
/// entry that verdict comes from.
pub fn admit_one(
    token: &TokenSession,
    raw: &RawModule,
    path: WrapPath,
    (kind, held): (KeyKind, Held),
    (overrides, policy): (Overrides, ReusePolicy),
    (recorded, log): (&RecordedChecks, &EvidenceLog),
) -> Result<(String, CheckBasis)> {
    let keys = [(kind, held)];
    let obtained = Verdicts::obtain(token, raw, path, &keys, overrides, (recorded, policy))?;
    let basis = obtained.record(token, log)?.pop();
    let verdict = obtained.verdicts.admit(kind, held)?;
    let basis = basis.ok_or_else(|| OfflineError::Usage(format!("{kind} was not checked")))?;
    Ok((verdict, basis))
}
