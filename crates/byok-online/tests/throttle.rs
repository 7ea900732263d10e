//! The client against a vault that throttles as Azure does (kv-emulator `--throttle azure`,
//! its window shortened): batch-import paces itself to the limits, counts the 429s it still
//! gets, and every vault error names its request id.

mod common;

use byok_core::TargetKey;
use byok_core::target::{Curve, KeyKind};
use serde_json::Value;
use std::time::{Duration, Instant};

/// The throttling window, on both sides: 200 imports at 10 per window need 19 windows.
const WINDOW_MS: u64 = 1000;
const KEYS: usize = 200;

/// `n` EC P-256 packages under the vault's KEK, a manifest naming them, in `pkgs/`.
fn batch_of(env: &common::Env, n: usize) {
    std::fs::create_dir(env.path("pkgs")).unwrap();
    let mut manifest = String::new();
    for i in 0..n {
        let name = format!("k{i:03}");
        manifest.push_str(&format!(
            "[[key]]\nname = \"{name}\"\nkty = \"EC\"\ncurve = \"P-256\"\n\n"
        ));
        let target = TargetKey::generate(KeyKind::Ec { curve: Curve::P256 }).unwrap();
        env.package(
            &env.path("kek.transfer"),
            &target,
            &format!("pkgs/{}", byok_core::package::file_name(&name)),
            true,
        );
    }
    std::fs::write(env.path("keys.toml"), manifest).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_key_batch_keeps_to_the_limits_of_a_throttling_vault() {
    let env = common::start_throttled("azure", WINDOW_MS).await;
    env.with_kek().await;
    batch_of(&env, KEYS);
    let window = WINDOW_MS.to_string();
    let started = Instant::now();
    let report = env
        .json(&[
            "batch-import",
            "--manifest",
            "keys.toml",
            "--dir",
            "pkgs",
            "--pace-window-ms",
            &window,
        ])
        .await;
    let wall = started.elapsed();
    // ceil(200 / 10) - 1 windows: the first 10 go at once, each next 10 a window later.
    let minimum = Duration::from_millis((KEYS.div_ceil(10) as u64 - 1) * WINDOW_MS);
    let throttled = report["throttled"].as_u64().unwrap();
    println!(
        "{KEYS} keys: wall {:.2} s, theoretical minimum {:.2} s, 429s received {throttled}",
        wall.as_secs_f64(),
        minimum.as_secs_f64()
    );
    assert_eq!(report["imported"], KEYS);
    assert_eq!(report["failed"], 0, "{report}");
    assert!(
        wall >= minimum,
        "the pacing did not limit: {wall:?} < {minimum:?}"
    );
    assert!(throttled <= 3, "{throttled} 429s: the pacing is off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_stricter_than_azure_throttles_and_the_backoff_gets_through() {
    // 5 imports per window where the client expects 10: the 429s come, are counted, and
    // each import gets through after a backoff (0.1, 0.2, 0.4, 0.8, 1.6 s at this window).
    let env = common::start_throttled("create=5,other=2000", WINDOW_MS).await;
    env.with_kek().await;
    batch_of(&env, 20);
    let window = WINDOW_MS.to_string();
    let report: Value = env
        .json(&[
            "batch-import",
            "--manifest",
            "keys.toml",
            "--dir",
            "pkgs",
            "--pace-window-ms",
            &window,
        ])
        .await;
    println!("stricter vault: throttled {}", report["throttled"]);
    assert_eq!(report["failed"], 0, "{report}");
    assert!(report["throttled"].as_u64().unwrap() > 0, "{report}");
    let human = env
        .ok(&[
            "batch-import",
            "--manifest",
            "keys.toml",
            "--dir",
            "pkgs",
            "--pace-window-ms",
            &window,
        ])
        .await;
    assert!(human.contains("throttled:"), "{human}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_error_names_its_request_id() {
    let env = common::start().await;
    let out = env.run(&["show", "--name", "missing"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("the key missing was not found in the vault (404 KeyNotFound) (request id: "),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_key_is_named_as_such_with_the_fix() {
    let env = common::start().await;
    let (status, _) = env
        .create_raw("gone", serde_json::json!({"kty": "EC-HSM", "crv": "P-256"}))
        .await;
    assert_eq!(status, 200);
    let (status, _) = env.rest(reqwest::Method::DELETE, "/keys/gone", None).await;
    assert_eq!(status, 200);
    // show: deleted on DATE, recoverable until DATE, and how to recover or purge.
    let out = env.run(&["show", "--name", "gone"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("key gone was deleted on ")
            && err.contains("and is recoverable until ")
            && err.contains("az keyvault key recover --name gone"),
        "{err}"
    );
    // Creating a KEK of that name: a 409, said with its fix.
    let out = env
        .run(&["kek", "create", "--name", "gone", "--size", "2048"])
        .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("the name gone belongs to a deleted key that is still recoverable")
            || err.contains("the name gone belongs to a key that is being deleted"),
        "{err}"
    );
    assert!(err.contains("az keyvault key purge --name gone"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_names_the_role_to_assign_and_the_request_id() {
    let env = common::start().await;
    env.with_kek().await;
    let out = env
        .run(&["show", "--name", "KEK", "--emulator-identity", "reader"])
        .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("HTTP 403 ForbiddenByRbac")
            && err.contains("Microsoft.KeyVault/vaults/keys/read")
            && err.contains("assign it the Key Vault Crypto User role"),
        "{err}"
    );
    assert!(err.contains("(request id: "), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_still_throttled_after_the_backoff_fails_with_the_reason() {
    // One create per minute: the KEK takes it, and the imports stay throttled through the
    // whole backoff (0.1 to 1.6 s at this client window).
    let env = common::start_throttled("create=1,other=2000", 60_000).await;
    env.with_kek().await;
    batch_of(&env, 2);
    let out = env
        .run(&[
            "-o",
            "json",
            "batch-import",
            "--manifest",
            "keys.toml",
            "--dir",
            "pkgs",
            "--pace-window-ms",
            "1000",
        ])
        .await;
    assert!(!out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["failed"], 2, "{report}");
    // Each import: the first try and 5 retries.
    assert_eq!(report["throttled"], 12, "{report}");
    let error = report["keys"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("HTTP 429 Throttled")
            && error.contains("still did after backing off")
            && error.contains("(request id: "),
        "{error}"
    );
}
