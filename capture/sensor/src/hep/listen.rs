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
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
/// Flows whose TCP sequence number is remembered.
const MAX_TCP_FLOWS: usize = 65_536;
/// SIP payload bytes queued between the sockets and the pipeline; past it,
/// new messages are dropped (counted): 8,192 queued messages of 64 KB were
/// half a gigabyte.
const MAX_QUEUED_BYTES: usize = 64 << 20;

/// What HEP/TCP clients may hold. 256 idle connections used to take every
/// slot for good (no timeout), so that a real sender was reset and its SIP
/// lost: now a connection that sends nothing is closed after
/// `idle_timeout`, one that starts a packet must finish it within
/// `frame_timeout`, and a new connection past either limit closes the
/// connection that has been idle the longest (of its own address first)
/// instead of being refused.
#[derive(Clone, Debug)]
pub struct TcpLimits {
    /// Connections at once.
    pub max_connections: usize,
    /// Connections at once from one address.
    pub max_per_source: usize,
    /// A connection without a byte for this long is closed.
    pub idle_timeout: Duration,
    /// A HEP packet begun must be complete within this long.
    pub frame_timeout: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            max_connections: 256,
            max_per_source: 32,
            idle_timeout: Duration::from_secs(120),
            frame_timeout: Duration::from_secs(10),
        }
    }
}

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
    /// Dropped because the pipeline fell behind (queue full), or by the
    /// kernel because the UDP socket's buffer was full.
    pub dropped: AtomicU64,
    pub tcp_connections: AtomicU64,
    pub tcp_refused: AtomicU64,
    /// Of `dropped`: datagrams the kernel dropped on the UDP socket.
    pub udp_kernel_drops: AtomicU64,
    /// Connections closed to make room for a new one (idle the longest).
    pub tcp_evicted: AtomicU64,
    /// Connections closed for sending nothing (`idle_timeout`) or for not
    /// finishing a packet (`frame_timeout`).
    pub tcp_timed_out: AtomicU64,
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
    pub udp_kernel_drops: u64,
    pub tcp_evicted: u64,
    pub tcp_timed_out: u64,
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
            udp_kernel_drops: l(&self.udp_kernel_drops),
            tcp_evicted: l(&self.tcp_evicted),
            tcp_timed_out: l(&self.tcp_timed_out),
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
    tcp_limits: TcpLimits,
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
        if let Some(s) = &udp {
            let got = super::sock::tune_udp(s, super::sock::UDP_RCVBUF);
            tracing::debug!(rcvbuf = ?got, "HEP/UDP receive buffer");
        }
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
            tcp_limits: TcpLimits::default(),
            counters: Arc::new(ListenCounters::default()),
        })
    }

    /// Other limits on HEP/TCP clients than the defaults.
    pub fn with_tcp_limits(mut self, limits: TcpLimits) -> Self {
        self.tcp_limits = limits;
        self
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
            tcp_limits,
            counters,
        } = self;
        let auth: Option<Arc<[u8]>> = opts.auth_key.as_ref().map(|k| k.as_bytes().into());
        let (tx, rx) = mpsc::sync_channel::<Msg>(8192);
        let queue = Queue {
            tx,
            bytes: Arc::new(AtomicUsize::new(0)),
            counters: Arc::clone(&counters),
            auth,
        };
        let mut threads: Vec<JoinHandle<()>> = Vec::new();
        if let Some(s) = udp {
            let (q, stop) = (queue.clone(), Arc::clone(&stop));
            threads.push(thread::spawn(move || udp_loop(s, &q, &stop)));
        }
        if let Some(l) = tcp {
            let (q, stop) = (queue.clone(), Arc::clone(&stop));
            threads.push(thread::spawn(move || accept_loop(l, q, stop, tcp_limits)));
        }
        let bytes = Arc::clone(&queue.bytes);
        drop(queue);
        let result = consume(&opts, rx, &bytes, &counters, &stop);
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

