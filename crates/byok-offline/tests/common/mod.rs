//! byok-offline's harness: the kit's SoftHSM token per test, driven through this crate's
//! binary, and a KEK transfer file naming a fixed key id.
#![allow(dead_code, unused_imports)]

use byok_core::{KekPublicKey, KekTransfer, KeyId};
use byok_tests::{PIN_ENV, TestToken};
pub use byok_tests::{kek_pair, ok, stderr};
use std::path::PathBuf;
use std::process::Output;

pub const PIN: &str = "q7-pin-Zx93";
pub const KID: &str =
    "https://contoso.vault.azure.net/keys/KEKforBYOK/0123456789abcdef0123456789abcdef";

/// A fresh token labelled `byok-test` in a directory of its own (the kit's [`TestToken`]:
/// `dir()`, `path(name)`, `module()`, `env()`).
pub struct Hsm(TestToken);

impl std::ops::Deref for Hsm {
    type Target = TestToken;

    fn deref(&self) -> &TestToken {
        &self.0
    }
}

impl Hsm {
    pub fn new() -> Self {
        Self(TestToken::softhsm("byok-test", PIN))
    }

    /// Runs `byok-offline` against this token with the PIN in the default variable.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[(PIN_ENV, PIN)])
    }

    /// Runs `byok-offline` against this token with no PIN variable but those in `env`.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(env!("CARGO_BIN_EXE_byok-offline"))
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    /// Writes a KEK transfer file for `kek` and returns its path.
    pub fn transfer_file(&self, kek: &KekPublicKey) -> PathBuf {
        let path = self.path("kek.transfer");
        let transfer = KekTransfer::new(KeyId::parse(KID).unwrap(), kek.clone()).unwrap();
        std::fs::write(&path, transfer.to_text()).unwrap();
        path
    }
}
