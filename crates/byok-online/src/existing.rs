//! What the commands that write a key (`kek create`, `import`, `batch-import`) do when the
//! name already exists in the vault, and with `--dry-run`.
//!
//! Key Vault answers a create or an import of an existing name by adding a version, silently:
//! an operator who reused a name would shadow a key other systems use. So the name is read
//! first (a GET; 404 means new) and an existing one needs `--new-version`, or a "y" on a
//! terminal.

use crate::connect::Vault;
use crate::error::{OnlineError, Result};
use crate::vault::KeyView;
use std::io::{BufRead, Write};

/// What to do when the name exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnExisting {
    /// No `--new-version` and no terminal to ask on (or a dry run): refuse.
    #[default]
    Refuse,
    /// No `--new-version` on a terminal: ask on stderr.
    Ask,
    /// `--new-version`: add a version.
    AddVersion,
}

/// `--dry-run` and `--new-version`, as the writing commands take them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Run every check, local and vault-side reads, and write nothing.
    pub dry_run: bool,
    pub on_existing: OnExisting,
}

/// The name's current version, or `None` when the vault has no key of that name.
pub async fn current(vault: &Vault, name: &str) -> Result<Option<KeyView>> {
    match vault.get(name, None).await {
        Ok(key) => {
            tracing::info!("{name} exists: current version {}", key.version);
            Ok(Some(key))
        }
        Err(OnlineError::KeyNotFound { .. }) => {
            tracing::info!("{name} does not exist yet: a new key");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

impl OnExisting {
    /// Goes on with adding a version to `existing`, or says why not. `note` adds what the
    /// caller knows about the existing key (that it came from the same package).
    pub fn allow(self, existing: &KeyView, note: Option<&str>) -> Result<()> {
        let refused = || OnlineError::KeyExists {
            name: existing.name.clone(),
            version: existing.version.clone(),
            note: note.map(|n| format!(" ({n})")).unwrap_or_default(),
        };
        match self {
            OnExisting::AddVersion => Ok(()),
            OnExisting::Refuse => Err(refused()),
            OnExisting::Ask if ask(&existing.name, &existing.version, note) => Ok(()),
            OnExisting::Ask => Err(refused()),
        }
    }
}

/// Asks on stderr and reads a line from stdin; only "y" or "yes" is a yes.
fn ask(name: &str, version: &str, note: Option<&str>) -> bool {
    if let Some(n) = note {
        byok_cli_common::say_err!("note: {n}");
    }
    // The name comes from a manifest and the version from the vault: escaped, so neither can
    // draw a prompt of its own.
    let (name, version) = (
        byok_cli_common::terminal::escape(name),
        byok_cli_common::terminal::escape(version),
    );
    eprint!("Key {name} exists (version {version}). Add a new version? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}
