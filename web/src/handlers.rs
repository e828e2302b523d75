//! Route handlers: login, the call list, a call's page and JSON, the
//! sensor page, health and metrics, and the errors they answer with.

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Extension, Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use voxtap_engine::index::{CallDetail, CallPage, CallQuery, CallRow, IndexError, SipRow, SortKey};

use crate::hub::query::HubFilter;

use crate::audit::action;
use crate::csrf::CheckedForm;
use crate::files::{self, Extras, FileError};
use crate::gate::ClientAddr;
use crate::{Identity, SESSION_COOKIE, Shared, cookie_value, pages};

/// An error answered as a short text (pages) or `{"error": ...}` (API).
pub struct AppError {
    status: StatusCode,
    msg: String,
    json: bool,
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn message(&self) -> String {
        self.msg.clone()
    }

    pub fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        AppError {
            status,
            msg: msg.into(),
            json: false,
        }
    }
    pub fn json(self) -> Self {
        self.json_if(true)
    }
    /// Answered as JSON if `json`, else as a page.
    pub fn json_if(mut self, json: bool) -> Self {
        self.json = json;
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

/// Only a path on this site: `/x`, never `//host` or `/\host` (another
/// site), and nothing a browser would strip or a header could not carry:
/// no control characters (a tab in `/\t/host` is dropped by browsers,
/// leaving `//host`), no backslash anywhere, no spaces, ASCII only.
fn safe_next(next: Option<&str>) -> String {
    let ok = |n: &str| {
        n.starts_with('/')
            && !n.starts_with("//")
            && n.len() <= 2048
            && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
    };
    match next {
        Some(n) if ok(n) => n.to_string(),
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

/// The login page again with `msg`, and a fresh form token.
fn login_refused(st: &Shared, status: StatusCode, next: &str, msg: &str) -> Response {
    let token = crate::auth::random_token();
    (
        status,
        [(
            header::SET_COOKIE,
            st.cookie(LOGIN_COOKIE, &token, "/login", Some(600)),
        )],
        Html(pages::login(&token, next, Some(msg), false)),
    )
        .into_response()
}

pub async fn login_post(
    State(st): State<Shared>,
    Extension(ClientAddr(addr)): Extension<ClientAddr>,
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
    let remote = addr.map_or_else(|| "-".into(), |a| a.to_string());
    let attempt = match st.throttle.attempt(&f.user, addr).await {
        Ok(a) => a,
        Err(r) => {
            tracing::warn!(target: "access", user = %f.user, %remote, "login throttled");
            let page = login_refused(&st, StatusCode::TOO_MANY_REQUESTS, &next, &r.message());
            return crate::gate::too_many(r, page);
        }
    };
    let st2 = st.clone();
    let (user, password) = (f.user.clone(), f.password);
    let ok = tokio::task::spawn_blocking(move || st2.check_login(&user, &password))
        .await
        .unwrap_or(false);
    if !ok {
        attempt.failed();
        st.metrics.login_failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(target: "access", user = %f.user, %remote, "login failed");
        record(&st, &f.user, &remote, action::LOGIN_FAILED, None, "").await;
        return login_refused(
            &st,
            StatusCode::UNAUTHORIZED,
            &next,
            "Wrong user name or password.",
        );
    }
    attempt.succeeded();
    start_session(&st, &f.user, &remote, &next).await
}

/// A new session for `user` (who just gave the right password): its
/// cookie, and the redirect to `next`.
async fn start_session(st: &Shared, user: &str, remote: &str, next: &str) -> Response {
    let cred = st
        .users
        .get(user)
        .map(|u| st.fingerprint(u))
        .unwrap_or_default();
    let (sid, _) = match st.sessions.create(user, &cred) {
        Ok(x) => x,
        Err(e) => {
            tracing::error!("creating a session: {e}");
            return AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "cannot create a session")
                .into_response();
        }
    };
    tracing::info!(target: "access", user = %user, %remote, "login");
    record(st, user, remote, action::LOGIN, None, "").await;
    let mut resp = Redirect::to(next).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&st.cookie(SESSION_COOKIE, &sid, "/", None)) {
        h.append(header::SET_COOKIE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&st.cookie(LOGIN_COOKIE, "", "/login", Some(0))) {
        h.append(header::SET_COOKIE, v);
    }
    resp
}

fn logged_out(st: &Shared) -> Response {
    (
        [(
            header::SET_COOKIE,
            st.cookie(SESSION_COOKIE, "", "/", Some(0)),
        )],
        Redirect::to("/login"),
    )
        .into_response()
}

pub async fn logout(State(st): State<Shared>, headers: HeaderMap, _form: CheckedForm) -> Response {
    if let Some(sid) = cookie_value(&headers, SESSION_COOKIE) {
        st.sessions.remove(sid);
    }
    logged_out(&st)
}

/// Ends every session of the user asking, in every browser.
pub async fn logout_everywhere(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    _form: CheckedForm,
) -> Response {
    match st.sessions.remove_user(&ident.user) {
        Ok(n) => {
            let detail = format!("{n} session(s)");
            let a = action::LOGOUT_EVERYWHERE;
            record(&st, &ident.user, &ident.remote, a, None, &detail).await;
            logged_out(&st)
        }
        Err(e) => {
            tracing::error!("ending sessions of {}: {e}", ident.user);
            AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "cannot end the sessions")
                .into_response()
        }
    }
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
    /// RTP loss in the worst direction, at least this many percent.
    pub loss_min: Option<String>,
    pub sort: Option<String>,
    pub dir: Option<String>,
    pub page: Option<String>,
    pub per_page: Option<String>,
    /// Hub only: the sensor, the final status code.
    pub sensor: Option<String>,
    pub code: Option<String>,
    /// The dashboards' drill-down: trunk (`-` = none), main codec, method.
    pub trunk: Option<String>,
    pub codec: Option<String>,
    pub method: Option<String>,
}

fn nonempty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// `2024-05-01T10:00[:00]` or `2024-05-01 10:00` (UTC) to ns since the
/// epoch; None for anything else, before 1970 or after 2554 (u64 ns).
pub fn parse_time(s: &str) -> Option<u64> {
    let s = s.trim().trim_end_matches('Z');
    let (date, time) = s.split_once(['T', ' ']).unwrap_or((s, "00:00"));
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, dd) = (d.next()??, d.next()??, d.next()??);
    if d.next().is_some()
        || !(1970..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&dd)
    {
        return None;
    }
    let mut t = time.split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let mi: i64 = t.next()?.parse().ok()?;
    let sec: f64 = t.next().map(|x| x.parse().ok()).unwrap_or(Some(0.0))?;
    if t.next().is_some()
        || !(0..24).contains(&h)
        || !(0..60).contains(&mi)
        || !(0.0..61.0).contains(&sec)
    {
        return None;
    }
    // Howard Hinnant's days_from_civil (no overflow for years up to 9999).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + dd - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + h * 3600 + mi * 60).ok()?;
    secs.checked_mul(1_000_000_000)?
        .checked_add((sec * 1e9) as u64)
}

