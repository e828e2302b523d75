//! The network-namespace lab of the live tests: `scripts/netns-mirror.sh`
//! namespaces removed on drop, background processes killed on drop, SIPp
//! calls, tcpdump on the mirror port, and the lock that runs the tests that
//! need the whole machine one at a time.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use crate::wait_until;

/// Held by every test of a binary that needs the machine to itself: loss
/// and frame counts checked against tcpdump, or captures of all of the
/// loopback's traffic. Shared by all of a test binary's modules, which run
/// in parallel threads otherwise.
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
    crate::workspace_root().join("scripts/netns-mirror.sh")
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
    /// Whether the process has ended (its status is kept for `wait`).
    pub fn exited(&mut self) -> bool {
        self.0
            .as_mut()
            .is_none_or(|c| c.try_wait().unwrap().is_some())
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

/// tcpdump of the mirror port's UDP into `file`, once it says it listens
/// (its messages go to `file` with the extension `log`).
pub fn start_tcpdump(lab: &Lab, file: &Path) -> Bg {
    start_tcpdump_with(lab, file, "udp", &[])
}

/// [`start_tcpdump`] with another capture `filter` and `extra` tcpdump
/// flags (e.g. `--immediate-mode`).
pub fn start_tcpdump_with(lab: &Lab, file: &Path, filter: &str, extra: &[&str]) -> Bg {
    let log = file.with_extension("log");
    let iface = lab.sensor_if();
    let mut args = vec!["tcpdump", "-i", &iface, "-s", "0", "-U"];
    args.extend_from_slice(extra);
    args.extend(["-w", file.to_str().unwrap(), filter]);
    let mut c = in_ns(&lab.ns('s'), &args);
    c.stdout(Stdio::null()).stderr(File::create(&log).unwrap());
    let mut bg = Bg(Some(c.spawn().expect("tcpdump")));
    wait_until(Duration::from_secs(20), "tcpdump listening", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(!bg.exited(), "tcpdump ended: {text}");
        text.contains("listening on").then_some(())
    });
    bg
}

/// Whether some socket in namespace `ns` listens on UDP `port`.
pub fn udp_listening(ns: &str, port: u16) -> bool {
    let out = in_ns(ns, &["ss", "-lunH", &format!("sport = :{port}")])
        .output()
        .expect("ss");
    !out.stdout.is_empty()
}

/// `calls` SIPp calls (uac_pcap: G.711 RTP from a pcap, echoed by the UAS),
/// `rate` per second; returns when the UAC is done.
pub fn sipp_calls(lab: &Lab, dir: &Path, calls: u32, rate: u32) {
    sipp_calls_between(lab, dir, calls, rate, (&lab.ip(1), &lab.ip(2)));
}

/// [`sipp_calls`] from the caller's address `ips.0` to the callee's `ips.1`
/// (addresses of a tunnel between the namespaces, for instance).
pub fn sipp_calls_between(lab: &Lab, dir: &Path, calls: u32, rate: u32, ips: (&str, &str)) {
    let work = dir.join(format!("sipp-{calls}-{rate}"));
    std::fs::create_dir_all(&work).unwrap();
    let _ = std::os::unix::fs::symlink("/usr/share/sip-tester", work.join("pcap"));
    let (uac_ip, uas_ip) = (ips.0.to_string(), ips.1.to_string());
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
    wait_until(Duration::from_secs(20), "the SIPp UAS listening", || {
        udp_listening(&lab.ns('b'), 5060).then_some(())
    });
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
            &uac_ip,
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

pub fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("voxtap-live-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
