//! Captures on many rpcapd hosts at once: one thread per (host, interface),
//! each writing rolling pcap segments and feeding its own [`Pipeline`], whose
//! ended calls go through the same [`CallWriter`] path as `import` (the call
//! pcaps are cut from the segments through packet references). A dropped
//! stream is retried with exponential backoff; the data before the drop
//! stays in its own segment and the gap is recorded in `gaps.csv`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use voxtap_engine::calls::PacketRef;
use voxtap_engine::import::{ImportReport, write_ended};
use voxtap_engine::output::{CallWriter, CsvWriter, format_ts};
use voxtap_engine::pipeline::{Pipeline, PipelineConfig};
use voxtap_proto::pcapio::{LinkType, PcapWriter};

use super::client::{CaptureOptions, ClientConfig, DataChannel, RpcapError, Session};
use super::hosts::Host;
use crate::fsutil::{Durability, write_atomic};
use voxtap_proto::rpcap::{Packet, Stats};

#[derive(Clone, Debug)]
pub struct ReconnectPolicy {
    /// Attempts after a drop (or a failed first connect) before giving up.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Debug)]
pub struct RemoteOptions {
    pub out: PathBuf,
    pub capture: CaptureOptions,
    /// Stop by itself after this long.
    pub duration: Option<Duration>,
    /// Start a new pcap segment past this size.
    pub rotate_bytes: u64,
    pub reconnect: ReconnectPolicy,
    pub pipeline: PipelineConfig,
    pub call_files: bool,
    pub connect_timeout: Duration,
    pub reply_timeout: Duration,
    /// How often to ask rpcapd for its counters (also notices a dead
    /// server on an idle UDP data channel).
    pub stats_every: Duration,
    /// The data directory whose `status/remote.json` gets the live counters
    /// (the web UI's `--data`); `None`: `out`.
    pub status_data: Option<PathBuf>,
}

impl RemoteOptions {
    pub fn new(out: PathBuf) -> Self {
        RemoteOptions {
            out,
            capture: CaptureOptions::default(),
            duration: None,
            rotate_bytes: 256 << 20,
            reconnect: ReconnectPolicy::default(),
            pipeline: PipelineConfig::default(),
            call_files: true,
            connect_timeout: Duration::from_secs(5),
            reply_timeout: Duration::from_secs(10),
            stats_every: Duration::from_secs(2),
            status_data: None,
        }
    }
}

/// One capture: an interface on a host.
#[derive(Clone, Debug)]
pub struct Target {
    /// `env/region/host`.
    pub id: String,
    pub iface: String,
    pub client: ClientConfig,
}

/// One target per interface of each host.
pub fn targets(hosts: &[Host], opts: &RemoteOptions) -> Vec<Target> {
    let mut out = Vec::new();
    for h in hosts {
        for iface in &h.interfaces {
            let mut client = ClientConfig::new(h.addr());
            client.credentials = h.credentials.clone();
            client.connect_timeout = opts.connect_timeout;
            client.reply_timeout = opts.reply_timeout;
            client.tls = h.tls.clone();
            out.push(Target {
                id: h.id(),
                iface: iface.clone(),
                client,
            });
        }
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum UnitState {
    Connecting = 0,
    Capturing = 1,
    Reconnecting = 2,
    Done = 3,
    Failed = 4,
}

impl UnitState {
    fn from_u8(v: u8) -> UnitState {
        match v {
            1 => UnitState::Capturing,
            2 => UnitState::Reconnecting,
            3 => UnitState::Done,
            4 => UnitState::Failed,
            _ => UnitState::Connecting,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            UnitState::Connecting => "connecting",
            UnitState::Capturing => "capturing",
            UnitState::Reconnecting => "reconnecting",
            UnitState::Done => "done",
            UnitState::Failed => "failed",
        }
    }
}

/// Live counters of one capture, updated by its thread.
#[derive(Debug, Default)]
pub struct Counters {
    state: AtomicU8,
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub reconnects: AtomicU32,
    /// Packets rpcapd numbered that never reached us (UDP data channel).
    pub lost: AtomicU64,
    pub remote_received: AtomicU64,
    pub remote_if_dropped: AtomicU64,
    pub remote_kernel_dropped: AtomicU64,
    pub remote_sent: AtomicU64,
}

impl Counters {
    pub fn state(&self) -> UnitState {
        UnitState::from_u8(self.state.load(Ordering::Relaxed))
    }

    fn set_state(&self, s: UnitState) {
        self.state.store(s as u8, Ordering::Relaxed);
    }

    fn set_stats(&self, s: &Stats) {
        self.remote_received
            .store(u64::from(s.received), Ordering::Relaxed);
        self.remote_if_dropped
            .store(u64::from(s.if_dropped), Ordering::Relaxed);
        self.remote_kernel_dropped
            .store(u64::from(s.kernel_dropped), Ordering::Relaxed);
        self.remote_sent
            .store(u64::from(s.server_sent), Ordering::Relaxed);
    }
}

/// A time without data: from the drop to the restart (or to the end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    /// Wall clock, ns since the Unix epoch.
    pub from_ns: u64,
    pub to_ns: Option<u64>,
    pub reason: String,
    pub attempts: u32,
}

impl Gap {
    pub fn seconds(&self, end_ns: u64) -> f64 {
        self.to_ns.unwrap_or(end_ns).saturating_sub(self.from_ns) as f64 / 1e9
    }
}

#[derive(Debug, Default)]
pub struct UnitReport {
    pub id: String,
    pub iface: String,
    pub dir: PathBuf,
    pub packets: u64,
    pub bytes: u64,
    pub segments: Vec<PathBuf>,
    pub gaps: Vec<Gap>,
    pub reconnects: u32,
    pub lost: u64,
    pub last_stats: Option<Stats>,
    /// Why the capture of this target stopped early, if it did.
    pub error: Option<String>,
    pub calls: ImportReport,
}

impl UnitReport {
    pub fn summary_line(&self) -> String {
        format!(
            "{} {}: {} packets, {} segment(s), {} calls ({} answered), {} reconnect(s), {} gap(s){}{}",
            self.id,
            self.iface,
            self.packets,
            self.segments.len(),
            self.calls.calls,
            self.calls.answered,
            self.reconnects,
            self.gaps.len(),
            match &self.last_stats {
                Some(s) => format!(
                    ", remote: {} received, {} dropped by interface, {} by kernel, {} sent",
                    s.received, s.if_dropped, s.kernel_dropped, s.server_sent
                ),
                None => String::new(),
            },
            match &self.error {
                Some(e) => format!(", FAILED: {e}"),
                None => String::new(),
            }
        )
    }
}

/// Running captures.
pub struct RemoteCapture {
    stop: Arc<AtomicBool>,
    units: Vec<(Target, Arc<Counters>, JoinHandle<UnitReport>)>,
}

/// A snapshot of one capture's counters.
#[derive(Clone, Debug)]
pub struct UnitStatus {
    pub id: String,
    pub iface: String,
    pub state: UnitState,
    pub packets: u64,
    pub bytes: u64,
    pub reconnects: u32,
    pub lost: u64,
    pub remote: Stats,
}

impl RemoteCapture {
    pub fn start(targets: Vec<Target>, opts: &RemoteOptions) -> RemoteCapture {
        let stop = Arc::new(AtomicBool::new(false));
        let units = targets
            .into_iter()
            .map(|t| {
                let c = Arc::new(Counters::default());
                let (t2, c2, s2, o2) = (t.clone(), c.clone(), stop.clone(), opts.clone());
                let h = std::thread::Builder::new()
                    .name(format!("rpcap {} {}", t.id, t.iface))
                    .spawn(move || run_unit(&t2, &o2, &c2, &s2))
                    .unwrap_or_else(|e| {
                        // No thread: report it through a thread that cannot
                        // fail to exist... there is none, so run inline.
                        tracing::error!("cannot start a capture thread: {e}");
                        std::thread::spawn(UnitReport::default)
                    });
                (t, c, h)
            })
            .collect();
        RemoteCapture { stop, units }
    }

    /// Ask every capture to stop (they end their remote capture cleanly).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub fn is_finished(&self) -> bool {
        self.units.iter().all(|(_, _, h)| h.is_finished())
    }

    pub fn status(&self) -> Vec<UnitStatus> {
        self.units
            .iter()
            .map(|(t, c, _)| UnitStatus {
                id: t.id.clone(),
                iface: t.iface.clone(),
                state: c.state(),
                packets: c.packets.load(Ordering::Relaxed),
                bytes: c.bytes.load(Ordering::Relaxed),
                reconnects: c.reconnects.load(Ordering::Relaxed),
                lost: c.lost.load(Ordering::Relaxed),
                remote: Stats {
                    received: c.remote_received.load(Ordering::Relaxed) as u32,
                    if_dropped: c.remote_if_dropped.load(Ordering::Relaxed) as u32,
                    kernel_dropped: c.remote_kernel_dropped.load(Ordering::Relaxed) as u32,
                    server_sent: c.remote_sent.load(Ordering::Relaxed) as u32,
                },
            })
            .collect()
    }

    pub fn wait(self) -> Vec<UnitReport> {
        self.units
            .into_iter()
            .map(|(t, _, h)| {
                h.join().unwrap_or_else(|_| UnitReport {
                    id: t.id,
                    iface: t.iface,
                    error: Some("capture thread panicked".into()),
                    ..Default::default()
                })
            })
            .collect()
    }
}

/// Status table written to `status.tsv` and printed by `voxtap remote status`.
pub(crate) fn status_table(st: &[UnitStatus]) -> String {
    let mut s = String::from(
        "host\tinterface\tstate\tpackets\tbytes\treconnects\tlost\tremote_received\tremote_if_dropped\tremote_kernel_dropped\tremote_sent\n",
    );
    for u in st {
        s.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            u.id,
            u.iface,
            u.state.as_str(),
            u.packets,
            u.bytes,
            u.reconnects,
            u.lost,
            u.remote.received,
            u.remote.if_dropped,
            u.remote.kernel_dropped,
            u.remote.server_sent
        ));
    }
    s
}

