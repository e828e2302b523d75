//! Tunnels built with the wire emit side, each around the same SIP
//! datagram: the decoder finds the inner 5-tuple and the path, counts the
//! kinds, refuses what is too deep, and leaves look-alikes as plain UDP.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::*;
use crate::wire::emit::{
    around as wrap, eth, ipv4_packet as ip4, ipv6_packet as ip6, mpls_stack as labels,
    udp_datagram as udp, vlan,
};
use crate::wire::{erspan, ethernet::ethertype, geneve, gre, gtpu, ipv4, mpls, pppoe, vxlan};

pub(super) const OUTER_A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub(super) const OUTER_B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub(super) const IN_A: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
pub(super) const IN_B: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);

pub(super) fn v6(last: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last)
}

/// The datagram every test looks for.
pub(super) fn sip_ip() -> Vec<u8> {
    ip4(
        17,
        IN_A,
        IN_B,
        &udp(5060, 5062, b"INVITE sip:b SIP/2.0\r\n\r\n"),
    )
}

pub(super) fn sip_eth() -> Vec<u8> {
    eth(ethertype::IPV4, &sip_ip())
}

/// Outer Ethernet / IPv4 / UDP to `dport`.
pub(super) fn over_udp(dport: u16, inner: &[u8]) -> Vec<u8> {
    eth(
        ethertype::IPV4,
        &ip4(17, OUTER_A, OUTER_B, &udp(49152, dport, inner)),
    )
}

pub(super) fn over_gre(r: gre::Repr, inner: &[u8]) -> Vec<u8> {
    eth(
        ethertype::IPV4,
        &ip4(47, OUTER_A, OUTER_B, &wrap(&r, inner)),
    )
}

pub(super) fn gre_repr(protocol: u16, key: Option<u32>, sequence: Option<u32>) -> gre::Repr {
    gre::Repr {
        protocol,
        checksum_present: false,
        key,
        sequence,
    }
}

pub(super) fn vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
    wrap(&vxlan::Repr { vni }, inner)
}

pub(super) fn type2(session: u16) -> erspan::Repr {
    erspan::Repr {
        vlan: 0,
        cos: 0,
        truncated: false,
        session_id: session,
        kind: erspan::Kind::TypeII {
            encap_type: 0,
            index: 1,
        },
    }
}

pub(super) fn type3(session: u16, frame_type: u8, platform: Option<[u8; 8]>) -> erspan::Repr {
    erspan::Repr {
        vlan: 0,
        cos: 0,
        truncated: false,
        session_id: session,
        kind: erspan::Kind::TypeIII {
            bso: 0,
            timestamp: 12345,
            sgt: 0,
            pdu: false,
            frame_type,
            hw_id: 3,
            direction: false,
            granularity: 3,
            platform,
        },
    }
}

pub(super) fn gtpu(
    teid: u32,
    sequence: Option<u16>,
    ext: (u8, &[u8]),
    msg: u8,
    inner: &[u8],
) -> Vec<u8> {
    let r = gtpu::Repr {
        message_type: msg,
        teid,
        sequence,
        npdu: None,
        next_extension: ext.0,
        extensions: ext.1,
        payload_len: inner.len(),
    };
    wrap(&r, inner)
}

/// (src, dst, payload, path) of the one datagram in `frame`.
fn found(
    d: &mut Decoder,
    link: LinkType,
    frame: &[u8],
) -> (SocketAddr, SocketAddr, Vec<u8>, String) {
    let g = d
        .decode(link, 0, 0, frame)
        .unwrap_or_else(|e| panic!("{e}"))
        .expect("a datagram");
    (g.src, g.dst, g.payload.to_vec(), g.encap.to_string())
}

fn path_of(frame: &[u8]) -> String {
    let mut d = Decoder::new(FragLimits::default());
    let (src, dst, payload, path) = found(&mut d, LinkType::Ethernet, frame);
    let sip = SocketAddr::new(IpAddr::V4(IN_A), 5060);
    assert_eq!((src, dst.port()), (sip, 5062), "inner 5-tuple of {path}");
    assert!(payload.starts_with(b"INVITE"), "{path}");
    path
}

#[test]
fn plain_frames_have_an_empty_path() {
    assert_eq!(path_of(&sip_eth()), "");
    let tagged = eth(ethertype::VLAN, &vlan(100, ethertype::IPV4, &sip_ip()));
    assert_eq!(path_of(&tagged), "vlan(100)");
}

