//! SIP over TCP: reassembles one direction of a connection from captured
//! segments and frames messages by Content-Length (RFC 3261 section 18.3),
//! or, after an HTTP upgrade to WebSocket (RFC 7118), by WebSocket message.
//!
//! A passive tap sees retransmissions, lost segments and connections that
//! started before the capture, so the reassembler never trusts that the
//! buffer starts on a message boundary: after a gap (or at the very start)
//! it resyncs on the next SIP start line (or WebSocket frame starting one).

use super::message::{find_start, parse_stream};
use super::ws::{self, MAX_FRAME_HEADER, Upgrade, WsReader, WsStep};
use super::{MAX_START_LINE, SipError};
use crate::tcp_stream::{OrderedBytes, Pushed};

/// Buffered bytes per direction before giving up and resyncing. A complete
/// message larger than this cannot be framed anyway (see `MAX_BODY`); the
/// parser's hard cap on a header section (`MAX_OVERSIZED_SECTION`) is the
/// same, so every message that fits is framed.
pub(crate) const STREAM_CAP: usize = 256 * 1024;

/// Counters for one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Messages returned by `next_message`.
    pub messages: u64,
    /// Times the buffer was dropped (gap, overflow, unparsable data) and the
    /// reassembler went looking for the next start line.
    pub resyncs: u64,
    /// Bytes discarded without being part of a returned message.
    pub bytes_dropped: u64,
    /// Payload bytes ignored as retransmissions of data already seen.
    pub bytes_retransmitted: u64,
    /// WebSocket messages skipped because they were compressed
    /// (permessage-deflate).
    pub websocket_compressed: u64,
}

/// How messages are cut out of the byte stream.
#[derive(Debug)]
enum Framing {
    /// SIP text framed by Content-Length.
    Sip,
    /// One SIP message per WebSocket message.
    WebSocket(WsReader),
}

/// Reassembles and frames one TCP direction. See the module docs.
#[derive(Debug)]
pub struct StreamReassembler {
    bytes: OrderedBytes,
    /// Looking for a start line (at the start, or after a gap/overflow).
    resync: bool,
    framing: Framing,
    messages: u64,
    resyncs: u64,
}

impl Default for StreamReassembler {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamReassembler {
    pub fn new() -> Self {
        StreamReassembler {
            bytes: OrderedBytes::new(STREAM_CAP),
            // The capture may begin mid-message, so the first data is only
            // trusted from the first start line on.
            resync: true,
            framing: Framing::Sip,
            messages: 0,
            resyncs: 0,
        }
    }

    /// Feeds one TCP segment. In-order data is appended; bytes before the
    /// next expected sequence number (retransmissions) are trimmed; a gap
    /// drops the partial buffer and resyncs at the next SIP start line.
    pub fn push(&mut self, seq: u32, payload: &[u8]) {
        if self.bytes.push(seq, payload) == Pushed::Discontinuity {
            self.resyncs = self.resyncs.saturating_add(1);
            self.resync = true;
            if let Framing::WebSocket(r) = &mut self.framing {
                r.reset();
            }
        }
    }

    /// Whether this direction carries SIP over WebSocket (an upgrade or a
    /// frame carrying SIP was seen).
    pub fn is_websocket(&self) -> bool {
        matches!(self.framing, Framing::WebSocket(_))
    }

    /// Next complete message, or `None` until more data arrives. Call
    /// repeatedly after each `push`.
    pub fn next_message(&mut self) -> Option<&[u8]> {
        self.next_framed().map(|(m, _)| m)
    }

