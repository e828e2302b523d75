//! Frame decoding: link layer -> (tunnelled) IP -> UDP/TCP, with IPv4/IPv6
//! fragment reassembly.
//!
//! Everything is borrowed from the input frame, except a reassembled
//! datagram, which is borrowed from the decoder's reusable reassembly buffers;
//! either way a [`Datagram`] is valid until the next call to
//! [`Decoder::decode`].

mod frag;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};

use crate::pcapio::LinkType;
use crate::wire::{
    WireError, ethernet, ethernet::ethertype, ipv4, ipv6, ipv6::next_header, null, sctp, sll, tcp,
    udp,
};

pub use frag::FragLimits;
use frag::{FragKey, Reassembler};

/// More tags than this is not a real network, it is an attack on our loop.
const MAX_VLAN_TAGS: usize = 8;
/// Bounds the IP-in-IP recursion depth.
const MAX_TUNNEL_DEPTH: u8 = 4;
const MAX_EXT_HEADERS: usize = 16;

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
    stats: DecodeStats,
    frags: Reassembler,
}

/// Transport-level bytes with the (innermost) IP addresses around them.
struct Transport<'a> {
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

enum Net<'a> {
    L4(Transport<'a>),
    Frag(Fragment<'a>),
    /// IP, but not carrying UDP or TCP.
    Other,
}

impl Decoder {
    pub fn new(limits: FragLimits) -> Self {
        Decoder {
            limits,
            stats: DecodeStats::default(),
            frags: Reassembler::default(),
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
        // Split borrows: the result may borrow `frags`, while the counters are
        // still updated on the error path.
        let Decoder {
            limits,
            stats,
            frags,
        } = self;
        stats.frames = stats.frames.wrapping_add(1);
        frags.expire(ts_ns, limits, stats);
        let r = decode_frame(frags, limits, stats, link, ts_ns, pkt_ref, frame);
        if r.is_err() {
            stats.malformed = stats.malformed.wrapping_add(1);
        }
        r
    }
}

fn decode_frame<'a>(
    frags: &'a mut Reassembler,
    limits: &FragLimits,
    stats: &mut DecodeStats,
    link: LinkType,
    ts_ns: u64,
    pkt_ref: u64,
    frame: &'a [u8],
) -> Result<Option<Datagram<'a>>, DecodeError> {
    let Some((l3, vlan)) = link_payload(link, frame)? else {
        stats.not_ip = stats.not_ip.wrapping_add(1);
        return Ok(None);
    };
    match parse_ip(l3, 0)? {
        Net::Other => {
            stats.not_udp_tcp = stats.not_udp_tcp.wrapping_add(1);
            Ok(None)
        }
        Net::L4(t) => transport(t, vlan, &[]).map(Some),
        Net::Frag(f) => {
            stats.fragments = stats.fragments.wrapping_add(1);
            let Some(idx) = frags.insert(&f, ts_ns, pkt_ref, limits, stats)? else {
                return Ok(None);
            };
            stats.reassembled = stats.reassembled.wrapping_add(1);
            let frags: &'a Reassembler = frags;
            let Some(done) = frags.completed(idx) else {
                return Ok(None);
            };
            let key = done.key;
            match chain(key.src, key.dst, key.proto, done.data, 0)? {
                Net::L4(t) => transport(t, vlan, done.refs).map(Some),
                Net::Other => {
                    stats.not_udp_tcp = stats.not_udp_tcp.wrapping_add(1);
                    Ok(None)
                }
                // Reassembling inside a reassembled datagram would need a second
                // buffer for no real-world traffic; refuse it.
                Net::Frag(_) => Err(DecodeError::BadHeader {
                    layer: "ip",
                    reason: "fragment inside a reassembled datagram",
                }),
            }
        }
    }
}

/// IP bytes and the outermost VLAN id.
type L3<'a> = (&'a [u8], Option<u16>);

/// Strips the link layer: the IP bytes and the outermost VLAN id, or None for
/// a frame that does not carry IP.
fn link_payload(link: LinkType, frame: &[u8]) -> Result<Option<L3<'_>>, DecodeError> {
    match link {
        LinkType::Ethernet => {
            let eth = ethernet::Packet::new_checked(frame)?;
            ethertype_payload(eth.ethertype(), eth.payload())
        }
        LinkType::LinuxSll => {
            let p = sll::Packet::new_checked(frame)?;
            ethertype_payload(p.protocol(), p.payload())
        }
        LinkType::LinuxSll2 => {
            let p = sll::Packet2::new_checked(frame)?;
            ethertype_payload(p.protocol(), p.payload())
        }
        LinkType::Null | LinkType::Loop => {
            let p = null::Packet::new_checked(frame)?;
            Ok((p.is_ipv4() || p.is_ipv6()).then(|| (p.payload(), None)))
        }
        LinkType::Raw | LinkType::Ipv4 | LinkType::Ipv6 => Ok(Some((frame, None))),
    }
}

