//! The fleet's benchmark (ignored by default: minutes, and PostgreSQL's
//! durable defaults on a temporary cluster):
//! `cargo test -p voxtap-web --test web fleet_bench:: -- --ignored --nocapture`.
//!
//! * Ingest: three sensors' shippers (each its own connection and TLS
//!   client certificate, batches of 2000) send a synthetic import of
//!   `VOXTAP_BENCH_SHIP_CALLS` calls each (default 6000) at once; prints
//!   calls/s for the three together.
//! * Queries: `VOXTAP_BENCH_CALLS` calls (default 1 000 000) bulk-loaded
//!   over 7 days straight into the central index (generate_series as the
//!   owner, see [`load`]), then each query kind of the hub's search (rows +
//!   capped count, as the UI asks) 100 times through
//!   [`voxtap_web::hub::Hub::search`]: p50 and p99 in ms. With
//!   `VOXTAP_BENCH_KEEP` set the loaded cluster is left running and its URL
//!   printed, for `bench_fleet_queries_on_a_loaded_index`
//!   (`VOXTAP_BENCH_PG_URL`), which runs the queries alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use voxtap_engine::import::{ImportOptions, run_import};
use voxtap_engine::index::{CallQuery, INDEX_FILE};
use voxtap_engine::pipeline::PipelineConfig;
use voxtap_engine::synth::{SynthConfig, generate};
use voxtap_sensor::central::pg::PgTarget;
use voxtap_sensor::central::schema;
use voxtap_sensor::central::ship::{ShipOptions, Shipper};
use voxtap_web::hub::Hub;
use voxtap_web::hub::query::HubFilter;

use crate::hub::{Certs, hub_central, setup_central_with};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One synthetic import of `calls` one-second calls.
fn synthetic_data(calls: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("synth.pcap");
    let cfg = SynthConfig {
        calls,
        seconds: 1,
        ramp_seconds: calls / 50 + 1,
        ..Default::default()
    };
    generate(&cfg, std::fs::File::create(&pcap).unwrap()).unwrap();
    let out = dir.path().join("data");
    run_import(&ImportOptions {
        files: vec![pcap],
        out,
        pipeline: PipelineConfig::default(),
        call_files: false,
        media: None,
    })
    .unwrap();
    dir
}

