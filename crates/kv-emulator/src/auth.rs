//! Token auth like the service's: an OAuth2 client-credentials endpoint that issues signed
//! JWTs, the challenge every unauthenticated data-plane request gets, and RBAC's refusal of a
//! client with no role.
//!
//! Two clients: the one in `connection.json`'s `client_id`, with every right on the keys, and
//! a reader (`reader_client_id`) with none, as an identity with no role assignment on the
//! vault. Both get tokens; the reader's data-plane requests are answered `403 Forbidden` with
//! innererror `ForbiddenByRbac` and the action the request needed (docs/azure-behaviour.md 5b).
//!
//! The 401 challenge: `Bearer authorization="AUTHORITY/TENANT", resource="RESOURCE"`, where
//! RESOURCE is `https://vault.azure.net` or `https://managedhsm.azure.net`, with the vault
//! URL's port when that is not 443 (see [`crate::challenge_resource`]: the Python SDK compares
//! the port too, the Rust SDK only the host). A Key Vault's 401 carries
//! `{"error":{"code":"Unauthorized","message":"AKV10000: ..."}}`; a Managed HSM's has an empty
//! body (docs/azure-behaviour.md 7c).
//!
//! Entra ID's side (docs/azure-behaviour.md 10): the tenant's discovery document with every
//! member Entra's has, `jwks_uri` naming a JWKS with the token-signing key ([`crate::signing`]), and
//! access tokens as Entra issues them for Key Vault: RS256 with `kid` and `x5t` in the header,
//! v1 claims (`iss` `https://sts.windows.net/{tenant}/`, `ver` `1.0`, `appid`, `oid`, `sub`
//! equal to `oid` for an application). A refused token gets the service's 401 texts
//! (`AKV10022: Invalid audience. ...`, `AKV10032: Invalid issuer. ...`, `[TokenExpired] ...`).

use crate::flavor::Flavor;
use crate::state_dir::Identity;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// An access token's claims, as Entra ID's v1 tokens for Key Vault carry them.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    aud: String,
    iss: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    /// The client (application) id.
    #[serde(default)]
    appid: String,
    /// `1`: the client proved itself with a secret.
    #[serde(default)]
    appidacr: String,
    #[serde(default)]
    idp: String,
    /// The client's service principal object id.
    #[serde(default)]
    oid: String,
    /// For an application's token, its object id.
    #[serde(default)]
    sub: String,
    tid: String,
    /// A unique token id.
    #[serde(default)]
    uti: String,
    #[serde(default)]
    ver: String,
}

/// What a client may do on the vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Every key operation.
    All,
    /// No role assignment: every data-plane request is refused with 403.
    None,
}

/// A client of the emulator's tenant.
struct Client {
    id: String,
    secret: String,
    oid: String,
    role: Role,
}

/// The vault the tokens are for.
#[derive(Debug, Clone)]
pub struct VaultInfo {
    /// Its name (the host's first label), as a 403 names it.
    pub name: String,
    pub flavor: Flavor,
    /// The challenge's `resource` (the flavor's resource, with the port when not 443).
    pub challenge_resource: String,
}

/// The emulator's identity provider and token checker.
pub struct Auth {
    pub tenant: String,
    clients: Vec<Client>,
    /// `https://vault.azure.net` or `https://managedhsm.azure.net`.
    pub resource: String,
    pub vault: VaultInfo,
    /// `https://127.0.0.1:PORT`: where the token endpoint is.
    pub authority: String,
    signer: crate::signing::Signer,
    token_lifetime: i64,
    /// What a valid token is (signature, lifetime): made once, not per request. The issuer
    /// and audience are checked after it, to answer the service's messages.
    validation: Validation,
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
    /// The identity provider of `identity`'s tenant, issuing tokens for `vault`.
    pub fn new(
        identity: Identity,
        vault: VaultInfo,
        authority: String,
        token_lifetime: i64,
    ) -> Result<Self, crate::signing::SigningKeyError> {
        let signer = crate::signing::Signer::new(&identity.token_key, &identity.token_cert)?;
        Ok(Self {
            tenant: identity.tenant_id,
            clients: vec![
                Client {
                    id: identity.client_id,
                    secret: identity.client_secret,
                    oid: identity.client_oid,
                    role: Role::All,
                },
                Client {
                    id: identity.reader_client_id,
                    secret: identity.reader_client_secret,
                    oid: identity.reader_oid,
                    role: Role::None,
                },
            ],
            resource: vault.flavor.resource().into(),
            vault,
            authority,
            signer,
            token_lifetime,
            validation: token_validation(),
        })
    }

