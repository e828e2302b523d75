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
