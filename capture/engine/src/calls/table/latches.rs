//! NAT latches in the parallel engine. A replica that latches a source
//! (media from an address no SDP named reached an announced endpoint)
//! posts it at the next sweep meeting, and every replica adopts it there:
//! traffic sent back to the latched address hashes to whichever worker
//! that address hashes to, which held it as early media until then, and
//! one table would have taken it for the call as it came; so is traffic
//! from the latched address to one no call claims.

use std::collections::HashSet;
use std::net::SocketAddr;

use super::CallTable;
use super::unclaimed::Unclaimed;
use crate::calls::call::PacketRef;
use crate::calls::orphans::OrphanRtp;

/// A latch one replica made: media from `src` reached `dst` at `ts_ns`, in
/// packet `pref`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PostedLatch {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub ts_ns: u64,
    pub pref: PacketRef,
}

impl PostedLatch {
    /// Where it falls in capture order.
    pub fn at(&self) -> (u64, PacketRef) {
        (self.ts_ns, self.pref)
    }
}

impl CallTable {
    /// Latches the replicas posted at a meeting (each round of it), in
    /// capture order: each made here too (the replica that posted it has
    /// it already), and what this replica found no call for since the last
    /// meeting, sent to or from the latched address after the latch, is
    /// the call's, taken whole as [`CallTable::on_udp`] takes a datagram
    /// (`unclaimed.rs`). What came before the latch stays held (one table
    /// held it too). Latches and leg-linking evidence these datagrams make
    /// are posted at the meeting's next round ([`Self::post`]).
    pub fn adopt_latches(&mut self, latches: &[PostedLatch]) {
        if latches.is_empty() {
            return;
        }
        let mut log = std::mem::take(&mut self.unclaimed);
        let addrs: HashSet<SocketAddr> = latches.iter().map(|l| l.src).collect();
        let touching = if log.is_empty() {
            Default::default()
        } else {
            log.touching(&addrs)
        };
        for l in latches {
            let Some((u, src_known)) = self.endpoints.find(l.src, l.dst) else {
                continue;
            };
            if !src_known {
                self.latch_here(u, l.src, l.dst, l.ts_ns);
            }
            for &i in touching.get(&l.src).into_iter().flatten() {
                self.take_logged(&mut log, i, l.at());
            }
            // Held but not kept whole (the log's budget): its header.
            for o in self.orphans.claim_after(l.src, l.at()) {
                self.take_held(&o);
            }
        }
        self.unclaimed = log;
    }

    /// Logged datagram `i`, if it came after `after` and a call now claims
    /// it: out of the orphan store (or the count of unmatched datagrams),
    /// into the call.
    fn take_logged(&mut self, log: &mut Unclaimed, i: usize, after: (u64, PacketRef)) {
        let it = log.item(i);
        if it.taken || it.at() <= after {
            return;
        }
        let Some((u, src_known)) = self.endpoints.find(it.src, it.dst) else {
            return;
        };
        let d = log.datagram(i);
        if it.held {
            // An SDP claimed it since: it is that call's.
            if self.orphans.take_datagram(it.dst, d.refs) == 0 {
                return;
            }
        } else {
            self.stats.unmatched_udp = self.stats.unmatched_udp.saturating_sub(1);
        }
        self.on_found(u, src_known, &d);
        log.mark_taken(i);
    }

    /// A datagram held for an address a call has since latched.
    fn take_held(&mut self, o: &OrphanRtp) {
        let Some((u, src_known)) = self.endpoints.find(o.src, o.dst) else {
            return;
        };
        if !src_known {
            self.latch(u, o.src, o.dst, o.ts_ns, o.pref);
        }
        let Some(call) = self.calls.get_mut(&u.call) else {
            return;
        };
        self.stats.media_packets += 1;
        self.stats.orphans_claimed += 1;
        call.on_orphan(Some(u.media_idx()), o);
    }
}
