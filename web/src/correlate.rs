//! Post-capture correlation, rtp-capture-tool's workflow: a remote capture
//! of media (Hosts page, `DATA/remote/<run>/`), then the SIP pcap of the
//! same time uploaded with the call's direction. The run's media segments
//! and the SIP pcap go through the one import (`voxtap_engine::import`,
//! several files merged by time), as an import job; the page then lists
//! the calls with, per leg, the side it faces (carrier or core, from the
//! direction) and the three downloads rtp-capture-tool users know
//! (`downloads::CORRELATED` maps them to our call files).
//!
//! A correlation is recorded as `DATA/remote/<run>/correlations/<job>.json`,
//! the SIP pcap kept in `DATA/remote/<run>/uploads/`, the calls imported
//! into `DATA/imports/<job>/` and merged into the index like any import.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path as FsPath, PathBuf};

use axum::extract::multipart::Field;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};
use voxtap_engine::index::{CallQuery, CallRow, INDEX_FILE, Index, IndexError};

use crate::audit::action;
use crate::csrf::{CheckedMultipart, UploadError};
use crate::handlers::{AppError, audit};
use crate::jobs::{Job, JobState};
use crate::{Identity, Shared, files, pages};

/// Default of `[remote] max_sip_upload_mb`.
pub const DEFAULT_MAX_SIP_UPLOAD_MB: u64 = 256;
/// Past runs listed on the Hosts page, newest first.
const RUNS_LISTED: usize = 50;
/// Calls listed on a correlation's page (the rest are in the call list).
const CALLS_LISTED: u32 = 500;
/// How deep a run's folders are searched for segments: env, region,
/// sub-regions, host, interface.
const MAX_DEPTH: usize = 8;

/// The call's direction as seen from our network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The carrier called in: the first INVITE came from the carrier side.
    Inbound,
    /// Our core called out: the first INVITE came from the core side.
    Outbound,
}

impl Direction {
    pub fn parse(s: &str) -> Option<Direction> {
        match s.trim() {
            "inbound" => Some(Direction::Inbound),
            "outbound" => Some(Direction::Outbound),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }

    /// The side the caller is on.
    pub(crate) fn caller_side(self) -> &'static str {
        match self {
            Direction::Inbound => "carrier",
            Direction::Outbound => "core",
        }
    }

    fn callee_side(self) -> &'static str {
        match self {
            Direction::Inbound => "core",
            Direction::Outbound => "carrier",
        }
    }
}

/// The side each leg of one logical call faces, legs in the order of
/// their first INVITE: the first leg is the caller's side (carrier when
/// inbound, core when outbound), the later legs (after the SBC or B2BUA)
/// the other side. A call with one leg joins both: `carrier → core`.
pub fn leg_sides(d: Direction, legs: usize) -> Vec<String> {
    match legs {
        0 => Vec::new(),
        1 => vec![format!("{} → {}", d.caller_side(), d.callee_side())],
        n => std::iter::once(d.caller_side().to_string())
            .chain(std::iter::repeat_n(d.callee_side().to_string(), n - 1))
            .collect(),
    }
}

/// One SIP pcap added to a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Correlation {
    pub job: String,
    pub direction: Direction,
    /// The SIP pcap's name as uploaded.
    pub sip: String,
    pub user: String,
    pub at_ns: u64,
}

/// A remote capture's folder under `DATA/remote/`.
struct PastRun {
    name: String,
    segments: Vec<PathBuf>,
    bytes: u64,
    running: bool,
    correlations: Vec<Correlation>,
}

/// Run folders are named by the Hosts page (`YYYYMMDDTHHMMSS[-N]`) or by
/// whoever ran `voxtap remote start --out`: one plain path component.
pub(crate) fn valid_run_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A rolling segment of a remote capture: `<env>_..._<iface>_NNNN.pcap`
/// (call folders hold fixed names: call.pcap, media.pcap...).
fn is_segment(name: &str) -> bool {
    name.strip_suffix(".pcap")
        .and_then(|s| s.rsplit_once('_'))
        .is_some_and(|(head, n)| {
            !head.is_empty() && n.len() >= 4 && n.bytes().all(|b| b.is_ascii_digit())
        })
}

