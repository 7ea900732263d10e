//! Starting and stopping: each way the emulator cannot start is its own error naming the fix,
//! and the binary's exit status tells a bad setting (2) from a machine that cannot serve (1).

use kv_emulator::{Config, Flavor, StartError};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn config(dir: &std::path::Path) -> Config {
    Config::new(dir)
}

async fn start_err(config: Config) -> StartError {
    match kv_emulator::start(config).await {
        Ok(_) => panic!("started"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn settings_no_machine_can_serve_are_usage_errors_and_touch_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    for (tweak, want) in [
        (
            (|c: &mut Config| c.public_url = Some("http://proxy.example:8443".into()))
                as fn(&mut Config),
            "--public-url http://proxy.example:8443",
        ),
        (|c| c.fault_status = Some(200), "--fault-status 200"),
        (|c| c.vault_name = "no.dots".into(), "--vault-name no.dots"),
        (|c| c.vault_name = "-x".into(), "--vault-name -x"),
    ] {
        let mut cfg = config(&state);
        tweak(&mut cfg);
        let err = start_err(cfg).await;
        assert!(err.is_usage(), "{err}");
        assert!(err.to_string().contains(want), "{err}");
    }
    assert!(!state.exists());
}

#[tokio::test]
async fn a_busy_address_names_the_flag_to_change() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg = config(dir.path());
    cfg.listen = busy.local_addr().unwrap();
    let err = start_err(cfg).await;
    assert!(matches!(err, StartError::Listen(_)), "{err:?}");
    assert!(!err.is_usage());
    assert_eq!(
        err.to_string(),
        format!(
            "cannot listen on {}: address in use; pick another --listen (port 0 picks a free one)",
            busy.local_addr().unwrap()
        )
    );
}

#[tokio::test]
async fn the_vault_is_served_under_its_name_and_resolved_to_the_listen_address() {
    for (flavor, name, domain) in [
        (Flavor::Vault, "emulator", "vault.azure.net"),
        (Flavor::ManagedHsm, "Contoso-HSM", "managedhsm.azure.net"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        cfg.flavor = flavor;
        cfg.vault_name = name.into();
        let running = kv_emulator::start(cfg).await.unwrap();
        let conn = kv_emulator::Connection::load(dir.path()).unwrap();
        let port = running.addr.port();
        assert_eq!(
            conn.vault_url,
            format!("https://{}.{domain}:{port}", name.to_ascii_lowercase())
        );
        assert_eq!(conn.vault_address, Some(running.addr));
        assert_eq!(conn.authority_host, format!("https://127.0.0.1:{port}"));
        assert_ne!(conn.client_id, conn.reader_client_id);
        // The certificate names the host: recorded beside it, made anew when it changes.
        let names = std::fs::read_to_string(dir.path().join("server.names")).unwrap();
        assert!(
            names.contains(&format!("{}.{domain}", name.to_ascii_lowercase())),
            "{names}"
        );
        running.shutdown().await;
    }
}

#[tokio::test]
async fn a_public_url_is_what_clients_are_told() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.public_url = Some("https://Proxy.Example:8443/".into());
    let running = kv_emulator::start(cfg).await.unwrap();
    let conn = kv_emulator::Connection::load(dir.path()).unwrap();
    assert_eq!(conn.vault_url, "https://proxy.example:8443");
    assert_eq!(conn.authority_host, conn.vault_url);
    assert_eq!(conn.vault_address, None);
    assert_eq!(running.connection, conn);
    running.shutdown().await;
    // --public-address says where clients resolve the public URL's host.
    let mut cfg = config(dir.path());
    cfg.public_url = Some("https://emulator.vault.azure.net:8443".into());
    cfg.public_address = Some("127.0.0.1:8443".parse().unwrap());
    let running = kv_emulator::start(cfg).await.unwrap();
    assert_eq!(
        running.connection.vault_address,
        Some("127.0.0.1:8443".parse().unwrap())
    );
    running.shutdown().await;
}

fn emulator(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kv-emulator"));
    cmd.args(args);
    cmd
}

#[test]
fn exit_status_tells_usage_from_failure() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = busy.local_addr().unwrap().to_string();
    for (args, code, want) in [
        (vec![], 2, "--state-dir <DIR>"),
        (
            vec!["--state-dir", state, "--fault-status", "200"],
            2,
            "error: --fault-status 200 is not an HTTP error status",
        ),
        (
            vec!["--state-dir", state, "--listen", "nowhere"],
            2,
            "--listen",
        ),
        (
            vec!["--state-dir", state, "--listen", &busy],
            1,
            "address in use; pick another --listen",
        ),
        (
            vec!["--state-dir", "/proc/kv-emulator-cannot-exist"],
            1,
            "cannot create the state directory /proc/kv-emulator-cannot-exist",
        ),
    ] {
        let out = emulator(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn completions_man_pages_and_help_come_from_the_flags() {
    let out = emulator(&["completions", "bash"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(
        script.contains("--state-dir") && script.contains("--persist"),
        "{script}"
    );

    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man");
    let out = emulator(&["man", "--dir", pages.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(pages.join("kv-emulator.1")).unwrap();
    assert!(page.contains("persist"), "{page}");

    let out = emulator(&["--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--state-dir",
        "--flavor",
        "--persist",
        "--token-lifetime",
        "--accept-zero-padded-kwp",
        "--fault-status",
        "--public-url",
        "--public-address",
        "--vault-name",
        "completions",
        "man",
    ] {
        assert!(help.contains(flag), "{flag} not in --help: {help}");
    }
    let out = emulator(&["--version"]).output().unwrap();
    let version = String::from_utf8(out.stdout).unwrap();
    assert!(
        version.contains(byok_cli_common::version::LONG_VERSION),
        "{version}"
    );
}

#[test]
fn sigterm_stops_it_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = emulator(&["--state-dir", dir.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("listening on https://127.0.0.1:"),
        "{line}"
    );
    let port = line
        .trim()
        .strip_prefix("listening on https://127.0.0.1:")
        .and_then(|rest| rest.split(' ').next())
        .unwrap();
    assert!(
        line.trim()
            .ends_with(&format!("(vault https://emulator.vault.azure.net:{port})")),
        "{line}"
    );
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
