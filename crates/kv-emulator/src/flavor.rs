//! What the emulator plays, and the time: a leaf every other module may import (it imports
//! nothing of the crate).
//!
//! - [`Flavor`]: a vault or a Managed HSM;
//! - [`Sku`]: a vault's tier;
//! - [`now`]: the wall clock in Unix seconds, the one the emulator's dates come from;
//! - [`Clock`]: the monotonic time throttling and running deletions count by, which a test
//!   can hold and move on.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which service the emulator plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Vault,
    ManagedHsm,
}

impl Flavor {
    /// `vault` or `managedhsm`, as `connection.json` names it.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Vault => "vault",
            Flavor::ManagedHsm => "managedhsm",
        }
    }

    /// The token audience the service expects.
    pub fn resource(self) -> &'static str {
        match self {
            Flavor::Vault => "https://vault.azure.net",
            Flavor::ManagedHsm => "https://managedhsm.azure.net",
        }
    }
}

/// A vault's pricing tier. Only a Premium vault holds HSM keys (`RSA-HSM`, `EC-HSM`); a
/// Managed HSM has no tier (the setting is ignored there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sku {
    Standard,
    #[default]
    Premium,
}

/// Now, in Unix seconds: key dates (`created`, `updated`, deletion dates), `nbf`/`exp`
/// checks and token times.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// The monotonic time throttling windows and running deletions (`--delete-delay`) are
/// counted by: the system's, or for tests a held one that only moves when told
/// ([`Clock::advance`]), so a test of "a window later" needs no sleep and cannot race. A held
/// clock serves one run: a deletion still running at shutdown is stored with its time left
/// by the system's clock.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// `None`: the system's. Some: a held instant, moved by [`Clock::advance`].
    held: Option<Arc<Mutex<Instant>>>,
}

impl Clock {
    /// The system's monotonic clock (the default).
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock held at now, for tests; clones share it.
    pub fn held() -> Self {
        Self {
            held: Some(Arc::new(Mutex::new(Instant::now()))),
        }
    }

    /// Moves a held clock on by `by` (a system clock moves by itself: nothing happens).
    pub fn advance(&self, by: Duration) {
        if let Some(held) = &self.held {
            *crate::sync::lock(held) += by;
        }
    }

    /// Now, by this clock.
    pub fn instant(&self) -> Instant {
        match &self.held {
            None => Instant::now(),
            Some(held) => *crate::sync::lock(held),
        }
    }
}
