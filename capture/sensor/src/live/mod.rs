//! `voxtap run`: live capture through the XDP sensor into the rolling store
//! and per-call outputs.
//!
//! Threads (see docs/live.md for the reasoning and the measurements):
//!
//! 1. **reader** — polls the kernel ring buffer, appends every frame to the
//!    rolling PCAP file (so its [`PacketRef`] is known), copies it into a
//!    pooled [`batch::Batch`] and hands full batches to the worker. When the
//!    worker lags, the reader waits for a free batch: the kernel ring then
//!    fills and the kernel counts the loss (`LostRingFull`) — user space never
//!    drops silently.
//! 2. **pipeline worker** — the one owner of the call table: runs every frame
//!    through the same [`Pipeline`] as `import`, keeps the kernel's media
//!    endpoint map in step with the calls, and charges capture loss to the
//!    open calls. One worker, because a call's SIP and its media are
//!    different flows: no hash over a frame's addresses keeps them together.
//! 3. **output** — writes each ended call's outputs with the same
//!    [`CallWriter`] as `import` (reading the packets back from the rolling
//!    files), records where its packets are in `store.sqlite`, and applies
//!    retention.
//!
//! The main thread loads and attaches the sensor, drops every capability,
//! publishes the kernel's counters to the worker every 20 ms, and on
//! SIGINT/SIGTERM or `--duration` stops the threads in order (reader, then
//! worker, then output), detaches, and writes calls.csv/streams.csv.

pub mod batch;
pub mod privs;
pub mod status;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};

use crate::config::Config;
use crate::store::{FileEvent, Retention, RollPolicy, RollingWriter, StoreManager};
use crate::xdp::{
    AttachMode, CFG_DROP_UNKEPT, CFG_HEURISTIC_RTP, CFG_KEEP_FRAGMENTS, COUNTERS, Counter,
    EndpointMap, FrameReader, MAX_FRAME, XdpConfig, XdpSensor,
};
use batch::Batch;
use voxtap_engine::calls::{Call, EndpointEvent, PacketRef};
use voxtap_engine::output::CallWriter;
use voxtap_engine::pipeline::{Pipeline, PipelineConfig, PipelineStats};
use voxtap_engine::signalling::{SignallingSnapshot, Transaction};
use voxtap_proto::pcapio::LinkType;

/// Batches in flight between reader and worker, and their size.
const BATCHES: usize = 16;
const BATCH_BYTES: usize = 1 << 20;
/// Longest a frame waits in the ring when the kernel's lazy wake-up has not
/// fired yet.
const POLL: Duration = Duration::from_millis(20);
/// Longest a packet stays in the rolling file's buffer before a write(2):
/// bounds how late the output thread can read a call back.
const FLUSH_EVERY: Duration = Duration::from_millis(50);

#[derive(Clone, Debug)]
pub struct LiveOptions {
    pub config: Config,
    pub iface: String,
    /// Stop by itself after this long.
    pub duration: Option<Duration>,
}

#[derive(Clone, Debug, Default)]
pub struct LiveReport {
    pub iface: String,
    pub attach_mode: Option<AttachMode>,
    pub frames: u64,
    pub bytes: u64,
    pub calls: u64,
    pub call_write_errors: u64,
    pub files_deleted: u64,
    pub pipeline: PipelineStats,
    /// Kernel counters at the end, by [`Counter`].
    pub counters: [u64; COUNTERS],
    pub capture_loss: u64,
    pub endpoint_updates: u64,
    /// Frames seen but not stored: the store's disk was full.
    pub not_stored: u64,
    pub elapsed: Duration,
    pub store: PathBuf,
    pub out: PathBuf,
}

impl LiveReport {
    pub fn summary_line(&self) -> String {
        let c = |k: Counter| self.counters[k as usize];
        format!(
            "live capture on {} ({:?}) for {:.1} s: {} frames ({} bytes) stored, {} calls written; kernel: seen {}, kept sip {} media {} heuristic {} fragment {}, lost_ring_full {}; endpoint map updates {}; retention deleted {} files; not stored (store full) {}",
            self.iface,
            self.attach_mode,
            self.elapsed.as_secs_f64(),
            self.frames,
            self.bytes,
            self.calls,
            c(Counter::Seen),
            c(Counter::KeptSip),
            c(Counter::KeptMedia),
            c(Counter::KeptHeuristic),
            c(Counter::KeptFragment),
            c(Counter::LostRingFull),
            self.endpoint_updates,
            self.files_deleted,
            self.not_stored,
        )
    }
}

fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Kernel monotonic time to wall-clock ns, without a syscall per frame: the
/// offset is re-measured once a second.
struct Clock {
    offset: i128,
    measured: Instant,
}

impl Clock {
    fn new() -> Self {
        Clock {
            offset: i128::from(wall_ns()) - i128::from(mono_ns()),
            measured: Instant::now(),
        }
    }

    fn refresh(&mut self) {
        if self.measured.elapsed() >= Duration::from_secs(1) {
            *self = Clock::new();
        }
    }

    fn wall(&self, ktime_ns: u64) -> u64 {
        (i128::from(ktime_ns) + self.offset).max(0) as u64
    }
}

fn pin(cores: &[usize], idx: usize, name: &str) {
    if let Some(&core) = cores.get(idx) {
        match privs::pin_to_core(core) {
            Ok(()) => tracing::info!(thread = name, core, "pinned"),
            Err(e) => tracing::warn!(thread = name, core, error = %e, "pinning failed"),
        }
    }
}

/// Runs the sensor until `stop` is raised or the duration passes.
pub fn run_live(opts: &LiveOptions, stop: Arc<AtomicBool>) -> Result<LiveReport> {
    let cfg = &opts.config;
    cfg.validate()?;
    let started = Instant::now();
    let mut flags = 0;
    if cfg.capture.heuristic_rtp {
        flags |= CFG_HEURISTIC_RTP;
    }
    if cfg.capture.keep_fragments {
        flags |= CFG_KEEP_FRAGMENTS;
    }
    if cfg.capture.drop_unkept {
        flags |= CFG_DROP_UNKEPT;
    }
    let xcfg = XdpConfig {
        flags,
        wakeup_every: cfg.capture.wakeup_every,
    };
    let ring = (cfg.capture.ring_bytes != 0).then_some(cfg.capture.ring_bytes);
    let mut sensor = XdpSensor::load_with_ring(xcfg, &cfg.capture.sip_ports, ring)
        .context("loading the XDP sensor (needs root or CAP_BPF+CAP_NET_ADMIN)")?;
    let mode = match cfg.capture.attach_mode.as_str() {
        "native" => sensor.attach_mode(&opts.iface, AttachMode::Native),
        "skb" => sensor.attach_mode(&opts.iface, AttachMode::Skb),
        _ => sensor.attach(&opts.iface),
    }
    .with_context(|| format!("attaching to {}", opts.iface))?;
    let endpoints = sensor
        .take_endpoint_map()
        .ok_or_else(|| anyhow!("endpoint map already taken"))?;
    let frames = sensor
        .take_frame_reader()
        .ok_or_else(|| anyhow!("ring reader already taken"))?;

    let store_dir = cfg.store.path.clone();
    let retention = Retention {
        max_bytes: cfg.store.max_bytes,
        max_age_ns: cfg.store.max_age_seconds.saturating_mul(1_000_000_000),
        min_free_bytes: cfg.store.min_free_bytes,
    };
    let mgr = StoreManager::open(&store_dir, retention)
        .with_context(|| format!("opening the store {}", store_dir.display()))?;
    let (file_tx, file_rx) = mpsc::channel::<FileEvent>();
    let roll = RollingWriter::new(
        &store_dir,
        RollPolicy {
            max_bytes: cfg.store.roll_bytes,
            max_ns: cfg.store.roll_seconds.saturating_mul(1_000_000_000),
            buffer_bytes: cfg.store.write_buffer_bytes,
        },
        mgr.next_file_id()?,
        file_tx,
    )
    .with_context(|| format!("preparing rolling files in {}", store_dir.display()))?;
    // CSV rows go to disk as calls end: a sensor runs for months.
    let mut writer = CallWriter::with_sources(&cfg.output.dir, Box::new(mgr.sources()))
        .and_then(CallWriter::streaming_csv)
        .with_context(|| format!("creating {}", cfg.output.dir.display()))?;
    if !cfg.output.call_files {
        writer = writer.without_call_files();
    } else {
        // The same per-call media outputs as import (decrypted SRTP, WAV,
        // DTMF, quality), on the output thread.
        writer.add_processor(Box::new(voxtap_engine::media::MediaProcessor::new(
            voxtap_engine::media::MediaOptions::default(),
        )));
    }
    // The web UI's call index beside the call folders (`voxtap serve --data
    // OUT`); a live run appends to it.
    let call_index =
        voxtap_engine::index::Index::open(&cfg.output.dir.join(voxtap_engine::index::INDEX_FILE))
            .context("opening the call index")?;

    if cfg.security.drop_capabilities {
        privs::drop_privileges(
            &cfg.security.user,
            &[store_dir.as_path(), cfg.output.dir.as_path()],
        )
        .context("dropping privileges")?;
    } else {
        tracing::warn!("security.drop_capabilities = false: keeping root capabilities");
    }

    let kernel_lost = Arc::new(AtomicU64::new(0));
    // Figures for status/sensor.json in the web's data directory.
    let live = Arc::new(status::LiveCounters::default());
    let mut publisher = status::SensorPublisher::new(
        &cfg.output.dir,
        status::RunFacts {
            iface: opts.iface.clone(),
            attach_mode: format!("{mode:?}"),
            store: store_dir.clone(),
            max_bytes: cfg.store.max_bytes,
            max_age_seconds: cfg.store.max_age_seconds,
            min_free_bytes: cfg.store.min_free_bytes,
        },
    );
    let durable = Arc::new(AtomicU64::new(0));
    let reader_stop = Arc::new(AtomicBool::new(false));
    let (full_tx, full_rx) = mpsc::sync_channel::<Batch>(BATCHES);
    let (empty_tx, empty_rx) = mpsc::sync_channel::<Batch>(BATCHES);
    for _ in 0..BATCHES {
        empty_tx
            .send(Batch::with_capacity(BATCH_BYTES))
            .map_err(|_| anyhow!("batch pool"))?;
    }
    let (ended_tx, ended_rx) = mpsc::channel::<(u64, Vec<Call>)>();
    let (sig_tx, sig_rx) = mpsc::channel::<SignallingBatch>();
    let cores = cfg.workers.cores.clone();

    let reader = {
        let (stop, durable, cores) = (
            Arc::clone(&reader_stop),
            Arc::clone(&durable),
            cores.clone(),
        );
        let testing = cfg.testing.clone();
        let live = Arc::clone(&live);
        thread::Builder::new()
            .name("voxtap-reader".into())
            .spawn(move || {
                pin(&cores, 0, "reader");
                reader_loop(
                    frames, roll, full_tx, empty_rx, &durable, &stop, &testing, &live,
                )
            })
            .context("starting the reader thread")?
    };
    let worker = {
        let (lost, cores) = (Arc::clone(&kernel_lost), cores.clone());
        let live = Arc::clone(&live);
        let mut pcfg = PipelineConfig {
            sip_ports: cfg.capture.sip_ports.clone(),
            ..Default::default()
        };
        pcfg.calls.idle_timeout_ns = cfg
            .output
            .idle_timeout_seconds
            .saturating_mul(1_000_000_000);
        pcfg.calls.all_dialogs = cfg.output.all_dialogs;
        pcfg.calls.legs.relays = cfg
            .output
            .media_relays
            .iter()
            .filter_map(|r| voxtap_engine::calls::legs::IpNet::parse(r))
            .collect();
        if cfg.hep.enabled {
            // HEP export (docs/hep.md): counters in <out>/status/hep.json.
            let export =
                crate::hep::export::HepExport::new(cfg.hep.clone(), Some(cfg.output.dir.clone()))
                    .map_err(|e| anyhow!(e))?;
            pcfg.tap = Some(export.tap_factory());
        }
        thread::Builder::new()
            .name("voxtap-pipeline".into())
            .spawn(move || {
                pin(&cores, 1, "pipeline");
                let out = (ended_tx, sig_tx);
                worker_loop(pcfg, full_rx, empty_tx, endpoints, &lost, out, &live)
            })
            .context("starting the pipeline thread")?
    };
    let output = {
        let durable = Arc::clone(&durable);
        let live = Arc::clone(&live);
        thread::Builder::new()
            .name("voxtap-output".into())
            .spawn(move || {
                pin(&cores, 2, "output");
                let rx = (ended_rx, sig_rx);
                output_loop(mgr, writer, call_index, file_rx, rx, &durable, &live)
            })
            .context("starting the output thread")?
    };

    let upload_stop = Arc::new(AtomicBool::new(false));
    #[cfg(not(feature = "s3"))]
    if cfg.upload.enabled {
        anyhow::bail!("upload.enabled: this voxtap was built without the s3 feature");
    }
    #[cfg(not(feature = "s3"))]
    let uploader: Option<thread::JoinHandle<Result<()>>> = None;
    #[cfg(feature = "s3")]
    let uploader = if cfg.upload.enabled {
        let (ucfg, store, out, stop) = (
            cfg.upload.clone(),
            store_dir.clone(),
            cfg.output.dir.clone(),
            Arc::clone(&upload_stop),
        );
        Some(
            thread::Builder::new()
                .name("voxtap-upload".into())
                .spawn(move || -> Result<()> {
                    let calls = ucfg.calls.then_some(out.as_path());
                    let mut up = crate::upload::Uploader::new(&ucfg, &store, calls, Some(&out))?;
                    up.run(&stop)?;
                    Ok(())
                })
                .context("starting the upload thread")?,
        )
    } else {
        None
    };

    tracing::info!(
        iface = %opts.iface,
        ?mode,
        store = %store_dir.display(),
        out = %cfg.output.dir.display(),
        "capturing; SIGINT/SIGTERM to stop"
    );
    let deadline = opts.duration.map(|d| Instant::now() + d);
    let mut last_log = Instant::now();
    let mut last_status: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed)
        && deadline.is_none_or(|d| Instant::now() < d)
        && !reader.is_finished()
        && !worker.is_finished()
        && !output.is_finished()
    {
        let c = sensor.counters();
        kernel_lost.store(c[Counter::LostRingFull as usize], Ordering::Relaxed);
        if last_status.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            last_status = Some(Instant::now());
            publisher.publish(&c, &live, true);
        }
        if last_log.elapsed() >= Duration::from_secs(10) {
            last_log = Instant::now();
            tracing::info!(
                seen = c[Counter::Seen as usize],
                lost_ring_full = c[Counter::LostRingFull as usize],
                "sensor counters"
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
    tracing::info!("stopping: draining the ring, closing files");
    // The last loss figures reach the worker before it closes the calls.
    kernel_lost.store(
        sensor.counters()[Counter::LostRingFull as usize],
        Ordering::Relaxed,
    );
    reader_stop.store(true, Ordering::Relaxed);
    let rstats = join(reader, "reader");
    let wstats = join(worker, "pipeline");
    let ostats = join(output, "output");
    // The queue is on disk: what is left is resumed by the next run.
    upload_stop.store(true, Ordering::Relaxed);
    if let Some(u) = uploader
        && let Err(e) = join(u, "upload")
    {
        tracing::error!(error = %format!("{e:#}"), "the uploader stopped");
    }
    let counters = sensor.counters();
    if let Err(e) = sensor.detach() {
        tracing::warn!(error = %e, "detaching");
    }
    let rstats = rstats?;
    let wstats = wstats?;
    let ostats = ostats?;
    // The final figures, marked stopped.
    status::LiveCounters::set(&live.frames, rstats.frames);
    status::LiveCounters::set(&live.bytes, rstats.bytes);
    status::LiveCounters::set(&live.calls_open, 0);
    status::LiveCounters::set(&live.capture_loss, wstats.capture_loss);
    status::LiveCounters::set(&live.calls_written, ostats.calls);
    status::LiveCounters::set(&live.call_write_errors, ostats.write_errors);
    status::LiveCounters::set(&live.files_deleted, ostats.files_deleted);
    publisher.publish(&counters, &live, false);
    Ok(LiveReport {
        iface: opts.iface.clone(),
        attach_mode: Some(mode),
        frames: rstats.frames,
        bytes: rstats.bytes,
        calls: ostats.calls,
        call_write_errors: ostats.write_errors,
        files_deleted: ostats.files_deleted,
        pipeline: wstats.pipeline,
        counters,
        capture_loss: wstats.capture_loss,
        endpoint_updates: wstats.endpoint_updates,
        not_stored: rstats.not_stored,
        elapsed: started.elapsed(),
        store: store_dir,
        out: cfg.output.dir.clone(),
    })
}

fn join<T>(h: thread::JoinHandle<Result<T>>, name: &str) -> Result<T> {
    h.join()
        .map_err(|_| anyhow!("the {name} thread panicked"))?
        .with_context(|| format!("{name} thread"))
}

#[derive(Default)]
struct ReaderStats {
    frames: u64,
    bytes: u64,
    not_stored: u64,
}

// Each argument is a distinct channel or shared counter of the thread;
// bundling them would only rename them.
#[allow(clippy::too_many_arguments)]
fn reader_loop(
    mut frames: FrameReader,
    mut roll: RollingWriter,
    full_tx: SyncSender<Batch>,
    empty_rx: Receiver<Batch>,
    durable: &AtomicU64,
    stop: &AtomicBool,
    testing: &crate::config::TestingConfig,
    live: &status::LiveCounters,
) -> Result<ReaderStats> {
    let mut stats = ReaderStats::default();
    let mut clock = Clock::new();
    let mut batch = empty_rx.recv().context("batch pool empty")?;
    let mut seq = 0u64;
    let mut last_flush = Instant::now();
    let mut dirty = false;
    let mut stalled = testing.stall_reader_after_frames == 0;
    let mut fail: Option<anyhow::Error> = None;
    let send = |batch: &mut Batch, seq: &mut u64| -> Result<()> {
        *seq += 1;
        batch.seq = *seq;
        // Blocks while the worker has every batch: backpressure into the
        // kernel ring, where loss is counted.
        let next = empty_rx
            .recv()
            .map_err(|_| anyhow!("pipeline worker stopped"))?;
        let full = std::mem::replace(batch, next);
        full_tx
            .send(full)
            .map_err(|_| anyhow!("pipeline worker stopped"))
    };
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        clock.refresh();
        let n = frames
            .poll(
                if stopping { Duration::ZERO } else { POLL },
                |meta, data| {
                    if fail.is_some() {
                        return;
                    }
                    let ts = clock.wall(meta.ktime_ns);
                    match roll.write(ts, meta.wire_len, data) {
                        Ok(pref) => {
                            // Not stored (disk full) or not, the call table
                            // follows the frame: calls are still indexed.
                            batch.push(ts, pref, data);
                            if pref != PacketRef::NOT_STORED {
                                stats.frames += 1;
                                stats.bytes += data.len() as u64;
                            }
                            dirty = true;
                        }
                        Err(e) => {
                            fail = Some(anyhow::Error::new(e).context("writing the rolling file"));
                            return;
                        }
                    }
                    if batch.is_full(MAX_FRAME) {
                        if let Err(e) = send(&mut batch, &mut seq) {
                            fail = Some(e);
                            return;
                        }
                        // Under sustained load the ring never drains: flush
                        // here too, so ended calls do not wait for a lull.
                        if last_flush.elapsed() >= FLUSH_EVERY {
                            if let Err(e) = roll.flush() {
                                fail = Some(
                                    anyhow::Error::new(e).context("flushing the rolling file"),
                                );
                                return;
                            }
                            durable.store(seq, Ordering::Release);
                            last_flush = Instant::now();
                        }
                    }
                    if !stalled && stats.frames >= testing.stall_reader_after_frames {
                        stalled = true;
                        tracing::warn!(
                            ms = testing.stall_reader_ms,
                            "testing: stalling the reader"
                        );
                        thread::sleep(Duration::from_millis(testing.stall_reader_ms));
                    }
                },
            )
            .context("polling the ring buffer")?;
        status::LiveCounters::set(&live.frames, stats.frames);
        status::LiveCounters::set(&live.bytes, stats.bytes);
        if let Some(e) = fail.take() {
            return Err(e);
        }
        if !batch.is_empty() {
            send(&mut batch, &mut seq)?;
        }
        if dirty && (last_flush.elapsed() >= FLUSH_EVERY || stopping) {
            roll.flush().context("flushing the rolling file")?;
            durable.store(seq, Ordering::Release);
            last_flush = Instant::now();
            dirty = false;
        }
        // Stop once the ring is drained.
        if stopping && n == 0 {
            break;
        }
    }
    roll.close().context("closing the rolling file")?;
    durable.store(seq, Ordering::Release);
    stats.not_stored = roll.not_stored();
    // Frames counted as stored when written, then cut by a failed write.
    stats.frames = stats.frames.saturating_sub(roll.cut());
    if stats.not_stored > 0 {
        tracing::error!(
            not_stored = stats.not_stored,
            "frames were not stored: the store's disk was full (their calls count them in capture_loss)"
        );
    }
    Ok(stats)
}

