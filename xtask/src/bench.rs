//! `cargo xtask bench [--calls N] [--seconds S]`: `voxtap import` against the
//! tools users would run instead, on the same synthetic capture, in one run.
//!
//! It also measures memory per active call (100 000 concurrent calls), the
//! rolling PCAP writer against `dd` on the same disk, and includes the latest
//! `bench-live` figures, in one table and `target/bench/bench.json`.
//!
//! Figures are reported as ratios to the peers because this machine is noisy:
//! absolute packets/s move with the host, ratios much less.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

pub(crate) struct Measure {
    pub tool: String,
    pub wall_s: f64,
    pub cpu_s: f64,
    pub max_rss_kib: i64,
}

/// Run `cmd` to completion and measure wall time, CPU time and peak memory
/// of that one child (wait4 gives its own rusage, not the sum of children).
pub(crate) fn measure(tool: &str, mut cmd: Command) -> Result<Measure> {
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

/// What `bench` measures: the synthetic capture's size and, for the probes,
/// how many concurrent calls and how much rolling-store data.
struct BenchArgs {
    calls: u32,
    seconds: u32,
    mem_calls: u32,
    store_mib: u64,
}

fn parse_bench_args(args: &[String]) -> Result<BenchArgs> {
    let mut a = BenchArgs {
        calls: 2000,
        seconds: 10,
        mem_calls: 100_000,
        store_mib: 1024,
    };
    let mut it = args.iter();
    while let Some(o) = it.next() {
        let v = it.next().context("option needs a value")?;
        match o.as_str() {
            "--calls" => a.calls = v.parse()?,
            "--seconds" => a.seconds = v.parse()?,
            "--mem-calls" => a.mem_calls = v.parse()?,
            "--store-mib" => a.store_mib = v.parse()?,
            _ => bail!("unknown option {o}"),
        }
    }
    Ok(a)
}

/// Builds the release `voxtap` and makes the benchmarks' folder: the
/// binary's path and `target/bench`.
pub fn release_voxtap(root: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let mut c = super::cargo();
    c.args(["build", "--release", "-p", "voxtap", "--bin", "voxtap"]);
    super::run(c)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let dir = target.join("bench");
    fs::create_dir_all(&dir)?;
    Ok((target.join("release/voxtap"), dir))
}

pub fn bench(root: &Path, args: &[String]) -> Result<()> {
    let BenchArgs {
        calls,
        seconds,
        mem_calls,
        store_mib,
    } = parse_bench_args(args)?;
    let (voxtap, dir) = release_voxtap(root)?;
    let pcap = synth_input(&voxtap, &dir, calls, seconds)?;
    let bytes = fs::metadata(&pcap)?.len();
    let packets = count_packets(&pcap)?;
    let results = run_tools(&voxtap, &dir, &pcap)?;
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
    let mut json = String::from("{\n");
    writeln!(
        json,
        "  \"packets\": {packets},\n  \"calls\": {calls},\n  \"seconds\": {seconds},\n  \"results\": ["
    )?;
    import_figures(&results, packets, base, &mut table, &mut json)?;
    json.push_str("  ],\n");
    let extra = probes(&dir, mem_calls, store_mib, packets as f64 / base)?;
    table.push_str(&extra.table);
    json.push_str(&extra.json);
    json.push_str("}\n");
    print!("{table}");
    let jpath = dir.join("bench.json");
    fs::write(&jpath, json)?;
    println!("written: {}", jpath.display());
    Ok(())
}

/// The synthetic capture, made once per size and kept in `dir` for the
/// next run.
pub(crate) fn synth_input(voxtap: &Path, dir: &Path, calls: u32, seconds: u32) -> Result<PathBuf> {
    let pcap = dir.join(format!("synth-{calls}x{seconds}s.pcap"));
    if !pcap.exists() {
        let mut c = Command::new(voxtap);
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
    Ok(pcap)
}

/// Packets in the file: SIP 6 per call + RTP both ways every 20 ms.
fn count_packets(pcap: &Path) -> Result<u64> {
    let out = Command::new("capinfos")
        .args(["-c", "-M"])
        .arg(pcap)
        .output()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            l.split(':')
                .nth(1)
                .filter(|_| l.contains("Number of packets"))
        })
        .and_then(|v| v.trim().parse().ok())
        .context("capinfos packet count")
}

