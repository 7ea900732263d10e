//! The commands of `byok-online` other than `import` and `batch-import`, each returning a
//! report the binary prints as text or as its JSON document.

use crate::connect::{ConnectOptions, Vault};
use crate::error::{KeyMismatch, OnlineError, Result};
use crate::existing::{self, WriteOptions};
use crate::import::MAX_SMALL_FILE;
use crate::vault::{AesGcm, KeyView};
use byok_cli_common::Document;
use byok_cli_common::files::{self, FileKind};
use byok_core::kek::KEK_SIZES;
use byok_core::package::{MAX_PACKAGE_BYTES, PackageSummary};
use byok_core::signature::{SignatureAlgorithm, verify_prehash};
use byok_core::{Fingerprint, KekPublicKey, KekTransfer, KeyId, TargetPublicKey};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What `kek create` and `kek download` report (`byok-online.kek/1`).
#[derive(Debug, Serialize)]
pub struct KekReport {
    pub name: String,
    /// Null in a dry run of `kek create` (no key was made).
    pub kid: Option<String>,
    /// Key Vault's name for the RSA modulus size in bits.
    pub key_size: usize,
    /// SHA-256 of the KEK's SubjectPublicKeyInfo DER (the transfer file's `sha256`); null in
    /// a dry run.
    pub public_key_sha256: Option<String>,
    /// The file written (`--out`), if any.
    pub written: Option<PathBuf>,
    /// `transfer`, `pem` or `der`, when a file was written.
    pub format: Option<String>,
    /// Nothing was written: `action` says what would have been.
    pub dry_run: bool,
    /// `kek create` added (or would add) a version to an existing key of this name.
    pub new_version: bool,
    /// What was done, or would be in a dry run.
    pub action: String,
}

impl Document for KekReport {
    const SCHEMA: &'static str = "byok-online.kek/1";
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
    action: String,
) -> KekReport {
    KekReport {
        name: view.name.clone(),
        kid: Some(view.kid.clone()),
        key_size: key.bits(),
        public_key_sha256: Some(key.fingerprint().to_hex()),
        written: out.map(Path::to_path_buf),
        format: out.map(|_| format.name().into()),
        dry_run: false,
        new_version: false,
        action,
    }
}

impl KekFormat {
    fn name(self) -> &'static str {
        match self {
            KekFormat::Transfer => "transfer",
            KekFormat::Pem => "pem",
            KekFormat::Der => "der",
        }
    }
}

/// What `kek create` does to `name` (new, or `existing`), and to `out`.
fn kek_action(
    dry_run: bool,
    name: &str,
    bits: u32,
    existing: Option<&KeyView>,
    out: Option<&Path>,
) -> String {
    let what = format!("RSA-HSM {bits}, import only");
    let write = if dry_run { "would write" } else { "wrote" };
    let key = match (dry_run, existing) {
        (true, None) => format!("would create {name} as {what}"),
        (false, None) => format!("created {name} as {what}"),
        (true, Some(k)) => format!(
            "would add a version to existing key {name} (current version {}): {what}",
            k.version
        ),
        (false, Some(k)) => format!(
            "added a version to existing key {name} (previous version {}): {what}",
            k.version
        ),
    };
    match out {
        Some(out) => format!("{key}; {write} its transfer file {}", out.display()),
        None => key,
    }
}

/// `kek create`: an RSA-HSM key with `import` as its only operation. An existing name needs
/// `write.on_existing` to allow a new version; a dry run reads the name and writes nothing.
pub async fn kek_create(
    conn: &ConnectOptions,
    name: &str,
    bits: u32,
    out: Option<&Path>,
    write: WriteOptions,
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
    let existing = existing::current(&vault, name).await?;
    if let Some(key) = &existing {
        write.on_existing.allow(key, None)?;
    }
    let action = kek_action(write.dry_run, name, bits, existing.as_ref(), out);
    if write.dry_run {
        return Ok(KekReport {
            name: name.into(),
            kid: None,
            key_size: bits as usize,
            public_key_sha256: None,
            written: None,
            format: None,
            dry_run: true,
            new_version: existing.is_some(),
            action,
        });
    }
    let view = vault.create_kek(name, bits).await?;
    let key = view.kek_public()?;
    if let Some(out) = out {
        write_kek(&view, &key, out, KekFormat::Transfer)?;
    }
    let mut report = kek_report(&view, &key, out, KekFormat::Transfer, action);
    report.new_version = existing.is_some();
    Ok(report)
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
    let action = format!(
        "wrote the {} of {} to {}",
        match format {
            KekFormat::Transfer => "KEK transfer file",
            KekFormat::Pem => "KEK public key (PEM)",
            KekFormat::Der => "KEK public key (DER)",
        },
        view.kid,
        out.display()
    );
    Ok(kek_report(&view, &key, Some(out), format, action))
}

