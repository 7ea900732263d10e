//! The air-gapped half of a BYOK ceremony: the PKCS#11 packager.
//!
//! - [`check`]: the token's conformance per key kind, proved on throwaway keys (`check`, and the
//!   gate before `package` and `batch`).
//! - [`commands`]: each command of `byok-offline`, returning the report the binary prints.
//! - [`check::edge`]: the encoding edge cases `check` imports (keys made in software, values
//!   chosen).
//! - [`batch`]: every key of a manifest, resumably, with several sessions, into the evidence log.
//! - [`token`]: loading the vendor's module, choosing the token, logging in.
//! - [`pin`]: where the PIN comes from (a variable, a file or a prompt; never an argument).
//! - [`log`]: `log verify`: the evidence log's chain, its head, and the head the minutes
//!   recorded.
//! - [`index`]: the token's objects read once for `batch`, so no key costs a search.
//! - `group` (crate-private): `batch`'s durability by group: files synced together, then their
//!   log entries.
//! - [`keys`]: listing keys, finding the target and reading its public key, generating it
//!   inside the HSM from [`keys::templates`], `check`'s throwaway keys, the AES proof's
//!   decryption.
//! - [`wrap_path`]: which wrap the token can do (native `CKM_RSA_AES_KEY_WRAP` or two-step).
//! - [`package`]: the wrap inside the HSM, the checks on the result, the `.byok` and sidecar.
//! - [`raw`]: the PKCS#11 calls cryptoki cannot make (`C_GetMechanismList`, every
//!   `C_WrapKey`) and the module's init arguments (the only `unsafe` code).
//! - `record` (crate-private): the evidence entries each command appends (token, KEK, key,
//!   verdicts).
//! - `error` (crate-private; its types are re-exported here): one error per cause, each naming
//!   its fix ([`OfflineError`], with [`PublicKeyError`] and [`MissingMechanism`] for the
//!   causes of an unreadable public key and of no wrap path), and its exit code.
//!
//! The modules linked above are used by the binary (`main.rs`, `cli.rs`, `print.rs`), the
//! integration tests or xtask's bench floor; the crate-private ones only inside this library.
//!
//! Files, the evidence log appender, progress and exit codes are `byok-cli-common`'s, shared
//! with the online half. This crate links no HTTP client and no async runtime: it runs on a
//! workstation with no network. The target key stays sensitive in the HSM; only its wrap
//! leaves.
#![deny(unsafe_code)]

pub mod batch;
pub mod check;
pub mod commands;
pub(crate) mod error;
pub(crate) mod group;
pub mod index;
pub mod keys;
pub(crate) mod limits;
pub mod log;
pub mod package;
pub mod pin;
pub(crate) mod public_file;
pub mod raw;
pub(crate) mod record;
pub mod token;
pub mod wrap_path;

pub use error::{MissingMechanism, OfflineError, PublicKeyError, Result};

/// The environment variable the PIN is read from when no other source is named. Here, not in
/// `pin`, because the errors name it too and `pin` returns those errors.
pub const DEFAULT_PIN_ENV: &str = "BYOK_PKCS11_PIN";
