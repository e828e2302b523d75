//! Reading classic pcap, pcapng, snoop and NetMon 2.x files (naming the
//! other formats it does not read), writing classic pcap. The only module
//! of the capture protocol stack that does I/O, and only through the
//! `Read` (and `Seek`) it is given.
//!
//! Like Wireshark, a record whose captured length exceeds its original
//! length is read as it is; the damage rule (stop, report, keep what came
//! before) applies when a length exceeds the snap length (256 KiB) or the
//! file (its block, or the end of the data).
//!
//! The reader owns one buffer that every record is read into, so a long file
//! is read without an allocation per packet; a [`PacketRecord`] borrows that
//! buffer until the next call.

mod formats;
#[cfg(test)]
mod tests;
mod writer;

#[cfg(test)]
use std::fs::File;
#[cfg(test)]
use std::io::BufReader;
use std::io::{self, Read, Seek, SeekFrom};
#[cfg(test)]
use std::path::Path;

pub use formats::other_format;
pub use writer::{PcapWriter, file_header, record_header};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    Null,
    Ethernet,
    Raw,
    Loop,
    LinuxSll,
    LinuxSll2,
    Ipv4,
    Ipv6,
}

impl LinkType {
    /// From a pcap/pcapng LINKTYPE (or one of the OS-specific DLT_RAW values
    /// 12 and 14 that old writers leaked into files).
    pub fn from_dlt(dlt: u32) -> Option<LinkType> {
        Some(match dlt {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            12 | 14 | 101 => LinkType::Raw,
            108 => LinkType::Loop,
            113 => LinkType::LinuxSll,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            276 => LinkType::LinuxSll2,
            _ => return None,
        })
    }

    /// The LINKTYPE value written to files.
    pub fn dlt(self) -> u32 {
        match self {
            LinkType::Null => 0,
            LinkType::Ethernet => 1,
            LinkType::Raw => 101,
            LinkType::Loop => 108,
            LinkType::LinuxSll => 113,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
            LinkType::LinuxSll2 => 276,
        }
    }
}

/// One packet as read from the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketRecord<'a> {
    /// Nanoseconds since the UNIX epoch.
    pub ts_ns: u64,
    /// Length on the wire.
    pub orig_len: u32,
    /// Captured bytes.
    pub data: &'a [u8],
    pub link: LinkType,
    /// Byte offset in the file of this record's header (pcap) or block
    /// (pcapng); give it to [`PcapReader::read_at`] to read the record again.
    pub offset: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    Pcap,
    PcapNg,
    /// Sun snoop (RFC 1761).
    Snoop,
    /// Microsoft Network Monitor 2.x.
    NetMon,
}

