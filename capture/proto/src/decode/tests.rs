//! Hand-built frames for every layer and for the odd cases.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::*;

const A4: [u8; 4] = [10, 0, 0, 1];
const B4: [u8; 4] = [10, 0, 0, 2];
const C4: [u8; 4] = [192, 168, 1, 1];
const D4: [u8; 4] = [192, 168, 1, 2];

fn a6(last: u8) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0xfd;
    a[15] = last;
    a
}

fn eth(ty: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    v.extend_from_slice(&ty.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn tag(tpid: u16, vid: u16, inner: u16) -> Vec<u8> {
    let mut v = tpid.to_be_bytes().to_vec();
    v.extend_from_slice(&((5u16 << 13) | vid).to_be_bytes());
    v.extend_from_slice(&inner.to_be_bytes());
    v
}

/// IPv4 with `opts` (multiple of 4) and a raw flags/fragment-offset field.
fn ipv4_full(
    proto: u8,
    src: [u8; 4],
    dst: [u8; 4],
    id: u16,
    frag: u16,
    opts: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let hlen = 20 + opts.len();
    let total = (hlen + payload.len()) as u16;
    let mut v = vec![0x40 | (hlen / 4) as u8, 0];
    v.extend_from_slice(&total.to_be_bytes());
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(&frag.to_be_bytes());
    v.extend_from_slice(&[64, proto, 0, 0]);
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    v.extend_from_slice(opts);
    v.extend_from_slice(payload);
    v
}

fn ipv4(proto: u8, payload: &[u8]) -> Vec<u8> {
    ipv4_full(proto, A4, B4, 1, 0x4000, &[], payload)
}

fn ipv6(next: u8, src: [u8; 16], dst: [u8; 16], payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x60, 0, 0, 0];
    v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    v.extend_from_slice(&[next, 64]);
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    v.extend_from_slice(payload);
    v
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = sport.to_be_bytes().to_vec();
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(payload);
    v
}

fn tcp(sport: u16, dport: u16, seq: u32, flags: u8, opts: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut v = sport.to_be_bytes().to_vec();
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 0]);
    v.push((((20 + opts.len()) / 4) as u8) << 4);
    v.push(flags);
    v.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
    v.extend_from_slice(opts);
    v.extend_from_slice(payload);
    v
}

fn ext(next: u8, len8: u8) -> Vec<u8> {
    let mut v = vec![next, len8];
    v.resize((usize::from(len8) + 1) * 8, 1);
    v
}

fn frag6(next: u8, offset: u16, more: bool, id: u32, data: &[u8]) -> Vec<u8> {
    let mut v = vec![next, 0];
    v.extend_from_slice(&(offset | u16::from(more)).to_be_bytes());
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(data);
    v
}

fn dec() -> Decoder {
    Decoder::new(FragLimits::default())
}

fn sa(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)
}

fn sa6(ip: [u8; 16], port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)
}

/// (src, dst, l4, payload, vlan, fragments) copied out of a decode result.
type Out = (SocketAddr, SocketAddr, L4, Vec<u8>, Option<u16>, Vec<u64>);

fn run(
    d: &mut Decoder,
    link: LinkType,
    ts: u64,
    r: u64,
    frame: &[u8],
) -> Result<Option<Out>, DecodeError> {
    d.decode(link, ts, r, frame).map(|o| {
        o.map(|g| {
            (
                g.src,
                g.dst,
                g.l4,
                g.payload.to_vec(),
                g.vlan,
                g.fragments.to_vec(),
            )
        })
    })
}

fn one(link: LinkType, frame: &[u8]) -> Result<Option<Out>, DecodeError> {
    run(&mut dec(), link, 0, 0, frame)
}

#[test]
fn ethernet_ipv4_udp_trims_padding_and_fcs() {
    let mut f = eth(0x0800, &ipv4(17, &udp(5060, 5080, b"hi")));
    f.extend_from_slice(&[0; 20]); // padding + FCS
    let o = one(LinkType::Ethernet, &f).unwrap().unwrap();
    assert_eq!(o.0, sa(A4, 5060));
    assert_eq!(o.1, sa(B4, 5080));
    assert_eq!(o.2, L4::Udp);
    assert_eq!(o.3, b"hi");
    assert_eq!(o.4, None);
    assert!(o.5.is_empty());
}

