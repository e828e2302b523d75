//! SIP over TCP: reassembles one direction of a connection from captured
//! segments and frames messages by Content-Length (RFC 3261 section 18.3).
//!
//! A passive tap sees retransmissions, lost segments and connections that
//! started before the capture, so the reassembler never trusts that the
//! buffer starts on a message boundary: after a gap (or at the very start)
//! it resyncs on the next SIP start line.

use super::message::{find_start, parse_stream};
use super::{MAX_START_LINE, SipError};

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
}

/// Reassembles and frames one TCP direction. See the module docs.
#[derive(Debug)]
pub struct StreamReassembler {
    buf: Vec<u8>,
    /// Bytes at the front of `buf` already handed out or dropped; compacted
    /// lazily so `next_message` can return a slice into `buf`.
    consumed: usize,
    /// Length of the message returned by the last `next_message`, consumed
    /// on the next call (the caller holds a borrow until then).
    pending: usize,
    /// Sequence number of the next byte we expect; `None` before the first
    /// segment.
    next_seq: Option<u32>,
    /// Looking for a start line (at the start, or after a gap/overflow).
    resync: bool,
    stats: StreamStats,
}

impl Default for StreamReassembler {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamReassembler {
    pub fn new() -> Self {
        StreamReassembler {
            buf: Vec::new(),
            consumed: 0,
            pending: 0,
            next_seq: None,
            // The capture may begin mid-message, so the first data is only
            // trusted from the first start line on.
            resync: true,
            stats: StreamStats::default(),
        }
    }

    /// Feeds one TCP segment. In-order data is appended; bytes before the
    /// next expected sequence number (retransmissions) are trimmed; a gap
    /// drops the partial buffer and resyncs at the next SIP start line.
    pub fn push(&mut self, seq: u32, payload: &[u8]) {
        self.commit_pending();
        if payload.is_empty() {
            return;
        }
        let len32 = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        let mut data = payload;
        if let Some(expected) = self.next_seq {
            // Sequence arithmetic modulo 2^32 (RFC 793): the signed distance
            // tells old (negative) from future (positive) data.
            let delta = seq.wrapping_sub(expected) as i32;
            if delta < 0 {
                let old = usize::try_from(delta.unsigned_abs()).unwrap_or(usize::MAX);
                if old >= data.len() {
                    self.stats.bytes_retransmitted = self
                        .stats
                        .bytes_retransmitted
                        .saturating_add(data.len() as u64);
                    return;
                }
                self.stats.bytes_retransmitted =
                    self.stats.bytes_retransmitted.saturating_add(old as u64);
                data = data.get(old..).unwrap_or(&[]);
            } else if delta > 0 {
                // Lost data: whatever is buffered can no longer be completed.
                self.drop_buffer();
            }
        }
        self.next_seq = Some(seq.wrapping_add(len32));
        self.compact();
        if self.buf.len().saturating_add(data.len()) > STREAM_CAP {
            self.drop_buffer();
            // Keep only the tail that fits; it is scanned for a start line.
            let keep = data.len().min(STREAM_CAP);
            let skip = data.len() - keep;
            self.count_dropped(skip);
            data = data.get(skip..).unwrap_or(&[]);
        }
        self.buf.extend_from_slice(data);
    }

    /// Next complete message, or `None` until more data arrives. Call
    /// repeatedly after each `push`.
    pub fn next_message(&mut self) -> Option<&[u8]> {
        self.commit_pending();
        loop {
            let data = self.buf.get(self.consumed..).unwrap_or(&[]);
            if data.is_empty() {
                return None;
            }
            if self.resync {
                match find_start(data) {
                    Some(p) => {
                        self.count_dropped(p);
                        self.consumed = self.consumed.saturating_add(p);
                        self.resync = false;
                    }
                    None => {
                        // Keep a tail that may hold a start line cut by the
                        // segment boundary.
                        let keep = data.len().min(MAX_START_LINE);
                        let drop = data.len() - keep;
                        self.count_dropped(drop);
                        self.consumed = self.consumed.saturating_add(drop);
                        return None;
                    }
                }
                continue;
            }
            match parse_stream(data) {
                Ok(msg) => {
                    let skipped = msg.len().saturating_sub(msg.raw().len());
                    let len = msg.len();
                    self.stats.messages = self.stats.messages.saturating_add(1);
                    let start = self.consumed.saturating_add(skipped);
                    let end = self.consumed.saturating_add(len);
                    self.pending = len;
                    return self.buf.get(start..end);
                }
                Err(SipError::Incomplete) => {
                    // Only keep-alive CRLFs: consume them (not "dropped").
                    if data.iter().all(|b| *b == b'\r' || *b == b'\n') {
                        self.consumed = self.consumed.saturating_add(data.len());
                    }
                    return None;
                }
                Err(_) => {
                    // Garbage where a message should start: skip one byte so
                    // the resync scan cannot find the same spot again.
                    self.stats.resyncs = self.stats.resyncs.saturating_add(1);
                    self.count_dropped(1);
                    self.consumed = self.consumed.saturating_add(1);
                    self.resync = true;
                }
            }
        }
    }

    pub fn stats(&self) -> StreamStats {
        self.stats
    }

    /// Bytes currently buffered and not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf
            .len()
            .saturating_sub(self.consumed.saturating_add(self.pending))
    }

    fn commit_pending(&mut self) {
        self.consumed = self
            .consumed
            .saturating_add(self.pending)
            .min(self.buf.len());
        self.pending = 0;
    }

    fn compact(&mut self) {
        if self.consumed > 0 {
            let c = self.consumed.min(self.buf.len());
            self.buf.drain(..c);
            self.consumed = 0;
        }
    }

    fn drop_buffer(&mut self) {
        let left = self.buf.len().saturating_sub(self.consumed);
        self.count_dropped(left);
        self.buf.clear();
        self.consumed = 0;
        self.resync = true;
        self.stats.resyncs = self.stats.resyncs.saturating_add(1);
    }

    fn count_dropped(&mut self, n: usize) {
        self.stats.bytes_dropped = self.stats.bytes_dropped.saturating_add(n as u64);
    }
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
