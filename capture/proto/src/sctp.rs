//! SCTP user messages from DATA chunks, one association direction at a
//! time: several chunks per packet, messages fragmented over several
//! chunks (B/E flags, consecutive TSNs, one stream), several streams, and
//! retransmitted chunks recognised by TSN.
//!
//! A whole message in one chunk (B and E set) is handed out borrowed from
//! the packet, with no copy and no state beyond the TSN window. Fragments
//! are held, in arrival order, until the run of consecutive TSNs from a B to
//! an E on one stream is complete; memory is bounded by [`SctpLimits`], and
//! what the bound throws away is counted.

use crate::wire::sctp::DataChunk;

/// Bounds on what one direction holds while messages are incomplete.
#[derive(Clone, Copy, Debug)]
pub struct SctpLimits {
    /// User data bytes held in fragments.
    pub max_bytes: usize,
    /// Fragments held.
    pub max_fragments: usize,
}

impl Default for SctpLimits {
    fn default() -> Self {
        SctpLimits {
            max_bytes: 256 * 1024,
            max_fragments: 512,
        }
    }
}

/// Counters of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SctpStats {
    /// User messages handed out.
    pub messages: u64,
    /// Of those, reassembled from fragments.
    pub reassembled: u64,
    /// DATA chunks whose TSN was seen before (retransmissions), skipped.
    pub duplicates: u64,
    /// Fragments thrown away because the limits were hit.
    pub evicted: u64,
}

/// One complete user message.
#[derive(Clone, Copy, Debug)]
pub struct UserMessage<'a> {
    pub stream_id: u16,
    pub ssn: u16,
    pub ppid: u32,
    pub unordered: bool,
    pub data: &'a [u8],
    /// For a reassembled message: (capture time, packet reference) of the
    /// other packets that carried its fragments (not the current one).
    pub earlier: &'a [(u64, u64)],
}

/// TSNs seen lately: the highest, and a bitmap of the 128 at and below it.
#[derive(Clone, Copy, Debug, Default)]
struct TsnWindow {
    highest: Option<u32>,
    bits: u128,
}

impl TsnWindow {
    /// Records `tsn`; false when it was seen before (or is too old to tell,
    /// which a live association never sends).
    fn insert(&mut self, tsn: u32) -> bool {
        let Some(high) = self.highest else {
            self.highest = Some(tsn);
            self.bits = 1;
            return true;
        };
        // Serial number arithmetic (RFC 1982) over 32 bits.
        let ahead = tsn.wrapping_sub(high) as i32;
        if ahead > 0 {
            let shift = ahead.unsigned_abs();
            self.bits = if shift >= 128 { 0 } else { self.bits << shift };
            self.bits |= 1;
            self.highest = Some(tsn);
            return true;
        }
        let behind = ahead.unsigned_abs();
        if behind >= 128 {
            return false;
        }
        let bit = 1u128 << behind;
        let new = self.bits & bit == 0;
        self.bits |= bit;
        new
    }
}

#[derive(Debug)]
struct Fragment {
    tsn: u32,
    stream_id: u16,
    ssn: u16,
    flags: u8,
    ppid: u32,
    ts_ns: u64,
    pkt_ref: u64,
    data: Vec<u8>,
}

impl Fragment {
    fn begin(&self) -> bool {
        self.flags & crate::wire::sctp::data_flags::BEGIN != 0
    }

    fn end(&self) -> bool {
        self.flags & crate::wire::sctp::data_flags::END != 0
    }

    fn unordered(&self) -> bool {
        self.flags & crate::wire::sctp::data_flags::UNORDERED != 0
    }

    /// `other` may be the next or previous fragment of the same message.
    fn same_message(&self, other: &Fragment) -> bool {
        self.stream_id == other.stream_id
            && self.unordered() == other.unordered()
            && (self.unordered() || self.ssn == other.ssn)
    }
}

/// One direction of an SCTP association. See the module docs.
#[derive(Debug, Default)]
pub struct SctpReassembler {
    seen: TsnWindow,
    /// Held fragments, oldest first.
    frags: Vec<Fragment>,
    held_bytes: usize,
    out: Vec<u8>,
    earlier: Vec<(u64, u64)>,
    stats: SctpStats,
}

impl SctpReassembler {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stats(&self) -> SctpStats {
        self.stats
    }

    /// Bytes held in incomplete messages.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// A new association on the same addresses (INIT seen): forget TSNs
    /// and fragments of the old one.
    pub fn reset(&mut self) {
        self.seen = TsnWindow::default();
        self.frags.clear();
        self.held_bytes = 0;
    }

