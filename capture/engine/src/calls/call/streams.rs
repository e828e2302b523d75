//! What RTP and RTCP packets do to a call: its streams, their statistics
//! and what RTCP reports about them.

use std::net::SocketAddr;

use voxtap_proto::rtcp::{self, RtcpPacket};
use voxtap_proto::rtp::RtpPacket;
use voxtap_proto::stream_stats::StreamStats;

use super::{Call, PacketRef, RtcpView, Stream, StreamKey};
use crate::calls::orphans::OrphanRtp;

/// Only a stream's first packets are fingerprinted for leg linking.
pub(in crate::calls) const EARLY_PACKETS: u8 = 16;

/// What an RTP packet was to its stream.
pub(in crate::calls) struct RtpSeen {
    pub key: StreamKey,
    /// The packet started a new stream.
    pub is_new: bool,
    /// One of the stream's first packets.
    pub early: bool,
    /// [`crate::calls::legs::payload_hash`] of its payload (0 past the
    /// first packets: only those are compared).
    pub hash: u64,
}

impl Call {
    /// A media packet of this call (RTP, RTCP or anything else on its
    /// media ports): it belongs to the call's capture.
    pub(in crate::calls) fn note_media(&mut self, ts_ns: u64, refs: &[(u64, PacketRef)]) {
        self.last_ns = self.last_ns.max(ts_ns);
        self.packets.extend(refs);
    }

    /// An RTCP packet for m= line `media_idx`; `rtcp_like` when it looks
    /// like a compound RTCP packet. False when it is not RTCP after all.
    pub(in crate::calls) fn on_rtcp(
        &mut self,
        media_idx: usize,
        payload: &[u8],
        rtcp_like: bool,
    ) -> bool {
        // SRTCP keeps the first RTCP header in the clear but appends an
        // index and a tag, so the compound walk fails on it: the header
        // alone says it is RTCP.
        let srtp = self.media.get(media_idx).is_some_and(|m| m.is_srtp());
        if rtcp_like && !srtp {
            self.rtcp_packets += 1;
            self.note_rtcp(payload, true);
        } else if rtcp_header(payload) {
            self.rtcp_packets += 1;
        } else {
            return false;
        }
        true
    }

    /// RTCP of this call that another media worker owns (it counts the
    /// packet): its reports still update the streams this replica holds
    /// (parallel engine; a report names a stream by SSRC, whichever worker
    /// holds it).
    pub(in crate::calls) fn on_rtcp_elsewhere(&mut self, media_idx: usize, payload: &[u8]) {
        let srtp = self.media.get(media_idx).is_some_and(|m| m.is_srtp());
        if !srtp {
            self.note_rtcp(payload, false);
        }
    }

    /// An RTP packet from `src` to `dst`, an endpoint of m= line `media_idx`
    /// (None for media no SDP announced).
    pub(in crate::calls) fn on_rtp(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        media_idx: Option<usize>,
        ts_ns: u64,
        p: &RtpPacket<'_>,
    ) -> RtpSeen {
        self.rtp_packets += 1;
        let key = StreamKey::new(src, dst, p.ssrc());
        // One lookup for both "new?" and the stream (it was two per packet).
        let found = self.stream_idx(&key);
        let is_new = found.is_none();
        let idx = match found {
            Some(i) => i,
            None => {
                let stream = self.new_stream(key, media_idx, p.payload_type());
                self.add_stream(stream)
            }
        };
        let s = &mut self.streams[idx];
        s.stats.update(
            ts_ns,
            p.sequence(),
            p.timestamp(),
            p.payload_type(),
            p.payload().len(),
            p.marker(),
        );
        let early = s.early_packets < EARLY_PACKETS;
        let mut hash = 0;
        if early {
            s.early_packets += 1;
            hash = crate::calls::legs::payload_hash(p.payload());
        }
        RtpSeen {
            key,
            is_new,
            early,
            hash,
        }
    }

    /// A packet held before the SDP of m= line `media_idx` announced its
    /// endpoint (None: no SDP ever did, media-only).
    pub(in crate::calls) fn on_orphan(&mut self, media_idx: Option<usize>, o: &OrphanRtp) {
        self.last_ns = self.last_ns.max(o.ts_ns);
        self.packets.push((o.ts_ns, o.pref));
        if o.is_rtcp {
            self.rtcp_packets += 1;
            return;
        }
        self.rtp_packets += 1;
        let key = StreamKey::new(o.src, o.dst, o.ssrc);
        let s = self.stream_mut(key, media_idx, o.pt);
        s.stats.update(
            o.ts_ns,
            o.seq,
            o.rtp_ts,
            o.pt,
            o.payload_len as usize,
            o.marker,
        );
    }

