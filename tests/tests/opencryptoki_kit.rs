//! The openCryptoki token of the kit: openCryptoki 3.27's soft token in the Debian sid root
//! `cargo xtask opencryptoki` makes (`cargo xtask ci` makes it first), reached by the real
//! `byok-offline` run inside that root with only what [`TestToken`] gives. And the kit owns
//! each token's `pkcsslotd`: after a token is dropped (after a panic too) no daemon of it runs
//! (`ps`, `/proc/PID/mountinfo`), no mount of it is visible on the host (`mount`,
//! `/proc/self/mountinfo`), and a daemon whose test process was killed is stopped by the next
//! token made.

use byok_tests::{ModuleKind, PIN_ENV, TestToken, bins, ok};
use std::io::{BufRead, BufReader};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{RwLock, RwLockReadGuard};

/// The soft token takes PINs of 4 to 8 characters.
const PIN: &str = "ock-5093";

/// Tests that make tokens hold it shared; the orphan test holds it alone, so that no token
/// made meanwhile sweeps its orphan before it has looked.
static TOKENS: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    TOKENS.read().unwrap_or_else(|e| e.into_inner())
}

fn offline(token: &TestToken, args: &[&str], pin: &str) -> Output {
    token
        .command(bins().join("byok-offline"))
        .args(token.token_args())
        .args(args)
        .env(PIN_ENV, pin)
        .output()
        .unwrap()
}

/// The labels `byok-offline tokens` lists, and what it says of the token labelled `label`.
fn listed(token: &TestToken) -> (Vec<String>, serde_json::Value) {
    let out = ok(&token
        .command(bins().join("byok-offline"))
        .args(["--output", "json", "tokens"])
        .output()
        .unwrap());
    let tokens = out["tokens"].as_array().unwrap().clone();
    let labels = tokens
        .iter()
        .filter_map(|t| t["label"].as_str().map(str::to_string))
        .collect();
    let mine = tokens
        .into_iter()
        .find(|t| t["label"] == token.label())
        .unwrap_or_default();
    (labels, mine)
}

/// Running (not zombie) pkcsslotd processes, by `ps`, whose mount namespace mounts `state`.
fn daemons_of(state: &Path) -> Vec<u32> {
    let out = Command::new("ps")
        .args(["-C", "pkcsslotd", "-o", "pid=,stat="])
        .output()
        .expect("ps (procps) runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let pid: u32 = f.next()?.parse().ok()?;
            let stat = f.next().unwrap_or("");
            (!stat.starts_with('Z')).then_some(pid)
        })
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
                .is_ok_and(|m| m.contains(&state.display().to_string()))
        })
        .collect()
}

/// Mounts the host sees at or under `path`, by `mount` and by `/proc/self/mountinfo`.
fn host_mounts_under(path: &Path) -> Vec<String> {
    let needle = path.display().to_string();
    let mount = Command::new("mount").output().expect("mount runs");
    let mut found: Vec<String> = String::from_utf8_lossy(&mount.stdout)
        .lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    found.extend(
        info.lines()
            .filter(|l| l.contains(&needle))
            .map(str::to_string),
    );
    found
}

fn root() -> PathBuf {
    byok_tests::opencryptoki_root().canonicalize().unwrap()
}

/// What a dropped token must leave: no daemon of its state, no mount of it or of the root.
fn nothing_left(pid: u32, state: &Path) {
    let daemons = daemons_of(state);
    assert!(
        daemons.is_empty(),
        "pkcsslotd {daemons:?} of {} still runs",
        state.display()
    );
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state_field = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    assert!(
        !matches!(state_field, Some(s) if s != "Z"),
        "pid {pid} still runs: {stat}"
    );
    for path in [root(), state.to_path_buf()] {
        let mounts = host_mounts_under(&path);
        assert!(mounts.is_empty(), "mounts visible on the host: {mounts:#?}");
    }
}

