//! The crate's only `unsafe` code: hand-written declarations of the few C
//! functions we call in Debian's codec libraries (no bindgen: the image
//! has no libclang), each wrapped in a small safe type that owns one
//! decoder instance.
//!
//! Common ground for every wrapper:
//! - the state pointer comes from the library's own constructor, is
//!   checked for NULL, is used only through `&mut self` and is freed
//!   exactly once in `Drop`;
//! - every input buffer handed to C is at least as long as the longest
//!   frame the library can read for any header value, so a hostile
//!   payload cannot make it read out of bounds (the wrappers take fixed
//!   size arrays for that reason);
//! - every output buffer is a fixed-size array of the library's frame.
//!
//! `Send`: each instance's state is private to it; none of these
//! libraries keeps per-call global mutable state (their tables are
//! constant), so moving an instance to another thread is sound.

#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_short, c_uchar, c_void};
use std::ptr::NonNull;

mod sys {
    use super::*;

    #[link(name = "opencore-amrnb")]
    unsafe extern "C" {
        pub fn Decoder_Interface_init() -> *mut c_void;
        pub fn Decoder_Interface_exit(state: *mut c_void);
        pub fn Decoder_Interface_Decode(
            state: *mut c_void,
            input: *const c_uchar,
            out: *mut c_short,
            bfi: c_int,
        );
    }

    #[link(name = "opencore-amrwb")]
    unsafe extern "C" {
        pub fn D_IF_init() -> *mut c_void;
        pub fn D_IF_decode(
            state: *mut c_void,
            bits: *const c_uchar,
            synth: *mut c_short,
            bfi: c_int,
        );
        pub fn D_IF_exit(state: *mut c_void);
    }

    #[link(name = "gsm")]
    unsafe extern "C" {
        pub fn gsm_create() -> *mut c_void;
        pub fn gsm_destroy(g: *mut c_void);
        /// Declared `gsm_byte *` (not const) in gsm.h, but only read.
        pub fn gsm_decode(g: *mut c_void, frame: *const c_uchar, out: *mut c_short) -> c_int;
    }

    /// `SpeexBits` from speex/speex_bits.h (libspeex 1.2).
    #[repr(C)]
    pub struct SpeexBits {
        pub chars: *mut c_char,
        pub nb_bits: c_int,
        pub char_ptr: c_int,
        pub bit_ptr: c_int,
        pub owner: c_int,
        pub overflow: c_int,
        pub buf_size: c_int,
        pub reserved1: c_int,
        pub reserved2: *mut c_void,
    }

    #[link(name = "speex")]
    unsafe extern "C" {
        pub fn speex_lib_get_mode(mode: c_int) -> *const c_void;
        pub fn speex_decoder_init(mode: *const c_void) -> *mut c_void;
        pub fn speex_decoder_destroy(state: *mut c_void);
        pub fn speex_decoder_ctl(state: *mut c_void, request: c_int, ptr: *mut c_void) -> c_int;
        pub fn speex_decode_int(
            state: *mut c_void,
            bits: *mut SpeexBits,
            out: *mut c_short,
        ) -> c_int;
        pub fn speex_bits_init(bits: *mut SpeexBits);
        pub fn speex_bits_destroy(bits: *mut SpeexBits);
        pub fn speex_bits_read_from(bits: *mut SpeexBits, bytes: *const c_char, len: c_int);
        pub fn speex_bits_remaining(bits: *mut SpeexBits) -> c_int;
    }

    #[cfg(feature = "gpl-codecs")]
    #[link(name = "bcg729")]
    unsafe extern "C" {
        pub fn initBcg729DecoderChannel() -> *mut c_void;
        pub fn closeBcg729DecoderChannel(ctx: *mut c_void);
        pub fn bcg729Decoder(
            ctx: *mut c_void,
            bitstream: *const u8,
            bitstream_len: u8,
            frame_erasure: u8,
            sid_frame: u8,
            rfc3389_payload: u8,
            signal: *mut i16,
        );
    }
}

/// An opencore-amrnb decoder (3GPP TS 26.104 fixed point, Apache-2.0).
pub struct AmrNb(NonNull<c_void>);

/// Longest AMR-NB storage-format frame (header + 244 bits) is 32 octets.
pub const AMR_NB_FRAME_BUF: usize = 32;

// SAFETY: see the module comment (instance-private state).
unsafe impl Send for AmrNb {}

impl AmrNb {
    pub fn new() -> Option<AmrNb> {
        // SAFETY: no arguments; returns a fresh state or NULL.
        NonNull::new(unsafe { sys::Decoder_Interface_init() }).map(AmrNb)
    }

