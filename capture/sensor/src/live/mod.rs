//! `voxtap run`: live capture through the XDP sensor into the rolling store
//! and per-call outputs.
//!
//! Threads (see docs/live.md for the reasoning and the measurements):
//!
//! 1. **readers**, one per kernel ring (`workers.rings`; ring 0 carries SIP,
//!    the others media by destination) — each drains its ring, appends every
//!    frame to the shared rolling PCAP file (so its [`PacketRef`] is known;
//!    locked once per batch), copies it into a pooled [`batch::Batch`] and
//!    hands full batches to the worker. When the worker lags, a reader waits
//!    for a free batch: its kernel ring then fills and the kernel counts the
//!    loss per ring (`LostRingFull`) — user space never drops silently.
//! 2. **pipeline worker** — with `workers.pipeline = 1` the one owner of the
//!    call table: runs every frame through the same [`Pipeline`] as
//!    `import`, keeps the kernel's media endpoint map in step with the calls,
//!    and charges each ring's capture loss to the open calls with a stream on
//!    that ring ([`worker`]). With N > 1 it is the dispatcher of the parallel
//!    engine's N media workers, each a replica of the call table, and does
//!    the same through the engine's control items ([`dispatch`]).
//! 3. **output** — writes each ended call's outputs with the same
//!    [`CallWriter`] as `import` (reading the packets back from the rolling
//!    files), records where its packets are in `store.sqlite`, and applies
//!    retention.
//!
//! The main thread loads and attaches the sensor, drops every capability,
//! publishes the kernel's counters to the worker every 20 ms, and on
//! SIGINT/SIGTERM or `--duration` stops the threads in order (reader, then
//! worker, then output), detaches, and writes calls.csv/streams.csv.

mod batch;
mod clock;
mod dispatch;
mod keylog;
mod output;
mod privs;
mod reader;
mod snapshot;
pub mod status;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