#[derive(Default)]
struct WorkerStats {
    pipeline: PipelineStats,
    capture_loss: u64,
    endpoint_updates: u64,
}

/// Registrations and pings as they are, and the transactions outside calls
/// that finished, handed from the pipeline to the output thread.
type SignallingBatch = (SignallingSnapshot, Vec<Transaction>);

/// The pipeline thread hands the signalling tables over this often.
const SIGNALLING_EVERY: Duration = Duration::from_secs(10);

fn worker_loop(
    pcfg: PipelineConfig,
    full_rx: Receiver<Batch>,
    empty_tx: SyncSender<Batch>,
    mut endpoints: EndpointMap,
    kernel_lost: &AtomicU64,
    (ended_tx, sig_tx): (Sender<(u64, Vec<Call>)>, Sender<SignallingBatch>),
    live: &status::LiveCounters,
) -> Result<WorkerStats> {
    let mut last_signalling = Instant::now();
    let mut pipeline = Pipeline::new(pcfg);
    pipeline.calls_mut().track_endpoints();
    let mut stats = WorkerStats::default();
    let mut events: Vec<EndpointEvent> = Vec::with_capacity(64);
    let mut seen_lost = kernel_lost.load(Ordering::Relaxed);
    let mut last_seq = 0u64;
    let mut clock = Clock::new();
    loop {
        match full_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(mut batch) => {
                for (ts, pref, data) in batch.iter() {
                    pipeline.process(LinkType::Ethernet, ts, pref, data);
                }
                last_seq = batch.seq;
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
        after_batch(
            &mut pipeline,
            &mut endpoints,
            &mut events,
            kernel_lost,
            &mut seen_lost,
            &mut stats,
        );
        status::LiveCounters::set(&live.calls_open, pipeline.open_calls() as u64);
        status::LiveCounters::set(&live.capture_loss, stats.capture_loss);
        let ended = pipeline.drain_ended();
        if !ended.is_empty() && ended_tx.send((last_seq, ended)).is_err() {
            return Err(anyhow!("output thread stopped"));
        }
        if last_signalling.elapsed() >= SIGNALLING_EVERY {
            last_signalling = Instant::now();
            let batch = (
                pipeline.signalling().snapshot(),
                pipeline.drain_transactions(),
            );
            if sig_tx.send(batch).is_err() {
                return Err(anyhow!("output thread stopped"));
            }
        }
    }
    after_batch(
        &mut pipeline,
        &mut endpoints,
        &mut events,
        kernel_lost,
        &mut seen_lost,
        &mut stats,
    );
    pipeline.finish();
    let ended = pipeline.drain_ended();
    if !ended.is_empty() {
        let _ = ended_tx.send((last_seq, ended));
    }
    let _ = sig_tx.send((
        pipeline.signalling().snapshot(),
        pipeline.drain_transactions(),
    ));
    stats.pipeline = pipeline.stats().clone();
    Ok(stats)
}

/// Endpoint map updates and loss attribution, once per batch.
fn after_batch(
    pipeline: &mut Pipeline,
    endpoints: &mut EndpointMap,
    events: &mut Vec<EndpointEvent>,
    kernel_lost: &AtomicU64,
    seen_lost: &mut u64,
    stats: &mut WorkerStats,
) {
    pipeline.calls_mut().drain_endpoint_events(events);
    for ev in events.drain(..) {
        let r = match ev {
            EndpointEvent::Added(ep) => endpoints.add(ep),
            EndpointEvent::Removed(ep) => endpoints.remove(ep),
        };
        stats.endpoint_updates += 1;
        if let Err(e) = r {
            tracing::warn!(?ev, error = %e, "updating the kernel's media endpoint map");
        }
    }
    let lost = kernel_lost.load(Ordering::Relaxed);
    if lost > *seen_lost {
        let d = lost - *seen_lost;
        tracing::warn!(
            lost = d,
            open_calls = pipeline.open_calls(),
            "the kernel ring was full: frames lost; charged to every open call"
        );
        pipeline.calls_mut().note_capture_loss(d);
        stats.capture_loss += d;
        *seen_lost = lost;
    }
}

#[derive(Default)]
struct OutputStats {
    calls: u64,
    write_errors: u64,
    files_deleted: u64,
}

fn output_loop(
    mut mgr: StoreManager,
    mut writer: CallWriter,
    mut call_index: voxtap_engine::index::Index,
    file_rx: Receiver<FileEvent>,
    (ended_rx, sig_rx): (Receiver<(u64, Vec<Call>)>, Receiver<SignallingBatch>),
    durable: &AtomicU64,
    live: &status::LiveCounters,
) -> Result<OutputStats> {
    let mut stats = OutputStats::default();
    let mut pending: std::collections::VecDeque<(u64, Vec<Call>)> = Default::default();
    let mut last_retention = Instant::now();
    let mut done = false;
    loop {
        let mut closed = false;
        for ev in file_rx.try_iter() {
            closed |= matches!(ev, FileEvent::Closed { .. });
            mgr.on_event(ev).context("recording a rolling file")?;
        }
        if closed || last_retention.elapsed() >= Duration::from_secs(1) {
            last_retention = Instant::now();
            let n = mgr.apply_retention(wall_ns()).context("retention")?;
            if n > 0 {
                stats.files_deleted += n as u64;
                writer.close_readers();
            }
        }
        if !done {
            match ended_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(item) => pending.push_back(item),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => done = true,
            }
        }
        let mut locations = Vec::new();
        let mut indexed: Vec<(Call, voxtap_engine::index::CallFiles)> = Vec::new();
        // A call is written once the reader has flushed every batch up to
        // the one that ended it: its packets are then on disk.
        while pending
            .front()
            .is_some_and(|(seq, _)| *seq <= durable.load(Ordering::Acquire))
        {
            let Some((_, calls)) = pending.pop_front() else {
                break;
            };
            for ev in file_rx.try_iter() {
                mgr.on_event(ev).context("recording a rolling file")?;
            }
            for mut call in calls {
                let unstored = mgr.mark_unstored(&mut call);
                if unstored > 0 {
                    call.add_capture_loss(unstored);
                }
                let files = match writer.write_call(&call) {
                    Ok(w) => w
                        .folder
                        .as_deref()
                        .map(voxtap_engine::index::CallFiles::folder)
                        .unwrap_or_default(),
                    Err(e) => {
                        stats.write_errors += 1;
                        tracing::warn!(call_id = %call.call_id(), error = %e, "writing the call's outputs");
                        voxtap_engine::index::CallFiles::default()
                    }
                };
                if call.capture_loss() > 0 {
                    tracing::warn!(
                        call_id = %call.call_id(),
                        capture_loss = call.capture_loss(),
                        "the sensor lost packets while this call was open"
                    );
                }
                // The store's location index finds calls by Call-ID; media
                // without SIP has none (its folder and the call index have it).
                if !call.is_media_only() {
                    locations.push(mgr.locate(&call));
                }
                if !call.is_media_only() {
                    stats.calls += 1;
                }
                indexed.push((call, files));
            }
        }
        if !indexed.is_empty() {
            let batch: Vec<(&Call, voxtap_engine::index::CallFiles)> =
                indexed.iter().map(|(c, f)| (c, f.clone())).collect();
            call_index
                .record_calls(&batch)
                .context("recording calls in the call index")?;
        }
        for (snapshot, done) in sig_rx.try_iter() {
            write_signalling(&mut writer, &mut call_index, &snapshot, &done, &mut stats);
        }
        if !locations.is_empty() {
            mgr.index()
                .add_calls(&locations)
                .context("recording call locations")?;
        }
        let (files, bytes) = mgr.usage();
        status::LiveCounters::set(&live.store_files, files);
        status::LiveCounters::set(&live.store_bytes, bytes);
        status::LiveCounters::set(&live.calls_written, stats.calls);
        status::LiveCounters::set(&live.call_write_errors, stats.write_errors);
        status::LiveCounters::set(&live.files_deleted, mgr.deleted_files);
        if done && pending.is_empty() {
            break;
        }
        if done {
            // Everything was flushed before the worker finished; this only
            // waits for the last durable mark to be seen.
            thread::sleep(Duration::from_millis(5));
        }
    }
    for ev in file_rx.try_iter() {
        mgr.on_event(ev).context("recording a rolling file")?;
    }
    mgr.apply_retention(wall_ns()).context("retention")?;
    stats.files_deleted = mgr.deleted_files;
    writer
        .finish()
        .context("writing calls.csv and streams.csv")?;
    Ok(stats)
}

