//! `bench-scale --instructions`: each thread's instructions instead of its
//! CPU time, counted by callgrind (`valgrind --tool=callgrind
//! --separate-threads=yes`, one profile per thread); `--cache-misses`: its
//! last-level cache misses, reads and writes (`DLmr + DLmw`), in
//! callgrind's simulation of a fixed cache ([`CACHE`]), so that the figure
//! does not depend on the machine's.
//!
//! Thread CPU time on a machine with fewer cores than the engine's threads
//! (2 cores for a reader, N workers, a join and an output thread) counts
//! more than the work: time slices that evict each other's caches, and
//! memory stalls that grow with every replica of the call tables sharing
//! one last-level cache. Session 12 found a worker running the call
//! table's code for each datagram of its own with the same instructions as
//! one pipeline, while its CPU time per frame was 1.3 to 2.2 times one
//! pipeline's per packet at N = 2 to 8 (docs/performance.md, "Session
//! 12"). Instructions are the same whatever the load and the
//! scheduling, so they say whether the engine does more work as N grows;
//! CPU time says what that work costs on this machine. Callgrind runs
//! about 50 times slower: use it with fewer calls (`--calls 5000`).
//!
//! Callgrind numbers threads in the order they start; the import starts
//! them as: 1 the reading thread (which also reads the file once more
//! alone, `reading_cpu_ns`, counted apart as "read alone"), 2 the output
//! thread, and with more than one worker 3 the join thread, then the
//! workers 0..N (`ParallelEngine::build`). The count is checked.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::{Count, Run, parse_output, run_import};

/// The simulated caches (size, associativity, line): an L1D and a last
/// level of a common server core, the same on every machine.
const CACHE: [&str; 2] = ["--D1=32768,8,64", "--LL=33554432,16,64"];

/// The events that make a thread's figure (summed).
fn events(count: Count) -> &'static [&'static str] {
    match count {
        Count::LlMisses => &["DLmr", "DLmw"],
        _ => &["Ir"],
    }
}

/// The function that reads the file alone (`--engine-figures`).
const READ_ALONE: &str = "voxtap_engine::import::reading_cpu_ns [";

/// One import under callgrind: `Run`'s thread figures in instructions or
/// in last-level cache misses (`count`).
pub(super) fn import(
    voxtap: &Path,
    dir: &Path,
    pcap: &Path,
    n: usize,
    count: Count,
) -> Result<Run> {
    let base = dir.join("callgrind.out");
    remove_profiles(dir)?;
    let mut cmd = Command::new("valgrind");
    cmd.args(["--tool=callgrind", "--separate-threads=yes"]);
    if count == Count::LlMisses {
        cmd.arg("--cache-sim=yes").args(CACHE);
    }
    cmd.arg(format!("--callgrind-out-file={}", base.display()))
        .arg(voxtap);
    let mut run = parse_output(&run_import(cmd, &dir.join("scale-out"), pcap, n)?)?;
    let wanted = events(count);
    let totals = thread_totals(&base, wanted)?;
    let read_alone = inclusive(&profile(&base, 1), READ_ALONE, wanted)?;
    assign(&mut run, &totals, read_alone, n)?;
    Ok(run)
}

/// Thread totals (index 0: thread 1) into `run`'s figures.
fn assign(run: &mut Run, totals: &[f64], read_alone: f64, n: usize) -> Result<()> {
    let want = if n > 1 { n + 3 } else { 2 };
    if totals.len() != want {
        bail!(
            "{} threads profiled, {want} expected for {n} worker(s)",
            totals.len()
        );
    }
    run.reader_ns = totals[0] - read_alone;
    run.read_alone_ns = read_alone;
    run.output_ns = totals[1];
    if n > 1 {
        run.join_ns = totals[2];
        run.workers_ns = totals[3..].to_vec();
    }
    Ok(())
}

