//! The conventions byok-online shares with az and with byok-offline, against kv-emulator:
//! `--dry-run` writes nothing, an existing name needs `--new-version`, `--query` and the
//! table/tsv views, `-v`, the help, completions and man pages.

mod common;

use byok_core::target::{Curve, KeyKind};
use byok_core::{Fingerprint, TargetKey};
use common::{Env, start};
use serde_json::Value;

/// `byok-online ARGS` fails (stdin is not a terminal in tests); its stderr.
async fn refused(env: &Env, args: &[&str]) -> String {
    let out = env.run(args).await;
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kek_create_dry_run_writes_nothing_and_a_second_create_needs_new_version() {
    let env = start().await;
    let dry = env
        .json(&[
            "kek",
            "create",
            "-n",
            "K",
            "--size",
            "2048",
            "--out",
            "k.transfer",
            "--dry-run",
        ])
        .await;
    assert_eq!(dry["schema"], "byok-online.kek/1");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["kid"], Value::Null);
    assert_eq!(
        dry["action"],
        "would create K as RSA-HSM 2048, import only; would write its transfer file k.transfer"
    );
    assert!(!env.path("k.transfer").exists());
    env.fails(&["show", "-n", "K"], "was not found").await;

    let first = env
        .json(&["kek", "create", "-n", "K", "--size", "2048"])
        .await;
    let version = first["kid"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    // Again, without --new-version: refused, naming the key, its version and the fix.
    let err = refused(&env, &["kek", "create", "-n", "K", "--size", "2048"]).await;
    assert!(
        err.contains("K")
            && err.contains(&version)
            && err.contains("pass --new-version to add a version, or choose another --name"),
        "{err}"
    );
    // A dry run refuses the same way, and reports a new version with the flag.
    refused(
        &env,
        &["kek", "create", "-n", "K", "--size", "2048", "--dry-run"],
    )
    .await;
    let dry = env
        .json(&[
            "kek",
            "create",
            "-n",
            "K",
            "--size",
            "2048",
            "--dry-run",
            "--new-version",
        ])
        .await;
    assert_eq!(dry["new_version"], true);
    assert!(
        dry["action"]
            .as_str()
            .unwrap()
            .starts_with("would add a version to existing key K"),
        "{dry}"
    );
    assert_eq!(env.versions("K").await, 1);
    let second = env
        .json(&[
            "kek",
            "create",
            "-n",
            "K",
            "--size",
            "2048",
            "--new-version",
        ])
        .await;
    assert_eq!(second["new_version"], true);
    assert_ne!(second["kid"], first["kid"]);
    assert_eq!(env.versions("K").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_dry_run_checks_and_writes_nothing_and_an_existing_name_needs_new_version() {
    let env = start().await;
    env.with_kek().await;
    let target = TargetKey::generate(KeyKind::Ec { curve: Curve::P256 }).unwrap();
    env.package(&env.path("kek.transfer"), &target, "t.byok", true);
    let import = ["import", "-n", "t", "--byok-file", "t.byok"];
    let with = |extra: &[&'static str]| [&import[..], extra].concat();

    let dry = env.json(&with(&["--dry-run"])).await;
    assert_eq!(dry["schema"], "byok-online.import/1");
    assert_eq!(
        (dry["dry_run"].as_bool(), dry["new_version"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(dry["key"], Value::Null);
    let kek_kid = dry["kek_kid"].as_str().unwrap();
    assert_eq!(
        dry["action"],
        format!("would import t (EC P-256) under KEK {kek_kid}").as_str()
    );
    env.fails(&["show", "-n", "t"], "was not found").await;
    let human = env.ok(&with(&["--dry-run"])).await;
    assert!(
        human.contains("would import t") && human.contains("dry run: nothing was written"),
        "{human}"
    );

    // The dry run reads the KEK: a package for a KEK version that is not there fails it.
    let transfer =
        byok_core::KekTransfer::parse(&std::fs::read_to_string(env.path("kek.transfer")).unwrap())
            .unwrap();
    let missing = byok_core::KeyId::parse(&format!(
        "{}/keys/KEK/0123456789abcdef0123456789abcdef",
        transfer.kid.vault()
    ))
    .unwrap();
    common::package_for(&missing, &transfer.key, &target, &env.path("m.byok"), false);
    env.fails(
        &[
            "import",
            "-n",
            "m",
            "--byok-file",
            "m.byok",
            "--kty",
            "EC",
            "--dry-run",
        ],
        "does not exist in this vault",
    )
    .await;

    let imported = env.json(&import).await;
    let sha = Fingerprint::of_bytes(&std::fs::read(env.path("t.byok")).unwrap()).to_hex();
    assert_eq!(imported["key"]["tags"]["byok-sha256"], sha.as_str());
    // Again: refused without --new-version; a dry run with it says it would add a version.
    let err = refused(&env, &import).await;
    assert!(
        err.contains("pass --new-version") && err.contains("came from this same package"),
        "{err}"
    );
    let dry = env.json(&with(&["--dry-run", "--new-version"])).await;
    assert_eq!(dry["new_version"], true);
    assert!(
        dry["action"]
            .as_str()
            .unwrap()
            .starts_with("would add a version to existing key t"),
        "{dry}"
    );
    assert_eq!(env.versions("t").await, 1);
    let again = env.json(&with(&["--new-version"])).await;
    assert_eq!(again["public_key_check"], "matches");
    assert_eq!(env.versions("t").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_table_and_tsv_read_the_json_document() {
    let env = start().await;
    let created = env
        .json(&["kek", "create", "-n", "K", "--size", "2048"])
        .await;
    let kid = created["kid"].as_str().unwrap();
    // --query alone prints the selected JSON value, as az does.
    let out = env.ok(&["show", "-n", "K", "--query", "kid"]).await;
    assert_eq!(out.trim(), format!("\"{kid}\""));
    let out = env
        .ok(&["show", "-n", "K", "-o", "tsv", "--query", "kid"])
        .await;
    assert_eq!(out.trim(), kid);
    let out = env
        .ok(&["show", "-n", "K", "-o", "json", "--query", "schema"])
        .await;
    assert_eq!(out.trim(), "\"byok-online.show/1\"");
    let out = env
        .ok(&["show", "-n", "K", "-o", "tsv", "--query", "[name, kty]"])
        .await;
    assert_eq!(out.trim(), "K\nRSA-HSM");
    // One document is one row; the table's columns are its scalar fields' names.
    let out = env.ok(&["show", "-n", "K", "-o", "table"]).await;
    let header = out.lines().next().unwrap();
    assert!(
        header.starts_with("schema")
            && header.contains("kid")
            && header.contains("public_key_sha256"),
        "{out}"
    );
    let out = env.ok(&["show", "-n", "K", "-o", "tsv"]).await;
    assert!(out.starts_with("byok-online.show/1\tK\t"), "{out}");
    // A malformed query is a usage error, before anything is done.
    let out = env.run(&["show", "-n", "K", "--query", "kid["]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("JMESPath"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbose_shows_the_steps_and_never_the_secret() {
    let env = start().await;
    env.with_kek().await;
    let target = TargetKey::generate(KeyKind::Ec { curve: Curve::P256 }).unwrap();
    env.package(&env.path("kek.transfer"), &target, "t.byok", true);
    let out = env
        .run(&["-v", "import", "-n", "t", "--byok-file", "t.byok"])
        .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for step in [
        "vault: https://",
        "credential: the emulator's client secret",
        "package t.byok: sha256",
        "KEK https://",
        "t does not exist yet",
        "PUT /keys/t",
        "imported https://",
    ] {
        assert!(err.contains(step), "no `{step}` in {err}");
    }
    assert!(
        !err.contains(&env.conn().client_secret),
        "secret in -v: {err}"
    );
    assert!(!err.to_lowercase().contains("bearer"), "token in -v: {err}");
    // Without -v, nothing but the result.
    let out = env.run(&["show", "-n", "t"]).await;
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_completions_man_and_version() {
    let env = start().await;
    let help = env.ok(&["inspect", "--help"]).await;
    assert!(
        !help.contains("--vault-name") && !help.contains("--emulator"),
        "{help}"
    );
    assert!(help.contains("--output"), "{help}");
    let help = env.ok(&["show", "--help"]).await;
    assert!(
        help.contains("Vault and authentication:") && help.contains("-n, --name"),
        "{help}"
    );
    for args in [&["completions", "--help"][..], &["man", "--help"]] {
        let help = env.ok(args).await;
        assert!(!help.contains("--vault-name"), "{args:?}: {help}");
    }
    // The vault flags work after the subcommand too.
    env.json(&["kek", "create", "-n", "K", "--size", "2048"])
        .await;
    let state = env.state.path().display().to_string();
    let out = env
        .run_raw(
            ["-o", "json", "show", "-n", "K", "--emulator", &state]
                .map(String::from)
                .to_vec(),
            vec![],
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bash = env.ok(&["completions", "bash"]).await;
    assert!(
        bash.contains("byok-online") && bash.contains("--new-version"),
        "{bash}"
    );
    let man = env.ok(&["man"]).await;
    assert!(man.contains(".TH") && man.contains("byok-online"), "{man}");
    let pages = env.json(&["man", "--dir", "man"]).await;
    assert_eq!(pages["schema"], "byok-online.man/1");
    for page in [
        "byok-online.1",
        "byok-online-kek-create.1",
        "byok-online-import.1",
    ] {
        assert!(env.path("man").join(page).exists(), "{page}: {pages}");
    }
    let version = env.ok(&["--version"]).await;
    assert!(
        version.starts_with("byok-online ")
            && version.contains(byok_cli_common::version::LONG_VERSION),
        "{version}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_an_existing_name_is_asked_about() {
    // util-linux's `script` gives the binary a terminal (Debian's essential bsdutils has it).
    let script = std::path::Path::new("/usr/bin/script");
    assert!(
        script.exists(),
        "no /usr/bin/script to give the binary a terminal: apt-get install bsdutils"
    );
    let env = start().await;
    env.json(&["kek", "create", "-n", "K", "--size", "2048"])
        .await;
    let state = env.state.path().display().to_string();
    let ask = |answer: &'static str| {
        let (state, dir) = (state.clone(), env.work.path().to_path_buf());
        tokio::task::spawn_blocking(move || {
            let cmd = format!(
                "{} --emulator {state} kek create -n K --size 2048",
                env!("CARGO_BIN_EXE_byok-online")
            );
            let mut child = std::process::Command::new("/usr/bin/script")
                .args(["-qec", &cmd, "/dev/null"])
                .current_dir(dir)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(answer.as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        })
    };
    let no = ask("n\n").await.unwrap();
    let text = String::from_utf8_lossy(&no.stdout);
    assert!(!no.status.success(), "{text}");
    assert!(
        text.contains("Key K exists (version") && text.contains("Add a new version? [y/N]"),
        "{text}"
    );
    assert_eq!(env.versions("K").await, 1);
    let yes = ask("y\n").await.unwrap();
    let text = String::from_utf8_lossy(&yes.stdout);
    assert!(
        yes.status.success() && text.contains("added a version to existing key K"),
        "{text}"
    );
    assert_eq!(env.versions("K").await, 2);
}
