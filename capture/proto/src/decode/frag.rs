//! IPv4/IPv6 fragment reassembly with bounded memory.
//!
//! Slots (one per datagram being reassembled) and their buffers are kept and
//! reused, so steady-state reassembly does not allocate. Memory is bounded by
//! `FragLimits`: the bytes held by incomplete datagrams, the number of them,
//! and their age in capture time (not wall time, so replaying a file behaves
//! like the live capture did).

use std::net::IpAddr;

use super::{DecodeError, DecodeStats, Fragment};

/// Reassembly limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragLimits {
    /// Bytes held by all incomplete datagrams together.
    pub max_bytes: usize,
    /// Incomplete datagrams held at once.
    pub max_datagrams: usize,
    /// Age (capture time) after which an incomplete datagram is dropped.
    pub timeout_ns: u64,
}

impl Default for FragLimits {
    fn default() -> Self {
        FragLimits {
            max_bytes: 4 << 20,
            max_datagrams: 1024,
            timeout_ns: 30_000_000_000,
        }
    }
}

/// What identifies one fragmented datagram (RFC 791 / RFC 8200). For IPv6
/// `proto` is the fragment header's next header, which every fragment of a
/// datagram repeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FragKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub id: u32,
    pub proto: u8,
}

/// An IP payload can never exceed this (16-bit length fields).
const MAX_DATAGRAM: u32 = 65_535;
/// Enough for a 64 KiB datagram cut into minimal 8-byte fragments; beyond it
/// someone is replaying duplicates at us.
const MAX_FRAGS_PER_DATAGRAM: usize = 8192;

#[derive(Debug)]
pub(super) struct Slot {
    in_use: bool,
    key: FragKey,
    first_ts: u64,
    data: Vec<u8>,
    /// Received byte ranges, sorted and merged.
    have: Vec<(u32, u32)>,
    /// Payload length, known once the last fragment arrived.
    total: Option<u32>,
    refs: Vec<u64>,
}

impl Slot {
    fn new(key: FragKey) -> Self {
        Slot {
            in_use: false,
            key,
            first_ts: 0,
            data: Vec::new(),
            have: Vec::new(),
            total: None,
            refs: Vec::new(),
        }
    }
}

pub(crate) struct Completed<'a> {
    pub key: FragKey,
    pub data: &'a [u8],
    pub refs: &'a [u64],
}

#[derive(Debug, Default)]
pub(crate) struct Reassembler {
    pub(super) slots: Vec<Slot>,
    active: usize,
    /// Sum of `data.len()` over slots in use.
    held: usize,
    /// Earliest capture time at which some slot times out.
    next_deadline: u64,
}

fn bad(reason: &'static str) -> DecodeError {
    DecodeError::BadHeader {
        layer: "ip-fragment",
        reason,
    }
}

/// The byte range a fragment covers, checked: within 65535 bytes, and a
/// non-final fragment a non-zero multiple of 8 long (RFC 791).
fn fragment_range(f: &Fragment<'_>) -> Result<(u32, u32), DecodeError> {
    let len = u32::try_from(f.data.len()).map_err(|_| bad("fragment too long"))?;
    let end = f
        .offset
        .checked_add(len)
        .filter(|&e| e <= MAX_DATAGRAM)
        .ok_or(bad("fragment ends beyond 65535 bytes"))?;
    if f.more && (len == 0 || len % 8 != 0) {
        return Err(bad(
            "non-final fragment length is not a non-zero multiple of 8",
        ));
    }
    Ok((f.offset, end))
}

impl Reassembler {
    /// Drops incomplete datagrams older than the timeout.
    /// Inline: the test is all that runs for nearly every frame (no
    /// fragment held, or none due); the walk is out of line.
    #[inline]
    pub fn expire(&mut self, now: u64, limits: &FragLimits, stats: &mut DecodeStats) {
        if self.active == 0 || now <= self.next_deadline {
            return;
        }
        self.expire_due(now, limits, stats);
    }

    #[inline(never)]
    fn expire_due(&mut self, now: u64, limits: &FragLimits, stats: &mut DecodeStats) {
        let mut next = u64::MAX;
        for i in 0..self.slots.len() {
            let Some(s) = self.slots.get(i) else { break };
            if !s.in_use {
                continue;
            }
            let deadline = s.first_ts.saturating_add(limits.timeout_ns);
            if now > deadline {
                self.release(i, limits);
                stats.frag_timeouts = stats.frag_timeouts.wrapping_add(1);
            } else {
                next = next.min(deadline);
            }
        }
        self.next_deadline = next;
    }

