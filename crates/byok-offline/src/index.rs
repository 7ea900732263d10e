//! The token's objects as `batch` asks about them: by label, and its public keys by `CKA_ID`.
//!
//! A `C_FindObjects` costs time in proportion to the objects on the token (SoftHSM re-reads
//! its token directory at each `C_FindObjectsInit`), so a batch that searched per key would
//! slow down as the token fills. So the batch may read every token object once
//! ([`TokenIndex::read`]) and answer its per-key questions from here in constant time: which
//! private or secret key has this label (none, one, or several:
//! [`OfflineError::AmbiguousKey`]), whether a label is in use, which public key object has
//! this `CKA_ID`. Where reading each object costs as much as a search (kryoptic), the index
//! instead holds only what was asked, each label and id searched for once
//! ([`TokenIndex::searching`]); [`choice`] measures the two on the token and picks one. The
//! answers are the same either way. The keys the batch generates are added as they are made.
//! Object handles are the application's, valid in each of its sessions, so one index serves
//! every worker. Single-key commands keep searching the token.

use crate::error::{OfflineError, Result};
use crate::raw::RawModule;
use crate::token::TokenSession;
use byok_cli_common::sync::lock;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};

pub use choice::{Lookup, LookupChoice, Probe};

mod choice;

/// The index of a token's objects, shared by a batch's sessions.
pub type TokenIndex = Index<ObjectHandle>;

/// An object handle as the index keeps it: a number that tells one object from another.
pub trait Handle: Copy + PartialEq {
    fn number(self) -> u64;
}

impl Handle for ObjectHandle {
    fn number(self) -> u64 {
        self.handle()
    }
}

/// An index over object handles of type `H` (a plain number in the unit tests).
pub struct Index<H> {
    state: Mutex<State<H>>,
}

struct State<H> {
    /// Every object with a label, by its label, with its class.
    by_label: HashMap<Vec<u8>, Vec<(H, ObjectClass)>>,
    /// Public key objects by their `CKA_ID`.
    public_by_id: HashMap<Vec<u8>, Vec<H>>,
    /// Labels a session is generating a key under now.
    reserved: HashSet<Vec<u8>>,
    /// Which of the token's objects are here.
    coverage: Coverage,
    /// The objects here, by handle number (an object found twice is added once).
    known: HashSet<u64>,
}

/// Which of the token's objects an index holds.
enum Coverage {
    /// Every one, read once ([`TokenIndex::read`]).
    All,
    /// Those found so far by the labels and ids asked about, each searched for once
    /// ([`TokenIndex::searching`]).
    Asked {
        labels: HashSet<Vec<u8>>,
        ids: HashSet<Vec<u8>>,
    },
}

/// One object as the index reads it.
pub struct Entry<H> {
    pub handle: H,
    pub class: ObjectClass,
    pub label: Vec<u8>,
    pub id: Vec<u8>,
}

impl TokenIndex {
    /// Reads every token object's class, label and id: one search, then one
    /// `C_GetAttributeValue` per object ([`RawModule::class_label_id`]).
    pub fn read(token: &TokenSession, raw: &RawModule) -> Result<Self> {
        let handles = token.session.find_objects(&[Attribute::Token(true)])?;
        Self::read_these(token, raw, handles, Vec::new())
    }

    /// The index of `handles`, with `entries` already read among them.
    fn read_these(
        token: &TokenSession,
        raw: &RawModule,
        handles: Vec<ObjectHandle>,
        mut entries: Vec<Entry<ObjectHandle>>,
    ) -> Result<Self> {
        entries.reserve(handles.len().saturating_sub(entries.len()));
        for handle in handles.into_iter().skip(entries.len()) {
            entries.push(entry_of(token, raw, handle)?);
        }
        let index = Self::new(entries);
        tracing::info!(objects = index.len(), "token objects indexed");
        Ok(index)
    }

    /// An index that holds no object until asked: each label or id is searched for on the
    /// token the first time it is asked about.
    pub fn searching() -> Self {
        Self::asking()
    }

    /// Makes sure the objects labelled `label` are here (a search of the token the first
    /// time, when the index does not hold every object).
    pub fn learn_label(&self, token: &TokenSession, raw: &RawModule, label: &str) -> Result<()> {
        let template = [Attribute::Label(label.as_bytes().to_vec())];
        self.learn(
            label.as_bytes(),
            Asked::Label,
            || Ok(token.session.find_objects(&template)?),
            |handle| entry_of(token, raw, handle),
        )
    }

