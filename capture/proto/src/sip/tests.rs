//! Unit tests for the SIP parser. Fixtures under testdata/ are UDP payloads
//! extracted with tshark from /work/shared/corpus (see names).

use super::*;

const BARESIP_INVITE: &[u8] = include_bytes!("testdata/baresip_1.sip");
const BARESIP_200: &[u8] = include_bytes!("testdata/baresip_5.sip");
const BARESIP_BYE: &[u8] = include_bytes!("testdata/baresip_912.sip");
const V6_INVITE: &[u8] = include_bytes!("testdata/v6_2.sip");
const V6_183: &[u8] = include_bytes!("testdata/v6_6.sip");
const V6_PRACK: &[u8] = include_bytes!("testdata/v6_8.sip");
const V6_UPDATE: &[u8] = include_bytes!("testdata/v6_12.sip");
const ZEEK_JUNK: &[u8] = include_bytes!("testdata/zeek_junk.bin");
const ZEEK_REGISTER: &[u8] = include_bytes!("testdata/zeek_register.bin");

const SIMPLE_INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: \"Alice A\" <sip:alice@example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

#[test]
fn request_basic_fields() {
    let m = parse(SIMPLE_INVITE).unwrap();
    assert!(m.is_request());
    assert_eq!(
        *m.start(),
        StartLine::Request {
            method: Method::Invite,
            uri: b"sip:bob@example.com"
        }
    );
    assert_eq!(m.call_id(), Some(&b"a84b4c76e66710@pc33.example.com"[..]));
    assert_eq!(m.cseq(), Some((314159, Method::Invite)));
    let from = m.from().unwrap();
    assert_eq!(from.display, Some(&b"Alice A"[..]));
    assert_eq!(from.uri, b"sip:alice@example.com");
    assert_eq!(from.tag, Some(&b"1928301774"[..]));
    let to = m.to().unwrap();
    assert_eq!(to.display, Some(&b"Bob"[..]));
    assert_eq!(to.tag, None);
    assert_eq!(m.content_type(), Some(&b"application/sdp"[..]));
    assert_eq!(m.content_length(), Some(4));
    assert_eq!(m.body(), b"v=0\n");
    assert_eq!(m.sdp(), Some(&b"v=0\n"[..]));
    assert_eq!(m.len(), SIMPLE_INVITE.len());
    assert_eq!(m.raw(), SIMPLE_INVITE);
    assert_eq!(m.headers().count(), 9);
    assert_eq!(
        m.headers().next(),
        Some((
            &b"Via"[..],
            &b"SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds"[..]
        ))
    );
}

#[test]
fn response_basic_fields() {
    let buf = b"SIP/2.0 180 Ringing\r\nCSeq: 1 INVITE\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n";
    let m = parse(buf).unwrap();
    assert!(!m.is_request());
    assert_eq!(
        *m.start(),
        StartLine::Response {
            code: 180,
            reason: b"Ringing"
        }
    );
    assert_eq!(m.status(), Some(180));
    assert_eq!(m.method(), None);
    assert_eq!(m.cseq(), Some((1, Method::Invite)));
    assert_eq!(m.body(), b"");
    assert_eq!(m.len(), buf.len());
    // Empty reason phrase is tolerated.
    let m = parse(b"SIP/2.0 200\r\n\r\n").unwrap();
    assert_eq!(
        *m.start(),
        StartLine::Response {
            code: 200,
            reason: b""
        }
    );
}

#[test]
fn every_compact_form_matches_full_name() {
    let buf = b"MESSAGE sip:a@b SIP/2.0\r\n\
i: cid\r\nf: <sip:f@x>;tag=ft\r\nt: <sip:t@x>\r\nm: <sip:m@x>\r\nl: 3\r\nc: text/plain\r\n\
v: SIP/2.0/UDP x\r\ne: gzip\r\nk: timer\r\ns: subj\r\nr: <sip:r@x>\r\nb: <sip:b@x>\r\n\
o: presence\r\nu: dialog\r\nx: 1800\r\na: *;audio\r\nj: *;video\r\nd: proxy\r\ny: idsig\r\n\r\nabc";
    let m = parse(buf).unwrap();
    let pairs: &[(&str, &str, &[u8])] = &[
        ("Call-ID", "i", b"cid"),
        ("From", "f", b"<sip:f@x>;tag=ft"),
        ("To", "t", b"<sip:t@x>"),
        ("Contact", "m", b"<sip:m@x>"),
        ("Content-Length", "l", b"3"),
        ("Content-Type", "c", b"text/plain"),
        ("Via", "v", b"SIP/2.0/UDP x"),
        ("Content-Encoding", "e", b"gzip"),
        ("Supported", "k", b"timer"),
        ("Subject", "s", b"subj"),
        ("Refer-To", "r", b"<sip:r@x>"),
        ("Referred-By", "b", b"<sip:b@x>"),
        ("Event", "o", b"presence"),
        ("Allow-Events", "u", b"dialog"),
        ("Session-Expires", "x", b"1800"),
        ("Accept-Contact", "a", b"*;audio"),
        ("Reject-Contact", "j", b"*;video"),
        ("Request-Disposition", "d", b"proxy"),
        ("Identity", "y", b"idsig"),
    ];
    for (full, compact, want) in pairs {
        assert_eq!(m.header(full), Some(*want), "{full}");
        assert_eq!(m.header(compact), Some(*want), "{compact}");
        assert_eq!(
            m.header(&compact.to_uppercase()),
            Some(*want),
            "{compact} upper"
        );
        assert_eq!(m.header(&full.to_lowercase()), Some(*want), "{full} lower");
    }
    assert_eq!(m.call_id(), Some(&b"cid"[..]));
    assert_eq!(m.from().unwrap().tag, Some(&b"ft"[..]));
    assert_eq!(m.content_length(), Some(3));
    assert_eq!(m.content_type(), Some(&b"text/plain"[..]));
    assert_eq!(m.body(), b"abc");
    assert_eq!(m.sdp(), None);
}

