//! HEP export: a [`PacketTap`] that encodes what the pipeline hands it and
//! queues the packets for each collector, and one thread per collector that
//! sends them over UDP, TCP or TLS. The taps alive at one time share the
//! queues and threads: a parallel engine's replicas each hand theirs a
//! share of the messages, and the collector gets one stream.
//!
//! The pipeline never waits for a collector: each collector has a bounded
//! queue, and a packet that finds it full is dropped and counted. Buffers
//! travel back from the sender thread to the tap, so once the queues have
//! been full once nothing is allocated per packet. A TCP/TLS collector that
//! fails or stops reading (writes time out) is reconnected with an
//! exponential backoff; packets wait in the queue meanwhile.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{CollectorConfig, HepConfig, Transport};
use voxtap_engine::calls::Call;
use voxtap_engine::tap::{PacketTap, TapFactory};
use voxtap_proto::hep::{HepFields, IPPROTO_TCP, IPPROTO_UDP, proto_type};

/// How long the sender threads keep flushing their queues once the tap is
/// dropped (end of an import, shutdown of a live run).
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Bytes gathered into one write on a stream collector.
const STREAM_BATCH: usize = 64 * 1024;

/// Figures of one collector, shared by the tap, its sender thread and
/// whoever reports them.
#[derive(Debug, Default)]
pub struct CollectorCounters {
    /// Packets written to the socket.
    pub sent: AtomicU64,
    pub bytes: AtomicU64,
    /// Packets dropped because the queue was full (collector slow or down).
    pub dropped_queue_full: AtomicU64,
    /// Packets lost in a failed send (connection reset, write timeout...).
    pub dropped_send_error: AtomicU64,
    /// Packets still queued when the exporter stopped and could not flush.
    pub dropped_at_stop: AtomicU64,
    /// Packets waiting in the queue now.
    pub queued: AtomicU64,
    /// Successful connects after the first (TCP/TLS).
    pub reconnects: AtomicU64,
    pub connect_failures: AtomicU64,
    pub connected: AtomicBool,
}

/// Figures of one exporter (every pipeline made from one factory adds to
/// the same counters).
#[derive(Debug)]
pub struct ExportCounters {
    pub collectors: Vec<(String, CollectorCounters)>,
    pub sip: AtomicU64,
    pub rtcp: AtomicU64,
    pub reports: AtomicU64,
    /// Messages that would not fit a HEP packet (over 64 KiB).
    pub too_large: AtomicU64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CollectorStatus {
    pub collector: String,
    pub sent: u64,
    pub bytes: u64,
    pub dropped_queue_full: u64,
    pub dropped_send_error: u64,
    pub dropped_at_stop: u64,
    pub queue_depth: u64,
    pub reconnects: u64,
    pub connect_failures: u64,
    pub connected: bool,
}

/// What `<data>/status/hep.json` holds.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ExportStatus {
    pub sip: u64,
    pub rtcp: u64,
    pub reports: u64,
    pub too_large: u64,
    pub collectors: Vec<CollectorStatus>,
}

impl ExportCounters {
    pub fn snapshot(&self) -> ExportStatus {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ExportStatus {
            sip: l(&self.sip),
            rtcp: l(&self.rtcp),
            reports: l(&self.reports),
            too_large: l(&self.too_large),
            collectors: self
                .collectors
                .iter()
                .map(|(name, c)| CollectorStatus {
                    collector: name.clone(),
                    sent: l(&c.sent),
                    bytes: l(&c.bytes),
                    dropped_queue_full: l(&c.dropped_queue_full),
                    dropped_send_error: l(&c.dropped_send_error),
                    dropped_at_stop: l(&c.dropped_at_stop),
                    queue_depth: l(&c.queued),
                    reconnects: l(&c.reconnects),
                    connect_failures: l(&c.connect_failures),
                    connected: c.connected.load(Ordering::Relaxed),
                })
                .collect(),
        }
    }
}

impl ExportStatus {
    /// One line for the end of a run.
    pub fn summary_line(&self) -> String {
        let per: Vec<String> = self
            .collectors
            .iter()
            .map(|c| {
                format!(
                    "{}: {} sent, {} dropped (queue full), {} lost in send errors, {} unsent at stop, {} reconnects",
                    c.collector,
                    c.sent,
                    c.dropped_queue_full,
                    c.dropped_send_error,
                    c.dropped_at_stop,
                    c.reconnects
                )
            })
            .collect();
        format!(
            "HEP: {} SIP, {} RTCP, {} quality reports; {}",
            self.sip,
            self.rtcp,
            self.reports,
            per.join("; ")
        )
    }
}

