//! The parallel engine: one dispatcher and N media workers, "replicated
//! signalling, sharded media" (docs/architecture.md, "The engine split").
//!
//! The dispatcher (the thread reading the capture) decodes each frame and
//! steers it: UDP that is not SIP goes to the one worker its destination
//! hashes to ([`worker_of`], the `voxtap_common::steer_hash` the XDP program
//! uses too); everything else (SIP on any transport, TCP, SCTP, fragments,
//! RTCP) goes to every worker, in capture order. Each worker runs an
//! unchanged [`Pipeline`] with its own [`crate::calls::CallTable`]: it knows
//! every call and every SDP endpoint, and holds the streams of its share of
//! the media. Sweeps happen at the same global moments in every replica
//! (a Tick in every worker's input), and a call closes only when every
//! replica found it due ([`crate::calls::Agreed`]). The replicas of each
//! ended call are merged ([`crate::calls::Call::merge_replica`]) in
//! [`join`].

mod control;
mod join;
mod owner;
mod shared_hint;
mod steer;
mod tap;
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use crate::calls::{Call, PacketRef};
use crate::pipeline::{ParsedSip, PipelineConfig, PipelineStats};
use crate::signalling::{SignallingSnapshot, Transaction};
use steer::{Steer, Steerer};
use voxtap_proto::decode::{PlainUdp, UdpEnds};
use voxtap_proto::pcapio::LinkType;

pub use control::{
    EngineOptions, LossFilter, OnStart, SignallingParts, WAITING_FACTOR, WorkerGauge,
};
pub use owner::Owners;
pub use worker::{Faults, WorkerTimes, thread_cpu_ns};

/// The media worker (0..n) owning datagrams sent to `dst`: its address and
/// port with the low bit cleared, so that RTP (even port) and its RTCP
/// (the next port) land on the same worker.
pub fn worker_of(dst: SocketAddr, n: usize) -> usize {
    voxtap_common::media_worker(&octets(dst.ip()), dst.port(), n as u32) as usize
}

/// The 16-byte form `voxtap_common`'s hashes take (IPv4 mapped).
fn octets(ip: std::net::IpAddr) -> [u8; 16] {
    match ip {
        std::net::IpAddr::V4(v4) => voxtap_common::v4_mapped(v4.octets()),
        std::net::IpAddr::V6(v6) => v6.octets(),
    }
}

/// Frames per batch handed to a worker, and bytes: a batch is sent when
/// either fills (and at every sweep).
const BATCH_ITEMS: usize = 512;
const BATCH_BYTES: usize = 512 << 10;
/// Batches queued to one worker before the dispatcher waits.
const QUEUE_BATCHES: usize = 16;
/// The same with a media high-water mark (live): a live dispatcher sends a
/// small batch after every reader batch, and the high-water mark in bytes,
/// not this count, decides when a lagging worker's media is dropped; the
/// rest is the reserve for what is never dropped (SIP, RTCP, sweeps,
/// control items), at ~150 batches a second over 25 s of a stalled worker.
const LIVE_QUEUE_BATCHES: usize = 4096;
/// Capture time between sweeps: `CallTable::tick`'s rule.
const SWEEP_EVERY_NS: u64 = 1_000_000_000;

#[derive(Clone, Copy, Debug)]
enum Item {
    Frame {
        link: LinkType,
        ts_ns: u64,
        /// The latest capture time seen so far over all frames (every
        /// replica's clock, so its decisions match the others').
        now_ns: u64,
        pref: PacketRef,
        start: u32,
        len: u32,
    },
    /// A UDP datagram the dispatcher decoded: only its payload is in the
    /// batch (at `udp.at`), and the worker does not decode it again.
    Udp {
        ts_ns: u64,
        now_ns: u64,
        pref: PacketRef,
        frame_len: u32,
        udp: steer::Udp,
        /// SIP the dispatcher parsed: its index in the batch's `sips`.
        sip: Option<u32>,
    },
    Sweep {
        seq: u64,
        now_ns: u64,
    },
    /// Take the next item of the worker's control channel (`control.rs`).
    Control,
}

/// A decoded UDP datagram on its way to a batch.
struct Datagram<'a> {
    ts_ns: u64,
    pref: PacketRef,
    frame_len: u32,
    payload: &'a [u8],
}

