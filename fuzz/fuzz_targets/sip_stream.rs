#![no_main]
//! Splits the input into TCP segments (with fuzzer-chosen sequence jumps, so
//! retransmissions and gaps happen) and drains the reassembler.

use libfuzzer_sys::fuzz_target;
use voxtap_proto::sip::StreamReassembler;

fuzz_target!(|data: &[u8]| {
    let mut r = StreamReassembler::new();
    let mut seq: u32 = 1000;
    let mut rest = data;
    // Each segment: [len byte][seq delta byte][payload...]
    while let [len, delta, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(n);
        // delta 0..=127 => forward jump (0 = in order), 128..=255 => backwards.
        let d = i32::from(*delta as i8);
        let s = seq.wrapping_add_signed(d);
        r.push(s, payload);
        seq = s.wrapping_add(n as u32);
        while let Some(m) = r.next_message() {
            assert!(!m.is_empty());
        }
        rest = next;
    }
    let _ = r.stats();
});
