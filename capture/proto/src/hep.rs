//! HEP version 3 (Homer Encapsulation Protocol) on the wire: a checked,
//! zero-copy view of a received packet and an encoder that appends one to a
//! buffer. Pure: bytes in, values out; never panics on any input.
//!
//! A packet is `"HEP3"`, a 16-bit total length (header included), then
//! chunks: vendor id (16), chunk type (16), chunk length (16, its 6-byte
//! header included), value. Every number is big-endian. Only vendor 0
//! ("generic") chunks are interpreted; others are skipped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use std::io::Write;

use thiserror::Error;

use crate::rtcp::{RtcpPacket, parse_compound};
use crate::wire::try_be16;

pub(crate) const MAGIC: &[u8; 4] = b"HEP3";
/// Magic and total length.
pub const HEADER_LEN: usize = 6;
pub(crate) const CHUNK_HEADER_LEN: usize = 6;
/// The length field is 16 bits: no packet is larger.
pub(crate) const MAX_PACKET: usize = u16::MAX as usize;

/// Generic chunk types (vendor 0).
pub mod chunk {
    pub const IP_FAMILY: u16 = 0x0001;
    pub const IP_PROTO: u16 = 0x0002;
    pub const IPV4_SRC: u16 = 0x0003;
    pub const IPV4_DST: u16 = 0x0004;
    pub const IPV6_SRC: u16 = 0x0005;
    pub const IPV6_DST: u16 = 0x0006;
    pub const SRC_PORT: u16 = 0x0007;
    pub const DST_PORT: u16 = 0x0008;
    pub const TS_SEC: u16 = 0x0009;
    pub const TS_USEC: u16 = 0x000a;
    pub const PROTO_TYPE: u16 = 0x000b;
    pub const CAPTURE_ID: u16 = 0x000c;
    pub const AUTH_KEY: u16 = 0x000e;
    pub const PAYLOAD: u16 = 0x000f;
    pub const COMPRESSED_PAYLOAD: u16 = 0x0010;
    pub const CORRELATION_ID: u16 = 0x0011;
}

/// Values of the protocol type chunk (0x000b) that voxtap sends or reads.
pub mod proto_type {
    pub const SIP: u8 = 1;
    /// RTCP as JSON, in the field layout heplify uses (Homer stores it per
    /// correlation id).
    pub const RTCP: u8 = 5;
    /// An RTP quality report as JSON (captagent/hepagent "RTP report":
    /// Homer files every type it does not know as a report).
    pub const RTP_REPORT: u8 = 34;
}

pub(crate) const FAMILY_V4: u8 = 2;
pub(crate) const FAMILY_V6: u8 = 10;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HepError {
    #[error("HEP packet shorter than its 6-byte header ({0} bytes)")]
    TooShort(usize),
    #[error("not HEP3 (magic {0:02x?})")]
    BadMagic([u8; 4]),
    #[error("HEP length field says {claimed} bytes, {available} available")]
    BadLength { claimed: usize, available: usize },
    #[error("HEP chunk at offset {offset} is truncated")]
    ChunkTruncated { offset: usize },
    #[error("HEP chunk type {kind:#06x} at offset {offset} has bad length {len}")]
    ChunkLength {
        offset: usize,
        kind: u16,
        len: usize,
    },
    #[error("HEP chunk type {kind:#06x} should be {want} bytes, is {got}")]
    ChunkSize { kind: u16, want: usize, got: usize },
    #[error("HEP packet would be {0} bytes; at most 65535")]
    TooLarge(usize),
}

/// One chunk of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'a> {
    pub vendor: u16,
    pub kind: u16,
    pub value: &'a [u8],
}

/// A received packet whose header and chunk framing have been checked.
#[derive(Debug, Clone, Copy)]
pub struct HepPacket<'a> {
    /// Exactly the packet (the length field's bytes), header included.
    buf: &'a [u8],
}

