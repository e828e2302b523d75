//! The hosts page: the rpcapd hosts of `hosts.toml` as a tree (environment,
//! region, sub-regions, host with its interfaces), a form to start a remote
//! capture on the ones ticked and to stop it, and live per-host counters.
//!
//! The capture runs in this process on a thread, through the same
//! `run_foreground` as `voxtap remote capture`, into `DATA/remote/<run>/`:
//! it writes the same pid, STOP and `status.tsv` files there, so
//! `voxtap remote status|stop --out DATA/remote/<run>` work on a capture
//! started here, and its counters go to `DATA/status/remote.json` like any
//! other component's (capture/sensor/src/status.rs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{Markup, html};
use voxtap_sensor::rpcap::hosts::{self, Host};
use voxtap_sensor::rpcap::remote::{self, RemoteOptions, STOP_FILE, parse_duration};
use voxtap_sensor::rpcap::{Transport, remote::UnitReport};
use voxtap_sensor::status;

use crate::audit::action;
use crate::config::RemoteConfig;
use crate::csrf::{CheckedForm, accepts_json};
use crate::handlers::{AppError, record};
use crate::{Identity, Shared, pages};

/// Compiles capture filters with libpcap away from the async threads: its
/// optimiser is worse than quadratic in the number of terms (two 11 KB
/// filters held every runtime thread for 6.5 s, so even `/healthz` waited).
/// Filters are capped in length, one compiles at a time on a blocking
/// thread, and an answer comes within the timeout whatever libpcap does.
pub struct FilterCompiler {
    max_bytes: usize,
    timeout: Duration,
    /// One permit: held by the compiling thread until libpcap returns,
    /// also past a timeout, so abandoned compiles cannot pile up threads.
    slot: Arc<tokio::sync::Semaphore>,
}

impl FilterCompiler {
    pub fn new(c: &RemoteConfig) -> FilterCompiler {
        FilterCompiler {
            max_bytes: c.max_filter_bytes.map_or(1024, |b| b as usize),
            timeout: Duration::from_secs(c.filter_timeout_seconds.unwrap_or(5)),
            slot: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }

    /// Whether `filter` compiles: 400 with libpcap's reason, for a filter
    /// too long, or for one that takes longer than the timeout; 503 when
    /// another compile holds the worker for the whole timeout.
    pub async fn check(&self, filter: &str) -> Result<(), AppError> {
        if filter.len() > self.max_bytes {
            return Err(bad(format!(
                "the filter is {} bytes, longer than the {} allowed ([remote] max_filter_bytes)",
                filter.len(),
                self.max_bytes
            )));
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        let permit = tokio::time::timeout_at(deadline, self.slot.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| {
                AppError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "another capture filter is still compiling; try again shortly",
                )
            })?;
        let f = filter.to_string();
        let job = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            voxtap_sensor::rpcap::bpf::compile(&f, 1, 65535)
        });
        match tokio::time::timeout_at(deadline, job).await {
            Ok(Ok(Ok(_))) => Ok(()),
            Ok(Ok(Err(e))) => Err(bad(e.to_string())),
            Ok(Err(_)) => Err(AppError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the filter compiler failed",
            )),
            Err(_) => Err(bad(format!(
                "the filter took longer than {} s to compile: simplify it (fewer terms)",
                self.timeout.as_secs()
            ))),
        }
    }
}

/// The capture started from the web, if any (one at a time).
pub struct RemoteRuns {
    current: Mutex<Option<Run>>,
    /// Largest SIP pcap a correlation accepts, in bytes.
    max_sip_upload: u64,
}

impl RemoteRuns {
    pub fn new(c: &RemoteConfig) -> RemoteRuns {
        RemoteRuns {
            current: Mutex::default(),
            max_sip_upload: c
                .max_sip_upload_mb
                .unwrap_or(crate::correlate::DEFAULT_MAX_SIP_UPLOAD_MB)
                << 20,
        }
    }

    pub fn max_sip_upload(&self) -> u64 {
        self.max_sip_upload
    }
}

/// Whether the capture started here is still writing into `out`.
pub fn is_running(st: &Shared, out: &Path) -> bool {
    let mut cur = st.remote.current.lock().unwrap_or_else(|p| p.into_inner());
    cur.as_mut().is_some_and(|r| {
        r.reap();
        r.running() && r.out == out
    })
}

