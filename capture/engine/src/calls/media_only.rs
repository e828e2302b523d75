//! Media without signalling: RTP that the heuristic found but no SDP claimed
//! (SIP encrypted without keys, or a media capture whose SIP file is not
//! given). Each pair of endpoints is one record (a [`Call`] marked media-only,
//! without Call-ID or dialog) with its streams, statistics and packets, so
//! the outputs treat it like a call: streams.csv rows with an empty call, a
//! folder with its pcap and audio, an index entry. A later SDP naming one of
//! its endpoints joins it to that call. Bounded in records and closed when
//! idle.

use std::collections::HashMap;
use std::net::SocketAddr;

use voxtap_proto::rtp::{self, RtpPacket};

use super::call::{Call, PacketRef};
use super::orphans::OrphanRtp;

/// The two endpoints of a conversation, in a fixed order, RTCP's odd port
/// folded onto its RTP port so both land in one record.
type Pair = (SocketAddr, SocketAddr);

fn pair(a: SocketAddr, b: SocketAddr) -> Pair {
    let fold = |mut x: SocketAddr| {
        x.set_port(x.port() & !1);
        x
    };
    let (a, b) = (fold(a), fold(b));
    if a <= b { (a, b) } else { (b, a) }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct MediaOnlyStats {
    /// Records opened (pairs of endpoints).
    pub records: u64,
    /// Packets not kept because the record cap was reached.
    pub dropped: u64,
    /// Records joined to a call whose SDP came later.
    pub joined: u64,
}

pub(super) struct MediaOnly {
    by_pair: HashMap<Pair, Call>,
    /// Endpoint -> the pairs it is in, so an SDP naming it finds them.
    by_endpoint: HashMap<SocketAddr, Vec<Pair>>,
    max_records: usize,
    idle_ns: u64,
    stats: MediaOnlyStats,
    /// Where records spill their older packet references.
    spill: Option<super::Spill>,
    /// Records keep their packet references (`CallConfig::keep_packet_refs`).
    keep_refs: bool,
}

impl MediaOnly {
    pub fn new(max_records: usize, idle_ns: u64) -> Self {
        MediaOnly {
            by_pair: HashMap::new(),
            by_endpoint: HashMap::new(),
            max_records,
            idle_ns,
            stats: MediaOnlyStats::default(),
            spill: None,
            keep_refs: true,
        }
    }

    /// Records spill their older packet references to `spill`; with
    /// `!keep_refs` they keep none.
    pub fn spill_to(&mut self, spill: Option<super::Spill>, keep_refs: bool) {
        self.spill = spill;
        self.keep_refs = keep_refs;
    }

    pub fn stats(&self) -> MediaOnlyStats {
        self.stats
    }

    #[cfg(test)]
    pub fn open_records(&self) -> usize {
        self.by_pair.len()
    }

    /// The record of the pair `src`-`dst`; opened (numbered `*open`, which
    /// then moves on) when `open` is given, unless the cap is reached.
    fn record(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        ts_ns: u64,
        open: Option<&mut u64>,
    ) -> Option<&mut Call> {
        let key = pair(src, dst);
        if !self.by_pair.contains_key(&key) {
            let next_no = open?;
            if self.by_pair.len() >= self.max_records {
                self.stats.dropped += 1;
                return None;
            }
            let mut rec = Call::media_only(*next_no, ts_ns, key);
            rec.spill_to(self.spill.clone(), self.keep_refs);
            self.by_pair.insert(key, rec);
            *next_no += 1;
            self.stats.records += 1;
            for ep in [key.0, key.1] {
                self.by_endpoint.entry(ep).or_default().push(key);
            }
        }
        self.by_pair.get_mut(&key)
    }

    /// A held packet no SDP claimed in time: it opens (or joins) the record
    /// of its endpoints.
    pub fn take_orphan(&mut self, o: &OrphanRtp, next_no: &mut u64) {
        if let Some(rec) = self.record(o.src, o.dst, o.ts_ns, Some(next_no)) {
            rec.on_orphan(None, o);
        }
    }

    /// A datagram between endpoints that already have a record: counted
    /// there directly. False when they have none (or it is not RTP/RTCP).
    pub fn on_datagram(
        &mut self,
        ts_ns: u64,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
        refs: &[(u64, PacketRef)],
    ) -> bool {
        let rtcp = rtp::looks_like_rtcp(payload);
        let rtp = (!rtcp && rtp::looks_like_rtp(payload))
            .then(|| RtpPacket::new_checked(payload).ok())
            .flatten();
        if !rtcp && rtp.is_none() {
            return false;
        }
        let Some(rec) = self.record(src, dst, ts_ns, None) else {
            return false;
        };
        rec.note_media(ts_ns, refs);
        match rtp {
            Some(p) => {
                rec.on_rtp(src, dst, None, ts_ns, &p);
            }
            None => rec.count_rtcp(),
        }
        true
    }

    /// An SDP now names `ep`: the records it is in leave media-only, for
    /// the call to take over.
    pub fn claim(&mut self, ep: SocketAddr) -> Vec<Call> {
        let Some(pairs) = self.by_endpoint.get(&ep).cloned() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for key in pairs {
            if let Some(rec) = self.remove(key) {
                self.stats.joined += 1;
                out.push(rec);
            }
        }
        out
    }

    fn remove(&mut self, key: Pair) -> Option<Call> {
        let rec = self.by_pair.remove(&key)?;
        for ep in [key.0, key.1] {
            if let Some(v) = self.by_endpoint.get_mut(&ep) {
                v.retain(|p| *p != key);
                if v.is_empty() {
                    self.by_endpoint.remove(&ep);
                }
            }
        }
        Some(rec)
    }

    /// Records idle at `now_ns` (all of them with `u64::MAX`), closed, in
    /// start order.
    /// The records due at `now_ns` (idle) into `due`, the others into
    /// `live` (parallel engine: a record closes once due in every replica
    /// holding a part of it).
    pub fn due_pairs(&self, now_ns: u64, due: &mut Vec<Pair>, live: &mut Vec<Pair>) {
        for (k, c) in &self.by_pair {
            if c.last_ns().saturating_add(self.idle_ns) <= now_ns {
                due.push(*k);
            } else {
                live.push(*k);
            }
        }
    }

    /// Closes the records of `pairs` this table holds, oldest first (as
    /// [`Self::expire`]).
    pub fn expire_pairs(&mut self, pairs: &std::collections::HashSet<Pair>) -> Vec<Call> {
        let done: Vec<Pair> = self
            .by_pair
            .keys()
            .filter(|k| pairs.contains(*k))
            .copied()
            .collect();
        let mut out: Vec<Call> = done.into_iter().filter_map(|k| self.remove(k)).collect();
        out.sort_by_key(|c| (c.start_ns(), c.no()));
        out
    }

    pub fn expire(&mut self, now_ns: u64) -> Vec<Call> {
        let idle = self.idle_ns;
        let done: Vec<Pair> = self
            .by_pair
            .iter()
            .filter(|(_, c)| now_ns == u64::MAX || c.last_ns().saturating_add(idle) <= now_ns)
            .map(|(k, _)| *k)
            .collect();
        let mut out: Vec<Call> = done.into_iter().filter_map(|k| self.remove(k)).collect();
        out.sort_by_key(|c| (c.start_ns(), c.no()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0x08];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend_from_slice(&[0xd5; 160]);
        p
    }

    /// Both directions and the RTCP port land in one record; the cap is
    /// kept; an SDP naming an endpoint takes the record away.
    #[test]
    fn one_record_per_pair_capped_and_claimed() {
        let a: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        let mut m = MediaOnly::new(1, 1_000_000_000);
        let mut no = 1;
        let o = OrphanRtp {
            ts_ns: 1,
            pref: PacketRef(0),
            src: a,
            dst: b,
            is_rtcp: false,
            ssrc: 0x1234_5678,
            seq: 0,
            rtp_ts: 0,
            pt: 8,
            marker: false,
            payload_len: 160,
        };
        m.take_orphan(&o, &mut no);
        assert!(m.on_datagram(2, b, a, &rtp(7), &[(2, PacketRef(1))]));
        let mut rtcp_ep = b;
        rtcp_ep.set_port(5001);
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 1];
        assert!(m.on_datagram(3, a, rtcp_ep, &rr, &[(3, PacketRef(2))]));
        // Another pair: over the cap of one record.
        let c: SocketAddr = "10.0.0.3:6000".parse().unwrap();
        m.take_orphan(&OrphanRtp { dst: c, ..o }, &mut no);
        assert_eq!(m.stats().dropped, 1);
        assert!(!m.on_datagram(4, a, c, &rtp(1), &[]));
        let recs = m.claim(b);
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        assert!(r.is_media_only());
        assert_eq!((r.rtp_packets(), r.rtcp_packets()), (2, 1));
        assert_eq!(r.streams().len(), 2);
        assert_eq!(m.open_records(), 0);
        assert!(m.expire(u64::MAX).is_empty());
    }
}
