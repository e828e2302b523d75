//! HEP export and listener against real captures.
//!
//! What voxtap sends is decoded by the `hep` crate (an HEP parser written by
//! others; tshark 4.0 has no HEP dissector) and checked field by field
//! against tshark's reading of the same pcap. The listener is fed the
//! corpus SIP as HEP and must rebuild the same calls as `import` of the pcap.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use voxtap_e2e::{corpus, import, import_with, read_csv, tshark};
use voxtap_engine::pipeline::PipelineConfig;
use voxtap_sensor::hep::export::HepExport;
use voxtap_sensor::hep::listen::{ListenOptions, Listener};
use voxtap_sensor::hep::{CollectorConfig, HepConfig, Transport};

const AGENT: u32 = 4242;
const KEY: &str = "k3y-for-homer";

fn export_cfg(collectors: Vec<CollectorConfig>) -> HepConfig {
    HepConfig {
        enabled: true,
        capture_agent_id: AGENT,
        auth_key: KEY.into(),
        collectors,
        ..Default::default()
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Splits a HEP/TCP byte stream at each packet's length field (bytes 4-5).
fn split_stream(mut s: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while s.len() >= 6 {
        assert_eq!(&s[..4], b"HEP3", "stream out of step");
        let n = usize::from(u16::from_be_bytes([s[4], s[5]]));
        assert!(n >= 6 && n <= s.len(), "bad HEP length {n}");
        out.push(s[..n].to_vec());
        s = &s[n..];
    }
    assert!(s.is_empty(), "{} trailing bytes", s.len());
    out
}

struct TsharkSip {
    sec: u32,
    usec: u32,
    src: String,
    sport: u16,
    dst: String,
    dport: u16,
    call_id: String,
    payload: Vec<u8>,
}

fn tshark_sip(file: &Path) -> Vec<TsharkSip> {
    let out = tshark(&[
        "-r",
        file.to_str().unwrap(),
        "-Y",
        "sip && udp",
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-e",
        "frame.time_epoch",
        "-e",
        "ip.src",
        "-e",
        "udp.srcport",
        "-e",
        "ip.dst",
        "-e",
        "udp.dstport",
        "-e",
        "sip.Call-ID",
        "-e",
        "udp.payload",
    ]);
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            let (s, frac) = f[0].split_once('.').unwrap();
            TsharkSip {
                sec: s.parse().unwrap(),
                usec: frac[..6].parse().unwrap(),
                src: f[1].into(),
                sport: f[2].parse().unwrap(),
                dst: f[3].into(),
                dport: f[4].parse().unwrap(),
                call_id: f[5].into(),
                payload: hex(&f[6].replace(':', "")),
            }
        })
        .collect()
}

fn addr(c: &hep::Chunk) -> (String, String) {
    (
        c.ipv4_src_address.to_string(),
        c.ipv4_dst_address.to_string(),
    )
}

