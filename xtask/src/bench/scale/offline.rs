//! `--scale`'s offline half: every token at every size ([`Sized`]), the tables built from
//! their figures, and on a token whose `auto` wrap is native `CKM_RSA_AES_KEY_WRAP`, the
//! two-step measured beside it on a fresh token of the same size.

use super::Plan;
use super::sized::{Failed, Figures, Sized};
use crate::bench::floor::FloorWrap;
use crate::bench::results::Results;
use crate::bench::software::{openssl_in, openssl_pipeline};
use crate::bench::timing::median;
use byok_tests::ModuleKind;
use std::path::Path;

const MAIN_HEADER: &str = "| token | keys on it | lookup | wrap | generate + package | on the worker | its floor | ratio | existing key | on the worker | its floor | ratio | fixed cost per batch | peak RSS |\n| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
const WRAP_HEADER: &str = "| token | keys on it | wrap path | lookup | generate + package | its floor | existing key | its floor | fixed cost per batch |\n| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |\n";

/// The tables as they are filled.
#[derive(Default)]
struct Tables {
    main: String,
    wrap: String,
    /// How long each token took to fill, per size.
    filled: Vec<String>,
    /// Tokens whose `auto` took the two-step (no native wrap to compare).
    two_step_only: Vec<&'static str>,
    /// The openssl CLI pipeline's ms per key.
    pipeline: f64,
}

pub(super) fn offline(
    bin: &Path,
    work: &Path,
    kek: &Path,
    plan: &Plan,
    r: &mut Results,
) -> Result<(), String> {
    let pipeline = openssl_ec_pipeline(work, kek)?;
    let (small, large, runs) = (plan.small, plan.large, plan.runs);
    println!(
        "\noffline, per key (ms), marginal over {small}..{large} keys (existing keys and their floors: medians of {runs} runs), --jobs 1:"
    );
    let mut t = Tables {
        pipeline,
        ..Tables::default()
    };
    for &kind in &plan.tokens {
        let run = Run {
            bin,
            work,
            kek,
            kind,
            plan,
        };
        token(&run, r, &mut t);
    }
    let mut text = format!(
        "### byok-offline batch per key, by token and size\n\nEC P-256, `--jobs 1`, `--wrap-mechanism auto`; per key, marginal over {small}..{large} keys (existing keys and their floors: medians of {runs} runs), against the floor making the same calls by the same wrap and look-up; each floor cell gives its runs' range (generate: the two runs after the batches; existing: the runs taken in turn with the tool's); *on the worker* is the median key's own time in the large batch's report (`keys[].seconds`: its PKCS#11 calls and its package made, without the process's fixed cost or the disk; existing: the median over the runs).\n\n{MAIN_HEADER}{}",
        t.main
    );
    text.push_str(&format!(
        "\nThe openssl CLI pipeline (4 commands, software EC P-256 key): {pipeline:.2} ms per key.\n\nFilling the tokens (`__populate`, AES-256 token keys): {}.\n",
        t.filled.join("; ")
    ));
    r.extra.push(text);
    let mut wrap = String::from(
        "### The native CKM_RSA_AES_KEY_WRAP against the two-step, same token\n\nThe tool with `--wrap-mechanism auto` (which takes the native wrap there) and `two-step`, each on a token of its own at the size, each against the floor making that path's calls; per key, marginal.\n\n",
    );
    if t.wrap.is_empty() {
        wrap.push_str("No token measured offers CKM_RSA_AES_KEY_WRAP.\n");
    } else {
        wrap.push_str(WRAP_HEADER);
        wrap.push_str(&t.wrap);
    }
    if !t.two_step_only.is_empty() {
        wrap.push_str(&format!(
            "\nNo CKM_RSA_AES_KEY_WRAP (0x1054) on {}: their rows above are the two-step.\n",
            t.two_step_only.join(", ")
        ));
    }
    r.extra.push(wrap);
    Ok(())
}

