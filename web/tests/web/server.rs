//! The server around the pages: live status files on the sensor page and in
//! /metrics, HTTPS with rustls, sessions that survive a restart.

use crate::common;

use std::collections::{HashMap, HashSet};

use common::*;
use voxtap_sensor::status;

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
    // Ages on the page depend on how long the server takes to answer (a
    // loaded machine can take seconds): the checks below allow for the
    // time measured between writing the files and reading the page.
    let written_at = status::now_unix();
    // sensor.json exactly as `voxtap run` writes it.
    {
        use voxtap_sensor::live::status::{
            KernelCounters, LiveCounters, RunFacts, SensorPublisher,
        };
        use voxtap_sensor::xdp::{COUNTERS, Counter, TUNNELS, Tunnel};
        let live = LiveCounters::default();
        LiveCounters::set(&live.frames, 90_000);
        LiveCounters::set(&live.calls_open, 12);
        LiveCounters::set(&live.store_bytes, 5_368_709_120);
        LiveCounters::set(&live.files_deleted, 3);
        let mut k = [0u64; COUNTERS];
        k[Counter::LostRingFull as usize] = 7;
        k[Counter::Malformed as usize] = 2;
        let mut p = SensorPublisher::new(
            &data,
            RunFacts {
                iface: "mirror0".into(),
                attach_mode: "Native".into(),
                ring_bytes: 64 << 20,
                rings: 1,
                pipeline: 1,
                store: data.clone(),
                max_bytes: 1 << 40,
                max_age_seconds: 86_400,
                min_free_bytes: 0,
            },
        );
        // Frames through each kind of tunnel (the kernel's per-CPU counters,
        // summed).
        let mut tunnels = [0u64; TUNNELS];
        tunnels[Tunnel::Vxlan as usize] = 11;
        tunnels[Tunnel::Mpls as usize] = 5;
        let kc = KernelCounters {
            outcomes: k,
            tunnels,
            rings: Default::default(),
        };
        p.publish(kc, &live, true);
    }
    status::write(
        &data,
        "remote",
        &serde_json::json!({
            "hosts": [
                {"name": "prod/eu-west", "frames": 100, "connected": true},
                {"name": "lab \"b\"", "frames": 5, "connected": false},
            ],
            // As `voxtap remote` writes its units: one host, two interfaces.
            "units": [
                {"host": "edge1", "interface": "eth0", "packets": 10},
                {"host": "edge1", "interface": "eth1", "packets": 20},
                {"host": "edge1", "interface": "eth1", "packets": 30},
            ],
            "state": "capturing",
        }),
    )
    .unwrap();
    // A writer that stopped a minute ago.
    let old =
        serde_json::json!({"component": "upload", "queued": 4, "updated_unix": written_at - 60});
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
    let elapsed = status::now_unix().saturating_sub(written_at);
    if elapsed < voxtap_web::status_view::STALE_SECONDS {
        assert!(page.contains("id=\"status-sensor\" data-stale=\"false\""));
    }
    assert!(page.contains("id=\"status-upload\" data-stale=\"true\""));
    assert!(
        (60..=61 + elapsed).any(|age| page.contains(&format!("last update {age} s ago"))),
        "upload's age is 60 s plus the {elapsed} s the page took"
    );
    assert!(page.contains("5.0 GiB"), "store bytes shown as a size");
    assert!(page.contains("prod/eu-west") && page.contains("lab &quot;b&quot;"));
    assert!(page.contains("<tr data-field=\"ring_full\"><th>ring full</th><td>7</td>"));
    assert!(
        page.contains("<tr data-field=\"vxlan\"><th>vxlan</th><td>11</td>"),
        "tunnel counters on the sensor page"
    );
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
    assert_eq!(m["voxtap_sensor_frames_per_second"], 0.0);
    assert_eq!(m["voxtap_sensor_frames_total"], 90000.0);
    assert_eq!(m["voxtap_sensor_calls_active"], 12.0);
    assert_eq!(m["voxtap_sensor_running"], 1.0);
    assert_eq!(m["voxtap_sensor_drops_ring_full"], 7.0);
    assert_eq!(m["voxtap_sensor_store_bytes"], 5_368_709_120.0);
    assert_eq!(m["voxtap_sensor_store_files_deleted"], 3.0);
    assert_eq!(m["voxtap_sensor_store_max_age_seconds"], 86_400.0);
    assert_eq!(m["voxtap_sensor_drops_malformed"], 2.0);
    assert_eq!(m["voxtap_sensor_kernel_tunnels_vxlan"], 11.0);
    assert_eq!(m["voxtap_sensor_kernel_tunnels_mpls"], 5.0);
    assert_eq!(m["voxtap_sensor_kernel_tunnels_gre"], 0.0);
    assert_eq!(m["voxtap_sensor_dropped_total"], 9.0);
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
    assert_eq!(m["voxtap_remote_units_packets{item=\"edge1:eth0\"}"], 10.0);
    assert_eq!(m["voxtap_remote_units_packets{item=\"edge1:eth1\"}"], 20.0);
    assert_eq!(
        m["voxtap_remote_units_packets{item=\"edge1:eth1#2\"}"],
        30.0
    );
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

