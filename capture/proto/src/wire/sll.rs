//! Linux "cooked" capture headers (`any` device): SLL (v1) and SLL2.

use super::{WireError, be16, be32, byte, tail};

pub(crate) const SLL_HEADER_LEN: usize = 16;
pub(crate) const SLL2_HEADER_LEN: usize = 20;

/// LINKTYPE_LINUX_SLL: pkttype(2) hatype(2) halen(2) addr(8) protocol(2).
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    buf: &'a [u8],
}

impl<'a> Packet<'a> {
    pub fn new_unchecked(buf: &'a [u8]) -> Self {
        Packet { buf }
    }

    pub fn new_checked(buf: &'a [u8]) -> Result<Self, WireError> {
        if buf.len() < SLL_HEADER_LEN {
            return Err(WireError::Truncated { layer: "sll" });
        }
        Ok(Packet { buf })
    }

    pub fn packet_type(&self) -> u16 {
        be16(self.buf, 0)
    }

    pub fn hatype(&self) -> u16 {
        be16(self.buf, 2)
    }

    /// EtherType of the payload (for Ethernet-like devices).
    pub fn protocol(&self) -> u16 {
        be16(self.buf, 14)
    }

    pub fn payload(&self) -> &'a [u8] {
        tail(self.buf, SLL_HEADER_LEN)
    }
}

/// LINKTYPE_LINUX_SLL2: protocol(2) reserved(2) ifindex(4) hatype(2)
/// pkttype(1) halen(1) addr(8).
#[derive(Clone, Copy, Debug)]
pub struct Packet2<'a> {
    buf: &'a [u8],
}

impl<'a> Packet2<'a> {
    pub fn new_unchecked(buf: &'a [u8]) -> Self {
        Packet2 { buf }
    }

    pub fn new_checked(buf: &'a [u8]) -> Result<Self, WireError> {
        if buf.len() < SLL2_HEADER_LEN {
            return Err(WireError::Truncated { layer: "sll2" });
        }
        Ok(Packet2 { buf })
    }

    pub fn protocol(&self) -> u16 {
        be16(self.buf, 0)
    }

    pub fn ifindex(&self) -> u32 {
        be32(self.buf, 4)
    }

    pub fn hatype(&self) -> u16 {
        be16(self.buf, 8)
    }

    pub fn packet_type(&self) -> u8 {
        byte(self.buf, 10)
    }

    pub fn payload(&self) -> &'a [u8] {
        tail(self.buf, SLL2_HEADER_LEN)
    }
}
