//! The PKCS#11 module, the token, and a logged-in session on it.

use crate::error::{OfflineError, Result};
use crate::pin::PinSource;
use crate::raw::{self, RawModule};
use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::{Slot, TokenInfo};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// A loaded and initialised PKCS#11 module, and its function list for the calls cryptoki
/// cannot make ([`RawModule`]).
pub struct Module {
    pkcs11: Pkcs11,
    raw: RawModule,
    file: Arc<ModuleFile>,
}

/// The module's library file, for the evidence log: its path and, once asked, its SHA-256
/// (which build of the vendor's code ran). Hashed only when an entry needs it.
#[derive(Debug)]
pub struct ModuleFile {
    path: PathBuf,
    sha256: OnceLock<Option<String>>,
}

/// The largest module file hashed for the record (vendor libraries are tens of MB).
const MAX_MODULE_BYTES: u64 = 1 << 30;

impl ModuleFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The SHA-256 (hex) of the library file, `None` when it cannot be read.
    pub fn sha256(&self) -> Option<&str> {
        self.sha256
            .get_or_init(|| {
                byok_cli_common::files::read_limited(&self.path, MAX_MODULE_BYTES)
                    .ok()
                    .map(|bytes| byok_core::Fingerprint::of_bytes(&bytes).to_hex())
            })
            .as_deref()
    }
}

/// Which token to use.
#[derive(Debug, Clone)]
pub enum TokenSelector {
    Label(String),
    Slot(u64),
    /// The only initialised token, if there is exactly one.
    Only,
}

/// What a token says about itself.
#[derive(Debug, Clone, Serialize)]
pub struct TokenIdentity {
    pub slot: u64,
    pub label: String,
    pub manufacturer: String,
    pub model: String,
    pub serial: String,
    pub firmware: String,
    pub user_pin_locked: bool,
}

impl TokenIdentity {
    fn from_info(slot: Slot, info: &TokenInfo) -> Self {
        let fw = info.firmware_version();
        Self {
            slot: slot.id(),
            label: info.label().trim().to_string(),
            manufacturer: info.manufacturer_id().trim().to_string(),
            model: info.model().trim().to_string(),
            serial: info.serial_number().trim().to_string(),
            firmware: format!("{}.{}", fw.major(), fw.minor()),
            user_pin_locked: info.user_pin_locked(),
        }
    }
}

impl Module {
    /// Loads the vendor's module and initialises it (once per process), with the module's
    /// init string in `C_Initialize`'s `pReserved` when one is given (`--init-args`).
    pub fn load(path: &Path, init_args: Option<&str>) -> Result<Self> {
        if !path.exists() {
            return Err(OfflineError::ModuleLoad {
                path: path.into(),
                reason: "no such file".into(),
            });
        }
        let pkcs11 = Pkcs11::new(path).map_err(|e| OfflineError::ModuleLoad {
            path: path.into(),
            reason: e.to_string(),
        })?;
        tracing::debug!(
            module = %path.display(),
            init_args_bytes = init_args.map(str::len),
            "loading the PKCS#11 module"
        );
        pkcs11
            .initialize(raw::initialize_args(init_args)?)
            .map_err(|e| OfflineError::ModuleInit(OfflineError::from(e).to_string()))?;
        let raw = RawModule::open(path)?;
        let file = Arc::new(ModuleFile {
            path: path.to_path_buf(),
            sha256: OnceLock::new(),
        });
        Ok(Self { pkcs11, raw, file })
    }

    /// The library file, for the record.
    pub fn file(&self) -> &Arc<ModuleFile> {
        &self.file
    }

    /// The module's own function list, for `C_GetMechanismList` and `C_WrapKey`.
    pub fn raw(&self) -> &RawModule {
        &self.raw
    }

    /// A read-write session on `slot` with no login: enough for public session objects (the
    /// 0x210A known-answer test), not for keys.
    pub fn open_public(&self, slot: Slot) -> Result<Session> {
        Ok(self.pkcs11.open_rw_session(slot)?)
    }

    /// Every slot holding an initialised token, with what the token says about itself.
    pub fn tokens(&self) -> Result<Vec<(Slot, TokenIdentity)>> {
        let mut out = Vec::new();
        for slot in self.pkcs11.get_slots_with_initialized_token()? {
            let info = self.pkcs11.get_token_info(slot)?;
            out.push((slot, TokenIdentity::from_info(slot, &info)));
        }
        Ok(out)
    }