async fn ingest(certs: &Certs, pg: &voxtap_testkit::pg::Pg) {
    let n = env_or("VOXTAP_BENCH_SHIP_CALLS", 6000) as u32;
    let t = Instant::now();
    let src = synthetic_data(n);
    println!(
        "synthetic import of {n} calls: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut admin = PgTarget::parse(&pg.admin_url()).connect().await.unwrap();
    schema::add_sensor(&mut admin, "s3").await.unwrap();
    // The same calls on three sensors: three copies of the local index.
    let dirs: Vec<tempfile::TempDir> = (0..3)
        .map(|_| {
            let d = tempfile::tempdir().unwrap();
            std::fs::copy(
                src.path().join("data").join(INDEX_FILE),
                d.path().join(INDEX_FILE),
            )
            .unwrap();
            d
        })
        .collect();
    let mut shippers = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        let role = schema::sensor_role(&format!("s{}", i + 1));
        shippers.push(
            Shipper::open(ShipOptions {
                target: certs.target(pg, &role, Some(certs.cert(&role))),
                sensor_id: format!("s{}", i + 1),
                out_dir: d.path().to_path_buf(),
                store: None,
                upload: None,
                batch: 2000,
                interval: Duration::from_millis(100),
            })
            .unwrap(),
        );
    }
    let t = Instant::now();
    let tasks: Vec<_> = shippers
        .into_iter()
        .map(|mut s| tokio::spawn(async move { s.drain().await.unwrap() }))
        .collect();
    let mut shipped = 0;
    for t in tasks {
        shipped += t.await.unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(shipped, 3 * u64::from(n));
    assert_eq!(
        pg.count("SELECT count(*) FROM voxtap.calls"),
        3 * i64::from(n)
    );
    println!(
        "ingest: 3 sensors x {n} calls in {secs:.2} s = {:.0} calls/s together",
        shipped as f64 / secs
    );
    println!(
        "central index: {} bytes per shipped call (every table and index)",
        bytes_per_call(pg)
    );
}

/// The schema's tables and indexes on disk over the calls in it.
fn bytes_per_call(pg: &voxtap_testkit::pg::Pg) -> i64 {
    pg.count(
        "SELECT ((SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'voxtap' AND c.relkind = 'r') \
         / (SELECT count(*) FROM voxtap.calls))::bigint",
    )
}

/// `calls` synthetic calls over the 7 days before now, sensors 1-3, as a
/// bulk load: the calls' indexes dropped and made again after, the
/// triggers off while inserting (`session_replication_role`) and the
/// tables they keep (`call_ips`, the rollups) filled by one statement each,
/// as migrations 2 and 4 fill them from calls already there. About twice
/// as fast at 10 M calls as inserting through the indexes and triggers.
pub(crate) fn load(pg: &voxtap_testkit::pg::Pg, calls: u64) {
    let db = voxtap_testkit::pg::DB;
    pg.psql(
        db,
        "SELECT voxtap.ensure_days((now() - interval '8 days')::date, (now() + interval '1 day')::date)",
    );
    let t = Instant::now();
    let of_calls = "FROM pg_indexes WHERE schemaname = 'voxtap' AND tablename = 'calls'";
    let defs = pg.psql(
        db,
        &format!("SELECT replace(indexdef, ' ON ONLY ', ' ON ') {of_calls}"),
    );
    let drops = pg.psql(
        db,
        &format!("SELECT string_agg(format('DROP INDEX voxtap.%I', indexname), '; ') {of_calls}"),
    );
    pg.psql(db, &drops);
    let step = 1_000_000;
    let mut from = 1;
    while from <= calls {
        let to = (from + step - 1).min(calls);
        pg.psql(
            db,
            &format!(
                "SET session_replication_role = replica; \
                 INSERT INTO voxtap.calls (sensor, local_id, call_id, method, start_at, end_at, duration_ms, \
                 from_user, to_user, from_uri, to_uri, request_uri, ruri_user, state, status_code, \
                 sip_packets, rtp_packets, rtcp_packets, stream_count, ips, codecs, mos, indexed_at) \
                 SELECT 1 + i % 3, i, 'bench-' || i || '@voxtap.test', 'INVITE', \
                   now() - interval '7 days' + (i * interval '7 days' / {calls}), \
                   now() - interval '7 days' + (i * interval '7 days' / {calls}) + interval '90 s', 90000, \
                   '+4420' || lpad((i % 1000003)::text, 7, '0'), '+4430' || lpad((i * 7919 % 1000003)::text, 7, '0'), \
                   '', '', '', '+4430' || lpad((i * 7919 % 1000003)::text, 7, '0'), \
                   CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'answered' END, \
                   CASE WHEN i % 10 = 0 THEN 486 ELSE 200 END, 8, 9000, 20, 2, \
                   ARRAY[('10.' || (i / 65536 % 256) || '.' || (i / 256 % 256) || '.' || (i % 256))::inet, '192.0.2.1'::inet], \
                   ARRAY['PCMU'], 1.0 + (i % 350) / 100.0, now() \
                 FROM generate_series({from}::bigint, {to}) i"
            ),
        );
        from = to + 1;
    }
    pg.psql(
        db,
        "INSERT INTO voxtap.call_ips (call_start, id, ip) \
         SELECT c.start_at, c.id, a.ip FROM voxtap.calls c, LATERAL (SELECT DISTINCT unnest(c.ips)) a(ip)",
    );
    pg.psql(
        db,
        "DO $$ DECLARE q text; BEGIN \
         FOREACH q IN ARRAY voxtap.rollup_statements('voxtap.calls', 1) LOOP EXECUTE q; END LOOP; END $$",
    );
    for def in defs.lines().filter(|l| !l.trim().is_empty()) {
        pg.psql(db, &format!("SET maintenance_work_mem = '512MB'; {def}"));
    }
    for table in ["voxtap.calls", "voxtap.call_ips"] {
        pg.psql(db, &format!("VACUUM ANALYZE {table}"));
    }
    println!(
        "central index: {} bytes per loaded call (calls and its indexes only)",
        bytes_per_call(pg)
    );
    println!(
        "loaded {calls} calls over 7 days in {:.0} s ({:.0} rows/s)",
        t.elapsed().as_secs_f64(),
        calls as f64 / t.elapsed().as_secs_f64()
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The i-th query of one kind.
type QueryKind = Box<dyn Fn(u64) -> CallQuery>;

fn base() -> CallQuery {
    CallQuery {
        descending: true,
        limit: 50,
        ..Default::default()
    }
}

async fn queries(hub: &Hub, calls: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let day = 86_400_000_000_000u64;
    let some = move |i: u64| 1 + (i * 7_777_777) % calls;
    let kinds: Vec<(&str, QueryKind)> = vec![
        (
            "Call-ID",
            Box::new(move |i| {
                let mut q = base();
                q.call_id = Some(format!("bench-{}@voxtap.test", some(i)));
                q
            }),
        ),
        (
            "number exact, 7 days",
            Box::new(move |i| {
                let mut q = base();
                q.start_from_ns = Some(now - 7 * day);
                q.party = Some(format!("+4420{:07}", some(i) % 1_000_003));
                q
            }),
        ),
        (
            "number prefix, 7 days",
            Box::new(move |i| {
                let mut q = base();
                q.start_from_ns = Some(now - 7 * day);
                q.party = Some(format!("+4420{:05}*", some(i) % 100_000));
                q
            }),
        ),
        (
            "number suffix, 7 days",
            Box::new(move |i| {
                let mut q = base();
                q.start_from_ns = Some(now - 7 * day);
                q.party = Some(format!("*{:06}", some(i) % 1_000_000));
                q
            }),
        ),
        (
            "IP, 1 day",
            Box::new(move |i| {
                let mut q = base();
                q.start_from_ns = Some(now - (1 + i % 6) * day);
                q.start_to_ns = Some(now - (i % 6) * day);
                let n = some(i);
                q.ip = Some(
                    format!("10.{}.{}.{}", n / 65536 % 256, n / 256 % 256, n % 256)
                        .parse()
                        .unwrap(),
                );
                q
            }),
        ),
        (
            "IP in every call (an SBC's), 1 day",
            Box::new(move |i| {
                let mut q = base();
                q.start_from_ns = Some(now - (1 + i % 6) * day);
                q.start_to_ns = Some(now - (i % 6) * day);
                q.ip = Some("192.0.2.1".parse().unwrap());
                q
            }),
        ),
        (
            "1 h window, MOS < 2",
            Box::new(move |i| {
                let mut q = base();
                let end = now - (i % 160) * day / 24;
                q.start_from_ns = Some(end - day / 24);
                q.start_to_ns = Some(end);
                q.mos_max = Some(2.0);
                q
            }),
        ),
        (
            "1 h window, state failed",
            Box::new(move |i| {
                let mut q = base();
                let end = now - (i % 160) * day / 24;
                q.start_from_ns = Some(end - day / 24);
                q.start_to_ns = Some(end);
                q.state = Some("failed".into());
                q
            }),
        ),
    ];
    println!("| query ({calls} calls, 7 days) | p50 ms | p99 ms | matches of the first |");
    println!("|---|---|---|---|");
    let all = HubFilter::default();
    let sensor2 = HubFilter {
        sensor: Some("s2".into()),
        ..Default::default()
    };
    let day_window = move |i: u64| {
        let mut q = base();
        q.start_from_ns = Some(now - (1 + i % 6) * day);
        q.start_to_ns = Some(now - (i % 6) * day);
        q
    };
    let kinds = kinds
        .into_iter()
        .map(|(name, make)| (name, make, &all))
        .chain([(
            "sensor s2, 1 day",
            Box::new(day_window) as QueryKind,
            &sensor2,
        )]);
    for (name, make, h) in kinds {
        // Warm the connection and the plan.
        hub.search(&make(999), h)
            .await
            .unwrap_or_else(|e| panic!("{name}: {}", e.message()));
        let mut times = Vec::new();
        let mut first = None;
        for i in 0..100 {
            let t = Instant::now();
            let page = hub
                .search(&make(i), h)
                .await
                .unwrap_or_else(|e| panic!("{name}: {}", e.message()));
            times.push(t.elapsed());
            first.get_or_insert(page.total);
        }
        times.sort();
        println!(
            "| {name} | {:.1} | {:.1} | {} |",
            ms(times[49]),
            ms(times[98]),
            first.unwrap_or(0)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: minutes; run with --ignored --nocapture"]
async fn bench_fleet_ingest_and_queries() {
    let certs = Certs::new();
    let mut pg = setup_central_with(&certs, "bench", false).await;
    ingest(&certs, &pg).await;
    pg.psql(
        voxtap_testkit::pg::DB,
        "TRUNCATE voxtap.calls, voxtap.call_ips, voxtap.streams, voxtap.legs, voxtap.call_sip, voxtap.rollup_minute",
    );
    let calls = env_or("VOXTAP_BENCH_CALLS", 1_000_000);
    if calls > 1_000_000 {
        // As docs/fleet.md sizes a central index: shared_buffers of a
        // fraction of RAM (2 GB here, of 23), and WAL room for the bulk
        // load between checkpoints (4 GB: the disk is shared).
        // (ALTER SYSTEM: one statement a call.)
        for sql in [
            "ALTER SYSTEM SET shared_buffers = '2GB'",
            "ALTER SYSTEM SET max_wal_size = '4GB'",
        ] {
            pg.psql(voxtap_testkit::pg::DB, sql);
        }
        pg.stop();
        pg.resume();
    }
    load(&pg, calls);
    let hub = Arc::new(Hub::new(&hub_central(&certs, &pg, &[])).unwrap());
    queries(&hub, calls).await;
    dashboards(&hub).await;
    if std::env::var_os("VOXTAP_BENCH_KEEP").is_some() {
        // For bench_fleet_queries_on_a_loaded_index; stop and remove it
        // by hand (pg_ctl stop -D <root>/data; rm -r <root>).
        println!(
            "kept: VOXTAP_BENCH_PG_URL='{}' (cluster in {})",
            pg.admin_url(),
            pg.root.display()
        );
        std::mem::forget(pg);
    }
}

/// The query part alone, against a central index already loaded with
/// [`load`]'s calls (`VOXTAP_BENCH_PG_URL`, e.g. `host=/path/to/socket-dir
/// port=5432 user=postgres dbname=voxtap`; `VOXTAP_BENCH_CALLS` the calls
/// in it): to compare plans and indexes without loading 10 M calls again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: needs VOXTAP_BENCH_PG_URL, a loaded central index"]
async fn bench_fleet_queries_on_a_loaded_index() {
    let Ok(url) = std::env::var("VOXTAP_BENCH_PG_URL") else {
        println!("skipped: VOXTAP_BENCH_PG_URL (a loaded central index) is not set");
        return;
    };
    let calls = env_or("VOXTAP_BENCH_CALLS", 10_000_000);
    let hub = Hub::new(&voxtap_web::config::CentralConfig {
        url,
        ..Default::default()
    })
    .unwrap();
    queries(&hub, calls).await;
}

/// The hub's dashboards over the loaded calls' rollups: p50 and max of 20.
async fn dashboards(hub: &Hub) {
    use voxtap_engine::index::DashQuery;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let hour = 3_600_000_000_000;
    let q = |hours: u64, step_minutes: u64| DashQuery {
        from_ns: now - hours * hour,
        to_ns: now,
        step_minutes,
        ..Default::default()
    };
    println!("| hub dashboard | p50 ms | max ms | attempts |");
    println!("|---|---|---|---|");
    for (name, q, sensor) in [
        ("24 h per hour", q(24, 60), None),
        ("6 h per minute", q(6, 1), None),
        ("7 days per hour", q(168, 60), None),
        ("7 days per day, sensor s2", q(168, 1440), Some("s2")),
    ] {
        let mut times = Vec::new();
        let mut attempts = 0;
        for _ in 0..20 {
            let t = Instant::now();
            let b = hub
                .dashboard(&q, sensor)
                .await
                .unwrap_or_else(|e| panic!("{name}: {}", e.message()));
            times.push(t.elapsed());
            attempts = b.iter().map(|b| b.counts.attempts).sum::<i64>();
        }
        times.sort();
        println!(
            "| {name} | {:.1} | {:.1} | {attempts} |",
            ms(times[9]),
            ms(times[19])
        );
    }
}
