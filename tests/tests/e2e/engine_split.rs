//! `import --engine-workers N` (the parallel engine: replicated signalling,
//! sharded media) gives the outputs of the single-threaded pipeline: every
//! corpus capture and synthetic traffic with races (one worker stalled),
//! N = 2, 4 and 8 against N = 1; CSV rows equal after a sort, every other
//! file byte for byte. A failing worker fails the import.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use voxtap_e2e::corpus_captures;
use voxtap_engine::import::{ImportOptions, run_import_engine};
use voxtap_engine::parallel::worker_of;
use voxtap_engine::pipeline::PipelineConfig;
use voxtap_engine::synth::held::g711;
use voxtap_engine::synth::udp_frame;
use voxtap_proto::pcapio::{LinkType, PcapWriter};

/// Captures whose outputs differ with N > 1, and why (docs/architecture.md,
/// "The engine split", lists the gaps). Empty: every corpus capture is
/// equal today.
const KNOWN_GAPS: &[(&str, &str)] = &[];

fn import_n(files: &[PathBuf], out: &Path, n: usize, pipeline: &PipelineConfig) {
    let opts = ImportOptions {
        files: files.to_vec(),
        out: out.to_path_buf(),
        pipeline: pipeline.clone(),
        call_files: true,
        media: None,
    };
    let report = run_import_engine(&opts, 1, n, &|_| {})
        .unwrap_or_else(|e| panic!("{files:?} with {n} engine workers: {e}"));
    // Every replica resolves each link worker 0 posted (the same calls are
    // open or parked in every replica at a meeting).
    let unresolved: Vec<u64> = report
        .engine
        .workers
        .iter()
        .map(|w| w.links_unresolved)
        .collect();
    assert!(
        unresolved.iter().all(|&u| u == 0),
        "{files:?} with {n} engine workers: links unresolved {unresolved:?}"
    );
}

