//! Rolling files held in S3, read back for `store::extract_call_with`
//! without downloading them: the call's records are known by offset (the
//! store index), and a record is at most 16 + snaplen bytes, so the bytes to
//! fetch are known before reading. Ranges closer than [`GAP`] are joined
//! into one ranged GET. The fetched ranges form a sparse view of the file
//! that the ordinary pcap reader reads, so a call extracted from S3 is the
//! same PCAP as one extracted from the local files.

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
pub const GAP: u64 = 4096;
const FILE_HEADER: u64 = 24;
const RECORD_HEADER: u64 = 16;
/// A fetch on a miss (a record longer than the snap length says) reads at
/// least this much.
const MISS_FETCH: u64 = 64 << 10;

/// Byte ranges `[start, end)` covering the records at `offsets` (each at
/// most `RECORD_HEADER + snaplen` long) in a file of `size` bytes, joined
/// when closer than `gap`.
pub fn plan_ranges(offsets: &[u64], snaplen: u64, size: u64, gap: u64) -> Vec<(u64, u64)> {
    let mut sorted: Vec<u64> = offsets.to_vec();
    sorted.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for off in sorted {
        if off >= size {
            continue;
        }
        let end = off.saturating_add(RECORD_HEADER + snaplen).min(size);
        match out.last_mut() {
            Some(last) if off <= last.1.saturating_add(gap) => last.1 = last.1.max(end),
            _ => out.push((off, end)),
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
            let snaplen = pcap_snaplen(&header)
                .ok_or_else(|| format!("s3://{}/{key}: not a pcap file", self.s3.bucket()))?;
            let mut chunks = BTreeMap::new();
            chunks.insert(0, header);
            for (start, end) in plan_ranges(offsets, snaplen, size, GAP) {
                let data = self.fetch(&key, start, end)?;
                chunks.insert(start, data);
            }
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

/// Snap length from a classic pcap header (either byte order).
fn pcap_snaplen(h: &[u8]) -> Option<u64> {
    let m: [u8; 4] = h.get(..4)?.try_into().ok()?;
    let s: [u8; 4] = h.get(16..20)?.try_into().ok()?;
    let le = matches!(u32::from_le_bytes(m), 0xa1b2_c3d4 | 0xa1b2_3c4d);
    let be = matches!(u32::from_be_bytes(m), 0xa1b2_c3d4 | 0xa1b2_3c4d);
    match (le, be) {
        (true, _) => Some(u64::from(u32::from_le_bytes(s))),
        (_, true) => Some(u64::from(u32::from_be_bytes(s))),
        _ => None,
    }
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
        let (&start, data) = self.chunks.range(..=pos).next_back()?;
        let at = usize::try_from(pos - start).ok()?;
        data.get(at..).filter(|s| !s.is_empty())
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
    fn snaplen_both_orders() {
        let mut h = vec![0u8; 24];
        h[..4].copy_from_slice(&0xa1b2_3c4du32.to_le_bytes());
        h[16..20].copy_from_slice(&2048u32.to_le_bytes());
        assert_eq!(pcap_snaplen(&h), Some(2048));
        h[..4].copy_from_slice(&0xa1b2_c3d4u32.to_be_bytes());
        h[16..20].copy_from_slice(&65535u32.to_be_bytes());
        assert_eq!(pcap_snaplen(&h), Some(65535));
        assert_eq!(pcap_snaplen(b"garbage"), None);
    }
}
