//! The call model: one record per real call, nothing invented, nothing
//! merged that is not one call. Parallel SIPp calls stay apart while relayed
//! legs link (with their evidence); retransmissions stay with their call;
//! registrations, pings and other transactions get tables of their own;
//! T.38 fax is not RTP; media without SIP is reported; `sip_messages` counts
//! what tshark counts.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use voxtap_e2e::{corpus, import, import_with, read_csv, tshark, tshark_rtp_streams};
use voxtap_engine::index::{INDEX_FILE, Index, RegistrationQuery};
use voxtap_engine::pipeline::PipelineConfig;
use voxtap_engine::synth::udp_frame;
use voxtap_proto::pcapio::{LinkType, PcapWriter};

type Ep = (Ipv4Addr, u16);

fn ep(s: &str) -> Ep {
    let a: SocketAddr = s.parse().unwrap();
    match a {
        SocketAddr::V4(v) => (*v.ip(), v.port()),
        SocketAddr::V6(_) => unreachable!(),
    }
}

/// A capture built frame by frame; times in microseconds.
struct Cap {
    link: LinkType,
    frames: Vec<(u64, Vec<u8>)>,
}

const T0_NS: u64 = 1_767_225_600_000_000_000;

impl Cap {
    fn new() -> Self {
        Cap {
            link: LinkType::Ethernet,
            frames: Vec::new(),
        }
    }

    fn udp(&mut self, us: u64, src: Ep, dst: Ep, payload: &[u8]) {
        let mut f = Vec::new();
        udp_frame(&mut f, src, dst, payload);
        assert!(!f.is_empty());
        self.frames.push((T0_NS + us * 1_000, f));
    }

    fn write(mut self, path: &Path) -> PathBuf {
        self.frames.sort_by_key(|f| f.0);
        let mut w =
            PcapWriter::new(std::fs::File::create(path).unwrap(), self.link, 65535).unwrap();
        for (ts, f) in &self.frames {
            w.write_packet(*ts, f.len() as u32, f).unwrap();
        }
        w.flush().unwrap();
        path.to_path_buf()
    }
}

/// A SIP message: `start` is a request line ("INVITE sip:b@x") or a status
/// ("200 OK"); `to_tag` empty for none; `sdp` empty for no body.
#[derive(Clone)]
struct Sip<'a> {
    start: &'a str,
    call_id: &'a str,
    from: &'a str,
    to: &'a str,
    from_tag: &'a str,
    to_tag: &'a str,
    cseq: &'a str,
    extra: &'a str,
    sdp: String,
}

impl Sip<'_> {
    fn bytes(&self) -> Vec<u8> {
        let line = if self.start.starts_with(|c: char| c.is_ascii_digit()) {
            format!("SIP/2.0 {}", self.start)
        } else {
            format!("{} SIP/2.0", self.start)
        };
        let to_tag = if self.to_tag.is_empty() {
            String::new()
        } else {
            format!(";tag={}", self.to_tag)
        };
        let ctype = if self.sdp.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        format!(
            "{line}\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-{cid}-{cseq_n}\r\nFrom: <sip:{from}@example.com>;tag={ftag}\r\nTo: <sip:{to}@example.net>{to_tag}\r\nCall-ID: {cid}\r\nCSeq: {cseq}\r\n{extra}{ctype}Content-Length: {len}\r\n\r\n{sdp}",
            cid = self.call_id,
            cseq_n = self.cseq.split(' ').next().unwrap_or(""),
            from = self.from,
            to = self.to,
            ftag = self.from_tag,
            cseq = self.cseq,
            extra = self.extra,
            len = self.sdp.len(),
            sdp = self.sdp,
        )
        .into_bytes()
    }
}

fn sdp_audio(media: Ep) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {a}\r\ns=-\r\nc=IN IP4 {a}\r\nt=0 0\r\nm=audio {p} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        a = media.0,
        p = media.1
    )
}

fn sdp_t38(media: Ep) -> String {
    format!(
        "v=0\r\no=- 1 2 IN IP4 {a}\r\ns=-\r\nc=IN IP4 {a}\r\nt=0 0\r\nm=image {p} udptl t38\r\na=T38FaxVersion:0\r\na=T38MaxBitRate:14400\r\na=T38FaxRateManagement:transferredTCF\r\na=T38FaxUdpEC:t38UDPRedundancy\r\n",
        a = media.0,
        p = media.1
    )
}

/// Speech-like payload: many distinct byte values, different per packet
/// and per `voice`.
fn speech(n: u32, voice: u32) -> Vec<u8> {
    (0..160u32)
        .map(|i| ((i * 37 + n * 101 + voice * 7919) % 251) as u8)
        .collect()
}

fn rtp(seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// Writes `cap` into a temporary directory (and a copy into
/// `$VOXTAP_KEEP_CAPTURES`, when set, to look at with other tools).
fn tmp_capture(name: &str, cap: Cap) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let path = cap.write(&tmp.path().join(name));
    if let Some(keep) = std::env::var_os("VOXTAP_KEEP_CAPTURES") {
        std::fs::copy(&path, Path::new(&keep).join(name)).unwrap();
    }
    (tmp, path)
}

