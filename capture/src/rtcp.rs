//! RTCP (RFC 3550 section 6) compound datagrams as zero-copy views.
//!
//! [`parse_compound`] walks the packets of one datagram. Every length is
//! checked when a packet is produced, so the iterators inside a packet
//! ([`ReportBlocks`], [`SdesChunks`], [`Ssrcs`]) are infallible and allocate
//! nothing. Feedback (RTPFB/PSFB) and XR are passed through as
//! [`RtcpPacket::Other`]; use [`raw_packets`] when the count/FMT field is
//! needed.

pub const PT_SR: u8 = 200;
pub const PT_RR: u8 = 201;
pub const PT_SDES: u8 = 202;
pub const PT_BYE: u8 = 203;
pub const PT_APP: u8 = 204;
pub const PT_RTPFB: u8 = 205;
pub const PT_PSFB: u8 = 206;
pub const PT_XR: u8 = 207;

/// SDES item type carrying the canonical name (RFC 3550 6.5.1).
pub const SDES_CNAME: u8 = 1;

const REPORT_BLOCK_LEN: usize = 24;
/// SSRC of sender + NTP (8) + RTP ts + packet count + octet count.
const SENDER_INFO_LEN: usize = 24;

/// Why the walk over a compound datagram stopped.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum RtcpError {
    /// Fewer than 4 bytes left for a packet header.
    #[error("RTCP header truncated ({0} bytes left)")]
    Truncated(usize),
    #[error("RTCP version {0}, expected 2")]
    BadVersion(u8),
    /// The length field claims more bytes than the datagram holds.
    #[error("RTCP length field claims {claimed} bytes, {available} available")]
    LengthOverrun { claimed: usize, available: usize },
    /// P is set but the padding count is 0 or exceeds the packet body.
    #[error("invalid RTCP padding count {0}")]
    BadPadding(u8),
    /// The body is too short for what the header's count field announces.
    #[error("RTCP packet type {packet_type} body too short for its count field")]
    BodyTooShort { packet_type: u8 },
    /// An SDES chunk or item runs past the end of the packet.
    #[error("malformed SDES chunk")]
    BadSdes,
}

fn be16(buf: &[u8], at: usize) -> u16 {
    match buf.get(at..at.saturating_add(2)) {
        Some(&[a, b]) => u16::from_be_bytes([a, b]),
        _ => 0,
    }
}

fn be32(buf: &[u8], at: usize) -> u32 {
    match buf.get(at..at.saturating_add(4)) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// One RTCP packet before type-specific decoding: the common header fields
/// and the body (after the 4-byte header, padding removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRtcp<'a> {
    /// RC / SC / subtype / FMT, depending on the packet type.
    pub count: u8,
    pub packet_type: u8,
    pub padding: bool,
    pub body: &'a [u8],
}

/// Iterator over the raw packets of a compound datagram; stops after the
/// first error because a bad length makes everything after it unframed.
#[derive(Debug, Clone)]
pub struct RawIter<'a> {
    rest: &'a [u8],
}

/// Walks the common headers of a compound datagram.
pub fn raw_packets(buf: &[u8]) -> RawIter<'_> {
    RawIter { rest: buf }
}

impl<'a> Iterator for RawIter<'a> {
    type Item = Result<RawRtcp<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let r = self.next_packet();
        if r.is_err() {
            self.rest = &[];
        }
        Some(r)
    }
}

impl<'a> RawIter<'a> {
    fn next_packet(&mut self) -> Result<RawRtcp<'a>, RtcpError> {
        let buf = self.rest;
        let &[b0, packet_type, ..] = buf else {
            return Err(RtcpError::Truncated(buf.len()));
        };
        if buf.len() < 4 {
            return Err(RtcpError::Truncated(buf.len()));
        }
        if b0 >> 6 != 2 {
            return Err(RtcpError::BadVersion(b0 >> 6));
        }
        // Length is in 32-bit words minus one, so it is never 0 bytes.
        let claimed = (usize::from(be16(buf, 2)) + 1) * 4;
        let (packet, next) = match (buf.get(..claimed), buf.get(claimed..)) {
            (Some(p), Some(n)) => (p, n),
            _ => {
                return Err(RtcpError::LengthOverrun {
                    claimed,
                    available: buf.len(),
                });
            }
        };
        let padding = b0 & 0x20 != 0;
        let mut body = packet.get(4..).unwrap_or(&[]);
        if padding {
            let count = body.last().copied().unwrap_or(0);
            let keep = body.len().checked_sub(usize::from(count));
            match keep {
                Some(keep) if count != 0 => body = body.get(..keep).unwrap_or(&[]),
                _ => return Err(RtcpError::BadPadding(count)),
            }
        }
        self.rest = next;
        Ok(RawRtcp {
            count: b0 & 0x1f,
            packet_type,
            padding,
            body,
        })
    }
}

