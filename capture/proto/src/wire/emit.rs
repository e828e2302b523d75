//! Frames built from scratch out of the [`Emit`] side of the views: an IP
//! packet around a payload, as the HEP listener writes what it received;
//! and one header at a time around an inner packet ([`around`], [`eth`],
//! [`ipv4_packet`], ...), which the tunnel tests and fuzz seeds nest in any
//! order. Those fix every field they do not take (TTL 64, no options, UDP
//! checksum 0: "not computed", valid over IPv4) and return an empty vector
//! when the header cannot hold the inner length.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Emit, WireError, ethernet, gre, ipv4, ipv6, mpls, tcp, udp};

const TTL: u8 = 64;

/// An IPv4 or IPv6 packet (raw IP link type) carrying `payload` over UDP,
/// or over TCP (PSH|ACK at `seq`, ack 1, window 65535) when `seq` is given,
/// with valid checksums. Mixed families go as IPv6 (v4-mapped). A payload
/// larger than one IP packet can hold keeps its bytes, with length fields
/// saying 65,535.
pub fn build_frame(
    out: &mut Vec<u8>,
    src: SocketAddr,
    dst: SocketAddr,
    seq: Option<u32>,
    payload: &[u8],
) {
    out.clear();
    if emit_frame(out, src, dst, seq, payload).is_err() {
        // Unreachable: every length is clamped to what its field holds.
        out.clear();
    }
}

fn emit_frame(
    out: &mut Vec<u8>,
    src: SocketAddr,
    dst: SocketAddr,
    seq: Option<u32>,
    payload: &[u8],
) -> Result<(), WireError> {
    let (sip, dip) = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (IpAddr::V4(s), IpAddr::V4(d)),
        (s, d) => (IpAddr::V6(to6(s)), IpAddr::V6(to6(d))),
    };
    let (proto, l4_header) = match seq {
        None => (ipv4::protocol::UDP, udp::HEADER_LEN),
        Some(_) => (ipv4::protocol::TCP, tcp::MIN_HEADER_LEN),
    };
    let l4_len = l4_header + payload.len();
    match (sip, dip) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ipv4::Repr {
            src_addr: s,
            dst_addr: d,
            protocol: proto,
            payload_len: l4_len.min(usize::from(u16::MAX) - ipv4::MIN_HEADER_LEN),
            ttl: TTL,
            tos: 0,
            ident: 0,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            options: &[],
        }
        .append(out)?,
        _ => ipv6::Repr {
            src_addr: to6(sip),
            dst_addr: to6(dip),
            next_header: proto,
            payload_len: l4_len.min(usize::from(u16::MAX)),
            hop_limit: TTL,
            traffic_class: 0,
            flow_label: 0,
        }
        .append(out)?,
    };
    let l4_start = match seq {
        None => udp::Repr {
            src_port: src.port(),
            dst_port: dst.port(),
            payload_len: payload.len().min(usize::from(u16::MAX) - udp::HEADER_LEN),
        }
        .append(out)?,
        Some(seq) => tcp::Repr {
            src_port: src.port(),
            dst_port: dst.port(),
            seq_number: seq,
            ack_number: 1,
            flags: tcp::flags::PSH | tcp::flags::ACK,
            reserved_ns: 0,
            window: u16::MAX,
            urgent: 0,
            options: &[],
        }
        .append(out)?,
    };
    out.extend_from_slice(payload);
    let segment = out.get_mut(l4_start..).unwrap_or_default();
    match seq {
        None => udp::Packet::new_unchecked(segment).fill_checksum(&sip, &dip),
        Some(_) => tcp::Packet::new_unchecked(segment).fill_checksum(&sip, &dip),
    }
    Ok(())
}

/// `r`'s header followed by `inner`; empty when the header cannot say
/// `inner`'s length.
pub fn around(r: &impl Emit, inner: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(r.buffer_len() + inner.len());
    if r.append(&mut v).is_err() {
        return Vec::new();
    }
    v.extend_from_slice(inner);
    v
}

/// Ethernet II between two fixed locally administered addresses.
pub fn eth(ethertype: u16, inner: &[u8]) -> Vec<u8> {
    let r = ethernet::Repr {
        dst_addr: [0x02, 0, 0, 0, 0, 2],
        src_addr: [0x02, 0, 0, 0, 0, 1],
        ethertype,
    };
    around(&r, inner)
}

/// A VLAN tag (its TPID is the enclosing EtherType) and what follows.
pub fn vlan(vid: u16, ethertype: u16, inner: &[u8]) -> Vec<u8> {
    let r = ethernet::VlanRepr {
        pcp: 0,
        dei: false,
        vid,
        ethertype,
    };
    around(&r, inner)
}

