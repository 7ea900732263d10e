//! The air-gapped half of a BYOK ceremony (not yet built; see issue "byok-offline").
//!
//! It will hold the PKCS#11 packager: token and PIN handling over `cryptoki`, mechanism
//! probing, target key generation inside the HSM, the wrap (native `CKM_RSA_AES_KEY_WRAP` or
//! the two-step equivalent) and the atomic writing of the `.byok` and its sidecar. It links no
//! HTTP client and no async runtime.
#![forbid(unsafe_code)]