/// Every output file but the index: CSVs as their sorted lines (the order
/// of calls that end at the same sweep is not defined), the rest as bytes.
fn outputs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if p.is_dir() {
                stack.push(p);
            } else if rel.ends_with(".csv") {
                let text = std::fs::read_to_string(&p).unwrap();
                let mut lines: Vec<&str> = text.lines().collect();
                lines.sort_unstable();
                out.insert(rel, lines.join("\n").into_bytes());
            } else if !rel.starts_with("index.sqlite") {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The differences between two output folders, named (empty: equal).
fn differences(one: &Path, other: &Path) -> Vec<String> {
    let (a, b) = (outputs(one), outputs(other));
    let mut diff: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    diff.dedup();
    diff
}

/// Imports `file` with 1, 2, 4 and 8 engine workers; the differences from 1.
fn compare(file: &Path, tmp: &Path, pipeline: &PipelineConfig) -> Vec<String> {
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    let one = tmp.join(format!("{name}-1"));
    import_n(&[file.to_path_buf()], &one, 1, pipeline);
    let calls = std::fs::read_to_string(one.join("calls.csv")).unwrap();
    let mut diffs = Vec::new();
    for n in [2, 4, 8] {
        let out = tmp.join(format!("{name}-{n}"));
        import_n(&[file.to_path_buf()], &out, n, pipeline);
        diffs.extend(
            differences(&one, &out)
                .into_iter()
                .map(|d| format!("N={n}: {d}")),
        );
    }
    assert!(calls.lines().count() >= 1, "{name}: no calls.csv header");
    diffs
}

#[test]
fn every_corpus_capture_gives_the_same_outputs_with_2_4_and_8_engine_workers() {
    let tmp = tempfile::tempdir().unwrap();
    let mut compared = 0;
    let mut failures = Vec::new();
    for file in corpus_captures() {
        let rel = file.display().to_string();
        if KNOWN_GAPS.iter().any(|(f, _)| rel.ends_with(f)) {
            continue;
        }
        let diffs = compare(&file, tmp.path(), &PipelineConfig::default());
        if !diffs.is_empty() {
            failures.push(format!("{rel}: {diffs:?}"));
        }
        compared += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(compared >= 30, "only {compared} captures compared");
}

const S: u64 = 1_000_000_000;

type Endpoint = (Ipv4Addr, u16);

/// A capture being written: frames in time order.
struct Capture {
    w: PcapWriter<std::io::BufWriter<std::fs::File>>,
    frame: Vec<u8>,
    events: Vec<(u64, Endpoint, Endpoint, Vec<u8>)>,
}

impl Capture {
    fn new(path: &Path) -> Self {
        let f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
        Capture {
            w: PcapWriter::new(f, LinkType::Ethernet, 65535).unwrap(),
            frame: Vec::new(),
            events: Vec::new(),
        }
    }

    fn add(&mut self, ts: u64, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: Vec<u8>) {
        self.events.push((ts, src, dst, payload));
    }

    /// RTP from `src` to `dst` every 20 ms over [from, to), SSRC `ssrc`.
    fn rtp(&mut self, from: u64, to: u64, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), ssrc: u32) {
        let mut t = from;
        let mut seq = 0u16;
        while t < to {
            self.add(t, src, dst, g711(seq, ssrc).to_vec());
            t += 20_000_000;
            seq = seq.wrapping_add(1);
        }
    }

    fn write(mut self) {
        // Stable: frames at the same time keep the order they were added.
        self.events.sort_by_key(|e| e.0);
        for (ts, src, dst, payload) in std::mem::take(&mut self.events) {
            udp_frame(&mut self.frame, src, dst, &payload);
            let len = self.frame.len() as u32;
            self.w.write_packet(ts, len, &self.frame).unwrap();
        }
        self.w.flush().unwrap();
    }
}

fn sip(start: &str, cid: &str, cseq: &str, to_tag: bool, sdp: Option<(Ipv4Addr, u16)>) -> Vec<u8> {
    let body = sdp.map_or(String::new(), |(ip, port)| {
        format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        )
    });
    let ctype = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    let tt = if to_tag { ";tag=t" } else { "" };
    format!(
        "{start}\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK{cid}{cseq}\r\nFrom: <sip:a@x>;tag=f\r\nTo: <sip:b@x>{tt}\r\nCall-ID: {cid}\r\nCSeq: {cseq}\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The NATs' public addresses of A and B in double-NAT call `i`.
fn double_nat(i: u32) -> (Endpoint, Endpoint) {
    (
        (Ipv4Addr::new(198, 51, (i >> 8) as u8, i as u8), 40_000),
        (Ipv4Addr::new(203, 0, (i >> 8) as u8, i as u8), 41_000),
    )
}

/// B's announced endpoint in race call `i` (as `race_call` makes it).
fn callee_media(i: u32) -> Endpoint {
    (
        Ipv4Addr::new(10, 2, (i >> 8) as u8, i as u8),
        30_000 + 2 * (i as u16 % 5000),
    )
}

/// Double-NAT calls whose return traffic (to A's public address) hashes to
/// another worker than the traffic that latched it (to B's endpoint), with
/// `n` workers: the case a worker cannot settle alone.
fn cross_worker_double_nat(calls: std::ops::Range<u32>, n: usize) -> usize {
    let sock = |(ip, port): Endpoint| std::net::SocketAddr::from((ip, port));
    calls
        .filter(|&i| {
            let latched = double_nat(i).0;
            worker_of(sock(latched), n) != worker_of(sock(callee_media(i)), n)
        })
        .count()
}

/// One call of the race capture; `kind` picks its race.
fn race_call(c: &mut Capture, i: u32, kind: u32) {
    let t0 = S + u64::from(i) * 37_000_000;
    let a = Ipv4Addr::new(10, 1, (i >> 8) as u8, i as u8);
    let b = Ipv4Addr::new(10, 2, (i >> 8) as u8, i as u8);
    let (pa, pb) = (
        20_000 + 2 * (i as u16 % 5000),
        30_000 + 2 * (i as u16 % 5000),
    );
    let cid = format!("race-{i}@voxtap.test");
    let (sa, sb) = ((a, 5060), (b, 5060));
    let invite = |c: &mut Capture, t: u64, cseq: &str, port: u16| {
        c.add(
            t,
            sa,
            sb,
            sip(
                "INVITE sip:b@x SIP/2.0",
                &cid,
                cseq,
                cseq != "1 INVITE",
                Some((a, port)),
            ),
        );
    };
    let ok = |c: &mut Capture, t: u64, cseq: &str, port: Option<u16>| {
        c.add(
            t,
            sb,
            sa,
            sip("SIP/2.0 200 OK", &cid, cseq, true, port.map(|p| (b, p))),
        );
    };
    // A's BYE at `t` and B's 200 OK a nanosecond later.
    let bye = |c: &mut Capture, t: u64, cseq: &str| {
        c.add(
            t,
            sa,
            sb,
            sip("BYE sip:b@x SIP/2.0", &cid, cseq, true, None),
        );
        ok(c, t + 1, cseq, None);
    };
    match kind {
        // SDP behind its RTP: media from both sides 1.5 s before the
        // INVITE and its answer (held, then claimed), then a BYE.
        0 => {
            c.rtp(t0, t0 + 6 * S, (a, pa), (b, pb), i);
            c.rtp(t0, t0 + 6 * S, (b, pb), (a, pa), !i);
            invite(c, t0 + 1_500_000_000, "1 INVITE", pa);
            ok(c, t0 + 1_600_000_000, "1 INVITE", Some(pb));
            bye(c, t0 + 6 * S, "2 BYE");
        }
        // A re-INVITE moves both sides' media to new ports after 2 s.
        1 => {
            invite(c, t0, "1 INVITE", pa);
            ok(c, t0 + 1, "1 INVITE", Some(pb));
            c.rtp(t0 + 2, t0 + 2 * S, (a, pa), (b, pb), i);
            c.rtp(t0 + 2, t0 + 2 * S, (b, pb), (a, pa), !i);
            invite(c, t0 + 2 * S, "2 INVITE", pa + 1000);
            ok(c, t0 + 2 * S + 1, "2 INVITE", Some(pb + 1000));
            c.rtp(
                t0 + 2 * S + 2,
                t0 + 5 * S,
                (a, pa + 1000),
                (b, pb + 1000),
                i,
            );
            c.rtp(
                t0 + 2 * S + 2,
                t0 + 5 * S,
                (b, pb + 1000),
                (a, pa + 1000),
                !i,
            );
            bye(c, t0 + 5 * S, "3 BYE");
        }
        // The capture starts mid-call: RTP, then the BYE of a dialog never
        // seen (media-only records, and a lone BYE).
        2 => {
            c.rtp(t0, t0 + 4 * S, (a, pa), (b, pb), i);
            // 1 ms later: two streams of one media-only record starting at
            // the same nanosecond are a known gap (docs/architecture.md).
            c.rtp(t0 + 1_000_000, t0 + 4 * S, (b, pb), (a, pa), !i);
            c.add(
                t0 + 4 * S,
                sa,
                sb,
                sip("BYE sip:b@x SIP/2.0", &cid, "2 BYE", true, None),
            );
        }
        // A behind a NAT: its SDP names its private address, its RTP comes
        // from the NAT's public one (latched by the worker B's endpoint
        // hashes to), and B sends back to that public address, which
        // hashes to another worker (B's claimed endpoint, the source,
        // finds the call there).
        4 => {
            let public = (Ipv4Addr::new(198, 51, (i >> 8) as u8, i as u8), 40_000);
            invite(c, t0, "1 INVITE", pa);
            ok(c, t0 + 1, "1 INVITE", Some(pb));
            c.rtp(t0 + 2, t0 + 3 * S, public, (b, pb), i);
            c.rtp(t0 + 10_000_002, t0 + 3 * S, (b, pb), public, !i);
            bye(c, t0 + 3 * S, "2 BYE");
        }
        // Both sides behind NATs: the SDPs name private addresses; A's RTP
        // comes from its NAT's public address to B's announced endpoint
        // (latched by the worker that endpoint hashes to), and B's RTP comes
        // from B's NAT to A's latched public address: neither end of the
        // return traffic is an SDP endpoint, and its destination hashes to
        // another worker in most calls (`cross_worker_double_nat`).
        5 => {
            let (public_a, public_b) = double_nat(i);
            invite(c, t0, "1 INVITE", pa);
            ok(c, t0 + 1, "1 INVITE", Some(pb));
            c.rtp(t0 + 2, t0 + 3 * S, public_a, (b, pb), i);
            c.rtp(t0 + 10_000_002, t0 + 3 * S, public_b, public_a, !i);
            // B's ICE/STUN check, neither RTP nor RTCP: the call's all the
            // same (its capture), where one table takes it.
            c.add(t0 + 300_000_000, public_b, public_a, stun());
            bye(c, t0 + 3 * S, "2 BYE");
        }
        // Double NAT again, and A turns to where B's media comes from (a
        // symmetric-RTP endpoint): traffic *from* A's latched address to an
        // address no SDP named, which hashes to yet another worker in most
        // calls (`cross_worker_turn`).
        6 => {
            let (public_a, public_b) = double_nat(i);
            invite(c, t0, "1 INVITE", pa);
            ok(c, t0 + 1, "1 INVITE", Some(pb));
            c.rtp(t0 + 2, t0 + 500_000_000, public_a, (b, pb), i);
            c.rtp(t0 + 10_000_002, t0 + 3 * S, public_b, public_a, !i);
            c.rtp(t0 + 500_000_000, t0 + 3 * S, public_a, public_b, i);
            bye(c, t0 + 3 * S, "2 BYE");
        }
        // Signalling goes quiet but media goes on for 8 s, one direction
        // stopping early: the call stays open until the last media of all
        // workers is idle (idle timeout 3 s here).
        _ => {
            invite(c, t0, "1 INVITE", pa);
            ok(c, t0 + 1, "1 INVITE", Some(pb));
            c.rtp(t0 + 2, t0 + 8 * S, (a, pa), (b, pb), i);
            c.rtp(t0 + 2, t0 + 2 * S, (b, pb), (a, pa), !i);
        }
    }
}

/// A STUN binding request (RFC 5389), marked so a test can find it.
fn stun() -> Vec<u8> {
    let mut p = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    p.extend_from_slice(STUN_ID);
    p
}

const STUN_ID: &[u8; 12] = b"voxtap-stun!";

/// Speech-like RTP (a payload leg linking finds distinctive) of relayed
/// call `i`, packet `seq`.
fn speech_rtp(i: u32, seq: u16, rtp_ts: u32, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&rtp_ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    let mut x = (u64::from(i) << 32 | u64::from(seq)).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for _ in 0..160 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p.push(x as u8);
    }
    p
}

/// Where relayed call `i`'s media goes on each leg: to the relay's side
/// facing the caller, and from its other side to the callee.
fn relay_media(i: u32) -> (Endpoint, Endpoint, Endpoint, Endpoint) {
    let port = 20_000 + 2 * (i as u16 % 5000);
    (
        (Ipv4Addr::new(10, 5, (i >> 8) as u8, i as u8), 4000),
        (Ipv4Addr::new(10, 6, 0, 1), port),
        (Ipv4Addr::new(10, 7, 0, 1), port),
        (Ipv4Addr::new(10, 8, (i >> 8) as u8, i as u8), 5000),
    )
}

/// Where relayed call `i`'s callee behind a NAT sends from, and where the
/// relay sends to it from (not the address its SDP named).
fn relay_nat(i: u32) -> (Endpoint, Endpoint) {
    let port = 20_000 + 2 * (i as u16 % 5000);
    (
        (Ipv4Addr::new(100, 64, (i >> 8) as u8, i as u8), 42_000),
        (Ipv4Addr::new(10, 7, 0, 2), port),
    )
}

/// A call through a media relay (a B2BUA): two legs with their own
/// Call-IDs, which only the media links: the relay forwards each packet
/// 2 ms later, keeping the SSRC (`media-ssrc`, even `i`) or rewriting it
/// and the sequence numbers (`media-payload`, odd `i`). The two legs'
/// streams go to different hosts, so to different workers in most calls
/// (`cross_worker_relays`). With `nat` the callee is behind a NAT (its RTP
/// comes from the NAT's address, latched by the callee leg) and the relay
/// sends from another address than it announced, to that latched address:
/// the forwarded stream is the call's only by the latch, made on another
/// worker than the one it goes to in most calls (`cross_worker_relay_nat`).
fn relayed_call(c: &mut Capture, i: u32, nat: bool) {
    let t0 = S + u64::from(i) * 37_000_000;
    let (caller, relay_a, relay_b, callee) = relay_media(i);
    let (sbc_a, sbc_b) = ((relay_a.0, 5060), (relay_b.0, 5060));
    let (cid_a, cid_b) = (
        format!("relay-a-{i}@voxtap.test"),
        format!("relay-b-{i}@voxtap.test"),
    );
    let (ca, ce) = ((caller.0, 5060), (callee.0, 5060));
    let leg = |c: &mut Capture, t: u64, from, to, start: &str, cid: &str, cseq, sdp| {
        let to_tag = start.starts_with("SIP") || cseq != "1 INVITE";
        c.add(t, from, to, sip(start, cid, cseq, to_tag, sdp));
    };
    leg(
        c,
        t0,
        ca,
        sbc_a,
        "INVITE sip:b@x SIP/2.0",
        &cid_a,
        "1 INVITE",
        Some(caller),
    );
    leg(
        c,
        t0 + 5_000_000,
        sbc_b,
        ce,
        "INVITE sip:b@x SIP/2.0",
        &cid_b,
        "1 INVITE",
        Some(relay_b),
    );
    leg(
        c,
        t0 + 50_000_000,
        ce,
        sbc_b,
        "SIP/2.0 200 OK",
        &cid_b,
        "1 INVITE",
        Some(callee),
    );
    leg(
        c,
        t0 + 55_000_000,
        sbc_a,
        ca,
        "SIP/2.0 200 OK",
        &cid_a,
        "1 INVITE",
        Some(relay_a),
    );
    let rewrite = i % 2 == 1;
    let (public_c, relay_src) = relay_nat(i);
    let (fwd_src, fwd_dst) = if nat {
        c.rtp(
            t0 + 60_000_000,
            t0 + 2_100_000_000,
            public_c,
            relay_b,
            0x7000_0000 + i,
        );
        (relay_src, public_c)
    } else {
        (relay_b, callee)
    };
    for n in 0..100u16 {
        let t = t0 + 100_000_000 + u64::from(n) * 20_000_000;
        let ts = u32::from(n) * 160;
        c.add(t, caller, relay_a, speech_rtp(i, n, ts, 0x5000_0000 + i));
        let (seq, ssrc) = if rewrite {
            (n.wrapping_add(7000), 0x6000_0000 + i)
        } else {
            (n, 0x5000_0000 + i)
        };
        let mut fwd = speech_rtp(i, n, ts, ssrc);
        fwd[2..4].copy_from_slice(&seq.to_be_bytes());
        c.add(t + 2_000_000, fwd_src, fwd_dst, fwd);
    }
    let end = t0 + 2_200_000_000;
    leg(
        c,
        end,
        ca,
        sbc_a,
        "BYE sip:b@x SIP/2.0",
        &cid_a,
        "2 BYE",
        None,
    );
    leg(
        c,
        end + 1,
        sbc_a,
        ca,
        "SIP/2.0 200 OK",
        &cid_a,
        "2 BYE",
        None,
    );
    leg(
        c,
        end + 5_000_000,
        sbc_b,
        ce,
        "BYE sip:b@x SIP/2.0",
        &cid_b,
        "2 BYE",
        None,
    );
    leg(
        c,
        end + 5_000_001,
        ce,
        sbc_b,
        "SIP/2.0 200 OK",
        &cid_b,
        "2 BYE",
        None,
    );
}

/// A call through two media relays in a row (three legs, the payloads
/// forwarded 2 ms later at each hop, SSRC and sequence numbers rewritten),
/// whose first leg ends after 400 ms of media and whose caller then starts
/// a new call on the same Call-ID (a new initial INVITE) before the next
/// sweep has weighed that leg's first packets: that evidence is of a call
/// no longer open, so neither one table nor the replicas weigh it, and the
/// second and third legs are linked by their payloads. The second leg's
/// INVITE names the first by a header: that link is made at once (by
/// worker 0 alone), and the first leg, closed by its new call, waits
/// parked for the others in every replica.
fn chained_call(c: &mut Capture, i: u32) {
    // Early in the capture, so that sweeps go on while its calls end (two
    // calls of one Call-ID ending at one sweep name their folders in no
    // defined order, one table's included).
    let t0 = S + u64::from(i % 100) * 37_000_000;
    let port = 20_000 + 2 * (i as u16 % 5000);
    let host = |b: u8| (Ipv4Addr::new(10, b, (i >> 8) as u8, i as u8), port);
    let hops = [
        (host(10), host(11)),
        (host(12), host(13)),
        (host(14), host(15)),
    ];
    let cids = ["a", "b", "c"].map(|leg| format!("chain-{leg}-{i}@voxtap.test"));
    let sig = |ep: Endpoint| (ep.0, 5060);
    for (k, ((from, to), cid)) in hops.iter().zip(&cids).enumerate() {
        let t = t0 + k as u64 * 5_000_000;
        let mut invite = sip(
            "INVITE sip:b@x SIP/2.0",
            cid,
            "1 INVITE",
            false,
            Some(*from),
        );
        if k == 1 {
            // The second leg names the first: linked by signalling (in
            // worker 0 only, posted at the next meeting) before the first
            // closes, between meetings or not, by its Call-ID's new call.
            invite = named(invite, cid, &cids[0]);
        }
        c.add(t, sig(*from), sig(*to), invite);
        let ok = sip("SIP/2.0 200 OK", cid, "1 INVITE", true, Some(*to));
        c.add(t + 40_000_000, sig(*to), sig(*from), ok);
    }
    for n in 0..20u16 {
        let t = t0 + 100_000_000 + u64::from(n) * 20_000_000;
        for (k, (from, to)) in hops.iter().enumerate() {
            let mut p = speech_rtp(i, n, u32::from(n) * 160, 0x7100_0000 | (k as u32) << 20 | i);
            let seq = n.wrapping_add(1000 * k as u16);
            p[2..4].copy_from_slice(&seq.to_be_bytes());
            c.add(t + k as u64 * 2_000_000, *from, *to, p);
        }
    }
    let (a_from, a_to) = (sig(hops[0].0), sig(hops[0].1));
    let bye = |cseq| sip("BYE sip:b@x SIP/2.0", &cids[0], cseq, true, None);
    c.add(t0 + 520_000_000, a_from, a_to, bye("2 BYE"));
    let ok = |cseq| sip("SIP/2.0 200 OK", &cids[0], cseq, true, None);
    c.add(t0 + 521_000_000, a_to, a_from, ok("2 BYE"));
    // The same Call-ID again, a new initial INVITE: the first leg closes.
    let again = sip("INVITE sip:b@x SIP/2.0", &cids[0], "3 INVITE", false, None);
    c.add(t0 + 530_000_000, a_from, a_to, again);
    c.add(t0 + 570_000_000, a_to, a_from, ok("3 INVITE"));
    // It ends 1.5 s after the other legs, with which the old first leg
    // closes (their logical call), so not at the same sweep.
    c.add(t0 + 3_500_000_000, a_from, a_to, bye("4 BYE"));
    c.add(t0 + 3_500_000_001, a_to, a_from, ok("4 BYE"));
    for ((from, to), cid) in hops.iter().zip(&cids).skip(1) {
        let bye = sip("BYE sip:b@x SIP/2.0", cid, "2 BYE", true, None);
        c.add(t0 + 2 * S, sig(*from), sig(*to), bye);
        let ok = sip("SIP/2.0 200 OK", cid, "2 BYE", true, None);
        c.add(t0 + 2 * S + 1, sig(*to), sig(*from), ok);
    }
}

/// SIP message `raw` of Call-ID `cid` with an X-Call-ID header naming `other`.
fn named(raw: Vec<u8>, cid: &str, other: &str) -> Vec<u8> {
    let text = String::from_utf8(raw).unwrap();
    let at = format!("Call-ID: {cid}\r\n");
    text.replacen(&at, &format!("{at}X-Call-ID: {other}\r\n"), 1)
        .into_bytes()
}

/// Relayed calls whose two legs' streams go to different workers with `n`.
fn cross_worker_relays(calls: std::ops::Range<u32>, n: usize) -> usize {
    let sock = |(ip, port): Endpoint| std::net::SocketAddr::from((ip, port));
    calls
        .filter(|&i| {
            let (_, relay_a, _, callee) = relay_media(i);
            worker_of(sock(relay_a), n) != worker_of(sock(callee), n)
        })
        .count()
}

/// Relayed calls behind a NAT whose forwarded stream goes to another
/// worker than the one that latched its destination, with `n` workers.
fn cross_worker_relay_nat(calls: std::ops::Range<u32>, n: usize) -> usize {
    let sock = |(ip, port): Endpoint| std::net::SocketAddr::from((ip, port));
    calls
        .filter(|&i| {
            let (_, _, relay_b, _) = relay_media(i);
            worker_of(sock(relay_nat(i).0), n) != worker_of(sock(relay_b), n)
        })
        .count()
}

/// Turning double-NAT calls whose traffic from A's latched address to B's
/// public one goes to another worker than the one that latched it.
fn cross_worker_turn(calls: std::ops::Range<u32>, n: usize) -> usize {
    let sock = |(ip, port): Endpoint| std::net::SocketAddr::from((ip, port));
    calls
        .filter(|&i| worker_of(sock(double_nat(i).1), n) != worker_of(sock(callee_media(i)), n))
        .count()
}

/// SDP delayed behind its RTP, re-INVITEs changing ports, a capture
/// starting mid-call, media outliving quiet signalling (idle timeouts
/// agreed between workers), NAT latching with one side or both behind
/// NATs (traffic held for a latched address, non-RTP among it; traffic
/// from a latched address to one no SDP named), relayed calls linked by
/// media (one leg's stream the call's only by a latch), worker 1 stalled
/// before each batch (its parts come late, its queue fills, the
/// dispatcher waits): 1 worker and 2, 4, 8 give the same outputs. Then a worker that fails fails the import.
#[test]
fn races_give_the_same_outputs_with_2_4_and_8_engine_workers() {
    let tmp = tempfile::tempdir().unwrap();
    let pcap = tmp.path().join("races.pcap");
    let mut c = Capture::new(&pcap);
    for i in 0..120 {
        race_call(&mut c, i, i % 4);
    }
    for i in 120..150 {
        race_call(&mut c, i, 4);
    }
    for i in 150..180 {
        race_call(&mut c, i, 5);
    }
    for i in 180..210 {
        relayed_call(&mut c, i, false);
    }
    for i in 210..240 {
        race_call(&mut c, i, 6);
    }
    for i in 240..270 {
        relayed_call(&mut c, i, true);
    }
    for i in 270..290 {
        chained_call(&mut c, i);
    }
    for n in [2, 4, 8] {
        let cross = cross_worker_double_nat(150..180, n);
        assert!(cross >= 5, "{n} workers: {cross} double-NAT calls cross");
        let cross = cross_worker_relays(180..210, n);
        assert!(cross >= 5, "{n} workers: {cross} relayed calls cross");
        let cross = cross_worker_turn(210..240, n);
        assert!(cross >= 5, "{n} workers: {cross} turning calls cross");
        let cross = cross_worker_relay_nat(240..270, n);
        assert!(cross >= 5, "{n} workers: {cross} relayed NAT calls cross");
    }
    // Time moves on past every idle timeout.
    let (x, y) = (
        (Ipv4Addr::new(10, 9, 0, 1), 5060),
        (Ipv4Addr::new(10, 9, 0, 2), 5060),
    );
    c.add(
        60 * S,
        x,
        y,
        sip("OPTIONS sip:b@x SIP/2.0", "late", "1 OPTIONS", false, None),
    );
    c.write();
    let mut cfg = PipelineConfig::default();
    cfg.calls.idle_timeout_ns = 3 * S;
    cfg.calls.orphan_max_age_ns = 3 * S;
    cfg.calls.media_only_idle_ns = 2 * S;
    cfg.engine_faults.stall = Some((1, std::time::Duration::from_millis(1)));
    let diffs = compare(&pcap, tmp.path(), &cfg);
    assert!(diffs.is_empty(), "{diffs:?}");
    // What the capture exercised, so that this cannot pass on less.
    let one = tmp.path().join("races.pcap-1");
    let calls = voxtap_e2e::read_csv(&one.join("calls.csv"));
    assert_eq!(
        calls.len(),
        180 + 120 + 20 * 4,
        "30 of each kind but the mid-call ones, two legs per relayed call, \
         three per chained call and the first leg's second call"
    );
    // The call's number (race-N@voxtap.test, relay-b-N@...), which says
    // its kind.
    let kind_of = |range: std::ops::Range<u32>| {
        move |r: &&std::collections::HashMap<String, String>| {
            let id = r["call_id"].trim_end_matches("@voxtap.test");
            id.strip_prefix("race-")
                .or_else(|| id.strip_prefix("relay-b-"))
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|i| range.contains(&i))
        }
    };
    for method in ["media-ssrc", "media-payload"] {
        for (range, what) in [(180..210, "relayed"), (240..270, "relayed NAT")] {
            let linked = calls
                .iter()
                .filter(|r| r["call_id"].starts_with("relay-b-"))
                .filter(kind_of(range))
                .filter(|r| r["links"].starts_with("relay-a-") && r["links"].ends_with(method))
                .count();
            assert_eq!(linked, 15, "{what} calls' B legs linked by {method}");
        }
    }
    let nat_latched = calls
        .iter()
        .filter(kind_of(120..150))
        .filter(|r| r["latched"].contains("198.51."))
        .count();
    assert_eq!(
        nat_latched, 30,
        "the NAT calls latched their public address"
    );
    let both_latched = calls
        .iter()
        .filter(kind_of(150..180))
        .filter(|r| r["latched"].contains("198.51.") && r["streams"] == "2")
        .count();
    assert_eq!(
        both_latched, 30,
        "the double-NAT calls latched A's public address and kept B's return stream"
    );
    // Where the sweep came between the first leg's first packet and its
    // end, its evidence was weighed while it was open: the first leg is
    // then linked too.
    let chained = calls
        .iter()
        .filter(|r| r["call_id"].starts_with("chain-c-"))
        .filter(|r| r["links"].starts_with("chain-") && r["links"].ends_with("media-payload"))
        .count();
    assert_eq!(chained, 20, "the third legs of the chained calls linked");
    let reused = calls
        .iter()
        .filter(|r| r["call_id"].starts_with("chain-a-"))
        .count();
    assert_eq!(reused, 40, "each first leg's Call-ID started a second call");
    let named = calls
        .iter()
        .filter(|r| r["call_id"].starts_with("chain-b-"))
        .filter(|r| r["links"].contains("chain-a-") && r["links"].contains("header"))
        .count();
    assert_eq!(named, 20, "the second legs linked to the first by a header");
    let with_stun = calls
        .iter()
        .filter(kind_of(150..180))
        .filter(|r| {
            let pcap = std::fs::read(one.join(&r["pcap"])).unwrap();
            pcap.windows(STUN_ID.len()).any(|w| w == STUN_ID)
        })
        .count();
    assert_eq!(with_stun, 30, "the double-NAT calls' pcaps hold B's STUN");
    let turned = calls
        .iter()
        .filter(kind_of(210..240))
        .filter(|r| r["latched"].contains("198.51.") && r["streams"] == "3")
        .count();
    assert_eq!(
        turned, 30,
        "the turning calls kept A's stream to B's public address"
    );
    let timed_out = calls
        .iter()
        .filter(|r| r["end_reason"] == "idle_timeout")
        .count();
    assert_eq!(timed_out, 30);
    let streams = voxtap_e2e::read_csv(&one.join("streams.csv"));
    let media_only: std::collections::HashSet<_> = streams
        .iter()
        .filter(|r| r["call_id"].is_empty())
        .map(|r| (r["src"].clone(), r["dst"].clone()))
        .collect();
    assert_eq!(media_only.len(), 60, "both directions of 30 mid-call pairs");
    let in_calls = streams.iter().filter(|r| !r["call_id"].is_empty()).count();
    assert_eq!(
        in_calls,
        30 * 2 + 30 * 4 + 30 * 2 + 30 * 2 + 30 * 2 + 30 * 2 + 30 * 3 + 30 * 3 + 20 * 3,
        "streams of calls"
    );
    a_failing_worker_fails_the_import(&pcap, tmp.path(), cfg);
}

