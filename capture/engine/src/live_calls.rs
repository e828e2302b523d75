//! Snapshots of the calls in progress, for the live page: built from the
//! call table once per tick (the live sensor ticks once a second), never
//! per packet. Per stream the loss, jitter and MOS are those of a sliding
//! window: the stream's counters are remembered at each of the last
//! [`WINDOW_TICKS`] snapshots and the newest are diffed against the oldest.
//! A snapshot is bounded: at most `max_calls` calls (the newest), each with
//! at most [`SIP_FIRST`] + [`SIP_LAST`] SIP summaries; it says when it left
//! calls out. Calls that ended since the last snapshots stay in `ended` for
//! [`ENDED_KEEP_NS`] of capture time with their final figures, the ones
//! calls.csv and streams.csv get.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::calls::{Call, Stream, StreamKey};
use crate::media::codec::stream_codec;
use crate::media::quality::summary_estimate;
use voxtap_proto::stream_stats::StreamSummary;

/// Snapshots a stream's window spans (5 ticks of 1 s: the last 5 s).
pub const WINDOW_TICKS: usize = 5;
/// Calls a snapshot carries at most, by default (the newest).
pub const DEFAULT_MAX_CALLS: usize = 1000;
/// SIP summaries per call: the first ones and the latest ones.
pub const SIP_FIRST: usize = 10;
pub const SIP_LAST: usize = 4;
/// Characters of a SIP summary kept.
const SUMMARY_CHARS: usize = 80;
/// How long (capture time) an ended call stays in the snapshot.
pub const ENDED_KEEP_NS: u64 = 10_000_000_000;
/// Ended calls a snapshot carries at most.
pub const MAX_ENDED: usize = 200;

