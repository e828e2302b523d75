//! ITU-T G.722 (64 kbit/s, mode 1) decoder, written from the algorithm
//! description of the Recommendation (sub-band ADPCM: blocks INVQAL/INVQBL,
//! LOGSCL/LOGSCH, SCALEL/SCALEH, the adaptive predictor of block 4 and the
//! receive QMF). The tables are the Recommendation's. Pure and
//! panic-free: every index is masked to its table size and arithmetic
//! saturates as the Recommendation specifies.

const QMF: [i32; 12] = [3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11];

/// Inverse quantizer outputs for the 6-bit lower-band code (table 6/G.722
/// scaled as in the fixed-point description).
const QM6: [i32; 64] = [
    -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232,
    -9360, -8576, -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776,
    -2400, -2032, -1688, -1360, -1040, -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280,
    11192, 10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456, 4944, 4464, 4008, 3576, 3168, 2776,
    2400, 2032, 1688, 1360, 1040, 728, 432, 136, -432, -136,
];
/// 4-bit truncated lower-band code: feeds the predictor and the scale factor.
const QM4: [i32; 16] = [
    0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584,
    1200, 0,
];
const QM2: [i32; 4] = [-7408, -1616, 7408, 1616];
const RL42: [usize; 16] = [0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0];
const WL: [i32; 8] = [-60, -30, 58, 172, 334, 538, 1198, 3042];
const RH2: [usize; 4] = [2, 1, 2, 1];
const WH: [i32; 3] = [0, -214, 798];
const ILB: [i32; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834,
    2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];

fn sat(v: i32) -> i32 {
    v.clamp(-32768, 32767)
}

#[derive(Clone, Default)]
struct Band {
    s: i32,
    sp: i32,
    sz: i32,
    r: [i32; 3],
    a: [i32; 3],
    ap: [i32; 3],
    p: [i32; 3],
    d: [i32; 7],
    b: [i32; 7],
    bp: [i32; 7],
    nb: i32,
    det: i32,
}

impl Band {
    /// Block 4: reconstruct, adapt the pole and zero predictors, predict.
    fn update(&mut self, d: i32) {
        self.d[0] = d;
        self.r[0] = sat(self.s + d);
        self.p[0] = sat(self.sz + d);
        let sg = |v: i32| v >> 15;
        // UPPOL2
        let wd1 = sat(self.a[1] << 2);
        let mut wd2 = if sg(self.p[0]) == sg(self.p[1]) {
            -wd1
        } else {
            wd1
        };
        wd2 = wd2.min(32767);
        let mut wd3 = if sg(self.p[0]) == sg(self.p[2]) {
            128
        } else {
            -128
        };
        wd3 += wd2 >> 7;
        wd3 += (self.a[2] * 32512) >> 15;
        self.ap[2] = wd3.clamp(-12288, 12288);
        // UPPOL1
        let wd1 = if sg(self.p[0]) == sg(self.p[1]) {
            192
        } else {
            -192
        };
        let wd2 = (self.a[1] * 32640) >> 15;
        let lim = sat(15360 - self.ap[2]);
        self.ap[1] = sat(wd1 + wd2).clamp(-lim, lim);
        // UPZERO
        let step = if d == 0 { 0 } else { 128 };
        let sg0 = sg(d);
        for i in 1..7 {
            let w = if sg(self.d[i]) == sg0 { step } else { -step };
            self.bp[i] = sat(w + ((self.b[i] * 32640) >> 15));
        }
        // DELAYA
        for i in (1..7).rev() {
            self.d[i] = self.d[i - 1];
            self.b[i] = self.bp[i];
        }
        for i in (1..3).rev() {
            self.r[i] = self.r[i - 1];
            self.p[i] = self.p[i - 1];
            self.a[i] = self.ap[i];
        }
        // FILTEP
        let w1 = (self.a[1] * sat(self.r[1] + self.r[1])) >> 15;
        let w2 = (self.a[2] * sat(self.r[2] + self.r[2])) >> 15;
        self.sp = sat(w1 + w2);
        // FILTEZ
        let mut sz = 0;
        for i in (1..7).rev() {
            sz += (self.b[i] * sat(self.d[i] + self.d[i])) >> 15;
        }
        self.sz = sat(sz);
        // PREDIC
        self.s = sat(self.sp + self.sz);
    }
}

/// Scale factor from the log scale factor (SCALEL/SCALEH).
fn scale(nb: i32, shift_base: i32) -> i32 {
    let wd1 = ((nb >> 6) & 31) as usize;
    let wd2 = shift_base - (nb >> 11);
    let wd3 = if wd2 < 0 {
        ILB[wd1] << (-wd2).min(15)
    } else {
        ILB[wd1] >> wd2.min(31)
    };
    wd3 << 2
}

/// A G.722 decoder: 8-bit codes in, 16 kHz linear PCM out (two samples per
/// code). Stateful across packets of one stream, as the codec is.
#[derive(Clone)]
pub struct G722Decoder {
    band: [Band; 2],
    x: [i32; 24],
}

impl Default for G722Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl G722Decoder {
    pub fn new() -> Self {
        let mut band = [Band::default(), Band::default()];
        band[0].det = 32;
        band[1].det = 8;
        G722Decoder { band, x: [0; 24] }
    }

    pub fn decode(&mut self, codes: &[u8], out: &mut Vec<i16>) {
        out.reserve(codes.len() * 2);
        for &code in codes {
            let ilowr = usize::from(code & 0x3F);
            let ihigh = usize::from((code >> 6) & 0x03);
            // Lower band: INVQBL (6-bit output) and INVQAL (4-bit, predictor).
            let lo = &mut self.band[0];
            let rlow = (lo.s + ((lo.det * QM6[ilowr]) >> 15)).clamp(-16384, 16383);
            let il4 = ilowr >> 2;
            let dlowt = (lo.det * QM4[il4]) >> 15;
            // LOGSCL, SCALEL
            lo.nb = (((lo.nb * 127) >> 7) + WL[RL42[il4]]).clamp(0, 18432);
            lo.det = scale(lo.nb, 8);
            lo.update(dlowt);
            // Higher band: INVQAH, LOGSCH, SCALEH.
            let hi = &mut self.band[1];
            let dhigh = (hi.det * QM2[ihigh]) >> 15;
            let rhigh = (dhigh + hi.s).clamp(-16384, 16383);
            hi.nb = (((hi.nb * 127) >> 7) + WH[RH2[ihigh]]).clamp(0, 22528);
            hi.det = scale(hi.nb, 10);
            hi.update(dhigh);
            // Receive QMF: two output samples per code.
            self.x.copy_within(2.., 0);
            self.x[22] = rlow + rhigh;
            self.x[23] = rlow - rhigh;
            let (mut x1, mut x2) = (0i32, 0i32);
            for i in 0..12 {
                x2 += self.x[2 * i] * QMF[i];
                x1 += self.x[2 * i + 1] * QMF[11 - i];
            }
            out.push(sat(x1 >> 11) as i16);
            out.push(sat(x2 >> 11) as i16);
        }
    }
}
