//! Alerts end to end in a running server: calls that fail with 503 are
//! imported into its index (real captures through the real import), and the
//! alert reaches a webhook receiver over HTTPS, an SMTP sink (Python's
//! aiosmtpd, STARTTLS and AUTH required) and a syslog socket in this test
//! (TLS with certificates of a CA made here), with the values the test computes from the
//! calls it made; more answered calls, and time, resolve it. A status file
//! whose sensor stopped writing fires the silent-sensor rule. The admins'
//! rule editor: CSRF, roles, audit.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as TokioBufReader};
use voxtap_proto::pcapio::{LinkType, PcapWriter};
use voxtap_web::ServeOptions;
use voxtap_web::alerts::{AlertingConfig, Rule};

use crate::common::*;

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// The SMTP sink's user and password.
const SMTP_USER: &str = "voxtap-alerts";
const SMTP_PASSWORD: &str = "relay-pass-5xq";

/// Longest wait for any one notification (an evaluation runs each second).
const WAIT: Duration = Duration::from_secs(60);

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// One SIP message of call `id` between `a` (caller) and `b`.
fn sip(first: &str, id: &str, a: Ipv4Addr, b: Ipv4Addr, cseq: &str, to_tag: bool) -> Vec<u8> {
    let tt = if to_tag { ";tag=callee" } else { "" };
    format!(
        "{first}\r\nVia: SIP/2.0/UDP {a}:5060;branch=z9hG4bK{id}{}\r\nFrom: <sip:1001@{a}>;tag=caller\r\nTo: <sip:2002@{b}>{tt}\r\nCall-ID: {id}\r\nCSeq: {cseq}\r\nContact: <sip:1001@{a}:5060>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        cseq.len()
    )
    .into_bytes()
}

/// One call's messages as (from the callee?, first line, CSeq, To tag?):
/// answered (INVITE, 200, ACK, BYE, 200) or refused with `code` (INVITE,
/// 100, code, ACK).
fn call_plan(b: Ipv4Addr, code: Option<u16>) -> Vec<(bool, String, &'static str, bool)> {
    let invite = (
        false,
        format!("INVITE sip:2002@{b} SIP/2.0"),
        "1 INVITE",
        false,
    );
    let ack = (false, format!("ACK sip:2002@{b} SIP/2.0"), "1 ACK", true);
    match code {
        Some(c) => vec![
            invite,
            (true, "SIP/2.0 100 Trying".into(), "1 INVITE", false),
            (
                true,
                format!("SIP/2.0 {c} Service Unavailable"),
                "1 INVITE",
                true,
            ),
            ack,
        ],
        None => vec![
            invite,
            (true, "SIP/2.0 200 OK".into(), "1 INVITE", true),
            ack,
            (false, format!("BYE sip:2002@{b} SIP/2.0"), "2 BYE", true),
            (true, "SIP/2.0 200 OK".into(), "2 BYE", true),
        ],
    }
}

/// A capture of `n` calls from `caller(i)` to `b`, starting now.
pub(crate) fn capture(
    dir: &Path,
    name: &str,
    n: u32,
    caller: fn(u32) -> Ipv4Addr,
    b: Ipv4Addr,
    code: Option<u16>,
) -> PathBuf {
    let path = dir.join(name);
    let file = std::fs::File::create(&path).unwrap();
    let mut w = PcapWriter::new(file, LinkType::Ethernet, 65_535).unwrap();
    let mut frame = Vec::new();
    let t0 = now_ns();
    for i in 0..n {
        let a = caller(i);
        let id = format!("{name}-{i}@alerts.test");
        for (k, (from_b, first, cseq, tag)) in call_plan(b, code).into_iter().enumerate() {
            let (src, dst) = if from_b {
                ((b, 5060), (a, 5060))
            } else {
                ((a, 5060), (b, 5060))
            };
            let m = sip(&first, &id, a, b, cseq, tag);
            voxtap_engine::synth::udp_frame(&mut frame, src, dst, &m);
            let ts = t0 + u64::from(i) * 1_000_000 + k as u64 * 100_000;
            w.write_packet(ts, frame.len() as u32, &frame).unwrap();
        }
    }
    w.flush().unwrap();
    path
}

