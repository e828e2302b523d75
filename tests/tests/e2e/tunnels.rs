//! Tunnels: a corpus capture (two SIPp calls with RTP) wrapped frame by
//! frame, with voxtap's own emit side, in each encapsulation a mirror port
//! or a carrier delivers (MPLS with and without pseudowire control word,
//! GRE, ERSPAN I/II/III, VXLAN, Geneve, PPPoE, GTP-U, IP-in-IP) and in
//! nestings of them; the import of each file is checked against tshark on
//! the same file: Call-IDs, SIP packets per call, RTP streams with their
//! packets, loss and jitter, each call's `call.pcap` holding the wrapped
//! frames (original bytes) of the call, and the path in calls.csv.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use voxtap_e2e::{
    call_filter, corpus, import, read_csv, sdp_endpoints, tshark, tshark_call_ids, tshark_frames,
    tshark_rtp_streams,
};
use voxtap_proto::pcapio::{LinkType, PcapWriter};
use voxtap_proto::wire::emit::{
    around as wrap, eth, gre_packet as gre, ipv4_packet, ipv6_packet, mpls_stack as labels,
    udp_datagram as udp, vlan,
};
use voxtap_proto::wire::{erspan, ethernet, ethernet::ethertype, geneve, gtpu, mpls, pppoe, vxlan};
use voxtap_testkit::tshark::with_decode_as;

const SOURCE: &str = "generated/sipp-netns-udp-2calls.pcap";
const OUTER_A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const OUTER_B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

/// An outer IPv4 header (checksum filled) around `inner`.
fn ip4(proto: u8, inner: &[u8]) -> Vec<u8> {
    ipv4_packet(proto, OUTER_A, OUTER_B, inner)
}

fn ip6(next: u8, inner: &[u8]) -> Vec<u8> {
    let host = |n| Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, n);
    ipv6_packet(next, host(1), host(2), inner)
}

/// The IP packet of an Ethernet frame and its EtherType, if it carries IP.
fn ip_of(frame: &[u8]) -> Option<(u16, &[u8])> {
    let e = ethernet::Packet::new_checked(frame).ok()?;
    matches!(e.ethertype(), ethertype::IPV4 | ethertype::IPV6).then(|| (e.ethertype(), e.payload()))
}

/// IPv4 or IPv6 by EtherType, as the other protocols number them.
fn ip_proto(ty: u16) -> u8 {
    if ty == ethertype::IPV4 { 4 } else { 41 }
}

fn ppp_proto(ty: u16) -> u16 {
    if ty == ethertype::IPV4 { 0x21 } else { 0x57 }
}

/// An IP-only tunnel: frames that carry no IP (none in the source, but the
/// rule must be total) stay as they are.
fn ip_only(frame: &[u8], f: impl Fn(u16, &[u8]) -> Vec<u8>) -> Vec<u8> {
    match ip_of(frame) {
        Some((ty, ip)) => f(ty, ip),
        None => frame.to_vec(),
    }
}

