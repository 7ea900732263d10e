//! The commands of `byok-offline`, each returning a report the binary prints as text or JSON.

use crate::error::{OfflineError, Result};
use crate::keys::{self, GenerateSpec, KeyObject, Target};
use crate::package::{self, PackageReport};
use crate::pin::PinSource;
use crate::raw::RawModule;
use crate::token::{Module, TokenIdentity, TokenSelector, TokenSession};
use crate::wrap_path::{self, Capabilities, WrapChoice};
use byok_cli_common::files::{self, FileKind};
use byok_core::challenge::AesChallenge;
use byok_core::sidecar;
use byok_core::target::KeyKind;
use byok_core::{Fingerprint, KekPublicKey, KekTransfer, KeyId, TargetPublicKey};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The most this tool reads of a KEK file, challenge, manifest or `.byok`: each is a few KiB,
/// so anything larger is the wrong file.
pub(crate) const MAX_INPUT_BYTES: u64 = 1024 * 1024;

/// The most `log verify` reads: about a million entries.
const MAX_LOG_BYTES: u64 = 1024 * 1024 * 1024;

/// How to reach the token.
#[derive(Debug, Clone)]
pub struct Connection {
    pub module: Option<PathBuf>,
    pub token: TokenSelector,
    pub pin: PinSource,
}

impl Connection {
    fn module(&self) -> Result<(Module, RawModule)> {
        let path = self.module.as_deref().ok_or(OfflineError::NoModule)?;
        let module = Module::load(path)?;
        let raw = RawModule::open(path)?;
        Ok((module, raw))
    }

    fn open(&self) -> Result<(Module, RawModule, TokenSession)> {
        let (module, raw) = self.module()?;
        let session = module.open(&self.token, &self.pin)?;
        Ok((module, raw, session))
    }
}

/// One token and its verdict on BYOK.
#[derive(Debug, Serialize)]
pub struct TokenReport {
    #[serde(flatten)]
    pub identity: TokenIdentity,
    pub capabilities: Capabilities,
    /// The path `--wrap-mechanism auto` takes, or why BYOK is not possible.
    pub byok: String,
    pub byok_possible: bool,
}

pub fn tokens(conn: &Connection) -> Result<Vec<TokenReport>> {
    let (module, raw) = conn.module()?;
    let mut out = Vec::new();
    for (slot, identity) in module.tokens()? {
        let capabilities = wrap_path::capabilities(&raw, slot.id())?;
        let (byok, byok_possible) = match capabilities.verdict() {
            Ok(wrap_path::WrapPath::TwoStep(wrap_path::KwpMechanism::Pad)) => (
                "two-step with CKM_AES_KEY_WRAP_PAD (0x210A) if its RFC 5649 self-test passes \
                 (it runs before each package)"
                    .to_string(),
                true,
            ),
            Ok(path) => (path.to_string(), true),
            Err(reason) => (format!("not possible: {reason}"), false),
        };
        out.push(TokenReport {
            identity,
            capabilities,
            byok,
            byok_possible,
        });
    }
    Ok(out)
}

pub fn list_keys(conn: &Connection) -> Result<Vec<KeyObject>> {
    let (_module, _raw, session) = conn.open()?;
    keys::list_keys(&session)
}

/// What to generate, and where its public key goes.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub spec: GenerateSpec,
    /// Default: `<label>.public.pem`.
    pub public_key_out: Option<PathBuf>,
}

impl GenerateOptions {
    fn public_key_path(&self) -> PathBuf {
        self.public_key_out
            .clone()
            .unwrap_or_else(|| TargetPublicKey::file_name(&self.spec.label).into())
    }
}

/// Reads a `CKA_ID` given as hex.
pub fn parse_id(hex_id: Option<&str>) -> Result<Option<Vec<u8>>> {
    hex_id
        .map(|h| {
            hex::decode(h.trim())
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| OfflineError::BadId(h.into()))
        })
        .transpose()
}

/// What `generate` made.
#[derive(Debug, Serialize)]
pub struct GenerateReport {
    pub label: String,
    pub id: String,
    pub kind: String,
    pub public_key: Option<PathBuf>,
    pub public_key_sha256: Option<String>,
    pub token: String,
}

fn generate_in(session: &TokenSession, opts: &GenerateOptions) -> Result<(Target, GenerateReport)> {
    let pem_path = match opts.spec.kind {
        KeyKind::Oct { .. } => None,
        _ => Some(opts.public_key_path()),
    };
    if let Some(p) = &pem_path {
        files::ensure_absent(&[p])?;
    }
    let target = keys::generate(session, &opts.spec)?;
    if let (Some(path), Some(public)) = (&pem_path, &target.public_key) {
        files::write_new(path, public.to_pem().as_bytes(), FileKind::PublicKey)?;
    }
    let report = GenerateReport {
        label: target.label.clone(),
        id: hex::encode(&target.id),
        kind: target.kind.to_string(),
        public_key: pem_path,
        public_key_sha256: target.public_key.as_ref().map(|k| k.fingerprint().to_hex()),
        token: session.identity.label.clone(),
    };
    Ok((target, report))
}

pub fn generate(conn: &Connection, opts: &GenerateOptions) -> Result<GenerateReport> {
    let (_module, _raw, session) = conn.open()?;
    Ok(generate_in(&session, opts)?.1)
}

