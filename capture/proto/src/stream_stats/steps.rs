//! The timestamp steps of a stream's consecutive in-order packets, counted
//! for its ptime estimate: [`STEP_SLOTS`] slots of (step, clock rate,
//! count), the rarest recycled when all are taken.
//!
//! A voice stream without silence suppression shows one step (160 at
//! 8 kHz for 20 ms), so the first [`INLINE`] slots are kept in the stream
//! and the others (72 bytes) are boxed the first time a third distinct
//! step is seen: 32 bytes a stream instead of 96. The box is made once
//! per stream (never per packet) and the slots behave exactly as one
//! array of [`STEP_SLOTS`]: the missing ones count as empty.

/// Distinct timestamp steps tracked for the ptime estimate.
pub(crate) const STEP_SLOTS: usize = 8;
/// Slots kept inline.
const INLINE: usize = 2;

/// (timestamp step, clock rate, count).
type Slot = (u32, u32, u32);

#[derive(Debug, Clone, Default)]
pub(crate) struct Steps {
    first: [Slot; INLINE],
    more: Option<Box<[Slot; STEP_SLOTS - INLINE]>>,
}

impl Steps {
    /// The slots in use or not, in order (missing boxed ones left out:
    /// they are empty).
    fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.first
            .iter()
            .chain(self.more.iter().flat_map(|m| m.iter()))
    }

    /// Counts one step. When all slots are taken the rarest one (the first
    /// of the rarest) is recycled: the dominant step of a voice stream
    /// recurs every packet, so it cannot be starved out.
    pub(crate) fn note(&mut self, step: u32, clock: u32) {
        let mut slots = self
            .first
            .iter_mut()
            .chain(self.more.iter_mut().flat_map(|m| m.iter_mut()));
        if let Some(s) = slots.find(|s| s.2 > 0 && s.0 == step && s.1 == clock) {
            s.2 = s.2.saturating_add(1);
            return;
        }
        let rarest = self.first.iter_mut().min_by_key(|s| s.2);
        let slot = match (rarest, &mut self.more) {
            // An empty inline slot comes before any boxed one.
            (Some(s), _) if s.2 == 0 => s,
            (Some(s), Some(m)) => match m.iter_mut().min_by_key(|x| x.2) {
                Some(x) if x.2 < s.2 => x,
                _ => s,
            },
            // Both inline slots taken, none boxed: the first boxed slot is
            // the first empty one.
            (Some(_), more @ None) => match more.insert(Box::default()).first_mut() {
                Some(x) => x,
                None => return,
            },
            (None, _) => return,
        };
        *slot = (step, clock, 1);
    }

    /// Step over clock of the most frequent step with a clock (the last of
    /// the most frequent), in ms.
    pub(crate) fn ptime_ms(&self) -> Option<f64> {
        self.slots()
            .filter(|s| s.2 > 0 && s.1 != 0)
            .max_by_key(|s| s.2)
            .map(|s| f64::from(s.0) * 1000.0 / f64::from(s.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The array of slots this replaced, kept as the model.
    struct Model([Slot; STEP_SLOTS]);

    impl Model {
        fn note(&mut self, step: u32, clock: u32) {
            if let Some(s) = self
                .0
                .iter_mut()
                .find(|s| s.2 > 0 && s.0 == step && s.1 == clock)
            {
                s.2 = s.2.saturating_add(1);
                return;
            }
            if let Some(s) = self.0.iter_mut().min_by_key(|s| s.2) {
                *s = (step, clock, 1);
            }
        }

        fn ptime_ms(&self) -> Option<f64> {
            self.0
                .iter()
                .filter(|s| s.2 > 0 && s.1 != 0)
                .max_by_key(|s| s.2)
                .map(|s| f64::from(s.0) * 1000.0 / f64::from(s.1))
        }
    }

    /// The same slots as the plain array after every step, on streams of
    /// one to twelve distinct steps drawn with skewed frequencies (ties,
    /// recycling and the box's creation included).
    #[test]
    fn steps_match_the_array_they_replaced() {
        let mut next = super::super::tests::xorshift(0x9e37_79b9_7f4a_7c15);
        for distinct in 1..=12u64 {
            for _ in 0..50 {
                let (mut s, mut m) = (Steps::default(), Model([(0, 0, 0); STEP_SLOTS]));
                for _ in 0..400 {
                    // Low steps far more often than high ones.
                    let top = next(distinct) + 1;
                    let step = next(top) as u32 * 80 + 80;
                    let clock = [8000, 16000, 0][next(3) as usize];
                    s.note(step, clock);
                    m.note(step, clock);
                    let slots: Vec<Slot> = s.slots().copied().collect();
                    let boxed = slots.len() > INLINE;
                    assert_eq!(&slots[..], &m.0[..slots.len()]);
                    assert!(m.0[slots.len()..].iter().all(|x| x.2 == 0));
                    assert_eq!(boxed, s.more.is_some());
                    assert_eq!(s.ptime_ms(), m.ptime_ms());
                }
            }
        }
    }

    #[test]
    fn one_step_keeps_the_slots_inline() {
        let mut s = Steps::default();
        for _ in 0..1000 {
            s.note(160, 8000);
        }
        assert!(s.more.is_none());
        assert_eq!(s.ptime_ms(), Some(20.0));
    }
}
