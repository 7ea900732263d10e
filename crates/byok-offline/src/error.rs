//! Errors of the offline half, written for the operator at the HSM: one variant per cause,
//! each naming its fix, and the exit code each maps to ([`Classify`]).

use crate::DEFAULT_PIN_ENV;
use crate::log::LogError;
use byok_cli_common::evidence::EvidenceError;
use byok_cli_common::exit::{Classify, ExitKind};
use byok_cli_common::files::FileError;
use byok_cli_common::output::QueryError;
use byok_core::challenge::ChallengeError;
use byok_core::manifest::ManifestError;
use byok_core::ops::OpError;
use byok_core::target::{Curve, EncodingError, KeyKind};
use cryptoki::error::{Error as CkError, RvError};
use std::path::PathBuf;

/// Everything that can stop `byok-offline`. No variant carries a PIN or key bytes.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error(
        "no PKCS#11 module given: pass --module PATH or set PKCS11_MODULE \
         (SoftHSM on Debian: /usr/lib/softhsm/libsofthsm2.so)"
    )]
    NoModule,
    #[error(
        "cannot load the PKCS#11 module `{path}`: {reason}. Check the path and that it is the vendor's PKCS#11 library for this machine"
    )]
    ModuleLoad { path: PathBuf, reason: String },
    #[error(
        "the PKCS#11 module failed to initialise: {0}. If the vendor's module needs an init \
         string (NSS softokn: configdir='sql:DIR' ...), pass it with --init-args or PKCS11_INIT_ARGS"
    )]
    ModuleInit(String),
    #[error(
        "--init-args / PKCS11_INIT_ARGS holds a NUL byte; give the module's init string as plain text"
    )]
    InitArgsNul,
    #[error(
        "no token labelled `{label}`; tokens present: {present}. Pick one with --token LABEL or --slot ID"
    )]
    UnknownToken { label: String, present: String },
    #[error("no slot {slot} with a token; slots with tokens: {present}")]
    UnknownSlot { slot: u64, present: String },
    #[error("more than one token is present ({present}); pick one with --token LABEL or --slot ID")]
    AmbiguousToken { present: String },
    #[error(
        "no initialised token is present in this module; initialise one with the vendor's tools"
    )]
    NoToken,
    #[error(
        "the PIN was refused by token `{token}` (CKR_PIN_INCORRECT); check it and try again (repeated failures lock the token)"
    )]
    WrongPin { token: String },
    #[error(
        "token `{token}` is locked (CKR_PIN_LOCKED) after too many wrong PINs; the security officer must unlock or reset it"
    )]
    PinLocked { token: String },
    #[error("token `{token}` has no user PIN set yet; the security officer must initialise it")]
    PinNotInitialised { token: String },
    #[error(
        "no PIN: set {} (or pass --pin-env NAME or --pin-file PATH), or run on a terminal to \
         be prompted",
        DEFAULT_PIN_ENV
    )]
    NoPin,
    /// The variable's name is not repeated: an operator may have put the PIN itself there.
    #[error(
        "no PIN: the variable named by --pin-env is not set; export it, pass --pin-file PATH, \
         or run on a terminal to be prompted"
    )]
    NoPinInNamedVariable,
    /// The value is not repeated: it may be the PIN itself.
    #[error(
        "--pin-env takes the NAME of an environment variable holding the PIN, not the PIN \
         itself (a name is letters, digits and _, not starting with a digit); to give the PIN \
         directly, export it as {} or put it in a file for --pin-file",
        DEFAULT_PIN_ENV
    )]
    PinEnvNotAName,
    #[error("cannot read the PIN file `{path}`: {reason}")]
    PinFile { path: PathBuf, reason: String },
    #[error("the PIN from {source_name} is empty")]
    EmptyPin { source_name: String },
    #[error("no key labelled `{0}` on the token; list keys with `byok-offline keys`")]
    NoSuchLabel(String),
    #[error("no key with id {0} on the token; list keys with `byok-offline keys`")]
    NoSuchId(String),
    #[error("{count} private or secret keys match {what}; name the key by --id instead")]
    AmbiguousKey { what: String, count: usize },
    #[error("a key labelled `{0}` already exists on the token; choose another --label")]
    LabelInUse(String),
    #[error(
        "key `{0}` is not extractable (CKA_EXTRACTABLE=false), so the HSM will not wrap it; BYOK needs a \
         key generated with CKA_EXTRACTABLE=true (as `byok-offline generate` does)"
    )]
    NotExtractable(String),
    #[error(
        "key `{0}` is not sensitive (CKA_SENSITIVE=false): its value can be read in the clear from the \
         token, so it may already exist outside the HSM; refusing to package it"
    )]
    NotSensitive(String),
    #[error("key `{label}` is {found}, which Key Vault does not import: {reason}")]
    UnsupportedTarget {
        label: String,
        found: String,
        reason: String,
    },
    #[error("invalid --id `{0}`: give the CKA_ID as hex digits, as `byok-offline keys` prints it")]
    BadId(String),
    /// The command line was wrong; nothing was done.
    #[error("{0}")]
    Usage(String),
    #[error("name the target key with --label or --id")]
    NoTarget,
    #[error("the token cannot do a BYOK wrap: {0}")]
    NoWrapPath(MissingMechanism),
    #[error(
        "--wrap-mechanism native: the token does not offer CKM_RSA_AES_KEY_WRAP; use --wrap-mechanism auto or two-step"
    )]
    NativeUnavailable,
    #[error(
        "the token's CKM_AES_KEY_WRAP_PAD (0x210A) failed the RFC 5649 known-answer test (it likely means PKCS#7 \
         padding + RFC 3394 here), and the token lacks CKM_AES_KEY_WRAP_KWP (0x210B): it cannot make a .byok"
    )]
    KwpSelfTestFailed,
    #[error(
        "this token could not generate {kind} ({rv}); run `byok-offline check` to see which key \
         kinds it can generate and wrap correctly"
    )]
    GenerationRefused { kind: KeyKind, rv: String },
    #[error(
        "{kind} keys cannot be packaged on this token: {finding}. Nothing was generated or \
         written; run `byok-offline check` to see every kind. {fix}"
    )]
    KindRefused {
        kind: KeyKind,
        finding: String,
        fix: &'static str,
    },
    #[error(
        "the package the HSM produced failed its own check: {0}. Nothing was written; the token's \
         wrap is not what Key Vault reads, so report it to the HSM vendor"
    )]
    BadResult(String),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Evidence(#[from] EvidenceError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("the manifest {path} is refused: {source}. Fix it and run the batch again")]
    Manifest {
        path: PathBuf,
        source: ManifestError,
    },
    #[error("key `{name}`: {source}")]
    BatchKey {
        name: String,
        source: Box<OfflineError>,
    },
    /// A batch that stopped after its evidence log was opened: the log's head, for the minutes.
    #[error(
        "{source}. The evidence log {log} holds every key finished before the stop (head {head}); \
         run the batch again to resume"
    )]
    BatchStopped {
        source: Box<OfflineError>,
        log: PathBuf,
        head: String,
    },
    #[error(
        "{path} was made for another KEK ({kid}); move it away to package the key again under this one"
    )]
    PackageForOtherKek { path: PathBuf, kid: String },
    #[error(
        "{path} does not parse ({reason}), yet the evidence log records key `{key}` as packaged: \
         the file was damaged after it was recorded. Restore it from a copy (the log names its \
         SHA-256), or move it and its sidecar away and run the batch with another --dir and --log"
    )]
    DamagedPackage {
        path: PathBuf,
        key: String,
        reason: String,
    },
    #[error(
        "the HSM key `{label}` is {found}, but the manifest says {expected}: correct the manifest, \
         or name the right key with hsm_label"
    )]
    KindDiffers {
        label: String,
        found: KeyKind,
        expected: KeyKind,
    },
    #[error(
        "the HSM key `{label}` is {found}, not what `{expected}` says: name the right key with \
         --label or --id, or correct the flags. Nothing was wrapped or written"
    )]
    KindFlagsDiffer {
        label: String,
        found: KeyKind,
        /// The flags as given: `--kty EC --curve P-384`.
        expected: String,
    },
    #[error(
        "{path} already exists and holds a public key other than the HSM key `{label}`'s; this \
         tool never overwrites a file: move it away (or, for `package`, pass --public-key-out \
         PATH). Nothing was wrapped or written"
    )]
    PublicKeyFileDiffers { path: PathBuf, label: String },
    #[error("cannot read the public key of the HSM key `{label}`: {source}")]
    PublicKeyUnreadable {
        label: String,
        source: PublicKeyError,
    },
    #[error(
        "the challenge file {path} is refused: {source}. Pass the file `byok-online prove-aes` wrote"
    )]
    Challenge {
        path: PathBuf,
        source: ChallengeError,
    },
    #[error(
        "the HSM key `{label}` cannot decrypt the challenge ({reason}): check that the key allows \
         decrypt and that the token offers CKM_AES_GCM"
    )]
    ChallengeDecrypt { label: String, reason: String },
    #[error(
        "the HSM key `{label}` does not decrypt the vault's challenge: the vault does not hold this \
         key. Check that the challenge was made for the vault key imported from `{label}`"
    )]
    ProofMismatch { label: String },
    #[error(transparent)]
    Ops(#[from] OpError),
    #[error(transparent)]
    Kek(#[from] byok_core::kek::KekError),
    #[error(transparent)]
    Transfer(#[from] byok_core::transfer::TransferError),
    #[error(transparent)]
    Kid(#[from] byok_core::kid::KidError),
    #[error(transparent)]
    Package(#[from] byok_core::package::PackageError),
    #[error(transparent)]
    Encoding(#[from] byok_core::target::EncodingError),
    #[error("--kty/--size/--curve: {0}")]
    KindFlags(byok_core::target::EncodingError),
    #[error(
        "the PKCS#11 module's {function} reports {reported} entries, more than the {bound} a \
         token can mean (PKCS#11 names under 500 mechanisms); nothing was read. The module is \
         faulty or not a PKCS#11 library: check the path given to --module, and report it to the \
         HSM vendor"
    )]
    ImplausibleCount {
        function: &'static str,
        /// `CK_ULONG`: 32 bits on Windows, 64 on Unix.
        reported: cryptoki_sys::CK_ULONG,
        bound: cryptoki_sys::CK_ULONG,
    },
    #[error("PKCS#11 {function} failed: {rv}{hint}")]
    Pkcs11 {
        function: String,
        rv: String,
        hint: &'static str,
    },
    #[error("PKCS#11: {0}")]
    Cryptoki(String),
}

/// The mechanism a wrap path needs and the token does not list (`Capabilities::choose`): why
/// `tokens` says "not possible", and what [`OfflineError::NoWrapPath`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MissingMechanism {
    /// Only `--wrap-mechanism native` asks for it alone: [`OfflineError::NativeUnavailable`].
    #[error("the token does not offer CKM_RSA_AES_KEY_WRAP; use --wrap-mechanism auto or two-step")]
    RsaAesKeyWrap,
    #[error(
        "the token cannot generate AES keys (no CKM_AES_KEY_GEN), which the two-step wrap needs \
         for its one-time AES-256 key; enable the mechanism if the HSM's policy disables it, or \
         use a token that offers it or CKM_RSA_AES_KEY_WRAP"
    )]
    AesKeyGen,
    #[error(
        "the token lacks CKM_RSA_PKCS_OAEP, which the two-step wrap needs to wrap its AES key \
         under the KEK; enable the mechanism if the HSM's policy disables it, or use a token \
         that offers it or CKM_RSA_AES_KEY_WRAP"
    )]
    RsaPkcsOaep,
    #[error(
        "the token has neither CKM_AES_KEY_WRAP_KWP (0x210B) nor CKM_AES_KEY_WRAP_PAD (0x210A), \
         one of which the two-step wrap needs for RFC 5649; use a token that offers one of them \
         or CKM_RSA_AES_KEY_WRAP"
    )]
    AesKeyWrap,
}

