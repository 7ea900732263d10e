//! `byok-online` (the real binary) against kv-emulator over HTTPS, credentials through the
//! emulator's token endpoint.

mod common;

use byok_core::target::{Curve, KeyKind};
use byok_core::{KekTransfer, KeyId, TargetKey, b64};
use common::{start, start_as};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kek_create_download_import_verify_in_both_output_modes() {
    let env = start().await;
    let created = env
        .json(&[
            "kek",
            "create",
            "--name",
            "KEKforBYOK",
            "--size",
            "2048",
            "--out",
            "kek.transfer",
        ])
        .await;
    assert_eq!(created["schema"], "byok-online.kek/1");
    assert_eq!(created["key_size"], 2048);
    assert_eq!(created["dry_run"], false);
    let kid = created["kid"].as_str().unwrap();
    let transfer =
        KekTransfer::parse(&std::fs::read_to_string(env.path("kek.transfer")).unwrap()).unwrap();
    assert_eq!(transfer.kid.to_string(), kid);
    assert_eq!(
        created["public_key_sha256"],
        transfer.key.fingerprint().to_hex()
    );

    // Download in the three formats; human output names the kid.
    let out = env
        .run(&[
            "kek",
            "download",
            "--name",
            "KEKforBYOK",
            "--out",
            "again.transfer",
        ])
        .await;
    assert!(out.status.success());
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(
        human.contains(kid) && human.contains("key_size:"),
        "{human}"
    );
    assert_eq!(
        std::fs::read_to_string(env.path("again.transfer")).unwrap(),
        std::fs::read_to_string(env.path("kek.transfer")).unwrap()
    );
    let pem = env
        .json(&[
            "kek",
            "download",
            "-n",
            "KEKforBYOK",
            "--out",
            "kek.pem",
            "--format",
            "pem",
        ])
        .await;
    assert_eq!(first_key(&pem), "schema");
    assert_eq!(pem["schema"], "byok-online.kek/1");
    assert_eq!(pem["format"], "pem");
    env.json(&[
        "kek",
        "download",
        "--name",
        "KEKforBYOK",
        "--out",
        "kek.der",
        "--format",
        "der",
    ])
    .await;
    assert_eq!(
        std::fs::read(env.path("kek.der")).unwrap(),
        transfer.key.spki_der()
    );
    assert_eq!(
        std::fs::read_to_string(env.path("kek.pem")).unwrap(),
        transfer.key.to_pem()
    );

    // Import with a sidecar, then verify with the public key.
    let target = TargetKey::generate(KeyKind::Ec { curve: Curve::P384 }).unwrap();
    env.package(&env.path("kek.transfer"), &target, "t.byok", true);
    std::fs::write(env.path("t.pem"), target.public_key().unwrap().to_pem()).unwrap();
    let imported = env
        .json(&[
            "import",
            "--name",
            "target",
            "--byok-file",
            "t.byok",
            "--tags",
            "env=test",
        ])
        .await;
    assert_eq!(first_key(&imported), "schema");
    assert_eq!(imported["schema"], "byok-online.import/1");
    assert_eq!(imported["public_key_check"], "matches");
    assert_eq!(imported["key"]["kty"], "EC-HSM");
    assert_eq!(imported["key"]["kind"], "EC P-384");
    assert_eq!(imported["kind"], "EC P-384");
    assert_eq!(imported["new_version"], false);
    // The package's hash is a tag of the key, as batch-import tags its keys.
    let byok_sha =
        byok_core::Fingerprint::of_bytes(&std::fs::read(env.path("t.byok")).unwrap()).to_hex();
    assert_eq!(imported["byok_sha256"], byok_sha.as_str());
    assert_eq!(
        imported["key"]["tags"],
        json!({"byok-sha256": byok_sha, "env": "test"})
    );
    let verified = env
        .json(&["verify", "-n", "target", "--public-key", "t.pem"])
        .await;
    assert_eq!(verified["schema"], "byok-online.verify/1");
    assert_eq!(verified["signature_verified"], true);
    assert_eq!(verified["algorithm"], "ES384");
    let out = env
        .run(&["verify", "--name", "target", "--public-key", "t.pem"])
        .await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("verifies locally"));
    let shown = env.json(&["show", "-n", "target"]).await;
    assert_eq!(first_key(&shown), "schema");
    assert_eq!(shown["schema"], "byok-online.show/1");
    assert_eq!(shown["kid"], imported["key"]["kid"]);
    assert_eq!(shown["name"], "target");
    assert_eq!(shown["tags"]["byok-sha256"], byok_sha.as_str());
    let inspected = env.json(&["inspect", "t.byok"]).await;
    assert_eq!(first_key(&inspected), "schema");
    assert_eq!(inspected["schema"], "byok-online.inspect/1");
    assert_eq!(inspected["kek_name"], "KEKforBYOK");
    assert_eq!(inspected["sha256"], byok_sha.as_str());

    // Verify refuses another key's public key.
    let other = TargetKey::generate(KeyKind::Ec { curve: Curve::P384 }).unwrap();
    std::fs::write(env.path("other.pem"), other.public_key().unwrap().to_pem()).unwrap();
    env.fails(
        &["verify", "--name", "target", "--public-key", "other.pem"],
        "is not the local public key",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openssl_made_byok_imports_and_verifies() {
    // The .byok is built by the openssl CLI from the transfer file kek download wrote: an
    // implementation of the spec independent of this project.
    let env = start().await;
    env.json(&["kek", "create", "--name", "KEK", "--size", "3072"])
        .await;
    env.json(&["kek", "download", "--name", "KEK", "--out", "kek.transfer"])
        .await;
    let openssl = |args: &[&str]| {
        byok_tests::openssl(args, env.work.path());
    };
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        "t.pem",
    ]);
    openssl(&[
        "pkcs8", "-topk8", "-nocrypt", "-in", "t.pem", "-outform", "DER", "-out", "t.der",
    ]);
    openssl(&["pkey", "-in", "t.pem", "-pubout", "-out", "t.pub.pem"]);
    byok_tests::try_openssl_wrap(env.work.path(), "t.der", "kek.transfer").unwrap();
    let mut ct = std::fs::read(env.path("rsa.bin")).unwrap();
    ct.extend(std::fs::read(env.path("kwp.bin")).unwrap());
    let kid = KekTransfer::parse(&std::fs::read_to_string(env.path("kek.transfer")).unwrap())
        .unwrap()
        .kid;
    let file = json!({
        "schema_version": "1.0.0",
        "header": {"kid": kid.to_string(), "alg": "dir", "enc": "CKM_RSA_AES_KEY_WRAP"},
        "ciphertext": b64::encode(&ct),
        "generator": "openssl CLI",
    });
    std::fs::write(env.path("openssl.byok"), serde_json::to_vec(&file).unwrap()).unwrap();
    let imported = env
        .json(&[
            "import",
            "--name",
            "from-openssl",
            "--byok-file",
            "openssl.byok",
            "--kty",
            "RSA",
            "--expect-public-key",
            "t.pub.pem",
        ])
        .await;
    assert_eq!(imported["public_key_check"], "matches");
    let verified = env
        .json(&[
            "verify",
            "--name",
            "from-openssl",
            "--public-key",
            "t.pub.pem",
        ])
        .await;
    assert_eq!(verified["signature_verified"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_clear_error() {
    let env = start().await;
    env.with_kek().await;
    let target = TargetKey::generate(KeyKind::Ec { curve: Curve::P256 }).unwrap();
    env.package(&env.path("kek.transfer"), &target, "good.byok", true);
    let transfer =
        KekTransfer::parse(&std::fs::read_to_string(env.path("kek.transfer")).unwrap()).unwrap();
    let not_created = |name: &'static str| {
        let env = &env;
        async move {
            let out = env.run(&["show", "--name", name]).await;
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("was not found"),
                "{name} exists"
            );
        }
    };

    // A kid on another vault: refused before anything is sent.
    let foreign =
        KeyId::parse("https://contoso.vault.azure.net/keys/KEK/0123456789abcdef0123456789abcdef")
            .unwrap();
    common::package_for(
        &foreign,
        &transfer.key,
        &target,
        &env.path("foreign.byok"),
        false,
    );
    env.fails(
        &[
            "import",
            "--name",
            "t1",
            "--byok-file",
            "foreign.byok",
            "--kty",
            "EC",
        ],
        "same vault",
    )
    .await;
    not_created("t1").await;

    // A KEK with more operations than import.
    let (status, multi) = env
        .create_raw("multi", json!({"kty": "RSA-HSM", "key_size": 2048}))
        .await;
    assert_eq!(status, 200);
    let multi_kid = KeyId::parse(multi["key"]["kid"].as_str().unwrap()).unwrap();
    common::package_for(
        &multi_kid,
        &transfer.key,
        &target,
        &env.path("multi.byok"),
        false,
    );
    env.fails(
        &[
            "import",
            "--name",
            "t2",
            "--byok-file",
            "multi.byok",
            "--kty",
            "EC",
        ],
        "`import` as its only operation",
    )
    .await;
    not_created("t2").await;

    // A KEK version that does not exist.
    let missing = KeyId::parse(&format!(
        "{}/keys/KEK/0123456789abcdef0123456789abcdef",
        transfer.kid.vault()
    ))
    .unwrap();
    common::package_for(
        &missing,
        &transfer.key,
        &target,
        &env.path("missing.byok"),
        false,
    );
    env.fails(
        &[
            "import",
            "--name",
            "t3",
            "--byok-file",
            "missing.byok",
            "--kty",
            "EC",
        ],
        "does not exist in this vault",
    )
    .await;

    // A tampered package: the vault refuses it with its code and message.
    let mut v: Value =
        serde_json::from_slice(&std::fs::read(env.path("good.byok")).unwrap()).unwrap();
    let mut ct = b64::decode("c", v["ciphertext"].as_str().unwrap()).unwrap();
    let last = ct.len() - 1;
    ct[last] ^= 1;
    v["ciphertext"] = json!(b64::encode(&ct));
    std::fs::write(env.path("tampered.byok"), serde_json::to_vec(&v).unwrap()).unwrap();
    env.fails(
        &[
            "import",
            "--name",
            "t4",
            "--byok-file",
            "tampered.byok",
            "--kty",
            "EC",
        ],
        "HTTP 400 BadParameter",
    )
    .await;
    not_created("t4").await;

    // Wrong --kty against the sidecar; a sidecar of another file; no kty at all.
    env.fails(
        &[
            "import",
            "--name",
            "t5",
            "--byok-file",
            "good.byok",
            "--kty",
            "RSA",
            "--size",
            "2048",
        ],
        "sidecar says",
    )
    .await;
    std::fs::copy(
        env.path("good.byok.sidecar.json"),
        env.path("multi.byok.sidecar.json"),
    )
    .unwrap();
    env.fails(
        &["import", "--name", "t6", "--byok-file", "multi.byok"],
        "describes another package",
    )
    .await;
    std::fs::remove_file(env.path("multi.byok.sidecar.json")).unwrap();
    env.fails(
        &["import", "--name", "t7", "--byok-file", "missing.byok"],
        "--kty",
    )
    .await;
    // Wrong --kty without a sidecar: the vault finds the plaintext is not RSA.
    env.package(&env.path("kek.transfer"), &target, "nosidecar.byok", false);
    env.fails(
        &[
            "import",
            "--name",
            "t8",
            "--byok-file",
            "nosidecar.byok",
            "--kty",
            "RSA",
        ],
        "declared kty",
    )
    .await;
    not_created("t8").await;

    // Unknown key, existing output file, malformed .byok.
    env.fails(&["show", "--name", "nope"], "was not found")
        .await;
    env.fails(
        &["kek", "download", "--name", "nope", "--out", "x.transfer"],
        "was not found",
    )
    .await;
    assert!(!env.path("x.transfer").exists());
    env.fails(
        &["kek", "download", "--name", "KEK", "--out", "kek.transfer"],
        "already exists",
    )
    .await;
    env.fails(
        &["kek", "create", "--name", "KEK2", "--out", "kek.transfer"],
        "already exists",
    )
    .await;
    not_created("KEK2").await;
    std::fs::write(env.path("junk.byok"), b"{\"schema_version\":\"2.0\"}").unwrap();
    env.fails(
        &[
            "import",
            "--name",
            "t9",
            "--byok-file",
            "junk.byok",
            "--kty",
            "EC",
        ],
        "not a .byok",
    )
    .await;
    env.fails(
        &["kek", "download", "--name", "multi", "--out", "m.transfer"],
        "only operation",
    )
    .await;

    // China: refused before any request.
    let out = env
        .run_raw(
            vec![
                "--vault-url".into(),
                "https://contoso.vault.azure.cn".into(),
                "import".into(),
                "--name".into(),
                "t".into(),
                "--byok-file".into(),
                "good.byok".into(),
            ],
            vec![],
        )
        .await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("not offered in Azure China"));

    // Unreachable vault.
    let conn = env.conn();
    let out = env
        .run_raw(
            vec![
                "--vault-url".into(),
                "https://127.0.0.1:1".into(),
                "--ca-cert".into(),
                conn.ca_cert.display().to_string(),
                "--authority-host".into(),
                conn.authority_host.clone(),
                "--auth".into(),
                "client-secret".into(),
                "show".into(),
                "--name".into(),
                "KEK".into(),
            ],
            vec![
                ("AZURE_TENANT_ID", conn.tenant_id.clone()),
                ("AZURE_CLIENT_ID", conn.client_id.clone()),
                ("AZURE_CLIENT_SECRET", conn.client_secret.clone()),
            ],
        )
        .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("cannot reach the vault"),
        "{err}"
    );
}

