//! Ethernet II and 802.1Q / 802.1ad VLAN tags.

use super::{WireError, array, be16, tail};

pub const HEADER_LEN: usize = 14;
pub const VLAN_TAG_LEN: usize = 4;

/// EtherType values voxtap acts on.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const IPV6: u16 = 0x86dd;
    pub const QINQ: u16 = 0x88a8;
    /// Pre-802.1ad QinQ tag still emitted by some switches.
    pub const QINQ_OLD: u16 = 0x9100;

    /// True for every tag type that is followed by a 2-byte TCI and another
    /// EtherType.
    pub fn is_vlan(t: u16) -> bool {
        matches!(t, VLAN | QINQ | QINQ_OLD)
    }
}

/// An Ethernet II frame (no FCS handling: trailing FCS bytes are trimmed later
/// by the IP length fields, like any padding).
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
            return Err(WireError::Truncated { layer: "ethernet" });
        }
        Ok(Packet { buf })
    }

    pub fn dst_addr(&self) -> [u8; 6] {
        array(self.buf, 0)
    }

    pub fn src_addr(&self) -> [u8; 6] {
        array(self.buf, 6)
    }

    pub fn ethertype(&self) -> u16 {
        be16(self.buf, 12)
    }

    pub fn payload(&self) -> &'a [u8] {
        tail(self.buf, HEADER_LEN)
    }
}

/// One 802.1Q/802.1ad tag as it appears after the tag's EtherType: TCI then
/// the EtherType of what follows.
#[derive(Clone, Copy, Debug)]
pub struct VlanTag<'a> {
    buf: &'a [u8],
}

impl<'a> VlanTag<'a> {
    pub fn new_unchecked(buf: &'a [u8]) -> Self {
        VlanTag { buf }
    }

    pub fn new_checked(buf: &'a [u8]) -> Result<Self, WireError> {
        if buf.len() < VLAN_TAG_LEN {
            return Err(WireError::Truncated { layer: "vlan" });
        }
        Ok(VlanTag { buf })
    }

    pub fn tci(&self) -> u16 {
        be16(self.buf, 0)
    }

    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    pub fn ethertype(&self) -> u16 {
        be16(self.buf, 2)
    }

    pub fn payload(&self) -> &'a [u8] {
        tail(self.buf, VLAN_TAG_LEN)
    }
}
