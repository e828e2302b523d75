//! The Live page in headless Chromium, fed by a real `voxtap run` on the
//! namespace lab: `voxtap serve` on the sensor's output directory, SIPp
//! calls through real XDP; the page (server-sent events, no reload) shows
//! the calls appear, their durations grow, and move to "ended" with the
//! figures of the calls.csv the run writes.
#![cfg(target_os = "linux")]

use crate::lab;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lab::*;
use serde_json::Value;
use voxtap_testkit::browser::{browser, screenshots_dir};

pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// What the page shows, read in one script (each event replaces the
/// elements).
const OBSERVE: &str = r#"
const s = document.getElementById('live-summary');
const rows = (sel) => Array.from(document.querySelectorAll(sel + ' tr.live-call')).map(r => ({
  id: r.dataset.callId, dur: parseFloat(r.dataset.duration), rtp: parseInt(r.dataset.rtp),
  cells: Array.from(r.cells).map(c => c.textContent)}));
return {seq: s ? parseInt(s.dataset.seq) : -1, open: rows('#live-table'), ended: rows('#live-ended')};
"#;

/// Kills `voxtap serve` at the end, also on failure.
pub(crate) struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `voxtap serve` on `data` with user alice; its address.
pub(crate) fn serve(dir: &Path, data: &Path) -> (Serve, String) {
    let mut h = Command::new(VOXTAP)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    h.stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    let hash = String::from_utf8(h.wait_with_output().unwrap().stdout).unwrap();
    let cfg = dir.join("web.toml");
    let users = format!(
        "[[users]]\nname = \"alice\"\npassword_hash = \"{}\"\n",
        hash.trim()
    );
    std::fs::write(&cfg, users).unwrap();
    let mut s = Serve(
        Command::new(VOXTAP)
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(s.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("voxtap web UI on ")
        .unwrap_or_else(|| panic!("voxtap serve said {line:?}"))
        .to_string();
    (s, format!("http://{addr}"))
}

#[test]
fn live_page_in_chromium_follows_sipp_calls() {
    require_root();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempdir("livebr");
    let lab = Lab::up(&format!("vw{}", std::process::id() % 10000), 220);
    let vox = start_voxtap(&lab, &dir, "", 120);
    let out = dir.join("out");
    let (_serve, base) = serve(&dir, &out);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let csv = out.join("calls.csv");
    // SIPp starts once the page shows the sensor's first snapshot: a
    // browser slow to start (a loaded machine) must not miss a call's
    // whole life.
    let (ready, page_ready) = std::sync::mpsc::channel::<()>();
    let seen = std::thread::scope(|s| {
        let (lab, dir) = (&lab, &dir);
        let sipp = s.spawn(move || {
            if page_ready.recv().is_ok() {
                sipp_calls(lab, dir, 4, 2);
            }
        });
        let seen = rt.block_on(follow_in_browser(&base, &csv, 4, ready));
        sipp.join().expect("sipp");
        seen
    });
    vox.signal(libc::SIGTERM);
    let o = vox.wait(Duration::from_secs(30));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let calls = read_csv(&out.join("calls.csv"));
    assert_eq!(calls.len(), 4);
    for c in &calls {
        check(&seen, c);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Logs in and reads the Live page (every 100 ms, in one script) until
/// `n` calls are in calls.csv and none is open on the page; says on
/// `ready` when the page first shows a snapshot; each distinct snapshot
/// the page showed, in order.
async fn follow_in_browser(
    base: &str,
    csv: &Path,
    n: usize,
    ready: std::sync::mpsc::Sender<()>,
) -> Vec<Value> {
    let (_driver, c) = browser().await;
    c.goto(&format!("{base}/live")).await.unwrap();
    let fill = format!(
        "document.querySelector('input[name=user]').value = 'alice';\
         document.querySelector('input[name=password]').value = '{PASSWORD}';\
         document.querySelector('form.login').submit();"
    );
    c.execute(&fill, vec![]).await.unwrap();
    let mut seen: Vec<Value> = Vec::new();
    let mut shot = false;
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        assert!(Instant::now() < deadline, "calls never ended: {seen:?}");
        // A navigation in progress fails the script: read again.
        if let Ok(v) = c.execute(OBSERVE, vec![]).await
            && v["seq"].as_i64().unwrap_or(-1) > 0
            && seen.last().is_none_or(|l| l["seq"] != v["seq"])
        {
            let open = v["open"].as_array().map_or(0, Vec::len);
            if open >= 2 && !shot {
                let png = c.screenshot().await.unwrap();
                std::fs::write(screenshots_dir().join("live-lab.png"), png).unwrap();
                shot = true;
            }
            let done = open == 0 && csv_rows(csv) >= n;
            let _ = ready.send(());
            seen.push(v);
            if done {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshots_dir().join("live-lab-ended.png"), png).unwrap();
    c.close().await.unwrap();
    seen
}

/// One call: shown open at least 3 times with a growing duration, then
/// ended with calls.csv's duration, RTP packets, state and parties.
fn check(seen: &[Value], c: &HashMap<String, String>) {
    let cid = c["call_id"].as_str();
    let find = |v: &Value, list: &str| -> Option<Value> {
        v[list].as_array()?.iter().find(|r| r["id"] == cid).cloned()
    };
    let open: Vec<f64> = seen
        .iter()
        .filter_map(|v| find(v, "open"))
        .map(|r| r["dur"].as_f64().unwrap())
        .collect();
    assert!(open.len() >= 3, "{cid}: open on {} snapshots", open.len());
    assert!(open.windows(2).all(|w| w[1] > w[0]), "{cid}: {open:?}");
    let at = seen
        .iter()
        .position(|v| find(v, "ended").is_some())
        .unwrap_or_else(|| panic!("{cid} never shown ended"));
    assert!(seen[at..].iter().all(|v| find(v, "open").is_none()));
    let e = find(&seen[at], "ended").unwrap();
    assert_eq!(
        format!("{:.3}", e["dur"].as_f64().unwrap()),
        c["duration_s"]
    );
    assert_eq!(e["rtp"].to_string(), c["rtp_packets"], "{cid}");
    let cells: Vec<&str> = e["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert_eq!(cells[1], c["state"], "{cid}");
    assert_eq!((cells[4], cells[5]), (c["from"].as_str(), c["to"].as_str()));
}
