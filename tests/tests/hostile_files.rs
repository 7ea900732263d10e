//! Files and processes as an attacker prepares them: whoever fills the removable media (or the
//! package directory) chooses symbolic links, devices and FIFOs for names the binaries read and
//! write, and whoever can read a crashed process's core file or `/proc` looks for the PIN.
//! One test per attack, through the real binaries on a real SoftHSM token; each fails on the
//! binaries built before the defence (`BYOK_TEST_BIN_DIR` names them).
//!
//! Prerequisites (each test fails with the install command when one is missing): Debian's
//! `softhsm2`, `strace` (a SIGKILL injected at one exact `renameat2`) and util-linux's `script`
//! (a terminal for the PIN prompt the process waits at).

use byok_core::{KekTransfer, KeyId};
use byok_tests::{PIN_ENV, TestToken, bins, emulator, kek_pair};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const PIN: &str = "hostile-Pin-58213";
const KID: &str =
    "https://contoso.vault.azure.net/keys/KEKforBYOK/0123456789abcdef0123456789abcdef";
/// How long a run that should refuse at once may take before it is taken for a hang.
const DEADLINE: Duration = Duration::from_secs(60);
/// The address space a run reading a special file gets: enough for the binary, far less
/// than the machine, so a read without a bound fails fast instead of exhausting memory.
const MEMORY_LIMIT_KIB: u64 = 2 * 1024 * 1024;

fn offline() -> PathBuf {
    bins().join("byok-offline")
}

fn online() -> PathBuf {
    bins().join("byok-online")
}

/// A fresh SoftHSM token with a KEK transfer file in its directory.
fn token() -> TestToken {
    let token = TestToken::softhsm("hostile", PIN);
    let (_, kek) = kek_pair(2048);
    let transfer = KekTransfer::new(KeyId::parse(KID).unwrap(), kek).unwrap();
    std::fs::write(token.path("kek.transfer"), transfer.to_text()).unwrap();
    token
}

/// Runs `byok-offline` on the token with the PIN in its variable, waiting at most
/// [`DEADLINE`].
fn run(token: &TestToken, args: &[&str]) -> Output {
    let mut cmd = token.command_with_pin(offline());
    cmd.args(args);
    bounded(cmd, &format!("byok-offline {args:?}"))
}

/// Runs `cmd` with its output captured, failing the test if it has not exited by
/// [`DEADLINE`] (it is then killed): a hang is a failure, not a stuck suite.
fn bounded(mut cmd: Command, what: &str) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    // Read both pipes on threads so a chatty child never blocks on a full one.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} was still running after {DEADLINE:?}: it hangs (killed)");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the run failed with a message containing `expect`.
fn refused(out: &Output, expect: &str) {
    let err = stderr(out);
    assert!(
        !out.status.success() && err.contains(expect),
        "expected a refusal naming `{expect}`, got {:?}:\n{err}",
        out.status
    );
}

/// Refused for a symbolic link, with no key generated on `token` first.
fn refused_before_any_key(token: &TestToken, out: &Output) {
    assert_eq!(
        token_keys(token),
        Vec::<String>::new(),
        "a key was generated"
    );
    refused(out, "is a symbolic link");
}

