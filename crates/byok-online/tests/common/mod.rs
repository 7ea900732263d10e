//! Helpers shared by byok-online's integration tests: an emulator per test, the binary run
//! against it, packages made in software.
#![allow(dead_code)]

use byok_core::package::Generator;
use byok_core::sidecar::{Sidecar, Source};
use byok_core::{Fingerprint, KekTransfer, KeyId, KeyTransferPackage, TargetKey, wrap};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

/// Writes a `.byok` for `target` under `kek` at `path`, and its sidecar when asked.
pub fn package_for(
    kid: &KeyId,
    kek: &byok_core::KekPublicKey,
    target: &TargetKey,
    path: &Path,
    sidecar: bool,
) -> PathBuf {
    let ct = wrap::wrap(target.plaintext(), kek).unwrap();
    let bytes = KeyTransferPackage::new(
        kid.clone(),
        ct,
        &Generator::this_tool("test", "software", "0"),
    )
    .unwrap()
    .to_json_bytes();
    std::fs::write(path, &bytes).unwrap();
    if sidecar {
        let s = Sidecar {
            byok_sha256: Fingerprint::of_bytes(&bytes),
            kek_kid: kid.to_string(),
            kind: target.kind(),
            public_key: target.public_key().cloned(),
            source: Source::default(),
        };
        std::fs::write(
            format!("{}.sidecar.json", path.display()),
            s.to_json_bytes(),
        )
        .unwrap();
    }
    path.to_path_buf()
}

/// An emulator (in this process) and a work directory the binary runs in.
pub struct Env {
    _emu: kv_emulator::Running,
    pub state: tempfile::TempDir,
    pub work: tempfile::TempDir,
}

pub async fn start() -> Env {
    start_as(kv_emulator::Flavor::Vault).await
}

/// A vault that throttles: `limits` as kv-emulator's `--throttle` (`azure`, or
/// `create=N,other=M`), over a window of `window_ms`.
pub async fn start_throttled(limits: &str, window_ms: u64) -> Env {
    let state = tempfile::tempdir().unwrap();
    let config = kv_emulator::Config {
        throttle: Some(kv_emulator::ThrottleConfig {
            limits: limits.parse().unwrap(),
            window_ms,
        }),
        ..kv_emulator::Config::new(state.path())
    };
    let emu = kv_emulator::start(config).await.unwrap();
    Env {
        _emu: emu,
        state,
        work: tempfile::tempdir().unwrap(),
    }
}

pub async fn start_as(flavor: kv_emulator::Flavor) -> Env {
    let state = tempfile::tempdir().unwrap();
    let config = kv_emulator::Config {
        flavor,
        ..kv_emulator::Config::new(state.path())
    };
    let emu = kv_emulator::start(config).await.unwrap();
    Env {
        _emu: emu,
        state,
        work: tempfile::tempdir().unwrap(),
    }
}

impl Env {
    pub fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    pub fn conn(&self) -> kv_emulator::Connection {
        kv_emulator::Connection::load(self.state.path()).unwrap()
    }

    /// Runs byok-online with `--emulator STATE_DIR`.
    pub async fn run(&self, args: &[&str]) -> Output {
        let mut full = vec![
            "--emulator".to_string(),
            self.state.path().display().to_string(),
        ];
        full.extend(args.iter().map(|s| s.to_string()));
        self.run_raw(full, vec![]).await
    }

