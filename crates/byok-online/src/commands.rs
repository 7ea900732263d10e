//! The commands of `byok-online`, each returning a report the binary prints as text or JSON.

use crate::connect::{ConnectOptions, Vault};
use crate::error::{OnlineError, Result};
use crate::vault::{ImportRequest, KeyView};
use azure_security_keyvault_keys::models::SignatureAlgorithm;
use byok_core::kid::{Cloud, VaultKind};
use byok_core::sidecar::{self, Sidecar};
use byok_core::target::{Curve, KeyKind, Kty};
use byok_core::{
    Fingerprint, KekPublicKey, KekTransfer, KeyId, KeyTransferPackage, TargetPublicKey,
};
use serde::Serialize;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What `kek create` and `kek download` report.
#[derive(Debug, Serialize)]
pub struct KekReport {
    pub kid: String,
    pub key_size: usize,
    pub sha256: String,
    pub written: Option<PathBuf>,
    pub format: Option<String>,
}

/// Output formats of `kek download`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KekFormat {
    /// The KEK transfer file: kid + SPKI PEM + fingerprint.
    Transfer,
    Pem,
    Der,
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| OnlineError::Write {
        path: path.into(),
        reason: e.to_string(),
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".byok-tmp-")
        .tempfile_in(dir)
        .map_err(|e| err(&e))?;
    tmp.write_all(bytes).map_err(|e| err(&e))?;
    tmp.as_file().sync_all().map_err(|e| err(&e))?;
    tmp.persist_noclobber(path).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            OnlineError::OutputExists { path: path.into() }
        } else {
            err(&e.error)
        }
    })?;
    Ok(())
}

fn ensure_absent(path: &Path) -> Result<()> {
    if path.exists() {
        return Err(OnlineError::OutputExists { path: path.into() });
    }
    Ok(())
}

fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| OnlineError::Read {
        path: path.into(),
        reason: e.to_string(),
    })?;
    if meta.len() > limit {
        return Err(OnlineError::Read {
            path: path.into(),
            reason: format!(
                "{} bytes is too large for this file (limit {limit})",
                meta.len()
            ),
        });
    }
    std::fs::read(path).map_err(|e| OnlineError::Read {
        path: path.into(),
        reason: e.to_string(),
    })
}

/// Checks that a vault key can serve as a KEK and returns its public key.
fn kek_public(view: &KeyView) -> Result<KekPublicKey> {
    let bad = |reason: String| OnlineError::BadKek {
        kid: view.kid.clone(),
        reason,
    };
    if view.kty != "RSA-HSM" {
        return Err(bad(format!(
            "it is {}, but a KEK must be RSA-HSM (an HSM-protected RSA key)",
            view.kty
        )));
    }
    if view.key_ops != ["import"] {
        return Err(bad(format!(
            "its key operations are {:?}, but a KEK must have 'import' as its only operation (create one with `byok-online kek create`)",
            view.key_ops
        )));
    }
    if view.enabled == Some(false) {
        return Err(bad("it is disabled".into()));
    }
    let (Some(n), Some(e)) = (&view.n, &view.e) else {
        return Err(bad("the vault returned no public key".into()));
    };
    Ok(KekPublicKey::from_components(n, e)?)
}

fn write_kek(view: &KeyView, key: &KekPublicKey, out: &Path, format: KekFormat) -> Result<()> {
    let bytes = match format {
        KekFormat::Transfer => {
            let kid = KeyId::parse_versioned(&view.kid)?;
            KekTransfer::new(kid, key.clone())?.to_text().into_bytes()
        }
        KekFormat::Pem => key.to_pem().into_bytes(),
        KekFormat::Der => key.spki_der().to_vec(),
    };
    write_new(out, &bytes)
}

fn kek_report(
    view: &KeyView,
    key: &KekPublicKey,
    out: Option<&Path>,
    format: KekFormat,
) -> KekReport {
    KekReport {
        kid: view.kid.clone(),
        key_size: key.bits(),
        sha256: key.fingerprint().to_hex(),
        written: out.map(Path::to_path_buf),
        format: out.map(|_| format!("{format:?}").to_lowercase()),
    }
}

/// `kek create`: an RSA-HSM key with `import` as its only operation.
pub async fn kek_create(
    conn: &ConnectOptions,
    name: &str,
    bits: u32,
    out: Option<&Path>,
) -> Result<KekReport> {
    byok_core::kid::validate_key_name(name)?;
    if ![2048, 3072, 4096].contains(&bits) {
        return Err(OnlineError::Usage(format!(
            "--size {bits}: a KEK is 2048, 3072 or 4096 bits"
        )));
    }
    if let Some(out) = out {
        ensure_absent(out)?;
    }
    let vault = conn.connect()?;
    let view = vault.create_kek(name, bits).await?;
    let key = kek_public(&view)?;
    if let Some(out) = out {
        write_kek(&view, &key, out, KekFormat::Transfer)?;
    }
    Ok(kek_report(&view, &key, out, KekFormat::Transfer))
}