/// The run's media segments, sorted; our own `uploads/` and
/// `correlations/` are not media.
fn segments(run: &FsPath) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![(run.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() && depth < MAX_DEPTH && !(depth == 0 && is_ours(&name)) {
                stack.push((e.path(), depth + 1));
            } else if ft.is_file() && is_segment(&name) {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn is_ours(name: &str) -> bool {
    matches!(name, "uploads" | "correlations")
}

fn remote_dir(st: &Shared) -> PathBuf {
    st.data.join("remote")
}

fn past_run(st: &Shared, name: &str) -> Option<PastRun> {
    if !valid_run_name(name) {
        return None;
    }
    let dir = remote_dir(st).join(name);
    if !dir.is_dir() {
        return None;
    }
    let segments = segments(&dir);
    let bytes = segments
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let running = crate::hosts::is_running(st, &dir)
        || voxtap_sensor::rpcap::remote::running_pid(&dir).is_some();
    Some(PastRun {
        name: name.to_string(),
        segments,
        bytes,
        running,
        correlations: correlations(&dir),
    })
}

/// The run's correlations, newest first.
pub(crate) fn correlations(run: &FsPath) -> Vec<Correlation> {
    let Ok(rd) = std::fs::read_dir(run.join("correlations")) else {
        return Vec::new();
    };
    let mut v: Vec<Correlation> = rd
        .flatten()
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect();
    v.sort_by_key(|c| std::cmp::Reverse(c.at_ns));
    v
}

/// The newest runs' names.
fn run_names(st: &Shared) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(remote_dir(st)) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| valid_run_name(n))
        .collect();
    names.sort_unstable();
    names.reverse();
    names.truncate(RUNS_LISTED);
    names
}

// ---------------------------------------------------------------- pages

/// The Hosts page's list of past captures, each finished one with its
/// "Add SIP pcap" form.
pub fn runs_markup(st: &Shared, ident: &Identity) -> Markup {
    let runs: Vec<PastRun> = run_names(st)
        .iter()
        .filter_map(|n| past_run(st, n))
        .collect();
    let csrf = ident.csrf.clone().unwrap_or_default();
    let max_mb = st.remote.max_sip_upload() >> 20;
    html! {
        h2 #past-captures { "Past captures" }
        @if runs.is_empty() {
            p.muted { "No remote capture in " code { "remote/" } " yet." }
        } @else {
            p.muted {
                "Add the SIP pcap of a capture's time window and the call's direction: voxtap merges it with "
                "the capture's media by time, through the same import as any upload, and offers per call "
                code { "media_raw.pcap" } ", " code { "media_decrypted.pcap" } " and "
                code { "SIP_plus_media_decrypted.pcap" } " (rtp-capture-tool's names), each leg labelled carrier or core. "
                "SIP pcap up to " (max_mb) " MB."
            }
            table #past-runs {
                thead { tr { th { "Capture" } th.num { "Segments" } th.num { "Bytes" } th { "Correlations" } th { "Add SIP pcap" } } }
                tbody { @for r in &runs { (run_row(r, &csrf)) } }
            }
        }
    }
}

fn run_row(r: &PastRun, csrf: &str) -> Markup {
    html! {
        tr data-run=(r.name) {
            td { code { "remote/" (r.name) } @if r.running { " " span.badge { "running" } } }
            td.num { (r.segments.len()) }
            td.num { (r.bytes) }
            td {
                @for c in &r.correlations {
                    a.correlation href={"/hosts/runs/" (r.name) "/correlations/" (c.job)} {
                        (c.sip) " (" (c.direction.as_str()) ")"
                    }
                    br;
                }
            }
            td {
                @if r.running {
                    span.muted { "stop the capture first" }
                } @else if r.segments.is_empty() {
                    span.muted { "no media captured" }
                } @else {
                    (sip_form("add-sip", &format!("/hosts/runs/{}/sip", r.name), csrf))
                }
            }
        }
    }
}

// ---------------------------------------------------------------- upload

/// What the form carried.
#[derive(Default)]
pub(crate) struct SipForm {
    pub(crate) direction: Option<String>,
    /// Where the SIP pcap was stored, and its name as uploaded.
    pub(crate) saved: Option<(PathBuf, String)>,
}

/// `POST /hosts/runs/{run}/sip`: the SIP pcap (field `sip`) and the
/// direction (`inbound`/`outbound`) for a finished run; starts the import
/// of the run's media with it and redirects to the correlation's page.
pub async fn add_sip(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    Path(run): Path<String>,
    form: CheckedMultipart,
) -> Response {
    match add_sip_inner(&st, &ident, &run, form).await {
        Ok(job) => Redirect::to(&format!("/hosts/runs/{run}/correlations/{job}")).into_response(),
        Err(e) => {
            tracing::warn!(user = %ident.user, run = %run, "SIP pcap refused: {}", e.message());
            e.into_response()
        }
    }
}

