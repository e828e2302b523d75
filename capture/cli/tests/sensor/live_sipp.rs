//! `voxtap run` end to end, as root, on a SPAN-like lab built by
//! `scripts/netns-mirror.sh` (three network namespaces, removed on exit even
//! on failure): SIPp places real calls with RTP between two namespaces, the
//! caller's link is mirrored to the sensor's veth, and `voxtap run` captures
//! it through XDP while `tcpdump -w` (filter `udp`) records the same mirror
//! port. Everything voxtap reports is checked against tcpdump's file, read
//! by tshark.
//!
//! The tests share the CPU and run one at a time (a lock), so loss seen by
//! one is not caused by another.
#![cfg(target_os = "linux")]

use crate::lab;

use std::time::Duration;

use lab::*;

/// 20 concurrent SIPp calls on three kernel rings (SIP, and media steered
/// to two) and two media workers (`workers.pipeline = 2`: the parallel
/// engine): every call found with RTP both ways; stored frames = tcpdump's,
/// and each ring's stored frames = what the kernel wrote to it, every ring
/// used; per-call counts and `voxtap extract` = tshark's cut of tcpdump's
/// file by Call-ID and SDP endpoints; calls.csv and streams.csv = those of
/// `voxtap import` (one engine worker) of the sensor's own rolling files;
/// both media workers ran frames. Stopped by SIGTERM.
#[test]
fn live_sipp_20_calls_match_tcpdump() {
    require_root();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempdir("e2e");
    let lab = Lab::up(&format!("vl{}", std::process::id() % 10000), 211);
    // Heuristic RTP on (the default): RTP that races its 200 OK through the
    // sensor is kept by it; the rest is kept through the endpoint map.
    let vox = start_voxtap(&lab, &dir, "[workers]\nrings = 3\npipeline = 2\n", 120);
    let td = dir.join("tcpdump.pcap");
    let tcpdump = start_tcpdump(&lab, &td);
    sipp_calls(&lab, &dir, 20, 20);
    // Linger (5 s after BYE) lets the calls end by themselves first.
    wait_calls_written(&dir.join("out"), 20);
    vox.signal(libc::SIGTERM);
    let out = vox.wait(Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "voxtap run: {stderr}");
    assert!(stderr.contains("dropped all capabilities"), "{stderr}");
    tcpdump.signal(libc::SIGINT);
    tcpdump.wait(Duration::from_secs(10));
    eprintln!("{stdout}");

    assert_eq!(summary_value(&stdout, "lost_ring_full"), 0);
    // The endpoint map followed the calls: nearly all media matched it (the
    // map is checked before the heuristic), and every endpoint added was
    // removed again: 20 callers x (RTP + RTCP) + the callee's shared pair,
    // each added once and removed once.
    let media = summary_value(&stdout, "media");
    let heuristic = summary_value(&stdout, "heuristic");
    eprintln!("kept by the endpoint map {media}, by the heuristic {heuristic}");
    assert!(media > 20 * 400 && heuristic < 100, "{media} / {heuristic}");
    assert_eq!(
        summary_value(&stdout, "endpoint map updates"),
        2 * (2 * 20 + 2)
    );
    let theirs = count(&td, None);
    let ours = stored_frames(&dir);
    eprintln!("tcpdump: {theirs} UDP frames; voxtap store: {ours} frames");
    assert!(theirs > 20 * 400, "{theirs} frames: SIPp did not run?");
    assert_eq!(ours, theirs, "stored frames vs tcpdump");
    let mut all = Vec::new();
    for e in std::fs::read_dir(dir.join("store/pcap")).unwrap() {
        all.extend(frame_keys(&e.unwrap().path(), None));
    }
    all.sort();
    assert_same(&all, &frame_keys(&td, None), "stored frames vs tcpdump's");
    check_rings(&dir, 3, theirs as u64);
    check_workers(&dir, 2, theirs as u64);
    same_as_import(&dir);

    let calls = read_csv(&dir.join("out/calls.csv"));
    assert_eq!(calls.len(), 20, "calls.csv rows");
    let streams = read_csv(&dir.join("out/streams.csv"));
    let eps = sdp_endpoints(&td);
    for c in &calls {
        let cid = &c["call_id"];
        assert_eq!(c["state"], "answered", "{cid}");
        assert_eq!(c["capture_loss"], "0", "{cid}");
        let mine: Vec<_> = streams.iter().filter(|s| &s["call_id"] == cid).collect();
        let a2b = mine
            .iter()
            .any(|s| s["src"].starts_with(&lab.ip(1)) && s["dst"].starts_with(&lab.ip(2)));
        let b2a = mine
            .iter()
            .any(|s| s["src"].starts_with(&lab.ip(2)) && s["dst"].starts_with(&lab.ip(1)));
        assert!(a2b && b2a, "{cid}: RTP both ways ({} streams)", mine.len());
        let filter = call_filter(cid, &eps[cid]);
        let want = frame_keys(&td, Some(&filter));
        let total: usize = ["sip_packets", "rtp_packets", "rtcp_packets"]
            .iter()
            .map(|k| c[*k].parse::<usize>().unwrap())
            .sum();
        assert_eq!(total, want.len(), "{cid}: packets vs tshark on tcpdump");
        let x = dir.join(format!("x-{cid}.pcap"));
        let o = extract(&dir, cid, &x);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_same(&frame_keys(&x, None), &want, &format!("{cid}: extracted"));
        // The per-call output written live is the same cut.
        assert_same(
            &frame_keys(&dir.join("out").join(&c["pcap"]), None),
            &want,
            &format!("{cid}: call.pcap"),
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// sensor.json's `workers` after a run: the dispatcher, which steered every
/// stored frame, and `n` media workers that each ran some.
fn check_workers(dir: &std::path::Path, n: usize, total: u64) {
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("out/status/sensor.json")).unwrap())
            .unwrap();
    let w = st["workers"].as_array().expect("workers in sensor.json");
    assert_eq!(w.len(), 1 + n, "{st}");
    assert_eq!(w[0]["name"], "dispatcher");
    assert_eq!(w[0]["frames_total"], total, "{st}");
    for m in &w[1..] {
        let frames = m["frames_total"].as_u64().unwrap();
        eprintln!("{}: {frames} frames", m["name"]);
        // Each runs the SIP (broadcast) and its share of the media.
        assert!(frames > 0 && frames < total, "{m}");
    }
}

/// calls.csv and streams.csv of the live run (two media workers) equal
/// (rows sorted) those `voxtap import --engine-workers 1` writes from the
/// sensor's own rolling files.
fn same_as_import(dir: &std::path::Path) {
    let imp = import_store(dir);
    for f in ["calls.csv", "streams.csv"] {
        let sorted = |p: std::path::PathBuf| {
            let text = std::fs::read_to_string(&p).unwrap();
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            lines.sort();
            lines
        };
        let (live, import) = (sorted(dir.join("out").join(f)), sorted(imp.join(f)));
        assert!(live.len() > 20, "{f}: {} rows", live.len());
        assert_eq!(live, import, "{f}: live (pipeline = 2) vs import");
    }
}

/// sensor.json's `rings` after a run without loss: `n` rings, each with
/// frames, each ring's stored frames = the kernel's writes to it, and their
/// sum = `total` (tcpdump's count).
fn check_rings(dir: &std::path::Path, n: usize, total: u64) {
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("out/status/sensor.json")).unwrap())
            .unwrap();
    let rings = st["rings"].as_array().expect("rings in sensor.json");
    assert_eq!(rings.len(), n, "{st}");
    let mut sum = 0;
    for r in rings {
        let frames = r["frames_total"].as_u64().unwrap();
        eprintln!("{}: {frames} frames ({})", r["name"], r["carries"]);
        assert!(frames > 0, "a ring without frames: {r}");
        assert_eq!(frames, r["kernel_written"].as_u64().unwrap(), "{r}");
        assert_eq!(r["lost_ring_full"], 0, "{r}");
        sum += frames;
    }
    assert_eq!(sum, total, "frames over the rings vs tcpdump's");
}

