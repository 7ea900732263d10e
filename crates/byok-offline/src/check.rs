//! `byok-offline check`: whether this token wraps each key kind the way Azure reads it, proved
//! on throwaway keys before a ceremony, and the gate `package` and `batch` pass through.
//!
//! Each kind gets two verdicts ([`report`]):
//! - **generated keys**: throwaway targets generated as session objects with the production
//!   templates, wrapped by the production code ([`crate::wrap_path::choose`] and
//!   [`crate::package::wrap_in_token`]) under a throwaway KEK whose private half is held here in
//!   memory, unwrapped and read strictly by byok-core, and compared with the token's own key:
//!   its public key (RSA, EC), or an AES-GCM ciphertext the token must decrypt (AES). For EC
//!   the check goes on until it has seen a key whose scalar's top byte is zero ([`run`]), the
//!   value a generator that drops leading zeros writes short.
//! - **imported keys**: the encoding edge cases ([`edge`]), keys made in software with the
//!   awkward value chosen, imported as session objects, wrapped and judged the same way
//!   ([`edges`]). A defect seen only there is stated as the share of keys that have such a
//!   value. A token that refuses the imports leaves it "untested".
//!
//! No real target is ever unwrapped outside the token: only throwaway keys, destroyed on every
//! path. [`gate`] holds each real key to the verdict for keys like it (`CKA_LOCAL`), and
//! [`reuse`] lets a verdict recorded in the ceremony's log stand in for the gate's own check.

mod aes;
pub mod edge;
mod edges;
pub mod evidence;
mod gate;
mod report;
pub mod reuse;
mod run;

pub use gate::{Held, Obtained, Overrides, Verdicts, admit_one, require};
pub use report::{
    CheckReport, CheckedToken, Generated, Imported, Judged, KindReport, Verdict, throwaway_keys,
};
pub use reuse::{CheckBasis, RecordedChecks, ReusePolicy};
pub use run::{Checker, Sides, default_tries, zero_top_byte_bound};

use crate::error::{OfflineError, Result};
use crate::raw::RawModule;
use crate::token::TokenSession;
use crate::wrap_path::{self, WrapChoice};
use byok_core::target::KeyKind;

/// Checks `kinds` (with `tries` each at least, or each kind's default) on this token, along the
/// path `choice` takes, for both verdicts. A token with no wrap path gets "not supported" for
/// every kind.
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
                .map(|&k| (k, tries.unwrap_or_else(|| default_tries(k)), Sides::BOTH))
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
            let none = |&kind: &KeyKind| KindReport::no_wrap_path(kind, &reason);
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
        throwaway_keys: kinds.iter().map(|k| k.generated.tries).sum(),
        edge_case_imports: kinds.iter().map(|k| k.imported.tried).sum(),
        kinds,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests;
