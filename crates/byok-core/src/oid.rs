//! The algorithm identifiers the formats read, in one place (RFC 8017, RFC 5480, RFC 8410).

use spki::ObjectIdentifier;

/// rsaEncryption (RFC 8017): an RSA key in SPKI and PKCS#8.
pub(crate) const RSA_ENCRYPTION: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// id-RSASSA-PSS (RFC 8017): named when a KEK is one, refused.
pub(crate) const RSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
/// id-ecPublicKey (RFC 5480): an EC key in SPKI and PKCS#8.
pub(crate) const EC_PUBLIC_KEY: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// id-Ed25519 (RFC 8410): named when a KEK is one, refused.
pub(crate) const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
