//! The `voxtap` command: a thin shell over the voxtap libraries. Each
//! subcommand is one function in its own module; flags shared by several
//! subcommands are defined once in [`args`] and flattened where used.

mod args;
mod central_cmd;
mod extract_cmd;
mod hep_listen_cmd;
mod import_cmd;
mod media_cmd;
mod remote_cmd;
#[cfg(target_os = "linux")]
mod run_cmd;
mod serve_cmd;
mod stop;
mod synth_cmd;
mod upload_cmd;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "voxtap",
    version,
    about = "VoIP capture: rebuild SIP/RTP calls from live traffic or pcap files"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Read pcap/pcapng files and write calls.csv, streams.csv and one folder per call.
    Import(import_cmd::ImportArgs),
    /// Capture live from an interface through the XDP sensor into the rolling
    /// store and per-call outputs, until SIGINT/SIGTERM or --duration.
    #[cfg(target_os = "linux")]
    Run(run_cmd::RunArgs),
    /// Receive SIP mirrored in HEP3 (Kamailio, OpenSIPS, FreeSWITCH) and
    /// write the calls as `import` does, until SIGINT/SIGTERM or --duration.
    HepListen(hep_listen_cmd::HepListenArgs),
    /// Write one call's PCAP from a live store, using its index (no scan).
    Extract(extract_cmd::ExtractArgs),
    /// Upload closed rolling files and call artifacts to S3 (`[upload]` in the config).
    Upload(upload_cmd::UploadArgs),
    /// Remote capture from rpcapd hosts (RPCAP), for hosts that cannot run XDP.
    Remote {
        #[command(subcommand)]
        cmd: remote_cmd::RemoteCmd,
    },
    /// Regenerate the media outputs (decrypted pcaps, WAV, dtmf.csv,
    /// quality.json) of one call of an import output folder, from its call.pcap.
    Media(media_cmd::MediaCmdArgs),
    /// Write a synthetic capture: N concurrent G.711 calls (SIP + 20 ms RTP both ways).
    Synth(synth_cmd::SynthArgs),
    /// Serve the web UI and JSON API over a data directory (in this process).
    Serve(serve_cmd::ServeArgs),
    /// Print an argon2id hash of a password read from stdin, for the web
    /// config's `password_hash`.
    HashPassword,
    /// The fleet: central PostgreSQL index (migrate, sensors, hubs,
    /// maintenance), the fleet CA, and shipping a data directory.
    Central {
        #[command(subcommand)]
        cmd: central_cmd::CentralCmd,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("voxtap: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Import(a) => import_cmd::run(a),
        #[cfg(target_os = "linux")]
        Cmd::Run(a) => run_cmd::run(a),
        Cmd::HepListen(a) => hep_listen_cmd::run(a),
        Cmd::Extract(a) => extract_cmd::run(a),
        Cmd::Upload(a) => upload_cmd::run(a),
        Cmd::Remote { cmd } => remote_cmd::run(cmd),
        Cmd::Media(a) => media_cmd::run(a),
        Cmd::Synth(a) => synth_cmd::run(a),
        Cmd::Serve(a) => serve_cmd::run(a),
        Cmd::HashPassword => serve_cmd::hash_password(),
        Cmd::Central { cmd } => central_cmd::run(cmd),
    }
}
