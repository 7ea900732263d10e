//! Fidelity to the real service (issue 14): one test per behaviour, each citing its source in
//! docs/azure-behaviour.md (a repository and path, or a Learn URL), or saying "inferred:
//! stricter choice" where the service's answer was not found.

mod common;

use byok_core::target::{Curve, KeyKind};
use byok_core::{TargetKey, b64};
use common::{Emu, byok, code, import_body_crv, message};
use kv_emulator::{Flavor, Sku, ThrottleConfig, ThrottleLimits};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use std::time::Duration;

/// Sends with the token; returns status, headers and JSON body (Null when empty), and the
/// raw body text.
async fn raw(
    emu: &Emu,
    method: Method,
    url: &str,
    body: Option<Value>,
) -> (u16, HeaderMap, Value, String) {
    let mut req = emu.http.request(method, url).bearer_auth(&emu.token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, headers, json, text)
}

fn inner(body: &Value) -> Option<&str> {
    body["error"]["innererror"]["code"].as_str()
}

fn has_inner(body: &Value) -> bool {
    body["error"]
        .as_object()
        .unwrap()
        .contains_key("innererror")
}

fn request_id(headers: &HeaderMap) -> String {
    headers["x-ms-request-id"].to_str().unwrap().to_string()
}

async fn emu_with(flavor: Flavor, tweak: impl FnOnce(&mut kv_emulator::Config)) -> Emu {
    let dir = tempfile::tempdir().unwrap();
    Emu::start_with(dir, |c| {
        c.flavor = flavor;
        tweak(c);
    })
    .await
}

// ---- 7. Response details ----------------------------------------------------------------

/// Source: docs/azure-behaviour.md 7a: `x-ms-request-id` (a UUID) on every KV and MHSM answer
/// (R-PURGE, R-MHSM-OCT); `x-ms-keyvault-service-version` on KV only.
#[tokio::test]
async fn every_answer_carries_a_fresh_request_id_and_a_vault_its_service_version() {
    let emu = Emu::start(Flavor::Vault).await;
    let mut ids = Vec::new();
    for path in ["/keys", "/keys/missing", "/secrets/x"] {
        let (status, headers, _, _) = raw(&emu, Method::GET, &emu.url(path), None).await;
        let id = request_id(&headers);
        let parts: Vec<&str> = id.split('-').collect();
        let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
        assert_eq!(lens, [8, 4, 4, 4, 12], "{path} ({status}): {id}");
        assert!(
            id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()),
            "{id}"
        );
        assert!(
            headers.contains_key("x-ms-keyvault-service-version"),
            "{path}"
        );
        ids.push(id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 3, "request ids are fresh: {ids:?}");
    // A 401 carries one too.
    let resp = emu.http.get(emu.url("/keys")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("x-ms-request-id"));

    let mhsm = Emu::start(Flavor::ManagedHsm).await;
    let (_, headers, _, _) = raw(&mhsm, Method::GET, &mhsm.url("/keys"), None).await;
    assert_eq!(request_id(&headers).len(), 36);
    assert!(!headers.contains_key("x-ms-keyvault-service-version"));
}

/// Source: docs/azure-behaviour.md 7b: "`innererror` is left out when there is none" (404
/// KeyNotFound, 400 BadParameter recordings, R-RECOVER, R-RESUME).
#[tokio::test]
async fn error_bodies_leave_innererror_out_when_there_is_none() {
    let emu = Emu::start(Flavor::Vault).await;
    let (s, _, body, _) = raw(&emu, Method::GET, &emu.url("/keys/missing"), None).await;
    assert_eq!((s, code(&body)), (404, "KeyNotFound"));
    assert!(!has_inner(&body), "{body}");
    let (s, b) = emu.create("bad", json!({"kty": "DSA"})).await;
    assert_eq!((s, code(&b)), (400, "BadParameter"));
    assert!(!has_inner(&b), "{b}");
    assert_eq!(b["error"].as_object().unwrap().len(), 2, "{b}");
}

