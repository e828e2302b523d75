//! Call quality: ITU-T G.107 E-model R-factor and MOS per stream, from
//! per-packet arrival records run through a simulated fixed jitter buffer.
//! Formulas and constants are in docs/media.md. Pure.

use serde_json::json;
use voxtap_codecs::CodecKind;

/// Codec impairment: the E-model's per-codec inputs.
///
/// Sources, by value: ITU-T G.113 (11/2007) Appendix I, Table I.1 (Ie)
/// and Table I.3 (Bpl), narrowband planning values. Where G.113 has no
/// row for a codec the value is ours and its constant says so (see also
/// docs/media.md, "Quality"). Everything is rated on G.107's narrowband
/// scale (Ro - Is = 93.2), wideband codecs included: see [`Self::G722`].
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
    /// G.711 with packet loss concealment (G.711 Appendix I): Ie 0, Bpl
    /// 25.1 (G.113 Tables I.1, I.3). The receiver is assumed to conceal.
    pub const G711_PLC: Self = Self {
        name: "G.711 PLC",
        ie: 0.0,
        bpl: 25.1,
        lookahead_ms: 0.0,
    };
    /// G.711 without concealment (silence insertion): Ie 0, Bpl 4.3
    /// (G.113 Table I.3).
    pub const G711: Self = Self {
        name: "G.711",
        ie: 0.0,
        bpl: 4.3,
        lookahead_ms: 0.0,
    };
    /// G.722 64 kbit/s on the narrowband scale. G.113 Appendix IV rates
    /// wideband codecs on G.107.1's wideband scale (Ro 129), where G.711
    /// itself sits near Ie,WB 36; G.722 and the usual AMR-WB modes rate
    /// better than that, i.e. below 0 on the narrowband scale, so they get
    /// Ie 0 here: their MOS stays comparable with the G.711 rows and tops
    /// at G.711's 4.41. Bpl 25.1 assumes G.722 Appendix III/IV PLC
    /// behaves like G.711's (ours, no published value).
    pub const G722: Self = Self {
        name: "G.722",
        ie: 0.0,
        bpl: 25.1,
        lookahead_ms: 1.5,
    };
    /// Opus on the narrowband scale like [`Self::G722`]: Ie 0, built-in
    /// PLC rated like G.711's (Bpl 25.1, ours); 6.5 ms look-ahead (RFC 6716).
    pub const OPUS: Self = Self {
        name: "Opus",
        ie: 0.0,
        bpl: 25.1,
        lookahead_ms: 6.5,
    };
    /// G.729A + VAD (G.113 Tables I.1, I.3): Ie 11, Bpl 19; 5 ms
    /// look-ahead. Plain G.729 (Ie 10 in Table I.1) cannot be told from
    /// G.729A on the wire, and Table I.3 gives Bpl for G.729A only.
    pub const G729A: Self = Self {
        name: "G.729A",
        ie: 11.0,
        bpl: 19.0,
        lookahead_ms: 5.0,
    };
    /// G.723.1 6.3 kbit/s + VAD (G.113 Tables I.1, I.3): Ie 15, Bpl 16.1;
    /// 7.5 ms look-ahead. The 5.3 kbit/s mode (Ie 19) is not told apart.
    pub const G723_1: Self = Self {
        name: "G.723.1",
        ie: 15.0,
        bpl: 16.1,
        lookahead_ms: 7.5,
    };
    /// GSM 06.10 full rate: Ie 20 (G.113 Table I.1). G.113 gives no Bpl:
    /// we take GSM-EFR's 10, whose substitution-and-muting concealment
    /// (GSM 06.11 / 06.61) works the same way.
    pub const GSM_FR: Self = Self {
        name: "GSM-FR",
        ie: 20.0,
        bpl: 10.0,
        lookahead_ms: 0.0,
    };
    /// AMR, rated at its 12.2 kbit/s mode, which is GSM-EFR (bit-exact):
    /// Ie 5, Bpl 10 (G.113 Tables I.1, I.3); 5 ms look-ahead. The mode can
    /// change every frame and G.113 has no row for the other AMR modes
    /// (IS-641, Ie 10, is the 7.4 kbit/s mode), so one value serves.
    pub const AMR: Self = Self {
        name: "AMR",
        ie: 5.0,
        bpl: 10.0,
        lookahead_ms: 5.0,
    };
    /// AMR-WB on the narrowband scale (see [`Self::G722`]): Ie 0; Bpl 10
    /// like AMR's (ours); 5 ms look-ahead.
    pub const AMR_WB: Self = Self {
        name: "AMR-WB",
        ie: 0.0,
        bpl: 10.0,
        lookahead_ms: 5.0,
    };
    /// G.726 at 40/32/24/16 kbit/s: Ie 2/7/25/50 (G.113 Table I.1). G.113
    /// gives no Bpl; the receiver is assumed to conceal like G.711's (25.1).
    pub const G726: [Self; 4] = [
        Self::g726("G.726-40", 2.0),
        Self::g726("G.726-32", 7.0),
        Self::g726("G.726-24", 25.0),
        Self::g726("G.726-16", 50.0),
    ];
    /// DVI4 (IMA ADPCM, 4 bits a sample): not in G.113; rated like
    /// G.726-32, the ADPCM at the same bits per sample (ours).
    pub const DVI4: Self = Self::g726("DVI4", 7.0);
    /// iLBC: not in G.113. Ie 11 (RFC 3951's listening tests put it level
    /// with G.729A without loss), Bpl 25.1 (its frames decode
    /// independently and its PLC is built in); 5 ms look-ahead (ours).
    pub const ILBC: Self = Self {
        name: "iLBC",
        ie: 11.0,
        bpl: 25.1,
        lookahead_ms: 5.0,
    };
    /// Speex: not in G.113; rated like G.729A, the nearest CELP codec with
    /// published values, at every rate (ours; conservative for wideband);
    /// 10 ms look-ahead.
    pub const SPEEX: Self = Self {
        name: "Speex",
        ie: 11.0,
        bpl: 19.0,
        lookahead_ms: 10.0,
    };

    const fn g726(name: &'static str, ie: f64) -> Self {
        Self {
            name,
            ie,
            bpl: 25.1,
            lookahead_ms: 0.0,
        }
    }

    /// The impairment of a codec; None for what is not audio and for
    /// codecs without a value (EVS, SILK, unknown payload types): their
    /// streams get loss and jitter figures but no R or MOS.
    pub fn for_kind(kind: CodecKind) -> Option<Self> {
        Some(match kind {
            CodecKind::Pcmu | CodecKind::Pcma | CodecKind::L16 { .. } => Self::G711_PLC,
            CodecKind::G722 => Self::G722,
            CodecKind::Opus { .. } => Self::OPUS,
            CodecKind::G729 => Self::G729A,
            CodecKind::G7231 => Self::G723_1,
            CodecKind::Gsm => Self::GSM_FR,
            CodecKind::Amr(p) if p.wideband => Self::AMR_WB,
            CodecKind::Amr(_) => Self::AMR,
            CodecKind::G726 { kbps, .. } => match kbps {
                40 => Self::G726[0],
                32 => Self::G726[1],
                24 => Self::G726[2],
                16 => Self::G726[3],
                _ => return None,
            },
            CodecKind::Dvi4 { .. } => Self::DVI4,
            CodecKind::Ilbc { .. } => Self::ILBC,
            CodecKind::Speex { .. } => Self::SPEEX,
            CodecKind::Cn | CodecKind::TelephoneEvent | CodecKind::Unsupported => return None,
        })
    }

    /// By SDP encoding name (what streams.csv has): the same values as
    /// [`Self::for_kind`], so streams.csv and quality.json rate a stream
    /// alike. The rating needs no clock or fmtp.
    pub fn for_codec(name: &str) -> Option<Self> {
        Self::for_kind(CodecKind::from_rtpmap(name, 0, 1, None))
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
    /// The impairment values `r` and `mos` come from; None: the codec has
    /// none, and `r` and `mos` mean nothing (null in quality.json).
    pub rated: Option<CodecImpairment>,
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
            "r_factor": self.rated.map(|_| r3(self.r)),
            "mos": self.rated.map(|_| r3(self.mos)),
            "rated_as": self.rated.map(|c| json!({
                "codec": c.name,
                "ie": c.ie,
                "bpl": c.bpl,
                "lookahead_ms": c.lookahead_ms,
            })),
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
    assess_stream(arrivals, &[], clock_rate, Some(codec), params)
}

