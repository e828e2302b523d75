#![no_main]
//! SCTP chunks: the input is a packet's chunk area, walked and fed through
//! one association direction's reassembler with small bounds (so eviction
//! happens); the bounds must hold whatever arrives.

use libfuzzer_sys::fuzz_target;
use voxtap_proto::sctp::{SctpLimits, SctpReassembler};
use voxtap_proto::wire::sctp::{Chunks, Packet};

fuzz_target!(|data: &[u8]| {
    let _ = Packet::new_checked(data).map(|p| (p.verify_checksum(), p.payload().len()));
    let limits = SctpLimits {
        max_bytes: 4096,
        max_fragments: 16,
    };
    let mut r = SctpReassembler::new();
    // The same bytes three times, as three packets: retransmissions and
    // fragments that complete across packets.
    for pkt in 0..3u64 {
        for chunk in Chunks::new(data) {
            let Ok(chunk) = chunk else { break };
            if let Ok(d) = chunk.data()
                && let Some(m) = r.push(&d, pkt, pkt, &limits)
            {
                assert!(m.earlier.iter().all(|e| e.1 < pkt));
            }
            assert!(r.held_bytes() <= limits.max_bytes);
        }
    }
    let _ = r.stats();
});