/// One answered call between `uac` and `uas` (SIP ports 5061/5060), set up
/// at `t_us`, with `packets` RTP packets (30 ms apart, as SIPp's g711a.pcap
/// plays them) each way, hung up
/// after them. `rtp_out(n)` builds the caller's packet n; the callee
/// echoes it 50 µs later, as SIPp's `-rtp_echo` does.
fn sipp_call(
    c: &mut Cap,
    t_us: u64,
    call_id: &str,
    (uac, uas): (Ipv4Addr, Ipv4Addr),
    (uac_media, uas_media): (u16, u16),
    packets: u32,
    rtp_out: impl Fn(u32) -> Vec<u8>,
) {
    let (a_sip, b_sip) = ((uac, 5061), (uas, 5060));
    let (a_rtp, b_rtp) = ((uac, uac_media), (uas, uas_media));
    let base = Sip {
        start: "INVITE sip:service@example.net",
        call_id,
        from: "sipp",
        to: "service",
        from_tag: "1",
        to_tag: "",
        cseq: "1 INVITE",
        extra: "",
        sdp: sdp_audio(a_rtp),
    };
    c.udp(t_us, a_sip, b_sip, &base.bytes());
    let ok = Sip {
        start: "200 OK",
        to_tag: "2",
        sdp: sdp_audio(b_rtp),
        ..base.clone()
    };
    c.udp(t_us + 1_000, b_sip, a_sip, &ok.bytes());
    let ack = Sip {
        start: "ACK sip:service@example.net",
        to_tag: "2",
        cseq: "1 ACK",
        sdp: String::new(),
        ..ok.clone()
    };
    c.udp(t_us + 2_000, a_sip, b_sip, &ack.bytes());
    let media0 = t_us + 10_000;
    for n in 0..packets {
        let t = media0 + u64::from(n) * 30_000;
        let p = rtp_out(n);
        c.udp(t, a_rtp, b_rtp, &p);
        c.udp(t + 50, b_rtp, a_rtp, &p);
    }
    let end = media0 + u64::from(packets) * 30_000;
    let bye = Sip {
        start: "BYE sip:service@example.net",
        cseq: "2 BYE",
        ..ack.clone()
    };
    c.udp(end, a_sip, b_sip, &bye.bytes());
    let bye_ok = Sip {
        start: "200 OK",
        ..bye.clone()
    };
    c.udp(end + 1_000, b_sip, a_sip, &bye_ok.bytes());
}

/// `cargo xtask demo`'s case: SIPp places 10 calls 200 ms apart between the
/// same two hosts, each playing the same audio with the same SSRC,
/// sequence numbers and timestamps, the callee echoing it from one media
/// port for all calls. Ten calls, no links (before, they were one call of
/// ten legs linked `media-ssrc`).
#[test]
fn staggered_sipp_calls_between_two_hosts_are_ten_calls() {
    let mut c = Cap::new();
    let hosts = ("10.220.0.1".parse().unwrap(), "10.220.0.2".parse().unwrap());
    for i in 0..10u32 {
        let cid = format!("{}-4242@10.220.0.1", i + 1);
        sipp_call(
            &mut c,
            u64::from(i) * 200_000,
            &cid,
            hosts,
            (17000 + 4 * i as u16, 16000),
            150,
            |n| {
                rtp(
                    0x1234 + n as u16,
                    0x5000 + n * 240,
                    0xDEE0_EE8F,
                    &speech(n, 0),
                )
            },
        );
    }
    let (_tmp, path) = tmp_capture("demo.pcap", c);
    let (dir, _) = import(std::slice::from_ref(&path));
    let calls = read_csv(&dir.path().join("calls.csv"));
    assert_eq!(calls.len(), 10);
    for c in &calls {
        assert_eq!(c["group"], c["call_id"], "{c:?}");
        assert_eq!(c["links"], "");
        assert_eq!(c["link_evidence"], "");
        assert_eq!(c["rtp_packets"], "300");
    }
    assert!(read_csv(&dir.path().join("legs.csv")).is_empty());
    assert_eq!(read_csv(&dir.path().join("streams.csv")).len(), 20);
}

