//! Our decoder against etherparse (a dev-dependency only): the same frames
//! (every Ethernet frame of the corpus, and one frame per tunnel kind built
//! with the wire emit side) through both.
//!
//! * `plain_corpus_udp_tcp_agrees_with_etherparse`: for untunnelled
//!   Ethernet/VLAN/IPv4/IPv6 UDP and TCP, both find the same 5-tuple,
//!   outermost VLAN and payload (offset in the frame and length), and
//!   neither finds a datagram the other misses.
//! * `etherparse_sees_into_vlan_only`: which tunnels etherparse cannot see
//!   into (it stops at the outer UDP, or at an IP/EtherType it does not know).
//! * `decode_speed_against_etherparse` (ignored, a timing): ns/frame for each,
//!   run it in release:
//!   `cargo test --release -p voxtap-proto etherparse -- --ignored --nocapture`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Instant;

use etherparse::{LaxNetSlice, LaxSlicedPacket, NetSlice, SlicedPacket, TransportSlice};

use super::tunnel_tests::{
    IN_A, IN_B, OUTER_A, OUTER_B, gre_repr, gtpu, over_gre, over_udp, sip_eth, sip_ip, type2,
    type3, v6, vxlan,
};
use super::{Datagram, Decoder, FragLimits, L4, Tunnel};
use crate::pcapio::{LinkType, PcapReader};
use crate::wire::emit::{
    around as wrap, eth, ipv4_packet as ip4, ipv6_packet as ip6, mpls_stack as labels, vlan,
};
use crate::wire::{ethernet::ethertype, geneve, ipv4, mpls, pppoe};

/// What either decoder found in one frame: addresses, transport, where the
/// payload is in the frame, the outermost VLAN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Found {
    src: SocketAddr,
    dst: SocketAddr,
    tcp: bool,
    payload_off: usize,
    payload_len: usize,
    vlan: Option<u16>,
}

fn offset_in(frame: &[u8], part: &[u8]) -> usize {
    (part.as_ptr() as usize).wrapping_sub(frame.as_ptr() as usize)
}

/// Ports and payload of etherparse's UDP or TCP slice.
fn transport<'a>(t: &TransportSlice<'a>) -> Option<(u16, u16, bool, &'a [u8])> {
    match t {
        TransportSlice::Udp(u) => Some((u.source_port(), u.destination_port(), false, u.payload())),
        TransportSlice::Tcp(t) => Some((t.source_port(), t.destination_port(), true, t.payload())),
        _ => None,
    }
}

fn found(
    frame: &[u8],
    ips: (IpAddr, IpAddr),
    t: &TransportSlice<'_>,
    vlan: Option<u16>,
) -> Option<Found> {
    let (sport, dport, tcp, payload) = transport(t)?;
    Some(Found {
        src: SocketAddr::new(ips.0, sport),
        dst: SocketAddr::new(ips.1, dport),
        tcp,
        payload_off: offset_in(frame, payload),
        payload_len: payload.len(),
        vlan,
    })
}

/// etherparse's strict slicer (`SlicedPacket`).
fn strict(frame: &[u8]) -> Option<Found> {
    let p = SlicedPacket::from_ethernet(frame).ok()?;
    let ips = match p.net.as_ref()? {
        NetSlice::Ipv4(s) => (
            s.header().source_addr().into(),
            s.header().destination_addr().into(),
        ),
        NetSlice::Ipv6(s) => (
            s.header().source_addr().into(),
            s.header().destination_addr().into(),
        ),
        NetSlice::Arp(_) => return None,
    };
    let vlan = p.vlan_ids().first().map(|v| v.value());
    found(frame, ips, p.transport.as_ref()?, vlan)
}

/// etherparse's lax slicer (`LaxSlicedPacket`: reads what it can of a
/// damaged or truncated frame).
fn lax(frame: &[u8]) -> Option<Found> {
    let p = LaxSlicedPacket::from_ethernet(frame).ok()?;
    let ips = match p.net.as_ref()? {
        LaxNetSlice::Ipv4(s) => (
            s.header().source_addr().into(),
            s.header().destination_addr().into(),
        ),
        LaxNetSlice::Ipv6(s) => (
            s.header().source_addr().into(),
            s.header().destination_addr().into(),
        ),
        LaxNetSlice::Arp(_) => return None,
    };
    let vlan = p.vlan_ids().first().map(|v| v.value());
    found(frame, ips, p.transport.as_ref()?, vlan)
}

