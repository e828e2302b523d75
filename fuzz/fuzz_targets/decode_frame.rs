//! Feeds arbitrary frames through one Decoder (so fragment state carries
//! between frames). Input: byte 0 picks the link type, then frames each
//! prefixed by a 2-byte length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxtap_proto::decode::{Decoder, FragLimits};
use voxtap_proto::pcapio::LinkType;

const LINKS: [LinkType; 8] = [
    LinkType::Null,
    LinkType::Ethernet,
    LinkType::Raw,
    LinkType::Loop,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::Ipv4,
    LinkType::Ipv6,
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, mut rest)) = data.split_first() else {
        return;
    };
    let link = LINKS[usize::from(sel) % LINKS.len()];
    // Small limits so eviction and timeouts are reached quickly.
    let mut d = Decoder::new(FragLimits {
        max_bytes: 8192,
        max_datagrams: 4,
        timeout_ns: 1000,
    });
    let mut ts = 0u64;
    while let [a, b, tail @ ..] = rest {
        let n = usize::from(u16::from_be_bytes([*a, *b])).min(tail.len());
        let (frame, next) = tail.split_at(n);
        ts += u64::from(sel >> 3) * 100;
        if let Ok(Some(g)) = d.decode(link, ts, ts, frame) {
            // Touch everything the caller would.
            std::hint::black_box((g.src, g.dst, g.l4, g.payload.len(), g.vlan, g.fragments.len()));
        }
        rest = next;
    }
    std::hint::black_box(d.stats());
});
