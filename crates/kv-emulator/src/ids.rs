//! Random identifiers, spelled one way each: hex secrets, UUIDs, key version ids. A leaf.

/// `bytes` random bytes as lowercase hex.
pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).expect("system RNG");
    hex::encode(b)
}

/// A random (version 4) UUID, `8-4-4-4-12` lowercase hex: request ids (`x-ms-request-id`),
/// tenant, client and object ids.
pub fn uuid() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("system RNG");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A fresh key version id: 32 hex digits, as Key Vault's.
pub fn new_version() -> String {
    random_hex(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_their_shapes() {
        let u = uuid();
        let parts: Vec<usize> = u.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12], "{u}");
        assert_eq!(&u[14..15], "4", "{u}");
        assert!("89ab".contains(&u[19..20]), "{u}");
        let v = new_version();
        assert_eq!(v.len(), 32);
        assert!(v.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(random_hex(24).len(), 48);
    }
}