/// A relay with one address carries two calls at once; both callers'
/// phones use the same SSRC and sequence numbers (as SIPp does), only the
/// audio differs. Each outer leg links to its own inner leg, by the same
/// SSRC/sequence/timestamp/payload a moment later on the far side of the
/// relay, and the link says so; the back direction, whose SSRC the relay
/// rewrites, would link by payloads alone.
#[test]
fn two_calls_through_one_relay_link_each_leg_to_its_partner() {
    let relay: Ipv4Addr = "203.0.113.9".parse().unwrap();
    let mut c = Cap::new();
    for (k, (caller, callee)) in [
        ("198.51.100.1", "192.0.2.11"),
        ("198.51.100.2", "192.0.2.12"),
    ]
    .iter()
    .enumerate()
    {
        let k32 = k as u32;
        let (caller, callee): (Ipv4Addr, Ipv4Addr) =
            (caller.parse().unwrap(), callee.parse().unwrap());
        let t0 = k as u64 * 3_000;
        let outer = format!("outer-{k}@pbx");
        let inner = format!("inner-{k}@relay");
        let (ra, rb) = ((relay, 30000 + 4 * k as u16), (relay, 30002 + 4 * k as u16));
        let (a, b) = ((caller, 4000), (callee, 5000));
        // Different numbers on each leg: only the media can link them.
        let leg = |cid: &str,
                   from: &str,
                   to: &str,
                   offer: Ep,
                   answer: Ep,
                   sip: (Ep, Ep),
                   t: u64,
                   c: &mut Cap| {
            let inv = Sip {
                start: "INVITE sip:x@example.net",
                call_id: cid,
                from,
                to,
                from_tag: "a",
                to_tag: "",
                cseq: "1 INVITE",
                extra: "",
                sdp: sdp_audio(offer),
            };
            c.udp(t, sip.0, sip.1, &inv.bytes());
            let ok = Sip {
                start: "200 OK",
                to_tag: "b",
                sdp: sdp_audio(answer),
                ..inv.clone()
            };
            c.udp(t + 40_000, sip.1, sip.0, &ok.bytes());
            let bye = Sip {
                start: "BYE sip:x@example.net",
                cseq: "2 BYE",
                sdp: String::new(),
                ..ok.clone()
            };
            c.udp(t + 3_000_000, sip.0, sip.1, &bye.bytes());
            c.udp(
                t + 3_001_000,
                sip.1,
                sip.0,
                &Sip {
                    start: "200 OK",
                    ..bye.clone()
                }
                .bytes(),
            );
        };
        leg(
            &outer,
            &format!("alice{k}"),
            "4420",
            a,
            ra,
            ((caller, 5060), (relay, 5060)),
            t0,
            &mut c,
        );
        leg(
            &inner,
            "anonymous",
            &format!("bob{k}"),
            rb,
            b,
            ((relay, 5060), (callee, 5060)),
            t0 + 2_000,
            &mut c,
        );
        for n in 0..100u32 {
            let t = t0 + 100_000 + u64::from(n) * 20_000;
            let fwd = rtp(n as u16, n * 160, 0x5150_5150, &speech(n, k32));
            c.udp(t, a, ra, &fwd);
            c.udp(t + 1_500, rb, b, &fwd);
            let back = speech(n, 100 + k32);
            c.udp(
                t + 7_000,
                b,
                rb,
                &rtp(n as u16, n * 160, 0xB000 + k32, &back),
            );
            c.udp(
                t + 8_200,
                ra,
                a,
                &rtp((n + 500) as u16, (n + 500) * 160, 0xC000 + k32, &back),
            );
        }
    }
    let (_tmp, path) = tmp_capture("relay.pcap", c);
    let (dir, _) = import(std::slice::from_ref(&path));
    let calls: HashMap<String, HashMap<String, String>> = read_csv(&dir.path().join("calls.csv"))
        .into_iter()
        .map(|c| (c["call_id"].clone(), c))
        .collect();
    assert_eq!(calls.len(), 4);
    for k in 0..2 {
        let outer = &calls[&format!("outer-{k}@pbx")];
        let inner = &calls[&format!("inner-{k}@relay")];
        assert_eq!(inner["group"], outer["call_id"], "{inner:?}");
        assert_eq!(outer["group"], outer["call_id"]);
        assert_eq!(inner["links"], format!("outer-{k}@pbx:media-ssrc"));
        assert_eq!(outer["links"], format!("inner-{k}@relay:media-ssrc"));
        let ev = &inner["link_evidence"];
        assert!(
            ev.contains("SSRC 0x51505150")
                && ev.contains("1.5 ms earlier")
                && ev.contains("from the host the other leg's stream went to (203.0.113.9:"),
            "{ev}"
        );
        assert_eq!(outer["rtp_packets"], "200");
    }
    // The index keeps the evidence for the call page.
    let idx = Index::open(&dir.path().join(INDEX_FILE)).unwrap();
    let page = idx
        .search(&voxtap_engine::index::CallQuery {
            call_id: Some("inner-1@relay".into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    let d = idx.call_detail(page.rows[0].id).unwrap().unwrap();
    assert_eq!(d.legs.len(), 1);
    assert_eq!(d.legs[0].method, "media-ssrc");
    assert!(
        d.legs[0]
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("1.5 ms earlier")
    );
}

/// Capture time moves on by unrelated, non-SIP traffic from `from_us`, one
/// datagram a second for `secs` seconds.
fn filler(c: &mut Cap, from_us: u64, secs: u64) {
    let (x, y) = (ep("10.9.9.1:40000"), ep("10.9.9.2:9"));
    for i in 0..secs {
        c.udp(from_us + i * 1_000_000, x, y, b"tick");
    }
}

/// INVITE, 100 Trying, a CANCEL retransmitted eight times (RFC 3261 Timer
/// E: 0.5 s doubling up to 4 s) that no one answers, and the 408 that ends
/// the INVITE retransmitted without an ACK until Timer H gives up; with
/// `more`, a CANCEL two minutes later (past every timer) and a new initial
/// INVITE on the same Call-ID (new From-tag and CSeq). Returns the capture
/// and its number of SIP messages.
fn cancel_capture(name: &str, more: bool) -> (tempfile::TempDir, PathBuf, u64) {
    let (a, b) = (ep("10.0.0.1:5060"), ep("10.0.0.2:5060"));
    let inv = Sip {
        start: "INVITE sip:bob@example.net",
        call_id: "cancel-8x@10.0.0.1",
        from: "alice",
        to: "bob",
        from_tag: "f1",
        to_tag: "",
        cseq: "1 INVITE",
        extra: "",
        sdp: sdp_audio(ep("10.0.0.1:4000")),
    };
    let mut c = Cap::new();
    let mut n = 0;
    let mut send = |c: &mut Cap, us: u64, from_a: bool, m: &Sip<'_>| {
        let (s, d) = if from_a { (a, b) } else { (b, a) };
        c.udp(us, s, d, &m.bytes());
        n += 1;
    };
    send(&mut c, 0, true, &inv);
    send(
        &mut c,
        20_000,
        false,
        &Sip {
            start: "100 Trying",
            sdp: String::new(),
            ..inv.clone()
        },
    );
    let cancel = Sip {
        start: "CANCEL sip:bob@example.net",
        cseq: "1 CANCEL",
        sdp: String::new(),
        ..inv.clone()
    };
    let r408 = Sip {
        start: "408 Request Timeout",
        to_tag: "t9",
        sdp: String::new(),
        ..inv.clone()
    };
    for (first_us, count, from_a, m) in [
        (2_000_000u64, 8, true, &cancel),
        (40_000_000, 6, false, &r408),
    ] {
        let (mut t, mut interval) = (first_us, 500_000u64);
        for _ in 0..count {
            send(&mut c, t, from_a, m);
            t += interval;
            interval = (interval * 2).min(4_000_000);
        }
    }
    filler(&mut c, 60_000_000, 60);
    if more {
        send(&mut c, 125_000_000, true, &cancel);
        let again = Sip {
            from_tag: "f2",
            cseq: "7 INVITE",
            ..inv.clone()
        };
        send(&mut c, 130_000_000, true, &again);
        let busy = Sip {
            start: "486 Busy Here",
            to_tag: "t10",
            sdp: String::new(),
            ..again.clone()
        };
        send(&mut c, 130_020_000, false, &busy);
        let ack = Sip {
            start: "ACK sip:bob@example.net",
            cseq: "7 ACK",
            ..busy.clone()
        };
        send(&mut c, 130_030_000, true, &ack);
    }
    let (tmp, path) = tmp_capture(name, c);
    (tmp, path, n)
}

/// The retransmissions stay with their call: one call, cancelled or no
/// answer, holding every message, and no other record of any kind.
#[test]
fn cancel_and_408_retransmissions_stay_one_call() {
    let (_tmp, path, n) = cancel_capture("cancel8.pcap", false);
    let (dir, report) = import(std::slice::from_ref(&path));
    let calls = read_csv(&dir.path().join("calls.csv"));
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let c = &calls[0];
    assert!(
        matches!(c["state"].as_str(), "cancelled" | "no_answer"),
        "{c:?}"
    );
    assert_eq!(
        (c["end_reason"].as_str(), c["status_code"].as_str()),
        ("cancel", "408")
    );
    // INVITE, 100, 8 CANCELs and 6 408s: all in the call.
    assert_eq!(n, 16);
    assert_eq!(
        (c["sip_messages"].as_str(), c["sip_packets"].as_str()),
        ("16", "16")
    );
    assert_eq!(report.stats.sip_messages, n);
    for f in [
        "registrations.csv",
        "pings.csv",
        "transactions.csv",
        "streams.csv",
    ] {
        assert!(read_csv(&dir.path().join(f)).is_empty(), "{f}");
    }
}

/// Past every timer, a CANCEL of the old transaction is a stray
/// transaction (not a call), and only a new initial INVITE makes a second
/// call on the Call-ID.
#[test]
fn only_a_new_initial_invite_starts_a_call_again() {
    let (_tmp, path, _) = cancel_capture("cancel8-more.pcap", true);
    let (dir, _) = import(std::slice::from_ref(&path));
    let calls = read_csv(&dir.path().join("calls.csv"));
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert_eq!(calls[0]["sip_messages"], "16");
    assert_eq!(
        (
            calls[1]["state"].as_str(),
            calls[1]["sip_messages"].as_str()
        ),
        ("busy", "3")
    );
    let tx = read_csv(&dir.path().join("transactions.csv"));
    assert_eq!(tx.len(), 1, "{tx:?}");
    assert_eq!(
        (tx[0]["method"].as_str(), tx[0]["status"].as_str()),
        ("CANCEL", "")
    );
}

/// A BYE retransmitted after its call closed (its 200 was seen, but lost on
/// the way back) belongs to that call: no new record.
#[test]
fn late_bye_retransmission_makes_no_record() {
    let (a, b) = (ep("10.0.0.1:5060"), ep("10.0.0.2:5060"));
    let inv = Sip {
        start: "INVITE sip:bob@example.net",
        call_id: "late-bye@x",
        from: "alice",
        to: "bob",
        from_tag: "f1",
        to_tag: "",
        cseq: "1 INVITE",
        extra: "",
        sdp: sdp_audio(ep("10.0.0.1:4000")),
    };
    let ok = Sip {
        start: "200 OK",
        to_tag: "t1",
        sdp: sdp_audio(ep("10.0.0.2:5000")),
        ..inv.clone()
    };
    let ack = Sip {
        start: "ACK sip:bob@example.net",
        cseq: "1 ACK",
        sdp: String::new(),
        ..ok.clone()
    };
    let bye = Sip {
        start: "BYE sip:alice@example.com",
        cseq: "2 BYE",
        ..ack.clone()
    };
    let notify = Sip {
        start: "NOTIFY sip:alice@example.com",
        cseq: "3 NOTIFY",
        extra: "Event: refer\r\n",
        ..ack.clone()
    };
    let mut c = Cap::new();
    c.udp(0, a, b, &inv.bytes());
    c.udp(30_000, b, a, &ok.bytes());
    c.udp(40_000, a, b, &ack.bytes());
    c.udp(1_000_000, b, a, &bye.bytes());
    c.udp(
        1_001_000,
        a,
        b,
        &Sip {
            start: "200 OK",
            ..bye.clone()
        }
        .bytes(),
    );
    // 7 s later (the call closed 5 s after its BYE): retransmissions and a
    // NOTIFY of the dialog.
    for t in [8_000_000u64, 12_000_000, 16_000_000] {
        c.udp(t, b, a, &bye.bytes());
    }
    c.udp(17_000_000, b, a, &notify.bytes());
    filler(&mut c, 2_000_000, 30);
    let (_tmp, path) = tmp_capture("late-bye.pcap", c);
    let (dir, _) = import(std::slice::from_ref(&path));
    let calls = read_csv(&dir.path().join("calls.csv"));
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0]["state"], "answered");
    assert_eq!(calls[0]["end_reason"], "bye");
    assert_eq!(calls[0]["sip_messages"], "5");
    assert!(read_csv(&dir.path().join("transactions.csv")).is_empty());
}