    /// Frees slot `i`, keeping its buffers for reuse unless that would keep
    /// more than `max_bytes` alive in idle buffers.
    fn release(&mut self, i: usize, limits: &FragLimits) {
        let retained: usize = self.slots.iter().map(|s| s.data.capacity()).sum();
        let Some(s) = self.slots.get_mut(i) else {
            return;
        };
        if !s.in_use {
            return;
        }
        s.in_use = false;
        self.active = self.active.saturating_sub(1);
        self.held = self.held.saturating_sub(s.data.len());
        if retained > limits.max_bytes {
            s.data = Vec::new();
        }
    }

    fn evict_oldest(&mut self, except: Option<usize>, limits: &FragLimits) -> bool {
        let oldest = self
            .slots
            .iter()
            .enumerate()
            .filter(|(i, s)| s.in_use && Some(*i) != except)
            .min_by_key(|(_, s)| s.first_ts)
            .map(|(i, _)| i);
        match oldest {
            Some(i) => {
                self.release(i, limits);
                true
            }
            None => false,
        }
    }

    /// Adds one fragment. Ok(Some(slot)) when it completed its datagram (read
    /// it with [`Reassembler::completed`]), Ok(None) when more are needed or
    /// the datagram had to be dropped to stay within the limits.
    pub fn insert(
        &mut self,
        f: &Fragment<'_>,
        ts: u64,
        pkt_ref: u64,
        limits: &FragLimits,
        stats: &mut DecodeStats,
    ) -> Result<Option<usize>, DecodeError> {
        let (start, end) = fragment_range(f)?;
        let idx = match self.slots.iter().position(|s| s.in_use && s.key == f.key) {
            Some(i) => i,
            None => match self.open_slot(f, ts, limits, stats) {
                Some(i) => i,
                None => return Ok(None),
            },
        };
        if !self.admit(idx, f.more, end, limits, stats)? {
            return Ok(None);
        }
        if !self.make_room(idx, end, limits, stats) {
            return Ok(None);
        }
        Ok(self.fill(idx, f, start, end, pkt_ref))
    }

    /// A free slot for a new datagram, evicting the oldest past the count
    /// limit; None when no datagram may be held at all.
    fn open_slot(
        &mut self,
        f: &Fragment<'_>,
        ts: u64,
        limits: &FragLimits,
        stats: &mut DecodeStats,
    ) -> Option<usize> {
        if limits.max_datagrams == 0 {
            stats.frag_evicted = stats.frag_evicted.wrapping_add(1);
            return None;
        }
        while self.active >= limits.max_datagrams {
            if !self.evict_oldest(None, limits) {
                break;
            }
            stats.frag_evicted = stats.frag_evicted.wrapping_add(1);
        }
        let i = match self.slots.iter().position(|s| !s.in_use) {
            Some(i) => i,
            None => {
                self.slots.push(Slot::new(f.key));
                self.slots.len().saturating_sub(1)
            }
        };
        let s = self.slots.get_mut(i)?;
        s.in_use = true;
        s.key = f.key;
        s.first_ts = ts;
        s.data.clear();
        s.have.clear();
        s.total = None;
        s.refs.clear();
        self.active = self.active.saturating_add(1);
        let deadline = ts.saturating_add(limits.timeout_ns);
        if self.active == 1 || deadline < self.next_deadline {
            self.next_deadline = deadline;
        }
        Some(i)
    }

    /// Whether a fragment ending at `end` fits the datagram in slot `idx`:
    /// an error (and the datagram dropped) when the fragments disagree on
    /// its length, false (dropped, counted) past the fragment-count limit.
    fn admit(
        &mut self,
        idx: usize,
        more: bool,
        end: u32,
        limits: &FragLimits,
        stats: &mut DecodeStats,
    ) -> Result<bool, DecodeError> {
        let (total, high, nrefs) = match self.slots.get(idx) {
            Some(s) => (s.total, s.have.last().map_or(0, |r| r.1), s.refs.len()),
            None => return Ok(false),
        };
        let conflict = if more {
            total.is_some_and(|t| end > t)
        } else {
            total.is_some_and(|t| t != end) || high > end
        };
        if conflict {
            self.release(idx, limits);
            return Err(bad("fragments disagree on the datagram length"));
        }
        if nrefs >= MAX_FRAGS_PER_DATAGRAM {
            self.release(idx, limits);
            stats.frag_evicted = stats.frag_evicted.wrapping_add(1);
            return Ok(false);
        }
        Ok(true)
    }

