//! VXLAN (RFC 7348): an 8-byte header over UDP, then an Ethernet frame.

use super::{Emit, WireError, be32, byte, emit_target, put_byte, put32, tail};

pub const HEADER_LEN: usize = 8;

/// The I flag: the VNI is valid. RFC 7348 requires it.
pub const FLAG_VNI: u8 = 0x08;

const L: &str = "vxlan";

view! {
    /// A VXLAN header (RFC 7348) and the Ethernet frame it carries.
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the length and the I flag (without it, this is not VXLAN).
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buf.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated { layer: L });
        }
        if self.flags() & FLAG_VNI == 0 {
            return Err(WireError::BadHeader {
                layer: L,
                reason: "I flag not set",
            });
        }
        Ok(())
    }

    pub fn flags(&self) -> u8 {
        byte(self.buf.as_ref(), 0)
    }

    /// The 24-bit VXLAN network identifier.
    pub fn vni(&self) -> u32 {
        be32(self.buf.as_ref(), 4) >> 8
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The inner Ethernet frame.
    pub fn payload(&self) -> &'a [u8] {
        tail(self.buf.as_ref(), HEADER_LEN)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_flags(&mut self, f: u8) {
        put_byte(self.buf.as_mut(), 0, f);
    }

    pub fn set_vni(&mut self, vni: u32) {
        put32(self.buf.as_mut(), 4, (vni & 0x00ff_ffff) << 8);
    }
}

/// The fields of a VXLAN header (the I flag is always set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub vni: u32,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr, WireError> {
        let p = Packet::new_checked(p.buf.as_ref())?;
        Ok(Repr { vni: p.vni() })
    }
}

impl Emit for Repr {
    fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let b = emit_target(buf, HEADER_LEN, L)?;
        b.fill(0);
        let mut p = Packet::new_unchecked(b);
        p.set_flags(FLAG_VNI);
        p.set_vni(self.vni);
        Ok(())
    }
}
