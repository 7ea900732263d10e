//! `batch` through the real binary: a rerun skips what is done, rebuilds a missing sidecar,
//! records each package once in a log that verifies, and names the key a failure belongs to.

mod common;

use common::{Hsm, kek_pair, ok, stderr};

const MANIFEST: &str = "[[key]]\nname = \"b1\"\nkty = \"EC\"\ncurve = \"P-256\"\n\n\
                        [[key]]\nname = \"b2\"\nkty = \"EC\"\ncurve = \"P-384\"\nops = [\"sign\"]\n";

/// `--output json batch` of keys.toml into out/ under the KEK in `transfer`, then `extra`.
fn batch_args<'a>(transfer: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--output", "json", "batch", "--manifest", "keys.toml"];
    args.extend(["--kek", transfer, "--dir", "out"]);
    args.extend_from_slice(extra);
    args
}

#[test]
fn a_rerun_resumes_and_the_log_records_each_package_once() {
    let hsm = Hsm::new();
    let (_, kek) = kek_pair(2048);
    let transfer = hsm.transfer_file(&kek);
    std::fs::write(hsm.path("keys.toml"), MANIFEST).unwrap();
    let batch = batch_args(transfer.to_str().unwrap(), &["--allow-zero-padded-kwp"]);
    let outcomes = |report: &serde_json::Value| {
        let mut o: Vec<String> = report["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                format!(
                    "{}: {}",
                    k["name"].as_str().unwrap(),
                    k["outcome"].as_str().unwrap()
                )
            })
            .collect();
        o.sort();
        o
    };
    let out = hsm.run(&batch);
    assert!(
        stderr(&out).contains("b2: packaged, generated EC P-384 ("),
        "{}",
        stderr(&out)
    );
    let first = ok(&out);
    assert_eq!(outcomes(&first), ["b1: packaged", "b2: packaged"]);
    assert_eq!(first["generated"], 2);
    // --lookup auto measured the token before choosing.
    let probe = &first["lookup_probe"];
    assert_eq!(probe["chosen_by"], "auto", "{first}");
    assert_eq!(probe["lookup"], first["lookup"], "{first}");
    assert!(["index", "search"].contains(&first["lookup"].as_str().unwrap()));
    assert!(probe["read_ms"].as_f64().is_some() && probe["search_ms"].as_f64().is_some());
    assert_eq!(probe["keys"], 2, "{first}");

    std::fs::remove_file(hsm.path("out/KeyTransferPackage-b1.byok.sidecar.json")).unwrap();
    let again = ok(&hsm.run(&batch));
    assert_eq!(
        outcomes(&again),
        ["b1: sidecar restored", "b2: already packaged"]
    );
    assert_eq!(
        (again["packaged"].clone(), again["skipped"].clone()),
        (0.into(), 2.into())
    );
    // The first run's check (its throwaway keys on record), two packages, one confirmation
    // of the restored sidecar; the reruns check nothing (no key left to wrap) and add nothing
    // more.
    ok(&hsm.run(&batch));
    let log = ok(&hsm.run(&[
        "--output",
        "json",
        "log",
        "verify",
        "out/ceremony-log.jsonl",
    ]));
    assert_eq!(log["entries"], 4);

    // A package made for another KEK stops the run, naming the key.
    let other_kid = common::KID.replace("0123456789abcdef0123456789abcdef", &"f".repeat(32));
    let other = byok_core::KekTransfer::new(byok_core::KeyId::parse(&other_kid).unwrap(), kek);
    std::fs::write(hsm.path("other.transfer"), other.unwrap().to_text()).unwrap();
    let args = batch_args("other.transfer", &["--allow-zero-padded-kwp"]);
    std::fs::write(
        hsm.path("keys.toml"),
        &MANIFEST[..MANIFEST.find("\n\n").unwrap()],
    )
    .unwrap();
    let out = hsm.run(&args);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("key `b1`: ") && err.contains("made for another KEK"),
        "{err}"
    );
}