/// One token's run through the sizes: where it runs and what it measures.
struct Run<'a> {
    bin: &'a Path,
    work: &'a Path,
    kek: &'a Path,
    kind: ModuleKind,
    plan: &'a Plan,
}

impl Run<'_> {
    /// The token at `size`, told to wrap by `wrap`, on a fresh token of its own.
    fn at(&self, size: usize, wrap: FloorWrap) -> Result<Figures, Failed> {
        let (kind, plan) = (self.kind, self.plan);
        let dir = self
            .work
            .join(format!("{}-{size}-{}", kind.id(), wrap.as_str()));
        Sized::new((self.bin, self.kek), kind, &dir, (size, wrap), plan)?.measure()
    }

    /// One size (`label` in the tables): its main row and, where `auto` took the native wrap,
    /// the two-step measured beside it. Whether `auto` was native.
    fn size(
        &self,
        size: usize,
        label: &str,
        r: &mut Results,
        t: &mut Tables,
    ) -> Result<bool, Failed> {
        let name = self.kind.name();
        let f = self.at(size, FloorWrap::Auto)?;
        t.filled
            .push(format!("{name} to {size} keys in {:.1} s", f.filled));
        main_row(name, label, &f, self.plan.large, r, t);
        if f.wrap != "native" {
            return Ok(false);
        }
        match self.at(size, FloorWrap::TwoStep) {
            Ok(two) => wrap_rows(name, label, &f, &two, r, t),
            Err(e) => t.wrap.push_str(&format!(
                "| {name} | {label} | two-step failed: {} | | | | | | |\n",
                failure(&e)
            )),
        }
        Ok(true)
    }
}

/// One token through the sizes. A size that fails is a row saying why, and the larger sizes
/// rows saying they were not tried; a token that cannot hold a size is measured instead at
/// the most it holds beside the keys the run adds ([`most_held`]), when that is more than the
/// sizes before.
fn token(run: &Run<'_>, r: &mut Results, t: &mut Tables) {
    let name = run.kind.name();
    let (mut failed, mut native, mut done) = (None, false, None);
    for &size in &run.plan.sizes {
        if let Some(at) = failed {
            t.main.push_str(&format!(
                "| {name} | {size} | not tried: the {at}-key size failed | | | | | | | | | | | |\n"
            ));
            continue;
        }
        let e = match run.size(size, &size.to_string(), r, t) {
            Ok(n) => {
                (native, done) = (native || n, Some(size));
                continue;
            }
            Err(e) => e,
        };
        println!("    {name} at {size} keys: {}", failure(&e));
        t.main.push_str(&format!(
            "| {name} | {size} | {} | | | | | | | | | | | |\n",
            failure(&e)
        ));
        failed = Some(size);
        let Failed::Full { made, .. } = e else {
            continue;
        };
        let most = most_held(made, run.plan.large);
        if most > 0 && done.is_none_or(|d| most > d) {
            let label = format!("{most} (the most it holds)");
            match run.size(most, &label, r, t) {
                Ok(n) => (native, done) = (native || n, Some(most)),
                Err(e) => t.main.push_str(&format!(
                    "| {name} | {label} | {} | | | | | | | | | | | |\n",
                    failure(&e)
                )),
            }
        }
    }
    if !native && done.is_some() {
        t.two_step_only.push(name);
    }
}

/// The most keys a token that refused the `made + 1`-th fill key can hold beside the private
/// keys a run adds (the two generate floors' and the batches' key pairs: three times the
/// large batch), rounded down to a hundred from a thousand on.
fn most_held(made: usize, large: usize) -> usize {
    let most = made.saturating_sub(3 * large);
    if most >= 1_000 {
        most / 100 * 100
    } else {
        most
    }
}

/// Why a size was not measured, as one table cell.
fn failure(e: &Failed) -> String {
    match e {
        Failed::Full { made, error } => format!(
            "cannot hold it: filling stopped at {made} keys ({})",
            cell(error)
        ),
        Failed::Other(e) => format!("failed: {}", cell(e)),
    }
}