impl Filters {
    /// The filters only the hub's central index has.
    pub fn hub_filter(&self) -> Result<HubFilter, String> {
        Ok(HubFilter {
            sensor: nonempty(&self.sensor).map(String::from),
            status_code: nonempty(&self.code)
                .map(|s| {
                    s.parse::<i16>()
                        .ok()
                        .filter(|c| (100..700).contains(c))
                        .ok_or(format!("bad status code '{s}'"))
                })
                .transpose()?,
        })
    }

    pub fn to_query(&self) -> Result<CallQuery, String> {
        let mut q = CallQuery {
            descending: true,
            ..Default::default()
        };
        let time = |s: &str, what: &str| {
            parse_time(s).ok_or(format!(
                "bad {what} time '{s}': use YYYY-MM-DDTHH:MM[:SS] in UTC, 1970 to 2554"
            ))
        };
        if let Some(s) = nonempty(&self.from) {
            q.start_from_ns = Some(time(s, "start")?);
        }
        if let Some(s) = nonempty(&self.to) {
            q.start_to_ns = Some(time(s, "end")?);
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
        q.trunk = nonempty(&self.trunk).map(|t| {
            if t == "-" {
                String::new()
            } else {
                t.to_string()
            }
        });
        q.codec = nonempty(&self.codec).map(String::from);
        q.method = nonempty(&self.method).map(String::from);
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
        q.loss_min_pct = num(&self.loss_min, "minimum loss %")?;
        if q.loss_min_pct.is_some_and(|l| l > 100.0) {
            return Err("minimum loss % must be 0 to 100".into());
        }
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
        // SQLite's OFFSET is an i64.
        q.offset = (page - 1)
            .checked_mul(u64::from(per_page))
            .filter(|o| i64::try_from(*o).is_ok())
            .ok_or(format!("page {page} is out of range"))?;
        Ok(q)
    }
}

/// A page of calls: the central index on a hub, else the local one.
pub(crate) async fn search(st: &Shared, q: CallQuery, f: &Filters) -> R<CallPage> {
    match &st.hub {
        Some(hub) => {
            let h = f
                .hub_filter()
                .map_err(|e| AppError::new(StatusCode::BAD_REQUEST, e))?;
            hub.search(&q, &h).await
        }
        None => Ok(st.db.run(move |idx| idx.search(&q)).await?),
    }
}

pub(crate) async fn count_calls(st: &Shared) -> R<u64> {
    match &st.hub {
        Some(hub) => hub.count_calls().await,
        None => Ok(st.db.run(|idx| idx.count_calls()).await?),
    }
}

pub async fn calls_page(
    State(st): State<Shared>,
    Extension(id): Extension<Identity>,
    Query(f): Query<Filters>,
) -> R<Html<String>> {
    let (page, error) = match f.to_query() {
        Ok(q) => match search(&st, q, &f).await {
            Ok(p) => (Some(p), None),
            Err(e) if e.status() == StatusCode::BAD_REQUEST => (None, Some(e.message())),
            Err(e) => return Err(e),
        },
        Err(e) => (None, Some(e)),
    };
    let saved = crate::saved::list_for(&st, &id.user).await;
    Ok(Html(pages::calls(
        &id,
        &f,
        page.as_ref(),
        error.as_deref(),
        &saved,
    )))
}

/// The table body alone, for the list's live refresh.
pub async fn calls_rows(State(st): State<Shared>, Query(f): Query<Filters>) -> R<Html<String>> {
    let q = f
        .to_query()
        .map_err(|e| AppError::new(StatusCode::BAD_REQUEST, e))?;
    let page = search(&st, q, &f).await?;
    Ok(Html(pages::call_rows(&page, st.hub.is_some())))
}

pub async fn api_calls(State(st): State<Shared>, Query(f): Query<Filters>) -> R<Response> {
    let q = f
        .to_query()
        .map_err(|e| AppError::new(StatusCode::BAD_REQUEST, e).json())?;
    let page = search(&st, q, &f).await.map_err(AppError::json)?;
    Ok(Json(page).into_response())
}

pub(crate) async fn detail(st: &Shared, id: i64) -> R<CallDetail> {
    detail_opt(st, id).await?.ok_or_else(not_found)
}

/// A call's details: the central index on a hub, else the local one.
pub(crate) async fn detail_opt(st: &Shared, id: i64) -> R<Option<CallDetail>> {
    match &st.hub {
        Some(hub) => hub.call_detail(id).await,
        None => Ok(st.db.run(move |idx| idx.call_detail(id)).await?),
    }
}

/// The files the media work added to the call's folder, if it has one.
fn extras(st: &Shared, c: &CallRow) -> Extras {
    // A hub's calls are on their sensors: their folders name nothing here.
    if st.hub.is_some() {
        return Extras::default();
    }
    c.folder
        .as_deref()
        .map(|f| files::extras(&st.data, f))
        .unwrap_or_default()
}

/// The JSON report: what the index knows plus which files exist. Borrows
/// the call, so a call with megabytes of SIP is serialised straight from
/// what the index returned, not copied into a JSON tree first.
#[derive(serde::Serialize)]
pub(crate) struct Report<'a> {
    call: &'a CallRow,
    sip: &'a [SipRow],
    streams: &'a [voxtap_engine::index::StreamRow],
    dtmf: &'a [voxtap_engine::index::DtmfRow],
    legs: &'a [voxtap_engine::index::LegRow],
    files: ReportFiles<'a>,
}

