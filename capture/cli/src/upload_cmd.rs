//! `voxtap upload`: the uploader as a process of its own (beside `voxtap
//! run`, or after `voxtap import`), and its figures.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use voxtap_sensor::config::Config;
use voxtap_sensor::upload::Uploader;
use voxtap_sensor::upload::queue::Queue;

#[derive(Args, Clone, Debug)]
pub struct UploadArgs {
    /// TOML configuration with an `[upload]` section (see config/voxtap.toml).
    #[arg(long)]
    pub config: PathBuf,
    /// Store directory (overrides store.path).
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Per-call output directory with index.sqlite (overrides output.dir).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Upload what is there now, waiting out retries, then exit (status 1
    /// if files are still queued after --max-wait seconds, or failed).
    #[arg(long)]
    pub once: bool,
    #[arg(long, default_value_t = 600)]
    pub max_wait: u64,
    /// Print the queue's figures and exit.
    #[arg(long)]
    pub status: bool,
    /// Create the bucket first (an existing one is fine).
    #[arg(long)]
    pub create_bucket: bool,
}

pub fn run(a: UploadArgs) -> Result<ExitCode> {
    let mut cfg = Config::load(&a.config)?;
    if let Some(s) = a.store {
        cfg.store.path = s;
    }
    if let Some(o) = a.out {
        cfg.output.dir = o;
    }
    if a.status {
        let Some(q) = Queue::open_read_only(&cfg.store.path)? else {
            println!("no upload queue in {}", cfg.store.path.display());
            return Ok(ExitCode::SUCCESS);
        };
        for state in ["queued", "uploaded", "failed", "lost", "expired"] {
            let c = q.count(state)?;
            println!("{state:9} {:>8} files {:>14} bytes", c.files, c.bytes);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !cfg.upload.enabled {
        bail!("upload.enabled is false in {}", a.config.display());
    }
    let mut up = Uploader::new(
        &cfg.upload,
        &cfg.store.path,
        cfg.upload.calls.then_some(cfg.output.dir.as_path()),
        Some(cfg.output.dir.as_path()),
    )
    .context("starting the uploader")?;
    if a.create_bucket {
        up.s3()
            .create_bucket()
            .with_context(|| format!("creating bucket {}", cfg.upload.bucket))?;
    }
    let stop = crate::stop::on_signals(None)?;
    if a.once {
        let empty = up.drain(&stop, Duration::from_secs(a.max_wait))?;
        let s = up.status();
        println!(
            "uploaded {} files ({} bytes sent); queued {} files; failed {}; lost {}",
            s.uploads, s.bytes_sent, s.queued_files, s.failed_files, s.lost_files
        );
        return Ok(if empty && s.failed_files == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    up.run(&stop)?;
    Ok(ExitCode::SUCCESS)
}
