//! Unwrapping encapsulations: from the link layer, through any nesting of
//! VLAN tags, MPLS label stacks (IP, or an Ethernet pseudowire with or
//! without control word), PPPoE sessions, IP-in-IP, GRE (IP, Ethernet,
//! MPLS, ERSPAN I/II/III), VXLAN, Geneve and GTP-U, down to the innermost
//! IP protocol. The XDP program follows the same rules (capture-ebpf).
//!
//! Every encapsulation header is a hop of the frame's [`Encap`] path; a
//! frame with more hops than the configured depth is refused
//! ([`DecodeError::TooDeep`]), which bounds the work per frame.

use std::fmt;
use std::net::IpAddr;

use voxtap_common::proto::{PPP_IPV4, PPP_IPV6};
pub use voxtap_common::{MAX_DEPTH_LIMIT, TUNNEL_KINDS, Tunnel};

use super::frag::FragKey;
use super::{DecodeError, Fragment, IpPair, PlainUdp, Transport, UdpEnds, v6_words};
use crate::wire::{
    erspan, ethernet, ethernet::ethertype, geneve, gre, gtpu, ipv4, ipv6, ipv6::next_header, mpls,
    pppoe, try_be16, vxlan,
};

/// Room for the longest path a configuration may allow.
const MAX_HOPS: usize = MAX_DEPTH_LIMIT as usize;
const MAX_EXT_HEADERS: usize = 16;
/// Steps of the walk: at most four (Ethernet, EtherType, IP, protocol)
/// between two hops, so this is never reached before the depth cap.
const MAX_STEPS: usize = 4 * (MAX_HOPS + 2);

/// Which UDP ports carry which tunnel, and how deep to look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelConfig {
    /// UDP destination port of VXLAN (0: not unwrapped).
    pub vxlan_port: u16,
    /// ... of Geneve.
    pub geneve_port: u16,
    /// ... of GTP-U.
    pub gtpu_port: u16,
    /// Encapsulation headers (VLAN tags, MPLS labels, tunnel headers,
    /// IP-in-IP) followed per frame; at most [`MAX_DEPTH_LIMIT`].
    pub max_depth: u16,
}

impl Default for TunnelConfig {
    fn default() -> Self {
        TunnelConfig {
            vxlan_port: voxtap_common::DEFAULT_VXLAN_PORT,
            geneve_port: voxtap_common::DEFAULT_GENEVE_PORT,
            gtpu_port: voxtap_common::DEFAULT_GTPU_PORT,
            max_depth: voxtap_common::DEFAULT_MAX_DEPTH,
        }
    }
}

impl TunnelConfig {
    /// The UDP tunnel on destination port `port`, if any.
    #[inline]
    fn udp_tunnel(&self, port: u16) -> Option<Tunnel> {
        if port == 0 {
            None
        } else if port == self.vxlan_port {
            Some(Tunnel::Vxlan)
        } else if port == self.geneve_port {
            Some(Tunnel::Geneve)
        } else if port == self.gtpu_port {
            Some(Tunnel::Gtpu)
        } else {
            None
        }
    }

    fn depth(&self) -> usize {
        usize::from(self.max_depth.min(MAX_DEPTH_LIMIT))
    }
}

/// One encapsulation header: its kind and the identifier that tells one
/// tunnel of that kind from another (VLAN id, MPLS label, GRE key, ERSPAN
/// session, VNI, PPPoE session, TEID; none for IP-in-IP, keyless GRE and
/// ERSPAN type I).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hop {
    pub kind: Tunnel,
    pub id: Option<u32>,
}

const NO_HOP: Hop = Hop {
    kind: Tunnel::Vlan,
    id: None,
};

/// The encapsulations a datagram was found in, outermost first; written as
/// `erspan(7)/vlan(100)` (empty for plain traffic).
#[derive(Clone, Debug)]
pub struct Encap {
    hops: [Hop; MAX_HOPS],
    len: usize,
    /// [`Tunnel::bit`] of every kind in `hops`.
    kinds: u16,
}