/// Frames for one worker, with their bytes; recycled (no allocation per
/// frame once the first batches exist).
#[derive(Default)]
struct Batch {
    items: Vec<Item>,
    bytes: Vec<u8>,
    /// The SIP messages the dispatcher parsed.
    sips: Vec<ParsedSip>,
}

impl Batch {
    /// What it holds while queued, as the high-water mark counts it: the
    /// frames' bytes and the SIP layouts (an SDP shared by `Arc` is counted
    /// by no queue).
    fn queued_bytes(&self) -> u64 {
        (self.bytes.len() + self.sips.len() * std::mem::size_of::<ParsedSip>()) as u64
    }
}

/// What a worker hands back at each sweep and at the end: the calls that
/// ended in its replica.
struct Part {
    worker: usize,
    seq: u64,
    calls: Vec<Call>,
}

/// Counters of the dispatcher.
#[derive(Clone, Copy, Debug, Default)]
pub struct DispatchStats {
    pub frames: u64,
    pub bytes: u64,
    pub malformed: u64,
    /// Frames sent to one worker, and to every worker.
    pub steered: u64,
    pub broadcast: u64,
    pub sweeps: u64,
    /// Batches and sweep markers sent to workers, and replica parts
    /// received: the engine's control traffic.
    pub batches: u64,
    /// CPU time of the thread joining the workers' replicas (ns).
    pub join_cpu_ns: u64,
    /// Control items (live sensor) put in the workers' inputs.
    pub controls: u64,
    /// Destinations many calls' SDP named that are not listed as shared
    /// media ([`shared_hint`]).
    pub unlisted_shared: u64,
    /// SDP endpoints not counted for that because its table was full.
    pub shared_hint_budget_hits: u64,
}

/// What the engine leaves at the end besides the calls.
pub struct Finished {
    /// Worker 0's pipeline counters, with the frame counts and the media
    /// counts of all workers.
    pub stats: PipelineStats,
    pub dispatch: DispatchStats,
    /// Registrations and pings (the same in every replica: taken from one).
    pub signalling: SignallingSnapshot,
    pub transactions: Vec<Transaction>,
    pub floods: Vec<crate::calls::FloodSummary>,
    /// Each worker's thread CPU time and frames.
    pub workers: Vec<WorkerTimes>,
    /// A worker failed (panicked): what it said. The calls are then lost
    /// and the other figures empty.
    pub failure: Option<String>,
    /// Calls whose replicas could not be merged (kept as the first had it).
    pub merge_errors: u64,
    /// Media endpoints many calls' SDP named that are not listed as shared
    /// (each was logged when found).
    pub unlisted_shared: Vec<SocketAddr>,
}

pub struct ParallelEngine {
    n: usize,
    steerer: Steerer,
    now_ns: u64,
    last_sweep_ns: u64,
    seq: u64,
    to_workers: Vec<Sender<Batch>>,
    filling: Vec<Batch>,
    free: Receiver<Batch>,
    /// Merged calls from the joining thread ([`join::run`]).
    ready: Receiver<Vec<Call>>,
    joiner: Option<JoinHandle<(u64, u64)>>,
    handles: Vec<JoinHandle<Result<worker::WorkerEnd, worker::Broken>>>,
    stats: DispatchStats,
    /// A worker is gone (it failed): frames are no longer handed on.
    failed: bool,
    ctl: control::EngineControl,
    /// [`EngineOptions::media_high_water`] (0: never drop).
    high_water: u64,
    /// Per worker: its own media is being dropped (queue above the mark).
    dropping: Vec<bool>,
    /// Per worker: held at a sweep by another, allowed a longer queue
    /// (`control::WAITING_FACTOR`) until it is back under the mark.
    excused: Vec<bool>,
    media_dropped: Vec<u64>,
    /// Endpoints that look like a media server's single port.
    hints: shared_hint::SharedHints,
}

impl ParallelEngine {
    /// `n` media workers (at least 1) running replicas of `cfg`'s pipeline.
    /// A tap (HEP export) gets each SIP message, RTCP datagram and ended
    /// call once, as one pipeline's would ([`tap`]).
    pub fn new(cfg: PipelineConfig, n: usize) -> Self {
        Self::build(cfg, n, EngineOptions::default())
    }