/// The labels of the private and secret keys on the token.
fn token_keys(token: &TestToken) -> Vec<String> {
    let out = run(token, &["--output", "json", "keys"]);
    assert!(out.status.success(), "keys: {}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["class"] == "CKO_PRIVATE_KEY" || k["class"] == "CKO_SECRET_KEY")
        .map(|k| k["label"].as_str().unwrap().to_string())
        .collect()
}

fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

/// A manifest of one AES-128 key `k` (no public key file: the package and its sidecar are
/// the only files of the key).
const ONE_AES_KEY: &str = "[[key]]\nname = \"k\"\nkty = \"oct\"\nsize = 128\n";

fn batch_args(dir: &str) -> Vec<&str> {
    vec![
        "batch",
        "--manifest",
        "keys.toml",
        "--kek",
        "kek.transfer",
        "--dir",
        dir,
        "--allow-zero-padded-kwp",
    ]
}

#[test]
fn a_dangling_symlink_as_the_batch_evidence_log_creates_no_file() {
    let token = token();
    std::fs::write(token.path("keys.toml"), ONE_AES_KEY).unwrap();
    std::fs::create_dir(token.path("packages")).unwrap();
    let victim = token.path("victim-created-by-the-log");
    symlink(&victim, &token.path("packages/ceremony-log.jsonl"));
    let out = run(&token, &batch_args("packages"));
    assert!(!victim.exists(), "the log's link target was created");
    refused_before_any_key(&token, &out);
}

#[test]
fn a_symlink_to_a_file_as_the_evidence_log_gets_nothing_appended() {
    let token = token();
    let victim = token.path("victim.txt");
    std::fs::write(&victim, "").unwrap();
    symlink(&victim, &token.path("link.jsonl"));
    let out = run(
        &token,
        &[
            "generate",
            "--kty",
            "EC",
            "--curve",
            "P-256",
            "--label",
            "g",
            "--log",
            "link.jsonl",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "",
        "lines were appended"
    );
    refused_before_any_key(&token, &out);
}

#[test]
fn a_dangling_symlink_as_the_online_evidence_log_creates_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("emulator");
    let _emu = emulator(&bins(), &state, &[]);
    let victim = dir.path().join("victim-created-by-the-log");
    symlink(&victim, &dir.path().join("ceremony-log.jsonl"));
    let mut cmd = Command::new(online());
    cmd.current_dir(dir.path())
        .arg("--emulator")
        .arg(&state)
        .args(["kek", "create", "--name", "K", "--size", "2048"]);
    let out = bounded(cmd, "byok-online kek create");
    assert!(!victim.exists(), "the log's link target was created");
    // Then the message, naming the link.
    refused(&out, "is a symbolic link");
}

#[test]
fn a_dangling_symlink_at_the_public_key_name_is_refused_before_generating() {
    let token = token();
    let victim = token.path("victim.pem");
    symlink(&victim, &token.path("g.public.pem"));
    let out = run(
        &token,
        &[
            "generate", "--kty", "EC", "--curve", "P-256", "--label", "g",
        ],
    );
    assert!(!victim.exists(), "the PEM was written through the link");
    refused_before_any_key(&token, &out);
}

#[test]
fn a_dangling_symlink_at_the_package_name_is_refused_before_generating() {
    let token = token();
    let victim = token.path("victim.byok");
    symlink(&victim, &token.path("KeyTransferPackage-p.byok"));
    let out = run(
        &token,
        &[
            "package",
            "--kek",
            "kek.transfer",
            "--generate",
            "--kty",
            "oct",
            "--size",
            "128",
            "--label",
            "p",
        ],
    );
    assert!(!victim.exists(), "the package was written through the link");
    refused_before_any_key(&token, &out);
}

#[test]
fn a_dangling_symlink_in_a_batch_directory_is_refused_before_generating() {
    let token = token();
    std::fs::write(token.path("keys.toml"), ONE_AES_KEY).unwrap();
    std::fs::create_dir(token.path("packages")).unwrap();
    let victim = token.path("victim.json");
    symlink(
        &victim,
        &token.path("packages/KeyTransferPackage-k.byok.sidecar.json"),
    );
    let out = run(&token, &batch_args("packages"));
    assert!(!victim.exists(), "the sidecar was written through the link");
    refused_before_any_key(&token, &out);
}

/// `sh -c 'ulimit -v …; exec program args'`: a read without a bound then fails fast.
fn memory_limited(program: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "ulimit -v {MEMORY_LIMIT_KIB} && exec \"$0\" \"$@\""
        ))
        .arg(program)
        .args(args)
        .stdin(Stdio::null());
    cmd
}

#[test]
fn dev_zero_as_any_input_is_refused_not_read_until_memory_runs_out() {
    let token = token();
    let dir = token.dir().to_path_buf();
    std::fs::write(token.path("keys.toml"), ONE_AES_KEY).unwrap();
    let offline_cases: [&[&str]; 4] = [
        &["inspect", "/dev/zero"],
        &["log", "verify", "/dev/zero"],
        &["package", "--kek", "/dev/zero", "--label", "x"],
        &["--pin-file", "/dev/zero", "keys"],
    ];
    for args in offline_cases {
        let mut cmd = memory_limited(&offline(), args);
        cmd.current_dir(&dir)
            .envs(token.env().iter().cloned())
            .env(byok_tests::MODULE_ENV, token.module())
            .env(PIN_ENV, PIN);
        let out = bounded(cmd, &format!("byok-offline {args:?}"));
        refused(&out, "not a regular file");
    }
    // A .byok that is a link to the device is read through the link, and refused as well.
    symlink(Path::new("/dev/zero"), &dir.join("zero.byok"));
    let online_cases: [&[&str]; 2] = [
        &[
            "import",
            "--name",
            "x",
            "--byok-file",
            "/dev/zero",
            "--dry-run",
            "--vault-url",
            "https://contoso.vault.azure.net",
        ],
        &[
            "import",
            "--name",
            "x",
            "--byok-file",
            "zero.byok",
            "--dry-run",
            "--vault-url",
            "https://contoso.vault.azure.net",
        ],
    ];
    for args in online_cases {
        let mut cmd = memory_limited(&online(), args);
        cmd.current_dir(&dir);
        let out = bounded(cmd, &format!("byok-online {args:?}"));
        refused(&out, "not a regular file");
    }
}