/// The `remote` status file (capture/sensor/src/status.rs): per host and interface
/// the same counters as `status.tsv`, plus totals.
pub(crate) fn status_json(st: &[UnitStatus], running: bool, out: &Path) -> serde_json::Value {
    let units: Vec<serde_json::Value> = st
        .iter()
        .map(|u| {
            serde_json::json!({
                "host": u.id,
                "interface": u.iface,
                "state": u.state.as_str(),
                "packets": u.packets,
                "bytes": u.bytes,
                "reconnects": u.reconnects,
                "lost": u.lost,
                "drops": u64::from(u.remote.if_dropped) + u64::from(u.remote.kernel_dropped),
                "remote_received": u.remote.received,
                "remote_if_dropped": u.remote.if_dropped,
                "remote_kernel_dropped": u.remote.kernel_dropped,
                "remote_sent": u.remote.server_sent,
            })
        })
        .collect();
    serde_json::json!({
        "running": running,
        "pid": std::process::id(),
        "out": out.display().to_string(),
        "packets": st.iter().map(|u| u.packets).sum::<u64>(),
        "bytes": st.iter().map(|u| u.bytes).sum::<u64>(),
        "units": units,
    })
}

pub const PID_FILE: &str = "voxtap-remote.pid";
/// How long a stopping capture waits for the packets rpcapd said it sent.
const STOP_DRAIN: Duration = Duration::from_secs(5);
pub const STOP_FILE: &str = "STOP";
pub const STATUS_FILE: &str = "status.tsv";

