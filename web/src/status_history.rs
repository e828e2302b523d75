//! The sensor page's charts over time: the status files' history
//! (`voxtap_sensor::status::history`, one sample per 10 s per component,
//! 24 h) drawn with [`crate::charts::line_chart`], each chart beside the
//! current figures of its status file.

use std::collections::BTreeMap;

use maud::{Markup, PreEscaped, html};
use serde_json::Value;
use voxtap_sensor::status::history::{self, History, INTERVAL_S};

use crate::charts::{Layer, line_chart};
use crate::text;

/// The page's time ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Range {
    M15,
    H1,
    H24,
}

impl Range {
    pub const ALL: [Range; 3] = [Range::M15, Range::H1, Range::H24];

    /// `15m`, `1h` or `24h`; anything else is the default, 1 h.
    pub fn parse(s: Option<&str>) -> Range {
        match s {
            Some("15m") => Range::M15,
            Some("24h") => Range::H24,
            _ => Range::H1,
        }
    }

    pub fn param(self) -> &'static str {
        match self {
            Range::M15 => "15m",
            Range::H1 => "1h",
            Range::H24 => "24h",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Range::M15 => "last 15 min",
            Range::H1 => "last hour",
            Range::H24 => "last 24 h",
        }
    }

    pub fn seconds(self) -> u64 {
        match self {
            Range::M15 => 900,
            Range::H1 => 3_600,
            Range::H24 => 86_400,
        }
    }

    /// Points on a chart: one per sample, at most 360 (24 h: 4 min each).
    pub fn buckets(self) -> u64 {
        (self.seconds() / INTERVAL_S).min(360)
    }
}

/// One line of a chart. `key` is a field of the history (see
/// [`history::flatten`]); `[*]` in it stands for every item of an array,
/// each a line of its own, labelled by the item's name and coloured from
/// [`PALETTE`] when `color` is empty.
struct Series {
    comp: &'static str,
    key: &'static str,
    label: &'static str,
    color: &'static str,
    /// A counter: drawn as its increase per second.
    rate: bool,
}

/// A figure of the status file shown beside the chart.
struct Figure {
    comp: &'static str,
    key: &'static str,
    label: &'static str,
}

struct ChartDef {
    id: &'static str,
    title: &'static str,
    unit: &'static str,
    /// Values are multiplied by this (bytes to MiB).
    scale: f64,
    series: &'static [Series],
    now: &'static [Figure],
}

const fn s(
    comp: &'static str,
    key: &'static str,
    label: &'static str,
    color: &'static str,
    rate: bool,
) -> Series {
    Series {
        comp,
        key,
        label,
        color,
        rate,
    }
}

const fn f(comp: &'static str, key: &'static str, label: &'static str) -> Figure {
    Figure { comp, key, label }
}

const MIB: f64 = 1.0 / 1_048_576.0;

/// Colours of the lines of an array's items (rings, workers), in order.
const PALETTE: &[&str] = &[
    "#2357c6", "#1e7a3c", "#a86200", "#b3261e", "#6a3d9a", "#00838f", "#8a94a6", "#c2185b",
];

