//! The evidence log's entries: one struct per event, written and read through them. Field
//! names are the log's JSON names, so logs written before a field existed still read (every
//! field added later is optional). No entry holds a secret: ids, labels, fingerprints,
//! hashes and verdicts only.

use super::Event;
use serde::{Deserialize, Serialize};

/// What the appender adds to every entry: when, where, who and which tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// RFC 3339, UTC.
    pub time: String,
    pub host: String,
    /// `--operator NAME`, else the OS account.
    pub operator: String,
    /// The tool's name and version (`byok-toolkit 0.1.0`).
    pub tool: String,
    /// The commit the binary was built from (`unknown` when it was not known; absent in logs
    /// written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// One entry as read back from a log line: its envelope, what it records, and its link.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Logged {
    #[serde(flatten)]
    pub envelope: Envelope,
    #[serde(flatten)]
    pub entry: Entry,
    pub prev_sha256: String,
}

impl Logged {
    /// Reads one log line; `None` for a line that is not an entry of a known event.
    pub fn of_line(line: &str) -> Option<Self> {
        serde_json::from_str(line).ok()
    }
}

/// What an entry records, by event (the JSON's `event` field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event")]
pub enum Entry {
    /// `byok-online kek create`.
    #[serde(rename = "kek created")]
    KekCreated(KekCreated),
    /// `byok-online kek download`: the transfer file carried across the gap.
    #[serde(rename = "kek downloaded")]
    KekDownloaded(KekDownloaded),
    /// `byok-offline tokens --log`.
    #[serde(rename = "tokens listed")]
    TokensListed(TokensListed),
    /// `byok-offline check --log`: the token's verdicts, and the throwaway keys it made.
    #[serde(rename = "token checked")]
    TokenChecked(TokenChecked),
    /// `byok-offline generate`: a target generated in the token, not yet packaged.
    #[serde(rename = "key generated")]
    KeyGenerated(KeyGenerated),
    /// The offline half wrapped a key and wrote its package.
    #[serde(rename = "packaged")]
    Packaged(Packaged),
    /// A package found on disk (an interrupted run made it) was recorded after the fact.
    #[serde(rename = "package confirmed")]
    PackageConfirmed(Packaged),
    /// The online half imported a package.
    #[serde(rename = "imported")]
    Imported(Imported),
    /// The vault already held the package's key (tagged with its SHA-256): recorded, not
    /// imported again.
    #[serde(rename = "import confirmed")]
    ImportConfirmed(Imported),
    /// `byok-online verify`: the vault's key is the HSM's.
    #[serde(rename = "verified")]
    Verified(Verified),
    /// `byok-online prove-aes`: the vault encrypted a challenge with the imported AES key.
    #[serde(rename = "aes challenge made")]
    AesChallengeMade(AesChallengeMade),
    /// `byok-offline prove-aes`: the HSM's AES key decrypted the vault's challenge.
    #[serde(rename = "aes proved")]
    AesProved(AesProved),
}

impl Entry {
    pub fn event(&self) -> Event {
        match self {
            Entry::KekCreated(_) => Event::KekCreated,
            Entry::KekDownloaded(_) => Event::KekDownloaded,
            Entry::TokensListed(_) => Event::TokensListed,
            Entry::TokenChecked(_) => Event::TokenChecked,
            Entry::KeyGenerated(_) => Event::KeyGenerated,
            Entry::Packaged(_) => Event::Packaged,
            Entry::PackageConfirmed(_) => Event::PackageConfirmed,
            Entry::Imported(_) => Event::Imported,
            Entry::ImportConfirmed(_) => Event::ImportConfirmed,
            Entry::Verified(_) => Event::Verified,
            Entry::AesChallengeMade(_) => Event::AesChallengeMade,
            Entry::AesProved(_) => Event::AesProved,
        }
    }

    /// The ceremony's name for the key the entry is about, when it is about one.
    pub fn key_name(&self) -> Option<&str> {
        match self {
            Entry::KeyGenerated(e) => Some(&e.key.hsm_label),
            Entry::Packaged(e) | Entry::PackageConfirmed(e) => Some(&e.key_name),
            Entry::Imported(e) | Entry::ImportConfirmed(e) => Some(&e.key_name),
            Entry::Verified(e) => Some(&e.key_name),
            Entry::AesChallengeMade(e) => Some(&e.key_name),
            Entry::AesProved(e) => Some(&e.hsm_label),
            _ => None,
        }
    }

