//! Audio decoders: payload bytes of one RTP packet in, linear PCM out.
//!
//! Every codec implements [`AudioDecoder`]; [`Decoder::new`] builds the
//! right one from a [`CodecKind`], which comes from the SDP rtpmap/fmtp
//! ([`CodecKind::from_rtpmap`]), an RFC 3551 static payload type
//! ([`CodecKind::from_static_pt`]) or, for a stream without signalling, a
//! labelled guess from its payload sizes and timing ([`guess::guess`]).
//!
//! Written here (pure Rust): G.711, G.722, G.726 (16-40 kbit/s, both
//! packings), DVI4, L16, RFC 3389 comfort noise, the RFC 4867 AMR
//! depacketiser. Through Debian's libraries (the only `unsafe` code is in
//! [`ffi`]): Opus (libopus), AMR / AMR-WB (opencore, Apache-2.0), GSM
//! 06.10 (libgsm), Speex (libspeex, BSD) and, only with the opt-in
//! `gpl-codecs` feature, G.729/A/B (bcg729, GPL-3). iLBC, G.723.1, EVS and
//! SILK are not decoded: the constructor says why.

#![deny(unsafe_code)]

pub mod amr;
pub mod cn;
pub mod dvi4;
mod ffi;
pub mod g722;
pub mod g726;
#[cfg(feature = "gpl-codecs")]
pub mod g729;
pub mod gsm;
pub mod guess;
mod kind;
// libopus is built for Linux only: the CI type-checks macOS without a C
// toolchain for it.
#[cfg(target_os = "linux")]
pub mod opus_dec;
mod pcm;
pub mod speex;

pub use kind::{AmrParams, CodecKind, G726Packing, Unavailable, fmtp_param};
pub use pcm::{alaw_to_linear, ulaw_to_linear};

/// What a decoder puts in place of audio it did not receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Concealment {
    /// The codec's own packet-loss concealment, and its comfort noise
    /// after a SID frame (AMR, G.729B, Speex, Opus; GSM 06.11 repetition).
    Plc,
    /// Noise at the level of the last RFC 3389 SID.
    Noise,
    /// Zeros (G.711, G.722, G.726, DVI4, L16).
    Silence,
}

