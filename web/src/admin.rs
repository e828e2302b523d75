//! The admin pages: users (roles, sessions, failed logins and lock-outs,
//! with buttons to unlock and to end a user's sessions) and the audit log,
//! filtered by call, user or action; each with a JSON twin for scripts.

use axum::Json;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use maud::html;

use crate::audit::{Filter, QueryError, action};
use crate::csrf::{CheckedForm, accepts_json, json_or_back};
use crate::handlers::{AppError, record};
use crate::throttle::Key;
use crate::{Identity, Shared, pages};

/// Audit entries per page.
const AUDIT_PAGE: u32 = 200;

pub async fn users_page(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
) -> Html<String> {
    let sessions = st.sessions.count_by_user();
    let rows = st.throttle.rows();
    let mut users: Vec<_> = st.users.values().collect();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    let csrf = ident.csrf.clone().unwrap_or_default();
    let body = html! {
        h1 { "Users" }
        p.muted { "Users and roles come from the web config ([[users]], role = viewer | listener | operator | admin); a changed password or token ends that user's sessions at the next restart." }
        table.users {
            thead { tr { th { "User" } th { "Role" } th { "API token" } th.num { "Sessions" } th { "" } } }
            tbody {
                @for u in &users {
                    tr data-user=(u.name) {
                        td { (u.name) }
                        td { (u.role.unwrap_or_default().as_str()) @if u.role.is_none() { span.muted { " (default)" } } }
                        td { @if u.api_token_hash.is_some() { "yes" } @else { "–" } }
                        td.num { (sessions.get(&u.name).copied().unwrap_or(0)) }
                        td {
                            form.inline method="post" action="/admin/logout" {
                                input type="hidden" name="csrf" value=(csrf);
                                input type="hidden" name="user" value=(u.name);
                                button.link type="submit" { "Log out everywhere" }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Failed logins" }
        p.muted { "User names (known or not) and source addresses with recent failures. Clearing one lets it try again at once." }
        table.throttle id="throttle" {
            thead { tr { th { "Kind" } th { "Name" } th.num { "Failures" } th { "State" } th { "" } } }
            tbody {
                @for r in &rows {
                    tr {
                        td { (r.kind) } td.mono { (r.name) } td.num { (r.failures) }
                        td {
                            @if let Some(s) = r.locked_seconds { strong.error { "locked " (s.div_ceil(60)) " min" } }
                            @else if r.wait_seconds > 0 { "back-off " (r.wait_seconds) " s" }
                            @else { "–" }
                        }
                        td {
                            form.inline method="post" action="/admin/unlock" {
                                input type="hidden" name="csrf" value=(csrf);
                                input type="hidden" name=(if r.kind == "user" { "user" } else { "address" }) value=(r.name);
                                button.link type="submit" { "Clear" }
                            }
                        }
                    }
                }
                @if rows.is_empty() { tr { td colspan="5" .empty { "No recent failures." } } }
            }
        }
    };
    Html(pages::page("Users", &ident, body))
}

pub async fn api_throttle(State(st): State<Shared>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "entries": st.throttle.rows() }))
}

/// `POST /admin/unlock` (`user` and/or `address`): clears their failures
/// and lock-out.
pub async fn unlock(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    headers: HeaderMap,
    form: CheckedForm,
) -> Response {
    let json = accepts_json(&headers);
    let mut keys = Vec::new();
    keys.extend(form.all("user").map(|u| Key::User(u.to_string())));
    for a in form.all("address") {
        match a.trim().parse() {
            Ok(ip) => keys.push(Key::addr(ip)),
            Err(_) => {
                return AppError::new(
                    StatusCode::BAD_REQUEST,
                    format!("'{a}' is not an IP address"),
                )
                .json_if(json)
                .into_response();
            }
        }
    }
    if keys.is_empty() {
        return AppError::new(
            StatusCode::BAD_REQUEST,
            "name a user or an address to clear",
        )
        .json_if(json)
        .into_response();
    }
    let mut cleared = Vec::new();
    for k in &keys {
        let name = match k {
            Key::User(u) => format!("user {u}"),
            Key::Addr(a) => format!("address {a}"),
        };
        if st.throttle.clear(k) {
            cleared.push(name);
        }
    }
    let detail = cleared.join(", ");
    record(
        &st,
        &ident.user,
        &ident.remote,
        action::UNLOCK,
        None,
        &detail,
    )
    .await;
    json_or_back(
        json,
        serde_json::json!({ "cleared": cleared }),
        "/admin/users",
    )
}

/// `POST /admin/logout` (`user`): ends every session of that user.
pub async fn logout_user(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    headers: HeaderMap,
    form: CheckedForm,
) -> Response {
    let json = accepts_json(&headers);
    let Some(user) = form.get("user").map(str::to_string) else {
        return AppError::new(StatusCode::BAD_REQUEST, "name the user")
            .json_if(json)
            .into_response();
    };
    let ended = match st.sessions.remove_user(&user) {
        Ok(n) => n,
        Err(e) => {
            tracing::error!("ending sessions of {user}: {e}");
            return AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "cannot end the sessions")
                .json_if(json)
                .into_response();
        }
    };
    let detail = format!("{user}: {ended} session(s)");
    let a = action::LOGOUT_EVERYWHERE;
    record(&st, &ident.user, &ident.remote, a, None, &detail).await;
    json_or_back(
        json,
        serde_json::json!({ "user": user, "sessions_ended": ended }),
        "/admin/users",
    )
}

async fn query(st: &Shared, f: Filter) -> Result<Vec<crate::audit::Entry>, AppError> {
    let st = st.clone();
    tokio::task::spawn_blocking(move || st.audit.query(&f, AUDIT_PAGE))
        .await
        .map_err(|_| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "audit query failed"))?
        .map_err(|e| match e {
            QueryError::Bad(m) => AppError::new(StatusCode::BAD_REQUEST, m),
            QueryError::Db(e) => {
                tracing::error!("reading the audit log: {e}");
                AppError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "reading the audit log failed",
                )
            }
        })
}

