//! Quality over time: per-interval packets, losses and jitter of each RTP
//! stream of a call, rebuilt from the call's own PCAP when asked for.
//!
//! Nothing is stored: a call's PCAP is small (a 10-minute G.711 call is about
//! 60 000 packets, read in tens of milliseconds) while a per-second series for
//! every stream of every call would grow the index by more than the rest of
//! it. The figures come from the same [`StreamStats`] that fills the index,
//! fed the same packets, so the intervals add up to the stream's totals:
//! the sum of per-interval losses is the stream's `lost`, and the largest
//! per-interval jitter is its (Wireshark-compatible) maximum jitter.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use serde::Serialize;

use voxtap_proto::decode::{Decoder, L4};
use voxtap_proto::pcapio::{PcapError, PcapReader};
use voxtap_proto::rtp::{RtpPacket, looks_like_rtcp, static_codec};
use voxtap_proto::stream_stats::StreamStats;

/// Most intervals a series has (a day of seconds); callers choose the
/// interval so a call fits.
pub const MAX_BUCKETS: usize = 86_400;

/// Comfort-noise payload types: Wireshark leaves them (and the packet after
/// them) out of the jitter extremes, and so does [`StreamStats`].
const PT_CN: u8 = 13;
const PT_CN_OLD: u8 = 19;

/// Which stream to follow: its 5-tuple (UDP) and SSRC, and the RTP clock of
/// its payload type (0 = unknown: no jitter).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamKey {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub ssrc: u32,
    pub clock_rate: u32,
}

/// One interval of one stream.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Bucket {
    /// Packets received in the interval (duplicates included).
    pub packets: u64,
    /// Sequence numbers the interval advanced over minus packets received:
    /// negative when duplicates or late packets outnumber gaps.
    pub lost: i64,
    /// Largest RFC 3550 interarrival jitter among the interval's regular
    /// packets (Wireshark's rule: no marker, not comfort noise or right after
    /// it), in ms; None when the interval had none.
    pub max_jitter_ms: Option<f64>,
}

/// One stream's series: bucket `i` covers
/// `[start_ns + i * interval_ns, start_ns + (i + 1) * interval_ns)`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Timeline {
    pub buckets: Vec<Bucket>,
    pub packets: u64,
    pub expected: u64,
    pub lost: i64,
    pub max_jitter_ms: f64,
}

/// The series of every stream in `keys`, same order, over intervals of
/// `interval_ns` from `start_ns` (usually the call's start, so the streams
/// of a call line up). Packets before `start_ns` count in the first bucket.
pub fn from_pcap(
    pcap: &Path,
    keys: &[StreamKey],
    start_ns: u64,
    interval_ns: u64,
) -> Result<Vec<Timeline>, PcapError> {
    from_reader(crate::pcapfile::open(pcap)?, keys, start_ns, interval_ns)
}

/// [`from_pcap`] over any pcap/pcapng reader.
pub fn from_reader<R: std::io::Read>(
    mut reader: PcapReader<R>,
    keys: &[StreamKey],
    start_ns: u64,
    interval_ns: u64,
) -> Result<Vec<Timeline>, PcapError> {
    let interval_ns = interval_ns.max(1);
    let mut decoder = Decoder::new(Default::default());
    let mut by_key: HashMap<(SocketAddr, SocketAddr, u32), usize> = HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        by_key.entry((k.src, k.dst, k.ssrc)).or_insert(i);
    }
    let mut state: Vec<Follow> = keys.iter().map(|k| Follow::new(k.clock_rate)).collect();
    let mut pkt_ref = 0u64;
    while let Some(rec) = reader.next_packet()? {
        pkt_ref += 1;
        let Ok(Some(d)) = decoder.decode(rec.link, rec.ts_ns, pkt_ref, rec.data) else {
            continue;
        };
        if d.l4 != L4::Udp || looks_like_rtcp(d.payload) {
            continue;
        }
        let Ok(rtp) = RtpPacket::new_checked(d.payload) else {
            continue;
        };
        let Some(&i) = by_key.get(&(d.src, d.dst, rtp.ssrc())) else {
            continue;
        };
        // A wild timestamp must not size the series: the rest goes in the
        // last bucket.
        let bucket = usize::try_from(rec.ts_ns.saturating_sub(start_ns) / interval_ns)
            .unwrap_or(usize::MAX)
            .min(MAX_BUCKETS - 1);
        state[i].packet(bucket, rec.ts_ns, &rtp);
    }
    Ok(state.into_iter().map(Follow::finish).collect())
}

