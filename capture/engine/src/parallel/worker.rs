//! A media worker: one replica of the pipeline fed its frames in batches,
//! meeting the other workers at each sweep.

use std::sync::{Condvar, Mutex, RwLock};

use crossbeam_channel::{Receiver, Sender};

use super::{Batch, Item, Part};
use crate::calls::{Agreed, DueSet};
use crate::pipeline::{DecodedUdp, Pipeline, PipelineConfig, PipelineStats};
use crate::signalling::{SignallingSnapshot, Transaction};

/// Where the workers meet at each sweep: each posts what it found due,
/// all wait, then each reads every post and closes what all agree on. A
/// meeting has more rounds while latches were posted (what they make a
/// call's may latch and fingerprint more). Two sets of posts, by round
/// parity: a worker posting for the next round cannot overwrite one still
/// being read (it has to pass the next barrier first, which the slow
/// reader has not reached).
pub(super) struct Meeting {
    gate: Gate,
    posts: [Vec<RwLock<DueSet>>; 2],
}

/// Another worker failed (panicked): the meeting will not happen.
#[derive(Clone, Copy, Debug)]
pub(super) struct Broken;

/// A barrier that a failing worker breaks, so that the others stop instead
/// of waiting for it for ever (`std::sync::Barrier` cannot be broken).
struct Gate {
    n: usize,
    state: Mutex<GateState>,
    turned: Condvar,
}

#[derive(Default)]
struct GateState {
    arrived: usize,
    round: u64,
    broken: bool,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait(&self) -> Result<(), Broken> {
        let mut s = self.lock();
        if s.broken {
            return Err(Broken);
        }
        s.arrived += 1;
        if s.arrived == self.n {
            s.arrived = 0;
            s.round += 1;
            self.turned.notify_all();
            return Ok(());
        }
        let round = s.round;
        while s.round == round && !s.broken {
            s = self.turned.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        if s.round != round {
            Ok(())
        } else {
            Err(Broken)
        }
    }

    fn break_up(&self) {
        self.lock().broken = true;
        self.turned.notify_all();
    }
}

/// Breaks the meeting when its worker's thread unwinds from a panic.
struct BreakOnPanic<'a>(&'a Meeting);

impl Drop for BreakOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.gate.break_up();
        }
    }
}

impl Meeting {
    pub fn new(n: usize) -> Self {
        let posts = || (0..n).map(|_| RwLock::new(DueSet::default())).collect();
        Meeting {
            gate: Gate {
                n,
                state: Mutex::new(GateState::default()),
                turned: Condvar::new(),
            },
            posts: [posts(), posts()],
        }
    }

    /// One round: `round` counts this worker's rounds (every worker has
    /// had as many).
    fn agree(&self, me: usize, round: &mut u64, due: DueSet) -> Result<Agreed, Broken> {
        let posts = &self.posts[(*round % 2) as usize];
        *round += 1;
        *posts[me].write().unwrap_or_else(|e| e.into_inner()) = due;
        self.gate.wait()?;
        let read: Vec<_> = posts
            .iter()
            .map(|p| p.read().unwrap_or_else(|e| e.into_inner()))
            .collect();
        let sets: Vec<&DueSet> = read.iter().map(|g| &**g).collect();
        Ok(Agreed::from_replicas(&sets))
    }
}

/// One worker's busy figures.
#[derive(Clone, Copy, Debug, Default)]
pub struct WorkerTimes {
    /// Frames it ran through its pipeline (broadcast ones included).
    pub frames: u64,
    /// Its thread's CPU time, in ns (0 where the system does not say).
    pub cpu_ns: u64,
    /// Sweep meetings it attended.
    pub sweeps: u64,
    /// Links worker 0 posted that named a call this worker did not know
    /// (`CallTableStats::legs_links_unresolved`: should stay 0).
    pub links_unresolved: u64,
}

pub(super) struct WorkerEnd {
    pub stats: PipelineStats,
    pub times: WorkerTimes,
    pub signalling: SignallingSnapshot,
    pub transactions: Vec<Transaction>,
    pub floods: Vec<crate::calls::FloodSummary>,
}

