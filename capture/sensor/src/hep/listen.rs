//! HEP listener: SIP that Kamailio (`siptrace`/`sipcapture`), OpenSIPS
//! (`proto_hep`) or FreeSWITCH (`capture-server`) mirror in HEP3 over UDP or
//! TCP goes into the same [`Pipeline`] as a capture, and out as the same
//! calls, CSV files, call folders and call index as `voxtap import`.
//!
//! Each SIP payload is rebuilt into an IP/UDP (or IP/TCP, with a running
//! sequence number per flow) packet with the addresses, ports and time the
//! HEP chunks carry, and appended to `hep.pcap` in the output folder: that
//! file is the capture the call folders' `call.pcap` are cut from.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde::Serialize;
use thiserror::Error;

use voxtap_engine::calls::PacketRef;
use voxtap_engine::import::{ImportError, ImportReport};
use voxtap_engine::index::{INDEX_FILE, Index};
use voxtap_engine::output::CallWriter;
use voxtap_engine::pipeline::{Pipeline, PipelineConfig};
use voxtap_proto::hep::{Hep, IPPROTO_TCP};
use voxtap_proto::pcapio::{LinkType, PcapWriter};

/// The capture file the listener writes in its output folder.
pub(crate) const PCAP_FILE: &str = "hep.pcap";
const PCAP_HEADER: u64 = 24;
const RECORD_HEADER: u64 = 16;
/// Concurrent HEP/TCP connections; more are refused (counted).
const MAX_TCP_CONNECTIONS: usize = 256;
/// Flows whose TCP sequence number is remembered.
const MAX_TCP_FLOWS: usize = 65_536;

#[derive(Debug, Error)]
pub enum ListenError {
    #[error("binding the HEP {proto} listener on {addr}: {source}")]
    Bind {
        proto: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error("no listener: give a UDP and/or a TCP address")]
    NothingToListen,
}

#[derive(Clone, Debug)]
pub struct ListenOptions {
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    pub out: PathBuf,
    pub pipeline: PipelineConfig,
    pub call_files: bool,
    /// Drop packets whose auth key differs (None: accept any).
    pub auth_key: Option<String>,
    /// Publish counters in `<out>/status/hep-listen.json`.
    pub status: bool,
}

/// Listener figures (also the status file's content).
#[derive(Debug, Default)]
pub struct ListenCounters {
    /// HEP packets received (datagrams, or frames on TCP).
    pub received: AtomicU64,
    /// ... that decoded as HEP3 and carried a SIP payload with addresses.
    pub sip: AtomicU64,
    /// ... that were not HEP3 or were malformed (TCP: the connection is
    /// closed, its framing being lost).
    pub bad: AtomicU64,
    /// HEP3 of another type (RTCP, logs...), or without addresses: skipped.
    pub other: AtomicU64,
    /// Wrong or missing auth key.
    pub unauthorised: AtomicU64,
    /// Dropped because the pipeline fell behind (queue full).
    pub dropped: AtomicU64,
    pub tcp_connections: AtomicU64,
    pub tcp_refused: AtomicU64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct ListenStatus {
    pub received: u64,
    pub sip: u64,
    pub bad: u64,
    pub other: u64,
    pub unauthorised: u64,
    pub dropped: u64,
    pub tcp_connections: u64,
    pub tcp_refused: u64,
}

impl ListenCounters {
    pub fn snapshot(&self) -> ListenStatus {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ListenStatus {
            received: l(&self.received),
            sip: l(&self.sip),
            bad: l(&self.bad),
            other: l(&self.other),
            unauthorised: l(&self.unauthorised),
            dropped: l(&self.dropped),
            tcp_connections: l(&self.tcp_connections),
            tcp_refused: l(&self.tcp_refused),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ListenReport {
    pub status: ListenStatus,
    pub import: ImportReport,
}

impl ListenReport {
    pub fn summary_line(&self) -> String {
        let s = &self.status;
        format!(
            "HEP listener: {} packets received, {} SIP, {} other types, {} malformed, {} unauthorised, {} dropped; {} calls ({} answered), {} SIP messages",
            s.received,
            s.sip,
            s.other,
            s.bad,
            s.unauthorised,
            s.dropped,
            self.import.calls,
            self.import.answered,
            self.import.stats.sip_messages
        )
    }
}

/// One SIP message taken out of HEP.
struct Msg {
    ts_ns: u64,
    src: SocketAddr,
    dst: SocketAddr,
    tcp: bool,
    payload: Vec<u8>,
}

/// Bound sockets, ready to run (binding first lets a caller learn the
/// ports when it asked for port 0).
pub struct Listener {
    opts: ListenOptions,
    udp: Option<UdpSocket>,
    tcp: Option<TcpListener>,
    counters: Arc<ListenCounters>,
}

impl Listener {
    pub fn bind(opts: ListenOptions) -> Result<Self, ListenError> {
        if opts.udp.is_none() && opts.tcp.is_none() {
            return Err(ListenError::NothingToListen);
        }
        let udp = opts
            .udp
            .map(|a| {
                UdpSocket::bind(a).map_err(|source| ListenError::Bind {
                    proto: "UDP",
                    addr: a,
                    source,
                })
            })
            .transpose()?;
        let tcp = opts
            .tcp
            .map(|a| {
                TcpListener::bind(a).map_err(|source| ListenError::Bind {
                    proto: "TCP",
                    addr: a,
                    source,
                })
            })
            .transpose()?;
        Ok(Listener {
            opts,
            udp,
            tcp,
            counters: Arc::new(ListenCounters::default()),
        })
    }

    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp.as_ref().and_then(|s| s.local_addr().ok())
    }

    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|s| s.local_addr().ok())
    }