/// voxtap import, then the peers, one after another on the same file;
/// voxtap's CSV import comes first, the base of every ratio.
fn run_tools(voxtap: &Path, dir: &Path, pcap: &Path) -> Result<Vec<Measure>> {
    let mut results = Vec::new();
    let out_dir = dir.join("import-out");
    let _ = fs::remove_dir_all(&out_dir);
    let mut c = Command::new(voxtap);
    c.args(["import", "--quiet", "--csv-only", "--out"])
        .arg(&out_dir)
        .arg(pcap);
    results.push(measure("voxtap import (csv)", c)?);
    let _ = fs::remove_dir_all(&out_dir);
    let mut c = Command::new(voxtap);
    c.args(["import", "--quiet", "--out"])
        .arg(&out_dir)
        .arg(pcap);
    results.push(measure("voxtap import (+ per-call pcap)", c)?);
    let mut c = Command::new("tshark");
    c.args(["-q", "-z", "rtp,streams", "-r"]).arg(pcap);
    results.push(measure("tshark -z rtp,streams", c)?);
    let mut c = Command::new("tshark");
    c.args(["-q", "-z", "sip,stat", "-r"]).arg(pcap);
    results.push(measure("tshark -z sip,stat", c)?);
    let sngrep_out = dir.join("sngrep-out.pcap");
    let mut c = Command::new("sngrep");
    c.args(["-N", "-I"]).arg(pcap).arg("-O").arg(&sngrep_out);
    results.push(measure("sngrep -N -I -O", c)?);
    Ok(results)
}

