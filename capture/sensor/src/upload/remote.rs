//! Rolling files held in S3, read back for `store::extract_call_with`
//! without downloading them. The store index gives each of the call's
//! records by offset, not by length, so:
//!
//! 1. one GET for the file header (byte order, snap length);
//! 2. for each record, `[offset, offset + 16 + GUESS)` (a G.711/G.722 RTP
//!    frame fits), ranges closer than [`GAP`] joined, fetched
//!    [`PARALLEL_GETS`](super::s3::PARALLEL_GETS) at a time;
//! 3. the record headers now known, the tails of longer records (SIP,
//!    video) in a second parallel round.
//!
//! The fetched ranges form a sparse view of the file that the ordinary pcap
//! reader reads, so a call extracted from S3 is the same PCAP as one
//! extracted from the local files; a read outside them fetches what is
//! missing (never the whole file).

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::queue::Queue;
use super::s3::S3;
use super::{UploadConfig, UploadError};
use crate::store::{FileRow, ReadSeek, RemoteFiles};

/// Ranges whose gap is below this are fetched as one GET: a request costs
/// more than a few KiB of transfer.
pub const GAP: u64 = 1024;
const FILE_HEADER: u64 = 24;
const RECORD_HEADER: u64 = 16;
/// Bytes of a record guessed before its header is known.
pub(crate) const GUESS: u64 = 256;
/// A fetch on a miss reads at least this much.
const MISS_FETCH: u64 = 4096;

/// Byte ranges `[start, end)` covering `[offset, offset + 16 + len)` for
/// each record (clamped to the file's `size`), joined when closer than `gap`.
pub(crate) fn plan_ranges(offsets: &[u64], len: u64, size: u64, gap: u64) -> Vec<(u64, u64)> {
    let mut sorted: Vec<u64> = offsets.to_vec();
    sorted.sort_unstable();
    let spans: Vec<(u64, u64)> = sorted
        .into_iter()
        .filter(|&off| off < size)
        .map(|off| (off, off.saturating_add(RECORD_HEADER + len).min(size)))
        .collect();
    join_ranges(spans, gap)
}

