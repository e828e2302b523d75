//! The hub's operations views over a real PostgreSQL (the `hub` module's
//! set-up): fleet-wide dashboards from the central index's per-minute
//! rollups, checked against each sensor's own rollups and against
//! ASR/ACD/NER/PDD computed here from the sensors' calls.csv; and the
//! fleet's live calls, pushed by a sensor through its tunnel, checked
//! against the snapshots the sensor wrote (real SIPp calls from the corpus
//! run through the engine's pipeline one second at a time, as `voxtap run`
//! does), gone from the hub once the sensor's tunnel closes; and the hub's
//! alerts to a local webhook receiver: a sensor that never made contact,
//! and 503s and ASR over the central rollups of calls shipped just now.

use crate::alerts::{Events, capture, ip_a, value, webhook_receiver};
use crate::common;
use crate::dashboards::{
    Fig, T0, close, figures_from_csv, get_json, listed_call_ids, outcome_pcap, trunks,
};
use crate::hub::{Certs, setup_central, ship, ship_batch, start_hub};

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use fantoccini::{Client, Locator};
use voxtap_engine::calls::PacketRef;
use voxtap_engine::import::{ImportOptions, run_import};
use voxtap_engine::index::{INDEX_FILE, Index};
use voxtap_engine::live_calls::{DEFAULT_MAX_CALLS, LiveSnapshot, LiveSnapshots};
use voxtap_engine::pipeline::{Pipeline, PipelineConfig};
use voxtap_engine::synth::{SynthConfig, generate};
use voxtap_sensor::central::pg::PgTarget;
use voxtap_sensor::central::rollups::COLS;
use voxtap_sensor::central::schema;
use voxtap_sensor::central::tunnel::{self, TunnelOptions};
use voxtap_sensor::status::write_live_calls;
use voxtap_testkit::csv::read_csv;
use voxtap_testkit::pg::Pg;
use voxtap_web::alerts::{AlertingConfig, Rule};
use voxtap_web::config::TrunkConfig;

const HOUR_NS: u64 = 3_600_000_000_000;
const SECOND_NS: u64 = 1_000_000_000;
const SECRET1: &str = "sensor-1-live-secret";
const SECRET2: &str = "sensor-2-live-secret";

/// The hub's rules: s3 never ships; calls that started in the last 10
/// minutes, fleet-wide, of s1, of one peer (trunk) each; s2's REGISTER
/// failures.
const RULES: &str = r#"
[[alerts]]
name = "s3-silent"
metric = "sensor_silent"
component = "s3"
op = ">"
threshold = 2
[[alerts]]
name = "fleet-503"
metric = "sip_status"
code = 503
op = ">"
threshold = 3
window_seconds = 600
[[alerts]]
name = "s1-asr"
metric = "asr"
component = "s1"
op = "<"
threshold = 50
window_seconds = 600
[[alerts]]
name = "trunk-9-1-503"
metric = "sip_status"
code = 503
op = ">"
threshold = 3
scope = "10.9.0.1/32"
window_seconds = 600
[[alerts]]
name = "trunk-9-2-asr"
metric = "asr"
component = "s1"
op = ">="
threshold = 100
scope = "10.9.0.2"
window_seconds = 600
[[alerts]]
name = "s2-registrations"
metric = "registration_failures"
component = "s2"
op = ">"
threshold = 4
window_seconds = 600
"#;

#[derive(serde::Deserialize)]
struct Rules {
    alerts: Vec<Rule>,
}

fn import(files: Vec<std::path::PathBuf>, out: &Path) {
    run_import(&ImportOptions {
        files,
        out: out.to_path_buf(),
        pipeline: PipelineConfig::default(),
        call_files: false,
        media: None,
    })
    .expect("import");
}

/// Sensor 1: 72 calls of six outcomes in trunk groups and 40 synthetic
/// G.711 calls with loss; sensor 2: two corpus captures.
fn sensor_dirs() -> (tempfile::TempDir, tempfile::TempDir) {
    let d1 = tempfile::tempdir().unwrap();
    let outcomes = d1.path().join("outcomes.pcap");
    outcome_pcap(&outcomes, 72);
    let synth = d1.path().join("synth.pcap");
    let cfg = SynthConfig {
        calls: 40,
        seconds: 2,
        ramp_seconds: 120,
        loss_pct: 3.0,
        ..Default::default()
    };
    generate(&cfg, std::fs::File::create(&synth).unwrap()).unwrap();
    import(vec![outcomes, synth], &d1.path().join("data"));
    let rules: Vec<_> = trunks().iter().map(TrunkConfig::rule).collect();
    let mut idx = Index::open(&d1.path().join("data").join(INDEX_FILE)).unwrap();
    assert!(idx.set_trunks(&rules).unwrap());
    drop(idx);
    let d2 = tempfile::tempdir().unwrap();
    import(
        vec![
            corpus("generated/sipp-netns-udp-2calls.pcap"),
            corpus("generated/baresip-g722-1call.pcap"),
        ],
        &d2.path().join("data"),
    );
    (d1, d2)
}

/// Rollup rows by (minute since the epoch, trunk, codec), the all-zero
/// rows left out.
type Rollups = BTreeMap<(i64, String, String), Vec<i64>>;

fn local_rollups(data: &Path) -> Rollups {
    let db = rusqlite::Connection::open(data.join(INDEX_FILE)).unwrap();
    let sql = format!(
        "SELECT minute, trunk, codec, {} FROM rollup_minute",
        COLS.join(", ")
    );
    let mut st = db.prepare(&sql).unwrap();
    let mut rows = st.query([]).unwrap();
    let mut m = Rollups::new();
    while let Some(r) = rows.next().unwrap() {
        let v: Vec<i64> = (3..3 + COLS.len()).map(|k| r.get(k).unwrap()).collect();
        if v.iter().any(|x| *x != 0) {
            m.insert((r.get(0).unwrap(), r.get(1).unwrap(), r.get(2).unwrap()), v);
        }
    }
    m
}

async fn central_rollups(pg: &Pg, sensor: &str) -> Rollups {
    let c = PgTarget::parse(&pg.admin_url()).connect().await.unwrap();
    let sql = format!(
        "SELECT (extract(epoch FROM minute) / 60)::int8, trunk, codec, {} FROM voxtap.rollup_minute \
         WHERE sensor = (SELECT id FROM voxtap.sensors WHERE name = $1)",
        COLS.join(", ")
    );
    let mut m = Rollups::new();
    for r in c.query(&sql, &[&sensor]).await.unwrap() {
        let v: Vec<i64> = (3..3 + COLS.len()).map(|k| r.get(k)).collect();
        if v.iter().any(|x| *x != 0) {
            m.insert((r.get(0), r.get(1), r.get(2)), v);
        }
    }
    m
}

