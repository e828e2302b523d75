//! `voxtap extract`: one call's PCAP from a live store through its index,
//! reading rolling files that went to S3 with ranged GETs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;

use anyhow::{Context, Result};
use clap::Args;
use voxtap_sensor::config::Config;
use voxtap_sensor::store::{RemoteFiles, extract_call_with};
use voxtap_sensor::upload::S3RemoteFiles;

#[derive(Args)]
pub struct ExtractArgs {
    /// The call's SIP Call-ID.
    #[arg(long)]
    call: String,
    /// Store directory (holds store.sqlite and pcap/).
    #[arg(long)]
    store: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// Configuration whose `[upload]` section names the S3 bucket: rolling
    /// files no longer local are read from it with ranged GETs.
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn run(a: ExtractArgs) -> Result<ExitCode> {
    let upload = match &a.config {
        Some(p) => Config::load(p)?.upload,
        None => Default::default(),
    };
    let remote = if upload.enabled {
        S3RemoteFiles::open(&upload, &a.store)?
    } else {
        None
    };
    let r = extract_call_with(
        &a.store,
        &a.call,
        &a.out,
        remote.as_ref().map(|r| r as &dyn RemoteFiles),
    )
    .with_context(|| format!("extracting call {:?} from {}", a.call, a.store.display()))?;
    if let Some(rm) = &remote
        && !r.remote_files.is_empty()
    {
        println!(
            "{} rolling file(s) read from S3: {} ranged GETs, {} bytes",
            r.remote_files.len(),
            rm.stats.requests.load(Relaxed),
            rm.stats.bytes.load(Relaxed)
        );
    }
    let loss = if r.capture_loss > 0 {
        format!(
            "; the sensor lost {} packets while this call was open",
            r.capture_loss
        )
    } else {
        String::new()
    };
    println!(
        "wrote {}: {} packets of call {} from {} rolling file(s){loss}",
        a.out.display(),
        r.packets,
        a.call,
        r.files.len(),
    );
    Ok(ExitCode::SUCCESS)
}