/// Source: docs/azure-behaviour.md 7b: MHSM messages end with `(Activity ID: <x-ms-request-id>)`
/// (R-MHSM-NOPOLICY, `Azure/azure-sdk-for-js` `sdk/keyvault/keyvault-keys/recordings/browsers/
/// keys_client__create_read_update_and_delete_operations_for_managed_hsm_releasekey/
/// recording_errors_when_key_is_exportable_without_a_release_policy.json`); KV's do not.
#[tokio::test]
async fn managed_hsm_error_messages_end_with_the_activity_id() {
    let mhsm = Emu::start(Flavor::ManagedHsm).await;
    let (s, headers, body, _) = raw(&mhsm, Method::GET, &mhsm.url("/keys/missing"), None).await;
    assert_eq!((s, code(&body)), (404, "KeyNotFound"));
    let id = request_id(&headers);
    assert!(
        message(&body).ends_with(&format!(" (Activity ID: {id})")),
        "{body}"
    );
    let emu = Emu::start(Flavor::Vault).await;
    let (_, _, body, _) = raw(&emu, Method::GET, &emu.url("/keys/missing"), None).await;
    assert!(!message(&body).contains("Activity ID"), "{body}");
}

/// Source: docs/azure-behaviour.md 7d: MHSM attributes carry `exportable` even when false
/// (R-MHSM-OCT); Premium-vault HSM keys carry `"exportable": false` and `hsmPlatform` as a
/// string (az CLI output, index ids 52768290526, 52924324645).
#[tokio::test]
async fn attributes_carry_exportable_and_hsm_platform_where_the_service_sends_them() {
    let mhsm = Emu::start(Flavor::ManagedHsm).await;
    let (s, b) = mhsm.create("m", json!({"kty": "EC-HSM"})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["attributes"]["exportable"], json!(false));
    let listed = mhsm.call(Method::GET, "/keys", None).await.1;
    assert_eq!(listed["value"][0]["attributes"]["exportable"], json!(false));

    let emu = Emu::start(Flavor::Vault).await;
    let (_, hsm) = emu.create("h", json!({"kty": "EC-HSM"})).await;
    assert_eq!(hsm["attributes"]["exportable"], json!(false));
    assert_eq!(hsm["attributes"]["hsmPlatform"], json!("2"));
    let (_, soft) = emu.create("s", json!({"kty": "EC"})).await;
    assert!(soft["attributes"].get("exportable").is_none(), "{soft}");
    assert!(soft["attributes"].get("hsmPlatform").is_none(), "{soft}");
}

/// Source: docs/azure-behaviour.md 7b, R-MHSM-NOPOLICY and
/// `…_releasekey/recording_errors_when_a_key_has_a_release_policy_but_is_not_exportable.json`
/// (Azure/azure-sdk-for-js): 400 BadParameter, the exact messages.
#[tokio::test]
async fn exportable_keys_need_a_release_policy_and_only_they_may_have_one() {
    let mhsm = Emu::start(Flavor::ManagedHsm).await;
    let policy = json!({"contentType": "application/json; charset=utf-8", "data": "eyJ9"});
    let cases = [
        (
            json!({"kty": "RSA", "attributes": {"exportable": true}}),
            "Exportable keys must have release policy",
        ),
        (
            json!({"kty": "RSA", "release_policy": policy}),
            "Non-exportable keys must not have release policy",
        ),
        (
            json!({"kty": "RSA", "attributes": {"exportable": false}, "release_policy": policy}),
            "Non-exportable keys must not have release policy",
        ),
    ];
    for (body, want) in cases {
        let (s, headers, b, _) = raw(
            &mhsm,
            Method::POST,
            &mhsm.url("/keys/exportablenopolicy/create"),
            Some(body),
        )
        .await;
        assert_eq!((s, code(&b)), (400, "BadParameter"), "{b}");
        let id = request_id(&headers);
        assert_eq!(message(&b), format!("{want} (Activity ID: {id})"));
        assert!(!has_inner(&b));
    }
    let ok = json!({"kty": "RSA", "attributes": {"exportable": true}, "release_policy": policy});
    let (s, b) = mhsm.create("exportable", ok).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["attributes"]["exportable"], json!(true));
}

