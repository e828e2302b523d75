//! IPv4 header (RFC 791).

use std::net::Ipv4Addr;

use super::{
    Emit, WireError, array, be16, byte, checksum, emit_target, put, put_byte, put16, range,
    range_mut,
};

pub(crate) const MIN_HEADER_LEN: usize = 20;
/// IHL is 4 bits of 32-bit words.
pub(crate) const MAX_HEADER_LEN: usize = 60;

pub mod protocol {
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const SCTP: u8 = 132;
    /// IPv4-in-IP.
    pub const IPIP: u8 = 4;
    /// IPv6-in-IP.
    pub const IPV6: u8 = 41;
    pub const GRE: u8 = 47;
}

const L: &str = "ipv4";

view! {
    /// An IPv4 packet. A checked view covers the bytes up to the total length,
    /// so Ethernet padding and trailing FCS never reach the payload.
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Everything `new_checked` validates.
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        let buf = self.buf.as_ref();
        if buf.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated { layer: L });
        }
        if byte(buf, 0) >> 4 != 4 {
            return Err(WireError::BadHeader {
                layer: L,
                reason: "version is not 4",
            });
        }
        let hlen = self.header_len();
        if hlen < MIN_HEADER_LEN {
            return Err(WireError::BadHeader {
                layer: L,
                reason: "IHL < 5",
            });
        }
        if hlen > buf.len() {
            return Err(WireError::Truncated { layer: L });
        }
        let total = self.covered_len();
        if total < hlen {
            return Err(WireError::BadHeader {
                layer: L,
                reason: "total length < header length",
            });
        }
        if total > buf.len() {
            return Err(WireError::Truncated { layer: L });
        }
        Ok(())
    }

    /// The bytes this packet spans: the total length, except that captures
    /// taken before TCP segmentation offload show total length 0 for
    /// super-packets; the capture length is then the best we have.
    fn covered_len(&self) -> usize {
        match usize::from(self.total_len()) {
            0 => self.buf.as_ref().len(),
            t => t,
        }
    }

    /// `covered_len`, never past the buffer.
    #[inline]
    fn end(&self) -> usize {
        self.covered_len().min(self.buf.as_ref().len())
    }

    pub fn version(&self) -> u8 {
        byte(self.buf.as_ref(), 0) >> 4
    }

    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(byte(self.buf.as_ref(), 0) & 0x0f) * 4
    }

    /// DSCP and ECN.
    pub fn tos(&self) -> u8 {
        byte(self.buf.as_ref(), 1)
    }

    pub fn total_len(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }

    pub fn ident(&self) -> u16 {
        be16(self.buf.as_ref(), 4)
    }

    pub fn dont_frag(&self) -> bool {
        be16(self.buf.as_ref(), 6) & 0x4000 != 0
    }

    pub fn more_frags(&self) -> bool {
        be16(self.buf.as_ref(), 6) & 0x2000 != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u32 {
        u32::from(be16(self.buf.as_ref(), 6) & 0x1fff) * 8
    }

    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    pub fn ttl(&self) -> u8 {
        byte(self.buf.as_ref(), 8)
    }

    pub fn protocol(&self) -> u8 {
        byte(self.buf.as_ref(), 9)
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), 10)
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(array::<4>(self.buf.as_ref(), 12))
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(array::<4>(self.buf.as_ref(), 16))
    }

    /// The header checksum is right.
    pub fn verify_checksum(&self) -> bool {
        let h = range(self.buf.as_ref(), 0, self.header_len());
        checksum::verifies(&[checksum::data(h)])
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    pub fn options(&self) -> &'a [u8] {
        range(self.buf.as_ref(), MIN_HEADER_LEN, self.header_len())
    }

    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        range(self.buf.as_ref(), self.header_len(), self.end())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Version 4 and the header length in bytes (a multiple of 4, 20..=60).
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        let ihl = (header_len / 4).min(15) as u8;
        put_byte(self.buf.as_mut(), 0, 0x40 | ihl);
    }

    pub fn set_tos(&mut self, tos: u8) {
        put_byte(self.buf.as_mut(), 1, tos);
    }

    pub fn set_total_len(&mut self, len: u16) {
        put16(self.buf.as_mut(), 2, len);
    }

    pub fn set_ident(&mut self, id: u16) {
        put16(self.buf.as_mut(), 4, id);
    }

    /// DF, MF and the fragment offset in bytes (a multiple of 8).
    pub fn set_frag(&mut self, dont_frag: bool, more_frags: bool, offset: u32) {
        let v = (u16::from(dont_frag) << 14)
            | (u16::from(more_frags) << 13)
            | ((offset / 8) as u16 & 0x1fff);
        put16(self.buf.as_mut(), 6, v);
    }

    pub fn set_ttl(&mut self, ttl: u8) {
        put_byte(self.buf.as_mut(), 8, ttl);
    }

    pub fn set_protocol(&mut self, p: u8) {
        put_byte(self.buf.as_mut(), 9, p);
    }

    pub fn set_checksum(&mut self, c: u16) {
        put16(self.buf.as_mut(), 10, c);
    }

    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        put(self.buf.as_mut(), 12, a.octets());
    }

    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        put(self.buf.as_mut(), 16, a.octets());
    }

    pub fn options_mut(&mut self) -> &mut [u8] {
        let hlen = self.header_len();
        range_mut(self.buf.as_mut(), MIN_HEADER_LEN, hlen)
    }

    /// Computes the header checksum over the header as it now is.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let h = range(self.buf.as_ref(), 0, self.header_len());
        let c = checksum::finish(&[checksum::data(h)]);
        self.set_checksum(c);
    }
}

/// The fields of an IPv4 header. The checksum is not one: emit computes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr<'a> {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: u8,
    /// Bytes after the header (total length minus header length).
    pub payload_len: usize,
    pub ttl: u8,
    /// DSCP and ECN.
    pub tos: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub more_frags: bool,
    /// Fragment offset in bytes (a multiple of 8).
    pub frag_offset: u32,
    /// Header options, a multiple of 4 bytes, at most 40.
    pub options: &'a [u8],
}

impl<'a> Repr<'a> {
    /// The fields of a checked view.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &Packet<&'a T>) -> Result<Repr<'a>, WireError> {
        p.check_len()?;
        Ok(Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            protocol: p.protocol(),
            payload_len: p.end().saturating_sub(p.header_len()),
            ttl: p.ttl(),
            tos: p.tos(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
            more_frags: p.more_frags(),
            frag_offset: p.frag_offset(),
            options: p.options(),
        })
    }
}

impl Emit for Repr<'_> {
    fn buffer_len(&self) -> usize {
        MIN_HEADER_LEN + self.options.len()
    }

    /// Fails on options that IHL cannot express and on a total length over
    /// 65,535.
    fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let hlen = self.buffer_len();
        if !hlen.is_multiple_of(4) || hlen > MAX_HEADER_LEN {
            return Err(WireError::BadHeader {
                layer: L,
                reason: "options are not a multiple of 4 bytes up to 40",
            });
        }
        let total = u16::try_from(hlen + self.payload_len).map_err(|_| WireError::BadHeader {
            layer: L,
            reason: "total length over 65535",
        })?;
        let mut p = Packet::new_unchecked(emit_target(buf, hlen, L)?);
        p.set_version_and_header_len(hlen);
        p.set_tos(self.tos);
        p.set_total_len(total);
        p.set_ident(self.ident);
        p.set_frag(self.dont_frag, self.more_frags, self.frag_offset);
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
        p.options_mut().copy_from_slice(self.options);
        p.fill_checksum();
        Ok(())
    }
}