#[test]
fn ipv4_options_are_skipped() {
    let ip = ipv4_full(17, A4, B4, 1, 0, &[1, 1, 1, 0], &udp(1, 2, b"opt"));
    let o = one(LinkType::Raw, &ip).unwrap().unwrap();
    assert_eq!(o.3, b"opt");
}

#[test]
fn ipv4_ihl_below_5_is_bad_header() {
    let mut ip = ipv4(17, &udp(1, 2, b"x"));
    ip[0] = 0x44;
    let e = one(LinkType::Raw, &ip).unwrap_err();
    assert!(
        matches!(e, DecodeError::BadHeader { layer: "ipv4", .. }),
        "{e:?}"
    );
}

#[test]
fn ipv4_total_length_beyond_data_is_truncated() {
    let ip = ipv4(17, &udp(1, 2, b"hello"));
    let e = one(LinkType::Raw, &ip[..ip.len() - 2]).unwrap_err();
    assert_eq!(e, DecodeError::Truncated { layer: "ipv4" });
}

#[test]
fn truncated_headers_at_every_length() {
    let frames = [
        eth(0x0800, &ipv4(17, &udp(1, 2, b"payload"))),
        eth(
            0x0800,
            &ipv4(6, &tcp(1, 2, 3, 0x18, &[1, 1, 1, 1], b"payload")),
        ),
        eth(0x86dd, &ipv6(17, a6(1), a6(2), &udp(1, 2, b"payload"))),
    ];
    for f in &frames {
        assert!(one(LinkType::Ethernet, f).unwrap().is_some());
        for cut in 0..f.len() {
            // Shorter than a header, or than a length field claims: an error,
            // never a panic and never a datagram.
            assert!(one(LinkType::Ethernet, &f[..cut]).is_err(), "cut {cut}");
        }
    }
    assert_eq!(
        one(LinkType::Ethernet, &[0; 10]).unwrap_err(),
        DecodeError::Truncated { layer: "ethernet" }
    );
}

#[test]
fn udp_length_larger_than_data_is_truncated() {
    let mut u = udp(1, 2, b"abc");
    u[5] = 200;
    let e = one(LinkType::Raw, &ipv4(17, &u)).unwrap_err();
    assert_eq!(e, DecodeError::Truncated { layer: "udp" });
}

#[test]
fn udp_length_below_8_is_bad() {
    let mut u = udp(1, 2, b"abc");
    u[5] = 7;
    let e = one(LinkType::Raw, &ipv4(17, &u)).unwrap_err();
    assert!(matches!(e, DecodeError::BadHeader { layer: "udp", .. }));
}

#[test]
fn udp_length_shorter_than_ip_payload_trims() {
    let mut u = udp(1, 2, b"abcdef");
    u[5] = 10; // 2 payload bytes
    let o = one(LinkType::Raw, &ipv4(17, &u)).unwrap().unwrap();
    assert_eq!(o.3, b"ab");
}

#[test]
fn tcp_with_options() {
    let t = tcp(
        5060,
        40000,
        0xdead_beef,
        0x18,
        &[2, 4, 5, 0xb4, 1, 1, 1, 0],
        b"INVITE",
    );
    let o = one(LinkType::Raw, &ipv4(6, &t)).unwrap().unwrap();
    assert_eq!(
        o.2,
        L4::Tcp {
            seq: 0xdead_beef,
            flags: 0x18
        }
    );
    assert_eq!(o.3, b"INVITE");
    let mut bad = t.clone();
    bad[12] = 0x40;
    let e = one(LinkType::Raw, &ipv4(6, &bad)).unwrap_err();
    assert!(matches!(e, DecodeError::BadHeader { layer: "tcp", .. }));
}

