//! The capture formats besides pcap and pcapng: Sun snoop (RFC 1761) and
//! Microsoft Network Monitor 2.x read; a list of other formats' magic
//! numbers, so a file in one of them is named, with the way through
//! (`editcap -F pcap`), instead of "bad magic".

use std::io::{Read, Seek};

use super::{Kind, LinkType, MAX_CAPLEN, Meta, PcapError, PcapReader, bad};

pub(super) const SNOOP_MAGIC: &[u8; 8] = b"snoop\0\0\0";
pub(super) const NETMON2_MAGIC: &[u8; 4] = b"GMBU";

/// snoop: version, datalink type after the 8-byte magic.
const SNOOP_HEADER_REST: usize = 8;
/// snoop record: original length, included length, record length,
/// cumulative drops, seconds, microseconds.
const SNOOP_RECORD_HEADER: usize = 24;
/// NetMon 2.x: what follows the magic up to the frame table's length:
/// version (2), MAC type (2), SYSTEMTIME (16), table offset and length.
const NETMON_HEADER_REST: usize = 28;
/// NetMon 2.x frame: microseconds since the start, original length,
/// captured length.
const NETMON_RECORD_HEADER: usize = 16;
/// A frame table longer than this (16 M frames) is corruption.
const NETMON_MAX_TABLE: u32 = 64 << 20;

/// What `next_packet` needs to walk a NetMon 2.x file.
#[derive(Debug)]
pub(super) struct NetMon {
    /// Minor version: from 2.1 each frame ends with its own MAC type.
    minor: u8,
    /// The file's MAC type (used by 2.0 files).
    link: Option<LinkType>,
    mac_type: u16,
    start_ns: u64,
    /// Offset of every frame, in file order.
    frames: Vec<u32>,
    next: usize,
}

/// Other capture formats, by their first bytes: named in the error that
/// points to `editcap -F pcap`.
const OTHER_FORMATS: &[(&[u8], &str)] = &[
    (b"RTSS", "Microsoft NetMon 1.x"),
    (b"TRSNIFF data    \x1a", "Sniffer (DOS)"),
    (b"XCP\0", "NetXray / Sniffer (Windows)"),
    (b"btsnoop\0", "Symbian btsnoop"),
    (b"iptrace ", "AIX iptrace"),
    (b"ObserverPktBuffer", "Viavi Observer"),
    (b"\x00\x00\x02\x00\x12\x05\x00\x10", "Tektronix K12 .rf5"),
    (b"\x54\x52\x00\x64\x00", "HP-UX nettl"),
    // The 5View header key, 0xAAAAAAAA (what editcap -F 5views writes).
    (b"\xaa\xaa\xaa\xaa", "InfoVista 5View"),
    (b"NetS", "NetScaler trace"),
    (b"\x1f\x8b", "gzip-compressed"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed"),
    (b"\xfd7zXZ\x00", "xz-compressed"),
    (b"BZh", "bzip2-compressed"),
    (b"\x04\x22\x4d\x18", "lz4-compressed"),
    (b"PK\x03\x04", "zip archive"),
];

/// The name of the format `head` (a file's first bytes) starts like, if it
/// is one voxtap does not read.
pub fn other_format(head: &[u8]) -> Option<&'static str> {
    OTHER_FORMATS
        .iter()
        .find(|(magic, _)| head.starts_with(magic))
        .map(|(_, name)| *name)
}

/// A snoop datalink type; Ethernet is what snoop captures in practice.
fn snoop_link(dl: u32) -> Result<LinkType, PcapError> {
    match dl {
        // IEEE 802.3 and Ethernet.
        0 | 4 => Ok(LinkType::Ethernet),
        _ => Err(PcapError::UnsupportedLinkType(dl)),
    }
}

/// A NetMon MAC type: 1 is Ethernet; 0xE000 + n wraps pcap LINKTYPE n
/// (what Wireshark writes for other link types).
fn netmon_link(mac: u16) -> Option<LinkType> {
    match mac {
        1 => Some(LinkType::Ethernet),
        m if (0xe000..0xfff0).contains(&m) => LinkType::from_dlt(u32::from(m - 0xe000)),
        _ => None,
    }
}

