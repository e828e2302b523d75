//! Links in the parallel engine: one replica (worker 0) links by
//! signalling as each SIP request comes (`link_by_signalling`) and weighs
//! every replica's media evidence at each sweep (`evidence.rs`), recording
//! every link it made, in the order made; the meeting posts them and every
//! other replica makes them alike, at the same point of its sweep, so that
//! every replica's groups stay the same (a group decides when its calls
//! are handed out, and the joining thread merges a call's replicas per
//! sweep: replicas that disagreed on groups would split calls). Weighing
//! everyone's evidence in every replica cost each of them as much as the
//! weighing replica, and an early-stream store each; reading every
//! request's correlation headers and recent INVITEs in every replica cost
//! each ~9% of its instructions and the memory of those indexes (issue 18).
//!
//! Between a link by signalling (at message time in worker 0) and the
//! meeting that posts it, the other replicas have the group as it was
//! before: only closing a call reads it there (sweeps close nothing before
//! the links are made), and a call closes between meetings only when its
//! Call-ID starts a new call. Such a call is held, parked, until the posted
//! links are made, then closed as worker 0 closed it ([`Groups::hold`]).

use std::collections::HashMap;

use super::{Groups, LinkMethod, OpenCalls};
use crate::calls::call::Call;
use crate::calls::call_ids::CallIds;

/// A call as every replica names it (call numbers differ between
/// replicas): its Call-ID and start, which tells apart the calls a Call-ID
/// started one after the other.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CallName {
    pub call_id: Box<[u8]>,
    pub start_ns: u64,
}

impl CallName {
    /// Its name (the joining thread keys a SIP call's replicas by it too).
    pub(crate) fn of(c: &Call) -> Self {
        CallName {
            call_id: c.call_id_raw().into(),
            start_ns: c.start_ns(),
        }
    }
}

/// A link the weighing replica made, as `Groups::link` made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostedLink {
    pub a: CallName,
    pub b: CallName,
    pub method: LinkMethod,
    pub detail: String,
}

impl Groups {
    /// Links are recorded from now until [`Self::take_made`] (those
    /// recorded already are kept).
    pub(in crate::calls) fn record_links(&mut self) {
        self.made.get_or_insert_with(Vec::new);
    }

    /// The links recorded since [`Self::record_links`], in the order made;
    /// recording stops.
    pub(in crate::calls) fn take_made(&mut self) -> Vec<PostedLink> {
        self.made.take().unwrap_or_default()
    }

    /// A link (by signalling or media): made, and recorded while recording.
    pub(super) fn link_recorded(
        &mut self,
        open: &mut OpenCalls,
        (a, b): (u64, u64),
        method: LinkMethod,
        detail: String,
    ) {
        let recorded = self.made.is_some().then(|| detail.clone());
        if !self.link(open, a, b, method, detail) {
            return;
        }
        let (Some(detail), Some(ca), Some(cb)) = (recorded, self.call(open, a), self.call(open, b))
        else {
            return;
        };
        let link = PostedLink {
            a: CallName::of(ca),
            b: CallName::of(cb),
            method,
            detail,
        };
        if let Some(made) = &mut self.made {
            made.push(link);
        }
    }

    /// Open or parked call `no`.
    fn call<'c>(&'c self, open: &'c OpenCalls, no: u64) -> Option<&'c Call> {
        open.get(&no).map(|c| &**c).or_else(|| self.parked.get(&no))
    }

    /// Links another replica made and posted, made here in the same order:
    /// each names its calls by [`CallName`], open here or parked (closed,
    /// waiting for the rest of its group). Returns how many name a call not
    /// known here: none should, as every replica has the same open and
    /// parked calls at a meeting (counted, and checked by the tests).
    pub(in crate::calls) fn apply_links(
        &mut self,
        open: &mut OpenCalls,
        by_call_id: &CallIds,
        links: &[PostedLink],
    ) -> u64 {
        if links.is_empty() {
            return 0;
        }
        // Linking neither opens, closes nor parks a call: every link's
        // calls are found first, parked ones through one map of them.
        let parked: HashMap<(&[u8], u64), u64> = self
            .parked
            .iter()
            .map(|(&no, c)| ((c.call_id_raw(), c.start_ns()), no))
            .collect();
        let find = |n: &CallName| {
            by_call_id
                .get(&n.call_id, open)
                .filter(|no| open.get(no).is_some_and(|c| c.start_ns() == n.start_ns))
                .or_else(|| parked.get(&(&n.call_id[..], n.start_ns)).copied())
        };
        let found: Vec<Option<(u64, u64)>> = links
            .iter()
            .map(|l| Some((find(&l.a)?, find(&l.b)?)))
            .collect();
        let mut unresolved = 0;
        for (l, calls) in links.iter().zip(found) {
            match calls {
                Some((a, b)) => {
                    self.link(open, a, b, l.method, l.detail.clone());
                }
                None => unresolved += 1,
            }
        }
        unresolved
    }

