//! ITU-T G.726 ADPCM decoder at 16, 24, 32 and 40 kbit/s, written from the
//! Recommendation's block description (INVQ, RECON, ADDA/ANTILOG, the
//! scale-factor adaptation FUNCTW/FILTD/LIMB/FILTE, the adaptation speed
//! control FILTA/FILTB/SUBTC, the pole/zero predictor UPA1/UPA2/UPB and
//! the tone/transition detector TONE/TRANS). Linear output only (no
//! synchronous tandem adjustment, which only applies to G.711 output).
//!
//! The Recommendation's arithmetic is 16-bit: the state keeps the words
//! it defines as `i16` and sums wrap where its fixed-point words wrap, so
//! the output matches spandsp (which passes the ITU test sequences)
//! sample for sample (tests/reference.rs). At 40 kbit/s the reconstruction
//! keeps 15 magnitude bits of DQ, 14 at the other rates, as spandsp does.

use crate::{AudioDecoder, CodecError, Concealment, G726Packing};

/// Per-rate tables of the Recommendation: log of the reconstructed
/// magnitude (table 8-11 "DQLN"), scale factor multiplier "WI" (already
/// scaled by 32) and the speed control "FI" values.
struct Tables {
    bits: u32,
    dqln: &'static [i32],
    wi: &'static [i32],
    fi: &'static [i32],
}

const T16: Tables = Tables {
    bits: 2,
    dqln: &[116, 365, 365, 116],
    wi: &[-704, 14048, 14048, -704],
    fi: &[0x000, 0xE00, 0xE00, 0x000],
};
const T24: Tables = Tables {
    bits: 3,
    dqln: &[-2048, 135, 273, 373, 373, 273, 135, -2048],
    wi: &[-128, 960, 4384, 18624, 18624, 4384, 960, -128],
    fi: &[0x000, 0x200, 0x400, 0xE00, 0xE00, 0x400, 0x200, 0x000],
};
const T32: Tables = Tables {
    bits: 4,
    dqln: &[
        -2048, 4, 135, 213, 273, 323, 373, 425, 425, 373, 323, 273, 213, 135, 4, -2048,
    ],
    wi: &[
        -384, 576, 1312, 2048, 3584, 6336, 11360, 35904, 35904, 11360, 6336, 3584, 2048, 1312, 576,
        -384,
    ],
    fi: &[
        0x000, 0x000, 0x000, 0x200, 0x200, 0x200, 0x600, 0xE00, 0xE00, 0x600, 0x200, 0x200, 0x200,
        0x000, 0x000, 0x000,
    ],
};
const T40: Tables = Tables {
    bits: 5,
    dqln: &[
        -2048, -66, 28, 104, 169, 224, 274, 318, 358, 395, 429, 459, 488, 514, 539, 566, 566, 539,
        514, 488, 459, 429, 395, 358, 318, 274, 224, 169, 104, 28, -66, -2048,
    ],
    wi: &[
        448, 448, 768, 1248, 1280, 1312, 1856, 3200, 4512, 5728, 7008, 8960, 11456, 14080, 16928,
        22272, 22272, 16928, 14080, 11456, 8960, 7008, 5728, 4512, 3200, 1856, 1312, 1280, 1248,
        768, 448, 448,
    ],
    fi: &[
        0x000, 0x000, 0x000, 0x000, 0x000, 0x200, 0x200, 0x200, 0x200, 0x200, 0x400, 0x600, 0x800,
        0xA00, 0xC00, 0xC00, 0xC00, 0xC00, 0xA00, 0x800, 0x600, 0x400, 0x200, 0x200, 0x200, 0x200,
        0x200, 0x000, 0x000, 0x000, 0x000, 0x000,
    ],
};

/// Number of significant bits of a non-negative value (0 for 0).
fn bit_len(v: i32) -> i32 {
    32 - v.max(0).leading_zeros() as i32
}

