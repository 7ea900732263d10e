//! The Key Transfer Package (`.byok`): one JSON object, exactly as Azure reads it.
//!
//! ```json
//! {"schema_version":"1.0.0",
//!  "header":{"kid":"<versioned KEK id>","alg":"dir","enc":"CKM_RSA_AES_KEY_WRAP"},
//!  "ciphertext":"<base64url, no padding>",
//!  "generator":"<tool and version; source HSM>"}
//! ```
//! Reading is strict: unknown members, another schema version, `alg` or `enc`, an unversioned
//! kid, padded or standard base64, or a ciphertext length no KEK size fits are all refused.

use crate::b64::{self, B64Error};
use crate::kek::{KEK_SIZES, KekPublicKey};
use crate::kid::{KeyId, KidError};
use crate::wrap::{self, WrapError};
use serde::{Deserialize, Serialize};
use std::fmt;

pub const SCHEMA_VERSION: &str = "1.0.0";
pub const ALG: &str = "dir";
pub const ENC: &str = "CKM_RSA_AES_KEY_WRAP";

/// The package file for a vault key name: `KeyTransferPackage-<name>.byok`, the name Azure's
/// own BYOK tools give it.
pub fn file_name(key_name: &str) -> String {
    format!("KeyTransferPackage-{key_name}.byok")
}

/// Largest `.byok` we read; a 4096-bit RSA target under a 4096-bit KEK is about 4 KiB.
pub const MAX_PACKAGE_BYTES: usize = 64 * 1024;
const MAX_GENERATOR_LEN: usize = 1024;

/// Why a `.byok` was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PackageError {
    #[error("the package is {len} bytes; a .byok is under {MAX_PACKAGE_BYTES} bytes")]
    TooLarge { len: usize },
    #[error("the file is not a .byok package (one JSON object): {reason}")]
    Json { reason: String },
    #[error(
        "schema_version is `{found}`; this tool reads and Azure imports schema_version `1.0.0`"
    )]
    SchemaVersion { found: String },
    #[error("header.alg is `{found}`; a .byok for Azure has alg `dir`")]
    Alg { found: String },
    #[error("header.enc is `{found}`; a .byok for Azure has enc `CKM_RSA_AES_KEY_WRAP`{hint}")]
    Enc { found: String, hint: &'static str },
    #[error("header.kid: {0}")]
    Kid(#[from] KidError),
    #[error("ciphertext: {0}")]
    Ciphertext(#[from] B64Error),
    #[error("ciphertext: {0}")]
    Length(#[from] WrapError),
    #[error(
        "the ciphertext is {len} bytes, which fits no KEK size (2048, 3072 or 4096 bits): \
         the package is truncated or damaged"
    )]
    NoKekSizeFits { len: usize },
    #[error("the generator field is {len} characters; the limit is {MAX_GENERATOR_LEN}")]
    GeneratorTooLong { len: usize },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPackage {
    schema_version: String,
    header: RawHeader,
    ciphertext: String,
    generator: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    kid: String,
    alg: String,
    enc: String,
}

/// The members a `.byok` defines (byok-specification.md), at the top and in `header`.
const TOP_MEMBERS: [&str; 4] = ["schema_version", "header", "ciphertext", "generator"];
const HEADER_MEMBERS: [&str; 3] = ["kid", "alg", "enc"];

/// Removes the members of `map` not in `known`; their names, prefixed.
fn drop_unknown(
    map: &mut serde_json::Map<String, serde_json::Value>,
    known: &[&str],
    prefix: &str,
) -> Vec<String> {
    let unknown: Vec<String> = map
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .cloned()
        .collect();
    for k in &unknown {
        map.remove(k);
    }
    unknown
        .iter()
        .map(|k| format!("{prefix}{}", shorten(k)))
        .collect()
}

/// What [`KeyTransferPackage::parse_tolerant`] let through: a missing `generator`, members the
/// format does not define.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tolerated {
    pub no_generator: bool,
    /// `name` at the top, `header.name` in the header.
    pub unknown_members: Vec<String>,
}

impl Tolerated {
    /// Whether the package was exactly the format.
    pub fn is_empty(&self) -> bool {
        !self.no_generator && self.unknown_members.is_empty()
    }

    /// What was ignored, one phrase each, for a message.
    pub fn notes(&self) -> Vec<String> {
        let mut notes: Vec<String> = self
            .unknown_members
            .iter()
            .map(|m| {
                format!("member `{m}` is not in the .byok format: ignored, as Azure ignores it")
            })
            .collect();
        if self.no_generator {
            notes.push(
                "no `generator` member: it is informational (the BYOK specification), so the \
                 package is read without it"
                    .into(),
            );
        }
        notes
    }
}

/// Who made a package: this tool's version and the source HSM.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Generator {
    pub tool: String,
    pub hsm_manufacturer: String,
    pub hsm_model: String,
    pub hsm_firmware: String,
}