// ---- 3. base64url ---------------------------------------------------------------------------

/// Source: docs/azure-behaviour.md section 3 (`bruj0/vault-recovery-key` issue #20, the service's
/// message for unwrapKey's `value`). For JWK members and `key_hsm` the wording is inferred by
/// analogy; refusing padding, the standard alphabet and whitespace is the stricter choice.
#[tokio::test]
async fn base64url_fields_refuse_standard_base64_padding_and_whitespace() {
    let emu = Emu::start(Flavor::Vault).await;
    let want =
        |f: &str| format!("Content of '{f}' is not base64url.\r\nProperty '{f}' is required.\r\n");
    emu.create("ec", json!({"kty": "EC"})).await;
    let digest = [0xfbu8; 32]; // base64: "+/v7...", base64url: "-_v7..."
    let good = b64::encode(&digest);
    let standard = good.replace('-', "+").replace('_', "/");
    for value in [
        format!("{good}="),
        standard,
        format!("{} {}", &good[..8], &good[8..]),
    ] {
        let (s, b) = emu
            .call(
                Method::POST,
                "/keys/ec//sign",
                Some(json!({"alg": "ES256", "value": value})),
            )
            .await;
        assert_eq!((s, code(&b)), (400, "BadParameter"), "{value}: {b}");
        assert_eq!(message(&b), want("value"));
        assert!(!has_inner(&b));
    }
    let (s, _) = emu
        .call(
            Method::POST,
            "/keys/ec//sign",
            Some(json!({"alg": "ES256", "value": good})),
        )
        .await;
    assert_eq!(s, 200);

    // A JWK member (inferred wording).
    let key = TargetKey::generate(KeyKind::Oct { bits: 256 }).unwrap();
    let mhsm = Emu::start(Flavor::ManagedHsm).await;
    let k = format!("{}=", b64::encode(key.plaintext()));
    let (s, b) = mhsm
        .call(
            Method::PUT,
            "/keys/aes",
            Some(json!({"key": {"kty": "oct-HSM", "k": k}})),
        )
        .await;
    assert_eq!((s, code(&b)), (400, "BadParameter"), "{b}");
    assert!(message(&b).starts_with(&want("k")), "{b}");

    // key_hsm (inferred wording): standard base64 of a good package.
    let kek = emu.kek("KEK", 2048).await;
    let target = TargetKey::generate(KeyKind::Ec { curve: Curve::P256 }).unwrap();
    let file = byok(&kek, target.plaintext());
    use base64ct::Encoding;
    let mut body = import_body_crv("EC-HSM", Some("P-256"), &file);
    body["key"]["key_hsm"] = json!(base64ct::Base64::encode_string(&file));
    let (s, b) = emu.call(Method::PUT, "/keys/t", Some(body)).await;
    assert_eq!((s, code(&b)), (400, "BadParameter"), "{b}");
    assert_eq!(message(&b), want("key_hsm"));
    let body = import_body_crv("EC-HSM", Some("P-256"), &file);
    assert_eq!(emu.call(Method::PUT, "/keys/t", Some(body)).await.0, 200);
}

// ---- 4. key_hsm key types ---------------------------------------------------------------

