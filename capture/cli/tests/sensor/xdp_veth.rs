//! XDP classifier against real traffic on a veth pair (root only).
//!
//! Each test creates its own network namespace and veth pair with `ip`,
//! attaches the classifier to the root-namespace end, sends a bounded number of
//! UDP datagrams from inside the namespace, and checks the per-CPU counters and
//! the frames read back from the ring buffer. The namespace and the veth pair
//! are deleted on exit, including on failure (guard `Drop`).
#![cfg(target_os = "linux")]

use std::{
    collections::HashMap,
    fs::File,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket},
    os::fd::AsRawFd,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use voxtap_sensor::xdp::{
    AttachMode, CFG_HEURISTIC_RTP, COUNTERS, Counter, FrameMeta, MapSizes, XdpConfig, XdpSensor,
};

pub(crate) fn require_root() {
    // SAFETY: no arguments, no side effects.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "xdp_veth must run as root (it creates network namespaces and loads XDP programs); \
         run `sudo -E cargo test -p voxtap --test sensor xdp_veth::` (CI runs as root)"
    );
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A namespace `ns` holding `peer`, linked to `host` in the root namespace.
pub(crate) struct VethNs {
    pub(crate) ns: String,
    pub(crate) host: String,
    pub(crate) peer: String,
    pub(crate) host_ip: Ipv4Addr,
    peer_ip: Ipv4Addr,
}

