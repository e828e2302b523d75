//! Server-rendered HTML (maud escapes every interpolated value).

use axum::http::StatusCode;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use voxtap_engine::index::{CallDetail, CallPage, CallRow, SipRow, StreamRow};
use voxtap_engine::output::format_ts;

use crate::audit::Entry as AuditEntry;
use crate::files::Extras;
use crate::handlers::{Filters, FsUsage};
use crate::jobs::{JobSnapshot, JobState};
use crate::text::{ts, uptime, url_encode};
use crate::{AppState, Identity, Role};

fn dur(ms: u64) -> String {
    let s = ms / 1000;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

fn bytes(n: u64) -> String {
    crate::text::bytes(n as f64)
}

fn layout(title: &str, ident: Option<&Identity>, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · voxtap" }
                link rel="stylesheet" href="/static/style.css";
                script src="/static/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/calls" { "voxtap" }
                    @if let Some(id) = ident {
                        nav {
                            a href="/calls" { "Calls" }
                            a href="/live" { "Live" }
                            a href="/dashboards" { "Dashboards" }
                            a href="/registrations" { "Registrations" }
                            a href="/media" { "Media only" }
                            @if id.role >= Role::Operator { a href="/import" { "Import" } }
                            a href="/sensor" { "Sensor" }
                            a href="/alerts" { "Alerts" }
                            @if id.hub { a href="/sensors" { "Sensors" } }
                            @if id.role >= Role::Operator { a href="/hosts" { "Hosts" } }
                            @if id.role >= Role::Admin {
                                a href="/admin/users" { "Users" }
                                a href="/admin/audit" { "Audit" }
                            }
                        }
                        div.who {
                            span title={"role: " (id.role.as_str())} { (id.user) }
                            @if let Some(csrf) = &id.csrf {
                                form method="post" action="/logout" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button.link type="submit" { "Log out" }
                                }
                                form method="post" action="/logout/everywhere" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button.link type="submit" title="end every session of this user, in every browser" { "everywhere" }
                                }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
    .into_string()
}

/// A logged-in page in the common layout (for modules outside this one).
pub fn page(title: &str, ident: &Identity, body: Markup) -> String {
    layout(title, Some(ident), body)
}

pub fn error_page(status: StatusCode, msg: &str) -> String {
    layout(
        status.canonical_reason().unwrap_or("Error"),
        None,
        html! {
            h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
            p.error { (msg) }
            p { a href="/calls" { "Back to the calls" } }
        },
    )
}

pub fn login(csrf: &str, next: &str, error: Option<&str>, _no_auth: bool) -> String {
    layout(
        "Log in",
        None,
        html! {
            form.login method="post" action="/login" {
                h1 { "Log in" }
                @if let Some(e) = error { p.error id="login-error" { (e) } }
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="next" value=(next);
                label { "User" input name="user" autocomplete="username" required autofocus; }
                label { "Password" input name="password" type="password" autocomplete="current-password" required; }
                button type="submit" { "Log in" }
            }
        },
    )
}

const STATES: &[&str] = &[
    "answered",
    "busy",
    "declined",
    "cancelled",
    "no_answer",
    "failed",
    "timed_out",
    "in_progress",
    "ringing",
    "completed",
];

pub(crate) fn query_string(f: &Filters, page: Option<u64>, sort: Option<(&str, &str)>) -> String {
    let mut parts = Vec::new();
    let mut add = |k: &str, v: &Option<String>| {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            parts.push(format!("{k}={}", url_encode(v)));
        }
    };
    add("from", &f.from);
    add("to", &f.to);
    add("party", &f.party);
    add("call_id", &f.call_id);
    add("ip", &f.ip);
    add("state", &f.state);
    add("mos_min", &f.mos_min);
    add("mos_max", &f.mos_max);
    add("dur_min", &f.dur_min);
    add("dur_max", &f.dur_max);
    add("loss_min", &f.loss_min);
    add("per_page", &f.per_page);
    add("sensor", &f.sensor);
    add("code", &f.code);
    add("trunk", &f.trunk);
    add("codec", &f.codec);
    add("method", &f.method);
    match sort {
        Some((s, d)) => {
            parts.push(format!("sort={s}"));
            parts.push(format!("dir={d}"));
        }
        None => {
            add("sort", &f.sort);
            add("dir", &f.dir);
        }
    }
    if let Some(p) = page {
        parts.push(format!("page={p}"));
    }
    parts.join("&")
}

/// The user's saved searches as links, and a form saving this one.
fn saved_searches(id: &Identity, f: &Filters, saved: &[(String, String)]) -> Markup {
    let csrf = id.csrf.clone().unwrap_or_default();
    html! {
        div.saved id="saved" {
            "Saved searches: "
            @if saved.is_empty() { span.muted { "none" } }
            @for (name, q) in saved {
                a.saved-search href={"/calls?" (q)} data-name=(name) { (name) }
                " "
            }
            form.inline method="post" action="/calls/saved" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="query" value=(query_string(f, None, None));
                input type="text" name="name" placeholder="name this search" maxlength="80" required;
                button type="submit" { "Save" }
            }
        }
    }
}

