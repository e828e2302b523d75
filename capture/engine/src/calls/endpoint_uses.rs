//! The calls using one media endpoint, newest last, asked by call.
//!
//! Almost always one call, kept inline. A few (a B2BUA's two legs, a
//! re-INVITE) in a short list. Many (a media server that receives every
//! call on one port) in an index by call and by age: with a list, finding
//! which of 50,000 calls a datagram to that port belongs to meant a walk
//! through 50,000 uses for every packet, in both directions.

use std::collections::{BTreeMap, BTreeSet};

use super::endpoints::{EndpointUse, Role};

/// Uses of one endpoint above which the list becomes an index.
const LIST_MAX: usize = 16;

/// The uses of one endpoint, in the order they came (newest last). The
/// shared cases boxed so that a map entry's value takes 16 bytes.
#[derive(Default)]
pub(super) enum Uses {
    One(EndpointUse),
    Many(Box<Many>),
    #[default]
    None,
}

pub(super) enum Many {
    List(Vec<EndpointUse>),
    Index(Index),
}

/// Every use numbered in the order it came: by number (the newest is the
/// last), and by (call, number) to find a call's uses without a walk.
#[derive(Default)]
pub(super) struct Index {
    next: u64,
    by_age: BTreeMap<u64, EndpointUse>,
    by_call: BTreeSet<(u64, u64)>,
}

impl Index {
    fn of(list: &[EndpointUse]) -> Self {
        let mut ix = Index::default();
        for u in list {
            ix.push(*u);
        }
        ix
    }

    fn push(&mut self, u: EndpointUse) {
        let n = self.next;
        self.next += 1;
        self.by_age.insert(n, u);
        self.by_call.insert((u.call, n));
    }

    /// The numbers of `call`'s uses, oldest first.
    fn numbers(&self, call: u64) -> impl DoubleEndedIterator<Item = u64> + '_ {
        self.by_call
            .range((call, 0)..=(call, u64::MAX))
            .map(|&(_, n)| n)
    }

    /// `call`'s newest use and its number.
    fn newest_of(&self, call: u64) -> Option<(u64, EndpointUse)> {
        let n = self.numbers(call).next_back()?;
        self.by_age.get(&n).map(|u| (n, *u))
    }

    fn remove_call(&mut self, call: u64) {
        loop {
            let Some(n) = self.numbers(call).next() else {
                return;
            };
            self.by_call.remove(&(call, n));
            self.by_age.remove(&n);
        }
    }
}

impl Many {
    /// [`Uses::has`] of more than one use.
    #[inline(never)]
    fn has(&self, call: u64, role: Option<Role>) -> bool {
        let is = |u: &EndpointUse| u.call == call && role.is_none_or(|r| u.role == r);
        match self {
            Many::List(v) => v.iter().any(is),
            Many::Index(ix) => ix.numbers(call).any(|n| ix.by_age.get(&n).is_some_and(is)),
        }
    }

    /// [`Uses::newest_shared_with`] of more than one use.
    #[inline(never)]
    fn newest_shared_with(&self, other: &Uses) -> Option<EndpointUse> {
        let ix = match self {
            Many::List(v) => return v.iter().rev().find(|u| other.has(u.call, None)).copied(),
            Many::Index(ix) => ix,
        };
        match other.as_slice() {
            // Few calls there: each one's newest use here, the newest of those.
            Some(o) => o
                .iter()
                .filter_map(|x| ix.newest_of(x.call))
                .max_by_key(|&(n, _)| n)
                .map(|(_, u)| u),
            // Both shared by many calls (rare: a media server sending to
            // another): walk from the newest.
            None => ix
                .by_age
                .values()
                .rev()
                .find(|u| other.has(u.call, None))
                .copied(),
        }
    }
}

impl Uses {
    pub fn is_empty(&self) -> bool {
        match self {
            Uses::One(_) => false,
            Uses::Many(m) => match &**m {
                Many::List(v) => v.is_empty(),
                Many::Index(ix) => ix.by_age.is_empty(),
            },
            Uses::None => true,
        }
    }

    /// The uses as a slice, where they are kept as one (not an index).
    fn as_slice(&self) -> Option<&[EndpointUse]> {
        match self {
            Uses::One(u) => Some(std::slice::from_ref(u)),
            Uses::Many(m) => match &**m {
                Many::List(v) => Some(v),
                Many::Index(_) => None,
            },
            Uses::None => Some(&[]),
        }
    }

    pub fn push(&mut self, u: EndpointUse) {
        match self {
            Uses::One(a) => *self = Uses::Many(Box::new(Many::List(vec![*a, u]))),
            Uses::None => *self = Uses::One(u),
            Uses::Many(m) => match &mut **m {
                Many::List(v) if v.is_empty() => *self = Uses::One(u),
                Many::List(v) if v.len() >= LIST_MAX => {
                    let mut ix = Index::of(v);
                    ix.push(u);
                    **m = Many::Index(ix);
                }
                Many::List(v) => v.push(u),
                Many::Index(ix) => ix.push(u),
            },
        }
    }

