//! The Dashboards page and `/api/dashboard`: ASR, ACD, NER, PDD, load,
//! response mix, MOS, one-way audio and loss per minute, hour or day, read
//! from the index's per-minute rollups (never from the calls themselves),
//! each bar a link to the calls of its bucket.

use axum::Json;
use axum::extract::{Extension, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{PreEscaped, html};
use serde::{Deserialize, Serialize};
use voxtap_engine::index::{Bucket, CallQuery, Counts, DashQuery, NOTABLE_CODES, SortKey};
use voxtap_engine::output::format_ts;

use crate::charts::{Layer, bucket_chart};
use crate::handlers::{AppError, parse_time};
use crate::text::url_encode;
use crate::{Identity, Shared};

type R<T> = Result<T, AppError>;

const MINUTE_NS: u64 = 60_000_000_000;
/// More bars than this would be thinner than a pixel on the 760 px chart.
pub const MAX_BUCKETS: u64 = 1500;

/// The page's form, all text like the call list's.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct DashParams {
    pub from: Option<String>,
    pub to: Option<String>,
    /// `minute`, `hour` or `day`; empty picks by the range.
    pub step: Option<String>,
    /// A trunk name, `-` for calls of no trunk, empty for all.
    pub trunk: Option<String>,
    pub codec: Option<String>,
    /// On a hub: one sensor's calls (empty for the fleet).
    pub sensor: Option<String>,
}

