//! `generate` + `package` on a real SoftHSM token, every key kind, checked by unwrapping with
//! byok-core and (for one kind) with the openssl CLI.

mod common;

use byok_core::sidecar::Sidecar;
use byok_core::target::Kty;
use byok_core::{KeyTransferPackage, TargetKey, TargetPublicKey, wrap};
use common::{Hsm, kek_pair, ok};

/// Unwraps and undoes SoftHSM 2.6.1's zero padding, asserting it is only zeros, fewer than 8,
/// and that without it the plaintext is exactly one DER object.
fn unwrap_plaintext(kek: &rsa::PrivateKey, package: &KeyTransferPackage, kty: Kty) -> Vec<u8> {
    let plain = wrap::unwrap(package.ciphertext(), kek).unwrap().to_vec();
    if kty == Kty::Oct {
        return plain;
    }
    // DER SEQUENCE with a long-form or short-form length.
    assert_eq!(plain[0], 0x30);
    let der_len = match plain[1] {
        n if n < 0x80 => 2 + n as usize,
        0x81 => 3 + plain[2] as usize,
        0x82 => 4 + ((plain[2] as usize) << 8 | plain[3] as usize),
        other => panic!("unexpected DER length byte {other:#x}"),
    };
    let padding = &plain[der_len..];
    assert!(
        padding.len() < 8 && padding.iter().all(|b| *b == 0),
        "{padding:?}"
    );
    assert_eq!((der_len + padding.len()) % 8, 0);
    plain[..der_len].to_vec()
}

#[test]
fn every_kind_generated_and_packaged_unwraps_to_the_hsm_key() {
    let hsm = Hsm::new();
    let (kek_private, kek) = kek_pair(3072);
    let transfer = hsm.transfer_file(&kek);
    let transfer = transfer.to_str().unwrap();
    let kinds: [(&str, &[&str], Kty); 8] = [
        ("rsa2048", &["--kty", "RSA", "--size", "2048"], Kty::Rsa),
        ("rsa3072", &["--kty", "RSA", "--size", "3072"], Kty::Rsa),
        ("rsa4096", &["--kty", "RSA", "--size", "4096"], Kty::Rsa),
        ("p256", &["--kty", "EC", "--curve", "P-256"], Kty::Ec),
        ("p384", &["--kty", "EC", "--curve", "P-384"], Kty::Ec),
        ("p521", &["--kty", "EC", "--curve", "P-521"], Kty::Ec),
        ("p256k", &["--kty", "EC", "--curve", "P-256K"], Kty::Ec),
        ("aes256", &["--kty", "oct", "--size", "256"], Kty::Oct),
    ];
    for (label, spec, kty) in kinds {
        let mut args = vec![
            "--output",
            "json",
            "package",
            "--kek",
            transfer,
            "--generate",
            "--label",
            label,
            "--allow-zero-padded-kwp",
        ];
        args.extend_from_slice(spec);
        let report = ok(&hsm.run(&args));
        let byok_path = hsm.path(&format!("KeyTransferPackage-{label}.byok"));
        let bytes = std::fs::read(&byok_path).unwrap();
        let package = KeyTransferPackage::parse(&bytes).unwrap();
        assert_eq!(package.kid().to_string(), common::KID);
        package.check_against_kek(&kek).unwrap();
        let sidecar = Sidecar::parse(
            &std::fs::read(hsm.path(&format!("KeyTransferPackage-{label}.byok.sidecar.json")))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            sidecar.byok_sha256,
            byok_core::Fingerprint::of_bytes(&bytes)
        );
        assert_eq!(
            report["package"]["byok_sha256"],
            sidecar.byok_sha256.to_hex()
        );

        let plaintext = unwrap_plaintext(&kek_private, &package, kty);
        let target = TargetKey::from_plaintext(kty, &plaintext).unwrap();
        assert_eq!(target.kind(), sidecar.kind, "{label}");
        match kty {
            Kty::Oct => assert_eq!(plaintext.len(), 32),
            _ => {
                // The unwrapped private key's public half is the one the HSM reported.
                let pem =
                    std::fs::read_to_string(hsm.path(&format!("{label}.public.pem"))).unwrap();
                let hsm_public = TargetPublicKey::from_pem(&pem).unwrap();
                assert_eq!(target.public_key().unwrap(), &hsm_public, "{label}");
                assert_eq!(sidecar.public_key.as_ref(), Some(&hsm_public));
            }
        }
    }
}

