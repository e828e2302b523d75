//! The hosts page and its API against a real rpcapd on loopback: start a
//! capture of a ticked host through the web (login and CSRF required), see
//! its counters grow, stop it, and check the segments with tshark. Needs
//! root (rpcapd captures on lo), rpcapd (scripts/build-rpcapd.sh), tshark.

use crate::common;

use std::net::UdpSocket;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION};

const RPCAPD: &str = "/usr/local/sbin/rpcapd";

/// rpcapd -n on 127.0.0.1:port in its own process group, killed on drop
/// (it forks a child per client).
struct Rpcapd(Child);

impl Rpcapd {
    fn start(port: u16) -> Rpcapd {
        assert!(
            Path::new(RPCAPD).exists(),
            "{RPCAPD} not found: run scripts/build-rpcapd.sh"
        );
        let child = Command::new(RPCAPD)
            .args(["-4", "-n", "-b", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start rpcapd");
        let r = Rpcapd(child);
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let out = Command::new("ss")
                .args(["-ltnH", &format!("sport = :{port}")])
                .output()
                .expect("ss");
            if String::from_utf8_lossy(&out.stdout).contains("LISTEN") {
                break;
            }
            assert!(Instant::now() < until, "rpcapd did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }
}

impl Drop for Rpcapd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

fn tshark_count(p: &Path) -> u64 {
    tshark(&[
        "-r",
        p.to_str().unwrap(),
        "-T",
        "fields",
        "-e",
        "frame.number",
    ])
    .lines()
    .count() as u64
}

async fn status(base: &str, cookie: &str) -> serde_json::Value {
    let r = client()
        .get(format!("{base}/api/remote"))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    serde_json::from_str(&r.text().await.unwrap()).unwrap()
}

/// UDP to 127.0.0.1:port every 10 ms until `stop` (30 s at most).
fn udp_sender(port: u16) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let h = std::thread::spawn(move || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let until = Instant::now() + Duration::from_secs(30);
        while !stop2.load(Ordering::Relaxed) && Instant::now() < until {
            let _ = s.send_to(b"tick", ("127.0.0.1", port));
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    (stop, h)
}

/// rpcapd, a data directory with a hosts file (one loopback host, one
/// placeholder rpcaps host in a sub-region) and a server using it.
async fn setup() -> (Rpcapd, tempfile::TempDir, voxtap_web::Running) {
    let port = free_port();
    let rpcapd = Rpcapd::start(port);
    let data = tempfile::tempdir().unwrap();
    let hosts = data.path().join("hosts.toml");
    std::fs::write(
        &hosts,
        format!(
            "[defaults]\ninterfaces = [\"eth0\"]\n\n\
             [environments.lab.regions.local.hosts.loopback]\naddress = \"127.0.0.1\"\nport = {port}\ninterfaces = [\"lo\"]\n\n\
             [environments.prod.regions.eu-west.subregions.az1.hosts.sbc-1]\naddress = \"10.10.1.11\"\ninterfaces = [\"eth0\", \"eth1\"]\ntls = true\n"
        ),
    )
    .unwrap();
    let mut cfg = config();
    cfg.remote.hosts = Some(hosts.clone());
    let srv = voxtap_web::start(voxtap_web::ServeOptions {
        data: data.path().to_path_buf(),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        config: cfg,
        insecure_no_auth: false,
    })
    .await
    .unwrap();
    (rpcapd, data, srv)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_page_starts_and_stops_a_remote_capture() {
    let t0 = Instant::now();
    let (_rpcapd, data, srv) = setup().await;
    let base = format!("http://{}", srv.addr);
    let c = client();

    // Login required: the page redirects, the API and the form refuse.
    let r = c.get(format!("{base}/hosts")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        r.headers()[LOCATION]
            .to_str()
            .unwrap()
            .starts_with("/login")
    );
    let r = c.get(format!("{base}/api/remote")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .post(format!("{base}/hosts/start"))
        .form(&[("host", "lab/local/loopback")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(!data.path().join("remote").exists());

    let cookie = login(&base, USER, PASSWORD).await.expect("login");
    let html = c
        .get(format!("{base}/hosts"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The tree: environment > region > sub-region > host, with interfaces.
    for want in [
        ">lab<",
        ">local<",
        ">prod<",
        ">eu-west<",
        ">az1<",
        "value=\"lab/local/loopback\"",
        "value=\"prod/eu-west/az1/sbc-1\"",
        "data-unit=\"lab/local/loopback lo\"",
        "data-unit=\"prod/eu-west/az1/sbc-1 eth1\"",
        "rpcaps",
        "/static/hosts.js",
    ] {
        assert!(html.contains(want), "{want} not in the page:\n{html}");
    }
    let csrf = hidden_csrf(&html);
    let traffic = free_port();
    let filter = format!("udp port {traffic}");
    let start_form = |csrf: &str| {
        vec![
            ("csrf", csrf.to_string()),
            ("host", "lab/local/loopback".to_string()),
            ("filter", filter.clone()),
            ("transport", "tcp".to_string()),
            ("duration", String::new()),
        ]
    };
    // CSRF: a logged-in browser tricked into posting is refused.
    let r = c
        .post(format!("{base}/hosts/start"))
        .header(COOKIE, &cookie)
        .form(&start_form(&"0".repeat(64)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // UDP with an rpcaps host: refused with the reason.
    let r = c
        .post(format!("{base}/hosts/start"))
        .header(COOKIE, &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("host", "prod/eu-west/az1/sbc-1"),
            ("transport", "udp"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("refuses the UDP data channel with TLS")
    );
    // A bad filter is answered at once.
    let r = c
        .post(format!("{base}/hosts/start"))
        .header(COOKIE, &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("host", "lab/local/loopback"),
            ("filter", "udp prot 5060"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let r = c
        .post(format!("{base}/hosts/start"))
        .header(COOKIE, &cookie)
        .form(&start_form(&csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "{}",
        r.text().await.unwrap()
    );
    let r = c
        .post(format!("{base}/hosts/start"))
        .header(COOKIE, &cookie)
        .form(&start_form(&csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT, "one capture at a time");

    let (stop_sender, sender) = udp_sender(traffic);
    let mut seen: Vec<u64> = Vec::new();
    let until = Instant::now() + Duration::from_secs(60);
    let mut last = serde_json::Value::Null;
    while seen.len() < 3 {
        assert!(
            Instant::now() < until,
            "counters did not grow: {seen:?} {last}"
        );
        tokio::time::sleep(Duration::from_millis(600)).await;
        last = status(&base, &cookie).await;
        assert_eq!(last["running"], true, "{last}");
        let u = &last["status"]["units"][0];
        if u["state"] == "capturing"
            && let Some(n) = u["packets"].as_u64()
            && n > 0
            && seen.last().is_none_or(|&l| n > l)
        {
            assert_eq!(u["host"], "lab/local/loopback");
            assert_eq!(u["interface"], "lo");
            seen.push(n);
        }
    }
    eprintln!("web counters over time: {seen:?}");
    assert!(
        last["status"].get("out").is_none(),
        "no server paths: {last}"
    );
    assert_eq!(last["run"]["filter"], filter.as_str());
    assert_eq!(last["run"]["transport"], "tcp");

    stop_sender.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = c
        .post(format!("{base}/hosts/stop"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c
        .post(format!("{base}/hosts/stop"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let s = status(&base, &cookie).await;
    eprintln!("after stop: {s}");
    assert_eq!(s["running"], false, "{s}");
    assert_eq!(s["status"]["running"], false, "{s}");
    let u = &s["status"]["units"][0];
    assert_eq!(u["state"], "done", "{s}");
    let packets = u["packets"].as_u64().unwrap();
    assert_eq!(
        u["remote_sent"].as_u64().unwrap(),
        packets,
        "rpcapd's count"
    );
    let result = s["run"]["result"][0].as_str().unwrap();
    assert!(
        result.contains(&format!("lab/local/loopback lo: {packets} packets")),
        "{result}"
    );

    // The files: the same layout as `voxtap remote capture`, read by tshark.
    let out: PathBuf = data.path().join(s["run"]["out"].as_str().unwrap());
    assert!(
        out.starts_with(data.path().join("remote")),
        "{}",
        out.display()
    );
    let dir = out.join("lab/local/loopback/lo");
    let segs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    let in_files: u64 = segs.iter().map(|p| tshark_count(p)).sum();
    eprintln!(
        "{packets} packets counted, {in_files} in {} segment(s) by tshark",
        segs.len()
    );
    assert_eq!(in_files, packets);
    assert!(packets > 50, "{packets}");
    // Same files the CLI's `remote status --out` reads.
    let tsv = std::fs::read_to_string(out.join("status.tsv")).unwrap();
    assert!(
        tsv.contains(&format!("lab/local/loopback\tlo\tdone\t{packets}\t")),
        "{tsv}"
    );
    assert!(!out.join("voxtap-remote.pid").exists());
    let r = c
        .post(format!("{base}/hosts/stop"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT, "nothing left to stop");
    eprintln!("test took {:?}", t0.elapsed());
}

// ---------------------------------------------------------------- browser

/// The loopback host's counter cells `keys`, read in one script: the page
/// rewrites them every second, and the Start and Stop forms reload it, so
/// an element found first can be stale by the time its text is read.
async fn cells<const N: usize>(c: &fantoccini::Client, keys: [&str; N]) -> [String; N] {
    let v = c
        .execute(
            "const row = document.querySelector('tr[data-unit=\"lab/local/loopback lo\"]');
             return arguments[0].map(k => {
                 const td = row && row.querySelector('td[data-k=' + k + ']');
                 return td ? td.textContent : '';
             });",
            vec![serde_json::json!(keys.as_slice())],
        )
        .await
        .unwrap();
    let got: Vec<String> = serde_json::from_value(v).unwrap();
    got.try_into().unwrap()
}

/// The text of an element by id, read in one script (`""` when hidden or
/// absent, as WebDriver gives for a hidden element).
async fn text_of(c: &fantoccini::Client, id: &str) -> String {
    let v = c
        .execute(
            "const e = document.getElementById(arguments[0]); return e && !e.hidden ? e.textContent : '';",
            vec![serde_json::json!(id)],
        )
        .await
        .unwrap();
    v.as_str().unwrap().to_string()
}

/// The page in Chromium: tick the host, Start, watch the counters the page's
/// script fills in grow, Stop, see `done` with the final count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_page_in_a_browser() {
    use fantoccini::Locator;
    let t0 = Instant::now();
    let (_rpcapd, data, srv) = setup().await;
    let base = format!("http://{}", srv.addr);
    let (_driver, c) = browser().await;
    c.goto(&format!("{base}/hosts")).await.unwrap();
    log_in(&c, USER, PASSWORD).await;
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("form#remote"))
        .await
        .expect("the hosts page after login");
    let traffic = free_port();
    c.find(Locator::Css(
        "input[name=host][value=\"lab/local/loopback\"]",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    let f = c.find(Locator::Css("input[name=filter]")).await.unwrap();
    f.clear().await.unwrap();
    f.send_keys(&format!("udp port {traffic}")).await.unwrap();
    let (stop_sender, sender) = udp_sender(traffic);
    c.find(Locator::Css("form#remote button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let mut seen: Vec<u64> = Vec::new();
    let until = Instant::now() + Duration::from_secs(20);
    while seen.len() < 3 {
        assert!(
            Instant::now() < until,
            "page counters did not grow: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
        let [packets, state] = cells(&c, ["packets", "state"]).await;
        let Ok(n) = packets.parse::<u64>() else {
            continue;
        };
        if n > 0 && seen.last().is_none_or(|&l| n > l) {
            assert_eq!(state, "capturing");
            seen.push(n);
        }
    }
    eprintln!("page counters over time: {seen:?}");
    let line = text_of(&c, "remote-status").await;
    assert!(
        line.contains("Capture running into remote/")
            && line.contains(&format!(
                "filter 'udp port {traffic}' over tcp, until stopped"
            )),
        "{line}"
    );
    std::fs::write(
        screenshots_dir().join("hosts.png"),
        c.screenshot().await.unwrap(),
    )
    .unwrap();

    stop_sender.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.find(Locator::Css("form[action=\"/hosts/stop\"] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    let (shown, result) = loop {
        let [state, packets] = cells(&c, ["state", "packets"]).await;
        let result = text_of(&c, "remote-result").await;
        if state == "done" && !result.is_empty() {
            break (packets.parse::<u64>().unwrap(), result);
        }
        assert!(
            Instant::now() < until,
            "state never became done with a result: {state} {result:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let status = voxtap_sensor::status::read(data.path(), "remote").unwrap();
    let u = &status["units"][0];
    assert_eq!(shown, u["packets"].as_u64().unwrap(), "{status}");
    assert_eq!(shown, u["remote_sent"].as_u64().unwrap(), "{status}");
    assert!(shown > seen[2], "{shown} after {seen:?}");
    assert!(
        result.contains(&format!("lab/local/loopback lo: {shown} packets")),
        "{result}"
    );
    eprintln!(
        "page after stop: {shown} packets, done; test took {:?}",
        t0.elapsed()
    );
    c.close().await.unwrap();
}