#[test]
fn export_to_udp_and_tcp_collectors_matches_tshark() {
    let file = corpus("generated/baresip-pcma-hold-resume-dtmf-rtcp.pcap");
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_addr = tcp.local_addr().unwrap();
    // The TCP collector reads until the exporter closes the connection.
    let tcp_reader = thread::spawn(move || {
        let (mut s, _) = tcp.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        all
    });
    let status_dir = tempfile::tempdir().unwrap();
    let export = HepExport::new(
        export_cfg(vec![
            CollectorConfig::new(&udp.local_addr().unwrap().to_string(), Transport::Udp),
            CollectorConfig::new(&tcp_addr.to_string(), Transport::Tcp),
        ]),
        Some(status_dir.path().to_path_buf()),
    )
    .unwrap();
    let cfg = PipelineConfig {
        tap: Some(export.tap_factory()),
        ..Default::default()
    };
    // The import drops its pipeline, and so the tap, which flushes both
    // queues before returning.
    let (dir, _) = import_with(std::slice::from_ref(&file), cfg);

    let mut from_udp = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while let Ok(n) = udp.recv(&mut buf) {
        from_udp.push(buf[..n].to_vec());
    }
    let from_tcp = split_stream(&tcp_reader.join().unwrap());
    assert_eq!(
        from_udp, from_tcp,
        "both collectors get the same packets in the same order"
    );
    let st = export.counters().snapshot();
    for c in &st.collectors {
        assert_eq!(c.sent as usize, from_udp.len(), "{c:?}");
        assert_eq!(c.dropped_queue_full + c.dropped_send_error, 0, "{c:?}");
    }

    let pkts: Vec<hep::Chunk> = from_udp
        .iter()
        .map(|p| hep::parse_packet(p).expect("the hep crate decodes our packet"))
        .collect();
    for p in &pkts {
        assert_eq!(p.capture_agent_id, AGENT);
        assert_eq!(p.authenticate_key, KEY);
        assert_eq!(p.ip_protocol_family, 2);
    }

    // Every SIP message, as tshark reads it from the pcap.
    let sip: Vec<&hep::Chunk> = pkts
        .iter()
        .filter(|p| p.proto_type == hep::CapProtoType::Sip)
        .collect();
    let want = tshark_sip(&file);
    assert_eq!(sip.len(), want.len());
    assert_eq!(sip.len(), 12);
    for (h, t) in sip.iter().zip(&want) {
        assert_eq!(addr(h), (t.src.clone(), t.dst.clone()));
        assert_eq!((h.proto_src_port, h.proto_dst_port), (t.sport, t.dport));
        assert_eq!(
            (h.timestamp_seconds, h.timestamp_micro_seconds_offset),
            (t.sec, t.usec)
        );
        assert_eq!(h.ip_protocol_id, 17);
        assert_eq!(h.internal_correlation_id, t.call_id);
        assert_eq!(h.packet_payload.as_bytes(), &t.payload[..]);
    }

    // RTCP: the compounds with a sender or receiver report, as JSON.
    let rtcp: Vec<&hep::Chunk> = pkts
        .iter()
        .filter(|p| p.proto_type == hep::CapProtoType::Rtcp)
        .collect();
    let t_rtcp = tshark(&[
        "-r",
        file.to_str().unwrap(),
        "-Y",
        "rtcp.pt == 200 || rtcp.pt == 201",
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-e",
        "udp.srcport",
        "-e",
        "rtcp.senderssrc",
        "-e",
        "rtcp.sender.packetcount",
    ]);
    let want_rtcp: BTreeSet<(u16, u32, u64)> = t_rtcp
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            (
                f[0].parse().unwrap(),
                u32::from_str_radix(f[1].trim_start_matches("0x"), 16).unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect();
    let got_rtcp: BTreeSet<(u16, u32, u64)> = rtcp
        .iter()
        .map(|p| {
            let v: serde_json::Value = serde_json::from_str(&p.packet_payload).unwrap();
            assert_eq!(p.internal_correlation_id, want[0].call_id);
            (
                p.proto_src_port,
                v["ssrc"].as_u64().unwrap() as u32,
                v["sender_information"]["packets"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got_rtcp.len(), 2);
    assert_eq!(got_rtcp, want_rtcp);

    // One quality report per stream, with streams.csv's figures.
    let reports: Vec<&hep::Chunk> = pkts
        .iter()
        .filter(|p| p.proto_type == hep::CapProtoType::MosFull)
        .collect();
    let streams = read_csv(&dir.path().join("streams.csv"));
    assert!(!streams.is_empty());
    assert_eq!(reports.len(), streams.len());
    for s in &streams {
        let r = reports
            .iter()
            .map(|p| {
                (
                    p,
                    serde_json::from_str::<serde_json::Value>(&p.packet_payload).unwrap(),
                )
            })
            .find(|(_, v)| {
                v["SSRC"]
                    .as_str()
                    .unwrap()
                    .eq_ignore_ascii_case(&format!("0x{}", s["ssrc_hex"].trim_start_matches("0x")))
                    && format!("{}:{}", v["SRC_IP"].as_str().unwrap(), v["SRC_PORT"]) == s["src"]
            })
            .unwrap_or_else(|| panic!("no report for stream {s:?}"));
        let (p, v) = r;
        assert_eq!(p.internal_correlation_id, s["call_id"]);
        assert_eq!(
            format!("{}:{}", p.ipv4_src_address, p.proto_src_port),
            s["src"]
        );
        assert_eq!(
            format!("{}:{}", p.ipv4_dst_address, p.proto_dst_port),
            s["dst"]
        );
        assert_eq!(v["TOTAL_PK"].to_string(), s["packets"]);
        assert_eq!(v["PACKET_LOSS"].to_string(), s["lost"]);
        let close = |a: f64, b: &str| (a - b.parse::<f64>().unwrap()).abs() < 0.01;
        assert!(
            close(v["JITTER"].as_f64().unwrap(), &s["jitter_ms"]),
            "{v} {s:?}"
        );
        assert!(close(v["MOS"].as_f64().unwrap(), &s["mos"]), "{v} {s:?}");
        assert!(
            close(v["RFACTOR"].as_f64().unwrap(), &s["r_factor"]),
            "{v} {s:?}"
        );
    }
    assert_eq!(st.sip, 12);
    assert_eq!(st.rtcp, 2);
    assert_eq!(st.reports as usize, streams.len());
    // The status file the web UI reads has the final figures.
    let file = voxtap_sensor::status::read(status_dir.path(), "hep").unwrap();
    assert_eq!(file["sip"], 12);
    assert_eq!(file["collectors"][1]["sent"], from_tcp.len());
    assert_eq!(file["collectors"][1]["queue_depth"], 0);
}

/// A collector that accepts and never reads: the pipeline side must not
/// wait for it, and every packet it could not take is counted.
#[test]
fn slow_tcp_collector_gives_counted_drops_and_never_blocks() {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let hold = thread::spawn(move || {
        let (s, _) = tcp.accept().unwrap();
        // Keep the connection open, unread, until the test is done.
        let _ = done_rx.recv_timeout(Duration::from_secs(20));
        drop(s);
    });
    let mut c = CollectorConfig::new(&addr.to_string(), Transport::Tcp);
    c.timeout_ms = 300;
    let mut cfg = export_cfg(vec![c]);
    cfg.queue_packets = 64;
    let export = HepExport::new(cfg, None).unwrap();
    let mut tap = export.tap_factory().make();
    let msg = vec![b'x'; 8000];
    let n = 20_000u64; // 160 MB offered: far beyond the socket buffers.
    let src = "10.0.0.1:5060".parse().unwrap();
    let dst = "10.0.0.2:5060".parse().unwrap();
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..n {
        let t = Instant::now();
        tap.sip(i * 1000, src, dst, false, b"cid", &msg);
        slowest = slowest.max(t.elapsed());
    }
    let offered_in = started.elapsed();
    drop(tap);
    let st = export.counters().snapshot();
    let c = &st.collectors[0];
    // A send that waited for the collector would wait its 300 ms write
    // timeout for most of the 20,000 packets (about 100 minutes); not
    // waiting takes well under a second. The bound sits between the two,
    // far from both, so that no scheduling delay of a loaded machine
    // decides it (one packet's time is printed, not judged).
    eprintln!("offered {n} packets in {offered_in:?}, slowest {slowest:?}");
    assert!(
        offered_in < Duration::from_secs(60),
        "handing {n} packets took {offered_in:?}"
    );
    assert!(c.dropped_queue_full > 0, "{c:?}");
    assert_eq!(
        c.sent + c.dropped_queue_full + c.dropped_send_error + c.dropped_at_stop,
        n,
        "every packet is either sent or counted as dropped: {c:?}"
    );
    assert_eq!(c.queue_depth, 0);
    eprintln!("slow collector: {c:?} in {offered_in:?}");
    done_tx.send(()).unwrap();
    hold.join().unwrap();
}

/// A collector that is not there yet: packets wait (bounded), the exporter
/// reconnects when it appears, and counts the reconnect after a reset.
#[test]
fn tcp_collector_reconnects_after_a_reset() {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap();
    let export = HepExport::new(
        export_cfg(vec![CollectorConfig::new(
            &addr.to_string(),
            Transport::Tcp,
        )]),
        None,
    )
    .unwrap();
    let mut tap = export.tap_factory().make();
    let src = "10.0.0.1:5060".parse().unwrap();
    let dst = "10.0.0.2:5060".parse().unwrap();
    let c = export.counters();
    let wait = |f: &dyn Fn() -> bool| {
        let t = Instant::now();
        while !f() {
            assert!(t.elapsed() < Duration::from_secs(60), "timed out");
            thread::sleep(Duration::from_millis(10));
        }
    };
    // First connection: one packet arrives, then the collector goes away.
    let (mut s, _) = tcp.accept().unwrap();
    tap.sip(1, src, dst, false, b"a", b"first");
    let mut got = vec![0u8; 1024];
    let n = s.read(&mut got).unwrap();
    assert_eq!(
        hep::parse_packet(&got[..n]).unwrap().packet_payload,
        "first"
    );
    drop(s);
    // Writes after the reset fail and are counted; the exporter reconnects.
    let mut i = 0u64;
    let (mut s2, _) = loop {
        tap.sip(2 + i, src, dst, false, b"b", b"again");
        i += 1;
        tcp.set_nonblocking(true).unwrap();
        if let Ok(x) = tcp.accept() {
            break x;
        }
        assert!(i < 500, "no reconnect");
        thread::sleep(Duration::from_millis(20));
    };
    s2.set_nonblocking(false).unwrap();
    wait(&|| c.collectors[0].1.reconnects.load(Ordering::Relaxed) == 1);
    drop(tap);
    let mut rest = Vec::new();
    s2.read_to_end(&mut rest).unwrap();
    let after = split_stream(&rest);
    assert!(!after.is_empty());
    let st = c.snapshot();
    let k = &st.collectors[0];
    assert_eq!(
        k.sent + k.dropped_send_error + k.dropped_queue_full + k.dropped_at_stop,
        1 + i,
        "{k:?}"
    );
    // The kernel takes one write on a connection the peer has already
    // closed (the reset comes back later): that packet counts as sent but
    // is lost, as it would be for any TCP sender.
    let lost_in_dead_socket = k.sent as usize - (1 + after.len());
    assert!(
        lost_in_dead_socket <= 1,
        "{k:?}, {} after reconnect",
        after.len()
    );
    assert!(k.dropped_send_error >= 1, "{k:?}");
}

fn calls_by_id(dir: &Path) -> HashMap<String, HashMap<String, String>> {
    read_csv(&dir.join("calls.csv"))
        .into_iter()
        .map(|r| (r["call_id"].clone(), r))
        .collect()
}

/// SIP sent as HEP to the listener (UDP for one capture, TCP for the other)
/// gives the same calls as importing the pcap.
#[test]
fn listener_gives_the_same_calls_as_import() {
    for (name, transport) in [
        ("generated/sipp-netns-udp-2calls.pcap", Transport::Udp),
        ("generated/sipp-netns-tcp-2calls.pcap", Transport::Tcp),
        (
            "generated/baresip-pcma-hold-resume-dtmf-rtcp.pcap",
            Transport::Tcp,
        ),
    ] {
        let file = corpus(name);
        let (want_dir, want_report) = import(std::slice::from_ref(&file));
        let out = tempfile::tempdir().unwrap();
        let listener = Listener::bind(ListenOptions {
            udp: Some("127.0.0.1:0".parse().unwrap()),
            tcp: Some("127.0.0.1:0".parse().unwrap()),
            out: out.path().to_path_buf(),
            pipeline: PipelineConfig::default(),
            call_files: true,
            auth_key: Some(KEY.into()),
            status: true,
        })
        .unwrap();
        let to = match transport {
            Transport::Udp => listener.udp_addr().unwrap(),
            _ => listener.tcp_addr().unwrap(),
        };
        let counters = listener.counters();
        let stop = Arc::new(AtomicBool::new(false));
        let run = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || listener.run(stop))
        };
        // voxtap itself is the HEP sender here (its packets were checked
        // against the hep crate above); RTCP and reports go too, and the
        // listener skips them as other types.
        let export = HepExport::new(
            export_cfg(vec![CollectorConfig::new(&to.to_string(), transport)]),
            None,
        )
        .unwrap();
        let (_, _) = import_with(
            std::slice::from_ref(&file),
            PipelineConfig {
                tap: Some(export.tap_factory()),
                ..Default::default()
            },
        );
        let sent = export.counters().snapshot();
        let total = sent.collectors[0].sent;
        let t = Instant::now();
        while counters.snapshot().received < total {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "listener got {:?} of {total}",
                counters.snapshot()
            );
            thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::Relaxed);
        let report = run.join().unwrap().unwrap();
        assert_eq!(report.status.sip, sent.sip, "{name}");
        assert_eq!(report.status.bad, 0);
        assert_eq!(
            report.import.stats.sip_messages, want_report.stats.sip_messages,
            "{name}"
        );

        let want = calls_by_id(want_dir.path());
        let got = calls_by_id(out.path());
        assert_eq!(
            got.keys().collect::<BTreeSet<_>>(),
            want.keys().collect::<BTreeSet<_>>(),
            "{name}"
        );
        assert!(!got.is_empty());
        for (id, w) in &want {
            let g = &got[id];
            for col in [
                "start",
                "end",
                "from",
                "to",
                "state",
                "status_code",
                "sip_packets",
                "method",
                "ringing",
                "answer",
                "end_reason",
                "request_uri",
            ] {
                assert_eq!(g[col], w[col], "{name}: call {id} column {col}");
            }
            // Each call's SIP is in its call.pcap, cut from hep.pcap.
            let pcap = out.path().join(&g["pcap"]);
            let n = tshark(&[
                "-r",
                pcap.to_str().unwrap(),
                "-Y",
                "sip",
                "-T",
                "fields",
                "-e",
                "frame.number",
            ])
            .lines()
            .count();
            assert_eq!(
                n.to_string(),
                g["sip_packets"],
                "{name}: {}",
                pcap.display()
            );
        }
        let status = voxtap_sensor::status::read(out.path(), "hep-listen").unwrap();
        assert_eq!(status["sip"], sent.sip);
    }
}

#[test]
fn listener_counts_garbage_and_wrong_keys() {
    let out = tempfile::tempdir().unwrap();
    let listener = Listener::bind(ListenOptions {
        udp: Some("127.0.0.1:0".parse().unwrap()),
        tcp: Some("127.0.0.1:0".parse().unwrap()),
        out: out.path().to_path_buf(),
        pipeline: PipelineConfig::default(),
        call_files: false,
        auth_key: Some(KEY.into()),
        status: false,
    })
    .unwrap();
    let (u, t) = (listener.udp_addr().unwrap(), listener.tcp_addr().unwrap());
    let counters = listener.counters();
    let stop = Arc::new(AtomicBool::new(false));
    let run = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || listener.run(stop))
    };
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(b"not hep at all", u).unwrap();
    s.send_to(b"HEP3\x00\x40short", u).unwrap();
    // Well-formed, wrong key.
    let mut pkt = Vec::new();
    voxtap_proto::hep::HepFields {
        src: "1.1.1.1:5060".parse().unwrap(),
        dst: "2.2.2.2:5060".parse().unwrap(),
        ip_proto: 17,
        ts_ns: 1_700_000_000_000_000_000,
        proto_type: 1,
        capture_id: 1,
        auth_key: b"wrong",
        correlation_id: b"",
        payload: b"OPTIONS sip:x SIP/2.0\r\nCall-ID: z\r\nCSeq: 1 OPTIONS\r\n\r\n",
    }
    .encode(&mut pkt)
    .unwrap();
    s.send_to(&pkt, u).unwrap();
    let mut c = std::net::TcpStream::connect(t).unwrap();
    std::io::Write::write_all(&mut c, b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while counters.snapshot().received < 4 {
        assert!(Instant::now() < deadline, "{:?}", counters.snapshot());
        thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    let r = run.join().unwrap().unwrap();
    assert_eq!(r.status.bad, 3, "{:?}", r.status);
    assert_eq!(r.status.unauthorised, 1);
    assert_eq!(r.status.sip, 0);
    assert_eq!(r.import.calls, 0);
}

/// `openssl s_server` as a TLS collector, killed on drop.
struct SServer(std::process::Child);

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `openssl s_server` in `dir` with its srv.pem/srv.key on a free port,
/// `extra` arguments, its stdout piped when `read` (what it received).
fn s_server(dir: &Path, extra: &[&str], read: bool) -> (SServer, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let accept = format!("127.0.0.1:{port}");
    let out = if read {
        std::process::Stdio::piped()
    } else {
        std::process::Stdio::null()
    };
    let server = SServer(
        std::process::Command::new("openssl")
            .args(["s_server", "-accept", &accept, "-cert", "srv.pem"])
            .args(["-key", "srv.key", "-quiet"])
            .args(extra)
            .current_dir(dir)
            // s_server ends the connection when its stdin closes: keep it open.
            .stdin(std::process::Stdio::piped())
            .stdout(out)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_server"),
    );
    (server, port)
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// HEP over TLS to a real TLS server (OpenSSL's s_server) whose certificate
/// a CA made here signed: the exporter verifies it, and what s_server
/// decrypts is our HEP stream.
#[test]
fn export_over_tls_to_openssl() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    openssl(
        p,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=voxtap test CA",
            "-days",
            "1",
        ],
    );
    openssl(
        p,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        p.join("ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        p,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.pem",
            "-days",
            "1",
            "-extfile",
            "ext",
        ],
    );
    let (mut server, port) = s_server(p, &["-naccept", "1"], true);
    let mut stdout = server.0.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stdout.read_to_end(&mut all);
        all
    });
    let mut c = CollectorConfig::new(&format!("127.0.0.1:{port}"), Transport::Tls);
    c.ca_file = Some(p.join("ca.pem"));
    c.server_name = Some("localhost".into());
    let export = HepExport::new(export_cfg(vec![c]), None).unwrap();
    let mut tap = export.tap_factory().make();
    let src = "192.0.2.1:5060".parse().unwrap();
    let dst = "192.0.2.2:5061".parse().unwrap();
    // s_server may still be starting: wait for the exporter to connect.
    let counters = export.counters();
    let t = Instant::now();
    while !counters.collectors[0].1.connected.load(Ordering::Relaxed) {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{:?}",
            counters.snapshot()
        );
        thread::sleep(Duration::from_millis(20));
    }
    for i in 0..5u64 {
        let msg = format!("MESSAGE sip:b SIP/2.0\r\nCall-ID: tls-{i}\r\n\r\n");
        tap.sip(
            1_700_000_000_000_000_000 + i,
            src,
            dst,
            true,
            format!("tls-{i}").as_bytes(),
            msg.as_bytes(),
        );
    }
    drop(tap);
    let st = export.counters().snapshot();
    assert_eq!(st.collectors[0].sent, 5, "{st:?}");
    let got = split_stream(&reader.join().unwrap());
    assert_eq!(got.len(), 5);
    for (i, g) in got.iter().enumerate() {
        let h = hep::parse_packet(g).unwrap();
        assert_eq!(h.internal_correlation_id, format!("tls-{i}"));
        assert_eq!(h.ip_protocol_id, 6);
        assert_eq!(h.authenticate_key, KEY);
        assert_eq!((h.proto_src_port, h.proto_dst_port), (5060, 5061));
    }
}

