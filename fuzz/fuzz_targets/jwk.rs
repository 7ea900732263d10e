//! The JWK reader: a vault's public key to SPKI.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(jwk) = serde_json::from_slice::<byok_core::jwk::PublicJwk>(data)
        && let Ok(key) = jwk.to_public_key()
    {
        let back = byok_core::jwk::PublicJwk::from_public_key(&key);
        assert_eq!(back.to_public_key().expect("re-read"), key);
    }
});