/// The accessors read their own header's slot (they index the known
/// headers directly), in full or compact form and past many headers.
#[test]
fn accessors_read_their_own_known_header() {
    let pad: String = (0..300).map(|i| format!("X-Pad-{i}: v\r\n")).collect();
    for (cid, from, to, cseq) in [("Call-ID", "From", "To", "CSeq"), ("i", "f", "t", "CSeq")] {
        let raw = format!(
            "BYE sip:a@b SIP/2.0\r\n{pad}{to}: <sip:callee@x>;tag=tt\r\n{cseq}: 7 BYE\r\n\
             {from}: <sip:caller@x>;tag=ft\r\nVia: SIP/2.0/UDP h\r\n{cid}: the-id\r\n\r\n"
        );
        let m = parse(raw.as_bytes()).unwrap();
        assert_eq!(m.call_id(), Some(&b"the-id"[..]), "{cid}");
        assert_eq!(m.from().unwrap().tag, Some(&b"ft"[..]), "{from}");
        assert_eq!(m.to().unwrap().tag, Some(&b"tt"[..]), "{to}");
        assert_eq!(m.cseq(), Some((7, Method::Bye)));
        assert_eq!(m.call_id(), m.header("Call-ID"));
        assert_eq!(m.header("CSeq"), Some(&b"7 BYE"[..]));
    }
}

#[test]
fn full_name_in_message_matches_compact_query_and_odd_case() {
    let buf = b"BYE sip:a@b SIP/2.0\r\ncALL-iD:   spaced  \r\nCONTENT-LENGTH : 0\r\n\r\n";
    let m = parse(buf).unwrap();
    assert_eq!(m.header("i"), Some(&b"spaced"[..]));
    assert_eq!(m.header("call-id"), Some(&b"spaced"[..]));
    assert_eq!(m.content_length(), Some(0));
    assert_eq!(m.header("X-Missing"), None);
}

#[test]
fn folded_header_lines_are_part_of_the_value() {
    let buf = b"OPTIONS sip:a@b SIP/2.0\r\nSubject: a\r\n b\r\n\tc\r\nCall-ID: z\r\n\r\n";
    let m = parse(buf).unwrap();
    assert_eq!(m.header("Subject"), Some(&b"a\r\n b\r\n\tc"[..]));
    assert_eq!(m.header("s"), Some(&b"a\r\n b\r\n\tc"[..]));
    assert_eq!(m.call_id(), Some(&b"z"[..]));
    // Folding with bare LF as well.
    let m = parse(b"OPTIONS sip:a@b SIP/2.0\nSubject: a\n b\nCall-ID: z\n\n").unwrap();
    assert_eq!(m.header("Subject"), Some(&b"a\n b"[..]));
    assert_eq!(m.call_id(), Some(&b"z"[..]));
}

#[test]
fn header_all_and_header_order() {
    let buf = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a, SIP/2.0/UDP b\r\nv: SIP/2.0/UDP c\r\nVIA: SIP/2.0/UDP d\r\nl: 0\r\n\r\n";
    let m = parse(buf).unwrap();
    let vias: Vec<&[u8]> = m.header_all("Via").collect();
    assert_eq!(
        vias,
        vec![
            &b"SIP/2.0/UDP a, SIP/2.0/UDP b"[..],
            b"SIP/2.0/UDP c",
            b"SIP/2.0/UDP d"
        ]
    );
    let names: Vec<&[u8]> = m.headers().map(|(n, _)| n).collect();
    assert_eq!(names, vec![&b"Via"[..], b"v", b"VIA", b"l"]);
}

