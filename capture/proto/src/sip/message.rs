//! Zero-copy SIP message parser.

use super::{Method, NameAddr, SipError, StartLine, parse_name_addr};

mod layout;
pub use layout::Layout;

/// Header (name, value) spans kept inline per message, for iterating and
/// looking up headers without reading the lines again. 64 covers real
/// INVITEs (typically 10-30 headers). A message may have any number more:
/// the headers every message needs ([`KNOWN`]: Call-ID, CSeq, From, To,
/// Via, Content-Length, Content-Type) are found in the one pass whatever
/// their position, and a lookup of any other header reads the lines past
/// the kept ones again (zero-copy, no allocation).
pub const MAX_HEADERS: usize = 64;
/// Header lines a lookup of a header other than [`KNOWN`] reads, and past
/// which a message is [`Message::oversized`]. Bounds the work an attacker
/// buys with thousands of tiny headers (`X:1`): each lookup reads at most
/// this many lines, not all of them.
pub const MAX_HEADER_LINES: usize = 1024;
/// Longest accepted start line. Bounds the scan for a line end so a stream of
/// junk without newlines is rejected instead of buffered forever.
pub(crate) const MAX_START_LINE: usize = 8 * 1024;
/// Longest header section (start line through the empty line) of a message
/// that is not [`Message::oversized`]: what SIP stacks take (Kamailio and
/// OpenSIPS buffer 64 KiB).
pub(crate) const MAX_HEADER_SECTION: usize = 64 * 1024;
/// Hard cap of a header section: longer is [`SipError::TooLong`]. Equal to
/// what the TCP reassembler buffers, so any message it can frame is parsed
/// (and attributed to its call) rather than dropped.
pub(crate) const MAX_OVERSIZED_SECTION: usize = 256 * 1024;
/// Largest accepted Content-Length. Larger values are either garbage or
/// something we cannot usefully buffer (the TCP reassembler caps at 256 KiB).
pub(crate) const MAX_BODY: usize = 256 * 1024;

/// Headers found in the parse pass whatever their position (first
/// occurrence), so that a message with thousands of headers still has its
/// dialog identity and framing.
pub const KNOWN: [&str; 7] = [
    "Call-ID",
    "CSeq",
    "From",
    "To",
    "Via",
    "Content-Length",
    "Content-Type",
];
// Each one's index in `KNOWN`: the accessors below read their slot
// directly (every replica of the parallel engine asks each message for its
// Call-ID, CSeq, From and To; resolving the name each time cost a worker
// 31 M of its 1.0 G instructions on 5,000 calls x 3 s, docs/performance.md,
// session 16).
const CALL_ID: usize = 0;
const CSEQ: usize = 1;
const FROM: usize = 2;
const TO: usize = 3;
const CONTENT_LENGTH: usize = 5;
const CONTENT_TYPE: usize = 6;

/// One parsed SIP message, borrowing from the input buffer.
///
/// Holds up to [`MAX_HEADERS`] header (name, value) slices and the
/// [`KNOWN`] headers inline: no heap.
#[derive(Clone)]
pub struct Message<'a> {
    start: StartLine<'a>,
    /// Start line through end of body (leading keep-alive CRLFs excluded).
    raw: &'a [u8],
    body: &'a [u8],
    /// Keep-alive bytes skipped before the start line.
    skipped: usize,
    headers: [(&'a [u8], &'a [u8]); MAX_HEADERS],
    n_headers: usize,
    /// Header lines in the message (folded lines count once).
    lines: usize,
    /// First value of each [`KNOWN`] header.
    known: [Option<&'a [u8]>; KNOWN.len()],
    /// Tracked apart from the spans so that framing works whatever the
    /// position of Content-Length.
    content_length: Option<usize>,
    /// Offsets in `raw` of the first header line not kept in `headers`, and
    /// of the end of the lines a lookup reads ([`MAX_HEADER_LINES`]).
    unkept: (usize, usize),
    oversized: bool,
}

impl std::fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("start", &self.start)
            .field("headers", &self.lines)
            .field("oversized", &self.oversized)
            .field("content_length", &self.content_length)
            .field("body_len", &self.body.len())
            .field("len", &self.len())
            .finish()
    }
}

