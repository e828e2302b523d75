//! HEP export from the parallel engine (`import --hep --engine-workers N`):
//! a UDP collector on loopback gets the same HEP packets with N = 2 and 4
//! as with the single-threaded pipeline, byte for byte: the SIP messages in
//! the same order, the same RTCP (in the same order per direction) and the
//! same quality reports, each once. The counts are also checked against
//! tshark's reading of the capture and streams.csv.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use voxtap_e2e::{corpus, read_csv, tshark};
use voxtap_engine::import::{ImportOptions, run_import_engine};
use voxtap_engine::parallel::worker_of;
use voxtap_engine::pipeline::PipelineConfig;
use voxtap_engine::synth::held::g711;
use voxtap_engine::synth::{sender_report, udp_frame};
use voxtap_proto::pcapio::{LinkType, PcapWriter};
use voxtap_sensor::hep::export::HepExport;
use voxtap_sensor::hep::{CollectorConfig, HepConfig, Transport};

/// A UDP collector on loopback, read on its own thread into a list.
struct Collector {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Collector {
    fn start() -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        // A burst must not overflow the socket before the thread reads it.
        let size: libc::c_int = 8 << 20;
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            // SAFETY: a valid socket and an int option of its size.
            let r = unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if r == 0 {
                break;
            }
        }
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (Arc::clone(&got), Arc::clone(&stop));
        let thread = thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !s.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    g.lock().unwrap().push(buf[..n].to_vec());
                }
            }
        });
        Collector {
            addr,
            got,
            stop,
            thread,
        }
    }

    /// What came, once `n` packets are in (waiting at most 30 s).
    fn take(self, n: u64) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while (self.got.lock().unwrap().len() as u64) < n && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        std::mem::take(&mut *self.got.lock().unwrap())
    }
}

/// The HEP packets a collector got, by kind: SIP in arrival order, RTCP in
/// arrival order within each direction (sorted by direction), reports
/// sorted (the joining thread's order within a sweep is not defined).
#[derive(Debug, PartialEq)]
struct Received {
    sip: Vec<Vec<u8>>,
    rtcp: Vec<Vec<u8>>,
    reports: Vec<Vec<u8>>,
}

fn by_kind(pkts: Vec<Vec<u8>>) -> Received {
    let mut r = Received {
        sip: Vec::new(),
        rtcp: Vec::new(),
        reports: Vec::new(),
    };
    let mut rtcp = Vec::new();
    for p in pkts {
        let h = hep::parse_packet(&p).expect("the hep crate decodes our packet");
        match h.proto_type {
            hep::CapProtoType::Sip => r.sip.push(p),
            hep::CapProtoType::Rtcp => {
                let dir = (
                    (h.ipv4_src_address, h.ipv6_src_address, h.proto_src_port),
                    (h.ipv4_dst_address, h.ipv6_dst_address, h.proto_dst_port),
                );
                rtcp.push((dir, p));
            }
            hep::CapProtoType::MosFull => r.reports.push(p),
            other => panic!("unexpected HEP type {other:?}"),
        }
    }
    // Stable: each direction keeps its arrival order.
    rtcp.sort_by_key(|(dir, _)| *dir);
    r.rtcp = rtcp.into_iter().map(|(_, p)| p).collect();
    r.reports.sort();
    r
}

/// Imports `file` with `n` engine workers and HEP to a UDP collector:
/// what the collector got, and the output directory.
fn export(file: &Path, n: usize, pipeline: &PipelineConfig) -> (Received, tempfile::TempDir) {
    let collector = Collector::start();
    let export = HepExport::new(
        HepConfig {
            enabled: true,
            capture_agent_id: 77,
            collectors: vec![CollectorConfig::new(
                &collector.addr.to_string(),
                Transport::Udp,
            )],
            ..Default::default()
        },
        None,
    )
    .unwrap();
    let mut pipeline = pipeline.clone();
    pipeline.tap = Some(export.tap_factory());
    let out = tempfile::tempdir().unwrap();
    let opts = ImportOptions {
        files: vec![file.to_path_buf()],
        out: out.path().to_path_buf(),
        pipeline,
        call_files: false,
        media: None,
    };
    // The exporter's last tap is dropped before the import returns, and
    // flushes the queue.
    run_import_engine(&opts, 1, n, &|_| {}).unwrap();
    let st = export.counters().snapshot();
    let c = &st.collectors[0];
    assert_eq!(c.dropped_queue_full + c.dropped_send_error, 0, "{c:?}");
    assert_eq!(c.queue_depth + c.dropped_at_stop, 0, "{c:?}");
    assert_eq!(c.sent, st.sip + st.rtcp + st.reports, "{st:?}");
    let got = collector.take(c.sent);
    assert_eq!(
        got.len() as u64,
        c.sent,
        "the collector got every packet sent"
    );
    (by_kind(got), out)
}

