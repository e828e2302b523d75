//! The Alerts page (rules with their state and value, the history of
//! firing and resolved alerts; any logged-in user), its JSON, and the
//! admins' rule editor (CSRF-checked forms, each change audited).

use axum::Json;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::rules::{Metric, Op, Rule};
use super::store::HistoryRow;
use super::{Origin, RuleStatus};
use crate::audit::action;
use crate::csrf::{CheckedForm, accepts_json, json_or_back};
use crate::handlers::{AppError, record};
use crate::text::ts;
use crate::{Identity, Role, Shared, pages};

/// History rows shown.
const HISTORY: u32 = 200;

#[derive(Debug, Default, Deserialize)]
pub struct HistoryQuery {
    pub rule: Option<String>,
}

async fn history(st: &Shared, rule: Option<String>) -> Result<Vec<HistoryRow>, AppError> {
    let st = st.clone();
    let rule = rule.filter(|r| !r.trim().is_empty());
    tokio::task::spawn_blocking(move || st.alerts.store.history(rule.as_deref(), HISTORY))
        .await
        .map_err(|_| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "alert history failed"))?
        .map_err(|e| {
            tracing::error!("reading alerts.sqlite: {e}");
            AppError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "reading the alert history failed",
            )
        })
}

fn value_text(v: Option<f64>) -> String {
    v.map_or("–".to_string(), |v| format!("{v:.2}"))
}

fn state_cell(s: Option<&RuleStatus>) -> Markup {
    match s {
        Some(s) if s.firing => {
            html! { span.badge.stale { "firing" } " " span.muted { "since " (ts(s.since_ns)) } }
        }
        Some(s) if s.evaluated_ns > 0 => html! { span.badge { "ok" } },
        _ => html! { span.muted { "not evaluated yet" } },
    }
}

/// `GET /alerts[?rule=NAME]`.
pub async fn page(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    Query(q): Query<HistoryQuery>,
) -> Result<Html<String>, AppError> {
    let rows = history(&st, q.rule.clone()).await?;
    let status = st.alerts.status();
    let rules = st.alerts.rules();
    let body = html! {
        h1 { "Alerts" }
        p.muted { "Rules are evaluated every few seconds over the calls that ended in their window and the sensor's status; a rule fires while its condition holds and resolves when it no longer does." }
        @if ident.role >= Role::Admin { p { a href="/admin/alerts" { "Edit the rules" } } }
        table.alerts id="alert-rules" {
            thead { tr { th { "Rule" } th { "Condition" } th.num { "Value" } th { "State" } th { "From" } } }
            tbody {
                @for (r, origin) in &rules {
                    @let s = status.get(&r.name);
                    tr data-rule=(r.name) data-firing=(if s.is_some_and(|s| s.firing) { "true" } else { "false" }) {
                        td { a href={"/alerts?rule=" (crate::text::url_encode(&r.name))} { (r.name) } }
                        td { (r.to_string()) }
                        td.num { (value_text(s.and_then(|s| s.value))) }
                        td { (state_cell(s)) }
                        td { (if *origin == Origin::Config { "config" } else { "web" }) }
                    }
                }
                @if rules.is_empty() { tr { td colspan="5" .empty { "No alert rules: add [[alerts]] to the web config or, as an admin, on the rule editor." } } }
            }
        }
        h2 { "History " @if let Some(r) = q.rule.as_deref().filter(|r| !r.is_empty()) { span.muted { "of " (r) " · " a href="/alerts" { "all" } } } }
        (history_table(&rows))
    };
    Ok(Html(pages::page("Alerts", &ident, body)))
}