#[test]
fn vlan_qinq_and_old_tpid() {
    let ip = ipv4(17, &udp(1, 2, b"v"));
    let mut inner = tag(0x8100, 100, 0x0800)[2..].to_vec();
    inner.extend_from_slice(&ip);
    let f = eth(0x8100, &inner);
    assert_eq!(one(LinkType::Ethernet, &f).unwrap().unwrap().4, Some(100));

    // 802.1ad outer 200, 802.1Q inner 100: the outermost id is reported.
    let mut q = tag(0x88a8, 200, 0x8100)[2..].to_vec();
    q.extend_from_slice(&tag(0x8100, 100, 0x0800)[2..]);
    q.extend_from_slice(&ip);
    let o = one(LinkType::Ethernet, &eth(0x88a8, &q)).unwrap().unwrap();
    assert_eq!((o.4, o.3.as_slice()), (Some(200), &b"v"[..]));

    let mut q = tag(0x9100, 300, 0x9100)[2..].to_vec();
    q.extend_from_slice(&tag(0x9100, 301, 0x8100)[2..]);
    q.extend_from_slice(&tag(0x8100, 302, 0x0800)[2..]);
    q.extend_from_slice(&ip);
    assert_eq!(
        one(LinkType::Ethernet, &eth(0x9100, &q))
            .unwrap()
            .unwrap()
            .4,
        Some(300)
    );

    // Truncated tag and endless tags.
    assert!(one(LinkType::Ethernet, &eth(0x8100, &[0, 100])).is_err());
    let endless: Vec<u8> = (0..20)
        .flat_map(|_| tag(0x8100, 1, 0x8100)[2..].to_vec())
        .collect();
    assert!(one(LinkType::Ethernet, &eth(0x8100, &endless)).is_err());
}

#[test]
fn non_ip_and_non_udp_tcp_are_counted() {
    let mut d = dec();
    assert!(
        run(&mut d, LinkType::Ethernet, 0, 0, &eth(0x0806, &[0; 28]))
            .unwrap()
            .is_none()
    );
    assert!(
        run(
            &mut d,
            LinkType::Ethernet,
            0,
            0,
            &eth(0x0800, &ipv4(1, &[8, 0, 0, 0]))
        )
        .unwrap()
        .is_none()
    );
    assert!(run(&mut d, LinkType::Ethernet, 0, 0, &eth(0x0800, &[0x45])).is_err());
    let s = d.stats();
    assert_eq!(
        (s.frames, s.not_ip, s.not_udp_tcp, s.malformed),
        (3, 1, 1, 1)
    );
}

#[test]
fn linux_sll_and_sll2() {
    let ip = ipv4(17, &udp(7, 8, b"sll"));
    let mut sll = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
    sll.extend_from_slice(&ip);
    assert_eq!(one(LinkType::LinuxSll, &sll).unwrap().unwrap().3, b"sll");

    let mut sll2 = vec![
        0x86, 0xdd, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0,
    ];
    sll2.extend_from_slice(&ipv6(17, a6(1), a6(2), &udp(7, 8, b"sll2")));
    let o = one(LinkType::LinuxSll2, &sll2).unwrap().unwrap();
    assert_eq!((o.0, o.3.as_slice()), (sa6(a6(1), 7), &b"sll2"[..]));
    assert!(one(LinkType::LinuxSll2, &sll2[..19]).is_err());
}

#[test]
fn null_and_loop_both_byte_orders() {
    let ip4 = ipv4(17, &udp(1, 2, b"n4"));
    let ip6 = ipv6(17, a6(1), a6(2), &udp(1, 2, b"n6"));
    for (af, ip, want) in [
        (2u32, &ip4, b"n4"),
        (10, &ip6, b"n6"),
        (24, &ip6, b"n6"),
        (28, &ip6, b"n6"),
        (30, &ip6, b"n6"),
    ] {
        for hdr in [af.to_le_bytes(), af.to_be_bytes()] {
            for link in [LinkType::Null, LinkType::Loop] {
                let mut f = hdr.to_vec();
                f.extend_from_slice(ip);
                assert_eq!(one(link, &f).unwrap().unwrap().3, want, "af {af} {link:?}");
            }
        }
    }
    let mut f = 7u32.to_le_bytes().to_vec();
    f.extend_from_slice(&ip4);
    assert!(one(LinkType::Null, &f).unwrap().is_none());
}

