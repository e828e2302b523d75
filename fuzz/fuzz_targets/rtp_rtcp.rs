//! Feeds arbitrary bytes to the RTP view, the RTCP compound walker and the
//! stream statistics: none of them may panic, and the RTP view's slices must
//! stay consistent with its lengths.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxtap_proto::rtcp::{RtcpPacket, parse_compound, raw_packets};
use voxtap_proto::rtp::{RtpPacket, looks_like_rtcp, looks_like_rtp, static_codec};
use voxtap_proto::stream_stats::StreamStats;

fn rtp(data: &[u8]) {
    let _ = looks_like_rtp(data);
    let Ok(p) = RtpPacket::new_checked(data) else {
        return;
    };
    let fields = (
        p.version(),
        p.padding(),
        p.extension(),
        p.csrc_count(),
        p.marker(),
        p.payload_type(),
        p.sequence(),
        p.timestamp(),
        p.ssrc(),
    );
    std::hint::black_box(fields);
    assert_eq!(p.csrcs().count(), usize::from(p.csrc_count()));
    let _ = p.extension_header();
    let _ = static_codec(p.payload_type());
    // Header, payload and padding tile the datagram exactly.
    assert_eq!(
        p.header_len() + p.payload().len() + p.padding_len(),
        data.len()
    );
}

fn rtcp(data: &[u8]) {
    let _ = looks_like_rtcp(data);
    for raw in raw_packets(data) {
        std::hint::black_box(raw.ok());
    }
    for pkt in parse_compound(data) {
        let Ok(pkt) = pkt else { break };
        let _ = pkt.packet_type();
        match pkt {
            RtcpPacket::SenderReport { reports, .. }
            | RtcpPacket::ReceiverReport { reports, .. } => {
                let n = reports.len();
                assert_eq!(reports.count(), n);
            }
            RtcpPacket::SourceDescription(chunks) => {
                let _ = chunks.cname();
                for c in chunks {
                    for item in c.items {
                        std::hint::black_box(item);
                    }
                }
            }
            RtcpPacket::Goodbye { ssrcs, reason } => {
                std::hint::black_box((ssrcs.fold(0u32, u32::wrapping_add), reason));
            }
            other => {
                std::hint::black_box(other);
            }
        }
    }
}

/// Reads the input as 11-byte records (arrival ms, seq, ts, pt|marker) so the
/// statistics see arbitrary orders, duplicates, wraps and clock changes.
fn stats(data: &[u8]) {
    let Some((&clock_sel, rest)) = data.split_first() else {
        return;
    };
    let clocks = [0, 1, 999, 8000, 44_100, 48_000, 90_000, u32::MAX];
    let mut s = StreamStats::new(clocks[usize::from(clock_sel & 7)]);
    for (i, r) in rest.chunks_exact(11).enumerate() {
        let arrival = u64::from(u32::from_le_bytes([r[0], r[1], r[2], r[3]])) * 1_000_000;
        let seq = u16::from_le_bytes([r[4], r[5]]);
        let ts = u32::from_le_bytes([r[6], r[7], r[8], r[9]]);
        if i % 7 == 6 {
            s.set_pt_clock_rate(r[10], u32::from(r[4]) * 1000);
            s.set_clock_rate(u32::from(r[5]) * 1000);
        }
        s.update(
            arrival,
            seq,
            ts,
            r[10] & 0x7f,
            usize::from(r[4]),
            r[10] & 0x80 != 0,
        );
    }
    let sum = s.summary();
    assert!(sum.payload_types.len() <= 128);
    assert_eq!(sum.lost, sum.expected as i64 - sum.packets as i64);
}

fuzz_target!(|data: &[u8]| {
    rtp(data);
    rtcp(data);
    stats(data);
});