async fn add_sip_inner(
    st: &Shared,
    ident: &Identity,
    run: &str,
    form: CheckedMultipart,
) -> Result<String, AppError> {
    if st.hub.is_some() {
        return Err(bad(
            "this server is a hub: correlate on the sensor that captured",
        ));
    }
    let r = past_run(st, run)
        .ok_or_else(|| AppError::new(StatusCode::NOT_FOUND, "no such remote capture"))?;
    if r.running {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            "this capture is still running: stop it before adding the SIP pcap",
        ));
    }
    check_media(&r)?;
    let job = st.jobs.next_id();
    let uploads = remote_dir(st).join(run).join("uploads");
    let got = read_form(form, &uploads, &job, st.remote.max_sip_upload()).await;
    let got = match got {
        Ok(g) => g,
        Err(e) => {
            remove_saved(&uploads, &job);
            return Err(e);
        }
    };
    let direction = got.direction.as_deref().and_then(Direction::parse);
    let (Some(direction), Some((path, shown))) = (direction, got.saved) else {
        remove_saved(&uploads, &job);
        return Err(bad(
            "choose the SIP pcap and the direction (inbound or outbound)",
        ));
    };
    let detail = format!(
        "correlate remote/{run} ({}): SIP pcap {shown}, job {job}",
        direction.as_str()
    );
    if let Err(e) = audit(st, ident, action::CORRELATE, None, &detail).await {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    let c = Correlation {
        job: job.clone(),
        direction,
        sip: shown.clone(),
        user: ident.user.clone(),
        at_ns: now_ns(),
    };
    save_record(&remote_dir(st).join(run), &c)?;
    let mut files = r.segments.clone();
    files.push(path);
    let total = files
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let names = vec![
        format!("remote/{run} ({} segments)", r.segments.len()),
        shown,
    ];
    let j = Job::new(job.clone(), ident.user.clone(), names, total);
    st.jobs.insert(j.clone());
    st.metrics
        .imports
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // The run's segments and the SIP pcap stay with the run: nothing to
    // delete once imported.
    crate::jobs::spawn(st.clone(), j, files, None);
    Ok(job)
}

/// A run whose segments hold no packet (a capture of nothing, or a
/// filter that matched nothing) has no media to correlate.
fn check_media(r: &PastRun) -> Result<(), AppError> {
    // A pcap file header is 24 bytes; a record at least 16 more.
    let packets = r
        .segments
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .any(|m| m.len() > 24);
    if r.segments.is_empty() || !packets {
        return Err(bad(format!(
            "remote/{} holds no media: its capture recorded no packets (check the hosts and the filter, then capture again)",
            r.name
        )));
    }
    Ok(())
}

pub(crate) fn remove_saved(uploads: &FsPath, job: &str) {
    if let Ok(rd) = std::fs::read_dir(uploads) {
        for e in rd.flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{job}-"))
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

pub(crate) fn save_record(run: &FsPath, c: &Correlation) -> Result<(), AppError> {
    let dir = run.join("correlations");
    let io = |e: std::io::Error| {
        AppError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot record the correlation: {e}"),
        )
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let body = serde_json::to_vec_pretty(c).unwrap_or_default();
    std::fs::write(dir.join(format!("{}.json", c.job)), body).map_err(io)
}

pub(crate) fn bad(msg: impl Into<String>) -> AppError {
    AppError::new(StatusCode::BAD_REQUEST, msg)
}

pub(crate) fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Reads the form: `direction` (short), `sip` (the pcap, written into
/// `uploads/<job>-<name>`, refused past `max` bytes or when it is not a
/// capture).
pub(crate) async fn read_form(
    mut form: CheckedMultipart,
    uploads: &FsPath,
    job: &str,
    max: u64,
) -> Result<SipForm, AppError> {
    let mut got = SipForm::default();
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(got),
            Err(UploadError::Refused(e)) => return Err(e),
            Err(UploadError::Multipart(e)) => return Err(bad(format!("bad upload: {e}"))),
        };
        match field.name() {
            Some("sip") if got.saved.is_none() => {
                let shown = field.file_name().unwrap_or("").to_string();
                if shown.is_empty() {
                    continue;
                }
                std::fs::create_dir_all(uploads).map_err(|e| {
                    AppError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("cannot create the upload folder: {e}"),
                    )
                })?;
                let name = crate::import::upload_name(0, Some(&shown));
                let path = uploads.join(format!("{job}-{}", &name[4..]));
                save_limited(field, &path, &shown, max).await?;
                got.saved = Some((path, shown));
            }
            Some("direction") => got.direction = Some(short_field(field).await?),
            _ => {
                short_field(field).await?;
            }
        }
    }
}

