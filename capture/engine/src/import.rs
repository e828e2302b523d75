//! `voxtap import`: pcap/pcapng files through the pipeline into per-call
//! outputs. Several files (a SIP capture and media captures from other hosts)
//! are merged by timestamp, as one capture.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;

mod output_thread;
use output_thread::{Ended, OutputThread};

use crate::calls::{CallState, PacketRef};
use crate::index::{CallFiles, INDEX_FILE, Index, IndexError};
use crate::output::{CallToWrite, CallWriter, OutputError};
use crate::parallel::ParallelEngine;
use crate::pipeline::{Pipeline, PipelineConfig, PipelineStats};
use voxtap_proto::pcapio::{LinkType, PcapError, PcapReader};

#[derive(Debug, Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Open { path: PathBuf, source: PcapError },
    #[error("too many input files ({0}); at most 65535")]
    TooManyFiles(usize),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("TLS key log {path}: {source}")]
    KeyLog {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS key {path}: {reason}")]
    RsaKey { path: PathBuf, reason: String },
    /// The parallel engine lost a media worker: the calls are incomplete.
    #[error("the parallel engine stopped: {0}")]
    Engine(String),
}

/// The keys that decrypt SIP over TLS in an import: NSS key log files and
/// the RSA private keys (PEM) of TLS servers, each with its address.
pub fn load_tls_keys(
    keylogs: &[PathBuf],
    rsa: &[(std::net::SocketAddr, PathBuf)],
) -> Result<voxtap_proto::tls::TlsKeys, ImportError> {
    let mut keys = voxtap_proto::tls::TlsKeys::new();
    for path in keylogs {
        let bytes = std::fs::read(path).map_err(|source| ImportError::KeyLog {
            path: path.clone(),
            source,
        })?;
        keys.feed_keylog(&bytes);
        keys.finish_keylog();
    }
    for (server, path) in rsa {
        let pem = std::fs::read_to_string(path).map_err(|e| ImportError::RsaKey {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        keys.add_rsa_pem(*server, &pem)
            .map_err(|e| ImportError::RsaKey {
                path: path.clone(),
                reason: e.to_string(),
            })?;
    }
    Ok(keys)
}

#[derive(Clone, Debug)]
pub struct ImportOptions {
    pub files: Vec<PathBuf>,
    pub out: PathBuf,
    pub pipeline: PipelineConfig,
    /// Write the per-call folders (call.pcap, sip.txt), not only the CSVs.
    pub call_files: bool,
    /// Media outputs per call (decrypted pcaps, WAV, DTMF, quality); None
    /// for none.
    pub media: Option<crate::media::MediaOptions>,
}

#[derive(Clone, Debug, Default)]
pub struct FileReport {
    pub path: PathBuf,
    pub packets: u64,
    /// What stopped the read early, if anything (truncation, corruption).
    pub damage: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct ImportReport {
    pub files: Vec<FileReport>,
    pub stats: PipelineStats,
    pub calls: u64,
    pub answered: u64,
    pub failed: u64,
    pub streams: u64,
    /// Media-only records (RTP no SIP claimed) and their streams (counted
    /// apart from calls and their streams).
    pub media_only: u64,
    pub media_only_streams: u64,
    /// SIP outside calls: registration bindings, pairs of pinging peers,
    /// other transactions.
    pub registrations: u64,
    pub ping_pairs: u64,
    pub transactions: u64,
    pub call_packets_written: u64,
    pub elapsed: Duration,
    /// Where the engine's CPU went (thread CPU clocks).
    pub engine: EngineFigures,
}

/// The engine's threads' CPU time: the reading thread (which also
/// dispatches), the output thread (CSV rows, the call index and, with one
/// writer, the call folders) and each media worker of the parallel engine
/// (none with one engine worker).
#[derive(Clone, Debug, Default)]
pub struct EngineFigures {
    pub reader_cpu_ns: u64,
    pub output_cpu_ns: u64,
    pub workers: Vec<crate::parallel::WorkerTimes>,
    /// The parallel engine's traffic: frames to one worker and to all,
    /// batches sent, sweep meetings.
    pub dispatch: crate::parallel::DispatchStats,
    /// Capture time from the first frame to the last.
    pub capture_ns: u64,
}

impl EngineFigures {
    /// One line for `voxtap import`'s output (bench-scale reads it).
    pub fn summary_line(&self) -> String {
        let ms = |ns: u64| ns as f64 / 1e6;
        let mut line = format!(
            "engine: {} worker(s); reader thread {:.1} ms CPU; output thread {:.1} ms CPU; capture {:.3} s",
            self.workers.len().max(1),
            ms(self.reader_cpu_ns),
            ms(self.output_cpu_ns),
            self.capture_ns as f64 / 1e9
        );
        for (i, w) in self.workers.iter().enumerate() {
            line += &format!(
                "; worker {i}: {} frames {:.1} ms CPU",
                w.frames,
                ms(w.cpu_ns)
            );
        }
        let d = &self.dispatch;
        if !self.workers.is_empty() {
            line += &format!(
                "; join thread {:.1} ms CPU; steered {} broadcast {} batches {} sweeps {}",
                ms(d.join_cpu_ns),
                d.steered,
                d.broadcast,
                d.batches,
                d.sweeps
            );
            if d.unlisted_shared > 0 || d.shared_hint_budget_hits > 0 {
                // Each was logged with its address when found.
                line += &format!(
                    "; unlisted shared media endpoints {} (SDP endpoints not counted: {})",
                    d.unlisted_shared, d.shared_hint_budget_hits
                );
            }
        }
        line
    }
}

impl ImportReport {
    /// The one-line summary printed at the end of an import.
    pub fn summary_line(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let damaged = self.files.iter().filter(|f| f.damage.is_some()).count();
        format!(
            "imported {} file(s){}: {} packets ({} malformed, skipped), {} SIP messages, {} calls ({} answered, {} failed/other), {} RTP streams, in {:.2} s ({:.0} packets/s)",
            self.files.len(),
            if damaged > 0 {
                format!(" ({damaged} damaged, read up to the damage)")
            } else {
                String::new()
            },
            self.stats.frames,
            self.stats.malformed,
            self.stats.sip_messages,
            self.calls,
            self.answered,
            self.failed,
            self.streams,
            secs,
            self.stats.frames as f64 / secs
        ) + &self.non_call_summary()
    }

    /// "; 3 media-only streams, 2 registrations, ..." for what is not a
    /// call, when there is any.
    fn non_call_summary(&self) -> String {
        let parts: Vec<String> = [
            (self.media_only_streams, "media-only RTP stream(s)"),
            (self.registrations, "registration binding(s)"),
            (self.ping_pairs, "pinging peer pair(s)"),
            (self.transactions, "other SIP transaction(s)"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        if parts.is_empty() {
            String::new()
        } else {
            format!("; not calls: {}", parts.join(", "))
        }
    }
}

impl ImportReport {
    /// A line per transport beyond plain UDP/TCP that the capture had: SIP
    /// over SCTP, over WebSocket, and TLS (what was decrypted, and why the
    /// rest was not).
    pub fn transport_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let s = &self.stats.sctp;
        if s.packets > 0 {
            out.push(format!(
                "SCTP: {} packets, {} SIP messages ({} reassembled from fragments), {} retransmitted chunks skipped, {} fragments dropped at the memory bound",
                s.packets, s.sip_messages, s.reassembled, s.duplicates, s.evicted
            ));
        }
        if self.stats.websocket_flows > 0 {
            out.push(format!(
                "WebSocket: {} TCP directions carried SIP over WebSocket",
                self.stats.websocket_flows
            ));
        }
        let t = &self.stats.tls;
        if t.connections > 0 {
            let not = t.no_key + t.wrong_key + t.no_handshake + t.unsupported;
            out.push(format!(
                "TLS: {} connections, {} decrypted ({} SIP messages), {not} not decrypted ({} without a key, {} with a wrong key, {} handshake not captured, {} unsupported){}",
                t.connections,
                t.decrypted,
                t.sip_messages,
                t.no_key,
                t.wrong_key,
                t.no_handshake,
                t.unsupported,
                if not > 0 {
                    ": listed as calls with encrypted_signalling saying why"
                } else {
                    ""
                }
            ));
        }
        out
    }
}

struct Source {
    path: PathBuf,
    reader: PcapReader<BufReader<File>>,
    report: FileReport,
    /// The next packet, copied so several files can be merged by time.
    head: Option<(u64, LinkType, u64, Vec<u8>)>,
    buf_spare: Vec<u8>,
}

impl Source {
    fn advance(&mut self) {
        let mut buf = std::mem::take(&mut self.buf_spare);
        match self.reader.next_packet() {
            Ok(Some(rec)) => {
                buf.clear();
                buf.extend_from_slice(rec.data);
                self.head = Some((rec.ts_ns, rec.link, rec.offset, buf));
                self.report.packets += 1;
            }
            Ok(None) => self.head = None,
            Err(e) => {
                self.report.damage = Some(e.to_string());
                self.head = None;
            }
        }
    }
}

pub fn run_import(opts: &ImportOptions) -> Result<ImportReport, ImportError> {
    run_import_with_progress(opts, &|_| {})
}

/// How far an import is, for a progress display (the CLI's progress line,
/// the web UI's import jobs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportProgress {
    /// Bytes read from the input files so far, and their total size.
    pub read_bytes: u64,
    pub total_bytes: u64,
    /// Frames through the pipeline so far.
    pub packets: u64,
    /// Every packet is read (the last call, before the import's warnings
    /// about damaged files).
    pub done: bool,
}

/// [`run_import`], calling `on_progress` every few thousand packets and
/// once when every packet is read. The library prints nothing: the caller
/// decides where progress goes.
pub fn run_import_with_progress(
    opts: &ImportOptions,
    on_progress: &(dyn Fn(ImportProgress) + Sync),
) -> Result<ImportReport, ImportError> {
    run_import_with_workers(opts, default_workers(), on_progress)
}

/// Writer threads by default: one per core.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// [`run_import_with_progress`] with the call folders written by `workers`
/// writer threads (1: by the thread reading the capture, in turn). The
/// outputs are the same whatever `workers`.
pub fn run_import_with_workers(
    opts: &ImportOptions,
    workers: usize,
    on_progress: &(dyn Fn(ImportProgress) + Sync),
) -> Result<ImportReport, ImportError> {
    run_import_engine(opts, workers, 1, on_progress)
}

/// [`run_import_with_workers`] with the calls rebuilt by `engine_workers`
/// media workers ([`crate::parallel`]; 1: the single-threaded
/// [`Pipeline`]). The outputs are the same whatever `engine_workers`, but
/// for the gaps docs/architecture.md lists ("The engine split").
pub fn run_import_engine(
    opts: &ImportOptions,
    workers: usize,
    engine_workers: usize,
    on_progress: &(dyn Fn(ImportProgress) + Sync),
) -> Result<ImportReport, ImportError> {
    if opts.files.len() > usize::from(u16::MAX) {
        return Err(ImportError::TooManyFiles(opts.files.len()));
    }
    let started = Instant::now();
    let started_cpu = crate::parallel::thread_cpu_ns();
    let mut writer = CallWriter::new(&opts.out, opts.files.clone())?.with_workers(workers);
    if !opts.call_files {
        writer = writer.without_call_files();
    } else if let Some(m) = &opts.media {
        writer.add_processor(Box::new(crate::media::MediaProcessor::new(m.clone())));
    }
    let mut sources = open_sources(&opts.files)?;
    let output = OutputThread::start(writer, open_fresh_index(&opts.out)?)?;
    // What the readers will read (a compressed file's decompressed size).
    let total_bytes: u64 = sources
        .iter()
        .map(|s| crate::pcapfile::content_len(&s.reader))
        .sum();
    let mut pipeline = opts.pipeline.clone();
    // No call folder, no PCAP cut: the packet references would be kept
    // (and spilled to disk) for nothing.
    pipeline.calls.keep_packet_refs = opts.call_files;
    let engine = if engine_workers > 1 {
        Engine::Parallel(Box::new(ParallelEngine::new(pipeline, engine_workers)))
    } else {
        Engine::Single(Box::new(Pipeline::new(pipeline)))
    };
    let mut run = Run {
        pipeline: engine,
        output,
        on_progress,
        total_bytes,
        since_drain: 0,
        frames: 0,
        first_ns: u64::MAX,
        last_ns: 0,
    };
    if let [one] = &mut sources[..] {
        run.read_one(one)?;
    } else {
        run.read_merged(&mut sources)?;
    }
    let mut report = run.finish(sources, started)?;
    report.engine.reader_cpu_ns = crate::parallel::thread_cpu_ns().saturating_sub(started_cpu);
    Ok(report)
}

/// The CPU time (ns, this thread's clock) of reading `files` alone as an
/// import reads them (the same reader, every record, nothing done with
/// it): what the reading thread's CPU includes besides dispatching, for
/// `voxtap import --engine-figures` (bench-scale). Damage ends a file, as
/// it ends an import.
pub fn reading_cpu_ns(files: &[PathBuf]) -> Result<u64, ImportError> {
    let started = crate::parallel::thread_cpu_ns();
    let mut bytes = 0u64;
    for mut s in open_sources(files)? {
        while let Ok(Some(rec)) = s.reader.next_packet() {
            bytes += rec.data.len() as u64;
        }
    }
    std::hint::black_box(bytes);
    Ok(crate::parallel::thread_cpu_ns().saturating_sub(started))
}

fn open_sources(files: &[PathBuf]) -> Result<Vec<Source>, ImportError> {
    let mut sources = Vec::with_capacity(files.len());
    for path in files {
        let reader = crate::pcapfile::open(path).map_err(|source| ImportError::Open {
            path: path.clone(),
            source,
        })?;
        sources.push(Source {
            path: path.clone(),
            reader,
            report: FileReport {
                path: path.clone(),
                ..Default::default()
            },
            head: None,
            buf_spare: Vec::new(),
        });
    }
    Ok(sources)
}

/// What rebuilds the calls: the single-threaded pipeline, or the parallel
/// engine's dispatcher (its workers on threads of their own).
enum Engine {
    Single(Box<Pipeline>),
    Parallel(Box<ParallelEngine>),
    /// The parallel engine after its end, with what it left.
    Finished(Box<crate::parallel::Finished>),
    /// Only while the engine is being finished.
    Finishing,
}

impl Engine {
    fn process(&mut self, link: LinkType, ts_ns: u64, pref: PacketRef, frame: &[u8]) {
        match self {
            Engine::Single(p) => p.process(link, ts_ns, pref, frame),
            Engine::Parallel(p) => p.process(link, ts_ns, pref, frame),
            Engine::Finished(_) | Engine::Finishing => {}
        }
    }

    fn frames(&self) -> u64 {
        match self {
            Engine::Single(p) => p.stats().frames,
            Engine::Parallel(_) | Engine::Finishing => 0,
            Engine::Finished(f) => f.stats.frames,
        }
    }
}

/// One import under way: the pipeline, where ended calls go, and progress.
struct Run<'a> {
    pipeline: Engine,
    /// Writes what ended (see `output_thread`).
    output: OutputThread,
    on_progress: &'a (dyn Fn(ImportProgress) + Sync),
    total_bytes: u64,
    since_drain: u32,
    /// Frames handed to the engine, and their first and last times.
    frames: u64,
    first_ns: u64,
    last_ns: u64,
}

/// Ended calls are handed to the output thread, and progress shown, every
/// this many packets.
const DRAIN_EVERY: u32 = 4096;

impl Run<'_> {
    /// One file: no merge, no copy.
    fn read_one(&mut self, src: &mut Source) -> Result<(), ImportError> {
        loop {
            match src.reader.next_packet() {
                Ok(Some(rec)) => {
                    src.report.packets += 1;
                    self.process(rec.link, rec.ts_ns, PacketRef::new(0, rec.offset), rec.data);
                }
                Ok(None) => break,
                Err(e) => {
                    src.report.damage = Some(e.to_string());
                    break;
                }
            }
            self.packet_done(|| src.reader.bytes_read())?;
        }
        Ok(())
    }

    /// Several files, merged by timestamp as one capture.
    fn read_merged(&mut self, sources: &mut [Source]) -> Result<(), ImportError> {
        for s in sources.iter_mut() {
            s.advance();
        }
        loop {
            let next = sources
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.head.as_ref().map(|h| (h.0, i)))
                .min();
            let Some((_, i)) = next else { break };
            let s = &mut sources[i];
            if let Some((ts, link, offset, buf)) = s.head.take() {
                self.process(link, ts, PacketRef::new(i as u16, offset), &buf);
                s.buf_spare = buf;
            }
            s.advance();
            self.packet_done(|| sources.iter().map(|s| s.reader.bytes_read()).sum())?;
        }
        Ok(())
    }

    fn process(&mut self, link: LinkType, ts_ns: u64, pref: PacketRef, frame: &[u8]) {
        self.frames += 1;
        self.first_ns = self.first_ns.min(ts_ns);
        self.last_ns = self.last_ns.max(ts_ns);
        self.pipeline.process(link, ts_ns, pref, frame);
    }

    /// Every few thousand packets: write the calls that ended, show progress
    /// (`read`: bytes read so far).
    fn packet_done(&mut self, read: impl Fn() -> u64) -> Result<(), ImportError> {
        self.since_drain += 1;
        if self.since_drain < DRAIN_EVERY {
            return Ok(());
        }
        self.since_drain = 0;
        self.hand_off()?;
        self.report_progress(read(), false);
        Ok(())
    }

    fn report_progress(&self, read_bytes: u64, done: bool) {
        (self.on_progress)(ImportProgress {
            read_bytes,
            total_bytes: self.total_bytes,
            packets: self.frames.max(self.pipeline.frames()),
            done,
        });
    }

    /// Hands what ended since the last time to the output thread.
    fn hand_off(&mut self) -> Result<(), ImportError> {
        let ended = match &mut self.pipeline {
            Engine::Single(p) => Ended {
                floods: p.drain_floods(),
                transactions: p.drain_transactions(),
                calls: p.drain_ended(),
            },
            Engine::Parallel(p) => Ended {
                calls: p.drain_ended(),
                ..Ended::default()
            },
            Engine::Finished(f) => Ended {
                floods: std::mem::take(&mut f.floods),
                transactions: std::mem::take(&mut f.transactions),
                calls: Vec::new(),
            },
            Engine::Finishing => Ended::default(),
        };
        self.output.send(ended)
    }

    /// End of input: close and write every call, report each file.
    fn finish(
        mut self,
        sources: Vec<Source>,
        started: Instant,
    ) -> Result<ImportReport, ImportError> {
        self.finish_engine()?;
        self.hand_off()?;
        let sig = match &self.pipeline {
            Engine::Single(p) => p.signalling().snapshot(),
            Engine::Finished(f) => f.signalling.clone(),
            Engine::Parallel(_) | Engine::Finishing => unreachable!("finished above"),
        };
        let read = sources.iter().map(|s| s.reader.bytes_read()).sum();
        self.report_progress(read, true);
        let output = self.output.finish(sig)?;
        let mut report = output.report;
        report.engine.output_cpu_ns = output.cpu_ns;
        for s in sources {
            if let Some(d) = &s.report.damage {
                tracing::warn!(
                    file = %s.path.display(),
                    packets = s.report.packets,
                    "{d}; kept the {} packets before the damage",
                    s.report.packets
                );
            }
            report.files.push(s.report);
        }
        report.stats = match &self.pipeline {
            Engine::Single(p) => p.stats().clone(),
            Engine::Finished(f) => {
                report.engine.workers = f.workers.clone();
                report.engine.dispatch = f.dispatch;
                f.stats.clone()
            }
            Engine::Parallel(_) | Engine::Finishing => unreachable!("finished above"),
        };
        report.engine.capture_ns = self.last_ns.saturating_sub(self.first_ns);
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// End of input: the pipeline closes every call; the parallel engine's
    /// workers end and their last calls are handed to the output thread.
    fn finish_engine(&mut self) -> Result<(), ImportError> {
        let engine = std::mem::replace(&mut self.pipeline, Engine::Finishing);
        self.pipeline = match engine {
            Engine::Single(mut p) => {
                p.finish();
                Engine::Single(p)
            }
            Engine::Parallel(p) => {
                let (calls, fin) = p.finish();
                if let Some(failure) = &fin.failure {
                    return Err(ImportError::Engine(failure.clone()));
                }
                self.output.send(Ended {
                    calls,
                    ..Ended::default()
                })?;
                Engine::Finished(Box::new(fin))
            }
            other => other,
        };
        Ok(())
    }
}

/// The output's call index, emptied first: like calls.csv, it describes
/// this import only (a second import into the same folder replaces it).
fn open_fresh_index(out: &Path) -> Result<Index, ImportError> {
    let path = out.join(INDEX_FILE);
    if path.exists() {
        tracing::info!(index = %path.display(), "replacing the call index of an earlier import");
        for suffix in ["", "-wal", "-shm"] {
            let p = out.join(format!("{INDEX_FILE}{suffix}"));
            if p.exists() {
                std::fs::remove_file(&p).map_err(|source| OutputError::Io { path: p, source })?;
            }
        }
    }
    Ok(Index::open(&path)?)
}

/// Writes the calls that ended since the last time (and the floods
/// summarised, to `floods.csv`) and counts them in `report` (shared with
/// remote capture so both write calls the same way).
pub fn write_ended(
    pipeline: &mut Pipeline,
    writer: &mut CallWriter,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    write_ended_indexed(pipeline, writer, None, report)
}

/// [`write_ended`], also recording the calls in the call index.
pub fn write_ended_indexed(
    pipeline: &mut Pipeline,
    writer: &mut CallWriter,
    index: Option<&mut Index>,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    write_outside_calls(pipeline, writer, report)?;
    let ended = pipeline.drain_ended();
    write_calls_indexed(&ended, writer, index, report)
}

/// What ended outside calls since the last time: the floods summarised
/// (`floods.csv`) and the finished transactions. Both write paths call it
/// (the batched import's once missed the floods).
fn write_outside_calls(
    pipeline: &mut Pipeline,
    writer: &mut CallWriter,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    writer.write_floods(&pipeline.drain_floods())?;
    let done = pipeline.drain_transactions();
    writer.write_transactions(&done)?;
    report.transactions += done.len() as u64;
    Ok(())
}

/// Writes `ended` (packets read back together, see
/// [`CallWriter::write_calls`]), counts them in `report` and records them in
/// `index`.
fn write_calls_indexed<C: CallToWrite>(
    ended: &[C],
    writer: &mut CallWriter,
    index: Option<&mut Index>,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let mut files = Vec::with_capacity(ended.len());
    for (call, w) in ended.iter().map(C::call).zip(writer.write_calls(ended)?) {
        files.push(
            w.folder
                .as_deref()
                .map(CallFiles::folder)
                .unwrap_or_default(),
        );
        report.call_packets_written += w.packets;
        if call.is_media_only() {
            report.media_only += 1;
            report.media_only_streams += w.streams;
            continue;
        }
        report.calls += 1;
        report.streams += w.streams;
        match call.state() {
            CallState::Answered | CallState::Completed => report.answered += 1,
            _ => report.failed += 1,
        }
        if w.link_mismatch > 0 {
            tracing::warn!(
                call_id = %call.call_id(),
                "{} packets of this call came from captures with another link type and are not in its call.pcap",
                w.link_mismatch
            );
        }
    }
    // One transaction per drained batch.
    let batch: Vec<_> = ended.iter().map(C::call).zip(files).collect();
    if let Some(index) = index
        && !batch.is_empty()
    {
        index.record_calls(&batch)?;
    }
    Ok(())
}

/// Writes registrations.csv and pings.csv as the tables are now (and the
/// index's registrations and pings), and counts them in `report` (import's
/// end; a long-running listener now and then).
pub fn write_signalling(
    pipeline: &mut Pipeline,
    writer: &mut CallWriter,
    index: Option<&mut Index>,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let sig = pipeline.signalling().snapshot();
    record_signalling(&sig, writer, index, report)
}

fn record_signalling(
    sig: &crate::signalling::SignallingSnapshot,
    writer: &mut CallWriter,
    index: Option<&mut Index>,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    writer.write_signalling(sig)?;
    if let Some(index) = index {
        index.record_signalling(sig)?;
    }
    report.registrations = sig.registrations.len() as u64;
    report.ping_pairs = sig.pings.len() as u64;
    Ok(())
}

/// Parse `5060,5061,6000-6010` into a port list.
pub fn parse_ports(s: &str) -> Result<Vec<u16>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: u16 = a
                .trim()
                .parse()
                .map_err(|_| format!("bad port '{a}' in '{part}'"))?;
            let b: u16 = b
                .trim()
                .parse()
                .map_err(|_| format!("bad port '{b}' in '{part}'"))?;
            if a > b {
                return Err(format!("empty port range '{part}'"));
            }
            out.extend(a..=b);
        } else {
            out.push(part.parse().map_err(|_| format!("bad port '{part}'"))?);
        }
    }
    if out.is_empty() {
        return Err("no SIP port given".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(parse_ports("5060,5061").unwrap(), vec![5060, 5061]);
        assert_eq!(
            parse_ports("6000-6002, 5060").unwrap(),
            vec![6000, 6001, 6002, 5060]
        );
        assert!(parse_ports("70000").is_err());
        assert!(parse_ports("9-3").is_err());
        assert!(parse_ports("").is_err());
    }
}
