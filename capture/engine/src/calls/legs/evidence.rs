//! Leg linking by media, decided at sweeps. Each of a stream's first
//! packets is noted as evidence ([`MediaEvidence`]) when it comes, and the
//! evidence is weighed at the next sweep, in capture order, before any call
//! closes. One table weighs its own; the parallel engine's replicas post
//! theirs at the sweep meeting, worker 0's weighs everyone's
//! (`calls::Agreed`) and posts the links it made, which every other
//! replica makes alike (`posted.rs`): legs whose media went to different
//! workers are linked in every replica alike, as one table links them.

use std::collections::HashMap;

use voxtap_proto::rtp::RtpPacket;

use super::recent::Keyed;
use super::{
    Groups, LinkMethod, OpenCalls, RecentStream, SeenPayload, distinctive_payload_hash, relay_hop,
};
use crate::calls::call::{EARLY_PACKETS, PacketRef, RecentPacket, RtpSeen, StreamKey};
use crate::calls::endpoints::AddrHash;
use crate::calls::table::CallConfig;

/// One of a stream's first packets, as leg linking weighs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaEvidence {
    /// The call, by its number in the table that saw the packet.
    pub call_no: u64,
    pub key: StreamKey,
    pub ts_ns: u64,
    pub pref: PacketRef,
    pub seq: u16,
    pub rtp_ts: u32,
    /// [`super::payload_hash`] of its payload.
    pub hash: u64,
    pub payload_len: u32,
    /// The stream's first packet.
    pub is_new: bool,
    /// Its payload is worth matching ([`distinctive_payload_hash`]).
    pub distinctive: bool,
}

impl MediaEvidence {
    pub(in crate::calls) fn new(
        call_no: u64,
        seen: &RtpSeen,
        ts_ns: u64,
        pref: PacketRef,
        p: &RtpPacket<'_>,
    ) -> Self {
        MediaEvidence {
            call_no,
            key: seen.key,
            ts_ns,
            pref,
            seq: p.sequence(),
            rtp_ts: p.timestamp(),
            hash: seen.hash,
            payload_len: p.payload().len() as u32,
            is_new: seen.is_new,
            distinctive: distinctive_payload_hash(p.payload()).is_some(),
        }
    }

    /// Where it falls in capture order (the order it is weighed in).
    pub fn at(&self) -> (u64, PacketRef) {
        (self.ts_ns, self.pref)
    }
}

/// The evidence a replica posts at a sweep meeting: its items in the order
/// it noted them (capture order, so that the weighing replica merges one
/// run per replica, [`MergedRuns`]), each naming its call by an index into
/// `call_ids` (call numbers differ between replicas; one name a call, not
/// one a packet).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PostedEvidence {
    pub call_ids: Vec<Box<[u8]>>,
    /// Their `call_no` is an index into `call_ids`.
    pub items: Vec<MediaEvidence>,
}

impl PostedEvidence {
    /// Evidence noted here, for posting (in the order noted); evidence of
    /// a call no longer open is dropped.
    pub(in crate::calls) fn new(
        noted: Vec<MediaEvidence>,
        call_id: impl Fn(u64) -> Option<Box<[u8]>>,
    ) -> Self {
        let mut index: HashMap<u64, Option<u64>, AddrHash> = HashMap::default();
        let mut out = PostedEvidence {
            call_ids: Vec::new(),
            items: Vec::with_capacity(noted.len()),
        };
        for mut e in noted {
            let ids = &mut out.call_ids;
            let at = *index.entry(e.call_no).or_insert_with(|| {
                let id = call_id(e.call_no)?;
                ids.push(id);
                Some(ids.len() as u64 - 1)
            });
            if let Some(at) = at {
                e.call_no = at;
                out.items.push(e);
            }
        }
        out
    }

    /// Each of its calls' number here (`None`: unknown here), by the
    /// index its items name it with.
    pub(in crate::calls) fn call_nos(
        &self,
        call_no: impl Fn(&[u8]) -> Option<u64>,
    ) -> Vec<Option<u64>> {
        self.call_ids.iter().map(|id| call_no(id)).collect()
    }

    /// Its items with each call named by its number here (`nos`, from
    /// [`Self::call_nos`]); items of calls unknown here are left out.
    pub(in crate::calls) fn resolved<'a>(
        &'a self,
        nos: &'a [Option<u64>],
    ) -> impl Iterator<Item = MediaEvidence> + 'a {
        self.items.iter().filter_map(move |e| {
            let no = (*nos.get(e.call_no as usize)?)?;
            Some(MediaEvidence { call_no: no, ..*e })
        })
    }

    /// Whether its items are in capture order (a replica notes them so;
    /// a capture whose timestamps go back is not).
    pub(in crate::calls) fn in_order(&self) -> bool {
        self.items.is_sorted_by_key(MediaEvidence::at)
    }
}