fn merge(a: &BTreeMap<u64, Fig>, b: &BTreeMap<u64, Fig>) -> BTreeMap<u64, Fig> {
    let mut m = a.clone();
    for (h, f) in b {
        let e = m.entry(*h).or_default();
        e.attempts += f.attempts;
        e.answered += f.answered;
        e.ner_ok += f.ner_ok;
        e.talk_s += f.talk_s;
        e.pdd_ms += f.pdd_ms;
        e.pdd_n += f.pdd_n;
    }
    m
}

/// The hub's hourly dashboards (of `sensor`, or the fleet) over every day
/// of `want` have exactly its hours, with its figures.
async fn check_hours(base: &str, cookie: &str, want: &BTreeMap<u64, Fig>, sensor: Option<&str>) {
    let days: BTreeSet<u64> = want.keys().map(|h| h / 24).collect();
    let mut seen = 0;
    for day in days {
        let from = voxtap_engine::output::format_ts(day * 24 * HOUR_NS);
        let to = voxtap_engine::output::format_ts((day + 1) * 24 * HOUR_NS);
        let mut path = format!(
            "/api/dashboard?from={}&to={}&step=hour",
            &from[..19],
            &to[..19]
        );
        if let Some(s) = sensor {
            path += &format!("&sensor={s}");
        }
        let d = get_json(base, cookie, &path).await;
        for b in d["buckets"].as_array().unwrap() {
            let hour = b["start_ns"].as_u64().unwrap() / HOUR_NS;
            let c = &b["counts"];
            let Some(f) = want.get(&hour) else {
                assert_eq!(
                    c["attempts"], 0,
                    "{sensor:?} hour {hour}: no calls in calls.csv"
                );
                continue;
            };
            seen += 1;
            let what = format!("{sensor:?} hour {hour}");
            assert_eq!(c["attempts"].as_u64().unwrap(), f.attempts, "{what}");
            assert_eq!(c["answered"].as_u64().unwrap(), f.answered, "{what}");
            assert_eq!(c["ner_ok"].as_u64().unwrap(), f.ner_ok, "{what}");
            let n = f.attempts as f64;
            close(
                b["asr"].as_f64().unwrap(),
                f.answered as f64 / n,
                1e-9,
                "ASR",
            );
            close(b["ner"].as_f64().unwrap(), f.ner_ok as f64 / n, 1e-9, "NER");
            if f.answered > 0 {
                // The index keeps ms (truncated), calls.csv rounds to ms.
                let acd = f.talk_s / f.answered as f64;
                close(b["acd_s"].as_f64().unwrap(), acd, 0.002, "ACD");
            }
            if f.pdd_n > 0 {
                assert_eq!(c["pdd_n"].as_u64().unwrap(), f.pdd_n, "{what}");
                let pdd = f.pdd_ms / f.pdd_n as f64;
                close(b["pdd_ms"].as_f64().unwrap(), pdd, 1.0, "PDD");
            }
        }
    }
    assert_eq!(
        seen,
        want.len(),
        "{sensor:?}: every hour of calls.csv had a bucket"
    );
}

/// The hourly rollups equal the minutes summed by hour, row for row
/// (central migration 7's triggers).
async fn hours_equal_minutes(pg: &Pg) {
    let c = PgTarget::parse(&pg.admin_url()).connect().await.unwrap();
    let sums: Vec<String> = COLS.iter().map(|c| format!("sum({c})::int8")).collect();
    let read = |sql: String| {
        let c = &c;
        async move {
            let mut m = BTreeMap::new();
            for r in c.query(&sql, &[]).await.unwrap() {
                let v: Vec<i64> = (4..4 + COLS.len()).map(|k| r.get(k)).collect();
                if v.iter().any(|x| *x != 0) {
                    let key: (i16, i64, String, String) = (r.get(0), r.get(1), r.get(2), r.get(3));
                    m.insert(key, v);
                }
            }
            m
        }
    };
    let hour = "floor(extract(epoch FROM {t}) / 3600)::int8";
    let minutes = read(format!(
        "SELECT sensor, {}, trunk, codec, {} FROM voxtap.rollup_minute GROUP BY 1, 2, 3, 4",
        hour.replace("{t}", "minute"),
        sums.join(", ")
    ))
    .await;
    let hours = read(format!(
        "SELECT sensor, {}, trunk, codec, {} FROM voxtap.rollup_hour",
        hour.replace("{t}", "hour"),
        COLS.join(", ")
    ))
    .await;
    assert!(!minutes.is_empty());
    assert_eq!(hours, minutes);
}

