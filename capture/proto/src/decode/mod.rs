//! Frame decoding: link layer -> (tunnelled) IP -> UDP/TCP, with IPv4/IPv6
//! fragment reassembly. Tunnels (VLAN, MPLS, PPPoE, IP-in-IP, GRE, ERSPAN,
//! VXLAN, Geneve, GTP-U, nested in any order) are unwrapped by [`encap`];
//! the datagram carries the path it was found in.
//!
//! Everything is borrowed from the input frame, except a reassembled
//! datagram, which is borrowed from the decoder's reusable reassembly buffers;
//! either way a [`Datagram`] is valid until the next call to
//! [`Decoder::decode`].

#[cfg(test)]
mod bench;
mod encap;
#[cfg(test)]
mod etherparse_cmp;
mod frag;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tunnel_tests;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::pcapio::LinkType;
use crate::wire::{WireError, ipv6::next_header, null, sctp, sll, tcp, udp};

pub use encap::{Encap, Hop, MAX_DEPTH_LIMIT, TUNNEL_KINDS, Tunnel, TunnelConfig};
use encap::{Net, Next, Walk};
pub use frag::FragLimits;
use frag::{FragKey, Reassembler};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    Udp,
    /// `flags`: TCP flag byte (FIN=1, SYN=2, RST=4, PSH=8, ACK=16).
    Tcp {
        seq: u32,
        flags: u8,
    },
    /// The payload is the packet's chunks (after the common header): walk
    /// them with [`crate::wire::sctp::Chunks`].
    Sctp {
        verification_tag: u32,
    },
}

/// One UDP datagram, TCP segment or SCTP packet.
#[derive(Clone, Copy, Debug)]
pub struct Datagram<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub l4: L4,
    /// UDP/TCP payload (UDP: trimmed to the UDP length; link padding
    /// removed); for SCTP, the chunks.
    pub payload: &'a [u8],
    /// Outermost VLAN id, if any.
    pub vlan: Option<u16>,
    /// For a datagram reassembled from IP fragments: the `pkt_ref` of every
    /// earlier fragment frame (not the one passed to this `decode` call).
    pub fragments: &'a [u64],
    /// The encapsulations it was found in, outermost first (empty for
    /// plain traffic).
    pub encap: &'a Encap,
}

/// Counters for everything [`Decoder::decode`] saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodeStats {
    pub frames: u64,
    pub not_ip: u64,
    pub not_udp_tcp: u64,
    pub malformed: u64,
    pub fragments: u64,
    pub reassembled: u64,
    pub frag_timeouts: u64,
    pub frag_evicted: u64,
    /// Frames with more encapsulation headers than the configured depth
    /// (also counted as malformed).
    pub too_deep: u64,
    /// Frames that went through each kind of encapsulation, indexed by
    /// [`Tunnel`] (a frame with two MPLS labels counts once).
    pub tunnels: [u64; TUNNEL_KINDS as usize],
}

impl DecodeStats {
    /// Frames that went through `kind`.
    pub fn tunnel(&self, kind: Tunnel) -> u64 {
        self.tunnels.get(kind as usize).copied().unwrap_or(0)
    }
}

#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    #[error("{layer}: truncated")]
    Truncated { layer: &'static str },
    #[error("{layer}: bad header: {reason}")]
    BadHeader {
        layer: &'static str,
        reason: &'static str,
    },
    #[error("more than {max} encapsulation headers")]
    TooDeep { max: u16 },
}

impl From<WireError> for DecodeError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Truncated { layer } => DecodeError::Truncated { layer },
            WireError::BadHeader { layer, reason } => DecodeError::BadHeader { layer, reason },
        }
    }
}

pub struct Decoder {
    limits: FragLimits,
    tunnels: TunnelConfig,
    stats: DecodeStats,
    frags: Reassembler,
    encap: Encap,
}