    /// Like [`Self::next_message`], with whether the message came in a
    /// WebSocket message (true) or framed by Content-Length.
    pub fn next_framed(&mut self) -> Option<(&[u8], bool)> {
        loop {
            if self.bytes.data().is_empty() || (self.resync && !self.resync_step()) {
                return None;
            }
            if self.resync {
                continue;
            }
            let range = match &mut self.framing {
                Framing::Sip => self.sip_step(),
                Framing::WebSocket(r) => match r.next(&mut self.bytes) {
                    WsStep::NeedMore => return None,
                    WsStep::Message if r.message().iter().all(u8::is_ascii_whitespace) => continue,
                    WsStep::Message => Step::WsMessage,
                    WsStep::Lost => {
                        r.reset();
                        self.lost();
                        continue;
                    }
                },
            };
            match range {
                Step::Wait => return None,
                Step::Again => continue,
                Step::Sip(from, to) => {
                    self.messages = self.messages.saturating_add(1);
                    return Some((self.bytes.take(from, to), false));
                }
                Step::WsMessage => {
                    self.messages = self.messages.saturating_add(1);
                    return match &self.framing {
                        Framing::WebSocket(r) => Some((r.message(), true)),
                        Framing::Sip => None,
                    };
                }
            }
        }
    }

    /// One Content-Length framed message at the start of the buffer.
    fn sip_step(&mut self) -> Step {
        let data = self.bytes.data();
        match parse_stream(data) {
            Ok(msg) => {
                let skipped = msg.len().saturating_sub(msg.raw().len());
                Step::Sip(skipped, msg.len())
            }
            Err(SipError::Incomplete) => {
                // Only keep-alive CRLFs: consume them (not "dropped").
                if data.iter().all(|b| *b == b'\r' || *b == b'\n') {
                    let n = data.len();
                    self.bytes.consume(n);
                }
                Step::Wait
            }
            Err(_) => {
                self.lost();
                Step::Again
            }
        }
    }

    /// Garbage where a message should start: skip one byte so the resync
    /// scan cannot find the same spot again.
    fn lost(&mut self) {
        self.resyncs = self.resyncs.saturating_add(1);
        self.bytes.discard(1);
        self.resync = true;
    }

    /// Looks for where messages start again; false when more data is
    /// needed first.
    fn resync_step(&mut self) -> bool {
        let data = self.bytes.data();
        if let Framing::Sip = self.framing {
            match ws::upgrade(data) {
                Upgrade::Yes { header_len, .. } => {
                    // The HTTP upgrade is used, not dropped.
                    self.bytes.consume(header_len);
                    self.framing = Framing::WebSocket(WsReader::default());
                    self.resync = false;
                    return true;
                }
                Upgrade::NeedMore => return false,
                Upgrade::No => {}
            }
        }
        let sip_at = match self.framing {
            Framing::Sip => find_start(data),
            Framing::WebSocket(_) => None,
        };
        // A capture that began after the upgrade: frames carrying SIP, seen
        // before any message was framed as plain SIP.
        let ws_at = match self.framing {
            Framing::WebSocket(_) => ws::find_frame_start(data, usize::MAX),
            Framing::Sip if self.messages == 0 => {
                ws::find_frame_start(data, sip_at.unwrap_or(usize::MAX))
            }
            Framing::Sip => None,
        };
        match (sip_at, ws_at) {
            (_, Some(p)) => {
                self.bytes.discard(p);
                if let Framing::Sip = self.framing {
                    self.framing = Framing::WebSocket(WsReader::default());
                }
                self.resync = false;
                true
            }
            (Some(p), None) => {
                self.bytes.discard(p);
                self.resync = false;
                true
            }
            (None, None) => {
                // Keep a tail that may hold a start line (or frame header
                // and the start of its payload) cut by the segment boundary.
                let keep = data.len().min(MAX_START_LINE + MAX_FRAME_HEADER);
                let drop = data.len() - keep;
                self.bytes.discard(drop);
                false
            }
        }
    }

    pub fn stats(&self) -> StreamStats {
        let b = self.bytes.stats();
        StreamStats {
            messages: self.messages,
            resyncs: self.resyncs,
            bytes_dropped: b.bytes_dropped,
            bytes_retransmitted: b.bytes_retransmitted,
            websocket_compressed: match &self.framing {
                Framing::WebSocket(r) => r.compressed(),
                Framing::Sip => 0,
            },
        }
    }

