//! The engine's tap (HEP export) split between the replicas so that each
//! message is handed on once, as one pipeline hands it on:
//!
//! - SIP: every replica sees every message, in capture order; worker 0's
//!   is handed on, the others' are not.
//! - RTCP: only the worker owning the datagram (its destination hashes to
//!   it) hands it to its tap (`Route::udp`), so every worker's goes on.
//! - ended calls: a replica holds only its share of the streams, so no
//!   replica's goes on; the joining thread hands on each merged call
//!   ([`super::join::run`]).
//!
//! The taps are made from the one factory, so an exporter whose taps share
//! their queues (the HEP exporter's do) sends from one place.

use std::net::SocketAddr;

use crate::calls::Call;
use crate::tap::{PacketTap, TapFactory};

/// Worker `me`'s share of `factory`'s taps.
pub(super) fn for_worker(factory: &TapFactory, me: usize) -> TapFactory {
    let factory = factory.clone();
    TapFactory::new(move || {
        Box::new(ReplicaTap {
            inner: factory.make(),
            sip: me == 0,
        })
    })
}

struct ReplicaTap {
    inner: Box<dyn PacketTap>,
    /// This replica's SIP goes on (worker 0).
    sip: bool,
}

impl PacketTap for ReplicaTap {
    fn sip(
        &mut self,
        ts_ns: u64,
        src: SocketAddr,
        dst: SocketAddr,
        tcp: bool,
        call_id: &[u8],
        message: &[u8],
    ) {
        if self.sip {
            self.inner.sip(ts_ns, src, dst, tcp, call_id, message);
        }
    }

    fn rtcp(
        &mut self,
        ts_ns: u64,
        src: SocketAddr,
        dst: SocketAddr,
        call_id: &[u8],
        payload: &[u8],
    ) {
        self.inner.rtcp(ts_ns, src, dst, call_id, payload);
    }

    /// A replica's call: its merge goes on instead.
    fn call_ended(&mut self, _: &Call) {}
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::calls::PacketRef;
    use crate::parallel::{ParallelEngine, worker_of};
    use crate::pipeline::{Pipeline, PipelineConfig};
    use crate::synth::{
        SynthConfig, callee_ip, caller_ip, generate, rtp_port, sender_report, udp_frame,
    };
    use voxtap_proto::pcapio::{LinkType, PcapReader};

    /// What a tap was handed: SIP and RTCP as given, an ended call as its
    /// Call-ID and its streams' figures.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
    enum Ev {
        Sip(u64, SocketAddr, SocketAddr, Vec<u8>, Vec<u8>),
        Rtcp(u64, SocketAddr, SocketAddr, Vec<u8>, Vec<u8>),
        Ended(Vec<u8>, Vec<(SocketAddr, SocketAddr, u32, u64, i64, u64)>),
    }

    /// Every tap of one factory records into one list, with the name of
    /// the thread that handed the event on.
    type Log = Arc<Mutex<Vec<(String, Ev)>>>;

    struct Recorder(Log);

    impl Recorder {
        fn push(&self, ev: Ev) {
            let name = std::thread::current().name().unwrap_or("").to_string();
            self.0.lock().unwrap().push((name, ev));
        }
    }

    impl PacketTap for Recorder {
        fn sip(&mut self, ts: u64, s: SocketAddr, d: SocketAddr, _: bool, cid: &[u8], m: &[u8]) {
            self.push(Ev::Sip(ts, s, d, cid.to_vec(), m.to_vec()));
        }

        fn rtcp(&mut self, ts: u64, s: SocketAddr, d: SocketAddr, cid: &[u8], p: &[u8]) {
            self.push(Ev::Rtcp(ts, s, d, cid.to_vec(), p.to_vec()));
        }

        fn call_ended(&mut self, call: &Call) {
            let streams = call
                .streams()
                .iter()
                .map(|s| {
                    let m = s.stats.summary();
                    (
                        s.key.src.into(),
                        s.key.dst.into(),
                        s.key.ssrc,
                        m.packets,
                        m.lost,
                        m.last_ns,
                    )
                })
                .collect();
            self.push(Ev::Ended(call.call_id_raw().to_vec(), streams));
        }
    }

    fn recording() -> (PipelineConfig, Log) {
        let log = Log::default();
        let l = Arc::clone(&log);
        let cfg = PipelineConfig {
            tap: Some(TapFactory::new(move || Box::new(Recorder(Arc::clone(&l))))),
            ..Default::default()
        };
        (cfg, log)
    }

