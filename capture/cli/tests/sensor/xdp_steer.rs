//! The XDP program's steering to several rings, run in the kernel with
//! `BPF_PROG_TEST_RUN` (root only): with `rings = 4`, a SIP frame lands on
//! ring 0 and each media frame on ring `1 + hash(dst) % 3`, the hash
//! computed here from its definition (not with the crate's function); the
//! per-ring kernel counters agree with what each ring's reader reads; media
//! to a shared endpoint (loaded from `workers.shared_media`) lands on ring
//! `1 + pair hash % 3`, both ends hashed, also computed here from its
//! definition; with `CFG_DROP_AFTER_COPY` a kept frame is copied and then
//! dropped (`XDP_DROP`) while an unkept one still passes.
#![cfg(target_os = "linux")]

use std::net::{Ipv4Addr, SocketAddr};

use voxtap_proto::wire::emit::{eth, ipv4_packet as ip4, udp_datagram as udp};
use voxtap_proto::wire::ethernet::ethertype;
use voxtap_sensor::xdp::{
    CFG_DROP_AFTER_COPY, CFG_HEURISTIC_RTP, CFG_SHARED_MEDIA, Counter, FrameReader, MapSizes,
    RingCounters, XdpConfig, XdpDebug, XdpSensor,
};

use crate::xdp_debug::test_run_verdict;
use crate::xdp_tunnels::{IN_B, inner_eth, sip};
use crate::xdp_veth::require_root;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

/// The multiplier of the steering hashes (2^32 / golden ratio).
const K: u32 = 0x9e37_79b1;

/// The steering hash as docs/live.md defines it (`voxtap_common`'s
/// `steer_hash`), transcribed here: `h = port`, then for each big-endian
/// 32-bit word w of the v4-mapped address `h = (rotl(h, 13) ^ w) * K`
/// (no rotation for the first word), then MurmurHash3's 32-bit finaliser.
pub(crate) fn steer_hash_by_definition(ip: Ipv4Addr, port: u16) -> u32 {
    let mut a = [0u8; 16];
    a[10] = 0xff;
    a[11] = 0xff;
    a[12..].copy_from_slice(&ip.octets());
    let mut h = u32::from(port);
    for (i, w) in a.chunks(4).enumerate() {
        let w = u32::from_be_bytes(w.try_into().unwrap());
        let r = if i == 0 { h } else { h.rotate_left(13) };
        h = (r ^ w).wrapping_mul(K);
    }
    fmix32(h)
}

/// MurmurHash3's 32-bit finaliser.
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// The ring of media to a shared endpoint as docs/architecture.md defines
/// it (`voxtap_common`'s `pair_media_worker`), transcribed here: both
/// ports with their low bit cleared, `d` and `s` the steering hashes of
/// destination and source, ring `1 + fmix32(d ^ rotl(s, 16) * K) % (rings
/// - 1)`.
pub(crate) fn pair_ring_by_definition(src: SocketAddr, dst: SocketAddr, rings: u32) -> u32 {
    let d = steer_hash_by_definition(v4(dst), dst.port() & !1);
    let s = steer_hash_by_definition(v4(src), src.port() & !1);
    1 + fmix32(d ^ s.rotate_left(16).wrapping_mul(K)) % (rings - 1)
}

/// The IPv4 address of `a` (these tests send IPv4 only).
fn v4(a: SocketAddr) -> Ipv4Addr {
    match a.ip() {
        std::net::IpAddr::V4(ip) => ip,
        ip => panic!("{ip}: IPv4 only here"),
    }
}

/// A UDP datagram `src -> dst` in an Ethernet frame.
fn udp_frame(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let l4 = udp(src.port(), dst.port(), payload);
    eth(ethertype::IPV4, &ip4(17, v4(src), v4(dst), &l4))
}

/// An RTP header (version 2, PCMU) and some payload.
fn rtp(seq: u8) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, seq, 0, 0, 0, 160, 0x12, 0x34, 0x56, 0x78];
    p.extend_from_slice(&[0xff; 160]);
    p
}

fn load(flags: u32) -> XdpSensor {
    let cfg = XdpConfig {
        flags,
        wakeup_every: 1,
        rings: 4,
        ..XdpConfig::default()
    };
    XdpSensor::load(cfg, &[5060]).expect("load XDP program with 4 rings (verifier)")
}

/// The kernel's per-ring counters when each ring took `sizes[i]` frames
/// and lost none.
fn written_without_loss(sizes: &[usize]) -> Vec<RingCounters> {
    sizes
        .iter()
        .map(|&n| RingCounters {
            written: n as u64,
            lost: 0,
        })
        .collect()
}

/// The frames waiting in each ring, drained.
fn drain(readers: &mut [FrameReader]) -> Vec<Vec<Vec<u8>>> {
    readers
        .iter_mut()
        .map(|r| {
            let mut got = Vec::new();
            while let Some(f) = r.next_frame() {
                got.push(f.data().to_vec());
            }
            got
        })
        .collect()
}