#[test]
fn raw_ip_by_version_nibble() {
    let o = one(LinkType::Raw, &ipv6(17, a6(1), a6(2), &udp(1, 2, b"r6")))
        .unwrap()
        .unwrap();
    assert_eq!(o.3, b"r6");
    assert_eq!(
        one(LinkType::Ipv4, &ipv4(17, &udp(1, 2, b"r4")))
            .unwrap()
            .unwrap()
            .3,
        b"r4"
    );
    assert!(matches!(
        one(LinkType::Raw, &[0x50; 40]).unwrap_err(),
        DecodeError::BadHeader { layer: "ip", .. }
    ));
    assert_eq!(
        one(LinkType::Raw, &[]).unwrap_err(),
        DecodeError::Truncated { layer: "ip" }
    );
}

#[test]
fn ipv6_extension_headers() {
    let mut p = ext(43, 0); // hop-by-hop -> routing
    p.extend_from_slice(&ext(60, 1)); // routing -> dst opts
    p.extend_from_slice(&ext(17, 0)); // dst opts -> udp
    p.extend_from_slice(&udp(1, 2, b"ext"));
    let o = one(LinkType::Raw, &ipv6(0, a6(1), a6(2), &p))
        .unwrap()
        .unwrap();
    assert_eq!(o.3, b"ext");
    // An extension header claiming more than there is.
    let mut q = ext(17, 0);
    q[1] = 9;
    assert!(one(LinkType::Raw, &ipv6(0, a6(1), a6(2), &q)).is_err());
    // No next header.
    assert!(
        one(LinkType::Raw, &ipv6(59, a6(1), a6(2), &[]))
            .unwrap()
            .is_none()
    );
    // Atomic fragment.
    let f = frag6(17, 0, false, 9, &udp(1, 2, b"atomic"));
    assert_eq!(
        one(LinkType::Raw, &ipv6(44, a6(1), a6(2), &f))
            .unwrap()
            .unwrap()
            .3,
        b"atomic"
    );
}

#[test]
fn ip_in_ip_reports_inner_addresses() {
    let inner4 = ipv4_full(6, C4, D4, 7, 0, &[], &tcp(5060, 5061, 1, 0x18, &[], b"SIP"));
    let inner6 = ipv6(17, a6(3), a6(4), &udp(5060, 5062, b"SIP6"));
    let outer = ipv4_full(4, A4, B4, 1, 0, &[], &inner4);
    let o = one(LinkType::Ethernet, &eth(0x0800, &outer))
        .unwrap()
        .unwrap();
    assert_eq!(
        (o.0, o.1, o.3.as_slice()),
        (sa(C4, 5060), sa(D4, 5061), &b"SIP"[..])
    );
    let o = one(LinkType::Raw, &ipv4_full(41, A4, B4, 1, 0, &[], &inner6))
        .unwrap()
        .unwrap();
    assert_eq!(o.0, sa6(a6(3), 5060));
    let o = one(LinkType::Raw, &ipv6(4, a6(1), a6(2), &inner4))
        .unwrap()
        .unwrap();
    assert_eq!(o.0, sa(C4, 5060));
    let o = one(LinkType::Raw, &ipv6(41, a6(1), a6(2), &inner6))
        .unwrap()
        .unwrap();
    assert_eq!(o.1, sa6(a6(4), 5062));
    // Version mismatch and unbounded nesting are errors.
    assert!(one(LinkType::Raw, &ipv4_full(4, A4, B4, 1, 0, &[], &inner6)).is_err());
    let mut deep = inner4.clone();
    for _ in 0..10 {
        deep = ipv4_full(4, A4, B4, 1, 0, &[], &deep);
    }
    assert!(one(LinkType::Raw, &deep).is_err());
}

/// A UDP datagram cut into IPv4 fragments of `chunk` bytes.
fn frags4(id: u16, payload: &[u8], chunk: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let u = udp(5060, 5060, payload);
    let mut out = Vec::new();
    for (i, c) in u.chunks(chunk).enumerate() {
        let off = (i * chunk / 8) as u16;
        let more = (i + 1) * chunk < u.len();
        let flags = off | if more { 0x2000 } else { 0 };
        out.push(eth(0x0800, &ipv4_full(17, A4, B4, id, flags, &[], c)));
    }
    (payload.to_vec(), out)
}

