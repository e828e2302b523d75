//! AMR and AMR-WB: our RFC 4867 depacketiser (both payload formats, CMR,
//! a table of contents of several frames, SID and NO_DATA frames, the
//! optional CRC octets) feeding opencore's decoders one frame at a time in
//! the RFC 4867 section 5 storage format.
//!
//! Every table-of-contents entry is 20 ms of output: NO_DATA frames (and
//! frames lost in transit, through `conceal`) are handed to the decoder
//! as NO_DATA, which continues comfort noise after a SID or conceals a
//! lost speech frame, as the 3GPP decoders specify.

use crate::ffi::{AMR_NB_FRAME_BUF, AMR_WB_FRAME_BUF, AmrNb, AmrWb};
use crate::{AmrParams, AudioDecoder, CodecError, Concealment, Unavailable};

/// Speech bits per frame type (3GPP TS 26.101 table 1a: 0-7 speech, 8
/// SID, 9-11 other systems' SIDs, 15 NO_DATA).
const NB_BITS: [u16; 16] = [
    95, 103, 118, 134, 148, 159, 204, 244, 39, 43, 38, 37, 0, 0, 0, 0,
];
/// TS 26.201: 0-8 speech, 9 SID, 14 SPEECH_LOST, 15 NO_DATA.
const WB_BITS: [u16; 16] = [
    132, 177, 253, 285, 317, 365, 397, 461, 477, 40, 0, 0, 0, 0, 0, 0,
];
const NO_DATA: u8 = 15;
/// More frames than this in one packet (1.28 s) is not a real sender.
pub const MAX_FRAMES: usize = 64;

/// One table-of-contents entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TocEntry {
    pub ft: u8,
    /// Q: false marks a damaged frame.
    pub good: bool,
}

/// MSB-first bit reader over a payload.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn left(&self) -> usize {
        self.data.len() * 8 - self.pos
    }

    fn read(&mut self, n: usize) -> Option<u32> {
        if n > self.left() {
            return None;
        }
        let mut v = 0u32;
        for _ in 0..n {
            let bit = (self.data[self.pos / 8] >> (7 - self.pos % 8)) & 1;
            v = (v << 1) | u32::from(bit);
            self.pos += 1;
        }
        Some(v)
    }
}

/// A frame type this decoder can take, or an error for the whole packet
/// (RFC 4867 section 4.3.2: a packet with a reserved FT is discarded).
fn check_ft(ft: u8, wideband: bool) -> Result<(), CodecError> {
    let ok = if wideband {
        ft <= 9 || ft >= 14
    } else {
        ft <= 11 || ft == NO_DATA
    };
    if ok {
        Ok(())
    } else {
        Err(CodecError::Malformed(
            "AMR frame type reserved for future use",
        ))
    }
}

/// A stream decoder for AMR (8 kHz) or AMR-WB (16 kHz).
pub struct AmrDecoder {
    params: AmrParams,
    nb: Option<AmrNb>,
    wb: Option<AmrWb>,
    /// Storage-format frame being built (big enough for either codec).
    frame: [u8; AMR_WB_FRAME_BUF],
    pcm: [i16; 320],
    toc: [TocEntry; MAX_FRAMES],
}

impl AmrDecoder {
    pub fn new(params: AmrParams) -> Result<AmrDecoder, CodecError> {
        if params.robust_sorting {
            return Err(Unavailable::Mode("AMR robust-sorting").into());
        }
        if params.interleaving {
            return Err(Unavailable::Mode("AMR interleaving").into());
        }
        let init = CodecError::Init("opencore AMR decoder");
        let (nb, wb) = if params.wideband {
            (None, Some(AmrWb::new().ok_or(init)?))
        } else {
            (Some(AmrNb::new().ok_or(init)?), None)
        };
        Ok(AmrDecoder {
            params,
            nb,
            wb,
            frame: [0; AMR_WB_FRAME_BUF],
            pcm: [0; 320],
            toc: [TocEntry { ft: 0, good: false }; MAX_FRAMES],
        })
    }

    fn frame_samples(&self) -> usize {
        if self.params.wideband { 320 } else { 160 }
    }

    /// Decode `self.frame` (storage format, already filled) and append.
    fn run_frame(&mut self, out: &mut Vec<i16>) {
        let n = self.frame_samples();
        if let Some(d) = &mut self.wb {
            d.decode(&self.frame, &mut self.pcm);
        } else if let Some(d) = &mut self.nb {
            let mut buf = [0u8; AMR_NB_FRAME_BUF];
            buf.copy_from_slice(&self.frame[..AMR_NB_FRAME_BUF]);
            let mut pcm = [0i16; 160];
            d.decode(&buf, &mut pcm);
            self.pcm[..160].copy_from_slice(&pcm);
        }
        out.extend_from_slice(&self.pcm[..n]);
    }

    /// Start a storage-format frame: the ToC octet, speech bits cleared.
    fn start_frame(&mut self, e: TocEntry) {
        self.frame = [0; AMR_WB_FRAME_BUF];
        self.frame[0] = (e.ft << 3) | (u8::from(e.good) << 2);
    }
}

/// Where the speech bits of a parsed payload start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub frames: usize,
    /// Bit offset of the first speech frame.
    pub speech_at: usize,
    /// Bits the header and the speech frames take (padding excluded).
    pub used_bits: usize,
}

