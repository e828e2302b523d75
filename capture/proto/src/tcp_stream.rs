//! One direction of a TCP connection as ordered bytes, from the segments a
//! passive tap saw: retransmitted bytes are trimmed, a gap (lost or
//! reordered data) is reported so the reader above can resynchronise, and
//! the buffer never grows past a cap. SIP framing ([`crate::sip`]) and the
//! TLS record layer ([`crate::tls`]) read from it.

/// Counters of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrderedStats {
    /// Payload bytes ignored as retransmissions of data already seen.
    pub bytes_retransmitted: u64,
    /// Bytes discarded (gap, overflow, or by the reader) without being used.
    pub bytes_dropped: u64,
}

/// What a [`OrderedBytes::push`] did to the bytes already buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Appended in order (or nothing new).
    InOrder,
    /// Data was missing before this segment, or the buffer overflowed: what
    /// was buffered is gone and the new bytes do not continue it.
    Discontinuity,
}

/// See the module docs.
#[derive(Debug)]
pub struct OrderedBytes {
    buf: Vec<u8>,
    /// Bytes at the front of `buf` already read; compacted on the next push
    /// so that a reader may hold a slice of `buf` until then.
    consumed: usize,
    /// Sequence number of the next byte we expect; `None` before the first
    /// segment.
    next_seq: Option<u32>,
    cap: usize,
    stats: OrderedStats,
}

impl OrderedBytes {
    /// At most `cap` bytes are held.
    pub fn new(cap: usize) -> Self {
        OrderedBytes {
            buf: Vec::new(),
            consumed: 0,
            next_seq: None,
            cap,
            stats: OrderedStats::default(),
        }
    }

    pub fn stats(&self) -> OrderedStats {
        self.stats
    }

    /// Feeds one segment. In-order data is appended; bytes before the next
    /// expected sequence number are trimmed as retransmissions; a jump
    /// forward drops what is buffered. On overflow, the buffer is dropped and
    /// only the tail of the segment that fits is kept.
    pub fn push(&mut self, seq: u32, payload: &[u8]) -> Pushed {
        let mut r = Pushed::InOrder;
        if payload.is_empty() {
            return r;
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
                    self.count_retransmitted(data.len());
                    return r;
                }
                self.count_retransmitted(old);
                data = data.get(old..).unwrap_or(&[]);
            } else if delta > 0 {
                self.drop_all();
                r = Pushed::Discontinuity;
            }
        }
        self.next_seq = Some(seq.wrapping_add(len32));
        self.compact();
        if self.buf.len().saturating_add(data.len()) > self.cap {
            self.drop_all();
            let keep = data.len().min(self.cap);
            let skip = data.len() - keep;
            self.count_dropped(skip);
            data = data.get(skip..).unwrap_or(&[]);
            r = Pushed::Discontinuity;
        }
        self.buf.extend_from_slice(data);
        r
    }

    /// The bytes not read yet.
    pub fn data(&self) -> &[u8] {
        self.buf.get(self.consumed..).unwrap_or(&[])
    }

    /// Marks `n` bytes as read (used).
    pub fn consume(&mut self, n: usize) {
        self.consumed = self.consumed.saturating_add(n).min(self.buf.len());
    }

    /// Marks `n` bytes as read and thrown away (counted as dropped).
    pub fn discard(&mut self, n: usize) {
        let n = n.min(self.data().len());
        self.count_dropped(n);
        self.consume(n);
    }

    /// `data()[from..to]` after `consume(to)`: a read that hands the bytes
    /// out, valid until the next push.
    pub fn take(&mut self, from: usize, to: usize) -> &[u8] {
        let start = self.consumed.saturating_add(from);
        let end = self.consumed.saturating_add(to);
        self.consume(to);
        self.buf.get(start..end).unwrap_or(&[])
    }

    /// Throws away everything buffered (counted as dropped).
    pub fn drop_all(&mut self) {
        let left = self.data().len();
        self.count_dropped(left);
        self.buf.clear();
        self.consumed = 0;
    }

    fn compact(&mut self) {
        if self.consumed > 0 {
            let c = self.consumed.min(self.buf.len());
            self.buf.drain(..c);
            self.consumed = 0;
        }
    }

    fn count_dropped(&mut self, n: usize) {
        self.stats.bytes_dropped = self.stats.bytes_dropped.saturating_add(n as u64);
    }

    fn count_retransmitted(&mut self, n: usize) {
        self.stats.bytes_retransmitted = self.stats.bytes_retransmitted.saturating_add(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_trim_gap_and_cap() {
        let mut s = OrderedBytes::new(8);
        assert_eq!(s.push(100, b"abc"), Pushed::InOrder);
        assert_eq!(s.push(101, b"bcde"), Pushed::InOrder);
        assert_eq!(s.data(), b"abcde");
        assert_eq!(s.stats().bytes_retransmitted, 2);
        assert_eq!(s.take(1, 3), b"bc");
        assert_eq!(s.data(), b"de");
        // A jump forward: "de" is lost to the gap.
        assert_eq!(s.push(110, b"xy"), Pushed::Discontinuity);
        assert_eq!(s.data(), b"xy");
        assert_eq!(s.stats().bytes_dropped, 2);
        // Overflow keeps the tail that fits.
        assert_eq!(s.push(112, b"0123456789"), Pushed::Discontinuity);
        assert_eq!(s.data(), b"23456789");
        s.discard(3);
        assert_eq!(s.data(), b"56789");
        assert_eq!(s.stats().bytes_dropped, 2 + 2 + 2 + 3);
    }
}
