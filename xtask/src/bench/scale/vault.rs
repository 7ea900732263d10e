//! `--scale`'s second half: kv-emulator BYOK imports/s and GET/s at each vault size, in
//! memory and persisted (`--persist`), from a `__load` child on the same machine, with the
//! emulator's peak memory.

use super::{LOAD_SECONDS, VAULT_SIZES, create_kek};
use crate::bench::load;
use crate::bench::results::Results;
use byok_tests::Emulator;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The emulator at each vault size, in memory and persisted.
pub(super) fn emulator(bin: &Path, work: &Path, r: &mut Results) -> Result<(), String> {
    let (c, depth) = load::PIPELINED;
    println!(
        "\nkv-emulator ({LOAD_SECONDS} s per load; imports and plain GETs: {} connections, one request in flight each; pipelined GETs: {c} connections × {depth}):",
        load::CONNECTIONS
    );
    let mut table = String::from(
        "| store | keys stored | BYOK imports/s | vs empty | GET/s (pipelined) | vs empty | GET/s (reqwest) | vs empty | peak RSS |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let mut empty_imports = Vec::new();
    for persisted in [false, true] {
        let rates = vault(bin, work, persisted, r, &mut table)?;
        empty_imports.push(rates);
    }
    if let [memory, persisted] = empty_imports[..] {
        r.row(
            "kv-emulator BYOK imports/s, persisted, empty store",
            persisted,
            "req/s",
            "the same in memory",
            memory,
        );
    }
    r.extra.push(table);
    Ok(())
}

/// One emulator through the vault sizes; its empty store's imports/s.
fn vault(
    bin: &Path,
    work: &Path,
    persisted: bool,
    r: &mut Results,
    table: &mut String,
) -> Result<f64, String> {
    let mut v = Vault::start(bin, work, persisted)?;
    let store = v.store;
    let mut empty = Rates::default();
    for size in VAULT_SIZES {
        v.fill(size)?;
        let rates = v.rates(size)?;
        if size == 0 {
            empty = rates;
        }
        let kib = peak_kib(v.emulator.id());
        table.push_str(&format!(
            "| {store} | {size} | {:.0} | {:.2} | {:.0} | {:.2} | {:.0} | {:.2} | {kib} KiB |\n",
            rates.imports,
            rates.imports / empty.imports,
            rates.gets,
            rates.gets / empty.gets,
            rates.plain_gets,
            rates.plain_gets / empty.plain_gets
        ));
        if size > 0 {
            for (what, value, base) in [
                ("BYOK imports/s", rates.imports, empty.imports),
                ("GET/s (pipelined)", rates.gets, empty.gets),
                ("GET/s (reqwest)", rates.plain_gets, empty.plain_gets),
            ] {
                r.row(
                    format!("kv-emulator {what}, {store}, {size} keys stored"),
                    value,
                    "req/s",
                    "the same, empty store",
                    base,
                );
            }
        }
    }
    r.mem(
        &format!("kv-emulator, {store}, {} keys stored (whole run)", v.stored),
        peak_kib(v.emulator.id()),
    );
    Ok(empty.imports)
}

/// Requests per second at one vault size.
#[derive(Debug, Clone, Copy, Default)]
struct Rates {
    imports: f64,
    gets: f64,
    plain_gets: f64,
}

/// A running emulator with its KEK, a package made for it, and how many keys it holds.
struct Vault {
    emulator: Emulator,
    state: PathBuf,
    package: String,
    store: &'static str,
    stored: usize,
}

impl Vault {
    fn start(bin: &Path, work: &Path, persisted: bool) -> Result<Self, String> {
        let (store, dir, extra): (_, _, &[&str]) = if persisted {
            ("persisted", "emu-persisted", &["--persist"])
        } else {
            ("in memory", "emu-memory", &[])
        };
        let state = work.join(dir);
        let emulator = Emulator::start(&bin.join("kv-emulator"), &state, extra)?;
        let kek = state.join("kek.transfer");
        create_kek(bin, &state, &kek)?;
        let text = std::fs::read_to_string(&kek).map_err(|e| e.to_string())?;
        let transfer = byok_core::KekTransfer::parse(&text).map_err(|e| e.to_string())?;
        let package = state.join("load.byok");
        crate::bench::software::software_package(&transfer, &package)?;
        Ok(Self {
            emulator,
            package: package.to_str().ok_or("non-UTF-8 path")?.to_string(),
            state,
            store,
            stored: 1, // the KEK
        })
    }

    /// Creates keys until `size` are stored.
    fn fill(&mut self, size: usize) -> Result<(), String> {
        if size <= self.stored {
            return Ok(());
        }
        let t = Instant::now();
        let (count, prefix) = ((size - self.stored).to_string(), format!("fill{size}"));
        let connections = load::CONNECTIONS.to_string();
        let v = load::child(
            &self.state,
            &["create", "--count", &count, "--prefix", &prefix]
                .into_iter()
                .chain(["--connections", &connections])
                .collect::<Vec<_>>(),
        )?;
        self.stored += v["requests"].as_u64().unwrap_or(0) as usize;
        println!(
            "  {}: filled to {} keys in {:.0} s",
            self.store,
            self.stored,
            t.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// GETs (pipelined, then plain) and BYOK imports (each under a new name), one load each.
    fn rates(&mut self, size: usize) -> Result<Rates, String> {
        let get = |pipelined| load::get(&self.state, pipelined, LOAD_SECONDS);
        let (gets, plain) = (get(true)?, get(false)?);
        let (prefix, connections) = (format!("imp{size}"), load::CONNECTIONS.to_string());
        let imp = load::child(
            &self.state,
            &[
                "import",
                "--package",
                &self.package,
                "--prefix",
                &prefix,
                "--seconds",
                LOAD_SECONDS,
                "--connections",
                &connections,
            ],
        )?;
        self.stored += imp["requests"].as_u64().unwrap_or(0) as usize;
        let store = self.store;
        println!(
            "  {store}, {size} keys: imports {imp}\n  {store}, {size} keys: GET {gets}\n  {store}, {size} keys: GET (reqwest) {plain}"
        );
        Ok(Rates {
            imports: load::rate(&imp),
            gets: load::rate(&gets),
            plain_gets: load::rate(&plain),
        })
    }
}

/// A process's peak resident memory (VmHWM), KiB.
fn peak_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}
