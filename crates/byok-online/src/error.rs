//! Errors of the connected half, written for the operator: each names the problem and the
//! fix, and none carries a token or secret.

use byok_cli_common::evidence::EvidenceError;
use byok_cli_common::exit::{Classify, ExitKind};
use byok_cli_common::files::FileError;
use byok_cli_common::terminal::escape;
use byok_core::Fingerprint;
use byok_core::kek::KekPolicyError;
use byok_core::ops::OpError;
use byok_core::signature::SignatureAlgorithm;
use byok_core::target::{EncodingError, KeyKind};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum OnlineError {
    #[error(
        "name the vault with --vault-name NAME, --hsm-name NAME, --vault-url URL or --emulator \
         STATE_DIR (or set BYOK_VAULT_URL, AZURE_KEYVAULT_NAME or AZURE_MANAGEDHSM_NAME)"
    )]
    NoVault,
    /// The command line was wrong in a way clap cannot see.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Ops(#[from] OpError),
    #[error("--kty/--size/--curve: {0}")]
    KindFlags(EncodingError),
    #[error(transparent)]
    Kid(#[from] byok_core::kid::KidError),
    #[error(
        "BYOK is not offered in Azure China (21Vianet): the vault {vault} cannot import a .byok. \
         Nothing was sent."
    )]
    ChinaCloud { vault: String },
    #[error(
        "the emulator's connection file {path} is not valid ({reason}); pass the state directory \
         kv-emulator was started with as --emulator"
    )]
    Emulator { path: PathBuf, reason: String },
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Evidence(#[from] EvidenceError),
    #[error("{path}: {source}; fix the manifest and run batch-import again")]
    Manifest {
        path: PathBuf,
        source: byok_core::manifest::ManifestError,
    },
    #[error("the system random number generator failed: {0}; this machine cannot run the proof")]
    Rng(String),
    #[error("cannot set up credentials ({mode}): {reason}")]
    CredentialSetup { mode: &'static str, reason: String },
    #[error(
        "cannot get an access token for the vault: {0}. Run `az login`, or set AZURE_TENANT_ID, \
         AZURE_CLIENT_ID and AZURE_CLIENT_SECRET, or pass --auth to choose the credential"
    )]
    Credential(String),
    #[error("cannot set up the HTTPS client: {0}")]
    Http(String),
    #[error("the vault refused the request: HTTP {status} {code}: {message}{request_id}")]
    Service {
        status: u16,
        code: String,
        /// The `innererror` code, when the vault sent one (`ObjectIsBeingDeleted`, ...).
        inner: String,
        message: String,
        /// ` (request id: ...)`, or empty when the response had none.
        request_id: String,
    },
    #[error(
        "the vault throttled the request (HTTP 429 {code}: {message}) and still did after \
         backing off {backoff}: the vault is busy with other clients too; run the command again \
         later (batch-import skips the keys already imported), with a lower --jobs{request_id}"
    )]
    Throttled {
        code: String,
        message: String,
        /// The waits, as `1, 2, 4, 8 and 16 s`.
        backoff: String,
        request_id: String,
    },
    #[error(
        "the vault refused the request (HTTP 403 ForbiddenByRbac): this identity may not do \
         {action}; assign it the {role} role on the vault (az role assignment create --role \
         \"{role}\" --assignee IDENTITY --scope VAULT_RESOURCE_ID; Key Vault Crypto Officer \
         grants every key action), then wait for the assignment to propagate{request_id}"
    )]
    ForbiddenByRbac {
        action: String,
        role: &'static str,
        request_id: String,
    },
    #[error(
        "the vault's access policy does not grant keys {permission} to this identity: add it \
         with az keyvault set-policy --name VAULT --object-id OBJECT_ID --key-permissions \
         {permission} (HTTP 403 AccessDenied: {message}){request_id}"
    )]
    AccessDenied {
        permission: String,
        message: String,
        request_id: String,
    },
    #[error(
        "the name {name} belongs to a key that is being deleted (HTTP 409 ObjectIsBeingDeleted): \
         wait a minute or two for the deletion to finish, then recover it (az keyvault key \
         recover --name {name}) or purge it (az keyvault key purge --name {name}), or choose \
         another name{request_id}"
    )]
    NameBeingDeleted { name: String, request_id: String },
    #[error(
        "the name {name} belongs to a deleted key that is still recoverable (HTTP 409 \
         ObjectIsDeletedButRecoverable): recover it with az keyvault key recover --name {name}, \
         or purge it with az keyvault key purge --name {name} (gone for good), or choose \
         another name{request_id}"
    )]
    NameDeleted { name: String, request_id: String },
    #[error(
        "key {name} was deleted on {deleted} and is recoverable until {purge}: recover it with \
         az keyvault key recover --name {name}, or purge it (az keyvault key purge --name \
         {name}){request_id}"
    )]
    KeyDeleted {
        name: String,
        deleted: String,
        purge: String,
        request_id: String,
    },
    #[error("cannot reach the vault: {0}")]
    Unreachable(String),
    /// A 3xx from the vault or the authority (see `redirect.rs`).
    #[error(transparent)]
    Redirect(crate::redirect::RedirectRefused),
    #[error(
        "the vault's authentication challenge names another resource than the vault's host ({0}): \
         this is not the vault the URL names, or the URL is not the vault's own \
         (https://NAME.vault.azure.net; for a kv-emulator, pass --emulator STATE_DIR)"
    )]
    ChallengeResource(String),
    #[error("the Azure SDK stopped the request: {0}")]
    Sdk(String),
    #[error(
        "the connection broke during the import of {name} ({reason}): the vault may or may not have \
         received it. Check with `byok-online show --name {name}` (a key imported from this \
         package carries its byok-sha256 tag); running the import again with --new-version is \
         safe (it adds a version holding the same key)"
    )]
    ImportInterrupted { name: String, reason: String },
    #[error("the key {name} was not found in the vault (404 KeyNotFound){request_id}")]
    KeyNotFound { name: String, request_id: String },
    #[error("the KEK {kid} cannot import: {problem}. Nothing was sent")]
    BadKek { kid: String, problem: KekProblem },
    #[error(
        "the package was made for the KEK {kid}, which is in {package_vault}, but you are importing into \
         {target_vault}: Key Vault only imports with a KEK in the same vault. Nothing was sent"
    )]
    ForeignKek {
        kid: String,
        package_vault: String,
        target_vault: String,
    },
    #[error(
        "the vault already holds a key named {name} ({kid}) that did not come from this package \
         (its byok-sha256 tag is not this package's); refusing to add a version: pass \
         --new-version to add one, or rename the key in the manifest, or remove it from the \
         manifest"
    )]
    ForeignKey { name: String, kid: String },
    #[error(
        "the vault already holds a key named {name} (current version {version}){note}: pass \
         --new-version to add a version, or choose another --name"
    )]
    KeyExists {
        name: String,
        version: String,
        note: String,
    },
    #[error("cannot write the {what}: {reason}")]
    Generate { what: &'static str, reason: String },
    #[error(transparent)]
    Package(#[from] byok_core::package::PackageError),
    #[error(transparent)]
    Sidecar(#[from] byok_core::sidecar::SidecarError),
    #[error(transparent)]
    Encoding(#[from] EncodingError),
    #[error(transparent)]
    Kek(#[from] byok_core::kek::KekError),
    #[error(transparent)]
    Transfer(#[from] byok_core::transfer::TransferError),
    #[error(
        "the sidecar {sidecar} describes another package (its byok_sha256 is not this file's); pass the matching sidecar or none"
    )]
    SidecarMismatch { sidecar: PathBuf },
    #[error(
        "the sidecar {sidecar} says the package was wrapped for the KEK {sidecar_kid}, but the \
         package names {package_kid}: one of the two was altered or they come from different \
         runs. Package the key again (byok-offline writes both together), or pass the right \
         sidecar. Nothing was sent"
    )]
    SidecarKek {
        sidecar: PathBuf,
        sidecar_kid: String,
        package_kid: String,
    },
    #[error(
        "--kty/--size/--curve say {flags} but the sidecar says the package holds {sidecar}: drop \
         the flags or pass the right sidecar. Nothing was sent"
    )]
    KindDiffers { flags: KeyKind, sidecar: KeyKind },
    #[error(
        "the manifest says {manifest} but the package's sidecar says it holds {sidecar}: package \
         the key again or fix the manifest"
    )]
    ManifestKindDiffers { manifest: KeyKind, sidecar: KeyKind },
    #[error("verification failed: the vault's key {kid} is not the HSM's key: {mismatch}")]
    VerifyMismatch { kid: String, mismatch: KeyMismatch },
    #[error(
        "{kid} is {kty}: prove-aes is for AES keys; prove RSA and EC keys with `byok-online verify`"
    )]
    NotAes { kid: String, kty: String },
    #[error("{}; see {} and run batch-import again once fixed (it skips the keys already imported)", failed_keys(*.failed, *.total), .report.display())]
    BatchFailed {
        failed: usize,
        total: usize,
        report: PathBuf,
    },
    #[error("the vault's answer cannot be read: {0}")]
    BadResponse(String),
}

