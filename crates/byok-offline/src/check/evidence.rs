//! The `token checked` evidence entry: the check's verdicts per kind and the throwaway keys it
//! made, as `check --log`, `package` and `batch` record them and a later run reuses them.

use super::{CheckReport, Judged, KindReport};
use crate::token::{ModuleFile, TokenSession};
use byok_core::evidence::{CheckedKind, Entry, JudgedSide, TokenChecked, TokenRecord};

/// `token checked`: `check`'s verdicts and the throwaway keys it made.
pub fn token_checked(report: &CheckReport, module: &ModuleFile) -> Entry {
    let t = &report.token;
    let token = TokenRecord {
        label: t.label.clone(),
        manufacturer: t.manufacturer.clone(),
        model: t.model.clone(),
        serial: t.serial.clone(),
        firmware: t.firmware.clone(),
        module: Some(module.path().display().to_string()),
        module_sha256: module.sha256().map(String::from),
    };
    token_checked_as(token, &report.wrap_path, &report.kinds)
}

/// `token checked`: the check `package` or `batch` ran before packaging, on `session`'s
/// token along `wrap_path` (only the sides its keys are held to), so that its throwaway keys
/// are on record and a later command can reuse its verdicts.
pub fn gate_checked(session: &TokenSession, wrap_path: &str, kinds: &[KindReport]) -> Entry {
    token_checked_as(session.record(), wrap_path, kinds)
}

fn token_checked_as(token: TokenRecord, wrap_path: &str, kinds: &[KindReport]) -> Entry {
    Entry::TokenChecked(TokenChecked {
        token,
        wrap_path: wrap_path.to_string(),
        kinds: kinds.iter().map(checked_kind).collect(),
        throwaway_keys: kinds.iter().map(|k| k.generated.tries).sum(),
        edge_case_imports: kinds.iter().map(|k| k.imported.tried).sum(),
    })
}

fn checked_kind(k: &KindReport) -> CheckedKind {
    let [generated_detail, imported_detail] = k.lines();
    let side = |judged: &Judged, keys: usize, defective: usize, zero_top_byte| JudgedSide {
        verdict: judged.verdict.to_string(),
        detail: judged.detail.clone(),
        one_in: judged.one_in,
        only_trailing_zeros: judged.only_trailing_zeros(),
        keys,
        defective,
        zero_top_byte,
    };
    let (g, i) = (&k.generated, &k.imported);
    CheckedKind {
        kind: k.kind.to_string(),
        generated: g.judged.verdict.to_string(),
        imported: i.judged.verdict.to_string(),
        generated_detail,
        imported_detail,
        generated_judged: g
            .was_checked()
            .then(|| side(&g.judged, g.tries, g.defective, g.zero_top_byte)),
        imported_judged: i
            .was_checked()
            .then(|| side(&i.judged, i.tried, i.defective, None)),
    }
}
