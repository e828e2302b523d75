//! Replace the UDP payload of a captured frame (SRTP -> RTP) and fix what
//! depends on its length: UDP length and checksum, IPv4 total length and
//! header checksum, IPv6 payload length, for the innermost IP header and
//! every tunnel header around it, through the patching side of the wire
//! views. Everything else is copied unchanged.

use std::net::IpAddr;

use voxtap_proto::pcapio::LinkType;
use voxtap_proto::wire::{ethernet, ethernet::ethertype, ipv4, ipv6, udp};

/// More VLAN tags than this: not a frame we rewrite.
const MAX_VLAN_TAGS: usize = 8;
/// IP headers (outer and tunnelled) we follow to the UDP header.
const MAX_IP_HEADERS: usize = 5;

/// Where the UDP header of a frame is, and the IP headers around it
/// (outermost first).
#[derive(Debug, Clone)]
struct Located {
    ips: Vec<(usize, u8)>, // (offset, version)
    udp: usize,
}

/// Bytes before the (outer) IP header, if the frame carries IP.
fn link_header_len(link: LinkType, f: &[u8]) -> Option<usize> {
    Some(match link {
        LinkType::Ethernet => {
            let eth = ethernet::Packet::new_checked(f).ok()?;
            let (mut ty, mut off) = (eth.ethertype(), ethernet::HEADER_LEN);
            for _ in 0..MAX_VLAN_TAGS {
                if !ethertype::is_vlan(ty) {
                    break;
                }
                ty = ethernet::VlanTag::new_checked(f.get(off..)?)
                    .ok()?
                    .ethertype();
                off += ethernet::VLAN_TAG_LEN;
            }
            // A tag still pending here is one too many.
            if ty != ethertype::IPV4 && ty != ethertype::IPV6 {
                return None;
            }
            off
        }
        LinkType::LinuxSll => 16,
        LinkType::LinuxSll2 => 20,
        LinkType::Null | LinkType::Loop => 4,
        LinkType::Raw | LinkType::Ipv4 | LinkType::Ipv6 => 0,
    })
}

/// The next protocol and header length of the IP header at the start of
/// `ip`; None for fragments (their checksum spans other frames) and for
/// what we do not rewrite.
fn ip_header(ip: &[u8]) -> Option<(u8, usize)> {
    match ip.first()? >> 4 {
        4 => {
            let p = ipv4::Packet::new_checked(ip).ok()?;
            (!p.is_fragment()).then(|| (p.protocol(), p.header_len()))
        }
        6 => {
            let p = ipv6::Packet::new_checked(ip).ok()?;
            let (mut nh, mut hl) = (p.next_header(), ipv6::HEADER_LEN);
            // Hop-by-hop, routing and destination options.
            while matches!(nh, 0 | 43 | 60) {
                let ext = ipv6::ExtHeader::new_checked(ip.get(hl..)?).ok()?;
                nh = ext.next_header();
                hl += ext.header_len();
            }
            Some((nh, hl))
        }
        _ => None,
    }
}

fn locate(link: LinkType, f: &[u8]) -> Option<Located> {
    let mut off = link_header_len(link, f)?;
    let mut ips = Vec::new();
    for _ in 0..MAX_IP_HEADERS {
        let ip = f.get(off..)?;
        ips.push((off, ip.first()? >> 4));
        let (next, hl) = ip_header(ip)?;
        off += hl;
        match next {
            17 => return Some(Located { ips, udp: off }),
            4 | 41 => continue,
            _ => return None,
        }
    }
    None
}

/// Source and destination of the IP header at the start of `ip`.
fn addresses(ip: &[u8], version: u8) -> (IpAddr, IpAddr) {
    if version == 4 {
        let p = ipv4::Packet::new_unchecked(ip);
        (p.src_addr().into(), p.dst_addr().into())
    } else {
        let p = ipv6::Packet::new_unchecked(ip);
        (p.src_addr().into(), p.dst_addr().into())
    }
}

