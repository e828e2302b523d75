//! The hub (`[central]` in the web config) over a real PostgreSQL 15 with
//! TLS and client certificates (voxtap_testkit::pg, on a temporary
//! directory): two sensors' imports shipped by the library's shipper, the
//! hub's search, Sensors page and downloads (through sensor 2's tunnel; sensor
//! 1 offline), shipping twice is idempotent, and the central index's
//! security (row-level security, INSERT-only sensor roles, certificates).

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use voxtap_engine::index::{CallQuery, INDEX_FILE, Index};
use voxtap_sensor::central::pg::PgTarget;
use voxtap_sensor::central::ship::{ShipOptions, Shipper};
use voxtap_sensor::central::tunnel::{self, TunnelOptions};
use voxtap_sensor::central::{ca, schema};
use voxtap_sensor::upload::{UploadConfig, Uploader};
use voxtap_testkit::pg::{Pg, PgTls};
use voxtap_web::config::{CentralConfig, TunnelSensor};

const SECRET2: &str = "sensor-2-shared-secret";

/// The fleet CA and every certificate of the test.
pub(crate) struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    pub(crate) fn new() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("ca");
        ca::init(&c, "test fleet CA", 30).unwrap();
        let out = dir.path().join("certs");
        ca::issue(&c, "postgres", &["127.0.0.1".into()], 30, &out).unwrap();
        for role in ["vx_s1", "vx_s2", "vx_s3", "vx_hub"] {
            ca::issue(&c, role, &[], 30, &out).unwrap();
        }
        // A certificate for vx_s1 from a CA the server does not trust.
        let rogue = dir.path().join("rogue");
        ca::init(&rogue, "rogue CA", 30).unwrap();
        ca::issue(&rogue, "vx_s1", &[], 30, &rogue).unwrap();
        Certs { dir }
    }
    pub(crate) fn ca(&self) -> PathBuf {
        self.dir.path().join("ca/ca.crt")
    }
    pub(crate) fn cert(&self, name: &str) -> (PathBuf, PathBuf) {
        let d = self.dir.path().join("certs");
        (d.join(format!("{name}.crt")), d.join(format!("{name}.key")))
    }
    pub(crate) fn tls(&self) -> PgTls {
        let (cert, key) = self.cert("postgres");
        PgTls {
            cert,
            key,
            ca: self.ca(),
        }
    }
    /// `role` over TCP with the certificate `cert_of` (a role's, or none).
    pub(crate) fn target(&self, pg: &Pg, role: &str, cert: Option<(PathBuf, PathBuf)>) -> PgTarget {
        let (c, k) = cert.unzip();
        PgTarget::parse(&pg.tcp_url(role)).with_files(c.as_deref(), k.as_deref(), Some(&self.ca()))
    }
}

