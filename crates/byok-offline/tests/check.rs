//! `byok-offline check` and the gate before `package`, through the real binary on the tokens
//! CI makes: Debian's SoftHSM 2.6.1 (0x210A zero-pads before RFC 5649), kryoptic 1.5.4
//! (0x210B; its generator drops an EC scalar's leading zero bytes: P-521 on about half the
//! keys, P-256/P-384 on 1 in 256; it writes an imported value as given; no secp256k1) and NSS
//! softokn (0x210B; init string in `PKCS11_INIT_ARGS`, a C_WrapKey size query that
//! under-reports; generated scalars at full length, imported values as given). Each kind has
//! two verdicts: `generated` (keys the token makes) and `imported` (the edge cases).

mod common;

use byok_core::conformance::read_plaintext_of;
use byok_core::target::{Curve, KeyKind};
use byok_core::{KeyTransferPackage, TargetPublicKey, wrap};
use byok_tests::{TestToken, kek_pair, ok, stderr};
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Output;

const PIN: &str = "check-PIN-5521";

/// Runs `byok-offline ARGS` against `token` (its own flags first), the PIN in the default
/// variable, plus `env`.
fn run(token: &TestToken, args: &[&str], env: &[(&str, &str)]) -> Output {
    token
        .command_with_pin(env!("CARGO_BIN_EXE_byok-offline"))
        .args(token.token_args())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// `check --output json ARGS`: exits 0 whatever the verdicts; each kind's entry by its name.
fn check(token: &TestToken, args: &[&str]) -> (Value, BTreeMap<String, Value>) {
    let mut all = vec!["--output", "json", "check"];
    all.extend_from_slice(args);
    let report = ok(&run(token, &all, &[]));
    assert_eq!(report["schema"], "byok-offline.check/2");
    assert_eq!(report["token"]["label"], token.label());
    let kinds = report["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["kind"].as_str().unwrap().to_string(), k.clone()))
        .collect();
    (report, kinds)
}

/// The generated-key verdict of `kind` is `verdict`, its detail holding `detail`.
fn assert_verdict(kinds: &BTreeMap<String, Value>, kind: &str, verdict: &str, detail: &str) {
    assert_side(kinds, kind, "generated", verdict, detail);
}

/// The imported-key verdict of `kind` is `verdict`, its detail holding `detail`.
fn assert_imported(kinds: &BTreeMap<String, Value>, kind: &str, verdict: &str, detail: &str) {
    assert_side(kinds, kind, "imported", verdict, detail);
}

fn assert_side(
    kinds: &BTreeMap<String, Value>,
    kind: &str,
    side: &str,
    verdict: &str,
    detail: &str,
) {
    let k = &kinds[kind][side];
    assert_eq!(k["verdict"], verdict, "{kind} {side}: {k}");
    let text = k["detail"].as_str().unwrap();
    assert!(
        text.contains(detail),
        "{kind} {side}: `{detail}` not in {k}"
    );
}

/// EC generated keys: at least one had a scalar whose top byte is zero (so the generator's
/// handling of it was seen), and every one was conformant.
fn assert_zero_top_byte_seen(kinds: &BTreeMap<String, Value>, kind: &str) {
    let g = &kinds[kind]["generated"];
    assert!(g["zero_top_byte"].as_u64().unwrap() >= 1, "{kind}: {g}");
    assert!(g["tries"].as_u64().unwrap() >= 20, "{kind}: {g}");
}

/// The edge cases of `kind`: (tried, defective), none untested.
fn edge_cases(kinds: &BTreeMap<String, Value>, kind: &str) -> (u64, u64) {
    let e = &kinds[kind]["imported"];
    assert_eq!(e["untested"], 0, "{kind}: {e}");
    (
        e["tried"].as_u64().unwrap(),
        e["defective"].as_u64().unwrap(),
    )
}

/// A KEK transfer file in the token's directory.
fn transfer(token: &TestToken) -> String {
    let (_, kek) = kek_pair(2048);
    let t = byok_core::KekTransfer::new(byok_core::KeyId::parse(common::KID).unwrap(), kek);
    std::fs::write(token.path("kek.transfer"), t.unwrap().to_text()).unwrap();
    "kek.transfer".into()
}

/// `package --generate --label LABEL SPEC` on `token`, no leniency flag.
fn package(token: &TestToken, label: &str, spec: &[&str], env: &[(&str, &str)]) -> Output {
    let kek = transfer(token);
    let mut args = vec!["--output", "json", "package", "--kek", &kek];
    args.extend(["--generate", "--label", label]);
    args.extend_from_slice(spec);
    run(token, &args, env)
}

/// A refusal before anything is made: exit 1, the defect and the fix named, no key on the
/// token, no file written.
fn assert_refused_before_any_key(token: &TestToken, out: &Output, label: &str, defect: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for needle in [defect, "Nothing was generated", "run `byok-offline check`"] {
        assert!(err.contains(needle), "`{needle}` not in: {err}");
    }
    assert!(
        !token
            .path(&format!("KeyTransferPackage-{label}.byok"))
            .exists()
    );
    assert!(!token.path(&format!("{label}.public.pem")).exists());
    assert_eq!(
        ok(&run(token, &["--output", "json", "keys"], &[]))["keys"],
        Value::Array(vec![])
    );
}

#[test]
fn softhsm_zero_padding_is_reported_per_kind_and_aes_needs_no_flag() {
    let token = TestToken::softhsm("check-softhsm", PIN);
    let (report, kinds) = check(&token, &[]);
    assert!(report["wrap_path"].as_str().unwrap().contains("0x210A"));
    assert_eq!(kinds.len(), KeyKind::IMPORTABLE.len());
    for kind in ["RSA 2048", "EC P-256", "EC P-521"] {
        assert_verdict(&kinds, kind, "non-conformant", "trailing zero byte");
        assert_eq!(kinds[kind]["generated"]["one_in"], 1, "{kind}: every key");
    }
    // P-256 and P-521 PKCS#8 lengths are fixed and never a multiple of 8: every key is padded.
    assert_eq!(kinds["EC P-256"]["generated"]["defective"], 20);
    assert_eq!(kinds["EC P-521"]["generated"]["tries"], 20);
    for kind in ["AES 128", "AES 192", "AES 256"] {
        assert_verdict(&kinds, kind, "ok", "");
        assert_eq!(kinds[kind]["generated"]["tries"], 4);
        assert_imported(&kinds, kind, "ok", "raw bytes");
    }
    // OpenSSL writes any scalar at full length, then 0x210A pads (none needed at these lengths):
    // generated keys with a zero top byte and the imported edge cases come out right.
    for kind in ["EC P-384", "EC P-256K"] {
        assert_verdict(&kinds, kind, "ok", "");
        assert_zero_top_byte_seen(&kinds, kind);
        assert_imported(&kinds, kind, "ok", "");
        assert_eq!(edge_cases(&kinds, kind), (4, 0), "{kind}");
    }
    assert_eq!(edge_cases(&kinds, "EC P-256"), (4, 4));
    assert_eq!(edge_cases(&kinds, "EC P-521"), (5, 5));
    assert_imported(&kinds, "EC P-256", "non-conformant", "trailing zero byte");
    assert_eq!(kinds["EC P-256"]["imported"]["one_in"], 1);
    assert_eq!(edge_cases(&kinds, "RSA 2048").0, 2);

    // Without any flag, AES packages; EC is refused before a key is made, the defect named.
    let out = package(&token, "e", &["--kty", "EC"], &[]);
    assert_refused_before_any_key(&token, &out, "e", "trailing zero byte");
    assert!(stderr(&out).contains("--allow-zero-padded-kwp"));
    let report = ok(&package(&token, "a", &["--kty", "oct"], &[]));
    assert_eq!(report["package"]["target_kind"], "AES 256");
    assert!(token.path("KeyTransferPackage-a.byok").exists());
}

#[test]
fn kryoptic_passes_rsa_and_aes_and_its_short_ec_scalars_are_found_every_time() {
    let token = TestToken::kryoptic("check-kryoptic", PIN);
    let t = std::time::Instant::now();
    let (report, kinds) = check(&token, &[]);
    eprintln!("check on kryoptic: {:.1} s", t.elapsed().as_secs_f32());
    assert!(report["wrap_path"].as_str().unwrap().contains("0x210B"));
    for kind in [
        "RSA 2048", "RSA 3072", "RSA 4096", "AES 128", "AES 192", "AES 256",
    ] {
        assert_verdict(&kinds, kind, "ok", "");
    }
    // RSA's edge case (dP a byte short) comes out canonical in both forms.
    for kind in ["RSA 2048", "RSA 3072", "RSA 4096"] {
        assert_eq!(edge_cases(&kinds, kind), (2, 0), "{kind}");
        assert_imported(&kinds, kind, "ok", "");
    }
    // kryoptic's generator drops a scalar's leading zero bytes: the check generates until it
    // has seen a key whose scalar's top byte is zero, which comes out short on every curve.
    // kryoptic writes an imported CKA_VALUE as given: short when given short, right in full.
    for (kind, short, one_in) in [
        (
            "EC P-256",
            "31-byte P-256 scalar; RFC 5915 requires 32 bytes",
            256,
        ),
        (
            "EC P-384",
            "47-byte P-384 scalar; RFC 5915 requires 48 bytes",
            256,
        ),
        (
            "EC P-521",
            "65-byte P-521 scalar; RFC 5915 requires 66 bytes",
            2,
        ),
    ] {
        assert_verdict(&kinds, kind, "non-conformant", short);
        assert_eq!(kinds[kind]["generated"]["one_in"], one_in, "{kind}");
        assert!(kinds[kind]["generated"]["defective"].as_u64().unwrap() >= 1);
        assert_imported(&kinds, kind, "non-conformant", short);
        assert_imported(
            &kinds,
            kind,
            "non-conformant",
            "only keys imported without their leading zero bytes",
        );
        assert_eq!(kinds[kind]["imported"]["one_in"], one_in, "{kind}");
        // Top byte zero and top two bytes zero, each given without them; in full, right.
        let tried = if kind == "EC P-521" { 5 } else { 4 };
        assert_eq!(edge_cases(&kinds, kind), (tried, 2), "{kind}");
    }
    assert_verdict(&kinds, "EC P-256K", "not supported", "CKR_GENERAL_ERROR");

    // A P-256 package is refused before any key is made, on every run.
    let out = package(&token, "q", &["--kty", "EC", "--curve", "P-256"], &[]);
    assert_refused_before_any_key(&token, &out, "q", "31-byte P-256 scalar");

    let out = package(&token, "p", &["--kty", "EC", "--curve", "P-521"], &[]);
    assert_refused_before_any_key(&token, &out, "p", "65-byte P-521 scalar");
    // The zero-padding override does not cover another defect.
    let out = package(
        &token,
        "p",
        &["--kty", "EC", "--curve", "P-521", "--allow-zero-padded-kwp"],
        &[],
    );
    assert_refused_before_any_key(&token, &out, "p", "65-byte P-521 scalar");
    // A kind the token cannot make is refused the same way, the return code named.
    let out = package(&token, "k", &["--kty", "EC", "--curve", "P-256K"], &[]);
    assert_refused_before_any_key(&token, &out, "k", "CKR_GENERAL_ERROR");
    // `generate` names the token's refusal and the command that shows every kind.
    let out = run(
        &token,
        &[
            "generate", "--label", "k", "--kty", "EC", "--curve", "P-256K",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(
            "this token could not generate EC P-256K (CKR_GENERAL_ERROR); run `byok-offline check`"
        ),
        "{err}"
    );
}

#[test]
fn nss_checks_with_init_args_and_packages_with_no_size_query() {
    let token = TestToken::nss(PIN);
    assert!(token.init_args().is_some());
    let (report, kinds) = check(&token, &[]);
    assert!(report["wrap_path"].as_str().unwrap().contains("0x210B"));
    for kind in KeyKind::IMPORTABLE.map(|k| k.to_string()) {
        if kind != "EC P-256K" {
            assert_verdict(&kinds, &kind, "ok", "");
        }
    }
    assert_verdict(
        &kinds,
        "EC P-256K",
        "not supported",
        "CKR_DOMAIN_PARAMS_INVALID",
    );
    // NSS's generator keeps a scalar's leading zero bytes (seen on a key whose top byte is
    // zero), so new keys pass; it writes an imported CKA_VALUE as given, so an imported key
    // given without its leading zeros comes out short: 1 imported key in 256 (P-521: 2).
    for kind in ["EC P-256", "EC P-384", "EC P-521"] {
        assert_zero_top_byte_seen(&kinds, kind);
        assert_imported(
            &kinds,
            kind,
            "non-conformant",
            "only keys imported without their leading zero bytes",
        );
        assert_eq!(edge_cases(&kinds, kind).1, 2, "{kind}");
    }
    assert_eq!(edge_cases(&kinds, "RSA 4096"), (2, 0));
    // Without the init string the module does not start.
    let out = token
        .command_with_pin(env!("CARGO_BIN_EXE_byok-offline"))
        .env_remove(byok_tests::INIT_ARGS_ENV)
        .arg("tokens")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--init-args"), "{}", stderr(&out));

    // A real package. NSS softokn's size query under-reports the wrap's length; the tool asks
    // none, it gives every C_WrapKey a buffer every wrap fits in, so no retry is needed
    // (a retry would be logged at debug).
    let out = package(
        &token,
        "n",
        &["--kty", "EC", "--curve", "P-256"],
        &[("RUST_LOG", "byok_offline::raw=debug")],
    );
    let report = ok(&out);
    assert!(
        !stderr(&out).contains("CKR_BUFFER_TOO_SMALL"),
        "{}",
        stderr(&out)
    );
    assert!(
        report["package"]["wrap_path"]
            .as_str()
            .unwrap()
            .contains("0x210B")
    );
    // It unwraps to exactly what Azure reads, and to the key the token reported.
    let (kek_private, _) = kek_pair(2048);
    let bytes = std::fs::read(token.path("KeyTransferPackage-n.byok")).unwrap();
    let package = KeyTransferPackage::parse(&bytes).unwrap();
    let plain = wrap::unwrap(package.ciphertext(), &kek_private).unwrap();
    let key = read_plaintext_of(KeyKind::Ec { curve: Curve::P256 }, &plain).unwrap();
    let pem = std::fs::read_to_string(token.path("n.public.pem")).unwrap();
    assert_eq!(
        key.public_key(),
        Some(&TargetPublicKey::from_pem(&pem).unwrap())
    );
    // The key persists in the token: a second process finds it and packages it again.
    let kek = transfer(&token);
    let again = [
        "package",
        "--kek",
        &kek,
        "--label",
        "n",
        "--out",
        "again.byok",
    ];
    ok(&run(&token, &again, &[]));
}

/// `pkcs11-tool ARGS` on `token`, logged in as the user.
fn pkcs11_tool(token: &TestToken, args: &[&str]) {
    let out = token
        .command("pkcs11-tool")
        .arg("--module")
        .arg(token.module())
        .args(["--login", "--pin", token.pin()])
        .args(args)
        .output()
        .expect("pkcs11-tool (apt-get install opensc)");
    assert!(
        out.status.success(),
        "pkcs11-tool {args:?}: {}",
        stderr(&out)
    );
}

/// An existing key is held to the verdict for keys like it, by `CKA_LOCAL`: on kryoptic both
/// EC verdicts are "non-conformant for 1 key in 256" (its generator drops leading zeros; it
/// writes an imported value as given), so an existing key of either origin is packaged with a
/// warning naming its origin and the share, while a new key is refused.
#[test]
fn existing_keys_are_held_to_the_verdict_of_their_origin() {
    let token = TestToken::kryoptic("check-origin", PIN);
    // A P-256 key made by openssl (its scalar's top byte not zero), imported with pkcs11-tool:
    // CKA_LOCAL false.
    let der = loop {
        let der = byok_tests::openssl(
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-outform",
                "DER",
            ],
            token.dir(),
        );
        // ECPrivateKey: version 1, then the 32-byte scalar.
        let at = der.windows(5).position(|w| w == [2, 1, 1, 4, 32]).unwrap();
        if der[at + 5] != 0 {
            break der;
        }
    };
    std::fs::write(token.path("imp.der"), &der).unwrap();
    let public = byok_tests::openssl(
        &[
            "pkey", "-inform", "DER", "-in", "imp.der", "-pubout", "-outform", "DER",
        ],
        token.dir(),
    );
    std::fs::write(token.path("imp.pub.der"), public).unwrap();
    let object = ["--label", "imp", "--id", "0a0b"];
    pkcs11_tool(
        &token,
        &[
            &[
                "--write-object",
                "imp.der",
                "--type",
                "privkey",
                "--sensitive",
                "--extractable",
                "--usage-sign",
            ][..],
            &object,
        ]
        .concat(),
    );
    pkcs11_tool(
        &token,
        &[
            &["--write-object", "imp.pub.der", "--type", "pubkey"][..],
            &object,
        ]
        .concat(),
    );
    let keys = ok(&run(&token, &["--output", "json", "keys"], &[]));
    let imp = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["class"] == "CKO_PRIVATE_KEY")
        .unwrap()
        .clone();
    assert_eq!(imp["local"], false, "{imp}");

    let kek = transfer(&token);
    let out = run(&token, &["package", "--kek", &kek, "--label", "imp"], &[]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    for needle in [
        "an existing key imported into the token",
        "non-conformant for 1 key in 256",
        "Azure refuses the import",
    ] {
        assert!(err.contains(needle), "`{needle}` not in: {err}");
    }
    // The package holds exactly the imported key, as Azure reads it.
    let (kek_private, _) = kek_pair(2048);
    let bytes = std::fs::read(token.path("KeyTransferPackage-imp.byok")).unwrap();
    let plain = wrap::unwrap(
        KeyTransferPackage::parse(&bytes).unwrap().ciphertext(),
        &kek_private,
    )
    .unwrap();
    let key = read_plaintext_of(KeyKind::Ec { curve: Curve::P256 }, &plain).unwrap();
    let pem = std::fs::read_to_string(token.path("imp.public.pem")).unwrap();
    assert_eq!(
        key.public_key(),
        Some(&TargetPublicKey::from_pem(&pem).unwrap())
    );
    let spki = byok_tests::openssl(
        &["pkey", "-pubin", "-in", "imp.public.pem", "-outform", "DER"],
        token.dir(),
    );
    assert_eq!(
        spki,
        std::fs::read(token.path("imp.pub.der")).unwrap(),
        "openssl's key"
    );

    // A key the token generated (CKA_LOCAL true) is held to the generated verdict: a new one
    // is refused before it is made; an existing one is packaged with that warning.
    let generate = [
        "generate", "--label", "own", "--kty", "EC", "--curve", "P-256",
    ];
    ok(&run(&token, &generate, &[]));
    let out = run(&token, &["package", "--kek", &kek, "--label", "own"], &[]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("an existing key the token generated"), "{err}");
    assert!(err.contains("non-conformant for 1 key in 256"), "{err}");
}

/// openCryptoki 3.27's soft token (in its Debian sid root): the native CKM_RSA_AES_KEY_WRAP.
/// Its generator keeps EC scalars at full length, while its object store strips the leading
/// zeros of an imported CKA_VALUE in either form: generated keys pass (and are packaged with no
/// flag), imported keys are non-conformant for the share of keys with such a scalar. One
/// verdict for both refused every EC kind here.
#[test]
fn opencryptoki_wraps_natively_and_passes_its_generated_ec_keys() {
    // The soft token takes PINs of 4 to 8 characters.
    let token = TestToken::opencryptoki("check-ock", "ock55210");
    let (report, kinds) = check(&token, &[]);
    assert_eq!(report["wrap_path"], "native CKM_RSA_AES_KEY_WRAP");
    for kind in KeyKind::IMPORTABLE.map(|k| k.to_string()) {
        assert_verdict(&kinds, &kind, "ok", "");
    }
    for kind in ["RSA 2048", "RSA 3072", "RSA 4096"] {
        assert_imported(&kinds, kind, "ok", "");
        assert_eq!(edge_cases(&kinds, kind), (2, 0), "{kind}");
    }
    for (kind, short, one_in) in [
        ("EC P-256", "31-byte P-256 scalar", 256),
        ("EC P-384", "47-byte P-384 scalar", 256),
        ("EC P-521", "65-byte P-521 scalar", 2),
        ("EC P-256K", "31-byte P-256K scalar", 256),
    ] {
        assert_zero_top_byte_seen(&kinds, kind);
        assert_imported(&kinds, kind, "non-conformant", short);
        assert_eq!(kinds[kind]["imported"]["one_in"], one_in, "{kind}");
        // Both forms short: the token strips the zeros itself, however they are given.
        assert_eq!(edge_cases(&kinds, kind).1, 4, "{kind}");
        let detail = kinds[kind]["imported"]["detail"].as_str().unwrap();
        assert!(!detail.contains("full length comes out right"), "{detail}");
    }

    // A P-256 key generated and packaged with no flag, exactly what Azure reads.
    let out = package(&token, "g", &["--kty", "EC", "--curve", "P-256"], &[]);
    let report = ok(&out);
    assert_eq!(
        report["package"]["wrap_path"],
        "native CKM_RSA_AES_KEY_WRAP"
    );
    let (kek_private, _) = kek_pair(2048);
    let bytes = std::fs::read(token.path("KeyTransferPackage-g.byok")).unwrap();
    let plain = wrap::unwrap(
        KeyTransferPackage::parse(&bytes).unwrap().ciphertext(),
        &kek_private,
    )
    .unwrap();
    let key = read_plaintext_of(KeyKind::Ec { curve: Curve::P256 }, &plain).unwrap();
    let pem = std::fs::read_to_string(token.path("g.public.pem")).unwrap();
    assert_eq!(
        key.public_key(),
        Some(&TargetPublicKey::from_pem(&pem).unwrap())
    );
}
