//! UDP header (RFC 768).

use std::net::IpAddr;

use super::{Emit, WireError, be16, checksum, emit_target, ipv4, put16, range};

pub const HEADER_LEN: usize = 8;

const L: &str = "udp";

view! {
    /// A UDP datagram. A checked view covers the bytes its length field says.
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Everything `new_checked` validates.
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        let buf = self.buf.as_ref();
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated { layer: L });
        }
        let len = self.covered_len();
        if len < HEADER_LEN {
            return Err(WireError::BadHeader {
                layer: L,
                reason: "length < 8",
            });
        }
        if len > buf.len() {
            return Err(WireError::Truncated { layer: L });
        }
        Ok(())
    }

    /// The length field; 0 is legal only for IPv6 jumbograms (RFC 2675),
    /// where the IP layer already bounded the buffer, so take all of it.
    fn covered_len(&self) -> usize {
        match usize::from(self.len()) {
            0 => self.buf.as_ref().len(),
            l => l,
        }
    }

    #[inline]
    fn end(&self) -> usize {
        self.covered_len().min(self.buf.as_ref().len())
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buf.as_ref(), 0)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }

    pub fn len(&self) -> u16 {
        be16(self.buf.as_ref(), 4)
    }

    pub fn is_empty(&self) -> bool {
        self.end() <= HEADER_LEN
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), 6)
    }

    /// The sum of the pseudo-header and the datagram as it now is.
    fn sum(&self, src: &IpAddr, dst: &IpAddr) -> u16 {
        let dgram = range(self.buf.as_ref(), 0, self.end());
        let pseudo = checksum::pseudo_header(src, dst, ipv4::protocol::UDP, dgram.len() as u32);
        checksum::combine(&[pseudo, checksum::data(dgram)])
    }

    /// The checksum is right for a datagram from `src` to `dst`. Over IPv4,
    /// 0 means "not computed" (RFC 768) and passes.
    pub fn verify_checksum(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        (src.is_ipv4() && dst.is_ipv4() && self.checksum() == 0) || self.sum(src, dst) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        range(self.buf.as_ref(), HEADER_LEN, self.end())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_src_port(&mut self, p: u16) {
        put16(self.buf.as_mut(), 0, p);
    }

    pub fn set_dst_port(&mut self, p: u16) {
        put16(self.buf.as_mut(), 2, p);
    }

    pub fn set_len(&mut self, len: u16) {
        put16(self.buf.as_mut(), 4, len);
    }

    pub fn set_checksum(&mut self, c: u16) {
        put16(self.buf.as_mut(), 6, c);
    }

    /// Computes the checksum over the pseudo-header and the datagram (the
    /// bytes the length field covers) as it now is. A computed 0 goes on
    /// the wire as 0xffff, since 0 means "none" (RFC 768).
    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) {
        self.set_checksum(0);
        let c = !self.sum(src, dst);
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }
}

/// The fields of a UDP header. The checksum is not one: the view's
/// `fill_checksum` computes it once the payload is in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub src_port: u16,
    pub dst_port: u16,
    /// Bytes after the header.
    pub payload_len: usize,
}

impl Repr {
    /// The fields of a checked view.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr, WireError> {
        p.check_len()?;
        Ok(Repr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            payload_len: p.end().saturating_sub(HEADER_LEN),
        })
    }
}

impl Emit for Repr {
    fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header with checksum 0; fails on a datagram over 65,535
    /// bytes.
    fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let len =
            u16::try_from(HEADER_LEN + self.payload_len).map_err(|_| WireError::BadHeader {
                layer: L,
                reason: "length over 65535",
            })?;
        let mut p = Packet::new_unchecked(emit_target(buf, HEADER_LEN, L)?);
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_len(len);
        p.set_checksum(0);
        Ok(())
    }
}
