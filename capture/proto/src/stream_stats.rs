//! Per-stream RTP statistics (one instance per 5-tuple + SSRC).
//!
//! Two sources of truth are blended on purpose:
//! - sequence accounting (extended highest sequence, cycles, expected, lost)
//!   follows RFC 3550 appendix A.1; the last [`SEQ_WINDOW`] sequence
//!   numbers are remembered to tell duplicates from late packets (the runs
//!   missing among them inline, a bitmap when there are many: `seq_window`);
//! - the timing columns (delta, jitter, max/mean jitter) reproduce Wireshark's
//!   `rtppacket_analyse` (ui/tap-rtp-analysis.c) as shipped in 4.0, quirks
//!   included, so that our numbers can be checked against
//!   `tshark -z rtp,streams` and users see the same figures in both tools.
//!   4.0 judges "timestamp in sequence" against the stream's *first*
//!   timestamp (later releases compare with the previous packet, which
//!   changes the figures when RFC 4733 events share the audio SSRC).
//!
//! [`StreamStats::update`] allocates only when a stream shows more than
//! eight distinct payload types (at most once per new type) and once, for
//! the duplicate detector's bitmap, when more than three runs of numbers
//! are missing inside its window at once (a stream with a few losses holds no bitmap),
//! and once for the ptime estimate's last six slots, at the third distinct
//! timestamp step (`steps`): all other state is fixed-size.

mod seq_window;
mod steps;

use crate::rtp::static_codec;
use seq_window::{SEQ_WINDOW, SeqWindow};
use steps::Steps;

/// Payload types whose order of first sight a stream keeps inline.
const PT_INLINE: usize = 4;
/// Marks "no explicit rate for this dynamic PT" in `dyn_clock`.
const UNSET: u32 = u32::MAX;
/// Comfort noise: RFC 3389 (13) and the pre-RFC 3551 number (19). Wireshark
/// leaves these, and the packet after them, out of delta/jitter extremes.
const PT_CN: u8 = 13;
const PT_CN_OLD: u8 = 19;

/// Snapshot of a stream's statistics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamSummary {
    /// Packets received, duplicates included.
    pub packets: u64,
    /// Extended highest sequence - first sequence + 1 (RFC 3550 A.3).
    pub expected: u64,
    /// expected - packets; negative when duplicates outnumber losses, as in
    /// tshark. tshark's "expected" ends at the *last* packet's sequence
    /// rather than the highest, so the two differ when the final packets of
    /// a stream arrive reordered, and after sequence jumps of 32768 or more.
    pub lost: i64,
    /// Packets below the highest sequence seen that had not been seen before.
    pub out_of_order: u64,
    /// Packets whose sequence number was already seen in the recent window.
    pub duplicates: u64,
    /// Times the 16-bit sequence number wrapped forward.
    pub seq_wraps: u32,
    /// Last interarrival jitter (RFC 3550 A.8), in ms.
    pub jitter_ms: f64,
    pub max_jitter_ms: f64,
    pub mean_jitter_ms: f64,
    /// Arrival deltas of "regular" packets (Wireshark: not the first, no
    /// marker, not comfort noise or right after it, timestamp not going back).
    pub min_delta_ms: f64,
    pub max_delta_ms: f64,
    pub avg_delta_ms: f64,
    /// Distinct payload types in first-seen order.
    pub payload_types: Vec<u8>,
    /// Most common timestamp step between consecutive packets / clock rate.
    pub ptime_ms: Option<f64>,
    pub first_seq: u16,
    /// Highest sequence number seen (low 16 bits of the extended highest), so
    /// `first_seq + expected - 1 == last_seq` modulo 2^16.
    pub last_seq: u16,
    pub first_ns: u64,
    pub last_ns: u64,
}

/// Clock rates of the 32 dynamic payload types, in 24 bytes rather than
/// 128: two bits each say unset, 0, the rate most of them share, or
/// another one (then in `others`, allocated when an SDP maps two dynamic
/// types to two different non-zero rates).
#[derive(Debug, Clone, Default)]
struct DynClocks {
    codes: u64,
    common: u32,
    /// Rate for dynamic PTs without their own entry (from the SDP); here
    /// rather than in [`StreamStats`] because it fills this struct's padding.
    default: u32,
    others: Option<Box<[u32; 32]>>,
}

impl DynClocks {
    const CODE_UNSET: u64 = 0;
    const CODE_ZERO: u64 = 1;
    const CODE_COMMON: u64 = 2;
    const CODE_OTHER: u64 = 3;

    fn code(&self, i: usize) -> u64 {
        (self.codes >> (2 * i)) & 3
    }

    /// Rate of dynamic type `96 + i` (i < 32); None when unset.
    fn get(&self, i: usize) -> Option<u32> {
        match self.code(i) {
            Self::CODE_UNSET => None,
            Self::CODE_ZERO => Some(0),
            Self::CODE_COMMON => Some(self.common),
            _ => Some(
                self.others
                    .as_ref()
                    .and_then(|o| o.get(i).copied())
                    .unwrap_or(0),
            ),
        }
    }

    /// Sets the rate of dynamic type `96 + i` (i < 32); `UNSET` unsets it.
    fn set(&mut self, i: usize, rate: u32) {
        let code = if rate == UNSET {
            Self::CODE_UNSET
        } else if rate == 0 {
            Self::CODE_ZERO
        } else if self.common == rate
            || !(0..32).any(|j| j != i && self.code(j) == Self::CODE_COMMON)
        {
            self.common = rate;
            Self::CODE_COMMON
        } else {
            let others = self.others.get_or_insert_with(|| Box::new([0; 32]));
            if let Some(slot) = others.get_mut(i) {
                *slot = rate;
            }
            Self::CODE_OTHER
        };
        self.codes = (self.codes & !(3 << (2 * i))) | (code << (2 * i));
    }
}

/// Running statistics of one RTP stream.
#[derive(Debug, Clone)]
pub struct StreamStats {
    /// Per dynamic PT 96..=127; unset falls back to `dyn_clock.default`.
    dyn_clock: DynClocks,

    /// Counters in 32 bits (saturating): 2^32 packets is 2.7 years of a
    /// 50 packets/s stream. 0 until the first packet (it never returns to
    /// 0: no separate "started" flag).
    packets: u32,
    /// Also the base of the extended sequence numbers (RFC 3550's
    /// `base_seq`): the first packet's extended number is `first_seq`.
    first_seq: u16,
    /// How far behind `max_ext` the previous packet's extended sequence
    /// number was (at most 2^15: a packet is read as ahead beyond that),
    /// in 2 bytes rather than an 8-byte extended number.
    prev_back: u16,
    /// Its high bits also count the wraps of the sequence numbers: the
    /// first packet's extended number is below 2^16 and each wrap adds
    /// 2^16 (a counter apart took 4 bytes more).
    max_ext: i64,
    out_of_order: u32,
    duplicates: u32,
    /// Which of the last [`SEQ_WINDOW`] extended sequence numbers were
    /// seen: the runs missing inline, a bitmap once they are too many.
    seen: SeqWindow,

