//! A `kv-emulator` process: started, read until it listens, and stopped on every path.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::Duration;

/// How long the emulator may take to print `listening on https://IP:PORT (vault URL)`.
const STARTUP: Duration = Duration::from_secs(30);

/// The emulator process, killed and waited for on drop.
pub struct Emulator {
    child: Child,
    /// Kept open so the emulator never writes to a closed pipe.
    _stdout: Option<BufReader<ChildStdout>>,
    state: PathBuf,
    /// `https://IP:PORT`, where it listens (and its token endpoint is).
    listen_url: String,
    /// `https://NAME.vault.azure.net:PORT`: the vault URL, resolved to the listen address.
    url: String,
}

impl Emulator {
    /// Starts `exe --state-dir STATE EXTRA...` (stdout read for the URL, stderr discarded).
    pub fn start(exe: &Path, state: &Path, extra: &[&str]) -> Result<Self, String> {
        Self::start_with(exe, state, extra, |_| {})
    }

    /// As [`Emulator::start`], with `tweak` applied to the command before it is spawned (an
    /// environment variable, stderr to a file).
    pub fn start_with(
        exe: &Path,
        state: &Path,
        extra: &[&str],
        tweak: impl FnOnce(&mut Command),
    ) -> Result<Self, String> {
        let mut cmd = Command::new(exe);
        cmd.arg("--state-dir")
            .arg(state)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        tweak(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("could not start kv-emulator ({}): {e}", exe.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        // From here on, Drop stops the process on every error path.
        let mut emulator = Self {
            child,
            _stdout: None,
            state: state.to_path_buf(),
            listen_url: String::new(),
            url: String::new(),
        };
        let (line, stdout) = first_line(stdout)?;
        emulator._stdout = Some(stdout);
        // `listening on https://IP:PORT (vault https://NAME.vault.azure.net:PORT)`
        let parsed = line.strip_prefix("listening on ").and_then(|rest| {
            let (listen, vault) = rest.trim().split_once(" (vault ")?;
            Some((listen.to_string(), vault.strip_suffix(')')?.to_string()))
        });
        match parsed {
            Some((listen, vault)) => {
                emulator.listen_url = listen;
                emulator.url = vault;
                Ok(emulator)
            }
            None => Err(format!("kv-emulator did not start: `{}`", line.trim())),
        }
    }

    /// The vault URL it printed (`https://NAME.vault.azure.net:PORT`), which only resolves
    /// through its state directory's `connection.json` (`vault_address`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where it listens, `https://IP:PORT`.
    pub fn listen_url(&self) -> &str {
        &self.listen_url
    }

    /// Its state directory (the `--emulator` argument of `byok-online`).
    pub fn state(&self) -> &Path {
        &self.state
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGKILL now (a crash, for the tests that want one).
    pub fn kill(&mut self) -> std::io::Result<()> {
        self.child.kill()
    }

    /// Waits for the process to end.
    pub fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the first line within [`STARTUP`], on a thread so a silent process cannot hang us.
fn first_line(stdout: ChildStdout) -> Result<(String, BufReader<ChildStdout>), String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send((line, reader));
    });
    rx.recv_timeout(STARTUP)
        .map_err(|_| format!("kv-emulator did not start within {} s", STARTUP.as_secs()))
}

/// The emulator the tests start next to a SoftHSM token: from the `kv-emulator` in `bin`,
/// accepting SoftHSM's zero-padded KWP, plus `extra`; panics when it does not start.
pub fn emulator(bin: &Path, state: &Path, extra: &[&str]) -> Emulator {
    let mut args = vec!["--accept-zero-padded-kwp"];
    args.extend_from_slice(extra);
    Emulator::start(&bin.join("kv-emulator"), state, &args).unwrap_or_else(|e| panic!("{e}"))
}