/// The import table's header and one row per tool, and the same rows as
/// JSON objects; `base` is voxtap's CSV import CPU time.
fn import_figures(
    results: &[Measure],
    packets: u64,
    base: f64,
    table: &mut String,
    json: &mut String,
) -> Result<()> {
    writeln!(
        table,
        "{:<34} {:>8} {:>8} {:>14} {:>10} {:>16}",
        "tool", "wall s", "cpu s", "packets/s/core", "peak MiB", "voxtap is faster"
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
    Ok(())
}

/// The figures beside the import table: memory per active call, rolling
/// PCAP write throughput against dd on the same disk, the latest live run,
/// and what 10 GbE of G.711 means at the measured per-core rate.
struct Extra {
    table: String,
    json: String,
}

/// `"key": number` from a one-line JSON object we printed ourselves.
fn num(line: &str, key: &str) -> Option<f64> {
    let pat = format!("\"{key}\": ");
    let i = line.find(&pat)? + pat.len();
    line[i..].split([',', '}']).next()?.trim().parse().ok()
}

fn probes(dir: &Path, mem_calls: u32, store_mib: u64, import_pps_core: f64) -> Result<Extra> {
    let (mem, store) = run_probes(dir, mem_calls, store_mib)?;
    let dd_mib_s = dd_rate(dir, store_mib)?;
    let store_mib_s = num(&store, "mib_per_s").unwrap_or(0.0);
    let live = fs::read_to_string(dir.join("live.json")).ok();

    // 10 GbE of G.711 20 ms RTP: 214-byte frames (14 Ethernet + 20 IPv4 + 8
    // UDP + 12 RTP + 160 payload) + 4 FCS + 8 preamble/SFD + 12 inter-frame
    // gap = 238 bytes on the wire per packet.
    let wire_bytes = 214.0 + 4.0 + 8.0 + 12.0;
    let line_pps = 10e9 / (wire_bytes * 8.0);
    let f = Figures {
        mem,
        store,
        mem_calls,
        store_mib,
        store_mib_s,
        dd_mib_s,
        live,
        wire_bytes,
        line_pps,
        import_pps_core,
        cores: line_pps / import_pps_core.max(1.0),
    };
    Ok(Extra {
        table: extra_table(dir, &f)?,
        json: extra_json(&f)?,
    })
}

/// What the probes and dd measured, and what 10 GbE of G.711 needs.
struct Figures {
    /// The `memory_per_call` probe's JSON line.
    mem: String,
    /// The `store_write` probe's JSON line.
    store: String,
    mem_calls: u32,
    store_mib: u64,
    store_mib_s: f64,
    dd_mib_s: f64,
    /// The latest `bench-live` JSON, if any.
    live: Option<String>,
    wire_bytes: f64,
    line_pps: f64,
    import_pps_core: f64,
    cores: f64,
}

/// Runs the `bench_probes::` tests (release) and returns their
/// `memory_per_call` and `store_write` JSON lines.
fn run_probes(dir: &Path, mem_calls: u32, store_mib: u64) -> Result<(String, String)> {
    let mut c = super::cargo();
    c.args([
        "test",
        "--release",
        "-p",
        "voxtap",
        "--test",
        "sensor",
        "bench_probes::",
        "--",
        "--ignored",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env("VOXTAP_BENCH_CALLS", mem_calls.to_string())
    .env("VOXTAP_BENCH_STORE_MIB", store_mib.to_string())
    .env("VOXTAP_BENCH_DIR", dir)
    .stderr(Stdio::inherit());
    eprintln!("xtask: $ cargo test --release -p voxtap --test sensor bench_probes:: -- --ignored");
    let out = c.output().context("running the bench probes")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!("bench probes failed: {text}");
    }
    let line = |probe: &str| {
        text.lines()
            .filter_map(|l| l.split_once("BENCH ").map(|x| x.1))
            .find(|l| l.contains(&format!("\"probe\": \"{probe}\"")))
            .map(str::to_string)
            .with_context(|| format!("no {probe} figure in: {text}"))
    };
    Ok((line("memory_per_call")?, line("store_write")?))
}

/// dd on the same disk, the same amount, with the data on the disk at the
/// end like the probe's fdatasync; MiB/s.
fn dd_rate(dir: &Path, store_mib: u64) -> Result<f64> {
    let dd_file = dir.join("dd.bin");
    let t0 = Instant::now();
    let st = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", dd_file.display()))
        .args(["bs=1M", &format!("count={store_mib}"), "conv=fdatasync"])
        .stderr(Stdio::null())
        .status()
        .context("running dd")?;
    let dd_s = t0.elapsed().as_secs_f64();
    let _ = fs::remove_file(&dd_file);
    if !st.success() {
        bail!("dd failed: {st}");
    }
    Ok(store_mib as f64 / dd_s)
}

/// The figures' lines below the import table.
fn extra_table(dir: &Path, f: &Figures) -> Result<String> {
    let Figures {
        mem,
        store,
        mem_calls,
        store_mib,
        store_mib_s,
        dd_mib_s,
        live,
        wire_bytes,
        line_pps,
        import_pps_core,
        cores,
    } = f;
    let mut t = String::new();
    let per_call = num(mem, "bytes_per_call").unwrap_or(0.0);
    let per_sec = num(mem, "bytes_per_call_per_second_of_audio").unwrap_or(0.0);
    writeln!(
        t,
        "\nmemory per active call ({mem_calls} concurrent calls through the pipeline, RSS delta): {per_call:.0} bytes per call (SIP + SDP + 2 streams, 20 RTP packets), + {per_sec:.0} bytes per call per second of audio (packet references); {:.0} MiB for all",
        num(mem, "rss_calls").unwrap_or(0.0) / 1048576.0
    )?;
    writeln!(
        t,
        "rolling PCAP write ({store_mib} MiB of 214-byte frames, 4 MiB buffer, fdatasync at the end): {store_mib_s:.0} MiB/s ({:.0} frames/s, {:.2} CPU s); dd bs=1M conv=fdatasync on the same disk: {dd_mib_s:.0} MiB/s; store / dd = {:.2}",
        num(store, "frames_per_s").unwrap_or(0.0),
        num(store, "cpu_seconds").unwrap_or(0.0),
        store_mib_s / dd_mib_s.max(1e-9)
    )?;
    match live {
        Some(l) => writeln!(
            t,
            "live (latest `cargo xtask bench-live`, {}): highest paced rate with zero loss: voxtap {:.0} pps, tcpdump -w {:.0} pps",
            dir.join("live.json").display(),
            num(l, "voxtap_zero_loss_pps").unwrap_or(0.0),
            num(l, "tcpdump_zero_loss_pps").unwrap_or(0.0)
        )?,
        None => writeln!(
            t,
            "live: no bench-live run yet (`cargo xtask bench-live`, root)"
        )?,
    }
    writeln!(
        t,
        "10 GbE of G.711 20 ms RTP: {wire_bytes:.0} bytes per packet on the wire = {:.2} M packets/s; at {:.0} packets/s per core (voxtap import, CSV) that is {cores:.1} cores",
        line_pps / 1e6,
        import_pps_core
    )?;
    Ok(t)
}

/// The same figures as `bench.json` members.
fn extra_json(f: &Figures) -> Result<String> {
    let strip = |l: &str| {
        l.trim()
            .trim_start_matches('{')
            .trim_end_matches('}')
            .to_string()
    };
    let Figures {
        mem,
        store,
        store_mib_s,
        dd_mib_s,
        live,
        wire_bytes,
        line_pps,
        import_pps_core,
        cores,
        ..
    } = f;
    let mut j = String::new();
    writeln!(j, "  \"memory_per_call\": {{{}}},", strip(mem))?;
    writeln!(
        j,
        "  \"store_write\": {{{}, \"dd_mib_per_s\": {dd_mib_s:.1}, \"store_vs_dd\": {:.3}}},",
        strip(store),
        store_mib_s / dd_mib_s.max(1e-9)
    )?;
    writeln!(
        j,
        "  \"live\": {},",
        live.as_deref().map_or("null", str::trim)
    )?;
    writeln!(
        j,
        "  \"ten_gbe_g711\": {{\"wire_bytes_per_packet\": {wire_bytes:.0}, \"packets_per_s\": {line_pps:.0}, \"voxtap_packets_per_s_per_core\": {import_pps_core:.0}, \"cores_needed\": {cores:.2}}}"
    )?;
    Ok(j)
}

/// `cargo xtask soak [--minutes N] [--cps R] [--call-seconds S] [--no-writer]`:
/// a steady call rate through the pipeline (and the live sensor's
/// `CallWriter`) for N minutes of wall time, RSS every 5 s, and a verdict:
/// flat when the last quarter's mean RSS is within 5 % of the second
/// quarter's. Writes `target/bench/soak.json`.
pub fn soak(root: &Path, args: &[String]) -> Result<()> {
    let a = parse_soak_args(args)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let dir = target.join("bench");
    fs::create_dir_all(&dir)?;
    let (series, result) = run_soak(&dir, &a)?;
    let flat = result.contains("\"flat\": true");
    println!(
        "soak: RSS second quarter {:.1} MiB, last quarter {:.1} MiB ({:+.1} %): {}",
        num(&result, "rss_second_quarter_mib").unwrap_or(0.0),
        num(&result, "rss_last_quarter_mib").unwrap_or(0.0),
        num(&result, "change_pct").unwrap_or(0.0),
        if flat { "FLAT" } else { "NOT FLAT" }
    );
    let samples: Vec<String> = series
        .iter()
        .filter_map(|l| {
            let t = l.split("t=").nth(1)?.split('s').next()?;
            let r = l.split("rss=").nth(1)?.split("MiB").next()?;
            Some(format!("[{t}, {r}]"))
        })
        .collect();
    let json = format!(
        "{{\"result\": {result}, \"series_s_mib\": [{}]}}\n",
        samples.join(", ")
    );
    let path = dir.join(if a.writer {
        "soak.json"
    } else {
        "soak-no-writer.json"
    });
    fs::write(&path, json)?;
    println!("written: {}", path.display());
    if !flat {
        bail!("memory was not flat");
    }
    Ok(())
}

struct SoakArgs {
    minutes: u64,
    cps: u64,
    call_seconds: u64,
    /// Also run the live sensor's `CallWriter` (`--no-writer`: not).
    writer: bool,
}

fn parse_soak_args(args: &[String]) -> Result<SoakArgs> {
    let mut minutes = 10u64;
    let mut cps = 20u64;
    let mut call_seconds = 30u64;
    let mut writer = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--no-writer" => writer = false,
            "--minutes" | "--cps" | "--call-seconds" => {
                let v: u64 = it.next().context("option needs a value")?.parse()?;
                match a.as_str() {
                    "--minutes" => minutes = v,
                    "--cps" => cps = v,
                    _ => call_seconds = v,
                }
            }
            _ => bail!("unknown soak option {a}"),
        }
    }
    if minutes == 0 || minutes > 24 * 60 {
        bail!("--minutes must be 1 to 1440 (a bounded run)");
    }
    Ok(SoakArgs {
        minutes,
        cps,
        call_seconds,
        writer,
    })
}