/// The calls in progress at one tick.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveSnapshot {
    /// Increases by one per snapshot of a run.
    pub seq: u64,
    /// Capture time of the snapshot (ns since the epoch).
    pub now_ns: u64,
    /// Every open call of the table (media-only records excluded).
    pub open_calls: u64,
    /// `calls` holds fewer than `open_calls` (the cap, `max_calls`).
    pub truncated: bool,
    pub max_calls: u64,
    /// Seconds the per-stream window figures span at most.
    pub window_ticks: u64,
    /// Time taken to build this snapshot, in microseconds.
    pub build_us: u64,
    /// Open calls, newest first.
    pub calls: Vec<LiveCall>,
    /// Calls that ended within the last [`ENDED_KEEP_NS`], latest first.
    pub ended: Vec<LiveCall>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveCall {
    pub call_id: String,
    pub no: u64,
    pub state: String,
    pub status_code: Option<u16>,
    pub start_ns: u64,
    /// Up to the snapshot for an open call; as in calls.csv once ended.
    pub duration_s: f64,
    pub from: String,
    pub to: String,
    /// The streams' codecs (streams.csv's names), else the SDP's first.
    pub codec: String,
    pub sip_messages: u64,
    pub rtp_packets: u64,
    pub ended: bool,
    pub end_reason: Option<String>,
    pub streams: Vec<LiveStream>,
    /// The first and the latest SIP messages, `sip_skipped` between them.
    pub sip: Vec<LiveSip>,
    pub sip_skipped: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveStream {
    pub src: String,
    pub dst: String,
    pub ssrc: u32,
    pub codec: String,
    /// Totals since the stream started.
    pub packets: u64,
    pub expected: u64,
    pub lost: i64,
    /// Over the window: packets received and expected (sequence numbers),
    /// lost = expected - received (never below 0), loss in percent.
    pub window_packets: u64,
    pub window_expected: u64,
    pub window_lost: u64,
    pub window_loss_pct: f64,
    /// Interarrival jitter (RFC 3550, smoothed over ~16 packets) now, ms.
    pub jitter_ms: f64,
    /// E-model estimate from the window's loss (as streams.csv's `mos`
    /// from the whole stream's); None without a rated codec or packets.
    pub mos: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveSip {
    pub ts_ns: u64,
    pub src: String,
    pub dst: String,
    pub summary: String,
}

/// A stream's counters at one snapshot.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    packets: u64,
    expected: u64,
}

/// Builds snapshots and keeps what their windows need between ticks.
pub struct LiveSnapshots {
    max_calls: usize,
    seq: u64,
    /// Per (call no, stream): its samples at the last snapshots, oldest
    /// first, at most `WINDOW_TICKS + 1`.
    history: HashMap<(u64, StreamKey), VecDeque<Sample>>,
    ended: VecDeque<(u64, LiveCall)>,
}

impl LiveSnapshots {
    pub fn new(max_calls: usize) -> Self {
        LiveSnapshots {
            max_calls,
            seq: 0,
            history: HashMap::new(),
            ended: VecDeque::new(),
        }
    }

    /// Calls that just ended (as the table hands them out): they stay in
    /// the snapshots for a while with their final figures.
    pub fn note_ended(&mut self, calls: &[Call], now_ns: u64) {
        for c in calls.iter().filter(|c| !c.is_media_only()) {
            let live = self.call(c, now_ns, true);
            self.ended.push_front((now_ns, live));
            for s in c.streams() {
                self.history.remove(&(c.no(), s.key));
            }
        }
        self.ended.truncate(MAX_ENDED);
    }

    /// The snapshot of `open` (the table's open calls) at capture time
    /// `now_ns`; samples every stream for the next windows.
    pub fn snapshot<'a>(
        &mut self,
        open: impl Iterator<Item = &'a Call>,
        now_ns: u64,
    ) -> LiveSnapshot {
        let started = std::time::Instant::now();
        let mut calls: Vec<&Call> = open.filter(|c| !c.is_media_only()).collect();
        let open_calls = calls.len();
        let newest = |c: &&Call| std::cmp::Reverse((c.start_ns(), c.no()));
        if calls.len() > self.max_calls && self.max_calls > 0 {
            // The newest `max_calls` without sorting them all.
            calls.select_nth_unstable_by_key(self.max_calls - 1, newest);
        }
        calls.truncate(self.max_calls);
        calls.sort_unstable_by_key(newest);
        // Streams of calls left out keep no history: their window starts
        // again if they come back into the snapshot.
        let mut history = std::mem::take(&mut self.history);
        let mut out = Vec::with_capacity(calls.len());
        for c in &calls {
            for s in c.streams() {
                // A new stream's window starts at its first packet.
                let mut h = history
                    .remove(&(c.no(), s.key))
                    .unwrap_or_else(|| VecDeque::from([Sample::default()]));
                h.push_back(sample(&s.stats.summary()));
                if h.len() > WINDOW_TICKS + 1 {
                    h.pop_front();
                }
                self.history.insert((c.no(), s.key), h);
            }
            out.push(self.call(c, now_ns, false));
        }
        self.ended
            .retain(|(t, _)| now_ns.saturating_sub(*t) <= ENDED_KEEP_NS);
        self.seq += 1;
        LiveSnapshot {
            seq: self.seq,
            now_ns,
            open_calls: open_calls as u64,
            truncated: open_calls > out.len(),
            max_calls: self.max_calls as u64,
            window_ticks: WINDOW_TICKS as u64,
            build_us: started.elapsed().as_micros() as u64,
            calls: out,
            ended: self.ended.iter().map(|(_, c)| c.clone()).collect(),
        }
    }

    fn call(&self, c: &Call, now_ns: u64, ended: bool) -> LiveCall {
        let streams: Vec<LiveStream> = c.streams().iter().map(|s| self.stream(c, s)).collect();
        let duration_s = if ended {
            c.duration_s()
        } else {
            now_ns.max(c.last_ns()).saturating_sub(c.start_ns()) as f64 / 1e9
        };
        let (sip, sip_skipped) = sip_summaries(c);
        LiveCall {
            call_id: c.call_id().to_string(),
            no: c.no(),
            state: c.state().as_str().to_string(),
            status_code: c.status_code(),
            start_ns: c.start_ns(),
            duration_s,
            from: c.from_user().to_string(),
            to: c.to_user().to_string(),
            codec: call_codec(c, &streams),
            sip_messages: c.sip_messages(),
            rtp_packets: c.rtp_packets(),
            ended,
            end_reason: c.end_reason().map(|r| r.as_str().to_string()),
            streams,
            sip,
            sip_skipped,
        }
    }

    /// A stream's figures; the window diffs its counters now against the
    /// oldest sample remembered (for an open call the newest sample is
    /// now's; an ended call's window ends at its last packet).
    fn stream(&self, c: &Call, s: &Stream) -> LiveStream {
        let sum = s.stats.summary();
        let (pt, _) = stream_codec(c, s, &sum.payload_types);
        let codec = c.codec_name(s, pt);
        let now = sample(&sum);
        let h = self.history.get(&(c.no(), s.key));
        let oldest = h.and_then(|h| h.front()).copied().unwrap_or_default();
        let window_packets = now.packets.saturating_sub(oldest.packets);
        let window_expected = now.expected.saturating_sub(oldest.expected);
        let window_lost = window_expected.saturating_sub(window_packets);
        let window_loss_pct = if window_expected > 0 {
            100.0 * window_lost as f64 / window_expected as f64
        } else {
            0.0
        };
        let mos = summary_estimate(&codec, window_lost as i64, window_expected, sum.ptime_ms)
            .map(|(_, mos)| mos);
        LiveStream {
            src: s.key.src.to_string(),
            dst: s.key.dst.to_string(),
            ssrc: s.key.ssrc,
            codec,
            packets: sum.packets,
            expected: sum.expected,
            lost: sum.lost,
            window_packets,
            window_expected,
            window_lost,
            window_loss_pct,
            jitter_ms: s.stats.jitter_ms(),
            mos,
        }
    }
}

