//! The HTTP surface: routes, the api-version check, auth, throttling, bodies and paging, and
//! the headers every answer carries (`x-ms-request-id`; `x-ms-keyvault-service-version` on a
//! vault; Managed HSM's `(Activity ID: ...)` at the end of error messages).

use crate::auth::{Auth, TokenRequest};
use crate::error::{ApiError, ApiResult};
use crate::service::{
    CreateRequest, Flavor, ImportRequest, OperationRequest, Service, UpdateRequest,
};
use crate::throttle::{self, Throttle};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use byok_core::KeyOp;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// API versions the emulator answers.
pub const API_VERSIONS: [&str; 9] = [
    "7.0",
    "7.1",
    "7.2",
    "7.3",
    "7.4",
    "7.5",
    "7.6",
    "2025-07-01",
    "7.6-preview.2",
];

/// The newest version in [`API_VERSIONS`], which the unknown-version error names (the
/// service names its own newest: "Consider using the latest supported version (7.1).",
/// docs/azure-behaviour.md 7e).
pub const LATEST_API_VERSION: &str = "2025-07-01";

/// Largest request body: 1 MiB.
pub const MAX_BODY: usize = 1024 * 1024;

const PAGE_MAX: usize = 25;

/// `x-ms-keyvault-service-version` a vault sends (the 2025 value, dotnet/sign #836; survey
/// 7a). Managed HSM sends none.
pub const SERVICE_VERSION: &str = "1.9.2228.1";

pub struct App {
    pub service: Service,
    pub auth: Auth,
    /// Answer every authenticated data-plane request with this status (fault injection for
    /// client tests: 429 carries `Retry-After: 1`).
    pub fault_status: Option<u16>,
    /// `--throttle`: the service's published limits, or explicit ones.
    pub throttle: Option<Throttle>,
}

type Shared = State<Arc<App>>;
type Q = Query<HashMap<String, String>>;

fn api_version(q: &HashMap<String, String>) -> ApiResult<&str> {
    match q.get("api-version") {
        None => Err(ApiError::bad_parameter(
            "The api-version query parameter is required.",
        )),
        Some(v) if API_VERSIONS.contains(&v.as_str()) => Ok(v),
        Some(v) => Err(ApiError::bad_parameter(format!(
            "The specified version ({v}) is not recognized. Consider using the latest supported version ({LATEST_API_VERSION})."
        ))),
    }
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_parameter(format!("The request body is not valid: {e}")))
}

/// A fresh request id (a random UUID), as `x-ms-request-id` carries.
pub fn request_id() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("system RNG");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Every answer gets a fresh `x-ms-request-id`; a vault's data-plane answers
/// `x-ms-keyvault-service-version`; a Managed HSM's error messages end with
/// ` (Activity ID: <request id>)` (R-MHSM-NOPOLICY; survey 7a, 7b).
async fn response_details(State(app): Shared, request: Request, next: Next) -> Response {
    let id = request_id();
    let path = request.uri().path();
    let data_plane = !(path.contains("/oauth2/")
        || path.contains("/.well-known/")
        || path.contains("/discovery/"));
    let flavor = app.service.options.flavor;
    let mut response = next.run(request).await;
    if let Some(error) = response.extensions_mut().remove::<ApiError>()
        && flavor == Flavor::ManagedHsm
    {
        let body = serde_json::to_vec(&error.body(Some(&id))).unwrap_or_default();
        response.headers_mut().remove(header::CONTENT_LENGTH);
        *response.body_mut() = Body::from(body);
    }
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert("x-ms-request-id", value);
    }
    if data_plane && flavor == Flavor::Vault {
        headers.insert(
            "x-ms-keyvault-service-version",
            HeaderValue::from_static(SERVICE_VERSION),
        );
    }
    response
}