fn ours_found(frame: &[u8], g: &Datagram<'_>) -> Option<Found> {
    let tcp = match g.l4 {
        L4::Udp => false,
        L4::Tcp { .. } => true,
        L4::Sctp { .. } => return None,
    };
    Some(Found {
        src: g.src,
        dst: g.dst,
        tcp,
        payload_off: offset_in(frame, g.payload),
        payload_len: g.payload.len(),
        vlan: g.vlan,
    })
}

/// Our decoder, for an untunnelled datagram read from this frame alone
/// (VLAN tags only, not reassembled from fragments).
fn ours_plain(d: &mut Decoder, frame: &[u8]) -> Option<Found> {
    let g = d.decode(LinkType::Ethernet, 0, 0, frame).ok()??;
    let plain = g.encap.hops().iter().all(|h| h.kind == Tunnel::Vlan)
        && g.fragments.is_empty()
        && offset_in(frame, g.payload) <= frame.len();
    if !plain {
        return None;
    }
    ours_found(frame, &g)
}

/// Every pcap/pcapng file under `dir`, recursively, sorted.
fn capture_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        let name = p.to_string_lossy();
        if p.is_dir() {
            capture_files(&p, out);
        } else if name.ends_with(".pcap") || name.ends_with(".pcapng") {
            out.push(p);
        }
    }
}

