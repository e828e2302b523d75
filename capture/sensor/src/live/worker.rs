//! The pipeline worker thread: the one owner of the call table. Runs every
//! frame through the same [`Pipeline`] as `import`, keeps the kernel's media
//! endpoint map in step with the calls, and charges each kernel ring's
//! capture loss to the open calls that may have lost frames on it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

use super::batch::Batch;
use super::clock::{Clock, mono_ns};
use super::keylog::KeyLogFollower;
use super::snapshot::LivePublisher;
use super::status;
use crate::xdp::{EndpointMap, XdpError, ring_of};
use voxtap_engine::calls::{Call, CallTable, EndpointEvent, FloodSummary};
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

pub(super) fn worker_loop(
    pcfg: PipelineConfig,
    channels: Channels,
    mut endpoints: EndpointMap,
    mut keylog: Option<KeyLogFollower>,
    kernel_lost: &[AtomicU64],
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
    let mut pipeline = Pipeline::new(pcfg);
    pipeline.calls_mut().track_endpoints();
    let mut stats = WorkerStats::default();
    let mut events: Vec<EndpointEvent> = Vec::with_capacity(64);
    let mut seen_lost: Vec<u64> = kernel_lost
        .iter()
        .map(|l| l.load(Ordering::Relaxed))
        .collect();
    let mut last_seq = 0u64;
    let mut clock = Clock::new();
    status::LiveCounters::set(
        &live.endpoint_map_max_entries,
        u64::from(endpoints.max_entries()),
    );
    let mut busy_ns = 0u64;
    loop {
        match full_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(mut batch) => {
                let started = Instant::now();
                for (ts, pref, data) in batch.iter() {
                    pipeline.process(LinkType::Ethernet, ts, pref, data);
                }
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
                pipeline.calls_mut().tick(clock.wall(mono_ns()));
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if let Some(k) = keylog.as_mut() {
            let added = k.poll(Instant::now());
            if !added.is_empty() {
                pipeline.add_tls_keylog(&added);
            }
        }
        pipeline.calls_mut().drain_endpoint_events(&mut events);
        apply_endpoint_events(&mut endpoints, &mut events, &mut stats);
        charge_kernel_loss(&mut pipeline, kernel_lost, &mut seen_lost, &mut stats);
        publish(pipeline.open_calls() as u64, &stats, live);
        let me = &live.workers[0];
        status::LiveCounters::set(&me.frames, pipeline.stats().frames);
        status::LiveCounters::set(&me.busy_ns, busy_ns);
        hand_over_ended(&mut pipeline, &mut live_calls, &ended_tx, last_seq)?;
        if last_signalling.elapsed() >= SIGNALLING_EVERY {
            last_signalling = Instant::now();
            if sig_tx.send(signalling_batch(&mut pipeline)).is_err() {
                return Err(anyhow!("output thread stopped"));
            }
        }
    }
    pipeline.calls_mut().drain_endpoint_events(&mut events);
    apply_endpoint_events(&mut endpoints, &mut events, &mut stats);
    charge_kernel_loss(&mut pipeline, kernel_lost, &mut seen_lost, &mut stats);
    pipeline.finish();
    let ended = pipeline.drain_ended();
    live_calls.note_ended(&ended, pipeline.calls().now_ns());
    if !ended.is_empty() {
        let _ = ended_tx.send((last_seq, ended));
    }
    if live_calls.dropped > 0 {
        tracing::info!(
            dropped = live_calls.dropped,
            "live call snapshots dropped (the writer was busy)"
        );
    }
    live_calls.finish(pipeline.calls().open(), pipeline.calls().now_ns());
    let _ = sig_tx.send(signalling_batch(&mut pipeline));
    stats.pipeline = pipeline.stats().clone();
    Ok(stats)
}

/// Closed calls to the output thread (and to the live snapshot, as ended);
/// then the live snapshot when its time has come.
fn hand_over_ended(
    pipeline: &mut Pipeline,
    live_calls: &mut LivePublisher,
    ended_tx: &Sender<(u64, Vec<Call>)>,
    last_seq: u64,
) -> Result<()> {
    let ended = pipeline.drain_ended();
    if !ended.is_empty() {
        live_calls.note_ended(&ended, pipeline.calls().now_ns());
        if ended_tx.send((last_seq, ended)).is_err() {
            return Err(anyhow!("output thread stopped"));
        }
    }
    live_calls.tick(pipeline.calls());
    Ok(())
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

/// Loss attribution, once per batch: frames a kernel ring could not hand
/// over are charged to the open calls that may have lost them.
fn charge_kernel_loss(
    pipeline: &mut Pipeline,
    kernel_lost: &[AtomicU64],
    seen_lost: &mut [u64],
    stats: &mut WorkerStats,
) {
    let rings = kernel_lost.len() as u32;
    let open = pipeline.open_calls() as u64;
    new_kernel_loss(kernel_lost, seen_lost, stats, open, |ring, d| {
        charge_ring_loss(pipeline.calls_mut(), ring, rings, d);
    });
}

/// Each ring's loss since the last look, handed to `charge` (ring, frames)
/// and counted.
pub(super) fn new_kernel_loss(
    kernel_lost: &[AtomicU64],
    seen_lost: &mut [u64],
    stats: &mut WorkerStats,
    open_calls: u64,
    mut charge: impl FnMut(u32, u64),
) {
    for (ring, (lost, seen)) in kernel_lost.iter().zip(seen_lost.iter_mut()).enumerate() {
        let lost = lost.load(Ordering::Relaxed);
        if lost > *seen {
            let d = lost - *seen;
            tracing::warn!(
                ring,
                lost = d,
                open_calls,
                "a kernel ring was full: frames lost; charged to the open calls on that ring"
            );
            charge(ring as u32, d);
            stats.capture_loss += d;
            *seen = lost;
        }
    }
}

/// Ring 0 (SIP, fragments, TCP; or everything with one ring) may carry any
/// call's frames: its loss goes to every open call. A media ring's loss goes
/// only to the calls with a stream or SDP endpoint steered to it.
pub(super) fn charge_ring_loss(calls: &mut CallTable, ring: u32, rings: u32, n: u64) {
    if ring == 0 {
        calls.note_capture_loss(n);
    } else {
        calls.note_capture_loss_where(n, |ep| ring_of(ep, rings) == ring);
    }
}
