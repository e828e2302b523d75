//! What a payload type carries: the codec description the media step has
//! (an SDP rtpmap with its fmtp, or an RFC 3551 static payload type)
//! turned into one small `Copy` value, and why a codec cannot be decoded
//! when it cannot.

/// How G.726 code words are packed into octets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum G726Packing {
    /// RFC 3551 ("G726-32" etc.): the first code word in the least
    /// significant bits of the first octet. ffmpeg calls it `g726le`.
    Rfc3551,
    /// ITU-T I.366.2 Annex E ("AAL2-G726-32" etc.): the first code word in
    /// the most significant bits.
    Aal2,
}

/// AMR / AMR-WB session parameters (RFC 4867 section 8.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AmrParams {
    pub wideband: bool,
    /// `octet-align=1`; `crc=1`, `robust-sorting=1` and `interleaving`
    /// imply it.
    pub octet_aligned: bool,
    /// `crc=1`: one CRC octet per speech frame after the table of contents.
    pub crc: bool,
    /// `robust-sorting=1`: not decoded (no sender we know of uses it).
    pub robust_sorting: bool,
    /// `interleaving=N`: not decoded.
    pub interleaving: bool,
}

/// What a payload type carries, as far as audio output is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    /// G.726 at `kbps` 16, 24, 32 or 40.
    G726 {
        kbps: u8,
        packing: G726Packing,
    },
    /// IMA ADPCM with the RFC 3551 DVI4 header, at `rate` Hz.
    Dvi4 {
        rate: u32,
    },
    /// GSM 06.10 full rate (RFC 3551 "GSM").
    Gsm,
    /// Speex (RFC 5574) at `rate` Hz: 8000 narrowband, 16000 wideband,
    /// 32000 ultra-wideband.
    Speex {
        rate: u32,
    },
    /// AMR (8 kHz) or AMR-WB (16 kHz), RFC 4867.
    Amr(AmrParams),
    /// G.729 / G.729A, with or without Annex B SID frames.
    G729,
    /// iLBC (RFC 3952), 20 or 30 ms frames.
    Ilbc {
        frame_ms: u8,
    },
    /// G.723.1 (5.3 / 6.3 kbit/s).
    G7231,
    /// Comfort noise (RFC 3389): no samples of its own; fills the silence
    /// after it (see `cn::ComfortNoise`).
    Cn,
    /// RFC 4733 events: not audio.
    TelephoneEvent,
    /// A codec we have no decoder for (EVS, SILK, video...).
    Unsupported,
}

/// Why a stream's audio cannot be decoded: the reason the call page shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// G.729: bcg729 is GPL-3, linked only by the opt-in feature.
    #[error("{0} is decoded only by a build with the gpl-codecs feature (bcg729, GPL-3)")]
    NeedsGplBuild(&'static str),
    /// iLBC, G.723.1: no decoder with a licence compatible with
    /// Apache-2.0 (see docs/media.md, "Codecs without a decoder").
    #[error("{0}: no decoder with an Apache-2.0-compatible licence; statistics only")]
    NoCleanDecoder(&'static str),
    /// A mode of a supported codec that we do not decode.
    #[error("{0} is not supported")]
    Mode(&'static str),
    #[error("codec not supported")]
    NotSupported,
    #[error("not audio")]
    NotAudio,
}

/// The value of `key` in an fmtp string (`a=1; b=2`), case-insensitive.
pub fn fmtp_param<'a>(fmtp: Option<&'a str>, key: &str) -> Option<&'a str> {
    fmtp?.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then(|| v.trim())
    })
}

fn fmtp_flag(fmtp: Option<&str>, key: &str) -> bool {
    fmtp_param(fmtp, key).is_some_and(|v| v == "1")
}