/// Compact header forms (RFC 3261 section 7.3.3 and later RFCs), lower-case
/// letter to full name.
const COMPACT: &[(u8, &str)] = &[
    (b'i', "Call-ID"),
    (b'f', "From"),
    (b't', "To"),
    (b'm', "Contact"),
    (b'l', "Content-Length"),
    (b'c', "Content-Type"),
    (b'v', "Via"),
    (b'e', "Content-Encoding"),
    (b'k', "Supported"),
    (b's', "Subject"),
    (b'r', "Refer-To"),
    (b'b', "Referred-By"),
    (b'o', "Event"),
    (b'u', "Allow-Events"),
    (b'x', "Session-Expires"),
    (b'a', "Accept-Contact"),
    (b'j', "Reject-Contact"),
    (b'd', "Request-Disposition"),
    (b'y', "Identity"),
];

/// A header-name query normalised to (full name, compact letter) so that
/// either spelling matches either spelling in the message.
#[derive(Clone, Copy)]
struct NameQuery<'q> {
    full: &'q [u8],
    compact: Option<u8>,
}

impl<'q> NameQuery<'q> {
    fn new(name: &'q str) -> Self {
        let b = name.as_bytes();
        if let [c] = b {
            let lc = c.to_ascii_lowercase();
            if let Some((l, full)) = COMPACT.iter().find(|(l, _)| *l == lc) {
                return NameQuery {
                    full: full.as_bytes(),
                    compact: Some(*l),
                };
            }
            return NameQuery {
                full: b,
                compact: None,
            };
        }
        let compact = COMPACT
            .iter()
            .find(|(_, full)| full.as_bytes().eq_ignore_ascii_case(b))
            .map(|(l, _)| *l);
        NameQuery { full: b, compact }
    }

    /// Its index in [`KNOWN`], if it is one of them.
    fn known(&self) -> Option<usize> {
        KNOWN
            .iter()
            .position(|k| k.as_bytes().eq_ignore_ascii_case(self.full))
    }

    fn matches(&self, name: &[u8]) -> bool {
        if name.eq_ignore_ascii_case(self.full) {
            return true;
        }
        match (self.compact, name) {
            (Some(l), [c]) => c.to_ascii_lowercase() == l,
            _ => false,
        }
    }
}

impl<'a> Message<'a> {
    pub fn start(&self) -> &StartLine<'a> {
        &self.start
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// Request method, or `None` for a response (use [`Message::cseq`]).
    pub fn method(&self) -> Option<Method<'a>> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// Status code, or `None` for a request.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// Stored headers in order: (name as written, trimmed value).
    fn stored(&self) -> &[(&'a [u8], &'a [u8])] {
        self.headers.get(..self.n_headers).unwrap_or(&[])
    }