/// The server's message of a failed statement.
fn db_msg(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_string())
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) of ns since the epoch, as the search form
/// takes it.
fn iso(ns: u64) -> String {
    let secs = (ns / 1_000_000_000) as i64;
    let (y, m, d) = voxtap_engine::output::civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(crate) async fn ship(certs: &Certs, pg: &Pg, sensor: &str, data: &Path) -> u64 {
    ship_with(certs, pg, sensor, data, None, 3).await
}

/// Ships the calls in batches of `batch` (one transaction each): a reader
/// never sees part of a batch.
pub(crate) async fn ship_batch(
    certs: &Certs,
    pg: &Pg,
    sensor: &str,
    data: &Path,
    batch: usize,
) -> u64 {
    ship_with(certs, pg, sensor, data, None, batch).await
}

/// Ships the calls and, with `upload`, the call files the sensor's upload
/// queue (in `data/store`) confirmed in S3.
async fn ship_with(
    certs: &Certs,
    pg: &Pg,
    sensor: &str,
    data: &Path,
    upload: Option<UploadConfig>,
    batch: usize,
) -> u64 {
    let role = schema::sensor_role(sensor);
    let mut s = Shipper::open(ShipOptions {
        target: certs.target(pg, &role, Some(certs.cert(&role))),
        sensor_id: sensor.into(),
        out_dir: data.to_path_buf(),
        store: upload.is_some().then(|| data.join("store")),
        upload,
        batch,
        interval: Duration::from_millis(100),
    })
    .unwrap();
    s.drain().await.unwrap()
}

fn local_calls(data: &Path) -> Vec<voxtap_engine::index::CallRow> {
    Index::open(&data.join(INDEX_FILE))
        .unwrap()
        .search(&CallQuery {
            limit: 1000,
            ..Default::default()
        })
        .unwrap()
        .rows
}

/// Every SIP and media address of the sensor's local index.
fn local_ips(data: &Path) -> Vec<String> {
    let db = rusqlite::Connection::open(data.join(INDEX_FILE)).unwrap();
    let mut st = db.prepare("SELECT DISTINCT ip FROM call_ips").unwrap();
    st.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The Call-IDs the sensor's own index finds by `ip`.
fn local_calls_by_ip(data: &Path, ip: &str) -> Vec<String> {
    Index::open(&data.join(INDEX_FILE))
        .unwrap()
        .search(&CallQuery {
            ip: Some(ip.parse().unwrap()),
            limit: 1000,
            ..Default::default()
        })
        .unwrap()
        .rows
        .into_iter()
        .map(|c| c.call_id)
        .collect()
}

/// A hub's `[central]`: the central index as `vx_hub` with its client
/// certificate, and the sensors that may open a tunnel to it (`name`,
/// shared secret).
pub(crate) fn hub_central(certs: &Certs, pg: &Pg, sensors: &[(&str, &str)]) -> CentralConfig {
    let (cert, key) = certs.cert("vx_hub");
    CentralConfig {
        url: pg.tcp_url("vx_hub"),
        client_cert: Some(cert),
        client_key: Some(key),
        ca: Some(certs.ca()),
        sensors: sensors
            .iter()
            .map(|(name, secret)| TunnelSensor {
                name: (*name).into(),
                secret: Some((*secret).into()),
                secret_file: None,
            })
            .collect(),
        // A sensor's live calls are stale 5 s after its last push by
        // default: on a loaded test machine a push can come later than
        // that, and staleness is the live store's unit test's to check.
        live_stale_seconds: Some(30),
        live_drop_seconds: Some(60),
        ..Default::default()
    }
}

/// A hub (`voxtap serve` with [`hub_central`]) on a data folder of its own,
/// with `cfg`'s other settings: the server, its folder and its base URL.
pub(crate) async fn start_hub(
    certs: &Certs,
    pg: &Pg,
    sensors: &[(&str, &str)],
    mut cfg: voxtap_web::config::Config,
) -> (voxtap_web::Running, tempfile::TempDir, String) {
    cfg.central = Some(hub_central(certs, pg, sensors));
    let hub_dir = tempfile::tempdir().unwrap();
    let srv = voxtap_web::start(voxtap_web::ServeOptions {
        data: hub_dir.path().to_path_buf(),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        config: cfg,
        insecure_no_auth: false,
    })
    .await
    .unwrap();
    let base = format!("http://{}", srv.addr);
    (srv, hub_dir, base)
}

/// A central index with sensors s1 and s2 and the hub's role; `tag` names
/// the cluster's directory (the tests run at once).
pub(crate) async fn setup_central(certs: &Certs, tag: &str) -> Pg {
    setup_central_with(certs, tag, true).await
}

/// `fast`: no fsync (tests); the benchmark keeps the durable defaults.
pub(crate) async fn setup_central_with(certs: &Certs, tag: &str, fast: bool) -> Pg {
    let pg = Pg::start(tag, Some(&certs.tls()), fast);
    let mut admin = PgTarget::parse(&pg.admin_url()).connect().await.unwrap();
    let n = schema::MIGRATIONS.len() as i32;
    assert_eq!(schema::migrate(&mut admin).await.unwrap(), (0, n));
    // Again: nothing to do.
    assert_eq!(schema::migrate(&mut admin).await.unwrap(), (n, n));
    for s in ["s1", "s2"] {
        schema::add_sensor(&mut admin, s).await.unwrap();
    }
    schema::add_hub(&mut admin, "vx_hub").await.unwrap();
    pg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hub_searches_every_sensor_and_fetches_through_the_tunnel() {
    let certs = Certs::new();
    let pg = setup_central(&certs, "hub-search").await;
    let d1 = data_dir_with(&corpus("generated/sipp-netns-udp-2calls.pcap"));
    let d2 = data_dir_with(&corpus("generated/baresip-b2bua-2legs-srtp-to-rtp.pcap"));
    let (c1, c2) = (local_calls(d1.path()), local_calls(d2.path()));
    assert_eq!(ship(&certs, &pg, "s1", d1.path()).await, c1.len() as u64);
    assert_eq!(ship(&certs, &pg, "s2", d2.path()).await, c2.len() as u64);
    // Shipping again from scratch (the mark lost) adds nothing.
    rusqlite::Connection::open(d2.path().join(INDEX_FILE))
        .unwrap()
        .execute("DELETE FROM ship_marks", [])
        .unwrap();
    assert_eq!(ship(&certs, &pg, "s2", d2.path()).await, c2.len() as u64);
    let total = (c1.len() + c2.len()) as i64;
    assert_eq!(pg.count("SELECT count(*) FROM voxtap.calls"), total);
    assert_eq!(
        pg.count("SELECT count(*) FROM voxtap.streams"),
        pg.count("SELECT sum(stream_count) FROM voxtap.calls")
    );

    let (srv, _hub_dir, base) = start_hub(&certs, &pg, &[("s2", SECRET2)], config()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let t = tokio::spawn(tunnel::run(
        TunnelOptions {
            hub_url: format!("ws://{}", srv.addr),
            ca: None,
            sensor_id: "s2".into(),
            secret: SECRET2.as_bytes().to_vec(),
            data: d2.path().to_path_buf(),
            live_caps: Default::default(),
        },
        stop.clone(),
    ));
    let cookie = login(&base, USER, PASSWORD).await.unwrap();
    let get = |path: String| {
        let c = client();
        let cookie = cookie.clone();
        let base = base.clone();
        async move {
            c.get(format!("{base}{path}"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
        }
    };
    // Every call of both sensors, each with its sensor.
    let all: serde_json::Value = get("/api/calls?per_page=500".into())
        .await
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    assert_eq!(all["total"], total);
    for (sensor, calls) in [("s1", &c1), ("s2", &c2)] {
        for c in calls.iter() {
            let page: serde_json::Value = get(format!("/api/calls?call_id={}", enc(&c.call_id)))
                .await
                .text()
                .await
                .map(|t| serde_json::from_str(&t).unwrap())
                .unwrap();
            assert_eq!(page["total"], 1, "{}", c.call_id);
            assert_eq!(page["rows"][0]["sensor"], sensor);
            assert_eq!(page["rows"][0]["from_user"], c.from_user.as_str());
        }
    }
    // By number and by time: each sensor's calls come back with their
    // sensor.
    for (sensor, calls) in [("s1", &c1), ("s2", &c2)] {
        for c in calls.iter().filter(|c| !c.from_user.is_empty()) {
            let found = |page: &serde_json::Value| {
                page["rows"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["call_id"] == c.call_id.as_str() && r["sensor"] == sensor)
            };
            let by_number: serde_json::Value = get(format!(
                "/api/calls?party={}&per_page=500",
                enc(&c.from_user)
            ))
            .await
            .text()
            .await
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap();
            assert!(found(&by_number), "{} by number: {by_number}", c.call_id);
            let (from, to) = (
                iso(c.start_ns - 1_000_000_000),
                iso(c.start_ns + 1_000_000_000),
            );
            let by_time: serde_json::Value = get(format!(
                "/api/calls?from={}&to={}&per_page=500",
                enc(&from),
                enc(&to)
            ))
            .await
            .text()
            .await
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap();
            assert!(
                found(&by_time),
                "{} by time {from}..{to}: {by_time}",
                c.call_id
            );
        }
    }
    // By IP: the hub's calls are those the sensors' own indexes find.
    let ips: std::collections::BTreeSet<String> = [&d1, &d2]
        .iter()
        .flat_map(|d| local_ips(d.path()))
        .collect();
    assert!(ips.len() > 2, "{ips:?}");
    for ip in &ips {
        let page: serde_json::Value = get(format!("/api/calls?ip={}&per_page=500", enc(ip)))
            .await
            .text()
            .await
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap();
        let mut hub: Vec<(String, String)> = page["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["sensor"].to_string(), r["call_id"].to_string()))
            .collect();
        let mut local: Vec<(String, String)> = [("s1", &d1), ("s2", &d2)]
            .iter()
            .flat_map(|(s, d)| {
                local_calls_by_ip(d.path(), ip)
                    .into_iter()
                    .map(move |c| (format!("{s:?}"), format!("{c:?}")))
            })
            .collect();
        hub.sort();
        local.sort();
        assert_eq!(hub, local, "calls with IP {ip}");
        assert_eq!(page["total"], local.len(), "count of IP {ip}");
    }
    // The sensor filter, the list's column, the Sensors page.
    let only2: serde_json::Value = get("/api/calls?sensor=s2".into())
        .await
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    assert_eq!(only2["total"], c2.len());
    let html = get("/calls".into()).await.text().await.unwrap();
    assert!(html.contains("<th>Sensor</th>"), "{html}");
    let mut s2_connected = serde_json::Value::Null;
    for _ in 0..1000 {
        let v: serde_json::Value = get("/api/sensors".into())
            .await
            .text()
            .await
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap();
        if v[1]["tunnel"] == true {
            s2_connected = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        s2_connected[1]["name"], "s2",
        "sensor 2's tunnel never came up"
    );
    assert_eq!(s2_connected[0]["name"], "s1");
    assert_eq!(s2_connected[0]["tunnel"], false);
    assert!(s2_connected[1]["last_contact_unix"].as_u64().unwrap() > 0);
    let page = get("/sensors".into()).await.text().await.unwrap();
    assert!(
        page.contains("data-sensor=\"s2\"") && page.contains("connected"),
        "{page}"
    );

    // Sensor 2's call PCAP through its tunnel = its local file.
    let c = &c2[0];
    let id = all["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["call_id"] == c.call_id.as_str())
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let r = get(format!("/calls/{id}/download/pcap")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let local = std::fs::read(d2.path().join(c.pcap.as_deref().unwrap())).unwrap();
    assert_eq!(r.bytes().await.unwrap().to_vec(), local);
    // The call page: its sensor and its SIP ladder from the central index.
    let page = get(format!("/calls/{id}")).await.text().await.unwrap();
    assert!(page.contains("id=\"call-sensor\">s2<"), "{page}");
    // Logged on the sensor, as the hub's user.
    let log = Index::open(&d2.path().join(INDEX_FILE))
        .unwrap()
        .access_log(10)
        .unwrap();
    assert!(
        log.iter()
            .any(|e| e.user == "hub:alice" && e.detail == "call.pcap"),
        "{log:?}"
    );
    // Sensor 1 has no tunnel: its files are "offline", its calls searchable.
    let id1 = all["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["sensor"] == "s1")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let r = get(format!("/calls/{id1}/download/pcap")).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.text().await.unwrap().contains("sensor offline"));

    // Sensor 2 uploads its call files to S3 (s3s-fs) and ships their
    // objects; then it stops (its tunnel closes) and the same call's PCAP
    // comes from S3, byte-identical to sensor 2's local file.
    voxtap_testkit::aws_env();
    let s3dir = tempfile::tempdir().unwrap();
    let (_s3, endpoint) = crate::s3::start_s3(&s3dir.path().join("s3"));
    let up = UploadConfig {
        enabled: true,
        endpoint,
        bucket: "fleet".into(),
        sensor: "s2".into(),
        path_style: true,
        ..Default::default()
    };
    upload_all(d2.path(), &up).await;
    ship_with(&certs, &pg, "s2", d2.path(), Some(up), 3).await;
    assert!(
        pg.count(&format!(
            "SELECT count(*) FROM voxtap.call_files WHERE call_id = '{}' AND name = 'call.pcap'",
            c.call_id.replace('\'', "''")
        )) == 1,
        "sensor 2's call.pcap object shipped"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    t.await.unwrap();
    wait_tunnel(&get, false).await;
    let r = get(format!("/calls/{id}/download/pcap")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().to_vec(), local);
    // Sensor 1 uploaded nothing: still offline.
    let r = get(format!("/calls/{id1}/download/pcap")).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    drop(pg);
}

/// Uploads every call folder of the import in `data` (queue in
/// `data/store`), keeping the local files to compare with.
async fn upload_all(data: &Path, cfg: &UploadConfig) {
    let (cfg, data) = (cfg.clone(), data.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let mut up = Uploader::new(&cfg, &data.join("store"), Some(&data), Some(&data)).unwrap();
        up.s3().create_bucket().unwrap();
        assert!(
            up.drain(&AtomicBool::new(false), Duration::from_secs(30))
                .unwrap()
        );
        assert!(up.status().uploads > 0);
    })
    .await
    .unwrap();
}

/// Waits until the hub's Sensors API says sensor 2's tunnel is `up`.
async fn wait_tunnel<F, Fut>(get: &F, up: bool)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = reqwest::Response>,
{
    for _ in 0..1000 {
        let v: serde_json::Value =
            serde_json::from_str(&get("/api/sensors".into()).await.text().await.unwrap()).unwrap();
        if v[1]["name"] == "s2" && v[1]["tunnel"] == up {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("sensor 2's tunnel never became {up}");
}

/// Sensor 1's credentials cannot read any row nor insert sensor 2's, nor
/// change them through the re-send function; a
/// login without a certificate, with one from another CA, or with sensor
/// 1's certificate as sensor 2 is refused.
#[tokio::test(flavor = "multi_thread")]
async fn sensors_are_confined_to_their_own_rows() {
    let certs = Certs::new();
    let pg = setup_central(&certs, "hub-rls").await;
    let d2 = data_dir_with(&corpus("generated/sipp-netns-udp-2calls.pcap"));
    ship(&certs, &pg, "s2", d2.path()).await;
    let s1 = certs
        .target(&pg, "vx_s1", Some(certs.cert("vx_s1")))
        .connect()
        .await
        .unwrap();
    let read = s1.query("SELECT * FROM voxtap.calls", &[]).await;
    assert!(
        db_msg(&read.unwrap_err()).contains("permission denied"),
        "a sensor reads nothing"
    );
    let s2_id: i16 =
        i16::try_from(pg.count("SELECT id FROM voxtap.sensors WHERE name = 's2'")).unwrap();
    // One of sensor 2's calls: (Call-ID, start) as the hub reads them.
    let s2_call: (String, std::time::SystemTime) = {
        let admin = PgTarget::parse(&pg.admin_url()).connect().await.unwrap();
        let r = admin
            .query_one("SELECT call_id, start_at FROM voxtap.calls LIMIT 1", &[])
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    s1.execute("SELECT voxtap.ensure_days(current_date, current_date)", &[])
        .await
        .unwrap();
    let insert = |sensor: Option<i16>| {
        let cols = "local_id, call_id, method, start_at, end_at, duration_ms, from_user, to_user, \
                    from_uri, to_uri, request_uri, ruri_user, state, sip_packets, rtp_packets, \
                    rtcp_packets, stream_count, ips, codecs, indexed_at";
        let vals = "1, 'forged@x', 'INVITE', now(), now(), 0, 'a', 'b', '', '', '', '', 'answered', \
                    0, 0, 0, 0, '{}', '{}', now()";
        match sensor {
            Some(s) => format!("INSERT INTO voxtap.calls (sensor, {cols}) VALUES ({s}, {vals})"),
            None => format!("INSERT INTO voxtap.calls ({cols}) VALUES ({vals})"),
        }
    };
    let forged = s1.execute(&insert(Some(s2_id)), &[]).await;
    assert!(
        db_msg(&forged.unwrap_err()).contains("row-level security"),
        "sensor 1 inserting sensor 2's row"
    );
    // Its own row, without naming itself, is fine.
    assert_eq!(s1.execute(&insert(None), &[]).await.unwrap(), 1);
    assert_eq!(
        pg.count("SELECT count(*) FROM voxtap.calls c JOIN voxtap.sensors s ON s.id = c.sensor WHERE call_id = 'forged@x' AND s.name = 's1'"),
        1
    );
    for s in [
        "UPDATE voxtap.calls SET state = 'x'",
        "DELETE FROM voxtap.calls",
    ] {
        assert!(s1.execute(s, &[]).await.is_err(), "{s}");
    }
    // The re-send path changes none of sensor 2's rows: a staged row with
    // sensor 2's call key and a newer version updates nothing, and other
    // tables are refused.
    s1.batch_execute(
        "CREATE TEMP TABLE stage_calls (call_id text, start_at timestamptz, state text, version bigint)",
    )
    .await
    .unwrap();
    let n = s1
        .execute(
            "INSERT INTO stage_calls SELECT call_id, start_at, 'forged', 99 \
             FROM (VALUES ($1::text, $2::timestamptz)) v(call_id, start_at)",
            &[&s2_call.0, &s2_call.1],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let updated: i64 = s1
        .query_one("SELECT voxtap.update_from_stage('calls')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(updated, 0);
    assert_eq!(
        pg.count("SELECT count(*) FROM voxtap.calls WHERE state = 'forged'"),
        0
    );
    let other = s1
        .query_one("SELECT voxtap.update_from_stage('sensors')", &[])
        .await;
    assert!(db_msg(&other.unwrap_err()).contains("not a table sensors update"));
    // No certificate; a rogue CA's; sensor 1's certificate as sensor 2.
    let rogue = certs.dir.path().join("rogue");
    for (role, cert) in [
        ("vx_s1", None),
        (
            "vx_s1",
            Some((rogue.join("vx_s1.crt"), rogue.join("vx_s1.key"))),
        ),
        ("vx_s2", Some(certs.cert("vx_s1"))),
    ] {
        let r = certs.target(&pg, role, cert.clone()).connect().await;
        assert!(r.is_err(), "{role} with {cert:?} was let in");
    }
}

/// The central index's calls of sensor `name`, and how many distinct call
/// keys they are (equal: nothing doubled).
fn central_calls(pg: &Pg, name: &str) -> (i64, i64) {
    let of = format!(
        "FROM voxtap.calls c JOIN voxtap.sensors s ON s.id = c.sensor WHERE s.name = '{name}'"
    );
    (
        pg.count(&format!("SELECT count(*) {of}")),
        pg.count(&format!(
            "SELECT count(DISTINCT (c.call_id, c.start_at)) {of}"
        )),
    )
}

/// PostgreSQL stopped for 30 s while the sensor's local index grows (two
/// more captures absorbed into it, as remote captures are): the shipper
/// thread keeps going alone, its status says it is disconnected with the
/// calls pending, and once PostgreSQL is back every call arrives once
/// (the central count equals the local index's, no key twice) with its
/// streams.
#[tokio::test(flavor = "multi_thread")]
async fn shipper_catches_up_after_an_outage() {
    const OUTAGE: Duration = Duration::from_secs(30);
    let certs = Certs::new();
    let mut pg = setup_central(&certs, "hub-outage").await;
    let d = data_dir_with(&corpus("generated/sipp-netns-tcp-2calls.pcap"));
    let more = [
        data_dir_with(&corpus("generated/sipp-loopback-3calls-rtpecho.pcap")),
        data_dir_with(&corpus("generated/baresip-pcma-hold-resume-dtmf-rtcp.pcap")),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let thread = voxtap_sensor::central::ship::spawn(
        ShipOptions {
            target: certs.target(&pg, "vx_s1", Some(certs.cert("vx_s1"))),
            sensor_id: "s1".into(),
            out_dir: d.path().to_path_buf(),
            store: None,
            upload: None,
            batch: 2,
            interval: Duration::from_millis(100),
        },
        stop.clone(),
    )
    .unwrap();
    let local = |d: &Path| local_calls(d).len() as i64;
    let arrived = |pg: &Pg, want: i64, limit: Duration| {
        voxtap_testkit::wait_until(limit, "the calls in the central index", || {
            (central_calls(pg, "s1").0 == want).then_some(())
        })
    };
    arrived(&pg, local(d.path()), Duration::from_secs(30));

    pg.stop();
    let t0 = std::time::Instant::now();
    let mut idx = Index::open(&d.path().join(INDEX_FILE)).unwrap();
    for (i, m) in more.iter().enumerate() {
        let n = idx
            .absorb(&m.path().join(INDEX_FILE), &format!("more{i}"))
            .unwrap();
        assert!(n > 0);
    }
    drop(idx);
    let total = local(d.path());
    let before = central_calls_offline(d.path());
    std::thread::sleep(OUTAGE.saturating_sub(t0.elapsed()));
    let status = voxtap_sensor::status::read(d.path(), "central").expect("status/central.json");
    assert_eq!(status["connected"], false, "{status}");
    assert!(status["last_error"].is_string(), "{status}");
    assert_eq!(status["pending_calls"], total - before, "{status}");

    pg.resume();
    // The shipper's backoff reaches 16 s after a 30 s outage.
    arrived(&pg, total, Duration::from_secs(90));
    assert_eq!(central_calls(&pg, "s1"), (total, total), "every call once");
    assert_eq!(
        pg.count("SELECT count(*) FROM voxtap.streams"),
        pg.count("SELECT sum(stream_count) FROM voxtap.calls")
    );
    // Another round later adds nothing.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(central_calls(&pg, "s1").0, total);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    thread.join().unwrap().unwrap();
    let status = voxtap_sensor::status::read(d.path(), "central").unwrap();
    assert_eq!(status["connected"], true, "{status}");
    assert_eq!(status["pending_calls"], 0, "{status}");
}

/// The shipped calls by the sensor's own high-water mark (the calls up to
/// it are in the central index).
fn central_calls_offline(data: &Path) -> i64 {
    let c = rusqlite::Connection::open(data.join(INDEX_FILE)).unwrap();
    c.query_row(
        "SELECT count(*) FROM calls WHERE id <= (SELECT max(last_call) FROM ship_marks)",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

/// Sensors shipping at once ask for the same new days: each partition is
/// made once and every caller succeeds (the advisory lock alone left the
/// later callers' catalog view stale: "relation already exists").
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_sensors_make_each_day_once() {
    let certs = Certs::new();
    let pg = setup_central(&certs, "hub-days").await;
    let parts = "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relkind = 'r'";
    let before = pg.count(parts);
    let mut tasks = Vec::new();
    for role in ["vx_s1", "vx_s2", "vx_s1", "vx_s2"] {
        let client = certs
            .target(&pg, role, Some(certs.cert(role)))
            .connect()
            .await
            .unwrap();
        tasks.push(tokio::spawn(async move {
            client
                .query_one(
                    "SELECT voxtap.ensure_days('2030-01-01'::date, '2030-03-01'::date)",
                    &[],
                )
                .await
                .map(|r| r.get::<_, i32>(0))
                .map_err(|e| db_msg(&e))
        }));
    }
    let mut made = 0;
    for t in tasks {
        made += t.await.unwrap().unwrap();
    }
    let tables = pg.count(
        "SELECT count(*) FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'voxtap'",
    );
    // 60 days (Jan 1 to Mar 1 2030) of every partitioned table, once.
    let want = 60 * tables;
    assert_eq!(pg.count(parts) - before, want);
    assert_eq!(i64::from(made), want);
}

/// Making a day's partitions while a shipment is between its COPY into
/// `calls` and its trigger's insert into `call_ips` (here: the same locks,
/// taken by hand): the partitions wait for the shipment, which goes on.
/// With the parents locked in name order (`call_ips` before `calls`) the
/// maker held `call_ips` while waiting for `calls`, and PostgreSQL aborted
/// one of the two as a deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn making_partitions_waits_for_a_shipment_without_deadlock() {
    let certs = Certs::new();
    let pg = setup_central(&certs, "hub-lockorder").await;
    let shipment = PgTarget::parse(&pg.admin_url()).connect().await.unwrap();
    let maker = PgTarget::parse(&pg.admin_url()).connect().await.unwrap();
    let maker_pid: i32 = maker
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    shipment
        .batch_execute("BEGIN; LOCK TABLE ONLY voxtap.calls IN ROW EXCLUSIVE MODE")
        .await
        .unwrap();
    let making = tokio::spawn(async move {
        maker
            .query_one(
                "SELECT voxtap.ensure_days('2031-06-01'::date, '2031-06-01'::date)",
                &[],
            )
            .await
            .map(|r| r.get::<_, i32>(0))
            .map_err(|e| db_msg(&e))
    });
    // The maker is waiting for a lock (the shipment's on calls).
    let waiting = format!("SELECT count(*) FROM pg_locks WHERE pid = {maker_pid} AND NOT granted");
    voxtap_testkit::wait_until(
        Duration::from_secs(20),
        "the maker waiting for a lock",
        || (pg.count(&waiting) > 0).then_some(()),
    );
    // The shipment's trigger now needs call_ips: it must not wait for the
    // maker (a statement timeout turns a wait into a failure at once, well
    // before PostgreSQL's 1 s deadlock check would pick a victim).
    let r = shipment
        .batch_execute(
            "SET LOCAL lock_timeout = '500ms'; \
             LOCK TABLE ONLY voxtap.call_ips IN ROW EXCLUSIVE MODE; COMMIT",
        )
        .await;
    assert!(
        r.is_ok(),
        "the shipment waited for the partition maker: {r:?}"
    );
    let made = making.await.unwrap().unwrap();
    let tables = pg.count(
        "SELECT count(*) FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'voxtap'",
    );
    assert_eq!(i64::from(made), tables);
}

/// A central index of schema version 1 with calls in it: migrating fills
/// `call_ips` from their `ips` (migration 2); calls inserted after get
/// their rows from the trigger, once even when inserted twice; the hub's IP
/// search finds them all.
#[tokio::test(flavor = "multi_thread")]
async fn migration_fills_call_ips_from_existing_calls() {
    let certs = Certs::new();
    let pg = Pg::start("hub-migrate", Some(&certs.tls()), true);
    let mut admin = PgTarget::parse(&pg.admin_url()).connect().await.unwrap();
    admin
        .batch_execute(
            "CREATE SCHEMA voxtap; CREATE TABLE voxtap.schema_version (version integer NOT NULL); \
             INSERT INTO voxtap.schema_version VALUES (1);",
        )
        .await
        .unwrap();
    admin.batch_execute(schema::MIGRATIONS[0]).await.unwrap();
    schema::add_sensor(&mut admin, "s1").await.unwrap();
    schema::add_hub(&mut admin, "vx_hub").await.unwrap();
    pg.psql(
        voxtap_testkit::pg::DB,
        "SELECT voxtap.ensure_days((now() AT TIME ZONE 'UTC')::date - 1, (now() AT TIME ZONE 'UTC')::date + 1)",
    );
    // Calls i in first..=last: addresses 10.0.0.i and 192.0.2.1 (twice in
    // the array: one row per address and call all the same).
    let insert = |first: u32, last: u32| {
        format!(
            "INSERT INTO voxtap.calls (sensor, local_id, call_id, method, start_at, end_at, duration_ms, \
             from_user, to_user, from_uri, to_uri, request_uri, ruri_user, state, sip_packets, \
             rtp_packets, rtcp_packets, stream_count, ips, codecs, indexed_at) \
             SELECT (SELECT id FROM voxtap.sensors WHERE name = 's1'), i, 'm-' || i, 'INVITE', \
               date_trunc('hour', now()) - i * interval '1 minute', date_trunc('hour', now()), 0, \
               'a', 'b', '', '', '', '', 'answered', 2, 0, 0, 0, \
               ARRAY[('10.0.0.' || i)::inet, '192.0.2.1'::inet, '192.0.2.1'::inet], '{{}}', now() \
             FROM generate_series({first}, {last}) i ON CONFLICT DO NOTHING"
        )
    };
    pg.psql(voxtap_testkit::pg::DB, &insert(1, 20));
    let n = schema::MIGRATIONS.len() as i32;
    assert_eq!(schema::migrate(&mut admin).await.unwrap(), (1, n));
    let rows = "SELECT count(*) FROM voxtap.call_ips";
    assert_eq!(pg.count(rows), 40);
    // Migration 4 rolled the calls already there up (fleet dashboards).
    let attempts = "SELECT sum(attempts) FROM voxtap.rollup_minute";
    assert_eq!(pg.count(attempts), 20);
    // Every row is an address of its call.
    assert_eq!(
        pg.count(
            "SELECT count(*) FROM voxtap.call_ips i JOIN voxtap.calls c \
             ON c.id = i.id AND c.start_at = i.call_start AND i.ip = ANY (c.ips)"
        ),
        40
    );
    pg.psql(voxtap_testkit::pg::DB, &insert(15, 25));
    pg.psql(voxtap_testkit::pg::DB, &insert(15, 25));
    assert_eq!(pg.count("SELECT count(*) FROM voxtap.calls"), 25);
    assert_eq!(pg.count(rows), 50);
    assert_eq!(pg.count(attempts), 25, "each call rolled up once");

    let hub = voxtap_web::hub::Hub::new(&hub_central(&certs, &pg, &[])).unwrap();
    let search = |ip: &str| {
        let q = CallQuery {
            ip: Some(ip.parse().unwrap()),
            limit: 100,
            descending: true,
            ..Default::default()
        };
        let hub = &hub;
        async move {
            hub.search(&q, &Default::default())
                .await
                .unwrap_or_else(|e| panic!("{}", e.message()))
        }
    };
    let busy = search("192.0.2.1").await;
    assert_eq!(busy.total, 25);
    let ids: Vec<&str> = busy.rows.iter().map(|r| r.call_id.as_str()).collect();
    // Newest first: m-1 started a minute before the hour, m-25 25 minutes.
    let want: Vec<String> = (1..=25).map(|i| format!("m-{i}")).collect();
    assert_eq!(ids, want);
    assert!(busy.rows.iter().all(|r| r.sensor.as_deref() == Some("s1")));
    let one = search("10.0.0.17").await;
    assert_eq!(one.total, 1);
    assert_eq!(one.rows[0].call_id, "m-17");
    assert_eq!(search("10.0.0.26").await.total, 0);
}

/// When the test's pings start (2023-11-14).
const PING_T0: u64 = 1_700_000_000_000_000_000;

/// OPTIONS pings `n` from 10.0.0.1 to 10.0.0.2, one each 2 s; the second
/// unanswered.
fn ping(sig: &mut voxtap_engine::signalling::Signalling, n: std::ops::Range<u32>) {
    let (a, b) = (
        "10.0.0.1:5060".parse().unwrap(),
        "10.0.0.2:5060".parse().unwrap(),
    );
    for i in n {
        let req = format!(
            "OPTIONS sip:b SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK{i}\r\nFrom: <sip:a@a>;tag=1\r\nTo: <sip:b@b>\r\nCall-ID: p{i}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        let t = PING_T0 + u64::from(i) * 2_000_000_000;
        sig.on_sip(t, a, b, &voxtap_proto::sip::parse(req.as_bytes()).unwrap());
        if i != 1 {
            let resp = req.replacen("OPTIONS sip:b SIP/2.0", "SIP/2.0 200 OK", 1);
            sig.on_sip(
                t + 1_000_000,
                b,
                a,
                &voxtap_proto::sip::parse(resp.as_bytes()).unwrap(),
            );
        }
    }
}

/// Shipper `sensor` of `data` (a new one each time: it remembers no
/// registration it sent); drains and returns its status.
async fn drain_status(
    certs: &Certs,
    pg: &Pg,
    sensor: &str,
    data: &Path,
) -> voxtap_sensor::central::ship::ShipStatus {
    let role = schema::sensor_role(sensor);
    let mut s = Shipper::open(ShipOptions {
        target: certs.target(pg, &role, Some(certs.cert(&role))),
        sensor_id: sensor.into(),
        out_dir: data.to_path_buf(),
        store: None,
        upload: None,
        batch: 3,
        interval: Duration::from_millis(100),
    })
    .unwrap();
    s.drain().await.unwrap();
    s.status().clone()
}

/// Whole rows of a central table as text, sorted: what changed between two
/// looks, whatever the columns.
fn central_rows(pg: &Pg, table: &str) -> Vec<String> {
    let out = pg.psql(
        voxtap_testkit::pg::DB,
        &format!("SELECT t::text FROM voxtap.{table} t ORDER BY 1"),
    );
    out.lines().map(str::to_string).collect()
}

/// A call changed on its sensor after it was shipped (the media step's
/// MOS, set with the index's own `set_call_mos`) arrives changed, once: the
/// same single row with the new MOS and a newer version, nothing else
/// rewritten; shipping again changes nothing, and re-shipping from a lost
/// mark does not bring the old value back. The registrations of the
/// corpus's REGISTER capture arrive as the local index has them; OPTIONS
/// pings (the signalling engine's, no corpus capture has them) arrive and
/// their pair's row is updated in place by the next snapshot; the hub's
/// Registrations page and API list them with their sensor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_calls_and_registrations_are_sent_again_once() {
    let certs = Certs::new();
    let pg = setup_central(&certs, "hub-changes").await;
    let d = tempfile::tempdir().unwrap();
    voxtap_engine::import::run_import(&voxtap_engine::import::ImportOptions {
        files: vec![
            corpus("ndpi/sip_hello.pcapng"),
            corpus("generated/sipp-netns-udp-2calls.pcap"),
        ],
        out: d.path().to_path_buf(),
        pipeline: Default::default(),
        call_files: true,
        media: None,
    })
    .expect("import");
    let local = local_calls(d.path());
    assert!(local.len() >= 2);
    let first = drain_status(&certs, &pg, "s1", d.path()).await;
    assert_eq!(first.shipped_calls, local.len() as u64);
    assert_eq!(first.resent_calls, 0);
    let lite = rusqlite::Connection::open(d.path().join(INDEX_FILE)).unwrap();
    let local_count = |t: &str| -> i64 {
        lite.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
            .unwrap()
    };
    let regs = local_count("registrations");
    assert!(regs > 0, "the capture has REGISTER");
    assert_eq!(pg.count("SELECT count(*) FROM voxtap.registrations"), regs);
    assert_eq!(first.shipped_noncall, regs as u64);
    let local_regs = Index::open(&d.path().join(INDEX_FILE))
        .unwrap()
        .registrations(&voxtap_engine::index::RegistrationQuery {
            limit: 1000,
            ..Default::default()
        })
        .unwrap();

    // The media step's MOS for a call already shipped.
    let c = &local[0];
    let id: i64 = lite
        .query_row(
            "SELECT id FROM calls WHERE call_id = ?1",
            [&c.call_id],
            |r| r.get(0),
        )
        .unwrap();
    Index::open(&d.path().join(INDEX_FILE))
        .unwrap()
        .set_call_mos(id, Some(1.25))
        .unwrap();
    let before: Vec<String> = ["streams", "call_sip", "legs"]
        .iter()
        .flat_map(|t| central_rows(&pg, t))
        .collect();
    let again = drain_status(&certs, &pg, "s1", d.path()).await;
    assert_eq!((again.shipped_calls, again.resent_calls), (0, 1));
    // The call's row, and no registration or ping (sent again by the new
    // shipper, unchanged).
    assert_eq!(again.updated_rows, 1, "{again:?}");
    let cid = c.call_id.replace('\'', "''");
    let row = |col: &str| {
        pg.psql(
            voxtap_testkit::pg::DB,
            &format!("SELECT {col} FROM voxtap.calls WHERE call_id = '{cid}'"),
        )
        .trim()
        .to_string()
    };
    assert_eq!(
        pg.count(&format!(
            "SELECT count(*) FROM voxtap.calls WHERE call_id = '{cid}'"
        )),
        1
    );
    assert_eq!(row("mos"), "1.25");
    assert!(row("version").parse::<i64>().unwrap() > 0);
    let after: Vec<String> = ["streams", "call_sip", "legs"]
        .iter()
        .flat_map(|t| central_rows(&pg, t))
        .collect();
    assert_eq!(before, after, "only the call's row changed");
    assert_eq!(
        pg.count("SELECT count(*) FROM voxtap.calls"),
        local.len() as i64
    );
    // Nothing changed since: nothing sent, nothing rewritten.
    let idle = drain_status(&certs, &pg, "s1", d.path()).await;
    assert_eq!((idle.resent_calls, idle.updated_rows), (0, 0), "{idle:?}");
    // The mark lost: every call is sent as first shipped (version 0), which
    // neither doubles a row nor brings the old MOS back.
    lite.execute("DELETE FROM ship_marks", []).unwrap();
    drain_status(&certs, &pg, "s1", d.path()).await;
    assert_eq!(
        pg.count("SELECT count(*) FROM voxtap.calls"),
        local.len() as i64
    );
    assert_eq!(row("mos"), "1.25");

    // OPTIONS pings, in two snapshots of the sensor's signalling tables:
    // the pair's row is sent, then updated in place.
    let mut sig = voxtap_engine::signalling::Signalling::new(Default::default());
    ping(&mut sig, 0..2);
    Index::open(&d.path().join(INDEX_FILE))
        .unwrap()
        .record_signalling(&sig.snapshot())
        .unwrap();
    let snap = drain_status(&certs, &pg, "s1", d.path()).await;
    assert_eq!(snap.shipped_noncall, 1, "{snap:?}");
    assert_eq!(pg.count("SELECT pings FROM voxtap.pings"), 2);
    ping(&mut sig, 2..4);
    sig.tick(PING_T0 + 100_000_000_000);
    let mut idx = Index::open(&d.path().join(INDEX_FILE)).unwrap();
    idx.record_signalling(&sig.snapshot()).unwrap();
    let local_pings = idx.pings(10).unwrap();
    assert_eq!((local_pings[0].pings, local_pings[0].unanswered), (4, 1));
    let snap = drain_status(&certs, &pg, "s1", d.path()).await;
    assert_eq!(snap.updated_rows, 1, "{snap:?}");
    assert_eq!(pg.count("SELECT count(*) FROM voxtap.pings"), 1);
    assert_eq!(pg.count("SELECT pings FROM voxtap.pings"), 4);
    assert_eq!(pg.count("SELECT unanswered FROM voxtap.pings"), 1);
    // The central index keeps the bindings the sensor's latest snapshot
    // no longer has.
    assert_eq!(pg.count("SELECT count(*) FROM voxtap.registrations"), regs);

    // The hub's Registrations page: every binding and peer pair, with its
    // sensor.
    let (_srv, _hub_dir, base) = start_hub(&certs, &pg, &[], config()).await;
    let cookie = login(&base, USER, PASSWORD).await.unwrap();
    let get = |path: &str| {
        let (c, url, cookie) = (client(), format!("{base}{path}"), cookie.clone());
        async move {
            let r = c.get(url).header("cookie", cookie).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.text().await.unwrap()
        }
    };
    let api: serde_json::Value = serde_json::from_str(&get("/api/registrations").await).unwrap();
    let hub_regs = api["registrations"].as_array().unwrap();
    assert_eq!(hub_regs.len(), local_regs.len());
    for r in &local_regs {
        let h = hub_regs
            .iter()
            .find(|h| h["aor"] == r.aor.as_str() && h["contact"] == r.contact.as_str())
            .unwrap_or_else(|| panic!("{} not on the hub: {api}", r.aor));
        assert_eq!(h["sensor"], "s1");
        assert_eq!(h["requests"], r.requests);
        assert_eq!(h["refreshes"], r.refreshes);
        assert_eq!(h["challenges"], r.challenges);
        assert_eq!(h["outcome"], r.outcome.as_str());
    }
    let p = &api["pings"];
    assert_eq!(p.as_array().unwrap().len(), 1, "{api}");
    assert_eq!(p[0]["sensor"], "s1");
    for (k, v) in [("src", &local_pings[0].src), ("dst", &local_pings[0].dst)] {
        assert_eq!(p[0][k], v.as_str());
    }
    assert_eq!(p[0]["responses"], local_pings[0].responses);
    assert_eq!(p[0]["loss_pct"], local_pings[0].loss_pct);
    let page = get("/registrations?q=2684*").await;
    assert!(page.contains("<th>Sensor</th>"), "{page}");
    assert!(
        page.contains("<td class=\"sensor\">s1</td>") && page.contains("26841945"),
        "{page}"
    );
    let none = get("/registrations?q=10.99.99.99").await;
    assert!(none.contains("id=\"no-registrations\""), "{none}");
}

/// What the shipper sends after a call was shipped, and what it keeps
/// while it cannot ship:
/// * a fax call's UDPTL streams arrive with the call (central
///   `call_fax`) and the hub's call detail shows them as the sensor's own
///   index does (the rows are put into the local index's `fax` and
///   `fax_streams` as the index records them; detecting fax is the e2e
///   test `t38_reinvite_turns_the_media_into_fax_streams`'s);
/// * a call that changes 50 times while no shipper runs leaves one
///   `ship_changes` row, and the next round sends its latest state;
/// * a shipped call's new address (a local `call_ips` row) reaches the
///   central `call_ips`: the hub's IP search finds the call by it.
#[tokio::test(flavor = "multi_thread")]
async fn fax_streams_new_addresses_and_coalesced_changes_are_shipped() {
    let certs = Certs::new();
    let pg = setup_central(&certs, "hub-resend").await;
    // Two calls, and RTP no SIP claimed (SIPp's g711a.pcap on its own).
    let d = tempfile::tempdir().unwrap();
    voxtap_engine::import::run_import(&voxtap_engine::import::ImportOptions {
        files: vec![
            corpus("generated/sipp-netns-udp-2calls.pcap"),
            corpus("sipp/g711a.pcap"),
        ],
        out: d.path().to_path_buf(),
        pipeline: Default::default(),
        call_files: false,
        media: None,
    })
    .expect("import");
    let path = d.path().join(INDEX_FILE);
    let lite = rusqlite::Connection::open(&path).unwrap();
    let ids: Vec<i64> = {
        let mut st = lite.prepare("SELECT id FROM calls ORDER BY id").unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(ids.len(), 2);
    let (fax_call, moved_call) = (ids[0], ids[1]);
    lite.execute_batch(&format!(
        "INSERT INTO fax (call, turned_ns) SELECT id, start_ns + 2250000000 FROM calls WHERE id = {fax_call};
         INSERT INTO fax_streams (call, src, dst, first_ns, last_ns, packets, expected, lost, late, bytes)
           SELECT id, '10.30.0.1:4000', '10.30.0.2:5000', start_ns + 2300000000, start_ns + 11270000000,
                  300, 301, 1, 2, 8700 FROM calls WHERE id = {fax_call};
         INSERT INTO fax_streams (call, src, dst, first_ns, last_ns, packets, expected, lost, late, bytes)
           SELECT id, '10.30.0.2:5000', '10.30.0.1:4000', start_ns + 2300500000, start_ns + 11210500000,
                  100, 100, 0, 0, 1000 FROM calls WHERE id = {fax_call};"
    ))
    .unwrap();
    assert_eq!(ship(&certs, &pg, "s1", d.path()).await, 2);
    assert_eq!(pg.count("SELECT count(*) FROM voxtap.call_fax"), 2);
    let local = Index::open(&path).unwrap();
    let want = local.call_detail(fax_call).unwrap().unwrap();
    assert_eq!(want.fax.len(), 2);
    let hub = voxtap_web::hub::Hub::new(&hub_central(&certs, &pg, &[])).unwrap();
    let central_id = |call_id: &str| {
        pg.count(&format!(
            "SELECT id FROM voxtap.calls WHERE call_id = '{}'",
            call_id.replace('\'', "''")
        ))
    };
    let got = hub
        .call_detail(central_id(&want.call.call_id))
        .await
        .unwrap_or_else(|e| panic!("{}", e.message()))
        .unwrap();
    assert_eq!(got.fax, want.fax);
    assert_eq!(got.fax_ns, want.fax_ns);

    // The media-only streams, on the hub's page as the sensor lists them.
    let media = local.media_streams(100, 0).unwrap();
    assert!(!media.is_empty(), "g711a.pcap's RTP has no SIP");
    let central = hub
        .media_streams(100, 0)
        .await
        .unwrap_or_else(|e| panic!("{}", e.message()));
    assert!(central.iter().all(|m| m.sensor.as_deref() == Some("s1")));
    let rows: Vec<_> = central.into_iter().map(|m| m.row).collect();
    // The central figures are `real`: the local ones through f32.
    let f = |x: f64| f64::from(x as f32);
    let want: Vec<_> = media
        .iter()
        .cloned()
        .map(|mut m| {
            (m.jitter_ms, m.max_jitter_ms, m.max_delta_ms) =
                (f(m.jitter_ms), f(m.max_jitter_ms), f(m.max_delta_ms));
            m.mos = m.mos.map(f);
            m
        })
        .collect();
    assert_eq!(rows, want);
    let (_srv, _hub_dir, base) = start_hub(&certs, &pg, &[], config()).await;
    let cookie = login(&base, USER, PASSWORD).await.unwrap();
    let page = get_page(&base, &cookie, "/media").await;
    assert!(page.contains("<th>Sensor</th>"), "{page}");
    for m in &media {
        assert!(page.contains(&format!("0x{:08X}", m.ssrc)), "{page}");
    }

    // No shipper runs: the media step sets each call's MOS 50 times.
    let mut idx = Index::open(&path).unwrap();
    for i in 0..50 {
        for id in &ids {
            idx.set_call_mos(*id, Some(1.0 + f64::from(i) / 20.0))
                .unwrap();
        }
    }
    let pending: i64 = lite
        .query_row("SELECT count(*) FROM ship_changes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(pending, 2, "one row per changed call");
    // An address the sensor learnt after shipping the call.
    lite.execute(
        "INSERT INTO call_ips (call, ip) VALUES (?1, '198.51.100.7')",
        [moved_call],
    )
    .unwrap();
    let moved = local.call(moved_call).unwrap().unwrap().call_id;
    let status = drain_status(&certs, &pg, "s1", d.path()).await;
    assert_eq!(status.resent_calls, 2, "{status:?}");
    assert_eq!(
        pg.count("SELECT count(*) FROM voxtap.calls WHERE mos = 3.45::real"),
        2,
        "the latest MOS"
    );
    let q = CallQuery {
        ip: Some("198.51.100.7".parse().unwrap()),
        limit: 10,
        descending: true,
        ..Default::default()
    };
    let page = hub
        .search(&q, &Default::default())
        .await
        .unwrap_or_else(|e| panic!("{}", e.message()));
    let found: Vec<&str> = page.rows.iter().map(|r| r.call_id.as_str()).collect();
    assert_eq!(found, [moved.as_str()]);
    assert_eq!(page.rows[0].sensor.as_deref(), Some("s1"));
    // Every central address row is one of its call's addresses, once.
    assert_eq!(
        pg.count(
            "SELECT count(*) FROM voxtap.call_ips i JOIN voxtap.calls c \
             ON c.id = i.id AND c.start_at = i.call_start AND i.ip = ANY (c.ips)"
        ),
        pg.count("SELECT count(*) FROM (SELECT DISTINCT id, unnest(ips) FROM voxtap.calls) x")
    );
    assert_eq!(
        pg.count("SELECT count(*) FROM voxtap.call_ips"),
        pg.count("SELECT count(*) FROM (SELECT DISTINCT id, unnest(ips) FROM voxtap.calls) x")
    );
}
