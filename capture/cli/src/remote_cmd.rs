//! `voxtap remote ...`: remote capture over RPCAP from the command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};

use voxtap_sensor::rpcap::client::{ClientConfig, Session, Transport};
use voxtap_sensor::rpcap::hosts::{self, Host};
use voxtap_sensor::rpcap::remote::{
    self, PID_FILE, RemoteOptions, STATUS_FILE, STOP_FILE, parse_duration, run_foreground,
};
use voxtap_sensor::rpcap::tls::TlsSettings;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TransportArg {
    Tcp,
    Udp,
}

#[derive(Args, Clone, Debug)]
pub struct HostSelection {
    /// Hosts file.
    #[arg(long, default_value = "config/hosts.toml")]
    pub hosts: PathBuf,
    /// Hosts to use: env, env/region, env/region/host, `*` for any level;
    /// repeat for several. Default: every host in the file.
    #[arg(long)]
    pub select: Vec<String>,
    /// rpcaps (TLS, rpcapd -S) for every selected host, whatever the hosts
    /// file says. The server certificate is always verified.
    #[arg(long)]
    pub tls: bool,
    /// CA certificate(s) (PEM) the servers' certificates must chain to;
    /// implies --tls. Default: the hosts file's ca_file, else the system roots.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
}

#[derive(Args, Clone, Debug)]
pub struct CaptureArgs {
    #[command(flatten)]
    pub sel: HostSelection,
    /// Output directory (one folder per env/region/host/interface).
    #[arg(long)]
    pub out: PathBuf,
    /// Stop after this long (30s, 5m, 1h); default: until `remote stop`.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Capture filter (tcpdump syntax), compiled with libpcap.
    #[arg(long, default_value = "udp")]
    pub filter: String,
    /// Data channel from rpcapd.
    #[arg(long, value_enum, default_value = "tcp")]
    pub transport: TransportArg,
    #[arg(long, default_value_t = 65535)]
    pub snaplen: u32,
    /// Reconnect attempts after a drop before giving up on a host.
    #[arg(long, default_value_t = 5)]
    pub max_attempts: u32,
    /// First reconnect delay; doubles each attempt up to 30 s.
    #[arg(long, value_parser = parse_duration, default_value = "500ms")]
    pub backoff: Duration,
    /// New pcap segment past this many MiB.
    #[arg(long, default_value_t = 256)]
    pub rotate_mb: u64,
    /// Only calls.csv/streams.csv, no per-call folders.
    #[arg(long)]
    pub csv_only: bool,
    /// SIP ports (SIP is also found by content elsewhere).
    #[arg(long, default_value = "5060,5061", value_parser = voxtap_engine::import::parse_ports)]
    pub sip_ports: std::vec::Vec<u16>,
}

#[derive(Subcommand, Clone, Debug)]
pub enum RemoteCmd {
    /// List the capture interfaces of the selected hosts.
    ListInterfaces {
        #[command(flatten)]
        sel: HostSelection,
    },
    /// Capture in the foreground: rolling pcaps, calls.csv, streams.csv and
    /// gaps.csv per host and interface; live counters on stderr.
    Capture(CaptureArgs),
    /// Start `capture` in the background (log in OUT/capture.log).
    Start(CaptureArgs),
    /// Show the live counters of a capture running into OUT.
    Status {
        #[arg(long)]
        out: PathBuf,
    },
    /// Stop a capture running into OUT and wait for it to finish.
    Stop {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_parser = parse_duration, default_value = "60s")]
        timeout: Duration,
    },
}

fn selected(sel: &HostSelection) -> Result<Vec<Host>> {
    let all = hosts::load(&sel.hosts)?;
    let mut hosts = hosts::select(&all, &sel.select)?;
    if sel.tls || sel.ca_file.is_some() {
        for h in &mut hosts {
            let t = h.tls.get_or_insert_with(TlsSettings::default);
            if let Some(ca) = &sel.ca_file {
                t.ca_file = Some(ca.clone());
            }
        }
    }
    Ok(hosts)
}

/// rpcapd has no DTLS: say so before connecting anywhere.
fn check_transport(hosts: &[Host], a: &CaptureArgs) -> Result<()> {
    if matches!(a.transport, TransportArg::Udp)
        && let Some(h) = hosts.iter().find(|h| h.tls.is_some())
    {
        bail!(
            "{} uses TLS (rpcaps), and rpcapd refuses the UDP data channel with TLS (no DTLS): use --transport tcp",
            h.id()
        );
    }
    Ok(())
}

fn options(a: &CaptureArgs) -> RemoteOptions {
    let mut o = RemoteOptions::new(a.out.clone());
    o.duration = a.duration;
    o.capture.filter = a.filter.clone();
    o.capture.transport = match a.transport {
        TransportArg::Tcp => Transport::Tcp,
        TransportArg::Udp => Transport::Udp,
    };
    o.capture.snaplen = a.snaplen;
    o.reconnect.max_attempts = a.max_attempts;
    o.reconnect.initial_backoff = a.backoff;
    o.rotate_bytes = a.rotate_mb.max(1) << 20;
    o.call_files = !a.csv_only;
    o.pipeline.sip_ports = a.sip_ports.clone();
    o
}

