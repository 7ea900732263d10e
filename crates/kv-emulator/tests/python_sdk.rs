//! The official Python SDK runs create, get, import with key_hsm, and sign against the
//! emulator unchanged (tests/python/azure_sdk_byok.py). The interpreter comes from BYOK_PYTHON,
//! a venv with azure-keyvault-keys and azure-identity that `cargo xtask ci` prepares.

mod common;

#[tokio::test]
async fn official_python_sdk_runs_the_byok_flow() {
    let python = std::env::var("BYOK_PYTHON").expect(
        "BYOK_PYTHON is not set: run `cargo xtask ci`, which makes target/pyvenv with the Azure \
         Python SDK, or point BYOK_PYTHON at a python with azure-keyvault-keys and azure-identity",
    );
    let emu = common::Emu::start(kv_emulator::Flavor::Vault).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/azure_sdk_byok.py"
    );
    let connection = emu.dir.path().join(kv_emulator::CONNECTION_FILE);
    let out = tokio::process::Command::new(python)
        .arg(script)
        .arg(&connection)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("python-sdk: create, get, import key_hsm, sign: ok"),
        "{stdout}"
    );
}
