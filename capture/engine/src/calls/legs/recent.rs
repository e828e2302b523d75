//! What leg linking remembers of recent streams, in one ring per kind
//! instead of a small heap allocation per stream.
//!
//! 50,000 calls starting together put 100,000 streams in these windows at
//! once. Kept as a `Vec` per key, they were 100,000 small allocations that
//! the allocator kept after they expired: RSS per call stayed about 1.1 KB
//! above the live heap for good. Here the items live in one `VecDeque` in
//! the order they were noted, found by key through a chain of numbers; a
//! large ring is one mapping the allocator gives back when it is freed.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use crate::calls::endpoints::AddrHash;

/// An item of a [`Recent`] ring, found by its key.
pub(super) trait Keyed {
    type Key: Copy + Eq + Hash;
    fn key(&self) -> Self::Key;
}

/// No earlier item with the same key.
const NONE: u64 = u64::MAX;

/// Items in the order noted, each with the number of the one noted before
/// it under the same key.
pub(super) struct Recent<T: Keyed> {
    items: VecDeque<(T, u64)>,
    /// The number of `items[0]` (numbers only grow).
    base: u64,
    /// Key -> the number of its latest item. Keyed foldhash, as the maps
    /// by address (`endpoints::AddrHash`): the keys are numbers (an SSRC,
    /// a call's number, a hash of names), and SipHash of each was most of
    /// a lookup (every early media packet of every call is noted here).
    latest: HashMap<T::Key, u64, AddrHash>,
}

impl<T: Keyed> Default for Recent<T> {
    fn default() -> Self {
        Recent {
            items: VecDeque::new(),
            base: 0,
            latest: HashMap::default(),
        }
    }
}

impl<T: Keyed> Recent<T> {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn push(&mut self, item: T) {
        let no = self.base + self.items.len() as u64;
        let prev = self.latest.insert(item.key(), no).unwrap_or(NONE);
        self.items.push_back((item, prev));
    }