const CHARTS: &[ChartDef] = &[
    ChartDef {
        id: "chart-frames",
        title: "Frames per second",
        unit: "/s",
        scale: 1.0,
        series: &[
            s("sensor", "frames_total", "stored", "#2357c6", true),
            s("sensor", "kernel.seen", "seen by XDP", "#8a94a6", true),
        ],
        now: &[
            f("sensor", "frames_per_second", "frames/s"),
            f("sensor", "kernel_seen_per_second", "seen/s"),
            f("sensor", "bytes_per_second", "bytes/s"),
            f("sensor", "calls_active", "calls active"),
        ],
    },
    ChartDef {
        id: "chart-drops",
        title: "Drops per second by cause",
        unit: "/s",
        scale: 1.0,
        series: &[
            s("sensor", "drops.ring_full", "ring full", "#b3261e", true),
            s("sensor", "drops.malformed", "malformed", "#a86200", true),
            s(
                "sensor",
                "drops.unkept_by_config",
                "unkept by config",
                "#8a94a6",
                true,
            ),
            s(
                "sensor",
                "drops.call_write_errors",
                "call write errors",
                "#6a3d9a",
                true,
            ),
        ],
        now: &[
            f("sensor", "drops.ring_full", "ring full (total)"),
            f("sensor", "drops.malformed", "malformed (total)"),
            f(
                "sensor",
                "drops.unkept_by_config",
                "unkept by config (total)",
            ),
            f(
                "sensor",
                "drops.call_write_errors",
                "call write errors (total)",
            ),
            f("sensor", "capture_loss", "capture loss charged to calls"),
        ],
    },
    ChartDef {
        id: "chart-ring",
        title: "Kernel ring fill (largest backlog per poll)",
        unit: "%",
        scale: 1.0,
        series: &[s("sensor", "ring.fill_percent", "ring", "#1e7a3c", false)],
        now: &[
            f("sensor", "ring.fill_percent", "fill %"),
            f("sensor", "ring.backlog_bytes", "backlog bytes"),
            f("sensor", "ring.bytes", "ring bytes"),
        ],
    },
    ChartDef {
        id: "chart-rings",
        title: "Fill per kernel ring (largest backlog per poll)",
        unit: "%",
        scale: 1.0,
        series: &[s("sensor", "rings[*].fill_percent", "", "", false)],
        now: &[
            f("sensor", "rings[*].fill_percent", "fill %"),
            f("sensor", "rings[*].lost_ring_full", "lost, ring full"),
        ],
    },
    ChartDef {
        id: "chart-workers",
        title: "Pipeline threads busy",
        unit: "%",
        scale: 1.0,
        series: &[s("sensor", "workers[*].busy_percent", "", "", false)],
        now: &[
            f("sensor", "workers[*].busy_percent", "busy %"),
            f("sensor", "workers[*].frames_per_second", "frames/s"),
        ],
    },
    ChartDef {
        id: "chart-calls",
        title: "Calls active",
        unit: "",
        scale: 1.0,
        series: &[s("sensor", "calls_active", "calls", "#2357c6", false)],
        now: &[
            f("sensor", "calls_active", "calls active"),
            f("sensor", "calls_written", "calls written"),
        ],
    },
    ChartDef {
        id: "chart-store",
        title: "Store usage",
        unit: "MiB",
        scale: MIB,
        series: &[
            s("sensor", "store.bytes", "used", "#2357c6", false),
            s("sensor", "store.free_bytes", "disk free", "#8a94a6", false),
        ],
        now: &[
            f("sensor", "store.bytes", "store bytes"),
            f("sensor", "store.files", "files"),
            f("sensor", "store.free_bytes", "disk free bytes"),
            f("sensor", "store.files_deleted", "deleted by retention"),
        ],
    },
    ChartDef {
        id: "chart-upload",
        title: "Upload queue (files)",
        unit: "",
        scale: 1.0,
        series: &[
            s("upload", "queued_files", "queued", "#2357c6", false),
            s("upload", "spool_files", "spooled", "#a86200", false),
        ],
        now: &[
            f("upload", "queued_files", "queued files"),
            f("upload", "queued_bytes", "queued bytes"),
            f("upload", "spool_bytes", "spool bytes"),
            f("upload", "failed_files", "failed files"),
        ],
    },
    ChartDef {
        id: "chart-hep",
        title: "HEP queue per collector",
        unit: "",
        scale: 1.0,
        series: &[s("hep", "collectors[*].queue_depth", "", "#2357c6", false)],
        now: &[
            f("hep", "collectors[*].queue_depth", "queue depth"),
            f(
                "hep",
                "collectors[*].dropped_queue_full",
                "dropped, queue full",
            ),
        ],
    },
];

/// The keys of `keys` that `pattern` names, with the array item's name for
/// a `[*]` (or "" without one).
fn matching<'a>(pattern: &str, keys: impl Iterator<Item = &'a String>) -> Vec<(&'a str, String)> {
    let Some((pre, post)) = pattern.split_once("[*]") else {
        return keys
            .filter(|k| *k == pattern)
            .map(|k| (k.as_str(), String::new()))
            .collect();
    };
    keys.filter_map(|k| {
        let item = k
            .strip_prefix(pre)?
            .strip_prefix('[')?
            .strip_suffix(post)?
            .strip_suffix(']')?;
        (!item.contains(']')).then(|| (k.as_str(), item.to_string()))
    })
    .collect()
}

/// The chart's window: `n` buckets of `width` seconds from `from`, the last
/// one holding the sample of `now`.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub from: u64,
    pub width: u64,
    pub n: u64,
}

impl Window {
    pub fn new(range: Range, now_unix: u64) -> Window {
        let end = now_unix / INTERVAL_S * INTERVAL_S + INTERVAL_S;
        let from = end.saturating_sub(range.seconds());
        let n = range.buckets();
        Window {
            from,
            width: range.seconds() / n,
            n,
        }
    }
}