    /// Runs byok-online with exactly `args` (stdin is not a terminal: /dev/null).
    pub async fn run_raw(&self, args: Vec<String>, env: Vec<(&'static str, String)>) -> Output {
        let dir = self.work.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_byok-online"));
            cmd.args(&args)
                .current_dir(dir)
                .stdin(std::process::Stdio::null());
            for var in [
                "AZURE_TENANT_ID",
                "AZURE_CLIENT_ID",
                "AZURE_CLIENT_SECRET",
                "BYOK_VAULT_URL",
                "AZURE_KEYVAULT_NAME",
                "AZURE_MANAGEDHSM_NAME",
                "AZURE_AUTHORITY_HOST",
                "RUST_LOG",
            ] {
                cmd.env_remove(var);
            }
            cmd.envs(env);
            cmd.output().unwrap()
        })
        .await
        .unwrap()
    }

    /// Runs with `--output json`; must succeed; the parsed document.
    pub async fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--output", "json"];
        a.extend_from_slice(args);
        let out = self.run(&a).await;
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Runs; must succeed; stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub async fn fails(&self, args: &[&str], needle: &str) {
        let out = self.run(args).await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            err.contains(needle),
            "{args:?}: expected `{needle}` in {err}"
        );
        assert!(!err.contains(&self.conn().client_secret), "secret leaked");
    }

    /// Writes a .byok (and optionally its sidecar) for `target` under the transfer file's KEK.
    pub fn package(
        &self,
        transfer: &Path,
        target: &TargetKey,
        file: &str,
        sidecar: bool,
    ) -> PathBuf {
        let t = KekTransfer::parse(&std::fs::read_to_string(transfer).unwrap()).unwrap();
        package_for(&t.kid, &t.key, target, &self.path(file), sidecar)
    }

    /// The emulator client's token for the vault, from its token endpoint (client credentials).
    pub async fn token(&self, http: &reqwest::Client) -> String {
        client_token(http, &self.conn()).await
    }

    /// A REST call straight to the emulator (not through byok-online): what the vault holds.
    pub async fn rest(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let conn = self.conn();
        let ca = std::fs::read(&conn.ca_cert).unwrap();
        let mut builder = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()]);
        // The vault URL's host (emulator.vault.azure.net) resolves to vault_address only.
        if let Some(addr) = conn.vault_address {
            let host = byok_core::VaultUrl::parse(&conn.vault_url).unwrap();
            builder = builder.resolve(host.host(), addr);
        }
        let http = builder.build().unwrap();
        let token = client_token(&http, &conn).await;
        let mut request = http
            .request(method, format!("{}{path}?api-version=7.4", conn.vault_url))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let resp = request.send().await.unwrap();
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(Value::Null),
        )
    }

    /// Creates a key straight in the emulator.
    pub async fn create_raw(&self, name: &str, body: Value) -> (u16, Value) {
        self.rest(
            reqwest::Method::POST,
            &format!("/keys/{name}/create"),
            Some(body),
        )
        .await
    }

    /// How many versions of `name` the vault holds (0 when there is no such key).
    pub async fn versions(&self, name: &str) -> usize {
        let (status, body) = self
            .rest(
                reqwest::Method::GET,
                &format!("/keys/{name}/versions"),
                None,
            )
            .await;
        match status {
            200 => body["value"].as_array().map_or(0, Vec::len),
            404 => 0,
            other => panic!("versions of {name}: HTTP {other} {body}"),
        }
    }

    /// A KEK in the vault (`KEK`, RSA 2048) and its transfer file `kek.transfer`.
    pub async fn with_kek(&self) {
        self.json(&[
            "kek",
            "create",
            "--name",
            "KEK",
            "--size",
            "2048",
            "--out",
            "kek.transfer",
        ])
        .await;
    }
}

/// A vault emulator on `state` with `tweak` applied to its configuration (`persist`, the
/// legacy RSA exponent, ...), and `work` to run the binary in; with `persist`, a restart on the
/// same directories finds the keys and the URL again ([`Env::stop`]).
pub async fn start_on(
    state: tempfile::TempDir,
    work: tempfile::TempDir,
    tweak: impl FnOnce(&mut kv_emulator::Config),
) -> Env {
    let mut config = kv_emulator::Config::new(state.path());
    tweak(&mut config);
    let emu = kv_emulator::start(config).await.unwrap();
    Env {
        _emu: emu,
        state,
        work,
    }
}

impl Env {
    /// Stops the emulator; its state and work directories, for [`start_on`].
    pub async fn stop(self) -> (tempfile::TempDir, tempfile::TempDir) {
        self._emu.shutdown().await;
        (self.state, self.work)
    }
}

/// A token of the emulator's client for the vault: client credentials at its token endpoint.
async fn client_token(http: &reqwest::Client, conn: &kv_emulator::Connection) -> String {
    let body: Value = http
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            conn.authority_host, conn.tenant_id
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", conn.client_id.as_str()),
            ("client_secret", conn.client_secret.as_str()),
            ("scope", &format!("{}/.default", conn.resource)),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["access_token"].as_str().unwrap().to_string()
}