/// An error as one table cell: its first line, no `|`.
fn cell(e: &str) -> String {
    e.lines()
        .next()
        .unwrap_or_default()
        .replace('|', "/")
        .chars()
        .take(160)
        .collect()
}

/// The size's row of the main table, and its ratio rows.
fn main_row(name: &str, size: &str, f: &Figures, large: usize, r: &mut Results, t: &mut Tables) {
    let (g, e) = (&f.generate, &f.existing);
    t.main.push_str(&format!(
        "| {name} | {size} | {} | {} | {:.2} ms | {:.2} ms | {} | {:.2} | {:.2} ms | {:.2} ms | {} | {:.2} | {:.2} s | {} KiB |\n",
        f.lookup(),
        f.wrap,
        g.tool,
        g.worker,
        g.floor_cell(),
        g.tool / g.floor,
        e.tool,
        e.worker,
        e.floor_cell(),
        e.tool / e.floor,
        f.fixed,
        f.kib
    ));
    let at = format!("{name}, {size} keys on the token");
    let floor = "the module's floor, same calls";
    r.row(
        format!("byok-offline generate + package EC P-256, {at}"),
        g.tool,
        "ms",
        floor,
        g.floor,
    );
    r.row(
        format!("byok-offline existing EC P-256 key, {at}"),
        e.tool,
        "ms",
        floor,
        e.floor,
    );
    r.row(
        format!("byok-offline existing EC P-256 key, {at}"),
        e.tool,
        "ms",
        "openssl CLI pipeline (software key)",
        t.pipeline,
    );
    r.mem(
        &format!("byok-offline batch of {large}, {at}, existing keys"),
        f.kib,
    );
}

/// The native and the two-step rows of the wrap table at one size, and their ratio.
fn wrap_rows(
    name: &str,
    size: &str,
    native: &Figures,
    two: &Figures,
    r: &mut Results,
    t: &mut Tables,
) {
    for (path, f) in [("native", native), ("two-step", two)] {
        t.wrap.push_str(&format!(
            "| {name} | {size} | {path} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} s |\n",
            f.lookup(),
            f.generate.tool,
            f.generate.floor,
            f.existing.tool,
            f.existing.floor,
            f.fixed
        ));
    }
    let (ng, ne, tg, te) = (
        &native.generate,
        &native.existing,
        &two.generate,
        &two.existing,
    );
    t.wrap.push_str(&format!(
        "| {name} | {size} | native / two-step | | {:.2} | {:.2} | {:.2} | {:.2} | |\n",
        ng.tool / tg.tool,
        ng.floor / tg.floor,
        ne.tool / te.tool,
        ne.floor / te.floor
    ));
    let at = format!("{name}, {size} keys on the token");
    for (what, n, s) in [
        ("byok-offline generate + package EC P-256", ng.tool, tg.tool),
        ("floor generate + wrap EC P-256", ng.floor, tg.floor),
        ("byok-offline existing EC P-256 key", ne.tool, te.tool),
        ("floor existing EC P-256 key", ne.floor, te.floor),
    ] {
        r.row(
            format!("{what}, native wrap, {at}"),
            n,
            "ms",
            "the same, two-step wrap",
            s,
        );
    }
}

/// The openssl CLI pipeline on 20 software EC P-256 keys: median ms per key.
fn openssl_ec_pipeline(work: &Path, kek: &Path) -> Result<f64, String> {
    let sw = work.join("software");
    std::fs::create_dir_all(&sw).map_err(|e| e.to_string())?;
    for i in 0..20 {
        openssl_in(
            &sw,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &format!("ec{i}.pem"),
            ],
        )?;
    }
    std::fs::copy(kek, sw.join("kek.pem")).map_err(|e| e.to_string())?;
    let mut times = openssl_pipeline(&sw, "ec", 100)?;
    Ok(median(&mut times) * 1000.0)
}
