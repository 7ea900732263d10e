//! Where the PIN comes from: an environment variable, a file, or a prompt; never argv.
//!
//! An operator may mistake `--pin-env` for a PIN flag and type the PIN there, so the name it
//! gives is never printed (in errors, logs or `Debug`) unless it is the default one.

use crate::error::{OfflineError, Result};
use cryptoki::types::AuthPin;
use std::fmt;
use std::io::IsTerminal;
use std::path::PathBuf;
use zeroize::Zeroizing;

/// The environment variable read when no other source is named.
pub const DEFAULT_PIN_ENV: &str = "BYOK_PKCS11_PIN";

/// A PIN source, in the order the CLI resolves them.
#[derive(Clone)]
pub enum PinSource {
    /// Read this variable; if unset and stdin is a terminal, prompt.
    Env(String),
    /// The first line of this file.
    File(PathBuf),
}

/// Names the default variable only: another name may be a PIN typed in the wrong place.
impl fmt::Debug for PinSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinSource::Env(var) if var == DEFAULT_PIN_ENV => write!(f, "Env({var})"),
            PinSource::Env(_) => f.write_str("Env(<named by --pin-env>)"),
            PinSource::File(path) => write!(f, "File({})", path.display()),
        }
    }
}

/// Whether `name` can be an environment variable's name as a shell exports it
/// (`[A-Za-z_][A-Za-z0-9_]*`). A PIN of digits never is.
pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl PinSource {
    /// Refuses an `Env` source whose name cannot be a variable's, without repeating it.
    pub fn check(&self) -> Result<()> {
        match self {
            PinSource::Env(var) if !is_variable_name(var) => Err(OfflineError::PinEnvNotAName),
            _ => Ok(()),
        }
    }

    /// Reads the PIN. The returned value zeroizes itself on drop.
    pub fn read(&self) -> Result<AuthPin> {
        self.check()?;
        let pin: Zeroizing<String> = match self {
            PinSource::Env(var) => match std::env::var(var) {
                Ok(value) => Zeroizing::new(value),
                Err(_) if std::io::stdin().is_terminal() => prompt()?,
                Err(_) if var == DEFAULT_PIN_ENV => return Err(OfflineError::NoPin),
                Err(_) => return Err(OfflineError::NoPinInNamedVariable),
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
                source_name: self.describe(),
            });
        }
        tracing::debug!(source = ?self, "PIN read");
        Ok(AuthPin::from(trimmed.to_string()))
    }

    /// The source as an error may name it.
    fn describe(&self) -> String {
        match self {
            PinSource::Env(var) if var == DEFAULT_PIN_ENV => format!("${var}"),
            PinSource::Env(_) => "the variable named by --pin-env".into(),
            PinSource::File(path) => path.display().to_string(),
        }
    }
}

fn prompt() -> Result<Zeroizing<String>> {
    rpassword::prompt_password("PKCS#11 user PIN: ")
        .map(Zeroizing::new)
        .map_err(|e| OfflineError::PinFile {
            path: "<terminal>".into(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_given_as_the_variable_name_is_refused_unrepeated() {
        for name in ["BYOK_PKCS11_PIN", "_x", "HSM_PIN_2"] {
            assert!(is_variable_name(name), "{name}");
        }
        for name in ["123456", "", "1abc", "pin-1", "a b", "p@ss"] {
            assert!(!is_variable_name(name), "{name}");
        }
        let err = PinSource::Env("123456".into()).read().unwrap_err();
        assert!(matches!(err, OfflineError::PinEnvNotAName));
        assert!(!err.to_string().contains("123456"), "{err}");
        let unset = PinSource::Env("BYOK_TEST_SURELY_UNSET_7781".into());
        assert!(!format!("{unset:?}").contains("7781"));
        assert!(!unset.describe().contains("7781"));
        let default = PinSource::Env(DEFAULT_PIN_ENV.into());
        assert_eq!(default.describe(), "$BYOK_PKCS11_PIN");
    }
}