#[test]
fn vxlan_and_geneve() {
    assert_eq!(
        path_of(&over_udp(4789, &vxlan(42, &sip_eth()))),
        "vxlan(42)"
    );
    let g = geneve::Repr {
        oam: false,
        critical: false,
        protocol: ethertype::TEB,
        vni: 0xabcdef,
        options: &[0, 1, 0x80, 1, 0xde, 0xad, 0xbe, 0xef],
    };
    let f = over_udp(6081, &wrap(&g, &sip_eth()));
    assert_eq!(path_of(&f), "geneve(11259375)");
    let g = geneve::Repr {
        protocol: ethertype::IPV4,
        options: &[],
        ..g
    };
    assert_eq!(
        path_of(&over_udp(6081, &wrap(&g, &sip_ip()))),
        "geneve(11259375)"
    );
}

#[test]
fn gre_carries_ip_ethernet_and_mpls() {
    let f = over_gre(gre_repr(ethertype::IPV4, None, None), &sip_ip());
    assert_eq!(path_of(&f), "gre");
    let f = over_gre(gre_repr(ethertype::IPV4, Some(77), Some(5)), &sip_ip());
    assert_eq!(path_of(&f), "gre(77)");
    let f = over_gre(gre_repr(ethertype::TEB, Some(1), None), &sip_eth());
    assert_eq!(path_of(&f), "gre(1)");
    let f = over_gre(
        gre_repr(ethertype::MPLS, None, None),
        &labels(&[300], &sip_ip()),
    );
    assert_eq!(path_of(&f), "gre/mpls(300)");
    // With a checksum, over IPv6.
    let mut g = wrap(
        &gre::Repr {
            checksum_present: true,
            ..gre_repr(ethertype::IPV4, Some(9), None)
        },
        &sip_ip(),
    );
    gre::Packet::new_unchecked(&mut g[..]).fill_checksum();
    assert!(gre::Packet::new_checked(&g[..]).unwrap().verify_checksum());
    let f = eth(ethertype::IPV6, &ip6(47, v6(1), v6(2), &g));
    assert_eq!(path_of(&f), "gre(9)");
}

#[test]
fn erspan_types_one_two_and_three() {
    let one = over_gre(gre_repr(ethertype::ERSPAN_2, None, None), &sip_eth());
    assert_eq!(path_of(&one), "erspan");
    let two = over_gre(
        gre_repr(ethertype::ERSPAN_2, None, Some(1)),
        &wrap(
            &type2(7),
            &eth(ethertype::VLAN, &vlan(100, ethertype::IPV4, &sip_ip())),
        ),
    );
    assert_eq!(path_of(&two), "erspan(7)/vlan(100)");
    let three = over_gre(
        gre_repr(ethertype::ERSPAN_3, None, Some(1)),
        &wrap(&type3(1023, 0, Some([1; 8])), &sip_eth()),
    );
    assert_eq!(path_of(&three), "erspan(1023)");
    let three_ip = over_gre(
        gre_repr(ethertype::ERSPAN_3, None, Some(1)),
        &wrap(&type3(5, erspan::frame_type::IP, None), &sip_ip()),
    );
    assert_eq!(path_of(&three_ip), "erspan(5)");
}

#[test]
fn mpls_ip_and_pseudowires() {
    let f = eth(ethertype::MPLS, &labels(&[16, 17], &sip_ip()));
    assert_eq!(path_of(&f), "mpls(16)/mpls(17)");
    let v6sip = ip6(17, v6(1), v6(2), &udp(5060, 5062, b"INVITE"));
    let mut d = Decoder::new(FragLimits::default());
    let f = eth(ethertype::MPLS, &labels(&[3], &v6sip));
    assert_eq!(found(&mut d, LinkType::Ethernet, &f).3, "mpls(3)");
    // Ethernet pseudowire with a control word ...
    let cw = mpls::ControlWordRepr {
        flags: 0,
        length: 0,
        sequence: 9,
    };
    let f = eth(ethertype::MPLS, &labels(&[100], &wrap(&cw, &sip_eth())));
    assert_eq!(path_of(&f), "mpls(100)");
    // ... and without: whatever the inner destination MAC's first nibble.
    for first in [0x02u8, 0x45, 0x60, 0x0a] {
        let mut inner = sip_eth();
        inner[0] = first;
        let f = eth(ethertype::MPLS, &labels(&[100, 200], &inner));
        assert_eq!(
            path_of(&f),
            "mpls(100)/mpls(200)",
            "MAC starting {first:#x}"
        );
    }
}

