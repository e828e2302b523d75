//! TCP header (RFC 9293).

use super::{WireError, be16, be32, byte, range, tail};

pub const MIN_HEADER_LEN: usize = 20;

pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
}

#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    buf: &'a [u8],
}

impl<'a> Packet<'a> {
    pub fn new_unchecked(buf: &'a [u8]) -> Self {
        Packet { buf }
    }

    pub fn new_checked(buf: &'a [u8]) -> Result<Self, WireError> {
        const L: &str = "tcp";
        if buf.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated { layer: L });
        }
        let hlen = usize::from(byte(buf, 12) >> 4) * 4;
        if hlen < MIN_HEADER_LEN {
            return Err(WireError::BadHeader {
                layer: L,
                reason: "data offset < 5",
            });
        }
        if hlen > buf.len() {
            return Err(WireError::Truncated { layer: L });
        }
        Ok(Packet { buf })
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buf, 0)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.buf, 2)
    }

    pub fn seq_number(&self) -> u32 {
        be32(self.buf, 4)
    }

    pub fn ack_number(&self) -> u32 {
        be32(self.buf, 8)
    }

    pub fn header_len(&self) -> usize {
        usize::from(byte(self.buf, 12) >> 4) * 4
    }

    /// The flag byte (CWR..FIN); NS lives in the data-offset byte and is
    /// deliberately left out.
    pub fn flags(&self) -> u8 {
        byte(self.buf, 13)
    }

    pub fn window(&self) -> u16 {
        be16(self.buf, 14)
    }

    pub fn options(&self) -> &'a [u8] {
        range(self.buf, MIN_HEADER_LEN, self.header_len())
    }

    pub fn payload(&self) -> &'a [u8] {
        tail(self.buf, self.header_len())
    }
}