#[test]
fn bare_lf_and_keepalives() {
    let buf = b"\r\n\r\nBYE sip:a@b SIP/2.0\nCall-ID: k\nContent-Length: 0\n\nnext";
    let m = parse(buf).unwrap();
    assert_eq!(m.call_id(), Some(&b"k"[..]));
    assert_eq!(m.len(), buf.len() - 4);
    assert!(m.raw().starts_with(b"BYE "));
    assert_eq!(m.raw().len(), m.len() - 4);
    assert_eq!(parse(b"\r\n\r\n").unwrap_err(), SipError::Incomplete);
}

#[test]
fn several_messages_in_one_buffer() {
    let mut buf = Vec::new();
    buf.extend_from_slice(SIMPLE_INVITE);
    buf.extend_from_slice(b"\r\n");
    buf.extend_from_slice(BARESIP_BYE);
    buf.extend_from_slice(BARESIP_INVITE);
    let mut rest = &buf[..];
    let mut methods = Vec::new();
    while !rest.is_empty() {
        let m = parse(rest).unwrap();
        methods.push(m.cseq().unwrap().1.as_str().into_owned());
        rest = &rest[m.len()..];
    }
    assert_eq!(methods, ["INVITE", "BYE", "INVITE"]);
}

#[test]
fn missing_content_length_on_udp_takes_rest_of_datagram() {
    let buf = b"MESSAGE sip:a@b SIP/2.0\r\nContent-Type: text/plain\r\n\r\nhello\r\n";
    let m = parse(buf).unwrap();
    assert_eq!(m.content_length(), None);
    assert_eq!(m.body(), b"hello\r\n");
    assert_eq!(m.len(), buf.len());
    // Stream framing: no Content-Length means no body.
    let m = parse_stream(buf).unwrap();
    assert_eq!(m.body(), b"");
}

#[test]
fn content_length_larger_than_data_is_incomplete() {
    let buf = b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 100\r\n\r\nv=0\r\n";
    assert_eq!(parse(buf).unwrap_err(), SipError::Incomplete);
    assert_eq!(parse_stream(buf).unwrap_err(), SipError::Incomplete);
    // Unterminated header section, and a header line cut in the middle.
    assert_eq!(
        parse(b"INVITE sip:a@b SIP/2.0\r\nCall-ID: x\r\n").unwrap_err(),
        SipError::Incomplete
    );
    assert_eq!(
        parse(b"INVITE sip:a@b SIP/2.0\r\nCall-").unwrap_err(),
        SipError::Incomplete
    );
    assert_eq!(
        parse(b"INVITE sip:a@b SI").unwrap_err(),
        SipError::Incomplete
    );
}

#[test]
fn no_final_crlf_after_body() {
    let buf = b"INVITE sip:a@b SIP/2.0\r\nContent-Type: application/sdp\r\nContent-Length: 8\r\n\r\nv=0\r\ns=-";
    let m = parse(buf).unwrap();
    assert_eq!(m.body(), b"v=0\r\ns=-");
    assert_eq!(m.len(), buf.len());
}

#[test]
fn bad_content_length_and_limits() {
    assert_eq!(
        parse(b"BYE sip:a@b SIP/2.0\r\nContent-Length: 12x\r\n\r\n").unwrap_err(),
        SipError::BadContentLength
    );
    assert_eq!(
        parse(b"BYE sip:a@b SIP/2.0\r\nl: 99999999999999999999999999\r\n\r\n").unwrap_err(),
        SipError::BadContentLength
    );
    assert_eq!(
        parse(b"BYE sip:a@b SIP/2.0\r\nl: 999999999\r\n\r\n").unwrap_err(),
        SipError::TooLong
    );
    assert_eq!(
        parse(b"BYE sip:a@b SIP/2.0\r\nno colon here\r\n\r\n").unwrap_err(),
        SipError::BadHeader
    );
    let long = vec![b'A'; MAX_START_LINE + 10];
    assert_eq!(parse(&long).unwrap_err(), SipError::TooLong);
}

#[test]
fn extra_headers_are_counted_not_an_error() {
    let mut buf = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
    for i in 0..100 {
        buf.extend_from_slice(format!("X-H{i}: {i}\r\n").as_bytes());
    }
    // Content-Length beyond the stored headers still frames the message.
    buf.extend_from_slice(b"Content-Length: 2\r\n\r\nokEXTRA");
    let m = parse(&buf).unwrap();
    // Past the kept spans, headers are read again from the message.
    assert_eq!(m.headers().count(), 101);
    assert_eq!(m.headers_dropped(), 101 - MAX_HEADERS);
    assert_eq!(m.header("X-H99"), Some(&b"99"[..]));
    assert_eq!(m.header_all("x-h70").collect::<Vec<_>>(), [&b"70"[..]]);
    assert!(!m.oversized());
    assert_eq!(m.content_length(), Some(2));
    assert_eq!(m.body(), b"ok");
    assert_eq!(m.len(), buf.len() - 5);
}