use crate::config::Config;
use crate::store::{FileEvent, Retention, RollPolicy, RollingWriter, StoreManager};
use crate::xdp::{
    AttachMode, CFG_DROP_AFTER_COPY, CFG_DROP_UNKEPT, CFG_HEURISTIC_RTP, CFG_KEEP_FRAGMENTS,
    COUNTERS, Counter, EndpointMap, FrameReader, MapSizes, RING_BYTES, TUNNELS, XdpConfig,
    XdpDebug, XdpDebugLog, XdpSensor,
};
use batch::Batch;
use output::{Output, OutputStats};
use reader::{ReaderLinks, ReaderStats, SharedStore};
use status::RINGS;
use voxtap_engine::calls::{Call, PacketRef};
use voxtap_engine::live_calls::DEFAULT_MAX_CALLS;
use voxtap_engine::output::CallWriter;
use voxtap_engine::pipeline::{PipelineConfig, PipelineStats};
use worker::WorkerStats;

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
    /// Frames per kind of encapsulation, by [`crate::xdp::Tunnel`].
    pub tunnels: [u64; TUNNELS],
    pub capture_loss: u64,
    /// Media frames dropped in user space: their media worker was behind.
    pub media_dropped: u64,
    pub endpoint_updates: u64,
    /// SDP endpoints the kernel's endpoint map refused (full), and removals
    /// from it that failed.
    pub endpoint_insert_failures: u64,
    pub endpoint_remove_failures: u64,
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
            "live capture on {} ({:?}) for {:.1} s: {} frames ({} bytes) stored, {} calls written; kernel: seen {}, kept sip {} media {} heuristic {} fragment {}, lost_ring_full {}; media dropped (worker behind) {}; endpoint map updates {}; retention deleted {} files; not stored (store full) {}",
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
            self.media_dropped,
            self.endpoint_updates,
            self.files_deleted,
            self.not_stored,
        ) + &self.tunnel_summary()
    }

    /// "; tunnels: vxlan 10, mpls 4; too deep 1", naming the kinds seen
    /// (empty when none was).
    fn tunnel_summary(&self) -> String {
        let kinds: Vec<String> = crate::xdp::Tunnel::ALL
            .iter()
            .filter_map(|k| {
                let n = self.tunnels.get(*k as usize).copied().unwrap_or(0);
                (n > 0).then(|| format!("{} {n}", k.name()))
            })
            .collect();
        let deep = self.counters[Counter::TooDeep as usize];
        let mut s = String::new();
        if !kinds.is_empty() {
            s = format!("; tunnels: {}", kinds.join(", "));
        }
        if deep > 0 {
            s += &format!("; too deep {deep}");
        }
        s
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

/// Figures and flags the main thread shares with the others.
#[derive(Default)]
struct Shared {
    /// Each ring's kernel loss (ring full), published to the worker every
    /// 20 ms.
    kernel_lost: Arc<[AtomicU64; RINGS]>,
    /// Figures for status/sensor.json in the web's data directory.
    live: Arc<status::LiveCounters>,
    /// Number of the last batch whose frames are on disk (reader -> output).
    durable: Arc<AtomicU64>,
    reader_stop: Arc<AtomicBool>,
    upload_stop: Arc<AtomicBool>,
    /// The fleet's shipper and hub tunnel (docs/fleet.md).
    central_stop: Arc<AtomicBool>,
}

struct Threads {
    /// By ring index.
    readers: Vec<JoinHandle<Result<ReaderStats>>>,
    /// The rolling file the readers share, closed once they stopped.
    store: Arc<std::sync::Mutex<SharedStore>>,
    worker: JoinHandle<Result<WorkerStats>>,
    output: JoinHandle<Result<OutputStats>>,
    uploader: Option<JoinHandle<Result<()>>>,
    #[cfg(feature = "central")]
    central: crate::central::FleetThreads,
}

/// What the threads reported, once joined.
struct Joined {
    reader: ReaderStats,
    worker: WorkerStats,
    output: OutputStats,
    /// Kernel counters after the last frame.
    counters: status::KernelCounters,
}

/// Runs the sensor until `stop` is raised or the duration passes.
pub fn run_live(opts: &LiveOptions, stop: Arc<AtomicBool>) -> Result<LiveReport> {
    let cfg = &opts.config;
    cfg.validate()?;
    let started = Instant::now();
    let (mut sensor, mode) = load_and_attach(cfg, &opts.iface)?;
    let endpoints = sensor
        .take_endpoint_map()
        .ok_or_else(|| anyhow!("endpoint map already taken"))?;
    let frames = sensor.take_frame_readers();
    let debug_stop = Arc::new(AtomicBool::new(false));
    let debug_log = match sensor.take_debug_log() {
        Some(log) => Some(spawn_debug_log(log, Arc::clone(&debug_stop))?),
        None => None,
    };
    let (out, roll) = open_store_and_outputs(cfg)?;
    // Key files are often readable by root only: opened before dropping.
    let tls = open_tls_keys(cfg)?;
    if cfg.security.drop_capabilities {
        privs::drop_privileges(
            &cfg.security.user,
            &[cfg.store.path.as_path(), cfg.output.dir.as_path()],
        )
        .context("dropping privileges")?;
    } else {
        tracing::warn!("security.drop_capabilities = false: keeping root capabilities");
    }
    let shared = Shared::default();
    let mut publisher = sensor_publisher(opts, mode);
    let threads = spawn_threads(cfg, frames, roll, endpoints, out, tls, &shared)?;
    tracing::info!(
        iface = %opts.iface,
        ?mode,
        store = %cfg.store.path.display(),
        out = %cfg.output.dir.display(),
        "capturing; SIGINT/SIGTERM to stop"
    );
    supervise(
        &sensor,
        &stop,
        opts.duration,
        &threads,
        &shared,
        &mut publisher,
    );
    tracing::info!("stopping: draining the ring, closing files");
    let joined = stop_and_join(&mut sensor, threads, &shared)?;
    debug_stop.store(true, Ordering::Relaxed);
    if let Some(t) = debug_log {
        let _ = t.join();
    }
    publish_final(&joined, &shared.live, &mut publisher);
    Ok(LiveReport {
        iface: opts.iface.clone(),
        attach_mode: Some(mode),
        frames: joined.reader.frames,
        bytes: joined.reader.bytes,
        calls: joined.output.calls,
        call_write_errors: joined.output.write_errors,
        files_deleted: joined.output.files_deleted,
        pipeline: joined.worker.pipeline,
        counters: joined.counters.outcomes,
        tunnels: joined.counters.tunnels,
        capture_loss: joined.worker.capture_loss,
        media_dropped: joined.worker.media_dropped,
        endpoint_updates: joined.worker.endpoint_updates,
        endpoint_insert_failures: joined.worker.endpoint_insert_failures,
        endpoint_remove_failures: joined.worker.endpoint_remove_failures,
        not_stored: joined.reader.not_stored,
        elapsed: started.elapsed(),
        store: cfg.store.path.clone(),
        out: cfg.output.dir.clone(),
    })
}

/// Loads the classifier with the configured flags and map sizes and attaches
/// it to `iface`.
fn load_and_attach(cfg: &Config, iface: &str) -> Result<(XdpSensor, AttachMode)> {
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
    if cfg.capture.drop_after_copy {
        flags |= CFG_DROP_AFTER_COPY;
    }
    let xcfg = XdpConfig {
        flags,
        wakeup_every: cfg.capture.wakeup_every,
        vxlan_port: cfg.capture.vxlan_port,
        geneve_port: cfg.capture.geneve_port,
        gtpu_port: cfg.capture.gtpu_port,
        max_depth: cfg.capture.max_encap_depth,
        rings: cfg.workers.rings,
    };
    let sizes = MapSizes {
        ring_bytes: ring_bytes(cfg),
        media_endpoints: cfg.capture.media_endpoints,
    };
    let debug = match cfg.capture.xdp_debug {
        true => XdpDebug::On,
        false => XdpDebug::Off,
    };
    // The rings spread a shared endpoint's streams by both ends, as the
    // media workers do (`RingRule` charges ring loss the same way).
    let shared = cfg.workers.shared_media_endpoints()?;
    let mut sensor = XdpSensor::load_debug(xcfg, &cfg.capture.sip_ports, &shared, sizes, debug)
        .context("loading the XDP sensor (needs root or CAP_BPF+CAP_NET_ADMIN)")?;
    let mode = match cfg.capture.attach_mode.as_str() {
        "native" => sensor.attach_mode(iface, AttachMode::Native),
        "skb" => sensor.attach_mode(iface, AttachMode::Skb),
        _ => sensor.attach(iface),
    }
    .with_context(|| format!("attaching to {iface}"))?;
    Ok((sensor, mode))
}

/// Prints the XDP program's debug records (`capture.xdp_debug`) at INFO,
/// target `voxtap_xdp`, until `stop`.
fn spawn_debug_log(mut log: XdpDebugLog, stop: Arc<AtomicBool>) -> Result<JoinHandle<()>> {
    let print = |line: &str| tracing::info!(target: "voxtap_xdp", "{line}");
    thread::Builder::new()
        .name("xdp-debug".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = log.wait(Duration::from_millis(200)) {
                    tracing::warn!(error = %e, "XDP debug log: poll failed");
                    break;
                }
                log.flush(print);
            }
            log.flush(print);
        })
        .context("starting the XDP debug log thread")
}

