//! The `api-version` query parameter every data-plane request carries: which versions the
//! emulator answers, the service's errors for a missing or unknown one, and the extractors
//! that check it before a handler runs.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::Uri;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;

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

/// The query's `api-version`, if the emulator answers it; else the service's 400.
pub fn api_version(q: &HashMap<String, String>) -> Result<&str, ApiError> {
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

/// A checked `api-version`: the extractor of every data-plane handler without a body.
pub struct ApiVersion(pub String);

/// The query, read as axum's `Query` reads it (and refused as it refuses one).
fn query(uri: &Uri) -> Result<HashMap<String, String>, QueryRejection> {
    Query::try_from_uri(uri).map(|Query(q)| q)
}

/// The query's `api-version`, checked.
fn checked(q: &HashMap<String, String>) -> Result<ApiVersion, ApiError> {
    api_version(q).map(|v| ApiVersion(v.to_string()))
}

impl<S: Send + Sync> FromRequestParts<S> for ApiVersion {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        let q = query(&parts.uri).map_err(IntoResponse::into_response)?;
        checked(&q).map_err(IntoResponse::into_response)
    }
}

/// A request body whose `api-version` is checked, in the order the handlers always took
/// them: the query read, then the body (a body over the limit is 413 whatever the
/// version), then the version.
pub struct VersionedBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for VersionedBody {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let q = query(request.uri()).map_err(IntoResponse::into_response)?;
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        checked(&q).map_err(IntoResponse::into_response)?;
        Ok(Self(bytes))
    }
}
