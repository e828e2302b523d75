//! RFC 3389 comfort noise. A CN packet (a SID frame) carries no samples of
//! its own: it says that the sender stopped sending speech and how loud
//! the background is, so the silence until the next speech packet is
//! filled with noise at that level instead of digital silence.
//!
//! The level octet is in -dBov, 0 dBov being a full-scale square wave
//! (RFC 3389 section 3.1), so the noise's RMS is 32767 * 10^(-level/20).
//! The optional reflection coefficients are not used: the RFC lets a
//! decoder lower the model order, down to 0 (white noise).

use crate::{AudioDecoder, CodecError, Concealment};

/// Comfort noise for one stream at `rate` Hz.
pub struct ComfortNoise {
    rate: u32,
    /// Peak of the uniform noise (RMS * sqrt 3), 0 before the first SID.
    peak: f32,
    seed: u32,
}

impl ComfortNoise {
    pub fn new(rate: u32) -> ComfortNoise {
        ComfortNoise {
            rate: rate.max(1),
            peak: 0.0,
            seed: 0x1234_5678,
        }
    }

    /// The RMS the last SID asked for (0 before any).
    pub fn rms(&self) -> f32 {
        self.peak / 3f32.sqrt()
    }

    /// Uniform in [-1, 1) (xorshift32: enough for noise).
    fn next(&mut self) -> f32 {
        let mut x = self.seed;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.seed = x;
        (x as f32 / u32::MAX as f32) * 2.0 - 1.0
    }
}

impl AudioDecoder for ComfortNoise {
    /// Takes the SID's level; appends nothing (the noise fills the gap
    /// that follows, through [`AudioDecoder::conceal`]).
    fn decode(&mut self, payload: &[u8], _out: &mut Vec<i16>) -> Result<(), CodecError> {
        let Some(&level) = payload.first() else {
            return Err(CodecError::Malformed("empty comfort noise payload"));
        };
        let dbov = f32::from(level & 0x7F);
        self.peak = (32767.0 * 10f32.powf(-dbov / 20.0) * 3f32.sqrt()).min(32767.0);
        Ok(())
    }

    /// Noise at the last SID's level (silence before the first SID).
    fn conceal(&mut self, frames: usize, out: &mut Vec<i16>) {
        out.reserve(frames);
        for _ in 0..frames {
            let v = self.next() * self.peak;
            out.push(v.round().clamp(-32768.0, 32767.0) as i16);
        }
    }

    fn sample_rate(&self) -> u32 {
        self.rate
    }

    fn channels(&self) -> u8 {
        1
    }

    fn concealment(&self) -> Concealment {
        Concealment::Noise
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    #[test]
    fn noise_at_the_sid_level() {
        let mut cn = ComfortNoise::new(8000);
        let mut out = Vec::new();
        cn.conceal(160, &mut out);
        assert!(out.iter().all(|&v| v == 0), "silence before any SID");
        for level in [30u8, 50, 70] {
            assert!(cn.decode(&[level, 0x80, 0x81], &mut out).is_ok());
            assert_eq!(out.len(), 160, "a SID has no samples of its own");
            let mut noise = Vec::new();
            cn.conceal(8000, &mut noise);
            let want = 32767.0 * 10f64.powf(-f64::from(level) / 20.0);
            let got = rms(&noise);
            assert!(
                (got / want - 1.0).abs() < 0.05,
                "level {level}: {got} vs {want}"
            );
        }
        assert!(cn.decode(&[], &mut out).is_err());
    }
}
