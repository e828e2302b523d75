//! The hub: `voxtap serve` with `[central]` in its config searches the
//! fleet's central PostgreSQL index instead of the local one (same pages,
//! a sensor column and filter, a Sensors page), and fetches a call's files
//! from S3 when the sensor uploaded them, else from the sensor through the
//! tunnel the sensor opened (see docs/fleet.md).
//!
//! * [`query`]: searches and call details in the central index.
//! * [`tunnel`]: the sensors' WebSocket connections and the hub's signed
//!   requests over them.
//! * [`files`]: a call's file from S3 or through the tunnel.
//! * [`sensors`]: the Sensors page.
//! * [`registrations`]: the Registrations page's bindings and pings of
//!   every sensor.
//! * [`dashboards`]: the fleet's dashboards from the central rollups.
//! * [`live`]: the sensors' live calls, pushed through their tunnels.
//! * [`export`]: the CDR export of a fleet search, read through a cursor.

pub mod dashboards;
pub mod export;
pub mod files;
pub mod live;
pub mod query;
pub mod registrations;
pub mod sensors;
pub mod tunnel;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::http::StatusCode;
use tokio_postgres::Client;
use voxtap_sensor::central::pg::PgTarget;

use crate::config::CentralConfig;
use crate::handlers::AppError;

pub struct Hub {
    target: PgTarget,
    pool: Mutex<Vec<Client>>,
    pub tunnels: tunnel::Registry,
    /// The latest live calls of each sensor with a tunnel.
    pub live: live::LiveStore,
    /// Each tunnel sensor's secret.
    secrets: HashMap<String, Vec<u8>>,
    pub request_ttl: Duration,
    ahead_days: i32,
    retention_days: i32,
}

/// A pooled connection, returned on drop unless it broke.
pub struct Pooled<'a> {
    hub: &'a Hub,
    client: Option<Client>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.client.take()
            && !c.is_closed()
        {
            let mut pool = self.hub.pool.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < 8 {
                pool.push(c);
            }
        }
    }
}

/// The central index could not answer: the search is down, not one sensor.
pub fn unavailable(e: impl std::fmt::Display) -> AppError {
    tracing::error!("central index: {e}");
    AppError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the central index is unavailable",
    )
}

impl Hub {
    pub fn new(cfg: &CentralConfig) -> Result<Hub> {
        let target = PgTarget::parse(&cfg.url).with_files(
            cfg.client_cert.as_deref(),
            cfg.client_key.as_deref(),
            cfg.ca.as_deref(),
        );
        let mut secrets = HashMap::new();
        for s in &cfg.sensors {
            let secret = s.secret().map_err(anyhow::Error::msg)?;
            secrets.insert(s.name.clone(), secret);
        }
        Ok(Hub {
            target,
            pool: Mutex::new(Vec::new()),
            tunnels: tunnel::Registry::default(),
            live: live::LiveStore::new(cfg.live_stale_seconds, cfg.live_drop_seconds).with_caps(
                voxtap_sensor::central::protocol::LiveCaps::from_keys(
                    cfg.live_max_calls,
                    cfg.live_max_ended,
                    cfg.live_max_bytes,
                )
                .map_err(anyhow::Error::msg)?,
            ),
            secrets,
            request_ttl: Duration::from_secs(cfg.request_ttl_seconds.unwrap_or(60).clamp(5, 300)),
            ahead_days: cfg.ahead_days.unwrap_or(7),
            retention_days: cfg.retention_days.unwrap_or(0),
        })
    }

    /// A connection from the pool, or a new one.
    pub async fn client(&self) -> Result<Pooled<'_>, AppError> {
        let pooled = self
            .pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .filter(|c| !c.is_closed());
        let client = match pooled {
            Some(c) => c,
            None => self.target.connect().await.map_err(unavailable)?,
        };
        Ok(Pooled {
            hub: self,
            client: Some(client),
        })
    }

    pub fn secret(&self, sensor: &str) -> Option<&[u8]> {
        self.secrets.get(sensor).map(Vec::as_slice)
    }

    /// Checks the schema once at start (a clear error beats failing
    /// searches), then keeps partitions ahead and applies retention once
    /// an hour.
    pub async fn start_maintenance(self: &std::sync::Arc<Self>) -> Result<()> {
        {
            let c = self.client().await.map_err(|_| {
                anyhow::anyhow!("cannot reach the central index at {}", self.target.url)
            })?;
            voxtap_sensor::central::schema::check_version(&c)
                .await
                .context("central index")?;
        }
        let hub = self.clone();
        tokio::spawn(async move {
            loop {
                match hub.client().await {
                    Ok(c) => match voxtap_sensor::central::schema::maintain(
                        &c,
                        hub.ahead_days,
                        hub.retention_days,
                    )
                    .await
                    {
                        Ok((made, dropped)) => {
                            tracing::info!(made, dropped, "central index partitions maintained")
                        }
                        Err(e) => tracing::warn!(error = %e, "central index maintenance"),
                    },
                    Err(_) => tracing::warn!("central index maintenance: unavailable"),
                }
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        });
        Ok(())
    }
}