/// Uploads `file` on the Import page as `cookie`'s user (the server's own
/// import job, absorbed into its index) and waits for the job to finish.
async fn import(base: &str, cookie: &str, file: PathBuf) {
    use reqwest::header::COOKIE;
    let c = client();
    let page = c
        .get(format!("{base}/import"))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    let csrf = hidden_csrf(&page.text().await.unwrap());
    let part =
        reqwest::multipart::Part::bytes(std::fs::read(&file).unwrap()).file_name("calls.pcap");
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf)
        .part("files", part);
    let r = c
        .post(format!("{base}/import"))
        .header(COOKIE, cookie)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
    let j: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    let status = format!("{base}{}", j["status"].as_str().unwrap());
    let deadline = Instant::now() + WAIT;
    loop {
        let r = c.get(&status).header(COOKIE, cookie).send().await.unwrap();
        let j: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        if j["state"] != "running" && j["state"] != "queued" {
            assert_eq!(j["state"], "done", "{j}");
            return;
        }
        assert!(Instant::now() < deadline, "import still running: {j}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A webhook receiver: answers the first POST with 500 (the server must
/// retry), the others with 204, and hands over each body.
pub(crate) async fn webhook_receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    webhook_receiver_with(None).await
}

/// A CA made here and a server certificate of it for 127.0.0.1: (CA file,
/// certificate, key).
struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    fn new() -> TestCa {
        use voxtap_sensor::central::ca;
        let dir = tempfile::tempdir().unwrap();
        ca::init(&dir.path().join("ca"), "alerts test CA", 2).unwrap();
        let out = dir.path().join("certs");
        ca::issue(
            &dir.path().join("ca"),
            "receiver",
            &["127.0.0.1".into()],
            2,
            &out,
        )
        .unwrap();
        TestCa { dir }
    }
    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca/ca.crt")
    }
    fn cert(&self) -> (PathBuf, PathBuf) {
        let d = self.dir.path().join("certs");
        (d.join("receiver.crt"), d.join("receiver.key"))
    }
    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let (c, k) = self.cert();
        let (certs, key) = voxtap_sensor::central::pg::load_identity(&c, &k).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg))
    }
}

/// The receiver, over HTTPS when given an acceptor.
async fn webhook_receiver_with(
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}/hook", l.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        for n in 0.. {
            let (s, _) = l.accept().await.unwrap();
            let s: Box<dyn Io> = match &tls {
                Some(a) => Box::new(a.accept(s).await.expect("a TLS client")),
                None => Box::new(s),
            };
            let (r, mut w) = tokio::io::split(s);
            let mut r = TokioBufReader::new(r);
            let (mut len, mut line) = (0usize, String::new());
            r.read_line(&mut line).await.unwrap();
            assert!(line.starts_with("POST /hook HTTP/1.1"), "{line}");
            loop {
                line.clear();
                r.read_line(&mut line).await.unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).await.unwrap();
            let status = if n == 0 {
                "500 Internal Server Error"
            } else {
                "204 No Content"
            };
            w.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                .await
                .unwrap();
            w.flush().await.unwrap();
            if n > 0 {
                tx.send(serde_json::from_slice(&body).unwrap()).unwrap();
            }
        }
    });
    (url, rx)
}

