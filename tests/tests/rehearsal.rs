//! The README's "Rehearse with the binaries" section, run as written: its ```sh blocks, joined,
//! under `bash -euo pipefail` in a fresh directory with the three debug binaries first on PATH,
//! a free PORT and the PINs it reads. Nothing in it is skipped, so a README command that no
//! longer works fails this test; and the text itself must stop the emulator it starts.

use byok_tests::{ModuleKind, bins, workspace};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HEADING: &str = "## Rehearse with the binaries";
/// The rehearsal takes about 20 s with debug binaries; past this it is stuck.
const TIME_LIMIT: Duration = Duration::from_secs(120);

/// The ```sh blocks between `heading` and the next `## ` heading, joined in order.
fn script(readme: &str, heading: &str) -> Result<String, String> {
    let mut lines = readme.lines().skip_while(|l| l.trim_end() != heading);
    if lines.next().is_none() {
        return Err(format!("README.md has no `{heading}` section: put it back"));
    }
    let (mut script, mut blocks, mut open) = (String::new(), 0, false);
    for line in lines.take_while(|l| !l.starts_with("## ")) {
        match (open, line.trim_end()) {
            (false, "```sh") => (open, blocks) = (true, blocks + 1),
            (true, "```") => open = false,
            (true, _) => {
                script.push_str(line);
                script.push('\n');
            }
            _ => {}
        }
    }
    match (blocks, open) {
        (0, _) => Err(format!("`{heading}` holds no ```sh block to run")),
        (_, true) => Err(format!("a ```sh block under `{heading}` is not closed")),
        _ => Ok(script),
    }
}

#[test]
fn only_the_sections_sh_blocks_are_taken() {
    let readme = "# t\n```sh\nnot this\n```\n## Rehearse with the binaries\ntext\n```sh\n\
                  a\n```\n```toml\nno\n```\n### sub\n```sh\nb\n```\n## Next\n```sh\nc\n```\n";
    assert_eq!(script(readme, HEADING).unwrap(), "a\nb\n");
    assert!(
        script("# t\n", HEADING)
            .unwrap_err()
            .contains("no `## Rehearse")
    );
    let empty = "## Rehearse with the binaries\ntext\n## Next\n";
    assert!(
        script(empty, HEADING)
            .unwrap_err()
            .contains("no ```sh block")
    );
    let open = "## Rehearse with the binaries\n```sh\na\n";
    assert!(script(open, HEADING).unwrap_err().contains("not closed"));
}

/// A port nobody listens on now (the kernel's pick, released).
fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

/// The script's process group, killed (with any emulator the script left behind) on drop.
struct Group(Child);

impl Group {
    /// Whether any process of the group is still alive.
    fn alive(&self) -> bool {
        signal_group(self.0.id(), "-0")
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        signal_group(self.0.id(), "-KILL");
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `kill SIGNAL -- -PGID`: whether a process of the group took the signal.
fn signal_group(pgid: u32, signal: &str) -> bool {
    Command::new("kill")
        .args([signal, "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts `bash -euo pipefail rehearsal.sh` in `dir`, in a process group of its own.
fn start(dir: &Path, script: &str, bin: &Path, port: u16) -> Group {
    use std::os::unix::process::CommandExt;
    std::fs::write(dir.join("rehearsal.sh"), script).unwrap();
    let path = std::env::join_paths(std::iter::once(bin.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let module = ModuleKind::SoftHsm
        .present_module()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "rehearsal.sh"])
        .current_dir(dir)
        .env("PATH", path)
        .env("PORT", port.to_string())
        .env("BYOK_PKCS11_PIN", "rehearsal-pin")
        .env("SO_PIN", "rehearsal-so-pin")
        .env("SOFTHSM_MODULE", module)
        // `mktemp -d` in the text lands here, and goes with this test's directory.
        .env("TMPDIR", dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("stdout")).unwrap())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .process_group(0);
    // The operator's own settings must not steer the rehearsal elsewhere.
    for var in [
        "PKCS11_MODULE",
        "PKCS11_INIT_ARGS",
        "SOFTHSM2_CONF",
        "AZURE_KEYVAULT_NAME",
        "AZURE_MANAGEDHSM_NAME",
        "BYOK_VAULT_URL",
        "AZURE_AUTHORITY_HOST",
    ] {
        cmd.env_remove(var);
    }
    Group(cmd.spawn().expect("bash runs"))
}

#[test]
fn the_readme_rehearsal_runs_as_written() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let script = script(&readme, HEADING).unwrap_or_else(|e| panic!("{e}"));
    let bin = bins();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let started = Instant::now();
    let mut group = start(dir.path(), &script, &bin, port);
    let status = loop {
        if let Some(status) = group.0.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > TIME_LIMIT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let elapsed = started.elapsed();
    // The text's own `kill`, not ours, must have stopped the emulator.
    let left_running = status.is_some() && group.alive();
    drop(group);
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    let (stdout, stderr) = (read("stdout"), read("stderr"));
    let context = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    let Some(status) = status else {
        panic!("the rehearsal did not end within {TIME_LIMIT:?}\n{context}");
    };
    assert!(
        status.success(),
        "the rehearsal failed ({status})\n{context}"
    );
    assert!(
        !left_running,
        "the rehearsal left kv-emulator running\n{context}"
    );
    for want in [
        format!("listening on https://127.0.0.1:{port}"),
        "KeyTransferPackage-rehearsal-rsa.byok".to_string(),
        "matches".to_string(),
        "verified".to_string(),
        "rehearsal-batch-ec".to_string(),
        "rehearsal-batch-rsa".to_string(),
        "intact".to_string(),
    ] {
        assert!(
            stdout.contains(&want),
            "{want:?} not in the output\n{context}"
        );
    }
    println!("the README rehearsal took {:.1} s", elapsed.as_secs_f64());
}
