//! `cargo xtask bench-import [--calls N] [--seconds S] [--workers N]
//! [--repeat R]`: `voxtap import` with every default per-call output (on
//! the default writer threads, and on one thread for reference) and
//! CSV-only, against `tshark -q -z rtp,streams`, on the same synthetic
//! capture (the one `bench` uses), one after another in one run: wall and
//! CPU seconds of each process and the ratios to tshark's. The whole set is
//! run R times (default 3), interleaved, and the medians compared: on the
//! 2-core VM the same import measured 1.05 to 2.2 s in back-to-back runs,
//! so one sample of each says little. The load average before and after
//! says how busy the machine was (wall ratios move with it; CPU ratios much
//! less). Every run starts after a `sync`, so none is throttled writing
//! back the previous one's files. Writes `target/bench/bench-import.json`
//! with every sample.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::bench::{Measure, measure, release_voxtap, synth_input};

struct Args {
    calls: u32,
    seconds: u32,
    workers: Option<u32>,
    repeat: usize,
}

fn parse(args: &[String]) -> Result<Args> {
    let mut a = Args {
        calls: 2000,
        seconds: 10,
        workers: None,
        repeat: 3,
    };
    let mut it = args.iter();
    while let Some(o) = it.next() {
        let v = it.next().context("option needs a value")?;
        match o.as_str() {
            "--calls" => a.calls = v.parse()?,
            "--seconds" => a.seconds = v.parse()?,
            "--workers" => a.workers = Some(v.parse()?),
            "--repeat" => a.repeat = v.parse::<usize>()?.max(1),
            _ => anyhow::bail!("unknown option {o}"),
        }
    }
    Ok(a)
}

fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub fn bench_import(root: &Path, args: &[String]) -> Result<()> {
    let a = parse(args)?;
    let (voxtap, dir) = release_voxtap(root)?;
    let pcap = synth_input(&voxtap, &dir, a.calls, a.seconds)?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let load_before = load_average();
    // Each run writes a folder of its own, all removed at the end: a run
    // right after `rm -rf` of the previous one's 18,000 files spent about a
    // fifth of its time in ext4's inode allocator skipping the inodes freed
    // seconds before (`recently_deleted` in a perf profile), a cost of the
    // benchmark, not of the import; for the same reason a bench waits out
    // the minute after the last one's clean-up (`remove_outputs`).
    let out_root = dir.join("import-out");
    let stamp = dir.join("import-out.removed");
    remove_outputs(&out_root, &stamp);
    wait_for_freed_inodes(&stamp);
    let mut run_no = 0;
    let mut voxtap_run = |label: &str, extra: &[&str]| -> Result<Measure> {
        run_no += 1;
        let out = out_root.join(run_no.to_string());
        let mut c = Command::new(&voxtap);
        c.args(["import", "--quiet"])
            .args(extra)
            .arg("--out")
            .arg(&out)
            .arg(&pcap);
        sync();
        measure(label, c)
    };
    let workers = a.workers.map(|w| w.to_string());
    let mut all_args = Vec::new();
    if let Some(w) = &workers {
        all_args.extend(["--workers", w.as_str()]);
    }
    let runs: [(&str, Vec<&str>); 3] = [
        ("voxtap import (every output)", all_args.clone()),
        (
            "voxtap import (every output, --workers 1)",
            vec!["--workers", "1"],
        ),
        ("voxtap import --csv-only", vec!["--csv-only"]),
    ];
    let mut samples: Vec<Vec<Measure>> = (0..=runs.len()).map(|_| Vec::new()).collect();
    for _ in 0..a.repeat {
        let mut tshark = Command::new("tshark");
        tshark.args(["-q", "-z", "rtp,streams", "-r"]).arg(&pcap);
        sync();
        samples[0].push(measure("tshark -q -z rtp,streams", tshark)?);
        for (i, (label, extra)) in runs.iter().enumerate() {
            samples[i + 1].push(voxtap_run(label, extra)?);
        }
    }
    let load_after = load_average();
    remove_outputs(&out_root, &stamp);
    let (table, json) = report(
        &samples,
        &pcap,
        cores,
        a.workers,
        [&load_before, &load_after],
    )?;
    print!("{table}");
    let jpath = dir.join("bench-import.json");
    fs::write(&jpath, json)?;
    println!("written: {}", jpath.display());
    Ok(())
}

