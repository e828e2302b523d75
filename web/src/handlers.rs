//! Route handlers: pages, downloads, API, import.

use std::io::{Seek, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Form, Multipart, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use voxtap_engine::index::{AccessEntry, CallDetail, CallQuery, CallRow, IndexError, SortKey};

use crate::files::{self, FileError};
use crate::jobs::Job;
use crate::{Identity, SESSION_COOKIE, Shared, cookie_value, pages};

/// An error answered as a short text (pages) or `{"error": ...}` (API).
pub struct AppError {
    status: StatusCode,
    msg: String,
    json: bool,
}

impl AppError {
    pub fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        AppError {
            status,
            msg: msg.into(),
            json: false,
        }
    }
    fn json(mut self) -> Self {
        self.json = true;
        self
    }
}

impl From<IndexError> for AppError {
    fn from(e: IndexError) -> Self {
        tracing::error!("{e}");
        AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "call index error")
    }
}

impl From<FileError> for AppError {
    fn from(e: FileError) -> Self {
        let status = match e {
            FileError::BadName => StatusCode::BAD_REQUEST,
            FileError::Outside => StatusCode::FORBIDDEN,
            FileError::Missing => StatusCode::NOT_FOUND,
        };
        AppError::new(status, e.to_string())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if self.json {
            (self.status, Json(serde_json::json!({"error": self.msg}))).into_response()
        } else {
            (self.status, Html(pages::error_page(self.status, &self.msg))).into_response()
        }
    }
}

type R<T> = Result<T, AppError>;

fn not_found() -> AppError {
    AppError::new(StatusCode::NOT_FOUND, "no such call")
}

// ---------------------------------------------------------------- login

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Only same-site paths: `/x`, never `//host` or `/\host` (open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.starts_with("/\\") => {
            n.to_string()
        }
        _ => "/calls".to_string(),
    }
}

const LOGIN_COOKIE: &str = "voxtap_login";

pub async fn login_page(
    State(st): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    // Login CSRF: a double-submit token, since there is no session yet.
    // An existing token is reused: a second login page loading in parallel
    // (another tab, a favicon redirect) must not invalidate the first form.
    let token = cookie_value(&headers, LOGIN_COOKIE)
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(String::from)
        .unwrap_or_else(crate::auth::random_token);
    let cookie = st.cookie(LOGIN_COOKIE, &token, "/login", Some(600));
    (
        [(header::SET_COOKIE, cookie)],
        Html(pages::login(
            &token,
            &safe_next(q.next.as_deref()),
            None,
            st.no_auth.is_some(),
        )),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    user: String,
    password: String,
    csrf: String,
    next: Option<String>,
}

pub async fn login_post(
    State(st): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = safe_next(f.next.as_deref());
    let cookie_ok =
        cookie_value(&headers, LOGIN_COOKIE).is_some_and(|c| crate::auth::eq_const(c, &f.csrf));
    if !cookie_ok {
        return AppError::new(
            StatusCode::FORBIDDEN,
            "the login form expired or was not sent by this site; reload the login page",
        )
        .into_response();
    }
    let st2 = st.clone();
    let (user, password) = (f.user.clone(), f.password);
    let ok = tokio::task::spawn_blocking(move || st2.check_login(&user, &password))
        .await
        .unwrap_or(false);
    if !ok {
        st.metrics.login_failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(target: "access", user = %f.user, "login failed");
        let token = crate::auth::random_token();
        return (
            StatusCode::UNAUTHORIZED,
            [(
                header::SET_COOKIE,
                st.cookie(LOGIN_COOKIE, &token, "/login", Some(600)),
            )],
            Html(pages::login(
                &token,
                &next,
                Some("Wrong user name or password."),
                false,
            )),
        )
            .into_response();
    }
    let (sid, _) = match st.sessions.create(&f.user) {
        Ok(x) => x,
        Err(e) => {
            tracing::error!("creating a session: {e}");
            return AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "cannot create a session")
                .into_response();
        }
    };
    tracing::info!(target: "access", user = %f.user, "login");
    let mut resp = Redirect::to(&next).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&st.cookie(SESSION_COOKIE, &sid, "/", None)) {
        h.append(header::SET_COOKIE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&st.cookie(LOGIN_COOKIE, "", "/login", Some(0))) {
        h.append(header::SET_COOKIE, v);
    }
    resp
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: Option<String>,
}

