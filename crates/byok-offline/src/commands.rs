//! The commands of `byok-offline`, each returning a report the binary prints as text or JSON.

use crate::check::{self, CheckBasis, CheckReport, Held, Overrides, RecordedChecks, ReusePolicy};
use crate::error::{OfflineError, Result};
use crate::keys::{self, GenerateSpec, KeyObject, Target};
use crate::package::{self, PackageReport};
use crate::pin::PinSource;
use crate::record;
use crate::token::{Module, TokenSelector, TokenSession};
use crate::wrap_path::{self, KwpMechanism, PadBehaviour, TokenReport, WrapChoice, WrapPath};
use byok_cli_common::Document;
use byok_cli_common::evidence::EvidenceLog;
use byok_cli_common::files::{self, FileKind};
use byok_cli_common::output::{as_display, as_hex};
use byok_core::challenge::AesChallenge;
use byok_core::sidecar;
use byok_core::target::{Curve, KeyKind, Kty};
use byok_core::{Fingerprint, KekPublicKey, KekTransfer, KeyId, TargetPublicKey};
use cryptoki::slot::Slot;
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};

pub(crate) use crate::public_file::PemPlan;
pub use crate::public_file::PublicKeyFile;

pub(crate) use crate::limits::MAX_INPUT_BYTES;

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

    /// Refuses a PIN source that cannot work, before any token is touched.
    pub fn check(&self) -> Result<()> {
        self.pin.check()
    }
}

/// Run `check` for the verdict of each kind.
const PER_KIND: &str = "run `byok-offline check` for each kind";

/// What `tokens` lists.
#[derive(Debug, Serialize)]
pub struct TokensReport {
    pub tokens: Vec<TokenReport>,
}

impl Document for TokensReport {
    const SCHEMA: &'static str = "byok-offline.tokens/1";
}

/// `tokens`: every token, or the one `--token`/`--slot` names (an error listing the tokens
/// present when it is not there), each with its verdict on BYOK; no login.
pub fn tokens(conn: &Connection, log: Option<&EvidenceLog>) -> Result<TokensReport> {
    let module = conn.load()?;
    let found = match &conn.token {
        TokenSelector::Only => module.tokens()?,
        named => vec![module.select(named)?],
    };
    let mut out = Vec::new();
    for (slot, identity) in found {
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
    if let Some(log) = log {
        log.append(record::tokens_listed(&out, module.file()))?;
    }
    Ok(TokensReport { tokens: out })
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

/// `check`: the token's conformance for each kind, on throwaway keys; recorded in `log` when
/// one is given.
pub fn check(
    conn: &Connection,
    opts: &CheckOptions,
    log: Option<&EvidenceLog>,
) -> Result<CheckReport> {
    let (module, session) = conn.open()?;
    let report = check::check(&session, module.raw(), opts.wrap, &opts.kinds, opts.tries)?;
    if let Some(log) = log {
        log.append(check::evidence::token_checked(&report, module.file()))?;
    }
    Ok(report)
}

/// `keys`: the key objects on the token.
#[derive(Debug, Serialize)]
pub struct KeysReport {
    /// The token's label.
    pub token: String,
    pub keys: Vec<KeyObject>,
}

impl Document for KeysReport {
    const SCHEMA: &'static str = "byok-offline.keys/1";
}

pub fn list_keys(conn: &Connection) -> Result<KeysReport> {
    let (_module, session) = conn.open()?;
    Ok(KeysReport {
        keys: keys::list_keys(&session)?,
        token: session.identity.label.clone(),
    })
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
    /// The `CKA_ID`, in hex in the JSON.
    #[serde(serialize_with = "as_hex")]
    pub id: Vec<u8>,
    #[serde(serialize_with = "as_display")]
    pub kind: KeyKind,
    pub public_key: Option<PathBuf>,
    pub public_key_sha256: Option<Fingerprint>,
    pub token: String,
}

impl Document for GenerateReport {
    const SCHEMA: &'static str = "byok-offline.generate/1";
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
        id: target.id.clone(),
        kind: target.kind,
        public_key: pem_path,
        public_key_sha256: target.public_key.as_ref().map(|k| k.fingerprint()),
        token: session.identity.label.clone(),
    };
    Ok((target, report))
}

/// `generate`, recorded in `log` once the key and its public key file exist.
pub fn generate(
    conn: &Connection,
    opts: &GenerateOptions,
    log: &EvidenceLog,
) -> Result<GenerateReport> {
    let (_module, session) = conn.open()?;
    let (target, report) = generate_in(&session, opts)?;
    log.append(record::key_generated(&session, &target))?;
    Ok(report)
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
        let kek = match self {
            KekSource::TransferFile(path) => KekTransfer::parse(&read(path)?)?,
            KekSource::PemAndKid { pem, kid } => {
                let key = KekPublicKey::from_pem(&read(pem)?)?;
                KekTransfer::new(KeyId::parse_versioned(kid)?, key)?
            }
        };
        tracing::info!(
            kid = %kek.kid,
            sha256 = %kek.key.fingerprint().to_hex(),
            bits = kek.key.modulus_len() * 8,
            "KEK read and checked"
        );
        Ok(kek)
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
    /// What `--kty/--size/--curve` say an existing target is (checked before any wrap).
    pub expect: KindExpectation,
    /// Where an existing target's public key goes (default: `<label>.public.pem`).
    pub public_key_out: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub wrap: WrapChoice,
    /// `--allow-zero-padded-kwp`, `--allow-nonconformant` (rehearsals only).
    pub overrides: Overrides,
    /// `--check-max-age`, `--recheck`: when a recorded verdict stands in for the check.
    pub reuse: ReusePolicy,
}

/// What `--kty`, `--size` and `--curve` say about a key that exists: each given is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindExpectation {
    pub kty: Option<Kty>,
    pub size: Option<u32>,
    pub curve: Option<Curve>,
}

