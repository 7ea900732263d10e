//! The KEK transfer file and the PEM/DER KEK readers.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = byok_core::KekPublicKey::from_der(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(t) = byok_core::KekTransfer::parse(text) {
            assert_eq!(byok_core::KekTransfer::parse(&t.to_text()).expect("re-read"), t);
        }
        let _ = byok_core::KekPublicKey::from_pem(text);
        let _ = byok_core::TargetPublicKey::from_pem(text);
    }
});
