//! Making the `.byok`: the wrap inside the HSM, the checks on its result, and the files.

use crate::error::{OfflineError, Result};
use crate::keys::Target;
use crate::raw::RawModule;
use crate::token::{SessionObject, TokenSession};
use crate::wrap_path::{KwpMechanism, WrapPath};
use byok_cli_common::files::{self, FileKind, NewFile};
use byok_cli_common::output::{as_display, as_hex};
use byok_core::package::Generator;
use byok_core::sidecar::{self, Sidecar, Source};
use byok_core::target::KeyKind;
use byok_core::{Fingerprint, KekPublicKey, KekTransfer, KeyId, KeyTransferPackage};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What `package` made, typed; its JSON spells each value as the human output does (hex
/// digests and `CKA_ID`, the kind and wrap path as text).
#[derive(Debug, Clone, Serialize)]
pub struct PackageReport {
    pub byok: PathBuf,
    pub sidecar: PathBuf,
    #[serde(serialize_with = "as_display")]
    pub kek_kid: KeyId,
    pub kek_sha256: Fingerprint,
    #[serde(serialize_with = "as_display")]
    pub wrap_path: WrapPath,
    pub target_label: String,
    #[serde(serialize_with = "as_hex")]
    pub target_id: Vec<u8>,
    #[serde(serialize_with = "as_display")]
    pub target_kind: KeyKind,
    pub target_public_key_sha256: Option<Fingerprint>,
    pub byok_sha256: Fingerprint,
}

/// Wraps the target under the KEK inside the token. Every session object made here (the
/// imported KEK, the one-time AES key) is destroyed on every path.
pub fn wrap_in_token(
    token: &TokenSession,
    raw: &RawModule,
    kek: &KekPublicKey,
    target: &Target,
    path: WrapPath,
) -> Result<Vec<u8>> {
    let session_kek = SessionKek::import(token, kek)?;
    let ciphertext = session_kek.wrap(token, raw, target, path)?;
    session_kek.destroy()?;
    Ok(ciphertext)
}

/// The KEK imported into one session as a public session object, for every wrap that
/// session makes: a batch imports it once per session, not once per key. It is destroyed
/// when dropped, on every path (an error, a panic), or by [`SessionKek::destroy`].
pub struct SessionKek<'s> {
    object: SessionObject<'s>,
    kek: KekPublicKey,
}

impl<'s> SessionKek<'s> {
    /// `C_CreateObject` of the KEK's public key (`CKA_TOKEN = false`, `CKA_WRAP = true`).
    pub fn import(token: &'s TokenSession, kek: &KekPublicKey) -> Result<Self> {
        let session = &token.session;
        let object = SessionObject::new(session, session.create_object(&kek_template(kek))?);
        Ok(Self {
            object,
            kek: kek.clone(),
        })
    }

    /// Wraps the target under this KEK, in the session it was imported into, and checks the
    /// result's lengths and structure before anything is written.
    pub fn wrap(
        &self,
        token: &TokenSession,
        raw: &RawModule,
        target: &Target,
        path: WrapPath,
    ) -> Result<Vec<u8>> {
        let session = &token.session;
        let ciphertext = match path {
            WrapPath::Native => raw.wrap_rsa_aes(
                session.handle(),
                self.object.handle().handle(),
                target.private.handle(),
            )?,
            WrapPath::TwoStep(kwp) => {
                wrap_two_step(token, raw, &self.object, &self.kek, target, kwp)?
            }
        };
        check_ciphertext(&ciphertext, &self.kek, target.kind)?;
        Ok(ciphertext)
    }

    /// Destroys the session object now, reporting a failure.
    pub fn destroy(self) -> Result<()> {
        self.object.destroy()
    }
}

