//! Which of a stream's last [`SEQ_WINDOW`] extended sequence numbers were
//! seen, to tell a duplicate from a late packet.
//!
//! Lost packets are few and far apart in most streams, so the usual state
//! is a short inline list of the runs still missing behind the highest
//! number ([`GAPS_INLINE`] of them, 16 bytes with the bitmap's pointer,
//! nothing on the heap). A stream with more runs missing inside the window
//! at once (heavy loss, a hostile sender) falls back to a 128-byte bitmap,
//! once: that stream keeps it, so a sender cannot make us allocate per
//! packet. Both answer exactly as a set of every number seen would for
//! the numbers in the window; older ones are not asked about.

/// How many recent sequence numbers the duplicate detector remembers.
pub(crate) const SEQ_WINDOW: usize = 1024;
const SEQ_WORDS: usize = SEQ_WINDOW / 64;
/// The lowest number of the window is this far below the highest.
const SPAN: i64 = SEQ_WINDOW as i64 - 1;
/// Missing runs kept inline before the bitmap (16 bytes in all: three
/// runs of 4 bytes, their count and a flag, beside the enum's tag).
pub(crate) const GAPS_INLINE: usize = 3;

/// A run of numbers not seen, inside the window: its first number's low
/// 16 bits (the window is far shorter than 2^16, so the highest number
/// tells which extended number that is) and its length (1..=1023).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Gap {
    start: u16,
    len: u16,
}

/// The runs missing inside the window, oldest first, disjoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InlineGaps {
    n: u8,
    /// Every number of the window below the first packet's is missing
    /// (not listed) until a packet older than the first arrives: then the
    /// runs below the first are listed like the others.
    below_first: bool,
    gaps: [Gap; GAPS_INLINE],
}

#[derive(Debug, Clone)]
pub(crate) enum SeqWindow {
    Inline(InlineGaps),
    /// Bit `e % SEQ_WINDOW`: whether number `e` of the window was seen.
    Bitmap(Box<[u64; SEQ_WORDS]>),
}

/// The extended number, in the window of `max`, whose low 16 bits are `low`.
fn ext_of(low: u16, max: i64) -> i64 {
    max - i64::from(((max & 0xffff) as u16).wrapping_sub(low))
}

/// Length of the run `from..=to` (0 when empty; at most the window).
fn run_len(from: i64, to: i64) -> u16 {
    u16::try_from(to.saturating_sub(from).saturating_add(1).clamp(0, SPAN + 1)).unwrap_or(0)
}

impl Gap {
    fn new(from: i64, to: i64) -> Self {
        Gap {
            start: (from & 0xffff) as u16,
            len: run_len(from, to),
        }
    }
}

impl InlineGaps {
    const EMPTY: Self = InlineGaps {
        n: 0,
        below_first: true,
        gaps: [Gap { start: 0, len: 0 }; GAPS_INLINE],
    };

    fn listed(&self) -> &[Gap] {
        self.gaps.get(..usize::from(self.n)).unwrap_or(&[])
    }

    /// Run `i` as extended numbers `(from, to)`, in the window of `max`.
    fn range(&self, i: usize, max: i64) -> Option<(i64, i64)> {
        let g = self.listed().get(i)?;
        let from = ext_of(g.start, max);
        Some((from, from + i64::from(g.len) - 1))
    }

    fn seen(&self, e: i64, max: i64, first: i64) -> bool {
        if e < first && self.below_first {
            return false;
        }
        !(0..self.listed().len())
            .filter_map(|i| self.range(i, max))
            .any(|(from, to)| (from..=to).contains(&e))
    }

    fn remove(&mut self, i: usize) {
        let n = usize::from(self.n);
        if i < n {
            self.gaps.copy_within(i + 1..n, i);
            self.n -= 1;
        }
    }

    /// Inserts `g` at `i` (the caller keeps the order); false when full.
    fn insert(&mut self, i: usize, g: Gap) -> bool {
        let n = usize::from(self.n);
        if g.len == 0 {
            return true; // nothing missing: no room needed
        }
        if n >= GAPS_INLINE || i > n {
            return false;
        }
        self.gaps.copy_within(i..n, i + 1);
        if let Some(slot) = self.gaps.get_mut(i) {
            *slot = g;
        }
        self.n += 1;
        true
    }