/// A way to wrap one Ethernet frame (`n`: its number), and the path calls
/// must report.
struct Case {
    name: &'static str,
    path: &'static str,
    wrap: fn(&[u8], u32) -> Vec<u8>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "mpls-ip",
            path: "mpls(16)/mpls(17)",
            wrap: |f, _| ip_only(f, |_, ip| eth(ethertype::MPLS, &labels(&[16, 17], ip))),
        },
        Case {
            name: "mpls-pw-cw",
            path: "mpls(100)",
            wrap: |f, n| {
                let cw = mpls::ControlWordRepr {
                    flags: 0,
                    length: 0,
                    sequence: n as u16,
                };
                eth(ethertype::MPLS, &labels(&[100], &wrap(&cw, f)))
            },
        },
        Case {
            name: "mpls-pw-no-cw",
            path: "mpls(200)/mpls(201)",
            wrap: |f, _| eth(ethertype::MPLS, &labels(&[200, 201], f)),
        },
        Case {
            name: "gre-ip-key-seq",
            path: "gre(5)",
            wrap: |f, n| {
                ip_only(f, |ty, ip| {
                    eth(ethertype::IPV4, &ip4(47, &gre(ty, Some(5), Some(n), ip)))
                })
            },
        },
        Case {
            name: "gre-over-ipv6",
            path: "gre",
            wrap: |f, _| {
                ip_only(f, |ty, ip| {
                    eth(ethertype::IPV6, &ip6(47, &gre(ty, None, None, ip)))
                })
            },
        },
        Case {
            name: "gre-teb",
            path: "gre(9)",
            wrap: |f, _| {
                eth(
                    ethertype::IPV4,
                    &ip4(47, &gre(ethertype::TEB, Some(9), None, f)),
                )
            },
        },
        Case {
            name: "erspan-1",
            path: "erspan",
            wrap: |f, _| {
                eth(
                    ethertype::IPV4,
                    &ip4(47, &gre(ethertype::ERSPAN_2, None, None, f)),
                )
            },
        },
        Case {
            name: "erspan-2",
            path: "erspan(7)/vlan(100)",
            wrap: |f, n| {
                let tagged = tag_frame(f, 100);
                let e = erspan::Repr {
                    vlan: 100,
                    cos: 0,
                    truncated: false,
                    session_id: 7,
                    kind: erspan::Kind::TypeII {
                        encap_type: 3,
                        index: 1,
                    },
                };
                let g = gre(ethertype::ERSPAN_2, None, Some(n), &wrap(&e, &tagged));
                eth(ethertype::IPV4, &ip4(47, &g))
            },
        },
        Case {
            name: "erspan-3",
            path: "erspan(9)",
            wrap: |f, n| {
                let e = erspan::Repr {
                    vlan: 0,
                    cos: 0,
                    truncated: false,
                    session_id: 9,
                    kind: erspan::Kind::TypeIII {
                        bso: 0,
                        timestamp: n,
                        sgt: 0,
                        pdu: false,
                        frame_type: erspan::frame_type::ETHERNET,
                        hw_id: 1,
                        direction: false,
                        granularity: 3,
                        platform: Some([0x08, 0, 0, 0, 0, 0, 0, 0]),
                    },
                };
                let g = gre(ethertype::ERSPAN_3, None, Some(n), &wrap(&e, f));
                eth(ethertype::IPV4, &ip4(47, &g))
            },
        },
        Case {
            name: "vxlan",
            path: "vxlan(42)",
            wrap: |f, n| vxlan_frame(42, f, n),
        },
        Case {
            name: "geneve",
            path: "geneve(77)",
            wrap: |f, n| {
                let g = geneve::Repr {
                    oam: false,
                    critical: false,
                    protocol: ethertype::TEB,
                    vni: 77,
                    options: &[0x01, 0x02, 0x80, 0x01, 0, 0, 0, 1],
                };
                let u = udp(49152 + (n % 1000) as u16, 6081, &wrap(&g, f));
                eth(ethertype::IPV4, &ip4(17, &u))
            },
        },
        Case {
            name: "pppoe",
            path: "pppoe(4660)",
            wrap: |f, _| {
                ip_only(f, |ty, ip| {
                    let p = pppoe::Repr {
                        session_id: 0x1234,
                        protocol: ppp_proto(ty),
                        payload_len: ip.len(),
                    };
                    eth(ethertype::PPPOE_SESSION, &wrap(&p, ip))
                })
            },
        },
        Case {
            name: "gtpu",
            path: "gtpu(4096)",
            wrap: |f, n| ip_only(f, |_, ip| gtpu_frame(4096, n, ip)),
        },
        Case {
            name: "ipip",
            path: "ipip",
            wrap: |f, _| ip_only(f, |ty, ip| eth(ethertype::IPV4, &ip4(ip_proto(ty), ip))),
        },
        // VLAN in VXLAN in MPLS (the VXLAN's outer IP rides the label).
        Case {
            name: "vlan-in-vxlan-in-mpls",
            path: "mpls(16)/vxlan(5)/vlan(100)",
            wrap: |f, n| {
                let vx = vxlan_frame(5, &tag_frame(f, 100), n);
                let (_, outer_ip) = ip_of(&vx).unwrap();
                eth(ethertype::MPLS, &labels(&[16], outer_ip))
            },
        },
        // GTP-U in Geneve (IP payload) in ERSPAN II, seen on a tagged port.
        Case {
            name: "gtpu-in-geneve-in-erspan",
            path: "vlan(30)/erspan(2)/geneve(4)/gtpu(8)",
            wrap: |f, n| {
                ip_only(f, |_, ip| {
                    let gt = gtpu_frame(8, n, ip);
                    let (_, gt_ip) = ip_of(&gt).unwrap();
                    let g = geneve::Repr {
                        oam: false,
                        critical: false,
                        protocol: ethertype::IPV4,
                        vni: 4,
                        options: &[],
                    };
                    let ge = eth(
                        ethertype::IPV4,
                        &ip4(17, &udp(50000, 6081, &wrap(&g, gt_ip))),
                    );
                    let e = erspan::Repr {
                        vlan: 0,
                        cos: 0,
                        truncated: false,
                        session_id: 2,
                        kind: erspan::Kind::TypeII {
                            encap_type: 0,
                            index: 0,
                        },
                    };
                    let gr = gre(ethertype::ERSPAN_2, None, Some(n), &wrap(&e, &ge));
                    eth(ethertype::VLAN, &vlan(30, ethertype::IPV4, &ip4(47, &gr)))
                })
            },
        },
    ]
}

