//! Lists, one page at a time: `maxresults`, `$skiptoken` and the service's `nextLink`s
//! (survey 2a, 2b).

use super::App;
use super::api_version::api_version;
use crate::error::{ApiError, ApiResult};
use axum::Json;
use axum::extract::{Path, Query, State};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// The longest page, and the default (Learn "Get Keys").
const PAGE_MAX: usize = 25;

type Shared = State<Arc<App>>;
type Q = Query<HashMap<String, String>>;

/// One page's request: where it starts, how long it is, and how to link the next.
struct PageRequest {
    /// `None`: the first page (no `$skiptoken`).
    skip: Option<usize>,
    max: usize,
    /// `maxresults` when the client gave one (the link repeats it).
    given_max: Option<usize>,
    version: String,
    path: String,
}

/// Reads `api-version`, `maxresults` (1 to 25, default 25: Learn "Get Keys"; any other value
/// is 400 `BadParameter`, whose wording is inferred) and `$skiptoken`.
fn page_request(q: &HashMap<String, String>, path: &str) -> ApiResult<PageRequest> {
    let version = api_version(q)?.to_string();
    let given_max = match q.get("maxresults") {
        None => None,
        Some(m) => Some(
            m.parse::<usize>()
                .ok()
                .filter(|m| (1..=PAGE_MAX).contains(m))
                .ok_or_else(|| {
                    ApiError::bad_parameter(format!(
                        "Invalid maxresults: '{m}'. The value must be between 1 and {PAGE_MAX}."
                    ))
                })?,
        ),
    };
    let skip = q.get("$skiptoken").map(|t| skip_of(t)).transpose()?;
    Ok(PageRequest {
        skip,
        max: given_max.unwrap_or(PAGE_MAX),
        given_max,
        version,
        path: path.to_string(),
    })
}

/// The `$skiptoken` for a page starting at `skip`: base64url of
/// `{"NextMarker":"...","TargetLocation":0}`, as the service's (survey 2a). Opaque to clients.
fn skip_token(skip: usize) -> String {
    let json = json!({"NextMarker": format!("2!{skip}!"), "TargetLocation": 0});
    byok_core::b64::encode(json.to_string().as_bytes())
}

fn skip_of(token: &str) -> ApiResult<usize> {
    let invalid = || ApiError::bad_parameter("The $skiptoken is not valid.");
    let bytes = byok_core::b64::decode("$skiptoken", token).map_err(|_| invalid())?;
    let json: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    json["NextMarker"]
        .as_str()
        .and_then(|m| m.strip_prefix("2!")?.strip_suffix('!')?.parse().ok())
        .ok_or_else(invalid)
}

/// The vault URL with an explicit port, as the service's next links have (`:443`; survey 2a).
fn with_port(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let has_port = match host.rfind(']') {
        Some(i) => host[i..].contains(':'),
        None => host.contains(':'),
    };
    if has_port {
        url.to_string()
    } else {
        format!("{scheme}://{host}:443{path}")
    }
}

impl PageRequest {
    /// The absolute link to the page starting at `skip`: `api-version` first, then
    /// `$skiptoken`, then `maxresults` when one was given (survey 2a).
    fn link(&self, app: &App, skip: usize) -> String {
        let mut link = format!(
            "{}{}?api-version={}&$skiptoken={}",
            with_port(&app.service.vault_url),
            self.path,
            self.version,
            skip_token(skip)
        );
        if let Some(m) = self.given_max {
            link.push_str(&format!("&maxresults={m}"));
        }
        link
    }

    /// Lists one page. A first page of a list longer than one page is EMPTY and carries a
    /// nextLink, as the service sometimes answers (R-PURGEALL, survey 2b): clients must
    /// follow nextLink through empty pages. The last page has `"nextLink": null`.
    async fn answer(
        &self,
        app: &App,
        versions_of: Option<&str>,
        deleted: bool,
    ) -> ApiResult<Json<Value>> {
        let skip = self.skip.unwrap_or(0);
        let (items, more) = app
            .service
            .list(versions_of, deleted, skip, self.max)
            .await?;
        let (items, next) = match (self.skip, more) {
            (None, true) => (Vec::new(), Some(self.link(app, 0))),
            (_, true) => (items, Some(self.link(app, skip + self.max))),
            (_, false) => (items, None),
        };
        Ok(Json(json!({"value": items, "nextLink": next})))
    }
}

pub async fn list_keys(State(app): Shared, q: Q) -> ApiResult<Json<Value>> {
    page_request(&q, "/keys")?.answer(&app, None, false).await
}

pub async fn list_deleted(State(app): Shared, q: Q) -> ApiResult<Json<Value>> {
    page_request(&q, "/deletedkeys")?
        .answer(&app, None, true)
        .await
}

pub async fn list_versions(
    State(app): Shared,
    Path(name): Path<String>,
    q: Q,
) -> ApiResult<Json<Value>> {
    page_request(&q, &format!("/keys/{name}/versions"))?
        .answer(&app, Some(&name), false)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_name_the_port_even_when_the_url_does_not() {
        assert_eq!(
            with_port("https://contoso.vault.azure.net"),
            "https://contoso.vault.azure.net:443"
        );
        assert_eq!(
            with_port("https://emulator.vault.azure.net:8443"),
            "https://emulator.vault.azure.net:8443"
        );
        assert_eq!(with_port("https://[::1]"), "https://[::1]:443");
        assert_eq!(with_port("https://[::1]:9"), "https://[::1]:9");
    }

    #[test]
    fn skip_tokens_are_base64url_json_and_read_back() {
        let token = skip_token(50);
        let json: Value =
            serde_json::from_slice(&byok_core::b64::decode("t", &token).unwrap()).unwrap();
        assert_eq!(json["TargetLocation"], 0);
        assert!(json["NextMarker"].is_string());
        assert_eq!(skip_of(&token).unwrap(), 50);
        assert!(skip_of("e30").is_err()); // {}
    }
}