/// IPv4 (header checksum filled, DF set) around `inner`.
pub fn ipv4_packet(protocol: u8, src: Ipv4Addr, dst: Ipv4Addr, inner: &[u8]) -> Vec<u8> {
    let r = ipv4::Repr {
        src_addr: src,
        dst_addr: dst,
        protocol,
        payload_len: inner.len(),
        ttl: TTL,
        tos: 0,
        ident: 0,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
        options: &[],
    };
    around(&r, inner)
}

pub fn ipv6_packet(next_header: u8, src: Ipv6Addr, dst: Ipv6Addr, inner: &[u8]) -> Vec<u8> {
    let r = ipv6::Repr {
        src_addr: src,
        dst_addr: dst,
        next_header,
        payload_len: inner.len(),
        hop_limit: TTL,
        traffic_class: 0,
        flow_label: 0,
    };
    around(&r, inner)
}

/// A UDP header (checksum 0) around `inner`.
pub fn udp_datagram(src_port: u16, dst_port: u16, inner: &[u8]) -> Vec<u8> {
    let r = udp::Repr {
        src_port,
        dst_port,
        payload_len: inner.len(),
    };
    around(&r, inner)
}

/// A GRE header without checksum around `inner`.
pub fn gre_packet(protocol: u16, key: Option<u32>, sequence: Option<u32>, inner: &[u8]) -> Vec<u8> {
    let r = gre::Repr {
        protocol,
        checksum_present: false,
        key,
        sequence,
    };
    around(&r, inner)
}

/// An MPLS label stack (bottom-of-stack on the last label) around `inner`.
pub fn mpls_stack(labels: &[u32], inner: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 * labels.len() + inner.len());
    for (i, &label) in labels.iter().enumerate() {
        let r = mpls::Repr {
            label,
            traffic_class: 0,
            bottom: i + 1 == labels.len(),
            ttl: TTL,
        };
        if r.append(&mut v).is_err() {
            return Vec::new();
        }
    }
    v.extend_from_slice(inner);
    v
}

fn to6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Decoder, FragLimits, L4};
    use crate::pcapio::LinkType;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn built_frames_decode_back() {
        let mut f = Vec::new();
        let (s, d): (SocketAddr, SocketAddr) = (
            "10.1.2.3:5060".parse().unwrap(),
            "10.9.8.7:5070".parse().unwrap(),
        );
        build_frame(&mut f, s, d, None, b"OPTIONS sip:a SIP/2.0\r\n\r\n");
        let mut dec = Decoder::new(FragLimits::default());
        let dg = dec.decode(LinkType::Raw, 1, 0, &f).unwrap().unwrap();
        assert_eq!((dg.src, dg.dst), (s, d));
        assert!(matches!(dg.l4, L4::Udp));
        assert_eq!(dg.payload, b"OPTIONS sip:a SIP/2.0\r\n\r\n");
        let ip = ipv4::Packet::new_checked(&f[..]).unwrap();
        assert!(ip.verify_checksum());
        assert!(
            udp::Packet::new_checked(ip.payload())
                .unwrap()
                .verify_checksum(&s.ip(), &d.ip())
        );

        let (s6, d6): (SocketAddr, SocketAddr) = (
            "[2001:db8::1]:5060".parse().unwrap(),
            "[2001:db8::2]:5060".parse().unwrap(),
        );
        build_frame(&mut f, s6, d6, Some(1000), b"x");
        let dg = dec.decode(LinkType::Raw, 1, 0, &f).unwrap().unwrap();
        assert_eq!((dg.src, dg.dst), (s6, d6));
        assert!(matches!(dg.l4, L4::Tcp { seq: 1000, .. }));
        let ip = ipv6::Packet::new_checked(&f[..]).unwrap();
        let seg = tcp::Packet::new_checked(ip.payload()).unwrap();
        assert!(seg.verify_checksum(&s6.ip(), &d6.ip()));
    }

    /// The exact bytes the listener has always written (checked against
    /// the hand-built frames this module replaced; tshark reads them as
    /// valid): a changed TTL, flag or checksum shows here.
    #[test]
    fn built_frames_are_byte_stable() {
        let mut f = Vec::new();
        let s: SocketAddr = "10.1.2.3:5060".parse().unwrap();
        let d: SocketAddr = "10.9.8.7:5070".parse().unwrap();
        build_frame(&mut f, s, d, None, b"x");
        assert_eq!(
            hex(&f),
            "4500001d0000400040111cbd0a0102030a09080713c413ce0009423678"
        );
        build_frame(&mut f, s, d, Some(0xdead_beef), b"x");
        assert_eq!(
            hex(&f),
            "450000290000400040061cbc0a0102030a09080713c413cedeadbeef000000015018ffff5487000078"
        );
        let d6: SocketAddr = "[2001:db8::2]:5062".parse().unwrap();
        build_frame(&mut f, s, d6, None, b"x");
        assert_eq!(
            hex(&f),
            "600000000009114000000000000000000000ffff0a01020320010db800000000000000000000000213c413c60009269378"
        );
    }
}