    /// Header lines past the kept spans, up to [`MAX_HEADER_LINES`].
    fn unkept(&self) -> RawHeaders<'a> {
        RawHeaders {
            msg: self.raw,
            pos: self.unkept.0,
            end: self.unkept.1,
        }
    }

    /// First value of header `name` (case-insensitive; compact and full forms
    /// are equivalent), trimmed of surrounding whitespace. A [`KNOWN`] header
    /// is found wherever it is; any other within the first
    /// [`MAX_HEADER_LINES`] lines.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        let q = NameQuery::new(name);
        if let Some(k) = q.known() {
            return self.known.get(k).copied().flatten();
        }
        self.header_all_q(q).next()
    }

    /// All header lines in order (past [`MAX_HEADERS`], read again from the
    /// message, up to [`MAX_HEADER_LINES`]).
    pub fn headers(&self) -> HeaderIter<'a, '_> {
        HeaderIter {
            inner: self.stored().iter(),
            rest: self.unkept(),
        }
    }

    /// Every occurrence of header `name` within the first
    /// [`MAX_HEADER_LINES`] lines, each value as written (a comma-separated
    /// list in one line is one item).
    pub fn header_all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.header_all_q(NameQuery::new(name))
    }

    /// Every header named one of `names` (as [`Message::header_all`] finds
    /// them), in message order, with the index in `names` of the name it
    /// matched: one read of the lines however many names are asked for. A
    /// lookup per name reads the lines past the kept spans once per name:
    /// with a thousand tiny headers, ten lookups cost 0.9 ms a message.
    pub fn headers_among<'s>(
        &'s self,
        names: &'s [&'s str],
    ) -> impl Iterator<Item = (usize, &'a [u8])> + 's {
        // The lengths asked for, as bits: a header of another length (and
        // not a one-letter compact form) matches none of the names, so
        // most headers are passed over with one test rather than compared
        // with each name (every request, for the correlation headers).
        // A one-letter name asked for is a compact form: it matches a full
        // name of any length, so no header is passed over.
        let lengths = names.iter().fold(0u64, |m, q| match q.len() {
            1 => u64::MAX,
            l => m | length_bit(l),
        });
        self.headers().filter_map(move |(n, v)| {
            // A one-letter name is a compact form: its full name, once.
            let n_full = match n {
                [c] => compact_full(*c),
                _ if lengths & length_bit(n.len()) == 0 => return None,
                _ => None,
            };
            names
                .iter()
                .position(|q| name_matches(q, n, n_full))
                .map(|i| (i, v))
        })
    }

    fn header_all_q<'s>(&'s self, q: NameQuery<'s>) -> impl Iterator<Item = &'a [u8]> + 's {
        self.headers()
            .filter(move |(n, _)| q.matches(n))
            .map(|(_, v)| v)
    }

    /// Number of header lines beyond [`MAX_HEADERS`] (not kept as spans;
    /// still found by the lookups, see [`Message::header`]).
    pub fn headers_dropped(&self) -> usize {
        self.lines.saturating_sub(self.n_headers)
    }

    /// Past the limits a SIP stack takes ([`MAX_HEADER_LINES`] header lines
    /// or a [`MAX_HEADER_SECTION`] header section), yet parsed: the capture
    /// attributes it to its call and counts it instead of dropping it. Only
    /// the [`KNOWN`] headers are looked for past the first
    /// [`MAX_HEADER_LINES`] lines.
    pub fn oversized(&self) -> bool {
        self.oversized
    }

    pub fn call_id(&self) -> Option<&'a [u8]> {
        self.known[CALL_ID]
    }

    pub fn from(&self) -> Option<NameAddr<'a>> {
        self.known[FROM].and_then(parse_name_addr)
    }

    pub fn to(&self) -> Option<NameAddr<'a>> {
        self.known[TO].and_then(parse_name_addr)
    }

    /// CSeq number and method. `None` if absent or malformed (number must fit
    /// u32, RFC 3261 says < 2^31).
    pub fn cseq(&self) -> Option<(u32, Method<'a>)> {
        let v = self.known[CSEQ]?;
        let v = trim(v);
        let split = v.iter().position(|b| is_ws(*b))?;
        let (num, rest) = v.split_at(split);
        let num = parse_u32(num)?;
        let method = trim(rest);
        if method.is_empty() || !method.iter().all(|b| is_token(*b)) {
            return None;
        }
        Some((num, Method::from_token(method)))
    }

    pub fn content_type(&self) -> Option<&'a [u8]> {
        self.known[CONTENT_TYPE]
    }

    pub fn content_length(&self) -> Option<usize> {
        self.content_length
    }

    /// Body: exactly Content-Length bytes when given; otherwise the rest of the
    /// buffer ([`parse`], UDP rule) or empty ([`parse_stream`], TCP rule).
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// Bytes of the input this message occupies, including skipped leading
    /// keep-alive CRLFs: advance the buffer by this much to reach the next one.
    pub fn len(&self) -> usize {
        self.skipped.saturating_add(self.raw.len())
    }

    /// Never true for a parsed message (a start line is at least a few bytes);
    /// present because clippy asks for it next to `len`.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The message bytes: start line through end of body, without the
    /// leading keep-alive CRLFs that [`Message::len`] counts.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The SDP body: the whole body for `application/sdp`, or the first
    /// `application/sdp` part of a `multipart/*` body (e.g. SDP + ISUP in
    /// SIP-I, SDP + PIDF-LO in emergency calls).
    pub fn sdp(&self) -> Option<&'a [u8]> {
        let ct = self.content_type()?;
        let (mime, params) = split_mime(ct);
        if mime.eq_ignore_ascii_case(b"application/sdp") {
            return Some(self.body);
        }
        let is_multipart = mime
            .get(..10)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"multipart/"));
        if !is_multipart {
            return None;
        }
        let boundary = mime_param(params, b"boundary")?;
        multipart_sdp(self.body, boundary)
    }
}

/// Iterator over (name, value) header pairs: the kept spans, then the
/// lines past them read again.
pub struct HeaderIter<'a, 'm> {
    inner: std::slice::Iter<'m, (&'a [u8], &'a [u8])>,
    rest: RawHeaders<'a>,
}

