//! "Media without signalling": RTP that no SIP claimed (SIP encrypted
//! without keys, or a media capture whose SIP is not there), with each
//! stream's statistics, quality, audio and pcap from its folder.

use axum::body::Body;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use voxtap_engine::index::{CallDetail, MediaStreamRow};

use crate::handlers::AppError;
use crate::text::{ts, url_encode};
use crate::{Identity, Shared, files, pages};

type R<T> = Result<T, AppError>;

const PER_PAGE: u32 = 100;

#[derive(Debug, Default, Deserialize)]
pub struct Paging {
    pub page: Option<u64>,
}

/// The WAV files of the stream's SSRC in its folder.
fn wavs(st: &Shared, m: &MediaStreamRow) -> Vec<String> {
    let Some(dir) = m
        .folder
        .as_deref()
        .and_then(|f| files::resolve(&st.data, f).ok())
    else {
        return Vec::new();
    };
    let prefix = format!("stream-{:08X}-", m.ssrc);
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(&prefix) && n.ends_with(".wav"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `GET /media`: on a hub every sensor's streams from the central index
/// (with a Sensor column; their audio and pcap stay on the sensor).
pub async fn page(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    Query(p): Query<Paging>,
) -> R<Html<String>> {
    let page = p.page.unwrap_or(1).max(1);
    let offset = (page - 1) * u64::from(PER_PAGE);
    let rows: Vec<Listed> = match &st.hub {
        Some(hub) => hub
            .media_streams(PER_PAGE, offset)
            .await?
            .into_iter()
            .map(|m| (m.sensor, m.row, Vec::new()))
            .collect(),
        None => st
            .db
            .run(move |idx| idx.media_streams(PER_PAGE, offset))
            .await?
            .into_iter()
            .map(|m| {
                let w = wavs(&st, &m);
                (None, m, w)
            })
            .collect(),
    };
    let body = html! {
        h1 { "Media without signalling" }
        p.muted { "RTP found by its headers that no SDP of any call announced: the SIP was encrypted, or is in another capture (import both files together to join them to their calls)." }
        (table(&rows, st.hub.is_some()))
        nav.pager {
            @if page > 1 { a href={"/media?page=" (page - 1)} { "← Newer" } }
            span { "Page " (page) }
            @if rows.len() as u32 == PER_PAGE { a href={"/media?page=" (page + 1)} { "Older →" } }
        }
    };
    Ok(Html(pages::page("Media without signalling", &ident, body)))
}

/// A listed stream: its sensor (on a hub), the row, its WAV files.
type Listed = (Option<String>, MediaStreamRow, Vec<String>);

/// `hub`: a Sensor column first, and no links (the files are the
/// sensor's, not reachable through the hub yet).
fn table(rows: &[Listed], hub: bool) -> Markup {
    html! {
        @if rows.is_empty() { p.muted id="no-media" { "No media without signalling." } } @else {
            table.streams id="media" {
                thead { tr {
                    @if hub { th { "Sensor" } }
                    th { "First (UTC)" } th { "SSRC" } th { "From" } th { "To" } th { "Codec" }
                    th.num { "Packets" } th.num { "Lost" } th.num { "Jitter ms (mean/max)" }
                    th.num { "Max Δ ms" } th.num { "MOS" } th { "Audio and capture" }
                } }
                tbody {
                    @for (sensor, m, wavs) in rows {
                        @let base = format!("/media/{}/files/", m.id);
                        tr {
                            @if hub { td.sensor { (sensor.as_deref().unwrap_or("")) } }
                            td { @if let Some(t) = m.first_ns { (ts(t)) } }
                            td.mono { (format!("0x{:08X}", m.ssrc)) }
                            td.mono { (m.src) } td.mono { (m.dst) }
                            td { (m.codec) " (" (m.payload_type) ")" }
                            td.num { (m.packets) }
                            td.num { (m.lost) }
                            td.num { (format!("{:.2} / {:.2}", m.jitter_ms, m.max_jitter_ms)) }
                            td.num { (format!("{:.1}", m.max_delta_ms)) }
                            td.num { @if let Some(x) = m.mos { (format!("{x:.2}")) } @else { "–" } }
                            td {
                                @for w in wavs {
                                    audio controls preload="none" src={(base) (url_encode(w))} {}
                                }
                                @if m.folder.is_some() && !hub { a href={(base) "call.pcap"} { "pcap" } }
                                @if hub { span.muted { "on the sensor" } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /media/{id}/files/{name}`: a file of the stream's folder.
pub async fn file(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    Path((id, name)): Path<(i64, String)>,
) -> R<Response> {
    files::check_name(&name)?;
    let m = st
        .db
        .run(move |idx| idx.media_stream(id))
        .await?
        .ok_or_else(|| AppError::new(StatusCode::NOT_FOUND, "no such stream"))?;
    let folder = m
        .folder
        .ok_or_else(|| AppError::new(StatusCode::NOT_FOUND, "no files for this stream"))?;
    let path = files::in_folder(&st.data, &folder, &name)?;
    // Recorded before it is served, as for a call's files.
    let action = if name.to_ascii_lowercase().ends_with(".wav") {
        "audio"
    } else {
        "download"
    };
    crate::handlers::audit(&st, &ident, action, None, &format!("media {id}/{name}")).await?;
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|_| AppError::new(StatusCode::NOT_FOUND, "no such file"))?;
    let wav = name.to_ascii_lowercase().ends_with(".wav");
    let ct = if wav {
        "audio/wav"
    } else if name.ends_with(".pcap") {
        "application/vnd.tcpdump.pcap"
    } else {
        "application/octet-stream"
    };
    let mut resp = Response::new(Body::from(bytes));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    if !wav {
        let safe: String = format!("media-{id}-{name}")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            .collect();
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    st.metrics
        .downloads
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(resp.into_response())
}

/// The call turned into T.38 fax: when, and its UDPTL streams.
pub fn fax(d: &CallDetail) -> Markup {
    html! {
        section.fax id="fax" {
            h2 { "T.38 fax " span.muted { "(since " (d.fax_ns.map(voxtap_engine::output::format_ts).unwrap_or_default()) ")" } }
            table.streams {
                thead { tr { th { "From" } th { "To" } th.num { "UDPTL packets" } th.num { "Sequence gaps" } th.num { "Duration s" } } }
                tbody {
                    @for f in &d.fax {
                        tr {
                            td.mono { (f.src) } td.mono { (f.dst) }
                            td.num { (f.packets) }
                            td.num { (f.lost) }
                            td.num { (format!("{:.1}", f.last_ns.saturating_sub(f.first_ns) as f64 / 1e9)) }
                        }
                    }
                }
            }
        }
    }
}