/// One reception report block (RFC 3550 6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    pub ssrc: u32,
    pub fraction_lost: u8,
    /// 24-bit signed on the wire: duplicates can make it negative.
    pub cumulative_lost: i32,
    pub highest_seq: u32,
    pub jitter: u32,
    pub lsr: u32,
    pub dlsr: u32,
}

impl ReportBlock {
    fn parse(b: &[u8]) -> Self {
        let lost_word = be32(b, 4);
        Self {
            ssrc: be32(b, 0),
            fraction_lost: (lost_word >> 24) as u8,
            // Shift the 24 bits to the top, then arithmetic-shift back down to
            // sign-extend.
            cumulative_lost: ((lost_word << 8) as i32) >> 8,
            highest_seq: be32(b, 8),
            jitter: be32(b, 12),
            lsr: be32(b, 16),
            dlsr: be32(b, 20),
        }
    }
}

/// Report blocks of an SR or RR, decoded lazily from the packet bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportBlocks<'a> {
    data: &'a [u8],
}

impl<'a> ReportBlocks<'a> {
    /// Number of blocks left.
    pub fn len(&self) -> usize {
        self.data.len() / REPORT_BLOCK_LEN
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Iterator for ReportBlocks<'_> {
    type Item = ReportBlock;

    fn next(&mut self) -> Option<ReportBlock> {
        let block = self.data.get(..REPORT_BLOCK_LEN)?;
        self.data = self.data.get(REPORT_BLOCK_LEN..).unwrap_or(&[]);
        Some(ReportBlock::parse(block))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len(), Some(self.len()))
    }
}

impl ExactSizeIterator for ReportBlocks<'_> {}

/// A list of SSRCs (BYE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ssrcs<'a> {
    data: &'a [u8],
}

impl Iterator for Ssrcs<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let v = self.data.get(..4)?;
        let v = be32(v, 0);
        self.data = self.data.get(4..).unwrap_or(&[]);
        Some(v)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.data.len() / 4, Some(self.data.len() / 4))
    }
}

impl ExactSizeIterator for Ssrcs<'_> {}

/// Chunks of an SDES packet. Validated when the packet was parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesChunks<'a> {
    data: &'a [u8],
    remaining: u8,
}

/// One SDES chunk: the source and its items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesChunk<'a> {
    pub ssrc: u32,
    pub items: SdesItems<'a>,
}

/// Items of one SDES chunk as (type, value); stops at the null item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesItems<'a> {
    data: &'a [u8],
}

impl<'a> Iterator for SdesItems<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, rest) = self.data.split_first()?;
        if kind == 0 {
            self.data = &[];
            return None;
        }
        let (&len, rest) = rest.split_first()?;
        let value = rest.get(..usize::from(len))?;
        self.data = rest.get(usize::from(len)..).unwrap_or(&[]);
        Some((kind, value))
    }
}

/// Length of the chunk starting at `data[0]`, items and null terminator
/// included, padded to 32 bits as RFC 3550 6.5 requires; `None` when the
/// chunk does not fit. `data` starts 32-bit aligned within the packet.
fn sdes_chunk_len(data: &[u8]) -> Option<usize> {
    let mut at = 4; // SSRC/CSRC
    loop {
        let kind = *data.get(at)?;
        if kind == 0 {
            // Null item, then zero octets up to the next 32-bit boundary.
            let end = (at + 1).div_ceil(4) * 4;
            return (end <= data.len()).then_some(end);
        }
        let len = usize::from(*data.get(at + 1)?);
        at = at + 2 + len;
        if at > data.len() {
            return None;
        }
    }
}

impl<'a> Iterator for SdesChunks<'a> {
    type Item = SdesChunk<'a>;

    fn next(&mut self) -> Option<SdesChunk<'a>> {
        if self.remaining == 0 {
            return None;
        }
        let len = sdes_chunk_len(self.data)?;
        let chunk = self.data.get(..len)?;
        self.data = self.data.get(len..).unwrap_or(&[]);
        self.remaining -= 1;
        Some(SdesChunk {
            ssrc: be32(chunk, 0),
            items: SdesItems {
                data: chunk.get(4..).unwrap_or(&[]),
            },
        })
    }
}

impl<'a> SdesChunks<'a> {
    /// First CNAME in the packet with its source: what ties an SSRC to an
    /// endpoint across sessions.
    pub fn cname(&self) -> Option<(u32, &'a [u8])> {
        self.clone().find_map(|c| {
            let ssrc = c.ssrc;
            c.items
                .clone()
                .find(|&(kind, _)| kind == SDES_CNAME)
                .map(|(_, v)| (ssrc, v))
        })
    }
}

