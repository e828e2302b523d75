//! The pipeline worker thread: the one owner of the call table. Runs every
//! frame through the same [`Pipeline`] as `import`, keeps the kernel's media
//! endpoint map in step with the calls, and charges each kernel ring's
//! capture loss to the open calls that may have lost frames on it
//! ([`RingRule`]: a shared media endpoint's calls on any media ring).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

use super::batch::Batch;
use super::clock::{Clock, mono_ns};
use super::keylog::KeyLogFollower;
use super::snapshot::LivePublisher;
use super::status;
use crate::xdp::{EndpointMap, RingRule, XdpError};
use voxtap_engine::calls::{Call, EndpointEvent, FloodSummary};
use voxtap_engine::pipeline::{Pipeline, PipelineConfig, PipelineStats};
use voxtap_engine::signalling::{SignallingSnapshot, Transaction};
use voxtap_proto::pcapio::LinkType;

/// Least time between two log lines about endpoint map failures: they are
/// counted (status/sensor.json), not logged one by one.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);

/// Registrations and pings as they are, the transactions outside calls
/// that finished, and the flood summaries that ended (floods.csv), handed
/// from the pipeline to the output thread.
pub(super) type SignallingBatch = (SignallingSnapshot, Vec<Transaction>, Vec<FloodSummary>);

/// The pipeline thread hands the signalling tables over this often.
pub(super) const SIGNALLING_EVERY: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(super) struct WorkerStats {
    pub pipeline: PipelineStats,
    pub capture_loss: u64,
    /// Media frames the dispatcher dropped because their worker was behind
    /// (in `capture_loss` too).
    pub media_dropped: u64,
    pub endpoint_updates: u64,
    /// Endpoints the kernel map refused (full), and removals that failed.
    pub endpoint_insert_failures: u64,
    pub endpoint_remove_failures: u64,
    /// Failures already logged, and when.
    failures_logged: u64,
    failure_logged_at: Option<Instant>,
}

/// The worker's ends of the channels: full batches in, empty ones back to
/// the reader, ended calls and signalling snapshots out to the output thread.
pub(super) struct Channels {
    pub full_rx: Receiver<Batch>,
    pub empty_tx: SyncSender<Batch>,
    pub ended_tx: Sender<(u64, Vec<Call>)>,
    pub sig_tx: Sender<SignallingBatch>,
    /// The calls in progress for the web's Live page.
    pub live_calls: LivePublisher,
}

/// What the live loop needs of a call engine: one [`Pipeline`] (`workers.pipeline
/// = 1`) or the parallel engine's dispatcher (`super::dispatch`). The loop
/// itself ([`worker_loop`]) is the same for both: batches in, idle ticks,
/// key log lines, endpoint map, loss charges, ended calls, snapshots and the
/// signalling tables out.
pub(super) trait LiveEngine {
    /// Every frame of a reader's batch; returns how many.
    fn process_batch(&mut self, batch: &Batch) -> u64;
    /// No batch for a while: capture time moves to the live clock.
    fn tick(&mut self, now_ns: u64);
    /// The engine cannot go on (a media worker failed): [`Self::finish`]
    /// says why.
    fn failed(&self) -> bool {
        false
    }
    fn add_tls_keylog(&mut self, bytes: &[u8]);
    fn drain_endpoint_events(&mut self, out: &mut Vec<EndpointEvent>);
    /// `n` frames lost where `scope` says: charged to the calls open now
    /// that may have lost them.
    fn note_loss(&mut self, n: u64, scope: LossScope<'_>);
    /// Each media worker's frames dropped in user space (none for one
    /// pipeline).
    fn media_dropped(&self) -> &[u64] {
        &[]
    }
    fn open_calls(&self) -> u64;
    /// Per-thread figures into `live.workers` (`frames`, `busy_ns`: the
    /// pipeline thread's).
    fn publish_gauges(&self, live: &status::LiveCounters, frames: u64, busy_ns: u64);
    /// Calls ended since the last call, and the capture time.
    fn drain_ended(&mut self) -> Vec<Call>;
    fn now_ns(&self) -> u64;
    /// The live snapshot when its time has come.
    fn live_snapshot(&mut self, live_calls: &mut LivePublisher);
    /// The signalling tables: asked for when `due`, handed out when ready.
    fn signalling(&mut self, due: bool) -> Vec<SignallingBatch>;
    /// End of the capture: the last ended calls, the last signalling
    /// tables, the pipeline counters.
    fn finish(self) -> Result<Finish>;
}

/// Where lost frames may have been.
#[derive(Clone, Copy, Debug)]
pub(super) enum LossScope<'a> {
    /// Kernel ring `ring` under the program's ring rule: ring 0 (SIP,
    /// fragments, TCP; or everything with one ring) may carry any call's
    /// frames, a media ring its destinations' and any shared endpoint's.
    Ring { ring: u32, rule: &'a RingRule },
    /// Media worker `k`: its own media, dropped by the dispatcher.
    Worker { k: u32 },
}

impl LossScope<'_> {
    /// None: every open call; else the endpoints whose frames it concerns.
    /// A worker's scope is the parallel engine's owner rule, which only the
    /// engine knows (`ParallelEngine::owners`, in `dispatch.rs`): here it is
    /// every call.
    pub fn filter(self) -> Option<impl Fn(SocketAddr) -> bool + Send + Sync + 'static> {
        match self {
            LossScope::Ring { ring, rule } if ring > 0 && rule.rings() > 1 => {
                // Cloned once per loss event, not per frame.
                let rule = rule.clone();
                Some(move |ep| rule.may_carry(ep, ring))
            }
            _ => None,
        }
    }
}

