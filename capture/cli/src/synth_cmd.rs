//! `voxtap synth`: a synthetic capture of concurrent G.711 calls.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use voxtap_engine::synth::{SynthConfig, generate};

#[derive(Args)]
pub struct SynthArgs {
    #[arg(long, default_value_t = 100)]
    calls: u32,
    /// Talk time of each call.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// Calls start spread over this many seconds.
    #[arg(long, default_value_t = 1)]
    ramp: u32,
    /// Random RTP loss in percent.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Random RTP delay up to this many ms.
    #[arg(long, default_value_t = 0.0)]
    jitter: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Every callee answers with its media at this address:port (a media
    /// server's single port).
    #[arg(long)]
    media_server: Option<std::net::SocketAddrV4>,
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: SynthArgs) -> Result<ExitCode> {
    let cfg = SynthConfig {
        calls: a.calls,
        seconds: a.seconds,
        ramp_seconds: a.ramp,
        loss_pct: a.loss,
        jitter_ms: a.jitter,
        seed: a.seed,
        media_server: a.media_server,
    };
    let f =
        std::fs::File::create(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let sum = generate(&cfg, std::io::BufWriter::with_capacity(1 << 20, f))
        .with_context(|| format!("writing {}", a.out.display()))?;
    println!(
        "wrote {}: {} packets ({} SIP, {} RTP, {} RTP dropped as loss)",
        a.out.display(),
        sum.packets,
        sum.sip_packets,
        sum.rtp_packets,
        sum.rtp_dropped
    );
    Ok(ExitCode::SUCCESS)
}
