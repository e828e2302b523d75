//! The pipeline thread with `workers.pipeline` = N > 1: the dispatcher of
//! the parallel engine ([`ParallelEngine`], the one `voxtap import
//! --engine-workers N` runs). It steers each frame of the readers' batches
//! to the media workers (threads `voxtap-media-K`, each a replica of the
//! call table) and does for the engine what [`super::worker::worker_loop`]
//! does for its one pipeline: idle ticks, TLS key log lines, the kernel's
//! endpoint map (the union of the replicas' endpoints), capture loss per
//! ring, live snapshots (merged from the replicas' parts), ended calls to
//! the output thread with the batch numbers that bound their frames, and
//! the signalling tables (from worker 0).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

use super::clock::{Clock, mono_ns};
use super::keylog::KeyLogFollower;
use super::status;
use super::worker::{self, Channels, WorkerStats};
use crate::xdp::{EndpointMap, ring_of};
use voxtap_engine::calls::{Call, EndpointEvent};
use voxtap_engine::live_calls::DEFAULT_MAX_CALLS;
use voxtap_engine::parallel::{EngineOptions, LossFilter, ParallelEngine, WorkerGauge};
use voxtap_engine::pipeline::PipelineConfig;
use voxtap_proto::pcapio::LinkType;

/// What the dispatcher is started with besides the worker's channels.
pub(super) struct DispatchSetup {
    pub pcfg: PipelineConfig,
    /// Media workers.
    pub n: usize,
    /// `workers.cores` and the index of media worker 0's core in it.
    pub cores: Vec<usize>,
    pub first_core: usize,
}