impl Default for Encap {
    fn default() -> Self {
        Encap::EMPTY
    }
}

impl Encap {
    /// No encapsulation: plain traffic, or SIP that reached the pipeline
    /// other than in a frame (decrypted TLS records).
    pub const EMPTY: Encap = Encap {
        hops: [NO_HOP; MAX_HOPS],
        len: 0,
        kinds: 0,
    };

    pub fn hops(&self) -> &[Hop] {
        self.hops.get(..self.len).unwrap_or(&[])
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether any hop is of this kind.
    pub fn contains(&self, kind: Tunnel) -> bool {
        self.kinds & kind.bit() != 0
    }

    /// The outermost VLAN id.
    pub fn outer_vlan(&self) -> Option<u16> {
        self.hops()
            .iter()
            .find(|h| h.kind == Tunnel::Vlan)
            .and_then(|h| h.id)
            .map(|v| v as u16)
    }

    pub(super) fn clear(&mut self) {
        self.len = 0;
        self.kinds = 0;
    }

    /// Adds a hop; the first of its kind in this frame is counted in
    /// `counts`.
    fn push(
        &mut self,
        hop: Hop,
        max: usize,
        counts: &mut [u64; TUNNEL_KINDS as usize],
    ) -> Result<(), DecodeError> {
        let slot = self
            .hops
            .get_mut(self.len)
            .filter(|_| self.len < max)
            .ok_or(DecodeError::TooDeep { max: max as u16 })?;
        *slot = hop;
        self.len += 1;
        if !self.contains(hop.kind) {
            self.kinds |= hop.kind.bit();
            if let Some(n) = counts.get_mut(hop.kind as usize) {
                *n = n.wrapping_add(1);
            }
        }
        Ok(())
    }
}

impl fmt::Display for Encap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, h) in self.hops().iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            f.write_str(h.kind.name())?;
            if let Some(id) = h.id {
                write!(f, "({id})")?;
            }
        }
        Ok(())
    }
}

