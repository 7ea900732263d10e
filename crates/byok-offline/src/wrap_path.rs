//! Which wrap a token can do: native `CKM_RSA_AES_KEY_WRAP`, or the two-step equivalent with
//! RFC 5649 under `CKM_AES_KEY_WRAP_KWP` (0x210B) or, after a known-answer self-test,
//! `CKM_AES_KEY_WRAP_PAD` (0x210A).

pub use crate::error::MissingMechanism;

use crate::error::{OfflineError, Result};
use crate::raw::{CKM_AES_KEY_WRAP_KWP, CKM_AES_KEY_WRAP_PAD, CKM_RSA_AES_KEY_WRAP, RawModule};
use crate::token::{SessionObject, TokenIdentity, TokenSession};
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::Session;
use serde::Serialize;
use std::fmt;

const CKM_RSA_PKCS_OAEP: u64 = 0x0009;
const CKM_AES_KEY_GEN: u64 = 0x1080;

/// The RFC 5649 mechanism a two-step wrap uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum KwpMechanism {
    /// `CKM_AES_KEY_WRAP_KWP` (0x210B), RFC 5649 by the PKCS#11 3.0 standard.
    Kwp,
    /// `CKM_AES_KEY_WRAP_PAD` (0x210A), RFC 5649 on some vendors; used only after a
    /// known-answer self-test on the token proves it is RFC 5649.
    Pad,
    /// `CKM_AES_KEY_WRAP_PAD` as SoftHSM 2.6.1 does it: the input is zero-padded to a multiple
    /// of 8 bytes and then wrapped with RFC 5649, so the unwrapped plaintext carries up to 7
    /// trailing zero bytes unless its length is already a multiple of 8. AES keys (16, 24 or
    /// 32 bytes) come out exact; for RSA and EC keys the check finds the zeros, and only
    /// `--allow-zero-padded-kwp` (rehearsals on SoftHSM) lets them through.
    PadZeroPadded,
}

impl KwpMechanism {
    /// The PKCS#11 mechanism number.
    pub fn number(self) -> u64 {
        match self {
            KwpMechanism::Kwp => CKM_AES_KEY_WRAP_KWP,
            KwpMechanism::Pad | KwpMechanism::PadZeroPadded => CKM_AES_KEY_WRAP_PAD,
        }
    }
}

/// How a package is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum WrapPath {
    /// One `C_WrapKey` with `CKM_RSA_AES_KEY_WRAP`.
    Native,
    /// A session AES-256 key, RFC 5649 of the target under it, RSA-OAEP-SHA-1 of it under the KEK.
    TwoStep(KwpMechanism),
}

impl fmt::Display for WrapPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WrapPath::Native => f.write_str("native CKM_RSA_AES_KEY_WRAP"),
            WrapPath::TwoStep(KwpMechanism::Kwp) => f.write_str(
                "two-step: session AES-256 key, CKM_AES_KEY_WRAP_KWP (0x210B), CKM_RSA_PKCS_OAEP (SHA-1)",
            ),
            WrapPath::TwoStep(KwpMechanism::Pad) => f.write_str(
                "two-step: session AES-256 key, CKM_AES_KEY_WRAP_PAD (0x210A, RFC 5649 self-tested), \
                 CKM_RSA_PKCS_OAEP (SHA-1)",
            ),
            WrapPath::TwoStep(KwpMechanism::PadZeroPadded) => f.write_str(
                "two-step: session AES-256 key, CKM_AES_KEY_WRAP_PAD (0x210A, zero-padded to 8 bytes \
                 then RFC 5649, as SoftHSM 2.6.1 does), \
                 CKM_RSA_PKCS_OAEP (SHA-1)",
            ),
        }
    }
}

/// The operator's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WrapChoice {
    #[default]
    Auto,
    Native,
    TwoStep,
}

/// The mechanisms that matter for BYOK, as a token lists them.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Capabilities {
    pub rsa_aes_key_wrap: bool,
    pub aes_key_wrap_kwp: bool,
    pub aes_key_wrap_pad: bool,
    pub rsa_pkcs_oaep: bool,
    pub aes_key_gen: bool,
}

impl Capabilities {
    pub fn from_list(list: &[u64]) -> Self {
        Self {
            rsa_aes_key_wrap: list.contains(&CKM_RSA_AES_KEY_WRAP),
            aes_key_wrap_kwp: list.contains(&CKM_AES_KEY_WRAP_KWP),
            aes_key_wrap_pad: list.contains(&CKM_AES_KEY_WRAP_PAD),
            rsa_pkcs_oaep: list.contains(&CKM_RSA_PKCS_OAEP),
            aes_key_gen: list.contains(&CKM_AES_KEY_GEN),
        }
    }

    /// The verdict without touching the token: which path `auto` would take, or the
    /// mechanism that leaves none. `Pad` still needs its self-test before use.
    pub fn verdict(&self) -> std::result::Result<WrapPath, MissingMechanism> {
        self.choose(WrapChoice::Auto)
    }

