//! Building frames: the emit side of the wire views.

use std::net::{IpAddr, SocketAddr};

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

fn csum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut it = data.chunks_exact(2);
    for w in &mut it {
        sum = sum.wrapping_add(u32::from(u16::from_be_bytes([w[0], w[1]])));
    }
    if let [b] = it.remainder() {
        sum = sum.wrapping_add(u32::from(*b) << 8);
    }
    sum
}

fn csum_fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 or IPv6 packet (raw IP link type) carrying `payload` over UDP,
/// or over TCP (PSH|ACK at `seq`) when `seq` is given, with valid checksums.
/// Mixed families go as IPv6 (v4-mapped).
pub fn build_frame(
    out: &mut Vec<u8>,
    src: SocketAddr,
    dst: SocketAddr,
    seq: Option<u32>,
    payload: &[u8],
) {
    out.clear();
    let (sip, dip) = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (IpAddr::V4(s), IpAddr::V4(d)),
        (s, d) => (IpAddr::V6(to6(s)), IpAddr::V6(to6(d))),
    };
    let proto = if seq.is_some() {
        IPPROTO_TCP
    } else {
        IPPROTO_UDP
    };
    let l4_len = if seq.is_some() { 20 } else { 8 } + payload.len();
    let mut pseudo = 0u32;
    match (sip, dip) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = (20 + l4_len).min(65_535) as u16;
            let mut h = [0u8; 20];
            h[0] = 0x45;
            h[2..4].copy_from_slice(&total.to_be_bytes());
            h[6] = 0x40; // don't fragment
            h[8] = 64;
            h[9] = proto;
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            let c = csum_fold(csum_add(0, &h));
            h[10..12].copy_from_slice(&c.to_be_bytes());
            out.extend_from_slice(&h);
            pseudo = csum_add(pseudo, &s.octets());
            pseudo = csum_add(pseudo, &d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut h = [0u8; 40];
            h[0] = 0x60;
            h[4..6].copy_from_slice(&(l4_len.min(65_535) as u16).to_be_bytes());
            h[6] = proto;
            h[7] = 64;
            h[8..24].copy_from_slice(&s.octets());
            h[24..40].copy_from_slice(&d.octets());
            out.extend_from_slice(&h);
            pseudo = csum_add(pseudo, &s.octets());
            pseudo = csum_add(pseudo, &d.octets());
        }
        _ => {}
    }
    pseudo = pseudo
        .wrapping_add(u32::from(proto))
        .wrapping_add(l4_len as u32);
    let l4_start = out.len();
    match seq {
        None => {
            out.extend_from_slice(&src.port().to_be_bytes());
            out.extend_from_slice(&dst.port().to_be_bytes());
            out.extend_from_slice(&(l4_len.min(65_535) as u16).to_be_bytes());
            out.extend_from_slice(&[0, 0]);
        }
        Some(seq) => {
            out.extend_from_slice(&src.port().to_be_bytes());
            out.extend_from_slice(&dst.port().to_be_bytes());
            out.extend_from_slice(&seq.to_be_bytes());
            out.extend_from_slice(&1u32.to_be_bytes());
            out.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        }
    }
    out.extend_from_slice(payload);
    let mut c = csum_fold(csum_add(pseudo, &out[l4_start..]));
    if seq.is_none() && c == 0 {
        c = 0xffff;
    }
    let at = l4_start + if seq.is_some() { 16 } else { 6 };
    out[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

fn to6(ip: IpAddr) -> std::net::Ipv6Addr {
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
        // The IPv4 header checksum verifies to zero.
        assert_eq!(csum_fold(csum_add(0, &f[..20])), 0);

        let (s6, d6): (SocketAddr, SocketAddr) = (
            "[2001:db8::1]:5060".parse().unwrap(),
            "[2001:db8::2]:5060".parse().unwrap(),
        );
        build_frame(&mut f, s6, d6, Some(1000), b"x");
        let dg = dec.decode(LinkType::Raw, 1, 0, &f).unwrap().unwrap();
        assert_eq!((dg.src, dg.dst), (s6, d6));
        assert!(matches!(dg.l4, L4::Tcp { seq: 1000, .. }));
    }
}