/// The total length of the HEP3 packet at the start of a byte stream, once
/// its 6-byte header is there: frames HEP over TCP. `Ok(None)` wants more
/// bytes.
pub fn frame_len(stream: &[u8]) -> Result<Option<usize>, HepError> {
    // A wrong magic is visible before the whole header is.
    if stream.iter().zip(MAGIC).any(|(a, b)| a != b) {
        let mut m = [0u8; 4];
        m.iter_mut().zip(stream).for_each(|(d, s)| *d = *s);
        return Err(HepError::BadMagic(m));
    }
    let Some(len) = try_be16(stream, 4) else {
        return Ok(None);
    };
    let len = usize::from(len);
    if len < HEADER_LEN {
        return Err(HepError::BadLength {
            claimed: len,
            available: stream.len(),
        });
    }
    Ok(Some(len))
}

impl<'a> HepPacket<'a> {
    /// Checks the magic, the length field (bytes past it are ignored, as a
    /// datagram may be padded) and that the chunks tile the packet exactly.
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, HepError> {
        if buf.len() < HEADER_LEN {
            return Err(HepError::TooShort(buf.len()));
        }
        let Some(len) = frame_len(buf)? else {
            return Err(HepError::TooShort(buf.len()));
        };
        let Some(packet) = buf.get(..len) else {
            return Err(HepError::BadLength {
                claimed: len,
                available: buf.len(),
            });
        };
        let p = HepPacket { buf: packet };
        let mut off = HEADER_LEN;
        while off < len {
            let (Some(kind), Some(clen)) = (try_be16(p.buf, off + 2), try_be16(p.buf, off + 4))
            else {
                return Err(HepError::ChunkTruncated { offset: off });
            };
            let clen = usize::from(clen);
            if clen < CHUNK_HEADER_LEN || off + clen > len {
                return Err(HepError::ChunkLength {
                    offset: off,
                    kind,
                    len: clen,
                });
            }
            off += clen;
        }
        Ok(p)
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    pub fn chunks(&self) -> Chunks<'a> {
        Chunks {
            buf: self.buf,
            off: HEADER_LEN,
        }
    }
}

/// The chunks of a checked packet, in order.
pub struct Chunks<'a> {
    buf: &'a [u8],
    off: usize,
}

impl<'a> Iterator for Chunks<'a> {
    type Item = Chunk<'a>;

    fn next(&mut self) -> Option<Chunk<'a>> {
        let off = self.off;
        let vendor = try_be16(self.buf, off)?;
        let kind = try_be16(self.buf, off + 2)?;
        let len = usize::from(try_be16(self.buf, off + 4)?);
        let value = self
            .buf
            .get(off + CHUNK_HEADER_LEN..off.checked_add(len)?)?;
        self.off = off + len;
        Some(Chunk {
            vendor,
            kind,
            value,
        })
    }
}

/// The generic fields of a packet. Missing chunks are `None`; a repeated
/// chunk keeps its last value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hep<'a> {
    pub family: Option<u8>,
    pub ip_proto: Option<u8>,
    pub src_ip: Option<IpAddr>,
    pub dst_ip: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    pub ts_sec: Option<u32>,
    pub ts_usec: Option<u32>,
    pub proto_type: Option<u8>,
    pub capture_id: Option<u32>,
    pub auth_key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    /// Set when the sender gzip-compressed the payload (not inflated here).
    pub compressed_payload: Option<&'a [u8]>,
    pub correlation_id: Option<&'a [u8]>,
}

fn fixed<const N: usize>(c: &Chunk<'_>) -> Result<[u8; N], HepError> {
    c.value.try_into().map_err(|_| HepError::ChunkSize {
        kind: c.kind,
        want: N,
        got: c.value.len(),
    })
}

