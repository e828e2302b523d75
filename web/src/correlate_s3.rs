//! Post-capture correlation from an S3 session: the sensor's own rolling
//! files (`[store] path`), uploaded to S3 and, with `delete_after_upload`,
//! gone from the disk. A carrier's engineer thinks of "the media the sensor
//! recorded while the problem happened", not of file numbers: the SIP pcap
//! (from the SBC, or any other tap) says when, so its first and last packet
//! (± [`MARGIN_NS`]) choose the rolling files. Those still on disk are read
//! in place; the others are fetched from S3 by ranged GETs of [`CHUNK`]
//! bytes into `DATA/s3sessions/fetch/<job>/` (memory bounded by one chunk,
//! disk by `[s3_sessions] max_fetch_mb`), then go through the same import
//! as a remote run's segments (`correlate`), and the fetched copies are
//! deleted once imported. Records: `DATA/s3sessions/correlations/<job>.json`,
//! the SIP pcap in `DATA/s3sessions/uploads/`.

use std::io::Write;
use std::path::{Path as FsPath, PathBuf};

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{Markup, html};
use voxtap_sensor::store::{FileRow, StoreIndex};
use voxtap_sensor::upload::UploadConfig;
use voxtap_sensor::upload::queue::Queue;
use voxtap_sensor::upload::s3::S3;

use crate::audit::action;
use crate::config::S3SessionsConfig;
use crate::correlate::{self, Correlation, Direction, bad};
use crate::csrf::CheckedMultipart;
use crate::handlers::{AppError, audit};
use crate::jobs::{Job, JobState};
use crate::{Identity, Shared, text};

/// Default of `[s3_sessions] max_fetch_mb`.
pub const DEFAULT_MAX_FETCH_MB: u64 = 4096;
/// Media may start a little before the SIP pcap's first packet was cut and
/// end after its last one.
const MARGIN_NS: u64 = 5_000_000_000;
/// One ranged GET: the most of an object held in memory at once.
const CHUNK: u64 = 8 << 20;
/// Rolling files listed on the Hosts page, newest first.
const FILES_LISTED: usize = 50;

fn sessions_dir(st: &Shared) -> PathBuf {
    st.data.join("s3sessions")
}

/// One rolling file of the store and where it can be read from.
struct StoreFile {
    row: FileRow,
    local: Option<PathBuf>,
    /// Its object and size when the upload queue confirmed it.
    object: Option<(String, u64)>,
    /// The SHA-256 it was uploaded with: a fetched copy must have it.
    sha256: Option<String>,
    /// The queue's state when it is not readable from S3 (`expired`...).
    state: Option<String>,
}

impl StoreFile {
    fn readable(&self) -> bool {
        self.local.is_some() || self.object.is_some()
    }

    fn place(&self) -> String {
        match (&self.local, &self.object, &self.state) {
            (Some(_), Some(_), _) => "local + S3".into(),
            (None, Some(_), _) => "S3 only".into(),
            (Some(_), None, _) => "local".into(),
            (None, None, Some(s)) => format!("gone (S3: {s})"),
            (None, None, None) => "gone".into(),
        }
    }
}

/// The store's rolling files, oldest first, that `keep` accepts, with
/// where each is: the upload queue is asked only about those. Blocking.
fn store_files(
    cfg: &S3SessionsConfig,
    keep: impl Fn(&[FileRow]) -> Vec<FileRow>,
) -> Result<Vec<StoreFile>, String> {
    let idx = StoreIndex::open_read_only(&cfg.store).map_err(|e| e.to_string())?;
    let rows = keep(&idx.files().map_err(|e| e.to_string())?);
    let queue = Queue::open_read_only(&cfg.store).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for row in rows {
        let path = cfg.store.join(&row.path);
        let local = path.is_file().then_some(path);
        let (object, sha256, state) = match &queue {
            Some(q) => (
                q.raw_object(row.id).map_err(|e| e.to_string())?,
                q.raw_sha256(row.id).map_err(|e| e.to_string())?,
                q.raw_state(row.id).map_err(|e| e.to_string())?,
            ),
            None => (None, None, None),
        };
        out.push(StoreFile {
            row,
            local,
            object,
            sha256,
            state,
        });
    }
    Ok(out)
}

/// The newest [`FILES_LISTED`] files.
fn newest(rows: &[FileRow]) -> Vec<FileRow> {
    rows[rows.len().saturating_sub(FILES_LISTED)..].to_vec()
}

/// The files with a packet in `[from, to]`.
fn overlapping((from, to): (u64, u64)) -> impl Fn(&[FileRow]) -> Vec<FileRow> {
    move |rows| {
        rows.iter()
            .filter(|f| f.first_ts <= to && f.last_ts >= from)
            .cloned()
            .collect()
    }
}

