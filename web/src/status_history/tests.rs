//! A known history written through the sensor's own recorder, rendered, and
//! the drawn points and the figures read back from the markup.

use super::*;
use serde_json::json;

/// A fixed "now": 5 s into an interval.
const NOW: u64 = 1_800_000_005;

/// Frames stored in the interval ending with sample `i` (varied so that
/// a wrong pairing of samples shows).
fn frames_in(i: u64) -> u64 {
    10 * (i % 7) + 3 * (i % 3)
}

/// `values` of the series labelled `label` in the chart `id`.
fn values(html: &str, id: &str, label: &str) -> Vec<Option<f64>> {
    let svg = &html[html.find(&format!("id=\"{id}\"")).expect(id)..];
    let svg = &svg[..svg.find("</svg>").unwrap()];
    let at = svg
        .find(&format!("data-label=\"{label}\" data-values=\""))
        .unwrap_or_else(|| panic!("{id}: no series {label}"));
    let rest = &svg[at..];
    let rest = &rest[rest.find("data-values=\"").unwrap() + 13..];
    rest[..rest.find('"').unwrap()]
        .split(' ')
        .map(|v| (v != "-").then(|| v.parse().unwrap()))
        .collect()
}

/// Writes samples at `t0 + 10 i` for `i` in `range`, as the sensor would:
/// cumulative frames, one ring-full drop every other sample, the store
/// growing by a MiB a sample, two HEP collectors.
fn feed(data: &std::path::Path, t0: u64, range: std::ops::Range<u64>) {
    for i in range {
        let total: u64 = (0..=i).map(frames_in).sum();
        let v = json!({
            "frames_total": total, "kernel": {"seen": total * 2},
            "drops": {"ring_full": i / 2, "malformed": 0},
            "store": {"bytes": i << 20}, "ring": {"fill_percent": (i % 100) as f64},
            "iface": "eth0", "updated_unix": t0 + 10 * i,
            "rings": [
                {"name": "ring0", "carries": "signalling", "fill_percent": (i % 10) as f64},
                {"name": "ring1", "carries": "media", "fill_percent": (i % 50) as f64},
            ],
            "workers": [
                {"name": "dispatcher", "busy_percent": (i % 30) as f64},
                {"name": "media0", "busy_percent": (i % 40) as f64},
            ],
        });
        assert!(history::record(data, "sensor", &v, t0 + 10 * i).unwrap());
        let hep = json!({"collectors": [
            {"collector": "udp:10.0.0.9:9060", "queue_depth": i % 5},
            {"collector": "tcp:10.0.0.8:9061", "queue_depth": 2 * (i % 5)},
        ]});
        assert!(history::record(data, "hep", &hep, t0 + 10 * i).unwrap());
    }
}

fn statuses() -> Vec<(String, Value)> {
    vec![
        (
            "sensor".into(),
            json!({"frames_per_second": 123.5, "bytes_per_second": 2048.0, "calls_active": 4,
                   "drops": {"ring_full": 7, "malformed": 2, "unkept_by_config": 0, "call_write_errors": 1},
                   "ring": {"fill_percent": 12.5, "backlog_bytes": 8192, "bytes": 65536},
                   "store": {"bytes": 3 << 20, "files": 9},
                   "rings": [{"name": "ring0", "fill_percent": 1.5, "lost_ring_full": 0},
                             {"name": "ring1", "fill_percent": 40.0, "lost_ring_full": 334}],
                   "workers": [{"name": "dispatcher", "busy_percent": 20.5, "frames_per_second": 900.0},
                               {"name": "media0", "busy_percent": 35.0, "frames_per_second": 600.0}]}),
        ),
        (
            "hep".into(),
            json!({"collectors": [{"collector": "udp:10.0.0.9:9060", "queue_depth": 3, "dropped_queue_full": 11}]}),
        ),
    ]
}

