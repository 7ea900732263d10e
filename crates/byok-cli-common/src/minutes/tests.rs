//! The minutes of a joined pair of logs, written by the real appender: what they must show,
//! what they must refuse, and what they must escape.

use super::*;
use crate::evidence::EvidenceLog;
use byok_core::evidence::{
    self as ev, CheckedKind, Entry, Imported, JudgedSide, KekCreated, KekDownloaded, KekRecord,
    KeyRecord, Packaged, TokenChecked, TokenRecord, Verified,
};
use std::path::Path;

const KEK_KID: &str =
    "https://contoso.vault.azure.net/keys/KEKforBYOK/0123456789abcdef0123456789abcdef";
const KEK_SHA: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const TRANSFER_SHA: &str = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";
const MODULE_SHA: &str = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";
const EC_PUB: &str = "d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4";
const EC_BYOK: &str = "e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5";
const RSA_PUB: &str = "f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6";
const RSA_BYOK: &str = "0707070707070707070707070707070707070707070707070707070707070707";
const EC_VAULT_KID: &str =
    "https://contoso.vault.azure.net/keys/payments-ec/11111111111111111111111111111111";
const RSA_VAULT_KID: &str =
    "https://contoso.vault.azure.net/keys/ledger-rsa/22222222222222222222222222222222";

fn token_record() -> TokenRecord {
    TokenRecord {
        label: "ceremony".into(),
        manufacturer: "SoftHSM project".into(),
        model: "SoftHSM v2".into(),
        serial: "5a1b2c3d4e5f6071".into(),
        firmware: "2.6".into(),
        module: Some("/usr/lib/softhsm/libsofthsm2.so".into()),
        module_sha256: Some(MODULE_SHA.into()),
    }
}

fn kek() -> KekRecord {
    KekRecord {
        kid: KEK_KID.into(),
        sha256: KEK_SHA.into(),
    }
}

fn packaged(name: &str, kind: &str, id: &str, fp: Option<&str>, byok: &str) -> Entry {
    Entry::Packaged(Packaged {
        key_name: name.into(),
        key: KeyRecord {
            hsm_label: name.into(),
            hsm_id: id.into(),
            kind: kind.into(),
            public_key_sha256: fp.map(String::from),
        },
        generated: Some(true),
        token: token_record(),
        kek: kek(),
        byok_sha256: byok.into(),
        wrap_path: Some("native CKM_RSA_AES_KEY_WRAP".into()),
        check_verdict: Some("ok".into()),
        check_entry: Some(ev::CheckEntryRef {
            entry: 1,
            time: "2026-12-07T10:00:00Z".into(),
            sha256: "ab".repeat(32),
            reused: true,
        }),
        package_file: Some(format!("KeyTransferPackage-{name}.byok")),
    })
}

fn offline_entries() -> Vec<Entry> {
    vec![
        Entry::TokenChecked(TokenChecked {
            token: token_record(),
            wrap_path: "native CKM_RSA_AES_KEY_WRAP".into(),
            kinds: vec![CheckedKind {
                kind: "EC P-256".into(),
                generated: "ok".into(),
                imported: "ok".into(),
                generated_detail: "ok: 40 keys".into(),
                imported_detail: "ok: 6 edge cases".into(),
                generated_judged: Some(JudgedSide {
                    verdict: "ok".into(),
                    detail: String::new(),
                    one_in: None,
                    only_trailing_zeros: false,
                    keys: 40,
                    defective: 0,
                    zero_top_byte: Some(1),
                }),
                imported_judged: None,
            }],
            throwaway_keys: 41,
            edge_case_imports: 6,
        }),
        packaged("payments-ec", "EC P-256", "0a0b", Some(EC_PUB), EC_BYOK),
        packaged("ledger-rsa", "RSA 3072", "0c0d", Some(RSA_PUB), RSA_BYOK),
    ]
}

fn imported(name: &str, kid: &str, byok: &str, fp: &str) -> Entry {
    Entry::Imported(Imported {
        key_name: name.into(),
        vault_kid: kid.into(),
        byok_sha256: byok.into(),
        kek_kid: KEK_KID.into(),
        public_key_sha256: Some(fp.into()),
        verification: "public key against the sidecar: matches".into(),
    })
}

