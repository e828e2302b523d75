//! The SIP ladder as SVG: one column per endpoint (IP:port) in order of
//! first appearance, one arrow per message in time order, each a link to
//! the message's full text (so it works without JavaScript).
//!
//! The call page draws its call's messages styled by style.css, coloured
//! by kind (request, provisional, success, error); app.js opens a clicked
//! message beside the diagram. The legs view draws every leg's messages
//! together, each leg in its own colour, with presentation attributes.

use std::fmt::Write as _;

use maud::{Markup, PreEscaped};
use voxtap_engine::index::{CallDetail, SipRow};

use crate::text::esc;

/// The legs' colours, in order (style.css's `.swatch` uses the same).
const LEG_COLORS: [&str; 6] = [
    "#2357c6", "#b3261e", "#1e7a3c", "#a86200", "#7a3cb3", "#00838f",
];

/// One call's ladder, for the call page: `sip` are the page's messages,
/// the first of them the call's message number `first` (0-based).
pub fn call(sip: &[SipRow], first: usize) -> Markup {
    let arrows: Vec<Arrow<'_>> = sip
        .iter()
        .enumerate()
        .map(|(i, msg)| Arrow {
            msg,
            seq: first + i,
            leg: None,
        })
        .collect();
    PreEscaped(draw(&CALL, &arrows))
}

/// Every leg's messages in one ladder, for the legs view.
pub fn legs(legs: &[CallDetail]) -> Markup {
    let mut arrows: Vec<Arrow<'_>> = legs
        .iter()
        .enumerate()
        .flat_map(|(n, d)| {
            d.sip.iter().enumerate().map(move |(seq, msg)| Arrow {
                msg,
                seq,
                leg: Some(Leg { n, call: d.call.id }),
            })
        })
        .collect();
    arrows.sort_by_key(|a| (a.msg.ts_ns, a.leg.map(|l| l.n), a.seq));
    PreEscaped(draw(&LEGS, &arrows))
}

/// What differs between the two ladders besides the arrows' colours.
struct Look {
    class: &'static str,
    aria: &'static str,
    col_w: f64,
    row_h: f64,
    /// The arrow's height within its row.
    arrow_y: f64,
    label_chars: usize,
    /// CSS classes (style.css) rather than presentation attributes.
    styled: bool,
}

const CALL: Look = Look {
    class: "ladder",
    aria: "SIP ladder diagram",
    col_w: 300.0,
    row_h: 34.0,
    arrow_y: 14.0,
    label_chars: 40,
    styled: true,
};

const LEGS: Look = Look {
    class: "legladder",
    aria: "SIP ladder of every leg",
    col_w: 260.0,
    row_h: 30.0,
    arrow_y: 12.0,
    label_chars: 36,
    styled: false,
};

const LEFT: f64 = 150.0;
const TOP: f64 = 50.0;

#[derive(Clone, Copy)]
struct Leg {
    /// 0-based, in start order.
    n: usize,
    call: i64,
}

struct Arrow<'a> {
    msg: &'a SipRow,
    /// The message's place in its call: its `#msg-N` anchor.
    seq: usize,
    /// Its leg, in the legs view.
    leg: Option<Leg>,
}

