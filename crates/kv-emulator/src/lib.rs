//! A Key Vault data-plane emulator over real HTTPS (not yet built; see issue "kv-emulator").
//!
//! It will serve the keys subset of the REST API with token auth and unwrap `.byok` packages
//! with the KEK private keys it holds, so the whole ceremony can run on one machine.
#![forbid(unsafe_code)]
