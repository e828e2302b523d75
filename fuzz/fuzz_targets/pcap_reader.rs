//! Reads an arbitrary file as pcap/pcapng/snoop/NetMon, re-reads records
//! with read_at and decodes every packet.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use voxtap_proto::decode::{Decoder, FragLimits};
use voxtap_proto::pcapio::PcapReader;

fuzz_target!(|data: &[u8]| {
    let Ok(mut r) = PcapReader::new_seekable(Cursor::new(data)) else {
        return;
    };
    let mut d = Decoder::new(FragLimits::default());
    let mut offsets = Vec::new();
    // Each record consumes at least 12 bytes, so this loop is bounded by the
    // input size; the cap keeps one input cheap.
    for _ in 0..10_000 {
        match r.next_packet() {
            Ok(Some(p)) => {
                offsets.push(p.offset);
                let _ = d.decode(p.link, p.ts_ns, p.offset, p.data);
            }
            Ok(None) | Err(_) => break,
        }
    }
    for off in offsets.into_iter().rev().take(16) {
        let rec = r.read_at(off);
        assert!(rec.is_ok(), "read_at failed for an offset next_packet returned");
    }
    let _ = r.read_at(data.len() as u64 / 2);
    std::hint::black_box(r.bytes_read());
});
