//! The live calls snapshot (`<out>/live/calls.json`) of a real `voxtap
//! run` on the namespace lab: SIPp calls through real XDP appear in it,
//! grow, end with the figures calls.csv and streams.csv get, and leave it;
//! the snapshot is written about once a second, never faster. Two media
//! workers and three rings (`workers.pipeline = 2`): each snapshot is
//! merged from the replicas' parts (each stream lives on one worker).
#![cfg(target_os = "linux")]

use crate::lab;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lab::*;
use serde_json::Value;

/// Reads the snapshot file until `stop`, keeping each new one (by `seq`)
/// with the time it was first seen.
fn follow(path: &Path, stop: &AtomicBool) -> Vec<(Instant, Value)> {
    let mut out: Vec<(Instant, Value)> = Vec::new();
    let mut last_seq = 0;
    loop {
        let done = stop.load(Ordering::Relaxed);
        if let Some(v) = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        {
            let seq = v["seq"].as_u64().unwrap();
            if seq != last_seq {
                last_seq = seq;
                out.push((Instant::now(), v));
            }
        }
        if done {
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn entries<'a>(snap: &'a Value, list: &str, cid: &str) -> Option<&'a Value> {
    snap[list].as_array()?.iter().find(|c| c["call_id"] == cid)
}

#[test]
fn live_snapshot_follows_sipp_calls() {
    require_root();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempdir("live");
    let lab = Lab::up(&format!("vc{}", std::process::id() % 10000), 219);
    let vox = start_voxtap(&lab, &dir, "[workers]\nrings = 3\npipeline = 2\n", 120);
    let file = dir.join("out/live/calls.json");
    let stop = Arc::new(AtomicBool::new(false));
    let follower = {
        let (file, stop) = (file.clone(), Arc::clone(&stop));
        std::thread::spawn(move || follow(&file, &stop))
    };
    let started = Instant::now();
    sipp_calls(&lab, &dir, 6, 3);
    wait_calls_written(&dir.join("out"), 6);
    vox.signal(libc::SIGTERM);
    let out = vox.wait(Duration::from_secs(30));
    assert!(
        out.status.success(),
        "voxtap run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let snaps = follower.join().unwrap();
    let calls = read_csv(&dir.join("out/calls.csv"));
    let streams = read_csv(&dir.join("out/streams.csv"));
    assert_eq!(calls.len(), 6);
    check_rate(&snaps, elapsed);
    for c in &calls {
        check_call(&snaps, c, &streams);
    }
    let (_, last) = snaps.last().unwrap();
    assert_eq!(
        last["running"], false,
        "the last snapshot says the run stopped"
    );
    assert_eq!(last["calls"].as_array().unwrap().len(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// At most one snapshot per second (and one more at the end); the file
/// names the seconds its windows span and its cap.
fn check_rate(snaps: &[(Instant, Value)], elapsed: Duration) {
    let (first, last) = (&snaps[0].1, &snaps[snaps.len() - 1].1);
    let made = last["seq"].as_u64().unwrap() - first["seq"].as_u64().unwrap() + 1;
    eprintln!(
        "{made} snapshots in {:.1} s; build times (us): max {}",
        elapsed.as_secs_f64(),
        snaps
            .iter()
            .map(|(_, s)| s["build_us"].as_u64().unwrap())
            .max()
            .unwrap()
    );
    assert!(
        made as f64 <= elapsed.as_secs_f64() + 3.0,
        "{made} snapshots in {elapsed:?}"
    );
    assert!(snaps.len() >= 10, "followed {} snapshots", snaps.len());
    assert_eq!(first["max_calls"], 1000);
    assert_eq!(first["truncated"], false);
}

/// One call: open in at least 3 snapshots with growing duration and RTP,
/// then ended with calls.csv's and streams.csv's figures, never open again.
fn check_call(
    snaps: &[(Instant, Value)],
    c: &std::collections::HashMap<String, String>,
    streams: &[std::collections::HashMap<String, String>],
) {
    let cid = c["call_id"].as_str();
    let open: Vec<&Value> = snaps
        .iter()
        .filter_map(|(_, s)| entries(s, "calls", cid))
        .collect();
    assert!(open.len() >= 3, "{cid}: open in {} snapshots", open.len());
    let durs: Vec<f64> = open
        .iter()
        .map(|e| e["duration_s"].as_f64().unwrap())
        .collect();
    assert!(durs.windows(2).all(|w| w[1] > w[0]), "{cid}: {durs:?}");
    let rtp: Vec<u64> = open
        .iter()
        .map(|e| e["rtp_packets"].as_u64().unwrap())
        .collect();
    assert!(rtp.windows(2).all(|w| w[1] >= w[0]), "{cid}: {rtp:?}");
    assert!(
        rtp.last().unwrap() > rtp.first().unwrap(),
        "{cid}: RTP grew"
    );
    let ended_at = snaps
        .iter()
        .position(|(_, s)| entries(s, "ended", cid).is_some())
        .unwrap_or_else(|| panic!("{cid} never listed as ended"));
    assert!(
        snaps[ended_at..]
            .iter()
            .all(|(_, s)| entries(s, "calls", cid).is_none()),
        "{cid} open again after it ended"
    );
    let e = entries(&snaps[ended_at].1, "ended", cid).unwrap();
    assert_eq!(e["ended"], true);
    assert_eq!(e["from"], c["from"].as_str(), "{cid}");
    assert_eq!(e["to"], c["to"].as_str(), "{cid}");
    assert_eq!(e["state"], c["state"].as_str(), "{cid}");
    assert_eq!(
        format!("{:.3}", e["duration_s"].as_f64().unwrap()),
        c["duration_s"],
        "{cid} duration"
    );
    assert_eq!(e["rtp_packets"].to_string(), c["rtp_packets"], "{cid}");
    // Per stream: packets and codec as streams.csv has them.
    type Key = (String, String, String);
    let want: BTreeMap<Key, (String, String)> = streams
        .iter()
        .filter(|s| s["call_id"] == cid)
        .map(|s| {
            (
                (s["src"].clone(), s["dst"].clone(), s["ssrc_hex"].clone()),
                (s["packets"].clone(), s["codec"].clone()),
            )
        })
        .collect();
    let got: BTreeMap<Key, (String, String)> = e["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                (
                    s["src"].as_str().unwrap().into(),
                    s["dst"].as_str().unwrap().into(),
                    format!("0x{:08X}", s["ssrc"].as_u64().unwrap()),
                ),
                (
                    s["packets"].to_string(),
                    s["codec"].as_str().unwrap().into(),
                ),
            )
        })
        .collect();
    assert_eq!(got, want, "{cid}: streams");
    assert!(want.len() >= 2, "{cid}: RTP both ways");
    let codecs: BTreeSet<&str> = want.values().map(|v| v.1.as_str()).collect();
    let named: BTreeSet<&str> = e["codec"].as_str().unwrap().split('/').collect();
    assert_eq!(named, codecs, "{cid}: codec");
}
