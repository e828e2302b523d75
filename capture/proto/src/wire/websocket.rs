//! WebSocket frames (RFC 6455 section 5.2), as SIP over WebSocket (RFC 7118)
//! carries them over TCP or TLS.
//!
//! ```text
//! FIN RSV1-3 opcode(4) | MASK len(7) | [len 16 or 64 bits] | [mask key 32] | payload
//! ```
//!
//! Frames from a client are masked (XOR with the 4-byte key, cycling);
//! [`Frame::unmask_into`] undoes it.

use super::{Emit, WireError, byte, emit_target, put, put_byte, range};

const L: &str = "websocket";

pub mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// Where a frame's payload starts and how long it is, read from its first
/// bytes: `Truncated` until the whole header is there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderLen {
    pub header_len: usize,
    pub payload_len: u64,
}

/// Reads the lengths of the frame at the start of `b`; rejects RSV2/RSV3,
/// reserved opcodes, and control frames over 125 bytes or fragmented (RFC
/// 6455 section 5.5), which no WebSocket stack sends. RSV1 is allowed: it
/// marks a compressed message (permessage-deflate, RFC 7692).
pub fn header_len(b: &[u8]) -> Result<HeaderLen, WireError> {
    let (b0, b1) = match b {
        [b0, b1, ..] => (*b0, *b1),
        _ => return Err(WireError::Truncated { layer: L }),
    };
    let bad = |reason| WireError::BadHeader { layer: L, reason };
    if b0 & 0x30 != 0 {
        return Err(bad("reserved bits set"));
    }
    let op = b0 & 0x0f;
    if !matches!(op, 0x0..=0x2 | 0x8..=0xA) {
        return Err(bad("reserved opcode"));
    }
    let len7 = b1 & 0x7f;
    if op >= 0x8 && (len7 > 125 || b0 & 0x80 == 0) {
        return Err(bad("control frame fragmented or over 125 bytes"));
    }
    let (ext, payload_len) = match len7 {
        126 => (
            2,
            u64::from(u16::from_be_bytes(
                super::bytes_at(b, 2).ok_or(WireError::Truncated { layer: L })?,
            )),
        ),
        127 => (
            8,
            u64::from_be_bytes(super::bytes_at(b, 2).ok_or(WireError::Truncated { layer: L })?),
        ),
        n => (0, u64::from(n)),
    };
    let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
    let header_len = 2 + ext + mask;
    if b.len() < header_len {
        return Err(WireError::Truncated { layer: L });
    }
    Ok(HeaderLen {
        header_len,
        payload_len,
    })
}

/// One whole frame (header and payload).
#[derive(Clone, Copy, Debug)]
pub struct Frame<T> {
    buf: T,
    header_len: usize,
    end: usize,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// The frame at the start of `buf`; `Truncated` until all of it is
    /// there. Bytes after it are not part of it ([`Frame::frame_len`]).
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let h = header_len(buf.as_ref())?;
        let end = usize::try_from(h.payload_len)
            .ok()
            .and_then(|p| p.checked_add(h.header_len))
            .ok_or(WireError::BadHeader {
                layer: L,
                reason: "payload length beyond memory",
            })?;
        if buf.as_ref().len() < end {
            return Err(WireError::Truncated { layer: L });
        }
        Ok(Frame {
            buf,
            header_len: h.header_len,
            end,
        })
    }

    pub fn fin(&self) -> bool {
        byte(self.buf.as_ref(), 0) & 0x80 != 0
    }

    pub fn opcode(&self) -> u8 {
        byte(self.buf.as_ref(), 0) & 0x0f
    }

    /// RSV1: the message this frame starts is compressed
    /// (permessage-deflate).
    pub fn compressed(&self) -> bool {
        byte(self.buf.as_ref(), 0) & 0x40 != 0
    }

    pub fn is_control(&self) -> bool {
        self.opcode() >= 0x8
    }

    pub fn mask_key(&self) -> Option<[u8; 4]> {
        let b = self.buf.as_ref();
        (byte(b, 1) & 0x80 != 0)
            .then(|| super::bytes_at(b, self.header_len.saturating_sub(4)))
            .flatten()
    }

    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// Header and payload.
    pub fn frame_len(&self) -> usize {
        self.end
    }

    /// The payload as it is on the wire (still masked, if it was).
    pub fn raw_payload(&self) -> &[u8] {
        range(self.buf.as_ref(), self.header_len, self.end)
    }

    /// Appends the payload, unmasked, to `out`.
    pub fn unmask_into(&self, out: &mut Vec<u8>) {
        let p = self.raw_payload();
        match self.mask_key() {
            None => out.extend_from_slice(p),
            Some(k) => out.extend(p.iter().zip(k.iter().cycle()).map(|(b, m)| b ^ m)),
        }
    }
}

