//! The air-gapped half of a BYOK ceremony: the PKCS#11 packager.
//!
//! - [`token`]: loading the vendor's module, choosing the token, logging in.
//! - [`keys`]: listing keys, generating the target inside the HSM, reading its public key.
//! - [`wrap_path`]: which wrap the token can do (native `CKM_RSA_AES_KEY_WRAP` or two-step).
//! - [`package`]: the wrap inside the HSM, the checks on the result, the `.byok` and sidecar.
//! - [`raw`]: the two PKCS#11 calls cryptoki cannot name (the only `unsafe` code).
//!
//! This crate links no HTTP client and no async runtime: it runs on a workstation with no
//! network. The target key stays sensitive in the HSM; only its wrap leaves.
#![deny(unsafe_code)]

pub mod batch;
pub mod commands;
pub mod error;
pub mod evidence;
pub mod keys;
pub mod output;
pub mod package;
pub mod pin;
pub mod raw;
pub mod token;
pub mod wrap_path;

pub use error::{OfflineError, Result};
