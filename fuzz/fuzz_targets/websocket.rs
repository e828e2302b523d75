#![no_main]
//! SIP over WebSocket: an HTTP upgrade, then the input as TCP segments (as
//! in sip_stream: [len][seq delta][payload]...) framed as WebSocket
//! messages; also every frame view over the raw input.

use libfuzzer_sys::fuzz_target;
use voxtap_proto::sip::{StreamReassembler, looks_like_sip_over_websocket};
use voxtap_proto::wire::websocket::{Frame, Repr};

const UPGRADE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Protocol: sip\r\n\r\n";

fuzz_target!(|data: &[u8]| {
    let _ = looks_like_sip_over_websocket(data);
    if let Ok(f) = Frame::new_checked(data) {
        let r = Repr::parse(&f);
        assert_eq!(r.payload_len as usize, f.frame_len() - f.header_len());
        let mut out = Vec::new();
        f.unmask_into(&mut out);
        assert_eq!(out.len(), r.payload_len as usize);
    }
    let mut r = StreamReassembler::new();
    r.push(1, UPGRADE);
    let mut seq = 1u32.wrapping_add(UPGRADE.len() as u32);
    let mut rest = data;
    while let [len, delta, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(n);
        let s = seq.wrapping_add_signed(i32::from(*delta as i8));
        r.push(s, payload);
        seq = s.wrapping_add(n as u32);
        while let Some(m) = r.next_message() {
            assert!(!m.is_empty());
        }
        rest = next;
    }
    let _ = r.stats();
});