/// Sorted `spans` joined where they overlap or are closer than `gap`.
fn join_ranges(spans: Vec<(u64, u64)>, gap: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (start, end) in spans {
        match out.last_mut() {
            Some(last) if start <= last.1.saturating_add(gap) => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

/// GET figures, shared by every reader of one [`S3RemoteFiles`].
#[derive(Debug, Default)]
pub struct GetStats {
    pub requests: AtomicU64,
    pub bytes: AtomicU64,
}

/// The rolling files the upload queue says are confirmed in S3.
pub struct S3RemoteFiles {
    s3: Arc<S3>,
    queue: Queue,
    pub stats: Arc<GetStats>,
}

impl S3RemoteFiles {
    /// `None` when no uploader ever ran on this store.
    pub fn open(cfg: &UploadConfig, store: &Path) -> Result<Option<Self>, UploadError> {
        let Some(queue) = Queue::open_read_only(store)? else {
            return Ok(None);
        };
        Ok(Some(S3RemoteFiles {
            s3: Arc::new(S3::new(cfg)?),
            queue,
            stats: Arc::default(),
        }))
    }

    fn fetch(&self, key: &str, start: u64, end: u64) -> Result<Vec<u8>, String> {
        fetch(&self.s3, &self.stats, key, start, end)
    }

    fn fetch_all(
        &self,
        key: &str,
        ranges: &[(u64, u64)],
        chunks: &mut BTreeMap<u64, Vec<u8>>,
    ) -> Result<(), String> {
        let data = self
            .s3
            .get_ranges(key, ranges)
            .map_err(|e| format!("s3://{}/{key}: {e}", self.s3.bucket()))?;
        for (&(start, _), d) in ranges.iter().zip(data) {
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            self.stats
                .bytes
                .fetch_add(d.len() as u64, Ordering::Relaxed);
            // A tail starts where an earlier chunk ends: never at the same
            // offset as one, so nothing is replaced.
            chunks.insert(start, d);
        }
        Ok(())
    }
}

fn fetch(s3: &S3, stats: &GetStats, key: &str, start: u64, end: u64) -> Result<Vec<u8>, String> {
    let data = s3
        .get_range(key, start, end)
        .map_err(|e| format!("s3://{}/{key}: {e}", s3.bucket()))?;
    stats.requests.fetch_add(1, Ordering::Relaxed);
    stats.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
    Ok(data)
}

impl RemoteFiles for S3RemoteFiles {
    fn open(&self, f: &FileRow, offsets: &[u64]) -> Option<Result<Box<dyn ReadSeek>, String>> {
        let (key, size) = match self.queue.raw_object(f.id) {
            Ok(Some(o)) => o,
            Ok(None) => return None,
            Err(e) => return Some(Err(e.to_string())),
        };
        Some((|| {
            let header = self.fetch(&key, 0, FILE_HEADER.min(size))?;
            let (big, snaplen) = pcap_header(&header)
                .ok_or_else(|| format!("s3://{}/{key}: not a pcap file", self.s3.bucket()))?;
            let mut chunks = BTreeMap::new();
            chunks.insert(0, header);
            let first = plan_ranges(offsets, GUESS.min(snaplen), size, GAP);
            self.fetch_all(&key, &first, &mut chunks)?;
            // Tails of the records longer than the guess.
            let mut tails = Vec::new();
            for &off in offsets {
                let mut h = [0u8; RECORD_HEADER as usize];
                if !copy_from(&chunks, off, &mut h) {
                    continue;
                }
                let incl = rd32(big, &h[8..12]);
                let end = (off + RECORD_HEADER + incl).min(size);
                let have = covered_until(&chunks, off);
                if have < end {
                    tails.push((have, end));
                }
            }
            tails.sort_unstable();
            let tails = join_ranges(tails, GAP);
            self.fetch_all(&key, &tails, &mut chunks)?;
            let r: Box<dyn ReadSeek> = Box::new(SparseFile {
                chunks,
                len: size,
                pos: 0,
                s3: Arc::clone(&self.s3),
                stats: Arc::clone(&self.stats),
                key,
            });
            Ok(r)
        })())
    }

    fn why_not(&self, f: &FileRow) -> Option<String> {
        match self.queue.raw_state(f.id) {
            Ok(Some(state)) => Some(format!("S3 upload state: {state}")),
            Ok(None) => Some("never queued for S3".into()),
            Err(e) => Some(e.to_string()),
        }
    }
}

/// Byte order (big-endian?) and snap length of a classic pcap header.
fn pcap_header(h: &[u8]) -> Option<(bool, u64)> {
    let m: [u8; 4] = h.get(..4)?.try_into().ok()?;
    let s = h.get(16..20)?;
    let le = matches!(u32::from_le_bytes(m), 0xa1b2_c3d4 | 0xa1b2_3c4d);
    let be = matches!(u32::from_be_bytes(m), 0xa1b2_c3d4 | 0xa1b2_3c4d);
    match (le, be) {
        (true, _) => Some((false, rd32(false, s))),
        (_, true) => Some((true, rd32(true, s))),
        _ => None,
    }
}

fn rd32(big: bool, b: &[u8]) -> u64 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(..4) {
        a.copy_from_slice(s);
    }
    u64::from(if big {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    })
}

/// The end of the fetched bytes that run contiguously from `pos`.
fn covered_until(chunks: &BTreeMap<u64, Vec<u8>>, pos: u64) -> u64 {
    let mut at = pos;
    while let Some((&start, d)) = chunks.range(..=at).next_back() {
        let end = start + d.len() as u64;
        if end <= at {
            break;
        }
        at = end;
    }
    at
}

/// Copies `out.len()` bytes at `pos` from the chunks, if all are fetched.
fn copy_from(chunks: &BTreeMap<u64, Vec<u8>>, pos: u64, out: &mut [u8]) -> bool {
    let mut done = 0;
    while done < out.len() {
        let at = pos + done as u64;
        let Some((&start, d)) = chunks.range(..=at).next_back() else {
            return false;
        };
        let Some(src) = usize::try_from(at - start).ok().and_then(|i| d.get(i..)) else {
            return false;
        };
        if src.is_empty() {
            return false;
        }
        let n = src.len().min(out.len() - done);
        out[done..done + n].copy_from_slice(&src[..n]);
        done += n;
    }
    true
}

/// A file of which only some byte ranges were fetched; reading elsewhere
/// fetches that part (a record longer than planned), never the whole file.
struct SparseFile {
    chunks: BTreeMap<u64, Vec<u8>>,
    len: u64,
    pos: u64,
    s3: Arc<S3>,
    stats: Arc<GetStats>,
    key: String,
}

impl SparseFile {
    fn chunk_at(&self, pos: u64) -> Option<&[u8]> {
        // A long tail may span a later short chunk: look a few chunks back.
        self.chunks
            .range(..=pos)
            .rev()
            .take(8)
            .find_map(|(&start, data)| {
                let at = usize::try_from(pos - start).ok()?;
                data.get(at..).filter(|s| !s.is_empty())
            })
    }
}

impl Read for SparseFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        if self.chunk_at(self.pos).is_none() {
            let end = self
                .pos
                .saturating_add(MISS_FETCH.max(buf.len() as u64))
                .min(self.len);
            let data =
                fetch(&self.s3, &self.stats, &self.key, self.pos, end).map_err(io::Error::other)?;
            self.chunks.insert(self.pos, data);
        }
        let Some(src) = self.chunk_at(self.pos) else {
            return Err(io::Error::other("remote range not fetched"));
        };
        let n = src.len().min(buf.len());
        buf[..n].copy_from_slice(&src[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SparseFile {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let p = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = p.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad seek"))?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_records_and_join_when_close() {
        // Records at 24 and 100 overlap once widened to 16 + 64 bytes;
        // 5000 is more than GAP past their end; 9990 is clamped to the size.
        assert_eq!(
            plan_ranges(&[100, 24, 5000, 9990], 64, 10_000, 1000),
            vec![(24, 180), (5000, 5080), (9990, 10_000)]
        );
        // Within the gap: one range.
        assert_eq!(plan_ranges(&[0, 1000], 64, 10_000, 1000), vec![(0, 1080)]);
        assert!(plan_ranges(&[20_000], 64, 10_000, 1000).is_empty());
    }

    #[test]
    fn header_both_orders() {
        let mut h = vec![0u8; 24];
        h[..4].copy_from_slice(&0xa1b2_3c4du32.to_le_bytes());
        h[16..20].copy_from_slice(&2048u32.to_le_bytes());
        assert_eq!(pcap_header(&h), Some((false, 2048)));
        h[..4].copy_from_slice(&0xa1b2_c3d4u32.to_be_bytes());
        h[16..20].copy_from_slice(&65535u32.to_be_bytes());
        assert_eq!(pcap_header(&h), Some((true, 65535)));
        assert_eq!(pcap_header(b"garbage"), None);
    }

    #[test]
    fn chunks_coverage_and_copy_across_chunks() {
        let mut c = BTreeMap::new();
        c.insert(10u64, vec![1u8, 2, 3]);
        c.insert(13u64, vec![4u8, 5]);
        c.insert(20u64, vec![9u8]);
        assert_eq!(covered_until(&c, 11), 15);
        assert_eq!(covered_until(&c, 16), 16);
        let mut out = [0u8; 4];
        assert!(copy_from(&c, 11, &mut out));
        assert_eq!(out, [2, 3, 4, 5]);
        assert!(!copy_from(&c, 13, &mut out));
    }
}
