//! Server-side SVG charts: quality over time per stream and audio
//! waveforms. Plain SVG with presentation attributes, so the page needs no
//! script or chart library and a chart also renders as a standalone image.

use std::fmt::Write as _;
use std::path::Path;

use voxtap_engine::stream_timeline::Timeline;

use crate::text::esc;

/// A "nice" axis maximum (1, 2, 5 x 10^n) at or above `v`.
fn nice_max(v: f64) -> f64 {
    if v.is_nan() || v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if v <= m * p {
            return m * p;
        }
    }
    10.0 * p
}

const W: f64 = 760.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
const PANEL_H: f64 = 90.0;
const GAP: f64 = 26.0;

/// One panel of a stream chart: a y axis from 0 to `max` and a polyline or
/// bars over the buckets.
fn panel(
    svg: &mut String,
    y0: f64,
    title: &str,
    unit: &str,
    values: &[Option<f64>],
    bars: bool,
    class: &str,
) {
    let n = values.len().max(1) as f64;
    let max = nice_max(values.iter().flatten().copied().fold(0.0, f64::max));
    let plot_w = W - LEFT - RIGHT;
    let x = |i: f64| LEFT + plot_w * i / n;
    let y = |v: f64| y0 + PANEL_H - PANEL_H * (v / max).clamp(0.0, 1.0);
    let _ = write!(
        svg,
        r##"<text x="{LEFT}" y="{}" font-size="12" font-family="sans-serif" fill="#1d2433">{}</text><line x1="{LEFT}" y1="{y0}" x2="{LEFT}" y2="{}" stroke="#b9c0cc"/><line x1="{LEFT}" y1="{}" x2="{}" y2="{}" stroke="#b9c0cc"/><text x="{}" y="{}" font-size="10" font-family="sans-serif" fill="#6b7385" text-anchor="end">{} {unit}</text><text x="{}" y="{}" font-size="10" font-family="sans-serif" fill="#6b7385" text-anchor="end">0</text>"##,
        y0 - 6.0,
        esc(title),
        y0 + PANEL_H,
        y0 + PANEL_H,
        W - RIGHT,
        y0 + PANEL_H,
        LEFT - 4.0,
        y0 + 10.0,
        max,
        LEFT - 4.0,
        y0 + PANEL_H,
    );
    if bars {
        let bw = (plot_w / n - 1.0).max(1.0);
        for (i, v) in values.iter().enumerate() {
            let Some(v) = v.filter(|v| *v > 0.0) else {
                continue;
            };
            let top = y(v);
            let _ = write!(
                svg,
                r#"<rect class="{class}" data-i="{i}" data-v="{v}" x="{:.1}" y="{top:.1}" width="{bw:.1}" height="{:.1}" fill="{}"/>"#,
                x(i as f64),
                y0 + PANEL_H - top,
                if class == "lost" {
                    "#b3261e"
                } else {
                    "#2357c6"
                },
            );
        }
    } else {
        let mut pts = String::new();
        for (i, v) in values.iter().enumerate() {
            if let Some(v) = v {
                let _ = write!(pts, "{:.1},{:.1} ", x(i as f64 + 0.5), y(*v));
            }
        }
        let _ = write!(
            svg,
            r##"<polyline class="{class}" points="{}" fill="none" stroke="#a86200" stroke-width="1.5"/>"##,
            pts.trim_end()
        );
    }
}