fn draw(look: &Look, arrows: &[Arrow<'_>]) -> String {
    let mut hosts: Vec<&str> = Vec::new();
    for a in arrows {
        for h in [a.msg.src.as_str(), a.msg.dst.as_str()] {
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
    }
    let width = LEFT + look.col_w * (hosts.len().max(1) as f64 - 1.0) + 130.0;
    let height = TOP + look.row_h * arrows.len() as f64 + 20.0;
    let x = |h: &str| LEFT + look.col_w * hosts.iter().position(|x| *x == h).unwrap_or(0) as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="{}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{}">"#,
        look.class, look.aria
    );
    markers(&mut svg, look);
    for h in &hosts {
        lifeline(&mut svg, look, x(h), h, height - 10.0);
    }
    let t0 = arrows.first().map_or(0, |a| a.msg.ts_ns);
    for (row, a) in arrows.iter().enumerate() {
        let y = TOP + look.row_h * row as f64 + look.arrow_y;
        let (x1, x2) = (x(&a.msg.src), x(&a.msg.dst));
        let label = esc(&a
            .msg
            .summary
            .chars()
            .take(look.label_chars)
            .collect::<String>());
        let dt = a.msg.ts_ns.saturating_sub(t0) as f64 / 1e9;
        let texts = Texts {
            label: &label,
            dt,
            mid: (x1 + x2) / 2.0,
            y,
        };
        match a.leg {
            None => styled_link(&mut svg, a, &texts, (x1, x2), look.row_h),
            Some(leg) => leg_link(&mut svg, a.seq, leg, &texts),
        }
        let (class, stroke, marker) = match a.leg {
            None => (
                r#" class="arrow""#.to_string(),
                String::new(),
                "ah".to_string(),
            ),
            Some(leg) => (
                String::new(),
                format!(r#" stroke="{}" stroke-width="1.6""#, leg_color(leg)),
                format!("lh{}", leg.n % LEG_COLORS.len()),
            ),
        };
        if (x1 - x2).abs() < 1.0 {
            // A message to itself: a small loop.
            let fill = if a.leg.is_some() {
                r#" fill="none""#
            } else {
                ""
            };
            let _ = write!(
                svg,
                r#"<path{class} d="M{x1},{y} h30 v8 h-30"{stroke}{fill} marker-end="url(#{marker})"/></a>"#
            );
        } else {
            let _ = write!(
                svg,
                r#"<line{class} x1="{x1}" y1="{y}" x2="{x2}" y2="{y}"{stroke} marker-end="url(#{marker})"/></a>"#
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn leg_color(leg: Leg) -> &'static str {
    LEG_COLORS[leg.n % LEG_COLORS.len()]
}

/// The arrowheads: one styled by CSS, or one per leg colour.
fn markers(svg: &mut String, look: &Look) {
    const MARKER: &str = r#"viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z""#;
    if look.styled {
        let _ = write!(
            svg,
            r#"<defs><marker id="ah" {MARKER} class="head"/></marker></defs>"#
        );
    } else {
        for (n, c) in LEG_COLORS.iter().enumerate() {
            let _ = write!(
                svg,
                r#"<defs><marker id="lh{n}" {MARKER} fill="{c}"/></marker></defs>"#
            );
        }
    }
}

/// An endpoint's name over its dashed life line.
fn lifeline(svg: &mut String, look: &Look, hx: f64, name: &str, bottom: f64) {
    let name = esc(name);
    if look.styled {
        let _ = write!(
            svg,
            r#"<text class="host" x="{hx}" y="20" text-anchor="middle">{name}</text><line class="life" x1="{hx}" y1="30" x2="{hx}" y2="{bottom}"/>"#
        );
    } else {
        let _ = write!(
            svg,
            r##"<text x="{hx}" y="20" text-anchor="middle" font-size="12" font-family="monospace" font-weight="600" fill="#1d2433">{name}</text><line x1="{hx}" y1="30" x2="{hx}" y2="{bottom}" stroke="#b9c0cc" stroke-dasharray="4 4"/>"##
        );
    }
}

/// What a message shows besides its arrow.
struct Texts<'a> {
    /// The summary, escaped.
    label: &'a str,
    /// Seconds since the first message.
    dt: f64,
    /// Between the arrow's ends.
    mid: f64,
    y: f64,
}

/// The call page's message: a link to its text on the page, coloured by
/// kind through its class, with a hit area for the click.
fn styled_link(svg: &mut String, a: &Arrow<'_>, t: &Texts<'_>, (x1, x2): (f64, f64), row_h: f64) {
    let kind = match a.msg.summary.as_bytes().first() {
        Some(b'1') => "r1",
        Some(b'2') => "r2",
        Some(b'0'..=b'9') => "rerr",
        _ => "req",
    };
    let (i, label, dt, mid, y) = (a.seq, t.label, t.dt, t.mid, t.y);
    let _ = write!(
        svg,
        r##"<a href="#msg-{i}" class="msg {kind}" data-seq="{i}"><title>{label}</title><rect class="hit" x="{}" y="{}" width="{}" height="{}"/><text class="time" x="8" y="{}">+{dt:.3}s</text><text class="label" x="{mid}" y="{}" text-anchor="middle">{label}</text>"##,
        x1.min(x2) - 4.0,
        y - 18.0,
        (x1 - x2).abs().max(30.0) + 8.0,
        row_h - 4.0,
        y + 4.0,
        y - 5.0,
    );
}

/// The legs view's message: a link to its text on its own call's page,
/// in its leg's colour.
fn leg_link(svg: &mut String, seq: usize, leg: Leg, t: &Texts<'_>) {
    let (n, color) = (leg.n + 1, leg_color(leg));
    let (label, dt, mid, y) = (t.label, t.dt, t.mid, t.y);
    let _ = write!(
        svg,
        r##"<a href="/calls/{}{}#msg-{seq}" class="legmsg" data-leg="{n}"><title>leg {n}: {label}</title><text x="8" y="{}" font-size="11" font-family="sans-serif" fill="#6b7385">+{dt:.3}s</text><text x="{mid}" y="{}" text-anchor="middle" font-size="12" font-family="sans-serif" fill="{color}">{n}: {label}</text>"##,
        leg.call,
        crate::pages::msg_page_query(seq),
        y + 4.0,
        y - 5.0,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ts_ns: u64, src: &str, dst: &str, summary: &str) -> SipRow {
        SipRow {
            seq: 0,
            ts_ns,
            src: src.into(),
            dst: dst.into(),
            transport: "UDP".into(),
            summary: summary.into(),
            text: String::new(),
        }
    }

    #[test]
    fn one_arrow_per_message_coloured_by_kind() {
        let sip = [
            msg(0, "a:5060", "b:5060", "INVITE sip:x"),
            msg(1, "b:5060", "a:5060", "100 Trying"),
            msg(2, "b:5060", "a:5060", "200 OK"),
            msg(3, "b:5060", "a:5060", "486 Busy <'&'>"),
            msg(4, "a:5060", "a:5060", "OPTIONS"),
        ];
        let svg = call(&sip, 0).into_string();
        for (i, kind) in ["req", "r1", "r2", "rerr", "req"].iter().enumerate() {
            assert!(
                svg.contains(&format!(r#"class="msg {kind}" data-seq="{i}""#)),
                "{kind}: {svg}"
            );
        }
        assert!(svg.contains("486 Busy &lt;&#39;&amp;&#39;&gt;"), "{svg}");
        assert_eq!(svg.matches("<line class=\"arrow\"").count(), 4);
        assert_eq!(svg.matches("<path class=\"arrow\"").count(), 1, "a loop");
        assert_eq!(svg.matches("class=\"host\"").count(), 2, "two endpoints");
    }
}
