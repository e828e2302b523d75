//! Call quality: ITU-T G.107 E-model R-factor and MOS per stream, from
//! per-packet arrival records run through a simulated fixed jitter buffer.
//! Formulas and constants are in docs/media.md. Pure.

use serde_json::json;

/// Codec impairment (G.113 appendix I planning values).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CodecImpairment {
    pub name: &'static str,
    /// Equipment impairment factor Ie.
    pub ie: f64,
    /// Packet-loss robustness factor Bpl.
    pub bpl: f64,
    /// Algorithmic delay (look-ahead) in ms, added to the one-way delay.
    pub lookahead_ms: f64,
}

impl CodecImpairment {
    /// G.711 with packet loss concealment (G.711 appendix I): Ie 0, Bpl 25.1.
    pub const G711_PLC: Self = Self {
        name: "G.711 PLC",
        ie: 0.0,
        bpl: 25.1,
        lookahead_ms: 0.0,
    };
    /// G.711 without concealment (silence insertion): Ie 0, Bpl 4.3.
    pub const G711: Self = Self {
        name: "G.711",
        ie: 0.0,
        bpl: 4.3,
        lookahead_ms: 0.0,
    };
    /// G.722 64 kbit/s rated on the narrowband scale: no coding impairment
    /// against G.711; its appendix III/IV PLC is assumed similar to
    /// G.711's, so Bpl 25.1 (our assumption, see docs/media.md).
    pub const G722: Self = Self {
        name: "G.722",
        ie: 0.0,
        bpl: 25.1,
        lookahead_ms: 1.5,
    };
    /// Opus on the narrowband scale: Ie 0, built-in PLC; Bpl 25.1 like
    /// G.711 PLC (our assumption); 6.5 ms look-ahead (RFC 6716 CELT/hybrid).
    pub const OPUS: Self = Self {
        name: "Opus",
        ie: 0.0,
        bpl: 25.1,
        lookahead_ms: 6.5,
    };
    /// G.729A (G.113 appendix I): Ie 11, Bpl 19, 5 ms look-ahead.
    pub const G729A: Self = Self {
        name: "G.729A",
        ie: 11.0,
        bpl: 19.0,
        lookahead_ms: 5.0,
    };

    /// By SDP encoding name; None for non-audio or unknown codecs.
    pub fn for_codec(name: &str) -> Option<Self> {
        Some(match name.to_ascii_uppercase().as_str() {
            "PCMU" | "PCMA" => Self::G711_PLC,
            "G722" => Self::G722,
            "OPUS" => Self::OPUS,
            "G729" | "G729A" => Self::G729A,
            "L16" => Self::G711_PLC,
            _ => return None,
        })
    }
}

/// G.107 default transmission rating without impairments: Ro - Is with all
/// parameters at their default values.
pub(crate) const R_DEFAULT: f64 = 93.2;

/// Delay impairment Id for one-way mouth-to-ear delay `ta_ms`, with echo
/// perfectly controlled (default TELR): G.107's Idd term (zero below 100 ms).
pub(crate) fn delay_impairment(ta_ms: f64) -> f64 {
    if ta_ms <= 100.0 {
        return 0.0;
    }
    let x = (ta_ms / 100.0).ln() / 2f64.ln();
    25.0 * ((1.0 + x.powi(6)).powf(1.0 / 6.0) - 3.0 * (1.0 + (x / 3.0).powi(6)).powf(1.0 / 6.0)
        + 2.0)
}

/// Effective equipment impairment (G.107 eq. 7-29):
/// Ie,eff = Ie + (95 - Ie) * Ppl / (Ppl / BurstR + Bpl).
pub(crate) fn ie_eff(c: CodecImpairment, ppl_pct: f64, burst_r: f64) -> f64 {
    let ppl = ppl_pct.max(0.0);
    let burst_r = if burst_r.is_finite() && burst_r > 0.0 {
        burst_r
    } else {
        1.0
    };
    if ppl == 0.0 {
        return c.ie;
    }
    c.ie + (95.0 - c.ie) * ppl / (ppl / burst_r + c.bpl)
}

/// R = Ro - Is - Id - Ie,eff + A (A = 0: a fixed-line user's expectation).
pub fn r_factor(c: CodecImpairment, ppl_pct: f64, burst_r: f64, delay_ms: f64) -> f64 {
    R_DEFAULT - delay_impairment(delay_ms) - ie_eff(c, ppl_pct, burst_r)
}

/// G.107 annex B: MOS (conversational quality estimate) from R.
pub(crate) fn mos_from_r(r: f64) -> f64 {
    if !r.is_finite() || r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6
    }
}

