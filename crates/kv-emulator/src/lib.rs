//! A Key Vault data-plane emulator over real HTTPS, so a whole BYOK ceremony can run on one
//! machine with no Azure account.
//!
//! - [`routes`]: the keys API subset (create, import incl. `key_hsm`, get, list, update,
//!   soft delete, recover, purge, sign/verify, encrypt/decrypt, wrap/unwrap) with
//!   `api-version` checks and the service's error shape ([`error`]);
//! - [`auth`]: an OAuth2 client-credentials token endpoint issuing signed JWTs, and the
//!   `401` + `WWW-Authenticate` challenge for requests without a valid token;
//! - [`service`]: the behaviour, one module per group of operations, with the service's
//!   rules; [`byok`]: the BYOK unwrap with the KEK private key it holds; [`crypto`]: the
//!   cryptographic operations of stored keys; [`model`]: stored keys and their JSON;
//! - [`store`]: state in memory, or durable before each response with `--persist`;
//! - [`state_dir`]: the state directory's files (identity, `connection.json`); [`address`]:
//!   where it listens (with `--persist`, where its stored keys' ids say it is);
//!   [`tls`]: a test CA and server certificate made per state directory.
//!
//! What it proves and what it does not: it checks a `.byok` exactly as this project reads the
//! format (byok-core) and holds keys in its state directory in the clear. It is not an HSM.
#![forbid(unsafe_code)]

pub mod address;
pub mod auth;
pub mod byok;
pub mod crypto;
pub mod error;
pub mod model;
pub mod routes;
pub mod service;
pub mod state_dir;
pub mod store;
pub mod tls;

use byok_core::VaultUrl;
use byok_core::kid::KidError;
use state_dir::{FileError, Identity, IdentityError, STATE_FILE};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use store::StoreError;
use tls::{TlsError, TlsMaterial};

pub use address::{AddressError, ListenError};
pub use service::Flavor;
pub use state_dir::{CONNECTION_FILE, Connection, ConnectionError};

/// How to start the emulator.
#[derive(Debug, Clone)]
pub struct Config {
    /// Port 0 picks a free port, except with `persist` and keys stored by an earlier run: then
    /// the earlier run's address, which their key ids name (see [`address`]).
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

/// A setting that cannot work, whatever the machine.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "--public-url {url}: {source}; give the URL clients reach the emulator by, as \
         https://host:port"
    )]
    PublicUrl { url: String, source: KidError },
    #[error("--fault-status {status} is not an HTTP error status: pick one from 400 to 599")]
    FaultStatus { status: u16 },
}

/// Why the emulator did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    StateDir(#[from] FileError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error(transparent)]
    Address(#[from] AddressError),
    #[error(transparent)]
    State(#[from] StoreError),
}

impl StartError {
    /// Whether the settings themselves are wrong (not the machine or the state directory).
    pub fn is_usage(&self) -> bool {
        match self {
            StartError::Config(_) => true,
            StartError::Address(e) => e.is_usage(),
            _ => false,
        }
    }
}

impl Config {
    /// Checks the settings no machine could make work; returns `public_url` as a vault URL
    /// (lowercase host, no trailing `/`) when one is set.
    fn validate(&self) -> Result<Option<String>, ConfigError> {
        if let Some(status) = self.fault_status.filter(|s| !(400..=599).contains(s)) {
            return Err(ConfigError::FaultStatus { status });
        }
        self.public_url
            .as_deref()
            .map(|url| {
                VaultUrl::parse(url)
                    .map(|u| u.to_string())
                    .map_err(|source| ConfigError::PublicUrl {
                        url: url.into(),
                        source,
                    })
            })
            .transpose()
    }
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
pub async fn start(config: Config) -> Result<Running, StartError> {
    let public_url = config.validate()?;
    // Before anything is written: a start refused here leaves the state directory as it was.
    let earlier = address::earlier(
        &config.state_dir,
        config.persist,
        public_url.is_some(),
        config.listen,
    )?;
    let listen_addr = address::choose(config.listen, earlier.as_ref())?;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    state_dir::create(&config.state_dir)?;
    let tls = TlsMaterial::load_or_create(&config.state_dir)?;
    let identity = Identity::load_or_create(&config.state_dir)?;
    let (listener, addr) =
        address::listen(listen_addr).map_err(|e| address::taken(e, earlier.as_ref()))?;
    let base = public_url.unwrap_or_else(|| url_of(addr));
    let connection = Connection::new(&config.state_dir, &identity, &base, config.flavor);
    connection.save(&config.state_dir)?;
    let store = store::Store::open(config.persist.then(|| config.state_dir.join(STATE_FILE)))?;
    let app = app(&config, identity, store, base);
    let server =
        axum_server::from_tcp_rustls(listener, tls.server_config().await?).map_err(|source| {
            ListenError {
                addr: listen_addr,
                source,
            }
        })?;
    let handle = axum_server::Handle::new();
    let server = server.handle(handle.clone());
    let normalize =
        tower::util::MapRequestLayer::new(|r: axum::http::Request<_>| routes::normalize(r));
    let app = tower::Layer::layer(&normalize, routes::router(Arc::new(app)));
    let task =
        tokio::spawn(async move { server.serve(axum::ServiceExt::into_make_service(app)).await });
    Ok(Running {
        connection,
        addr,
        handle,
        task,
    })
}

/// `https://IP:PORT`, the vault URL of an emulator with no `--public-url`.
fn url_of(addr: SocketAddr) -> String {
    match addr.ip() {
        std::net::IpAddr::V6(ip) => format!("https://[{ip}]:{}", addr.port()),
        ip => format!("https://{ip}:{}", addr.port()),
    }
}

/// The routes' state: the service over `store`, and the token endpoint, both at `base`.
fn app(config: &Config, identity: Identity, store: store::Store, base: String) -> routes::App {
    routes::App {
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
            identity,
            config.flavor.resource().into(),
            base,
            config.token_lifetime_secs,
        ),
    }
}