/// Extended sequence numbers of arrivals in arrival order.
fn extend(by_time: &[(&Arrival, bool)]) -> Vec<i64> {
    let mut last: Option<i64> = None;
    by_time
        .iter()
        .map(|(a, _)| {
            let e = match last {
                None => i64::from(a.seq),
                Some(l) => l + i64::from(a.seq.wrapping_sub((l & 0xFFFF) as u16) as i16),
            };
            last = Some(last.map_or(e, |l| l.max(e)));
            e
        })
        .collect()
}

/// RFC 3550 jitter over arrivals in arrival order: (mean of the running
/// estimate, its maximum), seconds.
fn jitter(by_time: &[&Arrival], clock: f64) -> (f64, f64) {
    let (mut j, mut jsum, mut jmax, mut jn) = (0f64, 0f64, 0f64, 0u64);
    for w in by_time.windows(2) {
        let d = (w[1].arrival_ns as f64 - w[0].arrival_ns as f64) / 1e9
            - f64::from(w[1].timestamp.wrapping_sub(w[0].timestamp) as i32) / clock;
        j += (d.abs() - j) / 16.0;
        jsum += j;
        jmax = f64::max(jmax, j);
        jn += 1;
    }
    (if jn > 0 { jsum / jn as f64 } else { 0.0 }, jmax)
}