fn frame_bits(ft: u8, wideband: bool) -> usize {
    let table = if wideband { &WB_BITS } else { &NB_BITS };
    usize::from(table[usize::from(ft & 15)])
}

/// Parse an RFC 4867 payload's header (CMR, table of contents, CRCs) into
/// `toc` and check that every speech frame it announces is present. Pure:
/// shared by the decoder and the payload-shape guess.
pub fn parse(
    payload: &[u8],
    params: AmrParams,
    toc: &mut [TocEntry; MAX_FRAMES],
) -> Result<Parsed, CodecError> {
    let octet = params.octet_aligned;
    let mut bits = Bits {
        data: payload,
        pos: 0,
    };
    // CMR: a request for the other direction's mode; not ours to use.
    bits.read(if octet { 8 } else { 4 })
        .ok_or(CodecError::Malformed("AMR payload empty"))?;
    let mut n = 0;
    loop {
        let (f, ft, q) = if octet {
            let v = bits
                .read(8)
                .ok_or(CodecError::Malformed("AMR ToC truncated"))?;
            (v >> 7, (v >> 3) & 15, (v >> 2) & 1)
        } else {
            let v = bits
                .read(6)
                .ok_or(CodecError::Malformed("AMR ToC truncated"))?;
            (v >> 5, (v >> 1) & 15, v & 1)
        };
        let ft = ft as u8;
        check_ft(ft, params.wideband)?;
        if n == MAX_FRAMES {
            return Err(CodecError::Malformed("AMR packet with too many frames"));
        }
        toc[n] = TocEntry { ft, good: q == 1 };
        n += 1;
        if f == 0 {
            break;
        }
    }
    if params.crc {
        // One CRC octet per frame with speech bits; the transport already
        // checked the packet, so they are skipped.
        let with_bits = toc[..n]
            .iter()
            .filter(|e| frame_bits(e.ft, params.wideband) > 0);
        let skip = 8 * with_bits.count();
        if skip > bits.left() {
            return Err(CodecError::Malformed("AMR CRC truncated"));
        }
        bits.pos += skip;
    }
    let need: usize = toc[..n]
        .iter()
        .map(|e| {
            let b = frame_bits(e.ft, params.wideband);
            if octet { b.div_ceil(8) * 8 } else { b }
        })
        .sum();
    if need > bits.left() {
        return Err(CodecError::Malformed("AMR speech frames truncated"));
    }
    Ok(Parsed {
        frames: n,
        speech_at: bits.pos,
        used_bits: bits.pos + need,
    })
}

impl AudioDecoder for AmrDecoder {
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        // The whole packet is checked before any of it is decoded, so a
        // rejected packet appends nothing.
        let p = parse(payload, self.params, &mut self.toc)?;
        let mut bits = Bits {
            data: payload,
            pos: p.speech_at,
        };
        out.reserve(p.frames * self.frame_samples());
        for i in 0..p.frames {
            let e = self.toc[i];
            self.start_frame(e);
            let nbits = frame_bits(e.ft, self.params.wideband);
            for k in 0..nbits {
                let bit = bits.read(1).unwrap_or(0) as u8;
                self.frame[1 + k / 8] |= bit << (7 - k % 8);
            }
            if self.params.octet_aligned {
                bits.pos += (8 - nbits % 8) % 8;
            }
            self.run_frame(out);
        }
        Ok(())
    }

    /// NO_DATA frames: the decoder's concealment or comfort noise.
    fn conceal(&mut self, frames: usize, out: &mut Vec<i16>) {
        let n = self.frame_samples();
        let target = out.len() + frames;
        out.reserve(frames.div_ceil(n) * n);
        while out.len() < target {
            self.start_frame(TocEntry {
                ft: NO_DATA,
                good: true,
            });
            self.run_frame(out);
        }
        out.truncate(target);
    }

    fn sample_rate(&self) -> u32 {
        if self.params.wideband { 16_000 } else { 8000 }
    }

    fn channels(&self) -> u8 {
        1
    }

    fn concealment(&self) -> Concealment {
        Concealment::Plc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(octet_aligned: bool) -> AmrDecoder {
        AmrDecoder::new(AmrParams {
            octet_aligned,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn no_data_only_packets_and_reserved_types() {
        // Bandwidth-efficient: CMR 1111, ToC F=0 FT=1111 Q=1, padding.
        let mut d = dec(false);
        let mut out = Vec::new();
        d.decode(&[0xF7, 0xC0], &mut out).unwrap();
        assert_eq!(out.len(), 160);
        // Octet-aligned: CMR octet, ToC octet F=0 FT=15 Q=1.
        let mut d = dec(true);
        d.decode(&[0xF0, 0x7C], &mut out).unwrap();
        assert_eq!(out.len(), 320);
        // FT 13 is reserved: the packet is refused, nothing appended.
        assert!(d.decode(&[0xF0, 0x6C], &mut out).is_err());
        // A 12.2 frame whose speech bits are missing.
        assert!(d.decode(&[0xF0, 0x3C, 1, 2, 3], &mut out).is_err());
        assert_eq!(out.len(), 320);
        d.conceal(200, &mut out);
        assert_eq!(out.len(), 520);
    }

    #[test]
    fn unsupported_modes_say_why() {
        let e = AmrDecoder::new(AmrParams {
            interleaving: true,
            octet_aligned: true,
            ..Default::default()
        })
        .err()
        .unwrap();
        assert_eq!(e.to_string(), "AMR interleaving is not supported");
    }
}