impl<'a> Hep<'a> {
    pub fn parse(buf: &'a [u8]) -> Result<Self, HepError> {
        let p = HepPacket::new_checked(buf)?;
        let mut h = Hep::default();
        for c in p.chunks().filter(|c| c.vendor == 0) {
            match c.kind {
                chunk::IP_FAMILY => h.family = Some(fixed::<1>(&c)?[0]),
                chunk::IP_PROTO => h.ip_proto = Some(fixed::<1>(&c)?[0]),
                chunk::IPV4_SRC => h.src_ip = Some(Ipv4Addr::from(fixed::<4>(&c)?).into()),
                chunk::IPV4_DST => h.dst_ip = Some(Ipv4Addr::from(fixed::<4>(&c)?).into()),
                chunk::IPV6_SRC => h.src_ip = Some(Ipv6Addr::from(fixed::<16>(&c)?).into()),
                chunk::IPV6_DST => h.dst_ip = Some(Ipv6Addr::from(fixed::<16>(&c)?).into()),
                chunk::SRC_PORT => h.src_port = Some(u16::from_be_bytes(fixed(&c)?)),
                chunk::DST_PORT => h.dst_port = Some(u16::from_be_bytes(fixed(&c)?)),
                chunk::TS_SEC => h.ts_sec = Some(u32::from_be_bytes(fixed(&c)?)),
                chunk::TS_USEC => h.ts_usec = Some(u32::from_be_bytes(fixed(&c)?)),
                chunk::PROTO_TYPE => h.proto_type = Some(fixed::<1>(&c)?[0]),
                chunk::CAPTURE_ID => h.capture_id = Some(u32::from_be_bytes(fixed(&c)?)),
                chunk::AUTH_KEY => h.auth_key = Some(c.value),
                chunk::PAYLOAD => h.payload = Some(c.value),
                chunk::COMPRESSED_PAYLOAD => h.compressed_payload = Some(c.value),
                chunk::CORRELATION_ID => h.correlation_id = Some(c.value),
                _ => {}
            }
        }
        Ok(h)
    }

    /// Source and destination as socket addresses, when both addresses are
    /// present (ports default to 0).
    pub fn endpoints(&self) -> Option<(SocketAddr, SocketAddr)> {
        Some((
            SocketAddr::new(self.src_ip?, self.src_port.unwrap_or(0)),
            SocketAddr::new(self.dst_ip?, self.dst_port.unwrap_or(0)),
        ))
    }

    /// Capture time in ns since the epoch (microsecond resolution).
    pub fn ts_ns(&self) -> Option<u64> {
        let s = u64::from(self.ts_sec?);
        let us = u64::from(self.ts_usec.unwrap_or(0));
        Some(s * 1_000_000_000 + us.min(999_999) * 1000)
    }
}

/// What one outgoing packet says.
#[derive(Debug, Clone, Copy)]
pub struct HepFields<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// IPPROTO_UDP or IPPROTO_TCP: how the payload travelled.
    pub ip_proto: u8,
    /// Capture time, ns since the epoch.
    pub ts_ns: u64,
    pub proto_type: u8,
    pub capture_id: u32,
    /// Omitted when empty.
    pub auth_key: &'a [u8],
    /// Omitted when empty.
    pub correlation_id: &'a [u8],
    pub payload: &'a [u8],
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

fn put_chunk(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    // The caller checked the total fits 16 bits, so each chunk does too.
    out.extend_from_slice(&((value.len() + CHUNK_HEADER_LEN) as u16).to_be_bytes());
    out.extend_from_slice(value);
}