/// (file, index, frame) for every Ethernet frame of the corpus.
fn corpus_frames() -> Vec<(String, usize, Vec<u8>)> {
    let mut files = Vec::new();
    capture_files(&voxtap_testkit::corpus_dir(), &mut files);
    assert!(files.len() >= 10, "corpus captures: {files:?}");
    let mut frames = Vec::new();
    for path in files {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let mut r = PcapReader::open(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut i = 0;
        while let Ok(Some(rec)) = r.next_packet() {
            if rec.link == LinkType::Ethernet {
                frames.push((name.clone(), i, rec.data.to_vec()));
            }
            i += 1;
        }
    }
    frames
}

/// Frames compared, by kind, and frames left out because we unwrapped a
/// tunnel etherparse does not know (it then sees the outer datagram).
#[derive(Debug, Default)]
struct Tally {
    udp: usize,
    tcp: usize,
    ipv6: usize,
    vlan: usize,
    tunnelled: usize,
}

impl Tally {
    fn add(&mut self, f: &Found) {
        if f.tcp {
            self.tcp += 1;
        } else {
            self.udp += 1;
        }
        self.ipv6 += usize::from(f.src.is_ipv6());
        self.vlan += usize::from(f.vlan.is_some());
    }
}

#[test]
fn plain_corpus_udp_tcp_agrees_with_etherparse() {
    let frames = corpus_frames();
    let mut d = Decoder::new(FragLimits::default());
    let mut t = Tally::default();
    for (name, i, f) in &frames {
        let ours = ours_plain(&mut d, f);
        let theirs = strict(f);
        let tunnelled = || {
            let mut d = Decoder::new(FragLimits::default());
            let g = d.decode(LinkType::Ethernet, 0, 0, f);
            let tunnel = |g: Datagram<'_>| g.encap.hops().iter().any(|h| h.kind != Tunnel::Vlan);
            g.is_ok_and(|g| g.is_some_and(tunnel))
        };
        if ours.is_none() && theirs.is_some() && tunnelled() {
            t.tunnelled += 1;
            continue;
        }
        assert_eq!(ours, theirs, "{name} frame {i}");
        if let Some(f) = ours {
            t.add(&f);
        }
    }
    println!("{} corpus Ethernet frames: {t:?} agree", frames.len());
    assert!(
        t.udp > 1000 && t.tcp > 10 && t.ipv6 > 10 && t.vlan > 10,
        "{t:?}"
    );
}

/// The SIP datagram in two IPv4 fragments (16 bytes each).
fn sip_fragments() -> Vec<Vec<u8>> {
    let datagram = sip_ip();
    let l4 = &datagram[20..];
    l4.chunks(16)
        .enumerate()
        .map(|(i, chunk)| {
            let r = ipv4::Repr {
                src_addr: IN_A,
                dst_addr: IN_B,
                protocol: 17,
                payload_len: chunk.len(),
                ttl: 64,
                tos: 0,
                ident: 7,
                dont_frag: false,
                more_frags: (i + 1) * 16 < l4.len(),
                frag_offset: (i * 16) as u32,
                options: &[],
            };
            eth(ethertype::IPV4, &wrap(&r, chunk))
        })
        .collect()
}

fn pppoe_frame() -> Vec<u8> {
    let s = pppoe::Repr {
        session_id: 0x1234,
        protocol: voxtap_common::proto::PPP_IPV4,
        payload_len: sip_ip().len(),
    };
    eth(ethertype::PPPOE_SESSION, &wrap(&s, &sip_ip()))
}

fn geneve_frame() -> Vec<u8> {
    let g = geneve::Repr {
        oam: false,
        critical: false,
        protocol: ethertype::TEB,
        vni: 7,
        options: &[0, 1, 0x80, 1, 0xde, 0xad, 0xbe, 0xef],
    };
    over_udp(6081, &wrap(&g, &sip_eth()))
}

fn mpls_pseudowire() -> Vec<u8> {
    let cw = mpls::ControlWordRepr {
        flags: 0,
        length: 0,
        sequence: 9,
    };
    eth(ethertype::MPLS, &labels(&[100], &wrap(&cw, &sip_eth())))
}

/// One SIP datagram per kind of encapsulation (IP fragments: two frames).
fn tunnel_frames() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let sip = sip_ip();
    let qinq = vlan(200, ethertype::VLAN, &vlan(300, ethertype::IPV4, &sip));
    let gre_plain = gre_repr(ethertype::IPV4, None, None);
    vec![
        (
            "vlan",
            vec![eth(ethertype::VLAN, &vlan(100, ethertype::IPV4, &sip))],
        ),
        ("qinq", vec![eth(ethertype::QINQ, &qinq)]),
        ("ipv4 fragments", sip_fragments()),
        ("mpls", vec![eth(ethertype::MPLS, &labels(&[16, 17], &sip))]),
        ("mpls ethernet pseudowire", vec![mpls_pseudowire()]),
        ("pppoe", vec![pppoe_frame()]),
        (
            "ipip",
            vec![eth(ethertype::IPV4, &ip4(4, OUTER_A, OUTER_B, &sip))],
        ),
        (
            "ipv4 in ipv6",
            vec![eth(ethertype::IPV6, &ip6(4, v6(1), v6(2), &sip))],
        ),
        ("gre ip", vec![over_gre(gre_plain, &sip)]),
        (
            "gre ethernet",
            vec![over_gre(
                gre_repr(ethertype::TEB, Some(1), None),
                &sip_eth(),
            )],
        ),
        (
            "erspan i",
            vec![over_gre(
                gre_repr(ethertype::ERSPAN_2, None, None),
                &sip_eth(),
            )],
        ),
        (
            "erspan ii",
            vec![over_gre(
                gre_repr(ethertype::ERSPAN_2, None, Some(1)),
                &wrap(&type2(7), &sip_eth()),
            )],
        ),
        (
            "erspan iii",
            vec![over_gre(
                gre_repr(ethertype::ERSPAN_3, None, Some(1)),
                &wrap(&type3(9, 0, None), &sip_eth()),
            )],
        ),
        ("vxlan", vec![over_udp(4789, &vxlan(42, &sip_eth()))]),
        ("geneve", vec![geneve_frame()]),
        (
            "gtp-u",
            vec![over_udp(2152, &gtpu(5, None, (0, &[]), 0xff, &sip))],
        ),
    ]
}