    /// `calls` synthetic calls talking 3 s, with a sender report each way
    /// every second to the other side's RTP port + 1.
    fn frames(calls: u32) -> Vec<(u64, u64, Vec<u8>)> {
        let cfg = SynthConfig {
            calls,
            seconds: 3,
            seed: 9,
            ..Default::default()
        };
        let mut bytes = Vec::new();
        generate(&cfg, &mut bytes).unwrap();
        let mut r = PcapReader::new(std::io::Cursor::new(&bytes)).unwrap();
        let mut out = Vec::new();
        let mut t0 = u64::MAX;
        while let Some(rec) = r.next_packet().unwrap() {
            t0 = t0.min(rec.ts_ns);
            out.push((rec.ts_ns, rec.offset, rec.data.to_vec()));
        }
        let s = 1_000_000_000;
        for i in 0..calls {
            let (a, b, port) = (caller_ip(i), callee_ip(i), rtp_port(i) + 1);
            for k in 1..3u32 {
                let ts = t0 + s + u64::from(k) * s + u64::from(i) * 1000;
                let mut f = Vec::new();
                udp_frame(&mut f, (a, port), (b, port), &sender_report(i, k * 50));
                out.push((ts, out.len() as u64 * 1000, f.clone()));
                udp_frame(&mut f, (b, port), (a, port), &sender_report(!i, k * 50));
                out.push((ts, out.len() as u64 * 1000, f));
            }
        }
        out.sort_by_key(|f| f.0);
        out
    }

    /// Three workers hand a tap what one pipeline hands it: the same SIP
    /// messages in the same order (all from worker 0), the same RTCP (each
    /// from the worker owning it, several workers in all) and the same
    /// ended calls with every stream (from the joining thread), once each.
    #[test]
    fn three_workers_tap_what_one_pipeline_taps() {
        let frames = frames(24);
        let (cfg, one_log) = recording();
        let mut one = Pipeline::new(cfg);
        for (ts, off, f) in &frames {
            one.process(LinkType::Ethernet, *ts, PacketRef::new(0, *off), f);
        }
        one.finish();
        one.drain_ended();
        drop(one);
        let (cfg, par_log) = recording();
        let mut par = ParallelEngine::new(cfg, 3);
        for (ts, off, f) in &frames {
            par.process(LinkType::Ethernet, *ts, PacketRef::new(0, *off), f);
        }
        let _ = par.finish();

        let one = one_log.lock().unwrap().clone();
        let par = par_log.lock().unwrap().clone();
        let kind = |log: &[(String, Ev)], k: u8| -> Vec<(String, Ev)> {
            log.iter()
                .filter(|(_, e)| match e {
                    Ev::Sip(..) => k == 0,
                    Ev::Rtcp(..) => k == 1,
                    Ev::Ended(..) => k == 2,
                })
                .cloned()
                .collect()
        };
        let events = |log: Vec<(String, Ev)>| -> Vec<Ev> { log.into_iter().map(|e| e.1).collect() };
        let sorted = |mut v: Vec<Ev>| {
            v.sort();
            v
        };
        let threads = |log: &[(String, Ev)]| -> BTreeSet<String> {
            log.iter().map(|e| e.0.clone()).collect()
        };
        // SIP: 24 calls of 6 messages, in capture order, from worker 0.
        let (want, got) = (kind(&one, 0), kind(&par, 0));
        assert_eq!(want.len(), 24 * 6);
        assert_eq!(threads(&got), BTreeSet::from(["voxtap-media-0".into()]));
        assert_eq!(events(got), events(want));
        // RTCP: 2 reports each way per call, from the owner of each.
        let (want, got) = (kind(&one, 1), kind(&par, 1));
        assert_eq!(want.len(), 24 * 4);
        for (name, e) in &got {
            let Ev::Rtcp(_, _, dst, ..) = e else {
                unreachable!()
            };
            assert_eq!(*name, format!("voxtap-media-{}", worker_of(*dst, 3)));
        }
        assert_eq!(threads(&got).len(), 3, "every worker owns some RTCP");
        assert_eq!(sorted(events(got)), sorted(events(want)));
        // Ended calls, each with both streams, from the joining thread.
        let (want, got) = (kind(&one, 2), kind(&par, 2));
        assert_eq!(want.len(), 24);
        assert!(
            want.iter()
                .all(|(_, e)| matches!(e, Ev::Ended(_, s) if s.len() == 2))
        );
        assert_eq!(threads(&got), BTreeSet::from(["voxtap-join".into()]));
        assert_eq!(sorted(events(got)), sorted(events(want)));
    }
}