    /// Makes sure the public key objects whose `CKA_ID` is `id` are here.
    pub fn learn_public_id(&self, token: &TokenSession, raw: &RawModule, id: &[u8]) -> Result<()> {
        let template = [
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Id(id.to_vec()),
        ];
        self.learn(
            id,
            Asked::Id,
            || Ok(token.session.find_objects(&template)?),
            |handle| entry_of(token, raw, handle),
        )
    }
}

/// One object's class, label and id: one raw `C_GetAttributeValue`, or cryptoki's two when a
/// value is longer than the raw call's buffer.
fn entry_of(
    token: &TokenSession,
    raw: &RawModule,
    handle: ObjectHandle,
) -> Result<Entry<ObjectHandle>> {
    if let Some(read) = raw.class_label_id(token.session.handle(), handle.handle())? {
        return Ok(Entry {
            handle,
            // A class cryptoki cannot name (a vendor's) is no key: indexed by its label only.
            class: read
                .class
                .and_then(|c| ObjectClass::try_from(c).ok())
                .unwrap_or(ObjectClass::DATA),
            label: read.label.unwrap_or_default(),
            id: read.id.unwrap_or_default(),
        });
    }
    let mut entry = Entry {
        handle,
        class: ObjectClass::DATA,
        label: Vec::new(),
        id: Vec::new(),
    };
    let wanted = [
        AttributeType::Class,
        AttributeType::Label,
        AttributeType::Id,
    ];
    // An attribute the object lacks (a data object has no CKA_ID) is left out.
    for attribute in token.session.get_attributes(handle, &wanted)? {
        match attribute {
            Attribute::Class(c) => entry.class = c,
            Attribute::Label(l) => entry.label = l,
            Attribute::Id(id) => entry.id = id,
            _ => {}
        }
    }
    Ok(entry)
}

/// What an index that searches is asked about.
#[derive(Clone, Copy)]
enum Asked {
    Label,
    Id,
}

/// A [`TokenIndex`] made when a key first needs the token, by that key's session (a rerun
/// whose keys are all packaged already never reads the token's objects): every object read
/// once, or searched for by label and id as keys ask, as [`LookupChoice`] says.
pub struct LazyIndex {
    choice: LookupChoice,
    /// The keys of the run, which searching would cost a few searches each.
    keys: usize,
    index: OnceLock<(TokenIndex, Probe)>,
    /// Held while the index is made, so that it is made once.
    making: Mutex<()>,
}

impl LazyIndex {
    pub fn new(choice: LookupChoice, keys: usize) -> Self {
        Self {
            choice,
            keys,
            index: OnceLock::new(),
            making: Mutex::new(()),
        }
    }

    /// The index, made through `token` if no session has made it yet.
    pub fn get(&self, token: &TokenSession, raw: &RawModule) -> Result<&TokenIndex> {
        if let Some((index, _)) = self.index.get() {
            return Ok(index);
        }
        let _making = lock(&self.making, "token index making");
        if let Some((index, _)) = self.index.get() {
            return Ok(index);
        }
        let made = choice::make(token, raw, self.choice, self.keys)?;
        Ok(&self.index.get_or_init(|| made).0)
    }

    /// How the index was made and why; `None` when no key needed the token.
    pub fn probe(&self) -> Option<&Probe> {
        self.index.get().map(|(_, probe)| probe)
    }
}

impl<H: Handle> Index<H> {
    /// An index of `entries`, every object of the token.
    pub fn new(entries: impl IntoIterator<Item = Entry<H>>) -> Self {
        Self::with_coverage(entries, Coverage::All)
    }

    /// An index that holds what [`Index::learn`] adds.
    fn asking() -> Self {
        Self::with_coverage(
            [],
            Coverage::Asked {
                labels: HashSet::new(),
                ids: HashSet::new(),
            },
        )
    }

    fn with_coverage(entries: impl IntoIterator<Item = Entry<H>>, coverage: Coverage) -> Self {
        let mut state = State {
            by_label: HashMap::new(),
            public_by_id: HashMap::new(),
            reserved: HashSet::new(),
            coverage,
            known: HashSet::new(),
        };
        for e in entries {
            state.add(e);
        }
        Self {
            state: Mutex::new(state),
        }
    }

