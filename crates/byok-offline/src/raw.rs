//! The PKCS#11 calls cryptoki 0.12 cannot make for us, and the module's init arguments.
//!
//! cryptoki's `MechanismType` cannot name `CKM_RSA_AES_KEY_WRAP` (0x1054) or
//! `CKM_AES_KEY_WRAP_KWP` (0x210B), and its `get_mechanism_list` silently drops mechanisms it
//! cannot name. Its `wrap_key` asks the module for the output length and trusts the answer,
//! which NSS softokn under-reports. So this module reaches the same module's function list
//! directly and calls `C_GetMechanismList` and every `C_WrapKey` (with a larger buffer when the
//! module says `CKR_BUFFER_TOO_SMALL`). It also reads the batch index's three attributes in one
//! `C_GetAttributeValue` per object, where cryptoki's `get_attributes` makes two. A count or length the module reports sizes no
//! allocation beyond a stated bound ([`MAX_MECHANISMS`], [`MAX_WRAP_LEN`]). The function list is the one of the module cryptoki
//! loaded and initialised ([`crate::token::Module::load`]); nothing here initialises it again.
//! Everything else goes through cryptoki.
#![allow(unsafe_code)]

use crate::error::{OfflineError, Result};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function};
use cryptoki::error::{Error as CkError, Rv};
use cryptoki_sys::{
    CK_ATTRIBUTE, CK_FUNCTION_LIST, CK_MECHANISM, CK_MECHANISM_TYPE, CK_OBJECT_HANDLE,
    CK_RSA_AES_KEY_WRAP_PARAMS, CK_RSA_PKCS_OAEP_PARAMS, CK_RV, CK_SESSION_HANDLE, CK_SLOT_ID,
    CK_ULONG, CK_UNAVAILABLE_INFORMATION, CKA_CLASS, CKA_ID, CKA_LABEL, CKG_MGF1_SHA1,
    CKM_RSA_PKCS_OAEP, CKM_SHA_1, CKR_ATTRIBUTE_SENSITIVE, CKR_ATTRIBUTE_TYPE_INVALID,
    CKR_BUFFER_TOO_SMALL, CKR_FUNCTION_NOT_SUPPORTED, CKR_OK, CKZ_DATA_SPECIFIED,
};
use std::ffi::{CString, c_void};
use std::path::Path;
use std::ptr::{self, NonNull};

pub use cryptoki_sys::{CKM_AES_KEY_WRAP_KWP, CKM_AES_KEY_WRAP_PAD, CKM_RSA_AES_KEY_WRAP};

/// The most a wrap may need: an RSA 4096 PKCS#8 wrapped is about 2.4 KiB, an RSA part 512 bytes.
const MAX_WRAP_LEN: CK_ULONG = 64 * 1024;

/// The buffer a wrap is first given, with no size query before it: every wrap Key Vault takes
/// fits (the native wrap of an RSA 4096 target is about 2.9 KiB). A size query would be a
/// second `C_WrapKey`, and kryoptic reads the key from its store at each call.
const FIRST_WRAP_LEN: CK_ULONG = 8 * 1024;

/// The longest label or `CKA_ID` [`RawModule::class_label_id`] reads in its one call; an
/// object with a longer one is read through cryptoki instead.
const INDEX_VALUE_LEN: usize = 256;

/// An object's class, label and id as one `C_GetAttributeValue` read them; `None` for an
/// attribute the object lacks (a data object has no `CKA_ID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassLabelId {
    pub class: Option<CK_ULONG>,
    pub label: Option<Vec<u8>>,
    pub id: Option<Vec<u8>>,
}

/// The most mechanisms a slot may list: PKCS#11 3.x names 480 (cryptoki-sys's `CKM_`
/// constants), and the modules measured here list tens to a few hundred. A count over eight
/// times every named mechanism (32 KiB of mechanism numbers) is a faulty module, not a token.
const MAX_MECHANISMS: CK_ULONG = 4096;

