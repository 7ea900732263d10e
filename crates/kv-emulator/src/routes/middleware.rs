//! The layers around the handlers, outermost first: every answer's headers
//! ([`response_details`]); then, on the data plane, the bearer token ([`require_token`]), the
//! injected fault (`--fault-status`, [`inject_fault`]) and throttling (`--throttle`,
//! [`throttle`]), each a layer of its own in [`super::router`].

use super::{App, MAX_BODY};
use crate::error::ApiError;
use crate::flavor::Flavor;
use crate::ids::uuid as request_id;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

type Shared = State<Arc<App>>;

/// `x-ms-keyvault-service-version` a vault sends (the 2025 value, dotnet/sign #836; survey
/// 7a). Managed HSM sends none.
pub const SERVICE_VERSION: &str = "1.9.2228.1";

/// Every answer gets a fresh `x-ms-request-id`; a vault's data-plane answers
/// `x-ms-keyvault-service-version`; a Managed HSM's error messages end with
/// ` (Activity ID: <request id>)` (R-MHSM-NOPOLICY; survey 7a, 7b).
pub async fn response_details(State(app): Shared, request: Request, next: Next) -> Response {
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
pub async fn throttle(State(app): Shared, request: Request, next: Next) -> Response {
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
    let cost = crate::throttle::cost(
        limiter,
        &app.service,
        &parts.method,
        parts.uri.path(),
        &bytes,
    )
    .await;
    if !limiter.admit(cost) {
        return crate::throttle::throttled().into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// A data-plane request without a valid bearer token gets the service's 401 (or, for the
/// reader, RBAC's 403; [`crate::auth`]).
pub async fn require_token(State(app): Shared, request: Request, next: Next) -> Response {
    match app.auth.authorize(&request) {
        Some(refusal) => refusal,
        None => next.run(request).await,
    }
}

/// With `--fault-status`: every authenticated data-plane request gets that status (429
/// with `Retry-After: 1`), for clients' retry tests; nothing is throttled then.
pub async fn inject_fault(State(app): Shared, request: Request, next: Next) -> Response {
    let Some(status) = app.fault_status.and_then(|s| StatusCode::from_u16(s).ok()) else {
        return next.run(request).await;
    };
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
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    response
}
