//! A test CA and a server certificate for the vault's host name (`NAME.vault.azure.net` or
//! `NAME.managedhsm.azure.net`, plus a `--public-url` host) and for localhost / 127.0.0.1 /
//! ::1 (the token endpoint is reached by address). Made once per state directory so clients
//! keep trusting the emulator across restarts; made anew (CA too) when the host names change,
//! which `server.names` records.

use crate::state_dir::{self, CA_FILE, FileError, SERVER_CERT_FILE, SERVER_KEY_FILE};

/// The host names the server certificate was made for, one a line.
pub const SERVER_NAMES_FILE: &str = "server.names";
use axum_server::tls_rustls::RustlsConfig;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};

/// Why the emulator has no usable certificate.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(
        "cannot make the test CA and server certificate ({reason}); this is a kv-emulator bug: \
         please report it"
    )]
    Generate { reason: String },
    #[error(
        "the TLS material in {} is not usable ({reason}); delete ca.pem, server.pem and \
         server.key there to make new ones (clients must then trust the new ca.pem)",
        dir.display()
    )]
    Unusable { dir: PathBuf, reason: String },
}

impl From<rcgen::Error> for TlsError {
    fn from(e: rcgen::Error) -> Self {
        TlsError::Generate {
            reason: e.to_string(),
        }
    }
}

/// PEM of the server chain and key.
pub struct TlsMaterial {
    dir: PathBuf,
    cert_chain_pem: String,
    key_pem: String,
}

impl TlsMaterial {
    /// Loads the material from `dir` when it was made for `names` (DNS names besides
    /// localhost), or makes and saves it (with the CA clients trust).
    pub fn load_or_create(dir: &Path, names: &[String]) -> Result<Self, TlsError> {
        let (ca_path, cert_path, key_path, names_path) = (
            dir.join(CA_FILE),
            dir.join(SERVER_CERT_FILE),
            dir.join(SERVER_KEY_FILE),
            dir.join(SERVER_NAMES_FILE),
        );
        let names_text: String = names.iter().map(|n| format!("{n}\n")).collect();
        let same_names =
            names_path.exists() && state_dir::read(&names_path)? == names_text.as_bytes();
        if same_names && ca_path.exists() && cert_path.exists() && key_path.exists() {
            let text = |p: &Path| -> Result<String, TlsError> {
                String::from_utf8(state_dir::read(p)?).map_err(|_| TlsError::Unusable {
                    dir: dir.into(),
                    reason: format!("{} is not PEM text", p.display()),
                })
            };
            return Ok(Self {
                dir: dir.into(),
                cert_chain_pem: text(&cert_path)?,
                key_pem: text(&key_path)?,
            });
        }
        let (ca_cert, issuer) = make_ca()?;
        let (server_cert, server_key) = make_server(&issuer, names)?;
        let material = Self {
            dir: dir.into(),
            cert_chain_pem: format!("{}{}", server_cert.pem(), ca_cert.pem()),
            key_pem: server_key.serialize_pem(),
        };
        state_dir::write_public(&ca_path, ca_cert.pem().as_bytes())?;
        state_dir::write_public(&cert_path, material.cert_chain_pem.as_bytes())?;
        state_dir::write_private(&key_path, material.key_pem.as_bytes())?;
        state_dir::write_public(&names_path, names_text.as_bytes())?;
        Ok(material)
    }

    /// The server's TLS configuration: rustls with the process's default provider, which
    /// [`crate::start`] sets to aws-lc-rs first (axum-server builds its config with the
    /// default provider), offering h2 and http/1.1 (keep-alive on) over ALPN.
    pub async fn server_config(self) -> Result<RustlsConfig, TlsError> {
        RustlsConfig::from_pem(self.cert_chain_pem.into_bytes(), self.key_pem.into_bytes())
            .await
            .map_err(|e| TlsError::Unusable {
                dir: self.dir,
                reason: e.to_string(),
            })
    }
}

fn make_ca() -> Result<(Certificate, Issuer<'static, KeyPair>), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "kv-emulator test CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key)?;
    Ok((cert, Issuer::new(params, key)))
}

fn make_server(
    issuer: &Issuer<'static, KeyPair>,
    names: &[String],
) -> Result<(Certificate, KeyPair), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut dns = names.to_vec();
    dns.push("localhost".to_string());
    let mut params = CertificateParams::new(dns)?;
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()));
    params
        .distinguished_name
        .push(DnType::CommonName, "kv-emulator");
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert, key))
}