#[test]
fn pppoe_sessions() {
    let s = pppoe::Repr {
        session_id: 0x1234,
        protocol: voxtap_common::proto::PPP_IPV4,
        payload_len: sip_ip().len(),
    };
    let f = eth(ethertype::PPPOE_SESSION, &wrap(&s, &sip_ip()));
    assert_eq!(path_of(&f), "pppoe(4660)");
    // LCP is not IP.
    let lcp = pppoe::Repr {
        protocol: 0xc021,
        payload_len: 4,
        ..s
    };
    let mut d = Decoder::new(FragLimits::default());
    let f = eth(ethertype::PPPOE_SESSION, &wrap(&lcp, &[1, 1, 0, 4]));
    assert!(d.decode(LinkType::Ethernet, 0, 0, &f).unwrap().is_none());
    assert_eq!(d.stats().not_ip, 1);
}

#[test]
fn gtpu_with_and_without_extension_headers() {
    let f = over_udp(2152, &gtpu(0xdead, None, (0, &[]), 0xff, &sip_ip()));
    assert_eq!(path_of(&f), "gtpu(57005)");
    // PDU session container (type 0x85), then a second extension.
    let ext = [1, 0x10, 0x09, 0x40, 2, 1, 2, 3, 4, 5, 6, 0];
    let f = over_udp(2152, &gtpu(1, Some(3), (0x85, &ext), 0xff, &sip_ip()));
    assert_eq!(path_of(&f), "gtpu(1)");
    let p = gtpu::Packet::new_checked(&f[42..]).unwrap();
    assert_eq!((p.header_len(), p.extensions()), (24, &ext[..]));
}

#[test]
fn nesting_in_any_order() {
    // VLAN in VXLAN in MPLS, with an outer tag.
    let inner = eth(ethertype::VLAN, &vlan(100, ethertype::IPV4, &sip_ip()));
    let vx = ip4(17, OUTER_A, OUTER_B, &udp(40000, 4789, &vxlan(5, &inner)));
    let f = eth(
        ethertype::VLAN,
        &vlan(10, ethertype::MPLS, &labels(&[16], &vx)),
    );
    assert_eq!(path_of(&f), "vlan(10)/mpls(16)/vxlan(5)/vlan(100)");
    let mut d = Decoder::new(FragLimits::default());
    let g = d.decode(LinkType::Ethernet, 0, 0, &f).unwrap().unwrap();
    assert_eq!(g.vlan, Some(10));
    // IP-in-IP in GRE in PPPoE, in a QinQ pair.
    let ipip = ip4(4, OUTER_B, OUTER_A, &sip_ip());
    let gre_ip = ip4(
        47,
        OUTER_A,
        OUTER_B,
        &wrap(&gre_repr(ethertype::IPV4, None, None), &ipip),
    );
    let s = pppoe::Repr {
        session_id: 3,
        protocol: voxtap_common::proto::PPP_IPV4,
        payload_len: gre_ip.len(),
    };
    let q = vlan(
        200,
        ethertype::VLAN,
        &vlan(300, ethertype::PPPOE_SESSION, &wrap(&s, &gre_ip)),
    );
    let f = eth(ethertype::QINQ, &q);
    assert_eq!(path_of(&f), "vlan(200)/vlan(300)/pppoe(3)/gre/ipip");
    // GTP-U in Geneve in ERSPAN.
    let gt = ip4(
        17,
        OUTER_A,
        OUTER_B,
        &udp(2152, 2152, &gtpu(8, None, (0, &[]), 0xff, &sip_ip())),
    );
    let g = geneve::Repr {
        oam: false,
        critical: false,
        protocol: ethertype::IPV4,
        vni: 4,
        options: &[],
    };
    let ge = eth(
        ethertype::IPV4,
        &ip4(17, OUTER_A, OUTER_B, &udp(1, 6081, &wrap(&g, &gt))),
    );
    let f = over_gre(
        gre_repr(ethertype::ERSPAN_2, None, Some(1)),
        &wrap(&type2(2), &ge),
    );
    assert_eq!(path_of(&f), "erspan(2)/geneve(4)/gtpu(8)");
}

