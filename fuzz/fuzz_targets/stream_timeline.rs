//! Reads an arbitrary file as pcap/pcapng and charts every RTP stream in
//! it (the call page's quality series): the bucket arithmetic must hold for
//! any timestamps, sequence numbers and payload types.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use voxtap_proto::decode::{Decoder, FragLimits, L4};
use voxtap_proto::pcapio::PcapReader;
use voxtap_proto::rtp::RtpPacket;
use voxtap_engine::stream_timeline::{StreamKey, from_reader};

fuzz_target!(|data: &[u8]| {
    // The streams present, as the index would list them.
    let Ok(mut r) = PcapReader::new(Cursor::new(data)) else {
        return;
    };
    let mut d = Decoder::new(FragLimits::default());
    let mut keys: Vec<StreamKey> = Vec::new();
    let mut first_ts = None;
    for _ in 0..10_000 {
        let Ok(Some(p)) = r.next_packet() else { break };
        first_ts.get_or_insert(p.ts_ns);
        if let Ok(Some(g)) = d.decode(p.link, p.ts_ns, p.offset, p.data)
            && g.l4 == L4::Udp
            && let Ok(rtp) = RtpPacket::new_checked(g.payload)
            && keys.len() < 8
            && !keys.iter().any(|k| (k.src, k.dst, k.ssrc) == (g.src, g.dst, rtp.ssrc()))
        {
            // Clocks from 0 (no jitter) through odd rates to 48 kHz.
            let clock = [0, 999, 8000, 48_000][keys.len() % 4];
            keys.push(StreamKey { src: g.src, dst: g.dst, ssrc: rtp.ssrc(), clock_rate: clock });
        }
    }
    let Ok(r) = PcapReader::new(Cursor::new(data)) else {
        return;
    };
    let interval = 1 + u64::from(data.last().copied().unwrap_or(0)) * 10_000_000;
    if let Ok(series) = from_reader(r, &keys, first_ts.unwrap_or(0), interval) {
        for t in &series {
            assert!(t.buckets.len() <= voxtap_engine::stream_timeline::MAX_BUCKETS);
            assert_eq!(t.buckets.iter().map(|b| b.packets).sum::<u64>(), t.packets);
            assert_eq!(t.buckets.iter().map(|b| b.lost).sum::<i64>(), t.lost);
        }
    }
});
