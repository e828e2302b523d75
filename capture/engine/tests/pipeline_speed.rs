//! Plain-traffic speed of the one packet path (`Pipeline::process`: decode,
//! classify, calls), in packets per CPU second: synthetic G.711 calls (SIP
//! and RTP over UDP, as `voxtap synth` writes them) and the corpus's SIPp
//! calls over TCP, each looped through fresh pipelines. Issue 16 asks that
//! SIP over SCTP, WebSocket and TLS leave plain traffic no slower: this is
//! the before/after figure. Ignored by default; run it optimised:
//! `cargo test -p voxtap-engine --release --test pipeline_speed -- --ignored --nocapture`

use std::path::PathBuf;

use voxtap_engine::calls::PacketRef;
use voxtap_engine::pipeline::{Pipeline, PipelineConfig};
use voxtap_engine::synth::{SynthConfig, generate};
use voxtap_proto::pcapio::{LinkType, PcapReader};

/// CPU time of this thread (Linux: the first field of schedstat, ns).
fn thread_cpu_s() -> f64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    s.split_whitespace().next().unwrap().parse::<f64>().unwrap() / 1e9
}

/// A pcap's records, read once so the timing is of the pipeline alone.
fn records(bytes: Vec<u8>) -> Vec<(LinkType, u64, u64, Vec<u8>)> {
    let mut r = PcapReader::new(std::io::Cursor::new(bytes)).unwrap();
    let mut out = Vec::new();
    while let Some(rec) = r.next_packet().unwrap() {
        out.push((rec.link, rec.ts_ns, rec.offset, rec.data.to_vec()));
    }
    out
}

/// Packets per CPU second over `rounds` fresh pipelines, best of `runs`.
fn speed(recs: &[(LinkType, u64, u64, Vec<u8>)], rounds: usize, runs: usize) -> f64 {
    let mut best = 0f64;
    for _ in 0..runs {
        let t0 = thread_cpu_s();
        let mut calls = 0;
        for _ in 0..rounds {
            let mut p = Pipeline::new(PipelineConfig::default());
            for (link, ts, off, data) in recs {
                p.process(*link, *ts, PacketRef::new(0, *off), data);
                calls += p.drain_ended().len();
            }
            p.finish();
            calls += p.drain_ended().len();
        }
        assert!(calls > 0, "no call came out");
        let cpu = thread_cpu_s() - t0;
        best = best.max((recs.len() * rounds) as f64 / cpu);
    }
    best
}

#[test]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
fn plain_traffic_packets_per_cpu_second() {
    let mut buf = Vec::new();
    let cfg = SynthConfig {
        calls: 500,
        seconds: 10,
        ..Default::default()
    };
    generate(&cfg, &mut buf).unwrap();
    let udp = records(buf);
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
    let tcp = records(std::fs::read(corpus.join("generated/sipp-netns-tcp-2calls.pcap")).unwrap());
    // Best of 5 runs; VOXTAP_BENCH_RUNS=1 for one run under an instruction
    // counter (`valgrind --tool=callgrind`), which a loaded machine does
    // not disturb.
    let runs = std::env::var("VOXTAP_BENCH_RUNS").map_or(5, |v| v.parse().unwrap());
    let s_udp = speed(&udp, 1, runs);
    let s_tcp = speed(&tcp, 200, runs);
    println!(
        "synthetic UDP (500 calls x 10 s, {} packets): {:.0} packets/CPU s",
        udp.len(),
        s_udp
    );
    println!(
        "SIPp over TCP (corpus, {} packets x 200): {:.0} packets/CPU s",
        tcp.len(),
        s_tcp
    );
}
