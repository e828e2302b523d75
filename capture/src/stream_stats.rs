//! Per-stream RTP statistics (one instance per 5-tuple + SSRC).
//!
//! Two sources of truth are blended on purpose:
//! - sequence accounting (extended highest sequence, cycles, expected, lost)
//!   follows RFC 3550 appendix A.1, with a fixed bitmap of the last
//!   [`SEQ_WINDOW`] sequence numbers to tell duplicates from late packets;
//! - the timing columns (delta, jitter, max/mean jitter) reproduce Wireshark's
//!   `rtppacket_analyse` (ui/tap-rtp-analysis.c), quirks included, so that our
//!   numbers can be checked against `tshark -z rtp,streams` and users see the
//!   same figures in both tools.
//!
//! [`StreamStats::update`] never allocates: all state is fixed-size.

use crate::rtp::static_codec;

/// How many recent sequence numbers the duplicate detector remembers.
pub const SEQ_WINDOW: usize = 1024;
const SEQ_WORDS: usize = SEQ_WINDOW / 64;
/// Distinct timestamp steps tracked for the ptime estimate.
const STEP_SLOTS: usize = 8;
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
    /// tshark.
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

/// Running statistics of one RTP stream.
#[derive(Debug, Clone)]
pub struct StreamStats {
    /// Rate for dynamic PTs without their own entry (from the SDP).
    default_clock: u32,
    /// Per dynamic PT 96..=127; `UNSET` falls back to `default_clock`.
    dyn_clock: [u32; 32],

    started: bool,
    packets: u64,
    first_seq: u16,
    base_ext: i64,
    max_ext: i64,
    seq_wraps: u32,
    seen: [u64; SEQ_WORDS],
    out_of_order: u64,
    duplicates: u64,

    /// Timestamp of the previous packet and its 64-bit extension, so a
    /// timestamp wrap does not look like a jump back in time.
    last_ts: u32,
    last_ext_ts: i64,

    first_ns: u64,
    last_ns: u64,
    /// Arrival and extended timestamp of the last packet whose timestamp did
    /// not go backwards (Wireshark's `time` / `seq_timestamp`).
    ref_ns: u64,
    ref_ext_ts: i64,
    /// Previous packet's PT (Wireshark's `pt`), for the CN rules.
    last_pt: u8,
    delta_ms: f64,
    jitter_ms: f64,
    max_jitter_ms: f64,
    min_jitter_ms: Option<f64>,
    mean_jitter_ms: f64,
    max_delta_ms: f64,
    min_delta_ms: Option<f64>,
    mean_delta_ms: f64,

    pt_seen: u128,
    pt_order: [u8; 128],
    pt_len: u8,

    /// (timestamp step, clock rate, count) of consecutive in-order packets.
    steps: [(u32, u32, u32); STEP_SLOTS],
    prev_ext: i64,
}

impl StreamStats {
    /// `clock_rate` is the RTP clock of dynamic payload types (from SDP);
    /// static ones use the RFC 3551 rate, as Wireshark does. 0 = unknown, no
    /// jitter is computed for such packets.
    pub fn new(clock_rate: u32) -> Self {
        Self {
            default_clock: clock_rate,
            dyn_clock: [UNSET; 32],
            started: false,
            packets: 0,
            first_seq: 0,
            base_ext: 0,
            max_ext: 0,
            seq_wraps: 0,
            seen: [0; SEQ_WORDS],
            out_of_order: 0,
            duplicates: 0,
            last_ts: 0,
            last_ext_ts: 0,
            first_ns: 0,
            last_ns: 0,
            ref_ns: 0,
            ref_ext_ts: 0,
            last_pt: 0,
            delta_ms: 0.0,
            jitter_ms: 0.0,
            max_jitter_ms: 0.0,
            min_jitter_ms: None,
            mean_jitter_ms: 0.0,
            max_delta_ms: 0.0,
            min_delta_ms: None,
            mean_delta_ms: 0.0,
            pt_seen: 0,
            pt_order: [0; 128],
            pt_len: 0,
            steps: [(0, 0, 0); STEP_SLOTS],
            prev_ext: 0,
        }
    }

    /// Sets the clock of dynamic payload types, e.g. once the SDP answer is
    /// seen. Takes effect from the next packet.
    pub fn set_clock_rate(&mut self, clock_rate: u32) {
        self.default_clock = clock_rate;
    }

