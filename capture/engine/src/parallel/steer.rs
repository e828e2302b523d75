//! What the dispatcher decides for each frame, decoding it once: the
//! worker takes a decoded UDP datagram as it is ([`Steer::Udp`]), without
//! decoding the frame again; only frames a worker must decode itself
//! (fragments, TCP, SCTP, SIP in a tunnel) travel as captured.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use voxtap_proto::decode::{Decoder, L4};
use voxtap_proto::pcapio::LinkType;
use voxtap_proto::sip;

use crate::calls::PacketRef;
use crate::pipeline::PipelineConfig;

/// Where a frame goes.
#[derive(Clone, Copy, Debug)]
pub(super) enum Steer<'a> {
    /// The decoder rejected it: worker 0 counts it.
    Malformed,
    /// To every worker as captured, each decoding it: not UDP, an IP
    /// fragment (every replica's reassembly must see it), SIP in a tunnel
    /// (the call notes the tunnel path).
    Raw,
    /// A UDP datagram, decoded: to its owner only when `steered`, else
    /// (SIP, RTCP) to every worker.
    Udp(Udp<'a>),
}

/// A decoded UDP datagram.
#[derive(Clone, Copy, Debug)]
pub(super) struct Udp<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// Its payload, in the frame.
    pub payload: &'a [u8],
    /// The worker its destination hashes to ([`super::worker_of`]).
    pub owner: u16,
    /// On a SIP port, or looking like SIP.
    pub sip_like: bool,
    /// To its owner only (neither SIP nor RTCP).
    pub steered: bool,
}

pub(super) struct Steerer {
    n: usize,
    decoder: Decoder,
    sip: SipTest,
}

/// The pipeline's SIP test (`Pipeline::process`).
struct SipTest {
    ports: Box<[u64; 1024]>,
    by_content: bool,
}

impl SipTest {
    fn is_sip_port(&self, p: u16) -> bool {
        self.ports[usize::from(p) / 64] & (1 << (p % 64)) != 0
    }

    /// Port bitmap first, then the content. A first byte with the top bit
    /// set (RTP and RTCP: version 2, 0x80-0xBF) is neither CR, LF nor a
    /// token character, so `looks_like_sip` would say no: tested here, it
    /// spares each media datagram a call (about 60 instructions).
    #[inline]
    fn sip_like(&self, src: u16, dst: u16, payload: &[u8]) -> bool {
        self.is_sip_port(src)
            || self.is_sip_port(dst)
            || (self.by_content
                && !matches!(payload.first(), Some(b) if *b >= 0x80)
                && sip::looks_like_sip(payload))
    }
}

impl Steerer {
    pub fn new(cfg: &PipelineConfig, n: usize) -> Self {
        let mut sip_ports = Box::new([0u64; 1024]);
        for p in &cfg.sip_ports {
            sip_ports[usize::from(*p) / 64] |= 1 << (p % 64);
        }
        Steerer {
            n,
            decoder: Decoder::with_tunnels(cfg.frag, cfg.tunnels),
            sip: SipTest {
                ports: sip_ports,
                by_content: cfg.sip_by_content,
            },
        }
    }

    /// Where `frame` goes. Plain UDP over Ethernet (nearly every frame of a
    /// VoIP link) takes [`Decoder::decode_plain_udp`], which gives the same
    /// addresses and payload as `decode` without building a full
    /// `Datagram`; everything else is decoded in full ([`Self::decoded`]).
    /// Inlined (as [`Self::udp`]) into the dispatcher's `process`, so that
    /// the verdict is built where it is used, not moved through returns.
    #[inline(always)]
    pub fn classify<'a>(
        &mut self,
        link: LinkType,
        ts_ns: u64,
        pref: PacketRef,
        frame: &'a [u8],
    ) -> Steer<'a> {
        match self.decoder.decode_plain_udp(link, ts_ns, frame) {
            // Neither tunnelled nor reassembled: its payload is in `frame`.
            Some(p) => self.udp(p.src, p.dst, p.payload),
            None => self.decoded(link, ts_ns, pref, frame),
        }
    }

    /// [`Self::classify`] of a frame that is not plain UDP over Ethernet.
    #[inline(never)]
    fn decoded<'a>(
        &mut self,
        link: LinkType,
        ts_ns: u64,
        pref: PacketRef,
        frame: &'a [u8],
    ) -> Steer<'a> {
        let dg = match self.decoder.decode(link, ts_ns, pref.0, frame) {
            Ok(Some(dg)) => dg,
            Ok(None) => return Steer::Raw,
            Err(_) => return Steer::Malformed,
        };
        if !matches!(dg.l4, L4::Udp) || !dg.fragments.is_empty() {
            return Steer::Raw;
        }
        let Some(at) = offset_in(frame, dg.payload) else {
            return Steer::Raw;
        };
        // The same bytes, borrowed from `frame` rather than the decoder.
        let payload = &frame[at as usize..at as usize + dg.payload.len()];
        let (src, dst) = (dg.src, dg.dst);
        if !dg.encap.is_empty() && self.sip.sip_like(src.port(), dst.port(), payload) {
            // SIP in a tunnel: the call notes the tunnel path.
            return Steer::Raw;
        }
        self.udp(src, dst, payload)
    }

    /// A UDP datagram whose payload is `payload`.
    #[inline(always)]
    fn udp<'a>(&self, src: SocketAddr, dst: SocketAddr, payload: &'a [u8]) -> Steer<'a> {
        let sip_like = self.sip.sip_like(src.port(), dst.port(), payload);
        let rtcp =
            matches!(payload, [b0, b1, ..] if voxtap_common::rtcp_header_plausible(*b0, *b1));
        Steer::Udp(Udp {
            src,
            dst,
            payload,
            owner: super::worker_of(dst, self.n) as u16,
            sip_like,
            steered: !(sip_like || rtcp),
        })
    }
}

