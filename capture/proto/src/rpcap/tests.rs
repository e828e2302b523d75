//! The codec against golden wire traces: real rpcapd 1.10.3 talking to
//! libpcap's own client (testdata/golden.txt says how they were extracted).

use super::*;

struct Line {
    file: String,
    proto: String,
    src: u16,
    dst: u16,
    bytes: Vec<u8>,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn golden() -> Vec<Line> {
    include_str!("testdata/golden.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Line {
                file: f[0].into(),
                proto: f[1].into(),
                src: f[2].parse().unwrap(),
                dst: f[3].parse().unwrap(),
                bytes: unhex(f[4]),
            }
        })
        .collect()
}

/// Every message of one TCP direction (segments concatenated), or of each
/// UDP datagram.
fn messages(file: &str, src: u16, dst: u16) -> Vec<(Header, Vec<u8>)> {
    let lines: Vec<Line> = golden()
        .into_iter()
        .filter(|l| l.file == file && l.src == src && l.dst == dst)
        .collect();
    let mut out = Vec::new();
    let mut chunks = Vec::new();
    if lines.first().is_some_and(|l| l.proto == "udp") {
        chunks.extend(lines.into_iter().map(|l| l.bytes));
    } else {
        chunks.push(lines.into_iter().flat_map(|l| l.bytes).collect());
    }
    for c in chunks {
        let mut rest: &[u8] = &c;
        while !rest.is_empty() {
            let (m, r) = parse_message(rest).unwrap();
            out.push((m.header, m.payload.to_vec()));
            rest = r;
        }
    }
    out
}

fn decoded(h: Header, p: &[u8]) -> Decoded<'_> {
    decode(&Message {
        header: h,
        payload: p,
    })
    .unwrap()
}

#[test]
fn rpcap_golden_session_replies() {
    let f = "rpcap-protocol-session";
    let first = messages(f, 2002, 43788);
    assert_eq!(first.len(), 2);
    match decoded(first[0].0, &first[0].1) {
        Decoded::AuthReply(a) => {
            assert_eq!((a.min_version, a.max_version), (0, 0));
            assert_eq!(a.server_big_endian, Some(false));
        }
        d => panic!("{d:?}"),
    }
    match decoded(first[1].0, &first[1].1) {
        Decoded::Interfaces(ifs) => {
            assert_eq!(ifs.len(), 7);
            assert_eq!(ifs[0].name, "eth0");
            let lo = ifs.iter().find(|i| i.name == "lo").expect("lo listed");
            assert!(
                lo.addresses
                    .iter()
                    .any(|a| a.addr == Some(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)))
            );
        }
        d => panic!("{d:?}"),
    }
    let ctrl = messages(f, 2002, 43792);
    let kinds: Vec<String> = ctrl
        .iter()
        .map(|(h, p)| match decoded(*h, p) {
            Decoded::AuthReply(_) => "auth".to_string(),
            Decoded::OpenReply(o) => format!("open {} {}", o.linktype, o.tzoff),
            Decoded::StartCapReply(s) => format!("start {} {}", s.bufsize, s.portdata),
            Decoded::Stats(s) => format!(
                "stats {} {} {} {}",
                s.received, s.if_dropped, s.kernel_dropped, s.server_sent
            ),
            Decoded::Other(h) => format!("other {:#x}", h.msg_type),
            d => panic!("{d:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "auth",
            "open 1 0",
            "start 262144 36979",
            "other 0x85",
            "stats 26 0 0 13"
        ]
    );
    // The TCP data channel: 13 packets numbered from 1, 56-byte frames.
    let data = messages(f, 36979, 56688);
    assert_eq!(data.len(), 13);
    for (i, (h, p)) in data.iter().enumerate() {
        assert_eq!(h.msg_type, MSG_PACKET);
        let pk = parse_packet(p).unwrap();
        assert_eq!(pk.npkt as usize, i + 1);
        assert_eq!((pk.caplen, pk.len, pk.data.len()), (56, 56, 56));
        assert_eq!(&pk.data[12..14], &[0x08, 0x00]);
        assert!(pk.ts_ns() > 1_700_000_000 * 1_000_000_000);
    }
}