/// Source: the BYOK specification (MicrosoftDocs/azure-security-docs
/// `articles/key-vault/keys/byok-specification.md`): BYOK bodies carry `RSA-HSM` or `EC-HSM`
/// (AES: Managed HSM only), and "To import an EC key, you must specify key type and the
/// curve name." The 400 BadParameter answers are inferred: stricter choice.
#[tokio::test]
async fn key_hsm_imports_take_hsm_key_types_and_ec_names_its_curve() {
    let emu = Emu::start(Flavor::Vault).await;
    let kek = emu.kek("KEK", 2048).await;
    let ec = TargetKey::generate(KeyKind::Ec { curve: Curve::P256 }).unwrap();
    let file = byok(&kek, ec.plaintext());
    for (kty, crv, needle) in [
        ("EC", Some("P-256"), "'kty'"),
        ("RSA", None, "'kty'"),
        ("oct-HSM", None, "Managed HSM only"),
        ("EC-HSM", None, "'crv'"),
    ] {
        let (s, b) = emu
            .call(
                Method::PUT,
                "/keys/t",
                Some(import_body_crv(kty, crv, &file)),
            )
            .await;
        assert_eq!((s, code(&b)), (400, "BadParameter"), "{kty}: {b}");
        assert!(message(&b).contains(needle), "{kty}: {b}");
    }
    assert_eq!(emu.call(Method::GET, "/keys/t", None).await.0, 404);
    let (s, b) = emu
        .call(
            Method::PUT,
            "/keys/t",
            Some(import_body_crv("EC-HSM", Some("P-256"), &file)),
        )
        .await;
    assert_eq!(s, 200, "{b}");

    // oct-HSM with key_hsm on a Managed HSM.
    let mhsm = Emu::start(Flavor::ManagedHsm).await;
    let kek = mhsm.kek("KEK", 2048).await;
    let aes = TargetKey::generate(KeyKind::Oct { bits: 256 }).unwrap();
    let body = import_body_crv("oct-HSM", None, &byok(&kek, aes.plaintext()));
    let (s, b) = mhsm.call(Method::PUT, "/keys/aes", Some(body)).await;
    assert_eq!(s, 200, "{b}");
}

// ---- 2. Paging --------------------------------------------------------------------------