/// The emulator's reader client has no role on the vault: RBAC's 403 (innererror
/// ForbiddenByRbac) names the action it lacked, and so does the error, with the role to assign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_without_a_role_is_refused_and_told_the_action() {
    let env = start().await;
    let out = env
        .run(&[
            "--emulator-identity",
            "reader",
            "kek",
            "create",
            "--name",
            "K",
            "--size",
            "2048",
        ])
        .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    // Its first request reads the key (keys/read) or creates it (keys/create/action).
    assert!(
        err.contains("ForbiddenByRbac") && err.contains("Microsoft.KeyVault/vaults/keys/"),
        "{err}"
    );
    assert!(err.contains("Key Vault Crypto"), "{err}");
    // The same flags with the emulator's own client work.
    let out = env
        .run(&["kek", "create", "--name", "K", "--size", "2048"])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_secret_from_the_environment_and_a_wrong_one() {
    let env = start().await;
    let conn = env.conn();
    // The emulator's URL, address and CA from its connection.json; the credential from
    // --auth (the environment's client secret), with challenge verification on.
    let args = |cmd: &[&str]| {
        let mut a: Vec<String> = vec!["--emulator".into(), env.state.path().display().to_string()];
        a.extend(cmd.iter().map(|s| s.to_string()));
        a
    };
    let vars = |secret: &str| {
        vec![
            ("AZURE_TENANT_ID", conn.tenant_id.clone()),
            ("AZURE_CLIENT_ID", conn.client_id.clone()),
            ("AZURE_CLIENT_SECRET", secret.to_string()),
        ]
    };
    // auto picks the environment's client secret first.
    let out = env
        .run_raw(
            args(&[
                "--auth", "auto", "kek", "create", "--name", "K", "--size", "2048",
            ]),
            vars(&conn.client_secret),
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env
        .run_raw(
            args(&["--auth", "client-secret", "show", "--name", "K"]),
            vars("wrong-secret"),
        )
        .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("7000215") || err.contains("Invalid client secret"),
        "{err}"
    );
    assert!(!err.contains("wrong-secret"), "secret in the error: {err}");
    // Reached by its address, https://127.0.0.1:PORT, the vault's challenge (resource
    // https://vault.azure.net:PORT) is no parent of the host: the SDK's verification, on,
    // refuses it before any token is sent.
    let port = conn.vault_address.unwrap().port();
    let by_address = vec![
        "--vault-url".to_string(),
        format!("https://127.0.0.1:{port}"),
        "--ca-cert".into(),
        conn.ca_cert.display().to_string(),
        "--authority-host".into(),
        conn.authority_host.clone(),
        "--auth".into(),
        "client-secret".into(),
        "show".into(),
        "--name".into(),
        "K".into(),
    ];
    let out = env.run_raw(by_address, vars(&conn.client_secret)).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("challenge"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_import_is_resumable_and_refuses_foreign_keys() {
    let env = start().await;
    env.with_kek().await;
    std::fs::create_dir(env.path("pkgs")).unwrap();
    let manifest = "[[key]]\nname = \"k1\"\nkty = \"EC\"\ncurve = \"P-256\"\ntags = { team = \"a\" }\n\n[[key]]\nname = \"k2\"\nkty = \"EC\"\ncurve = \"P-256\"\n";
    std::fs::write(env.path("keys.toml"), manifest).unwrap();
    for name in ["k1", "k2"] {
        let target = TargetKey::generate(KeyKind::Ec { curve: Curve::P256 }).unwrap();
        env.package(
            &env.path("kek.transfer"),
            &target,
            &format!("pkgs/KeyTransferPackage-{name}.byok"),
            true,
        );
    }
    // k2 already exists in the vault with other material.
    let other = TargetKey::generate(KeyKind::Ec { curve: Curve::P256 }).unwrap();
    env.package(&env.path("kek.transfer"), &other, "other.byok", true);
    env.json(&["import", "--name", "k2", "--byok-file", "other.byok"])
        .await;

    let batch = ["batch-import", "--manifest", "keys.toml", "--dir", "pkgs"];
    let with = |extra: &[&'static str]| [&batch[..], extra].concat();

    // A dry run: every check, nothing written (no key, no log, no report).
    let out = env.run(&with(&["--dry-run", "-o", "json"])).await;
    assert!(
        !out.status.success(),
        "k2 cannot be imported without --new-version"
    );
    let dry: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(first_key(&dry), "schema");
    assert_eq!(dry["schema"], "byok-online.batch-import/1");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(names(&dry), ["k1", "k2"]);
    assert_eq!(dry["keys"][0]["outcome"], "would import");
    assert_eq!(dry["keys"][1]["outcome"], "failed");
    assert_eq!(
        (dry["would_import"].as_u64(), dry["report"].is_null()),
        (Some(1), true)
    );
    assert_eq!(dry["log_head"], byok_core::evidence::GENESIS);
    assert!(!env.path("pkgs/import-report.json").exists());
    assert!(!env.path("pkgs/ceremony-log.jsonl").exists());
    assert_eq!(env.versions("k1").await, 0);

    let out = env.run(&batch).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 2 keys failed"));
    let human = String::from_utf8_lossy(&out.stdout);
    let report: Value =
        serde_json::from_slice(&std::fs::read(env.path("pkgs/import-report.json")).unwrap())
            .unwrap();
    assert_eq!(first_key(&report), "schema");
    assert_eq!(report["imported"], 1);
    assert_eq!(report["failed"], 1);
    assert_eq!(names(&report), ["k1", "k2"]);
    assert!(
        report["keys"][1]["error"]
            .as_str()
            .unwrap()
            .contains("did not come from this package")
    );
    let head = format!(" {} (record it in the minutes)", log_head(&env));
    assert!(
        human
            .lines()
            .any(|l| l.starts_with("log_head:") && l.ends_with(&head)),
        "{human}"
    );
    assert_eq!(report["log_head"], log_head(&env).as_str());
    let shown = env.json(&["show", "--name", "k1"]).await;
    assert_eq!(shown["tags"]["team"], "a");
    assert_eq!(shown["tags"]["byok-sha256"].as_str().unwrap().len(), 64);

    // --new-version: k1 is not imported twice, k2 gets a version (a dry run first).
    let dry = env.json(&with(&["--new-version", "--dry-run"])).await;
    assert_eq!(dry["keys"][0]["outcome"], "already imported");
    assert_eq!(dry["keys"][1]["outcome"], "would import");
    assert_eq!(dry["keys"][1]["new_version"], true);
    assert_eq!(env.versions("k2").await, 1);
    let report = env.json(&with(&["--new-version"])).await;
    assert_eq!(
        (
            report["imported"].as_u64(),
            report["already_imported"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(report["keys"][1]["new_version"], true);
    assert_eq!(env.versions("k2").await, 2);
    assert_eq!(report["log_head"], log_head(&env).as_str());

    // Now k2's current version carries its package's tag: a plain rerun skips both.
    let report = env.json(&batch).await;
    assert_eq!(report["already_imported"], 2);
    let log = std::fs::read_to_string(env.path("pkgs/ceremony-log.jsonl")).unwrap();
    // Five imports or confirmations, each followed by its signature proof.
    assert_eq!(byok_core::evidence::verify(&log), Ok(10));
    assert_eq!(log.matches("\"event\":\"imported\"").count(), 2);
    assert_eq!(log.matches("\"event\":\"verified\"").count(), 5);
}

/// The key names of a batch report, in their order.
fn names(report: &Value) -> Vec<&str> {
    report["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect()
}

/// The SHA-256 of the batch's evidence log's last line.
fn log_head(env: &common::Env) -> String {
    let log = std::fs::read_to_string(env.path("pkgs/ceremony-log.jsonl")).unwrap();
    byok_core::evidence::link_after(byok_core::evidence::last_line(&log))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_is_not_the_hsms_exits_3_and_a_usage_error_exits_2() {
    let env = start().await;
    env.with_kek().await;
    let target = TargetKey::generate(KeyKind::Ec { curve: Curve::P256 }).unwrap();
    env.package(&env.path("kek.transfer"), &target, "t.byok", true);
    env.json(&["import", "--name", "t", "--byok-file", "t.byok"])
        .await;
    let other = TargetKey::generate(KeyKind::Ec { curve: Curve::P256 }).unwrap();
    std::fs::write(env.path("other.pem"), other.public_key().unwrap().to_pem()).unwrap();

    // verify with another key's public key: exit 3, in both output modes.
    let out = env
        .run(&["verify", "--name", "t", "--public-key", "other.pem"])
        .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("verification failed: the vault's key")
            && err.contains("is not the HSM's key"),
        "{err}"
    );
    let out = env
        .run(&[
            "--output",
            "json",
            "verify",
            "--name",
            "t",
            "--public-key",
            "other.pem",
        ])
        .await;
    assert_eq!(out.status.code(), Some(3));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["exit_code"], 3);

    // import whose vault key is not the expected one: exit 3 too.
    let out = env
        .run(&[
            "import",
            "--name",
            "t2",
            "--byok-file",
            "t.byok",
            "--expect-public-key",
            "other.pem",
        ])
        .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("is not the expected one"), "{err}");

    // Command-line mistakes: exit 2, and nothing reaches the vault.
    for args in [
        &[
            "import",
            "--name",
            "u",
            "--byok-file",
            "t.byok",
            "--ops",
            "nonsense",
        ][..],
        &[
            "import",
            "--name",
            "u",
            "--byok-file",
            "t.byok",
            "--ops",
            "import",
        ],
        &[
            "import",
            "--name",
            "u",
            "--byok-file",
            "t.byok",
            "--not-before",
            "soon",
        ],
        &[
            "import",
            "--name",
            "u",
            "--byok-file",
            "t.byok",
            "--kty",
            "DSA",
        ],
        &["import", "--name", "u"],
        &["kek", "create", "--name", "K2", "--size", "1024"],
    ] {
        let out = env.run(args).await;
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for name in ["u", "K2"] {
        env.fails(&["show", "--name", name], "was not found").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_written_is_readable_by_all_and_writable_by_the_owner() {
    use std::os::unix::fs::PermissionsExt;
    // Managed HSM: the only flavor that imports AES keys, which prove-aes needs.
    let env = start_as(kv_emulator::Flavor::ManagedHsm).await;
    env.with_kek().await;
    for (file, format) in [
        ("again.transfer", "transfer"),
        ("kek.pem", "pem"),
        ("kek.der", "der"),
    ] {
        env.json(&[
            "kek", "download", "--name", "KEK", "--out", file, "--format", format,
        ])
        .await;
    }
    let aes = TargetKey::generate(KeyKind::Oct { bits: 256 }).unwrap();
    env.package(&env.path("kek.transfer"), &aes, "aes.byok", true);
    env.json(&["import", "--name", "aes", "--byok-file", "aes.byok"])
        .await;
    let proof = env
        .json(&["prove-aes", "-n", "aes", "--out", "challenge.json"])
        .await;
    assert_eq!(first_key(&proof), "schema");
    assert_eq!(proof["schema"], "byok-online.prove-aes/1");
    assert_eq!(proof["alg"], "A256GCM");
    assert_eq!(
        proof["offline_command"],
        "byok-offline prove-aes --label aes --challenge challenge.json"
    );
    let human = env
        .ok(&["prove-aes", "-n", "aes", "--out", "challenge2.json"])
        .await;
    assert!(
        human.contains("byok-offline prove-aes --label aes --challenge challenge2.json")
            && human.contains("if it differs from the vault name aes"),
        "{human}"
    );
    std::fs::create_dir(env.path("pkgs")).unwrap();
    std::fs::write(
        env.path("keys.toml"),
        "[[key]]\nname = \"b1\"\nkty = \"EC\"\ncurve = \"P-256\"\n",
    )
    .unwrap();
    let target = TargetKey::generate(KeyKind::Ec { curve: Curve::P256 }).unwrap();
    env.package(
        &env.path("kek.transfer"),
        &target,
        "pkgs/KeyTransferPackage-b1.byok",
        true,
    );
    // Twice: the first run creates the log and the report, the second appends and replaces.
    for _ in 0..2 {
        env.json(&["batch-import", "--manifest", "keys.toml", "--dir", "pkgs"])
            .await;
        for file in [
            "kek.transfer",
            "again.transfer",
            "kek.pem",
            "kek.der",
            "challenge.json",
            "pkgs/import-report.json",
            "pkgs/ceremony-log.jsonl",
        ] {
            let mode = std::fs::metadata(env.path(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o644, "{file}: {:o}", mode & 0o777);
        }
    }
}

/// The first field of a JSON document, as printed (serde_json keeps the order).
fn first_key(doc: &Value) -> &str {
    doc.as_object()
        .and_then(|m| m.keys().next())
        .map(String::as_str)
        .unwrap_or_default()
}
