//! `byok-offline check` and the gate before `package`, through the real binary on the three
//! tokens CI makes: Debian's SoftHSM 2.6.1 (0x210A zero-pads before RFC 5649), kryoptic 1.5.4
//! (0x210B; writes an EC scalar without its leading zero bytes: P-521 on about half the keys,
//! P-256/P-384 on 1 in 256, every time on the edge cases; no secp256k1) and NSS softokn
//! (0x210B; init string in `PKCS11_INIT_ARGS`, a C_WrapKey size query that under-reports).

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
    assert_eq!(report["schema"], "byok-offline.check/1");
    assert_eq!(report["token"]["label"], token.label());
    let kinds = report["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["kind"].as_str().unwrap().to_string(), k.clone()))
        .collect();
    (report, kinds)
}

fn assert_verdict(kinds: &BTreeMap<String, Value>, kind: &str, verdict: &str, detail: &str) {
    let k = &kinds[kind];
    assert_eq!(k["verdict"], verdict, "{kind}: {k}");
    let text = k["detail"].as_str().unwrap();
    assert!(text.contains(detail), "{kind}: `{detail}` not in {k}");
}

/// The edge cases of `kind`: (tried, defective), none untested.
fn edge_cases(kinds: &BTreeMap<String, Value>, kind: &str) -> (u64, u64) {
    let e = &kinds[kind]["edge_cases"];
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
    }
    // P-256 and P-521 PKCS#8 lengths are fixed and never a multiple of 8: every key is padded.
    assert_eq!(kinds["EC P-256"]["defective"], 20);
    assert_eq!(kinds["EC P-521"]["tries"], 20);
    for kind in ["AES 128", "AES 192", "AES 256"] {
        assert_verdict(&kinds, kind, "ok", "");
        assert_eq!(kinds[kind]["tries"], 4);
    }
    // The edge cases: OpenSSL writes any scalar at full length, then 0x210A pads.
    for kind in ["EC P-384", "EC P-256K"] {
        assert_verdict(&kinds, kind, "ok", "");
        assert_eq!(edge_cases(&kinds, kind), (4, 0), "{kind}");
    }
    assert_eq!(edge_cases(&kinds, "EC P-256"), (4, 4));
    assert_eq!(edge_cases(&kinds, "EC P-521"), (5, 5));
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
    }
    // kryoptic writes CKA_VALUE as it holds it, and its generator drops the scalar's leading
    // zero bytes: the edge cases given without them show it on every run, for every curve.
    for (kind, short) in [
        (
            "EC P-256",
            "31-byte P-256 scalar; RFC 5915 requires 32 bytes",
        ),
        (
            "EC P-384",
            "47-byte P-384 scalar; RFC 5915 requires 48 bytes",
        ),
        (
            "EC P-521",
            "65-byte P-521 scalar; RFC 5915 requires 66 bytes",
        ),
    ] {
        assert_verdict(&kinds, kind, "non-conformant", short);
        // Where it showed: always for the edge case (a generated key may show it too, which
        // puts "in N of 20 throwaway keys" before this; the verdict does not change).
        assert_verdict(
            &kinds,
            kind,
            "non-conformant",
            "for a scalar whose top byte is zero",
        );
        assert_verdict(
            &kinds,
            kind,
            "non-conformant",
            "as the token's generator holds it",
        );
        // Top byte zero and top two bytes zero, each given without them; in full, right.
        let tried = if kind == "EC P-521" { 5 } else { 4 };
        assert_eq!(edge_cases(&kinds, kind), (tried, 2), "{kind}");
    }
    assert_eq!(kinds["EC P-521"]["tries"], 20);
    assert!(kinds["EC P-521"]["defective"].as_u64().unwrap() >= 1);
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
fn nss_checks_with_init_args_and_packages_through_the_size_query_retry() {
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
    // NSS too writes CKA_VALUE as it holds it (a short one comes out short), but its generator
    // keeps the leading zero bytes: the keys it makes, the only ones packaged, are right.
    for kind in ["EC P-256", "EC P-384", "EC P-521"] {
        assert_verdict(&kinds, kind, "ok", "generator keeps leading zero bytes");
        assert_eq!(edge_cases(&kinds, kind).1, 0, "{kind}");
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

    // A real package: the retry after CKR_BUFFER_TOO_SMALL is what makes it (logged at debug).
    let out = package(
        &token,
        "n",
        &["--kty", "EC", "--curve", "P-256"],
        &[("RUST_LOG", "byok_offline::raw=debug")],
    );
    let report = ok(&out);
    assert!(
        stderr(&out).contains("CKR_BUFFER_TOO_SMALL after the size query"),
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
