//! Audio decoders: payload bytes of one RTP packet in, linear PCM out.
//! G.711 and L16 are pure functions; G.722 and Opus keep per-stream state.

pub mod g722;

use g722::G722Decoder;

/// What a payload type carries, as far as audio output is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecKind {
    Pcmu,
    Pcma,
    G722,
    /// Linear 16-bit big-endian (RFC 3551 L16), `channels` interleaved.
    L16 {
        channels: u8,
    },
    /// Opus always decodes at 48 kHz (RFC 7587); `channels` is what we
    /// decode to (2 when the SDP said stereo=1).
    Opus {
        channels: u8,
    },
    /// Comfort noise (RFC 3389): rendered as silence.
    Cn,
    /// RFC 4733 events: not audio.
    TelephoneEvent,
    /// Something we cannot decode (G.729, iLBC, video...).
    Unsupported,
}

impl CodecKind {
    /// From an rtpmap encoding name (case-insensitive) or RFC 3551 static PT.
    pub fn from_name(name: &str, channels: u8, fmtp: Option<&str>) -> CodecKind {
        match name.to_ascii_uppercase().as_str() {
            "PCMU" => CodecKind::Pcmu,
            "PCMA" => CodecKind::Pcma,
            "G722" => CodecKind::G722,
            "L16" => CodecKind::L16 {
                channels: channels.max(1),
            },
            "OPUS" => {
                // RFC 7587: the rtpmap always says /2; the fmtp says whether
                // the sender actually sends stereo.
                let stereo = fmtp.is_some_and(|f| {
                    f.split(';')
                        .any(|p| p.trim().eq_ignore_ascii_case("stereo=1"))
                });
                CodecKind::Opus {
                    channels: if stereo { 2 } else { 1 },
                }
            }
            "CN" => CodecKind::Cn,
            "TELEPHONE-EVENT" => CodecKind::TelephoneEvent,
            _ => CodecKind::Unsupported,
        }
    }

    pub fn from_static_pt(pt: u8) -> CodecKind {
        match pt {
            0 => CodecKind::Pcmu,
            8 => CodecKind::Pcma,
            9 => CodecKind::G722,
            10 => CodecKind::L16 { channels: 2 },
            11 => CodecKind::L16 { channels: 1 },
            13 => CodecKind::Cn,
            _ => CodecKind::Unsupported,
        }
    }

    /// Output sample rate. G.722's RTP clock is 8000 (RFC 3551 errata) but
    /// it carries 16 kHz audio.
    pub fn sample_rate(self, rtp_clock: u32) -> u32 {
        match self {
            CodecKind::G722 => 16_000,
            CodecKind::Opus { .. } => 48_000,
            CodecKind::Pcmu | CodecKind::Pcma => 8000,
            _ => rtp_clock.max(1),
        }
    }

    pub fn channels(self) -> u8 {
        match self {
            CodecKind::L16 { channels } | CodecKind::Opus { channels } => channels,
            _ => 1,
        }
    }

    pub fn is_audio(self) -> bool {
        !matches!(
            self,
            CodecKind::Cn | CodecKind::TelephoneEvent | CodecKind::Unsupported
        )
    }
}

/// ITU-T G.711 µ-law to linear (the expansion of table 2a, 14-bit output
/// scaled to 16 bits as every implementation does).
pub fn ulaw_to_linear(u: u8) -> i16 {
    let u = !u;
    let t = ((i32::from(u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4);
    (if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 }) as i16
}

/// ITU-T G.711 A-law to linear (13-bit output scaled to 16 bits).
pub fn alaw_to_linear(a: u8) -> i16 {
    let a = a ^ 0x55;
    let mut t = i32::from(a & 0x0F) << 4;
    let seg = (a & 0x70) >> 4;
    if seg == 0 {
        t += 8;
    } else {
        t = (t + 0x108) << (seg - 1);
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

/// Errors from the stateful decoders.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("opus decoder: {0}")]
    Opus(String),
}

/// A decoder for one stream and payload type.
pub enum Decoder {
    G711 {
        alaw: bool,
    },
    G722(Box<G722Decoder>),
    L16 {
        channels: u8,
    },
    Opus {
        dec: Box<opus::Decoder>,
        channels: u8,
    },
    Silent,
}

impl Decoder {
    pub fn new(kind: CodecKind) -> Result<Decoder, CodecError> {
        Ok(match kind {
            CodecKind::Pcmu => Decoder::G711 { alaw: false },
            CodecKind::Pcma => Decoder::G711 { alaw: true },
            CodecKind::G722 => Decoder::G722(Box::default()),
            CodecKind::L16 { channels } => Decoder::L16 { channels },
            CodecKind::Opus { channels } => {
                let ch = if channels == 2 {
                    opus::Channels::Stereo
                } else {
                    opus::Channels::Mono
                };
                let dec =
                    opus::Decoder::new(48_000, ch).map_err(|e| CodecError::Opus(e.to_string()))?;
                Decoder::Opus {
                    dec: Box::new(dec),
                    channels,
                }
            }
            _ => Decoder::Silent,
        })
    }

    /// Decode one payload, appending interleaved samples to `out`. A payload
    /// the decoder rejects yields no samples (the layout fills the gap with
    /// silence); it never panics.
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) {
        match self {
            Decoder::G711 { alaw: false } => out.extend(payload.iter().map(|&b| ulaw_to_linear(b))),
            Decoder::G711 { alaw: true } => out.extend(payload.iter().map(|&b| alaw_to_linear(b))),
            Decoder::G722(d) => d.decode(payload, out),
            Decoder::L16 { channels } => {
                let frame = 2 * usize::from((*channels).max(1));
                let whole = payload.len() / frame * frame;
                out.extend(
                    payload[..whole]
                        .chunks_exact(2)
                        .map(|c| i16::from_be_bytes([c[0], c[1]])),
                );
            }
            Decoder::Opus { dec, channels } => {
                // 120 ms at 48 kHz is the longest Opus packet.
                let ch = usize::from(*channels);
                let mut buf = vec![0i16; 5760 * ch];
                if let Ok(n) = dec.decode(payload, &mut buf, false) {
                    out.extend_from_slice(&buf[..(n * ch).min(buf.len())]);
                }
            }
            Decoder::Silent => {}
        }
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
}