/// Errors from the decoders and their constructors.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// This build cannot decode the codec (the call page shows why).
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// A payload the codec's format does not allow.
    #[error("malformed payload: {0}")]
    Malformed(&'static str),
    #[error("opus decoder: {0}")]
    Opus(String),
    #[error("{0}: the library could not create a decoder")]
    Init(&'static str),
}

/// One stream's decoder.
///
/// Samples are interleaved when `channels() > 1`, at `sample_rate()`.
pub trait AudioDecoder: Send {
    /// Decode one RTP payload, appending its samples to `out`. On error
    /// nothing is appended (the caller may conceal the packet instead).
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError>;

    /// Append exactly `frames` sample frames (per channel) standing for
    /// audio that was not received: lost packets, or the gap after a SID
    /// frame. What fills it is [`AudioDecoder::concealment`]. Codecs with
    /// frames run whole concealment frames and drop the surplus.
    fn conceal(&mut self, frames: usize, out: &mut Vec<i16>);

    fn sample_rate(&self) -> u32;

    fn channels(&self) -> u8;

    fn concealment(&self) -> Concealment;
}

/// A decoder for one stream and payload type, built from its [`CodecKind`].
pub struct Decoder {
    kind: CodecKind,
    inner: Box<dyn AudioDecoder>,
}

impl Decoder {
    /// The decoder for `kind`, or why this build has none
    /// ([`CodecError::Unavailable`]); the RTP clock is taken as unknown
    /// (see [`Decoder::with_clock`]).
    pub fn new(kind: CodecKind) -> Result<Decoder, CodecError> {
        Decoder::with_clock(kind, 0)
    }

    /// The decoder for `kind` on a stream whose rtpmap gave `rtp_clock`
    /// (0: unknown). Only L16 and comfort noise take their rate from the
    /// clock (44100 and 8000 when it is unknown); every other codec's
    /// rate is its own.
    pub fn with_clock(kind: CodecKind, rtp_clock: u32) -> Result<Decoder, CodecError> {
        let clock_or = |default: u32| if rtp_clock == 0 { default } else { rtp_clock };
        if let Some(why) = kind.unavailable() {
            return Err(why.into());
        }
        let inner: Box<dyn AudioDecoder> = match kind {
            CodecKind::Pcmu => Box::new(pcm::G711Decoder { alaw: false }),
            CodecKind::Pcma => Box::new(pcm::G711Decoder { alaw: true }),
            CodecKind::G722 => Box::<g722::G722Decoder>::default(),
            CodecKind::L16 { channels } => Box::new(pcm::L16Decoder {
                rate: clock_or(44_100),
                channels,
            }),
            #[cfg(target_os = "linux")]
            CodecKind::Opus { channels } => Box::new(opus_dec::OpusDecoder::new(channels)?),
            #[cfg(not(target_os = "linux"))]
            CodecKind::Opus { .. } => {
                return Err(CodecError::Opus("this build has no libopus".into()));
            }
            CodecKind::G726 { kbps, packing } => Box::new(
                g726::G726Decoder::new(kbps, packing)
                    .ok_or(Unavailable::Mode("G.726 at this bit rate"))?,
            ),
            CodecKind::Dvi4 { rate } => Box::new(dvi4::Dvi4Decoder::new(rate)),
            CodecKind::Gsm => Box::new(gsm::GsmDecoder::new()?),
            CodecKind::Speex { rate } => Box::new(speex::SpeexDecoder::new(rate)?),
            CodecKind::Amr(p) => Box::new(amr::AmrDecoder::new(p)?),
            #[cfg(feature = "gpl-codecs")]
            CodecKind::G729 => Box::new(g729::G729Decoder::new()?),
            CodecKind::Cn => Box::new(cn::ComfortNoise::new(clock_or(8000))),
            // `unavailable()` answered for the rest; keep a reason anyway.
            _ => return Err(Unavailable::NotSupported.into()),
        };
        Ok(Decoder { kind, inner })
    }

    pub fn kind(&self) -> CodecKind {
        self.kind
    }

    /// Decode one payload, appending its samples to `out`; a payload the
    /// decoder rejects appends nothing (the layout leaves that packet's
    /// time silent). Use [`Decoder::try_decode`] to know why.
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) {
        let _rejected = self.try_decode(payload, out).is_err();
    }

    /// [`AudioDecoder::decode`], with its guarantee that a rejected
    /// payload leaves `out` as it was enforced here for every codec.
    pub fn try_decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        let len = out.len();
        let r = self.inner.decode(payload, out);
        if r.is_err() {
            out.truncate(len);
        }
        r
    }

    /// [`AudioDecoder::conceal`].
    pub fn conceal(&mut self, frames: usize, out: &mut Vec<i16>) {
        self.inner.conceal(frames, out);
    }

    /// The output rate.
    pub fn sample_rate(&self) -> u32 {
        self.inner.sample_rate()
    }

    pub fn channels(&self) -> u8 {
        self.inner.channels()
    }

    pub fn concealment(&self) -> Concealment {
        self.inner.concealment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// G.711 anchor points from the Recommendation's tables: µ-law 0xFF and
    /// A-law 0xD5 are the smallest positive steps, 0x80/0x80 the largest.
    #[test]
    fn g711_anchor_values() {
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
    }

    #[test]
    fn constructor_reasons() {
        let why = |k: CodecKind| Decoder::new(k).err().map(|e| e.to_string());
        assert_eq!(
            why(CodecKind::G7231).as_deref(),
            Some("G.723.1: no decoder with an Apache-2.0-compatible licence; statistics only")
        );
        assert_eq!(
            why(CodecKind::Unsupported).as_deref(),
            Some("codec not supported")
        );
        let g729 = why(CodecKind::G729);
        if cfg!(feature = "gpl-codecs") {
            assert_eq!(g729, None);
        } else {
            assert_eq!(
                g729.as_deref(),
                Some(
                    "G.729 is decoded only by a build with the gpl-codecs feature (bcg729, GPL-3)"
                )
            );
        }
        for k in [
            CodecKind::Gsm,
            CodecKind::Speex { rate: 16_000 },
            CodecKind::Amr(AmrParams::default()),
            CodecKind::Dvi4 { rate: 16_000 },
            CodecKind::Opus { channels: 1 },
        ] {
            assert_eq!(why(k), None, "{k:?}");
        }
    }

    #[test]
    fn opus_channels_follow_the_fmtp() {
        for (fmtp, ch) in [(None, 1), (Some("stereo=1"), 2)] {
            let d = Decoder::new(CodecKind::from_rtpmap("opus", 48_000, 2, fmtp)).unwrap();
            assert_eq!(d.channels(), ch);
            assert_eq!(d.sample_rate(), 48_000);
        }
    }

    #[test]
    fn rejected_payloads_append_nothing() {
        let mut out = vec![7i16];
        let amr = CodecKind::Amr(AmrParams::default());
        for k in [CodecKind::Gsm, amr, CodecKind::Dvi4 { rate: 8000 }] {
            let mut d = Decoder::new(k).unwrap();
            assert!(
                d.try_decode(&[0x12, 0x34, 0x56], &mut out).is_err(),
                "{k:?}"
            );
            d.decode(&[], &mut out);
            assert_eq!(out, vec![7], "{k:?}");
        }
    }
}