/// Transport-level bytes with the (innermost) IP addresses around them.
pub(crate) struct Transport<'a> {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    data: &'a [u8],
}

/// One IP fragment, not yet reassembled.
pub(crate) struct Fragment<'a> {
    pub key: FragKey,
    /// Byte offset of `data` in the reassembled payload.
    pub offset: u32,
    pub more: bool,
    pub data: &'a [u8],
}

impl Decoder {
    /// A decoder with the default tunnel ports and depth.
    pub fn new(limits: FragLimits) -> Self {
        Self::with_tunnels(limits, TunnelConfig::default())
    }

    pub fn with_tunnels(limits: FragLimits, tunnels: TunnelConfig) -> Self {
        Decoder {
            limits,
            tunnels,
            stats: DecodeStats::default(),
            frags: Reassembler::default(),
            encap: Encap::default(),
        }
    }

    pub fn stats(&self) -> &DecodeStats {
        &self.stats
    }

    /// Ok(None): a frame that is not IPv4/IPv6 UDP/TCP (ARP, ICMP, ...), or a
    /// fragment held until the datagram is complete.
    pub fn decode<'a>(
        &'a mut self,
        link: LinkType,
        ts_ns: u64,
        pkt_ref: u64,
        frame: &'a [u8],
    ) -> Result<Option<Datagram<'a>>, DecodeError> {
        // Split borrows: the result may borrow `frags` and `encap`, while the
        // counters are still updated on the error path.
        let Decoder {
            limits,
            tunnels,
            stats,
            frags,
            encap,
        } = self;
        begin_frame(stats, frags, limits, ts_ns);
        let frame = Frame {
            link,
            ts_ns,
            pkt_ref,
            bytes: frame,
        };
        let r = decode_frame(frags, limits, tunnels, encap, stats, frame);
        if let Err(e) = r {
            stats.malformed = stats.malformed.wrapping_add(1);
            if matches!(e, DecodeError::TooDeep { .. }) {
                stats.too_deep = stats.too_deep.wrapping_add(1);
            }
        }
        r
    }
}

/// What every frame costs the decoder before its headers are read, on both
/// of its ways in ([`Decoder::decode`], [`Decoder::decode_plain_udp`]): it is
/// counted, and held fragments past their timeout are dropped.
#[inline]
fn begin_frame(stats: &mut DecodeStats, frags: &mut Reassembler, limits: &FragLimits, ts_ns: u64) {
    stats.frames = stats.frames.wrapping_add(1);
    frags.expire(ts_ns, limits, stats);
}

/// An untunnelled, unfragmented UDP datagram: what
/// [`Decoder::decode_plain_udp`] finds.
#[derive(Clone, Copy, Debug)]
pub struct PlainUdp<'a> {
    pub ends: UdpEnds,
    /// The UDP payload (trimmed to the UDP length), a slice of the frame.
    pub payload: &'a [u8],
}

/// A datagram's source and destination as its headers have them: a caller
/// that only tests the ports or hashes an address (the parallel engine's
/// dispatcher) needs no `SocketAddr`, and this is half the size of two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpEnds {
    pub ips: IpPair,
    pub src_port: u16,
    pub dst_port: u16,
}

/// The source and destination addresses of one IP header, in big-endian
/// words (an IPv6 address as four, the way `voxtap_common::steer_hash`
/// reads it): copied word by word, where byte arrays in an enum are
/// copied byte by byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpPair {
    V4 { src: u32, dst: u32 },
    V6 { src: [u32; 4], dst: [u32; 4] },
}

/// An IPv6 address's 16 bytes as four big-endian words.
#[inline(always)]
pub fn v6_words(a: &[u8; 16]) -> [u32; 4] {
    let x = u128::from_be_bytes(*a);
    [
        (x >> 96) as u32,
        (x >> 64) as u32,
        (x >> 32) as u32,
        x as u32,
    ]
}

