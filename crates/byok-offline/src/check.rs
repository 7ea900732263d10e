//! `byok-offline check`: whether this token wraps each key kind the way Azure reads it, proved
//! on throwaway keys before a ceremony, and the gate `package` and `batch` pass through.
//!
//! For each kind: throwaway targets are generated as session objects with the production
//! templates, wrapped by the production code ([`wrap_path::choose`] and
//! [`package::wrap_in_token`]) under a [`ThrowawayKek`] whose private half is held here in
//! memory, unwrapped and read strictly by byok-core ([`ThrowawayKek::judge`]), and the key
//! found is compared with the token's own: its public key (RSA, EC), or an AES-GCM
//! ciphertext made with it that the token must decrypt (AES, with `prove-aes`'s code). No real
//! target is ever unwrapped outside the token: only throwaway keys, destroyed on every path.
//!
//! Generated keys meet a token's encoding defects only by chance (a P-256 scalar whose top
//! byte is zero: 1 key in 256), so for RSA and EC the check also imports the encoding edge
//! cases ([`edge`]): keys made in software with the awkward value chosen, given to the token as
//! session objects, wrapped and judged the same way and compared with the software key. A
//! token that refuses the import leaves the kind "ok (edge cases untested)": ok for packaging,
//! but said.

use crate::edge;
use crate::error::{OfflineError, Result};
use crate::keys::{self, Target};
use crate::package;
use crate::raw::RawModule;
use crate::token::TokenSession;
use crate::wrap_path::{self, KwpMechanism, WrapChoice, WrapPath};
use byok_cli_common::progress::Progress;
use byok_core::conformance::{Defect, Judgement, ThrowawayKek};
use byok_core::target::{KeyKind, Kty, TargetKey};
use serde::{Serialize, Serializer};
use std::fmt;

mod edges;

/// SoftHSM 2.6.1's 0x210A: zero padding to 8 bytes, then RFC 5649.
const ZERO_PADDED: WrapPath = WrapPath::TwoStep(KwpMechanism::PadZeroPadded);

/// How many throwaway keys of `kind` the check generates in the token unless told otherwise.
/// EC: 20, so a defect on half the keys (kryoptic's 65-byte P-521 scalar) escapes with
/// probability 2^-20; rarer values are the edge cases' job ([`edge`]), which run besides.
/// RSA generation is slow on many tokens: 4 keys of 2048 bits, 2 of 3072 or 4096. AES: 4.
pub fn default_tries(kind: KeyKind) -> usize {
    match kind {
        KeyKind::Ec { .. } => 20,
        KeyKind::Rsa { bits: 2048 } => 4,
        KeyKind::Rsa { .. } => 2,
        KeyKind::Oct { .. } => 4,
    }
}

/// The outcome for one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// Every throwaway key unwrapped to exactly what Azure reads, and to the token's key.
    #[serde(rename = "ok")]
    Ok,
    /// The generated keys did, but the token refused to import (or wrap) the encoding edge
    /// cases: ok for packaging, with the gap said.
    #[serde(rename = "ok (edge cases untested)")]
    OkEdgeCasesUntested,
    /// The token could not generate or wrap the kind (the return code named).
    #[serde(rename = "not supported")]
    NotSupported,
    /// At least one throwaway key unwrapped to something Azure refuses or to another key.
    #[serde(rename = "non-conformant")]
    NonConformant,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Ok => "ok",
            Verdict::OkEdgeCasesUntested => "ok (edge cases untested)",
            Verdict::NotSupported => "not supported",
            Verdict::NonConformant => "non-conformant",
        })
    }
}

/// What the check found for one kind.
#[derive(Debug, Clone, Serialize)]
pub struct KindReport {
    /// `RSA 2048`, `EC P-521`, `AES 256`.
    #[serde(serialize_with = "display")]
    pub kind: KeyKind,
    pub verdict: Verdict,
    /// Each defect and where it showed (non-conformant), the return code (not supported), what
    /// was not tested (ok with edge cases untested), or a note (ok).
    pub detail: String,
    /// How many throwaway keys were generated in the token.
    pub tries: usize,
    /// How many of them were defective.
    pub defective: usize,
    /// The encoding edge cases imported beside them.
    pub edge_cases: EdgeCases,
    /// Every defect found is trailing zero bytes (what `--allow-zero-padded-kwp` covers).
    #[serde(skip)]
    only_trailing_zeros: bool,
}