#[derive(serde::Serialize)]
struct ReportFiles<'a> {
    pcap: Option<&'a str>,
    decrypted_pcap: bool,
    wavs: Vec<String>,
}

pub(crate) fn report<'a>(st: &Shared, d: &'a CallDetail) -> Report<'a> {
    let extras = extras(st, &d.call);
    Report {
        call: &d.call,
        sip: &d.sip,
        streams: &d.streams,
        dtmf: &d.dtmf,
        legs: &d.legs,
        files: ReportFiles {
            pcap: d.call.pcap.as_deref(),
            decrypted_pcap: extras.decrypted_pcap,
            wavs: extras.wavs,
        },
    }
}

pub async fn api_call(State(st): State<Shared>, Path(id): Path<i64>) -> R<Response> {
    let d = detail(&st, id).await.map_err(AppError::json)?;
    Ok(Json(report(&st, &d)).into_response())
}

#[derive(Deserialize)]
pub struct CallPageQuery {
    /// Which page of the SIP messages (1-based).
    msgs: Option<String>,
}

pub async fn call_page(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    Path(id): Path<i64>,
    Query(q): Query<CallPageQuery>,
) -> R<Html<String>> {
    let msgs = match nonempty(&q.msgs) {
        None => 1,
        Some(s) => s.parse::<usize>().ok().filter(|p| *p >= 1).ok_or_else(|| {
            AppError::new(StatusCode::BAD_REQUEST, format!("bad message page '{s}'"))
        })?,
    };
    let d = detail(&st, id).await?;
    let extras = extras(&st, &d.call);
    audit(&st, &ident, action::VIEW, Some(id), "").await?;
    let (d, series) = crate::quality::timelines_of(&st, d).await?;
    let legs = crate::legs_view::group(&st, &d).await?;
    Ok(Html(pages::call(&ident, &d, &extras, &series, &legs, msgs)))
}