/// Runs the `bench_probes::soak` test (release), echoing its `SOAK` RSS
/// lines as they come; returns those lines and its `BENCH` JSON result.
fn run_soak(dir: &Path, a: &SoakArgs) -> Result<(Vec<String>, String)> {
    let SoakArgs {
        minutes,
        cps,
        call_seconds,
        writer,
    } = *a;
    let mut c = super::cargo();
    c.args([
        "test",
        "--release",
        "-p",
        "voxtap",
        "--test",
        "sensor",
        "bench_probes::soak",
        "--",
        "--ignored",
        "--nocapture",
    ])
    .env("VOXTAP_SOAK_MINUTES", minutes.to_string())
    .env("VOXTAP_SOAK_CPS", cps.to_string())
    .env("VOXTAP_SOAK_CALL_SECONDS", call_seconds.to_string())
    .env("VOXTAP_SOAK_WRITER", if writer { "1" } else { "0" })
    .env("VOXTAP_BENCH_DIR", dir)
    .stdout(Stdio::piped());
    eprintln!(
        "xtask: soak: {cps} calls/s of {call_seconds} s for {minutes} min through the pipeline{}",
        if writer { " and the CallWriter" } else { "" }
    );
    let mut child = c.spawn().context("starting the soak")?;
    let mut series = Vec::new();
    let mut result = None;
    if let Some(out) = child.stdout.take() {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines() {
            let line = line?;
            if line.contains("SOAK ") {
                println!("{line}");
                series.push(line);
            } else if let Some((_, j)) = line.split_once("BENCH ") {
                result = Some(j.to_string());
            }
        }
    }
    let st = child.wait()?;
    if !st.success() {
        bail!("soak failed: {st}");
    }
    Ok((series, result.context("no soak result")?))
}