/// Days since 1970-01-01 of a Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A SYSTEMTIME (year, month, day of week, day, hour, minute, second,
/// millisecond, little-endian u16s) as nanoseconds since the epoch. NetMon
/// writes the capturing host's local time without saying which zone it
/// was: it is read as UTC.
fn systemtime_ns(b: &[u8]) -> u64 {
    let f = |i: usize| i64::from(super::rd16(false, b, i * 2));
    let days = days_from_civil(f(0), f(1), f(3));
    let secs = days * 86_400 + f(4) * 3600 + f(5) * 60 + f(6);
    let ns = i128::from(secs) * 1_000_000_000 + i128::from(f(7)) * 1_000_000;
    u64::try_from(ns.max(0)).unwrap_or(0)
}

impl<R: Read> PcapReader<R> {
    /// A snoop header from its first bytes `head` (magic, version,
    /// datalink type); the reader is past them.
    pub(super) fn read_snoop_header(&mut self, head: &[u8]) -> Result<(), PcapError> {
        if head.len() < SNOOP_MAGIC.len() + SNOOP_HEADER_REST {
            return Err(PcapError::Truncated { offset: 0 });
        }
        if super::rd32(true, head, 8) != 2 {
            return Err(bad(0, "unsupported snoop version"));
        }
        let link = snoop_link(super::rd32(true, head, 12))?;
        self.kind = Kind::Snoop { link };
        Ok(())
    }

    pub(super) fn next_snoop(&mut self) -> Result<Option<Meta>, PcapError> {
        let Kind::Snoop { link } = self.kind else {
            return Ok(None);
        };
        let offset = self.pos;
        let mut h = [0u8; SNOOP_RECORD_HEADER];
        if !self.read_small(&mut h, offset)? {
            return Ok(None);
        }
        let orig_len = super::rd32(true, &h, 0);
        let caplen = super::rd32(true, &h, 4);
        let rec_len = super::rd32(true, &h, 8);
        if caplen > MAX_CAPLEN {
            return Err(bad(offset, "captured length > 256 KiB"));
        }
        let Some(pad) = rec_len.checked_sub(caplen + SNOOP_RECORD_HEADER as u32) else {
            return Err(bad(offset, "snoop record shorter than its data"));
        };
        if pad > 64 {
            return Err(bad(offset, "snoop record padding over 64 bytes"));
        }
        self.read_buf(caplen as usize, offset)?;
        self.skip(u64::from(pad), offset)?;
        let secs = u64::from(super::rd32(true, &h, 16));
        let usecs = u64::from(super::rd32(true, &h, 20));
        Ok(Some(Meta {
            ts_ns: secs
                .saturating_mul(1_000_000_000)
                .saturating_add(usecs.saturating_mul(1000)),
            orig_len,
            start: 0,
            len: caplen as usize,
            link,
            offset,
        }))
    }

    pub(super) fn next_netmon(&mut self) -> Result<Option<Meta>, PcapError> {
        loop {
            let (off, start_ns, minor, file_link) = match &mut self.kind {
                Kind::NetMon(n) => match n.frames.get(n.next) {
                    Some(&o) => {
                        n.next += 1;
                        (u64::from(o), n.start_ns, n.minor, n.link)
                    }
                    None => return Ok(None),
                },
                _ => return Ok(None),
            };
            // Frames are read in file order, skipping what lies between
            // them (nothing, in the files NetMon and Wireshark write).
            let Some(gap) = off.checked_sub(self.pos) else {
                return Err(bad(off, "NetMon frame table is not in file order"));
            };
            self.skip(gap, off)?;
            let (meta, link) = self.netmon_record(off, start_ns, minor, file_link)?;
            match link {
                Some(link) => return Ok(Some(Meta { link, ..meta })),
                None => self.skipped = self.skipped.saturating_add(1),
            }
        }
    }

