//! The HTTP surface: the routes and one handler each. Beside it: `api_version` (the
//! `api-version` check, as extractors), `middleware` (the headers every answer carries —
//! `x-ms-request-id`; `x-ms-keyvault-service-version` on a vault; Managed HSM's `(Activity
//! ID: ...)` — and, on the data plane, the token, the injected fault and throttling, one layer
//! each), `paging` (lists and their `nextLink`s) and `fuzz` (the fuzzing entry).

mod api_version;
mod fuzz;
mod middleware;
mod paging;

pub use api_version::{API_VERSIONS, ApiVersion, LATEST_API_VERSION, VersionedBody};
pub use fuzz::decode_any_request;
pub use middleware::SERVICE_VERSION;

use crate::auth::{Auth, TokenRequest};
use crate::error::{ApiError, ApiResult};
use crate::service::{CreateRequest, ImportRequest, OperationRequest, Service, UpdateRequest};
use crate::throttle::Throttle;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, Uri, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use byok_core::KeyOp;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// Largest request body: 1 MiB.
pub const MAX_BODY: usize = 1024 * 1024;

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

fn parse<T: DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_parameter(format!("The request body is not valid: {e}")))
}

/// A fresh request id (a random UUID), as `x-ms-request-id` carries.
pub use crate::ids::uuid as request_id;

use paging::{list_deleted, list_keys, list_versions};

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
        // Innermost last: the token, then an injected fault, then throttling.
        .route_layer(from_fn_with_state(app.clone(), middleware::throttle))
        .route_layer(from_fn_with_state(app.clone(), middleware::inject_fault))
        .route_layer(from_fn_with_state(app.clone(), middleware::require_token));
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
        .layer(from_fn_with_state(
            app.clone(),
            middleware::response_details,
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
    VersionedBody(body): VersionedBody,
) -> ApiResult<Json<Value>> {
    let req = parse::<CreateRequest>(&body)?;
    Ok(Json(app.service.create(&name, req).await?))
}

async fn import(
    State(app): Shared,
    Path(name): Path<String>,
    VersionedBody(body): VersionedBody,
) -> ApiResult<Json<Value>> {
    let req = parse::<ImportRequest>(&body)?;
    Ok(Json(app.service.import(&name, req).await?))
}

async fn get_latest(
    State(app): Shared,
    Path(name): Path<String>,
    _: ApiVersion,
) -> ApiResult<Json<Value>> {
    Ok(Json(app.service.get(&name, "").await?))
}

async fn get_version(
    State(app): Shared,
    Path((name, version)): Path<(String, String)>,
    _: ApiVersion,
) -> ApiResult<Json<Value>> {
    Ok(Json(app.service.get(&name, &version).await?))
}

async fn update(
    State(app): Shared,
    Path((name, version)): Path<(String, String)>,
    VersionedBody(body): VersionedBody,
) -> ApiResult<Json<Value>> {
    let req = parse::<UpdateRequest>(&body)?;
    Ok(Json(app.service.update(&name, &version, req).await?))
}

async fn update_latest(
    State(app): Shared,
    Path(name): Path<String>,
    VersionedBody(body): VersionedBody,
) -> ApiResult<Json<Value>> {
    let req = parse::<UpdateRequest>(&body)?;
    Ok(Json(app.service.update(&name, "", req).await?))
}

async fn delete(
    State(app): Shared,
    Path(name): Path<String>,
    _: ApiVersion,
) -> ApiResult<Json<Value>> {
    Ok(Json(app.service.delete(&name).await?))
}

async fn get_deleted(
    State(app): Shared,
    Path(name): Path<String>,
    _: ApiVersion,
) -> ApiResult<Json<Value>> {
    Ok(Json(app.service.get_deleted(&name).await?))
}

async fn recover(
    State(app): Shared,
    Path(name): Path<String>,
    _: ApiVersion,
) -> ApiResult<Json<Value>> {
    Ok(Json(app.service.recover(&name).await?))
}

async fn purge(
    State(app): Shared,
    Path(name): Path<String>,
    _: ApiVersion,
) -> ApiResult<StatusCode> {
    app.service.purge(&name).await?;
    Ok(StatusCode::NO_CONTENT)
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

/// `POST /keys/{name}/{version}/{op}`.
async fn operation(
    State(app): Shared,
    Path((name, version, op)): Path<(String, String, String)>,
    VersionedBody(body): VersionedBody,
) -> ApiResult<Json<Value>> {
    operate(&app, &name, &version, &op, &body).await
}

/// `POST /keys/{name}/{op}`: the latest version's.
async fn operation_latest(
    State(app): Shared,
    Path(name): Path<String>,
    uri: Uri,
    VersionedBody(body): VersionedBody,
) -> ApiResult<Json<Value>> {
    let op = uri.path().rsplit('/').next().unwrap_or_default();
    operate(&app, &name, "", op, &body).await
}

/// An operation on a version (`""`: the latest) named by its URL segment.
async fn operate(
    app: &App,
    name: &str,
    version: &str,
    op: &str,
    body: &Bytes,
) -> ApiResult<Json<Value>> {
    let Some(op) = ROUTED_OPS.into_iter().find(|o| segment(*o) == op) else {
        return Err(not_found().await);
    };
    let req: OperationRequest = parse(body)?;
    Ok(Json(app.service.operate(name, version, op, req).await?))
}
