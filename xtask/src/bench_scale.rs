//! `cargo xtask bench-scale [--calls N] [--seconds S1,S2]
//! [--engine-workers 1,2,4,8] [--voxtap PATH] [--instructions |
//! --cache-misses]` (PATH: a
//! voxtap binary already built, instead of building the release one): the
//! parallel engine's scaling, and its cost projected to a saturated 10 GbE.
//!
//! For each call length S (default 1 and 3 s) it writes a synthetic
//! capture of N concurrent calls (`voxtap synth`, the one `bench` uses:
//! default 50,000 calls, about the 52,500 of a saturated 10 GbE, so the
//! capture runs at about 5 M packets/s of capture time) and runs `voxtap
//! import --csv-only --workers 1 --engine-workers W --engine-figures` on it
//! for each W. From the engine line (thread CPU clocks,
//! /proc/thread-self/schedstat) it prints, per run, the CPU per packet of
//! the reading thread (read, decode once, steer, batch), of reading the
//! file alone (the import reads it once more by itself: a live sensor does
//! not read files, its frames come from the rings), of the output thread
//! (CSV rows, call index), of the thread joining the replicas and of each
//! media worker, with the busiest thread's capacity, the imbalance between
//! workers and sweep control messages per second of capture.
//!
//! Short synthetic calls weigh the per-call work (SIP, call set-up and
//! end, CSV rows) far more per packet than real ones, so from the two
//! lengths it fits, per thread, **CPU = a x packets + b x calls** (exactly,
//! from the two runs: the same calls and concurrency, a different number
//! of packets per call) and projects the steady state of a saturated
//! 10 GbE of G.711: 5.25 M packets/s with 52,500 concurrent calls of 180 s
//! mean, so 292 calls starting and ending per second: a x 5.25e6 + b x 292
//! CPU-ns per second for each thread. The model assumes a thread's cost
//! per packet does not depend on the call's length nor its cost per call
//! on the packets, at the concurrency measured (per-second work such as
//! sweeps is charged to a: both runs have the same packets per second of
//! capture time). The fitted figures are printed beside the two measured
//! runs they come from.
//!
//! In CPU time it ends with a control for the "CPU vs N=1" column: the
//! longer capture imported by one pipeline alone, then by two at once in
//! separate processes, each one's CPU against the one alone: what the
//! machine's cores cost each other when both work (memory, a last-level
//! cache shared with a VM's other tenants), which the engine's threads pay
//! too.
//!
//! A worker's fit per packet of the link mixes what it is given (1/N of
//! the media) with how fast the machine runs it. So each fit also gives
//! every N's busiest worker fitted per frame it handled (its own media and
//! every SIP and RTCP frame) beside one pipeline per packet less reading
//! the file: the figure to compare across N. On a machine with fewer cores
//! than threads that figure is still inflated by memory stalls (a worker
//! runs the call table's code for each datagram of its own with the same
//! instructions as one pipeline, a quarter fewer in all as it does not
//! decode, and spent 1.3 to 2.2 times one pipeline's CPU per frame at
//! N = 2 to 8: docs/performance.md, "Session 12"), so
//! `--instructions` counts each thread's instructions under callgrind
//! instead of its CPU time ([`callgrind`]): the engine's work, whatever
//! the load and the scheduling; about 50 times slower (`--calls 5000`).
//! `--cache-misses` counts instead each thread's last-level cache misses
//! (reads and writes) in callgrind's simulation of a fixed cache (32 KiB
//! L1D, 32 MiB last level): the memory traffic that N replicas of the call
//! tables add, as deterministic as the instructions (session 14 found
//! 8.1 misses a packet at N = 4 against 0.7 at N = 1).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::bench::{release_voxtap, synth_input};

mod callgrind;

/// Packets per second of a saturated 10 GbE of G.711 (issue 18).
const TEN_GBE_PPS: f64 = 5.25e6;
/// Its calls starting (and ending) per second: 5.25 M/s over 100 packets
/// per second per call (50 each way) is 52,500 concurrent calls, of 180 s
/// mean length.
const TEN_GBE_CALLS_PER_S: f64 = TEN_GBE_PPS / 100.0 / 180.0;