/// The template of the KEK imported as a session public key object: `CKA_TOKEN = false`,
/// `CKA_WRAP = true` (the bench's floor imports it with this too).
pub fn kek_template(kek: &KekPublicKey) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::KeyType(KeyType::RSA),
        Attribute::Token(false),
        Attribute::Private(false),
        Attribute::Modulus(kek.n_bytes()),
        Attribute::PublicExponent(kek.e_bytes()),
        Attribute::Wrap(true),
        Attribute::Label(b"byok-kek-session".to_vec()),
    ]
}

/// The template of the two-step wrap's one-time AES-256 key (`CKM_AES_KEY_GEN`): a session
/// object, sensitive, extractable only so the KEK can wrap it (the bench's floor makes it
/// with this too).
pub fn session_aes_template() -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(true),
        Attribute::ValueLen(32.into()),
        Attribute::Wrap(true),
        Attribute::Label(b"byok-aes-session".to_vec()),
    ]
}

/// `CKM_RSA_AES_KEY_WRAP` in two calls: RFC 5649 of the target under a one-time AES-256 key,
/// then RSA-OAEP (SHA-1) of that key under the KEK.
fn wrap_two_step(
    token: &TokenSession,
    raw: &RawModule,
    kek_object: &SessionObject<'_>,
    kek: &KekPublicKey,
    target: &Target,
    kwp: KwpMechanism,
) -> Result<Vec<u8>> {
    let session = &token.session;
    let aes = SessionObject::new(
        session,
        session.generate_key(&Mechanism::AesKeyGen, &session_aes_template())?,
    );
    let kwp_part = raw.wrap_aes_kwp(
        session.handle(),
        kwp.number(),
        aes.handle().handle(),
        target.private.handle(),
    )?;
    let mut out = raw.wrap_rsa_oaep_sha1(
        session.handle(),
        kek_object.handle().handle(),
        aes.handle().handle(),
    )?;
    aes.destroy()?;
    if out.len() != kek.modulus_len() {
        return Err(OfflineError::BadResult(format!(
            "the RSA-OAEP part is {} bytes, expected {}",
            out.len(),
            kek.modulus_len()
        )));
    }
    out.extend_from_slice(&kwp_part);
    Ok(out)
}

/// Checks lengths and structure before anything is written.
fn check_ciphertext(ciphertext: &[u8], kek: &KekPublicKey, kind: KeyKind) -> Result<()> {
    let modulus_len = kek.modulus_len();
    byok_core::wrap::check_len(ciphertext.len(), modulus_len)
        .map_err(|e| OfflineError::BadResult(e.to_string()))?;
    let kwp_len = ciphertext.len() - modulus_len;
    let plausible = match kind {
        KeyKind::Oct { bits } => kwp_len == bits as usize / 8 + 8,
        // PKCS#8 of RSA keys: roughly 0.6 × modulus bits / 8 × 9/2; bound it loosely.
        KeyKind::Rsa { bits } => kwp_len > bits as usize / 8 && kwp_len < bits as usize,
        // EC PKCS#8 with or without the public key: 60..250 bytes.
        KeyKind::Ec { .. } => (40..=260).contains(&kwp_len),
    };
    if !plausible {
        return Err(OfflineError::BadResult(format!(
            "an AES key wrap of {kwp_len} bytes does not fit a {kind} key"
        )));
    }
    Ok(())
}

/// The sidecar of a package of `target` whose file hashes to `byok_sha256`.
pub fn sidecar_for(
    token: &TokenSession,
    kek: &KekTransfer,
    target: &Target,
    byok_sha256: Fingerprint,
) -> Sidecar {
    let id = &token.identity;
    Sidecar {
        byok_sha256,
        kek_kid: kek.kid.to_string(),
        kind: target.kind,
        public_key: target.public_key.clone(),
        source: Source {
            label: target.label.clone(),
            id: hex::encode(&target.id),
            token_label: id.label.clone(),
            token_serial: id.serial.clone(),
            manufacturer: id.manufacturer.clone(),
            model: id.model.clone(),
            firmware: id.firmware.clone(),
        },
    }
}

