//! Alerts from the namespace lab: SIPp calls refused with 503 (a UAS
//! scenario that answers every INVITE with 503), captured by `voxtap run`
//! through XDP into its index, fire the rule `voxtap serve` evaluates, to a
//! webhook receiver in this test, with the count calls.csv has; answered
//! SIPp calls resolve the ASR rule; a stopped sensor fires the silent rule.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::lab::*;

const UAS_503: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uas answering 503">
  <recv request="INVITE" />
  <send><![CDATA[
SIP/2.0 503 Service Unavailable
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <recv request="ACK" />
</scenario>
"#;

const UAC_503: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uac refused with 503">
  <send><![CDATA[
INVITE sip:service@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:service@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: sip:sipp@[local_ip]:[local_port]
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="503" />
  <send><![CDATA[
ACK sip:service@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:service@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
</scenario>
"#;

const WEB_CONFIG: &str = r#"
[alerting]
interval_seconds = 1
webhook = "WEBHOOK"

[[alerts]]
name = "sip-503"
metric = "sip_status"
code = 503
op = ">"
threshold = 9
window_seconds = 600

[[alerts]]
name = "asr-low"
metric = "asr"
op = "<"
threshold = 40
window_seconds = 600
min_calls = 10

[[alerts]]
name = "sensor-silent"
metric = "sensor_silent"
op = ">"
threshold = 30
"#;

/// `n` calls refused with 503 between the lab's two hosts.
fn sipp_503_calls(lab: &Lab, dir: &Path, n: u32) {
    let work = dir.join("sipp-503");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("uas.xml"), UAS_503).unwrap();
    std::fs::write(work.join("uac.xml"), UAC_503).unwrap();
    let (a, b) = (lab.ip(1), lab.ip(2));
    let mut uas = in_ns(
        &lab.ns('b'),
        &[
            "timeout", "90", "sipp", "-sf", "uas.xml", "-i", &b, "-p", "5060", "-nostdin",
        ],
    );
    uas.current_dir(&work);
    let uas = spawn(uas);
    wait_until(Duration::from_secs(20), "the 503 UAS listening", || {
        udp_listening(&lab.ns('b'), 5060).then_some(())
    });
    let n = n.to_string();
    let target = format!("{b}:5060");
    let args = [
        "timeout", "90", "sipp", "-sf", "uac.xml", &target, "-i", &a, "-p", "5061", "-m", &n, "-r",
        "10", "-nostdin",
    ];
    let out = in_ns(&lab.ns('a'), &args)
        .current_dir(&work)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sipp uac: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    uas.signal(libc::SIGTERM);
}

/// A webhook receiver: each POST's JSON body, answered 204.
fn webhook() -> (String, mpsc::Receiver<Value>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let mut s = s.unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let (mut len, mut line) = (0usize, String::new());
            while r.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                line.clear();
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            s.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
            if tx.send(serde_json::from_slice(&body).unwrap()).is_err() {
                return;
            }
        }
    });
    (url, rx)
}

struct Hooks {
    rx: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl Hooks {
    /// The first event of `rule` in `state` from the `from`th event on.
    fn wait(&mut self, from: usize, rule: &str, state: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let found = self
                .seen
                .iter()
                .skip(from)
                .find(|e| e["rule"] == rule && e["state"] == state);
            if let Some(e) = found {
                return e.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(e) => self.seen.push(e),
                Err(_) => panic!("no {rule} {state} within {limit:?}: {:#?}", self.seen),
            }
        }
    }
}

/// `voxtap serve` on the sensor's output directory (no login: loopback).
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(dir: &Path, url: &str) -> Serve {
    let cfg = dir.join("web.toml");
    std::fs::write(&cfg, WEB_CONFIG.replace("WEBHOOK", url)).unwrap();
    let mut c = Command::new(VOXTAP);
    c.args([
        "serve",
        "--insecure-no-auth",
        "--listen",
        "127.0.0.1:0",
        "--data",
    ])
    .arg(dir.join("out"))
    .arg("--config")
    .arg(&cfg)
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let mut s = Serve(c.spawn().unwrap());
    let mut line = String::new();
    BufReader::new(s.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("voxtap web UI on "), "{line:?}");
    s
}

#[test]
fn live_sipp_503_calls_alert_and_resolve() {
    require_root();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempdir("alerts");
    let lab = Lab::up(&format!("va{}", std::process::id() % 10000), 219);
    let vox = start_voxtap(&lab, &dir, "", 300);
    let (url, rx) = webhook();
    let mut hooks = Hooks {
        rx,
        seen: Vec::new(),
    };
    let _web = serve(&dir, &url);
    let limit = Duration::from_secs(60);

    sipp_503_calls(&lab, &dir, 10);
    let fired = hooks.wait(0, "sip-503", "firing", limit);
    let csv = read_csv(&dir.join("out/calls.csv"));
    let refused = csv.iter().filter(|c| c["status_code"] == "503").count();
    assert_eq!(refused, 10, "calls.csv: {csv:#?}");
    assert_eq!(fired["value"], 10.0, "{fired}");
    let asr = hooks.wait(0, "asr-low", "firing", limit);
    assert_eq!(asr["value"], 0.0, "{asr}");

    // 10 answered calls: ASR 10 of 20 = 50 %, no longer under 40. It
    // resolves as soon as k answered calls are written: k of 10 + k.
    sipp_calls(&lab, &dir, 10, 10);
    let resolved = hooks.wait(0, "asr-low", "resolved", limit);
    let v = resolved["value"].as_f64().unwrap();
    let k = (1..=10u32).find(|k| (100.0 * f64::from(*k) / f64::from(10 + k) - v).abs() < 1e-9);
    assert!(k.is_some_and(|k| k >= 7), "{resolved}");
    wait_calls_written(&dir.join("out"), 20);
    let calls = read_csv(&dir.join("out/calls.csv"));
    assert_eq!(
        calls.iter().filter(|c| c["state"] == "answered").count(),
        10
    );

    // The sensor stops: after 30 s without a status update it is silent
    // (the phases before are shorter, so it was not firing).
    let mark = hooks.seen.len();
    vox.signal(libc::SIGTERM);
    let out = vox.wait(Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let silent = hooks.wait(mark, "sensor-silent", "firing", limit);
    assert!(silent["value"].as_f64().unwrap() > 30.0, "{silent}");
    drop(lab);
    std::fs::remove_dir_all(&dir).unwrap();
}