fn state_badge(state: &str, code: Option<u16>) -> Markup {
    html! {
        span class={"badge s-" (state)} {
            (state.replace('_', " "))
            @if let Some(c) = code { " " (c) }
        }
    }
}

pub fn call_rows(page: &CallPage, hub: bool) -> String {
    rows_markup(&page.rows, hub).into_string()
}

/// The list's rows; a hub's have their sensor in the second column.
fn rows_markup(rows: &[CallRow], hub: bool) -> Markup {
    html! {
        @for c in rows {
            tr data-id=(c.id) {
                td.nowrap { a href={"/calls/" (c.id)} { (ts(c.start_ns)) } }
                @if hub { td.sensor { (c.sensor.as_deref().unwrap_or("")) } }
                td { (c.from_user) }
                td { (c.to_user) }
                td { (state_badge(&c.state, c.status_code)) }
                td.num { (dur(c.duration_ms)) }
                td.num { @if let Some(m) = c.mos { (format!("{m:.2}")) } @else { span.muted { "–" } } }
                td.num { (c.stream_count) }
                td.callid title=(c.call_id) { a href={"/calls/" (c.id)} { (c.call_id) } }
            }
        }
        @if rows.is_empty() {
            tr { td colspan=(if hub { "9" } else { "8" }) .empty { "No calls match." } }
        }
    }
}

pub fn calls(
    id: &Identity,
    f: &Filters,
    page: Option<&CallPage>,
    error: Option<&str>,
    saved: &[(String, String)],
) -> String {
    let per_page: u64 = f
        .per_page
        .as_deref()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50)
        .clamp(1, 500);
    let cur: u64 = f
        .page
        .as_deref()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1);
    let first = (cur - 1).saturating_mul(per_page);
    let sort = f.sort.as_deref().unwrap_or("start");
    let dir = f.dir.as_deref().unwrap_or("desc");
    let body = html! {
        (filter_form(f, sort, dir, id.hub))
        (saved_searches(id, f, saved))
        @if let Some(e) = error { p.error { (e) } }
        @if let Some(p) = page {
            div.listhead {
                span id="total" {
                    (p.total) @if p.total_capped { "+" } " calls"
                    @if p.total > 0 {
                        " · showing " (first + 1) "–" (first + p.rows.len() as u64)
                    }
                }
                label.live { input type="checkbox" id="live"; " live refresh (5 s)" }
                @let qs = query_string(f, None, None);
                span.exports {
                    a id="permalink" href={"/calls?" (qs)} title="this search's address: bookmark or share it" { "Link to this search" }
                    " · CDR export: "
                    a id="export-csv" href={"/calls/export/calls.csv?" (qs)} download { "CSV" }
                    " "
                    a id="export-json" href={"/calls/export/calls.json?" (qs)} download { "JSON" }
                }
            }
            @let link = |key: &str, label: &str| sort_link(f, (sort, dir), key, label);
            table.calls id="calls" data-query=(query_string(f, Some(cur), None)) {
                thead { tr {
                    th { (link("start", "Start (UTC)")) }
                    @if id.hub { th { "Sensor" } }
                    th { (link("from", "From")) }
                    th { (link("to", "To")) }
                    th { (link("state", "State")) }
                    th.num { (link("duration", "Duration")) }
                    th.num { (link("mos", "MOS")) }
                    th.num { "Streams" }
                    th { "Call-ID" }
                } }
                tbody id="rows" { (rows_markup(&p.rows, id.hub)) }
            }
            nav.pager {
                @if cur > 1 { a href={"/calls?" (query_string(f, Some(cur - 1), None))} { "← Newer" } }
                span { "Page " (cur) }
                @if (p.rows.len() as u64) == per_page && cur.saturating_mul(per_page) < p.total.max(cur.saturating_mul(per_page).saturating_add(1)) {
                    a href={"/calls?" (query_string(f, Some(cur + 1), None))} { "Older →" }
                }
            }
        }
    };
    layout("Calls", Some(id), body)
}

