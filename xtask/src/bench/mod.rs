//! `cargo xtask bench`: each half measured against what a user would pick instead, side by side
//! in one run. Figures are printed and written to target/bench/bench.{md,json}; nothing fails on
//! a number. `--scale` ([`scale`]) measures how the per-key cost grows with the token's and the
//! vault's size instead (target/bench/scale.{md,json}).
//!
//! The harness: [`timing`] (a command timed with its peak memory; means and medians of
//! repeated runs), [`results`] (the rows, each a measurement against its baseline, printed and
//! written as tables and JSON), [`work`] (the work directory, its token and the binaries run
//! there), [`fresh`] (old work directories set aside, deleted once measured). The measurements: [`offline`], [`cold`] and [`online`] (this run's rows), with the
//! baselines done in software in [`software`]; [`scale`] and [`check_cost`] for the other two
//! modes, which [`smoke`]'s variables shrink for a smoke run.
//!
//! The children it starts (this binary again) are in [`floor`] (PKCS#11 loops) and [`load`]
//! (the emulator's load generator).

pub mod check_cost;
mod cold;
pub mod floor;
mod fresh;
pub mod load;
mod offline;
mod online;
mod results;
pub mod scale;
mod smoke;
mod software;
mod timing;
mod work;

use crate::util::run_checked;
use byok_tests::{Emulator, Profile};
use std::process::Stdio;
use std::time::Instant;
use work::Bench;

const PIN: &str = "1234";
const TOKEN_LABEL: &str = "bench";

pub fn run() -> Result<(), String> {
    let started = Instant::now();
    crate::tokens::ensure_token(byok_tests::ModuleKind::SoftHsm)?;
    println!("bench: building release binaries");
    let bin = byok_tests::build_bins(Profile::Release)?;
    let out_dir = byok_tests::target_dir().join("bench");
    let _old = fresh::set_aside(&out_dir.join("work"))?;
    let mut b = Bench::new(bin, out_dir.join("work"))?;
    let emulator = Emulator::start(
        &b.bin.join("kv-emulator"),
        &b.state,
        &["--accept-zero-padded-kwp"],
    )?;
    measure_all(&mut b, &emulator)?;
    drop(emulator);
    results::write_results(&b.results, &out_dir, "bench", started.elapsed())
}

/// Every measurement, against the running emulator.
fn measure_all(b: &mut Bench, emulator: &Emulator) -> Result<(), String> {
    run_checked(
        b.online(&[
            "kek",
            "create",
            "--name",
            "KEK",
            "--size",
            "2048",
            "--out",
            "kek.transfer",
        ])
        .stdout(Stdio::null()),
    )?;
    offline::offline_generate(b)?;
    offline::offline_existing(b)?;
    cold::cold_start(b)?;
    cold::cold_package(b)?;
    online::online(b, emulator.id())
}