/// Why a vault key cannot serve as the Key Exchange Key.
#[derive(Debug, thiserror::Error)]
pub enum KekProblem {
    #[error(transparent)]
    Policy(#[from] KekPolicyError),
    #[error("it does not exist in this vault (was it deleted, or is this the wrong vault?)")]
    Missing,
    #[error("the vault returned no public key for it")]
    NoPublicKey,
}

/// How the vault's key differs from the one the HSM reported.
#[derive(Debug, thiserror::Error)]
pub enum KeyMismatch {
    #[error("its public key ({vault}) is not the local public key ({local})")]
    PublicKey {
        vault: Fingerprint,
        local: Fingerprint,
    },
    #[error("it is {kty}, which has no public key to compare (prove an AES key with prove-aes)")]
    NoPublicKey { kty: String },
    #[error("its {alg} signature over a random digest does not verify with the local public key")]
    Signature { alg: SignatureAlgorithm },
    #[error(
        "it was imported, but its public key ({vault}) is not the expected one ({expected}): the \
         package holds another key than the HSM reported; disable or delete the vault key"
    )]
    Imported {
        vault: String,
        expected: Fingerprint,
    },
}

fn failed_keys(failed: usize, total: usize) -> String {
    match (failed, total) {
        (1, 1) => "the key failed".into(),
        (f, t) if f == t => format!("all {t} keys failed"),
        (f, t) => format!("{f} of {t} keys failed"),
    }
}

