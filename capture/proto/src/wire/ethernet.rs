//! Ethernet II and 802.1Q / 802.1ad VLAN tags.

use super::{Emit, WireError, array, be16, emit_target, put, put16, tail};

pub const HEADER_LEN: usize = 14;
pub const VLAN_TAG_LEN: usize = 4;

/// EtherType values voxtap acts on (the shared list in `voxtap_common`,
/// which the XDP program follows too).
pub mod ethertype {
    use voxtap_common::proto as p;

    pub const IPV4: u16 = p::ETH_P_IPV4;
    pub const ARP: u16 = p::ETH_P_ARP;
    pub const VLAN: u16 = p::ETH_P_VLAN;
    pub const IPV6: u16 = p::ETH_P_IPV6;
    pub const QINQ: u16 = p::ETH_P_QINQ;
    /// Pre-802.1ad QinQ tag still emitted by some switches.
    pub const QINQ_OLD: u16 = p::ETH_P_QINQ_OLD;
    pub const MPLS: u16 = p::ETH_P_MPLS_UC;
    pub const MPLS_MULTICAST: u16 = p::ETH_P_MPLS_MC;
    pub const PPPOE_SESSION: u16 = p::ETH_P_PPPOE_SESSION;
    /// Transparent Ethernet bridging (an Ethernet frame inside GRE or Geneve).
    pub const TEB: u16 = p::ETH_P_TEB;
    pub const ERSPAN_2: u16 = p::ETH_P_ERSPAN_2;
    pub const ERSPAN_3: u16 = p::ETH_P_ERSPAN_3;

    /// True for every tag type that is followed by a 2-byte TCI and another
    /// EtherType.
    pub fn is_vlan(t: u16) -> bool {
        p::is_vlan(t)
    }
}

view! {
    /// An Ethernet II frame (no FCS handling: trailing FCS bytes are trimmed later
    /// by the IP length fields, like any padding).
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buf.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated { layer: "ethernet" });
        }
        Ok(())
    }

    pub fn dst_addr(&self) -> [u8; 6] {
        array(self.buf.as_ref(), 0)
    }

    pub fn src_addr(&self) -> [u8; 6] {
        array(self.buf.as_ref(), 6)
    }

    pub fn ethertype(&self) -> u16 {
        be16(self.buf.as_ref(), 12)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        tail(self.buf.as_ref(), HEADER_LEN)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_dst_addr(&mut self, a: [u8; 6]) {
        put(self.buf.as_mut(), 0, a);
    }

    pub fn set_src_addr(&mut self, a: [u8; 6]) {
        put(self.buf.as_mut(), 6, a);
    }

    pub fn set_ethertype(&mut self, t: u16) {
        put16(self.buf.as_mut(), 12, t);
    }
}

/// The fields of an Ethernet II header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub dst_addr: [u8; 6],
    pub src_addr: [u8; 6],
    /// What follows: IPv4, IPv6, or a VLAN tag ([`VlanRepr`]).
    pub ethertype: u16,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr, WireError> {
        if p.buf.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated { layer: "ethernet" });
        }
        Ok(Repr {
            dst_addr: p.dst_addr(),
            src_addr: p.src_addr(),
            ethertype: p.ethertype(),
        })
    }
}

impl Emit for Repr {
    fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let mut p = Packet::new_unchecked(emit_target(buf, HEADER_LEN, "ethernet")?);
        p.set_dst_addr(self.dst_addr);
        p.set_src_addr(self.src_addr);
        p.set_ethertype(self.ethertype);
        Ok(())
    }
}

view! {
    /// One 802.1Q/802.1ad tag as it appears after the tag's EtherType: TCI then
    /// the EtherType of what follows.
    VlanTag
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buf.as_ref().len() < VLAN_TAG_LEN {
            return Err(WireError::Truncated { layer: "vlan" });
        }
        Ok(())
    }

    pub fn tci(&self) -> u16 {
        be16(self.buf.as_ref(), 0)
    }

    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator (the bit between PCP and VID).
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    pub fn ethertype(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> VlanTag<&'a T> {
    pub fn payload(&self) -> &'a [u8] {
        tail(self.buf.as_ref(), VLAN_TAG_LEN)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanTag<T> {
    pub fn set_tci(&mut self, tci: u16) {
        put16(self.buf.as_mut(), 0, tci);
    }

    pub fn set_ethertype(&mut self, t: u16) {
        put16(self.buf.as_mut(), 2, t);
    }
}

/// The fields of one VLAN tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VlanRepr {
    /// Priority code point, 0..=7.
    pub pcp: u8,
    pub dei: bool,
    /// VLAN id, 0..=4095.
    pub vid: u16,
    /// What follows the tag.
    pub ethertype: u16,
}

impl VlanRepr {
    pub fn parse<T: AsRef<[u8]>>(t: &VlanTag<T>) -> Result<VlanRepr, WireError> {
        if t.buf.as_ref().len() < VLAN_TAG_LEN {
            return Err(WireError::Truncated { layer: "vlan" });
        }
        Ok(VlanRepr {
            pcp: t.pcp(),
            dei: t.dei(),
            vid: t.vid(),
            ethertype: t.ethertype(),
        })
    }

    fn tci(&self) -> u16 {
        (u16::from(self.pcp & 7) << 13) | (u16::from(self.dei) << 12) | (self.vid & 0x0fff)
    }
}

impl Emit for VlanRepr {
    fn buffer_len(&self) -> usize {
        VLAN_TAG_LEN
    }

    fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let mut t = VlanTag::new_unchecked(emit_target(buf, VLAN_TAG_LEN, "vlan")?);
        t.set_tci(self.tci());
        t.set_ethertype(self.ethertype);
        Ok(())
    }
}