    /// Memory bound: makes room for slot `idx` to grow to `end` bytes by
    /// evicting the oldest other datagrams; false (and `idx` dropped) when
    /// this datagram alone is over the limit.
    fn make_room(
        &mut self,
        idx: usize,
        end: u32,
        limits: &FragLimits,
        stats: &mut DecodeStats,
    ) -> bool {
        let cur_len = self.slots.get(idx).map_or(0, |s| s.data.len());
        let grow = (end as usize).saturating_sub(cur_len);
        while self.held.saturating_add(grow) > limits.max_bytes {
            stats.frag_evicted = stats.frag_evicted.wrapping_add(1);
            if !self.evict_oldest(Some(idx), limits) {
                self.release(idx, limits);
                return false;
            }
        }
        self.held = self.held.saturating_add(grow);
        true
    }

    /// Copies the fragment's bytes into the holes of slot `idx`; Some(idx)
    /// when that completed the datagram.
    fn fill(
        &mut self,
        idx: usize,
        f: &Fragment<'_>,
        start: u32,
        end: u32,
        pkt_ref: u64,
    ) -> Option<usize> {
        let s = self.slots.get_mut(idx)?;
        if s.data.len() < end as usize {
            s.data.resize(end as usize, 0);
        }
        copy_into_holes(&mut s.data, &s.have, start, end, f.data);
        add_range(&mut s.have, start, end);
        if !f.more {
            s.total = Some(end);
        }
        if s.total.is_some_and(|t| s.have.as_slice() == [(0, t)]) {
            // Keep the bytes and refs readable until the next insert; the
            // slot itself is free for reuse.
            s.in_use = false;
            self.active = self.active.saturating_sub(1);
            self.held = self.held.saturating_sub(s.data.len());
            Some(idx)
        } else {
            s.refs.push(pkt_ref);
            None
        }
    }

    pub fn completed(&self, idx: usize) -> Option<Completed<'_>> {
        let s = self.slots.get(idx)?;
        Some(Completed {
            key: s.key,
            data: s.data.get(..s.total? as usize)?,
            refs: &s.refs,
        })
    }
}

/// Copies only the bytes of `[start, end)` not already received: the first
/// copy of any byte wins, so a later overlapping fragment cannot rewrite data
/// that was already there (the classic overlap evasion).
fn copy_into_holes(data: &mut [u8], have: &[(u32, u32)], start: u32, end: u32, src: &[u8]) {
    let mut pos = start;
    for &(a, b) in have.iter().chain(std::iter::once(&(end, end))) {
        if b <= pos {
            continue;
        }
        if a >= end {
            copy_span(data, src, start, pos, end);
            return;
        }
        if a > pos {
            copy_span(data, src, start, pos, a);
        }
        pos = pos.max(b);
        if pos >= end {
            return;
        }
    }
}

fn copy_span(data: &mut [u8], src: &[u8], base: u32, from: u32, to: u32) {
    let (Some(s_from), Some(s_to)) = (from.checked_sub(base), to.checked_sub(base)) else {
        return;
    };
    let src = src.get(s_from as usize..s_to as usize);
    let dst = data.get_mut(from as usize..to as usize);
    if let (Some(src), Some(dst)) = (src, dst) {
        dst.copy_from_slice(src);
    }
}

/// Inserts `[start, end)` into the sorted, merged range list.
fn add_range(have: &mut Vec<(u32, u32)>, start: u32, end: u32) {
    if start >= end {
        return;
    }
    let mut s = start;
    let mut e = end;
    // Ranges that touch or overlap the new one are merged into it.
    let first = have.partition_point(|r| r.1 < s);
    let mut last = first;
    while let Some(&(a, b)) = have.get(last) {
        if a > e {
            break;
        }
        s = s.min(a);
        e = e.max(b);
        last += 1;
    }
    if first <= last && last <= have.len() {
        have.splice(first..last, std::iter::once((s, e)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge() {
        let mut h = Vec::new();
        add_range(&mut h, 16, 24);
        add_range(&mut h, 0, 8);
        assert_eq!(h, [(0, 8), (16, 24)]);
        add_range(&mut h, 8, 16);
        assert_eq!(h, [(0, 24)]);
        add_range(&mut h, 4, 40);
        assert_eq!(h, [(0, 40)]);
        add_range(&mut h, 50, 50);
        assert_eq!(h, [(0, 40)]);
    }

    #[test]
    fn first_copy_wins() {
        let mut data = vec![0u8; 24];
        let mut have = Vec::new();
        copy_into_holes(&mut data, &have, 8, 16, &[1; 8]);
        add_range(&mut have, 8, 16);
        copy_into_holes(&mut data, &have, 0, 24, &[2; 24]);
        assert_eq!(&data[..8], &[2; 8]);
        assert_eq!(&data[8..16], &[1; 8]);
        assert_eq!(&data[16..], &[2; 8]);
    }
}
