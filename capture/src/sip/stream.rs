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
/// message larger than this cannot be framed anyway (see `MAX_BODY`).
pub const STREAM_CAP: usize = 256 * 1024;

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
        self.consumed = self.consumed.saturating_add(self.pending).min(self.buf.len());
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
