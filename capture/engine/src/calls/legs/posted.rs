//! Links by media in the parallel engine: one replica (worker 0) weighs
//! every replica's evidence (`evidence.rs`) and records each link it made,
//! in order; the meeting posts them and every other replica makes them
//! alike, at the same point of its sweep, so that every replica's groups
//! stay the same (a group decides when its calls are handed out, and the
//! joining thread merges a call's replicas per sweep: replicas that
//! disagreed on groups would split calls). Weighing everyone's evidence in
//! every replica cost each of them as much as the weighing replica, and an
//! early-stream store each (issue 18).

use std::collections::HashMap;

use super::{Groups, LinkMethod, OpenCalls};
use crate::calls::call::Call;
use crate::calls::call_ids::CallIds;

/// A call as every replica names it (call numbers differ between
/// replicas): its Call-ID and start, which tells apart the calls a Call-ID
/// started one after the other.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CallName {
    pub call_id: Box<[u8]>,
    pub start_ns: u64,
}

impl CallName {
    fn of(c: &Call) -> Self {
        CallName {
            call_id: c.call_id_raw().into(),
            start_ns: c.start_ns(),
        }
    }
}

/// A link the weighing replica made, as `Groups::link` made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostedLink {
    pub a: CallName,
    pub b: CallName,
    pub method: LinkMethod,
    pub detail: String,
}

impl Groups {
    /// Links by media are recorded from now until [`Self::take_made`].
    pub(in crate::calls) fn record_links(&mut self) {
        self.made = Some(Vec::new());
    }

    /// The links recorded since [`Self::record_links`], in the order made;
    /// recording stops.
    pub(in crate::calls) fn take_made(&mut self) -> Vec<PostedLink> {
        self.made.take().unwrap_or_default()
    }

    /// A link by media: made, and recorded while recording.
    pub(super) fn link_media(
        &mut self,
        open: &mut OpenCalls,
        (a, b): (u64, u64),
        method: LinkMethod,
        detail: String,
    ) {
        let recorded = self.made.is_some().then(|| detail.clone());
        if !self.link(open, a, b, method, detail) {
            return;
        }
        let (Some(detail), Some(ca), Some(cb)) = (recorded, self.call(open, a), self.call(open, b))
        else {
            return;
        };
        let link = PostedLink {
            a: CallName::of(ca),
            b: CallName::of(cb),
            method,
            detail,
        };
        if let Some(made) = &mut self.made {
            made.push(link);
        }
    }

    /// Open or parked call `no`.
    fn call<'c>(&'c self, open: &'c OpenCalls, no: u64) -> Option<&'c Call> {
        open.get(&no).map(|c| &**c).or_else(|| self.parked.get(&no))
    }

    /// Links another replica made and posted, made here in the same order:
    /// each names its calls by [`CallName`], open here or parked (closed,
    /// waiting for the rest of its group). Returns how many name a call not
    /// known here: none should, as every replica has the same open and
    /// parked calls at a meeting (counted, and checked by the tests).
    pub(in crate::calls) fn apply_links(
        &mut self,
        open: &mut OpenCalls,
        by_call_id: &CallIds,
        links: &[PostedLink],
    ) -> u64 {
        if links.is_empty() {
            return 0;
        }
        // Linking neither opens, closes nor parks a call: every link's
        // calls are found first, parked ones through one map of them.
        let parked: HashMap<(&[u8], u64), u64> = self
            .parked
            .iter()
            .map(|(&no, c)| ((c.call_id_raw(), c.start_ns()), no))
            .collect();
        let find = |n: &CallName| {
            by_call_id
                .get(&n.call_id, open)
                .filter(|no| open.get(no).is_some_and(|c| c.start_ns() == n.start_ns))
                .or_else(|| parked.get(&(&n.call_id[..], n.start_ns)).copied())
        };
        let found: Vec<Option<(u64, u64)>> = links
            .iter()
            .map(|l| Some((find(&l.a)?, find(&l.b)?)))
            .collect();
        let mut unresolved = 0;
        for (l, calls) in links.iter().zip(found) {
            match calls {
                Some((a, b)) => {
                    self.link(open, a, b, l.method, l.detail.clone());
                }
                None => unresolved += 1,
            }
        }
        unresolved
    }
}