#[test]
fn ipv4_fragments_in_order_and_out_of_order() {
    let body: Vec<u8> = (0..100u8).collect();
    let (want, fr) = frags4(42, &body, 32);
    assert_eq!(fr.len(), 4);
    for order in [[0, 1, 2, 3], [3, 1, 0, 2], [2, 3, 1, 0]] {
        let mut d = dec();
        for (n, &i) in order.iter().enumerate() {
            let r = run(&mut d, LinkType::Ethernet, n as u64, 100 + i as u64, &fr[i]).unwrap();
            if n < 3 {
                assert!(r.is_none());
            } else {
                let o = r.unwrap();
                assert_eq!(o.3, want);
                let mut earlier: Vec<u64> = order[..3].iter().map(|&i| 100 + i as u64).collect();
                assert_eq!(o.5, earlier);
                earlier.clear();
            }
        }
        let s = d.stats();
        assert_eq!((s.fragments, s.reassembled, s.malformed), (4, 1, 0));
    }
}

#[test]
fn duplicate_and_overlapping_fragments() {
    let body: Vec<u8> = (0..56u8).collect();
    let (want, fr) = frags4(7, &body, 32);
    let mut d = dec();
    assert!(
        run(&mut d, LinkType::Ethernet, 0, 1, &fr[0])
            .unwrap()
            .is_none()
    );
    assert!(
        run(&mut d, LinkType::Ethernet, 0, 2, &fr[0])
            .unwrap()
            .is_none()
    );
    // An overlapping fragment (offset 16, 24 bytes of 0xee) must not rewrite
    // bytes already received.
    let ov = eth(
        0x0800,
        &ipv4_full(17, A4, B4, 7, 0x2000 | 2, &[], &[0xee; 24]),
    );
    assert!(
        run(&mut d, LinkType::Ethernet, 0, 3, &ov)
            .unwrap()
            .is_none()
    );
    let o = run(&mut d, LinkType::Ethernet, 0, 4, &fr[1])
        .unwrap()
        .unwrap();
    // UDP bytes 16..32 came first from fr[0]; 32..40 first from the overlap
    // (payload 24..32), and the final fragment does not overwrite them.
    let mut expect = want.clone();
    expect[24..32].fill(0xee);
    assert_eq!(o.3, expect);
    assert_eq!(o.5, [1, 2, 3]);
    // Two last fragments that disagree on the length.
    let mut d = dec();
    let last_a = eth(0x0800, &ipv4_full(17, A4, B4, 8, 4, &[], &[0; 8]));
    let last_b = eth(0x0800, &ipv4_full(17, A4, B4, 8, 5, &[], &[0; 8]));
    assert!(
        run(&mut d, LinkType::Ethernet, 0, 1, &last_a)
            .unwrap()
            .is_none()
    );
    assert!(run(&mut d, LinkType::Ethernet, 0, 2, &last_b).is_err());
    // Non-final fragment not a multiple of 8, and one past 64 KiB.
    assert!(
        one(
            LinkType::Ethernet,
            &eth(0x0800, &ipv4_full(17, A4, B4, 9, 0x2000, &[], &[0; 7]))
        )
        .is_err()
    );
    assert!(
        one(
            LinkType::Ethernet,
            &eth(0x0800, &ipv4_full(17, A4, B4, 9, 0x1fff, &[], &[0; 16]))
        )
        .is_err()
    );
}

#[test]
fn ipv6_fragments_with_extension_header_before() {
    let u = udp(5060, 5060, &[0xab; 100]);
    let (a, b) = u.split_at(64);
    let mut p1 = ext(44, 0); // hop-by-hop -> fragment
    p1.extend_from_slice(&frag6(17, 0, true, 0x1234, a));
    let p2 = frag6(17, 64, false, 0x1234, b);
    let mut d = dec();
    assert!(
        run(&mut d, LinkType::Raw, 0, 10, &ipv6(44, a6(1), a6(2), &p2))
            .unwrap()
            .is_none()
    );
    let o = run(&mut d, LinkType::Raw, 1, 11, &ipv6(0, a6(1), a6(2), &p1))
        .unwrap()
        .unwrap();
    assert_eq!(
        (o.0, o.3.len(), o.5.as_slice()),
        (sa6(a6(1), 5060), 100, &[10u64][..])
    );
}

