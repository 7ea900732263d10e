//! Durability with `--persist`: a clean restart keeps every key at the URL their key ids name
//! (so packages made before it still import), a kill -9 in the middle of concurrent creates
//! or BYOK imports loses no key whose response was received, and a state directory is served
//! by one emulator at a time.

mod common;

use byok_core::TargetKey;
use byok_core::target::{Curve, KeyKind};
use byok_tests::Emulator;
use kv_emulator::{Connection, Flavor, StartError};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::{Arc, Mutex};

#[tokio::test]
async fn restart_keeps_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let emu = common::Emu::start_with(dir, |c| c.persist = true).await;
    let mut made = Vec::new();
    for name in ["a", "b", "c"] {
        let (s, b) = emu.create(name, json!({"kty": "EC", "crv": "P-256"})).await;
        assert_eq!(s, 200);
        made.push(b);
    }
    emu.call(reqwest::Method::DELETE, "/keys/c", None).await;
    let common::Emu { running, dir, .. } = emu;
    running.unwrap().shutdown().await;

    let emu = common::Emu::start_with(dir, |c| c.persist = true).await;
    assert_eq!(emu.dir.path(), path);
    for (name, before) in ["a", "b"].iter().zip(&made) {
        let (s, after) = emu
            .call(reqwest::Method::GET, &format!("/keys/{name}"), None)
            .await;
        assert_eq!(s, 200);
        assert_eq!(after["key"]["x"], before["key"]["x"]);
        let version = |b: &Value| {
            b["key"]["kid"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        };
        assert_eq!(version(&after), version(before));
    }
    assert_eq!(
        emu.call(reqwest::Method::GET, "/deletedkeys/c", None)
            .await
            .0,
        200
    );
    // Without --persist nothing is kept.
    let common::Emu { running, dir, .. } = emu;
    running.unwrap().shutdown().await;
    let emu = common::Emu::start_with(dir, |c| c.flavor = Flavor::Vault).await;
    assert_eq!(emu.call(reqwest::Method::GET, "/keys/a", None).await.0, 404);
}

/// Starts a `--persist` emulator on `dir` listening on `listen`, or returns why it did not.
async fn restart(
    dir: &Path,
    listen: &str,
    public_url: Option<&str>,
) -> Result<kv_emulator::Running, StartError> {
    let mut cfg = common::config(dir, Flavor::Vault);
    cfg.persist = true;
    cfg.listen = listen.parse().unwrap();
    cfg.public_url = public_url.map(str::to_string);
    common::start_when_unlocked(cfg).await
}

/// A port nobody listens on now (the kernel's pick, released).
fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

#[tokio::test]
async fn a_restart_on_port_0_comes_back_at_the_url_its_keys_name() {
    let dir = tempfile::tempdir().unwrap();
    let emu = common::Emu::start_with(dir, |c| c.persist = true).await;
    let kek = emu.kek("KEKforBYOK", 2048).await;
    let url = emu.conn.vault_url.clone();
    let common::Emu { running, dir, .. } = emu;
    running.unwrap().shutdown().await;

    // Port 0 again: the earlier address, so the KEK's kid still names this vault.
    let emu = common::Emu::start_with(dir, |c| c.persist = true).await;
    assert_eq!(emu.conn.vault_url, url);
    assert_eq!(Connection::load(emu.dir.path()).unwrap().vault_url, url);
    let (s, again) = emu
        .call(reqwest::Method::GET, "/keys/KEKforBYOK", None)
        .await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["key"]["kid"], kek["key"]["kid"]);
    // A package made for the KEK before the restart imports after it.
    let target = TargetKey::generate(KeyKind::Ec { curve: Curve::P256 }).unwrap();
    let file = common::byok(&kek, target.plaintext());
    let (s, imported) = emu
        .call(
            reqwest::Method::PUT,
            "/keys/target",
            Some(common::import_body("EC-HSM", &file)),
        )
        .await;
    assert_eq!(s, 200, "{imported}");
    assert!(imported["key"]["kid"].as_str().unwrap().starts_with(&url));
    emu.running.unwrap().shutdown().await;
}

