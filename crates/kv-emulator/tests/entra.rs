//! Entra ID's side of the emulator as MSAL expects it (issue 24), each test citing its source
//! (docs/azure-behaviour.md 10): the tenant's discovery document with Entra's members, the
//! JWKS its `jwks_uri` names, RS256 tokens whose `kid` the JWKS names, Key Vault's 401 texts for
//! a token of the wrong audience or issuer; and MSAL Python and MSAL Node getting a token the
//! JWKS verifies.

mod common;

use common::{Emu, code, message};
use kv_emulator::Flavor;
use reqwest::Method;
use serde_json::{Value, json};

/// The JSON at `url` (on the emulator's authority).
async fn get_json(emu: &Emu, url: &str) -> Value {
    let resp = emu.http.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    resp.json().await.unwrap()
}

fn authority(emu: &Emu) -> String {
    format!("{}/{}", emu.conn.authority_host, emu.conn.tenant_id)
}

/// A JWT's header and claims (unverified).
fn parts(token: &str) -> (Value, Value) {
    use base64ct::Encoding;
    let mut it = token.split('.');
    let mut next = || {
        serde_json::from_slice(
            &base64ct::Base64UrlUnpadded::decode_vec(it.next().unwrap()).unwrap(),
        )
        .unwrap()
    };
    (next(), next())
}

