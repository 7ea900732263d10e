//! Smaller runs of `--scale` and `--check-cost`, to try the bench's own code on a busy machine
//! in minutes (their figures mean nothing). Unset, each variable leaves the documented run:
//!
//! - `BYOK_BENCH_TOKENS=softhsm,opencryptoki`: only these tokens (`softhsm`, `kryoptic`,
//!   `nss`, `opencryptoki`), for `--scale`'s offline half and `--check-cost`;
//! - `BYOK_BENCH_SCALE_SIZES=0,50`: `--scale`'s token sizes (keys put on it first);
//! - `BYOK_BENCH_SCALE_BATCH=2,12`: `--scale`'s small and large batch;
//! - `BYOK_BENCH_RUNS=1`: runs of each repeated measurement (`--scale`'s existing-key
//!   batches, `--check-cost`'s commands).
//!
//! A run with any of them set says so at the top of its tables.

use byok_tests::ModuleKind;

/// The variables, for the note a smoke run's tables carry.
const VARIABLES: [&str; 4] = [
    "BYOK_BENCH_TOKENS",
    "BYOK_BENCH_SCALE_SIZES",
    "BYOK_BENCH_SCALE_BATCH",
    "BYOK_BENCH_RUNS",
];

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The tokens to run: `BYOK_BENCH_TOKENS`, else every token the kit has.
pub(super) fn tokens() -> Result<Vec<ModuleKind>, String> {
    let Some(list) = var("BYOK_BENCH_TOKENS") else {
        return Ok(ModuleKind::ALL.to_vec());
    };
    list.split(',')
        .map(|name| {
            let name = name.trim();
            ModuleKind::ALL
                .into_iter()
                .find(|k| k.id() == name)
                .ok_or_else(|| {
                    format!("BYOK_BENCH_TOKENS: no token `{name}` (softhsm, kryoptic, nss, opencryptoki)")
                })
        })
        .collect()
}

/// The numbers in variable `name` (comma-separated), else `default`.
pub(super) fn numbers(name: &str, default: &[usize]) -> Result<Vec<usize>, String> {
    let Some(list) = var(name) else {
        return Ok(default.to_vec());
    };
    list.split(',')
        .map(|n| {
            n.trim()
                .parse()
                .map_err(|_| format!("{name}: `{n}` is not a number"))
        })
        .collect()
}

/// `BYOK_BENCH_RUNS` (at least 1), else `default`.
pub(super) fn runs(default: usize) -> Result<usize, String> {
    match numbers("BYOK_BENCH_RUNS", &[default])?[..] {
        [n] if n >= 1 => Ok(n),
        _ => Err("BYOK_BENCH_RUNS: one number, at least 1".into()),
    }
}

/// A line for the top of the tables when a smoke variable is set.
pub(super) fn note() -> Option<String> {
    let set: Vec<String> = VARIABLES
        .iter()
        .filter_map(|name| Some(format!("{name}={}", var(name)?)))
        .collect();
    (!set.is_empty()).then(|| {
        format!(
            "**Smoke run** ({}): sizes and runs shrunk to try the code; these figures are not \
             measurements.\n",
            set.join(" ")
        )
    })
}
