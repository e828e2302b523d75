//! Every page and API of the UI timed against a large index (ignored:
//! minutes). `cargo xtask bench-web` runs it; by hand:
//! `cargo test --release -p voxtap-web --test web page_bench -- --ignored --nocapture`.
//!
//! `VOXTAP_BENCH_CALLS` calls (default 1 000 000, one every 2.6 s over 30
//! days) are written straight into the index and rolled up, with 100 000
//! registrations, 100 000 RTP streams without SIP, 1 000 000 audit entries,
//! 100 000 alert events and a full 24 h of status history. Each page is
//! fetched `RUNS` times from a client on the same machine: the response time
//! on loopback, headers to last byte. `VOXTAP_BENCH_PAGES=dashboards` times
//! only the pages whose name has that text.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use voxtap_engine::index::{INDEX_FILE, Index};

/// 2026-02-01T00:00:00Z.
const T0: u64 = 1_769_904_000 * 1_000_000_000;
const RUNS: usize = 20;

/// `n` synthetic calls over 30 days straight into the index at `path` (a
/// third failing with 486, a quarter G.722), then the rollups; the two
/// durations.
pub fn load_calls(path: &Path, n: u64) -> (Duration, Duration) {
    drop(Index::open(path).unwrap());
    let t = Instant::now();
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch(&format!(
        "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < {n} - 1)
         INSERT INTO calls (call_id, method, from_user, to_user, from_uri, to_uri, request_uri, start_ns,
           ringing_ns, answer_ns, end_ns, duration_ms, talk_ms, state, status_code, sip_packets, rtp_packets,
           rtcp_packets, stream_count, mos, indexed_at, codec)
         SELECT 'bench-' || i, 'INVITE', '4420' || i, '4930' || (i % 1000), '', '', '', {T0} + i * (2592000000000000 / {n}),
           {T0} + i * (2592000000000000 / {n}) + 150000000,
           CASE WHEN i % 3 = 0 THEN NULL ELSE {T0} + i * (2592000000000000 / {n}) + 900000000 END,
           {T0} + i * (2592000000000000 / {n}) + 60000000000, 60000, 59000,
           CASE WHEN i % 3 = 0 THEN 'failed' ELSE 'completed' END, CASE WHEN i % 3 = 0 THEN 486 ELSE 200 END,
           7, 3000, 12, 2, 3.0 + (i % 15) / 10.0, 0, CASE WHEN i % 4 = 0 THEN 'G722' ELSE 'PCMU' END FROM k;"
    ))
    .unwrap();
    let loaded = t.elapsed();
    let t = Instant::now();
    let mut idx = Index::open(path).unwrap();
    idx.rebuild_rollups().unwrap();
    (loaded, t.elapsed())
}

/// The tables the other pages read, filled alongside the calls.
fn load_others(data: &Path) {
    let db = rusqlite::Connection::open(data.join(INDEX_FILE)).unwrap();
    db.execute_batch(&format!(
        "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < 99999)
         INSERT INTO registrations (user, aor, contact, client, client_ip, registrar, outcome, last_status,
           expires, requests, registered, refreshes, challenges, failures, unanswered, first_ns, last_ns, call_id)
         SELECT 'u' || i, 'sip:u' || i || '@example.com', 'sip:u' || i || '@10.1.' || (i / 250 % 250) || '.' || (i % 250),
           'phone/1.0', '10.1.' || (i / 250 % 250) || '.' || (i % 250), '10.0.0.1:5060',
           CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'registered' END, CASE WHEN i % 10 = 0 THEN 403 ELSE 200 END,
           3600, 4, 1, 3, 1, i % 10 = 0, 0, {T0} + i * 1000000000, {T0} + i * 1000000000 + 3600000000000, 'reg-' || i FROM k;
         WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < 99999)
         INSERT INTO media_streams (folder, ssrc, src, dst, payload_type, codec, first_ns, last_ns, packets,
           expected, lost, jitter_ms, max_jitter_ms, max_delta_ms, mos, indexed_at)
         SELECT 'media/' || (i / 2), i, '10.2.0.' || (i % 250) || ':' || (10000 + i % 50000), '10.3.0.1:20000', 0, 'PCMU',
           {T0} + i * 25000000000, {T0} + i * 25000000000 + 20000000000, 1000, 1000, i % 7, 1.5, 4.0, 40.0, 4.2, 0 FROM k;"
    ))
    .unwrap();
    drop(voxtap_web::audit::AuditLog::open(data).unwrap());
    let audit = rusqlite::Connection::open(data.join(voxtap_web::audit::AUDIT_FILE)).unwrap();
    audit
        .execute_batch(&format!(
            "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < 999999)
             INSERT INTO audit (ts_ns, user, remote, action, call, detail)
             SELECT {T0} + i * 2592000000, CASE WHEN i % 5 = 0 THEN 'bob' ELSE 'alice' END, '10.0.0.' || (i % 200),
               CASE WHEN i % 3 = 0 THEN 'download' ELSE 'view' END, i, 'pcap' FROM k;"
        ))
        .unwrap();
    drop(voxtap_web::alerts::store::Store::open(data).unwrap());
    let alerts =
        rusqlite::Connection::open(data.join(voxtap_web::alerts::store::ALERTS_FILE)).unwrap();
    alerts
        .execute_batch(&format!(
            "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < 99999)
             INSERT INTO history (ts_ns, rule, state, value, summary)
             SELECT {T0} + i * 25920000000, 'rule-' || (i % 20), CASE WHEN i % 2 = 0 THEN 'firing' ELSE 'resolved' END,
               i % 100, 'ASR below 40 %' FROM k;"
        ))
        .unwrap();
}