impl From<MissingMechanism> for OfflineError {
    /// `--wrap-mechanism native` without its mechanism has an error of its own; every other
    /// missing mechanism leaves no wrap path.
    fn from(missing: MissingMechanism) -> Self {
        match missing {
            MissingMechanism::RsaAesKeyWrap => OfflineError::NativeUnavailable,
            other => OfflineError::NoWrapPath(other),
        }
    }
}

/// Why the public key of an RSA or EC target cannot be read from the token
/// ([`OfflineError::PublicKeyUnreadable`]): one variant per cause, each naming its fix.
#[derive(Debug, thiserror::Error)]
pub enum PublicKeyError {
    #[error(
        "the RSA private key does not show its modulus and public exponent (CKA_MODULUS, \
         CKA_PUBLIC_EXPONENT). Check the key with `byok-offline keys`. A key put on the token \
         without them cannot be packaged with its public key: generate it in the token \
         (`byok-offline generate`). If the token hides them even on keys it generates itself \
         (as `check` found), it cannot be used for BYOK: report it to the HSM vendor"
    )]
    RsaComponentsHidden,
    #[error(
        "no EC public key object with CKA_ID {id} beside the private key. Check its objects \
         with `byok-offline keys`: an EC key needs its public key object with the same CKA_ID \
         (create it with the HSM vendor's tools)"
    )]
    NoEcPublicObject {
        /// The private key's `CKA_ID` in hex.
        id: String,
    },
    #[error(
        "the EC public key object with CKA_ID {id} has no CKA_EC_POINT. Check its objects with \
         `byok-offline keys`; a token that hides the public point of a public key cannot be used \
         for BYOK: report it to the HSM vendor"
    )]
    NoEcPoint {
        /// The key's `CKA_ID` in hex.
        id: String,
    },
    #[error(
        "the {curve} public point is {len} bytes, expected an uncompressed point of {expected} \
         (in a DER OCTET STRING or raw, as PKCS#11 tokens give it): the token's CKA_EC_POINT is \
         not one, so report it to the HSM vendor"
    )]
    EcPointLength {
        curve: Curve,
        len: usize,
        expected: usize,
    },
    #[error(
        "the {curve} public point starts with 0x{first:02x}, not 0x04 (an uncompressed point): \
         the token's CKA_EC_POINT is not one, so report it to the HSM vendor"
    )]
    EcPointCompressed { curve: Curve, first: u8 },
    #[error(
        "the {curve} public point is not a point of the curve ({source}): the token's \
         CKA_EC_POINT is damaged, so report it to the HSM vendor"
    )]
    EcPointInvalid { curve: Curve, source: EncodingError },
}