/// Test knobs: one worker stalled or failing, to show that the outputs do
/// not depend on the workers' pace and that a failing worker ends the
/// engine with an error instead of a hang.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// This worker sleeps this long before each batch it takes.
    pub stall: Option<(usize, std::time::Duration)>,
    /// This worker panics at this sweep (the first is 1).
    pub panic_at_sweep: Option<(usize, u64)>,
    /// This worker (0), once it has handled this many frames (1), sleeps
    /// this long (2) once: the live sensor's `[testing]` stall.
    pub stall_once: Option<(usize, u64, std::time::Duration)>,
}

impl Faults {
    fn before_batch(&self, me: usize) {
        if let Some((w, pause)) = self.stall
            && w == me
        {
            std::thread::sleep(pause);
        }
    }

    fn stall_once(&self, me: usize, frames: u64, done: &mut bool) {
        if let Some((w, after, pause)) = self.stall_once
            && w == me
            && !*done
            && frames >= after
        {
            *done = true;
            tracing::warn!(worker = me, ?pause, "test fault: media worker stalls");
            std::thread::sleep(pause);
        }
    }

    fn at_sweep(&self, me: usize, seq: u64) {
        if self.panic_at_sweep == Some((me, seq)) {
            panic!("test fault: media worker {me} fails at sweep {seq}");
        }
    }
}

pub(super) struct Worker {
    pub me: usize,
    pub n: usize,
    pub cfg: PipelineConfig,
    pub input: Receiver<Batch>,
    pub free: Sender<Batch>,
    pub parts: Sender<Part>,
    pub meeting: std::sync::Arc<Meeting>,
    pub link: super::control::WorkerLink,
}

impl Worker {
    /// Its frames until the dispatcher hangs up, then its end; Err when
    /// another worker failed (this one stops at the next meeting).
    pub fn run(mut self) -> Result<WorkerEnd, Broken> {
        let meeting = self.meeting.clone();
        let _break = BreakOnPanic(&meeting);
        let faults = self.cfg.engine_faults;
        let started = thread_cpu_ns();
        let mut p = Pipeline::new(self.cfg.clone());
        p.set_shard(self.me, super::Owners::new(&self.cfg.shared_media, self.n));
        if self.me != 0 {
            // The joining thread keeps worker 0's SIP part of each call.
            p.calls_mut().keep_no_sip_texts();
            // Worker 0 weighs every replica's leg-linking evidence.
            p.calls_mut().weigh_elsewhere();
        }
        self.link.start(self.me, &mut p);
        let mut times = WorkerTimes::default();
        // Transactions and floods are the same in every replica: kept from
        // worker 0, drained as they end so they do not pile up.
        let mut transactions = Vec::new();
        let mut floods = Vec::new();
        let mut stalled_once = false;
        let mut rounds = 0;
        for mut batch in self.input.iter() {
            let size = batch.queued_bytes();
            faults.before_batch(self.me);
            faults.stall_once(self.me, times.frames, &mut stalled_once);
            self.link.batch_started();
            for item in batch.items.drain(..) {
                match item {
                    Item::Frame {
                        link,
                        ts_ns,
                        now_ns,
                        pref,
                        start,
                        len,
                    } => {
                        times.frames += 1;
                        p.calls_mut().advance(now_ns);
                        let frame = &batch.bytes[start as usize..(start + len) as usize];
                        p.process(link, ts_ns, pref, frame);
                    }
                    Item::Udp {
                        ts_ns,
                        now_ns,
                        pref,
                        frame_len,
                        udp,
                        sip,
                    } => {
                        times.frames += 1;
                        p.calls_mut().advance(now_ns);
                        let payload = &batch.bytes[udp.at as usize..(udp.at + udp.len) as usize];
                        let d = DecodedUdp {
                            ts_ns,
                            pref,
                            frame_len,
                            src: udp.ends.src(),
                            dst: udp.ends.dst(),
                            sip_like: udp.verdict.sip_like,
                            mine: usize::from(udp.verdict.owner) == self.me,
                        };
                        let sip = sip.and_then(|i| batch.sips.get(i as usize));
                        p.process_udp(&d, payload, sip);
                    }
                    Item::Sweep { seq, now_ns } => {
                        times.sweeps += 1;
                        faults.at_sweep(self.me, seq);
                        let due = p.calls_mut().sweep_due(now_ns);
                        self.link.at_meeting(self.me, true);
                        let agreed = self.meet(&mut rounds, due, &mut p);
                        self.link.at_meeting(self.me, false);
                        let agreed = agreed?;
                        p.calls_mut().sweep_agreed(&agreed);
                        self.hand_over(seq, &mut p);
                        if self.me == 0 {
                            transactions.extend(p.drain_transactions());
                            floods.extend(p.drain_floods());
                        } else {
                            p.drain_transactions();
                            p.drain_floods();
                        }
                    }
                    Item::Control => self.link.handle(&mut p, &mut transactions, &mut floods),
                }
            }
            self.link.batch_done(self.me, &mut p, times.frames);
            self.link.dequeued(self.me, size);
            batch.bytes.clear();
            batch.sips.clear();
            let _ = self.free.try_send(batch);
        }
        self.last_meeting(&mut rounds, &mut p)?;
        p.finish();
        self.hand_over(u64::MAX, &mut p);
        transactions.extend(p.drain_transactions());
        floods.extend(p.drain_floods());
        times.cpu_ns = thread_cpu_ns().saturating_sub(started);
        times.links_unresolved = p.call_stats().legs_links_unresolved;
        Ok(WorkerEnd {
            stats: p.stats().clone(),
            times,
            signalling: p.signalling().snapshot(),
            transactions,
            floods,
        })
    }