/// The corpus's REGISTER capture (nDPI sip_hello: REGISTER, 401, REGISTER,
/// 200, twice) is one binding registered and refreshed once after two
/// challenges, as tshark counts them, and no call.
#[test]
fn register_refreshes_are_one_binding() {
    let file = corpus("ndpi/sip_hello.pcapng");
    let count = |filter: &str| {
        tshark(&["-r", file.to_str().unwrap(), "-Y", filter])
            .lines()
            .count()
            .to_string()
    };
    let (dir, report) = import(std::slice::from_ref(&file));
    assert!(read_csv(&dir.path().join("calls.csv")).is_empty());
    let regs = read_csv(&dir.path().join("registrations.csv"));
    assert_eq!(regs.len(), 1, "{regs:?}");
    let r = &regs[0];
    assert_eq!(r["user"], "26841945");
    assert_eq!(r["contact"], "sip:26841945@10.231.142.84:5060");
    assert_eq!(r["requests"], count("sip.Method == \"REGISTER\""));
    assert_eq!(r["challenges"], count("sip.Status-Code == 401"));
    assert_eq!(r["registered"], count("sip.Status-Code == 200"));
    assert_eq!(
        (r["registered"].as_str(), r["refreshes"].as_str()),
        ("2", "1")
    );
    assert_eq!(
        (r["outcome"].as_str(), r["expires"].as_str()),
        ("registered", "600")
    );
    assert_eq!(report.registrations, 1);
    let idx = Index::open(&dir.path().join(INDEX_FILE)).unwrap();
    let rows = idx
        .registrations(&RegistrationQuery {
            text: Some("2684*".into()),
            limit: 10,
            offset: 0,
        })
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].refreshes, rows[0].challenges), (1, 2));
}

