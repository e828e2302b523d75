//! The fleet: many sensors, one search (docs/fleet.md).
//!
//! * [`schema`]: the central PostgreSQL index as ordered migrations
//!   (`voxtap central migrate`), the sensors' roles, daily partitions and
//!   retention.
//! * [`mapping`]: the one place that says which column of the sensor's
//!   SQLite index becomes which typed column of the central index.
//! * [`ship`]: the shipper, a thread of `voxtap run` (and the end of
//!   `voxtap import --central`): finished calls from the local index, which
//!   stays the sensor's own index and its outbox, to the centre in batches
//!   with binary COPY, idempotent by (sensor, Call-ID, start), behind a
//!   high-water mark kept in the local index.
//! * [`rollups`]: the fleet-wide dashboards' per-minute rollups (central
//!   migration 4, kept by triggers on `calls`).
//! * [`pg`]: connections to PostgreSQL over TLS with a client certificate.
//! * [`ca`]: the fleet CA of `voxtap central ca` (tests, small sites).
//! * [`protocol`]: the signed requests and frames of the hub tunnel.
//! * [`tunnel`]: the connection the sensor opens to the hub, over which the
//!   hub asks for call files with signed requests.

pub mod ca;
pub mod mapping;
pub mod pg;
pub mod protocol;
pub mod rollups;
pub mod schema;
pub mod ship;
pub mod tunnel;

use std::path::PathBuf;

use serde::Deserialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CentralError {
    #[error("central index: {0}")]
    Pg(#[from] tokio_postgres::Error),
    #[error("local index {path}: {source}")]
    Local {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("central configuration: {0}")]
    Config(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error(
        "the central index's schema is at version {found}, this voxtap knows {known}: run `voxtap central migrate` with this version (or upgrade voxtap)"
    )]
    Schema { found: i32, known: usize },
    #[error("certificate: {0}")]
    Cert(String),
    #[error("hub tunnel: {0}")]
    Tunnel(String),
    #[error("not connected to the central index")]
    NotConnected,
}

impl CentralError {
    /// A failure of this attempt only, that the same statements retried
    /// get past: PostgreSQL chose this transaction as a deadlock's victim
    /// (e.g. a hub making tomorrow's partitions while calls arrive) or as a
    /// serialization failure. Nothing of it was committed.
    pub fn is_transient(&self) -> bool {
        use tokio_postgres::error::SqlState;
        match self {
            CentralError::Pg(e) => e.code().is_some_and(|c| {
                *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
            }),
            _ => false,
        }
    }
}

/// `[central]` of the sensor configuration: where this sensor ships its
/// calls and which hub it serves files to. Empty `url`: no shipping.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CentralConfig {
    /// libpq-style URL of the central index, e.g.
    /// `postgresql://vx_berlin1@db.example:5432/voxtap?sslmode=require`.
    /// `sslcert`, `sslkey` and `sslrootcert` in it are read by voxtap.
    pub url: String,
    /// This sensor's name in the fleet (`voxtap central add-sensor`); the
    /// role in `url` must belong to it.
    pub sensor_id: String,
    /// Client certificate and key (PEM) and the CA that signed the
    /// server's certificate; override the URL's `sslcert`/`sslkey`/
    /// `sslrootcert`.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    /// Calls per COPY batch.
    pub batch_calls: usize,
    /// How often the shipper looks for new calls.
    pub interval_ms: u64,
    /// `wss://hub.example:8443`: the hub this sensor opens its tunnel to
    /// (empty: no tunnel). Its certificate is checked against `ca`.
    pub hub_url: String,
    /// The secret shared with the hub's `[[central.sensors]]` entry: signs
    /// the tunnel's login and checks the hub's requests. A file holding it
    /// is preferred (`hub_secret_file`).
    pub hub_secret: String,
    pub hub_secret_file: Option<PathBuf>,
    /// Caps of each live push to the hub: open calls (default 200), calls
    /// just ended (50), bytes of JSON (2 MiB); see `protocol::LiveCaps`.
    pub live_max_calls: Option<usize>,
    pub live_max_ended: Option<usize>,
    pub live_max_bytes: Option<usize>,
}