#[test]
fn depth_is_capped_and_counted() {
    let f = eth(ethertype::MPLS, &labels(&[1, 2, 3, 4], &sip_ip()));
    let cfg = |max_depth| TunnelConfig {
        max_depth,
        ..TunnelConfig::default()
    };
    let mut d = Decoder::with_tunnels(FragLimits::default(), cfg(4));
    assert!(d.decode(LinkType::Ethernet, 0, 0, &f).unwrap().is_some());
    let mut d = Decoder::with_tunnels(FragLimits::default(), cfg(3));
    assert_eq!(
        d.decode(LinkType::Ethernet, 0, 0, &f).unwrap_err(),
        DecodeError::TooDeep { max: 3 }
    );
    assert_eq!((d.stats().too_deep, d.stats().malformed), (1, 1));
    // Beyond the limit the configuration is clamped to it.
    let deep: Vec<u32> = (0..20).collect();
    let f = eth(ethertype::MPLS, &labels(&deep, &sip_ip()));
    let mut d = Decoder::with_tunnels(FragLimits::default(), cfg(1000));
    assert_eq!(
        d.decode(LinkType::Ethernet, 0, 0, &f).unwrap_err(),
        DecodeError::TooDeep {
            max: MAX_DEPTH_LIMIT
        }
    );
}

#[test]
fn tunnel_kinds_are_counted_once_per_frame() {
    let mut d = Decoder::new(FragLimits::default());
    let mpls2 = eth(ethertype::MPLS, &labels(&[16, 17], &sip_ip()));
    let vx = over_udp(4789, &vxlan(1, &sip_eth()));
    for f in [&mpls2, &mpls2, &vx, &sip_eth()] {
        d.decode(LinkType::Ethernet, 0, 0, f).unwrap().unwrap();
    }
    let s = d.stats();
    assert_eq!(
        (
            s.tunnel(Tunnel::Mpls),
            s.tunnel(Tunnel::Vxlan),
            s.tunnel(Tunnel::Gre)
        ),
        (2, 1, 0)
    );
}

#[test]
fn look_alikes_stay_plain_udp_and_ports_are_configurable() {
    let mut d = Decoder::new(FragLimits::default());
    // No I flag: not VXLAN.
    let mut not_vx = vxlan(1, &sip_eth());
    not_vx[0] = 0;
    let (_, dst, payload, path) = found(&mut d, LinkType::Ethernet, &over_udp(4789, &not_vx));
    assert_eq!((dst.port(), payload, path), (4789, not_vx, String::new()));
    // A GTP-U echo request is not user data.
    let echo = gtpu(0, Some(1), (0, &[]), 1, &[]);
    assert_eq!(
        found(&mut d, LinkType::Ethernet, &over_udp(2152, &echo))
            .1
            .port(),
        2152
    );
    // Linux's legacy VXLAN port, configured; the default one then is plain.
    let cfg = TunnelConfig {
        vxlan_port: 8472,
        ..TunnelConfig::default()
    };
    let mut d = Decoder::with_tunnels(FragLimits::default(), cfg);
    let f = over_udp(8472, &vxlan(3, &sip_eth()));
    assert_eq!(found(&mut d, LinkType::Ethernet, &f).3, "vxlan(3)");
    let f = over_udp(4789, &vxlan(3, &sip_eth()));
    assert_eq!(found(&mut d, LinkType::Ethernet, &f).1.port(), 4789);
    // GRE version 1 (PPTP) is IP without UDP/TCP, not an error.
    let mut pptp = wrap(&gre_repr(0x880b, Some(1), None), &[0; 8]);
    pptp[1] |= 1;
    let f = eth(ethertype::IPV4, &ip4(47, OUTER_A, OUTER_B, &pptp));
    assert!(d.decode(LinkType::Ethernet, 0, 0, &f).unwrap().is_none());
}

/// A VXLAN datagram fragmented by the outer IPv4: reassembled, then
/// unwrapped.
#[test]
fn fragmented_outer_ip_is_reassembled_then_unwrapped() {
    let mut big = b"INVITE sip:b SIP/2.0\r\n".to_vec();
    big.resize(3000, b'x');
    let inner = eth(
        ethertype::IPV4,
        &ip4(17, IN_A, IN_B, &udp(5060, 5062, &big)),
    );
    let outer_udp = udp(40000, 4789, &vxlan(9, &inner));
    let mut d = Decoder::new(FragLimits::default());
    let mut out = None;
    for (i, chunk) in outer_udp.chunks(1480).enumerate() {
        let r = ipv4::Repr {
            src_addr: OUTER_A,
            dst_addr: OUTER_B,
            protocol: 17,
            payload_len: chunk.len(),
            ttl: 64,
            tos: 0,
            ident: 99,
            dont_frag: false,
            more_frags: (i + 1) * 1480 < outer_udp.len(),
            frag_offset: (i * 1480) as u32,
            options: &[],
        };
        let f = eth(ethertype::IPV4, &wrap(&r, chunk));
        if let Some(g) = d.decode(LinkType::Ethernet, 0, i as u64, &f).unwrap() {
            out = Some((g.payload.len(), g.encap.to_string(), g.fragments.to_vec()));
        }
    }
    assert_eq!(out, Some((3000, "vxlan(9)".into(), vec![0, 1])));
}