/// What [`LiveEngine::finish`] leaves.
pub(super) struct Finish {
    pub ended: Vec<Call>,
    pub now_ns: u64,
    pub signalling: Vec<SignallingBatch>,
    pub stats: PipelineStats,
}

/// The pipeline thread's loop, for one pipeline or the parallel engine.
pub(super) fn worker_loop<E: LiveEngine>(
    mut engine: E,
    channels: Channels,
    mut endpoints: EndpointMap,
    mut keylog: Option<KeyLogFollower>,
    kernel_lost: &[AtomicU64],
    rule: RingRule,
    live: &status::LiveCounters,
) -> Result<WorkerStats> {
    let Channels {
        full_rx,
        empty_tx,
        ended_tx,
        sig_tx,
        mut live_calls,
    } = channels;
    let mut last_signalling = Instant::now();
    let mut stats = WorkerStats::default();
    let mut events: Vec<EndpointEvent> = Vec::with_capacity(64);
    let mut loss = LossSeen::new(kernel_lost, rule, engine.media_dropped());
    let (mut last_seq, mut busy_ns, mut frames) = (0u64, 0u64, 0u64);
    let mut clock = Clock::new();
    status::LiveCounters::set(
        &live.endpoint_map_max_entries,
        u64::from(endpoints.max_entries()),
    );
    loop {
        match full_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(mut batch) => {
                let started = Instant::now();
                frames += engine.process_batch(&batch);
                busy_ns += started.elapsed().as_nanos() as u64;
                // Several readers number batches from one sequence and send
                // them in any order: every batch up to the highest seen is
                // what the output thread waits on.
                last_seq = last_seq.max(batch.seq);
                batch.clear();
                // The reader may be gone at shutdown; the batch is then freed.
                let _ = empty_tx.send(batch);
            }
            Err(RecvTimeoutError::Timeout) => {
                // No traffic: time still passes for idle and lingering calls.
                clock.refresh();
                engine.tick(clock.wall(mono_ns()));
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if engine.failed() {
            // The engine hands nothing on any more: the sensor stops with
            // the reason rather than capturing into calls never rebuilt.
            engine.finish()?;
            return Err(anyhow!("the call engine stopped"));
        }
        if let Some(k) = keylog.as_mut() {
            let added = k.poll(Instant::now());
            if !added.is_empty() {
                engine.add_tls_keylog(&added);
            }
        }
        engine.drain_endpoint_events(&mut events);
        apply_endpoint_events(&mut endpoints, &mut events, &mut stats);
        loss.charge(&mut engine, kernel_lost, &mut stats);
        publish(engine.open_calls(), &stats, live);
        engine.publish_gauges(live, frames, busy_ns);
        hand_over_ended(&mut engine, &mut live_calls, &ended_tx, last_seq)?;
        engine.live_snapshot(&mut live_calls);
        let due = last_signalling.elapsed() >= SIGNALLING_EVERY;
        if due {
            last_signalling = Instant::now();
        }
        for s in engine.signalling(due) {
            sig_tx
                .send(s)
                .map_err(|_| anyhow!("output thread stopped"))?;
        }
    }
    engine.drain_endpoint_events(&mut events);
    apply_endpoint_events(&mut endpoints, &mut events, &mut stats);
    loss.charge(&mut engine, kernel_lost, &mut stats);
    let fin = engine.finish()?;
    stats.pipeline = hand_over_last(fin, live_calls, &ended_tx, &sig_tx, last_seq);
    Ok(stats)
}

/// What the engine left at the end to the output thread and the live
/// snapshot; its counters.
fn hand_over_last(
    fin: Finish,
    mut live_calls: LivePublisher,
    ended_tx: &Sender<(u64, Vec<Call>)>,
    sig_tx: &Sender<SignallingBatch>,
    last_seq: u64,
) -> PipelineStats {
    live_calls.note_ended(&fin.ended, fin.now_ns);
    if !fin.ended.is_empty() {
        let _ = ended_tx.send((last_seq, fin.ended));
    }
    if live_calls.dropped > 0 {
        tracing::info!(
            dropped = live_calls.dropped,
            "live call snapshots dropped (the writer was busy)"
        );
    }
    // Every call was closed by the finish.
    live_calls.finish(std::iter::empty::<&Call>(), fin.now_ns);
    for s in fin.signalling {
        let _ = sig_tx.send(s);
    }
    fin.stats
}

/// Closed calls to the output thread (and to the live snapshot, as ended).
/// Every frame of such a call was handled before `last_seq`'s batch was
/// done: once that batch is on disk, so are the call's frames.
fn hand_over_ended<E: LiveEngine>(
    engine: &mut E,
    live_calls: &mut LivePublisher,
    ended_tx: &Sender<(u64, Vec<Call>)>,
    last_seq: u64,
) -> Result<()> {
    let ended = engine.drain_ended();
    if !ended.is_empty() {
        live_calls.note_ended(&ended, engine.now_ns());
        if ended_tx.send((last_seq, ended)).is_err() {
            return Err(anyhow!("output thread stopped"));
        }
    }
    Ok(())
}

/// One pipeline owning the call table (`workers.pipeline = 1`).
pub(super) struct OnePipeline(pub Pipeline);

impl OnePipeline {
    pub fn new(pcfg: PipelineConfig) -> Self {
        let mut pipeline = Pipeline::new(pcfg);
        pipeline.calls_mut().track_endpoints();
        OnePipeline(pipeline)
    }
}

impl LiveEngine for OnePipeline {
    fn process_batch(&mut self, batch: &Batch) -> u64 {
        let mut n = 0;
        for (ts, pref, data) in batch.iter() {
            self.0.process(LinkType::Ethernet, ts, pref, data);
            n += 1;
        }
        n
    }

    fn tick(&mut self, now_ns: u64) {
        self.0.calls_mut().tick(now_ns);
    }

    fn add_tls_keylog(&mut self, bytes: &[u8]) {
        self.0.add_tls_keylog(bytes);
    }

    fn drain_endpoint_events(&mut self, out: &mut Vec<EndpointEvent>) {
        self.0.calls_mut().drain_endpoint_events(out);
    }

    fn note_loss(&mut self, n: u64, scope: LossScope<'_>) {
        let calls = self.0.calls_mut();
        match scope.filter() {
            None => calls.note_capture_loss(n),
            Some(f) => calls.note_capture_loss_where(n, f),
        }
    }

    fn open_calls(&self) -> u64 {
        self.0.open_calls() as u64
    }

    fn publish_gauges(&self, live: &status::LiveCounters, frames: u64, busy_ns: u64) {
        status::LiveCounters::set(&live.workers[0].frames, frames);
        status::LiveCounters::set(&live.workers[0].busy_ns, busy_ns);
    }

    fn drain_ended(&mut self) -> Vec<Call> {
        self.0.drain_ended()
    }

    fn now_ns(&self) -> u64 {
        self.0.calls().now_ns()
    }

    fn live_snapshot(&mut self, live_calls: &mut LivePublisher) {
        live_calls.tick(self.0.calls());
    }

    fn signalling(&mut self, due: bool) -> Vec<SignallingBatch> {
        if due {
            vec![signalling_batch(&mut self.0)]
        } else {
            Vec::new()
        }
    }

    fn finish(mut self) -> Result<Finish> {
        self.0.finish();
        Ok(Finish {
            ended: self.0.drain_ended(),
            now_ns: self.0.calls().now_ns(),
            signalling: vec![signalling_batch(&mut self.0)],
            stats: self.0.stats().clone(),
        })
    }
}

fn signalling_batch(pipeline: &mut Pipeline) -> SignallingBatch {
    (
        pipeline.signalling().snapshot(),
        pipeline.drain_transactions(),
        pipeline.drain_floods(),
    )
}

pub(super) fn publish(open_calls: u64, stats: &WorkerStats, live: &status::LiveCounters) {
    status::LiveCounters::set(&live.calls_open, open_calls);
    status::LiveCounters::set(&live.capture_loss, stats.capture_loss);
    status::LiveCounters::set(
        &live.endpoint_insert_failures,
        stats.endpoint_insert_failures,
    );
    status::LiveCounters::set(
        &live.endpoint_remove_failures,
        stats.endpoint_remove_failures,
    );
}

/// Endpoint map updates (`events`, drained from the call table), once per
/// batch. A failed update is counted; the log gets a line when failures
/// start and at most one per [`FAILURE_LOG_EVERY`] after that.
pub(super) fn apply_endpoint_events(
    endpoints: &mut EndpointMap,
    events: &mut Vec<EndpointEvent>,
    stats: &mut WorkerStats,
) {
    let mut last_error: Option<XdpError> = None;
    for ev in events.drain(..) {
        stats.endpoint_updates += 1;
        let failed = match ev {
            EndpointEvent::Added(ep) => endpoints
                .add(ep)
                .err()
                .inspect(|_| stats.endpoint_insert_failures += 1),
            EndpointEvent::Removed(ep) => endpoints
                .remove(ep)
                .err()
                .inspect(|_| stats.endpoint_remove_failures += 1),
        };
        last_error = failed.or(last_error);
    }
    let Some(error) = last_error else { return };
    let failures = stats.endpoint_insert_failures + stats.endpoint_remove_failures;
    if stats
        .failure_logged_at
        .is_none_or(|t| t.elapsed() >= FAILURE_LOG_EVERY)
        && failures > stats.failures_logged
    {
        tracing::warn!(
            insert_failures = stats.endpoint_insert_failures,
            remove_failures = stats.endpoint_remove_failures,
            max_entries = endpoints.max_entries(),
            %error,
            "updating the kernel's media endpoint map failed (full: raise capture.media_endpoints); \
             those endpoints are kept only by heuristic_rtp; totals in status/sensor.json"
        );
        stats.failures_logged = failures;
        stats.failure_logged_at = Some(Instant::now());
    }
}

/// Loss seen so far: each kernel ring's (per-CPU `RING_STATS`, published
/// by the main thread) and each media worker's (dropped by the
/// dispatcher). Once per round, the increase is charged and counted.
struct LossSeen {
    rings: Vec<u64>,
    workers: Vec<u64>,
    /// Which calls a ring's loss concerns.
    rule: RingRule,
}

impl LossSeen {
    fn new(kernel_lost: &[AtomicU64], rule: RingRule, dropped: &[u64]) -> Self {
        LossSeen {
            rule,
            rings: kernel_lost
                .iter()
                .map(|l| l.load(Ordering::Relaxed))
                .collect(),
            workers: dropped.to_vec(),
        }
    }

    fn charge<E: LiveEngine>(
        &mut self,
        engine: &mut E,
        kernel_lost: &[AtomicU64],
        stats: &mut WorkerStats,
    ) {
        let open_calls = engine.open_calls();
        for (ring, (lost, seen)) in kernel_lost.iter().zip(self.rings.iter_mut()).enumerate() {
            let lost = lost.load(Ordering::Relaxed);
            if lost > *seen {
                let d = lost - *seen;
                tracing::warn!(
                    ring,
                    lost = d,
                    open_calls,
                    "a kernel ring was full: frames lost; charged to the open calls on that ring"
                );
                let ring = ring as u32;
                let rule = &self.rule;
                engine.note_loss(d, LossScope::Ring { ring, rule });
                stats.capture_loss += d;
                *seen = lost;
            }
        }
        let n = self.workers.len();
        for k in 0..n {
            let now = engine.media_dropped()[k];
            let d = now.saturating_sub(self.workers[k]);
            if d == 0 {
                continue;
            }
            self.workers[k] = now;
            tracing::warn!(
                worker = k,
                dropped = d,
                open_calls,
                "a media worker was behind: its media dropped; charged to the open calls with media on it"
            );
            engine.note_loss(d, LossScope::Worker { k: k as u32 });
            stats.capture_loss += d;
            stats.media_dropped += d;
        }
    }
}
