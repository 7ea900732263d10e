//! The emulator's request decoding: every JSON body it reads, and the key_hsm path.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kv_emulator::routes::decode_any_request(data);
});
