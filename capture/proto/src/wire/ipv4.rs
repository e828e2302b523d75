//! IPv4 header (RFC 791).

use std::net::Ipv4Addr;

use super::{WireError, array, be16, byte, range, tail};

pub const MIN_HEADER_LEN: usize = 20;

pub mod protocol {
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    /// IPv4-in-IP.
    pub const IPIP: u8 = 4;
    /// IPv6-in-IP.
    pub const IPV6: u8 = 41;
}

/// An IPv4 packet whose buffer is trimmed to the total length, so Ethernet
/// padding and trailing FCS never reach the payload.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    buf: &'a [u8],
}

impl<'a> Packet<'a> {
    pub fn new_unchecked(buf: &'a [u8]) -> Self {
        Packet { buf }
    }

    pub fn new_checked(buf: &'a [u8]) -> Result<Self, WireError> {
        const L: &str = "ipv4";
        if buf.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated { layer: L });
        }
        if byte(buf, 0) >> 4 != 4 {
            return Err(WireError::BadHeader {
                layer: L,
                reason: "version is not 4",
            });
        }
        let hlen = usize::from(byte(buf, 0) & 0x0f) * 4;
        if hlen < MIN_HEADER_LEN {
            return Err(WireError::BadHeader {
                layer: L,
                reason: "IHL < 5",
            });
        }
        if hlen > buf.len() {
            return Err(WireError::Truncated { layer: L });
        }
        let mut total = usize::from(be16(buf, 2));
        // Captures taken before TCP segmentation offload show total length 0
        // for super-packets; the capture length is then the best we have.
        if total == 0 {
            total = buf.len();
        }
        if total < hlen {
            return Err(WireError::BadHeader {
                layer: L,
                reason: "total length < header length",
            });
        }
        let trimmed = buf.get(..total).ok_or(WireError::Truncated { layer: L })?;
        Ok(Packet { buf: trimmed })
    }

    pub fn header_len(&self) -> usize {
        usize::from(byte(self.buf, 0) & 0x0f) * 4
    }

    pub fn total_len(&self) -> u16 {
        be16(self.buf, 2)
    }

    pub fn ident(&self) -> u16 {
        be16(self.buf, 4)
    }

    pub fn dont_frag(&self) -> bool {
        be16(self.buf, 6) & 0x4000 != 0
    }

    pub fn more_frags(&self) -> bool {
        be16(self.buf, 6) & 0x2000 != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u32 {
        u32::from(be16(self.buf, 6) & 0x1fff) * 8
    }

    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    pub fn ttl(&self) -> u8 {
        byte(self.buf, 8)
    }

    pub fn protocol(&self) -> u8 {
        byte(self.buf, 9)
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(array::<4>(self.buf, 12))
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(array::<4>(self.buf, 16))
    }

    pub fn options(&self) -> &'a [u8] {
        range(self.buf, MIN_HEADER_LEN, self.header_len())
    }

    pub fn payload(&self) -> &'a [u8] {
        tail(self.buf, self.header_len())
    }
}