fn history_table(rows: &[HistoryRow]) -> Markup {
    html! {
        table.alerts id="alert-history" {
            thead { tr { th { "Time (UTC)" } th { "Rule" } th { "State" } th.num { "Value" } th { "Condition" } } }
            tbody {
                @for h in rows {
                    tr data-state=(h.state) data-rule=(h.rule) {
                        td { (ts(h.ts_ns)) }
                        td { (h.rule) }
                        td { @if h.state == "firing" { span.badge.stale { "firing" } } @else { span.badge { (h.state) } } }
                        td.num { (value_text(h.value)) }
                        td { (h.summary) }
                    }
                }
                @if rows.is_empty() { tr { td colspan="5" .empty { "No alert has fired." } } }
            }
        }
    }
}

/// `GET /api/alerts[?rule=NAME]`: rules with their state, and the history.
pub async fn api(
    State(st): State<Shared>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<serde_json::Value>, AppError> {
    let rows = history(&st, q.rule).await.map_err(AppError::json)?;
    let status = st.alerts.status();
    let rules: Vec<_> = st
        .alerts
        .rules()
        .into_iter()
        .map(|(r, origin)| {
            let s = status.get(&r.name).cloned().unwrap_or_default();
            serde_json::json!({ "rule": r, "origin": origin, "condition": r.to_string(), "status": s })
        })
        .collect();
    Ok(Json(serde_json::json!({ "rules": rules, "history": rows })))
}

/// One rule's form (a blank one adds a rule).
fn rule_form(r: Option<&Rule>, csrf: &str) -> Markup {
    let s = |v: Option<String>| v.unwrap_or_default();
    let metric = r.map(|r| r.metric);
    let op = r.map(|r| r.op);
    html! {
        form.rule method="post" action="/admin/alerts" {
            input type="hidden" name="csrf" value=(csrf);
            label { "Name" input name="name" required value=(s(r.map(|r| r.name.clone()))) readonly[r.is_some()]; }
            label { "Metric" select name="metric" { @for m in Metric::ALL { option value=(m.as_str()) selected[metric == Some(m)] { (m.as_str()) } } } }
            label { "Op" select name="op" { @for o in [Op::Lt, Op::Le, Op::Gt, Op::Ge] { option value=(o.as_str()) selected[op == Some(o)] { (o.as_str()) } } } }
            label { "Threshold" input name="threshold" required inputmode="decimal" value=(s(r.map(|r| r.threshold.to_string()))); }
            label { "Window s" input name="window_seconds" inputmode="numeric" value=(r.map_or(300, |r| r.window_seconds)); }
            label { "Scope" input name="scope" placeholder="all or 10.1.0.0/16" value=(s(r.and_then(|r| r.scope.clone()))); }
            label { "SIP code" input name="code" inputmode="numeric" value=(s(r.and_then(|r| r.code).map(|c| c.to_string()))); }
            label { "MOS" input name="mos" inputmode="decimal" value=(s(r.and_then(|r| r.mos).map(|m| m.to_string()))); }
            label { "Min calls" input name="min_calls" inputmode="numeric" value=(s(r.and_then(|r| r.min_calls).map(|m| m.to_string()))); }
            label { "Component" input name="component" placeholder="sensor" value=(s(r.and_then(|r| r.component.clone()))); }
            div.actions { button type="submit" { @if r.is_some() { "Save" } @else { "Add rule" } } }
        }
    }
}

/// `GET /admin/alerts`.
pub async fn admin_page(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
) -> Html<String> {
    let csrf = ident.csrf.clone().unwrap_or_default();
    let rules = st.alerts.rules();
    let body = html! {
        h1 { "Alert rules" }
        p.muted { "Rules of the web config ([[alerts]]) can be changed or removed here; the change is kept in alerts.sqlite over the config until removed. Metrics: asr (%), mos_below (% of calls under MOS), sip_status (calls with a final response code), capture_loss (frames lost), sensor_silent (seconds), registration_failures." }
        @for (r, origin) in &rules {
            section.alert-rule data-rule=(r.name) {
                h2 { (r.name) " " span.muted { "(" (if *origin == Origin::Config { "config" } else { "web" }) ")" } }
                (rule_form(Some(r), &csrf))
                form.inline method="post" action="/admin/alerts/delete" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="name" value=(r.name);
                    button.link type="submit" { "Remove" }
                }
            }
        }
        h2 { "New rule" }
        (rule_form(None, &csrf))
    };
    Html(pages::page("Alert rules", &ident, body))
}

