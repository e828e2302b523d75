//! CDR export: every call a search matches (all pages), as CSV or JSON,
//! streamed from a read of the index on its own connection: rows go out in
//! chunks as SQLite yields them, never the whole result in memory. On a
//! hub, from the central index through a cursor (see `hub::export`).

use std::io::Write as _;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;
use voxtap_engine::index::{CallRow, Index};
use voxtap_engine::output::format_ts;

use crate::handlers::{AppError, Filters, audit};
use crate::{Identity, Shared};

/// Rows per chunk sent to the client.
const CHUNK_ROWS: usize = 256;

/// The CSV columns, in the order [`csv_row`] writes them.
pub const CSV_HEADER: &str = "id,call_id,method,start,end,duration_s,from_user,to_user,from_uri,to_uri,\
request_uri,state,status_code,end_reason,ringing,answer,talk_s,mos,sip_packets,rtp_packets,rtcp_packets,\
streams,encrypted_signalling,outer_path\n";

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Csv,
    Json,
}

/// The body's chunks: the export's rows go out through this channel.
pub(crate) type ChunkTx = mpsc::Sender<Result<Bytes, std::io::Error>>;

/// An export's bytes, cut into chunks of [`CHUNK_ROWS`] rows. A hub's
/// export has one more CSV column, `sensor`, last (so a sensor's columns
/// keep their places); its JSON rows carry `sensor` anyway.
pub(crate) struct Chunks {
    fmt: Format,
    sensor: bool,
    buf: Vec<u8>,
    n: usize,
}

impl Chunks {
    pub(crate) fn new(fmt: Format, sensor: bool) -> Chunks {
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        match fmt {
            Format::Csv if sensor => {
                buf.extend_from_slice(CSV_HEADER.trim_end().as_bytes());
                buf.extend_from_slice(b",sensor\n");
            }
            Format::Csv => buf.extend_from_slice(CSV_HEADER.as_bytes()),
            Format::Json => buf.push(b'['),
        }
        Chunks {
            fmt,
            sensor,
            buf,
            n: 0,
        }
    }

    /// Adds a row; a chunk once [`CHUNK_ROWS`] rows are in.
    pub(crate) fn push(&mut self, row: &CallRow) -> Option<Bytes> {
        match self.fmt {
            Format::Csv => {
                csv_row(&mut self.buf, row);
                if self.sensor {
                    self.buf.pop();
                    self.buf.push(b',');
                    field(&mut self.buf, row.sensor.as_deref().unwrap_or(""));
                    self.buf.push(b'\n');
                }
            }
            Format::Json => {
                if self.n > 0 {
                    self.buf.push(b',');
                }
                let _ = serde_json::to_writer(&mut self.buf, row);
            }
        }
        self.n += 1;
        self.n
            .is_multiple_of(CHUNK_ROWS)
            .then(|| Bytes::from(std::mem::take(&mut self.buf)))
    }

    /// The rest, after the last row.
    pub(crate) fn finish(mut self) -> Bytes {
        if self.fmt == Format::Json {
            self.buf.extend_from_slice(b"]\n");
        }
        Bytes::from(self.buf)
    }
}