/// `GET /calls/{id}/sip/{n}`: one SIP message in full, as text (the call
/// page shows long ones cut short).
pub async fn sip_message(
    State(st): State<Shared>,
    Path((id, n)): Path<(i64, usize)>,
) -> R<Response> {
    let d = detail(&st, id).await?;
    let m = d
        .sip
        .into_iter()
        .nth(n)
        .ok_or_else(|| AppError::new(StatusCode::NOT_FOUND, "no such SIP message"))?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        m.text,
    )
        .into_response())
}

/// Writes an audit entry off the async threads; a failure is logged. For
/// logins and admin actions, where refusing would not help.
pub(crate) async fn record(
    st: &Shared,
    user: &str,
    remote: &str,
    action: &str,
    call: Option<i64>,
    detail: &str,
) {
    if let Err(e) = write_audit(st, user, remote, action, call, detail).await {
        tracing::error!("writing the audit log: {e}");
    }
}

async fn write_audit(
    st: &Shared,
    user: &str,
    remote: &str,
    action: &str,
    call: Option<i64>,
    detail: &str,
) -> Result<(), String> {
    tracing::info!(target: "access", user, remote, action, call, detail);
    let st = st.clone();
    let (user, remote, action, detail) = (
        user.to_string(),
        remote.to_string(),
        action.to_string(),
        detail.to_string(),
    );
    tokio::task::spawn_blocking(move || {
        st.audit
            .record(&user, &remote, &action, call, &detail)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Records who looked at, played or downloaded what, before it is served:
/// when the entry cannot be written the access is refused (503), so no
/// recording reaches anyone without a trace.
pub(crate) async fn audit(
    st: &Shared,
    ident: &Identity,
    action: &str,
    call: Option<i64>,
    detail: &str,
) -> R<()> {
    write_audit(st, &ident.user, &ident.remote, action, call, detail)
        .await
        .map_err(|e| {
            tracing::error!("writing the audit log: {e}");
            AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the audit log cannot be written, so nothing is served; tell the administrator",
            )
        })
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

/// `?range=15m|1h|24h` of the sensor page's charts.
#[derive(Debug, Default, Deserialize)]
pub struct RangeQuery {
    pub range: Option<String>,
}

pub async fn sensor_page(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    Query(q): Query<RangeQuery>,
) -> R<Html<String>> {
    let calls = count_calls(&st).await?;
    // The recent audit entries are for admins only.
    let log = if ident.role >= crate::Role::Admin {
        let st2 = st.clone();
        tokio::task::spawn_blocking(move || st2.audit.query(&Default::default(), 20))
            .await
            .ok()
            .and_then(|r| r.map_err(|e| tracing::error!("{e}")).ok())
    } else {
        None
    };
    let st2 = st.clone();
    let usage = tokio::task::spawn_blocking(move || st2.store_usage())
        .await
        .unwrap_or(0);
    let fs = fs_usage(&st.data);
    let live = live_status(&st, q.range.as_deref()).await;
    Ok(Html(pages::sensor(
        &ident,
        &st,
        calls,
        usage,
        fs.as_ref(),
        log.as_deref(),
        &live,
    )))
}

async fn read_statuses(st: &Shared) -> Vec<(String, serde_json::Value)> {
    let data = st.data.clone();
    let all = tokio::task::spawn_blocking(move || voxtap_sensor::status::read_all(&data))
        .await
        .unwrap_or_default();
    crate::status_view::ordered(all)
}

/// The sensor page's live part: the charts over `range` and the status
/// cards, with the URL that refreshes it.
async fn live_status(st: &Shared, range: Option<&str>) -> pages::LiveStatus {
    let range = crate::status_history::Range::parse(range);
    let now = voxtap_sensor::status::now_unix();
    let data = st.data.clone();
    let hist = tokio::task::spawn_blocking(move || {
        crate::status_history::load(&data, crate::status_history::Window::new(range, now))
    })
    .await
    .unwrap_or_default();
    let all = read_statuses(st).await;
    pages::LiveStatus {
        refresh: format!("/sensor/status?range={}", range.param()),
        html: maud::html! {
            (crate::status_history::section(&all, &hist, range, now))
            (crate::status_view::cards(&all, now))
        },
    }
}

/// The live part of the sensor page alone, for its refresh.
pub async fn sensor_status(State(st): State<Shared>, Query(q): Query<RangeQuery>) -> Html<String> {
    Html(
        live_status(&st, q.range.as_deref())
            .await
            .html
            .into_string(),
    )
}

pub async fn healthz(State(st): State<Shared>) -> R<Response> {
    // Healthy = the index answers (the central one on a hub).
    match count_calls(&st).await {
        Ok(_) => Ok("ok\n".into_response()),
        Err(_) => Ok((StatusCode::SERVICE_UNAVAILABLE, "index unavailable\n").into_response()),
    }
}

pub async fn metrics(State(st): State<Shared>) -> R<Response> {
    let calls = count_calls(&st).await?;
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

/// A file of `static/`, compiled in; browsers may keep it five minutes.
pub fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        body,
    )
        .into_response()
}

pub async fn style() -> Response {
    static_file("text/css", include_str!("../static/style.css"))
}

pub async fn script() -> Response {
    static_file("text/javascript", include_str!("../static/app.js"))
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
        for bad in [
            "/\t/evil.example/",
            "/\n/evil.example/",
            "/x\r\nSet-Cookie: a=b",
            "/a\\b",
            "/\u{7f}",
            "/ é",
            "/ x",
            "",
            "calls",
        ] {
            assert_eq!(safe_next(Some(bad)), "/calls", "{bad:?}");
        }
        assert_eq!(safe_next(Some("/calls?x=%2F%2Fa#m")), "/calls?x=%2F%2Fa#m");
    }

    /// Strings from an alphabet of the characters that matter to URL and time
    /// parsing, by a fixed xorshift sequence: a cheap in-tree fuzz.
    fn odd_strings(n: usize) -> impl Iterator<Item = String> {
        const ALPHABET: &[char] = &[
            '/', '\\', '\t', '\n', '\r', '\0', ' ', '%', ':', '.', '-', 'T', 'Z', '9', '0', '1',
            '2', 'a', '@', '?', '#', 'é', '\u{7f}', '\u{202e}',
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..n).map(move |_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 24) as usize;
            (0..len)
                .map(|i| ALPHABET[((x >> (i % 8 * 8)) as usize + i) % ALPHABET.len()])
                .collect()
        })
    }

    #[test]
    fn next_and_times_never_panic_and_next_stays_on_site() {
        for s in odd_strings(200_000) {
            let n = safe_next(Some(&s));
            assert!(n.starts_with('/') && !n.starts_with("//"), "{s:?} -> {n:?}");
            assert!(
                n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\'),
                "{s:?}"
            );
            let _ = parse_time(&s);
            let f = Filters {
                page: Some(s.clone()),
                from: Some(s.clone()),
                per_page: Some(s),
                ..Default::default()
            };
            let _ = f.to_query();
        }
    }

    #[test]
    fn times_out_of_range_are_refused_not_overflowed() {
        assert_eq!(parse_time("9999-12-31T23:59"), None);
        assert_eq!(
            parse_time("2554-07-21T23:34:33"),
            Some(18_446_744_073_000_000_000)
        );
        assert_eq!(parse_time("2554-07-21T23:34:34"), None);
        assert_eq!(parse_time("99999999999999999-01-01"), None);
        assert_eq!(parse_time("1969-12-31T23:59"), None);
        assert_eq!(parse_time("2024-01-01T00:00:00:00"), None);
        let f = |page: &str| Filters {
            page: Some(page.into()),
            per_page: Some("500".into()),
            ..Default::default()
        };
        assert!(
            f("18446744073709551615")
                .to_query()
                .unwrap_err()
                .contains("out of range")
        );
        assert_eq!(f("3").to_query().unwrap().offset, 1000);
    }
}