    /// Timestamp of the previous packet (ptime steps).
    last_ts: u32,
    /// Timestamp of the first packet: Wireshark 4.0 measures nominal time
    /// from it and calls a packet "in time sequence" when its timestamp is
    /// at most half the 32-bit space ahead of it.
    first_ts: u32,
    /// Nominal time (ms since `first_ts`) of the last in-sequence packet
    /// that had a clock (Wireshark's `lastnominaltime`).
    last_nominal_ms: f64,

    first_ns: u64,
    last_ns: u64,
    /// Arrival of the last in-time-sequence packet (Wireshark's `time`).
    ref_ns: u64,
    /// Previous packet's PT (Wireshark's `pt`), for the CN rules.
    last_pt: u8,
    // No field for the latest arrival delta: only the packet that measures
    // it reads it (`update_jitter` hands it to `update_extremes`), so
    // keeping it took 8 bytes of every stream for nothing.
    jitter_ms: f64,
    max_jitter_ms: f64,
    /// NaN until the first value (an Option would cost 8 bytes more).
    min_jitter_ms: f64,
    mean_jitter_ms: f64,
    max_delta_ms: f64,
    /// NaN until the first value.
    min_delta_ms: f64,
    mean_delta_ms: f64,

    /// Payload types in order of first sight: the first [`PT_INLINE`] here,
    /// the rest (a stream rarely has more than three) in `pt_more`, so a
    /// stream does not carry 128 bytes for them.
    pt_first: [u8; PT_INLINE],
    pt_len: u8,
    // Boxed: 8 bytes in every stream rather than 24 for a Vec almost none uses.
    #[allow(clippy::box_collection)]
    pt_more: Option<Box<Vec<u8>>>,

    /// Timestamp steps of consecutive in-order packets (ptime).
    steps: Steps,
}

impl StreamStats {
    /// `clock_rate` is the RTP clock of dynamic payload types (from SDP);
    /// static ones use the RFC 3551 rate, as Wireshark does. 0 = unknown, no
    /// jitter is computed for such packets.
    pub fn new(clock_rate: u32) -> Self {
        Self {
            dyn_clock: DynClocks {
                default: clock_rate,
                ..DynClocks::default()
            },
            packets: 0,
            first_seq: 0,
            prev_back: 0,
            max_ext: 0,
            seen: SeqWindow::default(),
            out_of_order: 0,
            duplicates: 0,
            last_ts: 0,
            first_ts: 0,
            last_nominal_ms: 0.0,
            first_ns: 0,
            last_ns: 0,
            ref_ns: 0,
            last_pt: 0,
            jitter_ms: 0.0,
            max_jitter_ms: 0.0,
            min_jitter_ms: f64::NAN,
            mean_jitter_ms: 0.0,
            max_delta_ms: 0.0,
            min_delta_ms: f64::NAN,
            mean_delta_ms: 0.0,
            pt_first: [0; PT_INLINE],
            pt_len: 0,
            pt_more: None,
            steps: Steps::default(),
        }
    }

    /// Sets the clock of dynamic payload types, e.g. once the SDP answer is
    /// seen. Takes effect from the next packet.
    pub fn set_clock_rate(&mut self, clock_rate: u32) {
        self.dyn_clock.default = clock_rate;
    }

    /// The clock of dynamic payload types without one of their own (see
    /// [`Self::new`]).
    pub fn default_clock_rate(&self) -> u32 {
        self.dyn_clock.default
    }

    /// Sets the clock of one dynamic payload type (96..=127; others are
    /// ignored because static PTs have fixed rates). Use 0 for
    /// telephone-event: its timestamp stays put for a whole event (RFC 4733
    /// 2.2.1), so Wireshark computes no jitter for it and neither do we.
    pub fn set_pt_clock_rate(&mut self, pt: u8, clock_rate: u32) {
        let i = usize::from(pt).wrapping_sub(96);
        if i < 32 {
            self.dyn_clock.set(i, clock_rate);
        }
    }

    /// RTP clock used for `pt`, 0 when unknown.
    pub fn clock_rate_for(&self, pt: u8) -> u32 {
        if pt < 96 {
            // Wireshark's table also covers the historic 1016 (1), G721 (2)
            // and old CN (19), which RFC 3551 reserves.
            match pt {
                1 | 2 | PT_CN_OLD => 8000,
                _ => static_codec(pt).map_or(0, |c| c.clock_rate),
            }
        } else {
            self.dyn_clock
                .get(usize::from(pt & 0x7f) - 96)
                .unwrap_or(self.dyn_clock.default)
        }
    }

    /// Sequence accounting (RFC 3550 A.1 without probation). Returns the
    /// packet's extended sequence number.
    fn track_sequence(&mut self, seq: u16) -> i64 {
        let max_seq = (self.max_ext & 0xffff) as u16;
        let udelta = seq.wrapping_sub(max_seq);
        let first = i64::from(self.first_seq);
        if udelta != 0 && udelta < 0x8000 {
            // Ahead of the highest (possibly with a gap).
            let ext = self.max_ext.saturating_add(i64::from(udelta));
            self.seen.advance(self.max_ext, ext, first);
            self.max_ext = ext;
            ext
        } else {
            // Same as or behind the highest: half the sequence space back at
            // most, the rest is read as "ahead" above.
            let back = if udelta == 0 {
                0
            } else {
                65536 - i64::from(udelta)
            };
            let ext = self.max_ext.saturating_sub(back);
            // Older than the window: cannot tell, call it late.
            if back < SEQ_WINDOW as i64 && self.seen.test_and_set(ext, self.max_ext, first) {
                self.duplicates = self.duplicates.saturating_add(1);
            } else {
                self.out_of_order = self.out_of_order.saturating_add(1);
            }
            ext
        }
    }

    /// Whether this stream had more than three runs of sequence
    /// numbers missing inside the duplicate window at once, and so holds
    /// the 128-byte bitmap (a few gaps are kept inline).
    pub fn holds_seq_bitmap(&self) -> bool {
        self.seen.is_bitmap()
    }

    fn note_payload_type(&mut self, pt: u8) {
        let pt = pt & 0x7f;
        // A scan of at most eight bytes (a stream has one to three types)
        // rather than a 16-byte bitmap in every stream.
        let first = self.pt_first.get(..usize::from(self.pt_len)).unwrap_or(&[]);
        let seen = first.contains(&pt) || self.pt_more.as_ref().is_some_and(|m| m.contains(&pt));
        if !seen {
            match self.pt_first.get_mut(usize::from(self.pt_len)) {
                Some(slot) => {
                    *slot = pt;
                    self.pt_len += 1;
                }
                None => self.pt_more.get_or_insert_default().push(pt),
            }
        }
    }

