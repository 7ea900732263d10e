//! `cargo xtask bench --scale`: how the per-key cost grows with the token and the vault.
//!
//! - byok-offline `batch` of EC P-256 keys on every token the kit has (SoftHSM, kryoptic, NSS
//!   softokn, openCryptoki), at token sizes 0, 1,000 and 5,000 keys ([`sized`]): generate +
//!   package, and packaging keys already on the token, each against the module's floor
//!   (`__floor`: the same PKCS#11 calls in a loop, same token, same size, same run, by the
//!   wrap path the tool takes and the look-up its report names, `index` or `search`) and the
//!   openssl CLI pipeline. The tool's per-key cost is its marginal cost: the wall time of a
//!   batch of [`LARGE`] keys less that of a batch of [`SMALL`] keys on the same token, over
//!   the difference, so process start, module load, login, the self-test and the token index
//!   (once per batch) drop out; they are shown as the fixed cost. Each token's verdict is
//!   recorded once by `check --log` and reused by every batch. A size a token cannot be
//!   measured at (filling it fails, or a batch does) is a row saying why, and its larger
//!   sizes are rows saying they were not tried; a token that cannot hold a size (openCryptoki's
//!   soft token holds 2,048 private objects) is measured at the most it holds instead.
//! - On a token that offers native `CKM_RSA_AES_KEY_WRAP` (openCryptoki), where `auto` takes
//!   it, the same measurements again with `--wrap-mechanism two-step` on a fresh token of the
//!   same size, tool and floor each, and the native / two-step ratios ([`offline`]).
//! - kv-emulator BYOK imports/s and GET/s with 0, 10,000 and 100,000 keys stored, in memory
//!   and persisted (`--persist`), from a `__load` child on the same machine ([`vault`]).
//! - Peak memory of each at the largest size.
//!
//! The sizes, batches and tokens can be shrunk for a smoke run ([`super::smoke`]).

mod offline;
mod sized;
mod vault;

use super::results::{Results, write_results};
use super::smoke;
use crate::util::run_checked;
use byok_tests::{Emulator, ModuleKind, Profile};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Token sizes: keys on the token before the measured batches run, on every token.
const TOKEN_SIZES: [usize; 3] = [0, 1_000, 5_000];
/// Vault sizes: keys stored before the measured loads run.
const VAULT_SIZES: [usize; 3] = [0, 10_000, 100_000];
/// The small and the large batch whose difference gives the per-key cost.
const SMALL: usize = 10;
const LARGE: usize = 210;
/// Runs of each existing-key batch and of its floor (their medians count): at under a
/// millisecond a key, one run's noise (process start, the disk) would hide the difference.
const EXISTING_RUNS: usize = 7;
/// Each load's length.
const LOAD_SECONDS: &str = "5";
const TOKEN_LABEL: &str = "scale";

/// The halves of `--scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Offline,
    Emulator,
}

/// What the offline half runs: the documented constants, or a smoke run's.
struct Plan {
    tokens: Vec<ModuleKind>,
    sizes: Vec<usize>,
    small: usize,
    large: usize,
    runs: usize,
}

impl Plan {
    fn new() -> Result<Self, String> {
        let batch = smoke::numbers("BYOK_BENCH_SCALE_BATCH", &[SMALL, LARGE])?;
        let [small, large] = batch[..] else {
            return Err("BYOK_BENCH_SCALE_BATCH: two numbers, SMALL,LARGE".into());
        };
        if small == 0 || large <= small {
            return Err("BYOK_BENCH_SCALE_BATCH: 0 < SMALL < LARGE".into());
        }
        Ok(Self {
            tokens: smoke::tokens()?,
            sizes: smoke::numbers("BYOK_BENCH_SCALE_SIZES", &TOKEN_SIZES)?,
            small,
            large,
            runs: smoke::runs(EXISTING_RUNS)?,
        })
    }
}

pub fn run(only: Option<Part>) -> Result<(), String> {
    let started = Instant::now();
    let wanted = |part| only.is_none_or(|o| o == part);
    let plan = Plan::new()?;
    if wanted(Part::Offline) {
        for &kind in &plan.tokens {
            crate::tokens::ensure_token(kind)?;
        }
    }
    println!("bench --scale: building release binaries");
    let bin = byok_tests::build_bins(Profile::Release)?;
    let out = byok_tests::target_dir().join("bench");
    let work = out.join("scale-work");
    let _old = super::fresh::set_aside(&work)?;
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let mut r = Results::default();
    r.note = smoke::note();
    if wanted(Part::Offline) {
        let kek = kek_transfer(&bin, &work)?;
        offline::offline(&bin, &work, &kek, &plan, &mut r)?;
    }
    if wanted(Part::Emulator) {
        vault::emulator(&bin, &work, &mut r)?;
    }
    write_results(&r, &out, "scale", started.elapsed())
}

/// An RSA-2048 KEK's transfer file in `work`, from a short-lived emulator.
pub(super) fn kek_transfer(bin: &Path, work: &Path) -> Result<PathBuf, String> {
    let state = work.join("kek-emulator");
    let _emulator = Emulator::start(&bin.join("kv-emulator"), &state, &[])?;
    let path = work.join("kek.transfer");
    create_kek(bin, &state, &path)?;
    Ok(path)
}

/// `byok-online kek create` against the emulator whose state is `state`, run there (its
/// evidence log, ceremony-log.jsonl, goes there too, not into the caller's directory).
fn create_kek(bin: &Path, state: &Path, out: &Path) -> Result<(), String> {
    let mut cmd = Command::new(bin.join("byok-online"));
    cmd.arg("--emulator")
        .arg(state)
        .args(["kek", "create", "--name", "KEK", "--size", "2048", "--out"])
        .arg(out)
        .current_dir(state)
        .stdout(Stdio::null());
    run_checked(&mut cmd)
}
