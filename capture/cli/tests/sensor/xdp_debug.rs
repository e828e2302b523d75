//! The XDP program's aya-log debug records (root only).
//!
//! * `debug_log_describes_a_frame_sent_through_a_veth`: with debug logging
//!   on, a SIP datagram in VXLAN and a plain UDP datagram sent from a
//!   namespace produce the records the frames' own headers predict
//!   (addresses, ports, tunnel kinds, verdict), read back through aya-log;
//!   without it, the sensor has no debug log at all; `voxtap run
//!   --xdp-debug` prints the same records.
//! * `xdp_debug_cost` (ignored, a measurement): the program's size after
//!   the verifier and its time per frame (`BPF_PROG_TEST_RUN`) with logging
//!   compiled out, compiled in but off, and on:
//!   `sudo -E cargo test -p voxtap --test sensor xdp_debug_cost -- --ignored --nocapture`
//!   (the kernel times the runs: a debug build of the test is fine).
#![cfg(target_os = "linux")]

use std::{
    net::Ipv4Addr,
    os::fd::{AsRawFd, BorrowedFd},
    time::{Duration, Instant},
};

use voxtap_sensor::xdp::{Counter, MapSizes, Tunnel, XdpConfig, XdpDebug, XdpDebugLog, XdpSensor};

use crate::lab::{VOXTAP, spawn, tempdir, wait_capturing, wait_until};
use crate::xdp_tunnels::{IN_A, IN_B, inner_eth, send_raw, sip, vxlan_frame};
use crate::xdp_veth::{VethNs, require_root};

fn load(debug: XdpDebug) -> XdpSensor {
    let cfg = XdpConfig {
        flags: 0,
        wakeup_every: 1,
        ..XdpConfig::default()
    };
    XdpSensor::load_debug(cfg, &[5060], &[], MapSizes::default(), debug)
        .unwrap_or_else(|e| panic!("load XDP program {debug:?} (verifier): {e}"))
}

/// The record the program writes for a UDP datagram `a:sport -> b:dport`.
fn l4_line(a: Ipv4Addr, sport: u16, b: Ipv4Addr, dport: u16, tunnels: u32) -> String {
    format!(
        "[{}]:{sport} -> [{}]:{dport} proto 17 tunnels {tunnels:x}",
        a.to_ipv6_mapped(),
        b.to_ipv6_mapped()
    )
}

/// Reads records until every one of `want` was seen, or 10 s pass.
fn collect_until(log: &mut XdpDebugLog, want: &[String]) -> Vec<String> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && !want.iter().all(|w| got.contains(w)) {
        log.wait(Duration::from_millis(100)).expect("poll");
        log.flush(|l| got.push(l.to_owned()));
    }
    got
}

#[test]
fn debug_log_describes_a_frame_sent_through_a_veth() {
    require_root();
    assert!(load(XdpDebug::Off).take_debug_log().is_none());
    let net = VethNs::create('d');
    let mut sensor = load(XdpDebug::On);
    sensor.attach(&net.host).expect("attach");
    let mut log = sensor.take_debug_log().expect("debug log");
    let frames = vec![
        vxlan_frame(42, &inner_eth(5060, &sip(1))),
        inner_eth(41000, b"noise"),
    ];
    let peer = net.peer.clone();
    net.in_ns(|| send_raw(&peer, &frames));
    let want = [
        l4_line(IN_A, 5062, IN_B, 5060, u32::from(Tunnel::Vxlan.bit())),
        format!("kept, reason {}, ring 0", Counter::KeptSip as u32),
        l4_line(IN_A, 5062, IN_B, 41000, 0),
        "not kept".to_owned(),
    ];
    let got = collect_until(&mut log, &want);
    for w in &want {
        assert!(got.contains(w), "no record {w:?} in {got:#?}");
    }
    sensor.detach().unwrap();
    drop(sensor);
    voxtap_run_prints_records(&net, &frames[..1], &want[..2]);
}

