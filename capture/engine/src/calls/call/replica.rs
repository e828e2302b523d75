//! Joining the replicas of one call (parallel engine, `crate::parallel`):
//! every media worker keeps its own copy of every call, driven by the same
//! SIP but by its own share of the media. At the end the copies are merged
//! into the call a single table would have built.

use super::{Call, Mark};
use crate::calls::PacketRef;
use crate::calls::packet_log::PacketLog;

impl Call {
    /// Merges `other`, another replica's copy of this same call (or of the
    /// same media-only record), into this one: the SIP part is the same in
    /// both and kept once; streams, fax directions and NAT latches are
    /// unioned (each lives on the one worker its destination hashes to);
    /// RTP/RTCP counts are summed; packet references are unioned (SIP
    /// packets are in every copy, media packets in one); times take the
    /// latest.
    pub(crate) fn merge_replica(&mut self, other: Call) -> std::io::Result<()> {
        let mine = self.packets.all()?.into_owned();
        let theirs = other.packets.all()?.into_owned();
        let mut log = PacketLog::default();
        log.extend(&union_refs(mine, theirs));
        self.packets = log;
        self.merge_fields(other);
        Ok(())
    }

    /// [`Self::merge_replica`] of every other replica at once: each copy's
    /// packet references are read and the union written once (merging one
    /// by one re-read and re-wrote the growing union at each, N - 1 times).
    /// On an error nothing is merged and `others` are given back.
    pub(crate) fn merge_replicas(&mut self, others: Vec<Call>) -> Result<(), Vec<Call>> {
        let Ok(union) = self.union_of(&others) else {
            return Err(others);
        };
        let mut log = PacketLog::default();
        log.extend(&union);
        self.packets = log;
        for other in others {
            self.merge_fields(other);
        }
        Ok(())
    }

    fn union_of(&self, others: &[Call]) -> std::io::Result<Vec<(u64, PacketRef)>> {
        let mut union = self.packets.all()?.into_owned();
        union.sort_unstable();
        for other in others {
            let mut theirs = other.packets.all()?.into_owned();
            theirs.sort_unstable();
            union = union_sorted(&union, &theirs);
        }
        Ok(union)
    }

    /// Everything but the packet references.
    fn merge_fields(&mut self, mut other: Call) {
        self.rtp_packets += other.rtp_packets;
        self.rtcp_packets += other.rtcp_packets;
        self.last_ns = self.last_ns.max(other.last_ns);
        // A call closed without an end of its own ends at its last packet:
        // each copy knew only its own last packet.
        let end = self.end_ns().max(other.end_ns());
        self.set_mark(Mark::End, end);
        if self.media_only {
            self.start_ns = self.start_ns.min(other.start_ns);
            self.no = self.no.min(other.no);
        }
        for s in std::mem::take(&mut other.streams) {
            if self.stream_idx(&s.key).is_none() {
                self.add_stream(s);
            }
        }
        self.order_streams();
        if let Some(theirs) = other.rare.take() {
            self.merge_rare(*theirs);
        }
    }

    /// Streams in the order a single table creates them: by first packet.
    fn order_streams(&mut self) {
        let mut streams = std::mem::take(&mut self.streams);
        streams.sort_by_key(|s| s.stats.summary().first_ns);
        if let Some(r) = &mut self.rare {
            r.stream_index = None;
        }
        for s in streams {
            self.add_stream(s);
        }
    }

    fn merge_rare(&mut self, theirs: super::Rare) {
        let rare = self.rare_mut();
        rare.rtcp_unmatched += theirs.rtcp_unmatched;
        for l in theirs.links {
            if !rare.links.contains(&l) {
                rare.links.push(l);
            }
        }
        for l in theirs.latched {
            if !rare.latched.contains(&l) {
                rare.latched.push(l);
            }
        }
        // Every copy counted the same capture loss (it is charged to all
        // open calls).
        rare.capture_loss = rare.capture_loss.max(theirs.capture_loss);
        for f in theirs.fax {
            if !rare.fax.iter().any(|g| (g.src, g.dst) == (f.src, f.dst)) {
                rare.fax.push(f);
            }
        }
        rare.fax.sort_by_key(|f| f.first_ns);
    }
}

/// The union of two copies' packet references: a reference in both (a SIP
/// packet) is kept once per occurrence, one in either (media) as it is.
/// Sorted by (time, position), the order the outputs read them in.
fn union_refs(mut a: Vec<(u64, PacketRef)>, mut b: Vec<(u64, PacketRef)>) -> Vec<(u64, PacketRef)> {
    a.sort_unstable();
    b.sort_unstable();
    union_sorted(&a, &b)
}

/// [`union_refs`] of two sorted lists.
fn union_sorted(a: &[(u64, PacketRef)], b: &[(u64, PacketRef)]) -> Vec<(u64, PacketRef)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(ts: u64, off: u64) -> (u64, PacketRef) {
        (ts, PacketRef::new(0, off))
    }

    /// SIP packets (in both copies, one of them twice: a TCP segment ending
    /// one message and starting the next) appear as often as in one copy;
    /// media packets (in one copy) once.
    #[test]
    fn union_keeps_shared_refs_once_per_occurrence() {
        let sip = [r(1, 10), r(5, 50), r(5, 50)];
        let mut a = sip.to_vec();
        a.extend([r(2, 20), r(4, 40)]);
        let mut b = sip.to_vec();
        b.extend([r(3, 30), r(6, 60)]);
        let got = union_refs(a, b);
        let want = vec![
            r(1, 10),
            r(2, 20),
            r(3, 30),
            r(4, 40),
            r(5, 50),
            r(5, 50),
            r(6, 60),
        ];
        assert_eq!(got, want);
    }
}