/// Tiny limits (roll at 64 KiB, keep 256 KiB): the oldest files are deleted
/// first, the index says so, extracting a call whose files are gone names
/// them, and a call whose files remain is still extracted exactly.
#[test]
fn live_store_retention_deletes_oldest_and_index_stays_consistent() {
    require_root();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempdir("ret");
    let lab = Lab::up(&format!("vr{}", std::process::id() % 10000), 212);
    let cfg = "[store]\nroll_bytes = 65536\nmax_bytes = 262144\nmin_free_bytes = 0\n";
    let vox = start_voxtap(&lab, &dir, cfg, 40);
    let td = dir.join("tcpdump.pcap");
    let tcpdump = start_tcpdump(&lab, &td);
    sipp_calls(&lab, &dir, 8, 8);
    // A last call alone, well after the others ended (linger 5 s).
    wait_calls_written(&dir.join("out"), 8);
    sipp_calls(&lab, &dir, 1, 1);
    let out = vox.wait(Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "voxtap run: {stderr}");
    tcpdump.signal(libc::SIGINT);
    tcpdump.wait(Duration::from_secs(10));

    let db = dir.join("store/store.sqlite");
    // Read with SQLite directly (not through voxtap's own index code).
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let rows: Vec<(u32, String, u64, bool)> = conn
        .prepare("SELECT id, path, bytes, deleted FROM files ORDER BY id")
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get::<_, i64>(2)? as u64,
                r.get::<_, i64>(3)? != 0,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let deleted = rows.iter().filter(|r| r.3).count();
    eprintln!("{} files, {deleted} deleted", rows.len());
    assert!(deleted > 0, "nothing deleted");
    // Oldest first: the deleted files are a prefix of the ids.
    assert!(rows.iter().take(deleted).all(|r| r.3), "{rows:?}");
    let mut kept_bytes = 0;
    for (_, path, bytes, del) in &rows {
        let p = dir.join("store").join(path);
        assert_eq!(p.exists(), !del, "{path}: on disk vs index");
        if !del {
            assert_eq!(std::fs::metadata(&p).unwrap().len(), *bytes, "{path} size");
            kept_bytes += bytes;
        }
    }
    assert!(kept_bytes <= 262_144, "kept {kept_bytes} bytes");
    let by_size: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM files WHERE deleted = 1 AND deleted_reason = 'max_bytes'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(by_size as usize, deleted);

    let mut calls = read_csv(&dir.join("out/calls.csv"));
    assert_eq!(calls.len(), 9);
    // A live sensor writes rows as calls end (concurrent calls end in any
    // order): the first call is the one that started first (fixed-width
    // UTC times sort as text).
    calls.sort_by(|a, b| a["start"].cmp(&b["start"]));
    let first = calls.first().unwrap()["call_id"].clone();
    let last = calls.last().unwrap()["call_id"].clone();
    // The first call's files are gone: extract says which.
    let o = extract(&dir, &first, &dir.join("gone.pcap"));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    eprintln!("{err}");
    assert!(!o.status.success());
    assert!(err.contains("deleted by retention: max_bytes"), "{err}");
    assert!(err.contains(&rows[0].1), "names the oldest file: {err}");
    // The last call's files are kept: extract is exact.
    let eps = sdp_endpoints(&td);
    let x = dir.join("last.pcap");
    let o = extract(&dir, &last, &x);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The last call reuses the first calls' media ports (a new SIPp run):
    // cut tcpdump's file from its INVITE on (the others ended > 5 s before).
    let invite_ts = tshark(&[
        "-r",
        td.to_str().unwrap(),
        "-Y",
        &format!("sip.Call-ID == \"{last}\" && sip.Method == \"INVITE\""),
        "-T",
        "fields",
        "-e",
        "frame.time_epoch",
    ]);
    let t0 = invite_ts.lines().next().unwrap().trim().to_string();
    let filter = format!(
        "frame.time_epoch >= {t0} && ({})",
        call_filter(&last, &eps[&last])
    );
    assert_same(
        &frame_keys(&x, None),
        &frame_keys(&td, Some(&filter)),
        "last call extracted",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Eight small rings (64 KiB) and two media workers (`workers.pipeline =
/// 2`: each call's replicas are merged, a loss charged to them is counted
/// once), the reader of one media ring stalled 4 s after 100 frames: the
/// kernel counts the frames that ring could not hand
/// over (LostRingFull, on that ring only), stored + lost = tcpdump's count,
/// and exactly the calls with an SDP endpoint steered to that ring (ring
/// computed here from the hash's definition) say so in calls.csv
/// (capture_loss); the others lost nothing.
#[test]
fn live_stalled_ring_loss_counted_by_kernel_and_charged_to_its_calls() {
    require_root();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempdir("stall");
    let lab = Lab::up(&format!("vs{}", std::process::id() % 10000), 213);
    let stalled = ring_to_stall(&lab);
    let (stdout, td) = stalled_ring_run(&lab, &dir, stalled, "");
    eprintln!("{stdout}");
    let lost = summary_value(&stdout, "lost_ring_full");
    let stored = stored_frames(&dir) as u64;
    let theirs = count(&td, None) as u64;
    eprintln!("tcpdump {theirs}, stored {stored}, kernel lost {lost} (ring {stalled} stalled)");
    assert!(lost > 100, "lost {lost}");
    assert_eq!(stored + lost, theirs, "every frame stored or counted lost");
    // The sensor page's status file ends with the same figures, the loss
    // on the stalled ring only.
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("out/status/sensor.json")).unwrap())
            .unwrap();
    assert_eq!(st["running"], false, "{st}");
    assert_eq!(st["drops"]["ring_full"], lost, "{st}");
    assert_eq!(st["frames_total"], stored, "{st}");
    assert_eq!(st["calls_written"], 10, "{st}");
    let rings = st["rings"].as_array().unwrap();
    assert_eq!(rings.len(), RINGS as usize);
    for (i, r) in rings.iter().enumerate() {
        let want = if i == stalled as usize { lost } else { 0 };
        assert_eq!(r["lost_ring_full"], want, "ring {i}: {r}");
    }
    let per_ring: u64 = rings
        .iter()
        .map(|r| r["frames_total"].as_u64().unwrap())
        .sum();
    assert_eq!(per_ring, stored);
    let eps = sdp_endpoints(&td);
    let calls = read_csv(&dir.join("out/calls.csv"));
    assert_eq!(calls.len(), 10);
    let mut hit = 0;
    for c in &calls {
        let cid = &c["call_id"];
        // RTP to the SDP port, RTCP to the next one.
        let on_ring = eps[cid.as_str()]
            .iter()
            .flat_map(|(ip, port)| [(ip.clone(), *port), (ip.clone(), port + 1)])
            .any(|(ip, port)| media_ring(&ip, port) == stalled);
        let cl: u64 = c["capture_loss"].parse().unwrap();
        eprintln!("{cid}: on ring {stalled}: {on_ring}, capture_loss {cl}");
        if on_ring {
            hit += 1;
            // Every call is open through the stall (they last ~9 s).
            assert!(cl > 0 && cl <= lost, "{cid}: capture_loss {cl}");
        } else {
            assert_eq!(cl, 0, "{cid}: no media on ring {stalled}");
        }
    }
    // Both kinds of call, or the test shows nothing about the attribution.
    assert!(hit > 0 && hit < 10, "{hit} of 10 calls on ring {stalled}");
    let charged = st["capture_loss"].as_u64().unwrap();
    assert_eq!(charged, lost, "{st}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The callee's single media port (SIPp's UAS echoes every call on 16000)
/// listed in `workers.shared_media`, eight rings, the reader of a media
/// ring that holds none of the callee's endpoints by destination stalled
/// 4 s: the loader puts the endpoint in the kernel's map, so each frame
/// went to the ring the test computes from the hashes' definitions (SIP on
/// 0, media to the callee on `1 + pair hash`, spread over several rings,
/// other media by destination): per ring, kernel written + lost = tcpdump's
/// frames for it. Every call sends to the shared endpoint, so every call is
/// charged for the stalled ring's loss, not only those with an endpoint on
/// it by destination.
#[test]
fn live_shared_media_steered_by_pair_and_ring_loss_charged_to_every_call() {
    require_root();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempdir("shared");
    let lab = Lab::up(&format!("vh{}", std::process::id() % 10000), 217);
    let stalled = ring_to_stall(&lab);
    let server = format!("{}:16000", lab.ip(2));
    let shared = format!("shared_media = [\"{server}\"]\n");
    let (stdout, td) = stalled_ring_run(&lab, &dir, stalled, &shared);
    eprintln!("{stdout}");
    let lost = summary_value(&stdout, "lost_ring_full");
    assert!(lost > 100, "lost {lost}");
    let server = server.parse().unwrap();
    let (want, pair_rings) = frames_per_ring(&td, server);
    eprintln!(
        "tcpdump frames per ring {want:?}; callers' pair rings {pair_rings:?}; ring {stalled} stalled"
    );
    // The callers' streams to the one endpoint spread, and the stalled
    // ring held some of them.
    assert!(pair_rings.len() > 1, "{pair_rings:?}");
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("out/status/sensor.json")).unwrap())
            .unwrap();
    let rings = st["rings"].as_array().unwrap();
    let kept: Vec<u64> = rings
        .iter()
        .map(|r| r["kernel_written"].as_u64().unwrap() + r["lost_ring_full"].as_u64().unwrap())
        .collect();
    assert_eq!(
        kept, want,
        "kernel kept per ring vs tcpdump's by the definitions"
    );
    assert_eq!(rings[stalled as usize]["lost_ring_full"], lost, "{st}");
    let calls = read_csv(&dir.join("out/calls.csv"));
    assert_eq!(calls.len(), 10);
    for c in &calls {
        let cl: u64 = c["capture_loss"].parse().unwrap();
        eprintln!("{}: capture_loss {cl}", c["call_id"]);
        assert!(cl > 0 && cl <= lost, "{}: capture_loss {cl}", c["call_id"]);
    }
    assert_eq!(st["capture_loss"].as_u64().unwrap(), lost, "{st}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// 10 SIPp calls through `voxtap run` with [`RINGS`] rings and 2 media
/// workers (`workers` adds to its `[workers]` section), the reader of ring
/// `stalled` stalled 4 s after 100 frames, tcpdump beside it: voxtap's
/// standard output and tcpdump's file.
fn stalled_ring_run(
    lab: &Lab,
    dir: &std::path::Path,
    stalled: u32,
    workers: &str,
) -> (String, std::path::PathBuf) {
    let cfg = format!(
        "[capture]\nring_bytes = 65536\n[workers]\nrings = {RINGS}\npipeline = 2\n{workers}[testing]\nstall_reader_after_frames = 100\nstall_reader_ms = 4000\nstall_reader_ring = {stalled}\n"
    );
    let vox = start_voxtap(lab, dir, &cfg, 24);
    let td = dir.join("tcpdump.pcap");
    let tcpdump = start_tcpdump(lab, &td);
    sipp_calls(lab, dir, 10, 10);
    let out = vox.wait(Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "voxtap run: {stderr}");
    tcpdump.signal(libc::SIGINT);
    tcpdump.wait(Duration::from_secs(10));
    (String::from_utf8_lossy(&out.stdout).into_owned(), td)
}

/// tcpdump's frames by the ring the XDP program must have put them on with
/// [`RINGS`] rings and `server` shared (its RTP port and the RTCP port
/// above), and the set of rings the callers' media to `server` went to.
fn frames_per_ring(
    td: &std::path::Path,
    server: std::net::SocketAddr,
) -> (Vec<u64>, std::collections::BTreeSet<u32>) {
    let out = tshark(&[
        "-r",
        td.to_str().unwrap(),
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-e",
        "ip.src",
        "-e",
        "udp.srcport",
        "-e",
        "ip.dst",
        "-e",
        "udp.dstport",
    ]);
    let mut per_ring = vec![0u64; RINGS as usize];
    let mut pair_rings = std::collections::BTreeSet::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split('|').collect();
        let src: std::net::SocketAddr = format!("{}:{}", f[0], f[1]).parse().unwrap();
        let dst: std::net::SocketAddr = format!("{}:{}", f[2], f[3]).parse().unwrap();
        let ring = if src.port() == 5060 || dst.port() == 5060 {
            0
        } else if dst.ip() == server.ip() && dst.port() & !1 == server.port() {
            let r = crate::xdp_steer::pair_ring_by_definition(src, dst, RINGS);
            pair_rings.insert(r);
            r
        } else {
            media_ring(&dst.ip().to_string(), dst.port() & !1)
        };
        per_ring[ring as usize] += 1;
    }
    (per_ring, pair_rings)
}

/// Two media workers; media worker K stops for 3 s (the debug build's
/// `[testing]` hook) with `workers.media_queue_bytes` at 16 KiB, K being
/// the worker without the callee's endpoints: the dispatcher goes on and
/// drops K's own media only, counted (summary line, `drops.worker_queue_full`,
/// `workers[1 + K].dropped`) and charged only to the calls with media on K
/// (`capture_loss`, summing to the drops in sensor.json). Nothing stopped
/// before the workers: no kernel ring loss, every frame tcpdump saw is in
/// the store; every call is in calls.csv with all its SIP messages
/// (`voxtap import` of the stored frames counts the same); the calls
/// without media on K have exactly import's calls.csv and streams.csv rows.
#[test]
fn live_stalled_media_worker_loss_charged_only_to_its_calls() {
    require_root();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempdir("mstall");
    let (subnet, stalled) = lab_for_worker_stall();
    let lab = Lab::up(&format!("vm{}", std::process::id() % 10000), subnet);
    let cfg = format!(
        "[workers]\nrings = 3\npipeline = 2\nmedia_queue_bytes = 16384\n[testing]\nstall_media_worker_after_frames = 200\nstall_media_worker_ms = 3000\nstall_media_worker = {stalled}\n"
    );
    let vox = start_voxtap(&lab, &dir, &cfg, 120);
    let td = dir.join("tcpdump.pcap");
    let tcpdump = start_tcpdump(&lab, &td);
    sipp_calls(&lab, &dir, 10, 10);
    wait_calls_written(&dir.join("out"), 10);
    vox.signal(libc::SIGTERM);
    let out = vox.wait(Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "voxtap run: {stderr}");
    assert!(
        stderr.contains("test fault: media worker stalls"),
        "{stderr}"
    );
    tcpdump.signal(libc::SIGINT);
    tcpdump.wait(Duration::from_secs(10));
    eprintln!("{stdout}");
    let dropped = summary_value(&stdout, "media dropped (worker behind)");
    assert_eq!(summary_value(&stdout, "lost_ring_full"), 0);
    let (theirs, stored) = (count(&td, None) as u64, stored_frames(&dir) as u64);
    eprintln!("tcpdump {theirs}, stored {stored}, dropped for media{stalled} {dropped}");
    assert!(dropped > 100, "dropped {dropped}");
    assert_eq!(stored, theirs, "stored frames vs tcpdump");
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("out/status/sensor.json")).unwrap())
            .unwrap();
    assert_eq!(st["running"], false, "{st}");
    assert_eq!(st["drops"]["worker_queue_full"], dropped, "{st}");
    assert_eq!(st["capture_loss"], dropped, "{st}");
    for (k, w) in st["workers"].as_array().unwrap()[1..].iter().enumerate() {
        let want = if k == stalled { dropped } else { 0 };
        assert_eq!(w["dropped"], want, "media{k}: {w}");
    }
    check_workers(&dir, 2, theirs);
    let charged = check_stalled_worker_calls(&dir, &td, stalled, dropped);
    eprintln!("{charged} of 10 calls charged");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The calls of the worker stall test against `voxtap import` of the
/// stored frames: the same calls and SIP messages; those without media on
/// the stalled worker the same rows; the others charged, at most `dropped`
/// each. Returns how many were charged.
fn check_stalled_worker_calls(
    dir: &std::path::Path,
    td: &std::path::Path,
    stalled: usize,
    dropped: u64,
) -> usize {
    let imp = import_store(dir);
    let by_id = |p: std::path::PathBuf| -> std::collections::BTreeMap<String, _> {
        read_csv(&p)
            .into_iter()
            .map(|r| (r["call_id"].clone(), r))
            .collect()
    };
    let (live, import) = (
        by_id(dir.join("out/calls.csv")),
        by_id(imp.join("calls.csv")),
    );
    assert_eq!(live.len(), 10);
    assert_eq!(
        live.keys().collect::<Vec<_>>(),
        import.keys().collect::<Vec<_>>()
    );
    let streams = |p: std::path::PathBuf, cid: &str| {
        let mut rows: Vec<String> = std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .filter(|l| l.contains(cid))
            .map(String::from)
            .collect();
        rows.sort();
        rows
    };
    let eps = sdp_endpoints(td);
    let mut charged = 0;
    for (cid, c) in &live {
        let i = &import[cid];
        assert_eq!(c["sip_messages"], i["sip_messages"], "{cid}");
        let sip = count(td, Some(&format!("sip.Call-ID == \"{cid}\"")));
        assert_eq!(c["sip_messages"], sip.to_string(), "{cid}: SIP vs tcpdump");
        let on_stalled = eps[cid.as_str()]
            .iter()
            .any(|(ip, port)| media_worker(ip, *port) == stalled);
        let cl: u64 = c["capture_loss"].parse().unwrap();
        eprintln!("{cid}: media on worker {stalled}: {on_stalled}, capture_loss {cl}");
        if on_stalled {
            assert!(cl > 0 && cl <= dropped, "{cid}: capture_loss {cl}");
            charged += 1;
            continue;
        }
        assert_eq!(
            c, i,
            "{cid}: a call without media on worker {stalled} vs import"
        );
        let (ls, is) = (
            streams(dir.join("out/streams.csv"), cid),
            streams(imp.join("streams.csv"), cid),
        );
        assert!(!ls.is_empty());
        assert_eq!(ls, is, "{cid}: streams vs import");
    }
    // Both kinds of call, or the test shows nothing about the attribution.
    assert!(charged > 0 && charged < 10, "{charged} of 10 calls charged");
    charged
}

/// `voxtap import` (one engine worker) of the sensor's rolling files, into
/// DIR/import.
fn import_store(dir: &std::path::Path) -> std::path::PathBuf {
    let imp = dir.join("import");
    let mut files: Vec<_> = std::fs::read_dir(dir.join("store/pcap"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let o = std::process::Command::new(VOXTAP)
        .args(["import", "-q", "--engine-workers", "1", "--out"])
        .arg(&imp)
        .args(&files)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    imp
}

/// The media worker (of 2) of an endpoint.
fn media_worker(ip: &str, port: u16) -> usize {
    (crate::xdp_steer::steer_hash_by_definition(ip.parse().unwrap(), port & !1) % 2) as usize
}

/// A lab subnet where the callee's endpoints (SIPp's UAS echoes on 16000
/// and 16002; RTCP on the odd port goes with its RTP) all belong to one
/// media worker and the caller's likely ones (from 17000) to both; and the
/// other worker, to stall: only some calls then have media on it.
fn lab_for_worker_stall() -> (u8, usize) {
    for subnet in 224..=250u8 {
        let ip = |h: u8| format!("10.{subnet}.0.{h}");
        let callee = media_worker(&ip(2), 16000);
        if media_worker(&ip(2), 16002) != callee {
            continue;
        }
        let other = (17000..17020)
            .step_by(2)
            .filter(|p| media_worker(&ip(1), *p) != callee)
            .count();
        if (3..=7).contains(&other) {
            return (subnet, 1 - callee);
        }
    }
    panic!("no lab subnet splits the callers' endpoints over the workers");
}

const RINGS: u32 = 8;

/// Ring of a media endpoint with [`RINGS`] rings.
fn media_ring(ip: &str, port: u16) -> u32 {
    1 + crate::xdp_steer::steer_hash_by_definition(ip.parse().unwrap(), port) % (RINGS - 1)
}

/// The media ring that holds none of the callee's endpoints (SIPp's UAS
/// echoes RTP on 16000, RTCP 16001, and 16002) and the most of the caller's
/// likely ones (ports from 17000): only some calls then have media on it.
fn ring_to_stall(lab: &Lab) -> u32 {
    let callee: Vec<u32> = (16000..=16002).map(|p| media_ring(&lab.ip(2), p)).collect();
    let mut per_ring = [0u32; RINGS as usize];
    for port in (17000..17040).step_by(2) {
        per_ring[media_ring(&lab.ip(1), port) as usize] += 1;
    }
    (1..RINGS)
        .filter(|r| !callee.contains(r))
        .max_by_key(|r| per_ring[*r as usize])
        .expect("a media ring without the callee's endpoints")
}
