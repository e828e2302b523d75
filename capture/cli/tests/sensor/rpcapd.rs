//! The RPCAP client against a real rpcapd (built by scripts/build-rpcapd.sh
//! from Debian's libpcap source), started here on loopback on a free port
//! and killed at the end by a guard, also on panic. Needs root (capture on
//! lo), tcpdump, tshark and sipp.

use std::collections::BTreeSet;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use voxtap_sensor::rpcap::hosts::Host;
use voxtap_sensor::rpcap::remote::{self, RemoteCapture, RemoteOptions, UnitState};
use voxtap_sensor::rpcap::tls::TlsSettings;
use voxtap_sensor::rpcap::{
    CaptureOptions, ClientConfig, Credentials, RpcapError, Session, Transport,
};
use voxtap_testkit::free_port;

const RPCAPD: &str = "/usr/local/sbin/rpcapd";

/// rpcapd in its own process group: it forks a child per client, and a
/// test that kills "rpcapd" must kill those too.
struct Rpcapd {
    child: Child,
    port: u16,
    killed: bool,
}

impl Rpcapd {
    fn start(port: u16, null_auth: bool) -> Rpcapd {
        Rpcapd::start_with(port, null_auth, &[])
    }

    /// rpcaps: `rpcapd -S -K key -X cert`.
    fn start_tls(port: u16, pki: &Pki) -> Rpcapd {
        Rpcapd::start_with(
            port,
            true,
            &[
                "-S",
                "-K",
                pki.server_key.to_str().unwrap(),
                "-X",
                pki.server_cert.to_str().unwrap(),
            ],
        )
    }