/// An API bucket's counts in [`COLS`] order (the arrays flattened).
fn flat(c: &serde_json::Value) -> Vec<i64> {
    let one = |k: &str| vec![c[k].as_i64().unwrap()];
    let arr = |k: &str| -> Vec<i64> {
        c[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect()
    };
    let mut v = Vec::new();
    for k in [
        "attempts",
        "answered",
        "ner_ok",
        "answered_ms",
        "pdd_ms",
        "pdd_n",
    ] {
        v.extend(one(k));
    }
    for k in ["classes", "codes", "mos"] {
        v.extend(arr(k));
    }
    for k in [
        "one_way",
        "capture_loss",
        "rtp_lost",
        "rtp_expected",
        "active_ms",
    ] {
        v.extend(one(k));
    }
    assert_eq!(v.len(), COLS.len());
    v
}

/// A 30-day dashboard of s1 by day, its range starting and ending inside
/// an hour (so the hub reads whole hours and the minutes at either end):
/// each day's figures are those of calls.csv, and every column equals the
/// per-minute rollups summed over the same minutes. Prints the time of the
/// hub's answer.
async fn check_month(base: &str, cookie: &str, pg: &Pg, want: &BTreeMap<u64, Fig>) {
    hours_equal_minutes(pg).await;
    let first = want.keys().next().unwrap() * HOUR_NS;
    let (from, to) = (
        first - 29 * 24 * HOUR_NS + 7 * 60 * SECOND_NS,
        first + 3 * HOUR_NS + 17 * 60 * SECOND_NS,
    );
    let (f, t) = (
        voxtap_engine::output::format_ts(from),
        voxtap_engine::output::format_ts(to),
    );
    let path = format!(
        "/api/dashboard?from={}&to={}&step=day&sensor=s1",
        &f[..19],
        &t[..19]
    );
    let took = Instant::now();
    let d = get_json(base, cookie, &path).await;
    println!("hub 30-day dashboard of s1: {:?}", took.elapsed());
    let c = PgTarget::parse(&pg.admin_url()).connect().await.unwrap();
    let sums: Vec<String> = COLS
        .iter()
        .map(|c| format!("coalesce(sum({c}), 0)::int8"))
        .collect();
    let sql = format!(
        "SELECT {} FROM voxtap.rollup_minute WHERE minute >= to_timestamp($1::float8) \
         AND minute < to_timestamp($2::float8) \
         AND sensor = (SELECT id FROM voxtap.sensors WHERE name = 's1')",
        sums.join(", ")
    );
    let mut days = 0;
    for b in d["buckets"].as_array().unwrap() {
        let start = b["start_ns"].as_u64().unwrap();
        let (lo, hi) = (
            start.max(from / 60 / SECOND_NS * 60 * SECOND_NS),
            (start + 24 * HOUR_NS).min(to.div_ceil(60 * SECOND_NS) * 60 * SECOND_NS),
        );
        let r = c
            .query_one(
                &sql,
                &[&((lo / SECOND_NS) as f64), &((hi / SECOND_NS) as f64)],
            )
            .await
            .unwrap();
        let minutes: Vec<i64> = (0..COLS.len()).map(|k| r.get(k)).collect();
        assert_eq!(flat(&b["counts"]), minutes, "day from {start}");
        let day = start / (24 * HOUR_NS);
        let csv = want
            .iter()
            .filter(|(h, _)| **h / 24 == day && **h * HOUR_NS < to)
            .fold((0, 0, 0), |a, (_, f)| {
                (a.0 + f.attempts, a.1 + f.answered, a.2 + f.ner_ok)
            });
        let c = &b["counts"];
        let got = (
            c["attempts"].as_u64().unwrap(),
            c["answered"].as_u64().unwrap(),
            c["ner_ok"].as_u64().unwrap(),
        );
        assert_eq!(got, csv, "day {day}: attempts, answered, NER of calls.csv");
        days += usize::from(csv.0 > 0);
    }
    assert!(days >= 1, "{d}");
}

/// The Call-IDs of calls.csv's INVITE calls that started in `hour`.
fn csv_calls_of_hour(data: &Path, hour: u64) -> BTreeSet<String> {
    read_csv(&data.join("calls.csv"))
        .into_iter()
        .filter(|r| r["method"] == "INVITE")
        .filter(|r| voxtap_web::parse_time(&r["start"]).unwrap() / HOUR_NS == hour)
        .map(|r| r["call_id"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_dashboards_and_live_calls_of_every_sensor() {
    let certs = Certs::new();
    let pg = setup_central(&certs, "hub-ops").await;
    let (d1, d2) = sensor_dirs();
    let (data1, data2) = (d1.path().join("data"), d2.path().join("data"));
    assert!(ship(&certs, &pg, "s1", &data1).await > 100);
    assert!(ship(&certs, &pg, "s2", &data2).await > 0);
    // The triggers' rollups equal each sensor's own, row for row.
    let local1 = local_rollups(&data1);
    assert!(local1.keys().any(|k| k.1 == "carrier-a"), "trunks shipped");
    assert!(local1.values().any(|v| v[27] > 0), "RTP loss shipped");
    assert_eq!(central_rollups(&pg, "s1").await, local1);
    assert_eq!(central_rollups(&pg, "s2").await, local_rollups(&data2));
    // Shipping again from scratch (the mark lost) adds nothing twice.
    rusqlite::Connection::open(data1.join(INDEX_FILE))
        .unwrap()
        .execute("DELETE FROM ship_marks", [])
        .unwrap();
    ship(&certs, &pg, "s1", &data1).await;
    assert_eq!(central_rollups(&pg, "s1").await, local1);

    let mut admin = PgTarget::parse(&pg.admin_url()).connect().await.unwrap();
    schema::add_sensor(&mut admin, "s3").await.unwrap();
    midnight_call_and_update(&pg);
    let (hook_url, hooks) = webhook_receiver().await;
    let mut hooks = Events {
        rx: hooks,
        seen: Vec::new(),
    };
    let mut cfg = config();
    cfg.alerts = toml::from_str::<Rules>(RULES).unwrap().alerts;
    cfg.alerting = AlertingConfig {
        interval_seconds: Some(1),
        webhook: Some(hook_url),
        ..Default::default()
    };
    let (srv, _hub_dir, base) =
        start_hub(&certs, &pg, &[("s1", SECRET1), ("s2", SECRET2)], cfg).await;
    let cookie = login(&base, USER, PASSWORD).await.unwrap();
    let (w1, w2) = (
        figures_from_csv(&data1.join("calls.csv")),
        figures_from_csv(&data2.join("calls.csv")),
    );
    assert!(w1.len() >= 3 && !w2.is_empty(), "{w1:?} {w2:?}");
    check_hours(&base, &cookie, &merge(&w1, &w2), None).await;
    check_hours(&base, &cookie, &w1, Some("s1")).await;
    check_hours(&base, &cookie, &w2, Some("s2")).await;
    check_month(&base, &cookie, &pg, &w1).await;

    // A bar's drill-down lands on exactly its calls, of its sensor.
    let hour = *w1.keys().next().unwrap();
    let at = hour * 3600;
    let r = client()
        .get(format!("{base}/dashboards/calls?at={at}&step=60&sensor=s1"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    let to = r.headers()["location"].to_str().unwrap().to_string();
    let query = to.strip_prefix("/calls?").expect("the call list");
    assert!(query.contains("sensor=s1"), "{to}");
    let page = get_json(&base, &cookie, &format!("/api/calls?{query}")).await;
    let found: BTreeSet<String> = page["rows"]
        .as_array()
        .unwrap()
        .iter()
        .inspect(|r| assert_eq!(r["sensor"], "s1"))
        .map(|r| r["call_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(found, csv_calls_of_hour(&data1, hour));
    // The page: a sensor filter, the totals of the chosen sensor and trunk
    // (the outcome calls' first hour).
    let hour = T0 / HOUR_NS;
    let from = voxtap_engine::output::format_ts(hour * HOUR_NS);
    let until = voxtap_engine::output::format_ts((hour + 1) * HOUR_NS);
    let path = format!(
        "/dashboards?from={}&to={}&step=hour&sensor=s1&trunk=carrier-a",
        &from[..16],
        &until[..16]
    );
    let html = get_page(&base, &cookie, &path).await;
    assert!(html.contains(r#"<select name="sensor">"#), "{html}");
    let carrier_a: i64 = local1
        .iter()
        .filter(|(k, _)| k.1 == "carrier-a" && (k.0 as u64) / 60 == hour)
        .map(|(_, v)| v[0])
        .sum();
    assert!(carrier_a > 0);
    assert!(
        html.contains(&format!(r#"data-attempts="{carrier_a}""#)),
        "{carrier_a} attempts of carrier-a: {html}"
    );
    check_export(&base, &cookie, &[("s1", &data1), ("s2", &data2)]).await;
    // The same in Chromium: a chart, its drill-down, the export link, then
    // the Live page while both sensors push.
    let (_driver, c) = browser().await;
    c.goto(&format!("{base}/login")).await.unwrap();
    log_in(&c, USER, PASSWORD).await;
    c.wait()
        .for_element(Locator::Css("table#calls"))
        .await
        .unwrap();
    let hour = *w1.keys().next().unwrap();
    browser_drill_and_export(&c, &base, hour, &csv_calls_of_hour(&data1, hour)).await;
    check_live(&base, &cookie, srv.addr, &c, [&data1, &data2]).await;
    c.close().await.unwrap();
    check_alerts(&certs, &pg, &mut hooks).await;
}

/// The hub's alerts reach the webhook: s3 silent since it was added; then
/// sensor 1 ships 4 calls refused with 503 and 1 answered, started now;
/// then s3 ships and its silence resolves.
async fn check_alerts(certs: &Certs, pg: &Pg, hooks: &mut Events) {
    let silent = hooks.wait("s3-silent", "firing").await;
    assert!(value(&silent) > 2.0, "{silent}");
    assert_eq!(silent["metric"], "sensor_silent");
    let dir = tempfile::tempdir().unwrap();
    let refused = capture(
        dir.path(),
        "now-503.pcap",
        4,
        ip_a,
        [10, 9, 0, 1].into(),
        Some(503),
    );
    let answered = capture(
        dir.path(),
        "now-ok.pcap",
        1,
        ip_a,
        [10, 9, 0, 2].into(),
        None,
    );
    let data = dir.path().join("data");
    import(vec![refused, answered], &data);
    // In one transaction: an evaluation between two batches would see a
    // part of the calls (an ASR of 1 in 3 fired once, on a loaded machine).
    assert_eq!(ship_batch(certs, pg, "s1", &data, 100).await, 5);
    let shipped = Instant::now();
    let fired = hooks.wait("fleet-503", "firing").await;
    assert_eq!(value(&fired), 4.0, "{fired}");
    let asr = hooks.wait("s1-asr", "firing").await;
    assert_eq!(value(&asr), 20.0, "{asr}");
    // Per peer: the 503s all went to 10.9.0.1, the answered call to
    // 10.9.0.2 (ASR 100 % there, 20 % over the sensor).
    let peer = hooks.wait("trunk-9-1-503", "firing").await;
    assert_eq!(value(&peer), 4.0, "{peer}");
    let peer = hooks.wait("trunk-9-2-asr", "firing").await;
    assert_eq!(value(&peer), 100.0, "{peer}");
    registration_failures(pg, hooks).await;
    println!("hub alerts: shipped to webhook in {:?}", shipped.elapsed());
    // s3 ships at last (its shipper's heartbeat): no longer silent.
    assert_eq!(ship(certs, pg, "s3", &data).await, 5);
    let back = hooks.wait("s3-silent", "resolved").await;
    assert!(value(&back) <= 2.0, "{back}");
}

/// s2's REGISTER binding with 2 refused and 1 unanswered requests, then
/// sent again with 5 and 2 (as the shipper's update does): 3 + 4 failures
/// in the window fire `s2-registrations` (> 4) with 7.
async fn registration_failures(pg: &Pg, hooks: &mut Events) {
    let sql = |q: &str| pg.psql(voxtap_testkit::pg::DB, q);
    let set = |f: u32, u: u32, v: u32| {
        format!(
            "failures = {f}, unanswered = {u}, version = {v}, last_at = now() WHERE aor = 'sip:alice@reg.test'"
        )
    };
    sql("SELECT voxtap.ensure_days(current_date - 1, current_date + 1)");
    sql(
        "INSERT INTO voxtap.registrations (sensor, first_at, last_at, user_name, aor, contact, client, \
         registrar, outcome, requests, registered, refreshes, challenges, failures, unanswered, call_id) \
         VALUES ((SELECT id FROM voxtap.sensors WHERE name = 's2'), now() - interval '1 minute', now(), \
         'alice', 'sip:alice@reg.test', 'sip:alice@10.7.0.1', '10.7.0.1:5060', '10.7.0.2:5060', \
         'failed', 3, 0, 0, 0, 2, 1, 'reg-1@test')",
    );
    let of_s2 = "SELECT coalesce(sum(failures), 0) FROM voxtap.rollup_reg_failures \
                 WHERE sensor = (SELECT id FROM voxtap.sensors WHERE name = 's2')";
    assert_eq!(pg.count(of_s2), 3);
    sql(&format!("UPDATE voxtap.registrations SET {}", set(5, 2, 1)));
    assert_eq!(pg.count(of_s2), 7, "the binding's growth added");
    // The same version again changes nothing.
    sql(&format!("UPDATE voxtap.registrations SET {}", set(5, 2, 1)));
    assert_eq!(pg.count(of_s2), 7);
    let fired = hooks.wait("s2-registrations", "firing").await;
    assert_eq!(value(&fired), 7.0, "{fired}");
}

/// The hub's CDR export: the JSON is the search's rows (every sensor's),
/// the CSV the sensor's columns plus `sensor`, row for row; its calls are
/// those of the sensors' own calls.csv; a sensor filter keeps its calls;
/// each export is audited.
async fn check_export(base: &str, cookie: &str, sensors: &[(&str, &Path)]) {
    let search = "sort=start&dir=asc";
    let page = get_json(base, cookie, &format!("/api/calls?{search}&per_page=500")).await;
    let rows = page["rows"].as_array().unwrap();
    assert!(rows.len() < 500 && page["total"] == rows.len(), "one page");
    let json = get_json(base, cookie, &format!("/calls/export/calls.json?{search}")).await;
    assert_eq!(json.as_array().unwrap(), rows);
    let r = client()
        .get(format!("{base}/calls/export/calls.csv?{search}"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("export.csv");
    std::fs::write(&csv, r.text().await.unwrap()).unwrap();
    let header = std::fs::read_to_string(&csv).unwrap();
    let header = header.lines().next().unwrap();
    assert_eq!(
        header,
        format!("{},sensor", voxtap_web::CSV_HEADER.trim_end())
    );
    let lines = read_csv(&csv);
    assert_eq!(lines.len(), rows.len());
    for (l, r) in lines.iter().zip(rows) {
        assert_eq!(l["id"], r["id"].to_string());
        assert_eq!(l["call_id"], r["call_id"].as_str().unwrap());
        assert_eq!(l["sensor"], r["sensor"].as_str().unwrap());
        assert_eq!(l["state"], r["state"].as_str().unwrap());
    }
    // The sensors' own calls, sensor by sensor.
    let mut by_sensor: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for l in &lines {
        by_sensor
            .entry(l["sensor"].clone())
            .or_default()
            .insert(l["call_id"].clone());
    }
    for (name, data) in sensors {
        let own: BTreeSet<String> = read_csv(&data.join("calls.csv"))
            .into_iter()
            .map(|r| r["call_id"].clone())
            .collect();
        assert_eq!(by_sensor.get(*name), Some(&own), "{name}");
        let one = get_json(
            base,
            cookie,
            &format!("/calls/export/calls.json?sensor={name}"),
        )
        .await;
        let ids: BTreeSet<String> = one
            .as_array()
            .unwrap()
            .iter()
            .inspect(|r| assert_eq!(r["sensor"], *name))
            .map(|r| r["call_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids, own, "{name}'s export");
    }
    let audit = get_json(base, cookie, "/api/audit?action=export").await;
    let details: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    for want in [
        "calls.json?sort=start&dir=asc",
        "calls.csv?sort=start&dir=asc",
        "calls.json?sensor=s2",
    ] {
        assert!(details.contains(&want), "{want} in {details:?}");
    }
}

/// Hourly rollup rows that differ from their minutes summed (or have none).
const HOUR_MISMATCHES: &str = "SELECT count(*) FROM (SELECT sensor, \
    date_bin('1 hour', minute, timestamptz '1970-01-01 00:00:00+00') AS h, trunk, codec, \
    sum(attempts)::int8 AS n, sum(c503)::int8 AS c, sum(answered_ms)::int8 AS t, sum(active_ms)::int8 AS a \
    FROM voxtap.rollup_minute GROUP BY 1, 2, 3, 4) m \
    FULL JOIN voxtap.rollup_hour r ON r.sensor = m.sensor AND r.hour = m.h AND r.trunk = m.trunk AND r.codec = m.codec \
    WHERE (m.n, m.c, m.t, m.a) IS DISTINCT FROM (r.attempts, r.c503, r.answered_ms, r.active_ms)";

/// A call of s3 across midnight into a day with no partitions yet: its
/// in-progress time lands on both days; an UPDATE of it (a changed call
/// sent again) moves its counts; its DELETE takes them away.
fn midnight_call_and_update(pg: &Pg) {
    let sql = |q: &str| pg.psql(voxtap_testkit::pg::DB, q);
    sql("SELECT voxtap.ensure_days('2025-06-01', '2025-06-01')");
    sql(
        "INSERT INTO voxtap.calls (sensor, local_id, call_id, method, start_at, answer_at, end_at, \
         duration_ms, talk_ms, from_user, to_user, from_uri, to_uri, request_uri, ruri_user, state, \
         status_code, sip_packets, rtp_packets, rtcp_packets, stream_count, ips, codecs, indexed_at) \
         VALUES ((SELECT id FROM voxtap.sensors WHERE name = 's3'), 1, 'midnight@test', 'INVITE', \
         '2025-06-01 23:59:30+00', '2025-06-01 23:59:31+00', '2025-06-02 00:01:30+00', 120000, 119000, \
         'a', 'b', '', '', '', '', 'answered', 200, 4, 0, 0, 0, '{}', '{}', now())",
    );
    let of_s3 = |cols: &str, day: &str| {
        pg.count(&format!(
            "SELECT coalesce(sum({cols}), 0) FROM voxtap.rollup_minute WHERE sensor = \
             (SELECT id FROM voxtap.sensors WHERE name = 's3') AND minute::date = '{day}'"
        ))
    };
    // 30 s before midnight, 90 s after.
    assert_eq!(pg.count(HOUR_MISMATCHES), 0, "hours = minutes summed");
    assert_eq!(of_s3("active_ms", "2025-06-01"), 30_000);
    assert_eq!(of_s3("active_ms", "2025-06-02"), 90_000);
    assert_eq!(
        of_s3("attempts * 1000 + answered * 100 + c503", "2025-06-01"),
        1100
    );
    sql(
        "UPDATE voxtap.calls SET answer_at = NULL, talk_ms = NULL, status_code = 503 WHERE call_id = 'midnight@test'",
    );
    assert_eq!(
        of_s3("attempts * 1000 + answered * 100 + c503", "2025-06-01"),
        1001
    );
    assert_eq!(of_s3("answered_ms", "2025-06-01"), 0);
    assert_eq!(pg.count(HOUR_MISMATCHES), 0, "hours follow an UPDATE");
    assert_eq!(
        of_s3("active_ms", "2025-06-01") + of_s3("active_ms", "2025-06-02"),
        120_000
    );
    sql("DELETE FROM voxtap.calls WHERE call_id = 'midnight@test'");
    for day in ["2025-06-01", "2025-06-02"] {
        assert_eq!(of_s3("abs(attempts) + abs(c503) + abs(active_ms)", day), 0);
    }
    assert_eq!(pg.count(HOUR_MISMATCHES), 0, "hours follow a DELETE");
}

/// The hub's `/api/live` entry of `sensor` once `done` holds for it (or
/// for the whole list when `sensor` is None), within 10 s.
async fn wait_live(
    base: &str,
    cookie: &str,
    sensor: &str,
    done: impl Fn(Option<&serde_json::Value>) -> bool,
) -> Option<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = get_json(base, cookie, "/api/live").await;
        let entry = v
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["sensor"] == sensor)
            .cloned();
        if done(entry.as_ref()) {
            return entry;
        }
        assert!(Instant::now() < deadline, "hub live calls: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A capture replayed as a running sensor sees it: one pipeline tick per
/// second of capture time, each snapshot written where `voxtap run`
/// writes it (which the sensor's tunnel pushes).
struct Replay {
    frames: Vec<(u64, voxtap_proto::pcapio::LinkType, Vec<u8>)>,
    pipeline: Pipeline,
    live: LiveSnapshots,
    next: usize,
    tick: u64,
    data: PathBuf,
}

impl Replay {
    fn new(pcap: &Path, data: &Path) -> Replay {
        let frames = crate::live::frames(pcap);
        let tick = frames[0].0 + SECOND_NS;
        Replay {
            frames,
            pipeline: Pipeline::new(PipelineConfig::default()),
            live: LiveSnapshots::new(DEFAULT_MAX_CALLS),
            next: 0,
            tick,
            data: data.to_path_buf(),
        }
    }

    fn past_end(&self) -> bool {
        self.tick > self.frames[self.frames.len() - 1].0 + SECOND_NS
    }

    fn step(&mut self) -> LiveSnapshot {
        let frames = &self.frames;
        while self.next < frames.len() && frames[self.next].0 < self.tick {
            let (ts, link, bytes) = &frames[self.next];
            let at = PacketRef::new(0, self.next as u64);
            self.pipeline.process(*link, *ts, at, bytes);
            self.next += 1;
        }
        self.pipeline.calls_mut().tick(self.tick);
        let ended = self.pipeline.drain_ended();
        self.live.note_ended(&ended, self.tick);
        let snap = self.live.snapshot(self.pipeline.calls().open(), self.tick);
        write_live_calls(&self.data, &snap, true).unwrap();
        self.tick += SECOND_NS;
        snap
    }
}

fn tunnel_options(hub: SocketAddr, sensor: &str, secret: &str, data: &Path) -> TunnelOptions {
    TunnelOptions {
        hub_url: format!("ws://{hub}"),
        ca: None,
        sensor_id: sensor.into(),
        secret: secret.as_bytes().to_vec(),
        data: data.to_path_buf(),
        live_caps: Default::default(),
    }
}

/// Sensor 2 captures the corpus' two SIPp calls and sensor 1 the baresip
/// G.722 call, a second of capture at a time; their tunnels push the
/// snapshots; the hub shows each snapshot's calls as they are, with their
/// sensor, as JSON, HTML, events and in Chromium's Live page (opened once,
/// updated by its events); the tunnels close and the calls leave the hub.
async fn check_live(base: &str, cookie: &str, hub: SocketAddr, c: &Client, data: [&Path; 2]) {
    let stop = Arc::new(AtomicBool::new(false));
    let tunnels = [("s1", SECRET1, data[0]), ("s2", SECRET2, data[1])].map(|(name, secret, d)| {
        let o = tunnel_options(hub, name, secret, d);
        tokio::spawn(tunnel::run(o, stop.clone()))
    });
    c.goto(&format!("{base}/live")).await.unwrap();
    c.wait()
        .for_element(Locator::Id("live-calls"))
        .await
        .unwrap();
    c.execute("window.hubui_loaded_once = true", vec![])
        .await
        .unwrap();
    let mut s1 = Replay::new(&corpus("generated/baresip-g722-1call.pcap"), data[0]);
    let mut s2 = Replay::new(&corpus("generated/sipp-netns-udp-2calls.pcap"), data[1]);
    let (mut checked, mut both) = (0, Vec::new());
    while !s2.past_end() && checked < 5 {
        let snap1 = s1.step();
        let snap = s2.step();
        if snap.calls.is_empty() {
            continue;
        }
        let seq = snap.seq;
        let got = wait_live(base, cookie, "s2", |e| {
            e.is_some_and(|e| e["seq"].as_u64() >= Some(seq))
        })
        .await
        .unwrap();
        assert_eq!(got["seq"], seq, "the hub has the snapshot last written");
        assert_eq!(got["open_calls"], snap.open_calls);
        assert_eq!(got["calls"], serde_json::to_value(&snap.calls).unwrap());
        assert_eq!(got["ended"], serde_json::to_value(&snap.ended).unwrap());
        assert_eq!(got["stale"], false);
        let seq1 = snap1.seq;
        wait_live(base, cookie, "s1", |e| e.is_some_and(|e| e["seq"] == seq1)).await;
        let shown = browser_live(c, &[("s1", &snap1), ("s2", &snap)]).await;
        if !snap1.calls.is_empty() {
            both.push(shown);
            if both.len() == 2 {
                let png = c.screenshot().await.unwrap();
                std::fs::write(screenshots_dir().join("hub-live.png"), png).unwrap();
            }
        }
        checked += 1;
        if checked == 2 {
            live_page_and_events(base, cookie, &snap).await;
        }
    }
    assert!(checked >= 3, "ticks with calls in progress: {checked}");
    // Both sensors' rows, at two ticks at least, in the page loaded once:
    // s1's call grew between them.
    assert!(
        both.len() >= 2,
        "ticks with both sensors' calls: {}",
        both.len()
    );
    let dur = |rows: &[LiveRow]| rows.iter().find(|r| r.sensor == "s1").map(|r| r.dur);
    assert!(dur(&both[1]) > dur(&both[0]), "{both:?}");
    let once = c.execute("return window.hubui_loaded_once === true", vec![]);
    assert_eq!(once.await.unwrap(), true, "the Live page was not reloaded");
    // The sensors go away: their calls leave the hub with their tunnels.
    let gone = Instant::now();
    stop.store(true, Ordering::Relaxed);
    for t in tunnels {
        t.await.unwrap();
    }
    wait_live(base, cookie, "s1", |e| e.is_none()).await;
    wait_live(base, cookie, "s2", |e| e.is_none()).await;
    println!(
        "the sensors' live calls left the hub {:?} after their tunnels closed",
        gone.elapsed()
    );
}

/// The hub's Live page (HTML) and its first event show each of `snap`'s
/// calls with sensor s2.
async fn live_page_and_events(base: &str, cookie: &str, snap: &LiveSnapshot) {
    let html = get_page(base, cookie, "/live").await;
    let cell = r#"<td class="sensor">s2</td><td><a href="/live/calls/"#;
    let rows = snap.calls.len() + snap.ended.len();
    assert_eq!(html.matches(cell).count(), rows, "{html}");
    let mut events = client()
        .get(format!("{base}/live/events"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let mut first = String::new();
    while !first.contains("\n\n") {
        let chunk = events.chunk().await.unwrap().expect("an event");
        first.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(first.starts_with("event: live\n"), "{first}");
    assert_eq!(first.matches(cell).count(), rows, "{first}");
    drop(events);
    for c in &snap.calls {
        assert!(
            html.contains(&format!(r#"data-call-id="{}""#, c.call_id)),
            "{html}"
        );
    }
}

#[derive(Debug, PartialEq, serde::Deserialize)]
struct LiveRow {
    sensor: String,
    id: String,
    dur: f64,
}

/// What the Live page's table shows, once each sensor's entry shows the
/// snapshot given (read in one script: the events replace the elements).
const LIVE_ROWS: &str = r#"
const seqs = {};
document.querySelectorAll('#live-sensors li').forEach(li => seqs[li.dataset.sensor] = parseInt(li.dataset.seq));
const rows = Array.from(document.querySelectorAll('#live-table tr.live-call')).map(r => ({
  sensor: r.querySelector('td.sensor').textContent, id: r.dataset.callId,
  dur: parseFloat(r.dataset.duration)}));
return {seqs: seqs, rows: rows};
"#;

/// Waits (bounded) for Chromium's Live page to show each sensor's
/// snapshot; its rows are the snapshots' calls, each with its sensor.
async fn browser_live(c: &Client, snaps: &[(&str, &LiveSnapshot)]) -> Vec<LiveRow> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let v = loop {
        let v = c.execute(LIVE_ROWS, vec![]).await.unwrap();
        if snaps.iter().all(|(s, snap)| v["seqs"][s] == snap.seq) {
            break v;
        }
        assert!(Instant::now() < deadline, "the Live page shows {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let rows: Vec<LiveRow> = serde_json::from_value(v["rows"].clone()).unwrap();
    let want: Vec<LiveRow> = snaps
        .iter()
        .flat_map(|(s, snap)| {
            snap.calls.iter().map(|c| LiveRow {
                sensor: s.to_string(),
                id: c.call_id.clone(),
                dur: format!("{:.3}", c.duration_s).parse().unwrap(),
            })
        })
        .collect();
    assert_eq!(rows, want);
    rows
}

/// In Chromium: the hub's dashboard of s1 over the hours from `hour`
/// draws its charts; a click on the first hour's ASR bar lands on the call
/// list of exactly that hour's calls of s1 (`want`, from calls.csv); that
/// list's CSV export link gives the same calls, with their sensor.
async fn browser_drill_and_export(c: &Client, base: &str, hour: u64, want: &BTreeSet<String>) {
    let at = |h: u64| voxtap_engine::output::format_ts(h * HOUR_NS)[..16].to_string();
    let url = format!(
        "{base}/dashboards?from={}&to={}&step=hour&sensor=s1",
        at(hour),
        at(hour + 3)
    );
    c.goto(&url).await.unwrap();
    c.wait().for_element(Locator::Css("svg#asr")).await.unwrap();
    c.set_window_size(1366, 3200).await.unwrap();
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshots_dir().join("hub-dashboards.png"), png).unwrap();
    c.set_window_size(1366, 900).await.unwrap();
    let sel = "svg#asr a.drill[data-i='0']";
    let bar = c.find(Locator::Css(sel)).await.unwrap();
    if bar.click().await.is_err() {
        // Some drivers refuse to click an SVG link: the same click by script.
        let js = format!(
            "document.querySelector(\"{sel}\").dispatchEvent(new MouseEvent('click', {{bubbles: true}}))"
        );
        c.execute(&js, vec![]).await.unwrap();
    }
    c.wait()
        .for_element(Locator::Css("table#calls"))
        .await
        .unwrap();
    let url = c.current_url().await.unwrap();
    assert_eq!(url.path(), "/calls");
    assert!(url.query().unwrap_or("").contains("sensor=s1"), "{url}");
    assert_eq!(&listed_call_ids(c).await, want);
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshots_dir().join("hub-drilldown.png"), png).unwrap();
    // The export link, fetched by the page with its session.
    let js = r#"
const done = arguments[arguments.length - 1];
const a = document.getElementById('export-csv');
fetch(a.href).then(r => r.text().then(t => done({status: r.status,
  disposition: r.headers.get('content-disposition'), text: t})));
"#;
    let got = c.execute_async(js, vec![]).await.unwrap();
    assert_eq!(got["status"], 200);
    assert_eq!(got["disposition"], "attachment; filename=\"calls.csv\"");
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("calls.csv");
    std::fs::write(&csv, got["text"].as_str().unwrap()).unwrap();
    let lines = read_csv(&csv);
    assert!(lines.iter().all(|l| l["sensor"] == "s1"), "{lines:?}");
    let ids: BTreeSet<String> = lines.iter().map(|l| l["call_id"].clone()).collect();
    assert_eq!(&ids, want);
}

/// Resident memory of this process (the test and the hub it runs), KiB.
fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Downloads the hub's CSV export of `query`: (rows, bytes, peak growth of
/// the resident memory over its value before, KiB).
async fn export_rss(base: &str, cookie: &str, query: &str) -> (u64, u64, u64) {
    let before = rss_kib();
    let mut peak = before;
    let t = Instant::now();
    let mut r = client()
        .get(format!("{base}/calls/export/calls.csv?{query}"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (mut lines, mut bytes) = (0u64, 0u64);
    while let Some(chunk) = r.chunk().await.unwrap() {
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        bytes += chunk.len() as u64;
        peak = peak.max(rss_kib());
    }
    let rows = lines - 1;
    println!(
        "hub CSV export {query:?}: {rows} rows, {bytes} bytes in {:.1} s; RSS {before} KiB before, peak +{} KiB",
        t.elapsed().as_secs_f64(),
        peak - before
    );
    (rows, bytes, peak - before)
}

/// The hub's export streams: `VOXTAP_BENCH_CALLS` calls (default 300 000)
/// loaded over 7 days as `fleet_bench` loads them; exporting all of them
/// grows the process's resident memory no more than exporting a tenth
/// (plus 16 MiB of allocator noise).
/// `cargo test -p voxtap-web --test web hub_ops::bench -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: minutes; run with --ignored --nocapture"]
async fn bench_hub_export_memory() {
    let n: u64 = std::env::var("VOXTAP_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let certs = Certs::new();
    let pg = setup_central(&certs, "hub-export").await;
    let mut admin = PgTarget::parse(&pg.admin_url()).connect().await.unwrap();
    schema::add_sensor(&mut admin, "s3").await.unwrap();
    crate::fleet_bench::load(&pg, n);
    let (_srv, _hub_dir, base) = start_hub(&certs, &pg, &[], config()).await;
    let cookie = login(&base, USER, PASSWORD).await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let since = voxtap_engine::output::format_ts(now - 7 * 24 * HOUR_NS / 10);
    let (tenth, _, grew_tenth) =
        export_rss(&base, &cookie, &format!("from={}", &since[..16])).await;
    let (all, _, grew_all) = export_rss(&base, &cookie, "").await;
    assert_eq!(all, n, "every call exported");
    assert!(tenth > 0 && tenth < all / 5, "{tenth} of {all}");
    assert!(
        grew_all <= grew_tenth + 16 * 1024,
        "all {all} rows: +{grew_all} KiB, a tenth: +{grew_tenth} KiB"
    );
}

/// The hub's 30-day dashboards before and after the hourly rollups
/// (ignored: a few minutes):
/// `cargo test -p voxtap-web --test web hub_ops::bench_hub_dashboards_30_days -- --ignored --nocapture`.
/// `VOXTAP_BENCH_CALLS` calls (default 1 000 000) of 3 sensors, 4 trunks
/// and 2 codecs over the last 30 days, rolled up by the triggers; then,
/// 20 times each, the statement the hub ran before central migration 7
/// (every minute row of the range) and `Hub::dashboard` (whole hours from
/// `rollup_hour`): p50 and p95 in ms, and the same buckets from both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: minutes; run with --ignored --nocapture"]
async fn bench_hub_dashboards_30_days() {
    let certs = Certs::new();
    let pg = crate::hub::setup_central_with(&certs, "dash-bench", true).await;
    let calls: u64 = std::env::var("VOXTAP_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let t = Instant::now();
    load_month(&pg, calls);
    println!(
        "loaded and rolled up {calls} calls over 30 days in {:.0} s: {} minute rows, {} hour rows",
        t.elapsed().as_secs_f64(),
        pg.count("SELECT count(*) FROM voxtap.rollup_minute"),
        pg.count("SELECT count(*) FROM voxtap.rollup_hour")
    );
    let hub = voxtap_web::hub::Hub::new(&crate::hub::hub_central(&certs, &pg, &[])).unwrap();
    let admin = PgTarget::parse(&pg.admin_url()).connect().await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let q = |step_minutes: u64, trunk: Option<&str>| voxtap_engine::index::DashQuery {
        from_ns: now - 30 * 24 * HOUR_NS,
        to_ns: now,
        step_minutes,
        trunk: trunk.map(String::from),
        ..Default::default()
    };
    println!("| hub dashboard, 30 days | before p50 / p95 ms | after p50 / p95 ms | attempts |");
    println!("|---|---|---|---|");
    for (name, q) in [
        ("per day", q(1440, None)),
        ("per day, trunk t1", q(1440, Some("t1"))),
        ("per hour", q(60, None)),
    ] {
        let (mut before, mut after) = (Vec::new(), Vec::new());
        let (mut old, mut new) = (Vec::new(), Vec::new());
        for _ in 0..20 {
            let t = Instant::now();
            old = minutes_only(&admin, &q).await;
            before.push(t.elapsed());
            let t = Instant::now();
            new = hub
                .dashboard(&q, None)
                .await
                .unwrap_or_else(|e| panic!("{name}: {}", e.message()));
            after.push(t.elapsed());
        }
        let new: Vec<(u64, Vec<i64>)> = new
            .iter()
            .map(|b| (b.start_ns, flat(&serde_json::to_value(b.counts).unwrap())))
            .collect();
        assert_eq!(old, new, "{name}: the same buckets");
        let attempts: i64 = new.iter().map(|b| b.1[0]).sum();
        let pct = |v: &mut Vec<Duration>, p: usize| {
            v.sort();
            v[(v.len() * p / 100).min(v.len() - 1)].as_secs_f64() * 1e3
        };
        println!(
            "| {name} | {:.1} / {:.1} | {:.1} / {:.1} | {attempts} |",
            pct(&mut before, 50),
            pct(&mut before, 95),
            pct(&mut after, 50),
            pct(&mut after, 95)
        );
    }
}

/// `calls` 90-second calls over the last 30 days (sensor 1 + i % 3, trunk
/// `t{i % 4}`, codec PCMU or PCMA), inserted without triggers, then rolled
/// up as the triggers do (which fills the hours through migration 7's).
fn load_month(pg: &Pg, calls: u64) {
    let db = voxtap_testkit::pg::DB;
    pg.psql(
        db,
        "SELECT voxtap.ensure_days((now() - interval '31 days')::date, (now() + interval '1 day')::date)",
    );
    pg.psql(
        db,
        &format!(
            "SET session_replication_role = replica; \
             INSERT INTO voxtap.calls (sensor, local_id, call_id, method, start_at, answer_at, end_at, duration_ms, \
             talk_ms, from_user, to_user, from_uri, to_uri, request_uri, ruri_user, state, status_code, \
             sip_packets, rtp_packets, rtcp_packets, stream_count, ips, codecs, mos, trunk, codec, indexed_at) \
             SELECT 1 + i % 3, i, 'm-' || i, 'INVITE', \
               now() - interval '30 days' + (i * interval '30 days' / {calls}), \
               CASE WHEN i % 10 = 0 THEN NULL ELSE now() - interval '30 days' + (i * interval '30 days' / {calls}) + interval '2 s' END, \
               now() - interval '30 days' + (i * interval '30 days' / {calls}) + interval '90 s', 90000, \
               CASE WHEN i % 10 = 0 THEN NULL ELSE 88000 END, 'a', 'b', '', '', '', '', \
               CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'answered' END, \
               CASE WHEN i % 10 = 0 THEN 503 ELSE 200 END, 8, 9000, 20, 2, '{{}}', '{{}}', \
               1.0 + (i % 350) / 100.0, 't' || (i % 4), CASE WHEN i % 7 = 0 THEN 'PCMA' ELSE 'PCMU' END, now() \
             FROM generate_series(1::bigint, {calls}) i"
        ),
    );
    pg.psql(
        db,
        "DO $$ DECLARE q text; BEGIN \
         FOREACH q IN ARRAY voxtap.rollup_statements('voxtap.calls', 1) LOOP EXECUTE q; END LOOP; END $$",
    );
    pg.psql(
        db,
        "VACUUM ANALYZE voxtap.rollup_minute, voxtap.rollup_hour",
    );
}

/// The hub's dashboard statement before central migration 7: every
/// minute row of the range, summed by bucket.
async fn minutes_only(
    c: &tokio_postgres::Client,
    q: &voxtap_engine::index::DashQuery,
) -> Vec<(u64, Vec<i64>)> {
    let minute = 60 * SECOND_NS;
    let from = std::time::UNIX_EPOCH + Duration::from_nanos(q.from_ns / minute * minute);
    let to = std::time::UNIX_EPOCH + Duration::from_nanos(q.to_ns.div_ceil(minute) * minute);
    let sums: Vec<String> = COLS.iter().map(|c| format!("sum({c})::int8")).collect();
    let sql = format!(
        "SELECT date_bin(make_interval(mins => {}), minute, timestamptz '1970-01-01 00:00:00+00') AS b, {} \
         FROM voxtap.rollup_minute WHERE minute >= $1 AND minute < $2 AND ($3::text IS NULL OR trunk = $3) \
         GROUP BY b ORDER BY b",
        q.step_minutes,
        sums.join(", ")
    );
    c.query(&sql, &[&from, &to, &q.trunk])
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let t: std::time::SystemTime = r.get(0);
            let ns = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
            (ns, (1..=COLS.len()).map(|k| r.get(k)).collect())
        })
        .collect()
}