/// What tshark reads in `file`: SIP messages (one CSeq per message, so a
/// TCP segment with two messages counts two) and plain RTCP compounds with
/// a sender or receiver report (SRTCP is not exported: it is encrypted).
fn tshark_counts(file: &Path) -> (usize, usize) {
    let out = tshark(&[
        "-r",
        file.to_str().unwrap(),
        "-Y",
        "sip || rtcp || srtcp",
        "-T",
        "fields",
        "-e",
        "sip.CSeq",
        "-e",
        "rtcp.pt",
        "-e",
        "srtcp.e",
        "-E",
        "separator=;",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=|",
    ]);
    let (mut sip, mut rtcp) = (0, 0);
    for line in out.lines() {
        let f: Vec<&str> = line.split(';').collect();
        sip += f[0].split('|').filter(|c| !c.is_empty()).count();
        let report = f[1].split('|').any(|pt| pt == "200" || pt == "201");
        rtcp += usize::from(report && f[2].is_empty());
    }
    (sip, rtcp)
}

/// N = 1 against N = 2 and 4; also against tshark and streams.csv.
/// Returns what N = 1 exported.
fn same_with_2_and_4(file: &Path, pipeline: &PipelineConfig) -> Received {
    let (one, dir) = export(file, 1, pipeline);
    let name = file.display();
    let (sip, rtcp) = tshark_counts(file);
    assert_eq!(
        (one.sip.len(), one.rtcp.len()),
        (sip, rtcp),
        "{name}: SIP, RTCP"
    );
    let streams = read_csv(&dir.path().join("streams.csv"));
    let in_calls = streams.iter().filter(|s| !s["call_id"].is_empty()).count();
    assert_eq!(one.reports.len(), in_calls, "{name}: one report per stream");
    for n in [2, 4] {
        let (par, _) = export(file, n, pipeline);
        assert_eq!(par.sip, one.sip, "{name}, N = {n}: SIP");
        assert_eq!(par.rtcp, one.rtcp, "{name}, N = {n}: RTCP");
        assert_eq!(par.reports, one.reports, "{name}, N = {n}: reports");
    }
    one
}

#[test]
fn corpus_captures_export_the_same_hep_with_2_and_4_engine_workers() {
    let mut kinds = [0usize; 3];
    for rel in [
        "generated/baresip-pcma-hold-resume-dtmf-rtcp.pcap",
        "generated/baresip-b2bua-2legs-srtp-to-rtp.pcap",
        "generated/sipp-netns-tcp-2calls.pcap",
        "generated/sipp-loopback-3calls-rtpecho.pcap",
        "sngrep/ipv6frag.pcap",
    ] {
        let got = same_with_2_and_4(&corpus(rel), &PipelineConfig::default());
        kinds[0] += got.sip.len();
        kinds[1] += got.rtcp.len();
        kinds[2] += got.reports.len();
    }
    // What the captures exercised: SIP over UDP, TCP and in fragments,
    // RTCP of two calls (of the B2BUA's, its plain leg's), reports.
    assert_eq!(kinds[0], 12 + 12 + 12 + 18 + 32);
    assert_eq!(kinds[1], 2 + 2);
    assert!(kinds[2] >= 10, "{kinds:?}");
}

const S: u64 = 1_000_000_000;

type Endpoint = (Ipv4Addr, u16);

fn caller(i: u32) -> Endpoint {
    (
        Ipv4Addr::new(10, 1, (i >> 8) as u8, i as u8),
        20_000 + 2 * i as u16,
    )
}

fn callee(i: u32) -> Endpoint {
    (
        Ipv4Addr::new(10, 2, (i >> 8) as u8, i as u8),
        30_000 + 2 * i as u16,
    )
}