/// Source: Entra ID's v2.0 discovery document as the JS SDK recorded it (Apr 2021, search
/// index id 8492153062: `GET login.microsoftonline.com/{tenant}/v2.0/.well-known/openid-configuration`
/// → 200, Content-Length 1651), docs/azure-behaviour.md 10a; msal-common
/// `authority/OpenIdConfigResponse` (`isOpenIdConfigResponse` needs `authorization_endpoint`,
/// `token_endpoint`, `issuer` and `jwks_uri`). The members in Entra's order, the tenant's
/// endpoints on the emulator.
#[tokio::test]
async fn the_discovery_document_has_every_member_entras_has() {
    let emu = Emu::start(Flavor::Vault).await;
    let base = authority(&emu);
    let doc = get_json(
        &emu,
        &format!("{base}/v2.0/.well-known/openid-configuration"),
    )
    .await;
    let members: Vec<&str> = doc
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        members,
        [
            "token_endpoint",
            "token_endpoint_auth_methods_supported",
            "jwks_uri",
            "response_modes_supported",
            "subject_types_supported",
            "id_token_signing_alg_values_supported",
            "response_types_supported",
            "scopes_supported",
            "issuer",
            "request_uri_parameter_supported",
            "userinfo_endpoint",
            "authorization_endpoint",
            "device_authorization_endpoint",
            "http_logout_supported",
            "frontchannel_logout_supported",
            "end_session_endpoint",
            "claims_supported",
            "tenant_region_scope",
            "cloud_instance_name",
            "cloud_graph_host_name",
            "msgraph_host",
            "rbac_url",
        ]
    );
    assert_eq!(doc["token_endpoint"], format!("{base}/oauth2/v2.0/token"));
    assert_eq!(doc["jwks_uri"], format!("{base}/discovery/v2.0/keys"));
    assert_eq!(doc["issuer"], format!("{base}/v2.0"));
    assert_eq!(
        doc["end_session_endpoint"],
        format!("{base}/oauth2/v2.0/logout")
    );
    assert_eq!(
        doc["authorization_endpoint"],
        format!("{base}/oauth2/v2.0/authorize")
    );
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        json!(["RS256"])
    );
    assert_eq!(doc["subject_types_supported"], json!(["pairwise"]));
    assert_eq!(
        doc["response_modes_supported"],
        json!(["query", "fragment", "form_post"])
    );
    // Another tenant's document: Entra's AADSTS90002.
    let resp = emu
        .http
        .get(format!(
            "{}/00000000-0000-0000-0000-000000000000/v2.0/.well-known/openid-configuration",
            emu.conn.authority_host
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

/// Source: the JWKS entries Entra ID publishes at `{tenant}/discovery/v2.0/keys` (`kty`,
/// `use`, `kid`, `x5t`, `n`, `e`, `x5c`, `cloud_instance_name`, `issuer`: Learn's access-token
/// page, search index id 267873181, and a captured answer, 56693558591;
/// docs/azure-behaviour.md 10b) and the
/// header of its tokens (`typ`, `alg` RS256, `x5t`, `kid`). The access token's signature
/// verifies with the key the JWKS names by the token's `kid`; the claims are Entra's v1 claims
/// for Key Vault (`iss` `https://sts.windows.net/{tenant}/`, the issuer Key Vault's AKV10032
/// lists; `ver` 1.0; `sub` = `oid` for an application).
#[tokio::test]
async fn tokens_carry_a_kid_the_jwks_names_and_verify_with_its_key() {
    let emu = Emu::start(Flavor::Vault).await;
    let base = authority(&emu);
    let jwks = get_json(&emu, &format!("{base}/discovery/v2.0/keys")).await;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let jwk = &keys[0];
    let members: Vec<&str> = jwk
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        members,
        [
            "kty",
            "use",
            "kid",
            "x5t",
            "n",
            "e",
            "x5c",
            "cloud_instance_name",
            "issuer"
        ]
    );
    assert_eq!(
        (jwk["kty"].as_str(), jwk["use"].as_str()),
        (Some("RSA"), Some("sig"))
    );
    assert_eq!(jwk["issuer"], format!("{base}/v2.0"));

    let (header, claims) = parts(&emu.token);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["kid"], jwk["kid"]);
    assert_eq!(header["x5t"], jwk["kid"]);
    assert_eq!(
        claims["iss"],
        format!("https://sts.windows.net/{}/", emu.conn.tenant_id)
    );
    assert_eq!(claims["ver"], "1.0");
    assert_eq!(claims["appid"], emu.conn.client_id.as_str());
    assert_eq!(claims["sub"], claims["oid"]);
    assert_eq!(claims["aud"], emu.conn.resource.as_str());

    // The signature, checked with the JWKS key alone.
    let n = jwk["n"].as_str().unwrap();
    let e = jwk["e"].as_str().unwrap();
    let key = jsonwebtoken::DecodingKey::from_rsa_components(n, e).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[emu.conn.resource.as_str()]);
    jsonwebtoken::decode::<Value>(&emu.token, &key, &validation).unwrap();
    // The certificate in x5c holds the same key: its SHA-1 is the kid.
    use base64ct::Encoding;
    use sha1::Digest;
    let cert = base64ct::Base64::decode_vec(jwk["x5c"][0].as_str().unwrap()).unwrap();
    assert_eq!(
        byok_core::b64::encode(&sha1::Sha1::digest(&cert)),
        jwk["kid"].as_str().unwrap()
    );

    // The key survives a restart (it is in identity.json): tokens issued before still verify.
    let dir = emu.dir;
    drop(emu.running);
    let again = Emu::start_with(dir, |_| {}).await;
    let jwks_again = get_json(
        &again,
        &format!("{}/discovery/v2.0/keys", authority(&again)),
    )
    .await;
    assert_eq!(jwks_again["keys"][0]["kid"], jwk["kid"]);
}

