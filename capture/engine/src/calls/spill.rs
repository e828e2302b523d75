//! Where calls keep their older packet references: chunks of 16 references,
//! delta-encoded, appended to segment files on disk, each chunk naming the
//! call's previous chunk. A call holds only its latest chunk's address and
//! fewer than 16 references in memory, so its memory does not grow with its
//! duration; the references are read back (one read per chunk) when the
//! call's PCAP is cut. Open calls keep the texts of their SIP messages here
//! too, one record each, read back when they close.
//!
//! Segment files are unlinked as soon as they are created (nothing is left
//! behind after a crash) and closed when no call still needs them: a call
//! pins the segment of its first chunk (and so every later one) until its
//! references are read back or it is dropped.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::call::PacketRef;

/// References per chunk.
pub(crate) const CHUNK: usize = 16;
/// Segment size (bits of the offset inside one segment file).
const SEG_BITS: u32 = 26;
const SEG_SIZE: u64 = 1 << SEG_BITS;
/// Written to the segment file once this much is buffered.
const WRITE_BUF: usize = 256 * 1024;

/// A chunk's address: its global offset (segment << SEG_BITS | offset in
/// the segment) in the high 48 bits and its length in the low 16; 0 is none.
pub(crate) type ChunkPtr = u64;

fn ptr(off: u64, len: usize) -> ChunkPtr {
    (off << 16) | len as u64
}

fn ptr_parts(p: ChunkPtr) -> (u64, usize) {
    (p >> 16, (p & 0xffff) as usize)
}

/// The segment a call pinned, if any, in 8 bytes (an `Option<u64>` takes
/// 16; segment numbers are below 2^22).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PinnedSeg(u64);

impl Default for PinnedSeg {
    fn default() -> Self {
        PinnedSeg(u64::MAX)
    }
}

impl PinnedSeg {
    pub fn is_none(self) -> bool {
        self.0 == u64::MAX
    }

    pub fn set(&mut self, seg: u64) {
        self.0 = seg;
    }

    pub fn take(&mut self) -> Option<u64> {
        let seg = std::mem::take(self);
        (!seg.is_none()).then_some(seg.0)
    }
}

struct Segment {
    file: Arc<File>,
    /// Calls whose first chunk is in this segment and that still need it.
    pins: u32,
}

struct State {
    dir: PathBuf,
    segments: BTreeMap<u64, Segment>,
    /// Global offset where the next chunk goes.
    pos: u64,
    /// Chunks not yet written, starting at global offset `buf_start`.
    buf: Vec<u8>,
    buf_start: u64,
    /// Spilling failed (no space, no directory): calls keep their
    /// references in memory from then on.
    failed: bool,
    chunks: u64,
}

/// The spill shared by one call table and the calls it hands out (they read
/// their chunks back on the output thread).
#[derive(Clone)]
pub struct Spill(Arc<Mutex<State>>);

impl std::fmt::Debug for Spill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Spill")
    }
}

/// What [`Spill::stats`] reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpillStats {
    pub chunks: u64,
    pub segments: u64,
    pub failed: bool,
}

