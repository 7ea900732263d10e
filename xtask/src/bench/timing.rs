//! How a measurement is taken: a command timed (wall seconds) with its peak memory, and the
//! mean and median of repeated runs.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

pub(super) fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

pub(super) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Runs a command under /usr/bin/time; returns wall seconds, stdout and peak RSS in KiB.
pub(super) fn measured(cmd: &mut Command, mem_file: &Path) -> Result<(f64, String, u64), String> {
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let envs: Vec<_> = cmd
        .get_envs()
        .map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned())))
        .collect();
    let cwd = cmd.get_current_dir().map(Path::to_path_buf);
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(mem_file)
        .arg(&program)
        .args(&args);
    for (k, v) in envs {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    if let Some(d) = cwd {
        timed.current_dir(d);
    }
    let t = Instant::now();
    let out = timed
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program:?}: {e}"))?;
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!(
            "{program:?} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let kb = std::fs::read_to_string(mem_file)
        .ok()
        .and_then(|s| s.trim().lines().last()?.trim().parse().ok())
        .unwrap_or(0);
    Ok((secs, String::from_utf8_lossy(&out.stdout).into_owned(), kb))
}