/// A frame header's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub fin: bool,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(f: &Frame<T>) -> Repr {
        Repr {
            fin: f.fin(),
            opcode: f.opcode(),
            mask: f.mask_key(),
            payload_len: (f.end - f.header_len) as u64,
        }
    }

    /// Appends the frame: header, then `payload` (its length must be
    /// `payload_len`) masked with `mask` if there is one.
    pub fn append_with(&self, out: &mut Vec<u8>, payload: &[u8]) -> Result<(), WireError> {
        if payload.len() as u64 != self.payload_len {
            return Err(WireError::BadHeader {
                layer: L,
                reason: "payload length differs from the header's",
            });
        }
        self.append(out)?;
        match self.mask {
            None => out.extend_from_slice(payload),
            Some(k) => out.extend(payload.iter().zip(k.iter().cycle()).map(|(b, m)| b ^ m)),
        }
        Ok(())
    }
}

impl Emit for Repr {
    fn buffer_len(&self) -> usize {
        let ext = match self.payload_len {
            0..=125 => 0,
            126..=0xffff => 2,
            _ => 8,
        };
        2 + ext + if self.mask.is_some() { 4 } else { 0 }
    }

    fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let n = self.buffer_len();
        let b = emit_target(buf, n, L)?;
        put_byte(b, 0, (u8::from(self.fin) << 7) | (self.opcode & 0x0f));
        let m = if self.mask.is_some() { 0x80 } else { 0 };
        let at = match self.payload_len {
            l @ 0..=125 => {
                put_byte(b, 1, m | l as u8);
                2
            }
            l @ 126..=0xffff => {
                put_byte(b, 1, m | 126);
                put(b, 2, (l as u16).to_be_bytes());
                4
            }
            l => {
                put_byte(b, 1, m | 127);
                put(b, 2, l.to_be_bytes());
                10
            }
        };
        if let Some(k) = self.mask {
            put(b, at, k);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_length_form_masked_and_not() {
        for len in [0usize, 5, 125, 126, 300, 65535, 70000] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let r = Repr {
                    fin: len % 2 == 0,
                    opcode: opcode::BINARY,
                    mask,
                    payload_len: len as u64,
                };
                let mut out = Vec::new();
                r.append_with(&mut out, &payload).unwrap();
                out.extend_from_slice(b"next");
                let f = Frame::new_checked(&out[..]).unwrap();
                assert_eq!(Repr::parse(&f), r);
                assert_eq!(f.frame_len(), out.len() - 4);
                let mut back = Vec::new();
                f.unmask_into(&mut back);
                assert_eq!(back, payload);
                // Every shorter prefix is "truncated", never an error.
                for cut in [1, r.buffer_len() - 1, out.len() - 5] {
                    if cut < out.len() - 4 {
                        assert_eq!(
                            Frame::new_checked(&out[..cut]).err(),
                            Some(WireError::Truncated { layer: L })
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn rejects_what_no_stack_sends() {
        assert!(header_len(&[0xA1, 0]).is_err()); // RSV2
        assert!(header_len(&[0xC1, 0]).is_ok()); // RSV1: compressed
        assert!(header_len(&[0x83, 0]).is_err()); // opcode 3
        assert!(header_len(&[0x09, 0]).is_err()); // fragmented ping
        assert!(header_len(&[0x89, 126, 0, 200]).is_err()); // long ping
        assert_eq!(
            header_len(&[0x81, 0x85, 1, 2, 3, 4]),
            Ok(HeaderLen {
                header_len: 6,
                payload_len: 5
            })
        );
    }
}
