//! Post-capture correlation end to end in headless Chromium
//! (rtp-capture-tool's workflow). In the namespace lab a corpus B2BUA call
//! (leg 1 SRTP with SDES keys, leg 2 plain RTP) is replayed with tcpreplay
//! onto the caller's link, which the lab mirrors to the sensor's port;
//! there rpcapd captures the media only (a filter without the SIP ports)
//! and tcpdump the SIP only. The Hosts page starts and stops the remote
//! capture, the SIP pcap is added through its form with a direction, and
//! the three downloads per leg are checked with tshark against the corpus
//! file: frame counts, SIP in the right files only, SRTP decrypted (the
//! decrypted payloads are the plaintext the B2BUA forwarded in clear on
//! leg 2), sides per direction. Needs root, rpcapd, tcpreplay, tcpdump,
//! tshark, chromedriver.

use crate::common;

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fantoccini::Locator;
use reqwest::StatusCode;
use reqwest::header::COOKIE;
use voxtap_testkit::lab::{Bg, Lab, in_ns, require_root, start_tcpdump_with};
use voxtap_testkit::tshark::{count, tshark_call_frames};
use voxtap_testkit::wait_until;

const RPCAPD: &str = "/usr/local/sbin/rpcapd";
const FILE: &str = "generated/baresip-b2bua-2legs-srtp-to-rtp.pcap";
/// Caller -> B2BUA, SRTP (SDES); the leg the call arrives on.
const SRTP_LEG: &str = "da0880d79951761b";
/// B2BUA -> callee, plain RTP.
const PLAIN_LEG: &str = "9a12eab4522a94c3";
const HOST: &str = "lab/ns/sensor";
/// The lab's 10.N.0.0/24 and, for RPCAP, 10.N.9.0/24.
const NET: u8 = 226;