/// `C_Initialize`'s arguments: OS locking, and the module's init string (`--init-args`,
/// `PKCS11_INIT_ARGS`) in `pReserved` when one is given (NSS softokn needs
/// `configdir='sql:DIR' ...` there).
pub fn initialize_args(init_args: Option<&str>) -> Result<CInitializeArgs> {
    let flags = CInitializeFlags::OS_LOCKING_OK;
    let Some(text) = init_args else {
        return Ok(CInitializeArgs::new(flags));
    };
    let c_string = CString::new(text).map_err(|_| OfflineError::InitArgsNul)?;
    // The string must stay valid as long as the module may read it; a module is initialised
    // once per process, so it is kept for the rest of the process.
    let reserved = NonNull::new(c_string.into_raw().cast::<c_void>())
        .expect("CString::into_raw is never null");
    // SAFETY: `reserved` points to a NUL-terminated C string that is never freed, so it stays
    // valid for every use the module makes of it; a module that takes an init string in
    // pReserved (NSS softokn) reads exactly that. Modules that take none are not given one
    // unless the operator asks, and then read nothing from it.
    Ok(unsafe { CInitializeArgs::new_with_reserved(flags, reserved) })
}

/// A PKCS#11 return code as cryptoki's error, so it is named like every other (`CKR_...`).
fn rv_error(function: Function, rv: CK_RV) -> OfflineError {
    match Rv::from(rv) {
        Rv::Error(e) => CkError::Pkcs11(e, function).into(),
        Rv::Ok => OfflineError::Pkcs11 {
            function: format!("{function:?}"),
            rv: "CKR_OK with no result".into(),
            hint: "",
        },
    }
}

/// A count or length `function` reported, as an allocation's size: refused over `bound`
/// ([`OfflineError::ImplausibleCount`]) before anything is allocated.
fn bounded(function: &'static str, reported: CK_ULONG, bound: CK_ULONG) -> Result<usize> {
    if reported > bound {
        return Err(OfflineError::ImplausibleCount {
            function,
            reported,
            bound,
        });
    }
    Ok(reported as usize)
}

/// The output length to try after `CKR_BUFFER_TOO_SMALL`: what the module now says if it says
/// more, else double (NSS softokn's size query under-reports and its second answer may too).
fn next_len(tried: CK_ULONG, reported: CK_ULONG) -> CK_ULONG {
    reported.max(tried.saturating_mul(2)).max(64)
}

/// The module's function table, kept valid by holding the library open.
pub struct RawModule {
    // Dropped after `list`'s pointers are last used, since `self` owns both.
    _library: libloading::Library,
    list: CK_FUNCTION_LIST,
}

impl RawModule {
    /// Takes the function list of the module cryptoki has already loaded and initialised in
    /// this process ([`crate::token::Module::load`] calls this right after `C_Initialize`).
    /// It does not call `C_Initialize` again: the module's state, init arguments included, is
    /// the one cryptoki set up.
    pub fn open(path: &Path) -> Result<Self> {
        let load_err = |e: libloading::Error| OfflineError::ModuleLoad {
            path: path.into(),
            reason: e.to_string(),
        };
        // SAFETY: loading a shared library runs its initialisers. This is the vendor module the
        // operator named, which cryptoki has already loaded in this process, so the loader only
        // takes another reference to the same mapping.
        let library = unsafe { libloading::Library::new(path) }.map_err(load_err)?;
        // SAFETY: `C_GetFunctionList` has this signature in every PKCS#11 module (PKCS#11 2.40
        // section 5.2); the symbol is only used while `library` is alive.
        let get_list: libloading::Symbol<
            '_,
            unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV,
        > = unsafe { library.get(b"C_GetFunctionList\0") }.map_err(load_err)?;
        let mut list_ptr: *mut CK_FUNCTION_LIST = ptr::null_mut();
        // SAFETY: we pass a valid out-pointer; the module writes a pointer to its static table.
        let rv = unsafe { get_list(&mut list_ptr) };
        if rv != CKR_OK || list_ptr.is_null() {
            return Err(rv_error(Function::GetFunctionList, rv));
        }
        // SAFETY: the module returned a non-null pointer to its function table, which stays
        // valid while the library is loaded; we copy the table (plain function pointers).
        let list = unsafe { *list_ptr };
        Ok(Self {
            _library: library,
            list,
        })
    }

