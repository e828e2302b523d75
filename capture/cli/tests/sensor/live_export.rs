//! `voxtap run` with S3 upload and HEP export on, end to end, as root, on
//! the SIPp lab (`lab.rs`). `voxtap run` lives in the sensor namespace,
//! so its loopback is not the test's: s3s-fs is started in that namespace
//! (`ip netns exec`), and the HEP collector is a UDP socket the test creates
//! from a thread that entered it (a socket stays in the namespace it was
//! made in). Checked against independent facts: the bytes s3s-fs stored
//! against the local rolling files, HEP decoded by the `hep` crate against
//! tshark on tcpdump's copy of the mirror port.
#![cfg(target_os = "linux")]

use crate::lab;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::{TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use lab::*;
use voxtap_testkit::{S3_ACCESS as ACCESS, S3_SECRET as SECRET, s3s_fs};

const BUCKET: &str = "voxtap-live";
const S3_PORT: u16 = 9451;

/// Runs `f` on a thread that entered network namespace `ns`.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    thread::spawn(move || {
        let fd = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: a namespace file we opened; only this thread moves.
        let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

/// s3s-fs on the sensor namespace's loopback; killed on drop.
struct S3Server(Child);

impl S3Server {
    fn start(ns: &str, data: &Path, log: &Path) -> S3Server {
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(s3s_fs())
            .args(["--host", "127.0.0.1", "--port", &S3_PORT.to_string()])
            .args(["--access-key", ACCESS, "--secret-key", SECRET])
            .arg(data)
            .stdout(Stdio::null())
            .stderr(File::create(log).unwrap())
            .spawn()
            .expect("starting s3s-fs");
        let s = S3Server(child);
        let ns = ns.to_string();
        let up = in_netns(&ns, || {
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(60) {
                if TcpStream::connect(("127.0.0.1", S3_PORT)).is_ok() {
                    return true;
                }
                thread::sleep(Duration::from_millis(20));
            }
            false
        });
        assert!(up, "s3s-fs did not listen on {S3_PORT}");
        s
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every file under `dir`, by path relative to it.
fn walk(dir: &Path, base: &Path, out: &mut BTreeMap<String, PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, base, out);
        } else {
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().to_string();
            out.insert(rel, p);
        }
    }
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// 4 SIPp calls captured by `voxtap run` with `[upload]` (rolling at
/// 128 KiB) and `[hep]` (one UDP collector): every rolling file closed
/// during the run is in the bucket byte for byte and status/upload.json
/// counts them; the HEP collector got every SIP message tshark sees on the
/// mirror port, per Call-ID, and one quality report per row of streams.csv.
/// Two media workers (`workers.pipeline = 2`): each message is sent once,
/// by the replica that owns it (one pipeline's HEP is `voxtap import`'s,
/// tests/tests/e2e/hep.rs).
#[test]
fn live_run_uploads_closed_files_and_exports_hep() {
    require_root();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempdir("export");
    let lab = Lab::up(&format!("ve{}", std::process::id() % 10000), 216);
    let sensor_ns = lab.ns('s');

    let data = dir.join("s3-data");
    // s3s-fs keeps a bucket as a directory: this is CreateBucket.
    std::fs::create_dir_all(data.join(BUCKET)).unwrap();
    let _s3 = S3Server::start(&sensor_ns, &data, &dir.join("s3s.log"));

    let hep_sock = in_netns(&sensor_ns, || UdpSocket::bind("127.0.0.1:0").unwrap());
    let hep_addr = hep_sock.local_addr().unwrap();
    hep_sock
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let hep_stop = Arc::new(AtomicBool::new(false));
    let collector = {
        let stop = Arc::clone(&hep_stop);
        thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 65_536];
            // Bounded: the test stops it; a minute at most regardless.
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(60) {
                match hep_sock.recv(&mut buf) {
                    Ok(n) => got.push(buf[..n].to_vec()),
                    Err(_) if stop.load(Ordering::Relaxed) => break,
                    Err(_) => {}
                }
            }
            got
        })
    };

    let cfg_text = format!(
        "[workers]\npipeline = 2\n[store]\nroll_bytes = 131072\n\
         [upload]\nenabled = true\nendpoint = \"http://127.0.0.1:{S3_PORT}\"\n\
         bucket = \"{BUCKET}\"\nsensor = \"lab\"\nprefix = \"voip/\"\npath_style = true\n\
         calls = false\nbackoff_initial_ms = 100\nbackoff_max_ms = 400\n\
         [hep]\nenabled = true\ncapture_agent_id = 2001\nauth_key = \"k\"\n\
         [[hep.collectors]]\naddress = \"{hep_addr}\"\ntransport = \"udp\"\n"
    );
    let cfg = dir.join("voxtap.toml");
    std::fs::write(&cfg, cfg_text).unwrap();
    let mut c = in_ns(
        &sensor_ns,
        &[
            VOXTAP,
            "run",
            "--iface",
            &lab.sensor_if(),
            "--config",
            cfg.to_str().unwrap(),
            "--store",
            dir.join("store").to_str().unwrap(),
            "--out",
            dir.join("out").to_str().unwrap(),
            "--duration",
            "60",
        ],
    );
    c.env("RUST_LOG", "info")
        .env("AWS_ACCESS_KEY_ID", ACCESS)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/voxtap-test")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/voxtap-test");
    let mut vox = spawn(c);
    wait_capturing(&mut vox, &dir.join("out"));
    let td = dir.join("tcpdump.pcap");
    let tcpdump = start_tcpdump(&lab, &td);
    sipp_calls(&lab, &dir, 4, 4);
    // Linger (5 s after BYE) lets the calls end, and their reports go out.
    wait_calls_written(&dir.join("out"), 4);
    // Let the uploader catch up with every file closed so far (all but the
    // one being written), bounded.
    let pcap_dir = dir.join("store/pcap");
    let upload_json = dir.join("out/status/upload.json");
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        let local = std::fs::read_dir(&pcap_dir).unwrap().count() as u64;
        if upload_json.exists()
            && read_json(&upload_json)["uploaded_files"].as_u64() >= Some(local.saturating_sub(1))
        {
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    vox.signal(libc::SIGTERM);
    let out = vox.wait(Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "voxtap run: {stderr}");
    tcpdump.signal(libc::SIGINT);
    tcpdump.wait(Duration::from_secs(10));
    hep_stop.store(true, Ordering::Relaxed);
    let hep_pkts = collector.join().unwrap();

    // S3: every rolling file is in the bucket, byte for byte, but perhaps
    // the last, still open when the run stopped (its upload is left to the
    // next run's queue).
    let mut local = BTreeMap::new();
    walk(&pcap_dir, &pcap_dir, &mut local);
    let mut objects = BTreeMap::new();
    walk(&data.join(BUCKET), &data.join(BUCKET), &mut objects);
    let objects: BTreeMap<String, PathBuf> = objects
        .into_iter()
        .filter(|(k, _)| k.ends_with(".pcap"))
        .collect();
    eprintln!(
        "{} rolling files, {} objects: {:?}",
        local.len(),
        objects.len(),
        objects.keys().collect::<Vec<_>>()
    );
    assert!(local.len() >= 3, "only {} rolling files", local.len());
    let by_name: BTreeMap<String, &PathBuf> = objects
        .iter()
        .map(|(k, p)| {
            assert!(k.starts_with("voip/lab/") && k.contains("/raw/"), "{k}");
            (k.rsplit('/').next().unwrap().to_string(), p)
        })
        .collect();
    assert_eq!(by_name.len(), objects.len(), "one object per file");
    let last = local.keys().next_back().unwrap().clone();
    let mut bytes = 0;
    for (name, path) in &local {
        match by_name.get(name) {
            Some(obj) => {
                let want = std::fs::read(path).unwrap();
                assert_eq!(std::fs::read(obj).unwrap(), want, "{name}: object bytes");
                bytes += want.len() as u64;
            }
            None => assert_eq!(name, &last, "{name}, closed during the run, not uploaded"),
        }
    }
    for name in by_name.keys() {
        assert!(local.contains_key(name), "object {name} has no local file");
    }
    let st = read_json(&upload_json);
    eprintln!("upload.json: {st}");
    assert_eq!(st["uploaded_files"], objects.len() as u64, "{st}");
    assert_eq!(st["uploads"], objects.len() as u64, "{st}");
    assert_eq!(st["uploaded_bytes"], bytes, "{st}");
    assert_eq!(st["failed_files"], 0, "{st}");
    assert_eq!(st["lost_files"], 0, "{st}");
    assert_eq!(st["bucket"], BUCKET, "{st}");

    // HEP: every SIP message of every call, as tshark reads the mirror.
    let pkts: Vec<hep::Chunk> = hep_pkts
        .iter()
        .map(|p| hep::parse_packet(p).expect("the hep crate decodes our packet"))
        .collect();
    for p in &pkts {
        assert_eq!(p.capture_agent_id, 2001);
        assert_eq!(p.authenticate_key, "k");
    }
    let mut got_sip: BTreeMap<String, usize> = BTreeMap::new();
    for p in pkts
        .iter()
        .filter(|p| p.proto_type == hep::CapProtoType::Sip)
    {
        *got_sip
            .entry(p.internal_correlation_id.clone())
            .or_default() += 1;
    }
    let mut want_sip: BTreeMap<String, usize> = BTreeMap::new();
    for l in tshark(&[
        "-r",
        td.to_str().unwrap(),
        "-Y",
        "sip",
        "-T",
        "fields",
        "-e",
        "sip.Call-ID",
    ])
    .lines()
    {
        *want_sip.entry(l.trim().to_string()).or_default() += 1;
    }
    let n_sip: usize = want_sip.values().sum();
    eprintln!(
        "HEP: {} packets, {} SIP; tshark: {n_sip} SIP in {} calls",
        pkts.len(),
        got_sip.values().sum::<usize>(),
        want_sip.len()
    );
    assert_eq!(want_sip.len(), 4, "tshark's Call-IDs: {want_sip:?}");
    assert!(n_sip >= 4 * 6, "{n_sip} SIP messages: SIPp did not run?");
    assert_eq!(got_sip, want_sip, "SIP messages per Call-ID, HEP vs tshark");

    // One quality report per stream of streams.csv.
    let streams = read_csv(&dir.join("out/streams.csv"));
    assert!(streams.len() >= 4 * 2, "{} streams", streams.len());
    let reports: BTreeSet<(String, String, String)> = pkts
        .iter()
        .filter(|p| p.proto_type == hep::CapProtoType::MosFull)
        .map(|p| {
            let v: serde_json::Value = serde_json::from_str(&p.packet_payload).unwrap();
            assert_eq!(v["RTP_SIP_CALL_ID"], p.internal_correlation_id.as_str());
            (
                p.internal_correlation_id.clone(),
                format!("{}:{}", v["SRC_IP"].as_str().unwrap(), v["SRC_PORT"]),
                v["SSRC"].as_str().unwrap().to_ascii_lowercase(),
            )
        })
        .collect();
    let n_reports = pkts
        .iter()
        .filter(|p| p.proto_type == hep::CapProtoType::MosFull)
        .count();
    let want_reports: BTreeSet<(String, String, String)> = streams
        .iter()
        .map(|s| {
            (
                s["call_id"].clone(),
                s["src"].clone(),
                format!("0x{}", s["ssrc_hex"].trim_start_matches("0x")).to_ascii_lowercase(),
            )
        })
        .collect();
    assert_eq!(n_reports, streams.len(), "one report per stream");
    assert_eq!(reports, want_reports, "reports vs streams.csv");
    // RTCP with an SR or RR, as JSON: as many as tshark finds.
    let want_rtcp = count(&td, Some("rtcp.pt == 200 || rtcp.pt == 201"));
    let got_rtcp = pkts
        .iter()
        .filter(|p| p.proto_type == hep::CapProtoType::Rtcp)
        .count();
    eprintln!("RTCP SR/RR: HEP {got_rtcp}, tshark {want_rtcp}");
    assert_eq!(got_rtcp, want_rtcp, "RTCP compounds, HEP vs tshark");
    // status/hep.json ends with what the collector received.
    let hep_st = read_json(&dir.join("out/status/hep.json"));
    eprintln!("hep.json: {hep_st}");
    assert_eq!(hep_st["sip"], n_sip as u64, "{hep_st}");
    assert_eq!(hep_st["reports"], n_reports as u64, "{hep_st}");
    let col = &hep_st["collectors"][0];
    assert_eq!(col["sent"], pkts.len() as u64, "{hep_st}");
    assert_eq!(
        col["bytes"],
        hep_pkts.iter().map(Vec::len).sum::<usize>() as u64,
        "{hep_st}"
    );
    for k in [
        "dropped_queue_full",
        "dropped_send_error",
        "dropped_at_stop",
    ] {
        assert_eq!(col[k], 0, "{k}: {hep_st}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