/// A HEP exporter: hand [`HepExport::tap_factory`] to the pipeline
/// configuration; the counters stay readable here.
pub struct HepExport {
    cfg: Arc<HepConfig>,
    counters: Arc<ExportCounters>,
    status_dir: Option<PathBuf>,
    /// The senders of the taps alive now (none when no tap is).
    senders: Arc<Mutex<Weak<Senders>>>,
}

impl HepExport {
    /// `status_dir`: the data directory whose `status/hep.json` gets the
    /// counters about once a second while a tap runs.
    pub fn new(cfg: HepConfig, status_dir: Option<PathBuf>) -> Result<Self, String> {
        let mut cfg = cfg;
        cfg.enabled = true;
        cfg.validate()?;
        let counters = Arc::new(ExportCounters {
            collectors: cfg
                .collectors
                .iter()
                .map(|c| {
                    (
                        format!("{}://{}", c.transport.as_str(), c.address),
                        CollectorCounters::default(),
                    )
                })
                .collect(),
            sip: AtomicU64::new(0),
            rtcp: AtomicU64::new(0),
            reports: AtomicU64::new(0),
            too_large: AtomicU64::new(0),
        });
        Ok(HepExport {
            cfg: Arc::new(cfg),
            counters,
            status_dir,
            senders: Arc::new(Mutex::new(Weak::new())),
        })
    }

    pub fn counters(&self) -> Arc<ExportCounters> {
        Arc::clone(&self.counters)
    }

    /// Taps alive at the same time (the replicas of the parallel engine,
    /// several sources) share one queue and sender thread per collector
    /// and one status writer: the first tap starts them, dropping the last
    /// (with its pipeline) flushes the queues for up to 3 s and stops them.
    pub fn tap_factory(&self) -> TapFactory {
        let (cfg, counters, dir, senders) = (
            Arc::clone(&self.cfg),
            Arc::clone(&self.counters),
            self.status_dir.clone(),
            Arc::clone(&self.senders),
        );
        TapFactory::new(move || {
            let shared = {
                let mut alive = senders.lock().unwrap_or_else(|e| e.into_inner());
                alive.upgrade().unwrap_or_else(|| {
                    let s = Arc::new(Senders::start(&cfg, &counters, dir.clone()));
                    *alive = Arc::downgrade(&s);
                    s
                })
            };
            Box::new(HepTap {
                cfg: Arc::clone(&cfg),
                counters: Arc::clone(&counters),
                spare: vec![None; shared.lanes.len()],
                senders: shared,
                scratch: Vec::with_capacity(4096),
                json: Vec::with_capacity(1024),
            })
        })
    }
}

/// One collector's queue, the pool its sender thread hands the buffers
/// back to, and that thread.
struct Lane {
    queue: Option<SyncSender<Vec<u8>>>,
    pool: crossbeam_channel::Receiver<Vec<u8>>,
    thread: Option<JoinHandle<()>>,
}

/// The collector side of the taps alive: a lane per collector and the
/// status writer. Dropped with the last tap.
struct Senders {
    lanes: Vec<Lane>,
    stop: Arc<AtomicBool>,
    /// Raised after the senders are joined, so the last status written
    /// has their final counts.
    status_stop: Arc<AtomicBool>,
    status: Option<JoinHandle<()>>,
}

impl Senders {
    fn start(cfg: &HepConfig, counters: &Arc<ExportCounters>, status_dir: Option<PathBuf>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let lanes = cfg
            .collectors
            .iter()
            .enumerate()
            .map(|(index, c)| {
                let (qtx, qrx) = mpsc::sync_channel::<Vec<u8>>(cfg.queue_packets);
                let (ptx, prx) = crossbeam_channel::unbounded::<Vec<u8>>();
                let sender = CollectorThread {
                    cfg: c.clone(),
                    counters: Arc::clone(counters),
                    index,
                    queue: qrx,
                    pool: ptx,
                    stop: Arc::clone(&stop),
                };
                let thread = thread::Builder::new()
                    .name(format!("voxtap-hep-{index}"))
                    .spawn(move || sender.run())
                    .map_err(|e| tracing::error!(error = %e, "starting a HEP sender thread"))
                    .ok();
                Lane {
                    queue: Some(qtx),
                    pool: prx,
                    thread,
                }
            })
            .collect();
        let status_stop = Arc::new(AtomicBool::new(false));
        let status = status_dir.and_then(|dir| {
            let (counters, stop) = (Arc::clone(counters), Arc::clone(&status_stop));
            thread::Builder::new()
                .name("voxtap-hep-status".into())
                .spawn(move || status_loop(&dir, &counters, &stop))
                .ok()
        });
        Senders {
            lanes,
            stop,
            status_stop,
            status,
        }
    }
}

