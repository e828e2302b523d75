//! NAT latches in the parallel engine. A replica that latches a source
//! (media from an address no SDP named reached an announced endpoint)
//! posts it at the next sweep meeting, and every replica adopts it there:
//! traffic sent back to the latched address hashes to whichever worker
//! that address hashes to, which held it as early media until then, and
//! one table would have taken it for the call as it came.

use std::net::SocketAddr;

use super::CallTable;
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
    /// The latches every replica posted at this sweep, in capture order:
    /// each made here too (the replica that posted it has it already), and
    /// what is held here for the latched address since the latch is the
    /// call's, taken as [`CallTable::on_udp`] takes a datagram. What came
    /// before the latch stays held (one table held it too).
    pub(super) fn adopt_latches(&mut self, latches: &[PostedLatch]) {
        for l in latches {
            let Some((u, src_known)) = self.endpoints.find(l.src, l.dst) else {
                continue;
            };
            if !src_known {
                self.latch_here(u, l.src, l.dst, l.ts_ns);
            }
            for o in self.orphans.claim_after(l.src, l.at()) {
                self.take_held(&o);
            }
        }
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