impl Generator {
    /// This tool, with the HSM's manufacturer, model and firmware as its token reports them.
    pub fn this_tool(manufacturer: &str, model: &str, firmware: &str) -> Self {
        Self {
            tool: crate::TOOL_NAME_VERSION.into(),
            hsm_manufacturer: manufacturer.trim().into(),
            hsm_model: model.trim().into(),
            hsm_firmware: firmware.trim().into(),
        }
    }
}

impl fmt::Display for Generator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}; source HSM: {} {}, firmware {}",
            self.tool, self.hsm_manufacturer, self.hsm_model, self.hsm_firmware
        )
    }
}

/// A validated Key Transfer Package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTransferPackage {
    kid: KeyId,
    ciphertext: Vec<u8>,
    generator: String,
}

impl KeyTransferPackage {
    /// A package for the KEK `kid` (which must carry a version) around `ciphertext`.
    pub fn new(
        kid: KeyId,
        ciphertext: Vec<u8>,
        generator: &Generator,
    ) -> Result<Self, PackageError> {
        let package = Self {
            kid: KeyId::parse_versioned(&kid.to_string())?,
            ciphertext,
            generator: generator.to_string(),
        };
        package.check_plausible_length()?;
        if package.generator.len() > MAX_GENERATOR_LEN {
            return Err(PackageError::GeneratorTooLong {
                len: package.generator.len(),
            });
        }
        Ok(package)
    }

    /// Reads a `.byok` file's bytes strictly.
    pub fn parse(bytes: &[u8]) -> Result<Self, PackageError> {
        if bytes.len() > MAX_PACKAGE_BYTES {
            return Err(PackageError::TooLarge { len: bytes.len() });
        }
        let raw: RawPackage = serde_json::from_slice(bytes).map_err(|e| PackageError::Json {
            reason: e.to_string(),
        })?;
        if raw.schema_version != SCHEMA_VERSION {
            return Err(PackageError::SchemaVersion {
                found: shorten(&raw.schema_version),
            });
        }
        if raw.header.alg != ALG {
            return Err(PackageError::Alg {
                found: shorten(&raw.header.alg),
            });
        }
        if raw.header.enc != ENC {
            let hint = if raw.header.enc.starts_with("CKM_RSA_AES_KEY_WRAP") {
                " (the mechanism name without any suffix)"
            } else {
                ""
            };
            return Err(PackageError::Enc {
                found: shorten(&raw.header.enc),
                hint,
            });
        }
        let kid = KeyId::parse_versioned(&raw.header.kid)?;
        let ciphertext = b64::decode("the ciphertext", &raw.ciphertext)?;
        if raw.generator.len() > MAX_GENERATOR_LEN {
            return Err(PackageError::GeneratorTooLong {
                len: raw.generator.len(),
            });
        }
        let package = Self {
            kid,
            ciphertext,
            generator: raw.generator,
        };
        package.check_plausible_length()?;
        Ok(package)
    }