/// Jitter, packets and lost packets per interval for one stream.
pub fn timeline_svg(label: &str, tl: &Timeline, interval_s: f64) -> String {
    let h = 3.0 * (PANEL_H + GAP) + 24.0;
    let n = tl.buckets.len();
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" role="img" aria-label="{}" data-buckets="{n}" data-lost="{}" data-packets="{}">"#,
        esc(&format!("{label}: jitter and loss over time")),
        tl.buckets.iter().map(|b| b.lost).sum::<i64>(),
        tl.buckets.iter().map(|b| b.packets).sum::<u64>(),
    );
    let jitter: Vec<Option<f64>> = tl.buckets.iter().map(|b| b.max_jitter_ms).collect();
    let packets: Vec<Option<f64>> = tl.buckets.iter().map(|b| Some(b.packets as f64)).collect();
    let lost: Vec<Option<f64>> = tl
        .buckets
        .iter()
        .map(|b| Some(b.lost.max(0) as f64))
        .collect();
    let step = if interval_s >= 1.0 {
        format!("{interval_s:.0} s")
    } else {
        format!("{:.0} ms", interval_s * 1000.0)
    };
    panel(
        &mut svg,
        18.0,
        &format!("Jitter (max per {step})"),
        "ms",
        &jitter,
        false,
        "jitter",
    );
    panel(
        &mut svg,
        18.0 + PANEL_H + GAP,
        &format!("Packets per {step}"),
        "",
        &packets,
        true,
        "packets",
    );
    panel(
        &mut svg,
        18.0 + 2.0 * (PANEL_H + GAP),
        &format!("Lost per {step}"),
        "",
        &lost,
        true,
        "lost",
    );
    let span = n as f64 * interval_s;
    let _ = write!(
        svg,
        r##"<text x="{LEFT}" y="{}" font-size="10" font-family="sans-serif" fill="#6b7385">0 s</text><text x="{}" y="{}" font-size="10" font-family="sans-serif" fill="#6b7385" text-anchor="end">{span:.0} s</text></svg>"##,
        h - 6.0,
        W - RIGHT,
        h - 6.0,
    );
    svg
}

/// One series of a bucket chart.
pub struct Layer<'a> {
    pub label: &'a str,
    pub color: &'a str,
    /// One per bucket; None where the figure is undefined (no calls).
    pub values: Vec<Option<f64>>,
}

/// A dashboard chart: one bar per bucket (the layers stacked), each bar a
/// link to the calls of its bucket (`hrefs`, one per bucket). `axis` names
/// the first and last bucket under the x axis.
pub fn bucket_chart(
    id: &str,
    title: &str,
    unit: &str,
    layers: &[Layer<'_>],
    hrefs: &[String],
    axis: (&str, &str),
) -> String {
    let n = hrefs.len().max(1);
    let stack = |i: usize| -> f64 {
        layers
            .iter()
            .filter_map(|l| l.values.get(i).copied().flatten())
            .sum()
    };
    let max = nice_max((0..n).map(stack).fold(0.0, f64::max));
    let legend_h = if layers.len() > 1 { 16.0 } else { 0.0 };
    let (y0, h) = (18.0, PANEL_H + 40.0 + legend_h);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="dash" id="{}" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" role="img" aria-label="{}" data-buckets="{}">"#,
        esc(id),
        esc(title),
        hrefs.len()
    );
    panel(&mut svg, y0, title, unit, &[Some(max)], false, "axis");
    legend(&mut svg, layers, y0 + PANEL_H + 22.0);
    let plot_w = W - LEFT - RIGHT;
    let bw = (plot_w / n as f64 - 1.0).max(1.0);
    for (i, href) in hrefs.iter().enumerate() {
        bar(
            &mut svg,
            i,
            href,
            layers,
            (LEFT + plot_w * i as f64 / n as f64, bw),
            (y0, max),
            unit,
        );
    }
    x_labels(&mut svg, y0 + PANEL_H + 14.0, axis);
    svg.push_str("</svg>");
    svg
}