/// One decoded RTCP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket<'a> {
    SenderReport {
        ssrc: u32,
        ntp_sec: u32,
        ntp_frac: u32,
        rtp_ts: u32,
        packet_count: u32,
        octet_count: u32,
        reports: ReportBlocks<'a>,
    },
    ReceiverReport {
        ssrc: u32,
        reports: ReportBlocks<'a>,
    },
    SourceDescription(SdesChunks<'a>),
    Goodbye {
        ssrcs: Ssrcs<'a>,
        reason: Option<&'a [u8]>,
    },
    App {
        subtype: u8,
        ssrc: u32,
        name: [u8; 4],
        data: &'a [u8],
    },
    /// RTPFB, PSFB, XR and unknown types; body excludes the 4-byte header.
    Other {
        packet_type: u8,
        body: &'a [u8],
    },
}

impl<'a> RtcpPacket<'a> {
    /// The wire packet type (200 for SR, ...).
    pub fn packet_type(&self) -> u8 {
        match self {
            Self::SenderReport { .. } => PT_SR,
            Self::ReceiverReport { .. } => PT_RR,
            Self::SourceDescription(_) => PT_SDES,
            Self::Goodbye { .. } => PT_BYE,
            Self::App { .. } => PT_APP,
            Self::Other { packet_type, .. } => *packet_type,
        }
    }

    /// Decodes the body of a raw packet. Trailing bytes after the announced
    /// blocks are profile-specific extensions (RFC 3550 6.4.1) and ignored.
    pub fn from_raw(raw: RawRtcp<'a>) -> Result<Self, RtcpError> {
        let RawRtcp {
            count,
            packet_type,
            body,
            ..
        } = raw;
        let short = RtcpError::BodyTooShort { packet_type };
        let count = usize::from(count);
        match packet_type {
            PT_SR => {
                let blocks = SENDER_INFO_LEN + count * REPORT_BLOCK_LEN;
                let data = body.get(SENDER_INFO_LEN..blocks).ok_or(short)?;
                Ok(Self::SenderReport {
                    ssrc: be32(body, 0),
                    ntp_sec: be32(body, 4),
                    ntp_frac: be32(body, 8),
                    rtp_ts: be32(body, 12),
                    packet_count: be32(body, 16),
                    octet_count: be32(body, 20),
                    reports: ReportBlocks { data },
                })
            }
            PT_RR => {
                let data = body.get(4..4 + count * REPORT_BLOCK_LEN).ok_or(short)?;
                Ok(Self::ReceiverReport {
                    ssrc: be32(body, 0),
                    reports: ReportBlocks { data },
                })
            }
            PT_SDES => {
                // Validate every chunk now so iteration cannot fail later.
                let mut rest = body;
                for _ in 0..count {
                    let len = sdes_chunk_len(rest).ok_or(RtcpError::BadSdes)?;
                    rest = rest.get(len..).unwrap_or(&[]);
                }
                Ok(Self::SourceDescription(SdesChunks {
                    data: body,
                    remaining: raw.count,
                }))
            }
            PT_BYE => {
                let data = body.get(..count * 4).ok_or(short)?;
                let after = body.get(count * 4..).unwrap_or(&[]);
                let reason = match after.split_first() {
                    Some((&len, text)) => Some(text.get(..usize::from(len)).ok_or(short)?),
                    None => None,
                };
                Ok(Self::Goodbye {
                    ssrcs: Ssrcs { data },
                    reason,
                })
            }
            PT_APP => {
                let name = match body.get(4..8) {
                    Some(&[a, b, c, d]) => [a, b, c, d],
                    _ => return Err(short),
                };
                Ok(Self::App {
                    subtype: raw.count,
                    ssrc: be32(body, 0),
                    name,
                    data: body.get(8..).unwrap_or(&[]),
                })
            }
            _ => Ok(Self::Other { packet_type, body }),
        }
    }
}

/// Iterator over the packets of one compound RTCP datagram.
#[derive(Debug, Clone)]
pub struct RtcpIter<'a> {
    raw: RawIter<'a>,
}

/// Walks a compound RTCP datagram; yields each packet decoded, and stops
/// after the first error. An empty datagram yields nothing.
pub fn parse_compound(buf: &[u8]) -> RtcpIter<'_> {
    RtcpIter {
        raw: raw_packets(buf),
    }
}

impl<'a> Iterator for RtcpIter<'a> {
    type Item = Result<RtcpPacket<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        let r = self.raw.next()?.and_then(RtcpPacket::from_raw);
        if r.is_err() {
            // A packet that frames but does not decode leaves the rest
            // framed, but the contract is "stop after the first error".
            self.raw = raw_packets(&[]);
        }
        Some(r)
    }
}
