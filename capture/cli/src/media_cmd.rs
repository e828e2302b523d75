//! `voxtap media`: regenerate one call's media outputs from its call.pcap.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use crate::args::{MediaArgs, TlsArgs};

#[derive(Args)]
pub struct MediaCmdArgs {
    /// The call's Call-ID (as in calls.csv).
    #[arg(long)]
    call: String,
    /// The import output folder.
    #[arg(long)]
    from: PathBuf,
    #[command(flatten)]
    media: MediaArgs,
    /// Keys for a call whose SIP came over TLS (its SDP, and so its SRTP
    /// keys, are inside).
    #[command(flatten)]
    tls: TlsArgs,
}

pub fn run(a: MediaCmdArgs) -> Result<ExitCode> {
    let pipeline = voxtap_engine::pipeline::PipelineConfig {
        tls_keys: a.tls.load()?,
        ..Default::default()
    };
    let sum = voxtap_engine::media::regenerate(&a.from, &a.call, &a.media.options(), pipeline)
        .with_context(|| format!("media for call {} in {}", a.call, a.from.display()))?;
    println!(
        "{} streams, {} DTMF events, {} SRTP authentication failures, {} WAV files",
        sum.streams.len(),
        sum.dtmf.len(),
        sum.auth_failures(),
        sum.wavs.len()
    );
    Ok(ExitCode::SUCCESS)
}
