//! Open calls by Call-ID, without a copy of the Call-ID.
//!
//! A `HashMap<Box<[u8]>, u64>` kept each open call's Call-ID a second time,
//! in an allocation of its own (32 bytes of heap with glibc's header for a
//! 20-byte Call-ID), and a 24-byte entry. Here an entry is the Call-ID's
//! hash and the call's number (16 bytes); a lookup compares the Call-ID
//! with the one the call itself keeps ([`Call::call_id_raw`]), so two
//! Call-IDs with the same hash are still told apart.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

use super::call::Call;
use super::legs::OpenCalls;

/// One open call: its Call-ID's hash (kept so the table regrows without
/// reading the calls) and its number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    hash: u64,
    no: u64,
}

/// The open call of each Call-ID. Every call named here is in the
/// [`OpenCalls`] passed to the lookups. Keyed SipHash by default, as the
/// map it replaces: Call-IDs are chosen by whoever sends SIP.
pub(super) struct CallIds<S = RandomState> {
    slots: HashTable<Slot>,
    hasher: S,
}

impl Default for CallIds {
    fn default() -> Self {
        CallIds::with_hasher(RandomState::new())
    }
}

/// Whether open call `no` has Call-ID `cid`.
fn named(open: &OpenCalls, no: u64, cid: &[u8]) -> bool {
    open.get(&no).is_some_and(|c| c.call_id_raw() == cid)
}

impl<S: BuildHasher> CallIds<S> {
    pub fn with_hasher(hasher: S) -> Self {
        CallIds {
            slots: HashTable::new(),
            hasher,
        }
    }

    fn hash(&self, cid: &[u8]) -> u64 {
        self.hasher.hash_one(cid)
    }

    /// The open call of Call-ID `cid`.
    pub fn get(&self, cid: &[u8], open: &OpenCalls) -> Option<u64> {
        let h = self.hash(cid);
        self.slots
            .find(h, |s| s.hash == h && named(open, s.no, cid))
            .map(|s| s.no)
    }

    /// `call` (already in `open`) is now the open call of its Call-ID, in
    /// place of any other.
    pub fn insert(&mut self, call: &Call, open: &OpenCalls) {
        let (cid, no) = (call.call_id_raw(), call.no());
        let h = self.hash(cid);
        match self
            .slots
            .find_mut(h, |s| s.hash == h && named(open, s.no, cid))
        {
            Some(s) => s.no = no,
            None => {
                self.slots
                    .insert_unique(h, Slot { hash: h, no }, |s| s.hash);
            }
        }
    }

    /// Forgets `call` (closing) if it is still the open call of its
    /// Call-ID: its number tells it apart, so it need not be open any more.
    pub fn remove(&mut self, call: &Call) {
        let (h, no) = (self.hash(call.call_id_raw()), call.no());
        if let Ok(e) = self.slots.find_entry(h, |s| s.hash == h && s.no == no) {
            e.remove();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Shrinks the table when less than half of its room is used (as
    /// `trim::shrink_map` does for maps), counting what that freed.
    pub fn give_back(&mut self) {
        let before = self.slots.capacity();
        if !super::trim::worth_shrinking(self.slots.len(), before) {
            return;
        }
        self.slots.shrink_to_fit(|s| s.hash);
        let freed = before - self.slots.capacity();
        super::trim::note_freed(freed * (std::mem::size_of::<Slot>() + 1));
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasherDefault, Hasher};

    use super::*;

    /// Every Call-ID hashes alike: each lookup has to compare Call-IDs.
    #[derive(Default)]
    struct Same;

    impl Hasher for Same {
        fn finish(&self) -> u64 {
            7
        }
        fn write(&mut self, _: &[u8]) {}
    }

    fn open_call(open: &mut OpenCalls, no: u64, cid: &[u8]) {
        open.insert(no, Box::new(Call::new(no, cid, "INVITE".into(), 0)));
    }

    #[test]
    fn colliding_call_ids_are_told_apart_by_the_calls_own() {
        let mut ids = CallIds::with_hasher(BuildHasherDefault::<Same>::default());
        let mut open = OpenCalls::default();
        for (no, cid) in [(1, &b"a@h"[..]), (2, b"b@h"), (3, b"\xffraw@h")] {
            open_call(&mut open, no, cid);
            ids.insert(&open[&no], &open);
        }
        assert_eq!(ids.len(), 3);
        assert_eq!(ids.get(b"a@h", &open), Some(1));
        assert_eq!(ids.get(b"b@h", &open), Some(2));
        // Not valid UTF-8: found by the Call-ID as it was on the wire.
        assert_eq!(ids.get(b"\xffraw@h", &open), Some(3));
        assert_eq!(ids.get(b"c@h", &open), None);
        // Removed by number: the others stay.
        let b = open.remove(&2).unwrap();
        ids.remove(&b);
        assert_eq!(ids.get(b"b@h", &open), None);
        assert_eq!(ids.get(b"a@h", &open), Some(1));
        assert_eq!(ids.len(), 2);
    }

    /// A new call on a Call-ID takes it over; the old one closing later
    /// leaves the new one in place (as the map did: removed only if still
    /// its call).
    #[test]
    fn a_newer_call_takes_the_call_id_over() {
        let mut ids = CallIds::default();
        let mut open = OpenCalls::default();
        open_call(&mut open, 1, b"x@h");
        ids.insert(&open[&1], &open);
        open_call(&mut open, 2, b"x@h");
        ids.insert(&open[&2], &open);
        assert_eq!((ids.len(), ids.get(b"x@h", &open)), (1, Some(2)));
        let old = open.remove(&1).unwrap();
        ids.remove(&old);
        assert_eq!(ids.get(b"x@h", &open), Some(2));
        let new = open.remove(&2).unwrap();
        ids.remove(&new);
        assert!(ids.is_empty());
    }

    #[test]
    fn many_call_ids_in_and_out_and_the_table_shrinks() {
        let mut ids = CallIds::default();
        let mut open = OpenCalls::default();
        for no in 0..1_000u64 {
            open_call(&mut open, no, format!("id-{no}@h").as_bytes());
            ids.insert(&open[&no], &open);
        }
        let room = ids.slots.capacity();
        for no in 0..900u64 {
            let c = open.remove(&no).unwrap();
            ids.remove(&c);
        }
        ids.give_back();
        assert!(ids.slots.capacity() < room, "{room}");
        for no in 0..1_000u64 {
            let want = (no >= 900).then_some(no);
            assert_eq!(ids.get(format!("id-{no}@h").as_bytes(), &open), want);
        }
    }
}
