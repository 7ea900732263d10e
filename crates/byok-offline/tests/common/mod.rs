//! byok-offline's harness: the kit's SoftHSM token per test, driven through this crate's
//! binary, and a KEK transfer file naming a fixed key id.
#![allow(dead_code, unused_imports)]

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use byok_core::challenge::AesChallenge;
use byok_core::{Fingerprint, KekPublicKey, KekTransfer, KeyId};
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

    /// An NSS softokn token: safe with several sessions generating at once, which SoftHSM
    /// 2.6.1 is not (it fails an AES generation now and then with CKR_GENERAL_ERROR under load).
    #[allow(dead_code)] // each test binary uses part of the kit
    pub fn nss() -> Self {
        Self(TestToken::nss(PIN))
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

/// A challenge as `byok-online prove-aes` writes it, made with `key` instead of
/// the vault (the HSM side cannot tell).
pub fn challenge_under(key: &[u8; 32]) -> AesChallenge {
    let value = [0x5a; 32];
    let iv = [7; 12];
    let mut ciphertext = value.to_vec();
    let tag = Aes256Gcm::new_from_slice(key)
        .unwrap()
        .encrypt_inout_detached(
            &Nonce::try_from(&iv[..]).unwrap(),
            &[],
            ciphertext.as_mut_slice().into(),
        )
        .unwrap();
    AesChallenge {
        kid: "https://contoso.managedhsm.azure.net/keys/K/0123456789abcdef0123456789abcdef".into(),
        alg: "A256GCM".into(),
        iv: iv.to_vec(),
        tag: tag.to_vec(),
        ciphertext,
        plaintext_sha256: Fingerprint::of_bytes(&value),
    }
}
