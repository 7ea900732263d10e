//! Durability with `--persist`: a clean restart keeps every key, and a kill -9 in the middle of
//! concurrent creates loses no key whose response was received.

mod common;

use byok_tests::Emulator;
use kv_emulator::{Connection, Flavor};
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

fn spawn(dir: &Path) -> (Emulator, Connection) {
    let exe = Path::new(env!("CARGO_BIN_EXE_kv-emulator"));
    let child = Emulator::start(exe, dir, &["--persist"]).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        child.url().starts_with("https://127.0.0.1:"),
        "listening on {}",
        child.url()
    );
    (child, Connection::load(dir).unwrap())
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
    while acknowledged.lock().unwrap().len() < 100 {
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
