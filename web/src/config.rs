//! `voxtap-web.toml`: listen address, TLS, users and their roles, login
//! throttling, import and remote-capture limits.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
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
    #[error("{path}: [[trunks]] '{trunk}': {why}")]
    BadTrunk {
        path: PathBuf,
        trunk: String,
        why: String,
    },
    #[error("{path}: tls_cert and tls_key must be given together")]
    HalfTls { path: PathBuf },
    #[error("{path}: user '{user}' is defined twice; each [[users]] name must be unique")]
    DuplicateUser { path: PathBuf, user: String },
    #[error(
        "{path}: user name {user:?}: names must be non-empty, without ':' (the bearer token is NAME:TOKEN) or control characters"
    )]
    BadUserName { path: PathBuf, user: String },
    #[error("{path}: {msg}")]
    Alerts { path: PathBuf, msg: String },
    #[error("{path}: {key} = {value} is out of range ({range})")]
    OutOfRange {
        path: PathBuf,
        key: &'static str,
        value: u64,
        range: &'static str,
    },
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
    #[serde(default)]
    pub login: LoginConfig,
    #[serde(default)]
    pub import: ImportConfig,
    /// `[alerting]`: evaluation interval and notification sinks.
    #[serde(default)]
    pub alerting: crate::alerts::AlertingConfig,
    /// `[[alerts]]`: the alert rules (admins may change them in the UI).
    #[serde(default)]
    pub alerts: Vec<crate::alerts::Rule>,
    /// Trunk groups the dashboards filter by (first match wins).
    #[serde(default)]
    pub trunks: Vec<TrunkConfig>,
    /// `[s3_sessions]`: the sensor's rolling store uploaded to S3, which
    /// the Hosts page correlates with an uploaded SIP pcap.
    pub s3_sessions: Option<S3SessionsConfig>,
}

/// `[s3_sessions]`: where the sensor's rolling files are (`[store] path`,
/// whose `upload.sqlite` names each uploaded file's object) and the bucket
/// they were uploaded to (`[upload]`'s endpoint, region, bucket,
/// path_style). Credentials come from the standard AWS chain.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3SessionsConfig {
    pub store: PathBuf,
    /// Empty or absent: AWS.
    #[serde(default)]
    pub endpoint: String,
    pub region: Option<String>,
    pub bucket: String,
    #[serde(default)]
    pub path_style: bool,
    /// Most bytes one correlation fetches from S3, in MB (default 4096):
    /// they are copied to the data directory for the import.
    pub max_fetch_mb: Option<u64>,
}

/// `[[trunks]]`: a trunk group: calls whose SIP or media used an address in
/// `ips` (CIDR prefixes or addresses), or whose From, To or request-URI
/// user starts with one of `numbers`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    pub name: String,
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub numbers: Vec<String>,
}

impl TrunkConfig {
    pub fn rule(&self) -> voxtap_engine::index::TrunkRule {
        voxtap_engine::index::TrunkRule {
            name: self.name.clone(),
            ip_prefixes: self.ips.clone(),
            number_prefixes: self.numbers.clone(),
        }
    }
}

/// What a user may do; each role includes the ones before it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Search calls and look at them: lists, call pages, SIP, statistics,
    /// the JSON report. The default of a user without a role.
    #[default]
    Viewer,
    /// Also the media: call PCAPs, decrypted PCAPs, WAVs, waveforms, zips.
    Listener,
    /// Also imports and remote captures.
    Operator,
    /// Also users (lock-outs, sessions) and the audit log.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Listener => "listener",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// `[login]`: throttling of failed logins and bearer tokens. Each user name
/// and each source address has its own count of failures.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginConfig {
    /// Failures of one user name answered at once (default 3); after them
    /// each attempt waits for a back-off that doubles per failure.
    pub free_attempts: Option<u32>,
    /// Failures from one address answered at once (default 20).
    pub address_free_attempts: Option<u32>,
    /// The first back-off (default 1 s).
    pub backoff_seconds: Option<u64>,
    /// The longest back-off (default 300 s).
    pub max_backoff_seconds: Option<u64>,
    /// Failures of one user name that lock it out (default 10).
    pub lockout_after: Option<u32>,
    /// How long a lock-out lasts unless an admin clears it (default 15).
    pub lockout_minutes: Option<u64>,
}

