//! The file formats read strictly: `.byok`, KEK transfer file, sidecar, KEK public keys, JWKs.

mod common;

use byok_core::b64::B64Error;
use byok_core::jwk::{JwkError, PublicJwk};
use byok_core::kek::KekError;
use byok_core::kid::KidError;
use byok_core::package::{Generator, PackageError};
use byok_core::sidecar::{Sidecar, SidecarError, Source};
use byok_core::target::{Curve, KeyKind};
use byok_core::transfer::TransferError;
use byok_core::{Fingerprint, KekPublicKey, KekTransfer, KeyId, KeyTransferPackage, TargetKey};
use common::kek_pair;
use serde_json::{Value, json};

const KID: &str =
    "https://contoso.vault.azure.net/keys/KEKforBYOK/0123456789abcdef0123456789abcdef";

fn good_package_json() -> Value {
    let (_, kek) = kek_pair(2048);
    let target = TargetKey::generate(KeyKind::Ec { curve: Curve::P256 }).unwrap();
    let ct = byok_core::wrap::wrap(target.plaintext(), &kek).unwrap();
    let pkg = KeyTransferPackage::new(
        KeyId::parse(KID).unwrap(),
        ct,
        &Generator::this_tool("SoftHSM project", "SoftHSM v2", "2.6"),
    )
    .unwrap();
    serde_json::from_slice(&pkg.to_json_bytes()).unwrap()
}

fn parse(v: &Value) -> Result<KeyTransferPackage, PackageError> {
    KeyTransferPackage::parse(&serde_json::to_vec(v).unwrap())
}

#[test]
fn package_has_exactly_azures_shape() {
    let v = good_package_json();
    let obj = v.as_object().unwrap();
    let keys: Vec<_> = obj.keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 4);
    for k in ["schema_version", "header", "ciphertext", "generator"] {
        assert!(obj.contains_key(k), "{k}");
    }
    assert_eq!(v["schema_version"], "1.0.0");
    assert_eq!(
        v["header"],
        json!({"kid": KID, "alg": "dir", "enc": "CKM_RSA_AES_KEY_WRAP"})
    );
    let ct = v["ciphertext"].as_str().unwrap();
    assert!(!ct.contains(['=', '+', '/']));
    let generator = v["generator"].as_str().unwrap();
    assert!(generator.starts_with("byok-toolkit "), "{generator}");
    assert!(
        generator.contains("SoftHSM project SoftHSM v2, firmware 2.6"),
        "{generator}"
    );
    parse(&v).unwrap();
}

#[test]
fn package_faults_each_get_their_error() {
    let good = good_package_json();
    let with = |path: &[&str], value: Value| {
        let mut v = good.clone();
        let mut slot = &mut v;
        for p in &path[..path.len() - 1] {
            slot = &mut slot[*p];
        }
        slot[path[path.len() - 1]] = value;
        parse(&v)
    };
    assert!(matches!(
        with(&["schema_version"], json!("1.0.1")),
        Err(PackageError::SchemaVersion { .. })
    ));
    assert!(matches!(
        with(&["header", "alg"], json!("RSA-OAEP")),
        Err(PackageError::Alg { .. })
    ));
    let err = with(&["header", "enc"], json!("CKM_RSA_AES_KEY_WRAP_PAD")).unwrap_err();
    assert!(matches!(err, PackageError::Enc { .. }));
    assert!(err.to_string().contains("without any suffix"), "{err}");
    assert!(matches!(
        with(
            &["header", "kid"],
            json!("https://contoso.vault.azure.net/keys/KEKforBYOK")
        ),
        Err(PackageError::Kid(KidError::MissingVersion { .. }))
    ));
    assert!(matches!(
        with(
            &["header", "kid"],
            json!("https://evil.example.com/keys/k/0123456789abcdef0123456789abcdef")
        ),
        Err(PackageError::Kid(KidError::UnknownHost { .. }))
    ));
    let ct = good["ciphertext"].as_str().unwrap().to_string();
    let std_b64 = ct.replace('-', "+").replace('_', "/");
    if std_b64 != ct {
        assert!(matches!(
            with(&["ciphertext"], json!(std_b64)),
            Err(PackageError::Ciphertext(B64Error::NotUrlSafe { .. }))
        ));
    }
    // 2048-bit KEK + EC P-256 PKCS#8 is not a multiple of 3 bytes; either way, add padding.
    assert!(matches!(
        with(&["ciphertext"], json!(format!("{ct}=="))),
        Err(PackageError::Ciphertext(B64Error::Padded { .. }))
    ));
    // Truncated by 8 bytes (a semiblock) still fits 2048; by 6 it fits nothing.
    let bytes = byok_core::b64::decode("x", &ct).unwrap();
    let short = byok_core::b64::encode(&bytes[..bytes.len() - 6]);
    assert!(matches!(
        with(&["ciphertext"], json!(short)),
        Err(PackageError::NoKekSizeFits { .. })
    ));
    // Unknown members and missing members.
    assert!(matches!(
        with(&["extra"], json!(1)),
        Err(PackageError::Json { .. })
    ));
    assert!(matches!(
        with(&["header", "zip"], json!("DEF")),
        Err(PackageError::Json { .. })
    ));
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("generator");
    assert!(matches!(parse(&missing), Err(PackageError::Json { .. })));
    // Not JSON at all, and oversized input.
    assert!(matches!(
        KeyTransferPackage::parse(b"eyJhbGciOiJkaXIifQ.."),
        Err(PackageError::Json { .. })
    ));
    let huge = vec![b' '; 70 * 1024];
    assert!(matches!(
        KeyTransferPackage::parse(&huge),
        Err(PackageError::TooLarge { .. })
    ));
}

