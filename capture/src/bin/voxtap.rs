//! The `voxtap` command: a thin shell over the `voxtap_capture` library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use voxtap_capture::import::{ImportOptions, parse_ports, run_import};
use voxtap_capture::media::{ManualKey, MediaOptions};
use voxtap_capture::pipeline::PipelineConfig;
use voxtap_capture::rpcap::cli::{RemoteCmd, run_remote};
use voxtap_capture::synth::{SynthConfig, generate};

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
    Import {
        /// Ports where SIP is expected (SIP is also found by content on any port).
        #[arg(long, default_value = "5060,5061", value_parser = parse_ports)]
        sip_ports: std::vec::Vec<u16>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Close a call after this many seconds of capture time without a packet.
        #[arg(long, default_value_t = 300)]
        idle_timeout: u64,
        /// Do not look for SIP by content on non-SIP ports.
        #[arg(long)]
        no_sip_by_content: bool,
        /// Write only calls.csv and streams.csv.
        #[arg(long)]
        csv_only: bool,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
        /// Do not write WAV files (decrypted pcaps, DTMF and quality still are).
        #[arg(long)]
        no_audio: bool,
        /// An SRTP key for captures without SDES in SIP: `ssrc=0x1234ABCD,SUITE,BASE64`,
        /// `src=IP:PORT,SUITE,BASE64` or `flow=IP:PORT-IP:PORT,SUITE,BASE64`. Repeatable.
        #[arg(long = "srtp-key")]
        srtp_keys: Vec<ManualKey>,
        #[command(flatten)]
        hep: HepArgs,
        /// pcap or pcapng files; several are merged by timestamp.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Capture live from an interface through the XDP sensor into the rolling
    /// store and per-call outputs, until SIGINT/SIGTERM or --duration.
    #[cfg(target_os = "linux")]
    Run {
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
    },
    /// Receive SIP mirrored in HEP3 (Kamailio, OpenSIPS, FreeSWITCH) and
    /// write the calls as `import` does, until SIGINT/SIGTERM or --duration.
    HepListen {
        /// UDP address to listen on, e.g. 0.0.0.0:9060.
        #[arg(long)]
        udp: Option<std::net::SocketAddr>,
        /// TCP address to listen on.
        #[arg(long)]
        tcp: Option<std::net::SocketAddr>,
        /// Output directory (calls.csv, call folders, index.sqlite, hep.pcap).
        #[arg(long)]
        out: PathBuf,
        /// Accept only packets carrying this auth key.
        #[arg(long)]
        auth_key: Option<String>,
        #[arg(long, default_value = "5060,5061", value_parser = parse_ports)]
        sip_ports: std::vec::Vec<u16>,
        #[arg(long, default_value_t = 300)]
        idle_timeout: u64,
        /// Write only calls.csv and streams.csv.
        #[arg(long)]
        csv_only: bool,
        /// Stop by itself after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
    },
    /// Write one call's PCAP from a live store, using its index (no scan).
    Extract {
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
    },
    /// Upload closed rolling files and call artifacts to S3 (`[upload]` in the config).
    #[cfg(feature = "s3")]
    Upload(voxtap_capture::upload::cli::UploadArgs),
    /// Remote capture from rpcapd hosts (RPCAP), for hosts that cannot run XDP.
    Remote {
        #[command(subcommand)]
        cmd: RemoteCmd,
    },
    /// Regenerate the media outputs (decrypted pcaps, WAV, dtmf.csv,
    /// quality.json) of one call of an import output folder, from its call.pcap.
    Media {
        /// The call's Call-ID (as in calls.csv).
        #[arg(long)]
        call: String,
        /// The import output folder.
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        no_audio: bool,
        #[arg(long = "srtp-key")]
        srtp_keys: Vec<ManualKey>,
    },
    /// Write a synthetic capture: N concurrent G.711 calls (SIP + 20 ms RTP both ways).
    Synth {
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
        #[arg(long)]
        out: PathBuf,
    },
    /// Serve the web UI and JSON API over a data directory (runs the
    /// `voxtap-web` binary installed beside this one; see `voxtap serve --help`).
    #[command(disable_help_flag = true)]
    Serve {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Print an argon2id hash of a password read from stdin, for the web
    /// config's `password_hash` (runs `voxtap-web hash-password`).
    #[command(disable_help_flag = true)]
    HashPassword {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// Stands in for the S3 reader in a build without the `s3` feature.
#[cfg(not(feature = "s3"))]
struct NoRemote;
#[cfg(not(feature = "s3"))]
impl voxtap_capture::store::RemoteFiles for NoRemote {
    fn open(
        &self,
        _f: &voxtap_capture::store::FileRow,
        _offsets: &[u64],
    ) -> Option<Result<Box<dyn voxtap_capture::store::ReadSeek>, String>> {
        None
    }
}

/// HEP export from an import (`voxtap run` takes the `[hep]` config section).
#[derive(clap::Args)]
struct HepArgs {
    /// Send every SIP message, RTCP (JSON) and a quality report per stream to
    /// this HEP3 collector: udp://HOST:PORT, tcp://HOST:PORT, tls://HOST:PORT
    /// or HOST:PORT (UDP). Repeatable.
    #[arg(long = "hep", value_parser = voxtap_capture::hep::CollectorConfig::parse_url)]
    collectors: Vec<voxtap_capture::hep::CollectorConfig>,
    /// HEP capture agent id.
    #[arg(long, default_value_t = 2001)]
    hep_agent_id: u32,
    /// HEP authentication key.
    #[arg(long, default_value = "")]
    hep_auth_key: String,
    /// TLS collectors: PEM file of the CA to trust.
    #[arg(long)]
    hep_ca_file: Option<PathBuf>,
}

impl HepArgs {
    fn export(
        &self,
        status_dir: PathBuf,
    ) -> Result<Option<voxtap_capture::hep::export::HepExport>> {
        if self.collectors.is_empty() {
            return Ok(None);
        }
        let mut collectors = self.collectors.clone();
        for c in &mut collectors {
            c.ca_file = self.hep_ca_file.clone();
        }
        let cfg = voxtap_capture::hep::HepConfig {
            enabled: true,
            capture_agent_id: self.hep_agent_id,
            auth_key: self.hep_auth_key.clone(),
            collectors,
            ..Default::default()
        };
        voxtap_capture::hep::export::HepExport::new(cfg, Some(status_dir))
            .map(Some)
            .map_err(anyhow::Error::msg)
    }
}

/// Hand over to `voxtap-web` (the web crate depends on this library, so
/// this binary cannot link it without a dependency cycle): the binary
/// beside ours, else the one on PATH.
fn exec_web(sub: &str, args: Vec<std::ffi::OsString>) -> Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    let beside = std::env::current_exe()
        .ok()
        .map(|p| p.with_file_name("voxtap-web"))
        .filter(|p| p.is_file());
    let prog = beside.unwrap_or_else(|| PathBuf::from("voxtap-web"));
    let err = std::process::Command::new(&prog).arg(sub).args(args).exec();
    Err(err).with_context(|| {
        format!(
            "running {} (build it with `cargo build -p voxtap-web`)",
            prog.display()
        )
    })
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
        Cmd::Serve { args } => exec_web("serve", args),
        Cmd::HashPassword { args } => exec_web("hash-password", args),
        Cmd::Import {
            sip_ports,
            out,
            idle_timeout,
            no_sip_by_content,
            csv_only,
            quiet,
            no_audio,
            srtp_keys,
            hep,
            files,
        } => {
            let mut pipeline = PipelineConfig {
                sip_ports,
                sip_by_content: !no_sip_by_content,
                ..Default::default()
            };
            let export = hep.export(out.clone())?;
            pipeline.tap = export.as_ref().map(|e| e.tap_factory());
            pipeline.calls.idle_timeout_ns = idle_timeout.saturating_mul(1_000_000_000);
            let opts = ImportOptions {
                files,
                out: out.clone(),
                pipeline,
                progress: !quiet,
                call_files: !csv_only,
                media: Some(MediaOptions {
                    audio: !no_audio,
                    keys: srtp_keys,
                    ..Default::default()
                }),
            };
            let report = run_import(&opts).context("import failed")?;
            println!("{}", report.summary_line());
            if let Some(e) = &export {
                println!("{}", e.counters().snapshot().summary_line());
            }
            println!("output: {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(target_os = "linux")]
        Cmd::Run {
            iface,
            config,
            store,
            out,
            duration,
        } => {
            use voxtap_capture::config::Config;
            use voxtap_capture::live::{LiveOptions, run_live, stop_on_signals};
            let mut cfg = match &config {
                Some(p) => Config::load(p)?,
                None => Config::default(),
            };
            if let Some(s) = store {
                cfg.store.path = s;
            }
            if let Some(o) = out {
                cfg.output.dir = o;
            }
            let iface = iface
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
                duration: duration.map(std::time::Duration::from_secs_f64),
            };
            let stop = stop_on_signals()?;
            let report = run_live(&opts, stop).context("live capture failed")?;
            println!("{}", report.summary_line());
            println!("store: {}", report.store.display());
            println!("calls: {}", report.out.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::HepListen {
            udp,
            tcp,
            out,
            auth_key,
            sip_ports,
            idle_timeout,
            csv_only,
            duration,
        } => {
            use std::sync::Arc;
            use std::sync::atomic::{AtomicBool, Ordering};
            use voxtap_capture::hep::listen::{ListenOptions, Listener};
            let mut pipeline = PipelineConfig {
                sip_ports,
                ..Default::default()
            };
            pipeline.calls.idle_timeout_ns = idle_timeout.saturating_mul(1_000_000_000);
            let listener = Listener::bind(ListenOptions {
                udp,
                tcp,
                out: out.clone(),
                pipeline,
                call_files: !csv_only,
                auth_key,
                status: true,
            })?;
            let stop = Arc::new(AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(sig, Arc::clone(&stop))
                    .with_context(|| format!("installing handler for signal {sig}"))?;
            }
            if let Some(d) = duration {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_secs_f64(d));
                    stop.store(true, Ordering::Relaxed);
                });
            }
            tracing::info!(udp = ?listener.udp_addr(), tcp = ?listener.tcp_addr(), out = %out.display(), "HEP listener running; SIGINT/SIGTERM to stop");
            let report = listener.run(stop).context("HEP listener failed")?;
            println!("{}", report.summary_line());
            println!("output: {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "s3")]
        Cmd::Upload(a) => voxtap_capture::upload::cli::run_upload(a),
        Cmd::Extract {
            call,
            store,
            out,
            config,
        } => {
            let upload = match &config {
                Some(p) => voxtap_capture::config::Config::load(p)?.upload,
                None => Default::default(),
            };
            #[cfg(feature = "s3")]
            let remote = if upload.enabled {
                voxtap_capture::upload::S3RemoteFiles::open(&upload, &store)?
            } else {
                None
            };
            #[cfg(not(feature = "s3"))]
            if upload.enabled {
                anyhow::bail!("upload.enabled: this voxtap was built without the s3 feature");
            }
            #[cfg(not(feature = "s3"))]
            let remote: Option<NoRemote> = None;
            let r = voxtap_capture::store::extract_call_with(
                &store,
                &call,
                &out,
                remote
                    .as_ref()
                    .map(|r| r as &dyn voxtap_capture::store::RemoteFiles),
            )
            .with_context(|| format!("extracting call {call:?} from {}", store.display()))?;
            #[cfg(feature = "s3")]
            if let Some(rm) = &remote
                && !r.remote_files.is_empty()
            {
                use std::sync::atomic::Ordering::Relaxed;
                println!(
                    "{} rolling file(s) read from S3: {} ranged GETs, {} bytes",
                    r.remote_files.len(),
                    rm.stats.requests.load(Relaxed),
                    rm.stats.bytes.load(Relaxed)
                );
            }
            println!(
                "wrote {}: {} packets of call {call} from {} rolling file(s){}",
                out.display(),
                r.packets,
                r.files.len(),
                if r.capture_loss > 0 {
                    format!(
                        "; the sensor lost {} packets while this call was open",
                        r.capture_loss
                    )
                } else {
                    String::new()
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Remote { cmd } => run_remote(cmd),
        Cmd::Media {
            call,
            from,
            no_audio,
            srtp_keys,
        } => {
            let opts = MediaOptions {
                audio: !no_audio,
                keys: srtp_keys,
                ..Default::default()
            };
            let sum = voxtap_capture::media::regenerate(&from, &call, &opts)
                .with_context(|| format!("media for call {call} in {}", from.display()))?;
            println!(
                "{} streams, {} DTMF events, {} SRTP authentication failures, {} WAV files",
                sum.streams.len(),
                sum.dtmf.len(),
                sum.auth_failures(),
                sum.wavs.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Synth {
            calls,
            seconds,
            ramp,
            loss,
            jitter,
            seed,
            out,
        } => {
            let cfg = SynthConfig {
                calls,
                seconds,
                ramp_seconds: ramp,
                loss_pct: loss,
                jitter_ms: jitter,
                seed,
            };
            let f = std::fs::File::create(&out)
                .with_context(|| format!("creating {}", out.display()))?;
            let sum = generate(&cfg, std::io::BufWriter::with_capacity(1 << 20, f))
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "wrote {}: {} packets ({} SIP, {} RTP, {} RTP dropped as loss)",
                out.display(),
                sum.packets,
                sum.sip_packets,
                sum.rtp_packets,
                sum.rtp_dropped
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
