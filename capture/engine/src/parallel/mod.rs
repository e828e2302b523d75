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
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use crate::calls::{Call, PacketRef};
use crate::pipeline::{PipelineConfig, PipelineStats};
use crate::signalling::{SignallingSnapshot, Transaction};
use voxtap_proto::decode::{Decoder, L4};
use voxtap_proto::pcapio::LinkType;
use voxtap_proto::sip;

pub use control::{EngineOptions, LossFilter, OnStart, SignallingParts, WorkerGauge};
pub use worker::{WorkerTimes, thread_cpu_ns};

/// The media worker (0..n) owning datagrams sent to `dst`: its address and
/// port with the low bit cleared, so that RTP (even port) and its RTCP
/// (the next port) land on the same worker.
pub fn worker_of(dst: SocketAddr, n: usize) -> usize {
    let addr = match dst.ip() {
        std::net::IpAddr::V4(v4) => voxtap_common::v4_mapped(v4.octets()),
        std::net::IpAddr::V6(v6) => v6.octets(),
    };
    voxtap_common::media_worker(&addr, dst.port(), n as u32) as usize
}

/// Frames per batch handed to a worker, and bytes: a batch is sent when
/// either fills (and at every sweep).
const BATCH_ITEMS: usize = 512;
const BATCH_BYTES: usize = 512 << 10;
/// Batches queued to one worker before the dispatcher waits.
const QUEUE_BATCHES: usize = 16;
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
    Sweep {
        seq: u64,
        now_ns: u64,
    },
    /// Take the next item of the worker's control channel (`control.rs`).
    Control,
}

/// Frames for one worker, with their bytes; recycled (no allocation per
/// frame once the first batches exist).
#[derive(Default)]
struct Batch {
    items: Vec<Item>,
    bytes: Vec<u8>,
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
    /// Control items (live sensor) put in the workers' inputs.
    pub controls: u64,
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
}

pub struct ParallelEngine {
    n: usize,
    decoder: Decoder,
    sip_ports: Box<[u64; 1024]>,
    sip_by_content: bool,
    now_ns: u64,
    last_sweep_ns: u64,
    seq: u64,
    to_workers: Vec<Sender<Batch>>,
    filling: Vec<Batch>,
    free: Receiver<Batch>,
    parts: Receiver<Part>,
    joiner: join::Joiner,
    handles: Vec<JoinHandle<worker::WorkerEnd>>,
    stats: DispatchStats,
    ctl: control::EngineControl,
}

impl ParallelEngine {
    /// `n` media workers (at least 1) running replicas of `cfg`'s pipeline.
    /// A tap (HEP export) is not supported here: it would see each SIP
    /// message once per worker.
    pub fn new(cfg: PipelineConfig, n: usize) -> Self {
        Self::build(cfg, n, EngineOptions::default())
    }

    fn build(mut cfg: PipelineConfig, n: usize, opts: EngineOptions) -> Self {
        let n = n.max(1);
        cfg.tap = None;
        let mut sip_ports = Box::new([0u64; 1024]);
        for p in &cfg.sip_ports {
            sip_ports[usize::from(*p) / 64] |= 1 << (p % 64);
        }
        let (free_tx, free) = bounded(n * (QUEUE_BATCHES + 2));
        let (parts_tx, parts) = unbounded();
        let meeting = Arc::new(worker::Meeting::new(n));
        let mut to_workers = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        let (ctl, links) = control::EngineControl::new(n, &opts);
        for (me, link) in links.into_iter().enumerate() {
            let (tx, rx) = bounded(QUEUE_BATCHES);
            to_workers.push(tx);
            let w = worker::Worker {
                me,
                n,
                cfg: cfg.clone(),
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
            decoder: Decoder::with_tunnels(cfg.frag, cfg.tunnels),
            sip_ports,
            sip_by_content: cfg.sip_by_content,
            now_ns: 0,
            last_sweep_ns: 0,
            seq: 0,
            to_workers,
            filling: (0..n).map(|_| Batch::default()).collect(),
            free,
            parts,
            joiner: join::Joiner::new(n),
            handles,
            stats: DispatchStats::default(),
            ctl,
        }
    }

    pub fn workers(&self) -> usize {
        self.n
    }

    /// One captured frame.
    pub fn process(&mut self, link: LinkType, ts_ns: u64, pref: PacketRef, frame: &[u8]) {
        self.stats.frames += 1;
        self.stats.bytes += frame.len() as u64;
        let Some(dest) = self.classify(link, ts_ns, pref, frame) else {
            self.stats.malformed += 1;
            // Only the pipeline counts it: worker 0.
            self.push(0, link, ts_ns, pref, frame);
            return;
        };
        self.now_ns = self.now_ns.max(ts_ns);
        if self.now_ns.saturating_sub(self.last_sweep_ns) >= SWEEP_EVERY_NS {
            self.last_sweep_ns = self.now_ns;
            self.sweep();
        }
        match dest {
            Some(w) => {
                self.stats.steered += 1;
                self.push(w, link, ts_ns, pref, frame);
            }
            None => {
                self.stats.broadcast += 1;
                for w in 0..self.n {
                    self.push(w, link, ts_ns, pref, frame);
                }
            }
        }
    }

    /// Where a frame goes: Some(Some(w)) to worker `w` only, Some(None) to
    /// every worker, None for a frame the decoder rejects.
    fn classify(
        &mut self,
        link: LinkType,
        ts_ns: u64,
        pref: PacketRef,
        frame: &[u8],
    ) -> Option<Option<usize>> {
        let dg = match self.decoder.decode(link, ts_ns, pref.0, frame) {
            Ok(Some(dg)) => dg,
            // Not IP UDP/TCP, or a fragment held: every replica's decoder
            // must see the fragments of a datagram.
            Ok(None) => return Some(None),
            Err(_) => return None,
        };
        if !matches!(dg.l4, L4::Udp) || !dg.fragments.is_empty() {
            return Some(None);
        }
        let is_sip_port = |p: u16| self.sip_ports[usize::from(p) / 64] & (1 << (p % 64)) != 0;
        let sip_like = is_sip_port(dg.src.port())
            || is_sip_port(dg.dst.port())
            || (self.sip_by_content && sip::looks_like_sip(dg.payload));
        let rtcp =
            matches!(dg.payload, [b0, b1, ..] if voxtap_common::rtcp_header_plausible(*b0, *b1));
        if sip_like || rtcp {
            return Some(None);
        }
        Some(Some(worker_of(dg.dst, self.n)))
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
        // A worker that is gone has panicked; `finish` reports it.
        let _ = self.to_workers[w].send(full);
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
        while let Ok(p) = self.parts.try_recv() {
            self.joiner.add(p);
        }
        self.joiner.take_ready()
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
        for h in self.handles.drain(..) {
            match h.join() {
                Ok(end) => ends.push(end),
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        while let Ok(p) = self.parts.try_recv() {
            self.joiner.add(p);
        }
        let calls = self.joiner.take_ready();
        let fin = self.finished(ends);
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
            dispatch: self.stats,
            signalling: first.signalling,
            transactions: first.transactions,
            floods: first.floods,
            workers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::{Agreed, DueSet};

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
        };
        let w1 = DueSet {
            calls: vec![b"b".as_slice().into(), b"c".as_slice().into()],
            media_only_due: vec![pair(3)],
            media_only_live: vec![pair(2)],
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