impl Classify for OnlineError {
    fn exit_kind(&self) -> ExitKind {
        match self {
            OnlineError::NoVault
            | OnlineError::Usage(_)
            | OnlineError::Ops(_)
            | OnlineError::KindFlags(_) => ExitKind::Usage,
            OnlineError::VerifyMismatch { .. }
            | OnlineError::Evidence(EvidenceError::Chain { .. }) => ExitKind::Mismatch,
            _ => ExitKind::Failure,
        }
    }
}

pub type Result<T, E = OnlineError> = std::result::Result<T, E>;

/// Turns an SDK error into the service's code, message and request id, a credential failure,
/// or an unreachable vault.
pub fn from_azure(err: azure_core::Error) -> OnlineError {
    use azure_core::error::ErrorKind;
    // Wherever the SDK or the credential wrapped it, a refused redirect is reported as such.
    if let Some(refused) = crate::redirect::find(&err) {
        return OnlineError::Redirect(refused.clone());
    }
    match err.kind() {
        ErrorKind::HttpResponse {
            status,
            error_code,
            raw_response,
        } => service_error(
            &err,
            u16::from(*status),
            error_code.clone(),
            raw_response.as_deref(),
        ),
        ErrorKind::Credential => OnlineError::Credential(with_sources(&err)),
        ErrorKind::DataConversion => OnlineError::BadResponse(with_sources(&err)),
        ErrorKind::Io | ErrorKind::Connection => OnlineError::Unreachable(with_sources(&err)),
        // The SDK says no more than its message: the one case with a flag to fix it is the
        // challenge check.
        ErrorKind::Other if with_sources(&err).contains("challenge resource") => {
            OnlineError::ChallengeResource(with_sources(&err))
        }
        ErrorKind::Other => OnlineError::Sdk(with_sources(&err)),
    }
}

