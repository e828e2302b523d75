//! `voxtap run` on a mirror port that carries tunnelled calls: the lab's
//! caller and callee talk through a Linux `vxlan` device over their veth
//! link, so the SPAN copy the sensor sees is VXLAN (UDP 4789) around the
//! SIPp calls. The XDP classifier must keep the SIP and media it finds
//! inside by the plain-traffic rules: stored frames equal tcpdump's on the
//! same mirror, calls and streams equal tshark's reading of tcpdump's file,
//! and every call records its outer path.
//!
//! MPLS (iproute2 `encap mpls`) is not tested live here: it needs the
//! kernel's MPLS routing (`CONFIG_MPLS_ROUTING`, modules `mpls_router` and
//! `mpls_iptunnel`), which this machine's kernel does not have (and GRE,
//! ERSPAN, IP-in-IP and Geneve devices neither); MPLS, GRE and ERSPAN are
//! covered by the e2e tunnel tests (decoder) and `xdp_veth::` (classifier).
#![cfg(target_os = "linux")]

use crate::lab;

use std::collections::HashMap;
use std::time::Duration;

use lab::*;

const VNI: u32 = 42;

/// A VXLAN device `vx0` in namespace `ns` from `local` to `remote` (the
/// veth addresses) with the inner address `inner`/24.
fn vxlan_dev(ns: &str, dev: &str, local: &str, remote: &str, inner: &str) {
    let vni = VNI.to_string();
    let steps: [&[&str]; 4] = [
        &[
            "ip", "link", "add", "vx0", "type", "vxlan", "id", &vni, "local", local, "remote",
            remote, "dstport", "4789", "dev", dev,
        ],
        &["ip", "addr", "add", &format!("{inner}/24"), "dev", "vx0"],
        &["ip", "link", "set", "vx0", "up"],
        // Checksums finished before encapsulation (see netns-mirror.sh).
        &["ethtool", "-K", "vx0", "tx", "off"],
    ];
    for s in steps {
        let out = in_ns(ns, s).output().unwrap();
        assert!(out.status.success(), "{s:?}: {out:?}");
    }
}