    /// Bytes currently buffered and not yet returned.
    pub fn buffered(&self) -> usize {
        self.bytes.data().len()
    }
}

/// What one framing step found.
enum Step {
    /// A SIP message at `data()[from..to]` (`from` skips keep-alive CRLFs).
    Sip(usize, usize),
    /// A WebSocket message, in the reader.
    WsMessage,
    Wait,
    Again,
}

#[cfg(test)]
mod tests {
    use super::*;

    const INV: &[u8] = include_bytes!("testdata/baresip_1.sip");
    const BYE: &[u8] = include_bytes!("testdata/baresip_912.sip");
    const V6: &[u8] = include_bytes!("testdata/v6_2.sip");

    fn drain(r: &mut StreamReassembler) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(m) = r.next_message() {
            out.push(m.to_vec());
        }
        out
    }

    #[test]
    fn several_messages_in_one_segment() {
        let mut r = StreamReassembler::new();
        let mut seg = INV.to_vec();
        seg.extend_from_slice(b"\r\n\r\n"); // keep-alive between messages
        seg.extend_from_slice(BYE);
        r.push(1000, &seg);
        assert_eq!(drain(&mut r), vec![INV.to_vec(), BYE.to_vec()]);
        let s = r.stats();
        assert_eq!((s.messages, s.resyncs, s.bytes_dropped), (2, 0, 0));
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn one_message_over_several_segments() {
        let mut r = StreamReassembler::new();
        let mut seq = 7u32;
        // 97-byte pieces cut inside the start line, headers and body.
        for (i, chunk) in V6.chunks(97).enumerate() {
            r.push(seq, chunk);
            seq = seq.wrapping_add(chunk.len() as u32);
            let got = r.next_message().map(<[u8]>::to_vec);
            if i + 1 < V6.len().div_ceil(97) {
                assert_eq!(got, None, "chunk {i}");
            } else {
                assert_eq!(got.as_deref(), Some(V6));
            }
        }
        let mut r = StreamReassembler::new();
        for (i, b) in INV.iter().enumerate() {
            r.push(
                (u32::MAX - 5).wrapping_add(i as u32),
                std::slice::from_ref(b),
            ); // wraps seq
            if i + 1 < INV.len() {
                assert!(r.next_message().is_none());
            }
        }
        assert_eq!(r.next_message(), Some(INV));
        assert_eq!(r.stats().resyncs, 0);
    }

    #[test]
    fn segment_with_end_of_one_and_start_of_next() {
        let mut all = INV.to_vec();
        all.extend_from_slice(BYE);
        let cut1 = INV.len() - 30;
        let cut2 = INV.len() + 40;
        let mut r = StreamReassembler::new();
        r.push(0, &all[..cut1]);
        assert!(r.next_message().is_none());
        r.push(cut1 as u32, &all[cut1..cut2]);
        assert_eq!(r.next_message(), Some(INV));
        assert!(r.next_message().is_none());
        r.push(cut2 as u32, &all[cut2..]);
        assert_eq!(r.next_message(), Some(BYE));
        assert!(r.next_message().is_none());
        assert_eq!(r.stats().messages, 2);
    }

    #[test]
    fn retransmitted_segments_are_trimmed() {
        let mut r = StreamReassembler::new();
        r.push(100, &INV[..200]);
        // Exact retransmission, then an overlapping one carrying new bytes.
        r.push(100, &INV[..200]);
        r.push(150, &INV[50..400]);
        r.push(400, &INV[300..]);
        r.push(300, &INV[200..]); // entirely old by now
        assert_eq!(r.next_message(), Some(INV));
        assert!(r.next_message().is_none());
        let s = r.stats();
        assert_eq!(s.resyncs, 0);
        assert_eq!(
            s.bytes_retransmitted,
            200 + 150 + 100 + (INV.len() as u64 - 200)
        );
    }

    #[test]
    fn gap_drops_partial_and_resyncs_at_next_start_line() {
        let mut all = INV.to_vec();
        all.extend_from_slice(BYE);
        let mut r = StreamReassembler::new();
        r.push(0, &all[..300]);
        assert!(r.next_message().is_none());
        // Segment [300..500) is lost; the next one starts mid-INVITE body and
        // carries the whole BYE after it.
        r.push(500, &all[500..]);
        assert_eq!(r.next_message(), Some(BYE));
        let s = r.stats();
        assert_eq!(s.resyncs, 1);
        assert_eq!(s.messages, 1);
        assert_eq!(s.bytes_dropped, 300 + (INV.len() as u64 - 500));
    }

    #[test]
    fn capture_starting_mid_message_resyncs() {
        let mut r = StreamReassembler::new();
        let mut seg = b"a=ptime:20\r\n".to_vec();
        seg.extend_from_slice(BYE);
        r.push(42, &seg);
        assert_eq!(r.next_message(), Some(BYE));
        assert_eq!(r.stats().bytes_dropped, 12);
    }

    #[test]
    fn content_length_beyond_data_waits() {
        let mut r = StreamReassembler::new();
        r.push(
            0,
            b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\n12345",
        );
        assert!(r.next_message().is_none());
        r.push(51, b"67890NEXT");
        assert_eq!(
            r.next_message(),
            Some(&b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\n1234567890"[..])
        );
        assert!(r.next_message().is_none());
    }

    #[test]
    fn http_and_junk_are_dropped_and_capped() {
        let mut r = StreamReassembler::new();
        r.push(0, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.next_message().is_none());
        assert_eq!(r.stats().messages, 0);
        // A flood of junk never grows the buffer past the cap.
        let junk = vec![0xAAu8; 100_000];
        let mut seq = 27u32;
        for _ in 0..10 {
            r.push(seq, &junk);
            seq = seq.wrapping_add(junk.len() as u32);
            assert!(r.next_message().is_none());
            assert!(r.buffered() <= STREAM_CAP);
        }
        r.push(seq, BYE);
        assert_eq!(r.next_message(), Some(BYE));
    }

    /// A message whose header section is past what SIP stacks take (but
    /// within what the reassembler buffers) is framed, not resynced over.
    #[test]
    fn oversized_header_section_is_framed() {
        let mut msg = b"INVITE sip:b@x SIP/2.0\r\n".to_vec();
        for i in 0..5000 {
            msg.extend_from_slice(format!("X-Pad-{i}: padding\r\n").as_bytes());
        }
        msg.extend_from_slice(b"Call-ID: big@x\r\nContent-Length: 0\r\n\r\n");
        assert!(msg.len() > crate::sip::MAX_HEADER_SECTION && msg.len() < STREAM_CAP);
        let mut r = StreamReassembler::new();
        let mut seq = 1u32;
        let mut got = Vec::new();
        for chunk in msg.chunks(1400).chain([BYE]) {
            r.push(seq, chunk);
            seq = seq.wrapping_add(chunk.len() as u32);
            got.extend(drain(&mut r));
        }
        assert_eq!(got, vec![msg.clone(), BYE.to_vec()]);
        assert_eq!(r.stats().bytes_dropped, 0);
    }

    #[test]
    fn missing_content_length_on_tcp_means_no_body() {
        let mut r = StreamReassembler::new();
        r.push(
            0,
            b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: 1\r\n\r\nSIP/2.0 200 OK\r\nCall-ID: 1\r\n\r\n",
        );
        assert_eq!(
            r.next_message(),
            Some(&b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: 1\r\n\r\n"[..])
        );
        assert_eq!(
            r.next_message(),
            Some(&b"SIP/2.0 200 OK\r\nCall-ID: 1\r\n\r\n"[..])
        );
        assert_eq!(r.next_message(), None);
    }
}

#[cfg(test)]
mod ws_tests {
    use super::*;
    use crate::wire::websocket::{Repr, opcode};

    const INV: &[u8] = include_bytes!("testdata/baresip_1.sip");
    const BYE: &[u8] = include_bytes!("testdata/baresip_912.sip");
    const UPGRADE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: x\r\nSec-WebSocket-Protocol: sip\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn frame(out: &mut Vec<u8>, fin: bool, op: u8, mask: Option<[u8; 4]>, p: &[u8]) {
        Repr {
            fin,
            opcode: op,
            mask,
            payload_len: p.len() as u64,
        }
        .append_with(out, p)
        .unwrap();
    }

    fn drain(r: &mut StreamReassembler) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(m) = r.next_message() {
            out.push(m.to_vec());
        }
        out
    }

    /// The upgrade, then INVITE masked in three fragments with a ping
    /// between them, then BYE whole, all cut into 50-byte segments; and the
    /// same stream in one segment.
    #[test]
    fn upgrade_fragments_control_frames_and_segmenting() {
        let key = Some([0x11, 0x22, 0x33, 0x44]);
        let mut s = UPGRADE.to_vec();
        let (a, rest) = INV.split_at(100);
        let (b, c) = rest.split_at(200);
        frame(&mut s, false, opcode::TEXT, key, a);
        frame(&mut s, false, opcode::CONTINUATION, key, b);
        frame(&mut s, true, opcode::PING, key, b"hi");
        frame(&mut s, true, opcode::CONTINUATION, key, c);
        frame(&mut s, true, opcode::BINARY, key, BYE);
        frame(&mut s, true, opcode::CLOSE, key, &[3, 232]);
        for size in [50, s.len()] {
            let mut r = StreamReassembler::new();
            let mut got = Vec::new();
            for (i, seg) in s.chunks(size).enumerate() {
                r.push((i * size) as u32, seg);
                got.extend(drain(&mut r));
            }
            assert!(r.is_websocket());
            assert_eq!(got, vec![INV.to_vec(), BYE.to_vec()], "segments of {size}");
            let st = r.stats();
            assert_eq!((st.messages, st.resyncs, st.bytes_dropped), (2, 0, 0));
            assert_eq!(r.buffered(), 0);
        }
    }

    #[test]
    fn capture_starting_after_the_upgrade_and_a_gap() {
        let mut s = Vec::new();
        frame(&mut s, true, opcode::TEXT, None, BYE);
        let first = s.len();
        frame(&mut s, true, opcode::TEXT, None, INV);
        let second = s.len();
        frame(&mut s, true, opcode::TEXT, None, BYE);
        let mut r = StreamReassembler::new();
        // Starts inside the first frame: its tail is dropped, the second is
        // found by its header and SIP start line.
        r.push(10, &s[10..first + 40]);
        assert!(r.next_message().is_none());
        r.push((first + 40) as u32, &s[first + 40..second - 20]);
        assert!(r.next_message().is_none());
        // Lost 10 bytes: the INVITE cannot complete; BYE is found again.
        r.push((second - 10) as u32, &s[second - 10..]);
        assert_eq!(drain(&mut r), vec![BYE.to_vec()]);
        assert!(r.is_websocket());
        assert_eq!(r.stats().resyncs, 1);
    }

    /// A compressed message (RSV1) between two plain ones is skipped and
    /// counted; framing carries on.
    #[test]
    fn compressed_messages_are_skipped() {
        let mut s = UPGRADE.to_vec();
        frame(&mut s, true, opcode::TEXT, None, INV);
        let at = s.len();
        frame(&mut s, false, opcode::TEXT, None, b"\x01\x02deflated");
        s[at] |= 0x40;
        frame(&mut s, true, opcode::CONTINUATION, None, b"more");
        frame(&mut s, true, opcode::TEXT, None, BYE);
        let mut r = StreamReassembler::new();
        r.push(0, &s);
        assert_eq!(drain(&mut r), vec![INV.to_vec(), BYE.to_vec()]);
        let st = r.stats();
        assert_eq!((st.websocket_compressed, st.resyncs), (1, 0));
    }

    #[test]
    fn plain_sip_after_http_that_is_no_upgrade() {
        let mut s = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        s.extend_from_slice(BYE);
        let mut r = StreamReassembler::new();
        r.push(0, &s);
        assert_eq!(drain(&mut r), vec![BYE.to_vec()]);
        assert!(!r.is_websocket());
    }
}