/// aiosmtpd on `port` requiring STARTTLS, or speaking TLS from the first
/// byte (`implicit`, as on port 465), with the certificate and key given,
/// and AUTH as [`SMTP_USER`], printing each AUTH and each message (with
/// whether it came over TLS, authenticated) as one JSON line.
struct SmtpSink {
    child: Child,
    lines: mpsc::Receiver<Value>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SMTP_SINK: &str = r#"
import json, ssl, sys, warnings
warnings.simplefilter("ignore")
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
port, cert, key, user, password, mode = sys.argv[1:7]
class Sink:
    async def handle_DATA(self, server, session, envelope):
        tls = server.transport.get_extra_info("ssl_object") is not None
        print(json.dumps({"from": envelope.mail_from, "to": envelope.rcpt_tos,
                          "tls": tls, "authenticated": session.authenticated,
                          "data": envelope.content.decode("utf-8", "replace")}), flush=True)
        return "250 OK"
def authenticate(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == user.encode() and data.password == password.encode()
    print(json.dumps({"auth": mechanism, "ok": ok}), flush=True)
    return AuthResult(success=ok)
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
if mode == "implicit":
    # Every byte is over TLS; aiosmtpd's auth_require_tls sees STARTTLS only.
    c = Controller(Sink(), hostname="127.0.0.1", port=int(port), ssl_context=ctx,
                   authenticator=authenticate, auth_required=True, auth_require_tls=False)
else:
    c = Controller(Sink(), hostname="127.0.0.1", port=int(port), tls_context=ctx, require_starttls=True,
                   authenticator=authenticate, auth_required=True, auth_require_tls=True)
c.start()
print(json.dumps({"ready": True}), flush=True)
sys.stdin.read()
c.stop()
"#;

fn smtp_sink(port: u16, tls: &TestCa, mode: &str) -> SmtpSink {
    let (cert, key) = tls.cert();
    let mut child = Command::new("python3")
        .args(["-c", SMTP_SINK, &port.to_string()])
        .arg(cert)
        .arg(key)
        .args([SMTP_USER, SMTP_PASSWORD, mode])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 (with aiosmtpd: pip install aiosmtpd)");
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for l in out.lines().map_while(Result::ok) {
            if tx.send(serde_json::from_str::<Value>(&l).unwrap()).is_err() {
                break;
            }
        }
    });
    let ready = lines
        .recv_timeout(WAIT)
        .expect("aiosmtpd starts (pip install aiosmtpd)");
    assert_eq!(ready["ready"], true);
    SmtpSink { child, lines }
}

const RULES: &str = r#"
[[alerts]]
name = "asr-low"
metric = "asr"
op = "<"
threshold = 40
window_seconds = 120
min_calls = 12

[[alerts]]
name = "sip-503"
metric = "sip_status"
code = 503
op = ">"
threshold = 9
window_seconds = 20

[[alerts]]
name = "asr-trunk-b"
metric = "asr"
op = "<"
threshold = 40
window_seconds = 120
scope = "10.2.0.0/16"

[[alerts]]
name = "sensor-silent"
metric = "sensor_silent"
op = ">"
threshold = 60
"#;

#[derive(serde::Deserialize)]
struct Rules {
    alerts: Vec<Rule>,
}

/// Every event received so far, and a wait for the one `pick` wants.
pub(crate) struct Events {
    pub rx: tokio::sync::mpsc::UnboundedReceiver<Value>,
    pub seen: Vec<Value>,
}

impl Events {
    pub(crate) async fn wait(&mut self, rule: &str, state: &str) -> Value {
        let is = |e: &Value| e["rule"] == rule && e["state"] == state;
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(e) = self.seen.iter().find(|e| is(e)) {
                return e.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(e)) => self.seen.push(e),
                _ => panic!(
                    "no webhook event {rule} {state} within {WAIT:?}; got {:#?}",
                    self.seen
                ),
            }
        }
    }
}

/// The first mail whose subject is `subject`.
fn mail(sink: &SmtpSink, seen: &mut Vec<Value>, subject: &str) -> Value {
    let want = format!("Subject: {subject}\r\n");
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(m) = seen
            .iter()
            .find(|m| m["data"].as_str().is_some_and(|d| d.contains(&want)))
        {
            return m.clone();
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match sink.lines.recv_timeout(left) {
            Ok(m) => seen.push(m),
            Err(_) => panic!("no mail {subject:?}; got {seen:#?}"),
        }
    }
}

