//! `import` on the shared corpus, checked against tshark run on the same
//! files: Call-IDs, SIP packets per call, RTP streams and their figures, and
//! each call's `call.pcap` holding exactly that call's frames.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use voxtap_e2e::{
    call_filter, corpus, import, read_csv, sdp_endpoints, tshark, tshark_call_ids, tshark_frames,
    tshark_rtp_streams,
};

fn all_captures() -> Vec<PathBuf> {
    voxtap_e2e::corpus_captures()
}

#[test]
fn every_corpus_capture_imports_and_call_ids_match_tshark() {
    for file in all_captures() {
        let (dir, report) = import(std::slice::from_ref(&file));
        assert_eq!(report.files.len(), 1);
        assert!(
            report.files[0].damage.is_none(),
            "{}: {:?}",
            file.display(),
            report.files[0].damage
        );
        let capinfos = tshark_frames(&file, None).len() as u64;
        assert_eq!(
            report.files[0].packets,
            capinfos,
            "{}: packets read",
            file.display()
        );
        let calls = read_csv(&dir.path().join("calls.csv"));
        let mut ours: Vec<String> = calls.iter().map(|c| c["call_id"].clone()).collect();
        // SIP outside INVITE dialogs has rows of its own.
        for f in ["registrations.csv", "transactions.csv"] {
            ours.extend(
                read_csv(&dir.path().join(f))
                    .into_iter()
                    .map(|r| r["call_id"].clone()),
            );
        }
        ours.sort();
        ours.dedup();
        assert_eq!(ours, tshark_call_ids(&file), "{}: Call-IDs", file.display());
    }
}

/// For each file with calls: SIP packets per call equal tshark's per-Call-ID
/// count, and the RTP streams (5-tuple + SSRC) with their packet and loss
/// counts equal tshark's `-z rtp,streams`.
#[test]
fn sip_and_rtp_counts_match_tshark() {
    for name in [
        "generated/sipp-loopback-3calls-rtpecho.pcap",
        "generated/sipp-netns-udp-2calls.pcap",
        "generated/sipp-netns-udp-2calls-vlan100.pcap",
        "generated/sipp-netns-tcp-2calls.pcap",
        "generated/sipp-netns-ipv6-udp-1call.pcap",
        "generated/baresip-pcma-hold-resume-dtmf-rtcp.pcap",
        "generated/baresip-g722-1call.pcap",
        "generated/baresip-opus-stereo-1call.pcap",
        "generated/baresip-srtp-sdes-pcmu-1call.pcap",
        "generated/baresip-b2bua-2legs-srtp-to-rtp.pcap",
    ] {
        let file = corpus(name);
        let (dir, _) = import(std::slice::from_ref(&file));
        let calls = read_csv(&dir.path().join("calls.csv"));
        for c in &calls {
            let filter = format!("sip.Call-ID == \"{}\"", c["call_id"]);
            let n = tshark_frames(&file, Some(&filter)).len();
            assert_eq!(
                c["sip_packets"],
                n.to_string(),
                "{name}: SIP packets of {}",
                c["call_id"]
            );
        }
        let streams = read_csv(&dir.path().join("streams.csv"));
        let ours: HashMap<(String, String, u32), &HashMap<String, String>> = streams
            .iter()
            .map(|s| {
                let ssrc = u32::from_str_radix(s["ssrc_hex"].trim_start_matches("0x"), 16).unwrap();
                ((s["src"].clone(), s["dst"].clone(), ssrc), s)
            })
            .collect();
        let theirs = tshark_rtp_streams(&file);
        assert!(!theirs.is_empty(), "{name}: tshark sees no RTP");
        assert_eq!(
            ours.len(),
            theirs.len(),
            "{name}: stream count (ours {:?})",
            ours.keys()
        );
        for t in theirs {
            let s = ours
                .get(&(t.src.clone(), t.dst.clone(), t.ssrc))
                .unwrap_or_else(|| panic!("{name}: tshark stream {t:?} missing from streams.csv"));
            assert_eq!(
                s["packets"],
                t.packets.to_string(),
                "{name}: packets of {t:?}"
            );
            assert_eq!(s["lost"], t.lost.to_string(), "{name}: lost of {t:?}");
            let max_delta: f64 = s["max_delta_ms"].parse().unwrap();
            assert!(
                (max_delta - t.max_delta_ms).abs() < 0.01,
                "{name}: max delta {max_delta} vs tshark {}",
                t.max_delta_ms
            );
            // Includes DTMF-only SSRCs, which have no jitter (RFC 4733
            // timestamps stand still for an event).
            let max_jitter: f64 = s["max_jitter_ms"].parse().unwrap();
            assert!(
                (max_jitter - t.max_jitter_ms).abs() < 0.01,
                "{name}: max jitter {max_jitter} vs tshark {} of {t:?}",
                t.max_jitter_ms
            );
        }
        // Every RTP stream tshark sees belongs to a call: rtp_packets add up.
        let rtp_total: u64 = calls
            .iter()
            .map(|c| c["rtp_packets"].parse::<u64>().unwrap())
            .sum();
        let stream_total: u64 = streams
            .iter()
            .map(|s| s["packets"].parse::<u64>().unwrap())
            .sum();
        assert_eq!(
            rtp_total, stream_total,
            "{name}: RTP packets in calls vs streams"
        );
    }
}

