//! Reader/writer tests: hand-built files for the odd cases, and the shared
//! corpus under /work/shared/corpus for real ones.

use std::io::Cursor;
use std::path::PathBuf;
use std::process::Command;

use super::*;
use crate::decode::{Decoder, FragLimits, L4};

use voxtap_testkit::corpus;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("voxtap-pcapio-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// Packet counts from `capinfos -c -M <file>` (Wireshark 4.0), run on
/// /work/shared/corpus when these tests were written.
const CAPINFOS: &[(&str, u64)] = &[
    ("generated/baresip-b2bua-2legs-srtp-to-rtp.pcap", 1229),
    ("generated/baresip-g722-1call.pcap", 914),
    ("generated/baresip-opus-stereo-1call.pcap", 914),
    ("generated/baresip-pcma-hold-resume-dtmf-rtcp.pcap", 1131),
    ("generated/baresip-srtp-sdes-pcmu-1call.pcap", 918),
    ("generated/rpcap/rpcap-protocol-errors.pcap", 43),
    ("generated/rpcap/rpcap-protocol-pwauth.pcap", 25),
    ("generated/rpcap/rpcap-protocol-session.pcap", 66),
    ("generated/rpcap/rpcap-protocol-udp-datamode.pcap", 51),
    ("generated/rpcap/via-rpcapd-rclient.pcap", 20),
    ("generated/sipp-loopback-3calls-rtpecho.pcap", 1494),
    ("generated/sipp-netns-ipv6-udp-1call.pcap", 511),
    ("generated/sipp-netns-tcp-2calls.pcap", 1036),
    ("generated/sipp-netns-udp-2calls-vlan100.pcap", 1022),
    ("generated/sipp-netns-udp-2calls.pcap", 1022),
    ("ndpi/http_on_sip_port.pcap", 4),
    ("ndpi/rtcp_multiple_pkts_in_the_same_datagram.pcap", 5),
    ("ndpi/rtp.pcapng", 112),
    ("ndpi/sip_hello.pcapng", 30),
    ("sipp/dtmf_2833_0.pcap", 10),
    ("sipp/dtmf_2833_1.pcap", 10),
    ("sipp/dtmf_2833_2.pcap", 10),
    ("sipp/dtmf_2833_3.pcap", 10),
    ("sipp/dtmf_2833_4.pcap", 10),
    ("sipp/dtmf_2833_5.pcap", 10),
    ("sipp/dtmf_2833_6.pcap", 10),
    ("sipp/dtmf_2833_7.pcap", 10),
    ("sipp/dtmf_2833_8.pcap", 10),
    ("sipp/dtmf_2833_9.pcap", 10),
    ("sipp/dtmf_2833_pound.pcap", 10),
    ("sipp/dtmf_2833_star.pcap", 10),
    ("sipp/g711a.pcap", 236),
    ("sngrep/ipip.pcap", 4),
    ("sngrep/ipv6frag.pcap", 34),
    ("zeek/sip-junk-before-request.pcap", 2),
];

/// An owned copy of a record, for comparing across readers.
#[derive(Debug, PartialEq, Eq)]
struct Rec {
    ts_ns: u64,
    orig_len: u32,
    data: Vec<u8>,
    link: LinkType,
    offset: u64,
}

fn read_all<R: Read>(r: &mut PcapReader<R>) -> Result<Vec<Rec>, (Vec<Rec>, PcapError)> {
    let mut out = Vec::new();
    loop {
        match r.next_packet() {
            Ok(Some(p)) => out.push(Rec {
                ts_ns: p.ts_ns,
                orig_len: p.orig_len,
                data: p.data.to_vec(),
                link: p.link,
                offset: p.offset,
            }),
            Ok(None) => return Ok(out),
            Err(e) => return Err((out, e)),
        }
    }
}

#[test]
fn link_type_dlt_round_trip() {
    for lt in [
        LinkType::Null,
        LinkType::Ethernet,
        LinkType::Raw,
        LinkType::Loop,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
        LinkType::Ipv4,
        LinkType::Ipv6,
    ] {
        assert_eq!(LinkType::from_dlt(lt.dlt()), Some(lt));
    }
    assert_eq!(LinkType::from_dlt(12), Some(LinkType::Raw));
    assert_eq!(LinkType::from_dlt(14), Some(LinkType::Raw));
    assert_eq!(LinkType::from_dlt(105), None);
}

/// Every corpus capture reads to EOF, with capinfos' packet count, and every
/// packet decodes without a malformed-frame error.
#[test]
fn corpus_reads_to_eof_with_capinfos_counts() {
    for &(rel, want) in CAPINFOS {
        let mut r = PcapReader::open(&corpus(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let mut d = Decoder::new(FragLimits::default());
        let mut n = 0u64;
        loop {
            match r.next_packet() {
                Ok(Some(p)) => {
                    n += 1;
                    let _ = d.decode(p.link, p.ts_ns, p.offset, p.data);
                }
                Ok(None) => break,
                Err(e) => panic!("{rel}: {e}"),
            }
        }
        assert_eq!(n, want, "{rel}");
        assert_eq!(
            r.bytes_read(),
            std::fs::metadata(corpus(rel)).unwrap().len(),
            "{rel}"
        );
        assert_eq!(d.stats().malformed, 0, "{rel}: {:?}", d.stats());
        assert_eq!(r.skipped(), 0);
    }
}

/// The same counts, asked of capinfos itself when it is installed, so the
/// table above cannot silently go stale when the corpus changes.
#[test]
fn corpus_counts_match_live_capinfos() {
    for &(rel, want) in CAPINFOS {
        let Ok(out) = Command::new("capinfos")
            .args(["-c", "-M"])
            .arg(corpus(rel))
            .output()
        else {
            eprintln!("capinfos not installed; skipping");
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let n: u64 = text
            .lines()
            .find(|l| l.contains("Number of packets"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{rel}: capinfos said {text}"));
        assert_eq!(n, want, "{rel}");
    }
}

/// Finds where the SIP header section ends and what Content-Length says.
fn sip_lengths(msg: &[u8]) -> Option<(usize, Option<usize>)> {
    let end = msg.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(msg.get(..end)?).ok()?;
    let cl = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        let k = k.trim();
        (k.eq_ignore_ascii_case("content-length") || k == "l").then(|| v.trim().parse().ok())?
    });
    Some((end, cl))
}

fn is_sip_start(p: &[u8]) -> bool {
    let line = p.split(|&b| b == b'\r').next().unwrap_or(&[]);
    p.starts_with(b"SIP/2.0 ") || line.ends_with(b" SIP/2.0")
}

#[test]
fn ipv6frag_reassembles_complete_sip_messages() {
    let mut r = PcapReader::open(&corpus("sngrep/ipv6frag.pcap")).unwrap();
    let mut d = Decoder::new(FragLimits::default());
    let (mut msgs, mut reassembled) = (0, 0);
    while let Some(p) = r.next_packet().unwrap() {
        assert_eq!(p.link, LinkType::LinuxSll);
        let (link, ts, off) = (p.link, p.ts_ns, p.offset);
        let Some(g) = d.decode(link, ts, off, p.data).unwrap() else {
            continue;
        };
        assert!(g.src.is_ipv6() && g.l4 == L4::Udp);
        assert!(is_sip_start(g.payload), "frame at {off} is not SIP");
        let (head, cl) = sip_lengths(g.payload).expect("complete SIP header section");
        if let Some(cl) = cl {
            assert_eq!(g.payload.len(), head + cl, "frame at {off}");
        }
        if !g.fragments.is_empty() {
            reassembled += 1;
            assert!(g.payload.len() > 1400);
            assert_eq!(g.fragments.len(), 1);
            assert!(g.fragments[0] < off);
        }
        msgs += 1;
    }
    // tshark: frames 1+2 and 4+5 are fragment pairs, the other 30 are whole.
    assert_eq!((msgs, reassembled), (32, 2));
    let s = d.stats();
    assert_eq!((s.fragments, s.reassembled, s.malformed), (4, 2, 0));
}

#[test]
fn ipip_decodes_inner_tcp_sip() {
    let mut r = PcapReader::open(&corpus("sngrep/ipip.pcap")).unwrap();
    let mut d = Decoder::new(FragLimits::default());
    let mut seen = Vec::new();
    while let Some(p) = r.next_packet().unwrap() {
        let (link, ts, off) = (p.link, p.ts_ns, p.offset);
        let g = d.decode(link, ts, off, p.data).unwrap().expect("TCP");
        assert!(matches!(g.l4, L4::Tcp { .. }));
        assert!(is_sip_start(g.payload));
        seen.push((
            g.src.ip().to_string(),
            g.dst.ip().to_string(),
            g.payload.len(),
        ));
    }
    // tshark -T fields -e ip.src -e ip.dst -e tcp.len: frames 2 and 3 are
    // 10.15.196.229>10.15.194.19 outside, 10.15.193.31>10.15.197.103 inside.
    let inner = |n| ("10.15.193.31".to_string(), "10.15.197.103".to_string(), n);
    assert_eq!(seen[1], inner(621));
    assert_eq!(seen[2], inner(616));
    assert_eq!((seen[0].2, seen[3].2), (1103, 409));
}

#[test]
fn vlan100_capture_reports_vlan_100() {
    let mut r = PcapReader::open(&corpus("generated/sipp-netns-udp-2calls-vlan100.pcap")).unwrap();
    let mut d = Decoder::new(FragLimits::default());
    let mut n = 0;
    while let Some(p) = r.next_packet().unwrap() {
        let (link, ts, off) = (p.link, p.ts_ns, p.offset);
        if let Some(g) = d.decode(link, ts, off, p.data).unwrap() {
            assert_eq!(g.vlan, Some(100));
            n += 1;
        }
    }
    // tshark -Y udp: 1010, of which 14 are ICMP errors quoting a UDP header
    // (-Y 'udp && icmp'), which are not datagrams.
    assert_eq!(n, 996);
}

#[test]
fn rtp_pcapng_and_sll_rtcp_decode() {
    let mut r = PcapReader::open(&corpus("ndpi/rtp.pcapng")).unwrap();
    assert_eq!(r.format(), FileFormat::PcapNg);
    let mut d = Decoder::new(FragLimits::default());
    let (mut n, mut vlan, mut tcp) = (0, 0, 0);
    while let Some(p) = r.next_packet().unwrap() {
        let (link, ts, off) = (p.link, p.ts_ns, p.offset);
        // tshark: first packet 1332741131.936370000
        if n == 0 {
            assert_eq!(ts, 1_332_741_131_936_370_000);
        }
        n += 1;
        if let Some(g) = d.decode(link, ts, off, p.data).unwrap() {
            vlan += usize::from(g.vlan.is_some());
            tcp += usize::from(matches!(g.l4, L4::Tcp { .. }));
        }
    }
    assert_eq!(n, 112);
    assert!(vlan >= 30 && tcp > 0, "vlan {vlan} tcp {tcp}");

    let mut r =
        PcapReader::open(&corpus("ndpi/rtcp_multiple_pkts_in_the_same_datagram.pcap")).unwrap();
    assert_eq!(r.format(), FileFormat::Pcap);
    let mut udp = 0;
    while let Some(p) = r.next_packet().unwrap() {
        assert_eq!(p.link, LinkType::LinuxSll);
        let (link, ts, off) = (p.link, p.ts_ns, p.offset);
        let g = d.decode(link, ts, off, p.data).unwrap().expect("UDP");
        // RTCP version 2, packet type SR/RR.
        assert_eq!(g.payload.first().map(|b| b >> 6), Some(2));
        udp += 1;
    }
    assert_eq!(udp, 5);
}

#[test]
fn truncated_copy_reports_offset_of_cut_record() {
    for rel in ["generated/sipp-netns-udp-2calls.pcap", "ndpi/rtp.pcapng"] {
        let bytes = std::fs::read(corpus(rel)).unwrap();
        let all = read_all(&mut PcapReader::new(Cursor::new(&bytes)).unwrap()).unwrap();
        let k = all.len() / 2;
        let cut = all[k].offset as usize + 20;
        let path = tmp(&format!("cut-{}", rel.replace('/', "_")));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let mut r = PcapReader::open(&path).unwrap();
        let (got, err) = read_all(&mut r).unwrap_err();
        assert_eq!(got.len(), k, "{rel}");
        assert_eq!(got, all[..k], "{rel}");
        assert!(
            matches!(err, PcapError::Truncated { offset } if offset == all[k].offset),
            "{rel}: {err}"
        );
        assert!(r.next_packet().unwrap().is_none());
        assert!(r.next_packet().unwrap().is_none());
    }
}

#[test]
fn wrong_magic_is_bad_magic() {
    let path = tmp("bad-magic.pcap");
    std::fs::write(&path, b"GIF89a-definitely-not-a-capture-file").unwrap();
    assert!(matches!(
        PcapReader::open(&path),
        Err(PcapError::BadMagic(0x4749_4638))
    ));
    assert!(matches!(
        PcapReader::new(Cursor::new(&[0xd4u8, 0xc3][..])),
        Err(PcapError::Truncated { offset: 0 })
    ));
    let mut h = pcap_header(false, 1);
    h[20] = 147; // LINKTYPE_USER0
    assert!(matches!(
        PcapReader::new(Cursor::new(h)),
        Err(PcapError::UnsupportedLinkType(147))
    ));
}

fn pcap_header(big: bool, dlt: u32) -> Vec<u8> {
    let w = |v: u32| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut h = w(MAGIC_US).to_vec();
    h.extend_from_slice(&if big { [0, 2, 0, 4] } else { [2, 0, 4, 0] });
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&w(65535));
    h.extend_from_slice(&w(dlt));
    h
}

fn pcap_rec(big: bool, sec: u32, frac: u32, caplen: u32, orig: u32, data: &[u8]) -> Vec<u8> {
    let w = |v: u32| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    [&w(sec)[..], &w(frac), &w(caplen), &w(orig), data].concat()
}

#[test]
fn classic_big_endian_and_absurd_records() {
    let mut f = pcap_header(true, 101);
    f.extend(pcap_rec(true, 10, 500_000, 3, 60, &[0x45, 0, 0]));
    let mut r = PcapReader::new(Cursor::new(f.clone())).unwrap();
    let p = r.next_packet().unwrap().unwrap();
    assert_eq!(
        (p.ts_ns, p.orig_len, p.data, p.link, p.offset),
        (10_500_000_000, 60, &[0x45, 0, 0][..], LinkType::Raw, 24)
    );
    assert!(r.next_packet().unwrap().is_none());

    let mut g = f.clone();
    g.extend(pcap_rec(true, 0, 0, 300_000, 300_000, &[]));
    let mut r = PcapReader::new(Cursor::new(g)).unwrap();
    assert!(r.next_packet().unwrap().is_some());
    let e = r.next_packet().unwrap_err();
    assert!(
        matches!(e, PcapError::BadRecord { offset: 43, reason: m } if m.contains("256 KiB")),
        "{e}"
    );
    assert!(r.next_packet().unwrap().is_none());

    // A captured length over the original one is read as it is (Wireshark
    // does the same); past the end of the file, it is truncation.
    let mut g = f.clone();
    g.extend(pcap_rec(true, 0, 0, 4, 2, &[1, 2, 3, 4]));
    g.extend(pcap_rec(true, 0, 0, 10, 5, &[1, 2]));
    let mut r = PcapReader::new(Cursor::new(g)).unwrap();
    assert!(r.next_packet().unwrap().is_some());
    let p = r.next_packet().unwrap().unwrap();
    assert_eq!((p.orig_len, p.data), (2, &[1, 2, 3, 4][..]));
    assert!(matches!(
        r.next_packet().unwrap_err(),
        PcapError::Truncated { offset: 63 }
    ));
}

/// Sun snoop: big-endian records padded to 4 bytes.
#[test]
fn snoop_records() {
    let mut f = b"snoop\0\0\0".to_vec();
    f.extend_from_slice(&2u32.to_be_bytes());
    f.extend_from_slice(&4u32.to_be_bytes());
    let rec = |orig: u32, data: &[u8], secs: u32, usecs: u32| {
        let pad = (4 - data.len() % 4) % 4;
        let mut v = Vec::new();
        for x in [
            orig,
            data.len() as u32,
            (24 + data.len() + pad) as u32,
            0,
            secs,
            usecs,
        ] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v.extend_from_slice(data);
        v.resize(v.len() + pad, 0);
        v
    };
    f.extend(rec(60, &[1, 2, 3], 10, 5));
    f.extend(rec(4, &[9; 8], 11, 0));
    let mut r = PcapReader::new(Cursor::new(f.clone())).unwrap();
    assert_eq!(r.format(), FileFormat::Snoop);
    let p = r.next_packet().unwrap().unwrap();
    assert_eq!(
        (p.ts_ns, p.orig_len, p.data, p.link, p.offset),
        (10_000_005_000, 60, &[1, 2, 3][..], LinkType::Ethernet, 16)
    );
    let p = r.next_packet().unwrap().unwrap();
    assert_eq!((p.ts_ns, p.data.len(), p.offset), (11_000_000_000, 8, 44));
    assert!(r.next_packet().unwrap().is_none());
    let mut r = PcapReader::new(Cursor::new(f.clone())).unwrap();
    r.finish_sequential();
    assert_eq!(r.read_at(44).unwrap().data, &[9; 8]);
    // A read_at between sequential reads skips the padding of the record
    // it reads, not bytes that sequential reading has read ahead.
    let mut r = PcapReader::new(Cursor::new(f.clone())).unwrap();
    assert_eq!(r.next_packet().unwrap().unwrap().offset, 16);
    assert_eq!(r.read_at(16).unwrap().data, &[1, 2, 3]);
    let p = r.next_packet().unwrap().unwrap();
    assert_eq!((p.offset, p.data), (44, &[9u8; 8][..]));
    // Another datalink type.
    let mut g = f.clone();
    g[15] = 8;
    assert!(matches!(
        PcapReader::new(Cursor::new(g)).err(),
        Some(PcapError::UnsupportedLinkType(8))
    ));
}

/// NetMon 2.0 and 2.1 (a MAC type after each frame), frames found through
/// the frame table, timestamps from the header's SYSTEMTIME.
#[test]
fn netmon_2x_through_its_frame_table() {
    for minor in [0u8, 1] {
        let mut f = b"GMBU".to_vec();
        f.extend_from_slice(&[minor, 2, 1, 0]);
        for v in [1970u16, 1, 4, 1, 0, 0, 10, 500] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        f.resize(128, 0);
        let mut offsets = Vec::new();
        for (i, data) in [&[1u8, 2, 3][..], &[4; 6][..]].iter().enumerate() {
            offsets.push(f.len() as u32);
            f.extend_from_slice(&(1000u64 * (i as u64 + 1)).to_le_bytes());
            f.extend_from_slice(&60u32.to_le_bytes());
            f.extend_from_slice(&(data.len() as u32).to_le_bytes());
            f.extend_from_slice(data);
            if minor >= 1 {
                f.extend_from_slice(&1u16.to_le_bytes());
            }
        }
        let table = f.len() as u32;
        for o in &offsets {
            f.extend_from_slice(&o.to_le_bytes());
        }
        f[24..28].copy_from_slice(&table.to_le_bytes());
        f[28..32].copy_from_slice(&(offsets.len() as u32 * 4).to_le_bytes());
        assert!(matches!(
            PcapReader::new(Cursor::new(f.clone())).err(),
            Some(PcapError::NeedsSeek(_))
        ));
        let mut r = PcapReader::new_seekable(Cursor::new(f.clone())).unwrap();
        assert_eq!(r.format(), FileFormat::NetMon);
        let p = r.next_packet().unwrap().unwrap();
        assert_eq!(
            (p.ts_ns, p.orig_len, p.data, p.link, p.offset),
            (10_501_000_000, 60, &[1, 2, 3][..], LinkType::Ethernet, 128)
        );
        let p = r.next_packet().unwrap().unwrap();
        assert_eq!(
            (p.ts_ns, p.data, p.offset),
            (10_502_000_000, &[4; 6][..], u64::from(offsets[1]))
        );
        assert!(r.next_packet().unwrap().is_none());
        assert_eq!(r.read_at(128).unwrap().data, &[1, 2, 3]);
    }
}

/// Formats voxtap does not read are named, with editcap as the way through.
#[test]
fn other_formats_name_themselves() {
    for (head, name) in [
        (&b"RTSS\x01\x01\x00\x00"[..], "NetMon 1.x"),
        (&b"XCP\0\x01\x02"[..], "NetXray"),
        (&b"\x1f\x8b\x08\x00\x00\x00"[..], "gzip"),
    ] {
        let e = PcapReader::new(Cursor::new(head.to_vec())).err().unwrap();
        let msg = e.to_string();
        assert!(matches!(e, PcapError::OtherFormat(_)), "{msg}");
        assert!(
            msg.contains(name) && msg.contains("editcap -F pcap"),
            "{msg}"
        );
    }
    let e = PcapReader::new(Cursor::new(vec![0xde, 0xad, 0xbe, 0xef, 0]))
        .err()
        .unwrap();
    assert!(matches!(e, PcapError::BadMagic(0xdead_beef)));
    assert!(e.to_string().contains("editcap -F pcap"));
}

/// pcapng writer for tests: (type, body) blocks with the given byte order.
fn block(big: bool, ty: u32, body: &[u8]) -> Vec<u8> {
    let w = |v: u32| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut body = body.to_vec();
    while !body.len().is_multiple_of(4) {
        body.push(0);
    }
    let total = body.len() as u32 + 12;
    [&w(ty)[..], &w(total), &body, &w(total)].concat()
}

fn shb(big: bool) -> Vec<u8> {
    let mut b = if big {
        BYTE_ORDER_MAGIC.to_be_bytes()
    } else {
        BYTE_ORDER_MAGIC.to_le_bytes()
    }
    .to_vec();
    b.extend_from_slice(&if big { [0, 1, 0, 0] } else { [1, 0, 0, 0] });
    b.extend_from_slice(&[0xff; 8]);
    block(big, SHB, &b)
}

fn idb(big: bool, dlt: u16, tsresol: Option<u8>) -> Vec<u8> {
    let w16 = |v: u16| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut b = [
        &w16(dlt)[..],
        &[0, 0],
        &(if big {
            0u32.to_be_bytes()
        } else {
            0u32.to_le_bytes()
        }),
    ]
    .concat();
    if let Some(r) = tsresol {
        b.extend_from_slice(&w16(9));
        b.extend_from_slice(&w16(1));
        b.extend_from_slice(&[r, 0, 0, 0]);
        b.extend_from_slice(&[0; 4]); // opt_endofopt
    }
    block(big, IDB, &b)
}

fn epb(big: bool, ty: u32, iface: u32, units: u64, data: &[u8]) -> Vec<u8> {
    let w = |v: u32| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let id = if ty == PB {
        if big {
            [0, 0, iface as u8, 0]
        } else {
            [iface as u8, 0, 0, 0]
        }
    } else {
        w(iface)
    };
    let n = data.len() as u32;
    let b = [
        &id[..],
        &w((units >> 32) as u32),
        &w(units as u32),
        &w(n),
        &w(n + 4),
        data,
    ]
    .concat();
    block(big, ty, &b)
}

#[test]
fn pcapng_sections_byte_orders_resolutions_and_block_kinds() {
    let mut f = shb(false);
    f.extend(idb(false, 1, None)); // iface 0: Ethernet, µs
    f.extend(idb(false, 147, None)); // iface 1: unknown link type
    f.extend(idb(false, 101, Some(0x80 | 10))); // iface 2: raw, 2^-10 s
    f.extend(epb(false, EPB, 0, 1_500_000, b"eth0")); // 1.5 s
    f.extend(block(false, 4, &[1, 2, 3, 4])); // NRB
    f.extend(epb(false, EPB, 1, 1, b"skip"));
    f.extend(epb(false, EPB, 2, 1536, b"pow2")); // 1.5 s
    f.extend(block(false, 0x0000_0bad, &[0; 12])); // custom
    f.extend(block(
        false,
        SPB,
        &[5, 0, 0, 0, b's', b'p', b'b', b'!', b'!'],
    ));
    let sec2 = f.len() as u64;
    f.extend(shb(true));
    f.extend(idb(true, 113, Some(9))); // iface 0 of section 2: SLL, ns
    f.extend(epb(true, EPB, 0, 7, b"sll"));
    f.extend(epb(true, PB, 0, 8, b"old"));

    let mut r = PcapReader::new(Cursor::new(f.clone())).unwrap();
    assert_eq!(r.format(), FileFormat::PcapNg);
    let recs = read_all(&mut r).unwrap();
    let got: Vec<_> = recs
        .iter()
        .map(|p| (p.ts_ns, p.data.as_slice(), p.link))
        .collect();
    assert_eq!(
        got,
        [
            (1_500_000_000, &b"eth0"[..], LinkType::Ethernet),
            (1_500_000_000, b"pow2", LinkType::Raw),
            (0, b"spb!!", LinkType::Ethernet),
            (7, b"sll", LinkType::LinuxSll),
            (8, b"old", LinkType::LinuxSll),
        ]
    );
    assert_eq!(r.skipped(), 1);
    assert_eq!(r.bytes_read(), f.len() as u64);
    assert!(recs[3].offset > sec2);

    // read_at resolves every offset, in any order, with the right section's
    // interfaces and byte order, and sequential reading is not disturbed.
    let mut r = PcapReader::new(Cursor::new(f.clone())).unwrap();
    let first = r.next_packet().unwrap().unwrap().offset;
    let rest = read_all(&mut r).unwrap();
    for want in rest.iter().rev() {
        let p = r.read_at(want.offset).unwrap();
        assert_eq!(
            (p.ts_ns, p.data, p.link),
            (want.ts_ns, want.data.as_slice(), want.link)
        );
    }
    assert_eq!(r.read_at(first).unwrap().data, b"eth0");
    assert!(matches!(r.read_at(sec2), Err(PcapError::BadRecord { .. })));
    let skip_off = recs[0].offset + epb(false, EPB, 0, 0, b"eth0").len() as u64 + 16;
    assert!(matches!(
        r.read_at(skip_off),
        Err(PcapError::UnsupportedLinkType(147))
    ));
}

#[test]
fn pcapng_bad_blocks() {
    let base = [shb(false), idb(false, 1, None)].concat();
    // Packet for an interface that was never described.
    let f = [base.clone(), epb(false, EPB, 3, 0, b"x")].concat();
    let (got, e) = read_all(&mut PcapReader::new(Cursor::new(f)).unwrap()).unwrap_err();
    assert!(
        got.is_empty() && matches!(e, PcapError::BadRecord { .. }),
        "{e}"
    );
    // Trailer length disagreeing with the header.
    let mut b = epb(false, EPB, 0, 0, b"abcd");
    let n = b.len();
    b[n - 4] ^= 4;
    let (_, e) = read_all(&mut PcapReader::new(Cursor::new([base.clone(), b].concat())).unwrap())
        .unwrap_err();
    assert!(matches!(e, PcapError::BadRecord { .. }), "{e}");
    // Options overrunning the IDB.
    let bad_idb = block(false, IDB, &[1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 200, 0]);
    let (_, e) =
        read_all(&mut PcapReader::new(Cursor::new([shb(false), bad_idb].concat())).unwrap())
            .unwrap_err();
    assert!(matches!(e, PcapError::BadRecord { .. }), "{e}");
    // Tiny block length.
    let f = [base, vec![6, 0, 0, 0, 4, 0, 0, 0]].concat();
    let (_, e) = read_all(&mut PcapReader::new(Cursor::new(f)).unwrap()).unwrap_err();
    assert!(matches!(e, PcapError::BadRecord { .. }), "{e}");
}

#[test]
fn timestamp_resolutions() {
    assert_eq!(ts_to_ns(5, TsRes::Pow10(0), 0), 5_000_000_000);
    assert_eq!(ts_to_ns(5, TsRes::Pow10(12), 0), 0);
    assert_eq!(ts_to_ns(5_000, TsRes::Pow10(12), 0), 5);
    assert_eq!(ts_to_ns(u64::MAX, TsRes::Pow10(0), 0), u64::MAX);
    assert_eq!(ts_to_ns(1, TsRes::Pow10(127), 0), 0);
    assert_eq!(ts_to_ns(1 << 20, TsRes::Pow2(20), 0), 1_000_000_000);
    assert_eq!(ts_to_ns(1, TsRes::Pow2(127), 0), 0);
    assert_eq!(ts_to_ns(0, TsRes::Pow10(6), 2), 2_000_000_000);
    assert_eq!(ts_to_ns(0, TsRes::Pow10(6), -2), 0);
}

#[test]
fn writer_round_trip_and_tshark_reads_it() {
    let src = corpus("generated/sipp-netns-udp-2calls-vlan100.pcap");
    let orig = read_all(&mut PcapReader::open(&src).unwrap()).unwrap();
    let path = tmp("roundtrip.pcap");
    let mut w = PcapWriter::new(
        std::fs::File::create(&path).unwrap(),
        LinkType::Ethernet,
        262_144,
    )
    .unwrap();
    for p in &orig {
        w.write_packet(p.ts_ns, p.orig_len, &p.data).unwrap();
    }
    w.flush().unwrap();
    drop(w.into_inner());

    let mut r = PcapReader::open(&path).unwrap();
    let back = read_all(&mut r).unwrap();
    assert_eq!(back.len(), orig.len());
    for (a, b) in orig.iter().zip(&back) {
        assert_eq!(
            (a.ts_ns, a.orig_len, &a.data, a.link),
            (b.ts_ns, b.orig_len, &b.data, b.link)
        );
    }
    // read_at on a classic file.
    let last = back.last().unwrap();
    assert_eq!(r.read_at(last.offset).unwrap().data, last.data.as_slice());

    match Command::new("tshark").arg("-r").arg(&path).output() {
        Ok(out) => {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let lines = String::from_utf8_lossy(&out.stdout).lines().count();
            assert_eq!(lines, orig.len());
        }
        Err(_) => eprintln!("tshark not installed; skipping"),
    }
}

/// Truncating a file at every length in a header-heavy region and random
/// byte flips must produce errors, never panics.
#[test]
fn mangled_files_never_panic() {
    let bytes = std::fs::read(corpus("ndpi/sip_hello.pcapng")).unwrap();
    let small = std::fs::read(corpus("zeek/sip-junk-before-request.pcap")).unwrap();
    for src in [&bytes, &small] {
        for cut in 0..src.len().min(600) {
            if let Ok(mut r) = PcapReader::new(Cursor::new(&src[..cut])) {
                let _ = read_all(&mut r);
            }
        }
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..2000 {
            let mut m = src.clone();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x % m.len() as u64) as usize;
                m[i] = (x >> 32) as u8;
            }
            if let Ok(mut r) = PcapReader::new(Cursor::new(&m)) {
                let recs = read_all(&mut r).unwrap_or_else(|(v, _)| v);
                for p in recs.iter().take(5) {
                    let _ = r.read_at(p.offset);
                }
            }
        }
    }
}

/// A reader that gives at most `step` bytes a read (a pipe, a slow disk):
/// sequential reading must gather records across reads.
struct Trickle<R> {
    inner: R,
    step: usize,
}

impl<R: Read> Read for Trickle<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.step);
        self.inner.read(&mut buf[..n])
    }
}