/// Wraps the target, then writes the `.byok` and its sidecar atomically and durably (never
/// overwriting).
pub fn package(
    token: &TokenSession,
    raw: &RawModule,
    kek: &KekTransfer,
    target: &Target,
    path: WrapPath,
    out: &Path,
) -> Result<PackageReport> {
    let sidecar_out = sidecar::path_for(out);
    files::ensure_absent(&[out, &sidecar_out])?;
    let session_kek = SessionKek::import(token, &kek.key)?;
    let packager = Packager {
        token,
        raw,
        kek,
        session_kek: &session_kek,
        path,
    };
    let sealed = packager.seal(target, out)?;
    session_kek.destroy()?;
    files::write_all_new(&sealed.files, files::write_new)?;
    sealed.written();
    Ok(sealed.report)
}

/// What packaging a key needs: the session, its imported KEK and the wrap path.
pub struct Packager<'a, 's> {
    pub token: &'a TokenSession,
    pub raw: &'a RawModule,
    pub kek: &'a KekTransfer,
    pub session_kek: &'a SessionKek<'s>,
    pub path: WrapPath,
}

/// A package made and read back as the service will, not yet on disk: its two files, in the
/// order they must be written, and the report.
pub struct Sealed {
    /// The sidecar first, the package last: a `.byok` under its name always has its sidecar,
    /// whenever the run is killed. A sidecar alone is a run stopped before its package;
    /// `batch` resumes it, and the import side names it. Written with
    /// [`files::write_all_new`], a failure leaves neither.
    pub files: [NewFile; 2],
    pub report: PackageReport,
}

impl Sealed {
    /// Logs the package as written (once [`Sealed::files`] are).
    pub fn written(&self) {
        tracing::info!(
            path = %self.report.byok.display(),
            sha256 = %self.report.byok_sha256.to_hex(),
            sidecar = %self.report.sidecar.display(),
            "package written"
        );
    }
}

impl Packager<'_, '_> {
    /// Wraps the target and makes the sidecar and the `.byok` for `out`, checked; writes
    /// nothing (the caller writes [`Sealed::files`]: a single `package` at once, a batch on
    /// its committer thread while the worker goes on with the next key).
    pub fn seal(&self, target: &Target, out: &Path) -> Result<Sealed> {
        let (token, kek) = (self.token, self.kek);
        let sidecar_out = sidecar::path_for(out);
        let ciphertext = self.session_kek.wrap(token, self.raw, target, self.path)?;
        let id = &token.identity;
        let generator = Generator::this_tool(&id.manufacturer, &id.model, &id.firmware);
        let package = KeyTransferPackage::new(kek.kid.clone(), ciphertext, &generator)?;
        let bytes = package.to_json_bytes();
        // Read back what we are about to write, as the service will.
        let reread = KeyTransferPackage::parse(&bytes)?;
        reread.check_against_kek(&kek.key)?;
        let byok_sha256 = Fingerprint::of_bytes(&bytes);
        let sidecar = sidecar_for(token, kek, target, byok_sha256);
        let report = PackageReport {
            byok: out.to_path_buf(),
            sidecar: sidecar_out.clone(),
            kek_kid: kek.kid.clone(),
            kek_sha256: kek.key.fingerprint(),
            wrap_path: self.path,
            target_label: target.label.clone(),
            target_id: target.id.clone(),
            target_kind: target.kind,
            target_public_key_sha256: target.public_key.as_ref().map(|k| k.fingerprint()),
            byok_sha256,
        };
        let files = [
            NewFile {
                path: sidecar_out,
                bytes: sidecar.to_json_bytes(),
                kind: FileKind::Sidecar,
            },
            NewFile {
                path: out.to_path_buf(),
                bytes,
                kind: FileKind::Package,
            },
        ];
        Ok(Sealed { files, report })
    }
}
