//! The Live page: the calls in progress as the sensor's last snapshot
//! (`<data>/live/calls.json`, replaced about once a second by `voxtap
//! run`, see docs/live.md) has them, and one running call's page. Both are
//! rendered on the server (maud escapes every value) and kept current by a
//! server-sent event stream that pushes the re-rendered fragment once a
//! second; app.js swaps it in. Without JavaScript the page shows the
//! snapshot as it was when loaded.
//!
//! On a hub the same pages list every sensor's calls, with a sensor
//! column, from the snapshots the sensors push through their tunnels
//! (`hub::live`). `/api/live` is the snapshot (or the fleet's) as JSON.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::Stream;
use maud::{Markup, html};
use serde::Deserialize;
use voxtap_engine::index::CallQuery;
use voxtap_engine::live_calls::{LiveCall, LiveStream};
use voxtap_sensor::status::{LiveCallsFile, now_unix, read_live_calls};

use crate::hub::live::SensorLive;
use crate::text::{ts, url_encode};
use crate::{Identity, Shared};

/// How often an event stream sends the fragment again.
const PUSH_EVERY: Duration = Duration::from_secs(1);
/// A snapshot older than this while its sensor says it runs is flagged.
const STALE_SECONDS: u64 = 10;

#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    /// One call (its Call-ID) instead of the whole table.
    pub call: Option<String>,
}

async fn read(st: &Shared) -> Option<LiveCallsFile> {
    let data = st.data.clone();
    tokio::task::spawn_blocking(move || read_live_calls(&data))
        .await
        .ok()
        .flatten()
}

/// What the pages show: this sensor's snapshot, or on a hub every
/// sensor's latest.
enum Source {
    Local(Option<LiveCallsFile>),
    Fleet(Vec<SensorLive>),
}

async fn source(st: &Shared) -> Source {
    match &st.hub {
        Some(hub) => Source::Fleet(hub.live.fleet()),
        None => Source::Local(read(st).await),
    }
}

impl Source {
    fn table(&self, now: u64) -> Markup {
        match self {
            Source::Local(f) => table(f.as_ref(), now),
            Source::Fleet(v) => fleet_table(v, now),
        }
    }

    /// The call's page from the (first) snapshot that has it.
    fn one_call(&self, call_id: &str, now: u64) -> Markup {
        match self {
            Source::Local(f) => one_call(f.as_ref(), call_id, now),
            Source::Fleet(v) => {
                let has = |f: &LiveCallsFile| {
                    let s = &f.snapshot;
                    s.calls.iter().chain(&s.ended).any(|c| c.call_id == call_id)
                };
                let f = v.iter().map(|s| &s.file).find(|f| has(f));
                one_call(f, call_id, now)
            }
        }
    }
}

/// `GET /api/live`: the snapshot (null without one); on a hub, every
/// sensor's, each with its name and the seconds since its last push.
pub async fn api(State(st): State<Shared>) -> Response {
    match source(&st).await {
        Source::Local(f) => Json(f).into_response(),
        Source::Fleet(v) => Json(v).into_response(),
    }
}

/// `GET /live`: the calls in progress.
pub async fn page(State(st): State<Shared>, Extension(ident): Extension<Identity>) -> Html<String> {
    let src = source(&st).await;
    let body = html! {
        h1 { "Live calls" }
        div #live-calls data-events="/live/events" { (src.table(now_unix())) }
    };
    Html(crate::pages::page("Live calls", &ident, body))
}