/// A column heading that sorts by `key`, descending first, and flips the
/// direction when it already sorts by it.
fn sort_link(f: &Filters, (sort, dir): (&str, &str), key: &str, label: &str) -> Markup {
    let next_dir = if sort == key && dir == "desc" {
        "asc"
    } else {
        "desc"
    };
    let arrow = if sort == key {
        if dir == "desc" { " ▼" } else { " ▲" }
    } else {
        ""
    };
    html! { a href={"/calls?" (query_string(f, None, Some((key, next_dir))))} { (label) (arrow) } }
}

fn filter_form(f: &Filters, sort: &str, dir: &str, hub: bool) -> Markup {
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    html! {
        form.filters method="get" action="/calls" {
            label { "From" input type="datetime-local" step="1" name="from" value=(v(&f.from)); }
            label { "To" input type="datetime-local" step="1" name="to" value=(v(&f.to)); }
            label { "Number / URI" input name="party" placeholder="4930123* or sip:bob@x" value=(v(&f.party)); }
            label { "Call-ID" input name="call_id" value=(v(&f.call_id)); }
            label { "IP" input name="ip" placeholder="10.0.0.1" value=(v(&f.ip)); }
            label { "State"
                select name="state" {
                    option value="" { "any" }
                    @for s in STATES {
                        option value=(s) selected[f.state.as_deref() == Some(*s)] { (s.replace('_', " ")) }
                    }
                }
            }
            label.small { "MOS ≥" input name="mos_min" inputmode="decimal" value=(v(&f.mos_min)); }
            label.small { "MOS ≤" input name="mos_max" inputmode="decimal" value=(v(&f.mos_max)); }
            label.small { "Dur. ≥ s" input name="dur_min" inputmode="numeric" value=(v(&f.dur_min)); }
            label.small { "Dur. ≤ s" input name="dur_max" inputmode="numeric" value=(v(&f.dur_max)); }
            label.small title="RTP loss of the worse direction" { "Loss ≥ %" input name="loss_min" inputmode="decimal" value=(v(&f.loss_min)); }
            @if hub {
                label.small { "Code" input name="code" inputmode="numeric" placeholder="486" value=(v(&f.code)); }
                label { "Sensor" input name="sensor" value=(v(&f.sensor)); }
            }
            label.small { "Trunk" input name="trunk" placeholder="- = none" value=(v(&f.trunk)); }
            label.small { "Codec" input name="codec" value=(v(&f.codec)); }
            @if let Some(m) = f.method.as_deref().filter(|m| !m.is_empty()) {
                input type="hidden" name="method" value=(m);
            }
            @if let Some(pp) = f.per_page.as_deref().filter(|m| !m.is_empty()) {
                input type="hidden" name="per_page" value=(pp);
            }
            input type="hidden" name="sort" value=(sort);
            input type="hidden" name="dir" value=(dir);
            div.actions {
                button type="submit" id="search" { "Search" }
                a.button.secondary href="/calls" { "Reset" }
            }
        }
    }
}

