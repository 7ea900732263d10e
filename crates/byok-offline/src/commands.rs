//! The commands of `byok-offline`, each returning a report the binary prints as text or JSON.

use crate::check::{self, CheckReport, Overrides};
use crate::error::{OfflineError, Result};
use crate::keys::{self, GenerateSpec, KeyObject, Target};
use crate::package::{self, PackageReport};
use crate::pin::PinSource;
use crate::token::{Module, TokenIdentity, TokenSelector, TokenSession};
use crate::wrap_path::{self, Capabilities, KwpMechanism, PadBehaviour, WrapChoice, WrapPath};
use byok_cli_common::files::{self, FileKind};
use byok_core::challenge::AesChallenge;
use byok_core::sidecar;
use byok_core::target::KeyKind;
use byok_core::{Fingerprint, KekPublicKey, KekTransfer, KeyId, TargetPublicKey};
use cryptoki::slot::Slot;
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
    /// The module's init string for `C_Initialize`'s `pReserved` (`--init-args`).
    pub init_args: Option<String>,
    pub token: TokenSelector,
    pub pin: PinSource,
}

impl Connection {
    /// Loads and initialises the module.
    pub fn load(&self) -> Result<Module> {
        let path = self.module.as_deref().ok_or(OfflineError::NoModule)?;
        Module::load(path, self.init_args.as_deref())
    }

    fn open(&self) -> Result<(Module, TokenSession)> {
        let module = self.load()?;
        let session = module.open(&self.token, &self.pin)?;
        Ok((module, session))
    }
}

/// One token and its verdict on BYOK.
#[derive(Debug, Serialize)]
pub struct TokenReport {
    #[serde(flatten)]
    pub identity: TokenIdentity,
    pub capabilities: Capabilities,
    /// The path `--wrap-mechanism auto` takes and what it means for the key kinds, or why BYOK
    /// is not possible.
    pub byok: String,
    pub byok_possible: bool,
    /// 0x210A's known-answer test, when that is the path: `rfc5649`, `zero-padded`, `other`,
    /// or `not run` (a module that wants a login for it).
    pub kwp_pad_self_test: Option<&'static str>,
}

/// Run `check` for the verdict of each kind.
const PER_KIND: &str = "run `byok-offline check` for each kind";

pub fn tokens(conn: &Connection) -> Result<Vec<TokenReport>> {
    let module = conn.load()?;
    let mut out = Vec::new();
    for (slot, identity) in module.tokens()? {
        let capabilities = wrap_path::capabilities(module.raw(), slot.id())?;
        let mut report = TokenReport {
            identity,
            capabilities,
            byok: String::new(),
            byok_possible: true,
            kwp_pad_self_test: None,
        };
        match capabilities.verdict() {
            Ok(WrapPath::TwoStep(KwpMechanism::Pad)) => pad_verdict(&module, slot, &mut report)?,
            Ok(path) => report.byok = format!("{path}; {PER_KIND}"),
            Err(reason) => {
                report.byok = format!("not possible: {reason}");
                report.byok_possible = false;
            }
        }
        out.push(report);
    }
    Ok(out)
}

/// The verdict of a token whose path is 0x210A: its known-answer test, run on public session
/// objects with no login.
fn pad_verdict(module: &Module, slot: Slot, report: &mut TokenReport) -> Result<()> {
    let behaviour = module
        .open_public(slot)
        .and_then(|session| wrap_path::pad_behaviour(&session, module.raw()));
    let (test, byok, possible) = match behaviour {
        Ok(PadBehaviour::Rfc5649) => (
            "rfc5649",
            format!(
                "two-step with CKM_AES_KEY_WRAP_PAD (0x210A), whose RFC 5649 known-answer test \
                 passed; {PER_KIND}"
            ),
            true,
        ),
        Ok(PadBehaviour::ZeroPaddedRfc5649) => (
            "zero-padded",
            format!(
                "two-step with CKM_AES_KEY_WRAP_PAD (0x210A), which zero-pads before RFC 5649: \
                 AES keys only without --allow-zero-padded-kwp; {PER_KIND}"
            ),
            true,
        ),
        Ok(PadBehaviour::Other) => (
            "other",
            format!("not possible: {}", OfflineError::KwpSelfTestFailed),
            false,
        ),
        Err(OfflineError::Pkcs11 { rv, .. }) => {
            let why = if rv == "CKR_USER_NOT_LOGGED_IN" {
                format!("the token will not run it without a login ({rv})")
            } else {
                format!("it could not run here: {rv}")
            };
            (
                "not run",
                format!(
                    "two-step with CKM_AES_KEY_WRAP_PAD (0x210A) if its RFC 5649 known-answer \
                     test passes ({why}); run `byok-offline check` for per-kind verdicts"
                ),
                true,
            )
        }
        Err(e) => return Err(e),
    };
    report.kwp_pad_self_test = Some(test);
    report.byok = byok;
    report.byok_possible = possible;
    Ok(())
}

/// Which kinds `check` proves, and how many throwaway keys of each.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub kinds: Vec<KeyKind>,
    /// Default: each kind's own ([`check::default_tries`]).
    pub tries: Option<usize>,
    pub wrap: WrapChoice,
}

/// `check`: the token's conformance for each kind, on throwaway keys.
pub fn check(conn: &Connection, opts: &CheckOptions) -> Result<CheckReport> {
    let (module, session) = conn.open()?;
    check::check(&session, module.raw(), opts.wrap, &opts.kinds, opts.tries)
}

pub fn list_keys(conn: &Connection) -> Result<Vec<KeyObject>> {
    let (_module, session) = conn.open()?;
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
    let (_module, session) = conn.open()?;
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
    /// `--allow-zero-padded-kwp`, `--allow-nonconformant` (rehearsals only).
    pub overrides: Overrides,
}

/// What `package` made: the key, when `--generate` made it, and the package.
#[derive(Debug, Serialize)]
pub struct PackageOutcome {
    pub generated: Option<GenerateReport>,
    pub package: PackageReport,
}

/// `package` (optionally with `--generate`): the KEK is read and checked before the token is
/// touched, the output paths are checked and the token's wrap of the target's kind is proved
/// on throwaway keys ([`check::require`]) before any key is made or file written.
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
    let (module, session) = conn.open()?;
    let raw = module.raw();
    let path = wrap_path::choose(&session, raw, opts.wrap)?;
    let (target, generated) = match &opts.generate {
        Some(g) => {
            check::require(&session, raw, path, &[g.spec.kind], opts.overrides)?;
            let (target, report) = generate_in(&session, g)?;
            (target, Some(report))
        }
        None => {
            let id = parse_id(opts.id_hex.as_deref())?;
            let target = keys::find_target(&session, opts.label.as_deref(), id.as_deref())?;
            check::require(&session, raw, path, &[target.kind], opts.overrides)?;
            (target, None)
        }
    };
    let package = package::package(&session, raw, &kek, &target, path, &out)?;
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
    let (_module, session) = conn.open()?;
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
