//! The emit side against real frames: every corpus frame's headers parse to
//! a `Repr` that emits the same bytes (checksums included when the captured
//! ones are right; sniffed traffic with checksum offload carries wrong
//! ones), the checksums we compute verify, and they equal the ones tshark
//! calculates.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use super::ethernet::ethertype;
use super::*;
use crate::pcapio::{LinkType, PcapReader};

/// Every capture of the corpus (`find -name '*.pcap*'`).
const CORPUS: &[&str] = &[
    "generated/baresip-b2bua-2legs-srtp-to-rtp.pcap",
    "generated/baresip-g722-1call.pcap",
    "generated/baresip-opus-stereo-1call.pcap",
    "generated/baresip-pcma-hold-resume-dtmf-rtcp.pcap",
    "generated/baresip-srtp-sdes-pcmu-1call.pcap",
    "generated/rpcap/rpcap-protocol-errors.pcap",
    "generated/rpcap/rpcap-protocol-pwauth.pcap",
    "generated/rpcap/rpcap-protocol-session.pcap",
    "generated/rpcap/rpcap-protocol-udp-datamode.pcap",
    "generated/rpcap/via-rpcapd-rclient.pcap",
    "generated/sipp-loopback-3calls-rtpecho.pcap",
    "generated/sipp-netns-ipv6-udp-1call.pcap",
    "generated/sipp-netns-tcp-2calls.pcap",
    "generated/sipp-netns-udp-2calls-vlan100.pcap",
    "generated/sipp-netns-udp-2calls.pcap",
    "ndpi/http_on_sip_port.pcap",
    "ndpi/rtcp_multiple_pkts_in_the_same_datagram.pcap",
    "ndpi/rtp.pcapng",
    "ndpi/sip_hello.pcapng",
    "sipp/dtmf_2833_0.pcap",
    "sipp/g711a.pcap",
    "sngrep/ipip.pcap",
    "sngrep/ipv6frag.pcap",
    "zeek/sip-junk-before-request.pcap",
];

fn corpus(rel: &str) -> std::path::PathBuf {
    let p = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/corpus/"
    ))
    .join(rel);
    assert!(p.exists(), "corpus file {} is missing", p.display());
    p
}

#[derive(Default, Debug)]
struct Tally {
    eth: u64,
    vlan: u64,
    v4: u64,
    v6: u64,
    udp: u64,
    tcp: u64,
    /// Headers emitted byte for byte as captured, checksum included.
    exact: u64,
    /// Headers equal but for a captured checksum that does not verify (or
    /// a UDP "no checksum").
    other_checksum: u64,
}

/// The checksums we computed for one frame: IP header ones outermost
/// first, then UDP or TCP.
#[derive(Default, Debug, PartialEq, Eq)]
struct Sums {
    ip: Vec<u16>,
    udp: Option<u16>,
    tcp: Option<u16>,
}

fn emitted(r: &impl Emit) -> Vec<u8> {
    let mut out = vec![0xaa; r.buffer_len()];
    r.emit(&mut out).unwrap();
    // Too short a buffer is an error, never a panic or a partial write.
    let mut short = vec![0u8; r.buffer_len() - 1];
    assert!(r.emit(&mut short).is_err());
    out
}

/// `out` equals `orig`, or (when the captured checksum at `at` is wrong)
/// equals it everywhere but there.
fn same_but_checksum(out: &[u8], orig: &[u8], at: usize, orig_ok: bool, t: &mut Tally) {
    if orig_ok {
        assert_eq!(out, orig);
        t.exact += 1;
    } else {
        let mut o = orig.to_vec();
        o[at..at + 2].copy_from_slice(&out[at..at + 2]);
        assert_eq!(out, &o[..]);
        t.other_checksum += 1;
    }
}

fn walk_frame(link: LinkType, f: &[u8], t: &mut Tally) -> Sums {
    let mut sums = Sums::default();
    let l3 = match link {
        LinkType::Ethernet => {
            let eth = ethernet::Packet::new_checked(f).unwrap();
            let repr = ethernet::Repr::parse(&eth).unwrap();
            assert_eq!(emitted(&repr), &f[..ethernet::HEADER_LEN]);
            t.eth += 1;
            let (mut ty, mut rest) = (repr.ethertype, eth.payload());
            while ethertype::is_vlan(ty) {
                let tag = ethernet::VlanTag::new_checked(rest).unwrap();
                let r = ethernet::VlanRepr::parse(&tag).unwrap();
                assert_eq!(emitted(&r), &rest[..ethernet::VLAN_TAG_LEN]);
                t.vlan += 1;
                (ty, rest) = (r.ethertype, tag.payload());
            }
            if ty != ethertype::IPV4 && ty != ethertype::IPV6 {
                return sums;
            }
            rest
        }
        LinkType::LinuxSll => sll::Packet::new_checked(f).unwrap().payload(),
        LinkType::LinuxSll2 => sll::Packet2::new_checked(f).unwrap().payload(),
        LinkType::Null | LinkType::Loop => null::Packet::new_checked(f).unwrap().payload(),
        LinkType::Raw | LinkType::Ipv4 | LinkType::Ipv6 => f,
    };
    walk_ip(l3, t, &mut sums);
    sums
}

