//! Joining the workers' replicas of each ended call.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use crossbeam_channel::{Receiver, Sender};

use super::Part;
use crate::calls::Call;
use crate::calls::legs::CallName;
use crate::tap::PacketTap;

/// The joining thread: the workers' parts until every worker has hung up,
/// each sweep's calls merged and handed on as soon as all its parts are
/// in, first to `tap` (as `Pipeline::drain_ended` hands its calls). Returns
/// the calls whose replicas could not be merged, and its thread's CPU time
/// (ns).
pub(super) fn run(
    n: usize,
    parts: Receiver<Part>,
    ready: Sender<Vec<Call>>,
    mut tap: Option<Box<dyn PacketTap>>,
) -> (u64, u64) {
    let started = super::thread_cpu_ns();
    let mut j = Joiner::new(n);
    for part in parts.iter() {
        j.add(part);
        let calls = j.take_ready();
        if let Some(t) = &mut tap {
            for call in calls.iter().filter(|c| !c.is_media_only()) {
                t.call_ended(call);
            }
        }
        if !calls.is_empty() && ready.send(calls).is_err() {
            break;
        }
    }
    (
        j.merge_errors,
        super::thread_cpu_ns().saturating_sub(started),
    )
}

/// What identifies one call across replicas: its Call-ID and start (a
/// Call-ID may start a new call after its first one ended); a media-only
/// record by its endpoint pair (ports folded as the record folds them).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Sip(CallName),
    MediaOnly(SocketAddr, SocketAddr),
    /// A media-only record that does not say its pair: not merged.
    Alone(usize, usize),
}

fn key(call: &Call, worker: usize, i: usize) -> Key {
    if !call.is_media_only() {
        return Key::Sip(CallName::of(call));
    }
    match call.media_pair() {
        Some((a, b)) => Key::MediaOnly(a, b),
        None => Key::Alone(worker, i),
    }
}

/// Parts by sweep until every worker's is in; then merged, in order.
pub(super) struct Joiner {
    n: usize,
    pending: BTreeMap<u64, Vec<Option<Vec<Call>>>>,
    ready: Vec<Call>,
    /// Calls whose replicas could not be merged (a spilled reference that
    /// could not be read back): kept as the first replica had it.
    pub merge_errors: u64,
}

impl Joiner {
    pub fn new(n: usize) -> Self {
        Joiner {
            n,
            pending: BTreeMap::new(),
            ready: Vec::new(),
            merge_errors: 0,
        }
    }

    pub fn add(&mut self, part: Part) {
        let n = self.n;
        let slots = self
            .pending
            .entry(part.seq)
            .or_insert_with(|| (0..n).map(|_| None).collect());
        slots[part.worker] = Some(part.calls);
        while let Some(entry) = self.pending.first_entry() {
            if entry.get().iter().any(Option::is_none) {
                break;
            }
            let parts = entry.remove().into_iter().flatten().collect();
            let merged = self.merge(parts);
            self.ready.extend(merged);
        }
    }

    pub fn take_ready(&mut self) -> Vec<Call> {
        std::mem::take(&mut self.ready)
    }

    /// One sweep's parts: each call's replicas merged into the first, in
    /// the order worker 0 (then the next) ended them; all of a call's
    /// replicas at once (`Call::merge_replicas`).
    fn merge(&mut self, parts: Vec<Vec<Call>>) -> Vec<Call> {
        let mut order = Vec::new();
        let mut by_key: HashMap<Key, (Call, Vec<Call>)> = HashMap::new();
        for (w, calls) in parts.into_iter().enumerate() {
            for (i, c) in calls.into_iter().enumerate() {
                let k = key(&c, w, i);
                match by_key.get_mut(&k) {
                    Some((_, others)) => others.push(c),
                    None => {
                        order.push(k.clone());
                        by_key.insert(k, (c, Vec::new()));
                    }
                }
            }
        }
        order
            .into_iter()
            .filter_map(|k| by_key.remove(&k))
            .map(|(first, others)| self.merge_one(first, others))
            .collect()
    }

    /// A call's replicas into the first; when their packet references
    /// cannot be read back together, one by one as far as each can.
    fn merge_one(&mut self, mut first: Call, others: Vec<Call>) -> Call {
        if others.is_empty() {
            return first;
        }
        let Err(others) = first.merge_replicas(others) else {
            return first;
        };
        for c in others {
            if let Err(e) = first.merge_replica(c) {
                self.merge_errors += 1;
                tracing::warn!(error = %e, call_id = %first.call_id(), "joining a call's replicas");
            }
        }
        first
    }
}
