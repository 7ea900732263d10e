//! The two PKCS#11 calls cryptoki 0.12 cannot make for us.
//!
//! cryptoki's `MechanismType` cannot name `CKM_RSA_AES_KEY_WRAP` (0x1054) or
//! `CKM_AES_KEY_WRAP_KWP` (0x210B), and its `get_mechanism_list` silently drops mechanisms it
//! cannot name. So this module reaches the same module's function list directly and calls
//! `C_GetMechanismList` and `C_WrapKey` with parameters built here. Everything else goes
//! through cryptoki.
#![allow(unsafe_code)]

use crate::error::{OfflineError, Result};
use cryptoki_sys::{
    CK_FUNCTION_LIST, CK_MECHANISM, CK_MECHANISM_TYPE, CK_OBJECT_HANDLE,
    CK_RSA_AES_KEY_WRAP_PARAMS, CK_RSA_PKCS_OAEP_PARAMS, CK_RV, CK_SESSION_HANDLE, CK_SLOT_ID,
    CK_ULONG, CKG_MGF1_SHA1, CKM_SHA_1, CKR_OK, CKZ_DATA_SPECIFIED,
};
use std::path::Path;
use std::ptr;

pub use cryptoki_sys::{CKM_AES_KEY_WRAP_KWP, CKM_AES_KEY_WRAP_PAD, CKM_RSA_AES_KEY_WRAP};

/// The module's function table, kept valid by holding the library open.
pub struct RawModule {
    // Dropped after `list`'s pointers are last used, since `self` owns both.
    _library: libloading::Library,
    list: CK_FUNCTION_LIST,
}

fn rv_error(function: &str, rv: CK_RV) -> OfflineError {
    OfflineError::Pkcs11 {
        function: function.into(),
        rv: format!("CKR 0x{rv:x}"),
        hint: "",
    }
}

impl RawModule {
    /// Opens the module cryptoki has already loaded and initialised in this process.
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
            return Err(rv_error("C_GetFunctionList", rv));
        }
        // SAFETY: the module returned a non-null pointer to its function table, which stays
        // valid while the library is loaded; we copy the table (plain function pointers).
        let list = unsafe { *list_ptr };
        Ok(Self {
            _library: library,
            list,
        })
    }

    /// Every mechanism the slot offers, including those cryptoki cannot name.
    pub fn mechanism_list(&self, slot: CK_SLOT_ID) -> Result<Vec<CK_MECHANISM_TYPE>> {
        let f = self
            .list
            .C_GetMechanismList
            .ok_or_else(|| rv_error("C_GetMechanismList (missing)", 0))?;
        let mut count: CK_ULONG = 0;
        // SAFETY: a null list pointer asks for the count only (PKCS#11 5.5).
        let rv = unsafe { f(slot, ptr::null_mut(), &mut count) };
        if rv != CKR_OK {
            return Err(rv_error("C_GetMechanismList", rv));
        }
        let mut list = vec![0 as CK_MECHANISM_TYPE; count as usize];
        // SAFETY: `list` has room for `count` entries, as the module asked.
        let rv = unsafe { f(slot, list.as_mut_ptr(), &mut count) };
        if rv != CKR_OK {
            return Err(rv_error("C_GetMechanismList", rv));
        }
        list.truncate(count as usize);
        Ok(list)
    }

    /// `C_WrapKey` with `CKM_AES_KEY_WRAP_KWP` (no parameters).
    pub fn wrap_kwp(
        &self,
        session: CK_SESSION_HANDLE,
        wrapping: CK_OBJECT_HANDLE,
        key: CK_OBJECT_HANDLE,
    ) -> Result<Vec<u8>> {
        let mut mechanism = CK_MECHANISM {
            mechanism: CKM_AES_KEY_WRAP_KWP,
            pParameter: ptr::null_mut(),
            ulParameterLen: 0,
        };
        self.wrap(session, &mut mechanism, wrapping, key)
    }

    /// `C_WrapKey` with `CKM_RSA_AES_KEY_WRAP`: a 256-bit AES key made inside the token,
    /// RSA-OAEP with SHA-1 and MGF1-SHA-1 and no label, then RFC 5649.
    pub fn wrap_rsa_aes(
        &self,
        session: CK_SESSION_HANDLE,
        kek: CK_OBJECT_HANDLE,
        key: CK_OBJECT_HANDLE,
    ) -> Result<Vec<u8>> {
        let mut oaep = CK_RSA_PKCS_OAEP_PARAMS {
            hashAlg: CKM_SHA_1,
            mgf: CKG_MGF1_SHA1,
            source: CKZ_DATA_SPECIFIED,
            pSourceData: ptr::null_mut(),
            ulSourceDataLen: 0,
        };
        let mut params = CK_RSA_AES_KEY_WRAP_PARAMS {
            ulAESKeyBits: 256,
            pOAEPParams: &mut oaep,
        };
        let mut mechanism = CK_MECHANISM {
            mechanism: CKM_RSA_AES_KEY_WRAP,
            pParameter: (&mut params as *mut CK_RSA_AES_KEY_WRAP_PARAMS).cast(),
            ulParameterLen: std::mem::size_of::<CK_RSA_AES_KEY_WRAP_PARAMS>() as CK_ULONG,
        };
        // `oaep` and `params` outlive the call below, which is the only use of the pointers.
        self.wrap(session, &mut mechanism, kek, key)
    }

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
            .ok_or_else(|| rv_error("C_WrapKey (missing)", 0))?;
        let mut len: CK_ULONG = 0;
        // SAFETY: `mechanism` and its parameters are valid for the call; a null output
        // pointer asks for the length only (PKCS#11 5.18).
        let rv = unsafe { f(session, mechanism, wrapping, key, ptr::null_mut(), &mut len) };
        if rv != CKR_OK {
            return Err(rv_error("C_WrapKey", rv));
        }
        let mut out = vec![0u8; len as usize];
        // SAFETY: `out` has the `len` bytes the module asked for.
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
        if rv != CKR_OK {
            return Err(rv_error("C_WrapKey", rv));
        }
        out.truncate(len as usize);
        Ok(out)
    }
}