    /// The SHA-256 (hex) of the `.byok` the entry is about, when it is about one.
    pub fn byok_sha256(&self) -> Option<&str> {
        match self {
            Entry::Packaged(e) | Entry::PackageConfirmed(e) => Some(&e.byok_sha256),
            Entry::Imported(e) | Entry::ImportConfirmed(e) => Some(&e.byok_sha256),
            _ => None,
        }
    }
}

/// The token an entry was made on, as its module reports it, and the module file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    #[serde(rename = "token_label", default)]
    pub label: String,
    #[serde(rename = "token_manufacturer", default)]
    pub manufacturer: String,
    #[serde(rename = "token_model", default)]
    pub model: String,
    #[serde(rename = "token_serial", default)]
    pub serial: String,
    #[serde(rename = "token_firmware", default)]
    pub firmware: String,
    /// The PKCS#11 library's path.
    #[serde(rename = "module", default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// The SHA-256 (hex) of the library file: which build of the vendor's code ran.
    #[serde(
        rename = "module_sha256",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub module_sha256: Option<String>,
}

/// The KEK: its versioned key id and the SHA-256 of its public key (SPKI DER).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KekRecord {
    #[serde(rename = "kek_kid")]
    pub kid: String,
    #[serde(rename = "kek_sha256")]
    pub sha256: String,
}