    /// An RTCP packet of media no SDP announced.
    pub(in crate::calls) fn count_rtcp(&mut self) {
        self.rtcp_packets += 1;
    }

    /// Media-only record `rec` turns out to be this call's media on m= line
    /// `media_idx` (its SDP came later): its streams and packets move here.
    pub(in crate::calls) fn absorb_media_only(&mut self, media_idx: usize, rec: Call) {
        self.packets.absorb(rec.packets);
        self.rtp_packets += rec.rtp_packets;
        self.rtcp_packets += rec.rtcp_packets;
        self.last_ns = self.last_ns.max(rec.last_ns);
        for mut s in rec.streams {
            if self.stream_idx(&s.key).is_some() {
                continue;
            }
            s.set_media_idx(Some(media_idx));
            self.add_stream(s);
        }
    }

    /// The stream for `key`, created on first sight.
    fn stream_mut(&mut self, key: StreamKey, media_idx: Option<usize>, pt: u8) -> &mut Stream {
        let idx = match self.stream_idx(&key) {
            Some(i) => i,
            None => {
                let stream = self.new_stream(key, media_idx, pt);
                self.add_stream(stream)
            }
        };
        &mut self.streams[idx]
    }

    fn new_stream(&self, key: StreamKey, media_idx: Option<usize>, pt: u8) -> Stream {
        let rtpmap = media_idx
            .and_then(|m| self.media.get(m))
            .map_or(&[][..], |m| &m.rtpmap[..]);
        let clock_rate = rtpmap
            .iter()
            .find(|r| r.pt == pt)
            .map(|r| r.clock_rate)
            .or_else(|| voxtap_proto::rtp::static_codec(pt).map(|c| c.clock_rate))
            .unwrap_or(8000);
        let mut stats = StreamStats::new(clock_rate);
        // Jitter needs a dynamic PT's clock from the SDP that announced the
        // receiver, as in Wireshark: a PT it does not map has no jitter, nor
        // has telephone-event, whose timestamp stands still for a whole
        // event (RFC 4733).
        if !rtpmap.is_empty() {
            for dyn_pt in 96..=127u8 {
                let rate = rtpmap
                    .iter()
                    .find(|r| r.pt == dyn_pt)
                    .filter(|r| !r.encoding.eq_ignore_ascii_case("telephone-event"))
                    .map_or(0, |r| r.clock_rate);
                stats.set_pt_clock_rate(dyn_pt, rate);
            }
        }
        let mut s = Stream {
            key,
            stats,
            media: 0,
            rtcp: RtcpView::default(),
            sender_reports: 0,
            early_packets: 0,
        };
        s.set_media_idx(media_idx);
        s
    }

    /// Keep what RTCP says about the call's streams beside our own figures.
    /// `count_unmatched`: reports about SSRCs no stream has are counted
    /// (false in a replica that does not own the packet).
    fn note_rtcp(&mut self, payload: &[u8], count_unmatched: bool) {
        for pkt in rtcp::parse_compound(payload) {
            let Ok(pkt) = pkt else { break };
            let blocks = match pkt {
                RtcpPacket::SenderReport { ssrc, reports, .. } => {
                    for s in self.streams.iter_mut().filter(|s| s.key.ssrc == ssrc) {
                        s.sender_reports += 1;
                    }
                    reports
                }
                RtcpPacket::ReceiverReport { reports, .. } => reports,
                _ => continue,
            };
            for b in blocks {
                let mut found = false;
                for s in self.streams.iter_mut().filter(|s| s.key.ssrc == b.ssrc) {
                    s.rtcp.reports += 1;
                    s.rtcp.fraction_lost = b.fraction_lost;
                    s.rtcp.cumulative_lost = b.cumulative_lost;
                    s.rtcp.jitter_units = b.jitter;
                    found = true;
                }
                if !found && count_unmatched {
                    self.rare_mut().rtcp_unmatched += 1;
                }
            }
        }
    }
}

/// Version 2 and an RTCP packet type (SR, RR, SDES, BYE, APP, RTPFB, PSFB, XR).
fn rtcp_header(p: &[u8]) -> bool {
    matches!(p, [b0, b1, _, _, ..] if b0 >> 6 == 2 && (200..=207).contains(b1))
}