/// Where the KEK comes from.
#[derive(Debug, Clone)]
pub enum KekSource {
    TransferFile(PathBuf),
    PemAndKid { pem: PathBuf, kid: String },
}

impl KekSource {
    pub fn load(&self) -> Result<KekTransfer> {
        let read = |path: &Path| files::read_text_limited(path, MAX_INPUT_BYTES);
        match self {
            KekSource::TransferFile(path) => Ok(KekTransfer::parse(&read(path)?)?),
            KekSource::PemAndKid { pem, kid } => {
                let key = KekPublicKey::from_pem(&read(pem)?)?;
                Ok(KekTransfer::new(KeyId::parse_versioned(kid)?, key)?)
            }
        }
    }
}

/// What to package.
#[derive(Debug, Clone)]
pub struct PackageOptions {
    pub kek: KekSource,
    pub label: Option<String>,
    pub id_hex: Option<String>,
    /// Generate the target first, with these options.
    pub generate: Option<GenerateOptions>,
    pub out: Option<PathBuf>,
    pub wrap: WrapChoice,
    /// Accept SoftHSM 2.6.1's zero-padding 0x210A (rehearsals only).
    pub allow_zero_padded_kwp: bool,
}

/// What `package` made: the key, when `--generate` made it, and the package.
#[derive(Debug, Serialize)]
pub struct PackageOutcome {
    pub generated: Option<GenerateReport>,
    pub package: PackageReport,
}

/// `package` (optionally with `--generate`): the KEK is read and checked before the token is
/// touched, and the output paths are checked before any key is made.
pub fn package(conn: &Connection, opts: &PackageOptions) -> Result<PackageOutcome> {
    let kek = opts.kek.load()?;
    let label_for_name = opts
        .generate
        .as_ref()
        .map(|g| g.spec.label.clone())
        .or_else(|| opts.label.clone())
        .or_else(|| opts.id_hex.clone())
        .ok_or(OfflineError::NoTarget)?;
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| byok_core::package::file_name(&label_for_name).into());
    files::ensure_absent(&[&out, &sidecar::path_for(&out)])?;
    let (_module, raw, session) = conn.open()?;
    let path = wrap_path::choose(&session, &raw, opts.wrap, opts.allow_zero_padded_kwp)?;
    let (target, generated) = match &opts.generate {
        Some(g) => {
            let (target, report) = generate_in(&session, g)?;
            (target, Some(report))
        }
        None => {
            let id = parse_id(opts.id_hex.as_deref())?;
            (
                keys::find_target(&session, opts.label.as_deref(), id.as_deref())?,
                None,
            )
        }
    };
    let package = package::package(&session, &raw, &kek, &target, path, &out)?;
    Ok(PackageOutcome { generated, package })
}

/// What `prove-aes` proved.
#[derive(Debug, Serialize)]
pub struct ProofReport {
    pub label: String,
    pub vault_kid: String,
    pub same_key: bool,
}

/// `prove-aes`: decrypts the vault's challenge with the HSM's AES key; equal SHA-256 of the
/// plaintext proves the vault holds the same key. The plaintext (a random value made for the
/// proof) is zeroized.
pub fn prove_aes(conn: &Connection, label: &str, challenge_path: &Path) -> Result<ProofReport> {
    let bytes = files::read_limited(challenge_path, MAX_INPUT_BYTES)?;
    let challenge = AesChallenge::parse(&bytes).map_err(|source| OfflineError::Challenge {
        path: challenge_path.into(),
        source,
    })?;
    let (_module, _raw, session) = conn.open()?;
    let key = keys::find_secret(&session, label)?;
    let plaintext = keys::decrypt_gcm(&session, key, label, &challenge)?;
    if Fingerprint::of_bytes(&plaintext) != challenge.plaintext_sha256 {
        return Err(OfflineError::ProofMismatch {
            label: label.into(),
        });
    }
    Ok(ProofReport {
        label: label.into(),
        vault_kid: challenge.kid,
        same_key: true,
    })
}

/// What `log verify` found.
#[derive(Debug, Serialize)]
pub struct LogReport {
    pub file: PathBuf,
    pub entries: usize,
    pub chain_intact: bool,
}

/// `log verify`: checks the evidence log's hash chain.
pub fn verify_log(file: &Path) -> Result<LogReport> {
    let text = files::read_text_limited(file, MAX_LOG_BYTES)?;
    let entries = byok_core::evidence::verify(&text).map_err(|source| OfflineError::LogBroken {
        path: file.into(),
        source,
    })?;
    Ok(LogReport {
        file: file.into(),
        entries,
        chain_intact: true,
    })
}

/// What `inspect` shows of a `.byok`; no key is needed.
#[derive(Debug, Serialize)]
pub struct InspectReport {
    pub file: PathBuf,
    #[serde(flatten)]
    pub summary: byok_core::package::PackageSummary,
}

pub fn inspect(file: &Path) -> Result<InspectReport> {
    let bytes = files::read_limited(file, MAX_INPUT_BYTES)?;
    Ok(InspectReport {
        file: file.into(),
        summary: byok_core::package::PackageSummary::of_file_bytes(&bytes)?,
    })
}
