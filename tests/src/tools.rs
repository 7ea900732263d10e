//! The openssl CLI, and reading the outputs of a run.

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs the `openssl` CLI in `dir`; its stdout, or why it failed (with its stderr).
pub fn try_openssl(args: &[&str], dir: &Path) -> Result<Vec<u8>, String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run openssl (it is on every machine we run on): {e}"))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!("openssl {args:?} failed: {}", stderr(&out)))
    }
}

/// Runs the `openssl` CLI in `dir` and returns its stdout; panics with its stderr if it fails.
pub fn openssl(args: &[&str], dir: &Path) -> Vec<u8> {
    try_openssl(args, dir).unwrap_or_else(|e| panic!("{e}"))
}

/// The openssl CLI's RSA-OAEP options for the AES key of a BYOK package: SHA-1 and MGF1-SHA-1,
/// as Key Vault unwraps it (`pkeyutl -encrypt` or `-decrypt`, followed by `-in` and `-out`).
pub const OPENSSL_OAEP_SHA1: [&str; 6] = [
    "-pkeyopt",
    "rsa_padding_mode:oaep",
    "-pkeyopt",
    "rsa_oaep_md:sha1",
    "-pkeyopt",
    "rsa_mgf1_md:sha1",
];

/// The BYOK wrap as a user would script it with the openssl CLI, three commands in `dir`: a
/// fresh AES-256 key (`aes.bin`), the PKCS#8 DER file `der` wrapped under it with RFC 5649
/// (`kwp.bin`), and the AES key encrypted with RSA-OAEP SHA-1 under the KEK public key PEM
/// file `kek` (`rsa.bin`). A package's ciphertext is `rsa.bin` followed by `kwp.bin`.
pub fn try_openssl_wrap(dir: &Path, der: &str, kek: &str) -> Result<(), String> {
    try_openssl(&["rand", "-out", "aes.bin", "32"], dir)?;
    let aes = std::fs::read(dir.join("aes.bin")).map_err(|e| format!("aes.bin: {e}"))?;
    let hex: String = aes.iter().map(|b| format!("{b:02x}")).collect();
    try_openssl(
        &[
            "enc",
            "-id-aes256-wrap-pad",
            "-K",
            &hex,
            "-iv",
            "A65959A6",
            "-in",
            der,
            "-out",
            "kwp.bin",
        ],
        dir,
    )?;
    let mut encrypt = vec!["pkeyutl", "-encrypt", "-pubin", "-inkey", kek];
    encrypt.extend(OPENSSL_OAEP_SHA1);
    encrypt.extend(["-in", "aes.bin", "-out", "rsa.bin"]);
    try_openssl(&encrypt, dir).map(drop)
}

/// A run's stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the run succeeded and returns its stdout as JSON (Null when it is not JSON).
pub fn ok(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "failed: {}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}
