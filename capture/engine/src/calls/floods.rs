//! Floods of new dialogs, summarised per source instead of recorded one by
//! one.
//!
//! 100,000 unanswered INVITEs (a 25 MB capture, a scanner or a dead peer)
//! made 100,000 calls: 415 MB in memory and 2.1 GB of call folders. A new
//! INVITE dialog is now summarised instead of recorded when its source is
//! flooding: more than `flood_invites_per_s` new INVITE dialogs from that
//! address in the current (or the previous) second while at least as many of its INVITE
//! dialogs are open with no response at all (a busy SBC gets a 100 Trying
//! within milliseconds, so it never counts as flooding). Any new dialog is
//! also summarised while the open calls are over their memory budget. A
//! summary is one row of `floods.csv`: source, method, why, how many, first
//! and last time, one example. Its packets stay in the capture (the
//! original file, or the live store).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

/// Sources tracked at once; new ones past this are not rate-limited (and
/// summarised together, as "other sources", under memory pressure).
const MAX_SOURCES: usize = 65_536;
/// A summary ends (and is handed out) after this long without a dialog.
const QUIET_NS: u64 = 10_000_000_000;
/// Ended summaries kept until drained; past it the oldest go (a run that
/// never drains them, or a flood from ever new addresses, stays bounded).
const MAX_DONE: usize = 65_536;
const WINDOW_NS: u64 = 1_000_000_000;

/// Why new dialogs were summarised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloodReason {
    /// More new INVITE dialogs per second than the configured rate, with
    /// as many open and unanswered.
    UnansweredRate,
    /// The open calls were over their memory budget.
    MemoryBudget,
}

impl FloodReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FloodReason::UnansweredRate => "unanswered_rate",
            FloodReason::MemoryBudget => "memory_budget",
        }
    }
}

/// New dialogs from one source that were counted instead of recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct FloodSummary {
    /// `None`: sources past the tracked ones, together.
    pub source: Option<IpAddr>,
    pub reason: FloodReason,
    /// The method of its first summarised dialog.
    pub method: String,
    /// New dialogs summarised (an INVITE retransmitted before any answer
    /// counts each time: it opens no dialog we keep).
    pub dialogs: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    /// One of them, to find its packets in the capture.
    pub example_call_id: String,
    pub example_dst: SocketAddr,
}

#[derive(Default)]
struct Source {
    window_start_ns: u64,
    /// New INVITE dialogs in the current one-second window, and in the one
    /// before (0 if that was not the previous second).
    in_window: u32,
    prev_window: u32,
    /// Its INVITE dialogs that are open and have had no response.
    unanswered: u32,
    last_ns: u64,
    /// Boxed: most sources never flood, and a source costs little then.
    rate: Option<Box<FloodSummary>>,
    memory: Option<Box<FloodSummary>>,
}

/// A new dialog, as the call table sees it before creating a call.
pub(super) struct NewDialog<'a> {
    pub ts_ns: u64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub method: &'a str,
    /// An INVITE request (not a response creating a dialog we missed).
    pub invite: bool,
    pub call_id: &'a [u8],
}

pub(super) struct Floods {
    invites_per_s: u32,
    sources: HashMap<IpAddr, Source>,
    /// Memory-pressure summary of the sources past `MAX_SOURCES`.
    others: Option<Box<FloodSummary>>,
    done: VecDeque<FloodSummary>,
    summarised: u64,
}

impl Floods {
    /// `invites_per_s`: 0 turns the rate rule off.
    pub(super) fn new(invites_per_s: u32) -> Self {
        Floods {
            invites_per_s,
            sources: HashMap::new(),
            others: None,
            done: VecDeque::new(),
            summarised: 0,
        }
    }