/// A TLS collector whose certificate the configured CA did not sign gets
/// nothing: connect failures are counted, packets are dropped, not sent in
/// the clear.
#[test]
fn tls_refuses_an_unknown_certificate() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    openssl(
        p,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "other.key",
            "-out",
            "other.pem",
            "-subj",
            "/CN=other CA",
            "-days",
            "1",
        ],
    );
    openssl(
        p,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.pem",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-days",
            "1",
        ],
    );
    let (_server, port) = s_server(p, &[], false);
    let mut c = CollectorConfig::new(&format!("127.0.0.1:{port}"), Transport::Tls);
    c.ca_file = Some(p.join("other.pem"));
    c.server_name = Some("localhost".into());
    let mut cfg = export_cfg(vec![c]);
    cfg.queue_packets = 4;
    let export = HepExport::new(cfg, None).unwrap();
    let mut tap = export.tap_factory().make();
    let counters = export.counters();
    let t = Instant::now();
    while counters.collectors[0]
        .1
        .connect_failures
        .load(Ordering::Relaxed)
        < 2
    {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{:?}",
            counters.snapshot()
        );
        thread::sleep(Duration::from_millis(20));
    }
    for i in 0..10 {
        tap.sip(
            i,
            "10.0.0.1:5060".parse().unwrap(),
            "10.0.0.2:5060".parse().unwrap(),
            false,
            b"x",
            b"OPTIONS",
        );
    }
    drop(tap);
    let st = counters.snapshot();
    let k = &st.collectors[0];
    assert_eq!(k.sent, 0, "{k:?}");
    assert_eq!(k.dropped_queue_full + k.dropped_at_stop, 10, "{k:?}");
}