/// FMULT: a 14-bit predictor coefficient `an` times a value in the
/// Recommendation's 4-bit exponent / 6-bit mantissa format `srn`.
fn fmult(an: i16, srn: i16) -> i16 {
    let an32 = i32::from(an);
    let anmag = if an > 0 { an32 } else { (-an32) & 0x1FFF };
    let anexp = bit_len(anmag) - 6;
    let anmant = if anmag == 0 {
        32
    } else if anexp >= 0 {
        anmag >> anexp
    } else {
        anmag << -anexp
    };
    let srn32 = i32::from(srn);
    let wanexp = anexp + ((srn32 >> 6) & 0xF) - 13;
    let wanmant = (anmant * (srn32 & 0x3F) + 0x30) >> 4;
    let retval = if wanexp >= 0 {
        (wanmant << wanexp) & 0x7FFF
    } else {
        wanmant >> -wanexp
    };
    (if (an ^ srn) < 0 { -retval } else { retval }) as i16
}

/// The 4-bit exponent / 6-bit mantissa form of a magnitude (FLOATA/B).
fn to_float(mag: i32, negative: bool) -> i16 {
    if mag == 0 {
        return if negative { 0xFC20u16 as i16 } else { 0x20 };
    }
    let exp = bit_len(mag);
    let v = (exp << 6) + ((mag << 6) >> exp);
    (if negative { v - 0x400 } else { v }) as i16
}

/// One sample's reconstruction, which the state updates take.
struct Reconstructed {
    /// Quantizer scale factor.
    y: i32,
    /// Quantized difference (sign and 15-bit magnitude).
    dq: i32,
    /// Reconstructed signal.
    sr: i32,
    /// Difference signal plus the zero predictor's estimate.
    dqsez: i32,
}

/// Decoder state: the delayed values of the Recommendation's blocks.
#[derive(Clone)]
struct State {
    yl: i32,
    yu: i16,
    dms: i16,
    dml: i16,
    ap: i16,
    a: [i16; 2],
    b: [i16; 6],
    pk: [i16; 2],
    dq: [i16; 6],
    sr: [i16; 2],
    td: bool,
}

impl Default for State {
    fn default() -> State {
        State {
            yl: 34816,
            yu: 544,
            dms: 0,
            dml: 0,
            ap: 0,
            a: [0; 2],
            b: [0; 6],
            pk: [0; 2],
            dq: [32; 6],
            sr: [32; 2],
            td: false,
        }
    }
}

impl State {
    /// Zero (6 taps) and pole (2 taps) predictor sums, wrapped to 16 bits.
    fn predict(&self) -> (i16, i16) {
        let sezi = (0..6).fold(0i32, |acc, i| {
            acc + i32::from(fmult(self.b[i] >> 2, self.dq[i]))
        });
        let sezi = sezi as i16;
        let pole = (i32::from(fmult(self.a[1] >> 2, self.sr[1]))
            + i32::from(fmult(self.a[0] >> 2, self.sr[0]))) as i16;
        (sezi, (i32::from(sezi) + i32::from(pole)) as i16)
    }

    /// MIX: the quantizer scale factor from its fast and slow parts.
    fn step_size(&self) -> i32 {
        if self.ap >= 256 {
            return i32::from(self.yu);
        }
        let mut y = self.yl >> 6;
        let dif = i32::from(self.yu) - y;
        let al = i32::from(self.ap) >> 2;
        if dif > 0 {
            y += (dif * al) >> 6;
        } else if dif < 0 {
            y += (dif * al + 0x3F) >> 6;
        }
        y
    }

    /// TRANS: whether a large difference marks a transition of a tone.
    fn transition(&self, mag: i32) -> bool {
        let ylint = self.yl >> 15;
        let ylfrac = (self.yl >> 10) & 0x1F;
        let thr = if ylint > 9 {
            31 << 10
        } else {
            (32 + ylfrac) << ylint
        };
        let dqthr = (thr + (thr >> 1)) >> 1;
        self.td && mag > dqthr
    }

    /// UPA2 / LIMC: the new second pole coefficient.
    fn update_a2(&self, pk0: i16, dqsez: i32) -> i16 {
        let pks1 = pk0 ^ self.pk[0];
        let mut a2p = self.a[1].wrapping_sub(self.a[1] >> 7);
        if dqsez != 0 {
            let fa1 = if pks1 != 0 {
                self.a[0]
            } else {
                self.a[0].wrapping_neg()
            };
            a2p = if fa1 < -8191 {
                a2p.wrapping_sub(0x100)
            } else if fa1 > 8191 {
                a2p.wrapping_add(0xFF)
            } else {
                a2p.wrapping_add(fa1 >> 5)
            };
            a2p = if pk0 ^ self.pk[1] != 0 {
                match a2p {
                    ..=-12160 => -12288,
                    12416.. => 12288,
                    _ => a2p - 0x80,
                }
            } else {
                match a2p {
                    ..=-12416 => -12288,
                    12160.. => 12288,
                    _ => a2p + 0x80,
                }
            };
        }
        a2p
    }