#[test]
fn a_token_offers_native_rsa_aes_key_wrap_and_takes_only_its_pin() {
    let _shared = shared();
    let token = TestToken::opencryptoki("kit-ock", PIN);
    assert_eq!(token.kind(), ModuleKind::OpenCryptoki);
    assert_eq!(token.module(), byok_tests::opencryptoki_module());
    let (labels, mine) = listed(&token);
    assert_eq!(
        labels,
        ["kit-ock"],
        "the token's daemon serves its own token alone"
    );
    assert_eq!(mine["capabilities"]["rsa_aes_key_wrap"], true, "{mine}");
    assert!(
        mine["byok"]
            .as_str()
            .unwrap()
            .starts_with("native CKM_RSA_AES_KEY_WRAP"),
        "{mine}"
    );
    let keys = ok(&offline(&token, &["--output", "json", "keys"], PIN));
    assert_eq!(
        keys["keys"],
        serde_json::json!([]),
        "a fresh token holds no keys"
    );
    let refused = offline(&token, &["keys"], "0000-000");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("CKR_PIN_INCORRECT"),
        "a wrong PIN: {stderr}"
    );
    // Any program of the root, independent of byok-offline: opensc's pkcs11-tool.
    let mechanisms = token
        .command("pkcs11-tool")
        .arg("--module")
        .arg(token.module())
        .arg("--list-mechanisms")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&mechanisms.stdout).contains("mechtype-0x1054"),
        "pkcs11-tool lists CKM_RSA_AES_KEY_WRAP (0x1054): {}",
        String::from_utf8_lossy(&mechanisms.stdout)
    );
}

#[test]
fn a_program_runs_inside_the_root_in_the_directory_it_is_given() {
    let _shared = shared();
    let token = TestToken::opencryptoki("kit-dirs", PIN);
    let release = token
        .command("cat")
        .arg("/etc/debian_version")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&release.stdout).contains("sid"),
        "not Debian sid: {release:?}"
    );
    // current_dir, env and args reach the program as on the host; what it writes is on the host.
    let work = tempfile::tempdir_in(byok_tests::target_dir()).unwrap();
    let out = token
        .command("sh")
        .args(["-c", "pwd; printf %s \"$GREETING\" > made-inside"])
        .env("GREETING", "hello from sid")
        .current_dir(work.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        work.path().canonicalize().unwrap().display().to_string()
    );
    assert_eq!(
        std::fs::read_to_string(work.path().join("made-inside")).unwrap(),
        "hello from sid"
    );
    // A directory the token's namespace does not mount is refused by name.
    let out = token.command("true").current_dir("/etc").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("/etc is not visible inside"),
        "{stderr}"
    );
}

#[test]
fn tokens_side_by_side_each_have_their_own_daemon_and_state() {
    let _shared = shared();
    let dir = tempfile::tempdir_in(byok_tests::target_dir()).unwrap();
    let a = TestToken::opencryptoki("kit-side-a", PIN);
    let b = TestToken::new_in(
        ModuleKind::OpenCryptoki,
        dir.path(),
        "kit-side-b",
        "b-pin-77",
    )
    .unwrap();
    assert_ne!(a.daemon_pid(), b.daemon_pid());
    assert_eq!(listed(&a).0, ["kit-side-a"]);
    assert_eq!(listed(&b).0, ["kit-side-b"]);
    assert!(offline(&b, &["keys"], "b-pin-77").status.success());
    assert!(
        b.state_dir()
            .unwrap()
            .starts_with(dir.path().canonicalize().unwrap()),
        "new_in keeps the state in the directory given"
    );
}

#[test]
fn dropping_a_token_stops_its_daemon_and_leaves_no_mount() {
    let _shared = shared();
    let token = TestToken::opencryptoki("kit-drop", PIN);
    let pid = token.daemon_pid().unwrap();
    let state = token.state_dir().unwrap().to_path_buf();
    assert_eq!(daemons_of(&state), [pid], "ps shows the token's daemon");
    // Even while the daemon runs, its mounts are in its own namespace only.
    assert!(host_mounts_under(&root()).is_empty());
    assert!(host_mounts_under(&state).is_empty());
    drop(token);
    nothing_left(pid, &state);
}