pub async fn logout(
    State(st): State<Shared>,
    Extension(id): Extension<Identity>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> R<Response> {
    if !id.csrf_ok(f.csrf.as_deref()) {
        return Err(csrf_refused());
    }
    if let Some(sid) = cookie_value(&headers, SESSION_COOKIE) {
        st.sessions.remove(sid);
    }
    Ok((
        [(
            header::SET_COOKIE,
            st.cookie(SESSION_COOKIE, "", "/", Some(0)),
        )],
        Redirect::to("/login"),
    )
        .into_response())
}

fn csrf_refused() -> AppError {
    AppError::new(
        StatusCode::FORBIDDEN,
        "missing or wrong CSRF token: reload the page and submit the form again",
    )
}

// ---------------------------------------------------------------- calls

/// The list's filters as the form sends them: all text, empty = no filter.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Filters {
    pub from: Option<String>,
    pub to: Option<String>,
    pub party: Option<String>,
    pub call_id: Option<String>,
    pub ip: Option<String>,
    pub state: Option<String>,
    pub mos_min: Option<String>,
    pub mos_max: Option<String>,
    pub dur_min: Option<String>,
    pub dur_max: Option<String>,
    pub sort: Option<String>,
    pub dir: Option<String>,
    pub page: Option<String>,
    pub per_page: Option<String>,
}

fn nonempty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// `2024-05-01T10:00[:00]` or `2024-05-01 10:00` (UTC) to ns since the epoch.
pub fn parse_time(s: &str) -> Option<u64> {
    let s = s.trim().trim_end_matches('Z');
    let (date, time) = s.split_once(['T', ' ']).unwrap_or((s, "00:00"));
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, dd) = (d.next()??, d.next()??, d.next()??);
    if d.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&dd) {
        return None;
    }
    let mut t = time.split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let mi: i64 = t.next()?.parse().ok()?;
    let sec: f64 = t.next().map(|x| x.parse().ok()).unwrap_or(Some(0.0))?;
    if !(0..24).contains(&h) || !(0..60).contains(&mi) || !(0.0..61.0).contains(&sec) {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + dd - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60;
    if secs < 0 {
        return None;
    }
    Some(secs as u64 * 1_000_000_000 + (sec * 1e9) as u64)
}

impl Filters {
    pub fn to_query(&self) -> Result<CallQuery, String> {
        let mut q = CallQuery {
            descending: true,
            ..Default::default()
        };
        if let Some(s) = nonempty(&self.from) {
            q.start_from_ns = Some(parse_time(s).ok_or(format!("bad start time '{s}'"))?);
        }
        if let Some(s) = nonempty(&self.to) {
            q.start_to_ns = Some(parse_time(s).ok_or(format!("bad end time '{s}'"))?);
        }
        q.party = nonempty(&self.party).map(String::from);
        q.call_id = nonempty(&self.call_id).map(String::from);
        if let Some(s) = nonempty(&self.ip) {
            q.ip = Some(
                s.parse::<IpAddr>()
                    .map_err(|_| format!("'{s}' is not an IP address"))?,
            );
        }
        q.state = nonempty(&self.state).map(String::from);
        let num = |v: &Option<String>, what: &str| -> Result<Option<f64>, String> {
            nonempty(v)
                .map(|s| {
                    s.parse::<f64>()
                        .ok()
                        .filter(|x| x.is_finite() && *x >= 0.0)
                        .ok_or(format!("bad {what} '{s}'"))
                })
                .transpose()
        };
        q.mos_min = num(&self.mos_min, "minimum MOS")?;
        q.mos_max = num(&self.mos_max, "maximum MOS")?;
        q.duration_min_ms = num(&self.dur_min, "minimum duration")?.map(|s| (s * 1000.0) as u64);
        q.duration_max_ms = num(&self.dur_max, "maximum duration")?.map(|s| (s * 1000.0) as u64);
        if let Some(s) = nonempty(&self.sort) {
            q.sort = SortKey::parse(s).ok_or(format!("unknown sort '{s}'"))?;
        }
        q.descending = nonempty(&self.dir) != Some("asc");
        let per_page = nonempty(&self.per_page)
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(50)
            .clamp(1, 500);
        let page = nonempty(&self.page)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(1)
            .max(1);
        q.limit = per_page;
        q.offset = (page - 1) * u64::from(per_page);
        Ok(q)
    }
}