/// `GET /live/calls/{call_id}`: one call while it runs; a link to its page
/// once it is in the index. Audited like the call page (a view, once per
/// page, not per event).
pub async fn call_page(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    Path(call_id): Path<String>,
) -> Result<Html<String>, crate::handlers::AppError> {
    let detail = format!("live {}", call_id.chars().take(200).collect::<String>());
    crate::handlers::audit(&st, &ident, crate::audit::action::VIEW, None, &detail).await?;
    let src = source(&st).await;
    let indexed = indexed_id(&st, &call_id).await;
    let events = format!("/live/events?call={}", url_encode(&call_id));
    let body = html! {
        h1 { "Live call " code { (call_id) } }
        @if let Some(id) = indexed {
            p #indexed { "This call has ended and is in the index: " a href={"/calls/" (id)} { "open its page" } "." }
        }
        div #live-calls data-events=(events) { (src.one_call(&call_id, now_unix())) }
    };
    Ok(Html(crate::pages::page("Live call", &ident, body)))
}

/// The index id of the latest call with this Call-ID, if indexed.
async fn indexed_id(st: &Shared, call_id: &str) -> Option<i64> {
    let q = CallQuery {
        call_id: Some(call_id.to_string()),
        limit: 1,
        descending: true,
        ..Default::default()
    };
    let page = st.db.run(move |idx| idx.search(&q)).await.ok()?;
    page.rows.first().map(|r| r.id)
}

/// `GET /live/events[?call=ID]`: the page's fragment, re-rendered from the
/// latest snapshot once a second, as server-sent events.
pub async fn events(
    State(st): State<Shared>,
    Query(q): Query<EventsQuery>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let tick = tokio::time::interval(PUSH_EVERY);
    let stream = futures_util::stream::unfold((st, q, tick), |(st, q, mut tick)| async move {
        tick.tick().await;
        let src = source(&st).await;
        let now = now_unix();
        let html = match &q.call {
            Some(id) => src.one_call(id, now),
            None => src.table(now),
        };
        let ev = Event::default()
            .event("live")
            .data(sse_safe(html.into_string()));
        Some((Ok(ev), (st, q, tick)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// SSE cannot carry a carriage return (axum's `Event::data` panics on
/// one); in HTML `&#13;` is the same character. Line feeds are sent as
/// several `data:` lines, which the browser joins again.
fn sse_safe(html: String) -> String {
    if html.contains('\r') {
        html.replace('\r', "&#13;")
    } else {
        html
    }
}

/// What the snapshot is: its time, whether its sensor runs, the cap.
fn header(f: &LiveCallsFile, now: u64) -> Markup {
    let s = &f.snapshot;
    let age = now.saturating_sub(f.updated_unix);
    html! {
        p #live-summary data-seq=(s.seq) data-open=(s.open_calls) {
            strong { (s.open_calls) } " calls in progress"
            @if s.truncated { " (showing the newest " (s.calls.len()) ": a snapshot holds at most " (s.max_calls) ")" }
            " · snapshot " (ts(s.now_ns)) " UTC, #" (s.seq)
            " · loss, jitter and MOS over the last " (s.window_ticks) " s"
        }
        @if !f.running {
            p.muted #live-stopped { "The sensor stopped: no call is in progress." }
        } @else if age > STALE_SECONDS {
            p.error #live-stale { "This snapshot is " (age) " s old: the sensor has stopped writing." }
        }
    }
}

/// The calls table (and the calls that just ended).
pub fn table(file: Option<&LiveCallsFile>, now: u64) -> Markup {
    let Some(f) = file else {
        return html! {
            p.muted #live-none { "No live snapshot: no sensor (`voxtap run`) writes to this data directory." }
        };
    };
    html! {
        (header(f, now))
        table.calls #live-table {
            thead { (head_row(false)) }
            tbody { @for c in &f.snapshot.calls { (row(c, None)) } }
        }
        @if !f.snapshot.ended.is_empty() {
            h2 { "Ended in the last seconds" }
            table.calls #live-ended {
                thead { (head_row(false)) }
                tbody { @for c in &f.snapshot.ended { (row(c, None)) } }
            }
        }
    }
}

/// A hub's table: every sensor's calls, with a sensor column; a sensor
/// that stopped pushing is flagged until it is dropped.
pub fn fleet_table(v: &[SensorLive], now: u64) -> Markup {
    if v.is_empty() {
        return html! {
            p.muted #live-none { "No sensor is sending live calls: a sensor with a tunnel to this hub sends them once a second while it captures." }
        };
    }
    let open: u64 = v.iter().map(|s| s.file.snapshot.open_calls).sum();
    let any_ended = v.iter().any(|s| !s.file.snapshot.ended.is_empty());
    html! {
        p #live-summary data-open=(open) data-sensors=(v.len()) {
            strong { (open) } " calls in progress on " (v.len()) " sensors"
        }
        ul #live-sensors {
            @for s in v {
                @let snap = &s.file.snapshot;
                li data-sensor=(s.sensor) data-seq=(snap.seq) data-stale=(s.stale) {
                    strong { (s.sensor) } ": " (snap.open_calls) " in progress · snapshot #" (snap.seq) ", "
                    (format!("{:.0}", s.age_s)) " s ago"
                    @if snap.truncated { " (the newest " (snap.calls.len()) " shown)" }
                    @if !s.file.running { " · capture stopped" }
                    @else if now.saturating_sub(s.file.updated_unix) > STALE_SECONDS { " · its snapshot is " (now.saturating_sub(s.file.updated_unix)) " s old" }
                    @if s.stale { " " span.badge.s-failed { "stale: no update from the sensor" } }
                }
            }
        }
        table.calls #live-table {
            thead { (head_row(true)) }
            tbody { @for s in v { @for c in &s.file.snapshot.calls { (row(c, Some(s))) } } }
        }
        @if any_ended {
            h2 { "Ended in the last seconds" }
            table.calls #live-ended {
                thead { (head_row(true)) }
                tbody { @for s in v { @for c in &s.file.snapshot.ended { (row(c, Some(s))) } } }
            }
        }
    }
}

