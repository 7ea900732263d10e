//! The evidence entries the air-gapped half writes ([`byok_core::evidence::Entry`]), built
//! from what each command did: one home for what the minutes read about the token, the KEK
//! and each key. The check's own entry (`token checked`) is built beside its report, in
//! [`crate::check::evidence`].

use crate::keys::Target;
use crate::package::PackageReport;
use crate::token::{ModuleFile, TokenSession};
use crate::wrap_path::TokenReport;
use byok_core::KekTransfer;
use byok_core::evidence::{
    AesProved, CheckEntryRef, Entry, KekRecord, KeyGenerated, KeyRecord, ListedToken, Packaged,
    TokenRecord, TokensListed,
};
use byok_core::sidecar::Sidecar;

/// The KEK as the log records it: its kid and the SHA-256 of its public key.
pub fn kek(kek: &KekTransfer) -> KekRecord {
    KekRecord {
        kid: kek.kid.to_string(),
        sha256: kek.key.fingerprint().to_hex(),
    }
}

/// A target key as the log records it.
pub fn key(target: &Target) -> KeyRecord {
    KeyRecord {
        hsm_label: target.label.clone(),
        hsm_id: hex::encode(&target.id),
        kind: target.kind.to_string(),
        public_key_sha256: target.public_key.as_ref().map(|p| p.fingerprint().to_hex()),
    }
}

/// `packaged`: `target` (`generated` now or found) wrapped under `kek` into the package `r`
/// describes, admitted by the check verdict `check_verdict`.
pub fn packaged(
    session: &TokenSession,
    kek_transfer: &KekTransfer,
    (key_name, target, generated): (&str, &Target, bool),
    r: &PackageReport,
    (check_verdict, check_entry): (Option<String>, Option<CheckEntryRef>),
) -> Entry {
    Entry::Packaged(Packaged {
        key_name: key_name.to_string(),
        key: key(target),
        generated: Some(generated),
        token: session.record(),
        kek: kek(kek_transfer),
        byok_sha256: r.byok_sha256.to_hex(),
        wrap_path: Some(r.wrap_path.to_string()),
        check_verdict,
        check_entry,
        package_file: Some(r.byok.display().to_string()),
    })
}

/// `package confirmed`: a package found on disk, recorded from its sidecar.
pub fn confirmed(key_name: &str, kek_transfer: &KekTransfer, s: &Sidecar) -> Entry {
    Entry::PackageConfirmed(Packaged {
        key_name: key_name.to_string(),
        key: KeyRecord {
            hsm_label: s.source.label.clone(),
            hsm_id: s.source.id.clone(),
            kind: s.kind.to_string(),
            public_key_sha256: s.public_key.as_ref().map(|p| p.fingerprint().to_hex()),
        },
        generated: None,
        token: TokenRecord {
            label: s.source.token_label.clone(),
            manufacturer: s.source.manufacturer.clone(),
            model: s.source.model.clone(),
            serial: s.source.token_serial.clone(),
            firmware: s.source.firmware.clone(),
            module: None,
            module_sha256: None,
        },
        kek: kek(kek_transfer),
        byok_sha256: s.byok_sha256.to_hex(),
        wrap_path: None,
        check_verdict: None,
        check_entry: None,
        package_file: None,
    })
}

/// `key generated`: a target made in the token by `generate`.
pub fn key_generated(session: &TokenSession, target: &Target) -> Entry {
    Entry::KeyGenerated(KeyGenerated {
        token: session.record(),
        key: key(target),
    })
}

/// `tokens listed`: each token with its verdict on BYOK.
pub fn tokens_listed(tokens: &[TokenReport], module: &ModuleFile) -> Entry {
    Entry::TokensListed(TokensListed {
        tokens: tokens
            .iter()
            .map(|t| ListedToken {
                token: t.identity.record(module),
                slot: t.identity.slot,
                byok: t.byok.clone(),
            })
            .collect(),
    })
}

/// `aes proved`: the HSM's AES key decrypted the vault's challenge.
pub fn aes_proved(
    session: &TokenSession,
    hsm_label: &str,
    vault_kid: &str,
    challenge_sha256: &str,
    outcome: &str,
) -> Entry {
    Entry::AesProved(AesProved {
        hsm_label: hsm_label.to_string(),
        token: session.record(),
        vault_kid: vault_kid.to_string(),
        challenge_sha256: challenge_sha256.to_string(),
        outcome: outcome.to_string(),
    })
}