pub async fn calls_page(
    State(st): State<Shared>,
    Extension(id): Extension<Identity>,
    Query(f): Query<Filters>,
) -> R<Html<String>> {
    let (page, error) = match f.to_query() {
        Ok(q) => (Some(st.db.run(move |idx| idx.search(&q)).await?), None),
        Err(e) => (None, Some(e)),
    };
    Ok(Html(pages::calls(&id, &f, page.as_ref(), error.as_deref())))
}

/// The table body alone, for the list's live refresh.
pub async fn calls_rows(State(st): State<Shared>, Query(f): Query<Filters>) -> R<Html<String>> {
    let q = f
        .to_query()
        .map_err(|e| AppError::new(StatusCode::BAD_REQUEST, e))?;
    let page = st.db.run(move |idx| idx.search(&q)).await?;
    Ok(Html(pages::call_rows(&page)))
}

pub async fn api_calls(State(st): State<Shared>, Query(f): Query<Filters>) -> R<Response> {
    let q = f
        .to_query()
        .map_err(|e| AppError::new(StatusCode::BAD_REQUEST, e).json())?;
    let page = st
        .db
        .run(move |idx| idx.search(&q))
        .await
        .map_err(|e| AppError::from(e).json())?;
    Ok(Json(page).into_response())
}

async fn detail(st: &Shared, id: i64) -> R<CallDetail> {
    st.db
        .run(move |idx| idx.call_detail(id))
        .await?
        .ok_or_else(not_found)
}

/// The JSON report: what the index knows plus which files exist.
fn report(st: &Shared, d: &CallDetail) -> serde_json::Value {
    let extras = d
        .call
        .folder
        .as_deref()
        .map(|f| files::extras(&st.data, f))
        .unwrap_or_default();
    serde_json::json!({
        "call": d.call,
        "sip": d.sip,
        "streams": d.streams,
        "dtmf": d.dtmf,
        "legs": d.legs,
        "files": {
            "pcap": d.call.pcap,
            "decrypted_pcap": extras.decrypted_pcap,
            "wavs": extras.wavs,
        },
    })
}

pub async fn api_call(State(st): State<Shared>, Path(id): Path<i64>) -> R<Response> {
    let d = detail(&st, id).await.map_err(AppError::json)?;
    Ok(Json(report(&st, &d)).into_response())
}

pub async fn call_page(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    Path(id): Path<i64>,
) -> R<Html<String>> {
    let d = detail(&st, id).await?;
    let extras = d
        .call
        .folder
        .as_deref()
        .map(|f| files::extras(&st.data, f))
        .unwrap_or_default();
    audit(&st, &ident, "view", Some(id), "").await;
    let data = st.data.clone();
    let (d, series) = tokio::task::spawn_blocking(move || {
        let s = crate::quality::timelines(&data, &d);
        (d, s)
    })
    .await
    .map_err(|_| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "timeline task failed"))?;
    let legs = crate::legs_view::group(&st, &d).await?;
    Ok(Html(pages::call(&ident, &d, &extras, &series, &legs)))
}