    /// Whether dialog `d` is recorded as a call (true) or summarised;
    /// `over_memory` when the open calls are over their memory budget. A
    /// recorded INVITE counts as unanswered until [`Self::settled`].
    pub(super) fn admit(&mut self, d: &NewDialog<'_>, over_memory: bool) -> bool {
        let ip = d.src.ip();
        if !self.sources.contains_key(&ip) && self.sources.len() >= MAX_SOURCES {
            if over_memory {
                self.summarised += 1;
                note(&mut self.others, None, FloodReason::MemoryBudget, d);
                return false;
            }
            return true;
        }
        let rate = self.invites_per_s;
        let s = self.sources.entry(ip).or_default();
        s.last_ns = s.last_ns.max(d.ts_ns);
        if d.invite {
            let since = d.ts_ns.saturating_sub(s.window_start_ns);
            if since >= WINDOW_NS {
                s.prev_window = if since < 2 * WINDOW_NS {
                    s.in_window
                } else {
                    0
                };
                s.window_start_ns = d.ts_ns;
                s.in_window = 0;
            }
            s.in_window = s.in_window.saturating_add(1);
        }
        let flooding =
            rate > 0 && d.invite && s.in_window.max(s.prev_window) > rate && s.unanswered >= rate;
        let reason = if flooding {
            FloodReason::UnansweredRate
        } else if over_memory {
            FloodReason::MemoryBudget
        } else {
            if d.invite {
                s.unanswered = s.unanswered.saturating_add(1);
            }
            return true;
        };
        self.summarised += 1;
        let slot = match reason {
            FloodReason::UnansweredRate => &mut s.rate,
            FloodReason::MemoryBudget => &mut s.memory,
        };
        note(slot, Some(ip), reason, d);
        false
    }

    /// A recorded INVITE dialog from `src` got its first response, or closed.
    pub(super) fn settled(&mut self, src: IpAddr) {
        if let Some(s) = self.sources.get_mut(&src) {
            s.unanswered = s.unanswered.saturating_sub(1);
        }
    }

    /// Hands out the summaries that went quiet and forgets idle sources.
    pub(super) fn sweep(&mut self, now_ns: u64) {
        let quiet = |last: u64| last.saturating_add(QUIET_NS) <= now_ns;
        let mut ended = Vec::new();
        self.sources.retain(|_, s| {
            for slot in [&mut s.rate, &mut s.memory] {
                if slot.as_ref().is_some_and(|f| quiet(f.last_ns)) {
                    ended.extend(slot.take());
                }
            }
            s.unanswered > 0 || s.rate.is_some() || s.memory.is_some() || !quiet(s.last_ns)
        });
        if self.others.as_ref().is_some_and(|f| quiet(f.last_ns)) {
            ended.extend(self.others.take());
        }
        for f in ended {
            self.done_push(*f);
        }
    }

    /// Shrinks the map of sources once most have gone quiet.
    pub(super) fn give_back(&mut self) {
        super::trim::shrink_map(&mut self.sources);
    }

    /// End of capture: every summary is done.
    pub(super) fn finish(&mut self) {
        let mut ended: Vec<Box<FloodSummary>> = Vec::new();
        for s in self.sources.values_mut() {
            ended.extend(s.rate.take());
            ended.extend(s.memory.take());
        }
        ended.extend(self.others.take());
        ended.sort_by_key(|f| f.first_ns);
        for f in ended {
            self.done_push(*f);
        }
    }

    fn done_push(&mut self, f: FloodSummary) {
        // A spoofed flood ends one summary per address: only the big ones
        // are worth a warning each.
        if f.dialogs >= 10 {
            tracing::warn!(
                source = ?f.source,
                method = %f.method,
                reason = f.reason.as_str(),
                dialogs = f.dialogs,
                "new dialogs were summarised (floods.csv) instead of recorded"
            );
        }
        if self.done.len() >= MAX_DONE {
            self.done.pop_front();
        }
        self.done.push_back(f);
    }

    pub(super) fn drain(&mut self) -> Vec<FloodSummary> {
        self.done.drain(..).collect()
    }

    /// New dialogs summarised so far.
    pub(super) fn summarised(&self) -> u64 {
        self.summarised
    }