impl<'a> Iterator for HeaderIter<'a, '_> {
    type Item = (&'a [u8], &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        match self.inner.next() {
            Some(h) => Some(*h),
            None => self.rest.next(),
        }
    }
}

/// Header lines of a parsed message between two offsets, read again.
struct RawHeaders<'a> {
    msg: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Iterator for RawHeaders<'a> {
    type Item = (&'a [u8], &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.end {
            return None;
        }
        // The parse pass read these lines already, so they are complete.
        match read_header(self.msg, self.pos) {
            Ok(HeaderLine::Header { name, value, next }) => {
                self.pos = next;
                Some((name, value))
            }
            _ => {
                self.pos = self.end;
                None
            }
        }
    }
}

/// One line of a header section.
enum HeaderLine<'a> {
    /// The empty line that ends it; the body starts at `next`.
    End { next: usize },
    /// A header (with its continuation lines); the next line starts at `next`.
    Header {
        name: &'a [u8],
        value: &'a [u8],
        next: usize,
    },
}

/// Reads the header line at `pos` of `msg`, folding continuation lines into
/// it (RFC 3261 section 7.3.1; the value keeps them as raw bytes).
/// `Incomplete` when `msg` ends before the line (and the byte after it, to
/// know whether it continues) does.
fn read_header(msg: &[u8], pos: usize) -> Result<HeaderLine<'_>, SipError> {
    let (first, mut end) = next_line(msg, pos).ok_or(SipError::Incomplete)?;
    if first.is_empty() {
        return Ok(HeaderLine::End { next: end });
    }
    // A header line may not start with whitespace: continuation lines are
    // consumed below together with the line they continue.
    if first.first().is_some_and(|b| is_ws(*b)) {
        return Err(SipError::BadHeader);
    }
    let mut line_end_excl = pos.saturating_add(first.len());
    loop {
        match msg.get(end) {
            Some(b' ') | Some(b'\t') => {
                let (cont, next) = next_line(msg, end).ok_or(SipError::Incomplete)?;
                line_end_excl = end.saturating_add(cont.len());
                end = next;
            }
            // We need the byte after the line end to know whether the
            // header continues; at the end of the buffer, wait for more.
            None => return Err(SipError::Incomplete),
            Some(_) => break,
        }
    }
    let full = msg.get(pos..line_end_excl).ok_or(SipError::BadHeader)?;
    let (name, value) = split_header(full).ok_or(SipError::BadHeader)?;
    Ok(HeaderLine::Header {
        name,
        value,
        next: end,
    })
}

/// What the parse pass gathers from the header lines.
struct HeaderScan<'a> {
    headers: [(&'a [u8], &'a [u8]); MAX_HEADERS],
    n_headers: usize,
    lines: usize,
    known: [Option<&'a [u8]>; KNOWN.len()],
    content_length: Option<usize>,
    unkept: (usize, usize),
}

impl<'a> HeaderScan<'a> {
    fn new() -> Self {
        HeaderScan {
            headers: [(&[], &[]); MAX_HEADERS],
            n_headers: 0,
            lines: 0,
            known: [None; KNOWN.len()],
            content_length: None,
            unkept: (0, 0),
        }
    }

    /// A header line; the next line starts at `next`.
    fn add(&mut self, name: &'a [u8], value: &'a [u8], next: usize) -> Result<(), SipError> {
        self.lines = self.lines.saturating_add(1);
        if let Some(k) = known_index(name)
            && let Some(slot) = self.known.get_mut(k)
            && slot.is_none()
        {
            *slot = Some(value);
            if k == CONTENT_LENGTH {
                self.content_length = Some(parse_content_length(value)?);
            }
        }
        match self.headers.get_mut(self.n_headers) {
            Some(span) => {
                *span = (name, value);
                self.n_headers = self.n_headers.saturating_add(1);
                self.unkept = (next, next);
            }
            None if self.lines <= MAX_HEADER_LINES => self.unkept.1 = next,
            None => {}
        }
        Ok(())
    }
}

/// A name length's bit in [`Message::headers_among`]'s filter: lengths of
/// 63 and more share the last bit (they are then compared in full).
fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

/// Whether header `name` (as written; `name_full` its full name when it is
/// a compact letter) is `query`, compact and full forms alike.
fn name_matches(query: &str, name: &[u8], name_full: Option<&str>) -> bool {
    let q = query.as_bytes();
    name.eq_ignore_ascii_case(q)
        || name_full.is_some_and(|f| f.as_bytes().eq_ignore_ascii_case(q))
        || (q.len() == 1
            && q.first()
                .and_then(|c| compact_full(*c))
                .is_some_and(|f| f.as_bytes().eq_ignore_ascii_case(name)))
}