struct Run {
    out: PathBuf,
    user: String,
    hosts: Vec<String>,
    /// What was asked for, shown beside the counters.
    filter: String,
    transport: &'static str,
    duration: Option<String>,
    thread: Option<JoinHandle<Result<Vec<UnitReport>, String>>>,
    /// The per-target summary lines once it ended.
    result: Option<Vec<String>>,
}

impl Run {
    /// Collects the thread's result once it has ended.
    fn reap(&mut self) {
        if self.thread.as_ref().is_some_and(|t| t.is_finished())
            && let Some(t) = self.thread.take()
        {
            self.result = Some(match t.join() {
                Ok(Ok(reports)) => reports.iter().map(|r| r.summary_line()).collect(),
                Ok(Err(e)) => vec![format!("capture failed: {e}")],
                Err(_) => vec!["capture thread panicked".into()],
            });
        }
    }

    fn running(&self) -> bool {
        self.thread.is_some()
    }
}

fn load_hosts(st: &Shared) -> Result<(PathBuf, Vec<Host>), String> {
    let Some(path) = st.hosts_file.clone() else {
        return Err(
            "no hosts file: set [remote] hosts = \"config/hosts.toml\" in the web config".into(),
        );
    };
    let hosts = hosts::load(&path).map_err(|e| e.to_string())?;
    Ok((path, hosts))
}

// ---------------------------------------------------------------- page

/// Hosts by path: env > region > sub-regions... > host.
#[derive(Default)]
struct Tree<'a> {
    children: BTreeMap<String, Tree<'a>>,
    hosts: Vec<&'a Host>,
}

fn tree(hosts: &[Host]) -> Tree<'_> {
    let mut t = Tree::default();
    for h in hosts {
        let mut node = &mut t;
        for seg in &h.path[..h.path.len().saturating_sub(1)] {
            node = node.children.entry(seg.clone()).or_default();
        }
        node.hosts.push(h);
    }
    t
}

const LEVELS: [&str; 3] = ["environment", "region", "sub-region"];

