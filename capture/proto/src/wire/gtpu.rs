//! GTP-U version 1 (3GPP TS 29.281) over UDP: the mandatory 8-byte header,
//! the optional sequence/N-PDU/next-extension word, extension headers, then
//! the user's IP packet (in a G-PDU).

use super::{Emit, WireError, be16, be32, byte, emit_target, put_byte, put16, put32, range};

pub const HEADER_LEN: usize = 8;
/// Sequence number, N-PDU number and next extension header type.
pub const OPTIONAL_LEN: usize = 4;
/// Extension headers followed before the header is called malformed.
pub const MAX_EXTENSIONS: usize = 8;
/// Message type of a G-PDU (user data).
pub const MSG_GPDU: u8 = 0xff;

pub mod flags {
    /// Protocol type 1: GTP (not GTP').
    pub const PT: u8 = 0x10;
    pub const EXTENSION: u8 = 0x04;
    pub const SEQUENCE: u8 = 0x02;
    pub const NPDU: u8 = 0x01;
}

const L: &str = "gtpu";

view! {
    /// A GTP-U packet. A checked view covers the bytes its length field says.
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks version 1 and PT 1, the length, and the chain of extension
    /// headers (at most [`MAX_EXTENSIONS`], each a non-zero number of words,
    /// all inside the length).
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buf.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated { layer: L });
        }
        if self.version() != 1 || self.flags() & flags::PT == 0 {
            return Err(WireError::BadHeader {
                layer: L,
                reason: "not GTP version 1",
            });
        }
        if HEADER_LEN + usize::from(self.length()) > len {
            return Err(WireError::Truncated { layer: L });
        }
        self.walk_extensions().map(|_| ())
    }

    /// Where the header (with its extensions) ends.
    fn walk_extensions(&self) -> Result<usize, WireError> {
        if !self.has_optional() {
            return Ok(HEADER_LEN);
        }
        let end = self.end();
        let mut at = HEADER_LEN + OPTIONAL_LEN;
        if at > end {
            return Err(WireError::Truncated { layer: L });
        }
        let mut next = self.next_extension();
        for _ in 0..MAX_EXTENSIONS {
            if next == 0 {
                return Ok(at);
            }
            let words = usize::from(byte(self.buf.as_ref(), at));
            if words == 0 {
                return Err(WireError::BadHeader {
                    layer: L,
                    reason: "extension header of length 0",
                });
            }
            at += words * 4;
            if at > end {
                return Err(WireError::Truncated { layer: L });
            }
            next = byte(self.buf.as_ref(), at - 1);
        }
        if next == 0 {
            return Ok(at);
        }
        Err(WireError::BadHeader {
            layer: L,
            reason: "too many extension headers",
        })
    }

    pub fn version(&self) -> u8 {
        byte(self.buf.as_ref(), 0) >> 5
    }

    /// PT, E, S and PN.
    pub fn flags(&self) -> u8 {
        byte(self.buf.as_ref(), 0) & 0x1f
    }

    fn has_optional(&self) -> bool {
        self.flags() & (flags::EXTENSION | flags::SEQUENCE | flags::NPDU) != 0
    }

    pub fn message_type(&self) -> u8 {
        byte(self.buf.as_ref(), 1)
    }

    /// Bytes after the mandatory header.
    pub fn length(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }

    fn end(&self) -> usize {
        (HEADER_LEN + usize::from(self.length())).min(self.buf.as_ref().len())
    }

    pub fn teid(&self) -> u32 {
        be32(self.buf.as_ref(), 4)
    }

    pub fn sequence(&self) -> Option<u16> {
        (self.flags() & flags::SEQUENCE != 0).then(|| be16(self.buf.as_ref(), 8))
    }

    pub fn npdu(&self) -> Option<u8> {
        (self.flags() & flags::NPDU != 0).then(|| byte(self.buf.as_ref(), 10))
    }

    /// Type of the first extension header (0: none).
    pub fn next_extension(&self) -> u8 {
        if self.flags() & flags::EXTENSION == 0 {
            return 0;
        }
        byte(self.buf.as_ref(), 11)
    }

    pub fn header_len(&self) -> usize {
        self.walk_extensions().unwrap_or_else(|_| self.end())
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The extension headers, as bytes.
    pub fn extensions(&self) -> &'a [u8] {
        if !self.has_optional() {
            return &[];
        }
        range(
            self.buf.as_ref(),
            HEADER_LEN + OPTIONAL_LEN,
            self.header_len(),
        )
    }

    /// The T-PDU (an IP packet, in a G-PDU).
    pub fn payload(&self) -> &'a [u8] {
        range(self.buf.as_ref(), self.header_len(), self.end())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Version 1, PT 1 and the E, S, PN bits.
    pub fn set_flags(&mut self, f: u8) {
        put_byte(self.buf.as_mut(), 0, 0x20 | flags::PT | (f & 0x07));
    }

    pub fn set_message_type(&mut self, t: u8) {
        put_byte(self.buf.as_mut(), 1, t);
    }

    pub fn set_length(&mut self, len: u16) {
        put16(self.buf.as_mut(), 2, len);
    }

    pub fn set_teid(&mut self, teid: u32) {
        put32(self.buf.as_mut(), 4, teid);
    }
}

/// The fields of a GTP-U header. Extension headers are kept as bytes: each
/// is a length in 4-byte words, its content, and the next one's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr<'a> {
    pub message_type: u8,
    pub teid: u32,
    pub sequence: Option<u16>,
    pub npdu: Option<u8>,
    /// Type of the first extension header (0: none; then `extensions` is
    /// empty).
    pub next_extension: u8,
    pub extensions: &'a [u8],
    /// Bytes after the header and its extensions.
    pub payload_len: usize,
}

impl<'a> Repr<'a> {
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &Packet<&'a T>) -> Result<Repr<'a>, WireError> {
        p.check_len()?;
        Ok(Repr {
            message_type: p.message_type(),
            teid: p.teid(),
            sequence: p.sequence(),
            npdu: p.npdu(),
            next_extension: p.next_extension(),
            extensions: p.extensions(),
            payload_len: p.end().saturating_sub(p.header_len()),
        })
    }

    fn flag_bits(&self) -> u8 {
        let mut f = 0;
        if self.next_extension != 0 {
            f |= flags::EXTENSION;
        }
        if self.sequence.is_some() {
            f |= flags::SEQUENCE;
        }
        if self.npdu.is_some() {
            f |= flags::NPDU;
        }
        f
    }
}

impl Emit for Repr<'_> {
    fn buffer_len(&self) -> usize {
        if self.flag_bits() == 0 {
            HEADER_LEN
        } else {
            HEADER_LEN + OPTIONAL_LEN + self.extensions.len()
        }
    }

    fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let hlen = self.buffer_len();
        let length = u16::try_from(hlen - HEADER_LEN + self.payload_len).map_err(|_| {
            WireError::BadHeader {
                layer: L,
                reason: "length over 65535",
            }
        })?;
        let b = emit_target(buf, hlen, L)?;
        let mut p = Packet::new_unchecked(b);
        p.set_flags(self.flag_bits());
        p.set_message_type(self.message_type);
        p.set_length(length);
        p.set_teid(self.teid);
        if hlen > HEADER_LEN {
            let b = p.buf;
            put16(b, 8, self.sequence.unwrap_or(0));
            put_byte(b, 10, self.npdu.unwrap_or(0));
            put_byte(b, 11, self.next_extension);
            if let Some(e) = b.get_mut(HEADER_LEN + OPTIONAL_LEN..hlen) {
                e.copy_from_slice(self.extensions);
            }
        }
        Ok(())
    }
}