#[test]
fn package_length_is_checked_against_the_kek() {
    let v = good_package_json();
    let pkg = parse(&v).unwrap();
    pkg.check_against_kek(&kek_pair(2048).1).unwrap();
    assert!(matches!(
        pkg.check_against_kek(&kek_pair(4096).1),
        Err(PackageError::Length(_))
    ));
}

/// A KEK Key Vault could not have made is refused, naming the fix: an exponent other than
/// 65537 (3 makes an unpadded wrap of a short value readable), or a modulus with a small prime
/// factor (the factored modulus lets anyone unwrap the package).
#[test]
fn weak_kek_keys_are_refused() {
    let (_, kek) = kek_pair(2048);
    let e3 = KekPublicKey::from_components(&kek.n_bytes(), &[3]).unwrap_err();
    assert_eq!(
        e3,
        KekError::WeakExponent {
            exponent: "3".into()
        }
    );
    assert!(e3.to_string().contains("Download the KEK again"), "{e3}");
    // Odd, above 65537, still not Key Vault's.
    assert!(matches!(
        KekPublicKey::from_components(&kek.n_bytes(), &[0x01, 0x00, 0x03]),
        Err(KekError::WeakExponent { .. })
    ));
    // 2^2048 - 1: 2048 bits, odd, and divisible by 3 (no valid RSA key, built as bytes).
    let by3 = KekPublicKey::from_components(&[0xff; 256], &[1, 0, 1]).unwrap_err();
    assert_eq!(by3, KekError::SmallFactor { prime: 3 });
    assert!(by3.to_string().contains("Download the KEK again"), "{by3}");
    // The PEM and DER readers reach the same rule.
    let e3_pem = rsa::pkcs8::EncodePublicKey::to_public_key_pem(
        &rsa::PublicKey::new(
            rsa::BoxedUint::from_be_slice(&kek.n_bytes(), 2048).unwrap(),
            rsa::BoxedUint::from(3u64),
        )
        .unwrap(),
        rsa::pkcs8::LineEnding::LF,
    )
    .unwrap();
    assert!(matches!(
        KekPublicKey::from_pem(&e3_pem),
        Err(KekError::WeakExponent { .. })
    ));
    // Key Vault's own keys pass.
    assert_eq!(
        KekPublicKey::from_components(&kek.n_bytes(), &[0, 1, 0, 1]).unwrap(),
        kek
    );
}

