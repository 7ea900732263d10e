//! What scripts and shells read from the real binary: every command's JSON document leads with
//! its `schema`, `--query` and `-o tsv` work on it, `--help` lists the token flags only where
//! a token is used, completions and man pages are generated, and the PIN flags never echo a
//! value that may be the PIN.

mod common;

use common::{Hsm, challenge_under, kek_pair, ok, stderr};
use serde_json::Value;
use std::process::{Command, Output};

/// The binary with no token around it.
fn bare(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_byok-offline"))
        .args(args)
        .env_remove("PKCS11_MODULE")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `-o json ARGS` succeeds and prints a document whose first field is `schema: SCHEMA`.
fn document(hsm: &Hsm, schema: &str, args: &[&str]) -> Value {
    let mut all = vec!["-o", "json"];
    all.extend_from_slice(args);
    let out = hsm.run(&all);
    let report = ok(&out);
    let text = stdout(&out);
    let first = format!("{{\n  \"schema\": \"{schema}\",");
    assert!(text.starts_with(&first), "{args:?}: {text}");
    report
}

/// An AES-256 key the test knows, put on the token with pkcs11-tool (OpenSC, which the test
/// kit needs for kryoptic): `generate` keeps its keys sensitive, so no challenge could be
/// made for one of them.
fn known_aes_key(hsm: &Hsm, label: &str, key: &[u8; 32]) {
    std::fs::write(hsm.path("aes.bin"), key).unwrap();
    let out = hsm
        .command("pkcs11-tool")
        .arg("--module")
        .arg(hsm.module())
        .args(["--login", "--pin", common::PIN, "--write-object", "aes.bin"])
        .args([
            "--type",
            "secrkey",
            "--key-type",
            "AES:32",
            "--label",
            label,
        ])
        .args(["--usage-decrypt"])
        .output()
        .expect("pkcs11-tool (OpenSC) is installed wherever the test kit runs");
    assert!(out.status.success(), "pkcs11-tool: {}", stderr(&out));
}

#[test]
fn every_document_leads_with_its_schema() {
    let hsm = Hsm::new();
    let (_, kek) = kek_pair(2048);
    let transfer = hsm.transfer_file(&kek);
    let transfer = transfer.to_str().unwrap();
    let tokens = document(&hsm, "byok-offline.tokens/1", &["tokens"]);
    assert_eq!(tokens["tokens"][0]["label"], "byok-test");
    let check = ["check", "--kty", "oct", "--size", "128", "--tries", "1"];
    let check = document(&hsm, "byok-offline.check/2", &check);
    assert_eq!(check["kinds"][0]["generated"]["verdict"], "ok");
    assert_eq!(check["kinds"][0]["imported"]["verdict"], "ok");
    let generate = ["generate", "--label", "k1", "--kty", "EC"];
    let generated = document(&hsm, "byok-offline.generate/1", &generate);
    assert_eq!(generated["public_key"], "k1.public.pem");
    let keys = document(&hsm, "byok-offline.keys/1", &["keys"]);
    assert_eq!(keys["token"], "byok-test");
    let package = ["package", "--kek", transfer, "--generate", "--label", "a1"];
    let package = document(
        &hsm,
        "byok-offline.package/1",
        &[&package[..], &["--kty", "oct"]].concat(),
    );
    assert_eq!(package["package"]["target_kind"], "AES 256");
    let inspect = ["inspect", "KeyTransferPackage-a1.byok"];
    let inspect = document(&hsm, "byok-offline.inspect/1", &inspect);
    assert_eq!(inspect["sha256"], package["package"]["byok_sha256"]);

    std::fs::write(
        hsm.path("keys.toml"),
        "[[key]]\nname = \"b1\"\nkty = \"oct\"\n\n[[key]]\nname = \"b2\"\nkty = \"oct\"\nsize = 128\n",
    )
    .unwrap();
    let batch = [
        "batch",
        "--manifest",
        "keys.toml",
        "--kek",
        transfer,
        "--dir",
        "out",
    ];
    let batch = document(&hsm, "byok-offline.batch/1", &batch);
    let head = batch["log_head"].as_str().unwrap();
    assert_eq!(head.len(), 64);
    // The head the batch printed is the one `log verify` finds.
    let verify = [
        "log",
        "verify",
        "out/ceremony-log.jsonl",
        "--expect-head",
        head,
    ];
    let log = document(&hsm, "byok-offline.log-verify/1", &verify);
    assert_eq!(
        (log["entries"].as_u64(), log["head"].as_str()),
        // The batch's check, recorded before its key, then the key.
        (Some(3), Some(head))
    );
    assert_eq!(log["head_checked"], true);

    let key = [0x42; 32];
    known_aes_key(&hsm, "vault-aes", &key);
    std::fs::write(hsm.path("c.json"), challenge_under(&key).to_json_bytes()).unwrap();
    let prove = ["prove-aes", "--label", "vault-aes", "--challenge", "c.json"];
    let proof = document(&hsm, "byok-offline.prove-aes/1", &prove);
    assert_eq!(proof["same_key"], true);
}

#[test]
fn query_and_tsv_read_the_document() {
    let hsm = Hsm::new();
    ok(&hsm.run(&["generate", "--label", "k1", "--kty", "EC"]));
    let out = hsm.run(&["keys", "-o", "json", "--query", "keys[0].label"]);
    ok(&out);
    assert_eq!(stdout(&out).trim(), "\"k1\"");
    let query = "keys[?class=='CKO_PRIVATE_KEY'].{label: label, kind: kind}";
    let out = hsm.run(&["keys", "-o", "tsv", "--query", query]);
    ok(&out);
    // The jmespath crate orders a multi-select hash by key, so compare the cells as a set.
    let mut cells: Vec<String> = stdout(&out).trim().split('\t').map(String::from).collect();
    cells.sort();
    assert_eq!(cells, ["EC P-256", "k1"]);
    let out = hsm.run(&["keys", "-o", "tsv", "--query", "keys"]);
    let first = stdout(&out).lines().next().unwrap().to_string();
    let cells: Vec<&str> = first.split('\t').collect();
    assert!(
        cells.contains(&"k1") && cells.contains(&"CKO_PRIVATE_KEY"),
        "{first}"
    );
    // A bad query is a usage error before the token is touched; with -o json the error
    // document says so.
    let out = hsm.run(&["keys", "-o", "json", "--query", "keys["]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let error: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (error["schema"].as_str(), error["exit_code"].as_u64()),
        (Some("byok.error/1"), Some(2))
    );
    assert!(stderr(&out).contains("not a JMESPath expression"));
}

#[test]
fn help_lists_token_flags_only_where_a_token_is_used() {
    for command in [
        &["inspect"][..],
        &["log", "verify"],
        &["completions"],
        &["man"],
    ] {
        let help = stdout(&bare(&[command, &["--help"]].concat()));
        for flag in ["--pin-file", "--pin-env", "--module", "--token"] {
            assert!(
                !help.contains(flag),
                "`{command:?} --help` lists {flag}: {help}"
            );
        }
        assert!(
            help.contains("Output:") && help.contains("--query"),
            "{help}"
        );
    }
    let help = stdout(&bare(&["package", "--help"]));
    for needle in [
        "Token:",
        "--pin-file",
        "Output:",
        "Options:",
        "--kek <PATH>",
    ] {
        assert!(help.contains(needle), "`{needle}` not in: {help}");
    }
    let version = stdout(&bare(&["--version"]));
    assert!(version.starts_with("byok-offline "), "{version}");
}

#[test]
fn completions_and_man_pages_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let out = bare(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(
            script.contains("byok-offline") && script.contains("prove-aes"),
            "{shell}"
        );
    }
    let hsm = Hsm::new();
    let dir = hsm.path("man");
    let out = bare(&["man", "--dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for page in [
        "byok-offline.1",
        "byok-offline-package.1",
        "byok-offline-log-verify.1",
    ] {
        let text =
            std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page}: {text}");
    }
    let top = stdout(&bare(&["man"]));
    assert!(top.contains(".TH") && top.contains("inspect"), "{top}");
}

