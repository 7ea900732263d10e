//! The format and the cryptography of Azure Key Vault's bring-your-own-key (BYOK) transfer.
//!
//! This crate holds everything both halves of a key ceremony must agree on, as pure functions
//! (bytes in, bytes out; no file, network or PKCS#11 I/O):
//!
//! - [`kid`]: Key Vault key identifiers (`https://{vault}/keys/{name}/{version}`).
//! - [`kek`]: the Key Exchange Key's public half, RSA 2048/3072/4096 only, and its fingerprint.
//! - [`transfer`]: the KEK transfer file that carries the KEK across the air gap.
//! - [`package`]: the Key Transfer Package (`.byok`) Azure imports, read strictly.
//! - [`sidecar`]: what the offline half tells the online half about a package.
//! - [`wrap`]: `CKM_RSA_AES_KEY_WRAP` in software: RSA-OAEP (SHA-1) of a one-time AES-256 key,
//!   then RFC 5649 AES key wrap with padding of the target key.
//! - [`challenge`]: the AES proof challenge (vault encrypts, HSM decrypts);
//!   [`signature`]: the vault's signature checked with the HSM's public key.
//! - [`ops`]: Key Vault key operations and their rules; [`manifest`]: a batch's keys;
//!   [`limits`]: the service's published request limits (the emulator enforces them, the
//!   online half paces to them);
//!   [`evidence`]: the hash-chained ceremony record and its event names.
//! - [`conformance`]: an unwrapped plaintext read strictly, as Azure parses it, each defect
//!   named.
//! - [`target`]: the target key's encodings (PKCS#8 for RSA and EC, raw bytes for AES) and
//!   public keys; [`jwk`]: a vault's public JWK to and from SPKI, so the two can be compared.
//!
//! # Security properties
//! - Secret bytes (the one-time AES key, unwrapped plaintexts, private keys) live in
//!   [`zeroize::Zeroizing`] buffers or types that zeroize on drop.
//! - Error messages never carry secret bytes; they name the problem and the fix.
//! - OAEP uses SHA-1 for both the hash and MGF1, with an empty label, because that is what
//!   Azure's HSMs unwrap; OAEP-SHA-256 blobs are refused by the service.
#![forbid(unsafe_code)]

pub mod b64;
pub mod challenge;
pub mod conformance;
pub mod evidence;
pub mod fingerprint;
pub mod jwk;
pub mod kek;
pub mod kid;
pub mod limits;
pub mod manifest;
mod oid;
pub mod ops;
pub mod package;
mod pem;
pub mod sidecar;
pub mod signature;
pub mod target;
pub mod transfer;
pub mod wrap;

pub use fingerprint::Fingerprint;
pub use kek::KekPublicKey;
pub use kid::{KeyId, VaultUrl};
pub use ops::KeyOp;
pub use package::KeyTransferPackage;
pub use target::{Curve, KeyKind, TargetKey, TargetPublicKey};
pub use transfer::KekTransfer;

/// This crate's name and version, as written into the `generator` field of a `.byok`.
pub const TOOL_NAME_VERSION: &str = concat!("byok-toolkit ", env!("CARGO_PKG_VERSION"));