/// Opens the store, its rolling writer, the per-call writer and the call
/// index (before privileges are dropped).
fn open_store_and_outputs(cfg: &Config) -> Result<(Output, RollingWriter)> {
    let store_dir = &cfg.store.path;
    let retention = Retention {
        max_bytes: cfg.store.max_bytes,
        max_age_ns: cfg.store.max_age_seconds.saturating_mul(1_000_000_000),
        min_free_bytes: cfg.store.min_free_bytes,
    };
    let mgr = StoreManager::open(store_dir, retention)
        .with_context(|| format!("opening the store {}", store_dir.display()))?;
    let (file_tx, file_rx) = mpsc::channel::<FileEvent>();
    let roll = RollingWriter::new(
        store_dir,
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
    let out = Output {
        mgr,
        writer,
        call_index,
        file_rx,
    };
    Ok((out, roll))
}

/// Starts the reader, pipeline, output and (when configured) upload
/// threads, with the batch pool between reader and worker.
/// The TLS keys of the configuration: RSA keys read now, the key log opened
/// now and followed by the pipeline thread.
struct TlsSetup {
    keys: voxtap_proto::tls::TlsKeys,
    keylog: Option<keylog::KeyLogFollower>,
}

fn open_tls_keys(cfg: &Config) -> Result<TlsSetup> {
    let rsa = cfg.tls.rsa_key_files()?;
    let keys = voxtap_engine::import::load_tls_keys(&[], &rsa)?;
    let keylog = (!cfg.tls.keylog.as_os_str().is_empty())
        .then(|| keylog::KeyLogFollower::open(&cfg.tls.keylog));
    Ok(TlsSetup { keys, keylog })
}

#[allow(clippy::too_many_arguments)]
fn spawn_threads(
    cfg: &Config,
    frames: Vec<FrameReader>,
    roll: RollingWriter,
    endpoints: EndpointMap,
    out: Output,
    tls: TlsSetup,
    shared: &Shared,
) -> Result<Threads> {
    let (full_tx, full_rx) = mpsc::sync_channel::<Batch>(BATCHES);
    let (empty_tx, empty_rx) = mpsc::sync_channel::<Batch>(BATCHES);
    for _ in 0..BATCHES {
        empty_tx
            .send(Batch::with_capacity(BATCH_BYTES))
            .map_err(|_| anyhow!("batch pool"))?;
    }
    let (ended_tx, ended_rx) = mpsc::channel::<(u64, Vec<Call>)>();
    let (sig_tx, sig_rx) = mpsc::channel::<worker::SignallingBatch>();
    let cores = cfg.workers.cores.clone();
    let store = SharedStore::new(roll);
    let empty_rx = Arc::new(std::sync::Mutex::new(empty_rx));
    let mut readers = Vec::with_capacity(frames.len());
    for ring in frames {
        let links = ReaderLinks {
            store: Arc::clone(&store),
            full_tx: full_tx.clone(),
            empty_rx: Arc::clone(&empty_rx),
            durable: Arc::clone(&shared.durable),
            stop: Arc::clone(&shared.reader_stop),
            live: Arc::clone(&shared.live),
            testing: cfg.testing.clone(),
        };
        readers.push(spawn_reader(ring, links, &cores)?);
    }
    drop(full_tx);
    let worker = {
        let (lost, cores) = (Arc::clone(&shared.kernel_lost), cores.clone());
        let live = Arc::clone(&shared.live);
        let mut pcfg = pipeline_config(cfg)?;
        pcfg.tls_keys = tls.keys;
        let keylog = tls.keylog;
        let live_calls = snapshot::LivePublisher::start(cfg.output.dir.clone(), DEFAULT_MAX_CALLS)?;
        let rings = readers.len();
        // The rule the XDP program was loaded with (`load_and_attach`).
        let rule = crate::xdp::RingRule::new(rings as u32, &pcfg.shared_media);
        let n = cfg.workers.pipeline;
        let media_high_water = cfg.workers.media_queue_bytes;
        thread::Builder::new()
            .name("voxtap-pipeline".into())
            .spawn(move || {
                pin(&cores, 1, "pipeline");
                let channels = worker::Channels {
                    full_rx,
                    empty_tx,
                    ended_tx,
                    sig_tx,
                    live_calls,
                };
                let lost = &lost[..rings];
                if n <= 1 {
                    let one = worker::OnePipeline::new(pcfg);
                    return worker::worker_loop(
                        one, channels, endpoints, keylog, lost, rule, &live,
                    );
                }
                // Media worker k on the core after the readers': 2 + rings + k.
                let setup = dispatch::DispatchSetup {
                    pcfg,
                    n,
                    first_core: 2 + rings,
                    cores,
                    media_high_water,
                };
                let engine = dispatch::Dispatcher::start(setup);
                worker::worker_loop(engine, channels, endpoints, keylog, lost, rule, &live)
            })
            .context("starting the pipeline thread")?
    };
    let output = spawn_output(cores, out, (ended_rx, sig_rx), shared)?;
    let uploader = spawn_uploader(cfg, &shared.upload_stop)?;
    #[cfg(feature = "central")]
    let central = crate::central::FleetThreads::spawn(cfg, &shared.central_stop)
        .context("starting the fleet threads")?;
    Ok(Threads {
        readers,
        store,
        worker,
        output,
        uploader,
        #[cfg(feature = "central")]
        central,
    })
}

/// Ring `i`'s reader thread, pinned to `cores[0]` for ring 0 (as the one
/// reader was) and to `cores[2 + i]` for the others.
fn spawn_reader(
    frames: FrameReader,
    links: ReaderLinks,
    cores: &[usize],
) -> Result<JoinHandle<Result<ReaderStats>>> {
    let ring = frames.index() as usize;
    let core = if ring == 0 { 0 } else { 2 + ring };
    let cores = cores.to_vec();
    thread::Builder::new()
        .name(format!("voxtap-reader{ring}"))
        .spawn(move || {
            pin(&cores, core, "reader");
            reader::reader_loop(frames, links)
        })
        .with_context(|| format!("starting the reader thread of ring {ring}"))
}

/// The pipeline as `import` runs it, plus the HEP export tap when enabled.
fn pipeline_config(cfg: &Config) -> Result<PipelineConfig> {
    let mut pcfg = PipelineConfig {
        sip_ports: cfg.capture.sip_ports.clone(),
        tunnels: cfg.capture.tunnels(),
        shared_media: cfg.workers.shared_media_endpoints()?,
        ..Default::default()
    };
    pcfg.calls.idle_timeout_ns = cfg
        .output
        .idle_timeout_seconds
        .saturating_mul(1_000_000_000);
    pcfg.calls.all_dialogs = cfg.output.all_dialogs;
    // Older packet references of open calls go to disk beside the outputs
    // (not /tmp, often memory).
    pcfg.calls.spill_dir = Some(cfg.output.dir.clone());
    pcfg.calls.legs.relays = cfg
        .output
        .media_relays
        .iter()
        .filter_map(|r| voxtap_engine::calls::legs::IpNet::parse(r))
        .collect();
    cfg.limits.apply(&mut pcfg.calls);
    let t = &cfg.testing;
    if t.stall_media_worker_ms > 0 {
        if cfg!(debug_assertions) {
            let pause = Duration::from_millis(t.stall_media_worker_ms);
            pcfg.engine_faults.stall_once = Some((
                t.stall_media_worker,
                t.stall_media_worker_after_frames,
                pause,
            ));
        } else {
            tracing::warn!("testing.stall_media_worker_ms ignored: a test hook of debug builds");
        }
    }
    if cfg.hep.enabled {
        // HEP export (docs/hep.md): counters in <out>/status/hep.json.
        let export =
            crate::hep::export::HepExport::new(cfg.hep.clone(), Some(cfg.output.dir.clone()))
                .map_err(|e| anyhow!(e))?;
        pcfg.tap = Some(export.tap_factory());
    }
    Ok(pcfg)
}

fn spawn_output(
    cores: Vec<usize>,
    out: Output,
    rx: (
        Receiver<(u64, Vec<Call>)>,
        Receiver<worker::SignallingBatch>,
    ),
    shared: &Shared,
) -> Result<JoinHandle<Result<OutputStats>>> {
    let durable = Arc::clone(&shared.durable);
    let live = Arc::clone(&shared.live);
    thread::Builder::new()
        .name("voxtap-output".into())
        .spawn(move || {
            pin(&cores, 2, "output");
            output::output_loop(out, rx, &durable, &live)
        })
        .context("starting the output thread")
}

#[cfg(not(feature = "s3"))]
fn spawn_uploader(cfg: &Config, _stop: &Arc<AtomicBool>) -> Result<Option<JoinHandle<Result<()>>>> {
    if cfg.upload.enabled {
        anyhow::bail!("upload.enabled: this voxtap was built without the s3 feature");
    }
    Ok(None)
}

#[cfg(feature = "s3")]
fn spawn_uploader(cfg: &Config, stop: &Arc<AtomicBool>) -> Result<Option<JoinHandle<Result<()>>>> {
    if !cfg.upload.enabled {
        return Ok(None);
    }
    let (ucfg, store, out, stop) = (
        cfg.upload.clone(),
        cfg.store.path.clone(),
        cfg.output.dir.clone(),
        Arc::clone(stop),
    );
    let handle = thread::Builder::new()
        .name("voxtap-upload".into())
        .spawn(move || -> Result<()> {
            let calls = ucfg.calls.then_some(out.as_path());
            let mut up = crate::upload::Uploader::new(&ucfg, &store, calls, Some(&out))?;
            up.run(&stop)?;
            Ok(())
        })
        .context("starting the upload thread")?;
    Ok(Some(handle))
}

/// The main thread while capturing: publishes the kernel's counters to the
/// worker every 20 ms and to status/sensor.json every second, logs them
/// every 10 s, until `stop`, the deadline, or a thread ending by itself.
fn supervise(
    sensor: &XdpSensor,
    stop: &AtomicBool,
    duration: Option<Duration>,
    threads: &Threads,
    shared: &Shared,
    publisher: &mut status::SensorPublisher,
) {
    let deadline = duration.map(|d| Instant::now() + d);
    let mut last_log = Instant::now();
    let mut last_status: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed)
        && deadline.is_none_or(|d| Instant::now() < d)
        && !threads.readers.iter().any(JoinHandle::is_finished)
        && !threads.worker.is_finished()
        && !threads.output.is_finished()
    {
        let c = sensor.counters();
        let rings = publish_ring_loss(sensor, shared);
        if last_status.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            last_status = Some(Instant::now());
            let k = status::KernelCounters {
                outcomes: c,
                tunnels: sensor.tunnel_counters(),
                rings,
            };
            publisher.publish(k, &shared.live, true);
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
}

/// Each ring's kernel counters; their losses published to the worker.
fn publish_ring_loss(sensor: &XdpSensor, shared: &Shared) -> [crate::xdp::RingCounters; RINGS] {
    let mut rings = [crate::xdp::RingCounters::default(); RINGS];
    for (i, r) in sensor.ring_counters().into_iter().enumerate().take(RINGS) {
        shared.kernel_lost[i].store(r.lost, Ordering::Relaxed);
        rings[i] = r;
    }
    rings
}

/// Stops the threads in order (readers, then worker, then output; the
/// uploader last), reads the final counters and detaches.
fn stop_and_join(sensor: &mut XdpSensor, threads: Threads, shared: &Shared) -> Result<Joined> {
    // The last loss figures reach the worker before it closes the calls.
    publish_ring_loss(sensor, shared);
    shared.reader_stop.store(true, Ordering::Relaxed);
    let per_ring: Vec<Result<ReaderStats>> = threads
        .readers
        .into_iter()
        .map(|h| join(h, "reader"))
        .collect();
    let reader = per_ring
        .into_iter()
        .collect::<Result<Vec<_>>>()
        .and_then(|r| reader::close_store(threads.store, &shared.durable, &r));
    let worker = join(threads.worker, "pipeline");
    let output = join(threads.output, "output");
    // The queue is on disk: what is left is resumed by the next run.
    shared.upload_stop.store(true, Ordering::Relaxed);
    if let Some(u) = threads.uploader
        && let Err(e) = join(u, "upload")
    {
        tracing::error!(error = %format!("{e:#}"), "the uploader stopped");
    }
    // Every call is in the local index now: the shipper's last round sends
    // what it can; the rest waits there for the next run.
    shared.central_stop.store(true, Ordering::Relaxed);
    #[cfg(feature = "central")]
    threads.central.join();
    let counters = status::KernelCounters {
        outcomes: sensor.counters(),
        tunnels: sensor.tunnel_counters(),
        rings: publish_ring_loss(sensor, shared),
    };
    if let Err(e) = sensor.detach() {
        tracing::warn!(error = %e, "detaching");
    }
    Ok(Joined {
        reader: reader?,
        worker: worker?,
        output: output?,
        counters,
    })
}

/// The kernel ring's size: configured, or the object's own.
fn ring_bytes(cfg: &Config) -> u32 {
    match cfg.capture.ring_bytes {
        0 => RING_BYTES,
        n => n,
    }
}

/// status/sensor.json for the web UI's sensor page.
fn sensor_publisher(opts: &LiveOptions, mode: AttachMode) -> status::SensorPublisher {
    let cfg = &opts.config;
    status::SensorPublisher::new(
        &cfg.output.dir,
        status::RunFacts {
            iface: opts.iface.clone(),
            attach_mode: format!("{mode:?}"),
            ring_bytes: u64::from(ring_bytes(cfg)),
            rings: cfg.workers.rings,
            pipeline: cfg.workers.pipeline as u32,
            store: cfg.store.path.clone(),
            max_bytes: cfg.store.max_bytes,
            max_age_seconds: cfg.store.max_age_seconds,
            min_free_bytes: cfg.store.min_free_bytes,
        },
    )
}

/// The final figures, marked stopped.
fn publish_final(j: &Joined, live: &status::LiveCounters, publisher: &mut status::SensorPublisher) {
    // Per ring, the readers' last figures stand (a failed write's cut is
    // taken off the total only).
    status::LiveCounters::set(&live.frames, j.reader.frames);
    status::LiveCounters::set(&live.bytes, j.reader.bytes);
    status::LiveCounters::set(&live.calls_open, 0);
    status::LiveCounters::set(&live.capture_loss, j.worker.capture_loss);
    status::LiveCounters::set(&live.calls_written, j.output.calls);
    status::LiveCounters::set(&live.call_write_errors, j.output.write_errors);
    status::LiveCounters::set(&live.files_deleted, j.output.files_deleted);
    status::LiveCounters::set(
        &live.endpoint_insert_failures,
        j.worker.endpoint_insert_failures,
    );
    status::LiveCounters::set(
        &live.endpoint_remove_failures,
        j.worker.endpoint_remove_failures,
    );
    publisher.publish(j.counters, live, false);
    let w = &j.worker;
    if w.endpoint_insert_failures + w.endpoint_remove_failures > 0 {
        tracing::warn!(
            insert_failures = w.endpoint_insert_failures,
            remove_failures = w.endpoint_remove_failures,
            "the kernel's media endpoint map refused updates during the run"
        );
    }
}

fn join<T>(h: thread::JoinHandle<Result<T>>, name: &str) -> Result<T> {
    h.join()
        .map_err(|_| anyhow!("the {name} thread panicked"))?
        .with_context(|| format!("{name} thread"))
}

// Keep the PacketRef layout assumption visible where the store relies on it.
const _: () = assert!(PacketRef::OFFSET_BITS == 48);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::net::SocketAddr;
    use voxtap_engine::calls::EndpointEvent;
    use voxtap_engine::pipeline::Pipeline;
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
            media_server: None,
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

    /// The ring of an endpoint as the XDP program computes it, from the
    /// endpoint's bytes (v4-mapped IPv6, port in host order).
    fn ring_from_bytes(ep: SocketAddr, rings: u32) -> u32 {
        let addr = match ep.ip() {
            std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            std::net::IpAddr::V6(v6) => v6.octets(),
        };
        voxtap_common::steer_ring(&addr, ep.port(), rings)
    }

    /// 12 synthetic calls (callees at `media_server` when given) through
    /// one pipeline; once every call has media both ways, `losses` (frames,
    /// ring) are charged under the ring rule of `rings` rings sharing
    /// `shared`. The ended calls.
    fn charge_rings(
        media_server: Option<std::net::SocketAddrV4>,
        rings: u32,
        shared: &[SocketAddr],
        losses: &[(u64, u32)],
    ) -> Vec<Call> {
        let mut bytes = Vec::new();
        let cfg = SynthConfig {
            calls: 12,
            seconds: 2,
            ramp_seconds: 1,
            loss_pct: 0.0,
            jitter_ms: 0.0,
            seed: 11,
            media_server,
        };
        generate(&cfg, &mut bytes).unwrap();
        let mut r = PcapReader::new(std::io::Cursor::new(bytes)).unwrap();
        let mut e = worker::OnePipeline(Pipeline::new(PipelineConfig::default()));
        let rule = crate::xdp::RingRule::new(rings, shared);
        let mut charged = false;
        while let Some(rec) = r.next_packet().unwrap() {
            let p = &mut e.0;
            p.process(rec.link, rec.ts_ns, PacketRef::new(0, rec.offset), rec.data);
            if !charged && p.open_calls() == 12 && p.calls().open().all(|c| c.streams().len() >= 2)
            {
                use worker::{LiveEngine, LossScope};
                for &(n, ring) in losses {
                    e.note_loss(n, LossScope::Ring { ring, rule: &rule });
                }
                charged = true;
            }
        }
        let p = &mut e.0;
        p.finish();
        assert!(charged);
        let calls = p.drain_ended();
        assert_eq!(calls.len(), 12);
        calls
    }

    /// Whether one of the call's stream destinations or SDP endpoints is
    /// steered to `ring` by destination.
    fn on_ring(c: &Call, rings: u32, ring: u32) -> bool {
        let eps = c.streams().iter().map(|s| s.key.dst);
        let sdp = c.media().iter().flat_map(|m| [m.rtp, m.rtcp]);
        eps.chain(sdp)
            .any(|ep| ring_from_bytes(ep.into(), rings) == ring)
    }

    /// A media ring's loss goes only to the calls with a stream (or an SDP
    /// endpoint) steered to that ring; the signalling ring's to all. A
    /// shared endpoint no call uses changes nothing.
    #[test]
    fn ring_loss_goes_only_to_calls_on_that_ring() {
        // Seven media rings: a call (4 endpoints) often has none on ring 2.
        let rings = 8;
        let unused: SocketAddr = "192.0.2.250:7000".parse().unwrap();
        let calls = charge_rings(None, rings, &[unused], &[(7, 2), (2, 0)]);
        let mut hits = 0;
        for c in &calls {
            let hit = on_ring(c, rings, 2);
            hits += usize::from(hit);
            let want = if hit { 9 } else { 2 };
            assert_eq!(c.capture_loss(), want, "{}", c.call_id());
        }
        // Both kinds of call occur, or the test shows nothing.
        assert!(hits > 0 && hits < 12, "{hits} of 12 calls on ring 2");
    }

    /// The program spreads a shared endpoint's streams over the media
    /// rings by both ends: the calls sending to it are charged for every
    /// media ring's loss, where by destination each call is charged only
    /// for the rings its endpoints hash to.
    #[test]
    fn a_shared_endpoints_calls_are_charged_for_every_media_ring() {
        let server = std::net::SocketAddrV4::new([192, 0, 2, 200].into(), 40_000);
        let rings = 4;
        // A different figure per ring: a sum says which rings were charged.
        let losses = [(100, 1), (10, 2), (1, 3), (1000, 0)];
        let shared = [SocketAddr::V4(server)];
        for c in charge_rings(Some(server), rings, &shared, &losses) {
            assert_eq!(c.capture_loss(), 1111, "{}", c.call_id());
        }
        // The same calls by destination: the caller's ring and the
        // server's, never all three media rings.
        for c in charge_rings(Some(server), rings, &[], &losses) {
            let want: u64 = losses
                .iter()
                .filter(|&&(_, r)| r == 0 || on_ring(&c, rings, r))
                .map(|&(n, _)| n)
                .sum();
            assert_eq!(c.capture_loss(), want, "{}", c.call_id());
            assert_ne!(want, 1111, "{}", c.call_id());
        }
    }
}