    /// A sweep meeting: `due` posted and every replica's read; while
    /// latches were posted, each replica adopts them (what they make a
    /// call's since the last meeting is taken then) and a further round
    /// posts the latches and leg-linking evidence that made. Then the
    /// weighing replica (worker 0) weighs every round's evidence, and one
    /// more round posts the links it made (by signalling since the last
    /// meeting, then these), for the others to make before anything
    /// closes (`CallTable::apply_links`). What all agreed, with those
    /// links.
    fn meet(&self, rounds: &mut u64, due: DueSet, p: &mut Pipeline) -> Result<Agreed, Broken> {
        let mut agreed = self.meeting.agree(self.me, rounds, due)?;
        let mut latches = std::mem::take(&mut agreed.latches);
        while !latches.is_empty() {
            p.calls_mut().adopt_latches(&latches);
            let mut more = DueSet::default();
            p.calls_mut().post(&mut more);
            let next = self.meeting.agree(self.me, rounds, more)?;
            agreed.evidence.extend(next.evidence);
            latches = next.latches;
        }
        let links = p.calls_mut().weigh_posted(&agreed.evidence);
        let made = DueSet {
            links: std::sync::Arc::new(links),
            ..Default::default()
        };
        agreed.links = self.meeting.agree(self.me, rounds, made)?.links;
        Ok(agreed)
    }

    /// At the end of the capture, before every call closes: the latches and
    /// leg-linking evidence since the last sweep, exchanged, adopted and
    /// weighed as at a sweep (one table weighs its own before closing too).
    fn last_meeting(&self, rounds: &mut u64, p: &mut Pipeline) -> Result<(), Broken> {
        let mut posts = DueSet::default();
        p.calls_mut().post(&mut posts);
        let agreed = self.meet(rounds, posts, p)?;
        p.calls_mut().apply_links(&agreed.links);
        Ok(())
    }

    fn hand_over(&self, seq: u64, p: &mut Pipeline) {
        let calls = p.drain_ended();
        // The engine is gone only when it is being dropped.
        let _ = self.parts.send(Part {
            worker: self.me,
            seq,
            calls,
        });
    }
}

/// This thread's CPU time in ns, from /proc/thread-self/schedstat (its
/// first field: time on a CPU); 0 where there is no such file.
pub fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