#[test]
fn sip_to_ring_0_and_media_to_the_ring_of_its_destination() {
    require_root();
    let mut sensor = load(CFG_HEURISTIC_RTP);
    let mut readers = sensor.take_frame_readers();
    assert_eq!(readers.len(), 4);
    assert!(
        readers
            .iter()
            .enumerate()
            .all(|(i, r)| r.index() == i as u32)
    );
    let fd = sensor.program_fd().unwrap();
    let sip_frame = inner_eth(5060, &sip(1));
    assert_eq!(test_run_verdict(fd, &sip_frame, 1).0, XDP_PASS);
    let mut want: Vec<Vec<Vec<u8>>> = vec![vec![sip_frame]; 1];
    want.resize(4, Vec::new());
    for port in (20000..20060).step_by(2) {
        let frame = inner_eth(port, &rtp(port as u8));
        assert_eq!(test_run_verdict(fd, &frame, 1).0, XDP_PASS);
        let ring = 1 + steer_hash_by_definition(IN_B, port) % 3;
        want[ring as usize].push(frame);
    }
    let got = drain(&mut readers);
    let sizes: Vec<usize> = want.iter().map(Vec::len).collect();
    eprintln!("frames per ring: {sizes:?}");
    // 30 media frames over 3 rings: every media ring gets some, or the
    // test shows nothing about the hash.
    assert!(sizes[1..].iter().all(|&n| n > 0), "{sizes:?}");
    assert_eq!(got, want, "frames by ring");
    assert_eq!(sensor.ring_counters(), written_without_loss(&sizes));
    let c = sensor.counters();
    assert_eq!(c[Counter::KeptSip as usize], 1);
    assert_eq!(c[Counter::KeptHeuristic as usize], 30);
    // More rings than loaded: refused.
    let more = XdpConfig {
        rings: 5,
        ..sensor.config().unwrap()
    };
    assert!(sensor.set_config(more).is_err());
}

#[test]
fn drop_after_copy_drops_kept_frames_once_copied() {
    require_root();
    let mut sensor = load(CFG_HEURISTIC_RTP | CFG_DROP_AFTER_COPY);
    let mut readers = sensor.take_frame_readers();
    let fd = sensor.program_fd().unwrap();
    let sip_frame = inner_eth(5060, &sip(2));
    let media = inner_eth(30000, &rtp(1));
    let noise = inner_eth(80, b"not voip");
    assert_eq!(test_run_verdict(fd, &sip_frame, 1).0, XDP_DROP);
    assert_eq!(test_run_verdict(fd, &media, 1).0, XDP_DROP);
    assert_eq!(test_run_verdict(fd, &noise, 1).0, XDP_PASS);
    let got = drain(&mut readers);
    let ring = 1 + steer_hash_by_definition(IN_B, 30000) % 3;
    assert_eq!(got[0], vec![sip_frame]);
    assert_eq!(got[ring as usize], vec![media]);
    assert_eq!(got.iter().map(Vec::len).sum::<usize>(), 2);
    let c = sensor.counters();
    // Dropped counts frames dropped as not kept; these were kept.
    assert_eq!(c[Counter::Dropped as usize], 0);
    assert_eq!(c[Counter::Passed as usize], 1);
}

