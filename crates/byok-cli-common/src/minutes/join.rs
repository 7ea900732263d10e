//! The logs joined into one ceremony: the KEK, the tokens and their checks, each key from
//! the HSM to the vault, and every entry in time order.
//!
//! A key is followed across the gap by its package: `packaged` (air-gapped side) and
//! `imported` (connected side) carry the same `byok_sha256`, whatever the key is called on
//! each side; failing that, by `key_name`. A proof (`verified`, `aes proved`) names the
//! vault's key id the import gave, else the key's name, else (for `verified`) its public
//! key's fingerprint. The joins are made in three passes (the HSM side, the imports, the
//! proofs), so two workstations' clocks that disagree do not change them.
//!
//! The parts: [`model`] (what the minutes show), [`order`] (the entries in one order, and
//! their envelopes), [`keys`] (the three passes), [`findings`] (counts and findings),
//! [`summary`] (the timeline's line for each entry).

mod findings;
mod keys;
mod model;
mod order;
mod summary;

use super::read::Log;
use byok_core::evidence::Entry;
use order::{Pos, at_of, containment, log_view, merged_order, tool_of};

pub use model::{At, Ceremony, Kek, Key, LogView, Row, Token};
pub use order::shown_time;

/// Joins the logs.
pub fn join(logs: &[Log]) -> Ceremony {
    let within = containment(logs);
    let order = merged_order(logs, &within);
    let mut c = Ceremony {
        logs: logs
            .iter()
            .zip(&within)
            .map(|(log, within)| log_view(log, *within))
            .collect(),
        ..Ceremony::default()
    };
    let at = |p: Pos| at_of(&logs[p.log].lines[p.index], p.log);
    for &p in &order {
        let line = &logs[p.log].lines[p.index];
        model::push_new(&mut c.operators, &line.envelope.operator);
        model::push_new(&mut c.hosts, &line.envelope.host);
        model::push_new(&mut c.tools, &tool_of(line));
        c.timeline.push(Row {
            at: at(p),
            event: line.event.clone(),
            summary: summary::summary(line),
            known: line.entry.is_some(),
        });
    }
    c.first = c.timeline.first().map(|r| r.at.time.clone());
    c.last = c.timeline.last().map(|r| r.at.time.clone());
    let entries = || {
        order
            .iter()
            .filter_map(|&p| Some((p, logs[p.log].lines[p.index].entry.as_ref()?)))
    };
    // The HSM side first: the KEK, the tokens, the keys and their packages.
    for (p, entry) in entries() {
        keys::hsm_side(&mut c, at(p), entry);
    }
    for (p, entry) in entries() {
        if let Entry::Imported(i) | Entry::ImportConfirmed(i) = entry {
            keys::import(&mut c.keys, at(p), i);
        }
    }
    for (p, entry) in entries() {
        keys::proof(&mut c.keys, at(p), entry);
    }
    findings::finish(&mut c);
    c
}

// The unit tests (minutes/tests.rs) compare a ceremony's counts whole.
#[cfg(test)]
pub use model::Counts;
