//! Cross-checks with the `openssl` CLI, an independent implementation, in both directions.

mod common;

use byok_core::target::Kty;
use byok_core::{KekPublicKey, TargetKey, TargetPublicKey, wrap};
use common::openssl;
use rsa::pkcs8::DecodePrivateKey;
use std::fs;

const OAEP_SHA1: [&str; 6] = [
    "-pkeyopt",
    "rsa_padding_mode:oaep",
    "-pkeyopt",
    "rsa_oaep_md:sha1",
    "-pkeyopt",
    "rsa_mgf1_md:sha1",
];

/// Makes a KEK and a target key with openssl; returns the KEK private key PEM path and the
/// target's PKCS#8 DER.
fn openssl_keys(dir: &std::path::Path, kek_bits: u32, target_alg: &[&str]) -> Vec<u8> {
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            &format!("rsa_keygen_bits:{kek_bits}"),
            "-out",
            "kek.pem",
        ],
        dir,
    );
    openssl(
        &["pkey", "-in", "kek.pem", "-pubout", "-out", "kek_pub.pem"],
        dir,
    );
    let mut args = vec!["genpkey"];
    args.extend_from_slice(target_alg);
    args.extend_from_slice(&["-out", "target.pem"]);
    openssl(&args, dir);
    // genpkey's DER for EC is SEC1; Azure wants PKCS#8, which `pkcs8 -topk8` writes.
    openssl(
        &[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            "target.pem",
            "-outform",
            "DER",
            "-out",
            "target.der",
        ],
        dir,
    );
    fs::read(dir.join("target.der")).unwrap()
}

#[test]
fn openssl_blob_unwraps_in_byok_core() {
    for (kek_bits, target_alg, kty) in [
        (
            2048,
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"][..],
            Kty::Ec,
        ),
        (
            3072,
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"][..],
            Kty::Rsa,
        ),
        (
            4096,
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"][..],
            Kty::Ec,
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let target_der = openssl_keys(d, kek_bits, target_alg);
        openssl(&["rand", "-out", "aes.bin", "32"], d);
        let aes_hex = hex::encode(fs::read(d.join("aes.bin")).unwrap());
        let mut args = vec!["pkeyutl", "-encrypt", "-pubin", "-inkey", "kek_pub.pem"];
        args.extend_from_slice(&OAEP_SHA1);
        args.extend_from_slice(&["-in", "aes.bin", "-out", "rsa_part.bin"]);
        openssl(&args, d);
        openssl(
            &[
                "enc",
                "-id-aes256-wrap-pad",
                "-K",
                &aes_hex,
                "-iv",
                "A65959A6",
                "-in",
                "target.der",
                "-out",
                "kwp_part.bin",
            ],
            d,
        );
        let mut blob = fs::read(d.join("rsa_part.bin")).unwrap();
        blob.extend(fs::read(d.join("kwp_part.bin")).unwrap());

        let kek_pem = fs::read_to_string(d.join("kek.pem")).unwrap();
        let kek = rsa::PrivateKey::from_pkcs8_pem(&kek_pem).unwrap();
        let plaintext = wrap::unwrap(&blob, &kek).unwrap();
        assert_eq!(*plaintext, target_der);

        // The public key byok-core derives equals openssl's.
        let target = TargetKey::from_plaintext(kty, &plaintext).unwrap();
        let openssl_spki = openssl(
            &[
                "pkey",
                "-inform",
                "DER",
                "-in",
                "target.der",
                "-pubout",
                "-outform",
                "DER",
            ],
            d,
        );
        assert_eq!(target.public_key().unwrap().spki_der(), openssl_spki);
    }
}

#[test]
fn byok_core_blob_unwraps_in_openssl() {
    for (kek_bits, target_alg) in [
        (
            2048,
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"][..],
        ),
        (
            4096,
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"][..],
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let target_der = openssl_keys(d, kek_bits, target_alg);
        let kek =
            KekPublicKey::from_pem(&fs::read_to_string(d.join("kek_pub.pem")).unwrap()).unwrap();
        assert_eq!(kek.bits(), kek_bits as usize);
        let blob = wrap::wrap(&target_der, &kek).unwrap();
        let (rsa_part, kwp_part) = blob.split_at(kek.modulus_len());
        fs::write(d.join("rsa_part.bin"), rsa_part).unwrap();
        fs::write(d.join("kwp_part.bin"), kwp_part).unwrap();

        let mut args = vec!["pkeyutl", "-decrypt", "-inkey", "kek.pem"];
        args.extend_from_slice(&OAEP_SHA1);
        args.extend_from_slice(&["-in", "rsa_part.bin", "-out", "aes.bin"]);
        openssl(&args, d);
        let aes = fs::read(d.join("aes.bin")).unwrap();
        assert_eq!(aes.len(), 32);
        openssl(
            &[
                "enc",
                "-d",
                "-id-aes256-wrap-pad",
                "-K",
                &hex::encode(&aes),
                "-iv",
                "A65959A6",
                "-in",
                "kwp_part.bin",
                "-out",
                "plain.der",
            ],
            d,
        );
        assert_eq!(fs::read(d.join("plain.der")).unwrap(), target_der);
    }
}

#[test]
fn fingerprints_match_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl_keys(
        d,
        2048,
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let spki = openssl(
        &["pkey", "-pubin", "-in", "kek_pub.pem", "-outform", "DER"],
        d,
    );
    fs::write(d.join("spki.der"), &spki).unwrap();
    let digest = String::from_utf8(openssl(&["dgst", "-sha256", "-r", "spki.der"], d)).unwrap();
    let kek = KekPublicKey::from_pem(&fs::read_to_string(d.join("kek_pub.pem")).unwrap()).unwrap();
    assert_eq!(
        digest.split_whitespace().next().unwrap(),
        kek.fingerprint().to_hex()
    );

    // PKCS#1 `RSA PUBLIC KEY` PEM reads as the same key.
    openssl(
        &[
            "rsa",
            "-pubin",
            "-in",
            "kek_pub.pem",
            "-RSAPublicKey_out",
            "-out",
            "kek_pkcs1.pem",
        ],
        d,
    );
    let pkcs1 = fs::read_to_string(d.join("kek_pkcs1.pem")).unwrap();
    assert!(pkcs1.contains("BEGIN RSA PUBLIC KEY"));
    assert_eq!(KekPublicKey::from_pem(&pkcs1).unwrap(), kek);

    // The EC target's public key from openssl reads as the same SPKI.
    let ec_pub = openssl(
        &["pkey", "-inform", "DER", "-in", "target.der", "-pubout"],
        d,
    );
    let ec = TargetPublicKey::from_pem(std::str::from_utf8(&ec_pub).unwrap()).unwrap();
    let target = TargetKey::from_pkcs8_der(&fs::read(d.join("target.der")).unwrap()).unwrap();
    assert_eq!(&ec, target.public_key().unwrap());
}