fn mac(ns: &str, dev: &str) -> String {
    let out = in_ns(ns, &["cat", &format!("/sys/class/net/{dev}/address")])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Static neighbours over the tunnel: no ARP inside it during the calls.
fn neighbour(ns: &str, ip: &str, mac: &str) {
    let out = in_ns(
        ns,
        &[
            "ip",
            "neigh",
            "replace",
            ip,
            "lladdr",
            mac,
            "dev",
            "vx0",
            "nud",
            "permanent",
        ],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn live_sipp_calls_inside_vxlan_match_tcpdump() {
    require_root();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempdir("vxlan");
    let n = 214;
    let lab = Lab::up(&format!("vt{}", std::process::id() % 10000), n);
    let (inner_a, inner_b) = (format!("10.{n}.1.1"), format!("10.{n}.1.2"));
    let (pa, pb) = (format!("{}A", lab.p), format!("{}B", lab.p));
    vxlan_dev(&lab.ns('a'), &pa, &lab.ip(1), &lab.ip(2), &inner_a);
    vxlan_dev(&lab.ns('b'), &pb, &lab.ip(2), &lab.ip(1), &inner_b);
    neighbour(&lab.ns('a'), &inner_b, &mac(&lab.ns('b'), "vx0"));
    neighbour(&lab.ns('b'), &inner_a, &mac(&lab.ns('a'), "vx0"));

    let vox = start_voxtap(&lab, &dir, "", 90);
    let td = dir.join("tcpdump.pcap");
    let tcpdump = start_tcpdump(&lab, &td);
    let calls_n = 4;
    sipp_calls_between(&lab, &dir, calls_n, 4, (&inner_a, &inner_b));
    wait_calls_written(&dir.join("out"), calls_n as usize);
    vox.signal(libc::SIGTERM);
    let out = vox.wait(Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "voxtap run: {stderr}");
    tcpdump.signal(libc::SIGINT);
    tcpdump.wait(Duration::from_secs(10));
    eprintln!("{stdout}");

    // Everything on the mirror is VXLAN: tshark sees it in every frame.
    let theirs = count(&td, None);
    assert!(theirs > calls_n as usize * 400, "{theirs} frames");
    assert_eq!(count(&td, Some("vxlan")), theirs, "tcpdump frames in VXLAN");
    assert_eq!(summary_value(&stdout, "lost_ring_full"), 0);
    // The kernel counted each frame through VXLAN once (per CPU, summed).
    assert_eq!(summary_value(&stdout, "tunnels: vxlan") as usize, theirs);
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("out/status/sensor.json")).unwrap())
            .unwrap();
    assert_eq!(st["kernel"]["tunnels"]["vxlan"], theirs as u64, "{st}");

    let mut all = Vec::new();
    for e in std::fs::read_dir(dir.join("store/pcap")).unwrap() {
        all.extend(frame_keys(&e.unwrap().path(), None));
    }
    all.sort();
    // tcpdump's `udp` takes all of the tunnel, ICMP inside included (the
    // callee's port-unreachable replies to echoed RTP after a call's BYE);
    // plain, the same filter leaves ICMP out, and so does the sensor.
    let want = frame_keys(&td, Some("not icmp"));
    assert!(want.len() + 20 > theirs, "{} ICMP", theirs - want.len());
    assert_same(&all, &want, "stored frames vs tcpdump's (UDP inside)");

    check_calls(&dir, &td, calls_n as usize);
    check_streams(&dir, &td);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// calls.csv: tshark's Call-IDs, answered, the outer path, and each call's
/// packets and call.pcap equal to tshark's cut of tcpdump's file.
fn check_calls(dir: &std::path::Path, td: &std::path::Path, n: usize) {
    let calls = read_csv(&dir.join("out/calls.csv"));
    let mut ids: Vec<String> = calls.iter().map(|c| c["call_id"].clone()).collect();
    ids.sort();
    assert_eq!(ids, tshark_call_ids(td), "Call-IDs");
    assert_eq!(ids.len(), n);
    let eps = sdp_endpoints(td);
    for c in &calls {
        let cid = &c["call_id"];
        assert_eq!(c["state"], "answered", "{cid}");
        assert_eq!(c["outer_path"], format!("vxlan({VNI})"), "{cid}");
        let want = frame_keys(td, Some(&call_filter(cid, &eps[cid])));
        let total: usize = ["sip_packets", "rtp_packets", "rtcp_packets"]
            .iter()
            .map(|k| c[*k].parse::<usize>().unwrap())
            .sum();
        assert_eq!(total, want.len(), "{cid}: packets vs tshark on tcpdump");
        assert_same(
            &frame_keys(&dir.join("out").join(&c["pcap"]), None),
            &want,
            &format!("{cid}: call.pcap"),
        );
    }
}

/// streams.csv against tshark's RTP streams of tcpdump's file: the same
/// streams, with equal packets and loss.
fn check_streams(dir: &std::path::Path, td: &std::path::Path) {
    let streams = read_csv(&dir.join("out/streams.csv"));
    let ours: HashMap<(String, String, u32), &HashMap<String, String>> = streams
        .iter()
        .map(|s| {
            let ssrc = u32::from_str_radix(s["ssrc_hex"].trim_start_matches("0x"), 16).unwrap();
            ((s["src"].clone(), s["dst"].clone(), ssrc), s)
        })
        .collect();
    let theirs = tshark_rtp_streams(td);
    assert!(!theirs.is_empty(), "tshark finds no RTP");
    assert_eq!(ours.len(), theirs.len(), "streams");
    for t in theirs {
        let s = ours
            .get(&(t.src.clone(), t.dst.clone(), t.ssrc))
            .unwrap_or_else(|| panic!("tshark stream {t:?} missing"));
        assert_eq!(s["packets"], t.packets.to_string(), "packets of {t:?}");
        assert_eq!(s["lost"], t.lost.to_string(), "lost of {t:?}");
    }
}
