//! An emulator started in-process on a free port, and a reqwest client that trusts its CA and
//! resolves its vault host (`NAME.vault.azure.net`) to its address.
#![allow(dead_code)]

use byok_core::package::Generator;
use byok_core::{KekPublicKey, KeyId, KeyTransferPackage, b64, wrap};
use kv_emulator::{Config, Connection, Flavor, Running, StartError};
use serde_json::{Value, json};

pub const V: &str = "api-version=7.4";

pub struct Emu {
    pub running: Option<Running>,
    pub conn: Connection,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    pub token: String,
}

pub fn config(dir: &std::path::Path, flavor: Flavor) -> Config {
    Config {
        flavor,
        ..Config::new(dir)
    }
}

/// The vault URL's host (`emulator.vault.azure.net`).
pub fn vault_host(conn: &Connection) -> String {
    byok_core::VaultUrl::parse(&conn.vault_url)
        .unwrap()
        .host()
        .to_string()
}

pub fn client(conn: &Connection) -> reqwest::Client {
    let ca = std::fs::read(&conn.ca_cert).unwrap();
    let mut builder =
        reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()]);
    if let Some(addr) = conn.vault_address {
        builder = builder.resolve(&vault_host(conn), addr);
    }
    builder.build().unwrap()
}

/// Starts an emulator on `cfg`, or returns why it did not. A test that stops an emulator and
/// starts another on the same state directory can find the directory's `flock` still held for
/// a moment: a sibling test of this binary spawning a child (persist.rs runs `kv-emulator`
/// processes) copies every descriptor of this process into it, the lock's included, until the
/// child's `exec` closes them. So a locked directory is tried again, for 30 s at most.
pub async fn start_when_unlocked(cfg: Config) -> Result<kv_emulator::Running, StartError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match kv_emulator::start(cfg.clone()).await {
            Err(StartError::State(kv_emulator::store::StoreError::Locked { path }))
                if std::time::Instant::now() < deadline =>
            {
                eprintln!("{} still locked; trying again", path.display());
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            started => return started,
        }
    }
}

impl Emu {
    pub async fn start(flavor: Flavor) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_with(dir, |c| c.flavor = flavor).await
    }

    pub async fn start_with(dir: tempfile::TempDir, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut cfg = config(dir.path(), Flavor::Vault);
        tweak(&mut cfg);
        let running = start_when_unlocked(cfg)
            .await
            .unwrap_or_else(|e| panic!("the emulator did not start: {e}"));
        let conn = running.connection.clone();
        let http = client(&conn);
        let mut emu = Self {
            running: Some(running),
            conn,
            http,
            dir,
            token: String::new(),
        };
        emu.token = emu.token_for(&emu.conn.resource.clone()).await;
        emu
    }

    pub async fn token_for(&self, resource: &str) -> String {
        self.token_as(&self.conn.client_id, &self.conn.client_secret, resource)
            .await
    }

    /// A token for the reader, the client with no role on the vault.
    pub async fn reader_token(&self) -> String {
        self.token_as(
            &self.conn.reader_client_id,
            &self.conn.reader_client_secret,
            &self.conn.resource,
        )
        .await
    }

    pub async fn token_as(&self, id: &str, secret: &str, resource: &str) -> String {
        let resp = self
            .http
            .post(format!(
                "{}/{}/oauth2/v2.0/token",
                self.conn.authority_host, self.conn.tenant_id
            ))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", secret),
                ("scope", &format!("{resource}/.default")),
            ])
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
        resp.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub fn url(&self, path: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{}{path}{sep}{V}", self.conn.vault_url)
    }

    /// Sends with the token; returns status and JSON body (Null when empty).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn create(&self, name: &str, body: Value) -> (u16, Value) {
        self.call(
            reqwest::Method::POST,
            &format!("/keys/{name}/create"),
            Some(body),
        )
        .await
    }

    pub async fn kek(&self, name: &str, bits: u32) -> Value {
        let (s, b) = self
            .create(
                name,
                json!({"kty": "RSA-HSM", "key_size": bits, "key_ops": ["import"]}),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        b
    }
}

pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

pub fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or("")
}

/// The public key of the KEK in `bundle` (a create answer).
pub fn kek_public(bundle: &Value) -> KekPublicKey {
    let n = b64::decode("n", bundle["key"]["n"].as_str().unwrap()).unwrap();
    let e = b64::decode("e", bundle["key"]["e"].as_str().unwrap()).unwrap();
    KekPublicKey::from_components(&n, &e).unwrap()
}

/// A `.byok` carrying `plaintext` under the KEK in `bundle`, as file bytes; the plaintext
/// is wrapped as given, so a test can make it defective.
pub fn byok(bundle: &Value, plaintext: &[u8]) -> Vec<u8> {
    let kek = kek_public(bundle);
    let kid = KeyId::parse_versioned(bundle["key"]["kid"].as_str().unwrap()).unwrap();
    let ct = wrap::wrap(plaintext, &kek).unwrap();
    KeyTransferPackage::new(kid, ct, &Generator::this_tool("test", "software", "0"))
        .unwrap()
        .to_json_bytes()
}

/// An import request for a `.byok` file's bytes: a signing key, or for `oct-HSM` a wrapping
/// key. An `EC-HSM` import names its curve (the BYOK specification requires it): `P-256` here,
/// see [`import_body_crv`] for another.
pub fn import_body(kty: &str, file: &[u8]) -> Value {
    import_body_crv(kty, (kty == "EC-HSM").then_some("P-256"), file)
}

/// [`import_body`] with `crv` as given (none: no `crv` member).
pub fn import_body_crv(kty: &str, crv: Option<&str>, file: &[u8]) -> Value {
    let ops = if kty.starts_with("oct") {
        json!(["wrapKey", "unwrapKey"])
    } else {
        json!(["sign", "verify"])
    };
    let mut body = json!({"key": {"kty": kty, "key_ops": ops, "key_hsm": b64::encode(file)}, "attributes": {"enabled": true}});
    if let Some(crv) = crv {
        body["key"]["crv"] = json!(crv);
    }
    body
}

/// A KeyClient for `url` with the SDK's default options (challenge-resource verification on), its
/// transport resolving the vault host to the emulator.
pub fn sdk_client(emu: &Emu, url: &str) -> azure_security_keyvault_keys::KeyClient {
    let transport = azure_core::http::Transport::new(std::sync::Arc::new(client(&emu.conn)));
    let mut cloud = azure_core::cloud::CustomConfiguration::default();
    cloud.authority_host = emu.conn.authority_host.clone();
    let credential = azure_identity::ClientSecretCredential::new(
        &emu.conn.tenant_id,
        emu.conn.client_id.clone(),
        azure_core::credentials::Secret::new(emu.conn.client_secret.clone()),
        Some(azure_identity::ClientSecretCredentialOptions {
            client_options: azure_core::http::ClientOptions {
                transport: Some(transport.clone()),
                cloud: Some(std::sync::Arc::new(
                    azure_core::cloud::CloudConfiguration::Custom(cloud),
                )),
                ..Default::default()
            },
        }),
    )
    .unwrap();
    let options = azure_security_keyvault_keys::KeyClientOptions {
        client_options: azure_core::http::ClientOptions {
            transport: Some(transport),
            ..Default::default()
        },
        ..Default::default()
    };
    azure_security_keyvault_keys::KeyClient::new(url, credential, Some(options)).unwrap()
}