#[test]
fn a_fifo_as_an_input_is_refused_not_waited_on() {
    let token = token();
    let dir = token.dir().to_path_buf();
    let fifo = dir.join("package.byok");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo (coreutils) failed");
    let offline_cases: [&[&str]; 3] = [
        &["inspect", "package.byok"],
        &["log", "verify", "package.byok"],
        &["package", "--kek", "package.byok", "--label", "x"],
    ];
    for args in offline_cases {
        let mut cmd = token.command_with_pin(offline());
        cmd.args(args);
        let out = bounded(cmd, &format!("byok-offline {args:?}"));
        refused(&out, "FIFO");
    }
    let mut cmd = Command::new(online());
    cmd.current_dir(&dir).stdin(Stdio::null()).args([
        "import",
        "--name",
        "x",
        "--byok-file",
        "package.byok",
        "--dry-run",
        "--vault-url",
        "https://contoso.vault.azure.net",
    ]);
    let out = bounded(cmd, "byok-online import --byok-file FIFO");
    refused(&out, "FIFO");
}

/// A `byok-offline keys` waiting at the PIN prompt on a terminal of its own (util-linux
/// `script`), started by a shell that allows core files of any size, with `BYOK_PKCS11_PIN`
/// set (the prompt is for the variable `--pin-env` names, which is unset): the process id,
/// once the prompt is on the terminal, and the `script` process.
struct AtPrompt {
    pid: u32,
    script: std::process::Child,
}

