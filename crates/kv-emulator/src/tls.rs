//! A test CA and a server certificate for localhost / 127.0.0.1 / ::1, made once per state
//! directory so clients keep trusting the emulator across restarts.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::path::Path;

/// PEM of the server chain and key, and the CA certificate.
pub struct TlsMaterial {
    pub cert_chain_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

/// Loads the material from `dir`, or makes and saves it.
pub fn load_or_create(dir: &Path) -> Result<TlsMaterial, String> {
    let (ca_path, cert_path, key_path) = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    if ca_path.exists() && cert_path.exists() && key_path.exists() {
        let read =
            |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
        return Ok(TlsMaterial {
            ca_pem: read(&ca_path)?,
            cert_chain_pem: read(&cert_path)?,
            key_pem: read(&key_path)?,
        });
    }
    let err = |e: rcgen::Error| e.to_string();
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "kv-emulator test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).map_err(err)?;
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()));
    params
        .distinguished_name
        .push(DnType::CommonName, "kv-emulator");
    let server_cert = params.signed_by(&server_key, &issuer).map_err(err)?;

    let material = TlsMaterial {
        cert_chain_pem: format!("{}{}", server_cert.pem(), ca_cert.pem()),
        key_pem: server_key.serialize_pem(),
        ca_pem: ca_cert.pem(),
    };
    let write =
        |p: &Path, s: &str| std::fs::write(p, s).map_err(|e| format!("{}: {e}", p.display()));
    write(&ca_path, &material.ca_pem)?;
    write(&cert_path, &material.cert_chain_pem)?;
    write(&key_path, &material.key_pem)?;
    restrict(&key_path)?;
    Ok(material)
}

/// 0600 for files holding secrets.
pub fn restrict(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
