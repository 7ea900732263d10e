//! The connected half of a BYOK ceremony (not yet built; see issue "byok-online").
//!
//! It will hold the Key Vault client: KEK creation (RSA-HSM, `import` only), the KEK transfer
//! file download, the `.byok` upload and the proof that the vault holds the HSM's key, over the
//! Azure SDK for Rust with `azure_identity` credentials. It never links `cryptoki`.
#![forbid(unsafe_code)]