fn remove_profiles(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_name().to_string_lossy().starts_with("callgrind.out") {
            std::fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

fn profile(base: &Path, thread: usize) -> PathBuf {
    PathBuf::from(format!("{}-{thread:02}", base.display()))
}

/// Each thread's `wanted` events, threads in the order they started.
fn thread_totals(base: &Path, wanted: &[&str]) -> Result<Vec<f64>> {
    let mut totals = Vec::new();
    loop {
        let p = profile(base, totals.len() + 1);
        let Ok(text) = std::fs::read_to_string(&p) else {
            break;
        };
        totals.push(total(&text, wanted).with_context(|| format!("no totals in {}", p.display()))?);
    }
    Ok(totals)
}

/// A profile's `totals:` (or `summary:`) line: the sum of the `wanted`
/// events, named by its `events:` line (an event not counted is 0).
fn total(profile: &str, wanted: &[&str]) -> Option<f64> {
    let names: Vec<&str> = profile
        .lines()
        .find_map(|l| l.strip_prefix("events:"))?
        .split_whitespace()
        .collect();
    let values: Vec<f64> = profile.lines().find_map(|l| {
        let v = l
            .strip_prefix("totals:")
            .or_else(|| l.strip_prefix("summary:"))?;
        v.split_whitespace().map(|x| x.parse().ok()).collect()
    })?;
    wanted
        .iter()
        .map(|w| {
            let i = names.iter().position(|n| n == w)?;
            Some(values.get(i).copied().unwrap_or(0.0))
        })
        .sum()
}

/// The `wanted` events of `function` and what it called, from
/// `callgrind_annotate --inclusive=yes --show=...`.
fn inclusive(profile: &Path, function: &str, wanted: &[&str]) -> Result<f64> {
    let o = Command::new("callgrind_annotate")
        .arg("--inclusive=yes")
        .arg(format!("--show={}", wanted.join(",")))
        .arg(profile)
        .output()
        .context("running callgrind_annotate")?;
    let text = String::from_utf8_lossy(&o.stdout);
    text.lines()
        .find(|l| l.contains(function))
        .and_then(|l| leading_counts(l, wanted.len()))
        .with_context(|| format!("{function} not in {}", profile.display()))
}

/// The sum of the first `k` counts of an annotated line ("1,234 (5.0%)
/// . 99 (0.1%)  file:function"; "." is 0).
fn leading_counts(line: &str, k: usize) -> Option<f64> {
    let mut counts = Vec::new();
    for t in line.split_whitespace() {
        if counts.len() == k {
            break;
        }
        if t == "." {
            counts.push(0.0);
        } else if t.chars().all(|c| c.is_ascii_digit() || c == ',') {
            counts.push(t.replace(',', "").parse().ok()?);
        } else if !(t.starts_with('(') || t.ends_with("%)")) {
            return None;
        }
    }
    (counts.len() == k).then(|| counts.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_total_is_read() {
        let p = "events: Ir\nsummary: 2339494635\n\nfn=(1) main\n0 5\ntotals: 2339494635\n";
        assert_eq!(total(p, &["Ir"]), Some(2_339_494_635.0));
        assert_eq!(total("events: Ir\n", &["Ir"]), None);
        // With the cache simulation: the misses summed by name.
        let p = "events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw\nsummary: 100 40 30 5 6 7 1 20 3\n";
        assert_eq!(total(p, &["DLmr", "DLmw"]), Some(23.0));
        assert_eq!(total(p, &["Ir"]), Some(100.0));
        assert_eq!(total(p, &["Nope"]), None);
    }

    /// An annotated line's counts, percentages and "." read as callgrind
    /// prints them; a line with fewer counts than asked is refused.
    #[test]
    fn annotated_counts_are_read() {
        let l = "  1,203,000 (42.1%)      .        /src/import.rs:voxtap_engine::import::reading_cpu_ns [/bin/voxtap]";
        assert_eq!(leading_counts(l, 2), Some(1_203_000.0));
        let l = "    550 ( 0.01%)  7,000 (12.50%)  x.rs:f";
        assert_eq!(leading_counts(l, 2), Some(7_550.0));
        assert_eq!(leading_counts(l, 1), Some(550.0));
        assert_eq!(leading_counts("x.rs:f", 1), None);
    }

    /// Threads go to their roles by start order; a count that does not
    /// match the engine's is refused, not misread.
    #[test]
    fn threads_are_assigned_by_start_order() {
        let mut r = Run::default();
        assign(&mut r, &[10.0, 20.0, 30.0, 40.0, 50.0], 4.0, 2).unwrap();
        assert_eq!((r.reader_ns, r.read_alone_ns), (6.0, 4.0));
        assert_eq!((r.output_ns, r.join_ns), (20.0, 30.0));
        assert_eq!(r.workers_ns, vec![40.0, 50.0]);
        assert!(assign(&mut r, &[10.0, 20.0, 30.0], 0.0, 2).is_err());
        let mut one = Run::default();
        assign(&mut one, &[10.0, 20.0], 1.0, 1).unwrap();
        assert!(one.workers_ns.is_empty() && one.join_ns == 0.0);
    }
}
