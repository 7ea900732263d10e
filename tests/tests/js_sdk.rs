//! Microsoft's JavaScript SDK (`@azure/keyvault-keys` + `@azure/identity`, pinned and locked in
//! tests/js/package-lock.json, installed by `cargo xtask ci` into target/js/node_modules) through
//! a whole BYOK ceremony against kv-emulator, with its challenge-resource verification on and
//! its token from MSAL Node through the emulator's Entra ID side (nothing written by hand):
//!
//! 1. `ClientSecretCredential` → `createRsaKey` (an import-only RSA-HSM KEK) → `getKey`; the
//!    script writes the KEK's public key and versioned id;
//! 2. `byok-offline package --generate` makes the targets on NSS softokn (a conformant token:
//!    RSA and EC keep their full-length encodings, its RFC 5649 is exact), with no leniency;
//! 3. `importKey` of each `.byok` (key_hsm), the vault's public key compared with the token's
//!    (the sidecar's); `listPropertiesOfKeys` page by page; `beginDeleteKey`,
//!    `getDeletedKey`, `beginRecoverDeletedKey`, `getKey`.
//!
//! A vault takes RSA and EC; a Managed HSM the AES key. The vault's host
//! (`emulator.vault.azure.net`) resolves to the emulator through the `lookup` of the agent
//! the script gives the SDK: no system file is edited.

use byok_tests::{Emulator, TestToken, bins, workspace};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const PIN: &str = "js-sdk-PIN-2417";
/// One script run (a token, a few imports, a list, a delete and a recovery) takes seconds;
/// past this it is stuck.
const SCRIPT_LIMIT: Duration = Duration::from_secs(120);