/// The layers' colours and names under the axis labels (none for one layer).
fn legend(svg: &mut String, layers: &[Layer<'_>], ly: f64) {
    let mut x = LEFT;
    for l in layers.iter().filter(|_| layers.len() > 1) {
        let _ = write!(
            svg,
            r##"<rect x="{x}" y="{ly}" width="10" height="10" fill="{}"/><text x="{}" y="{}" font-size="10" font-family="sans-serif" fill="#1d2433">{}</text>"##,
            esc(l.color),
            x + 13.0,
            ly + 9.0,
            esc(l.label)
        );
        x += 22.0 + 6.0 * l.label.chars().count() as f64;
    }
}

/// The first and last bucket's names under the x axis.
fn x_labels(svg: &mut String, y: f64, axis: (&str, &str)) {
    let _ = write!(
        svg,
        r##"<text x="{LEFT}" y="{y}" font-size="10" font-family="sans-serif" fill="#6b7385">{}</text><text x="{}" y="{y}" font-size="10" font-family="sans-serif" fill="#6b7385" text-anchor="end">{}</text>"##,
        esc(axis.0),
        W - RIGHT,
        esc(axis.1),
    );
}

/// A chart of lines over `n` equal time buckets (the layers' values, not
/// stacked): the axes and legend of [`bucket_chart`], one polyline per
/// run of defined values. Each layer's values are also in its group's
/// `data-values` (`-` where undefined), for tests and scripts.
pub fn line_chart(
    id: &str,
    title: &str,
    unit: &str,
    layers: &[Layer<'_>],
    axis: (&str, &str),
) -> String {
    let n = layers
        .iter()
        .map(|l| l.values.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let max = nice_max(
        layers
            .iter()
            .flat_map(|l| l.values.iter().flatten())
            .fold(0.0, |a, b| a.max(*b)),
    );
    let legend_h = if layers.len() > 1 { 16.0 } else { 0.0 };
    let (y0, h) = (18.0, PANEL_H + 40.0 + legend_h);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="lines" id="{}" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" role="img" aria-label="{}" data-buckets="{n}">"#,
        esc(id),
        esc(title),
    );
    panel(&mut svg, y0, title, unit, &[Some(max)], false, "axis");
    legend(&mut svg, layers, y0 + PANEL_H + 22.0);
    let plot_w = W - LEFT - RIGHT;
    let x = |i: usize| LEFT + plot_w * (i as f64 + 0.5) / n as f64;
    let y = |v: f64| y0 + PANEL_H - PANEL_H * (v / max).clamp(0.0, 1.0);
    for (k, l) in layers.iter().enumerate() {
        line(&mut svg, k, l, &x, &y);
    }
    x_labels(&mut svg, y0 + PANEL_H + 14.0, axis);
    svg.push_str("</svg>");
    svg
}

/// One layer of a line chart: its group, then a polyline per run of
/// defined values (a dot for a run of one).
fn line(
    svg: &mut String,
    k: usize,
    l: &Layer<'_>,
    x: &impl Fn(usize) -> f64,
    y: &impl Fn(f64) -> f64,
) {
    let vals: Vec<String> = l
        .values
        .iter()
        .map(|v| v.map_or_else(|| "-".into(), fmt_value))
        .collect();
    let _ = write!(
        svg,
        r#"<g class="series" data-layer="{k}" data-label="{}" data-values="{}" stroke="{}" fill="{}"><title>{}</title>"#,
        esc(l.label),
        vals.join(" "),
        esc(l.color),
        esc(l.color),
        esc(l.label),
    );
    let indexed: Vec<(usize, Option<f64>)> = l.values.iter().copied().enumerate().collect();
    for run in indexed.split(|(_, v)| v.is_none()) {
        let pts: Vec<String> = run
            .iter()
            .filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x(*i), y(v))))
            .collect();
        match pts.as_slice() {
            [] => {}
            [p] => {
                let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = write!(svg, r#"<circle cx="{px}" cy="{py}" r="1.5"/>"#);
            }
            _ => {
                let _ = write!(
                    svg,
                    r#"<polyline points="{}" fill="none" stroke-width="1.5"/>"#,
                    pts.join(" ")
                );
            }
        }
    }
    svg.push_str("</g>");
}