/// Three phones refresh every 5 minutes for an hour, one of them refused
/// with 403 after its first: one row per binding with its refresh count,
/// the failed one first, searchable by user and by IP.
#[test]
fn register_refreshes_of_several_phones() {
    let registrar = ep("10.0.0.1:5060");
    let mut c = Cap::new();
    for (k, user) in ["2001", "2002", "2003"].iter().enumerate() {
        let phone = ep(&format!("10.1.0.{}:5060", k + 10));
        let cid = format!("reg-{user}@phone");
        let contact = format!("Contact: <sip:{user}@{}:5060>;expires=300\r\n", phone.0);
        for i in 0..12u32 {
            let t = u64::from(i) * 300_000_000 + k as u64 * 1_000;
            let cseq = format!("{} REGISTER", i + 1);
            let reg = Sip {
                start: "REGISTER sip:example.net",
                call_id: &cid,
                from: user,
                to: user,
                from_tag: "r",
                to_tag: "",
                cseq: &cseq,
                extra: &contact,
                sdp: String::new(),
            };
            c.udp(t, phone, registrar, &reg.bytes());
            let status = if k == 2 && i > 0 {
                "403 Forbidden"
            } else {
                "200 OK"
            };
            c.udp(
                t + 5_000,
                registrar,
                phone,
                &Sip {
                    start: status,
                    to_tag: "z",
                    ..reg.clone()
                }
                .bytes(),
            );
        }
    }
    let (_tmp, path) = tmp_capture("registers.pcap", c);
    let (dir, _) = import(std::slice::from_ref(&path));
    assert!(read_csv(&dir.path().join("calls.csv")).is_empty());
    let regs = read_csv(&dir.path().join("registrations.csv"));
    assert_eq!(regs.len(), 3);
    // The refused phone first.
    assert_eq!(
        (regs[0]["user"].as_str(), regs[0]["outcome"].as_str()),
        ("2003", "failed")
    );
    assert_eq!(
        (
            regs[0]["failures"].as_str(),
            regs[0]["last_status"].as_str()
        ),
        ("11", "403")
    );
    for r in &regs[1..] {
        assert_eq!(
            (
                r["requests"].as_str(),
                r["registered"].as_str(),
                r["refreshes"].as_str()
            ),
            ("12", "12", "11")
        );
        assert_eq!(r["outcome"], "registered");
    }
    let idx = Index::open(&dir.path().join(INDEX_FILE)).unwrap();
    let by_ip = idx
        .registrations(&RegistrationQuery {
            text: Some("10.1.0.11".into()),
            limit: 10,
            offset: 0,
        })
        .unwrap();
    assert_eq!(by_ip.len(), 1);
    assert_eq!(by_ip[0].user, "2002");
    let totals = idx.signalling_totals().unwrap();
    assert_eq!(
        (totals.bindings, totals.bindings_failing, totals.failures),
        (3, 1, 11)
    );
}