/// What the bytes at the walk's position are.
#[derive(Clone, Copy)]
pub(super) enum Next<'a> {
    /// An Ethernet header: the link layer, or a bridged frame in a tunnel.
    Ethernet(&'a [u8]),
    /// What an EtherType (of Ethernet, a VLAN tag, SLL, GRE) announced.
    EtherType(u16, &'a [u8]),
    /// An IP header, version from the first nibble.
    Ip(&'a [u8]),
    /// An MPLS label stack.
    Mpls(&'a [u8]),
    /// The payload of an IP header: extension headers, IP-in-IP, GRE,
    /// UDP (and the tunnels on it) or TCP.
    Proto {
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        data: &'a [u8],
    },
}

/// Where the walk ended.
pub(super) enum Net<'a> {
    L4(Transport<'a>),
    Frag(Fragment<'a>),
    /// IP, but not carrying UDP or TCP.
    Other,
    /// Not IP at all (ARP, LCP, ...).
    NotIp,
}

enum Step<'a> {
    Next(Next<'a>),
    Done(Net<'a>),
}

/// One walk through one frame's (or reassembled datagram's) headers.
pub(super) struct Walk<'c> {
    cfg: &'c TunnelConfig,
    encap: &'c mut Encap,
    /// Frames per tunnel kind (`DecodeStats::tunnels`).
    counts: &'c mut [u64; TUNNEL_KINDS as usize],
}

impl<'c> Walk<'c> {
    pub(super) fn new(
        cfg: &'c TunnelConfig,
        encap: &'c mut Encap,
        counts: &'c mut [u64; TUNNEL_KINDS as usize],
    ) -> Self {
        Walk { cfg, encap, counts }
    }

    fn push(&mut self, kind: Tunnel, id: Option<u32>) -> Result<(), DecodeError> {
        let max = self.cfg.depth();
        self.encap.push(Hop { kind, id }, max, self.counts)
    }

    pub(super) fn run<'a>(&mut self, mut next: Next<'a>) -> Result<Net<'a>, DecodeError> {
        for _ in 0..MAX_STEPS {
            next = match next {
                Next::Ethernet(b) => {
                    let e = ethernet::Packet::new_checked(b)?;
                    Next::EtherType(e.ethertype(), e.payload())
                }
                Next::EtherType(ty, b) => match self.ethertype(ty, b)? {
                    Some(n) => n,
                    None => return Ok(Net::NotIp),
                },
                Next::Ip(b) => match ip(b)? {
                    Step::Next(n) => n,
                    Step::Done(net) => return Ok(net),
                },
                Next::Mpls(b) => self.mpls(b)?,
                Next::Proto {
                    src,
                    dst,
                    proto,
                    data,
                } => match self.proto(src, dst, proto, data)? {
                    Step::Next(n) => n,
                    Step::Done(net) => return Ok(net),
                },
            };
        }
        Err(DecodeError::TooDeep {
            max: self.cfg.depth() as u16,
        })
    }

    /// The payload of an EtherType; None when it is not IP or a tunnel.
    fn ethertype<'a>(&mut self, ty: u16, data: &'a [u8]) -> Result<Option<Next<'a>>, DecodeError> {
        Ok(Some(match ty {
            ethertype::IPV4 | ethertype::IPV6 => Next::Ip(data),
            t if ethertype::is_vlan(t) => {
                let tag = ethernet::VlanTag::new_checked(data)?;
                self.push(Tunnel::Vlan, Some(u32::from(tag.vid())))?;
                Next::EtherType(tag.ethertype(), tag.payload())
            }
            ethertype::MPLS | ethertype::MPLS_MULTICAST => Next::Mpls(data),
            ethertype::PPPOE_SESSION => {
                let p = pppoe::Packet::new_checked(data)?;
                if !matches!(p.protocol(), PPP_IPV4 | PPP_IPV6) {
                    return Ok(None); // LCP, IPCP, ...
                }
                self.push(Tunnel::Pppoe, Some(u32::from(p.session_id())))?;
                Next::Ip(p.payload())
            }
            ethertype::TEB => Next::Ethernet(data),
            _ => return Ok(None),
        }))
    }

    /// A label stack down to its bottom entry, then its payload.
    fn mpls<'a>(&mut self, mut data: &'a [u8]) -> Result<Next<'a>, DecodeError> {
        for _ in 0..MAX_HOPS {
            let e = mpls::Packet::new_checked(data)?;
            self.push(Tunnel::Mpls, Some(e.label()))?;
            data = e.payload();
            if e.bottom() {
                return Ok(mpls_payload(data));
            }
        }
        Err(DecodeError::TooDeep {
            max: self.cfg.depth() as u16,
        })
    }

    /// Follows the protocol chain after an IP header: IPv6 extension
    /// headers, IP-in-IP, GRE, UDP (and the tunnels on it), TCP. Extension
    /// headers are only legal after IPv6, which is what `src.is_ipv6()`
    /// checks.
    fn proto<'a>(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        mut proto: u8,
        mut data: &'a [u8],
    ) -> Result<Step<'a>, DecodeError> {
        let v6 = src.is_ipv6();
        for _ in 0..=MAX_EXT_HEADERS {
            match proto {
                next_header::UDP => return self.udp(src, dst, data),
                next_header::TCP | next_header::SCTP => {
                    let t = Transport {
                        src,
                        dst,
                        proto,
                        data,
                    };
                    return Ok(Step::Done(Net::L4(t)));
                }
                next_header::IPIP | next_header::IPV6 => {
                    let want = if proto == next_header::IPIP { 4 } else { 6 };
                    if data.first().map(|b| b >> 4) != Some(want) && !data.is_empty() {
                        return Err(DecodeError::BadHeader {
                            layer: "ip-in-ip",
                            reason: "inner IP version does not match the protocol number",
                        });
                    }
                    self.push(Tunnel::IpIp, None)?;
                    return Ok(Step::Next(Next::Ip(data)));
                }
                next_header::GRE => return self.gre(data),
                next_header::HOP_BY_HOP | next_header::ROUTING | next_header::DST_OPTS if v6 => {
                    let h = ipv6::ExtHeader::new_checked(data)?;
                    proto = h.next_header();
                    data = h.payload();
                }
                next_header::AH if v6 => {
                    let h = ipv6::ExtHeader::new_checked_ah(data)?;
                    proto = h.next_header();
                    data = h.payload();
                }
                next_header::FRAGMENT if v6 => match v6_fragment(src, dst, data)? {
                    V6Frag::Frag(frag) => return Ok(Step::Done(Net::Frag(frag))),
                    V6Frag::Atomic(p, d) => (proto, data) = (p, d),
                },
                _ => return Ok(Step::Done(Net::Other)),
            }
        }
        Err(DecodeError::BadHeader {
            layer: "ipv6",
            reason: "too many extension headers",
        })
    }

    /// A UDP datagram, or the tunnel its destination port names when its
    /// header is one: a VXLAN, Geneve or GTP-U header that does not parse
    /// (or a GTP-U message that is not user data) leaves the datagram as it
    /// is, plain UDP.
    fn udp<'a>(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        data: &'a [u8],
    ) -> Result<Step<'a>, DecodeError> {
        let plain = Transport {
            src,
            dst,
            proto: next_header::UDP,
            data,
        };
        let Some(kind) = try_be16(data, 2).and_then(|p| self.cfg.udp_tunnel(p)) else {
            return Ok(Step::Done(Net::L4(plain)));
        };
        let Ok(u) = crate::wire::udp::Packet::new_checked(data) else {
            // Truncated or bad: transport() reports it.
            return Ok(Step::Done(Net::L4(plain)));
        };
        let inner = u.payload();
        let next = match kind {
            Tunnel::Vxlan => self.vxlan(inner)?,
            Tunnel::Geneve => self.geneve(inner)?,
            _ => self.gtpu(inner)?,
        };
        Ok(match next {
            Some(n) => Step::Next(n),
            None => Step::Done(Net::L4(plain)),
        })
    }

    fn vxlan<'a>(&mut self, data: &'a [u8]) -> Result<Option<Next<'a>>, DecodeError> {
        let Ok(v) = vxlan::Packet::new_checked(data) else {
            return Ok(None);
        };
        self.push(Tunnel::Vxlan, Some(v.vni()))?;
        Ok(Some(Next::Ethernet(v.payload())))
    }

    fn geneve<'a>(&mut self, data: &'a [u8]) -> Result<Option<Next<'a>>, DecodeError> {
        let Ok(g) = geneve::Packet::new_checked(data) else {
            return Ok(None);
        };
        let next = match g.protocol() {
            ethertype::TEB => Next::Ethernet(g.payload()),
            ethertype::IPV4 | ethertype::IPV6 => Next::Ip(g.payload()),
            _ => return Ok(None),
        };
        self.push(Tunnel::Geneve, Some(g.vni()))?;
        Ok(Some(next))
    }

    fn gtpu<'a>(&mut self, data: &'a [u8]) -> Result<Option<Next<'a>>, DecodeError> {
        let Ok(g) = gtpu::Packet::new_checked(data) else {
            return Ok(None);
        };
        let ip_version = g.payload().first().map(|b| b >> 4);
        if g.message_type() != gtpu::MSG_GPDU || !matches!(ip_version, Some(4 | 6)) {
            return Ok(None); // echo, error indication, end marker...
        }
        self.push(Tunnel::Gtpu, Some(g.teid()))?;
        Ok(Some(Next::Ip(g.payload())))
    }

    /// GRE version 0 carrying IP, Ethernet (transparent bridging), MPLS or
    /// ERSPAN; anything else (PPTP's version 1 included) is IP that does
    /// not carry UDP or TCP.
    fn gre<'a>(&mut self, data: &'a [u8]) -> Result<Step<'a>, DecodeError> {
        if gre::Packet::new_unchecked(data).version() != 0 {
            return Ok(Step::Done(Net::Other));
        }
        let g = gre::Packet::new_checked(data)?;
        let payload = g.payload();
        let next = match g.protocol() {
            ethertype::IPV4 | ethertype::IPV6 => Next::Ip(payload),
            ethertype::TEB => Next::Ethernet(payload),
            ethertype::MPLS | ethertype::MPLS_MULTICAST => Next::Mpls(payload),
            ethertype::ERSPAN_2 if g.sequence().is_none() => {
                // Type I: no ERSPAN header, the mirrored frame follows.
                self.push(Tunnel::Erspan, None)?;
                return Ok(Step::Next(Next::Ethernet(payload)));
            }
            ethertype::ERSPAN_2 | ethertype::ERSPAN_3 => {
                let e = erspan::Packet::new_checked(payload)?;
                self.push(Tunnel::Erspan, Some(u32::from(e.session_id())))?;
                let ip = e.version() == erspan::VERSION_TYPE3
                    && e.frame_type() == erspan::frame_type::IP;
                return Ok(Step::Next(if ip {
                    Next::Ip(e.payload())
                } else {
                    Next::Ethernet(e.payload())
                }));
            }
            _ => return Ok(Step::Done(Net::Other)),
        };
        self.push(Tunnel::Gre, g.key())?;
        Ok(Step::Next(next))
    }
}

