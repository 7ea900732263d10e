//! What a bench run found and how it is reported: each row (a measurement against its
//! baseline, and their ratio) printed as it is taken, peak memory, and at the end the tables
//! written to target/bench/STEM.{md,json} with the machine they were measured on.

use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

struct Row {
    what: String,
    value: f64,
    unit: &'static str,
    baseline: String,
    baseline_value: f64,
}

/// What a bench run found: ratio rows, peak memory, and free-form tables and notes.
#[derive(Default)]
pub(super) struct Results {
    rows: Vec<Row>,
    memory: Vec<(String, u64)>,
    /// Markdown written after the rows (scale tables, load details).
    pub(super) extra: Vec<String>,
    /// A line written first (a smoke run's, [`super::smoke::note`]).
    pub(super) note: Option<String>,
}

impl Results {
    pub(super) fn row(
        &mut self,
        what: impl Into<String>,
        value: f64,
        unit: &'static str,
        baseline: impl Into<String>,
        baseline_value: f64,
    ) {
        let row = Row {
            what: what.into(),
            value,
            unit,
            baseline: baseline.into(),
            baseline_value,
        };
        println!(
            "  {:<62} {:>10.3} {unit:<6} vs {:<48} {:>10.3}  ratio {:.2}",
            row.what,
            row.value,
            row.baseline,
            row.baseline_value,
            row.value / row.baseline_value
        );
        self.rows.push(row);
    }

    pub(super) fn mem(&mut self, what: &str, kb: u64) {
        self.memory.push((what.to_string(), kb));
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kb| format!("{:.0} GiB", kb as f64 / 1048576.0))
        .unwrap_or_default();
    let softhsm = Command::new("softhsm2-util")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, {mem} RAM; SoftHSM {softhsm}; release builds")
}

pub(super) fn write_results(
    b: &Results,
    out: &Path,
    stem: &str,
    took: Duration,
) -> Result<(), String> {
    let mut md = String::new();
    md.push_str(&format!(
        "Machine: {}. Bench run took {:.0} s.\n\n",
        machine(),
        took.as_secs_f64()
    ));
    if let Some(note) = &b.note {
        md.push_str(note);
        md.push('\n');
    }
    md.push_str("| measurement | value | baseline | baseline value | ratio |\n| --- | ---: | --- | ---: | ---: |\n");
    for r in &b.rows {
        md.push_str(&format!(
            "| {} | {:.3} {} | {} | {:.3} {} | {:.2} |\n",
            r.what,
            r.value,
            r.unit,
            r.baseline,
            r.baseline_value,
            r.unit,
            r.value / r.baseline_value
        ));
    }
    md.push_str("\n| peak memory (max RSS) | KiB |\n| --- | ---: |\n");
    for (what, kb) in &b.memory {
        md.push_str(&format!("| {what} | {kb} |\n"));
    }
    for extra in &b.extra {
        md.push('\n');
        md.push_str(extra);
    }
    let json = json!({
        "machine": machine(),
        "seconds": took.as_secs_f64(),
        "smoke_run": b.note.is_some(),
        "rows": b.rows.iter().map(|r| json!({"measurement": r.what, "value": r.value, "unit": r.unit, "baseline": r.baseline, "baseline_value": r.baseline_value, "ratio": r.value / r.baseline_value})).collect::<Vec<_>>(),
        "peak_memory_kib": b.memory.iter().map(|(w, k)| json!({"what": w, "kib": k})).collect::<Vec<_>>(),
    });
    std::fs::create_dir_all(out).map_err(|e| e.to_string())?;
    std::fs::write(out.join(format!("{stem}.md")), &md).map_err(|e| e.to_string())?;
    let mut f =
        std::fs::File::create(out.join(format!("{stem}.json"))).map_err(|e| e.to_string())?;
    f.write_all(
        serde_json::to_string_pretty(&json)
            .expect("json")
            .as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    println!(
        "\n{md}\nbench: wrote {} and {stem}.json",
        out.join(format!("{stem}.md")).display()
    );
    Ok(())
}