#[test]
fn kek_public_key_inputs() {
    let (_, kek) = kek_pair(3072);
    assert_eq!(kek.bits(), 3072);
    assert_eq!(kek.modulus_len(), 384);
    assert_eq!(KekPublicKey::from_pem(&kek.to_pem()).unwrap(), kek);
    assert_eq!(KekPublicKey::from_der(kek.spki_der()).unwrap(), kek);
    // JWK components with a leading zero byte on n, as Key Vault may send them.
    let mut n = vec![0u8];
    n.extend(kek.n_bytes());
    assert_eq!(
        KekPublicKey::from_components(&n, &kek.e_bytes()).unwrap(),
        kek
    );

    // 1024 bits: named, with the allowed sizes.
    let small = rsa::PrivateKey::new(&mut getrandom::SysRng, 1024).unwrap();
    let err = KekPublicKey::from_rsa(small.to_public_key()).unwrap_err();
    assert_eq!(err, KekError::WrongSize { bits: 1024 });
    assert!(err.to_string().contains("2048, 3072 or 4096"));
    let small_pem = rsa::pkcs8::EncodePublicKey::to_public_key_pem(
        &small.to_public_key(),
        rsa::pkcs8::LineEnding::LF,
    )
    .unwrap();
    assert_eq!(
        KekPublicKey::from_pem(&small_pem).unwrap_err(),
        KekError::WrongSize { bits: 1024 }
    );

    // An EC key is named as such.
    let ec = TargetKey::generate(KeyKind::Ec { curve: Curve::P256 }).unwrap();
    let err = KekPublicKey::from_pem(&ec.public_key().unwrap().to_pem()).unwrap_err();
    assert!(
        matches!(&err, KekError::NotRsa { algorithm } if algorithm.starts_with("EC")),
        "{err}"
    );

    // Wrong PEM labels and garbage.
    let as_cert = kek.to_pem().replace("PUBLIC KEY", "CERTIFICATE");
    assert!(matches!(
        KekPublicKey::from_pem(&as_cert),
        Err(KekError::PemLabel { .. })
    ));
    assert!(matches!(
        KekPublicKey::from_pem("hello"),
        Err(KekError::Pem { .. })
    ));
    assert!(matches!(
        KekPublicKey::from_der(b"\x30\x03\x02\x01\x01"),
        Err(KekError::Der { .. })
    ));
    assert!(matches!(
        KekPublicKey::from_pem(&"A".repeat(20_000)),
        Err(KekError::TooLarge { .. })
    ));
}

#[test]
fn transfer_file_round_trip_and_tampering() {
    let (_, kek) = kek_pair(4096);
    let transfer = KekTransfer::new(KeyId::parse(KID).unwrap(), kek.clone()).unwrap();
    let text = transfer.to_text();
    assert!(text.starts_with("BYOK KEK transfer file v1\nkid: https://contoso"));
    assert_eq!(KekTransfer::parse(&text).unwrap(), transfer);
    // The PEM block inside is a plain PUBLIC KEY that a PEM reader takes as is.
    assert_eq!(KekPublicKey::from_pem(&text).unwrap(), kek);

    let (_, other) = kek_pair(2048);
    type Check = fn(&TransferError) -> bool;
    let cases: Vec<(String, Check)> = vec![
        (text.replace("BYOK KEK transfer file v1", "hello"), |e| {
            matches!(e, TransferError::NotTransferFile)
        }),
        (text.replace("key-size: 4096", "key-size: 2048"), |e| {
            matches!(e, TransferError::SizeMismatch { .. })
        }),
        (
            text.replace(
                &kek.fingerprint().to_hex(),
                &Fingerprint::of_bytes(b"x").to_hex(),
            ),
            |e| matches!(e, TransferError::FingerprintMismatch { .. }),
        ),
        (text.replace("/0123456789abcdef0123456789abcdef", ""), |e| {
            matches!(e, TransferError::Kid(KidError::MissingVersion { .. }))
        }),
        (text.replace("kid:", "key:"), |e| {
            matches!(e, TransferError::BadLine { .. })
        }),
        (text.replace("sha256:", "# sha256:"), |e| {
            matches!(e, TransferError::Missing { field: "sha256" })
        }),
        (
            text.replace("key-size: 4096\n", "key-size: 4096\nkey-size: 4096\n"),
            |e| matches!(e, TransferError::Duplicate { .. }),
        ),
        (text.replace(&kek.to_pem(), &other.to_pem()), |e| {
            matches!(e, TransferError::SizeMismatch { .. })
        }),
    ];
    for (bad, check) in cases {
        let err = KekTransfer::parse(&bad).unwrap_err();
        assert!(check(&err), "{err:?}");
    }
}

#[test]
fn sidecar_round_trip_and_tampering() {
    let target = TargetKey::generate(KeyKind::Ec { curve: Curve::P384 }).unwrap();
    let sidecar = Sidecar {
        byok_sha256: Fingerprint::of_bytes(b"package"),
        kek_kid: KID.into(),
        kind: target.kind(),
        public_key: target.public_key().cloned(),
        source: Source {
            label: "target".into(),
            ..Source::default()
        },
    };
    let bytes = sidecar.to_json_bytes();
    assert_eq!(Sidecar::parse(&bytes).unwrap(), sidecar);
    let text = String::from_utf8(bytes).unwrap();
    let bad = text.replace("\"P-384\"", "\"P-256\"");
    assert!(matches!(
        Sidecar::parse(bad.as_bytes()),
        Err(SidecarError::KindMismatch { .. })
    ));
    let fp = target.public_key().unwrap().fingerprint().to_hex();
    let bad = text.replace(&fp, &"0".repeat(64));
    assert!(matches!(
        Sidecar::parse(bad.as_bytes()),
        Err(SidecarError::FingerprintMismatch)
    ));
    let aes = Sidecar {
        kind: KeyKind::Oct { bits: 256 },
        public_key: None,
        ..sidecar
    };
    assert_eq!(Sidecar::parse(&aes.to_json_bytes()).unwrap(), aes);
}

