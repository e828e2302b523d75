//! The Sensor page in headless Chromium, fed by a real `voxtap run` on the
//! namespace lab (SIPp calls through real XDP) and `voxtap serve` on its
//! output directory: the frames/s chart gets points from the run's status
//! history while it captures, and once the run has stopped (its last status
//! file no longer changes) every figure beside the charts equals the
//! sensor's `status/sensor.json` read here, and so do the table of its
//! two kernel rings (`workers.rings = 2`) and the table of its pipeline
//! threads beside it (`workers.pipeline = 2`: the dispatcher and two media
//! workers): names and frames per row.
#![cfg(target_os = "linux")]

use crate::lab;
use crate::live_browser::{PASSWORD, serve};

use std::time::{Duration, Instant};

use lab::*;
use serde_json::Value;
use voxtap_testkit::browser::{Client, browser, log_in, screenshots_dir};

/// The frames/s chart's stored-frames values, the lines of the ring and
/// worker charts and every figure beside the charts, read in one script (the refresh replaces them every 2 s).
const OBSERVE: &str = r#"
const g = document.querySelector('#chart-frames g.series[data-label="stored"]');
const figs = Array.from(document.querySelectorAll('dl.current dd[data-key]'))
  .map(d => [d.dataset.key, d.dataset.v]);
const lines = id => Array.from(document.querySelectorAll(`#${id} g.series`)).map(s => s.dataset.label);
return {values: g ? g.dataset.values : null, figs, rings: lines('chart-rings'), workers: lines('chart-workers')};
"#;

/// A table of the sensor card (`arguments[0]`: "rings", "workers"): its
/// header and rows as cell texts.
const TABLE: &str = r#"
const t = document.querySelector(`#status-sensor tr[data-field="${arguments[0]}"] table.items`);
if (!t) return null;
const cells = r => Array.from(r.querySelectorAll(':scope > th, :scope > td')).map(c => c.textContent.trim());
return {head: cells(t.querySelector('thead tr')), rows: Array.from(t.querySelectorAll('tbody > tr')).map(cells)};
"#;

/// The chart's defined points.
fn points(v: &Value) -> Vec<f64> {
    v["values"]
        .as_str()
        .unwrap_or("")
        .split(' ')
        .filter_map(|x| x.parse().ok())
        .collect()
}

/// `key` (`a.b`, `a[item].b`) of a status object, looked up here rather
/// than through the page's own flattening.
fn lookup(v: &Value, key: &str) -> Option<f64> {
    let mut at = v;
    for part in key.split('.') {
        at = match part.split_once('[') {
            Some((name, item)) => {
                let item = item.strip_suffix(']')?;
                at[name]
                    .as_array()?
                    .iter()
                    .find(|x| x.as_object().is_some_and(|o| o.values().any(|s| s == item)))?
            }
            None => &at[part],
        };
    }
    at.as_f64()
        .or_else(|| at.as_bool().map(|b| f64::from(u8::from(b))))
}

/// Waits (bounded) until the browser shows the sensor page's charts.
async fn wait_for_charts(c: &Client) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while c
        .execute("return !!document.getElementById('history')", vec![])
        .await
        .ok()
        .and_then(|v| v.as_bool())
        != Some(true)
    {
        assert!(Instant::now() < deadline, "the sensor page never showed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The page's rows of `field` (rings, workers) = sensor.json's: name and
/// frames, `n` rows, each with frames.
fn check_table(field: &str, n: usize, table: &Value, status: &Value) {
    let want = status[field].as_array().expect("the field in sensor.json");
    assert_eq!(want.len(), n, "{status}");
    let head: Vec<&str> = table["head"]
        .as_array()
        .unwrap_or_else(|| panic!("no rings table: {table}"))
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    let col = |name: &str| head.iter().position(|h| *h == name).unwrap();
    let (name, frames) = (col("name"), col("frames total"));
    let rows = table["rows"].as_array().unwrap();
    assert_eq!(rows.len(), want.len(), "{table}");
    for (row, w) in rows.iter().zip(want) {
        assert_eq!(row[name], w["name"], "{table}");
        let shown: u64 = row[frames].as_str().unwrap().parse().unwrap();
        assert_eq!(shown, w["frames_total"].as_u64().unwrap(), "{table}");
        assert!(shown > 0, "a row without frames: {table}");
    }
}

#[test]
fn sensor_page_charts_a_live_run_and_shows_its_status() {
    require_root();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempdir("sensorpage");
    let lab = Lab::up(&format!("vp{}", std::process::id() % 10000), 221);
    let vox = start_voxtap(&lab, &dir, "[workers]\nrings = 2\npipeline = 2\n", 180);
    let out = dir.join("out");
    let (_serve, base) = serve(&dir, &out);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_driver, c) = rt.block_on(browser());
    rt.block_on(async {
        c.goto(&format!("{base}/sensor?range=15m")).await.unwrap();
        log_in(&c, "alice", PASSWORD).await;
        wait_for_charts(&c).await;
    });
    // Calls until the chart has a point with frames: a rate needs two
    // samples of the status history (10 s apart).
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Value::Null;
    while points(&seen).iter().all(|p| *p <= 0.0) {
        assert!(Instant::now() < deadline, "no frames/s point: {seen}");
        sipp_calls(&lab, &dir, 4, 2);
        seen = rt
            .block_on(c.execute(OBSERVE, vec![]))
            .unwrap_or(Value::Null);
    }
    vox.signal(libc::SIGTERM);
    let o = vox.wait(Duration::from_secs(30));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let status: Value =
        serde_json::from_slice(&std::fs::read(out.join("status/sensor.json")).unwrap()).unwrap();
    assert_eq!(status["running"], false, "the run's last status");
    let v = rt.block_on(async {
        c.goto(&format!("{base}/sensor?range=15m")).await.unwrap();
        wait_for_charts(&c).await;
        let png = c.screenshot().await.unwrap();
        std::fs::write(screenshots_dir().join("sensor-lab.png"), png).unwrap();
        c.execute(OBSERVE, vec![]).await.unwrap()
    });
    for (field, n) in [("rings", 2), ("workers", 3)] {
        let table = rt.block_on(c.execute(TABLE, vec![field.into()])).unwrap();
        check_table(field, n, &table, &status);
    }
    let names: Vec<_> = status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dispatcher", "media0", "media1"]);
    // A line per worker and per ring over time, named as in sensor.json.
    assert_eq!(v["workers"], serde_json::json!(names), "{v}");
    let rings: Vec<_> = status["rings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].clone())
        .collect();
    assert_eq!(v["rings"], Value::Array(rings), "{v}");
    assert!(points(&v).iter().any(|p| *p > 0.0), "{v}");
    let figs = v["figs"].as_array().unwrap();
    let mut checked = 0;
    for f in figs {
        let (key, shown) = (f[0].as_str().unwrap(), f[1].as_str().unwrap());
        let Some(key) = key.strip_prefix("sensor:") else {
            continue;
        };
        let want = lookup(&status, key).unwrap_or_else(|| panic!("{key} not in sensor.json"));
        assert_eq!(shown.parse::<f64>().unwrap(), want, "{key}");
        checked += 1;
    }
    // Every sensor figure the page defines (frames, drops, ring, calls,
    // store; free bytes only where statvfs answers).
    assert!(checked >= 16, "{checked} figures: {figs:?}");
    assert!(status["frames_total"].as_u64().unwrap() > 0);
    assert!(status["calls_written"].as_u64().unwrap() >= 4);
    rt.block_on(c.close()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