/// Source: Key Vault's 401 texts for a token it refuses, docs/azure-behaviour.md 10c:
/// "AKV10022: Invalid audience. Expected https://vault.azure.net, found:
/// https://management.azure.com/." (public write-ups, search index ids 32775100639,
/// 30374213093) and "AKV10032: Invalid issuer. Expected one of https://sts.windows.net/{t}/,
/// ..., found https://sts.windows.net/{other}/." (Azure/azure-sdk-for-net
/// `ChallengeBasedAuthenticationPolicyTests.cs`, index id 715566924). Both with the
/// challenge, no innererror.
#[tokio::test]
async fn a_wrong_audience_or_issuer_gets_the_services_401_text() {
    let emu = Emu::start(Flavor::Vault).await;
    let arm = emu.token_for("https://management.azure.com").await;
    let resp = emu
        .http
        .get(emu.url("/keys"))
        .bearer_auth(&arm)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("www-authenticate"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": {"code": "Unauthorized", "message":
            "AKV10022: Invalid audience. Expected https://vault.azure.net, found: https://management.azure.com."}})
    );

    // A token signed with this tenant's key but issued by another tenant.
    let identity: Value =
        serde_json::from_slice(&std::fs::read(emu.dir.path().join("identity.json")).unwrap())
            .unwrap();
    let pkcs8 =
        byok_core::b64::decode("k", identity["token_signing_key"].as_str().unwrap()).unwrap();
    let info = pkcs8::PrivateKeyInfoRef::try_from(pkcs8.as_slice()).unwrap();
    let (header, mut claims) = parts(&emu.token);
    let other = "https://sts.windows.net/96be4b7a-defb-4dc2-a31f-49ee6145d5ab/";
    claims["iss"] = json!(other);
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    h.kid = header["kid"].as_str().map(String::from);
    let forged = jsonwebtoken::encode(
        &h,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_der(info.private_key.as_bytes()),
    )
    .unwrap();
    let resp = emu
        .http
        .get(emu.url("/keys"))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(code(&body), "Unauthorized");
    assert_eq!(
        message(&body),
        format!(
            "AKV10032: Invalid issuer. Expected one of https://sts.windows.net/{}/, found {other}.",
            emu.conn.tenant_id
        )
    );
    // The emulator's own token still works.
    assert_eq!(emu.call(Method::GET, "/keys", None).await.0, 200);
}

/// Source: the discovery document's `token_endpoint_auth_methods_supported` (Entra lists
/// `client_secret_post` and `client_secret_basic`, RFC 6749 2.3.1): the client's id and
/// secret in `Authorization: Basic` get a token too.
#[tokio::test]
async fn the_token_endpoint_takes_client_secret_basic() {
    let emu = Emu::start(Flavor::Vault).await;
    let resp = emu
        .http
        .post(format!("{}/oauth2/v2.0/token", authority(&emu)))
        .basic_auth(&emu.conn.client_id, Some(&emu.conn.client_secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "https://vault.azure.net/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let token: Value = resp.json().await.unwrap();
    assert_eq!(token["token_type"], "Bearer");
}

/// MSAL Python (`msal`, in the venv `cargo xtask ci` makes) gets a token from the emulator
/// by client credentials, through the discovery document; the token verifies with the JWKS
/// key its kid names (tests/python/msal_client_credentials.py).
#[tokio::test]
async fn msal_python_gets_a_token_the_jwks_verifies() {
    let python = std::env::var("BYOK_PYTHON").expect(
        "BYOK_PYTHON is not set: run `cargo xtask ci`, which makes target/pyvenv with the Azure \
         Python SDK (msal comes with azure-identity)",
    );
    let emu = Emu::start(Flavor::Vault).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/msal_client_credentials.py"
    );
    let out = tokio::process::Command::new(python)
        .arg(script)
        .arg(emu.dir.path().join(kv_emulator::CONNECTION_FILE))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("msal-python:") && stdout.contains(": ok"),
        "{stdout}"
    );
}

/// MSAL Node (`@azure/msal-node`, as `@azure/identity` locks it in tests/js/package-lock.json,
/// installed by `cargo xtask ci`) gets a token from the emulator by client credentials; MSAL
/// Node refuses a discovery document without `jwks_uri`. The token verifies with the JWKS key
/// its kid names (tests/js/msal_node.mjs).
#[tokio::test]
async fn msal_node_gets_a_token_the_jwks_verifies() {
    let modules = std::env::var("BYOK_NODE_MODULES").expect(
        "BYOK_NODE_MODULES is not set: run `cargo xtask ci`, which installs tests/js's locked \
         packages into target/js/node_modules",
    );
    let emu = Emu::start(Flavor::Vault).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/js/msal_node.mjs");
    let out = tokio::process::Command::new("node")
        .arg(script)
        .arg(emu.dir.path().join(kv_emulator::CONNECTION_FILE))
        .env("BYOK_NODE_MODULES", modules)
        .env("NODE_EXTRA_CA_CERTS", &emu.conn.ca_cert)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("msal-node:") && stdout.contains(": ok"),
        "{stdout}"
    );
}
