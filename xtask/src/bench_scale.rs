//! `cargo xtask bench-scale [--calls N] [--seconds S] [--engine-workers 1,2,4,8]
//! [--voxtap PATH]` (PATH: a voxtap binary already built, instead of building
//! the release one):
//! the parallel engine's scaling on a synthetic capture (`voxtap synth`,
//! the one `bench` uses): `voxtap import --csv-only --workers 1
//! --engine-workers N` for each N, and from the engine line it prints
//! (thread CPU clocks: /proc/thread-self/schedstat) the CPU per packet of
//! the reading thread (read, decode once, steer), of the output thread (CSV
//! rows, call index), of the thread joining the replicas, and of each media
//! worker. Per N: the busiest thread's capacity (packets/s it could take);
//! the cores 5.25 M packets/s (a saturated 10 GbE of G.711) would need at
//! this CPU per packet (all threads' CPU per packet × 5.25 M/s: a lower
//! bound, reached only if no one thread is the limit); the share of a core
//! the busiest single thread would need at 5.25 M/s (above 1.00 no number
//! of cores reaches 5.25 M/s with this layout); the imbalance between
//! workers (max/mean); sweep control messages per second of capture (a
//! marker to each worker and a part back from each); and the CPU of all
//! threads against N = 1. The reading thread's CPU includes reading the
//! file, which a live sensor does not do (its frames come from the rings).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::bench::{release_voxtap, synth_input};

/// Packets per second of a saturated 10 GbE of G.711 (issue 18).
const TEN_GBE_PPS: f64 = 5.25e6;

struct Args {
    calls: u32,
    seconds: u32,
    workers: Vec<usize>,
    voxtap: Option<std::path::PathBuf>,
}

fn parse(args: &[String]) -> Result<Args> {
    let mut a = Args {
        calls: 5000,
        seconds: 10,
        workers: vec![1, 2, 4, 8],
        voxtap: None,
    };
    let mut it = args.iter();
    while let Some(o) = it.next() {
        let v = it.next().context("option needs a value")?;
        match o.as_str() {
            "--calls" => a.calls = v.parse()?,
            "--seconds" => a.seconds = v.parse()?,
            "--engine-workers" => {
                a.workers = v
                    .split(',')
                    .map(|n| n.trim().parse())
                    .collect::<Result<_, _>>()?
            }
            "--voxtap" => a.voxtap = Some(v.into()),
            _ => bail!("unknown option {o}"),
        }
    }
    Ok(a)
}

/// What one run's output says.
#[derive(Default)]
struct Run {
    packets: u64,
    reader_ns: f64,
    output_ns: f64,
    join_ns: f64,
    workers_ns: Vec<f64>,
    capture_s: f64,
    sweeps: u64,
}

fn number(s: &str, before: &str) -> Option<f64> {
    let i = s.find(before)?;
    s[..i].split_whitespace().last()?.parse().ok()
}

fn parse_output(out: &str) -> Result<Run> {
    let summary = out
        .lines()
        .find(|l| l.starts_with("imported"))
        .context("no summary line")?;
    let engine = out
        .lines()
        .find(|l| l.starts_with("engine:"))
        .context("no engine line")?;
    let mut r = Run {
        packets: number(summary, " packets").context("packets")? as u64,
        ..Default::default()
    };
    for part in engine.split("; ") {
        if part.starts_with("reader thread") {
            r.reader_ns = number(part, " ms CPU").context("reader CPU")? * 1e6;
        } else if part.starts_with("output thread") {
            r.output_ns = number(part, " ms CPU").context("output CPU")? * 1e6;
        } else if part.starts_with("join thread") {
            r.join_ns = number(part, " ms CPU").context("join CPU")? * 1e6;
        } else if part.starts_with("capture") {
            r.capture_s = number(part, " s").context("capture")?;
        } else if part.starts_with("worker ") {
            r.workers_ns
                .push(number(part, " ms CPU").context("worker CPU")? * 1e6);
        } else if part.starts_with("steered") {
            r.sweeps = part
                .split_whitespace()
                .last()
                .and_then(|v| v.parse().ok())
                .context("sweeps")?;
        }
    }
    Ok(r)
}

