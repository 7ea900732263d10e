//! Hostile servers and hostile content, through the real binaries: what a vault, an authority
//! or a file crossing the air gap can try against the operator (docs/security.md, "Threat
//! model"). One test per attack; each fails on a build without the defence
//! (`BYOK_TEST_BIN_DIR=DIR` runs them against another build's binaries).
//!
//! - Redirects: a vault or an authority answering 301, 302, 307 or 308 to `http://` (or to
//!   itself): byok-online follows none, and nothing reaches the plain listener.
//! - Tokens: kv-emulator refuses a token whose `nbf` is ahead of its clock, or whose `tid` is
//!   another tenant's, though signed with its own key.
//! - Terminal escapes: control characters in a `.byok`'s generator or in a vault's error text
//!   are shown escaped, never raw.
//! - Weak KEKs: a KEK transfer file with exponent 3, or with a modulus divisible by 3, is
//!   refused before anything is generated; a sidecar naming another KEK than its package is
//!   refused by the dry run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use byok_tests::hostile::{
    PlainListener, TlsServer, https_get, json_answer, mint_token, redirect_to,
};
use byok_tests::{MODULE_ENV, PIN_ENV, TestToken, bins, emulator, kek_pair, stderr};
use serde_json::{Value, json};

/// The emulator's `connection.json`.
/// A temporary directory with a kv-emulator whose state is in its `emulator/`.
fn started_emulator() -> (tempfile::TempDir, PathBuf, byok_tests::Emulator) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("emulator");
    let emu = emulator(&bins(), &state, &[]);
    (dir, state, emu)
}

fn connection(state: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(state.join("connection.json")).unwrap()).unwrap()
}

fn field(conn: &Value, name: &str) -> String {
    conn[name]
        .as_str()
        .unwrap_or_else(|| panic!("connection.json has no {name}: {conn}"))
        .to_string()
}

