//! SIP over WebSocket (RFC 7118): the HTTP/1.1 upgrade that opens it, and
//! WebSocket messages (one SIP message each) from the ordered bytes of one
//! direction: masked or not, text or binary, fragmented over several frames
//! with control frames between them, several frames per segment or one
//! frame over several segments.

use super::looks_like_sip;
use crate::tcp_stream::OrderedBytes;
use crate::wire::WireError;
use crate::wire::websocket::{Frame, header_len, opcode};

/// Longest HTTP header section an upgrade may have.
const MAX_HTTP_HEADER: usize = 16 * 1024;
/// Largest WebSocket message held (a SIP message is far smaller).
pub(crate) const MAX_WS_MESSAGE: usize = 256 * 1024;
/// Payload bytes unmasked to see whether a frame starts a SIP message.
const PEEK: usize = 512;
/// A frame header is at most this long (2 + 8 + 4).
pub(crate) const MAX_FRAME_HEADER: usize = 14;

/// What the bytes at the start of a direction are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upgrade {
    /// An HTTP/1.1 WebSocket upgrade request or its 101 response, this many
    /// bytes long; `sip` when it names the "sip" subprotocol.
    Yes { header_len: usize, sip: bool },
    /// Something else.
    No,
    /// An HTTP start whose header section has not ended yet.
    NeedMore,
}

/// Whether `data` starts with a WebSocket upgrade (see [`Upgrade`]).
pub(crate) fn upgrade(data: &[u8]) -> Upgrade {
    let is_http = data.starts_with(b"GET ")
        || data.starts_with(b"HTTP/1.1 101")
        || data.starts_with(b"HTTP/1.0 101");
    if !is_http {
        return Upgrade::No;
    }
    let window = data.get(..MAX_HTTP_HEADER).unwrap_or(data);
    let Some(end) = memchr::memmem::find(window, b"\r\n\r\n") else {
        return if data.len() >= MAX_HTTP_HEADER {
            Upgrade::No
        } else {
            Upgrade::NeedMore
        };
    };
    let head = window.get(..end).unwrap_or(&[]);
    let mut websocket = false;
    let mut sip = false;
    for line in head.split(|b| *b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (line.get(..colon).unwrap_or(&[]), line.get(colon + 1..));
        let value = value.unwrap_or(&[]);
        let name = name.trim_ascii();
        if name.eq_ignore_ascii_case(b"upgrade") {
            websocket |= has_token(value, b"websocket");
        } else if name.eq_ignore_ascii_case(b"sec-websocket-protocol") {
            sip |= has_token(value, b"sip");
        }
    }
    if websocket {
        Upgrade::Yes {
            header_len: end + 4,
            sip,
        }
    } else {
        Upgrade::No
    }
}

/// `value` holds `token` in its comma-separated list (case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// A segment that opens SIP over WebSocket: an upgrade naming the "sip"
/// subprotocol, or (a capture that began after the upgrade) a data frame
/// whose payload starts with a SIP start line.
pub fn looks_like_sip_over_websocket(payload: &[u8]) -> bool {
    match upgrade(payload) {
        Upgrade::Yes { sip, .. } => sip,
        Upgrade::NeedMore => false,
        Upgrade::No => frame_starts_sip(payload),
    }
}

/// The frame at the start of `b` is a text/binary frame that begins a
/// message and whose (unmasked) payload starts like SIP.
fn frame_starts_sip(b: &[u8]) -> bool {
    let Some(&b0) = b.first() else { return false };
    // A compressed frame (RSV1) cannot be read as SIP.
    if b0 & 0x40 != 0 || !matches!(b0 & 0x0f, opcode::TEXT | opcode::BINARY) {
        return false;
    }
    let Ok(h) = header_len(b) else { return false };
    let avail = b.len().saturating_sub(h.header_len);
    let n = usize::try_from(h.payload_len)
        .unwrap_or(usize::MAX)
        .min(avail)
        .min(PEEK);
    let key = b
        .get(1)
        .filter(|b1| *b1 & 0x80 != 0)
        .and_then(|_| crate::wire::bytes_at::<4>(b, h.header_len.saturating_sub(4)));
    let raw = b.get(h.header_len..h.header_len + n).unwrap_or(&[]);
    // Methods and "SIP/2.0" start with a capital letter: a cheap test
    // before unmasking.
    let first = raw.first().map(|c| c ^ key.map_or(0, |k| k[0]));
    if !first.is_some_and(|c| c.is_ascii_uppercase()) {
        return false;
    }
    let mut peek = [0u8; PEEK];
    for (i, (d, s)) in peek.iter_mut().zip(raw).enumerate() {
        *d = s ^ key.map_or(0, |k| k.get(i % 4).copied().unwrap_or(0));
    }
    looks_like_sip(peek.get(..n).unwrap_or(&[]))
}