/// Where the socket threads hand messages to the pipeline: bounded in
/// messages and in bytes.
#[derive(Clone)]
struct Queue {
    tx: SyncSender<Msg>,
    /// Payload bytes queued.
    bytes: Arc<AtomicUsize>,
    counters: Arc<ListenCounters>,
    auth: Option<Arc<[u8]>>,
}

impl Queue {
    /// Decodes one HEP packet and queues its SIP; `Err` when it is not
    /// HEP3 at all.
    fn packet(&self, buf: &[u8]) -> Result<(), ()> {
        if let Some(m) = decode(buf, &self.counters, self.auth.as_deref())? {
            self.forward(m);
        }
        Ok(())
    }

    fn forward(&self, m: Msg) {
        let len = m.payload.len();
        let c = &self.counters;
        if self.bytes.fetch_add(len, Ordering::Relaxed) + len > MAX_QUEUED_BYTES {
            self.bytes.fetch_sub(len, Ordering::Relaxed);
            c.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.tx.try_send(m).is_err() {
            self.bytes.fetch_sub(len, Ordering::Relaxed);
            c.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn udp_loop(s: UdpSocket, q: &Queue, stop: &AtomicBool) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = vec![0u8; 65_536];
    let mut kernel_drops = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, drops)) = super::sock::recv_counting_drops(&s, &mut buf) else {
            continue;
        };
        if let Some(d) = drops {
            // The kernel's count since the socket was created.
            let new = u64::from(d.wrapping_sub(kernel_drops));
            kernel_drops = d;
            q.counters.dropped.fetch_add(new, Ordering::Relaxed);
            q.counters
                .udp_kernel_drops
                .fetch_add(new, Ordering::Relaxed);
        }
        let _ = q.packet(buf.get(..n).unwrap_or(&[]));
    }
}

/// One HEP/TCP connection, as the accept loop sees it.
struct Conn {
    peer: IpAddr,
    /// Milliseconds since the accept loop started, at its latest byte (or
    /// its accept).
    last_ms: AtomicU64,
    /// The socket, to shut it down from the accept loop.
    sock: TcpStream,
    /// Being closed to make room.
    evicted: AtomicBool,
}

