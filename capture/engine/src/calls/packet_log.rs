//! One call's packet references (capture time, where the packet is), to cut
//! its PCAP once it ends: the latest fewer-than-[`CHUNK`] in memory, the
//! older ones in the table's [`Spill`], so what a call holds does not grow
//! with its duration.

use std::borrow::Cow;

use super::call::PacketRef;
use super::spill::{CHUNK, ChunkPtr, PinnedSeg, Spill, decode_body, encode_ref_into};

/// The encoded references a call holds before they are spilled, in one
/// allocation of this size made at its first reference and never grown: a
/// chunk goes to the spill when [`CHUNK`] references are in it or the next
/// one would not fit (about 6 bytes a reference at 20 ms, 8-9 with many
/// calls between two of its packets in the capture). Grown 20 bytes at a
/// time, as it was, the buffer moved every other packet of the first
/// chunk, and with thousands of calls starting together the holes it left
/// among the other calls' memory were some 250 bytes of RSS a call. 120
/// rather than 128: with glibc's 8-byte header that is a 128-byte chunk
/// exactly, where 128 took 144 (16 bytes of every open call for 8 bytes
/// of references).
const ENC_BYTES: usize = 120;
// `PacketLog::enc_len` counts its bytes in a u8.
const _: () = assert!(ENC_BYTES <= u8::MAX as usize);

#[derive(Default)]
pub(crate) struct PacketLog {
    /// Without a spill (or once it refused a chunk, or after [`Self::load`]):
    /// every reference not spilled, as is.
    tail: Vec<(u64, PacketRef)>,
    /// With a spill: the references not spilled yet, already encoded as the
    /// chunk body the spill will take (about 6 bytes each rather than 16:
    /// this is most of what a call holds for its packets), in the first
    /// `enc_len` bytes of a buffer boxed at the first reference (a box and
    /// a length take 9 bytes of every call, a Vec took 24) ...
    enc: Option<Box<[u8; ENC_BYTES]>>,
    enc_len: u8,
    /// ... the latest of them (the base of the next one's differences) ...
    enc_last: (u64, PacketRef),
    /// ... and how many there are.
    enc_n: u8,
    /// The spill and the call's latest chunk in it (0: none yet).
    spill: Option<Spill>,
    last: ChunkPtr,
    /// The segment the first chunk pinned.
    pinned: PinnedSeg,
    spilled: u64,
    /// The spill refused a chunk (after a failure it logged): the rest
    /// stays in memory.
    stuck: bool,
    /// Nothing will cut this call's PCAP (a CSV-only import): references
    /// are not kept at all, in memory or in the spill.
    discard: bool,
}

impl std::fmt::Debug for PacketLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketLog")
            .field("in_memory", &(self.tail.len() + usize::from(self.enc_n)))
            .field("spilled", &self.spilled)
            .finish()
    }
}

impl PacketLog {
    #[cfg(test)]
    pub fn new(spill: Option<Spill>) -> Self {
        let mut log = PacketLog::default();
        log.spill = spill;
        log
    }

    pub fn push(&mut self, r: (u64, PacketRef)) {
        if self.discard {
            return;
        }
        if self.spill.is_none() || self.stuck {
            self.tail.push(r);
            return;
        }
        let mut b = [0u8; 20];
        let mut n = encode_ref_into(self.enc_base(), r, &mut b);
        if usize::from(self.enc_len) + n > ENC_BYTES && self.enc_n > 0 {
            self.spill_tail();
            if self.stuck {
                self.tail.push(r);
                return;
            }
            n = encode_ref_into(self.enc_base(), r, &mut b);
        }
        // An encoded reference (at most 20 bytes) fits an empty buffer, and
        // a full one was spilled above: the slice is always there.
        let at = usize::from(self.enc_len);
        let buf = self.enc.get_or_insert_with(|| Box::new([0; ENC_BYTES]));
        if let (Some(dst), Some(src)) = (buf.get_mut(at..at + n), b.get(..n)) {
            dst.copy_from_slice(src);
            self.enc_len += n as u8;
        }
        self.enc_last = r;
        self.enc_n += 1;
        if usize::from(self.enc_n) >= CHUNK {
            self.spill_tail();
        }
    }

