//! The call page's quality-over-time charts and audio waveforms, computed
//! on request from the call's own files (its PCAP and the media step's
//! WAVs) rather than stored in the index.

use std::net::SocketAddr;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use voxtap_engine::index::CallDetail;
use voxtap_engine::stream_timeline::{self, StreamKey, Timeline};

use crate::handlers::AppError;
use crate::{Shared, charts, files};

/// Interval of the quality series: a second, or whole seconds more for
/// calls over [`MAX_POINTS`] seconds so a long call's chart stays readable.
pub const INTERVAL_NS: u64 = 1_000_000_000;
pub const MAX_POINTS: u64 = 600;
/// Columns of a waveform (one min/max pair each).
pub const WAVE_COLUMNS: usize = 800;

/// The quality series of a call's streams.
#[derive(Debug, Default)]
pub struct Series {
    /// Origin of bucket 0, ns since the epoch.
    pub start_ns: u64,
    pub interval_ns: u64,
    /// Same order as the call's streams; None when a stream's addresses do
    /// not parse. Empty when the call has no PCAP.
    pub streams: Vec<Option<Timeline>>,
}

/// Whole seconds, at least 1, giving at most [`MAX_POINTS`] intervals.
pub fn interval_for(span_ns: u64) -> u64 {
    span_ns.div_ceil(MAX_POINTS * INTERVAL_NS).max(1) * INTERVAL_NS
}

/// The series of every stream of `d`, from the call PCAP.
pub fn timelines(data: &std::path::Path, d: &CallDetail) -> Series {
    let empty = Series {
        start_ns: d.call.start_ns,
        interval_ns: INTERVAL_NS,
        streams: Vec::new(),
    };
    let Some(folder) = d.call.folder.as_deref() else {
        return empty;
    };
    let Ok(pcap) = files::in_folder(data, folder, "call.pcap") else {
        return empty;
    };
    let maps = stream_timeline::rtpmaps(d.sip.iter().map(|m| m.text.as_str()));
    let keys: Vec<Option<StreamKey>> = d
        .streams
        .iter()
        .map(|s| {
            Some(StreamKey {
                src: s.src.parse::<SocketAddr>().ok()?,
                dst: s.dst.parse::<SocketAddr>().ok()?,
                ssrc: s.ssrc,
                clock_rate: stream_timeline::clock_rate(s.payload_type, &maps),
            })
        })
        .collect();
    let valid: Vec<StreamKey> = keys.iter().flatten().cloned().collect();
    // From the call's start (or an earlier first packet), so the streams of
    // a call line up.
    let start = d
        .streams
        .iter()
        .filter_map(|s| s.first_ns)
        .min()
        .map_or(d.call.start_ns, |f| f.min(d.call.start_ns));
    let end = d
        .streams
        .iter()
        .filter_map(|s| s.last_ns)
        .max()
        .unwrap_or(start)
        .max(
            d.call
                .start_ns
                .saturating_add(d.call.duration_ms.saturating_mul(1_000_000)),
        );
    let interval_ns = interval_for(end.saturating_sub(start));
    let series = match stream_timeline::from_pcap(&pcap, &valid, start, interval_ns) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(
                call = d.call.id,
                "reading the call PCAP for its quality series: {e}"
            );
            return empty;
        }
    };
    let mut it = series.into_iter();
    let streams = keys
        .iter()
        .map(|k| k.as_ref().and_then(|_| it.next()))
        .collect();
    Series {
        start_ns: start,
        interval_ns,
        streams,
    }
}

/// [`timelines`] on a blocking thread (it reads the call's PCAP).
pub async fn timelines_of(st: &Shared, d: CallDetail) -> Result<(CallDetail, Series), AppError> {
    if st.hub.is_some() {
        // A hub's calls have their PCAPs on the sensors or in S3: no chart
        // (the PCAP download has the packets).
        let empty = Series {
            start_ns: d.call.start_ns,
            interval_ns: INTERVAL_NS,
            streams: Vec::new(),
        };
        return Ok((d, empty));
    }
    let data = st.data.clone();
    tokio::task::spawn_blocking(move || {
        let s = timelines(&data, &d);
        (d, s)
    })
    .await
    .map_err(|_| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "timeline task failed"))
}

/// `GET /api/calls/{id}/timeline`: the series as JSON.
pub async fn api_timeline(
    State(st): State<Shared>,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let d = crate::handlers::detail(&st, id).await?;
    let (d, series) = timelines_of(&st, d).await?;
    let streams: Vec<serde_json::Value> = d
        .streams
        .iter()
        .zip(series.streams.iter().chain(std::iter::repeat(&None)))
        .map(|(s, t)| {
            serde_json::json!({
                "ssrc": s.ssrc, "src": s.src, "dst": s.dst,
                "timeline": t,
            })
        })
        .collect();
    Ok(axum::Json(serde_json::json!({
        "call": id,
        "start_ns": series.start_ns,
        "interval_ms": series.interval_ns / 1_000_000,
        "streams": streams,
    }))
    .into_response())
}

/// `GET /calls/{id}/waveform/{name}`: an SVG of a WAV of the call's folder.
pub async fn waveform(
    State(st): State<Shared>,
    Path((id, name)): Path<(i64, String)>,
) -> Result<Response, AppError> {
    files::check_name(&name)?;
    if !name.to_ascii_lowercase().ends_with(".wav") {
        return Err(AppError::new(StatusCode::BAD_REQUEST, "not a WAV file"));
    }
    if st.hub.is_some() {
        return Err(AppError::new(
            StatusCode::NOT_FOUND,
            "waveforms are drawn by the sensor's own web UI",
        ));
    }
    let d = st
        .db
        .run(move |idx| idx.call(id))
        .await?
        .ok_or_else(|| AppError::new(StatusCode::NOT_FOUND, "no such call"))?;
    let folder = d
        .folder
        .ok_or_else(|| AppError::new(StatusCode::NOT_FOUND, "this call has no files"))?;
    let p = files::in_folder(&st.data, &folder, &name)?;
    let svg = tokio::task::spawn_blocking(move || {
        charts::peaks(&p, WAVE_COLUMNS).map(|pk| charts::waveform_svg(&pk, &name))
    })
    .await
    .map_err(|_| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "waveform task failed"))?
    .map_err(|e| {
        AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("cannot read the WAV: {e}"),
        )
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        svg,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_calls_get_longer_intervals() {
        let s = INTERVAL_NS;
        assert_eq!(interval_for(0), s);
        assert_eq!(interval_for(600 * s), s);
        assert_eq!(interval_for(600 * s + 1), 2 * s);
        assert_eq!(interval_for(3600 * s), 6 * s);
    }
}
