//! SIP (RFC 3261) message parsing for passive capture.
//!
//! Design constraints, and why:
//! * zero-copy and allocation-free: every SIP datagram on a busy trunk goes
//!   through [`parse`], so a message is a set of borrowed slices into the
//!   packet plus a fixed-size array of header spans ([`MAX_HEADERS`]) and
//!   the headers every message needs ([`KNOWN`]), found wherever they are:
//!   no header count hides a message's Call-ID or CSeq.
//! * never panics: the input is whatever is on the wire (or a fuzzer).
//! * lenient where real equipment is sloppy (bare LF line ends, compact
//!   header names, folded lines, missing Content-Length on UDP), strict where
//!   leniency would turn non-SIP traffic into fake calls (start line).
//!
//! [`stream::StreamReassembler`] frames SIP over TCP, and over WebSocket
//! (RFC 7118) after an HTTP upgrade.

mod message;
mod stream;
mod uri;
mod ws;

pub(crate) use message::MAX_START_LINE;
pub use message::{
    KNOWN, Layout, MAX_HEADER_LINES, MAX_HEADERS, Message, find_start, looks_like_sip, parse,
    parse_stream,
};
#[cfg(test)]
use message::{MAX_HEADER_SECTION, MAX_OVERSIZED_SECTION, start_line_at};
pub use stream::{StreamReassembler, StreamStats};
pub use uri::NameAddr;
pub use uri::{parse_name_addr, uri_host, uri_user};
pub use ws::looks_like_sip_over_websocket;

use std::borrow::Cow;

/// SIP request method. RFC 3261 methods are case-sensitive, so `invite` is an
/// extension method ([`Method::Other`]), not [`Method::Invite`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method<'a> {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Info,
    Update,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    /// Any other token, borrowed from the message.
    Other(&'a [u8]),
}

impl<'a> Method<'a> {
    /// Classifies a method token (case-sensitive, as RFC 3261 section 7.1 says).
    pub fn from_token(token: &'a [u8]) -> Self {
        match token {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"REGISTER" => Method::Register,
            b"OPTIONS" => Method::Options,
            b"INFO" => Method::Info,
            b"UPDATE" => Method::Update,
            b"PRACK" => Method::Prack,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"PUBLISH" => Method::Publish,
            other => Method::Other(other),
        }
    }

    /// The method name. Borrowed for every method the parser produces (tokens
    /// are ASCII); only a hand-built `Other` with non-UTF-8 bytes allocates.
    pub fn as_str(&self) -> Cow<'_, str> {
        let s = match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(b) => return String::from_utf8_lossy(b),
        };
        Cow::Borrowed(s)
    }
}

/// First line of a SIP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'a> {
    Request {
        method: Method<'a>,
        uri: &'a [u8],
    },
    /// `code` is always within 100..=699; `reason` may be empty.
    Response {
        code: u16,
        reason: &'a [u8],
    },
}

/// Why a buffer is not (yet) a SIP message.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum SipError {
    /// More bytes are needed: the header section is unterminated, or the
    /// body is shorter than Content-Length. TCP framing waits for more data.
    #[error("incomplete SIP message")]
    Incomplete,
    /// The first line is neither a SIP request line nor a status line.
    #[error("malformed SIP start line")]
    BadStartLine,
    /// A header line has no `name:` (or an empty/invalid name).
    #[error("malformed SIP header line")]
    BadHeader,
    /// Content-Length is not a decimal number (or overflows).
    #[error("malformed Content-Length")]
    BadContentLength,
    /// Start line, header section or body exceeds the parser's hard caps
    /// ([`MAX_START_LINE`], `MAX_OVERSIZED_SECTION`, `MAX_BODY`).
    #[error("SIP message exceeds size limits")]
    TooLong,
}

#[cfg(test)]
mod tests;
