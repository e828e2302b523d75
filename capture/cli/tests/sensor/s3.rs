//! S3 upload and ranged extraction against a real S3 API server: s3s-fs
//! (installed by scripts/setup.sh), started by each test on a free loopback
//! port in a temporary directory, verifying SigV4 signatures and SHA-256
//! checksums, and killed by a Drop guard. Tests stop and restart it on the
//! same port and directory to make an outage.
//!
//! The stores are built from `voxtap synth` captures through the same
//! rolling writer, pipeline and store index as `voxtap run`.

use std::collections::HashMap;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use voxtap_engine::pipeline::{Pipeline, PipelineConfig};
use voxtap_engine::synth::{SynthConfig, generate};
use voxtap_proto::pcapio::PcapReader;
use voxtap_sensor::store::{
    Retention, RollPolicy, RollingWriter, StoreManager, extract_call, extract_call_with,
};
use voxtap_sensor::upload::queue::Queue;
use voxtap_sensor::upload::s3::S3;
use voxtap_sensor::upload::{S3RemoteFiles, UploadConfig, Uploader};
// The credentials reach the SDK through the standard chain (environment),
// as in production: `aws_env` sets them once.
use voxtap_testkit::{S3_ACCESS as ACCESS, S3_SECRET as SECRET, aws_env, s3s_fs};

const MIB: u64 = 1 << 20;

