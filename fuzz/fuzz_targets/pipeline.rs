//! The whole packet path on arbitrary frames: decode, SIP/TCP framing, SDP,
//! the call table and RTP/RTCP attribution must never panic, whatever the
//! bytes. The input is split into frames by a 2-byte length prefix so one
//! input drives a sequence of packets (a call set up, then media).
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxtap_engine::calls::PacketRef;
use voxtap_proto::pcapio::LinkType;
use voxtap_engine::pipeline::{Pipeline, PipelineConfig};

fuzz_target!(|data: &[u8]| {
    let mut p = Pipeline::new(PipelineConfig::default());
    let mut rest = data;
    let mut ts = 1_000_000_000u64;
    let mut n = 0u64;
    while rest.len() >= 3 {
        let link = match rest[0] % 4 {
            0 => LinkType::Ethernet,
            1 => LinkType::Raw,
            2 => LinkType::LinuxSll,
            _ => LinkType::Null,
        };
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let frame = &rest[3..3 + len];
        rest = &rest[3 + len..];
        ts += u64::from(rest.first().copied().unwrap_or(0)) * 10_000_000;
        p.process(link, ts, PacketRef::new(0, n), frame);
        n += 1;
    }
    p.finish();
    let _ = p.drain_ended();
});
