//! TCP header (RFC 9293).

use std::net::IpAddr;

use super::{
    Emit, WireError, be16, be32, byte, checksum, emit_target, ipv4, put_byte, put16, put32, range,
    range_mut, tail,
};

pub(crate) const MIN_HEADER_LEN: usize = 20;
/// Data offset is 4 bits of 32-bit words.
pub(crate) const MAX_HEADER_LEN: usize = 60;

pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
}

const L: &str = "tcp";

view! {
    /// A TCP segment: the view covers the whole buffer (TCP has no length
    /// field; the IP layer bounds the segment).
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Everything `new_checked` validates.
    pub fn check_len(&self) -> Result<(), WireError> {
        let buf = self.buf.as_ref();
        if buf.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated { layer: L });
        }
        let hlen = self.header_len();
        if hlen < MIN_HEADER_LEN {
            return Err(WireError::BadHeader {
                layer: L,
                reason: "data offset < 5",
            });
        }
        if hlen > buf.len() {
            return Err(WireError::Truncated { layer: L });
        }
        Ok(())
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buf.as_ref(), 0)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }

    pub fn seq_number(&self) -> u32 {
        be32(self.buf.as_ref(), 4)
    }

    pub fn ack_number(&self) -> u32 {
        be32(self.buf.as_ref(), 8)
    }

    pub fn header_len(&self) -> usize {
        usize::from(byte(self.buf.as_ref(), 12) >> 4) * 4
    }

    /// The low 4 bits of the data-offset byte: 3 reserved bits and NS
    /// (historic, RFC 8311).
    pub fn reserved_ns(&self) -> u8 {
        byte(self.buf.as_ref(), 12) & 0x0f
    }

    /// The flag byte (CWR..FIN); NS lives in the data-offset byte and is
    /// deliberately left out.
    pub fn flags(&self) -> u8 {
        byte(self.buf.as_ref(), 13)
    }

    pub fn window(&self) -> u16 {
        be16(self.buf.as_ref(), 14)
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), 16)
    }

    pub fn urgent(&self) -> u16 {
        be16(self.buf.as_ref(), 18)
    }

    /// The sum of the pseudo-header and the segment as it now is.
    fn sum(&self, src: &IpAddr, dst: &IpAddr) -> u16 {
        let seg = self.buf.as_ref();
        let pseudo = checksum::pseudo_header(src, dst, ipv4::protocol::TCP, seg.len() as u32);
        checksum::combine(&[pseudo, checksum::data(seg)])
    }

    /// The checksum is right for a segment from `src` to `dst`.
    pub fn verify_checksum(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        self.sum(src, dst) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    pub fn options(&self) -> &'a [u8] {
        range(self.buf.as_ref(), MIN_HEADER_LEN, self.header_len())
    }

    pub fn payload(&self) -> &'a [u8] {
        tail(self.buf.as_ref(), self.header_len())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_src_port(&mut self, p: u16) {
        put16(self.buf.as_mut(), 0, p);
    }

    pub fn set_dst_port(&mut self, p: u16) {
        put16(self.buf.as_mut(), 2, p);
    }

    pub fn set_seq_number(&mut self, s: u32) {
        put32(self.buf.as_mut(), 4, s);
    }

    pub fn set_ack_number(&mut self, a: u32) {
        put32(self.buf.as_mut(), 8, a);
    }

    /// Header length in bytes (a multiple of 4, 20..=60) and the low bits
    /// of the same byte (reserved, NS).
    pub fn set_header_len(&mut self, header_len: usize, reserved_ns: u8) {
        let off = (header_len / 4).min(15) as u8;
        put_byte(self.buf.as_mut(), 12, (off << 4) | (reserved_ns & 0x0f));
    }

    pub fn set_flags(&mut self, f: u8) {
        put_byte(self.buf.as_mut(), 13, f);
    }

    pub fn set_window(&mut self, w: u16) {
        put16(self.buf.as_mut(), 14, w);
    }

    pub fn set_checksum(&mut self, c: u16) {
        put16(self.buf.as_mut(), 16, c);
    }

    pub fn set_urgent(&mut self, u: u16) {
        put16(self.buf.as_mut(), 18, u);
    }

    pub fn options_mut(&mut self) -> &mut [u8] {
        let hlen = self.header_len();
        range_mut(self.buf.as_mut(), MIN_HEADER_LEN, hlen)
    }

    /// Computes the checksum over the pseudo-header and the whole buffer
    /// (header and payload) as it now is.
    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) {
        self.set_checksum(0);
        let c = !self.sum(src, dst);
        self.set_checksum(c);
    }
}

/// The fields of a TCP header. The checksum is not one: the view's
/// `fill_checksum` computes it once the payload is in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq_number: u32,
    pub ack_number: u32,
    /// The flag byte (CWR..FIN).
    pub flags: u8,
    /// Reserved bits and NS: the low nibble of the data-offset byte.
    pub reserved_ns: u8,
    pub window: u16,
    pub urgent: u16,
    /// Options, a multiple of 4 bytes, at most 40.
    pub options: &'a [u8],
}

impl<'a> Repr<'a> {
    /// The fields of a checked view.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &Packet<&'a T>) -> Result<Repr<'a>, WireError> {
        p.check_len()?;
        Ok(Repr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq_number: p.seq_number(),
            ack_number: p.ack_number(),
            flags: p.flags(),
            reserved_ns: p.reserved_ns(),
            window: p.window(),
            urgent: p.urgent(),
            options: p.options(),
        })
    }
}

impl Emit for Repr<'_> {
    fn buffer_len(&self) -> usize {
        MIN_HEADER_LEN + self.options.len()
    }

    /// Writes the header with checksum 0; fails on options that the data
    /// offset cannot express.
    fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let hlen = self.buffer_len();
        if !hlen.is_multiple_of(4) || hlen > MAX_HEADER_LEN {
            return Err(WireError::BadHeader {
                layer: L,
                reason: "options are not a multiple of 4 bytes up to 40",
            });
        }
        let mut p = Packet::new_unchecked(emit_target(buf, hlen, L)?);
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_seq_number(self.seq_number);
        p.set_ack_number(self.ack_number);
        p.set_header_len(hlen, self.reserved_ns);
        p.set_flags(self.flags);
        p.set_window(self.window);
        p.set_checksum(0);
        p.set_urgent(self.urgent);
        p.options_mut().copy_from_slice(self.options);
        Ok(())
    }
}