/// An SBC pings another with OPTIONS every 2 s for 10 minutes (one in 50
/// unanswered): one pings.csv row, no call; `all_dialogs` keeps the old
/// behaviour (a "call" per ping).
#[test]
fn ten_minutes_of_options_are_one_ping_row() {
    let (a, b) = (ep("10.0.0.1:5060"), ep("10.0.0.2:5060"));
    let mut c = Cap::new();
    for i in 0..300u32 {
        let t = u64::from(i) * 2_000_000;
        let cid = format!("ping-{i}@sbc-a");
        let opt = Sip {
            start: "OPTIONS sip:sbc-b@10.0.0.2",
            call_id: &cid,
            from: "ping",
            to: "ping",
            from_tag: "p",
            to_tag: "",
            cseq: "1 OPTIONS",
            extra: "",
            sdp: String::new(),
        };
        c.udp(t, a, b, &opt.bytes());
        if i % 50 != 49 {
            c.udp(
                t + 3_000,
                b,
                a,
                &Sip {
                    start: "200 OK",
                    to_tag: "q",
                    ..opt.clone()
                }
                .bytes(),
            );
        }
    }
    let (_tmp, path) = tmp_capture("options.pcap", c);
    let (dir, _) = import(std::slice::from_ref(&path));
    assert!(read_csv(&dir.path().join("calls.csv")).is_empty());
    let pings = read_csv(&dir.path().join("pings.csv"));
    assert_eq!(pings.len(), 1, "{pings:?}");
    let p = &pings[0];
    assert_eq!(
        (p["src"].as_str(), p["dst"].as_str()),
        ("10.0.0.1", "10.0.0.2")
    );
    assert_eq!(
        (
            p["pings"].as_str(),
            p["responses"].as_str(),
            p["codes"].as_str()
        ),
        ("300", "294", "200:294")
    );
    // The last ping's answer could still come after the capture: it is not
    // counted lost; the five before it are.
    assert_eq!(p["unanswered"], "5");
    assert_eq!(p["rtt_avg_ms"], "3.000");
    let idx = Index::open(&dir.path().join(INDEX_FILE)).unwrap();
    assert_eq!(idx.pings(10).unwrap().len(), 1);

    let mut all = PipelineConfig::default();
    all.calls.all_dialogs = true;
    let (dir, _) = import_with(std::slice::from_ref(&path), all);
    assert_eq!(read_csv(&dir.path().join("calls.csv")).len(), 300);
}

/// A UDPTL packet (T.38 clause 9.1): sequence number, then the primary IFP
/// packet (length-prefixed), then redundancy (none here).
fn udptl(seq: u16, ifp: &[u8]) -> Vec<u8> {
    let mut p = seq.to_be_bytes().to_vec();
    p.push(ifp.len() as u8);
    p.extend_from_slice(ifp);
    // error-recovery: secondary-ifp-packets, zero of them.
    p.extend_from_slice(&[0x00, 0x00]);
    p
}

/// An answered call with audio both ways, then a re-INVITE that turns the
/// media line into T.38 on the same ports, UDPTL both ways, and BYE. The
/// fax sequence numbers start where an RTP header's version bits would
/// read 2, so a parser that tried RTP first would take them for RTP.
fn t38_capture() -> (tempfile::TempDir, PathBuf) {
    let (a_sip, b_sip) = (ep("10.30.0.1:5060"), ep("10.30.0.2:5060"));
    let (a_rtp, b_rtp) = (ep("10.30.0.1:4000"), ep("10.30.0.2:5000"));
    let inv = Sip {
        start: "INVITE sip:fax@example.net",
        call_id: "t38@10.30.0.1",
        from: "faxer",
        to: "fax",
        from_tag: "f",
        to_tag: "",
        cseq: "1 INVITE",
        extra: "",
        sdp: sdp_audio(a_rtp),
    };
    let mut c = Cap::new();
    c.udp(0, a_sip, b_sip, &inv.bytes());
    let ok = Sip {
        start: "200 OK",
        to_tag: "g",
        sdp: sdp_audio(b_rtp),
        ..inv.clone()
    };
    c.udp(50_000, b_sip, a_sip, &ok.bytes());
    let ack = Sip {
        start: "ACK sip:fax@example.net",
        cseq: "1 ACK",
        sdp: String::new(),
        ..ok.clone()
    };
    c.udp(60_000, a_sip, b_sip, &ack.bytes());
    for n in 0..100u32 {
        let t = 100_000 + u64::from(n) * 20_000;
        c.udp(
            t,
            a_rtp,
            b_rtp,
            &rtp(n as u16, n * 160, 0xA0A0_0001, &speech(n, 1)),
        );
        c.udp(
            t + 300,
            b_rtp,
            a_rtp,
            &rtp(n as u16 + 9, n * 160, 0xB0B0_0002, &speech(n, 2)),
        );
    }
    // The receiving fax detects CNG and switches to T.38.
    let reinv = Sip {
        start: "INVITE sip:faxer@example.com",
        cseq: "2 INVITE",
        sdp: sdp_t38(b_rtp),
        ..ack.clone()
    };
    c.udp(2_200_000, b_sip, a_sip, &reinv.bytes());
    let reok = Sip {
        start: "200 OK",
        sdp: sdp_t38(a_rtp),
        ..reinv.clone()
    };
    c.udp(2_250_000, a_sip, b_sip, &reok.bytes());
    let reack = Sip {
        start: "ACK sip:faxer@example.com",
        cseq: "2 ACK",
        sdp: String::new(),
        ..reinv.clone()
    };
    c.udp(2_260_000, b_sip, a_sip, &reack.bytes());
    for n in 0..300u32 {
        let t = 2_300_000 + u64::from(n) * 30_000;
        // Image data one way (long enough to pass for an RTP header),
        // indicators the other.
        let mut ifp = vec![0xc0, 0x01, 0x80, 0x00];
        ifp.extend((0..20u32).map(|i| (i * 13 + n) as u8));
        c.udp(t, a_rtp, b_rtp, &udptl(0x8000 + n as u16, &ifp));
        if n % 3 == 0 {
            c.udp(
                t + 500,
                b_rtp,
                a_rtp,
                &udptl(0x8100 + (n / 3) as u16, &[0x00, 0x30]),
            );
        }
    }
    let bye = Sip {
        start: "BYE sip:fax@example.net",
        cseq: "3 BYE",
        ..ack.clone()
    };
    c.udp(12_000_000, a_sip, b_sip, &bye.bytes());
    c.udp(
        12_001_000,
        b_sip,
        a_sip,
        &Sip {
            start: "200 OK",
            ..bye.clone()
        }
        .bytes(),
    );
    tmp_capture("t38.pcap", c)
}

