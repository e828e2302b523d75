//! RTCP (RFC 3550 section 6) compound datagrams as zero-copy views.
//!
//! [`parse_compound`] walks the packets of one datagram. Every length is
//! checked when a packet is produced, so the iterators inside a packet
//! ([`ReportBlocks`], [`SdesChunks`], [`Ssrcs`]) are infallible and allocate
//! nothing. Feedback (RTPFB/PSFB) and XR are passed through as
//! [`RtcpPacket::Other`]; use [`raw_packets`] when the count/FMT field is
//! needed.

use crate::wire::{be16, be32};

pub(crate) const PT_SR: u8 = 200;
pub(crate) const PT_RR: u8 = 201;
pub(crate) const PT_SDES: u8 = 202;
pub(crate) const PT_BYE: u8 = 203;
pub(crate) const PT_APP: u8 = 204;
pub const PT_RTPFB: u8 = 205;
pub const PT_PSFB: u8 = 206;
pub const PT_XR: u8 = 207;

/// SDES item type carrying the canonical name (RFC 3550 6.5.1).
pub(crate) const SDES_CNAME: u8 = 1;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::looks_like_rtcp;

    fn header(padding: bool, count: u8, pt: u8, body_len: usize) -> Vec<u8> {
        assert_eq!(body_len % 4, 0);
        let words = (body_len / 4) as u16;
        let b0 = 0x80 | (u8::from(padding) << 5) | count;
        let [hi, lo] = words.to_be_bytes();
        vec![b0, pt, hi, lo]
    }

    fn report_block(ssrc: u32, lost: i32) -> Vec<u8> {
        let mut b = ssrc.to_be_bytes().to_vec();
        let lost24 = (lost as u32) & 0x00ff_ffff;
        b.extend_from_slice(&((0x40 << 24) | lost24).to_be_bytes());
        for v in [0x0001_0010u32, 77, 0x1234_5678, 0x0002_8000] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b
    }

    fn sr(ssrc: u32, blocks: &[Vec<u8>]) -> Vec<u8> {
        let mut body = ssrc.to_be_bytes().to_vec();
        for v in [0xe000_0001u32, 0x8000_0000, 160_000, 1000, 160_000] {
            body.extend_from_slice(&v.to_be_bytes());
        }
        for b in blocks {
            body.extend_from_slice(b);
        }
        let mut p = header(false, blocks.len() as u8, PT_SR, body.len());
        p.extend_from_slice(&body);
        p
    }

    /// (ssrc, [(item type, value)]).
    type Chunk<'a> = (u32, &'a [(u8, &'a [u8])]);

    fn sdes(chunks: &[Chunk]) -> Vec<u8> {
        let mut body = Vec::new();
        for (ssrc, items) in chunks {
            body.extend_from_slice(&ssrc.to_be_bytes());
            for (kind, value) in *items {
                body.push(*kind);
                body.push(value.len() as u8);
                body.extend_from_slice(value);
            }
            body.push(0);
            while body.len() % 4 != 0 {
                body.push(0);
            }
        }
        let mut p = header(false, chunks.len() as u8, PT_SDES, body.len());
        p.extend_from_slice(&body);
        p
    }

    #[test]
    fn rtcp_compound_sr_sdes() {
        let mut d = sr(0x1111, &[report_block(0x2222, 5)]);
        d.extend(sdes(&[(
            0x1111,
            &[(1, b"alice@10.0.0.1"), (6, b"baresip")],
        )]));
        assert!(looks_like_rtcp(&d));
        let pkts: Vec<_> = parse_compound(&d).collect::<Result<_, _>>().unwrap();
        assert_eq!(pkts.len(), 2);
        let RtcpPacket::SenderReport {
            ssrc,
            ntp_sec,
            ntp_frac,
            rtp_ts,
            packet_count,
            octet_count,
            reports,
        } = pkts[0].clone()
        else {
            panic!("{:?}", pkts[0]);
        };
        assert_eq!(
            (ssrc, ntp_sec, ntp_frac, rtp_ts, packet_count, octet_count),
            (0x1111, 0xe000_0001, 0x8000_0000, 160_000, 1000, 160_000)
        );
        let blocks: Vec<_> = reports.collect();
        assert_eq!(
            blocks,
            [ReportBlock {
                ssrc: 0x2222,
                fraction_lost: 0x40,
                cumulative_lost: 5,
                highest_seq: 0x0001_0010,
                jitter: 77,
                lsr: 0x1234_5678,
                dlsr: 0x0002_8000,
            }]
        );
        let RtcpPacket::SourceDescription(chunks) = &pkts[1] else {
            panic!()
        };
        assert_eq!(chunks.cname(), Some((0x1111, &b"alice@10.0.0.1"[..])));
        let all: Vec<_> = chunks
            .clone()
            .map(|c| (c.ssrc, c.items.collect::<Vec<_>>()))
            .collect();
        assert_eq!(
            all,
            [(
                0x1111,
                vec![(1, &b"alice@10.0.0.1"[..]), (6, &b"baresip"[..])]
            )]
        );
        assert_eq!(pkts[1].packet_type(), PT_SDES);
    }

    #[test]
    fn rtcp_rr_several_blocks_negative_loss() {
        let blocks = [
            report_block(1, 0),
            report_block(2, -3),
            report_block(3, 0x7f_ffff),
        ];
        let mut body = 0xabcdu32.to_be_bytes().to_vec();
        blocks.iter().for_each(|b| body.extend_from_slice(b));
        let mut d = header(false, 3, PT_RR, body.len());
        d.extend_from_slice(&body);
        let mut it = parse_compound(&d);
        let Some(Ok(RtcpPacket::ReceiverReport { ssrc, reports })) = it.next() else {
            panic!()
        };
        assert!(it.next().is_none());
        assert_eq!(ssrc, 0xabcd);
        assert_eq!(reports.len(), 3);
        let lost: Vec<_> = reports.map(|b| (b.ssrc, b.cumulative_lost)).collect();
        assert_eq!(lost, [(1, 0), (2, -3), (3, 0x7f_ffff)]);
    }

    #[test]
    fn rtcp_empty_rr_and_zero_length() {
        // Length field 0 = a 4-byte packet: a valid RR with no blocks but
        // missing the reporter SSRC.
        let d = [0x80, PT_RR, 0, 0];
        assert_eq!(
            parse_compound(&d).next(),
            Some(Err(RtcpError::BodyTooShort { packet_type: PT_RR }))
        );
        let d = [0x80, PT_RR, 0, 1, 0, 0, 0, 9];
        let Some(Ok(RtcpPacket::ReceiverReport { ssrc: 9, reports })) = parse_compound(&d).next()
        else {
            panic!()
        };
        assert!(reports.is_empty());
        // A 4-byte BYE with no sources is legal.
        let d = [0x80, PT_BYE, 0, 0];
        assert!(matches!(
            parse_compound(&d).next(),
            Some(Ok(RtcpPacket::Goodbye { reason: None, .. }))
        ));
        // Empty datagram: nothing.
        assert_eq!(parse_compound(&[]).count(), 0);
        // A lone truncated header.
        assert_eq!(
            parse_compound(&[0x80, 200]).next(),
            Some(Err(RtcpError::Truncated(2)))
        );
    }

    #[test]
    fn rtcp_bye_with_reason() {
        let mut body = Vec::new();
        body.extend_from_slice(&7u32.to_be_bytes());
        body.extend_from_slice(&8u32.to_be_bytes());
        body.push(9);
        body.extend_from_slice(b"hangup!!!");
        body.extend_from_slice(&[0, 0]);
        let mut d = header(false, 2, PT_BYE, body.len());
        d.extend_from_slice(&body);
        let Some(Ok(RtcpPacket::Goodbye { ssrcs, reason })) = parse_compound(&d).next() else {
            panic!()
        };
        assert_eq!(ssrcs.collect::<Vec<_>>(), [7, 8]);
        assert_eq!(reason, Some(&b"hangup!!!"[..]));
        // Reason length running past the packet.
        let last = 4 + 8;
        d[last] = 200;
        assert_eq!(
            parse_compound(&d).next(),
            Some(Err(RtcpError::BodyTooShort {
                packet_type: PT_BYE
            }))
        );
    }

    #[test]
    fn rtcp_app_and_feedback_as_other() {
        let mut app = header(false, 3, PT_APP, 12);
        app.extend_from_slice(&0x55u32.to_be_bytes());
        app.extend_from_slice(b"VOXT");
        app.extend_from_slice(&[1, 2, 3, 4]);
        // PSFB PLI (FMT 1): sender + media SSRC.
        let mut pli = header(false, 1, PT_PSFB, 8);
        pli.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]);
        // XR with one empty-ish block.
        let mut xr = header(false, 0, PT_XR, 8);
        xr.extend_from_slice(&[0, 0, 0, 1, 4, 0, 0, 0]);
        let mut d = Vec::new();
        for p in [&app, &pli, &xr] {
            d.extend_from_slice(p);
        }
        let pkts: Vec<_> = parse_compound(&d).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            pkts[0],
            RtcpPacket::App {
                subtype: 3,
                ssrc: 0x55,
                name: *b"VOXT",
                data: &[1, 2, 3, 4],
            }
        );
        assert_eq!(
            pkts[1],
            RtcpPacket::Other {
                packet_type: PT_PSFB,
                body: &[0, 0, 0, 1, 0, 0, 0, 2],
            }
        );
        assert_eq!(pkts[2].packet_type(), PT_XR);
        let fmt: Vec<_> = raw_packets(&d).map(|r| r.unwrap().count).collect();
        assert_eq!(fmt, [3, 1, 0]);
        // APP too short for its name.
        let d = [0x80, PT_APP, 0, 1, 0, 0, 0, 1];
        assert_eq!(
            parse_compound(&d).next(),
            Some(Err(RtcpError::BodyTooShort {
                packet_type: PT_APP
            }))
        );
    }

    #[test]
    fn rtcp_lengths_that_lie() {
        // SR whose length overruns the datagram: error, then the walk stops.
        let mut d = sr(1, &[]);
        d[3] += 1;
        let mut it = parse_compound(&d);
        assert_eq!(
            it.next(),
            Some(Err(RtcpError::LengthOverrun {
                claimed: 32,
                available: 28
            }))
        );
        assert_eq!(it.next(), None);
        // SR announcing 2 report blocks but carrying none.
        let mut d = sr(1, &[]);
        d[0] |= 2;
        assert_eq!(
            parse_compound(&d).next(),
            Some(Err(RtcpError::BodyTooShort { packet_type: PT_SR }))
        );
        // Bad version in the second packet: first decodes, second errors.
        let mut d = sr(1, &[]);
        d.extend_from_slice(&[0x40, PT_RR, 0, 0]);
        let r: Vec<_> = parse_compound(&d).collect();
        assert!(r[0].is_ok());
        assert_eq!(r[1], Err(RtcpError::BadVersion(1)));
        // SDES whose item length runs past the packet.
        let mut d = sdes(&[(1, &[(1, b"abc")])]);
        d[9] = 50;
        assert_eq!(parse_compound(&d).next(), Some(Err(RtcpError::BadSdes)));
        // SDES announcing 2 chunks, carrying 1.
        let mut d = sdes(&[(1, &[(1, b"abc")])]);
        d[0] = (d[0] & 0xe0) | 2;
        assert_eq!(parse_compound(&d).next(), Some(Err(RtcpError::BadSdes)));
        // Padding count larger than the body, and 0.
        let mut d = header(true, 0, PT_RR, 8);
        d.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 9]);
        assert_eq!(
            parse_compound(&d).next(),
            Some(Err(RtcpError::BadPadding(9)))
        );
        let last = d.len() - 1;
        d[last] = 0;
        assert_eq!(
            parse_compound(&d).next(),
            Some(Err(RtcpError::BadPadding(0)))
        );
        d[last] = 4;
        assert!(matches!(
            parse_compound(&d).next(),
            Some(Ok(RtcpPacket::ReceiverReport { ssrc: 1, .. }))
        ));
    }

    /// Packet types per datagram must match
    /// `tshark -r ndpi/rtcp_multiple_pkts_in_the_same_datagram.pcap
    ///  -o rtcp.heuristic_rtcp:TRUE -T fields -e rtcp.pt` (tshark 4.0.17):
    /// 200,202 / 201,202 / 200,202 / 201,202 / 200,202.
    #[test]
    fn rtcp_corpus_ndpi_compound_matches_tshark() {
        let path = "ndpi/rtcp_multiple_pkts_in_the_same_datagram.pcap";
        let Some(dgrams) = crate::rtp::test_pcap::udp_datagrams(path) else {
            eprintln!("skipping: {path} not present");
            return;
        };
        let tshark: [&[u8]; 5] = [
            &[200, 202],
            &[201, 202],
            &[200, 202],
            &[201, 202],
            &[200, 202],
        ];
        assert_eq!(dgrams.len(), tshark.len());
        for ((_, _, _, payload), want) in dgrams.iter().zip(tshark) {
            assert!(looks_like_rtcp(payload));
            assert!(!crate::rtp::looks_like_rtp(payload));
            let pkts: Vec<_> = parse_compound(payload).collect::<Result<_, _>>().unwrap();
            let pts: Vec<u8> = pkts.iter().map(RtcpPacket::packet_type).collect();
            assert_eq!(pts, want);
            let RtcpPacket::SourceDescription(chunks) = &pkts[1] else {
                panic!()
            };
            let (ssrc, cname) = chunks.cname().expect("CNAME");
            assert!(!cname.is_empty());
            let reporter = match &pkts[0] {
                RtcpPacket::SenderReport { ssrc, .. } | RtcpPacket::ReceiverReport { ssrc, .. } => {
                    *ssrc
                }
                p => panic!("{p:?}"),
            };
            assert_eq!(ssrc, reporter);
        }
    }
}