fn walk_ip(buf: &[u8], t: &mut Tally, sums: &mut Sums) {
    match buf.first().map(|b| b >> 4) {
        Some(4) => {
            let p = ipv4::Packet::new_checked(buf).unwrap();
            let r = ipv4::Repr::parse(&p).unwrap();
            let out = emitted(&r);
            assert!(ipv4::Packet::new_unchecked(&out[..]).verify_checksum());
            let orig = &buf[..p.header_len()];
            same_but_checksum(&out, orig, 10, p.verify_checksum(), t);
            sums.ip
                .push(ipv4::Packet::new_unchecked(&out[..]).checksum());
            t.v4 += 1;
            if !p.is_fragment() {
                let (s, d) = (p.src_addr().into(), p.dst_addr().into());
                walk_l4(p.protocol(), s, d, p.payload(), t, sums);
            }
        }
        Some(6) => {
            let p = ipv6::Packet::new_checked(buf).unwrap();
            let r = ipv6::Repr::parse(&p).unwrap();
            assert_eq!(emitted(&r), &buf[..ipv6::HEADER_LEN]);
            t.v6 += 1;
            t.exact += 1;
            let (s, d) = (p.src_addr().into(), p.dst_addr().into());
            walk_l4(p.next_header(), s, d, p.payload(), t, sums);
        }
        _ => {}
    }
}

fn walk_l4(proto: u8, src: IpAddr, dst: IpAddr, data: &[u8], t: &mut Tally, sums: &mut Sums) {
    match proto {
        ipv4::protocol::UDP => {
            let u = udp::Packet::new_checked(data).unwrap();
            let r = udp::Repr::parse(&u).unwrap();
            let mut out = emitted(&r);
            out.extend_from_slice(u.payload());
            udp::Packet::new_unchecked(&mut out[..]).fill_checksum(&src, &dst);
            let back = udp::Packet::new_checked(&out[..]).unwrap();
            assert!(back.checksum() != 0 && back.verify_checksum(&src, &dst));
            let orig = &data[..out.len()];
            let orig_ok = u.checksum() != 0 && u.verify_checksum(&src, &dst);
            same_but_checksum(&out, orig, 6, orig_ok, t);
            sums.udp = Some(back.checksum());
            t.udp += 1;
        }
        ipv4::protocol::TCP => {
            let p = tcp::Packet::new_checked(data).unwrap();
            let r = tcp::Repr::parse(&p).unwrap();
            let mut out = emitted(&r);
            out.extend_from_slice(p.payload());
            tcp::Packet::new_unchecked(&mut out[..]).fill_checksum(&src, &dst);
            let back = tcp::Packet::new_checked(&out[..]).unwrap();
            assert!(back.verify_checksum(&src, &dst));
            same_but_checksum(&out, data, 16, p.verify_checksum(&src, &dst), t);
            sums.tcp = Some(back.checksum());
            t.tcp += 1;
        }
        ipv4::protocol::IPIP | ipv4::protocol::IPV6 => walk_ip(data, t, sums),
        _ => {}
    }
}

fn walk_file(rel: &str, t: &mut Tally) -> Vec<Sums> {
    let mut r = PcapReader::open(&corpus(rel)).unwrap();
    let mut out = Vec::new();
    while let Some(rec) = r.next_packet().unwrap() {
        out.push(walk_frame(rec.link, rec.data, t));
    }
    out
}

#[test]
fn corpus_headers_round_trip_byte_exact() {
    let mut t = Tally::default();
    for rel in CORPUS {
        walk_file(rel, &mut t);
    }
    // Every kind of header was exercised, most of them checksums and all.
    assert!(t.eth > 10_000 && t.vlan > 900, "{t:?}");
    assert!(t.v4 > 10_000 && t.v6 > 400, "{t:?}");
    assert!(t.udp > 10_000 && t.tcp > 200, "{t:?}");
    assert!(t.exact > 14_000 && t.other_checksum > 7_000, "{t:?}");
}