fn sample(sum: &StreamSummary) -> Sample {
    Sample {
        packets: sum.packets,
        expected: sum.expected,
    }
}

/// The streams' distinct codecs in order, else the first payload the SDP
/// offered (a call that has no media yet).
fn call_codec(c: &Call, streams: &[LiveStream]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for s in streams {
        if !names.contains(&s.codec.as_str()) {
            names.push(&s.codec);
        }
    }
    if !names.is_empty() {
        return names.join("/");
    }
    c.media()
        .iter()
        .find(|m| !m.disabled)
        .and_then(|m| m.rtpmap.first())
        .map(|r| r.encoding.to_string())
        .unwrap_or_default()
}

fn sip_summaries(c: &Call) -> (Vec<LiveSip>, u64) {
    let all = c.sip();
    let one = |e: &crate::calls::SipEntry| LiveSip {
        ts_ns: e.ts_ns,
        src: e.src.to_string(),
        dst: e.dst.to_string(),
        summary: e.summary.chars().take(SUMMARY_CHARS).collect(),
    };
    if all.len() <= SIP_FIRST + SIP_LAST {
        return (all.iter().map(one).collect(), 0);
    }
    let tail = &all[all.len() - SIP_LAST..];
    let kept = all[..SIP_FIRST].iter().chain(tail).map(one).collect();
    (kept, (all.len() - SIP_FIRST - SIP_LAST) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::{CallConfig, CallTable, PacketRef};
    use std::net::SocketAddr;

    const S: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn sip(t: &mut CallTable, ts: u64, src: &str, dst: &str, text: &str) {
        let m = voxtap_proto::sip::parse(text.as_bytes()).unwrap();
        t.on_sip(ts, addr(src), addr(dst), "UDP", &m, &[(ts, PacketRef(ts))]);
    }

    fn with_sdp(head: &str, ip: &str, port: u16) -> String {
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
        );
        format!(
            "{head}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
    }

    /// INVITE and 200 OK of call `cid` from `user` starting at `t0`; media
    /// 10.0.0.2:5000 -> 10.0.0.1:<4000 + n>.
    fn answered_call(t: &mut CallTable, cid: &str, user: &str, n: u16, t0: u64) {
        let head = |first: &str, cseq: &str| {
            format!(
                "{first}\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK{cid}\r\nFrom: <sip:{user}@x>;tag=1\r\nTo: <sip:bob@x>{}\r\nCall-ID: {cid}\r\nCSeq: {cseq}\r\n",
                if first.starts_with("SIP") {
                    ";tag=2"
                } else {
                    ""
                }
            )
        };
        let invite = with_sdp(
            &head("INVITE sip:bob@x SIP/2.0", "1 INVITE"),
            "10.0.0.1",
            4000 + n,
        );
        let ok = with_sdp(&head("SIP/2.0 200 OK", "1 INVITE"), "10.0.0.2", 5000 + n);
        sip(t, t0, "10.0.0.1:5060", "10.0.0.2:5060", &invite);
        sip(t, t0 + 100 * MS, "10.0.0.2:5060", "10.0.0.1:5060", &ok);
    }

    fn rtp(t: &mut CallTable, ts: u64, n: u16, seq: u16) {
        let mut p = vec![0x80, 8];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend_from_slice(&[0xd5; 160]);
        let (src, dst) = (
            addr(&format!("10.0.0.2:{}", 5000 + n)),
            addr(&format!("10.0.0.1:{}", 4000 + n)),
        );
        assert!(t.on_udp(ts, src, dst, &p, &[(ts, PacketRef(ts))]));
    }

    /// G.107 for PCMA with concealment (Ie 0, Bpl 25.1), 80 ms delay (no
    /// delay impairment), random loss: written out here, not taken from
    /// the quality module.
    fn pcma_mos(loss_pct: f64) -> f64 {
        let r = 93.2 - 95.0 * loss_pct / (loss_pct + 25.1);
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6
    }

    /// A 20 ms PCMA stream loses every 10th packet from second 3 to 6; the
    /// snapshot at every second has, over the window (the last 5 s), the
    /// received, expected and lost packets counted here from what was
    /// sent, and the MOS of that loss.
    #[test]
    fn window_figures_equal_independent_counts() {
        let mut t = CallTable::new(CallConfig::default());
        let mut live = LiveSnapshots::new(DEFAULT_MAX_CALLS);
        let t0 = 100 * S;
        answered_call(&mut t, "w@x", "alice", 0, t0);
        // (time, seq, delivered) of every packet sent.
        let mut sent: Vec<(u64, u16, bool)> = Vec::new();
        let mut snaps: Vec<u64> = vec![t0];
        let mut seq = 1000u16;
        for sec in 1..=12u64 {
            for i in 0..50u64 {
                let ts = t0 + (sec - 1) * S + 120 * MS + i * 20 * MS;
                let lose = (3..6).contains(&sec) && i % 10 == 3;
                if !lose {
                    rtp(&mut t, ts, 0, seq);
                }
                sent.push((ts, seq, !lose));
                seq += 1;
            }
            let now = t0 + sec * S + 100 * MS;
            let snap = live.snapshot(t.open(), now);
            snaps.push(now);
            let st = &snap.calls[0].streams[0];
            // The window starts at the snapshot WINDOW_TICKS back (or at
            // the start), and ends now.
            let from = snaps[snaps.len().saturating_sub(WINDOW_TICKS + 1)];
            let in_w = |p: &&(u64, u16, bool)| p.0 > from && p.0 <= now;
            let received = sent.iter().filter(in_w).filter(|p| p.2).count() as u64;
            // Expected: highest sequence received now minus at the window's
            // start (the stream's first sequence - 1 before it started).
            let highest = |until: u64| {
                sent.iter()
                    .filter(|p| p.2 && p.0 <= until)
                    .map(|p| u64::from(p.1))
                    .max()
                    .unwrap_or(999)
            };
            let expected = highest(now) - highest(from);
            let lost = expected - received;
            assert_eq!(
                (st.window_packets, st.window_expected, st.window_lost),
                (received, expected, lost),
                "second {sec}"
            );
            let pct = 100.0 * lost as f64 / expected as f64;
            assert!((st.window_loss_pct - pct).abs() < 1e-9, "second {sec}");
            assert!(
                (st.mos.unwrap() - pcma_mos(pct)).abs() < 1e-9,
                "second {sec}"
            );
            assert_eq!(st.packets, sent.iter().filter(|p| p.2).count() as u64);
            assert_eq!(st.jitter_ms, 0.0, "regular arrivals");
            assert_eq!(st.codec, "PCMA");
            if sec == 4 {
                assert_eq!(lost, 10, "every 10th packet of seconds 3 and 4");
            }
            if sec >= 11 {
                assert_eq!(lost, 0, "the loss left the window");
                assert!(st.mos.unwrap() > 4.4);
            }
        }
        let c = &live.snapshot(t.open(), t0 + 13 * S).calls[0];
        assert_eq!((c.from.as_str(), c.to.as_str()), ("alice", "bob"));
        assert_eq!((c.state.as_str(), c.codec.as_str()), ("answered", "PCMA"));
        assert!((c.duration_s - 13.0).abs() < 1e-9);
        assert_eq!(c.sip.len(), 2);
        assert_eq!(c.sip[0].summary, "INVITE sip:bob@x");
    }

    /// More open calls than the cap: the newest are kept and the snapshot
    /// says it left some out; a call that ends stays in `ended` with its
    /// final figures, then leaves.
    #[test]
    fn capped_and_ended() {
        let mut t = CallTable::new(CallConfig::default());
        let mut live = LiveSnapshots::new(2);
        for n in 0..3u16 {
            answered_call(
                &mut t,
                &format!("c{n}@x"),
                &format!("u{n}"),
                n,
                S * (10 + u64::from(n)),
            );
        }
        for i in 0..10u16 {
            rtp(&mut t, 13 * S + u64::from(i) * 20 * MS, 1, i);
        }
        let snap = live.snapshot(t.open(), 14 * S);
        assert_eq!((snap.open_calls, snap.truncated), (3, true));
        let ids: Vec<&str> = snap.calls.iter().map(|c| c.call_id.as_str()).collect();
        assert_eq!(ids, ["c2@x", "c1@x"]);
        assert_eq!(snap.calls[1].rtp_packets, 10);
        t.finish();
        let ended = t.drain_ended();
        live.note_ended(&ended, 15 * S);
        let snap = live.snapshot(t.open(), 15 * S);
        assert_eq!((snap.open_calls, snap.calls.len()), (0, 0));
        assert_eq!(snap.ended.len(), 3);
        let c1 = snap.ended.iter().find(|c| c.call_id == "c1@x").unwrap();
        let real = ended.iter().find(|c| c.call_id() == "c1@x").unwrap();
        assert!(c1.ended);
        assert_eq!(c1.duration_s, real.duration_s());
        assert_eq!((c1.rtp_packets, c1.streams[0].packets), (10, 10));
        let snap = live.snapshot(t.open(), 15 * S + ENDED_KEEP_NS + 1);
        assert!(snap.ended.is_empty());
    }

    /// Cost of a snapshot (run by hand: `cargo test -p voxtap-engine --lib
    /// --release live_calls::tests::snapshot_cost -- --ignored --nocapture`):
    /// `n` open calls, each with a stream of 50 packets, the snapshot capped
    /// at the default; build time and JSON size.
    #[test]
    #[ignore]
    fn snapshot_cost() {
        for n in [100u16, 1000, 10_000] {
            let mut t = CallTable::new(CallConfig {
                flood_invites_per_s: 0,
                ..Default::default()
            });
            let mut live = LiveSnapshots::new(DEFAULT_MAX_CALLS);
            for i in 0..n {
                answered_call(
                    &mut t,
                    &format!("c{i}@x"),
                    &format!("u{i}"),
                    i,
                    S + u64::from(i) * MS,
                );
                for k in 0..50u16 {
                    rtp(&mut t, 30 * S + u64::from(k) * 20 * MS, i, k);
                }
            }
            let snap = live.snapshot(t.open(), 32 * S);
            let started = std::time::Instant::now();
            let snap2 = live.snapshot(t.open(), 33 * S);
            let build = started.elapsed();
            let json = serde_json::to_vec(&snap2).unwrap();
            println!(
                "{n} open calls: snapshot of {} built in {:.2} ms (reported {} us), JSON {} KB, serialised in {:.2} ms",
                snap.calls.len(),
                build.as_secs_f64() * 1e3,
                snap2.build_us,
                json.len() / 1024,
                {
                    let s = std::time::Instant::now();
                    let _ = serde_json::to_vec(&snap2).unwrap();
                    s.elapsed().as_secs_f64() * 1e3
                }
            );
        }
    }
}