fn write_sensor_status(data: &Path, updated_unix: u64, frames: u64) {
    std::fs::create_dir_all(data.join("status")).unwrap();
    let v = serde_json::json!({ "component": "sensor", "updated_unix": updated_unix, "frames_total": frames, "running": true });
    std::fs::write(data.join("status/sensor.json"), v.to_string()).unwrap();
}

fn unix() -> u64 {
    now_ns() / 1_000_000_000
}

pub(crate) fn value(e: &Value) -> f64 {
    e["value"]
        .as_f64()
        .unwrap_or_else(|| panic!("no value in {e}"))
}

async fn start_with(data: &Path, alerting: AlertingConfig) -> voxtap_web::Running {
    let mut config = config();
    config.alerts = toml::from_str::<Rules>(RULES).unwrap().alerts;
    config.alerting = alerting;
    voxtap_web::start(ServeOptions {
        data: data.to_path_buf(),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        config,
        insecure_no_auth: false,
    })
    .await
    .expect("server starts")
}

async fn get_text(base: &str, path: &str) -> String {
    let r = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .header(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {API_USER}:{API_TOKEN}"),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.text().await.unwrap()
}

pub(crate) fn ip_a(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 1, 0, 1 + (i % 200) as u8)
}

fn ip_b(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 2, 0, 1 + (i % 200) as u8)
}

/// A server with every sink pointed at this test, and the sinks.
struct Lab {
    _dir: tempfile::TempDir,
    _tls: TestCa,
    data: PathBuf,
    caps: tempfile::TempDir,
    base: String,
    cookie: String,
    hooks: Events,
    smtp: SmtpSink,
    mails: Vec<Value>,
    syslog: tokio::net::UdpSocket,
    running: voxtap_web::Running,
}