/// Runs in the foreground until the duration ends, every capture gave up, or
/// a `STOP` file appears in the output directory (`voxtap remote stop`);
/// keeps `status.tsv` and the pid file there up to date meanwhile.
pub fn run_foreground(
    targets: Vec<Target>,
    opts: &RemoteOptions,
    mut on_tick: impl FnMut(&[UnitStatus]),
) -> std::io::Result<Vec<UnitReport>> {
    std::fs::create_dir_all(&opts.out)?;
    let stop_file = opts.out.join(STOP_FILE);
    let _ = std::fs::remove_file(&stop_file);
    let pid_file = opts.out.join(PID_FILE);
    std::fs::write(&pid_file, format!("{}\n", std::process::id()))?;
    let cap = RemoteCapture::start(targets, opts);
    let status_path = opts.out.join(STATUS_FILE);
    let status_data = opts.status_data.as_deref().unwrap_or(&opts.out);
    let publish = |st: &[UnitStatus], running: bool| {
        if let Err(e) =
            crate::status::write(status_data, "remote", &status_json(st, running, &opts.out))
        {
            tracing::debug!("writing the remote status file: {e}");
        }
    };
    let mut published = Instant::now();
    publish(&cap.status(), true);
    while !cap.is_finished() {
        std::thread::sleep(Duration::from_millis(250));
        if stop_file.exists() {
            tracing::info!("stop requested");
            cap.stop();
        }
        let st = cap.status();
        let _ = write_atomic(
            &status_path,
            status_table(&st).as_bytes(),
            Durability::Cached,
        );
        if published.elapsed() >= Duration::from_secs(1) {
            published = Instant::now();
            publish(&st, true);
        }
        on_tick(&st);
    }
    let st = cap.status();
    let _ = write_atomic(
        &status_path,
        status_table(&st).as_bytes(),
        Durability::Cached,
    );
    publish(&st, false);
    let reports = cap.wait();
    let _ = std::fs::remove_file(&pid_file);
    let _ = std::fs::remove_file(&stop_file);
    Ok(reports)
}

