//! Media seen before the SDP that announces its endpoint (early media, or a
//! capture that starts mid-setup). Held, bounded in count and age, and handed
//! to the call that later claims the endpoint, so those packets are not lost;
//! what no SDP claims in time becomes media-only (`media_only`).

use std::collections::HashMap;
use std::net::SocketAddr;

use super::call::PacketRef;
use voxtap_proto::rtp::{self, RtpPacket};

/// The parts of an RTP header the stream statistics need; the payload itself
/// stays in the capture file.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OrphanRtp {
    pub ts_ns: u64,
    pub pref: PacketRef,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub is_rtcp: bool,
    pub ssrc: u32,
    pub seq: u16,
    pub rtp_ts: u32,
    pub pt: u8,
    pub marker: bool,
    pub payload_len: u32,
}

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct OrphanStats {
    pub held: u64,
    pub expired: u64,
    pub dropped: u64,
}

pub(crate) struct Orphans {
    by_dst: HashMap<SocketAddr, Vec<OrphanRtp>>,
    count: usize,
    max: usize,
    max_age_ns: u64,
    stats: OrphanStats,
}

impl Orphans {
    pub fn new(max: usize, max_age_ns: u64) -> Self {
        Orphans {
            by_dst: HashMap::new(),
            count: 0,
            max,
            max_age_ns,
            stats: OrphanStats::default(),
        }
    }

    pub fn stats(&self) -> OrphanStats {
        self.stats
    }

    /// Hold one packet sent to `dst`; false when the cap is reached.
    fn hold(&mut self, dst: SocketAddr, o: OrphanRtp, _now_ns: u64) -> bool {
        if self.count >= self.max {
            self.stats.dropped += 1;
            return false;
        }
        self.by_dst.entry(dst).or_default().push(o);
        self.count += 1;
        self.stats.held += 1;
        true
    }

    /// A datagram from `src` to `dst` that no call claims yet, held once per
    /// packet that carried it. False when it is neither RTP nor RTCP, or
    /// nothing could be held.
    pub fn hold_datagram(
        &mut self,
        payload: &[u8],
        src: SocketAddr,
        dst: SocketAddr,
        refs: &[(u64, PacketRef)],
        now_ns: u64,
    ) -> bool {
        let is_rtcp = rtp::looks_like_rtcp(payload);
        let header = if is_rtcp {
            None
        } else if rtp::looks_like_rtp(payload) {
            RtpPacket::new_checked(payload).ok()
        } else {
            None
        };
        if !is_rtcp && header.is_none() {
            return false;
        }
        let mut held = false;
        for &(ts, pref) in refs {
            let o = OrphanRtp {
                ts_ns: ts,
                pref,
                src,
                dst,
                is_rtcp,
                ssrc: header.as_ref().map_or(0, |p| p.ssrc()),
                seq: header.as_ref().map_or(0, |p| p.sequence()),
                rtp_ts: header.as_ref().map_or(0, |p| p.timestamp()),
                pt: header.as_ref().map_or(0, |p| p.payload_type()),
                marker: header.as_ref().is_some_and(|p| p.marker()),
                payload_len: header.as_ref().map_or(0, |p| p.payload().len() as u32),
            };
            held |= self.hold(dst, o, now_ns);
        }
        held
    }

    /// Everything held for `dst`, oldest first.
    pub fn claim(&mut self, dst: SocketAddr) -> Vec<OrphanRtp> {
        match self.by_dst.remove(&dst) {
            Some(v) => {
                self.count -= v.len();
                v
            }
            None => Vec::new(),
        }
    }

    /// What is held for `dst` and came after `after` (capture time, packet),
    /// oldest first; what came before stays held.
    pub fn claim_after(&mut self, dst: SocketAddr, after: (u64, PacketRef)) -> Vec<OrphanRtp> {
        let Some(v) = self.by_dst.get_mut(&dst) else {
            return Vec::new();
        };
        let (taken, kept): (Vec<_>, Vec<_>) = v.drain(..).partition(|o| (o.ts_ns, o.pref) > after);
        *v = kept;
        if v.is_empty() {
            self.by_dst.remove(&dst);
        }
        self.count -= taken.len();
        taken
    }

    /// Takes what is held for `dst` of the datagram carried by `refs` (a
    /// replica takes it whole from its log, `table/unclaimed.rs`); how
    /// many packets that was.
    pub fn take_datagram(&mut self, dst: SocketAddr, refs: &[(u64, PacketRef)]) -> usize {
        let Some(v) = self.by_dst.get_mut(&dst) else {
            return 0;
        };
        let before = v.len();
        v.retain(|o| !refs.contains(&(o.ts_ns, o.pref)));
        let taken = before - v.len();
        if v.is_empty() {
            self.by_dst.remove(&dst);
        }
        self.count -= taken;
        taken
    }

    /// Moves what is older than the age limit (no SDP claimed it in time)
    /// into `out`, oldest first per destination.
    pub fn expire(&mut self, now_ns: u64, out: &mut Vec<OrphanRtp>) {
        let limit = now_ns.saturating_sub(self.max_age_ns);
        let before = out.len();
        self.by_dst.retain(|_, v| {
            let keep = v.iter().position(|o| o.ts_ns >= limit).unwrap_or(v.len());
            out.extend(v.drain(..keep));
            !v.is_empty()
        });
        // In capture order, not the map's (random) order: the streams of
        // the media-only records they make are created in this order, and
        // the first one names the record's folder.
        out[before..].sort_by_key(|o| (o.ts_ns, o.pref));
        let expired = out.len() - before;
        self.count -= expired;
        self.stats.expired += expired as u64;
    }
}
