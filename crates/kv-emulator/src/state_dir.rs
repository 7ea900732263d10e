//! The state directory: the files kv-emulator keeps there, and how it reads and writes them.
//!
//! - `ca.pem`, `server.pem`, `server.key`: the TLS material ([`crate::tls`]);
//! - `identity.json`: the tenant, the two clients (ids, secrets, object ids) and the
//!   token-signing key, kept so that clients' credentials survive restarts ([`Identity`]);
//! - `connection.json`: what a client needs to reach the emulator ([`Connection`]);
//! - `state.db` (with its `-wal` and `-shm` files while it is open): the keys, with
//!   `--persist`, in SQLite ([`crate::store`]);
//! - `state.json`: the keys as kv-emulator kept them before `state.db`, imported once into a
//!   new `state.db` and then renamed `state.json.imported`.
//!
//! Files holding secrets are created owner-only (0600) before a byte is written to them.

use crate::flavor::Flavor;
use crate::ids::{random_hex, uuid};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The connection file's name in the state directory.
pub const CONNECTION_FILE: &str = "connection.json";
/// The identity file's name in the state directory.
pub const IDENTITY_FILE: &str = "identity.json";
/// The key database (with `--persist`) in the state directory.
pub const DB_FILE: &str = "state.db";
/// The keys' file of kv-emulator versions before [`DB_FILE`]: imported once, then renamed
/// [`IMPORTED_STATE_FILE`].
pub const STATE_FILE: &str = "state.json";
/// What [`STATE_FILE`] is renamed to once imported.
pub const IMPORTED_STATE_FILE: &str = "state.json.imported";
/// The test CA's certificate, which clients trust.
pub const CA_FILE: &str = "ca.pem";
/// The server's certificate chain.
pub const SERVER_CERT_FILE: &str = "server.pem";
/// The server's private key.
pub const SERVER_KEY_FILE: &str = "server.key";

/// A state directory file that could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error(
        "cannot create the state directory {}: {reason}; pass a --state-dir this user can \
         create and write to",
        path.display()
    )]
    CreateDir { path: PathBuf, reason: String },
    #[error(
        "cannot read {}: {reason}; make it readable by this user, or pass another --state-dir",
        path.display()
    )]
    Read { path: PathBuf, reason: String },
    #[error("cannot write {}: {reason}; pass a --state-dir this user can write to", path.display())]
    Write { path: PathBuf, reason: String },
}

/// Creates the state directory (and its parents) if it does not exist.
pub fn create(dir: &Path) -> Result<(), FileError> {
    std::fs::create_dir_all(dir).map_err(|e| FileError::CreateDir {
        path: dir.into(),
        reason: e.to_string(),
    })
}

pub fn read(path: &Path) -> Result<Vec<u8>, FileError> {
    std::fs::read(path).map_err(|e| FileError::Read {
        path: path.into(),
        reason: e.to_string(),
    })
}

/// Writes a file anyone may read (a certificate).
pub fn write_public(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    std::fs::write(path, bytes).map_err(|e| write_error(path, e))
}

/// Writes a file only its owner may read. A file that already exists is narrowed to 0600
/// too, since opening it does not change its mode.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| write_error(path, e))?;
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|e| write_error(path, e))?;
    file.write_all(bytes).map_err(|e| write_error(path, e))
}

fn write_error(path: &Path, e: std::io::Error) -> FileError {
    FileError::Write {
        path: path.into(),
        reason: e.to_string(),
    }
}

/// Why `identity.json` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(
        "{} is not a kv-emulator identity ({reason}); delete it to make a new one (clients then \
         read the new credentials from connection.json)",
        path.display()
    )]
    Invalid { path: PathBuf, reason: String },
}

/// The emulator's tenant and its two clients, with the key its tokens are signed with: the
/// client with every right on the vault's keys, and a reader with none, whose data-plane
/// requests get RBAC's 403 ([`crate::auth`]).
pub struct Identity {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    /// The client's service principal object id (a token's `oid`).
    pub client_oid: String,
    /// The client with no role on the vault.
    pub reader_client_id: String,
    pub reader_client_secret: String,
    pub reader_oid: String,
    /// The RSA 2048 key tokens are signed with (PKCS#8 DER), and its self-signed certificate
    /// (DER), which the tenant's JWKS publishes ([`crate::signing`]).
    pub token_key: Vec<u8>,
    pub token_cert: Vec<u8>,
}

/// `identity.json` as written. The object ids and the reader came later: a file without them
/// gets them made and is written again.
#[derive(Serialize, Deserialize)]
struct IdentityFile {
    tenant_id: String,
    client_id: String,
    client_secret: String,
    #[serde(default)]
    client_oid: String,
    #[serde(default)]
    reader_client_id: String,
    #[serde(default)]
    reader_client_secret: String,
    #[serde(default)]
    reader_oid: String,
    /// The HS256 key of kv-emulator versions before RS256 tokens (hex): kept in an older
    /// file, no longer used.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    jwt_key: String,
    /// The token-signing key, PKCS#8 DER in base64url; made for an older file.
    #[serde(default)]
    token_signing_key: String,
    /// Its self-signed certificate, DER in base64url.
    #[serde(default)]
    token_signing_cert: String,
}

