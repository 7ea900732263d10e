//! A fresh SoftHSM token per test, a software KEK, and the real `byok-offline` binary.
#![allow(dead_code)]

use byok_core::{KekPublicKey, KekTransfer, KeyId};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const PIN: &str = "q7-pin-Zx93";
pub const KID: &str =
    "https://contoso.vault.azure.net/keys/KEKforBYOK/0123456789abcdef0123456789abcdef";

pub struct Hsm {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
}

impl Hsm {
    /// A new token directory with one token labelled `byok-test`.
    pub fn new() -> Self {
        assert!(
            Path::new(MODULE).exists(),
            "SoftHSM is not installed: apt-get install softhsm2 (.ci/run does this)"
        );
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let out = Command::new("softhsm2-util")
            .args([
                "--init-token",
                "--free",
                "--label",
                "byok-test",
                "--so-pin",
                "5678",
                "--pin",
                PIN,
            ])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .expect("softhsm2-util runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir, conf }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `byok-offline` against this token with the PIN in the default variable.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[("BYOK_PKCS11_PIN", PIN)])
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_byok-offline"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("SOFTHSM2_CONF", &self.conf)
            .env("PKCS11_MODULE", MODULE)
            .env_remove("BYOK_PKCS11_PIN")
            .stdin(std::process::Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// Writes a KEK transfer file for `kek` and returns its path.
    pub fn transfer_file(&self, kek: &KekPublicKey) -> PathBuf {
        let path = self.path("kek.transfer");
        let transfer = KekTransfer::new(KeyId::parse(KID).unwrap(), kek.clone()).unwrap();
        std::fs::write(&path, transfer.to_text()).unwrap();
        path
    }
}

pub fn kek_pair(bits: usize) -> (rsa::PrivateKey, KekPublicKey) {
    let private = rsa::PrivateKey::new(&mut getrandom::SysRng, bits).unwrap();
    let public = KekPublicKey::from_rsa(private.to_public_key()).unwrap();
    (private, public)
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn ok(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "failed: {}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}
