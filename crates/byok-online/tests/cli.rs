//! `byok-online` (the real binary) against kv-emulator over HTTPS, credentials through the
//! emulator's token endpoint.

mod common;

use byok_core::target::{Curve, KeyKind};
use byok_core::{KekTransfer, KeyId, TargetKey, b64};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Output;

struct Env {
    _emu: kv_emulator::Running,
    state: tempfile::TempDir,
    work: tempfile::TempDir,
}

async fn start() -> Env {
    start_as(kv_emulator::Flavor::Vault).await
}

async fn start_as(flavor: kv_emulator::Flavor) -> Env {
    let state = tempfile::tempdir().unwrap();
    let config = kv_emulator::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        state_dir: state.path().to_path_buf(),
        flavor,
        persist: false,
        token_lifetime_secs: 3600,
        accept_zero_padded_kwp: false,
        fault_status: None,
        public_url: None,
    };
    let emu = kv_emulator::start(config).await.unwrap();
    Env {
        _emu: emu,
        state,
        work: tempfile::tempdir().unwrap(),
    }
}

impl Env {
    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    fn conn(&self) -> kv_emulator::Connection {
        kv_emulator::Connection::load(self.state.path()).unwrap()
    }

    /// Runs byok-online with `--emulator STATE_DIR`.
    async fn run(&self, args: &[&str]) -> Output {
        let mut full = vec![
            "--emulator".to_string(),
            self.state.path().display().to_string(),
        ];
        full.extend(args.iter().map(|s| s.to_string()));
        self.run_raw(full, vec![]).await
    }