#[test]
fn fragment_timeout_and_eviction() {
    let (_, fr) = frags4(1, &[1; 40], 16);
    let limits = FragLimits {
        max_bytes: 1 << 20,
        max_datagrams: 2,
        timeout_ns: 1_000,
    };
    let mut d = Decoder::new(limits);
    assert!(
        run(&mut d, LinkType::Ethernet, 0, 0, &fr[0])
            .unwrap()
            .is_none()
    );
    // Capture time moves past the timeout: the held fragment is dropped and
    // the rest can no longer complete it.
    let rest_a = run(&mut d, LinkType::Ethernet, 5_000, 1, &fr[1]).unwrap();
    let rest_b = run(&mut d, LinkType::Ethernet, 5_000, 2, &fr[2]).unwrap();
    assert!(rest_a.is_none() && rest_b.is_none());
    assert_eq!(d.stats().frag_timeouts, 1);

    // Three datagrams in flight with room for two: the oldest goes.
    let mut d = Decoder::new(limits);
    for id in 10..13u16 {
        let (_, fr) = frags4(id, &[2; 40], 16);
        assert!(
            run(&mut d, LinkType::Ethernet, u64::from(id), 0, &fr[0])
                .unwrap()
                .is_none()
        );
    }
    assert_eq!(d.stats().frag_evicted, 1);
    let (_, fr10) = frags4(10, &[2; 40], 16);
    assert!(
        run(&mut d, LinkType::Ethernet, 20, 0, &fr10[1])
            .unwrap()
            .is_none()
    );
    let (_, fr12) = frags4(12, &[2; 40], 16);
    assert!(
        run(&mut d, LinkType::Ethernet, 20, 0, &fr12[1])
            .unwrap()
            .is_none()
    );
    assert!(
        run(&mut d, LinkType::Ethernet, 20, 0, &fr12[2])
            .unwrap()
            .is_some()
    );

    // Byte limit smaller than one datagram: it is dropped, not grown.
    let mut d = Decoder::new(FragLimits {
        max_bytes: 16,
        ..limits
    });
    let (_, fr) = frags4(1, &[3; 40], 16);
    for f in &fr {
        assert!(run(&mut d, LinkType::Ethernet, 0, 0, f).unwrap().is_none());
    }
    assert!(d.stats().frag_evicted >= 1);
    assert_eq!(d.stats().reassembled, 0);
}

#[test]
fn reassembly_buffers_are_reused() {
    let mut d = dec();
    for round in 0..50u16 {
        let (want, fr) = frags4(round, &[round as u8; 200], 64);
        let mut got = None;
        for f in &fr {
            got = run(&mut d, LinkType::Ethernet, u64::from(round), 0, f).unwrap();
        }
        assert_eq!(got.unwrap().3, want);
    }
    assert_eq!(d.frags.slots.len(), 1);
}

/// Deterministic mutation of valid frames: no input may panic.
#[test]
fn mutated_frames_never_panic() {
    let body: Vec<u8> = (0..60u8).collect();
    let (_, fr) = frags4(5, &body, 16);
    let mut seeds = fr;
    seeds.push(eth(
        0x8100,
        &[
            &tag(0x8100, 9, 0x86dd)[2..],
            &ipv6(
                0,
                a6(1),
                a6(2),
                &[ext(44, 0), frag6(17, 0, true, 1, &[0; 16])].concat(),
            ),
        ]
        .concat(),
    ));
    seeds.push(ipv4_full(
        4,
        A4,
        B4,
        1,
        0,
        &[],
        &ipv4(6, &tcp(1, 2, 3, 4, &[], b"x")),
    ));
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    let links = [
        LinkType::Ethernet,
        LinkType::Raw,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
        LinkType::Null,
    ];
    let mut d = Decoder::new(FragLimits {
        max_bytes: 4096,
        max_datagrams: 4,
        timeout_ns: 100,
    });
    for i in 0..200_000u64 {
        let mut f = seeds[(next() % seeds.len() as u64) as usize].clone();
        for _ in 0..(next() % 4) {
            let n = f.len().max(1);
            let pos = (next() % n as u64) as usize;
            if let Some(b) = f.get_mut(pos) {
                *b = next() as u8;
            }
        }
        f.truncate((next() % (f.len() as u64 + 1)) as usize + 4);
        let link = links[(next() % links.len() as u64) as usize];
        let _ = d.decode(link, i, i, &f);
    }
    assert_eq!(d.stats().frames, 200_000);
}

