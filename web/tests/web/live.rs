//! The Live page in headless Chromium, reading its server-sent events: a
//! capture of real SIPp calls from the corpus is run through the engine's
//! pipeline one second of capture time at a time, and after each second
//! the live snapshot is built and written exactly as `voxtap run`'s
//! pipeline thread does (`LiveSnapshots` + `status::write_live_calls`).
//! The test waits for the browser to show each snapshot before the next
//! (no sleeps: the pace is the browser's), so it sees every step: the
//! calls appear, their durations grow, they move to "ended" with the
//! figures `voxtap import` writes to calls.csv for the same file, and leave
//! the table. The namespace lab test (capture/cli/tests/sensor/
//! live_calls.rs) checks the same snapshots from a real `voxtap run`.

use crate::common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::*;
use fantoccini::{Client, Locator};
use serde::Deserialize;
use voxtap_engine::calls::PacketRef;
use voxtap_engine::live_calls::{DEFAULT_MAX_CALLS, LiveSnapshot, LiveSnapshots};
use voxtap_engine::pipeline::{Pipeline, PipelineConfig};
use voxtap_sensor::status::write_live_calls;

#[derive(Debug, Deserialize)]
struct Row {
    id: String,
    dur: f64,
    rtp: u64,
    cells: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct CallView {
    dur: f64,
    arrows: usize,
}

/// What the page shows, read in one script (the events replace the
/// elements, so a found element can go stale before it is read).
#[derive(Debug, Deserialize)]
struct Seen {
    seq: i64,
    open: Vec<Row>,
    ended: Vec<Row>,
    stopped: bool,
    call: Option<CallView>,
}

const OBSERVE: &str = r#"
const s = document.getElementById('live-summary');
const rows = (sel) => Array.from(document.querySelectorAll(sel + ' tr.live-call')).map(r => ({
  id: r.dataset.callId, dur: parseFloat(r.dataset.duration), rtp: parseInt(r.dataset.rtp),
  cells: Array.from(r.cells).map(c => c.textContent)}));
const call = document.getElementById('live-call');
return {seq: s ? parseInt(s.dataset.seq) : -1, open: rows('#live-table'), ended: rows('#live-ended'),
  stopped: !!document.getElementById('live-stopped'),
  call: call ? {dur: parseFloat(call.dataset.duration),
    arrows: document.querySelectorAll('svg.ladder a.msg').length} : null};
"#;

async fn observe(c: &Client) -> Seen {
    let v = c.execute(OBSERVE, vec![]).await.unwrap();
    serde_json::from_value(v).unwrap()
}

/// Waits (bounded) until the page shows snapshot `seq`.
async fn wait_seq(c: &Client, seq: u64) -> Seen {
    for _ in 0..200 {
        let s = observe(c).await;
        if s.seq == seq as i64 {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the page never showed snapshot {seq}: {:?}",
        observe(c).await
    );
}

async fn open_live_logged_in(c: &Client, base: &str) {
    c.goto(&format!("{base}/live")).await.unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/login");
    common::log_in(c, USER, PASSWORD).await;
    c.wait()
        .for_element(Locator::Id("live-calls"))
        .await
        .unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/live");
}

/// Every frame of `file` as (time, link, data).
pub(crate) fn frames(file: &Path) -> Vec<(u64, voxtap_proto::pcapio::LinkType, Vec<u8>)> {
    let mut r = voxtap_engine::pcapfile::open(file).unwrap();
    let mut out = Vec::new();
    while let Some(rec) = r.next_packet().unwrap() {
        out.push((rec.ts_ns, rec.link, rec.data.to_vec()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_page_follows_the_calls_as_they_run() {
    let pcap = corpus("generated/sipp-netns-udp-2calls.pcap");
    let reference = data_dir_with(&pcap);
    let calls_csv = voxtap_testkit::csv::read_csv(&reference.path().join("calls.csv"));
    assert_eq!(calls_csv.len(), 2);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().canonicalize().unwrap();
    let running = start(&data).await;
    let base = format!("http://{}", running.addr);
    let (_driver, c) = browser().await;
    open_live_logged_in(&c, &base).await;
    assert!(
        c.find(Locator::Id("live-none")).await.is_ok(),
        "no snapshot yet"
    );

    let frames = frames(&pcap);
    let mut pipeline = Pipeline::new(PipelineConfig::default());
    let mut live = LiveSnapshots::new(DEFAULT_MAX_CALLS);
    let mut seen: Vec<Seen> = Vec::new();
    let first_cid = calls_csv[0]["call_id"].clone();
    let mut on_call_page = false;
    let mut call_page_ticks = 0;
    let publish = |snap: &LiveSnapshot, running: bool| {
        write_live_calls(&data, snap, running).unwrap();
    };
    // One tick per second of capture time, on past the last frame as a
    // running sensor's clock goes on: the calls end by themselves (BYE,
    // then the table's linger) rather than by the end of the capture.
    let (first, end) = (frames[0].0, frames[frames.len() - 1].0 + 10_000_000_000);
    let mut next = 0;
    let mut tick = first + 1_000_000_000;
    while tick <= end {
        while next < frames.len() && frames[next].0 < tick {
            let (ts, link, bytes) = &frames[next];
            pipeline.process(*link, *ts, PacketRef::new(0, next as u64), bytes);
            next += 1;
        }
        pipeline.calls_mut().tick(tick);
        let ended = pipeline.drain_ended();
        live.note_ended(&ended, tick);
        let snap = live.snapshot(pipeline.calls().open(), tick);
        publish(&snap, true);
        let s = wait_seq(&c, snap.seq).await;
        // Midway, the first call's own page while it runs (8 ticks: its
        // BYE comes in them), then back to the list.
        let first_open = s.open.iter().any(|r| r.id == first_cid);
        if first_open && !on_call_page && seen.len() > 2 {
            full_page_screenshot(&c, "live.png").await;
            c.goto(&format!("{base}/live/calls/{first_cid}"))
                .await
                .unwrap();
            on_call_page = true;
        } else if s.call.is_some() {
            call_page_ticks += 1;
            if call_page_ticks == 8 {
                full_page_screenshot(&c, "live-call.png").await;
                c.goto(&format!("{base}/live")).await.unwrap();
            }
        }
        seen.push(s);
        tick += 1_000_000_000;
    }
    pipeline.finish();
    let ended = pipeline.drain_ended();
    live.note_ended(&ended, pipeline.calls().now_ns());
    let snap = live.snapshot(pipeline.calls().open(), pipeline.calls().now_ns());
    publish(&snap, false);
    let last = wait_seq(&c, snap.seq).await;
    full_page_screenshot(&c, "live-ended.png").await;
    seen.push(last);
    check(&seen, &calls_csv);
    // Opening the live call page is a view in the audit log, like a call's.
    let log = running.state.audit.query(&Default::default(), 50).unwrap();
    assert!(
        log.iter().any(|e| e.user == USER
            && e.action == "view"
            && e.detail == format!("live {first_cid}")),
        "{log:?}"
    );
    c.close().await.unwrap();
    running.task.abort();
}

/// Appear, grow, end with calls.csv's figures, leave the table.
fn check(seen: &[Seen], calls_csv: &[HashMap<String, String>]) {
    let last = seen.last().unwrap();
    for row in calls_csv {
        let cid = &row["call_id"];
        let open: Vec<&Row> = seen
            .iter()
            .flat_map(|s| s.open.iter())
            .filter(|r| &r.id == cid)
            .collect();
        assert!(open.len() >= 3, "{cid} shown open {} times", open.len());
        assert!(
            open.windows(2)
                .all(|w| w[1].dur > w[0].dur && w[1].rtp >= w[0].rtp),
            "{cid}: durations grow: {:?}",
            open.iter().map(|r| r.dur).collect::<Vec<_>>()
        );
        let first_ended = seen
            .iter()
            .position(|s| s.ended.iter().any(|r| &r.id == cid))
            .unwrap_or_else(|| panic!("{cid} never shown ended"));
        assert!(
            seen[first_ended..]
                .iter()
                .all(|s| s.open.iter().all(|r| &r.id != cid)),
            "{cid} left the open table when it ended"
        );
        let e = seen[first_ended]
            .ended
            .iter()
            .find(|r| &r.id == cid)
            .unwrap();
        assert_eq!(format!("{:.3}", e.dur), row["duration_s"], "{cid} duration");
        assert_eq!(e.rtp.to_string(), row["rtp_packets"], "{cid} RTP packets");
        // Cells: Call-ID, state, start, duration, from, to, codec, RTP, ...
        assert_eq!(e.cells[1], row["state"], "{cid} state");
        assert_eq!((&e.cells[4], &e.cells[5]), (&row["from"], &row["to"]));
    }
    // The call page grew too: its ladder and duration.
    let pages: Vec<&CallView> = seen.iter().filter_map(|s| s.call.as_ref()).collect();
    assert!(pages.len() >= 2, "the live call page was followed");
    assert!(pages.windows(2).all(|w| w[1].dur >= w[0].dur));
    assert!(
        pages.last().unwrap().arrows > pages[0].arrows,
        "the ladder grew"
    );
    assert!(last.stopped && last.open.is_empty(), "{last:?}");
    assert_eq!(last.ended.len(), calls_csv.len());
}

async fn full_page_screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshots_dir().join(name), png).unwrap();
}