/// The full name of compact header letter `c`.
fn compact_full(c: u8) -> Option<&'static str> {
    let c = c.to_ascii_lowercase();
    COMPACT.iter().find(|(l, _)| *l == c).map(|(_, f)| *f)
}

/// Index in [`KNOWN`] of a header name as written (full or compact form).
fn known_index(name: &[u8]) -> Option<usize> {
    if let [c] = name {
        let full = match c.to_ascii_lowercase() {
            b'i' => 0,
            b'f' => 2,
            b't' => 3,
            b'v' => 4,
            b'l' => CONTENT_LENGTH,
            b'c' => CONTENT_TYPE,
            _ => return None,
        };
        return Some(full);
    }
    KNOWN
        .iter()
        .position(|k| k.as_bytes().eq_ignore_ascii_case(name))
}

/// How a missing Content-Length is treated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// UDP: the body is the rest of the datagram (RFC 3261 section 18.3).
    Datagram,
    /// TCP: Content-Length is mandatory; treat absence as 0 like most stacks.
    Stream,
}

/// Parses the one message at the start of `buf` using the UDP rule: a missing
/// Content-Length means the body is the rest of `buf`. `buf` may hold more
/// than one message when Content-Length is present; advance by
/// [`Message::len`]. Leading CRLF keep-alives are skipped; bare LF line ends
/// are accepted.
pub fn parse(buf: &[u8]) -> Result<Message<'_>, SipError> {
    parse_with(buf, Framing::Datagram)
}

/// Like [`parse`] but with the stream (TCP) rule: a missing Content-Length
/// means an empty body, so the next message can follow immediately.
pub fn parse_stream(buf: &[u8]) -> Result<Message<'_>, SipError> {
    parse_with(buf, Framing::Stream)
}

fn parse_with(buf: &[u8], framing: Framing) -> Result<Message<'_>, SipError> {
    let skipped = buf
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .ok_or(SipError::Incomplete)?;
    let msg = buf.get(skipped..).ok_or(SipError::Incomplete)?;

    // Start line.
    let (line, mut pos) = match next_line(msg, 0) {
        Some(x) => x,
        None if msg.len() > MAX_START_LINE => return Err(SipError::TooLong),
        // A partial first line that already cannot be SIP is rejected now,
        // so a TCP stream of junk does not wait for a newline.
        None if !could_be_start_prefix(msg) => return Err(SipError::BadStartLine),
        None => return Err(SipError::Incomplete),
    };
    if line.len() > MAX_START_LINE {
        return Err(SipError::TooLong);
    }
    let start = parse_start_line(line).ok_or(SipError::BadStartLine)?;

    // Header lines until the empty line.
    let mut scan = HeaderScan::new();
    loop {
        if pos > MAX_OVERSIZED_SECTION {
            return Err(SipError::TooLong);
        }
        match read_header(msg, pos) {
            Ok(HeaderLine::End { next }) => {
                pos = next;
                break;
            }
            Ok(HeaderLine::Header { name, value, next }) => {
                scan.add(name, value, next)?;
                pos = next;
            }
            Err(SipError::Incomplete) if msg.len() > MAX_OVERSIZED_SECTION => {
                return Err(SipError::TooLong);
            }
            Err(e) => return Err(e),
        }
    }
    let oversized = pos > MAX_HEADER_SECTION || scan.lines > MAX_HEADER_LINES;

    let rest = msg.get(pos..).unwrap_or(&[]);
    let body_len = match (scan.content_length, framing) {
        (Some(n), _) => {
            if n > MAX_BODY {
                return Err(SipError::TooLong);
            }
            if n > rest.len() {
                return Err(SipError::Incomplete);
            }
            n
        }
        (None, Framing::Datagram) => rest.len(),
        (None, Framing::Stream) => 0,
    };
    let total = pos.checked_add(body_len).ok_or(SipError::TooLong)?;
    let raw = msg.get(..total).ok_or(SipError::Incomplete)?;
    let body = msg.get(pos..total).ok_or(SipError::Incomplete)?;

    Ok(Message {
        start,
        raw,
        body,
        skipped,
        headers: scan.headers,
        n_headers: scan.n_headers,
        lines: scan.lines,
        known: scan.known,
        content_length: scan.content_length,
        unkept: scan.unkept,
        oversized,
    })
}