/// What a run's thread figures count, for the tables' headings: the
/// arithmetic is the same (a figure per second over `per_second` is cores
/// for nanoseconds, G instructions per second for instructions).
struct Unit {
    /// What is counted: "CPU", "instructions" or "LL misses".
    what: &'static str,
    /// Per packet: "ns", "ins" or "miss".
    per: &'static str,
    /// A thousand of them, per call.
    thousand: &'static str,
    /// Per second over `per_second`.
    rate: &'static str,
    per_second: f64,
    /// Packets the busiest thread handles per second or per 1e9
    /// instructions (or misses).
    pace: &'static str,
    /// Decimals of a figure per packet.
    decimals: usize,
}

const CPU_TIME: Unit = Unit {
    what: "CPU",
    per: "ns",
    thousand: "us",
    rate: "cores",
    per_second: 1e9,
    pace: "busiest pkt/s",
    decimals: 0,
};

const INSTRUCTIONS: Unit = Unit {
    what: "instructions",
    per: "ins",
    thousand: "k ins",
    rate: "G ins/s",
    per_second: 1e9,
    pace: "pkt/G ins",
    decimals: 0,
};

const LL_MISSES: Unit = Unit {
    what: "LL misses",
    per: "miss",
    thousand: "k miss",
    rate: "M miss/s",
    per_second: 1e6,
    pace: "pkt/G miss",
    decimals: 2,
};

/// What each thread's figure is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Count {
    /// Its CPU time (thread CPU clock).
    Cpu,
    /// Its instructions (callgrind).
    Instructions,
    /// Its last-level cache misses (callgrind's cache simulation).
    LlMisses,
}

impl Count {
    fn unit(self) -> &'static Unit {
        match self {
            Count::Cpu => &CPU_TIME,
            Count::Instructions => &INSTRUCTIONS,
            Count::LlMisses => &LL_MISSES,
        }
    }
}

struct Args {
    calls: u32,
    seconds: Vec<u32>,
    workers: Vec<usize>,
    voxtap: Option<PathBuf>,
    /// What is counted for each thread.
    count: Count,
}

fn list<T: std::str::FromStr>(v: &str) -> Result<Vec<T>, T::Err> {
    v.split(',').map(|n| n.trim().parse()).collect()
}

fn parse(args: &[String]) -> Result<Args> {
    let mut a = Args {
        calls: 50_000,
        seconds: vec![1, 3],
        workers: vec![1, 2, 4, 8],
        voxtap: None,
        count: Count::Cpu,
    };
    let mut it = args.iter();
    while let Some(o) = it.next() {
        let count = match o.as_str() {
            "--instructions" => Some(Count::Instructions),
            "--cache-misses" => Some(Count::LlMisses),
            _ => None,
        };
        if let Some(c) = count {
            a.count = c;
            continue;
        }
        let v = it.next().context("option needs a value")?;
        match o.as_str() {
            "--calls" => a.calls = v.parse()?,
            "--seconds" => a.seconds = list(v)?,
            "--engine-workers" => a.workers = list(v)?,
            "--voxtap" => a.voxtap = Some(v.into()),
            _ => bail!("unknown option {o}"),
        }
    }
    if a.seconds.is_empty() || a.workers.is_empty() {
        bail!("--seconds and --engine-workers need at least one value");
    }
    Ok(a)
}

/// What one run's output says (CPU times in ns).
#[derive(Clone, Default)]
struct Run {
    packets: u64,
    calls: u64,
    reader_ns: f64,
    read_alone_ns: f64,
    output_ns: f64,
    join_ns: f64,
    workers_ns: Vec<f64>,
    /// Frames each worker ran through its pipeline (its own media, and
    /// every SIP and RTCP frame).
    worker_frames: Vec<u64>,
    capture_s: f64,
    sweeps: u64,
}

impl Run {
    fn total(&self) -> f64 {
        self.reader_ns + self.output_ns + self.join_ns + self.workers_ns.iter().sum::<f64>()
    }
}

fn number(s: &str, before: &str) -> Option<f64> {
    let i = s.find(before)?;
    s[..i].split_whitespace().last()?.parse().ok()
}

fn line<'a>(out: &'a str, start: &str) -> Result<&'a str> {
    out.lines()
        .find(|l| l.starts_with(start))
        .with_context(|| format!("no line starting {start:?}"))
}