/// Runs each in capture order, merged into one in capture order: what a
/// stable sort of the runs laid end to end gives (on a tie the earlier
/// run's item first), without copying them all into one vector and sorting
/// it. The weighing replica weighs every replica's evidence at each sweep;
/// the copy and sort of it all missed the cache more than the rest of a
/// replica's sweep (issue 18, docs/performance.md, session 15).
pub(in crate::calls) struct MergedRuns<I: Iterator<Item = MediaEvidence>> {
    runs: Vec<std::iter::Peekable<I>>,
}

impl<I: Iterator<Item = MediaEvidence>> MergedRuns<I> {
    pub(in crate::calls) fn new(runs: impl IntoIterator<Item = I>) -> Self {
        MergedRuns {
            runs: runs.into_iter().map(Iterator::peekable).collect(),
        }
    }
}

impl<I: Iterator<Item = MediaEvidence>> Iterator for MergedRuns<I> {
    type Item = MediaEvidence;

    fn next(&mut self) -> Option<MediaEvidence> {
        let mut first: Option<(usize, (u64, PacketRef))> = None;
        for (i, run) in self.runs.iter_mut().enumerate() {
            if let Some(e) = run.peek()
                && first.is_none_or(|(_, at)| e.at() < at)
            {
                first = Some((i, e.at()));
            }
        }
        self.runs.get_mut(first?.0)?.next()
    }
}

/// A stream's first packets, as evidence gave them (what a relay forwarded
/// is compared with them): inline, one ring slot per stream (`recent.rs`).
#[derive(Clone, Debug)]
pub(super) struct EarlyStream {
    call_no: u64,
    key: StreamKey,
    start_ns: u64,
    len: u8,
    seqs: [u16; EARLY as usize],
    packets: [RecentPacket; EARLY as usize],
}

/// A stream's packets noted as evidence (`Call` notes no more).
const EARLY: u8 = EARLY_PACKETS;

impl Keyed for EarlyStream {
    /// Found by (call, SSRC).
    type Key = (u64, u32);
    fn key(&self) -> (u64, u32) {
        (self.call_no, self.key.ssrc)
    }
}

impl EarlyStream {
    fn new(e: &MediaEvidence) -> Self {
        EarlyStream {
            call_no: e.call_no,
            key: e.key,
            start_ns: e.ts_ns,
            len: 0,
            seqs: [0; EARLY as usize],
            packets: [RecentPacket::default(); EARLY as usize],
        }
    }

    /// Notes one more of its packets (past [`EARLY`], none: a stream gives
    /// no more evidence than that).
    fn note(&mut self, seq: u16, r: RecentPacket) {
        let i = usize::from(self.len);
        if let (Some(s), Some(p)) = (self.seqs.get_mut(i), self.packets.get_mut(i)) {
            (*s, *p) = (seq, r);
            self.len += 1;
        }
    }

    /// The latest of its packets with sequence number `seq`.
    fn packet(&self, seq: u16) -> Option<RecentPacket> {
        let n = usize::from(self.len);
        let i = self.seqs[..n].iter().rposition(|&s| s == seq)?;
        Some(self.packets[i])
    }
}

/// Streams whose first packets are kept at most (a flood of new streams
/// must not grow it; past it, it starts over): about 38 MB.
const MAX_EARLY_STREAMS: usize = 100_000;

impl Groups {
    /// Note one of a stream's first packets, weighed at the next sweep.
    pub fn note_media(&mut self, e: MediaEvidence) {
        self.noted.push(e);
    }

    /// The evidence noted since the last sweep (a replica posts it).
    pub fn take_noted(&mut self) -> Vec<MediaEvidence> {
        std::mem::take(&mut self.noted)
    }

    /// Weigh the evidence noted here (one table, at its sweep). Evidence of
    /// a call no longer open (its Call-ID started a new call since) is
    /// dropped, as a replica drops it ([`by_call`]): no link can be made to
    /// it, and as the first of its payloads it would only keep other legs
    /// from matching them.
    pub fn weigh_noted(&mut self, open: &mut OpenCalls, cfg: &CallConfig) {
        // Not kept for the next sweep: a burst of new streams must not
        // leave its capacity behind for good.
        let mut noted = std::mem::take(&mut self.noted);
        noted.retain(|e| open.contains_key(&e.call_no));
        noted.sort_by_key(MediaEvidence::at);
        self.weigh(open, cfg, noted);
    }