/// A media server's single port listed as shared: the program spreads the
/// streams sent to it over the media rings by both ends (RTCP with its
/// RTP), while media to any other endpoint still goes by destination.
#[test]
fn shared_media_goes_by_both_ends_over_the_media_rings() {
    require_root();
    let server: SocketAddr = "192.0.2.10:5004".parse().unwrap();
    let other: SocketAddr = "192.0.2.11:5004".parse().unwrap();
    let next_port: SocketAddr = "192.0.2.10:5006".parse().unwrap();
    let cfg = XdpConfig {
        wakeup_every: 1,
        rings: 4,
        ..XdpConfig::default()
    };
    // Listed by its RTCP port: one entry covers both.
    let listed: SocketAddr = "192.0.2.10:5005".parse().unwrap();
    let mut sensor =
        XdpSensor::load_debug(cfg, &[5060], &[listed], MapSizes::default(), XdpDebug::Off)
            .expect("load XDP program with a shared endpoint (verifier)");
    assert!(sensor.is_shared_media(server) && !sensor.is_shared_media(next_port));
    assert!(sensor.config().unwrap().has(CFG_SHARED_MEDIA));
    // Kept through the endpoint map (no heuristic): the media path.
    for ep in [server, other, next_port] {
        sensor.add_endpoint(ep).unwrap();
        sensor
            .add_endpoint(SocketAddr::new(ep.ip(), ep.port() + 1))
            .unwrap();
    }
    let mut readers = sensor.take_frame_readers();
    let fd = sensor.program_fd().unwrap();
    let mut want: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 4];
    let mut send = |frame: Vec<u8>, ring: u32| {
        assert_eq!(test_run_verdict(fd, &frame, 1).0, XDP_PASS);
        want[ring as usize].push(frame);
    };
    let sip_frame = inner_eth(5060, &sip(3));
    send(sip_frame, 0);
    let rtcp = [0x81, 200, 0, 6, 0x12, 0x34, 0x56, 0x78];
    let mut shared_rings = [0usize; 4];
    for i in 0..60u16 {
        let src = SocketAddr::from(([10, 1, (i / 7) as u8, i as u8], 20_000 + 2 * i));
        let src_rtcp = SocketAddr::new(src.ip(), src.port() + 1);
        let ring = pair_ring_by_definition(src, server, 4);
        shared_rings[ring as usize] += 1;
        send(udp_frame(src, server, &rtp(i as u8)), ring);
        // RTCP (both ports + 1) on the ring of its RTP.
        let server_rtcp = SocketAddr::new(server.ip(), 5005);
        send(udp_frame(src_rtcp, server_rtcp, &rtcp), ring);
        // Not shared: by destination, whoever sends.
        for dst in [other, next_port] {
            let by_dst = 1 + steer_hash_by_definition(v4(dst), dst.port() & !1) % 3;
            send(udp_frame(src, dst, &rtp(i as u8)), by_dst);
        }
    }
    eprintln!("shared endpoint's streams per ring: {shared_rings:?}");
    // 60 streams to one endpoint: every media ring gets some, or the test
    // shows nothing about the pair hash (by destination they share one).
    assert!(shared_rings[0] == 0 && shared_rings[1..].iter().all(|&n| n > 0));
    let got = drain(&mut readers);
    let sizes: Vec<usize> = want.iter().map(Vec::len).collect();
    eprintln!("frames per ring: {sizes:?}");
    // Compared whole, reported by count (the frames are 200 bytes each).
    let got_sizes: Vec<usize> = got.iter().map(Vec::len).collect();
    assert!(got == want, "frames by ring: {got_sizes:?}, want {sizes:?}");
    assert_eq!(sensor.ring_counters(), written_without_loss(&sizes));
    let c = sensor.counters();
    assert_eq!(c[Counter::KeptMedia as usize], 60 * 4);
    assert_eq!(c[Counter::KeptSip as usize], 1);
}

/// Mean ns per run of `frame` over `batches` `BPF_PROG_TEST_RUN`s of 200,
/// every ring drained between them (a full ring would time failed writes).
fn ns_per_frame(
    sensor: &XdpSensor,
    readers: &mut [FrameReader],
    frame: &[u8],
    batches: u32,
) -> f64 {
    let fd = sensor.program_fd().expect("program fd");
    let mut total = 0u64;
    for _ in 0..batches {
        total += u64::from(test_run_verdict(fd, frame, 200).1);
        drain(readers);
    }
    total as f64 / f64::from(batches)
}

/// The cost of the shared list for the frames that are not to a shared
/// endpoint: the program's size, and ns per media frame with the list
/// empty (no lookup) and with one entry (one lookup that misses); and for
/// a frame to the shared endpoint (a hit and the pair hash).
#[test]
#[ignore = "measurement: run as root with --ignored --nocapture"]
fn xdp_shared_media_cost() {
    require_root();
    let server: SocketAddr = "192.0.2.10:5004".parse().unwrap();
    let callee: SocketAddr = "192.0.2.11:6000".parse().unwrap();
    let caller: SocketAddr = "10.1.0.1:20000".parse().unwrap();
    let cfg = XdpConfig {
        wakeup_every: XdpConfig::DEFAULT_WAKEUP_EVERY,
        rings: 4,
        ..XdpConfig::default()
    };
    let normal = udp_frame(caller, callee, &rtp(1));
    let to_server = udp_frame(caller, server, &rtp(1));
    let cases: [(&str, &[SocketAddr], &[u8]); 3] = [
        ("list empty, media frame", &[], &normal),
        (
            "one shared entry, media frame to another endpoint",
            &[server],
            &normal,
        ),
        ("one shared entry, media frame to it", &[server], &to_server),
    ];
    for round in 0..3 {
        for (name, shared, frame) in &cases {
            let mut sensor =
                XdpSensor::load_debug(cfg, &[5060], shared, MapSizes::default(), XdpDebug::Off)
                    .expect("load XDP program");
            for ep in [server, callee] {
                sensor.add_endpoint(ep).unwrap();
            }
            let size = sensor.program_size().expect("program info");
            let mut readers = sensor.take_frame_readers();
            let ns = ns_per_frame(&sensor, &mut readers, frame, 500);
            println!(
                "round {round}: {name}: {ns:.1} ns/frame ({} insns after the verifier, {} B JITed, {} verified)",
                size.translated_bytes / 8,
                size.jited_bytes,
                size.verified_insns
            );
        }
    }
}
