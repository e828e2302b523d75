//! The XDP classifier on tunnelled frames, live on a veth pair (root
//! only): a SIP datagram wrapped in every encapsulation the decoder
//! unwraps (MPLS with IP, pseudowires with and without control word, GRE
//! with IP and Ethernet, ERSPAN II and III, VXLAN, Geneve, PPPoE, GTP-U,
//! IP-in-IP and nestings of them) is sent as a raw Ethernet frame from the
//! namespace end. Each must be kept as SIP, read back from the ring byte
//! for byte, and counted once per kind in the per-CPU tunnel counters;
//! media inside a tunnel is kept through the endpoint map by its inner
//! address; a frame deeper than `max_depth` and non-SIP inside a tunnel
//! are not kept. The program passing the verifier at load time is the
//! check that its loops are bounded.
//!
//! These frames are crafted because the kernel here has no MPLS routing,
//! GRE or ERSPAN devices to make them (`live_tunnels::` runs SIPp calls
//! through a real VXLAN device).
#![cfg(target_os = "linux")]

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use voxtap_proto::wire::emit::{
    around as wrap, eth, gre_packet, ipv4_packet as ip4, mpls_stack as labels, udp_datagram as udp,
    vlan,
};
use voxtap_proto::wire::{erspan, ethernet::ethertype, geneve, gre, gtpu, mpls, pppoe, vxlan};
use voxtap_sensor::xdp::{COUNTERS, Counter, TUNNELS, Tunnel, XdpConfig, XdpSensor};

use crate::xdp_veth::{VethNs, delta, require_root};

pub(crate) const IN_A: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
pub(crate) const IN_B: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
const OUT_A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const OUT_B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

pub(crate) fn outer_udp(dport: u16, inner: &[u8]) -> Vec<u8> {
    eth(
        ethertype::IPV4,
        &ip4(17, OUT_A, OUT_B, &udp(49152, dport, inner)),
    )
}

fn gre(protocol: u16, key: Option<u32>, sequence: Option<u32>, inner: &[u8]) -> Vec<u8> {
    let g = gre_packet(protocol, key, sequence, inner);
    eth(ethertype::IPV4, &ip4(47, OUT_A, OUT_B, &g))
}

/// The inner datagram: SIP to 5060 (or anything to `dport`).
pub(crate) fn inner_ip(dport: u16, payload: &[u8]) -> Vec<u8> {
    ip4(17, IN_A, IN_B, &udp(5062, dport, payload))
}

pub(crate) fn inner_eth(dport: u16, payload: &[u8]) -> Vec<u8> {
    eth(ethertype::IPV4, &inner_ip(dport, payload))
}

pub(crate) fn sip(i: usize) -> Vec<u8> {
    format!("OPTIONS sip:b@example.com SIP/2.0\r\nCall-ID: t{i}\r\nCSeq: 1 OPTIONS\r\n\r\n")
        .into_bytes()
}

fn erspan2(session: u16) -> erspan::Repr {
    erspan::Repr {
        vlan: 0,
        cos: 0,
        truncated: false,
        session_id: session,
        kind: erspan::Kind::TypeII {
            encap_type: 0,
            index: 1,
        },
    }
}

fn gtpu_frame(teid: u32, ip: &[u8]) -> Vec<u8> {
    let ext = [1, 0x10, 0x05, 0x00];
    let r = gtpu::Repr {
        message_type: gtpu::MSG_GPDU,
        teid,
        sequence: Some(1),
        npdu: None,
        next_extension: 0x85,
        extensions: &ext,
        payload_len: ip.len(),
    };
    outer_udp(2152, &wrap(&r, ip))
}

pub(crate) fn vxlan_frame(vni: u32, inner: &[u8]) -> Vec<u8> {
    outer_udp(4789, &wrap(&vxlan::Repr { vni }, inner))
}

/// Geneve (VNI 77, with an option) around `inner` of EtherType `proto`.
fn geneve_wrap(proto: u16, inner: &[u8]) -> Vec<u8> {
    let r = geneve::Repr {
        oam: false,
        critical: false,
        protocol: proto,
        vni: 77,
        options: &[0x01, 0x02, 0x80, 0x01, 0, 0, 0, 1],
    };
    wrap(&r, inner)
}

/// The IP packet of an Ethernet frame built by `eth`.
fn ip_of(frame: &[u8]) -> &[u8] {
    &frame[14..]
}

