//! The connected half of a BYOK ceremony: the Key Vault client.
//!
//! - [`connect`]: the vault URL, the HTTPS client (extra CA roots, proxy, timeouts), the
//!   `azure_identity` credential and the SDK's `KeyClient`;
//! - [`vault`]: create the KEK, read keys, import a `.byok` with `key_hsm`, sign;
//! - [`commands`]: `kek create`, `kek download`, `import`, `verify`, `show`, `inspect`.
//!
//! It never links `cryptoki`: the target key only reaches this side wrapped.
#![forbid(unsafe_code)]

pub mod batch;
pub mod commands;
pub mod connect;
pub mod error;
pub mod evidence;
pub mod signature;
pub mod vault;

pub use error::{OnlineError, Result};
