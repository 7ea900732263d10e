//! A Key Vault data-plane emulator over real HTTPS, so a whole BYOK ceremony can run on one
//! machine with no Azure account.
//!
//! - [`routes`]: the keys API subset (create, import incl. `key_hsm`, get, list, update,
//!   soft delete, recover, purge, sign/verify, encrypt/decrypt, wrap/unwrap) with
//!   `api-version` checks and the service's error shape ([`error`]);
//! - [`auth`]: an OAuth2 client-credentials token endpoint issuing signed JWTs for two
//!   clients (one with every right, a reader with none, which gets RBAC's `403
//!   ForbiddenByRbac`), and the `401` + `WWW-Authenticate` challenge for requests without a
//!   valid token;
//! - [`service`]: the behaviour, one module per group of operations, with the service's
//!   rules; [`byok`]: the BYOK unwrap with the KEK private key it holds; [`crypto`]: the
//!   cryptographic operations of stored keys; [`model`]: stored keys and their JSON;
//! - [`store`]: the keys in SQLite: an in-memory database, or with `--persist` `state.db`,
//!   each change durable before its response;
//! - [`state_dir`]: the state directory's files (identity, `connection.json`); [`address`]:
//!   where it listens (with `--persist`, where its stored keys' ids say it is);
//!   [`tls`]: a test CA and server certificate made per state directory;
//! - leaves every module may use: [`flavor`] (the flavor, SKU and clocks) and [`ids`]
//!   (request ids, UUIDs, version ids).
//!
//! ## The vault URL and the challenge
//!
//! The vault is served under a real-looking URL, `https://NAME.vault.azure.net:PORT` (or
//! `NAME.managedhsm.azure.net` with `--flavor managedhsm`; NAME from `--vault-name`, default
//! `emulator`), which no DNS resolves: `connection.json` carries `vault_address`, the `IP:PORT`
//! clients resolve that host to, and the server certificate names the host. The token
//! endpoint stays at `https://127.0.0.1:PORT`. So the SDKs' challenge-resource verification
//! stays on in every client of the emulator.
//!
//! The 401 challenge is Azure's: `Bearer authorization="AUTHORITY/TENANT",
//! resource="https://vault.azure.net"` (`https://managedhsm.azure.net` for a Managed HSM). On
//! a port other than 443 the resource carries the port, `resource="https://vault.azure.net:PORT"`:
//! the Python SDK compares the challenge's `netloc` with the request's, port included
//! (docs/azure-behaviour.md 8c), while the Rust SDK compares host names only (8b) and passes
//! either way. Tokens for the resource with or without the port are accepted.
//!
//! What it proves and what it does not: it checks a `.byok` exactly as this project reads the
//! format (byok-core) and holds keys in its state directory in the clear. It is not an HSM.
#![forbid(unsafe_code)]

pub mod address;
pub mod auth;
pub mod byok;
pub mod crypto;
pub mod error;
pub mod flavor;
pub mod ids;
pub mod model;
pub mod routes;
pub mod service;
pub mod signing;
pub mod state_dir;
pub mod store;
mod sync;
pub mod throttle;
pub mod tls;

use byok_core::VaultUrl;
use byok_core::kid::KidError;
use state_dir::{FileError, Identity, IdentityError};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use store::StoreError;
use tls::{TlsError, TlsMaterial};

pub use address::{AddressError, ListenError};
pub use flavor::{Clock, Flavor, Sku};
pub use state_dir::{CONNECTION_FILE, Connection, ConnectionError};
pub use throttle::{ThrottleConfig, ThrottleLimits};

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
    /// token authority use it. Default: https://NAME.vault.azure.net:PORT (see `vault_name`)
    /// with the token authority at https://{listen address}.
    pub public_url: Option<String>,
    /// The vault's name: its URL is https://NAME.vault.azure.net:PORT (or
    /// NAME.managedhsm.azure.net). `emulator` by default ([`DEFAULT_VAULT_NAME`]).
    pub vault_name: String,
    /// With `public_url`: the address clients resolve its host to (connection.json's
    /// `vault_address`). None: DNS resolves it.
    pub public_address: Option<SocketAddr>,
    /// How long a deletion (and a recovery) keeps running after its 200, in milliseconds:
    /// 0 (the default) is at once, as on Managed HSM; Key Vault takes 20 s to 2 minutes.
    pub delete_delay_ms: u64,
    /// `--throttle`: Key Vault's published limits, or explicit ones; None: no throttling.
    pub throttle: Option<ThrottleConfig>,
    /// The vault's tier (Premium by default); ignored on a Managed HSM.
    pub sku: Sku,
    /// Serve RSA keys' public exponent as `AAEAAQ` (four bytes, a leading zero), as vaults
    /// answered in 2020–2022, instead of today's `AQAB`.
    pub legacy_rsa_exponent: bool,
    /// The time `--throttle`'s windows and `--delete-delay` are counted by: the system's, or
    /// for tests a held [`Clock`] they move on.
    pub clock: Clock,
}

