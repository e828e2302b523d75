//! `voxtap central ...`: the fleet's central index and CA (docs/fleet.md).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use voxtap_sensor::central::pg::PgTarget;
use voxtap_sensor::central::ship::{ShipOptions, Shipper};
use voxtap_sensor::central::{FleetThreads, ca, schema};
use voxtap_sensor::config::Config;

#[derive(Subcommand)]
pub enum CentralCmd {
    /// Create or upgrade the central index's schema (as its owner).
    Migrate(UrlArgs),
    /// Add a sensor: its login role (certificate login, CN = the role) and
    /// its row. Prints the role name.
    AddSensor {
        #[command(flatten)]
        url: UrlArgs,
        /// The sensor's name (a-z, 0-9, '_', '-'), as in its central.sensor_id.
        #[arg(long)]
        name: String,
    },
    /// Add a hub login role (reads every sensor's rows, runs maintenance).
    AddHub {
        #[command(flatten)]
        url: UrlArgs,
        #[arg(long)]
        role: String,
    },
    /// Create the coming days' partitions and drop days past retention.
    Maintain {
        #[command(flatten)]
        url: UrlArgs,
        #[arg(long, default_value_t = 7)]
        ahead_days: i32,
        /// Drop days older than this (0: keep everything).
        #[arg(long, default_value_t = 0)]
        retention_days: i32,
    },
    /// The fleet CA (tests and small sites).
    Ca {
        #[command(subcommand)]
        cmd: CaCmd,
    },
    /// Ship a data directory's calls and serve its files to the hub until
    /// SIGINT/SIGTERM (`[central]` of the config): a sensor that imports
    /// rather than captures, or a box whose capture runs elsewhere.
    Attach {
        /// Sensor configuration with a `[central]` section.
        #[arg(long)]
        config: PathBuf,
        /// Data directory with index.sqlite (overrides output.dir).
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct UrlArgs {
    /// libpq URL or key=value string; `sslcert`, `sslkey`, `sslrootcert`
    /// name the client certificate, its key and the server's CA.
    #[arg(long)]
    url: String,
}

#[derive(Subcommand)]
pub enum CaCmd {
    /// Create a CA in DIR (ca.crt, ca.key).
    Init {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "voxtap fleet CA")]
        cn: String,
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Issue a certificate (server and client use) signed by the CA in DIR:
    /// OUT/NAME.crt and OUT/NAME.key. A sensor's NAME is its role (vx_<name>).
    Issue {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        name: String,
        /// Subject alternative names: DNS names or IP addresses (repeat).
        #[arg(long = "san")]
        sans: Vec<String>,
        #[arg(long, default_value_t = 825)]
        days: u32,
        /// Where to write (default: DIR).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub fn run(cmd: CentralCmd) -> Result<ExitCode> {
    match cmd {
        CentralCmd::Migrate(u) => runtime()?.block_on(async {
            let mut c = PgTarget::parse(&u.url).connect().await?;
            let (from, to) = schema::migrate(&mut c).await?;
            println!("central index schema: version {from} -> {to}");
            Ok(ExitCode::SUCCESS)
        }),
        CentralCmd::AddSensor { url, name } => runtime()?.block_on(async {
            let mut c = PgTarget::parse(&url.url).connect().await?;
            schema::check_version(&c).await?;
            println!("{}", schema::add_sensor(&mut c, &name).await?);
            Ok(ExitCode::SUCCESS)
        }),
        CentralCmd::AddHub { url, role } => runtime()?.block_on(async {
            let mut c = PgTarget::parse(&url.url).connect().await?;
            schema::check_version(&c).await?;
            schema::add_hub(&mut c, &role).await?;
            println!("{role}");
            Ok(ExitCode::SUCCESS)
        }),
        CentralCmd::Maintain {
            url,
            ahead_days,
            retention_days,
        } => runtime()?.block_on(async {
            let c = PgTarget::parse(&url.url).connect().await?;
            let (made, dropped) = schema::maintain(&c, ahead_days, retention_days).await?;
            println!("partitions created {made}, dropped {dropped}");
            Ok(ExitCode::SUCCESS)
        }),
        CentralCmd::Ca { cmd } => ca_cmd(cmd),
        CentralCmd::Attach { config, data } => attach(config, data),
    }
}

fn ca_cmd(cmd: CaCmd) -> Result<ExitCode> {
    match cmd {
        CaCmd::Init { dir, cn, days } => {
            println!("{}", ca::init(&dir, &cn, days)?.display());
        }
        CaCmd::Issue {
            dir,
            name,
            sans,
            days,
            out,
        } => {
            let out = out.unwrap_or_else(|| dir.clone());
            let (crt, key) = ca::issue(&dir, &name, &sans, days, &out)?;
            println!("{}\n{}", crt.display(), key.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn attach(config: PathBuf, data: Option<PathBuf>) -> Result<ExitCode> {
    let mut cfg = Config::load(&config)?;
    if let Some(d) = data {
        cfg.output.dir = d;
    }
    anyhow::ensure!(
        cfg.central.enabled() || !cfg.central.hub_url.is_empty(),
        "{}: [central] has neither url nor hub_url",
        config.display()
    );
    let stop: Arc<AtomicBool> = crate::stop::on_signals(None)?;
    let threads = FleetThreads::spawn(&cfg, &stop)?;
    tracing::info!(data = %cfg.output.dir.display(), "attached to the fleet; SIGINT/SIGTERM to stop");
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    threads.join();
    Ok(ExitCode::SUCCESS)
}

/// `voxtap import --central URL --sensor-id ID`: ship the import's calls.
pub fn ship_import(out: PathBuf, url: &str, sensor_id: &str) -> Result<u64> {
    let opts = ShipOptions {
        target: PgTarget::parse(url),
        sensor_id: sensor_id.to_string(),
        out_dir: out,
        store: None,
        upload: None,
        batch: 2000,
        interval: std::time::Duration::from_millis(500),
    };
    let mut s = Shipper::open(opts)?;
    let n = runtime()?
        .block_on(s.drain())
        .context("shipping to the central index")?;
    Ok(n)
}
