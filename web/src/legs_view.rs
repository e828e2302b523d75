//! The legs of one logical call (B2BUA, SBC) side by side: one column per
//! leg with its facts and streams, and one ladder with every leg's SIP in
//! time order, each leg in its own colour.

use std::collections::VecDeque;
use std::fmt::Write as _;

use maud::{Markup, PreEscaped, html};
use voxtap_engine::index::{CallDetail, IndexError, SipRow};

use crate::Shared;

/// Most legs followed from one call (a loop in the links must not walk the
/// whole index).
pub const MAX_LEGS: usize = 12;

const COLORS: [&str; 6] = [
    "#2357c6", "#b3261e", "#1e7a3c", "#a86200", "#7a3cb3", "#00838f",
];

/// Every call linked to `d` directly or through other legs, `d` included,
/// in start order.
pub async fn group(st: &Shared, d: &CallDetail) -> Result<Vec<CallDetail>, IndexError> {
    if d.legs.is_empty() {
        return Ok(Vec::new());
    }
    let first = d.clone();
    st.db
        .run(move |idx| {
            let mut out = vec![first];
            let mut queue: VecDeque<i64> = out[0].legs.iter().map(|l| l.other_call).collect();
            while let Some(id) = queue.pop_front() {
                if out.len() >= MAX_LEGS || out.iter().any(|c| c.call.id == id) {
                    continue;
                }
                if let Some(leg) = idx.call_detail(id)? {
                    queue.extend(leg.legs.iter().map(|l| l.other_call));
                    out.push(leg);
                }
            }
            out.sort_by_key(|c| (c.call.start_ns, c.call.id));
            Ok(out)
        })
        .await
}

fn ladder(legs: &[CallDetail]) -> String {
    let mut msgs: Vec<(usize, usize, &SipRow)> = legs
        .iter()
        .enumerate()
        .flat_map(|(l, d)| d.sip.iter().enumerate().map(move |(i, m)| (l, i, m)))
        .collect();
    msgs.sort_by_key(|(l, i, m)| (m.ts_ns, *l, *i));
    let mut hosts: Vec<&str> = Vec::new();
    for (_, _, m) in &msgs {
        for h in [m.src.as_str(), m.dst.as_str()] {
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
    }
    let (col_w, left, top, row_h) = (260.0, 150.0, 50.0, 30.0);
    let width = left + col_w * (hosts.len().max(1) as f64 - 1.0) + 130.0;
    let height = top + row_h * msgs.len() as f64 + 20.0;
    let x = |h: &str| left + col_w * hosts.iter().position(|x| *x == h).unwrap_or(0) as f64;
    let t0 = msgs.first().map_or(0, |m| m.2.ts_ns);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="legladder" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="SIP ladder of every leg">"#
    );
    for (l, c) in COLORS.iter().enumerate() {
        let _ = write!(
            svg,
            r#"<defs><marker id="lh{l}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{c}"/></marker></defs>"#
        );
    }
    for h in &hosts {
        let hx = x(h);
        let _ = write!(
            svg,
            r##"<text x="{hx}" y="20" text-anchor="middle" font-size="12" font-family="monospace" font-weight="600" fill="#1d2433">{}</text><line x1="{hx}" y1="30" x2="{hx}" y2="{}" stroke="#b9c0cc" stroke-dasharray="4 4"/>"##,
            crate::charts::esc(h),
            height - 10.0
        );
    }
    for (row, (l, i, m)) in msgs.iter().enumerate() {
        let y = top + row_h * row as f64 + 12.0;
        let (x1, x2) = (x(&m.src), x(&m.dst));
        let color = COLORS[l % COLORS.len()];
        let marker = l % COLORS.len();
        let label = crate::charts::esc(&m.summary.chars().take(36).collect::<String>());
        let dt = m.ts_ns.saturating_sub(t0) as f64 / 1e9;
        let _ = write!(
            svg,
            r##"<a href="/calls/{}#msg-{i}" class="legmsg" data-leg="{}"><title>leg {}: {label}</title><text x="8" y="{}" font-size="11" font-family="sans-serif" fill="#6b7385">+{dt:.3}s</text><text x="{}" y="{}" text-anchor="middle" font-size="12" font-family="sans-serif" fill="{color}">{}: {label}</text>"##,
            legs[*l].call.id,
            l + 1,
            l + 1,
            y + 4.0,
            (x1 + x2) / 2.0,
            y - 5.0,
            l + 1,
        );
        if (x1 - x2).abs() < 1.0 {
            let _ = write!(
                svg,
                r#"<path d="M{x1},{y} h30 v8 h-30" stroke="{color}" stroke-width="1.6" fill="none" marker-end="url(#lh{marker})"/></a>"#
            );
        } else {
            let _ = write!(
                svg,
                r#"<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{color}" stroke-width="1.6" marker-end="url(#lh{marker})"/></a>"#
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The section: legs as columns, then the combined ladder.
pub fn section(current: i64, legs: &[CallDetail]) -> Markup {
    html! {
        section.legs id="legs" {
            h2 { "Legs of this call " span.muted { "(" (legs.len()) " legs, in start order)" } }
            div.legcols {
                @for (n, d) in legs.iter().enumerate() {
                    @let c = &d.call;
                    div.leg.current[c.id == current] data-call=(c.id) {
                        h3 {
                            span.swatch data-leg=(n + 1) { "leg " (n + 1) }
                            " "
                            @if c.id == current { (c.call_id) " (this call)" } @else { a href={"/calls/" (c.id)} { (c.call_id) } }
                        }
                        dl.facts {
                            dt { "From → To" } dd { (c.from_user) " → " (c.to_user) }
                            dt { "State" } dd { (c.state.replace('_', " ")) @if let Some(s) = c.status_code { " " (s) } }
                            dt { "SIP" } dd { (d.sip.len()) " messages" }
                            dt { "MOS" } dd { @if let Some(m) = c.mos { (format!("{m:.2}")) } @else { "–" } }
                        }
                        table.streams {
                            thead { tr { th { "Stream" } th.num { "Pkts" } th.num { "Lost" } th.num { "Max jitter" } th.num { "MOS" } } }
                            tbody {
                                @for s in &d.streams {
                                    tr {
                                        td.mono { (s.src) " → " (s.dst) br; (s.codec) }
                                        td.num { (s.packets) }
                                        td.num { (s.lost) }
                                        td.num { (format!("{:.2} ms", s.max_jitter_ms)) }
                                        td.num { @if let Some(m) = s.mos { (format!("{m:.2}")) } @else { "–" } }
                                    }
                                }
                                @if d.streams.is_empty() { tr { td colspan="5" .empty { "no RTP" } } }
                            }
                        }
                    }
                }
            }
            div.ladderbox { (PreEscaped(ladder(legs))) }
        }
    }
}