fn service_error(
    err: &azure_core::Error,
    status: u16,
    error_code: Option<String>,
    raw: Option<&azure_core::http::RawResponse>,
) -> OnlineError {
    let id = raw.and_then(|raw| {
        raw.headers()
            .get_optional_str(&azure_core::http::headers::HeaderName::from_static(
                "x-ms-request-id",
            ))
            .map(String::from)
    });
    let body = raw.and_then(|raw| serde_json::from_slice::<serde_json::Value>(raw.body()).ok());
    let mut message = String::new();
    let (mut code, mut inner) = (error_code.unwrap_or_default(), String::new());
    if let Some(body) = &body {
        if let Some(c) = body["error"]["code"].as_str() {
            code = c.to_string();
        }
        if let Some(c) = body["error"]["innererror"]["code"].as_str() {
            inner = c.to_string();
        }
        if let Some(m) = body["error"]["message"].as_str() {
            message = m.to_string();
        }
        if let Some(d) = body["error_description"].as_str() {
            message = d.to_string();
        }
    }
    if message.is_empty() {
        message = err.to_string();
    }
    classify(status, code, inner, message, id.as_deref())
}

/// ` (request id: ID)`, or nothing.
pub fn request_id_suffix(id: Option<&str>) -> String {
    id.map(|id| format!(" (request id: {id})"))
        .unwrap_or_default()
}

/// The vault's error, as the operator can act on it.
pub(crate) fn classify(
    status: u16,
    code: String,
    inner: String,
    message: String,
    id: Option<&str>,
) -> OnlineError {
    let request_id = request_id_suffix(id);
    // The vault's words go on the operator's terminal: no control character of theirs does.
    let code = escape(&code).into_owned();
    // A Managed HSM quotes the id in its message: once is enough.
    let message = match id {
        Some(id) => message
            .replace(&format!(" (Activity ID: {id})"), "")
            .trim_end()
            .to_string(),
        None => message.trim_end().to_string(),
    };
    let shown = escape(&message).into_owned();
    match (status, inner.as_str()) {
        (429, _) => OnlineError::Throttled {
            code,
            message: shown,
            backoff: backoff_text(),
            request_id,
        },
        (403, "ForbiddenByRbac") => {
            let action = crate::rbac::action_in_message(&message)
                .unwrap_or("this key action")
                .to_string();
            OnlineError::ForbiddenByRbac {
                role: crate::rbac::role_for_action(&action),
                action,
                request_id,
            }
        }
        (403, "AccessDenied") => OnlineError::AccessDenied {
            permission: policy_permission(&message)
                .map(|p| escape(&p).into_owned())
                .unwrap_or_else(|| "PERMISSION".into()),
            message: shown,
            request_id,
        },
        _ => OnlineError::Service {
            status,
            code,
            inner,
            message: shown,
            request_id,
        },
    }
}

/// `1, 2, 4, 8 and 16 s`: what the retry waited (at Azure's window).
fn backoff_text() -> String {
    let waits: Vec<String> = crate::pace::backoff_schedule(None)
        .iter()
        .map(|d| d.as_secs().to_string())
        .collect();
    match waits.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last} s", rest.join(", ")),
        Some((last, _)) => format!("{last} s"),
        None => "no retry".into(),
    }
}

