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
        if cfg.server.tls_cert.is_some() != cfg.server.tls_key.is_some() {
            return Err(ConfigError::HalfTls {
                path: path.to_path_buf(),
            });
        }
        Ok(cfg)
    }
}