#[tokio::test]
async fn a_restart_elsewhere_is_refused_unless_a_public_url_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let emu = common::Emu::start_with(dir, |c| c.persist = true).await;
    emu.kek("KEKforBYOK", 2048).await;
    let (url, addr) = (
        emu.conn.vault_url.clone(),
        emu.running.as_ref().unwrap().addr,
    );
    let common::Emu { running, dir, .. } = emu;
    running.unwrap().shutdown().await;
    let connection = std::fs::read(dir.path().join(kv_emulator::CONNECTION_FILE)).unwrap();

    // Another explicit port: a usage error naming the stored URL and the flags that fix it.
    let elsewhere = format!("127.0.0.1:{}", free_port());
    let err = restart(dir.path(), &elsewhere, None).await.err().unwrap();
    assert!(err.is_usage(), "{err}");
    let text = err.to_string();
    for want in [
        format!("--listen {elsewhere}"),
        format!("naming {url}"),
        format!("Pass --listen {addr}"),
        "--public-url".to_string(),
    ] {
        assert!(text.contains(&want), "{want:?} not in: {text}");
    }
    // Refused before anything was written.
    let unchanged = std::fs::read(dir.path().join(kv_emulator::CONNECTION_FILE)).unwrap();
    assert_eq!(unchanged, connection);

    // The stored port taken by another process: the port and the fix, not "pick another".
    let holder = std::net::TcpListener::bind(addr).unwrap();
    let err = restart(dir.path(), "127.0.0.1:0", None)
        .await
        .err()
        .unwrap();
    assert!(!err.is_usage(), "{err}");
    let text = err.to_string();
    for want in [
        format!("port {} is in use", addr.port()),
        "stop the process that holds port".to_string(),
        format!("--listen {addr}"),
    ] {
        assert!(text.contains(&want), "{want:?} not in: {text}");
    }
    drop(holder);

    // Another --vault-name: another URL than the keys name, refused before anything is written.
    let mut cfg = common::config(dir.path(), Flavor::Vault);
    cfg.persist = true;
    cfg.vault_name = "other".into();
    let err = kv_emulator::start(cfg).await.err().unwrap();
    assert!(err.is_usage(), "{err}");
    let text = err.to_string();
    for want in [
        format!("naming {url}"),
        format!("serve https://other.vault.azure.net:{}", addr.port()),
        "--vault-name".to_string(),
    ] {
        assert!(text.contains(&want), "{want:?} not in: {text}");
    }
    let unchanged = std::fs::read(dir.path().join(kv_emulator::CONNECTION_FILE)).unwrap();
    assert_eq!(unchanged, connection);

    // --public-url is the operator's word on where the keys are: it starts anywhere.
    let public = format!("https://{elsewhere}");
    let running = restart(dir.path(), &elsewhere, Some(&public))
        .await
        .unwrap();
    assert_eq!(running.connection.vault_url, public);
    running.shutdown().await;
}

fn spawn(dir: &Path) -> (Emulator, Connection) {
    let exe = Path::new(env!("CARGO_BIN_EXE_kv-emulator"));
    let child = Emulator::start(exe, dir, &["--persist"]).unwrap_or_else(|e| panic!("{e}"));
    spawned(child, dir)
}

fn spawned(child: Emulator, dir: &Path) -> (Emulator, Connection) {
    assert!(
        child.listen_url().starts_with("https://127.0.0.1:"),
        "listening on {}",
        child.listen_url()
    );
    let conn = Connection::load(dir).unwrap();
    assert_eq!(child.url(), conn.vault_url);
    (child, conn)
}