/// The frame with a VLAN tag after its addresses.
fn tag_frame(f: &[u8], vid: u16) -> Vec<u8> {
    let e = ethernet::Packet::new_checked(f).unwrap();
    let mut out = wrap(
        &ethernet::Repr {
            dst_addr: e.dst_addr(),
            src_addr: e.src_addr(),
            ethertype: ethertype::VLAN,
        },
        &[],
    );
    out.extend(vlan(vid, e.ethertype(), e.payload()));
    out
}

fn vxlan_frame(vni: u32, f: &[u8], n: u32) -> Vec<u8> {
    let u = udp(
        49152 + (n % 1000) as u16,
        4789,
        &wrap(&vxlan::Repr { vni }, f),
    );
    eth(ethertype::IPV4, &ip4(17, &u))
}

/// GTP-U with a sequence number and a PDU session container extension.
fn gtpu_frame(teid: u32, n: u32, ip: &[u8]) -> Vec<u8> {
    let ext = [1, 0x10, 0x05, 0x00];
    let r = gtpu::Repr {
        message_type: gtpu::MSG_GPDU,
        teid,
        sequence: Some(n as u16),
        npdu: None,
        next_extension: 0x85,
        extensions: &ext,
        payload_len: ip.len(),
    };
    eth(ethertype::IPV4, &ip4(17, &udp(2152, 2152, &wrap(&r, ip))))
}

/// Every frame of `src` wrapped by `f`, same timestamps, into `dst`; the
/// number of frames `f` wrapped (IP-only tunnels leave ARP as it is).
fn wrap_capture(src: &Path, dst: &Path, f: fn(&[u8], u32) -> Vec<u8>) -> usize {
    let mut r = voxtap_engine::pcapfile::open(src).unwrap();
    let out = std::io::BufWriter::new(std::fs::File::create(dst).unwrap());
    let mut w = PcapWriter::new(out, LinkType::Ethernet, 262_144).unwrap();
    let (mut n, mut wrapped_frames) = (0u32, 0usize);
    while let Some(rec) = r.next_packet().unwrap() {
        assert_eq!(rec.link, LinkType::Ethernet);
        let wrapped = f(rec.data, n);
        wrapped_frames += usize::from(wrapped != rec.data);
        let orig = rec.orig_len as usize - rec.data.len() + wrapped.len();
        w.write_packet(rec.ts_ns, orig as u32, &wrapped).unwrap();
        n += 1;
    }
    w.flush().unwrap();
    wrapped_frames
}

/// The import of `file` against tshark on `file`.
fn check_against_tshark(name: &str, file: &Path, path: &str) {
    let (dir, report) = import(&[file.to_path_buf()]);
    assert!(
        report.files[0].damage.is_none(),
        "{name}: {:?}",
        report.files[0].damage
    );
    assert_eq!(report.stats.malformed, 0, "{name}: malformed frames");
    let calls = read_csv(&dir.path().join("calls.csv"));
    let mut ids: Vec<String> = calls.iter().map(|c| c["call_id"].clone()).collect();
    ids.sort();
    assert_eq!(ids, tshark_call_ids(file), "{name}: Call-IDs");
    assert_eq!(ids.len(), 2, "{name}: calls");
    let eps = sdp_endpoints(file);
    for c in &calls {
        let cid = &c["call_id"];
        assert_eq!(c["outer_path"], path, "{name}: outer path of {cid}");
        let sip = tshark_frames(file, Some(&format!("sip.Call-ID == \"{cid}\"")));
        assert_eq!(
            c["sip_packets"],
            sip.len().to_string(),
            "{name}: SIP of {cid}"
        );
        // call.pcap: the wrapped frames themselves, exactly tshark's cut.
        let want = tshark_frames(file, Some(&call_filter(cid, &eps[cid])));
        let got = tshark_frames(&dir.path().join(&c["pcap"]), None);
        assert_eq!(got, want, "{name}: frames of {cid} in call.pcap");
    }
    let streams = read_csv(&dir.path().join("streams.csv"));
    let ours: HashMap<(String, String, u32), &HashMap<String, String>> = streams
        .iter()
        .map(|s| {
            let ssrc = u32::from_str_radix(s["ssrc_hex"].trim_start_matches("0x"), 16).unwrap();
            ((s["src"].clone(), s["dst"].clone(), ssrc), s)
        })
        .collect();
    let theirs = tshark_rtp_streams(file);
    assert!(
        theirs.len() >= 4,
        "{name}: tshark sees {} RTP streams",
        theirs.len()
    );
    assert_eq!(ours.len(), theirs.len(), "{name}: streams");
    for t in theirs {
        let s = ours
            .get(&(t.src.clone(), t.dst.clone(), t.ssrc))
            .unwrap_or_else(|| panic!("{name}: tshark stream {t:?} missing"));
        assert_eq!(
            s["packets"],
            t.packets.to_string(),
            "{name}: packets of {t:?}"
        );
        assert_eq!(s["lost"], t.lost.to_string(), "{name}: lost of {t:?}");
        let max_jitter: f64 = s["max_jitter_ms"].parse().unwrap();
        assert!(
            (max_jitter - t.max_jitter_ms).abs() < 0.01,
            "{name}: max jitter {max_jitter} vs tshark {}",
            t.max_jitter_ms
        );
    }
}

