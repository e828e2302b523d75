//! The server around the pages: live status files on the sensor page and in
//! /metrics, HTTPS with rustls, sessions that survive a restart.

mod common;

use std::collections::{HashMap, HashSet};

use common::*;
use voxtap_capture::status;

fn bearer() -> String {
    format!("Bearer {API_USER}:{API_TOKEN}")
}

/// A strict reading of the Prometheus text format (0.0.4): every sample's
/// metric has a TYPE line before it, names and labels are well formed,
/// values parse, no series appears twice. Returns name{labels} -> value.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut typed: HashSet<String> = HashSet::new();
    let mut helped: HashSet<String> = HashSet::new();
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(valid_name(name), "bad name in {line}");
            assert!(["gauge", "counter", "untyped"].contains(&kind), "{line}");
            assert!(typed.insert(name.to_string()), "second TYPE for {name}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(helped.insert(name.to_string()), "second HELP for {name}");
            continue;
        }
        assert!(!line.starts_with('#'), "stray comment {line}");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let name = series.split('{').next().unwrap();
        assert!(valid_name(name), "bad metric name in {line:?}");
        assert!(typed.contains(name), "{name} has no TYPE line before it");
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .unwrap_or_else(|| panic!("bad labels in {line:?}"));
            for kv in inner.split("\",").filter(|s| !s.is_empty()) {
                let (k, v) = kv.split_once('=').unwrap();
                assert!(valid_name(k), "bad label name in {line:?}");
                assert!(v.starts_with('"'), "unquoted label value in {line:?}");
            }
        }
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        assert!(
            out.insert(series.to_string(), v).is_none(),
            "duplicate series {series}"
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_files_on_the_sensor_page_and_in_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().canonicalize().unwrap();
    status::write(
        &data,
        "sensor",
        &serde_json::json!({
            "version": "0.1.0", "frames_per_second": 1250.5, "frames_total": 90000,
            "calls_active": 12, "running": true,
            "drops": {"ring_full": 7, "malformed": 2},
            "store": {"bytes": 5_368_709_120u64, "files_deleted": 3},
        }),
    )
    .unwrap();
    status::write(
        &data,
        "remote",
        &serde_json::json!({
            "hosts": [
                {"name": "prod/eu-west", "frames": 100, "connected": true},
                {"name": "lab \"b\"", "frames": 5, "connected": false},
            ],
            "state": "capturing",
        }),
    )
    .unwrap();
    // A writer that stopped a minute ago.
    let old = serde_json::json!({"component": "upload", "queued": 4, "updated_unix": status::now_unix() - 60});
    std::fs::write(status::path(&data, "upload"), old.to_string()).unwrap();
    // Half-written garbage is skipped, not fatal.
    std::fs::write(status::path(&data, "hep"), b"{\"sent\": ").unwrap();

    let running = start(&data).await;
    let http = reqwest::Client::new();
    let get = |path: &str| {
        http.get(format!("http://{}{path}", running.addr))
            .header("authorization", bearer())
            .send()
    };
    let page = get("/sensor").await.unwrap().text().await.unwrap();
    let sensor_at = page.find("id=\"status-sensor\"").expect("sensor card");
    let remote_at = page.find("id=\"status-remote\"").expect("remote card");
    let upload_at = page.find("id=\"status-upload\"").expect("upload card");
    assert!(
        sensor_at < remote_at && remote_at < upload_at,
        "sensor first"
    );
    assert!(!page.contains("status-hep"));
    assert!(page.contains("id=\"status-sensor\" data-stale=\"false\""));
    assert!(page.contains("id=\"status-upload\" data-stale=\"true\""));
    assert!(page.contains("last update 60 s ago") || page.contains("last update 61 s ago"));
    assert!(page.contains("5.0 GiB"), "store bytes shown as a size");
    assert!(page.contains("prod/eu-west") && page.contains("lab &quot;b&quot;"));
    assert!(page.contains("<tr data-field=\"ring_full\"><th>ring full</th><td>7</td>"));
    // The refresh fragment is the same cards.
    let frag = get("/sensor/status").await.unwrap().text().await.unwrap();
    assert!(frag.contains("id=\"status-remote\"") && !frag.contains("<html"));

    let resp = get("/metrics").await.unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let m = parse_prometheus(&resp.text().await.unwrap());
    assert_eq!(m["voxtap_sensor_frames_per_second"], 1250.5);
    assert_eq!(m["voxtap_sensor_frames_total"], 90000.0);
    assert_eq!(m["voxtap_sensor_calls_active"], 12.0);
    assert_eq!(m["voxtap_sensor_running"], 1.0);
    assert_eq!(m["voxtap_sensor_drops_ring_full"], 7.0);
    assert_eq!(m["voxtap_sensor_store_bytes"], 5_368_709_120.0);
    assert_eq!(
        m["voxtap_remote_hosts_frames{item=\"prod/eu-west\"}"],
        100.0
    );
    assert_eq!(m["voxtap_remote_hosts_frames{item=\"lab \\\"b\\\"\"}"], 5.0);
    assert_eq!(
        m["voxtap_remote_hosts_connected{item=\"lab \\\"b\\\"\"}"],
        0.0
    );
    assert_eq!(m["voxtap_upload_queued"], 4.0);
    assert!(m["voxtap_status_age_seconds{component=\"upload\"}"] >= 60.0);
    assert!(m["voxtap_status_age_seconds{component=\"sensor\"}"] < 10.0);
    // Text fields are not metrics.
    assert!(
        !m.keys()
            .any(|k| k.starts_with("voxtap_sensor_version") || k.starts_with("voxtap_remote_state"))
    );
    // The server's own figures are still there.
    assert_eq!(m["voxtap_calls_indexed"], 0.0);
    running.task.abort();
}