/// `[import]`: uploads of captures.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportConfig {
    /// Import jobs that run at once (default 2); later ones wait in a queue.
    pub concurrent: Option<u32>,
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
    /// A sensor's live calls are shown as stale after this many seconds
    /// without a push from it (default 5; 2 to 3600) and leave the Live
    /// page after `live_drop_seconds` (default 15; longer than the first,
    /// at most 86400).
    pub live_stale_seconds: Option<u64>,
    pub live_drop_seconds: Option<u64>,
    /// What the hub keeps of each sensor's live push: open calls (default
    /// 200, 1 to 10 000), calls just ended (50, 0 to 1000), bytes of JSON
    /// (2 MiB, 4 KiB to 64 MiB; a larger push is refused).
    pub live_max_calls: Option<usize>,
    pub live_max_ended: Option<usize>,
    pub live_max_bytes: Option<usize>,
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
    /// Longest capture filter accepted, in bytes (default 1024): libpcap's
    /// optimiser is worse than quadratic in the number of terms.
    pub max_filter_bytes: Option<u32>,
    /// Longest a filter may take to compile (default 5 s).
    pub filter_timeout_seconds: Option<u64>,
    /// Largest SIP pcap accepted for a post-capture correlation, in MB
    /// (default 256).
    pub max_sip_upload_mb: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain and private key: both or neither.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Session lifetime (default 12 hours; 1 to 8760).
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
    /// What the user may do; a user without one is a `viewer`.
    pub role: Option<Role>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        cfg.check(path)?;
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
        Ok(cfg)
    }

    /// Everything a config must satisfy, whether loaded or built in code:
    /// valid hashes, unique names, both TLS files or neither, limits in
    /// range. `path` names the config in the errors.
    pub fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let path = || path.to_path_buf();
        let mut seen = std::collections::HashSet::new();
        for u in &self.users {
            if u.name.is_empty() || u.name.contains(':') || u.name.chars().any(char::is_control) {
                return Err(ConfigError::BadUserName {
                    path: path(),
                    user: u.name.clone(),
                });
            }
            if !seen.insert(u.name.as_str()) {
                return Err(ConfigError::DuplicateUser {
                    path: path(),
                    user: u.name.clone(),
                });
            }
            let hashes = std::iter::once(&u.password_hash).chain(u.api_token_hash.as_ref());
            for h in hashes {
                if argon2::password_hash::phc::PasswordHash::new(h).is_err() {
                    return Err(ConfigError::BadHash {
                        path: path(),
                        user: u.name.clone(),
                    });
                }
            }
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return Err(ConfigError::HalfTls { path: path() });
        }
        self.check_alerts()
            .map_err(|msg| ConfigError::Alerts { path: path(), msg })?;
        self.check_trunks(&path())?;
        self.check_ranges(&path())
    }

    /// Trunk names unique and non-empty, every IP prefix parses.
    fn check_trunks(&self, path: &Path) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for t in &self.trunks {
            let bad = |why: String| ConfigError::BadTrunk {
                path: path.to_path_buf(),
                trunk: t.name.clone(),
                why,
            };
            if t.name.trim().is_empty() || !seen.insert(t.name.as_str()) {
                return Err(bad("names must be unique and not empty".into()));
            }
            if t.ips.is_empty() && t.numbers.is_empty() {
                return Err(bad("give ips or numbers".into()));
            }
            if let Some(p) = voxtap_engine::index::bad_prefix(&t.rule()) {
                return Err(bad(format!("'{p}' is not an IP address or CIDR prefix")));
            }
        }
        Ok(())
    }

    fn check_ranges(&self, path: &Path) -> Result<(), ConfigError> {
        let l = &self.login;
        let limits: [(&'static str, Option<u64>, u64, u64, &'static str); 10] = [
            (
                "session_hours",
                self.server.session_hours,
                1,
                8760,
                "1 to 8760 hours",
            ),
            (
                "free_attempts",
                l.free_attempts.map(u64::from),
                0,
                1000,
                "0 to 1000",
            ),
            (
                "address_free_attempts",
                l.address_free_attempts.map(u64::from),
                0,
                100_000,
                "0 to 100000",
            ),
            ("backoff_seconds", l.backoff_seconds, 1, 3600, "1 to 3600 s"),
            (
                "max_backoff_seconds",
                l.max_backoff_seconds,
                1,
                86_400,
                "1 to 86400 s",
            ),
            (
                "lockout_after",
                l.lockout_after.map(u64::from),
                1,
                100_000,
                "1 to 100000",
            ),
            (
                "lockout_minutes",
                l.lockout_minutes,
                1,
                525_600,
                "1 minute to a year",
            ),
            (
                "concurrent",
                self.import.concurrent.map(u64::from),
                1,
                64,
                "1 to 64 jobs",
            ),
            (
                "filter_timeout_seconds",
                self.remote.filter_timeout_seconds,
                1,
                600,
                "1 to 600 s",
            ),
            (
                "max_sip_upload_mb",
                self.remote.max_sip_upload_mb,
                1,
                65_536,
                "1 to 65536 MB",
            ),
        ];
        for (key, value, lo, hi, range) in limits {
            if let Some(v) = value.filter(|v| !(lo..=hi).contains(v)) {
                return Err(ConfigError::OutOfRange {
                    path: path.to_path_buf(),
                    key,
                    value: v,
                    range,
                });
            }
        }
        match self.remote.max_filter_bytes {
            Some(v) if !(16..=65_536).contains(&v) => Err(ConfigError::OutOfRange {
                path: path.to_path_buf(),
                key: "max_filter_bytes",
                value: u64::from(v),
                range: "16 to 65536 bytes",
            }),
            _ => Ok(()),
        }
    }

    fn check_alerts(&self) -> Result<(), String> {
        self.alerting.check()?;
        let mut names = std::collections::HashSet::new();
        for r in &self.alerts {
            r.check()?;
            if !names.insert(r.name.as_str()) {
                return Err(format!("alert {} is defined twice", r.name));
            }
        }
        Ok(())
    }

    /// Session lifetime.
    pub fn session_lifetime(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.server.session_hours.unwrap_or(12).min(8760) * 3600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../config/voxtap-web.example.toml");

    /// The example as shipped, and with every commented setting switched
    /// on: each documented key exists and its example value is accepted.
    #[test]
    fn the_example_config_loads_with_all_its_settings() {
        let hash = crate::auth::hash_password("x").unwrap();
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("web.toml");
        let plain = EXAMPLE.replace("REPLACE with the output of: voxtap hash-password", &hash);
        std::fs::write(&p, &plain).unwrap();
        let cfg = Config::load(&p).unwrap();
        assert_eq!(cfg.users[0].role, Some(Role::Admin));
        let all: String = plain
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with('[')
                        || rest.split_once(" = ").is_some_and(|(k, _)| {
                            !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                        }) =>
                {
                    rest.split(" #").next().unwrap_or(rest).to_string()
                }
                _ => l.to_string(),
            })
            .map(|l| l.replace("$argon2id$...", &hash) + "\n")
            .collect();
        std::fs::write(&p, &all).unwrap();
        let cfg = Config::load(&p).unwrap_or_else(|e| panic!("{e}\n{all}"));
        assert_eq!(cfg.users.len(), 3);
        assert_eq!(cfg.users[2].role, Some(Role::Viewer));
        assert_eq!(cfg.login.lockout_after, Some(10));
        assert_eq!(cfg.import.concurrent, Some(2));
        assert_eq!(cfg.remote.max_filter_bytes, Some(1024));
        assert_eq!(cfg.server.session_hours, Some(12));
        assert_eq!(cfg.alerting.interval_seconds, Some(5));
        assert_eq!(cfg.alerting.smtp_to, ["noc@example.net"]);
        let names: Vec<&str> = cfg.alerts.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "asr-low-trunk-x",
                "mos-poor",
                "sip-503",
                "capture-loss",
                "sensor-silent",
                "registration-failures"
            ]
        );
    }

    #[test]
    fn bad_alert_rules_are_refused_with_their_name() {
        let rule = "[[alerts]]\nname = \"x\"\nmetric = \"asr\"\nop = \"<\"\nthreshold = 40\n";
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("web.toml");
        std::fs::write(&p, format!("{rule}{rule}")).unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.contains("alert x is defined twice"), "{e}");
        std::fs::write(&p, format!("{rule}scope = \"10.0.0.0/40\"\n")).unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.contains("scope"), "{e}");
        std::fs::write(&p, "[alerting]\nwebhook = \"ftp://x/\"\n").unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.contains("webhook"), "{e}");
        std::fs::write(&p, "[alerting]\nwebhook = \"https://x/\"\n").unwrap();
        Config::load(&p).unwrap();
        std::fs::write(&p, "[alerting]\ntls_ca = \"/nonexistent/ca.pem\"\n").unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.contains("tls_ca"), "{e}");
        std::fs::write(&p, "[alerting]\nsmtp_relay = \"127.0.0.1:25\"\n").unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.contains("smtp_from"), "{e}");
    }
}