impl IdentityFile {
    /// Makes the fields an older file lacks; whether it made any.
    fn complete(&mut self) -> Result<bool, String> {
        let mut made = false;
        if self.token_signing_key.is_empty() || self.token_signing_cert.is_empty() {
            let (key, cert) = crate::signing::make().map_err(|e| e.to_string())?;
            self.token_signing_key = byok_core::b64::encode(&key);
            self.token_signing_cert = byok_core::b64::encode(&cert);
            made = true;
        }
        type Make = fn() -> String;
        let secret: Make = || random_hex(24);
        let fields: [(&mut String, Make); 4] = [
            (&mut self.client_oid, uuid),
            (&mut self.reader_client_id, uuid),
            (&mut self.reader_client_secret, secret),
            (&mut self.reader_oid, uuid),
        ];
        for (field, make) in fields {
            if field.is_empty() {
                *field = make();
                made = true;
            }
        }
        Ok(made)
    }

    /// The identity; the token key and certificate decoded (`what` names a bad one).
    fn into_identity(self) -> Result<Identity, String> {
        fn decode(what: &'static str, text: &str) -> Result<Vec<u8>, String> {
            byok_core::b64::decode(what, text).map_err(|e| format!("{what}: {e}"))
        }
        let token_key = decode("token_signing_key", &self.token_signing_key)?;
        let token_cert = decode("token_signing_cert", &self.token_signing_cert)?;
        crate::signing::Signer::new(&token_key, &token_cert)
            .map_err(|e| format!("token_signing_key: {e}"))?;
        Ok(Identity {
            tenant_id: self.tenant_id,
            client_id: self.client_id,
            client_secret: self.client_secret,
            client_oid: self.client_oid,
            reader_client_id: self.reader_client_id,
            reader_client_secret: self.reader_client_secret,
            reader_oid: self.reader_oid,
            token_key,
            token_cert,
        })
    }
}

impl Identity {
    /// Reads the state directory's identity, or makes one and saves it.
    pub fn load_or_create(dir: &Path) -> Result<Self, IdentityError> {
        let path = dir.join(IDENTITY_FILE);
        if !path.exists() {
            return Self::create(&path);
        }
        let invalid = |reason: String| IdentityError::Invalid {
            path: path.clone(),
            reason,
        };
        let mut file: IdentityFile =
            serde_json::from_slice(&read(&path)?).map_err(|e| invalid(e.to_string()))?;
        if file.complete().map_err(&invalid)? {
            write_private(
                &path,
                &serde_json::to_vec_pretty(&file).expect("serializes"),
            )?;
        }
        file.into_identity().map_err(invalid)
    }

    fn create(path: &Path) -> Result<Self, IdentityError> {
        let mut file = IdentityFile {
            tenant_id: uuid(),
            client_id: uuid(),
            client_secret: random_hex(24),
            client_oid: String::new(),
            reader_client_id: String::new(),
            reader_client_secret: String::new(),
            reader_oid: String::new(),
            jwt_key: String::new(),
            token_signing_key: String::new(),
            token_signing_cert: String::new(),
        };
        let invalid = |reason: String| IdentityError::Invalid {
            path: path.into(),
            reason,
        };
        file.complete().map_err(invalid)?;
        write_private(path, &serde_json::to_vec_pretty(&file).expect("serializes"))?;
        file.into_identity().map_err(invalid)
    }
}

/// What a client needs to reach the emulator; written to `connection.json`.
///
/// `vault_url` is a real-looking `https://NAME.vault.azure.net:PORT` (or
/// `.managedhsm.azure.net`), which no DNS resolves: a client connects to `vault_address` for
/// that host (reqwest's `ClientBuilder::resolve`, a patched `getaddrinfo` in Python) and so
/// keeps the SDKs' challenge-resource verification on. The token endpoint is at
/// `authority_host`, `https://127.0.0.1:PORT`, by address.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Connection {
    pub vault_url: String,
    /// Where the vault URL's host is to be resolved to (`IP:PORT`); absent with a
    /// `--public-url` and no `--public-address` (DNS resolves it then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_address: Option<std::net::SocketAddr>,
    pub ca_cert: PathBuf,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    /// A second client with no role on the vault: the data plane answers it with RBAC's 403.
    #[serde(default)]
    pub reader_client_id: String,
    #[serde(default)]
    pub reader_client_secret: String,
    pub authority_host: String,
    /// The token audience (`https://vault.azure.net` or `https://managedhsm.azure.net`).
    pub resource: String,
    pub flavor: String,
}

/// Why `connection.json` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error(
        "{} does not exist: start kv-emulator with --state-dir {} first (it writes that file)",
        path.display(),
        dir.display()
    )]
    Missing { path: PathBuf, dir: PathBuf },
    #[error(transparent)]
    File(#[from] FileError),
    #[error(
        "{} is not a kv-emulator connection file ({reason}); restart kv-emulator with that \
         --state-dir to write it anew",
        path.display()
    )]
    Invalid { path: PathBuf, reason: String },
}

