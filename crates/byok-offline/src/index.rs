//! The token's objects read once, for `batch`: by label, and its public keys by `CKA_ID`.
//!
//! A `C_FindObjects` costs time in proportion to the objects on the token (SoftHSM re-reads
//! its token directory at each `C_FindObjectsInit`), so a batch that searched per key would
//! slow down as the token fills. The batch reads every token object once ([`TokenIndex::read`])
//! and answers its per-key questions from here in constant time: which private or secret key
//! has this label (none, one, or several: [`OfflineError::AmbiguousKey`]), whether a label is
//! in use, which public key object has this `CKA_ID`. The keys the batch generates are added
//! as they are made. Object handles are the application's, valid in each of its sessions, so
//! one index serves every worker. Single-key commands keep searching the token.

use crate::error::{OfflineError, Result};
use crate::token::TokenSession;
use byok_cli_common::sync::lock;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};

/// The index of a token's objects, shared by a batch's sessions.
pub type TokenIndex = Index<ObjectHandle>;

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
    /// `C_GetAttributeValue` (asked twice: sizes, values) per object.
    pub fn read(token: &TokenSession) -> Result<Self> {
        let handles = token.session.find_objects(&[Attribute::Token(true)])?;
        let mut entries = Vec::with_capacity(handles.len());
        for handle in handles {
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
            entries.push(entry);
        }
        let index = Self::new(entries);
        tracing::info!(objects = index.len(), "token objects indexed");
        Ok(index)
    }
}

/// A [`TokenIndex`] read when a key first needs the token, by that key's session: a rerun
/// whose keys are all packaged already never reads the token's objects.
#[derive(Default)]
pub struct LazyIndex {
    index: OnceLock<TokenIndex>,
    /// Held while the index is read, so that it is read once.
    reading: Mutex<()>,
}

impl LazyIndex {
    /// The index, read through `token` if no session has read it yet.
    pub fn get(&self, token: &TokenSession) -> Result<&TokenIndex> {
        if let Some(index) = self.index.get() {
            return Ok(index);
        }
        let _reading = lock(&self.reading, "token index reading");
        if let Some(index) = self.index.get() {
            return Ok(index);
        }
        let index = TokenIndex::read(token)?;
        Ok(self.index.get_or_init(|| index))
    }
}

impl<H: Copy> Index<H> {
    /// An index of `entries`.
    pub fn new(entries: impl IntoIterator<Item = Entry<H>>) -> Self {
        let mut state = State {
            by_label: HashMap::new(),
            public_by_id: HashMap::new(),
            reserved: HashSet::new(),
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
    pub fn reserve(&self, label: &str, beside: &[H]) -> Result<Reservation<'_, H>>
    where
        H: PartialEq,
    {
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

impl<H: Copy> State<H> {
    fn add(&mut self, e: Entry<H>) {
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
pub struct Reservation<'a, H: Copy> {
    index: &'a Index<H>,
    label: Vec<u8>,
}

impl<H: Copy> Reservation<'_, H> {
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

impl<H: Copy> Drop for Reservation<'_, H> {
    fn drop(&mut self) {
        self.index.lock().reserved.remove(&self.label);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