    fn build(mut cfg: PipelineConfig, n: usize, opts: EngineOptions) -> Self {
        let n = n.max(1);
        let tap = cfg.tap.take();
        let queue = if opts.media_high_water > 0 {
            LIVE_QUEUE_BATCHES
        } else {
            QUEUE_BATCHES
        };
        let (free_tx, free) = bounded(n * (QUEUE_BATCHES + 2));
        let (parts_tx, parts) = unbounded();
        let (ready_tx, ready) = unbounded();
        // Made before the workers' taps: an exporter sharing its queues
        // between taps starts them once.
        let join_tap = tap.as_ref().map(|f| f.make());
        // Joining is off the reading thread: it merges every call's
        // replicas (packet references included).
        let joiner = std::thread::Builder::new()
            .name("voxtap-join".into())
            .spawn(move || join::run(n, parts, ready_tx, join_tap))
            .expect("spawning the joining thread");
        let meeting = Arc::new(worker::Meeting::new(n));
        let mut to_workers = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        let (ctl, links) = control::EngineControl::new(n, &opts);
        for (me, link) in links.into_iter().enumerate() {
            let (tx, rx) = bounded(queue);
            to_workers.push(tx);
            let mut cfg = cfg.clone();
            cfg.tap = tap.as_ref().map(|f| tap::for_worker(f, me));
            let w = worker::Worker {
                me,
                n,
                cfg,
                input: rx,
                free: free_tx.clone(),
                parts: parts_tx.clone(),
                meeting: meeting.clone(),
                link,
            };
            handles.push(
                std::thread::Builder::new()
                    .name(format!("voxtap-media-{me}"))
                    .spawn(move || w.run())
                    .expect("spawning a media worker thread"),
            );
        }
        ParallelEngine {
            n,
            steerer: Steerer::new(&cfg, n),
            now_ns: 0,
            last_sweep_ns: 0,
            seq: 0,
            to_workers,
            filling: (0..n).map(|_| Batch::default()).collect(),
            free,
            ready,
            joiner: Some(joiner),
            handles,
            stats: DispatchStats::default(),
            failed: false,
            ctl,
            high_water: opts.media_high_water,
            dropping: vec![false; n],
            excused: vec![false; n],
            media_dropped: vec![0; n],
            hints: shared_hint::SharedHints::default(),
        }
    }

    pub fn workers(&self) -> usize {
        self.n
    }

    /// A worker failed (or stopped because another did): frames are no
    /// longer handed on; `finish` says why.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// One captured frame.
    pub fn process(&mut self, link: LinkType, ts_ns: u64, pref: PacketRef, frame: &[u8]) {
        self.stats.frames += 1;
        self.stats.bytes += frame.len() as u64;
        if self.failed {
            return;
        }
        match self.steerer.plain(link, ts_ns, frame) {
            Some(p) => self.plain(ts_ns, pref, frame.len() as u32, &p),
            None => self.other(link, ts_ns, pref, frame),
        }
    }

    /// A plain UDP datagram (nearly every frame): steered from the frame's
    /// bytes, its item built in the batch. Inline, as everything it calls:
    /// nothing large is moved through returns.
    #[inline(always)]
    fn plain(&mut self, ts_ns: u64, pref: PacketRef, frame_len: u32, p: &PlainUdp) {
        let v = self.steerer.plain_verdict(p);
        self.tick(ts_ns);
        let d = Datagram {
            ts_ns,
            pref,
            frame_len,
            payload: p.payload,
        };
        self.route(&d, &p.ends, v);
    }

    /// Every other frame: decoded in full.
    #[inline(never)]
    fn other(&mut self, link: LinkType, ts_ns: u64, pref: PacketRef, frame: &[u8]) {
        let steer = self.steerer.decoded(link, ts_ns, pref, frame);
        if let Steer::Malformed = steer {
            self.stats.malformed += 1;
            // Only the pipeline counts it: worker 0.
            self.push(0, link, ts_ns, pref, frame);
            return;
        }
        self.tick(ts_ns);
        match steer {
            Steer::Udp(udp) => {
                let d = Datagram {
                    ts_ns,
                    pref,
                    frame_len: frame.len() as u32,
                    payload: &frame[udp.at as usize..(udp.at + udp.len) as usize],
                };
                self.route(&d, &udp.ends, udp.verdict);
            }
            Steer::Raw | Steer::Malformed => {
                self.stats.broadcast += 1;
                for w in 0..self.n {
                    self.push(w, link, ts_ns, pref, frame);
                }
            }
        }
    }