    /// An object's class, label and id in one `C_GetAttributeValue` (cryptoki's
    /// `get_attributes` makes two, lengths then values, and kryoptic reads the object from
    /// its store at each). `None` when a label or id is longer than [`INDEX_VALUE_LEN`] or the
    /// class is not a `CK_ULONG`: the caller then reads the object through cryptoki.
    pub fn class_label_id(
        &self,
        session: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
    ) -> Result<Option<ClassLabelId>> {
        let f = self
            .list
            .C_GetAttributeValue
            .ok_or_else(|| rv_error(Function::GetAttributeValue, CKR_FUNCTION_NOT_SUPPORTED))?;
        let mut class: CK_ULONG = 0;
        let mut label = [0u8; INDEX_VALUE_LEN];
        let mut id = [0u8; INDEX_VALUE_LEN];
        let mut template = [
            CK_ATTRIBUTE {
                type_: CKA_CLASS,
                pValue: (&raw mut class).cast(),
                ulValueLen: std::mem::size_of::<CK_ULONG>() as CK_ULONG,
            },
            CK_ATTRIBUTE {
                type_: CKA_LABEL,
                pValue: label.as_mut_ptr().cast(),
                ulValueLen: INDEX_VALUE_LEN as CK_ULONG,
            },
            CK_ATTRIBUTE {
                type_: CKA_ID,
                pValue: id.as_mut_ptr().cast(),
                ulValueLen: INDEX_VALUE_LEN as CK_ULONG,
            },
        ];
        // SAFETY: each entry points to a buffer of the length it states, alive for the call;
        // the module writes at most that many bytes to each (PKCS#11 5.7, C_GetAttributeValue).
        let rv = unsafe {
            f(
                session,
                object,
                template.as_mut_ptr(),
                template.len() as CK_ULONG,
            )
        };
        // An attribute the object lacks or hides is marked unavailable and the others are
        // still read; a value too long for its buffer is read again through cryptoki.
        match rv {
            CKR_OK | CKR_ATTRIBUTE_TYPE_INVALID | CKR_ATTRIBUTE_SENSITIVE => {}
            CKR_BUFFER_TOO_SMALL => return Ok(None),
            _ => return Err(rv_error(Function::GetAttributeValue, rv)),
        }
        let [c, l, i] = &template;
        let value = |a: &CK_ATTRIBUTE, buffer: &[u8]| match a.ulValueLen {
            CK_UNAVAILABLE_INFORMATION => Some(None),
            len if (len as usize) <= buffer.len() => Some(Some(buffer[..len as usize].to_vec())),
            _ => None,
        };
        let class = match c.ulValueLen {
            CK_UNAVAILABLE_INFORMATION => None,
            len if len as usize == std::mem::size_of::<CK_ULONG>() => Some(class),
            _ => return Ok(None),
        };
        let (Some(label), Some(id)) = (value(l, &label), value(i, &id)) else {
            return Ok(None);
        };
        Ok(Some(ClassLabelId { class, label, id }))
    }