    /// Decode one frame in the RFC 4867 section 5 storage format (ToC
    /// octet `FT << 3 | Q << 2`, then the speech bits) into 160 samples.
    pub fn decode(&mut self, frame: &[u8; AMR_NB_FRAME_BUF], out: &mut [i16; 160]) {
        // SAFETY: the library reads at most the frame size of the header's
        // FT (31 octets + header), within the 32-octet array; it writes
        // exactly 160 samples.
        unsafe {
            sys::Decoder_Interface_Decode(self.0.as_ptr(), frame.as_ptr(), out.as_mut_ptr(), 0)
        }
    }
}

impl Drop for AmrNb {
    fn drop(&mut self) {
        // SAFETY: the pointer came from Decoder_Interface_init, freed once.
        unsafe { sys::Decoder_Interface_exit(self.0.as_ptr()) }
    }
}

/// An opencore-amrwb decoder (3GPP TS 26.173, Apache-2.0).
pub struct AmrWb(NonNull<c_void>);

/// Longest AMR-WB storage-format frame (header + 477 bits) is 61 octets.
pub const AMR_WB_FRAME_BUF: usize = 64;

// SAFETY: see the module comment (instance-private state).
unsafe impl Send for AmrWb {}

impl AmrWb {
    pub fn new() -> Option<AmrWb> {
        // SAFETY: no arguments; returns a fresh state or NULL.
        NonNull::new(unsafe { sys::D_IF_init() }).map(AmrWb)
    }

    /// Decode one storage-format frame into 320 samples at 16 kHz.
    pub fn decode(&mut self, frame: &[u8; AMR_WB_FRAME_BUF], out: &mut [i16; 320]) {
        // SAFETY: reads at most 61 octets of the 64; writes 320 samples.
        unsafe { sys::D_IF_decode(self.0.as_ptr(), frame.as_ptr(), out.as_mut_ptr(), 0) }
    }
}

impl Drop for AmrWb {
    fn drop(&mut self) {
        // SAFETY: the pointer came from D_IF_init, freed once.
        unsafe { sys::D_IF_exit(self.0.as_ptr()) }
    }
}

/// A libgsm GSM 06.10 decoder.
pub struct Gsm(NonNull<c_void>);

// SAFETY: see the module comment (instance-private state).
unsafe impl Send for Gsm {}

impl Gsm {
    pub fn new() -> Option<Gsm> {
        // SAFETY: no arguments; returns a fresh state or NULL.
        NonNull::new(unsafe { sys::gsm_create() }).map(Gsm)
    }

    /// Decode one 33-octet frame into 160 samples; false when the frame
    /// lacks the 0xD signature (libgsm then writes nothing useful).
    pub fn decode(&mut self, frame: &[u8; 33], out: &mut [i16; 160]) -> bool {
        // SAFETY: libgsm reads exactly 33 octets and writes 160 samples.
        unsafe { sys::gsm_decode(self.0.as_ptr(), frame.as_ptr(), out.as_mut_ptr()) == 0 }
    }
}

impl Drop for Gsm {
    fn drop(&mut self) {
        // SAFETY: the pointer came from gsm_create, freed once.
        unsafe { sys::gsm_destroy(self.0.as_ptr()) }
    }
}

/// Longest Speex frame we decode: 640 samples (ultra-wideband, 20 ms).
pub const SPEEX_MAX_FRAME: usize = 640;

/// What one libspeex decode call gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpeexFrame {
    Decoded,
    /// The terminator code, or no bits left: the packet is done.
    End,
    Corrupt,
}

/// A libspeex decoder with its bit reader.
pub struct Speex {
    state: NonNull<c_void>,
    // Boxed so its address stays put while libspeex holds it (it keeps no
    // pointer to it between calls, but the box costs nothing per packet).
    bits: Box<sys::SpeexBits>,
    frame_size: usize,
}

// SAFETY: see the module comment (instance-private state and buffer).
unsafe impl Send for Speex {}

impl Speex {
    /// `mode_id` 0 narrowband, 1 wideband, 2 ultra-wideband.
    pub fn new(mode_id: i32) -> Option<Speex> {
        if !(0..=2).contains(&mode_id) {
            return None;
        }
        // SAFETY: valid mode ids return a pointer to a static mode table.
        let mode = unsafe { sys::speex_lib_get_mode(mode_id) };
        if mode.is_null() {
            return None;
        }
        // SAFETY: `mode` is the library's static table.
        let state = NonNull::new(unsafe { sys::speex_decoder_init(mode) })?;
        let mut bits = Box::new(sys::SpeexBits {
            chars: std::ptr::null_mut(),
            nb_bits: 0,
            char_ptr: 0,
            bit_ptr: 0,
            owner: 0,
            overflow: 0,
            buf_size: 0,
            reserved1: 0,
            reserved2: std::ptr::null_mut(),
        });
        // SAFETY: initialises the struct we own (allocates its buffer).
        unsafe { sys::speex_bits_init(&mut *bits) };
        let mut frame_size: c_int = 0;
        // SAFETY: SPEEX_GET_FRAME_SIZE (3) writes one int.
        unsafe {
            sys::speex_decoder_ctl(state.as_ptr(), 3, (&raw mut frame_size).cast());
        }
        let me = Speex {
            state,
            bits,
            frame_size: usize::try_from(frame_size).unwrap_or(0),
        };
        (1..=SPEEX_MAX_FRAME).contains(&me.frame_size).then_some(me)
    }

