//! Diagnostics on stderr: `-v` raises the level of the tool's own crates, `-vvv` of every
//! library too; `RUST_LOG` overrides. Colours only on a terminal, never with `NO_COLOR`.

use std::io::IsTerminal;

/// The crates whose steps `-v` and `-vv` show; the HTTP, TLS and SDK crates stay at warn
/// below `-vvv`, or their debug lines would bury the tool's own.
const OWN_CRATES: [&str; 5] = [
    "byok_core",
    "byok_cli_common",
    "byok_offline",
    "byok_online",
    "kv_emulator",
];

/// The `EnvFilter` directives for `verbose` (the count of `-v`).
pub fn directives(verbose: u8) -> String {
    let own = match verbose {
        0 => return "warn".into(),
        1 => "info",
        2 => "debug",
        3 => return "debug".into(),
        _ => return "trace".into(),
    };
    std::iter::once("warn".to_string())
        .chain(OWN_CRATES.iter().map(|c| format!("{c}={own}")))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether stderr may carry ANSI colours.
pub fn colour_on_stderr() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// Installs the subscriber.
pub fn init(verbose: u8) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(directives(verbose)));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour_on_stderr())
        .with_writer(|| EscapingStderr(std::io::stderr()))
        .init();
}

/// stderr, with the C0 control bytes a log line must not carry (a carriage return that
/// overwrites the line, a bell, a backspace) written as `\xHH`. A line may quote a file or a
/// server; tracing-subscriber already escapes ESC, DEL and C1 in the fields and messages it
/// formats, and the ESC of its own colours must pass, so ESC, newline and tab pass here.
/// Control bytes never occur inside a UTF-8 multi-byte sequence: byte by byte is exact.
struct EscapingStderr(std::io::Stderr);

impl std::io::Write for EscapingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(buf.len());
        for &b in buf {
            if b < 0x20 && !matches!(b, b'\n' | b'\t' | 0x1b) {
                out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
            } else {
                out.push(b);
            }
        }
        self.0.write_all(&out)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_stay_at_warn_below_three() {
        assert_eq!(directives(0), "warn");
        let one = directives(1);
        assert!(
            one.starts_with("warn,") && one.contains("byok_online=info"),
            "{one}"
        );
        assert!(directives(2).contains("kv_emulator=debug"));
        assert_eq!(directives(3), "debug");
    }
}
