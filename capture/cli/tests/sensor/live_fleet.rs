//! A live sensor in the fleet: `voxtap run` in the namespace lab with
//! `[central]` ships the SIPp calls it captures through XDP to a central
//! PostgreSQL 15 (voxtap_testkit::pg, running in the sensor's namespace so
//! the sensor reaches it at 127.0.0.1, TLS with the sensor's client
//! certificate); the hub's search (`voxtap_web::hub::Hub`, over the
//! server's unix socket as the hub's role) returns exactly the calls of the
//! sensor's local index, with its sensor id. Then PostgreSQL is stopped for
//! 30 s while more calls are captured, and after the restart every call
//! arrives once.
#![cfg(target_os = "linux")]

use crate::lab;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use lab::*;
use voxtap_engine::index::{CallQuery, INDEX_FILE};
use voxtap_sensor::central::pg::PgTarget;
use voxtap_sensor::central::{ca, schema};
use voxtap_testkit::pg::{DB, Pg, PgTls};
use voxtap_web::config::CentralConfig;
use voxtap_web::hub::Hub;
use voxtap_web::hub::query::HubFilter;

/// The sensor's name in the fleet.
const SENSOR: &str = "lab";

/// Call-ID -> start (µs: the central index keeps microseconds) of every call of the sensor's local index, read
/// with SQLite directly (read-only: the sensor is writing it).
fn local_calls(out: &Path) -> BTreeMap<String, u64> {
    let db = rusqlite::Connection::open_with_flags(
        out.join(INDEX_FILE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut st = db.prepare("SELECT call_id, start_ns FROM calls").unwrap();
    let rows = st
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64 / 1000))
        })
        .unwrap();
    let mut calls = BTreeMap::new();
    for r in rows {
        let (cid, start) = r.unwrap();
        assert!(
            calls.insert(cid.clone(), start).is_none(),
            "{cid} twice locally"
        );
    }
    calls
}