/// What `show` reports (`byok-online.show/1`): the key, flat, as `import` nests it.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct ShowReport {
    pub key: KeyView,
}

impl Document for ShowReport {
    const SCHEMA: &'static str = "byok-online.show/1";
}

/// `show`.
///
/// A key that is not there may have been deleted: the deleted key's dates and the fix are
/// said then (when the vault lets this identity read deleted keys).
pub async fn show(conn: &ConnectOptions, name: &str, version: Option<&str>) -> Result<ShowReport> {
    let vault = conn.connect()?;
    match vault.get(name, version).await {
        Ok(key) => Ok(ShowReport { key }),
        Err(e @ OnlineError::KeyNotFound { .. }) => match vault.get_deleted(name).await {
            Ok(Some(d)) => Err(OnlineError::KeyDeleted {
                name: name.into(),
                deleted: d.deleted.unwrap_or_else(|| "an unknown date".into()),
                purge: d
                    .scheduled_purge
                    .unwrap_or_else(|| "its scheduled purge date".into()),
                request_id: crate::error::request_id_suffix(d.request_id.as_deref()),
            }),
            Ok(None) => Err(e),
            Err(other) => {
                tracing::info!("cannot read the deleted keys ({other}): the key is not found");
                Err(e)
            }
        },
        Err(e) => Err(e),
    }
}

/// What `verify` proves (`byok-online.verify/1`).
#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub kid: String,
    pub public_key_sha256: String,
    pub public_keys_equal: bool,
    pub algorithm: String,
    pub signature_verified: bool,
}

impl Document for VerifyReport {
    const SCHEMA: &'static str = "byok-online.verify/1";
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

/// What `prove-aes` wrote (`byok-online.prove-aes/1`).
#[derive(Debug, Serialize)]
pub struct ChallengeReport {
    pub name: String,
    pub kid: String,
    /// The AES-GCM the vault encrypted with (`A256GCM`, ...).
    pub alg: String,
    /// The challenge file written.
    pub challenge: PathBuf,
    pub plaintext_sha256: String,
    /// What to run on the HSM side; `--label` is the key's name here, and must be changed
    /// when the HSM's label differs (this side cannot know it).
    pub offline_command: String,
}

impl Document for ChallengeReport {
    const SCHEMA: &'static str = "byok-online.prove-aes/1";
}

/// `s` as one shell word: bare when it is plainly safe, else single-quoted.
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/-+:,@%=".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
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
        offline_command: format!(
            "byok-offline prove-aes --label {} --challenge {}",
            shell_word(&view.name),
            shell_word(&out.display().to_string())
        ),
        name: view.name,
        kid: view.kid,
        alg: gcm.name().into(),
        challenge: out.into(),
        plaintext_sha256: challenge.plaintext_sha256.to_hex(),
    })
}

/// What `inspect` shows (`byok-online.inspect/1`): byok-core's summary, as byok-offline's
/// `inspect` shows it too.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct InspectReport {
    pub package: PackageSummary,
}

impl Document for InspectReport {
    const SCHEMA: &'static str = "byok-online.inspect/1";
}

/// `inspect`: what a `.byok` says about itself; no network.
pub fn inspect(file: &Path) -> Result<InspectReport> {
    let bytes = files::read_limited(file, MAX_PACKAGE_BYTES as u64)?;
    Ok(InspectReport {
        package: PackageSummary::of_file_bytes(&bytes)?,
    })
}

/// What `man --dir` wrote (`byok-online.man/1`).
#[derive(Debug, Serialize)]
pub struct ManReport {
    pub pages: Vec<PathBuf>,
}

impl Document for ManReport {
    const SCHEMA: &'static str = "byok-online.man/1";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("aes-1"), "aes-1");
        assert_eq!(shell_word("dir/c.json"), "dir/c.json");
        assert_eq!(shell_word("my file"), "'my file'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
