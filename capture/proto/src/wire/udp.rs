//! UDP header (RFC 768).

use super::{WireError, be16, range};

pub const HEADER_LEN: usize = 8;

/// A UDP datagram trimmed to its length field.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    buf: &'a [u8],
}

impl<'a> Packet<'a> {
    pub fn new_unchecked(buf: &'a [u8]) -> Self {
        Packet { buf }
    }

    pub fn new_checked(buf: &'a [u8]) -> Result<Self, WireError> {
        const L: &str = "udp";
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated { layer: L });
        }
        let len = usize::from(be16(buf, 4));
        // Length 0 is legal only for IPv6 jumbograms (RFC 2675); the IP layer
        // already bounded the buffer, so take all of it.
        let len = if len == 0 { buf.len() } else { len };
        if len < HEADER_LEN {
            return Err(WireError::BadHeader {
                layer: L,
                reason: "length < 8",
            });
        }
        let trimmed = buf.get(..len).ok_or(WireError::Truncated { layer: L })?;
        Ok(Packet { buf: trimmed })
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buf, 0)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.buf, 2)
    }

    pub fn len(&self) -> u16 {
        be16(self.buf, 4)
    }

    pub fn is_empty(&self) -> bool {
        self.buf.len() <= HEADER_LEN
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buf, 6)
    }

    pub fn payload(&self) -> &'a [u8] {
        range(self.buf, HEADER_LEN, self.buf.len())
    }
}