/// `/calls/export/{name}` with `name` `calls.csv` or `calls.json` and the
/// call list's query parameters: this server's index, or on a hub the
/// central one (every sensor's calls, with their sensor). Audited (user,
/// file, search) before a byte leaves, like the call downloads: an export
/// is many calls' metadata.
pub async fn export(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    Path(name): Path<String>,
    Query(f): Query<Filters>,
) -> Result<Response, AppError> {
    let bad = |m: String| AppError::new(StatusCode::BAD_REQUEST, m);
    let fmt = match name.as_str() {
        "calls.csv" => Format::Csv,
        "calls.json" => Format::Json,
        _ => return Err(AppError::new(StatusCode::NOT_FOUND, "no such export")),
    };
    let q = f.to_query().map_err(bad)?;
    let h = match st.hub {
        Some(_) => f.hub_filter().map_err(bad)?,
        None => Default::default(),
    };
    let search = crate::pages::query_string(&f, None, None);
    audit(
        &st,
        &ident,
        crate::audit::action::EXPORT,
        None,
        &format!("{name}?{search}"),
    )
    .await?;
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    match &st.hub {
        Some(hub) => crate::hub::export::spawn(hub.clone(), q, h, fmt, tx),
        None => {
            let path = st.db.path.clone();
            tokio::task::spawn_blocking(move || {
                let r = Index::open(&path).and_then(|idx| stream_rows(&idx, &q, fmt, &tx));
                if let Err(e) = r {
                    tracing::warn!(error = %e, "CDR export failed");
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                }
            });
        }
    }
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|c| (c, rx))
    }));
    let (ctype, file) = match fmt {
        Format::Csv => ("text/csv; charset=utf-8", "calls.csv"),
        Format::Json => ("application/json", "calls.json"),
    };
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// Write every matching row to `tx` in chunks; stops early when the client
/// went away (the channel closed).
fn stream_rows(
    idx: &Index,
    q: &voxtap_engine::index::CallQuery,
    fmt: Format,
    tx: &ChunkTx,
) -> Result<(), voxtap_engine::index::IndexError> {
    let mut chunks = Chunks::new(fmt, false);
    let mut open = true;
    idx.scan_calls(q, |row| {
        if let Some(c) = chunks.push(&row) {
            open = tx.blocking_send(Ok(c)).is_ok();
        }
        open
    })?;
    if open {
        let _ = tx.blocking_send(Ok(chunks.finish()));
    }
    Ok(())
}

/// Whether a spreadsheet would run `s` as a formula. An E.164 number
/// (`+4930...`) or a negative number is left alone: it is a CDR's most
/// common value, and a spreadsheet reads it as a number.
fn formula(s: &str) -> bool {
    match s.as_bytes().first() {
        Some(b'=' | b'@' | b'\t' | b'\r') => true,
        Some(b'+' | b'-') => !s[1..].bytes().all(|b| b.is_ascii_digit()) || s.len() == 1,
        _ => false,
    }
}

/// A CSV field: quoted when it holds a separator, quote or line break; a
/// text that a spreadsheet would run as a formula gets a leading `'`.
fn field(out: &mut Vec<u8>, s: &str) {
    let formula = formula(s);
    let quote = formula || s.contains([',', '"', '\n', '\r']);
    if quote {
        out.push(b'"');
        if formula {
            out.push(b'\'');
        }
        out.extend_from_slice(s.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn csv_row(out: &mut Vec<u8>, c: &CallRow) {
    let ms = |v: u64| format!("{:.3}", v as f64 / 1000.0);
    let cells: [String; 24] = [
        c.id.to_string(),
        c.call_id.clone(),
        c.method.clone(),
        format_ts(c.start_ns),
        format_ts(c.end_ns),
        ms(c.duration_ms),
        c.from_user.clone(),
        c.to_user.clone(),
        c.from_uri.clone(),
        c.to_uri.clone(),
        c.request_uri.clone(),
        c.state.clone(),
        opt(c.status_code),
        opt(c.end_reason.clone()),
        opt(c.ringing_ns.map(format_ts)),
        opt(c.answer_ns.map(format_ts)),
        opt(c.talk_ms.map(ms)),
        opt(c.mos.map(|m| format!("{m:.2}"))),
        c.sip_packets.to_string(),
        c.rtp_packets.to_string(),
        c.rtcp_packets.to_string(),
        c.stream_count.to_string(),
        c.encrypted_signalling.clone(),
        c.outer_path.clone(),
    ];
    for (k, cell) in cells.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        field(out, cell);
    }
    let _ = out.write_all(b"\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_and_formulas_defused() {
        let mut o = Vec::new();
        field(&mut o, "a,b");
        o.push(b'|');
        field(&mut o, "say \"hi\"");
        o.push(b'|');
        field(&mut o, "=cmd()");
        o.push(b'|');
        field(&mut o, "plain");
        o.push(b'|');
        field(&mut o, "+4930123");
        o.push(b'|');
        field(&mut o, "+1+cmd|' /C calc'!A0");
        assert_eq!(
            String::from_utf8(o).unwrap(),
            "\"a,b\"|\"say \"\"hi\"\"\"|\"'=cmd()\"|plain|+4930123|\"'+1+cmd|' /C calc'!A0\""
        );
    }
}