/// Packetisation: the most common timestamp step between consecutive
/// sequence numbers, in RTP units.
fn ptime_step(mut seq_ts: Vec<(i64, u32)>) -> u32 {
    seq_ts.sort_unstable();
    seq_ts.dedup_by_key(|x| x.0);
    let mut steps: std::collections::HashMap<u32, u32> = Default::default();
    for w in seq_ts.windows(2) {
        if w[1].0 == w[0].0 + 1 {
            *steps.entry(w[1].1.wrapping_sub(w[0].1)).or_default() += 1;
        }
    }
    steps
        .into_iter()
        .max_by_key(|&(s, c)| (c, s))
        .map_or(0, |x| x.0)
}

/// Assess one stream. `timed` are the packets of the codec it is rated
/// by: their timestamps drive the jitter buffer, jitter and ptime.
/// `untimed` are its other packets (comfort noise, RFC 4733 events, a
/// second codec): they share the sequence numbers, so they count as
/// received for loss, but their timestamps are on another clock or stand
/// still. `codec` None: figures without R and MOS (a codec without an
/// impairment value).
pub fn assess_stream(
    timed: &[Arrival],
    untimed: &[Arrival],
    clock_rate: u32,
    codec: Option<CodecImpairment>,
    params: QualityParams,
) -> StreamQuality {
    let mut q = StreamQuality::default();
    if (timed.is_empty() && untimed.is_empty()) || clock_rate == 0 {
        // Nothing received: nothing to rate.
        return q;
    }
    q.rated = codec;
    let clock = f64::from(clock_rate);
    let mut by_time: Vec<(&Arrival, bool)> = timed
        .iter()
        .map(|a| (a, true))
        .chain(untimed.iter().map(|a| (a, false)))
        .collect();
    by_time.sort_by_key(|a| a.0.arrival_ns);
    let ext = extend(&by_time);
    let first = ext.iter().copied().min().unwrap_or(0);
    let lastx = ext.iter().copied().max().unwrap_or(0);
    let n = usize::try_from(lastx - first + 1).unwrap_or(0).min(1 << 24);
    let timed_by_time: Vec<&Arrival> = by_time.iter().filter(|a| a.1).map(|a| a.0).collect();
    // Playout: anchored on the first timed packet to arrive (what a
    // receiver does); 0 lost, 1 played, 2 discarded (late).
    let a0 = timed_by_time.first().copied();
    let late = |a: &Arrival| {
        a0.is_some_and(|a0| {
            let media_s = f64::from(a.timestamp.wrapping_sub(a0.timestamp) as i32) / clock;
            let deadline = a0.arrival_ns as f64 / 1e9 + media_s + params.jitter_buffer_ms / 1000.0;
            a.arrival_ns as f64 / 1e9 > deadline + 1e-9
        })
    };
    let mut state = vec![0u8; n];
    for (e, (a, is_timed)) in ext.iter().zip(&by_time) {
        let Some(s) = usize::try_from(e - first)
            .ok()
            .and_then(|i| state.get_mut(i))
        else {
            continue;
        };
        if *s != 0 {
            continue; // duplicate
        }
        q.received += 1;
        *s = if *is_timed && late(a) { 2 } else { 1 };
    }
    let (jmean, jmax) = jitter(&timed_by_time, clock);
    let seq_ts = ext
        .iter()
        .zip(&by_time)
        .filter(|(_, a)| a.1)
        .map(|(e, a)| (*e, a.0.timestamp))
        .collect();
    q.ptime_ms = f64::from(ptime_step(seq_ts)) * 1000.0 / clock;
    q.expected = n as u64;
    q.lost = state.iter().filter(|&&s| s == 0).count() as u64;
    q.jb_discards = state.iter().filter(|&&s| s == 2).count() as u64;
    let lost_mask: Vec<bool> = state.iter().map(|&s| s != 1).collect();
    q.loss_pct = 100.0 * (q.lost + q.jb_discards) as f64 / n.max(1) as f64;
    q.network_loss_pct = 100.0 * q.lost as f64 / n.max(1) as f64;
    q.burst_ratio = burst_ratio(&lost_mask);
    q.jitter_ms = jmean * 1000.0;
    q.max_jitter_ms = jmax * 1000.0;
    let lookahead = codec.map_or(0.0, |c| c.lookahead_ms);
    q.delay_ms = params.network_delay_ms + params.jitter_buffer_ms + q.ptime_ms + lookahead;
    if let Some(c) = codec {
        q.r = r_factor(c, q.loss_pct, q.burst_ratio, q.delay_ms);
        q.mos = mos_from_r(q.r);
    }
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

    #[test]
    fn codec_values_by_name_and_kind_agree() {
        let ie = |n: &str| CodecImpairment::for_codec(n).map(|c| (c.ie, c.bpl));
        assert_eq!(ie("PCMA"), Some((0.0, 25.1)));
        assert_eq!(ie("G726-16"), Some((50.0, 25.1)));
        assert_eq!(ie("AAL2-G726-40"), Some((2.0, 25.1)));
        assert_eq!(ie("G729"), Some((11.0, 19.0)));
        assert_eq!(ie("G723"), Some((15.0, 16.1)));
        assert_eq!(ie("GSM"), Some((20.0, 10.0)));
        assert_eq!(ie("AMR"), Some((5.0, 10.0)));
        assert_eq!(ie("AMR-WB"), Some((0.0, 10.0)));
        assert_eq!(ie("iLBC"), Some((11.0, 25.1)));
        assert_eq!(ie("EVS"), None);
        assert_eq!(ie("telephone-event"), None);
        for (name, clock, fmtp) in [
            ("speex", 16_000, None),
            ("opus", 48_000, Some("stereo=1")),
            ("AMR", 8000, Some("octet-align=1; mode-set=0")),
            ("DVI4", 16_000, None),
        ] {
            let kind = CodecKind::from_rtpmap(name, clock, 1, fmtp);
            assert_eq!(
                CodecImpairment::for_kind(kind),
                CodecImpairment::for_codec(name)
            );
        }
    }

    /// Comfort noise and events share the sequence numbers (received, no
    /// loss) but not the clock (no jitter, no late discards).
    #[test]
    fn untimed_packets_count_for_loss_only() {
        let at = |seq: u16, ts: u32, ms: u64| Arrival {
            seq,
            timestamp: ts,
            arrival_ns: ms * 1_000_000,
        };
        let timed: Vec<Arrival> = (0..100u16)
            .filter(|i| i % 10 != 5)
            .map(|i| at(i, u32::from(i) * 160, u64::from(i) * 20))
            .collect();
        // An RFC 4733 event in every gap: its timestamp stands still at the
        // event's start, a second earlier.
        let untimed: Vec<Arrival> = (0..100u16)
            .filter(|i| i % 10 == 5)
            .map(|i| at(i, 0, u64::from(i) * 20))
            .collect();
        let p = QualityParams::default();
        let q = assess_stream(&timed, &untimed, 8000, Some(CodecImpairment::G711_PLC), p);
        assert_eq!(
            (q.received, q.expected, q.lost, q.jb_discards),
            (100, 100, 0, 0)
        );
        assert_eq!(q.jitter_ms, 0.0);
        assert_eq!(q.ptime_ms, 20.0);
        assert!((q.r - 93.2).abs() < 1e-9, "{q:?}");
        // Without an impairment value: figures, no rating.
        let q = assess_stream(&timed, &untimed, 8000, None, p);
        assert_eq!(q.received, 100);
        assert!(q.to_json()["mos"].is_null());
        // Without the events their sequence numbers are loss.
        let q = assess(&timed, 8000, CodecImpairment::G711_PLC, p);
        assert_eq!(q.lost, 10);
    }
}