    /// The capture clock, and a sweep when one is due.
    #[inline(always)]
    fn tick(&mut self, ts_ns: u64) {
        self.now_ns = self.now_ns.max(ts_ns);
        if self.now_ns.saturating_sub(self.last_sweep_ns) >= SWEEP_EVERY_NS {
            self.last_sweep_ns = self.now_ns;
            self.sweep();
        }
    }

    /// A decoded datagram to its owner, or to every worker.
    #[inline(always)]
    fn route(&mut self, d: &Datagram, ends: &UdpEnds, v: steer::Verdict) {
        let owner = usize::from(v.owner);
        if !v.steered {
            self.stats.broadcast += 1;
            // Parsed here once, not in each replica.
            let sip = v.sip_like.then(|| ParsedSip::of(d.payload)).flatten();
            if let Some(p) = &sip {
                self.hint(d, ends, p);
            }
            for w in 0..self.n {
                self.push_udp(w, d, ends, v, sip.as_ref());
            }
        } else if self.dropping[owner] {
            self.media_dropped[owner] += 1;
        } else {
            self.stats.steered += 1;
            self.push_udp(owner, d, ends, v, None);
        }
    }

    /// An SDP's endpoints counted toward suspected shared media (only
    /// where there are workers to spread over).
    #[inline(never)]
    fn hint(&mut self, d: &Datagram, ends: &UdpEnds, sip: &ParsedSip) {
        let Some(sdp) = sip.sdp.as_deref().filter(|_| self.n > 1) else {
            return;
        };
        let msg = sip.layout.message(d.payload);
        if let Some(id) = msg.as_ref().and_then(|m| m.call_id()) {
            let owners = self.steerer.owners();
            self.hints
                .observe(self.now_ns, id, ends.src().ip(), sdp, owners);
        }
    }

    /// A decoded datagram to worker `w`: its payload only. Inline: the item
    /// is then built in place rather than moved through calls.
    #[inline(always)]
    fn push_udp(
        &mut self,
        w: usize,
        d: &Datagram,
        ends: &UdpEnds,
        verdict: steer::Verdict,
        sip: Option<&ParsedSip>,
    ) {
        let b = &mut self.filling[w];
        let at = b.bytes.len() as u32;
        b.bytes.extend_from_slice(d.payload);
        let sip = sip.map(|l| {
            b.sips.push(l.clone());
            (b.sips.len() - 1) as u32
        });
        b.items.push(Item::Udp {
            ts_ns: d.ts_ns,
            now_ns: self.now_ns,
            pref: d.pref,
            frame_len: d.frame_len,
            udp: steer::Udp {
                ends: *ends,
                at,
                len: d.payload.len() as u32,
                verdict,
            },
            sip,
        });
        if b.items.len() >= BATCH_ITEMS || b.bytes.len() >= BATCH_BYTES {
            self.send(w);
        }
    }

    fn push(&mut self, w: usize, link: LinkType, ts_ns: u64, pref: PacketRef, frame: &[u8]) {
        let b = &mut self.filling[w];
        let start = b.bytes.len() as u32;
        b.bytes.extend_from_slice(frame);
        b.items.push(Item::Frame {
            link,
            ts_ns,
            now_ns: self.now_ns,
            pref,
            start,
            len: frame.len() as u32,
        });
        if b.items.len() >= BATCH_ITEMS || b.bytes.len() >= BATCH_BYTES {
            self.send(w);
        }
    }

    fn send(&mut self, w: usize) {
        let fresh = self.free.try_recv().unwrap_or_default();
        let full = std::mem::replace(&mut self.filling[w], fresh);
        if full.items.is_empty() {
            return;
        }
        self.stats.batches += 1;
        self.note_queued(w, full.queued_bytes());
        // A worker that is gone has failed (or stopped because another
        // did); `finish` reports it.
        if self.to_workers[w].send(full).is_err() {
            self.failed = true;
        }
    }

    /// A sweep marker to every worker, and every batch sent: each replica
    /// must reach it for the sweep's meeting to happen.
    fn sweep(&mut self) {
        self.seq += 1;
        self.stats.sweeps += 1;
        for w in 0..self.n {
            self.filling[w].items.push(Item::Sweep {
                seq: self.seq,
                now_ns: self.now_ns,
            });
            self.send(w);
        }
    }

