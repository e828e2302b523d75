//! The pipeline thread with `workers.pipeline` = N > 1: the dispatcher of
//! the parallel engine ([`ParallelEngine`], the one `voxtap import
//! --engine-workers N` runs), behind the same live loop as one pipeline
//! ([`super::worker::worker_loop`]). It steers each frame of the readers'
//! batches to the media workers (threads `voxtap-media-K`, each a replica
//! of the call table) and does for the engine what one pipeline does in
//! place: idle ticks, TLS key log lines, the kernel's endpoint map (the
//! union of the replicas' endpoints), capture loss, live snapshots (merged
//! from the replicas' parts), ended calls, and the signalling tables (from
//! worker 0). A media worker that falls behind has its own media dropped
//! and counted instead of stalling the dispatcher
//! (`workers.media_queue_bytes`).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::{Result, anyhow};

use super::batch::Batch;
use super::snapshot::LivePublisher;
use super::status;
use super::worker::{Finish, LiveEngine, LossScope, SignallingBatch};
use voxtap_engine::calls::{Call, EndpointEvent};
use voxtap_engine::live_calls::DEFAULT_MAX_CALLS;
use voxtap_engine::parallel::{EngineOptions, LossFilter, ParallelEngine, WorkerGauge};
use voxtap_engine::pipeline::PipelineConfig;
use voxtap_proto::pcapio::LinkType;

/// What the dispatcher is started with.
pub(super) struct DispatchSetup {
    pub pcfg: PipelineConfig,
    /// Media workers.
    pub n: usize,
    /// `workers.cores` and the index of media worker 0's core in it.
    pub cores: Vec<usize>,
    pub first_core: usize,
    /// `workers.media_queue_bytes`.
    pub media_high_water: u64,
}

/// The parallel engine and its workers' gauges.
pub(super) struct Dispatcher {
    engine: ParallelEngine,
    gauges: Arc<[WorkerGauge]>,
}

impl Dispatcher {
    pub fn start(setup: DispatchSetup) -> Self {
        let DispatchSetup {
            pcfg,
            n,
            cores,
            first_core,
            media_high_water,
        } = setup;
        let pin = Arc::new(move |k: usize| super::pin(&cores, first_core + k, "media"));
        let opts = EngineOptions {
            track_endpoints: true,
            live_max_calls: DEFAULT_MAX_CALLS,
            on_start: Some(pin),
            media_high_water,
        };
        let engine = ParallelEngine::with_options(pcfg, n, opts);
        let gauges = engine.gauges();
        Dispatcher { engine, gauges }
    }
}

impl LiveEngine for Dispatcher {
    fn process_batch(&mut self, batch: &Batch) -> u64 {
        let mut n = 0;
        for (ts, pref, data) in batch.iter() {
            self.engine.process(LinkType::Ethernet, ts, pref, data);
            n += 1;
        }
        // A live capture does not wait for a batch to fill: the SDP must
        // reach the replicas (and the endpoint map) now.
        self.engine.flush();
        n
    }

    fn tick(&mut self, now_ns: u64) {
        self.engine.idle_tick(now_ns);
    }

    fn failed(&self) -> bool {
        self.engine.failed()
    }

    fn add_tls_keylog(&mut self, bytes: &[u8]) {
        self.engine.add_tls_keylog(bytes);
    }

    fn drain_endpoint_events(&mut self, out: &mut Vec<EndpointEvent>) {
        self.engine.drain_endpoint_events(out);
    }

    /// In every replica (merging keeps a call's largest charge, so it
    /// counts once).
    fn note_loss(&mut self, n: u64, scope: LossScope<'_>) {
        let only = match scope {
            // What the engine's owner rule gave worker `k` (a shared
            // endpoint's streams: any worker).
            LossScope::Worker { k } => {
                let owners = self.engine.owners().clone();
                Some(Arc::new(move |ep| owners.may_own(ep, k as usize)) as LossFilter)
            }
            ring => ring.filter().map(|f| Arc::new(f) as LossFilter),
        };
        self.engine.note_capture_loss(n, only);
    }

    fn media_dropped(&self) -> &[u64] {
        self.engine.media_dropped()
    }

    fn open_calls(&self) -> u64 {
        self.engine.open_calls()
    }

    /// The dispatcher's figures (slot 0) and the media workers'.
    fn publish_gauges(&self, live: &status::LiveCounters, frames: u64, busy_ns: u64) {
        status::LiveCounters::set(&live.workers[0].frames, frames);
        status::LiveCounters::set(&live.workers[0].busy_ns, busy_ns);
        let dropped = self.engine.media_dropped();
        for ((g, l), d) in self
            .gauges
            .iter()
            .zip(live.workers.iter().skip(1))
            .zip(dropped)
        {
            status::LiveCounters::set(&l.frames, g.frames.load(Relaxed));
            status::LiveCounters::set(&l.busy_ns, g.busy_ns.load(Relaxed));
            status::LiveCounters::set(&l.dropped, *d);
        }
    }

    /// Merged replicas of the calls every replica ended.
    fn drain_ended(&mut self) -> Vec<Call> {
        self.engine.drain_ended()
    }

    fn now_ns(&self) -> u64 {
        self.engine.now_ns()
    }

    /// At most one request in flight: a slow worker delays the Live page,
    /// never the capture.
    fn live_snapshot(&mut self, live_calls: &mut LivePublisher) {
        if live_calls.due() {
            self.engine.request_snapshot();
        }
        if let Some(snap) = self.engine.take_snapshot() {
            live_calls.send_merged(snap);
        }
    }

    fn signalling(&mut self, due: bool) -> Vec<SignallingBatch> {
        if due {
            self.engine.request_signalling();
        }
        self.engine.take_signalling()
    }

    fn finish(mut self) -> Result<Finish> {
        let mut ended = self.engine.drain_ended();
        let now_ns = self.engine.now_ns();
        // Signalling tables asked for and not yet answered: the answer
        // comes before the worker's end, so it is waited for here.
        let mut signalling = self.engine.take_signalling_wait(Duration::from_secs(30));
        let (last, fin) = self.engine.finish();
        if let Some(why) = fin.failure {
            return Err(anyhow!("the call engine stopped: {why}"));
        }
        ended.extend(last);
        signalling.push((fin.signalling, fin.transactions, fin.floods));
        Ok(Finish {
            ended,
            now_ns,
            signalling,
            stats: fin.stats,
        })
    }
}