    /// UPA1, LIMD and UPB: adapt the predictor (not after a transition).
    fn adapt_predictor(&mut self, pk0: i16, dq: i32, dqsez: i32, bits: u32) -> i16 {
        let a2p = self.update_a2(pk0, dqsez);
        self.a[1] = a2p;
        self.a[0] = self.a[0].wrapping_sub(self.a[0] >> 8);
        if dqsez != 0 {
            let up = pk0 ^ self.pk[0] == 0;
            self.a[0] = self.a[0].wrapping_add(if up { 192 } else { -192 });
        }
        let a1ul = 15360i16.wrapping_sub(a2p);
        if self.a[0] < a1ul.wrapping_neg() {
            self.a[0] = a1ul.wrapping_neg();
        } else if self.a[0] > a1ul {
            self.a[0] = a1ul;
        }
        let leak = if bits == 5 { 9 } else { 8 };
        for i in 0..6 {
            self.b[i] = self.b[i].wrapping_sub(self.b[i] >> leak);
            if dq & 0x7FFF != 0 {
                let same = (dq ^ i32::from(self.dq[i])) >= 0;
                self.b[i] = self.b[i].wrapping_add(if same { 128 } else { -128 });
            }
        }
        a2p
    }

    /// All the state updates after one sample (the Recommendation's
    /// blocks in its order).
    fn update(&mut self, s: Reconstructed, t: &Tables, code: usize) {
        let Reconstructed { y, dq, sr, dqsez } = s;
        let (wi, fi, bits) = (t.wi[code], t.fi[code], t.bits);
        let pk0 = i16::from(dqsez < 0);
        let mag = dq & 0x7FFF;
        let tr = self.transition(mag);
        // FUNCTW, FILTD, LIMB, FILTE.
        self.yu = ((y + ((wi - y) >> 5)) as i16).clamp(544, 5120);
        self.yl += i32::from(self.yu) + ((-self.yl) >> 6);
        let a2p = if tr {
            self.a = [0; 2];
            self.b = [0; 6];
            0
        } else {
            self.adapt_predictor(pk0, dq, dqsez, bits)
        };
        self.dq.copy_within(0..5, 1);
        self.dq[0] = to_float(mag, dq < 0);
        self.sr[1] = self.sr[0];
        self.sr[0] = if sr > -32768 {
            to_float(sr.abs(), sr < 0)
        } else {
            0xFC20u16 as i16
        };
        self.pk = [pk0, self.pk[0]];
        // TONE, FILTA, FILTB, SUBTC.
        self.td = !tr && a2p < -11776;
        self.dms = self
            .dms
            .wrapping_add((fi as i16).wrapping_sub(self.dms) >> 5);
        self.dml = self
            .dml
            .wrapping_add(((fi << 2) as i16).wrapping_sub(self.dml) >> 7);
        self.ap = if tr {
            256
        } else {
            let dms4 = i32::from(self.dms) << 2;
            let fast = y < 1536
                || self.td
                || (dms4 - i32::from(self.dml)).abs() >= i32::from(self.dml) >> 3;
            if fast {
                self.ap + ((0x200 - self.ap) >> 4)
            } else {
                self.ap + ((-self.ap) >> 4)
            }
        };
    }

    /// One code word to one 16-bit sample.
    fn decode(&mut self, code: u8, t: &Tables) -> i16 {
        let code = usize::from(code) & ((1 << t.bits) - 1);
        let sign = code & (1 << (t.bits - 1)) != 0;
        let (sezi, sei) = self.predict();
        let y = self.step_size();
        let dq = reconstruct(sign, t.dqln[code], y);
        let se = sei >> 1;
        // RECON: at 40 kbit/s DQ keeps 15 magnitude bits, 14 otherwise.
        let mag_mask = if t.bits == 5 { 0x7FFF } else { 0x3FFF };
        let sr = if dq < 0 {
            i32::from(se) - (i32::from(dq) & mag_mask)
        } else {
            i32::from(se) + i32::from(dq)
        } as i16;
        let dqsez = (i32::from(sr) + i32::from(sezi >> 1) - i32::from(se)) as i16;
        let rec = Reconstructed {
            y,
            dq: i32::from(dq),
            sr: i32::from(sr),
            dqsez: i32::from(dqsez),
        };
        self.update(rec, t, code);
        (i32::from(sr) << 2) as i16
    }
}