impl Lab {
    /// Its sensor's last word was five minutes ago.
    async fn start() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().canonicalize().unwrap();
        write_sensor_status(&data, unix() - 300, 5);
        let tls = TestCa::new();
        let (url, rx) = webhook_receiver_with(Some(tls.acceptor())).await;
        let smtp_port = free_port();
        let smtp = smtp_sink(smtp_port, &tls, "starttls");
        let syslog = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let alerting = AlertingConfig {
            interval_seconds: Some(1),
            webhook: Some(url),
            syslog: Some(format!("udp://{}", syslog.local_addr().unwrap())),
            smtp_relay: Some(format!("127.0.0.1:{smtp_port}")),
            smtp_from: Some("voxtap@alerts.test".into()),
            smtp_to: vec!["noc@alerts.test".into()],
            smtp_starttls: Some(true),
            smtp_user: Some(SMTP_USER.into()),
            smtp_password: Some(voxtap_web::alerts::Secret(SMTP_PASSWORD.into())),
            tls_ca: Some(tls.ca()),
            ..Default::default()
        };
        let running = start_with(&data, alerting).await;
        let base = format!("http://{}", running.addr);
        let cookie = login(&base, USER, PASSWORD).await.unwrap();
        Lab {
            _dir: dir,
            _tls: tls,
            data,
            caps: tempfile::tempdir().unwrap(),
            base,
            cookie,
            hooks: Events {
                rx,
                seen: Vec::new(),
            },
            smtp,
            mails: Vec::new(),
            syslog,
            running,
        }
    }

    /// `n` calls from `caller(i)` to `b` now, uploaded and imported.
    async fn calls(
        &self,
        name: &str,
        n: u32,
        caller: fn(u32) -> Ipv4Addr,
        b: [u8; 4],
        code: Option<u16>,
    ) {
        let file = capture(self.caps.path(), name, n, caller, b.into(), code);
        import(&self.base, &self.cookie, file).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_failing_with_503_alert_every_sink_and_resolve() {
    let mut lab = Lab::start().await;
    let silent = lab.hooks.wait("sensor-silent", "firing").await;
    assert!(value(&silent) >= 300.0, "{silent}");

    // Trunk B: 2 answered calls; trunk A: 10 refused with 503.
    lab.calls("b-ok", 2, ip_b, [10, 9, 0, 2], None).await;
    lab.calls("a-503", 10, ip_a, [10, 9, 0, 1], Some(503)).await;
    let imported = Instant::now();
    let fired = lab.hooks.wait("sip-503", "firing").await;
    let latency = imported.elapsed();
    assert_eq!(value(&fired), 10.0, "{fired}");
    assert_eq!(fired["metric"], "sip_status");
    assert_eq!(
        (fired["op"].as_str(), fired["threshold"].as_f64()),
        (Some(">"), Some(9.0))
    );
    assert_eq!(fired["window_seconds"], 20);
    let asr = lab.hooks.wait("asr-low", "firing").await;
    assert!((value(&asr) - 100.0 * 2.0 / 12.0).abs() < 1e-9, "{asr}");
    assert_eq!(asr["summary"], "ASR % < 40 over 120 s (all calls)");
    eprintln!("alerts: 503 import to webhook firing in {latency:?}");

    let m = mail(&lab.smtp, &mut lab.mails, "[voxtap] FIRING sip-503");
    assert_eq!(m["to"][0], "noc@alerts.test");
    assert_eq!(
        (&m["tls"], &m["authenticated"]),
        (&Value::Bool(true), &Value::Bool(true))
    );
    let auths: Vec<&Value> = lab
        .mails
        .iter()
        .filter(|l| l.get("auth").is_some())
        .collect();
    assert!(
        !auths.is_empty()
            && auths
                .iter()
                .all(|a| a["auth"] == "PLAIN" && a["ok"] == true),
        "{auths:?}"
    );
    let body = m["data"].as_str().unwrap();
    assert!(
        body.contains("value: 10\r\n") && body.contains("metric: sip_status > 9\r\n"),
        "{body}"
    );
    check_syslog(&lab.syslog).await;
    check_metrics(&lab.base).await;
    resolve(&mut lab).await;
    check_history(&lab.base).await;
    assert!(
        lab.hooks.seen.iter().all(|e| e["rule"] != "asr-trunk-b"),
        "trunk B answered all its calls: {:#?}",
        lab.hooks.seen
    );
    lab.running.task.abort();
}

/// `smtp_tls = "implicit"`: the client speaks TLS from the first byte (the
/// sink accepts nothing else), checks the sink's certificate against the
/// test's CA and authenticates; the silent sensor's alert arrives by mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_implicit_tls_delivers_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().canonicalize().unwrap();
    write_sensor_status(&data, unix() - 300, 5);
    let tls = TestCa::new();
    let port = free_port();
    let sink = smtp_sink(port, &tls, "implicit");
    let alerting = AlertingConfig {
        interval_seconds: Some(1),
        smtp_relay: Some(format!("127.0.0.1:{port}")),
        smtp_from: Some("voxtap@alerts.test".into()),
        smtp_to: vec!["noc@alerts.test".into()],
        smtp_tls: Some(voxtap_web::alerts::SmtpTls::Implicit),
        smtp_user: Some(SMTP_USER.into()),
        smtp_password: Some(voxtap_web::alerts::Secret(SMTP_PASSWORD.into())),
        tls_ca: Some(tls.ca()),
        ..Default::default()
    };
    let running = start_with(&data, alerting).await;
    let mut seen = Vec::new();
    let m = mail(&sink, &mut seen, "[voxtap] FIRING sensor-silent");
    assert_eq!(
        (&m["tls"], &m["authenticated"]),
        (&Value::Bool(true), &Value::Bool(true)),
        "{m}"
    );
    assert_eq!(m["to"][0], "noc@alerts.test");
    assert!(
        seen.iter().any(|l| l["auth"] == "PLAIN" && l["ok"] == true),
        "{seen:?}"
    );
    running.task.abort();
}

