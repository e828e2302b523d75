//! `voxtap run`: the live XDP sensor.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use voxtap_sensor::config::Config;
use voxtap_sensor::live::{LiveOptions, run_live};

#[derive(Args)]
pub struct RunArgs {
    /// Interface to attach to (overrides capture.interfaces in the config).
    #[arg(long)]
    iface: Option<String>,
    /// TOML configuration (see config/voxtap.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Store directory (overrides store.path).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Per-call output directory (overrides output.dir).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Stop by itself after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Load the XDP program with debug records (two per frame, printed at
    /// INFO with target `voxtap_xdp`; sets capture.xdp_debug). Costly: for
    /// debugging only.
    #[arg(long)]
    xdp_debug: bool,
}

pub fn run(a: RunArgs) -> Result<ExitCode> {
    let mut cfg = match &a.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(s) = a.store {
        cfg.store.path = s;
    }
    if let Some(o) = a.out {
        cfg.output.dir = o;
    }
    if a.xdp_debug {
        cfg.capture.xdp_debug = true;
    }
    let iface = a
        .iface
        .or_else(|| cfg.capture.interfaces.first().cloned())
        .context("no interface: give --iface or capture.interfaces in the config")?;
    if cfg.capture.interfaces.len() > 1 {
        tracing::warn!(
            "capture.interfaces lists {} interfaces; this process captures only {iface} (run one voxtap per interface)",
            cfg.capture.interfaces.len()
        );
    }
    let opts = LiveOptions {
        config: cfg,
        iface,
        duration: a.duration.map(Duration::from_secs_f64),
    };
    let stop = crate::stop::on_signals(None)?;
    let report = run_live(&opts, stop).context("live capture failed")?;
    println!("{}", report.summary_line());
    println!("store: {}", report.store.display());
    println!("calls: {}", report.out.display());
    Ok(ExitCode::SUCCESS)
}