fn parse_output(out: &str) -> Result<Run> {
    let summary = line(out, "imported")?;
    let mut r = Run {
        packets: number(summary, " packets").context("packets")? as u64,
        calls: number(summary, " calls").context("calls")? as u64,
        read_alone_ns: number(line(out, "reading alone")?, " ms CPU").context("reading")? * 1e6,
        ..Default::default()
    };
    for part in line(out, "engine:")?.split("; ") {
        let ms = || number(part, " ms CPU").map(|v| v * 1e6);
        if part.starts_with("reader thread") {
            r.reader_ns = ms().context("reader CPU")?;
        } else if part.starts_with("output thread") {
            r.output_ns = ms().context("output CPU")?;
        } else if part.starts_with("join thread") {
            r.join_ns = ms().context("join CPU")?;
        } else if part.starts_with("capture") {
            r.capture_s = number(part, " s").context("capture")?;
        } else if part.starts_with("worker ") {
            r.workers_ns.push(ms().context("worker CPU")?);
            r.worker_frames
                .push(number(part, " frames").context("worker frames")? as u64);
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
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target"));
            let dir = target.join("bench");
            std::fs::create_dir_all(&dir)?;
            (v.clone(), dir)
        }
        None => release_voxtap(root)?,
    };
    let unit = a.count.unit();
    // runs[length][workers]
    let mut runs = Vec::new();
    for &secs in &a.seconds {
        let pcap = synth_input(&voxtap, &dir, a.calls, secs)?;
        let mut these = Vec::new();
        for &n in &a.workers {
            let run = match a.count {
                Count::Cpu => import(&voxtap, &dir, &pcap, n)?,
                c => callgrind::import(&voxtap, &dir, &pcap, n, c)?,
            };
            these.push((n, run));
        }
        print!("{}", table(&pcap, secs, &these, unit));
        runs.push((secs, these));
    }
    match &runs[..] {
        [short, long, ..] => print!("{}", fitted(short, long, unit)),
        _ => println!("(one call length: no fit; give --seconds S1,S2)"),
    }
    if a.count == Count::Cpu
        && let Some(&secs) = a.seconds.last()
    {
        let pcap = synth_input(&voxtap, &dir, a.calls, secs)?;
        print!("{}", control(&voxtap, &dir, &pcap)?);
    }
    Ok(())
}

fn import(voxtap: &Path, dir: &Path, pcap: &Path, n: usize) -> Result<Run> {
    let out = dir.join("scale-out");
    parse_output(&run_import(Command::new(voxtap), &out, pcap, n)?)
}

/// The control for the "CPU vs N=1" column: one pipeline alone, then two
/// side by side (separate processes, one per core on a 2-core machine),
/// each one's CPU against the one alone. What the machine's cores cost
/// each other when both work (shared memory bandwidth, a last-level cache
/// shared with other tenants of a VM), which the parallel engine's threads
/// pay too: an excess over N = 1 up to this is the machine's, not the
/// engine's.
fn control(voxtap: &Path, dir: &Path, pcap: &Path) -> Result<String> {
    let alone = import(voxtap, dir, pcap, 1)?.total().max(1.0);
    let side = |tag: &str| -> Result<f64> {
        let out = dir.join(format!("scale-out-{tag}"));
        Ok(parse_output(&run_import(Command::new(voxtap), &out, pcap, 1)?)?.total())
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| side("a"));
        let b = side("b");
        (a.join().expect("control import thread"), b)
    });
    Ok(format!(
        "\ncontrol: N=1 alone {:.2} s CPU; two N=1 side by side {:.2}x and {:.2}x that each (load average {})\n",
        alone / 1e9,
        a? / alone,
        b? / alone,
        load()
    ))
}

