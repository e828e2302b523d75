//! IPv6 header (RFC 8200) and the extension headers that can sit between it
//! and the transport header.

use std::net::Ipv6Addr;

use super::{
    Emit, WireError, array, be16, be32, byte, emit_target, put, put_byte, put16, put32, range, tail,
};

pub const HEADER_LEN: usize = 40;

pub mod next_header {
    pub const HOP_BY_HOP: u8 = 0;
    pub const IPIP: u8 = 4;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const IPV6: u8 = 41;
    pub const SCTP: u8 = 132;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const GRE: u8 = 47;
    pub const AH: u8 = 51;
    pub const NO_NEXT: u8 = 59;
    pub const DST_OPTS: u8 = 60;
}

const L: &str = "ipv6";

view! {
    /// An IPv6 packet. A checked view covers 40 + payload length bytes.
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Everything `new_checked` validates.
    pub fn check_len(&self) -> Result<(), WireError> {
        let buf = self.buf.as_ref();
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated { layer: L });
        }
        if byte(buf, 0) >> 4 != 6 {
            return Err(WireError::BadHeader {
                layer: L,
                reason: "version is not 6",
            });
        }
        if self.covered_len() > buf.len() {
            return Err(WireError::Truncated { layer: L });
        }
        Ok(())
    }

    /// 40 + payload length; 0 means a jumbogram or a pre-offload
    /// super-packet: take what was captured.
    fn covered_len(&self) -> usize {
        match usize::from(self.payload_len()) {
            0 => self.buf.as_ref().len(),
            plen => HEADER_LEN + plen,
        }
    }

    fn end(&self) -> usize {
        self.covered_len().min(self.buf.as_ref().len())
    }

    pub fn version(&self) -> u8 {
        byte(self.buf.as_ref(), 0) >> 4
    }

    pub fn traffic_class(&self) -> u8 {
        (be16(self.buf.as_ref(), 0) >> 4) as u8
    }

    pub fn flow_label(&self) -> u32 {
        be32(self.buf.as_ref(), 0) & 0x000f_ffff
    }

    pub fn payload_len(&self) -> u16 {
        be16(self.buf.as_ref(), 4)
    }

    pub fn next_header(&self) -> u8 {
        byte(self.buf.as_ref(), 6)
    }

    pub fn hop_limit(&self) -> u8 {
        byte(self.buf.as_ref(), 7)
    }

    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(array::<16>(self.buf.as_ref(), 8))
    }

    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(array::<16>(self.buf.as_ref(), 24))
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    pub fn payload(&self) -> &'a [u8] {
        range(self.buf.as_ref(), HEADER_LEN, self.end())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Version 6, traffic class and flow label (20 bits).
    pub fn set_version_class_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let v = (6 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        put32(self.buf.as_mut(), 0, v);
    }

    pub fn set_payload_len(&mut self, len: u16) {
        put16(self.buf.as_mut(), 4, len);
    }

    pub fn set_next_header(&mut self, nh: u8) {
        put_byte(self.buf.as_mut(), 6, nh);
    }

    pub fn set_hop_limit(&mut self, h: u8) {
        put_byte(self.buf.as_mut(), 7, h);
    }

    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        put(self.buf.as_mut(), 8, a.octets());
    }

    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        put(self.buf.as_mut(), 24, a.octets());
    }
}

/// The fields of the fixed IPv6 header (extension headers are payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub src_addr: Ipv6Addr,
    pub dst_addr: Ipv6Addr,
    pub next_header: u8,
    /// Bytes after the fixed header.
    pub payload_len: usize,
    pub hop_limit: u8,
    pub traffic_class: u8,
    pub flow_label: u32,
}

impl Repr {
    /// The fields of a checked view.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr, WireError> {
        p.check_len()?;
        Ok(Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            next_header: p.next_header(),
            payload_len: p.end().saturating_sub(HEADER_LEN),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
            flow_label: p.flow_label(),
        })
    }
}

impl Emit for Repr {
    fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Fails on a payload over 65,535 bytes (jumbograms are not built).
    fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let plen = u16::try_from(self.payload_len).map_err(|_| WireError::BadHeader {
            layer: L,
            reason: "payload length over 65535",
        })?;
        let mut p = Packet::new_unchecked(emit_target(buf, HEADER_LEN, L)?);
        p.set_version_class_flow(self.traffic_class, self.flow_label);
        p.set_payload_len(plen);
        p.set_next_header(self.next_header);
        p.set_hop_limit(self.hop_limit);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
        Ok(())
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

pub(crate) const FRAGMENT_HEADER_LEN: usize = 8;

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
