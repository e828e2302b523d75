//! Capture files opened by path: the I/O half of the protocol crate's
//! `pcapio`, which reads from any `Read` and never touches the file system.

use std::fs::File;
use std::io::BufReader;
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
    let f = File::open(path)?;
    PcapReader::new(BufReader::with_capacity(capacity, f))
}