    /// Picks the path for a choice, before any self-test, or names the mechanism it lacks.
    pub fn choose(&self, choice: WrapChoice) -> std::result::Result<WrapPath, MissingMechanism> {
        let two_step = || {
            if !self.aes_key_gen {
                return Err(MissingMechanism::AesKeyGen);
            }
            if !self.rsa_pkcs_oaep {
                return Err(MissingMechanism::RsaPkcsOaep);
            }
            if self.aes_key_wrap_kwp {
                Ok(WrapPath::TwoStep(KwpMechanism::Kwp))
            } else if self.aes_key_wrap_pad {
                Ok(WrapPath::TwoStep(KwpMechanism::Pad))
            } else {
                Err(MissingMechanism::AesKeyWrap)
            }
        };
        match choice {
            WrapChoice::Native if self.rsa_aes_key_wrap => Ok(WrapPath::Native),
            WrapChoice::Native => Err(MissingMechanism::RsaAesKeyWrap),
            WrapChoice::Auto if self.rsa_aes_key_wrap => Ok(WrapPath::Native),
            WrapChoice::Auto | WrapChoice::TwoStep => two_step(),
        }
    }
}

/// Reads a slot's capabilities through the raw mechanism list (cryptoki drops the mechanisms
/// it cannot name, which are the ones that matter here).
pub fn capabilities(raw: &RawModule, slot: u64) -> Result<Capabilities> {
    let list = raw.mechanism_list(slot)?;
    tracing::trace!(slot, mechanisms = ?list, "mechanism list");
    let caps = Capabilities::from_list(&list);
    tracing::debug!(slot, ?caps, "BYOK capabilities");
    Ok(caps)
}

/// Chooses the wrap path for this token, running the self-test when the choice falls on
/// 0x210A. A 0x210A that zero-pads before RFC 5649 (SoftHSM 2.6.1) is chosen as
/// [`KwpMechanism::PadZeroPadded`]: what that does to each key kind is for the check
/// ([`crate::check`]) to say, since AES keys (16, 24 or 32 bytes) are never padded.
pub fn choose(token: &TokenSession, raw: &RawModule, choice: WrapChoice) -> Result<WrapPath> {
    let path = choose_path(token, raw, choice)?;
    tracing::info!(slot = token.slot.id(), %path, "wrap path chosen");
    Ok(path)
}

fn choose_path(token: &TokenSession, raw: &RawModule, choice: WrapChoice) -> Result<WrapPath> {
    let caps = capabilities(raw, token.slot.id())?;
    // `--wrap-mechanism native` without its mechanism is `NativeUnavailable`; any other
    // missing mechanism is `NoWrapPath` naming it (`From<MissingMechanism>`).
    let path = caps.choose(choice)?;
    if path != WrapPath::TwoStep(KwpMechanism::Pad) {
        return Ok(path);
    }
    let behaviour = pad_behaviour(&token.session, raw)?;
    tracing::info!(?behaviour, "CKM_AES_KEY_WRAP_PAD self-test");
    match behaviour {
        PadBehaviour::Rfc5649 => Ok(path),
        PadBehaviour::ZeroPaddedRfc5649 => Ok(WrapPath::TwoStep(KwpMechanism::PadZeroPadded)),
        PadBehaviour::Other => Err(OfflineError::KwpSelfTestFailed),
    }
}

/// What a token's 0x210A turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadBehaviour {
    /// RFC 5649 for every input length.
    Rfc5649,
    /// RFC 5649 of the input zero-padded to a multiple of 8 (SoftHSM 2.6.1).
    ZeroPaddedRfc5649,
    /// Neither (PKCS#7 padding + RFC 3394 by the PKCS#11 3.0 meaning, or something else).
    Other,
}

