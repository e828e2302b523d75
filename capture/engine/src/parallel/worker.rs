//! A media worker: one replica of the pipeline fed its frames in batches,
//! meeting the other workers at each sweep.

use std::sync::{Barrier, RwLock};

use crossbeam_channel::{Receiver, Sender};

use super::{Batch, Item, Part};
use crate::calls::{Agreed, DueSet};
use crate::pipeline::{Pipeline, PipelineConfig, PipelineStats};
use crate::signalling::{SignallingSnapshot, Transaction};

/// Where the workers meet at each sweep: each posts what it found due,
/// all wait, then each reads every post and closes what all agree on. Two
/// sets of posts, by sweep parity: a worker posting for the next sweep
/// cannot overwrite one still being read (it has to pass the next barrier
/// first, which the slow reader has not reached).
pub(super) struct Meeting {
    barrier: Barrier,
    posts: [Vec<RwLock<DueSet>>; 2],
}

impl Meeting {
    pub fn new(n: usize) -> Self {
        let posts = || (0..n).map(|_| RwLock::new(DueSet::default())).collect();
        Meeting {
            barrier: Barrier::new(n),
            posts: [posts(), posts()],
        }
    }

    fn agree(&self, me: usize, seq: u64, due: DueSet) -> Agreed {
        let posts = &self.posts[(seq % 2) as usize];
        *posts[me].write().unwrap_or_else(|e| e.into_inner()) = due;
        self.barrier.wait();
        let read: Vec<_> = posts
            .iter()
            .map(|p| p.read().unwrap_or_else(|e| e.into_inner()))
            .collect();
        let sets: Vec<&DueSet> = read.iter().map(|g| &**g).collect();
        Agreed::from_replicas(&sets)
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
}

pub(super) struct WorkerEnd {
    pub stats: PipelineStats,
    pub times: WorkerTimes,
    pub signalling: SignallingSnapshot,
    pub transactions: Vec<Transaction>,
    pub floods: Vec<crate::calls::FloodSummary>,
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
    pub fn run(mut self) -> WorkerEnd {
        let started = thread_cpu_ns();
        let mut p = Pipeline::new(self.cfg.clone());
        p.set_shard(self.me as u32, self.n as u32);
        self.link.start(self.me, &mut p);
        let mut times = WorkerTimes::default();
        // Transactions and floods are the same in every replica: kept from
        // worker 0, drained as they end so they do not pile up.
        let mut transactions = Vec::new();
        let mut floods = Vec::new();
        for mut batch in self.input.iter() {
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
                    Item::Sweep { seq, now_ns } => {
                        times.sweeps += 1;
                        let due = p.calls_mut().sweep_due(now_ns);
                        let agreed = self.meeting.agree(self.me, seq, due);
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
            batch.bytes.clear();
            let _ = self.free.try_send(batch);
        }
        p.finish();
        self.hand_over(u64::MAX, &mut p);
        transactions.extend(p.drain_transactions());
        floods.extend(p.drain_floods());
        times.cpu_ns = thread_cpu_ns().saturating_sub(started);
        WorkerEnd {
            stats: p.stats().clone(),
            times,
            signalling: p.signalling().snapshot(),
            transactions,
            floods,
        }
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