/// One received RTP packet.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Arrival {
    pub seq: u16,
    pub timestamp: u32,
    pub arrival_ns: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QualityParams {
    /// Fixed jitter buffer depth: a packet arriving later than its playout
    /// time (first packet's arrival + media time + this) is discarded.
    pub jitter_buffer_ms: f64,
    /// One-way network delay assumed (a single capture point cannot see it).
    pub network_delay_ms: f64,
}

impl Default for QualityParams {
    fn default() -> Self {
        QualityParams {
            jitter_buffer_ms: 60.0,
            network_delay_ms: 0.0,
        }
    }
}

/// Quality of one stream.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamQuality {
    pub received: u64,
    pub expected: u64,
    /// Network loss (never arrived), duplicates not counted.
    pub lost: u64,
    pub jb_discards: u64,
    /// (lost + jitter-buffer discards) / expected, in percent: what G.107's Ppl sees.
    pub loss_pct: f64,
    pub network_loss_pct: f64,
    pub burst_ratio: f64,
    /// RFC 3550 interarrival jitter (mean of the running estimate), ms.
    pub jitter_ms: f64,
    pub max_jitter_ms: f64,
    pub ptime_ms: f64,
    pub delay_ms: f64,
    pub r: f64,
    pub mos: f64,
}

impl StreamQuality {
    pub fn to_json(&self) -> serde_json::Value {
        let r3 = |v: f64| (v * 1000.0).round() / 1000.0;
        json!({
            "received": self.received,
            "expected": self.expected,
            "lost": self.lost,
            "jitter_buffer_discards": self.jb_discards,
            "loss_pct": r3(self.loss_pct),
            "network_loss_pct": r3(self.network_loss_pct),
            "burst_ratio": r3(self.burst_ratio),
            "jitter_ms": r3(self.jitter_ms),
            "max_jitter_ms": r3(self.max_jitter_ms),
            "ptime_ms": r3(self.ptime_ms),
            "delay_ms": r3(self.delay_ms),
            "r_factor": r3(self.r),
            "mos": r3(self.mos),
        })
    }
}

/// Burst ratio from a loss pattern (true = lost) per G.107 appendix I's
/// 2-state Markov model: p = P(lost | previous received), q = P(received |
/// previous lost), BurstR = 1 / (p + q). 1 for random loss, > 1 for bursts.
pub fn burst_ratio(lost: &[bool]) -> f64 {
    let (mut rr, mut rl, mut lr, mut ll) = (0u64, 0u64, 0u64, 0u64);
    for w in lost.windows(2) {
        match (w[0], w[1]) {
            (false, false) => rr += 1,
            (false, true) => rl += 1,
            (true, false) => lr += 1,
            (true, true) => ll += 1,
        }
    }
    if rl == 0 || lr + ll == 0 || rr + rl == 0 {
        return 1.0;
    }
    let p = rl as f64 / (rr + rl) as f64;
    let q = lr as f64 / (lr + ll) as f64;
    if p + q <= 0.0 { 1.0 } else { 1.0 / (p + q) }
}

