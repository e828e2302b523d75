//! `cargo xtask bench [--calls N] [--seconds S]`: `voxtap import` against the
//! tools users would run instead, on the same synthetic capture, in one run.
//!
//! Figures are reported as ratios to the peers because this machine is noisy:
//! absolute packets/s move with the host, ratios much less.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

struct Measure {
    tool: String,
    wall_s: f64,
    cpu_s: f64,
    max_rss_kib: i64,
}

/// Run `cmd` to completion and measure wall time, CPU time and peak memory
/// of that one child (wait4 gives its own rusage, not the sum of children).
fn measure(tool: &str, mut cmd: Command) -> Result<Measure> {
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let start = Instant::now();
    let child = cmd.spawn().with_context(|| format!("starting {tool}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall_s = start.elapsed().as_secs_f64();
    if r != pid {
        bail!("wait4 for {tool}: {}", std::io::Error::last_os_error());
    }
    let st = std::process::ExitStatus::from_raw(status);
    if !st.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        bail!("{tool} failed ({st}): {err}");
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Measure {
        tool: tool.to_string(),
        wall_s,
        cpu_s: tv(ru.ru_utime) + tv(ru.ru_stime),
        max_rss_kib: ru.ru_maxrss,
    })
}

pub fn bench(root: &Path, args: &[String]) -> Result<()> {
    let mut calls = 2000u32;
    let mut seconds = 10u32;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next().context("option needs a value")?;
        match a.as_str() {
            "--calls" => calls = v.parse()?,
            "--seconds" => seconds = v.parse()?,
            _ => bail!("unknown option {a}"),
        }
    }
    let mut c = super::cargo();
    c.args([
        "build",
        "--release",
        "-p",
        "voxtap-capture",
        "--bin",
        "voxtap",
    ]);
    super::run(c)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let voxtap = target.join("release/voxtap");
    let dir = target.join("bench");
    fs::create_dir_all(&dir)?;
    let pcap = dir.join(format!("synth-{calls}x{seconds}s.pcap"));
    if !pcap.exists() {
        let mut c = Command::new(&voxtap);
        c.args([
            "synth",
            "--calls",
            &calls.to_string(),
            "--seconds",
            &seconds.to_string(),
        ])
        .arg("--out")
        .arg(&pcap);
        super::run(c)?;
    }
    let bytes = fs::metadata(&pcap)?.len();
    // Packets in the file: SIP 6 per call + RTP both ways every 20 ms.
    let out = Command::new("capinfos")
        .args(["-c", "-M"])
        .arg(&pcap)
        .output()?;
    let packets: u64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            l.split(':')
                .nth(1)
                .filter(|_| l.contains("Number of packets"))
        })
        .and_then(|v| v.trim().parse().ok())
        .context("capinfos packet count")?;

    let mut results = Vec::new();
    let out_dir = dir.join("import-out");
    let _ = fs::remove_dir_all(&out_dir);
    let mut c = Command::new(&voxtap);
    c.args(["import", "--quiet", "--csv-only", "--out"])
        .arg(&out_dir)
        .arg(&pcap);
    results.push(measure("voxtap import (csv)", c)?);
    let _ = fs::remove_dir_all(&out_dir);
    let mut c = Command::new(&voxtap);
    c.args(["import", "--quiet", "--out"])
        .arg(&out_dir)
        .arg(&pcap);
    results.push(measure("voxtap import (+ per-call pcap)", c)?);
    let mut c = Command::new("tshark");
    c.args(["-q", "-z", "rtp,streams", "-r"]).arg(&pcap);
    results.push(measure("tshark -z rtp,streams", c)?);
    let mut c = Command::new("tshark");
    c.args(["-q", "-z", "sip,stat", "-r"]).arg(&pcap);
    results.push(measure("tshark -z sip,stat", c)?);
    let sngrep_out = dir.join("sngrep-out.pcap");
    let mut c = Command::new("sngrep");
    c.args(["-N", "-I"]).arg(&pcap).arg("-O").arg(&sngrep_out);
    results.push(measure("sngrep -N -I -O", c)?);

    let base = results[0].cpu_s.max(1e-9);
    let mut table = String::new();
    writeln!(
        table,
        "input: {} ({} calls x {} s, {} packets, {:.0} MiB)",
        pcap.display(),
        calls,
        seconds,
        packets,
        bytes as f64 / 1048576.0
    )?;
    writeln!(
        table,
        "{:<34} {:>8} {:>8} {:>14} {:>10} {:>16}",
        "tool", "wall s", "cpu s", "packets/s/core", "peak MiB", "voxtap is faster"
    )?;
    let mut json = String::from("{\n");
    writeln!(
        json,
        "  \"packets\": {packets},\n  \"calls\": {calls},\n  \"seconds\": {seconds},\n  \"results\": ["
    )?;
    for (i, m) in results.iter().enumerate() {
        let pps = packets as f64 / m.cpu_s.max(1e-9);
        // The ratio compares a peer's CPU time with voxtap's (CSV import,
        // the same work tshark does: calls and stream statistics).
        let ratio = if m.tool.starts_with("voxtap") {
            "-".to_string()
        } else {
            format!("{:.1}x", m.cpu_s / base)
        };
        writeln!(
            table,
            "{:<34} {:>8.2} {:>8.2} {:>14.0} {:>10.1} {:>16}",
            m.tool,
            m.wall_s,
            m.cpu_s,
            pps,
            m.max_rss_kib as f64 / 1024.0,
            ratio
        )?;
        writeln!(
            json,
            "    {{\"tool\": \"{}\", \"wall_s\": {:.3}, \"cpu_s\": {:.3}, \"packets_per_s_per_core\": {:.0}, \"peak_rss_kib\": {}, \"voxtap_speedup\": {:.2}}}{}",
            m.tool,
            m.wall_s,
            m.cpu_s,
            pps,
            m.max_rss_kib,
            m.cpu_s / base,
            if i + 1 < results.len() { "," } else { "" }
        )?;
    }
    json.push_str("  ]\n}\n");
    print!("{table}");
    let jpath = dir.join("bench.json");
    fs::write(&jpath, json)?;
    println!("written: {}", jpath.display());
    Ok(())
}