    pub fn counters(&self) -> Arc<ListenCounters> {
        Arc::clone(&self.counters)
    }

    /// Runs until `stop` is set; then closes every call and writes the
    /// outputs as an import would.
    pub fn run(self, stop: Arc<AtomicBool>) -> Result<ListenReport, ListenError> {
        let Listener {
            opts,
            udp,
            tcp,
            counters,
        } = self;
        let auth: Option<Arc<[u8]>> = opts.auth_key.as_ref().map(|k| k.as_bytes().into());
        let (tx, rx) = mpsc::sync_channel::<Msg>(8192);
        let mut threads: Vec<JoinHandle<()>> = Vec::new();
        if let Some(s) = udp {
            let (tx, c, stop, auth) = (
                tx.clone(),
                Arc::clone(&counters),
                Arc::clone(&stop),
                auth.clone(),
            );
            threads.push(thread::spawn(move || udp_loop(s, &tx, &c, &stop, auth)));
        }
        if let Some(l) = tcp {
            let (tx, c, stop, auth) = (
                tx.clone(),
                Arc::clone(&counters),
                Arc::clone(&stop),
                auth.clone(),
            );
            threads.push(thread::spawn(move || accept_loop(l, tx, c, stop, auth)));
        }
        drop(tx);
        let result = consume(&opts, rx, &counters, &stop);
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            let _ = t.join();
        }
        let import = result?;
        let status = counters.snapshot();
        if opts.status {
            let _ = crate::status::write(&opts.out, "hep-listen", &status);
        }
        Ok(ListenReport { status, import })
    }
}

fn decode(buf: &[u8], c: &ListenCounters, auth: Option<&[u8]>) -> Result<Option<Msg>, ()> {
    c.received.fetch_add(1, Ordering::Relaxed);
    let h = match Hep::parse(buf) {
        Ok(h) => h,
        Err(e) => {
            c.bad.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, "malformed HEP packet");
            return Err(());
        }
    };
    if let Some(want) = auth
        && h.auth_key != Some(want)
    {
        c.unauthorised.fetch_add(1, Ordering::Relaxed);
        return Ok(None);
    }
    let (Some(voxtap_proto::hep::proto_type::SIP), Some((src, dst)), Some(payload), Some(ts)) =
        (h.proto_type, h.endpoints(), h.payload, h.ts_ns())
    else {
        c.other.fetch_add(1, Ordering::Relaxed);
        return Ok(None);
    };
    if payload.is_empty() || payload.len() > 65_000 {
        c.other.fetch_add(1, Ordering::Relaxed);
        return Ok(None);
    }
    c.sip.fetch_add(1, Ordering::Relaxed);
    Ok(Some(Msg {
        ts_ns: ts,
        src,
        dst,
        tcp: h.ip_proto == Some(IPPROTO_TCP),
        payload: payload.to_vec(),
    }))
}

fn forward(tx: &SyncSender<Msg>, m: Msg, c: &ListenCounters) {
    if tx.try_send(m).is_err() {
        c.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

fn udp_loop(
    s: UdpSocket,
    tx: &SyncSender<Msg>,
    c: &ListenCounters,
    stop: &AtomicBool,
    auth: Option<Arc<[u8]>>,
) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, _)) = s.recv_from(&mut buf) else {
            continue;
        };
        if let Ok(Some(m)) = decode(&buf[..n], c, auth.as_deref()) {
            forward(tx, m, c);
        }
    }
}