impl CodecKind {
    /// From an SDP rtpmap (encoding name case-insensitive, clock rate,
    /// channels) and its fmtp. `clock` 0 means "not given": the RFC 3551
    /// default for the name is used.
    pub fn from_rtpmap(name: &str, clock: u32, channels: u8, fmtp: Option<&str>) -> CodecKind {
        let up = name.to_ascii_uppercase();
        let rate = |default: u32| if clock == 0 { default } else { clock };
        if let Some(k) = g726_from_name(&up) {
            return k;
        }
        match up.as_str() {
            "PCMU" => CodecKind::Pcmu,
            "PCMA" => CodecKind::Pcma,
            "G722" => CodecKind::G722,
            "L16" => CodecKind::L16 {
                channels: channels.max(1),
            },
            // RFC 7587: the rtpmap always says /2; the fmtp says whether
            // the sender actually sends stereo.
            "OPUS" => CodecKind::Opus {
                channels: if fmtp_flag(fmtp, "stereo") { 2 } else { 1 },
            },
            "DVI4" => CodecKind::Dvi4 { rate: rate(8000) },
            "GSM" => CodecKind::Gsm,
            "SPEEX" => CodecKind::Speex { rate: rate(8000) },
            "AMR" | "AMR-WB" => CodecKind::Amr(amr_params(up == "AMR-WB", fmtp)),
            "G729" | "G729A" => CodecKind::G729,
            "ILBC" => CodecKind::Ilbc {
                frame_ms: match fmtp_param(fmtp, "mode") {
                    Some("20") => 20,
                    _ => 30,
                },
            },
            "G723" => CodecKind::G7231,
            "CN" => CodecKind::Cn,
            "TELEPHONE-EVENT" => CodecKind::TelephoneEvent,
            _ => CodecKind::Unsupported,
        }
    }

    /// RFC 3551 static payload types (table 4). PT 2 (the old G.721) is
    /// left out: RFC 3551 withdrew it and senders disagree on its packing.
    pub fn from_static_pt(pt: u8) -> CodecKind {
        match pt {
            0 => CodecKind::Pcmu,
            3 => CodecKind::Gsm,
            4 => CodecKind::G7231,
            5 => CodecKind::Dvi4 { rate: 8000 },
            6 => CodecKind::Dvi4 { rate: 16_000 },
            8 => CodecKind::Pcma,
            9 => CodecKind::G722,
            10 => CodecKind::L16 { channels: 2 },
            11 => CodecKind::L16 { channels: 1 },
            13 => CodecKind::Cn,
            16 => CodecKind::Dvi4 { rate: 11_025 },
            17 => CodecKind::Dvi4 { rate: 22_050 },
            18 => CodecKind::G729,
            _ => CodecKind::Unsupported,
        }
    }

    /// Output sample rate. G.722's RTP clock is 8000 (RFC 3551 errata) but
    /// it carries 16 kHz audio; Opus always decodes at 48 kHz.
    pub fn sample_rate(self, rtp_clock: u32) -> u32 {
        match self {
            CodecKind::G722 => 16_000,
            CodecKind::Opus { .. } => 48_000,
            CodecKind::Pcmu
            | CodecKind::Pcma
            | CodecKind::G726 { .. }
            | CodecKind::Gsm
            | CodecKind::G729
            | CodecKind::Ilbc { .. }
            | CodecKind::G7231 => 8000,
            CodecKind::Amr(p) => {
                if p.wideband {
                    16_000
                } else {
                    8000
                }
            }
            CodecKind::Dvi4 { rate } | CodecKind::Speex { rate } => rate,
            _ => rtp_clock.max(1),
        }
    }

    pub fn channels(self) -> u8 {
        match self {
            CodecKind::L16 { channels } | CodecKind::Opus { channels } => channels,
            _ => 1,
        }
    }

    /// Whether the payload carries speech frames (decodable or not): false
    /// for comfort noise, events and unknown codecs.
    pub fn is_audio(self) -> bool {
        !matches!(
            self,
            CodecKind::Cn | CodecKind::TelephoneEvent | CodecKind::Unsupported
        )
    }

