//! The commands of `byok-online` other than `import` and `batch-import`, each returning a
//! report the binary prints as text or JSON.

use crate::connect::{ConnectOptions, Vault};
use crate::error::{KeyMismatch, OnlineError, Result};
use crate::import::MAX_SMALL_FILE;
use crate::vault::{AesGcm, KeyView};
use byok_cli_common::files::{self, FileKind};
use byok_core::kek::KEK_SIZES;
use byok_core::package::{MAX_PACKAGE_BYTES, PackageSummary};
use byok_core::signature::{SignatureAlgorithm, verify_prehash};
use byok_core::{Fingerprint, KekPublicKey, KekTransfer, KeyId, TargetPublicKey};
use serde::Serialize;
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

fn write_kek(view: &KeyView, key: &KekPublicKey, out: &Path, format: KekFormat) -> Result<()> {
    let bytes = match format {
        KekFormat::Transfer => {
            let kid = KeyId::parse_versioned(&view.kid)?;
            KekTransfer::new(kid, key.clone())?.to_text().into_bytes()
        }
        KekFormat::Pem => key.to_pem().into_bytes(),
        KekFormat::Der => key.spki_der().to_vec(),
    };
    Ok(files::write_new(out, &bytes, FileKind::Kek)?)
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
    if !KEK_SIZES.contains(&(bits as usize)) {
        return Err(OnlineError::Usage(format!(
            "--size {bits}: a KEK is 2048, 3072 or 4096 bits"
        )));
    }
    if let Some(out) = out {
        files::ensure_absent(&[out])?;
    }
    let vault = conn.connect()?;
    let view = vault.create_kek(name, bits).await?;
    let key = view.kek_public()?;
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
    files::ensure_absent(&[out])?;
    let vault = conn.connect()?;
    let view = vault.get(name, version).await?;
    let key = view.kek_public()?;
    write_kek(&view, &key, out, format)?;
    Ok(kek_report(&view, &key, Some(out), format))
}

/// `show`.
pub async fn show(conn: &ConnectOptions, name: &str, version: Option<&str>) -> Result<KeyView> {
    conn.connect()?.get(name, version).await
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
    let local = TargetPublicKey::from_pem(&files::read_text_limited(public_key, MAX_SMALL_FILE)?)?;
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
    let view = vault.get(name, version).await?;
    let mismatch = |mismatch| OnlineError::VerifyMismatch {
        kid: view.kid.clone(),
        mismatch,
    };
    let Some(remote) = &view.public_key else {
        return Err(mismatch(KeyMismatch::NoPublicKey {
            kty: view.kty.clone(),
        }));
    };
    if remote != local {
        return Err(mismatch(KeyMismatch::PublicKey {
            vault: remote.fingerprint(),
            local: local.fingerprint(),
        }));
    }
    let alg =
        SignatureAlgorithm::for_kind(local.kind()).expect("a public key is RSA or EC, which sign");
    let digest = random(alg.digest_len())?;
    let signature = vault.sign(&KeyId::parse(&view.kid)?, alg, &digest).await?;
    if !verify_prehash(local, &digest, &signature) {
        return Err(mismatch(KeyMismatch::Signature { alg }));
    }
    Ok(VerifyReport {
        kid: view.kid,
        public_key_sha256: local.fingerprint().to_hex(),
        public_keys_equal: true,
        algorithm: alg.name().into(),
        signature_verified: true,
    })
}

fn random(len: usize) -> Result<Vec<u8>> {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).map_err(|e| OnlineError::Rng(e.to_string()))?;
    Ok(bytes)
}

/// What `prove-aes` wrote.
#[derive(Debug, Serialize)]
pub struct ChallengeReport {
    pub kid: String,
    pub challenge: PathBuf,
    pub plaintext_sha256: String,
}

/// `prove-aes`: the vault encrypts a random value with AES-GCM under the imported key and
/// the challenge file carries the ciphertext and the value's SHA-256 to the HSM side, which
/// decrypts it with `byok-offline prove-aes`.
pub async fn prove_aes(
    conn: &ConnectOptions,
    name: &str,
    version: Option<&str>,
    gcm: AesGcm,
    out: &Path,
) -> Result<ChallengeReport> {
    files::ensure_absent(&[out])?;
    let vault = conn.connect()?;
    let view = vault.get(name, version).await?;
    if view.kty != "oct-HSM" && view.kty != "oct" {
        return Err(OnlineError::NotAes {
            kid: view.kid,
            kty: view.kty,
        });
    }
    let kid = KeyId::parse(&view.kid)?;
    let value = random(32)?;
    let sealed = vault.encrypt_gcm(&kid, gcm, &value).await?;
    let challenge = byok_core::challenge::AesChallenge {
        kid: view.kid.clone(),
        alg: gcm.name().into(),
        iv: sealed.iv,
        tag: sealed.tag,
        ciphertext: sealed.ciphertext,
        plaintext_sha256: Fingerprint::of_bytes(&value),
    };
    files::write_new(out, &challenge.to_json_bytes(), FileKind::Challenge)?;
    Ok(ChallengeReport {
        kid: view.kid,
        challenge: out.into(),
        plaintext_sha256: challenge.plaintext_sha256.to_hex(),
    })
}

/// `inspect`: what a `.byok` says about itself; no network.
pub fn inspect(file: &Path) -> Result<PackageSummary> {
    let bytes = files::read_limited(file, MAX_PACKAGE_BYTES as u64)?;
    Ok(PackageSummary::of_file_bytes(&bytes)?)
}