#[test]
fn jwk_to_spki_and_back() {
    for kind in [
        KeyKind::Rsa { bits: 2048 },
        KeyKind::Ec { curve: Curve::P256 },
        KeyKind::Ec { curve: Curve::P384 },
        KeyKind::Ec { curve: Curve::P521 },
        KeyKind::Ec {
            curve: Curve::P256K,
        },
    ] {
        let key = TargetKey::generate(kind).unwrap();
        let public = key.public_key().unwrap();
        let jwk = PublicJwk::from_public_key(public);
        assert_eq!(&jwk.to_public_key().unwrap(), public, "{kind}");
        // As the vault writes them: -HSM kty, and n with a leading zero byte.
        let mut vault = jwk.clone();
        vault.kty = format!("{}-HSM", vault.kty);
        if let Some(n) = &vault.n {
            let mut bytes = vec![0u8];
            bytes.extend(byok_core::b64::decode("n", n).unwrap());
            vault.n = Some(byok_core::b64::encode(&bytes));
        }
        assert_eq!(&vault.to_public_key().unwrap(), public, "{kind}");
    }
    let oct = PublicJwk {
        kty: "oct-HSM".into(),
        ..PublicJwk::default()
    };
    assert!(matches!(
        oct.to_public_key(),
        Err(JwkError::NoPublicKey { .. })
    ));
    let no_x = PublicJwk {
        kty: "EC".into(),
        crv: Some("P-256".into()),
        y: Some("AA".into()),
        ..PublicJwk::default()
    };
    assert!(matches!(
        no_x.to_public_key(),
        Err(JwkError::Missing { member: "x" })
    ));
    // A point not on the curve.
    let off_curve = PublicJwk {
        kty: "EC".into(),
        crv: Some("P-256".into()),
        x: Some(byok_core::b64::encode(&[1u8; 32])),
        y: Some(byok_core::b64::encode(&[2u8; 32])),
        ..PublicJwk::default()
    };
    assert!(matches!(off_curve.to_public_key(), Err(JwkError::Key(_))));
}

/// The tolerant reading a vendor's package gets (the BYOK specification: `generator` is an
/// "informational field"): no generator, members the format does not define at the top and in
/// the header, all named; everything else as strict as `parse`.
#[test]
fn a_vendor_package_is_read_tolerantly_and_what_was_ignored_is_named() {
    let mut v = good_package_json();
    let (strict, none) =
        KeyTransferPackage::parse_tolerant(&serde_json::to_vec(&v).unwrap()).unwrap();
    assert!(none.is_empty());
    assert_eq!(strict, parse(&v).unwrap());
    v.as_object_mut().unwrap().remove("generator");
    v["tool"] = json!("vendor");
    v["header"]["typ"] = json!("JWE");
    assert!(parse(&v).is_err(), "the strict reading still refuses it");
    let bytes = serde_json::to_vec_pretty(&v).unwrap();
    let (package, tolerated) = KeyTransferPackage::parse_tolerant(&bytes).unwrap();
    assert_eq!(package.generator(), "");
    assert_eq!(package.ciphertext(), strict.ciphertext());
    assert!(tolerated.no_generator);
    assert_eq!(tolerated.unknown_members, ["tool", "header.typ"]);
    assert_eq!(tolerated.notes().len(), 3);
    // Not tolerated: another enc, a missing ciphertext, not JSON.
    v["header"]["enc"] = json!("CKM_RSA_AES_KEY_WRAP_PAD");
    let bytes = serde_json::to_vec(&v).unwrap();
    assert!(matches!(
        KeyTransferPackage::parse_tolerant(&bytes),
        Err(PackageError::Enc { .. })
    ));
    v["header"]["enc"] = json!("CKM_RSA_AES_KEY_WRAP");
    v.as_object_mut().unwrap().remove("ciphertext");
    let bytes = serde_json::to_vec(&v).unwrap();
    assert!(KeyTransferPackage::parse_tolerant(&bytes).is_err());
    assert!(KeyTransferPackage::parse_tolerant(b"eyJhbGciOiJkaXIifQ..").is_err());
}
