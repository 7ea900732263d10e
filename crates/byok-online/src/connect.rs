//! Reaching a vault: its URL, the HTTPS client (extra CA roots, proxy from the environment,
//! timeouts), the credential, and the SDK's KeyClient.
//!
//! The SDK's challenge-resource verification is always on (its default): a vault's 401 must
//! name a resource whose host is a parent of the vault's. A kv-emulator is reached under its
//! real-looking URL (`https://NAME.vault.azure.net:PORT`, from its `connection.json`) with the
//! HTTPS client resolving that host to the emulator's `vault_address`, so it passes the same
//! check as Azure.

use crate::credential::{Imds, client_secret, credential};
use crate::error::{OnlineError, Result};
use crate::redirect::NoRedirects;
use azure_core::http::{ClientOptions, Transport};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions};
use byok_cli_common::files;
use byok_core::VaultUrl;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use crate::credential::AuthMode;

/// Everything needed to build a client.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    pub vault_name: Option<String>,
    pub hsm_name: Option<String>,
    pub vault_url: Option<String>,
    pub emulator: Option<PathBuf>,
    pub ca_cert: Option<PathBuf>,
    pub auth: Option<AuthMode>,
    pub authority_host: Option<String>,
    /// Testing aid: where managed identity's instance-metadata endpoint is, instead of
    /// `http://169.254.169.254` (`--imds-endpoint`).
    pub imds_endpoint: Option<String>,
    /// With `emulator`: which of its clients to authenticate as.
    pub emulator_identity: EmulatorIdentity,
    pub api_version: Option<String>,
    /// The vault's throttling window, when not Azure's 10 s (tests): the 429/5xx backoff
    /// scales with it, and batch-import paces to it.
    pub window: Option<std::time::Duration>,
    /// Pacing to the vault's limits (batch-import): every try takes its tokens first, and
    /// the 429 backoff is scaled like its window. `None`: no pacing.
    pub pace: Option<Arc<crate::pace::Pacer>>,
}

/// Which of a kv-emulator's clients to use (testing aid).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EmulatorIdentity {
    /// `client_id`: every right on the vault's keys.
    #[default]
    Client,
    /// `reader_client_id`: no role on the vault (RBAC's 403 on every request).
    Reader,
}

/// A connected vault.
pub struct Vault {
    pub url: VaultUrl,
    pub keys: KeyClient,
}

impl ConnectOptions {
    /// The vault URL, from the first of the emulator, --vault-url, --vault-name, --hsm-name,
    /// then the environment: BYOK_VAULT_URL, AZURE_KEYVAULT_NAME, AZURE_MANAGEDHSM_NAME.
    pub fn vault_url(&self) -> Result<VaultUrl> {
        if let Some(dir) = &self.emulator {
            let conn = kv_connection(dir)?;
            return Ok(VaultUrl::parse(&conn.vault_url)?);
        }
        if let Some(url) = &self.vault_url {
            return Ok(VaultUrl::parse(url)?);
        }
        if let Some(name) = &self.vault_name {
            return Ok(VaultUrl::from_vault_name(name)?);
        }
        if let Some(name) = &self.hsm_name {
            return Ok(VaultUrl::from_hsm_name(name)?);
        }
        // The environment is read only when no flag names a vault, so a flag always wins
        // (`--hsm-name` over an AZURE_KEYVAULT_NAME left in the shell).
        if let Some(url) = env("BYOK_VAULT_URL") {
            return Ok(VaultUrl::parse(&url)?);
        }
        if let Some(name) = env("AZURE_KEYVAULT_NAME") {
            return Ok(VaultUrl::from_vault_name(&name)?);
        }
        if let Some(name) = env("AZURE_MANAGEDHSM_NAME") {
            return Ok(VaultUrl::from_hsm_name(&name)?);
        }
        Err(OnlineError::NoVault)
    }

