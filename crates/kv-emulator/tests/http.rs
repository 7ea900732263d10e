//! HTTP-level tests over real HTTPS: every route, the error codes, the auth challenge, token
//! expiry and audience, BYOK import, and that a failed request changes no state.

mod common;

use byok_core::jwk::PublicJwk;
use byok_core::target::{Curve, KeyKind};
use byok_core::{TargetKey, b64};
use common::{Emu, byok, code, import_body, import_body_crv, kek_public, message};
use kv_emulator::Flavor;
use reqwest::Method;
use serde_json::{Value, json};

/// Every data-plane route, for the auth tests.
const ROUTES: [(&str, &str); 15] = [
    ("GET", "/keys"),
    ("GET", "/keys/k"),
    ("GET", "/keys/k/"),
    ("PUT", "/keys/k"),
    ("DELETE", "/keys/k"),
    ("POST", "/keys/k/create"),
    ("GET", "/keys/k/versions"),
    ("GET", "/keys/k/0123456789abcdef0123456789abcdef"),
    ("PATCH", "/keys/k/0123456789abcdef0123456789abcdef"),
    ("POST", "/keys/k/0123456789abcdef0123456789abcdef/sign"),
    ("POST", "/keys/k//encrypt"),
    ("GET", "/deletedkeys"),
    ("GET", "/deletedkeys/k"),
    ("DELETE", "/deletedkeys/k"),
    ("POST", "/deletedkeys/k/recover"),
];

