//! The emulator reads an unwrapped `key_hsm` as strictly as `byok-offline check` does: a
//! short P-521 scalar and trailing bytes are refused, each naming the defect; the SoftHSM
//! rehearsal flag lets through 1 to 7 trailing zeros after an RSA or EC key and nothing else;
//! an AES key needs no flag. A refused import leaves no key.

mod common;

use aes_kw::KeyInit;
use byok_core::target::{Curve, KeyKind};
use byok_core::{TargetKey, b64};
use common::{Emu, byok, code, import_body, import_body_crv, message};
use der::{Decode, Encode};
use kv_emulator::Flavor;
use reqwest::Method;
use serde_json::{Value, json};

/// A P-521 key whose scalar's top byte is zero, written in 65 bytes as kryoptic 1.5.4 does
/// (RFC 5915 requires 66).
fn short_p521() -> Vec<u8> {
    loop {
        let key = TargetKey::generate(KeyKind::Ec { curve: Curve::P521 }).unwrap();
        let info = pkcs8::PrivateKeyInfoRef::from_der(key.plaintext()).unwrap();
        let ec = sec1::EcPrivateKey::from_der(info.private_key.as_bytes()).unwrap();
        if ec.private_key[0] != 0 {
            continue;
        }
        let short = sec1::EcPrivateKey {
            private_key: &ec.private_key[1..],
            parameters: ec.parameters,
            public_key: ec.public_key,
        }
        .to_der()
        .unwrap();
        let info = pkcs8::PrivateKeyInfoRef {
            algorithm: info.algorithm,
            private_key: der::asn1::OctetStringRef::new(&short).unwrap(),
            public_key: None,
        };
        return info.to_der().unwrap();
    }
}

/// An emulator of `flavor`, with or without `--accept-zero-padded-kwp`, and a KEK in it.
async fn emulator(flavor: Flavor, accept_zero_padded: bool) -> (Emu, Value) {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emu::start_with(dir, |c| {
        c.flavor = flavor;
        c.accept_zero_padded_kwp = accept_zero_padded;
    })
    .await;
    let kek = emu.kek("KEK", 2048).await;
    (emu, kek)
}

/// `plaintext` followed by `tail`.
fn with_tail(plaintext: &[u8], tail: &[u8]) -> Vec<u8> {
    [plaintext, tail].concat()
}

/// Imports `body` as `name` and expects a BadParameter naming `needle`, and no key after it.
async fn refused(emu: &Emu, name: &str, body: Value, needle: &str) -> String {
    let (s, b) = emu
        .call(Method::PUT, &format!("/keys/{name}"), Some(body))
        .await;
    assert_eq!((s, code(&b)), (400, "BadParameter"), "{needle}: {b}");
    let text = message(&b).to_string();
    assert!(text.contains(needle), "{needle}: {text}");
    let (s, b) = emu.call(Method::GET, &format!("/keys/{name}"), None).await;
    assert_eq!(
        (s, code(&b)),
        (404, "KeyNotFound"),
        "a refused import left {name}"
    );
    text
}

/// Imports `body` as `name` and expects the key to be there.
async fn accepted(emu: &Emu, name: &str, body: Value) -> Value {
    let (s, b) = emu
        .call(Method::PUT, &format!("/keys/{name}"), Some(body))
        .await;
    assert_eq!(s, 200, "{name}: {b}");
    let (s, got) = emu.call(Method::GET, &format!("/keys/{name}"), None).await;
    assert_eq!(s, 200, "{name}: {got}");
    assert_eq!(got["key"]["kid"], b["key"]["kid"]);
    b
}

#[tokio::test]
async fn a_65_byte_p521_scalar_is_refused_even_with_the_rehearsal_flag() {
    let short = short_p521();
    for flag in [false, true] {
        let (emu, kek) = emulator(Flavor::Vault, flag).await;
        let body = import_body("EC-HSM", &byok(&kek, &short));
        let text = refused(&emu, "short", body, "65-byte P-521 scalar").await;
        assert!(
            text.starts_with(
                "The unwrapped key is not what Key Vault parses: 65-byte P-521 scalar; RFC \
                 5915 requires 66 bytes"
            ),
            "flag {flag}: {text}"
        );
        // The same key at its full length is imported.
        let full = TargetKey::generate(KeyKind::Ec { curve: Curve::P521 }).unwrap();
        let body = import_body_crv("EC-HSM", Some("P-521"), &byok(&kek, full.plaintext()));
        let bundle = accepted(&emu, "full", body).await;
        assert_eq!(bundle["key"]["crv"], "P-521");
    }
}

