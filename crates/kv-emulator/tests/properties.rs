//! The emulator's request decoding takes any body without panicking (the fuzz target
//! `emulator_request` drives the same entry point for longer).

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_bytes(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
        kv_emulator::routes::decode_any_request(&data);
    }

    #[test]
    fn json_shaped_bodies(kty in "(RSA|RSA-HSM|EC|EC-HSM|oct-HSM|x)", size in any::<i64>(), hsm in "[A-Za-z0-9_=+/-]{0,200}", ops in proptest::collection::vec("(sign|verify|import|x)", 0..4)) {
        let body = serde_json::json!({"kty": kty, "key_size": size, "key_ops": ops, "key": {"kty": kty, "key_hsm": hsm}});
        kv_emulator::routes::decode_any_request(body.to_string().as_bytes());
    }
}