/// SIP messages per page of a call: a call with thousands of messages
/// (or a flood of INFOs) pages its ladder and texts together.
pub const MSG_PAGE: usize = 200;
/// Bytes of a message shown on the page; a longer one links to its full
/// text. Real messages with SDP stay well under it.
pub const MSG_PREVIEW: usize = 8 * 1024;

/// The `?msgs=` page that holds message `seq` (0-based), as a query suffix
/// for links ("" for the first page).
pub fn msg_page_query(seq: usize) -> String {
    match seq / MSG_PAGE {
        0 => String::new(),
        p => format!("?msgs={}", p + 1),
    }
}

pub fn call(
    id: &Identity,
    d: &CallDetail,
    extras: &Extras,
    series: &crate::quality::Series,
    legs: &[CallDetail],
    msgs_page: usize,
) -> String {
    let c = &d.call;
    let pages = d.sip.len().div_ceil(MSG_PAGE).max(1);
    let page = msgs_page.clamp(1, pages);
    let first = (page - 1) * MSG_PAGE;
    let shown = &d.sip[first..d.sip.len().min(first + MSG_PAGE)];
    let listen = id.role >= Role::Listener;
    let body = html! {
        (call_head(c))
        (downloads(c, extras, listen))
        @if listen && !extras.wavs.is_empty() { (audio(c.id, &extras.wavs)) }
        section {
            h2 { "SIP ladder " span.muted { "(" (d.sip.len()) " messages; click an arrow for the message)" } }
            @if pages > 1 { (msg_pager(c.id, page, pages, d.sip.len())) }
            div.ladderbox { (crate::ladder::call(shown, first)) }
        }
        (streams(&d.streams, !extras.wavs.is_empty()))
        @if series.streams.iter().any(Option::is_some) { (quality(&d.streams, series)) }
        @if !d.dtmf.is_empty() {
            section { h2 { "DTMF" }
                p { @for x in &d.dtmf { span.badge title=(x.source) { (x.digit) } " " } }
            }
        }
        @if !legs.is_empty() {
            (crate::legs_view::section(c.id, legs))
        } @else if !d.legs.is_empty() {
            section { h2 { "Other legs" }
                ul { @for l in &d.legs { li { a href={"/calls/" (l.other_call)} { "call " (l.other_call) } " (" (l.method) ")" @if let Some(w) = &l.detail { ": " span.evidence { (w) } } } } }
            }
        }
        @if d.fax_ns.is_some() { (crate::media_view::fax(d)) }
        (messages(c.id, shown, first))
        @if pages > 1 { (msg_pager(c.id, page, pages, d.sip.len())) }
    };
    layout(&format!("Call {}", c.call_id), Some(id), body)
}

fn msg_pager(call: i64, page: usize, pages: usize, total: usize) -> Markup {
    let first = (page - 1) * MSG_PAGE;
    html! {
        nav.pager.msgpager {
            @if page > 1 { a href={"/calls/" (call) "?msgs=" (page - 1)} { "← Earlier messages" } }
            span { "Messages " (first + 1) "–" (total.min(first + MSG_PAGE)) " of " (total) " (page " (page) " of " (pages) ")" }
            @if page < pages { a href={"/calls/" (call) "?msgs=" (page + 1)} { "Later messages →" } }
        }
    }
}

