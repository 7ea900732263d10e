//! Disk space on the build's filesystem: `cargo xtask ci` says what it has and what it used,
//! because a run that fills the disk fails deep inside a link with "No space left on device".

use std::path::Path;
use std::process::Command;

/// What a cold `cargo xtask ci` may leave in target/ (tokens, dist trees and SDKs included):
/// measured on a clean clone in December 2026 at 4.0 GB with the dev profile's line tables,
/// against 12 GB with full debug info; this leaves room to grow.
pub const COLD_RUN_BYTES: u64 = 6 << 30;

/// Bytes free to an unprivileged writer on the filesystem holding `path` (`df -Pk`).
pub fn free_bytes(path: &Path) -> Result<u64, String> {
    let out = command_stdout(Command::new("df").arg("-Pk").arg(path))?;
    // POSIX format: a header, then "fs 1024-blocks used available capacity mount".
    let available = out
        .lines()
        .nth(1)
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|kib| kib.parse::<u64>().ok())
        .ok_or_else(|| format!("could not read `df -Pk {}`:\n{out}", path.display()))?;
    Ok(available * 1024)
}

/// Bytes under `path` (`du -sk`).
pub fn used_bytes(path: &Path) -> Result<u64, String> {
    let out = command_stdout(Command::new("du").arg("-sk").arg(path))?;
    let kib = out
        .split_whitespace()
        .next()
        .and_then(|kib| kib.parse::<u64>().ok())
        .ok_or_else(|| format!("could not read `du -sk {}`:\n{out}", path.display()))?;
    Ok(kib * 1024)
}

/// `bytes` in GB with one decimal, for the log.
pub fn gb(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / f64::from(1u32 << 30))
}

fn command_stdout(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("could not run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_and_used_are_read_from_df_and_du() {
        let dir = std::env::temp_dir().join(format!("xtask-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f"), vec![1u8; 3 << 20]).unwrap();
        let used = used_bytes(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        // du counts allocated blocks: at least the 3 MiB written, not wildly more.
        assert!((3 << 20..8 << 20).contains(&used), "{used}");
        assert!(free_bytes(Path::new(".")).unwrap() > 0);
    }

    #[test]
    fn gb_has_one_decimal() {
        assert_eq!(gb(3 << 29), "1.5 GB");
    }
}