impl HepFields<'_> {
    /// The encoded size of this packet.
    pub fn encoded_len(&self) -> usize {
        let both_v4 = self.src.is_ipv4() && self.dst.is_ipv4();
        let addr = if both_v4 { 4 } else { 16 };
        let opt = |b: &[u8]| {
            if b.is_empty() {
                0
            } else {
                CHUNK_HEADER_LEN + b.len()
            }
        };
        HEADER_LEN
            + 2 * (CHUNK_HEADER_LEN + 1) // family, ip proto
            + 2 * (CHUNK_HEADER_LEN + addr)
            + 2 * (CHUNK_HEADER_LEN + 2) // ports
            + 2 * (CHUNK_HEADER_LEN + 4) // time
            + (CHUNK_HEADER_LEN + 1) // protocol type
            + (CHUNK_HEADER_LEN + 4) // capture id
            + opt(self.auth_key)
            + opt(self.correlation_id)
            + CHUNK_HEADER_LEN
            + self.payload.len()
    }

    /// Appends the packet to `out`; returns its length. Nothing is written
    /// when it would not fit the 16-bit length. A packet mixing an IPv4 and
    /// an IPv6 address sends both as IPv6 (v4-mapped).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<usize, HepError> {
        let len = self.encoded_len();
        if len > MAX_PACKET {
            return Err(HepError::TooLarge(len));
        }
        out.reserve(len);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(len as u16).to_be_bytes());
        let both_v4 = self.src.is_ipv4() && self.dst.is_ipv4();
        put_chunk(
            out,
            chunk::IP_FAMILY,
            &[if both_v4 { FAMILY_V4 } else { FAMILY_V6 }],
        );
        put_chunk(out, chunk::IP_PROTO, &[self.ip_proto]);
        match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                put_chunk(out, chunk::IPV4_SRC, &s.octets());
                put_chunk(out, chunk::IPV4_DST, &d.octets());
            }
            (s, d) => {
                put_chunk(out, chunk::IPV6_SRC, &v6(s).octets());
                put_chunk(out, chunk::IPV6_DST, &v6(d).octets());
            }
        }
        put_chunk(out, chunk::SRC_PORT, &self.src.port().to_be_bytes());
        put_chunk(out, chunk::DST_PORT, &self.dst.port().to_be_bytes());
        let sec = (self.ts_ns / 1_000_000_000).min(u64::from(u32::MAX)) as u32;
        let usec = ((self.ts_ns % 1_000_000_000) / 1000) as u32;
        put_chunk(out, chunk::TS_SEC, &sec.to_be_bytes());
        put_chunk(out, chunk::TS_USEC, &usec.to_be_bytes());
        put_chunk(out, chunk::PROTO_TYPE, &[self.proto_type]);
        put_chunk(out, chunk::CAPTURE_ID, &self.capture_id.to_be_bytes());
        if !self.auth_key.is_empty() {
            put_chunk(out, chunk::AUTH_KEY, self.auth_key);
        }
        if !self.correlation_id.is_empty() {
            put_chunk(out, chunk::CORRELATION_ID, self.correlation_id);
        }
        put_chunk(out, chunk::PAYLOAD, self.payload);
        Ok(len)
    }
}