#[tokio::test]
async fn trailing_zeros_are_named_and_accepted_only_with_the_rehearsal_flag() {
    let targets = [
        (
            "RSA-HSM",
            TargetKey::generate(KeyKind::Rsa { bits: 2048 }).unwrap(),
        ),
        (
            "EC-HSM",
            TargetKey::generate(KeyKind::Ec { curve: Curve::P256 }).unwrap(),
        ),
    ];
    let (strict, strict_kek) = emulator(Flavor::Vault, false).await;
    let (lenient, lenient_kek) = emulator(Flavor::Vault, true).await;
    for (kty, target) in &targets {
        let padded = with_tail(target.plaintext(), &[0; 5]);
        let body = import_body(kty, &byok(&strict_kek, &padded));
        let text = refused(&strict, "padded", body, "5 trailing zero bytes").await;
        assert!(text.contains("CKM_AES_KEY_WRAP_KWP"), "{kty}: {text}");
        assert!(!text.contains("declared kty"), "{kty}: {text}");

        let name = format!("padded-{}", &kty[..2]).to_lowercase();
        let body = import_body(kty, &byok(&lenient_kek, &padded));
        let bundle = accepted(&lenient, &name, body).await;
        assert_eq!(bundle["key"]["kty"], *kty);
        let jwk: byok_core::jwk::PublicJwk = serde_json::from_value(bundle["key"].clone()).unwrap();
        assert_eq!(&jwk.to_public_key().unwrap(), target.public_key().unwrap());
    }
}

#[tokio::test]
async fn other_trailing_bytes_are_refused_even_with_the_rehearsal_flag() {
    let (emu, kek) = emulator(Flavor::Vault, true).await;
    let ec = TargetKey::generate(KeyKind::Ec { curve: Curve::P384 }).unwrap();
    let rsa = TargetKey::generate(KeyKind::Rsa { bits: 2048 }).unwrap();
    let cases = [
        (
            "EC-HSM",
            with_tail(ec.plaintext(), &[0x42]),
            "1 trailing byte after",
        ),
        (
            "RSA-HSM",
            with_tail(rsa.plaintext(), &[0, 0, 7]),
            "3 trailing bytes after",
        ),
        // More zeros than an 8-byte padding leaves.
        (
            "EC-HSM",
            with_tail(ec.plaintext(), &[0; 8]),
            "8 trailing zero bytes",
        ),
    ];
    for (kty, plaintext, needle) in cases {
        let body = import_body(kty, &byok(&kek, &plaintext));
        refused(&emu, "junk", body, needle).await;
    }
}

#[tokio::test]
async fn an_aes_package_needs_no_flag_and_aes_padding_is_never_trimmed() {
    let (emu, kek) = emulator(Flavor::ManagedHsm, false).await;
    let aes = TargetKey::generate(KeyKind::Oct { bits: 256 }).unwrap();
    assert_eq!(aes.plaintext().len(), 32);
    let body = import_body("oct-HSM", &byok(&kek, aes.plaintext()));
    let bundle = accepted(&emu, "aes", body).await;
    assert_eq!(bundle["key"]["kty"], "oct-HSM");
    // The imported key is the package's: it unwraps what the same key wrapped here.
    let mut wrapped = [0u8; 40];
    aes_kw::KwAes256::new_from_slice(aes.plaintext())
        .unwrap()
        .wrap_key(&[5u8; 32], &mut wrapped)
        .unwrap();
    let (s, u) = emu
        .call(
            Method::POST,
            "/keys/aes//unwrapkey",
            Some(json!({"alg": "A256KW", "value": b64::encode(&wrapped)})),
        )
        .await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(
        b64::decode("v", u["value"].as_str().unwrap()).unwrap(),
        [5u8; 32]
    );

    // An AES key has no length inside it: with the flag, zeros after it are still refused.
    let (lenient, lenient_kek) = emulator(Flavor::ManagedHsm, true).await;
    let padded = with_tail(aes.plaintext(), &[0; 3]);
    let body = import_body("oct-HSM", &byok(&lenient_kek, &padded));
    refused(&lenient, "aes", body, "3 trailing zero bytes").await;
}