/// Known-answer test of 0x210A on the token, with RFC 5649 section 6's 192-bit KEK and its
/// 20-byte key (a length that is not a multiple of 8, where the variants differ). Both session
/// objects are public, so a session with no login will do; both are destroyed on every path.
pub fn pad_behaviour(session: &Session, raw: &RawModule) -> Result<PadBehaviour> {
    const KEK: [u8; 24] = [
        0x58, 0x40, 0xdf, 0x6e, 0x29, 0xb0, 0x2a, 0xf1, 0xab, 0x49, 0x3b, 0x70, 0x5b, 0xf1, 0x6e,
        0xa1, 0xae, 0x83, 0x38, 0xf4, 0xdc, 0xc1, 0x76, 0xa8,
    ];
    const KEY: [u8; 20] = [
        0xc3, 0x7b, 0x7e, 0x64, 0x92, 0x58, 0x43, 0x40, 0xbe, 0xd1, 0x22, 0x07, 0x80, 0x89, 0x41,
        0x15, 0x50, 0x68, 0xf7, 0x38,
    ];
    let kek = SessionObject::new(
        session,
        session.create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(false),
            Attribute::Private(false),
            Attribute::Value(KEK.to_vec()),
            Attribute::Wrap(true),
        ])?,
    );
    let key = SessionObject::new(
        session,
        session.create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::Token(false),
            Attribute::Private(false),
            Attribute::Value(KEY.to_vec()),
            Attribute::Extractable(true),
        ])?,
    );
    let wrapped = raw.wrap_aes_kwp(
        session.handle(),
        CKM_AES_KEY_WRAP_PAD,
        kek.handle().handle(),
        key.handle().handle(),
    );
    key.destroy()?;
    kek.destroy()?;
    let Ok(wrapped) = wrapped else {
        return Ok(PadBehaviour::Other);
    };
    let exact = byok_core::wrap::kwp_wrap(&KEK, &KEY).expect("constant inputs wrap");
    let mut padded_key = KEY.to_vec();
    padded_key.resize(KEY.len().div_ceil(8) * 8, 0);
    let zero_padded = byok_core::wrap::kwp_wrap(&KEK, &padded_key).expect("constant inputs wrap");
    Ok(if wrapped == exact {
        PadBehaviour::Rfc5649
    } else if wrapped == zero_padded {
        PadBehaviour::ZeroPaddedRfc5649
    } else {
        PadBehaviour::Other
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(native: bool, kwp: bool, pad: bool) -> Capabilities {
        Capabilities {
            rsa_aes_key_wrap: native,
            aes_key_wrap_kwp: kwp,
            aes_key_wrap_pad: pad,
            rsa_pkcs_oaep: true,
            aes_key_gen: true,
        }
    }

    #[test]
    fn auto_prefers_native_then_kwp_then_pad() {
        assert_eq!(caps(true, true, true).verdict(), Ok(WrapPath::Native));
        assert_eq!(
            caps(false, true, true).verdict(),
            Ok(WrapPath::TwoStep(KwpMechanism::Kwp))
        );
        assert_eq!(
            caps(false, false, true).verdict(),
            Ok(WrapPath::TwoStep(KwpMechanism::Pad))
        );
        assert_eq!(
            caps(false, false, false).verdict(),
            Err(MissingMechanism::AesKeyWrap)
        );
    }

    #[test]
    fn explicit_choices() {
        assert_eq!(
            caps(true, true, false).choose(WrapChoice::TwoStep),
            Ok(WrapPath::TwoStep(KwpMechanism::Kwp))
        );
        assert_eq!(
            caps(false, true, true).choose(WrapChoice::Native),
            Err(MissingMechanism::RsaAesKeyWrap)
        );
        let mut no_oaep = caps(false, true, true);
        no_oaep.rsa_pkcs_oaep = false;
        assert_eq!(
            no_oaep.choose(WrapChoice::Auto),
            Err(MissingMechanism::RsaPkcsOaep)
        );
        assert!(
            no_oaep
                .choose(WrapChoice::Auto)
                .unwrap_err()
                .to_string()
                .contains("OAEP")
        );
        let mut no_aes_gen = caps(false, true, true);
        no_aes_gen.aes_key_gen = false;
        assert_eq!(
            no_aes_gen.choose(WrapChoice::TwoStep),
            Err(MissingMechanism::AesKeyGen)
        );
        // Native needs no OAEP mechanism of its own.
        no_oaep.rsa_aes_key_wrap = true;
        assert_eq!(no_oaep.choose(WrapChoice::Auto), Ok(WrapPath::Native));
    }

    #[test]
    fn a_missing_mechanism_becomes_the_error_of_the_choice() {
        // Native asked for alone: its own error, naming the other choices.
        let native: OfflineError = MissingMechanism::RsaAesKeyWrap.into();
        assert!(matches!(native, OfflineError::NativeUnavailable));
        assert!(
            native
                .to_string()
                .contains("use --wrap-mechanism auto or two-step")
        );
        // Any other: no wrap path, naming the mechanism and what to do.
        for (missing, names) in [
            (MissingMechanism::AesKeyGen, "CKM_AES_KEY_GEN"),
            (MissingMechanism::RsaPkcsOaep, "CKM_RSA_PKCS_OAEP"),
            (
                MissingMechanism::AesKeyWrap,
                "CKM_AES_KEY_WRAP_KWP (0x210B)",
            ),
        ] {
            let err: OfflineError = missing.into();
            assert!(
                matches!(err, OfflineError::NoWrapPath(m) if m == missing),
                "{err:?}"
            );
            let text = err.to_string();
            assert!(
                text.starts_with("the token cannot do a BYOK wrap: "),
                "{text}"
            );
            assert!(text.contains(names), "{text}");
            assert!(
                text.contains("use a token that offers"),
                "no remedy: {text}"
            );
        }
    }

    #[test]
    fn mechanism_numbers() {
        let c = Capabilities::from_list(&[0x1054, 0x210B, 0x210A, 0x0009, 0x1080]);
        assert_eq!(c, caps(true, true, true));
        let c = Capabilities::from_list(&[0x210A, 0x0009, 0x1080]);
        assert_eq!(c, caps(false, false, true));
    }
}
