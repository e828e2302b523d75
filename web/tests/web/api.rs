//! The server over real HTTP: login, access control, path traversal, CSRF,
//! uploads, metrics and the access log.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use voxtap_engine::index::{INDEX_FILE, Index};

/// A request sent byte for byte, so `..` and `%2e%2e` reach the server as
/// written (HTTP client libraries normalise them away).
async fn raw_get(addr: SocketAddr, path: &str, cookie: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

struct Env {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    addr: SocketAddr,
    base: String,
    cookie: String,
    first_call: i64,
}

async fn env() -> Env {
    let dir = data_dir_with(&corpus("generated/sipp-netns-udp-2calls.pcap"));
    let data = dir.path().canonicalize().unwrap();
    let running = common::start(&data).await;
    let base = format!("http://{}", running.addr);
    let cookie = login(&base, USER, PASSWORD).await.expect("login");
    let idx = Index::open(&data.join(INDEX_FILE)).unwrap();
    let first_call = idx
        .search(&voxtap_engine::index::CallQuery {
            limit: 1,
            ..Default::default()
        })
        .unwrap()
        .rows[0]
        .id;
    Env {
        _dir: dir,
        data,
        addr: running.addr,
        base,
        cookie,
        first_call,
    }
}

#[tokio::test]
async fn nothing_without_login() {
    let e = env().await;
    let c = client();
    for page in [
        "/calls",
        "/calls/1",
        "/sensor",
        "/import",
        "/calls/1/download/pcap",
    ] {
        let r = c.get(format!("{}{page}", e.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{page}");
        let loc = r.headers()[LOCATION].to_str().unwrap();
        assert!(loc.starts_with("/login?next="), "{page}: {loc}");
    }
    for api in ["/api/calls", "/api/calls/1", "/metrics", "/api/import/x"] {
        let r = c.get(format!("{}{api}", e.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{api}");
    }
    // A forged or stale session cookie is no login either.
    let r = c
        .get(format!("{}/api/calls", e.base))
        .header(COOKIE, "voxtap_session=00ff")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Public: health only.
    let r = c.get(format!("{}/healthz", e.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_refused() {
    let e = env().await;
    assert_eq!(
        login(&e.base, USER, "correct horse battery stapler").await,
        Err(StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        login(&e.base, "mallory", PASSWORD).await,
        Err(StatusCode::UNAUTHORIZED)
    );
    // Login form posted without its token (login CSRF).
    let r = client()
        .post(format!("{}/login", e.base))
        .form(&[("user", USER), ("password", PASSWORD), ("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let m = client()
        .get(format!("{}/metrics", e.base))
        .header(COOKIE, &e.cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("voxtap_login_failures_total 2"), "{m}");
}

#[tokio::test]
async fn api_with_session_and_bearer_token() {
    let e = env().await;
    let c = client();
    let r = c
        .get(format!("{}/api/calls", e.base))
        .header(COOKIE, &e.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let j: serde_json::Value = r.json_body().await;
    assert_eq!(j["total"], 2);
    let r = c
        .get(format!("{}/api/calls?state=answered", e.base))
        .bearer_auth(format!("{API_USER}:{API_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for bad in [
        format!("{API_USER}:wrong"),
        format!("{USER}:{API_TOKEN}"),
        API_TOKEN.to_string(),
    ] {
        let r = c
            .get(format!("{}/api/calls", e.base))
            .bearer_auth(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = c
        .get(format!("{}/api/calls?ip=not-an-ip", e.base))
        .header(COOKIE, &e.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("not an IP address"));
}

trait JsonBody {
    async fn json_body(self) -> serde_json::Value;
}
impl JsonBody for reqwest::Response {
    async fn json_body(self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap()
    }
}

#[tokio::test]
async fn path_traversal_refused_everywhere() {
    let e = env().await;
    let id = e.first_call;
    // A symlink in the call folder pointing outside the data dir, and one
    // in the data dir itself.
    let idx = Index::open(&e.data.join(INDEX_FILE)).unwrap();
    let folder = idx.call(id).unwrap().unwrap().folder.unwrap();
    std::os::unix::fs::symlink("/etc/passwd", e.data.join(&folder).join("evil.wav")).unwrap();
    std::os::unix::fs::symlink("/etc", e.data.join("etc-link")).unwrap();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let first_line = passwd.lines().next().unwrap();

    // The genuine file is served.
    let (status, _) = raw_get(e.addr, &format!("/calls/{id}/download/pcap"), &e.cookie).await;
    assert_eq!(status, 200);
    let (status, _) = raw_get(e.addr, &format!("/calls/{id}/files/call.pcap"), &e.cookie).await;
    assert_eq!(status, 200);

    let attempts = [
        format!("/calls/{id}/files/../../../../etc/passwd"),
        format!("/calls/{id}/files/..%2f..%2f..%2f..%2fetc%2fpasswd"),
        format!("/calls/{id}/files/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd"),
        format!("/calls/{id}/files/%2e%2e"),
        format!("/calls/{id}/files/%2fetc%2fpasswd"),
        format!("/calls/{id}/files/evil.wav"),
        format!("/calls/{id}/files/..%2f..%2fetc-link%2fpasswd"),
        format!("/calls/{id}/download/..%2f..%2f..%2fetc%2fpasswd"),
        format!("/calls/{id}/download/%2fetc%2fpasswd"),
        "/calls/..%2f..%2fetc%2fpasswd/download/pcap".to_string(),
        "/calls/%2fetc%2fpasswd/files/call.pcap".to_string(),
        "/calls/../../etc/passwd".to_string(),
        "/static/..%2f..%2f..%2fetc%2fpasswd".to_string(),
        "/import/..%2f..%2fetc%2fpasswd".to_string(),
        "/api/import/..%2f..%2fetc%2fpasswd".to_string(),
    ];
    for path in &attempts {
        let (status, body) = raw_get(e.addr, path, &e.cookie).await;
        assert!(
            (400..500).contains(&status),
            "{path}: status {status}\n{body}"
        );
        assert!(!body.contains(first_line), "{path} leaked /etc/passwd");
    }
    // The call page does not offer the escaping symlink as audio.
    let page = client()
        .get(format!("{}/calls/{id}", e.base))
        .header(COOKIE, &e.cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("evil.wav"));
}

fn multipart_file(name: &str, bytes: Vec<u8>) -> reqwest::multipart::Part {
    reqwest::multipart::Part::bytes(bytes).file_name(name.to_string())
}

async fn import_csrf(e: &Env) -> String {
    let html = client()
        .get(format!("{}/import", e.base))
        .header(COOKIE, &e.cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    hidden_csrf(&html)
}

#[tokio::test]
async fn csrf_required_on_forms() {
    let e = env().await;
    let c = client();
    let pcap = std::fs::read(corpus("generated/sipp-netns-udp-2calls.pcap")).unwrap();
    // Upload without a token, and with a wrong one.
    for token in [None, Some("0".repeat(64))] {
        let mut form = reqwest::multipart::Form::new();
        if let Some(t) = token {
            form = form.text("csrf", t);
        }
        form = form.part("files", multipart_file("a.pcap", pcap.clone()));
        let r = c
            .post(format!("{}/import", e.base))
            .header(COOKIE, &e.cookie)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.text().await.unwrap().contains("CSRF"));
    }
    assert!(
        !e.data.join("imports").exists()
            || std::fs::read_dir(e.data.join("imports")).unwrap().count() == 0,
        "a refused upload left files behind"
    );
    // Logout without the token keeps the session.
    let r = c
        .post(format!("{}/logout", e.base))
        .header(COOKIE, &e.cookie)
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c
        .get(format!("{}/api/calls", e.base))
        .header(COOKIE, &e.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // With the token it logs out.
    let csrf = import_csrf(&e).await;
    let r = c
        .post(format!("{}/logout", e.base))
        .header(COOKIE, &e.cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = c
        .get(format!("{}/api/calls", e.base))
        .header(COOKIE, &e.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn upload_non_pcap_refused_and_pcap_imported() {
    let e = env().await;
    let c = client();
    let csrf = import_csrf(&e).await;
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf.clone())
        .part(
            "files",
            multipart_file("notes.pcap", b"hello, this is text\n".to_vec()),
        );
    let r = c
        .post(format!("{}/import", e.base))
        .header(COOKIE, &e.cookie)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let j: serde_json::Value = r.json_body().await;
    let msg = j["error"].as_str().unwrap();
    assert!(
        msg.contains("notes.pcap is not a pcap or pcapng capture"),
        "{msg}"
    );

    // The same through the HTML form answers with the page and the message.
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf.clone())
        .part("files", multipart_file("x.txt", b"GIF89a....".to_vec()));
    let r = c
        .post(format!("{}/import", e.base))
        .header(COOKIE, &e.cookie)
        .header("accept", "text/html")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("x.txt is not a pcap or pcapng capture")
    );

    // A real capture: a background job, then two more calls in the index.
    let pcap = std::fs::read(corpus("generated/baresip-pcma-hold-resume-dtmf-rtcp.pcap")).unwrap();
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf)
        .part("files", multipart_file("hold.pcap", pcap));
    let r = c
        .post(format!("{}/import", e.base))
        .header(COOKIE, &e.cookie)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let j: serde_json::Value = r.json_body().await;
    let status_url = format!("{}{}", e.base, j["status"].as_str().unwrap());
    let mut last = serde_json::Value::Null;
    for _ in 0..100 {
        last = c
            .get(&status_url)
            .header(COOKIE, &e.cookie)
            .send()
            .await
            .unwrap()
            .json_body()
            .await;
        if last["state"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last["state"], "done", "{last}");
    assert_eq!(last["calls"], 1);
    let j: serde_json::Value = c
        .get(format!("{}/api/calls?party=bob", e.base))
        .header(COOKIE, &e.cookie)
        .send()
        .await
        .unwrap()
        .json_body()
        .await;
    assert_eq!(j["total"], 1, "{j}");
    let pcap_rel = j["rows"][0]["pcap"].as_str().unwrap();
    assert!(pcap_rel.starts_with("imports/"), "{pcap_rel}");
    // Its PCAP downloads, and the upload itself is gone.
    let id = j["rows"][0]["id"].as_i64().unwrap();
    let r = c
        .get(format!("{}/calls/{id}/download/pcap", e.base))
        .header(COOKIE, &e.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let leftovers: Vec<_> = std::fs::read_dir(e.data.join("imports"))
        .unwrap()
        .flatten()
        .filter(|d| d.file_name().to_string_lossy().ends_with(".upload"))
        .collect();
    assert!(leftovers.is_empty());
}

#[tokio::test]
async fn downloads_are_counted_and_logged() {
    let e = env().await;
    let c = client();
    let id = e.first_call;
    for kind in ["pcap", "sip", "report", "zip"] {
        let r = c
            .get(format!("{}/calls/{id}/download/{kind}", e.base))
            .header(COOKIE, &e.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{kind}");
        let cd = r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(cd.starts_with("attachment"), "{cd}");
        let body = r.bytes().await.unwrap();
        match kind {
            "zip" => {
                let z = zip::ZipArchive::new(std::io::Cursor::new(body.to_vec())).unwrap();
                let mut names: Vec<_> = z.file_names().map(|n| n.unwrap().into_owned()).collect();
                names.sort();
                assert_eq!(names, ["call.pcap", "report.json", "sip.txt"]);
            }
            "report" => {
                let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(j["call"]["id"], id);
                assert!(!j["sip"].as_array().unwrap().is_empty());
            }
            _ => assert!(!body.is_empty()),
        }
    }
    let m = c
        .get(format!("{}/metrics", e.base))
        .header(COOKIE, &e.cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("voxtap_downloads_total 4\n"), "{m}");
    assert!(m.contains("voxtap_calls_indexed 2\n"), "{m}");
    let log = voxtap_web::audit::AuditLog::open(&e.data)
        .unwrap()
        .query(&Default::default(), 100)
        .unwrap();
    let downloads: Vec<_> = log
        .iter()
        .filter(|a| a.action == "download" && a.user == USER && a.call == Some(id))
        .map(|a| a.detail.as_str())
        .collect();
    assert_eq!(downloads, ["zip", "report", "sip", "pcap"]);
    let sensor = c
        .get(format!("{}/sensor", e.base))
        .header(COOKIE, &e.cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(sensor.contains("voxtap 0.1.0"));
    assert!(
        sensor.contains(r#"<dd id="calls-indexed">2</dd>"#),
        "{sensor}"
    );
}

#[tokio::test]
async fn refuses_to_start_without_users() {
    let dir = tempfile::tempdir().unwrap();
    let err = voxtap_web::start(voxtap_web::ServeOptions {
        data: dir.path().to_path_buf(),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        config: Default::default(),
        insecure_no_auth: false,
    })
    .await
    .err()
    .expect("must refuse");
    let msg = format!("{err:#}");
    assert!(msg.contains("no users configured"), "{msg}");
    assert!(msg.contains("--insecure-no-auth"), "{msg}");
    // With the flag it serves without login.
    let running = voxtap_web::start(voxtap_web::ServeOptions {
        data: dir.path().to_path_buf(),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        config: Default::default(),
        insecure_no_auth: true,
    })
    .await
    .unwrap();
    let r = client()
        .get(format!("http://{}/api/calls", running.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}
