//! Classic pcap writer (nanosecond timestamps, little endian).

use std::io::{self, Write};

use super::LinkType;

const MAGIC_NS: u32 = 0xa1b2_3c4d;
const NS_PER_S: u64 = 1_000_000_000;

pub struct PcapWriter<W: Write> {
    w: W,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header.
    pub fn new(mut w: W, link: LinkType, snaplen: u32) -> io::Result<Self> {
        w.write_all(&file_header(link, snaplen))?;
        Ok(PcapWriter { w })
    }

    /// `orig_len` smaller than `data.len()` is raised to it: readers reject
    /// records that claim more captured than original bytes.
    pub fn write_packet(&mut self, ts_ns: u64, orig_len: u32, data: &[u8]) -> io::Result<()> {
        self.w
            .write_all(&record_header(ts_ns, orig_len, data.len())?)?;
        self.w.write_all(data)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    pub fn into_inner(self) -> W {
        self.w
    }
}

/// The 24-byte header [`PcapWriter::new`] writes, for a caller that writes
/// the file itself (several buffers per system call).
pub fn file_header(link: LinkType, snaplen: u32) -> [u8; 24] {
    let mut h = [0u8; 24];
    put(&mut h, 0, MAGIC_NS);
    put16(&mut h, 4, 2);
    put16(&mut h, 6, 4);
    // thiszone and sigfigs stay 0, as every modern writer does.
    put(&mut h, 16, snaplen);
    put(&mut h, 20, link.dlt());
    h
}

/// The 16-byte record header [`PcapWriter::write_packet`] writes before a
/// packet of `caplen` bytes (`orig_len` raised to it if smaller).
pub fn record_header(ts_ns: u64, orig_len: u32, caplen: usize) -> io::Result<[u8; 16]> {
    let caplen = u32::try_from(caplen)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "packet longer than 4 GiB"))?;
    let secs = u32::try_from(ts_ns / NS_PER_S).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "timestamp beyond 2106 does not fit classic pcap",
        )
    })?;
    // Always < 1e9, so it fits.
    let nanos = (ts_ns % NS_PER_S) as u32;
    let mut h = [0u8; 16];
    put(&mut h, 0, secs);
    put(&mut h, 4, nanos);
    put(&mut h, 8, caplen);
    put(&mut h, 12, orig_len.max(caplen));
    Ok(h)
}

fn put(buf: &mut [u8], at: usize, v: u32) {
    if let Some(d) = buf.get_mut(at..at.wrapping_add(4)) {
        d.copy_from_slice(&v.to_le_bytes());
    }
}

fn put16(buf: &mut [u8], at: usize, v: u16) {
    if let Some(d) = buf.get_mut(at..at.wrapping_add(2)) {
        d.copy_from_slice(&v.to_le_bytes());
    }
}
