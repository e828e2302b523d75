//! `voxtap import`: pcap/pcapng files through the pipeline into calls.csv,
//! streams.csv, call folders and the index.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use voxtap_engine::import::{ImportOptions, run_import};

use crate::args::{HepArgs, MediaArgs, PipelineArgs};

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
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    media: MediaArgs,
    #[command(flatten)]
    hep: HepArgs,
    /// pcap or pcapng files; several are merged by timestamp.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

pub fn run(a: ImportArgs) -> Result<ExitCode> {
    let mut pipeline = a.pipeline.config();
    let export = a.hep.export(a.out.clone())?;
    pipeline.tap = export.as_ref().map(|e| e.tap_factory());
    let opts = ImportOptions {
        files: a.files,
        out: a.out.clone(),
        pipeline,
        progress: !a.quiet,
        call_files: !a.csv_only,
        media: Some(a.media.options()),
    };
    let report = run_import(&opts).context("import failed")?;
    println!("{}", report.summary_line());
    if let Some(e) = &export {
        println!("{}", e.counters().snapshot().summary_line());
    }
    println!("output: {}", a.out.display());
    Ok(ExitCode::SUCCESS)
}