/// What the encoding edge cases ([`edge`]) found for one kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EdgeCases {
    /// Imports wrapped and judged.
    pub tried: usize,
    /// How many of them unwrapped to something Azure refuses or to another key.
    pub defective: usize,
    /// Imports the token refused to take or to wrap: not tested.
    pub untested: usize,
    /// The token's first refusal, when some were not tested.
    pub untested_reason: Option<String>,
}

fn display<S: Serializer>(kind: &KeyKind, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(kind)
}

impl fmt::Display for KindReport {
    /// `EC P-521: non-conformant (65-byte P-521 scalar; ..., in 9 of 20 throwaway keys and
    /// for a scalar whose top byte is zero (CKA_VALUE of 65 bytes))`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.verdict)?;
        if self.verdict != Verdict::Ok {
            return write!(f, " ({})", self.detail);
        }
        write!(f, " ({}", throwaway_keys(self.tries))?;
        if self.edge_cases.tried > 0 {
            write!(f, " and {}", edge_cases(self.edge_cases.tried))?;
        }
        if !self.detail.is_empty() {
            write!(f, "; {}", self.detail)?;
        }
        f.write_str(")")
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
fn edge_cases(n: usize) -> String {
    match n {
        1 => "1 edge case".into(),
        n => format!("{n} edge cases"),
    }
}

/// The operator's overrides of a refused kind, both for rehearsals only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--allow-zero-padded-kwp`: trailing zero bytes from a zero-padding 0x210A (SoftHSM
    /// 2.6.1), and nothing else.
    pub zero_padded_kwp: bool,
    /// `--allow-nonconformant`: any verdict; a warning names what is let through.
    pub nonconformant: bool,
}

impl KindReport {
    fn not_supported(kind: KeyKind, detail: String, tries: usize) -> Self {
        Self {
            kind,
            verdict: Verdict::NotSupported,
            detail,
            tries,
            defective: 0,
            edge_cases: EdgeCases::default(),
            only_trailing_zeros: false,
        }
    }

    /// The verdict on `tries` generated keys and the edge cases: `findings` holds the defects
    /// of both, `notes` what the generated keys could not prove.
    fn judged(
        kind: KeyKind,
        tries: usize,
        findings: &[Finding],
        notes: &[String],
        edge_cases: EdgeCases,
    ) -> Self {
        let mut report = Self {
            kind,
            verdict: Verdict::Ok,
            detail: distinct(notes.iter().map(String::as_str)),
            tries,
            defective: findings.iter().filter(|f| f.edge_case.is_none()).count(),
            edge_cases,
            only_trailing_zeros: false,
        };
        if !findings.is_empty() {
            report.verdict = Verdict::NonConformant;
            report.detail = where_found(findings, tries);
            report.only_trailing_zeros = findings.iter().all(|f| f.trailing_zeros);
        } else if let Some(reason) = &report.edge_cases.untested_reason {
            let e = &report.edge_cases;
            let which = match e.tried {
                0 => "edge cases not tested".to_string(),
                n => format!("{} of {} edge cases not tested", e.untested, n + e.untested),
            };
            report.verdict = Verdict::OkEdgeCasesUntested;
            report.detail = format!("ok on {}; {which}: {reason}", throwaway_keys(tries));
        }
        report
    }

    /// RSA keys through a zero-padding 0x210A whose throwaway keys all happened to be a
    /// multiple of 8 bytes long: an RSA PKCS#8's length varies from key to key (a leading zero
    /// byte in each integer or not), so the next key, the real one, may come out padded.
    fn padded_by_chance(kind: KeyKind, tries: usize, edge_cases: EdgeCases) -> Self {
        Self {
            kind,
            verdict: Verdict::NonConformant,
            detail: format!(
                "the token's 0x210A zero-pads to a multiple of 8 bytes and an RSA key's PKCS#8 \
                 length varies from key to key: trailing zero bytes after the DER key are \
                 likely, though none of these {tries} throwaway keys needed padding"
            ),
            tries,
            defective: 0,
            edge_cases,
            only_trailing_zeros: true,
        }
    }

