//! `--format pdf`: the HTML printed by headless Chromium (Debian's `chromium` package).
//!
//! The page and Chromium's profile go into a new private temporary directory (removed
//! after); Chromium runs in its own process group with no network features, and is stopped
//! with all its processes when it overruns [`CHROMIUM_TIMEOUT`]. The PDF is read back and
//! checked before anything is written under the name asked for.

use super::MinutesError;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The program `--format pdf` runs, looked up on PATH.
pub const CHROMIUM: &str = "chromium";

/// The longest a PDF print may take. A cold start and a long ceremony's pages take seconds.
pub const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(120);

/// How long to wait for Chromium's processes to go once they were stopped.
const REAP_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest PDF read back.
const MAX_PDF_BYTES: u64 = 256 * 1024 * 1024;

/// `html` printed to PDF: the PDF's bytes.
pub fn print(html: &str) -> Result<Vec<u8>, MinutesError> {
    let chromium =
        find_program(CHROMIUM, std::env::var_os("PATH").as_deref()).ok_or_else(|| {
            MinutesError::NoChromium {
                program: CHROMIUM.into(),
            }
        })?;
    print_with(&chromium, html, CHROMIUM_TIMEOUT)
}

/// The first executable file `name` in the directories of `path` (a PATH value).
pub fn find_program(name: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// Prints `html` with the Chromium at `chromium`, stopping it after `timeout`.
pub fn print_with(chromium: &Path, html: &str, timeout: Duration) -> Result<Vec<u8>, MinutesError> {
    let program = chromium.display().to_string();
    let temp = |e: std::io::Error| MinutesError::Temp(e.to_string());
    // Mode 0700: the page and the profile are this user's alone.
    let dir = tempfile::Builder::new()
        .prefix("byok-minutes-")
        .tempdir()
        .map_err(temp)?;
    let page = dir.path().join("minutes.html");
    let profile = dir.path().join("profile");
    let pdf = dir.path().join("minutes.pdf");
    std::fs::write(&page, html).map_err(temp)?;
    std::fs::create_dir(&profile).map_err(temp)?;
    let mut command = Command::new(chromium);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--no-pdf-header-footer",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--print-to-pdf={}", pdf.display()))
        .arg(file_url(&page))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    {
        // Its own process group: a timeout stops the browser and every process it started.
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    let child = command.spawn().map_err(|e| MinutesError::ChromiumStart {
        program: program.clone(),
        reason: e.to_string(),
    })?;
    let group = child.id();
    let output = wait_bounded(child, timeout).map_err(|waited| {
        stop_group(group);
        // The waiting thread ends when the stopped processes' pipes close.
        let _ = waited.recv_timeout(REAP_TIMEOUT);
        MinutesError::ChromiumTimeout {
            program: program.clone(),
            seconds: timeout.as_secs(),
        }
    })?;
    let output = output.map_err(|e| MinutesError::ChromiumStart {
        program: program.clone(),
        reason: e.to_string(),
    })?;
    let failed = |status: String| MinutesError::ChromiumFailed {
        program: program.clone(),
        status,
        stderr: last_words(&output.stderr),
    };
    if !output.status.success() {
        return Err(failed(output.status.to_string()));
    }
    let bytes = match crate::files::read_limited(&pdf, MAX_PDF_BYTES) {
        Ok(bytes) => bytes,
        Err(e) => return Err(failed(format!("it exited 0 but wrote no PDF: {e}"))),
    };
    if !bytes.starts_with(b"%PDF-") {
        return Err(failed(
            "it exited 0 but the file it wrote is not a PDF".into(),
        ));
    }
    Ok(bytes)
}

/// Waits for `child` and its output, at most `timeout`; on a timeout, the channel the output
/// will still arrive on.
fn wait_bounded(
    child: std::process::Child,
    timeout: Duration,
) -> Result<std::io::Result<Output>, mpsc::Receiver<std::io::Result<Output>>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(output) => Ok(output),
        Err(_) => Err(rx),
    }
}

/// Kills the process group `group` (Chromium and the processes it started).
fn stop_group(group: u32) {
    #[cfg(target_os = "linux")]
    if let Some(pid) = i32::try_from(group)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{group}")])
        .status();
}

/// A `file://` URL of an absolute path, every byte outside the unreserved set and `/`
/// percent-encoded.
pub fn file_url(path: &Path) -> String {
    use std::fmt::Write;
    let mut url = String::from("file://");
    for b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(b) {
            url.push(*b as char);
        } else {
            let _ = write!(url, "%{b:02X}");
        }
    }
    url
}

/// The end of Chromium's stderr, for an error message: its last few non-empty lines.
fn last_words(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(4)..];
    if tail.is_empty() {
        "nothing on stderr".into()
    } else {
        super::text::clean(&tail.join(" / "))
    }
}