/// `kek download`: the transfer file (or PEM/DER) of an existing KEK.
pub async fn kek_download(
    conn: &ConnectOptions,
    name: &str,
    version: Option<&str>,
    out: &Path,
    format: KekFormat,
) -> Result<KekReport> {
    ensure_absent(out)?;
    let vault = conn.connect()?;
    let view = vault.get(name, version).await?;
    let key = kek_public(&view)?;
    write_kek(&view, &key, out, format)?;
    Ok(kek_report(&view, &key, Some(out), format))
}

/// `show`.
pub async fn show(conn: &ConnectOptions, name: &str, version: Option<&str>) -> Result<KeyView> {
    conn.connect()?.get(name, version).await
}

/// What `import` takes.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub name: String,
    pub byok_file: PathBuf,
    /// Default: `<byok_file>.sidecar.json` when it exists.
    pub sidecar: Option<PathBuf>,
    pub kty: Option<String>,
    pub size: Option<u32>,
    pub curve: Option<String>,
    pub ops: Option<Vec<String>>,
    pub tags: Vec<(String, String)>,
    pub disabled: bool,
    pub not_before: Option<String>,
    pub expires: Option<String>,
    pub exportable: bool,
    pub release_policy: Option<PathBuf>,
    pub expect_public_key: Option<PathBuf>,
}

/// What `import` reports.
#[derive(Debug, Serialize)]
pub struct ImportReport {
    pub key: KeyView,
    pub kek_kid: String,
    pub byok_sha256: String,
    /// `matches`, or `not checked (AES key)` / `not checked (no expected key given)`.
    pub public_key_check: String,
}

fn parse_time(flag: &str, s: &str) -> Result<time::OffsetDateTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).map_err(|e| {
        OnlineError::Usage(format!(
            "{flag} `{s}` is not an RFC 3339 time such as 2027-01-31T00:00:00Z: {e}"
        ))
    })
}

fn kind_from_flags(kty: &str, size: Option<u32>, curve: Option<&str>) -> Result<KeyKind> {
    let kind = match Kty::from_jwk_kty(kty) {
        Some(Kty::Rsa) => KeyKind::Rsa {
            bits: size.unwrap_or(0),
        },
        Some(Kty::Ec) => KeyKind::Ec {
            curve: curve.unwrap_or("P-256").parse::<Curve>()?,
        },
        Some(Kty::Oct) => KeyKind::Oct {
            bits: size.unwrap_or(256),
        },
        None => {
            return Err(OnlineError::Usage(format!(
                "--kty `{kty}`: use RSA, EC or oct"
            )));
        }
    };
    Ok(kind)
}

/// `import`: every local check first (nothing is sent if one fails), then the KEK check,
/// the upload, and the comparison of the vault's public key with the expected one.
pub async fn import(conn: &ConnectOptions, opts: &ImportOptions) -> Result<ImportReport> {
    // Building the client sends nothing; every local check below runs before any request.
    let vault = conn.connect()?;
    import_into(&vault, opts).await
}

