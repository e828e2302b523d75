#![no_main]
//! SIP messages with many headers: the parse pass that finds the dialog's
//! headers wherever they are, the lookups that read the lines past the kept
//! spans again, and the oversized path (past 1,024 header lines or a 64 KiB
//! header section, up to the 256 KiB hard cap). Random bytes rarely reach
//! those, so the input is a recipe:
//!
//! `[count lo][count hi][filler...] 0xFF [tail...]`: a request line, then
//! `filler` repeated `count` times (0..=65535, capped so the message stays
//! under 512 KiB), then `tail` (more headers, the empty line, a body).
//!
//! Checked against what the kept spans and the re-read lines say: every
//! header the iterator yields is found by name; a header of the dialog
//! (Call-ID, CSeq, From, To, Via, Content-*) is the first of its name
//! whatever its position; the counts and the oversized flag agree.

use libfuzzer_sys::fuzz_target;
use voxtap_proto::sip::{self, KNOWN, MAX_HEADER_LINES, MAX_HEADERS, Message};

const MAX_LEN: usize = 512 * 1024;

fuzz_target!(|data: &[u8]| {
    let [lo, hi, rest @ ..] = data else {
        return;
    };
    let (filler, tail) = match rest.iter().position(|b| *b == 0xFF) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let mut count = usize::from(u16::from_le_bytes([*lo, *hi]));
    if !filler.is_empty() {
        count = count.min(MAX_LEN / filler.len());
    }
    let mut buf = b"INVITE sip:bob@example.com SIP/2.0\r\n".to_vec();
    for _ in 0..count {
        buf.extend_from_slice(filler);
    }
    buf.extend_from_slice(tail);
    for parsed in [sip::parse(&buf), sip::parse_stream(&buf)] {
        if let Ok(m) = parsed {
            check(&m);
        }
    }
});

fn check(m: &Message<'_>) {
    let all: Vec<(&[u8], &[u8])> = m.headers().collect();
    // Lines in the message: the kept spans, plus those past them.
    let dropped = m.headers_dropped();
    let lines = if dropped > 0 { MAX_HEADERS + dropped } else { all.len() };
    assert_eq!(all.len(), lines.min(MAX_HEADER_LINES));
    if lines > MAX_HEADER_LINES {
        assert!(m.oversized());
    }
    // Names to look up: the first and last few (each lookup reads up to
    // MAX_HEADER_LINES lines: all of them would make this target slow).
    let sample: Vec<&str> = all
        .iter()
        .take(8)
        .chain(all.iter().rev().take(8))
        .filter_map(|(n, _)| std::str::from_utf8(n).ok())
        .collect();
    for name in &sample {
        // Found by name, as the first of its name (a dialog header is found
        // in the parse pass, any other by reading the lines again: the same
        // answer, as the first occurrence precedes the others).
        let every: Vec<&[u8]> = m.header_all(name).collect();
        assert!(!every.is_empty(), "{name}");
        assert_eq!(m.header(name), every.first().copied(), "{name}");
    }
    // One read for several names finds what a lookup per name finds. Full
    // names, each once: then no line matches two of them.
    let mut full: Vec<&str> = Vec::new();
    for n in &sample {
        if n.len() > 1 && !full.iter().any(|f| f.eq_ignore_ascii_case(n)) {
            full.push(n);
        }
    }
    let among: Vec<(usize, &[u8])> = m.headers_among(&full).collect();
    for (i, name) in full.iter().enumerate() {
        let mine: Vec<&[u8]> = among.iter().filter(|a| a.0 == i).map(|a| a.1).collect();
        let want: Vec<&[u8]> = m.header_all(name).collect();
        assert_eq!(mine, want, "{name}");
    }
    // The dialog's headers: the first of their name among all the lines
    // (those within MAX_HEADER_LINES are visible to compare).
    for k in KNOWN {
        let seen = m.header_all(k).next();
        if let Some(v) = seen {
            assert_eq!(m.header(k), Some(v), "{k}");
        } else if lines <= MAX_HEADER_LINES {
            assert_eq!(m.header(k), None, "{k}");
        }
    }
    let _ = (m.call_id(), m.cseq(), m.from(), m.to(), m.sdp(), m.content_length());
    assert!(m.raw().len() <= m.len());
}
