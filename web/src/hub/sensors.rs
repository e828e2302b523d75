//! The Sensors page (`/sensors`, `/api/sensors`): each sensor of the fleet
//! with its last contact (its shipper's heartbeat), version, shipping rate,
//! calls waiting on it, calls in the last hour, and whether its tunnel is
//! up.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::html;
use serde::Serialize;

use super::unavailable;
use crate::handlers::AppError;
use crate::text::ts;
use crate::{Identity, Shared};

#[derive(Clone, Debug, Serialize)]
pub struct SensorRow {
    pub name: String,
    pub last_contact_unix: Option<u64>,
    pub version: Option<String>,
    pub host: Option<String>,
    pub calls_per_second: Option<f64>,
    pub pending: Option<i64>,
    pub shipped_total: Option<i64>,
    pub calls_last_hour: i64,
    pub tunnel: bool,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn rows(st: &Shared) -> Result<Vec<SensorRow>, AppError> {
    let hub = st
        .hub
        .clone()
        .ok_or_else(|| AppError::new(StatusCode::NOT_FOUND, "this server is not a hub"))?;
    let c = hub.client().await?;
    let rows = c
        .query(
            "SELECT s.name, h.at, h.version, h.host, h.calls_per_s, h.pending, h.shipped_total, \
             (SELECT count(*) FROM voxtap.calls c WHERE c.sensor = s.id AND c.start_at > now() - interval '1 hour') \
             FROM voxtap.sensors s LEFT JOIN LATERAL (SELECT * FROM voxtap.sensor_contacts sc \
               WHERE sc.sensor = s.id ORDER BY sc.at DESC LIMIT 1) h ON true ORDER BY s.name",
            &[],
        )
        .await
        .map_err(unavailable)?;
    Ok(rows
        .iter()
        .map(|r| {
            let name: String = r.get(0);
            SensorRow {
                tunnel: hub.tunnels.is_connected(&name),
                name,
                last_contact_unix: r.get::<_, Option<SystemTime>>(1).map(unix),
                version: r.get(2),
                host: r.get(3),
                calls_per_second: r.get::<_, Option<f32>>(4).map(f64::from),
                pending: r.get(5),
                shipped_total: r.get(6),
                calls_last_hour: r.get(7),
            }
        })
        .collect())
}

pub async fn api(State(st): State<Shared>) -> Result<Response, AppError> {
    let rows = rows(&st).await.map_err(AppError::json)?;
    Ok(Json(rows).into_response())
}

fn age(now: u64, t: Option<u64>) -> String {
    match t {
        None => "never".into(),
        Some(t) => {
            let s = now.saturating_sub(t);
            if s < 120 {
                format!("{s} s ago")
            } else if s < 7200 {
                format!("{} min ago", s / 60)
            } else {
                format!("{} h ago", s / 3600)
            }
        }
    }
}

pub async fn page(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
) -> Result<Html<String>, AppError> {
    let rows = rows(&st).await?;
    let now = voxtap_sensor::status::now_unix();
    let body = html! {
        h1 { "Sensors" }
        p.muted { "Last contact is the sensor's last shipping round; files of calls not in S3 come through the sensor's tunnel." }
        table.sensors id="sensors" {
            thead { tr {
                th { "Sensor" } th { "Last contact" } th { "Version" } th { "Host" }
                th.num { "Calls/s shipped" } th.num { "Waiting on sensor" } th.num { "Calls, last hour" } th { "Tunnel" }
            } }
            tbody {
                @for s in &rows {
                    tr data-sensor=(s.name) {
                        td { a href={"/calls?sensor=" (crate::text::url_encode(&s.name))} { (s.name) } }
                        td title=(s.last_contact_unix.map(|t| ts(t * 1_000_000_000)).unwrap_or_default()) {
                            (age(now, s.last_contact_unix))
                            @if s.last_contact_unix.is_none_or(|t| now.saturating_sub(t) > 60) { " " span.badge.s-failed { "stale" } }
                        }
                        td { (s.version.as_deref().unwrap_or("–")) }
                        td { (s.host.as_deref().unwrap_or("–")) }
                        td.num { (s.calls_per_second.map(|r| format!("{r:.1}")).unwrap_or_else(|| "–".into())) }
                        td.num { (s.pending.map(|p| p.to_string()).unwrap_or_else(|| "–".into())) }
                        td.num { (s.calls_last_hour) }
                        td { @if s.tunnel { span.badge.s-answered { "connected" } } @else { span.badge.s-failed { "offline" } } }
                    }
                }
                @if rows.is_empty() { tr { td colspan="8" .empty { "No sensors: add one with voxtap central add-sensor." } } }
            }
        }
    };
    Ok(Html(crate::pages::page("Sensors", &ident, body)))
}