/// Record who looked at or downloaded what: the `access` log target and
/// the index's access_log table.
async fn audit(st: &Shared, ident: &Identity, action: &str, call: Option<i64>, detail: &str) {
    tracing::info!(target: "access", user = %ident.user, remote = %ident.remote, action, call, detail);
    let e = AccessEntry {
        ts_ns: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
        user: ident.user.clone(),
        remote: ident.remote.clone(),
        action: action.to_string(),
        call,
        detail: detail.to_string(),
    };
    if let Err(e) = st.db.run(move |idx| idx.log_access(&e)).await {
        tracing::error!("writing the access log: {e}");
    }
}

fn folder_of(c: &CallRow) -> R<&str> {
    c.folder.as_deref().ok_or_else(|| {
        AppError::new(
            StatusCode::NOT_FOUND,
            "this call was indexed without its files (CSV-only import)",
        )
    })
}

fn attachment_name(c: &CallRow, file: &str) -> String {
    let base: String = c
        .folder
        .as_deref()
        .and_then(|f| f.rsplit('/').next())
        .unwrap_or("call")
        .chars()
        .filter(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_' | '@'))
        .collect();
    format!("{base}-{file}")
}

async fn send_file(path: PathBuf, content_type: &str, name: &str) -> R<Response> {
    let f = tokio::fs::File::open(&path)
        .await
        .map_err(|_| AppError::new(StatusCode::NOT_FOUND, "no such file"))?;
    let len = f.metadata().await.map(|m| m.len()).ok();
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(f));
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    if let Some(len) = len {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// A call folder's file from the disk or, once uploaded to S3 and deleted
/// locally, from S3 through the folder's manifest: downloads work the same
/// for both.
async fn send_call_file(
    data: &std::path::Path,
    folder: &str,
    name: &str,
    content_type: &str,
    attachment: &str,
) -> R<Response> {
    match files::in_folder(data, folder, name) {
        Ok(p) => send_file(p, content_type, attachment).await,
        Err(FileError::Missing) => {
            let m = files::remote(data, folder, name)?;
            let (n, what) = (name.to_string(), format!("{folder}/{name}"));
            let bytes = tokio::task::spawn_blocking(move || m.fetch(&n))
                .await
                .map_err(|_| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "fetch failed"))?
                .map_err(|e| {
                    tracing::error!("fetching {what} from S3: {e}");
                    AppError::new(
                        StatusCode::BAD_GATEWAY,
                        "this file is held in S3, which could not be read",
                    )
                })?;
            let mut resp = Response::new(Body::from(bytes));
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(content_type)
                    .unwrap_or(HeaderValue::from_static("application/octet-stream")),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{attachment}\""))
            {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            Ok(resp)
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn download(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    Path((id, kind)): Path<(i64, String)>,
) -> R<Response> {
    let d = detail(&st, id).await?;
    let folder = folder_of(&d.call)?.to_string();
    let resp = match kind.as_str() {
        "pcap" => {
            send_call_file(
                &st.data,
                &folder,
                "call.pcap",
                "application/vnd.tcpdump.pcap",
                &attachment_name(&d.call, "call.pcap"),
            )
            .await?
        }
        "decrypted" => {
            send_call_file(
                &st.data,
                &folder,
                files::DECRYPTED_PCAP,
                "application/vnd.tcpdump.pcap",
                &attachment_name(&d.call, files::DECRYPTED_PCAP),
            )
            .await?
        }
        "sip" => {
            send_call_file(
                &st.data,
                &folder,
                "sip.txt",
                "text/plain; charset=utf-8",
                &attachment_name(&d.call, "sip.txt"),
            )
            .await?
        }
        "report" => {
            let body = serde_json::to_vec_pretty(&report(&st, &d)).unwrap_or_default();
            (
                [
                    (header::CONTENT_TYPE, "application/json".to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!(
                            "attachment; filename=\"{}\"",
                            attachment_name(&d.call, "report.json")
                        ),
                    ),
                ],
                body,
            )
                .into_response()
        }
        "zip" => {
            let report = serde_json::to_vec_pretty(&report(&st, &d)).unwrap_or_default();
            let data = st.data.clone();
            let f = folder.clone();
            let file = tokio::task::spawn_blocking(move || build_zip(&data, &f, &report))
                .await
                .map_err(|_| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "zip failed"))??;
            let len = file.metadata().map(|m| m.len()).ok();
            let body = Body::from_stream(tokio_util::io::ReaderStream::new(
                tokio::fs::File::from_std(file),
            ));
            let mut resp = Response::new(body);
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/zip"),
            );
            if let Some(len) = len {
                h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            }
            if let Ok(v) = HeaderValue::from_str(&format!(
                "attachment; filename=\"{}\"",
                attachment_name(&d.call, "bundle.zip")
            )) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            resp
        }
        _ => {
            return Err(AppError::new(
                StatusCode::NOT_FOUND,
                "unknown download (pcap, decrypted, sip, report, zip)",
            ));
        }
    };
    st.metrics.downloads.fetch_add(1, Ordering::Relaxed);
    audit(&st, &ident, "download", Some(id), &kind).await;
    Ok(resp)
}

/// The bundle: call.pcap, sip.txt, report.json and, when the media work
/// wrote them, the decrypted PCAP and WAVs. Built in an unnamed temporary
/// file so a long call's PCAP is not held in memory.
fn build_zip(data: &std::path::Path, folder: &str, report: &[u8]) -> R<std::fs::File> {
    let fail = |e: &dyn std::fmt::Display| {
        tracing::error!("building zip for {folder}: {e}");
        AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "building the zip failed")
    };
    let tmp = tempfile::tempfile().map_err(|e| fail(&e))?;
    let mut z = zip::ZipWriter::new(tmp);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    let extras = files::extras(data, folder);
    let mut names = vec!["call.pcap".to_string(), "sip.txt".to_string()];
    if extras.decrypted_pcap {
        names.push(files::DECRYPTED_PCAP.to_string());
    }
    names.extend(extras.wavs);
    for name in names {
        if let Ok(p) = files::in_folder(data, folder, &name) {
            let mut src = std::fs::File::open(&p).map_err(|e| fail(&e))?;
            z.start_file(name.as_str(), opts).map_err(|e| fail(&e))?;
            std::io::copy(&mut src, &mut z).map_err(|e| fail(&e))?;
        } else if let Ok(m) = files::remote(data, folder, &name) {
            // Held in S3 only (this runs on a blocking thread).
            let bytes = m.fetch(&name).map_err(|e| fail(&e))?;
            z.start_file(name.as_str(), opts).map_err(|e| fail(&e))?;
            z.write_all(&bytes).map_err(|e| fail(&e))?;
        }
    }
    z.start_file("report.json", opts).map_err(|e| fail(&e))?;
    z.write_all(report).map_err(|e| fail(&e))?;
    let mut f = z.finish().map_err(|e| fail(&e))?;
    f.rewind().map_err(|e| fail(&e))?;
    Ok(f)
}

