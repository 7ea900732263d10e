//! Exit codes: what a script running a ceremony step can tell apart.
//!
//! | code | meaning |
//! | ---: | --- |
//! | 0 | done |
//! | 1 | failed: the message names the problem and the fix (file, token, network, vault) |
//! | 2 | usage: the command line was wrong; nothing was done |
//! | 3 | verification failed: the vault's key is not the HSM's key, or a package or log does not check out |

/// What kind of failure ended a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// Anything that stopped the command; see the message.
    Failure,
    /// The command line was wrong (clap uses the same code for its own usage errors).
    Usage,
    /// A proof did not hold: keys differ, a signature does not verify, a chain is broken.
    Mismatch,
}

impl ExitKind {
    pub const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const MISMATCH: u8 = 3;

    pub fn code(self) -> u8 {
        match self {
            ExitKind::Failure => Self::FAILURE,
            ExitKind::Usage => Self::USAGE,
            ExitKind::Mismatch => Self::MISMATCH,
        }
    }
}

/// An error a binary reports: its message, and the exit code it maps to.
pub trait Classify: std::fmt::Display {
    fn exit_kind(&self) -> ExitKind;
}
