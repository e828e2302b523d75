//! Decoder speed on plain (untunnelled) traffic: the mix a SIP/RTP mirror
//! port carries, decoded many times over. Ignored (a timing, not a check);
//! run it in release:
//! `cargo test --release -p voxtap-proto decode::bench -- --ignored --nocapture`.
//! It uses only `Decoder::new` and `Decoder::decode`, so the same file
//! times an older decoder too (how the before/after figure was made).

use std::time::Instant;

use super::{Decoder, FragLimits};
use crate::pcapio::LinkType;

fn eth(ty: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    v.extend_from_slice(&ty.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn vlan(vid: u16, ty: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vid.to_be_bytes().to_vec();
    v.extend_from_slice(&ty.to_be_bytes());
    v.extend_from_slice(payload);
    eth(0x8100, &v)
}

fn ipv4(proto: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut v = vec![0x45, 0];
    v.extend_from_slice(&total.to_be_bytes());
    v.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    v.extend_from_slice(payload);
    v
}

fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x60, 0, 0, 0];
    v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    v.extend_from_slice(&[next, 64]);
    v.extend_from_slice(&[0xfd; 16]);
    v.extend_from_slice(&[0xfe; 16]);
    v.extend_from_slice(payload);
    v
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = sport.to_be_bytes().to_vec();
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(payload);
    v
}

fn tcp(payload: &[u8]) -> Vec<u8> {
    let mut v = vec![
        0x13, 0xc4, 0x13, 0xc4, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff,
    ];
    v.extend_from_slice(&[0, 0, 0, 0]);
    v.extend_from_slice(payload);
    v
}

/// Nine in ten RTP over IPv4, then RTP on a VLAN, RTP over IPv6, SIP over
/// UDP and TCP, and ARP.
fn plain_mix() -> Vec<Vec<u8>> {
    let rtp = [0x80u8; 172];
    let sip = [b'S'; 600];
    let mut frames = Vec::new();
    for i in 0..90u16 {
        frames.push(eth(0x0800, &ipv4(17, &udp(10000 + i, 20000, &rtp))));
    }
    frames.push(vlan(100, 0x0800, &ipv4(17, &udp(10000, 20000, &rtp))));
    frames.push(eth(0x86dd, &ipv6(17, &udp(10000, 20000, &rtp))));
    frames.push(eth(0x86dd, &ipv6(17, &udp(10002, 20002, &rtp))));
    frames.push(eth(0x0800, &ipv4(17, &udp(5060, 5060, &sip))));
    frames.push(eth(0x0800, &ipv4(17, &udp(5060, 5060, &sip))));
    frames.push(eth(0x0800, &ipv4(6, &tcp(&sip))));
    frames.push(eth(0x0800, &ipv4(6, &tcp(&sip))));
    frames.push(vlan(200, 0x0800, &ipv4(17, &udp(10004, 20004, &rtp))));
    frames.push(eth(0x0806, &[0; 28]));
    frames.push(eth(0x0800, &ipv4(17, &udp(10006, 20006, &rtp))));
    frames
}

#[test]
#[ignore = "timing: run in release with --ignored --nocapture"]
fn plain_traffic_decode_speed() {
    let frames = plain_mix();
    let rounds = 200_000usize;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let mut d = Decoder::new(FragLimits::default());
        let mut udp_tcp = 0u64;
        let t = Instant::now();
        for r in 0..rounds {
            for (i, f) in frames.iter().enumerate() {
                let ts = (r * frames.len() + i) as u64 * 20_000;
                if let Ok(Some(dg)) = d.decode(LinkType::Ethernet, ts, 0, f) {
                    udp_tcp += std::hint::black_box(dg.payload.len() as u64 & 1) | 1;
                }
            }
        }
        let ns = t.elapsed().as_nanos() as f64 / (rounds * frames.len()) as f64;
        assert_eq!(udp_tcp, (rounds * (frames.len() - 1)) as u64);
        best = best.min(ns);
    }
    println!(
        "decode, plain traffic: {best:.1} ns/frame (best of 5 runs of {} frames)",
        rounds * frames.len()
    );
}
