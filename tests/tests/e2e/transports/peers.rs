//! Real peers in a network namespace of the test's own (its loopback is
//! nobody else's, so ports cannot clash with other tests), and tcpdump on
//! that loopback.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use voxtap_testkit::lab::{Bg, in_ns, require_root};
use voxtap_testkit::{wait_until, workspace_root};

/// A namespace with its loopback up, deleted on drop.
pub(crate) struct Netns(pub String);

impl Netns {
    pub(crate) fn new(tag: &str) -> Netns {
        require_root();
        let name = format!("vt{tag}{}", std::process::id());
        // A namespace left by an earlier run of this process id, if any.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns(name);
        run(&mut ns.cmd(&["ip", "link", "set", "lo", "up"]));
        ns
    }

    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
        in_ns(&self.0, args)
    }

    /// A background process in the namespace (output to `log`).
    pub(crate) fn spawn(&self, args: &[&str], cwd: &Path, log: &Path) -> Bg {
        let mut c = self.cmd(args);
        c.current_dir(cwd)
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(log).unwrap(),
            ));
        Bg(Some(c.spawn().expect("spawning a peer")))
    }

    /// A background process that prints "ready" once it listens.
    pub(crate) fn spawn_ready(&self, args: &[&str], cwd: &Path) -> Bg {
        let mut c = self.cmd(args);
        c.current_dir(cwd)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = c.spawn().expect("spawning a peer");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "{args:?} did not start");
        // Keep reading (and dropping) its output so it never blocks.
        std::thread::spawn(move || for _ in out.lines() {});
        Bg(Some(child))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

pub(crate) fn run(c: &mut Command) -> String {
    let out = c.output().expect("running a command");
    assert!(
        out.status.success(),
        "{c:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// tcpdump on the namespace's loopback into `file`, capturing `filter` (and
/// the UDP probes to port 9 it is started with: once one is in the file,
/// tcpdump is capturing). Stop it with [`stop_tcpdump`].
pub(crate) fn start_tcpdump(ns: &Netns, file: &Path, filter: &str) -> Bg {
    let f = format!("({filter}) or (udp port 9)");
    let log = file.with_extension("tcpdump.log");
    let bg = ns.spawn(
        &[
            "tcpdump",
            "-i",
            "lo",
            "-s",
            "0",
            "-U",
            "--immediate-mode",
            "-B",
            "16384",
            "-w",
            file.to_str().unwrap(),
            &f,
        ],
        Path::new("/"),
        &log,
    );
    wait_until(Duration::from_secs(20), "tcpdump capturing", || {
        // A probe from inside the namespace, until one is written.
        let _ = ns
            .cmd(&["python3", "-c", "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'probe', ('127.0.0.1', 9))"])
            .status();
        let n = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        (n > 24).then_some(())
    });
    bg
}

/// Stops tcpdump and waits until it has written everything.
pub(crate) fn stop_tcpdump(bg: Bg) {
    bg.signal(libc::SIGINT);
    bg.wait(Duration::from_secs(20));
}

/// A script of `tests/peers`.
pub(crate) fn peer_script(name: &str) -> PathBuf {
    workspace_root().join("tests/peers").join(name)
}

/// The TLS test key and certificate (RSA-2048, CN sip.test) the unit tests
/// use too.
pub(crate) fn test_cert() -> (PathBuf, PathBuf) {
    let d = workspace_root().join("capture/proto/src/tls/testdata");
    (d.join("server.crt"), d.join("server.key"))
}