/// Runs `program` in `dir` with `args`, none of the caller's Azure settings, stdin empty.
fn run(program: &str, dir: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(bins().join(program));
    cmd.args(args).current_dir(dir).stdin(Stdio::null());
    for var in [
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_AUTHORITY_HOST",
        "AZURE_KEYVAULT_NAME",
        "AZURE_MANAGEDHSM_NAME",
        "BYOK_VAULT_URL",
        "RUST_LOG",
        "NO_COLOR",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    cmd.output().unwrap()
}

/// The client secret of the emulator's client, as the environment gives it.
fn secret_env(conn: &Value) -> Vec<(&'static str, String)> {
    vec![
        ("AZURE_TENANT_ID", field(conn, "tenant_id")),
        ("AZURE_CLIENT_ID", field(conn, "client_id")),
        ("AZURE_CLIENT_SECRET", field(conn, "client_secret")),
    ]
}

const REDIRECTS: [u16; 4] = [301, 302, 307, 308];

/// A vault answering the first GET with a redirect to plain HTTP: byok-online sends nothing
/// there, and says which redirect it refused and where it pointed.
#[test]
fn a_vault_redirect_to_plain_http_is_not_followed() {
    let (dir, state, _emu) = started_emulator();
    let conn = connection(&state);
    for status in REDIRECTS {
        let plain = PlainListener::start();
        let vault = TlsServer::start(&state, redirect_to(status, plain.url()));
        let out = run(
            "byok-online",
            dir.path(),
            &[
                "--vault-url",
                &vault.url(),
                "--ca-cert",
                &field(&conn, "ca_cert"),
                "--authority-host",
                &field(&conn, "authority_host"),
                "--auth",
                "client-secret",
                "show",
                "--name",
                "k",
            ],
            &secret_env(&conn),
        );
        let err = stderr(&out);
        assert!(
            vault
                .seen()
                .iter()
                .any(|r| r.method == "GET" && r.path.starts_with("/keys/k")),
            "{status}: the vault was never asked: {err}"
        );
        assert_eq!(
            plain.connections(),
            0,
            "{status}: the redirect to {} was followed; the plain listener got {:?}",
            plain.url(),
            plain.received()
        );
        assert!(!out.status.success(), "{status}: succeeded: {err}");
        assert!(
            err.contains(&format!("answered {status}"))
                && err.contains("redirect")
                && err.contains(&plain.url()),
            "{status}: the error does not name the redirect: {err}"
        );
    }
}

/// The authority answering the token POST with a redirect to plain HTTP: the form, with the
/// client secret in it, is never sent there (a 307/308 would re-send it as it was).
#[test]
fn a_token_redirect_to_plain_http_never_gets_the_client_secret() {
    let (dir, state, _emu) = started_emulator();
    let conn = connection(&state);
    let secret = field(&conn, "client_secret");
    // Every status is tried before the verdict, so a failure names each one that leaked.
    let mut leaks = Vec::new();
    for status in REDIRECTS {
        let plain = PlainListener::start();
        let authority = TlsServer::start(&state, redirect_to(status, plain.url()));
        let out = run(
            "byok-online",
            dir.path(),
            &[
                "--emulator",
                state.to_str().unwrap(),
                "--authority-host",
                &authority.url(),
                "--auth",
                "client-secret",
                "show",
                "--name",
                "k",
            ],
            &secret_env(&conn),
        );
        let err = stderr(&out);
        let token_path = format!("/{}/oauth2/v2.0/token", field(&conn, "tenant_id"));
        assert!(
            authority
                .seen()
                .iter()
                .any(|r| r.method == "POST" && r.path == token_path),
            "{status}: the authority was never asked for a token: {err}"
        );
        let received = plain.received();
        if plain.connections() > 0 {
            leaks.push(format!(
                "{status}: the token request was re-sent over plain HTTP (client secret in \
                 it: {}): {received:?}",
                received.iter().any(|r| r.contains(&secret))
            ));
            continue;
        }
        assert!(!out.status.success(), "{status}: succeeded: {err}");
        assert!(
            err.contains(&format!("answered {status}")) && err.contains(&plain.url()),
            "{status}: the error does not name the redirect: {err}"
        );
        assert!(!err.contains(&secret), "the secret is in the error: {err}");
    }
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
}

/// A redirect to the same HTTPS origin is refused too: Key Vault and Entra ID do not redirect
/// these requests, so one answer is asked for and the redirect is reported.
#[test]
fn a_same_origin_https_redirect_is_refused_too() {
    let (dir, state, _emu) = started_emulator();
    let conn = connection(&state);
    // The server redirects to its own address: it learns it once bound, through the closure.
    let own = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let target = own.clone();
    let vault = TlsServer::start(
        &state,
        std::sync::Arc::new(move |req: &byok_tests::hostile::Seen| {
            let to = target.get().cloned().unwrap_or_default();
            format!(
                "HTTP/1.1 307 Temporary Redirect\r\nlocation: {to}{}\r\ncontent-length: 0\r\n\
                 connection: close\r\n\r\n",
                req.path
            )
        }),
    );
    own.set(vault.url()).unwrap();
    let out = run(
        "byok-online",
        dir.path(),
        &[
            "--vault-url",
            &vault.url(),
            "--ca-cert",
            &field(&conn, "ca_cert"),
            "--auth",
            "client-secret",
            "show",
            "--name",
            "k",
        ],
        &secret_env(&conn),
    );
    let err = stderr(&out);
    assert!(!out.status.success(), "succeeded: {err}");
    assert_eq!(
        vault.seen().len(),
        1,
        "the redirect was followed: {:?}",
        vault.seen().iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    assert!(err.contains("answered 307"), "{err}");
}

/// The claims of a token the emulator issues to its client, with `now` as its times.
fn claims(conn: &Value, now: i64) -> Value {
    let tenant = field(conn, "tenant_id");
    json!({
        "aud": "https://vault.azure.net",
        "iss": format!("https://sts.windows.net/{tenant}/"),
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "appid": field(conn, "client_id"),
        "appidacr": "1",
        "tid": tenant,
        "ver": "1.0",
    })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// GET /keys with `token`, on the emulator's vault host: status and body.
fn list_keys(conn: &Value, token: &str) -> (u16, String) {
    let url = field(conn, "vault_url");
    let host = url.trim_start_matches("https://").trim_end_matches('/');
    let addr = field(conn, "vault_address").parse().unwrap();
    https_get(
        addr,
        host,
        Path::new(&field(conn, "ca_cert")),
        "/keys?api-version=7.6",
        token,
    )
}

/// A token signed with the tenant's own key but valid only in an hour: refused with 401,
/// while the same token valid now (and one a minute ahead, inside the 5 min leeway) passes.
#[test]
fn a_token_not_yet_valid_is_refused_by_the_emulator() {
    let (_dir, state, _emu) = started_emulator();
    let conn = connection(&state);
    let now = unix_now();
    let valid = mint_token(&state, &claims(&conn, now));
    let (status, body) = list_keys(&conn, &valid);
    assert_eq!(status, 200, "a well-formed minted token is refused: {body}");
    let mut skewed = claims(&conn, now);
    skewed["nbf"] = json!(now + 60);
    let (status, body) = list_keys(&conn, &mint_token(&state, &skewed));
    assert_eq!(status, 200, "a minute of clock skew is refused: {body}");
    let mut later = claims(&conn, now);
    later["nbf"] = json!(now + 3600);
    let (status, body) = list_keys(&conn, &mint_token(&state, &later));
    assert_eq!(
        status, 401,
        "a token valid only in an hour was let through: {body}"
    );
    assert!(body.contains("not valid yet"), "{body}");
}

/// A token signed with the tenant's own key, the vault's issuer, but another tenant in `tid`:
/// refused with 401 naming the tenant.
#[test]
fn a_token_for_another_tenant_is_refused_by_the_emulator() {
    let (_dir, state, _emu) = started_emulator();
    let conn = connection(&state);
    let now = unix_now();
    let (status, body) = list_keys(&conn, &mint_token(&state, &claims(&conn, now)));
    assert_eq!(status, 200, "a well-formed minted token is refused: {body}");
    let other = "96be4b7a-defb-4dc2-a31f-49ee6145d5ab";
    let mut foreign = claims(&conn, now);
    foreign["tid"] = json!(other);
    let (status, body) = list_keys(&conn, &mint_token(&state, &foreign));
    assert_eq!(
        status, 401,
        "another tenant's token was let through: {body}"
    );
    assert!(body.contains(other) && body.contains("tenant"), "{body}");
}

/// Raw control bytes in `bytes` other than the newline: C0, DEL, and C1 (as UTF-8).
fn raw_controls(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    text.chars()
        .filter(|&c| c != '\n' && c.is_control())
        .map(|c| format!("U+{:04X}", c as u32))
        .collect()
}

fn assert_escaped(out: &Output, what: &str, escaped: &str) {
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let raw = raw_controls(bytes);
        assert!(
            raw.is_empty(),
            "{what}: raw control characters {raw:?} reached {stream}: {:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains(escaped),
        "{what}: `{escaped}` not shown: {all}"
    );
}

/// What a hostile field carries: clear the screen, home the cursor, a fake line after a
/// carriage return and a newline, a bell, and CSI as one C1 character.
const HOSTILE: &str = "\u{1b}[2J\u{1b}[Hverified: OK\r\nerror: none\u{7}\u{9b}31m";

/// A `.byok` whose generator holds terminal escapes: `inspect` on both sides shows them
/// escaped (and `--output json` as JSON escapes), and nothing raw reaches the terminal.
#[test]
fn a_hostile_generator_reaches_no_terminal_raw() {
    let dir = tempfile::tempdir().unwrap();
    let (_, kek) = kek_pair(2048);
    let kid = byok_core::KeyId::parse_versioned(
        "https://contoso.vault.azure.net/keys/KEK/0123456789abcdef0123456789abcdef",
    )
    .unwrap();
    let target = byok_core::TargetKey::generate(byok_core::target::KeyKind::Ec {
        curve: byok_core::target::Curve::P256,
    })
    .unwrap();
    let ct = byok_core::wrap::wrap(target.plaintext(), &kek).unwrap();
    let generator = byok_core::package::Generator::this_tool("test", "software", "0");
    let bytes = byok_core::KeyTransferPackage::new(kid, ct, &generator)
        .unwrap()
        .to_json_bytes();
    let mut doc: Value = serde_json::from_slice(&bytes).unwrap();
    doc["generator"] = json!(HOSTILE);
    let file = dir.path().join("hostile.byok");
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
    let path = file.to_str().unwrap();
    for program in ["byok-offline", "byok-online"] {
        let out = run(program, dir.path(), &["inspect", path], &[]);
        assert!(out.status.success(), "{program} inspect: {}", stderr(&out));
        assert_escaped(
            &out,
            &format!("{program} inspect"),
            "\\x1b[2J\\x1b[Hverified: OK\\r\\nerror: none\\x07\\u{9b}31m",
        );
        let out = run(
            program,
            dir.path(),
            &["--output", "json", "inspect", path],
            &[],
        );
        assert!(out.status.success(), "{program} inspect: {}", stderr(&out));
        assert_escaped(&out, &format!("{program} inspect -o json"), "\\u001b[2J");
        let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            shown
                .pointer("/generator")
                .or(shown.pointer("/package/generator")),
            Some(&json!(HOSTILE)),
            "{program}: JSON keeps the value itself: {shown}"
        );
    }
}

/// A vault whose error message holds terminal escapes: the error is shown escaped.
#[test]
fn a_vault_error_with_control_characters_is_shown_escaped() {
    let (dir, state, _emu) = started_emulator();
    let conn = connection(&state);
    let body = json!({"error": {"code": "BadParameter", "message": HOSTILE}}).to_string();
    let vault = TlsServer::start(&state, json_answer(400, body));
    for format in ["human", "json"] {
        let out = run(
            "byok-online",
            dir.path(),
            &[
                "--output",
                format,
                "--vault-url",
                &vault.url(),
                "--ca-cert",
                &field(&conn, "ca_cert"),
                "--auth",
                "client-secret",
                "show",
                "--name",
                "k",
            ],
            &secret_env(&conn),
        );
        assert!(!out.status.success(), "{format}: succeeded");
        assert!(
            !vault.seen().is_empty(),
            "{format}: the vault was never asked: {}",
            stderr(&out)
        );
        assert_escaped(&out, &format!("vault error, -o {format}"), "\\x1b[2J");
    }
}

/// A KEK transfer file for `n` and `e`, with a kid and the key's own fingerprint (the file is
/// consistent: only the key is weak).
fn transfer_file(dir: &Path, name: &str, n: &[u8], e: u64) -> PathBuf {
    let key = rsa::PublicKey::new(
        rsa::BoxedUint::from_be_slice(n, (n.len() * 8) as u32).unwrap(),
        rsa::BoxedUint::from(e),
    )
    .unwrap();
    let der = rsa::pkcs8::EncodePublicKey::to_public_key_der(&key).unwrap();
    let pem =
        rsa::pkcs8::EncodePublicKey::to_public_key_pem(&key, rsa::pkcs8::LineEnding::LF).unwrap();
    let text = format!(
        "{}\nkid: https://contoso.vault.azure.net/keys/KEK/0123456789abcdef0123456789abcdef\n\
         key-size: {}\nsha256: {}\n{pem}",
        byok_core::transfer::MAGIC,
        n.len() * 8,
        byok_core::Fingerprint::of_spki_der(der.as_bytes()).to_hex()
    );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const PIN: &str = "hostile-Pin-2718";

/// `byok-offline package` with `transfer` on a fresh SoftHSM token: refused, naming `problem`,
/// with nothing generated on the token and no file written.
fn package_refused(transfer: &Path, problem: &str) {
    let dir = transfer.parent().unwrap();
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let token = TestToken::softhsm_in(&work, "weak", PIN).unwrap_or_else(|e| panic!("{e}"));
    let mut env: Vec<(&str, String)> = token
        .env()
        .iter()
        .map(|(k, v)| (*k, v.to_string_lossy().into_owned()))
        .collect();
    env.push((MODULE_ENV, token.module().display().to_string()));
    env.push((PIN_ENV, PIN.into()));
    let before: Vec<_> = std::fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let out = run(
        "byok-offline",
        &work,
        &[
            "package",
            "--kek",
            transfer.to_str().unwrap(),
            "--generate",
            "--kty",
            "EC",
            "--curve",
            "P-384",
            "--label",
            "weak-kek-target",
        ],
        &env,
    );
    let err = stderr(&out);
    assert!(!out.status.success(), "a weak KEK was used: {err}");
    assert!(
        err.contains(problem) && err.contains("Download the KEK again"),
        "the error does not name {problem} and the fix: {err}"
    );
    let after: Vec<_> = std::fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after, "files were written: {after:?}");
    let keys = run("byok-offline", &work, &["--output", "json", "keys"], &env);
    let listed = String::from_utf8_lossy(&keys.stdout);
    assert!(keys.status.success(), "keys: {}", stderr(&keys));
    assert!(
        !listed.contains("weak-kek-target"),
        "a key was generated: {listed}"
    );
}

/// A KEK transfer file whose key has public exponent 3 (Key Vault makes 65537 only).
#[test]
fn a_kek_with_exponent_3_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, kek) = kek_pair(2048);
    let file = transfer_file(dir.path(), "e3.transfer", &kek.n_bytes(), 3);
    package_refused(&file, "public exponent is 3");
}