/// A frame of the common case, in one straight line: Ethernet, then IPv4
/// (not a fragment) or IPv6 (no extension header), then TCP, or UDP on no
/// tunnel port. None for anything else, which takes the whole walk (and
/// it reports what is wrong with a bad frame). The walk gives the same
/// answer for these frames; this only spares plain traffic its loop, whose
/// state hand-offs cost about a fifth of the decoder's time per frame
/// (`decode::bench`).
#[inline]
pub(super) fn plain_ethernet<'a>(cfg: &TunnelConfig, frame: &'a [u8]) -> Option<Transport<'a>> {
    let e = ethernet::Packet::new_checked(frame).ok()?;
    let l3 = e.payload();
    let version = l3.first()? >> 4;
    let (src, dst, proto, data) = match e.ethertype() {
        ethertype::IPV4 if version == 4 => {
            let p = ipv4::Packet::new_checked(l3).ok()?;
            if p.is_fragment() {
                return None;
            }
            let (s, d) = (IpAddr::V4(p.src_addr()), IpAddr::V4(p.dst_addr()));
            (s, d, p.protocol(), p.payload())
        }
        ethertype::IPV6 if version == 6 => {
            let p = ipv6::Packet::new_checked(l3).ok()?;
            let (s, d) = (IpAddr::V6(p.src_addr()), IpAddr::V6(p.dst_addr()));
            (s, d, p.next_header(), p.payload())
        }
        _ => return None,
    };
    match proto {
        next_header::TCP => {}
        next_header::UDP => {
            if try_be16(data, 2).and_then(|p| cfg.udp_tunnel(p)).is_some() {
                return None;
            }
        }
        _ => return None,
    }
    Some(Transport {
        src,
        dst,
        proto,
        data,
    })
}