/// One SIP datagram per encapsulation, with the kinds it goes through.
fn sip_cases() -> Vec<(&'static str, &'static [Tunnel], Vec<u8>)> {
    use Tunnel::*;
    let cw = mpls::ControlWordRepr {
        flags: 0,
        length: 0,
        sequence: 1,
    };
    let e3 = erspan::Repr {
        vlan: 0,
        cos: 0,
        truncated: false,
        session_id: 9,
        kind: erspan::Kind::TypeIII {
            bso: 0,
            timestamp: 1,
            sgt: 0,
            pdu: false,
            frame_type: erspan::frame_type::ETHERNET,
            hw_id: 1,
            direction: false,
            granularity: 3,
            platform: Some([0x08, 0, 0, 0, 0, 0, 0, 0]),
        },
    };
    let tagged = eth(
        ethertype::VLAN,
        &vlan(100, ethertype::IPV4, &inner_ip(5060, &sip(12))),
    );
    let pppoe = pppoe::Repr {
        session_id: 0x1234,
        protocol: 0x21,
        payload_len: inner_ip(5060, &sip(9)).len(),
    };
    let nested_gtp = gtpu_frame(8, &inner_ip(5060, &sip(13)));
    let in_geneve = outer_udp(6081, &geneve_wrap(ethertype::IPV4, ip_of(&nested_gtp)));
    let in_erspan = {
        let r = gre::Repr {
            protocol: ethertype::ERSPAN_2,
            checksum_present: false,
            key: None,
            sequence: Some(2),
        };
        let g = ip4(47, OUT_A, OUT_B, &wrap(&r, &wrap(&erspan2(2), &in_geneve)));
        eth(ethertype::VLAN, &vlan(30, ethertype::IPV4, &g))
    };
    vec![
        (
            "mpls-ip",
            &[Mpls],
            eth(
                ethertype::MPLS,
                &labels(&[16, 17], &inner_ip(5060, &sip(0))),
            ),
        ),
        (
            "mpls-pw-cw",
            &[Mpls],
            eth(
                ethertype::MPLS,
                &labels(&[100], &wrap(&cw, &inner_eth(5060, &sip(1)))),
            ),
        ),
        (
            "mpls-pw-no-cw",
            &[Mpls],
            eth(ethertype::MPLS, &labels(&[200], &inner_eth(5060, &sip(2)))),
        ),
        (
            "gre-ip",
            &[Gre],
            gre(ethertype::IPV4, Some(5), Some(1), &inner_ip(5060, &sip(3))),
        ),
        (
            "gre-teb",
            &[Gre],
            gre(ethertype::TEB, Some(9), None, &inner_eth(5060, &sip(4))),
        ),
        (
            "erspan-1",
            &[Erspan],
            gre(ethertype::ERSPAN_2, None, None, &inner_eth(5060, &sip(5))),
        ),
        (
            "erspan-2",
            &[Erspan],
            gre(
                ethertype::ERSPAN_2,
                None,
                Some(1),
                &wrap(&erspan2(7), &inner_eth(5060, &sip(6))),
            ),
        ),
        (
            "erspan-3",
            &[Erspan],
            gre(
                ethertype::ERSPAN_3,
                None,
                Some(1),
                &wrap(&e3, &inner_eth(5060, &sip(7))),
            ),
        ),
        (
            "vxlan",
            &[Vxlan],
            vxlan_frame(42, &inner_eth(5060, &sip(8))),
        ),
        (
            "pppoe",
            &[Pppoe],
            eth(
                ethertype::PPPOE_SESSION,
                &wrap(&pppoe, &inner_ip(5060, &sip(9))),
            ),
        ),
        (
            "geneve",
            &[Geneve],
            outer_udp(
                6081,
                &geneve_wrap(ethertype::TEB, &inner_eth(5060, &sip(10))),
            ),
        ),
        ("gtpu", &[Gtpu], gtpu_frame(4096, &inner_ip(5060, &sip(11)))),
        (
            "vlan-in-vxlan-in-mpls",
            &[Mpls, Vxlan, Vlan],
            eth(
                ethertype::MPLS,
                &labels(&[16], ip_of(&vxlan_frame(5, &tagged))),
            ),
        ),
        (
            "gtpu-in-geneve-in-erspan",
            &[Vlan, Erspan, Geneve, Gtpu],
            in_erspan,
        ),
        (
            "ipip",
            &[IpIp],
            eth(
                ethertype::IPV4,
                &ip4(4, OUT_A, OUT_B, &inner_ip(5060, &sip(14))),
            ),
        ),
    ]
}

