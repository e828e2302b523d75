//! RTP (RFC 3550 section 5) as a zero-copy packet view, plus the heuristics
//! used to spot RTP/RTCP on ports no SDP announced, and the RFC 3551 static
//! payload-type table.
//!
//! Modelled on smoltcp's `wire` module: [`RtpPacket::new_checked`] validates
//! every length once, so the accessors afterwards cannot fail; they still go
//! through `get` so a bug here degrades to a wrong value, never a panic.

use crate::wire::{be16, be32, byte};

/// Fixed header size: V/P/X/CC, M/PT, sequence, timestamp, SSRC.
pub(crate) const FIXED_HEADER_LEN: usize = 12;

/// Why a datagram is not a well-formed RTP packet.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum RtpError {
    /// Fewer than the 12 bytes of the fixed header.
    #[error("RTP packet shorter than the 12-byte fixed header ({0} bytes)")]
    TooShort(usize),
    /// Version field is not 2 (RTP v1 and vat are long dead; anything else is
    /// not RTP).
    #[error("RTP version {0}, expected 2")]
    BadVersion(u8),
    /// The CSRC list announced by CC runs past the end of the datagram.
    #[error("CSRC list ({csrc_count} entries) runs past the end of the packet")]
    CsrcOverrun { csrc_count: u8 },
    /// X is set but the 4-byte extension header or its body does not fit.
    #[error("header extension runs past the end of the packet")]
    ExtensionOverrun,
    /// P is set but the padding count is 0 or larger than what follows the
    /// header (RFC 3550 5.1: the count includes itself, so 0 is invalid).
    #[error("invalid padding count {0}")]
    BadPadding(u8),
}

/// Zero-copy view of one RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    buf: &'a [u8],
    /// Cached by `new_checked`: fixed header + CSRCs + extension.
    header_len: usize,
    /// Cached by `new_checked`: 0 when P is clear.
    padding_len: usize,
}

impl<'a> RtpPacket<'a> {
    /// Validates version 2 and that the datagram really holds the CSRC list,
    /// the header extension and the padding the header announces.
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, RtpError> {
        let mut p = Self::new_checked_header(buf)?;
        if p.padding() {
            let count = buf.last().copied().unwrap_or(0);
            if count == 0 || usize::from(count) > buf.len() - p.header_len {
                return Err(RtpError::BadPadding(count));
            }
            p.padding_len = usize::from(count);
        }
        Ok(p)
    }

    /// Validates the header only (version, CSRC list, extension), for SRTP,
    /// whose padding is encrypted and whose last byte belongs to the
    /// authentication tag: the view sees no padding, [`Self::payload`] runs
    /// to the end of the buffer.
    pub fn new_checked_header(buf: &'a [u8]) -> Result<Self, RtpError> {
        if buf.len() < FIXED_HEADER_LEN {
            return Err(RtpError::TooShort(buf.len()));
        }
        let b0 = byte(buf, 0);
        let version = b0 >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        let csrc_count = b0 & 0x0f;
        let mut header_len = FIXED_HEADER_LEN + 4 * usize::from(csrc_count);
        if header_len > buf.len() {
            return Err(RtpError::CsrcOverrun { csrc_count });
        }
        if b0 & 0x10 != 0 {
            // RFC 3550 5.3.1: 16-bit profile field, 16-bit length in 32-bit
            // words not counting the 4-byte extension header itself.
            if header_len + 4 > buf.len() {
                return Err(RtpError::ExtensionOverrun);
            }
            let words = usize::from(be16(buf, header_len + 2));
            header_len += 4 + 4 * words;
            if header_len > buf.len() {
                return Err(RtpError::ExtensionOverrun);
            }
        }
        Ok(Self {
            buf,
            header_len,
            padding_len: 0,
        })
    }