fn accept_loop(
    l: TcpListener,
    tx: SyncSender<Msg>,
    c: Arc<ListenCounters>,
    stop: Arc<AtomicBool>,
    auth: Option<Arc<[u8]>>,
) {
    let _ = l.set_nonblocking(true);
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        conns.retain(|t| !t.is_finished());
        match l.accept() {
            Ok((s, peer)) => {
                if conns.len() >= MAX_TCP_CONNECTIONS {
                    c.tcp_refused.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                c.tcp_connections.fetch_add(1, Ordering::Relaxed);
                let (tx, c, stop, auth) =
                    (tx.clone(), Arc::clone(&c), Arc::clone(&stop), auth.clone());
                tracing::debug!(%peer, "HEP/TCP connection");
                conns.push(thread::spawn(move || tcp_conn(s, &tx, &c, &stop, auth)));
            }
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
    for t in conns {
        let _ = t.join();
    }
}

fn tcp_conn(
    mut s: TcpStream,
    tx: &SyncSender<Msg>,
    c: &ListenCounters,
    stop: &AtomicBool,
    auth: Option<Arc<[u8]>>,
) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf: Vec<u8> = Vec::with_capacity(128 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // Frame whatever is buffered.
        let mut used = 0;
        loop {
            match voxtap_proto::hep::frame_len(&buf[used..]) {
                Ok(Some(n)) if buf.len() - used >= n => {
                    match decode(&buf[used..used + n], c, auth.as_deref()) {
                        Ok(Some(m)) => forward(tx, m, c),
                        Ok(None) => {}
                        // A bad chunk inside a well-framed packet: the
                        // framing still holds, go on.
                        Err(()) => {}
                    }
                    used += n;
                }
                Ok(_) => break,
                Err(_) => {
                    // Not HEP3: the stream cannot be framed any more.
                    c.received.fetch_add(1, Ordering::Relaxed);
                    c.bad.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        buf.drain(..used);
        if stop.load(Ordering::Relaxed) {
            return;
        }
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// The pipeline side: frames, pcap, calls.
fn consume(
    opts: &ListenOptions,
    rx: Receiver<Msg>,
    counters: &ListenCounters,
    stop: &AtomicBool,
) -> Result<ImportReport, ListenError> {
    let started = Instant::now();
    let mut sink = Sink::open(opts)?;
    let mut last_flush = Instant::now();
    let (mut last_ts, mut last_at) = (0u64, Instant::now());
    let mut last_status = Instant::now();
    let mut last_signalling = Instant::now();
    loop {
        let m = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if let Some(m) = m {
            last_ts = m.ts_ns;
            last_at = Instant::now();
            sink.take(&m)?;
        } else if stop.load(Ordering::Relaxed) {
            break;
        } else if last_ts > 0 {
            // No traffic: capture time moves on with the clock since the last
            // message (not the wall clock itself, which a replay of old HEP
            // is far from), so BYE lingers and idle timeouts still end calls.
            let now = last_ts.saturating_add(last_at.elapsed().as_nanos() as u64);
            sink.pipeline.calls_mut().tick(now);
        }
        if last_flush.elapsed() >= Duration::from_millis(500) {
            last_flush = Instant::now();
            sink.checkpoint()?;
        }
        if last_signalling.elapsed() >= SIGNALLING_EVERY {
            last_signalling = Instant::now();
            sink.write_signalling()?;
        }
        if opts.status && last_status.elapsed() >= Duration::from_secs(1) {
            last_status = Instant::now();
            let _ = crate::status::write(&opts.out, "hep-listen", &counters.snapshot());
        }
    }
    let mut report = sink.finish()?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Where received messages go: a pcap of rebuilt frames, the pipeline and
/// the per-call outputs.
struct Sink {
    pcap: PcapWriter<BufWriter<File>>,
    pcap_path: PathBuf,
    /// Where the next pcap record starts (for its PacketRef).
    offset: u64,
    pipeline: Pipeline,
    writer: CallWriter,
    index: Index,
    report: ImportReport,
    /// The frame being built (reused).
    frame: Vec<u8>,
    /// Next TCP sequence number per flow, for the rebuilt segments.
    seqs: HashMap<(SocketAddr, SocketAddr), u32>,
}

impl Sink {
    fn open(opts: &ListenOptions) -> Result<Sink, ListenError> {
        std::fs::create_dir_all(&opts.out).map_err(|source| ListenError::Io {
            path: opts.out.clone(),
            source,
        })?;
        let pcap_path = opts.out.join(PCAP_FILE);
        let io_err = |source| ListenError::Io {
            path: pcap_path.clone(),
            source,
        };
        let file = File::create(&pcap_path).map_err(io_err)?;
        let pcap = PcapWriter::new(BufWriter::new(file), LinkType::Raw, 65_535).map_err(io_err)?;
        let mut writer = CallWriter::new(&opts.out, vec![pcap_path.clone()])
            .map_err(|e| ListenError::Import(e.into()))?;
        if !opts.call_files {
            writer = writer.without_call_files();
        }
        Ok(Sink {
            pcap,
            pcap_path,
            offset: PCAP_HEADER,
            pipeline: Pipeline::new(opts.pipeline.clone()),
            writer,
            index: fresh_index(&opts.out)?,
            report: ImportReport::default(),
            frame: Vec::with_capacity(70_000),
            seqs: HashMap::new(),
        })
    }

    fn io_err(&self, source: std::io::Error) -> ListenError {
        ListenError::Io {
            path: self.pcap_path.clone(),
            source,
        }
    }

    /// One message: rebuilt as a frame, written to the pcap, run through
    /// the pipeline.
    fn take(&mut self, m: &Msg) -> Result<(), ListenError> {
        let seq = if m.tcp {
            if self.seqs.len() >= MAX_TCP_FLOWS {
                self.seqs.clear();
            }
            let s = self.seqs.entry((m.src, m.dst)).or_insert(1);
            let cur = *s;
            *s = s.wrapping_add(m.payload.len() as u32);
            Some(cur)
        } else {
            None
        };
        build_frame(&mut self.frame, m.src, m.dst, seq, &m.payload);
        if let Err(e) = self
            .pcap
            .write_packet(m.ts_ns, self.frame.len() as u32, &self.frame)
        {
            return Err(self.io_err(e));
        }
        let pref = PacketRef::new(0, self.offset);
        self.offset += RECORD_HEADER + self.frame.len() as u64;
        self.pipeline
            .process(LinkType::Raw, m.ts_ns, pref, &self.frame);
        Ok(())
    }

    /// Writes the calls that ended (the call writer re-reads their packets
    /// from the pcap, so it is flushed first).
    fn checkpoint(&mut self) -> Result<(), ListenError> {
        if let Err(e) = self.pcap.flush() {
            return Err(self.io_err(e));
        }
        voxtap_engine::import::write_ended_indexed(
            &mut self.pipeline,
            &mut self.writer,
            Some(&mut self.index),
            &mut self.report,
        )?;
        Ok(())
    }

    /// Registrations and pings as they are now, for the web UI.
    fn write_signalling(&mut self) -> Result<(), ListenError> {
        voxtap_engine::import::write_signalling(
            &mut self.pipeline,
            &mut self.writer,
            Some(&mut self.index),
            &mut self.report,
        )?;
        Ok(())
    }

    fn finish(mut self) -> Result<ImportReport, ListenError> {
        if let Err(e) = self.pcap.flush() {
            return Err(self.io_err(e));
        }
        self.pipeline.finish();
        voxtap_engine::import::write_ended_indexed(
            &mut self.pipeline,
            &mut self.writer,
            Some(&mut self.index),
            &mut self.report,
        )?;
        self.write_signalling()?;
        self.writer
            .finish()
            .map_err(|e| ListenError::Import(e.into()))?;
        self.report.stats = self.pipeline.stats().clone();
        Ok(self.report)
    }
}

/// registrations.csv, pings.csv and the index's copies are refreshed this
/// often while the listener runs.
const SIGNALLING_EVERY: Duration = Duration::from_secs(10);

fn fresh_index(out: &Path) -> Result<Index, ListenError> {
    for suffix in ["", "-wal", "-shm"] {
        let p = out.join(format!("{INDEX_FILE}{suffix}"));
        if p.exists() {
            std::fs::remove_file(&p).map_err(|source| ListenError::Io { path: p, source })?;
        }
    }
    Index::open(&out.join(INDEX_FILE)).map_err(|e| ListenError::Import(e.into()))
}

pub use voxtap_proto::wire::emit::build_frame;
