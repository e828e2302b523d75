//! `voxtap hep-listen`: calls from SIP that servers mirror in HEP3.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use voxtap_sensor::hep::listen::{ListenOptions, Listener};

use crate::args::PipelineArgs;

#[derive(Args)]
pub struct HepListenArgs {
    /// UDP address to listen on, e.g. 0.0.0.0:9060.
    #[arg(long)]
    udp: Option<SocketAddr>,
    /// TCP address to listen on.
    #[arg(long)]
    tcp: Option<SocketAddr>,
    /// Output directory (calls.csv, call folders, index.sqlite, hep.pcap).
    #[arg(long)]
    out: PathBuf,
    /// Accept only packets carrying this auth key.
    #[arg(long)]
    auth_key: Option<String>,
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// Write only calls.csv and streams.csv.
    #[arg(long)]
    csv_only: bool,
    /// Stop by itself after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
}

pub fn run(a: HepListenArgs) -> Result<ExitCode> {
    let listener = Listener::bind(ListenOptions {
        udp: a.udp,
        tcp: a.tcp,
        out: a.out.clone(),
        pipeline: a.pipeline.config(),
        call_files: !a.csv_only,
        auth_key: a.auth_key,
        status: true,
    })?;
    let stop = crate::stop::on_signals(a.duration.map(Duration::from_secs_f64))?;
    tracing::info!(udp = ?listener.udp_addr(), tcp = ?listener.tcp_addr(), out = %a.out.display(), "HEP listener running; SIGINT/SIGTERM to stop");
    let report = listener.run(stop).context("HEP listener failed")?;
    println!("{}", report.summary_line());
    println!("output: {}", a.out.display());
    Ok(ExitCode::SUCCESS)
}