/// The RTP clock of `pt` for a stream: the SDP's rtpmap (`rtpmaps`: pt ->
/// clock from every SDP of the call), else RFC 3551's table, else 8000, as
/// the call tracker chooses it.
pub fn clock_rate(pt: u8, rtpmaps: &HashMap<u8, u32>) -> u32 {
    rtpmaps
        .get(&pt)
        .copied()
        .or_else(|| static_codec(pt).map(|c| c.clock_rate))
        .unwrap_or(8000)
}

/// pt -> clock of every `a=rtpmap` in the SDP bodies of `sip_texts` (whole
/// SIP messages); 0 for telephone-event.
pub fn rtpmaps<'a>(sip_texts: impl IntoIterator<Item = &'a str>) -> HashMap<u8, u32> {
    let mut m = HashMap::new();
    for t in sip_texts {
        let Some((_, body)) = t.split_once("\r\n\r\n").or_else(|| t.split_once("\n\n")) else {
            continue;
        };
        if let Ok(sdp) = voxtap_proto::sdp::parse(body.as_bytes()) {
            for media in &sdp.media {
                for r in &media.rtpmap {
                    // RFC 4733 events keep one timestamp for a whole event
                    // (2.2.1): Wireshark computes no jitter for them.
                    let clock = if r.encoding.eq_ignore_ascii_case("telephone-event") {
                        0
                    } else {
                        r.clock_rate
                    };
                    m.entry(r.pt).or_insert(clock);
                }
            }
        }
    }
    m
}

struct Follow {
    stats: StreamStats,
    buckets: Vec<Bucket>,
    /// `expected` when the current bucket opened.
    expected_at_open: u64,
    started: bool,
    first_ts: u32,
    last_pt: u8,
    current: usize,
}

impl Follow {
    fn new(clock: u32) -> Self {
        Follow {
            stats: StreamStats::new(clock),
            buckets: Vec::new(),
            expected_at_open: 0,
            started: false,
            first_ts: 0,
            last_pt: 0,
            current: 0,
        }
    }

    /// Settles the current bucket's loss: the sequence numbers it advanced
    /// over minus the packets it received.
    fn settle_current(&mut self) {
        let expected = self.stats.summary().expected;
        if let Some(b) = self.buckets.get_mut(self.current) {
            b.lost = i64::try_from(expected.saturating_sub(self.expected_at_open))
                .unwrap_or(i64::MAX)
                .saturating_sub(i64::try_from(b.packets).unwrap_or(i64::MAX));
        }
        self.expected_at_open = expected;
    }

    fn close_until(&mut self, bucket: usize) {
        if bucket <= self.current && !self.buckets.is_empty() {
            return;
        }
        self.settle_current();
        // Late packets of an earlier interval are counted in the current one.
        self.current = bucket.max(self.current);
        let want = self.current.saturating_add(1).min(MAX_BUCKETS);
        if self.buckets.len() < want {
            self.buckets.resize(want, Bucket::default());
        }
    }