/// The corpus call as tshark sees it: per leg, its SIP frames and all its
/// frames; the SIP ports.
struct Expected {
    sip_ports: BTreeSet<u16>,
    /// (Call-ID, SIP frames, all frames).
    legs: Vec<(&'static str, usize, usize)>,
    media: usize,
    sip: usize,
}

fn expected(file: &Path) -> Expected {
    let ports = tshark(&[
        "-r",
        file.to_str().unwrap(),
        "-Y",
        "sip",
        "-T",
        "fields",
        "-E",
        "separator=,",
        "-e",
        "udp.srcport",
        "-e",
        "udp.dstport",
    ]);
    let sip_ports: BTreeSet<u16> = ports
        .split([',', '\n'])
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    let legs: Vec<(&str, usize, usize)> = [SRTP_LEG, PLAIN_LEG]
        .into_iter()
        .map(|cid| {
            (
                cid,
                sip_message_count(file, cid),
                tshark_call_frames(file, cid).len(),
            )
        })
        .collect();
    let sip = count(file, Some("sip"));
    let media = count(file, None) - sip;
    Expected {
        sip_ports,
        legs,
        media,
        sip,
    }
}

fn port_filter(ports: &BTreeSet<u16>) -> String {
    ports
        .iter()
        .map(|p| format!("port {p}"))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// A veth from this namespace to the lab's sensor namespace, so the web
/// server reaches rpcapd there (removed with the namespace).
fn rpcap_link(lab: &Lab) -> (String, String) {
    let (here, there) = (format!("{}R", lab.p), format!("{}r", lab.p));
    let (a, b) = (format!("10.{NET}.9.1"), format!("10.{NET}.9.2"));
    let s = lab.ns('s');
    for args in [
        vec![
            "link", "add", &here, "type", "veth", "peer", "name", &there, "netns", &s,
        ],
        vec!["addr", "add", &format!("{a}/24"), "dev", &here],
        vec!["link", "set", &here, "up"],
        vec!["-n", &s, "addr", "add", &format!("{b}/24"), "dev", &there],
        vec!["-n", &s, "link", "set", &there, "up"],
    ] {
        let st = Command::new("ip").args(&args).status().unwrap();
        assert!(st.success(), "ip {args:?}");
    }
    (a, b)
}

/// rpcapd -n in the sensor namespace, in its own process group (it forks
/// a child per client; `Bg` kills the group).
fn start_rpcapd(lab: &Lab, addr: &str, port: u16) -> Bg {
    assert!(
        Path::new(RPCAPD).exists(),
        "{RPCAPD} not found: run scripts/build-rpcapd.sh"
    );
    let mut c = in_ns(
        &lab.ns('s'),
        &[RPCAPD, "-4", "-n", "-b", addr, "-p", &port.to_string()],
    );
    c.stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let bg = Bg(Some(c.spawn().expect("rpcapd")));
    wait_until(Duration::from_secs(30), "rpcapd listening", || {
        let out = in_ns(&lab.ns('s'), &["ss", "-ltnH", &format!("sport = :{port}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .contains("LISTEN")
            .then_some(())
    });
    bg
}

/// Whole records in a classic pcap file that may still be being written
/// (a record cut short at the end is not counted).
fn whole_records(file: &Path) -> usize {
    let bytes = std::fs::read(file).unwrap_or_default();
    let (mut at, mut n) = (24usize, 0usize);
    while let Some(hdr) = bytes.get(at..at + 16) {
        let caplen = u32::from_le_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]) as usize;
        if bytes.len() < at + 16 + caplen {
            break;
        }
        at += 16 + caplen;
        n += 1;
    }
    n
}

/// The sensor host's counter cells, read in one script.
async fn unit_cells(c: &fantoccini::Client) -> (String, String) {
    let v = c
        .execute(
            "const row = document.querySelector('tr[data-unit]');
             const t = k => { const td = row && row.querySelector('td[data-k=' + k + ']'); return td ? td.textContent : ''; };
             return [t('state'), t('packets')];",
            vec![],
        )
        .await
        .unwrap_or_default();
    let v: Vec<String> = serde_json::from_value(v).unwrap_or_default();
    (
        v.first().cloned().unwrap_or_default(),
        v.get(1).cloned().unwrap_or_default(),
    )
}

/// Polls the browser's page with `script` until it returns a non-null
/// value (a navigation in progress fails the script: read again).
async fn poll(
    c: &fantoccini::Client,
    what: &str,
    limit: Duration,
    script: &str,
) -> serde_json::Value {
    let until = Instant::now() + limit;
    loop {
        if let Ok(v) = c.execute(script, vec![]).await
            && !v.is_null()
        {
            return v;
        }
        assert!(Instant::now() < until, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One leg as the correlation page lists it.
#[derive(Debug, serde::Deserialize)]
struct Leg {
    cid: String,
    side: String,
    links: Vec<String>,
}

const LEGS: &str = "
const t = document.getElementById('correlated');
if (!t) { const e = document.getElementById('correlation-error'); return e ? {error: e.textContent} : null; }
const b = t.querySelector('tr.bundle a');
return {bundle: b ? b.getAttribute('href') : null,
  legs: Array.from(t.querySelectorAll('tr.leg')).map(r => ({cid: r.dataset.callId, side: r.dataset.side,
    links: Array.from(r.querySelectorAll('a.dl')).map(a => a.getAttribute('href'))}))};";

/// What the correlation page lists.
#[derive(Debug, serde::Deserialize)]
struct Listed {
    legs: Vec<Leg>,
    /// The all-legs SIP_plus_media_decrypted.pcap.
    bundle: Option<String>,
}

/// Adds `sip` to the run through the Hosts page's form with `direction`;
/// the legs the correlation page lists once the import is done.
async fn correlate(c: &fantoccini::Client, base: &str, sip: &Path, direction: &str) -> Listed {
    c.goto(&format!("{base}/hosts")).await.unwrap();
    let form = c
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("form.add-sip"))
        .await
        .expect("an Add SIP pcap form on the finished run");
    form.find(Locator::Css("input[name=sip]"))
        .await
        .unwrap()
        .send_keys(sip.to_str().unwrap())
        .await
        .unwrap();
    form.find(Locator::Css(&format!("option[value={direction}]")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    form.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let v = poll(c, "the correlation's calls", Duration::from_secs(60), LEGS).await;
    assert!(v.get("error").is_none(), "correlation failed: {v}");
    let shown = c
        .find(Locator::Id("direction"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(shown, direction);
    serde_json::from_value(v).unwrap()
}

async fn download(base: &str, cookie: &str, href: &str, to: &Path) -> PathBuf {
    let r = client()
        .get(format!("{base}{href}"))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{href}");
    let name = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    let file = href
        .rsplit('/')
        .next()
        .unwrap()
        .trim_end_matches("?download=1");
    assert!(name.ends_with(&format!("-{file}\"")), "{name}");
    let id = href.split('/').nth(2).unwrap();
    let p = to.join(format!("{id}-{file}"));
    std::fs::write(&p, r.bytes().await.unwrap()).unwrap();
    p
}

/// RTP payloads (hex) of `file` from `src_port`, as tshark dissects them.
fn payloads(file: &Path, src_port: Option<u16>) -> Vec<String> {
    let filter = match src_port {
        Some(p) => format!("rtp && udp.srcport == {p}"),
        None => "rtp".into(),
    };
    tshark(&[
        "-r",
        file.to_str().unwrap(),
        "-o",
        "rtp.heuristic_rtp:TRUE",
        "-Y",
        &filter,
        "-T",
        "fields",
        "-e",
        "rtp.payload",
    ])
    .lines()
    .map(|l| l.replace(':', ""))
    .filter(|l| !l.is_empty())
    .collect()
}

fn field_set(file: &Path, filter: &str, field: &str) -> BTreeSet<String> {
    tshark(&[
        "-r",
        file.to_str().unwrap(),
        "-o",
        "rtp.heuristic_rtp:TRUE",
        "-Y",
        filter,
        "-T",
        "fields",
        "-e",
        field,
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

/// The downloads of one leg against the corpus: frame counts, SIP only in
/// the SIP file, decrypted media that is plain RTP.
fn check_leg(leg: &Leg, files: &[PathBuf; 3], exp: &Expected, corpus_file: &Path) {
    let &(_, sip, all) = exp.legs.iter().find(|l| l.0 == leg.cid).unwrap();
    let [raw, dec, both] = files;
    eprintln!(
        "leg {} ({}): expecting {sip} SIP + {} media frames",
        leg.cid,
        leg.side,
        all - sip
    );
    assert_eq!(count(raw, None), all - sip, "media_raw of {}", leg.cid);
    assert_eq!(count(raw, Some("sip")), 0);
    assert_eq!(
        count(dec, None),
        all - sip,
        "media_decrypted of {}",
        leg.cid
    );
    assert_eq!(
        count(both, None),
        all,
        "SIP_plus_media_decrypted of {}",
        leg.cid
    );
    assert_eq!(count(both, Some("sip")), sip);
    // PCMU (0) only, in both files.
    assert_eq!(
        field_set(dec, "rtp", "rtp.p_type"),
        BTreeSet::from(["0".to_string()])
    );
    let raw_p = payloads(raw, None);
    let dec_p = payloads(dec, None);
    assert_eq!(raw_p.len(), dec_p.len());
    if leg.cid == SRTP_LEG {
        // SRTP: each payload loses its 10-byte HMAC-SHA1-80 tag and its
        // ciphertext turns into the plaintext the B2BUA forwarded in
        // clear on leg 2 (the corpus's own packets, not our output).
        assert!(
            raw_p
                .iter()
                .zip(&dec_p)
                .all(|(r, d)| r.len() == d.len() + 20 && r[..d.len()] != d[..]),
            "SRTP payloads not decrypted"
        );
        assert_plaintext(dec, corpus_file);
        assert!(
            tshark(&[
                "-r",
                both.to_str().unwrap(),
                "-Y",
                "sdp.media.proto contains \"SAVP\""
            ])
            .is_empty(),
            "SDP still says SAVP"
        );
    } else {
        assert_eq!(raw_p, dec_p, "plain RTP served as captured");
    }
}

/// The audio decrypted on leg 1 reappears, byte for byte, in what the
/// B2BUA relayed in clear on leg 2: the caller's (A 20098 -> B2BUA, then
/// B2BUA 23058 -> C) and the callee's (C 22030 -> B2BUA, then B2BUA 23090
/// -> A).
fn assert_plaintext(dec: &Path, corpus_file: &Path) {
    for (srtp_src, clear_src) in [(20098, 23058), (23090, 22030)] {
        let ours = payloads(dec, Some(srtp_src));
        let clear: BTreeSet<String> = payloads(corpus_file, Some(clear_src)).into_iter().collect();
        let same = ours.iter().filter(|p| clear.contains(*p)).count();
        eprintln!(
            "decrypted payloads from port {srtp_src} found in the clear from {clear_src}: {same} of {}",
            ours.len()
        );
        assert!(
            ours.len() >= 290 && same * 10 >= ours.len() * 9,
            "{same} of {}",
            ours.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_media_plus_uploaded_sip_correlate_in_a_browser() {
    require_root();
    // No lock: the lab's namespaces are this test's own, so nothing else
    // reaches the sensor port the counts are taken on.
    let t0 = Instant::now();
    let corpus_file = corpus(FILE);
    let exp = expected(&corpus_file);
    let lab = Lab::up(&format!("vq{}", std::process::id() % 10000), NET);
    let (_, rpcap_addr) = rpcap_link(&lab);
    let port = free_port();
    let _rpcapd = start_rpcapd(&lab, &rpcap_addr, port);
    let work = tempfile::tempdir().unwrap();
    let sip_pcap = work.path().join("sip.pcap");
    let sip_filter = format!("udp and ({})", port_filter(&exp.sip_ports));
    // Each frame handed over as it comes, not in blocks retired on a
    // timeout: the test waits for the file to hold them all.
    let tcpdump = start_tcpdump_with(&lab, &sip_pcap, &sip_filter, &["--immediate-mode"]);

    let data = tempfile::tempdir().unwrap();
    let hosts = data.path().join("hosts.toml");
    std::fs::write(
        &hosts,
        format!(
            "[environments.lab.regions.ns.hosts.sensor]\naddress = \"{rpcap_addr}\"\nport = {port}\ninterfaces = [\"{}\"]\n",
            lab.sensor_if()
        ),
    )
    .unwrap();
    let mut cfg = config();
    cfg.remote.hosts = Some(hosts);
    cfg.remote.max_sip_upload_mb = Some(1);
    let srv = voxtap_web::start(voxtap_web::ServeOptions {
        data: data.path().to_path_buf(),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        config: cfg,
        insecure_no_auth: false,
    })
    .await
    .unwrap();
    let base = format!("http://{}", srv.addr);

    // Start the media capture from the page.
    let (driver, c) = browser().await;
    c.goto(&format!("{base}/hosts")).await.unwrap();
    log_in(&c, USER, PASSWORD).await;
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("form#remote"))
        .await
        .expect("the hosts page after login");
    c.find(Locator::Css(&format!("input[name=host][value=\"{HOST}\"]")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let media_filter = format!("udp and not ({})", port_filter(&exp.sip_ports));
    let f = c.find(Locator::Css("input[name=filter]")).await.unwrap();
    f.clear().await.unwrap();
    f.send_keys(&media_filter).await.unwrap();
    c.find(Locator::Css("form#remote button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while unit_cells(&c).await.0 != "capturing" {
        assert!(Instant::now() < until, "the capture never started");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The call, replayed onto the caller's link (mirrored to the sensor).
    let out = in_ns(
        &lab.ns('a'),
        &[
            "tcpreplay",
            "-q",
            "-i",
            &format!("{}A", lab.p),
            corpus_file.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "tcpreplay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, packets) = unit_cells(&c).await;
        if packets == exp.media.to_string() {
            break;
        }
        assert!(
            Instant::now() < until,
            "rpcapd sent {packets} packets, expected {}",
            exp.media
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The last SIP frames (the BYEs and their answers) follow the last
    // media frame: wait until tcpdump has written them before stopping it.
    wait_until(Duration::from_secs(20), "tcpdump wrote the SIP", || {
        (whole_records(&sip_pcap) >= exp.sip).then_some(())
    });
    tcpdump.signal(libc::SIGINT);
    tcpdump.wait(Duration::from_secs(10));
    assert_eq!(count(&sip_pcap, None), exp.sip, "tcpdump's SIP");
    std::fs::write(
        screenshots_dir().join("correlate-capture.png"),
        c.screenshot().await.unwrap(),
    )
    .unwrap();
    c.find(Locator::Css("form[action=\"/hosts/stop\"] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while unit_cells(&c).await.0 != "done" {
        assert!(Instant::now() < until, "the capture never ended");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Inbound: the SRTP leg (the caller's) faces the carrier.
    let Listed { legs, bundle } = correlate(&c, &base, &sip_pcap, "inbound").await;
    std::fs::write(
        screenshots_dir().join("correlate-inbound.png"),
        c.screenshot().await.unwrap(),
    )
    .unwrap();
    let sides: Vec<(&str, &str)> = legs
        .iter()
        .map(|l| (l.cid.as_str(), l.side.as_str()))
        .collect();
    assert_eq!(sides, [(SRTP_LEG, "carrier"), (PLAIN_LEG, "core")]);
    let cookie = login(&base, USER, PASSWORD).await.unwrap();
    for leg in &legs {
        assert_eq!(leg.links.len(), 3, "{leg:?}");
        let mut files = Vec::new();
        for href in &leg.links {
            files.push(download(&base, &cookie, href, work.path()).await);
        }
        check_leg(leg, &files.try_into().unwrap(), &exp, &corpus_file);
    }
    // Both legs in one file: the whole replayed call, SRTP decrypted.
    let all = download(&base, &cookie, &bundle.expect("all-legs link"), work.path()).await;
    assert_eq!(count(&all, None), exp.media + exp.sip);
    assert_eq!(count(&all, Some("sip")), exp.sip);
    assert_eq!(count(&all, Some("sdp.media.proto contains \"SAVP\"")), 0);
    // Outbound on the same capture: the sides swap.
    let legs = correlate(&c, &base, &sip_pcap, "outbound").await.legs;
    let sides: Vec<(&str, &str)> = legs
        .iter()
        .map(|l| (l.cid.as_str(), l.side.as_str()))
        .collect();
    assert_eq!(sides, [(SRTP_LEG, "core"), (PLAIN_LEG, "carrier")]);
    std::fs::write(
        screenshots_dir().join("correlate-outbound.png"),
        c.screenshot().await.unwrap(),
    )
    .unwrap();
    // The capture on the Hosts page, with its two correlations.
    c.goto(&format!("{base}/hosts")).await.unwrap();
    let v = poll(
        &c,
        "the past captures",
        Duration::from_secs(10),
        "const a = document.querySelectorAll('#past-runs a.correlation'); return a.length ? Array.from(a).map(x => x.textContent) : null;",
    )
    .await;
    assert_eq!(
        v,
        serde_json::json!(["sip.pcap (outbound)", "sip.pcap (inbound)"])
    );
    std::fs::write(
        screenshots_dir().join("correlate-hosts.png"),
        c.screenshot().await.unwrap(),
    )
    .unwrap();
    c.close().await.unwrap();

    refusals(&base, &cookie, data.path(), work.path()).await;
    audit_has(&base, &cookie).await;
    eprintln!("test took {:?}", t0.elapsed());
    drop(driver);
    eprintln!("browser gone {:?}", t0.elapsed());
    drop(srv);
    drop(_rpcapd);
    eprintln!("rpcapd gone {:?}", t0.elapsed());
    drop(lab);
    eprintln!("lab gone {:?}", t0.elapsed());
}

/// A form post to `/hosts/runs/{run}/sip` with `file` (name, bytes).
async fn post_sip(
    base: &str,
    cookie: &str,
    run: &str,
    name: &str,
    bytes: Vec<u8>,
) -> (StatusCode, String) {
    let html = client()
        .get(format!("{base}/hosts"))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .text("csrf", hidden_csrf(&html))
        .text("direction", "inbound")
        .part(
            "sip",
            reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()),
        );
    let r = client()
        .post(format!("{base}/hosts/runs/{run}/sip"))
        .header(COOKIE, cookie)
        .multipart(form)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

/// Not a pcap, too big, a run without media: refused with the reason.
async fn refusals(base: &str, cookie: &str, data: &Path, work: &Path) {
    let run = std::fs::read_dir(data.join("remote"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name()
        .to_string_lossy()
        .to_string();
    // Operators only: a listener (bearer token) is refused the page.
    let r = client()
        .get(format!("{base}/hosts/runs/{run}/correlations/1-1"))
        .bearer_auth(format!("{API_USER}:{API_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let sip = std::fs::read(work.join("sip.pcap")).unwrap();
    for bad_run in ["nonexistent", "..", "%2e%2e"] {
        let (st, msg) = post_sip(base, cookie, bad_run, "sip.pcap", sip.clone()).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{bad_run}: {msg}");
    }
    let (st, msg) = post_sip(base, cookie, &run, "notes.txt", b"INVITE sip:bob".to_vec()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{msg}");
    assert!(msg.contains("is not a pcap or pcapng capture"), "{msg}");
    let mut big = std::fs::read(work.join("sip.pcap")).unwrap();
    big.resize(3 << 20, 0);
    let (st, msg) = post_sip(base, cookie, &run, "big.pcap", big).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{msg}");
    assert!(msg.contains("larger than the 1 MB allowed"), "{msg}");
    // A capture that recorded nothing: a segment with its header only.
    let empty = data.join("remote/20000101T000000/lab/ns/sensor/x");
    std::fs::create_dir_all(&empty).unwrap();
    let header = &std::fs::read(work.join("sip.pcap")).unwrap()[..24];
    std::fs::write(empty.join("lab_ns_sensor_x_0001.pcap"), header).unwrap();
    let sip = std::fs::read(work.join("sip.pcap")).unwrap();
    let (st, msg) = post_sip(base, cookie, "20000101T000000", "sip.pcap", sip).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{msg}");
    assert!(msg.contains("holds no media"), "{msg}");
}

/// The uploads and the downloads are in the audit log.
async fn audit_has(base: &str, cookie: &str) {
    let r = client()
        .get(format!("{base}/api/audit"))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    let log: serde_json::Value = serde_json::from_str(&text).unwrap();
    let entries = log
        .as_array()
        .or_else(|| log["entries"].as_array())
        .expect("audit entries");
    let has = |action: &str, detail: &str| {
        entries
            .iter()
            .filter(|e| {
                e["action"] == action && e["detail"].as_str().unwrap_or("").contains(detail)
            })
            .count()
    };
    assert_eq!(
        has("correlate", "(inbound): SIP pcap sip.pcap"),
        1,
        "{text}"
    );
    assert_eq!(
        has("correlate", "(outbound): SIP pcap sip.pcap"),
        1,
        "{text}"
    );
    assert_eq!(has("download", "media_raw.pcap (media.pcap)"), 2, "{text}");
    assert_eq!(
        has("decrypted", "media_decrypted.pcap (media-decrypted.pcap)"),
        1,
        "{text}"
    );
    assert_eq!(
        has(
            "decrypted",
            "SIP_plus_media_decrypted.pcap (call-decrypted.pcap)"
        ),
        1,
        "{text}"
    );
    assert_eq!(
        has("decrypted", "sip-plus-media-decrypted.pcap"),
        1,
        "{text}"
    );
    assert_eq!(
        has("decrypted", "SIP_plus_media_decrypted.pcap (call.pcap)"),
        1,
        "{text}"
    );
}

/// The legs a correlation page lists, read from its HTML.
fn legs_in(html: &str) -> Vec<Leg> {
    html.split("<tr class=\"leg\"")
        .skip(1)
        .map(|row| {
            let row = &row[..row.find("</tr>").unwrap()];
            let attr = |k: &str| {
                let i = row.find(&format!("{k}=\"")).unwrap() + k.len() + 2;
                row[i..i + row[i..].find('"').unwrap()].to_string()
            };
            let links = row
                .split("href=\"")
                .skip(1)
                .map(|s| s[..s.find('"').unwrap()].to_string())
                .filter(|h| h.contains("/correlated/"))
                .collect();
            Leg {
                cid: attr("data-call-id"),
                side: attr("data-side"),
                links,
            }
        })
        .collect()
}

/// The corpus call's media written by the sensor's rolling writer (rolled
/// at 64 KiB: several files) into `store` the way `voxtap run` writes it,
/// every file's time range in store.sqlite.
fn rolling_store(media: &Path, store: &Path) {
    use voxtap_sensor::store::{Retention, RollPolicy, RollingWriter, StoreManager};
    let (tx, rx) = std::sync::mpsc::channel();
    let mut mgr = StoreManager::open(store, Retention::default()).unwrap();
    let policy = RollPolicy {
        max_bytes: 64 << 10,
        max_ns: u64::MAX / 2,
        buffer_bytes: 1 << 16,
    };
    let mut roll = RollingWriter::new(store, policy, mgr.next_file_id().unwrap(), tx).unwrap();
    let mut r = voxtap_engine::pcapfile::open(media).unwrap();
    while let Some(rec) = r.next_packet().unwrap() {
        roll.write(rec.ts_ns, rec.orig_len, rec.data).unwrap();
        for ev in rx.try_iter() {
            mgr.on_event(ev).unwrap();
        }
    }
    roll.close().unwrap();
    for ev in rx.try_iter() {
        mgr.on_event(ev).unwrap();
    }
}

/// Uploads the store's rolling files to S3 and deletes the local copies;
/// the number of files uploaded.
async fn upload_store(cfg: &voxtap_sensor::upload::UploadConfig, store: &Path) -> u64 {
    let (cfg, store) = (cfg.clone(), store.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let mut up = voxtap_sensor::upload::Uploader::new(&cfg, &store, None, None).unwrap();
        up.s3().create_bucket().unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        assert!(up.drain(&stop, Duration::from_secs(60)).unwrap());
        up.status().uploads
    })
    .await
    .unwrap()
}

/// The rolling files left on disk.
fn local_pcaps(store: &Path) -> usize {
    walk(store)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .count()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// Posts `sip` to the S3 session's form; the correlation page's path.
async fn post_s3_sip(base: &str, cookie: &str, sip: &Path, direction: &str) -> String {
    let hosts = get_page(base, cookie, "/hosts").await;
    let form = reqwest::multipart::Form::new()
        .text("csrf", hidden_csrf(&hosts))
        .text("direction", direction.to_string())
        .part(
            "sip",
            reqwest::multipart::Part::bytes(std::fs::read(sip).unwrap()).file_name("sip.pcap"),
        );
    let r = client()
        .post(format!("{base}/hosts/s3/sip"))
        .header(COOKIE, cookie)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{:?}", r.text().await);
    r.headers()["location"].to_str().unwrap().to_string()
}

/// Polls the correlation page until its import is done (or failed).
async fn correlated_page(base: &str, cookie: &str, path: &str) -> String {
    correlation_ended(base, cookie, path, true).await
}

/// Polls the correlation page until its import ended, `ok` or failed as
/// said (the other end fails the test); the page.
async fn correlation_ended(base: &str, cookie: &str, path: &str, ok: bool) -> String {
    let (want, not) = if ok {
        ("id=\"correlated\"", "id=\"correlation-error\"")
    } else {
        ("id=\"correlation-error\"", "id=\"correlated\"")
    };
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let html = get_page(base, cookie, path).await;
        assert!(!html.contains(not), "{html}");
        if html.contains(want) {
            return html;
        }
        assert!(
            Instant::now() < until,
            "the correlation never ended ({want})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// rtp-capture-tool's workflow on an S3 session: the corpus B2BUA call's
/// media (no SIP) in the sensor's rolling files, uploaded to S3 (s3s-fs)
/// and deleted locally; its SIP pcap posted with a direction; the media
/// fetched back from S3 and imported with it; the three downloads per leg
/// checked with tshark against the corpus file as in the browser test
/// (SRTP decrypted). HTTP only: the form is the same as a remote run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_session_media_plus_uploaded_sip_correlate() {
    voxtap_testkit::aws_env();
    let t0 = Instant::now();
    let corpus_file = corpus(FILE);
    let exp = expected(&corpus_file);
    let work = tempfile::tempdir().unwrap();
    let (sip, media) = (work.path().join("sip.pcap"), work.path().join("media.pcap"));
    for (filter, out) in [("sip", &sip), ("not sip", &media)] {
        let f = corpus_file.to_str().unwrap();
        tshark(&[
            "-r",
            f,
            "-Y",
            filter,
            "-F",
            "pcap",
            "-w",
            out.to_str().unwrap(),
        ]);
    }
    assert_eq!(
        (count(&sip, None), count(&media, None)),
        (exp.sip, exp.media)
    );
    let store = work.path().join("store");
    rolling_store(&media, &store);
    let files = local_pcaps(&store);
    assert!(files >= 3, "{files} rolling files");
    let (_s3, endpoint) = crate::s3::start_s3(&work.path().join("s3"));
    let up = voxtap_sensor::upload::UploadConfig {
        enabled: true,
        endpoint: endpoint.clone(),
        bucket: "voxtap-sessions".into(),
        sensor: "s1".into(),
        path_style: true,
        calls: false,
        delete_after_upload: true,
        ..Default::default()
    };
    assert_eq!(upload_store(&up, &store).await, files as u64);
    assert_eq!(local_pcaps(&store), 0, "local copies removed after upload");
    eprintln!("{files} rolling files in S3 at {:?}", t0.elapsed());

    let data = tempfile::tempdir().unwrap();
    let mut config = config();
    config.s3_sessions = Some(voxtap_web::config::S3SessionsConfig {
        store: store.clone(),
        endpoint,
        region: None,
        bucket: "voxtap-sessions".into(),
        path_style: true,
        max_fetch_mb: None,
    });
    let srv = voxtap_web::start(voxtap_web::ServeOptions {
        data: data.path().to_path_buf(),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        config,
        insecure_no_auth: false,
    })
    .await
    .unwrap();
    let base = format!("http://{}", srv.addr);
    let cookie = login(&base, USER, PASSWORD).await.unwrap();
    let hosts = get_page(&base, &cookie, "/hosts").await;
    assert_eq!(hosts.matches("data-place=\"S3 only\"").count(), files);

    let page = post_s3_sip(&base, &cookie, &sip, "inbound").await;
    let legs = legs_in(&correlated_page(&base, &cookie, &page).await);
    eprintln!("correlated at {:?}", t0.elapsed());
    let sides: Vec<(&str, &str)> = legs
        .iter()
        .map(|l| (l.cid.as_str(), l.side.as_str()))
        .collect();
    // Inbound: the SRTP leg (the caller's) faces the carrier (the sides
    // of outbound are the browser test's and the unit test's).
    assert_eq!(sides, [(SRTP_LEG, "carrier"), (PLAIN_LEG, "core")]);
    for leg in &legs {
        assert_eq!(leg.links.len(), 3, "{leg:?}");
        let mut got = Vec::new();
        for href in &leg.links {
            got.push(download(&base, &cookie, href, work.path()).await);
        }
        check_leg(leg, &got.try_into().unwrap(), &exp, &corpus_file);
    }
    // The fetched copies are gone once imported; the store is untouched.
    assert!(
        !data
            .path()
            .join("s3sessions/fetch")
            .join(page.rsplit('/').next().unwrap())
            .exists()
    );
    assert_eq!(local_pcaps(&store), 0);
    s3_refusals(&base, &cookie, &sip, work.path()).await;
    // An object changed in the bucket (same size): refused by its sha256.
    tamper_largest_file(&work.path().join("s3").join("voxtap-sessions"));
    let page = post_s3_sip(&base, &cookie, &sip, "inbound").await;
    let html = correlation_ended(&base, &cookie, &page, false).await;
    assert!(
        html.contains("the copy fetched from S3 has sha256"),
        "{html}"
    );
    eprintln!("S3 session test took {:?}", t0.elapsed());
}

/// Flips one byte in the middle of the largest file below `dir`.
fn tamper_largest_file(dir: &Path) {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                files.push((e.metadata().unwrap().len(), p));
            }
        }
    }
    let (len, path) = files.into_iter().max().expect("an object in the bucket");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(len / 2) as usize] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
}

/// A SIP pcap of another time (no media in the store then) and a file
/// that is not a capture: refused with the reason.
async fn s3_refusals(base: &str, cookie: &str, sip: &Path, work: &Path) {
    let hosts = get_page(base, cookie, "/hosts").await;
    let post = |name: &'static str, bytes: Vec<u8>| {
        let form = reqwest::multipart::Form::new()
            .text("csrf", hidden_csrf(&hosts))
            .text("direction", "inbound")
            .part(
                "sip",
                reqwest::multipart::Part::bytes(bytes).file_name(name),
            );
        client()
            .post(format!("{base}/hosts/s3/sip"))
            .header(COOKIE, cookie)
            .multipart(form)
            .send()
    };
    let r = post("notes.txt", b"INVITE sip:bob".to_vec()).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // The SIP a day later: every record's seconds + 86400.
    let mut later = std::fs::read(sip).unwrap();
    let mut at = 24;
    while at + 16 <= later.len() {
        let s = u32::from_le_bytes(later[at..at + 4].try_into().unwrap()) + 86_400;
        later[at..at + 4].copy_from_slice(&s.to_le_bytes());
        let caplen = u32::from_le_bytes(later[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16 + caplen;
    }
    std::fs::write(work.join("later.pcap"), &later).unwrap();
    let r = post("later.pcap", later).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let msg = r.text().await.unwrap();
    assert!(msg.contains("holds no capture between"), "{msg}");
}