/// A running listener closes calls by itself: with no traffic, capture time
/// moves on with the clock, so a call that ended with a BYE is written out
/// after its linger, without stopping the listener.
#[test]
fn running_listener_writes_ended_calls_without_stopping() {
    let out = tempfile::tempdir().unwrap();
    let mut pipeline = PipelineConfig::default();
    pipeline.calls.linger_ns = 300_000_000;
    let listener = Listener::bind(ListenOptions {
        udp: Some("127.0.0.1:0".parse().unwrap()),
        tcp: None,
        out: out.path().to_path_buf(),
        pipeline,
        call_files: true,
        auth_key: None,
        status: false,
    })
    .unwrap();
    let to = listener.udp_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let run = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || listener.run(stop))
    };
    let export = HepExport::new(
        export_cfg(vec![CollectorConfig::new(&to.to_string(), Transport::Udp)]),
        None,
    )
    .unwrap();
    let file = corpus("generated/sipp-netns-udp-2calls.pcap");
    import_with(
        std::slice::from_ref(&file),
        PipelineConfig {
            tap: Some(export.tap_factory()),
            ..Default::default()
        },
    );
    let ids = ["1-7668@10.200.0.1", "2-7668@10.200.0.1"];
    let t = Instant::now();
    while !ids
        .iter()
        .all(|id| out.path().join(id).join("call.pcap").exists())
    {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "calls not written while the listener runs"
        );
        thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let r = run.join().unwrap().unwrap();
    assert_eq!(r.import.calls, 2);
    let calls = calls_by_id(out.path());
    for id in ids {
        assert_eq!(calls[id]["end_reason"], "bye");
        assert_eq!(calls[id]["state"], "answered");
    }
}