/// Assess one stream from its arrivals (any order, duplicates allowed).
pub fn assess(
    arrivals: &[Arrival],
    clock_rate: u32,
    codec: CodecImpairment,
    params: QualityParams,
) -> StreamQuality {
    let mut q = StreamQuality::default();
    if arrivals.is_empty() || clock_rate == 0 {
        q.r = 0.0;
        q.mos = 1.0;
        return q;
    }
    let clock = f64::from(clock_rate);
    // Extended sequence numbers, in arrival order.
    let mut ext: Vec<(i64, &Arrival)> = Vec::with_capacity(arrivals.len());
    let mut by_time: Vec<&Arrival> = arrivals.iter().collect();
    by_time.sort_by_key(|a| a.arrival_ns);
    let mut last: Option<i64> = None;
    for a in &by_time {
        let e = match last {
            None => i64::from(a.seq),
            Some(l) => {
                let d = i64::from(a.seq.wrapping_sub((l & 0xFFFF) as u16) as i16);
                l + d
            }
        };
        last = Some(last.map_or(e, |l| l.max(e)));
        ext.push((e, a));
    }
    let first = ext.iter().map(|x| x.0).min().unwrap_or(0);
    let lastx = ext.iter().map(|x| x.0).max().unwrap_or(0);
    let n = usize::try_from(lastx - first + 1).unwrap_or(0).min(1 << 24);
    // Playout: anchored on the first packet to arrive (what a receiver does).
    let a0 = by_time[0];
    let ts_of = |a: &Arrival| f64::from(a.timestamp.wrapping_sub(a0.timestamp) as i32) / clock;
    let deadline =
        |a: &Arrival| a0.arrival_ns as f64 / 1e9 + ts_of(a) + params.jitter_buffer_ms / 1000.0;
    let mut state = vec![0u8; n]; // 0 lost, 1 played, 2 discarded (late)
    let mut received = 0u64;
    for (e, a) in &ext {
        let Ok(i) = usize::try_from(e - first) else {
            continue;
        };
        let Some(s) = state.get_mut(i) else { continue };
        if *s != 0 {
            continue; // duplicate
        }
        received += 1;
        *s = if a.arrival_ns as f64 / 1e9 > deadline(a) + 1e-9 {
            2
        } else {
            1
        };
    }
    // RFC 3550 jitter, in arrival order.
    let (mut j, mut jsum, mut jmax, mut jn) = (0f64, 0f64, 0f64, 0u64);
    for w in by_time.windows(2) {
        let d = (w[1].arrival_ns as f64 - w[0].arrival_ns as f64) / 1e9
            - f64::from(w[1].timestamp.wrapping_sub(w[0].timestamp) as i32) / clock;
        j += (d.abs() - j) / 16.0;
        jsum += j;
        jmax = f64::max(jmax, j);
        jn += 1;
    }
    // Packetisation: the most common timestamp step between consecutive seqs.
    let mut sorted: Vec<(i64, u32)> = ext.iter().map(|(e, a)| (*e, a.timestamp)).collect();
    sorted.sort_unstable();
    sorted.dedup_by_key(|x| x.0);
    let mut steps: std::collections::HashMap<u32, u32> = Default::default();
    for w in sorted.windows(2) {
        if w[1].0 == w[0].0 + 1 {
            *steps.entry(w[1].1.wrapping_sub(w[0].1)).or_default() += 1;
        }
    }
    let step = steps
        .into_iter()
        .max_by_key(|&(s, c)| (c, s))
        .map_or(0, |x| x.0);
    q.ptime_ms = f64::from(step) * 1000.0 / clock;
    q.received = received;
    q.expected = n as u64;
    q.lost = state.iter().filter(|&&s| s == 0).count() as u64;
    q.jb_discards = state.iter().filter(|&&s| s == 2).count() as u64;
    let lost_mask: Vec<bool> = state.iter().map(|&s| s != 1).collect();
    q.loss_pct = 100.0 * (q.lost + q.jb_discards) as f64 / n.max(1) as f64;
    q.network_loss_pct = 100.0 * q.lost as f64 / n.max(1) as f64;
    q.burst_ratio = burst_ratio(&lost_mask);
    q.jitter_ms = if jn > 0 {
        jsum / jn as f64 * 1000.0
    } else {
        0.0
    };
    q.max_jitter_ms = jmax * 1000.0;
    q.delay_ms =
        params.network_delay_ms + params.jitter_buffer_ms + q.ptime_ms + codec.lookahead_ms;
    q.r = r_factor(codec, q.loss_pct, q.burst_ratio, q.delay_ms);
    q.mos = mos_from_r(q.r);
    q
}

/// The summary-only estimate for streams.csv: loss from sequence numbers,
/// random loss (BurstR 1), delay = 60 ms buffer + packetisation.
pub fn summary_estimate(
    codec_name: &str,
    lost: i64,
    expected: u64,
    ptime_ms: Option<f64>,
) -> Option<(f64, f64)> {
    let c = CodecImpairment::for_codec(codec_name)?;
    if expected == 0 {
        return None;
    }
    let ppl = 100.0 * lost.max(0) as f64 / expected as f64;
    let delay =
        QualityParams::default().jitter_buffer_ms + ptime_ms.unwrap_or(20.0) + c.lookahead_ms;
    let r = r_factor(c, ppl, 1.0, delay);
    Some((r, mos_from_r(r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_impairment_is_93_2() {
        let r = r_factor(CodecImpairment::G711, 0.0, 1.0, 80.0);
        assert!((r - 93.2).abs() < 1e-9);
        assert!((mos_from_r(r) - 4.41).abs() < 0.01);
    }

    #[test]
    fn burst_ratio_of_random_and_bursty() {
        let random: Vec<bool> = (0..1000).map(|i| i % 10 == 0).collect();
        assert!((burst_ratio(&random) - 1.0).abs() < 0.15);
        let bursty: Vec<bool> = (0..1000).map(|i| i % 100 < 10).collect();
        assert!(burst_ratio(&bursty) > 5.0);
    }
}