    /// A replica that makes posted links closes `call` between meetings
    /// (its Call-ID started a new call): it waits, parked, for the links
    /// made since the last meeting ([`Self::close_held`]). Closed now, it
    /// would be handed out or parked by its group as it was, not as the
    /// links worker 0 made by signalling since left it (the joining thread
    /// would split the logical call), and a link posted to it would find
    /// no call (counted as unresolved).
    pub(in crate::calls) fn hold(&mut self, call: Call) {
        self.held.push(call.no());
        self.parked.insert(call.no(), call);
    }

    /// The calls [`Self::hold`] held, closed in the order they closed, the
    /// posted links made: each is handed out with the rest of its group or
    /// stays parked, as in the replica that closed it at once (groups only
    /// grow, and a call of its group that closed since was held too).
    pub(in crate::calls) fn close_held(&mut self, open: &OpenCalls) -> Vec<Call> {
        let mut out = Vec::new();
        for no in std::mem::take(&mut self.held) {
            // Gone already: handed out with a group member held after it.
            if let Some(call) = self.parked.remove(&no) {
                out.extend(self.close(open, call));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use crate::calls::{Agreed, Call, CallConfig, CallTable, DueSet, PacketRef};

    const MS: u64 = 1_000_000;

    fn at(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A SIP message of dialog `cid` (`extra`: more headers), with an SDP
    /// offering media at `sdp`. Each dialog's numbers are its own: no leg
    /// is another's next hop by signalling.
    fn sip(start: &str, cid: &str, cseq: &str, extra: &str, sdp: Option<SocketAddr>) -> Vec<u8> {
        let body = sdp.map_or(String::new(), |m| {
            format!(
                "v=0\r\no=- 1 1 IN IP4 {0}\r\ns=-\r\nc=IN IP4 {0}\r\nt=0 0\r\nm=audio {1} RTP/AVP 0\r\n",
                m.ip(),
                m.port()
            )
        });
        let tag = if start.starts_with("INVITE") {
            ""
        } else {
            ";tag=t"
        };
        let ctype = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        format!(
            "{start}\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK{cid}{cseq}\r\nFrom: <sip:{cid}@x>;tag=f\r\nTo: <sip:to-{cid}@x>{tag}\r\nCall-ID: {cid}\r\nCSeq: {cseq}\r\n{extra}{ctype}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    /// RTP whose payload, speech-like (distinctive), is the same for the
    /// same `voice`.
    fn rtp(seq: u16, rtp_ts: u32, ssrc: u32, voice: u64) -> Vec<u8> {
        let mut p = vec![0x80, 0];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&rtp_ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        let mut x = voice.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        for _ in 0..160 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            p.push(x as u8);
        }
        p
    }

    /// Replicas as the parallel engine's workers 0 (weighs) and 1 (makes
    /// the links posted): both see all SIP, each the media given it.
    struct Replicas([CallTable; 2]);

    impl Replicas {
        fn new() -> Self {
            let cfg = CallConfig {
                linger_ns: 10 * MS,
                ..Default::default()
            };
            let mut t = [CallTable::new(cfg.clone()), CallTable::new(cfg)];
            t.iter_mut().for_each(CallTable::set_explicit_sweeps);
            t[1].weigh_elsewhere();
            Replicas(t)
        }

        fn sip(&mut self, ts: u64, src: &str, dst: &str, raw: Vec<u8>) {
            let m = voxtap_proto::sip::parse(&raw).unwrap();
            for t in &mut self.0 {
                t.on_sip(ts, at(src), at(dst), "UDP", &m, &[]);
            }
        }

        /// A relay's leg `cid`: `a` calls `b`, each offering its media
        /// address, answered.
        fn leg(&mut self, ts: u64, cid: &str, a: &str, b: &str, extra: &str) {
            let (sa, sb) = (at(a), at(b));
            let (ua, ub) = (format!("{}:5060", sa.ip()), format!("{}:5060", sb.ip()));
            let invite = sip("INVITE sip:b@x SIP/2.0", cid, "1 INVITE", extra, Some(sa));
            self.sip(ts, &ua, &ub, invite);
            let ok = sip("SIP/2.0 200 OK", cid, "1 INVITE", "", Some(sb));
            self.sip(ts + MS, &ub, &ua, ok);
        }

        fn media(&mut self, w: usize, ts: u64, src: &str, dst: &str, raw: &[u8]) {
            let refs = [(0, PacketRef(ts))];
            self.0[w].on_udp(ts, at(src), at(dst), raw, &refs);
        }

        /// A sweep meeting as `Worker::meet` holds it (no latches here),
        /// then the sweep; the calls handed out.
        fn sweep(&mut self, now: u64) -> [Vec<Call>; 2] {
            let [t0, t1] = &mut self.0;
            let due = [t0.sweep_due(now), t1.sweep_due(now)];
            let mut agreed = Agreed::from_replicas(&[&due[0], &due[1]]);
            assert!(agreed.latches.is_empty());
            let made = [&mut *t0, &mut *t1].map(|t| DueSet {
                links: Arc::new(t.weigh_posted(&agreed.evidence)),
                ..Default::default()
            });
            assert!(made[1].links.is_empty(), "replica 1 weighs nothing");
            agreed.links = Agreed::from_replicas(&[&made[0], &made[1]]).links;
            t0.sweep_agreed(&agreed);
            t1.sweep_agreed(&agreed);
            self.0.each_mut().map(CallTable::drain_ended)
        }

        fn finish(&mut self) -> [Vec<Call>; 2] {
            self.0.each_mut().map(|t| {
                t.finish();
                t.drain_ended()
            })
        }
    }

    /// Relay 10.0.9.1 between 10.0.1.1 and 10.0.2.1: leg-a (with leg-c
    /// linked to it by a header, and open to the end) and leg-b; leg-a
    /// ends, and is parked for leg-c, before the relay's copy of its media
    /// on leg-b (SSRC and sequence numbers rewritten) is weighed. Relay
    /// 10.0.9.2 between 10.0.4.1 and 10.0.5.1: leg-d and leg-e, the SSRC
    /// kept. Each leg's media goes to the other replica than its
    /// forwarded copy. Returns the calls each replica handed out at the
    /// sweep after leg-a ended (none) and the calls then open, and the
    /// calls handed out at the end.
    fn relayed_legs() -> (Parked, [Vec<Call>; 2], Replicas) {
        let mut r = Replicas::new();
        r.leg(100 * MS, "leg-a", "10.0.1.1:4000", "10.0.9.1:6000", "");
        r.leg(110 * MS, "leg-b", "10.0.9.1:6002", "10.0.2.1:5000", "");
        let named = "X-Call-ID: leg-a\r\n";
        r.leg(120 * MS, "leg-c", "10.0.9.1:6004", "10.0.3.1:5000", named);
        r.leg(130 * MS, "leg-d", "10.0.4.1:4000", "10.0.9.2:6000", "");
        r.leg(140 * MS, "leg-e", "10.0.9.2:6002", "10.0.5.1:5000", "");
        for i in 0..3u16 {
            let ts = 900 * MS + u64::from(i) * 20 * MS;
            let p = rtp(100 + i, 8000 + 160 * u32::from(i), 0x1111, u64::from(i));
            r.media(0, ts, "10.0.1.1:4000", "10.0.9.1:6000", &p);
        }
        let bye = sip("BYE sip:b@x SIP/2.0", "leg-a", "2 BYE", "", None);
        r.sip(950 * MS, "10.0.1.1:5060", "10.0.9.1:5060", bye);
        let ok = sip("SIP/2.0 200 OK", "leg-a", "2 BYE", "", None);
        r.sip(951 * MS, "10.0.9.1:5060", "10.0.1.1:5060", ok);
        let parked = (
            r.sweep(1000 * MS),
            r.0.each_ref().map(CallTable::open_calls),
        );
        for i in 0..3u16 {
            let ts = 1050 * MS + u64::from(i) * 20 * MS;
            let p = rtp(500 + i, 90_000 + 160 * u32::from(i), 0x2222, u64::from(i));
            r.media(1, ts, "10.0.9.1:6002", "10.0.2.1:5000", &p);
            let p = rtp(7 + i, 300 * u32::from(i), 0x3333, 10 + u64::from(i));
            r.media(1, ts, "10.0.4.1:4000", "10.0.9.2:6000", &p);
            r.media(0, ts + 2 * MS, "10.0.9.2:6002", "10.0.5.1:5000", &p);
        }
        r.sweep(2000 * MS);
        (parked, r.finish(), r)
    }

    /// What the replicas handed out at a sweep, and their open calls then.
    type Parked = ([Vec<Call>; 2], [usize; 2]);

    /// (Call-ID, links as "other method", group) of each call, by Call-ID.
    fn legs(calls: &[Call]) -> Vec<(String, Vec<String>, String)> {
        let mut out: Vec<_> = calls
            .iter()
            .map(|c| {
                let links = c.links().iter();
                let links = links.map(|l| format!("{} {}", l.other, l.method.as_str()));
                (c.call_id().to_string(), links.collect(), c.group().into())
            })
            .collect();
        out.sort();
        out
    }

    /// [`legs`]'s rows, from literals.
    fn owned(rows: &[(&str, Vec<&str>, &str)]) -> Vec<(String, Vec<String>, String)> {
        let row = |(c, l, g): &(&str, Vec<&str>, &str)| {
            let links = l.iter().map(|s| s.to_string()).collect();
            (c.to_string(), links, g.to_string())
        };
        rows.iter().map(row).collect()
    }

    /// The replica that weighs nothing makes the links the weighing one
    /// posted: both end with the same links (method and evidence alike)
    /// and groups, and resolve every link.
    #[test]
    fn a_replica_makes_the_links_the_weighing_one_posted() {
        let (_, [w0, w1], r) = relayed_legs();
        let want = [
            (
                "leg-a",
                vec!["leg-c header", "leg-b media-payload"],
                "leg-a",
            ),
            ("leg-b", vec!["leg-a media-payload"], "leg-a"),
            ("leg-c", vec!["leg-a header"], "leg-a"),
            ("leg-d", vec!["leg-e media-ssrc"], "leg-d"),
            ("leg-e", vec!["leg-d media-ssrc"], "leg-d"),
        ];
        let want = owned(&want);
        assert_eq!(legs(&w0), want);
        assert_eq!(legs(&w1), want);
        let details = |calls: &[Call]| -> Vec<String> {
            calls
                .iter()
                .flat_map(|c| c.links())
                .map(|l| l.detail.clone())
                .collect()
        };
        assert_eq!(details(&w0), details(&w1));
        let [s0, s1] = r.0.each_ref().map(CallTable::stats);
        assert_eq!((s0.legs_linked, s1.legs_linked), (3, 3));
        assert_eq!((s0.legs_links_unresolved, s1.legs_links_unresolved), (0, 0));
    }

    /// leg-a was closed and parked (waiting for leg-c) when its media
    /// linked leg-b: the replica that applied the link found it parked.
    #[test]
    fn a_posted_link_to_a_parked_call_resolves() {
        let ((out, open), [_, w1], r) = relayed_legs();
        assert!(
            out.iter().all(Vec::is_empty),
            "leg-a parked, not handed out"
        );
        assert_eq!(open, [4, 4], "leg-a closed");
        let b = w1.iter().find(|c| c.call_id() == "leg-b").unwrap();
        assert_eq!(b.links().len(), 1);
        assert_eq!(b.links()[0].other, "leg-a");
        assert_eq!(r.0[1].stats().legs_links_unresolved, 0);
    }

    /// An initial INVITE of dialog `cid` from caller `from` to callee `to`
    /// (`extra`: more headers).
    fn invite(cid: &str, from: &str, to: &str, cseq: u32, extra: &str) -> Vec<u8> {
        format!(
            "INVITE sip:{to}@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK{cid}{cseq}\r\nFrom: <sip:{from}@x>;tag=f\r\nTo: <sip:{to}@x>\r\nCall-ID: {cid}\r\nCSeq: {cseq} INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    /// Dialog `cid` ends (BYE answered) at `ts`.
    fn bye(r: &mut Replicas, ts: u64, cid: &str) {
        let (a, b) = ("10.0.7.1:5060", "10.0.7.2:5060");
        r.sip(ts, a, b, sip("BYE sip:b@x SIP/2.0", cid, "2 BYE", "", None));
        r.sip(ts + MS, b, a, sip("SIP/2.0 200 OK", cid, "2 BYE", "", None));
    }

    /// Links by signalling, all made by replica 0 as the SIP comes: leg-q
    /// is leg-p's next hop (its INVITE left the box leg-p's reached, same
    /// numbers); leg-r names leg-s by a header before leg-s is seen; leg-t
    /// and leg-u share a charging vector. Before the meeting, leg-r ended
    /// and its Call-ID started a new call (leg-r closes then, parked for
    /// leg-s), and so did leg-t's and leg-u's (handed out together).
    /// Returns the replicas' signalling links and state before the
    /// meeting, what each handed out at it, and at the end.
    fn signalling_legs() -> (Before, [Vec<Call>; 2], [Vec<Call>; 2], Replicas) {
        let mut r = Replicas::new();
        let mut feed = |ts: u64, src: &str, dst: &str, raw: Vec<u8>| r.sip(ts * MS, src, dst, raw);
        let (box_in, box_out) = ("10.0.9.1:5060", "10.0.9.1:5062");
        feed(
            100,
            "10.0.1.1:5060",
            box_in,
            invite("leg-p", "+111", "222", 1, ""),
        );
        feed(
            110,
            box_out,
            "10.0.2.1:5060",
            invite("leg-q", "111", "+222", 1, ""),
        );
        let named = "X-Call-ID: leg-s\r\n";
        feed(
            120,
            "10.0.3.1:5060",
            "10.0.3.2:5060",
            invite("leg-r", "31", "32", 1, named),
        );
        feed(
            130,
            "10.0.3.2:5060",
            "10.0.3.3:5060",
            invite("leg-s", "33", "34", 1, ""),
        );
        let icid = "P-Charging-Vector: icid-value=\"c-1\";orig-ioi=a\r\n";
        feed(
            140,
            "10.0.4.1:5060",
            "10.0.4.2:5060",
            invite("leg-t", "41", "42", 1, icid),
        );
        feed(
            150,
            "10.0.4.2:5060",
            "10.0.4.3:5060",
            invite("leg-u", "43", "44", 1, icid),
        );
        let before = (
            r.0.each_ref().map(|t| t.stats().legs_linked),
            r.0.each_ref().map(CallTable::signalling_state),
        );
        for (ts, cid) in [(200, "leg-r"), (210, "leg-t"), (220, "leg-u")] {
            bye(&mut r, ts * MS, cid);
            let again = invite(cid, "9", "8", 3, "");
            r.sip((ts + 50) * MS, "10.0.7.1:5060", "10.0.7.2:5060", again);
        }
        let swept = r.sweep(1000 * MS);
        (before, swept, r.finish(), r)
    }

    /// Each replica's links before a meeting, and what its linking by
    /// signalling keeps.
    type Before = ([u64; 2], [usize; 2]);

    /// Replica 0 links by signalling, replica 1 keeps nothing for it and
    /// makes the posted links at the meeting: both hand out the same calls
    /// at it (leg-t and leg-u, closed before it by a new call on their
    /// Call-IDs) and at the end, with the same links and groups, every
    /// link resolved.
    #[test]
    fn a_replica_makes_the_links_posted_by_signalling() {
        let ((linked, state), swept, [w0, w1], r) = signalling_legs();
        assert_eq!(linked, [3, 0], "replica 1 links nothing by itself");
        assert!(state[0] > 0 && state[1] == 0, "{state:?}");
        let tu = |g: &str| {
            vec![
                (
                    "leg-t".into(),
                    vec!["leg-u p-charging-vector".into()],
                    g.into(),
                ),
                (
                    "leg-u".into(),
                    vec!["leg-t p-charging-vector".into()],
                    g.into(),
                ),
            ]
        };
        assert_eq!(legs(&swept[0]), tu("leg-t"));
        assert_eq!(legs(&swept[1]), tu("leg-t"));
        let want = owned(&[
            ("leg-p", vec!["leg-q signalling"], "leg-p"),
            ("leg-q", vec!["leg-p signalling"], "leg-p"),
            ("leg-r", vec![], "leg-r"),
            ("leg-r", vec!["leg-s header"], "leg-r"),
            ("leg-s", vec!["leg-r header"], "leg-r"),
            ("leg-t", vec![], "leg-t"),
            ("leg-u", vec![], "leg-u"),
        ]);
        assert_eq!(legs(&w0), want);
        assert_eq!(legs(&w1), want);
        let [s0, s1] = r.0.each_ref().map(CallTable::stats);
        assert_eq!((s0.legs_linked, s1.legs_linked), (3, 3));
        assert_eq!((s0.legs_links_unresolved, s1.legs_links_unresolved), (0, 0));
    }
}