/// `ip.checksum_calculated`, `udp.checksum_calculated` and
/// `tcp.checksum_calculated` of every UDP/TCP frame (not ICMP errors, which
/// quote headers we do not walk), by frame number.
fn tshark_sums(rel: &str) -> HashMap<usize, Sums> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(corpus(rel))
        .args(["-o", "ip.check_checksum:TRUE"])
        .args(["-o", "udp.check_checksum:TRUE"])
        .args(["-o", "tcp.check_checksum:TRUE"])
        .args(["-Y", "(udp or tcp) and not icmp and not icmpv6"])
        .args(["-T", "fields", "-E", "aggregator=,", "-e", "frame.number"])
        .args([
            "-e",
            "ip.checksum_calculated",
            "-e",
            "udp.checksum_calculated",
        ])
        .args(["-e", "tcp.checksum_calculated"])
        .output()
        .expect("tshark must be installed (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hex = |s: &str| u16::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    let list = |s: &str| -> Vec<u16> { s.split(',').filter(|x| !x.is_empty()).map(hex).collect() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            let sums = Sums {
                ip: list(c[1]),
                udp: list(c[2]).first().copied(),
                tcp: list(c[3]).first().copied(),
            };
            (c[0].parse().unwrap(), sums)
        })
        .collect()
}

#[test]
fn computed_checksums_equal_tsharks() {
    for rel in [
        "generated/sipp-netns-udp-2calls-vlan100.pcap",
        "generated/sipp-netns-ipv6-udp-1call.pcap",
        "generated/sipp-netns-tcp-2calls.pcap",
        "generated/baresip-srtp-sdes-pcmu-1call.pcap",
        "sngrep/ipip.pcap",
    ] {
        let ours = walk_file(rel, &mut Tally::default());
        let theirs = tshark_sums(rel);
        let mut compared = 0;
        for (i, sums) in ours.iter().enumerate() {
            if sums.udp.is_none() && sums.tcp.is_none() {
                continue;
            }
            let want = theirs
                .get(&(i + 1))
                .unwrap_or_else(|| panic!("{rel} #{}", i + 1));
            assert_eq!(sums, want, "{rel} frame {}", i + 1);
            compared += 1;
        }
        assert_eq!(compared, theirs.len(), "{rel}");
        assert!(compared > 0, "{rel}");
    }
}

#[test]
fn short_buffers_read_zeros_and_take_no_writes() {
    let mut b = [0x45u8, 0, 0];
    let mut p = ipv4::Packet::new_unchecked(&mut b[..]);
    p.set_total_len(0xffff);
    p.set_dst_addr("10.0.0.1".parse().unwrap());
    p.fill_checksum();
    assert_eq!(p.checksum(), 0);
    assert_eq!(b, [0x45, 0, 0]);
    let mut u = udp::Packet::new_unchecked(&mut b[..]);
    let a: IpAddr = "10.0.0.1".parse().unwrap();
    u.fill_checksum(&a, &a);
    assert_eq!(u.len(), 0);
    assert!(udp::Packet::new_checked(&b[..]).is_err());
    assert!(tcp::Packet::new_checked(&b[..]).is_err());
}

#[test]
fn append_refuses_what_a_field_cannot_hold() {
    let mut out = vec![1, 2, 3];
    let too_long = ipv4::Repr {
        src_addr: "10.0.0.1".parse().unwrap(),
        dst_addr: "10.0.0.2".parse().unwrap(),
        protocol: ipv4::protocol::UDP,
        payload_len: 65_516,
        ttl: 64,
        tos: 0,
        ident: 0,
        dont_frag: false,
        more_frags: false,
        frag_offset: 0,
        options: &[],
    };
    assert!(too_long.append(&mut out).is_err());
    assert_eq!(out, [1, 2, 3]);
    let odd_options = ipv4::Repr {
        payload_len: 0,
        options: &[1, 1, 1],
        ..too_long
    };
    assert!(odd_options.append(&mut out).is_err());
    let fits = ipv4::Repr {
        payload_len: 65_515,
        ..too_long
    };
    assert_eq!(fits.append(&mut out), Ok(3));
    let p = ipv4::Packet::new_unchecked(&out[3..]);
    assert_eq!((p.total_len(), p.header_len()), (65_535, 20));
    assert!(p.verify_checksum());
    let udp_too_long = udp::Repr {
        src_port: 1,
        dst_port: 2,
        payload_len: 65_528,
    };
    assert!(udp_too_long.append(&mut out).is_err());
}

#[test]
fn vlan_tag_fields_round_trip() {
    let r = ethernet::VlanRepr {
        pcp: 5,
        dei: true,
        vid: 0xabc,
        ethertype: ethertype::IPV6,
    };
    let b = emitted(&r);
    assert_eq!(b, [0xba, 0xbc, 0x86, 0xdd]);
    let tag = ethernet::VlanTag::new_checked(&b[..]).unwrap();
    assert_eq!(ethernet::VlanRepr::parse(&tag), Ok(r));
}
