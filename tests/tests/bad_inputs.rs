//! Bad input through the real binaries, the way a security team would try it: each case must
//! exit non-zero, print a message that names the problem, and leave no file behind.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use byok_tests::{MODULE_ENV, PIN_ENV, TestToken, bins, emulator};

const PIN: &str = "bad-inputs-Pin-4471";

fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

struct Case {
    name: &'static str,
    program: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    expect: &'static str,
}

fn case(name: &'static str, program: &'static str, args: &[&str], expect: &'static str) -> Case {
    Case {
        name,
        program,
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec![],
        expect,
    }
}

#[test]
fn forty_bad_inputs_each_fail_clearly_and_leave_nothing() {
    let bin = bins();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let state = dir.path().join("emulator");
    let token = TestToken::softhsm_in(&work, "bad", PIN).unwrap_or_else(|e| panic!("{e}"));
    let _emu = emulator(&bin, &state, &[]);
    let fault_dir = dir.path().join("faulty");
    let online = |args: &[&str]| {
        let mut cmd = Command::new(bin.join("byok-online"));
        cmd.arg("--emulator")
            .arg(&state)
            .args(args)
            .current_dir(&work);
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "setup {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let offline_env = |cmd: &mut Command| {
        cmd.current_dir(&work)
            .envs(token.env().iter().cloned())
            .env(MODULE_ENV, token.module())
            .env(PIN_ENV, PIN)
            .stdin(Stdio::null());
    };

    // Setup: a KEK and its transfer file, a good package, keys on the token.
    online(&[
        "kek",
        "create",
        "--name",
        "KEK",
        "--size",
        "2048",
        "--out",
        "kek.transfer",
    ]);
    online(&[
        "kek", "download", "--name", "KEK", "--out", "kek.pem", "--format", "pem",
    ]);
    let kid = std::fs::read_to_string(work.join("kek.transfer"))
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()[5..]
        .to_string();
    let mut generate = Command::new(bin.join("byok-offline"));
    offline_env(&mut generate);
    let out = generate
        .args([
            "package",
            "--kek",
            "kek.transfer",
            "--generate",
            "--kty",
            "EC",
            "--label",
            "good",
            "--allow-zero-padded-kwp",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    make_locked_keys(&token);
    let byok_text = std::fs::read_to_string(work.join("KeyTransferPackage-good.byok")).unwrap();
    let byok: serde_json::Value = serde_json::from_str(&byok_text).unwrap();
    let write = |name: &str, text: &str| std::fs::write(work.join(name), text).unwrap();
    let with = |path: &[&str], value: serde_json::Value| {
        let mut v = byok.clone();
        let mut slot = &mut v;
        for p in &path[..path.len() - 1] {
            slot = &mut slot[*p];
        }
        slot[path[path.len() - 1]] = value;
        serde_json::to_string(&v).unwrap()
    };
    write("truncated.byok", &byok_text[..byok_text.len() / 2]);
    write("notjson.byok", "this is not a package");
    write("oversized.byok", &" ".repeat(70 * 1024));
    write("schema.byok", &with(&["schema_version"], "2.0.0".into()));
    write("alg.byok", &with(&["header", "alg"], "RSA-OAEP".into()));
    write(
        "enc.byok",
        &with(&["header", "enc"], "CKM_RSA_AES_KEY_WRAP_PAD".into()),
    );
    write(
        "unversioned.byok",
        &with(&["header", "kid"], kid.rsplit_once('/').unwrap().0.into()),
    );
    write(
        "foreign.byok",
        &with(
            &["header", "kid"],
            "https://contoso.vault.azure.net/keys/KEK/0123456789abcdef0123456789abcdef".into(),
        ),
    );
    let ct = byok["ciphertext"].as_str().unwrap();
    write(
        "padded.byok",
        &with(&["ciphertext"], format!("{ct}==").into()),
    );
    write(
        "short.byok",
        &with(&["ciphertext"], ct[..ct.len() - 8].into()),
    );
    let mut bytes = byok_core::b64::decode("c", ct).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    // A key that is no KEK: the good package imported as an EC key.
    online(&[
        "import",
        "--name",
        "plainkey",
        "--byok-file",
        "KeyTransferPackage-good.byok",
    ]);
    let plain_kid = {
        let mut c = Command::new(bin.join("byok-online"));
        c.arg("--emulator")
            .arg(&state)
            .args(["--output", "json", "show", "--name", "plainkey"]);
        let v: serde_json::Value = serde_json::from_slice(&c.output().unwrap().stdout).unwrap();
        v["kid"].as_str().unwrap().to_string()
    };
    write("notkek.byok", &with(&["header", "kid"], plain_kid.into()));
    write(
        "tampered.byok",
        &with(&["ciphertext"], byok_core::b64::encode(&bytes).into()),
    );
    let transfer = std::fs::read_to_string(work.join("kek.transfer")).unwrap();
    write("truncated.transfer", &transfer[..transfer.len() - 100]);
    write(
        "oversized.transfer",
        &format!("{transfer}{}", "#".repeat(20_000)),
    );
    write(
        "fingerprint.transfer",
        &transfer.replace("sha256: ", "sha256: 00"),
    );
    write(
        "size.transfer",
        &transfer.replace("key-size: 2048", "key-size: 4096"),
    );
    write("empty.pin", "\n");
    let small = rsa::PrivateKey::new(&mut getrandom::SysRng, 1024).unwrap();
    write(
        "small.pem",
        &rsa::pkcs8::EncodePublicKey::to_public_key_pem(
            &small.to_public_key(),
            rsa::pkcs8::LineEnding::LF,
        )
        .unwrap(),
    );
    let ec = byok_core::TargetKey::generate(byok_core::KeyKind::Ec {
        curve: byok_core::Curve::P256,
    })
    .unwrap();
    write("ec.pem", &ec.public_key().unwrap().to_pem());
    write("existing.byok", "keep");
    std::fs::create_dir(work.join("a-directory")).unwrap();

    fn pkg<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec![
            "package",
            "--kek",
            "kek.transfer",
            "--allow-zero-padded-kwp",
        ];
        a.extend_from_slice(extra);
        a
    }
    let mut cases = vec![
        // byok-offline: the token
        Case {
            env: vec![("BYOK_PKCS11_PIN", "wrong-pin".into())],
            ..case("wrong PIN", "byok-offline", &["keys"], "PIN was refused")
        },
        Case {
            env: vec![("BYOK_PKCS11_PIN", String::new())],
            ..case("empty PIN", "byok-offline", &["keys"], "is empty")
        },
        case(
            "PIN file missing",
            "byok-offline",
            &["--pin-file", "nope.pin", "keys"],
            "cannot read the PIN file",
        ),
        case(
            "PIN file empty",
            "byok-offline",
            &["--pin-file", "empty.pin", "keys"],
            "is empty",
        ),
        case(
            "module missing",
            "byok-offline",
            &["--module", "/nonexistent/lib.so", "keys"],
            "cannot load the PKCS#11 module",
        ),
        case(
            "module is not a library",
            "byok-offline",
            &["--module", "kek.pem", "keys"],
            "cannot load the PKCS#11 module",
        ),
        case(
            "unknown token",
            "byok-offline",
            &["--token", "nope", "keys"],
            "no token labelled `nope`",
        ),
        case(
            "unknown slot",
            "byok-offline",
            &["--slot", "999999", "keys"],
            "no slot 999999",
        ),
        case(
            "unknown key label",
            "byok-offline",
            &pkg(&["--label", "missing"]),
            "no key labelled `missing`",
        ),
        case(
            "unknown key id",
            "byok-offline",
            &pkg(&["--id", "abcdef"]),
            "no key with id abcdef",
        ),
        case(
            "bad key id",
            "byok-offline",
            &pkg(&["--id", "xyz"]),
            "invalid --id",
        ),
        case(
            "non-extractable key",
            "byok-offline",
            &pkg(&["--label", "locked"]),
            "not extractable",
        ),
        case(
            "non-sensitive key",
            "byok-offline",
            &pkg(&["--label", "plain"]),
            "not sensitive",
        ),
        case(
            "existing output",
            "byok-offline",
            &pkg(&["--label", "good", "--out", "existing.byok"]),
            "already exists",
        ),
        case(
            "label in use",
            "byok-offline",
            &[
                "generate",
                "--label",
                "good",
                "--kty",
                "EC",
                "--public-key-out",
                "x.pem",
            ],
            "already exists on the token",
        ),
        case(
            "RSA 1024 target",
            "byok-offline",
            &["generate", "--label", "r", "--kty", "RSA", "--size", "1024"],
            "cannot be imported",
        ),
        case(
            "unknown curve",
            "byok-offline",
            &[
                "generate", "--label", "r", "--kty", "EC", "--curve", "P-192",
            ],
            "not a curve",
        ),
        // byok-offline: the KEK
        case(
            "KEK of 1024 bits",
            "byok-offline",
            &[
                "package",
                "--kek-pem",
                "small.pem",
                "--kid",
                &kid,
                "--label",
                "good",
            ],
            "1024-bit modulus",
        ),
        case(
            "EC KEK",
            "byok-offline",
            &[
                "package",
                "--kek-pem",
                "ec.pem",
                "--kid",
                &kid,
                "--label",
                "good",
            ],
            "is an EC",
        ),
        case(
            "unversioned kid",
            "byok-offline",
            &[
                "package",
                "--kek-pem",
                "kek.pem",
                "--kid",
                kid.rsplit_once('/').unwrap().0,
                "--label",
                "good",
            ],
            "has no version",
        ),
        case(
            "foreign-host kid",
            "byok-offline",
            &[
                "package",
                "--kek-pem",
                "kek.pem",
                "--kid",
                "https://example.com/keys/k/0123456789abcdef0123456789abcdef",
                "--label",
                "good",
            ],
            "is not a Key Vault",
        ),
        case(
            "not a transfer file",
            "byok-offline",
            &pkg(&["--label", "good"])
                .iter()
                .map(|a| if *a == "kek.transfer" { "kek.pem" } else { a })
                .collect::<Vec<_>>(),
            "not a KEK transfer file",
        ),
        case(
            "truncated transfer file",
            "byok-offline",
            &["package", "--kek", "truncated.transfer", "--label", "good"],
            "not valid PEM",
        ),
        case(
            "oversized transfer file",
            "byok-offline",
            &["package", "--kek", "oversized.transfer", "--label", "good"],
            "limit is",
        ),
        case(
            "tampered transfer fingerprint",
            "byok-offline",
            &[
                "package",
                "--kek",
                "fingerprint.transfer",
                "--label",
                "good",
            ],
            "does not match its public key",
        ),
        case(
            "tampered transfer size",
            "byok-offline",
            &["package", "--kek", "size.transfer", "--label", "good"],
            "says key-size 4096",
        ),
        case(
            "transfer path missing",
            "byok-offline",
            &["package", "--kek", "nope.transfer", "--label", "good"],
            "cannot read nope.transfer",
        ),
        case(
            "transfer path is a directory",
            "byok-offline",
            &["package", "--kek", "a-directory", "--label", "good"],
            "cannot read a-directory",
        ),
        // byok-offline inspect: the .byok
        case(
            "not JSON",
            "byok-offline",
            &["inspect", "notjson.byok"],
            "not a .byok package",
        ),
        case(
            "truncated .byok",
            "byok-offline",
            &["inspect", "truncated.byok"],
            "not a .byok package",
        ),
        case(
            "oversized .byok",
            "byok-offline",
            &["inspect", "oversized.byok"],
            "a .byok is under",
        ),
        case(
            "wrong schema_version",
            "byok-offline",
            &["inspect", "schema.byok"],
            "schema_version is `2.0.0`",
        ),
        case(
            "wrong alg",
            "byok-offline",
            &["inspect", "alg.byok"],
            "header.alg is `RSA-OAEP`",
        ),
        case(
            "wrong enc",
            "byok-offline",
            &["inspect", "enc.byok"],
            "without any suffix",
        ),
        case(
            "unversioned kid in .byok",
            "byok-offline",
            &["inspect", "unversioned.byok"],
            "has no version",
        ),
        case(
            "padded base64",
            "byok-offline",
            &["inspect", "padded.byok"],
            "padding",
        ),
        case(
            "ciphertext fits no KEK",
            "byok-offline",
            &["inspect", "short.byok"],
            "fits no KEK size",
        ),
        // byok-online
        case(
            "import: malformed .byok",
            "byok-online",
            &[
                "import",
                "--name",
                "t",
                "--byok-file",
                "notjson.byok",
                "--kty",
                "EC",
            ],
            "not a .byok package",
        ),
        case(
            "import: foreign kid",
            "byok-online",
            &[
                "import",
                "--name",
                "t",
                "--byok-file",
                "foreign.byok",
                "--kty",
                "EC",
            ],
            "same vault",
        ),
        case(
            "import: tampered ciphertext",
            "byok-online",
            &[
                "import",
                "--name",
                "t",
                "--byok-file",
                "tampered.byok",
                "--kty",
                "EC",
            ],
            "HTTP 400 BadParameter",
        ),
        case(
            "import: wrong kty",
            "byok-online",
            &[
                "import",
                "--name",
                "t",
                "--byok-file",
                "tampered.byok",
                "--kty",
                "RSA",
            ],
            "HTTP 400 BadParameter",
        ),
        case(
            "import: unreadable .byok",
            "byok-online",
            &[
                "import",
                "--name",
                "t",
                "--byok-file",
                "a-directory",
                "--kty",
                "EC",
            ],
            "cannot read a-directory",
        ),
        case(
            "import: bad key name",
            "byok-online",
            &[
                "import",
                "--name",
                "bad_name",
                "--byok-file",
                "tampered.byok",
                "--kty",
                "EC",
            ],
            "not a valid key name",
        ),
        case(
            "import: bad time",
            "byok-online",
            &[
                "import",
                "--name",
                "t",
                "--byok-file",
                "tampered.byok",
                "--kty",
                "EC",
                "--expires",
                "tomorrow",
            ],
            "RFC 3339",
        ),
        case(
            "kek download: unknown key",
            "byok-online",
            &[
                "kek",
                "download",
                "--name",
                "t-missing",
                "--out",
                "o.transfer",
            ],
            "was not found",
        ),
        case(
            "kek download: not a KEK",
            "byok-online",
            &[
                "kek",
                "download",
                "--name",
                "plainkey",
                "--out",
                "o.transfer",
            ],
            "a KEK must be RSA-HSM",
        ),
        case(
            "import: key that is not a KEK",
            "byok-online",
            &[
                "import",
                "--name",
                "t",
                "--byok-file",
                "notkek.byok",
                "--kty",
                "EC",
            ],
            "a KEK must be RSA-HSM",
        ),
        case(
            "kek download: existing output",
            "byok-online",
            &["kek", "download", "--name", "KEK", "--out", "kek.transfer"],
            "already exists",
        ),
        case(
            "kek create: bad size",
            "byok-online",
            &["kek", "create", "--name", "K2", "--size", "1024"],
            "2048, 3072 or 4096",
        ),
        case(
            "show: 404",
            "byok-online",
            &["show", "--name", "nope"],
            "was not found",
        ),
        case(
            "China vault",
            "byok-online",
            &[
                "--vault-url",
                "https://contoso.vault.azure.cn",
                "import",
                "--name",
                "t",
                "--byok-file",
                "tampered.byok",
                "--kty",
                "EC",
            ],
            "not offered in Azure China",
        ),
        case(
            "vault unreachable",
            "byok-online",
            &[
                "--vault-url",
                "https://127.0.0.1:9",
                // Microsoft's backoff at a 100th of its pace: 0.3 s, not 31 s, of retries.
                "--pace-window-ms",
                "100",
                "--auth",
                "cli",
                "show",
                "--name",
                "k",
            ],
            "cannot reach the vault",
        ),
        case(
            "kv-emulator: bad listen address",
            "kv-emulator",
            &["--listen", "256.0.0.1:1", "--state-dir", "x"],
            "invalid value",
        ),
        case(
            "kv-emulator: unusable state dir",
            "kv-emulator",
            &["--state-dir", "/proc/byok-cannot-exist"],
            "/proc/byok-cannot-exist",
        ),
    ];
    // Vault faults: 401 (wrong secret), 403, 429, 500, expired token.
    let conn: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("connection.json")).unwrap()).unwrap();
    let secret_env = |secret: &str| {
        vec![
            (
                "AZURE_TENANT_ID",
                conn["tenant_id"].as_str().unwrap().to_string(),
            ),
            (
                "AZURE_CLIENT_ID",
                conn["client_id"].as_str().unwrap().to_string(),
            ),
            ("AZURE_CLIENT_SECRET", secret.to_string()),
        ]
    };
    // The emulator's URL, address and CA from its state directory; the credential from the
    // environment (--auth client-secret); the SDK's challenge verification on.
    let direct = |state: &Path| -> Vec<String> {
        vec![
            "--emulator".into(),
            state.display().to_string(),
            "--auth".into(),
            "client-secret".into(),
            // The 429 and 500 are retried on Microsoft's schedule, at a 100th of its pace.
            "--pace-window-ms".into(),
            "100".into(),
            "show".into(),
            "--name".into(),
            "KEK".into(),
        ]
    };
    cases.push(Case {
        name: "401: wrong client secret",
        program: "byok-online",
        args: direct(&state),
        env: secret_env("not-the-secret"),
        expect: "7000215",
    });
    let mut faulty = Vec::new();
    // Each fault gets an emulator of its own sharing the main one's identity (same secret).
    let faults: [(&'static str, &str, &[&str], &'static str); 4] = [
        (
            "403 from the vault",
            "403",
            &["--fault-status", "403"],
            "HTTP 403 Forbidden",
        ),
        (
            "429 from the vault",
            "429",
            &["--fault-status", "429"],
            "HTTP 429 Throttled",
        ),
        (
            "500 from the vault",
            "500",
            &["--fault-status", "500"],
            "HTTP 500",
        ),
        (
            "expired token",
            "expired",
            &["--token-lifetime=-5"],
            "HTTP 401",
        ),
    ];
    for (name, sub, extra, expect) in faults {
        let state = fault_dir.join(sub);
        std::fs::create_dir_all(&state).unwrap();
        std::fs::copy(
            dir.path().join("emulator/identity.json"),
            state.join("identity.json"),
        )
        .unwrap();
        faulty.push(emulator(&bin, &state, extra));
        cases.push(Case {
            name,
            program: "byok-online",
            args: direct(&state),
            env: secret_env(conn["client_secret"].as_str().unwrap()),
            expect,
        });
    }

    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let before = listing(&work);
        let mut cmd = Command::new(bin.join(c.program));
        match c.program {
            "byok-offline" => offline_env(&mut cmd),
            "byok-online"
                if !c
                    .args
                    .iter()
                    .any(|a| a == "--vault-url" || a == "--emulator") =>
            {
                cmd.arg("--emulator").arg(&state).current_dir(&work);
            }
            _ => {
                cmd.current_dir(&work);
            }
        }
        for var in ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"] {
            cmd.env_remove(var);
        }
        cmd.args(&c.args).envs(c.env.iter().cloned());
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let after = listing(&work);
        let problem = if out.status.success() {
            Some("exited 0".to_string())
        } else if !err.contains(c.expect) {
            Some(format!("message lacks `{}`: {err}", c.expect))
        } else if before != after {
            Some(format!(
                "left files: {:?}",
                after.difference(&before).collect::<Vec<_>>()
            ))
        } else if err.contains(PIN) || err.contains(conn["client_secret"].as_str().unwrap()) {
            Some("a secret is in the message".into())
        } else {
            None
        };
        if let Some(p) = problem {
            failures.push(format!("{}: {p}", c.name));
        }
    }
    assert_eq!(
        std::fs::read_to_string(work.join("existing.byok")).unwrap(),
        "keep"
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    println!("bad inputs: {} tried, {} passed", cases.len(), cases.len());
}

