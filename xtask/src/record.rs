//! What an e2e ceremony left in its evidence logs: each side's chain verifies, every step is
//! recorded in order, and no secret is in any byte of either log.

use byok_core::evidence::{self, Entry, Event, Logged};
use std::path::Path;

/// The events a single-key ceremony records on each side, in order.
pub const OFFLINE_STEPS: [Event; 2] = [Event::TokenChecked, Event::Packaged];
pub const ONLINE_STEPS: [Event; 4] = [
    Event::KekCreated,
    Event::KekDownloaded,
    Event::Imported,
    Event::Verified,
];

/// The log's entries once its chain verifies.
pub fn read(path: &Path) -> Result<Vec<Logged>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    evidence::read_chain(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            Logged::of_line(line).ok_or_else(|| {
                format!(
                    "{} line {}: not a known entry: {line}",
                    path.display(),
                    i + 1
                )
            })
        })
        .collect()
}

/// The log holds `steps` in this order (other entries may stand between them).
pub fn expect_steps(path: &Path, steps: &[Event]) -> Result<usize, String> {
    let entries = read(path)?;
    let events: Vec<Event> = entries.iter().map(|l| l.entry.event()).collect();
    let mut at = 0;
    for step in steps {
        match events[at..].iter().position(|e| e == step) {
            Some(i) => at += i + 1,
            None => {
                return Err(format!(
                    "{} does not record `{step}` after its first {at} entries: {events:?}",
                    path.display()
                ));
            }
        }
    }
    Ok(entries.len())
}

/// The offline log holds [`OFFLINE_STEPS`] in order, and each package reused the check made
/// up front ([`expect_packages_reused`]); the number of entries.
pub fn expect_offline_steps(path: &Path) -> Result<usize, String> {
    expect_packages_reused(path)?;
    expect_steps(path, &OFFLINE_STEPS)
}

/// `package`'s output, once it says it reused the verdict step 0 recorded (no throwaway key).
pub fn reused_check(out: String) -> Result<String, String> {
    crate::util::expect(&out, "reused: no throwaway key made")?;
    Ok(out)
}

/// Every `packaged` entry cites the `token checked` entry before it that admitted its key,
/// reused (recorded by `check --log`, not run by the package itself): the ceremony checked its
/// token once. The number of packages.
pub fn expect_packages_reused(path: &Path) -> Result<usize, String> {
    let entries = read(path)?;
    let mut packages = 0;
    for (i, logged) in entries.iter().enumerate() {
        let Entry::Packaged(p) = &logged.entry else {
            continue;
        };
        let at = format!(
            "{} entry {} (package of {})",
            path.display(),
            i + 1,
            p.key_name
        );
        let cited = p
            .check_entry
            .as_ref()
            .ok_or_else(|| format!("{at} cites no check"))?;
        if !cited.reused {
            return Err(format!(
                "{at} checked the token itself: no recorded verdict was reused"
            ));
        }
        let before = cited.entry <= i;
        match entries.get(cited.entry.wrapping_sub(1)).map(|l| &l.entry) {
            Some(Entry::TokenChecked(_)) if before => packages += 1,
            _ => {
                return Err(format!(
                    "{at} cites entry {}, which is not a check before it",
                    cited.entry
                ));
            }
        }
    }
    Ok(packages)
}

/// No byte of the log holds any of `secrets` (PIN, client secret), a bearer token (a JWT
/// starts `eyJ`), or private key material (PEM or PKCS#8 markers).
pub fn expect_no_secret(path: &Path, secrets: &[(&str, &str)]) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let patterns: Vec<(&str, &str)> = secrets
        .iter()
        .copied()
        .chain([
            ("a bearer token (JWT)", "eyJ"),
            ("a private key (PEM)", "PRIVATE KEY"),
            ("a private key (PKCS#8 DER in base64)", "MIIE"),
        ])
        .collect();
    for (what, needle) in patterns {
        if !needle.is_empty() && text.contains(needle) {
            return Err(format!("{} holds {what}", path.display()));
        }
    }
    Ok(())
}

/// Where `cargo xtask e2e` leaves page 1 of its minutes, for a person to look at.
pub fn page_one_png() -> std::path::PathBuf {
    byok_tests::target_dir().join("minutes-page1.png")
}

