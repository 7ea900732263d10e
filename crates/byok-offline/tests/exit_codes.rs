//! The exit codes a script running the ceremony relies on, through the real binary: 2 for a
//! wrong command line, 3 for a proof or an evidence chain that does not hold, 1 for the rest.

mod common;

use common::{Hsm, challenge_under, kek_pair, ok, stderr};
use serde_json::json;
use std::process::Output;

fn assert_exit(out: &Output, code: i32, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
}

#[test]
fn a_wrong_command_line_exits_2_and_makes_nothing() {
    let hsm = Hsm::new();
    let (_, kek) = kek_pair(2048);
    let transfer = hsm.transfer_file(&kek);
    let transfer = transfer.to_str().unwrap();
    assert_exit(
        &hsm.run(&["generate", "--label", "k"]),
        2,
        "--kty is required",
    );
    let package = [
        "package",
        "--kek",
        transfer,
        "--generate",
        "--id",
        "01",
        "--kty",
        "RSA",
        "--allow-zero-padded-kwp",
    ];
    assert_exit(&hsm.run(&package), 2, "--generate needs --label");
    // Scripts reading --output json get the code too.
    let out = hsm.run(&["--output", "json", "generate", "--label", "k"]);
    assert_eq!(out.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["exit_code"], 2);
    // A flag value the key type does not take is a usage error too, before any key is made.
    assert_exit(
        &hsm.run(&["generate", "--label", "k", "--kty", "EC", "--ops", "import"]),
        2,
        "cannot carry it",
    );
    assert_exit(
        &hsm.run(&["generate", "--label", "k", "--kty", "EC", "--size", "2048"]),
        2,
        "--kty/--size/--curve",
    );
    assert_eq!(
        ok(&hsm.run(&["--output", "json", "keys"]))["keys"],
        json!([])
    );
}

#[test]
fn a_challenge_from_another_aes_key_exits_3() {
    let hsm = Hsm::new();
    ok(&hsm.run(&["generate", "--kty", "oct", "--label", "K"]));
    // The HSM's key is sensitive, so no test can encrypt under it: this key is another one.
    std::fs::write(
        hsm.path("K.challenge.json"),
        challenge_under(&[0x11; 32]).to_json_bytes(),
    )
    .unwrap();
    let prove = [
        "prove-aes",
        "--label",
        "K",
        "--challenge",
        "K.challenge.json",
    ];
    assert_exit(&hsm.run(&prove), 3, "the vault does not hold this key");
    // A file that is not a challenge is not a mismatch.
    std::fs::write(hsm.path("K.challenge.json"), "{}").unwrap();
    assert_exit(&hsm.run(&prove), 1, "is refused");
}

#[test]
fn an_edited_evidence_log_exits_3() {
    let hsm = Hsm::new();
    let mut last: Option<String> = None;
    let mut text = String::new();
    for name in ["a", "b"] {
        let entry = json!({"event": "packaged", "key_name": name, "operator": "alice"});
        let line =
            byok_core::evidence::next_line(last.as_deref(), entry.as_object().unwrap().clone());
        text.push_str(&line);
        text.push('\n');
        last = Some(line);
    }
    std::fs::write(hsm.path("log.jsonl"), &text).unwrap();
    let verified = ok(&hsm.run(&["--output", "json", "log", "verify", "log.jsonl"]));
    assert_eq!(verified["entries"], 2);
    std::fs::write(hsm.path("log.jsonl"), text.replacen("alice", "mallory", 1)).unwrap();
    assert_exit(
        &hsm.run(&["log", "verify", "log.jsonl"]),
        3,
        "does not verify",
    );
}