/// With `--throttle`: counts the request against its budget, or answers 429 (see
/// [`crate::throttle`]). The body is read here to tell what the request creates.
async fn throttled(app: &App, request: Request, next: Next) -> Response {
    let Some(limiter) = &app.throttle else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "BadParameter",
            "The request body is too large.",
        )
        .into_response();
    };
    let cost = throttle::cost(
        limiter,
        &app.service,
        &parts.method,
        parts.uri.path(),
        &bytes,
    )
    .await;
    if !limiter.admit(cost) {
        return throttle::throttled().into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

async fn require_token(State(app): Shared, request: Request, next: Next) -> Response {
    if let Some(response) = app.auth.authorize(&request) {
        return response;
    }
    match app.fault_status.and_then(|s| StatusCode::from_u16(s).ok()) {
        None => throttled(&app, request, next).await,
        Some(status) => {
            let code = match status.as_u16() {
                429 => "Throttled",
                403 => "Forbidden",
                _ => "ServiceUnavailable",
            };
            let mut response = ApiError::new(
                status,
                code,
                format!("Injected fault: HTTP {}.", status.as_u16()),
            )
            .into_response();
            if status == StatusCode::TOO_MANY_REQUESTS {
                response
                    .headers_mut()
                    .insert("retry-after", axum::http::HeaderValue::from_static("1"));
            }
            response
        }
    }
}

pub fn router(app: Arc<App>) -> Router {
    let data = Router::new()
        .route("/keys", get(list_keys))
        .route("/keys/{name}", get(get_latest).put(import).delete(delete))
        .route("/keys/{name}/", get(get_latest).patch(update_latest))
        .route("/keys/{name}/create", post(create))
        .route("/keys/{name}/versions", get(list_versions))
        .route("/keys/{name}/{version}", get(get_version).patch(update))
        .route("/keys/{name}/{version}/{op}", post(operation))
        .route("/deletedkeys", get(list_deleted))
        .route("/deletedkeys/{name}", get(get_deleted).delete(purge))
        .route("/deletedkeys/{name}/recover", post(recover));
    // The latest version's operations: `/keys/{name}/sign`, ... (static segments win over
    // `/keys/{name}/{version}`).
    let data = ROUTED_OPS
        .iter()
        .fold(data, |data, op| {
            data.route(
                &format!("/keys/{{name}}/{}", segment(*op)),
                post(operation_latest),
            )
        })
        .route_layer(middleware::from_fn_with_state(app.clone(), require_token));
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(openid_configuration),
        )
        .route("/{tenant}/discovery/v2.0/keys", get(jwks))
        .merge(data)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(
            app.clone(),
            response_details,
        ))
        .with_state(app)
}

/// Collapses `//` in the path before routing: the SDKs send `/keys/{name}//sign` for the
/// latest version, which then reaches the `/keys/{name}/sign` routes.
pub fn normalize<B>(mut request: axum::http::Request<B>) -> axum::http::Request<B> {
    let path = request.uri().path();
    if path.contains("//") {
        let mut fixed = path.to_string();
        while fixed.contains("//") {
            fixed = fixed.replace("//", "/");
        }
        let query = request
            .uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        if let Ok(uri) = format!("{fixed}{query}").parse::<Uri>() {
            *request.uri_mut() = uri;
        }
    }
    request
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        "The requested route does not exist in this emulator.",
    )
}