impl Drop for Senders {
    fn drop(&mut self) {
        // Closing the queues lets each sender flush what is left and exit.
        for lane in &mut self.lanes {
            lane.queue = None;
        }
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        for lane in &mut self.lanes {
            if let Some(t) = lane.thread.take() {
                while !t.is_finished() && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(5));
                }
                // Past the deadline the sender gives up on its own (stop
                // flag, bounded write timeout); join it either way so no
                // thread outlives the pipeline.
                self.stop.store(true, Ordering::Relaxed);
                let _ = t.join();
            }
        }
        self.stop.store(true, Ordering::Relaxed);
        self.status_stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.status.take() {
            let _ = t.join();
        }
    }
}

/// The pipeline side: encodes once, copies into each collector's queue.
pub(crate) struct HepTap {
    cfg: Arc<HepConfig>,
    counters: Arc<ExportCounters>,
    senders: Arc<Senders>,
    /// Per lane: a buffer its full queue did not take, for the next packet.
    spare: Vec<Option<Vec<u8>>>,
    scratch: Vec<u8>,
    json: Vec<u8>,
}

impl HepTap {
    /// Encodes `f` and queues a copy for every collector.
    fn send(&mut self, f: &HepFields<'_>) {
        self.scratch.clear();
        if f.encode(&mut self.scratch).is_err() {
            self.counters.too_large.fetch_add(1, Ordering::Relaxed);
            return;
        }
        for (index, lane) in self.senders.lanes.iter().enumerate() {
            let c = &self.counters.collectors[index].1;
            let Some(q) = &lane.queue else { continue };
            let mut buf = self.spare[index]
                .take()
                .or_else(|| lane.pool.try_recv().ok())
                .unwrap_or_else(|| Vec::with_capacity(self.scratch.len().max(2048)));
            buf.clear();
            buf.extend_from_slice(&self.scratch);
            c.queued.fetch_add(1, Ordering::Relaxed);
            match q.try_send(buf) {
                Ok(()) => {}
                Err(TrySendError::Full(buf)) | Err(TrySendError::Disconnected(buf)) => {
                    c.queued.fetch_sub(1, Ordering::Relaxed);
                    c.dropped_queue_full.fetch_add(1, Ordering::Relaxed);
                    self.spare[index] = Some(buf);
                }
            }
        }
    }
}

impl PacketTap for HepTap {
    fn sip(
        &mut self,
        ts_ns: u64,
        src: SocketAddr,
        dst: SocketAddr,
        tcp: bool,
        call_id: &[u8],
        message: &[u8],
    ) {
        if !self.cfg.sip {
            return;
        }
        self.counters.sip.fetch_add(1, Ordering::Relaxed);
        let cfg = Arc::clone(&self.cfg);
        self.send(&HepFields {
            src,
            dst,
            ip_proto: if tcp { IPPROTO_TCP } else { IPPROTO_UDP },
            ts_ns,
            proto_type: proto_type::SIP,
            capture_id: cfg.capture_agent_id,
            auth_key: cfg.auth_key.as_bytes(),
            correlation_id: call_id,
            payload: message,
        });
    }

    fn rtcp(
        &mut self,
        ts_ns: u64,
        src: SocketAddr,
        dst: SocketAddr,
        call_id: &[u8],
        payload: &[u8],
    ) {
        if !self.cfg.rtcp {
            return;
        }
        let mut json = std::mem::take(&mut self.json);
        if super::json::rtcp_json(payload, &mut json) {
            self.counters.rtcp.fetch_add(1, Ordering::Relaxed);
            let cfg = Arc::clone(&self.cfg);
            self.send(&HepFields {
                src,
                dst,
                ip_proto: IPPROTO_UDP,
                ts_ns,
                proto_type: proto_type::RTCP,
                capture_id: cfg.capture_agent_id,
                auth_key: cfg.auth_key.as_bytes(),
                correlation_id: call_id,
                payload: &json,
            });
        }
        self.json = json;
    }