#[test]
fn a_missing_token_is_named_with_those_present() {
    let hsm = Hsm::new();
    for args in [
        &["--token", "nosuch", "tokens"][..],
        &["tokens", "--token", "nosuch"],
    ] {
        let out = hsm.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains("no token labelled `nosuch`") && err.contains("`byok-test`"),
            "{err}"
        );
        assert!(stdout(&out).is_empty());
    }
    // The subcommand's --token wins over the one before it.
    let listed = ok(&hsm.run(&[
        "--token",
        "nosuch",
        "-o",
        "json",
        "tokens",
        "--token",
        "byok-test",
    ]));
    assert_eq!(listed["tokens"].as_array().unwrap().len(), 1);
}

#[test]
fn a_pin_given_to_pin_env_is_never_echoed() {
    let hsm = Hsm::new();
    let out = hsm.run_env(&["keys", "--pin-env", "123456"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(!err.contains("123456"), "{err}");
    assert!(
        err.contains("takes the NAME of an environment variable"),
        "{err}"
    );
    // A plausible name that is unset: not repeated either (it may still be a PIN).
    let out = hsm.run_env(&["--pin-env", "Secret_Pin_77", "keys"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(!err.contains("Secret_Pin_77"), "{err}");
    assert!(
        err.contains("the variable named by --pin-env is not set"),
        "{err}"
    );
    // The variable it names works.
    let out = hsm.run_env(&["keys", "--pin-env", "MY_PIN"], &[("MY_PIN", common::PIN)]);
    ok(&out);
}

#[test]
fn verbose_shows_the_tools_steps_and_never_the_pin() {
    let hsm = Hsm::new();
    let (_, kek) = kek_pair(2048);
    let transfer = hsm.transfer_file(&kek);
    let transfer = transfer.to_str().unwrap();
    let package = [
        "-v",
        "package",
        "--kek",
        transfer,
        "--generate",
        "--label",
        "a",
    ];
    let out = hsm.run(&[&package[..], &["--kty", "oct"]].concat());
    ok(&out);
    std::fs::write(
        hsm.path("keys.toml"),
        "[[key]]\nname = \"b\"\nkty = \"oct\"\n",
    )
    .unwrap();
    let batch = [
        "-v",
        "batch",
        "--manifest",
        "keys.toml",
        "--kek",
        transfer,
        "--dir",
        "out",
    ];
    let batch = hsm.run(&batch);
    ok(&batch);
    let err = stderr(&out) + &stderr(&batch);
    for step in [
        "KEK read and checked",
        "token chosen",
        "wrap path chosen",
        "target key generated",
        "package written",
        "evidence appended",
    ] {
        assert!(err.contains(step), "`{step}` not in: {err}");
    }
    assert!(!err.contains(common::PIN), "{err}");
    assert!(!err.contains("DEBUG"), "-v shows no debug lines: {err}");
}