    /// The encoded references not spilled yet.
    fn enc(&self) -> &[u8] {
        let len = usize::from(self.enc_len);
        self.enc
            .as_deref()
            .and_then(|b| b.get(..len))
            .unwrap_or(&[])
    }

    /// No encoded reference held; with `free`, the buffer goes too.
    fn clear_enc(&mut self, free: bool) {
        self.enc_len = 0;
        self.enc_n = 0;
        if free {
            self.enc = None;
        }
    }

    /// What the next reference is encoded against: the chunk body's
    /// previous one, or zero at a body's start.
    fn enc_base(&self) -> (u64, PacketRef) {
        if self.enc_n == 0 {
            (0, PacketRef(0))
        } else {
            self.enc_last
        }
    }

    pub fn extend(&mut self, refs: &[(u64, PacketRef)]) {
        for &r in refs {
            self.push(r);
        }
    }

    /// How many references, spilled or not.
    pub fn len(&self) -> u64 {
        self.spilled + self.tail.len() as u64 + u64::from(self.enc_n)
    }

    /// Bytes of references held in memory (the spilled ones are not).
    pub fn held_bytes(&self) -> usize {
        self.tail.capacity() * std::mem::size_of::<(u64, PacketRef)>()
            + self.enc.as_ref().map_or(0, |_| ENC_BYTES)
    }

    fn spill_tail(&mut self) {
        let Some(spill) = self.spill.as_ref() else {
            return;
        };
        let first = self.last == 0;
        match spill.append_encoded(self.last, self.enc(), first) {
            Some((p, seg)) => {
                self.last = p;
                if first {
                    self.pinned.set(seg);
                }
                self.spilled += u64::from(self.enc_n);
                self.clear_enc(false);
            }
            None => {
                // Kept in memory from now on, as is.
                self.stuck = true;
                self.tail = self.unspilled();
                self.clear_enc(true);
            }
        }
    }

    /// The references not spilled, decoded.
    fn unspilled(&self) -> Vec<(u64, PacketRef)> {
        let mut v = self.tail.clone();
        // The body was encoded here: it decodes.
        let _ = decode_body(self.enc(), &mut v);
        v
    }

    /// Keeps no references from now on (a log that holds none yet).
    pub fn discard(&mut self) {
        if self.len() == 0 {
            self.discard = true;
        }
    }

    /// Spill to `spill` from now on (a log that spilled nothing yet).
    pub fn set_spill(&mut self, spill: Option<Spill>) {
        if self.last == 0 && self.enc_n == 0 {
            self.spill = spill;
            // Those already held go first, through the spill's chunks.
            for r in std::mem::take(&mut self.tail) {
                self.push(r);
            }
        }
    }

    /// The references in memory (all of them after [`Self::load`]).
    pub fn tail_mut(&mut self) -> &mut [(u64, PacketRef)] {
        &mut self.tail
    }

    /// Every reference, in the order they were added.
    pub fn all(&self) -> std::io::Result<Cow<'_, [(u64, PacketRef)]>> {
        match (&self.spill, self.last) {
            (Some(spill), last) if last != 0 => {
                let mut v = spill.read_chain(last)?;
                v.extend_from_slice(&self.tail);
                decode_body(self.enc(), &mut v)?;
                Ok(Cow::Owned(v))
            }
            _ if self.enc_n != 0 => Ok(Cow::Owned(self.unspilled())),
            _ => Ok(Cow::Borrowed(&self.tail)),
        }
    }

    /// Reads the spilled references back into memory (the call is done
    /// growing) and releases its hold on the spill.
    pub fn load(&mut self) -> std::io::Result<()> {
        if self.last != 0 || self.enc_n != 0 {
            let all = self.all()?.into_owned();
            self.tail = all;
            self.clear_enc(true);
            self.release();
        }
        self.spill = None;
        Ok(())
    }

    /// Moves `other`'s references here (its spilled ones read back first).
    pub fn absorb(&mut self, mut other: PacketLog) {
        if let Err(e) = other.load() {
            tracing::warn!(error = %e, "reading back spilled packet references");
        }
        self.extend(&other.tail);
    }

    fn release(&mut self) {
        if let (Some(seg), Some(spill)) = (self.pinned.take(), &self.spill) {
            spill.unpin(seg);
        }
        self.last = 0;
        self.spilled = 0;
    }
}