    /// How many objects are indexed.
    pub fn len(&self) -> usize {
        self.lock().by_label.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<H>> {
        lock(&self.state, "token index")
    }

    /// The one private or secret key labelled `label`: what `find_target` finds by searching.
    pub fn target(&self, label: &str) -> Result<H> {
        let state = self.lock();
        let found: Vec<H> = state
            .by_label
            .get(label.as_bytes())
            .into_iter()
            .flatten()
            .filter(|(_, class)| {
                [ObjectClass::PRIVATE_KEY, ObjectClass::SECRET_KEY].contains(class)
            })
            .map(|(handle, _)| *handle)
            .collect();
        match found.as_slice() {
            [] => Err(OfflineError::NoSuchLabel(label.into())),
            [one] => Ok(*one),
            many => Err(OfflineError::AmbiguousKey {
                what: format!("label `{label}`"),
                count: many.len(),
            }),
        }
    }

    /// A public key object with this `CKA_ID` (the first, as a search would give it).
    pub fn public_by_id(&self, id: &[u8]) -> Option<H> {
        self.lock().public_by_id.get(id)?.first().copied()
    }

    /// The public key objects labelled `label`, when they are all the objects with that
    /// label: what a generation killed between its two objects leaves (empty otherwise).
    pub fn lone_public_keys(&self, label: &str) -> Vec<H> {
        let state = self.lock();
        let objects = state.by_label.get(label.as_bytes());
        let objects = objects.map(Vec::as_slice).unwrap_or_default();
        if objects.iter().all(|(_, c)| *c == ObjectClass::PUBLIC_KEY) {
            objects.iter().map(|(h, _)| *h).collect()
        } else {
            Vec::new()
        }
    }

    /// Claims `label` for a key about to be generated: [`OfflineError::LabelInUse`] when an
    /// object other than those in `beside` has it, or another session is generating under
    /// it. The claim ends when the [`Reservation`] is recorded or dropped.
    pub fn reserve(&self, label: &str, beside: &[H]) -> Result<Reservation<'_, H>> {
        let mut state = self.lock();
        let key = label.as_bytes().to_vec();
        let taken = state
            .by_label
            .get(&key)
            .is_some_and(|objects| objects.iter().any(|(h, _)| !beside.contains(h)));
        if taken || !state.reserved.insert(key.clone()) {
            return Err(OfflineError::LabelInUse(label.into()));
        }
        Ok(Reservation {
            index: self,
            label: key,
        })
    }
}

impl<H: Handle> Index<H> {
    /// Makes sure the objects a label or id names are here: when the index does not hold
    /// every object, the first time `key` is asked about, `search` finds them and `read`
    /// reads those not here yet (outside the lock: sessions search at once), and they are
    /// added; later asks cost nothing.
    fn learn(
        &self,
        key: &[u8],
        asked: Asked,
        search: impl FnOnce() -> Result<Vec<H>>,
        read: impl Fn(H) -> Result<Entry<H>>,
    ) -> Result<()> {
        if !self.lock().wants(key, asked) {
            return Ok(());
        }
        let found = search()?;
        // Objects the index holds already (an EC key's public key, found by its label) are
        // not read again.
        let new: Vec<H> = {
            let state = self.lock();
            found
                .into_iter()
                .filter(|h| !state.known.contains(&h.number()))
                .collect()
        };
        let entries = new.into_iter().map(read).collect::<Result<Vec<_>>>()?;
        let mut state = self.lock();
        // Another session may have asked meanwhile; objects found twice are added once.
        state.mark(key, asked);
        for e in entries {
            state.add(e);
        }
        Ok(())
    }
}

impl<H: Handle> State<H> {
    /// Whether `key` has still to be searched for.
    fn wants(&self, key: &[u8], asked: Asked) -> bool {
        match (&self.coverage, asked) {
            (Coverage::All, _) => false,
            (Coverage::Asked { labels, .. }, Asked::Label) => !labels.contains(key),
            (Coverage::Asked { ids, .. }, Asked::Id) => !ids.contains(key),
        }
    }

    fn mark(&mut self, key: &[u8], asked: Asked) {
        if let Coverage::Asked { labels, ids } = &mut self.coverage {
            match asked {
                Asked::Label => labels.insert(key.to_vec()),
                Asked::Id => ids.insert(key.to_vec()),
            };
        }
    }

