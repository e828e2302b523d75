//! A parsed message without its borrow: where each part lies in the buffer.
//!
//! The parallel engine's dispatcher parses each SIP datagram once and hands
//! every media worker's replica this layout with its copy of the bytes;
//! each replica rebuilds the [`Message`] from the spans (a few hundred
//! instructions) instead of parsing it again (about 5,600 on a typical
//! INVITE or response; docs/performance.md, session 18).

use super::super::{Method, StartLine};
use super::{KNOWN, MAX_HEADERS, Message};

/// Bytes `at..at + len` of the buffer. Sixteen bits each: a layout is for
/// a datagram (a UDP payload is at most 65,507 bytes), and the dispatcher
/// copies it to every replica, so it is kept small (a 64-header message's
/// spans in 512 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Span {
    at: u16,
    len: u16,
}

impl Span {
    /// Where `part` lies in `buf`; `None` if it is not inside it. An empty
    /// part may be a slice of nothing in particular: it becomes the empty
    /// span at 0 (a message's parts are compared by content, never by
    /// address).
    fn of(buf: &[u8], part: &[u8]) -> Option<Span> {
        if part.is_empty() {
            return Some(Span::default());
        }
        let at = (part.as_ptr() as usize).checked_sub(buf.as_ptr() as usize)?;
        if at.checked_add(part.len())? > buf.len() {
            return None;
        }
        Some(Span {
            at: u16::try_from(at).ok()?,
            len: u16::try_from(part.len()).ok()?,
        })
    }