#[test]
fn inspect_shows_the_header_without_a_key() {
    let hsm = Hsm::new();
    let (_, kek) = kek_pair(2048);
    let transfer = hsm.transfer_file(&kek);
    ok(&hsm.run(&[
        "package",
        "--kek",
        transfer.to_str().unwrap(),
        "--generate",
        "--label",
        "k",
        "--kty",
        "oct",
        "--allow-zero-padded-kwp",
        "--out",
        "k.byok",
    ]));
    // inspect needs no module, token or PIN.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_byok-offline"))
        .args(["--output", "json", "inspect"])
        .arg(hsm.path("k.byok"))
        .env_remove("PKCS11_MODULE")
        .output()
        .unwrap();
    let report = ok(&out);
    assert_eq!(report["kek_name"], "KEKforBYOK");
    assert_eq!(report["kek_version"], "0123456789abcdef0123456789abcdef");
    assert_eq!(report["ciphertext_bytes"], 256 + 40);
    assert_eq!(report["fits_kek_bits"], serde_json::json!([2048]));
    assert!(report["generator"].as_str().unwrap().contains("SoftHSM"));
}

#[test]
fn tokens_gives_the_byok_verdict() {
    let hsm = Hsm::new();
    let report = ok(&hsm.run(&["--output", "json", "tokens"]));
    let token = &report["tokens"][0];
    assert_eq!(token["label"], "byok-test");
    assert_eq!(token["manufacturer"], "SoftHSM project");
    // Debian's SoftHSM 2.6.1: no native RSA-AES wrap and no 0x210B, but 0x210A and OAEP.
    assert_eq!(token["capabilities"]["rsa_aes_key_wrap"], false);
    assert_eq!(token["capabilities"]["aes_key_wrap_kwp"], false);
    assert_eq!(token["capabilities"]["aes_key_wrap_pad"], true);
    assert_eq!(token["byok_possible"], true);
    // Its 0x210A's known-answer test runs with no login, and the verdict says what it means.
    assert_eq!(token["kwp_pad_self_test"], "zero-padded");
    let byok = token["byok"].as_str().unwrap();
    assert!(
        byok.contains("zero-pads before RFC 5649: AES keys only without --allow-zero-padded-kwp"),
        "{byok}"
    );
    let out = hsm.run_env(&["tokens"], &[]);
    assert!(
        out.status.success(),
        "tokens needs no PIN: {}",
        common::stderr(&out)
    );
}

#[test]
fn without_the_flag_softhsm_is_refused_before_any_key_is_made() {
    let hsm = Hsm::new();
    let (_, kek) = kek_pair(2048);
    let transfer = hsm.transfer_file(&kek);
    let out = hsm.run(&[
        "package",
        "--kek",
        transfer.to_str().unwrap(),
        "--generate",
        "--label",
        "x",
        "--kty",
        "EC",
    ]);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("--allow-zero-padded-kwp"),
        "{}",
        common::stderr(&out)
    );
    assert!(!hsm.path("KeyTransferPackage-x.byok").exists());
    let keys = ok(&hsm.run(&["--output", "json", "keys"]));
    assert_eq!(keys["keys"], serde_json::json!([]));
}

#[test]
fn openssl_unwraps_an_hsm_package_to_the_hsm_key() {
    let hsm = Hsm::new();
    let (kek_private, kek) = kek_pair(2048);
    let pem = rsa::pkcs8::EncodePrivateKey::to_pkcs8_pem(&kek_private, rsa::pkcs8::LineEnding::LF)
        .unwrap();
    std::fs::write(hsm.path("kek.pem"), pem.as_bytes()).unwrap();
    let transfer = hsm.transfer_file(&kek);
    ok(&hsm.run(&[
        "package",
        "--kek",
        transfer.to_str().unwrap(),
        "--generate",
        "--label",
        "r",
        "--kty",
        "RSA",
        "--size",
        "2048",
        "--allow-zero-padded-kwp",
        "--out",
        "r.byok",
    ]));
    let package = KeyTransferPackage::parse(&std::fs::read(hsm.path("r.byok")).unwrap()).unwrap();
    let (rsa_part, kwp_part) = package.ciphertext().split_at(256);
    std::fs::write(hsm.path("rsa.bin"), rsa_part).unwrap();
    std::fs::write(hsm.path("kwp.bin"), kwp_part).unwrap();
    let openssl = |args: &[&str]| {
        byok_tests::openssl(args, hsm.dir());
    };
    let mut decrypt = vec!["pkeyutl", "-decrypt", "-inkey", "kek.pem"];
    decrypt.extend(byok_tests::OPENSSL_OAEP_SHA1);
    decrypt.extend(["-in", "rsa.bin", "-out", "aes.bin"]);
    openssl(&decrypt);
    let aes = std::fs::read(hsm.path("aes.bin")).unwrap();
    assert_eq!(aes.len(), 32);
    openssl(&[
        "enc",
        "-d",
        "-id-aes256-wrap-pad",
        "-K",
        &hex::encode(&aes),
        "-iv",
        "A65959A6",
        "-in",
        "kwp.bin",
        "-out",
        "plain.der",
    ]);
    let by_openssl = std::fs::read(hsm.path("plain.der")).unwrap();
    let by_core = wrap::unwrap(package.ciphertext(), &kek_private).unwrap();
    assert_eq!(by_openssl, *by_core);
    let der = unwrap_plaintext(&kek_private, &package, Kty::Rsa);
    std::fs::write(hsm.path("key.der"), &der).unwrap();
    // openssl reads the PKCS#8 and derives the same public key the HSM reported.
    openssl(&[
        "pkey", "-inform", "DER", "-in", "key.der", "-pubout", "-out", "pub.pem",
    ]);
    let from_openssl =
        TargetPublicKey::from_pem(&std::fs::read_to_string(hsm.path("pub.pem")).unwrap()).unwrap();
    let from_hsm =
        TargetPublicKey::from_pem(&std::fs::read_to_string(hsm.path("r.public.pem")).unwrap())
            .unwrap();
    assert_eq!(from_openssl, from_hsm);
}