/// Compare frame lists, printing only the first difference.
fn assert_same_frames(got: &[(String, u32)], want: &[(String, u32)], what: &str) {
    if let Some(i) = (0..got.len().max(want.len())).find(|&i| got.get(i) != want.get(i)) {
        panic!(
            "{what}: {} frames vs {} expected; first difference at #{i}: got {:?}, want {:?}",
            got.len(),
            want.len(),
            got.get(i),
            want.get(i)
        );
    }
}

/// `call.pcap` of every call holds exactly the frames tshark attributes to
/// it in the original: its SIP by Call-ID, and UDP between two endpoints its
/// SDP (as tshark reads it) announced; same timestamps and lengths, in order.
#[test]
fn call_pcap_holds_exactly_the_calls_frames() {
    for name in [
        "generated/sipp-loopback-3calls-rtpecho.pcap",
        "generated/sipp-netns-udp-2calls-vlan100.pcap",
        "generated/sipp-netns-tcp-2calls.pcap",
        "generated/sipp-netns-ipv6-udp-1call.pcap",
        "generated/baresip-pcma-hold-resume-dtmf-rtcp.pcap",
        "generated/baresip-b2bua-2legs-srtp-to-rtp.pcap",
    ] {
        let file = corpus(name);
        let (dir, _) = import(std::slice::from_ref(&file));
        let endpoints = sdp_endpoints(&file);
        for c in read_csv(&dir.path().join("calls.csv")) {
            let cid = &c["call_id"];
            let filter = call_filter(cid, &endpoints[cid]);
            let expected = tshark_frames(&file, Some(&filter));
            let got = tshark_frames(&dir.path().join(&c["pcap"]), None);
            assert!(!got.is_empty());
            assert_same_frames(&got, &expected, &format!("{name}: frames of call {cid}"));
            let total: u64 = ["sip_packets", "rtp_packets", "rtcp_packets"]
                .iter()
                .map(|k| c[*k].parse::<u64>().unwrap())
                .sum();
            assert_eq!(
                total,
                got.len() as u64,
                "{name}: {cid} packet columns add up"
            );
        }
    }
}

#[test]
fn outcomes_and_times() {
    let (dir, _) = import(&[corpus("generated/baresip-pcma-hold-resume-dtmf-rtcp.pcap")]);
    let calls = read_csv(&dir.path().join("calls.csv"));
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!(c["state"], "answered");
    assert_eq!(c["status_code"], "200");
    assert_eq!(c["end_reason"], "bye");
    assert_eq!(c["from"], "alice");
    assert_eq!(c["to"], "bob");
    // The MANIFEST: BYE at 13.8 s after the INVITE.
    let d: f64 = c["duration_s"].parse().unwrap();
    assert!((13.7..13.9).contains(&d), "duration {d}");
    assert!(!c["ringing"].is_empty() && !c["answer"].is_empty());
    // Hold and resume re-INVITEs keep the one call; RTCP is counted.
    assert_eq!(c["rtcp_packets"], "10");

    let (dir, _) = import(&[corpus("generated/sipp-netns-tcp-2calls.pcap")]);
    let calls = read_csv(&dir.path().join("calls.csv"));
    assert_eq!(calls.len(), 2);
    assert!(
        calls
            .iter()
            .all(|c| c["state"] == "answered" && c["end_reason"] == "bye")
    );
}

