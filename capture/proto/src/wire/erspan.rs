//! ERSPAN headers (draft-foschiano-erspan), carried over GRE: type II
//! (GRE protocol 0x88BE with a sequence number) and type III (0x22EB).
//! Type I (0x88BE without a GRE sequence number) has no header of its own:
//! the mirrored Ethernet frame follows GRE directly.

use super::{Emit, WireError, be16, be32, emit_target, put16, put32, range, tail};

pub const TYPE2_HEADER_LEN: usize = 8;
pub const TYPE3_HEADER_LEN: usize = 12;
/// The optional platform-specific subheader of type III.
pub const TYPE3_PLATFORM_LEN: usize = 8;

/// The version field: 1 for type II, 2 for type III.
pub const VERSION_TYPE2: u8 = 1;
pub const VERSION_TYPE3: u8 = 2;

/// Frame types of type III (`ft`).
pub mod frame_type {
    pub const ETHERNET: u8 = 0;
    pub const IP: u8 = 2;
}

view! {
    /// An ERSPAN type II or III header and the mirrored frame after it. The
    /// fields of the first word are common to both types.
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the version (1 or 2) and that the header of that type fits.
    pub fn check_len(&self) -> Result<(), WireError> {
        let layer = "erspan";
        if self.buf.as_ref().len() < TYPE2_HEADER_LEN {
            return Err(WireError::Truncated { layer });
        }
        if !matches!(self.version(), VERSION_TYPE2 | VERSION_TYPE3) {
            return Err(WireError::BadHeader {
                layer,
                reason: "version is neither 1 (type II) nor 2 (type III)",
            });
        }
        if self.header_len() > self.buf.as_ref().len() {
            return Err(WireError::Truncated { layer });
        }
        Ok(())
    }

    fn word0(&self) -> u32 {
        be32(self.buf.as_ref(), 0)
    }

    pub fn version(&self) -> u8 {
        (self.word0() >> 28) as u8
    }

    /// VLAN of the mirrored frame as the source port saw it.
    pub fn vlan(&self) -> u16 {
        ((self.word0() >> 16) & 0x0fff) as u16
    }

    pub fn cos(&self) -> u8 {
        ((self.word0() >> 13) & 7) as u8
    }

    /// Type II: encapsulation type (En); type III: bad/short/oversized (BSO).
    pub fn en_or_bso(&self) -> u8 {
        ((self.word0() >> 11) & 3) as u8
    }

    /// The mirrored frame was truncated to fit.
    pub fn truncated(&self) -> bool {
        self.word0() & 0x400 != 0
    }

    pub fn session_id(&self) -> u16 {
        (self.word0() & 0x3ff) as u16
    }

    /// Type II: the port index (20 bits).
    pub fn index(&self) -> u32 {
        be32(self.buf.as_ref(), 4) & 0x000f_ffff
    }

    /// Type III: the timestamp.
    pub fn timestamp(&self) -> u32 {
        be32(self.buf.as_ref(), 4)
    }

    /// Type III: security group tag.
    pub fn sgt(&self) -> u16 {
        be16(self.buf.as_ref(), 8)
    }

    fn word2_low(&self) -> u16 {
        be16(self.buf.as_ref(), 10)
    }

    /// Type III: the frame is a PDU, not a whole frame (P bit).
    pub fn pdu(&self) -> bool {
        self.word2_low() & 0x8000 != 0
    }

    /// Type III: what the mirrored frame is ([`frame_type`]).
    pub fn frame_type(&self) -> u8 {
        ((self.word2_low() >> 10) & 0x1f) as u8
    }

    pub fn hw_id(&self) -> u8 {
        ((self.word2_low() >> 4) & 0x3f) as u8
    }

    /// Type III: direction (false ingress, true egress).
    pub fn direction(&self) -> bool {
        self.word2_low() & 8 != 0
    }

    pub fn granularity(&self) -> u8 {
        ((self.word2_low() >> 1) & 3) as u8
    }

    /// Type III: an 8-byte platform-specific subheader follows (O bit).
    pub fn has_platform(&self) -> bool {
        self.version() == VERSION_TYPE3 && self.word2_low() & 1 != 0
    }

    pub fn header_len(&self) -> usize {
        match self.version() {
            VERSION_TYPE3 if self.has_platform() => TYPE3_HEADER_LEN + TYPE3_PLATFORM_LEN,
            VERSION_TYPE3 => TYPE3_HEADER_LEN,
            _ => TYPE2_HEADER_LEN,
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// Type III: the platform-specific subheader, empty when absent.
    pub fn platform(&self) -> &'a [u8] {
        if !self.has_platform() {
            return &[];
        }
        range(
            self.buf.as_ref(),
            TYPE3_HEADER_LEN,
            TYPE3_HEADER_LEN + TYPE3_PLATFORM_LEN,
        )
    }

    /// The mirrored frame.
    pub fn payload(&self) -> &'a [u8] {
        tail(self.buf.as_ref(), self.header_len())
    }
}

