//! Base64 as Key Vault writes it: URL-safe alphabet, no padding.

use base64ct::{Base64, Base64Unpadded, Base64Url, Base64UrlUnpadded, Encoding};

/// Why a base64url field could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum B64Error {
    #[error(
        "{field} ends in '=' padding; Key Vault writes base64url without padding: drop the trailing '='"
    )]
    Padded { field: &'static str },
    #[error(
        "{field} uses the standard base64 alphabet ('+' or '/'); Key Vault uses base64url ('-' and '_')"
    )]
    NotUrlSafe { field: &'static str },
    #[error("{field} is not valid base64url (character {position} or the length is wrong)")]
    Invalid {
        field: &'static str,
        position: usize,
    },
}

/// Encodes bytes as unpadded base64url.
pub fn encode(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

/// Decodes strict unpadded base64url, naming `field` in the error.
pub fn decode(field: &'static str, text: &str) -> Result<Vec<u8>, B64Error> {
    if text.ends_with('=') {
        return Err(B64Error::Padded { field });
    }
    if text.contains(['+', '/']) {
        return Err(B64Error::NotUrlSafe { field });
    }
    Base64UrlUnpadded::decode_vec(text).map_err(|_| B64Error::Invalid {
        field,
        position: text
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
            .map_or(text.len(), |(i, _)| i),
    })
}

/// Decodes any of the four base64 flavours (url or standard, padded or not), as the service
/// does for `key_hsm`.
pub fn decode_lenient(field: &'static str, text: &str) -> Result<Vec<u8>, B64Error> {
    let text = text.trim();
    let url = text.contains(['-', '_']);
    let padded = text.ends_with('=');
    let decoded = match (url, padded) {
        (true, true) => Base64Url::decode_vec(text),
        (true, false) => Base64UrlUnpadded::decode_vec(text),
        (false, true) => Base64::decode_vec(text),
        (false, false) => Base64Unpadded::decode_vec(text),
    };
    decoded.map_err(|_| B64Error::Invalid {
        field,
        position: text.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_decode_names_each_fault() {
        assert_eq!(decode("x", "AQID").unwrap(), vec![1, 2, 3]);
        assert_eq!(
            decode("x", "AQ==").unwrap_err(),
            B64Error::Padded { field: "x" }
        );
        assert_eq!(
            decode("x", "+/8").unwrap_err(),
            B64Error::NotUrlSafe { field: "x" }
        );
        assert!(matches!(
            decode("x", "A!BC").unwrap_err(),
            B64Error::Invalid { position: 1, .. }
        ));
        // A lone trailing character cannot be a whole byte.
        assert!(decode("x", "AQIDB").is_err());
    }

    #[test]
    fn lenient_decode_takes_all_flavours() {
        let bytes = [0xfb, 0xff, 0xbe, 0x01];
        for text in ["-_--AQ", "-_--AQ==", "+/++AQ", "+/++AQ=="] {
            assert_eq!(decode_lenient("x", text).unwrap(), bytes, "{text}");
        }
    }
}