/// A day of the sensor's, the uploader's and the HEP exporter's status
/// history, ending now, and their current status files.
fn load_status(data: &Path) {
    use voxtap_sensor::status::{self, history};
    let now = status::now_unix();
    for i in 0..history::SLOTS {
        let t = now - (history::SLOTS - 1 - i) * history::INTERVAL_S;
        let s = serde_json::json!({
            "frames_total": i * 5000, "frames_per_second": 500.0, "kernel": {"seen": i * 9000},
            "drops": {"ring_full": i / 100, "malformed": i / 1000, "unkept_by_config": 0, "call_write_errors": 0},
            "ring": {"bytes": 64 << 20, "backlog_bytes": i % 4096, "fill_percent": (i % 100) as f64 / 10.0},
            "calls_active": i % 300, "calls_written": i * 3,
            "store": {"bytes": i << 20, "files": i / 10, "free_bytes": 100u64 << 30, "files_deleted": 0},
        });
        history::record(data, "sensor", &s, t).unwrap();
        let u = serde_json::json!({"queued_files": i % 40, "spool_files": i % 7, "queued_bytes": (i % 40) << 20});
        history::record(data, "upload", &u, t).unwrap();
        let h = serde_json::json!({"collectors": [{"collector": "udp:10.0.0.9:9060", "queue_depth": i % 64}]});
        history::record(data, "hep", &h, t).unwrap();
    }
    status::write(
        data,
        "sensor",
        &serde_json::json!({"frames_per_second": 500.0, "running": true}),
    )
    .unwrap();
}

