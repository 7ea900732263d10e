//! The `.byok` reader (and the sidecar and AES challenge readers beside it).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(package) = byok_core::KeyTransferPackage::parse(data) {
        // Whatever parses must write back to something that parses to the same package.
        let again = byok_core::KeyTransferPackage::parse(&package.to_json_bytes()).expect("re-read");
        assert_eq!(again, package);
        let _ = byok_core::package::PackageSummary::of_file_bytes(data);
    }
    let _ = byok_core::sidecar::Sidecar::parse(data);
    let _ = byok_core::challenge::AesChallenge::parse(data);
});