    /// Lets the kind through to a real package, or refuses it naming the defect and the fix.
    pub fn admit(&self, path: WrapPath, overrides: Overrides) -> Result<()> {
        let zero_padded = path == WrapPath::TwoStep(KwpMechanism::PadZeroPadded)
            && self.verdict == Verdict::NonConformant
            && self.only_trailing_zeros;
        match self.verdict {
            Verdict::Ok => Ok(()),
            Verdict::OkEdgeCasesUntested => {
                tracing::warn!(
                    "{self}; packaging it: its generated keys passed, but a key of this kind \
                     with an awkward value may still come out in a form Azure refuses"
                );
                Ok(())
            }
            _ if zero_padded && overrides.zero_padded_kwp => {
                tracing::warn!(
                    "--allow-zero-padded-kwp: packaging {} although {self}; for rehearsals only",
                    self.kind
                );
                Ok(())
            }
            _ if overrides.nonconformant => {
                tracing::warn!(
                    "--allow-nonconformant: packaging {} although {self}; Azure may refuse the \
                     package; for rehearsals only",
                    self.kind
                );
                Ok(())
            }
            verdict => Err(OfflineError::KindRefused {
                kind: self.kind,
                finding: match verdict {
                    Verdict::NotSupported => {
                        format!("the token does not support them ({})", self.detail)
                    }
                    _ => format!(
                        "the token's wrap of them is non-conformant ({})",
                        self.detail
                    ),
                },
                fix: if zero_padded {
                    "For a rehearsal on SoftHSM 2.6.1 (whose 0x210A zero-pads before RFC 5649) \
                     pass --allow-zero-padded-kwp; for a real ceremony use an HSM whose wrap \
                     passes the check"
                } else {
                    "For a real ceremony use an HSM whose wrap of this kind passes the check \
                     (for a rehearsal only, --allow-nonconformant lets it through)"
                },
            }),
        }
    }
}

/// Up to three distinct texts, in the order first seen, joined by "; ".
fn distinct<'a>(texts: impl Iterator<Item = &'a str>) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for t in texts {
        if !seen.contains(&t) {
            seen.push(t);
        }
    }
    let more = seen.len().saturating_sub(3);
    let mut out = seen[..seen.len().min(3)].join("; ");
    if more > 0 {
        out.push_str(&format!("; and {more} more"));
    }
    out
}

/// Each distinct defect (up to three) with where it showed: "65-byte P-521 scalar; RFC 5915
/// requires 66 bytes, in 9 of 20 throwaway keys and for a scalar whose top byte is zero
/// (CKA_VALUE of 65 bytes)". An edge case showing several defects is named once per defect;
/// a defect on several edge cases counts them.
fn where_found(findings: &[Finding], tries: usize) -> String {
    let texts: Vec<String> = {
        let mut seen: Vec<&str> = Vec::new();
        for f in findings {
            if !seen.contains(&f.text.as_str()) {
                seen.push(&f.text);
            }
        }
        seen.iter()
            .map(|text| {
                let same = || findings.iter().filter(|f| f.text == *text);
                let generated = same().filter(|f| f.edge_case.is_none()).count();
                let edges: Vec<&str> = same().filter_map(|f| f.edge_case.as_deref()).collect();
                let mut places = Vec::new();
                if generated > 0 {
                    places.push(format!("in {generated} of {tries} throwaway keys"));
                }
                match edges.as_slice() {
                    [] => {}
                    [one] => places.push(format!("for {one}")),
                    many => places.push(format!("for {} edge cases", many.len())),
                }
                format!("{text}, {}", places.join(" and "))
            })
            .collect()
    };
    distinct(texts.iter().map(String::as_str))
}