    /// One DATA chunk of the packet `pkt_ref` captured at `ts_ns`: the user
    /// message it completes, if any.
    pub fn push<'a>(
        &'a mut self,
        chunk: &DataChunk<&'a [u8]>,
        ts_ns: u64,
        pkt_ref: u64,
        limits: &SctpLimits,
    ) -> Option<UserMessage<'a>> {
        if !self.seen.insert(chunk.tsn()) {
            self.stats.duplicates = self.stats.duplicates.saturating_add(1);
            return None;
        }
        if chunk.begin() && chunk.end() {
            self.stats.messages = self.stats.messages.saturating_add(1);
            return Some(UserMessage {
                stream_id: chunk.stream_id(),
                ssn: chunk.ssn(),
                ppid: chunk.ppid(),
                unordered: chunk.unordered(),
                data: chunk.user_data(),
                earlier: &[],
            });
        }
        let data = chunk.user_data();
        self.make_room(data.len(), limits);
        if data.len() > limits.max_bytes {
            self.stats.evicted = self.stats.evicted.saturating_add(1);
            return None;
        }
        self.held_bytes = self.held_bytes.saturating_add(data.len());
        self.frags.push(Fragment {
            tsn: chunk.tsn(),
            stream_id: chunk.stream_id(),
            ssn: chunk.ssn(),
            flags: chunk.flags(),
            ppid: chunk.ppid(),
            ts_ns,
            pkt_ref,
            data: data.to_vec(),
        });
        self.complete(self.frags.len() - 1, pkt_ref)
    }

    /// Evicts the oldest fragments until `incoming` more bytes and one more
    /// fragment fit.
    fn make_room(&mut self, incoming: usize, limits: &SctpLimits) {
        let mut drop = 0;
        let mut bytes = self.held_bytes;
        let mut count = self.frags.len();
        while drop < self.frags.len()
            && (bytes.saturating_add(incoming) > limits.max_bytes || count >= limits.max_fragments)
        {
            bytes = bytes.saturating_sub(self.frags.get(drop).map_or(0, |f| f.data.len()));
            count -= 1;
            drop += 1;
        }
        if drop > 0 {
            self.frags.drain(..drop);
            self.held_bytes = bytes;
            self.stats.evicted = self.stats.evicted.saturating_add(drop as u64);
        }
    }

    fn find(&self, tsn: u32) -> Option<usize> {
        self.frags.iter().position(|f| f.tsn == tsn)
    }

    /// If the fragment at `idx` completes a run B..E of consecutive TSNs,
    /// moves the run out into one message.
    fn complete(&mut self, idx: usize, pkt_ref: u64) -> Option<UserMessage<'_>> {
        let first = self.run_start(idx)?;
        let last = self.run_end(idx)?;
        let (start_tsn, end_tsn) = (self.frags.get(first)?.tsn, self.frags.get(last)?.tsn);
        let head = self.frags.get(first)?;
        let (stream_id, ssn, ppid, unordered) =
            (head.stream_id, head.ssn, head.ppid, head.unordered());
        self.out.clear();
        self.earlier.clear();
        let mut tsn = start_tsn;
        loop {
            let i = self.find(tsn)?;
            let f = self.frags.remove(i);
            self.held_bytes = self.held_bytes.saturating_sub(f.data.len());
            self.out.extend_from_slice(&f.data);
            if f.pkt_ref != pkt_ref && !self.earlier.iter().any(|e| e.1 == f.pkt_ref) {
                self.earlier.push((f.ts_ns, f.pkt_ref));
            }
            if tsn == end_tsn {
                break;
            }
            tsn = tsn.wrapping_add(1);
        }
        self.stats.messages = self.stats.messages.saturating_add(1);
        self.stats.reassembled = self.stats.reassembled.saturating_add(1);
        Some(UserMessage {
            stream_id,
            ssn,
            ppid,
            unordered,
            data: &self.out,
            earlier: &self.earlier,
        })
    }

    /// The index of the B fragment reached from `idx` through consecutive
    /// TSNs of the same message.
    fn run_start(&self, mut idx: usize) -> Option<usize> {
        for _ in 0..=self.frags.len() {
            let f = self.frags.get(idx)?;
            if f.begin() {
                return Some(idx);
            }
            let prev = self.find(f.tsn.wrapping_sub(1))?;
            if !self.frags.get(prev)?.same_message(f) || self.frags.get(prev)?.end() {
                return None;
            }
            idx = prev;
        }
        None
    }

    /// The index of the E fragment reached from `idx` forwards.
    fn run_end(&self, mut idx: usize) -> Option<usize> {
        for _ in 0..=self.frags.len() {
            let f = self.frags.get(idx)?;
            if f.end() {
                return Some(idx);
            }
            let next = self.find(f.tsn.wrapping_add(1))?;
            if !self.frags.get(next)?.same_message(f) || self.frags.get(next)?.begin() {
                return None;
            }
            idx = next;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::sctp::{DataRepr, data_flags};

    fn chunk(flags: u8, tsn: u32, stream: u16, ssn: u16, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        DataRepr {
            flags,
            tsn,
            stream_id: stream,
            ssn,
            ppid: 0,
            data_len: data.len(),
        }
        .append_with(&mut v, data)
        .unwrap();
        v
    }

    fn push(r: &mut SctpReassembler, c: &[u8], pkt: u64) -> Option<(Vec<u8>, u16, Vec<u64>)> {
        let d = DataChunk::new_checked(c).unwrap();
        r.push(&d, pkt * 10, pkt, &SctpLimits::default()).map(|m| {
            (
                m.data.to_vec(),
                m.stream_id,
                m.earlier.iter().map(|e| e.1).collect(),
            )
        })
    }

    const B: u8 = data_flags::BEGIN;
    const E: u8 = data_flags::END;
    const U: u8 = data_flags::UNORDERED;

    #[test]
    fn whole_messages_and_duplicates() {
        let mut r = SctpReassembler::new();
        let c = chunk(B | E, 100, 0, 0, b"INVITE");
        assert_eq!(push(&mut r, &c, 1), Some((b"INVITE".to_vec(), 0, vec![])));
        // The same TSN again is a retransmission.
        assert_eq!(push(&mut r, &c, 2), None);
        assert_eq!(r.stats().duplicates, 1);
        // A later TSN on another stream, then an older one not seen yet.
        assert!(push(&mut r, &chunk(B | E, 102, 1, 0, b"x"), 3).is_some());
        assert!(push(&mut r, &chunk(B | E, 101, 2, 0, b"y"), 4).is_some());
        assert!(push(&mut r, &chunk(B | E, 101, 2, 0, b"y"), 5).is_none());
        assert_eq!(r.stats().messages, 3);
    }

    #[test]
    fn fragments_in_and_out_of_order_on_two_streams() {
        let mut r = SctpReassembler::new();
        // Message A on stream 1 (TSN 10..12) and B on stream 2 (13..14);
        // they arrive interleaved and out of order.
        assert!(push(&mut r, &chunk(B, 10, 1, 5, b"AAA"), 1).is_none());
        assert!(push(&mut r, &chunk(E, 14, 2, 6, b"bb"), 2).is_none());
        assert!(push(&mut r, &chunk(E, 12, 1, 5, b"CC"), 3).is_none());
        assert!(
            push(&mut r, &chunk(B, 13, 2, 6, b"B"), 4)
                .is_some_and(|m| m == (b"Bbb".to_vec(), 2, vec![2]))
        );
        assert_eq!(
            push(&mut r, &chunk(0, 11, 1, 5, b"bb"), 5),
            Some((b"AAAbbCC".to_vec(), 1, vec![1, 3]))
        );
        assert_eq!(r.held_bytes(), 0);
        assert_eq!(r.stats().reassembled, 2);
        // Unordered fragments: SSN is meaningless and may differ.
        assert!(push(&mut r, &chunk(B | U, 15, 3, 0, b"u1"), 6).is_none());
        assert_eq!(
            push(&mut r, &chunk(E | U, 16, 3, 9, b"u2"), 6),
            Some((b"u1u2".to_vec(), 3, vec![]))
        );
    }

    #[test]
    fn a_run_broken_by_another_stream_does_not_join() {
        let mut r = SctpReassembler::new();
        assert!(push(&mut r, &chunk(B, 1, 1, 0, b"a"), 1).is_none());
        assert!(push(&mut r, &chunk(E, 2, 2, 0, b"b"), 2).is_none());
        assert_eq!(r.held_bytes(), 2);
    }

    #[test]
    fn limits_evict_the_oldest_and_count() {
        let mut r = SctpReassembler::new();
        let lim = SctpLimits {
            max_bytes: 10,
            max_fragments: 3,
        };
        for tsn in 0..10u32 {
            let c = chunk(B, tsn * 2, 0, tsn as u16, b"1234");
            let d = DataChunk::new_checked(&c[..]).unwrap();
            assert!(r.push(&d, 0, u64::from(tsn), &lim).is_none());
            assert!(r.held_bytes() <= 10);
        }
        assert_eq!(r.stats().evicted, 8);
        // A fragment bigger than the whole budget is refused, counted.
        let big = chunk(B, 100, 0, 0, &[0; 11]);
        assert!(
            r.push(&DataChunk::new_checked(&big[..]).unwrap(), 0, 99, &lim)
                .is_none()
        );
        assert_eq!(r.held_bytes(), 0);
        assert_eq!(r.stats().evicted, 11);
    }

    #[test]
    fn tsn_window_wraps() {
        let mut w = TsnWindow::default();
        assert!(w.insert(u32::MAX - 1));
        assert!(w.insert(u32::MAX));
        assert!(w.insert(0));
        assert!(w.insert(1));
        assert!(!w.insert(u32::MAX));
        assert!(w.insert(1000));
        assert!(!w.insert(1));
    }
}