fn online_entries() -> Vec<Entry> {
    vec![
        Entry::KekCreated(KekCreated {
            kek: kek(),
            vault: "https://contoso.vault.azure.net".into(),
            size: 4096,
            key_ops: vec!["import".into()],
        }),
        Entry::KekDownloaded(KekDownloaded {
            kek: kek(),
            vault: "https://contoso.vault.azure.net".into(),
            transfer_file: "KEKforBYOK.transfer".into(),
            transfer_sha256: TRANSFER_SHA.into(),
        }),
        imported("payments-ec", EC_VAULT_KID, EC_BYOK, EC_PUB),
        // Imported under another name than the HSM's: joined by the package's SHA-256.
        imported("ledger-rsa-vault", RSA_VAULT_KID, RSA_BYOK, RSA_PUB),
        Entry::Verified(Verified {
            key_name: "payments-ec".into(),
            vault_kid: EC_VAULT_KID.into(),
            public_key_sha256: EC_PUB.into(),
            algorithm: "ES256".into(),
            outcome: "public keys equal; a signature the vault made verifies".into(),
        }),
    ]
}

fn write_log(path: &Path, operator: &str, entries: Vec<Entry>) -> String {
    let log = EvidenceLog::open(path, Some(operator)).unwrap();
    for entry in entries {
        log.append(entry).unwrap();
    }
    log.head()
}

/// The pair: (dir, offline log, online log, offline head, online head).
fn pair() -> (tempfile::TempDir, PathBuf, PathBuf, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let offline = dir.path().join("offline.jsonl");
    let online = dir.path().join("online.jsonl");
    let h1 = write_log(&offline, "alice", offline_entries());
    let h2 = write_log(&online, "bob", online_entries());
    (dir, offline, online, h1, h2)
}

fn context(witnesses: &[&str]) -> Context {
    Context {
        tool: "byok-offline test".into(),
        rendered_at: "2026-11-20T12:00:00Z".into(),
        witnesses: witnesses.iter().map(|w| w.to_string()).collect(),
        paper: Paper::Letter,
    }
}

fn rendered(paths: &[PathBuf], format: MinutesFormat, witnesses: &[&str]) -> String {
    let logs = read::read_all(paths).unwrap();
    let ceremony = join::join(&logs);
    String::from_utf8(render(format, &ceremony, &context(witnesses)).unwrap()).unwrap()
}

fn args(logs: &[PathBuf], format: MinutesFormat, out: &Path) -> MinutesArgs {
    MinutesArgs {
        logs: logs.to_vec(),
        witnesses: vec!["Carol Auditor".into()],
        format,
        out: Some(out.into()),
        paper: Paper::A4,
    }
}

#[test]
fn a_joined_pair_shows_every_fingerprint_hash_vault_id_and_head() {
    let (_dir, offline, online, h1, h2) = pair();
    let logs = read::read_all(&[offline.clone(), online.clone()]).unwrap();
    let c = join::join(&logs);
    assert_eq!(c.keys.len(), 2, "{:#?}", c.keys);
    assert_eq!(
        c.counts,
        join::Counts {
            packaged: 2,
            imported: 2,
            verified: 1
        }
    );
    let rsa = c.keys.iter().find(|k| k.name == "ledger-rsa").unwrap();
    assert_eq!(rsa.vault_kids, [RSA_VAULT_KID]);
    assert_eq!(rsa.other_names, ["ledger-rsa-vault"]);
    assert!(!rsa.is_verified());
    let ec = c.keys.iter().find(|k| k.name == "payments-ec").unwrap();
    assert!(ec.is_verified() && ec.verification().contains("ES256"));
    assert_eq!(c.timeline.len(), 8);
    assert_eq!(c.operators, ["alice", "bob"]);
    for format in [MinutesFormat::Html, MinutesFormat::Md] {
        let text = rendered(
            &[offline.clone(), online.clone()],
            format,
            &["Carol Auditor"],
        );
        for needle in [
            KEK_KID,
            KEK_SHA,
            TRANSFER_SHA,
            MODULE_SHA,
            EC_PUB,
            EC_BYOK,
            RSA_PUB,
            RSA_BYOK,
            EC_VAULT_KID,
            RSA_VAULT_KID,
            &h1,
            &h2,
            "5a1b2c3d4e5f6071",
            "SoftHSM v2",
            "Carol Auditor",
            "alice",
            "bob",
            "41 generated and destroyed",
            // Per kind: the throwaway keys behind each verdict; per key, the check it relied on.
            "40 keys generated; imported keys not checked; each destroyed",
            "(entry 1 of 2026-12-07T10:00:00Z, reused: no throwaway key made for this key)",
        ] {
            assert!(text.contains(needle), "{format:?} lacks {needle}");
        }
    }
    let html = rendered(&[offline, online], MinutesFormat::Html, &[]);
    assert!(html.contains("@page { size: letter;"));
    assert_eq!(html.matches("<svg ").count(), 2, "a QR code per log");
    for banned in [
        "<script",
        "http-equiv=\"refresh\"",
        "<link",
        "<img",
        "@import",
        "url(",
    ] {
        assert!(!html.contains(banned), "the page holds {banned}");
    }
}