    fn slice(self, buf: &[u8]) -> Option<&[u8]> {
        let at = usize::from(self.at);
        buf.get(at..at + usize::from(self.len))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StartSpans {
    Request { method: Span, uri: Span },
    Response { code: u16, reason: Span },
}

/// What [`super::parse`] found in a buffer of at most 64 KiB (a datagram),
/// as offsets into it: read it again from any copy of the same bytes with
/// [`Layout::message`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    start: StartSpans,
    raw: Span,
    body: Span,
    skipped: u16,
    headers: [(Span, Span); MAX_HEADERS],
    n_headers: u16,
    lines: u16,
    known: [Option<Span>; KNOWN.len()],
    content_length: Option<u16>,
    unkept: (u16, u16),
    oversized: bool,
}

impl<'a> Message<'a> {
    /// This message's layout in `buf`, the buffer it was parsed from;
    /// `None` if a part is not inside `buf` (another buffer) or lies past
    /// 64 KiB (not a datagram).
    pub fn layout(&self, buf: &'a [u8]) -> Option<Layout> {
        let start = match self.start {
            StartLine::Request { method, uri } => StartSpans::Request {
                method: Span::of(buf, method_token(method, self.raw)?)?,
                uri: Span::of(buf, uri)?,
            },
            StartLine::Response { code, reason } => StartSpans::Response {
                code,
                reason: Span::of(buf, reason)?,
            },
        };
        let mut headers = [(Span::default(), Span::default()); MAX_HEADERS];
        for (slot, (name, value)) in headers.iter_mut().zip(self.stored()) {
            *slot = (Span::of(buf, name)?, Span::of(buf, value)?);
        }
        let mut known = [None; KNOWN.len()];
        for (slot, value) in known.iter_mut().zip(self.known) {
            *slot = match value {
                Some(v) => Some(Span::of(buf, v)?),
                None => None,
            };
        }
        Some(Layout {
            start,
            raw: Span::of(buf, self.raw)?,
            body: Span::of(buf, self.body)?,
            skipped: u16::try_from(self.skipped).ok()?,
            headers,
            n_headers: u16::try_from(self.n_headers).ok()?,
            lines: u16::try_from(self.lines).ok()?,
            known,
            content_length: self.content_length.map(u16::try_from).transpose().ok()?,
            unkept: (
                u16::try_from(self.unkept.0).ok()?,
                u16::try_from(self.unkept.1).ok()?,
            ),
            oversized: self.oversized,
        })
    }
}

/// The method's token as written: the start of the request line (`raw`
/// begins with it), as long as the method's name.
fn method_token<'a>(method: Method<'a>, raw: &'a [u8]) -> Option<&'a [u8]> {
    match method {
        Method::Other(token) => Some(token),
        known => raw.get(..known.as_str().len()),
    }
}

impl Layout {
    /// The message this layout describes, read from `buf`: a copy of the
    /// bytes it was made from. `None` if a span lies past `buf`'s end.
    pub fn message<'b>(&self, buf: &'b [u8]) -> Option<Message<'b>> {
        let start = match self.start {
            StartSpans::Request { method, uri } => StartLine::Request {
                method: Method::from_token(method.slice(buf)?),
                uri: uri.slice(buf)?,
            },
            StartSpans::Response { code, reason } => StartLine::Response {
                code,
                reason: reason.slice(buf)?,
            },
        };
        let n_headers = usize::from(self.n_headers);
        let mut headers: [(&[u8], &[u8]); MAX_HEADERS] = [(&[], &[]); MAX_HEADERS];
        for (slot, (name, value)) in headers.iter_mut().zip(self.headers.get(..n_headers)?) {
            *slot = (name.slice(buf)?, value.slice(buf)?);
        }
        let mut known = [None; KNOWN.len()];
        for (slot, span) in known.iter_mut().zip(self.known) {
            *slot = match span {
                Some(s) => Some(s.slice(buf)?),
                None => None,
            };
        }
        Some(Message {
            start,
            raw: self.raw.slice(buf)?,
            body: self.body.slice(buf)?,
            skipped: usize::from(self.skipped),
            headers,
            n_headers,
            lines: usize::from(self.lines),
            known,
            content_length: self.content_length.map(usize::from),
            unkept: (usize::from(self.unkept.0), usize::from(self.unkept.1)),
            oversized: self.oversized,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{parse, parse_stream};

    /// Messages covering each part a layout holds: requests with known and
    /// extension methods, responses with and without a reason, keep-alive
    /// bytes before the start line, compact and folded headers, no
    /// Content-Length, more headers than are kept, an oversized one.
    fn messages() -> Vec<Vec<u8>> {
        let mut all: Vec<Vec<u8>> = vec![
            include_bytes!("../testdata/baresip_1.sip").to_vec(),
            include_bytes!("../testdata/baresip_5.sip").to_vec(),
            include_bytes!("../testdata/baresip_912.sip").to_vec(),
            include_bytes!("../testdata/v6_2.sip").to_vec(),
            include_bytes!("../testdata/zeek_register.bin").to_vec(),
            b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\r\ni: x1\r\nl: 0\r\n\r\n".to_vec(),
            b"FOO sip:a@b SIP/2.0\nCall-ID: y\nSubject: one\n two\n\nbody".to_vec(),
            b"SIP/2.0 200\r\nCall-ID: z\r\nCSeq: 1 INVITE\r\n\r\n".to_vec(),
            b"SIP/2.0 486 Busy Here\r\nt: <sip:b@c>;tag=1\r\nf: <sip:a@c>\r\n\r\n".to_vec(),
        ];
        let mut many = b"INVITE sip:a@b SIP/2.0\r\n".to_vec();
        for i in 0..MAX_HEADERS + 10 {
            many.extend_from_slice(format!("X-H{i}: {i}\r\n").as_bytes());
        }
        many.extend_from_slice(b"Call-ID: late\r\nContent-Length: 4\r\n\r\nv=0\n");
        all.push(many);
        let mut oversized = b"BYE sip:a@b SIP/2.0\r\n".to_vec();
        for _ in 0..super::super::MAX_HEADER_LINES + 2 {
            oversized.extend_from_slice(b"X:1\r\n");
        }
        oversized.extend_from_slice(b"\r\n");
        all.push(oversized);
        all
    }

    /// Read from a copy of the bytes, a layout gives the message a parse of
    /// that copy gives, every part at the same offsets (the layout of each,
    /// taken in the copy, is equal) and every accessor the same answer.
    #[test]
    fn a_layout_read_from_a_copy_is_the_parse_of_the_copy() {
        for bytes in messages() {
            for parsed in [parse(&bytes), parse_stream(&bytes)] {
                let m = parsed.expect("each test message parses");
                let layout = m.layout(&bytes).expect("parts in the buffer");
                let copy = bytes.clone();
                let rebuilt = layout.message(&copy).expect("spans in the copy");
                let reparsed = parse_with_same_framing(&m, &copy);
                assert_eq!(rebuilt.layout(&copy), Some(layout));
                assert_eq!(reparsed.layout(&copy), Some(layout));
                assert_eq!(rebuilt.start(), m.start());
                assert_eq!(rebuilt.call_id(), m.call_id());
                assert_eq!(rebuilt.len(), m.len());
                assert_eq!(rebuilt.oversized(), m.oversized());
                assert_eq!(rebuilt.sdp(), m.sdp());
                let headers = |x: &Message<'_>| -> Vec<(Vec<u8>, Vec<u8>)> {
                    x.headers().map(|(n, v)| (n.to_vec(), v.to_vec())).collect()
                };
                assert_eq!(headers(&rebuilt), headers(&m));
            }
        }
    }

    fn parse_with_same_framing<'b>(m: &Message<'_>, copy: &'b [u8]) -> Message<'b> {
        let datagram = parse(copy).expect("parses");
        if datagram.len() == m.len() {
            datagram
        } else {
            parse_stream(copy).expect("parses")
        }
    }

    #[test]
    fn a_layout_is_refused_outside_its_buffer() {
        let bytes = messages().remove(0);
        let m = parse(&bytes).expect("parses");
        let elsewhere = bytes.clone();
        assert_eq!(m.layout(&elsewhere), None);
        let layout = m.layout(&bytes).expect("parts in the buffer");
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            assert!(layout.message(&bytes[..cut]).is_none(), "cut at {cut}");
        }
        // Past 64 KiB (no datagram is): no layout, the message parses as ever.
        let mut big = b"MESSAGE sip:a@b SIP/2.0\r\nCall-ID: big\r\n\r\n".to_vec();
        big.resize(70_000, b'x');
        let m = parse(&big).expect("parses");
        assert_eq!(m.body().len(), 70_000 - 41);
        assert_eq!(m.layout(&big), None);
    }
}
