//! DVI4 (IMA ADPCM, RFC 3551 section 4.5.1): each payload starts with the
//! encoder state, a big-endian 16-bit predicted value, the step index and
//! a reserved octet, then 4-bit samples with the first one in the high
//! nibble. The header makes every packet decodable on its own, so loss
//! never desynchronises the decoder.

use crate::{AudioDecoder, CodecError, Concealment};

/// The IMA ADPCM step sizes.
const STEP: [i32; 89] = [
    7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 19, 21, 23, 25, 28, 31, 34, 37, 41, 45, 50, 55, 60, 66,
    73, 80, 88, 97, 107, 118, 130, 143, 157, 173, 190, 209, 230, 253, 279, 307, 337, 371, 408, 449,
    494, 544, 598, 658, 724, 796, 876, 963, 1060, 1166, 1282, 1411, 1552, 1707, 1878, 2066, 2272,
    2499, 2749, 3024, 3327, 3660, 4026, 4428, 4871, 5358, 5894, 6484, 7132, 7845, 8630, 9493,
    10442, 11487, 12635, 13899, 15289, 16818, 18500, 20350, 22385, 24623, 27086, 29794, 32767,
];
/// Step index change per code magnitude.
const INDEX_STEP: [i32; 8] = [-1, -1, -1, -1, 2, 4, 6, 8];

/// A DVI4 stream decoder at `rate` Hz (the rate only labels the output:
/// the algorithm is the same at every rate).
pub struct Dvi4Decoder {
    rate: u32,
}

impl Dvi4Decoder {
    pub fn new(rate: u32) -> Dvi4Decoder {
        Dvi4Decoder { rate: rate.max(1) }
    }
}

/// One nibble: (predicted value, step index) -> sample.
fn step(pred: &mut i32, index: &mut i32, code: u8) -> i16 {
    let ss = STEP[*index as usize];
    let mut e = ss >> 3;
    if code & 1 != 0 {
        e += ss >> 2;
    }
    if code & 2 != 0 {
        e += ss >> 1;
    }
    if code & 4 != 0 {
        e += ss;
    }
    if code & 8 != 0 {
        e = -e;
    }
    *pred = (*pred + e).clamp(-32768, 32767);
    *index = (*index + INDEX_STEP[usize::from(code & 7)]).clamp(0, 88);
    *pred as i16
}

impl AudioDecoder for Dvi4Decoder {
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        let [p0, p1, idx, _reserved, samples @ ..] = payload else {
            return Err(CodecError::Malformed(
                "DVI4 payload shorter than its header",
            ));
        };
        let mut pred = i32::from(i16::from_be_bytes([*p0, *p1]));
        // A step index past the table is a corrupt header: clamp rather
        // than refuse, as the samples after it are still close.
        let mut index = i32::from(*idx).min(88);
        out.reserve(samples.len() * 2);
        for &b in samples {
            out.push(step(&mut pred, &mut index, b >> 4));
            out.push(step(&mut pred, &mut index, b & 0x0F));
        }
        Ok(())
    }

    fn conceal(&mut self, frames: usize, out: &mut Vec<i16>) {
        out.resize(out.len() + frames, 0);
    }

    fn sample_rate(&self) -> u32 {
        self.rate
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

    #[test]
    fn header_sets_the_state_and_high_nibble_comes_first() {
        let mut d = Dvi4Decoder::new(8000);
        let mut out = Vec::new();
        // Predictor 1000, index 0 (step 7): code 0x7 adds 7>>3 + 7>>2 +
        // 7>>1 + 7 = 0+1+3+7 = 11; then code 0x8 (negative zero) subtracts
        // step(7+8=index 8 -> 16)>>3 = 2.
        d.decode(&[0x03, 0xE8, 0, 0, 0x78], &mut out).unwrap();
        assert_eq!(out, vec![1011, 1009]);
        assert!(d.decode(&[1, 2, 3], &mut out).is_err());
        assert_eq!(out.len(), 2);
        // A hostile step index is clamped, not an out-of-bounds read.
        d.decode(&[0x7F, 0xFF, 200, 0, 0x77], &mut out).unwrap();
        assert_eq!(out[2..], [32767, 32767]);
    }
}
