//! BSD loopback encapsulation (DLT_NULL / DLT_LOOP): a 4-byte address family.

use super::{WireError, array, tail};

pub const HEADER_LEN: usize = 4;

pub(crate) const AF_INET: u32 = 2;
/// AF_INET6 differs per OS: Linux 10, NetBSD/OpenBSD 24, FreeBSD 28, macOS 30.
pub(crate) const AF_INET6: [u32; 4] = [10, 24, 28, 30];

#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    buf: &'a [u8],
}

impl<'a> Packet<'a> {
    pub fn new_unchecked(buf: &'a [u8]) -> Self {
        Packet { buf }
    }

    pub fn new_checked(buf: &'a [u8]) -> Result<Self, WireError> {
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated { layer: "null" });
        }
        Ok(Packet { buf })
    }

    /// The address family. DLT_NULL stores it in the capturing host's byte
    /// order and DLT_LOOP in network order, and files travel between hosts, so
    /// both orders are tried: every real family value is < 256, which makes
    /// the wrong reading obviously wrong.
    pub fn family(&self) -> u32 {
        let raw: [u8; 4] = array(self.buf, 0);
        let le = u32::from_le_bytes(raw);
        if le < 0x100 {
            le
        } else {
            u32::from_be_bytes(raw)
        }
    }

    pub fn is_ipv4(&self) -> bool {
        self.family() == AF_INET
    }

    pub fn is_ipv6(&self) -> bool {
        AF_INET6.contains(&self.family())
    }

    pub fn payload(&self) -> &'a [u8] {
        tail(self.buf, HEADER_LEN)
    }
}
