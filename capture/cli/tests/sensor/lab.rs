//! The live tests' lab (`voxtap_testkit::lab`) and what they need of the
//! voxtap binary built with them: `voxtap run` in the sensor namespace,
//! waiting for it to capture and for its calls, `voxtap extract`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

pub use voxtap_testkit::csv::{csv_rows, read_csv};
pub use voxtap_testkit::lab::*;
pub use voxtap_testkit::tshark::*;
pub use voxtap_testkit::wait_until;

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
    // A restart on the same directories must not find the last run's file.
    let _ = std::fs::remove_file(dir.join("out/status/sensor.json"));
    let mut bg = spawn(c);
    wait_capturing(&mut bg, &dir.join("out"));
    bg
}

/// Waits until `voxtap run --out OUT` captures: its first status file,
/// published once XDP is attached and every thread runs. Returns early if
/// it exited (the test's checks of its output then say why).
pub fn wait_capturing(vox: &mut Bg, out: &Path) {
    let status = out.join("status/sensor.json");
    wait_until(Duration::from_secs(30), "voxtap run capturing", || {
        (status.exists() || vox.exited()).then_some(())
    });
}

/// Waits until `n` calls are in OUT/calls.csv: they ended (BYE and 5 s of
/// linger) and were written.
pub fn wait_calls_written(out: &Path, n: usize) {
    let csv = out.join("calls.csv");
    wait_until(
        Duration::from_secs(30),
        &format!("{n} calls in {}", csv.display()),
        || (csv_rows(&csv) >= n).then_some(()),
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

pub fn stored_frames(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir.join("store/pcap")).unwrap() {
        n += count(&e.unwrap().path(), None);
    }
    n
}