    /// Sets the clock of one dynamic payload type (96..=127; others are
    /// ignored because static PTs have fixed rates). Use 0 for
    /// telephone-event: its timestamp stays put for a whole event (RFC 4733
    /// 2.2.1), so Wireshark computes no jitter for it and neither do we.
    pub fn set_pt_clock_rate(&mut self, pt: u8, clock_rate: u32) {
        if let Some(slot) = self.dyn_clock.get_mut(usize::from(pt).wrapping_sub(96)) {
            *slot = clock_rate;
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
            match self.dyn_clock.get(usize::from(pt & 0x7f).wrapping_sub(96)) {
                Some(&UNSET) | None => self.default_clock,
                Some(&rate) => rate,
            }
        }
    }

    fn bit(ext: i64) -> (usize, u64) {
        let idx = ext.rem_euclid(SEQ_WINDOW as i64) as usize;
        (idx / 64, 1u64 << (idx % 64))
    }

    /// Marks `ext` seen; returns whether it already was.
    fn test_and_set(&mut self, ext: i64) -> bool {
        let (word, mask) = Self::bit(ext);
        match self.seen.get_mut(word) {
            Some(w) => {
                let was = *w & mask != 0;
                *w |= mask;
                was
            }
            None => false,
        }
    }

    /// Sequence accounting (RFC 3550 A.1 without probation). Returns the
    /// packet's extended sequence number.
    fn track_sequence(&mut self, seq: u16) -> i64 {
        let max_seq = (self.max_ext & 0xffff) as u16;
        let udelta = seq.wrapping_sub(max_seq);
        if udelta != 0 && udelta < 0x8000 {
            // Ahead of the highest (possibly with a gap): advance the window,
            // forgetting the slots the new numbers reuse.
            let ext = self.max_ext.saturating_add(i64::from(udelta));
            if seq < max_seq {
                self.seq_wraps = self.seq_wraps.saturating_add(1);
            }
            if usize::from(udelta) >= SEQ_WINDOW {
                self.seen = [0; SEQ_WORDS];
            } else {
                for e in self.max_ext.saturating_add(1)..=ext {
                    let (word, mask) = Self::bit(e);
                    if let Some(w) = self.seen.get_mut(word) {
                        *w &= !mask;
                    }
                }
            }
            self.max_ext = ext;
            self.test_and_set(ext);
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
            if back < SEQ_WINDOW as i64 {
                if self.test_and_set(ext) {
                    self.duplicates = self.duplicates.saturating_add(1);
                } else {
                    self.out_of_order = self.out_of_order.saturating_add(1);
                }
            } else {
                // Too old for the bitmap: cannot tell, call it late.
                self.out_of_order = self.out_of_order.saturating_add(1);
            }
            ext
        }
    }

    fn note_payload_type(&mut self, pt: u8) {
        let pt = pt & 0x7f;
        let mask = 1u128 << pt;
        if self.pt_seen & mask == 0 {
            self.pt_seen |= mask;
            if let Some(slot) = self.pt_order.get_mut(usize::from(self.pt_len)) {
                *slot = pt;
                self.pt_len = self.pt_len.saturating_add(1);
            }
        }
    }