/// Writes every dirty page back (`sync(2)`), untimed, before each timed
/// run: an every-output import leaves 2.2 GB dirty in the page cache, more
/// than the disk writes back in tshark's 16 s, and an import started on top
/// of it is throttled by the kernel to the disk's write-back rate (two
/// imports back to back: the second 16.4-16.9 s wall for 10.6 s of CPU;
/// after a sync, 7.8 s). Each run starts from the same state and is timed
/// until its files are in the page cache, as any program that does not
/// call fsync (the import does not) is.
fn sync() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// ext4 without a journal (this VM's root file system) skips, in every
/// inode allocation, the free inodes deleted less than 60 s ago (360 s
/// while their inode table block is not written back): `recently_deleted`
/// in fs/ext4/ialloc.c, a scan of the group per new file. An import right
/// after `rm -rf` of two earlier outputs (36,000 files) took 8.1 s of
/// system time instead of 3.3, half of its CPU samples in that scan
/// (perf). So the clean-up is synced (60 s, not 360 s) and its time kept in
/// `stamp`.
fn remove_outputs(out_root: &Path, stamp: &Path) {
    if out_root.exists() {
        let _ = fs::remove_dir_all(out_root);
        sync();
        let _ = fs::write(stamp, b"");
    }
}

/// Waits until the inodes freed by the last clean-up are past ext4's
/// 60 s (see [`remove_outputs`]); a timed wait, as the kernel offers
/// nothing to poll. Deletions by other programs are not covered.
fn wait_for_freed_inodes(stamp: &Path) {
    const RECENT: Duration = Duration::from_secs(61);
    let age = fs::metadata(stamp)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok());
    if let Some(rest) = age.and_then(|a| RECENT.checked_sub(a)) {
        println!(
            "waiting {:.0} s for ext4 to reuse the inodes freed by the last clean-up",
            rest.as_secs_f64()
        );
        std::thread::sleep(rest);
    }
}

/// The median of `xs` (the upper one of an even count).
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(0.0)
}

/// The medians of one command's samples: wall, CPU, peak RSS (MiB).
fn medians(s: &[Measure]) -> (f64, f64, f64) {
    (
        median(s.iter().map(|m| m.wall_s).collect()),
        median(s.iter().map(|m| m.cpu_s).collect()),
        median(s.iter().map(|m| m.max_rss_kib as f64 / 1024.0).collect()),
    )
}

/// The table (ratios: tshark's median time / voxtap's) and every sample as
/// JSON.
fn report(
    samples: &[Vec<Measure>],
    pcap: &Path,
    cores: usize,
    workers: Option<u32>,
    load: [&str; 2],
) -> Result<(String, String)> {
    let (t_wall, t_cpu, _) = medians(&samples[0]);
    let mut table = String::new();
    writeln!(
        table,
        "input: {}; {cores} cores; writer threads: {}; {} rounds, medians, sync before each run; load average before {} after {}",
        pcap.display(),
        workers.map_or(format!("default ({cores})"), |w| w.to_string()),
        samples[0].len(),
        load[0],
        load[1]
    )?;
    writeln!(
        table,
        "{:<44} {:>8} {:>13} {:>8} {:>9} {:>16} {:>15}",
        "run", "wall s", "wall min-max", "cpu s", "peak MiB", "tshark/it wall", "tshark/it cpu"
    )?;
    let mut json = format!(
        "{{\n  \"input\": \"{}\",\n  \"cores\": {cores},\n  \"load_before\": \"{}\",\n  \"load_after\": \"{}\",\n  \"results\": [\n",
        pcap.display(),
        load[0],
        load[1]
    );
    for (i, s) in samples.iter().enumerate() {
        let (wall_s, cpu_s, rss) = medians(s);
        let (lo, hi) = s.iter().fold((f64::MAX, 0.0f64), |(lo, hi), m| {
            (lo.min(m.wall_s), hi.max(m.wall_s))
        });
        let wall = t_wall / wall_s.max(1e-9);
        let cpu = t_cpu / cpu_s.max(1e-9);
        let tool = s.first().map_or("", |m| m.tool.as_str());
        writeln!(
            table,
            "{tool:<44} {wall_s:>8.2} {:>13} {cpu_s:>8.2} {rss:>9.1} {wall:>15.2}x {cpu:>14.2}x",
            format!("{lo:.2}-{hi:.2}"),
        )?;
        let each = |f: fn(&Measure) -> f64| {
            s.iter()
                .map(|m| format!("{:.3}", f(m)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(
            json,
            "    {{\"run\": \"{tool}\", \"wall_s\": {wall_s:.3}, \"cpu_s\": {cpu_s:.3}, \"peak_rss_mib\": {rss:.1}, \"tshark_over_wall\": {wall:.2}, \"tshark_over_cpu\": {cpu:.2}, \"wall_samples\": [{}], \"cpu_samples\": [{}]}}{}",
            each(|m| m.wall_s),
            each(|m| m.cpu_s),
            if i + 1 < samples.len() { "," } else { "" }
        )?;
    }
    json.push_str("  ]\n}\n");
    Ok((table, json))
}