#[test]
fn a_panic_with_a_token_alive_still_stops_its_daemon() {
    let _shared = shared();
    let mut seen = None;
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let token = TestToken::opencryptoki("kit-panic", PIN);
        seen = Some((
            token.daemon_pid().unwrap(),
            token.state_dir().unwrap().to_path_buf(),
        ));
        assert_eq!(daemons_of(token.state_dir().unwrap()).len(), 1);
        panic!("a test failing with its token alive");
    }));
    assert!(result.is_err());
    let (pid, state) = seen.expect("the token was made before the panic");
    nothing_left(pid, &state);
}

#[test]
fn a_pin_the_soft_token_cannot_take_is_refused_and_its_daemon_stopped() {
    let _shared = shared();
    let dir = tempfile::tempdir().unwrap();
    let Err(e) = TestToken::opencryptoki_in(dir.path(), "kit-long-pin", "tokens-Pin-5093") else {
        panic!("a 15-character PIN was taken");
    };
    assert!(e.contains("PINs of 4 to 8 characters"), "{e}");
    let state = dir.path().canonicalize().unwrap().join("opencryptoki");
    assert!(
        daemons_of(&state).is_empty(),
        "the daemon of the failed token runs on"
    );
}

#[test]
fn a_missing_or_half_made_root_is_refused_with_the_command_that_makes_it() {
    let e = byok_tests::opencryptoki_check_root(Path::new("/nonexistent/opencryptoki/root"))
        .unwrap_err();
    assert!(
        e.contains("no openCryptoki root at /nonexistent")
            && e.contains("cargo xtask opencryptoki"),
        "{e}"
    );
    let half = tempfile::tempdir().unwrap();
    let e = byok_tests::opencryptoki_check_root(half.path()).unwrap_err();
    assert!(
        e.contains("half made") && e.contains("cargo xtask opencryptoki"),
        "{e}"
    );
    // The real root holds the pinned version.
    for package in byok_tests::OPENCRYPTOKI_PACKAGES {
        assert_eq!(
            byok_tests::opencryptoki_installed_version(&root(), package).unwrap(),
            byok_tests::OPENCRYPTOKI_VERSION
        );
    }
}

/// The other half of the next test, run in a process of its own: makes a token, says which
/// daemon it has, and waits to be killed.
#[test]
#[ignore = "a helper: a_daemon_of_a_killed_test_process_is_stopped_by_the_next_token runs it"]
fn orphan_maker() {
    if std::env::var_os("BYOK_TEST_ORPHAN_MAKER").is_none() {
        return;
    }
    let token = TestToken::opencryptoki("kit-orphan", PIN);
    println!(
        "daemon {} {}",
        token.daemon_pid().unwrap(),
        token.state_dir().unwrap().display()
    );
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    panic!("orphan_maker was to be killed, not let go");
}

#[test]
fn a_daemon_of_a_killed_test_process_is_stopped_by_the_next_token() {
    let _alone = TOKENS.write().unwrap_or_else(|e| e.into_inner());
    let mut maker = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "orphan_maker", "--ignored", "--nocapture"])
        .env("BYOK_TEST_ORPHAN_MAKER", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = maker.stdout.take().unwrap();
    let line = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("daemon "))
        .expect("the maker names its daemon");
    let mut f = line.split(' ').skip(1);
    let pid: u32 = f.next().unwrap().parse().unwrap();
    let state = PathBuf::from(f.next().unwrap());
    maker.kill().unwrap();
    maker.wait().unwrap();
    // SIGKILL ran no destructor: the daemon lives on, an orphan.
    assert_eq!(daemons_of(&state), [pid]);
    // The next token made stops it first (and waits until it has exited).
    let token = TestToken::opencryptoki("kit-after", PIN);
    assert!(daemons_of(&state).is_empty(), "the orphan {pid} still runs");
    assert!(byok_tests::sweep_orphaned_daemons().is_empty());
    drop(token);
    // The killed maker's temporary directory stayed behind: remove it.
    let _ = std::fs::remove_dir_all(state.parent().unwrap());
}
