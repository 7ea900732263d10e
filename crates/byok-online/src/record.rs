//! The evidence entries the connected half writes ([`byok_core::evidence::Entry`]), built from
//! each command's report: one home for what the minutes read about the KEK, each import and
//! each proof.

use crate::commands::{ChallengeReport, KekReport, VerifyReport};
use crate::error::Result;
use crate::import::ImportReport;
use byok_cli_common::files;
use byok_core::evidence::{
    AesChallengeMade, Entry, Imported, KekCreated, KekDownloaded, KekRecord, Verified,
};
use byok_core::{Fingerprint, KeyId};
use std::path::Path;

/// The largest file hashed for the record (a transfer file or challenge is a few KB).
const MAX_RECORDED_FILE: u64 = 1 << 20;

/// The SHA-256 (hex) of a file this command wrote.
fn file_sha256(path: &Path) -> Result<String> {
    let bytes = files::read_limited(path, MAX_RECORDED_FILE)?;
    Ok(Fingerprint::of_bytes(&bytes).to_hex())
}

/// The vault a key id names, as a URL.
fn vault_of(kid: &str) -> String {
    KeyId::parse(kid).map_or_else(|_| kid.to_string(), |k| k.vault().as_url())
}

fn kek(r: &KekReport) -> Option<KekRecord> {
    Some(KekRecord {
        kid: r.kid.clone()?,
        sha256: r.public_key_sha256.clone()?,
    })
}

/// `kek created`; `None` for a dry run, which made nothing.
pub fn kek_created(r: &KekReport) -> Option<Entry> {
    let kek = kek(r)?;
    Some(Entry::KekCreated(KekCreated {
        vault: vault_of(&kek.kid),
        kek,
        size: r.key_size as u32,
        key_ops: vec!["import".into()],
    }))
}

/// `kek downloaded`: the file carried across the gap, and its hash.
pub fn kek_downloaded(r: &KekReport) -> Result<Option<Entry>> {
    let (Some(kek), Some(file)) = (kek(r), &r.written) else {
        return Ok(None);
    };
    Ok(Some(Entry::KekDownloaded(KekDownloaded {
        vault: vault_of(&kek.kid),
        kek,
        transfer_file: file.display().to_string(),
        transfer_sha256: file_sha256(file)?,
    })))
}

/// `imported`; `None` for a dry run.
pub fn imported(r: &ImportReport) -> Option<Entry> {
    let key = r.key.as_ref()?;
    Some(Entry::Imported(Imported {
        key_name: r.name.clone(),
        vault_kid: key.kid.clone(),
        byok_sha256: r.byok_sha256.to_hex(),
        kek_kid: r.kek_kid.to_string(),
        public_key_sha256: key.public_key_sha256.clone(),
        verification: format!(
            "public key against the sidecar: {}; run `byok-online verify` for the signature proof",
            r.public_key_check
        ),
    }))
}

/// `verified`.
pub fn verified(name: &str, r: &VerifyReport) -> Entry {
    Entry::Verified(Verified {
        key_name: name.to_string(),
        vault_kid: r.kid.clone(),
        public_key_sha256: r.public_key_sha256.clone(),
        algorithm: r.algorithm.clone(),
        outcome: format!(
            "public keys equal; a {} signature the vault made verifies with the HSM's public key",
            r.algorithm
        ),
    })
}

/// `aes challenge made`.
pub fn aes_challenge_made(r: &ChallengeReport) -> Result<Entry> {
    Ok(Entry::AesChallengeMade(AesChallengeMade {
        key_name: r.name.clone(),
        vault_kid: r.kid.clone(),
        alg: r.alg.clone(),
        challenge_file: r.challenge.display().to_string(),
        challenge_sha256: file_sha256(&r.challenge)?,
    }))
}