/// Answered calls, time and a live sensor resolve the three alerts.
async fn resolve(lab: &mut Lab) {
    // 20 answered calls on trunk A: ASR (22 of 32) is no longer low.
    lab.calls("a-ok", 20, ip_a, [10, 9, 0, 1], None).await;
    let resolved = lab.hooks.wait("asr-low", "resolved").await;
    assert!(value(&resolved) >= 40.0, "{resolved}");
    // The 503s leave the 20 s window.
    let resolved = lab.hooks.wait("sip-503", "resolved").await;
    assert!(value(&resolved) <= 9.0, "{resolved}");
    // The sensor speaks again.
    write_sensor_status(&lab.data, unix(), 6);
    let back = lab.hooks.wait("sensor-silent", "resolved").await;
    assert!(value(&back) <= 60.0, "{back}");
    let m = mail(&lab.smtp, &mut lab.mails, "[voxtap] RESOLVED asr-low");
    assert!(m["data"].as_str().unwrap().contains("state: resolved"));
}

/// The RFC 5424 line of the 503 alert.
async fn check_syslog(sock: &tokio::net::UdpSocket) {
    let mut buf = vec![0u8; 4096];
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, sock.recv(&mut buf))
            .await
            .expect("a syslog datagram")
            .unwrap();
        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
        if line.contains("rule=\"sip-503\" state=\"firing\"") {
            assert!(line.starts_with("<132>1 20"), "{line}");
            assert!(
                line.contains(" voxtap ") && line.contains(" alert [voxtap@32473 "),
                "{line}"
            );
            assert!(line.ends_with("FIRING sip-503: calls ended with SIP 503 > 9 over 20 s (all calls); value 10.00"), "{line}");
            return;
        }
    }
}

async fn check_metrics(base: &str) {
    let m = get_text(base, "/metrics").await;
    for want in [
        "voxtap_alert_firing{rule=\"sensor-silent\",metric=\"sensor_silent\"} 1\n",
        "voxtap_alert_value{rule=\"asr-trunk-b\",metric=\"asr\"} 100\n",
        "voxtap_alert_firing{rule=\"asr-trunk-b\",metric=\"asr\"} 0\n",
        "voxtap_alert_threshold{rule=\"asr-low\",metric=\"asr\"} 40\n",
        // The receiver refused the first POST once.
        "voxtap_alert_notifications_total{sink=\"webhook\",outcome=\"retried\"} 1\n",
        "voxtap_alert_notifications_total{sink=\"webhook\",outcome=\"dropped\"} 0\n",
    ] {
        assert!(m.contains(want), "{want} not in\n{m}");
    }
}

async fn check_history(base: &str) {
    let page = get_text(base, "/alerts").await;
    for (state, rule) in [
        ("firing", "sip-503"),
        ("resolved", "sip-503"),
        ("firing", "asr-low"),
        ("resolved", "sensor-silent"),
    ] {
        let row = format!("data-state=\"{state}\" data-rule=\"{rule}\"");
        assert!(page.contains(&row), "{row} not in the history:\n{page}");
    }
    let v: Value = serde_json::from_str(&get_text(base, "/api/alerts?rule=sip-503").await).unwrap();
    let states: Vec<&str> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["resolved", "firing"], "{v}");
    assert_eq!(v["history"][1]["value"], 10.0);
}