#[test]
fn run_writes_once_and_never_over_a_file() {
    let (dir, offline, online, h1, h2) = pair();
    let out = dir.path().join("minutes.md");
    let report = run(
        &args(&[offline.clone(), online.clone()], MinutesFormat::Md, &out),
        "byok-offline",
    )
    .unwrap();
    assert_eq!(report.file, out);
    assert_eq!(report.logs[0].head, h1);
    assert_eq!(report.logs[1].head, h2);
    assert_eq!(report.logs[1].entries, 5);
    assert_eq!(
        (report.packaged, report.imported, report.verified),
        (2, 2, 1)
    );
    let written = std::fs::read_to_string(&out).unwrap();
    assert!(written.contains("Carol Auditor"));
    let err = run(
        &args(&[offline, online], MinutesFormat::Md, &out),
        "byok-offline",
    )
    .unwrap_err();
    assert!(
        matches!(err, MinutesError::File(FileError::Exists { .. })),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), written);
    // Nothing else was left in the directory: no temporary file.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
}

#[test]
fn a_tampered_or_cut_short_log_refuses_and_writes_nothing() {
    let (dir, offline, online, _, _) = pair();
    let text = std::fs::read_to_string(&offline).unwrap();
    let out = dir.path().join("minutes.html");
    // An edit to any line but the last breaks the link after it (the last line's edits
    // show against the head the minutes record: `log verify --expect-head`).
    let tampered = text.replacen("payments-ec", "payments-ed", 1);
    std::fs::write(&offline, &tampered).unwrap();
    let err = run(
        &args(
            &[offline.clone(), online.clone()],
            MinutesFormat::Html,
            &out,
        ),
        "t",
    )
    .unwrap_err();
    assert!(matches!(err, MinutesError::Chain { .. }), "{err}");
    assert_eq!(err.exit_kind(), ExitKind::Mismatch);
    assert!(err.to_string().contains("does not verify"), "{err}");
    assert!(!out.exists());
    // A last line cut short: the same refusal.
    std::fs::write(&offline, &text[..text.len() - 20]).unwrap();
    let err = run(&args(&[offline, online], MinutesFormat::Html, &out), "t").unwrap_err();
    assert!(
        matches!(
            err,
            MinutesError::Chain {
                source: ev::ReadChainError::PartialLastLine { .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.exit_kind(), ExitKind::Mismatch);
    assert!(!out.exists());
}

#[test]
fn a_log_named_twice_is_a_usage_error() {
    let (dir, offline, _, _, _) = pair();
    let again = dir.path().join(".").join("offline.jsonl");
    let err = read::read_all(&[offline, again]).unwrap_err();
    assert!(matches!(err, MinutesError::Twice { .. }), "{err}");
    assert_eq!(err.exit_kind(), ExitKind::Usage);
}

#[test]
fn hostile_strings_come_out_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostile.jsonl");
    let evil = "<script>alert(1)</script>|`x`|\u{1b}[31mred\u{7}\u{202E}txt.exe";
    let mut entry = packaged(evil, "EC P-256", "0a", Some(EC_PUB), EC_BYOK);
    if let Entry::Packaged(p) = &mut entry {
        p.token.model = "<img src=x onerror=alert(1)>".into();
        p.wrap_path = Some("a | b\n| c | d |".into());
    }
    write_log(&path, "mal|lory <b>", vec![entry]);
    let html = rendered(
        std::slice::from_ref(&path),
        MinutesFormat::Html,
        &["<i>w</i> | w"],
    );
    for banned in [
        "<script>", "<img", "lory <b>", "<i>w", "\u{1b}", "\u{7}", "\u{202E}",
    ] {
        assert!(!html.contains(banned), "the HTML holds {banned:?}");
    }
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;|`x`|[31mredtxt.exe"));
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(html.contains("mal|lory &lt;b&gt;"));
    let md = rendered(&[path], MinutesFormat::Md, &["<i>w</i> | w"]);
    for banned in ["\u{1b}", "\u{7}", "\u{202E}"] {
        assert!(!md.contains(banned), "the Markdown holds {banned:?}");
    }
    // No HTML but the line breaks in cells: every other `<` is escaped.
    for (i, _) in md.match_indices('<') {
        assert!(
            md[i..].starts_with("<br>") || md[..i].ends_with('\\'),
            "unescaped < in the Markdown: {}",
            &md[i..(i + 30).min(md.len())]
        );
    }
    // Every table row has as many cell separators as its header.
    let mut columns = None;
    for line in md.lines() {
        if !line.starts_with('|') {
            columns = None;
            continue;
        }
        let bars = unescaped_bars(line);
        match columns {
            None => columns = Some(bars),
            Some(n) => assert_eq!(bars, n, "a row splits its table: {line}"),
        }
    }
    assert!(md.contains("mal\\|lory \\<b\\>"), "{md}");
    assert!(md.contains("\\<script\\>alert(1)\\</script\\>\\|\\`x\\`\\|"));
}

/// `|` not preceded by a backslash.
fn unescaped_bars(line: &str) -> usize {
    let mut escaped = false;
    let mut n = 0;
    for c in line.chars() {
        match c {
            '\\' if !escaped => escaped = true,
            '|' if !escaped => n += 1,
            _ => escaped = false,
        }
        if c != '\\' {
            escaped = false;
        }
    }
    n
}

/// Lines as `batch` wrote them before the entries were typed (no module, no check verdict,
/// no commit), an `import confirmed`, and an event this version does not know.
#[test]
fn old_style_and_unknown_entries_still_render() {
    let old = [
        r#"{"time":"2026-11-20T10:00:00Z","host":"hsm-ws","operator":"alice","tool":"byok-toolkit 0.1.0","event":"packaged","key_name":"k1","hsm_label":"batch-k1","hsm_id":"0a0b","generated":true,"kind":"EC P-256","token_label":"t","token_serial":"s1","token_manufacturer":"m","token_model":"v1","token_firmware":"1.5","kek_kid":"https://x.vault.azure.net/keys/KEK/0123456789abcdef0123456789abcdef","kek_sha256":"ab","public_key_sha256":"cd","byok_sha256":"ef01","wrap_path":"native CKM_RSA_AES_KEY_WRAP"}"#,
        r#"{"time":"2026-11-20T10:00:01Z","host":"hsm-ws","operator":"alice","tool":"byok-toolkit 0.1.0","event":"package confirmed","key_name":"k2","hsm_label":"l","hsm_id":"01","kind":"RSA 2048","token_label":"t","token_serial":"s1","token_firmware":"f","kek_kid":"kid","kek_sha256":"ab","public_key_sha256":null,"byok_sha256":"ef02"}"#,
        r#"{"time":"2026-11-20T11:00:00Z","host":"net-ws","operator":"bob","tool":"byok-toolkit 0.1.0","event":"import confirmed","key_name":"k1","vault_kid":"https://x.vault.azure.net/keys/k1/99","byok_sha256":"ef01","kek_kid":"kid","public_key_sha256":"cd","verification":"tag"}"#,
        r#"{"time":"not a time","host":"net-ws","operator":"bob","tool":"byok-toolkit 9","event":"key rotated","reason":"<b>x</b>"}"#,
    ];
    let mut log = String::new();
    for line in old {
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).unwrap();
        log.push_str(&ev::next_line(ev::last_line(&log), map));
        log.push('\n');
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.jsonl");
    std::fs::write(&path, &log).unwrap();
    let logs = read::read_all(std::slice::from_ref(&path)).unwrap();
    let c = join::join(&logs);
    assert_eq!(c.timeline.len(), 4);
    assert_eq!(c.keys.len(), 2);
    let k1 = &c.keys[0];
    assert_eq!(k1.vault_kids, ["https://x.vault.azure.net/keys/k1/99"]);
    assert_eq!(k1.check_verdict, None);
    for format in [MinutesFormat::Html, MinutesFormat::Md] {
        let text = rendered(std::slice::from_ref(&path), format, &[]);
        for needle in [
            "batch-k1",
            "ef01",
            "ef02",
            "key rotated",
            "does not read",
            "not a time",
        ] {
            assert!(text.contains(needle), "{format:?} lacks {needle}");
        }
        assert!(!text.contains("<b>x"), "{format:?}");
    }
}

#[test]
fn a_log_carried_across_and_appended_to_is_listed_once() {
    let (dir, offline, _, h1, _) = pair();
    let carried = dir.path().join("carried.jsonl");
    std::fs::copy(&offline, &carried).unwrap();
    let h3 = write_log(&carried, "bob", online_entries());
    let logs = read::read_all(&[offline, carried]).unwrap();
    let c = join::join(&logs);
    assert_eq!(c.logs[0].within, Some(1));
    assert_eq!(c.logs[0].head, h1);
    assert_eq!(c.logs[1].head, h3);
    assert_eq!(c.timeline.len(), 8, "each entry once");
    assert_eq!(c.counts.packaged, 2);
    assert!(c.findings.iter().any(|f| f.contains("listed once")));
}

#[test]
fn a_missing_chromium_names_its_package_and_html() {
    assert_eq!(
        pdf::find_program(CHROMIUM, Some(std::ffi::OsStr::new("/nonexistent"))),
        None
    );
    assert_eq!(pdf::find_program(CHROMIUM, None), None);
    let sh = pdf::find_program(
        "sh",
        Some(std::ffi::OsStr::new("/nonexistent:/bin:/usr/bin")),
    );
    assert!(sh.is_some());
    let text = MinutesError::NoChromium {
        program: CHROMIUM.into(),
    }
    .to_string();
    assert!(
        text.contains("apt-get install chromium") && text.contains("--format html"),
        "{text}"
    );
    assert_eq!(
        pdf::file_url(Path::new("/tmp/a b/m%.html")),
        "file:///tmp/a%20b/m%25.html"
    );
}

#[test]
fn a_chromium_that_overruns_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    // A stand-in that never finishes: the wait must end it, with its process group.
    let fake = dir.path().join("chromium");
    std::fs::write(&fake, "#!/bin/sh\ntail -f /dev/null\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let started = std::time::Instant::now();
    let err =
        pdf::print_with(&fake, "<p>x</p>", std::time::Duration::from_millis(300)).unwrap_err();
    assert!(matches!(err, MinutesError::ChromiumTimeout { .. }), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // One that exits without a PDF.
    std::fs::write(&fake, "#!/bin/sh\necho no display >&2\nexit 0\n").unwrap();
    let err = pdf::print_with(&fake, "<p>x</p>", std::time::Duration::from_secs(30)).unwrap_err();
    assert!(matches!(err, MinutesError::ChromiumFailed { .. }), "{err}");
    assert!(err.to_string().contains("wrote no PDF"), "{err}");
}

/// The PDF path end to end: Debian's chromium prints it and poppler's pdftotext reads it back
/// (`cargo xtask ci` installs both; without them this fails naming the packages).
#[test]
fn prints_a_pdf_with_chromium() {
    let (dir, offline, online, h1, h2) = pair();
    let out = dir.path().join("minutes.pdf");
    let report = run(
        &args(&[offline, online], MinutesFormat::Pdf, &out),
        "byok-offline",
    )
    .unwrap();
    assert_eq!(report.file, out);
    let pdf = std::fs::read(&out).unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    let path = std::env::var_os("PATH");
    let pdftotext = pdf::find_program("pdftotext", path.as_deref())
        .expect("no pdftotext: apt-get install poppler-utils (cargo xtask ci does)");
    let text = std::process::Command::new(pdftotext)
        .arg(&out)
        .arg("-")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    for needle in [
        &h1,
        &h2,
        KEK_SHA,
        EC_PUB,
        EC_BYOK,
        RSA_BYOK,
        EC_VAULT_KID,
        RSA_VAULT_KID,
    ] {
        assert!(text.contains(needle), "the PDF's text lacks {needle}");
    }
}