/// After the re-INVITE to T.38 the packets are fax (UDPTL), never RTP:
/// streams.csv's audio rows equal tshark's RTP streams, fax.csv has a
/// stream per direction with tshark's UDPTL counts, and the call says it
/// turned into fax, and when.
#[test]
fn t38_reinvite_turns_the_media_into_fax_streams() {
    let (_tmp, path) = t38_capture();
    let (dir, _) = import(std::slice::from_ref(&path));
    let file = path.to_str().unwrap();
    let theirs = tshark_rtp_streams(&path);
    let streams = read_csv(&dir.path().join("streams.csv"));
    assert_eq!(streams.len(), theirs.len(), "{streams:?} vs {theirs:?}");
    for t in &theirs {
        let s = streams
            .iter()
            .find(|s| s["src"] == t.src && s["dst"] == t.dst)
            .unwrap_or_else(|| panic!("{t:?}"));
        assert_eq!(s["packets"], t.packets.to_string(), "{t:?}");
    }
    assert_eq!(theirs.iter().map(|t| t.packets).sum::<u64>(), 200);
    let calls = read_csv(&dir.path().join("calls.csv"));
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["rtp_packets"], "200");
    assert!(
        calls[0]["fax_at"].contains("T00:00:02.250000"),
        "{:?}",
        calls[0]["fax_at"]
    );
    // tshark dissects the rest as UDPTL (set up from the SDP), per direction.
    let udptl_frames = |src: &str| {
        tshark(&["-r", file, "-Y", &format!("t38 && ip.src == {src}")])
            .lines()
            .count()
            .to_string()
    };
    let fax = read_csv(&dir.path().join("fax.csv"));
    assert_eq!(fax.len(), 2, "{fax:?}");
    for f in &fax {
        let ip = f["src"].split(':').next().unwrap();
        assert_eq!(f["packets"], udptl_frames(ip), "{f:?}");
        assert_eq!(f["lost"], "0");
    }
    assert_eq!(fax[0]["packets"], "300");
    assert_eq!(fax[1]["packets"], "100");
    assert_eq!(fax[0]["first_seq"], "32768");
}

/// streams.csv rows as (src, dst, SSRC) -> (call_id, packets).
fn stream_rows(dir: &Path) -> BTreeMap<(String, String, u32), (String, String)> {
    read_csv(&dir.join("streams.csv"))
        .into_iter()
        .map(|s| {
            let ssrc = u32::from_str_radix(s["ssrc_hex"].trim_start_matches("0x"), 16).unwrap();
            (
                (s["src"].clone(), s["dst"].clone(), ssrc),
                (s["call_id"].clone(), s["packets"].clone()),
            )
        })
        .collect()
}

/// RTP without any SIP (SIPp's media files, nDPI's RTP capture): media-only
/// streams, one streams.csv row each with an empty call, with tshark's
/// heuristic RTP streams and packet counts; a folder with its pcap and an
/// index entry; no call.
#[test]
fn media_without_signalling_is_reported_as_tshark_sees_it() {
    for name in [
        "sipp/g711a.pcap",
        "sipp/dtmf_2833_0.pcap",
        "ndpi/rtp.pcapng",
        "generated/rpcap/via-rpcapd-rclient.pcap",
    ] {
        let file = corpus(name);
        let (dir, report) = import(std::slice::from_ref(&file));
        assert!(read_csv(&dir.path().join("calls.csv")).is_empty(), "{name}");
        let ours = stream_rows(dir.path());
        let theirs: BTreeMap<(String, String, u32), (String, String)> = tshark_rtp_streams(&file)
            .into_iter()
            .map(|t| {
                (
                    (t.src, t.dst, t.ssrc),
                    (String::new(), t.packets.to_string()),
                )
            })
            .collect();
        assert_eq!(ours, theirs, "{name}");
        assert_eq!(report.media_only_streams, theirs.len() as u64, "{name}");
        let idx = Index::open(&dir.path().join(INDEX_FILE)).unwrap();
        let indexed = idx.media_streams(100, 0).unwrap();
        assert_eq!(indexed.len(), theirs.len(), "{name}");
        for m in &indexed {
            let folder = dir.path().join(m.folder.as_deref().unwrap());
            assert!(folder.join("call.pcap").exists(), "{name}: {folder:?}");
        }
    }
}