    /// Finds the selected token.
    pub fn select(&self, selector: &TokenSelector) -> Result<(Slot, TokenIdentity)> {
        let tokens = self.tokens()?;
        let present = || {
            let names: Vec<String> = tokens
                .iter()
                .map(|(s, t)| format!("`{}` (slot {})", t.label, s.id()))
                .collect();
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        };
        let found = match selector {
            TokenSelector::Label(label) => tokens
                .iter()
                .find(|(_, t)| &t.label == label)
                .ok_or_else(|| OfflineError::UnknownToken {
                    label: label.clone(),
                    present: present(),
                })?,
            TokenSelector::Slot(id) => {
                tokens.iter().find(|(s, _)| s.id() == *id).ok_or_else(|| {
                    OfflineError::UnknownSlot {
                        slot: *id,
                        present: present(),
                    }
                })?
            }
            TokenSelector::Only => match tokens.as_slice() {
                [] => return Err(OfflineError::NoToken),
                [one] => one,
                _ => return Err(OfflineError::AmbiguousToken { present: present() }),
            },
        };
        Ok(found.clone())
    }

    /// Opens a read-write session on the selected token and logs in as the user.
    pub fn open(&self, selector: &TokenSelector, pin: &PinSource) -> Result<TokenSession> {
        let (_, identity) = self.select(selector)?;
        if identity.user_pin_locked {
            return Err(OfflineError::PinLocked {
                token: identity.label,
            });
        }
        self.open_with_pin(selector, &pin.read()?)
    }

    /// Opens a session with a PIN already read (batch workers share one).
    pub fn open_with_pin(
        &self,
        selector: &TokenSelector,
        pin: &cryptoki::types::AuthPin,
    ) -> Result<TokenSession> {
        let (slot, identity) = self.select(selector)?;
        if identity.user_pin_locked {
            return Err(OfflineError::PinLocked {
                token: identity.label,
            });
        }
        tracing::info!(
            slot = slot.id(),
            token = %identity.label,
            serial = %identity.serial,
            "token chosen; logging in"
        );
        let session = self.pkcs11.open_rw_session(slot)?;
        match session.login(UserType::User, Some(pin)) {
            Ok(()) => {}
            Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
                return Err(OfflineError::WrongPin {
                    token: identity.label,
                });
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => {
                return Err(OfflineError::PinLocked {
                    token: identity.label,
                });
            }
            Err(CkError::Pkcs11(RvError::UserPinNotInitialized, _)) => {
                return Err(OfflineError::PinNotInitialised {
                    token: identity.label,
                });
            }
            Err(e) => return Err(e.into()),
        }
        Ok(TokenSession {
            session,
            slot,
            identity,
            module: self.file.clone(),
        })
    }
}

/// A logged-in read-write session on one token.
pub struct TokenSession {
    pub session: Session,
    pub slot: Slot,
    pub identity: TokenIdentity,
    pub module: Arc<ModuleFile>,
}

impl TokenIdentity {
    /// The token and `module`, as the evidence log records them.
    pub fn record(&self, module: &ModuleFile) -> byok_core::evidence::TokenRecord {
        byok_core::evidence::TokenRecord {
            label: self.label.clone(),
            manufacturer: self.manufacturer.clone(),
            model: self.model.clone(),
            serial: self.serial.clone(),
            firmware: self.firmware.clone(),
            module: Some(module.path().display().to_string()),
            module_sha256: module.sha256().map(String::from),
        }
    }
}

impl TokenSession {
    /// The token and its module, as the evidence log records them.
    pub fn record(&self) -> byok_core::evidence::TokenRecord {
        self.identity.record(&self.module)
    }

    /// Every object this session can see (token objects and session objects).
    pub fn object_count(&self) -> Result<usize> {
        Ok(self.session.find_objects(&[])?.len())
    }

    /// Session objects only (`CKA_TOKEN = false`): what a ceremony must leave none of.
    pub fn session_object_count(&self) -> Result<usize> {
        Ok(self.session.find_objects(&[Attribute::Token(false)])?.len())
    }
}

/// A session object that is destroyed when dropped, on every path.
pub struct SessionObject<'a> {
    session: &'a Session,
    handle: Option<ObjectHandle>,
}

impl<'a> SessionObject<'a> {
    pub fn new(session: &'a Session, handle: ObjectHandle) -> Self {
        tracing::debug!(handle = handle.handle(), "session object created");
        Self {
            session,
            handle: Some(handle),
        }
    }

    pub fn handle(&self) -> ObjectHandle {
        self.handle.expect("present until destroyed")
    }

    /// Destroys the object now, reporting a failure.
    pub fn destroy(mut self) -> Result<()> {
        match self.handle.take() {
            Some(h) => {
                tracing::debug!(handle = h.handle(), "session object destroyed");
                Ok(self.session.destroy_object(h)?)
            }
            None => Ok(()),
        }
    }
}

impl Drop for SessionObject<'_> {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            tracing::debug!(
                handle = h.handle(),
                "session object destroyed on an error path"
            );
            // On an error path there is nothing better to do than try; the session's close
            // would destroy it as well.
            let _ = self.session.destroy_object(h);
        }
    }
}