fn accept_loop(l: TcpListener, q: Queue, stop: Arc<AtomicBool>, limits: TcpLimits) {
    let _ = l.set_nonblocking(true);
    let epoch = Instant::now();
    let mut conns: Vec<(JoinHandle<()>, Arc<Conn>)> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        conns.retain(|(t, _)| !t.is_finished());
        match l.accept() {
            Ok((s, peer)) => {
                let Ok(sock) = s.try_clone() else {
                    q.counters.tcp_refused.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                make_room(&conns, peer.ip(), &limits, &q.counters);
                q.counters.tcp_connections.fetch_add(1, Ordering::Relaxed);
                let conn = Arc::new(Conn {
                    peer: peer.ip(),
                    last_ms: AtomicU64::new(millis(epoch)),
                    sock,
                    evicted: AtomicBool::new(false),
                });
                let (q, stop, limits, c) = (
                    q.clone(),
                    Arc::clone(&stop),
                    limits.clone(),
                    Arc::clone(&conn),
                );
                tracing::debug!(%peer, "HEP/TCP connection");
                let t = thread::spawn(move || tcp_conn(s, &q, &stop, &c, epoch, &limits));
                conns.push((t, conn));
            }
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
    for (t, _) in conns {
        let _ = t.join();
    }
}

fn millis(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Before accepting a connection from `peer`: past the limit of its address,
/// closes that address's connection idle the longest; past the limit of
/// all, the one idle the longest of all.
fn make_room(
    conns: &[(JoinHandle<()>, Arc<Conn>)],
    peer: IpAddr,
    l: &TcpLimits,
    c: &ListenCounters,
) {
    let live = || {
        conns
            .iter()
            .map(|(_, c)| c)
            .filter(|c| !c.evicted.load(Ordering::Relaxed))
    };
    let same = live().filter(|x| x.peer == peer).count();
    let victim = if same >= l.max_per_source.max(1) {
        live()
            .filter(|x| x.peer == peer)
            .min_by_key(|x| x.last_ms.load(Ordering::Relaxed))
    } else if live().count() >= l.max_connections.max(1) {
        live().min_by_key(|x| x.last_ms.load(Ordering::Relaxed))
    } else {
        None
    };
    if let Some(v) = victim {
        v.evicted.store(true, Ordering::Relaxed);
        let _ = v.sock.shutdown(Shutdown::Both);
        c.tcp_evicted.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(peer = %v.peer, "HEP/TCP connection closed to make room");
    }
}

/// Reads one HEP/TCP connection until it closes, is closed to make room,
/// stays idle past `idle_timeout` or leaves a packet unfinished past
/// `frame_timeout`.
fn tcp_conn(
    mut s: TcpStream,
    q: &Queue,
    stop: &AtomicBool,
    conn: &Conn,
    epoch: Instant,
    limits: &TcpLimits,
) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf: Vec<u8> = Vec::with_capacity(128 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut last_data = Instant::now();
    // When the packet at the front of `buf` began to arrive.
    let mut partial_since: Option<Instant> = None;
    loop {
        let Ok(used) = frame_buffered(&buf, q) else {
            return;
        };
        buf.drain(..used);
        partial_since = match (buf.is_empty(), used > 0) {
            (true, _) => None,
            (false, true) => Some(Instant::now()),
            (false, false) => partial_since.or(Some(Instant::now())),
        };
        if stop.load(Ordering::Relaxed) || conn.evicted.load(Ordering::Relaxed) {
            return;
        }
        let idle = last_data.elapsed() > limits.idle_timeout;
        let slow = partial_since.is_some_and(|t| t.elapsed() > limits.frame_timeout);
        if idle || slow {
            q.counters.tcp_timed_out.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(peer = %conn.peer, idle, slow, "HEP/TCP connection timed out");
            return;
        }
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => {
                buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
                last_data = Instant::now();
                conn.last_ms.store(millis(epoch), Ordering::Relaxed);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// Hands on every complete HEP packet at the front of `buf`; returns the
/// bytes used, or `Err` when the stream is not HEP3 (its framing is lost).
fn frame_buffered(buf: &[u8], q: &Queue) -> Result<usize, ()> {
    let mut used = 0;
    loop {
        let rest = buf.get(used..).unwrap_or(&[]);
        match voxtap_proto::hep::frame_len(rest) {
            Ok(Some(n)) if rest.len() >= n => {
                // A bad chunk inside a well-framed packet: the framing
                // still holds, go on.
                let _ = q.packet(rest.get(..n).unwrap_or(&[]));
                used += n;
            }
            Ok(_) => return Ok(used),
            Err(_) => {
                q.counters.received.fetch_add(1, Ordering::Relaxed);
                q.counters.bad.fetch_add(1, Ordering::Relaxed);
                return Err(());
            }
        }
    }
}

/// The pipeline side: frames, pcap, calls.
fn consume(
    opts: &ListenOptions,
    rx: Receiver<Msg>,
    queued: &AtomicUsize,
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
            queued.fetch_sub(m.payload.len(), Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let t = Instant::now();
        while !cond() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "timed out waiting for {what}"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn listener(out: &Path, udp: bool) -> Listener {
        Listener::bind(ListenOptions {
            udp: udp.then(|| "127.0.0.1:0".parse().unwrap()),
            tcp: Some("127.0.0.1:0".parse().unwrap()),
            out: out.to_path_buf(),
            pipeline: PipelineConfig::default(),
            call_files: false,
            auth_key: None,
            status: false,
        })
        .unwrap()
    }

    /// A connection that sends nothing, and one that starts a packet and
    /// never finishes it, are closed; one that keeps sending is not.
    #[test]
    fn idle_and_slow_connections_time_out() {
        let out = tempfile::tempdir().unwrap();
        let l = listener(out.path(), false).with_tcp_limits(TcpLimits {
            idle_timeout: Duration::from_millis(300),
            frame_timeout: Duration::from_millis(300),
            ..Default::default()
        });
        let (addr, c) = (l.tcp_addr().unwrap(), l.counters());
        let stop = Arc::new(AtomicBool::new(false));
        let run = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || l.run(stop))
        };
        let _idle = TcpStream::connect(addr).unwrap();
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.write_all(b"HEP3\x00\x40").unwrap();
        wait_for("two connections closed", || c.snapshot().tcp_timed_out == 2);
        // Closed by the listener: reading gives end of stream.
        let mut b = [0u8; 1];
        assert_eq!(slow.read(&mut b).unwrap_or(0), 0);
        stop.store(true, Ordering::Relaxed);
        run.join().unwrap().unwrap();
        assert_eq!(c.snapshot().tcp_evicted, 0);
    }

    /// Past the limits, the connection idle the longest is closed, of the
    /// new one's own address first.
    #[test]
    fn a_new_connection_closes_the_longest_idle() {
        let out = tempfile::tempdir().unwrap();
        let l = listener(out.path(), false).with_tcp_limits(TcpLimits {
            max_connections: 4,
            max_per_source: 2,
            ..Default::default()
        });
        let (addr, c) = (l.tcp_addr().unwrap(), l.counters());
        let stop = Arc::new(AtomicBool::new(false));
        let run = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || l.run(stop))
        };
        let mut first = TcpStream::connect(addr).unwrap();
        wait_for("the first accepted", || c.snapshot().tcp_connections == 1);
        let _second = TcpStream::connect(addr).unwrap();
        wait_for("the second accepted", || c.snapshot().tcp_connections == 2);
        let _third = TcpStream::connect(addr).unwrap();
        wait_for("the third accepted", || c.snapshot().tcp_connections == 3);
        assert_eq!(c.snapshot().tcp_evicted, 1);
        // The first (idle the longest) was closed.
        let mut b = [0u8; 1];
        assert_eq!(first.read(&mut b).unwrap_or(0), 0);
        stop.store(true, Ordering::Relaxed);
        run.join().unwrap().unwrap();
    }

    /// Datagrams the kernel dropped because nobody read the socket in time
    /// are counted in `dropped`: received + dropped = sent.
    #[test]
    fn kernel_udp_drops_are_counted() {
        let out = tempfile::tempdir().unwrap();
        let l = listener(out.path(), true);
        let (addr, c) = (l.udp_addr().unwrap(), l.counters());
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Not running yet: the socket's buffer (8 MiB, or rmem_max) fills.
        let junk = [0u8; 1400];
        let sent = 20_000u64;
        for _ in 0..sent {
            tx.send_to(&junk, addr).unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let run = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || l.run(stop))
        };
        // A datagram queued after the drops carries the kernel's count: a
        // HEP SIP packet as a marker, sent until one gets through (the
        // buffer may still be full); when it is read, every datagram of the
        // burst was read or counted.
        let sip = b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: m@h\r\nCSeq: 1 OPTIONS\r\n\r\n";
        let mut marker = Vec::new();
        voxtap_proto::hep::HepFields {
            src: "10.0.0.1:5060".parse().unwrap(),
            dst: "10.0.0.2:5060".parse().unwrap(),
            ip_proto: 17,
            ts_ns: 1,
            proto_type: voxtap_proto::hep::proto_type::SIP,
            capture_id: 1,
            auth_key: b"",
            correlation_id: b"",
            payload: sip,
        }
        .encode(&mut marker)
        .unwrap();
        let mut markers = 0u64;
        wait_for("a marker through", || {
            tx.send_to(&marker, addr).unwrap();
            markers += 1;
            c.snapshot().sip > 0
        });
        let s = c.snapshot();
        assert!(s.udp_kernel_drops > 0, "{s:?}");
        assert!(s.received + s.dropped >= sent, "{s:?}");
        assert!(s.received + s.dropped <= sent + markers, "{s:?}");
        stop.store(true, Ordering::Relaxed);
        let r = run.join().unwrap().unwrap();
        assert_eq!(r.status.dropped, r.status.udp_kernel_drops);
        assert_eq!(r.status.bad + r.status.sip, r.status.received);
    }
}