/// Source: docs/azure-behaviour.md 2a (`Azure/azure-rest-api-specs`
/// `specification/keyvault/data-plane/Microsoft.KeyVault/stable/7.6/examples/GetKeys-example.json`):
/// absolute nextLink with an explicit port, `api-version` first, an opaque base64url-of-JSON
/// `$skiptoken`, then `maxresults`; the last page has `"nextLink": null`. 2b (R-PURGEALL):
/// empty pages with a nextLink occur; here, the first page of a list longer than one page.
#[tokio::test]
async fn next_links_are_absolute_and_empty_pages_must_be_followed() {
    let emu = Emu::start(Flavor::Vault).await;
    for n in ["a", "b", "c", "d", "e"] {
        emu.create(n, json!({"kty": "EC"})).await;
    }
    let first = emu.call(Method::GET, "/keys?maxresults=2", None).await.1;
    assert_eq!(first["value"], json!([]), "{first}");
    let mut link = first["nextLink"].as_str().unwrap().to_string();
    let prefix = format!("{}/keys?api-version=7.4&$skiptoken=", emu.conn.vault_url);
    assert!(
        emu.conn
            .vault_url
            .rsplit(':')
            .next()
            .unwrap()
            .parse::<u16>()
            .is_ok()
    );
    let mut names = Vec::new();
    loop {
        assert!(link.starts_with(&prefix), "{link}");
        assert!(link.ends_with("&maxresults=2"), "{link}");
        let token = &link[prefix.len()..link.len() - "&maxresults=2".len()];
        let decoded: Value = serde_json::from_slice(&b64::decode("t", token).unwrap()).unwrap();
        assert!(decoded["NextMarker"].is_string(), "{decoded}");
        let (s, _, page, _) = raw(&emu, Method::GET, &link, None).await;
        assert_eq!(s, 200);
        for item in page["value"].as_array().unwrap() {
            names.push(
                item["kid"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string(),
            );
        }
        assert!(page.as_object().unwrap().contains_key("nextLink"));
        match page["nextLink"].as_str() {
            Some(next) => link = next.to_string(),
            None => break,
        }
    }
    assert_eq!(names, ["a", "b", "c", "d", "e"]);
    // A list within one page: no empty page, and nextLink null.
    let all = emu.call(Method::GET, "/keys", None).await.1;
    assert_eq!(all["value"].as_array().unwrap().len(), 5);
    assert_eq!(all["nextLink"], Value::Null);
    assert!(all.as_object().unwrap().contains_key("nextLink"));
}

/// Source: Learn "Get Keys" (https://learn.microsoft.com/en-us/rest/api/keyvault/keys/get-keys/get-keys?view=rest-keyvault-keys-2025-07-01):
/// maxresults 1 to 25. The error for other values is inferred: stricter choice (400
/// BadParameter).
#[tokio::test]
async fn maxresults_outside_1_to_25_is_bad_parameter() {
    let emu = Emu::start(Flavor::Vault).await;
    for m in ["0", "26", "-1", "x", "1000"] {
        let (s, b) = emu
            .call(Method::GET, &format!("/keys?maxresults={m}"), None)
            .await;
        assert_eq!((s, code(&b)), (400, "BadParameter"), "{m}: {b}");
        assert!(message(&b).contains("maxresults"), "{b}");
    }
    for m in ["1", "25"] {
        let (s, _) = emu
            .call(Method::GET, &format!("/keys?maxresults={m}"), None)
            .await;
        assert_eq!(s, 200, "{m}");
    }
    let (s, b) = emu
        .call(Method::GET, "/keys?$skiptoken=notatoken", None)
        .await;
    assert_eq!((s, code(&b)), (400, "BadParameter"), "{b}");
}

/// Source: docs/azure-behaviour.md 2c (`Azure/azure-sdk-for-net`
/// `sdk/keyvault/Azure.Security.KeyVault.Keys/tests/SessionRecords/KeyClientLiveTests/GetPropertiesOfKeyVersionsNonExisting.json`).
#[tokio::test]
async fn versions_of_a_missing_key_are_an_empty_list_not_a_404() {
    let emu = Emu::start(Flavor::Vault).await;
    let (s, _, _, text) = raw(
        &emu,
        Method::GET,
        &emu.url("/keys/812450801/versions"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(text, r#"{"value":[],"nextLink":null}"#);
}

// ---- 1. Soft delete timing --------------------------------------------------------------

/// Source: docs/azure-behaviour.md section 1: R-PURGE (404 "Deleted Key not found" while the
/// deletion runs, no innererror; 204 purge), Azure/azure-sdk-for-cpp
/// `sdk/keyvault/azure-security-keyvault-keys/test/ut/key_client_delete_test_live.cpp` (the
/// 409 messages, DoubleDeleteBeforePollComplete), the recorded purge 409 (1e), R-RECOVER (GET
/// 404 after recover). The create 409s' innererror codes are inferred (1d).
#[tokio::test]
async fn a_deletion_and_a_recovery_run_for_the_delay() {
    const DELAY: u64 = 2500;
    // The delay runs by a held clock the test moves: "still deleting" cannot turn into
    // "deleted" while the test looks, and "after the delay" needs no sleep.
    let clock = kv_emulator::Clock::held();
    let emu = emu_with(Flavor::Vault, |c| {
        c.delete_delay_ms = DELAY;
        c.clock = clock.clone();
    })
    .await;
    let wait = || async { clock.advance(Duration::from_millis(DELAY + 300)) };
    emu.create("k", json!({"kty": "EC"})).await;
    let (s, b) = emu.call(Method::DELETE, "/keys/k", None).await;
    assert_eq!(s, 200, "{b}");
    assert!(
        b["recoveryId"]
            .as_str()
            .unwrap()
            .ends_with("/deletedkeys/k")
    );

    let (s, b) = emu.call(Method::GET, "/deletedkeys/k", None).await;
    assert_eq!((s, code(&b)), (404, "KeyNotFound"));
    assert_eq!(message(&b), "Deleted Key not found: k");
    assert!(!has_inner(&b), "{b}");
    let (s, b) = emu.create("k", json!({"kty": "EC"})).await;
    assert_eq!((s, code(&b)), (409, "Conflict"));
    assert_eq!(
        message(&b),
        "Key k is currently being deleted and cannot be re-created; retry later."
    );
    assert_eq!(inner(&b), Some("ObjectIsBeingDeleted"));
    let (s, b) = emu.call(Method::DELETE, "/deletedkeys/k", None).await;
    assert_eq!((s, code(&b)), (409, "Conflict"));
    assert_eq!(message(&b), "Key is currently being deleted.");
    assert_eq!(inner(&b), Some("ObjectIsBeingDeleted"));
    let (s, b) = emu.call(Method::DELETE, "/keys/k", None).await;
    assert_eq!((s, code(&b)), (404, "KeyNotFound"));
    let listed = emu.call(Method::GET, "/deletedkeys", None).await.1;
    assert_eq!(listed["value"], json!([]));

    wait().await;
    let (s, b) = emu.call(Method::GET, "/deletedkeys/k", None).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = emu.create("k", json!({"kty": "EC"})).await;
    assert_eq!((s, code(&b)), (409, "Conflict"));
    assert_eq!(
        message(&b),
        "Key k is currently in a deleted but recoverable state, and its name cannot be \
         reused; in this state, the key can only be recovered or purged."
    );
    assert_eq!(inner(&b), Some("ObjectIsDeletedButRecoverable"));

    let (s, b) = emu.call(Method::POST, "/deletedkeys/k/recover", None).await;
    assert_eq!(s, 200, "{b}");
    assert!(
        b["key"]["kid"].is_string() && b.get("recoveryId").is_none(),
        "{b}"
    );
    let (s, b) = emu.call(Method::GET, "/keys/k", None).await;
    assert_eq!((s, code(&b)), (404, "KeyNotFound"), "{b}");
    wait().await;
    assert_eq!(emu.call(Method::GET, "/keys/k", None).await.0, 200);

    emu.call(Method::DELETE, "/keys/k", None).await;
    wait().await;
    let (s, headers, _, text) = raw(&emu, Method::DELETE, &emu.url("/deletedkeys/k"), None).await;
    assert_eq!(s, 204);
    assert_eq!(text, "");
    assert!(headers.contains_key("x-ms-request-id"));
}

/// Source: docs/azure-behaviour.md 1b (MHSM: GET /deletedkeys straight after DELETE is 200,
/// R-MHSM-OCT) and 1d (the "deleted but recoverable" conflict).
#[tokio::test]
async fn with_no_delay_a_deletion_is_at_once_as_on_managed_hsm() {
    let emu = Emu::start(Flavor::ManagedHsm).await;
    emu.create("k", json!({"kty": "EC-HSM"})).await;
    assert_eq!(emu.call(Method::DELETE, "/keys/k", None).await.0, 200);
    let (s, b) = emu.call(Method::GET, "/deletedkeys/k", None).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = emu.create("k", json!({"kty": "EC-HSM"})).await;
    assert_eq!((s, code(&b)), (409, "Conflict"));
    assert_eq!(inner(&b), Some("ObjectIsDeletedButRecoverable"));
    let (s, _, _, text) = raw(&emu, Method::DELETE, &emu.url("/deletedkeys/k"), None).await;
    assert_eq!((s, text.as_str()), (204, ""));
}

// ---- 6. Throttling ----------------------------------------------------------------------

fn throttle(limits: ThrottleLimits, window_ms: u64) -> Option<ThrottleConfig> {
    Some(ThrottleConfig { limits, window_ms })
}

/// Asserts the service's 429 (docs/azure-behaviour.md 6b: vcsjones/AzureSignTool issue #219,
/// dotnet/sign issue #403): code Throttled, its message, no innererror, no Retry-After.
fn assert_throttled(status: u16, headers: &HeaderMap, body: &Value) {
    assert_eq!((status, code(body)), (429, "Throttled"), "{body}");
    assert_eq!(
        message(body),
        "Request was not processed because too many requests were received. Reason: \
         VaultRequestTypeLimitReached"
    );
    assert!(!has_inner(body));
    assert!(!headers.contains_key("retry-after"));
}

/// Source: Learn https://learn.microsoft.com/en-us/azure/key-vault/general/service-limits
/// (MicrosoftDocs/azure-docs `includes/key-vault-limits.md`), docs/azure-behaviour.md 6a:
/// weighted limits enforced on their sum, an RSA 4096 HSM transaction costing 8 of the 2,000
/// (here: explicit limits with the same weights), and ONE budget for HSM and software keys
/// ("only one of the following ... 4,000 RSA 2,048-bit software-key GET transactions; 2,000
/// RSA 2,048-bit HSM-key GET transactions ..."); 429 body from 6b.
#[tokio::test]
async fn hsm_key_transactions_are_throttled_on_their_weighted_sum() {
    let limits = ThrottleLimits::Explicit {
        create: 2,
        other: 16,
    };
    let emu = emu_with(Flavor::Vault, |c| c.throttle = throttle(limits, 120_000)).await;
    let (s, b) = emu
        .create("big", json!({"kty": "RSA-HSM", "key_size": 4096}))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(emu.create("ec", json!({"kty": "EC-HSM"})).await.0, 200);
    let (s, h, b, _) = raw(
        &emu,
        Method::POST,
        &emu.url("/keys/third/create"),
        Some(json!({"kty": "EC-HSM"})),
    )
    .await;
    assert_throttled(s, &h, &b);
    // Software keys share the budget: it is spent, so a software-key create is refused too.
    let (s, h, b, _) = raw(
        &emu,
        Method::POST,
        &emu.url("/keys/soft/create"),
        Some(json!({"kty": "EC"})),
    )
    .await;
    assert_throttled(s, &h, &b);

    for _ in 0..2 {
        assert_eq!(emu.call(Method::GET, "/keys/big", None).await.0, 200);
    }
    let (s, h, b, _) = raw(&emu, Method::GET, &emu.url("/keys/big"), None).await;
    assert_throttled(s, &h, &b);
    // Everything else on HSM keys is throttled too, until the window passes.
    let (s, h, b, _) = raw(&emu, Method::GET, &emu.url("/keys/ec"), None).await;
    assert_throttled(s, &h, &b);
}

/// Source: MicrosoftDocs/azure-security-docs `articles/key-vault/general/overview-throttling.md`:
/// "Failed requests that return a 429 do not count towards the throttle limits".
#[tokio::test]
async fn throttled_requests_do_not_count_towards_the_limits() {
    let limits = ThrottleLimits::Explicit {
        create: 1,
        other: 1000,
    };
    // The windows are counted by a held clock the test moves: no sleep, no race.
    let clock = kv_emulator::Clock::held();
    let emu = emu_with(Flavor::Vault, |c| {
        c.throttle = throttle(limits, 2000);
        c.clock = clock.clone();
    })
    .await;
    assert_eq!(emu.create("a", json!({"kty": "EC-HSM"})).await.0, 200);
    clock.advance(Duration::from_millis(1300));
    let (s, b) = emu.create("b", json!({"kty": "EC-HSM"})).await;
    assert_eq!((s, code(&b)), (429, "Throttled"));
    // 2.3 s after the first create its unit is free; the 429 at 1.3 s took none.
    clock.advance(Duration::from_millis(1000));
    let (s, b) = emu.create("b", json!({"kty": "EC-HSM"})).await;
    assert_eq!(s, 200, "{b}");
}

/// Source: the published table (Learn service-limits page): 10 HSM-key creates per 10 s.
#[tokio::test]
async fn the_azure_table_allows_ten_hsm_key_creates_per_window() {
    let emu = emu_with(Flavor::Vault, |c| {
        c.throttle = throttle(ThrottleLimits::Azure, 60_000)
    })
    .await;
    for i in 0..10 {
        let (s, b) = emu.create(&format!("k{i}"), json!({"kty": "EC-HSM"})).await;
        assert_eq!(s, 200, "{i}: {b}");
    }
    let (s, h, b, _) = raw(
        &emu,
        Method::POST,
        &emu.url("/keys/k10/create"),
        Some(json!({"kty": "EC-HSM"})),
    )
    .await;
    assert_throttled(s, &h, &b);
    // Imports are creates too.
    let (s, b) = emu
        .call(
            Method::PUT,
            "/keys/imp",
            Some(json!({"key": {"kty": "EC-HSM", "crv": "P-256", "key_hsm": "AAAA"}})),
        )
        .await;
    assert_eq!((s, code(&b)), (429, "Throttled"), "{b}");
    assert_eq!(emu.call(Method::GET, "/keys/k0", None).await.0, 200);
}

/// Source: the same include's Managed HSM table (Create Key: 1 per second) and the MHSM
/// scaling guidance ("Managed HSM does not throttle on cryptographic operation
/// transactions"); limiting only creates is the emulator's choice.
#[tokio::test]
async fn managed_hsm_throttles_key_creation_per_second() {
    let clock = kv_emulator::Clock::held();
    let emu = emu_with(Flavor::ManagedHsm, |c| {
        c.throttle = throttle(ThrottleLimits::Azure, 10_000);
        c.clock = clock.clone();
    })
    .await;
    assert_eq!(emu.create("a", json!({"kty": "EC-HSM"})).await.0, 200);
    let (s, b) = emu.create("b", json!({"kty": "EC-HSM"})).await;
    assert_eq!((s, code(&b)), (429, "Throttled"), "{b}");
    for _ in 0..50 {
        assert_eq!(emu.call(Method::GET, "/keys/a", None).await.0, 200);
    }
    clock.advance(Duration::from_millis(1100));
    assert_eq!(emu.create("b", json!({"kty": "EC-HSM"})).await.0, 200);
}

// ---- 5. SKU -----------------------------------------------------------------------------

/// Source: the message is the service's (Azure/azure-sdk-for-net issue #6551,
/// Azure/azure-sdk-for-js issue #18267, MicrosoftDocs/azure-docs issue #63888); the status and
/// code are inferred: stricter choice, 403 Forbidden (a well-formed request refused for what
/// the vault is). A Managed HSM has no tier.
#[tokio::test]
async fn a_standard_vault_refuses_hsm_keys() {
    let emu = emu_with(Flavor::Vault, |c| c.sku = Sku::Standard).await;
    let want = "Hardware key operation not allowed on standard vault";
    let (s, b) = emu
        .create("kek", json!({"kty": "RSA-HSM", "key_ops": ["import"]}))
        .await;
    assert_eq!((s, code(&b), message(&b)), (403, "Forbidden", want), "{b}");
    let (s, b) = emu.create("ec", json!({"kty": "EC-HSM"})).await;
    assert_eq!((s, message(&b)), (403, want));
    let byok_body = json!({"key": {"kty": "EC-HSM", "crv": "P-256", "key_hsm": "AAAA"}});
    let (s, b) = emu.call(Method::PUT, "/keys/t", Some(byok_body)).await;
    assert_eq!((s, message(&b)), (403, want), "{b}");
    // Software keys are fine.
    assert_eq!(emu.create("soft", json!({"kty": "RSA"})).await.0, 200);

    let mhsm = emu_with(Flavor::ManagedHsm, |c| c.sku = Sku::Standard).await;
    assert_eq!(mhsm.create("ec", json!({"kty": "EC-HSM"})).await.0, 200);
}