    /// Accounts one packet. `arrival_ns` is the capture time (any epoch, but
    /// the same for all packets of the stream).
    pub fn update(
        &mut self,
        arrival_ns: u64,
        seq: u16,
        rtp_ts: u32,
        pt: u8,
        payload_len: usize,
        marker: bool,
    ) {
        // Payload length does not enter any statistic yet; kept in the
        // signature so bandwidth can be added without touching callers.
        let _ = payload_len;
        let pt = pt & 0x7f;
        self.note_payload_type(pt);
        self.last_ns = arrival_ns;

        if self.packets == 0 {
            self.start(arrival_ns, seq, rtp_ts, pt);
            return;
        }

        let prev_ext = self.max_ext.saturating_sub(i64::from(self.prev_back));
        let ext = self.track_sequence(seq);
        let ts_step = rtp_ts.wrapping_sub(self.last_ts) as i32;
        let clock = self.clock_rate_for(pt);
        if ext == prev_ext.saturating_add(1) && pt == self.last_pt && ts_step > 0 && clock != 0 {
            self.steps.note(ts_step.unsigned_abs(), clock);
        }

        // ---- Wireshark 4.0 rtppacket_analyse from here on ----
        // Timestamp distance from the first packet, modulo 2^32. Wireshark
        // accepts exactly 2^31 only through its wrapped branch, hence `<=`
        // on the wrapped side.
        let since_first = rtp_ts.wrapping_sub(self.first_ts);
        let in_time_sequence = if rtp_ts >= self.first_ts {
            since_first < 0x8000_0000
        } else {
            since_first <= 0x8000_0000
        };
        let is_cn = pt == PT_CN || pt == PT_CN_OLD;
        let follows_cn = self.last_pt == PT_CN || self.last_pt == PT_CN_OLD;

        // Wireshark divides by `clock_rate / 1000` in integer arithmetic
        // (44100 Hz counts as 44 kHz); copied so figures match tshark.
        // Rates below 1000 Hz would divide by zero there; we skip them.
        let khz = clock / 1000;
        if in_time_sequence {
            let (delta_ms, current_jitter) = self.update_jitter(arrival_ns, since_first, khz);
            if !marker && !is_cn && !follows_cn {
                self.update_extremes(khz, delta_ms, current_jitter);
            }
        }

        if in_time_sequence {
            self.ref_ns = arrival_ns;
        }
        self.last_pt = pt;
        self.last_ts = rtp_ts;
        // ext is at most 2^15 behind the highest (see track_sequence).
        self.prev_back = u16::try_from(self.max_ext.saturating_sub(ext)).unwrap_or(u16::MAX);
        self.packets = self.packets.saturating_add(1);
    }

    /// The stream's first packet: the references every later one is
    /// measured against.
    fn start(&mut self, arrival_ns: u64, seq: u16, rtp_ts: u32, pt: u8) {
        self.packets = 1;
        self.first_seq = seq;
        self.max_ext = i64::from(seq);
        self.prev_back = 0;
        self.last_ts = rtp_ts;
        self.first_ts = rtp_ts;
        self.last_nominal_ms = 0.0;
        self.first_ns = arrival_ns;
        self.ref_ns = arrival_ns;
        self.last_pt = pt;
    }

    /// Arrival delta and RFC 3550 jitter of an in-time-sequence packet;
    /// returns the delta (ms) and the jitter after this packet (0 without
    /// a usable clock).
    fn update_jitter(&mut self, arrival_ns: u64, since_first: u32, khz: u32) -> (f64, f64) {
        // Arrival delta from the last in-time-sequence packet, in integer
        // ns first so absolute epoch times lose no precision. A packet out
        // of time sequence has none (Wireshark keeps the previous one, but
        // excludes such a packet from the extremes, the delta's only use).
        let delta_ms = signed_diff_f64(arrival_ns, self.ref_ns) / 1e6;
        if khz == 0 {
            return (delta_ms, 0.0);
        }
        let nominal_ms = f64::from(since_first) / f64::from(khz);
        let diff = (delta_ms - (nominal_ms - self.last_nominal_ms)).abs();
        let current = (15.0 * self.jitter_ms + diff) / 16.0;
        self.jitter_ms = current;
        self.last_nominal_ms = nominal_ms;
        (delta_ms, current)
    }

    /// Extremes and running means over regular packets (no marker, no
    /// comfort noise, in time sequence), as Wireshark keeps them.
    fn update_extremes(&mut self, khz: u32, delta_ms: f64, current_jitter: f64) {
        // `packets` is Wireshark's total_nr before this packet, i.e. the
        // number of deltas so far: the means below are running means.
        let n = f64::from(self.packets);
        if delta_ms > self.max_delta_ms {
            self.max_delta_ms = delta_ms;
        }
        if self.min_delta_ms.is_nan() || delta_ms < self.min_delta_ms {
            self.min_delta_ms = delta_ms;
        }
        self.mean_delta_ms = (self.mean_delta_ms * (n - 1.0) + delta_ms) / n;
        if khz != 0 {
            if self.jitter_ms > self.max_jitter_ms {
                self.max_jitter_ms = self.jitter_ms;
            }
            // Wireshark divides by all packets so far, not only the
            // regular ones with a clock: copied for identical figures.
            self.mean_jitter_ms = (self.mean_jitter_ms * (n - 1.0) + current_jitter) / n;
            if self.min_jitter_ms.is_nan() || self.jitter_ms < self.min_jitter_ms {
                self.min_jitter_ms = self.jitter_ms;
            }
        }
    }

    /// The current interarrival jitter (RFC 3550 A.8) in ms, without the
    /// allocation of [`Self::summary`].
    pub fn jitter_ms(&self) -> f64 {
        self.jitter_ms
    }

    /// Smallest jitter among regular packets (Wireshark's "Min Jitter").
    pub fn min_jitter_ms(&self) -> f64 {
        if self.min_jitter_ms.is_nan() {
            0.0
        } else {
            self.min_jitter_ms
        }
    }