    /// Reads a `.byok` from another tool as Azure does: the BYOK specification calls
    /// `generator` an "informational field", so a package without it is read (with an empty
    /// generator), and members the format does not define, at the top or in `header`, are
    /// ignored. Everything else is as strict as [`KeyTransferPackage::parse`]. Returns what
    /// was tolerated, for the caller to say.
    pub fn parse_tolerant(bytes: &[u8]) -> Result<(Self, Tolerated), PackageError> {
        if bytes.len() > MAX_PACKAGE_BYTES {
            return Err(PackageError::TooLarge { len: bytes.len() });
        }
        let json = |e: serde_json::Error| PackageError::Json {
            reason: e.to_string(),
        };
        let mut value: serde_json::Value = serde_json::from_slice(bytes).map_err(json)?;
        let mut tolerated = Tolerated::default();
        if let Some(top) = value.as_object_mut() {
            tolerated.unknown_members = drop_unknown(top, &TOP_MEMBERS, "");
            if let Some(header) = top.get_mut("header").and_then(|h| h.as_object_mut()) {
                let unknown = drop_unknown(header, &HEADER_MEMBERS, "header.");
                tolerated.unknown_members.extend(unknown);
            }
            if !top.contains_key("generator") {
                top.insert("generator".into(), serde_json::Value::from(""));
                tolerated.no_generator = true;
            }
        }
        let strict = serde_json::to_vec(&value).map_err(json)?;
        Ok((Self::parse(&strict)?, tolerated))
    }

    /// Checks the ciphertext length against the KEK it names.
    pub fn check_against_kek(&self, kek: &KekPublicKey) -> Result<(), PackageError> {
        wrap::check_len(self.ciphertext.len(), kek.modulus_len())?;
        Ok(())
    }

    /// The KEK modulus sizes (in bytes) whose split this ciphertext fits.
    pub fn fitting_modulus_lens(&self) -> Vec<usize> {
        KEK_SIZES
            .iter()
            .map(|bits| bits / 8)
            .filter(|m| wrap::check_len(self.ciphertext.len(), *m).is_ok())
            .collect()
    }

    fn check_plausible_length(&self) -> Result<(), PackageError> {
        if self.fitting_modulus_lens().is_empty() {
            return Err(PackageError::NoKekSizeFits {
                len: self.ciphertext.len(),
            });
        }
        Ok(())
    }

    /// The file's bytes: compact JSON, unpadded base64url, members in Azure's order.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let raw = RawPackage {
            schema_version: SCHEMA_VERSION.into(),
            header: RawHeader {
                kid: self.kid.to_string(),
                alg: ALG.into(),
                enc: ENC.into(),
            },
            ciphertext: b64::encode(&self.ciphertext),
            generator: self.generator.clone(),
        };
        serde_json::to_vec(&raw).expect("serializing plain strings cannot fail")
    }

    /// The KEK's versioned id.
    pub fn kid(&self) -> &KeyId {
        &self.kid
    }

    /// `RSA-OAEP(KEK, aes_key) || AES-KWP(aes_key, plaintext)`.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    pub fn generator(&self) -> &str {
        &self.generator
    }
}

/// What a `.byok` says about itself, as both binaries' `inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageSummary {
    pub schema_version: &'static str,
    pub alg: &'static str,
    pub enc: &'static str,
    pub kid: String,
    pub vault: String,
    pub kek_name: String,
    pub kek_version: String,
    pub ciphertext_bytes: usize,
    /// The KEK sizes whose modulus length the ciphertext fits.
    pub fits_kek_bits: Vec<usize>,
    pub generator: String,
    /// SHA-256 of the file's bytes.
    pub sha256: String,
}

impl PackageSummary {
    /// Reads a `.byok` file's bytes strictly and summarises them.
    pub fn of_file_bytes(bytes: &[u8]) -> Result<Self, PackageError> {
        let package = KeyTransferPackage::parse(bytes)?;
        let kid = package.kid();
        Ok(Self {
            schema_version: SCHEMA_VERSION,
            alg: ALG,
            enc: ENC,
            kid: kid.to_string(),
            vault: kid.vault().to_string(),
            kek_name: kid.name().into(),
            kek_version: kid.version().unwrap_or_default().into(),
            ciphertext_bytes: package.ciphertext().len(),
            fits_kek_bits: package
                .fitting_modulus_lens()
                .iter()
                .map(|m| m * 8)
                .collect(),
            generator: package.generator().into(),
            sha256: crate::Fingerprint::of_bytes(bytes).to_hex(),
        })
    }
}

fn shorten(s: &str) -> String {
    s.chars().take(80).collect()
}
