//! What `--version` prints: the crate version, the git commit the binary was built from and
//! whether the work tree had uncommitted changes, so an operator can match an installed
//! binary with a tagged, reproducible build (`cargo xtask dist`).
//!
//! `build.rs` stamps the commit; `BYOK_GIT_COMMIT_OVERRIDE` sets it for builds without `.git`.

/// The commit the binary was built from: 12 hex digits, or `unknown` (built outside git).
pub const COMMIT: &str = env!("BYOK_GIT_COMMIT");

/// Whether tracked files differed from [`COMMIT`] when the binary was built.
pub const DIRTY: bool = eq(env!("BYOK_GIT_DIRTY"), "true");

/// The clap `version` of the binaries: `0.1.0 (commit 3ded9f9a1b2c, clean)`, `..., dirty)`,
/// or `0.1.0 (commit unknown)`.
pub const LONG_VERSION: &str = if eq(COMMIT, "unknown") {
    concat!(env!("CARGO_PKG_VERSION"), " (commit unknown)")
} else if DIRTY {
    concat!(
        env!("CARGO_PKG_VERSION"),
        " (commit ",
        env!("BYOK_GIT_COMMIT"),
        ", dirty)"
    )
} else {
    concat!(
        env!("CARGO_PKG_VERSION"),
        " (commit ",
        env!("BYOK_GIT_COMMIT"),
        ", clean)"
    )
};

/// `str` equality in a const context (`==` on `str` is not const).
const fn eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_long_version_names_the_crate_version_and_the_commit() {
        assert!(LONG_VERSION.starts_with(concat!(env!("CARGO_PKG_VERSION"), " (commit ")));
        assert!(LONG_VERSION.contains(COMMIT));
        let known = COMMIT != "unknown";
        assert_eq!(LONG_VERSION.ends_with(", dirty)"), known && DIRTY);
        assert_eq!(LONG_VERSION.ends_with(", clean)"), known && !DIRTY);
    }

    #[test]
    fn the_commit_is_twelve_hex_digits_or_unknown() {
        assert!(
            COMMIT == "unknown"
                || (COMMIT.len() == 12 && COMMIT.bytes().all(|b| b.is_ascii_hexdigit())),
            "{COMMIT}"
        );
    }
}