async fn fetch_token(http: &reqwest::Client, conn: &Connection) -> String {
    let resp: Value = http
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            conn.authority_host, conn.tenant_id
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", conn.client_id.as_str()),
            ("client_secret", conn.client_secret.as_str()),
            ("scope", "https://vault.azure.net/.default"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    resp["access_token"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_concurrent_creates_loses_no_acknowledged_key() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, conn) = spawn(dir.path());
    let http = common::client(&conn);
    let token = fetch_token(&http, &conn).await;
    let acknowledged: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (http, conn, token, acked) = (
            http.clone(),
            conn.clone(),
            token.clone(),
            acknowledged.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // Bounded: at most 50 creates per worker; the kill ends most of them first.
            for i in 0..50 {
                let name = format!("k{worker}-{i}");
                let resp = http
                    .post(format!(
                        "{}/keys/{name}/create?api-version=7.4",
                        conn.vault_url
                    ))
                    .bearer_auth(&token)
                    .json(&json!({"kty": "EC", "crv": "P-256"}))
                    .send()
                    .await;
                let Ok(resp) = resp else { return };
                if resp.status() != 200 {
                    return;
                }
                let Ok(body) = resp.json::<Value>().await else {
                    return;
                };
                acked
                    .lock()
                    .unwrap()
                    .push((name, body["key"]["x"].as_str().unwrap().to_string()));
            }
        }));
    }
    // Let 100 creates land, then kill the server without warning.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while acknowledged.lock().unwrap().len() < 100 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of 100 creates were acknowledged within 120 s",
            acknowledged.lock().unwrap().len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acknowledged.lock().unwrap().clone();
    assert!(acked.len() >= 100);

    let (mut child, conn) = spawn(dir.path());
    let http = common::client(&conn);
    let token = fetch_token(&http, &conn).await;
    let mut lost = 0;
    for (name, x) in &acked {
        let resp = http
            .get(format!("{}/keys/{name}?api-version=7.4", conn.vault_url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        if resp.status() != 200 {
            lost += 1;
            continue;
        }
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["key"]["x"].as_str().unwrap(), x, "{name} changed");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    println!("kill -9: {} acknowledged creates, {lost} lost", acked.len());
    assert_eq!(lost, 0, "{lost} of {} acknowledged keys lost", acked.len());
}

/// How many imports the kill test sends, how many acknowledged before the kill, and how many
/// are in flight at once.
const IMPORTS: usize = 1000;
const KILL_AFTER: usize = 300;
const IN_FLIGHT: usize = 64;

/// `IMPORTS` import bodies (EC P-256 targets wrapped in software under `kek`), with each
/// target's public `x`; made on every core.
async fn packages(kek: &Value) -> Vec<(String, Value, String)> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per = IMPORTS.div_ceil(threads);
    let mut makers = Vec::new();
    for t in 0..threads {
        let kek = kek.clone();
        makers.push(tokio::task::spawn_blocking(move || {
            (t * per..((t + 1) * per).min(IMPORTS))
                .map(|i| {
                    let target = TargetKey::generate(KeyKind::Ec { curve: Curve::P256 }).unwrap();
                    let public =
                        byok_core::jwk::PublicJwk::from_public_key(target.public_key().unwrap());
                    let body =
                        common::import_body("EC-HSM", &common::byok(&kek, target.plaintext()));
                    (format!("imp{i}"), body, public.x.unwrap())
                })
                .collect::<Vec<_>>()
        }));
    }
    let mut all = Vec::new();
    for m in makers {
        all.extend(m.await.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_1000_concurrent_byok_imports_loses_no_acknowledged_import() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, conn) = spawn(dir.path());
    let http = common::client(&conn);
    let token = fetch_token(&http, &conn).await;
    let kek: Value = http
        .post(format!(
            "{}/keys/KEK/create?api-version=7.4",
            conn.vault_url
        ))
        .bearer_auth(&token)
        .json(&json!({"kty": "RSA-HSM", "key_size": 2048, "key_ops": ["import"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bodies = packages(&kek).await;
    let acknowledged: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut tasks = Vec::new();
    for (name, body, x) in bodies {
        let (http, url, token, acked, permits) = (
            http.clone(),
            conn.vault_url.clone(),
            token.clone(),
            acknowledged.clone(),
            permits.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire().await.unwrap();
            let resp = http
                .put(format!("{url}/keys/{name}?api-version=7.4"))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await;
            let Ok(resp) = resp else { return };
            let status = resp.status();
            let Ok(answer) = resp.json::<Value>().await else {
                return;
            };
            assert_eq!(status, 200, "{name}: {answer}");
            assert_eq!(answer["key"]["x"].as_str(), Some(x.as_str()), "{name}");
            acked.lock().unwrap().push((name, x));
        }));
    }
    // Bounded: the imports end (all answered, or refused once the server is gone) long
    // before this; the kill comes after KILL_AFTER acknowledgements.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while acknowledged.lock().unwrap().len() < KILL_AFTER {
        assert!(std::time::Instant::now() < deadline, "imports too slow");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acknowledged.lock().unwrap().clone();
    assert!(acked.len() >= KILL_AFTER);

    let (mut child, conn) = spawn(dir.path());
    let http = common::client(&conn);
    let token = fetch_token(&http, &conn).await;
    let mut lost = Vec::new();
    for (name, x) in &acked {
        let resp = http
            .get(format!("{}/keys/{name}?api-version=7.4", conn.vault_url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        if resp.status() != 200 {
            lost.push(name.clone());
            continue;
        }
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            body["key"]["x"].as_str(),
            Some(x.as_str()),
            "{name} changed"
        );
        assert_eq!(body["key"]["kty"], "EC-HSM", "{name}");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    println!(
        "kill -9: {} of {IMPORTS} imports acknowledged, {} lost",
        acked.len(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged imports lost: {lost:?}",
        lost.len()
    );
}

#[test]
fn a_second_emulator_on_the_same_state_dir_is_refused_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = spawn(dir.path());
    let connection = std::fs::read(dir.path().join(kv_emulator::CONNECTION_FILE)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kv-emulator"))
        .arg("--state-dir")
        .arg(dir.path())
        .arg("--persist")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("state.db is in use by another kv-emulator"),
        "{err}"
    );
    assert!(err.contains("stop that emulator first"), "{err}");
    // Refused before it rewrote anything the first one's clients read.
    let unchanged = std::fs::read(dir.path().join(kv_emulator::CONNECTION_FILE)).unwrap();
    assert_eq!(unchanged, connection);
    drop(first);
}

/// A state directory from a kv-emulator that kept its keys in `state.json`: the first start
/// imports them and keeps the file as `state.json.imported`.
#[tokio::test]
async fn keys_in_an_old_state_json_are_imported_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let emu = common::Emu::start_with(dir, |c| c.persist = true).await;
    let (s, made) = emu
        .create("old", json!({"kty": "EC", "crv": "P-256"}))
        .await;
    assert_eq!(s, 200, "{made}");
    let common::Emu { running, dir, .. } = emu;
    running.unwrap().shutdown().await;
    // The same key as the old file held it: the old `State`, versions without `public`.
    let version = json!({
        "version": made["key"]["kid"].as_str().unwrap().rsplit('/').next().unwrap(),
        "kty": "EC", "bits": 256, "crv": "P-256", "key_ops": ["sign", "verify"],
        "material": dump_material(dir.path(), "old"),
        "attributes": {"enabled": true, "nbf": null, "exp": null, "created": 1, "updated": 1,
                       "exportable": null},
        "tags": {}, "release_policy": null, "imported_byok": false
    });
    let old = json!({"keys": {"old": {"name": "old", "versions": [version], "deleted": null}}});
    std::fs::remove_file(dir.path().join("state.db")).unwrap();
    let _ = std::fs::remove_file(dir.path().join("state.db-wal"));
    let _ = std::fs::remove_file(dir.path().join("state.db-shm"));
    std::fs::write(dir.path().join("state.json"), old.to_string()).unwrap();

    let emu = common::Emu::start_with(dir, |c| c.persist = true).await;
    let (s, got) = emu.call(reqwest::Method::GET, "/keys/old", None).await;
    assert_eq!(s, 200, "{got}");
    assert_eq!(got["key"]["x"], made["key"]["x"]);
    assert_eq!(got["key"]["kid"], made["key"]["kid"]);
    assert!(!emu.dir.path().join("state.json").exists());
    assert!(emu.dir.path().join("state.json.imported").exists());
    emu.running.unwrap().shutdown().await;
}

/// The stored material of a key's latest version, read from the database as a test can.
fn dump_material(dir: &Path, name: &str) -> String {
    let conn = rusqlite::Connection::open(dir.join("state.db")).unwrap();
    let body: String = conn
        .query_row(
            "SELECT body FROM versions WHERE name_lc = ?1 ORDER BY seq DESC LIMIT 1",
            [name],
            |r| r.get(0),
        )
        .unwrap();
    serde_json::from_str::<Value>(&body).unwrap()["material"]
        .as_str()
        .unwrap()
        .to_string()
}