/// A non-extractable and a non-sensitive AES key, made by OpenSC's `pkcs11-tool` (a client we
/// did not write) and shown by it to carry the attributes the cases rely on.
fn make_locked_keys(token: &TestToken) {
    // pkcs11-tool prints the key's access flags: "sensitive, always sensitive, never
    // extractable, local" for the locked key, "extractable, local" for the plain one.
    let expected = |locked: bool, access: &str| match locked {
        true => access.contains("sensitive") && access.contains("never extractable"),
        false => !access.contains("sensitive") && access.contains("extractable"),
    };
    for (label, flag, locked) in [
        ("locked", "--sensitive", true),
        ("plain", "--extractable", false),
    ] {
        let out = token
            .command("pkcs11-tool")
            .arg("--module")
            .arg(token.module())
            .args(["--login", "--pin", PIN, "--keygen", "--key-type", "AES:32"])
            .args(["--label", label, flag])
            .output()
            .unwrap_or_else(|e| panic!("pkcs11-tool: {e}; install it: apt-get install opensc"));
        let shown = String::from_utf8_lossy(&out.stdout);
        let access = shown
            .lines()
            .find(|l| l.trim_start().starts_with("Access:"));
        assert!(
            out.status.success() && access.is_some_and(|a| expected(locked, a)),
            "pkcs11-tool --keygen --label {label} {flag}: {shown}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
