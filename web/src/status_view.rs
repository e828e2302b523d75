//! The live status files (`<data>/status/<component>.json`, written by the
//! sensor, the uploader, the HEP exporter, remote captures) on the sensor
//! page and in `/metrics`. Components are rendered generically, so a new
//! writer shows up without a change here.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use maud::{Markup, html};
use serde_json::Value;

use crate::text;

/// A status file older than this is flagged: its writer has stopped or hung.
pub const STALE_SECONDS: u64 = 10;

/// `sensor` first, then the others by name (`read_all` sorts by name).
pub fn ordered(mut all: Vec<(String, Value)>) -> Vec<(String, Value)> {
    all.sort_by_key(|(c, _)| (c != "sensor", c.clone()));
    all
}

pub fn age(v: &Value, now_unix: u64) -> Option<u64> {
    v.get("updated_unix")
        .and_then(Value::as_u64)
        .map(|t| now_unix.saturating_sub(t))
}

/// A scalar, with units guessed from the field name.
fn scalar(key: &str, v: &Value) -> String {
    match v {
        Value::Null => "–".into(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            if key == "uptime_seconds" {
                text::uptime(f as u64)
            } else if key.ends_with("_unix") && f > 1e9 {
                text::ts((f as u64).saturating_mul(1_000_000_000)) + " UTC"
            } else if key.contains("bytes") {
                let b = text::bytes(f);
                if key.ends_with("per_second") {
                    format!("{b}/s")
                } else {
                    b
                }
            } else if n.is_f64() {
                format!("{f:.1}")
            } else {
                n.to_string()
            }
        }
        other => other.to_string(),
    }
}

fn label(key: &str) -> String {
    key.replace('_', " ")
}

/// A JSON object as a table; nested objects and arrays become sub-tables.
pub fn table(v: &Value) -> Markup {
    match v {
        Value::Object(m) => html! {
            table.kv {
                tbody {
                    @for (k, x) in m {
                        @if k != "component" {
                            tr data-field=(k) {
                                th { (label(k)) }
                                td { @if x.is_object() || x.is_array() { (table(x)) } @else { (scalar(k, x)) } }
                            }
                        }
                    }
                }
            }
        },
        Value::Array(items) if items.iter().all(Value::is_object) && !items.is_empty() => {
            // Rows of objects: one column per key seen.
            let mut cols: Vec<&String> = Vec::new();
            for it in items {
                if let Value::Object(m) = it {
                    for k in m.keys() {
                        if !cols.contains(&k) {
                            cols.push(k);
                        }
                    }
                }
            }
            html! {
                table.items {
                    thead { tr { @for c in &cols { th { (label(c)) } } } }
                    tbody {
                        @for it in items {
                            tr { @for c in &cols {
                                td { @match it.get(c.as_str()) {
                                    Some(x) if x.is_object() || x.is_array() => (table(x)),
                                    Some(x) => (scalar(c, x)),
                                    None => "",
                                } }
                            } }
                        }
                    }
                }
            }
        }
        Value::Array(items) => html! {
            ul.items { @for it in items { li { @if it.is_object() || it.is_array() { (table(it)) } @else { (scalar("", it)) } } } }
        },
        x => html! { (scalar("", x)) },
    }
}

/// Every component's card.
pub fn cards(all: &[(String, Value)], now_unix: u64) -> Markup {
    html! {
        @if all.is_empty() {
            p.muted id="no-status" { "No live component has written a status file under status/ (a sensor writes one while `voxtap run` captures into this data directory)." }
        }
        @for (comp, v) in all {
            @let age = age(v, now_unix);
            @let stale = age.is_none_or(|a| a > STALE_SECONDS);
            section.status id={"status-" (comp)} data-stale=(if stale { "true" } else { "false" }) {
                h2 {
                    (comp)
                    @if stale {
                        " " span.badge.stale {
                            "stale"
                            @if let Some(a) = age { ": last update " (a) " s ago" } @else { ": no update time" }
                        }
                    } @else {
                        " " span.muted { "updated " (age.unwrap_or(0)) " s ago" }
                    }
                }
                (table(v))
            }
        }
    }
}

