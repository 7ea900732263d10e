//! byok-online against what recordings show the service doing (issue 24), each test citing
//! its source (docs/azure-behaviour.md): RSA keys whose `e` comes back as `AAEAAQ`, and `.byok`
//! packages shaped by other vendors' tools.

mod common;

use byok_core::target::{Curve, KeyKind};
use byok_core::{KekTransfer, TargetKey};
use common::start_on;
use serde_json::{Value, json};

/// Source: Azure/azure-sdk-for-js keys recordings of 2020–2022 (search index ids 2884195844,
/// 3599864177; docs/azure-behaviour.md 7h): older vault keys, RSA-HSM KEKs included, come back
/// with `"e":"AAEAAQ"`, current ones with `"AQAB"`. The same keys served both ways (a persisted
/// emulator restarted with `--legacy-rsa-exponent`): `kek download` writes the same transfer
/// file and PEM, `import` matches the same public key, `verify` passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_exponent_forms_give_the_same_files_and_checks() {
    let persist = |c: &mut kv_emulator::Config| c.persist = true;
    let env = start_on(
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        persist,
    )
    .await;
    env.with_kek().await;
    let target = TargetKey::generate(KeyKind::Rsa { bits: 2048 }).unwrap();
    env.package(&env.path("kek.transfer"), &target, "t.byok", true);
    std::fs::write(env.path("t.pem"), target.public_key().unwrap().to_pem()).unwrap();
    let imported = env
        .json(&["import", "--name", "rsa", "--byok-file", "t.byok"])
        .await;
    assert_eq!(imported["public_key_check"], "matches");
    let download = |out: &'static str, format: &'static str| {
        [
            "kek", "download", "--name", "KEK", "--out", out, "--format", format,
        ]
    };
    env.json(&download("now.transfer", "transfer")).await;
    env.json(&download("now.pem", "pem")).await;
    let (state, work) = env.stop().await;

    let env = start_on(state, work, |c| {
        c.persist = true;
        c.legacy_rsa_exponent = true;
    })
    .await;
    let (_, served) = env.rest(reqwest::Method::GET, "/keys/KEK", None).await;
    assert_eq!(served["key"]["e"], "AAEAAQ", "{served}");
    env.json(&download("old.transfer", "transfer")).await;
    env.json(&download("old.pem", "pem")).await;
    let read = |f: &str| std::fs::read_to_string(env.path(f)).unwrap();
    assert_eq!(read("old.transfer"), read("now.transfer"));
    assert_eq!(read("old.pem"), read("now.pem"));
    KekTransfer::parse(&read("old.transfer")).unwrap();
    let verified = env
        .json(&["verify", "--name", "rsa", "--public-key", "t.pem"])
        .await;
    assert_eq!(verified["public_keys_equal"], true);
    assert_eq!(verified["signature_verified"], true);
    // An import under the KEK as the legacy vault serves it matches too.
    let again = TargetKey::generate(KeyKind::Rsa { bits: 2048 }).unwrap();
    env.package(&env.path("old.transfer"), &again, "again.byok", true);
    let imported = env
        .json(&["import", "--name", "rsa2", "--byok-file", "again.byok"])
        .await;
    assert_eq!(imported["public_key_check"], "matches");
}

/// Source: the BYOK specification (MicrosoftDocs/azure-security-docs
/// `articles/key-vault/keys/byok-specification.md`: "generator = informational field") and
/// vendor tools' packages (Securosys's pretty-printed example, search index id 45470259948;
/// the service's own release blobs have no generator), docs/azure-behaviour.md 4b. A package
/// without `generator`, with members of a vendor's own, pretty-printed: the check before the
/// upload reads it as Azure does and says what it ignored (a warning on stderr, and
/// `package_ignored` in the report); the import goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_shaped_packages_import_and_what_was_ignored_is_said() {
    let env = start_on(
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        |_| {},
    )
    .await;
    env.with_kek().await;
    let target = TargetKey::generate(KeyKind::Ec { curve: Curve::P256 }).unwrap();
    env.package(&env.path("kek.transfer"), &target, "strict.byok", false);
    let mut package: Value =
        serde_json::from_slice(&std::fs::read(env.path("strict.byok")).unwrap()).unwrap();
    package.as_object_mut().unwrap().remove("generator");
    package["vendor_info"] = json!({"tool": "ExampleBYOK 3.1", "hsm": "Example HSM 7"});
    package["header"]["x5t"] = json!("abc");
    std::fs::write(
        env.path("vendor.byok"),
        serde_json::to_vec_pretty(&package).unwrap(),
    )
    .unwrap();
    std::fs::write(env.path("t.pem"), target.public_key().unwrap().to_pem()).unwrap();
    let args = [
        "import",
        "--name",
        "vendor",
        "--byok-file",
        "vendor.byok",
        "--kty",
        "EC",
        "--curve",
        "P-256",
        "--expect-public-key",
        "t.pem",
    ];
    let out = env
        .run(&[&["--output", "json"][..], &args[..]].concat())
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["public_key_check"], "matches");
    let ignored: Vec<&str> = report["package_ignored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(ignored.len(), 3, "{ignored:?}");
    assert!(ignored[0].contains("`vendor_info`"), "{ignored:?}");
    assert!(ignored[1].contains("`header.x5t`"), "{ignored:?}");
    assert!(ignored[2].contains("no `generator`"), "{ignored:?}");
    for note in &ignored {
        assert!(stderr.contains(note), "{note} not said on stderr: {stderr}");
    }
    // A package exactly in the format says nothing of the kind.
    let strict = env
        .json(&[
            "import",
            "--name",
            "strict",
            "--byok-file",
            "strict.byok",
            "--kty",
            "EC",
            "--curve",
            "P-256",
        ])
        .await;
    assert!(strict.get("package_ignored").is_none(), "{strict}");
}