impl From<CkError> for OfflineError {
    fn from(err: CkError) -> Self {
        match err {
            CkError::Pkcs11(rv, function) => OfflineError::Pkcs11 {
                function: format!("C_{function:?}"),
                hint: hint(rv),
                rv: ckr_name(rv),
            },
            other => OfflineError::Cryptoki(other.to_string()),
        }
    }
}

/// The return code's PKCS#11 name (`CKR_GENERAL_ERROR`), or its number when it has none
/// cryptoki knows. cryptoki's own text for a code is a paragraph of the standard.
pub fn ckr_name(rv: RvError) -> String {
    match rv {
        RvError::UnknownErrorCode(code) | RvError::VendorDefined(code) => format!("CKR 0x{code:x}"),
        named => {
            let camel = format!("{named:?}");
            let mut out = String::from("CKR");
            for c in camel.chars() {
                if c.is_ascii_uppercase() {
                    out.push('_');
                }
                out.push(c.to_ascii_uppercase());
            }
            out
        }
    }
}

impl OfflineError {
    /// The PKCS#11 return code this error carries, if it is one (`CKR_GENERAL_ERROR`).
    pub fn return_code(&self) -> Option<&str> {
        match self {
            OfflineError::Pkcs11 { rv, .. } => Some(rv),
            OfflineError::GenerationRefused { rv, .. } => Some(rv),
            _ => None,
        }
    }
}