impl Drop for PacketLog {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(n: u64) -> Vec<(u64, PacketRef)> {
        (0..n)
            .map(|i| (1_000 + i * 20_000_000, PacketRef::new(0, 24 + i * 214)))
            .collect()
    }

    /// The memory a call holds for its references stays under one chunk
    /// whatever its length, and every reference comes back in order.
    #[test]
    fn memory_held_does_not_grow_with_packets_and_all_come_back() {
        let dir = std::env::temp_dir().join(format!("voxtap-log-test-{}", std::process::id()));
        let spill = Spill::new(&dir);
        let mut log = PacketLog::new(Some(spill.clone()));
        let all = refs(100_000);
        let mut most = 0;
        for (i, r) in all.iter().enumerate() {
            log.push(*r);
            most = most.max(log.held_bytes());
            if i == 1_000 {
                assert!(log.held_bytes() <= CHUNK * 16, "{}", log.held_bytes());
            }
        }
        assert!(most <= CHUNK * 16, "held {most} bytes");
        assert_eq!(log.len(), 100_000);
        assert_eq!(log.all().unwrap().as_ref(), all.as_slice());
        log.load().unwrap();
        assert_eq!(log.all().unwrap().as_ref(), all.as_slice());
        assert!(spill.stats().chunks >= 100_000 / CHUNK as u64);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// References held before the spill was set go out first, in order;
    /// the unspilled ones are held encoded (a fraction of 16 bytes each).
    #[test]
    fn a_spill_set_late_keeps_the_order_and_the_tail_is_small() {
        let dir = std::env::temp_dir().join(format!("voxtap-log-test3-{}", std::process::id()));
        let all = refs(45);
        let mut log = PacketLog::new(None);
        log.extend(&all[..5]);
        log.set_spill(Some(Spill::new(&dir)));
        log.extend(&all[5..]);
        assert_eq!(log.len(), 45);
        // 13 references in memory, 6 bytes each here (a 4-byte time step
        // and a 2-byte offset step), in the one buffer.
        assert_eq!(log.held_bytes(), ENC_BYTES);
        assert_eq!(log.all().unwrap().as_ref(), all.as_slice());
        log.load().unwrap();
        assert_eq!(log.tail_mut(), all.as_slice());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// References too large for sixteen to fit the buffer (steps of every
    /// size up to the largest, 20 bytes a reference) are cut into more,
    /// shorter chunks: the buffer never grows, and every reference comes
    /// back in order.
    #[test]
    fn large_references_make_shorter_chunks_not_a_larger_buffer() {
        let dir = std::env::temp_dir().join(format!("voxtap-log-test4-{}", std::process::id()));
        let spill = Spill::new(&dir);
        let mut log = PacketLog::new(Some(spill.clone()));
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let all: Vec<(u64, PacketRef)> = (0..2_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let bits = x % 64;
                (x >> (63 - bits), PacketRef(x.rotate_left(7) >> (x % 60)))
            })
            .collect();
        for r in &all {
            log.push(*r);
            assert_eq!(log.held_bytes(), ENC_BYTES);
        }
        assert_eq!(log.all().unwrap().as_ref(), all.as_slice());
        assert!(spill.stats().chunks > 2_000 / CHUNK as u64);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn without_a_spill_everything_stays_in_memory() {
        let mut log = PacketLog::new(None);
        log.extend(&refs(100));
        assert_eq!(log.all().unwrap().len(), 100);
        assert!(log.held_bytes() >= 100 * 16);
    }

    #[test]
    fn absorbing_a_spilled_log_keeps_every_reference() {
        let dir = std::env::temp_dir().join(format!("voxtap-log-test2-{}", std::process::id()));
        let spill = Spill::new(&dir);
        let (a, b) = (refs(70), refs(50));
        let mut x = PacketLog::new(Some(spill.clone()));
        x.extend(&a);
        let mut y = PacketLog::new(Some(spill));
        y.extend(&b);
        x.absorb(y);
        assert_eq!(x.all().unwrap().as_ref(), [a, b].concat().as_slice());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