fn call_head(c: &CallRow) -> Markup {
    html! {
        div.callhead {
            h1 { (if c.from_user.is_empty() { "?" } else { &c.from_user }) " → " (if c.to_user.is_empty() { "?" } else { &c.to_user }) " " (state_badge(&c.state, c.status_code)) }
            dl.facts {
                @if let Some(s) = &c.sensor { dt { "Sensor" } dd id="call-sensor" { (s) } }
                dt { "Start" } dd { (format_ts(c.start_ns)) }
                dt { "Duration" } dd { (dur(c.duration_ms)) @if let Some(t) = c.talk_ms { " (talk " (dur(t)) ")" } }
                dt { "Method" } dd { (c.method) }
                dt { "End reason" } dd { (c.end_reason.as_deref().unwrap_or("–")) }
                dt { "Call-ID" } dd.mono { (c.call_id) }
                dt { "From" } dd.mono { (c.from_uri) }
                dt { "To" } dd.mono { (c.to_uri) }
                dt { "Request URI" } dd.mono { (c.request_uri) }
                @if !c.outer_path.is_empty() {
                    dt { "Outer path" } dd.mono title="Encapsulations its SIP came in, outermost first" { (c.outer_path) }
                }
                dt { "Packets" } dd { (c.sip_packets) " SIP, " (c.rtp_packets) " RTP, " (c.rtcp_packets) " RTCP" }
                dt { "MOS" } dd { @if let Some(m) = c.mos { (format!("{m:.2}")) } @else { "not computed" } }
                @if c.sip_truncated > 0 {
                    dt { "SIP text" } dd #sip-truncated { (c.sip_truncated) " SIP messages over this call's SIP budget: their text is not shown here nor in sip.txt; the call PCAP has them all" }
                }
                @if c.sip_oversized > 0 {
                    dt { "Oversized SIP" } dd #sip-oversized { (c.sip_oversized) " SIP messages past the limits a SIP stack takes (thousands of headers or over 64 KiB of headers)" }
                }
                @if !c.encrypted_signalling.is_empty() {
                    dt { "Encrypted signalling" } dd.encrypted { (c.encrypted_signalling) }
                }
            }
        }
    }
}

/// The download buttons; the media ones only for a role that may listen.
fn downloads(c: &CallRow, extras: &Extras, listen: bool) -> Markup {
    let base = format!("/calls/{}", c.id);
    html! {
        section.downloads {
            h2 { "Downloads" }
            @if c.folder.is_some() {
                @if listen { a.button id="dl-pcap" href={(base) "/download/pcap"} { "Call PCAP" } }
                @if listen && extras.decrypted_pcap { a.button id="dl-decrypted" href={(base) "/download/decrypted"} { "Decrypted PCAP" } }
                a.button id="dl-sip" href={(base) "/download/sip"} { "sip.txt" }
                a.button id="dl-report" href={(base) "/download/report"} { "JSON report" }
                @if listen {
                    a.button id="dl-zip" href={(base) "/download/zip"} { "Everything (.zip)" }
                    @for w in &extras.wavs {
                        a.button.secondary href={(base) "/files/" (url_encode(w)) "?download=1"} download { (w) }
                    }
                } @else {
                    p.muted { "Your role (viewer) shows signalling only; audio and PCAPs need the listener role." }
                }
            } @else {
                a.button id="dl-report" href={(base) "/download/report"} { "JSON report" }
                p.muted { "This call was imported without its files (CSV only)." }
            }
        }
    }
}

fn audio(call: i64, wavs: &[String]) -> Markup {
    let base = format!("/calls/{call}");
    html! {
        section.audio id="audio" {
            h2 { "Audio" }
            @for w in wavs {
                figure {
                    figcaption { (w) }
                    img.waveform src={(base) "/waveform/" (url_encode(w))} alt={"waveform of " (w)} width="800";
                    audio controls preload="metadata" src={(base) "/files/" (url_encode(w))} {}
                }
            }
        }
    }
}

/// Whether a stream's audio is in the call's WAVs, and why not when it is
/// not: the index knows whether this build decodes the codec; `has_audio`
/// whether the media step wrote audio for the call.
fn audio_cell(s: &StreamRow, has_audio: bool) -> Markup {
    html! {
        @match (s.audio_decodable, has_audio) {
            (Some(true), true) => { span class="badge s-answered" { "decoded" } }
            (Some(true), false) => { span.muted { "decodable; no audio written (imported without audio)" } }
            (Some(false), _) => {
                span class="badge s-failed" { "not decoded" } " "
                span.muted { (s.audio_reason.as_deref().unwrap_or("")) }
            }
            (None, _) => {
                @if let Some(why) = &s.audio_reason {
                    span.muted { (why) "; the media step guesses the codec from the packets (quality.json)" }
                } @else { span.muted { "–" } }
            }
        }
    }
}