/// A target key in the HSM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub hsm_label: String,
    /// `CKA_ID`, hex.
    #[serde(default)]
    pub hsm_id: String,
    /// `RSA 3072`, `EC P-256`, `AES 256`.
    pub kind: String,
    /// The SHA-256 of the public key (SPKI DER); none for AES.
    #[serde(default)]
    pub public_key_sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KekCreated {
    #[serde(flatten)]
    pub kek: KekRecord,
    pub vault: String,
    pub size: u32,
    pub key_ops: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KekDownloaded {
    #[serde(flatten)]
    pub kek: KekRecord,
    pub vault: String,
    /// The transfer file written, and the SHA-256 of its bytes.
    pub transfer_file: String,
    pub transfer_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokensListed {
    pub tokens: Vec<ListedToken>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedToken {
    #[serde(flatten)]
    pub token: TokenRecord,
    pub slot: u64,
    /// The wrap path `package` would take, or why none.
    pub byok: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenChecked {
    #[serde(flatten)]
    pub token: TokenRecord,
    pub wrap_path: String,
    pub kinds: Vec<CheckedKind>,
    /// Throwaway keys generated and destroyed, and edge cases imported and destroyed: what the
    /// HSM's own audit trail shows of the check.
    pub throwaway_keys: usize,
    pub edge_case_imports: usize,
}

/// One kind's two verdicts, as `check` gave them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckedKind {
    pub kind: String,
    /// For keys the token generates: `ok`, `not supported` or `non-conformant`.
    pub generated: String,
    /// For keys imported into it: `ok`, `untested`, `not supported` or `non-conformant`.
    pub imported: String,
    /// The one-line verdicts, for people.
    pub generated_detail: String,
    pub imported_detail: String,
    /// The generated-key verdict as a later `package` reads it to stand in for its own check;
    /// absent when this run did not judge generated keys (and in logs written before verdicts
    /// were reused, which are therefore never reused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_judged: Option<JudgedSide>,
    /// The imported-key verdict, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_judged: Option<JudgedSide>,
}

/// One side of a kind's check (generated or imported keys) with what the gate before a real
/// package needs to hold a key to it, and the throwaway keys it took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JudgedSide {
    /// `ok`, `untested`, `not supported` or `non-conformant`.
    pub verdict: String,
    pub detail: String,
    /// Non-conformant: 1 key of the kind in `one_in` meets the defect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_in: Option<u32>,
    /// Every defect found is trailing zero bytes (what `--allow-zero-padded-kwp` covers).
    #[serde(default)]
    pub only_trailing_zeros: bool,
    /// Throwaway keys generated in the token (generated side) or edge cases imported into it
    /// (imported side), each destroyed after.
    pub keys: usize,
    /// How many of them were defective.
    #[serde(default)]
    pub defective: usize,
    /// EC generated keys: how many had a scalar whose top byte is zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zero_top_byte: Option<usize>,
}

/// The `token checked` entry a package relied on: its number in the log (1-based), its time,
/// and the SHA-256 of its line (the `prev_sha256` of the entry after it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckEntryRef {
    pub entry: usize,
    pub time: String,
    pub sha256: String,
    /// Recorded by an earlier command and reused (true), or run by this command first (false).
    pub reused: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGenerated {
    #[serde(flatten)]
    pub token: TokenRecord,
    #[serde(flatten)]
    pub key: KeyRecord,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packaged {
    /// The ceremony's name for the key (the batch manifest's, or the HSM label).
    pub key_name: String,
    #[serde(flatten)]
    pub key: KeyRecord,
    /// Generated by this run (true) or found in the token (false).
    #[serde(default)]
    pub generated: Option<bool>,
    #[serde(flatten)]
    pub token: TokenRecord,
    #[serde(flatten)]
    pub kek: KekRecord,
    pub byok_sha256: String,
    #[serde(default)]
    pub wrap_path: Option<String>,
    /// The check verdict the key was admitted by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_verdict: Option<String>,
    /// The `token checked` entry that verdict comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_entry: Option<CheckEntryRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Imported {
    pub key_name: String,
    /// The vault's versioned key id of the imported key.
    pub vault_kid: String,
    pub byok_sha256: String,
    pub kek_kid: String,
    #[serde(default)]
    pub public_key_sha256: Option<String>,
    /// What proved the vault holds the HSM's key, or why nothing did yet.
    pub verification: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    pub key_name: String,
    pub vault_kid: String,
    pub public_key_sha256: String,
    /// The signature the vault made and the HSM's public key verified (`RS256`, `ES256`).
    pub algorithm: String,
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AesChallengeMade {
    pub key_name: String,
    pub vault_kid: String,
    pub alg: String,
    /// The challenge file carried to the HSM, and the SHA-256 of its bytes.
    pub challenge_file: String,
    pub challenge_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AesProved {
    pub hsm_label: String,
    #[serde(flatten)]
    pub token: TokenRecord,
    pub vault_kid: String,
    pub challenge_sha256: String,
    pub outcome: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `packaged` line as batch wrote it before the entries were typed.
    const OLD_PACKAGED: &str = r#"{"time":"2026-11-20T10:00:00Z","host":"h","operator":"o","tool":"byok-toolkit 0.1.0","event":"packaged","key_name":"k1","hsm_label":"batch-k1","hsm_id":"0a0b","generated":true,"kind":"EC P-256","token_label":"t","token_serial":"s","token_manufacturer":"m","token_model":"v1","token_firmware":"1.5","kek_kid":"https://x.vault.azure.net/keys/KEK/0123456789abcdef0123456789abcdef","kek_sha256":"ab","public_key_sha256":"cd","byok_sha256":"ef","wrap_path":"native CKM_RSA_AES_KEY_WRAP","prev_sha256":"0000000000000000000000000000000000000000000000000000000000000000"}"#;

    /// A `package confirmed` line as batch wrote it (fewer token fields).
    const OLD_CONFIRMED: &str = r#"{"time":"t","host":"h","operator":"o","tool":"x","event":"package confirmed","key_name":"k2","hsm_label":"l","hsm_id":"01","kind":"RSA 2048","token_label":"t","token_serial":"s","token_firmware":"f","kek_kid":"kid","kek_sha256":"ab","public_key_sha256":null,"byok_sha256":"ef","prev_sha256":"00"}"#;

    #[test]
    fn old_lines_read_into_the_typed_entries() {
        let logged = Logged::of_line(OLD_PACKAGED).unwrap();
        assert_eq!(logged.envelope.commit, None);
        let Entry::Packaged(p) = &logged.entry else {
            panic!("{logged:?}")
        };
        assert_eq!(p.key.hsm_label, "batch-k1");
        assert_eq!(p.token.model, "v1");
        assert_eq!(p.kek.sha256, "ab");
        assert_eq!(p.generated, Some(true));
        assert_eq!(logged.entry.event(), Event::Packaged);
        assert_eq!(logged.entry.byok_sha256(), Some("ef"));
        let confirmed = Logged::of_line(OLD_CONFIRMED).unwrap();
        assert_eq!(confirmed.entry.event(), Event::PackageConfirmed);
        assert_eq!(confirmed.entry.key_name(), Some("k2"));
        assert!(Logged::of_line(r#"{"event":"unheard of"}"#).is_none());
    }

    #[test]
    fn an_entry_writes_its_event_and_flat_fields() {
        let entry = Entry::Verified(Verified {
            key_name: "k".into(),
            vault_kid: "kid".into(),
            public_key_sha256: "ab".into(),
            algorithm: "ES256".into(),
            outcome: "public key equal".into(),
        });
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(json["event"], "verified");
        assert_eq!(json["algorithm"], "ES256");
        let back: Entry = serde_json::from_value(json).unwrap();
        assert_eq!(back, entry);
    }
}
