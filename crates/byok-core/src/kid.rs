//! Key Vault key identifiers: `https://{vault-host}/keys/{name}/{version}`.

use std::fmt;

/// Longest identifier we read; real ones are under 200 characters.
const MAX_KID_LEN: usize = 1024;

/// Host suffixes of Azure Key Vault (public and sovereign clouds) and Managed HSM.
const KNOWN_SUFFIXES: [(&str, VaultKind); 5] = [
    (".vault.azure.net", VaultKind::KeyVault(Cloud::Public)),
    (".vault.azure.cn", VaultKind::KeyVault(Cloud::China)),
    (
        ".vault.usgovcloudapi.net",
        VaultKind::KeyVault(Cloud::UsGovernment),
    ),
    (
        ".vault.microsoftazure.de",
        VaultKind::KeyVault(Cloud::Germany),
    ),
    (".managedhsm.azure.net", VaultKind::ManagedHsm),
];

/// Which Azure cloud a Key Vault lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    Public,
    /// Operated by 21Vianet; it does not offer BYOK.
    China,
    UsGovernment,
    Germany,
}

/// What kind of service a vault URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaultKind {
    KeyVault(Cloud),
    ManagedHsm,
    /// Any other `host:port`: an emulator or a test endpoint.
    Custom,
}

/// Why a vault URL or key id could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KidError {
    #[error("`{input}` is not an https:// URL; Key Vault is reached over HTTPS only")]
    NotHttps { input: String },
    #[error("`{input}` is not a key id: {reason}")]
    Malformed { input: String, reason: &'static str },
    #[error(
        "`{host}` is not a Key Vault or Managed HSM host (those end in .vault.azure.net, \
         .vault.azure.cn, .vault.usgovcloudapi.net, .vault.microsoftazure.de or \
         .managedhsm.azure.net); an emulator's URL must name its port, as in https://127.0.0.1:8443"
    )]
    UnknownHost { host: String },
    #[error("`{name}` is not a valid key name: use 1 to 127 letters, digits and '-'")]
    BadName { name: String },
    #[error("`{version}` is not a key version: a version is 32 hex digits")]
    BadVersion { version: String },
    #[error(
        "the key id `{kid}` has no version, but a KEK must be named by its full, versioned id. \
         Get it with `byok-online kek download --name {name} --out kek.transfer` (the transfer file \
         carries the versioned id) or `az keyvault key show --vault-name <vault> --name {name} \
         --query key.kid`"
    )]
    MissingVersion { kid: String, name: String },
    #[error("the key id is {len} characters long; the limit is {MAX_KID_LEN}")]
    TooLong { len: usize },
}

/// A vault's base URL: `https://{host}[:{port}]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VaultUrl {
    host: String,
    port: Option<u16>,
}

impl VaultUrl {
    /// Reads `https://host[:port]` with an optional trailing `/`.
    pub fn parse(input: &str) -> Result<Self, KidError> {
        let rest = strip_scheme(input)?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            return Err(KidError::Malformed {
                input: input.into(),
                reason: "a vault URL has no path, query or fragment",
            });
        }
        Self::from_authority(input, authority)
    }

    /// The URL of a Key Vault in the public cloud from its name.
    pub fn from_vault_name(name: &str) -> Result<Self, KidError> {
        Self::from_authority(name, &format!("{name}.vault.azure.net"))
    }

    /// The URL of a Managed HSM from its name.
    pub fn from_hsm_name(name: &str) -> Result<Self, KidError> {
        Self::from_authority(name, &format!("{name}.managedhsm.azure.net"))
    }

    fn from_authority(input: &str, authority: &str) -> Result<Self, KidError> {
        let malformed = |reason| KidError::Malformed {
            input: input.into(),
            reason,
        };
        let (host, port) =
            split_host_port(authority).ok_or_else(|| malformed("bad host or port"))?;
        let host = host.to_ascii_lowercase();
        if !is_valid_host(&host) {
            return Err(malformed("the host is not a DNS name or IP address"));
        }
        let url = Self { host, port };
        if url.kind() == VaultKind::Custom && url.port.is_none() {
            return Err(KidError::UnknownHost { host: url.host });
        }
        Ok(url)
    }

    /// The host, lowercase, without the port.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port when one was written.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Which service the host belongs to.
    pub fn kind(&self) -> VaultKind {
        KNOWN_SUFFIXES
            .iter()
            .find(|(suffix, _)| self.host.len() > suffix.len() && self.host.ends_with(suffix))
            .map_or(VaultKind::Custom, |(_, kind)| *kind)
    }

    /// The URL without a trailing slash: `https://host[:port]`.
    pub fn as_url(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for VaultUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "https://{}:{port}", self.host),
            None => write!(f, "https://{}", self.host),
        }
    }
}