fn s3_config(cfg: &S3SessionsConfig) -> UploadConfig {
    UploadConfig {
        enabled: true,
        endpoint: cfg.endpoint.clone(),
        region: cfg.region.clone().unwrap_or_else(|| "us-east-1".into()),
        bucket: cfg.bucket.clone(),
        path_style: cfg.path_style,
        ..Default::default()
    }
}

// ---------------------------------------------------------------- page

/// The Hosts page's "Sensor capture in S3" section: the newest rolling
/// files with where each is, the correlations made, and the form.
pub async fn markup(st: &Shared, ident: &Identity) -> Markup {
    let Some(cfg) = st.s3_sessions.clone() else {
        return html! {};
    };
    let files = tokio::task::spawn_blocking(move || store_files(&cfg, newest))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    let done = correlate::correlations(&sessions_dir(st));
    let csrf = ident.csrf.clone().unwrap_or_default();
    html! {
        h2 #s3-session { "Sensor capture in S3" }
        p.muted {
            "Add a SIP pcap and the call's direction: the sensor's rolling files of the SIP pcap's time (± 5 s) are read "
            "from the disk or, once uploaded and removed, fetched from S3, and merged with it by time as for a remote capture."
        }
        @match &files {
            Err(e) => { p.error #s3-files-error { "The store cannot be read: " (e) } }
            Ok(files) => { (files_table(files)) }
        }
        @for c in &done {
            a.correlation href={"/hosts/s3/correlations/" (c.job)} { (c.sip) " (" (c.direction.as_str()) ")" }
            br;
        }
        (crate::correlate::sip_form("add-sip-s3", "/hosts/s3/sip", &csrf))
    }
}

fn files_table(files: &[StoreFile]) -> Markup {
    html! {
        table #s3-files {
            thead { tr { th { "File" } th { "First packet" } th { "Last packet" } th.num { "Packets" } th.num { "Bytes" } th { "Where" } } }
            tbody {
                @for f in files.iter().rev() {
                    tr data-file=(f.row.id) data-place=(f.place()) {
                        td { code { (f.row.path.display()) } }
                        td { (text::ts(f.row.first_ts)) } td { (text::ts(f.row.last_ts)) }
                        td.num { (f.row.packets) } td.num { (f.row.bytes) } td { (f.place()) }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- upload

/// `POST /hosts/s3/sip`: the SIP pcap (`sip`) and the direction; fetches
/// the media of its time and imports them together, then redirects to the
/// correlation's page.
pub async fn add_sip(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    form: CheckedMultipart,
) -> Response {
    match add_sip_inner(&st, &ident, form).await {
        Ok(job) => Redirect::to(&format!("/hosts/s3/correlations/{job}")).into_response(),
        Err(e) => {
            tracing::warn!(user = %ident.user, "SIP pcap for the S3 session refused: {}", e.message());
            e.into_response()
        }
    }
}

async fn add_sip_inner(
    st: &Shared,
    ident: &Identity,
    form: CheckedMultipart,
) -> Result<String, AppError> {
    let Some(cfg) = st.s3_sessions.clone().filter(|_| st.hub.is_none()) else {
        return Err(AppError::new(
            StatusCode::NOT_FOUND,
            "no [s3_sessions] store configured on this server",
        ));
    };
    let job = st.jobs.next_id();
    let uploads = sessions_dir(st).join("uploads");
    let got = correlate::read_form(form, &uploads, &job, st.remote.max_sip_upload()).await;
    let plan = match got {
        Ok(got) => plan(cfg, got).await,
        Err(e) => Err(e),
    };
    let plan = match plan {
        Ok(p) => p,
        Err(e) => {
            correlate::remove_saved(&uploads, &job);
            return Err(e);
        }
    };
    start(st, ident, job, plan).await
}

/// What one correlation reads.
struct Plan {
    direction: Direction,
    sip: PathBuf,
    shown: String,
    window: (u64, u64),
    files: Vec<StoreFile>,
}

async fn plan(cfg: S3SessionsConfig, got: correlate::SipForm) -> Result<Plan, AppError> {
    let direction = got.direction.as_deref().and_then(Direction::parse);
    let (Some(direction), Some((sip, shown))) = (direction, got.saved) else {
        return Err(bad(
            "choose the SIP pcap and the direction (inbound or outbound)",
        ));
    };
    let path = sip.clone();
    let (window, files) = tokio::task::spawn_blocking(move || {
        let (first, last) = time_span(&path)?;
        let window = (
            first.saturating_sub(MARGIN_NS),
            last.saturating_add(MARGIN_NS),
        );
        let files = store_files(&cfg, overlapping(window))
            .map_err(|e| format!("the store cannot be read: {e}"))?;
        check_files(&cfg, &files, window)?;
        Ok::<_, String>((window, files))
    })
    .await
    .map_err(|e| bad(e.to_string()))?
    .map_err(bad)?;
    Ok(Plan {
        direction,
        sip,
        shown,
        window,
        files,
    })
}

/// The first and last packet time of a capture.
fn time_span(path: &FsPath) -> Result<(u64, u64), String> {
    let mut r = voxtap_engine::pcapfile::open(path).map_err(|e| format!("the SIP pcap: {e}"))?;
    let (mut first, mut last) = (u64::MAX, 0u64);
    while let Some(p) = r.next_packet().map_err(|e| format!("the SIP pcap: {e}"))? {
        first = first.min(p.ts_ns);
        last = last.max(p.ts_ns);
    }
    if first > last {
        return Err("the SIP pcap holds no packet".into());
    }
    Ok((first, last))
}

/// Media to read, every file readable, and what is fetched within budget.
fn check_files(
    cfg: &S3SessionsConfig,
    files: &[StoreFile],
    (from, to): (u64, u64),
) -> Result<(), String> {
    if files.is_empty() {
        return Err(format!(
            "the sensor's store holds no capture between {} and {} (the SIP pcap's time ± 5 s)",
            text::ts(from),
            text::ts(to)
        ));
    }
    if let Some(f) = files.iter().find(|f| !f.readable()) {
        return Err(format!(
            "rolling file {} of that time is {}: its media cannot be read",
            f.row.path.display(),
            f.place()
        ));
    }
    let fetched: u64 = files
        .iter()
        .filter(|f| f.local.is_none())
        .filter_map(|f| f.object.as_ref().map(|o| o.1))
        .sum();
    let max = cfg.max_fetch_mb.unwrap_or(DEFAULT_MAX_FETCH_MB) << 20;
    if fetched > max {
        return Err(format!(
            "that time needs {fetched} bytes from S3, more than the {} MB allowed ([s3_sessions] max_fetch_mb)",
            max >> 20
        ));
    }
    Ok(())
}

/// Records the correlation, then fetches and imports in the background.
async fn start(st: &Shared, ident: &Identity, job: String, p: Plan) -> Result<String, AppError> {
    let span = format!("{} – {}", text::ts(p.window.0), text::ts(p.window.1));
    let detail = format!(
        "correlate S3 session {span} ({}, {} files): SIP pcap {}, job {job}",
        p.direction.as_str(),
        p.files.len(),
        p.shown
    );
    if let Err(e) = audit(st, ident, action::CORRELATE, None, &detail).await {
        let _ = std::fs::remove_file(&p.sip);
        return Err(e);
    }
    let c = Correlation {
        job: job.clone(),
        direction: p.direction,
        sip: p.shown.clone(),
        user: ident.user.clone(),
        at_ns: correlate::now_ns(),
    };
    correlate::save_record(&sessions_dir(st), &c)?;
    let sip_bytes = std::fs::metadata(&p.sip).map_or(0, |m| m.len());
    let total = p.files.iter().map(|f| f.row.bytes).sum::<u64>() + sip_bytes;
    let names = vec![
        format!("S3 session {span} ({} files)", p.files.len()),
        p.shown,
    ];
    let j = Job::new(job.clone(), ident.user.clone(), names, total);
    st.jobs.insert(j.clone());
    st.metrics
        .imports
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (st2, fetch_dir) = (st.clone(), sessions_dir(st).join("fetch").join(&job));
    let cfg = st.s3_sessions.clone().unwrap_or_default();
    tokio::spawn(async move {
        let dir = fetch_dir.clone();
        let fetched = tokio::task::spawn_blocking(move || fetch_all(&cfg, &p.files, &dir)).await;
        match fetched {
            Ok(Ok(mut files)) => {
                files.push(p.sip);
                crate::jobs::spawn(st2, j, files, Some(fetch_dir));
            }
            Ok(Err(e)) => fetch_failed(&j, &fetch_dir, e),
            Err(e) => fetch_failed(&j, &fetch_dir, e.to_string()),
        }
    });
    Ok(job)
}

fn fetch_failed(j: &Job, dir: &FsPath, e: String) {
    let _ = std::fs::remove_dir_all(dir);
    tracing::error!(job = %j.id, "S3 session: {e}");
    j.finish(
        JobState::Failed,
        0,
        format!("fetching the media from S3 failed: {e}"),
    );
}

/// The files to import: local copies in place, the others fetched into
/// `dir`. Blocking.
fn fetch_all(
    cfg: &S3SessionsConfig,
    files: &[StoreFile],
    dir: &FsPath,
) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let mut s3: Option<S3> = None;
    let (mut gets, mut bytes) = (0u64, 0u64);
    for f in files {
        if let Some(p) = &f.local {
            out.push(p.clone());
            continue;
        }
        let Some((key, size)) = &f.object else {
            return Err(format!("{} is {}", f.row.path.display(), f.place()));
        };
        if s3.is_none() {
            s3 = Some(S3::new(&s3_config(cfg)).map_err(|e| e.to_string())?);
        }
        let client = s3.as_ref().ok_or("no S3 client")?;
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let to = dir.join(format!("{:010}.pcap", f.row.id));
        gets += fetch_object(client, key, *size, &to)?;
        check_copy(&to, key, f.sha256.as_deref())?;
        bytes += size;
        out.push(to);
    }
    tracing::info!(files = out.len(), gets, bytes, "S3 session: media fetched");
    Ok(out)
}

/// A fetched copy is the file that was uploaded: the SHA-256 the upload
/// queue recorded (recordings are evidence; an object changed in the
/// bucket is refused, not imported).
fn check_copy(to: &FsPath, key: &str, want: Option<&str>) -> Result<(), String> {
    let Some(want) = want else {
        return Ok(());
    };
    let got = voxtap_sensor::upload::sha256_file(to).map_err(|e| e.to_string())?;
    if got == want {
        return Ok(());
    }
    Err(format!(
        "{key}: the copy fetched from S3 has sha256 {got}, the file uploaded had {want}"
    ))
}

/// Copies object `key` of `size` bytes to `to`, one ranged GET of at most
/// [`CHUNK`] bytes at a time; returns the GETs made.
fn fetch_object(s3: &S3, key: &str, size: u64, to: &FsPath) -> Result<u64, String> {
    let io = |e: std::io::Error| format!("{}: {e}", to.display());
    let mut file = std::fs::File::create(to).map_err(io)?;
    let (mut at, mut gets) = (0u64, 0u64);
    while at < size {
        let end = (at + CHUNK).min(size);
        let data = s3
            .get_range(key, at, end)
            .map_err(|e| format!("s3://{}/{key}: {e}", s3.bucket()))?;
        if data.len() as u64 != end - at {
            return Err(format!(
                "s3://{}/{key}: {} bytes at {at}, expected {}",
                s3.bucket(),
                data.len(),
                end - at
            ));
        }
        file.write_all(&data).map_err(io)?;
        at = end;
        gets += 1;
    }
    file.sync_all().map_err(io)?;
    Ok(gets)
}

// ---------------------------------------------------------------- results

/// `GET /hosts/s3/correlations/{job}`.
pub async fn correlation_page(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    Path(job): Path<String>,
) -> Result<Html<String>, AppError> {
    let not_found = || AppError::new(StatusCode::NOT_FOUND, "no such correlation");
    if !correlate::valid_run_name(&job) {
        return Err(not_found());
    }
    let c = correlate::correlations(&sessions_dir(&st))
        .into_iter()
        .find(|c| c.job == job)
        .ok_or_else(not_found)?;
    let back = html! { a href="/hosts#s3-session" { "Back to the hosts" } };
    correlate::render(&st, &ident, "the sensor's capture in S3", c, back).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u32, first_ts: u64, last_ts: u64) -> FileRow {
        FileRow {
            id,
            path: PathBuf::from(format!("pcap/{id:010}.pcap")),
            first_ts,
            last_ts,
            bytes: 0,
            packets: 0,
            deleted: false,
            deleted_reason: None,
        }
    }

    #[test]
    fn files_of_a_window_and_the_newest() {
        let rows: Vec<FileRow> = (0..60u32)
            .map(|i| row(i, u64::from(i) * 10, u64::from(i) * 10 + 9))
            .collect();
        let ids = |v: Vec<FileRow>| v.iter().map(|r| r.id).collect::<Vec<_>>();
        // Touching either end counts; a file ending just before does not.
        assert_eq!(ids(overlapping((19, 30))(&rows)), [1, 2, 3]);
        assert_eq!(ids(overlapping((20, 29))(&rows)), [2]);
        assert!(overlapping((700, 800))(&rows).is_empty());
        assert_eq!(ids(newest(&rows)), (10..60).collect::<Vec<_>>());
        assert_eq!(ids(newest(&rows[..3])), [0, 1, 2]);
    }
}
