//! What `check` found: per kind, one verdict for the keys the token generates and one for the
//! keys imported into it, and the report `byok-offline check` prints.
//!
//! The two are judged apart because tokens treat them apart. A token's generator may keep a
//! scalar at its full length while its object store strips the leading zeros of a value it is
//! given (openCryptoki 3.27), or the other way round (kryoptic 1.5.4): one verdict for both
//! would refuse a correct ceremony or pass a broken one.

use byok_cli_common::output::as_display;
use serde::Serialize;
use std::fmt;

use byok_core::target::KeyKind;

/// The outcome on one side (generated or imported keys) of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// Every throwaway key unwrapped to exactly what Azure reads, and to the token's key.
    #[serde(rename = "ok")]
    Ok,
    /// Imported keys only: the token refused to import (or wrap) the throwaway keys, so
    /// nothing is known (many vendor HSMs refuse imports).
    #[serde(rename = "untested")]
    Untested,
    /// The token could not generate or wrap the kind (the return code named).
    #[serde(rename = "not supported")]
    NotSupported,
    /// At least one throwaway key unwrapped to something Azure refuses or to another key.
    #[serde(rename = "non-conformant")]
    NonConformant,
}

impl std::str::FromStr for Verdict {
    type Err = String;

    /// The text [`Verdict`]'s `Display` writes, as an evidence entry records it.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ok" => Ok(Verdict::Ok),
            "untested" => Ok(Verdict::Untested),
            "not supported" => Ok(Verdict::NotSupported),
            "non-conformant" => Ok(Verdict::NonConformant),
            other => Err(format!("`{other}` is not a verdict this version knows")),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Ok => "ok",
            Verdict::Untested => "untested",
            Verdict::NotSupported => "not supported",
            Verdict::NonConformant => "non-conformant",
        })
    }
}

/// A verdict with what it rests on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Judged {
    pub verdict: Verdict,
    /// Each defect and where it showed (non-conformant), the return code (not supported), why
    /// nothing was tested (untested), or a note (ok).
    pub detail: String,
    /// Non-conformant only: 1 key in `one_in` of the kind meets the defect (1: every key; 256:
    /// a P-256 key whose scalar's top byte is zero).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub one_in: Option<u32>,
    /// Every defect found is trailing zero bytes (what `--allow-zero-padded-kwp` covers).
    #[serde(skip)]
    pub(super) only_trailing_zeros: bool,
}

impl Judged {
    pub(super) fn ok(note: String) -> Self {
        Self {
            verdict: Verdict::Ok,
            detail: note,
            one_in: None,
            only_trailing_zeros: false,
        }
    }

    pub(super) fn other(verdict: Verdict, detail: String) -> Self {
        Self {
            verdict,
            ..Self::ok(detail)
        }
    }

    /// Every defect found is trailing zero bytes (what `--allow-zero-padded-kwp` covers).
    pub fn only_trailing_zeros(&self) -> bool {
        self.only_trailing_zeros
    }

    /// "every key" or "1 in 256 keys".
    pub fn share(&self) -> String {
        match self.one_in {
            None | Some(1) => "every key".into(),
            Some(n) => format!("1 key in {n}"),
        }
    }
}

/// What the keys the token generates showed: the verdict for `package --generate`, `batch`
/// generation and existing keys with `CKA_LOCAL` true.
#[derive(Debug, Clone, Serialize)]
pub struct Generated {
    #[serde(flatten)]
    pub judged: Judged,
    /// How many throwaway keys were generated in the token.
    pub tries: usize,
    /// How many of them were defective.
    pub defective: usize,
    /// EC: how many had a scalar whose top byte is zero, the value a token that drops leading
    /// zeros gets wrong (the check generates until it has seen one, within a bound).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zero_top_byte: Option<usize>,
}

/// What the encoding edge cases imported into the token showed: the verdict for existing keys
/// with `CKA_LOCAL` false (or unknown).
#[derive(Debug, Clone, Serialize)]
pub struct Imported {
    #[serde(flatten)]
    pub judged: Judged,
    /// Imports wrapped and judged.
    pub tried: usize,
    /// How many of them unwrapped to something Azure refuses or to another key.
    pub defective: usize,
    /// Imports the token refused to take or to wrap: not tested.
    pub untested: usize,
    /// The token's first refusal, when some were not tested.
    pub untested_reason: Option<String>,
}

impl Imported {
    /// AES keys have no edge case (raw bytes of a fixed length); the generated keys say it all.
    pub(super) fn none_needed() -> Self {
        Self {
            judged: Judged::ok("no encoding edge case: an AES key is raw bytes".into()),
            tried: 0,
            defective: 0,
            untested: 0,
            untested_reason: None,
        }
    }