/// A key id: vault, key name and, for a specific key version, the version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyId {
    vault: VaultUrl,
    name: String,
    version: Option<String>,
}

impl KeyId {
    /// Reads `https://{host}/keys/{name}` or `https://{host}/keys/{name}/{version}`.
    pub fn parse(input: &str) -> Result<Self, KidError> {
        if input.len() > MAX_KID_LEN {
            return Err(KidError::TooLong { len: input.len() });
        }
        let rest = strip_scheme(input)?;
        let malformed = |reason| KidError::Malformed {
            input: input.into(),
            reason,
        };
        if rest.contains(['?', '#']) {
            return Err(malformed("a key id has no query or fragment"));
        }
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| malformed("expected https://{vault-host}/keys/{name}/{version}"))?;
        let vault = VaultUrl::from_authority(input, authority)?;
        let mut segments = path.split('/');
        if segments.next() != Some("keys") {
            return Err(malformed("the path must start with /keys/"));
        }
        let name = segments
            .next()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| malformed("the key name is missing"))?;
        let version = segments.next().filter(|v| !v.is_empty());
        if segments.next().is_some() {
            return Err(malformed(
                "too many path segments after /keys/{name}/{version}",
            ));
        }
        Self::new(vault, name, version)
    }

    /// Reads a key id that must carry a version, as a KEK's does in a `.byok`.
    pub fn parse_versioned(input: &str) -> Result<Self, KidError> {
        let kid = Self::parse(input)?;
        if kid.version.is_none() {
            return Err(KidError::MissingVersion {
                kid: input.into(),
                name: kid.name,
            });
        }
        Ok(kid)
    }

    /// Builds a key id from its parts, checking the name and version.
    pub fn new(vault: VaultUrl, name: &str, version: Option<&str>) -> Result<Self, KidError> {
        validate_key_name(name)?;
        if let Some(v) = version {
            validate_version(v)?;
        }
        Ok(Self {
            vault,
            name: name.into(),
            version: version.map(Into::into),
        })
    }

    pub fn vault(&self) -> &VaultUrl {
        &self.vault
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// The same key id without its version.
    pub fn unversioned(&self) -> Self {
        Self {
            version: None,
            ..self.clone()
        }
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/keys/{}", self.vault, self.name)?;
        if let Some(v) = &self.version {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Checks a key name against Key Vault's rule: `^[0-9A-Za-z-]{1,127}$`.
pub fn validate_key_name(name: &str) -> Result<(), KidError> {
    let ok = (1..=127).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(KidError::BadName {
            name: name.chars().take(140).collect(),
        })
    }
}

/// Checks a key version: 32 hex digits.
pub fn validate_version(version: &str) -> Result<(), KidError> {
    if version.len() == 32 && version.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(KidError::BadVersion {
            version: version.chars().take(80).collect(),
        })
    }
}

fn strip_scheme(input: &str) -> Result<&str, KidError> {
    let not_https = || KidError::NotHttps {
        input: input.chars().take(200).collect(),
    };
    let (scheme, rest) = input.split_once("://").ok_or_else(not_https)?;
    if scheme.eq_ignore_ascii_case("https") {
        Ok(rest)
    } else {
        Err(not_https())
    }
}

fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if authority.contains('@') {
        return None;
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (&authority[..v6.len() + 2], port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0)?),
    };
    Some((host, port))
}