#[test]
fn last_hour_draws_each_sample_and_the_current_figures() {
    let d = tempfile::tempdir().unwrap();
    let w = Window::new(Range::H1, NOW);
    assert_eq!((w.from, w.width, w.n), (NOW - 5 + 10 - 3600, 10, 360));
    // From one interval before the window to the current one; sample 200 is
    // missing (a writer that stalled).
    let t0 = w.from - 10;
    feed(d.path(), t0, 0..200);
    feed(d.path(), t0, 201..362);
    let hist = load(d.path(), w);
    let html = section(&statuses(), &hist, Range::H1, NOW).into_string();
    let stored = values(&html, "chart-frames", "stored");
    assert_eq!(stored.len(), 360);
    for (j, v) in stored.iter().enumerate() {
        // Bucket j holds sample j + 1: its frames over 10 s. The missing
        // sample's bucket is empty; the next one's rate is over 20 s.
        let i = j as u64 + 1;
        match i {
            200 => assert_eq!(*v, None, "bucket {j}"),
            201 => assert_eq!(*v, Some((frames_in(200) + frames_in(201)) as f64 / 20.0)),
            _ => assert_eq!(*v, Some(frames_in(i) as f64 / 10.0), "bucket {j}"),
        }
    }
    let seen = values(&html, "chart-frames", "seen by XDP");
    assert_eq!(seen[5], Some(2.0 * frames_in(6) as f64 / 10.0));
    let ring_full = values(&html, "chart-drops", "ring full");
    // One drop every other 10 s.
    assert_eq!(ring_full[0], Some(0.0));
    assert_eq!(ring_full[1], Some(0.1));
    let store = values(&html, "chart-store", "used");
    assert_eq!(store[9], Some(10.0), "MiB");
    assert_eq!(values(&html, "chart-ring", "ring")[98], Some(99.0));
    // One line per HEP collector, named by it.
    assert_eq!(
        values(&html, "chart-hep", "udp:10.0.0.9:9060")[3],
        Some(4.0)
    );
    assert_eq!(
        values(&html, "chart-hep", "tcp:10.0.0.8:9061")[3],
        Some(8.0)
    );
    // A line per ring and per worker, named by it, each its own colour.
    assert_eq!(values(&html, "chart-rings", "ring0")[98], Some(9.0));
    assert_eq!(values(&html, "chart-rings", "ring1")[98], Some(49.0));
    assert_eq!(values(&html, "chart-workers", "dispatcher")[98], Some(9.0));
    assert_eq!(values(&html, "chart-workers", "media0")[98], Some(19.0));
    let rings = &html[html.find("id=\"chart-rings\"").unwrap()..];
    let rings = &rings[..rings.find("</svg>").unwrap()];
    assert!(rings.contains(PALETTE[0]) && rings.contains(PALETTE[1]));
    // No upload status and no history: no chart.
    assert!(!html.contains("chart-upload"));
    // The figures are the status file's.
    for (key, v, shown) in [
        ("sensor:frames_per_second", "123.5", "123.5"),
        ("sensor:drops.ring_full", "7", "7"),
        ("sensor:ring.fill_percent", "12.5", "12.5"),
        ("sensor:store.bytes", "3145728", "3.0 MiB"),
        ("sensor:rings[ring1].lost_ring_full", "334", "334"),
        ("sensor:workers[media0].busy_percent", "35", "35"),
        (
            "hep:collectors[udp:10.0.0.9:9060].dropped_queue_full",
            "11",
            "11",
        ),
    ] {
        assert!(
            html.contains(&format!("data-key=\"{key}\" data-v=\"{v}\">{shown}</dd>")),
            "{key}"
        );
    }
}

#[test]
fn a_day_is_four_minute_means() {
    let d = tempfile::tempdir().unwrap();
    let w = Window::new(Range::H24, NOW);
    assert_eq!((w.width, w.n), (240, 360));
    // A day of slots holds samples 1 ..= 8640: sample 0, before the window,
    // would take sample 8640's slot.
    let t0 = w.from - 10;
    feed(d.path(), t0, 1..8641);
    let html = section(&statuses(), &load(d.path(), w), Range::H24, NOW).into_string();
    let stored = values(&html, "chart-frames", "stored");
    for (j, v) in stored.iter().enumerate() {
        // Samples 24 j + 1 ..= 24 j + 24 fall in bucket j; the first has
        // no rate without sample 0.
        let i = (24 * j as u64 + 1).max(2)..24 * j as u64 + 25;
        let k = i.clone().count() as f64;
        let mean = i.map(|i| frames_in(i) as f64 / 10.0).sum::<f64>() / k;
        assert!(
            (v.unwrap() - mean).abs() < 1e-3,
            "bucket {j}: {v:?} vs {mean}"
        );
    }
    let store = values(&html, "chart-store", "used");
    let mean = (1..=24).sum::<u64>() as f64 / 24.0;
    assert!((store[0].unwrap() - mean).abs() < 1e-3);
}

#[test]
fn range_parses_and_wildcards_match_items_only() {
    assert_eq!(Range::parse(Some("24h")), Range::H24);
    assert_eq!(Range::parse(Some("bogus")), Range::H1);
    let keys = [
        "collectors[a].queue_depth".to_string(),
        "collectors[b].queue_depth_max".into(),
        "queue_depth".into(),
    ];
    let m = matching("collectors[*].queue_depth", keys.iter());
    assert_eq!(m, [("collectors[a].queue_depth", "a".to_string())]);
}
