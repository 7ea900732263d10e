//! No redirect is followed, for the vault or for the authority.
//!
//! reqwest follows up to 10 redirects by default, to any scheme: a vault answering 301 to
//! `http://…` had the GET sent again in the clear, and an authority answering the token POST
//! with 307 had the form, the client secret in it, re-sent to a plain-HTTP address. Key Vault
//! and Entra ID do not redirect the requests this tool makes (the Azure SDK's own reqwest
//! client turns redirects off too: typespec_client_core's `new_reqwest_client`, "REST API
//! guidelines discourage services from using 3xx redirects"), so a redirect is refused
//! whatever its target, same-origin HTTPS included: following one would only ever serve a
//! proxy, captive portal or endpoint that is not the service. [`NoRedirects`] is the
//! transport's HTTP client; its reqwest client is built with `Policy::none()` and every 3xx
//! answer becomes a [`RedirectRefused`] error, which the retry policy does not retry (it is
//! not a transport error) and [`crate::error::from_azure`] reports with its `Location`.

use azure_core::http::{AsyncRawResponse, HttpClient, Request};
use byok_cli_common::terminal::escape;

/// A 3xx answer, refused: who answered, how, and where it pointed.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{method} {url} was answered {status} with a redirect to {location}{plain}: byok-online \
     follows no redirect (Key Vault and Entra ID do not redirect these requests, and a \
     redirect could carry the request, its token or the client secret elsewhere), so nothing \
     was sent there. Check the vault URL and the authority host (--authority-host, \
     AZURE_AUTHORITY_HOST) name the service itself, and that no proxy on the way rewrites \
     answers"
)]
pub struct RedirectRefused {
    pub method: String,
    /// The request's URL without its query.
    pub url: String,
    pub status: u16,
    /// The `Location` header, escaped for the terminal, or `(no Location header)`.
    pub location: String,
    /// ` (plain HTTP)` when the Location leaves HTTPS.
    plain: &'static str,
}

/// The transport's HTTP client: `http`, with every redirect answer turned into an error.
#[derive(Debug)]
pub struct NoRedirects {
    http: reqwest::Client,
}

impl NoRedirects {
    /// Wraps `http`, which must be built with `reqwest::redirect::Policy::none()` (so that a
    /// 3xx reaches this client instead of being followed).
    pub fn new(http: reqwest::Client) -> Self {
        NoRedirects { http }
    }
}

#[async_trait::async_trait]
impl HttpClient for NoRedirects {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let response = self.http.execute_request(request).await?;
        let status = u16::from(response.status());
        if !(300..400).contains(&status) {
            return Ok(response);
        }
        let location = response
            .headers()
            .get_optional_str(&azure_core::http::headers::HeaderName::from_static(
                "location",
            ))
            .map(str::to_string);
        let plain = match &location {
            Some(l) if l.trim_start().to_ascii_lowercase().starts_with("http:") => " (plain HTTP)",
            _ => "",
        };
        let mut url = request.url().clone();
        url.set_query(None);
        let refused = RedirectRefused {
            method: request.method().to_string(),
            url: url.to_string(),
            status,
            location: location
                .as_deref()
                .map(|l| escape(l).into_owned())
                .unwrap_or_else(|| "(no Location header)".into()),
            plain,
        };
        tracing::warn!("{refused}");
        Err(azure_core::Error::new(
            azure_core::error::ErrorKind::Other,
            refused,
        ))
    }
}

/// The refused redirect somewhere in `err`'s chain of causes.
pub fn find<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a RedirectRefused> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<RedirectRefused>() {
            return Some(r);
        }
        cur = e.source();
    }
    None
}
