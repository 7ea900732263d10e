//! The HTTP surface: routes, the api-version check, auth, bodies and paging.

use crate::auth::{Auth, TokenRequest};
use crate::error::{ApiError, ApiResult};
use crate::service::{CreateRequest, ImportRequest, OperationRequest, Service, UpdateRequest};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{StatusCode, Uri};
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

/// Largest request body: 1 MiB.
pub const MAX_BODY: usize = 1024 * 1024;

const PAGE_MAX: usize = 25;

pub struct App {
    pub service: Service,
    pub auth: Auth,
    /// Answer every authenticated data-plane request with this status (fault injection for
    /// client tests: 429 carries `Retry-After: 1`).
    pub fault_status: Option<u16>,
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
            "The specified version ({v}) is not recognized. Consider using the latest supported version (7.6)."
        ))),
    }
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_parameter(format!("The request body is not valid: {e}")))
}

async fn require_token(State(app): Shared, request: Request, next: Next) -> Response {
    if let Err(e) = app.auth.check(request.headers()) {
        return e.into_response();
    }
    match app.fault_status.and_then(|s| StatusCode::from_u16(s).ok()) {
        None => next.run(request).await,
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
        .merge(data)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
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

async fn token(
    State(app): Shared,
    Path(tenant): Path<String>,
    Form(form): Form<TokenRequest>,
) -> Response {
    match app.auth.issue(&tenant, &form) {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

/// OpenID discovery, which MSAL-based clients (the Python and .NET SDKs) read first.
async fn openid_configuration(
    State(app): Shared,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Value>> {
    if tenant != app.auth.tenant {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_tenant",
            "AADSTS90002: Tenant not found.",
        ));
    }
    let base = format!("{}/{tenant}", app.auth.authority);
    Ok(Json(json!({
        "issuer": format!("{base}/v2.0"),
        "token_endpoint": format!("{base}/oauth2/v2.0/token"),
        "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{base}/oauth2/v2.0/devicecode"),
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
        "response_types_supported": ["token"],
        "tenant_region_scope": null,
    })))
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

fn page(app: &App, q: &HashMap<String, String>, path: &str) -> ApiResult<(usize, usize, String)> {
    let version = api_version(q)?;
    let max = match q.get("maxresults") {
        None => PAGE_MAX,
        Some(m) => m
            .parse::<usize>()
            .ok()
            .filter(|m| (1..=PAGE_MAX).contains(m))
            .ok_or_else(|| ApiError::bad_parameter("maxresults must be between 1 and 25."))?,
    };
    let skip = match q.get("$skiptoken") {
        None => 0,
        Some(s) => s
            .parse()
            .map_err(|_| ApiError::bad_parameter("Invalid $skiptoken."))?,
    };
    let next = format!(
        "{}{path}?api-version={version}&maxresults={max}&$skiptoken={}",
        app.service.vault_url,
        skip + max
    );
    Ok((skip, max, next))
}

fn paged(items: Vec<Value>, more: bool, next: String) -> Json<Value> {
    Json(json!({"value": items, "nextLink": if more { Value::String(next) } else { Value::Null }}))
}

async fn list_keys(State(app): Shared, q: Q) -> ApiResult<Json<Value>> {
    let (skip, max, next) = page(&app, &q, "/keys")?;
    let (items, more) = app.service.list(None, false, skip, max).await?;
    Ok(paged(items, more, next))
}

async fn list_deleted(State(app): Shared, q: Q) -> ApiResult<Json<Value>> {
    let (skip, max, next) = page(&app, &q, "/deletedkeys")?;
    let (items, more) = app.service.list(None, true, skip, max).await?;
    Ok(paged(items, more, next))
}

async fn list_versions(
    State(app): Shared,
    Path(name): Path<String>,
    q: Q,
) -> ApiResult<Json<Value>> {
    let (skip, max, next) = page(&app, &q, &format!("/keys/{name}/versions"))?;
    let (items, more) = app.service.list(Some(&name), false, skip, max).await?;
    Ok(paged(items, more, next))
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
        && let Ok(file) = byok_core::b64::decode_lenient("key_hsm", &blob)
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
