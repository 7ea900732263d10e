//! Where the PIN comes from: an environment variable, a file, or a prompt; never argv.
//!
//! A PIN in the environment is taken out of it first thing in `main`
//! ([`move_out_of_environment`]): the default variable and any `--pin-env` names, whether or
//! not this command uses them, before any PKCS#11 module is loaded (a module is the vendor's
//! code, free to read the environment) and before any thread starts.
//!
//! An operator may mistake `--pin-env` for a PIN flag and type the PIN there, so the name it
//! gives is never printed (in errors, logs or `Debug`) unless it is the default one.

use crate::error::{OfflineError, Result};
use byok_cli_common::files::FileError;
use byok_cli_common::process::{self, ProcessError, SecretVars};
use cryptoki::types::AuthPin;
use std::fmt;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::OnceLock;
use zeroize::Zeroizing;

/// The PINs [`move_out_of_environment`] took out of the environment, by variable name.
static FROM_ENVIRONMENT: OnceLock<SecretVars> = OnceLock::new();

/// The longest PIN file read: a PIN is a line; anything longer is the wrong file.
const MAX_PIN_FILE_BYTES: u64 = 4096;

/// Takes the PIN variables out of this process's environment (`BYOK_PKCS11_PIN` and every
/// name given to `--pin-env` in `args`), keeping their values for [`PinSource::read`]. When
/// one is set this re-executes the program without it ([`process::take_secret_vars`]), so
/// neither `/proc/<pid>/environ` nor the memory of the process holds the environment's copy;
/// the value itself is kept in a zeroizing buffer until the process ends (a batch logs in
/// once per session). First in `main`, before any thread or module.
pub fn move_out_of_environment(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> std::result::Result<(), ProcessError> {
    let vars = process::take_secret_vars(&pin_variables(args))?;
    let _ = FROM_ENVIRONMENT.set(vars);
    Ok(())
}

/// `BYOK_PKCS11_PIN` and each name `args` give `--pin-env` (read before clap parses them, so
/// that nothing runs before the variables are gone).
fn pin_variables(args: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<String> {
    let mut names = vec![DEFAULT_PIN_ENV.to_string()];
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let named = match arg.to_str() {
            Some("--pin-env") => args.next().and_then(|v| v.into_string().ok()),
            Some(a) => a.strip_prefix("--pin-env=").map(String::from),
            None => None,
        };
        // A name that cannot be a variable's is refused later without being repeated.
        names.extend(named.filter(|n| is_variable_name(n)));
    }
    names
}

/// The PIN the variable `var` held: taken out of the environment at start, or still there
/// (when the library is used without `main`, as its tests do).
fn from_environment(var: &str) -> Option<Zeroizing<String>> {
    FROM_ENVIRONMENT
        .get()
        .and_then(|vars| vars.get(var))
        .map(|pin| Zeroizing::new(pin.to_string()))
        .or_else(|| std::env::var(var).ok().map(Zeroizing::new))
}

pub use crate::DEFAULT_PIN_ENV;

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
            PinSource::Env(var) => match from_environment(var) {
                Some(value) => value,
                None if std::io::stdin().is_terminal() => prompt()?,
                None if var == DEFAULT_PIN_ENV => return Err(OfflineError::NoPin),
                None => return Err(OfflineError::NoPinInNamedVariable),
            },
            PinSource::File(path) => {
                // Bounded, and never a device; a pipe is allowed (`--pin-file <(command)`
                // keeps the PIN off the disk).
                let bytes = Zeroizing::new(
                    byok_cli_common::files::read_limited_or_pipe(path, MAX_PIN_FILE_BYTES)
                        .map_err(|e| pin_file_error(path, e))?,
                );
                let text = Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned());
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

/// A PIN file that cannot be read, said as such.
fn pin_file_error(path: &std::path::Path, e: FileError) -> OfflineError {
    let reason = match e {
        FileError::Read { reason, .. } => reason,
        FileError::NotRegular { kind, .. } => {
            format!("it is {kind}, not a regular file or a pipe; name the file holding the PIN")
        }
        FileError::TooLarge { limit, .. } => {
            format!("it holds more than {limit} bytes; a PIN file holds the PIN on its first line")
        }
        other => other.to_string(),
    };
    OfflineError::PinFile {
        path: path.into(),
        reason,
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
    fn every_pin_variable_named_is_taken_out_of_the_environment() {
        let args = [
            "byok-offline",
            "keys",
            "--pin-env",
            "HSM_PIN",
            "--pin-env=OTHER",
        ];
        let names = pin_variables(args.map(std::ffi::OsString::from));
        assert_eq!(names, [DEFAULT_PIN_ENV, "HSM_PIN", "OTHER"]);
        // A PIN typed where the name goes is no variable's name: not looked up.
        let names = pin_variables(["x", "--pin-env", "123456"].map(std::ffi::OsString::from));
        assert_eq!(names, [DEFAULT_PIN_ENV]);
    }

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
