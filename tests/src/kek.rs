//! Software KEK pairs.

use byok_core::KekPublicKey;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// A KEK pair of `bits`, made once per size per process (RSA key generation is slow).
pub fn kek_pair(bits: usize) -> (rsa::PrivateKey, KekPublicKey) {
    static CACHE: OnceLock<Mutex<HashMap<usize, rsa::PrivateKey>>> = OnceLock::new();
    let private = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .entry(bits)
        .or_insert_with(|| rsa::PrivateKey::new(&mut getrandom::SysRng, bits).unwrap())
        .clone();
    let public = KekPublicKey::from_rsa(private.to_public_key()).unwrap();
    (private, public)
}
