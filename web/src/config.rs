//! `voxtap-web.toml`: listen address, TLS, users.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error(
        "{path}: user '{user}': password_hash is not an argon2 PHC string ($argon2id$...); make one with `voxtap hash-password`"
    )]
    BadHash { path: PathBuf, user: String },
    #[error("{path}: tls_cert and tls_key must be given together")]
    HalfTls { path: PathBuf },
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    #[serde(default)]
    pub remote: RemoteConfig,
    /// The hub: search the fleet's central index instead of the local one
    /// (docs/fleet.md).
    pub central: Option<CentralConfig>,
}

/// `[central]`: the central PostgreSQL index this hub searches, and the
/// sensors that may open a tunnel to it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CentralConfig {
    /// libpq URL of the central index as the hub's role (`voxtap central
    /// add-hub`); `sslcert`, `sslkey`, `sslrootcert` in it name the files.
    pub url: String,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    /// Partitions created this many days ahead (default 7), once an hour.
    pub ahead_days: Option<i32>,
    /// Days of calls kept: older days are dropped, once an hour (default 0:
    /// keep everything).
    pub retention_days: Option<i32>,
    /// How long a signed request to a sensor stays valid (default 60 s).
    pub request_ttl_seconds: Option<u64>,
    /// Sensors allowed to open a tunnel, each with its shared secret.
    #[serde(default)]
    pub sensors: Vec<TunnelSensor>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelSensor {
    pub name: String,
    pub secret: Option<String>,
    /// A file holding the secret (preferred; relative to the config file).
    pub secret_file: Option<PathBuf>,
}

impl TunnelSensor {
    pub fn secret(&self) -> Result<Vec<u8>, String> {
        match (&self.secret_file, &self.secret) {
            (Some(p), _) => std::fs::read_to_string(p)
                .map(|s| s.trim().as_bytes().to_vec())
                .map_err(|e| format!("{}: {e}", p.display())),
            (None, Some(s)) if !s.is_empty() => Ok(s.as_bytes().to_vec()),
            _ => Err(format!("sensor {}: no secret", self.name)),
        }
    }
}

/// `[remote]`: remote capture from the hosts page.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// The rpcapd hosts file (config/hosts.toml); relative to the config file.
    pub hosts: Option<PathBuf>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain and private key: both or neither.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Session lifetime (default 12 hours).
    pub session_hours: Option<u64>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    /// argon2 PHC string from `voxtap hash-password`.
    pub password_hash: String,
    /// argon2 hash of an API token: the API accepts
    /// `Authorization: Bearer NAME:TOKEN`.
    pub api_token_hash: Option<String>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        for u in &cfg.users {
            let hashes = std::iter::once(&u.password_hash).chain(u.api_token_hash.as_ref());
            for h in hashes {
                if argon2::password_hash::phc::PasswordHash::new(h).is_err() {
                    return Err(ConfigError::BadHash {
                        path: path.to_path_buf(),
                        user: u.name.clone(),
                    });
                }
            }
        }
        let mut cfg = cfg;
        if let Some(h) = cfg.remote.hosts.as_mut()
            && h.is_relative()
            && let Some(dir) = path.parent()
        {
            *h = dir.join(&*h);
        }
        if let Some(c) = cfg.central.as_mut()
            && let Some(dir) = path.parent()
        {
            for p in [&mut c.client_cert, &mut c.client_key, &mut c.ca]
                .into_iter()
                .flatten()
                .chain(c.sensors.iter_mut().filter_map(|s| s.secret_file.as_mut()))
            {
                if p.is_relative() {
                    *p = dir.join(&*p);
                }
            }
        }
        if cfg.server.tls_cert.is_some() != cfg.server.tls_key.is_some() {
            return Err(ConfigError::HalfTls {
                path: path.to_path_buf(),
            });
        }
        Ok(cfg)
    }
}
