//! SCTP (RFC 9260): the common header, the chunks after it, and DATA chunks
//! (the ones that carry user messages, such as SIP per RFC 4168).
//!
//! A packet is a 12-byte common header followed by chunks; each chunk is
//! type, flags, a length that covers its own header and value (not the
//! padding), and zero padding to a multiple of 4. [`Chunks`] walks them.
//! The checksum is CRC32c (RFC 9260 appendix A), which we compute for emit
//! and for tests; the decoder does not require it (offloaded checksums on
//! sniffed traffic are as often wrong as UDP's).

use super::{Emit, WireError, be16, be32, byte, emit_target, put_byte, put16, put32, range, tail};

pub const HEADER_LEN: usize = 12;
pub const CHUNK_HEADER_LEN: usize = 4;
/// A DATA chunk's header: chunk header, TSN, stream, SSN, PPID.
pub const DATA_HEADER_LEN: usize = 16;

const L: &str = "sctp";

/// Chunk types voxtap reads or writes.
pub mod chunk_type {
    pub const DATA: u8 = 0;
    pub const INIT: u8 = 1;
    pub const INIT_ACK: u8 = 2;
    pub const SACK: u8 = 3;
    pub const ABORT: u8 = 6;
    pub const SHUTDOWN: u8 = 7;
    pub const COOKIE_ECHO: u8 = 10;
    pub const COOKIE_ACK: u8 = 11;
    pub const SHUTDOWN_COMPLETE: u8 = 14;
}

/// DATA chunk flags (RFC 9260 section 3.3.1).
pub mod data_flags {
    /// The last fragment of a user message.
    pub const END: u8 = 0x01;
    /// The first fragment of a user message.
    pub const BEGIN: u8 = 0x02;
    /// Unordered delivery: the SSN means nothing.
    pub const UNORDERED: u8 = 0x04;
}

view! {
    /// An SCTP packet: the common header and the chunks after it.
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// The common header must be there; the chunks are checked one by one
    /// as [`Chunks`] walks them.
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buf.as_ref().len() < HEADER_LEN {
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

    pub fn verification_tag(&self) -> u32 {
        be32(self.buf.as_ref(), 4)
    }

    /// The CRC32c as it is on the wire (little-endian bytes, RFC 9260
    /// appendix A), as a number.
    pub fn checksum(&self) -> u32 {
        let b = self.buf.as_ref();
        u32::from_le_bytes([byte(b, 8), byte(b, 9), byte(b, 10), byte(b, 11)])
    }

    /// CRC32c over the packet with the checksum field taken as zero.
    fn compute(&self) -> u32 {
        let b = self.buf.as_ref();
        let mut c = crc32c_update(!0, range(b, 0, 8));
        c = crc32c_update(c, &[0; 4]);
        !crc32c_update(c, tail(b, HEADER_LEN))
    }

    pub fn verify_checksum(&self) -> bool {
        self.checksum() == self.compute()
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The bytes after the common header: the chunks.
    pub fn payload(&self) -> &'a [u8] {
        tail(self.buf.as_ref(), HEADER_LEN)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_src_port(&mut self, p: u16) {
        put16(self.buf.as_mut(), 0, p);
    }

    pub fn set_dst_port(&mut self, p: u16) {
        put16(self.buf.as_mut(), 2, p);
    }

    pub fn set_verification_tag(&mut self, v: u32) {
        put32(self.buf.as_mut(), 4, v);
    }

    /// Computes the CRC32c over the packet as it now is.
    pub fn fill_checksum(&mut self) {
        let c = self.compute();
        for (i, b) in c.to_le_bytes().into_iter().enumerate() {
            put_byte(self.buf.as_mut(), 8 + i, b);
        }
    }
}

/// One chunk: header and value (without the padding after it).
#[derive(Clone, Copy, Debug)]
pub struct Chunk<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> Chunk<T> {
    /// `buf` is exactly the chunk (its length field's bytes).
    fn new_unchecked(buf: T) -> Self {
        Chunk { buf }
    }

    pub fn chunk_type(&self) -> u8 {
        byte(self.buf.as_ref(), 0)
    }

    pub fn flags(&self) -> u8 {
        byte(self.buf.as_ref(), 1)
    }

    /// The length field: header and value, without padding.
    pub fn len(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }

    pub fn is_empty(&self) -> bool {
        self.len() as usize <= CHUNK_HEADER_LEN
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Chunk<&'a T> {
    pub fn value(&self) -> &'a [u8] {
        tail(self.buf.as_ref(), CHUNK_HEADER_LEN)
    }

    /// This chunk as a DATA chunk, if it is one and long enough.
    pub fn data(&self) -> Result<DataChunk<&'a [u8]>, WireError> {
        DataChunk::new_checked(self.buf.as_ref())
    }
}

/// Walks the chunks of a packet's payload; yields an error (once, then
/// stops) when a chunk's length is impossible.
#[derive(Clone, Debug)]
pub struct Chunks<'a> {
    rest: &'a [u8],
}