/// s3s-fs on loopback; killed on drop.
pub(crate) struct S3Server {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

impl S3Server {
    pub(crate) fn start(dir: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = dir.join("s3-data");
        std::fs::create_dir_all(&data).unwrap();
        let mut s = S3Server {
            port,
            dir: data,
            child: None,
            log: dir.join("s3s.log"),
        };
        s.resume();
        s
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on the same port and directory.
    fn resume(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(s3s_fs())
            .args(["--host", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args(["--access-key", ACCESS, "--secret-key", SECRET])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting s3s-fs");
        self.child = Some(child);
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "s3s-fs did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn upload_cfg(srv: &S3Server, bucket: &str) -> UploadConfig {
    UploadConfig {
        enabled: true,
        endpoint: srv.endpoint(),
        bucket: bucket.into(),
        sensor: "sensor1".into(),
        prefix: "voip/".into(),
        path_style: true,
        multipart_threshold_bytes: 8 * MIB,
        part_bytes: 5 * MIB,
        backoff_initial_ms: 100,
        backoff_max_ms: 400,
        request_timeout_seconds: 10,
        ..Default::default()
    }
}

fn make_bucket(cfg: &UploadConfig) -> S3 {
    let s3 = S3::new(cfg).unwrap();
    s3.create_bucket().unwrap();
    s3
}

/// A store built from a synthetic capture the way `voxtap run` builds it:
/// every frame through the rolling writer (rolled at `roll` bytes) and the
/// pipeline, each ended call's packet locations into store.sqlite. Returns
/// the Call-IDs.
fn build_store(store: &Path, calls: u32, seconds: u32, roll: u64) -> Vec<String> {
    let mut bytes = Vec::new();
    generate(
        &SynthConfig {
            calls,
            seconds,
            ramp_seconds: 1,
            loss_pct: 0.0,
            jitter_ms: 0.0,
            seed: 3,
            media_server: None,
        },
        &mut bytes,
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut mgr = StoreManager::open(store, Retention::default()).unwrap();
    let policy = RollPolicy {
        max_bytes: roll,
        max_ns: u64::MAX / 2,
        buffer_bytes: 1 << 16,
    };
    let mut roll = RollingWriter::new(store, policy, mgr.next_file_id().unwrap(), tx).unwrap();
    let mut p = Pipeline::new(PipelineConfig::default());
    let mut r = PcapReader::new(std::io::Cursor::new(bytes)).unwrap();
    let mut ended = Vec::new();
    while let Some(rec) = r.next_packet().unwrap() {
        let pref = roll.write(rec.ts_ns, rec.orig_len, rec.data).unwrap();
        for ev in rx.try_iter() {
            mgr.on_event(ev).unwrap();
        }
        p.process(rec.link, rec.ts_ns, pref, rec.data);
        ended.extend(p.drain_ended());
    }
    roll.close().unwrap();
    p.finish();
    ended.extend(p.drain_ended());
    for ev in rx.try_iter() {
        mgr.on_event(ev).unwrap();
    }
    let locs: Vec<_> = ended.iter().map(|c| mgr.locate(c)).collect();
    mgr.index().add_calls(&locs).unwrap();
    ended.iter().map(|c| c.call_id().to_string()).collect()
}

fn pcap_files(store: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(store.join("pcap"))
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

fn sha_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Upload (PUT and multipart) of rolling files and call artifacts, byte-exact
/// round trip, local copies deleted only once confirmed, ranged extraction
/// from S3 equal to the local one with a fraction of the bytes, then S3
/// retention.
#[test]
fn upload_round_trip_and_ranged_extraction_equals_local() {
    aws_env();
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let srv = S3Server::start(tmp.path());
    let cfg = UploadConfig {
        delete_after_upload: true,
        multipart_threshold_bytes: 5 * MIB,
        ..upload_cfg(&srv, "voxtap-rt")
    };
    let s3 = make_bucket(&cfg);
    let store = tmp.path().join("store");
    // 60 concurrent calls of 10 s: about 14 MB of frames, rolled at 6 MiB:
    // two files above the 5 MiB multipart threshold (2 parts each) and one
    // below (one PUT).
    let calls = build_store(&store, 60, 10, 6 * MIB);
    println!("store built at {:.1} s", t0.elapsed().as_secs_f64());
    let originals = pcap_files(&store);
    let sizes: Vec<u64> = originals.iter().map(|f| f.1.len() as u64).collect();
    println!("rolling files: {sizes:?}");
    assert_eq!(originals.len(), 3, "{sizes:?}");
    assert!(sizes[0] > cfg.multipart_threshold_bytes && sizes[1] > cfg.multipart_threshold_bytes);
    assert!(sizes[2] < cfg.multipart_threshold_bytes);

    // Per-call artifacts: an import of a few calls into the call output dir.
    let out = tmp.path().join("calls");
    let small = tmp.path().join("small.pcap");
    let mut b = Vec::new();
    generate(
        &SynthConfig {
            calls: 3,
            seconds: 2,
            ramp_seconds: 1,
            loss_pct: 0.0,
            jitter_ms: 0.0,
            seed: 9,
            media_server: None,
        },
        &mut b,
    )
    .unwrap();
    std::fs::write(&small, &b).unwrap();
    voxtap_engine::import::run_import(&voxtap_engine::import::ImportOptions {
        files: vec![small],
        out: out.clone(),
        pipeline: PipelineConfig::default(),
        call_files: true,
        media: None,
    })
    .unwrap();

    // The call to compare, extracted while the files are local.
    let call = &calls[calls.len() / 2];
    let local_pcap = tmp.path().join("local.pcap");
    let rep = extract_call(&store, call, &local_pcap).unwrap();
    assert!(rep.packets > 100);

    println!(
        "import and local extraction done at {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let mut up = Uploader::new(&cfg, &store, Some(&out), Some(&out)).unwrap();
    let stop = AtomicBool::new(false);
    assert!(up.drain(&stop, Duration::from_secs(60)).unwrap());
    println!("uploaded at {:.1} s", t0.elapsed().as_secs_f64());
    let st = up.status().clone();
    let q = Queue::open_read_only(&store).unwrap().unwrap();
    let rows = q.rows().unwrap();
    let raw: Vec<_> = rows.iter().filter(|r| r.file_id.is_some()).collect();
    let call_rows: Vec<_> = rows.iter().filter(|r| r.file_id.is_none()).collect();
    assert_eq!(raw.len(), 3);
    // 3 calls x (call.pcap, sip.txt).
    assert_eq!(call_rows.len(), 6, "{call_rows:?}");
    assert!(
        rows.iter()
            .all(|r| r.state == "uploaded" && r.local_deleted)
    );
    let total: u64 = rows.iter().map(|r| r.bytes).sum();
    // Every byte confirmed exactly once.
    assert_eq!(st.bytes_sent, total);
    assert_eq!(st.uploads, 9);
    assert_eq!((st.retries, st.unreachable_errors), (0, 0));
    // Local copies are gone, the objects are byte-exact, with the key layout.
    assert!(pcap_files(&store).is_empty());
    for (name, data) in &originals {
        let key = format!("voip/sensor1/2026/01/01/raw/{name}");
        let got = s3.get(&key).unwrap();
        assert_eq!(got.len(), data.len(), "{key}");
        assert!(got == *data, "{key} differs");
        let row = raw.iter().find(|r| r.key == key).unwrap();
        assert_eq!(row.sha256.as_deref(), Some(sha_hex(data).as_str()));
    }
    let listed = s3.list("voip/sensor1/2026/01/01/calls/").unwrap();
    assert_eq!(listed.len(), 6, "{listed:?}");
    assert!(
        listed
            .iter()
            .any(|(k, _)| k.ends_with("/call.pcap") && k.contains('@')),
        "{listed:?}"
    );

    // Without S3 the call is gone; with it, the same bytes, by ranged GETs.
    let err = extract_call(&store, call, &tmp.path().join("x.pcap")).unwrap_err();
    assert!(err.to_string().contains("missing from disk"), "{err}");
    println!("objects checked at {:.1} s", t0.elapsed().as_secs_f64());
    let remote = S3RemoteFiles::open(&cfg, &store).unwrap().unwrap();
    let s3_pcap = tmp.path().join("s3.pcap");
    let rep2 = extract_call_with(&store, call, &s3_pcap, Some(&remote)).unwrap();
    assert_eq!(rep2.packets, rep.packets);
    assert_eq!(rep2.remote_files, rep.files);
    assert!(std::fs::read(&s3_pcap).unwrap() == std::fs::read(&local_pcap).unwrap());
    println!("extracted from S3 at {:.1} s", t0.elapsed().as_secs_f64());
    // The same through `voxtap extract --config`.
    let conf = tmp.path().join("voxtap.toml");
    write_config(&conf, &cfg, &store, &out);
    let cli_pcap = tmp.path().join("cli.pcap");
    let o = voxtap()
        .args(["extract", "--call", call, "--store"])
        .arg(&store)
        .arg("--out")
        .arg(&cli_pcap)
        .arg("--config")
        .arg(&conf)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("3 rolling file(s) read from S3"),
        "{stdout}"
    );
    assert!(std::fs::read(&cli_pcap).unwrap() == std::fs::read(&local_pcap).unwrap());
    let get_bytes = remote.stats.bytes.load(Ordering::Relaxed);
    let get_requests = remote.stats.requests.load(Ordering::Relaxed);
    let touched: u64 = rep.files.iter().map(|id| sizes[(*id - 1) as usize]).sum();
    println!(
        "call {call}: {} packets from {} files ({touched} bytes): {get_requests} ranged GETs, {get_bytes} bytes",
        rep.packets,
        rep.files.len()
    );
    assert!(get_bytes * 10 < touched, "{get_bytes} of {touched}");

    // S3 retention: the synthetic capture is from 2026-01-01, older than a
    // day: every object goes, and the store index says why.
    let mut old = Uploader::new(
        &UploadConfig {
            raw_lifetime_seconds: 86_400,
            calls_lifetime_seconds: 86_400,
            ..cfg.clone()
        },
        &store,
        Some(&out),
        None,
    )
    .unwrap();
    assert_eq!(old.expire().unwrap(), 9);
    assert!(s3.list("voip/").unwrap().is_empty());
    let err = extract_call_with(&store, call, &tmp.path().join("y.pcap"), Some(&remote))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("deleted by retention: s3_lifetime")
            && err.contains("S3 upload state: expired"),
        "{err}"
    );
    println!("test took {:.1} s", t0.elapsed().as_secs_f64());
}

/// The server dies in the middle of a multipart upload and comes back: the
/// uploader keeps the files local, reports S3 unreachable, resumes the
/// upload where it was, and in the end every file is in S3 once, byte-exact,
/// with every part confirmed exactly once.
#[test]
fn server_stopped_mid_upload_then_restarted_nothing_lost_nothing_twice() {
    aws_env();
    let tmp = tempfile::tempdir().unwrap();
    let mut srv = S3Server::start(tmp.path());
    let cfg = UploadConfig {
        // 40 MiB/s: the ~26 MB take about 0.7 s, time to stop the server
        // between parts.
        max_bytes_per_second: 40 * MIB,
        ..upload_cfg(&srv, "voxtap-outage")
    };
    let s3 = make_bucket(&cfg);
    let store = tmp.path().join("store");
    build_store(&store, 60, 19, 11 * MIB);
    let originals = pcap_files(&store);
    let total: u64 = originals.iter().map(|f| f.1.len() as u64).sum();
    let status_dir = tmp.path().join("data");

    let stop = Arc::new(AtomicBool::new(false));
    let handle = {
        let (cfg, store, status_dir, stop) = (
            cfg.clone(),
            store.clone(),
            status_dir.clone(),
            Arc::clone(&stop),
        );
        std::thread::spawn(move || {
            let mut up = Uploader::new(&cfg, &store, None, Some(&status_dir)).unwrap();
            up.run(&stop).unwrap();
            up
        })
    };
    let q = wait_for(|| Queue::open_read_only(&store).ok().flatten(), "the queue");
    // Stop the server once the first multipart upload has confirmed a part.
    wait_for(
        || {
            let rows = q.rows().ok()?;
            rows.iter()
                .any(|r| q.parts(r.id).map(|p| !p.is_empty()).unwrap_or(false))
                .then_some(())
        },
        "a confirmed part",
    );
    srv.stop();
    let down = wait_for(
        || {
            let s = voxtap_sensor::status::read(&status_dir, "upload")?;
            (s["s3_reachable"] == 0).then_some(s)
        },
        "status s3_reachable = 0",
    );
    let queued_while_down = q.count("queued").unwrap();
    println!("while S3 was down: {down}");
    assert!(queued_while_down.files >= 1);
    // Nothing deleted locally meanwhile (delete_after_upload is off anyway,
    // and nothing is lost).
    assert_eq!(pcap_files(&store).len(), originals.len());
    std::thread::sleep(Duration::from_millis(500));
    srv.resume();
    wait_for(
        || (q.count("uploaded").ok()?.files == originals.len() as u64).then_some(()),
        "every file uploaded",
    );
    stop.store(true, Ordering::Relaxed);
    let up = handle.join().unwrap();
    let st = up.status();
    println!(
        "bytes_sent {} (files {total}), unreachable_errors {}, retries {}",
        st.bytes_sent, st.unreachable_errors, st.retries
    );
    assert!(st.unreachable_errors >= 1);
    assert_eq!(st.s3_reachable, 1);
    // Each part and each small file confirmed once: nothing sent twice.
    assert_eq!(st.bytes_sent, total);
    assert_eq!(q.count("failed").unwrap().files, 0);
    let listed: HashMap<String, u64> = s3.list("voip/").unwrap().into_iter().collect();
    assert_eq!(listed.len(), originals.len(), "{listed:?}");
    for (name, data) in &originals {
        let key = format!("voip/sensor1/2026/01/01/raw/{name}");
        assert!(s3.get(&key).unwrap() == *data, "{key}");
    }
}

fn wait_for<T>(mut f: impl FnMut() -> Option<T>, what: &str) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn write_config(path: &Path, cfg: &UploadConfig, store: &Path, out: &Path) {
    let text = format!(
        "[store]\npath = {:?}\n[output]\ndir = {:?}\n[upload]\nenabled = true\nendpoint = {:?}\nbucket = {:?}\nsensor = \"sensor1\"\nprefix = \"voip/\"\npath_style = true\ncalls = false\nmultipart_threshold_bytes = {}\npart_bytes = {}\nbackoff_initial_ms = 100\nbackoff_max_ms = 400\nrequest_timeout_seconds = 10\nmax_bytes_per_second = {}\nspool_max_bytes = {}\n",
        store,
        out,
        cfg.endpoint,
        cfg.bucket,
        cfg.multipart_threshold_bytes,
        cfg.part_bytes,
        cfg.max_bytes_per_second,
        cfg.spool_max_bytes,
    );
    std::fs::write(path, text).unwrap();
}

fn voxtap() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_voxtap"));
    c.env("AWS_ACCESS_KEY_ID", ACCESS)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/voxtap-test")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/voxtap-test")
        .env("RUST_LOG", "info");
    c
}

/// Kills `voxtap upload` with SIGKILL in the middle of a multipart upload;
/// the next run resumes the queue: it sends only what was not confirmed
/// (not the files already uploaded, not the confirmed parts).
#[test]
fn voxtap_killed_mid_queue_resumes_without_resending() {
    aws_env();
    let tmp = tempfile::tempdir().unwrap();
    let srv = S3Server::start(tmp.path());
    let mut cfg = upload_cfg(&srv, "voxtap-restart");
    make_bucket(&cfg);
    let store = tmp.path().join("store");
    let out = tmp.path().join("out");
    // ~26 MB in 5 files of ~6 MiB: multipart (threshold 5 MiB, 2 parts each).
    build_store(&store, 60, 19, 6 * MIB);
    let originals = pcap_files(&store);
    let total: u64 = originals.iter().map(|f| f.1.len() as u64).sum();
    cfg.multipart_threshold_bytes = 5 * MIB;
    cfg.max_bytes_per_second = 12 * MIB;
    let conf = tmp.path().join("voxtap.toml");
    write_config(&conf, &cfg, &store, &out);

    let mut child = voxtap()
        .args(["upload", "--once", "--config"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let q = wait_for(|| Queue::open_read_only(&store).ok().flatten(), "the queue");
    // Mid-queue and mid-file: one file uploaded and a part of the next one.
    let (done, parts): (Vec<i64>, u64) = wait_for(
        || {
            let rows = q.rows().ok()?;
            let done: Vec<i64> = rows
                .iter()
                .filter(|r| r.state == "uploaded")
                .map(|r| r.id)
                .collect();
            // Parts of files not yet uploaded (an uploaded file has none).
            let parts: usize = rows
                .iter()
                .filter(|r| r.state != "uploaded")
                .map(|r| q.parts(r.id).map(|p| p.len()).unwrap_or(0))
                .sum();
            (!done.is_empty() && parts > 0).then_some((done, parts as u64))
        },
        "one file and one part uploaded",
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // What was confirmed before the kill (read after it: nothing moves now).
    let rows = q.rows().unwrap();
    let uploaded_before: HashMap<i64, Option<u64>> = rows
        .iter()
        .filter(|r| r.state == "uploaded")
        .map(|r| (r.id, r.uploaded_ms))
        .collect();
    let bytes_before: u64 = rows
        .iter()
        .filter(|r| r.state == "uploaded")
        .map(|r| r.bytes)
        .sum();
    // Bytes of the confirmed parts of unfinished uploads.
    let parts_before: u64 = rows
        .iter()
        .filter(|r| r.state != "uploaded")
        .map(|r| {
            q.parts(r.id)
                .unwrap()
                .iter()
                .map(|(p, _, _)| {
                    let start = (*p as u64 - 1) * cfg.part_bytes;
                    cfg.part_bytes.min(r.bytes - start)
                })
                .sum::<u64>()
        })
        .sum();
    assert!(!done.is_empty() && parts >= 1);
    assert!(
        uploaded_before.len() < originals.len(),
        "the kill came too late"
    );
    println!(
        "killed with {} of {} files and {parts_before} bytes of parts confirmed",
        uploaded_before.len(),
        originals.len()
    );

    let mut cfg2 = cfg.clone();
    cfg2.max_bytes_per_second = 0;
    write_config(&conf, &cfg2, &store, &out);
    let o = voxtap()
        .args(["upload", "--once", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // "uploaded N files (B bytes sent); ..."
    let sent: u64 = stdout
        .split("files (")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    let expected = total - bytes_before - parts_before;
    println!("second run: {stdout}expected {expected} bytes");
    assert_eq!(sent, expected);
    let rows = q.rows().unwrap();
    assert!(rows.iter().all(|r| r.state == "uploaded"));
    assert_eq!(rows.len(), originals.len());
    for (id, at) in uploaded_before {
        let r = rows.iter().find(|r| r.id == id).unwrap();
        assert_eq!(r.uploaded_ms, at, "file {} was uploaded again", r.path);
    }
    let s3 = S3::new(&cfg).unwrap();
    for (name, data) in &originals {
        let key = format!("voip/sensor1/2026/01/01/raw/{name}");
        assert!(s3.get(&key).unwrap() == *data, "{key}");
    }
}

/// A run killed after S3 completed a multipart upload and before the
/// queue recorded it (the window `voxtap_killed_mid_queue_...` hits on a
/// loaded machine): the row still holds an upload id S3 has forgotten.
/// The next run finds the very file in S3 (size and sha256) and sends
/// nothing again.
#[test]
fn completed_but_unrecorded_multipart_upload_is_not_sent_again() {
    aws_env();
    let tmp = tempfile::tempdir().unwrap();
    let srv = S3Server::start(tmp.path());
    let mut cfg = upload_cfg(&srv, "voxtap-unrecorded");
    make_bucket(&cfg);
    let store = tmp.path().join("store");
    let out = tmp.path().join("out");
    // Files of ~6 MiB: multipart (threshold 5 MiB).
    build_store(&store, 60, 19, 6 * MIB);
    cfg.multipart_threshold_bytes = 5 * MIB;
    let conf = tmp.path().join("voxtap.toml");
    write_config(&conf, &cfg, &store, &out);
    let run = || {
        let o = voxtap()
            .args(["upload", "--once", "--config"])
            .arg(&conf)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(
            o.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        text
    };
    let first = run();
    let q = Queue::open(&store).unwrap();
    let big = q
        .rows()
        .unwrap()
        .into_iter()
        .find(|r| r.bytes > 5 * MIB)
        .unwrap_or_else(|| panic!("no multipart file: {first}"));
    // The state a kill between CompleteMultipartUpload and the record
    // leaves: queued, with the finished upload's id.
    q.finish(big.id, "queued", "").unwrap();
    q.set_upload_id(big.id, Some("finished-upload-s3-forgot"))
        .unwrap();
    let second = run();
    assert!(
        second.starts_with("uploaded 1 files (0 bytes sent)"),
        "{second}"
    );
    let r = q.get(big.id).unwrap().unwrap();
    assert_eq!(r.state, "uploaded", "{r:?}");
}

/// S3 down, more closed files than the spool cap: a clear warning, the cap
/// in status/upload.json, newer files deferred (not queued, not deleted);
/// once S3 is back everything goes.
#[test]
fn spool_cap_reached_logged_and_counted_then_drained() {
    aws_env();
    let tmp = tempfile::tempdir().unwrap();
    let mut srv = S3Server::start(tmp.path());
    let mut cfg = upload_cfg(&srv, "voxtap-spool");
    make_bucket(&cfg);
    srv.stop();
    let store = tmp.path().join("store");
    let out = tmp.path().join("out");
    // ~4.4 MB in files of 1 MiB.
    build_store(&store, 20, 10, MIB);
    let originals = pcap_files(&store);
    let n = originals.len() as u64;
    assert!(n >= 4, "{n}");
    cfg.spool_max_bytes = 2 * MIB + MIB / 2;
    let conf = tmp.path().join("voxtap.toml");
    write_config(&conf, &cfg, &store, &out);
    let o = voxtap()
        .args(["upload", "--once", "--max-wait", "1", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "files remain queued: exit status 1");
    assert!(stderr.contains("upload spool full"), "{stderr}");
    assert_eq!(stderr.matches("upload spool full").count(), 1, "{stderr}");
    assert!(stderr.contains("S3 unreachable"), "{stderr}");
    let st = voxtap_sensor::status::read(&out, "upload").expect("status/upload.json");
    println!("{st}");
    assert_eq!(st["spool_cap_reached"], 1);
    assert_eq!(st["spool_full_episodes"], 1);
    assert_eq!(st["s3_reachable"], 0);
    assert_eq!(st["queued_files"], 2);
    assert_eq!(st["deferred_files"], n - 2);
    assert!(st["spool_bytes"].as_u64().unwrap() <= cfg.spool_max_bytes);
    // Nothing local was touched.
    assert_eq!(pcap_files(&store), originals);

    srv.resume();
    let o = voxtap()
        .args(["upload", "--once", "--max-wait", "30", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("upload spool below its cap again"),
        "{stderr}"
    );
    let st = voxtap_sensor::status::read(&out, "upload").unwrap();
    assert_eq!(st["spool_cap_reached"], 0);
    assert_eq!(st["uploaded_files"], n);
    assert_eq!(st["queued_files"], 0);
    let s3 = S3::new(&cfg).unwrap();
    let mut got = Vec::new();
    for (name, _) in &originals {
        let mut v = Vec::new();
        let key = format!("voip/sensor1/2026/01/01/raw/{name}");
        std::io::Cursor::new(s3.get(&key).unwrap())
            .read_to_end(&mut v)
            .unwrap();
        got.push((name.clone(), v));
    }
    assert!(got == originals);
}

/// S3 answers with an error (a wrong secret key: s3s-fs refuses the
/// signature): each attempt is counted and retried with backoff, and after
/// `max_attempts` the file is `failed`, the error kept, the local file
/// untouched, and `voxtap upload --once` exits with status 1.
#[test]
fn refused_uploads_retry_with_backoff_then_fail_keeping_the_file() {
    aws_env();
    let tmp = tempfile::tempdir().unwrap();
    let srv = S3Server::start(tmp.path());
    let cfg = upload_cfg(&srv, "voxtap-refused");
    make_bucket(&cfg);
    let store = tmp.path().join("store");
    let out = tmp.path().join("out");
    build_store(&store, 2, 2, MIB);
    let originals = pcap_files(&store);
    assert_eq!(originals.len(), 1);
    let conf = tmp.path().join("voxtap.toml");
    std::fs::write(
        &conf,
        format!(
            "[store]\npath = {store:?}\n[output]\ndir = {out:?}\n[upload]\nenabled = true\nendpoint = {:?}\nbucket = \"voxtap-refused\"\npath_style = true\nmax_attempts = 3\nbackoff_initial_ms = 100\ndelete_after_upload = true\n",
            cfg.endpoint
        ),
    )
    .unwrap();
    let t = Instant::now();
    let o = voxtap()
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .args(["upload", "--once", "--max-wait", "20", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    let took = t.elapsed();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    assert_eq!(
        stderr
            .matches("upload attempt failed; retrying later")
            .count(),
        2,
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("upload failed for good").count(),
        1,
        "{stderr}"
    );
    // Two waits between three attempts: 100 then 200 ms.
    assert!(took >= Duration::from_millis(300), "{took:?}");
    let q = Queue::open_read_only(&store).unwrap().unwrap();
    let rows = q.rows().unwrap();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!((r.state.as_str(), r.attempts), ("failed", 3), "{r:?}");
    assert!(
        r.last_error
            .as_deref()
            .unwrap_or("")
            .contains("SignatureDoesNotMatch"),
        "{r:?}"
    );
    let st = voxtap_sensor::status::read(&out, "upload").unwrap();
    assert_eq!(st["failed_files"], 1);
    assert_eq!(st["retries"], 3);
    assert_eq!(st["s3_reachable"], 1);
    assert_eq!(pcap_files(&store), originals);
    assert!(S3::new(&cfg).unwrap().list("").unwrap().is_empty());
}