impl CentralConfig {
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }

    pub fn validate(&self) -> Result<(), CentralError> {
        let bad = |m: &str| Err(CentralError::Config(m.to_string()));
        if self.enabled() && self.sensor_id.is_empty() {
            return bad("central.url is set but central.sensor_id is empty");
        }
        if !self.sensor_id.is_empty() && !schema::valid_sensor_name(&self.sensor_id) {
            return bad(
                "central.sensor_id: 1-32 characters of a-z, 0-9, '_' and '-', starting with a letter",
            );
        }
        if !self.hub_url.is_empty() && self.secret().is_err() {
            return bad("central.hub_url needs hub_secret or hub_secret_file");
        }
        self.live_caps().map(|_| ())
    }

    /// The live push's caps of the `live_max_*` keys.
    pub fn live_caps(&self) -> Result<protocol::LiveCaps, CentralError> {
        protocol::LiveCaps::from_keys(
            self.live_max_calls,
            self.live_max_ended,
            self.live_max_bytes,
        )
        .map_err(CentralError::Config)
    }

    /// The tunnel secret, from the file when one is named.
    pub fn secret(&self) -> Result<Vec<u8>, CentralError> {
        if let Some(p) = &self.hub_secret_file {
            let s = std::fs::read_to_string(p).map_err(|source| CentralError::Io {
                path: p.clone(),
                source,
            })?;
            return Ok(s.trim().as_bytes().to_vec());
        }
        if self.hub_secret.is_empty() {
            return Err(CentralError::Config("no hub secret".into()));
        }
        Ok(self.hub_secret.as_bytes().to_vec())
    }

    pub fn batch(&self) -> usize {
        if self.batch_calls == 0 {
            2000
        } else {
            self.batch_calls
        }
    }

    pub fn interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(if self.interval_ms == 0 {
            500
        } else {
            self.interval_ms
        })
    }
}

/// The fleet threads a sensor configuration asks for: the shipper when
/// `url` is set, the hub tunnel when `hub_url` is.
pub struct FleetThreads {
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl FleetThreads {
    /// Starts them for `cfg` until `stop`.
    pub fn spawn(
        cfg: &crate::Config,
        stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<FleetThreads, CentralError> {
        let io = |e: std::io::Error| CentralError::Config(format!("starting a thread: {e}"));
        let mut handles = Vec::new();
        if let Some(opts) = ship::ShipOptions::from_config(cfg) {
            let h = ship::spawn(opts, stop.clone()).map_err(io)?;
            handles.push(
                std::thread::Builder::new()
                    .name("central-join".into())
                    .spawn(move || match h.join() {
                        Ok(Err(e)) => tracing::error!(error = %e, "the central shipper stopped"),
                        Err(_) => tracing::error!("the central shipper panicked"),
                        Ok(Ok(())) => {}
                    })
                    .map_err(io)?,
            );
        }
        if let Some(t) = tunnel::TunnelOptions::from_config(cfg)? {
            handles.push(tunnel::spawn(t, stop.clone()).map_err(io)?);
        }
        Ok(FleetThreads { handles })
    }

    /// Waits for them (after raising their stop flag): the shipper's last
    /// round sends what the sensor indexed before stopping.
    pub fn join(self) {
        for h in self.handles {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_caps_are_config_keys_with_todays_defaults() {
        let c: CentralConfig = toml::from_str("").unwrap();
        assert_eq!(c.live_caps().unwrap(), protocol::LiveCaps::default());
        let c: CentralConfig =
            toml::from_str("live_max_calls = 500\nlive_max_ended = 0\nlive_max_bytes = 8388608")
                .unwrap();
        let caps = c.live_caps().unwrap();
        assert_eq!(
            (caps.max_calls, caps.max_ended, caps.max_bytes),
            (500, 0, 8 << 20)
        );
        let c: CentralConfig = toml::from_str("live_max_calls = 0").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("live_max_calls"), "{e}");
    }
}
