//! A verdict recorded in the ceremony's evidence log standing in for the check `package` and
//! `batch` would otherwise run before packaging: a ceremony checks its token once.
//!
//! A `token checked` entry is reused for a kind only when everything its verdict rests on is
//! the same now:
//! - the token as it reports itself: manufacturer, model, serial and firmware;
//! - the module file's SHA-256 (the same bytes moved elsewhere are the same code; a rebuilt,
//!   patched or upgraded library is not);
//! - the wrap path `package` takes now, and the kind;
//! - the sides the keys are held to (generated or imported keys) were judged, the generated
//!   side on at least as many throwaway keys as the gate's own check makes;
//! - the entry is at most `--check-max-age` old (default [`DEFAULT_MAX_AGE`]) and not dated in
//!   the future.
//!
//! Why an age bound when token and module match: what a token does also rests on what no
//! entry identifies, its configuration (a Luna partition's policy, nShield's `cknfastrc` and
//! its security-assurance overrides, a YubiHSM connector's settings) and any maintenance
//! between sittings. Eight hours covers one sitting, so a ceremony checks once, and one
//! continued the next day checks again.
//!
//! The log's chain is verified before any entry of it is used; the newest entry that matches
//! wins. A verified chain shows the log is whole, not who wrote it: whoever can rewrite the log
//! can add a matching entry and skip the check (docs/security.md, "Hostile inputs", states what
//! that gains and what `--recheck` is for). A token whose serial is the same for every token of
//! its kind (NSS softokn reports zeros) is told apart only by its module's SHA-256.

use super::report::{Generated, Imported, Judged, KindReport, Verdict};
use super::run::{Sides, default_tries};
use crate::error::Result;
use crate::wrap_path::WrapPath;
use byok_cli_common::evidence::EvidenceError;
use byok_cli_common::files;
use byok_core::evidence::{
    self, CheckEntryRef, Entry, JudgedSide, Logged, TokenChecked, TokenRecord,
};
use byok_core::target::KeyKind;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// How old a recorded verdict may be: one sitting (see the module's text).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(8 * 3600);

/// The most of an evidence log read for its checks: about a million entries.
const MAX_LOG_BYTES: u64 = 1024 * 1024 * 1024;

/// `--check-max-age` and `--recheck`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReusePolicy {
    pub max_age: Duration,
    /// Check again whatever the log holds.
    pub recheck: bool,
}

impl Default for ReusePolicy {
    fn default() -> Self {
        Self {
            max_age: DEFAULT_MAX_AGE,
            recheck: false,
        }
    }
}

/// `--check-max-age` and `--recheck`, as `package` and `batch` take them.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ReuseArgs {
    /// Reuse a verdict the ceremony's log recorded (by `check --log`, or an earlier package)
    /// for this token (serial, model, firmware, module file's SHA-256), wrap path and kind
    /// only when it is at most this old: 8h, 30m, 1h30m.
    #[arg(long, value_name = "DURATION", default_value = "8h", value_parser = parse_duration)]
    check_max_age: Duration,
    /// Check the token on throwaway keys again, whatever verdict the log records.
    #[arg(long)]
    recheck: bool,
}

impl From<ReuseArgs> for ReusePolicy {
    fn from(a: ReuseArgs) -> Self {
        Self {
            max_age: a.check_max_age,
            recheck: a.recheck,
        }
    }
}

/// One `token checked` entry of a log whose chain verifies, and where it sits.
struct RecordedCheck {
    place: CheckEntryRef,
    checked: TokenChecked,
}

/// The `token checked` entries of the ceremony's log, oldest first.
pub struct RecordedChecks {
    log: PathBuf,
    checks: Vec<RecordedCheck>,
}

