//! The connected half's rows: a cold `byok-online import` against a cold `show`, and the
//! emulator's BYOK imports against its GETs under load (from `__load` children), with its peak
//! memory over the whole bench.

use super::load;
use super::software::software_package;
use super::timing::{measured, median};
use super::work::Bench;

/// Cold imports against the emulator, and the emulator's throughput under a bounded load.
pub(super) fn online(b: &mut Bench, emulator_pid: u32) -> Result<(), String> {
    const RUNS: usize = 30;
    println!("\nonline (median of {RUNS} processes; load from a second process, 10 s each):");
    cold_online(b, RUNS)?;
    emulator_load(b)?;
    let status =
        std::fs::read_to_string(format!("/proc/{emulator_pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    b.results
        .mem("kv-emulator (whole bench, incl. the load)", hwm);
    Ok(())
}

/// `runs` cold `byok-online import`s of fresh EC packages, against as many cold `show`s.
fn cold_online(b: &mut Bench, runs: usize) -> Result<(), String> {
    let transfer = b.transfer()?;
    let (mut import, mut show) = (Vec::new(), Vec::new());
    let (mut kb_import, mut kb_show) = (0, 0);
    for i in 0..runs {
        let file = format!("online-{i}.byok");
        software_package(&transfer, &b.dir.join(&file))?;
        let name = format!("cold-{i}");
        let (t, _, kb) = measured(
            &mut b.online(&[
                "import",
                "--name",
                &name,
                "--byok-file",
                &file,
                "--kty",
                "EC",
            ]),
            &b.dir.join("mem.txt"),
        )?;
        import.push(t);
        kb_import = kb_import.max(kb);
        let (t, _, kb) = measured(
            &mut b.online(&["show", "--name", "KEK"]),
            &b.dir.join("mem.txt"),
        )?;
        show.push(t);
        kb_show = kb_show.max(kb);
    }
    b.results.mem("byok-online import (cold)", kb_import);
    b.results.mem("byok-online show (cold)", kb_show);
    b.results.row(
        "byok-online import, cold (process, token, TLS, KEK check, upload)",
        median(&mut import) * 1000.0,
        "ms",
        "byok-online show, cold (process, token, TLS, GET)",
        median(&mut show) * 1000.0,
    );
    Ok(())
}

/// The emulator's throughput: GETs against BYOK imports, each from a `__load` child.
fn emulator_load(b: &mut Bench) -> Result<(), String> {
    let package = b.dir.join("online-0.byok");
    let package = package.to_str().ok_or("non-UTF-8 path")?;
    let secs = "10";
    let connections = load::CONNECTIONS.to_string();
    let common = ["--seconds", secs, "--connections", &connections];
    let get = load::get(&b.state, false, secs)?;
    let pipelined = load::get(&b.state, true, secs)?;
    let imp = load::child(
        &b.state,
        &[&["import", "--package", package], &common[..]].concat(),
    )?;
    println!("  load GET: {get}\n  load GET, pipelined: {pipelined}\n  load import: {imp}");
    b.results.row(
        format!("kv-emulator BYOK imports/s ({connections} connections, {secs} s)"),
        load::rate(&imp),
        "req/s",
        format!("kv-emulator GET key/s ({connections} connections, {secs} s)"),
        load::rate(&get),
    );
    let (c, depth) = load::PIPELINED;
    b.results.row(
        format!("kv-emulator GET key/s, pipelined ({c} connections × {depth} in flight)"),
        load::rate(&pipelined),
        "req/s",
        format!("the same, reqwest ({connections} connections × 1)"),
        load::rate(&get),
    );
    Ok(())
}