/// [`plain_ethernet`] then `udp::Packet::new_checked`, for UDP only: the
/// frames [`super::Decoder::decode_plain_udp`] takes. The same frames pass,
/// with the same addresses and payload (`decode`'s tests compare the two
/// on mutated and truncated frames), but each header is read from one
/// fixed-size array after one length test, instead of a bounds test and a
/// fallback per field: the parallel engine's dispatcher runs this on
/// every frame.
#[inline]
pub(super) fn plain_udp<'a>(cfg: &TunnelConfig, frame: &'a [u8]) -> Option<PlainUdp<'a>> {
    let (eth, l3) = frame.split_first_chunk::<{ ethernet::HEADER_LEN }>()?;
    let (ips, data) = match u16::from_be_bytes([eth[12], eth[13]]) {
        ethertype::IPV4 => ipv4_udp(l3)?,
        ethertype::IPV6 => ipv6_udp(l3)?,
        _ => return None,
    };
    let (h, _) = data.split_first_chunk::<8>()?;
    let dst_port = u16::from_be_bytes([h[2], h[3]]);
    // A tunnel's datagrams are `decode`'s to unwrap.
    if cfg.udp_tunnel(dst_port).is_some() {
        return None;
    }
    // Length 0: an IPv6 jumbogram, bounded by the IP layer.
    let len = match usize::from(u16::from_be_bytes([h[4], h[5]])) {
        0 => data.len(),
        l => l,
    };
    // Empty unless 8 <= len <= the IP payload.
    let payload = data.get(h.len()..len)?;
    let ends = UdpEnds {
        ips,
        src_port: u16::from_be_bytes([h[0], h[1]]),
        dst_port,
    };
    Some(PlainUdp { ends, payload })
}