    /// Not checked in this run (the gate checks only the verdict the key is held to).
    pub(super) fn not_checked() -> Self {
        Self {
            judged: Judged::other(Verdict::Untested, "not checked in this run".into()),
            ..Self::none_needed()
        }
    }
}

impl Generated {
    /// Whether this run judged generated keys: only [`Generated::not_checked`] is untested on
    /// this side (a token that cannot make the kind is "not supported").
    pub fn was_checked(&self) -> bool {
        self.judged.verdict != Verdict::Untested
    }
}

impl Imported {
    /// Whether this run judged imported keys: [`Imported::not_checked`] is untested with no
    /// import tried or refused (a token that refused every import counts them in `untested`).
    pub fn was_checked(&self) -> bool {
        self.judged.verdict != Verdict::Untested || self.tried > 0 || self.untested > 0
    }
}

/// What the check found for one kind.
#[derive(Debug, Clone, Serialize)]
pub struct KindReport {
    /// `RSA 2048`, `EC P-521`, `AES 256`.
    #[serde(serialize_with = "as_display")]
    pub kind: KeyKind,
    pub generated: Generated,
    pub imported: Imported,
}

impl KindReport {
    /// A kind on a token with no wrap path: not supported either way.
    pub(super) fn no_wrap_path(kind: KeyKind, reason: &str) -> Self {
        let judged = Judged::other(Verdict::NotSupported, reason.to_string());
        Self {
            kind,
            generated: Generated {
                judged: judged.clone(),
                tries: 0,
                defective: 0,
                zero_top_byte: None,
            },
            imported: Imported {
                judged,
                ..Imported::none_needed()
            },
        }
    }

    /// The kind's one-line verdicts: "EC P-256: generated keys ok (300 throwaway keys, 1 with a
    /// zero top byte); imported keys non-conformant for 1 key in 256 (...)".
    pub fn lines(&self) -> [String; 2] {
        [
            format!("{} generated: {}", self.kind, self.generated),
            format!("{} imported: {}", self.kind, self.imported),
        ]
    }
}

impl fmt::Display for KindReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [generated, imported] = self.lines();
        write!(f, "{generated}; {imported}")
    }
}

impl Judged {
    /// `ok (COUNTS; NOTE)`, `non-conformant for SHARE (DETAIL)`, `VERDICT (DETAIL)`.
    fn write(&self, f: &mut fmt::Formatter<'_>, counts: Option<String>) -> fmt::Result {
        match self.verdict {
            Verdict::Ok => {
                let note = (!self.detail.is_empty()).then_some(self.detail.clone());
                let parts: Vec<String> = counts.into_iter().chain(note).collect();
                write!(f, "ok ({})", parts.join("; "))
            }
            Verdict::NonConformant => {
                write!(f, "non-conformant for {} ({})", self.share(), self.detail)
            }
            verdict => write!(f, "{verdict} ({})", self.detail),
        }
    }
}

impl fmt::Display for Generated {
    /// `ok (300 throwaway keys, 1 with a zero top byte)`, `non-conformant for 1 key in 256
    /// (31-byte P-256 scalar; ..., in 1 of 270 throwaway keys)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut counts = throwaway_keys(self.tries);
        if let Some(zero) = self.zero_top_byte {
            counts.push_str(&format!(", {zero} with a zero top byte"));
        }
        self.judged.write(f, Some(counts))
    }
}

impl fmt::Display for Imported {
    /// `ok (4 edge cases)`, `non-conformant for 1 key in 256 (31-byte P-256 scalar; ..., for
    /// 2 edge cases; ...)`, `untested (...)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts = (self.tried > 0).then(|| edge_cases(self.tried));
        self.judged.write(f, counts)
    }
}

/// "1 throwaway key", "20 throwaway keys".
pub fn throwaway_keys(n: usize) -> String {
    match n {
        1 => "1 throwaway key".into(),
        n => format!("{n} throwaway keys"),
    }
}

/// "1 edge case", "4 edge cases".
pub(super) fn edge_cases(n: usize) -> String {
    match n {
        1 => "1 edge case".into(),
        n => format!("{n} edge cases"),
    }
}

/// What the token says about itself, in the check's report.
#[derive(Debug, Clone, Serialize)]
pub struct CheckedToken {
    pub label: String,
    pub manufacturer: String,
    pub model: String,
    pub serial: String,
    pub firmware: String,
    pub slot: u64,
}

/// `byok-offline check`'s report.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub token: CheckedToken,
    /// The path `package` would take, or `none: REASON`.
    pub wrap_path: String,
    pub kinds: Vec<KindReport>,
    /// Throwaway keys generated in all.
    pub throwaway_keys: usize,
    /// Edge cases imported, wrapped and judged in all.
    pub edge_case_imports: usize,
    pub seconds: f64,
}

impl byok_cli_common::Document for CheckReport {
    const SCHEMA: &'static str = "byok-offline.check/2";
}