fn ethertype_payload(mut ty: u16, mut data: &[u8]) -> Result<Option<L3<'_>>, DecodeError> {
    let mut vlan = None;
    for _ in 0..=MAX_VLAN_TAGS {
        match ty {
            ethertype::IPV4 | ethertype::IPV6 => return Ok(Some((data, vlan))),
            t if ethertype::is_vlan(t) => {
                let tag = ethernet::VlanTag::new_checked(data)?;
                vlan.get_or_insert(tag.vid());
                ty = tag.ethertype();
                data = tag.payload();
            }
            _ => return Ok(None),
        }
    }
    Err(DecodeError::BadHeader {
        layer: "vlan",
        reason: "too many stacked VLAN tags",
    })
}

/// Parses one IP header (version from the first nibble) and whatever follows.
fn parse_ip(buf: &[u8], depth: u8) -> Result<Net<'_>, DecodeError> {
    if depth > MAX_TUNNEL_DEPTH {
        return Err(DecodeError::BadHeader {
            layer: "ip",
            reason: "too many nested IP-in-IP tunnels",
        });
    }
    match buf.first().map(|b| b >> 4) {
        Some(4) => {
            let p = ipv4::Packet::new_checked(buf)?;
            let (src, dst) = (IpAddr::V4(p.src_addr()), IpAddr::V4(p.dst_addr()));
            if p.is_fragment() {
                return Ok(Net::Frag(Fragment {
                    key: FragKey {
                        src,
                        dst,
                        id: u32::from(p.ident()),
                        proto: p.protocol(),
                    },
                    offset: p.frag_offset(),
                    more: p.more_frags(),
                    data: p.payload(),
                }));
            }
            chain(src, dst, p.protocol(), p.payload(), depth)
        }
        Some(6) => {
            let p = ipv6::Packet::new_checked(buf)?;
            let (src, dst) = (IpAddr::V6(p.src_addr()), IpAddr::V6(p.dst_addr()));
            chain(src, dst, p.next_header(), p.payload(), depth)
        }
        Some(_) => Err(DecodeError::BadHeader {
            layer: "ip",
            reason: "IP version is neither 4 nor 6",
        }),
        None => Err(DecodeError::Truncated { layer: "ip" }),
    }
}

/// Follows the protocol chain after an IP header: IPv6 extension headers,
/// IP-in-IP, down to UDP/TCP. Extension headers are only legal after IPv6,
/// which is what `src.is_ipv6()` checks.
fn chain(
    src: IpAddr,
    dst: IpAddr,
    mut proto: u8,
    mut data: &[u8],
    depth: u8,
) -> Result<Net<'_>, DecodeError> {
    let v6 = src.is_ipv6();
    for _ in 0..=MAX_EXT_HEADERS {
        match proto {
            next_header::UDP | next_header::TCP | next_header::SCTP => {
                return Ok(Net::L4(Transport {
                    src,
                    dst,
                    proto,
                    data,
                }));
            }
            next_header::IPIP | next_header::IPV6 => {
                let want = if proto == next_header::IPIP { 4 } else { 6 };
                if data.first().map(|b| b >> 4) != Some(want) && !data.is_empty() {
                    return Err(DecodeError::BadHeader {
                        layer: "ip-in-ip",
                        reason: "inner IP version does not match the protocol number",
                    });
                }
                return parse_ip(data, depth.saturating_add(1));
            }
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
            next_header::FRAGMENT if v6 => {
                let h = ipv6::FragmentHeader::new_checked(data)?;
                if h.frag_offset() == 0 && !h.more_frags() {
                    // Atomic fragment (RFC 6946): nothing to reassemble.
                    proto = h.next_header();
                    data = h.payload();
                    continue;
                }
                return Ok(Net::Frag(Fragment {
                    key: FragKey {
                        src,
                        dst,
                        id: h.ident(),
                        proto: h.next_header(),
                    },
                    offset: h.frag_offset(),
                    more: h.more_frags(),
                    data: h.payload(),
                }));
            }
            _ => return Ok(Net::Other),
        }
    }
    Err(DecodeError::BadHeader {
        layer: "ipv6",
        reason: "too many extension headers",
    })
}

fn transport<'a>(
    t: Transport<'a>,
    vlan: Option<u16>,
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
        vlan,
        fragments,
    })
}
