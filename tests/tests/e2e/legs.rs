//! Linking the legs of one logical call (B2BUA, SBC, media relay) and media
//! latching behind NAT.

use std::net::Ipv4Addr;
use std::path::Path;

use voxtap_e2e::{corpus, import, read_csv};
use voxtap_engine::synth::udp_frame;
use voxtap_proto::pcapio::{LinkType, PcapWriter};

#[test]
fn b2bua_two_call_ids_form_one_call_linked_by_signalling() {
    let (dir, _) = import(&[corpus("generated/baresip-b2bua-2legs-srtp-to-rtp.pcap")]);
    let calls = read_csv(&dir.path().join("calls.csv"));
    assert_eq!(calls.len(), 2);
    // Both legs name the first leg's Call-ID as their logical call.
    assert!(
        calls.iter().all(|c| c["group"] == "da0880d79951761b"),
        "{calls:?}"
    );
    let leg2 = calls
        .iter()
        .find(|c| c["call_id"] == "9a12eab4522a94c3")
        .unwrap();
    assert_eq!(leg2["links"], "da0880d79951761b:signalling");
    let leg1 = calls
        .iter()
        .find(|c| c["call_id"] == "da0880d79951761b")
        .unwrap();
    assert_eq!(leg1["links"], "9a12eab4522a94c3:signalling");
    // All four media streams belong to the logical call, two per leg.
    let legs = read_csv(&dir.path().join("legs.csv"));
    assert_eq!(legs.len(), 4, "{legs:?}");
    let hop = |cid: &str| {
        legs.iter()
            .filter(|r| r["call_id"] == cid)
            .map(|r| r["hop"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(hop("da0880d79951761b"), ["1", "1"]);
    assert_eq!(hop("9a12eab4522a94c3"), ["2", "2"]);
}

#[test]
fn unrelated_calls_are_not_linked() {
    // SIPp replays the same audio with the same SSRC in every call: that
    // alone must not join them.
    for f in [
        "generated/sipp-loopback-3calls-rtpecho.pcap",
        "generated/sipp-netns-tcp-2calls.pcap",
    ] {
        let (dir, _) = import(&[corpus(f)]);
        for c in read_csv(&dir.path().join("calls.csv")) {
            assert_eq!(c["group"], c["call_id"], "{f}");
            assert_eq!(c["links"], "", "{f}");
        }
    }
}

/// Builds a capture frame by frame.
struct Cap {
    frames: Vec<(u64, Vec<u8>)>,
}

type Ep = (Ipv4Addr, u16);

impl Cap {
    fn new() -> Self {
        Cap { frames: Vec::new() }
    }

    fn udp(&mut self, ts_ms: u64, src: Ep, dst: Ep, payload: &[u8]) {
        let mut f = Vec::new();
        udp_frame(&mut f, src, dst, payload);
        self.frames
            .push((1_767_225_600_000_000_000 + ts_ms * 1_000_000, f));
    }

    fn write(mut self, path: &Path) {
        self.frames.sort_by_key(|f| f.0);
        let mut w = PcapWriter::new(
            std::fs::File::create(path).unwrap(),
            LinkType::Ethernet,
            65535,
        )
        .unwrap();
        for (ts, f) in &self.frames {
            w.write_packet(*ts, f.len() as u32, f).unwrap();
        }
        w.flush().unwrap();
    }
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn invite(call_id: &str, from: &str, to: &str, media: Ep, extra: &str) -> Vec<u8> {
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 {a}\r\ns=-\r\nc=IN IP4 {a}\r\nt=0 0\r\nm=audio {p} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        a = media.0,
        p = media.1
    );
    format!(
        "INVITE sip:{to}@example.net SIP/2.0\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK{call_id}\r\nFrom: <sip:{from}@example.com>;tag=1\r\nTo: <sip:{to}@example.net>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n{extra}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
    .into_bytes()
}

fn ok(call_id: &str, from: &str, to: &str, media: Ep) -> Vec<u8> {
    let sdp = format!(
        "v=0\r\no=- 2 2 IN IP4 {a}\r\ns=-\r\nc=IN IP4 {a}\r\nt=0 0\r\nm=audio {p} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        a = media.0,
        p = media.1
    );
    format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK{call_id}\r\nFrom: <sip:{from}@example.com>;tag=1\r\nTo: <sip:{to}@example.net>;tag=2\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
    .into_bytes()
}

fn bye(call_id: &str) -> Vec<u8> {
    format!(
        "BYE sip:x@example.net SIP/2.0\r\nVia: SIP/2.0/UDP x;branch=z9hG4bKb{call_id}\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.net>;tag=2\r\nCall-ID: {call_id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Speech-like payload: many distinct byte values, different per packet.
fn speech(n: u16) -> Vec<u8> {
    (0..160u32)
        .map(|i| ((i * 37 + u32::from(n) * 101) % 251) as u8)
        .collect()
}

fn rtp(seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// A relayed call: leg A (caller <-> relay port 30000), leg B (relay port
/// 30002 <-> callee), different Call-IDs, numbers and SBC addresses so
/// only the media can tell they are one call. The relay forwards each
/// packet 2 ms later, keeping or rewriting the SSRC.
fn relayed_capture(path: &Path, rewrite_ssrc: bool) {
    let caller = (ip("198.51.100.10"), 4000);
    let relay_a = (ip("203.0.113.1"), 30000);
    let relay_b = (ip("192.0.2.1"), 30002);
    let callee = (ip("192.0.2.50"), 5000);
    let (sbc_out, sbc_in) = ((ip("203.0.113.1"), 5060), (ip("192.0.2.1"), 5060));
    let mut c = Cap::new();
    c.udp(
        0,
        (caller.0, 5060),
        sbc_out,
        &invite("leg-a@caller", "alice", "4420", caller, ""),
    );
    c.udp(
        5,
        sbc_in,
        (callee.0, 5060),
        &invite("leg-b@sbc", "anonymous", "bob", relay_b, ""),
    );
    c.udp(
        50,
        (callee.0, 5060),
        sbc_in,
        &ok("leg-b@sbc", "anonymous", "bob", callee),
    );
    c.udp(
        55,
        sbc_out,
        (caller.0, 5060),
        &ok("leg-a@caller", "alice", "4420", relay_a),
    );
    for n in 0..50u16 {
        let t = 100 + u64::from(n) * 20;
        let pl = speech(n);
        c.udp(t, caller, relay_a, &rtp(n, 0x1111_1111, &pl));
        let out_ssrc = if rewrite_ssrc {
            0x2222_2222
        } else {
            0x1111_1111
        };
        c.udp(
            t + 2,
            relay_b,
            callee,
            &rtp(
                n.wrapping_add(if rewrite_ssrc { 7000 } else { 0 }),
                out_ssrc,
                &pl,
            ),
        );
    }
    c.udp(1200, (caller.0, 5060), sbc_out, &bye("leg-a@caller"));
    c.udp(1205, sbc_in, (callee.0, 5060), &bye("leg-b@sbc"));
    c.write(path);
}

#[test]
fn relayed_media_links_legs_with_and_without_ssrc_rewriting() {
    for (rewrite, method) in [(false, "media-ssrc"), (true, "media-payload")] {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("relay.pcap");
        relayed_capture(&path, rewrite);
        let (dir, _) = import(&[path]);
        let calls = read_csv(&dir.path().join("calls.csv"));
        assert_eq!(calls.len(), 2);
        let b = calls.iter().find(|c| c["call_id"] == "leg-b@sbc").unwrap();
        assert_eq!(b["group"], "leg-a@caller", "rewrite={rewrite}");
        assert_eq!(
            b["links"],
            format!("leg-a@caller:{method}"),
            "rewrite={rewrite}"
        );
        for c in &calls {
            assert_eq!(c["rtp_packets"], "50");
        }
    }
}

#[test]
fn nat_media_is_latched_to_the_call() {
    // The caller's SDP names its private address; its media comes from the
    // NAT's public address to the callee's announced port, and the callee
    // answers to that public address from another port (not symmetric).
    let private = (ip("192.168.1.20"), 4000);
    let public = (ip("198.51.100.7"), 61000);
    let callee = (ip("203.0.113.5"), 5000);
    let callee_tx = (ip("203.0.113.5"), 5002);
    let mut c = Cap::new();
    c.udp(
        0,
        (ip("198.51.100.7"), 5060),
        (callee.0, 5060),
        &invite("nat@x", "alice", "bob", private, ""),
    );
    c.udp(
        30,
        (callee.0, 5060),
        (ip("198.51.100.7"), 5060),
        &ok("nat@x", "alice", "bob", callee),
    );
    for n in 0..40u16 {
        let t = 50 + u64::from(n) * 20;
        c.udp(t, public, callee, &rtp(n, 0xAAAA_0001, &speech(n)));
        c.udp(
            t + 1,
            callee_tx,
            public,
            &rtp(n, 0xBBBB_0002, &speech(n + 1)),
        );
    }
    c.udp(
        1000,
        (ip("198.51.100.7"), 5060),
        (callee.0, 5060),
        &bye("nat@x"),
    );
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("nat.pcap");
    c.write(&path);
    let (dir, _) = import(&[path]);
    let calls = read_csv(&dir.path().join("calls.csv"));
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["latched"], "198.51.100.7:61000->203.0.113.5:5000");
    assert_eq!(calls[0]["rtp_packets"], "80");
    let streams = read_csv(&dir.path().join("streams.csv"));
    assert_eq!(streams.len(), 2);
    assert!(
        streams
            .iter()
            .all(|s| s["packets"] == "40" && s["call_id"] == "nat@x")
    );
}

#[test]
fn correlation_headers_link_legs() {
    for (extra, method) in [
        ("X-Call-ID: other@pbx, leg-a@caller\r\n", "header"),
        ("X-CID: leg-a@caller\r\n", "header"),
        ("X-Original-Call-ID: leg-a@caller\r\n", "header"),
        (
            "P-Charging-Vector: icid-value=\"icid-1234\";orig-ioi=a.net\r\n",
            "p-charging-vector",
        ),
        (
            "Session-ID: 0123456789abcdef0123456789abcdef\r\n",
            "session-id",
        ),
        ("Replaces: leg-a@caller;to-tag=2;from-tag=1\r\n", "replaces"),
    ] {
        // Leg A carries the shared keys too, so icid / Session-ID match.
        let shared_a = if method == "p-charging-vector" || method == "session-id" {
            extra
        } else {
            ""
        };
        let mut c = Cap::new();
        let (a, b) = ((ip("10.0.0.1"), 5060), (ip("10.0.0.2"), 5060));
        let (x, y) = ((ip("172.16.0.1"), 5060), (ip("172.16.0.2"), 5060));
        c.udp(
            0,
            a,
            b,
            &invite(
                "leg-a@caller",
                "alice",
                "bob",
                (ip("10.0.0.1"), 4000),
                shared_a,
            ),
        );
        // Different numbers and boxes: only the header can link.
        c.udp(
            500,
            x,
            y,
            &invite(
                "leg-b@sbc",
                "carol",
                "dave",
                (ip("172.16.0.1"), 6000),
                extra,
            ),
        );
        c.udp(600, a, b, &bye("leg-a@caller"));
        c.udp(700, x, y, &bye("leg-b@sbc"));
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("h.pcap");
        c.write(&path);
        let (dir, _) = import(&[path]);
        let calls = read_csv(&dir.path().join("calls.csv"));
        let leg_b = calls.iter().find(|c| c["call_id"] == "leg-b@sbc").unwrap();
        assert_eq!(leg_b["links"], format!("leg-a@caller:{method}"), "{extra}");
        assert_eq!(leg_b["group"], "leg-a@caller", "{extra}");
    }
}

/// The two-leg SRTP-to-RTP call gives one bundle: both legs' SIP and all
/// their media, the SRTP leg decrypted (tshark then sees plain RTP whose
/// payloads equal the RTP leg's codec: PCMU throughout).
#[test]
fn b2bua_bundle_holds_both_legs_decrypted() {
    let file = corpus("generated/baresip-b2bua-2legs-srtp-to-rtp.pcap");
    let (dir, _) = voxtap_e2e::import_with_media(std::slice::from_ref(&file));
    let calls = read_csv(&dir.path().join("calls.csv"));
    let first = calls
        .iter()
        .find(|c| c["call_id"] == "da0880d79951761b")
        .unwrap();
    let folder = dir.path().join(first["pcap"].replace("/call.pcap", ""));
    let bundle = folder.join("sip-plus-media-decrypted.pcap");
    assert!(bundle.exists(), "no bundle in {}", folder.display());
    // Leg 1 carried SRTP: its decrypted capture (SRTP tags stripped, so
    // shorter frames) is what goes in; leg 2 is plain RTP as captured.
    let dec = folder.join("call-decrypted.pcap");
    assert!(dec.exists());
    let leg2 = calls
        .iter()
        .find(|c| c["call_id"] == "9a12eab4522a94c3")
        .unwrap();
    let mut want = voxtap_e2e::tshark_frames(&dec, None);
    want.extend(voxtap_e2e::tshark_frames(
        &dir.path().join(&leg2["pcap"]),
        None,
    ));
    want.sort();
    let mut got = voxtap_e2e::tshark_frames(&bundle, None);
    got.sort();
    assert_eq!(got.len(), want.len());
    assert!(
        got == want,
        "bundle frames differ from leg 1 decrypted + leg 2"
    );
    assert_ne!(
        voxtap_e2e::tshark_frames(&dec, None),
        voxtap_e2e::tshark_frames(&dir.path().join(&first["pcap"]), None),
        "decryption changed no frame"
    );
    let sip = voxtap_e2e::tshark_frames(&bundle, Some("sip"));
    assert_eq!(
        sip.len(),
        voxtap_e2e::tshark_frames(&file, Some("sip")).len()
    );
    let call_ids = voxtap_e2e::tshark(&[
        "-r",
        bundle.to_str().unwrap(),
        "-Y",
        "sip",
        "-T",
        "fields",
        "-e",
        "sip.Call-ID",
    ]);
    let mut ids: Vec<&str> = call_ids.lines().collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids, ["9a12eab4522a94c3", "da0880d79951761b"]);
}

/// The call index records the link between the two legs (for the web
/// page) and a MOS estimate for the answered calls' streams.
#[test]
fn index_records_legs_and_mos() {
    use voxtap_engine::index::{CallQuery, INDEX_FILE, Index};
    let (dir, _) = import(&[corpus("generated/baresip-b2bua-2legs-srtp-to-rtp.pcap")]);
    let idx = Index::open(&dir.path().join(INDEX_FILE)).unwrap();
    let page = idx
        .search(&CallQuery {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page.rows.len(), 2);
    for row in &page.rows {
        let d = idx.call_detail(row.id).unwrap().unwrap();
        assert_eq!(d.legs.len(), 1, "{}", row.call_id);
        assert_eq!(d.legs[0].method, "signalling");
        let other = page
            .rows
            .iter()
            .find(|r| r.id == d.legs[0].other_call)
            .unwrap();
        assert_ne!(other.call_id, row.call_id);
        // No loss on either leg: G.711 with PLC scores about 4.4.
        let mos = row.mos.expect("MOS");
        assert!((4.3..4.5).contains(&mos), "{mos}");
    }
}
