//! The check's engine: throwaway keys generated in the token (the generated-key verdict) and
//! the encoding edge cases imported into it ([`super::edges`], the imported-key verdict), each
//! wrapped by the production code under a [`ThrowawayKek`], unwrapped, read strictly and
//! compared with the token's key.

use super::edge;
use super::report::{Generated, Imported, Judged, KindReport, Verdict, throwaway_keys};
use crate::error::{OfflineError, Result};
use crate::keys::{self, Target};
use crate::package;
use crate::raw::RawModule;
use crate::token::TokenSession;
use crate::wrap_path::{KwpMechanism, WrapPath};
use byok_cli_common::progress::Progress;
use byok_core::conformance::{Defect, Judgement, ThrowawayKek};
use byok_core::target::{Curve, KeyKind, Kty};
use std::fmt;

/// SoftHSM 2.6.1's 0x210A: zero padding to 8 bytes, then RFC 5649.
pub(super) const ZERO_PADDED: WrapPath = WrapPath::TwoStep(KwpMechanism::PadZeroPadded);

/// How many throwaway keys of `kind` the check generates at least unless told otherwise.
/// EC: 20, so a defect on half the keys (a P-521 scalar whose top byte is zero) escapes with
/// probability 2^-20; past them the check goes on until it has seen a zero top byte
/// ([`zero_top_byte_bound`]). RSA generation is slow on many tokens: 4 keys of 2048 bits, 2 of
/// 3072 or 4096. AES: 4.
pub fn default_tries(kind: KeyKind) -> usize {
    match kind {
        KeyKind::Ec { .. } => 20,
        KeyKind::Rsa { bits: 2048 } => 4,
        KeyKind::Rsa { .. } => 2,
        KeyKind::Oct { .. } => 4,
    }
}

/// At most this many keys of `curve` are generated while waiting for one whose scalar's top
/// byte is zero: P-521 (1 in 2) 40, missing one with probability 2^-40; the 256-bit and 384-bit
/// curves (1 in 256) 2,048, missing one with probability (255/256)^2048, about 1 in 3,000. A
/// generator that never makes such a scalar writes every key at full length, which is right.
pub fn zero_top_byte_bound(curve: Curve) -> usize {
    match edge::top_byte_zero_one_in(curve) {
        2 => 40,
        _ => 2048,
    }
}

/// Which of a kind's two verdicts a run needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sides {
    pub generated: bool,
    pub imported: bool,
}

impl Sides {
    pub const BOTH: Sides = Sides {
        generated: true,
        imported: true,
    };
}

/// How one throwaway key went.
pub(super) enum TryOutcome {
    Conformant,
    /// Conformant, with something the check could not prove (e.g. no AES-GCM to compare keys).
    Note(String),
    Defect(Finding),
    Unsupported(String),
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

/// A judged throwaway key: how it went, and whether its EC scalar's top byte is zero (seen at
/// full length, or written short).
pub(super) struct Seen {
    pub outcome: TryOutcome,
    pub zero_top_byte: bool,
}

impl Seen {
    fn plain(outcome: TryOutcome) -> Self {
        Self {
            outcome,
            zero_top_byte: false,
        }
    }
}

/// A defect on one throwaway key.
pub(super) struct Finding {
    pub text: String,
    pub trailing_zeros: bool,
    /// An integer written shorter or longer than its fixed length (an EC scalar without its
    /// leading zeros, an RSA value with a superfluous one): it shows only on keys whose value
    /// has leading zero bytes.
    pub value_dependent: bool,
    /// The edge case it showed on ("a scalar whose top byte is zero (CKA_VALUE of 31
    /// bytes)"), or `None` on a generated key.
    pub edge_case: Option<String>,
    /// 1 key of the kind in `one_in` meets it.
    pub one_in: u32,
}

impl Finding {
    pub(super) fn other(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            trailing_zeros: false,
            value_dependent: false,
            edge_case: None,
            one_in: 1,
        }
    }

    fn of_defect(d: &Defect) -> Self {
        Self {
            trailing_zeros: matches!(d, Defect::TrailingBytes { zeros: true, .. }),
            value_dependent: matches!(d, Defect::ScalarLength { .. } | Defect::NotCanonical { .. }),
            ..Self::other(d.to_string())
        }
    }
}

/// The token and wrap path the checks run on, with the throwaway KEK.
pub struct Checker<'a> {
    pub(super) token: &'a TokenSession,
    pub(super) raw: &'a RawModule,
    pub(super) path: WrapPath,
    kek: ThrowawayKek,
}

impl<'a> Checker<'a> {
    /// A checker for `path` on this token, with a fresh throwaway KEK.
    pub fn new(token: &'a TokenSession, raw: &'a RawModule, path: WrapPath) -> Result<Self> {
        Ok(Self {
            token,
            raw,
            path,
            kek: ThrowawayKek::generate()?,
        })
    }