/// The same, as the hub finds the sensor's calls; panics on a call found
/// twice or under another sensor.
async fn hub_calls(hub: &Hub) -> BTreeMap<String, u64> {
    let page = hub
        .search(
            &CallQuery {
                limit: 1000,
                ..Default::default()
            },
            &HubFilter {
                sensor: Some(SENSOR.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("hub search: {}", e.message()));
    assert_eq!(page.total as usize, page.rows.len());
    let mut calls = BTreeMap::new();
    for c in page.rows {
        assert_eq!(c.sensor.as_deref(), Some(SENSOR), "{}", c.call_id);
        assert!(
            calls.insert(c.call_id.clone(), c.start_ns / 1000).is_none(),
            "{} twice",
            c.call_id
        );
    }
    calls
}

/// The central index with the sensor's and the hub's roles, in the lab's
/// sensor namespace; returns it and the `[central]` section of the
/// sensor's configuration.
fn central(lab: &Lab, dir: &Path, rt: &tokio::runtime::Runtime) -> (Pg, String) {
    let c = dir.join("ca");
    let certs = dir.join("certs");
    ca::init(&c, "lab fleet CA", 2).unwrap();
    ca::issue(&c, "postgres", &["127.0.0.1".into()], 2, &certs).unwrap();
    let role = schema::sensor_role(SENSOR);
    ca::issue(&c, &role, &[], 2, &certs).unwrap();
    let tls = PgTls {
        cert: certs.join("postgres.crt"),
        key: certs.join("postgres.key"),
        ca: c.join("ca.crt"),
    };
    let pg = Pg::start_in("live-fleet", Some(&tls), true, Some(&lab.ns('s')));
    rt.block_on(async {
        let mut admin = PgTarget::parse(&pg.admin_url()).connect().await.unwrap();
        schema::migrate(&mut admin).await.unwrap();
        schema::add_sensor(&mut admin, SENSOR).await.unwrap();
        schema::add_hub(&mut admin, "vx_hub").await.unwrap();
    });
    let cfg = format!(
        "[central]\nurl = \"{}\"\nsensor_id = \"{SENSOR}\"\nclient_cert = \"{}\"\n\
         client_key = \"{}\"\nca = \"{}\"\nbatch_calls = 3\ninterval_ms = 100\n",
        pg.tcp_url(&role),
        certs.join(format!("{role}.crt")).display(),
        certs.join(format!("{role}.key")).display(),
        c.join("ca.crt").display(),
    );
    (pg, cfg)
}

/// Waits until the central index holds as many of the sensor's calls as
/// its local index (the shipper retries with a backoff of up to 30 s).
fn wait_shipped(pg: &Pg, out: &Path, want: usize) {
    wait_until(
        Duration::from_secs(90),
        "every call in the central index",
        || {
            let central = pg.count("SELECT count(*) FROM voxtap.calls") as usize;
            (central == want && local_calls(out).len() == want).then_some(())
        },
    );
}

/// 4 SIPp calls shipped live and found by the hub; PostgreSQL stopped for
/// 30 s while 6 more calls are captured (the sensor's status says
/// disconnected with calls pending); after the restart all 10 arrive once,
/// each with its streams, and the hub's search equals the local index.
#[test]
fn live_sensor_ships_to_the_central_index_through_an_outage() {
    require_root();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempdir("fleet");
    let lab = Lab::up(&format!("vy{}", std::process::id() % 10000), 223);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mut pg, cfg) = central(&lab, &dir, &rt);
    let out = dir.join("out");
    let vox = start_voxtap(&lab, &dir, &cfg, 180);
    let hub = rt.block_on(async {
        Hub::new(&CentralConfig {
            // The hub's role over the unix socket (trusted locally), from
            // outside the sensor's namespace.
            url: format!(
                "host={} port={} user=vx_hub dbname={DB}",
                pg.socket_dir().display(),
                pg.port
            ),
            ..Default::default()
        })
        .unwrap()
    });

    sipp_calls(&lab, &dir, 4, 4);
    wait_calls_written(&out, 4);
    wait_shipped(&pg, &out, 4);
    assert_eq!(rt.block_on(hub_calls(&hub)), local_calls(&out));

    pg.stop();
    let down = Instant::now();
    sipp_calls(&lab, &dir, 6, 6);
    wait_calls_written(&out, 10);
    let status = out.join("status/central.json");
    // The shipper retries at 1, 2, 4, 8, 16 s...: one attempt after the 6
    // calls were written says so.
    let st = wait_until(Duration::from_secs(45), "disconnected, 6 pending", || {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&status).ok()?).ok()?;
        (v["connected"] == false && v["pending_calls"] == 6).then_some(v)
    });
    eprintln!("during the outage: {st}");
    // The outage itself is what is tested: 30 s of it, whatever the calls
    // took.
    std::thread::sleep(Duration::from_secs(30).saturating_sub(down.elapsed()));
    pg.resume();
    wait_shipped(&pg, &out, 10);

    vox.signal(libc::SIGTERM);
    let o = vox.wait(Duration::from_secs(30));
    assert!(
        o.status.success(),
        "voxtap run: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let local = local_calls(&out);
    assert_eq!(local.len(), 10);
    assert_eq!(rt.block_on(hub_calls(&hub)), local);
    // Each call once, with its streams (SIPp's RTP both ways).
    assert_eq!(
        pg.count("SELECT count(DISTINCT call_id) FROM voxtap.calls"),
        10
    );
    assert_eq!(
        pg.count("SELECT count(*) FROM voxtap.streams"),
        pg.count("SELECT sum(stream_count) FROM voxtap.calls")
    );
    assert!(pg.count("SELECT min(stream_count) FROM voxtap.calls") >= 2);
    drop(pg);
    std::fs::remove_dir_all(&dir).unwrap();
}