/// A small form field's text, refused past 64 bytes.
async fn short_field(mut field: Field<'_>) -> Result<String, AppError> {
    let mut v = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| bad(format!("bad upload: {e}")))?
    {
        v.extend_from_slice(&chunk);
        if v.len() > 64 {
            return Err(AppError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "a form field is longer than 64 bytes",
            ));
        }
    }
    Ok(String::from_utf8_lossy(&v).to_string())
}

/// Writes the upload to `path`, refusing a file that does not start like
/// a pcap/pcapng, or that grows past `max` bytes (counted as it arrives).
async fn save_limited(
    mut field: Field<'_>,
    path: &FsPath,
    shown: &str,
    max: u64,
) -> Result<(), AppError> {
    let store = |e: std::io::Error| {
        AppError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot store the upload: {e}"),
        )
    };
    let mut file = std::fs::File::create(path).map_err(store)?;
    let mut head: Vec<u8> = Vec::new();
    let mut n: u64 = 0;
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| bad(format!("upload of {shown} broke off: {e}")))?
    {
        if head.len() < 4 {
            head.extend_from_slice(&chunk[..chunk.len().min(4 - head.len())]);
            if head.len() == 4 && !crate::import::is_capture_magic(&head) {
                return Err(bad(crate::import::not_a_capture(shown, &head)));
            }
        }
        n += chunk.len() as u64;
        if n > max {
            return Err(AppError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "{shown} is larger than the {} MB allowed for a SIP pcap ([remote] max_sip_upload_mb)",
                    max >> 20
                ),
            ));
        }
        file.write_all(&chunk).map_err(store)?;
    }
    if head.len() < 4 {
        return Err(bad(format!(
            "{shown} is too short to be a pcap or pcapng capture"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------- results

/// One leg of a correlated call, as listed.
#[derive(Clone, Debug, Serialize)]
pub struct LegView {
    /// The call's id in the main index (its page and downloads).
    pub id: i64,
    pub call_id: String,
    pub side: String,
    pub from: String,
    pub to: String,
    pub state: String,
    pub sip_packets: u64,
    pub rtp_packets: u64,
    /// The call carried SRTP and the media step wrote its decrypted pcaps.
    pub decrypted: bool,
}

/// A logical call: its legs in the order of their first INVITE, and
/// whether the first leg's folder holds the all-legs bundle.
#[derive(Clone, Debug, Serialize)]
pub struct LogicalCall {
    pub legs: Vec<LegView>,
    pub bundle: Option<i64>,
}

/// The calls a correlation's import found, grouped into logical calls,
/// each leg labelled by `d`. Reads the job's own index for the calls and
/// their links, and the main index for their ids there.
fn correlated_calls(
    data: &FsPath,
    main: &Index,
    job: &str,
    d: Direction,
) -> Result<Vec<LogicalCall>, IndexError> {
    let sub = Index::open(&data.join("imports").join(job).join(INDEX_FILE))?;
    let rows = sub
        .search(&CallQuery {
            limit: CALLS_LISTED,
            ..Default::default()
        })?
        .rows;
    let mut links: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for r in &rows {
        if let Some(det) = sub.call_detail(r.id)? {
            links.insert(r.id, det.legs.iter().map(|l| l.other_call).collect());
        }
    }
    let mut out = Vec::new();
    for group in groups(&rows, &links) {
        let sides = leg_sides(d, group.len());
        let mut legs = Vec::new();
        for (r, side) in group.iter().zip(sides) {
            let Some(id) = main_id(main, job, r)? else {
                continue;
            };
            let folder = format!("imports/{job}/{}", r.folder.as_deref().unwrap_or(""));
            legs.push(LegView {
                id,
                call_id: r.call_id.clone(),
                side,
                from: r.from_user.clone(),
                to: r.to_user.clone(),
                state: r.state.clone(),
                sip_packets: r.sip_packets,
                rtp_packets: r.rtp_packets,
                decrypted: files::extras(data, &folder).decrypted_pcap,
            });
        }
        let bundle = legs.first().and_then(|l| {
            let folder = group[0].folder.as_deref()?;
            files::in_folder(
                data,
                &format!("imports/{job}/{folder}"),
                "sip-plus-media-decrypted.pcap",
            )
            .ok()
            .map(|_| l.id)
        });
        if !legs.is_empty() {
            out.push(LogicalCall { legs, bundle });
        }
    }
    Ok(out)
}

/// Calls linked as legs of one logical call, each group ordered by start
/// (the first INVITE), groups in the order of their first leg.
fn groups<'a>(rows: &'a [CallRow], links: &BTreeMap<i64, Vec<i64>>) -> Vec<Vec<&'a CallRow>> {
    let by_id: BTreeMap<i64, &CallRow> = rows.iter().map(|r| (r.id, r)).collect();
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let mut sorted: Vec<&CallRow> = rows.iter().collect();
    sorted.sort_by_key(|r| (r.start_ns, r.id));
    for r in sorted {
        if !seen.insert(r.id) {
            continue;
        }
        let mut group = vec![r];
        let mut todo = vec![r.id];
        while let Some(id) = todo.pop() {
            for o in links.get(&id).into_iter().flatten() {
                if let Some(other) = by_id.get(o)
                    && seen.insert(*o)
                {
                    group.push(other);
                    todo.push(*o);
                }
            }
        }
        group.sort_by_key(|r| (r.start_ns, r.id));
        out.push(group);
    }
    out
}

/// The id the job's call got when its index was merged into the main one.
fn main_id(main: &Index, job: &str, r: &CallRow) -> Result<Option<i64>, IndexError> {
    let folder = r.folder.as_deref().map(|f| format!("imports/{job}/{f}"));
    let page = main.search(&CallQuery {
        call_id: Some(r.call_id.clone()),
        limit: 100,
        ..Default::default()
    })?;
    Ok(page
        .rows
        .iter()
        .find(|m| m.folder == folder && m.start_ns == r.start_ns)
        .map(|m| m.id))
}

/// `GET /hosts/runs/{run}/correlations/{job}`: the import's progress, then
/// the calls with their sides and downloads.
pub async fn correlation_page(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    Path((run, job)): Path<(String, String)>,
) -> Result<Html<String>, AppError> {
    let not_found = || AppError::new(StatusCode::NOT_FOUND, "no such correlation");
    if !valid_run_name(&run) || !valid_run_name(&job) {
        return Err(not_found());
    }
    let c = correlations(&remote_dir(&st).join(&run))
        .into_iter()
        .find(|c| c.job == job)
        .ok_or_else(not_found)?;
    let title = format!("remote/{run}");
    let back = html! { a href="/hosts#past-captures" { "Back to the captures" } };
    render(&st, &ident, &title, c, back).await
}

/// A correlation's page (a remote run's or an S3 session's): the import's
/// progress, then the calls with their sides and downloads.
pub(crate) async fn render(
    st: &Shared,
    ident: &Identity,
    title: &str,
    c: Correlation,
    back: Markup,
) -> Result<Html<String>, AppError> {
    let job = c.job.clone();
    let snap = st.jobs.get(&job);
    let state = snap.as_ref().map(|j| j.state.clone());
    let imported = st.data.join("imports").join(&job).join(INDEX_FILE).exists();
    let calls = match state {
        Some(JobState::Done) | None if imported => {
            let (data, j) = (st.data.clone(), job.clone());
            Some(
                st.db
                    .run(move |main| correlated_calls(&data, main, &j, c.direction))
                    .await?,
            )
        }
        _ => None,
    };
    let body = html! {
        h1 { "Correlation of " (title) }
        p {
            "SIP pcap " code { (c.sip) } ", direction " strong #direction { (c.direction.as_str()) }
            " (the caller's side is " (c.direction.caller_side()) "), added by " (c.user) ". "
            (back)
        }
        (names_note())
        @match (&snap, &calls) {
            (Some(j), None) if j.state == JobState::Running => {
                div #job data-job=(j.id) data-state="running" {
                    progress #job-progress max="100" value=(format!("{:.0}", j.percent)) {}
                    p #job-state { "Merging the media and the SIP pcap by time…" }
                }
            }
            (Some(j), None) if j.state == JobState::Failed => { p.error #correlation-error { (j.message) } }
            (_, Some(calls)) => { (results(snap.as_ref().map(|j| j.message.as_str()), calls)) }
            _ => { p.error { "The import of this correlation is not available (the server restarted before it finished): add the SIP pcap again." } }
        }
    };
    Ok(Html(pages::page("Correlation", ident, body)))
}

fn names_note() -> Markup {
    html! {
        details.names {
            summary { "File names" }
            table {
                thead { tr { th { "rtp-capture-tool" } th { "voxtap call folder" } } }
                tbody {
                    @for (ours, file, fallback) in crate::downloads::CORRELATED {
                        tr { td { code { (ours) } } td { code { (file) } @if let Some(f) = fallback { " (" code { (f) } " when the call had no SRTP)" } } }
                    }
                    tr { td { code { "SIP_plus_media_decrypted.pcap" } " of all legs" } td { code { "sip-plus-media-decrypted.pcap" } " in the first leg's folder" } }
                }
            }
        }
    }
}

fn results(summary: Option<&str>, calls: &[LogicalCall]) -> Markup {
    html! {
        @if let Some(s) = summary.filter(|s| !s.is_empty()) { p.muted #correlation-summary { (s) } }
        @if calls.is_empty() {
            p.error #correlation-error {
                "No call found: the SIP pcap holds no INVITE dialog, or none whose SDP names the captured media's addresses. "
                "Check that it covers the capture's time window."
            }
        }
        table #correlated {
            thead { tr {
                th { "Side" } th { "Call-ID" } th { "From" } th { "To" } th { "State" }
                th.num { "SIP" } th.num { "RTP" } th { "SRTP" } th { "Downloads" }
            } }
            @for (n, call) in calls.iter().enumerate() {
                tbody.logical-call data-call=(n) {
                    @for leg in &call.legs { (leg_row(leg)) }
                    @if let Some(id) = call.bundle {
                        tr.bundle { td colspan="8" { "All " (call.legs.len()) " legs" }
                            td { a download href={"/calls/" (id) "/files/sip-plus-media-decrypted.pcap?download=1"} { "SIP_plus_media_decrypted.pcap (all legs)" } } }
                    }
                }
            }
        }
    }
}

fn leg_row(l: &LegView) -> Markup {
    html! {
        tr.leg data-id=(l.id) data-call-id=(l.call_id) data-side=(l.side) {
            td.side { strong { (l.side) } }
            td { a href={"/calls/" (l.id)} { code { (l.call_id) } } }
            td { (l.from) } td { (l.to) } td { (l.state) }
            td.num { (l.sip_packets) } td.num { (l.rtp_packets) }
            td { @if l.decrypted { "decrypted" } @else { "-" } }
            td {
                @for (name, _, _) in crate::downloads::CORRELATED {
                    a.dl download href={"/calls/" (l.id) "/correlated/" (name)} { (name) } " "
                }
            }
        }
    }
}

/// The form that adds a SIP pcap and its direction to a capture (a remote
/// run's or an S3 session's).
pub(crate) fn sip_form(class: &str, action: &str, csrf: &str) -> Markup {
    html! {
        form class=(class) method="post" action=(action) enctype="multipart/form-data" {
            input type="hidden" name="csrf" value=(csrf);
            input type="file" name="sip" required accept=".pcap,.pcapng,.cap";
            select name="direction" {
                option value="inbound" { "Inbound (carrier → core)" }
                option value="outbound" { "Outbound (core → carrier)" }
            }
            button type="submit" { "Correlate" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_follow_the_direction() {
        assert_eq!(leg_sides(Direction::Inbound, 2), ["carrier", "core"]);
        assert_eq!(leg_sides(Direction::Outbound, 2), ["core", "carrier"]);
        assert_eq!(
            leg_sides(Direction::Inbound, 3),
            ["carrier", "core", "core"]
        );
        assert_eq!(leg_sides(Direction::Inbound, 1), ["carrier → core"]);
        assert_eq!(leg_sides(Direction::Outbound, 1), ["core → carrier"]);
        assert!(leg_sides(Direction::Outbound, 0).is_empty());
    }

    #[test]
    fn segments_and_run_names() {
        assert!(is_segment("lab_local_loopback_lo_0001.pcap"));
        assert!(is_segment("a_b_12345.pcap"));
        assert!(!is_segment("call.pcap"));
        assert!(!is_segment("media-decrypted.pcap"));
        assert!(!is_segment("_0001.pcap"));
        assert!(!is_segment("x_01.pcap"));
        assert!(valid_run_name("20261203T061500-2"));
        assert!(!valid_run_name("../etc"));
        assert!(!valid_run_name(".hidden"));
        assert!(!valid_run_name(""));
        assert_eq!(Direction::parse("inbound"), Some(Direction::Inbound));
        assert_eq!(Direction::parse("sideways"), None);
    }
}