    /// The numbers of the items under `key`, newest first.
    fn chain(&self, key: T::Key) -> impl Iterator<Item = usize> + '_ {
        let mut no = self.latest.get(&key).copied().unwrap_or(NONE);
        std::iter::from_fn(move || {
            if no == NONE || no < self.base {
                return None;
            }
            let i = (no - self.base) as usize;
            no = self.items[i].1;
            Some(i)
        })
    }

    /// The items under `key`, oldest first (the order they were noted in).
    pub fn of(&self, key: T::Key) -> Vec<&T> {
        let mut v: Vec<&T> = self.chain(key).map(|i| &self.items[i].0).collect();
        v.reverse();
        v
    }

    /// The oldest item under `key` that `pick` accepts.
    pub fn find_mut(&mut self, key: T::Key, pick: impl Fn(&T) -> bool) -> Option<&mut T> {
        let found = self.chain(key).filter(|&i| pick(&self.items[i].0)).last();
        found.map(|i| &mut self.items[i].0)
    }

    pub fn clear(&mut self) {
        self.base += self.items.len() as u64;
        self.items.clear();
        self.latest.clear();
        self.give_back();
    }

    /// The newest item under `key` that `pick` accepts.
    pub fn newest(&self, key: T::Key, pick: impl Fn(&T) -> bool) -> Option<&T> {
        self.chain(key).map(|i| &self.items[i].0).find(|t| pick(t))
    }

    /// Drops the items at the front that `expired` accepts, up to the first
    /// it does not: O(what expires), cheap enough at every push, unlike
    /// [`Self::retain`]'s walk of the whole ring.
    pub fn expire_front(&mut self, expired: impl Fn(&T) -> bool) {
        while self.items.front().is_some_and(|(t, _)| expired(t)) {
            self.pop_front();
        }
        self.give_back();
    }

    /// Pops the oldest item, forgetting its key if it was the key's latest.
    fn pop_front(&mut self) {
        if let Some((t, _)) = self.items.pop_front() {
            let key = t.key();
            if self.latest.get(&key) == Some(&self.base) {
                self.latest.remove(&key);
            }
            self.base += 1;
        }
    }

    /// Keeps the items `keep` accepts, in their order. Items are noted
    /// roughly in capture order, so what expires is usually a run at the
    /// front: popped, and the keys whose latest item it held forgotten;
    /// otherwise the ring is rebuilt (the numbers change).
    pub fn retain(&mut self, keep: impl Fn(&T) -> bool) {
        while self.items.front().is_some_and(|(t, _)| !keep(t)) {
            self.pop_front();
        }
        if self.items.iter().any(|(t, _)| !keep(t)) {
            let kept: Vec<T> = std::mem::take(&mut self.items)
                .into_iter()
                .map(|(t, _)| t)
                .filter(|t| keep(t))
                .collect();
            self.latest.clear();
            for t in kept {
                self.push(t);
            }
        }
        self.give_back();
    }

    /// What a burst grew is given back once it has aged out.
    fn give_back(&mut self) {
        let cap = self.items.capacity();
        if cap > 2 * self.items.len() + 64 {
            self.items.shrink_to_fit();
            let slot = std::mem::size_of::<(T, u64)>();
            crate::calls::trim::note_freed((cap - self.items.capacity()) * slot);
        }
        if self.latest.capacity() > 2 * self.latest.len() + 64 {
            crate::calls::trim::shrink_map(&mut self.latest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Item {
        key: u8,
        at: u64,
    }

    impl Keyed for Item {
        type Key = u8;
        fn key(&self) -> u8 {
            self.key
        }
    }

    /// A reproducible stream of numbers below `n` (xorshift64).
    fn xorshift(mut x: u64) -> impl FnMut(u64) -> u64 {
        move |n| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        }
    }

    /// Against a map of vectors (what it replaced) on random pushes and
    /// expiries, with times that sometimes go backwards (a merged capture):
    /// the same items under every key, in the same order.
    #[test]
    fn the_ring_finds_what_a_map_of_vectors_finds() {
        let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
        let mut ring: Recent<Item> = Recent::default();
        let mut model: HashMap<u8, Vec<Item>> = HashMap::new();
        let mut now = 1_000;
        for step in 0..20_000 {
            now += next(3);
            let at = if next(10) == 0 {
                now - next(50).min(now)
            } else {
                now
            };
            let item = Item {
                key: next(40) as u8,
                at,
            };
            ring.push(item);
            model.entry(item.key).or_default().push(item);
            if step % 97 == 0 {
                let horizon = now.saturating_sub(60);
                ring.retain(|t| t.at >= horizon);
                model.retain(|_, v| {
                    v.retain(|t| t.at >= horizon);
                    !v.is_empty()
                });
            }
            for key in 0..40u8 {
                let want: Vec<&Item> = model
                    .get(&key)
                    .map(|v| v.iter().collect())
                    .unwrap_or_default();
                assert_eq!(ring.of(key), want, "key {key} at step {step}");
            }
            let total: usize = model.values().map(Vec::len).sum();
            assert_eq!(ring.len(), total);
        }
    }

    /// `expire_front` drops the front run only (as the queue of recent
    /// INVITEs did: an item noted out of time order waits behind a newer
    /// one), and `newest` finds the newest match under a key among what is
    /// left, against a plain list of the items.
    #[test]
    fn expire_front_and_newest_match_a_list() {
        let mut next = xorshift(0x2545_F491_4F6C_DD1D);
        let mut ring: Recent<Item> = Recent::default();
        let mut model: VecDeque<Item> = VecDeque::new();
        let mut now = 1_000;
        for step in 0..20_000 {
            now += next(3);
            let at = now - next(20).min(now) * u64::from(next(8) == 0);
            let item = Item {
                key: next(30) as u8,
                at,
            };
            ring.push(item);
            model.push_back(item);
            let horizon = now.saturating_sub(40);
            ring.expire_front(|t| t.at < horizon);
            while model.front().is_some_and(|t| t.at < horizon) {
                model.pop_front();
            }
            assert_eq!(ring.len(), model.len(), "step {step}");
            let key = next(30) as u8;
            let limit = now - next(30).min(now);
            let want = model.iter().rev().find(|t| t.key == key && t.at <= limit);
            assert_eq!(ring.newest(key, |t| t.at <= limit), want, "step {step}");
            assert_eq!(
                ring.of(key),
                model.iter().filter(|t| t.key == key).collect::<Vec<_>>()
            );
        }
        ring.expire_front(|_| true);
        assert_eq!(ring.len(), 0);
        assert!(ring.newest(1, |_| true).is_none());
    }

    /// `find_mut` gives the oldest match, as `iter_mut().find` did.
    #[test]
    fn find_mut_gives_the_oldest_match() {
        let mut ring: Recent<Item> = Recent::default();
        for at in [5, 6, 7] {
            ring.push(Item { key: 1, at });
        }
        ring.push(Item { key: 2, at: 8 });
        assert_eq!(ring.find_mut(1, |t| t.at > 5).map(|t| t.at), Some(6));
        assert_eq!(ring.find_mut(2, |t| t.at < 8).map(|t| t.at), None);
        ring.clear();
        assert!(ring.of(1).is_empty());
        ring.push(Item { key: 1, at: 9 });
        assert_eq!(ring.of(1), vec![&Item { key: 1, at: 9 }]);
    }
}