/// The frame with its UDP payload replaced by `payload`, or None when the
/// frame is not a plain (unfragmented) UDP frame we can rewrite.
pub(crate) fn replace_udp_payload(link: LinkType, frame: &[u8], payload: &[u8]) -> Option<Vec<u8>> {
    let loc = locate(link, frame)?;
    let old = udp::Packet::new_unchecked(frame.get(loc.udp..)?);
    let old_udp_len = usize::from(old.len());
    // Length 0 (a jumbogram) included: not rewritten.
    if old_udp_len < udp::HEADER_LEN {
        return None;
    }
    let new_udp_len = u16::try_from(udp::HEADER_LEN + payload.len()).ok()?;
    let delta = i64::from(new_udp_len) - old_udp_len as i64;
    let head = frame.get(..loc.udp + udp::HEADER_LEN)?;
    let trailer = frame.get(loc.udp + old_udp_len..)?;
    let mut out = Vec::with_capacity(frame.len() + payload.len());
    out.extend_from_slice(head);
    out.extend_from_slice(payload);
    out.extend_from_slice(trailer);
    udp::Packet::new_unchecked(out.get_mut(loc.udp..)?).set_len(new_udp_len);
    for &(off, v) in &loc.ips {
        let ip = out.get_mut(off..)?;
        if v == 4 {
            let mut p = ipv4::Packet::new_unchecked(ip);
            p.set_total_len(u16::try_from(i64::from(p.total_len()) + delta).ok()?);
            p.fill_checksum();
        } else {
            let mut p = ipv6::Packet::new_unchecked(ip);
            p.set_payload_len(u16::try_from(i64::from(p.payload_len()) + delta).ok()?);
        }
    }
    // UDP checksum over the innermost IP's pseudo-header.
    let &(ip, v) = loc.ips.last()?;
    if v == 4 && old.checksum() == 0 {
        return Some(out); // IPv4 UDP without checksum stays without one
    }
    let (src, dst) = addresses(out.get(ip..)?, v);
    udp::Packet::new_unchecked(out.get_mut(loc.udp..)?).fill_checksum(&src, &dst);
    Some(out)
}

/// A SIP message whose SDP offers SRTP (`RTP/SAVP`, `RTP/SAVPF`) rewritten
/// to announce plain RTP, with its Content-Length fixed; None when there is
/// nothing to rewrite.
pub(crate) fn plain_sdp(sip: &[u8]) -> Option<Vec<u8>> {
    let split = memchr::memmem::find(sip, b"\r\n\r\n")? + 4;
    let (head, body) = sip.split_at(split);
    memchr::memmem::find(body, b"RTP/SAVP")?;
    let mut new_body = Vec::with_capacity(body.len());
    let mut rest = body;
    while let Some(i) = memchr::memmem::find(rest, b"RTP/SAVP") {
        new_body.extend_from_slice(&rest[..i]);
        new_body.extend_from_slice(b"RTP/AVP");
        rest = &rest[i + b"RTP/SAVP".len()..];
    }
    new_body.extend_from_slice(rest);
    let mut out = Vec::with_capacity(sip.len());
    let mut fixed = false;
    for line in head.split_inclusive(|&b| b == b'\n') {
        let name_end = line.iter().position(|&b| b == b':');
        let is_cl = name_end.is_some_and(|e| {
            let n = line[..e].trim_ascii();
            n.eq_ignore_ascii_case(b"content-length") || n.eq_ignore_ascii_case(b"l")
        });
        if is_cl && !fixed {
            let e = name_end.unwrap_or(0);
            out.extend_from_slice(&line[..=e]);
            out.extend_from_slice(format!(" {}\r\n", new_body.len()).as_bytes());
            fixed = true;
        } else {
            out.extend_from_slice(line);
        }
    }
    if !fixed {
        return None;
    }
    out.extend_from_slice(&new_body);
    Some(out)
}

#[cfg(test)]
mod sdp_tests {
    use super::*;

    #[test]
    fn savp_becomes_avp_with_length_fixed() {
        let body =
            "v=0\r\nm=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\r\n";
        let msg = format!(
            "INVITE sip:b@x SIP/2.0\r\nCall-ID: a\r\nl: {}\r\n\r\n{body}",
            body.len()
        );
        let out = plain_sdp(msg.as_bytes()).unwrap();
        let m = voxtap_proto::sip::parse(&out).unwrap();
        assert_eq!(m.content_length(), Some(body.len() - 1));
        assert_eq!(m.body(), body.replace("RTP/SAVP", "RTP/AVP").as_bytes());
        assert!(plain_sdp(b"INVITE sip:b@x SIP/2.0\r\nl: 0\r\n\r\n").is_none());
    }
}