impl RecordedChecks {
    /// Reads the log at `path` (none yet: no checks), verifying its chain first.
    pub fn read(path: &Path) -> Result<Self> {
        // The log is appended to later: never through a symbolic link (files.rs).
        files::refuse_symlinks(&[path])?;
        let absent = matches!(
            std::fs::symlink_metadata(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound
        );
        let bytes = if absent {
            Vec::new()
        } else {
            files::read_limited(path, MAX_LOG_BYTES)?
        };
        let chain = evidence::read_chain(&bytes).map_err(|source| EvidenceError::Chain {
            path: path.into(),
            source,
        })?;
        let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
        let mut checks = Vec::new();
        for (n, (line, sha256)) in chain.links.iter().enumerate() {
            let text = String::from_utf8_lossy(lines[line - 1]);
            let Some(logged) = Logged::of_line(text.trim_end_matches('\r')) else {
                continue;
            };
            if let Entry::TokenChecked(checked) = logged.entry {
                let place = CheckEntryRef {
                    entry: n + 1,
                    time: logged.envelope.time,
                    sha256: sha256.clone(),
                    reused: true,
                };
                checks.push(RecordedCheck { place, checked });
            }
        }
        Ok(Self {
            log: path.into(),
            checks,
        })
    }

    /// The newest `token checked` entry, as a command that just appended it cites it.
    pub fn newest(&self) -> Option<CheckEntryRef> {
        self.checks.last().map(|c| CheckEntryRef {
            reused: false,
            ..c.place.clone()
        })
    }

    /// The newest entry whose verdict on `kind` stands for `token` along `path` for the
    /// `sides` a key is held to, as the report the gate reads; else why none does.
    pub fn find(
        &self,
        token: &TokenRecord,
        path: WrapPath,
        (kind, sides): (KeyKind, Sides),
        policy: ReusePolicy,
    ) -> std::result::Result<(CheckEntryRef, KindReport), String> {
        if policy.recheck {
            return Err("--recheck asks for a new check".into());
        }
        let now = OffsetDateTime::now_utc();
        let mut why_not = None;
        for c in self.checks.iter().rev() {
            match c.stands_for(token, path, (kind, sides), policy.max_age, now) {
                Ok(report) => return Ok((c.place.clone(), report)),
                Err(why) => {
                    why_not.get_or_insert_with(|| {
                        format!("entry {} ({}) {why}", c.place.entry, c.place.time)
                    });
                }
            }
        }
        let why = why_not.unwrap_or_else(|| format!("{} records no check", self.log.display()));
        Err(format!("no recorded verdict for this token: {why}"))
    }
}

impl RecordedCheck {
    /// The kind's report from this entry, or what differs.
    fn stands_for(
        &self,
        token: &TokenRecord,
        path: WrapPath,
        (kind, sides): (KeyKind, Sides),
        max_age: Duration,
        now: OffsetDateTime,
    ) -> std::result::Result<KindReport, String> {
        same_token(&self.checked.token, token)?;
        if self.checked.wrap_path != path.to_string() {
            return Err(format!(
                "checked another wrap path ({})",
                self.checked.wrap_path
            ));
        }
        let age = age(&self.place.time, now)?;
        if age > max_age {
            return Err(format!(
                "is {} old, older than --check-max-age {}",
                human_duration(age),
                human_duration(max_age)
            ));
        }
        let name = kind.to_string();
        let recorded = self
            .checked
            .kinds
            .iter()
            .find(|k| k.kind == name)
            .ok_or_else(|| format!("did not check {kind}"))?;
        if recorded.generated_judged.is_none() && recorded.imported_judged.is_none() {
            return Err(
                "was written by a version that did not record verdicts for later use".into(),
            );
        }
        let generated = match (&recorded.generated_judged, sides.generated) {
            (Some(side), _) if side.keys < default_tries(kind) && sides.generated => {
                return Err(format!(
                    "judged {kind} on {} generated keys, fewer than the {} package checks",
                    side.keys,
                    default_tries(kind)
                ));
            }
            (Some(side), _) => generated(side)?,
            (None, false) => Generated::not_checked(),
            (None, true) => return Err(format!("did not judge generated {kind} keys")),
        };
        let imported = match (&recorded.imported_judged, sides.imported) {
            (Some(side), _) => imported(side)?,
            (None, false) => Imported::not_checked(),
            (None, true) => return Err(format!("did not judge imported {kind} keys")),
        };
        Ok(KindReport {
            kind,
            generated,
            imported,
        })
    }
}

/// Whether the token and module an entry records are this session's: what the token says of
/// itself, and the module file's bytes.
fn same_token(t: &TokenRecord, token: &TokenRecord) -> std::result::Result<(), String> {
    for (what, then, now) in [
        ("manufacturer", &t.manufacturer, &token.manufacturer),
        ("model", &t.model, &token.model),
        ("serial", &t.serial, &token.serial),
        ("firmware", &t.firmware, &token.firmware),
    ] {
        if then != now {
            return Err(format!(
                "is for another token {what} ({then}; this token's is {now})"
            ));
        }
    }
    match (&t.module_sha256, &token.module_sha256) {
        (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => {}
        (Some(a), Some(b)) => {
            return Err(format!(
                "is for another module file (SHA-256 {}…; this module's is {}…)",
                short(a),
                short(b)
            ));
        }
        (None, _) => return Err("does not record the module file's SHA-256".into()),
        (_, None) => return Err("cannot be matched: this module file could not be read".into()),
    }
    Ok(())
}

/// How long ago `time` (RFC 3339) was; an entry dated after `now` is not trusted (the clock
/// was set back, or the entry is not what it says).
fn age(time: &str, now: OffsetDateTime) -> std::result::Result<Duration, String> {
    let at = OffsetDateTime::parse(time, &Rfc3339)
        .map_err(|_| format!("has a time that is not RFC 3339 ({time})"))?;
    Duration::try_from(now - at).map_err(|_| {
        "is dated in the future: this machine's clock was set back since, or the entry is \
         not what it says"
            .to_string()
    })
}

fn judged(side: &JudgedSide) -> std::result::Result<Judged, String> {
    let verdict: Verdict = side.verdict.parse()?;
    Ok(Judged {
        verdict,
        detail: side.detail.clone(),
        one_in: side.one_in,
        only_trailing_zeros: side.only_trailing_zeros,
    })
}

fn generated(side: &JudgedSide) -> std::result::Result<Generated, String> {
    Ok(Generated {
        judged: judged(side)?,
        tries: side.keys,
        defective: side.defective,
        zero_top_byte: side.zero_top_byte,
    })
}

fn imported(side: &JudgedSide) -> std::result::Result<Imported, String> {
    Ok(Imported {
        judged: judged(side)?,
        tried: side.keys,
        defective: side.defective,
        untested: 0,
        untested_reason: None,
    })
}

/// The first 12 hex digits of a SHA-256, as the output cites entries.
pub fn short(sha256: &str) -> &str {
    sha256.get(..12).unwrap_or(sha256)
}

/// What one kind's verdict in a run rests on: the `token checked` entry, reused or made by
/// this run's own check (and then why no recorded one stood for it).
#[derive(Debug, Clone, Serialize)]
pub struct CheckBasis {
    /// `RSA 3072`, `EC P-256`.
    #[serde(serialize_with = "byok_cli_common::output::as_display")]
    pub kind: KeyKind,
    /// The entry relied on (`reused`: an earlier command recorded it).
    pub entry: CheckEntryRef,
    /// Why this run checked the token itself; absent when it reused the entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why_checked: Option<String>,
    /// Throwaway keys this run generated and destroyed for the kind (0 when reused).
    pub throwaway_keys: usize,
}

impl std::fmt::Display for CheckBasis {
    /// `entry 3 (2026-12-07T17:40:01Z, sha256 1a2b3c4d5e6f…), reused: no throwaway key made`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = &self.entry;
        let place = format!(
            "entry {} ({}, sha256 {}…)",
            e.entry,
            e.time,
            short(&e.sha256)
        );
        match &self.why_checked {
            None => write!(f, "{place}, reused: no throwaway key made"),
            Some(why) => write!(
                f,
                "checked now ({}; {why}), recorded as {place}",
                super::throwaway_keys(self.throwaway_keys)
            ),
        }
    }
}

/// Reads `--check-max-age`: a number and a unit, `8h`, `30m`, `90s`, `1d`, or several
/// (`1h30m`).
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let bad = || {
        format!(
            "`{text}` is not a duration: give a number and a unit, s, m, h or d (8h, 30m, 1h30m)"
        )
    };
    let mut total = 0u64;
    let mut digits = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() || text.trim().is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// `8h`, `9h12m`, `45s`: a duration as `--check-max-age` takes it.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (sec, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_and_print_as_the_flag_takes_them() {
        assert_eq!(parse_duration("8h"), Ok(Duration::from_secs(8 * 3600)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        for bad in ["", "8", "h", "8 hours", "-1h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(human_duration(DEFAULT_MAX_AGE), "8h");
        assert_eq!(human_duration(Duration::from_secs(9 * 3600 + 720)), "9h12m");
        assert_eq!(human_duration(Duration::from_secs(0)), "0s");
    }

    #[test]
    fn an_entry_dated_ahead_or_unreadable_has_no_age() {
        let now = OffsetDateTime::parse("2026-12-07T12:00:00Z", &Rfc3339).unwrap();
        assert_eq!(
            age("2026-12-07T10:00:00Z", now),
            Ok(Duration::from_secs(7200))
        );
        assert!(
            age("2026-12-07T12:00:01Z", now)
                .unwrap_err()
                .contains("future")
        );
        assert!(age("yesterday", now).unwrap_err().contains("RFC 3339"));
    }
}