/// Any file of the call's folder by name (the WAVs the media work writes).
pub async fn call_file(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    Path((id, name)): Path<(i64, String)>,
) -> R<Response> {
    // Refuse bad names before touching the index or the disk.
    files::check_name(&name)?;
    let d = detail(&st, id).await?;
    let folder = folder_of(&d.call)?;
    let ct = if name.to_ascii_lowercase().ends_with(".wav") {
        "audio/wav"
    } else if name.ends_with(".pcap") {
        "application/vnd.tcpdump.pcap"
    } else {
        "application/octet-stream"
    };
    let mut resp = send_call_file(
        &st.data,
        folder,
        &name,
        ct,
        &attachment_name(&d.call, &name),
    )
    .await?;
    if ct == "audio/wav" {
        // inline, so the <audio> element can play it.
        resp.headers_mut().remove(header::CONTENT_DISPOSITION);
    }
    st.metrics.downloads.fetch_add(1, Ordering::Relaxed);
    audit(&st, &ident, "download", Some(id), &name).await;
    Ok(resp)
}

// ---------------------------------------------------------------- sensor

pub struct FsUsage {
    pub total: u64,
    pub free: u64,
}

fn fs_usage(p: &std::path::Path) -> Option<FsUsage> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we pass and reads the
    // NUL-terminated path; both live for the call.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some(FsUsage {
        total: s.f_blocks as u64 * s.f_frsize as u64,
        free: s.f_bavail as u64 * s.f_frsize as u64,
    })
}

