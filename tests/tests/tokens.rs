//! The kit's tokens, reached the way every test and `cargo xtask e2e` reach them: a fresh
//! token of each module kind, listed and logged in to by the real `byok-offline` with only
//! what [`TestToken`] gives (its environment, its `--token` arguments, the PIN variable).
//! kryoptic's module comes from `cargo xtask kryoptic` (`cargo xtask ci` builds it first).

use byok_tests::{INIT_ARGS_ENV, ModuleKind, NSS_TOKEN_LABEL, PIN_ENV, TestToken, bins, ok};
use std::process::Output;

const PIN: &str = "tokens-Pin-5093";

fn offline(token: &TestToken, args: &[&str], pin: &str) -> Output {
    token
        .command(bins().join("byok-offline"))
        .args(token.token_args())
        .args(args)
        .env(PIN_ENV, pin)
        .output()
        .unwrap()
}

/// The token is listed under its label, its key list opens with the PIN (and is empty), and
/// a wrong PIN is refused by the token itself.
fn reachable(token: &TestToken) {
    let listed = ok(&token
        .command(bins().join("byok-offline"))
        .args(["--output", "json", "tokens"])
        .output()
        .unwrap());
    let labels: Vec<&str> = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["label"].as_str())
        .collect();
    assert!(
        labels.contains(&token.label()),
        "{} token `{}` not among {labels:?}",
        token.kind(),
        token.label()
    );
    let keys = ok(&offline(token, &["--output", "json", "keys"], PIN));
    assert_eq!(
        keys["keys"],
        serde_json::json!([]),
        "a fresh token holds no keys"
    );
    let refused = offline(token, &["keys"], "not-the-pin-0000");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("CKR_PIN_INCORRECT"),
        "{} took a wrong PIN: {stderr}",
        token.kind()
    );
}

#[test]
fn softhsm_token_is_reachable_with_its_pin() {
    let token = TestToken::softhsm("kit-softhsm", PIN);
    assert_eq!(token.kind(), ModuleKind::SoftHsm);
    reachable(&token);
}

#[test]
fn kryoptic_token_is_reachable_with_its_pin() {
    let token = TestToken::kryoptic("kit-kryoptic", PIN);
    assert_eq!(token.kind(), ModuleKind::Kryoptic);
    assert!(
        token.path("token.sql").exists(),
        "kryoptic keeps its store in token.sql"
    );
    reachable(&token);
}

#[test]
fn nss_token_is_reachable_with_its_pin_and_only_with_its_init_string() {
    let token = TestToken::nss(PIN);
    assert_eq!(token.label(), NSS_TOKEN_LABEL);
    let init = token.init_args().expect("NSS needs an init string");
    assert!(init.contains(&format!("configdir='sql:{}'", token.dir().display())));
    reachable(&token);
    // Without the init string softokn refuses C_Initialize: the kit's variable is what works.
    let out = token
        .command(bins().join("byok-offline"))
        .env_remove(INIT_ARGS_ENV)
        .arg("tokens")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("CKR_ARGUMENTS_BAD"),
        "NSS without its init string: {stderr}"
    );
}