    /// The whole datagram this view was built on.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    pub fn version(&self) -> u8 {
        byte(self.buf, 0) >> 6
    }

    pub fn padding(&self) -> bool {
        byte(self.buf, 0) & 0x20 != 0
    }

    pub fn extension(&self) -> bool {
        byte(self.buf, 0) & 0x10 != 0
    }

    pub fn csrc_count(&self) -> u8 {
        byte(self.buf, 0) & 0x0f
    }

    pub fn marker(&self) -> bool {
        byte(self.buf, 1) & 0x80 != 0
    }

    pub fn payload_type(&self) -> u8 {
        byte(self.buf, 1) & 0x7f
    }

    pub fn sequence(&self) -> u16 {
        be16(self.buf, 2)
    }

    pub fn timestamp(&self) -> u32 {
        be32(self.buf, 4)
    }

    pub fn ssrc(&self) -> u32 {
        be32(self.buf, 8)
    }

    /// Contributing sources, in header order.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + 'a {
        let end = FIXED_HEADER_LEN + 4 * usize::from(self.csrc_count());
        self.buf
            .get(FIXED_HEADER_LEN..end)
            .unwrap_or(&[])
            .chunks_exact(4)
            .map(|c| be32(c, 0))
    }

    /// Header extension as (profile-defined 16 bits, extension body), when X
    /// is set. RFC 8285 one-/two-byte elements live inside the body.
    pub fn extension_header(&self) -> Option<(u16, &'a [u8])> {
        if !self.extension() {
            return None;
        }
        let at = FIXED_HEADER_LEN + 4 * usize::from(self.csrc_count());
        let body = self.buf.get(at.saturating_add(4)..self.header_len)?;
        Some((be16(self.buf, at), body))
    }

    /// Fixed header + CSRC list + header extension.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// Payload with the padding removed.
    pub fn payload(&self) -> &'a [u8] {
        let end = self.buf.len().saturating_sub(self.padding_len);
        self.buf.get(self.header_len..end).unwrap_or(&[])
    }

    /// Number of padding bytes at the end, including the count byte itself.
    pub fn padding_len(&self) -> usize {
        self.padding_len
    }
}

/// Cheap test for "this UDP payload is probably RTP", for media on ports no
/// SDP announced. Payload types 72..=95 are rejected because with the marker
/// bit set they are the RTCP packet types 200..=223 (RFC 5761 section 4).
/// The header rule is `voxtap_common`'s, shared with the XDP classifier;
/// here the lengths the header announces must also fit.
pub fn looks_like_rtp(buf: &[u8]) -> bool {
    RtpPacket::new_checked(buf).is_ok()
        && voxtap_common::rtp_header_plausible(byte(buf, 0), byte(buf, 1))
}

/// Cheap test for "this UDP payload is probably a (compound) RTCP datagram":
/// version 2, first packet type one of SR, RR, SDES, BYE, APP, RTPFB, PSFB, XR,
/// and the length fields of the packets tile the datagram exactly (RFC 3550
/// A.2). Padding is only allowed on the last packet.
pub fn looks_like_rtcp(buf: &[u8]) -> bool {
    if !(200..=207).contains(&byte(buf, 1)) {
        return false;
    }
    let mut rest = buf;
    while !rest.is_empty() {
        let b0 = byte(rest, 0);
        if rest.len() < 4 || b0 >> 6 != 2 {
            return false;
        }
        let len = (usize::from(be16(rest, 2)) + 1) * 4;
        let Some(next) = rest.get(len..) else {
            return false;
        };
        if b0 & 0x20 != 0 && !next.is_empty() {
            return false;
        }
        rest = next;
    }
    true
}

/// One entry of the RFC 3551 static payload-type table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    /// Encoding name as used in SDP `a=rtpmap`.
    pub name: &'static str,
    /// RTP timestamp clock, which is not always the sampling rate: G.722 is
    /// 8000 for historical reasons (RFC 3551 4.5.2).
    pub clock_rate: u32,
    /// Audio channels; 0 for video encodings, where it does not apply.
    pub channels: u8,
}

const fn codec(name: &'static str, clock_rate: u32, channels: u8) -> Option<Codec> {
    Some(Codec {
        name,
        clock_rate,
        channels,
    })
}