/// registrations.csv, pings.csv and transactions.csv, and the index's
/// registrations and pings; a failure is logged and counted, as for calls.
fn write_signalling(
    writer: &mut CallWriter,
    call_index: &mut voxtap_engine::index::Index,
    snapshot: &SignallingSnapshot,
    done: &[Transaction],
    stats: &mut OutputStats,
) {
    let r = writer
        .write_signalling(snapshot)
        .and_then(|()| writer.write_transactions(done))
        .map_err(anyhow::Error::from)
        .and_then(|()| {
            call_index
                .record_signalling(snapshot)
                .map_err(anyhow::Error::from)
        });
    if let Err(e) = r {
        stats.write_errors += 1;
        tracing::warn!(error = %e, "writing registrations, pings and transactions");
    }
}

// Keep the PacketRef layout assumption visible where the store relies on it.
const _: () = assert!(PacketRef::OFFSET_BITS == 48);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::net::SocketAddr;
    use voxtap_engine::synth::{SynthConfig, generate};
    use voxtap_proto::pcapio::PcapReader;

    /// The events the worker applies to the kernel map: every SDP endpoint
    /// added once while calls use it and removed once when the last ends;
    /// loss charged to open calls only.
    #[test]
    fn endpoint_events_follow_calls_and_loss_goes_to_open_calls() {
        let mut bytes = Vec::new();
        let cfg = SynthConfig {
            calls: 3,
            seconds: 2,
            ramp_seconds: 1,
            loss_pct: 0.0,
            jitter_ms: 0.0,
            seed: 7,
        };
        generate(&cfg, &mut bytes).unwrap();
        let mut r = PcapReader::new(std::io::Cursor::new(bytes)).unwrap();
        let mut p = Pipeline::new(PipelineConfig::default());
        p.calls_mut().track_endpoints();
        let mut events = Vec::new();
        let mut charged = false;
        while let Some(rec) = r.next_packet().unwrap() {
            p.process(rec.link, rec.ts_ns, PacketRef::new(0, rec.offset), rec.data);
            p.calls_mut().drain_endpoint_events(&mut events);
            if !charged && p.open_calls() == 3 {
                p.calls_mut().note_capture_loss(5);
                charged = true;
            }
        }
        p.finish();
        p.calls_mut().drain_endpoint_events(&mut events);
        let added: Vec<SocketAddr> = events
            .iter()
            .filter_map(|e| match e {
                EndpointEvent::Added(a) => Some(*a),
                _ => None,
            })
            .collect();
        let removed: HashSet<SocketAddr> = events
            .iter()
            .filter_map(|e| match e {
                EndpointEvent::Removed(a) => Some(*a),
                _ => None,
            })
            .collect();
        // 3 calls x 2 sides x (RTP, RTCP), none shared in the synthetic calls.
        assert_eq!(added.len(), 12, "{events:?}");
        assert_eq!(
            added.iter().collect::<HashSet<_>>(),
            removed.iter().collect()
        );
        assert_eq!(events.len(), 24);
        let calls = p.drain_ended();
        assert_eq!(calls.len(), 3);
        assert!(charged);
        assert!(calls.iter().all(|c| c.capture_loss() == 5));
    }
}
