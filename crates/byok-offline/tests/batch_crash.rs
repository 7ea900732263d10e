//! `batch` after a crash, and against a token that already holds keys: a run killed with
//! SIGKILL resumes to every key recorded once and generated once; a package torn by a power
//! loss (before its group was synced, so never recorded) is packaged again, and one the log
//! records is refused; a token's own keys under a manifest key's label give the errors a
//! single-key search gives.

mod common;

use common::{Hsm, PIN, kek_pair, ok, stderr};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

/// `--output json batch` of keys.toml into out/ under kek.transfer, SoftHSM's EC allowed.
const BATCH: [&str; 10] = [
    "--output",
    "json",
    "batch",
    "--manifest",
    "keys.toml",
    "--kek",
    "kek.transfer",
    "--dir",
    "out",
    "--allow-zero-padded-kwp",
];

/// [`BATCH`] finding keys by `--lookup LOOKUP` (index: every object read once; search: per key).
fn batch_by(lookup: &str) -> Vec<&str> {
    let mut args = BATCH.to_vec();
    args.extend(["--lookup", lookup]);
    args
}

/// A manifest of `n` keys `k00`.., EC P-256 and AES 128 in turn.
fn manifest(n: usize) -> String {
    (0..n)
        .map(|i| {
            let kind = if i % 2 == 0 {
                "kty = \"EC\"\ncurve = \"P-256\""
            } else {
                "kty = \"oct\"\nsize = 128"
            };
            format!("[[key]]\nname = \"k{i:02}\"\n{kind}\n\n")
        })
        .collect()
}

/// Per label, the `CKA_ID`s of the private or secret keys the token holds; a torn object
/// (see [`torn_objects`]) is left out.
fn token_key_ids(hsm: &Hsm) -> BTreeMap<String, Vec<String>> {
    let keys = ok(&hsm.run(&["--output", "json", "keys"]));
    let mut ids = BTreeMap::<String, Vec<String>>::new();
    for k in keys["keys"].as_array().unwrap() {
        if is_torn(k) {
            continue;
        }
        if k["class"] == "CKO_PRIVATE_KEY" || k["class"] == "CKO_SECRET_KEY" {
            let label = k["label"].as_str().unwrap().to_string();
            ids.entry(label)
                .or_default()
                .push(k["id"].as_str().unwrap().to_string());
        }
    }
    ids
}

/// An object SoftHSM left half made: killed inside `C_GenerateKey`, it has written the new
/// object's file with its defaults (no label, no id, no value, not sensitive) and not yet the
/// caller's template, which held label and id. No tool can tell whose it is.
fn is_torn(key: &serde_json::Value) -> bool {
    key["label"] == "" && key["id"] == "" && key["sensitive"] == false
}

/// The torn objects on the token (`is_torn`), as `keys` describes them.
fn torn_objects(hsm: &Hsm) -> Vec<serde_json::Value> {
    let keys = ok(&hsm.run(&["--output", "json", "keys"]));
    keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| is_torn(k))
        .cloned()
        .collect()
}

/// Per label, how many private or secret keys the token holds.
fn token_keys(hsm: &Hsm) -> BTreeMap<String, usize> {
    token_key_ids(hsm)
        .into_iter()
        .map(|(label, ids)| (label, ids.len()))
        .collect()
}

/// Per key name, the log's `packaged` and `package confirmed` entries, in order.
fn log_events(hsm: &Hsm) -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(hsm.path("out/ceremony-log.jsonl")).unwrap_or_default();
    let mut events = BTreeMap::<String, Vec<String>>::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let event = v["event"].as_str().unwrap().to_string();
        if event == "packaged" || event == "package confirmed" {
            let name = v["key_name"].as_str().unwrap().to_string();
            events.entry(name).or_default().push(event);
        }
    }
    events
}

fn log_verifies(hsm: &Hsm) -> usize {
    let args = [
        "--output",
        "json",
        "log",
        "verify",
        "out/ceremony-log.jsonl",
    ];
    ok(&hsm.run(&args))["entries"].as_u64().unwrap() as usize
}