impl<R: Seek> Seek for Trickle<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

/// Records of 1 to 1,600 bytes, far more than is read ahead at once, in a
/// classic file and in pcapng (a section with an interface, and blocks of
/// kinds skipped between the packets).
fn many_records(ng: bool) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut f = if ng {
        [shb(false), idb(false, 1, None)].concat()
    } else {
        pcap_header(false, 1)
    };
    let mut datas = Vec::new();
    let mut x: u32 = 7;
    while f.len() < 3 * READ_AHEAD + 1000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let len = 1 + (x >> 8) as usize % 1600;
        let data: Vec<u8> = (0..len).map(|i| (i as u32 ^ x) as u8).collect();
        let n = datas.len() as u32;
        if ng {
            f.extend(epb(false, EPB, 0, u64::from(n), &data));
            if n.is_multiple_of(5) {
                f.extend(block(false, 4, b"name resolution"));
            }
        } else {
            let len = data.len() as u32;
            f.extend(pcap_rec(false, n, 0, len, len, &data));
        }
        datas.push(data);
    }
    (f, datas)
}

/// Reading ahead changes nothing a reader returns: every record of a file
/// several read-aheads long, read whole or a few bytes a read, and `read_at`
/// between sequential reads returns the record asked for while sequential
/// reading goes on where it was.
#[test]
fn reading_ahead_returns_every_record_and_read_at_leaves_it_in_place() {
    for ng in [false, true] {
        let (f, datas) = many_records(ng);
        for step in [usize::MAX, 7, 4093] {
            let trickle = Trickle {
                inner: Cursor::new(f.clone()),
                step,
            };
            let recs = read_all(&mut PcapReader::new_seekable(trickle).unwrap()).unwrap();
            let got: Vec<&Vec<u8>> = recs.iter().map(|r| &r.data).collect();
            assert_eq!(
                got,
                datas.iter().collect::<Vec<_>>(),
                "ng {ng}, step {step}"
            );
        }
        let recs = read_all(&mut PcapReader::new(Cursor::new(f.clone())).unwrap()).unwrap();
        let mut r = PcapReader::new_seekable(Cursor::new(f.clone())).unwrap();
        for (i, want) in recs.iter().enumerate() {
            let p = r.next_packet().unwrap().unwrap();
            assert_eq!((p.offset, p.data), (want.offset, want.data.as_slice()));
            if i % 7 == 3 {
                let back = &recs[i / 2];
                let q = r.read_at(back.offset).unwrap();
                assert_eq!(q.data, back.data.as_slice(), "read_at after record {i}");
            }
        }
        assert!(r.next_packet().unwrap().is_none());
        assert_eq!(r.bytes_read(), f.len() as u64);
    }
}