impl KindExpectation {
    /// Refuses a found key whose kind differs from any of the flags given.
    pub fn check(&self, label: &str, found: KeyKind) -> Result<()> {
        let kty_ok = self.kty.is_none_or(|k| k == found.kty());
        let size_ok = self.size.is_none_or(|bits| bits == found.bits());
        let curve_ok = self.curve.is_none_or(|c| found.curve() == Some(c));
        if kty_ok && size_ok && curve_ok {
            return Ok(());
        }
        Err(OfflineError::KindFlagsDiffer {
            label: label.into(),
            found,
            expected: self.to_string(),
        })
    }
}

/// The flags as given: `--kty EC --curve P-384`.
impl fmt::Display for KindExpectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(kty) = self.kty {
            parts.push(format!("--kty {kty}"));
        }
        if let Some(size) = self.size {
            parts.push(format!("--size {size}"));
        }
        if let Some(curve) = self.curve {
            parts.push(format!("--curve {curve}"));
        }
        f.write_str(&parts.join(" "))
    }
}

/// What `package` made: the key, when `--generate` made it, its public key file, and the
/// package.
#[derive(Debug, Serialize)]
pub struct PackageOutcome {
    pub generated: Option<GenerateReport>,
    /// The target's public key PEM (none for AES keys).
    pub public_key: Option<PathBuf>,
    pub public_key_file: Option<PublicKeyFile>,
    /// The `token checked` entry the key was admitted by: reused, or made by this run first.
    pub check: CheckBasis,
    pub package: PackageReport,
}

impl Document for PackageOutcome {
    const SCHEMA: &'static str = "byok-offline.package/1";
}