fn node_modules() -> String {
    std::env::var("BYOK_NODE_MODULES").unwrap_or_else(|_| {
        panic!(
            "BYOK_NODE_MODULES is not set: run `cargo xtask ci`, which installs tests/js's \
             locked packages into target/js/node_modules (`npm ci`), or point it at one"
        )
    })
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd` to its end within `limit` (killed past it), and returns its output.
fn run_within(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("{cmd:?} did not finish within {} s", limit.as_secs())
        }
    }
}

/// `node tests/js/keyvault_byok.mjs ARGS` against the emulator of `state`.
fn script(state: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new("node");
    cmd.arg(workspace().join("tests/js/keyvault_byok.mjs"))
        .arg(args[0])
        .arg(state.join("connection.json"))
        .args(&args[1..])
        .env("BYOK_NODE_MODULES", node_modules())
        .env("NODE_EXTRA_CA_CERTS", state.join("ca.pem"));
    let started = Instant::now();
    let out = run_within(cmd, SCRIPT_LIMIT);
    eprintln!(
        "js-sdk: `{}` took {:.1} s",
        args[0],
        started.elapsed().as_secs_f32()
    );
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    text(&out)
}

/// A target made on the token and packaged for the KEK (`byok-offline package --generate`).
struct Target {
    label: &'static str,
    kty: &'static str,
    kind: &'static [&'static str],
    crv: Option<&'static str>,
    ops: &'static [&'static str],
}

/// Packages `targets` on `token` for the KEK in `dir` (`kek.pem`, `kek.kid`); the plan the
/// script's `import` reads.
fn package(token: &TestToken, dir: &Path, targets: &[Target]) -> PathBuf {
    let bin = bins();
    let kid = std::fs::read_to_string(dir.join("kek.kid")).unwrap();
    let mut packages = Vec::new();
    for t in targets {
        let mut cmd = token.command_with_pin(bin.join("byok-offline"));
        cmd.arg("package")
            .args(token.token_args())
            .arg("--kek-pem")
            .arg(dir.join("kek.pem"))
            .args(["--kid", kid.trim(), "--generate", "--label", t.label])
            .args(t.kind);
        let out = run_within(cmd, SCRIPT_LIMIT);
        assert!(out.status.success(), "{}: {}", t.label, text(&out));
        let file = token
            .dir()
            .join(format!("KeyTransferPackage-{}.byok", t.label));
        let mut entry = json!({
            "name": t.label,
            "file": file,
            "sidecar": format!("{}.sidecar.json", file.display()),
            "kty": t.kty,
            "ops": t.ops,
        });
        if let Some(crv) = t.crv {
            entry["crv"] = json!(crv);
        }
        packages.push(entry);
    }
    let plan = dir.join(format!("plan-{}.json", targets[0].label));
    let body: Value = json!({"packages": packages, "page_size": 2});
    std::fs::write(&plan, body.to_string()).unwrap();
    plan
}

#[test]
fn the_javascript_sdk_runs_the_byok_ceremony_through_msal() {
    let started = Instant::now();
    let bin = bins();
    let dir = tempfile::tempdir().unwrap();
    let token = TestToken::nss(PIN);

    // A vault: RSA and EC targets. Strict: no leniency flag.
    let state = dir.path().join("vault");
    let vault =
        Emulator::start(&bin.join("kv-emulator"), &state, &[]).unwrap_or_else(|e| panic!("{e}"));
    let out = script(vault.state(), &["kek", "kek", dir.path().to_str().unwrap()]);
    assert!(
        out.contains("createRsaKey (import-only KEK) and getKey"),
        "{out}"
    );
    let plan = package(
        &token,
        dir.path(),
        &[
            Target {
                label: "jsrsa",
                kty: "RSA-HSM",
                kind: &["--kty", "RSA", "--size", "2048"],
                crv: None,
                ops: &["sign", "verify"],
            },
            Target {
                label: "jsec",
                kty: "EC-HSM",
                kind: &["--kty", "EC", "--curve", "P-256"],
                crv: Some("P-256"),
                ops: &["sign", "verify"],
            },
            Target {
                label: "jsec384",
                kty: "EC-HSM",
                kind: &["--kty", "EC", "--curve", "P-384"],
                crv: Some("P-384"),
                ops: &["sign", "verify"],
            },
        ],
    );
    let out = script(vault.state(), &["import", plan.to_str().unwrap()]);
    for needle in [
        "importKey jsrsa (RSA-HSM): the vault's public key is the token's",
        "importKey jsec (EC-HSM): the vault's public key is the token's",
        "importKey jsec384 (EC-HSM): the vault's public key is the token's",
        "listPropertiesOfKeys: 4 keys on",
        "beginDeleteKey, getDeletedKey, beginRecoverDeletedKey jsrsa: ok",
    ] {
        assert!(out.contains(needle), "{needle}\n{out}");
    }
    drop(vault);

    // A Managed HSM: the AES key.
    let state = dir.path().join("mhsm");
    let mhsm = Emulator::start(
        &bin.join("kv-emulator"),
        &state,
        &["--flavor", "managedhsm"],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let hsm_dir = dir.path().join("hsm");
    std::fs::create_dir_all(&hsm_dir).unwrap();
    script(mhsm.state(), &["kek", "kek", hsm_dir.to_str().unwrap()]);
    let plan = package(
        &token,
        &hsm_dir,
        &[
            Target {
                label: "jsaes",
                kty: "oct-HSM",
                kind: &["--kty", "oct", "--size", "256"],
                crv: None,
                ops: &["wrapKey", "unwrapKey"],
            },
            Target {
                label: "jsaes2",
                kty: "oct-HSM",
                kind: &["--kty", "oct", "--size", "128"],
                crv: None,
                ops: &["encrypt", "decrypt"],
            },
        ],
    );
    let out = script(mhsm.state(), &["import", plan.to_str().unwrap()]);
    assert!(
        out.contains("importKey jsaes (oct-HSM): imported")
            && out.contains("beginRecoverDeletedKey jsaes: ok"),
        "{out}"
    );
    eprintln!(
        "js-sdk: the whole test took {:.1} s",
        started.elapsed().as_secs_f32()
    );
}
