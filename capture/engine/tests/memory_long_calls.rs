//! Memory of long calls: `VOXTAP_BENCH_LONG_CALLS` concurrent calls
//! (default 5,000; INVITE + 200 OK with SDP, then G.711 RTP both ways every
//! 20 ms) held open through `VOXTAP_BENCH_MINUTES` minutes of capture time
//! (default 10, at least 1), built through the pipeline's call table. Prints
//! RSS per call after each minute: with the spill (the default) the last
//! minute should equal the first; `VOXTAP_BENCH_SPILL=off` keeps every
//! packet reference in memory (the engine before the spill).
//! Ignored by default; run it optimised:
//! `cargo test -p voxtap-engine --release --test memory_long_calls -- --ignored --nocapture`

use std::net::Ipv4Addr;
use std::time::Instant;

use voxtap_engine::calls::PacketRef;
use voxtap_engine::pipeline::{Pipeline, PipelineConfig};
use voxtap_engine::synth::udp_frame;
use voxtap_proto::pcapio::LinkType;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident set size of this process (VmRSS), bytes.
fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

fn ip(side: u32, i: u32) -> Ipv4Addr {
    // 10.side.x.y: 65536 hosts per side, then the next /16.
    Ipv4Addr::from(0x0a00_0000 | ((side + 2 * (i >> 16)) << 16) | (i & 0xffff))
}

fn port(i: u32) -> u16 {
    20_000 + 2 * (i % 20_000) as u16
}

fn sdp(a: Ipv4Addr, port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {a}\r\ns=-\r\nc=IN IP4 {a}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n"
    )
}

fn sip(start: &str, i: u32, to_tag: bool, body: &str) -> Vec<u8> {
    let (a, b) = (ip(1, i), ip(2, i));
    format!(
        "{start}\r\nVia: SIP/2.0/UDP {a}:5060;branch=z9hG4bKm{i}\r\nFrom: <sip:+4420{i:07}@{a}>;tag=f{i}\r\nTo: <sip:+4430{i:07}@{b}>{tt}\r\nCall-ID: long-{i}@voxtap.test\r\nCSeq: 1 INVITE\r\nContact: <sip:{a}:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len(),
        tt = if to_tag { format!(";tag=t{i}") } else { String::new() },
    )
    .into_bytes()
}

fn rtp(seq: u16, ssrc: u32) -> [u8; 172] {
    let mut p = [0xffu8; 172];
    p[0] = 0x80;
    p[1] = 0;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p
}

/// Feeds frames with references as a capture file would have them.
struct Feed {
    p: Pipeline,
    frame: Vec<u8>,
    n: u64,
}

impl Feed {
    fn udp(&mut self, ts: u64, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) {
        udp_frame(&mut self.frame, src, dst, payload);
        // 230 bytes a record, as G.711 frames in a pcap.
        let r = PacketRef::new(0, 24 + self.n * 230);
        self.p.process(LinkType::Ethernet, ts, r, &self.frame);
        self.n += 1;
    }

    fn answer(&mut self, ts: u64, i: u32) {
        let (a, b) = (ip(1, i), ip(2, i));
        let invite = format!("INVITE sip:+4430{i:07}@{b} SIP/2.0");
        let inv = sip(&invite, i, false, &sdp(a, port(i)));
        self.udp(ts, (a, 5060), (b, 5060), &inv);
        let ok = sip("SIP/2.0 200 OK", i, true, &sdp(b, port(i)));
        self.udp(ts + 1, (b, 5060), (a, 5060), &ok);
    }

    fn rtp_round(&mut self, ts: u64, seq: u16, calls: u32) {
        for i in 0..calls {
            let (a, b, pt) = (ip(1, i), ip(2, i), port(i));
            self.udp(ts, (a, pt), (b, pt), &rtp(seq, i));
            self.udp(ts, (b, pt), (a, pt), &rtp(seq, !i));
        }
    }
}

#[test]
#[ignore = "benchmark: run in release"]
fn memory_of_long_calls() {
    let calls = env_u64("VOXTAP_BENCH_LONG_CALLS", 5_000) as u32;
    let minutes = env_u64("VOXTAP_BENCH_MINUTES", 10).max(1);
    let mut cfg = PipelineConfig::default();
    // No call may time out or be refused during the measurement.
    cfg.calls.idle_timeout_ns = 3600 * 1_000_000_000;
    cfg.calls.max_calls = calls as usize + 1;
    let spill = std::env::var("VOXTAP_BENCH_SPILL").as_deref() != Ok("off");
    if !spill {
        cfg.calls.spill_dir = None;
    }
    let mut f = Feed {
        p: Pipeline::new(cfg),
        frame: Vec::with_capacity(2048),
        n: 0,
    };
    let start = 1_767_225_600 * 1_000_000_000u64;
    let rss0 = rss_bytes();
    for i in 0..calls {
        f.answer(start, i);
    }
    let t0 = Instant::now();
    let mut per_minute = Vec::new();
    // 3,000 rounds of 20 ms a minute.
    for round in 0..minutes * 3_000 {
        f.rtp_round(start + 1_000 + round * 20_000_000, round as u16, calls);
        if (round + 1) % 3_000 == 0 {
            per_minute.push(rss_bytes().saturating_sub(rss0) / u64::from(calls));
        }
    }
    assert_eq!(f.p.open_calls(), calls as usize, "every call open");
    let s = f.p.calls_mut().spill_stats().unwrap_or_default();
    println!(
        "BENCH {{\"probe\": \"memory_long_calls\", \"spill\": {spill}, \"calls\": {calls}, \"minutes\": {minutes}, \"packets\": {}, \"rss_bytes_per_call_each_minute\": {per_minute:?}, \"reference_bytes_held\": {}, \"spill_chunks\": {}, \"spill_segments\": {}, \"seconds\": {:.1}}}",
        f.n,
        f.p.calls_mut().packet_bytes_held(),
        s.chunks,
        s.segments,
        t0.elapsed().as_secs_f64()
    );
}