impl Connection {
    /// The connection to an emulator whose vault is `vault_url` (reached at `vault_address`)
    /// and whose token endpoint is at `authority`.
    pub(crate) fn new(
        state_dir: &Path,
        identity: &Identity,
        vault_url: &str,
        vault_address: Option<std::net::SocketAddr>,
        authority: &str,
        flavor: Flavor,
    ) -> Self {
        Self {
            vault_url: vault_url.into(),
            vault_address,
            ca_cert: state_dir.join(CA_FILE),
            tenant_id: identity.tenant_id.clone(),
            client_id: identity.client_id.clone(),
            client_secret: identity.client_secret.clone(),
            reader_client_id: identity.reader_client_id.clone(),
            reader_client_secret: identity.reader_client_secret.clone(),
            authority_host: authority.into(),
            resource: flavor.resource().into(),
            flavor: flavor.name().into(),
        }
    }

    /// Reads `connection.json` from a state directory.
    pub fn load(state_dir: &Path) -> Result<Self, ConnectionError> {
        let path = state_dir.join(CONNECTION_FILE);
        if !path.exists() {
            return Err(ConnectionError::Missing {
                path,
                dir: state_dir.into(),
            });
        }
        serde_json::from_slice(&read(&path)?).map_err(|e| ConnectionError::Invalid {
            path,
            reason: e.to_string(),
        })
    }

    /// Writes `connection.json` (it holds the client secret: owner-only) whole or not at all,
    /// through a temporary file renamed over it: scripts wait for the file to appear, and must
    /// never read half of it.
    pub(crate) fn save(&self, state_dir: &Path) -> Result<(), FileError> {
        let path = state_dir.join(CONNECTION_FILE);
        let fail = |e| write_error(&path, e);
        // tempfile creates its files 0600.
        let mut tmp = tempfile::Builder::new()
            .prefix(".connection-")
            .tempfile_in(state_dir)
            .map_err(fail)?;
        tmp.write_all(&serde_json::to_vec_pretty(self).expect("serializes"))
            .map_err(fail)?;
        tmp.persist(&path).map_err(|e| fail(e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn private_files_are_owner_only_even_when_they_existed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "old, and world-readable").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"new").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
    }

    #[test]
    fn identities_survive_restarts_and_a_broken_one_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path()).unwrap();
        let again = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(first.client_secret, again.client_secret);
        assert_eq!(first.token_key, again.token_key);
        assert_eq!(first.token_cert, again.token_cert);
        assert_ne!(first.client_id, first.reader_client_id);
        assert_eq!(first.reader_client_secret, again.reader_client_secret);
        // A file from before the reader existed gets one, kept from then on.
        let path = dir.path().join(IDENTITY_FILE);
        let mut old: serde_json::Value = serde_json::from_slice(&read(&path).unwrap()).unwrap();
        for field in [
            "client_oid",
            "reader_client_id",
            "reader_client_secret",
            "reader_oid",
            "token_signing_key",
            "token_signing_cert",
        ] {
            old.as_object_mut().unwrap().remove(field);
        }
        std::fs::write(&path, old.to_string()).unwrap();
        let upgraded = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(upgraded.client_secret, first.client_secret);
        assert!(!upgraded.reader_client_id.is_empty());
        assert_ne!(upgraded.token_key, first.token_key);
        let kept = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(kept.reader_client_id, upgraded.reader_client_id);
        assert_eq!(kept.token_key, upgraded.token_key);
        std::fs::write(dir.path().join(IDENTITY_FILE), "{}").unwrap();
        let broken = Identity::load_or_create(dir.path()).err().unwrap();
        assert!(
            broken.to_string().contains("delete it to make a new one"),
            "{broken}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn the_connection_file_is_owner_only_and_replaced_whole() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity::load_or_create(dir.path()).unwrap();
        for port in [8443, 8444] {
            let url = format!("https://emulator.vault.azure.net:{port}");
            let addr = format!("127.0.0.1:{port}").parse().unwrap();
            let authority = format!("https://127.0.0.1:{port}");
            let conn = Connection::new(
                dir.path(),
                &identity,
                &url,
                Some(addr),
                &authority,
                Flavor::Vault,
            );
            conn.save(dir.path()).unwrap();
            assert_eq!(Connection::load(dir.path()).unwrap(), conn);
        }
        let path = dir.path().join(CONNECTION_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // No temporary file is left beside it.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_missing_connection_file_names_the_command_that_writes_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = Connection::load(dir.path()).unwrap_err();
        assert!(matches!(err, ConnectionError::Missing { .. }));
        assert!(
            err.to_string()
                .contains("start kv-emulator with --state-dir"),
            "{err}"
        );
        std::fs::write(dir.path().join(CONNECTION_FILE), "not json").unwrap();
        let err = Connection::load(dir.path()).unwrap_err();
        assert!(matches!(err, ConnectionError::Invalid { .. }), "{err}");
    }
}