    /// The issuer of the access tokens: Entra ID's v1 issuer, which Key Vault expects
    /// (docs/azure-behaviour.md 10c: "Expected one of https://sts.windows.net/{tenant}/").
    pub fn token_issuer(&self) -> String {
        format!("https://sts.windows.net/{}/", self.tenant)
    }

    /// The discovery document's issuer: `{authority}/{tenant}/v2.0`.
    pub fn issuer(&self) -> String {
        format!("{}/{}/v2.0", self.authority, self.tenant)
    }

    /// The tenant's JWKS: the one signing key.
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.signer.jwk(&self.issuer())]})
    }

    /// The kid the tokens carry.
    pub fn kid(&self) -> &str {
        &self.signer.kid
    }

    /// Answers `POST /{tenant}/oauth2/v2.0/token`.
    pub fn issue(&self, tenant: &str, form: &TokenRequest) -> Result<Value, OAuthError> {
        let client = self.check_client(tenant, form)?;
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
            iss: self.token_issuer(),
            iat: now,
            nbf: now,
            exp: now + self.token_lifetime,
            appid: client.id.clone(),
            appidacr: "1".into(),
            idp: self.token_issuer(),
            oid: client.oid.clone(),
            sub: client.oid.clone(),
            tid: self.tenant.clone(),
            uti: crate::ids::uuid().replace('-', ""),
            ver: "1.0".into(),
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.signer.kid.clone());
        header.x5t = Some(self.signer.kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims, &self.signer.encoding).map_err(|_| {
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
    fn check_client(&self, tenant: &str, form: &TokenRequest) -> Result<&Client, OAuthError> {
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
        let Some(client) = self
            .clients
            .iter()
            .find(|c| form.client_id.as_deref() == Some(c.id.as_str()))
        else {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                700016,
                "AADSTS700016: Application not found in the directory.",
            ));
        };
        let secret_ok = form
            .client_secret
            .as_deref()
            .is_some_and(|s| constant_time_eq(s.as_bytes(), client.secret.as_bytes()));
        if !secret_ok {
            return Err(oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                "AADSTS7000215: Invalid client secret provided.",
            ));
        }
        Ok(client)
    }

    /// The `WWW-Authenticate` value of a 401.
    pub fn challenge_header(&self) -> String {
        format!(
            "Bearer authorization=\"{}/{}\", resource=\"{}\"",
            self.authority, self.tenant, self.vault.challenge_resource
        )
    }

    /// The 401 a request without a valid token gets: a Key Vault's carries the error
    /// envelope (`{"error":{"code":"Unauthorized","message":...}}`, no innererror); a Managed
    /// HSM's body is empty (docs/azure-behaviour.md 7c).
    pub fn challenge(&self, message: &str) -> Response {
        let body = match self.vault.flavor {
            Flavor::Vault => {
                json!({"error": {"code": "Unauthorized", "message": message}}).to_string()
            }
            Flavor::ManagedHsm => String::new(),
        };
        let mut response = (StatusCode::UNAUTHORIZED, Body::from(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        if let Ok(value) = HeaderValue::from_str(&self.challenge_header()) {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }

    /// Checks the bearer token of a data-plane request, then the client's right to it:
    /// `None` lets it through, `Some` is the 401 or 403 to answer.
    pub fn authorize(&self, request: &Request) -> Option<Response> {
        let claims = match self.check(request.headers()) {
            Ok(claims) => claims,
            Err(why) => return Some(self.challenge(&why)),
        };
        let client = self.clients.iter().find(|c| c.id == claims.appid);
        match client.map(|c| c.role) {
            Some(Role::All) => None,
            Some(Role::None) | None => {
                Some(self.forbidden(&claims, request.method(), request.uri().path()))
            }
        }
    }

    /// The claims of a valid bearer token, or why not (the 401's message).
    fn check(&self, headers: &HeaderMap) -> Result<Claims, String> {
        const MISSING: &str = "AKV10000: Request is missing a Bearer or PoP token.";
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(MISSING.into());
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(MISSING)?;
        let claims =
            match jsonwebtoken::decode::<Claims>(token, &self.signer.decoding, &self.validation) {
                Ok(data) => data.claims,
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind;
                    return Err(match e.kind() {
                        // microsoft/confidential-sidecar-containers (docs/azure-behaviour.md 10c).
                        ErrorKind::ExpiredSignature => {
                            "[TokenExpired] Error validating token: 'S2S12086'.".into()
                        }
                        // Inferred: no recording of these two was found.
                        ErrorKind::InvalidSignature => "AKV10031: Invalid token signature.".into(),
                        _ => "AKV10000: The token could not be validated.".into(),
                    });
                }
            };
        // Not valid yet: Entra's clients allow 5 minutes of clock skew, and so does the
        // check; jsonwebtoken's leeway would loosen `exp` too, which stays exact.
        let now = crate::model::now();
        if claims.nbf > now + NBF_LEEWAY_SECS {
            return Err(format!(
                "AKV10000: The token is not valid yet: its nbf is {} s ahead of the vault's \
                 clock (the leeway is {NBF_LEEWAY_SECS} s).",
                claims.nbf - now
            ));
        }
        // A token signed by the tenant's key for another tenant: Entra never issues one, so
        // it was made by someone holding the key, and is refused (text inferred).
        if claims.tid != self.tenant {
            return Err(format!(
                "AKV10000: The token is for tenant {}, not this vault's tenant {}.",
                claims.tid.chars().take(64).collect::<String>(),
                self.tenant
            ));
        }
        // The service's texts (docs/azure-behaviour.md 10c): AKV10032 lists the issuers it
        // trusts ("Expected one of A, B, found C."), AKV10022 the audience ("Expected A,
        // found: B.").
        let issuer = self.token_issuer();
        if claims.iss != issuer {
            return Err(format!(
                "AKV10032: Invalid issuer. Expected one of {issuer}, found {}.",
                claims.iss
            ));
        }
        let audiences = [
            self.resource.as_str(),
            self.vault.challenge_resource.as_str(),
        ];
        if !audiences.contains(&claims.aud.trim_end_matches('/')) {
            return Err(format!(
                "AKV10022: Invalid audience. Expected {}, found: {}.",
                self.resource, claims.aud
            ));
        }
        Ok(claims)
    }

    /// RBAC's 403 for a client with no role: the body of docs/azure-behaviour.md 5b, with the
    /// action the request needed.
    fn forbidden(&self, claims: &Claims, method: &Method, path: &str) -> Response {
        let action = action(self.vault.flavor, method, path);
        let name = &self.vault.name;
        let kind = match self.vault.flavor {
            Flavor::Vault => "vaults",
            Flavor::ManagedHsm => "managedHSMs",
        };
        let mut resource = format!(
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/kv-emulator/providers/microsoft.keyvault/{kind}/{name}"
        );
        if let Some(key) = key_name(path) {
            resource.push_str(&format!("/keys/{key}"));
        }
        let message = format!(
            "Caller is not authorized to perform action on resource.\r\n\
             If role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\n\
             Caller: appid={};oid={};iss=https://sts.windows.net/{}/\r\n\
             Action: '{action}'\r\n\
             Resource: '{resource}'\r\n\
             Assignment: (not found)\r\n\
             DenyAssignmentId: null\r\n\
             DecisionReason: null \r\n\
             Vault: {name};location=local\r\n",
            claims.appid, claims.oid, self.tenant
        );
        let body = json!({
            "error": {
                "code": "Forbidden",
                "message": message,
                "innererror": {"code": "ForbiddenByRbac"},
            }
        });
        (StatusCode::FORBIDDEN, axum::Json(body)).into_response()
    }
}

/// The key a data-plane path names (`/keys/{name}...`, `/deletedkeys/{name}...`).
fn key_name(path: &str) -> Option<&str> {
    let mut parts = path.trim_start_matches('/').split('/');
    match (parts.next(), parts.next()) {
        (Some("keys" | "deletedkeys"), Some(name)) if !name.is_empty() => Some(name),
        _ => None,
    }
}

/// The RBAC data action a request needs, by Learn's list of the provider's operations
/// (docs/azure-behaviour.md 5d). A vault: `Microsoft.KeyVault/vaults/keys/read` (deleted keys
/// too: vaults have no `deletedKeys` actions), `.../keys/create/action`, `.../keys/import/action`,
/// `.../keys/update/action`, `.../keys/delete`, `.../keys/recover/action`, `.../keys/purge/action`,
/// `.../keys/sign/action`, ... A Managed HSM: `Microsoft.KeyVault/managedHsm/keys/read/action`,
/// `.../keys/write/action`, `.../keys/create`, `.../keys/import/action`, `.../keys/delete`,
/// `.../keys/deletedKeys/read/action`, `.../keys/deletedKeys/recover/action`,
/// `.../keys/deletedKeys/delete`, `.../keys/sign/action`, ...
pub fn action(flavor: Flavor, method: &Method, path: &str) -> String {
    let parts: Vec<&str> = path
        .trim_start_matches('/')
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    let last = parts.last().copied().unwrap_or_default();
    let deleted = parts.first() == Some(&"deletedkeys");
    let operation = || match last {
        "sign" => Some("keys/sign/action"),
        "verify" => Some("keys/verify/action"),
        "encrypt" => Some("keys/encrypt/action"),
        "decrypt" => Some("keys/decrypt/action"),
        "wrapkey" => Some("keys/wrap/action"),
        "unwrapkey" => Some("keys/unwrap/action"),
        _ => None,
    };
    let (prefix, suffix) = match flavor {
        Flavor::Vault => (
            "Microsoft.KeyVault/vaults",
            match (deleted, method.as_str(), last) {
                (true, "GET", _) => "keys/read",
                (true, "DELETE", _) => "keys/purge/action",
                (true, _, _) => "keys/recover/action",
                (false, "GET", _) => "keys/read",
                (false, "PUT", _) => "keys/import/action",
                (false, "PATCH", _) => "keys/update/action",
                (false, "DELETE", _) => "keys/delete",
                (false, _, "create") => "keys/create/action",
                _ => operation().unwrap_or("keys/read"),
            },
        ),
        Flavor::ManagedHsm => (
            "Microsoft.KeyVault/managedHsm",
            match (deleted, method.as_str(), last) {
                (true, "GET", _) => "keys/deletedKeys/read/action",
                (true, "DELETE", _) => "keys/deletedKeys/delete",
                (true, _, _) => "keys/deletedKeys/recover/action",
                (false, "GET", _) => "keys/read/action",
                (false, "PUT", _) => "keys/import/action",
                (false, "PATCH", _) => "keys/write/action",
                (false, "DELETE", _) => "keys/delete",
                (false, _, "create") => "keys/create",
                _ => operation().unwrap_or("keys/read/action"),
            },
        ),
    };
    format!("{prefix}/{suffix}")
}

/// How far ahead of the emulator's clock a token's `nbf` may be: the 5 minutes of clock skew
/// Entra ID's clients allow (MSAL's default).
pub const NBF_LEEWAY_SECS: i64 = 300;

/// RS256, no leeway, `exp` required; `nbf`, the tenant, the issuer and the audience are
/// checked after it.
fn token_validation() -> Validation {
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = 0;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "aud", "iss"]);
    validation
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_learns_names() {
        let v = |m: &str, p: &str| action(Flavor::Vault, &m.parse().unwrap(), p);
        let kv = "Microsoft.KeyVault/vaults/keys";
        for (m, p, want) in [
            ("POST", "/keys/k/create", "create/action"),
            ("PUT", "/keys/k", "import/action"),
            ("GET", "/keys/k", "read"),
            ("GET", "/keys", "read"),
            ("DELETE", "/keys/k", "delete"),
            ("PATCH", "/keys/k/", "update/action"),
            ("POST", "/keys/k/sign", "sign/action"),
            ("POST", "/keys/k/0123/unwrapkey", "unwrap/action"),
            ("GET", "/deletedkeys/k", "read"),
            ("GET", "/deletedkeys", "read"),
            ("POST", "/deletedkeys/k/recover", "recover/action"),
            ("DELETE", "/deletedkeys/k", "purge/action"),
        ] {
            assert_eq!(v(m, p), format!("{kv}/{want}"), "{m} {p}");
        }
        let h = |m: &str, p: &str| action(Flavor::ManagedHsm, &m.parse().unwrap(), p);
        let hsm = "Microsoft.KeyVault/managedHsm/keys";
        for (m, p, want) in [
            ("POST", "/keys/k/create", "create"),
            ("PUT", "/keys/k", "import/action"),
            ("GET", "/keys/k", "read/action"),
            ("PATCH", "/keys/k/v", "write/action"),
            ("DELETE", "/keys/k", "delete"),
            ("POST", "/keys/k/v/wrapkey", "wrap/action"),
            ("GET", "/deletedkeys/k", "deletedKeys/read/action"),
            (
                "POST",
                "/deletedkeys/k/recover",
                "deletedKeys/recover/action",
            ),
            ("DELETE", "/deletedkeys/k", "deletedKeys/delete"),
        ] {
            assert_eq!(h(m, p), format!("{hsm}/{want}"), "{m} {p}");
        }
        assert_eq!(key_name("/keys/k/create"), Some("k"));
        assert_eq!(key_name("/keys"), None);
    }
}
