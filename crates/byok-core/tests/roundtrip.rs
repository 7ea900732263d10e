//! Every importable key kind wrapped under every KEK size, unwrapped, and read back.

mod common;

use byok_core::package::Generator;
use byok_core::target::{KeyKind, Kty};
use byok_core::wrap::{self, WrapError};
use byok_core::{KeyId, KeyTransferPackage, TargetKey};
use common::kek_pair;

const KID: &str =
    "https://contoso.vault.azure.net/keys/KEKforBYOK/0123456789abcdef0123456789abcdef";

#[test]
fn every_kind_under_every_kek_size() {
    let targets: Vec<TargetKey> = KeyKind::IMPORTABLE
        .iter()
        .map(|k| TargetKey::generate(*k).unwrap())
        .collect();
    for bits in [2048, 3072, 4096] {
        let (private, public) = kek_pair(bits);
        for target in &targets {
            let ciphertext = wrap::wrap(target.plaintext(), &public).unwrap();
            // RSA-OAEP part is the modulus length; the rest is AES-KWP of the plaintext.
            let kwp_len = target.plaintext().len().div_ceil(8) * 8 + 8;
            assert_eq!(
                ciphertext.len(),
                bits / 8 + kwp_len,
                "{} under {bits}",
                target.kind()
            );

            let package = KeyTransferPackage::new(
                KeyId::parse(KID).unwrap(),
                ciphertext,
                &Generator::this_tool("SoftHSM project", "SoftHSM v2", "2.6"),
            )
            .unwrap();
            let bytes = package.to_json_bytes();
            let read = KeyTransferPackage::parse(&bytes).unwrap();
            assert_eq!(read, package);
            read.check_against_kek(&public).unwrap();

            let plaintext = wrap::unwrap(read.ciphertext(), &private).unwrap();
            let back = TargetKey::from_plaintext(target.kind().kty(), &plaintext).unwrap();
            assert_eq!(back.kind(), target.kind());
            assert_eq!(back.plaintext(), target.plaintext());
            assert_eq!(
                back.public_key().map(|k| k.fingerprint()),
                target.public_key().map(|k| k.fingerprint())
            );
        }
    }
}

#[test]
fn generated_kinds_match_their_request() {
    for kind in KeyKind::IMPORTABLE {
        let key = TargetKey::generate(kind).unwrap();
        assert_eq!(key.kind(), kind);
        match kind {
            KeyKind::Oct { bits } => {
                assert_eq!(key.plaintext().len() * 8, bits as usize);
                assert!(key.public_key().is_none());
            }
            _ => assert_eq!(key.public_key().unwrap().kind(), kind),
        }
    }
    assert!(TargetKey::generate(KeyKind::Rsa { bits: 1024 }).is_err());
    assert!(TargetKey::generate(KeyKind::Oct { bits: 64 }).is_err());
}

#[test]
fn each_tamper_is_refused_with_its_own_error() {
    let (private, public) = kek_pair(2048);
    let target = TargetKey::generate(KeyKind::Ec {
        curve: byok_core::Curve::P256,
    })
    .unwrap();
    let good = wrap::wrap(target.plaintext(), &public).unwrap();

    // A flipped byte in the RSA part: OAEP fails.
    let mut bad = good.clone();
    bad[10] ^= 1;
    assert_eq!(
        wrap::unwrap(&bad, &private).unwrap_err(),
        WrapError::OaepDecrypt
    );

    // A flipped byte in the AES-KWP part: the RFC 5649 integrity check fails.
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x80;
    assert_eq!(
        wrap::unwrap(&bad, &private).unwrap_err(),
        WrapError::Integrity
    );

    // Truncated by one block: the lengths still split, but the integrity check fails.
    assert_eq!(
        wrap::unwrap(&good[..good.len() - 8], &private).unwrap_err(),
        WrapError::Integrity
    );
    // Truncated to an odd length or into the RSA part: a length error.
    assert!(matches!(
        wrap::unwrap(&good[..good.len() - 3], &private).unwrap_err(),
        WrapError::BadLength { .. }
    ));
    assert!(matches!(
        wrap::unwrap(&good[..200], &private).unwrap_err(),
        WrapError::BadLength { .. }
    ));

    // The right format under another KEK of the same size.
    let (other_private, _) = kek_pair(4096);
    assert!(matches!(
        wrap::unwrap(&good, &other_private).unwrap_err(),
        WrapError::BadLength { .. }
    ));
    let other = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
    assert_eq!(
        wrap::unwrap(&good, &other).unwrap_err(),
        WrapError::OaepDecrypt
    );

    // A plaintext declared as the wrong type.
    let plaintext = wrap::unwrap(&good, &private).unwrap();
    assert!(TargetKey::from_plaintext(Kty::Rsa, &plaintext).is_err());
    assert!(TargetKey::from_plaintext(Kty::Oct, &plaintext).is_err());
}

#[test]
fn oaep_sha256_blob_is_refused() {
    // The mistake some tools make: OAEP with SHA-256. Azure cannot unwrap it, and neither
    // may we.
    use rsa::Oaep;
    let (private, public) = kek_pair(2048);
    let aes_key = [7u8; 32];
    let mut blob = public
        .rsa()
        .encrypt(
            &mut getrandom::SysRng,
            Oaep::<sha2::Sha256>::new(),
            &aes_key,
        )
        .unwrap();
    blob.extend(wrap::kwp_wrap(&aes_key, &[1u8; 32]).unwrap());
    assert_eq!(
        wrap::unwrap(&blob, &private).unwrap_err(),
        WrapError::OaepDecrypt
    );
}

#[test]
fn oversized_plaintext_is_refused() {
    let (_, public) = kek_pair(2048);
    let err = wrap::wrap(&vec![0u8; wrap::MAX_PLAINTEXT + 1], &public).unwrap_err();
    assert!(matches!(err, WrapError::PlaintextLength { .. }));
    assert!(matches!(
        wrap::wrap(&[], &public).unwrap_err(),
        WrapError::PlaintextLength { len: 0 }
    ));
}

#[test]
fn wrap_refuses_what_unwrap_would_refuse() {
    let (private, public) = kek_pair(2048);
    let short = vec![7u8; wrap::MIN_PLAINTEXT - 1];
    assert!(matches!(
        wrap::wrap(&short, &public).unwrap_err(),
        WrapError::PlaintextLength { len } if len == short.len()
    ));
    let shortest = vec![7u8; wrap::MIN_PLAINTEXT];
    let ct = wrap::wrap(&shortest, &public).unwrap();
    assert_eq!(&*wrap::unwrap(&ct, &private).unwrap(), &shortest[..]);
}