    pub fn summary(&self) -> StreamSummary {
        let expected = if self.packets > 0 {
            u64::try_from(
                self.max_ext
                    .saturating_sub(i64::from(self.first_seq))
                    .saturating_add(1),
            )
            .unwrap_or(0)
        } else {
            0
        };
        let ptime_ms = self.steps.ptime_ms();
        StreamSummary {
            packets: u64::from(self.packets),
            expected,
            lost: i64::try_from(expected)
                .unwrap_or(i64::MAX)
                .saturating_sub(i64::from(self.packets)),
            out_of_order: u64::from(self.out_of_order),
            duplicates: u64::from(self.duplicates),
            seq_wraps: u32::try_from(self.max_ext >> 16).unwrap_or(u32::MAX),
            jitter_ms: self.jitter_ms,
            max_jitter_ms: self.max_jitter_ms,
            mean_jitter_ms: self.mean_jitter_ms,
            min_delta_ms: if self.min_delta_ms.is_nan() {
                0.0
            } else {
                self.min_delta_ms
            },
            max_delta_ms: self.max_delta_ms,
            avg_delta_ms: self.mean_delta_ms,
            payload_types: [
                self.pt_first.get(..usize::from(self.pt_len)).unwrap_or(&[]),
                self.pt_more.as_deref().map_or(&[][..], |v| v),
            ]
            .concat(),
            ptime_ms,
            first_seq: self.first_seq,
            last_seq: (self.max_ext & 0xffff) as u16,
            first_ns: self.first_ns,
            last_ns: self.last_ns,
        }
    }
}