pub(super) fn engine_loop(
    setup: DispatchSetup,
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
    let mut engine = start_engine(setup);
    let gauges = engine.gauges();
    let mut stats = WorkerStats::default();
    let mut events: Vec<EndpointEvent> = Vec::with_capacity(64);
    let mut seen_lost: Vec<u64> = kernel_lost
        .iter()
        .map(|l| l.load(std::sync::atomic::Ordering::Relaxed))
        .collect();
    let (mut last_seq, mut busy_ns, mut frames) = (0u64, 0u64, 0u64);
    let mut clock = Clock::new();
    let mut last_signalling = Instant::now();
    status::LiveCounters::set(
        &live.endpoint_map_max_entries,
        u64::from(endpoints.max_entries()),
    );
    loop {
        match full_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(mut batch) => {
                let started = Instant::now();
                for (ts, pref, data) in batch.iter() {
                    engine.process(LinkType::Ethernet, ts, pref, data);
                    frames += 1;
                }
                // A live capture does not wait for a batch to fill: the
                // SDP must reach the replicas (and the endpoint map) now.
                engine.flush();
                busy_ns += started.elapsed().as_nanos() as u64;
                last_seq = last_seq.max(batch.seq);
                batch.clear();
                let _ = empty_tx.send(batch);
            }
            Err(RecvTimeoutError::Timeout) => {
                clock.refresh();
                engine.idle_tick(clock.wall(mono_ns()));
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if engine.failed() {
            // A media worker panicked: the engine hands nothing on any
            // more, so the sensor stops with the reason rather than
            // capturing into calls that are never rebuilt.
            let (_, fin) = engine.finish();
            let why = fin
                .failure
                .unwrap_or_else(|| "a media worker stopped".into());
            return Err(anyhow!("the call engine stopped: {why}"));
        }
        if let Some(k) = keylog.as_mut() {
            let added = k.poll(Instant::now());
            if !added.is_empty() {
                engine.add_tls_keylog(&added);
            }
        }
        engine.drain_endpoint_events(&mut events);
        worker::apply_endpoint_events(&mut endpoints, &mut events, &mut stats);
        charge_loss(&mut engine, kernel_lost, &mut seen_lost, &mut stats);
        worker::publish(engine.open_calls(), &stats, live);
        publish_gauges(live, &gauges, frames, busy_ns);
        hand_over_ended(&mut engine, &mut live_calls, &ended_tx, last_seq)?;
        if live_calls.due() {
            engine.request_snapshot();
        }
        if let Some(snap) = engine.take_snapshot() {
            live_calls.send_merged(snap);
        }
        if last_signalling.elapsed() >= worker::SIGNALLING_EVERY {
            last_signalling = Instant::now();
            engine.request_signalling();
        }
        for s in engine.take_signalling() {
            sig_tx
                .send(s)
                .map_err(|_| anyhow!("output thread stopped"))?;
        }
    }
    engine.drain_endpoint_events(&mut events);
    worker::apply_endpoint_events(&mut endpoints, &mut events, &mut stats);
    charge_loss(&mut engine, kernel_lost, &mut seen_lost, &mut stats);
    let mut ended = engine.drain_ended();
    let now = engine.now_ns();
    // Signalling tables asked for and not yet answered: the answer comes
    // before the worker's end, so it is waited for here.
    let early = engine.take_signalling_wait(Duration::from_secs(30));
    let (last, fin) = engine.finish();
    if let Some(why) = fin.failure {
        return Err(anyhow!("the call engine stopped: {why}"));
    }
    ended.extend(last);
    live_calls.note_ended(&ended, now);
    if !ended.is_empty() {
        let _ = ended_tx.send((last_seq, ended));
    }
    live_calls.finish(std::iter::empty::<&Call>(), now);
    for s in early {
        let _ = sig_tx.send(s);
    }
    let _ = sig_tx.send((fin.signalling, fin.transactions, fin.floods));
    stats.pipeline = fin.stats;
    Ok(stats)
}

fn start_engine(setup: DispatchSetup) -> ParallelEngine {
    let DispatchSetup {
        pcfg,
        n,
        cores,
        first_core,
    } = setup;
    let pin = Arc::new(move |k: usize| super::pin(&cores, first_core + k, "media"));
    let opts = EngineOptions {
        track_endpoints: true,
        live_max_calls: DEFAULT_MAX_CALLS,
        on_start: Some(pin),
    };
    ParallelEngine::with_options(pcfg, n, opts)
}

/// Each ring's new loss to the replicas: ring 0's (which may carry any
/// call's frames) to every open call, a media ring's to the calls with a
/// stream or SDP endpoint steered to it.
fn charge_loss(
    engine: &mut ParallelEngine,
    kernel_lost: &[AtomicU64],
    seen_lost: &mut [u64],
    stats: &mut WorkerStats,
) {
    let rings = kernel_lost.len() as u32;
    let open = engine.open_calls();
    worker::new_kernel_loss(kernel_lost, seen_lost, stats, open, |ring, d| {
        let only: Option<LossFilter> =
            (ring != 0).then(|| Arc::new(move |ep| ring_of(ep, rings) == ring) as LossFilter);
        engine.note_capture_loss(d, only);
    });
}

/// The dispatcher's figures (slot 0) and the media workers'.
fn publish_gauges(live: &status::LiveCounters, gauges: &[WorkerGauge], frames: u64, busy: u64) {
    use std::sync::atomic::Ordering::Relaxed;
    status::LiveCounters::set(&live.workers[0].frames, frames);
    status::LiveCounters::set(&live.workers[0].busy_ns, busy);
    for (g, l) in gauges.iter().zip(live.workers.iter().skip(1)) {
        status::LiveCounters::set(&l.frames, g.frames.load(Relaxed));
        status::LiveCounters::set(&l.busy_ns, g.busy_ns.load(Relaxed));
    }
}

/// Merged ended calls to the output thread (and to the live snapshot). Every
/// frame of such a call was dispatched before the sweep that ended it, so
/// before `last_seq`'s batch was done: once that batch is on disk, so are
/// the call's frames.
fn hand_over_ended(
    engine: &mut ParallelEngine,
    live_calls: &mut super::snapshot::LivePublisher,
    ended_tx: &std::sync::mpsc::Sender<(u64, Vec<Call>)>,
    last_seq: u64,
) -> Result<()> {
    let ended = engine.drain_ended();
    if !ended.is_empty() {
        live_calls.note_ended(&ended, engine.now_ns());
        ended_tx
            .send((last_seq, ended))
            .map_err(|_| anyhow!("output thread stopped"))?;
    }
    Ok(())
}
