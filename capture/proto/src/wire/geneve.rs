//! Geneve (RFC 8926): an 8-byte header with variable options over UDP,
//! then what its protocol type names (an Ethernet frame, or IP).

use super::{Emit, WireError, be16, be32, byte, emit_target, put_byte, put16, put32, range, tail};

pub const MIN_HEADER_LEN: usize = 8;
/// Option length is 6 bits of 4-byte words.
pub const MAX_OPTIONS_LEN: usize = 63 * 4;

const L: &str = "geneve";

view! {
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the version (0) and that the options fit.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buf.as_ref().len();
        if len < MIN_HEADER_LEN {
            return Err(WireError::Truncated { layer: L });
        }
        if self.version() != 0 {
            return Err(WireError::BadHeader {
                layer: L,
                reason: "version is not 0",
            });
        }
        if self.header_len() > len {
            return Err(WireError::Truncated { layer: L });
        }
        Ok(())
    }

    pub fn version(&self) -> u8 {
        byte(self.buf.as_ref(), 0) >> 6
    }

    pub fn options_len(&self) -> usize {
        usize::from(byte(self.buf.as_ref(), 0) & 0x3f) * 4
    }

    pub fn header_len(&self) -> usize {
        MIN_HEADER_LEN + self.options_len()
    }

    /// OAM packet (O bit).
    pub fn oam(&self) -> bool {
        byte(self.buf.as_ref(), 1) & 0x80 != 0
    }

    /// Critical options present (C bit).
    pub fn critical(&self) -> bool {
        byte(self.buf.as_ref(), 1) & 0x40 != 0
    }

    /// EtherType of the payload (0x6558 for Ethernet).
    pub fn protocol(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }

    pub fn vni(&self) -> u32 {
        be32(self.buf.as_ref(), 4) >> 8
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
    /// Version 0 and the options length in bytes (a multiple of 4).
    pub fn set_options_len(&mut self, len: usize) {
        put_byte(self.buf.as_mut(), 0, ((len / 4).min(63)) as u8);
    }

    pub fn set_flags(&mut self, oam: bool, critical: bool) {
        put_byte(
            self.buf.as_mut(),
            1,
            (u8::from(oam) << 7) | (u8::from(critical) << 6),
        );
    }

    pub fn set_protocol(&mut self, p: u16) {
        put16(self.buf.as_mut(), 2, p);
    }

    pub fn set_vni(&mut self, vni: u32) {
        put32(self.buf.as_mut(), 4, (vni & 0x00ff_ffff) << 8);
    }
}

/// The fields of a Geneve header; options are kept as bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr<'a> {
    pub oam: bool,
    pub critical: bool,
    pub protocol: u16,
    pub vni: u32,
    /// A multiple of 4 bytes, at most 252.
    pub options: &'a [u8],
}

impl<'a> Repr<'a> {
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &Packet<&'a T>) -> Result<Repr<'a>, WireError> {
        p.check_len()?;
        Ok(Repr {
            oam: p.oam(),
            critical: p.critical(),
            protocol: p.protocol(),
            vni: p.vni(),
            options: p.options(),
        })
    }
}

impl Emit for Repr<'_> {
    fn buffer_len(&self) -> usize {
        MIN_HEADER_LEN + self.options.len()
    }

    fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let olen = self.options.len();
        if !olen.is_multiple_of(4) || olen > MAX_OPTIONS_LEN {
            return Err(WireError::BadHeader {
                layer: L,
                reason: "options are not a multiple of 4 bytes up to 252",
            });
        }
        let b = emit_target(buf, self.buffer_len(), L)?;
        b.fill(0);
        let mut p = Packet::new_unchecked(b);
        p.set_options_len(olen);
        p.set_flags(self.oam, self.critical);
        p.set_protocol(self.protocol);
        p.set_vni(self.vni);
        if let Some(o) = p.buf.get_mut(MIN_HEADER_LEN..MIN_HEADER_LEN + olen) {
            o.copy_from_slice(self.options);
        }
        Ok(())
    }
}