    fn start_with(port: u16, null_auth: bool, extra: &[&str]) -> Rpcapd {
        assert!(
            Path::new(RPCAPD).exists(),
            "{RPCAPD} not found: run scripts/build-rpcapd.sh"
        );
        let mut c = Command::new(RPCAPD);
        c.args(["-4", "-b", "127.0.0.1", "-p", &port.to_string()]);
        if null_auth {
            c.arg("-n");
        }
        c.args(extra);
        let child = c
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start rpcapd");
        let r = Rpcapd {
            child,
            port,
            killed: false,
        };
        // Listening? (A probe connection would start a session in rpcapd.)
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

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        if std::mem::replace(&mut self.killed, true) {
            return;
        }
        let pgid = self.child.id();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Rpcapd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Kills a helper process (tcpdump, sipp) on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM first: `timeout` passes it on to the program it runs,
        // where SIGKILL would leave that program orphaned and running.
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        for _ in 0..20 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("voxtap-rpcapd-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn host(id: &str, r: &Rpcapd) -> Host {
    Host {
        path: id.split('/').map(String::from).collect(),
        address: "127.0.0.1".into(),
        port: r.port,
        interfaces: vec!["lo".into()],
        credentials: Credentials::Null,
        tls: None,
    }
}

/// A test CA, a server certificate it signs (for 127.0.0.1 and
/// `rpcapd.voxtap.test`), and an unrelated second CA, made with the openssl
/// CLI.
struct Pki {
    ca: PathBuf,
    other_ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn make_pki(dir: &Path) -> Pki {
    std::fs::create_dir_all(dir).unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    for (name, cn) in [("ca", "voxtap test CA"), ("other-ca", "someone else's CA")] {
        let mut a = vec!["req", "-x509", "-nodes", "-days", "2"];
        a.extend(ec);
        let (key, crt, subj) = (
            format!("{name}.key"),
            format!("{name}.pem"),
            format!("/CN={cn}"),
        );
        a.extend(["-keyout", &key, "-out", &crt, "-subj", &subj]);
        a.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
        a.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        openssl(dir, &a);
    }
    let mut a = vec!["req", "-nodes"];
    a.extend(ec);
    a.extend(["-keyout", "server.key", "-out", "server.csr"]);
    a.extend(["-subj", "/CN=rpcapd.voxtap.test"]);
    openssl(dir, &a);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:rpcapd.voxtap.test\n\
         basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
    Pki {
        ca: dir.join("ca.pem"),
        other_ca: dir.join("other-ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
    }
}

fn tls(ca: &Path, name: Option<&str>) -> TlsSettings {
    TlsSettings {
        ca_file: Some(ca.to_path_buf()),
        server_name: name.map(String::from),
    }
}

/// Packets in a pcap; one that a running tcpdump is writing may end in a
/// part of a record, not counted.
fn pcap_count(p: &Path) -> u64 {
    let mut r = voxtap_engine::pcapfile::open(p).unwrap();
    let mut n = 0;
    while let Ok(Some(_)) = r.next_packet() {
        n += 1;
    }
    n
}

/// tcpdump on lo into `file`, once it says it listens (its messages go to
/// `file` with the extension `log`); in immediate mode, so that what it
/// has received is in the file when it is stopped.
fn tcpdump_on_lo(file: &Path, filter: &str) -> Proc {
    let log = file.with_extension("log");
    let mut p = Proc(
        Command::new("tcpdump")
            .args([
                "-i",
                "lo",
                "-s",
                "0",
                "-U",
                "-w",
                file.to_str().unwrap(),
                filter,
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("tcpdump"),
    );
    voxtap_testkit::wait_until(Duration::from_secs(20), "tcpdump listening", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            !matches!(p.0.try_wait(), Ok(Some(_))),
            "tcpdump ended: {text}"
        );
        text.contains("listening on").then_some(())
    });
    p
}

/// tshark reads the file completely (exit 0) and counts its frames.
fn tshark_count(p: &Path) -> usize {
    let out = Command::new("tshark")
        .args([
            "-r",
            p.to_str().unwrap(),
            "-T",
            "fields",
            "-e",
            "frame.number",
        ])
        .output()
        .expect("tshark");
    assert!(
        out.status.success(),
        "tshark cannot read {}: {}",
        p.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().count()
}

fn send_udp(port: u16, n: usize) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..n {
        s.send_to(format!("voxtap-{i}").as_bytes(), ("127.0.0.1", port))
            .unwrap();
    }
}

#[test]
fn list_interfaces_contains_lo() {
    let d = Rpcapd::start(free_port(), true);
    let mut s = Session::connect(&ClientConfig::new(d.addr())).unwrap();
    let ifs = s.list_interfaces().unwrap();
    assert!(ifs.iter().any(|i| i.name == "lo"), "{ifs:?}");
    s.close().unwrap();
}

/// Start, read, update the filter, statistics, end, close: one session.
#[test]
fn filter_update_and_stats() {
    let d = Rpcapd::start(free_port(), true);
    let (pa, pb) = (free_port(), free_port());
    let mut s = Session::connect(&ClientConfig::new(d.addr())).unwrap();
    let open = s.open("lo").unwrap();
    assert_eq!(open.linktype, 1);
    let opts = CaptureOptions {
        filter: format!("udp dst port {pa}"),
        ..Default::default()
    };
    let mut data = s.start_capture(&opts).unwrap();
    // rpcapd's capture thread starts right after our data connection.
    std::thread::sleep(Duration::from_millis(300));
    let read = |data: &mut voxtap_sensor::rpcap::DataChannel, want: usize| {
        let mut ports = Vec::new();
        let until = Instant::now() + Duration::from_secs(60);
        while ports.len() < want && Instant::now() < until {
            if let Some(p) = data.next_packet().unwrap() {
                // Ethernet (14) + IPv4 (20) + UDP dst port.
                ports.push(u16::from_be_bytes([p.data[36], p.data[37]]));
            }
        }
        // Nothing more should come.
        let quiet = Instant::now() + Duration::from_millis(600);
        while Instant::now() < quiet {
            if let Some(p) = data.next_packet().unwrap() {
                ports.push(u16::from_be_bytes([p.data[36], p.data[37]]));
            }
        }
        ports
    };
    send_udp(pa, 20);
    send_udp(pb, 5);
    let got = read(&mut data, 20);
    assert_eq!(got, vec![pa; 20]);
    s.update_filter(&format!("udp dst port {pb}")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    send_udp(pa, 10);
    send_udp(pb, 7);
    let got = read(&mut data, 7);
    assert_eq!(got, vec![pb; 7]);
    let st = s.stats().unwrap();
    eprintln!("stats: {st:?}");
    assert_eq!(st.server_sent, 27);
    assert!(st.received >= 27, "{st:?}");
    assert_eq!(st.kernel_dropped, 0);
    s.end_capture().unwrap();
    s.close().unwrap();
}

#[test]
fn wrong_password_is_a_clear_error() {
    let d = Rpcapd::start(free_port(), false);
    let mut cfg = ClientConfig::new(d.addr());
    cfg.credentials = Credentials::Password {
        user: "root".into(),
        password: "definitely-not-the-password".into(),
    };
    let e = Session::connect(&cfg).err().expect("must fail");
    let m = e.to_string();
    eprintln!("{m}");
    assert!(matches!(e, RpcapError::AuthFailed { .. }), "{e:?}");
    assert!(
        m.contains("rejected the username/password of user 'root'")
            && m.contains("Authentication failed"),
        "{m}"
    );
    assert!(e.is_permanent());
    // The same server with null authentication says that null is refused.
    let e = Session::connect(&ClientConfig::new(d.addr()))
        .err()
        .expect("must fail");
    let m = e.to_string();
    eprintln!("{m}");
    assert!(m.contains("refuses null authentication"), "{m}");
}

#[test]
fn unknown_interface_is_named() {
    let d = Rpcapd::start(free_port(), true);
    let mut s = Session::connect(&ClientConfig::new(d.addr())).unwrap();
    let e = s.open("nosuchdev0").unwrap_err();
    let m = e.to_string();
    eprintln!("{m}");
    assert!(matches!(e, RpcapError::UnknownInterface { .. }), "{e:?}");
    assert!(m.contains("has no interface 'nosuchdev0'"), "{m}");
}

/// SIPp calls on loopback captured remotely, checked against a local
/// tcpdump on the same interface and filter at the same time.
fn sipp_remote_capture(transport: Transport, base: u16, name: &str, with_tls: bool) {
    // The wire capture below takes every TCP connection on lo's ephemeral
    // ports: another test's (plain RPCAP's INVITEs above all) must not be in it.
    let _g = voxtap_testkit::lab::SERIAL
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let dir = tmpdir(name);
    let pki = with_tls.then(|| make_pki(&dir.join("pki")));
    let d = match &pki {
        Some(p) => Rpcapd::start_tls(free_port(), p),
        None => Rpcapd::start(free_port(), true),
    };
    let (uac, uas) = (base + 1, base + 10);
    let (mp_uac, mp_uas) = (base * 3 + 1000, base * 3 + 1200);
    let filter = format!(
        "udp and (port {uac} or port {uas} or portrange {mp_uas}-{} or portrange {mp_uac}-{})",
        mp_uas + 99,
        mp_uac + 99
    );
    let local = dir.join("tcpdump.pcap");
    let mut td = tcpdump_on_lo(&local, &filter);
    // RPCAP's own TCP to and from rpcapd (control and data channels): in
    // clear it carries the captured SIP; over rpcaps it must not.
    let wire = dir.join("rpcap-wire.pcap");
    let mut td_wire = tcpdump_on_lo(
        &wire,
        &format!(
            "tcp and host 127.0.0.1 and (port {} or portrange 32768-65535)",
            d.port
        ),
    );
    let mut opts = RemoteOptions::new(dir.join("remote"));
    opts.capture.transport = transport;
    opts.capture.filter = filter.clone();
    opts.pipeline.sip_ports = vec![uac, uas];
    let mut h = host("lab/local/sipp", &d);
    h.tls = pki.as_ref().map(|p| tls(&p.ca, None));
    let targets = remote::targets(&[h], &opts);
    let cap = RemoteCapture::start(targets, &opts);
    let until = Instant::now() + Duration::from_secs(60);
    while cap.status()[0].state != UnitState::Capturing {
        assert!(Instant::now() < until, "remote capture did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1000));

    let work = dir.join("sipp");
    std::fs::create_dir_all(&work).unwrap();
    let _ = std::os::unix::fs::symlink("/usr/share/sip-tester", work.join("pcap"));
    let uas_proc = Proc(
        Command::new("timeout")
            .args(["60", "sipp", "-sn", "uas", "-i", "127.0.0.1", "-p"])
            .arg(uas.to_string())
            .args(["-rtp_echo", "-mp", &mp_uas.to_string(), "-nostdin"])
            .current_dir(&work)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp uas"),
    );
    voxtap_testkit::wait_until(Duration::from_secs(20), "the SIPp UAS listening", || {
        let ss = Command::new("ss")
            .args(["-lunH", &format!("sport = :{uas}")])
            .output()
            .expect("ss");
        (!ss.stdout.is_empty()).then_some(())
    });
    let st = Command::new("timeout")
        .args(["60", "sipp", "-sn", "uac_pcap", &format!("127.0.0.1:{uas}")])
        .args(["-i", "127.0.0.1", "-p", &uac.to_string()])
        .args(["-m", "3", "-l", "3", "-r", "3", "-mp", &mp_uac.to_string()])
        .args(["-nostdin"])
        .current_dir(&work)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("sipp uac");
    assert!(st.success(), "sipp uac failed: {st}");
    // No traffic after SIPp; then both captures hold all of it once their
    // counts are equal and stay so (on a slow machine either lags); a
    // mismatch is reported below.
    drop(uas_proc);
    let (mut same_since, until) = (None, Instant::now() + Duration::from_secs(30));
    while Instant::now() < until {
        let same = cap.status()[0].packets == pcap_count(&local);
        same_since = if same {
            same_since.or(Some(Instant::now()))
        } else {
            None
        };
        if same_since.is_some_and(|t| t.elapsed() > Duration::from_secs(1)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cap.stop();
    let reports = cap.wait();
    let _ = Command::new("kill")
        .args(["-INT", &td.0.id().to_string()])
        .status();
    let _ = td.0.wait();
    let _ = Command::new("kill")
        .args(["-INT", &td_wire.0.id().to_string()])
        .status();
    let _ = td_wire.0.wait();

    let r = &reports[0];
    eprintln!("{}", r.summary_line());
    assert!(r.error.is_none(), "{:?}", r.error);
    if transport == Transport::Tcp {
        // Frames of RPCAP's TCP whose bytes contain a SIP request line.
        let out = Command::new("tshark")
            .args([
                "-r",
                wire.to_str().unwrap(),
                "-Y",
                "frame contains \"INVITE sip:\"",
            ])
            .args(["-T", "fields", "-e", "frame.number"])
            .output()
            .expect("tshark");
        assert!(out.status.success());
        let clear = String::from_utf8_lossy(&out.stdout).lines().count();
        let tcp_frames = tshark_count(&wire);
        eprintln!("{name}: {tcp_frames} RPCAP TCP frames, {clear} with SIP INVITE text in them");
        assert!(tcp_frames > 100, "{tcp_frames}");
        if with_tls {
            assert_eq!(
                clear, 0,
                "captured SIP crossed the wire in clear over rpcaps"
            );
        } else {
            assert!(clear >= 3, "plain RPCAP should show the INVITEs: {clear}");
        }
    }
    let local_n = pcap_count(&local);
    let seg_n: u64 = r.segments.iter().map(|p| pcap_count(p)).sum();
    eprintln!(
        "{name}: local tcpdump {local_n} packets, remote {} packets ({seg_n} in segments)",
        r.packets
    );
    assert!(local_n > 1400, "SIPp made {local_n} packets");
    assert_eq!(r.packets, local_n, "remote and local packet counts");
    assert_eq!(seg_n, local_n);
    assert_eq!(r.lost, 0);
    for s in &r.segments {
        assert_eq!(tshark_count(s) as u64, seg_n);
    }
    // The calls found are SIPp's calls (Call-IDs as tshark sees them).
    let tshark_ids: BTreeSet<String> = String::from_utf8_lossy(
        &Command::new("tshark")
            .args(["-r", local.to_str().unwrap(), "-Y", "sip.Call-ID"])
            .args(["-T", "fields", "-e", "sip.Call-ID"])
            .output()
            .unwrap()
            .stdout,
    )
    .lines()
    .map(String::from)
    .collect();
    let csv = std::fs::read_to_string(r.dir.join("calls.csv")).unwrap();
    let ids: BTreeSet<String> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().trim_matches('"').to_string())
        .collect();
    assert_eq!(tshark_ids.len(), 3);
    assert_eq!(ids, tshark_ids, "calls.csv:\n{csv}");
    assert_eq!(r.calls.calls, 3);
    assert_eq!(r.calls.answered, 3, "calls.csv:\n{csv}");
    for l in csv.lines().skip(1) {
        let pcap = l.split(',').nth(8).unwrap();
        assert!(tshark_count(&r.dir.join(pcap)) > 400, "{pcap}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sipp_calls_over_tcp_data_channel() {
    sipp_remote_capture(Transport::Tcp, 5100, "tcp", false);
}

#[test]
fn sipp_calls_over_udp_data_channel() {
    sipp_remote_capture(Transport::Udp, 5200, "udp", false);
}

/// The same SIPp capture over rpcaps: rpcapd -S with a certificate from a
/// CA made here, verified against that CA, for 127.0.0.1.
#[test]
fn sipp_calls_over_tls() {
    sipp_remote_capture(Transport::Tcp, 5300, "tls", true);
}

/// A certificate from another CA, a name the certificate does not hold, a
/// plain client to a TLS server, TLS with a UDP data channel: each refused
/// with an error that says which.
#[test]
fn tls_refusals_are_clear() {
    let dir = tmpdir("tls-refusals");
    let pki = make_pki(&dir);
    let d = Rpcapd::start_tls(free_port(), &pki);
    let connect = |t: Option<TlsSettings>| {
        let mut cfg = ClientConfig::new(d.addr());
        cfg.reply_timeout = Duration::from_secs(3);
        cfg.tls = t;
        Session::connect(&cfg)
    };
    // The right CA and name: lists interfaces over TLS.
    let mut s = connect(Some(tls(&pki.ca, None))).unwrap();
    assert!(s.is_tls());
    assert!(s.list_interfaces().unwrap().iter().any(|i| i.name == "lo"));
    // Name in the certificate's DNS SAN, reached by IP: also fine.
    let s2 = connect(Some(tls(&pki.ca, Some("rpcapd.voxtap.test")))).unwrap();
    s2.close().unwrap();

    let e = connect(Some(tls(&pki.other_ca, None)))
        .err()
        .expect("other CA");
    let m = e.to_string();
    eprintln!("other CA: {m}");
    assert!(matches!(e, RpcapError::TlsRefused { .. }), "{e:?}");
    assert!(
        m.contains("not signed by the CA in") && m.contains("other-ca.pem"),
        "{m}"
    );
    assert!(e.is_permanent());

    let e = connect(Some(tls(&pki.ca, Some("sbc-9.voxtap.test"))))
        .err()
        .expect("wrong name");
    let m = e.to_string();
    eprintln!("wrong name: {m}");
    assert!(m.contains("not valid for 'sbc-9.voxtap.test'"), "{m}");

    // No CA file: the system roots do not know our test CA.
    let e = connect(Some(TlsSettings::default()))
        .err()
        .expect("system roots");
    let m = e.to_string();
    eprintln!("system roots: {m}");
    assert!(
        m.contains("not signed by the system's CA certificates"),
        "{m}"
    );

    let e = connect(None).err().expect("plain to TLS");
    let m = e.to_string();
    eprintln!("plain: {m}");
    assert!(matches!(e, RpcapError::TlsRequired { .. }), "{e:?}");
    assert!(m.contains("requires TLS"), "{m}");

    s.open("lo").unwrap();
    let e = s
        .start_capture(&CaptureOptions {
            transport: Transport::Udp,
            ..Default::default()
        })
        .err()
        .expect("udp with tls");
    let m = e.to_string();
    eprintln!("udp: {m}");
    assert!(
        m.contains("UDP data channel cannot be used with TLS"),
        "{m}"
    );
    drop(s);

    // A TLS client to a plain rpcapd.
    let plain = Rpcapd::start(free_port(), true);
    let mut cfg = ClientConfig::new(plain.addr());
    cfg.reply_timeout = Duration::from_secs(3);
    cfg.tls = Some(tls(&pki.ca, None));
    let e = Session::connect(&cfg).err().expect("TLS to plain");
    let m = e.to_string();
    eprintln!("TLS to plain: {m}");
    assert!(m.contains("TLS handshake") && m.contains("-S"), "{m}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// rpcapd dies mid-capture and comes back: the client reconnects, both
/// segments are valid pcaps, and the gap is reported.
#[test]
fn reconnects_after_rpcapd_restart() {
    let port = free_port();
    let mut d = Rpcapd::start(port, true);
    let dir = tmpdir("restart");
    let traffic = free_port();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let sender = std::thread::spawn(move || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let until = Instant::now() + Duration::from_secs(30);
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < until {
            let _ = s.send_to(b"tick", ("127.0.0.1", traffic));
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let mut opts = RemoteOptions::new(dir.clone());
    opts.capture.filter = format!("udp port {traffic}");
    opts.reconnect.initial_backoff = Duration::from_millis(200);
    opts.reconnect.max_attempts = 20;
    opts.reconnect.max_backoff = Duration::from_secs(1);
    opts.duration = Some(Duration::from_secs(20));
    let cap = RemoteCapture::start(
        remote::targets(&[host("lab/local/flaky", &d)], &opts),
        &opts,
    );
    let wait_packets = |cap: &RemoteCapture, n: u64| {
        let until = Instant::now() + Duration::from_secs(60);
        while cap.status()[0].packets < n {
            assert!(Instant::now() < until, "no packets: {:?}", cap.status());
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_packets(&cap, 50);
    d.kill();
    let at_kill = cap.status()[0].packets;
    std::thread::sleep(Duration::from_millis(1500));
    let _d2 = Rpcapd::start(port, true);
    wait_packets(&cap, at_kill + 50);
    cap.stop();
    let reports = cap.wait();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sender.join().unwrap();

    let r = &reports[0];
    eprintln!("{}", r.summary_line());
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(r.segments.len(), 2, "{:?}", r.segments);
    assert_eq!(r.gaps.len(), 1, "{:?}", r.gaps);
    let g = &r.gaps[0];
    let secs = g.seconds(0);
    eprintln!(
        "gap: {secs:.2} s after {} attempt(s): {}",
        g.attempts, g.reason
    );
    assert!(g.to_ns.is_some());
    assert!((1.0..10.0).contains(&secs), "gap of {secs} s");
    assert!(g.attempts >= 1);
    let counts: Vec<usize> = r.segments.iter().map(|p| tshark_count(p)).collect();
    eprintln!("segments: {counts:?}");
    assert!(counts[0] >= 50 && counts[1] >= 50, "{counts:?}");
    assert_eq!(counts.iter().sum::<usize>() as u64, r.packets);
    let gaps_csv = std::fs::read_to_string(r.dir.join("gaps.csv")).unwrap();
    assert_eq!(gaps_csv.lines().count(), 2, "{gaps_csv}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Fake servers: garbage, a huge length, silence, a hang-up. Each ends in a
/// clear error within the reply timeout, never a hang or a panic.
#[test]
fn fake_servers_do_not_hang_the_client() {
    let cases: [(&str, &[u8], bool, &str); 4] = [
        (
            "garbage",
            b"HTTP/1.1 400 Bad Request\r\n\r\n",
            false,
            "version",
        ),
        (
            "huge",
            &[0, 0x88, 0, 0, 0xff, 0xff, 0xff, 0xff],
            false,
            "larger than",
        ),
        ("stall", b"", true, "no answer within"),
        ("hangup", b"", false, "closed the connection"),
    ];
    for (name, reply, stall, want) in cases {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let reply = reply.to_vec();
        let (done, wait_done) = std::sync::mpsc::channel::<()>();
        let srv = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            use std::io::{Read, Write};
            let mut b = [0u8; 64];
            let _ = c.read(&mut b);
            let _ = c.write_all(&reply);
            if stall {
                // Silent, connection open, until the client has given up.
                let _ = wait_done.recv_timeout(Duration::from_secs(60));
            }
        });
        let mut cfg = ClientConfig::new(addr.to_string());
        cfg.reply_timeout = Duration::from_secs(1);
        let t = Instant::now();
        let e = Session::connect(&cfg).err().expect("must fail");
        let took = t.elapsed();
        let _ = done.send(());
        let m = e.to_string();
        eprintln!("{name}: {m} ({took:?})");
        // The stalling server holds on for up to 60 s: "no answer within"
        // is the client's own timeout, not the server closing.
        assert!(m.contains(want), "{name}: {m}");
        assert!(took < Duration::from_secs(30), "{name} took {took:?}");
        srv.join().unwrap();
    }
}

/// Kills the background capture of `voxtap remote start` if the test ends
/// before `remote stop` did.
struct BackgroundCapture(PathBuf);

impl Drop for BackgroundCapture {
    fn drop(&mut self) {
        if let Some(pid) = remote::running_pid(&self.0) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

fn voxtap(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_voxtap"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("voxtap");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Packets column of `remote status` for the one host.
fn status_packets(text: &str) -> (String, u64) {
    let row = text
        .lines()
        .find(|l| l.starts_with("lab/local/loopback\t"))
        .unwrap_or_else(|| panic!("no host row in:\n{text}"));
    let cols: Vec<&str> = row.split('\t').collect();
    (cols[2].to_string(), cols[3].parse().unwrap())
}

/// `voxtap remote start` runs the capture in the background; `status`
/// shows its counters growing (and status/remote.json has them); `stop`
/// ends it, and the segments are pcaps tshark reads, as many packets as
/// the counters said.
#[test]
fn cli_start_status_stop() {
    let d = Rpcapd::start(free_port(), true);
    let dir = tmpdir("cli");
    let out = dir.join("out");
    let hosts = dir.join("hosts.toml");
    std::fs::write(
        &hosts,
        format!(
            "[environments.lab.regions.local.hosts.loopback]\naddress = \"127.0.0.1\"\nport = {}\ninterfaces = [\"lo\"]\n",
            d.port
        ),
    )
    .unwrap();
    let traffic = free_port();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let sender = std::thread::spawn(move || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let until = Instant::now() + Duration::from_secs(30);
        let mut sent = 0u64;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < until {
            let _ = s.send_to(b"tick", ("127.0.0.1", traffic));
            sent += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
        sent
    });
    let _guard = BackgroundCapture(out.clone());
    let filter = format!("udp port {traffic}");
    let (ok, text) = voxtap(&[
        "remote",
        "start",
        "--hosts",
        hosts.to_str().unwrap(),
        "--select",
        "lab",
        "--out",
        out.to_str().unwrap(),
        "--filter",
        &filter,
        "--csv-only",
    ]);
    eprintln!("start: {text}");
    assert!(ok && text.contains("capture started (pid"), "{text}");
    // A second start into the same directory is refused.
    let (ok2, text2) = voxtap(&[
        "remote",
        "start",
        "--hosts",
        hosts.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok2 && text2.contains("already runs"), "{text2}");

    let mut seen = Vec::new();
    let until = Instant::now() + Duration::from_secs(60);
    while seen.len() < 3 {
        assert!(Instant::now() < until, "counters did not grow: {seen:?}");
        std::thread::sleep(Duration::from_millis(700));
        let (ok, text) = voxtap(&["remote", "status", "--out", out.to_str().unwrap()]);
        assert!(ok, "{text}");
        if !text.contains("lab/local/loopback\t") {
            continue;
        }
        assert!(text.starts_with("running (pid"), "{text}");
        let (state, n) = status_packets(&text);
        if state == "capturing" && n > 0 && seen.last().is_none_or(|&l| n > l) {
            seen.push(n);
        }
    }
    eprintln!("status packets over time: {seen:?}");
    let json = voxtap_sensor::status::read(&out, "remote").expect("status/remote.json");
    assert_eq!(json["running"], true, "{json}");
    assert_eq!(json["units"][0]["host"], "lab/local/loopback");
    assert!(json["units"][0]["packets"].as_u64().unwrap() > 0, "{json}");

    // Quiet first, so that rpcapd's own count of packets sent is final.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = sender.join().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let (ok, text) = voxtap(&["remote", "stop", "--out", out.to_str().unwrap()]);
    eprintln!("stop: {text}");
    assert!(ok && text.contains("stopped"), "{text}");
    assert!(remote::running_pid(&out).is_none());
    let (state, final_n) = status_packets(&text);
    assert_eq!(state, "done", "{text}");
    let row: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("lab/local/loopback\t"))
        .unwrap()
        .split('\t')
        .collect();
    assert_eq!(
        row[10].parse::<u64>().unwrap(),
        final_n,
        "rpcapd's sent count"
    );
    let json = voxtap_sensor::status::read(&out, "remote").unwrap();
    assert_eq!(json["running"], false, "{json}");
    assert_eq!(json["units"][0]["packets"].as_u64().unwrap(), final_n);

    let seg_dir = out.join("lab/local/loopback/lo");
    let mut segs: Vec<PathBuf> = std::fs::read_dir(&seg_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    segs.sort();
    let in_files: usize = segs.iter().map(|p| tshark_count(p)).sum();
    eprintln!(
        "sent {sent}, status {final_n}, tshark {in_files} in {} segment(s)",
        segs.len()
    );
    assert_eq!(in_files as u64, final_n);
    assert!(final_n > 50 && final_n <= sent, "{final_n} of {sent}");
    let (ok, text) = voxtap(&["remote", "status", "--out", out.to_str().unwrap()]);
    assert!(ok && text.starts_with("not running"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The CLI's --tls/--ca-file reach the client: list-interfaces over rpcaps
/// with the right CA works, with another CA fails with the reason, and
/// `capture --transport udp` with TLS is refused before connecting.
#[test]
fn cli_tls_flags() {
    let dir = tmpdir("cli-tls");
    let pki = make_pki(&dir.join("pki"));
    let d = Rpcapd::start_tls(free_port(), &pki);
    let hosts = dir.join("hosts.toml");
    std::fs::write(
        &hosts,
        format!(
            "[environments.lab.regions.local.hosts.loopback]\naddress = \"127.0.0.1\"\nport = {}\ninterfaces = [\"lo\"]\n",
            d.port
        ),
    )
    .unwrap();
    let h = hosts.to_str().unwrap();
    let (ok, text) = voxtap(&["remote", "list-interfaces", "--hosts", h]);
    assert!(!ok && text.contains("requires TLS"), "{text}");
    let (ok, text) = voxtap(&[
        "remote",
        "list-interfaces",
        "--hosts",
        h,
        "--ca-file",
        pki.ca.to_str().unwrap(),
    ]);
    assert!(ok && text.contains("  lo "), "{text}");
    let (ok, text) = voxtap(&[
        "remote",
        "list-interfaces",
        "--hosts",
        h,
        "--tls",
        "--ca-file",
        pki.other_ca.to_str().unwrap(),
    ]);
    eprintln!("{text}");
    assert!(!ok && text.contains("not signed by the CA in"), "{text}");
    let out = dir.join("out");
    let (ok, text) = voxtap(&[
        "remote",
        "capture",
        "--hosts",
        h,
        "--tls",
        "--transport",
        "udp",
        "--duration",
        "1s",
        "--out",
        out.to_str().unwrap(),
    ]);
    eprintln!("{text}");
    assert!(
        !ok && text.contains("refuses the UDP data channel with TLS"),
        "{text}"
    );
    assert!(!out.exists(), "nothing written");
    let _ = std::fs::remove_dir_all(&dir);
}