impl Classify for OfflineError {
    fn exit_kind(&self) -> ExitKind {
        match self {
            OfflineError::Usage(_)
            | OfflineError::Query(_)
            | OfflineError::PinEnvNotAName
            | OfflineError::NoTarget
            | OfflineError::Ops(_)
            | OfflineError::KindFlags(_) => ExitKind::Usage,
            OfflineError::ProofMismatch { .. }
            | OfflineError::Evidence(EvidenceError::Chain { .. }) => ExitKind::Mismatch,
            OfflineError::Log(e) => e.exit_kind(),
            OfflineError::BatchKey { source, .. } => source.exit_kind(),
            OfflineError::BatchStopped { source, .. } => source.exit_kind(),
            _ => ExitKind::Failure,
        }
    }
}

fn hint(rv: RvError) -> &'static str {
    match rv {
        RvError::KeyUnextractable => " (the key is not extractable)",
        RvError::KeyNotWrappable => " (the token will not wrap this key type with this mechanism)",
        RvError::MechanismInvalid => " (the token does not offer this mechanism)",
        RvError::UserNotLoggedIn => " (log in first: the PIN was not accepted)",
        RvError::TemplateInconsistent | RvError::TemplateIncomplete => {
            " (the token refused the key template; see docs/ceremony.md for vendor quirks)"
        }
        _ => "",
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = OfflineError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::context::Function;

    #[test]
    fn exit_kinds() {
        let mismatch = OfflineError::ProofMismatch { label: "k".into() };
        assert_eq!(mismatch.exit_kind(), ExitKind::Mismatch);
        let in_batch = OfflineError::BatchKey {
            name: "k".into(),
            source: Box::new(mismatch),
        };
        assert_eq!(in_batch.exit_kind(), ExitKind::Mismatch);
        assert!(in_batch.to_string().starts_with("key `k`: the HSM key `k`"));
        assert_eq!(OfflineError::NoTarget.exit_kind(), ExitKind::Usage);
        assert_eq!(OfflineError::NoModule.exit_kind(), ExitKind::Failure);
    }

    #[test]
    fn return_codes_are_named() {
        assert_eq!(ckr_name(RvError::GeneralError), "CKR_GENERAL_ERROR");
        assert_eq!(
            ckr_name(RvError::CurveNotSupported),
            "CKR_CURVE_NOT_SUPPORTED"
        );
        assert_eq!(
            ckr_name(RvError::DomainParamsInvalid),
            "CKR_DOMAIN_PARAMS_INVALID"
        );
        assert_eq!(ckr_name(RvError::BufferTooSmall), "CKR_BUFFER_TOO_SMALL");
        assert_eq!(ckr_name(RvError::UnknownErrorCode(0x35)), "CKR 0x35");
        let err: OfflineError =
            CkError::Pkcs11(RvError::KeyUnextractable, Function::WrapKey).into();
        assert_eq!(
            err.to_string(),
            "PKCS#11 C_WrapKey failed: CKR_KEY_UNEXTRACTABLE (the key is not extractable)"
        );
    }
}
