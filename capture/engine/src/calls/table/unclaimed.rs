//! What a replica of the parallel engine found no call for since the last
//! sweep meeting, payloads included. A latch another replica made in that
//! time (posted at the meeting, `latches.rs`) may make some of it a call's:
//! it is then taken as one table took it when it came (every byte read:
//! RTCP reports, leg-linking fingerprints, STUN or UDPTL on a media port),
//! not from the header the orphan store keeps.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use crate::calls::call::PacketRef;

/// A UDP datagram on its way into the call table.
#[derive(Clone, Copy)]
pub(super) struct Datagram<'a> {
    pub ts_ns: u64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub payload: &'a [u8],
    /// The packets that carried it.
    pub refs: &'a [(u64, PacketRef)],
}

/// Payload bytes and datagrams kept at most between two meetings (a
/// second of capture): past either, a datagram is not kept (counted), and
/// a latch can only give the call its header, from the orphan store.
const MAX_BYTES: usize = 8 << 20;
const MAX_ITEMS: usize = 100_000;

/// One datagram of the log.
#[derive(Clone, Copy)]
pub(super) struct Item {
    pub ts_ns: u64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// Its last packet (it names the datagram in capture order, as in a
    /// posted latch).
    last: PacketRef,
    refs: (u32, u32),
    payload: (u32, u32),
    /// The orphan store held it (else nothing did: not RTP nor RTCP).
    pub held: bool,
    /// A call took it since.
    pub taken: bool,
}

impl Item {
    /// Where it falls in capture order.
    pub fn at(&self) -> (u64, PacketRef) {
        (self.ts_ns, self.last)
    }
}

/// The datagrams, in the order they came; cleared at each meeting, its
/// buffers kept (no allocation per datagram once warm).
#[derive(Default)]
pub(super) struct Unclaimed {
    items: Vec<Item>,
    refs: Vec<(u64, PacketRef)>,
    bytes: Vec<u8>,
    not_kept: u64,
}

impl Unclaimed {
    /// Keeps `d`, which the orphan store `held` or not.
    pub fn note(&mut self, d: &Datagram<'_>, held: bool) {
        if self.items.len() >= MAX_ITEMS || self.bytes.len() + d.payload.len() > MAX_BYTES {
            self.not_kept += 1;
            return;
        }
        let span = |at: usize, len: usize| (at as u32, (at + len) as u32);
        self.items.push(Item {
            ts_ns: d.ts_ns,
            src: d.src,
            dst: d.dst,
            last: d.refs.last().map_or(PacketRef::default(), |r| r.1),
            refs: span(self.refs.len(), d.refs.len()),
            payload: span(self.bytes.len(), d.payload.len()),
            held,
            taken: false,
        });
        self.refs.extend_from_slice(d.refs);
        self.bytes.extend_from_slice(d.payload);
    }

    /// Datagrams not kept (budget) so far.
    pub fn not_kept(&self) -> u64 {
        self.not_kept
    }

    pub fn clear(&mut self) {
        self.items.clear();
        self.refs.clear();
        self.bytes.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The datagrams from or to each of `addrs`, by address, in the order
    /// they came.
    pub fn touching(&self, addrs: &HashSet<SocketAddr>) -> HashMap<SocketAddr, Vec<usize>> {
        let mut out: HashMap<SocketAddr, Vec<usize>> = HashMap::new();
        for (i, it) in self.items.iter().enumerate() {
            for a in [it.src, it.dst] {
                if addrs.contains(&a) {
                    out.entry(a).or_default().push(i);
                }
            }
        }
        out
    }

    pub fn item(&self, i: usize) -> Item {
        self.items[i]
    }

    pub fn mark_taken(&mut self, i: usize) {
        self.items[i].taken = true;
    }

    /// Datagram `i` as it came.
    pub fn datagram(&self, i: usize) -> Datagram<'_> {
        let it = &self.items[i];
        let (r, p) = (it.refs, it.payload);
        Datagram {
            ts_ns: it.ts_ns,
            src: it.src,
            dst: it.dst,
            payload: &self.bytes[p.0 as usize..p.1 as usize],
            refs: &self.refs[r.0 as usize..r.1 as usize],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each datagram comes back as it was noted; past the byte budget they
    /// are counted, not kept, until the log is cleared.
    #[test]
    fn datagrams_come_back_whole_within_the_budget() {
        let (src, dst): (SocketAddr, SocketAddr) = (
            "10.0.0.1:4000".parse().unwrap(),
            "10.0.0.2:5000".parse().unwrap(),
        );
        let mut log = Unclaimed::default();
        let payload = vec![0xa5u8; 1000];
        let fit = MAX_BYTES / payload.len();
        for n in 0..fit as u64 + 3 {
            let refs = [(n, PacketRef(2 * n)), (n, PacketRef(2 * n + 1))];
            let d = Datagram {
                ts_ns: n,
                src,
                dst,
                payload: &payload,
                refs: &refs,
            };
            log.note(&d, n.is_multiple_of(2));
        }
        assert_eq!(log.not_kept(), 3, "the last ones past the budget");
        let i = fit - 1;
        let d = log.datagram(i);
        let n = i as u64;
        assert_eq!(d.payload, &payload[..]);
        assert_eq!(d.refs, &[(n, PacketRef(2 * n)), (n, PacketRef(2 * n + 1))]);
        assert_eq!(log.item(i).at(), (n, PacketRef(2 * n + 1)));
        assert_eq!(log.item(i).held, n.is_multiple_of(2));
        let touching = log.touching(&[dst].into_iter().collect());
        assert_eq!(touching[&dst].len(), fit);
        log.clear();
        assert!(log.is_empty());
    }
}