    #[cfg(test)]
    pub(super) fn sources(&self) -> usize {
        self.sources.len()
    }
}

/// Counts dialog `d` in summary `slot` (started on its first dialog).
fn note(
    slot: &mut Option<Box<FloodSummary>>,
    source: Option<IpAddr>,
    reason: FloodReason,
    d: &NewDialog<'_>,
) {
    let f = slot.get_or_insert_with(|| {
        Box::new(FloodSummary {
            source,
            reason,
            method: d.method.to_string(),
            dialogs: 0,
            first_ns: d.ts_ns,
            last_ns: d.ts_ns,
            example_call_id: String::from_utf8_lossy(d.call_id).into_owned(),
            example_dst: d.dst,
        })
    });
    f.dialogs += 1;
    f.last_ns = f.last_ns.max(d.ts_ns);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dialog(ts_ns: u64, src: &str, invite: bool) -> NewDialog<'static> {
        NewDialog {
            ts_ns,
            src: src.parse().unwrap(),
            dst: "10.0.0.9:5060".parse().unwrap(),
            method: if invite { "INVITE" } else { "REGISTER" },
            invite,
            call_id: b"x@h",
        }
    }

    /// 1,000 INVITEs a second, none answered: the first 100 are recorded,
    /// the rest summarised in one row; a source whose INVITEs are answered
    /// at the same rate is never summarised.
    #[test]
    fn unanswered_rate_is_summarised_answered_is_not() {
        let mut f = Floods::new(100);
        let mut recorded = [0u32; 2];
        for i in 0..5000u64 {
            let ts = i * 1_000_000;
            for (k, src) in ["192.0.2.1:5060", "198.51.100.1:5060"].iter().enumerate() {
                if f.admit(&dialog(ts, src, true), false) {
                    recorded[k] += 1;
                    if k == 1 {
                        f.settled(dialog(ts, src, true).src.ip());
                    }
                }
            }
        }
        assert_eq!(recorded, [100, 5000]);
        assert_eq!(f.summarised(), 4900);
        f.sweep(5_000_000_000 + QUIET_NS);
        let rows = f.drain();
        assert_eq!(rows.len(), 1, "{rows:?}");
        let r = &rows[0];
        assert_eq!(r.source, Some("192.0.2.1".parse().unwrap()));
        assert_eq!((r.reason, r.dialogs), (FloodReason::UnansweredRate, 4900));
        assert_eq!((r.first_ns, r.last_ns), (100_000_000, 4_999_000_000));
        // The answered source is forgotten once idle; the flooding one is
        // kept while its recorded INVITEs are open.
        assert_eq!(f.sources(), 1);
        for _ in 0..100 {
            f.settled("192.0.2.1".parse().unwrap());
        }
        f.sweep(5_000_000_000 + QUIET_NS);
        assert_eq!(f.sources(), 0);
    }

    /// Over the memory budget, every new dialog is summarised, per source,
    /// and the tracked sources stay bounded.
    #[test]
    fn memory_pressure_summarises_any_dialog_with_bounded_state() {
        let mut f = Floods::new(0);
        for i in 0..(MAX_SOURCES as u64 + 10) {
            let src = SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + i as u32), 5060));
            let d = NewDialog {
                src,
                ..dialog(i, "10.0.0.1:5060", false)
            };
            assert!(!f.admit(&d, true));
        }
        assert_eq!(f.sources(), MAX_SOURCES);
        f.finish();
        let rows = f.drain();
        // One summary per source, and one for the untracked ones; the
        // oldest went past the cap on kept summaries.
        assert_eq!(rows.len(), MAX_DONE);
        assert_eq!(rows[0].first_ns, 1);
        let others: Vec<_> = rows.iter().filter(|r| r.source.is_none()).collect();
        assert_eq!(others.len(), 1);
        assert_eq!(others[0].dialogs, 10);
        assert!(
            rows.iter()
                .all(|r| r.reason == FloodReason::MemoryBudget && r.method == "REGISTER")
        );
    }
}