/// How a datagram's addresses travel in a batch, ahead of its payload:
/// source then destination, each its address then its port (big-endian),
/// 6 bytes for IPv4 and 18 for IPv6 ([`Family`] says which). Written in the
/// batch rather than carried in each item as two `SocketAddr`s (64 bytes):
/// the item is then 48 bytes instead of 104, and the dispatcher writes
/// 12 bytes per IPv4 datagram instead of moving the addresses through its
/// verdict into the item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Family(u8);

impl Family {
    const SRC_V6: u8 = 1;
    const DST_V6: u8 = 2;

    /// Bytes of the addresses in the batch.
    pub fn len(self) -> usize {
        let v6 = |bit| if self.0 & bit != 0 { 18 } else { 6 };
        v6(Self::SRC_V6) + v6(Self::DST_V6)
    }
}

/// `src` and `dst` at the end of `bytes`: their [`Family`].
#[inline(always)]
pub(super) fn put_addrs(bytes: &mut Vec<u8>, src: SocketAddr, dst: SocketAddr) -> Family {
    if let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) {
        // Nearly every datagram: one write of 12 bytes.
        let [a, b, c, e] = s.ip().octets();
        let [sp0, sp1] = s.port().to_be_bytes();
        let [f, g, h, i] = d.ip().octets();
        let [dp0, dp1] = d.port().to_be_bytes();
        bytes.extend_from_slice(&[a, b, c, e, sp0, sp1, f, g, h, i, dp0, dp1]);
        return Family(0);
    }
    Family(put_addr(bytes, src, Family::SRC_V6) | put_addr(bytes, dst, Family::DST_V6))
}

/// One address then its port: `v6_bit` for IPv6, else 0.
fn put_addr(bytes: &mut Vec<u8>, a: SocketAddr, v6_bit: u8) -> u8 {
    match a {
        SocketAddr::V4(a) => bytes.extend_from_slice(&a.ip().octets()),
        SocketAddr::V6(a) => bytes.extend_from_slice(&a.ip().octets()),
    }
    bytes.extend_from_slice(&a.port().to_be_bytes());
    if a.is_ipv6() { v6_bit } else { 0 }
}

/// The addresses [`put_addrs`] wrote at the start of `bytes`.
#[inline]
pub(super) fn addrs(bytes: &[u8], family: Family) -> Option<(SocketAddr, SocketAddr)> {
    let (src, rest) = addr(bytes, family.0 & Family::SRC_V6 != 0)?;
    let (dst, _) = addr(rest, family.0 & Family::DST_V6 != 0)?;
    Some((src, dst))
}

/// One address and what follows it.
#[inline]
fn addr(bytes: &[u8], v6: bool) -> Option<(SocketAddr, &[u8])> {
    if v6 {
        let (ip, rest) = bytes.split_first_chunk::<16>()?;
        let (port, rest) = rest.split_first_chunk::<2>()?;
        let a = SocketAddr::new(Ipv6Addr::from(*ip).into(), u16::from_be_bytes(*port));
        Some((a, rest))
    } else {
        let (ip, rest) = bytes.split_first_chunk::<4>()?;
        let (port, rest) = rest.split_first_chunk::<2>()?;
        let a = SocketAddr::new(Ipv4Addr::from(*ip).into(), u16::from_be_bytes(*port));
        Some((a, rest))
    }
}

/// Where `part` (a slice of `frame`) starts in `frame`.
fn offset_in(frame: &[u8], part: &[u8]) -> Option<u32> {
    let at = (part.as_ptr() as usize).checked_sub(frame.as_ptr() as usize)?;
    (at.checked_add(part.len())? <= frame.len()).then_some(at as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_is_found_in_its_frame() {
        let frame = [0u8; 64];
        assert_eq!(offset_in(&frame, &frame[42..]), Some(42));
        assert_eq!(offset_in(&frame, &frame[64..]), Some(64));
        let other = [0u8; 8];
        assert_eq!(offset_in(&frame[..8], &other), None);
    }

    /// Addresses written in a batch read back as they were, of either
    /// family (and of both: the types allow it), after other bytes.
    #[test]
    fn addresses_read_back_from_the_batch() {
        let v4: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let w4: SocketAddr = "198.51.100.7:65535".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:5060".parse().unwrap();
        let w6: SocketAddr = "[::ffff:192.0.2.1]:0".parse().unwrap();
        let mut bytes = vec![9u8; 5];
        for (src, dst) in [(v4, w4), (v6, w6), (v4, v6), (w6, w4)] {
            let at = bytes.len();
            let family = put_addrs(&mut bytes, src, dst);
            assert_eq!(bytes.len() - at, family.len());
            bytes.extend_from_slice(b"payload");
            assert_eq!(addrs(&bytes[at..], family), Some((src, dst)));
        }
        assert_eq!(put_addrs(&mut bytes, v4, w4).len(), 12);
        assert_eq!(addrs(&bytes[..3], Family(0)), None);
    }
}