impl Spill {
    /// A spill whose segment files go in `dir` (created on the first chunk).
    pub fn new(dir: &Path) -> Self {
        Spill(Arc::new(Mutex::new(State {
            dir: dir.to_path_buf(),
            segments: BTreeMap::new(),
            pos: 0,
            // Allocated once, with room for the last record before a
            // flush: growing by doubling would end at twice WRITE_BUF.
            buf: Vec::with_capacity(WRITE_BUF + 0xffff),
            buf_start: 0,
            failed: false,
            chunks: 0,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent state (every
        // step below completes or fails before it changes anything).
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> SpillStats {
        let s = self.lock();
        SpillStats {
            chunks: s.chunks,
            segments: s.segments.len() as u64,
            failed: s.failed,
        }
    }

    /// Appends a chunk of `refs` after chunk `prev` (calls hold theirs
    /// encoded and use [`Self::append_encoded`]).
    #[cfg(test)]
    pub(crate) fn append(
        &self,
        prev: ChunkPtr,
        refs: &[(u64, PacketRef)],
        pin: bool,
    ) -> Option<(ChunkPtr, u64)> {
        self.append_encoded(prev, &encode_body(refs), pin)
    }

    /// Appends a chunk after chunk `prev`, its references already encoded
    /// (`body`, as [`encode_ref_into`] writes them from a zero base); returns its
    /// address, or None when spilling is off after a failure. `pin` pins
    /// the chunk's segment (the call's first chunk) and returns it in the
    /// tuple.
    pub(crate) fn append_encoded(
        &self,
        prev: ChunkPtr,
        body: &[u8],
        pin: bool,
    ) -> Option<(ChunkPtr, u64)> {
        let mut enc = [0u8; 8 + CHUNK * 20];
        let rec = enc.get_mut(..8 + body.len())?;
        rec[..8].copy_from_slice(&prev.to_le_bytes());
        rec[8..].copy_from_slice(body);
        let placed = self.put(rec, pin);
        if placed.is_some() {
            self.lock().chunks += 1;
        }
        placed
    }

    /// Appends `bytes` as one record (the text of a SIP message an open call
    /// keeps); returns its address and segment as [`Self::append`] does.
    /// None when spilling is off, or for an empty record or one longer than
    /// an address can say (64 KiB): those stay in memory.
    pub(crate) fn append_bytes(&self, bytes: &[u8], pin: bool) -> Option<(ChunkPtr, u64)> {
        if bytes.is_empty() || bytes.len() > 0xffff {
            return None;
        }
        self.put(bytes, pin)
    }

    /// Writes record `rec` at the end (into the write buffer).
    fn put(&self, rec: &[u8], pin: bool) -> Option<(ChunkPtr, u64)> {
        let mut s = self.lock();
        if s.failed {
            return None;
        }
        match s.place(rec.len()) {
            Ok(off) => {
                s.buf.extend_from_slice(rec);
                s.pos = off + rec.len() as u64;
                let seg = off >> SEG_BITS;
                if pin && let Some(g) = s.segments.get_mut(&seg) {
                    g.pins += 1;
                }
                if s.buf.len() >= WRITE_BUF && s.flush().is_err() {
                    s.fail();
                    return None;
                }
                Some((ptr(off, rec.len()), seg))
            }
            Err(e) => {
                tracing::warn!(dir = %s.dir.display(), error = %e, "spilling packet references failed; calls keep them in memory");
                s.fail();
                None
            }
        }
    }

    /// The record at `p` written by [`Self::append_bytes`] (from the write
    /// buffer when it is still there: a short call's texts never hit the
    /// disk).
    pub(crate) fn read_bytes(&self, p: ChunkPtr) -> std::io::Result<Vec<u8>> {
        let (off, len) = ptr_parts(p);
        let file = {
            let s = self.lock();
            if off >= s.buf_start {
                let at = (off - s.buf_start) as usize;
                return s
                    .buf
                    .get(at..at + len)
                    .map(<[u8]>::to_vec)
                    .ok_or_else(|| std::io::Error::other("spill record past the buffer"));
            }
            let seg = off >> SEG_BITS;
            let g = s
                .segments
                .get(&seg)
                .ok_or_else(|| std::io::Error::other(format!("spill segment {seg} is gone")))?;
            Arc::clone(&g.file)
        };
        let mut v = vec![0; len];
        file.read_exact_at(&mut v, off & (SEG_SIZE - 1))?;
        Ok(v)
    }

    /// Every reference of the chain ending at `last`, oldest chunk first.
    pub(crate) fn read_chain(&self, last: ChunkPtr) -> std::io::Result<Vec<(u64, PacketRef)>> {
        let files = {
            let mut s = self.lock();
            if ptr_parts(last).0 + ptr_parts(last).1 as u64 > s.buf_start {
                s.flush()?;
            }
            s.segments
                .iter()
                .map(|(k, g)| (*k, Arc::clone(&g.file)))
                .collect::<BTreeMap<_, _>>()
        };
        let mut chunks: Vec<Vec<(u64, PacketRef)>> = Vec::new();
        let mut p = last;
        let mut raw = [0u8; 8 + CHUNK * 20];
        while p != 0 {
            let (off, len) = ptr_parts(p);
            let file = files.get(&(off >> SEG_BITS)).ok_or_else(|| {
                std::io::Error::other(format!("spill segment {} is gone", off >> SEG_BITS))
            })?;
            file.read_exact_at(&mut raw[..len], off & (SEG_SIZE - 1))?;
            let (prev, refs) = decode(&raw[..len])?;
            chunks.push(refs);
            p = prev;
        }
        Ok(chunks.into_iter().rev().flatten().collect())
    }

    /// A call that pinned segment `seg` no longer needs its chunks.
    pub(crate) fn unpin(&self, seg: u64) {
        let mut s = self.lock();
        if let Some(g) = s.segments.get_mut(&seg) {
            g.pins = g.pins.saturating_sub(1);
        }
        s.collect();
    }
}

impl State {
    /// The global offset for a chunk of `len` bytes: the current position,
    /// or the start of a new segment when it does not fit in this one.
    fn place(&mut self, len: usize) -> std::io::Result<u64> {
        let mut off = self.pos;
        let seg = off >> SEG_BITS;
        let fits = (off & (SEG_SIZE - 1)) + len as u64 <= SEG_SIZE;
        if !fits || !self.segments.contains_key(&seg) {
            if !fits {
                self.flush()?;
                off = (seg + 1) << SEG_BITS;
                self.pos = off;
                self.buf_start = off;
            }
            self.open_segment(off >> SEG_BITS)?;
            self.collect();
        }
        Ok(off)
    }

    fn open_segment(&mut self, seg: u64) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        // Unique among the spills of this process (one per call table).
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self
            .dir
            .join(format!(".voxtap-spill-{}-{n}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        // Unlinked at once: the open handles keep it while needed.
        std::fs::remove_file(&path)?;
        self.segments.insert(
            seg,
            Segment {
                file: Arc::new(file),
                pins: 0,
            },
        );
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let seg = self.buf_start >> SEG_BITS;
        let g = self
            .segments
            .get(&seg)
            .ok_or_else(|| std::io::Error::other("spill segment not open"))?;
        g.file
            .write_all_at(&self.buf, self.buf_start & (SEG_SIZE - 1))?;
        self.buf_start += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    fn fail(&mut self) {
        self.failed = true;
        self.buf = Vec::new();
    }

    /// Closes the segments before the oldest pinned one (never the one
    /// being written).
    fn collect(&mut self) {
        let current = self.pos >> SEG_BITS;
        let oldest = self
            .segments
            .iter()
            .find(|(_, g)| g.pins > 0)
            .map_or(current, |(k, _)| (*k).min(current));
        self.segments.retain(|k, _| *k >= oldest);
    }
}

fn put_varint(out: &mut [u8], mut at: usize, mut v: u64) -> usize {
    while v >= 0x80 {
        out[at] = (v as u8) | 0x80;
        v >>= 7;
        at += 1;
    }
    out[at] = v as u8;
    at + 1
}

fn get_varint(b: &[u8], at: &mut usize) -> std::io::Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b
            .get(*at)
            .ok_or_else(|| std::io::Error::other("spill chunk cut short"))?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(v);
        }
    }
    Err(std::io::Error::other("spill chunk: bad varint"))
}

fn zigzag(d: i64) -> u64 {
    ((d << 1) ^ (d >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A chunk is its previous chunk's address (8 bytes, little-endian), then
/// each reference as (time, reference) differences from the one before
/// (the first from zero), zigzag varints: this body.
#[cfg(test)]
fn encode_body(refs: &[(u64, PacketRef)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut prev = (0, PacketRef(0));
    for &r in refs {
        encode_ref(prev, r, &mut out);
        prev = r;
    }
    out
}

/// Appends reference `r` to `out` as its differences from `prev` (see
/// `encode_body`); the largest takes 20 bytes.
#[cfg(test)]
fn encode_ref(prev: (u64, PacketRef), r: (u64, PacketRef), out: &mut Vec<u8>) {
    let mut b = [0u8; 20];
    let n = encode_ref_into(prev, r, &mut b);
    out.extend_from_slice(&b[..n]);
}

/// Reference `r` as its differences from `prev` (see `encode_body`) into
/// `b`; returns how many bytes it took (at most 20).
pub(crate) fn encode_ref_into(
    prev: (u64, PacketRef),
    r: (u64, PacketRef),
    b: &mut [u8; 20],
) -> usize {
    let at = put_varint(b, 0, zigzag(r.0.wrapping_sub(prev.0) as i64));
    put_varint(b, at, zigzag(r.1.0.wrapping_sub(prev.1.0) as i64))
}

fn decode(b: &[u8]) -> std::io::Result<(ChunkPtr, Vec<(u64, PacketRef)>)> {
    let head: [u8; 8] = b
        .get(..8)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| std::io::Error::other("spill chunk cut short"))?;
    let mut refs = Vec::with_capacity(CHUNK);
    decode_body(&b[8..], &mut refs)?;
    Ok((u64::from_le_bytes(head), refs))
}

/// Appends the references of a chunk body (encoded from a zero base) to
/// `refs`.
pub(crate) fn decode_body(b: &[u8], refs: &mut Vec<(u64, PacketRef)>) -> std::io::Result<()> {
    let mut at = 0;
    let (mut t, mut r) = (0u64, 0u64);
    while at < b.len() {
        t = t.wrapping_add(unzigzag(get_varint(b, &mut at)?) as u64);
        r = r.wrapping_add(unzigzag(get_varint(b, &mut at)?) as u64);
        refs.push((t, PacketRef(r)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip_including_extremes() {
        let refs = vec![
            (5, PacketRef::new(0, 24)),
            (3, PacketRef::new(7, 1 << 40)),
            (u64::MAX, PacketRef::NOT_STORED),
            (0, PacketRef(0)),
        ];
        let buf = [&42u64.to_le_bytes()[..], &encode_body(&refs)].concat();
        assert_eq!(decode(&buf).unwrap(), (42, refs));
    }

    #[test]
    fn chains_read_back_in_order_and_segments_are_closed_when_unpinned() {
        let dir = std::env::temp_dir().join(format!("voxtap-spill-test-{}", std::process::id()));
        let spill = Spill::new(&dir);
        let chunk = |i: u64| -> Vec<(u64, PacketRef)> {
            (0..CHUNK as u64)
                .map(|k| (i * 100 + k, PacketRef::new(1, i * 1000 + k)))
                .collect()
        };
        let (p1, seg) = spill.append(0, &chunk(0), true).unwrap();
        let (p2, _) = spill.append(p1, &chunk(1), false).unwrap();
        let (p3, _) = spill.append(p2, &chunk(2), false).unwrap();
        // Read before anything reached the file: the read flushes first.
        let all = spill.read_chain(p3).unwrap();
        assert_eq!(all, [chunk(0), chunk(1), chunk(2)].concat());
        assert_eq!(spill.read_chain(p1).unwrap(), chunk(0));
        assert_eq!(spill.stats().segments, 1);
        spill.unpin(seg);
        // The segment being written stays open.
        assert_eq!(spill.stats().segments, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
