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
use voxtap_testkit::pg::{Pg, PgTls};
use voxtap_web::config::{CentralConfig, TunnelSensor};

const SECRET2: &str = "sensor-2-shared-secret";

/// The fleet CA and every certificate of the test.
struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    fn new() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("ca");
        ca::init(&c, "test fleet CA", 30).unwrap();
        let out = dir.path().join("certs");
        ca::issue(&c, "postgres", &["127.0.0.1".into()], 30, &out).unwrap();
        for role in ["vx_s1", "vx_s2", "vx_hub"] {
            ca::issue(&c, role, &[], 30, &out).unwrap();
        }
        // A certificate for vx_s1 from a CA the server does not trust.
        let rogue = dir.path().join("rogue");
        ca::init(&rogue, "rogue CA", 30).unwrap();
        ca::issue(&rogue, "vx_s1", &[], 30, &rogue).unwrap();
        Certs { dir }
    }
    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca/ca.crt")
    }
    fn cert(&self, name: &str) -> (PathBuf, PathBuf) {
        let d = self.dir.path().join("certs");
        (d.join(format!("{name}.crt")), d.join(format!("{name}.key")))
    }
    fn tls(&self) -> PgTls {
        let (cert, key) = self.cert("postgres");
        PgTls {
            cert,
            key,
            ca: self.ca(),
        }
    }
    /// `role` over TCP with the certificate `cert_of` (a role's, or none).
    fn target(&self, pg: &Pg, role: &str, cert: Option<(PathBuf, PathBuf)>) -> PgTarget {
        let (c, k) = cert.unzip();
        PgTarget::parse(&pg.tcp_url(role)).with_files(c.as_deref(), k.as_deref(), Some(&self.ca()))
    }
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

async fn ship(certs: &Certs, pg: &Pg, sensor: &str, data: &Path) -> u64 {
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

async fn setup_central(certs: &Certs) -> Pg {
    let pg = Pg::start("hubweb", Some(&certs.tls()), true);
    let mut admin = PgTarget::parse(&pg.admin_url()).connect().await.unwrap();
    assert_eq!(schema::migrate(&mut admin).await.unwrap().1, 1);
    // Again: nothing to do.
    assert_eq!(schema::migrate(&mut admin).await.unwrap(), (1, 1));
    for s in ["s1", "s2"] {
        schema::add_sensor(&mut admin, s).await.unwrap();
    }
    schema::add_hub(&mut admin, "vx_hub").await.unwrap();
    pg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hub_searches_every_sensor_and_fetches_through_the_tunnel() {
    let certs = Certs::new();
    let pg = setup_central(&certs).await;
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

    let (cert, key) = certs.cert("vx_hub");
    let mut cfg = config();
    cfg.central = Some(CentralConfig {
        url: pg.tcp_url("vx_hub"),
        client_cert: Some(cert),
        client_key: Some(key),
        ca: Some(certs.ca()),
        sensors: vec![TunnelSensor {
            name: "s2".into(),
            secret: Some(SECRET2.into()),
            secret_file: None,
        }],
        ..Default::default()
    });
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
    let stop = Arc::new(AtomicBool::new(false));
    let t = tokio::spawn(tunnel::run(
        TunnelOptions {
            hub_url: format!("ws://{}", srv.addr),
            ca: None,
            sensor_id: "s2".into(),
            secret: SECRET2.as_bytes().to_vec(),
            data: d2.path().to_path_buf(),
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
    let all: serde_json::Value = get("/api/calls?per_page=500".into()).await.text().await.map(|t| serde_json::from_str(&t).unwrap()).unwrap();
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
    // The sensor filter, the list's column, the Sensors page.
    let only2: serde_json::Value = get("/api/calls?sensor=s2".into()).await.text().await.map(|t| serde_json::from_str(&t).unwrap()).unwrap();
    assert_eq!(only2["total"], c2.len());
    let html = get("/calls".into()).await.text().await.unwrap();
    assert!(html.contains("<th>Sensor</th>"), "{html}");
    let mut s2_connected = serde_json::Value::Null;
    for _ in 0..1000 {
        let v: serde_json::Value = get("/api/sensors".into()).await.text().await.map(|t| serde_json::from_str(&t).unwrap()).unwrap();
        if v[1]["tunnel"] == true {
            s2_connected = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s2_connected[1]["name"], "s2", "sensor 2's tunnel never came up");
    assert_eq!(s2_connected[0]["name"], "s1");
    assert_eq!(s2_connected[0]["tunnel"], false);
    assert!(s2_connected[1]["last_contact_unix"].as_u64().unwrap() > 0);
    let page = get("/sensors".into()).await.text().await.unwrap();
    assert!(page.contains("data-sensor=\"s2\"") && page.contains("connected"), "{page}");

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
    let log = Index::open(&d2.path().join(INDEX_FILE)).unwrap().access_log(10).unwrap();
    assert!(log.iter().any(|e| e.user == "hub:alice" && e.detail == "call.pcap"), "{log:?}");
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
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = t.await;
    drop(pg);
}

/// Sensor 1's credentials cannot read any row nor insert sensor 2's; a
/// login without a certificate, with one from another CA, or with sensor
/// 1's certificate as sensor 2 is refused.
#[tokio::test(flavor = "multi_thread")]
async fn sensors_are_confined_to_their_own_rows() {
    let certs = Certs::new();
    let pg = setup_central(&certs).await;
    let d2 = data_dir_with(&corpus("generated/sipp-netns-udp-2calls.pcap"));
    ship(&certs, &pg, "s2", d2.path()).await;
    let s1 = certs
        .target(&pg, "vx_s1", Some(certs.cert("vx_s1")))
        .connect()
        .await
        .unwrap();
    let read = s1.query("SELECT * FROM voxtap.calls", &[]).await;
    assert!(
        read.unwrap_err().to_string().contains("permission denied"),
        "a sensor reads nothing"
    );
    let s2_id: i16 = i16::try_from(pg.count("SELECT id FROM voxtap.sensors WHERE name = 's2'")).unwrap();
    s1.execute(
        "SELECT voxtap.ensure_days(current_date, current_date)",
        &[],
    )
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
        forged.unwrap_err().to_string().contains("row-level security"),
        "sensor 1 inserting sensor 2's row"
    );
    // Its own row, without naming itself, is fine.
    assert_eq!(s1.execute(&insert(None), &[]).await.unwrap(), 1);
    assert_eq!(
        pg.count("SELECT count(*) FROM voxtap.calls c JOIN voxtap.sensors s ON s.id = c.sensor WHERE call_id = 'forged@x' AND s.name = 's1'"),
        1
    );
    for s in ["UPDATE voxtap.calls SET state = 'x'", "DELETE FROM voxtap.calls"] {
        assert!(s1.execute(s, &[]).await.is_err(), "{s}");
    }
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
