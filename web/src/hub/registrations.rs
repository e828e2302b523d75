//! The Registrations page on a hub: the bindings and pings every sensor
//! shipped to the central index (migration 3), answered as the local
//! index's rows with their sensor, in the local page's order (failed,
//! challenged and unanswered bindings first; the lossiest peers first).
//! Also the media-only streams (migration 5), newest first as locally.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use voxtap_engine::index::{MediaStreamRow, PingRow, RegistrationRow};

use super::{Hub, unavailable};
use crate::handlers::AppError;

/// A row of the local index's shape with the sensor that shipped it.
#[derive(Clone, Debug, Serialize)]
pub struct WithSensor<T> {
    /// None: the local index's own row (not a hub).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sensor: Option<String>,
    #[serde(flatten)]
    pub row: T,
}

impl<T> WithSensor<T> {
    /// A row of the server's own index.
    pub fn local(row: T) -> Self {
        WithSensor { sensor: None, row }
    }
}

fn ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn count(r: &Row, i: usize) -> u64 {
    r.get::<_, i64>(i).max(0) as u64
}

fn registration(r: &Row) -> WithSensor<RegistrationRow> {
    WithSensor {
        sensor: Some(r.get(0)),
        row: RegistrationRow {
            user: r.get(1),
            aor: r.get(2),
            contact: r.get(3),
            client: r.get(4),
            registrar: r.get(5),
            outcome: r.get(6),
            last_status: r.get::<_, Option<i16>>(7).map(|c| c.max(0) as u16),
            expires: r.get::<_, Option<i32>>(8).map(|e| e.max(0) as u32),
            requests: count(r, 9),
            registered: count(r, 10),
            refreshes: count(r, 11),
            challenges: count(r, 12),
            failures: count(r, 13),
            unanswered: count(r, 14),
            first_ns: ns(r.get(15)),
            last_ns: ns(r.get(16)),
            call_id: r.get(17),
        },
    }
}

fn ping(r: &Row) -> WithSensor<PingRow> {
    WithSensor {
        sensor: Some(r.get(0)),
        row: PingRow {
            src: r.get(1),
            dst: r.get(2),
            pings: count(r, 3),
            responses: count(r, 4),
            codes: r.get(5),
            unanswered: count(r, 6),
            loss_pct: f64::from(r.get::<_, f32>(7)),
            rtt_avg_ms: r.get::<_, Option<f32>>(8).map(f64::from),
            rtt_max_ms: r.get::<_, Option<f32>>(9).map(f64::from),
            keepalives: count(r, 10),
            first_ns: ns(r.get(11)),
            last_ns: ns(r.get(12)),
        },
    }
}

fn media_stream(r: &Row) -> WithSensor<MediaStreamRow> {
    let f = |i: usize| f64::from(r.get::<_, f32>(i));
    WithSensor {
        sensor: Some(r.get(0)),
        row: MediaStreamRow {
            id: r.get(1),
            folder: r.get(2),
            ssrc: r.get::<_, i64>(3) as u32,
            src: r.get(4),
            dst: r.get(5),
            payload_type: r.get::<_, i16>(6).clamp(0, 255) as u8,
            codec: r.get(7),
            first_ns: Some(ns(r.get(8))),
            last_ns: r.get::<_, Option<SystemTime>>(9).map(ns),
            packets: count(r, 10),
            expected: count(r, 11),
            lost: r.get(12),
            jitter_ms: f(13),
            max_jitter_ms: f(14),
            max_delta_ms: f(15),
            mos: r.get::<_, Option<f32>>(16).map(f64::from),
        },
    }
}

/// The local page's search: a user (a prefix with `*`), a client IP, or
/// everything.
fn condition(text: &str) -> (&'static str, Option<Box<dyn ToSql + Sync + Send>>) {
    let text = text.trim();
    if text.is_empty() {
        return ("true", None);
    }
    if let Some(prefix) = text.strip_suffix('*') {
        let like = prefix
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        return ("r.user_name LIKE $1", Some(Box::new(format!("{like}%"))));
    }
    match text.parse::<std::net::IpAddr>() {
        Ok(ip) => ("r.client_ip = $1", Some(Box::new(ip))),
        Err(_) => ("r.user_name = $1", Some(Box::new(text.to_string()))),
    }
}

impl Hub {
    /// Every sensor's bindings matching `text`, failed ones first.
    pub async fn registrations(
        &self,
        text: &str,
        limit: u32,
    ) -> Result<Vec<WithSensor<RegistrationRow>>, AppError> {
        let (cond, arg) = condition(text);
        let sql = format!(
            "SELECT s.name, r.user_name, r.aor, r.contact, r.client, r.registrar, r.outcome, r.last_status, \
             r.expires, r.requests, r.registered, r.refreshes, r.challenges, r.failures, r.unanswered, \
             r.first_at, r.last_at, r.call_id \
             FROM voxtap.registrations r JOIN voxtap.sensors s ON s.id = r.sensor WHERE {cond} \
             ORDER BY r.outcome IN ('failed', 'challenged', 'unanswered') DESC, \
             r.failures + r.unanswered DESC, r.last_at DESC, s.name LIMIT {}",
            limit.clamp(1, 1000)
        );
        let params: Vec<&(dyn ToSql + Sync)> = arg
            .iter()
            .map(|a| a.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = self
            .client()
            .await?
            .query(&sql, &params)
            .await
            .map_err(unavailable)?;
        Ok(rows.iter().map(registration).collect())
    }

    /// Every sensor's media-only streams, newest first (`id` is the
    /// sensor's own).
    pub async fn media_streams(
        &self,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<WithSensor<MediaStreamRow>>, AppError> {
        let sql = format!(
            "SELECT s.name, m.local_id, m.folder, m.ssrc, m.src, m.dst, m.payload_type, m.codec, \
             m.first_at, m.last_at, m.packets, m.expected, m.lost, m.jitter_ms, m.max_jitter_ms, \
             m.max_delta_ms, m.mos FROM voxtap.media_streams m JOIN voxtap.sensors s ON s.id = m.sensor \
             ORDER BY m.first_at DESC, s.name, m.local_id DESC LIMIT {} OFFSET {offset}",
            limit.clamp(1, 1000)
        );
        let rows = self
            .client()
            .await?
            .query(&sql, &[])
            .await
            .map_err(unavailable)?;
        Ok(rows.iter().map(media_stream).collect())
    }

    /// Every sensor's pairs of pinging peers, the lossiest first.
    pub async fn pings(&self, limit: u32) -> Result<Vec<WithSensor<PingRow>>, AppError> {
        let sql = format!(
            "SELECT s.name, p.src, p.dst, p.pings, p.responses, p.codes, p.unanswered, p.loss_pct, \
             p.rtt_avg_ms, p.rtt_max_ms, p.keepalives, p.first_at, p.last_at \
             FROM voxtap.pings p JOIN voxtap.sensors s ON s.id = p.sensor \
             ORDER BY p.loss_pct DESC, s.name, p.src, p.dst LIMIT {}",
            limit.clamp(1, 1000)
        );
        let rows = self
            .client()
            .await?
            .query(&sql, &[])
            .await
            .map_err(unavailable)?;
        Ok(rows.iter().map(ping).collect())
    }
}