/// Runs `cmd` (voxtap, or a wrapper of it) with the import's arguments,
/// writing to `out`; its standard output.
fn run_import(mut cmd: Command, out: &Path, pcap: &Path, n: usize) -> Result<String> {
    let _ = std::fs::remove_dir_all(out);
    let o = cmd
        .args(["import", "--quiet", "--csv-only", "--workers", "1"])
        .args(["--engine-figures", "--engine-workers", &n.to_string()])
        .arg("--out")
        .arg(out)
        .arg(pcap)
        .output()
        .context("running voxtap import")?;
    if !o.status.success() {
        bail!("voxtap import: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The measured runs on one capture.
fn table(pcap: &Path, secs: u32, runs: &[(usize, Run)], u: &Unit) -> String {
    let mut t = String::new();
    let base = runs.first().map_or(1.0, |(_, r)| r.total()).max(1.0);
    let first = runs.first().map(|(_, r)| r.clone()).unwrap_or_default();
    let _ = writeln!(
        t,
        "\nmeasured: {} ({} calls x {secs} s, {} packets); load average {}",
        pcap.display(),
        first.calls,
        first.packets,
        load()
    );
    let _ = writeln!(
        t,
        "{:>2} | {:>11} | {:>9} | {:>11} | {:>9} | {:>15} | {:>14} | {:>12} | {:>13} | {:>9} | {:>9} | {:>9}",
        "N",
        format!("reader {}/p", u.per),
        format!("read {}/p", u.per),
        format!("output {}/p", u.per),
        format!("join {}/p", u.per),
        format!("worker {}/p max", u.per),
        u.pace,
        format!("{} @5.25M", u.rate),
        format!("busiest, {}", u.rate),
        "imbalance",
        "control/s",
        format!("{} vs N=1", u.what)
    );
    for (n, r) in runs {
        let p = r.packets.max(1) as f64;
        let wmax = r.workers_ns.iter().copied().fold(0.0, f64::max);
        let busiest = r.reader_ns.max(wmax).max(r.join_ns).max(r.output_ns);
        let control = (2 * r.sweeps * *n as u64) as f64 / r.capture_s.max(1e-9);
        let _ = writeln!(
            t,
            "{n:>2} | {:>11.d$} | {:>9.d$} | {:>11.d$} | {:>9.d$} | {:>15.d$} | {:>14.0} | {:>12.2} | {:>13.2} | {:>9} | {:>9.0} | {:>9.2}",
            r.reader_ns / p,
            r.read_alone_ns / p,
            r.output_ns / p,
            r.join_ns / p,
            wmax / p,
            p / (busiest.max(1.0) / 1e9),
            TEN_GBE_PPS * r.total() / p / u.per_second,
            TEN_GBE_PPS * busiest / p / u.per_second,
            imbalance(&r.workers_ns),
            control,
            r.total() / base,
            d = u.decimals,
        );
    }
    for (n, r) in runs.iter().filter(|(_, r)| !r.workers_ns.is_empty()) {
        let p = r.packets.max(1) as f64;
        let each: Vec<String> = r
            .workers_ns
            .iter()
            .map(|w| format!("{:.d$}", w / p, d = u.decimals))
            .collect();
        let _ = writeln!(t, "N={n}: workers' {}/packet {}", u.per, each.join(" "));
    }
    t
}

fn imbalance(workers: &[f64]) -> String {
    if workers.is_empty() {
        return "-".into();
    }
    let max = workers.iter().copied().fold(0.0, f64::max);
    let mean = workers.iter().sum::<f64>() / workers.len() as f64;
    format!("{:.2}", max / mean.max(1.0))
}

/// CPU = a x packets + b x calls through two runs: (a in ns per packet,
/// b in ns per call).
#[derive(Clone, Copy, Default)]
struct Fit {
    a: f64,
    b: f64,
}

impl Fit {
    fn through(short: (&Run, f64), long: (&Run, f64)) -> Fit {
        let (r1, t1) = short;
        let (r2, t2) = long;
        Fit::through_counts((r1.packets, r1.calls, t1), (r2.packets, r2.calls, t2))
    }

    /// The same through (packets or frames, calls, figure) of two runs.
    fn through_counts(short: (u64, u64, f64), long: (u64, u64, f64)) -> Fit {
        let ((p1, c1, t1), (p2, c2, t2)) = (short, long);
        let (p1, c1, p2, c2) = (p1 as f64, c1.max(1) as f64, p2 as f64, c2.max(1) as f64);
        let det = p1 * c2 - p2 * c1;
        if det.abs() < 1.0 {
            return Fit::default();
        }
        Fit {
            a: (t1 * c2 - t2 * c1) / det,
            b: (p1 * t2 - p2 * t1) / det,
        }
    }

    /// Share of a core at the 10 GbE steady state.
    fn cores(&self) -> f64 {
        (self.a * TEN_GBE_PPS + self.b * TEN_GBE_CALLS_PER_S) / 1e9
    }

    fn cell(&self, u: &Unit) -> String {
        format!("{:.d$} + {:.1}", self.a, self.b / 1e3, d = u.decimals)
    }
}

/// Per thread kind of one N: the fits, workers one by one.
struct Fits {
    reader: Fit,
    read: Fit,
    output: Fit,
    join: Fit,
    workers: Vec<Fit>,
}

impl Fits {
    fn new(s: &Run, l: &Run) -> Fits {
        let f = |g: fn(&Run) -> f64| Fit::through((s, g(s)), (l, g(l)));
        let workers = (0..s.workers_ns.len().min(l.workers_ns.len()))
            .map(|i| Fit::through((s, s.workers_ns[i]), (l, l.workers_ns[i])))
            .collect();
        Fits {
            reader: f(|r| r.reader_ns),
            read: f(|r| r.read_alone_ns),
            output: f(|r| r.output_ns),
            join: f(|r| r.join_ns),
            workers,
        }
    }

    fn busiest_worker(&self) -> Fit {
        self.workers
            .iter()
            .copied()
            .max_by(|x, y| x.cores().total_cmp(&y.cores()))
            .unwrap_or_default()
    }

    fn total_cores(&self) -> f64 {
        let w: f64 = self.workers.iter().map(Fit::cores).sum();
        self.reader.cores() + self.output.cores() + self.join.cores() + w
    }

    fn busiest_core(&self) -> f64 {
        [self.reader, self.output, self.join, self.busiest_worker()]
            .iter()
            .map(Fit::cores)
            .fold(0.0, f64::max)
    }
}

/// The fit of every N from its runs on the short and the long capture.
fn fitted(short: &(u32, Vec<(usize, Run)>), long: &(u32, Vec<(usize, Run)>), u: &Unit) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\nfitted per thread: {} = a x packets + b x calls through the {} s and {} s runs above \
         (cells: a {}/packet + b {}/call); projected to a saturated 10 GbE in steady state: \
         5.25 M packets/s, 52,500 concurrent calls of 180 s mean, {TEN_GBE_CALLS_PER_S:.0} calls/s: \
         a x 5.25e6 + b x {TEN_GBE_CALLS_PER_S:.0} per second. Assumes the cost per packet does not \
         depend on call length nor the cost per call on the packets, at these runs' concurrency.",
        u.what, short.0, long.0, u.per, u.thousand
    );
    let _ = writeln!(
        t,
        "{:>2} | {:>15} | {:>13} | {:>15} | {:>15} | {:>15} | {:>13} | {:>14} | {:>10}",
        "N",
        "reader",
        "read alone",
        "output",
        "join",
        "busiest worker",
        format!("{} @10GbE", u.rate),
        format!("busiest, {}", u.rate),
        format!("{} vs N=1", u.what)
    );
    let mut base = None;
    for ((n, s), (_, l)) in short.1.iter().zip(&long.1) {
        let f = Fits::new(s, l);
        let base = *base.get_or_insert(f.total_cores().max(1e-9));
        let cell = |f: &Fit, used: bool| if used { f.cell(u) } else { "-".into() };
        // Fit::cores is per 1e9 of the figure a second.
        let rate = |x: f64| x * 1e9 / u.per_second;
        let _ = writeln!(
            t,
            "{n:>2} | {:>15} | {:>13} | {:>15} | {:>15} | {:>15} | {:>13.2} | {:>14.2} | {:>10.2}",
            f.reader.cell(u),
            f.read.cell(u),
            f.output.cell(u),
            cell(&f.join, *n > 1),
            cell(&f.busiest_worker(), !f.workers.is_empty()),
            rate(f.total_cores()),
            rate(f.busiest_core()),
            f.total_cores() / base
        );
    }
    t.push_str(&per_own_frame(short, long, u));
    t
}

/// Each N's busiest worker fitted per frame it handled (its own media and
/// every SIP and RTCP frame) instead of per packet of the link, beside
/// N = 1's pipeline per packet (its reading thread less reading the file
/// alone): what a worker costs for what it is given, comparable across N.
fn per_own_frame(
    short: &(u32, Vec<(usize, Run)>),
    long: &(u32, Vec<(usize, Run)>),
    u: &Unit,
) -> String {
    let mut t = String::new();
    for ((n, s), (_, l)) in short.1.iter().zip(&long.1) {
        if s.worker_frames.is_empty() {
            let f = Fit::through(
                (s, s.reader_ns - s.read_alone_ns),
                (l, l.reader_ns - l.read_alone_ns),
            );
            let _ = writeln!(
                t,
                "N={n}: one pipeline less reading the file: {} per packet",
                f.cell(u)
            );
            continue;
        }
        let fits = (0..s.worker_frames.len().min(l.worker_frames.len())).map(|i| {
            Fit::through_counts(
                (s.worker_frames[i], s.calls, s.workers_ns[i]),
                (l.worker_frames[i], l.calls, l.workers_ns[i]),
            )
        });
        let busiest = fits.max_by(|x, y| x.a.total_cmp(&y.a)).unwrap_or_default();
        let _ = writeln!(
            t,
            "N={n}: busiest worker per frame it handled: {}",
            busiest.cell(u)
        );
    }
    if !t.is_empty() {
        t.insert_str(
            0,
            &format!("(cells: a {}/frame + b {}/call)\n", u.per, u.thousand),
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(packets: u64, calls: u64, reader_ns: f64) -> Run {
        Run {
            packets,
            calls,
            reader_ns,
            ..Default::default()
        }
    }

    /// A worker's fit per frame it handled uses its frames, not the link's
    /// packets: a worker given a quarter of the link at 400 ns a frame
    /// reads as 400, not 100.
    #[test]
    fn a_worker_is_fitted_per_frame_it_handled() {
        let (a, b) = (400.0, 90_000.0);
        let mk = |packets: u64, frames: u64| Run {
            packets,
            calls: 50_000,
            workers_ns: vec![a * frames as f64 + b * 50_000.0],
            worker_frames: vec![frames],
            ..Default::default()
        };
        let short = (1, vec![(4, mk(5_300_000, 1_550_000))]);
        let long = (3, vec![(4, mk(15_300_000, 4_050_000))]);
        let line = per_own_frame(&short, &long, &CPU_TIME);
        assert!(
            line.contains("N=4: busiest worker per frame it handled: 400 + 90.0"),
            "{line}"
        );
    }

    /// The fit finds a and b back from two runs made of them.
    #[test]
    fn the_fit_recovers_its_terms() {
        let (a, b) = (120.0, 35_000.0);
        let s = run(5_300_000, 50_000, 0.0);
        let l = run(15_300_000, 50_000, 0.0);
        let t = |r: &Run| a * r.packets as f64 + b * r.calls as f64;
        let f = Fit::through((&s, t(&s)), (&l, t(&l)));
        assert!(
            (f.a - a).abs() < 1e-6 && (f.b - b).abs() < 1e-3,
            "{} {}",
            f.a,
            f.b
        );
        let want = (a * 5.25e6 + b * 5.25e6 / 100.0 / 180.0) / 1e9;
        assert!((f.cores() - want).abs() < 1e-9);
    }

    #[test]
    fn the_import_output_is_read() {
        let out = "imported 1 file(s): 5300000 packets (0 malformed, skipped), 300000 SIP messages, 50000 calls (50000 answered, 0 failed/other), 100000 RTP streams, in 1.00 s (1 packets/s)\n\
                   engine: 2 worker(s); reader thread 900.5 ms CPU; output thread 80.0 ms CPU; capture 2.041 s; worker 0: 10 frames 1000.0 ms CPU; worker 1: 12 frames 1100.0 ms CPU; join thread 50.0 ms CPU; steered 1 broadcast 2 batches 3 sweeps 4\n\
                   reading alone: 400.0 ms CPU\n";
        let r = parse_output(out).unwrap();
        assert_eq!((r.packets, r.calls, r.sweeps), (5_300_000, 50_000, 4));
        assert_eq!(r.workers_ns, vec![1000.0e6, 1100.0e6]);
        assert_eq!(r.worker_frames, vec![10, 12]);
        assert_eq!((r.reader_ns, r.read_alone_ns), (900.5e6, 400.0e6));
        assert_eq!(
            (r.output_ns, r.join_ns, r.capture_s),
            (80.0e6, 50.0e6, 2.041)
        );
    }
}
