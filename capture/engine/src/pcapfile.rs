//! Capture files opened by path: the I/O half of the protocol crate's
//! `pcapio`, which reads from any `Read` and never touches the file system.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use voxtap_proto::pcapio::{PcapError, PcapReader};

/// A reader over a file on disk.
pub type FileReader = PcapReader<BufReader<File>>;

/// Opens `path` with a 64 KiB read buffer (sequential reading).
pub fn open(path: &Path) -> Result<FileReader, PcapError> {
    open_with_capacity(path, 1 << 16)
}

/// A reader with a read buffer of `capacity` bytes: large for sequential
/// reading, small for random access (every seek refills the buffer).
pub fn open_with_capacity(path: &Path, capacity: usize) -> Result<FileReader, PcapError> {
    let f = File::open(path)?;
    PcapReader::new(BufReader::with_capacity(capacity, f))
}

/// A file read through one large window: a seek costs nothing, and a read
/// outside the window refills it at that place (one `pread`). Records read
/// in offset order (the packets of many calls at once) then cost one system
/// call per window, not one seek per record. For files that only grow (a
/// capture being appended to): bytes once read are never read again.
pub struct WindowReader {
    file: File,
    /// How far the next refill should read (a file offset set by the
    /// caller, who knows which records it wants next): at least 4 KiB, at
    /// most the window.
    reach: Arc<AtomicU64>,
    buf: Vec<u8>,
    /// File offset of `buf[0]`, and how much of `buf` holds file bytes.
    start: u64,
    len: usize,
    pos: u64,
}

impl WindowReader {
    pub fn new(file: File, window: usize) -> Self {
        WindowReader {
            file,
            reach: Arc::new(AtomicU64::new(u64::MAX)),
            buf: vec![0; window.max(1)],
            start: 0,
            len: 0,
            pos: 0,
        }
    }

    /// Where the caller sets how far the next refill reads.
    pub fn reach(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.reach)
    }

    fn fill_at(&mut self, at: u64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.start = at;
        self.len = 0;
        let window = self.buf.len() as u64;
        let want = (self.reach.load(Ordering::Relaxed).saturating_sub(at))
            .clamp(window.min(4096), window) as usize;
        while self.len < want {
            let n = self
                .file
                .read_at(&mut self.buf[self.len..want], at + self.len as u64)?;
            if n == 0 {
                break;
            }
            self.len += n;
        }
        Ok(())
    }
}

impl std::io::Read for WindowReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let end = self.start + self.len as u64;
        if self.pos < self.start || self.pos >= end {
            self.fill_at(self.pos)?;
            if self.len == 0 {
                return Ok(0);
            }
        }
        let at = (self.pos - self.start) as usize;
        let n = out.len().min(self.len - at);
        out[..n].copy_from_slice(&self.buf[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl std::io::Seek for WindowReader {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        use std::io::SeekFrom;
        let base = match to {
            SeekFrom::Start(p) => {
                self.pos = p;
                return Ok(p);
            }
            SeekFrom::Current(d) => (self.pos, d),
            SeekFrom::End(d) => (self.file.metadata()?.len(), d),
        };
        self.pos = base
            .0
            .checked_add_signed(base.1)
            .ok_or_else(|| std::io::Error::other("seek before the start of the file"))?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom};

    #[test]
    fn window_reader_reads_like_the_file_across_window_edges() {
        let path = std::env::temp_dir().join(format!("voxtap-window-{}", std::process::id()));
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let mut r = WindowReader::new(File::open(&path).unwrap(), 1000);
        for &(at, n) in &[
            (0usize, 10usize),
            (995, 20),
            (3000, 2500),
            (9990, 10),
            (5, 5),
        ] {
            r.seek(SeekFrom::Start(at as u64)).unwrap();
            let mut out = vec![0; n];
            r.read_exact(&mut out).unwrap();
            assert_eq!(out, data[at..at + n], "at {at}");
        }
        r.seek(SeekFrom::Start(10_000)).unwrap();
        assert_eq!(r.read(&mut [0; 4]).unwrap(), 0);
        assert_eq!(r.seek(SeekFrom::End(-4)).unwrap(), 9_996);
        let _ = std::fs::remove_file(&path);
    }
}
