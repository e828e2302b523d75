//! Control items: what a live sensor asks of the parallel engine besides
//! frames (docs/live.md, "Pipeline workers").
//!
//! A control item travels to each worker on its own channel, and a marker
//! ([`super::Item::Control`]) in the worker's frame input says when to take
//! it: every replica applies it at the same point of its frame stream, as
//! it does a sweep. Workers answer on one reply channel; the dispatcher
//! reads the answers when the sensor asks ([`ParallelEngine::poll`] is
//! called by every method that reads them).
//!
//! - idle ticks: a sweep at the live clock's time when no frame comes;
//! - TLS key log lines: to every replica (each decrypts its own flows);
//! - capture loss: charged in every replica to the calls that match; the
//!   joiner keeps the largest charge of a call's replicas
//!   (`Call::merge_replica`), so a charge is counted once;
//! - the kernel's endpoint map: every replica tracks its endpoints (the SDP
//!   ones, the same everywhere, and those it learned from media: latching);
//!   the dispatcher keeps how many replicas hold each and reports an
//!   endpoint added when the first one does, removed when the last one
//!   lets it go (the union of the replicas' sets);
//! - live snapshots: each worker builds one of its replica (its streams,
//!   with their windows), the dispatcher merges them per call;
//! - registrations, pings, transactions and floods: from worker 0;
//! - per-worker figures (frames, busy time, open calls) in atomics.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, unbounded};

use super::{Item, ParallelEngine, SWEEP_EVERY_NS};
use crate::calls::{EndpointEvent, FloodSummary};
use crate::live_calls::{LiveCall, LiveSnapshot, LiveSnapshots};
use crate::pipeline::Pipeline;
use crate::signalling::{SignallingSnapshot, Transaction};

/// Which endpoints a loss concerns (None: every open call's).
pub type LossFilter = Arc<dyn Fn(SocketAddr) -> bool + Send + Sync>;

/// Run at the start of each worker thread with its index (a sensor pins it
/// to a core).
pub type OnStart = Arc<dyn Fn(usize) + Send + Sync>;

/// Registrations and pings as they are now, the transactions outside calls
/// that finished and the floods summarised since the last hand-over.
pub type SignallingParts = (SignallingSnapshot, Vec<Transaction>, Vec<FloodSummary>);

/// What the engine does for a live sensor besides rebuilding calls.
#[derive(Clone, Default)]
pub struct EngineOptions {
    /// Keep the endpoint events for [`ParallelEngine::drain_endpoint_events`].
    pub track_endpoints: bool,
    /// Live snapshots carry at most this many calls (0: none asked).
    pub live_max_calls: usize,
    pub on_start: Option<OnStart>,
    /// Bytes queued to one media worker above which the dispatcher drops
    /// that worker's own media (steered UDP; never SIP, RTCP or anything
    /// broadcast) and counts it ([`ParallelEngine::media_dropped`]), so a
    /// stalled worker does not stall the dispatcher and through it every
    /// other worker. A worker waiting at a sweep for a stalled one is
    /// allowed [`WAITING_FACTOR`] times as much. 0: never drop, the
    /// dispatcher waits (import).
    pub media_high_water: u64,
}

/// How much more a worker held at a sweep meeting may have queued before
/// its media is dropped too: its backlog is another worker's stall, and it
/// catches up once that one arrives.
pub const WAITING_FACTOR: u64 = 64;

pub(super) enum Control {
    TlsKeylog(Arc<[u8]>),
    CaptureLoss { n: u64, only: Option<LossFilter> },
    Snapshot { seq: u64, now_ns: u64 },
    Signalling,
}

enum Reply {
    Endpoints(Vec<EndpointEvent>),
    Snapshot { seq: u64, snap: LiveSnapshot },
    Signalling(SignallingParts),
}

/// One worker's figures, updated once per batch.
#[derive(Debug, Default)]
pub struct WorkerGauge {
    /// Frames run through its pipeline (broadcast ones included).
    pub frames: AtomicU64,
    /// Wall time spent on batches, in ns.
    pub busy_ns: AtomicU64,
    /// Calls open in its replica.
    pub open_calls: AtomicU64,
    /// Bytes of batches queued to it and not yet handled (added by the
    /// dispatcher per batch sent, taken off by the worker per batch done).
    pub queued_bytes: AtomicU64,
    /// 1 while it waits at a sweep meeting for the other workers.
    pub at_meeting: AtomicU64,
}

