//! The network-namespace lab and the checks shared by the live tests
//! (`live_sipp.rs`, `faults.rs`): `scripts/netns-mirror.sh` namespaces
//! removed on drop, background processes killed on drop, SIPp calls, tshark
//! counts.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn require_root() {
    // SAFETY: no arguments, no side effects.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "live tests create network namespaces and load XDP: run them as root"
    );
}

pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/netns-mirror.sh")
}

/// The three namespaces; `down` on drop.
pub struct Lab {
    pub p: String,
    pub n: u8,
}

impl Lab {
    pub fn up(p: &str, n: u8) -> Lab {
        let lab = Lab { p: p.into(), n };
        let out = Command::new(script())
            .args(["up", p, &n.to_string()])
            .output()
            .expect("running netns-mirror.sh");
        assert!(
            out.status.success(),
            "netns-mirror.sh up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }
    pub fn ns(&self, which: char) -> String {
        format!("{}{which}", self.p)
    }
    pub fn sensor_if(&self) -> String {
        format!("{}S", self.p)
    }
    pub fn ip(&self, host: u8) -> String {
        format!("10.{}.0.{host}", self.n)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(script()).args(["down", &self.p]).status();
    }
}

/// A background process, killed on drop if still running.
pub struct Bg(pub Option<Child>);

impl Bg {
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.0 {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }
    pub fn wait(mut self, limit: Duration) -> std::process::Output {
        let mut c = self.0.take().unwrap();
        let t0 = Instant::now();
        while c.try_wait().unwrap().is_none() {
            assert!(t0.elapsed() < limit, "process did not finish in {limit:?}");
            thread::sleep(Duration::from_millis(50));
        }
        c.wait_with_output().unwrap()
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            // `timeout` (around SIPp) leads its own process group: killing
            // only it left SIPp running, orphaned, for good (a SIGTERM just
            // before did not reach it in time). For a child that leads no
            // group this names no process and does nothing.
            // SAFETY: signalling our own child's process group.
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn in_ns(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(args);
    c
}

pub fn spawn(mut c: Command) -> Bg {
    Bg(Some(
        c.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn"),
    ))
}

pub const VOXTAP: &str = env!("CARGO_BIN_EXE_voxtap");

/// Starts `voxtap run` in the sensor namespace with `config` (TOML) and
/// waits until it captures.
pub fn start_voxtap(lab: &Lab, dir: &Path, config: &str, duration_s: u32) -> Bg {
    let cfg = dir.join("voxtap.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut c = in_ns(
        &lab.ns('s'),
        &[
            VOXTAP,
            "run",
            "--iface",
            &lab.sensor_if(),
            "--config",
            cfg.to_str().unwrap(),
            "--store",
            dir.join("store").to_str().unwrap(),
            "--out",
            dir.join("out").to_str().unwrap(),
            "--duration",
            &duration_s.to_string(),
        ],
    );
    c.env("RUST_LOG", "info");
    let bg = spawn(c);
    // Attached once the rolling file directory exists and the log says so;
    // a fixed wait keeps this simple and bounded.
    thread::sleep(Duration::from_millis(1500));
    bg
}

pub fn start_tcpdump(lab: &Lab, file: &Path) -> Bg {
    let bg = spawn(in_ns(
        &lab.ns('s'),
        &[
            "tcpdump",
            "-i",
            &lab.sensor_if(),
            "-s",
            "0",
            "-U",
            "-w",
            file.to_str().unwrap(),
            "udp",
        ],
    ));
    thread::sleep(Duration::from_millis(1000));
    bg
}

/// `calls` SIPp calls (uac_pcap: G.711 RTP from a pcap, echoed by the UAS),
/// `rate` per second; returns when the UAC is done.
pub fn sipp_calls(lab: &Lab, dir: &Path, calls: u32, rate: u32) {
    let work = dir.join(format!("sipp-{calls}-{rate}"));
    std::fs::create_dir_all(&work).unwrap();
    let _ = std::os::unix::fs::symlink("/usr/share/sip-tester", work.join("pcap"));
    let uas_ip = lab.ip(2);
    let uas = spawn({
        let mut c = in_ns(
            &lab.ns('b'),
            &[
                "timeout",
                "90",
                "sipp",
                "-sn",
                "uas",
                "-i",
                &uas_ip,
                "-p",
                "5060",
                "-rtp_echo",
                "-mp",
                "16000",
                "-nostdin",
            ],
        );
        c.current_dir(&work);
        c
    });
    thread::sleep(Duration::from_millis(500));
    let n = calls.to_string();
    let r = rate.to_string();
    let out = in_ns(
        &lab.ns('a'),
        &[
            "timeout",
            "90",
            "sipp",
            "-sn",
            "uac_pcap",
            &format!("{uas_ip}:5060"),
            "-i",
            &lab.ip(1),
            "-p",
            "5061",
            "-m",
            &n,
            "-l",
            &n,
            "-r",
            &r,
            "-mp",
            "17000",
            "-nostdin",
        ],
    )
    .current_dir(&work)
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "sipp uac failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    thread::sleep(Duration::from_millis(500));
    uas.signal(libc::SIGTERM);
}

pub fn tshark(args: &[&str]) -> String {
    let out = Command::new("tshark").args(args).output().expect("tshark");
    assert!(
        out.status.success(),
        "tshark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn count(file: &Path, filter: Option<&str>) -> usize {
    let mut a = vec![
        "-r",
        file.to_str().unwrap(),
        "-T",
        "fields",
        "-e",
        "frame.number",
    ];
    if let Some(f) = filter {
        a.extend(["-Y", f]);
    }
    tshark(&a).lines().count()
}

/// Each frame as a line of header fields that do not depend on when or
/// where it was captured, sorted: a multiset to compare two captures of the
/// same traffic.
pub fn frame_keys(file: &Path, filter: Option<&str>) -> Vec<String> {
    let mut a = vec![
        "-r",
        file.to_str().unwrap(),
        "-o",
        "rtp.heuristic_rtp:TRUE",
        "-T",
        "fields",
        "-e",
        "ip.src",
        "-e",
        "udp.srcport",
        "-e",
        "ip.dst",
        "-e",
        "udp.dstport",
        "-e",
        "frame.len",
        "-e",
        "ip.id",
        "-e",
        "rtp.ssrc",
        "-e",
        "rtp.seq",
        "-e",
        "sip.CSeq",
    ];
    if let Some(f) = filter {
        a.extend(["-Y", f]);
    }
    let mut v: Vec<String> = tshark(&a).lines().map(str::to_string).collect();
    v.sort();
    v
}

/// tshark's SDP endpoints (address, port and port+1) per Call-ID.
pub fn sdp_endpoints(file: &Path) -> HashMap<String, Vec<(String, u16)>> {
    let out = tshark(&[
        "-r",
        file.to_str().unwrap(),
        "-Y",
        "sdp",
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-e",
        "sip.Call-ID",
        "-e",
        "sdp.connection_info.address",
        "-e",
        "sdp.media.port",
    ]);
    let mut m: HashMap<String, Vec<(String, u16)>> = HashMap::new();
    for l in out.lines() {
        let f: Vec<&str> = l.split('|').collect();
        if f.len() < 3 {
            continue;
        }
        let addr = f[1].split(',').next().unwrap_or("").to_string();
        for p in f[2].split(',').filter_map(|p| p.parse::<u16>().ok()) {
            let e = m.entry(f[0].to_string()).or_default();
            for ep in [(addr.clone(), p), (addr.clone(), p + 1)] {
                if !e.contains(&ep) {
                    e.push(ep);
                }
            }
        }
    }
    m
}

/// The display filter for one call, as tests/tests/corpus_import.rs builds
/// it: its SIP by Call-ID, and UDP between two endpoints its SDP announced.
pub fn call_filter(cid: &str, eps: &[(String, u16)]) -> String {
    let side = |d: &str| {
        eps.iter()
            .map(|(a, p)| format!("(ip.{d}=={a} && udp.{d}port=={p})"))
            .collect::<Vec<_>>()
            .join(" || ")
    };
    format!(
        "sip.Call-ID == \"{cid}\" || (udp && !sip && !icmp && ({}) && ({}))",
        side("src"),
        side("dst")
    )
}

pub fn read_csv(path: &Path) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let head: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    // Our fields never contain commas or quotes in these tests.
    lines
        .map(|l| {
            head.iter()
                .cloned()
                .zip(l.split(',').map(str::to_string))
                .collect()
        })
        .collect()
}

pub fn summary_value(stdout: &str, key: &str) -> u64 {
    let i = stdout
        .find(key)
        .unwrap_or_else(|| panic!("{key} not in {stdout}"));
    stdout[i + key.len()..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Compares two sorted frame-key lists, printing sizes and a few
/// differences rather than both lists.
pub fn assert_same(got: &[String], want: &[String], what: &str) {
    if got == want {
        return;
    }
    let only_got: Vec<_> = got.iter().filter(|k| !want.contains(k)).take(5).collect();
    let only_want: Vec<_> = want.iter().filter(|k| !got.contains(k)).take(5).collect();
    panic!(
        "{what}: {} frames vs {} expected; only ours: {only_got:?}; only expected: {only_want:?}",
        got.len(),
        want.len()
    );
}

pub fn extract(dir: &Path, cid: &str, out: &Path) -> std::process::Output {
    Command::new(VOXTAP)
        .args([
            "extract",
            "--call",
            cid,
            "--store",
            dir.join("store").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap()
}

pub fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("voxtap-live-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn stored_frames(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir.join("store/pcap")).unwrap() {
        n += count(&e.unwrap().path(), None);
    }
    n
}
