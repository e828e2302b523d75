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
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde::Serialize;
use thiserror::Error;

use super::wire::{self, Hep, IPPROTO_TCP, IPPROTO_UDP};
use crate::calls::PacketRef;
use crate::import::{ImportError, ImportReport};
use crate::index::{INDEX_FILE, Index};
use crate::output::CallWriter;
use crate::pcapio::{LinkType, PcapWriter};
use crate::pipeline::{Pipeline, PipelineConfig};

/// The capture file the listener writes in its output folder.
pub const PCAP_FILE: &str = "hep.pcap";
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
    let (Some(wire::proto_type::SIP), Some((src, dst)), Some(payload), Some(ts)) =
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
            match wire::frame_len(&buf[used..]) {
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
    let mut pcap = PcapWriter::new(BufWriter::new(file), LinkType::Raw, 65_535).map_err(io_err)?;
    let mut offset = PCAP_HEADER;
    let mut pipeline = Pipeline::new(opts.pipeline.clone());
    let mut writer = CallWriter::new(&opts.out, vec![pcap_path.clone()])
        .map_err(|e| ListenError::Import(e.into()))?;
    if !opts.call_files {
        writer = writer.without_call_files();
    }
    let mut index = fresh_index(&opts.out)?;
    let mut report = ImportReport::default();
    let mut frame = Vec::with_capacity(70_000);
    let mut seqs: HashMap<(SocketAddr, SocketAddr), u32> = HashMap::new();
    let mut last_flush = Instant::now();
    let (mut last_ts, mut last_at) = (0u64, Instant::now());
    let mut last_status = Instant::now();
    loop {
        let m = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if let Some(m) = m {
            last_ts = m.ts_ns;
            last_at = Instant::now();
            let seq = if m.tcp {
                if seqs.len() >= MAX_TCP_FLOWS {
                    seqs.clear();
                }
                let s = seqs.entry((m.src, m.dst)).or_insert(1);
                let cur = *s;
                *s = s.wrapping_add(m.payload.len() as u32);
                Some(cur)
            } else {
                None
            };
            build_frame(&mut frame, m.src, m.dst, seq, &m.payload);
            pcap.write_packet(m.ts_ns, frame.len() as u32, &frame)
                .map_err(io_err)?;
            let pref = PacketRef::new(0, offset);
            offset += RECORD_HEADER + frame.len() as u64;
            pipeline.process(LinkType::Raw, m.ts_ns, pref, &frame);
        } else if stop.load(Ordering::Relaxed) {
            break;
        } else if last_ts > 0 {
            // No traffic: capture time moves on with the clock since the last
            // message (not the wall clock itself, which a replay of old HEP
            // is far from), so BYE lingers and idle timeouts still end calls.
            let now = last_ts.saturating_add(last_at.elapsed().as_nanos() as u64);
            pipeline.calls_mut().tick(now);
        }
        if last_flush.elapsed() >= Duration::from_millis(500) {
            last_flush = Instant::now();
            // The call writer re-reads packets from the file.
            pcap.flush().map_err(io_err)?;
            crate::import::write_ended_indexed(
                &mut pipeline,
                &mut writer,
                Some(&mut index),
                &mut report,
            )?;
        }
        if opts.status && last_status.elapsed() >= Duration::from_secs(1) {
            last_status = Instant::now();
            let _ = crate::status::write(&opts.out, "hep-listen", &counters.snapshot());
        }
    }
    pcap.flush().map_err(io_err)?;
    pipeline.finish();
    crate::import::write_ended_indexed(&mut pipeline, &mut writer, Some(&mut index), &mut report)?;
    writer.finish().map_err(|e| ListenError::Import(e.into()))?;
    report.stats = pipeline.stats().clone();
    report.elapsed = started.elapsed();
    Ok(report)
}

fn fresh_index(out: &Path) -> Result<Index, ListenError> {
    for suffix in ["", "-wal", "-shm"] {
        let p = out.join(format!("{INDEX_FILE}{suffix}"));
        if p.exists() {
            std::fs::remove_file(&p).map_err(|source| ListenError::Io { path: p, source })?;
        }
    }
    Index::open(&out.join(INDEX_FILE)).map_err(|e| ListenError::Import(e.into()))
}

fn csum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut it = data.chunks_exact(2);
    for w in &mut it {
        sum = sum.wrapping_add(u32::from(u16::from_be_bytes([w[0], w[1]])));
    }
    if let [b] = it.remainder() {
        sum = sum.wrapping_add(u32::from(*b) << 8);
    }
    sum
}