fn metric_name(parts: &[&str]) -> String {
    let mut s = String::from("voxtap");
    for p in parts {
        s.push('_');
        for c in p.chars() {
            s.push(if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            });
        }
    }
    s
}

fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64().filter(|f| f.is_finite()),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

/// What names an item of an array in its label: the first of these string
/// fields it has (with its `interface`, when it has one: a host captured on
/// two interfaces is two items), else its position.
fn item_name(it: &Value, i: usize) -> String {
    let base = ["name", "id", "host", "target", "bucket", "key"]
        .iter()
        .find_map(|k| it.get(*k).and_then(Value::as_str));
    let iface = ["interface", "iface"]
        .iter()
        .find_map(|k| it.get(*k).and_then(Value::as_str));
    match (base, iface) {
        (Some(b), Some(f)) => format!("{b}:{f}"),
        (Some(b), None) => b.to_string(),
        (None, _) => i.to_string(),
    }
}

/// Item labels of an array, made unique by appending the position to a
/// name seen before.
fn item_names(items: &[Value]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            let n = item_name(it, i);
            if seen.insert(n.clone()) {
                n
            } else {
                format!("{n}#{i}")
            }
        })
        .collect()
}

/// Metric name -> (help, samples as (labels, value)).
type Families = BTreeMap<String, (String, Vec<(String, f64)>)>;

/// Prometheus text for every status file: each numeric (or boolean) field
/// as `voxtap_<component>_<field>` (nested objects add their key to the
/// name; arrays of objects give one sample per item, labelled `item`), plus
/// each file's age. `taken` are names already in the exposition.
pub fn prometheus(all: &[(String, Value)], now_unix: u64, taken: &[&str]) -> String {
    let mut m = Families::new();
    fn walk(m: &mut Families, comp: &str, path: &mut Vec<String>, labels: &str, v: &Value) {
        match v {
            Value::Object(o) => {
                for (k, x) in o {
                    if path.is_empty() && (k == "component" || k == "updated_unix") {
                        continue;
                    }
                    path.push(k.clone());
                    walk(m, comp, path, labels, x);
                    path.pop();
                }
            }
            Value::Array(items) if labels.is_empty() => {
                for (it, name) in items.iter().zip(item_names(items)) {
                    if it.is_object() {
                        let l = format!("item=\"{}\"", label_value(&name));
                        walk(m, comp, path, &l, it);
                    }
                }
            }
            x => {
                let Some(f) = number(x) else { return };
                let mut parts: Vec<&str> = vec![comp];
                parts.extend(path.iter().map(String::as_str));
                let name = metric_name(&parts);
                let e = m.entry(name).or_insert_with(|| {
                    (
                        format!("Field {} of status/{comp}.json.", path.join(".")),
                        Vec::new(),
                    )
                });
                e.1.push((labels.to_string(), f));
            }
        }
    }
    for (comp, v) in all {
        walk(&mut m, comp, &mut Vec::new(), "", v);
    }
    let mut out = String::new();
    for (name, (help, samples)) in &m {
        if taken.contains(&name.as_str()) {
            continue;
        }
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        let mut seen = std::collections::HashSet::new();
        for (l, f) in samples {
            // Two items with the same name would be a duplicate series.
            if !seen.insert(l.clone()) {
                continue;
            }
            if l.is_empty() {
                let _ = writeln!(out, "{name} {f}");
            } else {
                let _ = writeln!(out, "{name}{{{l}}} {f}");
            }
        }
    }
    if !all.is_empty() {
        out.push_str("# HELP voxtap_status_age_seconds Seconds since each status file was last written.\n# TYPE voxtap_status_age_seconds gauge\n");
        for (comp, v) in all {
            if let Some(a) = age(v, now_unix) {
                let _ = writeln!(
                    out,
                    "voxtap_status_age_seconds{{component=\"{}\"}} {a}",
                    label_value(comp)
                );
            }
        }
    }
    out
}