/// The dispatcher's side.
pub(super) struct EngineControl {
    to_workers: Vec<Sender<Control>>,
    replies: Receiver<Reply>,
    gauges: Arc<[WorkerGauge]>,
    /// Replicas holding each endpoint.
    holders: HashMap<SocketAddr, u32>,
    events: Vec<EndpointEvent>,
    snap_seq: u64,
    /// The parts of the snapshot asked for last.
    snap_parts: Vec<LiveSnapshot>,
    snap_ready: Option<LiveSnapshot>,
    snap_asked: bool,
    signalling: Vec<SignallingParts>,
    /// Signalling tables asked for and not yet answered.
    sig_pending: u64,
}

/// A worker's side.
pub(super) struct WorkerLink {
    input: Receiver<Control>,
    replies: Sender<Reply>,
    gauges: Arc<[WorkerGauge]>,
    opts: EngineOptions,
    snaps: Option<LiveSnapshots>,
    events: Vec<EndpointEvent>,
    batch_started: Option<Instant>,
}

impl EngineControl {
    pub fn new(n: usize, opts: &EngineOptions) -> (Self, Vec<WorkerLink>) {
        let (reply_tx, replies) = unbounded();
        let gauges: Arc<[WorkerGauge]> = (0..n).map(|_| WorkerGauge::default()).collect();
        let mut to_workers = Vec::with_capacity(n);
        let mut links = Vec::with_capacity(n);
        for _ in 0..n {
            let (tx, rx) = unbounded();
            to_workers.push(tx);
            links.push(WorkerLink {
                input: rx,
                replies: reply_tx.clone(),
                gauges: gauges.clone(),
                opts: opts.clone(),
                snaps: (opts.live_max_calls > 0).then(|| LiveSnapshots::new(opts.live_max_calls)),
                events: Vec::new(),
                batch_started: None,
            });
        }
        let ctl = EngineControl {
            to_workers,
            replies,
            gauges,
            holders: HashMap::new(),
            events: Vec::new(),
            snap_seq: 0,
            snap_parts: Vec::new(),
            snap_ready: None,
            snap_asked: false,
            signalling: Vec::new(),
            sig_pending: 0,
        };
        (ctl, links)
    }

    /// Counts an endpoint event of one replica; passes on the union's.
    fn endpoint(&mut self, ev: EndpointEvent) {
        match ev {
            EndpointEvent::Added(ep) => {
                let c = self.holders.entry(ep).or_insert(0);
                *c += 1;
                if *c == 1 {
                    self.events.push(ev);
                }
            }
            EndpointEvent::Removed(ep) => {
                let Some(c) = self.holders.get_mut(&ep) else {
                    return;
                };
                *c = c.saturating_sub(1);
                if *c == 0 {
                    self.holders.remove(&ep);
                    self.events.push(ev);
                }
            }
        }
    }

    fn snapshot_part(&mut self, seq: u64, snap: LiveSnapshot, n: usize) {
        if seq != self.snap_seq {
            return;
        }
        self.snap_parts.push(snap);
        if self.snap_parts.len() == n {
            let parts = std::mem::take(&mut self.snap_parts);
            self.snap_ready = Some(merge_snapshots(parts));
        }
    }
}

impl WorkerLink {
    /// At the start of the worker's thread.
    pub fn start(&self, me: usize, p: &mut Pipeline) {
        if let Some(f) = &self.opts.on_start {
            f(me);
        }
        if self.opts.track_endpoints {
            p.calls_mut().track_endpoints();
        }
    }

