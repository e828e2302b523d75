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
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{Markup, html};
use voxtap_sensor::rpcap::hosts::{self, Host};
use voxtap_sensor::rpcap::remote::{self, RemoteOptions, STOP_FILE, parse_duration};
use voxtap_sensor::rpcap::{Transport, remote::UnitReport};
use voxtap_sensor::status;

use crate::{Identity, Shared, pages};

/// The capture started from the web, if any (one at a time).
#[derive(Default)]
pub struct RemoteRuns {
    current: Mutex<Option<Run>>,
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
        script src="/static/hosts.js" defer {}
    };
    Html(pages::page("Hosts", &ident, body))
}

pub async fn hosts_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript"),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        include_str!("../static/hosts.js"),
    )
        .into_response()
}

// ---------------------------------------------------------------- API

/// `application/x-www-form-urlencoded` pairs, keeping repeated keys (one
/// `host` per ticked box).
fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = b
                        .get(i + 1..i + 3)
                        .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    match hex {
                        Some(v) => {
                            out.push(v);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn refuse(status: StatusCode, msg: impl Into<String>, json: bool) -> Response {
    let msg = msg.into();
    if json {
        (status, Json(serde_json::json!({ "error": msg }))).into_response()
    } else {
        (status, Html(crate::pages::error_page(status, &msg))).into_response()
    }
}

fn wants_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// Starts a capture of the ticked hosts (form: `host`..., `filter`,
/// `transport`, `duration`, `csrf`).
pub async fn start(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let json = wants_json(&headers);
    let pairs = form_pairs(&body);
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim().to_string())
    };
    let token = get("csrf").or_else(|| {
        headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    });
    if !ident.csrf_ok(token.as_deref()) {
        return refuse(
            StatusCode::FORBIDDEN,
            "missing or wrong CSRF token: reload the page and submit the form again",
            json,
        );
    }
    let picked: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "host")
        .map(|(_, v)| v.clone())
        .collect();
    if picked.is_empty() {
        return refuse(StatusCode::BAD_REQUEST, "tick at least one host", json);
    }
    let (_, all) = match load_hosts(&st) {
        Ok(x) => x,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e, json),
    };
    // Exact host ids only: the form never sends patterns.
    let mut chosen = Vec::new();
    for id in &picked {
        match all.iter().find(|h| &h.id() == id) {
            Some(h) => chosen.push(h.clone()),
            None => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    format!("no host '{id}' in the hosts file"),
                    json,
                );
            }
        }
    }
    let transport = match get("transport").as_deref() {
        None | Some("") | Some("tcp") => Transport::Tcp,
        Some("udp") => Transport::Udp,
        Some(o) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("transport '{o}': use tcp or udp"),
                json,
            );
        }
    };
    if transport == Transport::Udp
        && let Some(h) = chosen.iter().find(|h| h.tls.is_some())
    {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!(
                "{} uses TLS (rpcaps), and rpcapd refuses the UDP data channel with TLS (no DTLS): choose TCP",
                h.id()
            ),
            json,
        );
    }
    let duration = match get("duration").filter(|d| !d.is_empty()) {
        None => None,
        Some(d) => match parse_duration(&d) {
            Ok(d) => Some(d),
            Err(e) => return refuse(StatusCode::BAD_REQUEST, e, json),
        },
    };
    let duration_text = get("duration").filter(|d| !d.is_empty());
    let filter = get("filter").unwrap_or_else(|| "udp".into());
    // The filter is compiled by libpcap when the capture starts; check it
    // now so a typo is an answer here, not a failed host later.
    if let Err(e) = voxtap_sensor::rpcap::bpf::compile(&filter, 1, 65535) {
        return refuse(StatusCode::BAD_REQUEST, e.to_string(), json);
    }

    let mut cur = st.remote.current.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(r) = cur.as_mut() {
        r.reap();
        if r.running() {
            return refuse(
                StatusCode::CONFLICT,
                format!(
                    "a capture started by {} is running into {}: stop it first",
                    r.user,
                    r.out.display()
                ),
                json,
            );
        }
    }
    let (run_name, out) = run_dir(&st.data.join("remote"));
    let mut opts = RemoteOptions::new(out.clone());
    opts.capture.transport = transport;
    opts.capture.filter = filter.clone();
    opts.duration = duration;
    opts.status_data = Some(st.data.clone());
    let targets = remote::targets(&chosen, &opts);
    let ids: Vec<String> = chosen.iter().map(Host::id).collect();
    let thread = std::thread::Builder::new()
        .name("web remote capture".into())
        .spawn(move || remote::run_foreground(targets, &opts, |_| {}).map_err(|e| e.to_string()));
    let thread = match thread {
        Ok(t) => t,
        Err(e) => {
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot start the capture thread: {e}"),
                json,
            );
        }
    };
    tracing::info!(user = %ident.user, hosts = ?ids, %filter, ?transport, out = %out.display(), "remote capture started from the web");
    let filter = filter.clone();
    *cur = Some(Run {
        out: out.clone(),
        user: ident.user.clone(),
        hosts: ids.clone(),
        filter,
        transport: match transport {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        },
        duration: duration_text,
        thread: Some(thread),
        result: None,
    });
    drop(cur);
    if json {
        (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "run": run_name, "out": out, "hosts": ids })),
        )
            .into_response()
    } else {
        Redirect::to("/hosts").into_response()
    }
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
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let json = wants_json(&headers);
    let pairs = form_pairs(&body);
    let token = pairs
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.clone())
        .or_else(|| {
            headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        });
    if !ident.csrf_ok(token.as_deref()) {
        return refuse(
            StatusCode::FORBIDDEN,
            "missing or wrong CSRF token: reload the page and submit the form again",
            json,
        );
    }
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
        return refuse(StatusCode::CONFLICT, "no capture is running", json);
    };
    if let Err(e) = std::fs::write(out.join(STOP_FILE), b"") {
        return refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("writing {}: {e}", out.join(STOP_FILE).display()),
            json,
        );
    }
    tracing::info!(user = %ident.user, out = %out.display(), "remote capture stop requested from the web");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_pairs_keep_repeated_keys_and_decode() {
        let p = form_pairs(b"host=lab%2Flocal%2Fa&host=b+c&filter=udp+port+5060&x=%zz&y=%4");
        assert_eq!(
            p,
            [
                ("host".into(), "lab/local/a".into()),
                ("host".into(), "b c".into()),
                ("filter".into(), "udp port 5060".into()),
                ("x".into(), "%zz".into()),
                ("y".into(), "%4".into()),
            ]
        );
    }
}