/// What differs between the two types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    TypeII {
        encap_type: u8,
        index: u32,
    },
    TypeIII {
        bso: u8,
        timestamp: u32,
        sgt: u16,
        pdu: bool,
        frame_type: u8,
        hw_id: u8,
        direction: bool,
        granularity: u8,
        platform: Option<[u8; TYPE3_PLATFORM_LEN]>,
    },
}

/// The fields of an ERSPAN type II or III header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub vlan: u16,
    pub cos: u8,
    pub truncated: bool,
    /// 0..=1023.
    pub session_id: u16,
    pub kind: Kind,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &Packet<&T>) -> Result<Repr, WireError> {
        p.check_len()?;
        let kind = if p.version() == VERSION_TYPE2 {
            Kind::TypeII {
                encap_type: p.en_or_bso(),
                index: p.index(),
            }
        } else {
            Kind::TypeIII {
                bso: p.en_or_bso(),
                timestamp: p.timestamp(),
                sgt: p.sgt(),
                pdu: p.pdu(),
                frame_type: p.frame_type(),
                hw_id: p.hw_id(),
                direction: p.direction(),
                granularity: p.granularity(),
                platform: p.platform().first_chunk().copied(),
            }
        };
        Ok(Repr {
            vlan: p.vlan(),
            cos: p.cos(),
            truncated: p.truncated(),
            session_id: p.session_id(),
            kind,
        })
    }

    fn word0(&self, version: u8, en_or_bso: u8) -> u32 {
        (u32::from(version) << 28)
            | (u32::from(self.vlan & 0x0fff) << 16)
            | (u32::from(self.cos & 7) << 13)
            | (u32::from(en_or_bso & 3) << 11)
            | (u32::from(self.truncated) << 10)
            | u32::from(self.session_id & 0x3ff)
    }
}

impl Emit for Repr {
    fn buffer_len(&self) -> usize {
        match self.kind {
            Kind::TypeII { .. } => TYPE2_HEADER_LEN,
            Kind::TypeIII { platform: None, .. } => TYPE3_HEADER_LEN,
            Kind::TypeIII { .. } => TYPE3_HEADER_LEN + TYPE3_PLATFORM_LEN,
        }
    }

    fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let b = emit_target(buf, self.buffer_len(), "erspan")?;
        match self.kind {
            Kind::TypeII { encap_type, index } => {
                put32(b, 0, self.word0(VERSION_TYPE2, encap_type));
                put32(b, 4, index & 0x000f_ffff);
            }
            Kind::TypeIII {
                bso,
                timestamp,
                sgt,
                pdu,
                frame_type,
                hw_id,
                direction,
                granularity,
                platform,
            } => {
                put32(b, 0, self.word0(VERSION_TYPE3, bso));
                put32(b, 4, timestamp);
                put16(b, 8, sgt);
                let low = (u16::from(pdu) << 15)
                    | (u16::from(frame_type & 0x1f) << 10)
                    | (u16::from(hw_id & 0x3f) << 4)
                    | (u16::from(direction) << 3)
                    | (u16::from(granularity & 3) << 1)
                    | u16::from(platform.is_some());
                put16(b, 10, low);
                if let Some(pl) = platform {
                    super::put(b, TYPE3_HEADER_LEN, pl);
                }
            }
        }
        Ok(())
    }
}