/// Sends raw Ethernet frames out of `dev` (AF_PACKET), from the calling
/// thread's namespace.
pub(crate) fn send_raw(dev: &str, frames: &[Vec<u8>]) {
    // SAFETY: plain socket calls on a socket this function owns and closes.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        let name = std::ffi::CString::new(dev).unwrap();
        let index = libc::if_nametoindex(name.as_ptr());
        assert!(index != 0, "no interface {dev}");
        let mut sa: libc::sockaddr_ll = std::mem::zeroed();
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_ifindex = index as i32;
        sa.sll_halen = 6;
        for f in frames {
            let rc = libc::sendto(
                fd,
                f.as_ptr().cast(),
                f.len(),
                0,
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(
                rc,
                f.len() as isize,
                "sendto: {}",
                std::io::Error::last_os_error()
            );
        }
        libc::close(fd);
    }
}

#[test]
fn xdp_keeps_sip_and_media_inside_every_tunnel() {
    require_root();
    let net = VethNs::create('t');
    let cfg = XdpConfig {
        flags: 0,
        wakeup_every: 1,
        ..XdpConfig::default()
    };
    let mut sensor = XdpSensor::load(cfg, &[5060]).expect("load XDP program (verifier)");
    sensor.attach(&net.host).expect("attach");
    let mut reader = sensor.take_frame_reader().expect("frame reader");
    sensor
        .add_endpoint(SocketAddr::V4(SocketAddrV4::new(IN_B, 40000)))
        .unwrap();
    let (before, tunnels_before) = (sensor.counters(), sensor.tunnel_counters());

    let cases = sip_cases();
    let mut frames: Vec<Vec<u8>> = cases.iter().map(|c| c.2.clone()).collect();
    // Media to the endpoint inside GRE; noise inside VXLAN; one label more
    // than `max_depth` allows.
    let media = gre(ethertype::IPV4, None, None, &inner_ip(40000, &[0x80; 172]));
    let noise = vxlan_frame(42, &inner_eth(41000, b"noise"));
    let stack: Vec<u32> = (16..16 + u32::from(cfg.max_depth) + 1).collect();
    let too_deep = eth(ethertype::MPLS, &labels(&stack, &inner_ip(5060, &sip(99))));
    frames.extend([media.clone(), noise, too_deep]);
    let peer = net.peer.clone();
    net.in_ns(|| send_raw(&peer, &frames));

    let after = wait_seen(&sensor, &before, frames.len() as u64);
    let d = |c| delta(&after, &before, c);
    eprintln!(
        "counter deltas: {:?}",
        Counter::ALL.map(|c| (c.name(), d(c)))
    );
    assert_eq!(
        d(Counter::KeptSip),
        cases.len() as u64,
        "SIP in every tunnel"
    );
    assert_eq!(
        d(Counter::KeptMedia),
        1,
        "media inside GRE by its inner endpoint"
    );
    assert_eq!(d(Counter::TooDeep), 1);
    assert_eq!(d(Counter::Malformed), 0);
    assert!(d(Counter::Passed) >= 2, "noise and the too-deep frame pass");

    let mut want = [0u64; TUNNELS];
    for (_, kinds, _) in &cases {
        for k in *kinds {
            want[*k as usize] += 1;
        }
    }
    want[Tunnel::Gre as usize] += 1; // media
    want[Tunnel::Vxlan as usize] += 1; // noise
    want[Tunnel::Mpls as usize] += 1; // too deep (counted, then refused)
    let tunnels = sensor.tunnel_counters();
    let got: Vec<u64> = (0..TUNNELS)
        .map(|i| tunnels[i] - tunnels_before[i])
        .collect();
    assert_eq!(got, want.to_vec(), "per-kind tunnel counters");

    let mut kept: Vec<Vec<u8>> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while kept.len() < cases.len() + 1 && Instant::now() < deadline {
        reader
            .poll(Duration::from_millis(100), |_, data| {
                kept.push(data.to_vec())
            })
            .expect("poll ring");
    }
    let mut sent: Vec<Vec<u8>> = cases.iter().map(|c| c.2.clone()).collect();
    sent.push(media);
    assert_eq!(kept.len(), sent.len(), "frames read back");
    for (name, (k, s)) in cases
        .iter()
        .map(|c| c.0)
        .chain(["media"])
        .zip(kept.iter().zip(&sent))
    {
        assert_eq!(k, s, "{name}: frame read back as sent");
    }
    sensor.detach().unwrap();
}

fn wait_seen(sensor: &XdpSensor, before: &[u64; COUNTERS], n: u64) -> [u64; COUNTERS] {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = sensor.counters();
        if delta(&now, before, Counter::Seen) >= n || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