/// ADDA, ANTILOG: the quantized difference from its log and the scale.
fn reconstruct(sign: bool, dqln: i32, y: i32) -> i16 {
    let dql = (dqln + (y >> 2)) as i16;
    if dql < 0 {
        return if sign { i16::MIN } else { 0 };
    }
    let dex = (dql >> 7) & 15;
    let dqt = 128 + (dql & 127);
    let dq = (i32::from(dqt) << 7) >> (14 - dex);
    (if sign { dq - 0x8000 } else { dq }) as i16
}

/// A G.726 stream decoder.
pub struct G726Decoder {
    state: State,
    tables: &'static Tables,
    packing: G726Packing,
}

impl G726Decoder {
    /// `kbps` 16, 24, 32 or 40; anything else is refused.
    pub fn new(kbps: u8, packing: G726Packing) -> Option<G726Decoder> {
        let tables = match kbps {
            16 => &T16,
            24 => &T24,
            32 => &T32,
            40 => &T40,
            _ => return None,
        };
        Some(G726Decoder {
            state: State::default(),
            tables,
            packing,
        })
    }
}

impl AudioDecoder for G726Decoder {
    /// Every whole code word of the payload (RTP senders use payloads of
    /// whole octets holding whole code words: 8 samples per 3 or 5 octets
    /// at 24 and 40 kbit/s).
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        let bits = self.tables.bits;
        let mask = (1u32 << bits) - 1;
        let mut acc = 0u32;
        let mut have = 0u32;
        out.reserve(payload.len() * 8 / bits as usize);
        for &byte in payload {
            match self.packing {
                G726Packing::Rfc3551 => acc |= u32::from(byte) << have,
                G726Packing::Aal2 => acc = (acc << 8) | u32::from(byte),
            }
            have += 8;
            while have >= bits {
                let code = match self.packing {
                    G726Packing::Rfc3551 => {
                        let c = acc & mask;
                        acc >>= bits;
                        c
                    }
                    G726Packing::Aal2 => (acc >> (have - bits)) & mask,
                };
                have -= bits;
                out.push(self.state.decode(code as u8, self.tables));
            }
            if self.packing == G726Packing::Aal2 {
                acc &= (1 << have) - 1;
            }
        }
        Ok(())
    }

    fn conceal(&mut self, frames: usize, out: &mut Vec<i16>) {
        out.resize(out.len() + frames, 0);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packings_differ_only_in_bit_order() {
        // 32 kbit/s: one octet holds two code words, low nibble first in
        // RFC 3551, high nibble first in AAL2.
        let mut a = G726Decoder::new(32, G726Packing::Rfc3551).unwrap();
        let mut b = G726Decoder::new(32, G726Packing::Aal2).unwrap();
        let payload: Vec<u8> = (0..80u8).map(|i| i.wrapping_mul(37)).collect();
        let swapped: Vec<u8> = payload.iter().map(|x| x.rotate_left(4)).collect();
        let (mut oa, mut ob) = (Vec::new(), Vec::new());
        a.decode(&payload, &mut oa).unwrap();
        b.decode(&swapped, &mut ob).unwrap();
        assert_eq!(oa.len(), 160);
        assert_eq!(oa, ob);
    }

    #[test]
    fn sample_counts_per_rate() {
        for (kbps, octets) in [(16, 40), (24, 60), (32, 80), (40, 100)] {
            for packing in [G726Packing::Rfc3551, G726Packing::Aal2] {
                let mut d = G726Decoder::new(kbps, packing).unwrap();
                let mut out = Vec::new();
                d.decode(&vec![0x5A; octets], &mut out).unwrap();
                assert_eq!(out.len(), 160, "{kbps} kbit/s");
            }
        }
        assert!(G726Decoder::new(48, G726Packing::Aal2).is_none());
    }
}
