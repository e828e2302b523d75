#![no_main]
//! The RPCAP message decoder on arbitrary bytes: every message in the input
//! is split off and decoded by type; nothing may panic, and a message that
//! decodes must say no more than the bytes hold.

use libfuzzer_sys::fuzz_target;
use voxtap_proto::rpcap::{self, Decoded};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok((m, r)) = rpcap::parse_message(rest) {
        assert!(m.payload.len() <= rest.len());
        if let Ok(Decoded::Packet(p)) = rpcap::decode(&m) {
            assert_eq!(p.data.len(), p.caplen as usize);
        }
        // Each parser also directly, whatever the header says.
        let _ = rpcap::parse_auth_reply(m.payload);
        let _ = rpcap::parse_findalldevs(m.header.value, m.payload);
        let _ = rpcap::parse_stats(m.payload);
        let _ = rpcap::parse_packet(m.payload);
        let _ = rpcap::parse_error(m.header.value, m.payload);
        if r.len() >= rest.len() {
            break;
        }
        rest = r;
    }
    let _ = rpcap::parse_findalldevs(u16::from_le_bytes([
        data.first().copied().unwrap_or(0),
        data.get(1).copied().unwrap_or(0),
    ]), data.get(2..).unwrap_or(&[]));
});