    /// Adds an object, once (a search may find one the index holds already).
    fn add(&mut self, e: Entry<H>) {
        if !self.known.insert(e.handle.number()) {
            return;
        }
        if e.class == ObjectClass::PUBLIC_KEY {
            self.public_by_id
                .entry(e.id.clone())
                .or_default()
                .push(e.handle);
        }
        self.by_label
            .entry(e.label)
            .or_default()
            .push((e.handle, e.class));
    }
}

/// A label claimed for generation (see [`Index::reserve`]).
pub struct Reservation<'a, H: Handle> {
    index: &'a Index<H>,
    label: Vec<u8>,
}

impl<H: Handle> Reservation<'_, H> {
    /// The objects generated under the label are on the token: index them and end the claim.
    pub fn record(self, objects: impl IntoIterator<Item = (H, ObjectClass)>, id: &[u8]) {
        let mut state = self.index.lock();
        for (handle, class) in objects {
            state.add(Entry {
                handle,
                class,
                label: self.label.clone(),
                id: id.to_vec(),
            });
        }
    }
}

impl<H: Handle> Drop for Reservation<'_, H> {
    fn drop(&mut self) {
        self.index.lock().reserved.remove(&self.label);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Handle for u32 {
        fn number(self) -> u64 {
            self.into()
        }
    }

    fn entry(handle: u32, class: ObjectClass, label: &str, id: &[u8]) -> Entry<u32> {
        Entry {
            handle,
            class,
            label: label.as_bytes().to_vec(),
            id: id.to_vec(),
        }
    }

    fn token() -> Index<u32> {
        Index::new([
            entry(1, ObjectClass::PRIVATE_KEY, "ec", b"e"),
            entry(2, ObjectClass::PUBLIC_KEY, "ec", b"e"),
            entry(3, ObjectClass::SECRET_KEY, "aes", b"a"),
            entry(4, ObjectClass::PRIVATE_KEY, "twice", b"t1"),
            entry(5, ObjectClass::SECRET_KEY, "twice", b"t2"),
            entry(6, ObjectClass::CERTIFICATE, "cert", b"c"),
            entry(7, ObjectClass::PUBLIC_KEY, "lonely", b"p"),
        ])
    }

    #[test]
    fn targets_are_found_by_label_among_private_and_secret_keys() {
        let index = token();
        assert_eq!(index.len(), 7);
        assert_eq!(index.target("ec").unwrap(), 1);
        assert_eq!(index.target("aes").unwrap(), 3);
        let err = index.target("twice").unwrap_err();
        assert!(
            matches!(err, OfflineError::AmbiguousKey { count: 2, .. }),
            "{err}"
        );
        // A certificate or a lone public key is no target, as with a search by class.
        for label in ["cert", "lonely", "none"] {
            let err = index.target(label).unwrap_err();
            assert!(
                matches!(err, OfflineError::NoSuchLabel(_)),
                "{label}: {err}"
            );
        }
    }

    #[test]
    fn public_keys_are_found_by_id() {
        let index = token();
        assert_eq!(index.public_by_id(b"e"), Some(2));
        assert_eq!(index.public_by_id(b"p"), Some(7));
        assert_eq!(
            index.public_by_id(b"a"),
            None,
            "a secret key is no public key"
        );
    }

    #[test]
    fn a_label_is_claimed_once_and_generated_keys_join_the_index() {
        let index = token();
        // Any object's label is in use, a certificate's too.
        for label in ["ec", "cert", "lonely"] {
            let err = index.reserve(label, &[]).err().unwrap();
            assert!(matches!(err, OfflineError::LabelInUse(_)), "{label}: {err}");
        }
        let claim = index.reserve("new", &[]).unwrap();
        assert!(matches!(
            index.reserve("new", &[]).err().unwrap(),
            OfflineError::LabelInUse(_)
        ));
        // Not a target until it is made.
        assert!(matches!(
            index.target("new").unwrap_err(),
            OfflineError::NoSuchLabel(_)
        ));
        claim.record(
            [(8, ObjectClass::PRIVATE_KEY), (9, ObjectClass::PUBLIC_KEY)],
            b"n",
        );
        assert_eq!(index.target("new").unwrap(), 8);
        assert_eq!(index.public_by_id(b"n"), Some(9));
        assert!(index.reserve("new", &[]).is_err(), "now an object has it");
        // A claim dropped without a key (the generation failed) frees the label.
        drop(index.reserve("failed", &[]).unwrap());
        drop(index.reserve("failed", &[]).unwrap());
        assert_eq!(index.len(), 9);
    }

    #[test]
    fn a_lone_public_key_is_named_and_may_be_generated_beside() {
        let index = token();
        assert_eq!(index.lone_public_keys("lonely"), [7]);
        // A pair, a secret key, a certificate, nothing: no lone public key.
        for label in ["ec", "aes", "cert", "none"] {
            assert_eq!(index.lone_public_keys(label), [] as [u32; 0], "{label}");
        }
        assert!(index.reserve("lonely", &[]).is_err());
        assert!(
            index.reserve("ec", &[2]).is_err(),
            "the private key has it too"
        );
        let claim = index.reserve("lonely", &[7]).unwrap();
        claim.record(
            [
                (10, ObjectClass::PRIVATE_KEY),
                (11, ObjectClass::PUBLIC_KEY),
            ],
            b"n",
        );
        assert_eq!(index.target("lonely").unwrap(), 10);
        assert_eq!(index.public_by_id(b"n"), Some(11));
        assert_eq!(index.public_by_id(b"p"), Some(7));
    }

    /// An index that searches, over the objects of [`token`]: each label and id searched for
    /// once, each object read once, and the same answers the full index gives.
    #[test]
    fn a_searching_index_answers_as_the_full_one_searching_each_once() {
        let objects: Vec<(u32, ObjectClass, &str, &[u8])> = vec![
            (1, ObjectClass::PRIVATE_KEY, "ec", b"e"),
            (2, ObjectClass::PUBLIC_KEY, "ec", b"e"),
            (3, ObjectClass::SECRET_KEY, "aes", b"a"),
            (4, ObjectClass::PRIVATE_KEY, "twice", b"t1"),
            (5, ObjectClass::SECRET_KEY, "twice", b"t2"),
            (6, ObjectClass::CERTIFICATE, "cert", b"c"),
            (7, ObjectClass::PUBLIC_KEY, "lonely", b"p"),
        ];
        let searches = std::cell::Cell::new(0);
        let reads = std::cell::RefCell::new(Vec::new());
        let index = Index::<u32>::asking();
        let read = |h: u32| {
            reads.borrow_mut().push(h);
            let (handle, class, label, id) = objects.iter().find(|o| o.0 == h).unwrap();
            Ok(entry(*handle, *class, label, id))
        };
        let by_label = |label: &str| {
            index.learn(
                label.as_bytes(),
                Asked::Label,
                || {
                    searches.set(searches.get() + 1);
                    Ok(objects
                        .iter()
                        .filter(|o| o.2 == label)
                        .map(|o| o.0)
                        .collect())
                },
                read,
            )
        };
        let by_id = |id: &[u8]| {
            index.learn(
                id,
                Asked::Id,
                || {
                    searches.set(searches.get() + 1);
                    let public = |o: &&(u32, ObjectClass, &str, &[u8])| {
                        o.1 == ObjectClass::PUBLIC_KEY && o.3 == id
                    };
                    Ok(objects.iter().filter(public).map(|o| o.0).collect())
                },
                read,
            )
        };
        let full = token();
        for label in ["ec", "aes", "twice", "cert", "lonely", "none"] {
            by_label(label).unwrap();
            by_label(label).unwrap();
            assert_eq!(
                format!("{:?}", index.target(label)),
                format!("{:?}", full.target(label)),
                "{label}"
            );
            assert_eq!(index.lone_public_keys(label), full.lone_public_keys(label));
        }
        assert_eq!(searches.get(), 6, "each label searched for once");
        // The EC key's public key came with its label: found by its id, it is not read again.
        by_id(b"e").unwrap();
        assert_eq!(index.public_by_id(b"e"), Some(2));
        assert_eq!(searches.get(), 7);
        let mut read_handles = reads.borrow().clone();
        read_handles.sort();
        assert_eq!(read_handles, [1, 2, 3, 4, 5, 6, 7], "each object read once");
        // An unknown label is claimed and recorded as with the full index.
        by_label("new").unwrap();
        let claim = index.reserve("new", &[]).unwrap();
        claim.record([(8, ObjectClass::PRIVATE_KEY)], b"n");
        assert_eq!(index.target("new").unwrap(), 8);
        assert!(index.reserve("ec", &[]).is_err());
    }
}