pub async fn sensor_page(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
) -> R<Html<String>> {
    let calls = st.db.run(|idx| idx.count_calls()).await?;
    let log = st.db.run(|idx| idx.access_log(20)).await?;
    let st2 = st.clone();
    let usage = tokio::task::spawn_blocking(move || st2.store_usage())
        .await
        .unwrap_or(0);
    let fs = fs_usage(&st.data);
    let statuses = read_statuses(&st).await;
    Ok(Html(pages::sensor(
        &ident,
        &st,
        calls,
        usage,
        fs.as_ref(),
        &log,
        &statuses,
    )))
}

async fn read_statuses(st: &Shared) -> Vec<(String, serde_json::Value)> {
    let data = st.data.clone();
    let all = tokio::task::spawn_blocking(move || voxtap_sensor::status::read_all(&data))
        .await
        .unwrap_or_default();
    crate::status_view::ordered(all)
}

/// The live status cards alone, for the sensor page's refresh.
pub async fn sensor_status(State(st): State<Shared>) -> Html<String> {
    let all = read_statuses(&st).await;
    Html(crate::status_view::cards(&all, voxtap_sensor::status::now_unix()).into_string())
}

pub async fn healthz(State(st): State<Shared>) -> R<Response> {
    // Healthy = the index answers.
    match st.db.run(|idx| idx.count_calls()).await {
        Ok(_) => Ok("ok\n".into_response()),
        Err(_) => Ok((StatusCode::SERVICE_UNAVAILABLE, "index unavailable\n").into_response()),
    }
}

pub async fn metrics(State(st): State<Shared>) -> R<Response> {
    let calls = st.db.run(|idx| idx.count_calls()).await?;
    let statuses = read_statuses(&st).await;
    let m = &st.metrics;
    let l = |x: &std::sync::atomic::AtomicU64| x.load(Ordering::Relaxed);
    let (running, done, failed) = st.jobs.counts();
    let body = format!(
        "# HELP voxtap_calls_indexed Calls in the call index.\n\
         # TYPE voxtap_calls_indexed gauge\n\
         voxtap_calls_indexed {calls}\n\
         # HELP voxtap_http_requests_total HTTP requests answered.\n\
         # TYPE voxtap_http_requests_total counter\n\
         voxtap_http_requests_total {}\n\
         # HELP voxtap_http_errors_total HTTP requests answered with an error, by class.\n\
         # TYPE voxtap_http_errors_total counter\n\
         voxtap_http_errors_total{{class=\"4xx\"}} {}\n\
         voxtap_http_errors_total{{class=\"5xx\"}} {}\n\
         # HELP voxtap_downloads_total Files downloaded (PCAP, SIP, report, zip, WAV).\n\
         # TYPE voxtap_downloads_total counter\n\
         voxtap_downloads_total {}\n\
         # HELP voxtap_login_failures_total Failed logins.\n\
         # TYPE voxtap_login_failures_total counter\n\
         voxtap_login_failures_total {}\n\
         # HELP voxtap_import_jobs Import jobs by state.\n\
         # TYPE voxtap_import_jobs gauge\n\
         voxtap_import_jobs{{state=\"running\"}} {running}\n\
         voxtap_import_jobs{{state=\"done\"}} {done}\n\
         voxtap_import_jobs{{state=\"failed\"}} {failed}\n\
         # HELP voxtap_uptime_seconds Seconds since the server started.\n\
         # TYPE voxtap_uptime_seconds gauge\n\
         voxtap_uptime_seconds {}\n{}",
        l(&m.requests),
        l(&m.requests_4xx),
        l(&m.requests_5xx),
        l(&m.downloads),
        l(&m.login_failures),
        st.started.elapsed().as_secs(),
        crate::status_view::prometheus(
            &statuses,
            voxtap_sensor::status::now_unix(),
            &[
                "voxtap_calls_indexed",
                "voxtap_http_requests_total",
                "voxtap_http_errors_total",
                "voxtap_downloads_total",
                "voxtap_login_failures_total",
                "voxtap_import_jobs",
                "voxtap_uptime_seconds",
            ],
        ),
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}

pub async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css"),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        include_str!("../static/style.css"),
    )
        .into_response()
}

pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript"),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        include_str!("../static/app.js"),
    )
        .into_response()
}

// ---------------------------------------------------------------- import

pub async fn import_page(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
) -> Html<String> {
    Html(pages::import(&ident, &st.jobs.list(), None))
}

/// pcap (both byte orders, µs and ns) and pcapng magic numbers.
pub fn is_capture_magic(b: &[u8]) -> bool {
    matches!(
        b.get(..4),
        Some(
            [0xd4, 0xc3, 0xb2, 0xa1]
                | [0xa1, 0xb2, 0xc3, 0xd4]
                | [0x4d, 0x3c, 0xb2, 0xa1]
                | [0xa1, 0xb2, 0x3c, 0x4d]
                | [0x0a, 0x0d, 0x0d, 0x0a]
        )
    )
}

fn upload_name(n: usize, name: Option<&str>) -> String {
    let clean: String = name
        .unwrap_or("")
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(80)
        .collect();
    let clean = clean.trim_start_matches('.');
    format!(
        "{n:03}-{}",
        if clean.is_empty() {
            "upload.pcap"
        } else {
            clean
        }
    )
}

pub async fn import_post(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    headers: HeaderMap,
    mut mp: Multipart,
) -> Response {
    let html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    let fail = |status: StatusCode, msg: String| -> Response {
        tracing::warn!(user = %ident.user, "import refused: {msg}");
        if html {
            (
                status,
                Html(pages::import(&ident, &st.jobs.list(), Some(&msg))),
            )
                .into_response()
        } else {
            (status, Json(serde_json::json!({"error": msg}))).into_response()
        }
    };
    let mut csrf_ok = ident.csrf_ok(headers.get("x-csrf-token").and_then(|v| v.to_str().ok()));
    let job_id = st.jobs.next_id();
    let upload_dir = st.data.join("imports").join(format!("{job_id}.upload"));
    let mut saved: Vec<(PathBuf, String)> = Vec::new();
    let cleanup = |dir: &std::path::Path| {
        let _ = std::fs::remove_dir_all(dir);
    };
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                cleanup(&upload_dir);
                return fail(StatusCode::BAD_REQUEST, format!("bad upload: {e}"));
            }
        };
        match field.name() {
            Some("csrf") => {
                let v = field.text().await.unwrap_or_default();
                csrf_ok = csrf_ok || ident.csrf_ok(Some(&v));
            }
            Some("files") => {
                // The token must come first: nothing is written to disk for
                // a forged request.
                if !csrf_ok {
                    cleanup(&upload_dir);
                    return csrf_refused().into_response();
                }
                let shown = field.file_name().unwrap_or("upload").to_string();
                if shown.is_empty() {
                    continue; // the form's empty file input
                }
                let name = upload_name(saved.len(), Some(&shown));
                if let Err(e) = std::fs::create_dir_all(&upload_dir) {
                    return fail(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("cannot create the upload folder: {e}"),
                    );
                }
                let path = upload_dir.join(&name);
                let mut file = match std::fs::File::create(&path) {
                    Ok(f) => f,
                    Err(e) => {
                        cleanup(&upload_dir);
                        return fail(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            format!("cannot store the upload: {e}"),
                        );
                    }
                };
                let mut field = field;
                let mut head: Vec<u8> = Vec::new();
                let mut checked = false;
                loop {
                    let chunk = match field.chunk().await {
                        Ok(Some(c)) => c,
                        Ok(None) => break,
                        Err(e) => {
                            cleanup(&upload_dir);
                            return fail(
                                StatusCode::BAD_REQUEST,
                                format!("upload of {shown} broke off: {e}"),
                            );
                        }
                    };
                    if !checked {
                        head.extend_from_slice(&chunk[..chunk.len().min(4)]);
                        if head.len() >= 4 {
                            checked = true;
                            if !is_capture_magic(&head) {
                                cleanup(&upload_dir);
                                return fail(
                                    StatusCode::BAD_REQUEST,
                                    format!(
                                        "{shown} is not a pcap or pcapng capture (it starts with {}); upload .pcap or .pcapng files",
                                        head[..4]
                                            .iter()
                                            .map(|b| format!("{b:02x}"))
                                            .collect::<Vec<_>>()
                                            .join(" ")
                                    ),
                                );
                            }
                        }
                    }
                    if let Err(e) = file.write_all(&chunk) {
                        cleanup(&upload_dir);
                        return fail(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            format!("cannot store the upload: {e}"),
                        );
                    }
                }
                if !checked {
                    cleanup(&upload_dir);
                    return fail(
                        StatusCode::BAD_REQUEST,
                        format!("{shown} is too short to be a pcap or pcapng capture"),
                    );
                }
                saved.push((path, shown));
            }
            _ => {}
        }
    }
    if !csrf_ok {
        cleanup(&upload_dir);
        return csrf_refused().into_response();
    }
    if saved.is_empty() {
        return fail(
            StatusCode::BAD_REQUEST,
            "no file uploaded: choose one or more .pcap/.pcapng files".into(),
        );
    }
    let total: u64 = saved
        .iter()
        .filter_map(|(p, _)| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let job = Job::new(
        job_id.clone(),
        ident.user.clone(),
        saved.iter().map(|(_, n)| n.clone()).collect(),
        total,
    );
    st.jobs.insert(job.clone());
    st.metrics.imports.fetch_add(1, Ordering::Relaxed);
    audit(
        &st,
        &ident,
        "import",
        None,
        &format!("job {job_id}: {}", job.files.join(", ")),
    )
    .await;
    crate::jobs::spawn(
        st.clone(),
        job,
        saved.into_iter().map(|(p, _)| p).collect(),
        upload_dir,
    );
    if html {
        Redirect::to(&format!("/import/{job_id}")).into_response()
    } else {
        (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"job": job_id, "status": format!("/api/import/{job_id}")})),
        )
            .into_response()
    }
}

