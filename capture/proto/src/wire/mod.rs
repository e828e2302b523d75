//! Zero-copy views over the link, tunnel, network and transport headers
//! voxtap reads, with an emit side that builds and patches them. Tunnels:
//! MPLS (and the pseudowire control word), GRE, ERSPAN, VXLAN, Geneve,
//! PPPoE, GTP-U.
//!
//! Modelled on smoltcp's `wire`: each format is a `Packet<T>` wrapping a byte
//! buffer (`&[u8]` to read, `&mut [u8]` to patch), built with `new_checked`
//! (which validates every length the accessors rely on) and read through
//! accessors; setters patch fields in place (lengths, checksums). A `Repr` is
//! the header's fields as a plain struct: `Repr::parse` reads one from a
//! checked view and [`Emit`] writes one into a buffer. Accessors and setters
//! still go through `get()`, so a view built with `new_unchecked` over short
//! data reads zeros and writes nothing instead of panicking; nothing here can
//! panic on any input bytes. One Internet checksum serves every layer:
//! [`checksum`].

/// A checked view over a buffer (smoltcp's `wire` pattern): the struct and
/// what every view has alike. Each view writes its own `check_len`, which
/// `new_checked` runs, and its field accessors.
macro_rules! view {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug)]
        pub struct $name<T> {
            buf: T,
        }

        impl<T: AsRef<[u8]>> $name<T> {
            /// A view of `buf` as it is: accessors may then read past its
            /// end (they return 0 there, never panic).
            pub fn new_unchecked(buf: T) -> Self {
                $name { buf }
            }

            /// A view of `buf` once its `check_len` passed. Inline (as the
            /// length checks and payload accessors of the headers on every
            /// frame's path): a call per layer cost the decoder about 60
            /// instructions per frame.
            #[inline]
            pub fn new_checked(buf: T) -> Result<Self, WireError> {
                let p = $name { buf };
                p.check_len()?;
                Ok(p)
            }

            pub fn into_inner(self) -> T {
                self.buf
            }
        }
    };
}

pub mod checksum;
pub mod emit;
pub mod erspan;
pub mod ethernet;
pub mod geneve;
pub mod gre;
pub mod gtpu;
pub mod ipv4;
pub mod ipv6;
pub mod mpls;
pub mod null;
pub mod pppoe;
pub mod sctp;
pub mod sll;
pub mod tcp;
pub mod udp;
pub mod vxlan;
pub mod websocket;

/// A header that could not be read, or written.
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

/// A header as plain fields that can be written out: `buffer_len()` bytes
/// into the start of a buffer.
pub trait Emit {
    /// How many bytes [`Emit::emit`] writes (the header, not the payload).
    fn buffer_len(&self) -> usize;

    /// Writes the header into `buf[..buffer_len()]`; `Truncated` when `buf`
    /// is shorter. Checksums that cover only the header are filled in;
    /// those that also cover the payload are left 0, for the view's
    /// `fill_checksum` once the payload is in place.
    fn emit(&self, buf: &mut [u8]) -> Result<(), WireError>;

    /// Appends the header to `out` and returns where it starts; on error
    /// `out` is left as it was.
    fn append(&self, out: &mut Vec<u8>) -> Result<usize, WireError> {
        let at = out.len();
        out.resize(at + self.buffer_len(), 0);
        let r = self.emit(out.get_mut(at..).unwrap_or_default());
        if r.is_err() {
            out.truncate(at);
        }
        r.map(|()| at)
    }
}

/// The `N` bytes at `at`, if they are in range: the one bounds-checked read
/// every reader below is built on.
#[inline]
pub(crate) fn bytes_at<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..)?.first_chunk::<N>().copied()
}

/// Big-endian u16 at `at`, if in range.
#[inline]
pub(crate) fn try_be16(b: &[u8], at: usize) -> Option<u16> {
    bytes_at(b, at).map(u16::from_be_bytes)
}

/// Big-endian u32 at `at`, if in range.
#[inline]
pub(crate) fn try_be32(b: &[u8], at: usize) -> Option<u32> {
    bytes_at(b, at).map(u32::from_be_bytes)
}

/// Big-endian u16 at `at`, 0 when out of range (only reachable through
/// `new_unchecked`, since `new_checked` guarantees the length).
#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    try_be16(b, at).unwrap_or(0)
}

/// Big-endian u32 at `at`, 0 when out of range.
#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    try_be32(b, at).unwrap_or(0)
}

#[inline]
pub(crate) fn byte(b: &[u8], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}

/// The `N` bytes at `at`, zeros when out of range.
#[inline]
pub(crate) fn array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    bytes_at(b, at).unwrap_or([0; N])
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

/// `b[from..to]` for writing, empty when out of range.
#[inline]
pub(crate) fn range_mut(b: &mut [u8], from: usize, to: usize) -> &mut [u8] {
    b.get_mut(from..to).unwrap_or(&mut [])
}

/// Writes `v` at `at`; nothing when out of range (the setters' counterpart
/// of the readers' zeros).
#[inline]
pub(crate) fn put<const N: usize>(b: &mut [u8], at: usize, v: [u8; N]) {
    if let Some(d) = b.get_mut(at..).and_then(|s| s.first_chunk_mut::<N>()) {
        *d = v;
    }
}

#[inline]
pub(crate) fn put_byte(b: &mut [u8], at: usize, v: u8) {
    put(b, at, [v]);
}

#[inline]
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    put(b, at, v.to_be_bytes());
}

#[inline]
pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    put(b, at, v.to_be_bytes());
}

/// `buf[..len]` of an emit target, or `Truncated` for `layer`.
#[inline]
pub(crate) fn emit_target<'b>(
    buf: &'b mut [u8],
    len: usize,
    layer: &'static str,
) -> Result<&'b mut [u8], WireError> {
    buf.get_mut(..len).ok_or(WireError::Truncated { layer })
}
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tunnel_tests;