/// A media worker that panics at a sweep: the others do not wait for it
/// for ever, and the import says what happened.
fn a_failing_worker_fails_the_import(pcap: &Path, tmp: &Path, mut cfg: PipelineConfig) {
    cfg.engine_faults = Default::default();
    cfg.engine_faults.panic_at_sweep = Some((2, 5));
    let opts = ImportOptions {
        files: vec![pcap.to_path_buf()],
        out: tmp.join("failing"),
        pipeline: cfg,
        call_files: true,
        media: None,
    };
    let err = run_import_engine(&opts, 1, 4, &|_| {}).expect_err("a worker failed");
    let text = err.to_string();
    assert!(
        text.contains("media worker 2 failed") && text.contains("fails at sweep 5"),
        "{text}"
    );
}

/// A media server that receives every call on one port: with the
/// destination rule all of its streams would load one worker; configured
/// as shared media, they spread by both ends, and the outputs still equal
/// one pipeline's.
#[test]
fn a_shared_media_endpoint_spreads_over_the_workers_with_the_same_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let pcap = tmp.path().join("media-server.pcap");
    let server: std::net::SocketAddrV4 = "10.3.0.1:5004".parse().unwrap();
    let cfg = voxtap_engine::synth::SynthConfig {
        calls: 400,
        seconds: 4,
        media_server: Some(server),
        ..Default::default()
    };
    let f = std::fs::File::create(&pcap).unwrap();
    voxtap_engine::synth::generate(&cfg, std::io::BufWriter::new(f)).unwrap();
    let one = tmp.path().join("one");
    import_n(
        std::slice::from_ref(&pcap),
        &one,
        1,
        &PipelineConfig::default(),
    );
    let streams = voxtap_e2e::read_csv(&one.join("streams.csv"));
    let to_server = streams.iter().filter(|r| r["dst"] == server.to_string());
    assert_eq!(to_server.count(), 400, "each call's stream to the server");
    let shared = PipelineConfig {
        shared_media: vec![server.into()],
        ..Default::default()
    };
    let media_frames = |pipeline: &PipelineConfig, out: &str| {
        let out = tmp.path().join(out);
        let report = import_engine(&pcap, &out, 4, pipeline);
        assert_eq!(differences(&one, &out), Vec::<String>::new(), "{out:?}");
        // Every worker sees every SIP frame: what is left is its media.
        let sip = report.engine.dispatch.broadcast;
        let frames: Vec<u64> = report
            .engine
            .workers
            .iter()
            .map(|w| w.frames - sip)
            .collect();
        let mean = frames.iter().sum::<u64>() as f64 / frames.len() as f64;
        (*frames.iter().max().unwrap() as f64 / mean, frames)
    };
    let (by_dst, frames) = media_frames(&PipelineConfig::default(), "dst");
    // Half the media goes to the server: one worker holds at least that.
    assert!(by_dst >= 2.0, "by destination: {frames:?}");
    let (by_pair, frames) = media_frames(&shared, "pair");
    assert!(by_pair < 1.25, "shared media, by both ends: {frames:?}");
}

fn import_engine(
    pcap: &Path,
    out: &Path,
    n: usize,
    pipeline: &PipelineConfig,
) -> voxtap_engine::import::ImportReport {
    let opts = ImportOptions {
        files: vec![pcap.to_path_buf()],
        out: out.to_path_buf(),
        pipeline: pipeline.clone(),
        call_files: true,
        media: None,
    };
    run_import_engine(&opts, 1, n, &|_| {}).unwrap()
}