/// Bucket `i`'s stacked bar, a link; nothing for a bucket without values.
fn bar(
    svg: &mut String,
    i: usize,
    href: &str,
    layers: &[Layer<'_>],
    (x, bw): (f64, f64),
    (y0, max): (f64, f64),
    unit: &str,
) {
    let vals: Vec<(usize, f64)> = layers
        .iter()
        .enumerate()
        .filter_map(|(k, l)| l.values.get(i).copied().flatten().map(|v| (k, v)))
        .collect();
    if vals.is_empty() {
        return;
    }
    let tip: Vec<String> = vals
        .iter()
        .map(|(k, v)| format!("{}: {} {unit}", layers[*k].label, fmt_value(*v)))
        .collect();
    let _ = write!(
        svg,
        r#"<a class="drill" data-i="{i}" href="{}"><title>{}</title><rect x="{x:.1}" y="{y0}" width="{bw:.1}" height="{PANEL_H}" fill="transparent"/>"#,
        esc(href),
        esc(&tip.join(", "))
    );
    let mut base = y0 + PANEL_H;
    for (k, v) in vals {
        let hgt = PANEL_H * (v / max).clamp(0.0, 1.0);
        // At least a pixel, so a small non-zero figure still shows.
        let hgt = if v > 0.0 { hgt.max(1.0) } else { 0.0 };
        base -= hgt;
        let _ = write!(
            svg,
            r#"<rect class="v" data-layer="{k}" data-v="{v}" x="{x:.1}" y="{base:.1}" width="{bw:.1}" height="{hgt:.1}" fill="{}"/>"#,
            esc(layers[k].color)
        );
    }
    svg.push_str("</a>");
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// Min/max peaks of each channel of a WAV, one pair per column.
#[derive(Clone, Debug, PartialEq)]
pub struct Peaks {
    pub rate: u32,
    pub samples_per_channel: u64,
    /// channels x columns of (min, max), as fractions of full scale.
    pub channels: Vec<Vec<(f32, f32)>>,
}

/// Reads `wav` and folds it into `columns` (min, max) pairs per channel:
/// column `c` covers samples `[c * k, (c + 1) * k)` with `k = ceil(n / columns)`.
pub fn peaks(wav: &Path, columns: usize) -> Result<Peaks, hound::Error> {
    let mut r = hound::WavReader::open(wav)?;
    let spec = r.spec();
    let ch = usize::from(spec.channels.max(1));
    let n = u64::from(r.duration());
    let k = n.div_ceil(columns.max(1) as u64).max(1);
    let cols = usize::try_from(n.div_ceil(k)).unwrap_or(0);
    let mut out = vec![vec![(f32::MAX, f32::MIN); cols]; ch];
    let scale = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, _) => 1.0,
        (_, b) => (1u64 << (b.clamp(1, 32) - 1)) as f32,
    };
    let mut put = |i: u64, v: f32| {
        let c = usize::try_from(i / ch as u64 / k).unwrap_or(usize::MAX);
        if let Some(p) = out[(i % ch as u64) as usize].get_mut(c) {
            p.0 = p.0.min(v);
            p.1 = p.1.max(v);
        }
    };
    if spec.sample_format == hound::SampleFormat::Float {
        for (i, s) in r.samples::<f32>().enumerate() {
            put(i as u64, s?);
        }
    } else {
        for (i, s) in r.samples::<i32>().enumerate() {
            put(i as u64, s? as f32 / scale);
        }
    }
    Ok(Peaks {
        rate: spec.sample_rate,
        samples_per_channel: n,
        channels: out,
    })
}

/// One lane per channel (stereo: caller on top, callee below), each column
/// a vertical line from its minimum to its maximum.
pub fn waveform_svg(p: &Peaks, label: &str) -> String {
    let cols = p.channels.first().map_or(0, Vec::len);
    let w = cols.max(1) as f64;
    let lane = 60.0;
    let h = lane * p.channels.len().max(1) as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg class="waveform" xmlns="http://www.w3.org/2000/svg" width="800" height="{h}" viewBox="0 0 {w} {h}" preserveAspectRatio="none" role="img" aria-label="{}" data-columns="{cols}" data-channels="{}"><rect width="{w}" height="{h}" fill="#f3f6fc"/>"##,
        esc(label),
        p.channels.len(),
    );
    for (c, ch) in p.channels.iter().enumerate() {
        let mid = lane * (c as f64 + 0.5);
        let _ = write!(
            svg,
            r##"<line x1="0" y1="{mid}" x2="{w}" y2="{mid}" stroke="#dfe3ea" stroke-width="0.5"/><path class="ch{c}" stroke="{}" stroke-width="1" vector-effect="non-scaling-stroke" fill="none" d=""##,
            if c == 0 { "#2357c6" } else { "#1e7a3c" }
        );
        for (i, &(lo, hi)) in ch.iter().enumerate() {
            if lo > hi {
                continue;
            }
            let y1 = mid - f64::from(hi) * lane / 2.0;
            let y2 = mid - f64::from(lo) * lane / 2.0;
            // At least a pixel, so silence still shows as a line.
            let y2 = if y2 - y1 < 0.5 { y1 + 0.5 } else { y2 };
            let _ = write!(svg, "M{}.5 {y1:.1}V{y2:.1}", i);
        }
        svg.push_str(r#""/>"#);
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(3.2), 5.0);
        assert_eq!(nice_max(50.0), 50.0);
        assert_eq!(nice_max(51.0), 100.0);
        assert_eq!(nice_max(0.13), 0.2);
    }
}