/// [`v6_words`] back to the 16 bytes.
#[inline(always)]
pub fn v6_bytes(w: [u32; 4]) -> [u8; 16] {
    let [a, b, c, d] = w.map(u128::from);
    (a << 96 | b << 64 | c << 32 | d).to_be_bytes()
}

impl UdpEnds {
    /// The source, as `decode` gives it.
    #[inline]
    pub fn src(&self) -> SocketAddr {
        match self.ips {
            IpPair::V4 { src, .. } => SocketAddr::from((Ipv4Addr::from(src), self.src_port)),
            IpPair::V6 { src, .. } => SocketAddr::from((v6_bytes(src), self.src_port)),
        }
    }

    /// The destination, as `decode` gives it.
    #[inline]
    pub fn dst(&self) -> SocketAddr {
        match self.ips {
            IpPair::V4 { dst, .. } => SocketAddr::from((Ipv4Addr::from(dst), self.dst_port)),
            IpPair::V6 { dst, .. } => SocketAddr::from((v6_bytes(dst), self.dst_port)),
        }
    }

    /// The ends of a datagram `decode` gave (None if the two addresses are
    /// of different families, which no IP header has). `decode`'s IPv6
    /// addresses have no flow label nor scope, so [`Self::src`] and
    /// [`Self::dst`] give them back as they were.
    pub fn of(src: SocketAddr, dst: SocketAddr) -> Option<Self> {
        let ips = match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => IpPair::V4 {
                src: s.into(),
                dst: d.into(),
            },
            (IpAddr::V6(s), IpAddr::V6(d)) => IpPair::V6 {
                src: v6_words(&s.octets()),
                dst: v6_words(&d.octets()),
            },
            _ => return None,
        };
        Some(UdpEnds {
            ips,
            src_port: src.port(),
            dst_port: dst.port(),
        })
    }
}

impl Decoder {
    /// [`Decoder::decode`] of the common frame only: a UDP datagram over
    /// Ethernet and IPv4 or IPv6, neither tunnelled nor a fragment. For such
    /// a frame it does what `decode` does (counts the frame, expires held
    /// fragments) and gives the same addresses and payload (`decode`'s
    /// [`Datagram`] would have `l4` UDP, no VLAN, no fragments, an empty
    /// encapsulation path). For any other frame it returns None having done
    /// nothing: the caller hands the frame to `decode`. It spares a caller
    /// that needs no more than this (the parallel engine's dispatcher) the
    /// building and moving of a `Datagram` and its `Result`, about a third
    /// of `decode`'s instructions on such a frame.
    #[inline]
    pub fn decode_plain_udp<'a>(
        &mut self,
        link: LinkType,
        ts_ns: u64,
        frame: &'a [u8],
    ) -> Option<PlainUdp<'a>> {
        if link != LinkType::Ethernet {
            return None;
        }
        // `decode_frame`'s first test (what passes it is decoded by
        // `transport` with an empty path and no fragments), then
        // `transport`'s UDP header; a frame failing the latter is
        // `decode`'s to report (malformed).
        let p = encap::plain_udp(&self.tunnels, frame)?;
        begin_frame(&mut self.stats, &mut self.frags, &self.limits, ts_ns);
        Some(p)
    }
}

/// One frame as handed to [`Decoder::decode`].
struct Frame<'a> {
    link: LinkType,
    ts_ns: u64,
    pkt_ref: u64,
    bytes: &'a [u8],
}