#[test]
fn an_existing_keys_kind_is_checked_against_the_flags_before_anything_is_wrapped() {
    let hsm = Hsm::new();
    let (_, kek) = kek_pair(2048);
    let transfer = hsm.transfer_file(&kek);
    let transfer = transfer.to_str().unwrap();
    ok(&hsm.run(&["generate", "--label", "r", "--kty", "RSA", "--size", "2048"]));
    std::fs::remove_file(hsm.path("r.public.pem")).unwrap();
    let package = [
        "package",
        "--kek",
        transfer,
        "--label",
        "r",
        "--allow-zero-padded-kwp",
    ];
    for (flags, said) in [
        (&["--kty", "EC"][..], "--kty EC"),
        (&["--kty", "RSA", "--size", "3072"], "--kty RSA --size 3072"),
    ] {
        let out = hsm.run(&[&package[..], flags].concat());
        assert_eq!(out.status.code(), Some(1));
        let err = common::stderr(&out);
        assert!(
            err.contains("the HSM key `r` is RSA 2048, not what `")
                && err.contains(said)
                && err.contains("Nothing was wrapped or written"),
            "{err}"
        );
        for file in ["KeyTransferPackage-r.byok", "r.public.pem"] {
            assert!(!hsm.path(file).exists(), "{file} written");
        }
    }
    // The flags that match are checked and pass.
    let report = ok(&hsm.run(
        &[
            &package[..],
            &["--kty", "RSA", "--size", "2048", "-o", "json"],
        ]
        .concat(),
    ));
    assert_eq!(report["package"]["target_kind"], "RSA 2048");
}

#[test]
fn an_existing_keys_public_key_is_written_or_found_identical_never_overwritten() {
    let hsm = Hsm::new();
    let (_, kek) = kek_pair(2048);
    let transfer = hsm.transfer_file(&kek);
    let transfer = transfer.to_str().unwrap();
    let generated = ok(&hsm.run(&["-o", "json", "generate", "--label", "e", "--kty", "EC"]));
    let pem = std::fs::read_to_string(hsm.path("e.public.pem")).unwrap();
    let package = |extra: &[&str]| {
        let mut args = vec!["-o", "json", "package", "--kek", transfer, "--label", "e"];
        args.push("--allow-zero-padded-kwp");
        args.extend_from_slice(extra);
        hsm.run(&args)
    };
    // `generate` wrote it: the same key is left as it is.
    let report = ok(&package(&[]));
    assert_eq!(report["public_key"], "e.public.pem");
    assert_eq!(report["public_key_file"], "already present");
    assert_eq!(
        report["package"]["target_public_key_sha256"],
        generated["public_key_sha256"]
    );
    assert_eq!(
        std::fs::read_to_string(hsm.path("e.public.pem")).unwrap(),
        pem
    );
    // Elsewhere: written.
    let report = ok(&package(&[
        "--out",
        "e2.byok",
        "--public-key-out",
        "e2.pem",
    ]));
    assert_eq!(report["public_key_file"], "written");
    assert_eq!(std::fs::read_to_string(hsm.path("e2.pem")).unwrap(), pem);
    // Another key's file in the way: refused before any wrap, and left untouched.
    let other = byok_core::TargetKey::generate(byok_core::KeyKind::Ec {
        curve: byok_core::Curve::P256,
    })
    .unwrap();
    let other_pem = other.public_key().unwrap().to_pem();
    std::fs::write(hsm.path("other.pem"), &other_pem).unwrap();
    let out = package(&["--out", "e3.byok", "--public-key-out", "other.pem"]);
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(
        err.contains("holds a public key other than the HSM key `e`'s"),
        "{err}"
    );
    assert!(!hsm.path("e3.byok").exists());
    assert_eq!(
        std::fs::read_to_string(hsm.path("other.pem")).unwrap(),
        other_pem
    );
}