fn streams(streams: &[StreamRow], has_audio: bool) -> Markup {
    html! {
        section {
            h2 { "Streams" }
            @if streams.is_empty() { p.muted { "No RTP streams." } } @else {
                table.streams {
                    thead { tr {
                        th { "SSRC" } th { "From" } th { "To" } th { "Codec" } th { "Audio" }
                        th.num { "Packets" } th.num { "Lost" } th.num { "Jitter ms (mean/max)" }
                        th.num { "Max Δ ms" } th.num { "RTCP" } th.num { "MOS" }
                    } }
                    tbody {
                        @for s in streams {
                            tr {
                                td.mono { (format!("0x{:08X}", s.ssrc)) }
                                td.mono { (s.src) } td.mono { (s.dst) }
                                td { (s.codec) " (" (s.payload_type) ")" }
                                td.audio { (audio_cell(s, has_audio)) }
                                td.num { (s.packets) }
                                td.num { (s.lost) @if s.expected > 0 { " (" (format!("{:.1}", s.lost.max(0) as f64 * 100.0 / s.expected as f64)) "%)" } }
                                td.num { (format!("{:.2} / {:.2}", s.jitter_ms, s.max_jitter_ms)) }
                                td.num { (format!("{:.1}", s.max_delta_ms)) }
                                td.num { (s.rtcp_reports) }
                                td.num { @if let Some(m) = s.mos { (format!("{m:.2}")) } @else { "–" } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn quality(streams: &[StreamRow], series: &crate::quality::Series) -> Markup {
    html! {
        section.quality id="quality" {
            h2 { "Quality over time " span.muted { "(per " (series.interval_ns / 1_000_000_000) " s, from the call PCAP)" } }
            @for (s, t) in streams.iter().zip(&series.streams) {
                @if let Some(t) = t {
                    figure.chart {
                        figcaption.mono { (format!("0x{:08X}", s.ssrc)) " " (s.src) " → " (s.dst) " · " (s.codec) }
                        (PreEscaped(crate::charts::timeline_svg(&format!("0x{:08X}", s.ssrc), t, series.interval_ns as f64 / 1e9)))
                    }
                }
            }
        }
    }
}

/// The page's messages, each the target of its arrow in the ladder; a
/// long one is cut at [`MSG_PREVIEW`] bytes with a link to its full text.
fn messages(call: i64, sip: &[SipRow], first: usize) -> Markup {
    html! {
        section.messages {
            h2 { "SIP messages" }
            @for (i, m) in sip.iter().enumerate() {
                @let seq = first + i;
                div.sipmsg id={"msg-" (seq)} {
                    div.meta { "#" (seq + 1) " · " (format_ts(m.ts_ns)) " · " (m.transport) " " (m.src) " → " (m.dst) }
                    @match preview(&m.text) {
                        None => pre { (m.text) },
                        Some(cut) => {
                            pre { (cut) "…" }
                            p.cut { a href={"/calls/" (call) "/sip/" (seq)} { "Full message (" (bytes(m.text.len() as u64)) ")" } }
                        }
                    }
                }
            }
        }
    }
}

/// The first [`MSG_PREVIEW`] bytes of `text` (at a character boundary) if
/// it is longer.
fn preview(text: &str) -> Option<&str> {
    if text.len() <= MSG_PREVIEW {
        return None;
    }
    let mut end = MSG_PREVIEW;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(&text[..end])
}

/// The sensor page's live part (charts and status cards) and the URL that
/// re-renders it.
pub struct LiveStatus {
    pub refresh: String,
    pub html: Markup,
}

pub fn sensor(
    id: &Identity,
    st: &AppState,
    calls: u64,
    usage: u64,
    fs: Option<&FsUsage>,
    log: Option<&[AuditEntry]>,
    live: &LiveStatus,
) -> String {
    let up = st.started.elapsed().as_secs();
    let body = html! {
        h1 { "Sensor" }
        div id="statuses" data-refresh=(live.refresh) {
            (live.html)
        }
        label.live { input type="checkbox" id="status-live" checked; " auto-refresh (2 s)" }
        h2 { "Web server" }
        dl.facts {
            dt { "Version" } dd { "voxtap " (env!("CARGO_PKG_VERSION")) }
            dt { "Uptime" } dd { (uptime(up)) }
            dt { "Calls indexed" } dd id="calls-indexed" { (calls) }
            dt { "Data directory" } dd.mono { (st.data.display()) }
            dt { "Store usage" } dd { (bytes(usage)) }
            @if let Some(fs) = fs {
                dt { "Disk" } dd {
                    (bytes(fs.free)) " free of " (bytes(fs.total))
                    meter min="0" max=(fs.total) value=(fs.total - fs.free) {}
                }
            }
            dt { "Login" } dd { @if st.no_auth.is_some() { strong.error { "disabled (--insecure-no-auth)" } } @else { (st.users.len()) " user(s)" } }
            dt { "TLS" } dd { @if st.secure_cookies { "on" } @else { "off" } }
        }
        p { a href="/metrics" { "Prometheus metrics" } " · " a href="/healthz" { "health" } }
        @if let Some(log) = log {
            h2 { "Recent access " span.muted { a href="/admin/audit" { "(the audit log)" } } }
            (audit_table(log))
        }
    };
    layout("Sensor", Some(id), body)
}

/// Audit entries, newest first.
pub fn audit_table(log: &[AuditEntry]) -> Markup {
    html! {
        table.audit {
            thead { tr { th { "Time (UTC)" } th { "User" } th { "From" } th { "Action" } th { "Call" } th { "Detail" } } }
            tbody {
                @for e in log {
                    tr {
                        td.nowrap { (ts(e.ts_ns)) } td { (e.user) } td { (e.remote) } td { (e.action) }
                        td { @if let Some(c) = e.call { a href={"/calls/" (c)} { (c) } " " a.muted href={"/admin/audit?call=" (c)} title="every access to this call" { "(log)" } } }
                        td { (e.detail) }
                    }
                }
                @if log.is_empty() { tr { td colspan="6" .empty { "No entries." } } }
            }
        }
    }
}

fn job_row(j: &JobSnapshot) -> Markup {
    html! {
        tr {
            td { a href={"/import/" (j.id)} { (j.id) } }
            td { (j.files.join(", ")) }
            td { @if j.queued { "queued" } @else { (format!("{:?}", j.state).to_lowercase()) } }
            td.num { (j.calls) }
        }
    }
}

pub fn import(id: &Identity, jobs: &[JobSnapshot], error: Option<&str>) -> String {
    let body = html! {
        h1 { "Import captures" }
        @if let Some(e) = error { p.error id="import-error" { (e) } }
        form.upload method="post" action="/import" enctype="multipart/form-data" {
            @if let Some(csrf) = &id.csrf { input type="hidden" name="csrf" value=(csrf); }
            label { "pcap or pcapng files (several are merged by time)"
                input type="file" name="files" multiple required accept=".pcap,.pcapng,.cap";
            }
            button type="submit" { "Upload and import" }
        }
        @if !jobs.is_empty() {
            h2 { "Jobs" }
            table { thead { tr { th { "Job" } th { "Files" } th { "State" } th.num { "Calls" } } }
                tbody { @for j in jobs { (job_row(j)) } } }
        }
    };
    layout("Import", Some(id), body)
}

pub fn job(id: &Identity, j: &JobSnapshot) -> String {
    let running = j.state == JobState::Running;
    let body = html! {
        h1 { "Import " (j.id) }
        div id="job" data-job=(j.id) data-state=(format!("{:?}", j.state).to_lowercase()) {
            p { "Files: " (j.files.join(", ")) }
            progress id="job-progress" max="100" value=(format!("{:.0}", j.percent)) {}
            p id="job-state" {
                @match j.state {
                    JobState::Running if j.queued => { "Queued: waiting for a running import to finish…" }
                    JobState::Running => { "Importing… " (format!("{:.0}", j.percent)) "% of " (bytes(j.total_bytes)) }
                    JobState::Done => { "Done: " (j.calls) " calls indexed. " a href="/calls" { "See the calls" } }
                    JobState::Failed => { span.error { (j.message) } }
                }
            }
            @if !running && !j.message.is_empty() && j.state == JobState::Done { p.muted { (j.message) } }
        }
    };
    layout("Import job", Some(id), body)
}