pub async fn job_page(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    Path(job): Path<String>,
) -> R<Html<String>> {
    let j = st
        .jobs
        .get(&job)
        .ok_or_else(|| AppError::new(StatusCode::NOT_FOUND, "no such import job"))?;
    Ok(Html(pages::job(&ident, &j)))
}

pub async fn api_job(State(st): State<Shared>, Path(job): Path<String>) -> R<Response> {
    let j = st
        .jobs
        .get(&job)
        .ok_or_else(|| AppError::new(StatusCode::NOT_FOUND, "no such import job").json())?;
    Ok(Json(j).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        // date -u -d 2023-11-14T22:13:20 +%s = 1700000000
        assert_eq!(
            parse_time("2023-11-14T22:13:20"),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(
            parse_time("2023-11-14 22:13"),
            Some(1_699_999_980_000_000_000)
        );
        assert_eq!(parse_time("2023-13-01T00:00"), None);
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn next_is_same_site() {
        assert_eq!(safe_next(Some("/calls/3")), "/calls/3");
        assert_eq!(safe_next(Some("//evil.example/")), "/calls");
        assert_eq!(safe_next(Some("https://evil.example/")), "/calls");
        assert_eq!(safe_next(Some("/\\evil.example")), "/calls");
    }

    #[test]
    fn upload_names_are_flat() {
        assert_eq!(upload_name(0, Some("../../etc/x.pcap")), "000-x.pcap");
        assert_eq!(upload_name(1, Some("..")), "001-upload.pcap");
        assert_eq!(upload_name(2, Some("a b.pcapng")), "002-ab.pcapng");
    }
}
