//! The connected half of a BYOK ceremony: the Key Vault client.
//!
//! - [`connect`]: the vault URL, the HTTPS client (extra CA roots, proxy, timeouts), the
//!   `azure_identity` credential and the SDK's `KeyClient`;
//! - [`credential`]: `--auth`, and `auto`'s chain (managed identity only when the
//!   instance-metadata endpoint answers a 1 s probe; the credential that worked is kept);
//! - [`vault`]: the vault's operations (create the KEK, read a key, import a `.byok` with
//!   `key_hsm`, sign, encrypt) and a key as this tool shows it;
//! - [`import`]: `import`, as a plan checked without the network and then uploaded;
//! - [`commands`]: `kek create`, `kek download`, `verify`, `prove-aes`, `show`, `inspect`;
//! - [`batch`]: `batch-import`, every key of a manifest, resumably, with the evidence log;
//! - [`existing`]: `--dry-run`, and what a write does when the key name already exists
//!   (`--new-version`, or a question on a terminal);
//! - [`redirect`]: no redirect followed, for the vault or the authority;
//! - [`pace`]: pacing to the vault's throttling limits, and the 429 backoff;
//! - [`error`]: what can fail, each with its fix and exit code; [`rbac`]: which role a
//!   refused action needs.
//!
//! Every report is a [`byok_cli_common::Document`]: its JSON form leads with a `schema`
//! field (`byok-online.import/1`). The command line itself (`cli`) and the human printing
//! (`print`) belong to the binary.
//! It never links `cryptoki`: the target key only reaches this side wrapped.
#![forbid(unsafe_code)]

pub mod batch;
pub mod commands;
pub mod connect;
pub mod credential;
pub mod error;
pub mod existing;
pub mod import;
pub mod pace;
pub mod rbac;
pub mod record;
pub mod redirect;
pub mod vault;

pub use error::{OnlineError, Result};