    /// Checks each kind with its number of tries on the sides asked, reporting each throwaway
    /// key and edge case on `progress`.
    pub fn run(&self, plan: &[(KeyKind, usize, Sides)]) -> Result<Vec<KindReport>> {
        let steps = plan
            .iter()
            .map(|&(k, n, sides)| {
                usize::from(sides.generated) * n + usize::from(sides.imported) * edge::planned(k)
            })
            .sum();
        let progress = Progress::new(steps);
        let reports = plan
            .iter()
            .map(|&(kind, tries, sides)| {
                let generated = if sides.generated {
                    self.generated(kind, tries, &progress)?
                } else {
                    Generated::not_checked()
                };
                let imported = match kind.kty() {
                    Kty::Oct => Imported::none_needed(),
                    _ if sides.imported => self.imported(kind, &progress)?,
                    _ => Imported::not_checked(),
                };
                Ok(KindReport {
                    kind,
                    generated,
                    imported,
                })
            })
            .collect();
        progress.finish();
        reports
    }

    /// At least `tries` throwaway keys of `kind`; for EC, more until one has a scalar whose
    /// top byte is zero (within [`zero_top_byte_bound`]) or a defect shows. The first key the
    /// token cannot make or wrap ends it.
    fn generated(&self, kind: KeyKind, tries: usize, progress: &Progress) -> Result<Generated> {
        let bound = kind
            .curve()
            .map_or(tries, |c| zero_top_byte_bound(c).max(tries));
        let mut findings = Vec::new();
        let mut notes = Vec::new();
        let mut zero_top = 0;
        let mut n = 0;
        while n < tries || (zero_top == 0 && findings.is_empty() && n < bound) {
            n += 1;
            let seen = self.once(kind)?;
            zero_top += usize::from(seen.zero_top_byte);
            if n <= tries {
                progress.step(&format!("{kind} {n}/{tries}: {}", seen.outcome));
            } else if n % 64 == 0 || seen.zero_top_byte {
                progress.note(&format!(
                    "{kind}: {n} throwaway keys, {zero_top} with a zero top byte (looking for \
                     one, at most {bound} keys): {}",
                    seen.outcome
                ));
            }
            match seen.outcome {
                TryOutcome::Conformant => {}
                TryOutcome::Note(note) => notes.push(note),
                TryOutcome::Defect(mut f) => {
                    f.one_in = if f.value_dependent {
                        kind.curve().map_or(1, edge::top_byte_zero_one_in)
                    } else {
                        1
                    };
                    findings.push(f);
                }
                TryOutcome::Unsupported(reason) => {
                    return Ok(Generated {
                        judged: Judged::other(Verdict::NotSupported, reason),
                        tries: n,
                        defective: 0,
                        zero_top_byte: None,
                    });
                }
            }
        }
        let judged = if !findings.is_empty() {
            non_conformant(&findings, n)
        } else if self.path == ZERO_PADDED && kind.kty() == Kty::Rsa {
            padded_by_chance(n)
        } else {
            if kind.curve().is_some() && zero_top == 0 {
                notes.push(format!(
                    "none had a scalar whose top byte is zero, which 1 key in {} has: the \
                     generator seems to avoid such scalars, and writes every key at full length",
                    kind.curve().map_or(1, edge::top_byte_zero_one_in)
                ));
            }
            Judged::ok(distinct(notes.iter().map(String::as_str)))
        };
        Ok(Generated {
            judged,
            tries: n,
            defective: findings.len(),
            zero_top_byte: kind.curve().map(|_| zero_top),
        })
    }

    /// One throwaway key: generated, wrapped as a real one is, judged, destroyed.
    fn once(&self, kind: KeyKind) -> Result<Seen> {
        let throwaway = match keys::generate_throwaway(self.token, kind) {
            Ok(t) => t,
            Err(e) => return unsupported_or(e, "key generation").map(Seen::plain),
        };
        let seen = self.wrapped_and_judged(&throwaway.target, "the token's")?;
        throwaway.destroy()?;
        Ok(seen)
    }

    /// `target` wrapped with the production code under the throwaway KEK, and judged.
    pub(super) fn wrapped_and_judged(&self, target: &Target, whose: &str) -> Result<Seen> {
        let wrapped =
            package::wrap_in_token(self.token, self.raw, self.kek.public(), target, self.path);
        match wrapped {
            Ok(ciphertext) => self.judge(target, &ciphertext, whose),
            Err(OfflineError::BadResult(what)) => {
                Ok(Seen::plain(TryOutcome::Defect(Finding::other(what))))
            }
            Err(e) => unsupported_or(e, "the wrap").map(Seen::plain),
        }
    }