/// The pid of the capture running into `out`, if its pid file is there
/// and (where /proc says so) the process still exists: a capture killed
/// with -9 leaves its pid file behind.
pub fn running_pid(out: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(out.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if cfg!(target_os = "linux") && !Path::new(&format!("/proc/{pid}")).exists() {
        return None;
    }
    Some(pid)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A name safe as one path component.
fn safe(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("_{s}")
    } else {
        s
    }
}

/// The pcap segment being written.
struct Segment {
    w: PcapWriter<BufWriter<File>>,
    path: PathBuf,
    source: u16,
    /// Where the next record starts (for its PacketRef).
    offset: u64,
}

/// Why a session ended.
enum End {
    /// Stop flag or duration.
    Stopped,
    /// The remote side or the network failed; `started` says whether
    /// packets had begun to flow (then the backoff starts over).
    Net { err: RpcapError, started: bool },
    /// Our own disk: no point reconnecting.
    Output(String),
}

struct Unit<'a> {
    t: &'a Target,
    opts: &'a RemoteOptions,
    c: &'a Counters,
    stop: &'a AtomicBool,
    deadline: Option<Instant>,
    dir: PathBuf,
    pipeline: Pipeline,
    writer: CallWriter,
    report: UnitReport,
    seg: Option<Segment>,
    open_gap: Option<Gap>,
}

