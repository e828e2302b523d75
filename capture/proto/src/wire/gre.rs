//! GRE (RFC 2784 with the key and sequence number of RFC 2890), version 0.

use super::{Emit, WireError, be16, be32, checksum, emit_target, put16, put32, tail};

/// Flags, version and protocol.
pub const MIN_HEADER_LEN: usize = 4;

pub mod flags {
    pub const CHECKSUM: u16 = 0x8000;
    /// RFC 1701 routing: obsolete, not read.
    pub const ROUTING: u16 = 0x4000;
    pub const KEY: u16 = 0x2000;
    pub const SEQUENCE: u16 = 0x1000;
}

const L: &str = "gre";

view! {
    /// A GRE header and its payload.
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the version (0: version 1 is PPTP's enhanced GRE), that no
    /// RFC 1701 routing is present, and that the optional fields fit.
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buf.as_ref().len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated { layer: L });
        }
        if self.version() != 0 {
            return Err(WireError::BadHeader {
                layer: L,
                reason: "version is not 0",
            });
        }
        if self.flags() & flags::ROUTING != 0 {
            return Err(WireError::BadHeader {
                layer: L,
                reason: "RFC 1701 routing",
            });
        }
        if self.header_len() > self.buf.as_ref().len() {
            return Err(WireError::Truncated { layer: L });
        }
        Ok(())
    }

    /// The flag bits (C, R, K, S and the rest), without the version.
    pub fn flags(&self) -> u16 {
        be16(self.buf.as_ref(), 0) & 0xfff8
    }

    pub fn version(&self) -> u8 {
        (be16(self.buf.as_ref(), 0) & 7) as u8
    }

    /// EtherType of the payload.
    pub fn protocol(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }

    fn has(&self, flag: u16) -> bool {
        self.flags() & flag != 0
    }

    pub fn header_len(&self) -> usize {
        MIN_HEADER_LEN
            + 4 * (usize::from(self.has(flags::CHECKSUM))
                + usize::from(self.has(flags::KEY))
                + usize::from(self.has(flags::SEQUENCE)))
    }

    fn key_at(&self) -> usize {
        MIN_HEADER_LEN + 4 * usize::from(self.has(flags::CHECKSUM))
    }

    fn seq_at(&self) -> usize {
        self.key_at() + 4 * usize::from(self.has(flags::KEY))
    }

    pub fn checksum(&self) -> Option<u16> {
        self.has(flags::CHECKSUM)
            .then(|| be16(self.buf.as_ref(), MIN_HEADER_LEN))
    }

    pub fn key(&self) -> Option<u32> {
        self.has(flags::KEY)
            .then(|| be32(self.buf.as_ref(), self.key_at()))
    }

    pub fn sequence(&self) -> Option<u32> {
        self.has(flags::SEQUENCE)
            .then(|| be32(self.buf.as_ref(), self.seq_at()))
    }

    /// A present checksum is right over header and payload (RFC 2784).
    pub fn verify_checksum(&self) -> bool {
        !self.has(flags::CHECKSUM) || checksum::verifies(&[checksum::data(self.buf.as_ref())])
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    pub fn payload(&self) -> &'a [u8] {
        tail(self.buf.as_ref(), self.header_len())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Flags (C, K, S...) and version 0.
    pub fn set_flags(&mut self, f: u16) {
        put16(self.buf.as_mut(), 0, f & 0xfff8);
    }

    pub fn set_protocol(&mut self, p: u16) {
        put16(self.buf.as_mut(), 2, p);
    }

    /// Writes the key; the K flag must already be set.
    pub fn set_key(&mut self, k: u32) {
        let at = self.key_at();
        put32(self.buf.as_mut(), at, k);
    }

    /// Writes the sequence number; the S flag must already be set.
    pub fn set_sequence(&mut self, s: u32) {
        let at = self.seq_at();
        put32(self.buf.as_mut(), at, s);
    }

    /// Computes the checksum (C flag set) over header and payload as they now
    /// are: the buffer must end where the payload ends.
    pub fn fill_checksum(&mut self) {
        if !self.has(flags::CHECKSUM) {
            return;
        }
        put32(self.buf.as_mut(), MIN_HEADER_LEN, 0);
        let c = checksum::finish(&[checksum::data(self.buf.as_ref())]);
        put16(self.buf.as_mut(), MIN_HEADER_LEN, c);
    }
}

/// The fields of a GRE header. The checksum is not one: with
/// `checksum_present`, emit writes 0 and the view's `fill_checksum`
/// computes it once the payload is in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub protocol: u16,
    pub checksum_present: bool,
    pub key: Option<u32>,
    pub sequence: Option<u32>,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr, WireError> {
        p.check_len()?;
        Ok(Repr {
            protocol: p.protocol(),
            checksum_present: p.checksum().is_some(),
            key: p.key(),
            sequence: p.sequence(),
        })
    }

    fn flags(&self) -> u16 {
        let mut f = 0;
        if self.checksum_present {
            f |= flags::CHECKSUM;
        }
        if self.key.is_some() {
            f |= flags::KEY;
        }
        if self.sequence.is_some() {
            f |= flags::SEQUENCE;
        }
        f
    }
}

impl Emit for Repr {
    fn buffer_len(&self) -> usize {
        Packet::new_unchecked([(self.flags() >> 8) as u8, 0]).header_len()
    }

    fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let len = self.buffer_len();
        let mut p = Packet::new_unchecked(emit_target(buf, len, L)?);
        p.set_flags(self.flags());
        p.set_protocol(self.protocol);
        if self.checksum_present {
            put32(p.buf, MIN_HEADER_LEN, 0);
        }
        if let Some(k) = self.key {
            p.set_key(k);
        }
        if let Some(s) = self.sequence {
            p.set_sequence(s);
        }
        Ok(())
    }
}