    /// Unwraps with the throwaway KEK, reads strictly, and compares with `target`'s key
    /// (`whose`: "the token's" or "the imported key's").
    fn judge(&self, target: &Target, ciphertext: &[u8], whose: &str) -> Result<Seen> {
        let key = match self.kek.judge(target.kind, ciphertext) {
            Ok(key) => key,
            Err(Judgement::Unwrap(e)) => {
                return Ok(Seen::plain(TryOutcome::Defect(Finding::other(format!(
                    "the wrap does not unwrap: {e}"
                )))));
            }
            Err(Judgement::Defect(d)) => {
                if let Defect::TrailingBytes { zeros: true, .. } = d
                    && !self.padded_key_is_target(target, ciphertext)
                {
                    return Ok(Seen::plain(TryOutcome::Defect(Finding::other(format!(
                        "{d}, and the key in front of them is not {whose}"
                    )))));
                }
                let short =
                    matches!(d, Defect::ScalarLength { len, expected, .. } if len < expected);
                return Ok(Seen {
                    outcome: TryOutcome::Defect(Finding::of_defect(&d)),
                    zero_top_byte: short,
                });
            }
        };
        let zero_top_byte = edge::scalar_top_byte(&key) == Some(0);
        if target.kind.curve().is_some() || matches!(target.kind, KeyKind::Rsa { .. }) {
            let outcome = if key.public_key() == target.public_key.as_ref() {
                TryOutcome::Conformant
            } else {
                TryOutcome::Defect(Finding::other(format!(
                    "the unwrapped key's public key is not {whose}"
                )))
            };
            return Ok(Seen {
                outcome,
                zero_top_byte,
            });
        }
        super::aes::same_aes_key(self.token, target, &key).map(Seen::plain)
    }

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

impl Generated {
    /// Not checked in this run (the gate checks only the verdict the key is held to).
    pub(super) fn not_checked() -> Self {
        Self {
            judged: Judged::other(Verdict::Untested, "not checked in this run".into()),
            tries: 0,
            defective: 0,
            zero_top_byte: None,
        }
    }
}

/// The verdict on defects found: where each showed, how often a key meets the likeliest.
pub(super) fn non_conformant(findings: &[Finding], tries: usize) -> Judged {
    Judged {
        verdict: Verdict::NonConformant,
        detail: where_found(findings, tries),
        one_in: findings.iter().map(|f| f.one_in).min(),
        only_trailing_zeros: findings.iter().all(|f| f.trailing_zeros),
    }
}

/// RSA keys through a zero-padding 0x210A whose throwaway keys all happened to be a multiple
/// of 8 bytes long: an RSA PKCS#8's length varies from key to key (a leading zero byte in each
/// integer or not), so the next key, the real one, may come out padded.
pub(super) fn padded_by_chance(tries: usize) -> Judged {
    Judged {
        verdict: Verdict::NonConformant,
        detail: format!(
            "the token's 0x210A zero-pads to a multiple of 8 bytes and an RSA key's PKCS#8 \
             length varies from key to key: trailing zero bytes after the DER key are likely, \
             though none of these {} needed padding",
            throwaway_keys(tries)
        ),
        one_in: Some(1),
        only_trailing_zeros: true,
    }
}

/// Up to three distinct texts, in the order first seen, joined by "; ".
pub(super) fn distinct<'a>(texts: impl Iterator<Item = &'a str>) -> String {
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
/// requires 66 bytes, in 9 of 20 throwaway keys" or "..., for a scalar whose top byte is zero
/// (CKA_VALUE of 65 bytes)". A defect on several edge cases counts them.
pub(super) fn where_found(findings: &[Finding], tries: usize) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for f in findings {
        if !seen.contains(&f.text.as_str()) {
            seen.push(&f.text);
        }
    }
    let texts: Vec<String> = seen
        .iter()
        .map(|text| {
            let same = || findings.iter().filter(|f| f.text == *text);
            let generated = same().filter(|f| f.edge_case.is_none()).count();
            let edges: Vec<&str> = same().filter_map(|f| f.edge_case.as_deref()).collect();
            let mut places = Vec::new();
            if generated > 0 {
                places.push(format!("in {generated} of {}", throwaway_keys(tries)));
            }
            match edges.as_slice() {
                [] => {}
                [one] => places.push(format!("for {one}")),
                many => places.push(format!("for {} edge cases", many.len())),
            }
            format!("{text}, {}", places.join(" and "))
        })
        .collect();
    distinct(texts.iter().map(String::as_str))
}

/// A failure the token returned (a `CKR_...` from generation or the wrap) makes the kind
/// "not supported"; anything else stops the check.
pub(super) fn unsupported_or(e: OfflineError, step: &str) -> Result<TryOutcome> {
    match e {
        OfflineError::GenerationRefused { rv, .. } => Ok(TryOutcome::Unsupported(format!(
            "{rv}: the token could not generate the key"
        ))),
        OfflineError::Pkcs11 { function, rv, .. } => Ok(TryOutcome::Unsupported(format!(
            "{rv} from {function} in {step}"
        ))),
        OfflineError::PublicKeyUnreadable { source, .. } => Ok(TryOutcome::Defect(Finding::other(
            format!("the token's public key is unreadable: {source}"),
        ))),
        other => Err(other),
    }
}