/// `import` with a client already built (batch imports share one).
pub async fn import_into(vault: &Vault, opts: &ImportOptions) -> Result<ImportReport> {
    byok_core::kid::validate_key_name(&opts.name)?;
    let bytes = read_limited(
        &opts.byok_file,
        byok_core::package::MAX_PACKAGE_BYTES as u64,
    )?;
    let package = KeyTransferPackage::parse(&bytes)?;
    let byok_sha256 = Fingerprint::of_bytes(&bytes);
    let target_vault = vault.url.clone();
    if target_vault.kind() == VaultKind::KeyVault(Cloud::China) {
        return Err(OnlineError::ChinaCloud {
            vault: target_vault.to_string(),
        });
    }
    let kid = package.kid().clone();
    if kid.vault() != &target_vault {
        return Err(OnlineError::ForeignKek {
            kid: kid.to_string(),
            package_vault: kid.vault().to_string(),
            target_vault: target_vault.to_string(),
        });
    }
    // The sidecar, when there is one, says what the package holds.
    let default_sidecar = PathBuf::from(format!("{}{}", opts.byok_file.display(), sidecar::SUFFIX));
    let sidecar_path = opts
        .sidecar
        .clone()
        .or_else(|| default_sidecar.exists().then_some(default_sidecar));
    let sidecar = match &sidecar_path {
        Some(path) => {
            let s = Sidecar::parse(&read_limited(path, 64 * 1024)?)?;
            if s.byok_sha256 != byok_sha256 {
                return Err(OnlineError::SidecarMismatch {
                    sidecar: path.clone(),
                });
            }
            Some(s)
        }
        None => None,
    };
    let kind = match (&opts.kty, &sidecar) {
        (Some(kty), Some(s)) => {
            let flags = kind_from_flags(
                kty,
                opts.size.or(Some(s.kind.bits())),
                opts.curve.as_deref().or(s.kind.curve().map(Curve::name)),
            )?;
            if flags != s.kind {
                return Err(OnlineError::Mismatch(format!(
                    "--kty/--size/--curve say {flags} but the sidecar says the package holds {}; nothing was sent",
                    s.kind
                )));
            }
            flags
        }
        (None, Some(s)) => s.kind,
        (Some(kty), None) => kind_from_flags(kty, opts.size, opts.curve.as_deref())?,
        (None, None) => {
            return Err(OnlineError::Usage(
                "no sidecar next to the .byok: say what it holds with --kty RSA|EC|oct (and --curve for EC)".into(),
            ));
        }
    };
    let expected = match (&opts.expect_public_key, &sidecar) {
        (Some(path), _) => Some(TargetPublicKey::from_pem(&String::from_utf8_lossy(
            &read_limited(path, 64 * 1024)?,
        ))?),
        (None, Some(s)) => s.public_key.clone(),
        (None, None) => None,
    };
    let ops = opts
        .ops
        .clone()
        .unwrap_or_else(|| kind.kty().default_key_ops());
    let tags: HashMap<String, String> = opts.tags.iter().cloned().collect();
    let not_before = opts
        .not_before
        .as_deref()
        .map(|s| parse_time("--not-before", s))
        .transpose()?;
    let expires = opts
        .expires
        .as_deref()
        .map(|s| parse_time("--expires", s))
        .transpose()?;
    let release_policy = match &opts.release_policy {
        Some(path) => {
            let data = read_limited(path, 64 * 1024)?;
            Some(azure_security_keyvault_keys::models::KeyReleasePolicy {
                content_type: Some("application/json; charset=utf-8".into()),
                encoded_policy: Some(data),
                immutable: None,
            })
        }
        None => None,
    };
    if opts.exportable && release_policy.is_none() {
        return Err(OnlineError::Usage(
            "--exportable needs --release-policy FILE".into(),
        ));
    }

    let kek_view = vault
        .get(kid.name(), kid.version())
        .await
        .map_err(|e| match e {
            OnlineError::KeyNotFound { .. } => OnlineError::BadKek {
                kid: kid.to_string(),
                reason:
                    "it does not exist in this vault (was it deleted, or is this the wrong vault?)"
                        .into(),
            },
            other => other,
        })?;
    let kek = kek_public(&kek_view)?;
    package.check_against_kek(&kek)?;

    let request = ImportRequest {
        byok: &bytes,
        kind,
        ops: &ops,
        enabled: !opts.disabled,
        not_before,
        expires,
        exportable: opts.exportable,
        tags,
        release_policy,
    };
    let key = vault
        .import_byok(&opts.name, &request)
        .await
        .map_err(|e| match e {
            OnlineError::Unreachable(reason) => OnlineError::ImportInterrupted {
                name: opts.name.clone(),
                reason,
            },
            other => other,
        })?;
    let public_key_check = match (&expected, &key.public_key) {
        (None, _) if kind.kty() == Kty::Oct => {
            "not checked (AES key has no public key)".to_string()
        }
        (None, _) => "not checked (no sidecar and no --expect-public-key)".to_string(),
        (Some(want), Some(got)) if want == got => "matches".to_string(),
        (Some(want), got) => {
            return Err(OnlineError::Mismatch(format!(
                "the key was imported as {}, but its public key ({}) is not the expected one ({}): \
                 the package holds another key than the HSM reported",
                key.kid,
                got.as_ref()
                    .map(|g| g.fingerprint().to_hex())
                    .unwrap_or_else(|| "none".into()),
                want.fingerprint()
            )));
        }
    };
    Ok(ImportReport {
        key,
        kek_kid: kid.to_string(),
        byok_sha256: byok_sha256.to_hex(),
        public_key_check,
    })
}

/// What `verify` proves.
#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub kid: String,
    pub public_key_sha256: String,
    pub public_keys_equal: bool,
    pub algorithm: String,
    pub signature_verified: bool,
}