impl VethNs {
    pub(crate) fn create(tag: char) -> VethNs {
        let pid = std::process::id();
        let id = pid % 100_000;
        // One /24 per tag (a, b: this module; t: xdp_tunnels), so tests
        // running side by side never share a subnet in the root namespace.
        let octet = (pid % 50) as u8
            + match tag {
                'a' => 0,
                'b' => 50,
                't' => 100,
                _ => 150,
            };
        let v = VethNs {
            ns: format!("vtx{id}{tag}"),
            host: format!("vtx{id}{tag}h"),
            peer: format!("vtx{id}{tag}p"),
            host_ip: Ipv4Addr::new(10, 213, octet, 1),
            peer_ip: Ipv4Addr::new(10, 213, octet, 2),
        };
        // From here on, Drop cleans up whatever was created.
        run(&["ip", "netns", "add", &v.ns]);
        run(&[
            "ip", "link", "add", &v.host, "type", "veth", "peer", "name", &v.peer, "netns", &v.ns,
        ]);
        // No IPv6 (router solicitations, MLD) to keep the counters exact.
        run(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{}.disable_ipv6=1", v.host),
        ]);
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", v.host_ip),
            "dev",
            &v.host,
        ]);
        run(&["ip", "link", "set", &v.host, "up"]);
        let nsx = ["ip", "netns", "exec", &v.ns];
        run(&[
            &nsx[..],
            &[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{}.disable_ipv6=1", v.peer),
            ],
        ]
        .concat());
        run(&[
            "ip",
            "-n",
            &v.ns,
            "addr",
            "add",
            &format!("{}/24", v.peer_ip),
            "dev",
            &v.peer,
        ]);
        run(&["ip", "-n", &v.ns, "link", "set", "lo", "up"]);
        run(&["ip", "-n", &v.ns, "link", "set", &v.peer, "up"]);
        // veth leaves UDP checksums to "hardware" otherwise.
        run(&[&nsx[..], &["ethtool", "-K", &v.peer, "tx", "off"]].concat());
        // Static neighbour: no ARP in the middle of the counted traffic.
        let mac = std::fs::read_to_string(format!("/sys/class/net/{}/address", v.host))
            .expect("host veth MAC");
        run(&[
            "ip",
            "-n",
            &v.ns,
            "neigh",
            "replace",
            &v.host_ip.to_string(),
            "lladdr",
            mac.trim(),
            "dev",
            &v.peer,
            "nud",
            "permanent",
        ]);
        v
    }

    /// Runs `f` on a thread that has entered the namespace.
    pub(crate) fn in_ns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.ns);
        thread::scope(|s| {
            s.spawn(|| {
                let f_ns = File::open(&path).expect("netns handle");
                // SAFETY: valid fd; affects only this thread.
                let rc = unsafe { libc::setns(f_ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .expect("sender thread panicked")
        })
    }
}

impl Drop for VethNs {
    fn drop(&mut self) {
        // Deleting the namespace destroys the peer and with it the pair.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

fn sip_payload(i: usize) -> Vec<u8> {
    format!(
        "OPTIONS sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK{i}\r\n\
         Call-ID: xdp-test-{i}\r\nCSeq: {i} OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn big_sip_payload() -> Vec<u8> {
    let mut p = b"MESSAGE sip:bob@example.com SIP/2.0\r\nCall-ID: xdp-big\r\n\r\n".to_vec();
    p.resize(3000, b'x');
    p
}

/// UDP payload of an untagged IPv4 frame, or `None` for a non-first fragment.
fn udp_payload(frame: &[u8]) -> Option<&[u8]> {
    let ip = frame.get(14..)?;
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let frag_off = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
    if ip[9] != 17 || frag_off != 0 {
        return None;
    }
    ip.get(ihl + 8..)
}

pub(crate) fn delta(after: &[u64; COUNTERS], before: &[u64; COUNTERS], c: Counter) -> u64 {
    after[c as usize] - before[c as usize]
}

const N_SIP: usize = 20;
const N_MEDIA: usize = 20;
const N_OTHER: usize = 20;
const N_REMOVED: usize = 5;
const N_RTP: usize = 5;
/// Second header byte (marker bit and payload type) of the heuristic RTP:
/// static, dynamic and in-between payload types, all kept by the rule
/// userspace applies too (`voxtap_common::rtp_header_plausible`).
const RTP_B1: [u8; N_RTP] = [0, 8, 50, 96, 0x80 | 127];
/// ... and payload types of the RTCP-conflict range (RFC 5761), not kept.
const RTCP_RANGE_B1: [u8; 2] = [72, 95];

fn scenario(tag: char, mode: Option<AttachMode>) {
    require_root();
    let net = VethNs::create(tag);
    let cfg = XdpConfig {
        flags: 0,
        wakeup_every: 8,
        ..XdpConfig::default()
    };
    let mut sensor = XdpSensor::load(cfg, &[5060]).expect("load XDP program (verifier)");
    let got_mode = match mode {
        None => sensor.attach(&net.host).expect("attach"),
        Some(m) => sensor
            .attach_mode(&net.host, m)
            .expect("attach in the requested mode"),
    };
    eprintln!("attached to {} in {got_mode:?} mode", net.host);
    let mut reader = sensor.take_frame_reader().expect("frame reader");

    let media = SocketAddr::V4(SocketAddrV4::new(net.host_ip, 40000));
    sensor.add_endpoint(media).unwrap();
    let other_port = 41000 + (std::process::id() % 9000) as u16;
    let host = net.host_ip;
    let before = sensor.counters();

    let send_batch = |items: Vec<(u16, Vec<u8>)>| {
        net.in_ns(move || {
            let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
            for (port, payload) in items {
                // Unconnected: ICMP port-unreachable replies do not fail sends.
                sock.send_to(&payload, SocketAddrV4::new(host, port))
                    .expect("send");
            }
        })
    };
    let mut batch: Vec<(u16, Vec<u8>)> = Vec::new();
    batch.extend((0..N_SIP).map(|i| (5060, sip_payload(i))));
    batch.extend((0..N_MEDIA).map(|i| (40000, format!("media {i}").into_bytes())));
    batch.extend((0..N_OTHER).map(|i| (other_port, format!("noise {i}").into_bytes())));
    batch.push((5060, big_sip_payload()));
    send_batch(batch);

    sensor.remove_endpoint(media).unwrap();
    sensor.remove_endpoint(media).unwrap(); // absent: not an error
    let removed: Vec<_> = (0..N_REMOVED)
        .map(|i| (40000, format!("late {i}").into_bytes()))
        .collect();
    // Make sure the first batch is classified before the map changes matter.
    wait_for(&sensor, &before, (N_SIP + N_MEDIA + N_OTHER + 3) as u64);
    send_batch(removed);

    sensor
        .set_config(XdpConfig {
            flags: CFG_HEURISTIC_RTP,
            ..cfg
        })
        .unwrap();
    let rtp: Vec<_> = RTP_B1
        .iter()
        .chain(&RTCP_RANGE_B1)
        .enumerate()
        .map(|(i, &b1)| {
            let mut p = vec![0x80, b1, 0, i as u8, 0, 0, 0, 160, 0x12, 0x34, 0x56, 0x78];
            p.extend_from_slice(&[0xff; 160]);
            (other_port + 1, p)
        })
        .collect();
    send_batch(rtp);

    let total = (N_SIP + N_MEDIA + N_OTHER + 3 + N_REMOVED + N_RTP + RTCP_RANGE_B1.len()) as u64;
    let after = wait_for(&sensor, &before, total);
    let d = |c| delta(&after, &before, c);
    eprintln!(
        "counter deltas: {:?}",
        Counter::ALL.map(|c| (c.name(), d(c)))
    );
    assert_eq!(
        d(Counter::KeptSip),
        N_SIP as u64 + 1,
        "SIP frames (+1 first fragment)"
    );
    assert_eq!(
        d(Counter::KeptFragment),
        2,
        "non-first fragments of the kept datagram"
    );
    assert_eq!(d(Counter::KeptMedia), N_MEDIA as u64);
    assert_eq!(d(Counter::KeptHeuristic), N_RTP as u64);
    // Passed: our unkept datagrams plus at most a few frames of the link's own
    // chatter (the kernel may still emit one, e.g. ARP, despite the static
    // neighbour entry).
    let passed = d(Counter::Passed);
    let unkept = (N_OTHER + N_REMOVED + RTCP_RANGE_B1.len()) as u64;
    assert!(
        (unkept..=unkept + 4).contains(&passed),
        "passed {passed}, want {unkept}(+chatter)"
    );
    assert_eq!(d(Counter::Dropped), 0);
    assert_eq!(d(Counter::Malformed), 0);
    assert_eq!(d(Counter::LostRingFull), 0);
    let outcomes: u64 = [
        Counter::KeptSip,
        Counter::KeptMedia,
        Counter::KeptHeuristic,
        Counter::KeptFragment,
        Counter::Passed,
        Counter::Dropped,
        Counter::Malformed,
    ]
    .into_iter()
    .map(d)
    .sum();
    assert_eq!(
        d(Counter::Seen),
        outcomes,
        "every frame has exactly one outcome"
    );
    assert!(d(Counter::Seen) >= total);

    // Read the ring: lazy wake-up means some frames are only seen after a
    // poll timeout, which `poll` handles.
    let want_frames = N_SIP + 3 + N_MEDIA + N_RTP;
    let mut by_reason: HashMap<u32, usize> = HashMap::new();
    let mut sip_seen: Vec<Vec<u8>> = Vec::new();
    let mut big_first: Option<Vec<u8>> = None;
    let mut metas: Vec<FrameMeta> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while by_reason.values().sum::<usize>() < want_frames && Instant::now() < deadline {
        reader
            .poll(Duration::from_millis(100), |meta, data| {
                *by_reason.entry(meta.reason).or_default() += 1;
                assert_eq!(meta.cap_len as usize, data.len());
                assert_eq!(
                    meta.wire_len as usize,
                    data.len(),
                    "frames are below MAX_FRAME"
                );
                metas.push(meta);
                if meta.reason == Counter::KeptSip as u32 {
                    let p = udp_payload(data).expect("SIP frame is UDP/IPv4").to_vec();
                    if p.starts_with(b"MESSAGE") {
                        big_first = Some(p);
                    } else {
                        sip_seen.push(p);
                    }
                }
            })
            .expect("poll ring");
    }
    assert_eq!(
        by_reason.get(&(Counter::KeptSip as u32)),
        Some(&(N_SIP + 1))
    );
    assert_eq!(by_reason.get(&(Counter::KeptFragment as u32)), Some(&2));
    assert_eq!(by_reason.get(&(Counter::KeptMedia as u32)), Some(&N_MEDIA));
    assert_eq!(
        by_reason.get(&(Counter::KeptHeuristic as u32)),
        Some(&N_RTP)
    );
    let expected: Vec<Vec<u8>> = (0..N_SIP).map(sip_payload).collect();
    assert_eq!(
        sip_seen, expected,
        "SIP payloads read back from the ring, in order"
    );
    let big = big_first.expect("first fragment of the big SIP datagram");
    assert!(
        big_sip_payload().starts_with(&big),
        "first fragment carries the datagram head"
    );
    assert!(big.len() > 1000);
    assert!(metas.windows(2).all(|w| w[0].ktime_ns <= w[1].ktime_ns));

    sensor.detach().unwrap();
    assert!(sensor.attached().is_none());
    drop(sensor);
    drop(net);
}

/// Waits (bounded) until `Seen` grew by `n`; returns the counters.
fn wait_for(sensor: &XdpSensor, before: &[u64; COUNTERS], n: u64) -> [u64; COUNTERS] {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = sensor.counters();
        if delta(&now, before, Counter::Seen) >= n || Instant::now() > deadline {
            return now;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn xdp_veth_native_or_fallback() {
    scenario('a', None);
}

#[test]
fn xdp_veth_skb_mode() {
    scenario('b', Some(AttachMode::Skb));
}

/// `capture.media_endpoints` sizes the kernel's endpoint map at load time:
/// a full map refuses the next endpoint (the live worker counts that) and
/// takes it once an entry is removed.
#[test]
fn endpoint_map_is_sized_at_load_time() {
    require_root();
    let sizes = MapSizes {
        media_endpoints: 4,
        ..MapSizes::default()
    };
    let mut sensor =
        XdpSensor::load_sized(XdpConfig::default(), &[5060], sizes).expect("load XDP program");
    let mut map = sensor.take_endpoint_map().expect("endpoint map");
    assert_eq!(map.max_entries(), 4);
    let ep = |port: u16| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), port));
    for port in 0..4 {
        map.add(ep(40000 + port)).expect("room for 4 endpoints");
    }
    assert!(
        map.add(ep(40004)).is_err(),
        "a fifth endpoint in a map of 4"
    );
    assert!(!map.contains(ep(40004)));
    map.remove(ep(40000)).unwrap();
    map.add(ep(40004)).expect("room again after a removal");
    assert!(map.contains(ep(40004)));
}