/// `GET /admin/audit?call=&user=&action=&before=`: newest first, 200 a page.
pub async fn audit_page(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    Query(f): Query<Filter>,
) -> Result<Html<String>, AppError> {
    let entries = query(&st, f.clone()).await?;
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let older = (entries.len() == AUDIT_PAGE as usize)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    let body = html! {
        h1 { "Audit log" }
        p.muted { "Who viewed, played, downloaded or imported what, and who started or stopped captures, logged in or changed sessions. Filter by call to see everyone who listened to it." }
        form.filters method="get" action="/admin/audit" {
            label { "Call" input name="call" inputmode="numeric" value=(v(&f.call)); }
            label { "User" input name="user" value=(v(&f.user)); }
            label { "Action"
                select name="action" {
                    option value="" { "any" }
                    @for a in ACTIONS {
                        option value=(a) selected[f.action.as_deref() == Some(*a)] { (a) }
                    }
                }
            }
            div.actions { button type="submit" { "Filter" } a.button.secondary href="/admin/audit" { "Reset" } }
        }
        (pages::audit_table(&entries))
        @if let Some(id) = older {
            nav.pager { a href={"/admin/audit?" (older_query(&f, id))} { "Older →" } }
        }
    };
    Ok(Html(pages::page("Audit", &ident, body)))
}

const ACTIONS: &[&str] = &[
    action::VIEW,
    action::AUDIO,
    action::DOWNLOAD,
    action::DECRYPTED,
    action::EXPORT,
    action::IMPORT,
    action::CORRELATE,
    action::CAPTURE_START,
    action::CAPTURE_STOP,
    action::LOGIN,
    action::LOGIN_FAILED,
    action::LOGOUT_EVERYWHERE,
    action::UNLOCK,
    action::ALERT_RULE,
];

fn older_query(f: &Filter, before: i64) -> String {
    let enc = crate::text::url_encode;
    let mut q = format!("before={before}");
    for (k, v) in [("call", &f.call), ("user", &f.user), ("action", &f.action)] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            q.push_str(&format!("&{k}={}", enc(v)));
        }
    }
    q
}

/// `GET /api/audit`: the same as JSON.
pub async fn api_audit(
    State(st): State<Shared>,
    Query(f): Query<Filter>,
) -> Result<Json<serde_json::Value>, AppError> {
    let entries = query(&st, f).await.map_err(AppError::json)?;
    Ok(Json(serde_json::json!({ "entries": entries })))
}
