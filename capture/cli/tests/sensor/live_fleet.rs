//! A live sensor in the fleet: `voxtap run` in the namespace lab with
//! `[central]` ships the SIPp calls it captures through XDP to a central
//! PostgreSQL 15 (voxtap_testkit::pg, running in the sensor's namespace so
//! the sensor reaches it at 127.0.0.1, TLS with the sensor's client
//! certificate); the hub's search (`voxtap_web::hub::Hub`, over the
//! server's unix socket as the hub's role) returns exactly the calls of the
//! sensor's local index, with its sensor id. Then PostgreSQL is stopped for
//! 30 s while more calls are captured, and after the restart every call
//! arrives once.
//!
//! Then the fleet of the issue's test: two more sensors (`voxtap import
//! --central` of two corpus captures, as processes) and one running hub
//! (`voxtap_web::start`): the hub's search by number, by Call-ID and by
//! time returns the calls of all three with their sensor; a call held only
//! on sensor 2 downloads through its tunnel (`voxtap central attach`)
//! byte-identical to its local file, and again from S3 (s3s-fs, `voxtap
//! upload`) once sensor 2 is stopped.
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
    ca::issue(&c, "vx_hub", &[], 2, &certs).unwrap();
    let tls = PgTls {
        cert: certs.join("postgres.crt"),
        key: certs.join("postgres.key"),
        ca: c.join("ca.crt"),
    };
    let pg = Pg::start_in("live-fleet", Some(&tls), true, Some(&lab.ns('s')));
    rt.block_on(async {
        let mut admin = PgTarget::parse(&pg.admin_url()).connect().await.unwrap();
        schema::migrate(&mut admin).await.unwrap();
        for s in [SENSOR, "s2", "s3"] {
            schema::add_sensor(&mut admin, s).await.unwrap();
        }
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
    let t0 = Instant::now();
    fleet::three_sensors_one_hub(&pg, &dir, &out, &rt);
    eprintln!("three sensors, one hub: {:?}", t0.elapsed());
    drop(pg);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The issue's fleet test, on the live sensor's central index.
mod fleet {
    use super::*;

    use std::net::SocketAddr;
    use std::process::Command;

    use crate::s3::S3Server;
    use voxtap_web::config::TunnelSensor;

    const SECRET2: &str = "sensor-2-tunnel-secret";

    /// A call of a sensor's local index.
    #[derive(Debug)]
    struct Local {
        sensor: &'static str,
        call_id: String,
        start_ns: u64,
        from_user: String,
        pcap: Option<String>,
    }

    fn local_rows(sensor: &'static str, out: &Path) -> Vec<Local> {
        let db = rusqlite::Connection::open_with_flags(
            out.join(INDEX_FILE),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let mut st = db
            .prepare("SELECT call_id, start_ns, from_user, pcap FROM calls ORDER BY id")
            .unwrap();
        st.query_map([], |r| {
            Ok(Local {
                sensor,
                call_id: r.get(0)?,
                start_ns: r.get::<_, i64>(1)? as u64,
                from_user: r.get(2)?,
                pcap: r.get(3)?,
            })
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    /// `role` over the server's unix socket (local logins are trusted; the
    /// live sensor's TLS login is the one tested above).
    fn socket_url(pg: &Pg, role: &str) -> String {
        format!(
            "host={} port={} user={role} dbname={DB}",
            pg.socket_dir().display(),
            pg.port
        )
    }

    fn run_ok(c: &mut Command) {
        let o = c.output().unwrap();
        assert!(
            o.status.success(),
            "{c:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// GET `path` from the hub: (status, body).
    fn get(rt: &tokio::runtime::Runtime, hub: SocketAddr, path: &str) -> (u16, Vec<u8>) {
        rt.block_on(async {
            let r = voxtap_testkit::http::client()
                .get(format!("http://{hub}{path}"))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
        })
    }

    fn get_json(rt: &tokio::runtime::Runtime, hub: SocketAddr, path: &str) -> serde_json::Value {
        let (status, body) = get(rt, hub, path);
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

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

    /// (sensor, Call-ID) of a page of the hub's calls.
    fn found(page: &serde_json::Value) -> Vec<(String, String)> {
        page["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["sensor"].as_str().unwrap_or("").to_string(),
                    r["call_id"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Imports `file` into `dir` as sensor `name` and ships it, as a
    /// process.
    fn import(pg: &Pg, dir: &Path, name: &str, file: &str) {
        let file = voxtap_testkit::corpus(file);
        run_ok(
            Command::new(VOXTAP)
                .args(["import", "-q", "--out"])
                .arg(dir)
                .args(["--central", &socket_url(pg, &schema::sensor_role(name))])
                .args(["--sensor-id", name])
                .arg(file),
        );
    }

    /// Searches by Call-ID, number and time: every call of each sensor,
    /// with its sensor.
    fn searches(rt: &tokio::runtime::Runtime, hub: SocketAddr, all: &[Local]) {
        let total = get_json(rt, hub, "/api/calls?per_page=500");
        assert_eq!(total["total"], all.len(), "every sensor's calls");
        for c in all {
            let key = (c.sensor.to_string(), c.call_id.clone());
            let by_id = get_json(rt, hub, &format!("/api/calls?call_id={}", enc(&c.call_id)));
            let mut want: Vec<(String, String)> = all
                .iter()
                .filter(|o| o.call_id == c.call_id)
                .map(|o| (o.sensor.to_string(), o.call_id.clone()))
                .collect();
            let mut got = found(&by_id);
            want.sort();
            got.sort();
            assert_eq!(got, want, "by Call-ID {}", c.call_id);
            if !c.from_user.is_empty() {
                let by_number = get_json(
                    rt,
                    hub,
                    &format!("/api/calls?party={}&per_page=500", enc(&c.from_user)),
                );
                assert!(found(&by_number).contains(&key), "{key:?} by number");
            }
            let (from, to) = (
                voxtap_engine::output::format_ts(c.start_ns - 1_000_000_000),
                voxtap_engine::output::format_ts(c.start_ns + 1_000_000_000),
            );
            let by_time = get_json(
                rt,
                hub,
                &format!(
                    "/api/calls?from={}&to={}&per_page=500",
                    enc(&from),
                    enc(&to)
                ),
            );
            assert!(
                found(&by_time).contains(&key),
                "{key:?} by time {from}..{to}"
            );
        }
        for s in [SENSOR, "s2", "s3"] {
            let only = get_json(rt, hub, &format!("/api/calls?sensor={s}&per_page=500"));
            assert_eq!(
                only["total"],
                all.iter().filter(|c| c.sensor == s).count(),
                "{s}"
            );
        }
    }

    /// The hub's Sensors API says sensor 2's tunnel is `up`.
    fn wait_tunnel(rt: &tokio::runtime::Runtime, hub: SocketAddr, up: bool) {
        wait_until(Duration::from_secs(20), "sensor 2's tunnel", || {
            let v = get_json(rt, hub, "/api/sensors");
            v.as_array()
                .unwrap()
                .iter()
                .any(|s| s["name"] == "s2" && s["tunnel"] == up)
                .then_some(())
        });
    }

    /// Sensor 2's `voxtap central attach` configuration: ships (and, once
    /// `voxtap upload` has run, its S3 objects), serves its files to the
    /// hub.
    fn attach_config(pg: &Pg, d2: &Path, hub: SocketAddr, s3: &str) -> String {
        format!(
            "[output]\ndir = \"{d}\"\n[store]\npath = \"{d}/store\"\n\
             [central]\nurl = \"{url}\"\nsensor_id = \"s2\"\nhub_url = \"ws://{hub}\"\n\
             hub_secret = \"{SECRET2}\"\ninterval_ms = 100\n\
             [upload]\nenabled = true\nendpoint = \"{s3}\"\nbucket = \"fleet\"\nsensor = \"s2\"\n\
             path_style = true\nraw = false\nbackoff_initial_ms = 100\nbackoff_max_ms = 400\n",
            d = d2.display(),
            url = socket_url(pg, "vx_s2"),
        )
    }

    pub(super) fn three_sensors_one_hub(
        pg: &Pg,
        dir: &Path,
        live_out: &Path,
        rt: &tokio::runtime::Runtime,
    ) {
        let (d2, d3) = (dir.join("s2"), dir.join("s3"));
        import(
            pg,
            &d2,
            "s2",
            "generated/baresip-b2bua-2legs-srtp-to-rtp.pcap",
        );
        import(pg, &d3, "s3", "generated/sipp-loopback-3calls-rtpecho.pcap");
        let mut all = local_rows(SENSOR, live_out);
        all.extend(local_rows("s2", &d2));
        all.extend(local_rows("s3", &d3));

        voxtap_testkit::aws_env();
        let s3 = S3Server::start(&dir.join("s3srv"));
        let srv = rt
            .block_on(voxtap_web::start(voxtap_web::ServeOptions {
                data: dir.join("hub"),
                listen: Some("127.0.0.1:0".parse().unwrap()),
                config: voxtap_web::config::Config {
                    central: Some(CentralConfig {
                        url: socket_url(pg, "vx_hub"),
                        sensors: vec![TunnelSensor {
                            name: "s2".into(),
                            secret: Some(SECRET2.into()),
                            secret_file: None,
                        }],
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                insecure_no_auth: true,
            }))
            .unwrap();
        let hub = srv.addr;
        searches(rt, hub, &all);

        let cfg = dir.join("s2.toml");
        std::fs::write(&cfg, attach_config(pg, &d2, hub, &s3.endpoint())).unwrap();
        let mut attach = Command::new(VOXTAP);
        attach.args(["central", "attach", "--config"]).arg(&cfg);
        let attach = spawn(attach);
        wait_tunnel(rt, hub, true);
        // A call held only on sensor 2, through its tunnel.
        let c = all
            .iter()
            .find(|c| c.sensor == "s2" && c.pcap.is_some())
            .expect("a call of sensor 2 with a PCAP");
        let local = std::fs::read(d2.join(c.pcap.as_deref().unwrap())).unwrap();
        let page = get_json(
            rt,
            hub,
            &format!("/api/calls?call_id={}&sensor=s2", enc(&c.call_id)),
        );
        let id = page["rows"][0]["id"].as_i64().unwrap();
        let path = format!("/calls/{id}/download/pcap");
        assert_eq!(
            get(rt, hub, &path),
            (200, local.clone()),
            "through the tunnel"
        );

        // Uploaded to S3; the attached shipper ships the objects; sensor 2
        // stops; the same PCAP from S3.
        run_ok(
            Command::new(VOXTAP)
                .args([
                    "upload",
                    "--once",
                    "--create-bucket",
                    "--max-wait",
                    "60",
                    "--config",
                ])
                .arg(&cfg),
        );
        let cid = c.call_id.replace('\'', "''");
        wait_until(
            Duration::from_secs(30),
            "sensor 2's call.pcap object shipped",
            || {
                (pg.count(&format!(
                "SELECT count(*) FROM voxtap.call_files WHERE call_id = '{cid}' AND name = 'call.pcap'"
            )) == 1)
                .then_some(())
            },
        );
        attach.signal(libc::SIGTERM);
        let o = attach.wait(Duration::from_secs(30));
        assert!(
            o.status.success(),
            "attach: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        wait_tunnel(rt, hub, false);
        assert_eq!(
            get(rt, hub, &path),
            (200, local),
            "from S3, sensor 2 stopped"
        );
        // Sensor 3 neither uploaded nor opened a tunnel: offline, its calls
        // still searchable.
        let c3 = all.iter().find(|c| c.sensor == "s3").unwrap();
        let p3 = get_json(
            rt,
            hub,
            &format!("/api/calls?call_id={}&sensor=s3", enc(&c3.call_id)),
        );
        let (status, body) = get(
            rt,
            hub,
            &format!("/calls/{}/download/pcap", p3["rows"][0]["id"]),
        );
        assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
        drop(srv);
    }
}