/// Every prefix and many single-byte changes of every tunnel frame above:
/// errors, never panics.
#[test]
fn mutated_tunnel_frames_never_panic() {
    let frames = [
        over_udp(4789, &vxlan(42, &sip_eth())),
        over_gre(
            gre_repr(ethertype::ERSPAN_3, Some(1), Some(1)),
            &wrap(&type3(1, 0, Some([0; 8])), &sip_eth()),
        ),
        eth(ethertype::MPLS, &labels(&[16, 17], &sip_eth())),
        over_udp(
            2152,
            &gtpu(1, Some(3), (0x85, &[1, 0, 0, 0]), 0xff, &sip_ip()),
        ),
    ];
    let mut d = Decoder::new(FragLimits::default());
    for f in &frames {
        for n in 0..f.len() {
            let _ = d.decode(LinkType::Ethernet, 0, 0, &f[..n]);
        }
        for i in 0..f.len() {
            for v in [0u8, 0x01, 0x45, 0x80, 0xff] {
                let mut m = f.clone();
                m[i] = v;
                let _ = d.decode(LinkType::Ethernet, 0, 0, &m);
            }
        }
    }
}

/// The straight-line path for plain frames (`encap::plain_ethernet`) gives
/// what the whole walk gives, and declines every frame the walk would
/// unwrap, split or refuse.
#[test]
fn plain_fast_path_agrees_with_the_walk() {
    let cfg = TunnelConfig::default();
    let tcp_hdr = [
        0x13, 0xc4, 0x13, 0xc4, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0,
    ];
    let taken = [
        sip_eth(),
        eth(ethertype::IPV4, &ip4(6, IN_A, IN_B, &tcp_hdr)),
        eth(
            ethertype::IPV6,
            &ip6(17, v6(1), v6(2), &udp(4000, 5060, b"x")),
        ),
    ];
    for f in &taken {
        let fast = encap::plain_ethernet(&cfg, f).expect("plain frame takes the fast path");
        let (mut e, mut counts) = (Encap::default(), [0u64; TUNNEL_KINDS as usize]);
        let Ok(encap::Net::L4(walked)) =
            encap::Walk::new(&cfg, &mut e, &mut counts).run(encap::Next::Ethernet(f))
        else {
            panic!("the walk finds no transport");
        };
        assert_eq!(
            (fast.src, fast.dst, fast.proto, fast.data),
            (walked.src, walked.dst, walked.proto, walked.data)
        );
        assert!(e.is_empty());
    }
    let mut fragment = sip_ip();
    fragment[6] = 0x20; // more fragments
    let mut v4_says_6 = sip_ip();
    v4_says_6[0] = 0x65;
    let declined = [
        over_udp(4789, &vxlan(3, &sip_eth())),
        over_udp(6081, &[0; 8]),
        over_udp(2152, &[0; 8]),
        eth(ethertype::VLAN, &vlan(5, ethertype::IPV4, &sip_ip())),
        eth(ethertype::IPV4, &ip4(4, OUTER_A, OUTER_B, &sip_ip())),
        eth(ethertype::IPV4, &ip4(47, OUTER_A, OUTER_B, &[0; 8])),
        eth(
            ethertype::IPV6,
            &ip6(0, v6(1), v6(2), &[17, 0, 0, 0, 0, 0, 0, 0]),
        ),
        eth(ethertype::IPV4, &fragment),
        eth(ethertype::IPV4, &v4_says_6),
        eth(ethertype::IPV4, &sip_ip()[..10]),
        eth(ethertype::ARP, &[0; 28]),
    ];
    for f in &declined {
        assert!(encap::plain_ethernet(&cfg, f).is_none(), "{f:02x?}");
    }
}