impl<'a> Chunks<'a> {
    /// `payload`: the bytes after the common header ([`Packet::payload`]).
    pub fn new(payload: &'a [u8]) -> Self {
        Chunks { rest: payload }
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = Result<Chunk<&'a [u8]>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let len = usize::from(be16(self.rest, 2));
        if self.rest.len() < CHUNK_HEADER_LEN || len > self.rest.len() {
            self.rest = &[];
            return Some(Err(WireError::Truncated { layer: L }));
        }
        if len < CHUNK_HEADER_LEN {
            self.rest = &[];
            return Some(Err(WireError::BadHeader {
                layer: L,
                reason: "chunk length < 4",
            }));
        }
        let chunk = Chunk::new_unchecked(range(self.rest, 0, len));
        // The last chunk's padding may be missing (RFC 9260 says it is not
        // sent after the last chunk's value in some stacks).
        self.rest = tail(self.rest, len.next_multiple_of(4).min(self.rest.len()));
        Some(Ok(chunk))
    }
}

view! {
    /// A DATA chunk (type 0).
    DataChunk
}

impl<T: AsRef<[u8]>> DataChunk<T> {
    /// Type 0, at least the 16-byte header, and the length field within
    /// the buffer.
    pub fn check_len(&self) -> Result<(), WireError> {
        let b = self.buf.as_ref();
        if b.len() < DATA_HEADER_LEN {
            return Err(WireError::Truncated { layer: L });
        }
        if byte(b, 0) != chunk_type::DATA {
            return Err(WireError::BadHeader {
                layer: L,
                reason: "not a DATA chunk",
            });
        }
        let len = usize::from(be16(b, 2));
        if len < DATA_HEADER_LEN {
            return Err(WireError::BadHeader {
                layer: L,
                reason: "DATA chunk length < 16",
            });
        }
        if len > b.len() {
            return Err(WireError::Truncated { layer: L });
        }
        Ok(())
    }

    pub fn flags(&self) -> u8 {
        byte(self.buf.as_ref(), 1)
    }

    pub fn begin(&self) -> bool {
        self.flags() & data_flags::BEGIN != 0
    }

    pub fn end(&self) -> bool {
        self.flags() & data_flags::END != 0
    }

    pub fn unordered(&self) -> bool {
        self.flags() & data_flags::UNORDERED != 0
    }

    pub fn tsn(&self) -> u32 {
        be32(self.buf.as_ref(), 4)
    }

    pub fn stream_id(&self) -> u16 {
        be16(self.buf.as_ref(), 8)
    }

    pub fn ssn(&self) -> u16 {
        be16(self.buf.as_ref(), 10)
    }

    /// Payload protocol identifier (IANA; SIP has none of its own, so 0).
    pub fn ppid(&self) -> u32 {
        be32(self.buf.as_ref(), 12)
    }

    fn end_of_data(&self) -> usize {
        usize::from(be16(self.buf.as_ref(), 2)).min(self.buf.as_ref().len())
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> DataChunk<&'a T> {
    /// The user data (this fragment of the user message).
    pub fn user_data(&self) -> &'a [u8] {
        range(self.buf.as_ref(), DATA_HEADER_LEN, self.end_of_data())
    }
}

/// The common header's fields. The checksum is not one: the view's
/// `fill_checksum` computes it once the chunks are in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub src_port: u16,
    pub dst_port: u16,
    pub verification_tag: u32,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr, WireError> {
        Packet::new_checked(p.buf.as_ref())?;
        Ok(Repr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            verification_tag: p.verification_tag(),
        })
    }
}

impl Emit for Repr {
    fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let mut p = Packet::new_unchecked(emit_target(buf, HEADER_LEN, L)?);
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_verification_tag(self.verification_tag);
        put32(p.buf, 8, 0);
        Ok(())
    }
}

/// A DATA chunk's header fields; `data_len` user data bytes follow it,
/// then padding to 4 (which [`DataRepr::append_with`] writes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataRepr {
    pub flags: u8,
    pub tsn: u32,
    pub stream_id: u16,
    pub ssn: u16,
    pub ppid: u32,
    pub data_len: usize,
}

impl DataRepr {
    pub fn parse<T: AsRef<[u8]>>(c: &DataChunk<T>) -> Result<DataRepr, WireError> {
        let c = DataChunk::new_checked(c.buf.as_ref())?;
        Ok(DataRepr {
            flags: c.flags(),
            tsn: c.tsn(),
            stream_id: c.stream_id(),
            ssn: c.ssn(),
            ppid: c.ppid(),
            data_len: c.user_data().len(),
        })
    }

    /// Appends the chunk: header, `data` (whose length must be `data_len`)
    /// and zero padding to a multiple of 4.
    pub fn append_with(&self, out: &mut Vec<u8>, data: &[u8]) -> Result<(), WireError> {
        if data.len() != self.data_len {
            return Err(WireError::BadHeader {
                layer: L,
                reason: "DATA length differs from its user data",
            });
        }
        self.append(out)?;
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(4), 0);
        Ok(())
    }
}