    /// Counts a timestamp step for the ptime estimate. When all slots are
    /// taken the rarest one is recycled: the dominant step of a voice stream
    /// recurs every packet, so it cannot be starved out.
    fn note_step(&mut self, step: u32, clock: u32) {
        if let Some(s) = self
            .steps
            .iter_mut()
            .find(|s| s.2 > 0 && s.0 == step && s.1 == clock)
        {
            s.2 = s.2.saturating_add(1);
            return;
        }
        if let Some(s) = self.steps.iter_mut().min_by_key(|s| s.2) {
            *s = (step, clock, 1);
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

        if !self.started {
            self.started = true;
            self.packets = 1;
            self.first_seq = seq;
            self.base_ext = i64::from(seq);
            self.max_ext = self.base_ext;
            self.test_and_set(self.base_ext);
            self.prev_ext = self.base_ext;
            self.last_ts = rtp_ts;
            self.last_ext_ts = i64::from(rtp_ts);
            self.first_ns = arrival_ns;
            self.ref_ns = arrival_ns;
            self.ref_ext_ts = self.last_ext_ts;
            self.last_pt = pt;
            return;
        }

        let ext = self.track_sequence(seq);

        // Extend the timestamp relative to the previous packet: the nearest
        // 64-bit value with these low 32 bits.
        let ts_step = rtp_ts.wrapping_sub(self.last_ts) as i32;
        let ext_ts = self.last_ext_ts.saturating_add(i64::from(ts_step));

        let clock = self.clock_rate_for(pt);
        if ext == self.prev_ext.saturating_add(1) && pt == self.last_pt && ts_step > 0 && clock != 0
        {
            self.note_step(ts_step.unsigned_abs(), clock);
        }

        // ---- Wireshark rtppacket_analyse from here on ----
        let in_time_sequence = self.ref_ext_ts <= ext_ts;
        let is_cn = pt == PT_CN || pt == PT_CN_OLD;
        let follows_cn = self.last_pt == PT_CN || self.last_pt == PT_CN_OLD;

        // Arrival delta from the last in-time-sequence packet, computed in
        // integer ns so absolute epoch times lose no precision.
        self.delta_ms = (i128::from(arrival_ns) - i128::from(self.ref_ns)) as f64 / 1e6;
        // Wireshark divides by `clock_rate / 1000` in integer arithmetic
        // (44100 Hz counts as 44 kHz); copied so figures match tshark.
        // Rates below 1000 Hz would divide by zero there; we skip them.
        let khz = clock / 1000;
        let mut current_jitter = 0.0;
        if khz != 0 {
            let nominal_ms = (ext_ts - self.ref_ext_ts) as f64 / f64::from(khz);
            let diff = (self.delta_ms - nominal_ms).abs();
            current_jitter = (15.0 * self.jitter_ms + diff) / 16.0;
            self.jitter_ms = current_jitter;
        }

        let regular = !marker && !is_cn && in_time_sequence && !follows_cn;
        if regular {
            // `packets` is Wireshark's total_nr before this packet, i.e. the
            // number of deltas so far: the means below are running means.
            let n = self.packets as f64;
            if self.delta_ms > self.max_delta_ms {
                self.max_delta_ms = self.delta_ms;
            }
            if self.min_delta_ms.is_none_or(|m| self.delta_ms < m) {
                self.min_delta_ms = Some(self.delta_ms);
            }
            self.mean_delta_ms = (self.mean_delta_ms * (n - 1.0) + self.delta_ms) / n;
            if khz != 0 {
                if self.jitter_ms > self.max_jitter_ms {
                    self.max_jitter_ms = self.jitter_ms;
                }
                // Wireshark divides by all packets so far, not only the
                // regular ones with a clock: copied for identical figures.
                self.mean_jitter_ms = (self.mean_jitter_ms * (n - 1.0) + current_jitter) / n;
                if self.min_jitter_ms.is_none_or(|m| self.jitter_ms < m) {
                    self.min_jitter_ms = Some(self.jitter_ms);
                }
            }
        }

        if in_time_sequence {
            self.ref_ns = arrival_ns;
            self.ref_ext_ts = ext_ts;
        }
        self.last_pt = pt;
        self.last_ts = rtp_ts;
        self.last_ext_ts = ext_ts;
        self.prev_ext = ext;
        self.packets = self.packets.saturating_add(1);
    }

    /// Smallest jitter among regular packets (Wireshark's "Min Jitter").
    pub fn min_jitter_ms(&self) -> f64 {
        self.min_jitter_ms.unwrap_or(0.0)
    }

    pub fn summary(&self) -> StreamSummary {
        let expected = if self.started {
            u64::try_from(self.max_ext - self.base_ext + 1).unwrap_or(0)
        } else {
            0
        };
        let ptime_ms = self
            .steps
            .iter()
            .filter(|s| s.2 > 0 && s.1 != 0)
            .max_by_key(|s| s.2)
            .map(|s| f64::from(s.0) * 1000.0 / f64::from(s.1));
        StreamSummary {
            packets: self.packets,
            expected,
            lost: i64::try_from(expected)
                .unwrap_or(i64::MAX)
                .saturating_sub(i64::try_from(self.packets).unwrap_or(i64::MAX)),
            out_of_order: self.out_of_order,
            duplicates: self.duplicates,
            seq_wraps: self.seq_wraps,
            jitter_ms: self.jitter_ms,
            max_jitter_ms: self.max_jitter_ms,
            mean_jitter_ms: self.mean_jitter_ms,
            min_delta_ms: self.min_delta_ms.unwrap_or(0.0),
            max_delta_ms: self.max_delta_ms,
            avg_delta_ms: self.mean_delta_ms,
            payload_types: self
                .pt_order
                .get(..usize::from(self.pt_len))
                .unwrap_or(&[])
                .to_vec(),
            ptime_ms,
            first_seq: self.first_seq,
            last_seq: (self.max_ext & 0xffff) as u16,
            first_ns: self.first_ns,
            last_ns: self.last_ns,
        }
    }
}