/// Writes the RTCP compound `payload` as JSON into `out` (cleared first),
/// without allocating once `out` has grown. Returns false, leaving `out`
/// empty, when it holds no sender or receiver report (nothing Homer could
/// chart).
///
/// Fields: `type` and `ssrc` of the first SR/RR, `report_count` (its report
/// blocks), `sender_information` (zeros for an RR), `report_blocks` of the
/// compound's SR/RRs, `sdes_ssrc` of its SDES (0 if none). `packets_lost`
/// is RFC 3550's signed cumulative count.
pub fn rtcp_json(payload: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let mut first: Option<(u8, u32)> = None;
    let mut sender = [0u32; 5];
    let mut sdes_ssrc = 0u32;
    let mut blocks = 0usize;
    // Two passes over the compound: headers first, then the blocks array,
    // so nothing is collected in between.
    for pkt in parse_compound(payload) {
        let Ok(pkt) = pkt else { break };
        match &pkt {
            RtcpPacket::SenderReport {
                ssrc,
                ntp_sec,
                ntp_frac,
                rtp_ts,
                packet_count,
                octet_count,
                reports,
            } => {
                if first.is_none() {
                    first = Some((200, *ssrc));
                    sender = [*ntp_sec, *ntp_frac, *rtp_ts, *packet_count, *octet_count];
                }
                blocks += reports.len();
            }
            RtcpPacket::ReceiverReport { ssrc, reports } => {
                if first.is_none() {
                    first = Some((201, *ssrc));
                }
                blocks += reports.len();
            }
            RtcpPacket::SourceDescription(chunks) => {
                if sdes_ssrc == 0
                    && let Some(c) = chunks.clone().next()
                {
                    sdes_ssrc = c.ssrc;
                }
            }
            _ => {}
        }
    }
    let Some((kind, ssrc)) = first else {
        return false;
    };
    let _ = write!(
        out,
        "{{\"type\":{kind},\"ssrc\":{ssrc},\"report_count\":{blocks},\"sender_information\":{{\"ntp_timestamp_sec\":{},\"ntp_timestamp_usec\":{},\"rtp_timestamp\":{},\"packets\":{},\"octets\":{}}},\"report_blocks\":[",
        sender[0], sender[1], sender[2], sender[3], sender[4]
    );
    let mut n = 0;
    for pkt in parse_compound(payload) {
        let Ok(pkt) = pkt else { break };
        let reports = match pkt {
            RtcpPacket::SenderReport { reports, .. }
            | RtcpPacket::ReceiverReport { reports, .. } => reports,
            _ => continue,
        };
        for b in reports {
            if n > 0 {
                out.push(b',');
            }
            n += 1;
            let _ = write!(
                out,
                "{{\"source_ssrc\":{},\"fraction_lost\":{},\"packets_lost\":{},\"highest_seq_no\":{},\"ia_jitter\":{},\"lsr\":{},\"dlsr\":{}}}",
                b.ssrc, b.fraction_lost, b.cumulative_lost, b.highest_seq, b.jitter, b.lsr, b.dlsr
            );
        }
    }
    let _ = write!(out, "],\"sdes_ssrc\":{sdes_ssrc}}}");
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(payload: &'a [u8]) -> HepFields<'a> {
        HepFields {
            src: "10.0.0.1:5060".parse().unwrap(),
            dst: "10.0.0.2:5080".parse().unwrap(),
            ip_proto: IPPROTO_UDP,
            ts_ns: 1_700_000_000_123_456_789,
            proto_type: proto_type::SIP,
            capture_id: 2001,
            auth_key: b"secret",
            correlation_id: b"abc@host",
            payload,
        }
    }

    #[test]
    fn round_trip() {
        let mut out = Vec::new();
        let n = fields(b"OPTIONS sip:x SIP/2.0\r\n\r\n")
            .encode(&mut out)
            .unwrap();
        assert_eq!(n, out.len());
        let h = Hep::parse(&out).unwrap();
        assert_eq!(h.family, Some(FAMILY_V4));
        assert_eq!(h.ip_proto, Some(IPPROTO_UDP));
        let (s, d) = h.endpoints().unwrap();
        assert_eq!(s, "10.0.0.1:5060".parse().unwrap());
        assert_eq!(d, "10.0.0.2:5080".parse().unwrap());
        assert_eq!(h.ts_sec, Some(1_700_000_000));
        assert_eq!(h.ts_usec, Some(123_456));
        assert_eq!(h.ts_ns(), Some(1_700_000_000_123_456_000));
        assert_eq!(h.capture_id, Some(2001));
        assert_eq!(h.auth_key, Some(&b"secret"[..]));
        assert_eq!(h.correlation_id, Some(&b"abc@host"[..]));
        assert_eq!(h.payload, Some(&b"OPTIONS sip:x SIP/2.0\r\n\r\n"[..]));
    }

    /// A packet written out by hand from the HEP3 chunk table, so the
    /// encoder is checked against the spec rather than against itself.
    #[test]
    fn encoder_matches_hand_built_bytes() {
        let f = HepFields {
            src: "1.2.3.4:5060".parse().unwrap(),
            dst: "5.6.7.8:5061".parse().unwrap(),
            ip_proto: IPPROTO_UDP,
            ts_ns: 1_000_000_002_000,
            proto_type: proto_type::SIP,
            capture_id: 7,
            auth_key: b"",
            correlation_id: b"",
            payload: b"X",
        };
        let mut out = Vec::new();
        f.encode(&mut out).unwrap();
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            b'H', b'E', b'P', b'3', 0, 100,
            0, 0, 0, 1, 0, 7, 2,
            0, 0, 0, 2, 0, 7, 17,
            0, 0, 0, 3, 0, 10, 1, 2, 3, 4,
            0, 0, 0, 4, 0, 10, 5, 6, 7, 8,
            0, 0, 0, 7, 0, 8, 0x13, 0xc4,
            0, 0, 0, 8, 0, 8, 0x13, 0xc5,
            0, 0, 0, 9, 0, 10, 0, 0, 3, 0xe8,
            0, 0, 0, 10, 0, 10, 0, 0, 0, 2,
            0, 0, 0, 11, 0, 7, 1,
            0, 0, 0, 12, 0, 10, 0, 0, 0, 7,
            0, 0, 0, 15, 0, 7, b'X',
        ];
        assert_eq!(out, want);
    }

    #[test]
    fn mixed_families_go_as_v6() {
        let mut f = fields(b"x");
        f.dst = "[2001:db8::1]:5060".parse().unwrap();
        let mut out = Vec::new();
        f.encode(&mut out).unwrap();
        let h = Hep::parse(&out).unwrap();
        assert_eq!(h.family, Some(FAMILY_V6));
        assert_eq!(h.src_ip, Some("::ffff:10.0.0.1".parse::<IpAddr>().unwrap()));
        assert_eq!(h.dst_ip, Some("2001:db8::1".parse::<IpAddr>().unwrap()));
    }

    #[test]
    fn too_large_writes_nothing() {
        let big = vec![b'a'; 70_000];
        let mut out = vec![1, 2, 3];
        assert!(matches!(
            fields(&big).encode(&mut out),
            Err(HepError::TooLarge(_))
        ));
        assert_eq!(out, vec![1, 2, 3]);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(Hep::parse(b"HEP"), Err(HepError::TooShort(3)));
        assert!(matches!(
            Hep::parse(b"HEP2\0\x06"),
            Err(HepError::BadMagic(_))
        ));
        assert!(matches!(
            Hep::parse(b"HEP3\0\x20"),
            Err(HepError::BadLength { .. })
        ));
        // A chunk that claims to run past the packet.
        assert!(matches!(
            Hep::parse(b"HEP3\0\x0d\0\0\0\x01\0\x09\x02"),
            Err(HepError::ChunkLength { .. })
        ));
        // A chunk length below its own header.
        assert!(matches!(
            Hep::parse(b"HEP3\0\x0c\0\0\0\x01\0\x02"),
            Err(HepError::ChunkLength { .. })
        ));
        // A fixed-size chunk of the wrong size.
        // The length field past the end of the datagram.
        assert!(matches!(
            Hep::parse(b"HEP3\0\x0e\0\0\0\x07\0\x08\x13"),
            Err(HepError::BadLength { .. })
        ));
        assert!(matches!(
            Hep::parse(b"HEP3\0\x0d\0\0\0\x07\0\x07\x13"),
            Err(HepError::ChunkSize { .. })
        ));
    }

    #[test]
    fn frames_a_stream() {
        assert_eq!(frame_len(b"HE"), Ok(None));
        assert!(frame_len(b"GET / HTTP/1.1").is_err());
        assert!(frame_len(b"XY").is_err());
        assert_eq!(frame_len(b"HEP3\x01\x00rest"), Ok(Some(256)));
        assert!(frame_len(b"HEP3\0\x03").is_err());
    }

    #[test]
    fn vendor_chunks_are_skipped() {
        let mut out = Vec::new();
        fields(b"p").encode(&mut out).unwrap();
        // Append a vendor-specific chunk and fix the total length.
        out.extend_from_slice(&[0, 3, 0, 0x0f, 0, 7, b'Z']);
        let len = out.len() as u16;
        out[4..6].copy_from_slice(&len.to_be_bytes());
        let h = Hep::parse(&out).unwrap();
        assert_eq!(h.payload, Some(&b"p"[..]));
    }
}
