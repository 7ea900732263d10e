//! Errors in the service's shape: `{"error":{"code","message"}}`, with `innererror` only when
//! there is one (the service leaves it out otherwise: docs/azure-behaviour.md 7b).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One failed request, as Key Vault would answer it.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// `innererror.code`, e.g. `ObjectIsBeingDeleted`; left out of the body when `None`.
    pub inner: Option<&'static str>,
    /// `WWW-Authenticate` for 401 answers.
    pub challenge: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            inner: None,
            challenge: None,
        }
    }

    /// The same error with `innererror: {"code": inner}`.
    pub fn with_inner(mut self, inner: &'static str) -> Self {
        self.inner = Some(inner);
        self
    }

    pub fn bad_parameter(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadParameter", message)
    }

    /// A field that is not unpadded base64url, in the service's words (recorded for the
    /// `value` of unwrapKey; docs/azure-behaviour.md section 3). Applying it to JWK members
    /// and `key_hsm` is inferred by analogy: no recording of those was found.
    pub fn not_base64url(field: &str) -> Self {
        Self::bad_parameter(format!(
            "Content of '{field}' is not base64url.\r\nProperty '{field}' is required.\r\n"
        ))
    }

    /// The 404 for a key (or version) that is not there, with the service's whole text
    /// (R-RESUME and the Azure/azure-sdk-for-cpp live tests, docs/azure-behaviour.md 1c).
    pub fn key_not_found(name: &str, version: Option<&str>) -> Self {
        let id = match version {
            Some(v) if !v.is_empty() => format!("{name}/{v}"),
            _ => name.to_string(),
        };
        Self::new(
            StatusCode::NOT_FOUND,
            "KeyNotFound",
            format!(
                "A key with (name/id) {id} was not found in this key vault. If you recently \
                 deleted this key you may be able to recover it using the correct recovery \
                 command. For help resolving this issue, please see \
                 https://go.microsoft.com/fwlink/?linkid=2125182"
            ),
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    /// The JSON body; with `activity` (Managed HSM), the message ends with
    /// ` (Activity ID: <request id>)` as Managed HSM's do.
    pub fn body(&self, activity: Option<&str>) -> Value {
        let message = match activity {
            Some(id) => format!("{} (Activity ID: {id})", self.message),
            None => self.message.clone(),
        };
        let mut error = json!({"code": self.code, "message": message});
        if let Some(inner) = self.inner {
            error["innererror"] = json!({"code": inner});
        }
        json!({ "error": error })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body(None))).into_response();
        if let Some(challenge) = &self.challenge
            && let Ok(value) = HeaderValue::from_str(challenge)
        {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        // The response layer reads it back to add Managed HSM's Activity ID.
        response.extensions_mut().insert(self);
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