/// `a - b` as the f64 nearest to it (ties to even), as
/// `(i128::from(a) - i128::from(b)) as f64` gives it, without i128: the
/// i128-to-f64 conversion is a software routine, called for every RTP
/// packet. The magnitude fits a u64 and rounding to nearest is symmetric,
/// so converting the magnitude and negating gives the same bits.
#[inline]
fn signed_diff_f64(a: u64, b: u64) -> f64 {
    if a >= b {
        (a - b) as f64
    } else {
        -((b - a) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit for bit the i128 formula it replaced, on random pairs of every
    /// magnitude (small deltas near epoch times, huge ones, equal) and the
    /// extremes.
    #[test]
    fn signed_diff_matches_the_i128_formula() {
        let old = |a: u64, b: u64| (i128::from(a) - i128::from(b)) as f64;
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        let mut pairs = vec![
            (0, 0),
            (u64::MAX, 0),
            (0, u64::MAX),
            (u64::MAX, u64::MAX),
            (1 << 53, 0),
            (0, (1 << 53) + 1),
        ];
        for _ in 0..200_000 {
            let a = next(u64::MAX) | (next(2) << 63);
            let b = match next(3) {
                0 => next(u64::MAX) | (next(2) << 63),
                1 => a.wrapping_add(next(1 << 40)).wrapping_sub(1 << 39),
                _ => a,
            };
            pairs.push((a, b));
        }
        for (a, b) in pairs {
            assert_eq!(
                signed_diff_f64(a, b).to_bits(),
                old(a, b).to_bits(),
                "{a} {b}"
            );
            assert_eq!(
                (signed_diff_f64(a, b) / 1e6).to_bits(),
                (old(a, b) / 1e6).to_bits()
            );
        }
    }

    /// A seeded xorshift64 generator: `next(n)` draws from 0..n, the same
    /// sequence on every run.
    pub(super) fn xorshift(mut rng: u64) -> impl FnMut(u64) -> u64 {
        move |n| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        }
    }

    const MS: u64 = 1_000_000;

    /// Feeds (arrival ms, seq, ts) triples as PCMA without marker.
    fn feed(s: &mut StreamStats, pkts: &[(u64, u16, u32)]) {
        for &(ms, seq, ts) in pkts {
            s.update(ms * MS, seq, ts, 8, 160, false);
        }
    }

    /// A regular 20 ms PCMA stream of `n` packets starting at `seq0`.
    fn regular(seq0: u16, ts0: u32, n: u16) -> Vec<(u64, u16, u32)> {
        (0..n)
            .map(|i| {
                (
                    1_000 + 20 * u64::from(i),
                    seq0.wrapping_add(i),
                    ts0.wrapping_add(160 * u32::from(i)),
                )
            })
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn stats_in_order_regular_stream() {
        let mut s = StreamStats::new(0);
        feed(&mut s, &regular(1000, 12345, 50));
        let r = s.summary();
        assert_eq!((r.packets, r.expected, r.lost), (50, 50, 0));
        assert_eq!((r.out_of_order, r.duplicates, r.seq_wraps), (0, 0, 0));
        assert_eq!((r.first_seq, r.last_seq), (1000, 1049));
        assert_eq!((r.first_ns, r.last_ns), (1_000 * MS, 1_980 * MS));
        assert_eq!(r.jitter_ms, 0.0);
        assert_eq!(r.max_jitter_ms, 0.0);
        assert_eq!(r.mean_jitter_ms, 0.0);
        assert!(close(r.min_delta_ms, 20.0) && close(r.max_delta_ms, 20.0));
        assert!(close(r.avg_delta_ms, 20.0));
        assert_eq!(r.payload_types, [8]);
        assert_eq!(r.ptime_ms, Some(20.0));
    }

    #[test]
    fn stats_regular_stream_across_timestamp_wrap_has_no_jitter() {
        let mut s = StreamStats::new(0);
        feed(&mut s, &regular(7, u32::MAX - 800, 20));
        let r = s.summary();
        assert_eq!(r.max_jitter_ms, 0.0);
        assert!(close(r.max_delta_ms, 20.0));
        assert_eq!(r.ptime_ms, Some(20.0));
    }

    #[test]
    fn stats_loss() {
        let mut pkts = regular(0, 0, 20);
        pkts.retain(|p| p.1 != 5 && p.1 != 6);
        let mut s = StreamStats::new(0);
        feed(&mut s, &pkts);
        let r = s.summary();
        assert_eq!((r.packets, r.expected, r.lost), (18, 20, 2));
        assert_eq!((r.out_of_order, r.duplicates), (0, 0));
        // The gap is 60 ms of arrival for 60 ms of timestamps: no jitter.
        assert!(close(r.max_delta_ms, 60.0));
        assert_eq!(r.max_jitter_ms, 0.0);
    }

    #[test]
    fn stats_reorder() {
        let mut pkts = regular(100, 0, 6);
        pkts.swap(2, 3); // 100 101 103 102 104 105
        let mut s = StreamStats::new(0);
        feed(&mut s, &pkts);
        let r = s.summary();
        assert_eq!((r.packets, r.expected, r.lost), (6, 6, 0));
        assert_eq!((r.out_of_order, r.duplicates), (1, 0));
        assert_eq!(r.last_seq, 105);
    }

    #[test]
    fn stats_duplicates() {
        let mut pkts = regular(100, 0, 5);
        pkts.insert(3, pkts[2]); // 100 101 102 102 103 104
        pkts.push(pkts[0]); // a very late copy of the first one too
        let mut s = StreamStats::new(0);
        feed(&mut s, &pkts);
        let r = s.summary();
        assert_eq!((r.packets, r.expected, r.lost), (7, 5, -2));
        assert_eq!((r.out_of_order, r.duplicates), (0, 2));
    }

    /// Duplicates and late packets counted against a model kept in the
    /// test (every extended number seen, in a set), across the 16-bit
    /// wrap, four kinds of streams: clean; loss, jumps, reordering by up
    /// to 1,500 places and copies; copies only; reordering and copies
    /// without loss. Only the first and the third hold no bitmap.
    #[test]
    fn stats_duplicates_and_late_match_a_set_model() {
        use std::collections::HashSet;
        let mut next = xorshift(0x2545_f491_4f6c_dd1du64);
        for round in 0..200 {
            let first = 60_000 + i64::try_from(next(10_000)).unwrap();
            // Extended numbers in sending order, then disturbed.
            let mut exts: Vec<i64> = Vec::new();
            let mut e = first;
            let (lossy, swaps, copies) = match round % 4 {
                0 => (false, false, false),
                1 => (true, true, true),
                2 => (false, false, true),
                _ => (false, true, true),
            };
            for _ in 0..3_000 {
                match next(1_000) {
                    0..=9 if lossy => e += 2 + i64::try_from(next(3)).unwrap(),
                    10 if lossy => e += 900 + i64::try_from(next(400)).unwrap(),
                    _ => e += 1,
                }
                exts.push(e);
            }
            for _ in 0..30 {
                if swaps {
                    let i = usize::try_from(next(2_900)).unwrap();
                    let j = (i + 1 + usize::try_from(next(1_500)).unwrap()).min(exts.len() - 1);
                    exts.swap(i, j);
                }
                if copies {
                    // A copy after the original, up to 100 places later.
                    let i = usize::try_from(next(2_900)).unwrap();
                    let at = i + 1 + usize::try_from(next(100)).unwrap();
                    exts.insert(at, exts[i]);
                }
            }
            if swaps {
                // The first packet overtook the two before it.
                exts.swap(0, 2);
            }
            let first = exts[0];
            let (mut seen, mut max, mut dup, mut late) = (HashSet::new(), first, 0u64, 0u64);
            let mut s = StreamStats::new(0);
            for (i, &e) in exts.iter().enumerate() {
                s.update(20 * MS * i as u64, (e & 0xffff) as u16, 0, 8, 160, false);
                if i > 0 && e <= max {
                    if max - e >= SEQ_WINDOW as i64 || !seen.contains(&e) {
                        late += 1;
                    } else {
                        dup += 1;
                    }
                }
                max = max.max(e);
                seen.insert(e);
            }
            let r = s.summary();
            assert_eq!((r.duplicates, r.out_of_order), (dup, late), "round {round}");
            assert_eq!(r.expected, u64::try_from(max - first + 1).unwrap());
            // Clean and copies-only streams never miss a number.
            if !lossy && !swaps {
                assert_eq!(s.seen.inline_gaps(), 0, "round {round}");
                assert!(!s.holds_seq_bitmap(), "round {round}");
            }
        }
    }

    /// Duplicate/late accounting of a set model: every extended number
    /// seen, kept in a set; the extension is RFC 3550 A.1's (up to 2^15 - 1
    /// ahead of the highest is ahead, the rest behind, so jumps of 2^15 or
    /// more read as very late packets, as in the stream). A number behind
    /// the highest is a duplicate when in the set and within the window.
    /// Returns (duplicates, late, expected, wraps).
    fn set_model(seqs: &[u16]) -> (u64, u64, u64, u32) {
        use std::collections::HashSet;
        let Some(&s0) = seqs.first() else {
            return (0, 0, 0, 0);
        };
        let (first, mut max) = (i64::from(s0), i64::from(s0));
        let mut seen = HashSet::from([first]);
        let (mut dup, mut late, mut wraps) = (0, 0, 0);
        for &seq in &seqs[1..] {
            let max_seq = (max & 0xffff) as u16;
            let ahead = seq.wrapping_sub(max_seq);
            let e = if ahead != 0 && ahead < 0x8000 {
                wraps += u32::from(seq < max_seq);
                max + i64::from(ahead)
            } else {
                max - i64::from(max_seq.wrapping_sub(seq))
            };
            if e <= max {
                if max - e < SEQ_WINDOW as i64 && seen.contains(&e) {
                    dup += 1;
                } else {
                    late += 1;
                }
            }
            max = max.max(e);
            seen.insert(e);
        }
        (dup, late, u64::try_from(max - first + 1).unwrap(), wraps)
    }

    /// Feeds `seqs` and checks every sequence figure against [`set_model`].
    fn check_set_model(seqs: &[u16], what: &str) -> StreamStats {
        let mut s = StreamStats::new(0);
        for (i, &seq) in seqs.iter().enumerate() {
            s.update(20 * MS * i as u64, seq, 160 * i as u32, 8, 160, false);
        }
        let (dup, late, expected, wraps) = set_model(seqs);
        let r = s.summary();
        let got = (r.duplicates, r.out_of_order, r.expected, r.seq_wraps);
        assert_eq!(got, (dup, late, expected, wraps), "{what}");
        assert_eq!(r.lost, expected as i64 - seqs.len() as i64, "{what}");
        s
    }

    /// Streams built to hit the inline runs' limits: sparse loss (never
    /// more than three runs missing in the window: no bitmap), bursts of many short gaps (the bitmap fallback), late packets
    /// filling, splitting and trimming runs, the first packet overtaken,
    /// the 16-bit wrap, jumps past the window and past 2^15.
    #[test]
    fn lossy_streams_match_a_set_model_inline_and_after_the_fallback() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15u64);
        let (mut fallbacks, mut sparse_rounds) = (0, 0);
        for round in 0..600 {
            let kind = round % 6;
            let mut e = i64::try_from(next(65_536)).unwrap();
            let mut exts = Vec::new();
            for k in 0..2_500 {
                let r = next(1_000);
                e += match kind {
                    // Sparse: a gap of 1..3 every 400 packets at most.
                    0 if k % 400 == 399 => 2 + i64::try_from(next(3)).unwrap(),
                    // Heavy: 3 % of packets lost, runs of 1..4.
                    1 | 2 if r < 30 => 2 + i64::try_from(next(4)).unwrap(),
                    // Jumps: past the window, past 2^15 (read as late).
                    3 if r < 3 => 1_000 + i64::try_from(next(40_000)).unwrap(),
                    4 if r < 8 => 2 + i64::try_from(next(1_500)).unwrap(),
                    _ => 1,
                };
                exts.push(e);
            }
            if kind >= 2 {
                for _ in 0..60 {
                    let i = usize::try_from(next(2_400)).unwrap();
                    let j = (i + 1 + usize::try_from(next(1_100)).unwrap()).min(exts.len() - 1);
                    exts.swap(i, j);
                    let at = i + 1 + usize::try_from(next(50)).unwrap();
                    exts.insert(at, exts[i]);
                }
            }
            if kind == 5 {
                // The first packet overtook the ones before it.
                exts.swap(0, 1 + usize::try_from(next(20)).unwrap());
            }
            let seqs: Vec<u16> = exts.iter().map(|&e| (e & 0xffff) as u16).collect();
            let s = check_set_model(&seqs, &format!("round {round}"));
            fallbacks += usize::from(s.holds_seq_bitmap());
            if kind == 0 {
                assert!(!s.holds_seq_bitmap(), "round {round}: sparse loss");
                sparse_rounds += 1;
            }
            if kind == 1 {
                assert!(s.holds_seq_bitmap(), "round {round}: heavy loss");
            }
        }
        assert_eq!(sparse_rounds, 100);
        assert!(fallbacks >= 100, "{fallbacks} streams took the bitmap");
    }

    /// A late packet and its copy at every distance behind the highest
    /// around the window's edge, after streams in each state (a run at the
    /// window's lower edge, runs below an overtaken first packet, runs cut
    /// by a jump, the bitmap), checked against the set model.
    #[test]
    fn late_packets_at_the_window_edge_match_a_set_model() {
        let span = SEQ_WINDOW as u16 - 1;
        let prefixes: [Vec<u16>; 6] = [
            // Run [1, 1], then the window's lower edge reaches it.
            [0].into_iter().chain(2..=1_024).collect(),
            // The first (1,000) overtaken by 600: runs [477, 599], [601, 999].
            (1_000..=1_500).chain([600]).collect(),
            // Runs at 5 and 9, then a jump of 1,020 cuts them.
            [3, 4, 6, 7, 8, 10, 11, 1_031, 1_032].into(),
            // Every other number: the bitmap.
            (0..800).map(|n| n * 2).collect(),
            // The same, then a jump of 1,023: the old highest at the edge.
            (0..800).map(|n| n * 2).chain([1_598 + span]).collect(),
            // Inline, a jump of 1,023.
            [7, 9, 10, 10 + span].into(),
        ];
        for (k, prefix) in prefixes.iter().enumerate() {
            let last = check_set_model(prefix, "prefix").summary().last_seq;
            for back in span - 40..=span + 2 {
                let probe = last.wrapping_sub(back);
                let mut seqs = prefix.clone();
                seqs.extend([probe, probe]);
                check_set_model(&seqs, &format!("prefix {k}, {back} behind"));
            }
        }
    }

    /// Hand-made cases at the edges of the inline runs: each one checked
    /// against the set model, with the runs (or the bitmap) expected.
    #[test]
    fn inline_runs_split_trim_and_fall_back() {
        // One lost packet: a run, gone again once it leaves the window.
        let mut seqs: Vec<u16> = (0..1_030).filter(|&n| n != 1).collect();
        let s = check_set_model(&seqs[..10], "one loss");
        assert_eq!((s.seen.inline_gaps(), s.holds_seq_bitmap()), (1, false));
        let s = check_set_model(&seqs, "one loss, aged out");
        assert_eq!((s.seen.inline_gaps(), s.holds_seq_bitmap()), (0, false));
        // Three runs, then late packets: one fills a run's end, one splits
        // a run (the fourth run still fits: the filled one is gone), copies
        // of them, then one just below the first (the run below it listed:
        // three runs).
        seqs = [10, 12, 13, 15, 16, 20, 21, 11, 18, 14, 18, 11, 9, 9].into();
        let s = check_set_model(&seqs, "split");
        assert!(!s.holds_seq_bitmap());
        // Four runs at once: the bitmap, then the same questions.
        seqs = [10, 12, 14, 16, 18, 11, 17, 17, 13, 11, 9].into();
        let s = check_set_model(&seqs, "four runs");
        assert!(s.holds_seq_bitmap());
        // The first packet overtaken, across the wrap: the runs below it.
        seqs = [65_534, 65_530, 65_533, 0, 1, 65_531, 65_530, 65_535, 2].into();
        let s = check_set_model(&seqs, "below the first");
        assert!(!s.holds_seq_bitmap());
        // A hostile sender: every other number, for 60,000 packets.
        seqs = (0..60_000u32).map(|n| (n * 2) as u16).collect();
        seqs.extend((0..40).map(|n| 1_000u16.wrapping_mul(n)));
        let s = check_set_model(&seqs, "every other number");
        assert!(s.holds_seq_bitmap());
    }

    #[test]
    fn stats_sequence_wrap() {
        let mut s = StreamStats::new(0);
        feed(&mut s, &regular(65530, 0, 20));
        let r = s.summary();
        assert_eq!((r.packets, r.expected, r.lost), (20, 20, 0));
        assert_eq!(r.seq_wraps, 1);
        assert_eq!((r.first_seq, r.last_seq), (65530, 13));
        assert_eq!((r.out_of_order, r.duplicates), (0, 0));
    }

    #[test]
    fn stats_reorder_across_wrap() {
        // 65534, 0, 65535, 1: the late 65535 must not count a second wrap.
        let mut pkts = regular(65534, 0, 4);
        pkts.swap(1, 2);
        let mut s = StreamStats::new(0);
        feed(&mut s, &pkts);
        let r = s.summary();
        assert_eq!((r.packets, r.expected, r.lost, r.seq_wraps), (4, 4, 0, 1));
        assert_eq!((r.out_of_order, r.duplicates), (1, 0));
    }

    #[test]
    fn stats_duplicate_window_forgets_old_numbers() {
        // After a jump larger than the window, an old number comes back: it
        // is counted late (cannot be told from a duplicate any more).
        let mut s = StreamStats::new(0);
        feed(
            &mut s,
            &[(0, 10, 0), (20, 11, 160), (40, 3000, 320), (60, 11, 480)],
        );
        let r = s.summary();
        assert_eq!((r.duplicates, r.out_of_order), (0, 1));
        assert_eq!(r.expected, 2991);
    }

    /// Hand-computed RFC 3550 A.8 jitter for a 20 ms/160-tick stream arriving
    /// at 0, 20, 45, 60, 80 ms (J += (|D| - J) / 16, in ms):
    ///   D = 0, 5, 5, 0
    ///   J = 0, 5/16 = 0.3125, (15*0.3125 + 5)/16 = 0.60546875,
    ///       15*0.60546875/16 = 0.567626953125 (= 4.541015625 ticks)
    /// Wireshark's running mean over n = 1..4 deltas:
    ///   0, 0.15625, 0.305989583.., 0.37139892578125
    #[test]
    fn stats_jitter_matches_hand_computed_rfc3550() {
        let mut s = StreamStats::new(0);
        feed(
            &mut s,
            &[
                (0, 1, 0),
                (20, 2, 160),
                (45, 3, 320),
                (60, 4, 480),
                (80, 5, 640),
            ],
        );
        let r = s.summary();
        assert!(close(r.jitter_ms, 0.567626953125), "{}", r.jitter_ms);
        assert!(close(r.max_jitter_ms, 0.60546875));
        assert!(close(r.mean_jitter_ms, 0.37139892578125));
        assert!(close(s.min_jitter_ms(), 0.0));
        assert!(close(r.max_delta_ms, 25.0) && close(r.min_delta_ms, 15.0));
        assert!(close(r.avg_delta_ms, 20.0));
    }

    #[test]
    fn stats_marker_and_comfort_noise_excluded_from_extremes() {
        let mut s = StreamStats::new(0);
        s.update(0, 1, 0, 8, 160, true);
        s.update(20 * MS, 2, 160, 8, 160, false);
        // Talkspurt after 1 s of silence: marker set, its delta is not a gap.
        s.update(1_020 * MS, 3, 8160, 8, 160, true);
        s.update(1_040 * MS, 4, 8320, 8, 160, false);
        // CN packet, then the packet after it, both excluded.
        s.update(2_040 * MS, 5, 16320, PT_CN, 1, false);
        s.update(3_040 * MS, 6, 24320, 8, 160, false);
        s.update(3_060 * MS, 7, 24480, 8, 160, false);
        let r = s.summary();
        assert!(close(r.max_delta_ms, 20.0), "{}", r.max_delta_ms);
        assert_eq!(r.payload_types, [8, PT_CN]);
        assert_eq!(r.packets, 7);
    }

    /// The compact dynamic clocks answer as the plain table they replaced.
    #[test]
    fn dynamic_clocks_equal_a_plain_table() {
        let rates = [UNSET, 0, 8000, 16000, 48000, 90000];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200 {
            let (mut table, mut d) = ([UNSET; 32], DynClocks::default());
            for _ in 0..40 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let (i, r) = ((x % 32) as usize, rates[(x >> 8) as usize % rates.len()]);
                table[i] = r;
                d.set(i, r);
                for (j, &t) in table.iter().enumerate() {
                    assert_eq!(d.get(j), (t != UNSET).then_some(t), "type {j}");
                }
            }
        }
    }

    #[test]
    fn stats_payload_type_change_and_dynamic_clock() {
        let mut s = StreamStats::new(0);
        // Opus (dynamic 111) whose rate the SDP tells later.
        s.update(0, 1, 0, 111, 80, false);
        s.update(20 * MS, 2, 960, 111, 80, false);
        assert_eq!(s.summary().ptime_ms, None);
        s.set_clock_rate(48_000);
        s.update(40 * MS, 3, 1920, 111, 80, false);
        s.update(60 * MS, 4, 2880, 111, 80, false);
        // telephone-event mid-stream, same SSRC, no clock: no jitter.
        s.set_pt_clock_rate(101, 0);
        s.update(80 * MS, 5, 3840, 101, 4, true);
        s.update(130 * MS, 6, 3840, 101, 4, false);
        s.update(140 * MS, 7, 4800, 111, 80, false);
        let r = s.summary();
        assert_eq!(r.payload_types, [111, 101]);
        assert_eq!(r.ptime_ms, Some(20.0));
        assert_eq!(s.clock_rate_for(101), 0);
        assert_eq!(s.clock_rate_for(9), 8000);
        assert_eq!(s.clock_rate_for(19), 8000);
        assert_eq!(s.clock_rate_for(20), 0);
        assert_eq!((r.packets, r.lost), (7, 0));
    }

    /// (src port, dst port, ssrc): ports suffice for the corpus files.
    type Key = (u16, u16, u32);

    /// Streams found in a pcap, in first-seen order.
    fn streams_of(path: &str, dyn_clock: u32) -> Option<Vec<(Key, StreamStats)>> {
        use crate::rtp::{RtpPacket, looks_like_rtp};
        let dgrams = crate::rtp::test_pcap::udp_datagrams(path)?;
        let mut streams: Vec<(Key, StreamStats)> = Vec::new();
        for (ns, src, dst, payload) in &dgrams {
            if !looks_like_rtp(payload) {
                continue;
            }
            let p = RtpPacket::new_checked(payload).unwrap();
            let key = (src.1, dst.1, p.ssrc());
            let idx = match streams.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    streams.push((key, StreamStats::new(dyn_clock)));
                    streams.len() - 1
                }
            };
            streams[idx].1.update(
                *ns,
                p.sequence(),
                p.timestamp(),
                p.payload_type(),
                p.payload().len(),
                p.marker(),
            );
        }
        Some(streams)
    }

    /// One row of `tshark -z rtp,streams`; delta and jitter are
    /// [min, mean, max] in ms.
    struct Tshark {
        ports: (u16, u16),
        ssrc: u32,
        pkts: u64,
        lost: i64,
        delta: [f64; 3],
        jitter: [f64; 3],
    }

    fn compare(path: &str, want: &[Tshark]) {
        compare_with_clock(path, 0, want);
    }

    /// `dyn_clock` is what the SDP says for the dynamic PTs (0 for
    /// telephone-event, which Wireshark leaves out of jitter).
    fn compare_with_clock(path: &str, dyn_clock: u32, want: &[Tshark]) {
        let Some(streams) = streams_of(path, dyn_clock) else {
            eprintln!("skipping: {path} not present");
            return;
        };
        assert_eq!(streams.len(), want.len(), "stream count in {path}");
        for w in want {
            let key = (w.ports.0, w.ports.1, w.ssrc);
            let (_, s) = streams
                .iter()
                .find(|(k, _)| *k == key)
                .unwrap_or_else(|| panic!("no stream {key:x?}"));
            let r = s.summary();
            assert_eq!((r.packets, r.lost), (w.pkts, w.lost), "{key:x?}");
            let delta = [r.min_delta_ms, r.avg_delta_ms, r.max_delta_ms];
            let jitter = [s.min_jitter_ms(), r.mean_jitter_ms, r.max_jitter_ms];
            // tshark prints -1 when no packet had a clock to compute jitter.
            let mut theirs_jitter = w.jitter;
            if theirs_jitter[0] == -1.0 {
                theirs_jitter[0] = 0.0;
            }
            for (ours, theirs) in [(delta, w.delta), (jitter, theirs_jitter)] {
                for (a, b) in ours.iter().zip(theirs) {
                    // tshark prints 3 decimals.
                    assert!(
                        (a - b).abs() <= 0.0005 + 1e-9,
                        "{key:x?}: {ours:?} vs {theirs:?}"
                    );
                }
            }
        }
    }

    /// Figures from tshark 4.0.17:
    /// `tshark -q -r /work/shared/corpus/sipp/g711a.pcap -o rtp.heuristic_rtp:TRUE -z rtp,streams`
    /// 10.1.3.143:5000 -> 10.1.6.18:2006 0xDEE0EE8F g711A 236 pkts, lost 0,
    /// delta min/mean/max 25.112/29.998/34.829, jitter min/mean/max 0.002/0.350/0.829.
    #[test]
    fn stats_corpus_g711a_matches_tshark() {
        compare(
            "sipp/g711a.pcap",
            &[Tshark {
                ports: (5000, 2006),
                ssrc: 0xDEE0_EE8F,
                pkts: 236,
                lost: 0,
                delta: [25.112, 29.998, 34.829],
                jitter: [0.002, 0.350, 0.829],
            }],
        );
    }

    /// Figures from tshark 4.0.17:
    /// `tshark -q -r /work/shared/corpus/generated/baresip-g722-1call.pcap -o rtp.heuristic_rtp:TRUE -z rtp,streams`
    /// 20004 -> 21018 0xD0D49D72 g722 451 pkts, lost 0, delta 12.437/19.996/24.463, jitter 0.218/1.159/1.604
    /// 21018 -> 20004 0xB0EFB8D8 g722 451 pkts, lost 0, delta 12.503/19.995/28.401, jitter 0.032/1.186/2.001
    /// (RTCP on the odd ports must be rejected by `looks_like_rtp`, else the
    /// stream count differs.)
    #[test]
    fn stats_corpus_baresip_g722_matches_tshark() {
        compare(
            "generated/baresip-g722-1call.pcap",
            &[
                Tshark {
                    ports: (20004, 21018),
                    ssrc: 0xD0D4_9D72,
                    pkts: 451,
                    lost: 0,
                    delta: [12.437, 19.996, 24.463],
                    jitter: [0.218, 1.159, 1.604],
                },
                Tshark {
                    ports: (21018, 20004),
                    ssrc: 0xB0EF_B8D8,
                    pkts: 451,
                    lost: 0,
                    delta: [12.503, 19.995, 28.401],
                    jitter: [0.032, 1.186, 2.001],
                },
            ],
        );
    }

    /// More streams from the corpus, figures from tshark 4.0.17:
    /// `tshark -q -r FILE -o rtp.heuristic_rtp:TRUE -z rtp,streams`.
    /// Covers a hold gap (max delta 3.2 s), telephone-event in the audio
    /// SSRC, Opus at 48 kHz, and RFC 4733 end-of-event repeats with equal
    /// sequence numbers, which tshark reports as lost -2 (-25%).
    #[test]
    fn stats_corpus_more_baresip_and_sipp_match_tshark() {
        // baresip-pcma-hold-resume-dtmf-rtcp.pcap
        compare_with_clock(
            "generated/baresip-pcma-hold-resume-dtmf-rtcp.pcap",
            0,
            &[
                Tshark {
                    ports: (20088, 21004),
                    ssrc: 0x83B856D9,
                    pkts: 579,
                    lost: 0,
                    delta: [0.011, 24.056, 3220.654],
                    jitter: [0.224, 1.102, 1.995],
                },
                Tshark {
                    ports: (21004, 20088),
                    ssrc: 0x63B9EF64,
                    pkts: 530,
                    lost: 0,
                    delta: [16.208, 26.083, 3241.127],
                    jitter: [0.220, 1.081, 1.420],
                },
            ],
        );
        // baresip-opus-stereo-1call.pcap
        compare_with_clock(
            "generated/baresip-opus-stereo-1call.pcap",
            48_000,
            &[
                Tshark {
                    ports: (20090, 21092),
                    ssrc: 0xB0CE40BA,
                    pkts: 451,
                    lost: 0,
                    delta: [8.498, 19.994, 33.206],
                    jitter: [0.198, 1.630, 4.857],
                },
                Tshark {
                    ports: (21092, 20090),
                    ssrc: 0xF2065C2E,
                    pkts: 451,
                    lost: 0,
                    delta: [5.071, 19.994, 34.626],
                    jitter: [0.212, 1.669, 5.047],
                },
            ],
        );
        // sipp-loopback-3calls-rtpecho.pcap
        compare_with_clock(
            "generated/sipp-loopback-3calls-rtpecho.pcap",
            0,
            &[
                Tshark {
                    ports: (16000, 17008),
                    ssrc: 0x0E05384E,
                    pkts: 10,
                    lost: -2,
                    delta: [0.022, 15.553, 20.066],
                    jitter: [-1.000, 0.000, 0.000],
                },
                Tshark {
                    ports: (17008, 16000),
                    ssrc: 0x0E05384E,
                    pkts: 10,
                    lost: -2,
                    delta: [0.024, 15.556, 20.068],
                    jitter: [-1.000, 0.000, 0.000],
                },
                Tshark {
                    ports: (16000, 17004),
                    ssrc: 0x0E05384E,
                    pkts: 10,
                    lost: -2,
                    delta: [0.008, 15.563, 20.102],
                    jitter: [-1.000, 0.000, 0.000],
                },
                Tshark {
                    ports: (17004, 16000),
                    ssrc: 0x0E05384E,
                    pkts: 10,
                    lost: -2,
                    delta: [0.006, 15.556, 20.099],
                    jitter: [-1.000, 0.000, 0.000],
                },
                Tshark {
                    ports: (16000, 17000),
                    ssrc: 0x0E05384E,
                    pkts: 10,
                    lost: -2,
                    delta: [0.005, 15.564, 20.112],
                    jitter: [-1.000, 0.000, 0.000],
                },
                Tshark {
                    ports: (17000, 16000),
                    ssrc: 0x0E05384E,
                    pkts: 10,
                    lost: -2,
                    delta: [0.006, 15.554, 20.092],
                    jitter: [-1.000, 0.000, 0.000],
                },
                Tshark {
                    ports: (16000, 17008),
                    ssrc: 0xDEE0EE8F,
                    pkts: 236,
                    lost: 0,
                    delta: [21.941, 29.999, 37.284],
                    jitter: [0.006, 0.565, 1.472],
                },
                Tshark {
                    ports: (17008, 16000),
                    ssrc: 0xDEE0EE8F,
                    pkts: 236,
                    lost: 0,
                    delta: [21.964, 29.999, 37.256],
                    jitter: [0.005, 0.572, 1.470],
                },
                Tshark {
                    ports: (16000, 17004),
                    ssrc: 0xDEE0EE8F,
                    pkts: 236,
                    lost: 0,
                    delta: [24.309, 29.999, 35.021],
                    jitter: [0.006, 0.421, 1.278],
                },
                Tshark {
                    ports: (17004, 16000),
                    ssrc: 0xDEE0EE8F,
                    pkts: 236,
                    lost: 0,
                    delta: [24.342, 29.999, 34.995],
                    jitter: [0.005, 0.418, 1.274],
                },
                Tshark {
                    ports: (16000, 17000),
                    ssrc: 0xDEE0EE8F,
                    pkts: 236,
                    lost: 0,
                    delta: [21.676, 30.000, 38.299],
                    jitter: [0.005, 0.467, 2.009],
                },
                Tshark {
                    ports: (17000, 16000),
                    ssrc: 0xDEE0EE8F,
                    pkts: 236,
                    lost: 0,
                    delta: [21.775, 29.999, 38.200],
                    jitter: [0.005, 0.468, 1.997],
                },
            ],
        );
    }
}
