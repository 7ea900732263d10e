//! Errors of the connected half, written for the operator; none carries a token or secret.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum OnlineError {
    #[error(
        "name the vault with --vault-name NAME, --hsm-name NAME, --vault-url URL or --emulator STATE_DIR (or set BYOK_VAULT_URL)"
    )]
    NoVault,
    #[error(transparent)]
    Kid(#[from] byok_core::kid::KidError),
    #[error(
        "BYOK is not offered in Azure China (21Vianet): the vault {vault} cannot import a .byok. \
         Nothing was sent."
    )]
    ChinaCloud { vault: String },
    #[error("cannot read the emulator's connection file: {0}")]
    Emulator(String),
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error(
        "{path} already exists; this tool never overwrites a file: move it away or pass another --out"
    )]
    OutputExists { path: PathBuf },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("{0}")]
    Usage(String),
    #[error("cannot set up credentials ({mode}): {reason}")]
    Credential { mode: String, reason: String },
    #[error("cannot set up the HTTPS client: {0}")]
    Http(String),
    #[error("the vault refused the request: HTTP {status} {code}: {message}{request_id}")]
    Service {
        status: u16,
        code: String,
        message: String,
        request_id: String,
    },
    #[error("cannot reach the vault: {0}")]
    Unreachable(String),
    #[error(
        "the connection broke during the import of {name} ({reason}): the vault may or may not have \
         received it. Check with `byok-online show --name {name}`; running the import again is safe \
         (it adds a version holding the same key)"
    )]
    ImportInterrupted { name: String, reason: String },
    #[error("the key {name} was not found in the vault (404 KeyNotFound){hint}")]
    KeyNotFound { name: String, hint: &'static str },
    #[error("the KEK {kid} cannot import: {reason}. Nothing was sent")]
    BadKek { kid: String, reason: String },
    #[error(
        "the package was made for the KEK {kid}, which is in {package_vault}, but you are importing into \
         {target_vault}: Key Vault only imports with a KEK in the same vault. Nothing was sent"
    )]
    ForeignKek {
        kid: String,
        package_vault: String,
        target_vault: String,
    },
    #[error(transparent)]
    Package(#[from] byok_core::package::PackageError),
    #[error(transparent)]
    Sidecar(#[from] byok_core::sidecar::SidecarError),
    #[error(transparent)]
    Encoding(#[from] byok_core::target::EncodingError),
    #[error(transparent)]
    Kek(#[from] byok_core::kek::KekError),
    #[error(transparent)]
    Transfer(#[from] byok_core::transfer::TransferError),
    #[error(
        "the sidecar {sidecar} describes another package (its byok_sha256 is not this file's); pass the matching sidecar or none"
    )]
    SidecarMismatch { sidecar: PathBuf },
    #[error("{0}")]
    Mismatch(String),
    #[error("the vault returned a key this tool cannot read: {0}")]
    BadResponse(String),
}

pub type Result<T, E = OnlineError> = std::result::Result<T, E>;

/// Turns an SDK error into the service's code, message and request id.
pub fn from_azure(err: azure_core::Error) -> OnlineError {
    use azure_core::error::ErrorKind;
    match err.kind() {
        ErrorKind::HttpResponse {
            status,
            error_code,
            raw_response,
        } => {
            let (mut code, mut message, mut request_id) = (
                error_code.clone().unwrap_or_default(),
                String::new(),
                String::new(),
            );
            if let Some(raw) = raw_response {
                if let Some(id) = raw.headers().get_optional_str(
                    &azure_core::http::headers::HeaderName::from_static("x-ms-request-id"),
                ) {
                    request_id = format!(" (request id {id})");
                }
                if let Ok(body) = serde_json::from_slice::<serde_json::Value>(raw.body()) {
                    if let Some(c) = body["error"]["code"].as_str() {
                        code = c.to_string();
                    }
                    if let Some(m) = body["error"]["message"].as_str() {
                        message = m.to_string();
                    }
                    if let Some(d) = body["error_description"].as_str() {
                        message = d.to_string();
                    }
                }
            }
            if message.is_empty() {
                message = err.to_string();
            }
            OnlineError::Service {
                status: u16::from(*status),
                code,
                message,
                request_id,
            }
        }
        ErrorKind::Io | ErrorKind::Connection => {
            OnlineError::Unreachable(format!("{err}: {}", source_chain(&err)))
        }
        _ => OnlineError::Unreachable(format!("{err}: {}", source_chain(&err))),
    }
}

fn source_chain(err: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push(e.to_string());
        cur = e.source();
    }
    out.join(": ")
}