#[cfg(test)]
mod frame_tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use voxtap_proto::decode::{Decoder, FragLimits};
    use voxtap_proto::wire::{Emit, ethernet, ipv4, ipv6, udp};

    use super::*;

    fn v4(src: [u8; 4], dst: [u8; 4], protocol: u8, payload_len: usize) -> ipv4::Repr<'static> {
        ipv4::Repr {
            src_addr: Ipv4Addr::from(src),
            dst_addr: Ipv4Addr::from(dst),
            protocol,
            payload_len,
            ttl: 63,
            tos: 0xb8,
            ident: 0x1234,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            options: &[],
        }
    }

    /// Ethernet, a VLAN tag, IPv4 carrying IPv6 (6in4) carrying UDP, with
    /// every checksum right and 4 bytes of Ethernet trailer after it.
    fn tunnelled_frame(payload: &[u8]) -> Vec<u8> {
        let udp_len = udp::HEADER_LEN + payload.len();
        let mut f = Vec::new();
        let eth = ethernet::Repr {
            dst_addr: [2, 0, 0, 0, 0, 2],
            src_addr: [2, 0, 0, 0, 0, 1],
            ethertype: ethertype::VLAN,
        };
        eth.append(&mut f).unwrap();
        let tag = ethernet::VlanRepr {
            pcp: 5,
            dei: false,
            vid: 100,
            ethertype: ethertype::IPV4,
        };
        tag.append(&mut f).unwrap();
        let outer = v4(
            [192, 0, 2, 1],
            [192, 0, 2, 2],
            ipv4::protocol::IPV6,
            40 + udp_len,
        );
        outer.append(&mut f).unwrap();
        let (s6, d6): (Ipv6Addr, Ipv6Addr) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        );
        let inner = ipv6::Repr {
            src_addr: s6,
            dst_addr: d6,
            next_header: 17,
            payload_len: udp_len,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0x12345,
        };
        inner.append(&mut f).unwrap();
        let u = udp::Repr {
            src_port: 20_000,
            dst_port: 30_000,
            payload_len: payload.len(),
        };
        let at = u.append(&mut f).unwrap();
        f.extend_from_slice(payload);
        udp::Packet::new_unchecked(&mut f[at..]).fill_checksum(&s6.into(), &d6.into());
        f.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        f
    }

    /// Every length and checksum of a frame from `tunnelled_frame` holds.
    fn assert_consistent(f: &[u8], payload: &[u8]) {
        let mut dec = Decoder::new(FragLimits::default());
        let d = dec.decode(LinkType::Ethernet, 0, 0, f).unwrap().unwrap();
        assert_eq!(d.payload, payload);
        let outer = ipv4::Packet::new_checked(&f[18..]).unwrap();
        assert!(outer.verify_checksum());
        let inner = ipv6::Packet::new_checked(outer.payload()).unwrap();
        let u = udp::Packet::new_checked(inner.payload()).unwrap();
        let (s, d) = (inner.src_addr().into(), inner.dst_addr().into());
        assert!(u.verify_checksum(&s, &d));
        assert_eq!(&f[f.len() - 4..], [0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn tunnel_lengths_and_checksums_follow_the_payload() {
        let srtp = vec![0x80; 182];
        let f = tunnelled_frame(&srtp);
        assert_consistent(&f, &srtp);
        for plain in [vec![0x80; 172], vec![0x81; 200], vec![]] {
            let out = replace_udp_payload(LinkType::Ethernet, &f, &plain).unwrap();
            assert_consistent(&out, &plain);
            // The same as building the frame around the new payload.
            assert_eq!(out, tunnelled_frame(&plain));
            // And back.
            assert_eq!(
                replace_udp_payload(LinkType::Ethernet, &out, &srtp).unwrap(),
                f
            );
        }
    }

    #[test]
    fn frames_not_rewritten() {
        let f = tunnelled_frame(b"abc");
        // Truncated before the UDP header ends.
        assert!(replace_udp_payload(LinkType::Ethernet, &f[..80], b"x").is_none());
        // A fragment of the outer header.
        let mut frag = f.clone();
        ipv4::Packet::new_unchecked(&mut frag[18..]).set_frag(false, true, 0);
        assert!(replace_udp_payload(LinkType::Ethernet, &frag, b"x").is_none());
        // Not IP.
        assert!(replace_udp_payload(LinkType::Ethernet, &[0; 60], b"x").is_none());
    }
}