/// The first offset in `data`, before `before`, where a frame carrying the
/// start of a SIP message begins.
pub(crate) fn find_frame_start(data: &[u8], before: usize) -> Option<usize> {
    (0..data.len().min(before)).find(|&i| frame_starts_sip(data.get(i..).unwrap_or(&[])))
}

/// What [`WsReader::next`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WsStep {
    /// A whole message is in [`WsReader::message`].
    Message,
    /// More bytes are needed.
    NeedMore,
    /// The bytes are not WebSocket frames (or a frame is impossibly long):
    /// look for the next frame that starts a SIP message.
    Lost,
}

/// Assembles WebSocket messages from frames. See the module docs.
/// Compressed messages (permessage-deflate) are skipped and counted: SIP
/// servers do not negotiate it, and its shared window would need the whole
/// connection from its start.
#[derive(Debug, Default)]
pub(crate) struct WsReader {
    msg: Vec<u8>,
    in_message: bool,
    /// The message in progress is compressed: its frames are skipped.
    skipping: bool,
    compressed: u64,
}

impl WsReader {
    /// The message of the last [`WsStep::Message`].
    pub(crate) fn message(&self) -> &[u8] {
        &self.msg
    }

    /// Forgets a message in progress (after a gap).
    pub(crate) fn reset(&mut self) {
        self.msg.clear();
        self.in_message = false;
        self.skipping = false;
    }

    /// Compressed messages skipped.
    pub(crate) fn compressed(&self) -> u64 {
        self.compressed
    }

    /// Reads frames from `bytes` until a message is complete.
    pub(crate) fn next(&mut self, bytes: &mut OrderedBytes) -> WsStep {
        loop {
            let data = bytes.data();
            if data.is_empty() {
                return WsStep::NeedMore;
            }
            let f = match Frame::new_checked(data) {
                Ok(f) => f,
                Err(WireError::Truncated { .. }) => {
                    let too_long = header_len(data).is_ok_and(|h| {
                        h.payload_len > MAX_WS_MESSAGE as u64
                            || self.msg.len() as u64 + h.payload_len > MAX_WS_MESSAGE as u64
                    });
                    return if too_long {
                        WsStep::Lost
                    } else {
                        WsStep::NeedMore
                    };
                }
                Err(WireError::BadHeader { .. }) => return WsStep::Lost,
            };
            let (len, op, fin) = (f.frame_len(), f.opcode(), f.fin());
            if f.is_control() {
                bytes.consume(len);
                continue;
            }
            if op == opcode::CONTINUATION && !self.in_message {
                // The rest of a message whose start we did not see.
                bytes.discard(len);
                continue;
            }
            if op != opcode::CONTINUATION {
                self.msg.clear();
                self.skipping = f.compressed();
                if self.skipping {
                    self.compressed = self.compressed.saturating_add(1);
                }
            }
            self.in_message = !fin;
            if self.skipping {
                bytes.discard(len);
                continue;
            }
            f.unmask_into(&mut self.msg);
            bytes.consume(len);
            if fin {
                return WsStep::Message;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::websocket::Repr;

    #[test]
    fn upgrades() {
        let req = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\nSec-WebSocket-Protocol: chat, sip\r\n\r\n\x81";
        assert_eq!(
            upgrade(req),
            Upgrade::Yes {
                header_len: req.len() - 1,
                sip: true
            }
        );
        let resp = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n";
        assert_eq!(
            upgrade(resp),
            Upgrade::Yes {
                header_len: resp.len(),
                sip: false
            }
        );
        assert_eq!(upgrade(b"GET / HTTP/1.1\r\nUpgr"), Upgrade::NeedMore);
        assert_eq!(upgrade(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Upgrade::No);
        assert_eq!(upgrade(b"INVITE sip:a@b SIP/2.0\r\n"), Upgrade::No);
        assert!(looks_like_sip_over_websocket(req));
        assert!(!looks_like_sip_over_websocket(resp));
    }

    #[test]
    fn frames_carrying_sip_are_recognised_masked_or_not() {
        let sip = b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: 1\r\n\r\n";
        for mask in [None, Some([9, 8, 7, 6])] {
            let mut f = Vec::new();
            Repr {
                fin: true,
                opcode: opcode::TEXT,
                mask,
                payload_len: sip.len() as u64,
            }
            .append_with(&mut f, sip)
            .unwrap();
            assert!(looks_like_sip_over_websocket(&f));
            let mut junk = b"xyz".to_vec();
            junk.extend_from_slice(&f);
            assert_eq!(find_frame_start(&junk, usize::MAX), Some(3));
            assert_eq!(find_frame_start(&junk, 3), None);
        }
        assert!(!looks_like_sip_over_websocket(b"\x81\x05hello"));
    }
}
