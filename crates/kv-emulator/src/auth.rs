//! Token auth like the service's: an OAuth2 client-credentials endpoint that issues signed
//! JWTs, and the challenge every unauthenticated data-plane request gets.

use crate::error::ApiError;
use crate::state_dir::Identity;
use axum::http::{HeaderMap, StatusCode, header};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    aud: String,
    iss: String,
    sub: String,
    tid: String,
    iat: i64,
    nbf: i64,
    exp: i64,
}

/// The emulator's identity provider and token checker.
pub struct Auth {
    pub tenant: String,
    client_id: String,
    client_secret: String,
    /// `https://vault.azure.net` or `https://managedhsm.azure.net`.
    pub resource: String,
    /// `https://127.0.0.1:PORT`: where the token endpoint is.
    pub authority: String,
    signing_key: Vec<u8>,
    token_lifetime: i64,
}

/// The form a client-credentials request posts.
#[derive(Debug, Deserialize)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub scope: Option<String>,
}

/// A refused token request: its status and Entra ID's error body.
pub type OAuthError = (StatusCode, axum::Json<Value>);

/// Entra ID's error shape, which azure_identity parses.
fn oauth_error(status: StatusCode, error: &str, code: i32, description: &str) -> OAuthError {
    (
        status,
        axum::Json(json!({
            "error": error,
            "error_description": description,
            "error_codes": [code],
        })),
    )
}

impl Auth {
    /// The identity provider of `identity`'s tenant, issuing tokens for `resource`.
    pub fn new(
        identity: Identity,
        resource: String,
        authority: String,
        token_lifetime: i64,
    ) -> Self {
        Self {
            tenant: identity.tenant_id,
            client_id: identity.client_id,
            client_secret: identity.client_secret,
            resource,
            authority,
            signing_key: identity.signing_key,
            token_lifetime,
        }
    }

    fn issuer(&self) -> String {
        format!("{}/{}/v2.0", self.authority, self.tenant)
    }

    /// Answers `POST /{tenant}/oauth2/v2.0/token`.
    pub fn issue(&self, tenant: &str, form: &TokenRequest) -> Result<Value, OAuthError> {
        self.check_client(tenant, form)?;
        let scope = form.scope.as_deref().unwrap_or_default();
        let audience = scope
            .split_whitespace()
            .find_map(|s| s.strip_suffix("/.default"))
            .filter(|a| a.starts_with("https://"))
            .ok_or_else(|| {
                oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    70011,
                    "AADSTS70011: The scope must be a resource followed by /.default.",
                )
            })?;
        let now = crate::model::now();
        let claims = Claims {
            aud: audience.trim_end_matches('/').to_string(),
            iss: self.issuer(),
            sub: self.client_id.clone(),
            tid: self.tenant.clone(),
            iat: now,
            nbf: now,
            exp: now + self.token_lifetime,
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&self.signing_key),
        )
        .map_err(|_| {
            oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                0,
                "signing failed",
            )
        })?;
        Ok(json!({
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "ext_expires_in": self.token_lifetime,
            "access_token": token,
        }))
    }

    /// The tenant, the grant type, and the client's id and secret.
    fn check_client(&self, tenant: &str, form: &TokenRequest) -> Result<(), OAuthError> {
        if tenant != self.tenant {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                90002,
                "AADSTS90002: Tenant not found.",
            ));
        }
        if form.grant_type.as_deref() != Some("client_credentials") {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                70003,
                "AADSTS70003: only client_credentials is supported here.",
            ));
        }
        if form.client_id.as_deref() != Some(self.client_id.as_str()) {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                700016,
                "AADSTS700016: Application not found in the directory.",
            ));
        }
        let secret_ok = form
            .client_secret
            .as_deref()
            .is_some_and(|s| constant_time_eq(s.as_bytes(), self.client_secret.as_bytes()));
        if !secret_ok {
            return Err(oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                "AADSTS7000215: Invalid client secret provided.",
            ));
        }
        Ok(())
    }

    /// The 401 a request without a valid token gets.
    pub fn challenge(&self, message: &str) -> ApiError {
        let mut err = ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", message);
        err.challenge = Some(format!(
            "Bearer authorization=\"{}/{}\", resource=\"{}\"",
            self.authority, self.tenant, self.resource
        ));
        err
    }

    /// Checks the bearer token of a data-plane request.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(self.challenge("AKV10000: Request is missing a Bearer or PoP token."));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| self.challenge("AKV10000: Request is missing a Bearer or PoP token."))?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_audience(&[self.resource.as_str()]);
        validation.set_issuer(&[self.issuer()]);
        validation.set_required_spec_claims(&["exp", "aud", "iss"]);
        match jsonwebtoken::decode::<Claims>(
            token,
            &DecodingKey::from_secret(&self.signing_key),
            &validation,
        ) {
            Ok(_) => Ok(()),
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind;
                let why = match e.kind() {
                    ErrorKind::ExpiredSignature => "AKV10032: Token expired.",
                    ErrorKind::InvalidAudience => "AKV10022: Invalid audience.",
                    ErrorKind::InvalidSignature => "AKV10031: Invalid token signature.",
                    ErrorKind::InvalidIssuer => "AKV10023: Invalid issuer.",
                    _ => "AKV10000: The token could not be validated.",
                };
                Err(self.challenge(why))
            }
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
