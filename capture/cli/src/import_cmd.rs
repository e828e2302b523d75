//! `voxtap import`: pcap/pcapng files through the pipeline into calls.csv,
//! streams.csv, call folders and the index.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use voxtap_engine::import::{ImportOptions, ImportProgress, default_workers, run_import_engine};

use crate::args::{HepArgs, MediaArgs, PipelineArgs, TlsArgs};

#[derive(Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Write only calls.csv and streams.csv.
    #[arg(long)]
    csv_only: bool,
    /// Threads writing the call folders while the capture is read (default:
    /// one per core; 1 writes them on the reading thread). The outputs are
    /// the same whatever N.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: Option<u16>,
    /// Media workers rebuilding the calls (the parallel engine: the reading
    /// thread decodes and steers, each worker keeps a replica of every call
    /// and its share of the media; docs/architecture.md). 1 (the default):
    /// the single-threaded pipeline. With --hep, each message is sent once,
    /// as with 1.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    engine_workers: u16,
    /// Print the engine's CPU time per thread (also printed with
    /// --engine-workers above 1), and read the files once more alone to
    /// print what reading costs.
    #[arg(long)]
    engine_figures: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    media: MediaArgs,
    #[command(flatten)]
    hep: HepArgs,
    #[command(flatten)]
    tls: TlsArgs,
    /// Ship the imported calls to this central index (libpq URL with
    /// `sslcert`/`sslkey`/`sslrootcert`); needs --sensor-id.
    #[arg(long, requires = "sensor_id")]
    central: Option<String>,
    /// This sensor's name in the fleet (its role must belong to it).
    #[arg(long, requires = "central")]
    sensor_id: Option<String>,
    /// pcap or pcapng files; several are merged by timestamp.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

pub fn run(a: ImportArgs) -> Result<ExitCode> {
    let mut pipeline = a.pipeline.config();
    pipeline.tls_keys = a.tls.load()?;
    let export = a.hep.export(a.out.clone())?;
    pipeline.tap = export.as_ref().map(|e| e.tap_factory());
    let opts = ImportOptions {
        files: a.files,
        out: a.out.clone(),
        pipeline,
        call_files: !a.csv_only,
        media: Some(a.media.options()),
    };
    // A progress line on a terminal only: piped output stays clean.
    let line =
        (!a.quiet && std::io::stderr().is_terminal()).then(|| Mutex::new(ProgressLine::new()));
    let workers = a.workers.map_or_else(default_workers, usize::from);
    let engines = usize::from(a.engine_workers);
    let report = run_import_engine(&opts, workers, engines, &|p| {
        if let Some(l) = &line {
            l.lock().unwrap_or_else(|e| e.into_inner()).update(p);
        }
    })
    .context("import failed")?;
    println!("{}", report.summary_line());
    if a.engine_workers > 1 || a.engine_figures {
        println!("{}", report.engine.summary_line());
    }
    if a.engine_figures {
        // Read once more, alone: how much of the reading thread's CPU is
        // reading the file (a live sensor's frames come from its rings).
        let ns = voxtap_engine::import::reading_cpu_ns(&opts.files)?;
        println!("reading alone: {:.1} ms CPU", ns as f64 / 1e6);
    }
    for line in report.transport_lines() {
        println!("{line}");
    }
    if let Some(e) = &export {
        println!("{}", e.counters().snapshot().summary_line());
    }
    println!("output: {}", a.out.display());
    if let (Some(url), Some(id)) = (&a.central, &a.sensor_id) {
        anyhow::ensure!(
            !a.csv_only,
            "--central needs the call index (not --csv-only)"
        );
        let n = crate::central_cmd::ship_import(a.out.clone(), url, id)?;
        println!("shipped {n} calls to the central index as sensor {id}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The import's progress line on stderr, redrawn at most twice a second.
struct ProgressLine {
    last: Instant,
    started: Instant,
}

impl ProgressLine {
    fn new() -> Self {
        let now = Instant::now();
        ProgressLine {
            last: now,
            started: now,
        }
    }

    fn update(&mut self, p: ImportProgress) {
        if p.done {
            let _ = writeln!(std::io::stderr());
            return;
        }
        if self.last.elapsed() < Duration::from_millis(500) {
            return;
        }
        self.last = Instant::now();
        let pct = if p.total_bytes > 0 {
            p.read_bytes as f64 * 100.0 / p.total_bytes as f64
        } else {
            0.0
        };
        let width = 30usize;
        let filled = ((pct / 100.0) * width as f64) as usize;
        let packets = p.packets;
        let rate = packets as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let mut e = std::io::stderr();
        let _ = write!(
            e,
            "\r[{}{}] {pct:5.1}% {packets} packets {rate:.0}/s",
            "#".repeat(filled.min(width)),
            " ".repeat(width - filled.min(width))
        );
        let _ = e.flush();
    }
}