fn nonempty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The question the parameters ask; `newest` (the latest call's start)
/// places the default range: the 24 hours up to it.
pub fn dash_query(p: &DashParams, newest: Option<u64>) -> Result<DashQuery, String> {
    let time =
        |s: &str| parse_time(s).ok_or(format!("bad time '{s}': use YYYY-MM-DDTHH:MM[:SS] in UTC"));
    let to = match nonempty(&p.to) {
        Some(s) => time(s)?,
        None => (newest.unwrap_or(0) / 3_600_000_000_000 + 1) * 3_600_000_000_000,
    };
    let from = match nonempty(&p.from) {
        Some(s) => time(s)?,
        None => to.saturating_sub(24 * 3_600_000_000_000),
    };
    if from >= to {
        return Err("the range is empty: 'from' must be before 'to'".into());
    }
    let minutes = (to - from).div_ceil(MINUTE_NS);
    let step_minutes = match nonempty(&p.step) {
        Some("minute") => 1,
        Some("hour") => 60,
        Some("day") => 1440,
        Some(s) => return Err(format!("unknown step '{s}': minute, hour or day")),
        None if minutes <= 360 => 1,
        None if minutes <= 14 * 1440 => 60,
        None => 1440,
    };
    let buckets = minutes.div_ceil(step_minutes) + 1;
    if buckets > MAX_BUCKETS {
        return Err(format!(
            "{buckets} buckets is too many to draw (at most {MAX_BUCKETS}): choose a larger step or a shorter range"
        ));
    }
    Ok(DashQuery {
        from_ns: from,
        to_ns: to,
        step_minutes,
        trunk: nonempty(&p.trunk).map(|t| {
            if t == "-" {
                String::new()
            } else {
                t.to_string()
            }
        }),
        codec: nonempty(&p.codec).map(String::from),
    })
}

/// Every bucket of the range, empty ones included, oldest first.
pub fn fill(q: &DashQuery, found: &[Bucket]) -> Vec<Bucket> {
    let step = q.step_minutes * MINUTE_NS;
    let first = q.from_ns / MINUTE_NS * MINUTE_NS / step * step;
    let mut out = Vec::new();
    let mut it = found.iter().peekable();
    let mut t = first;
    while t < q.to_ns {
        let counts = match it.peek() {
            Some(b) if b.start_ns == t => it.next().map(|b| b.counts).unwrap_or_default(),
            _ => Counts::default(),
        };
        out.push(Bucket {
            start_ns: t,
            counts,
        });
        t += step;
    }
    out
}

/// `YYYY-MM-DDTHH:MM:SS`, as the call list's filters take it.
fn time_param(ns: u64) -> String {
    let s = format_ts(ns);
    s.get(..19).unwrap_or(&s).to_string()
}

/// The call list of one bucket: the INVITE calls that started in it, of
/// the dashboard's trunk and codec, oldest first.
pub fn drill_href(q: &DashQuery, sensor: Option<&str>, start_ns: u64) -> String {
    let end = start_ns + q.step_minutes * MINUTE_NS;
    let mut s = format!(
        "/calls?from={}&to={}&method=INVITE",
        time_param(start_ns.max(q.from_ns / MINUTE_NS * MINUTE_NS)),
        time_param(end)
    );
    if let Some(t) = &q.trunk {
        s.push_str(&format!(
            "&trunk={}",
            url_encode(if t.is_empty() { "-" } else { t })
        ));
    }
    if let Some(c) = &q.codec {
        s.push_str(&format!("&codec={}", url_encode(c)));
    }
    if let Some(x) = sensor {
        s.push_str(&format!("&sensor={}", url_encode(x)));
    }
    s.push_str("&sort=start&dir=asc&per_page=500");
    s
}

/// The short link a chart's bar carries (a page has thousands of them):
/// `/dashboards/calls` redirects it to [`drill_href`].
fn short_href(q: &DashQuery, sensor: Option<&str>, start_ns: u64) -> String {
    let at = start_ns.max(q.from_ns / MINUTE_NS * MINUTE_NS) / 1_000_000_000;
    let mut s = format!("/dashboards/calls?at={at}&step={}", q.step_minutes);
    if let Some(t) = &q.trunk {
        s.push_str(&format!(
            "&trunk={}",
            url_encode(if t.is_empty() { "-" } else { t })
        ));
    }
    if let Some(c) = &q.codec {
        s.push_str(&format!("&codec={}", url_encode(c)));
    }
    if let Some(x) = sensor {
        s.push_str(&format!("&sensor={}", url_encode(x)));
    }
    s
}

#[derive(Deserialize)]
pub struct DrillParams {
    /// The bucket's start, seconds since the epoch.
    at: u64,
    step: u64,
    trunk: Option<String>,
    codec: Option<String>,
    sensor: Option<String>,
}

/// A bar's link: the call list of its bucket.
pub async fn drill(Query(p): Query<DrillParams>) -> R<axum::response::Redirect> {
    let start =
        p.at.checked_mul(1_000_000_000)
            .filter(|t| *t < u64::MAX / 2);
    let (Some(start), true) = (start, (1..=1440).contains(&p.step)) else {
        return Err(AppError::new(StatusCode::BAD_REQUEST, "bad bucket"));
    };
    let q = DashQuery {
        from_ns: start,
        to_ns: start + p.step * MINUTE_NS,
        step_minutes: p.step,
        trunk: p.trunk.map(|t| if t == "-" { String::new() } else { t }),
        codec: p.codec,
    };
    let sensor = nonempty(&p.sensor);
    Ok(axum::response::Redirect::to(&drill_href(&q, sensor, start)))
}

/// One bucket as the API gives it: the sums and the figures from them.
#[derive(Serialize)]
pub struct ApiBucket {
    pub start_ns: u64,
    pub counts: Counts,
    pub asr: Option<f64>,
    pub acd_s: Option<f64>,
    pub ner: Option<f64>,
    pub pdd_ms: Option<f64>,
    pub mean_concurrent: f64,
    pub calls_per_s: f64,
    pub rtp_loss_pct: Option<f64>,
    /// The call list of the bucket.
    pub calls: String,
    #[serde(skip)]
    link: String,
}

#[derive(Serialize)]
pub struct Dashboard {
    pub from_ns: u64,
    pub to_ns: u64,
    pub step_minutes: u64,
    pub trunk: Option<String>,
    pub codec: Option<String>,
    /// On a hub: the one sensor shown (None: the fleet).
    pub sensor: Option<String>,
    pub totals: ApiBucket,
    pub buckets: Vec<ApiBucket>,
}

fn api_bucket(
    q: &DashQuery,
    sensor: Option<&str>,
    start_ns: u64,
    c: Counts,
    seconds: f64,
) -> ApiBucket {
    ApiBucket {
        start_ns,
        asr: c.asr(),
        acd_s: c.acd_s(),
        ner: c.ner(),
        pdd_ms: c.pdd_ms(),
        mean_concurrent: c.active_ms as f64 / 1000.0 / seconds,
        calls_per_s: c.attempts as f64 / seconds,
        rtp_loss_pct: c.rtp_loss_pct(),
        calls: drill_href(q, sensor, start_ns),
        link: short_href(q, sensor, start_ns),
        counts: c,
    }
}

/// What a dashboard shows: its buckets, and the trunks and codecs of the
/// form.
type Loaded = (Vec<Bucket>, Vec<String>, Vec<String>);

/// The buckets of `q` from the index's rollups.
async fn load_local(st: &Shared, q: &DashQuery) -> R<Loaded> {
    let q2 = q.clone();
    Ok(st
        .db
        .run(move |idx| {
            let found = idx.dashboard(&q2)?;
            let codecs = idx.dashboard_codecs(q2.from_ns, q2.to_ns)?;
            let trunks = idx.trunks()?.into_iter().map(|t| t.name).collect();
            Ok((found, trunks, codecs))
        })
        .await?)
}

/// The buckets of `q` from the central index's rollups (a hub).
async fn load_hub(hub: &crate::hub::Hub, q: &DashQuery, sensor: Option<&str>) -> R<Loaded> {
    let found = hub.dashboard(q, sensor).await?;
    let mut trunks = hub.dashboard_values("trunk", q.from_ns, q.to_ns).await?;
    trunks.retain(|t| !t.is_empty());
    let codecs = hub.dashboard_values("codec", q.from_ns, q.to_ns).await?;
    Ok((found, trunks, codecs))
}

/// The dashboard of `p` from the rollups (the central ones on a hub).
async fn load(st: &Shared, p: &DashParams) -> R<(Dashboard, Vec<String>, Vec<String>)> {
    let sensor = nonempty(&p.sensor).filter(|_| st.hub.is_some());
    let newest = match (nonempty(&p.to), &st.hub) {
        (Some(_), _) => None,
        (None, Some(hub)) => hub.newest_start(sensor).await?,
        (None, None) => newest_start(st).await?,
    };
    let q = dash_query(p, newest).map_err(|e| AppError::new(StatusCode::BAD_REQUEST, e))?;
    let (found, trunks, codecs) = match &st.hub {
        Some(hub) => load_hub(hub, &q, sensor).await?,
        None => load_local(st, &q).await?,
    };
    let all = fill(&q, &found);
    let secs = (q.step_minutes * 60) as f64;
    let mut total = Counts::default();
    let buckets = all
        .iter()
        .map(|b| {
            total.add(&b.counts);
            api_bucket(&q, sensor, b.start_ns, b.counts, secs)
        })
        .collect();
    let range_s = (q.to_ns - q.from_ns) as f64 / 1e9;
    let dash = Dashboard {
        totals: api_bucket(&q, sensor, q.from_ns, total, range_s),
        from_ns: q.from_ns,
        to_ns: q.to_ns,
        step_minutes: q.step_minutes,
        trunk: q.trunk.clone(),
        codec: q.codec.clone(),
        sensor: sensor.map(String::from),
        buckets,
    };
    Ok((dash, trunks, codecs))
}

/// The start of the newest call (one index seek).
async fn newest_start(st: &Shared) -> R<Option<u64>> {
    let q = CallQuery {
        sort: SortKey::Start,
        descending: true,
        limit: 1,
        ..Default::default()
    };
    let page = st.db.run(move |idx| idx.search(&q)).await?;
    Ok(page.rows.first().map(|r| r.start_ns))
}

pub async fn api(State(st): State<Shared>, Query(p): Query<DashParams>) -> R<Response> {
    let (d, _, _) = load(&st, &p).await.map_err(AppError::json)?;
    Ok(Json(d).into_response())
}

pub async fn page(
    State(st): State<Shared>,
    Extension(id): Extension<Identity>,
    Query(p): Query<DashParams>,
) -> R<Html<String>> {
    // A hub's form chooses a sensor too.
    let sensors = match &st.hub {
        Some(hub) => Some(hub.sensor_names().await?),
        None => None,
    };
    let sensors = sensors.as_deref();
    let body = match load(&st, &p).await {
        Ok((d, trunks, codecs)) => html! {
            (form(&p, sensors, &trunks, &codecs))
            (totals(&d))
            (PreEscaped(charts(&d)))
        },
        Err(e) if e.status() == StatusCode::BAD_REQUEST => html! {
            (form(&p, sensors, &[], &[]))
            p.error { (e.message()) }
        },
        Err(e) => return Err(e),
    };
    Ok(Html(crate::pages::page("Dashboards", &id, body)))
}

fn form(
    p: &DashParams,
    sensors: Option<&[String]>,
    trunks: &[String],
    codecs: &[String],
) -> maud::Markup {
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let sel = |o: &Option<String>, x: &str| o.as_deref() == Some(x);
    html! {
        form.filters method="get" action="/dashboards" {
            label { "From" input type="datetime-local" step="1" name="from" value=(v(&p.from)); }
            label { "To" input type="datetime-local" step="1" name="to" value=(v(&p.to)); }
            label { "Per" select name="step" {
                option value="" { "auto" }
                @for s in ["minute", "hour", "day"] { option value=(s) selected[sel(&p.step, s)] { (s) } }
            } }
            @if let Some(sensors) = sensors {
                label { "Sensor" select name="sensor" {
                    option value="" { "all" }
                    @for x in sensors { option value=(x) selected[sel(&p.sensor, x)] { (x) } }
                } }
            }
            label { "Trunk" select name="trunk" {
                option value="" { "any" }
                @for t in trunks { option value=(t) selected[sel(&p.trunk, t)] { (t) } }
                option value="-" selected[sel(&p.trunk, "-")] { "(no trunk)" }
            } }
            label { "Codec" select name="codec" {
                option value="" { "any" }
                @for c in codecs { option value=(c) selected[sel(&p.codec, c)] { @if c.is_empty() { "(no media)" } @else { (c) } } }
            } }
            div.actions { button type="submit" id="show" { "Show" } }
        }
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{:.1} %", v * 100.0))
}

fn num(v: Option<f64>, unit: &str) -> String {
    v.map_or("–".into(), |v| format!("{v:.1} {unit}"))
}

fn totals(d: &Dashboard) -> maud::Markup {
    let t = &d.totals;
    let c = &t.counts;
    html! {
        table.kv id="totals" data-attempts=(c.attempts) data-answered=(c.answered) data-ner-ok=(c.ner_ok)
            data-answered-ms=(c.answered_ms) data-pdd-ms=(c.pdd_ms) data-pdd-n=(c.pdd_n) {
            tr { th { "Calls (INVITE)" } td { (c.attempts) } th { "Answered" } td { (c.answered) } }
            tr { th { "ASR" } td #asr { (pct(t.asr)) } th { "ACD" } td #acd { (num(t.acd_s, "s")) } }
            tr { th { "NER" } td #ner { (pct(t.ner)) } th { "PDD (mean)" } td #pdd { (num(t.pdd_ms, "ms")) } }
            tr { th { "One-way audio" } td { (c.one_way) } th { "Capture loss" } td { (c.capture_loss) " packets" } }
            tr { th { "Notable codes" } td colspan="3" #codes {
                @for (k, code) in NOTABLE_CODES.iter().enumerate() { (code) ": " (c.codes[k]) " · " }
                "no final response: " (c.classes[0])
            } }
            tr { th { "RTP loss" } td { (num(t.rtp_loss_pct, "%")) } th { "Range" } td { (crate::text::ts(d.from_ns)) " – " (crate::text::ts(d.to_ns)) " UTC, per " (step_name(d.step_minutes)) } }
        }
    }
}

fn step_name(m: u64) -> &'static str {
    match m {
        1 => "minute",
        60 => "hour",
        _ => "day",
    }
}

/// Every chart of the page, one SVG each.
fn charts(d: &Dashboard) -> String {
    let b = &d.buckets;
    let hrefs: Vec<String> = b.iter().map(|x| x.link.clone()).collect();
    let axis_end = crate::text::ts(d.to_ns);
    let axis = (crate::text::ts(d.from_ns), axis_end);
    let axis = (axis.0.as_str(), axis.1.as_str());
    let one =
        |id: &str, title: &str, unit: &str, color: &str, f: &dyn Fn(&ApiBucket) -> Option<f64>| {
            let layer = Layer {
                label: title,
                color,
                values: b.iter().map(f).collect(),
            };
            bucket_chart(id, title, unit, &[layer], &hrefs, axis)
        };
    let cnt = |f: fn(&Counts) -> i64| move |x: &ApiBucket| Some(f(&x.counts) as f64);
    let mut out = String::new();
    out += &one("asr", "ASR", "%", "#2357c6", &|x| x.asr.map(|v| v * 100.0));
    out += &one("acd", "ACD", "s", "#1e7a3c", &|x| x.acd_s);
    out += &one("ner", "NER", "%", "#2357c6", &|x| x.ner.map(|v| v * 100.0));
    out += &one("pdd", "PDD (mean)", "ms", "#a86200", &|x| x.pdd_ms);
    out += &one(
        "concurrent",
        "Concurrent calls (mean)",
        "",
        "#5b3cc4",
        &|x| Some(x.mean_concurrent),
    );
    out += &one("cps", "Calls per second", "", "#5b3cc4", &|x| {
        Some(x.calls_per_s)
    });
    out += &stacked(
        d,
        "responses",
        "SIP final responses",
        &hrefs,
        axis,
        response_layers,
    );
    out += &stacked(
        d,
        "mos",
        "MOS (worst stream) distribution",
        &hrefs,
        axis,
        mos_layers,
    );
    out += &one(
        "oneway",
        "One-way audio (calls)",
        "",
        "#b3261e",
        &cnt(|c| c.one_way),
    );
    out += &one(
        "caploss",
        "Capture loss (packets)",
        "",
        "#b3261e",
        &cnt(|c| c.capture_loss),
    );
    out += &one("rtploss", "RTP loss", "%", "#b3261e", &|x| x.rtp_loss_pct);
    out
}

type Layers = fn(&[ApiBucket]) -> Vec<(String, &'static str, Vec<Option<f64>>)>;

fn stacked(
    d: &Dashboard,
    id: &str,
    title: &str,
    hrefs: &[String],
    axis: (&str, &str),
    layers: Layers,
) -> String {
    let ls = layers(&d.buckets);
    let layers: Vec<Layer<'_>> = ls
        .iter()
        .map(|(label, color, values)| Layer {
            label,
            color,
            values: values.clone(),
        })
        .collect();
    bucket_chart(id, title, "calls", &layers, hrefs, axis)
}

fn response_layers(b: &[ApiBucket]) -> Vec<(String, &'static str, Vec<Option<f64>>)> {
    let colors = [
        "#9aa3b5", "#c9c9c9", "#1e7a3c", "#2357c6", "#e0a100", "#b3261e", "#5b3cc4",
    ];
    let names = ["none", "1xx", "2xx", "3xx", "4xx", "5xx", "6xx"];
    (0..7)
        .filter(|k| *k != 1)
        .map(|k| {
            let v = b.iter().map(|x| Some(x.counts.classes[k] as f64)).collect();
            (names[k].to_string(), colors[k], v)
        })
        .collect()
}

fn mos_layers(b: &[ApiBucket]) -> Vec<(String, &'static str, Vec<Option<f64>>)> {
    let names = ["no MOS", "< 2", "2–3", "3–3.5", "3.5–4", "≥ 4"];
    let colors = [
        "#9aa3b5", "#b3261e", "#e06c00", "#e0a100", "#7bb661", "#1e7a3c",
    ];
    (0..6)
        .map(|k| {
            let v = b.iter().map(|x| Some(x.counts.mos[k] as f64)).collect();
            (names[k].to_string(), colors[k], v)
        })
        .collect()
}