fn head_row(sensor: bool) -> Markup {
    html! {
        tr { @if sensor { th { "Sensor" } } th { "Call-ID" } th { "State" } th { "Start" } th { "Duration" } th { "From" } th { "To" } th { "Codec" } th { "RTP" } th { "Per direction: loss · jitter · MOS" } }
    }
}

fn row(c: &LiveCall, sensor: Option<&SensorLive>) -> Markup {
    let stale = sensor.is_some_and(|s| s.stale);
    html! {
        tr.live-call.stale[stale] data-call-id=(c.call_id) data-duration=(format!("{:.3}", c.duration_s)) data-rtp=(c.rtp_packets) {
            @if let Some(s) = sensor { td.sensor { (s.sensor) } }
            td { a href={"/live/calls/" (url_encode(&c.call_id))} { (c.call_id) } }
            td { (c.state) }
            td { (ts(c.start_ns)) }
            td.dur { (format!("{:.0} s", c.duration_s)) }
            td { (c.from) }
            td { (c.to) }
            td.codec { (c.codec) }
            td { (c.rtp_packets) }
            td { @for s in &c.streams { div { (direction(s)) } } }
        }
    }
}

fn direction(s: &LiveStream) -> String {
    let mos = s.mos.map_or("–".to_string(), |m| format!("{m:.2}"));
    format!(
        "{} → {}: {:.1} % · {:.1} ms · {mos}",
        s.src, s.dst, s.window_loss_pct, s.jitter_ms
    )
}

