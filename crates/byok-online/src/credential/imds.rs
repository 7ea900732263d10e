//! Azure's instance-metadata endpoint (IMDS), where a VM's managed identity gets its tokens:
//! where it is (`--imds-endpoint` sends its requests elsewhere, a testing aid), the managed
//! identity credential's transport to it, and `auto`'s probe of it (one request, no retry,
//! [`PROBE_TIMEOUT`]) before the SDK is let retry for a minute and more.

use super::secs;
use crate::error::{OnlineError, Result};
use azure_core::http::{AsyncRawResponse, HttpClient, Request, Transport, Url};
use std::sync::Arc;
use std::time::Duration;

/// Azure's instance-metadata endpoint, where a VM's managed identity gets its tokens.
pub const IMDS_BASE: &str = "http://169.254.169.254";
const IMDS_HOST: &str = "169.254.169.254";
const IMDS_TOKEN_PATH: &str = "/metadata/identity/oauth2/token";
/// How long `auto`'s managed-identity probe waits for IMDS, connect and answer together.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Where the managed identity's instance-metadata endpoint is: Azure's, or (a testing aid,
/// `--imds-endpoint`) another address its requests are sent to instead.
#[derive(Debug, Clone)]
pub struct Imds {
    /// `scheme://host[:port]`.
    base: Url,
    overridden: bool,
}

impl Default for Imds {
    fn default() -> Self {
        Imds {
            base: Url::parse(IMDS_BASE).expect("a valid constant URL"),
            overridden: false,
        }
    }
}

impl Imds {
    /// Azure's endpoint, or `endpoint` (`http://HOST:PORT`) instead.
    pub fn new(endpoint: Option<&str>) -> Result<Self> {
        let Some(endpoint) = endpoint else {
            return Ok(Imds::default());
        };
        let bad = |why: &str| {
            OnlineError::Usage(format!(
                "--imds-endpoint {endpoint}: {why}; give http://HOST:PORT"
            ))
        };
        let base = Url::parse(endpoint).map_err(|e| bad(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(bad("not an http URL with a host"));
        }
        if !matches!(base.path(), "" | "/") || base.query().is_some() {
            return Err(bad("a path or query is not taken"));
        }
        Ok(Imds {
            base,
            overridden: true,
        })
    }

    /// The token endpoint's URL.
    pub(super) fn token_url(&self) -> Url {
        let mut url = self.base.clone();
        url.set_path(IMDS_TOKEN_PATH);
        url
    }

    /// The managed identity credential's transport: never through a proxy (IMDS is
    /// link-local, and a proxy's answer would pass for IMDS), the SDK's own timeouts (20 s
    /// connect, 60 s read), and with `--imds-endpoint` its requests to Azure's address sent
    /// there instead.
    pub(super) fn transport(&self) -> Result<Transport> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(20))
            .read_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| OnlineError::Http(e.to_string()))?;
        let to = self.overridden.then(|| self.base.clone());
        Ok(Transport::new(Arc::new(ImdsClient { http, to })))
    }
}

/// An HTTP client that sends requests for Azure's IMDS address to `to` (when set).
#[derive(Debug)]
struct ImdsClient {
    http: reqwest::Client,
    to: Option<Url>,
}

#[async_trait::async_trait]
impl HttpClient for ImdsClient {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        match &self.to {
            Some(to) if request.url().host_str() == Some(IMDS_HOST) => {
                let mut moved = request.clone();
                let url = moved.url_mut();
                // Both are http(s) URLs with a host: none of these can fail.
                let _ = url.set_scheme(to.scheme());
                let _ = url.set_host(to.host_str());
                let _ = url.set_port(to.port_or_known_default());
                self.http.execute_request(&moved).await
            }
            _ => self.http.execute_request(request).await,
        }
    }
}

/// A quick check, before a step of the chain is asked for a token, that what it needs is there.
#[async_trait::async_trait]
pub(super) trait Probe: Send + Sync {
    /// What answered, or why nothing usable did.
    async fn probe(&self) -> std::result::Result<String, String>;
}

/// One request to IMDS's token endpoint, deliberately without the `Metadata: true` header:
/// Azure's IMDS refuses such a request at once with 400 (and issues no token). Any other
/// answer that does not name IMDS in its `Server` header comes from something else at that
/// address (another cloud's metadata service), whose 404s the SDK would retry for a minute.
pub(super) struct ImdsProbe {
    url: reqwest::Url,
    http: reqwest::Client,
}

impl ImdsProbe {
    pub(super) fn new(imds: &Imds) -> Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(PROBE_TIMEOUT)
            .timeout(PROBE_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| OnlineError::Http(e.to_string()))?;
        let mut url = reqwest::Url::parse(imds.token_url().as_str())
            .map_err(|e| OnlineError::Http(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("api-version", "2018-02-01");
        Ok(ImdsProbe { url, http })
    }
}

#[async_trait::async_trait]
impl Probe for ImdsProbe {
    async fn probe(&self) -> std::result::Result<String, String> {
        let at = format!("{}{}", host_port(&self.url), self.url.path());
        match self.http.get(self.url.clone()).send().await {
            Err(e) if e.is_timeout() => Err(format!(
                "no answer from {at} within {} s (probe, no retry)",
                secs(PROBE_TIMEOUT)
            )),
            Err(e) => Err(format!(
                "no answer from {at}: {} (probe, no retry)",
                root_cause(&e)
            )),
            Ok(resp) => {
                let status = resp.status().as_u16();
                let server = resp
                    .headers()
                    .get(reqwest::header::SERVER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let named = if server.is_empty() {
                    String::new()
                } else {
                    format!(", Server: {server}")
                };
                if status == 400 || server.starts_with("IMDS/") {
                    Ok(format!("{at} answered the probe (HTTP {status}{named})"))
                } else {
                    Err(format!(
                        "{at} answered HTTP {status}{named}: not Azure's IMDS, which answers \
                         this probe 400"
                    ))
                }
            }
        }
    }
}

/// `host:port` of a URL.
fn host_port(url: &reqwest::Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => url.to_string(),
    }
}

/// The innermost cause of an error (`Network is unreachable (os error 101)`).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