    fn call_ended(&mut self, call: &Call) {
        if !self.cfg.reports {
            return;
        }
        for s in call.streams() {
            let r = super::json::stream_report(call, s);
            let Ok(body) = serde_json::to_vec(&r.json) else {
                continue;
            };
            self.counters.reports.fetch_add(1, Ordering::Relaxed);
            let cfg = Arc::clone(&self.cfg);
            let ts = s.stats.summary().last_ns.max(call.end_or_last());
            self.send(&HepFields {
                src: s.key.src.into(),
                dst: s.key.dst.into(),
                ip_proto: IPPROTO_UDP,
                ts_ns: ts,
                proto_type: proto_type::RTP_REPORT,
                capture_id: cfg.capture_agent_id,
                auth_key: cfg.auth_key.as_bytes(),
                correlation_id: call.call_id_raw(),
                payload: &body,
            });
        }
    }
}

fn status_loop(dir: &Path, counters: &ExportCounters, stop: &AtomicBool) {
    loop {
        if let Err(e) = crate::status::write(dir, "hep", &counters.snapshot()) {
            tracing::debug!(error = %e, "writing the HEP status file");
        }
        for _ in 0..20 {
            if stop.load(Ordering::Relaxed) {
                let _ = crate::status::write(dir, "hep", &counters.snapshot());
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<TlsStream>),
}

/// What a collector thread does next.
enum Step {
    /// Carry on with this iteration.
    Go,
    /// Start the next iteration (checks the stop flag).
    Again,
    /// Leave the loop: the exporter is gone.
    Stop,
}

/// A collector thread's connection and its reconnect backoff.
struct Link {
    conn: Option<Conn>,
    backoff: Duration,
    next_try: Instant,
    ever_connected: bool,
}

impl Link {
    /// Next attempt after the backoff, which doubles up to [`BACKOFF_MAX`].
    fn retry_later(&mut self) {
        self.next_try = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }
}

/// The collector side: one thread per collector.
struct CollectorThread {
    cfg: CollectorConfig,
    counters: Arc<ExportCounters>,
    index: usize,
    queue: Receiver<Vec<u8>>,
    pool: crossbeam_channel::Sender<Vec<u8>>,
    stop: Arc<AtomicBool>,
}

impl CollectorThread {
    fn c(&self) -> &CollectorCounters {
        &self.counters.collectors[self.index].1
    }

    fn run(self) {
        let tls = self.tls();
        let mut link = Link {
            conn: None,
            backoff: BACKOFF_MIN,
            next_try: Instant::now(),
            ever_connected: false,
        };
        // A packet taken off the queue while not connected.
        let mut pending: Option<Vec<u8>> = None;
        let mut batch: Vec<Vec<u8>> = Vec::with_capacity(256);
        let mut wbuf: Vec<u8> = Vec::with_capacity(STREAM_BATCH + 4096);
        while !self.stop.load(Ordering::Relaxed) {
            if link.conn.is_none() {
                match self.reconnect(&mut link, tls.as_ref(), &mut pending) {
                    Step::Go => {}
                    Step::Again => continue,
                    Step::Stop => break,
                }
            }
            match self.gather(&mut pending, &mut batch) {
                Step::Go => {}
                Step::Again => continue,
                Step::Stop => break,
            }
            self.send(&mut link, &batch, &mut wbuf);
            for mut b in batch.drain(..) {
                b.clear();
                let _ = self.pool.send(b);
            }
        }
        self.finish(link.conn, pending);
    }

    /// The TLS client configuration, when the transport is TLS and a CA is
    /// usable.
    fn tls(&self) -> Option<TlsConfig> {
        if self.cfg.transport != Transport::Tls {
            return None;
        }
        match tls_config(&self.cfg) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(collector = %self.cfg.address, error = %e, "HEP over TLS: no usable CA; this collector gets nothing");
                None
            }
        }
    }

    /// One connection attempt, when the backoff allows it.
    fn reconnect(
        &self,
        link: &mut Link,
        tls: Option<&TlsConfig>,
        pending: &mut Option<Vec<u8>>,
    ) -> Step {
        if self.cfg.transport == Transport::Tls && tls.is_none() {
            // Nothing can be sent: let the queue overflow (counted) until
            // the exporter stops.
            thread::sleep(Duration::from_millis(50));
            return Step::Again;
        }
        // Nothing left to send and nobody to send more: done, even while
        // the collector is away.
        if pending.is_none() {
            match self.queue.try_recv() {
                Ok(b) => *pending = Some(b),
                Err(TryRecvError::Disconnected) => return Step::Stop,
                Err(TryRecvError::Empty) => {}
            }
        }
        if Instant::now() < link.next_try {
            // Packets wait in the queue (and overflow, counted) while the
            // collector is away.
            thread::sleep(
                link.next_try
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(50)),
            );
            return Step::Again;
        }
        match self.connect(tls) {
            Ok(c) => {
                if link.ever_connected {
                    self.c().reconnects.fetch_add(1, Ordering::Relaxed);
                }
                link.ever_connected = true;
                link.backoff = BACKOFF_MIN;
                self.c().connected.store(true, Ordering::Relaxed);
                link.conn = Some(c);
                Step::Go
            }
            Err(e) => {
                self.c().connect_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(collector = %self.cfg.address, error = %e, "HEP collector connect failed");
                link.retry_later();
                Step::Again
            }
        }
    }

    /// Takes the pending packet or waits for one, then whatever else is
    /// queued, up to [`STREAM_BATCH`] bytes or 256 packets.
    fn gather(&self, pending: &mut Option<Vec<u8>>, batch: &mut Vec<Vec<u8>>) -> Step {
        let first = pending
            .take()
            .map_or_else(|| self.queue.recv_timeout(Duration::from_millis(100)), Ok);
        let mut bytes = match first {
            Ok(b) => {
                let n = b.len();
                batch.push(b);
                n
            }
            Err(RecvTimeoutError::Timeout) => return Step::Again,
            Err(RecvTimeoutError::Disconnected) => return Step::Stop,
        };
        while bytes < STREAM_BATCH && batch.len() < 256 {
            match self.queue.try_recv() {
                Ok(b) => {
                    bytes += b.len();
                    batch.push(b);
                }
                Err(_) => break,
            }
        }
        self.c()
            .queued
            .fetch_sub(batch.len() as u64, Ordering::Relaxed);
        Step::Go
    }

    /// Sends a batch; a failed stream write closes the connection (the batch
    /// is counted as dropped) and schedules a reconnect.
    fn send(&self, link: &mut Link, batch: &[Vec<u8>], wbuf: &mut Vec<u8>) {
        let n = batch.len() as u64;
        let result = match link.conn.as_mut() {
            Some(Conn::Udp(s)) => {
                self.send_datagrams(s, batch);
                Ok(())
            }
            Some(Conn::Tcp(s)) => write_batch(s, batch, wbuf),
            Some(Conn::Tls(s)) => write_batch(s.as_mut(), batch, wbuf),
            None => Err(io::Error::other("not connected")),
        };
        match result {
            Ok(()) => {
                if !matches!(link.conn, Some(Conn::Udp(_))) {
                    self.c().sent.fetch_add(n, Ordering::Relaxed);
                    self.c()
                        .bytes
                        .fetch_add(wbuf.len() as u64, Ordering::Relaxed);
                }
            }
            Err(e) => {
                tracing::warn!(collector = %self.cfg.address, error = %e, "HEP collector write failed; reconnecting");
                self.c().dropped_send_error.fetch_add(n, Ordering::Relaxed);
                self.c().connected.store(false, Ordering::Relaxed);
                link.conn = None;
                link.retry_later();
            }
        }
    }

    /// Each HEP packet is its own datagram; a refused one (nobody listening
    /// yet) is lost, the socket stays.
    fn send_datagrams(&self, s: &UdpSocket, batch: &[Vec<u8>]) {
        let mut ok = 0u64;
        for b in batch {
            if s.send(b).is_ok() {
                ok += 1;
            }
        }
        self.c()
            .dropped_send_error
            .fetch_add(batch.len() as u64 - ok, Ordering::Relaxed);
        self.c().sent.fetch_add(ok, Ordering::Relaxed);
        self.c().bytes.fetch_add(
            batch.iter().map(|b| b.len() as u64).sum::<u64>(),
            Ordering::Relaxed,
        );
    }

    /// Whatever is still queued is lost: count it; close the connection.
    fn finish(&self, conn: Option<Conn>, pending: Option<Vec<u8>>) {
        let mut left = u64::from(pending.is_some());
        while let Ok(b) = self.queue.try_recv() {
            left += 1;
            drop(b);
        }
        if left > 0 {
            self.c().queued.fetch_sub(left, Ordering::Relaxed);
            self.c().dropped_at_stop.fetch_add(left, Ordering::Relaxed);
        }
        if let Some(Conn::Tls(mut s)) = conn {
            tls_close(&mut s);
        }
        self.c().connected.store(false, Ordering::Relaxed);
    }

    fn connect(&self, tls: Option<&TlsConfig>) -> io::Result<Conn> {
        let addrs: Vec<SocketAddr> = self.cfg.address.to_socket_addrs()?.collect();
        let first = *addrs
            .first()
            .ok_or_else(|| io::Error::other("address resolves to nothing"))?;
        let timeout = Duration::from_millis(self.cfg.timeout_ms.max(1));
        match self.cfg.transport {
            Transport::Udp => {
                let bind: SocketAddr = if first.is_ipv4() {
                    "0.0.0.0:0".parse().map_err(io::Error::other)?
                } else {
                    "[::]:0".parse().map_err(io::Error::other)?
                };
                let s = UdpSocket::bind(bind)?;
                s.connect(first)?;
                Ok(Conn::Udp(s))
            }
            Transport::Tcp | Transport::Tls => {
                let mut last = None;
                let mut stream = None;
                for a in &addrs {
                    match TcpStream::connect_timeout(a, timeout) {
                        Ok(s) => {
                            stream = Some(s);
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                let s = match stream {
                    Some(s) => s,
                    None => return Err(last.unwrap_or_else(|| io::Error::other("no address"))),
                };
                s.set_nodelay(true)?;
                s.set_write_timeout(Some(timeout))?;
                s.set_read_timeout(Some(timeout))?;
                if self.cfg.transport == Transport::Tcp {
                    return Ok(Conn::Tcp(s));
                }
                let cfg = tls.ok_or_else(|| io::Error::other("no TLS configuration"))?;
                let name = self
                    .cfg
                    .server_name
                    .clone()
                    .unwrap_or_else(|| host_of(&self.cfg.address));
                Ok(Conn::Tls(Box::new(tls_connect(cfg, name, s)?)))
            }
        }
    }
}

fn write_batch(w: &mut impl Write, batch: &[Vec<u8>], wbuf: &mut Vec<u8>) -> io::Result<()> {
    wbuf.clear();
    for b in batch {
        wbuf.extend_from_slice(b);
    }
    w.write_all(wbuf)?;
    w.flush()
}

fn host_of(address: &str) -> String {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

#[cfg(feature = "tls")]
const SYSTEM_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

#[cfg(feature = "tls")]
type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;
#[cfg(feature = "tls")]
type TlsConfig = Arc<rustls::ClientConfig>;
// Without the `tls` feature (a macOS type-check build) a TLS collector is a
// configuration error reported at start; these types are never built.
#[cfg(not(feature = "tls"))]
type TlsStream = TcpStream;
#[cfg(not(feature = "tls"))]
type TlsConfig = ();

#[cfg(not(feature = "tls"))]
fn tls_config(_: &CollectorConfig) -> Result<TlsConfig, String> {
    Err("this voxtap was built without the `tls` feature".into())
}

#[cfg(not(feature = "tls"))]
fn tls_connect(_: &TlsConfig, _: String, _: TcpStream) -> io::Result<TlsStream> {
    Err(io::Error::other("built without TLS"))
}

#[cfg(not(feature = "tls"))]
fn tls_close(_: &mut TlsStream) {}

#[cfg(feature = "tls")]
fn tls_connect(cfg: &TlsConfig, name: String, s: TcpStream) -> io::Result<TlsStream> {
    let name = rustls::pki_types::ServerName::try_from(name)
        .map_err(|e| io::Error::other(format!("TLS server name: {e}")))?;
    let c = rustls::ClientConnection::new(Arc::clone(cfg), name).map_err(io::Error::other)?;
    let mut st = rustls::StreamOwned::new(c, s);
    // Handshake now, so a bad certificate is a connect failure.
    while st.conn.is_handshaking() {
        st.conn.complete_io(&mut st.sock)?;
    }
    Ok(st)
}

#[cfg(feature = "tls")]
fn tls_close(s: &mut TlsStream) {
    s.conn.send_close_notify();
    let _ = s.flush();
}

#[cfg(feature = "tls")]
fn tls_config(c: &CollectorConfig) -> Result<TlsConfig, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let path = c
        .ca_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(SYSTEM_CA));
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&path)
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("reading {}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("CA in {}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("no certificate in {}", path.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_part() {
        assert_eq!(host_of("homer.example:9061"), "homer.example");
        assert_eq!(host_of("[::1]:9061"), "::1");
    }
}