#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("capture file I/O: {0}")]
    Io(#[from] io::Error),
    #[error(
        "not a pcap or pcapng file (magic {0:#010x}): if Wireshark reads it, convert it with `editcap -F pcap IN OUT`"
    )]
    BadMagic(u32),
    #[error(
        "a {0} file, which voxtap does not read (it reads pcap, pcapng, snoop and NetMon 2.x): convert it with `editcap -F pcap IN OUT` (adding `-T ether` if editcap cannot write its link type, as for nettl)"
    )]
    OtherFormat(&'static str),
    #[error("a {0} file is read through its index: it needs a seekable reader")]
    NeedsSeek(&'static str),
    #[error("capture file truncated in the record at byte offset {offset}")]
    Truncated { offset: u64 },
    #[error("bad record at byte offset {offset}: {reason}")]
    BadRecord { offset: u64, reason: &'static str },
    #[error("unsupported link type {0}")]
    UnsupportedLinkType(u32),
}

/// Larger than any real MTU or offload super-packet we expect to see; a bigger
/// captured length is corruption, not data.
pub(crate) const MAX_CAPLEN: u32 = 256 * 1024;
/// A packet block may carry options after the data.
const MAX_BLOCK: u32 = MAX_CAPLEN + 64 * 1024;

const MAGIC_US: u32 = 0xa1b2_c3d4;
const MAGIC_NS: u32 = 0xa1b2_3c4d;
const SHB: u32 = 0x0a0d_0d0a;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
const IDB: u32 = 1;
const PB: u32 = 2;
const SPB: u32 = 3;
const EPB: u32 = 6;

#[derive(Clone, Copy, Debug)]
enum TsRes {
    Pow10(u8),
    Pow2(u8),
}

#[derive(Clone, Copy, Debug)]
struct Iface {
    link: Option<LinkType>,
    dlt: u32,
    snaplen: u32,
    res: TsRes,
    offset_s: i64,
}

/// A pcapng section: interface ids in its blocks are relative to
/// `iface_base` in the reader's interface list, which only ever grows, so
/// `read_at` can resolve blocks of any section seen so far.
#[derive(Clone, Copy, Debug)]
struct Section {
    offset: u64,
    big: bool,
    iface_base: usize,
}

#[derive(Debug)]
enum Kind {
    Pcap {
        big: bool,
        nanos: bool,
        link: LinkType,
    },
    PcapNg {
        ifaces: Vec<Iface>,
        sections: Vec<Section>,
    },
    Snoop {
        link: LinkType,
    },
    NetMon(formats::NetMon),
}

/// What the first bytes of a file said.
enum Opened {
    /// Header read, ready for packets.
    Ready,
    /// A NetMon 2.x magic: its frame table must be read (needs `Seek`).
    NetMon,
}

/// Where the current record's bytes are in the buffer, and what they are.
#[derive(Clone, Copy, Debug)]
struct Meta {
    ts_ns: u64,
    orig_len: u32,
    start: usize,
    len: usize,
    link: LinkType,
    offset: u64,
}

enum Block {
    Packet(Meta),
    Skip,
}

pub struct PcapReader<R> {
    r: R,
    /// Bytes of the file consumed by the records read so far (the file's
    /// position less what is read ahead).
    pos: u64,
    /// Sequential reading reads ahead into this and parses each record
    /// where it lies, instead of copying it out of the `BufReader`'s buffer
    /// into `buf` (two reads and a copy a record cost the import's reading
    /// thread about 250 instructions a packet; docs/performance.md,
    /// session 18).
    ahead: Ahead,
    /// Random access (`read_at`) reads each record into this, nothing
    /// ahead.
    buf: Vec<u8>,
    /// Reads go to `buf`, not through `ahead`.
    direct: bool,
    /// Where the last `read_buf`'s bytes are.
    block: BlockAt,
    done: bool,
    skipped: u64,
    kind: Kind,
}

/// What sequential reading reads ahead of the records: the unread bytes
/// are `bytes[head..tail]`.
#[derive(Default)]
struct Ahead {
    bytes: Vec<u8>,
    head: usize,
    tail: usize,
}

/// How much sequential reading asks the file for at once: more than a
/// `BufReader`'s usual buffer, which then reads straight into `ahead`.
const READ_AHEAD: usize = 256 * 1024;

/// The bytes a `read_buf` read: `len` from `start` in `ahead` or in `buf`.
#[derive(Clone, Copy, Debug, Default)]
struct BlockAt {
    in_ahead: bool,
    start: usize,
    len: usize,
}

/// Opening by path is I/O, which this crate does not do: the engine's
/// `pcapfile::open` is the product's way; this is for the unit tests.
#[cfg(test)]
impl PcapReader<BufReader<File>> {
    pub fn open(path: &Path) -> Result<Self, PcapError> {
        Self::open_with_capacity(path, 1 << 16)
    }

    /// A reader with a read buffer of `capacity` bytes: large for sequential
    /// reading, small for random access (every seek refills the buffer).
    pub fn open_with_capacity(path: &Path, capacity: usize) -> Result<Self, PcapError> {
        let f = File::open(path)?;
        PcapReader::new_seekable(BufReader::with_capacity(capacity, f))
    }
}

/// u32 at `at` in the file's byte order, 0 when out of range.
// Inlined: called per record header field, a call each otherwise.
#[inline]
fn rd32(big: bool, b: &[u8], at: usize) -> u32 {
    let a = crate::wire::array(b, at);
    if big {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

/// u16 at `at` in the file's byte order, 0 when out of range.
// Inlined: called per record header field, a call each otherwise.
#[inline]
fn rd16(big: bool, b: &[u8], at: usize) -> u16 {
    let a = crate::wire::array(b, at);
    if big {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    }
}

/// Reads until `buf` is full or EOF; returns how much was read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while let Some(rest) = buf.get_mut(n..) {
        if rest.is_empty() {
            break;
        }
        match r.read(rest) {
            Ok(0) => break,
            Ok(k) => n = n.saturating_add(k.min(rest.len())),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn ts_to_ns(units: u64, res: TsRes, offset_s: i64) -> u64 {
    const NS: u128 = 1_000_000_000;
    let u = u128::from(units);
    let ns = match res {
        TsRes::Pow10(k) if k <= 9 => u * 10u128.pow(u32::from(9 - k)),
        TsRes::Pow10(k) => 10u128.checked_pow(u32::from(k - 9)).map_or(0, |d| u / d),
        TsRes::Pow2(k) => (u * NS).checked_shr(u32::from(k)).unwrap_or(0),
    };
    let ns = (ns as i128).saturating_add(i128::from(offset_s).saturating_mul(NS as i128));
    u64::try_from(ns.max(0)).unwrap_or(u64::MAX)
}

fn bad(offset: u64, reason: &'static str) -> PcapError {
    PcapError::BadRecord { offset, reason }
}

impl<R: Read> PcapReader<R> {
    /// Reads and validates the file header (the first section header block
    /// for pcapng). NetMon files need [`PcapReader::new_seekable`].
    pub fn new(r: R) -> Result<Self, PcapError> {
        let mut me = Self::unopened(r);
        match me.read_header()? {
            Opened::Ready => Ok(me),
            Opened::NetMon => Err(PcapError::NeedsSeek("Microsoft NetMon 2.x")),
        }
    }

    fn unopened(r: R) -> Self {
        PcapReader {
            r,
            pos: 0,
            ahead: Ahead::default(),
            buf: Vec::new(),
            direct: false,
            block: BlockAt::default(),
            done: false,
            skipped: 0,
            kind: Kind::PcapNg {
                ifaces: Vec::new(),
                sections: Vec::new(),
            },
        }
    }

    /// The magic number and the header of the formats read sequentially.
    fn read_header(&mut self) -> Result<Opened, PcapError> {
        let mut m = [0u8; 4];
        if !self.read_small(&mut m, 0)? {
            return Err(PcapError::Truncated { offset: 0 });
        }
        if u32::from_le_bytes(m) == SHB {
            self.read_shb(0)?;
            return Ok(Opened::Ready);
        }
        let (big, nanos) = match (u32::from_le_bytes(m), u32::from_be_bytes(m)) {
            (MAGIC_US, _) => (false, false),
            (MAGIC_NS, _) => (false, true),
            (_, MAGIC_US) => (true, false),
            (_, MAGIC_NS) => (true, true),
            _ => return self.other_header(m),
        };
        let mut h = [0u8; 20];
        if !self.read_small(&mut h, 0)? {
            return Err(PcapError::Truncated { offset: 0 });
        }
        // The upper bits of the link type field carry FCS information.
        let dlt = rd32(big, &h, 16) & 0xffff;
        let link = LinkType::from_dlt(dlt).ok_or(PcapError::UnsupportedLinkType(dlt))?;
        self.kind = Kind::Pcap { big, nanos, link };
        Ok(Opened::Ready)
    }

    /// Not pcap or pcapng: snoop, NetMon 2.x, or a format named in the
    /// error.
    fn other_header(&mut self, m: [u8; 4]) -> Result<Opened, PcapError> {
        if &m == formats::NETMON2_MAGIC {
            return Ok(Opened::NetMon);
        }
        // Enough to name a format; exactly the rest of the header for snoop.
        let want = if &m == b"snoo" { 16 } else { 24 };
        let mut head = [0u8; 24];
        if let Some(first) = head.get_mut(..4) {
            first.copy_from_slice(&m);
        }
        let more = self.read_upto(head.get_mut(4..want).unwrap_or_default())?;
        let head = head.get(..4 + more).unwrap_or(&m);
        if head.starts_with(formats::SNOOP_MAGIC) {
            self.read_snoop_header(head)?;
            return Ok(Opened::Ready);
        }
        match formats::other_format(head) {
            Some(name) => Err(PcapError::OtherFormat(name)),
            None => Err(PcapError::BadMagic(u32::from_be_bytes(m))),
        }
    }

    pub fn format(&self) -> FileFormat {
        match self.kind {
            Kind::Pcap { .. } => FileFormat::Pcap,
            Kind::PcapNg { .. } => FileFormat::PcapNg,
            Kind::Snoop { .. } => FileFormat::Snoop,
            Kind::NetMon(_) => FileFormat::NetMon,
        }
    }

    /// The reader it reads from.
    pub fn get_ref(&self) -> &R {
        &self.r
    }

    /// Bytes consumed from the file so far.
    pub fn bytes_read(&self) -> u64 {
        self.pos
    }

    /// Packets dropped because their pcapng interface has a link type voxtap
    /// cannot decode.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The next packet; Ok(None) at a clean end of file, and forever after
    /// the first error (the caller keeps what was read and reports the rest).
    pub fn next_packet(&mut self) -> Result<Option<PacketRecord<'_>>, PcapError> {
        if self.done {
            return Ok(None);
        }
        let r = match self.kind {
            Kind::Pcap { .. } => self.next_pcap(),
            Kind::PcapNg { .. } => self.next_ng(),
            Kind::Snoop { .. } => self.next_snoop(),
            Kind::NetMon(_) => self.next_netmon(),
        };
        match r {
            Ok(Some(m)) => Ok(Some(self.record(m))),
            Ok(None) => {
                self.done = true;
                Ok(None)
            }
            Err(e) => {
                self.done = true;
                Err(e)
            }
        }
    }

    fn record(&self, m: Meta) -> PacketRecord<'_> {
        let data = self
            .block()
            .get(m.start..m.start.saturating_add(m.len))
            .unwrap_or(&[]);
        PacketRecord {
            ts_ns: m.ts_ns,
            orig_len: m.orig_len,
            data,
            link: m.link,
            offset: m.offset,
        }
    }

    /// The last [`Self::read_buf`]'s bytes.
    fn block(&self) -> &[u8] {
        let BlockAt {
            in_ahead,
            start,
            len,
        } = self.block;
        let src = if in_ahead {
            &self.ahead.bytes
        } else {
            &self.buf
        };
        src.get(start..start.saturating_add(len)).unwrap_or(&[])
    }

    /// At least `n` unread bytes in `ahead` if the file has them; how many
    /// there are, up to `n`.
    #[inline]
    fn fill(&mut self, n: usize) -> io::Result<usize> {
        if self.ahead.tail - self.ahead.head >= n {
            return Ok(n);
        }
        self.refill(n)
    }

    /// [`Self::fill`] when fewer than `n` bytes are ahead: reads from the
    /// file. Keeps the last block (a record's trailer or padding is read
    /// after its data).
    #[inline(never)]
    fn refill(&mut self, n: usize) -> io::Result<usize> {
        let PcapReader {
            r, ahead: a, block, ..
        } = self;
        let keep = if block.in_ahead {
            block.start.min(a.head)
        } else {
            a.head
        };
        if keep > 0 {
            a.bytes.copy_within(keep..a.tail, 0);
            a.head -= keep;
            a.tail -= keep;
            if block.in_ahead {
                block.start -= keep;
            }
        }
        let need = a.head.saturating_add(n);
        if a.bytes.len() < need.max(READ_AHEAD) {
            a.bytes.resize(need.max(READ_AHEAD), 0);
        }
        while a.tail < need {
            match r.read(a.bytes.get_mut(a.tail..).unwrap_or_default()) {
                Ok(0) => break,
                Ok(k) => a.tail = a.tail.saturating_add(k).min(a.bytes.len()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok((a.tail - a.head).min(n))
    }

    /// Takes `n` read bytes (at most what is unread) from `ahead`.
    #[inline]
    fn consume(&mut self, n: usize) -> usize {
        let n = n.min(self.ahead.tail - self.ahead.head);
        self.ahead.head += n;
        self.pos = self.pos.saturating_add(n as u64);
        n
    }

    /// Fills `out` as far as the file goes; how many bytes it got.
    fn read_upto(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.direct {
            let n = read_full(&mut self.r, out)?;
            self.pos = self.pos.saturating_add(n as u64);
            return Ok(n);
        }
        let n = self.fill(out.len())?;
        let head = self.ahead.head;
        if let (Some(dst), Some(src)) = (out.get_mut(..n), self.ahead.bytes.get(head..head + n)) {
            dst.copy_from_slice(src);
        }
        Ok(self.consume(n))
    }

    /// A record's fixed header: as [`Self::read_small`], copied at a
    /// constant length from what is read ahead when it is there (each
    /// record pays no call of a general copy).
    #[inline]
    fn read_header_bytes<const N: usize>(
        &mut self,
        offset: u64,
    ) -> Result<Option<[u8; N]>, PcapError> {
        let mut h = [0u8; N];
        let head = self.ahead.head;
        let ahead = match self.direct {
            false => self.ahead.bytes.get(head..head.saturating_add(N)),
            true => None,
        };
        match ahead {
            Some(bytes) if self.ahead.tail - head >= N => {
                h.copy_from_slice(bytes);
                self.consume(N);
            }
            _ => {
                if !self.read_small(&mut h, offset)? {
                    return Ok(None);
                }
            }
        }
        Ok(Some(h))
    }

    /// Fills `out` from the file. Ok(false) at EOF before the first byte,
    /// Truncated (for the record at `offset`) when EOF cuts it.
    fn read_small(&mut self, out: &mut [u8], offset: u64) -> Result<bool, PcapError> {
        let n = self.read_upto(out)?;
        if n == 0 && !out.is_empty() {
            return Ok(false);
        }
        if n < out.len() {
            return Err(PcapError::Truncated { offset });
        }
        Ok(true)
    }

    /// Reads exactly `n` bytes: the block [`Self::block`] returns. In
    /// `ahead` where they lie, or into the start of the reusable `buf`.
    #[inline]
    fn read_buf(&mut self, n: usize, offset: u64) -> Result<(), PcapError> {
        if !self.direct {
            let got = self.fill(n)?;
            if got < n {
                self.consume(got);
                return Err(PcapError::Truncated { offset });
            }
            self.block = BlockAt {
                in_ahead: true,
                start: self.ahead.head,
                len: n,
            };
            self.consume(n);
            return Ok(());
        }
        self.read_buf_direct(n, offset)
    }

    /// [`Self::read_buf`] into `buf`.
    #[inline(never)]
    fn read_buf_direct(&mut self, n: usize, offset: u64) -> Result<(), PcapError> {
        if self.buf.len() < n {
            // Grows to the largest record once, then is reused.
            self.buf.resize(n, 0);
        }
        let PcapReader { r, buf, pos, .. } = self;
        let dst = buf.get_mut(..n).ok_or(PcapError::Truncated { offset })?;
        let got = read_full(r, dst)?;
        *pos = pos.saturating_add(got as u64);
        self.block = BlockAt {
            in_ahead: false,
            start: 0,
            len: n,
        };
        if got < n {
            return Err(PcapError::Truncated { offset });
        }
        Ok(())
    }

    fn skip(&mut self, n: u64, offset: u64) -> Result<(), PcapError> {
        // What is read ahead is sequential reading's, never `read_at`'s.
        let ahead = match self.direct {
            false => self.consume(usize::try_from(n).unwrap_or(usize::MAX)) as u64,
            true => 0,
        };
        let rest = n - ahead;
        if rest == 0 {
            return Ok(());
        }
        // Nothing is left ahead (or reading is direct): the file is where
        // `pos` says.
        let got = io::copy(&mut (&mut self.r).take(rest), &mut io::sink())?;
        self.pos = self.pos.saturating_add(got);
        if got < rest {
            return Err(PcapError::Truncated { offset });
        }
        Ok(())
    }

    fn next_pcap(&mut self) -> Result<Option<Meta>, PcapError> {
        let Kind::Pcap { big, nanos, link } = self.kind else {
            return Ok(None);
        };
        let offset = self.pos;
        let Some(h) = self.read_header_bytes::<16>(offset)? else {
            return Ok(None);
        };
        let secs = u64::from(rd32(big, &h, 0));
        let frac = u64::from(rd32(big, &h, 4));
        let caplen = rd32(big, &h, 8);
        let orig_len = rd32(big, &h, 12);
        // A captured length over the original one is read as it is (as
        // Wireshark does): some writers put the wrong one first.
        if caplen > MAX_CAPLEN {
            return Err(bad(offset, "captured length > 256 KiB"));
        }
        let len = caplen as usize;
        self.read_buf(len, offset)?;
        let frac_ns = if nanos {
            frac
        } else {
            frac.saturating_mul(1000)
        };
        Ok(Some(Meta {
            ts_ns: secs.saturating_mul(1_000_000_000).saturating_add(frac_ns),
            orig_len,
            start: 0,
            len,
            link,
            offset,
        }))
    }

    fn next_ng(&mut self) -> Result<Option<Meta>, PcapError> {
        loop {
            let offset = self.pos;
            let mut t = [0u8; 4];
            if !self.read_small(&mut t, offset)? {
                return Ok(None);
            }
            if u32::from_le_bytes(t) == SHB {
                self.read_shb(offset)?;
                continue;
            }
            let sec_idx = match &self.kind {
                Kind::PcapNg { sections, .. } => sections.len().saturating_sub(1),
                _ => return Ok(None),
            };
            if let Block::Packet(m) = self.read_block(offset, t, sec_idx, false)? {
                return Ok(Some(m));
            }
        }
    }

    fn section(&self, idx: usize) -> Option<Section> {
        match &self.kind {
            Kind::PcapNg { sections, .. } => sections.get(idx).copied(),
            _ => None,
        }
    }

    /// Reads a section header block whose 4-byte type at `offset` has
    /// already been consumed.
    fn read_shb(&mut self, offset: u64) -> Result<(), PcapError> {
        let mut h = [0u8; 8];
        if !self.read_small(&mut h, offset)? {
            return Err(PcapError::Truncated { offset });
        }
        let big = match (rd32(false, &h, 4), rd32(true, &h, 4)) {
            (BYTE_ORDER_MAGIC, _) => false,
            (_, BYTE_ORDER_MAGIC) => true,
            _ => return Err(bad(offset, "pcapng byte-order magic missing")),
        };
        let total = rd32(big, &h, 0);
        if !(28..=MAX_BLOCK).contains(&total) || !total.is_multiple_of(4) {
            return Err(bad(offset, "bad section header block length"));
        }
        let rest = (total - 12) as usize;
        self.read_buf(rest, offset)?;
        if rd16(big, self.block(), 0) != 1 {
            return Err(bad(offset, "unsupported pcapng major version"));
        }
        if rd32(big, self.block(), rest.saturating_sub(4)) != total {
            return Err(bad(offset, "block trailer length mismatch"));
        }
        if let Kind::PcapNg { ifaces, sections } = &mut self.kind {
            sections.push(Section {
                offset,
                big,
                iface_base: ifaces.len(),
            });
        }
        Ok(())
    }

    /// Reads the rest of a non-SHB block whose type bytes `t` have been
    /// consumed. With `packets_only`, anything but a decodable packet block is
    /// an error (used by `read_at`).
    fn read_block(
        &mut self,
        offset: u64,
        t: [u8; 4],
        sec_idx: usize,
        packets_only: bool,
    ) -> Result<Block, PcapError> {
        let sec = self
            .section(sec_idx)
            .ok_or(bad(offset, "block outside any section"))?;
        let btype = rd32(sec.big, &t, 0);
        let mut l = [0u8; 4];
        if !self.read_small(&mut l, offset)? {
            return Err(PcapError::Truncated { offset });
        }
        let total = rd32(sec.big, &l, 0);
        if total < 12 || !total.is_multiple_of(4) {
            return Err(bad(offset, "bad block length"));
        }
        let is_packet = matches!(btype, EPB | SPB | PB);
        if packets_only && !is_packet {
            return Err(bad(offset, "not a packet block"));
        }
        if !is_packet && btype != IDB {
            // NRB, ISB, DSB, custom...: nothing voxtap needs.
            self.skip(u64::from(total - 8), offset)?;
            return Ok(Block::Skip);
        }
        if total > MAX_BLOCK {
            return Err(bad(offset, "block longer than 320 KiB"));
        }
        let body = (total - 12) as usize;
        self.read_buf(body + 4, offset)?;
        if rd32(sec.big, self.block(), body) != total {
            return Err(bad(offset, "block trailer length mismatch"));
        }
        if btype == IDB {
            self.parse_idb(sec.big, body, offset)?;
            return Ok(Block::Skip);
        }
        self.parse_packet(btype, sec_idx, sec, body, offset, packets_only)
    }

    fn parse_idb(&mut self, big: bool, body: usize, offset: u64) -> Result<(), PcapError> {
        if body < 8 {
            return Err(bad(offset, "interface description block too short"));
        }
        let b = self.block().get(..body).unwrap_or(&[]);
        let dlt = u32::from(rd16(big, b, 0));
        let snaplen = rd32(big, b, 4);
        let mut res = TsRes::Pow10(6);
        let mut offset_s = 0i64;
        let mut p = 8usize;
        while p.saturating_add(4) <= body {
            let code = rd16(big, b, p);
            let len = usize::from(rd16(big, b, p + 2));
            let val = b.get(p + 4..(p + 4).saturating_add(len));
            match (code, val) {
                (0, _) => break,
                (9, Some(&[r])) => {
                    res = if r & 0x80 != 0 {
                        TsRes::Pow2(r & 0x7f)
                    } else {
                        TsRes::Pow10(r)
                    };
                }
                (14, Some(v)) if v.len() == 8 => {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(v);
                    offset_s = if big {
                        i64::from_be_bytes(a)
                    } else {
                        i64::from_le_bytes(a)
                    };
                }
                (_, None) => return Err(bad(offset, "interface option overruns its block")),
                _ => {}
            }
            // Option values are padded to 32 bits.
            p = p.saturating_add(4).saturating_add((len + 3) & !3);
        }
        if let Kind::PcapNg { ifaces, .. } = &mut self.kind {
            ifaces.push(Iface {
                link: LinkType::from_dlt(dlt),
                dlt,
                snaplen,
                res,
                offset_s,
            });
        }
        Ok(())
    }

    fn parse_packet(
        &mut self,
        btype: u32,
        sec_idx: usize,
        sec: Section,
        body: usize,
        offset: u64,
        strict_link: bool,
    ) -> Result<Block, PcapError> {
        let b = self.block().get(..body).unwrap_or(&[]);
        let big = sec.big;
        let (iface_id, units, caplen, orig_len, start) = match btype {
            SPB => {
                if body < 4 {
                    return Err(bad(offset, "simple packet block too short"));
                }
                let orig = rd32(big, b, 0);
                (0, None, orig, orig, 4usize)
            }
            // EPB and the obsolete PB share the layout, PB with a 16-bit
            // interface id followed by a drops counter.
            _ => {
                if body < 20 {
                    return Err(bad(offset, "packet block too short"));
                }
                let id = if btype == PB {
                    u32::from(rd16(big, b, 0))
                } else {
                    rd32(big, b, 0)
                };
                let units = (u64::from(rd32(big, b, 4)) << 32) | u64::from(rd32(big, b, 8));
                (id, Some(units), rd32(big, b, 12), rd32(big, b, 16), 20usize)
            }
        };
        let Kind::PcapNg { ifaces, sections } = &self.kind else {
            return Ok(Block::Skip);
        };
        let end_base = sections
            .get(sec_idx.saturating_add(1))
            .map_or(ifaces.len(), |s| s.iface_base);
        let iface = sec
            .iface_base
            .checked_add(iface_id as usize)
            .filter(|&i| i < end_base)
            .and_then(|i| ifaces.get(i))
            .copied()
            .ok_or(bad(offset, "packet refers to an undeclared interface"))?;
        let avail = u32::try_from(body - start).unwrap_or(u32::MAX);
        let caplen = if btype == SPB {
            // The SPB length is only implied by the block and the snaplen.
            let mut c = caplen.min(avail);
            if iface.snaplen != 0 {
                c = c.min(iface.snaplen);
            }
            c
        } else {
            caplen
        };
        if caplen > MAX_CAPLEN {
            return Err(bad(offset, "captured length > 256 KiB"));
        }
        if caplen > avail {
            return Err(bad(offset, "captured length overruns its block"));
        }
        let Some(link) = iface.link else {
            if strict_link {
                return Err(PcapError::UnsupportedLinkType(iface.dlt));
            }
            self.skipped = self.skipped.saturating_add(1);
            return Ok(Block::Skip);
        };
        // The SPB has no timestamp at all.
        let ts_ns = units.map_or(0, |u| ts_to_ns(u, iface.res, iface.offset_s));
        Ok(Block::Packet(Meta {
            ts_ns,
            orig_len,
            start,
            len: caplen as usize,
            link,
            offset,
        }))
    }
}

impl<R: Read + Seek> PcapReader<R> {
    /// As [`PcapReader::new`], and NetMon 2.x too (its frames are found
    /// through a frame table at the end of the file).
    pub fn new_seekable(r: R) -> Result<Self, PcapError> {
        let mut me = Self::unopened(r);
        if let Opened::NetMon = me.read_header()? {
            me.read_netmon_header()?;
        }
        Ok(me)
    }

    /// Stop sequential reading: later `read_at` calls need not restore the
    /// sequential position (a reader kept for random access only).
    pub fn finish_sequential(&mut self) {
        self.done = true;
        self.direct = true;
        // A reader kept open for random access keeps no read-ahead memory.
        self.ahead = Ahead::default();
        self.block = BlockAt::default();
    }

    /// The file at `at`, nothing read ahead.
    pub(super) fn seek_to(&mut self, at: u64) -> io::Result<()> {
        self.ahead.head = 0;
        self.ahead.tail = 0;
        self.block = BlockAt::default();
        self.r.seek(SeekFrom::Start(at))?;
        self.pos = at;
        Ok(())
    }

    /// Read the one record whose header starts at `offset` (as returned
    /// earlier in [`PacketRecord::offset`]); for pcapng the interfaces (link
    /// type, tsresol) learnt so far are used, so this is valid for any offset
    /// previously returned by `next_packet`. Sequential reading resumes where
    /// it was, with what it had read ahead.
    pub fn read_at(&mut self, offset: u64) -> Result<PacketRecord<'_>, PcapError> {
        let saved = self.pos;
        if self.done {
            // Nothing to resume: skip the seek back (it would cost one more
            // buffer refill per record on a reader used for random access).
            self.direct = true;
            self.seek_to(offset)?;
            let m = self.read_one_at(offset);
            self.pos = saved;
            return Ok(self.record(m?));
        }
        // The file is past `pos` by what is read ahead, kept for later.
        let resume = saved + (self.ahead.tail - self.ahead.head) as u64;
        let block = self.block;
        self.direct = true;
        self.r.seek(SeekFrom::Start(offset))?;
        self.pos = offset;
        let res = self.read_one_at(offset);
        self.direct = false;
        let back = self.r.seek(SeekFrom::Start(resume));
        self.pos = saved;
        let m = match res {
            Ok(m) => m,
            Err(e) => {
                self.block = block;
                return Err(e);
            }
        };
        back?;
        Ok(self.record(m))
    }

    fn read_one_at(&mut self, offset: u64) -> Result<Meta, PcapError> {
        let sec_idx = match &self.kind {
            Kind::Pcap { .. } => {
                return self.next_pcap()?.ok_or(PcapError::Truncated { offset });
            }
            Kind::Snoop { .. } => {
                return self.next_snoop()?.ok_or(PcapError::Truncated { offset });
            }
            Kind::NetMon(_) => return self.netmon_at(offset),
            Kind::PcapNg { sections, .. } => sections
                .partition_point(|s| s.offset <= offset)
                .checked_sub(1)
                .ok_or(bad(offset, "offset before the first section"))?,
        };
        let mut t = [0u8; 4];
        if !self.read_small(&mut t, offset)? {
            return Err(PcapError::Truncated { offset });
        }
        match self.read_block(offset, t, sec_idx, true)? {
            Block::Packet(m) => Ok(m),
            Block::Skip => Err(bad(offset, "not a packet block")),
        }
    }
}
