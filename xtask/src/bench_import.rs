//! `cargo xtask bench-import [--calls N] [--seconds S] [--workers N]`:
//! `voxtap import` with every default per-call output (on the default
//! writer threads, and on one thread for reference) and CSV-only, against
//! `tshark -q -z rtp,streams`, on the same synthetic capture (the one
//! `bench` uses), one after another in one run: wall and CPU seconds of
//! each process and the ratios to tshark's. The load average before and
//! after says how busy the machine was (wall ratios move with it; CPU
//! ratios much less). Writes `target/bench/bench-import.json`.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::bench::{Measure, measure, release_voxtap, synth_input};

struct Args {
    calls: u32,
    seconds: u32,
    workers: Option<u32>,
}

fn parse(args: &[String]) -> Result<Args> {
    let mut a = Args {
        calls: 2000,
        seconds: 10,
        workers: None,
    };
    let mut it = args.iter();
    while let Some(o) = it.next() {
        let v = it.next().context("option needs a value")?;
        match o.as_str() {
            "--calls" => a.calls = v.parse()?,
            "--seconds" => a.seconds = v.parse()?,
            "--workers" => a.workers = Some(v.parse()?),
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
    // benchmark, not of the import.
    let out_root = dir.join("import-out");
    let _ = fs::remove_dir_all(&out_root);
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
        measure(label, c)
    };
    let workers = a.workers.map(|w| w.to_string());
    let mut all_args = Vec::new();
    if let Some(w) = &workers {
        all_args.extend(["--workers", w.as_str()]);
    }
    let mut tshark = Command::new("tshark");
    tshark.args(["-q", "-z", "rtp,streams", "-r"]).arg(&pcap);
    let results = vec![
        measure("tshark -q -z rtp,streams", tshark)?,
        voxtap_run("voxtap import (every output)", &all_args)?,
        voxtap_run(
            "voxtap import (every output, --workers 1)",
            &["--workers", "1"],
        )?,
        voxtap_run("voxtap import --csv-only", &["--csv-only"])?,
    ];
    let _ = fs::remove_dir_all(&out_root);
    let load_after = load_average();
    let (table, json) = report(
        &results,
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

/// The table (ratios: tshark's time / voxtap's) and the same as JSON.
fn report(
    results: &[Measure],
    pcap: &Path,
    cores: usize,
    workers: Option<u32>,
    load: [&str; 2],
) -> Result<(String, String)> {
    let t = &results[0];
    let mut table = String::new();
    writeln!(
        table,
        "input: {}; {cores} cores; writer threads: {}; load average before {} after {}",
        pcap.display(),
        workers.map_or(format!("default ({cores})"), |w| w.to_string()),
        load[0],
        load[1]
    )?;
    writeln!(
        table,
        "{:<44} {:>8} {:>8} {:>9} {:>16} {:>15}",
        "run", "wall s", "cpu s", "peak MiB", "tshark/it wall", "tshark/it cpu"
    )?;
    let mut json = format!(
        "{{\n  \"input\": \"{}\",\n  \"cores\": {cores},\n  \"load_before\": \"{}\",\n  \"load_after\": \"{}\",\n  \"results\": [\n",
        pcap.display(),
        load[0],
        load[1]
    );
    for (i, m) in results.iter().enumerate() {
        let wall = t.wall_s / m.wall_s.max(1e-9);
        let cpu = t.cpu_s / m.cpu_s.max(1e-9);
        writeln!(
            table,
            "{:<44} {:>8.2} {:>8.2} {:>9.1} {:>15.2}x {:>14.2}x",
            m.tool,
            m.wall_s,
            m.cpu_s,
            m.max_rss_kib as f64 / 1024.0,
            wall,
            cpu
        )?;
        writeln!(
            json,
            "    {{\"run\": \"{}\", \"wall_s\": {:.3}, \"cpu_s\": {:.3}, \"peak_rss_kib\": {}, \"tshark_over_wall\": {wall:.2}, \"tshark_over_cpu\": {cpu:.2}}}{}",
            m.tool,
            m.wall_s,
            m.cpu_s,
            m.max_rss_kib,
            if i + 1 < results.len() { "," } else { "" }
        )?;
    }
    json.push_str("  ]\n}\n");
    Ok((table, json))
}