#[test]
fn ipv6_fragments_reassemble_into_one_call() {
    let file = corpus("sngrep/ipv6frag.pcap");
    let (dir, report) = import(std::slice::from_ref(&file));
    let calls = read_csv(&dir.path().join("calls.csv"));
    assert_eq!(calls.len(), 1);
    // Every frame of this capture (fragments included) is SIP of the call.
    let all = tshark_frames(&file, None);
    let got = tshark_frames(&dir.path().join(&calls[0]["pcap"]), None);
    assert_same_frames(&got, &all, "ipv6frag call.pcap");
    // tshark dissects as many SIP messages in our call.pcap as in the original.
    let sip_in = |f: &Path| tshark_frames(f, Some("sip")).len();
    assert_eq!(sip_in(&dir.path().join(&calls[0]["pcap"])), sip_in(&file));
    assert_eq!(report.stats.sip_messages as usize, sip_in(&file));
    let sip_txt = std::fs::read_to_string(
        dir.path()
            .join(calls[0]["pcap"].replace("call.pcap", "sip.txt")),
    )
    .unwrap();
    assert_eq!(sip_txt.matches(" -> ").count(), sip_in(&file));
}

#[test]
fn ip_in_ip_and_tcp_sip_form_one_dialog() {
    let file = corpus("sngrep/ipip.pcap");
    let (dir, _) = import(std::slice::from_ref(&file));
    let calls = read_csv(&dir.path().join("calls.csv"));
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["sip_packets"], "4");
    assert_eq!(
        tshark_frames(&dir.path().join(&calls[0]["pcap"]), None).len(),
        4
    );
}

#[test]
fn http_on_the_sip_port_makes_no_call() {
    let (dir, report) = import(&[corpus("ndpi/http_on_sip_port.pcap")]);
    assert!(read_csv(&dir.path().join("calls.csv")).is_empty());
    assert_eq!(report.stats.sip_messages, 0);
}

#[test]
fn sip_on_an_unconfigured_port_is_found_by_content() {
    // The VLAN capture uses 5060/5061: with only 6060 configured, content
    // detection must still find both calls.
    let file = corpus("generated/sipp-netns-udp-2calls.pcap");
    let cfg = voxtap_engine::pipeline::PipelineConfig {
        sip_ports: vec![6060],
        ..Default::default()
    };
    let (dir, _) = voxtap_e2e::import_with(std::slice::from_ref(&file), cfg);
    assert_eq!(read_csv(&dir.path().join("calls.csv")).len(), 2);
}

#[test]
fn truncated_capture_is_read_up_to_the_damage() {
    let src = corpus("generated/sipp-netns-udp-2calls.pcap");
    let bytes = std::fs::read(&src).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cut = tmp.path().join("cut.pcap");
    // Cut in the middle of a record, two thirds in.
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3 + 7]).unwrap();
    let (dir, report) = import(std::slice::from_ref(&cut));
    let damage = report.files[0].damage.as_deref().expect("damage reported");
    assert!(damage.to_lowercase().contains("truncat"), "{damage}");
    // tshark reads the same whole records before the cut.
    let whole = voxtap_e2e::tshark_lenient(&["-r", cut.to_str().unwrap()])
        .lines()
        .count() as u64;
    assert!(whole > 0);
    assert_eq!(report.files[0].packets, whole);
    assert_eq!(read_csv(&dir.path().join("calls.csv")).len(), 2);
}

#[test]
fn several_files_merge_by_time() {
    // Splitting a capture in two (SIP in one file, everything else in the
    // other) and importing both gives the same calls and streams as the whole.
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
    let (whole, _) = import(std::slice::from_ref(&src));
    let (split, _) = import(&[sip, media]);
    let key = |d: &Path, f: &str, cols: &[&str]| {
        let mut v: Vec<Vec<String>> = read_csv(&d.join(f))
            .into_iter()
            .map(|r| cols.iter().map(|c| r[*c].clone()).collect())
            .collect();
        v.sort();
        v
    };
    let call_cols = ["call_id", "state", "sip_packets", "rtp_packets", "streams"];
    assert_eq!(
        key(whole.path(), "calls.csv", &call_cols),
        key(split.path(), "calls.csv", &call_cols)
    );
    let stream_cols = ["call_id", "ssrc_hex", "src", "dst", "packets", "lost"];
    assert_eq!(
        key(whole.path(), "streams.csv", &stream_cols),
        key(split.path(), "streams.csv", &stream_cols)
    );
}
