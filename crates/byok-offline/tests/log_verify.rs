//! `log verify` through the real binary: each way a log can fail has its own message and exit
//! 3, and `--expect-head` (the head recorded in the minutes) shows entries removed from the end
//! or added after.

mod common;

use common::{Hsm, ok, stderr};
use serde_json::json;
use std::process::Output;

/// A log of `n` chained entries, each line with its newline.
fn log_of(n: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for i in 0..n {
        let entry = json!({"event": "packaged", "key_name": format!("k{i}"), "operator": "alice"});
        let entry = entry.as_object().unwrap().clone();
        lines.push(byok_core::evidence::next_line(
            lines.last().map(String::as_str),
            entry,
        ));
    }
    lines
}

fn text(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// The head of a log whose last line is `last`.
fn head_after(last: &str) -> String {
    byok_core::evidence::link_after(Some(last))
}

fn verify(hsm: &Hsm, log: &str, extra: &[&str]) -> Output {
    std::fs::write(hsm.path("log.jsonl"), log).unwrap();
    let mut args = vec!["log", "verify", "log.jsonl"];
    args.extend_from_slice(extra);
    hsm.run_env(&args, &[])
}

fn assert_exit(out: &Output, code: i32, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "`{needle}` not in: {err}");
    }
}

#[test]
fn an_intact_log_prints_its_head_and_entry_count() {
    let hsm = Hsm::new();
    let lines = log_of(3);
    let head = head_after(&lines[2]);
    let out = verify(&hsm, &text(&lines), &["-o", "json", "--expect-head", &head]);
    let report = ok(&out);
    assert_eq!(report["schema"], "byok-offline.log-verify/1");
    assert_eq!(report["entries"], 3);
    assert_eq!(report["head"], head.as_str());
    assert_eq!(report["head_checked"], true);
    let human = String::from_utf8(verify(&hsm, &text(&lines), &[]).stdout).unwrap();
    assert!(
        human.contains("3 entries, the hash chain is intact") && human.contains(&head),
        "{human}"
    );
    // An upper-case head is the same head.
    ok(&verify(
        &hsm,
        &text(&lines),
        &["--expect-head", &head.to_uppercase()],
    ));
}

#[test]
fn a_truncated_log_is_caught_by_the_head_in_the_minutes() {
    let hsm = Hsm::new();
    let lines = log_of(3);
    let recorded = head_after(&lines[2]);
    // The last entry deleted: the chain of what is left still verifies.
    let out = verify(&hsm, &text(&lines[..2]), &["--expect-head", &recorded]);
    let now = head_after(&lines[1]);
    assert_exit(
        &out,
        3,
        &[
            "entries are missing at the end (truncated)",
            "another ceremony's log",
            &format!("the log's head is {now}"),
        ],
    );
    ok(&verify(&hsm, &text(&lines[..2]), &[]));
}

#[test]
fn an_extended_log_names_the_entries_after_the_recorded_head() {
    let hsm = Hsm::new();
    let lines = log_of(4);
    let recorded = head_after(&lines[1]);
    let out = verify(&hsm, &text(&lines), &["--expect-head", &recorded]);
    assert_exit(
        &out,
        3,
        &["has 2 entries after the head recorded in the minutes"],
    );
    // The minutes of an empty log: every entry came after.
    let genesis = byok_core::evidence::GENESIS;
    let out = verify(&hsm, &text(&lines), &["--expect-head", genesis]);
    assert_exit(&out, 3, &["has 4 entries after the head"]);
}

#[test]
fn a_partly_written_last_line_is_told_apart_from_a_broken_link() {
    let hsm = Hsm::new();
    let lines = log_of(3);
    let full = text(&lines);
    // A crash while the third entry was written: no newline, half a JSON object.
    let cut = &full[..full.len() - 20];
    let out = verify(&hsm, cut, &[]);
    assert_exit(
        &out,
        3,
        &[
            "line 3 is cut short",
            "The 2 entries before it are intact",
            &head_after(&lines[1]),
        ],
    );
    // A line that is not JSON inside the log is damage, named by its number.
    let damaged = format!("{}not json\n{}\n", text(&lines[..1]), lines[1]);
    let out = verify(&hsm, &damaged, &[]);
    assert_exit(&out, 3, &["does not verify", "line 2 is not a JSON object"]);
    // An edited entry breaks the next link.
    let edited = full.replacen("alice", "mallory", 1);
    let out = verify(&hsm, &edited, &[]);
    assert_exit(&out, 3, &["line 2 says the previous line's SHA-256"]);
}

#[test]
fn an_unreadable_log_or_a_malformed_head_is_not_a_verdict() {
    let hsm = Hsm::new();
    let out = hsm.run_env(&["log", "verify", "missing.jsonl"], &[]);
    assert_exit(&out, 1, &["cannot read missing.jsonl"]);
    let out = verify(&hsm, &text(&log_of(1)), &["--expect-head", "abc"]);
    assert_exit(
        &out,
        2,
        &["--expect-head takes the log's head as 64 hex digits"],
    );
}
