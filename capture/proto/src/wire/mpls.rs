//! MPLS label stack entries (RFC 3032) and the pseudowire control word of
//! an Ethernet pseudowire (RFC 4385, RFC 4448).

use super::{Emit, WireError, be32, emit_target, put32, tail};

/// One label stack entry.
pub const ENTRY_LEN: usize = 4;
/// The generic PW control word.
pub const CONTROL_WORD_LEN: usize = 4;

const L: &str = "mpls";

view! {
    /// One label stack entry: label (20 bits), traffic class (3), bottom of
    /// stack (1), TTL (8).
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buf.as_ref().len() < ENTRY_LEN {
            return Err(WireError::Truncated { layer: L });
        }
        Ok(())
    }

    fn word(&self) -> u32 {
        be32(self.buf.as_ref(), 0)
    }

    pub fn label(&self) -> u32 {
        self.word() >> 12
    }

    pub fn traffic_class(&self) -> u8 {
        ((self.word() >> 9) & 7) as u8
    }

    /// The last entry of the stack: what follows is the payload.
    pub fn bottom(&self) -> bool {
        self.word() & 0x100 != 0
    }

    pub fn ttl(&self) -> u8 {
        (self.word() & 0xff) as u8
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The next entry, or the payload after the bottom one.
    pub fn payload(&self) -> &'a [u8] {
        tail(self.buf.as_ref(), ENTRY_LEN)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_entry(&mut self, label: u32, tc: u8, bottom: bool, ttl: u8) {
        let w = ((label & 0x000f_ffff) << 12)
            | (u32::from(tc & 7) << 9)
            | (u32::from(bottom) << 8)
            | u32::from(ttl);
        put32(self.buf.as_mut(), 0, w);
    }
}

/// The fields of one label stack entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    /// 0..=0xFFFFF.
    pub label: u32,
    pub traffic_class: u8,
    pub bottom: bool,
    pub ttl: u8,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr, WireError> {
        if p.buf.as_ref().len() < ENTRY_LEN {
            return Err(WireError::Truncated { layer: L });
        }
        Ok(Repr {
            label: p.label(),
            traffic_class: p.traffic_class(),
            bottom: p.bottom(),
            ttl: p.ttl(),
        })
    }
}

impl Emit for Repr {
    fn buffer_len(&self) -> usize {
        ENTRY_LEN
    }

    fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let mut p = Packet::new_unchecked(emit_target(buf, ENTRY_LEN, L)?);
        p.set_entry(self.label, self.traffic_class, self.bottom, self.ttl);
        Ok(())
    }
}

/// The generic PW control word (RFC 4385): first nibble 0, flags (4 bits),
/// fragmentation (2), length (6), sequence number (16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlWordRepr {
    pub flags: u8,
    pub length: u8,
    pub sequence: u16,
}

impl ControlWordRepr {
    /// The control word at the start of `buf`; `BadHeader` when its first
    /// nibble is not 0 (then it is not one).
    pub fn parse(buf: &[u8]) -> Result<ControlWordRepr, WireError> {
        let layer = "mpls-pw";
        if buf.len() < CONTROL_WORD_LEN {
            return Err(WireError::Truncated { layer });
        }
        let w = be32(buf, 0);
        if w >> 28 != 0 {
            return Err(WireError::BadHeader {
                layer,
                reason: "control word does not start with nibble 0",
            });
        }
        Ok(ControlWordRepr {
            flags: ((w >> 24) & 0x0f) as u8,
            length: ((w >> 16) & 0x3f) as u8,
            sequence: (w & 0xffff) as u16,
        })
    }
}

impl Emit for ControlWordRepr {
    fn buffer_len(&self) -> usize {
        CONTROL_WORD_LEN
    }

    fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let b = emit_target(buf, CONTROL_WORD_LEN, "mpls-pw")?;
        let w = (u32::from(self.flags & 0x0f) << 24)
            | (u32::from(self.length & 0x3f) << 16)
            | u32::from(self.sequence);
        put32(b, 0, w);
        Ok(())
    }
}