    /// A batch of `bytes` handled: off the worker's queue.
    pub fn dequeued(&self, me: usize, bytes: u64) {
        self.gauges[me]
            .queued_bytes
            .fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Entering (true) or leaving a sweep meeting.
    pub fn at_meeting(&self, me: usize, waiting: bool) {
        self.gauges[me]
            .at_meeting
            .store(u64::from(waiting), Ordering::Relaxed);
    }

    pub fn batch_started(&mut self) {
        self.batch_started = Some(Instant::now());
    }

    /// After each batch: the figures, and the endpoint events to the
    /// dispatcher.
    pub fn batch_done(&mut self, me: usize, p: &mut Pipeline, frames: u64) {
        let g = &self.gauges[me];
        g.frames.store(frames, Ordering::Relaxed);
        if let Some(t) = self.batch_started.take() {
            g.busy_ns
                .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
        g.open_calls.store(p.open_calls() as u64, Ordering::Relaxed);
        if self.opts.track_endpoints {
            p.calls_mut().drain_endpoint_events(&mut self.events);
            if !self.events.is_empty() {
                let evs = std::mem::take(&mut self.events);
                let _ = self.replies.send(Reply::Endpoints(evs));
            }
        }
    }

    /// A control marker in the frame input: its item is on the control
    /// channel (sent before the marker).
    pub fn handle(
        &mut self,
        p: &mut Pipeline,
        transactions: &mut Vec<Transaction>,
        floods: &mut Vec<FloodSummary>,
    ) {
        let Ok(c) = self.input.recv() else { return };
        match c {
            Control::TlsKeylog(bytes) => p.add_tls_keylog(&bytes),
            Control::CaptureLoss { n, only: None } => p.calls_mut().note_capture_loss(n),
            Control::CaptureLoss { n, only: Some(f) } => {
                p.calls_mut().note_capture_loss_where(n, |ep| f(ep));
            }
            Control::Snapshot { seq, now_ns } => {
                let Some(snaps) = self.snaps.as_mut() else {
                    return;
                };
                p.calls_mut().advance(now_ns);
                let snap = snaps.snapshot(p.calls().open(), p.calls().now_ns());
                let _ = self.replies.send(Reply::Snapshot { seq, snap });
            }
            Control::Signalling => {
                // Only worker 0 is asked; the others drop theirs at sweeps.
                transactions.extend(p.drain_transactions());
                floods.extend(p.drain_floods());
                let parts = (
                    p.signalling().snapshot(),
                    std::mem::take(transactions),
                    std::mem::take(floods),
                );
                let _ = self.replies.send(Reply::Signalling(parts));
            }
        }
    }
}

impl ParallelEngine {
    /// `n` media workers running replicas of `cfg`'s pipeline, with what a
    /// live sensor needs ([`EngineOptions`]).
    pub fn with_options(
        cfg: crate::pipeline::PipelineConfig,
        n: usize,
        opts: EngineOptions,
    ) -> Self {
        Self::build(cfg, n, opts)
    }

    /// Sends every batch that has frames: a live sensor calls this after
    /// each batch it read, so frames do not wait for a batch to fill.
    pub fn flush(&mut self) {
        for w in 0..self.n {
            if !self.filling[w].items.is_empty() {
                self.send(w);
            }
        }
        self.update_dropping();
    }

    /// No frame came for a while: capture time moves to `now_ns` (the
    /// live clock) and a sweep runs when one is due, as with frames.
    pub fn idle_tick(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
        if self.now_ns.saturating_sub(self.last_sweep_ns) >= SWEEP_EVERY_NS {
            self.last_sweep_ns = self.now_ns;
            self.sweep();
        }
        self.flush();
    }

    /// Capture time: the latest frame's or idle tick's.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// More bytes of a followed key log: every replica gets them.
    pub fn add_tls_keylog(&mut self, bytes: &[u8]) {
        let bytes: Arc<[u8]> = bytes.into();
        self.broadcast(|| Control::TlsKeylog(bytes.clone()));
    }

    /// The capture lost `n` frames now: charged to every open call, or
    /// with `only` to the calls with a stream or SDP endpoint it accepts
    /// (`CallTable::note_capture_loss_where`), in every replica.
    pub fn note_capture_loss(&mut self, n: u64, only: Option<LossFilter>) {
        self.broadcast(|| Control::CaptureLoss {
            n,
            only: only.clone(),
        });
    }

    /// Changes to the union of the replicas' endpoints since the last call
    /// (needs [`EngineOptions::track_endpoints`]).
    pub fn drain_endpoint_events(&mut self, out: &mut Vec<EndpointEvent>) {
        self.poll();
        out.append(&mut self.ctl.events);
    }

    /// Asks every worker for its part of a live snapshot at the current
    /// capture time; false (nothing asked) while the last one asked is not
    /// complete and taken: at most one is in flight, however slow a worker.
    pub fn request_snapshot(&mut self) -> bool {
        self.poll();
        if self.ctl.snap_asked {
            return false;
        }
        self.ctl.snap_seq += 1;
        self.ctl.snap_parts.clear();
        self.ctl.snap_asked = true;
        let (seq, now_ns) = (self.ctl.snap_seq, self.now_ns);
        self.broadcast(|| Control::Snapshot { seq, now_ns });
        true
    }

    /// The snapshot asked for, once every worker's part is in and merged.
    pub fn take_snapshot(&mut self) -> Option<LiveSnapshot> {
        self.poll();
        let s = self.ctl.snap_ready.take();
        if s.is_some() {
            self.ctl.snap_asked = false;
        }
        s
    }

    /// Asks worker 0 for the signalling tables ([`Self::take_signalling`]).
    pub fn request_signalling(&mut self) {
        self.ctl.sig_pending += 1;
        let _ = self.ctl.to_workers[0].send(Control::Signalling);
        self.push_control(0);
        self.flush();
    }

    pub fn take_signalling(&mut self) -> Vec<SignallingParts> {
        self.poll();
        std::mem::take(&mut self.ctl.signalling)
    }

    /// [`Self::take_signalling`] once every table asked for is in (before
    /// [`Self::finish`], which would drop an answer still on its way), or
    /// what is in after `timeout`.
    pub fn take_signalling_wait(&mut self, timeout: std::time::Duration) -> Vec<SignallingParts> {
        self.flush();
        let deadline = Instant::now() + timeout;
        self.poll();
        while self.ctl.sig_pending > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.ctl.replies.recv_timeout(left) {
                Ok(r) => self.on_reply(r),
                Err(_) => break,
            }
        }
        std::mem::take(&mut self.ctl.signalling)
    }

    /// Each worker's figures.
    pub fn gauges(&self) -> Arc<[WorkerGauge]> {
        self.ctl.gauges.clone()
    }

    /// A batch of `bytes` on its way to worker `w`.
    pub(super) fn note_queued(&self, w: usize, bytes: u64) {
        self.ctl.gauges[w]
            .queued_bytes
            .fetch_add(bytes, Ordering::Relaxed);
    }

    /// Whether each worker's own media is dropped until the next look: its
    /// queue is above the high-water mark. A worker seen waiting at a sweep
    /// meeting with more than the mark queued is excused until its queue is
    /// back under the mark (its backlog is the stalled worker's doing, and
    /// it is still working it off after the meeting): its limit is then
    /// [`WAITING_FACTOR`] times the mark. Once per flush, never per frame.
    pub(super) fn update_dropping(&mut self) {
        let hw = self.high_water;
        if hw == 0 {
            return;
        }
        for (w, g) in self.ctl.gauges.iter().enumerate() {
            let queued = g.queued_bytes.load(Ordering::Relaxed);
            let waiting = g.at_meeting.load(Ordering::Relaxed) != 0;
            if queued <= hw {
                self.excused[w] = false;
            } else if waiting {
                self.excused[w] = true;
            }
            let limit = if self.excused[w] {
                hw.saturating_mul(WAITING_FACTOR)
            } else {
                hw
            };
            let drop = queued > limit;
            if drop && !self.dropping[w] {
                tracing::warn!(
                    worker = w,
                    queued,
                    limit,
                    "a media worker is behind: its media is dropped (counted, charged to its calls) until it catches up"
                );
            }
            self.dropping[w] = drop;
        }
    }

    /// Each worker's media frames dropped so far because its queue was
    /// above the high-water mark ([`EngineOptions::media_high_water`]).
    pub fn media_dropped(&self) -> &[u64] {
        &self.media_dropped
    }

    /// The rule that gives each datagram that is not SIP to one worker.
    pub fn owners(&self) -> &super::Owners {
        self.steerer.owners()
    }

    /// Calls open (every replica has every call with SIP: worker 0's).
    pub fn open_calls(&self) -> u64 {
        self.ctl.gauges[0].open_calls.load(Ordering::Relaxed)
    }

    /// A control item to every worker, at this point of their inputs.
    fn broadcast(&mut self, item: impl Fn() -> Control) {
        for w in 0..self.n {
            let _ = self.ctl.to_workers[w].send(item());
            self.push_control(w);
        }
        self.flush();
    }

    fn push_control(&mut self, w: usize) {
        self.stats.controls += 1;
        self.filling[w].items.push(Item::Control);
    }

    /// Reads the workers' answers.
    fn poll(&mut self) {
        while let Ok(r) = self.ctl.replies.try_recv() {
            self.on_reply(r);
        }
    }

    fn on_reply(&mut self, r: Reply) {
        let n = self.n;
        {
            match r {
                Reply::Endpoints(evs) => {
                    for ev in evs {
                        self.ctl.endpoint(ev);
                    }
                }
                Reply::Snapshot { seq, snap } => self.ctl.snapshot_part(seq, snap, n),
                Reply::Signalling(s) => {
                    self.ctl.sig_pending = self.ctl.sig_pending.saturating_sub(1);
                    self.ctl.signalling.push(s);
                }
            }
        }
    }
}

/// One snapshot from every replica's: per call (by Call-ID and start), the
/// streams of all (each lives in one replica), RTP packets summed, the
/// longest duration; the rest (SIP) is the same in every replica.
fn merge_snapshots(parts: Vec<LiveSnapshot>) -> LiveSnapshot {
    let mut parts = parts.into_iter();
    let Some(mut first) = parts.next() else {
        return LiveSnapshot::default();
    };
    let mut at: HashMap<(String, u64), usize> = first
        .calls
        .iter()
        .enumerate()
        .map(|(i, c)| ((c.call_id.clone(), c.start_ns), i))
        .collect();
    for p in parts {
        first.build_us = first.build_us.max(p.build_us);
        for c in p.calls {
            match at.get(&(c.call_id.clone(), c.start_ns)) {
                Some(&i) => merge_call(&mut first.calls[i], c),
                None => {
                    at.insert((c.call_id.clone(), c.start_ns), first.calls.len());
                    first.calls.push(c);
                }
            }
        }
    }
    first
}

fn merge_call(into: &mut LiveCall, other: LiveCall) {
    into.duration_s = into.duration_s.max(other.duration_s);
    into.rtp_packets += other.rtp_packets;
    for s in other.streams {
        if !into
            .streams
            .iter()
            .any(|t| (&t.src, &t.dst, t.ssrc) == (&s.src, &s.dst, s.ssrc))
        {
            into.streams.push(s);
        }
    }
    // The streams' distinct codecs, as one replica names them.
    let mut names: Vec<&str> = Vec::new();
    for s in &into.streams {
        if !names.contains(&s.codec.as_str()) {
            names.push(&s.codec);
        }
    }
    if !names.is_empty() {
        into.codec = names.join("/");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::{CallTable, PacketRef};
    use crate::pipeline::PipelineConfig;
    use crate::synth::{SynthConfig, generate};
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Duration;
    use voxtap_proto::pcapio::{LinkType, PcapReader};

    /// Media endpoints on "ring" 2 of 4, as the sensor's XDP steering names
    /// them.
    fn on_ring_2(ep: SocketAddr) -> bool {
        let addr = match ep.ip() {
            std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            std::net::IpAddr::V6(v6) => v6.octets(),
        };
        voxtap_common::steer_ring(&addr, ep.port(), 4) == 2
    }

    fn held(set: &mut BTreeSet<SocketAddr>, events: &[EndpointEvent]) {
        for e in events {
            match e {
                EndpointEvent::Added(a) => assert!(set.insert(*a), "{a} added twice"),
                EndpointEvent::Removed(a) => assert!(set.remove(a), "{a} removed, not held"),
            }
        }
    }

    /// Waits (bounded) for a snapshot asked of every worker: once it is in,
    /// every worker has handled its input up to the request.
    fn round_trip(e: &mut ParallelEngine) -> LiveSnapshot {
        assert!(e.request_snapshot());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = e.take_snapshot() {
                return s;
            }
            assert!(Instant::now() < deadline, "no snapshot from the workers");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Per call: RTP packets, streams, and each stream's (dst, packets).
    type CallFigures = BTreeMap<String, (u64, usize, BTreeSet<(String, u64)>)>;

    fn by_call(calls: &[crate::live_calls::LiveCall]) -> CallFigures {
        calls
            .iter()
            .map(|c| {
                let streams = c
                    .streams
                    .iter()
                    .map(|s| (s.dst.clone(), s.packets))
                    .collect();
                (c.call_id.clone(), (c.rtp_packets, c.streams.len(), streams))
            })
            .collect()
    }

    /// Three workers against one table, on the same synthetic calls: at the
    /// same point of the capture the merged live snapshot has the single
    /// table's calls, streams and counts; the endpoints the engine reports
    /// held are the single table's; a media ring's loss and a signalling
    /// loss charged there end up in each call's capture_loss exactly as the
    /// single table charges them (not once per replica).
    #[test]
    fn live_controls_match_one_table() {
        let mut bytes = Vec::new();
        let cfg = SynthConfig {
            calls: 12,
            seconds: 4,
            ramp_seconds: 1,
            loss_pct: 0.0,
            jitter_ms: 0.0,
            seed: 5,
            media_server: None,
        };
        generate(&cfg, &mut bytes).unwrap();
        let mut r = PcapReader::new(std::io::Cursor::new(&bytes)).unwrap();
        let mut frames = Vec::new();
        while let Some(rec) = r.next_packet().unwrap() {
            frames.push((rec.link, rec.ts_ns, rec.offset, rec.data.to_vec()));
        }
        let mut one = Pipeline::new(PipelineConfig::default());
        one.calls_mut().track_endpoints();
        let opts = EngineOptions {
            track_endpoints: true,
            live_max_calls: 1000,
            ..Default::default()
        };
        let mut par = ParallelEngine::with_options(PipelineConfig::default(), 3, opts);
        let (mut held_one, mut held_par) = (BTreeSet::new(), BTreeSet::new());
        let mut ev = Vec::new();
        let half = frames.len() / 2;
        for (i, (link, ts, off, data)) in frames.iter().enumerate() {
            one.process(*link, *ts, PacketRef::new(0, *off), data);
            par.process(*link, *ts, PacketRef::new(0, *off), data);
            if i != half {
                continue;
            }
            let mut snaps = LiveSnapshots::new(1000);
            let want = snaps.snapshot(one.calls().open(), one.calls().now_ns());
            let got = round_trip(&mut par);
            assert_eq!(got.open_calls, want.open_calls);
            assert_eq!(by_call(&got.calls), by_call(&want.calls));
            assert!(want.calls.iter().all(|c| c.streams.len() == 2));
            // A second round trip: every worker's endpoint events of the
            // frames before it are in.
            round_trip(&mut par);
            one.calls_mut().drain_endpoint_events(&mut ev);
            held(&mut held_one, &std::mem::take(&mut ev));
            par.drain_endpoint_events(&mut ev);
            held(&mut held_par, &std::mem::take(&mut ev));
            assert_eq!(held_par, held_one);
            assert_eq!(held_one.len(), 12 * 4);
            charge(one.calls_mut(), &mut par);
        }
        one.finish();
        let mut want: Vec<_> = one.drain_ended();
        let mut got = par.drain_ended();
        let (last, _) = par.finish();
        got.extend(last);
        let loss = |v: &mut Vec<crate::calls::Call>| {
            v.sort_by(|a, b| a.call_id().cmp(b.call_id()));
            v.iter()
                .map(|c| (c.call_id().to_string(), c.capture_loss()))
                .collect::<Vec<_>>()
        };
        let (want, got) = (loss(&mut want), loss(&mut got));
        assert_eq!(got, want);
        // Both kinds of call: with and without media on ring 2.
        assert!(want.iter().any(|c| c.1 == 9) && want.iter().any(|c| c.1 == 2));
    }

    /// Worker 1 stalls from its first batch (3 s) under a small high-water
    /// mark: the dispatcher goes on, drops only worker 1's own media and
    /// counts it; charged as the sensor charges it (to the calls with an SDP
    /// endpoint on worker 1, at the same point in a single table), each
    /// call's capture_loss is the single table's, every call is there with
    /// all its SIP, and the calls without media on worker 1 have exactly the
    /// single table's streams and packets.
    #[test]
    fn a_stalled_workers_media_is_dropped_counted_and_charged_to_its_calls_only() {
        let frames = synth_frames(12, 4, 5);
        let mut one = Pipeline::new(PipelineConfig::default());
        let mut cfg = PipelineConfig::default();
        cfg.engine_faults.stall_once = Some((1, 0, Duration::from_secs(3)));
        let opts = EngineOptions {
            // Above worker 0's share of the first second (about 50 KB: it
            // may fall that far behind the dispatcher before it reaches
            // the first sweep and waits there), below worker 1's share of
            // the whole capture (about 400 KB).
            media_high_water: 128 << 10,
            ..Default::default()
        };
        let mut par = ParallelEngine::with_options(cfg, 2, opts);
        let on_1 = |ep: SocketAddr| super::super::worker_of(ep, 2) == 1;
        let mut seen = 0;
        for (i, (link, ts, off, data)) in frames.iter().enumerate() {
            one.process(*link, *ts, PacketRef::new(0, *off), data);
            par.process(*link, *ts, PacketRef::new(0, *off), data);
            // A live dispatcher flushes after each reader batch, and
            // charges new drops after it.
            if i % 32 == 31 {
                par.flush();
                let d = par.media_dropped()[1] - seen;
                if d > 0 {
                    seen += d;
                    one.calls_mut().note_capture_loss_where(d, on_1);
                    par.note_capture_loss(d, Some(Arc::new(on_1)));
                }
            }
        }
        let dropped = par.media_dropped().to_vec();
        assert_eq!(dropped[0], 0, "{dropped:?}");
        assert!(dropped[1] > 100, "{dropped:?}");
        one.finish();
        let mut want = one.drain_ended();
        let mut got = par.drain_ended();
        let (last, fin) = par.finish();
        got.extend(last);
        assert!(fin.failure.is_none());
        assert_eq!(fin.dispatch.frames, frames.len() as u64);
        let by_id = |v: &mut Vec<crate::calls::Call>| {
            v.sort_by(|a, b| a.call_id().cmp(b.call_id()));
        };
        by_id(&mut want);
        by_id(&mut got);
        assert_eq!(got.len(), 12);
        assert_eq!(got.len(), want.len());
        let (mut hit, mut clean) = (0, 0);
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.call_id(), w.call_id());
            assert_eq!(g.sip_messages(), w.sip_messages(), "{}", w.call_id());
            assert_eq!(g.capture_loss(), w.capture_loss(), "{}", w.call_id());
            let on_worker_1 = w
                .media()
                .iter()
                .any(|m| on_1(m.rtp.into()) || on_1(m.rtcp.into()));
            if on_worker_1 {
                hit += usize::from(w.capture_loss() > 0);
                continue;
            }
            clean += 1;
            assert_eq!(w.capture_loss(), 0, "{}", w.call_id());
            let packets = |c: &crate::calls::Call| {
                let mut v: Vec<_> = c
                    .streams()
                    .iter()
                    .map(|s| (s.key.dst, s.stats.summary().packets))
                    .collect();
                v.sort();
                v
            };
            assert_eq!(packets(g), packets(w), "{}", w.call_id());
        }
        // Both kinds of call, or the test shows nothing.
        assert!(hit > 0 && clean > 0, "{hit} charged, {clean} clean");
        let charged: u64 = got.iter().map(|c| c.capture_loss()).max().unwrap();
        assert!(charged <= dropped[1]);
    }

    fn synth_frames(calls: u32, seconds: u32, seed: u64) -> Vec<(LinkType, u64, u64, Vec<u8>)> {
        let mut bytes = Vec::new();
        let cfg = SynthConfig {
            calls,
            seconds,
            ramp_seconds: 1,
            loss_pct: 0.0,
            jitter_ms: 0.0,
            seed,
            media_server: None,
        };
        generate(&cfg, &mut bytes).unwrap();
        let mut r = PcapReader::new(std::io::Cursor::new(&bytes)).unwrap();
        let mut frames = Vec::new();
        while let Some(rec) = r.next_packet().unwrap() {
            frames.push((rec.link, rec.ts_ns, rec.offset, rec.data.to_vec()));
        }
        frames
    }

    fn charge(one: &mut CallTable, par: &mut ParallelEngine) {
        one.note_capture_loss_where(7, on_ring_2);
        one.note_capture_loss(2);
        par.note_capture_loss(7, Some(Arc::new(on_ring_2)));
        par.note_capture_loss(2, None);
    }
}
