//! A Key Vault data-plane emulator over real HTTPS, so a whole BYOK ceremony can run on one
//! machine with no Azure account.
//!
//! - [`routes`]: the keys API subset (create, import incl. `key_hsm`, get, list, update,
//!   soft delete, recover, purge, sign/verify, encrypt/decrypt, wrap/unwrap) with
//!   `api-version` checks and the service's error shape;
//! - [`auth`]: an OAuth2 client-credentials token endpoint issuing signed JWTs, and the
//!   `401` + `WWW-Authenticate` challenge for requests without a valid token;
//! - [`service`]: the behaviour, including the BYOK unwrap with the KEK private key it holds;
//! - [`store`]: state in memory, or durable before each response with `--persist`;
//! - [`tls`]: a test CA and server certificate made per state directory.
//!
//! What it proves and what it does not: it checks a `.byok` exactly as this project reads the
//! format (byok-core) and holds keys in its state directory in the clear. It is not an HSM.
#![forbid(unsafe_code)]

pub mod auth;
pub mod crypto;
pub mod error;
pub mod model;
pub mod routes;
pub mod service;
pub mod store;
pub mod tls;

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use service::Flavor;

/// The connection file's name in the state directory.
pub const CONNECTION_FILE: &str = "connection.json";

/// How to start the emulator.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub state_dir: PathBuf,
    pub flavor: Flavor,
    pub persist: bool,
    pub token_lifetime_secs: i64,
    pub accept_zero_padded_kwp: bool,
    /// Fault injection: every authenticated data-plane request gets this HTTP status.
    pub fault_status: Option<u16>,
    /// The URL clients reach the emulator by, when it sits behind a proxy; key ids and the
    /// auth challenge use it. Default: https://{listen address}.
    pub public_url: Option<String>,
}

/// What a client needs to reach the emulator; written to `connection.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Connection {
    pub vault_url: String,
    pub ca_cert: PathBuf,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub authority_host: String,
    pub resource: String,
    pub flavor: String,
}

impl Connection {
    /// Reads `connection.json` from a state directory.
    pub fn load(state_dir: &Path) -> Result<Self, String> {
        let path = state_dir.join(CONNECTION_FILE);
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Secrets that survive restarts of the same state directory.
#[derive(Serialize, Deserialize)]
struct Identity {
    tenant_id: String,
    client_id: String,
    client_secret: String,
    jwt_key: String,
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).expect("system RNG");
    hex::encode(b)
}

fn uuid_like() -> String {
    let h = random_hex(16);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn load_identity(dir: &Path) -> Result<Identity, String> {
    let path = dir.join("identity.json");
    if path.exists() {
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        return serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()));
    }
    let identity = Identity {
        tenant_id: uuid_like(),
        client_id: uuid_like(),
        client_secret: random_hex(24),
        jwt_key: random_hex(32),
    };
    write_private(
        &path,
        &serde_json::to_vec_pretty(&identity).expect("serializes"),
    )?;
    Ok(identity)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    tls::restrict(path)
}

/// A running emulator.
pub struct Running {
    pub connection: Connection,
    pub addr: SocketAddr,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stops accepting, lets requests in flight finish, and waits.
    pub async fn shutdown(self) {
        self.handle
            .graceful_shutdown(Some(std::time::Duration::from_secs(5)));
        let _ = self.task.await;
    }

    /// Waits until the server stops.
    pub async fn wait(self) -> std::io::Result<()> {
        self.task
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }

    pub fn handle(&self) -> axum_server::Handle<SocketAddr> {
        self.handle.clone()
    }
}

/// Starts the emulator and returns once it listens.
pub async fn start(config: Config) -> Result<Running, String> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    std::fs::create_dir_all(&config.state_dir)
        .map_err(|e| format!("{}: {e}", config.state_dir.display()))?;
    let material = tls::load_or_create(&config.state_dir)?;
    let identity = load_identity(&config.state_dir)?;
    let listener = std::net::TcpListener::bind(config.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let host = match addr.ip() {
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let base = config
        .public_url
        .clone()
        .map(|u| u.trim_end_matches('/').to_string())
        .unwrap_or_else(|| format!("https://{host}:{}", addr.port()));
    let resource = match config.flavor {
        Flavor::Vault => "https://vault.azure.net",
        Flavor::ManagedHsm => "https://managedhsm.azure.net",
    };
    let connection = Connection {
        vault_url: base.clone(),
        ca_cert: config.state_dir.join("ca.pem"),
        tenant_id: identity.tenant_id.clone(),
        client_id: identity.client_id.clone(),
        client_secret: identity.client_secret.clone(),
        authority_host: base.clone(),
        resource: resource.into(),
        flavor: match config.flavor {
            Flavor::Vault => "vault".into(),
            Flavor::ManagedHsm => "managedhsm".into(),
        },
    };
    write_private(
        &config.state_dir.join(CONNECTION_FILE),
        &serde_json::to_vec_pretty(&connection).expect("serializes"),
    )?;
    let store_file = config.persist.then(|| config.state_dir.join("state.json"));
    let store =
        store::Store::open(store_file).map_err(|e| format!("cannot load the state: {e}"))?;
    let app = Arc::new(routes::App {
        service: service::Service {
            store,
            vault_url: base.clone(),
            options: service::Options {
                flavor: config.flavor,
                accept_zero_padded_kwp: config.accept_zero_padded_kwp,
            },
        },
        fault_status: config.fault_status,
        auth: auth::Auth::new(
            identity.tenant_id,
            identity.client_id,
            identity.client_secret,
            resource.into(),
            base,
            hex::decode(&identity.jwt_key).map_err(|e| e.to_string())?,
            config.token_lifetime_secs,
        ),
    });
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
        material.cert_chain_pem.into_bytes(),
        material.key_pem.into_bytes(),
    )
    .await
    .map_err(|e| format!("TLS setup: {e}"))?;
    let service =
        tower::util::MapRequestLayer::new(|r: axum::http::Request<_>| routes::normalize(r));
    let app = tower::Layer::layer(&service, routes::router(app));
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(listener, tls)
        .map_err(|e| e.to_string())?
        .handle(handle.clone());
    let task =
        tokio::spawn(async move { server.serve(axum::ServiceExt::into_make_service(app)).await });
    Ok(Running {
        connection,
        addr,
        handle,
        task,
    })
}