fn opt<T: std::str::FromStr>(form: &CheckedForm, key: &str) -> Result<Option<T>, String> {
    match form.get(key).map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("{key}: '{v}' is not a valid value")),
    }
}

/// The form as a checked rule.
fn parse_rule(form: &CheckedForm) -> Result<Rule, String> {
    let metric = form
        .get("metric")
        .and_then(Metric::parse)
        .ok_or("choose a metric")?;
    let op = form
        .get("op")
        .and_then(Op::parse)
        .ok_or("choose a comparison (<, <=, >, >=)")?;
    let text = |k: &str| {
        form.get(k)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(String::from)
    };
    let rule = Rule {
        name: text("name").unwrap_or_default(),
        metric,
        op,
        threshold: opt(form, "threshold")?.ok_or("threshold: a number")?,
        window_seconds: opt(form, "window_seconds")?.unwrap_or(300),
        scope: text("scope"),
        code: opt(form, "code")?,
        mos: opt(form, "mos")?,
        min_calls: opt(form, "min_calls")?,
        component: text("component"),
    };
    rule.check()?;
    Ok(rule)
}

fn done(json: bool, v: serde_json::Value) -> Response {
    json_or_back(json, v, "/admin/alerts")
}

/// `POST /admin/alerts`: adds or replaces the rule of that name.
pub async fn save(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    headers: HeaderMap,
    form: CheckedForm,
) -> Response {
    let json = accepts_json(&headers);
    let rule = match parse_rule(&form) {
        Ok(r) => r,
        Err(m) => {
            return AppError::new(StatusCode::BAD_REQUEST, m)
                .json_if(json)
                .into_response();
        }
    };
    let detail = format!("set {}: {rule}", rule.name);
    if let Err(e) = put(&st, &rule.name.clone(), Some(rule), &ident.user).await {
        return e.json_if(json).into_response();
    }
    record(
        &st,
        &ident.user,
        &ident.remote,
        action::ALERT_RULE,
        None,
        &detail,
    )
    .await;
    done(json, serde_json::json!({ "saved": detail }))
}

/// `POST /admin/alerts/delete` (`name`).
pub async fn delete(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    headers: HeaderMap,
    form: CheckedForm,
) -> Response {
    let json = accepts_json(&headers);
    let Some(name) = form.get("name").map(str::to_string) else {
        return AppError::new(StatusCode::BAD_REQUEST, "name the rule")
            .json_if(json)
            .into_response();
    };
    if !st.alerts.rules().iter().any(|(r, _)| r.name == name) {
        return AppError::new(StatusCode::NOT_FOUND, format!("no alert rule {name}"))
            .json_if(json)
            .into_response();
    }
    if let Err(e) = put(&st, &name, None, &ident.user).await {
        return e.json_if(json).into_response();
    }
    let detail = format!("removed {name}");
    record(
        &st,
        &ident.user,
        &ident.remote,
        action::ALERT_RULE,
        None,
        &detail,
    )
    .await;
    done(json, serde_json::json!({ "removed": name }))
}

async fn put(st: &Shared, name: &str, rule: Option<Rule>, user: &str) -> Result<(), AppError> {
    let (st, name, user) = (st.clone(), name.to_string(), user.to_string());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    tokio::task::spawn_blocking(move || {
        st.alerts.store.put(&name, rule.as_ref(), &user, now)?;
        st.alerts.reload()
    })
    .await
    .map_err(|_| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "saving the rule failed"))?
    .map_err(|e| {
        tracing::error!("alerts.sqlite: {e}");
        AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "saving the rule failed")
    })
}