/// Cheap check that `buf` starts (after optional CRLFs) with a SIP start line.
/// Only the first line is examined, bounded by [`MAX_START_LINE`]. A first
/// line cut off by the end of `buf` is judged on what is there.
///
/// Every UDP payload of an import without SIP ports comes here, RTP
/// included, so the first byte decides first: a start line begins with a
/// method token or "SIP/2.0" (a token character either way), and an RTP
/// header's first byte (0x80-0xBF) is none. Without it each RTP packet
/// paid a search for a line end through its payload and a start-line parse.
pub fn looks_like_sip(buf: &[u8]) -> bool {
    let start = match buf.iter().position(|b| *b != b'\r' && *b != b'\n') {
        Some(s) => s,
        None => return false,
    };
    if !buf.get(start).is_some_and(|b| is_token(*b)) {
        return false;
    }
    start_line_at(buf, start)
}

/// Whether the line starting at `start` (after the CRLFs) is a SIP start
/// line; [`looks_like_sip`] without its first-byte test.
pub(super) fn start_line_at(buf: &[u8], start: usize) -> bool {
    let rest = buf.get(start..).unwrap_or(&[]);
    let window = rest.get(..MAX_START_LINE).unwrap_or(rest);
    let line = match memchr::memchr(b'\n', window) {
        Some(i) => strip_cr(window.get(..i).unwrap_or(&[])),
        None if rest.len() > MAX_START_LINE => return false,
        None => window,
    };
    parse_start_line(line).is_some()
}

/// Finds the offset of the first SIP start line inside `buf`, even when it is
/// preceded by junk on the same line (as in a datagram with garbage before
/// `REGISTER`). Used to resync a TCP stream after a gap.
pub fn find_start(buf: &[u8]) -> Option<usize> {
    const VERSION: &[u8] = b"SIP/2.0";
    let finder = memchr::memmem::Finder::new(VERSION);
    for at in finder.find_iter(buf) {
        let after = at.saturating_add(VERSION.len());
        // Status line: "SIP/2.0 ddd ..." starting right here.
        if buf.get(after) == Some(&b' ') {
            let line = line_from(buf, at);
            if let Some(StartLine::Response { .. }) = parse_start_line(line) {
                return Some(at);
            }
        }
        // Request line ending in "SIP/2.0": walk back over " URI " and the
        // method token to find where the line really starts.
        let ends_line = matches!(buf.get(after), Some(b'\r') | Some(b'\n') | None);
        if ends_line && let Some(s) = request_start_before(buf, at) {
            return Some(s);
        }
    }
    None
}

/// The line beginning at `from` (without line end), bounded by MAX_START_LINE.
fn line_from(buf: &[u8], from: usize) -> &[u8] {
    let rest = buf.get(from..).unwrap_or(&[]);
    let window = rest.get(..MAX_START_LINE).unwrap_or(rest);
    match memchr::memchr(b'\n', window) {
        Some(i) => strip_cr(window.get(..i).unwrap_or(&[])),
        None => window,
    }
}

/// Given the offset of a "SIP/2.0" that ends a line, returns the offset of
/// the method token that starts the request line, if the bytes before it form
/// `TOKEN SP URI SP`.
fn request_start_before(buf: &[u8], version_at: usize) -> Option<usize> {
    let mut i = version_at;
    // one or more SP before the version
    let sp_end = i;
    while i > 0 && buf.get(i - 1) == Some(&b' ') {
        i -= 1;
    }
    if i == sp_end {
        return None;
    }
    // the URI: non-whitespace
    let uri_end = i;
    let lower = version_at.saturating_sub(MAX_START_LINE);
    while i > lower && buf.get(i - 1).is_some_and(|b| !is_ws(*b) && !is_eol(*b)) {
        i -= 1;
    }
    if i == uri_end {
        return None;
    }
    let sp_end = i;
    while i > 0 && buf.get(i - 1) == Some(&b' ') {
        i -= 1;
    }
    if i == sp_end {
        // No space: junk glued to the URI, or the URI walk ran into the
        // method. Either way the candidate is not a request line.
        return None;
    }
    let method_end = i;
    while i > lower && buf.get(i - 1).is_some_and(|b| is_token(*b)) {
        i -= 1;
    }
    if i == method_end {
        return None;
    }
    match parse_start_line(line_from(buf, i)) {
        Some(StartLine::Request { .. }) => Some(i),
        _ => None,
    }
}

