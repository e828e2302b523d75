//! `voxtap-web`: the web UI server and the password hasher. The `voxtap`
//! command's `serve` and `hash-password` run this binary (the capture crate
//! cannot depend on this one, which depends on it).

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use voxtap_web::{Config, ServeOptions};

#[derive(Parser)]
#[command(name = "voxtap", version, about = "voxtap web UI")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the web UI and JSON API over a data directory.
    Serve {
        /// Data directory: index.sqlite and the call folders.
        #[arg(long)]
        data: PathBuf,
        /// Address to listen on (default 127.0.0.1:8080 or the config's).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// TOML config: users, TLS, listen address.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Serve without login when no users are configured. Anyone who can
        /// reach the port can then read and download every recording.
        #[arg(long)]
        insecure_no_auth: bool,
    },
    /// Read a password from stdin (one line) and print its argon2id hash
    /// for the config's `password_hash`.
    HashPassword,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("voxtap: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Serve {
            data,
            listen,
            config,
            insecure_no_auth,
        } => {
            let config = match config {
                Some(p) => Config::load(&p)?,
                None => Config::default(),
            };
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(voxtap_web::serve(ServeOptions {
                data,
                listen,
                config,
                insecure_no_auth,
            }))
        }
        Cmd::HashPassword => {
            eprintln!("password (one line on stdin):");
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password")?;
            let pw = line.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(!pw.is_empty(), "empty password");
            println!("{}", voxtap_web::auth::hash_password(pw)?);
            Ok(())
        }
    }
}