    /// Weigh evidence in capture order: the same stream seen on another
    /// leg, forwarded by a relay with the same SSRC, or (a relay that
    /// rewrites the SSRC) with identical payloads at constant sequence and
    /// timestamp offsets. Either way the topology must be a relay's
    /// ([`relay_hop`]).
    pub fn weigh(
        &mut self,
        open: &mut OpenCalls,
        cfg: &CallConfig,
        evidence: impl IntoIterator<Item = MediaEvidence>,
    ) {
        for e in evidence {
            let e = &e;
            if e.is_new {
                self.link_same_ssrc(open, cfg, e);
            }
            self.keep_early(e);
            if e.distinctive {
                self.link_same_payload(open, cfg, e);
            }
        }
    }

    fn keep_early(&mut self, e: &MediaEvidence) {
        if self.early.len() >= MAX_EARLY_STREAMS {
            self.early.clear();
        }
        let r = RecentPacket::new(e.ts_ns, e.rtp_ts, e.hash);
        let key = (e.call_no, e.key.ssrc);
        if let Some(s) = self.early.find_mut(key, |s| s.key == e.key) {
            s.note(e.seq, r);
            return;
        }
        let mut s = EarlyStream::new(e);
        s.note(e.seq, r);
        self.early.push(s);
    }

    /// Early streams that started longer than the media window ago can no
    /// longer be matched.
    pub(super) fn expire_early(&mut self, now_ns: u64, window_ns: u64) {
        self.early.retain(|s| s.start_ns + window_ns >= now_ns);
    }

    /// A new stream whose first packet (SSRC, sequence number, timestamp and
    /// payload) another leg's stream carried among its first packets a
    /// moment before: the closest in time of those a relay could have
    /// forwarded.
    fn link_same_ssrc(&mut self, open: &mut OpenCalls, cfg: &CallConfig, e: &MediaEvidence) {
        let (ssrc, seq, ts_ns) = (e.key.ssrc, e.seq, e.ts_ns);
        let window = cfg.legs.media_window_ns;
        let others: Vec<u64> = self
            .index
            .streams_by_ssrc
            .of(ssrc)
            .into_iter()
            .filter(|r| r.call_no != e.call_no && ts_ns.saturating_sub(r.ts_ns) <= window)
            .map(|r| r.call_no)
            .collect();
        let mut best: Option<(u64, u64, String)> = None;
        for other in others {
            if !open.contains_key(&other) {
                continue;
            }
            for s in self.early.of((other, ssrc)) {
                let Some(r) = s.packet(seq) else {
                    continue;
                };
                let delay = ts_ns.saturating_sub(r.ns);
                if r.rtp_ts != e.rtp_ts
                    || !r.same_payload(e.hash)
                    || r.ns > ts_ns
                    || delay > cfg.payload_match_window_ns
                    || best.as_ref().is_some_and(|b| b.1 <= delay)
                {
                    continue;
                }
                if let Some(why) = relay_hop(&s.key, &e.key, &cfg.legs) {
                    let detail = format!(
                        "SSRC 0x{ssrc:08X}: sequence {seq}, timestamp {} and a {}-byte payload identical to the other leg's {:.1} ms earlier ({} -> {}); {why}",
                        e.rtp_ts,
                        e.payload_len,
                        delay as f64 / 1e6,
                        s.key.src,
                        s.key.dst,
                    );
                    best = Some((other, delay, detail));
                }
            }
        }
        if let Some((other, _, detail)) = best {
            let calls = (e.call_no, other);
            self.link_recorded(open, calls, LinkMethod::MediaSsrc, detail);
        }
        self.index.streams_by_ssrc.push(RecentStream {
            call_no: e.call_no,
            ts_ns,
            ssrc,
            seq,
        });
    }