/// One call: its figures, streams and SIP so far.
pub fn one_call(file: Option<&LiveCallsFile>, call_id: &str, now: u64) -> Markup {
    let found = file.and_then(|f| {
        f.snapshot
            .calls
            .iter()
            .chain(&f.snapshot.ended)
            .find(|c| c.call_id == call_id)
    });
    let (Some(f), Some(c)) = (file, found) else {
        return html! { p.muted #live-none { "This call is not in the live snapshot (it has not started, or it ended a while ago: search the calls)." } };
    };
    html! {
        (header(f, now))
        dl.facts #live-call data-duration=(format!("{:.3}", c.duration_s)) data-ended=(c.ended) {
            dt { "State" } dd #live-state { (c.state) @if let Some(code) = c.status_code { " (" (code) ")" } @if c.ended { " · ended" } }
            dt { "From" } dd { (c.from) }
            dt { "To" } dd { (c.to) }
            dt { "Start" } dd { (ts(c.start_ns)) " UTC" }
            dt { "Duration" } dd { (format!("{:.1} s", c.duration_s)) }
            dt { "Codec" } dd { (c.codec) }
            dt { "Packets" } dd { (c.sip_messages) " SIP, " (c.rtp_packets) " RTP" }
        }
        (streams(&c.streams))
        h2 { "SIP so far" }
        @if c.sip_skipped > 0 { p.muted { (c.sip_skipped) " messages between the first and the latest are not shown here (the call page has them once the call ends)." } }
        div.ladderbox { (crate::ladder::call(&sip_rows(c), 0)) }
    }
}

fn streams(streams: &[LiveStream]) -> Markup {
    html! {
        table.calls #live-streams {
            thead { tr { th { "Source" } th { "Destination" } th { "SSRC" } th { "Codec" } th { "Packets" } th { "Lost (total)" } th { "Loss (window)" } th { "Jitter ms" } th { "MOS (window)" } } }
            tbody {
                @for s in streams {
                    tr { td { (s.src) } td { (s.dst) } td { (format!("0x{:08X}", s.ssrc)) } td { (s.codec) } td { (s.packets) } td { (s.lost) }
                        td { (format!("{:.1} %", s.window_loss_pct)) } td { (format!("{:.1}", s.jitter_ms)) }
                        td { (s.mos.map_or("–".to_string(), |m| format!("{m:.2}"))) } }
                }
            }
        }
    }
}

fn sip_rows(c: &LiveCall) -> Vec<voxtap_engine::index::SipRow> {
    c.sip
        .iter()
        .enumerate()
        .map(|(i, m)| voxtap_engine::index::SipRow {
            seq: i as u32,
            ts_ns: m.ts_ns,
            src: m.src.clone(),
            dst: m.dst.clone(),
            transport: String::new(),
            summary: m.summary.clone(),
            text: String::new(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use voxtap_engine::live_calls::{LiveSip, LiveSnapshot};

    /// Every value of the snapshot comes from the wire: escaped in the
    /// table, the call view and its ladder; no carriage return reaches SSE.
    #[test]
    fn hostile_values_are_escaped() {
        let evil = "<script>alert(1)</script>\r\"'&";
        let call = LiveCall {
            call_id: evil.into(),
            from: evil.into(),
            to: evil.into(),
            codec: evil.into(),
            state: evil.into(),
            streams: vec![LiveStream {
                src: evil.into(),
                codec: evil.into(),
                ..Default::default()
            }],
            sip: vec![LiveSip {
                summary: evil.into(),
                src: evil.into(),
                dst: "10.0.0.1:5060".into(),
                ts_ns: 1,
            }],
            ..Default::default()
        };
        let file = LiveCallsFile {
            updated_unix: now_unix(),
            running: true,
            snapshot: LiveSnapshot {
                seq: 1,
                open_calls: 1,
                calls: vec![call.clone()],
                ended: vec![call],
                ..Default::default()
            },
        };
        for html in [
            table(Some(&file), now_unix()).into_string(),
            one_call(Some(&file), evil, now_unix()).into_string(),
        ] {
            assert!(!html.contains("<script>"), "{html}");
            assert!(html.contains("&lt;script&gt;"), "{html}");
            let sent = sse_safe(html);
            assert!(!sent.contains('\r'));
            assert!(sent.contains("&#13;"));
            // The events route builds its event from it without panicking.
            let _ = Event::default().event("live").data(sent);
        }
        // The link to the call's page carries the Call-ID URL-encoded.
        let html = table(Some(&file), now_unix()).into_string();
        assert!(html.contains("/live/calls/%3Cscript%3E"), "{html}");
    }
}