/// A KEK transfer file whose modulus is divisible by 3 (2^2048 - 1: no RSA key at all).
#[test]
fn a_kek_with_a_modulus_divisible_by_3_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = transfer_file(dir.path(), "by3.transfer", &[0xff; 256], 65537);
    package_refused(&file, "divisible by 3");
}

/// A package whose sidecar names another KEK than the package does (the hash still matches):
/// `import --dry-run` refuses it before anything is sent.
#[test]
fn a_sidecar_naming_another_kek_is_refused_by_the_dry_run() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("emulator");
    let _emu = emulator(&bins(), &state, &[]);
    let online = |args: &[&str]| {
        let mut full = vec!["--emulator", state.to_str().unwrap()];
        full.extend_from_slice(args);
        run("byok-online", dir.path(), &full, &[])
    };
    let out = online(&[
        "kek",
        "create",
        "--name",
        "KEK",
        "--size",
        "2048",
        "--out",
        "kek.transfer",
    ]);
    assert!(out.status.success(), "kek create: {}", stderr(&out));
    let transfer = byok_core::KekTransfer::parse(
        &std::fs::read_to_string(dir.path().join("kek.transfer")).unwrap(),
    )
    .unwrap();
    let target = byok_core::TargetKey::generate(byok_core::target::KeyKind::Ec {
        curve: byok_core::target::Curve::P256,
    })
    .unwrap();
    let ct = byok_core::wrap::wrap(target.plaintext(), &transfer.key).unwrap();
    let bytes = byok_core::KeyTransferPackage::new(
        transfer.kid.clone(),
        ct,
        &byok_core::package::Generator::this_tool("test", "software", "0"),
    )
    .unwrap()
    .to_json_bytes();
    let file = dir.path().join("k.byok");
    std::fs::write(&file, &bytes).unwrap();
    let other_kid = transfer.kid.to_string().replace(
        transfer.kid.version().unwrap(),
        "ffffffffffffffffffffffffffffffff",
    );
    let sidecar = byok_core::sidecar::Sidecar {
        byok_sha256: byok_core::Fingerprint::of_bytes(&bytes),
        kek_kid: other_kid.clone(),
        kind: target.kind(),
        public_key: target.public_key().cloned(),
        source: byok_core::sidecar::Source::default(),
    };
    std::fs::write(byok_core::sidecar::path_for(&file), sidecar.to_json_bytes()).unwrap();
    let out = online(&[
        "import",
        "--name",
        "k",
        "--byok-file",
        "k.byok",
        "--dry-run",
    ]);
    let err = stderr(&out);
    assert!(!out.status.success(), "the dry run passed: {err}");
    assert!(
        err.contains(&other_kid) && err.contains(&transfer.kid.to_string()),
        "the error does not name both KEKs: {err}"
    );
}