    /// Why this build cannot decode the codec, or `None` when it can.
    pub fn unavailable(self) -> Option<Unavailable> {
        match self {
            CodecKind::G729 if !cfg!(feature = "gpl-codecs") => {
                Some(Unavailable::NeedsGplBuild("G.729"))
            }
            CodecKind::Ilbc { .. } => Some(Unavailable::NoCleanDecoder("iLBC")),
            CodecKind::G7231 => Some(Unavailable::NoCleanDecoder("G.723.1")),
            CodecKind::Amr(p) if p.robust_sorting => Some(Unavailable::Mode("AMR robust-sorting")),
            CodecKind::Amr(p) if p.interleaving => Some(Unavailable::Mode("AMR interleaving")),
            CodecKind::Speex { rate } if ![8000, 16_000, 32_000].contains(&rate) => {
                Some(Unavailable::Mode("Speex at this clock rate"))
            }
            CodecKind::G726 { kbps, .. } if ![16, 24, 32, 40].contains(&kbps) => {
                Some(Unavailable::Mode("G.726 at this bit rate"))
            }
            CodecKind::TelephoneEvent => Some(Unavailable::NotAudio),
            CodecKind::Unsupported => Some(Unavailable::NotSupported),
            _ => None,
        }
    }
}

/// "G726-32", "AAL2-G726-24" (RFC 3551 section 4.5.4, RFC 4856).
fn g726_from_name(up: &str) -> Option<CodecKind> {
    let (packing, rest) = match up.strip_prefix("AAL2-") {
        Some(r) => (G726Packing::Aal2, r),
        None => (G726Packing::Rfc3551, up),
    };
    let kbps = rest.strip_prefix("G726-")?.parse::<u8>().ok()?;
    [16, 24, 32, 40]
        .contains(&kbps)
        .then_some(CodecKind::G726 { kbps, packing })
}

fn amr_params(wideband: bool, fmtp: Option<&str>) -> AmrParams {
    let crc = fmtp_flag(fmtp, "crc");
    let robust_sorting = fmtp_flag(fmtp, "robust-sorting");
    let interleaving = fmtp_param(fmtp, "interleaving").is_some();
    AmrParams {
        wideband,
        octet_aligned: fmtp_flag(fmtp, "octet-align") || crc || robust_sorting || interleaving,
        crc,
        robust_sorting,
        interleaving,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtpmap_names_and_fmtp() {
        let k = |n: &str, c: u32, f: Option<&str>| CodecKind::from_rtpmap(n, c, 1, f);
        assert_eq!(
            k("AAL2-G726-40", 8000, None),
            CodecKind::G726 {
                kbps: 40,
                packing: G726Packing::Aal2
            }
        );
        assert_eq!(
            k("g726-16", 8000, None),
            CodecKind::G726 {
                kbps: 16,
                packing: G726Packing::Rfc3551
            }
        );
        assert_eq!(k("G726-48", 8000, None), CodecKind::Unsupported);
        assert_eq!(k("DVI4", 16000, None), CodecKind::Dvi4 { rate: 16000 });
        assert_eq!(k("speex", 16000, None), CodecKind::Speex { rate: 16000 });
        let amr = k("AMR", 8000, Some("mode-set=7; octet-align=1"));
        assert_eq!(
            amr,
            CodecKind::Amr(AmrParams {
                octet_aligned: true,
                ..Default::default()
            })
        );
        assert_eq!(
            k("AMR-WB", 16000, None),
            CodecKind::Amr(AmrParams {
                wideband: true,
                ..Default::default()
            })
        );
        assert_eq!(
            k("opus", 48000, Some("useinbandfec=1")),
            CodecKind::Opus { channels: 1 }
        );
        assert_eq!(
            k("opus", 48000, Some("useinbandfec=1; stereo=1")),
            CodecKind::Opus { channels: 2 }
        );
        assert_eq!(
            k("iLBC", 8000, Some("mode=20")),
            CodecKind::Ilbc { frame_ms: 20 }
        );
        assert_eq!(k("iLBC", 8000, None), CodecKind::Ilbc { frame_ms: 30 });
        assert_eq!(k("EVS", 16000, None), CodecKind::Unsupported);
    }

    #[test]
    fn reasons() {
        assert_eq!(
            CodecKind::Ilbc { frame_ms: 20 }
                .unavailable()
                .map(|r| r.to_string()),
            Some("iLBC: no decoder with an Apache-2.0-compatible licence; statistics only".into())
        );
        assert_eq!(
            CodecKind::Unsupported.unavailable().map(|r| r.to_string()),
            Some("codec not supported".into())
        );
        assert_eq!(
            CodecKind::G729.unavailable().is_some(),
            !cfg!(feature = "gpl-codecs")
        );
        assert_eq!(CodecKind::Gsm.unavailable(), None);
    }
}