/// How one throwaway key went.
enum TryOutcome {
    Conformant,
    /// Conformant, with something the check could not prove (e.g. no AES-GCM to compare keys).
    Note(String),
    Defect(Finding),
    Unsupported(String),
}

/// A defect on one throwaway key.
struct Finding {
    text: String,
    trailing_zeros: bool,
    /// An EC scalar written shorter than RFC 5915's fixed length.
    short_scalar: bool,
    /// The edge case it showed on ("a scalar whose top byte is zero (CKA_VALUE of 31
    /// bytes)"), or `None` on a generated key.
    edge_case: Option<String>,
}

impl Finding {
    fn other(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            trailing_zeros: false,
            short_scalar: false,
            edge_case: None,
        }
    }
}

impl fmt::Display for TryOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryOutcome::Conformant => f.write_str("ok"),
            TryOutcome::Note(n) => write!(f, "ok ({n})"),
            TryOutcome::Defect(d) => f.write_str(&d.text),
            TryOutcome::Unsupported(r) => write!(f, "not supported ({r})"),
        }
    }
}

/// The token and wrap path the checks run on, with the throwaway KEK.
pub struct Checker<'a> {
    token: &'a TokenSession,
    raw: &'a RawModule,
    path: WrapPath,
    kek: ThrowawayKek,
    /// Whether the token's EC generator keeps a scalar's leading zero bytes, once asked
    /// ([`edges`]).
    generator_keeps_zeros: std::cell::OnceCell<std::result::Result<bool, String>>,
}

impl<'a> Checker<'a> {
    /// A checker for `path` on this token, with a fresh throwaway KEK.
    pub fn new(token: &'a TokenSession, raw: &'a RawModule, path: WrapPath) -> Result<Self> {
        Ok(Self {
            token,
            raw,
            path,
            kek: ThrowawayKek::generate()?,
            generator_keeps_zeros: std::cell::OnceCell::new(),
        })
    }

    /// Checks each kind with its number of tries, reporting each throwaway key and edge case
    /// on `progress`.
    pub fn run(&self, plan: &[(KeyKind, usize)]) -> Result<Vec<KindReport>> {
        let steps = plan.iter().map(|&(k, n)| n + edge::planned(k)).sum();
        let progress = Progress::new(steps);
        let reports = plan
            .iter()
            .map(|&(kind, tries)| self.kind(kind, tries, &progress))
            .collect();
        progress.finish();
        reports
    }

    /// `tries` throwaway keys of `kind`, then its edge cases; the first key the token cannot
    /// make or wrap ends it.
    fn kind(&self, kind: KeyKind, tries: usize, progress: &Progress) -> Result<KindReport> {
        let mut findings = Vec::new();
        let mut notes = Vec::new();
        for n in 1..=tries {
            let outcome = self.once(kind)?;
            progress.step(&format!("{kind} {n}/{tries}: {outcome}"));
            match outcome {
                TryOutcome::Conformant => {}
                TryOutcome::Note(note) => notes.push(note),
                TryOutcome::Defect(f) => findings.push(f),
                TryOutcome::Unsupported(reason) => {
                    return Ok(KindReport::not_supported(kind, reason, n));
                }
            }
        }
        let edge_cases = self.edge_cases(kind, progress, &mut findings, &mut notes)?;
        if findings.is_empty() && self.path == ZERO_PADDED && kind.kty() == Kty::Rsa {
            return Ok(KindReport::padded_by_chance(kind, tries, edge_cases));
        }
        Ok(KindReport::judged(
            kind, tries, &findings, &notes, edge_cases,
        ))
    }

    /// One throwaway key: generated, wrapped as a real one is, judged, destroyed.
    fn once(&self, kind: KeyKind) -> Result<TryOutcome> {
        let throwaway = match keys::generate_throwaway(self.token, kind) {
            Ok(t) => t,
            Err(e) => return unsupported_or(e, "key generation"),
        };
        let outcome = self.wrapped_and_judged(&throwaway.target, "the token's")?;
        throwaway.destroy()?;
        Ok(outcome)
    }

