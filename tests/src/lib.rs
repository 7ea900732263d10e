//! The shared test kit: one home for every piece of test harness in the workspace.
//!
//! - [`bins`]: the workspace root and the three binaries, built once.
//! - [`Emulator`]: a `kv-emulator` process, stopped (SIGKILL + wait) on drop.
//! - [`TestToken`]: a fresh PKCS#11 token in a directory of its own, on one of the
//!   [`ModuleKind`]s (SoftHSM 2, kryoptic built by `cargo xtask kryoptic`, NSS softokn; each
//!   module path overridable by a `BYOK_TEST_*_MODULE` variable; and openCryptoki 3.27 in the
//!   Debian sid root `cargo xtask opencryptoki` makes, see [`opencryptoki`]), with the
//!   environment a child process needs to reach it.
//! - [`kek_pair`]: software KEK pairs, made once per size per process.
//! - [`openssl`], [`try_openssl_wrap`], [`stderr`], [`ok`]: the openssl CLI (and the BYOK wrap
//!   scripted with it) and the outputs of a run.
//! - [`hostile`]: a TLS server with canned answers (redirects, hostile error text), a
//!   plain-HTTP listener that counts who reaches it, and tokens signed with the emulator's key.
//! - [`tidy`]: the repository's house rules, which tests/tests/tidy.rs applies to every file.
//!
//! The crates' integration tests (`crates/*/tests`), the workspace tests (`tests/tests`) and
//! `cargo xtask` use it; byok-core's own tests keep their small copy, since byok-core is a
//! dependency of this crate.

mod bins;
mod emulator;
pub mod hostile;
mod kek;
pub mod opencryptoki;
pub mod tidy;
mod token;
mod tools;

pub use bins::{BINARIES, Profile, bins, build_bins, target_dir, workspace};
pub use emulator::{Emulator, emulator};
pub use kek::kek_pair;
pub use opencryptoki::{
    OPENCRYPTOKI_CONF, OPENCRYPTOKI_PACKAGES, OPENCRYPTOKI_ROOT_ENV, OPENCRYPTOKI_VERSION,
    opencryptoki_check_root, opencryptoki_host_ready, opencryptoki_installed_version,
    opencryptoki_module, opencryptoki_root, opencryptoki_root_default, opencryptoki_root_marker,
    opencryptoki_version_refusal, sweep_orphaned_daemons,
};
pub use token::{
    INIT_ARGS_ENV, KRYOPTIC_MODULE_ENV, MODULE_ENV, ModuleKind, NSS_MODULE_ENV, NSS_TOKEN_LABEL,
    PIN_ENV, SO_PIN, SOFTHSM_MODULE_DEFAULT, SOFTHSM_MODULE_ENV, TestToken, kryoptic_module,
    kryoptic_module_default, nss_module, nss_module_default, softhsm_module,
};
pub use tools::{OPENSSL_OAEP_SHA1, ok, openssl, stderr, try_openssl, try_openssl_wrap};