    /// Calls (and media-only records) whose every replica has ended, merged,
    /// in the order of the sweeps that closed them.
    pub fn drain_ended(&mut self) -> Vec<Call> {
        self.ready.try_iter().flatten().collect()
    }

    /// End of the capture: every worker closes its open calls (as
    /// `Pipeline::finish`), the last parts are joined (then taken with
    /// [`Self::drain_ended`]), and the workers' threads end.
    pub fn finish(mut self) -> (Vec<Call>, Finished) {
        for w in 0..self.n {
            self.send(w);
        }
        self.to_workers.clear();
        let mut ends = Vec::with_capacity(self.n);
        let mut failure = None;
        for (w, h) in self.handles.drain(..).enumerate() {
            match h.join() {
                Ok(Ok(end)) => ends.push(end),
                // It stopped because another failed.
                Ok(Err(worker::Broken)) => {}
                Err(p) => {
                    failure.get_or_insert_with(|| {
                        format!("media worker {w} failed: {}", panic_text(&*p))
                    });
                }
            }
        }
        // Every worker is gone, so are the senders of parts: the joining
        // thread ends once it has merged the last ones.
        let (merge_errors, join_cpu_ns) = self
            .joiner
            .take()
            .map_or((0, 0), |j| j.join().unwrap_or((0, 0)));
        self.stats.join_cpu_ns = join_cpu_ns;
        let calls: Vec<Call> = self.ready.try_iter().flatten().collect();
        if ends.len() < self.n {
            let failure = failure.unwrap_or_else(|| "a media worker stopped".into());
            return (Vec::new(), self.failed_end(failure));
        }
        let mut fin = self.finished(ends);
        fin.merge_errors = merge_errors;
        (calls, fin)
    }

    fn finished(&self, ends: Vec<worker::WorkerEnd>) -> Finished {
        let mut stats = ends[0].stats.clone();
        stats.frames = self.stats.frames;
        stats.bytes = self.stats.bytes;
        stats.malformed = self.stats.malformed;
        stats.media = ends.iter().map(|e| e.stats.media).sum();
        stats.other_udp = ends.iter().map(|e| e.stats.other_udp).sum();
        let workers = ends.iter().map(|e| e.times).collect();
        let first = ends.into_iter().next().expect("at least one worker");
        Finished {
            stats,
            dispatch: self.dispatch_stats(),
            signalling: first.signalling,
            transactions: first.transactions,
            floods: first.floods,
            workers,
            failure: None,
            merge_errors: 0,
            unlisted_shared: self.hints.found().to_vec(),
        }
    }

    /// The dispatcher's counters, with what the shared-endpoint hints found.
    fn dispatch_stats(&self) -> DispatchStats {
        DispatchStats {
            unlisted_shared: self.hints.found().len() as u64,
            shared_hint_budget_hits: self.hints.budget_hits,
            ..self.stats
        }
    }

    /// What is left when a worker failed: the dispatcher's counts only.
    fn failed_end(&self, failure: String) -> Finished {
        let stats = PipelineStats {
            frames: self.stats.frames,
            bytes: self.stats.bytes,
            malformed: self.stats.malformed,
            ..Default::default()
        };
        Finished {
            stats,
            dispatch: self.dispatch_stats(),
            signalling: SignallingSnapshot::default(),
            transactions: Vec::new(),
            floods: Vec::new(),
            workers: Vec::new(),
            failure: Some(failure),
            merge_errors: 0,
            unlisted_shared: self.hints.found().to_vec(),
        }
    }
}