#[test]
fn a_batch_killed_mid_run_resumes_to_each_key_recorded_once_and_generated_once() {
    const N: usize = 40;
    const KILL_AFTER: usize = 1;
    let hsm = Hsm::new();
    let (_, kek) = kek_pair(2048);
    hsm.transfer_file(&kek);
    std::fs::write(hsm.path("keys.toml"), manifest(N)).unwrap();
    // The killed run reads the index, the resumed one searches per key: both must find what
    // the other made.
    let mut child = hsm
        .command_with_pin(env!("CARGO_BIN_EXE_byok-offline"))
        .args(batch_by("index"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = 0;
    let mut lines = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        // The check's lines start with `[` too; the keys' say what became of them.
        if line.starts_with('[') && line.contains(": packaged") {
            seen += 1;
        }
        lines.push(line);
        if seen >= KILL_AFTER {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(seen, KILL_AFTER, "the run ended first: {lines:#?}");

    // What a progress line showed is durable and recorded: the killed run's log holds at
    // least those keys, each once, and no more than the token holds.
    let killed = log_events(&hsm);
    assert!(killed.len() >= KILL_AFTER, "{killed:?}");
    assert!(killed.values().all(|e| e == &["packaged"]), "{killed:?}");
    let before = token_key_ids(&hsm);
    // The kill may land inside SoftHSM's C_GenerateKey: at most that one object is torn.
    let torn = torn_objects(&hsm);
    assert!(torn.len() <= 1, "{torn:?}");
    assert!(before.len() >= killed.len(), "{before:?}");
    eprintln!(
        "killed with {} of {N} keys on the token, {} recorded",
        before.len(),
        killed.len()
    );
    assert!(before.values().all(|ids| ids.len() == 1), "{before:?}");

    let report = ok(&hsm.run(&batch_by("search")));
    assert_eq!(report["lookup"], "search", "{report}");
    assert_eq!(report["lookup_probe"]["chosen_by"], "--lookup", "{report}");
    let generated_now = report["generated"].as_u64().unwrap() as usize;
    let events = log_events(&hsm);
    assert_eq!(events.len(), N, "{events:?}");
    for (name, e) in &events {
        assert_eq!(e.len(), 1, "{name} is recorded {e:?}");
    }
    // Each key once on the token, and each the killed run made is the one packaged now (the
    // same CKA_ID), not generated again.
    let after = token_key_ids(&hsm);
    assert_eq!(after.len(), N, "{after:?}");
    assert_eq!(
        torn_objects(&hsm),
        torn,
        "the resumed run tore nothing more"
    );
    assert!(after.values().all(|ids| ids.len() == 1), "{after:?}");
    for (label, ids) in &before {
        assert_eq!(&after[label], ids, "{label}");
    }
    assert_eq!(generated_now, N - before.len(), "{report}");
    // The killed run's check (the resumed run reuses it), then each key once.
    assert_eq!(log_verifies(&hsm), N + 1);
    // A third run finds everything done and adds nothing.
    let again = ok(&hsm.run(&BATCH));
    assert_eq!(again["skipped"], N);
    assert_eq!(log_verifies(&hsm), N + 1);
}

#[test]
fn a_torn_package_is_packaged_again_unless_the_log_records_it() {
    let hsm = Hsm::new();
    let (_, kek) = kek_pair(2048);
    hsm.transfer_file(&kek);
    std::fs::write(hsm.path("keys.toml"), manifest(2)).unwrap();
    let first = ok(&hsm.run(&BATCH));
    assert_eq!(first["generated"], 2);
    let sha = |report: &serde_json::Value| report["keys"][0]["byok_sha256"].clone();
    let byok = hsm.path("out/KeyTransferPackage-k00.byok");
    let pem = hsm.path("out/k00.public.pem");
    let pem_text = std::fs::read_to_string(&pem).unwrap();

    // A power loss before k00's group was synced: its files torn, nothing in the log.
    let bytes = std::fs::read(&byok).unwrap();
    std::fs::write(&byok, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(&pem, &pem_text[..40]).unwrap();
    std::fs::write(hsm.path("out/KeyTransferPackage-k00.byok.sidecar.json"), "").unwrap();
    std::fs::remove_file(hsm.path("out/ceremony-log.jsonl")).unwrap();
    let again = ok(&hsm.run(&BATCH));
    let outcome = &again["keys"][0];
    assert_eq!(
        (outcome["outcome"].as_str(), outcome["generated"].as_bool()),
        (Some("packaged"), Some(false)),
        "{again}"
    );
    assert_ne!(sha(&again), sha(&first));
    assert_eq!(std::fs::read_to_string(&pem).unwrap(), pem_text);
    assert_eq!(
        token_keys(&hsm).values().sum::<usize>(),
        2,
        "no key made twice"
    );
    // k01 was whole: confirmed from its files.
    assert_eq!(
        log_events(&hsm),
        BTreeMap::from([
            ("k00".to_string(), vec!["packaged".to_string()]),
            ("k01".to_string(), vec!["package confirmed".to_string()]),
        ])
    );

    // Torn again, but now the log records k00: damaged after it was recorded, refused.
    let bytes = std::fs::read(&byok).unwrap();
    std::fs::write(&byok, &bytes[..10]).unwrap();
    let out = hsm.run(&BATCH);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    for needle in [
        "key `k00`: ",
        "does not parse",
        "records key `k00` as packaged",
    ] {
        assert!(err.contains(needle), "`{needle}` not in: {err}");
    }
    assert_eq!(std::fs::read(&byok).unwrap(), &bytes[..10], "left as found");
    // The rerun's check (the log it would have reused was removed), k00 and k01.
    assert_eq!(log_verifies(&hsm), 3);
}

/// Runs pkcs11-tool against the token, logged in; panics with its stderr if it fails.
fn pkcs11_tool(hsm: &Hsm, args: &[&str]) {
    let out = hsm
        .command("pkcs11-tool")
        .arg("--module")
        .arg(hsm.module())
        .args(["--login", "--pin", PIN])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pkcs11-tool {args:?}: {}",
        stderr(&out)
    );
}

#[test]
fn keys_already_under_a_manifest_label_give_the_single_key_errors() {
    let hsm = Hsm::new();
    let (_, kek) = kek_pair(2048);
    hsm.transfer_file(&kek);
    // Two secret keys labelled `twice`; a data object labelled `taken`; an AES 128 key `small`.
    for _ in 0..2 {
        pkcs11_tool(
            &hsm,
            &["--keygen", "--key-type", "AES:16", "--label", "twice"],
        );
    }
    std::fs::write(hsm.path("data.bin"), "not a key").unwrap();
    pkcs11_tool(
        &hsm,
        &[
            "--write-object",
            "data.bin",
            "--type",
            "data",
            "--label",
            "taken",
        ],
    );
    ok(&hsm.run(&[
        "generate", "--label", "small", "--kty", "oct", "--size", "128",
    ]));
    let cases = [
        (
            "twice",
            "kty = \"oct\"\nsize = 128",
            "2 private or secret keys match label `twice`",
        ),
        (
            "taken",
            "kty = \"oct\"\nsize = 128",
            "a key labelled `taken` already exists",
        ),
        (
            "small",
            "kty = \"oct\"\nsize = 256",
            "is AES 128, but the manifest says AES 256",
        ),
    ];
    for ((name, kind, needle), lookup) in cases
        .into_iter()
        .flat_map(|case| ["index", "search"].map(|lookup| (case, lookup)))
    {
        std::fs::write(
            hsm.path("keys.toml"),
            format!("[[key]]\nname = \"{name}\"\n{kind}\n"),
        )
        .unwrap();
        let out = hsm.run(&batch_by(lookup));
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("key `{name}`: ")) && err.contains(needle),
            "{lookup}: `{needle}` not in: {err}"
        );
    }
    // Nothing was generated over them.
    assert_eq!(
        token_keys(&hsm),
        BTreeMap::from([("small".to_string(), 1), ("twice".to_string(), 2)])
    );

    // A P-384 public key alone under a label, as a generation killed between its two objects
    // leaves it: another kind's label stays in use; for its own kind the key is generated
    // beside it, and the warning names it.
    ok(&hsm.run(&[
        "generate", "--label", "half", "--kty", "EC", "--curve", "P-384",
    ]));
    pkcs11_tool(
        &hsm,
        &["--delete-object", "--type", "privkey", "--label", "half"],
    );
    let half = |curve: &str, lookup: &str| {
        let m = format!("[[key]]\nname = \"half\"\nkty = \"EC\"\ncurve = \"{curve}\"\n");
        std::fs::write(hsm.path("keys.toml"), m).unwrap();
        hsm.run(&batch_by(lookup))
    };
    for lookup in ["index", "search"] {
        let out = half("P-256", lookup);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("a key labelled `half` already exists"),
            "{lookup}: {}",
            stderr(&out)
        );
    }
    let out = half("P-384", "search");
    assert_eq!(ok(&out)["generated"], 1);
    assert!(
        stderr(&out).contains("a public key without its private key"),
        "{}",
        stderr(&out)
    );
    assert_eq!(token_keys(&hsm)["half"], 1);
}