    /// The frame at the current position (`off`); its link type is None
    /// when voxtap cannot decode it.
    fn netmon_record(
        &mut self,
        off: u64,
        start_ns: u64,
        minor: u8,
        file_link: Option<LinkType>,
    ) -> Result<(Meta, Option<LinkType>), PcapError> {
        let mut h = [0u8; NETMON_RECORD_HEADER];
        if !self.read_small(&mut h, off)? {
            return Err(PcapError::Truncated { offset: off });
        }
        let delta_us =
            (u64::from(super::rd32(false, &h, 4)) << 32) | u64::from(super::rd32(false, &h, 0));
        let orig_len = super::rd32(false, &h, 8);
        let caplen = super::rd32(false, &h, 12);
        if caplen > MAX_CAPLEN {
            return Err(bad(off, "captured length > 256 KiB"));
        }
        self.read_buf(caplen as usize, off)?;
        let link = if minor >= 1 {
            let mut t = [0u8; 2];
            if !self.read_small(&mut t, off)? {
                return Err(PcapError::Truncated { offset: off });
            }
            netmon_link(u16::from_le_bytes(t))
        } else {
            file_link
        };
        let meta = Meta {
            ts_ns: start_ns.saturating_add(delta_us.saturating_mul(1000)),
            orig_len,
            start: 0,
            len: caplen as usize,
            link: link.unwrap_or(LinkType::Ethernet),
            offset: off,
        };
        Ok((meta, link))
    }
}

impl<R: Read + Seek> PcapReader<R> {
    /// The rest of a NetMon 2.x header, whose magic has been read, and its
    /// frame table (which is where the frames are: it needs `Seek`).
    pub(super) fn read_netmon_header(&mut self) -> Result<(), PcapError> {
        let mut h = [0u8; NETMON_HEADER_REST];
        if !self.read_small(&mut h, 0)? {
            return Err(PcapError::Truncated { offset: 0 });
        }
        let (minor, major) = (h[0], h[1]);
        if major != 2 {
            return Err(bad(0, "unsupported NetMon version"));
        }
        let mac_type = super::rd16(false, &h, 2);
        let link = netmon_link(mac_type);
        if minor == 0 && link.is_none() {
            return Err(PcapError::UnsupportedLinkType(u32::from(mac_type)));
        }
        let start_ns = systemtime_ns(h.get(4..20).unwrap_or(&[]));
        let table_off = super::rd32(false, &h, 20);
        let table_len = super::rd32(false, &h, 24);
        if table_len > NETMON_MAX_TABLE || !table_len.is_multiple_of(4) {
            return Err(bad(0, "bad NetMon frame table length"));
        }
        let header_end = self.pos;
        self.seek_to(u64::from(table_off))?;
        self.read_buf(table_len as usize, u64::from(table_off))?;
        let frames = self
            .block()
            .get(..table_len as usize)
            .unwrap_or(&[])
            .chunks_exact(4)
            .map(|c| super::rd32(false, c, 0))
            .collect();
        self.seek_to(header_end)?;
        self.kind = Kind::NetMon(NetMon {
            minor,
            link,
            mac_type,
            start_ns,
            frames,
            next: 0,
        });
        Ok(())
    }

    /// `read_at` for a NetMon frame at `offset` (already sought to).
    pub(super) fn netmon_at(&mut self, offset: u64) -> Result<Meta, PcapError> {
        let Kind::NetMon(n) = &self.kind else {
            return Err(bad(offset, "not a NetMon file"));
        };
        let (start_ns, minor, link, mac) = (n.start_ns, n.minor, n.link, n.mac_type);
        let (meta, link) = self.netmon_record(offset, start_ns, minor, link)?;
        match link {
            Some(_) => Ok(meta),
            None => Err(PcapError::UnsupportedLinkType(u32::from(mac))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemtime_is_read_as_utc() {
        // 2026-11-23 13:58:31.146 (a Monday), as in the corpus's NetMon copy.
        let mut b = Vec::new();
        for v in [2026u16, 11, 1, 23, 13, 58, 31, 146] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(systemtime_ns(&b), 1_795_442_311_146_000_000);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn other_formats_are_named() {
        assert_eq!(other_format(b"RTSS\x01\x01"), Some("Microsoft NetMon 1.x"));
        assert_eq!(other_format(b"\x1f\x8b\x08\x00"), Some("gzip-compressed"));
        assert_eq!(other_format(b"\xde\xad\xbe\xef"), None);
    }
}