impl Unit<'_> {
    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    fn new_segment(&mut self, link: LinkType) -> Result<(), String> {
        self.close_segment()?;
        let name = format!(
            "{}_{}_{:04}.pcap",
            self.t.id.split('/').map(safe).collect::<Vec<_>>().join("_"),
            safe(&self.t.iface),
            self.report.segments.len() + 1
        );
        let path = self.dir.join(name);
        let f = File::create(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        let w = PcapWriter::new(BufWriter::with_capacity(1 << 16, f), link, 262_144)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        let source = self
            .writer
            .add_source(path.clone())
            .ok_or_else(|| "more than 65536 segments in one run".to_string())?;
        self.report.segments.push(path.clone());
        self.seg = Some(Segment {
            w,
            path,
            source,
            offset: 24,
        });
        Ok(())
    }

    fn close_segment(&mut self) -> Result<(), String> {
        if let Some(mut s) = self.seg.take() {
            s.w.flush()
                .map_err(|e| format!("writing {}: {e}", s.path.display()))?;
        }
        Ok(())
    }

    /// Makes the segment readable and writes the calls that ended.
    fn checkpoint(&mut self) -> Result<(), String> {
        if let Some(s) = self.seg.as_mut() {
            s.w.flush()
                .map_err(|e| format!("writing {}: {e}", s.path.display()))?;
        }
        write_ended(&mut self.pipeline, &mut self.writer, &mut self.report.calls)
            .map_err(|e| e.to_string())
    }

    /// Writes one packet to the segment and the pipeline.
    fn take(&mut self, link: LinkType, p: &Packet<'_>) -> Result<(), String> {
        let Some(seg) = self.seg.as_mut() else {
            return Err("no open segment".into());
        };
        let ts = p.ts_ns();
        let offset = seg.offset;
        seg.w
            .write_packet(ts, p.len, p.data)
            .map_err(|e| format!("writing {}: {e}", seg.path.display()))?;
        seg.offset += 16 + p.data.len() as u64;
        let source = seg.source;
        let rotate = seg.offset >= self.opts.rotate_bytes;
        self.pipeline
            .process(link, ts, PacketRef::new(source, offset), p.data);
        self.report.packets += 1;
        self.report.bytes += p.data.len() as u64;
        self.c.packets.fetch_add(1, Ordering::Relaxed);
        self.c
            .bytes
            .fetch_add(p.data.len() as u64, Ordering::Relaxed);
        if rotate {
            self.new_segment(link)?;
        }
        Ok(())
    }

    /// One connection to rpcapd: open, capture until stopped or failed.
    fn session(&mut self) -> End {
        let (mut s, mut data, link) = match self.open_session() {
            Ok(x) => x,
            Err(end) => return end,
        };
        let now = now_ns();
        if let Some(mut g) = self.open_gap.take() {
            g.to_ns = Some(now);
            tracing::warn!(
                target_id = %self.t.id,
                iface = %self.t.iface,
                "capture resumed after a gap of {:.1} s ({})",
                g.seconds(now),
                g.reason
            );
            self.report.gaps.push(g);
        }
        if let Err(e) = self.new_segment(link) {
            return End::Output(e);
        }
        self.c.set_state(UnitState::Capturing);
        let mut last_check = Instant::now();
        let mut last_stats = Instant::now();
        let lost_before = self.report.lost;
        loop {
            if self.should_stop() {
                return self.stop_session(s, &mut data, link, lost_before);
            }
            match data.next_packet() {
                Ok(Some(p)) => {
                    if let Err(e) = self.take(link, &p) {
                        return End::Output(e);
                    }
                }
                Ok(None) => {}
                Err(err) => {
                    self.report.lost = lost_before + data.lost();
                    return End::Net { err, started: true };
                }
            }
            if last_check.elapsed() >= Duration::from_secs(1) {
                last_check = Instant::now();
                self.report.lost = lost_before + data.lost();
                self.c.lost.store(self.report.lost, Ordering::Relaxed);
                if let Err(e) = self.checkpoint() {
                    return End::Output(e);
                }
            }
            if last_stats.elapsed() >= self.opts.stats_every {
                last_stats = Instant::now();
                match s.stats() {
                    Ok(st) => {
                        self.c.set_stats(&st);
                        self.report.last_stats = Some(st);
                    }
                    Err(err) => return End::Net { err, started: true },
                }
            }
        }
    }

    /// Connects, opens the interface and starts the capture.
    fn open_session(&self) -> Result<(Session, DataChannel, LinkType), End> {
        let net = |err| End::Net {
            err,
            started: false,
        };
        let mut s = Session::connect(&self.t.client).map_err(net)?;
        let open = s.open(&self.t.iface).map_err(net)?;
        let Some(link) = LinkType::from_dlt(open.linktype) else {
            return Err(End::Output(format!(
                "interface '{}' has link type {}, which voxtap does not decode",
                self.t.iface, open.linktype
            )));
        };
        let data = s.start_capture(&self.opts.capture).map_err(net)?;
        Ok((s, data, link))
    }

    /// Final counters, then a clean end; failures here do not matter any
    /// more.
    fn stop_session(
        &mut self,
        mut s: Session,
        data: &mut DataChannel,
        link: LinkType,
        lost_before: u64,
    ) -> End {
        let sent = s.stats().ok().map(|st| {
            self.c.set_stats(&st);
            self.report.last_stats = Some(st);
            st.server_sent
        });
        let _ = s.end_capture();
        // Packets rpcapd sent before the end are still on their way: keep
        // reading until the last one it counted has come (a quiet moment on
        // a loaded machine is not the end), the channel ends (rpcapd closes
        // a TCP data channel) or the bound passes (UDP loses silently).
        let until = Instant::now() + STOP_DRAIN;
        while Instant::now() < until {
            let all_came = sent.is_none_or(|n| data.last_number() >= n);
            match data.next_packet() {
                Ok(Some(p)) => {
                    if let Err(e) = self.take(link, &p) {
                        return End::Output(e);
                    }
                }
                Ok(None) if all_came => break,
                Ok(None) => {}
                Err(_) => break,
            }
        }
        self.report.lost = lost_before + data.lost();
        self.c.lost.store(self.report.lost, Ordering::Relaxed);
        let _ = s.close();
        End::Stopped
    }

    fn run(&mut self) {
        let policy = &self.opts.reconnect;
        let mut attempts = 0u32;
        let mut backoff = policy.initial_backoff;
        loop {
            if self.should_stop() {
                break;
            }
            self.c
                .set_state(if attempts == 0 && self.report.segments.is_empty() {
                    UnitState::Connecting
                } else {
                    UnitState::Reconnecting
                });
            match self.session() {
                End::Stopped => break,
                End::Output(e) => {
                    self.report.error = Some(e);
                    break;
                }
                End::Net { err, started } => {
                    if started {
                        // The stream ran, then dropped: keep what we have,
                        // open a gap, start the backoff over.
                        if let Err(e) = self.close_segment() {
                            self.report.error = Some(e);
                            break;
                        }
                        attempts = 0;
                        backoff = policy.initial_backoff;
                        tracing::warn!(target_id = %self.t.id, iface = %self.t.iface, "capture dropped: {err}");
                        self.open_gap = Some(Gap {
                            from_ns: now_ns(),
                            to_ns: None,
                            reason: err.to_string(),
                            attempts: 0,
                        });
                    } else if err.is_permanent() {
                        self.report.error = Some(err.to_string());
                        break;
                    }
                    if let Some(g) = self.open_gap.as_mut() {
                        g.attempts += 1;
                    }
                    attempts += 1;
                    if attempts > policy.max_attempts {
                        self.report.error = Some(format!(
                            "gave up after {} attempt(s): {err}",
                            policy.max_attempts
                        ));
                        break;
                    }
                    if !started {
                        tracing::warn!(target_id = %self.t.id, iface = %self.t.iface, "attempt {attempts}/{} failed: {err}; retrying in {backoff:?}", policy.max_attempts);
                    }
                    self.report.reconnects += 1;
                    self.c.reconnects.fetch_add(1, Ordering::Relaxed);
                    self.c.set_state(UnitState::Reconnecting);
                    let until = Instant::now() + backoff;
                    while Instant::now() < until && !self.should_stop() {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    backoff = (backoff * 2).min(policy.max_backoff);
                }
            }
        }
        if let Some(g) = self.open_gap.take() {
            // Never came back: the gap runs to the end of the capture.
            self.report.gaps.push(g);
        }
    }

    fn finish(&mut self) -> Result<(), String> {
        self.close_segment()?;
        self.pipeline.finish();
        write_ended(&mut self.pipeline, &mut self.writer, &mut self.report.calls)
            .map_err(|e| e.to_string())?;
        voxtap_engine::import::write_signalling(
            &mut self.pipeline,
            &mut self.writer,
            None,
            &mut self.report.calls,
        )
        .map_err(|e| e.to_string())?;
        self.report.calls.stats = self.pipeline.stats().clone();
        write_gaps(&self.dir.join("gaps.csv"), &self.report.gaps)
    }
}

fn write_gaps(path: &Path, gaps: &[Gap]) -> Result<(), String> {
    let err = |e: std::io::Error| format!("writing {}: {e}", path.display());
    let f = File::create(path).map_err(err)?;
    let mut w = CsvWriter::new(BufWriter::new(f));
    w.row(["from", "to", "seconds", "attempts", "reason"])
        .map_err(err)?;
    let end = now_ns();
    for g in gaps {
        let seconds = format!("{:.3}", g.seconds(end));
        let attempts = g.attempts.to_string();
        let to = g.to_ns.map(format_ts).unwrap_or_default();
        w.row([
            format_ts(g.from_ns).as_str(),
            to.as_str(),
            seconds.as_str(),
            attempts.as_str(),
            g.reason.as_str(),
        ])
        .map_err(err)?;
    }
    w.into_inner().flush().map_err(err)
}

fn run_unit(t: &Target, opts: &RemoteOptions, c: &Counters, stop: &AtomicBool) -> UnitReport {
    let mut dir = opts.out.clone();
    for part in t.id.split('/') {
        dir.push(safe(part));
    }
    dir.push(safe(&t.iface));
    let base = UnitReport {
        id: t.id.clone(),
        iface: t.iface.clone(),
        dir: dir.clone(),
        ..Default::default()
    };
    let writer = match CallWriter::new(&dir, Vec::new()) {
        Ok(w) if opts.call_files => w,
        Ok(w) => w.without_call_files(),
        Err(e) => {
            c.set_state(UnitState::Failed);
            return UnitReport {
                error: Some(e.to_string()),
                ..base
            };
        }
    };
    let mut u = Unit {
        t,
        opts,
        c,
        stop,
        deadline: opts.duration.map(|d| Instant::now() + d),
        dir,
        pipeline: Pipeline::new(opts.pipeline.clone()),
        writer,
        report: base,
        seg: None,
        open_gap: None,
    };
    u.run();
    if let Err(e) = u.finish() {
        u.report.error.get_or_insert(e);
    }
    let Unit { writer, report, .. } = u;
    let mut report = report;
    if let Err(e) = writer.finish() {
        report.error.get_or_insert(e.to_string());
    }
    c.set_state(if report.error.is_some() {
        UnitState::Failed
    } else {
        UnitState::Done
    });
    tracing::info!("{}", report.summary_line());
    report
}

/// `30s`, `5m`, `1h`, `250ms`, or bare seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("bad duration '{s}' (use 30s, 5m, 1h, 250ms)"))?;
    let secs = match unit.trim() {
        "" | "s" => v,
        "ms" => v / 1000.0,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("bad duration unit in '{s}' (use ms, s, m, h)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("bad duration '{s}'"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpcap_durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_duration("").is_err());
    }
}
