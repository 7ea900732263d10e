//! The flags that choose between ways of doing the same job, and what each means for the
//! library.

use byok_offline::index::LookupChoice;
use byok_offline::wrap_path::WrapChoice;
use clap::ValueEnum;

/// `--wrap-mechanism`.
#[derive(Clone, Copy, ValueEnum)]
pub enum WrapArg {
    /// Native CKM_RSA_AES_KEY_WRAP when the token offers it, else two-step.
    Auto,
    /// CKM_RSA_AES_KEY_WRAP in one call; refused when the token lacks it.
    Native,
    /// A session AES-256 key wraps the target (RFC 5649), RSA-OAEP wraps that key.
    TwoStep,
}

impl From<WrapArg> for WrapChoice {
    fn from(arg: WrapArg) -> Self {
        match arg {
            WrapArg::Auto => WrapChoice::Auto,
            WrapArg::Native => WrapChoice::Native,
            WrapArg::TwoStep => WrapChoice::TwoStep,
        }
    }
}

/// `--lookup`.
#[derive(Clone, Copy, ValueEnum)]
pub enum LookupArg {
    Auto,
    Index,
    Search,
}

impl From<LookupArg> for LookupChoice {
    fn from(arg: LookupArg) -> Self {
        match arg {
            LookupArg::Auto => LookupChoice::Auto,
            LookupArg::Index => LookupChoice::Index,
            LookupArg::Search => LookupChoice::Search,
        }
    }
}