/// Parses a start line (no line end). `None` if it is not SIP.
fn parse_start_line(line: &[u8]) -> Option<StartLine<'_>> {
    if line.len() > MAX_START_LINE {
        return None;
    }
    if let Some(rest) = strip_prefix_ci(line, b"SIP/2.0 ") {
        let code_bytes = rest.get(..3)?;
        if !code_bytes.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let code = parse_u32(code_bytes)?;
        if !(100..=699).contains(&code) {
            return None;
        }
        let code = u16::try_from(code).ok()?;
        let after = rest.get(3..).unwrap_or(&[]);
        // "SIP/2.0 2000 OK" is not a status line; the reason follows a space.
        let reason = match after.first() {
            None => after,
            Some(b' ') | Some(b'\t') => trim(after),
            Some(_) => return None,
        };
        return Some(StartLine::Response { code, reason });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version
    let sp1 = memchr::memchr(b' ', line)?;
    let method = line.get(..sp1)?;
    if method.is_empty() || !method.iter().all(|b| is_token(*b)) {
        return None;
    }
    let sp2 = memchr::memrchr(b' ', line)?;
    let version = line.get(sp2.checked_add(1)?..)?;
    if !version.eq_ignore_ascii_case(b"SIP/2.0") {
        return None;
    }
    let uri = trim(line.get(sp1..sp2)?);
    // Request-URI: absoluteURI with a scheme, no whitespace inside.
    if uri.is_empty() || uri.iter().any(|b| is_ws(*b) || b.is_ascii_control()) {
        return None;
    }
    let colon = memchr::memchr(b':', uri)?;
    let scheme = uri.get(..colon)?;
    if scheme.is_empty() || !scheme.first().is_some_and(u8::is_ascii_alphabetic) {
        return None;
    }
    Some(StartLine::Request {
        method: Method::from_token(method),
        uri,
    })
}

/// Whether an unterminated first line could still become a SIP start line.
fn could_be_start_prefix(partial: &[u8]) -> bool {
    const V: &[u8] = b"SIP/2.0 ";
    let n = partial.len().min(V.len());
    if partial
        .get(..n)
        .zip(V.get(..n))
        .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b))
    {
        return true;
    }
    // Request: token chars, then a space, then anything without control bytes.
    let tok_end = partial
        .iter()
        .position(|b| !is_token(*b))
        .unwrap_or(partial.len());
    if tok_end == 0 {
        return false;
    }
    match partial.get(tok_end) {
        None => true,
        Some(b' ') => partial
            .get(tok_end..)
            .unwrap_or(&[])
            .iter()
            .all(|b| *b == b'\r' || !b.is_ascii_control()),
        Some(_) => false,
    }
}

/// Returns the line starting at `pos` (without CR/LF) and the offset just
/// past its line end, or `None` if no LF follows.
fn next_line(buf: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(pos..)?;
    let nl = memchr::memchr(b'\n', rest)?;
    let line = strip_cr(rest.get(..nl)?);
    Some((line, pos.checked_add(nl)?.checked_add(1)?))
}

/// Splits `name: value` (RFC 3261: `name HCOLON value`, whitespace allowed
/// before the colon). Value is trimmed.
fn split_header(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = memchr::memchr(b':', line)?;
    let name = trim(line.get(..colon)?);
    if name.is_empty() || !name.iter().all(|b| is_token(*b)) {
        return None;
    }
    let value = trim(line.get(colon.checked_add(1)?..)?);
    Some((name, value))
}

fn parse_content_length(v: &[u8]) -> Result<usize, SipError> {
    let v = trim(v);
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(SipError::BadContentLength);
    }
    v.iter().try_fold(0usize, |acc, d| {
        acc.checked_mul(10)
            .and_then(|a| a.checked_add(usize::from(d - b'0')))
            .ok_or(SipError::BadContentLength)
    })
}

/// Decimal u32 with overflow check; `None` for empty or non-digit input.
pub(crate) fn parse_u32(v: &[u8]) -> Option<u32> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u32, |acc, d| {
        if !d.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u32::from(d - b'0'))
    })
}

/// `type/subtype` and the `;params` that follow.
fn split_mime(ct: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b';', ct) {
        Some(i) => (trim(ct.get(..i).unwrap_or(&[])), ct.get(i..).unwrap_or(&[])),
        None => (trim(ct), &[]),
    }
}