/// The vault name when none is given.
pub const DEFAULT_VAULT_NAME: &str = "emulator";

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
    #[error(
        "--vault-name {name}: a vault name is 1 to 63 letters, digits and '-', not starting or \
         ending with '-' (it becomes NAME.vault.azure.net)"
    )]
    VaultName { name: String },
    #[error("--public-address needs --public-url: without one, the listen address is used")]
    PublicAddress,
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
    /// The defaults: a vault on a free loopback port, state in `state_dir`, in memory, tokens
    /// valid an hour, nothing lenient, no throttling, no fault, Premium, `emulator` as its name.
    /// Callers change the fields they need.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_dir: state_dir.into(),
            flavor: Flavor::Vault,
            persist: false,
            token_lifetime_secs: 3600,
            accept_zero_padded_kwp: false,
            fault_status: None,
            public_url: None,
            vault_name: DEFAULT_VAULT_NAME.into(),
            public_address: None,
            delete_delay_ms: 0,
            throttle: None,
            sku: Sku::Premium,
            legacy_rsa_exponent: false,
            clock: Clock::system(),
        }
    }

    /// Checks the settings no machine could make work; returns `public_url` as a vault URL
    /// (lowercase host, no trailing `/`) when one is set.
    fn validate(&self) -> Result<Option<String>, ConfigError> {
        if let Some(status) = self.fault_status.filter(|s| !(400..=599).contains(s)) {
            return Err(ConfigError::FaultStatus { status });
        }
        let name = &self.vault_name;
        let label_ok = (1..=63).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !label_ok {
            return Err(ConfigError::VaultName { name: name.clone() });
        }
        if self.public_address.is_some() && self.public_url.is_none() {
            return Err(ConfigError::PublicAddress);
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
    /// Kept to close the key database at shutdown, so that a restart in this process finds
    /// the state directory unlocked even if a connection still holds the routes.
    app: Arc<routes::App>,
}

impl Running {
    /// Stops accepting, lets requests in flight finish, and waits.
    pub async fn shutdown(self) {
        self.handle
            .graceful_shutdown(Some(std::time::Duration::from_secs(5)));
        let _ = self.task.await;
        self.app.service.store.close();
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
    if earlier.is_some() {
        // The earlier run's port: the URL this start serves is known already.
        let now = named_url(&config.vault_name, config.flavor, listen_addr.port());
        address::same_url(earlier.as_ref(), &now)?;
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    state_dir::create(&config.state_dir)?;
    // First: a state directory another kv-emulator serves is refused before anything in it
    // is rewritten.
    let store = store::Store::open(config.persist.then_some(config.state_dir.as_path()))?;
    let tls = TlsMaterial::load_or_create(
        &config.state_dir,
        &cert_names(&config, public_url.as_deref()),
    )?;
    let identity = Identity::load_or_create(&config.state_dir)?;
    let (listener, addr) =
        address::listen(listen_addr).map_err(|e| address::taken(e, earlier.as_ref()))?;
    let (vault_url, vault_address, authority) = match public_url {
        Some(url) => (url.clone(), config.public_address, url),
        None => (
            named_url(&config.vault_name, config.flavor, addr.port()),
            Some(addr),
            url_of(addr),
        ),
    };
    let connection = Connection::new(
        &config.state_dir,
        &identity,
        &vault_url,
        vault_address,
        &authority,
        config.flavor,
    );
    connection.save(&config.state_dir)?;
    let app = Arc::new(app(&config, identity, store, vault_url, authority)?);
    let server =
        axum_server::from_tcp_rustls(listener, tls.server_config().await?).map_err(|source| {
            ListenError {
                addr: listen_addr,
                source,
            }
        })?;
    // TCP_NODELAY: a response (or a pipelined run of them) leaves at once, not after the
    // client's delayed ACK (40 ms on Linux); pipelined responses go out in one write.
    let mut server = server.map(|tls| tls.acceptor(axum_server::accept::NoDelayAcceptor::new()));
    server.http_builder().http1().pipeline_flush(true);
    let handle = axum_server::Handle::new();
    let server = server.handle(handle.clone());
    let normalize =
        tower::util::MapRequestLayer::new(|r: axum::http::Request<_>| routes::normalize(r));
    let router = tower::Layer::layer(&normalize, routes::router(app.clone()));
    let task = tokio::spawn(async move {
        server
            .serve(axum::ServiceExt::into_make_service(router))
            .await
    });
    Ok(Running {
        connection,
        addr,
        handle,
        task,
        app,
    })
}

/// `https://IP:PORT`: where the emulator listens, and the token authority of an emulator
/// with no `--public-url`.
pub fn url_of(addr: SocketAddr) -> String {
    format!("https://{addr}")
}

/// The vault's host: `NAME.vault.azure.net` or `NAME.managedhsm.azure.net`.
pub fn vault_host(name: &str, flavor: Flavor) -> String {
    let domain = flavor.resource().trim_start_matches("https://");
    format!("{}.{domain}", name.to_ascii_lowercase())
}

/// The vault URL of an emulator with no `--public-url`: `https://NAME.vault.azure.net:PORT`
/// (no port on 443).
pub fn named_url(name: &str, flavor: Flavor, port: u16) -> String {
    match port {
        443 => format!("https://{}", vault_host(name, flavor)),
        port => format!("https://{}:{port}", vault_host(name, flavor)),
    }
}

/// The challenge's `resource`: the flavor's resource, with the vault URL's port when it is
/// not 443. The Python SDK compares the challenge's netloc with the request's, port included
/// (docs/azure-behaviour.md 8c): `https://vault.azure.net` would fail it for
/// `https://NAME.vault.azure.net:8443`. The Rust SDK compares host names only (8b) and
/// passes either way; Azure itself, on 443, sends the resource without a port.
pub fn challenge_resource(flavor: Flavor, vault_url: &str) -> String {
    match VaultUrl::parse(vault_url).ok().and_then(|u| u.port()) {
        Some(port) if port != 443 => format!("{}:{port}", flavor.resource()),
        _ => flavor.resource().to_string(),
    }
}

/// The DNS names the server certificate carries besides localhost: the vault's host, and a
/// `--public-url`'s host when it is a name.
fn cert_names(config: &Config, public_url: Option<&str>) -> Vec<String> {
    let mut names = vec![vault_host(&config.vault_name, config.flavor)];
    if let Some(url) = public_url.and_then(|u| VaultUrl::parse(u).ok()) {
        let host = url.host();
        if host.parse::<std::net::IpAddr>().is_err()
            && !host.starts_with('[')
            && !names.iter().any(|n| n == host)
        {
            names.push(host.to_string());
        }
    }
    names
}

/// The routes' state: the service over `store` at `vault_url`, and the token endpoint at
/// `authority`.
fn app(
    config: &Config,
    identity: Identity,
    store: store::Store,
    vault_url: String,
    authority: String,
) -> Result<routes::App, IdentityError> {
    let vault = auth::VaultInfo {
        name: config.vault_name.to_ascii_lowercase(),
        flavor: config.flavor,
        challenge_resource: challenge_resource(config.flavor, &vault_url),
    };
    let auth =
        auth::Auth::new(identity, vault, authority, config.token_lifetime_secs).map_err(|e| {
            IdentityError::Invalid {
                path: config.state_dir.join(state_dir::IDENTITY_FILE),
                reason: format!("token_signing_key: {e}"),
            }
        })?;
    Ok(routes::App {
        service: service::Service {
            store,
            keks: byok::KekCache::default(),
            vault_url,
            clock: config.clock.clone(),
            options: service::Options {
                flavor: config.flavor,
                accept_zero_padded_kwp: config.accept_zero_padded_kwp,
                delete_delay: std::time::Duration::from_millis(config.delete_delay_ms),
                sku: config.sku,
                padded_rsa_exponent: config.legacy_rsa_exponent,
            },
        },
        fault_status: config.fault_status,
        throttle: config
            .throttle
            .map(|t| throttle::Throttle::new(t, config.flavor, config.clock.clone())),
        auth,
    })
}