fn decode_frame<'a>(
    frags: &'a mut Reassembler,
    limits: &FragLimits,
    tunnels: &TunnelConfig,
    encap: &'a mut Encap,
    stats: &mut DecodeStats,
    frame: Frame<'a>,
) -> Result<Option<Datagram<'a>>, DecodeError> {
    encap.clear();
    if frame.link == LinkType::Ethernet
        && let Some(t) = encap::plain_ethernet(tunnels, frame.bytes)
    {
        let encap: &'a Encap = encap;
        return transport(t, encap, &[]).map(Some);
    }
    let net = match link_layer(frame.link, frame.bytes)? {
        Some(next) => Walk::new(tunnels, encap, &mut stats.tunnels).run(next)?,
        None => Net::NotIp,
    };
    let (net, refs) = match net {
        Net::Frag(f) => {
            stats.fragments = stats.fragments.wrapping_add(1);
            let Some(idx) = frags.insert(&f, frame.ts_ns, frame.pkt_ref, limits, stats)? else {
                return Ok(None);
            };
            stats.reassembled = stats.reassembled.wrapping_add(1);
            let frags: &'a Reassembler = frags;
            let Some(done) = frags.completed(idx) else {
                return Ok(None);
            };
            let key = done.key;
            let next = Next::Proto {
                src: key.src,
                dst: key.dst,
                proto: key.proto,
                data: done.data,
            };
            match Walk::new(tunnels, encap, &mut stats.tunnels).run(next)? {
                // Reassembling inside a reassembled datagram would need a
                // second buffer for no real-world traffic; refuse it.
                Net::Frag(_) => {
                    return Err(DecodeError::BadHeader {
                        layer: "ip",
                        reason: "fragment inside a reassembled datagram",
                    });
                }
                n => (n, done.refs),
            }
        }
        n => (n, &[][..]),
    };
    let encap: &'a Encap = encap;
    match net {
        Net::L4(t) => transport(t, encap, refs).map(Some),
        Net::NotIp => {
            stats.not_ip = stats.not_ip.wrapping_add(1);
            Ok(None)
        }
        Net::Other | Net::Frag(_) => {
            stats.not_udp_tcp = stats.not_udp_tcp.wrapping_add(1);
            Ok(None)
        }
    }
}

/// Strips the link layer: where the walk starts, or None for a frame that
/// does not carry IP.
fn link_layer(link: LinkType, frame: &[u8]) -> Result<Option<Next<'_>>, DecodeError> {
    Ok(Some(match link {
        LinkType::Ethernet => Next::Ethernet(frame),
        LinkType::LinuxSll => {
            let p = sll::Packet::new_checked(frame)?;
            Next::EtherType(p.protocol(), p.payload())
        }
        LinkType::LinuxSll2 => {
            let p = sll::Packet2::new_checked(frame)?;
            Next::EtherType(p.protocol(), p.payload())
        }
        LinkType::Null | LinkType::Loop => {
            let p = null::Packet::new_checked(frame)?;
            if !(p.is_ipv4() || p.is_ipv6()) {
                return Ok(None);
            }
            Next::Ip(p.payload())
        }
        LinkType::Raw | LinkType::Ipv4 | LinkType::Ipv6 => Next::Ip(frame),
    }))
}

fn transport<'a>(
    t: Transport<'a>,
    encap: &'a Encap,
    fragments: &'a [u64],
) -> Result<Datagram<'a>, DecodeError> {
    let (sport, dport, l4, payload) = if t.proto == next_header::UDP {
        let u = udp::Packet::new_checked(t.data)?;
        (u.src_port(), u.dst_port(), L4::Udp, u.payload())
    } else if t.proto == next_header::SCTP {
        let p = sctp::Packet::new_checked(t.data)?;
        let l4 = L4::Sctp {
            verification_tag: p.verification_tag(),
        };
        (p.src_port(), p.dst_port(), l4, p.payload())
    } else {
        let p = tcp::Packet::new_checked(t.data)?;
        let l4 = L4::Tcp {
            seq: p.seq_number(),
            flags: p.flags(),
        };
        (p.src_port(), p.dst_port(), l4, p.payload())
    };
    Ok(Datagram {
        src: SocketAddr::new(t.src, sport),
        dst: SocketAddr::new(t.dst, dport),
        l4,
        payload,
        vlan: encap.outer_vlan(),
        fragments,
        encap,
    })
}