/// `create` from "does not have keys create permission on key vault ...".
fn policy_permission(message: &str) -> Option<String> {
    let rest = &message[message.find("does not have keys ")? + "does not have keys ".len()..];
    let word = rest.split_whitespace().next()?;
    Some(word.to_string())
}

/// The error and those causes its message does not already quote, without a final full stop
/// (the messages above go on after it).
fn with_sources(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let text = e.to_string();
        if !out.contains(&text) {
            out = format!("{out}: {text}");
        }
        cur = e.source();
    }
    out.trim_end_matches(['.', ' ', '\n']).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_summary_never_repeats_a_number() {
        let msg = |failed, total| {
            OnlineError::BatchFailed {
                failed,
                total,
                report: "r.json".into(),
            }
            .to_string()
        };
        assert!(msg(1, 2).starts_with("1 of 2 keys failed"));
        assert!(msg(3, 3).starts_with("all 3 keys failed"));
        assert!(msg(1, 1).starts_with("the key failed"));
    }

    #[test]
    fn every_vault_error_ends_with_its_request_id() {
        let id = Some("0e57042c-b600-47ba-bfac-27238ec41a3a");
        let end = " (request id: 0e57042c-b600-47ba-bfac-27238ec41a3a)";
        let cases = [
            (400, "BadParameter", "", "bad"),
            (
                429,
                "Throttled",
                "",
                "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached",
            ),
            (
                403,
                "Forbidden",
                "ForbiddenByRbac",
                "Caller is not authorized to perform action on resource.\r\nAction: 'Microsoft.KeyVault/vaults/keys/create/action'\r\nResource: '/x'\r\n",
            ),
            (
                403,
                "Forbidden",
                "AccessDenied",
                "The user, group or application 'appid=x' does not have keys import permission on key vault 'v;location=eastus'.",
            ),
            (
                409,
                "Conflict",
                "ObjectIsBeingDeleted",
                "Key k is currently being deleted.",
            ),
        ];
        for (status, code, inner, message) in cases {
            let e = classify(status, code.into(), inner.into(), message.into(), id);
            assert!(e.to_string().ends_with(end), "{e}");
            let none = classify(status, code.into(), inner.into(), message.into(), None);
            assert!(!none.to_string().contains("request id"), "{none}");
        }
        let e = classify(429, "Throttled".into(), String::new(), "busy".into(), id);
        assert!(
            e.to_string().contains("backing off 1, 2, 4, 8 and 16 s"),
            "{e}"
        );
        let e = classify(
            403,
            "Forbidden".into(),
            "ForbiddenByRbac".into(),
            cases[2].3.into(),
            id,
        );
        assert!(
            e.to_string().contains("may not do Microsoft.KeyVault/vaults/keys/create/action; assign it the Key Vault Crypto Officer role"),
            "{e}"
        );
        let e = classify(
            403,
            "Forbidden".into(),
            "AccessDenied".into(),
            cases[3].3.into(),
            id,
        );
        assert!(
            e.to_string().starts_with("the vault's access policy does not grant keys import to this identity: add it with az keyvault set-policy"),
            "{e}"
        );
        // A Managed HSM's message quotes the id: it is said once.
        let e = classify(
            400,
            "BadParameter".into(),
            String::new(),
            "Exportable keys must have release policy (Activity ID: c7e3)".into(),
            Some("c7e3"),
        );
        assert_eq!(e.to_string().matches("c7e3").count(), 1, "{e}");
    }

    #[test]
    fn exit_codes_tell_usage_and_mismatch_apart() {
        assert_eq!(OnlineError::Usage("x".into()).exit_kind(), ExitKind::Usage);
        let mismatch = OnlineError::VerifyMismatch {
            kid: "k".into(),
            mismatch: KeyMismatch::NoPublicKey {
                kty: "oct-HSM".into(),
            },
        };
        assert_eq!(mismatch.exit_kind(), ExitKind::Mismatch);
        assert_eq!(
            OnlineError::Unreachable("x".into()).exit_kind(),
            ExitKind::Failure
        );
    }
}
