//! `voxtap serve` and `voxtap hash-password`: the web UI, in this process.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use voxtap_web::{Config, ServeOptions};

#[derive(Args)]
pub struct ServeArgs {
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
}

pub fn run(a: ServeArgs) -> Result<ExitCode> {
    let config = match a.config {
        Some(p) => Config::load(&p)?,
        None => Config::default(),
    };
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(voxtap_web::serve(ServeOptions {
        data: a.data,
        listen: a.listen,
        config,
        insecure_no_auth: a.insecure_no_auth,
    }))?;
    Ok(ExitCode::SUCCESS)
}

pub fn hash_password() -> Result<ExitCode> {
    eprintln!("password (one line on stdin):");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password")?;
    let pw = line.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(!pw.is_empty(), "empty password");
    println!("{}", voxtap_web::auth::hash_password(pw)?);
    Ok(ExitCode::SUCCESS)
}