fn tree_markup(t: &Tree<'_>, depth: usize) -> Markup {
    html! {
        ul.hosttree {
            @for (name, sub) in &t.children {
                li {
                    details open {
                        summary {
                            span.level { (LEVELS[depth.min(2)]) " " }
                            strong { (name) }
                        }
                        (tree_markup(sub, depth + 1))
                    }
                }
            }
            @for h in &t.hosts {
                @let id = h.id();
                li.host {
                    label {
                        input type="checkbox" name="host" value=(id);
                        " " strong { (h.path.last().map(String::as_str).unwrap_or("")) }
                        " " span.muted { (h.addr()) }
                        @if h.tls.is_some() { " " span.badge { "rpcaps" } }
                    }
                    table.counters {
                        thead { tr {
                            th { "interface" } th { "state" } th { "packets" } th { "bytes" }
                            th { "drops" } th { "lost" } th { "reconnects" }
                        } }
                        tbody {
                            @for iface in &h.interfaces {
                                tr data-unit={(id) " " (iface)} {
                                    td { (iface) }
                                    td data-k="state" { "-" }
                                    td data-k="packets" { "-" }
                                    td data-k="bytes" { "-" }
                                    td data-k="drops" { "-" }
                                    td data-k="lost" { "-" }
                                    td data-k="reconnects" { "-" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub async fn hosts_page(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
) -> Html<String> {
    let loaded = load_hosts(&st);
    let csrf = ident.csrf.clone().unwrap_or_default();
    let body = html! {
        h1 { "Remote capture hosts" }
        @match &loaded {
            Err(e) => p.error { (e) },
            Ok((path, hosts)) => {
                p.muted { "From " code { (path.display()) } ". Tick hosts, then start a capture over RPCAP." }
                form #remote method="post" action="/hosts/start" {
                    input type="hidden" name="csrf" value=(csrf);
                    (tree_markup(&tree(hosts), 0))
                    fieldset {
                        label { "Filter " input name="filter" value="udp" size="40"; }
                        label { "Transport "
                            select name="transport" {
                                option value="tcp" selected { "TCP" }
                                option value="udp" { "UDP (not with rpcaps)" }
                            }
                        }
                        label { "Duration " input name="duration" placeholder="e.g. 5m; empty: until stopped" size="24"; }
                        button type="submit" { "Start" }
                    }
                }
                form method="post" action="/hosts/stop" {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" { "Stop" }
                }
            }
        }
        p #remote-status { "Capture status: loading…" }
        pre #remote-result hidden {}
        (crate::correlate::runs_markup(&st, &ident))
        (crate::correlate_s3::markup(&st, &ident).await)
        script src="/static/hosts.js" defer {}
    };
    Html(pages::page("Hosts", &ident, body))
}

pub async fn hosts_script() -> Response {
    crate::handlers::static_file("text/javascript", include_str!("../static/hosts.js"))
}

// ---------------------------------------------------------------- API

/// What a start form asks for, checked.
struct StartRequest {
    hosts: Vec<Host>,
    transport: Transport,
    duration: Option<Duration>,
    /// The duration as typed, for the status line.
    duration_text: Option<String>,
    filter: String,
}

/// Starts a capture of the ticked hosts (form: `host`..., `filter`,
/// `transport`, `duration`, `csrf`).
pub async fn start(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    headers: HeaderMap,
    form: CheckedForm,
) -> Response {
    let json = accepts_json(&headers);
    match checked_launch(&st, &ident, &form).await {
        Err(e) => e.json_if(json).into_response(),
        Ok((run, out, hosts)) if json => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "run": run, "out": out, "hosts": hosts })),
        )
            .into_response(),
        Ok(_) => Redirect::to("/hosts").into_response(),
    }
}

/// The form checked (its filter compiled off the async threads), the
/// capture launched, and its start recorded in the audit log.
async fn checked_launch(
    st: &Shared,
    ident: &Identity,
    form: &CheckedForm,
) -> Result<(String, PathBuf, Vec<String>), AppError> {
    let req = start_request(st, form)?;
    // The filter is compiled by libpcap when the capture starts; check it
    // now so a typo is an answer here, not a failed host later.
    st.filters.check(&req.filter).await?;
    let filter = req.filter.clone();
    let (run, out, ids) = launch(st, ident, req)?;
    let detail = format!("{run}: hosts {}; filter '{filter}'", ids.join(", "));
    record(
        st,
        &ident.user,
        &ident.remote,
        action::CAPTURE_START,
        None,
        &detail,
    )
    .await;
    Ok((run, out, ids))
}

fn bad(msg: impl Into<String>) -> AppError {
    AppError::new(StatusCode::BAD_REQUEST, msg)
}

fn start_request(st: &Shared, form: &CheckedForm) -> Result<StartRequest, AppError> {
    let get = |k: &str| form.get(k).map(|v| v.trim().to_string());
    let picked: Vec<&str> = form.all("host").collect();
    if picked.is_empty() {
        return Err(bad("tick at least one host"));
    }
    let (_, all) = load_hosts(st).map_err(bad)?;
    // Exact host ids only: the form never sends patterns.
    let hosts = picked
        .iter()
        .map(|id| {
            all.iter()
                .find(|h| h.id() == *id)
                .cloned()
                .ok_or_else(|| bad(format!("no host '{id}' in the hosts file")))
        })
        .collect::<Result<Vec<Host>, AppError>>()?;
    let transport = match get("transport").as_deref() {
        None | Some("") | Some("tcp") => Transport::Tcp,
        Some("udp") => Transport::Udp,
        Some(o) => return Err(bad(format!("transport '{o}': use tcp or udp"))),
    };
    if transport == Transport::Udp
        && let Some(h) = hosts.iter().find(|h| h.tls.is_some())
    {
        return Err(bad(format!(
            "{} uses TLS (rpcaps), and rpcapd refuses the UDP data channel with TLS (no DTLS): choose TCP",
            h.id()
        )));
    }
    let duration_text = get("duration").filter(|d| !d.is_empty());
    let duration = duration_text
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(bad)?;
    let filter = get("filter").unwrap_or_else(|| "udp".into());
    Ok(StartRequest {
        hosts,
        transport,
        duration,
        duration_text,
        filter,
    })
}

/// Starts the capture thread unless one runs: (run name, its folder, the
/// host ids).
fn launch(
    st: &Shared,
    ident: &Identity,
    req: StartRequest,
) -> Result<(String, PathBuf, Vec<String>), AppError> {
    let mut cur = st.remote.current.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(r) = cur.as_mut() {
        r.reap();
        if r.running() {
            return Err(AppError::new(
                StatusCode::CONFLICT,
                format!(
                    "a capture started by {} is running into {}: stop it first",
                    r.user,
                    r.out.display()
                ),
            ));
        }
    }
    let (run_name, out) = run_dir(&st.data.join("remote"));
    let mut opts = RemoteOptions::new(out.clone());
    opts.capture.transport = req.transport;
    opts.capture.filter = req.filter.clone();
    opts.duration = req.duration;
    opts.status_data = Some(st.data.clone());
    let targets = remote::targets(&req.hosts, &opts);
    let ids: Vec<String> = req.hosts.iter().map(Host::id).collect();
    let thread = std::thread::Builder::new()
        .name("web remote capture".into())
        .spawn(move || remote::run_foreground(targets, &opts, |_| {}).map_err(|e| e.to_string()))
        .map_err(|e| {
            AppError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot start the capture thread: {e}"),
            )
        })?;
    let (filter, transport) = (req.filter, req.transport);
    tracing::info!(user = %ident.user, hosts = ?ids, %filter, ?transport, out = %out.display(), "remote capture started from the web");
    *cur = Some(Run {
        out: out.clone(),
        user: ident.user.clone(),
        hosts: ids.clone(),
        filter,
        transport: match transport {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        },
        duration: req.duration_text,
        thread: Some(thread),
        result: None,
    });
    Ok((run_name, out, ids))
}

/// `YYYYMMDDTHHMMSS` (UTC), plus `-N` if that folder exists already: a
/// new run must never overwrite an earlier run's segments.
fn run_dir(parent: &Path) -> (String, PathBuf) {
    let s = voxtap_engine::output::format_ts(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    let base: String = s
        .chars()
        .take(19)
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let mut name = base.clone();
    let mut n = 1;
    while parent.join(&name).exists() {
        n += 1;
        name = format!("{base}-{n}");
    }
    let out = parent.join(&name);
    (name, out)
}

/// Asks the running capture to stop, as `voxtap remote stop` does (a STOP
/// file in its folder), and waits up to 30 s for its outputs.
pub async fn stop(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    headers: HeaderMap,
    _form: CheckedForm,
) -> Response {
    let json = accepts_json(&headers);
    let out = {
        let mut cur = st.remote.current.lock().unwrap_or_else(|p| p.into_inner());
        match cur.as_mut() {
            Some(r) => {
                r.reap();
                r.running().then(|| r.out.clone())
            }
            None => None,
        }
    };
    let Some(out) = out else {
        return AppError::new(StatusCode::CONFLICT, "no capture is running")
            .json_if(json)
            .into_response();
    };
    if let Err(e) = std::fs::write(out.join(STOP_FILE), b"") {
        return AppError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("writing {}: {e}", out.join(STOP_FILE).display()),
        )
        .json_if(json)
        .into_response();
    }
    tracing::info!(user = %ident.user, out = %out.display(), "remote capture stop requested from the web");
    let detail = rel(&st.data, &out);
    record(
        &st,
        &ident.user,
        &ident.remote,
        action::CAPTURE_STOP,
        None,
        &detail,
    )
    .await;
    for _ in 0..300 {
        let done = {
            let mut cur = st.remote.current.lock().unwrap_or_else(|p| p.into_inner());
            cur.as_mut().is_none_or(|r| {
                r.reap();
                !r.running()
            })
        };
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if json {
        remote_status(State(st)).await.into_response()
    } else {
        Redirect::to("/hosts").into_response()
    }
}

/// The live counters (`DATA/status/remote.json`) and the web-started
/// capture's state and result.
pub async fn remote_status(State(st): State<Shared>) -> Json<serde_json::Value> {
    let (running, run) = {
        let mut cur = st.remote.current.lock().unwrap_or_else(|p| p.into_inner());
        match cur.as_mut() {
            Some(r) => {
                r.reap();
                (
                    r.running(),
                    serde_json::json!({
                        "out": rel(&st.data, &r.out),
                        "user": r.user,
                        "hosts": r.hosts,
                        "filter": r.filter,
                        "transport": r.transport,
                        "duration": r.duration,
                        "result": r.result,
                    }),
                )
            }
            None => (false, serde_json::Value::Null),
        }
    };
    let mut counters = status::read(&st.data, "remote").unwrap_or(serde_json::Value::Null);
    if let serde_json::Value::Object(m) = &mut counters {
        // Absolute server paths are not the browser's business.
        m.remove("out");
        m.remove("pid");
    }
    Json(serde_json::json!({
        "running": running,
        "run": run,
        "status": counters,
    }))
}

fn rel(data: &Path, p: &Path) -> String {
    p.strip_prefix(data).unwrap_or(p).display().to_string()
}