/// The inner SIP datagram: 192.168.1.1:5060 -> 192.168.1.2:5062, UDP.
fn is_inner_sip(f: &Found) -> bool {
    f.src == SocketAddr::new(IN_A.into(), 5060)
        && f.dst == SocketAddr::new(IN_B.into(), 5062)
        && !f.tcp
        && f.payload_len == sip_ip().len() - 28
}

/// Whether `decode` finds the inner SIP datagram in any frame of `frames`.
fn reaches(frames: &[Vec<u8>], mut decode: impl FnMut(&[u8]) -> Option<Found>) -> bool {
    frames
        .iter()
        .any(|f| decode(f).is_some_and(|x| is_inner_sip(&x)))
}

fn ours_any(d: &mut Decoder, frame: &[u8]) -> Option<Found> {
    let g = d.decode(LinkType::Ethernet, 0, 0, frame).ok()??;
    // A reassembled payload is not in `frame`; only its length is compared.
    ours_found(frame, &g)
}

/// (kind, ours, strict etherparse, lax etherparse) reach the inner datagram.
fn reach_table() -> Vec<(&'static str, bool, bool, bool)> {
    let mut d = Decoder::new(FragLimits::default());
    tunnel_frames()
        .into_iter()
        .map(|(kind, frames)| {
            let ours = reaches(&frames, |f| ours_any(&mut d, f));
            (kind, ours, reaches(&frames, strict), reaches(&frames, lax))
        })
        .collect()
}

#[test]
fn etherparse_sees_into_vlan_only() {
    let table = reach_table();
    for (kind, ours, s, l) in &table {
        println!("{kind:>26}: ours {ours}, SlicedPacket {s}, LaxSlicedPacket {l}");
    }
    assert!(
        table.iter().all(|t| t.1),
        "our decoder reaches every kind: {table:?}"
    );
    let seen: Vec<&str> = table.iter().filter(|t| t.2 || t.3).map(|t| t.0).collect();
    // The README's etherparse row rests on this list.
    assert_eq!(seen, ["vlan", "qinq"], "{table:?}");
}

/// Best of five: ns per frame of `f` over `rounds` passes of `frames`.
fn time_per_frame(frames: &[Vec<u8>], rounds: usize, mut f: impl FnMut(&[u8]) -> usize) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let mut sink = 0usize;
        let t = Instant::now();
        for _ in 0..rounds {
            for fr in frames {
                sink = sink.wrapping_add(f(fr));
            }
        }
        std::hint::black_box(sink);
        best = best.min(t.elapsed().as_nanos() as f64 / (rounds * frames.len()) as f64);
    }
    best
}

fn speeds(label: &str, frames: &[Vec<u8>], rounds: usize) {
    let mut d = Decoder::new(FragLimits::default());
    let mut ts = 0u64;
    let ours = time_per_frame(frames, rounds, |f| {
        ts += 20_000;
        match d.decode(LinkType::Ethernet, ts, 0, f) {
            Ok(Some(g)) => g.payload.len(),
            _ => 0,
        }
    });
    let payload_len = |p: Option<Found>| p.map_or(0, |x| x.payload_len);
    let s = time_per_frame(frames, rounds, |f| payload_len(strict(f)));
    let l = time_per_frame(frames, rounds, |f| payload_len(lax(f)));
    println!(
        "{label} ({} frames x {rounds}): ours {ours:.1} ns/frame, SlicedPacket {s:.1} ({:.2}x ours), \
         LaxSlicedPacket {l:.1} ({:.2}x ours)",
        frames.len(),
        s / ours,
        l / ours
    );
}

#[test]
#[ignore = "timing: run in release with --ignored --nocapture"]
fn decode_speed_against_etherparse() {
    let corpus: Vec<Vec<u8>> = corpus_frames().into_iter().map(|(_, _, f)| f).collect();
    let tunnels: Vec<Vec<u8>> = tunnel_frames().into_iter().flat_map(|(_, f)| f).collect();
    speeds("corpus", &corpus, 200);
    speeds("tunnel kinds", &tunnels, 20_000);
    let blind = reach_table().iter().filter(|t| !t.2 && !t.3).count();
    println!(
        "etherparse cannot reach the inner UDP in {blind} of {} tunnel kinds",
        reach_table().len()
    );
}