    /// An early packet whose distinctive payload another leg's stream
    /// carried a moment before, through a relay's topology: after
    /// [`super::PAYLOAD_RUN`] such packets at the same sequence and timestamp
    /// offsets, the legs are linked.
    fn link_same_payload(&mut self, open: &mut OpenCalls, cfg: &CallConfig, e: &MediaEvidence) {
        let window = cfg.legs.media_window_ns;
        // An entry older than the media window counts as gone (the sweep
        // may not have removed it yet).
        let first = match self.index.payloads.get(&e.hash).copied() {
            Some(f) if f.ns + window >= e.ts_ns => f,
            _ => {
                self.index.payloads.insert(
                    e.hash,
                    SeenPayload {
                        call_no: e.call_no,
                        key: e.key,
                        seq: e.seq,
                        rtp_ts: e.rtp_ts,
                        ns: e.ts_ns,
                    },
                );
                return;
            }
        };
        let delay = e.ts_ns.saturating_sub(first.ns);
        if first.call_no == e.call_no
            || delay > cfg.payload_match_window_ns
            || relay_hop(&first.key, &e.key, &cfg.legs).is_none()
        {
            return;
        }
        let offsets = (
            e.seq.wrapping_sub(first.seq),
            e.rtp_ts.wrapping_sub(first.rtp_ts),
        );
        let Some(run) = self
            .index
            .note_run((e.key, first.key), offsets, delay, e.ts_ns, window)
        else {
            return;
        };
        let why = relay_hop(&first.key, &e.key, &cfg.legs).unwrap_or_default();
        let detail = format!(
            "{} identical {}-byte RTP payloads {:.1} ms after the other leg's ({} -> {}, SSRC 0x{:08X}), sequence offset {}, timestamp offset {} (SSRC here 0x{:08X}); {why}",
            run.matches,
            e.payload_len,
            run.delay_ns as f64 / 1e6,
            first.key.src,
            first.key.dst,
            first.key.ssrc,
            run.seq_offset as i16,
            run.ts_offset as i32,
            e.key.ssrc,
        );
        let calls = (e.call_no, first.call_no);
        self.link_recorded(open, calls, LinkMethod::MediaPayload, detail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(call_no: u64, ts_ns: u64) -> MediaEvidence {
        MediaEvidence {
            call_no,
            key: StreamKey {
                src: "10.0.0.1:4000".parse().unwrap(),
                dst: "10.0.0.2:5000".parse().unwrap(),
                ssrc: 7,
            },
            ts_ns,
            pref: PacketRef(ts_ns),
            seq: 0,
            rtp_ts: 0,
            hash: 0,
            payload_len: 160,
            is_new: false,
            distinctive: false,
        }
    }

    /// Posted in the order noted, each call named once; the evidence of a
    /// call that is gone is not posted; a replica reading it names each
    /// call by its own number and leaves out the calls it does not know.
    #[test]
    fn evidence_is_posted_in_order_with_each_call_named_once() {
        let noted = vec![ev(1, 10), ev(2, 11), ev(1, 12), ev(3, 13), ev(2, 14)];
        let names = |no: u64| (no != 3).then(|| format!("c{no}").into_bytes().into());
        let posted = PostedEvidence::new(noted, names);
        assert_eq!(posted.call_ids, vec![b"c1"[..].into(), b"c2"[..].into()]);
        let got: Vec<(u64, u64)> = posted.items.iter().map(|e| (e.call_no, e.ts_ns)).collect();
        assert_eq!(got, vec![(0, 10), (1, 11), (0, 12), (1, 14)]);
        let here = |id: &[u8]| (id == b"c2").then_some(42);
        let nos = posted.call_nos(here);
        let got: Vec<(u64, u64)> = posted
            .resolved(&nos)
            .map(|e| (e.call_no, e.ts_ns))
            .collect();
        assert_eq!(got, vec![(42, 11), (42, 14)]);
    }

    /// Merging runs in capture order gives what the stable sort of the runs
    /// laid end to end gives, ties included (many items share a timestamp
    /// and a packet here, and each item's call number tells its run).
    #[test]
    fn merged_runs_equal_the_stable_sort_of_the_runs_laid_end_to_end() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..200 {
            let runs: Vec<Vec<MediaEvidence>> = (0..1 + round % 6)
                .map(|run| {
                    let mut at: Vec<(u64, u64)> =
                        (0..next(40)).map(|_| (next(20), next(3))).collect();
                    at.sort();
                    at.iter()
                        .enumerate()
                        .map(|(i, &(ts, r))| MediaEvidence {
                            pref: PacketRef(r),
                            seq: i as u16,
                            ..ev(run, ts)
                        })
                        .collect()
                })
                .collect();
            let mut want: Vec<MediaEvidence> = runs.concat();
            want.sort_by_key(MediaEvidence::at);
            let got: Vec<MediaEvidence> =
                MergedRuns::new(runs.iter().map(|r| r.iter().copied())).collect();
            assert_eq!(got, want, "round {round}");
        }
    }
}