    async fn run_raw(&self, args: Vec<String>, env: Vec<(&'static str, String)>) -> Output {
        let dir = self.work.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_byok-online"));
            cmd.args(&args).current_dir(dir);
            for var in [
                "AZURE_TENANT_ID",
                "AZURE_CLIENT_ID",
                "AZURE_CLIENT_SECRET",
                "BYOK_VAULT_URL",
                "AZURE_KEYVAULT_NAME",
            ] {
                cmd.env_remove(var);
            }
            cmd.envs(env);
            cmd.output().unwrap()
        })
        .await
        .unwrap()
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--output", "json"];
        a.extend_from_slice(args);
        let out = self.run(&a).await;
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    async fn fails(&self, args: &[&str], needle: &str) {
        let out = self.run(args).await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            err.contains(needle),
            "{args:?}: expected `{needle}` in {err}"
        );
        assert!(!err.contains(&self.conn().client_secret), "secret leaked");
    }

    /// Writes a .byok (and optionally its sidecar) for `target` under the transfer file's KEK.
    fn package(&self, transfer: &Path, target: &TargetKey, file: &str, sidecar: bool) -> PathBuf {
        let t = KekTransfer::parse(&std::fs::read_to_string(transfer).unwrap()).unwrap();
        common::package_for(&t.kid, &t.key, target, &self.path(file), sidecar)
    }
}

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
    assert_eq!(created["key_size"], 2048);
    let kid = created["kid"].as_str().unwrap();
    let transfer =
        KekTransfer::parse(&std::fs::read_to_string(env.path("kek.transfer")).unwrap()).unwrap();
    assert_eq!(transfer.kid.to_string(), kid);
    assert_eq!(created["sha256"], transfer.key.fingerprint().to_hex());

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
    assert!(String::from_utf8_lossy(&out.stdout).contains(kid));
    assert_eq!(
        std::fs::read_to_string(env.path("again.transfer")).unwrap(),
        std::fs::read_to_string(env.path("kek.transfer")).unwrap()
    );
    env.json(&[
        "kek",
        "download",
        "--name",
        "KEKforBYOK",
        "--out",
        "kek.pem",
        "--format",
        "pem",
    ])
    .await;
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
    assert_eq!(imported["public_key_check"], "matches");
    assert_eq!(imported["key"]["kty"], "EC-HSM");
    assert_eq!(imported["key"]["kind"], "EC P-384");
    assert_eq!(imported["key"]["tags"], json!({"env": "test"}));
    let verified = env
        .json(&["verify", "--name", "target", "--public-key", "t.pem"])
        .await;
    assert_eq!(verified["signature_verified"], true);
    assert_eq!(verified["algorithm"], "ES384");
    let out = env
        .run(&["verify", "--name", "target", "--public-key", "t.pem"])
        .await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("verifies locally"));
    let shown = env.json(&["show", "--name", "target"]).await;
    assert_eq!(shown["kid"], imported["key"]["kid"]);
    let inspected = env.json(&["inspect", "t.byok"]).await;
    assert_eq!(inspected["kek_name"], "KEKforBYOK");

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
    openssl(&["rand", "-out", "aes.bin", "32"]);
    openssl(&[
        "pkeyutl",
        "-encrypt",
        "-pubin",
        "-inkey",
        "kek.transfer",
        "-pkeyopt",
        "rsa_padding_mode:oaep",
        "-pkeyopt",
        "rsa_oaep_md:sha1",
        "-pkeyopt",
        "rsa_mgf1_md:sha1",
        "-in",
        "aes.bin",
        "-out",
        "rsa.bin",
    ]);
    let aes = hex::encode(std::fs::read(env.path("aes.bin")).unwrap());
    openssl(&[
        "enc",
        "-id-aes256-wrap-pad",
        "-K",
        &aes,
        "-iv",
        "A65959A6",
        "-in",
        "t.der",
        "-out",
        "kwp.bin",
    ]);
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
    with_kek(&env).await;
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
    let (status, multi) =
        create_raw(&env, "multi", json!({"kty": "RSA-HSM", "key_size": 2048})).await;
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
                "--no-verify-challenge-resource".into(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_secret_from_the_environment_and_a_wrong_one() {
    let env = start().await;
    let conn = env.conn();
    let args = |cmd: &[&str]| {
        let mut a: Vec<String> = vec![
            "--vault-url".into(),
            conn.vault_url.clone(),
            "--ca-cert".into(),
            conn.ca_cert.display().to_string(),
            "--authority-host".into(),
            conn.authority_host.clone(),
            "--no-verify-challenge-resource".into(),
        ];
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
            args(&["kek", "create", "--name", "K", "--size", "2048"]),
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
    // Without --no-verify-challenge-resource the SDK refuses the emulator's challenge.
    let mut strict = args(&["show", "--name", "K"]);
    strict.retain(|a| a != "--no-verify-challenge-resource");
    let out = env.run_raw(strict, vars(&conn.client_secret)).await;
    assert!(!out.status.success());
}

async fn create_raw(env: &Env, name: &str, body: Value) -> (u16, Value) {
    let conn = env.conn();
    let ca = std::fs::read(&conn.ca_cert).unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .build()
        .unwrap();
    let token: Value = http
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            conn.authority_host, conn.tenant_id
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", conn.client_id.as_str()),
            ("client_secret", conn.client_secret.as_str()),
            ("scope", "https://vault.azure.net/.default"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resp = http
        .post(format!(
            "{}/keys/{name}/create?api-version=7.4",
            conn.vault_url
        ))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_import_is_resumable_and_refuses_foreign_keys() {
    let env = start().await;
    with_kek(&env).await;
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

    let out = env
        .run(&["batch-import", "--manifest", "keys.toml", "--dir", "pkgs"])
        .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 2 keys failed"));
    let report: Value =
        serde_json::from_slice(&std::fs::read(env.path("pkgs/import-report.json")).unwrap())
            .unwrap();
    assert_eq!(report["imported"], 1);
    assert_eq!(report["failed"], 1);
    let k2 = report["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "k2")
        .unwrap();
    assert!(
        k2["error"]
            .as_str()
            .unwrap()
            .contains("did not come from this package")
    );
    let shown = env.json(&["show", "--name", "k1"]).await;
    assert_eq!(shown["tags"]["team"], "a");
    assert_eq!(shown["tags"]["byok-sha256"].as_str().unwrap().len(), 64);

    // Rerun after removing k2 from the manifest: k1 is not imported twice.
    std::fs::write(
        env.path("keys.toml"),
        &manifest[..manifest.find("\n\n").unwrap() + 1],
    )
    .unwrap();
    let report = env
        .json(&["batch-import", "--manifest", "keys.toml", "--dir", "pkgs"])
        .await;
    assert_eq!(
        (
            report["imported"].as_u64(),
            report["already_imported"].as_u64()
        ),
        (Some(0), Some(1))
    );
    let log = std::fs::read_to_string(env.path("pkgs/ceremony-log.jsonl")).unwrap();
    assert_eq!(byok_core::evidence::verify(&log), Ok(2));
    assert_eq!(log.matches("\"event\":\"imported\"").count(), 1);
}

/// A KEK in `env`'s vault and its transfer file `kek.transfer`.
async fn with_kek(env: &Env) {
    env.json(&[
        "kek",
        "create",
        "--name",
        "KEK",
        "--size",
        "2048",
        "--out",
        "kek.transfer",
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_is_not_the_hsms_exits_3_and_a_usage_error_exits_2() {
    let env = start().await;
    with_kek(&env).await;
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
    with_kek(&env).await;
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
    env.json(&["prove-aes", "--name", "aes", "--out", "challenge.json"])
        .await;
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