/// Value of a MIME parameter in `;a=b;c="d"` (quotes removed).
fn mime_param<'p>(params: &'p [u8], want: &[u8]) -> Option<&'p [u8]> {
    params.split(|b| *b == b';').find_map(|p| {
        let eq = memchr::memchr(b'=', p)?;
        let name = trim(p.get(..eq)?);
        if !name.eq_ignore_ascii_case(want) {
            return None;
        }
        let v = trim(p.get(eq.checked_add(1)?..)?);
        let v = match v {
            [b'"', inner @ .., b'"'] => inner,
            v => v,
        };
        (!v.is_empty()).then_some(v)
    })
}

/// First `application/sdp` part of a multipart body (RFC 2046 section 5.1).
fn multipart_sdp<'b>(body: &'b [u8], boundary: &[u8]) -> Option<&'b [u8]> {
    // Delimiters are "--boundary" at the start of a line.
    let mut delim_buf = [0u8; 80];
    // RFC 2046 caps boundaries at 70 chars; longer ones are not valid.
    let dlen = boundary.len().checked_add(2)?;
    let delim = delim_buf.get_mut(..dlen)?;
    delim.get_mut(..2)?.copy_from_slice(b"--");
    delim.get_mut(2..)?.copy_from_slice(boundary);
    let delim: &[u8] = delim;
    let finder = memchr::memmem::Finder::new(delim);

    // Positions of delimiters that start a line.
    let next_delim = |from: usize| -> Option<usize> {
        let mut at = from;
        loop {
            let rel = finder.find(body.get(at..)?)?;
            let abs = at.checked_add(rel)?;
            if abs == 0 || body.get(abs - 1) == Some(&b'\n') {
                return Some(abs);
            }
            at = abs.checked_add(1)?;
        }
    };
    let mut d = next_delim(0)?;
    loop {
        let after = d.checked_add(dlen)?;
        // "--boundary--" closes the multipart body.
        if body.get(after..after.checked_add(2)?) == Some(b"--") {
            return None;
        }
        // Rest of the delimiter line (transport padding), then part headers.
        let (_, part_start) = next_line(body, after)?;
        let next = next_delim(part_start);
        let part_end = next.unwrap_or(body.len());
        let part = body.get(part_start..part_end)?;
        // The CRLF before a delimiter belongs to the delimiter.
        let part = part
            .strip_suffix(b"\r\n")
            .or_else(|| part.strip_suffix(b"\n"))
            .unwrap_or(part);
        if let Some(sdp) = part_if_sdp(part) {
            return Some(sdp);
        }
        d = next?;
    }
}

/// Body of a MIME part if its Content-Type is application/sdp. Parts without
/// a Content-Type are text/plain (RFC 2046), so they do not match.
fn part_if_sdp(part: &[u8]) -> Option<&[u8]> {
    let ct_query = NameQuery::new("Content-Type");
    let mut pos = 0usize;
    let mut is_sdp = false;
    loop {
        let (line, next) = next_line(part, pos)?;
        pos = next;
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = split_header(line)
            && ct_query.matches(name)
        {
            is_sdp = split_mime(value).0.eq_ignore_ascii_case(b"application/sdp");
        }
    }
    if is_sdp { part.get(pos..) } else { None }
}

fn strip_prefix_ci<'b>(s: &'b [u8], prefix: &[u8]) -> Option<&'b [u8]> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn is_eol(b: u8) -> bool {
    b == b'\r' || b == b'\n'
}

/// RFC 3261 `token` characters.
pub(crate) fn is_token(b: u8) -> bool {
    b < 128 && (TOKEN >> b) & 1 == 1
}

/// RFC 3261's token characters (all ASCII), bit `b` for byte `b`: a shift
/// and a test where the definition took up to a dozen comparisons (every
/// header name of every message is checked, in every replica of the
/// parallel engine).
const TOKEN: u128 = {
    let mut bits = 0u128;
    let mut b = 0u8;
    while b < 128 {
        let token = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        bits |= (token as u128) << b;
        b += 1;
    }
    bits
};

/// Trims SP, HTAB, CR and LF on both ends (CR/LF inside folded values stay).
pub(crate) fn trim(s: &[u8]) -> &[u8] {
    let is_space = |b: &u8| is_ws(*b) || is_eol(*b);
    let start = s.iter().position(|b| !is_space(b)).unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or(&[])
}