async fn post_form(
    base: &str,
    path: &str,
    auth: (&str, &str),
    form: &[(&str, &str)],
) -> (reqwest::StatusCode, String) {
    let r = client()
        .post(format!("{base}{path}"))
        .header(auth.0, auth.1)
        .header("accept", "application/json")
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

/// The details of the audit log's `alert rule` entries, newest first.
async fn audit_details(base: &str, cookie: &str) -> Vec<String> {
    let r = client()
        .get(format!("{base}/api/audit?action=alert+rule"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let audit: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["detail"].as_str().unwrap().to_string())
        .collect()
}

/// (name, origin, condition) of each rule `/api/alerts` lists.
async fn rule_list(base: &str) -> Vec<(String, String, String)> {
    let v: Value = serde_json::from_str(&get_text(base, "/api/alerts").await).unwrap();
    let s = |v: &Value| v.as_str().unwrap().to_string();
    v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (s(&r["rule"]["name"]), s(&r["origin"]), s(&r["condition"])))
        .collect()
}

/// Edits without the token, or by a non-admin, are refused.
async fn refused_edits(base: &str, cookie: &str, rule: &[(&str, &str)]) {
    use reqwest::StatusCode;
    // No token, a wrong one: refused, nothing saved.
    for token in [
        "",
        "0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let mut f = rule.to_vec();
        f.push(("csrf", token));
        let (s, _) = post_form(base, "/admin/alerts", ("cookie", cookie), &f).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
    }
    // A listener (bearer token, no CSRF to send) may look but not edit.
    let bearer = format!("Bearer {API_USER}:{API_TOKEN}");
    let (s, _) = post_form(base, "/admin/alerts", ("authorization", &bearer), rule).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

/// The rule editor: admins only, CSRF-checked, audited; a config rule
/// removed there stays removed; a bad rule is refused with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_edit_rules_with_csrf_and_audit() {
    use reqwest::StatusCode;
    let dir = tempfile::tempdir().unwrap();
    let running = start_with(dir.path(), AlertingConfig::default()).await;
    let base = format!("http://{}", running.addr);
    let cookie = login(&base, USER, PASSWORD).await.unwrap();
    let page = client()
        .get(format!("{base}/admin/alerts"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(page.contains("data-rule=\"sip-503\""), "{page}");
    let csrf = hidden_csrf(&page);
    let rule = [
        ("name", "trunk-x"),
        ("metric", "asr"),
        ("op", "<"),
        ("threshold", "30"),
        ("window_seconds", "60"),
        ("scope", "10.5.0.0/16"),
    ];
    refused_edits(&base, &cookie, &rule).await;
    let mut f = rule.to_vec();
    f.push(("csrf", &csrf));
    let (s, body) = post_form(&base, "/admin/alerts", ("cookie", &cookie), &f).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let mut bad = f.clone();
    bad[5] = ("scope", "10.5/16");
    let (s, body) = post_form(&base, "/admin/alerts", ("cookie", &cookie), &bad).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains("is not an IP prefix"), "{body}");
    let (s, _) = post_form(
        &base,
        "/admin/alerts/delete",
        ("cookie", &cookie),
        &[("csrf", &csrf), ("name", "sip-503")],
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    let rules = rule_list(&base).await;
    let web = ("web", "ASR % < 30 over 60 s (peers 10.5.0.0/16)");
    assert_eq!(
        rules,
        [
            (
                "asr-low".into(),
                "config".into(),
                "ASR % < 40 over 120 s (all calls)".into()
            ),
            (
                "asr-trunk-b".into(),
                "config".into(),
                "ASR % < 40 over 120 s (peers 10.2.0.0/16)".into()
            ),
            (
                "sensor-silent".into(),
                "config".into(),
                "seconds sensor silent > 60 (sensor)".into()
            ),
            ("trunk-x".into(), web.0.into(), web.1.into()),
        ]
    );
    let details = audit_details(&base, &cookie).await;
    assert_eq!(
        details,
        [
            "removed sip-503",
            "set trunk-x: ASR % < 30 over 60 s (peers 10.5.0.0/16)"
        ]
    );
    // Kept across a restart: the edits are in alerts.sqlite.
    running.task.abort();
    let again = start_with(dir.path(), AlertingConfig::default()).await;
    assert_eq!(rule_list(&format!("http://{}", again.addr)).await, rules);
    again.task.abort();
}