fn sip(start: &str, i: u32, cseq: &str, to_tag: bool, sdp: Option<Endpoint>) -> Vec<u8> {
    let body = sdp.map_or_else(String::new, |(ip, port)| {
        format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
        )
    });
    let tag = if to_tag { ";tag=b" } else { "" };
    let ctype = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{start}\r\nVia: SIP/2.0/UDP 10.1.0.1:5060;branch=z9hG4bK{i}{}\r\nFrom: <sip:a{i}@x>;tag=a\r\nTo: <sip:b{i}@x>{tag}\r\nCall-ID: hep-{i}@voxtap.test\r\nCSeq: {cseq}\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
        cseq.len(),
        body.len()
    )
    .into_bytes()
}

/// `calls` calls 2 s long, 100 ms apart: SIP on port 5060, RTP both ways
/// and a sender report each way every second on the RTP port + 1.
fn synthetic(path: &Path, calls: u32) {
    let mut events: Vec<(u64, Endpoint, Endpoint, Vec<u8>)> = Vec::new();
    for i in 0..calls {
        let t = S + u64::from(i) * S / 10;
        let (a, b) = (caller(i), callee(i));
        let (sa, sb) = ((a.0, 5060), (b.0, 5060));
        let invite = format!("INVITE sip:b{i}@x SIP/2.0");
        events.push((t, sa, sb, sip(&invite, i, "1 INVITE", false, Some(a))));
        let ok = "SIP/2.0 200 OK";
        events.push((t + S / 100, sb, sa, sip(ok, i, "1 INVITE", true, Some(b))));
        let ack = format!("ACK sip:b{i}@x SIP/2.0");
        events.push((t + S / 50, sa, sb, sip(&ack, i, "1 ACK", true, None)));
        for k in 0..100u16 {
            let ts = t + S / 20 + u64::from(k) * S / 50;
            events.push((ts, a, b, g711(k, 2 * i).to_vec()));
            events.push((ts + 1000, b, a, g711(k, 2 * i + 1).to_vec()));
        }
        for k in 1..=2u32 {
            let ts = t + u64::from(k) * S;
            let (ra, rb) = ((a.0, a.1 + 1), (b.0, b.1 + 1));
            events.push((ts, ra, rb, sender_report(2 * i, 50 * k)));
            events.push((ts + 1000, rb, ra, sender_report(2 * i + 1, 50 * k)));
        }
        let bye = format!("BYE sip:b{i}@x SIP/2.0");
        events.push((t + 21 * S / 10, sa, sb, sip(&bye, i, "2 BYE", true, None)));
        events.push((t + 22 * S / 10, sb, sa, sip(ok, i, "2 BYE", true, None)));
    }
    // Stable: frames at the same time keep the order they were added.
    events.sort_by_key(|e| e.0);
    let f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut w = PcapWriter::new(f, LinkType::Ethernet, 65535).unwrap();
    let mut frame = Vec::new();
    for (ts, src, dst, payload) in events {
        udp_frame(&mut frame, src, dst, &payload);
        w.write_packet(ts, frame.len() as u32, &frame).unwrap();
    }
    w.flush().unwrap();
}

/// Forty calls whose media (and RTCP) go to every one of 2 and of 4
/// workers: the same HEP as one pipeline, 5 SIP messages and 4 RTCP
/// reports per call as tshark reads them, 2 quality reports per call.
#[test]
fn calls_spread_over_workers_export_the_same_hep_with_2_and_4_engine_workers() {
    let tmp = tempfile::tempdir().unwrap();
    let pcap: PathBuf = tmp.path().join("calls.pcap");
    let calls = 40;
    synthetic(&pcap, calls);
    for n in [2, 4] {
        let owners: BTreeSet<usize> = (0..calls)
            .flat_map(|i| [caller(i), callee(i)])
            .map(|(ip, port)| worker_of(SocketAddr::from((ip, port + 1)), n))
            .collect();
        assert_eq!(owners.len(), n, "RTCP for every one of {n} workers");
    }
    let one = same_with_2_and_4(&pcap, &PipelineConfig::default());
    assert_eq!(one.sip.len(), 5 * calls as usize);
    assert_eq!(one.rtcp.len(), 4 * calls as usize);
    assert_eq!(one.reports.len(), 2 * calls as usize);
}
