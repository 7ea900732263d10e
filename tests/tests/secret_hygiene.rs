//! A whole ceremony with RUST_LOG=trace and -vvv on every command: no PIN, client secret,
//! access token or private key appears in any output or in any file other than the `.byok`
//! (the emulator's state directory is the vault and is left out).

use byok_tests::{Emulator, MODULE_ENV, PIN_ENV, TestToken, bins};
use std::path::{Path, PathBuf};
use std::process::Command;

const PIN: &str = "hygiene-PIN-8823xq";

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn no_secret_in_any_output_or_file() {
    let bin = bins();
    let dir = tempfile::tempdir().unwrap();
    let (online, offline, state) = (
        dir.path().join("online"),
        dir.path().join("offline"),
        dir.path().join("emulator"),
    );
    std::fs::create_dir_all(&online).unwrap();
    let token = TestToken::softhsm_in(&offline, "hygiene", PIN).unwrap_or_else(|e| panic!("{e}"));
    // The emulator logs at trace level too; its stderr goes to a file we scan.
    let emu_log = dir.path().join("emulator.log");
    let _emu = Emulator::start_with(
        &bin.join("kv-emulator"),
        &state,
        &["--accept-zero-padded-kwp"],
        |cmd| {
            cmd.env("RUST_LOG", "trace")
                .stderr(std::fs::File::create(&emu_log).unwrap());
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut outputs = String::new();
    let mut run = |program: &str, cwd: &Path, args: &[&str]| {
        let mut cmd = Command::new(bin.join(program));
        cmd.args(["-vvv"])
            .args(args)
            .current_dir(cwd)
            .env("RUST_LOG", "trace");
        if program == "byok-online" {
            cmd.arg("--emulator").arg(&state);
        } else {
            cmd.envs(token.env().iter().cloned())
                .env(MODULE_ENV, token.module())
                .env(PIN_ENV, PIN);
        }
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{program} {args:?}: {text}");
        outputs.push_str(&text);
    };
    run(
        "byok-online",
        &online,
        &[
            "kek",
            "create",
            "--name",
            "KEK",
            "--size",
            "2048",
            "--out",
            "kek.transfer",
        ],
    );
    std::fs::copy(online.join("kek.transfer"), offline.join("kek.transfer")).unwrap();
    run("byok-offline", &offline, &["tokens"]);
    run(
        "byok-offline",
        &offline,
        &[
            "package",
            "--kek",
            "kek.transfer",
            "--generate",
            "--kty",
            "RSA",
            "--size",
            "2048",
            "--label",
            "t",
            "--allow-zero-padded-kwp",
        ],
    );
    run("byok-offline", &offline, &["keys"]);
    for f in [
        "KeyTransferPackage-t.byok",
        "KeyTransferPackage-t.byok.sidecar.json",
        "t.public.pem",
    ] {
        std::fs::copy(offline.join(f), online.join(f)).unwrap();
    }
    run(
        "byok-online",
        &online,
        &[
            "import",
            "--name",
            "t",
            "--byok-file",
            "KeyTransferPackage-t.byok",
        ],
    );
    run(
        "byok-online",
        &online,
        &["verify", "--name", "t", "--public-key", "t.public.pem"],
    );
    run(
        "byok-online",
        &online,
        &["--output", "json", "show", "--name", "t"],
    );

    assert!(
        outputs.contains("DEBUG") || outputs.contains("TRACE"),
        "logging was not on: {outputs}"
    );
    let conn: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("connection.json")).unwrap()).unwrap();
    let secret = conn["client_secret"].as_str().unwrap().to_string();
    let mut haystacks = vec![
        ("command output".to_string(), outputs.clone()),
        (
            "emulator log".into(),
            std::fs::read_to_string(&emu_log).unwrap(),
        ),
    ];
    let mut files = Vec::new();
    files_under(&online, &mut files);
    files_under(&offline, &mut files);
    for f in files {
        let name = f.display().to_string();
        if name.ends_with(".byok") || name.contains("/tokens/") {
            continue; // the package itself, and the HSM's own token store
        }
        haystacks.push((
            name,
            String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned(),
        ));
    }
    for (what, text) in &haystacks {
        for (secret_name, needle) in [
            ("PIN", PIN.to_string()),
            ("client secret", secret.clone()),
            ("access token", "eyJ0eXAiOiJKV1Qi".to_string()),
            ("access token", "eyJhbGciOiJIUzI1NiI".to_string()),
            ("private key", "PRIVATE KEY".to_string()),
        ] {
            assert!(
                !text.contains(&needle),
                "the {secret_name} appears in {what}"
            );
        }
    }
    println!(
        "secret hygiene: scanned {} outputs and files",
        haystacks.len()
    );
}