/// `package` (optionally with `--generate`): the KEK is read and checked before the token is
/// touched, the output paths are checked, an existing target's kind and public key file are
/// checked, and the token's wrap of the target's kind is proved ([`check::admit_one`]), all
/// before any key is made or file written.
pub fn package(
    conn: &Connection,
    opts: &PackageOptions,
    log: &EvidenceLog,
) -> Result<PackageOutcome> {
    let kek = opts.kek.load()?;
    let name = opts
        .generate
        .as_ref()
        .map(|g| g.spec.label.clone())
        .or_else(|| opts.label.clone())
        .or_else(|| opts.id_hex.clone())
        .ok_or(OfflineError::NoTarget)?;
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| byok_core::package::file_name(&name).into());
    files::ensure_absent(&[&out, &sidecar::path_for(&out)])?;
    let recorded = RecordedChecks::read(log.path())?;
    let (module, session) = conn.open()?;
    let raw = module.raw();
    let path = wrap_path::choose(&session, raw, opts.wrap)?;
    let policy = (opts.overrides, opts.reuse);
    let gate = |key| check::admit_one(&session, raw, path, key, policy, (&recorded, log));
    let (target, generated, public_key, (verdict, basis)) = match &opts.generate {
        Some(g) => {
            let verdict = gate((g.spec.kind, Held::New))?;
            let (target, report) = generate_in(&session, g)?;
            let public_key = report
                .public_key
                .clone()
                .map(|p| (p, PublicKeyFile::Written));
            (target, Some(report), public_key, verdict)
        }
        None => {
            let public_key_out = opts
                .public_key_out
                .clone()
                .unwrap_or_else(|| TargetPublicKey::file_name(&name).into());
            let (target, public_key) = existing_target(&session, opts, public_key_out)?;
            let verdict = gate((target.kind, Held::Existing(target.origin)))?;
            let public_key = public_key.map(|pem| pem.write()).transpose()?;
            (target, None, public_key, verdict)
        }
    };
    let package = package::package(&session, raw, &kek, &target, path, &out)?;
    let key = (target.label.as_str(), &target, generated.is_some());
    let cited = (Some(verdict), Some(basis.entry.clone()));
    log.append(record::packaged(&session, &kek, key, &package, cited))?;
    let (public_key, public_key_file) = public_key.unzip();
    Ok(PackageOutcome {
        generated,
        public_key,
        public_key_file,
        check: basis,
        package,
    })
}

/// The existing target `opts` names, checked against `--kty/--size/--curve`, and the plan for
/// its public key file at `pem_path`.
fn existing_target(
    session: &TokenSession,
    opts: &PackageOptions,
    pem_path: PathBuf,
) -> Result<(Target, Option<PemPlan>)> {
    let id = parse_id(opts.id_hex.as_deref())?;
    let target = keys::find_target(session, opts.label.as_deref(), id.as_deref())?;
    opts.expect.check(&target.label, target.kind)?;
    let plan = target
        .public_key
        .as_ref()
        .map(|key| PemPlan::new(pem_path, key, &target.label))
        .transpose()?;
    Ok((target, plan))
}

/// What `prove-aes` proved.
#[derive(Debug, Serialize)]
pub struct ProofReport {
    pub label: String,
    pub vault_kid: String,
    pub same_key: bool,
}

impl Document for ProofReport {
    const SCHEMA: &'static str = "byok-offline.prove-aes/1";
}

/// `prove-aes`: decrypts the vault's challenge with the HSM's AES key; equal SHA-256 of the
/// plaintext proves the vault holds the same key. The plaintext (a random value made for the
/// proof) is zeroized.
pub fn prove_aes(
    conn: &Connection,
    label: &str,
    challenge_path: &Path,
    log: &EvidenceLog,
) -> Result<ProofReport> {
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
    log.append(record::aes_proved(
        &session,
        label,
        &challenge.kid,
        &Fingerprint::of_bytes(&bytes).to_hex(),
        "the HSM's key decrypted the vault's AES-GCM challenge: the vault holds the HSM's key",
    ))?;
    Ok(ProofReport {
        label: label.into(),
        vault_kid: challenge.kid,
        same_key: true,
    })
}

/// What `inspect` shows of a `.byok`; no key is needed.
#[derive(Debug, Serialize)]
pub struct InspectReport {
    pub file: PathBuf,
    #[serde(flatten)]
    pub summary: byok_core::package::PackageSummary,
}

impl Document for InspectReport {
    const SCHEMA: &'static str = "byok-offline.inspect/1";
}

pub fn inspect(file: &Path) -> Result<InspectReport> {
    let bytes = files::read_limited(file, MAX_INPUT_BYTES)?;
    Ok(InspectReport {
        file: file.into(),
        summary: byok_core::package::PackageSummary::of_file_bytes(&bytes)?,
    })
}
