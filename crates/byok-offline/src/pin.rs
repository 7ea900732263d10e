//! Where the PIN comes from: an environment variable, a file, or a prompt; never argv.

use crate::error::{OfflineError, Result};
use cryptoki::types::AuthPin;
use std::io::IsTerminal;
use std::path::PathBuf;
use zeroize::Zeroizing;

/// The environment variable read when no other source is named.
pub const DEFAULT_PIN_ENV: &str = "BYOK_PKCS11_PIN";

/// A PIN source, in the order the CLI resolves them.
#[derive(Debug, Clone)]
pub enum PinSource {
    /// Read this variable; if unset and stdin is a terminal, prompt.
    Env(String),
    /// The first line of this file.
    File(PathBuf),
}

impl PinSource {
    /// Reads the PIN. The returned value zeroizes itself on drop.
    pub fn read(&self) -> Result<AuthPin> {
        let pin: Zeroizing<String> = match self {
            PinSource::Env(var) => match std::env::var(var) {
                Ok(value) => Zeroizing::new(value),
                Err(_) if std::io::stdin().is_terminal() => {
                    Zeroizing::new(rpassword::prompt_password("PKCS#11 user PIN: ").map_err(
                        |e| OfflineError::PinFile {
                            path: "<terminal>".into(),
                            reason: e.to_string(),
                        },
                    )?)
                }
                Err(_) => return Err(OfflineError::NoPin { var: var.clone() }),
            },
            PinSource::File(path) => {
                let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                    OfflineError::PinFile {
                        path: path.clone(),
                        reason: e.to_string(),
                    }
                })?);
                Zeroizing::new(text.lines().next().unwrap_or_default().to_string())
            }
        };
        let trimmed = pin.trim_end_matches(['\r', '\n']);
        if trimmed.is_empty() {
            return Err(OfflineError::EmptyPin {
                source_name: match self {
                    PinSource::Env(var) => format!("${var}"),
                    PinSource::File(path) => path.display().to_string(),
                },
            });
        }
        Ok(AuthPin::from(trimmed.to_string()))
    }
}