async fn calls_status(base: &str, cookie: &str) -> u16 {
    client()
        .get(format!("{base}/calls"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_restart_until_logout_or_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().canonicalize().unwrap();
    let a = start(&data).await;
    let base = format!("http://{}", a.addr);
    let cookie = login(&base, USER, PASSWORD).await.unwrap();
    assert_eq!(calls_status(&base, &cookie).await, 200);
    a.task.abort();
    drop(a);

    // A new server process on the same data directory knows the session.
    let b = start(&data).await;
    let base = format!("http://{}", b.addr);
    assert_eq!(
        calls_status(&base, &cookie).await,
        200,
        "still logged in after a restart"
    );
    // Logging out deletes it for good, across restarts too.
    let page = client()
        .get(format!("{base}/calls"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = client()
        .post(format!("{base}/logout"))
        .header("cookie", &cookie)
        .form(&[("csrf", hidden_csrf(&page))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(calls_status(&base, &cookie).await, 303, "logged out");
    b.task.abort();
    drop(b);
    let c = start(&data).await;
    let base = format!("http://{}", c.addr);
    assert_eq!(
        calls_status(&base, &cookie).await,
        303,
        "logout survives a restart"
    );

    // Expiry is enforced on the stored time, not only in memory.
    let cookie = login(&base, USER, PASSWORD).await.unwrap();
    assert_eq!(calls_status(&base, &cookie).await, 200);
    let db = rusqlite::Connection::open(data.join(voxtap_web::auth::SESSIONS_FILE)).unwrap();
    let n = db
        .execute(
            "UPDATE sessions SET expires_ms = expires_ms - 13 * 3600 * 1000",
            [],
        )
        .unwrap();
    assert_eq!(n, 1, "one live session stored");
    assert_eq!(calls_status(&base, &cookie).await, 303, "expired");
    // The id itself is not in the file.
    let id = cookie.split_once('=').unwrap().1;
    let bytes = std::fs::read(data.join(voxtap_web::auth::SESSIONS_FILE)).unwrap();
    assert!(!bytes.windows(id.len()).any(|w| w == id.as_bytes()));
    c.task.abort();
}

/// One HTTP/1.1 request over TLS trusting `roots`; (status, headers).
async fn https_get(
    addr: std::net::SocketAddr,
    roots: rustls::RootCertStore,
    req: String,
) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let conn = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = conn.connect(name, tcp).await?;
    tls.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    let _ = tls.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let head = text.split("\r\n\r\n").next().unwrap_or("").to_string();
    Ok((status, head))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_rustls_and_secure_cookies() {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let st = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl must be installed (scripts/setup.sh installs it)");
    assert!(st.success());
    let mut config = config();
    config.server.tls_cert = Some(cert.clone());
    config.server.tls_key = Some(key);
    let running = voxtap_web::start(voxtap_web::ServeOptions {
        data: data.clone(),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        config,
        insecure_no_auth: false,
    })
    .await
    .expect("HTTPS server starts");
    let addr = running.addr;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&cert).unwrap())
        .unwrap();

    // Trusted: the login page, with a Secure cookie.
    let (status, head) = https_get(
        addr,
        roots.clone(),
        "GET /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".into(),
    )
    .await
    .expect("TLS handshake with the trusted certificate");
    assert_eq!(status, 200, "{head}");
    let set_cookie = head
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie: voxtap_login=")
        })
        .expect("login cookie");
    assert!(set_cookie.contains("; Secure"), "{set_cookie}");
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    // A bearer-token API call works over TLS too.
    let (status, _) = https_get(
        addr,
        roots,
        format!(
            "GET /api/calls HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
            bearer()
        ),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);

    // Not trusted: the handshake fails.
    let untrusted = https_get(
        addr,
        rustls::RootCertStore::empty(),
        "GET /login HTTP/1.1\r\nHost: localhost\r\n\r\n".into(),
    )
    .await;
    assert!(
        untrusted.is_err(),
        "a client without the certificate must refuse it"
    );

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = client()
        .get(format!("http://{addr}/login"))
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.is_err(),
        "plain HTTP answered: {:?}",
        plain.map(|r| r.status())
    );
    running.task.abort();
}