fn waiting_at_the_prompt(token: &TestToken) -> AtPrompt {
    require("script", "bsdutils");
    let shell = format!(
        "ulimit -c unlimited; echo $$ > byok.pid; exec {} keys --pin-env BYOK_TEST_PROMPTED_PIN",
        offline().display()
    );
    let mut script = token
        .command_with_pin("script")
        .args(["-qfec", &format!("sh -c '{shell}'"), "/dev/null"])
        // script forwards its stdin to the terminal: held open, never written.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("script (util-linux) runs");
    let mut stdout = script.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains("PKCS#11 user PIN:") {
                let _ = tx.send(Ok(()));
                // Keep draining, so the terminal never fills.
                while matches!(stdout.read(&mut buf), Ok(n) if n > 0) {}
                return;
            }
        }
        let _ = tx.send(Err(String::from_utf8_lossy(&seen).into_owned()));
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(Ok(())) => {}
        Ok(Err(seen)) => panic!("byok-offline ended before its PIN prompt: {seen}"),
        Err(_) => {
            let _ = script.kill();
            panic!("no PIN prompt within {DEADLINE:?}");
        }
    }
    let pid = std::fs::read_to_string(token.path("byok.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    AtPrompt { pid, script }
}

impl Drop for AtPrompt {
    fn drop(&mut self) {
        // Usually gone already; then kill says so, unheard.
        let _ = Command::new("kill")
            .args(["-KILL", &self.pid.to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.script.kill();
        let _ = self.script.wait();
    }
}

/// Fails with the install command when `program` is missing.
fn require(program: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{program}` is missing: install it (Debian: apt-get install {package})"
    );
}

#[test]
fn the_running_process_environment_and_limits_hold_no_pin_and_no_core() {
    let token = token();
    let at = waiting_at_the_prompt(&token);
    let environ = std::fs::read(format!("/proc/{}/environ", at.pid)).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        !environ.contains(PIN) && !environ.contains(&format!("{PIN_ENV}=")),
        "/proc/{}/environ still holds {PIN_ENV}",
        at.pid
    );
    // RLIMIT_CORE 0, whatever the shell allowed.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", at.pid)).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap_or_default();
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(
        fields.get(4..6),
        Some(&["0", "0"][..]),
        "core files allowed: {core}"
    );
}

#[test]
fn an_aborted_run_leaves_no_core_file_holding_the_pin() {
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let pattern = pattern.trim();
    assert!(
        !pattern.starts_with('|'),
        "kernel.core_pattern hands cores to a program ({pattern}), where this test cannot \
         look for them: run it where cores are files (sysctl -w kernel.core_pattern=core)"
    );
    let token = token();
    // Where a core would go: the pattern's directory, else the process's working directory.
    let core_dir = match Path::new(pattern).parent() {
        Some(p) if pattern.starts_with('/') => p.to_path_buf(),
        _ => token.dir().to_path_buf(),
    };
    let listing = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    let before = listing(&core_dir);
    let mut at = waiting_at_the_prompt(&token);
    let killed = Command::new("kill")
        .args(["-ABRT", &at.pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // script ends when its child does; the core (if any) is written before the child is
    // reaped.
    let start = Instant::now();
    while at.script.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < DEADLINE,
            "byok-offline did not end within {DEADLINE:?} of SIGABRT"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let new: Vec<PathBuf> = listing(&core_dir)
        .into_iter()
        .filter(|p| !before.contains(p))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains("core"))
        })
        .collect();
    for core in &new {
        let bytes = std::fs::read(core).unwrap();
        let holds_pin = bytes.windows(PIN.len()).any(|w| w == PIN.as_bytes());
        assert!(!holds_pin, "{} holds the PIN", core.display());
    }
    assert!(new.is_empty(), "a core file was written: {new:?}");
}

/// Runs the batch under strace, which sends SIGKILL at the process's first `renameat2` onto
/// `name` (the rename that gives a file its name): a kill at one exact point, no timing.
fn batch_killed_at_rename_onto(token: &TestToken, name: &str) -> Output {
    require("strace", "strace");
    // As the process names it (relative to its directory): strace matches the string.
    let target = format!("packages/{name}");
    let mut cmd = token.command_with_pin("strace");
    cmd.args(["-f", "-qq", "-o", "/dev/null", "-P", &target])
        .args(["-e", "trace=renameat2,rename,link,linkat"])
        .args([
            "-e",
            "inject=renameat2,rename,link,linkat:signal=SIGKILL:when=1",
        ])
        .arg(offline())
        .args(batch_args("packages"));
    bounded(cmd, "strace byok-offline batch")
}

/// The names in `packages/`.
fn packages(token: &TestToken) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(token.path("packages"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

const BYOK: &str = "KeyTransferPackage-k.byok";
const SIDECAR: &str = "KeyTransferPackage-k.byok.sidecar.json";

#[test]
fn a_kill_at_either_rename_never_leaves_a_package_without_its_sidecar() {
    for name in [SIDECAR, BYOK] {
        let token = token();
        std::fs::write(token.path("keys.toml"), ONE_AES_KEY).unwrap();
        let out = batch_killed_at_rename_onto(&token, name);
        assert!(
            !out.status.success(),
            "not killed at {name}: {}",
            stderr(&out)
        );
        let left = packages(&token);
        assert!(
            !left.iter().any(|n| n == BYOK) || left.iter().any(|n| n == SIDECAR),
            "killed at the rename onto {name}: a package without its sidecar: {left:?}"
        );
        // The next run completes the pair from the key the killed run generated.
        let out = run(&token, &batch_args("packages"));
        assert!(out.status.success(), "resume: {}", stderr(&out));
        let left = packages(&token);
        for want in [BYOK, SIDECAR] {
            assert!(left.iter().any(|n| n == want), "{want} missing: {left:?}");
        }
        assert_eq!(
            token_keys(&token),
            vec!["k".to_string()],
            "one key, generated once"
        );
        let verify = run(&token, &["log", "verify", "packages/ceremony-log.jsonl"]);
        assert!(verify.status.success(), "log verify: {}", stderr(&verify));
    }
}

#[test]
fn a_killed_runs_temporary_files_are_removed_by_the_next_run() {
    let token = token();
    std::fs::write(token.path("keys.toml"), ONE_AES_KEY).unwrap();
    let out = batch_killed_at_rename_onto(&token, BYOK);
    assert!(!out.status.success(), "not killed: {}", stderr(&out));
    let temps = |token: &TestToken| -> Vec<String> {
        packages(token)
            .into_iter()
            .filter(|n| n.starts_with(".byok-tmp-"))
            .collect()
    };
    assert!(
        !temps(&token).is_empty(),
        "the kill before the rename left no temporary file: {:?}",
        packages(&token)
    );
    // Another file under a name like ours but not our pattern is not ours: it stays.
    std::fs::write(token.path("packages/.byok-tmp-notes"), "mine").unwrap();
    let out = run(&token, &batch_args("packages"));
    assert!(out.status.success(), "rerun: {}", stderr(&out));
    assert_eq!(temps(&token), vec![".byok-tmp-notes".to_string()]);
}