    fn packet(&mut self, bucket: usize, ts_ns: u64, rtp: &RtpPacket<'_>) {
        self.close_until(bucket);
        let pt = rtp.payload_type() & 0x7f;
        let ts = rtp.timestamp();
        // The same "regular packet" rule as StreamStats' maximum jitter.
        let regular = if self.started {
            let since_first = ts.wrapping_sub(self.first_ts);
            let in_time_sequence = if ts >= self.first_ts {
                since_first < 0x8000_0000
            } else {
                since_first <= 0x8000_0000
            };
            let cn = |p: u8| p == PT_CN || p == PT_CN_OLD;
            !rtp.marker()
                && !cn(pt)
                && !cn(self.last_pt)
                && in_time_sequence
                && self.stats.clock_rate_for(pt) / 1000 != 0
        } else {
            self.started = true;
            self.first_ts = ts;
            false
        };
        self.stats.update(
            ts_ns,
            rtp.sequence(),
            ts,
            pt,
            rtp.payload().len(),
            rtp.marker(),
        );
        self.last_pt = pt;
        let idx = self.current.min(self.buckets.len().saturating_sub(1));
        if let Some(b) = self.buckets.get_mut(idx) {
            b.packets += 1;
            if regular {
                let j = self.stats.jitter_ms();
                b.max_jitter_ms = Some(b.max_jitter_ms.map_or(j, |m: f64| m.max(j)));
            }
        }
    }

    fn finish(mut self) -> Timeline {
        self.settle_current();
        let s = self.stats.summary();
        Timeline {
            buckets: self.buckets,
            packets: s.packets,
            expected: s.expected,
            lost: s.lost,
            max_jitter_ms: s.max_jitter_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, ts: u32, marker: bool) -> Vec<u8> {
        let mut p = vec![0x80, if marker { 0x88 } else { 0x08 }];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend_from_slice(&[0xd5; 160]);
        p
    }

    #[test]
    fn the_last_possible_bucket_is_kept() {
        // Found by fuzzing: packets clamped into bucket MAX_BUCKETS - 1
        // were dropped by the final close.
        let mut f = Follow::new(8000);
        for i in 0u16..5 {
            let p = rtp(i, u32::from(i) * 160, false);
            let p = RtpPacket::new_checked(&p).unwrap();
            f.packet(MAX_BUCKETS - 1, u64::from(i) * 20_000_000, &p);
        }
        let tl = f.finish();
        assert_eq!(tl.buckets.len(), MAX_BUCKETS);
        assert_eq!(tl.buckets[MAX_BUCKETS - 1].packets, 5);
        assert_eq!(tl.buckets.iter().map(|b| b.packets).sum::<u64>(), 5);
    }

    #[test]
    fn buckets_add_up_to_the_stream_totals() {
        // 20 ms PCMA for 3 s with seq 60..=69 lost and a late packet.
        let mut f = Follow::new(8000);
        let s = 1_000_000_000u64;
        for i in 0u16..150 {
            if (60..70).contains(&i) {
                continue;
            }
            let t = u64::from(i) * 20_000_000 + u64::from(i % 3) * 1_000_000;
            let p = rtp(i, u32::from(i) * 160, i == 0);
            let p = RtpPacket::new_checked(&p).unwrap();
            f.packet((t / s) as usize, t, &p);
        }
        let tl = f.finish();
        assert_eq!(tl.buckets.len(), 3);
        assert_eq!(tl.packets, 140);
        assert_eq!(tl.lost, 10);
        assert_eq!(tl.buckets.iter().map(|b| b.packets).sum::<u64>(), 140);
        assert_eq!(tl.buckets.iter().map(|b| b.lost).sum::<i64>(), 10);
        // seq 60..69 are the packets of 1.2 s .. 1.4 s.
        assert_eq!(tl.buckets[1].lost, 10);
        let max = tl
            .buckets
            .iter()
            .filter_map(|b| b.max_jitter_ms)
            .fold(0.0, f64::max);
        assert!(
            (max - tl.max_jitter_ms).abs() < 1e-9,
            "{max} vs {}",
            tl.max_jitter_ms
        );
        assert!(tl.max_jitter_ms > 0.0);
    }
}
