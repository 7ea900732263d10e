//! Helpers shared by byok-core's integration tests.
#![allow(dead_code)]

use byok_core::KekPublicKey;
use rsa::PrivateKey as RsaPrivateKey;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// A KEK pair of `bits`, made once per test binary (RSA key generation is slow).
pub fn kek_pair(bits: usize) -> (RsaPrivateKey, KekPublicKey) {
    static CACHE: OnceLock<Mutex<HashMap<usize, RsaPrivateKey>>> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap();
    let private = cache
        .entry(bits)
        .or_insert_with(|| RsaPrivateKey::new(&mut getrandom::SysRng, bits).unwrap())
        .clone();
    let public = KekPublicKey::from_rsa(private.to_public_key()).unwrap();
    (private, public)
}

/// Runs the `openssl` CLI, panicking with its stderr if it fails.
pub fn openssl(args: &[&str], dir: &Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("the openssl CLI is on every machine this project runs on");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}