#[test]
fn rpcap_golden_requests_match_our_encoder() {
    let f = "rpcap-protocol-session";
    let reqs: Vec<Vec<u8>> = golden()
        .into_iter()
        .filter(|l| l.file == f && l.dst == 2002 && l.src == 43792)
        .map(|l| l.bytes)
        .collect();
    let mut out = Vec::new();
    encode_auth(&mut out, &Credentials::Null).unwrap();
    assert_eq!(out, reqs[0]);
    out.clear();
    encode_open(&mut out, "lo").unwrap();
    assert_eq!(out, reqs[1]);
    // Start capture: re-encode from the recorded fields and filter.
    let rec = &reqs[2];
    let filter = |b: &[u8]| -> Vec<BpfInsn> {
        b.chunks_exact(8)
            .map(|c| BpfInsn {
                code: u16::from_be_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect()
    };
    let insns = filter(&rec[28..]);
    assert_eq!(insns.len(), 20);
    out.clear();
    encode_startcap(
        &mut out,
        &StartCap {
            snaplen: 65535,
            read_timeout_ms: 500,
            flags: 0,
            portdata: 0,
        },
        &insns,
    )
    .unwrap();
    assert_eq!(&out, rec);
    let upd = &reqs[3];
    out.clear();
    encode_update_filter(&mut out, &filter(&upd[16..])).unwrap();
    assert_eq!(&out, upd);
    for (i, t) in [(4, MSG_STATS_REQ), (5, MSG_CLOSE)] {
        out.clear();
        encode_simple(&mut out, t);
        assert_eq!(out, reqs[i]);
    }
    // Find-all-interfaces on the first connection.
    let fa: Vec<Vec<u8>> = golden()
        .into_iter()
        .filter(|l| l.file == f && l.src == 43788)
        .map(|l| l.bytes)
        .collect();
    out.clear();
    encode_simple(&mut out, MSG_FINDALLIF_REQ);
    assert_eq!(out, fa[1]);
    // Password authentication, byte for byte.
    let pw: Vec<Vec<u8>> = golden()
        .into_iter()
        .filter(|l| l.file == "rpcap-protocol-pwauth" && l.dst == 2003)
        .map(|l| l.bytes)
        .collect();
    out.clear();
    encode_auth(
        &mut out,
        &Credentials::Password {
            user: "rpcaptest".into(),
            password: "s3cret-Pw".into(),
        },
    )
    .unwrap();
    assert_eq!(out, pw[0]);
}

#[test]
fn rpcap_golden_udp_datagrams() {
    let f = "rpcap-protocol-udp-datamode";
    let start: Vec<Vec<u8>> = golden()
        .into_iter()
        .filter(|l| l.file == f && l.src == 53752 && l.dst == 2002)
        .map(|l| l.bytes)
        .collect();
    // flags = DGRAM, portdata = the client's UDP port.
    assert_eq!(&start[2][16..20], &[0, 2, 0xad, 0xae]);
    let data = messages(f, 51854, 44462);
    assert_eq!(data.len(), 14);
    for (i, (h, p)) in data.iter().enumerate() {
        match decoded(*h, p) {
            Decoded::Packet(pk) => assert_eq!(pk.npkt as usize, i + 1),
            d => panic!("{d:?}"),
        }
    }
}

#[test]
fn rpcap_golden_errors() {
    let f = "rpcap-protocol-errors";
    let mut errs = Vec::new();
    for (s, d) in [(2003, 41654), (2003, 41660), (2002, 55492)] {
        for (h, p) in messages(f, s, d) {
            if let Decoded::Error(e) = decoded(h, &p) {
                errs.push((e.code, e.message));
            }
        }
    }
    assert_eq!(
        errs,
        [
            (
                18,
                "Authentication failed; NULL authentication not permitted.".to_string()
            ),
            (18, "Authentication failed".to_string()),
            (
                6,
                "nosuchdev0: No such device exists (No such device exists)".to_string()
            ),
        ]
    );
    assert_eq!(error_code_name(18), "authentication failed");
}

/// Every strict prefix of every golden message is rejected without a panic,
/// and a flipped byte anywhere never panics either.
#[test]
fn rpcap_golden_truncations_and_corruptions() {
    for l in golden() {
        let b = &l.bytes;
        for n in 0..b.len() {
            if let Ok((m, _)) = parse_message(&b[..n]) {
                let _ = decode(&m);
            }
        }
        let mut c = b.clone();
        for i in 0..c.len().min(64) {
            c[i] ^= 0xff;
            if let Ok((m, _)) = parse_message(&c) {
                let _ = decode(&m);
            }
            c[i] ^= 0xff;
        }
    }
    assert_eq!(
        Header::parse(&[1, 2, 0, 0, 0, 0, 0, 0]),
        Err(ProtoError::Version(1))
    );
    assert_eq!(
        Header::parse(&[0, 7, 0, 0, 0x7f, 0, 0, 0]),
        Err(ProtoError::TooLong(0x7f00_0000))
    );
    // A count of 65535 interfaces in an empty payload: error, no huge Vec.
    assert!(parse_findalldevs(65535, &[]).is_err());
}