pub fn run(cmd: RemoteCmd) -> Result<ExitCode> {
    match cmd {
        RemoteCmd::ListInterfaces { sel } => list_interfaces(&sel),
        RemoteCmd::Capture(a) => capture(&a),
        RemoteCmd::Start(a) => {
            // Check the selection now, so a typo fails here and not in a log.
            check_transport(&selected(&a.sel)?, &a)?;
            start_background(&a)?;
            Ok(ExitCode::SUCCESS)
        }
        RemoteCmd::Status { out } => status(&out),
        RemoteCmd::Stop { out, timeout } => stop(&out, timeout),
    }
}

fn exit_code(failed: bool) -> ExitCode {
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn list_interfaces(sel: &HostSelection) -> Result<ExitCode> {
    let mut failed = false;
    for h in selected(sel)? {
        let mut cfg = ClientConfig::new(h.addr());
        cfg.credentials = h.credentials.clone();
        cfg.tls = h.tls.clone();
        match Session::connect(&cfg).and_then(|mut s| {
            let l = s.list_interfaces();
            let _ = s.close();
            l
        }) {
            Ok(ifs) => {
                println!("{} ({}):", h.id(), h.addr());
                for i in ifs {
                    let addrs: Vec<String> = i
                        .addresses
                        .iter()
                        .filter_map(|a| a.addr.map(|x| x.to_string()))
                        .collect();
                    println!("  {:<16} {}  {}", i.name, addrs.join(" "), i.description);
                }
            }
            Err(e) => {
                failed = true;
                eprintln!("{}: {e}", h.id());
            }
        }
    }
    Ok(exit_code(failed))
}

/// A capture in the foreground, with a line of counters on stderr every 2 s.
fn capture(a: &CaptureArgs) -> Result<ExitCode> {
    let hosts = selected(&a.sel)?;
    check_transport(&hosts, a)?;
    let opts = options(a);
    let targets = remote::targets(&hosts, &opts);
    let mut last = Instant::now();
    let reports = run_foreground(targets, &opts, |st| {
        if last.elapsed() >= Duration::from_secs(2) {
            last = Instant::now();
            let line: Vec<String> = st
                .iter()
                .map(|u| {
                    format!(
                        "{} {} {} {} pkts",
                        u.id,
                        u.iface,
                        u.state.as_str(),
                        u.packets
                    )
                })
                .collect();
            eprintln!("{}", line.join(" | "));
        }
    })
    .with_context(|| format!("writing to {}", opts.out.display()))?;
    let mut failed = false;
    for r in &reports {
        println!("{}", r.summary_line());
        failed |= r.error.is_some();
    }
    Ok(exit_code(failed))
}

fn status(out: &Path) -> Result<ExitCode> {
    let table = std::fs::read_to_string(out.join(STATUS_FILE))
        .with_context(|| format!("no capture status in {}", out.display()))?;
    match remote::running_pid(out) {
        Some(p) => println!("running (pid {p})"),
        None if out.join(PID_FILE).exists() => {
            println!("not running (died without cleaning up: stale {PID_FILE}; last status)")
        }
        None => println!("not running (last status)"),
    }
    print!("{table}");
    Ok(ExitCode::SUCCESS)
}

/// Asks the capture running into `out` to stop (its STOP file) and waits
/// for its pid file to go.
fn stop(out: &Path, timeout: Duration) -> Result<ExitCode> {
    let pid_file = out.join(PID_FILE);
    if !pid_file.exists() {
        bail!("no capture running into {}", out.display());
    }
    if remote::running_pid(out).is_none() {
        let _ = std::fs::remove_file(&pid_file);
        bail!(
            "the capture into {} is not running (it died without cleaning up; removed its stale {PID_FILE})",
            out.display()
        );
    }
    std::fs::write(out.join(STOP_FILE), b"")
        .with_context(|| format!("writing {}", out.join(STOP_FILE).display()))?;
    let until = Instant::now() + timeout;
    while pid_file.exists() {
        if Instant::now() >= until {
            bail!(
                "capture into {} did not stop within {timeout:?}",
                out.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("stopped");
    if let Ok(t) = std::fs::read_to_string(out.join(STATUS_FILE)) {
        print!("{t}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Re-runs this program as `remote capture` with the same arguments,
/// detached, and waits until it has written its pid file.
fn start_background(a: &CaptureArgs) -> Result<()> {
    let out: &Path = &a.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    if let Some(pid) = remote::running_pid(out) {
        bail!("a capture already runs into {} (pid {pid})", out.display());
    }
    // A pid file whose process is gone: a capture that was killed.
    let _ = std::fs::remove_file(out.join(PID_FILE));
    let exe = std::env::current_exe().context("finding the voxtap executable")?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(pos) = args.iter().position(|x| x == "start") else {
        bail!("cannot find 'start' in the command line");
    };
    let mut child_args = args.clone();
    child_args[pos] = "capture".into();
    let log = std::fs::File::create(out.join("capture.log"))
        .with_context(|| format!("creating {}", out.join("capture.log").display()))?;
    let child = std::process::Command::new(exe)
        .args(&child_args)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting the background capture")?;
    let until = Instant::now() + Duration::from_secs(10);
    while !out.join(PID_FILE).exists() {
        if Instant::now() >= until {
            bail!(
                "background capture (pid {}) did not start; see {}",
                child.id(),
                out.join("capture.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "capture started (pid {pid}); `voxtap remote status --out {dir}` / `voxtap remote stop --out {dir}`",
        pid = child.id(),
        dir = out.display()
    );
    Ok(())
}