#[test]
fn a_kind_the_check_refuses_stops_the_batch_before_anything_is_made() {
    let hsm = Hsm::new();
    let (_, kek) = kek_pair(2048);
    let transfer = hsm.transfer_file(&kek);
    let aes = "[[key]]\nname = \"a1\"\nkty = \"oct\"\nsize = 256\n";
    std::fs::write(hsm.path("keys.toml"), format!("{aes}\n{MANIFEST}")).unwrap();
    let batch = batch_args(transfer.to_str().unwrap(), &[]);
    // SoftHSM 2.6.1 pads EC P-256 keys with zeros: no flag, no key and no package; only the
    // check is recorded (its throwaway keys are in the HSM's audit trail).
    let out = hsm.run(&batch);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    for needle in [
        "EC P-256 keys cannot be packaged",
        "trailing zero byte",
        "--allow-zero-padded-kwp",
    ] {
        assert!(err.contains(needle), "`{needle}` not in: {err}");
    }
    let made: Vec<_> = std::fs::read_dir(hsm.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(made, ["ceremony-log.jsonl"]);
    let log = std::fs::read_to_string(hsm.path("out/ceremony-log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 1);
    assert!(log.contains(r#""event":"token checked""#), "{log}");
    assert_eq!(
        ok(&hsm.run(&["--output", "json", "keys"]))["keys"],
        serde_json::json!([])
    );
    // AES alone needs no flag, and its verdict is the one the refused run recorded.
    std::fs::write(hsm.path("keys.toml"), aes).unwrap();
    let report = ok(&hsm.run(&batch));
    assert_eq!(report["packaged"], 1);
    assert_eq!(report["checks"][0]["entry"]["reused"], true, "{report}");
}

#[test]
fn the_report_lists_keys_in_the_manifests_order_and_ends_with_the_log_head() {
    // Three sessions at once, so keys finish out of order.
    let hsm = Hsm::nss();
    let (_, kek) = kek_pair(2048);
    let transfer = hsm.transfer_file(&kek);
    // Names that sort otherwise than they are listed.
    let names = ["z9", "a1", "m5", "b2", "y8", "c3"];
    let manifest: String = names
        .iter()
        .map(|n| format!("[[key]]\nname = \"{n}\"\nkty = \"oct\"\nsize = 128\n\n"))
        .collect();
    std::fs::write(hsm.path("keys.toml"), manifest).unwrap();
    let mut args = vec!["--token", byok_tests::NSS_TOKEN_LABEL];
    args.extend(batch_args(transfer.to_str().unwrap(), &["--jobs", "3"]));
    let report = ok(&hsm.run(&args));
    assert_eq!(report["schema"], "byok-offline.batch/1");
    let listed: Vec<&str> = report["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, names);
    let head = report["log_head"].as_str().unwrap();
    let log = std::fs::read_to_string(hsm.path("out/ceremony-log.jsonl")).unwrap();
    let last = byok_core::evidence::last_line(&log);
    assert_eq!(head, byok_core::evidence::link_after(last));
    // The human form ends with it too (the keys are on the token now: packaged again, not
    // generated).
    std::fs::remove_dir_all(hsm.path("out")).unwrap();
    let out = hsm.run(&[
        "--token",
        byok_tests::NSS_TOKEN_LABEL,
        "batch",
        "--manifest",
        "keys.toml",
        "--kek",
        "kek.transfer",
        "--dir",
        "out",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("batch: 6 packaged (0 generated)"),
        "{text}"
    );
    assert!(
        text.lines().last().unwrap().starts_with("log_head:"),
        "{text}"
    );
}

#[test]
fn a_defect_let_through_is_warned_of_once_a_run_not_once_a_key() {
    let hsm = Hsm::new();
    let (_, kek) = kek_pair(2048);
    let transfer = hsm.transfer_file(&kek);
    let manifest: String = ["w1", "w2", "w3"]
        .iter()
        .map(|n| format!("[[key]]\nname = \"{n}\"\nkty = \"EC\"\ncurve = \"P-256\"\n\n"))
        .collect();
    std::fs::write(hsm.path("keys.toml"), manifest).unwrap();
    let batch = batch_args(transfer.to_str().unwrap(), &["--allow-zero-padded-kwp"]);
    let out = hsm.run(&batch);
    let report = ok(&out);
    assert_eq!(report["packaged"], 3, "{report}");
    let err = stderr(&out);
    let warning = "--allow-zero-padded-kwp: packaging EC P-256 although";
    assert_eq!(err.matches(warning).count(), 1, "{err}");
}
