//! Text shared by the pages and the SVGs written by hand: escaping, URL
//! encoding, and times and sizes for people.

use std::fmt::Write as _;

use voxtap_engine::output::format_ts;

/// `s` made safe inside HTML or SVG, in text and in quoted attributes of
/// either quote (maud escapes its own; this is for markup built by hand).
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Percent-encoding for a path or a query value (`/` is kept).
pub fn url_encode(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            o.push(b as char);
        } else {
            let _ = write!(o, "%{b:02X}");
        }
    }
    o
}

/// `2023-11-14 22:13:20` (UTC, to the second) for tables.
pub fn ts(ns: u64) -> String {
    let s = format_ts(ns);
    s.get(..19).unwrap_or(&s).replace('T', " ")
}

/// `1.5 MiB`: binary units, one decimal from KiB on.
pub fn bytes(n: f64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n:.0} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// `2d 3h 4m 5s`.
pub fn uptime(s: u64) -> String {
    format!(
        "{}d {}h {}m {}s",
        s / 86400,
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_all_five() {
        assert_eq!(
            esc(r#"<a href="x" title='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn sizes_and_times() {
        assert_eq!(bytes(1023.0), "1023 B");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(uptime(2 * 86400 + 3 * 3600 + 4 * 60 + 5), "2d 3h 4m 5s");
        assert_eq!(ts(1_700_000_000_000_000_000), "2023-11-14 22:13:20");
    }
}