/// The bucket means of a series (its increase per second between two
/// samples for a counter; a decrease, as after a restart, gives none).
pub fn bucketed(points: &[(u64, f64)], rate: bool, w: Window, scale: f64) -> Vec<Option<f64>> {
    let mut sums = vec![(0.0, 0u32); w.n as usize];
    let mut add = |t: u64, v: f64| {
        if let Some(b) = t
            .checked_sub(w.from)
            .map(|d| d / w.width)
            .and_then(|i| sums.get_mut(i as usize))
        {
            b.0 += v;
            b.1 += 1;
        }
    };
    if rate {
        for p in points.windows(2) {
            let ((t0, v0), (t1, v1)) = (p[0], p[1]);
            if t1 > t0 && v1 >= v0 {
                add(t1, (v1 - v0) / (t1 - t0) as f64);
            }
        }
    } else {
        for &(t, v) in points {
            add(t, v);
        }
    }
    sums.into_iter()
        .map(|(s, c)| (c > 0).then(|| s / f64::from(c) * scale))
        .collect()
}

/// The histories of the components the charts draw, over the window (one
/// sample before it, for the first rate).
pub fn load(data: &std::path::Path, w: Window) -> BTreeMap<&'static str, History> {
    let to = w.from + w.width * w.n;
    let mut out = BTreeMap::new();
    for c in CHARTS.iter().flat_map(|c| c.series.iter().map(|s| s.comp)) {
        out.entry(c)
            .or_insert_with(|| history::read(data, c, w.from.saturating_sub(INTERVAL_S), to));
    }
    out
}

/// Every chart whose component has a status file or a history, each with
/// the current figures of its status file beside it, under the range links.
pub fn section(
    statuses: &[(String, Value)],
    hist: &BTreeMap<&str, History>,
    range: Range,
    now_unix: u64,
) -> Markup {
    let w = Window::new(range, now_unix);
    let current: BTreeMap<&str, BTreeMap<String, f64>> = statuses
        .iter()
        .map(|(c, v)| (c.as_str(), history::flatten(v).into_iter().collect()))
        .collect();
    let axis = (
        format!("{} UTC", clock(w.from)),
        format!("{} UTC", clock(w.from + w.width * w.n)),
    );
    html! {
        section #history data-range=(range.param()) data-from=(w.from) data-width=(w.width) {
            h2 { "Over time " span.muted { "(" (range.name()) ", a point per " (w.width) " s)" } }
            p.ranges {
                @for r in Range::ALL {
                    @if r == range { strong { (r.name()) } } @else { a href={"/sensor?range=" (r.param())} { (r.name()) } }
                    " "
                }
            }
            @for c in CHARTS {
                @let comp = c.series[0].comp;
                @let empty = BTreeMap::new();
                @let now = current.get(comp).unwrap_or(&empty);
                @if current.contains_key(comp) || hist.get(comp).is_some_and(|h| !h.samples.is_empty()) {
                    div.chartrow {
                        (PreEscaped(chart(c, hist.get(comp), w, (&axis.0, &axis.1))))
                        (figures(c, now))
                    }
                }
            }
        }
    }
}

fn clock(t: u64) -> String {
    text::ts(t.saturating_mul(1_000_000_000))
        .chars()
        .take(16)
        .collect()
}

fn chart(c: &ChartDef, h: Option<&History>, w: Window, axis: (&str, &str)) -> String {
    let mut owned: Vec<(String, &str, Vec<Option<f64>>)> = Vec::new();
    if let Some(h) = h {
        for sr in c.series {
            for (i, (key, item)) in matching(sr.key, h.keys.iter()).into_iter().enumerate() {
                let label = if item.is_empty() {
                    sr.label.to_string()
                } else {
                    item
                };
                let color = if sr.color.is_empty() {
                    PALETTE[i % PALETTE.len()]
                } else {
                    sr.color
                };
                owned.push((label, color, bucketed(&h.series(key), sr.rate, w, c.scale)));
            }
        }
    }
    let layers: Vec<Layer<'_>> = owned
        .iter()
        .map(|(label, color, values)| Layer {
            label,
            color,
            values: values.clone(),
        })
        .collect();
    line_chart(c.id, c.title, c.unit, &layers, axis)
}

/// The chart's figures from the current status file; `data-v` holds the
/// number as the file has it.
fn figures(c: &ChartDef, now: &BTreeMap<String, f64>) -> Markup {
    html! {
        dl.current data-chart=(c.id) {
            @for fig in c.now {
                @for (key, item) in matching(fig.key, now.keys()) {
                    @let v = now[key];
                    dt { (fig.label) @if !item.is_empty() { " " span.mono { (item) } } }
                    dd data-key={(fig.comp) ":" (key)} data-v=(v) { (show(key, v)) }
                }
            }
        }
    }
}

fn show(key: &str, v: f64) -> String {
    if key.contains("bytes") {
        let b = text::bytes(v);
        if key.ends_with("per_second") {
            format!("{b}/s")
        } else {
            b
        }
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests;