/// An IPv4 header carrying a whole UDP datagram (not a fragment): its
/// addresses and payload (`ipv4::Packet::check_len`'s tests: version 4,
/// IHL 5 or more, header within the total length, total length (0: the
/// buffer) within the buffer).
#[inline]
fn ipv4_udp(l3: &[u8]) -> Option<(IpPair, &[u8])> {
    let h = l3.first_chunk::<20>()?;
    let hlen = usize::from(h[0] & 0x0f) * 4;
    let total = match usize::from(u16::from_be_bytes([h[2], h[3]])) {
        0 => l3.len(),
        t => t,
    };
    // More-fragments flag and fragment offset.
    let fragment = u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0;
    if h[0] >> 4 != 4 || hlen < h.len() || fragment || h[9] != next_header::UDP {
        return None;
    }
    // None unless hlen <= total <= the buffer.
    let payload = l3.get(hlen..total)?;
    let src = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
    let dst = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
    Some((IpPair::V4 { src, dst }, payload))
}

/// An IPv6 header whose next header is UDP: its addresses and payload
/// (`ipv6::Packet::check_len`'s tests: version 6, payload length (0: the
/// buffer) within the buffer).
#[inline]
fn ipv6_udp(l3: &[u8]) -> Option<(IpPair, &[u8])> {
    let (h, _) = l3.split_first_chunk::<{ ipv6::HEADER_LEN }>()?;
    let end = match usize::from(u16::from_be_bytes([h[4], h[5]])) {
        0 => l3.len(),
        plen => h.len() + plen,
    };
    if h[0] >> 4 != 6 || h[6] != next_header::UDP {
        return None;
    }
    // None unless the payload length is within the buffer.
    let payload = l3.get(h.len()..end)?;
    let (_, addrs) = h.split_first_chunk::<8>()?;
    let (src, rest) = addrs.split_first_chunk::<16>()?;
    let dst = rest.first_chunk::<16>()?;
    Some((
        IpPair::V6 {
            src: v6_words(src),
            dst: v6_words(dst),
        },
        payload,
    ))
}

/// One IP header: a fragment, or its payload with the addresses.
fn ip(buf: &[u8]) -> Result<Step<'_>, DecodeError> {
    match buf.first().map(|b| b >> 4) {
        Some(4) => {
            let p = ipv4::Packet::new_checked(buf)?;
            let (src, dst) = (IpAddr::V4(p.src_addr()), IpAddr::V4(p.dst_addr()));
            if p.is_fragment() {
                return Ok(Step::Done(Net::Frag(Fragment {
                    key: FragKey {
                        src,
                        dst,
                        id: u32::from(p.ident()),
                        proto: p.protocol(),
                    },
                    offset: p.frag_offset(),
                    more: p.more_frags(),
                    data: p.payload(),
                })));
            }
            Ok(Step::Next(Next::Proto {
                src,
                dst,
                proto: p.protocol(),
                data: p.payload(),
            }))
        }
        Some(6) => {
            let p = ipv6::Packet::new_checked(buf)?;
            Ok(Step::Next(Next::Proto {
                src: IpAddr::V6(p.src_addr()),
                dst: IpAddr::V6(p.dst_addr()),
                proto: p.next_header(),
                data: p.payload(),
            }))
        }
        Some(_) => Err(DecodeError::BadHeader {
            layer: "ip",
            reason: "IP version is neither 4 nor 6",
        }),
        None => Err(DecodeError::Truncated { layer: "ip" }),
    }
}

