//! The codecs that need no library: G.711 (pure functions), L16, and the
//! trait glue for our G.722 decoder.

use crate::g722::G722Decoder;
use crate::{AudioDecoder, CodecError, Concealment};

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

/// Appends `frames * channels` zero samples: the concealment of the codecs
/// without a loss concealment of their own.
pub(crate) fn silence(frames: usize, channels: u8, out: &mut Vec<i16>) {
    out.resize(out.len() + frames * usize::from(channels.max(1)), 0);
}

/// G.711 µ-law or A-law. Loss: silence (G.711 Appendix I PLC is not
/// implemented).
pub struct G711Decoder {
    pub alaw: bool,
}

/// Both laws expanded once for all 256 codes: a lookup per sample instead
/// of a call through a function pointer (the per-sample call was 4-7 % of
/// an import with every output).
static TABLES: std::sync::LazyLock<[[i16; 256]; 2]> = std::sync::LazyLock::new(|| {
    let mut t = [[0i16; 256]; 2];
    for b in 0..=255u8 {
        t[0][usize::from(b)] = ulaw_to_linear(b);
        t[1][usize::from(b)] = alaw_to_linear(b);
    }
    t
});

impl AudioDecoder for G711Decoder {
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        let table = &TABLES[usize::from(self.alaw)];
        out.extend(payload.iter().map(|&b| table[usize::from(b)]));
        Ok(())
    }

    fn conceal(&mut self, frames: usize, out: &mut Vec<i16>) {
        silence(frames, 1, out);
    }

    fn sample_rate(&self) -> u32 {
        8000
    }

    fn channels(&self) -> u8 {
        1
    }

    fn concealment(&self) -> Concealment {
        Concealment::Silence
    }
}

/// RFC 3551 L16: big-endian 16-bit samples, `channels` interleaved.
pub struct L16Decoder {
    pub rate: u32,
    pub channels: u8,
}

impl AudioDecoder for L16Decoder {
    /// Whole sample frames only (a trailing partial frame is dropped).
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        let frame = 2 * usize::from(self.channels.max(1));
        let whole = payload.len() / frame * frame;
        out.extend(
            payload[..whole]
                .chunks_exact(2)
                .map(|c| i16::from_be_bytes([c[0], c[1]])),
        );
        Ok(())
    }

    fn conceal(&mut self, frames: usize, out: &mut Vec<i16>) {
        silence(frames, self.channels, out);
    }

    fn sample_rate(&self) -> u32 {
        self.rate.max(1)
    }

    fn channels(&self) -> u8 {
        self.channels.max(1)
    }

    fn concealment(&self) -> Concealment {
        Concealment::Silence
    }
}

impl AudioDecoder for G722Decoder {
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        G722Decoder::decode(self, payload, out);
        Ok(())
    }

    fn conceal(&mut self, frames: usize, out: &mut Vec<i16>) {
        silence(frames, 1, out);
    }

    fn sample_rate(&self) -> u32 {
        16_000
    }

    fn channels(&self) -> u8 {
        1
    }

    fn concealment(&self) -> Concealment {
        Concealment::Silence
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decoder's tables give what the G.711 expansion formulas give,
    /// for every code of both laws.
    #[test]
    fn g711_tables_match_the_formulas() {
        let all: Vec<u8> = (0..=255).collect();
        for alaw in [false, true] {
            let mut out = Vec::new();
            G711Decoder { alaw }.decode(&all, &mut out).unwrap();
            let f = if alaw { alaw_to_linear } else { ulaw_to_linear };
            let want: Vec<i16> = all.iter().map(|&b| f(b)).collect();
            assert_eq!(out, want, "alaw={alaw}");
        }
    }
}