    /// `target` wrapped with the production code under the throwaway KEK, and judged.
    fn wrapped_and_judged(&self, target: &Target, whose: &str) -> Result<TryOutcome> {
        let wrapped =
            package::wrap_in_token(self.token, self.raw, self.kek.public(), target, self.path);
        match wrapped {
            Ok(ciphertext) => self.judge(target, &ciphertext, whose),
            Err(OfflineError::BadResult(what)) => Ok(TryOutcome::Defect(Finding::other(what))),
            Err(e) => unsupported_or(e, "the wrap"),
        }
    }

    /// Unwraps with the throwaway KEK, reads strictly, and compares with `target`'s key
    /// (`whose`: "the token's" or "the imported key's").
    fn judge(&self, target: &Target, ciphertext: &[u8], whose: &str) -> Result<TryOutcome> {
        let key = match self.kek.judge(target.kind, ciphertext) {
            Ok(key) => key,
            Err(Judgement::Unwrap(e)) => {
                return Ok(TryOutcome::Defect(Finding::other(format!(
                    "the wrap does not unwrap: {e}"
                ))));
            }
            Err(Judgement::Defect(d)) => {
                if let Defect::TrailingBytes { zeros: true, .. } = d
                    && !self.padded_key_is_target(target, ciphertext)
                {
                    return Ok(TryOutcome::Defect(Finding::other(format!(
                        "{d}, and the key in front of them is not {whose}"
                    ))));
                }
                return Ok(TryOutcome::Defect(Finding {
                    trailing_zeros: matches!(d, Defect::TrailingBytes { zeros: true, .. }),
                    short_scalar: matches!(d, Defect::ScalarLength { len, expected, .. } if len < expected),
                    text: d.to_string(),
                    edge_case: None,
                }));
            }
        };
        if target.kind.curve().is_some() || matches!(target.kind, KeyKind::Rsa { .. }) {
            return Ok(if key.public_key() == target.public_key.as_ref() {
                TryOutcome::Conformant
            } else {
                TryOutcome::Defect(Finding::other(format!(
                    "the unwrapped key's public key is not {whose}"
                )))
            });
        }
        same_aes_key(self.token, target, &key)
    }
}

impl Checker<'_> {
    /// Whether the key in front of trailing zero bytes is `target`'s: the zero-padding override
    /// forgives the padding, never another key.
    fn padded_key_is_target(&self, target: &Target, ciphertext: &[u8]) -> bool {
        let Ok(plaintext) = self.kek.unwrap(ciphertext) else {
            return false;
        };
        let end = plaintext.len() - plaintext.iter().rev().take_while(|b| **b == 0).count();
        // The DER may itself end in zero bytes: try each cut the padding allows.
        (end..plaintext.len()).any(|len| {
            byok_core::conformance::read_plaintext_of(target.kind, &plaintext[..len])
                .is_ok_and(|key| key.public_key() == target.public_key.as_ref())
        })
    }
}

/// A failure the token returned (a `CKR_...` from generation or the wrap) makes the kind
/// "not supported"; anything else stops the check.
fn unsupported_or(e: OfflineError, step: &str) -> Result<TryOutcome> {
    match e {
        OfflineError::GenerationRefused { rv, .. } => Ok(TryOutcome::Unsupported(format!(
            "{rv}: the token could not generate the key"
        ))),
        OfflineError::Pkcs11 { function, rv, .. } => Ok(TryOutcome::Unsupported(format!(
            "{rv} from {function} in {step}"
        ))),
        OfflineError::PublicKeyUnreadable { reason, .. } => Ok(TryOutcome::Defect(Finding::other(
            format!("the token's public key is unreadable: {reason}"),
        ))),
        other => Err(other),
    }
}

