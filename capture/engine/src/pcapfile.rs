//! Capture files opened by path: the I/O half of the protocol crate's
//! `pcapio`, which reads from any `Read` and never touches the file system.
//!
//! A gzip- or zstd-compressed capture (rotating capture tools compress
//! what they roll) is recognised by its magic number and decompressed into
//! an anonymous temporary file (in `$TMPDIR`, deleted when the reader is
//! dropped) before it is read: offsets (`PacketRecord::offset`, what
//! `read_at` takes) are then offsets in the decompressed capture, and
//! random access costs what it costs on a plain file. The price is disk
//! space for the decompressed copy while the reader lives, and one more
//! decompression for each reader opened on the same file (an import's
//! sequential pass, then its call writer's random reads).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
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
    let mut f = File::open(path)?;
    if let Some(c) = Compression::sniff(&mut f)? {
        f = decompress(c, f, path)?;
    }
    PcapReader::new_seekable(BufReader::with_capacity(capacity, f))
}

/// Bytes of the capture the reader reads (for a compressed file, of its
/// decompressed copy): what `bytes_read` counts up to.
pub fn content_len(r: &FileReader) -> u64 {
    r.get_ref().get_ref().metadata().map_or(0, |m| m.len())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Compression {
    Gzip,
    Zstd,
}

impl Compression {
    /// The compression `f` starts with, if any; `f` is left at its start.
    fn sniff(f: &mut File) -> io::Result<Option<Compression>> {
        let mut m = [0u8; 4];
        let mut n = 0;
        while n < m.len() {
            match f.read(&mut m[n..])? {
                0 => break,
                k => n += k,
            }
        }
        f.seek(SeekFrom::Start(0))?;
        Ok(match &m[..n] {
            [0x1f, 0x8b, ..] => Some(Compression::Gzip),
            [0x28, 0xb5, 0x2f, 0xfd] => Some(Compression::Zstd),
            _ => None,
        })
    }
}

#[cfg(target_os = "linux")]
fn zstd_decoder(input: BufReader<File>) -> std::io::Result<Box<dyn Read>> {
    Ok(Box::new(zstd::stream::read::Decoder::with_buffer(input)?))
}

/// Builds without the zstd C library (macOS) say so instead of misreading.
#[cfg(not(target_os = "linux"))]
fn zstd_decoder(_input: BufReader<File>) -> std::io::Result<Box<dyn Read>> {
    Err(std::io::Error::other(
        "zstd-compressed capture: this build has no zstd decoder; decompress it with `zstd -d` first",
    ))
}

/// The decompressed bytes of `f`, in an anonymous temporary file. Damage in
/// the middle of the stream keeps what was decompressed before it (the
/// capture reader then reports the cut-off record as truncated); damage
/// before the first byte is an error.
fn decompress(c: Compression, f: File, path: &Path) -> Result<File, PcapError> {
    let input = BufReader::with_capacity(1 << 16, f);
    let mut decoder: Box<dyn Read> = match c {
        // Several gzip members (concatenated files) are one stream.
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Compression::Zstd => zstd_decoder(input)?,
    };
    let mut out = BufWriter::with_capacity(1 << 16, tempfile::tempfile()?);
    let copied = copy_counting(&mut decoder, &mut out);
    let mut out = out.into_inner().map_err(|e| e.into_error())?;
    match copied {
        Ok(n) => tracing::debug!(file = %path.display(), ?c, bytes = n, "decompressed"),
        Err((0, e)) => return Err(PcapError::Io(e)),
        Err((n, e)) => tracing::warn!(
            file = %path.display(), ?c, bytes = n, error = %e,
            "compressed capture damaged: reading what was decompressed before the damage"
        ),
    }
    out.seek(SeekFrom::Start(0))?;
    Ok(out)
}

/// `io::copy`, telling how much was copied when it fails.
fn copy_counting(r: &mut dyn Read, w: &mut impl Write) -> Result<u64, (u64, io::Error)> {
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err((total, e)),
        };
        w.write_all(&buf[..n]).map_err(|e| (total, e))?;
        total += n as u64;
    }
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