    /// Every mechanism the slot offers, including those cryptoki cannot name.
    pub fn mechanism_list(&self, slot: CK_SLOT_ID) -> Result<Vec<CK_MECHANISM_TYPE>> {
        let f = self
            .list
            .C_GetMechanismList
            .ok_or_else(|| rv_error(Function::GetMechanismList, CKR_FUNCTION_NOT_SUPPORTED))?;
        let mut count: CK_ULONG = 0;
        // SAFETY: a null list pointer asks for the count only (PKCS#11 5.5).
        let rv = unsafe { f(slot, ptr::null_mut(), &mut count) };
        if rv != CKR_OK {
            return Err(rv_error(Function::GetMechanismList, rv));
        }
        // The count is the module's word: it never sizes an allocation beyond the bound.
        let count_len = bounded("C_GetMechanismList", count, MAX_MECHANISMS)?;
        let mut list = vec![0 as CK_MECHANISM_TYPE; count_len];
        // SAFETY: `list` has room for `count` entries, as the module asked.
        let rv = unsafe { f(slot, list.as_mut_ptr(), &mut count) };
        if rv != CKR_OK {
            return Err(rv_error(Function::GetMechanismList, rv));
        }
        list.truncate(count as usize);
        Ok(list)
    }

    /// `C_WrapKey` with an RFC 5649 mechanism that takes no parameters:
    /// `CKM_AES_KEY_WRAP_KWP` (0x210B) or `CKM_AES_KEY_WRAP_PAD` (0x210A).
    pub fn wrap_aes_kwp(
        &self,
        session: CK_SESSION_HANDLE,
        mechanism: CK_MECHANISM_TYPE,
        wrapping: CK_OBJECT_HANDLE,
        key: CK_OBJECT_HANDLE,
    ) -> Result<Vec<u8>> {
        let mut mechanism = CK_MECHANISM {
            mechanism,
            pParameter: ptr::null_mut(),
            ulParameterLen: 0,
        };
        self.wrap(session, &mut mechanism, wrapping, key)
    }

    /// `C_WrapKey` with `CKM_RSA_PKCS_OAEP`: SHA-1, MGF1-SHA-1, no label (the two-step
    /// wrap's RSA part).
    pub fn wrap_rsa_oaep_sha1(
        &self,
        session: CK_SESSION_HANDLE,
        kek: CK_OBJECT_HANDLE,
        key: CK_OBJECT_HANDLE,
    ) -> Result<Vec<u8>> {
        let mut oaep = oaep_sha1();
        self.wrap_with(session, CKM_RSA_PKCS_OAEP, &mut oaep, kek, key)
    }

    /// `C_WrapKey` with `CKM_RSA_AES_KEY_WRAP`: a 256-bit AES key made inside the token,
    /// RSA-OAEP with SHA-1 and MGF1-SHA-1 and no label, then RFC 5649.
    pub fn wrap_rsa_aes(
        &self,
        session: CK_SESSION_HANDLE,
        kek: CK_OBJECT_HANDLE,
        key: CK_OBJECT_HANDLE,
    ) -> Result<Vec<u8>> {
        let mut oaep = oaep_sha1();
        let mut params = CK_RSA_AES_KEY_WRAP_PARAMS {
            ulAESKeyBits: 256,
            pOAEPParams: &mut oaep,
        };
        // `oaep` outlives the call, which is the only use of the pointer to it.
        self.wrap_with(session, CKM_RSA_AES_KEY_WRAP, &mut params, kek, key)
    }

    /// `C_WrapKey` with `mechanism` and its parameter structure `params`.
    fn wrap_with<P>(
        &self,
        session: CK_SESSION_HANDLE,
        mechanism: CK_MECHANISM_TYPE,
        params: &mut P,
        wrapping: CK_OBJECT_HANDLE,
        key: CK_OBJECT_HANDLE,
    ) -> Result<Vec<u8>> {
        let mut mechanism = CK_MECHANISM {
            mechanism,
            pParameter: (params as *mut P).cast(),
            ulParameterLen: std::mem::size_of::<P>() as CK_ULONG,
        };
        // `params` is borrowed for the whole call, the only use of the pointer.
        self.wrap(session, &mut mechanism, wrapping, key)
    }