/// (median, 95th percentile, bytes) of `RUNS` fetches of `path`.
async fn time(base: &str, cookie: &str, path: &str) -> (f64, f64, usize) {
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..RUNS {
        let t = Instant::now();
        let r = client()
            .get(format!("{base}{path}"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        size = r.bytes().await.unwrap().len();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    (
        times[RUNS / 2 - 1],
        times[(RUNS * 95).div_ceil(100) - 1],
        size,
    )
}

/// Time to the first byte of the body, and to the last, of a streamed
/// export.
async fn first_byte(base: &str, cookie: &str, path: &str) -> (f64, f64, usize) {
    let t = Instant::now();
    let mut r = client()
        .get(format!("{base}{path}"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}");
    let mut first = None;
    let mut size = 0;
    while let Some(chunk) = r.chunk().await.unwrap() {
        first.get_or_insert_with(|| t.elapsed().as_secs_f64() * 1000.0);
        size += chunk.len();
    }
    (
        first.unwrap_or(0.0),
        t.elapsed().as_secs_f64() * 1000.0,
        size,
    )
}

/// The pages and APIs timed, as (name, path); `{mid}` is a call in the
/// middle of the index.
const PAGES: &[(&str, &str)] = &[
    ("calls list", "/calls"),
    (
        "calls, 1 h range",
        "/calls?from=2026-02-10T00:00&to=2026-02-10T01:00",
    ),
    (
        "calls, 1 h + INVITE + codec",
        "/calls?from=2026-02-10T00:00&to=2026-02-10T01:00&method=INVITE&codec=G722",
    ),
    ("calls, number exact", "/calls?party=4420500000"),
    ("calls, number prefix", "/calls?party=442050000*"),
    ("calls, To number (1000 calls)", "/calls?party=4930777"),
    ("calls, state failed", "/calls?state=failed"),
    ("calls, MOS < 3.2", "/calls?mos_max=3.2"),
    ("calls, page 100", "/calls?page=100"),
    ("calls rows (refresh)", "/calls/rows"),
    ("API calls", "/api/calls"),
    ("call page", "/calls/{mid}"),
    ("API call", "/api/calls/{mid}"),
    ("dashboards (24 h per hour)", "/dashboards"),
    (
        "dashboards, 6 h per minute",
        "/dashboards?from=2026-02-01T00:00&to=2026-02-01T06:00&step=minute",
    ),
    (
        "dashboards, 14 d per hour",
        "/dashboards?from=2026-02-01T00:00&to=2026-02-15T00:00&step=hour",
    ),
    (
        "dashboards, 30 d per day",
        "/dashboards?from=2026-02-01T00:00&to=2026-03-03T00:00&step=day",
    ),
    (
        "dashboards, 30 d, codec G722",
        "/dashboards?from=2026-02-01T00:00&to=2026-03-03T00:00&step=day&codec=G722",
    ),
    ("API dashboard (24 h)", "/api/dashboard"),
    ("live", "/live"),
    ("sensor (1 h)", "/sensor"),
    ("sensor (24 h)", "/sensor?range=24h"),
    ("sensor refresh (1 h)", "/sensor/status?range=1h"),
    ("registrations", "/registrations"),
    ("API registrations", "/api/registrations"),
    ("media", "/media"),
    ("alerts", "/alerts"),
    ("API alerts", "/api/alerts"),
    ("audit", "/admin/audit"),
    ("API audit", "/api/audit"),
    ("metrics", "/metrics"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: minutes; cargo xtask bench-web"]
async fn page_bench() {
    let n: u64 = std::env::var("VOXTAP_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let (loaded, rolled) = load_calls(&dir.path().join(INDEX_FILE), n);
    load_others(dir.path());
    load_status(dir.path());
    let running = voxtap_web::start(voxtap_web::ServeOptions {
        data: dir.path().to_path_buf(),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        config: config(),
        insecure_no_auth: false,
    })
    .await
    .unwrap();
    let base = format!("http://{}", running.addr);
    let cookie = login(&base, USER, PASSWORD).await.unwrap();
    println!(
        "page-bench: {n} calls: loaded in {loaded:.1?}, rollups rebuilt in {rolled:.1?}; {RUNS} runs each"
    );
    println!(
        "{:<34} {:>9} {:>9} {:>10}",
        "page", "p50 ms", "p95 ms", "bytes"
    );
    let mid = (n / 2).to_string();
    let mut over = Vec::new();
    // `VOXTAP_BENCH_PAGES=dashboards`: only the pages whose name has it.
    let only = std::env::var("VOXTAP_BENCH_PAGES").unwrap_or_default();
    for (name, path) in PAGES
        .iter()
        .filter(|(name, _)| name.contains(only.as_str()))
    {
        let path = path.replace("{mid}", &mid);
        let (p50, p95, size) = time(&base, &cookie, &path).await;
        println!("{name:<34} {p50:>9.1} {p95:>9.1} {size:>10}");
        if p95 > 300.0 {
            over.push(*name);
        }
    }
    for (name, path) in [
        (
            "CSV export, 3 days (86 400 calls)",
            "/calls/export/calls.csv?from=2026-02-01T00:00&to=2026-02-04T00:00",
        ),
        ("JSON export, all calls", "/calls/export/calls.json"),
    ]
    .into_iter()
    .filter(|(name, _)| name.contains(only.as_str()))
    {
        let (first, total, size) = first_byte(&base, &cookie, path).await;
        println!("{name:<34} first byte {first:.1} ms, all {total:.0} ms, {size} bytes");
        if first > 300.0 {
            over.push(name);
        }
    }
    println!("page-bench: over 300 ms at p95: {over:?}");
}