/// What a panic said.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panicked".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::{Agreed, DueSet};

    const S: u64 = 1_000_000_000;

    /// RTP (even port) and its RTCP (the next, odd port) go to one worker,
    /// the one the common hash names for the even port.
    #[test]
    fn rtp_and_its_rtcp_share_a_worker() {
        let rtp: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let rtcp: SocketAddr = "192.0.2.1:4001".parse().unwrap();
        let addr = voxtap_common::v4_mapped([192, 0, 2, 1]);
        for n in 1..=8 {
            let want = (voxtap_common::steer_hash(&addr, 4000) % n as u32) as usize;
            assert_eq!(worker_of(rtp, n), if n == 1 { 0 } else { want });
            assert_eq!(worker_of(rtcp, n), worker_of(rtp, n));
        }
    }

    /// A media server's single port that 40 synthetic calls answer on is
    /// named once as an unlisted shared endpoint: not when it is listed,
    /// not when every callee answers on its own port, not with one worker.
    #[test]
    fn a_media_servers_port_not_listed_is_named() {
        let server: std::net::SocketAddrV4 = "192.0.2.50:16000".parse().unwrap();
        let run = |media_server, listed: bool, n| {
            let cfg = crate::synth::SynthConfig {
                calls: 40,
                seconds: 1,
                media_server,
                ..Default::default()
            };
            let mut bytes = Vec::new();
            crate::synth::generate(&cfg, &mut bytes).unwrap();
            let mut pc = PipelineConfig::default();
            if listed {
                pc.shared_media = vec![server.into()];
            }
            let mut e = ParallelEngine::new(pc, n);
            let cursor = std::io::Cursor::new(&bytes);
            let mut r = voxtap_proto::pcapio::PcapReader::new(cursor).unwrap();
            while let Some(rec) = r.next_packet().unwrap() {
                e.process(rec.link, rec.ts_ns, PacketRef::new(0, rec.offset), rec.data);
            }
            let (calls, fin) = e.finish();
            assert_eq!(calls.len(), 40);
            assert_eq!(
                fin.dispatch.unlisted_shared,
                fin.unlisted_shared.len() as u64
            );
            fin.unlisted_shared
        };
        assert_eq!(run(Some(server), false, 2), [SocketAddr::from(server)]);
        assert!(run(Some(server), true, 2).is_empty());
        assert!(run(None, false, 2).is_empty());
        assert!(run(Some(server), false, 1).is_empty());
    }

    /// A worker that panics does not leave the others waiting for it at
    /// the sweep meeting (they would wait for ever at a plain barrier): the
    /// engine ends and says which worker failed.
    #[test]
    fn a_failing_worker_ends_the_engine_with_an_error_not_a_hang() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut cfg = PipelineConfig::default();
            cfg.engine_faults.panic_at_sweep = Some((1, 3));
            let mut e = ParallelEngine::new(cfg, 3);
            let mut frame = Vec::new();
            let mut rtp = [0u8; 172];
            rtp[0] = 0x80;
            let src = (std::net::Ipv4Addr::new(10, 0, 0, 1), 4000);
            // 10 s of RTP to 16 destinations: every worker has some.
            for i in 0..500u64 {
                for d in 0..16u8 {
                    let dst = (std::net::Ipv4Addr::new(10, 0, 1, d), 5000);
                    crate::synth::udp_frame(&mut frame, src, dst, &rtp);
                    let pref = PacketRef::new(0, i * 16 + u64::from(d));
                    e.process(LinkType::Ethernet, S + i * 20_000_000, pref, &frame);
                }
            }
            let _ = e.drain_ended();
            let (calls, fin) = e.finish();
            let _ = tx.send((calls.len(), fin.failure));
        });
        let (calls, failure) = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the engine hung after a worker failed");
        let failure = failure.expect("no failure reported");
        assert!(
            failure.contains("media worker 1 failed") && failure.contains("sweep 3"),
            "{failure}"
        );
        assert_eq!(calls, 0);
    }

    /// A call closes only when every replica found it due; a media-only
    /// record when no replica holding it still has it live.
    #[test]
    fn replicas_agree_on_what_closes() {
        let pair = |p: u16| {
            let a: SocketAddr = format!("10.0.0.1:{p}").parse().unwrap();
            let b: SocketAddr = "10.0.0.2:4000".parse().unwrap();
            (a, b)
        };
        let w0 = DueSet {
            calls: vec![b"a".as_slice().into(), b"b".as_slice().into()],
            media_only_due: vec![pair(1), pair(2)],
            media_only_live: vec![pair(3)],
            ..Default::default()
        };
        let w1 = DueSet {
            calls: vec![b"b".as_slice().into(), b"c".as_slice().into()],
            media_only_due: vec![pair(3)],
            media_only_live: vec![pair(2)],
            ..Default::default()
        };
        let agreed = Agreed::from_replicas(&[&w0, &w1]);
        assert_eq!(
            agreed.calls.iter().map(|c| &c[..]).collect::<Vec<_>>(),
            vec![b"b".as_slice()]
        );
        assert_eq!(agreed.media_only.len(), 1);
        assert!(agreed.media_only.contains(&pair(1)));
    }
}