    /// Forgets every use of `call`.
    pub fn remove_call(&mut self, call: u64) {
        match self {
            Uses::One(u) if u.call == call => *self = Uses::None,
            Uses::One(_) | Uses::None => {}
            Uses::Many(m) => match &mut **m {
                Many::List(v) => v.retain(|u| u.call != call),
                Many::Index(ix) => ix.remove_call(call),
            },
        }
    }

    /// `call`'s use in `role`, to change it.
    pub fn use_mut(&mut self, call: u64, role: Role) -> Option<&mut EndpointUse> {
        let is = |u: &EndpointUse| u.call == call && u.role == role;
        match self {
            Uses::One(u) => is(u).then_some(u),
            Uses::None => None,
            Uses::Many(m) => match &mut **m {
                Many::List(v) => v.iter_mut().find(|u| is(u)),
                Many::Index(ix) => {
                    let n = ix
                        .numbers(call)
                        .find(|n| ix.by_age.get(n).is_some_and(is))?;
                    ix.by_age.get_mut(&n)
                }
            },
        }
    }

    /// Whether `call` uses it (in `role`, if given). The one-call case
    /// inline, the rest out of line: with the index walk in it, LLVM
    /// inlined it into `Endpoints::find` or not as unrelated code in the
    /// crate changed (some 22 instructions a media packet, session 16).
    #[inline]
    pub fn has(&self, call: u64, role: Option<Role>) -> bool {
        match self {
            Uses::One(u) => u.call == call && role.is_none_or(|r| u.role == r),
            Uses::None => false,
            Uses::Many(m) => m.has(call, role),
        }
    }

    /// The newest use.
    #[inline]
    pub fn newest(&self) -> Option<EndpointUse> {
        match self {
            Uses::One(u) => Some(*u),
            Uses::None => None,
            Uses::Many(m) => match &**m {
                Many::List(v) => v.last().copied(),
                Many::Index(ix) => ix.by_age.values().next_back().copied(),
            },
        }
    }

    /// The newest use whose call also uses `other`. The one-call case
    /// first, inline: it is nearly every media packet's.
    #[inline]
    pub fn newest_shared_with(&self, other: &Uses) -> Option<EndpointUse> {
        match self {
            Uses::One(u) => other.has(u.call, None).then_some(*u),
            Uses::None => None,
            Uses::Many(m) => m.newest_shared_with(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64: a fixed sequence of operations.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// The list every form must agree with: the uses in order, newest last.
    fn reference_newest_shared(d: &[EndpointUse], s: &[EndpointUse]) -> Option<EndpointUse> {
        d.iter()
            .rev()
            .find(|u| s.iter().any(|x| x.call == u.call))
            .copied()
    }

    fn same(a: Option<EndpointUse>, b: Option<EndpointUse>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => {
                a.call == b.call
                    && a.role == b.role
                    && a.media_idx() == b.media_idx()
                    && a.fax == b.fax
            }
            (None, None) => true,
            _ => false,
        }
    }

    #[test]
    fn uses_answer_as_a_plain_list_whatever_their_form() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..40 {
            // Few calls (lists) in some rounds, many (indexes) in others.
            let calls = if round % 2 == 0 { 6 } else { 300 };
            let (mut d, mut s) = (Uses::None, Uses::None);
            let (mut rd, mut rs) = (Vec::<EndpointUse>::new(), Vec::<EndpointUse>::new());
            for step in 0..2_000 {
                let call = rng.below(calls);
                let role = if rng.below(2) == 0 {
                    Role::Rtp
                } else {
                    Role::Rtcp
                };
                let u = EndpointUse::new(call, role, step % 3, rng.below(5) == 0);
                let (uses, list) = if rng.below(3) == 0 {
                    (&mut s, &mut rs)
                } else {
                    (&mut d, &mut rd)
                };
                match rng.below(10) {
                    0..=5 => {
                        if !list.iter().any(|x| x.call == call && x.role == role) {
                            list.push(u);
                            uses.push(u);
                        }
                    }
                    6 => {
                        list.retain(|x| x.call != call);
                        uses.remove_call(call);
                    }
                    _ => {
                        let want = list.iter_mut().find(|x| x.call == call && x.role == role);
                        let got = uses.use_mut(call, role);
                        assert_eq!(want.is_some(), got.is_some(), "round {round} step {step}");
                        if let (Some(w), Some(g)) = (want, got) {
                            *w = u;
                            *g = u;
                        }
                    }
                }
                assert_eq!(d.is_empty(), rd.is_empty());
                assert!(same(d.newest(), rd.last().copied()));
                assert!(same(
                    d.newest_shared_with(&s),
                    reference_newest_shared(&rd, &rs)
                ));
                assert!(same(
                    s.newest_shared_with(&d),
                    reference_newest_shared(&rs, &rd)
                ));
                let c = rng.below(calls);
                assert_eq!(d.has(c, None), rd.iter().any(|x| x.call == c));
                assert_eq!(
                    d.has(c, Some(Role::Rtcp)),
                    rd.iter().any(|x| x.call == c && x.role == Role::Rtcp)
                );
            }
        }
    }

    #[test]
    fn a_map_entry_value_stays_16_bytes() {
        assert_eq!(std::mem::size_of::<Uses>(), 16);
    }
}