/// `n` headers `X-Pad-i: v` (or `X:1` when `short`) before the dialog's.
fn padded(n: usize, short: bool, body: &str) -> Vec<u8> {
    let mut buf = b"SIP/2.0 200 OK\r\n".to_vec();
    for i in 0..n {
        if short {
            buf.extend_from_slice(b"X:1\r\n");
        } else {
            buf.extend_from_slice(format!("X-Pad-{i}: padding\r\n").as_bytes());
        }
    }
    buf.extend_from_slice(
        format!(
            "Call-ID: late@h\r\nCSeq: 1 INVITE\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nX-Late: yes\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    buf
}

/// Header-count evasion: the dialog's headers after 70 (or 5,000) others
/// are found, and the message frames and parses whole.
#[test]
fn known_headers_are_found_after_any_number_of_headers() {
    for (n, short, oversized) in [(70, false, false), (1000, true, false), (5000, true, true)] {
        let buf = padded(n, short, "v=0\r\n");
        let m = parse(&buf).unwrap();
        assert_eq!(m.call_id(), Some(&b"late@h"[..]), "{n}");
        assert_eq!(m.cseq(), Some((1, Method::Invite)), "{n}");
        assert_eq!(m.to().unwrap().tag, Some(&b"2"[..]));
        assert_eq!(m.header("v"), Some(&b"SIP/2.0/UDP h;branch=z9hG4bK1"[..]));
        assert_eq!(m.sdp(), Some(&b"v=0\r\n"[..]));
        assert_eq!(m.len(), buf.len());
        assert_eq!(m.headers_dropped(), n + 8 - MAX_HEADERS);
        assert_eq!(m.oversized(), oversized, "{n}");
        // Other headers: found within MAX_HEADER_LINES lines, not past them.
        assert_eq!(m.header("X-Late").is_some(), !oversized, "{n}");
        let lines = m.headers().count();
        assert_eq!(lines, (n + 8).min(MAX_HEADER_LINES), "{n}");
    }
}

/// A header section past what SIP stacks take (64 KiB) is parsed and
/// flagged oversized up to the hard cap, and TooLong past it.
#[test]
fn header_section_caps() {
    let big = padded(5000, false, "");
    assert!(big.len() > MAX_HEADER_SECTION && big.len() < MAX_OVERSIZED_SECTION);
    let m = parse_stream(&big).unwrap();
    assert!(m.oversized());
    assert_eq!(m.call_id(), Some(&b"late@h"[..]));
    let huge = padded(20_000, false, "");
    assert!(huge.len() > MAX_OVERSIZED_SECTION);
    assert_eq!(parse(&huge).unwrap_err(), SipError::TooLong);
    // Unterminated past the cap: TooLong, not waiting for more.
    let cut = &huge[..MAX_OVERSIZED_SECTION + 10];
    assert_eq!(parse_stream(cut).unwrap_err(), SipError::TooLong);
}

#[test]
fn method_tokens_are_case_sensitive() {
    let m = parse(b"invite sip:a@b SIP/2.0\r\nl: 0\r\n\r\n").unwrap();
    assert_eq!(
        *m.start(),
        StartLine::Request {
            method: Method::Other(b"invite"),
            uri: b"sip:a@b"
        }
    );
    assert_eq!(m.method().unwrap().as_str(), "invite");
    assert_eq!(Method::from_token(b"INVITE"), Method::Invite);
    assert_eq!(Method::Prack.as_str(), "PRACK");
    for (tok, want) in [
        (&b"ACK"[..], Method::Ack),
        (b"BYE", Method::Bye),
        (b"CANCEL", Method::Cancel),
        (b"REGISTER", Method::Register),
        (b"OPTIONS", Method::Options),
        (b"INFO", Method::Info),
        (b"UPDATE", Method::Update),
        (b"PRACK", Method::Prack),
        (b"SUBSCRIBE", Method::Subscribe),
        (b"NOTIFY", Method::Notify),
        (b"REFER", Method::Refer),
        (b"MESSAGE", Method::Message),
        (b"PUBLISH", Method::Publish),
    ] {
        assert_eq!(Method::from_token(tok), want);
        assert_eq!(want.as_str().as_bytes(), tok);
    }
}

#[test]
fn status_codes_out_of_range_rejected() {
    for line in [
        &b"SIP/2.0 099 Low\r\n\r\n"[..],
        b"SIP/2.0 700 High\r\n\r\n",
        b"SIP/2.0 2000 OK\r\n\r\n",
        b"SIP/2.0 20 OK\r\n\r\n",
        b"SIP/2.0 abc OK\r\n\r\n",
        b"SIP/3.0 200 OK\r\n\r\n",
    ] {
        assert_eq!(
            parse(line).unwrap_err(),
            SipError::BadStartLine,
            "{:?}",
            String::from_utf8_lossy(line)
        );
        assert!(!looks_like_sip(line));
    }
    assert!(parse(b"SIP/2.0 100 Trying\r\n\r\n").is_ok());
    assert!(parse(b"SIP/2.0 699 X\r\n\r\n").is_ok());
}

#[test]
fn odd_request_lines_rejected() {
    for line in [
        &b"INVITE sip:a@b HTTP/1.1\r\n\r\n"[..],
        b"INVITE SIP/2.0\r\n\r\n",
        b"INV<ITE sip:a@b SIP/2.0\r\n\r\n",
        b" INVITE sip:a@b SIP/2.0\r\n\r\n",
        b"INVITE noscheme SIP/2.0\r\n\r\n",
    ] {
        assert_eq!(
            parse(line).unwrap_err(),
            SipError::BadStartLine,
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
    // Version is case-insensitive (RFC 3261 section 7.1).
    assert!(parse(b"BYE sip:a@b sip/2.0\r\n\r\n").is_ok());
}

#[test]
fn http_on_sip_port_rejected() {
    let http = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
    assert!(!looks_like_sip(http));
    assert_eq!(parse(http).unwrap_err(), SipError::BadStartLine);
    assert_eq!(find_start(http), None);
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    assert!(!looks_like_sip(resp));
    assert!(parse(resp).is_err());
    assert!(!looks_like_sip(b"POST /sip HTTP/1.0\r\n"));
}

#[test]
fn looks_like_sip_accepts_requests_responses_and_rejects_binary() {
    assert!(looks_like_sip(SIMPLE_INVITE));
    assert!(looks_like_sip(b"\r\n\r\nSIP/2.0 200 OK\r\n"));
    assert!(looks_like_sip(b"OPTIONS sip:x@y SIP/2.0"));
    assert!(looks_like_sip(V6_INVITE));
    assert!(!looks_like_sip(b""));
    assert!(!looks_like_sip(b"\r\n"));
    assert!(!looks_like_sip(&[
        0x80, 0x00, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef
    ]));
    assert!(!looks_like_sip(b"SIP/2.0/UDP host"));
}

/// The first-byte test turns away nothing the start-line parse takes:
/// every first byte (after no CRLF and after one) before the rest of a
/// request line and a status line gives the answer of the parse alone; every
/// method and a response start line are taken, and RTP-like payloads
/// (first byte 0x80-0xBF) are not.
#[test]
fn looks_like_sip_first_byte_test_changes_no_answer() {
    let mut taken = 0;
    // CR and LF before a start line are skipped (tested above).
    for b in (0..=255u8).filter(|b| !matches!(b, b'\r' | b'\n')) {
        for rest in [
            &b"NVITE sip:b@x SIP/2.0\r\n\r\n"[..],
            b"IP/2.0 200 OK\r\n\r\n",
            b" sip:b@x SIP/2.0\r\n\r\n",
        ] {
            for lead in [&b""[..], b"\r\n"] {
                let msg = [lead, &[b][..], rest].concat();
                let full = msg
                    .iter()
                    .position(|c| *c != b'\r' && *c != b'\n')
                    .is_some_and(|s| start_line_at(&msg, s));
                assert_eq!(
                    looks_like_sip(&msg),
                    full,
                    "{:?}",
                    String::from_utf8_lossy(&msg)
                );
                taken += usize::from(full);
            }
        }
    }
    // 'I', 'S' and 's', and every token character before " sip:b@x SIP/2.0".
    assert!(taken > 2 * 70, "only {taken} start lines taken");
    for m in [
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "REGISTER",
        "OPTIONS",
        "INFO",
        "UPDATE",
        "PRACK",
        "SUBSCRIBE",
        "NOTIFY",
        "REFER",
        "MESSAGE",
        "PUBLISH",
    ] {
        assert!(looks_like_sip(
            format!("{m} sip:b@x SIP/2.0\r\n").as_bytes()
        ));
    }
    assert!(looks_like_sip(b"SIP/2.0 183 Session Progress\r\n"));
    for first in 0x80..=0xBFu8 {
        let mut rtp = [0u8; 172];
        rtp[0] = first;
        rtp[12..].copy_from_slice(&b"INVITE sip:b@x SIP/2.0\r\n".repeat(7)[..160]);
        assert!(!looks_like_sip(&rtp));
    }
}

#[test]
fn junk_before_request_zeek() {
    // The capture has a 4-byte junk datagram, then a REGISTER datagram.
    assert!(!looks_like_sip(ZEEK_JUNK));
    assert!(parse(ZEEK_JUNK).is_err());
    assert!(looks_like_sip(ZEEK_REGISTER));
    let m = parse(ZEEK_REGISTER).unwrap();
    assert_eq!(m.method(), Some(Method::Register));
    assert_eq!(m.header("Expires"), Some(&b"3600"[..]));
    assert_eq!(m.body(), b"");
    // Glued together (as a TCP resync would see them).
    let mut both = ZEEK_JUNK.to_vec();
    both.extend_from_slice(ZEEK_REGISTER);
    assert!(!looks_like_sip(&both));
    assert_eq!(find_start(&both), Some(4));
    assert!(parse(&both[4..]).is_ok());
}

#[test]
fn find_start_cases() {
    assert_eq!(find_start(b"xx\r\nSIP/2.0 180 Ringing\r\n"), Some(4));
    assert_eq!(
        find_start(b"body tail\r\nBYE sip:a@b SIP/2.0\r\n"),
        Some(11)
    );
    // Via values contain SIP/2.0 but are not start lines.
    assert_eq!(find_start(b"Via: SIP/2.0/TCP x\r\n"), None);
    assert_eq!(find_start(b"garbage SIP/2.0\r\n"), None);
    // Start line cut at the end of the buffer right after the version.
    assert_eq!(find_start(b"..\nACK sip:a@b SIP/2.0"), Some(3));
    assert_eq!(find_start(b""), None);
}

#[test]
fn uri_helpers() {
    assert_eq!(uri_user(b"sip:+4412@host;x"), Some(&b"+4412"[..]));
    assert_eq!(uri_user(b"tel:+1555"), Some(&b"+1555"[..]));
    assert_eq!(
        uri_user(b"tel:+1555;phone-context=example.com"),
        Some(&b"+1555"[..])
    );
    assert_eq!(uri_user(b"SIPS:alice:secret@host"), Some(&b"alice"[..]));
    assert_eq!(uri_user(b"sip:host.example.com"), None);
    assert_eq!(uri_user(b"<sip:bob@h>"), Some(&b"bob"[..]));
    assert_eq!(uri_user(b"http://x@y"), None);
    assert_eq!(uri_user(b""), None);
    assert_eq!(uri_host(b"sip:+4412@host;x"), Some(&b"host"[..]));
    assert_eq!(uri_host(b"sip:bob@127.0.0.1:5064"), Some(&b"127.0.0.1"[..]));
    assert_eq!(
        uri_host(b"sip:08019200028@[fd17:625c:f037:2:a00:27ff:feb9:4222]:25060"),
        Some(&b"fd17:625c:f037:2:a00:27ff:feb9:4222"[..])
    );
    assert_eq!(uri_host(b"sip:example.com"), Some(&b"example.com"[..]));
    assert_eq!(uri_host(b"tel:+1555"), None);
    assert_eq!(uri_host(b"sip:[::1"), None);
}

#[test]
fn name_addr_forms() {
    let n = parse_name_addr(b"sip:a@b;tag=xyz").unwrap();
    assert_eq!(
        (n.display, n.uri, n.tag),
        (None, &b"sip:a@b"[..], Some(&b"xyz"[..]))
    );
    let n = parse_name_addr(b"\"Quoted \\\" <name>\" <sip:a@b;lr>;TAG=t1;other").unwrap();
    assert_eq!(n.display, Some(&b"Quoted \\\" <name>"[..]));
    assert_eq!(n.uri, b"sip:a@b;lr");
    assert_eq!(n.tag, Some(&b"t1"[..]));
    let n = parse_name_addr(b"<sip:a@b>").unwrap();
    assert_eq!((n.display, n.tag), (None, None));
    assert_eq!(parse_name_addr(b""), None);
    assert_eq!(parse_name_addr(b"<>"), None);
    assert_eq!(parse_name_addr(b"\"unterminated <sip:a@b>"), None);
    assert_eq!(parse_name_addr(b"<sip:a@b"), None);
}

#[test]
fn baresip_srtp_invite_fixture() {
    let m = parse(BARESIP_INVITE).unwrap();
    assert_eq!(m.method(), Some(Method::Invite));
    assert_eq!(m.call_id(), Some(&b"ce7c29716c4437cd"[..]));
    assert_eq!(m.cseq(), Some((15799, Method::Invite)));
    let from = m.from().unwrap();
    assert_eq!(from.uri, b"sip:alice@127.0.0.1:5062");
    assert_eq!(from.tag, Some(&b"f5028132cb429fda"[..]));
    assert_eq!(uri_user(from.uri), Some(&b"alice"[..]));
    assert_eq!(m.to().unwrap().uri, b"sip:bob@127.0.0.1:5064");
    // "Supported:" with an empty value.
    assert_eq!(m.header("k"), Some(&b""[..]));
    assert_eq!(m.content_length(), Some(404));
    assert_eq!(m.len(), BARESIP_INVITE.len());
    let sdp = m.sdp().unwrap();
    assert!(sdp.starts_with(b"v=0\r\n"));
    assert_eq!(sdp.len(), 404);

    let ok = parse(BARESIP_200).unwrap();
    assert_eq!(ok.status(), Some(200));
    assert_eq!(
        *ok.start(),
        StartLine::Response {
            code: 200,
            reason: b"Answering"
        }
    );
    assert_eq!(ok.cseq(), Some((15799, Method::Invite)));
    assert!(ok.to().unwrap().tag.is_some());
    assert_eq!(ok.sdp().map(<[u8]>::len), Some(388));

    let bye = parse(BARESIP_BYE).unwrap();
    assert_eq!(bye.method(), Some(Method::Bye));
    assert_eq!(bye.cseq(), Some((37852, Method::Bye)));
    assert_eq!(bye.to().unwrap().tag, Some(&b"f5028132cb429fda"[..]));
    assert_eq!(bye.body(), b"");
}

#[test]
fn volte_ipv6_fixtures() {
    let m = parse(V6_INVITE).unwrap();
    assert_eq!(m.method(), Some(Method::Invite));
    assert_eq!(
        m.call_id(),
        Some(&b"71846-1647924829-397430@fd17:625c:f037:2:a00:27ff:feb9:1521"[..])
    );
    // "Content-Length:   655" with extra spaces.
    assert_eq!(m.content_length(), Some(655));
    assert_eq!(m.sdp().map(<[u8]>::len), Some(655));
    assert_eq!(m.len(), V6_INVITE.len());
    let from = m.from().unwrap();
    assert_eq!(from.display, Some(&b"sipp"[..]));
    assert_eq!(from.tag, Some(&b"397430SIPpTag0071846"[..]));
    assert_eq!(uri_user(m.to().unwrap().uri), Some(&b"mcr"[..]));
    assert_eq!(m.header("Supported"), Some(&b"100rel,precondition"[..]));
    if let StartLine::Request { uri, .. } = m.start() {
        assert_eq!(uri_user(uri), Some(&b"08019200028"[..]));
        assert_eq!(
            uri_host(uri),
            Some(&b"fd17:625c:f037:2:a00:27ff:feb9:4222"[..])
        );
    } else {
        panic!("request expected");
    }

    let r = parse(V6_183).unwrap();
    assert_eq!(r.status(), Some(183));
    assert_eq!(r.header("RSeq"), Some(&b"1"[..]));
    assert_eq!(r.header("Require"), Some(&b"100rel,precondition"[..]));
    assert_eq!(r.to().unwrap().tag, Some(&b"1632476SIPpTag0171847"[..]));
    assert_eq!(r.sdp().map(<[u8]>::len), Some(274));

    let p = parse(V6_PRACK).unwrap();
    assert_eq!(p.method(), Some(Method::Prack));
    assert_eq!(p.cseq().unwrap().1, Method::Prack);
    assert!(p.header("RAck").is_some());
    assert_eq!(p.body(), b"");

    let u = parse(V6_UPDATE).unwrap();
    assert_eq!(u.method(), Some(Method::Update));
    assert_eq!(u.cseq(), Some((3, Method::Update)));
    assert_eq!(u.sdp().map(<[u8]>::len), Some(398));
}

#[test]
fn multipart_sdp_part() {
    let body = b"--unique-boundary-1\r\n\
Content-Type: application/isup;version=itu-t92+\r\n\r\n\
\x01\x02\x03\r\n\
--unique-boundary-1\r\n\
Content-Type: application/SDP\r\n\r\n\
v=0\r\nm=audio 4000 RTP/AVP 0\r\n\
\r\n--unique-boundary-1--\r\n";
    let head = format!(
        "INVITE sip:a@b SIP/2.0\r\nContent-Type: multipart/mixed;boundary=\"unique-boundary-1\"\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut buf = head.into_bytes();
    buf.extend_from_slice(body);
    let m = parse(&buf).unwrap();
    assert_eq!(m.sdp(), Some(&b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n"[..]));
    // No SDP part at all.
    let buf2 = b"INVITE sip:a@b SIP/2.0\r\nc: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b--\r\n";
    assert_eq!(parse(buf2).unwrap().sdp(), None);
    // Missing boundary parameter.
    let buf3 = b"INVITE sip:a@b SIP/2.0\r\nc: multipart/mixed\r\n\r\n--b\r\n";
    assert_eq!(parse(buf3).unwrap().sdp(), None);
}

#[test]
fn never_panics_on_prefixes_and_mutations_of_fixtures() {
    for fx in [
        BARESIP_INVITE,
        BARESIP_200,
        V6_INVITE,
        V6_183,
        V6_UPDATE,
        ZEEK_REGISTER,
    ] {
        for cut in 0..fx.len() {
            let p = &fx[..cut];
            if let Ok(m) = parse(p) {
                let _ = (m.sdp(), m.from(), m.to(), m.cseq(), m.len());
            }
            let _ = parse_stream(p);
            let _ = looks_like_sip(p);
            let _ = find_start(p);
        }
        let mut v = fx.to_vec();
        for i in (0..v.len()).step_by(7) {
            v[i] ^= 0x5a;
            if let Ok(m) = parse(&v) {
                let _ = (m.sdp(), m.from(), m.to(), m.cseq());
                assert!(m.len() <= v.len());
            }
        }
    }
}

/// The headers leg linking looks for in every request.
const NAMES: [&str; 10] = [
    "X-Call-ID",
    "X-CID",
    "X-Original-Call-ID",
    "X-Orig-Call-ID",
    "X-Leg-Call-ID",
    "X-Related-Call-ID",
    "P-Charging-Vector",
    "Session-ID",
    "Replaces",
    "Refer-To",
];

/// One read of the lines for several names finds what a lookup per name
/// finds, in message order.
#[test]
fn headers_among_is_header_all_for_each_name() {
    let mut buf = padded(1000, true, "");
    let at = buf.len() - 4;
    buf.splice(
        at..at,
        b"\r\nSession-ID: s1\r\nX-CID: a, b\r\ni: ignored-second"
            .iter()
            .copied(),
    );
    let m = parse(&buf).unwrap();
    let names = ["x-cid", "Session-ID", "Call-ID", "X"];
    let got: Vec<(usize, &[u8])> = m.headers_among(&names).collect();
    for (i, n) in names.iter().enumerate() {
        let want: Vec<&[u8]> = m.header_all(n).collect();
        let mine: Vec<&[u8]> = got.iter().filter(|g| g.0 == i).map(|g| g.1).collect();
        assert_eq!(mine, want, "{n}");
    }
    assert_eq!(m.call_id(), Some(&b"late@h"[..]));
}

/// Passing over headers by their name's length loses no match: full and
/// compact forms both ways, any case, names of 63 bytes and longer (which
/// share the filter's last bit) and a name one byte short of one.
#[test]
fn headers_among_passes_over_no_match() {
    let long = format!("X-{}", "a".repeat(70));
    let at63 = format!("X-{}", "b".repeat(61));
    let msg = format!(
        "INVITE sip:b@h SIP/2.0\r\nCall-ID: c1\r\ni: c2\r\nf: <sip:a@h>;tag=1\r\n\
         FROM: <sip:x@h>\r\nX-CID: x1\r\n{long}: la\r\n{at63}: lb\r\nSubject: s\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let m = parse(msg.as_bytes()).unwrap();
    let sets: [Vec<&str>; 4] = [
        vec!["Call-ID", "From", "x-cid", &long, &at63],
        vec!["i", "Content-Length"],
        vec!["f", "X-CI"],
        vec![&at63[..62], &long[..64]],
    ];
    let mut found = 0;
    for names in &sets {
        let got: Vec<(usize, &[u8])> = m.headers_among(names).collect();
        for (i, n) in names.iter().enumerate() {
            let want: Vec<&[u8]> = m.header_all(n).collect();
            let mine: Vec<&[u8]> = got.iter().filter(|g| g.0 == i).map(|g| g.1).collect();
            assert_eq!(mine, want, "{n}");
        }
        found += got.len();
    }
    // Call-ID 2, From 2, X-CID, the two long ones; i 2, Content-Length;
    // f 2; none for the names one byte short.
    assert_eq!(found, 12);
}

/// What thousands of headers cost (run by hand:
/// `cargo test -p voxtap-proto --release --lib header_cost -- --ignored --nocapture`).
#[test]
#[ignore]
fn header_cost() {
    for n in [10, 1000, 5000] {
        let buf = padded(n, true, "");
        let t = std::time::Instant::now();
        let rounds = 2000;
        let mut found = 0;
        for _ in 0..rounds {
            let m = parse(&buf).unwrap();
            found += m.headers_among(&NAMES).count();
            found += usize::from(m.call_id().is_some());
        }
        let per = t.elapsed() / rounds;
        let t = std::time::Instant::now();
        for _ in 0..rounds {
            found += usize::from(parse(&buf).unwrap().call_id().is_some());
        }
        let parse_only = t.elapsed() / rounds;
        println!(
            "{n} headers ({} bytes): parse {parse_only:?}, parse + leg-linking lookups {per:?} per message ({found})",
            buf.len()
        );
    }
}

/// `is_token` is RFC 3261's token (section 25.1: alphanum and
/// `-.!%*_+` plus backquote, quote and tilde) for every byte.
#[test]
fn token_characters_are_rfc_3261s() {
    let rfc: Vec<u8> = (b'a'..=b'z')
        .chain(b'A'..=b'Z')
        .chain(b'0'..=b'9')
        .chain(*b"-.!%*_+`'~")
        .collect();
    for b in 0..=255u8 {
        assert_eq!(super::message::is_token(b), rfc.contains(&b), "byte {b}");
    }
}