fn is_valid_host(host: &str) -> bool {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_and_prints_every_cloud() {
        for (host, kind) in [
            (
                "contoso.vault.azure.net",
                VaultKind::KeyVault(Cloud::Public),
            ),
            ("contoso.vault.azure.cn", VaultKind::KeyVault(Cloud::China)),
            (
                "contoso.vault.usgovcloudapi.net",
                VaultKind::KeyVault(Cloud::UsGovernment),
            ),
            (
                "contoso.vault.microsoftazure.de",
                VaultKind::KeyVault(Cloud::Germany),
            ),
            ("contoso.managedhsm.azure.net", VaultKind::ManagedHsm),
            ("127.0.0.1:8443", VaultKind::Custom),
            ("localhost:1", VaultKind::Custom),
            ("[::1]:8443", VaultKind::Custom),
        ] {
            let text = format!("https://{host}/keys/KEK-for-BYOK/{V}");
            let kid = KeyId::parse_versioned(&text).unwrap();
            assert_eq!(kid.vault().kind(), kind, "{text}");
            assert_eq!(kid.name(), "KEK-for-BYOK");
            assert_eq!(kid.version(), Some(V));
            assert_eq!(kid.to_string(), text);
        }
    }

    #[test]
    fn host_is_lowercased() {
        let kid = KeyId::parse(&format!("https://Contoso.Vault.Azure.NET/keys/k/{V}")).unwrap();
        assert_eq!(kid.vault().host(), "contoso.vault.azure.net");
    }

    #[test]
    fn unversioned_kek_kid_says_how_to_get_the_version() {
        let err =
            KeyId::parse_versioned("https://contoso.vault.azure.net/keys/KEKforBYOK").unwrap_err();
        assert!(matches!(err, KidError::MissingVersion { .. }));
        let msg = err.to_string();
        assert!(msg.contains("kek download --name KEKforBYOK"), "{msg}");
        // With a trailing slash too.
        assert!(matches!(
            KeyId::parse_versioned("https://contoso.vault.azure.net/keys/KEKforBYOK/"),
            Err(KidError::MissingVersion { .. })
        ));
    }

    #[test]
    fn rejects_each_fault_with_its_own_error() {
        type Check = fn(&KidError) -> bool;
        let cases: [(&str, Check); 12] = [
            ("http://contoso.vault.azure.net/keys/k", |e| {
                matches!(e, KidError::NotHttps { .. })
            }),
            ("contoso.vault.azure.net/keys/k", |e| {
                matches!(e, KidError::NotHttps { .. })
            }),
            ("https://example.com/keys/k", |e| {
                matches!(e, KidError::UnknownHost { .. })
            }),
            ("https://vault.azure.net/keys/k", |e| {
                matches!(e, KidError::UnknownHost { .. })
            }),
            ("https://contoso.vault.azure.net/secrets/k", |e| {
                matches!(e, KidError::Malformed { .. })
            }),
            ("https://contoso.vault.azure.net/keys/", |e| {
                matches!(e, KidError::Malformed { .. })
            }),
            ("https://contoso.vault.azure.net/keys/a_b", |e| {
                matches!(e, KidError::BadName { .. })
            }),
            ("https://contoso.vault.azure.net/keys/k/123", |e| {
                matches!(e, KidError::BadVersion { .. })
            }),
            (
                "https://contoso.vault.azure.net/keys/k/0123456789abcdef0123456789abcdeg",
                |e| matches!(e, KidError::BadVersion { .. }),
            ),
            (
                "https://contoso.vault.azure.net/keys/k/0123456789abcdef0123456789abcdef/x",
                |e| matches!(e, KidError::Malformed { .. }),
            ),
            (
                "https://contoso.vault.azure.net/keys/k?api-version=7.4",
                |e| matches!(e, KidError::Malformed { .. }),
            ),
            ("https://127.0.0.1:0/keys/k", |e| {
                matches!(e, KidError::Malformed { .. })
            }),
        ];
        for (input, check) in cases {
            let err = KeyId::parse(input).unwrap_err();
            assert!(check(&err), "{input}: {err:?}");
        }
        let long = format!("https://contoso.vault.azure.net/keys/{}", "a".repeat(2000));
        assert!(matches!(KeyId::parse(&long), Err(KidError::TooLong { .. })));
        let name128 = format!("https://contoso.vault.azure.net/keys/{}", "a".repeat(128));
        assert!(matches!(
            KeyId::parse(&name128),
            Err(KidError::BadName { .. })
        ));
    }

    #[test]
    fn vault_urls() {
        assert_eq!(
            VaultUrl::from_vault_name("contoso").unwrap().as_url(),
            "https://contoso.vault.azure.net"
        );
        assert_eq!(
            VaultUrl::from_hsm_name("contoso").unwrap().kind(),
            VaultKind::ManagedHsm
        );
        assert_eq!(
            VaultUrl::parse("https://127.0.0.1:8443/")
                .unwrap()
                .to_string(),
            "https://127.0.0.1:8443"
        );
        assert!(VaultUrl::parse("https://127.0.0.1:8443/keys").is_err());
        assert!(VaultUrl::parse("https://127.0.0.1").is_err());
        assert!(VaultUrl::from_vault_name("bad_name").is_err());
    }
}