    /// Samples per frame (160, 320 or 640).
    pub fn frame_size(&self) -> usize {
        self.frame_size
    }

    /// Load one RTP payload into the bit reader.
    pub fn load(&mut self, payload: &[u8]) {
        let len = c_int::try_from(payload.len()).unwrap_or(c_int::MAX);
        // SAFETY: libspeex copies `len` octets from the slice into its own
        // (growing) buffer.
        unsafe { sys::speex_bits_read_from(&mut *self.bits, payload.as_ptr().cast(), len) }
    }

    /// Decode the next frame of the loaded payload into `out`.
    pub fn next_frame(&mut self, out: &mut [i16; SPEEX_MAX_FRAME]) -> SpeexFrame {
        // SAFETY: reads the bit buffer we own.
        if unsafe { sys::speex_bits_remaining(&mut *self.bits) } < 5 {
            return SpeexFrame::End;
        }
        // SAFETY: writes frame_size (<= 640) samples.
        match unsafe {
            sys::speex_decode_int(self.state.as_ptr(), &mut *self.bits, out.as_mut_ptr())
        } {
            0 => SpeexFrame::Decoded,
            -1 => SpeexFrame::End,
            _ => SpeexFrame::Corrupt,
        }
    }

    /// One frame of libspeex's packet-loss concealment.
    pub fn conceal(&mut self, out: &mut [i16; SPEEX_MAX_FRAME]) {
        // SAFETY: a NULL bits pointer asks for concealment; writes
        // frame_size (<= 640) samples.
        unsafe {
            sys::speex_decode_int(self.state.as_ptr(), std::ptr::null_mut(), out.as_mut_ptr());
        }
    }
}

impl Drop for Speex {
    fn drop(&mut self) {
        // SAFETY: both were initialised in `new`, freed once.
        unsafe {
            sys::speex_bits_destroy(&mut *self.bits);
            sys::speex_decoder_destroy(self.state.as_ptr());
        }
    }
}

/// What bcg729 is given for one 10 ms frame.
#[cfg(feature = "gpl-codecs")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum G729Frame<'a> {
    Speech(&'a [u8; 10]),
    /// Annex B SID frame (2 octets).
    Sid(&'a [u8; 2]),
    /// Not received: bcg729 conceals a lost speech frame, or continues
    /// comfort noise when the last frame it saw was a SID (that is how
    /// bcg729 tells an erasure from an untransmitted DTX frame).
    Missing,
}

/// A bcg729 G.729/A/B decoder (GPL-3: only with the gpl-codecs feature).
#[cfg(feature = "gpl-codecs")]
pub struct Bcg729(NonNull<c_void>);

// SAFETY: see the module comment (instance-private state).
#[cfg(feature = "gpl-codecs")]
unsafe impl Send for Bcg729 {}

#[cfg(feature = "gpl-codecs")]
impl Bcg729 {
    pub fn new() -> Option<Bcg729> {
        // SAFETY: no arguments; returns a fresh state or NULL.
        NonNull::new(unsafe { sys::initBcg729DecoderChannel() }).map(Bcg729)
    }

    /// Decode one 10 ms frame into 80 samples.
    pub fn decode(&mut self, frame: G729Frame<'_>, out: &mut [i16; 80]) {
        let zero = [0u8; 10];
        // (bits, length, erasure flag, SID flag): bcg729 reads `length`
        // octets (10 or 2), or none when the length is 0.
        let (bits, len, erased, sid) = match frame {
            G729Frame::Speech(b) => (b.as_ptr(), 10, 0, 0),
            G729Frame::Sid(b) => (b.as_ptr(), 2, 0, 1),
            G729Frame::Missing => (zero.as_ptr(), 0, 1, 0),
        };
        // SAFETY: `bits` points at >= `len` octets; writes 80 samples.
        unsafe { sys::bcg729Decoder(self.0.as_ptr(), bits, len, erased, sid, 0, out.as_mut_ptr()) }
    }
}

#[cfg(feature = "gpl-codecs")]
impl Drop for Bcg729 {
    fn drop(&mut self) {
        // SAFETY: the pointer came from initBcg729DecoderChannel, freed once.
        unsafe { sys::closeBcg729DecoderChannel(self.0.as_ptr()) }
    }
}
