//! The legs of one logical call (B2BUA, SBC) side by side: one column per
//! leg with its facts and streams, and one ladder with every leg's SIP in
//! time order, each leg in its own colour.

use std::collections::VecDeque;

use maud::{Markup, html};
use voxtap_engine::index::CallDetail;

use crate::handlers::AppError;

use crate::Shared;

/// Most legs followed from one call (a loop in the links must not walk the
/// whole index).
pub const MAX_LEGS: usize = 12;

/// Every call linked to `d` directly or through other legs, `d` included,
/// in start order.
pub async fn group(st: &Shared, d: &CallDetail) -> Result<Vec<CallDetail>, AppError> {
    if d.legs.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = vec![d.clone()];
    let mut queue: VecDeque<i64> = out[0].legs.iter().map(|l| l.other_call).collect();
    while let Some(id) = queue.pop_front() {
        if out.len() >= MAX_LEGS || out.iter().any(|c| c.call.id == id) {
            continue;
        }
        if let Some(leg) = crate::handlers::detail_opt(st, id).await? {
            queue.extend(leg.legs.iter().map(|l| l.other_call));
            out.push(leg);
        }
    }
    out.sort_by_key(|c| (c.call.start_ns, c.call.id));
    Ok(out)
}

/// The section: legs as columns, then the combined ladder.
pub fn section(current: i64, legs: &[CallDetail]) -> Markup {
    html! {
        section.legs id="legs" {
            h2 { "Legs of this call " span.muted { "(" (legs.len()) " legs, in start order)" } }
            @if let Some(me) = legs.iter().find(|d| d.call.id == current) {
                ul.evidence id="link-evidence" {
                    @for l in &me.legs {
                        li {
                            "Linked to " a href={"/calls/" (l.other_call)} { "call " (l.other_call) }
                            " by " strong { (l.method) }
                            @if let Some(w) = &l.detail { ": " (w) }
                        }
                    }
                }
            }
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
            div.ladderbox { (crate::ladder::legs(legs)) }
        }
    }
}
