//! What `batch` reports: each key's outcome, in the manifest's order, and the run's totals.

use crate::check::reuse::CheckBasis;
use crate::index::{Lookup, Probe};
use byok_cli_common::output::as_display;
use byok_core::Fingerprint;
use byok_core::target::KeyKind;
use serde::Serialize;
use std::fmt;
use std::path::PathBuf;

/// What happened to one key.
#[derive(Debug, Clone, Serialize)]
pub struct EntryReport {
    pub name: String,
    /// `packaged`, `already packaged` or `sidecar restored`.
    #[serde(serialize_with = "as_display")]
    pub outcome: Outcome,
    /// True when this run generated the key in the HSM.
    pub generated: bool,
    #[serde(serialize_with = "as_display")]
    pub kind: KeyKind,
    pub byok_sha256: Fingerprint,
    pub seconds: f64,
}

/// What a batch did with one key: its progress line and the report's `outcome` spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Packaged now (the key found on the token, or generated now).
    Packaged,
    /// An earlier run's package, complete with its sidecar.
    AlreadyPackaged,
    /// An earlier run's package whose sidecar this run wrote again from the HSM key.
    SidecarRestored,
}

impl Outcome {
    /// `packaged`, `already packaged` or `sidecar restored`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Packaged => "packaged",
            Outcome::AlreadyPackaged => "already packaged",
            Outcome::SidecarRestored => "sidecar restored",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The progress line: `name: outcome, generated KIND (S s)`.
impl fmt::Display for EntryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.outcome)?;
        if self.generated {
            write!(f, ", generated {}", self.kind)?;
        }
        write!(f, " ({:.2} s)", self.seconds)
    }
}

/// What `batch` did, each key in the manifest's order.
#[derive(Debug, Serialize)]
pub struct BatchReport {
    pub keys: Vec<EntryReport>,
    pub packaged: usize,
    pub skipped: usize,
    pub generated: usize,
    pub seconds: f64,
    /// How keys were found on the token (`index` or `search`); absent when no key needed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookup: Option<Lookup>,
    /// What the choice was made from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookup_probe: Option<Probe>,
    /// Each kind packaged now, and the `token checked` entry its keys were admitted by.
    pub checks: Vec<CheckBasis>,
    pub log: PathBuf,
    /// The evidence log's head after the run, for the ceremony's minutes (`log verify
    /// --expect-head` checks it later).
    pub log_head: String,
}

impl byok_cli_common::Document for BatchReport {
    const SCHEMA: &'static str = "byok-offline.batch/1";
}