/// What rendered minutes must show: every hash, fingerprint and key id the logs hold, and
/// each log's head.
pub fn expected_in_minutes(logs: &[&Path]) -> Result<Vec<String>, String> {
    let mut needles = Vec::new();
    for log in logs {
        let bytes = std::fs::read(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let chain = evidence::read_chain(&bytes).map_err(|e| format!("{}: {e}", log.display()))?;
        needles.push(chain.head());
        for logged in read(log)? {
            let json = serde_json::to_value(&logged.entry).map_err(|e| e.to_string())?;
            for field in [
                "kek_sha256",
                "public_key_sha256",
                "byok_sha256",
                "vault_kid",
                "module_sha256",
            ] {
                if let Some(v) = json[field].as_str() {
                    needles.push(v.to_string());
                }
            }
        }
    }
    needles.sort();
    needles.dedup();
    Ok(needles)
}

/// Checks a PDF of the minutes with tools the project did not write: `pdftotext` finds every
/// needle, `zbarimg` decodes each head from the QR codes, and `pdftoppm` leaves page 1 as a
/// PNG for a person (`page_one`).
pub fn check_minutes_pdf(
    pdf: &Path,
    needles: &[String],
    heads: &[String],
    page_one: &Path,
) -> Result<(), String> {
    let text = run_tool(std::process::Command::new("pdftotext").arg(pdf).arg("-"))?;
    // A long hash may wrap in a table cell: compare without white space.
    let flat: String = text.split_whitespace().collect();
    let missing: Vec<&String> = needles
        .iter()
        .filter(|n| !flat.contains(n.as_str()))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "pdftotext does not find {missing:?} in {}",
            pdf.display()
        ));
    }
    let dir = pdf.with_extension("pages");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    run_tool(
        std::process::Command::new("pdftoppm")
            .args(["-png", "-r", "150"])
            .arg(pdf)
            .arg(dir.join("page")),
    )?;
    let mut pages: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    pages.sort();
    let first = pages.first().ok_or("pdftoppm made no page")?;
    std::fs::copy(first, page_one).map_err(|e| format!("{}: {e}", page_one.display()))?;
    // zbarimg exits 4 when some page holds no code; what it decoded is what counts.
    let zbar = std::process::Command::new("zbarimg")
        .args(["--raw", "-q"])
        .args(&pages)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("zbarimg: {e} (apt-get install zbar-tools)"))?;
    let decoded = String::from_utf8_lossy(&zbar.stdout);
    for head in heads {
        if !decoded.lines().any(|l| l.trim() == head) {
            return Err(format!(
                "zbarimg does not decode the head {head} from the minutes' QR codes: {decoded}"
            ));
        }
    }
    Ok(())
}

fn run_tool(cmd: &mut std::process::Command) -> Result<String, String> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            format!(
                "{:?}: {e} (apt-get install poppler-utils zbar-tools)",
                cmd.get_program()
            )
        })?;
    if !out.status.success() {
        return Err(format!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use byok_core::evidence::{Entry, Verified};

    /// A log of `events`' entries (each a `verified` body under another event name is not
    /// needed: only the order and the bytes matter here).
    fn log(dir: &Path, lines: &[Entry], extra: &str) -> std::path::PathBuf {
        let mut text = String::new();
        for entry in lines {
            let mut map = serde_json::Map::new();
            for (k, v) in [
                ("time", "t"),
                ("host", "h"),
                ("operator", "o"),
                ("tool", "x"),
            ] {
                map.insert(k.into(), v.into());
            }
            if let serde_json::Value::Object(e) = serde_json::to_value(entry).unwrap() {
                map.extend(e);
            }
            if !extra.is_empty() {
                map.insert("note".into(), extra.into());
            }
            let line = evidence::next_line(evidence::last_line(&text), map);
            text.push_str(&line);
            text.push('\n');
        }
        let path = dir.join("log.jsonl");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn verified() -> Entry {
        Entry::Verified(Verified {
            key_name: "k".into(),
            vault_kid: "kid".into(),
            public_key_sha256: "ab".into(),
            algorithm: "PS256".into(),
            outcome: "equal".into(),
        })
    }

    #[test]
    fn steps_are_found_in_order_and_a_missing_one_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = log(dir.path(), &[verified(), verified()], "");
        assert_eq!(
            expect_steps(&path, &[Event::Verified, Event::Verified]),
            Ok(2)
        );
        let err = expect_steps(&path, &[Event::Imported]).unwrap_err();
        assert!(err.contains("`imported`"), "{err}");
        let err = expect_steps(&path, &[Event::Verified; 3]).unwrap_err();
        assert!(err.contains("after its first 2 entries"), "{err}");
    }

    fn packaged(cites: Option<(usize, bool)>) -> Entry {
        Entry::Packaged(byok_core::evidence::Packaged {
            key_name: "k".into(),
            key: Default::default(),
            generated: Some(true),
            token: Default::default(),
            kek: Default::default(),
            byok_sha256: "ab".into(),
            wrap_path: None,
            check_verdict: Some("ok".into()),
            check_entry: cites.map(|(entry, reused)| byok_core::evidence::CheckEntryRef {
                entry,
                time: "t".into(),
                sha256: "cd".into(),
                reused,
            }),
            package_file: None,
        })
    }

    fn checked() -> Entry {
        Entry::TokenChecked(byok_core::evidence::TokenChecked {
            token: Default::default(),
            wrap_path: "native".into(),
            kinds: Vec::new(),
            throwaway_keys: 2,
            edge_case_imports: 2,
        })
    }

    #[test]
    fn a_package_must_cite_a_reused_check_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let good = log(dir.path(), &[checked(), packaged(Some((1, true)))], "");
        assert_eq!(expect_packages_reused(&good), Ok(1));
        for (entries, why) in [
            (vec![checked(), packaged(None)], "cites no check"),
            (
                vec![checked(), packaged(Some((1, false)))],
                "checked the token itself",
            ),
            (
                vec![verified(), packaged(Some((1, true)))],
                "not a check before it",
            ),
            (
                vec![packaged(Some((2, true))), checked()],
                "not a check before it",
            ),
        ] {
            let path = log(dir.path(), &entries, "");
            let err = expect_packages_reused(&path).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn a_secret_anywhere_in_the_log_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let clean = log(dir.path(), &[verified()], "");
        let secrets = [("the PIN", "pin-8731")];
        assert_eq!(expect_no_secret(&clean, &secrets), Ok(()));
        for (note, what) in [
            ("operator typed pin-8731", "the PIN"),
            ("Bearer eyJhbGciOi", "a bearer token"),
            ("-----BEGIN PRIVATE KEY-----", "a private key"),
        ] {
            let dirty = log(dir.path(), &[verified()], note);
            let err = expect_no_secret(&dirty, &secrets).unwrap_err();
            assert!(err.contains(what), "{err}");
        }
    }
}
