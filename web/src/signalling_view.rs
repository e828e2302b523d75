//! The SIP that is not a call: the Registrations page (bindings searchable
//! by user or IP, failed ones first, and the pings per pair of peers), its
//! JSON, and the registration and ping figures `/metrics` adds.

use std::fmt::Write as _;

use axum::Json;
use axum::extract::{Extension, Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use voxtap_engine::index::{PingRow, RegistrationQuery, RegistrationRow};

use crate::handlers::AppError;
use crate::hub::registrations::WithSensor;
use crate::text::ts;
use crate::{Identity, Shared, pages};

type R<T> = Result<T, AppError>;

/// Rows shown at most (the search narrows them).
const LIMIT: u32 = 500;

/// Peer pairs listed in `/metrics` at most (the lossiest first).
const METRICS_PEERS: u32 = 200;

#[derive(Debug, Default, Deserialize)]
pub struct Search {
    /// A user (a prefix with `*`) or a client IP.
    pub q: Option<String>,
}

type Rows = (Vec<WithSensor<RegistrationRow>>, Vec<WithSensor<PingRow>>);

/// The bindings and pings: every sensor's from the central index on a hub,
/// else the local index's.
async fn load(st: &Shared, q: Option<String>) -> R<Rows> {
    if let Some(hub) = &st.hub {
        let text = q.unwrap_or_default();
        return Ok((
            hub.registrations(&text, LIMIT).await?,
            hub.pings(LIMIT).await?,
        ));
    }
    let (regs, pings) = st
        .db
        .run(move |idx| {
            let regs = idx.registrations(&RegistrationQuery {
                text: q,
                limit: LIMIT,
                offset: 0,
            })?;
            Ok((regs, idx.pings(LIMIT)?))
        })
        .await?;
    Ok((
        regs.into_iter().map(WithSensor::local).collect(),
        pings.into_iter().map(WithSensor::local).collect(),
    ))
}

/// `GET /registrations`.
pub async fn page(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    Query(s): Query<Search>,
) -> R<Html<String>> {
    let (regs, pings) = load(&st, s.q.clone()).await?;
    let body = html! {
        h1 { "Registrations" }
        form.filters method="get" action="/registrations" {
            label { "User or IP" input name="q" placeholder="1001, 10* or 10.0.0.5" value=(s.q.clone().unwrap_or_default()); }
            div.actions {
                button type="submit" id="search" { "Search" }
                a.button.secondary href="/registrations" { "Reset" }
            }
        }
        (bindings(&regs, st.hub.is_some()))
        (peers(&pings, st.hub.is_some()))
    };
    Ok(Html(pages::page("Registrations", &ident, body)))
}

/// `hub`: a Sensor column first.
fn bindings(regs: &[WithSensor<RegistrationRow>], hub: bool) -> Markup {
    html! {
        section {
            h2 { "Bindings " span.muted { "(" (regs.len()) "; failed, challenged and unanswered first)" } }
            @if regs.is_empty() { p.muted id="no-registrations" { "No REGISTER seen." } } @else {
                table.registrations id="registrations" {
                    thead { tr {
                        @if hub { th { "Sensor" } }
                        th { "User" } th { "Contact" } th { "Client" } th { "Registrar" } th { "Outcome" }
                        th.num { "Expires s" } th.num { "Requests" } th.num { "Refreshes" }
                        th.num { "Challenges" } th.num { "Failures" } th.num { "Unanswered" }
                        th { "First (UTC)" } th { "Last (UTC)" }
                    } }
                    tbody {
                        @for WithSensor { sensor, row: r } in regs {
                            tr data-outcome=(r.outcome) {
                                @if hub { td.sensor { (sensor.as_deref().unwrap_or("")) } }
                                td { (r.user) }
                                td.mono { (r.contact) }
                                td.mono { (r.client) }
                                td.mono { (r.registrar) }
                                td { span.badge { (r.outcome) @if let Some(c) = r.last_status { " " (c) } } }
                                td.num { @if let Some(e) = r.expires { (e) } @else { "–" } }
                                td.num { (r.requests) }
                                td.num { (r.refreshes) }
                                td.num { (r.challenges) }
                                td.num { (r.failures) }
                                td.num { (r.unanswered) }
                                td { (ts(r.first_ns)) }
                                td { (ts(r.last_ns)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn peers(pings: &[WithSensor<PingRow>], hub: bool) -> Markup {
    html! {
        section {
            h2 { "Keep-alives " span.muted { "(OPTIONS pings and CRLF keep-alives per pair of peers, the lossiest first)" } }
            @if pings.is_empty() { p.muted { "No pings seen." } } @else {
                table.pings id="pings" {
                    thead { tr {
                        @if hub { th { "Sensor" } }
                        th { "From" } th { "To" } th.num { "Pings" } th { "Responses" }
                        th.num { "Unanswered" } th.num { "Loss %" } th.num { "RTT ms (avg/max)" }
                        th.num { "CRLF" } th { "First (UTC)" } th { "Last (UTC)" }
                    } }
                    tbody {
                        @for WithSensor { sensor, row: p } in pings {
                            tr {
                                @if hub { td.sensor { (sensor.as_deref().unwrap_or("")) } }
                                td.mono { (p.src) } td.mono { (p.dst) }
                                td.num { (p.pings) }
                                td { (p.codes) }
                                td.num { (p.unanswered) }
                                td.num { (format!("{:.1}", p.loss_pct)) }
                                td.num { @match (p.rtt_avg_ms, p.rtt_max_ms) {
                                    (Some(a), Some(m)) => (format!("{a:.1} / {m:.1}")),
                                    _ => "–",
                                } }
                                td.num { (p.keepalives) }
                                td { (ts(p.first_ns)) }
                                td { (ts(p.last_ns)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /api/registrations?q=`: the bindings and pings as JSON.
pub async fn api(State(st): State<Shared>, Query(s): Query<Search>) -> R<Response> {
    let (registrations, pings) = load(&st, s.q).await.map_err(AppError::json)?;
    Ok(Json(serde_json::json!({
        "registrations": registrations,
        "pings": pings,
    }))
    .into_response())
}

/// `GET /metrics`: the server's metrics, then registration failures and
/// ping loss per pair of peers from the index.
pub async fn metrics(st: State<Shared>) -> R<Response> {
    let base = crate::handlers::metrics(State(st.0.clone())).await?;
    let (totals, pings) = st
        .db
        .run(|idx| Ok((idx.signalling_totals()?, idx.pings(METRICS_PEERS)?)))
        .await?;
    let body = axum::body::to_bytes(base.into_body(), 16 << 20)
        .await
        .map_err(|_| AppError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "metrics"))?;
    let mut out = String::from_utf8_lossy(&body).into_owned();
    out.push_str(&exposition(&totals, &pings));
    out.push_str(&st.alerts.exposition());
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Prometheus text for the registration totals and per-peer ping loss.
pub fn exposition(t: &voxtap_engine::index::SignallingTotals, pings: &[PingRow]) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "# HELP voxtap_registration_bindings Registration bindings in the index.\n\
         # TYPE voxtap_registration_bindings gauge\n\
         voxtap_registration_bindings {}\n\
         # HELP voxtap_registration_bindings_failing Bindings whose latest REGISTER failed, was challenged or went unanswered.\n\
         # TYPE voxtap_registration_bindings_failing gauge\n\
         voxtap_registration_bindings_failing {}\n\
         # HELP voxtap_registration_failures REGISTER transactions by failure kind.\n\
         # TYPE voxtap_registration_failures gauge\n\
         voxtap_registration_failures{{kind=\"refused\"}} {}\n\
         voxtap_registration_failures{{kind=\"challenged\"}} {}\n\
         voxtap_registration_failures{{kind=\"unanswered\"}} {}\n\
         # HELP voxtap_media_only_streams RTP streams no SIP claimed.\n\
         # TYPE voxtap_media_only_streams gauge\n\
         voxtap_media_only_streams {}\n",
        t.bindings, t.bindings_failing, t.failures, t.challenges, t.unanswered, t.media_streams
    );
    if pings.is_empty() {
        return o;
    }
    o.push_str(
        "# HELP voxtap_ping_loss_ratio Share of OPTIONS pings left unanswered, per pair of peers.\n\
         # TYPE voxtap_ping_loss_ratio gauge\n",
    );
    for p in pings {
        let _ = writeln!(
            o,
            "voxtap_ping_loss_ratio{{src=\"{}\",dst=\"{}\"}} {}",
            label(&p.src),
            label(&p.dst),
            p.loss_pct / 100.0
        );
    }
    o.push_str(
        "# HELP voxtap_pings_unanswered OPTIONS pings left unanswered, per pair of peers.\n\
         # TYPE voxtap_pings_unanswered gauge\n",
    );
    for p in pings {
        let _ = writeln!(
            o,
            "voxtap_pings_unanswered{{src=\"{}\",dst=\"{}\"}} {}",
            label(&p.src),
            label(&p.dst),
            p.unanswered
        );
    }
    o
}