/// RFC 3551 tables 4 and 5. Reserved/unassigned numbers (1, 2, 19, ...) and
/// the dynamic range return `None`: those need SDP.
pub fn static_codec(pt: u8) -> Option<Codec> {
    match pt {
        0 => codec("PCMU", 8000, 1),
        3 => codec("GSM", 8000, 1),
        4 => codec("G723", 8000, 1),
        5 => codec("DVI4", 8000, 1),
        6 => codec("DVI4", 16000, 1),
        7 => codec("LPC", 8000, 1),
        8 => codec("PCMA", 8000, 1),
        9 => codec("G722", 8000, 1),
        10 => codec("L16", 44100, 2),
        11 => codec("L16", 44100, 1),
        12 => codec("QCELP", 8000, 1),
        13 => codec("CN", 8000, 1),
        14 => codec("MPA", 90000, 1),
        15 => codec("G728", 8000, 1),
        16 => codec("DVI4", 11025, 1),
        17 => codec("DVI4", 22050, 1),
        18 => codec("G729", 8000, 1),
        25 => codec("CelB", 90000, 0),
        26 => codec("JPEG", 90000, 0),
        28 => codec("nv", 90000, 0),
        31 => codec("H261", 90000, 0),
        32 => codec("MPV", 90000, 0),
        33 => codec("MP2T", 90000, 0),
        34 => codec("H263", 90000, 0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a header: V=2, flags, CC, PT, seq 0x1234, ts 0xdeadbeef,
    /// ssrc 0x01020304.
    fn header(p: bool, x: bool, cc: u8, marker: bool, pt: u8) -> Vec<u8> {
        let b0 = 0x80 | (u8::from(p) << 5) | (u8::from(x) << 4) | cc;
        let b1 = (u8::from(marker) << 7) | pt;
        let mut v = vec![b0, b1, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4];
        for i in 0..u32::from(cc) {
            v.extend_from_slice(&(0xc000_0000 + i).to_be_bytes());
        }
        v
    }

    #[test]
    fn rtp_fixed_fields() {
        let mut b = header(false, false, 0, true, 8);
        b.extend_from_slice(&[0xd5; 160]);
        let p = RtpPacket::new_checked(&b).unwrap();
        assert_eq!(p.version(), 2);
        assert!(!p.padding() && !p.extension() && p.marker());
        assert_eq!(p.payload_type(), 8);
        assert_eq!(p.sequence(), 0x1234);
        assert_eq!(p.timestamp(), 0xdead_beef);
        assert_eq!(p.ssrc(), 0x0102_0304);
        assert_eq!(p.header_len(), 12);
        assert_eq!(p.payload().len(), 160);
        assert_eq!(p.csrcs().count(), 0);
        assert!(looks_like_rtp(&b));
    }

    #[test]
    fn rtp_csrcs_extension_padding() {
        let mut b = header(true, true, 2, false, 0);
        // Extension: profile 0xBEDE, 2 words.
        b.extend_from_slice(&[0xbe, 0xde, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8]);
        b.extend_from_slice(b"payload");
        b.extend_from_slice(&[0, 0, 3]);
        let p = RtpPacket::new_checked(&b).unwrap();
        assert_eq!(p.csrc_count(), 2);
        assert_eq!(p.csrcs().collect::<Vec<_>>(), [0xc000_0000, 0xc000_0001]);
        assert_eq!(p.header_len(), 12 + 8 + 4 + 8);
        assert_eq!(
            p.extension_header(),
            Some((0xbede, &[1u8, 2, 3, 4, 5, 6, 7, 8][..]))
        );
        assert_eq!(p.padding_len(), 3);
        assert_eq!(p.payload(), b"payload");
    }

    #[test]
    fn rtp_padding_only_payload_is_empty() {
        let mut b = header(true, false, 0, false, 0);
        b.extend_from_slice(&[0, 0, 0, 4]);
        let p = RtpPacket::new_checked(&b).unwrap();
        assert_eq!(p.payload(), b"");
    }

    #[test]
    fn rtp_bad_version_and_short() {
        let mut b = header(false, false, 0, false, 0);
        assert_eq!(
            RtpPacket::new_checked(&b[..11]),
            Err(RtpError::TooShort(11))
        );
        b[0] = 0x40;
        assert_eq!(RtpPacket::new_checked(&b), Err(RtpError::BadVersion(1)));
        assert!(!looks_like_rtp(&b));
        assert!(!looks_like_rtp(b"INVITE sip:bob@example.com SIP/2.0\r\n"));
    }

    #[test]
    fn rtp_lengths_that_lie() {
        // CC says 3 CSRCs, only 1 present.
        let mut b = header(false, false, 1, false, 0);
        b[0] = (b[0] & 0xf0) | 3;
        assert_eq!(
            RtpPacket::new_checked(&b),
            Err(RtpError::CsrcOverrun { csrc_count: 3 })
        );
        // X set, no room for the extension header.
        let b = header(false, true, 0, false, 0);
        assert_eq!(RtpPacket::new_checked(&b), Err(RtpError::ExtensionOverrun));
        // Extension length claims 0xffff words.
        let mut b = header(false, true, 0, false, 0);
        b.extend_from_slice(&[0xbe, 0xde, 0xff, 0xff, 0, 0, 0, 0]);
        assert_eq!(RtpPacket::new_checked(&b), Err(RtpError::ExtensionOverrun));
        // Padding count larger than the payload, and zero.
        let mut b = header(true, false, 0, false, 0);
        b.extend_from_slice(&[1, 2, 200]);
        assert_eq!(RtpPacket::new_checked(&b), Err(RtpError::BadPadding(200)));
        let last = b.len() - 1;
        b[last] = 0;
        assert_eq!(RtpPacket::new_checked(&b), Err(RtpError::BadPadding(0)));
        // Padding may eat exactly the payload but not the header.
        b[last] = 3;
        assert!(RtpPacket::new_checked(&b).is_ok());
        b[last] = 4;
        assert_eq!(RtpPacket::new_checked(&b), Err(RtpError::BadPadding(4)));
    }

    #[test]
    fn rtp_header_only_view_for_srtp() {
        // P set and a last byte of 0: invalid padding as RTP, but in SRTP
        // that byte is the tag's and the padding is encrypted.
        let mut b = header(true, true, 1, false, 0);
        b.extend_from_slice(&[0xbe, 0xde, 0, 1, 9, 9, 9, 9]);
        b.extend_from_slice(&[1, 2, 3, 0]);
        assert_eq!(RtpPacket::new_checked(&b), Err(RtpError::BadPadding(0)));
        let p = RtpPacket::new_checked_header(&b).unwrap();
        assert_eq!(p.header_len(), 12 + 4 + 8);
        assert_eq!((p.padding_len(), p.payload()), (0, &[1u8, 2, 3, 0][..]));
        assert_eq!(p.sequence(), 0x1234);
        // The header checks are the same.
        let b = header(false, true, 0, false, 0);
        assert_eq!(
            RtpPacket::new_checked_header(&b),
            Err(RtpError::ExtensionOverrun)
        );
        assert_eq!(
            RtpPacket::new_checked_header(&b[..11]),
            Err(RtpError::TooShort(11))
        );
    }

    #[test]
    fn rtp_heuristic_rejects_rtcp_range() {
        // An RTCP RR (PT 201) read as RTP has PT 73 with the marker set.
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0];
        assert!(!looks_like_rtp(&rr));
        assert!(looks_like_rtcp(&rr[..8]));
        assert!(!looks_like_rtcp(&rr)); // length says 8 bytes, datagram is 12
        assert!(!looks_like_rtcp(&[]));
        assert!(!looks_like_rtcp(&[0x80, 201]));
    }

    #[test]
    fn rtcp_heuristic_compound_walk() {
        let mut d = vec![0x80, 200, 0, 6];
        d.extend_from_slice(&[0; 24]);
        d.extend_from_slice(&[0x81, 202, 0, 1, 0, 0, 0, 1]);
        assert!(looks_like_rtcp(&d));
        d.push(0);
        assert!(!looks_like_rtcp(&d));
        // Padding bit on a packet that is not the last one.
        let mut d = vec![0xa0, 201, 0, 1, 0, 0, 0, 1];
        d.extend_from_slice(&[0x80, 203, 0, 0]);
        assert!(!looks_like_rtcp(&d));
        // First packet not SR/RR/.../XR.
        assert!(!looks_like_rtcp(&[0x80, 199, 0, 0]));
    }

    #[test]
    fn static_table() {
        assert_eq!(static_codec(0).unwrap().name, "PCMU");
        assert_eq!(static_codec(9).unwrap().clock_rate, 8000);
        assert_eq!(static_codec(10).unwrap().channels, 2);
        assert_eq!(static_codec(11).unwrap().channels, 1);
        assert_eq!(static_codec(14).unwrap().clock_rate, 90000);
        assert_eq!(static_codec(17).unwrap().clock_rate, 22050);
        assert_eq!(static_codec(34).unwrap().name, "H263");
        for pt in [1, 2, 19, 20, 24, 27, 29, 30, 35, 96, 127, 200] {
            assert_eq!(static_codec(pt), None, "pt {pt}");
        }
    }
}

/// Minimal classic-pcap reader for the corpus tests of this module and its
/// siblings: Ethernet (optionally one 802.1Q tag) or Linux SLL, IPv4, UDP.
/// The real decoder lives elsewhere; this only has to read our corpus.
#[cfg(test)]
pub(crate) mod test_pcap {
    /// One UDP datagram: (arrival ns, src ip:port, dst ip:port, payload).
    pub(crate) type Datagram = (u64, ([u8; 4], u16), ([u8; 4], u16), Vec<u8>);

    /// Panics when the corpus file is missing: a test that cannot read its
    /// input must fail, not pass. `None` when the file is not a pcap it reads.
    pub(crate) fn udp_datagrams(path: &str) -> Option<Vec<Datagram>> {
        let full = voxtap_testkit::corpus(path);
        // The project's own reader and decoder, not a second copy of them.
        let mut r = crate::pcapio::PcapReader::open(std::path::Path::new(&full)).ok()?;
        let mut dec = crate::decode::Decoder::new(crate::decode::FragLimits::default());
        let mut out = Vec::new();
        let mut n = 0u64;
        while let Ok(Some(rec)) = r.next_packet() {
            n += 1;
            let Ok(Some(d)) = dec.decode(rec.link, rec.ts_ns, n, rec.data) else {
                continue;
            };
            let (std::net::SocketAddr::V4(src), std::net::SocketAddr::V4(dst)) = (d.src, d.dst)
            else {
                continue;
            };
            if d.l4 != crate::decode::L4::Udp {
                continue;
            }
            out.push((
                rec.ts_ns,
                (src.ip().octets(), src.port()),
                (dst.ip().octets(), dst.port()),
                d.payload.to_vec(),
            ));
        }
        Some(out)
    }
}