async fn assert_all_routes_refuse(emu: &Emu, token: Option<&str>, why: &str) {
    for (method, path) in ROUTES {
        let method: Method = method.parse().unwrap();
        let mut req = emu.http.request(method.clone(), emu.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{why}: {method} {path}");
        let challenge = resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(
            challenge,
            format!(
                "Bearer authorization=\"{}/{}\", resource=\"https://vault.azure.net:{}\"",
                emu.conn.authority_host,
                emu.conn.tenant_id,
                emu.conn.vault_address.unwrap().port()
            ),
            "{method} {path}"
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(code(&body), "Unauthorized");
        assert!(
            message(&body).contains(why),
            "{why}: {method} {path}: {body}"
        );
    }
}

#[tokio::test]
async fn every_route_refuses_missing_wrong_audience_and_badly_signed_tokens() {
    let emu = Emu::start(Flavor::Vault).await;
    assert_all_routes_refuse(&emu, None, "missing a Bearer").await;
    let other = emu.token_for("https://management.azure.com").await;
    assert_all_routes_refuse(&emu, Some(&other), "audience").await;
    // The same claims with a wrong signature: change the signature's first character (all six
    // of its bits count, unlike the last character's).
    let dot = emu.token.rfind('.').unwrap();
    let mut tampered = emu.token.clone();
    let first = tampered.as_bytes()[dot + 1];
    tampered.replace_range(dot + 1..dot + 2, if first == b'A' { "B" } else { "A" });
    assert_all_routes_refuse(&emu, Some(&tampered), "signature").await;
    assert_all_routes_refuse(&emu, Some("abc"), "validated").await;
    // A token from another emulator (another signing key, issuer and tenant).
    let stranger = Emu::start(Flavor::Vault).await;
    assert_all_routes_refuse(&emu, Some(&stranger.token), "AKV100").await;
}

/// An expired token gets the service's text (microsoft/confidential-sidecar-containers docs,
/// docs/azure-behaviour.md 10c). The tokens are issued already expired (a negative lifetime),
/// so nothing waits for a clock.
#[tokio::test]
async fn expired_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emu::start_with(dir, |c| c.token_lifetime_secs = -5).await;
    let (status, body) = emu.call(Method::GET, "/keys", None).await;
    assert_eq!(status, 401);
    assert_eq!(
        message(&body),
        "[TokenExpired] Error validating token: 'S2S12086'.",
        "{body}"
    );
    assert_all_routes_refuse(&emu, Some(&emu.token), "[TokenExpired]").await;
}

#[tokio::test]
async fn token_endpoint_refuses_bad_clients() {
    let emu = Emu::start(Flavor::Vault).await;
    let post = |tenant: String, secret: &str| {
        emu.http
            .post(format!(
                "{}/{tenant}/oauth2/v2.0/token",
                emu.conn.authority_host
            ))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", emu.conn.client_id.as_str()),
                ("client_secret", secret),
                ("scope", "https://vault.azure.net/.default"),
            ])
            .send()
    };
    let resp = post(emu.conn.tenant_id.clone(), "wrong").await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(body["error_codes"], json!([7000215]));
    let resp = post("other-tenant".into(), &emu.conn.client_secret)
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn api_version_is_required_and_checked() {
    let emu = Emu::start(Flavor::Vault).await;
    for query in ["", "?api-version=6.0", "?api-version=7.7"] {
        let resp = emu
            .http
            .get(format!("{}/keys{query}", emu.conn.vault_url))
            .bearer_auth(&emu.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{query}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(code(&body), "BadParameter");
    }
    for v in ["7.0", "7.3", "7.6", "2025-07-01"] {
        let resp = emu
            .http
            .get(format!("{}/keys?api-version={v}", emu.conn.vault_url))
            .bearer_auth(&emu.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{v}");
    }
}

#[tokio::test]
async fn create_validates_as_the_service_does() {
    let emu = Emu::start(Flavor::Vault).await;
    let kek = emu.kek("KEKforBYOK", 4096).await;
    assert_eq!(kek["key"]["kty"], "RSA-HSM");
    assert_eq!(kek["key"]["key_ops"], json!(["import"]));
    assert!(kek["key"].get("d").is_none());
    assert_eq!(kek_public(&kek).bits(), 4096);
    let version = kek["key"]["kid"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(version.len(), 32);

    let (s, ec) = emu
        .create("ec", json!({"kty": "EC-HSM", "crv": "P-384"}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(ec["key"]["crv"], "P-384");
    assert_eq!(ec["key"]["key_ops"], json!(["sign", "verify"]));

    let bad = [
        json!({"kty": "RSA-HSM", "key_ops": ["import", "sign"]}),
        json!({"kty": "EC-HSM", "key_ops": ["import"]}),
        json!({"kty": "RSA-HSM", "key_size": 1024}),
        json!({"kty": "EC", "crv": "P-192"}),
        json!({"kty": "oct-HSM", "key_size": 256}),
        json!({"kty": "DSA"}),
        json!({"kty": "EC", "key_ops": ["encrypt"]}),
        json!({"kty": "RSA", "key_ops": ["fly"]}),
        json!({"key_size": 2048}),
    ];
    for body in bad {
        let (s, b) = emu.create("bad", body.clone()).await;
        assert_eq!((s, code(&b)), (400, "BadParameter"), "{body}");
    }
    let (s, _) = emu.create("bad_name", json!({"kty": "RSA"})).await;
    assert_eq!(s, 400);
    // None of the failures made a key.
    let (s, b) = emu.call(Method::GET, "/keys/bad", None).await;
    assert_eq!((s, code(&b)), (404, "KeyNotFound"));
}

#[tokio::test]
async fn get_list_versions_and_paging() {
    let emu = Emu::start(Flavor::Vault).await;
    let first = emu.create("k", json!({"kty": "EC"})).await.1;
    let second = emu.create("k", json!({"kty": "EC"})).await.1;
    assert_ne!(first["key"]["kid"], second["key"]["kid"]);
    let latest = emu.call(Method::GET, "/keys/k", None).await.1;
    assert_eq!(latest["key"]["kid"], second["key"]["kid"]);
    let v1 = first["key"]["kid"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    let got = emu
        .call(Method::GET, &format!("/keys/k/{v1}"), None)
        .await
        .1;
    assert_eq!(got["key"]["x"], first["key"]["x"]);
    let (s, _) = emu
        .call(
            Method::GET,
            "/keys/k/0123456789abcdef0123456789abcdef",
            None,
        )
        .await;
    assert_eq!(s, 404);
    let versions = emu.call(Method::GET, "/keys/k/versions", None).await.1;
    assert_eq!(versions["value"].as_array().unwrap().len(), 2);
    for n in ["a", "b", "c"] {
        emu.create(n, json!({"kty": "EC"})).await;
    }
    // The first page of a list longer than a page is empty, with a nextLink (as the service
    // sometimes answers); then 3, then 1 and no nextLink.
    let page0 = emu.call(Method::GET, "/keys?maxresults=3", None).await.1;
    assert_eq!(page0["value"].as_array().unwrap().len(), 0);
    let mut next = page0["nextLink"].as_str().unwrap().to_string();
    let mut sizes = Vec::new();
    loop {
        let resp = emu
            .http
            .get(&next)
            .bearer_auth(&emu.token)
            .send()
            .await
            .unwrap();
        let page: Value = resp.json().await.unwrap();
        sizes.push(page["value"].as_array().unwrap().len());
        match page["nextLink"].as_str() {
            Some(link) => next = link.to_string(),
            None => break,
        }
    }
    assert_eq!(sizes, [3, 1]);
}

#[tokio::test]
async fn byok_import_unwraps_and_the_key_signs() {
    let emu = Emu::start(Flavor::Vault).await;
    let kek = emu.kek("KEKforBYOK", 2048).await;
    for kind in [
        KeyKind::Ec { curve: Curve::P256 },
        KeyKind::Ec {
            curve: Curve::P256K,
        },
        KeyKind::Rsa { bits: 2048 },
    ] {
        let target = TargetKey::generate(kind).unwrap();
        let file = byok(&kek, target.plaintext());
        let kty = if matches!(kind, KeyKind::Rsa { .. }) {
            "RSA-HSM"
        } else {
            "EC-HSM"
        };
        let crv = kind.curve().map(|c| c.name());
        let (s, bundle) = emu
            .call(
                Method::PUT,
                "/keys/target",
                Some(import_body_crv(kty, crv, &file)),
            )
            .await;
        assert_eq!(s, 200, "{bundle}");
        assert_eq!(bundle["key"]["kty"], kty);
        assert!(bundle["key"].get("d").is_none());
        let jwk: PublicJwk = serde_json::from_value(bundle["key"].clone()).unwrap();
        assert_eq!(&jwk.to_public_key().unwrap(), target.public_key().unwrap());

        // The vault signs with the imported key; the signature verifies locally.
        let digest = [7u8; 32];
        let alg = match kind {
            KeyKind::Ec { curve: Curve::P256 } => "ES256",
            KeyKind::Ec { .. } => "ES256K",
            _ => "PS256",
        };
        let (s, sig) = emu
            .call(
                Method::POST,
                "/keys/target//sign",
                Some(json!({"alg": alg, "value": b64::encode(&digest)})),
            )
            .await;
        assert_eq!(s, 200, "{sig}");
        let sig = b64::decode("value", sig["value"].as_str().unwrap()).unwrap();
        let ok = match kind {
            KeyKind::Ec { curve: Curve::P256 } => {
                use p256::ecdsa::signature::hazmat::PrehashVerifier;
                let vk =
                    p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1(target.public_key().unwrap()))
                        .unwrap();
                vk.verify_prehash(&digest, &p256::ecdsa::Signature::from_slice(&sig).unwrap())
                    .is_ok()
            }
            KeyKind::Ec { .. } => {
                let (_, v) = emu
                    .call(Method::POST, "/keys/target//verify", Some(json!({"alg": alg, "digest": b64::encode(&digest), "value": b64::encode(&sig)})))
                    .await;
                v["value"] == json!(true)
            }
            _ => {
                use rsa::pkcs8::DecodePublicKey;
                let pk =
                    rsa::PublicKey::from_public_key_der(target.public_key().unwrap().spki_der())
                        .unwrap();
                pk.verify(rsa::Pss::<sha2::Sha256>::new(), &digest, &sig)
                    .is_ok()
            }
        };
        assert!(ok, "{kind}");
    }
}

fn sec1(key: &byok_core::TargetPublicKey) -> Vec<u8> {
    let (x, y) = key.components();
    let mut out = vec![4u8];
    out.extend(x);
    out.extend(y);
    out
}

#[tokio::test]
async fn byok_failures_are_bad_parameter_and_change_nothing() {
    let emu = Emu::start(Flavor::Vault).await;
    let kek = emu.kek("KEK", 2048).await;
    let target = TargetKey::generate(KeyKind::Ec { curve: Curve::P256 }).unwrap();
    let good = byok(&kek, target.plaintext());

    // A KEK that can do more than import.
    let (_, multi) = emu
        .create("notkek", json!({"kty": "RSA-HSM", "key_size": 2048}))
        .await;
    let with_ops = byok(&multi, target.plaintext());
    // A KEK that is not HSM-backed.
    let (_, soft) = emu
        .create("softkek", json!({"kty": "RSA", "key_size": 2048}))
        .await;
    let soft_file = byok(&soft, target.plaintext());
    // A kid on another vault.
    let mut foreign: Value = serde_json::from_slice(&good).unwrap();
    foreign["header"]["kid"] =
        json!("https://contoso.vault.azure.net/keys/KEK/0123456789abcdef0123456789abcdef");
    // Tampered ciphertext.
    let mut tampered: Value = serde_json::from_slice(&good).unwrap();
    let mut ct = b64::decode("c", tampered["ciphertext"].as_str().unwrap()).unwrap();
    let last = ct.len() - 1;
    ct[last] ^= 1;
    tampered["ciphertext"] = json!(b64::encode(&ct));
    // An unknown KEK version.
    let mut unknown: Value = serde_json::from_slice(&good).unwrap();
    let kid = unknown["header"]["kid"].as_str().unwrap().to_string();
    unknown["header"]["kid"] = json!(format!(
        "{}0123456789abcdef0123456789abcdef",
        &kid[..kid.len() - 32]
    ));

    let cases: Vec<(Value, &str)> = vec![
        (import_body("EC-HSM", &with_ops), "only operation"),
        (import_body("EC-HSM", &soft_file), "must be RSA-HSM"),
        (
            import_body("EC-HSM", &serde_json::to_vec(&foreign).unwrap()),
            "another vault",
        ),
        (
            import_body("EC-HSM", &serde_json::to_vec(&tampered).unwrap()),
            "could not be unwrapped",
        ),
        (
            import_body("EC-HSM", &serde_json::to_vec(&unknown).unwrap()),
            "was not found",
        ),
        (import_body("RSA-HSM", &good), "declared kty"),
        (
            import_body("EC-HSM", b"not a package"),
            "not a valid BYOK package",
        ),
        (
            json!({"key": {"kty": "EC-HSM", "crv": "P-384", "key_hsm": b64::encode(&good)}}),
            "crv P-384",
        ),
        (
            json!({"key": {"kty": "EC-HSM", "crv": "P-256", "key_hsm": "%%%"}}),
            "not base64url",
        ),
    ];
    for (body, needle) in cases {
        let (s, b) = emu.call(Method::PUT, "/keys/target", Some(body)).await;
        assert_eq!((s, code(&b)), (400, "BadParameter"), "{needle}: {b}");
        assert!(message(&b).contains(needle), "{needle}: {}", message(&b));
    }
    let (s, _) = emu.call(Method::GET, "/keys/target", None).await;
    assert_eq!(s, 404, "a failed import left a key");
    // Standard base64 with padding is refused: the service's fields are base64url
    // (docs/azure-behaviour.md section 3; tests/fidelity.rs has the exact message).
    use base64ct::Encoding;
    let std_b64 = base64ct::Base64::encode_string(&good);
    let (s, b) = emu
        .call(
            Method::PUT,
            "/keys/target",
            Some(json!({"key": {"kty": "EC-HSM", "crv": "P-256", "key_hsm": std_b64}})),
        )
        .await;
    assert_eq!((s, code(&b)), (400, "BadParameter"), "{b}");
    assert!(message(&b).starts_with("Content of 'key_hsm' is not base64url."));
}

#[tokio::test]
async fn update_delete_recover_purge() {
    let emu = Emu::start(Flavor::Vault).await;
    emu.create("k", json!({"kty": "EC", "tags": {"a": "1"}}))
        .await;
    let (s, b) = emu
        .call(
            Method::PATCH,
            "/keys/k/",
            Some(json!({"attributes": {"enabled": false}, "tags": {"b": "2"}})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["attributes"]["enabled"], false);
    assert_eq!(b["tags"], json!({"b": "2"}));
    // A disabled key cannot sign.
    let (s, b) = emu
        .call(
            Method::POST,
            "/keys/k//sign",
            Some(json!({"alg": "ES256", "value": b64::encode(&[1u8; 32])})),
        )
        .await;
    assert_eq!((s, code(&b)), (403, "Forbidden"));
    let (s, b) = emu.call(Method::DELETE, "/keys/k", None).await;
    assert_eq!(s, 200);
    assert!(
        b["recoveryId"]
            .as_str()
            .unwrap()
            .ends_with("/deletedkeys/k")
    );
    assert_eq!(emu.call(Method::GET, "/keys/k", None).await.0, 404);
    let (s, b) = emu.create("k", json!({"kty": "EC"})).await;
    assert_eq!((s, code(&b)), (409, "Conflict"));
    let deleted = emu.call(Method::GET, "/deletedkeys", None).await.1;
    assert_eq!(deleted["value"].as_array().unwrap().len(), 1);
    assert_eq!(
        emu.call(Method::POST, "/deletedkeys/k/recover", None)
            .await
            .0,
        200
    );
    assert_eq!(emu.call(Method::GET, "/keys/k", None).await.0, 200);
    emu.call(Method::DELETE, "/keys/k", None).await;
    assert_eq!(
        emu.call(Method::DELETE, "/deletedkeys/k", None).await.0,
        204
    );
    assert_eq!(emu.call(Method::GET, "/deletedkeys/k", None).await.0, 404);
    assert_eq!(emu.create("k", json!({"kty": "EC"})).await.0, 200);
    // Unknown routes and methods.
    assert_eq!(emu.call(Method::GET, "/secrets/x", None).await.0, 404);
    assert_eq!(
        emu.call(
            Method::POST,
            "/keys/k/0123456789abcdef0123456789abcdef/fly",
            Some(json!({}))
        )
        .await
        .0,
        404
    );
}

#[tokio::test]
async fn rsa_and_aes_operations() {
    let emu = Emu::start(Flavor::Vault).await;
    emu.create("r", json!({"kty": "RSA", "key_size": 2048}))
        .await;
    let secret = b"0123456789abcdef0123456789abcdef";
    for alg in ["RSA-OAEP", "RSA-OAEP-256", "RSA1_5"] {
        let (s, enc) = emu
            .call(
                Method::POST,
                "/keys/r//encrypt",
                Some(json!({"alg": alg, "value": b64::encode(secret)})),
            )
            .await;
        assert_eq!(s, 200, "{enc}");
        let (s, dec) = emu
            .call(
                Method::POST,
                "/keys/r//decrypt",
                Some(json!({"alg": alg, "value": enc["value"]})),
            )
            .await;
        assert_eq!(s, 200);
        assert_eq!(
            b64::decode("v", dec["value"].as_str().unwrap()).unwrap(),
            secret
        );
    }
    for alg in ["RS256", "RS384", "RS512", "PS384"] {
        let len = if alg.ends_with("256") {
            32
        } else if alg.ends_with("384") {
            48
        } else {
            64
        };
        let digest = vec![3u8; len];
        let (s, sig) = emu
            .call(
                Method::POST,
                "/keys/r//sign",
                Some(json!({"alg": alg, "value": b64::encode(&digest)})),
            )
            .await;
        assert_eq!(s, 200, "{alg} {sig}");
        let (_, v) = emu
            .call(
                Method::POST,
                "/keys/r//verify",
                Some(json!({"alg": alg, "digest": b64::encode(&digest), "value": sig["value"]})),
            )
            .await;
        assert_eq!(v["value"], true, "{alg}");
    }
    // A wrong digest length is refused.
    let (s, _) = emu
        .call(
            Method::POST,
            "/keys/r//sign",
            Some(json!({"alg": "RS256", "value": b64::encode(&[1u8; 20])})),
        )
        .await;
    assert_eq!(s, 400);

    let mhsm = Emu::start(Flavor::ManagedHsm).await;
    let (s, b) = mhsm
        .create("aes", json!({"kty": "oct-HSM", "key_size": 256}))
        .await;
    assert_eq!(s, 200, "{b}");
    let key = [9u8; 32];
    let (s, w) = mhsm
        .call(
            Method::POST,
            "/keys/aes//wrapkey",
            Some(json!({"alg": "A256KW", "value": b64::encode(&key)})),
        )
        .await;
    assert_eq!(s, 200, "{w}");
    let (_, u) = mhsm
        .call(
            Method::POST,
            "/keys/aes//unwrapkey",
            Some(json!({"alg": "A256KW", "value": w["value"]})),
        )
        .await;
    assert_eq!(b64::decode("v", u["value"].as_str().unwrap()).unwrap(), key);
    gcm_round_trip(&mhsm, "aes", "A256GCM").await;
    let (s, _) = mhsm
        .call(
            Method::POST,
            "/keys/aes//encrypt",
            Some(json!({"alg": "A128KW", "value": b64::encode(&key)})),
        )
        .await;
    assert_eq!(s, 400);
    // A192GCM with a 192-bit key; the algorithm must match the key's size.
    let (s, b) = mhsm
        .create("aes192", json!({"kty": "oct-HSM", "key_size": 192}))
        .await;
    assert_eq!(s, 200, "{b}");
    gcm_round_trip(&mhsm, "aes192", "A192GCM").await;
    let (s, _) = mhsm
        .call(
            Method::POST,
            "/keys/aes192//encrypt",
            Some(json!({"alg": "A256GCM", "value": b64::encode(b"hello")})),
        )
        .await;
    assert_eq!(s, 400);
    // Managed HSM refuses software keys' kty name by making every key HSM-backed.
    let (_, r) = mhsm.create("r", json!({"kty": "RSA"})).await;
    assert_eq!(r["key"]["kty"], "RSA-HSM");
}

/// Encrypts "hello" with the vault key `name` under `alg` and decrypts it back.
async fn gcm_round_trip(emu: &Emu, name: &str, alg: &str) {
    let (s, e) = emu
        .call(
            Method::POST,
            &format!("/keys/{name}//encrypt"),
            Some(json!({"alg": alg, "value": b64::encode(b"hello")})),
        )
        .await;
    assert_eq!(s, 200, "{e}");
    let (s, d) = emu
        .call(
            Method::POST,
            &format!("/keys/{name}//decrypt"),
            Some(json!({"alg": alg, "value": e["value"], "iv": e["iv"], "tag": e["tag"]})),
        )
        .await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(
        b64::decode("v", d["value"].as_str().unwrap()).unwrap(),
        b"hello"
    );
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let emu = Emu::start(Flavor::Vault).await;
    let big = "A".repeat(2 * 1024 * 1024);
    let (s, _) = emu
        .call(
            Method::PUT,
            "/keys/k",
            Some(json!({"key": {"kty": "EC-HSM", "key_hsm": big}})),
        )
        .await;
    assert_eq!(s, 413);
}