/// `POST /{tenant}/oauth2/v2.0/token`: the client's id and secret in the form
/// (`client_secret_post`) or in `Authorization: Basic` (`client_secret_basic`, RFC 6749
/// 2.3.1: each form-urlencoded, then base64).
async fn token(
    State(app): Shared,
    Path(tenant): Path<String>,
    headers: axum::http::HeaderMap,
    Form(mut form): Form<TokenRequest>,
) -> Response {
    if let Some((id, secret)) = basic_credentials(&headers) {
        form.client_id.get_or_insert(id);
        form.client_secret.get_or_insert(secret);
    }
    match app.auth.issue(&tenant, &form) {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The client id and secret of an `Authorization: Basic` header.
fn basic_credentials(headers: &axum::http::HeaderMap) -> Option<(String, String)> {
    use base64ct::Encoding;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?.trim();
    let decoded = base64ct::Base64::decode_vec(encoded).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape = |s: &str| -> Option<String> {
        let form: HashMap<String, String> =
            axum::extract::Query::try_from_uri(&format!("/?v={s}").parse().ok()?)
                .ok()?
                .0;
        form.get("v").cloned()
    };
    Some((unescape(id)?, unescape(secret)?))
}

/// The tenant's OpenID discovery document, which MSAL reads before its first token request.
/// Entra ID's members in its order (a 2021 recording of
/// `login.microsoftonline.com/{tenant}/v2.0/.well-known/openid-configuration`, docs/azure-behaviour.md
/// 10a), the tenant's endpoints pointing at the emulator: MSAL Node refuses a document without
/// `authorization_endpoint`, `token_endpoint`, `issuer` and `jwks_uri`. The emulator serves the
/// token endpoint and the JWKS; the other endpoints are named, not served.
async fn openid_configuration(
    State(app): Shared,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Value>> {
    known_tenant(&app, &tenant)?;
    let base = format!("{}/{tenant}", app.auth.authority);
    Ok(Json(json!({
        "token_endpoint": format!("{base}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "jwks_uri": format!("{base}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": app.auth.issuer(),
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{base}/oauth2/v2.0/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{base}/oauth2/v2.0/logout"),
        "claims_supported": [
            "sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
            "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr",
            "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"
        ],
        "tenant_region_scope": "NA",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    })))
}

/// The tenant's JWKS (`jwks_uri`): the key the access tokens are signed with, by its `kid`.
async fn jwks(State(app): Shared, Path(tenant): Path<String>) -> ApiResult<Json<Value>> {
    known_tenant(&app, &tenant)?;
    Ok(Json(app.auth.jwks()))
}

fn known_tenant(app: &App, tenant: &str) -> ApiResult<()> {
    if tenant != app.auth.tenant {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_tenant",
            "AADSTS90002: Tenant not found.",
        ));
    }
    Ok(())
}

async fn create(
    State(app): Shared,
    Path(name): Path<String>,
    q: Q,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    api_version(&q)?;
    Ok(Json(
        app.service
            .create(&name, parse::<CreateRequest>(&body)?)
            .await?,
    ))
}

async fn import(
    State(app): Shared,
    Path(name): Path<String>,
    q: Q,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    api_version(&q)?;
    Ok(Json(
        app.service
            .import(&name, parse::<ImportRequest>(&body)?)
            .await?,
    ))
}

async fn get_latest(State(app): Shared, Path(name): Path<String>, q: Q) -> ApiResult<Json<Value>> {
    api_version(&q)?;
    Ok(Json(app.service.get(&name, "").await?))
}

async fn get_version(
    State(app): Shared,
    Path((name, version)): Path<(String, String)>,
    q: Q,
) -> ApiResult<Json<Value>> {
    api_version(&q)?;
    Ok(Json(app.service.get(&name, &version).await?))
}

async fn update(
    State(app): Shared,
    Path((name, version)): Path<(String, String)>,
    q: Q,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    api_version(&q)?;
    Ok(Json(
        app.service
            .update(&name, &version, parse::<UpdateRequest>(&body)?)
            .await?,
    ))
}

async fn update_latest(
    State(app): Shared,
    Path(name): Path<String>,
    q: Q,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    api_version(&q)?;
    Ok(Json(
        app.service
            .update(&name, "", parse::<UpdateRequest>(&body)?)
            .await?,
    ))
}

async fn operation_latest(
    state: Shared,
    Path(name): Path<String>,
    uri: Uri,
    q: Q,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let op = uri
        .path()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    operation(state, Path((name, String::new(), op)), q, body).await
}

async fn delete(State(app): Shared, Path(name): Path<String>, q: Q) -> ApiResult<Json<Value>> {
    api_version(&q)?;
    Ok(Json(app.service.delete(&name).await?))
}

async fn get_deleted(State(app): Shared, Path(name): Path<String>, q: Q) -> ApiResult<Json<Value>> {
    api_version(&q)?;
    Ok(Json(app.service.get_deleted(&name).await?))
}

async fn recover(State(app): Shared, Path(name): Path<String>, q: Q) -> ApiResult<Json<Value>> {
    api_version(&q)?;
    Ok(Json(app.service.recover(&name).await?))
}

async fn purge(State(app): Shared, Path(name): Path<String>, q: Q) -> ApiResult<StatusCode> {
    api_version(&q)?;
    app.service.purge(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

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

async fn list_keys(State(app): Shared, q: Q) -> ApiResult<Json<Value>> {
    page_request(&q, "/keys")?.answer(&app, None, false).await
}

async fn list_deleted(State(app): Shared, q: Q) -> ApiResult<Json<Value>> {
    page_request(&q, "/deletedkeys")?
        .answer(&app, None, true)
        .await
}

async fn list_versions(
    State(app): Shared,
    Path(name): Path<String>,
    q: Q,
) -> ApiResult<Json<Value>> {
    page_request(&q, &format!("/keys/{name}/versions"))?
        .answer(&app, Some(&name), false)
        .await
}

/// Decodes `body` as every request body the emulator reads, and a `key_hsm` as a package:
/// the entry point for fuzzing. Never panics.
pub fn decode_any_request(body: &[u8]) {
    let bytes = Bytes::copy_from_slice(body);
    let _ = parse::<CreateRequest>(&bytes);
    let _ = parse::<UpdateRequest>(&bytes);
    let _ = parse::<OperationRequest>(&bytes);
    if let Ok(import) = parse::<ImportRequest>(&bytes)
        && let Some(blob) = import.key.key_hsm
        && let Ok(file) = byok_core::b64::decode("key_hsm", &blob)
    {
        let _ = byok_core::KeyTransferPackage::parse(&file);
    }
    let _ = std::str::from_utf8(body).map(token_form);
}

/// The token form, read as the handler's extractor does.
fn token_form(text: &str) -> Option<TokenRequest> {
    axum::extract::Query::<TokenRequest>::try_from_uri(&format!("/?{text}").parse().ok()?)
        .ok()
        .map(|q| q.0)
}

/// The operations with routes of their own; `import` is what `PUT /keys/{name}` does.
const ROUTED_OPS: [KeyOp; 6] = [
    KeyOp::Sign,
    KeyOp::Verify,
    KeyOp::Encrypt,
    KeyOp::Decrypt,
    KeyOp::WrapKey,
    KeyOp::UnwrapKey,
];

/// An operation's URL segment: Key Vault's paths spell its name in lowercase (`wrapkey`).
fn segment(op: KeyOp) -> String {
    op.name().to_ascii_lowercase()
}

async fn operation(
    State(app): Shared,
    Path((name, version, op)): Path<(String, String, String)>,
    q: Q,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    api_version(&q)?;
    let Some(op) = ROUTED_OPS.into_iter().find(|o| segment(*o) == op) else {
        return Err(not_found().await);
    };
    let req: OperationRequest = parse(&body)?;
    Ok(Json(app.service.operate(&name, &version, op, req).await?))
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