/// A SIP capture and a media capture of the same calls (an RPCAP host's
/// media before its SIP file is added): the media alone is media-only
/// streams; imported together, every stream is its call's, as in the
/// whole capture.
#[test]
fn media_only_streams_join_their_call_when_the_sip_comes() {
    let src = corpus("generated/sipp-netns-udp-2calls.pcap");
    let tmp = tempfile::tempdir().unwrap();
    let sip = tmp.path().join("sip.pcap");
    let media = tmp.path().join("media.pcap");
    for (out, filter) in [(&sip, "sip"), (&media, "!sip")] {
        tshark(&[
            "-r",
            src.to_str().unwrap(),
            "-Y",
            filter,
            "-w",
            out.to_str().unwrap(),
            "-F",
            "pcap",
        ]);
    }
    let (alone, _) = import(std::slice::from_ref(&media));
    let alone = stream_rows(alone.path());
    let theirs = tshark_rtp_streams(&media);
    assert_eq!(alone.len(), theirs.len());
    for t in &theirs {
        assert_eq!(
            alone[&(t.src.clone(), t.dst.clone(), t.ssrc)],
            (String::new(), t.packets.to_string()),
            "{t:?}"
        );
    }
    let (whole, _) = import(std::slice::from_ref(&src));
    let (both, _) = import(&[sip, media]);
    let both = stream_rows(both.path());
    assert_eq!(both, stream_rows(whole.path()));
    assert!(both.values().all(|(cid, _)| !cid.is_empty()));
    assert_eq!(
        both.keys().collect::<Vec<_>>(),
        alone.keys().collect::<Vec<_>>()
    );
}

/// SIP over TCP with an INVITE split over two segments and a 100 and a 180
/// in one segment: `sip_messages` is tshark's count of messages,
/// `sip_packets` the frames that carried SIP bytes.
#[test]
fn sip_messages_count_messages_and_sip_packets_frames() {
    let (a, b): (SocketAddr, SocketAddr) = (
        "10.40.0.1:40000".parse().unwrap(),
        "10.40.0.2:5060".parse().unwrap(),
    );
    let inv = Sip {
        start: "INVITE sip:bob@example.net",
        call_id: "tcp-split@x",
        from: "alice",
        to: "bob",
        from_tag: "f",
        to_tag: "",
        cseq: "1 INVITE",
        extra: "",
        sdp: sdp_audio(ep("10.40.0.1:4000")),
    };
    let ringing = Sip {
        start: "180 Ringing",
        to_tag: "t",
        sdp: String::new(),
        ..inv.clone()
    };
    let trying = Sip {
        start: "100 Trying",
        sdp: String::new(),
        ..inv.clone()
    };
    let ok = Sip {
        start: "200 OK",
        sdp: sdp_audio(ep("10.40.0.2:5000")),
        ..ringing.clone()
    };
    let ack = Sip {
        start: "ACK sip:bob@example.net",
        cseq: "1 ACK",
        sdp: String::new(),
        ..ringing.clone()
    };
    let invite = inv.bytes();
    let (i1, i2) = invite.split_at(invite.len() / 2);
    let mut both = trying.bytes();
    both.extend(ringing.bytes());
    let mut c = Cap::new();
    c.link = LinkType::Raw;
    let (mut sa, mut sb) = (1u32, 1u32);
    let mut seg = |c: &mut Cap, us: u64, from_a: bool, p: &[u8]| {
        let mut f = Vec::new();
        let (src, dst, seq) = if from_a {
            (a, b, &mut sa)
        } else {
            (b, a, &mut sb)
        };
        voxtap_proto::wire::emit::build_frame(&mut f, src, dst, Some(*seq), p);
        *seq = seq.wrapping_add(p.len() as u32);
        c.frames.push((T0_NS + us * 1_000, f));
    };
    seg(&mut c, 0, true, i1);
    seg(&mut c, 1_000, true, i2);
    seg(&mut c, 10_000, false, &both);
    seg(&mut c, 500_000, false, &ok.bytes());
    seg(&mut c, 510_000, true, &ack.bytes());
    let (_tmp, path) = tmp_capture("tcp-split.pcap", c);
    let (dir, _) = import(std::slice::from_ref(&path));
    let calls = read_csv(&dir.path().join("calls.csv"));
    assert_eq!(calls.len(), 1);
    // tshark prints one CSeq per message, comma-separated within a frame.
    let cseqs = tshark(&[
        "-r",
        path.to_str().unwrap(),
        "-Y",
        "sip",
        "-T",
        "fields",
        "-e",
        "sip.CSeq",
    ]);
    let tshark_messages = cseqs.lines().map(|l| l.split(',').count()).sum::<usize>();
    assert_eq!(tshark_messages, 5);
    assert_eq!(calls[0]["sip_messages"], tshark_messages.to_string());
    // INVITE: 2 frames; 100 and 180: 1 frame each owns; 200, ACK: 1 each.
    assert_eq!(calls[0]["sip_packets"], "6");
}
