//! Reading every object once, or searching per key: chosen per module from measured costs.
//!
//! Reading the index costs one `C_GetAttributeValue` per token object; searching costs each
//! key about two `C_FindObjects` (its label; its public key's `CKA_ID`) and a read of each
//! object found (about two). Modules differ in what these cost as the token grows: SoftHSM
//! 2.6.1 re-reads its token directory at each `C_FindObjectsInit`, so a search costs in
//! proportion to the objects while a read does not; kryoptic 1.5.4 finds an object in its
//! sqlite store by its unique id with a query no sqlite index serves (kryoptic-lib's
//! `SEARCH_BY_SINGLE_ATTR`), so a read costs in proportion to the objects too, and reading
//! them all costs in proportion to their square.
//!
//! So the batch measures both on the token before it chooses (auto, the default): the
//! search for every token object (which it needs anyway to count them), up to
//! [`PROBE_READS`] reads of those objects, and one search for a label no key has. The rule:
//! read the index when `objects × read ≤ keys × (2 × search + 2 × read)`, else search. Both
//! answer every question the same way (the unit tests of [`super::Index`] hold for both).

use super::{Entry, TokenIndex, entry_of};
use crate::error::Result;
use crate::raw::RawModule;
use crate::token::TokenSession;
use cryptoki::object::Attribute;
use serde::Serialize;
use std::time::Instant;

/// Objects read to measure a read's cost (their entries are kept if the index is read).
const PROBE_READS: usize = 16;
/// Searches and reads a key costs when the batch searches per key.
const SEARCHES_PER_KEY: f64 = 2.0;
const READS_PER_KEY: f64 = 2.0;
/// A label the probe searches for: what a search for a key's label costs, found or not.
const PROBE_LABEL: &[u8] = b"byok-lookup-probe (no such key)";

/// `batch --lookup`: how a batch finds its keys' objects on the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LookupChoice {
    /// Measure both on this token and take the cheaper.
    #[default]
    Auto,
    /// Read every object once.
    Index,
    /// Search per key.
    Search,
}

/// What a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lookup {
    Index,
    Search,
}

impl std::fmt::Display for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Lookup::Index => "index",
            Lookup::Search => "search",
        })
    }
}

/// How the look-up was chosen, with what was measured (in the batch's report).
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub lookup: Lookup,
    /// `auto`, or `--lookup` when the operator chose.
    pub chosen_by: &'static str,
    /// Token objects, and the keys of the run.
    pub objects: usize,
    pub keys: usize,
    /// Measured: ms per object read, ms per search (auto only).
    pub read_ms: Option<f64>,
    pub search_ms: Option<f64>,
}

/// The index `choice` asks for, made through `token`, and how it was chosen.
pub(super) fn make(
    token: &TokenSession,
    raw: &RawModule,
    choice: LookupChoice,
    keys: usize,
) -> Result<(TokenIndex, Probe)> {
    let chosen = |lookup, objects| Probe {
        lookup,
        chosen_by: "--lookup",
        objects,
        keys,
        read_ms: None,
        search_ms: None,
    };
    match choice {
        LookupChoice::Index => {
            let index = TokenIndex::read(token, raw)?;
            let objects = index.len();
            Ok((index, chosen(Lookup::Index, objects)))
        }
        LookupChoice::Search => Ok((TokenIndex::searching(), chosen(Lookup::Search, 0))),
        LookupChoice::Auto => auto(token, raw, keys),
    }
}

/// Measures a read and a search on this token, then reads the index or searches per key,
/// whichever the rule in the module's docs says costs less.
fn auto(token: &TokenSession, raw: &RawModule, keys: usize) -> Result<(TokenIndex, Probe)> {
    let handles = token.session.find_objects(&[Attribute::Token(true)])?;
    let objects = handles.len();
    let t = Instant::now();
    let probed: Vec<Entry<_>> = handles
        .iter()
        .take(PROBE_READS)
        .map(|&handle| entry_of(token, raw, handle))
        .collect::<Result<_>>()?;
    let read_ms = ms(t) / probed.len().max(1) as f64;
    let t = Instant::now();
    token
        .session
        .find_objects(&[Attribute::Label(PROBE_LABEL.to_vec())])?;
    let search_ms = ms(t);
    let lookup = rule(objects, keys, read_ms, search_ms);
    tracing::info!(
        objects,
        keys,
        read_ms,
        search_ms,
        %lookup,
        "look-up chosen from the token's measured costs"
    );
    let index = match lookup {
        Lookup::Index => TokenIndex::read_these(token, raw, handles, probed)?,
        Lookup::Search => TokenIndex::searching(),
    };
    let probe = Probe {
        lookup,
        chosen_by: "auto",
        objects,
        keys,
        read_ms: Some(read_ms),
        search_ms: Some(search_ms),
    };
    Ok((index, probe))
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// Read every object once when that costs no more than searching for every key.
fn rule(objects: usize, keys: usize, read_ms: f64, search_ms: f64) -> Lookup {
    let index = objects as f64 * read_ms;
    let search = keys as f64 * (SEARCHES_PER_KEY * search_ms + READS_PER_KEY * read_ms);
    if index <= search {
        Lookup::Index
    } else {
        Lookup::Search
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cheaper_look_up_is_chosen() {
        // SoftHSM-like: reads cheap and flat, searches grow with the token.
        assert_eq!(rule(12_700, 200, 0.15, 20.0), Lookup::Index);
        assert_eq!(rule(12_700, 10, 0.15, 20.0), Lookup::Search);
        // kryoptic-like: a read costs what a search does, both growing with the token.
        assert_eq!(rule(12_700, 200, 8.0, 8.0), Lookup::Search);
        assert_eq!(rule(100, 200, 0.5, 0.5), Lookup::Index);
        // An empty token: nothing to read.
        assert_eq!(rule(0, 1, 0.0, 0.0), Lookup::Index);
        // Equal costs read the index (one pass, no search per key).
        assert_eq!(rule(4, 1, 1.0, 1.0), Lookup::Index);
        assert_eq!(rule(5, 1, 1.0, 1.0), Lookup::Search);
    }
}