/// `verify`: the vault's public key equals the local one, and a signature the vault makes over
/// a random digest verifies with the local key.
pub async fn verify(
    conn: &ConnectOptions,
    name: &str,
    version: Option<&str>,
    public_key: &Path,
) -> Result<VerifyReport> {
    let local = TargetPublicKey::from_pem(&String::from_utf8_lossy(&read_limited(
        public_key,
        64 * 1024,
    )?))?;
    let vault: Vault = conn.connect()?;
    verify_in(&vault, name, version, &local).await
}

/// `verify` with a client already built.
pub async fn verify_in(
    vault: &Vault,
    name: &str,
    version: Option<&str>,
    local: &TargetPublicKey,
) -> Result<VerifyReport> {
    let local = local.clone();
    let view = vault.get(name, version).await?;
    let remote = view.public_key.clone().ok_or_else(|| {
        OnlineError::Mismatch(format!(
            "{} is {}, which has no public key to compare",
            view.kid, view.kty
        ))
    })?;
    if remote != local {
        return Err(OnlineError::Mismatch(format!(
            "the vault's key {} ({}) is not the local public key ({})",
            view.kid,
            remote.fingerprint(),
            local.fingerprint()
        )));
    }
    let (alg, name_alg, digest_len) = match local.kind() {
        KeyKind::Rsa { .. } => (SignatureAlgorithm::Ps256, "PS256", 32),
        KeyKind::Ec { curve: Curve::P256 } => (SignatureAlgorithm::Es256, "ES256", 32),
        KeyKind::Ec {
            curve: Curve::P256K,
        } => (SignatureAlgorithm::Es256K, "ES256K", 32),
        KeyKind::Ec { curve: Curve::P384 } => (SignatureAlgorithm::Es384, "ES384", 48),
        KeyKind::Ec { curve: Curve::P521 } => (SignatureAlgorithm::Es512, "ES512", 64),
        KeyKind::Oct { .. } => unreachable!("public keys are RSA or EC"),
    };
    let mut digest = vec![0u8; digest_len];
    getrandom::fill(&mut digest).map_err(|e| OnlineError::Usage(e.to_string()))?;
    let kid = KeyId::parse(&view.kid)?;
    let signature = vault.sign(&kid, alg, &digest).await?;
    let verified = crate::signature::verify(&local, &digest, &signature);
    if !verified {
        return Err(OnlineError::Mismatch(format!(
            "the vault's {name_alg} signature with {} does not verify with the local public key",
            view.kid
        )));
    }
    Ok(VerifyReport {
        kid: view.kid,
        public_key_sha256: local.fingerprint().to_hex(),
        public_keys_equal: true,
        algorithm: name_alg.into(),
        signature_verified: true,
    })
}

/// What `prove-aes` wrote.
#[derive(Debug, Serialize)]
pub struct ChallengeReport {
    pub kid: String,
    pub challenge: PathBuf,
    pub plaintext_sha256: String,
}

/// `prove-aes`: the vault encrypts a random value with AES-256-GCM under the imported key and
/// the challenge file carries the ciphertext and the value's SHA-256 to the HSM side, which
/// decrypts it with `byok-offline prove-aes`.
pub async fn prove_aes(
    conn: &ConnectOptions,
    name: &str,
    version: Option<&str>,
    out: &Path,
) -> Result<ChallengeReport> {
    ensure_absent(out)?;
    let vault = conn.connect()?;
    let view = vault.get(name, version).await?;
    if view.kty != "oct-HSM" && view.kty != "oct" {
        return Err(OnlineError::Usage(format!(
            "{} is {}: prove-aes is for AES keys; prove RSA and EC keys with `verify`",
            view.kid, view.kty
        )));
    }
    let kid = KeyId::parse(&view.kid)?;
    let mut value = [0u8; 32];
    getrandom::fill(&mut value).map_err(|e| OnlineError::Usage(e.to_string()))?;
    let sealed = vault.encrypt_a256gcm(&kid, &value).await?;
    let challenge = byok_core::challenge::AesChallenge {
        kid: view.kid.clone(),
        alg: "A256GCM".into(),
        iv: sealed.iv,
        tag: sealed.tag,
        ciphertext: sealed.ciphertext,
        plaintext_sha256: Fingerprint::of_bytes(&value),
    };
    write_new(out, &challenge.to_json_bytes())?;
    Ok(ChallengeReport {
        kid: view.kid,
        challenge: out.into(),
        plaintext_sha256: challenge.plaintext_sha256.to_hex(),
    })
}

/// `inspect`: what a `.byok` says about itself; no network.
pub fn inspect(file: &Path) -> Result<byok_core::package::PackageSummary> {
    let bytes = read_limited(file, byok_core::package::MAX_PACKAGE_BYTES as u64)?;
    Ok(byok_core::package::PackageSummary::of_file_bytes(&bytes)?)
}