fn csum_fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 or IPv6 packet (raw IP link type) carrying `payload` over UDP,
/// or over TCP (PSH|ACK at `seq`) when `seq` is given, with valid checksums.
/// Mixed families go as IPv6 (v4-mapped).
pub fn build_frame(
    out: &mut Vec<u8>,
    src: SocketAddr,
    dst: SocketAddr,
    seq: Option<u32>,
    payload: &[u8],
) {
    out.clear();
    let (sip, dip) = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (IpAddr::V4(s), IpAddr::V4(d)),
        (s, d) => (IpAddr::V6(to6(s)), IpAddr::V6(to6(d))),
    };
    let proto = if seq.is_some() {
        IPPROTO_TCP
    } else {
        IPPROTO_UDP
    };
    let l4_len = if seq.is_some() { 20 } else { 8 } + payload.len();
    let mut pseudo = 0u32;
    match (sip, dip) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = (20 + l4_len).min(65_535) as u16;
            let mut h = [0u8; 20];
            h[0] = 0x45;
            h[2..4].copy_from_slice(&total.to_be_bytes());
            h[6] = 0x40; // don't fragment
            h[8] = 64;
            h[9] = proto;
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            let c = csum_fold(csum_add(0, &h));
            h[10..12].copy_from_slice(&c.to_be_bytes());
            out.extend_from_slice(&h);
            pseudo = csum_add(pseudo, &s.octets());
            pseudo = csum_add(pseudo, &d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut h = [0u8; 40];
            h[0] = 0x60;
            h[4..6].copy_from_slice(&(l4_len.min(65_535) as u16).to_be_bytes());
            h[6] = proto;
            h[7] = 64;
            h[8..24].copy_from_slice(&s.octets());
            h[24..40].copy_from_slice(&d.octets());
            out.extend_from_slice(&h);
            pseudo = csum_add(pseudo, &s.octets());
            pseudo = csum_add(pseudo, &d.octets());
        }
        _ => {}
    }
    pseudo = pseudo
        .wrapping_add(u32::from(proto))
        .wrapping_add(l4_len as u32);
    let l4_start = out.len();
    match seq {
        None => {
            out.extend_from_slice(&src.port().to_be_bytes());
            out.extend_from_slice(&dst.port().to_be_bytes());
            out.extend_from_slice(&(l4_len.min(65_535) as u16).to_be_bytes());
            out.extend_from_slice(&[0, 0]);
        }
        Some(seq) => {
            out.extend_from_slice(&src.port().to_be_bytes());
            out.extend_from_slice(&dst.port().to_be_bytes());
            out.extend_from_slice(&seq.to_be_bytes());
            out.extend_from_slice(&1u32.to_be_bytes());
            out.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        }
    }
    out.extend_from_slice(payload);
    let mut c = csum_fold(csum_add(pseudo, &out[l4_start..]));
    if seq.is_none() && c == 0 {
        c = 0xffff;
    }
    let at = l4_start + if seq.is_some() { 16 } else { 6 };
    out[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

fn to6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Decoder, FragLimits, L4};

    #[test]
    fn built_frames_decode_back() {
        let mut f = Vec::new();
        let (s, d): (SocketAddr, SocketAddr) = (
            "10.1.2.3:5060".parse().unwrap(),
            "10.9.8.7:5070".parse().unwrap(),
        );
        build_frame(&mut f, s, d, None, b"OPTIONS sip:a SIP/2.0\r\n\r\n");
        let mut dec = Decoder::new(FragLimits::default());
        let dg = dec.decode(LinkType::Raw, 1, 0, &f).unwrap().unwrap();
        assert_eq!((dg.src, dg.dst), (s, d));
        assert!(matches!(dg.l4, L4::Udp));
        assert_eq!(dg.payload, b"OPTIONS sip:a SIP/2.0\r\n\r\n");
        // The IPv4 header checksum verifies to zero.
        assert_eq!(csum_fold(csum_add(0, &f[..20])), 0);

        let (s6, d6): (SocketAddr, SocketAddr) = (
            "[2001:db8::1]:5060".parse().unwrap(),
            "[2001:db8::2]:5060".parse().unwrap(),
        );
        build_frame(&mut f, s6, d6, Some(1000), b"x");
        let dg = dec.decode(LinkType::Raw, 1, 0, &f).unwrap().unwrap();
        assert_eq!((dg.src, dg.dst), (s6, d6));
        assert!(matches!(dg.l4, L4::Tcp { seq: 1000, .. }));
    }
}