    /// The highest number moves from `old` to `new`: runs leaving the
    /// window are cut, the numbers skipped become a run. None when that
    /// run finds no room (the caller then takes the bitmap).
    fn advance(&self, old: i64, new: i64) -> Option<Self> {
        let low = new - SPAN;
        let mut t = *self;
        while let Some((from, to)) = t.range(0, old) {
            if to < low {
                t.remove(0);
                continue;
            }
            if from < low
                && let Some(g) = t.gaps.first_mut()
            {
                *g = Gap::new(low, to);
            }
            break;
        }
        let skipped = Gap::new((old + 1).max(low), new - 1);
        t.insert(usize::from(t.n), skipped).then_some(t)
    }

    /// Marks `e` (in the window of `max`) seen: whether it already was,
    /// or None when splitting a run finds no room.
    fn mark(&mut self, e: i64, max: i64, first: i64) -> Option<bool> {
        if e < first && self.below_first {
            // List the runs below the first now, all but `e`; they are
            // older than every run listed so far.
            let mut t = *self;
            t.below_first = false;
            let below = [Gap::new(max - SPAN, e - 1), Gap::new(e + 1, first - 1)];
            let ok = t.insert(0, below[1]) && t.insert(0, below[0]);
            *self = ok.then_some(t)?;
            return Some(false);
        }
        let Some((i, (from, to))) = (0..self.listed().len())
            .filter_map(|i| Some((i, self.range(i, max)?)))
            .find(|(_, (from, to))| (*from..=*to).contains(&e))
        else {
            return Some(true);
        };
        let mut t = *self;
        t.remove(i);
        let ok = t.insert(i, Gap::new(e + 1, to)) && t.insert(i, Gap::new(from, e - 1));
        *self = ok.then_some(t)?;
        Some(false)
    }

    /// The same knowledge as a bitmap, for the window of `max`.
    fn bitmap(&self, max: i64, first: i64) -> Box<[u64; SEQ_WORDS]> {
        let mut words = Box::new([0u64; SEQ_WORDS]);
        for e in max - SPAN..=max {
            if self.seen(e, max, first) {
                set_bit(&mut words, e, true);
            }
        }
        words
    }
}

fn bit(e: i64) -> (usize, u64) {
    let idx = e.rem_euclid(SEQ_WINDOW as i64) as usize;
    (idx / 64, 1u64 << (idx % 64))
}

/// Sets or clears `e`'s bit; returns whether it was set.
fn set_bit(words: &mut [u64; SEQ_WORDS], e: i64, on: bool) -> bool {
    let (word, mask) = bit(e);
    let Some(w) = words.get_mut(word) else {
        return false;
    };
    let was = *w & mask != 0;
    if on {
        *w |= mask;
    } else {
        *w &= !mask;
    }
    was
}

impl Default for SeqWindow {
    fn default() -> Self {
        SeqWindow::Inline(InlineGaps::EMPTY)
    }
}

impl SeqWindow {
    /// The highest number moves from `old` to `new` (> `old`).
    pub(crate) fn advance(&mut self, old: i64, new: i64, first: i64) {
        if let SeqWindow::Inline(g) = self {
            if g.n == 0 && new == old + 1 {
                return; // the usual packet: nothing missing, nothing to do
            }
            match g.advance(old, new) {
                Some(t) => {
                    *g = t;
                    return;
                }
                None => *self = SeqWindow::Bitmap(g.bitmap(old, first)),
            }
        }
        if let SeqWindow::Bitmap(words) = self {
            // The slots of the numbers skipped are those of numbers that
            // leave the window: forget them.
            if new - old > SPAN {
                **words = [0; SEQ_WORDS];
            } else {
                for e in old + 1..new {
                    set_bit(words, e, false);
                }
            }
            set_bit(words, new, true);
        }
    }

    /// Marks `e`, at most [`SPAN`] behind `max`, seen; returns whether it
    /// already was.
    pub(crate) fn test_and_set(&mut self, e: i64, max: i64, first: i64) -> bool {
        if let SeqWindow::Inline(g) = self {
            match g.mark(e, max, first) {
                Some(was) => return was,
                None => *self = SeqWindow::Bitmap(g.bitmap(max, first)),
            }
        }
        match self {
            SeqWindow::Bitmap(words) => set_bit(words, e, true),
            SeqWindow::Inline(_) => false,
        }
    }

    /// Whether this stream fell back to the bitmap.
    pub(crate) fn is_bitmap(&self) -> bool {
        matches!(self, SeqWindow::Bitmap(_))
    }

    /// Missing runs listed inline (0 for the bitmap).
    #[cfg(test)]
    pub(crate) fn inline_gaps(&self) -> usize {
        match self {
            SeqWindow::Inline(g) => usize::from(g.n),
            SeqWindow::Bitmap(_) => 0,
        }
    }
}
