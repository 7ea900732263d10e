//! The key id and vault URL parsers.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(kid) = byok_core::KeyId::parse(text) {
            assert_eq!(byok_core::KeyId::parse(&kid.to_string()).expect("re-read"), kid);
        }
        let _ = byok_core::VaultUrl::parse(text);
    }
});