/// tshark really dissected the tunnel (so the comparison is not between two
/// readers that both missed it): it names the protocol in every frame.
fn tshark_sees(file: &Path, proto: &str, frames: usize) {
    let n = tshark(&[
        "-r",
        file.to_str().unwrap(),
        "-Y",
        proto,
        "-T",
        "fields",
        "-e",
        "frame.number",
    ])
    .lines()
    .count();
    assert_eq!(n, frames, "tshark finds {proto} in {n} of {frames} frames");
}

/// tshark's display filter for a kind of tunnel.
fn tshark_filter(kind: &str) -> &'static str {
    match kind {
        "mpls" => "mpls",
        "gre" => "gre",
        "erspan" => "erspan",
        "vxlan" => "vxlan",
        "geneve" => "geneve",
        "pppoe" => "pppoes",
        "gtpu" => "gtp",
        "ipip" => "ip.proto == 4 || ip.proto == 41",
        other => panic!("no filter for {other}"),
    }
}

/// What tshark must be told to read a case: an MPLS payload that does not
/// start with an IP version nibble is "Data" to tshark 4.0 unless the label
/// is declared an Ethernet pseudowire without control word (voxtap tells
/// it by looking at the bytes, see decode/encap.rs `mpls_payload`).
fn decode_as(name: &str) -> &'static [&'static str] {
    match name {
        "mpls-pw-no-cw" => &["mpls.label==201,pwethnocw"],
        _ => &[],
    }
}

fn run_case(c: &Case) {
    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join(format!("{}.pcap", c.name));
    let n = wrap_capture(&corpus(SOURCE), &file, c.wrap);
    let outer = c.path.split('/').find(|p| !p.starts_with("vlan")).unwrap();
    let kind = outer.split('(').next().unwrap();
    with_decode_as(decode_as(c.name), || {
        tshark_sees(&file, tshark_filter(kind), n);
        check_against_tshark(c.name, &file, c.path);
    });
}

macro_rules! tunnel_tests {
    ($($test:ident => $name:literal),* $(,)?) => {$(
        #[test]
        fn $test() {
            let c = cases().into_iter().find(|c| c.name == $name).unwrap();
            run_case(&c);
        }
    )*};
}

tunnel_tests! {
    mpls_ip => "mpls-ip",
    mpls_pseudowire_with_control_word => "mpls-pw-cw",
    mpls_pseudowire_without_control_word => "mpls-pw-no-cw",
    gre_ip_with_key_and_sequence => "gre-ip-key-seq",
    gre_over_ipv6 => "gre-over-ipv6",
    gre_transparent_ethernet_bridging => "gre-teb",
    erspan_type_1 => "erspan-1",
    erspan_type_2 => "erspan-2",
    erspan_type_3 => "erspan-3",
    vxlan => "vxlan",
    geneve => "geneve",
    pppoe => "pppoe",
    gtpu_with_extension_headers => "gtpu",
    ip_in_ip => "ipip",
    vlan_in_vxlan_in_mpls => "vlan-in-vxlan-in-mpls",
    gtpu_in_geneve_in_erspan => "gtpu-in-geneve-in-erspan",
}

/// Every case is run by one of the tests above.
#[test]
fn every_case_has_a_test() {
    assert_eq!(cases().len(), 16);
}
