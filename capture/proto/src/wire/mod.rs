//! Zero-copy views over the link, network and transport headers voxtap reads.
//!
//! Modelled on smoltcp's `wire`: each format is a `Packet<'a>` wrapping a byte
//! slice, built with `new_checked` (which validates every length the accessors
//! rely on) and read through accessors. Accessors still go through `get()` so
//! that a view built with `new_unchecked` over short data returns zeros instead
//! of panicking; nothing here can panic on any input bytes.

pub mod emit;
pub mod ethernet;
pub mod ipv4;
pub mod ipv6;
pub mod null;
pub mod sll;
pub mod tcp;
pub mod udp;

/// A header that could not be read.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Fewer bytes than the header (or a length field in it) requires.
    #[error("{layer}: truncated")]
    Truncated { layer: &'static str },
    /// The bytes are there but contradict the format.
    #[error("{layer}: bad header: {reason}")]
    BadHeader {
        layer: &'static str,
        reason: &'static str,
    },
}

/// Big-endian u16 at `at`, 0 when out of range (only reachable through
/// `new_unchecked`, since `new_checked` guarantees the length).
#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at.wrapping_add(2)) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at.wrapping_add(4)) {
        Some(&[a, c, d, e]) => u32::from_be_bytes([a, c, d, e]),
        _ => 0,
    }
}

#[inline]
pub(crate) fn byte(b: &[u8], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}

#[inline]
pub(crate) fn array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = b.get(at..at.wrapping_add(N)) {
        out.copy_from_slice(src);
    }
    out
}

/// `b[from..]`, empty when out of range.
#[inline]
pub(crate) fn tail(b: &[u8], from: usize) -> &[u8] {
    b.get(from..).unwrap_or(&[])
}

/// `b[from..to]`, empty when out of range.
#[inline]
pub(crate) fn range(b: &[u8], from: usize, to: usize) -> &[u8] {
    b.get(from..to).unwrap_or(&[])
}