/// An IPv6 fragment header read.
enum V6Frag<'a> {
    Frag(Fragment<'a>),
    /// An atomic fragment (RFC 6946, nothing to reassemble): the protocol
    /// and bytes after the header.
    Atomic(u8, &'a [u8]),
}

fn v6_fragment<'a>(src: IpAddr, dst: IpAddr, data: &'a [u8]) -> Result<V6Frag<'a>, DecodeError> {
    let h = ipv6::FragmentHeader::new_checked(data)?;
    if h.frag_offset() == 0 && !h.more_frags() {
        return Ok(V6Frag::Atomic(h.next_header(), h.payload()));
    }
    Ok(V6Frag::Frag(Fragment {
        key: FragKey {
            src,
            dst,
            id: h.ident(),
            proto: h.next_header(),
        },
        offset: h.frag_offset(),
        more: h.more_frags(),
        data: h.payload(),
    }))
}

/// What follows the bottom of an MPLS label stack, which says nothing about
/// it: IPv4 or IPv6 when the first nibble says so, the header's lengths fit
/// and the bytes do not read better as an Ethernet frame; after a first
/// nibble 0, a PW control word and an Ethernet frame (unless only reading
/// it without the control word gives a frame); otherwise an Ethernet
/// pseudowire without control word.
fn mpls_payload(data: &[u8]) -> Next<'_> {
    match data.first().map(|b| b >> 4) {
        Some(4) if plausible_v4(data) && !plausible_eth(data) => Next::Ip(data),
        Some(6) if plausible_v6(data) && !plausible_eth(data) => Next::Ip(data),
        Some(0) => {
            let after_cw = crate::wire::tail(data, mpls::CONTROL_WORD_LEN);
            if !plausible_eth(after_cw) && plausible_eth(data) {
                Next::Ethernet(data)
            } else {
                Next::Ethernet(after_cw)
            }
        }
        _ => Next::Ethernet(data),
    }
}

/// Bytes an IP packet after a label stack may be followed by: Ethernet
/// padding of a minimum-size frame and an FCS.
const MPLS_IP_SLACK: usize = 32;

/// An IPv4 header whose lengths end the packet within the slack of the
/// end of `b`: an Ethernet pseudowire whose destination MAC starts with
/// nibble 4 (or 6, below) almost never passes.
fn plausible_v4(b: &[u8]) -> bool {
    let p = ipv4::Packet::new_unchecked(b);
    let total = usize::from(p.total_len());
    p.check_len().is_ok() && total != 0 && b.len() - total.min(b.len()) <= MPLS_IP_SLACK
}

fn plausible_v6(b: &[u8]) -> bool {
    let p = ipv6::Packet::new_unchecked(b);
    let end = ipv6::HEADER_LEN + usize::from(p.payload_len());
    p.check_len().is_ok() && p.payload_len() != 0 && b.len() - end.min(b.len()) <= MPLS_IP_SLACK
}

/// The Ethernet frame at `b` names an EtherType the walk follows (and, for
/// IP, the next byte has that IP version).
fn plausible_eth(b: &[u8]) -> bool {
    let version = crate::wire::byte(b, 14) >> 4;
    match try_be16(b, 12) {
        Some(ethertype::IPV4) => version == 4,
        Some(ethertype::IPV6) => version == 6,
        Some(t) => {
            matches!(
                t,
                ethertype::ARP
                    | ethertype::MPLS
                    | ethertype::MPLS_MULTICAST
                    | ethertype::PPPOE_SESSION
            ) || ethertype::is_vlan(t)
        }
        None => false,
    }
}