pub fn bench_scale(root: &Path, args: &[String]) -> Result<()> {
    let a = parse(args)?;
    let (voxtap, dir) = match &a.voxtap {
        Some(v) => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| root.join("target"));
            let dir = target.join("bench");
            std::fs::create_dir_all(&dir)?;
            (v.clone(), dir)
        }
        None => release_voxtap(root)?,
    };
    let pcap = synth_input(&voxtap, &dir, a.calls, a.seconds)?;
    let out = dir.join("scale-out");
    let mut runs = Vec::new();
    for &n in &a.workers {
        let _ = std::fs::remove_dir_all(&out);
        let o = Command::new(&voxtap)
            .args(["import", "--quiet", "--csv-only", "--workers", "1"])
            .args(["--engine-figures", "--engine-workers", &n.to_string()])
            .arg("--out")
            .arg(&out)
            .arg(&pcap)
            .output()
            .context("running voxtap import")?;
        if !o.status.success() {
            bail!("voxtap import: {}", String::from_utf8_lossy(&o.stderr));
        }
        runs.push((n, parse_output(&String::from_utf8_lossy(&o.stdout))?));
    }
    print!("{}", table(&a, &pcap, &runs));
    Ok(())
}

fn table(a: &Args, pcap: &Path, runs: &[(usize, Run)]) -> String {
    let mut t = String::new();
    let total = |r: &Run| r.reader_ns + r.output_ns + r.join_ns + r.workers_ns.iter().sum::<f64>();
    let base = runs.first().map_or(1.0, |(_, r)| total(r)).max(1.0);
    let _ = writeln!(
        t,
        "input: {} ({} calls x {} s, {} packets); load average {}",
        pcap.display(),
        a.calls,
        a.seconds,
        runs.first().map_or(0, |(_, r)| r.packets),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let _ = writeln!(
        t,
        "{:>2} | {:>11} | {:>11} | {:>9} | {:>17} | {:>14} | {:>12} | {:>13} | {:>9} | {:>11} | {:>9}",
        "N",
        "reader ns/p",
        "output ns/p",
        "join ns/p",
        "worker ns/p max",
        "busiest pkt/s",
        "cores @5.25M",
        "busiest core",
        "imbalance",
        "control/s",
        "CPU vs N=1"
    );
    for (n, r) in runs {
        let p = r.packets.max(1) as f64;
        let wmax = r.workers_ns.iter().copied().fold(0.0, f64::max);
        let wmean = r.workers_ns.iter().sum::<f64>() / r.workers_ns.len().max(1) as f64;
        let busiest = r.reader_ns.max(wmax).max(r.join_ns).max(r.output_ns);
        let cores = TEN_GBE_PPS * total(r) / p / 1e9;
        let busiest_core = TEN_GBE_PPS * busiest / p / 1e9;
        let control = (2 * r.sweeps * *n as u64) as f64 / r.capture_s.max(1e-9);
        let _ = writeln!(
            t,
            "{n:>2} | {:>11.0} | {:>11.0} | {:>9.0} | {:>17.0} | {:>14.0} | {:>12.2} | {:>13.2} | {:>9} | {:>11.0} | {:>9.2}",
            r.reader_ns / p,
            r.output_ns / p,
            r.join_ns / p,
            wmax / p,
            p / (busiest.max(1.0) / 1e9),
            cores,
            busiest_core,
            if r.workers_ns.is_empty() {
                "-".to_string()
            } else {
                format!("{:.2}", wmax / wmean.max(1.0))
            },
            control,
            total(r) / base
        );
    }
    for (n, r) in runs.iter().filter(|(_, r)| !r.workers_ns.is_empty()) {
        let p = r.packets.max(1) as f64;
        let each: Vec<String> = r
            .workers_ns
            .iter()
            .map(|w| format!("{:.0}", w / p))
            .collect();
        let _ = writeln!(t, "N={n}: workers' ns/packet {}", each.join(" "));
    }
    t
}
