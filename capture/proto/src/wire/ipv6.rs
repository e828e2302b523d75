//! IPv6 header (RFC 8200) and the extension headers that can sit between it
//! and the transport header.

use std::net::Ipv6Addr;

use super::{WireError, array, be16, be32, byte, tail};

pub const HEADER_LEN: usize = 40;

pub mod next_header {
    pub const HOP_BY_HOP: u8 = 0;
    pub const IPIP: u8 = 4;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const IPV6: u8 = 41;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const AH: u8 = 51;
    pub const NO_NEXT: u8 = 59;
    pub const DST_OPTS: u8 = 60;
}

/// An IPv6 packet trimmed to 40 + payload length.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    buf: &'a [u8],
}

impl<'a> Packet<'a> {
    pub fn new_unchecked(buf: &'a [u8]) -> Self {
        Packet { buf }
    }

    pub fn new_checked(buf: &'a [u8]) -> Result<Self, WireError> {
        const L: &str = "ipv6";
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated { layer: L });
        }
        if byte(buf, 0) >> 4 != 6 {
            return Err(WireError::BadHeader {
                layer: L,
                reason: "version is not 6",
            });
        }
        let plen = usize::from(be16(buf, 4));
        // 0 means a jumbogram or a pre-offload super-packet: take what was
        // captured.
        let total = if plen == 0 {
            buf.len()
        } else {
            HEADER_LEN + plen
        };
        let trimmed = buf.get(..total).ok_or(WireError::Truncated { layer: L })?;
        Ok(Packet { buf: trimmed })
    }

    pub fn payload_len(&self) -> u16 {
        be16(self.buf, 4)
    }

    pub fn next_header(&self) -> u8 {
        byte(self.buf, 6)
    }

    pub fn hop_limit(&self) -> u8 {
        byte(self.buf, 7)
    }

    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(array::<16>(self.buf, 8))
    }

    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(array::<16>(self.buf, 24))
    }

    pub fn payload(&self) -> &'a [u8] {
        tail(self.buf, HEADER_LEN)
    }
}

/// Hop-by-hop, routing or destination options header: next header, length in
/// 8-octet units not counting the first 8. Also reads AH (RFC 4302), whose
/// length is in 4-octet units minus 2, via [`ExtHeader::new_checked_ah`].
#[derive(Clone, Copy, Debug)]
pub struct ExtHeader<'a> {
    buf: &'a [u8],
    len: usize,
}

impl<'a> ExtHeader<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, WireError> {
        let len = (usize::from(byte(buf, 1)) + 1) * 8;
        Self::with_len(buf, len, "ipv6-ext")
    }

    pub fn new_checked_ah(buf: &'a [u8]) -> Result<Self, WireError> {
        let len = (usize::from(byte(buf, 1)) + 2) * 4;
        Self::with_len(buf, len, "ipv6-ah")
    }

    fn with_len(buf: &'a [u8], len: usize, layer: &'static str) -> Result<Self, WireError> {
        if buf.len() < 8 || buf.len() < len {
            return Err(WireError::Truncated { layer });
        }
        Ok(ExtHeader { buf, len })
    }

    pub fn next_header(&self) -> u8 {
        byte(self.buf, 0)
    }

    pub fn header_len(&self) -> usize {
        self.len
    }

    pub fn payload(&self) -> &'a [u8] {
        tail(self.buf, self.len)
    }
}

pub const FRAGMENT_HEADER_LEN: usize = 8;

/// IPv6 fragment header.
#[derive(Clone, Copy, Debug)]
pub struct FragmentHeader<'a> {
    buf: &'a [u8],
}

impl<'a> FragmentHeader<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, WireError> {
        if buf.len() < FRAGMENT_HEADER_LEN {
            return Err(WireError::Truncated { layer: "ipv6-frag" });
        }
        Ok(FragmentHeader { buf })
    }

    pub fn next_header(&self) -> u8 {
        byte(self.buf, 0)
    }

    /// Offset of this fragment's data in bytes.
    pub fn frag_offset(&self) -> u32 {
        u32::from(be16(self.buf, 2) & 0xfff8)
    }

    pub fn more_frags(&self) -> bool {
        be16(self.buf, 2) & 1 != 0
    }

    pub fn ident(&self) -> u32 {
        be32(self.buf, 4)
    }

    pub fn payload(&self) -> &'a [u8] {
        tail(self.buf, FRAGMENT_HEADER_LEN)
    }
}