    /// Builds the HTTPS client, credential and KeyClient. Sends nothing.
    pub fn connect(&self) -> Result<Vault> {
        let url = self.vault_url()?;
        tracing::info!("vault: {url}");
        let emulator = self.emulator.as_deref().map(kv_connection).transpose()?;
        let ca = self
            .ca_cert
            .clone()
            .or_else(|| emulator.as_ref().map(|c| c.ca_cert.clone()));
        // The emulator's vault host is resolved to its address: no DNS knows it.
        let resolve = emulator
            .as_ref()
            .and_then(|c| c.vault_address.map(|addr| (url.host().to_string(), addr)));
        let http = http_client(ca.as_deref(), resolve)?;
        // The vault's requests and the credential's token requests share this transport, so
        // neither follows a redirect (redirect.rs).
        let transport = Transport::new(Arc::new(NoRedirects::new(http)));
        let authority = self
            .authority_host
            .clone()
            .or_else(|| emulator.as_ref().map(|c| c.authority_host.clone()))
            .or_else(|| env("AZURE_AUTHORITY_HOST"));
        let imds = Imds::new(self.imds_endpoint.as_deref())?;
        let credential = match (&emulator, self.auth) {
            // An explicit --auth picks the credential even with --emulator.
            (Some(conn), None) => {
                let (id, secret) =
                    conn.identity(self.emulator_identity, self.emulator.as_deref())?;
                tracing::info!("credential: the emulator's client secret (its connection.json)");
                client_secret(
                    &conn.tenant_id,
                    id,
                    secret,
                    authority.as_deref(),
                    &transport,
                )?
            }
            _ => credential(
                self.auth.unwrap_or(AuthMode::Auto),
                authority.as_deref(),
                &transport,
                &imds,
            )?,
        };
        // The challenge-resource verification stays at the SDK's default: on.
        let mut options = KeyClientOptions {
            client_options: ClientOptions {
                transport: Some(transport),
                // Microsoft's 429 schedule (1, 2, 4, 8, 16 s): see pace.rs.
                retry: crate::pace::retry_options(self.window),
                per_try_policies: crate::pace::policies(self.pace.as_ref()),
                ..Default::default()
            },
            ..Default::default()
        };
        if let Some(v) = &self.api_version {
            options.api_version = v.clone();
        }
        let keys = KeyClient::new(&url.to_string(), credential, Some(options))
            .map_err(crate::error::from_azure)?;
        Ok(Vault { url, keys })
    }
}

/// A variable's value, unless unset or empty.
fn env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

/// Largest emulator connection file or CA certificate we read.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

fn kv_connection(dir: &Path) -> Result<EmulatorConnection> {
    let path = dir.join("connection.json");
    let bytes = files::read_limited(&path, MAX_CONFIG_BYTES)?;
    serde_json::from_slice(&bytes).map_err(|e| OnlineError::Emulator {
        path,
        reason: e.to_string(),
    })
}

/// The fields of kv-emulator's `connection.json` this client reads.
#[derive(Debug, Clone, serde::Deserialize)]
struct EmulatorConnection {
    vault_url: String,
    /// Where the vault URL's host is to be resolved to.
    #[serde(default)]
    vault_address: Option<SocketAddr>,
    ca_cert: PathBuf,
    tenant_id: String,
    client_id: String,
    client_secret: String,
    #[serde(default)]
    reader_client_id: Option<String>,
    #[serde(default)]
    reader_client_secret: Option<String>,
    authority_host: String,
}

impl EmulatorConnection {
    /// The client id and secret of `identity`.
    fn identity(&self, identity: EmulatorIdentity, dir: Option<&Path>) -> Result<(&str, &str)> {
        match identity {
            EmulatorIdentity::Client => Ok((&self.client_id, &self.client_secret)),
            EmulatorIdentity::Reader => self
                .reader_client_id
                .as_deref()
                .zip(self.reader_client_secret.as_deref())
                .ok_or_else(|| OnlineError::Emulator {
                    path: dir.unwrap_or(Path::new(".")).join("connection.json"),
                    reason: "it names no reader client (an older kv-emulator wrote it): restart \
                             kv-emulator to write it anew"
                        .into(),
                }),
        }
    }
}

/// The reqwest client the SDK uses: extra CA root, proxy from HTTPS_PROXY/NO_PROXY, timeouts,
/// no redirect followed (a 3xx reaches [`NoRedirects`], which refuses it); `resolve` connects
/// to an address of ours for a host (a kv-emulator's vault host).
pub fn http_client(
    ca: Option<&Path>,
    resolve: Option<(String, SocketAddr)>,
) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .redirect(reqwest::redirect::Policy::none());
    if let Some((host, addr)) = resolve {
        tracing::info!("resolving {host} to {addr} (the emulator's connection.json)");
        builder = builder.resolve(&host, addr);
    }
    if let Some(path) = ca {
        let pem = files::read_limited(path, MAX_CONFIG_BYTES)?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| OnlineError::Http(format!("{}: {e}", path.display())))?;
        builder = builder.tls_certs_merge([cert]);
    }
    builder
        .build()
        .map_err(|e| OnlineError::Http(e.to_string()))
}