impl Emit for DataRepr {
    fn buffer_len(&self) -> usize {
        DATA_HEADER_LEN
    }

    fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let len =
            u16::try_from(DATA_HEADER_LEN + self.data_len).map_err(|_| WireError::BadHeader {
                layer: L,
                reason: "DATA chunk over 65535 bytes",
            })?;
        let b = emit_target(buf, DATA_HEADER_LEN, L)?;
        put_byte(b, 0, chunk_type::DATA);
        put_byte(b, 1, self.flags);
        put16(b, 2, len);
        put32(b, 4, self.tsn);
        put16(b, 8, self.stream_id);
        put16(b, 10, self.ssn);
        put32(b, 12, self.ppid);
        Ok(())
    }
}

/// Any other chunk as type, flags and value (INIT, SACK, ... in tests and
/// crafted captures): appended with its padding.
pub fn append_chunk(out: &mut Vec<u8>, ty: u8, flags: u8, value: &[u8]) -> Result<(), WireError> {
    let len = u16::try_from(CHUNK_HEADER_LEN + value.len()).map_err(|_| WireError::BadHeader {
        layer: L,
        reason: "chunk over 65535 bytes",
    })?;
    out.extend_from_slice(&[ty, flags]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().next_multiple_of(4), 0);
    Ok(())
}

/// CRC32c (Castagnoli, reflected polynomial 0x82F63B78), bytewise with a
/// table built at compile time; `crc` is the running value (start with !0,
/// finish with !).
fn crc32c_update(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        let i = usize::from((crc as u8) ^ b);
        crc = (crc >> 8) ^ CRC32C_TABLE.get(i).copied().unwrap_or(0);
    }
    crc
}

// Evaluated at compile time over the array's own bounds: an index out of
// range would fail the build, not panic.
#[allow(clippy::indexing_slicing)]
const CRC32C_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        // The standard check value of CRC-32C over "123456789".
        assert_eq!(!crc32c_update(!0, b"123456789"), 0xE306_9283);
    }

    fn packet(chunks: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Repr {
            src_port: 5060,
            dst_port: 5061,
            verification_tag: 0xdead_beef,
        }
        .append(&mut out)
        .unwrap();
        out.extend_from_slice(chunks);
        Packet::new_unchecked(&mut out[..]).fill_checksum();
        out
    }

    #[test]
    fn data_chunks_round_trip() {
        let mut chunks = Vec::new();
        let a = DataRepr {
            flags: data_flags::BEGIN | data_flags::END,
            tsn: 7,
            stream_id: 3,
            ssn: 9,
            ppid: 0,
            data_len: 5,
        };
        a.append_with(&mut chunks, b"hello").unwrap();
        append_chunk(&mut chunks, chunk_type::SACK, 0, &[0; 12]).unwrap();
        let b = DataRepr {
            flags: data_flags::BEGIN,
            tsn: 8,
            stream_id: 1,
            ssn: 0,
            ppid: 46,
            data_len: 3,
        };
        b.append_with(&mut chunks, b"abc").unwrap();
        let pkt = packet(&chunks);
        let p = Packet::new_checked(&pkt[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(
            Repr::parse(&p).unwrap(),
            Repr {
                src_port: 5060,
                dst_port: 5061,
                verification_tag: 0xdead_beef
            }
        );
        let all: Vec<_> = Chunks::new(p.payload()).map(Result::unwrap).collect();
        assert_eq!(
            all.iter().map(|c| c.chunk_type()).collect::<Vec<_>>(),
            [0, 3, 0]
        );
        let d0 = all[0].data().unwrap();
        assert_eq!(DataRepr::parse(&d0).unwrap(), a);
        assert_eq!(d0.user_data(), b"hello");
        assert!(d0.begin() && d0.end() && !d0.unordered());
        let d2 = all[2].data().unwrap();
        assert_eq!(DataRepr::parse(&d2).unwrap(), b);
        assert_eq!(d2.user_data(), b"abc");
        assert!(all[1].data().is_err());
        let mut bad = pkt.clone();
        bad[20] ^= 1;
        assert!(!Packet::new_checked(&bad[..]).unwrap().verify_checksum());
    }

    #[test]
    fn malformed_chunks_stop_the_walk() {
        // Length 2 (< 4), then a length beyond the buffer.
        for payload in [&[0u8, 0, 0, 2, 1, 2, 3, 4][..], &[0, 3, 0, 40, 0, 0][..]] {
            let mut it = Chunks::new(payload);
            assert!(it.next().unwrap().is_err());
            assert!(it.next().is_none());
        }
        assert!(
            DataChunk::new_checked(&[0u8, 3, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..])
                .is_err()
        );
        assert!(Packet::new_checked(&[0u8; 11][..]).is_err());
    }
}
