//! Frames handed from the ring reader to the pipeline worker: a reusable
//! buffer of `[ts_ns u64][pref u64][len u32][bytes]` records. Batches go
//! round a fixed pool (reader -> worker -> reader), so the steady state
//! allocates nothing and synchronises once per batch, not per frame.

use voxtap_engine::calls::PacketRef;

const HEADER: usize = 20;

pub(crate) struct Batch {
    /// Number of the batch in the run (1, 2, ...), set when sent.
    pub seq: u64,
    buf: Vec<u8>,
    frames: u32,
}

impl Batch {
    pub fn with_capacity(bytes: usize) -> Self {
        Batch {
            seq: 0,
            buf: Vec::with_capacity(bytes),
            frames: 0,
        }
    }

    /// True when one more frame of up to `max_frame` bytes might not fit
    /// without growing the buffer.
    pub fn is_full(&self, max_frame: usize) -> bool {
        self.buf.len() + HEADER + max_frame > self.buf.capacity()
    }

    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }

    #[cfg(test)]
    pub fn len(&self) -> u32 {
        self.frames
    }

    pub fn push(&mut self, ts_ns: u64, pref: PacketRef, data: &[u8]) {
        self.buf.extend_from_slice(&ts_ns.to_le_bytes());
        self.buf.extend_from_slice(&pref.0.to_le_bytes());
        self.buf
            .extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(data);
        self.frames += 1;
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.frames = 0;
        self.seq = 0;
    }

    pub fn iter(&self) -> BatchIter<'_> {
        BatchIter { rest: &self.buf }
    }
}

pub(crate) struct BatchIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = (u64, PacketRef, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (h, rest) = self.rest.split_first_chunk::<HEADER>()?;
        let ts = u64::from_le_bytes(h[0..8].try_into().ok()?);
        let pref = u64::from_le_bytes(h[8..16].try_into().ok()?);
        let len = u32::from_le_bytes(h[16..20].try_into().ok()?) as usize;
        let data = rest.get(..len)?;
        self.rest = &rest[len..];
        Some((ts, PacketRef(pref), data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_without_growing() {
        let mut b = Batch::with_capacity(4096);
        let cap = b.buf.capacity();
        let mut n = 0;
        while !b.is_full(100) {
            b.push(n, PacketRef::new(3, n * 10), &[n as u8; 100]);
            n += 1;
        }
        assert_eq!(b.buf.capacity(), cap);
        assert_eq!(b.len() as u64, n);
        for (i, (ts, r, d)) in b.iter().enumerate() {
            assert_eq!(ts, i as u64);
            assert_eq!(r, PacketRef::new(3, i as u64 * 10));
            assert_eq!(d, &[i as u8; 100][..]);
        }
        b.clear();
        assert!(b.iter().next().is_none());
    }
}
