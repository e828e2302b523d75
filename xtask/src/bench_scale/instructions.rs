//! `bench-scale --instructions`: each thread's instructions instead of its
//! CPU time, counted by callgrind (`valgrind --tool=callgrind
//! --separate-threads=yes`, one profile per thread).
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

use super::{Run, parse_output, run_import};

/// The function that reads the file alone (`--engine-figures`).
const READ_ALONE: &str = "voxtap_engine::import::reading_cpu_ns [";

/// One import under callgrind: `Run`'s thread figures in instructions.
pub(super) fn import(voxtap: &Path, dir: &Path, pcap: &Path, n: usize) -> Result<Run> {
    let base = dir.join("callgrind.out");
    remove_profiles(dir)?;
    let mut cmd = Command::new("valgrind");
    cmd.args(["--tool=callgrind", "--separate-threads=yes"])
        .arg(format!("--callgrind-out-file={}", base.display()))
        .arg(voxtap);
    let mut run = parse_output(&run_import(cmd, dir, pcap, n)?)?;
    let totals = thread_totals(&base)?;
    let read_alone = inclusive(&profile(&base, 1), READ_ALONE)?;
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

/// Each thread's instructions, threads in the order they started.
fn thread_totals(base: &Path) -> Result<Vec<f64>> {
    let mut totals = Vec::new();
    loop {
        let p = profile(base, totals.len() + 1);
        let Ok(text) = std::fs::read_to_string(&p) else {
            break;
        };
        totals.push(total(&text).with_context(|| format!("no totals in {}", p.display()))?);
    }
    Ok(totals)
}

/// A profile's `totals:` (or `summary:`) line.
fn total(profile: &str) -> Option<f64> {
    profile.lines().find_map(|l| {
        l.strip_prefix("totals:")
            .or_else(|| l.strip_prefix("summary:"))?
            .trim()
            .parse()
            .ok()
    })
}

/// Instructions of `function` and what it called, from
/// `callgrind_annotate --inclusive=yes`.
fn inclusive(profile: &Path, function: &str) -> Result<f64> {
    let o = Command::new("callgrind_annotate")
        .arg("--inclusive=yes")
        .arg(profile)
        .output()
        .context("running callgrind_annotate")?;
    let text = String::from_utf8_lossy(&o.stdout);
    text.lines()
        .find(|l| l.contains(function))
        .and_then(|l| l.split_whitespace().next()?.replace(',', "").parse().ok())
        .with_context(|| format!("{function} not in {}", profile.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_total_is_read() {
        let p = "events: Ir\nsummary: 2339494635\n\nfn=(1) main\n0 5\ntotals: 2339494635\n";
        assert_eq!(total(p), Some(2_339_494_635.0));
        assert_eq!(total("events: Ir\n"), None);
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