/// `decode_plain_udp` gives what `decode` gives, or None and leaves the
/// frame to `decode`: on plain UDP over IPv4 (with options, without the
/// DF flag, total length 0) and IPv6 (payload length 0, UDP length 0),
/// and on mutated and truncated copies of them and of frames it must
/// refuse (TCP, VLAN, a fragment, a tunnel port, IPv6 TCP). Every other
/// mutated copy has its changes in the headers (the first 70 bytes), where
/// `decode_plain_udp` reads its own tests rather than `decode`'s.
#[test]
fn plain_udp_agrees_with_decode() {
    let body: Vec<u8> = (0..40u8).collect();
    let (_, fr) = frags4(7, &body, 16);
    let zeroed = |mut f: Vec<u8>, at: usize| {
        f[at..at + 2].fill(0);
        f
    };
    let mut seeds = vec![
        eth(0x0800, &ipv4(17, &udp(5060, 5080, b"hello"))),
        eth(0x0800, &ipv4(17, &udp(4000, 5002, &[0x80; 172]))),
        eth(0x86dd, &ipv6(17, a6(1), a6(2), &udp(7078, 9000, b"rtp"))),
        eth(0x0800, &ipv4(6, &tcp(1, 2, 3, 4, &[], b"x"))),
        eth(0x0800, &ipv4(17, &udp(1000, 4789, &[0; 16]))),
        eth(
            0x8100,
            &[&tag(0x8100, 9, 0x0800)[2..], &ipv4(17, &udp(1, 2, b"v"))].concat(),
        ),
        eth(
            0x0800,
            &ipv4_full(17, A4, B4, 9, 0, &[1, 1, 1, 0], &udp(3, 4, b"opt")),
        ),
        zeroed(eth(0x0800, &ipv4(17, &udp(8000, 8002, b"tso"))), 16),
        zeroed(
            eth(0x86dd, &ipv6(17, a6(3), a6(4), &udp(1, 2, b"jumbo"))),
            18,
        ),
        zeroed(
            eth(0x86dd, &ipv6(17, a6(5), a6(6), &udp(1, 2, b"len0"))),
            58,
        ),
        eth(0x86dd, &ipv6(6, a6(7), a6(8), &tcp(1, 2, 3, 4, &[], b"t"))),
    ];
    seeds.extend(fr);
    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    let (mut plain, mut d1, mut d2) = (0, dec(), dec());
    for i in 0..100_000u64 {
        let mut f = seeds[(next() % seeds.len() as u64) as usize].clone();
        if i % 2 == 1 {
            let span = if i % 4 == 1 { f.len() } else { f.len().min(70) };
            for _ in 0..(next() % 3) {
                let pos = (next() % span as u64) as usize;
                f[pos] = next() as u8;
            }
            f.truncate((next() % (f.len() as u64 + 1)) as usize + 4);
        }
        let full = run(&mut d1, LinkType::Ethernet, i, i, &f);
        match d2.decode_plain_udp(LinkType::Ethernet, i, &f) {
            Some(p) => {
                plain += 1;
                let (src, dst, l4, payload, vlan, frags) = full.unwrap().unwrap();
                let e = p.ends;
                assert_eq!((e.src(), e.dst(), p.payload), (src, dst, &payload[..]));
                assert_eq!(UdpEnds::of(src, dst), Some(e));
                assert_eq!((l4, vlan, frags.len()), (L4::Udp, None, 0));
            }
            None => {
                let _ = d2.decode(LinkType::Ethernet, i, i, &f);
            }
        }
    }
    assert!(plain > 10_000, "{plain}");
    assert_eq!(d1.stats(), d2.stats());
}

/// A seeded xorshift64 generator: the same sequence of words on every run.
fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}