/// AES has no public key: the token decrypts an AES-GCM ciphertext made here with the
/// unwrapped key (`prove-aes`'s decryption). A token without AES-GCM leaves it unproved.
fn same_aes_key(token: &TokenSession, target: &Target, key: &TargetKey) -> Result<TryOutcome> {
    let challenge = aes_challenge(key.plaintext());
    match keys::decrypt_gcm(token, target.private, &target.label, &challenge) {
        Ok(plain) if *plain == AES_PROBE => Ok(TryOutcome::Conformant),
        Ok(_) | Err(OfflineError::ProofMismatch { .. }) => Ok(TryOutcome::Defect(Finding::other(
            "the unwrapped AES key is not the token's",
        ))),
        Err(OfflineError::ChallengeDecrypt { reason, .. }) => Ok(TryOutcome::Note(format!(
            "the AES key's identity is not proved: the token cannot decrypt AES-GCM ({reason})"
        ))),
        Err(e) => Err(e),
    }
}

/// The value the AES comparison encrypts (any value does: the key is a throwaway).
const AES_PROBE: [u8; 32] = [0x5a; 32];

fn aes_challenge(key: &[u8]) -> byok_core::challenge::AesChallenge {
    use aes_gcm::aead::consts::U12;
    use aes_gcm::aead::{AeadInOut, KeyInit};
    use aes_gcm::{AesGcm, Nonce, aes};
    let iv = [0x42; 12];
    let nonce = Nonce::try_from(&iv[..]).expect("12 bytes");
    let mut data = AES_PROBE.to_vec();
    macro_rules! seal {
        ($cipher:ty) => {
            <AesGcm<$cipher, U12>>::new_from_slice(key)
                .expect("the key's length was checked")
                .encrypt_inout_detached(&nonce, &[], data.as_mut_slice().into())
                .expect("a short value encrypts")
                .to_vec()
        };
    }
    let tag = match key.len() {
        16 => seal!(aes::Aes128),
        24 => seal!(aes::Aes192),
        _ => seal!(aes::Aes256),
    };
    byok_core::challenge::AesChallenge {
        kid: String::new(),
        alg: format!("A{}GCM", key.len() * 8),
        iv: iv.to_vec(),
        tag,
        ciphertext: data,
        plaintext_sha256: byok_core::Fingerprint::of_bytes(&AES_PROBE),
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
    const SCHEMA: &'static str = "byok-offline.check/1";
}

/// Checks `kinds` (with `tries` each, or each kind's default) on this token, along the path
/// `choice` takes. A token with no wrap path gets "not supported" for every kind.
pub fn check(
    token: &TokenSession,
    raw: &RawModule,
    choice: WrapChoice,
    kinds: &[KeyKind],
    tries: Option<usize>,
) -> Result<CheckReport> {
    let started = std::time::Instant::now();
    let (wrap_path, kinds) = match wrap_path::choose(token, raw, choice) {
        Ok(path) => {
            let plan: Vec<_> = kinds
                .iter()
                .map(|&k| (k, tries.unwrap_or_else(|| default_tries(k))))
                .collect();
            (
                path.to_string(),
                Checker::new(token, raw, path)?.run(&plan)?,
            )
        }
        Err(
            e @ (OfflineError::NoWrapPath(_)
            | OfflineError::NativeUnavailable
            | OfflineError::KwpSelfTestFailed),
        ) => {
            let reason = e.to_string();
            let none = |&k: &KeyKind| KindReport::not_supported(k, reason.clone(), 0);
            (format!("none: {reason}"), kinds.iter().map(none).collect())
        }
        Err(e) => return Err(e),
    };
    let id = &token.identity;
    Ok(CheckReport {
        token: CheckedToken {
            label: id.label.clone(),
            manufacturer: id.manufacturer.clone(),
            model: id.model.clone(),
            serial: id.serial.clone(),
            firmware: id.firmware.clone(),
            slot: id.slot,
        },
        wrap_path,
        throwaway_keys: kinds.iter().map(|k| k.tries).sum(),
        edge_case_imports: kinds.iter().map(|k| k.edge_cases.tried).sum(),
        kinds,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The gate before a real package: checks each distinct kind in `kinds` (default tries) on
/// `path`, and refuses the first one that is not ok unless `overrides` lets it through.
pub fn require(
    token: &TokenSession,
    raw: &RawModule,
    path: WrapPath,
    kinds: &[KeyKind],
    overrides: Overrides,
) -> Result<()> {
    let mut plan: Vec<(KeyKind, usize)> = Vec::new();
    for &k in kinds {
        if !plan.iter().any(|(p, _)| *p == k) {
            plan.push((k, default_tries(k)));
        }
    }
    if plan.is_empty() {
        return Ok(());
    }
    tracing::info!(
        ?plan,
        "checking the token on throwaway keys before packaging"
    );
    for report in Checker::new(token, raw, path)?.run(&plan)? {
        report.admit(path, overrides)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use byok_core::target::Curve;

    fn finding(text: &str, zeros: bool) -> Finding {
        Finding {
            text: text.into(),
            trailing_zeros: zeros,
            short_scalar: false,
            edge_case: None,
        }
    }

    fn edge_finding(text: &str, edge_case: &str) -> Finding {
        Finding {
            edge_case: Some(edge_case.into()),
            ..finding(text, false)
        }
    }

    fn judged(tries: usize, findings: &[Finding]) -> KindReport {
        KindReport::judged(P256, tries, findings, &[], EdgeCases::default())
    }

    const P256: KeyKind = KeyKind::Ec { curve: Curve::P256 };
    const KWP: WrapPath = WrapPath::TwoStep(KwpMechanism::Kwp);

    #[test]
    fn tries_catch_a_defect_on_half_the_keys() {
        let ec = default_tries(P256);
        assert!(0.5f64.powi(ec as i32) <= 2f64.powi(-20));
        assert_eq!(default_tries(KeyKind::Rsa { bits: 4096 }), 2);
    }

    #[test]
    fn verdict_lines_name_the_defect_and_the_count() {
        let zeros = "6 trailing zero bytes after the DER key";
        let r = judged(20, &[finding(zeros, true), finding(zeros, true)]);
        assert_eq!(
            r.to_string(),
            format!("EC P-256: non-conformant ({zeros}, in 2 of 20 throwaway keys)")
        );
        let ok = judged(20, &[]);
        assert_eq!(ok.to_string(), "EC P-256: ok (20 throwaway keys)");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["kind"], "EC P-256");
        assert_eq!(json["verdict"], "non-conformant");
        assert_eq!(json["defective"], 2);
        assert!(json.get("only_trailing_zeros").is_none());
        let many = ["a", "b", "a", "c", "d", "e"].map(|t| finding(t, false));
        assert_eq!(
            judged(6, &many).detail,
            "a, in 2 of 6 throwaway keys; b, in 1 of 6 throwaway keys; \
             c, in 1 of 6 throwaway keys; and 2 more"
        );
    }

    #[test]
    fn edge_cases_are_named_with_the_defect_they_showed() {
        let short = "31-byte P-256 scalar; RFC 5915 requires 32 bytes";
        let top = "a scalar whose top byte is zero (CKA_VALUE of 31 bytes)";
        let edges = EdgeCases {
            tried: 4,
            defective: 1,
            ..EdgeCases::default()
        };
        let r = KindReport::judged(P256, 20, &[edge_finding(short, top)], &[], edges);
        assert_eq!(
            r.to_string(),
            format!("EC P-256: non-conformant ({short}, for {top})")
        );
        // Generated keys counted, the edge cases named, one defect once.
        let both = [
            finding(short, false),
            edge_finding(short, top),
            edge_finding(
                "30-byte P-256 scalar",
                "a scalar whose top two bytes are zero",
            ),
        ];
        let r = judged(20, &both);
        assert_eq!(r.defective, 1);
        assert_eq!(
            r.detail,
            format!(
                "{short}, in 1 of 20 throwaway keys and for {top}; 30-byte P-256 scalar, for a \
                 scalar whose top two bytes are zero"
            )
        );
        let same = [
            edge_finding("7 trailing", "x"),
            edge_finding("7 trailing", "y"),
        ];
        assert_eq!(judged(20, &same).detail, "7 trailing, for 2 edge cases");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["edge_cases"]["tried"], 0);
        assert_eq!(
            json["edge_cases"]["untested_reason"],
            serde_json::Value::Null
        );

        let ok = KindReport::judged(P256, 20, &[], &[], edges_ok(4));
        assert_eq!(
            ok.to_string(),
            "EC P-256: ok (20 throwaway keys and 4 edge cases)"
        );
        let json = serde_json::to_value(&ok).unwrap();
        assert_eq!(json["edge_cases"]["tried"], 4);
    }

    fn edges_ok(tried: usize) -> EdgeCases {
        EdgeCases {
            tried,
            ..EdgeCases::default()
        }
    }

    #[test]
    fn a_token_refusing_the_imports_is_ok_for_packaging_but_says_so() {
        let refused = "the token refused to import a throwaway key (CKR_TEMPLATE_INCONSISTENT)";
        let none = EdgeCases {
            untested: 4,
            untested_reason: Some(refused.into()),
            ..EdgeCases::default()
        };
        let r = KindReport::judged(P256, 20, &[], &[], none);
        assert_eq!(r.verdict, Verdict::OkEdgeCasesUntested);
        assert_eq!(
            r.to_string(),
            format!(
                "EC P-256: ok (edge cases untested) (ok on 20 throwaway keys; edge cases not \
                 tested: {refused})"
            )
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["verdict"], "ok (edge cases untested)");
        assert_eq!(json["edge_cases"]["untested"], 4);
        assert!(r.admit(KWP, Overrides::default()).is_ok());
        // Some imported, some refused: counted.
        let some = EdgeCases {
            tried: 2,
            untested: 2,
            untested_reason: Some(refused.into()),
            ..EdgeCases::default()
        };
        let r = KindReport::judged(P256, 20, &[], &[], some.clone());
        assert!(r.detail.contains("2 of 4 edge cases not tested"), "{r}");
        // A defect found outweighs a refusal: non-conformant.
        let r = KindReport::judged(P256, 20, &[edge_finding("bad", "x")], &[], some);
        assert_eq!(r.verdict, Verdict::NonConformant);
        assert!(r.admit(KWP, Overrides::default()).is_err());
    }

    #[test]
    fn overrides_cover_only_what_they_name() {
        let zeros = judged(20, &[finding("7 trailing zero bytes", true)]);
        let scalar = judged(20, &[finding("65-byte scalar", false)]);
        let unsupported = KindReport::not_supported(P256, "CKR_GENERAL_ERROR".into(), 1);
        let none = Overrides::default();
        let padded = Overrides {
            zero_padded_kwp: true,
            ..none
        };
        let any = Overrides {
            nonconformant: true,
            ..none
        };
        let err = zeros.admit(ZERO_PADDED, none).unwrap_err().to_string();
        assert!(err.contains("--allow-zero-padded-kwp"), "{err}");
        assert!(err.contains("run `byok-offline check`"), "{err}");
        assert!(zeros.admit(ZERO_PADDED, padded).is_ok());
        // The zero-padding override is for the zero-padding 0x210A only, and trailing zeros only.
        assert!(zeros.admit(KWP, padded).is_err());
        let err = scalar.admit(ZERO_PADDED, padded).unwrap_err().to_string();
        assert!(err.contains("--allow-nonconformant"), "{err}");
        assert!(!err.contains("--allow-zero-padded-kwp"), "{err}");
        assert!(unsupported.admit(KWP, padded).is_err());
        for r in [&zeros, &scalar, &unsupported] {
            assert!(r.admit(KWP, any).is_ok());
        }
        assert!(judged(20, &[]).admit(KWP, none).is_ok());
    }

    #[test]
    fn the_aes_probe_is_what_prove_aes_reads() {
        for len in [16, 24, 32] {
            let c = aes_challenge(&vec![7; len]);
            let parsed = byok_core::challenge::AesChallenge::parse(&c.to_json_bytes()).unwrap();
            assert_eq!(parsed.ciphertext.len(), 32);
            assert_eq!(parsed.alg, format!("A{}GCM", len * 8));
        }
    }
}