    /// `C_WrapKey` into a buffer of [`FIRST_WRAP_LEN`]; when the module says
    /// `CKR_BUFFER_TOO_SMALL`, tries again with a larger buffer (what it reports, or double:
    /// NSS softokn under-reports), up to [`MAX_WRAP_LEN`].
    fn wrap(
        &self,
        session: CK_SESSION_HANDLE,
        mechanism: &mut CK_MECHANISM,
        wrapping: CK_OBJECT_HANDLE,
        key: CK_OBJECT_HANDLE,
    ) -> Result<Vec<u8>> {
        let f = self
            .list
            .C_WrapKey
            .ok_or_else(|| rv_error(Function::WrapKey, CKR_FUNCTION_NOT_SUPPORTED))?;
        let mut size = FIRST_WRAP_LEN;
        loop {
            let mut out = vec![0u8; size as usize];
            let mut len = size;
            // SAFETY: `mechanism` and its parameters are valid for the call; `out` has `len`
            // bytes, the length we tell the module it may write.
            let rv = unsafe {
                f(
                    session,
                    mechanism,
                    wrapping,
                    key,
                    out.as_mut_ptr(),
                    &mut len,
                )
            };
            match rv {
                CKR_OK if len <= size => {
                    out.truncate(len as usize);
                    return Ok(out);
                }
                CKR_BUFFER_TOO_SMALL if size < MAX_WRAP_LEN => {
                    tracing::debug!(
                        asked = size,
                        reported = len,
                        "C_WrapKey: CKR_BUFFER_TOO_SMALL; retrying larger"
                    );
                    size = next_len(size, len).min(MAX_WRAP_LEN);
                }
                _ => return Err(rv_error(Function::WrapKey, rv)),
            }
        }
    }
}

/// RSA-OAEP with SHA-1, MGF1-SHA-1 and no label, as Azure's `CKM_RSA_AES_KEY_WRAP` uses.
fn oaep_sha1() -> CK_RSA_PKCS_OAEP_PARAMS {
    CK_RSA_PKCS_OAEP_PARAMS {
        hashAlg: CKM_SHA_1,
        mgf: CKG_MGF1_SHA1,
        source: CKZ_DATA_SPECIFIED,
        pSourceData: ptr::null_mut(),
        ulSourceDataLen: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_larger_buffer_after_buffer_too_small() {
        // The module names a larger length: take it.
        assert_eq!(next_len(100, 300), 300);
        // It repeats the under-reported one (or says nothing): double.
        assert_eq!(next_len(100, 100), 200);
        assert_eq!(next_len(100, 0), 200);
        assert_eq!(next_len(0, 0), 64);
    }

    #[test]
    fn a_reported_count_over_the_bound_is_refused_before_allocating() {
        let f = "C_GetMechanismList";
        assert_eq!(bounded(f, 0, MAX_MECHANISMS).unwrap(), 0);
        assert_eq!(bounded(f, 70, MAX_MECHANISMS).unwrap(), 70);
        assert_eq!(bounded(f, MAX_MECHANISMS, MAX_MECHANISMS).unwrap(), 4096);
        for reported in [MAX_MECHANISMS + 1, CK_ULONG::MAX] {
            match bounded(f, reported, MAX_MECHANISMS) {
                Err(OfflineError::ImplausibleCount {
                    function,
                    reported: r,
                    bound,
                }) => {
                    assert_eq!(function, "C_GetMechanismList");
                    assert_eq!(r, reported);
                    assert_eq!(bound, 4096);
                }
                other => panic!("{reported}: {other:?}"),
            }
        }
        let err = bounded(f, 1 << 40, MAX_MECHANISMS).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "the PKCS#11 module's C_GetMechanismList reports 1099511627776 entries, more \
                 than the 4096"
            ),
            "{err}"
        );
        assert!(err.contains("check the path given to --module"), "{err}");
    }

    #[test]
    fn init_args_refuse_an_inner_nul() {
        assert!(matches!(
            initialize_args(Some("configdir='a\0b'")),
            Err(OfflineError::InitArgsNul)
        ));
        assert!(initialize_args(None).is_ok());
        assert!(initialize_args(Some("configdir='sql:/tmp/x'")).is_ok());
    }
}