/// `voxtap run --xdp-debug` on the same veth: the records of `frames` (one
/// in VXLAN) in its log, printed by the time it stops.
fn voxtap_run_prints_records(net: &VethNs, frames: &[Vec<u8>], want: &[String]) {
    let dir = tempdir("xdp-debug");
    let (store, out) = (dir.join("store"), dir.join("out"));
    let mut c = std::process::Command::new(VOXTAP);
    c.args([
        "run",
        "--xdp-debug",
        "--iface",
        &net.host,
        "--duration",
        "60",
    ])
    .arg("--store")
    .arg(&store)
    .arg("--out")
    .arg(&out)
    .env("RUST_LOG", "info");
    let mut vox = spawn(c);
    wait_capturing(&mut vox, &out);
    let peer = net.peer.clone();
    net.in_ns(|| send_raw(&peer, frames));
    let status = out.join("status/sensor.json");
    wait_until(
        Duration::from_secs(30),
        "the VXLAN frame in sensor.json",
        || {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&status).ok()?).ok()?;
            (v["kernel"]["tunnels"]["vxlan"].as_u64() >= Some(1)).then_some(())
        },
    );
    vox.signal(libc::SIGTERM);
    let done = vox.wait(Duration::from_secs(30));
    let log = String::from_utf8_lossy(&done.stderr).to_string();
    assert!(done.status.success(), "voxtap run: {log}");
    for w in want {
        assert!(
            log.lines()
                .any(|l| l.contains("voxtap_xdp") && l.ends_with(w.as_str())),
            "no record {w:?} in {log}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `BPF_PROG_TEST_RUN`'s part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct TestRun {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    /// Explicit, so it is zero: the kernel refuses non-zero bytes past the
    /// fields it knows.
    pad: u32,
}

const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// Runs the program `repeat` times on `frame` in the kernel; mean ns per run.
fn test_run(fd: BorrowedFd<'_>, frame: &[u8], repeat: u32) -> u32 {
    test_run_verdict(fd, frame, repeat).1
}

/// Runs the program `repeat` times on `frame` in the kernel: its return
/// value (the XDP action) and the mean ns per run.
pub(crate) fn test_run_verdict(fd: BorrowedFd<'_>, frame: &[u8], repeat: u32) -> (u32, u32) {
    let mut out = vec![0u8; frame.len() + 256];
    let mut attr = TestRun {
        prog_fd: fd.as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_size_out: out.len() as u32,
        data_in: frame.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat,
        ..TestRun::default()
    };
    // SAFETY: a valid attr for this command, buffers alive for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestRun,
            std::mem::size_of::<TestRun>(),
        )
    };
    assert_eq!(
        rc,
        0,
        "BPF_PROG_TEST_RUN: {}",
        std::io::Error::last_os_error()
    );
    (attr.retval, attr.duration)
}

/// Mean ns per frame over `batches` runs of 200, the rings drained between
/// runs (a full ring would time failed writes instead).
fn ns_per_frame(sensor: &mut XdpSensor, frame: &[u8], batches: u32) -> f64 {
    let mut frames = sensor.take_frame_reader().expect("frame reader");
    let mut log = sensor.take_debug_log();
    let fd = sensor.program_fd().expect("program fd");
    let mut total = 0u64;
    for _ in 0..batches {
        total += u64::from(test_run(fd, frame, 200));
        while frames.next_frame().is_some() {}
        if let Some(l) = log.as_mut() {
            l.flush(|_| {});
        }
    }
    total as f64 / f64::from(batches)
}

#[test]
#[ignore = "measurement: run as root with --ignored --nocapture"]
fn xdp_debug_cost() {
    require_root();
    let cases = [
        ("plain UDP, not kept", inner_eth(41000, b"noise")),
        (
            "UDP in VXLAN, not kept",
            vxlan_frame(42, &inner_eth(41000, b"noise")),
        ),
        (
            "SIP in VXLAN, kept",
            vxlan_frame(42, &inner_eth(5060, &sip(1))),
        ),
    ];
    for debug in [XdpDebug::Off, XdpDebug::Silent, XdpDebug::On] {
        let size = load(debug).program_size().expect("program info");
        println!(
            "{debug:?}: {} insns after the verifier ({} B JITed), {} verified",
            size.translated_bytes / 8,
            size.jited_bytes,
            size.verified_insns
        );
        for (name, frame) in &cases {
            // A fresh program per case: each takes its rings once.
            let mut sensor = load(debug);
            let ns = ns_per_frame(&mut sensor, frame, 500);
            println!("  {name}: {ns:.1} ns/frame");
        }
    }
}
