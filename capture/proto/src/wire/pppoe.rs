//! PPPoE session stage (RFC 2516, EtherType 0x8864) and the PPP protocol
//! field after it.

use super::{Emit, WireError, be16, byte, emit_target, put_byte, put16, range};

pub const HEADER_LEN: usize = 6;
/// The PPP protocol field (uncompressed).
pub const PPP_PROTOCOL_LEN: usize = 2;
/// Version 1, type 1.
pub const VER_TYPE: u8 = 0x11;
/// Code of session data.
pub const CODE_SESSION: u8 = 0x00;

const L: &str = "pppoe";

view! {
    /// A PPPoE session packet. A checked view covers the bytes its length
    /// field says (Ethernet padding never reaches the payload).
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks version and type 1, code 0 (session data) and the length.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buf.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated { layer: L });
        }
        if self.ver_type() != VER_TYPE || self.code() != CODE_SESSION {
            return Err(WireError::BadHeader {
                layer: L,
                reason: "not a version 1 session data packet",
            });
        }
        if HEADER_LEN + usize::from(self.length()) > len {
            return Err(WireError::Truncated { layer: L });
        }
        Ok(())
    }

    pub fn ver_type(&self) -> u8 {
        byte(self.buf.as_ref(), 0)
    }

    pub fn code(&self) -> u8 {
        byte(self.buf.as_ref(), 1)
    }

    pub fn session_id(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }

    /// Bytes after the header: PPP protocol field and data.
    pub fn length(&self) -> u16 {
        be16(self.buf.as_ref(), 4)
    }

    fn end(&self) -> usize {
        (HEADER_LEN + usize::from(self.length())).min(self.buf.as_ref().len())
    }

    /// The field's length: 1 when compressed (RFC 1661 PFC: an odd first
    /// byte), else 2.
    fn protocol_len(&self) -> usize {
        if byte(self.buf.as_ref(), HEADER_LEN) & 1 == 1 {
            1
        } else {
            PPP_PROTOCOL_LEN
        }
    }

    /// The PPP protocol of the payload (0x0021 IPv4, 0x0057 IPv6).
    pub fn protocol(&self) -> u16 {
        if self.protocol_len() == 1 {
            u16::from(byte(self.buf.as_ref(), HEADER_LEN))
        } else {
            be16(self.buf.as_ref(), HEADER_LEN)
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// What PPP carries, after its protocol field.
    pub fn payload(&self) -> &'a [u8] {
        range(
            self.buf.as_ref(),
            HEADER_LEN + self.protocol_len(),
            self.end(),
        )
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_session_id(&mut self, id: u16) {
        put16(self.buf.as_mut(), 2, id);
    }

    pub fn set_length(&mut self, len: u16) {
        put16(self.buf.as_mut(), 4, len);
    }
}

/// A PPPoE session header with an uncompressed PPP protocol field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub session_id: u16,
    pub protocol: u16,
    /// Bytes after the PPP protocol field.
    pub payload_len: usize,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr, WireError> {
        p.check_len()?;
        Ok(Repr {
            session_id: p.session_id(),
            protocol: p.protocol(),
            payload_len: p.end().saturating_sub(HEADER_LEN + p.protocol_len()),
        })
    }
}

impl Emit for Repr {
    fn buffer_len(&self) -> usize {
        HEADER_LEN + PPP_PROTOCOL_LEN
    }

    fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let len = u16::try_from(PPP_PROTOCOL_LEN + self.payload_len).map_err(|_| {
            WireError::BadHeader {
                layer: L,
                reason: "length over 65535",
            }
        })?;
        let b = emit_target(buf, self.buffer_len(), L)?;
        put_byte(b, 0, VER_TYPE);
        put_byte(b, 1, CODE_SESSION);
        let mut p = Packet::new_unchecked(b);
        p.set_session_id(self.session_id);
        p.set_length(len);
        put16(p.buf, HEADER_LEN, self.protocol);
        Ok(())
    }
}
