//! The call table: SIP messages create and drive calls, SDP registers the
//! (address, port) endpoints each side will receive media on, and RTP/RTCP
//! packets are attributed to calls by those endpoints (never by SSRC: real
//! captures reuse SSRCs across calls).

use std::collections::HashMap;
use std::net::SocketAddr;

use super::call::{Call, EndReason, PacketRef, SipPacket, announced_by};
use super::endpoints::{self, EndpointEvent, EndpointUse, Endpoints, Role};
use super::legs::{self, Groups, LegConfig};
use super::orphans::Orphans;
use voxtap_proto::rtp::{self, RtpPacket};
use voxtap_proto::sdp;
use voxtap_proto::sip::{Message, Method, StartLine};

#[derive(Clone, Debug)]
pub struct CallConfig {
    /// A call with no packet for this long (capture time) is closed.
    pub idle_timeout_ns: u64,
    /// After BYE, CANCEL or a final failure, how long trailing packets
    /// (200 to BYE, ACK, last RTP) still count for the call.
    pub linger_ns: u64,
    /// Hard cap on open calls; new Call-IDs beyond it are counted and ignored.
    pub max_calls: usize,
    /// Media seen before its SDP: how many packets are held, and how long.
    pub max_orphans: usize,
    pub orphan_max_age_ns: u64,
    /// Linking the legs of B2BUA/SBC calls.
    pub legs: LegConfig,
    /// Media from an address the SDP never named is latched to the call
    /// for this long after the SDP that announced the endpoint it reached.
    pub latch_window_ns: u64,
    /// Payload fingerprints match across legs only this close in time (a
    /// relay forwards within milliseconds; replayed test audio in two
    /// unrelated calls is further apart).
    pub payload_match_window_ns: u64,
}

impl Default for CallConfig {
    fn default() -> Self {
        CallConfig {
            idle_timeout_ns: 300 * 1_000_000_000,
            linger_ns: 5 * 1_000_000_000,
            max_calls: 1_000_000,
            max_orphans: 200_000,
            orphan_max_age_ns: 30 * 1_000_000_000,
            legs: LegConfig::default(),
            latch_window_ns: 30 * 1_000_000_000,
            payload_match_window_ns: 250_000_000,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct CallTableStats {
    pub calls_created: u64,
    pub calls_ended: u64,
    pub calls_rejected_limit: u64,
    pub sip_without_call_id: u64,
    pub sdp_errors: u64,
    pub media_packets: u64,
    pub media_unparsed: u64,
    pub unmatched_udp: u64,
    pub orphans_claimed: u64,
    pub orphans_expired: u64,
    pub orphans_dropped: u64,
    pub legs_linked: u64,
    pub media_latched: u64,
}

pub struct CallTable {
    cfg: CallConfig,
    calls: HashMap<u64, Call>,
    by_call_id: HashMap<Box<[u8]>, u64>,
    endpoints: Endpoints,
    orphans: Orphans,
    groups: Groups,
    next_no: u64,
    ended: Vec<Call>,
    last_sweep_ns: u64,
    now_ns: u64,
    stats: CallTableStats,
}

const SWEEP_EVERY_NS: u64 = 1_000_000_000;

impl CallTable {
    pub fn new(cfg: CallConfig) -> Self {
        let orphans = Orphans::new(cfg.max_orphans, cfg.orphan_max_age_ns);
        CallTable {
            cfg,
            calls: HashMap::new(),
            by_call_id: HashMap::new(),
            endpoints: Endpoints::default(),
            orphans,
            groups: Groups::default(),
            next_no: 1,
            ended: Vec::new(),
            last_sweep_ns: 0,
            now_ns: 0,
            stats: CallTableStats::default(),
        }
    }

    pub fn stats(&self) -> CallTableStats {
        let mut s = self.stats.clone();
        let o = self.orphans.stats();
        s.orphans_expired = o.expired;
        s.orphans_dropped = o.dropped;
        s.legs_linked = self.groups.linked();
        s
    }

    pub fn open_calls(&self) -> usize {
        self.calls.len()
    }

    /// Start collecting [`EndpointEvent`]s (drain them with
    /// [`Self::drain_endpoint_events`]).
    pub fn track_endpoints(&mut self) {
        self.endpoints.track_events();
    }

    /// Moves the endpoint events since the last drain into `out` (which keeps
    /// its capacity: no allocation in steady state).
    pub fn drain_endpoint_events(&mut self, out: &mut Vec<EndpointEvent>) {
        self.endpoints.drain_events(out);
    }

    /// The capture lost `n` packets just now: every open call may have lost
    /// some of its own, so each records it.
    pub fn note_capture_loss(&mut self, n: u64) {
        for c in self.calls.values_mut() {
            c.add_capture_loss(n);
        }
    }

    /// The SIP message of `call_id` just handed to [`Self::on_sip`] came in
    /// these encapsulations: the call keeps the first such path.
    pub fn note_outer_path(&mut self, call_id: &[u8], path: &voxtap_proto::decode::Encap) {
        if path.is_empty() {
            return;
        }
        if let Some(c) = self
            .by_call_id
            .get(call_id)
            .and_then(|no| self.calls.get_mut(no))
        {
            c.note_outer_path(path);
        }
    }

    /// Calls closed since the last call, in the order they closed.
    pub fn drain_ended(&mut self) -> Vec<Call> {
        std::mem::take(&mut self.ended)
    }

    /// Advance capture time: closes idle and lingering calls, ages orphans.
    pub fn tick(&mut self, now_ns: u64) {
        if now_ns > self.now_ns {
            self.now_ns = now_ns;
        }
        if self.now_ns.saturating_sub(self.last_sweep_ns) < SWEEP_EVERY_NS {
            return;
        }
        self.last_sweep_ns = self.now_ns;
        let now = self.now_ns;
        let idle = self.cfg.idle_timeout_ns;
        let closing: Vec<u64> = self
            .calls
            .values()
            .filter(|c| c.due(now, idle))
            .map(|c| c.no())
            .collect();
        for no in closing {
            self.finalize(no, EndReason::IdleTimeout);
        }
        self.orphans.expire(now);
        self.groups.expire(now, &self.cfg.legs);
    }

    /// End of capture: close every open call.
    pub fn finish(&mut self) {
        let mut open: Vec<(u64, u64)> = self
            .calls
            .values()
            .map(|c| (c.start_ns(), c.no()))
            .collect();
        open.sort_unstable();
        for (_, no) in open {
            self.finalize(no, EndReason::EndOfCapture);
        }
    }

    /// Close call `no` (for `reason`, unless it ended by its own SIP), free
    /// its endpoints, and hand it out with the rest of its logical call.
    fn finalize(&mut self, no: u64, reason: EndReason) {
        let Some(mut call) = self.calls.remove(&no) else {
            return;
        };
        call.close(reason);
        for ep in call.endpoints() {
            self.endpoints.release(no, ep);
        }
        if self.by_call_id.get(call.call_id_raw()) == Some(&no) {
            self.by_call_id.remove(call.call_id_raw());
        }
        self.stats.calls_ended += 1;
        let out = self.groups.close(&self.calls, call);
        self.ended.extend(out);
    }

    /// One SIP message. `refs` are the packets that carried it.
    pub fn on_sip(
        &mut self,
        ts_ns: u64,
        src: SocketAddr,
        dst: SocketAddr,
        transport: &'static str,
        msg: &Message<'_>,
        refs: &[(u64, PacketRef)],
    ) {
        self.tick(ts_ns);
        let Some(cid) = msg.call_id() else {
            self.stats.sip_without_call_id += 1;
            return;
        };
        let p = SipPacket {
            ts_ns,
            src,
            dst,
            transport,
            msg,
            refs,
        };
        let (no, created) = match self.by_call_id.get(cid) {
            Some(&no) => (no, false),
            None => match self.create_call(cid, &p) {
                Some(no) => (no, true),
                None => return,
            },
        };
        let Some(call) = self.calls.get_mut(&no) else {
            return;
        };
        call.on_sip(&p, self.cfg.linger_ns);
        if let Some(body) = msg.sdp() {
            match sdp::parse(body) {
                Ok(desc) => self.register_media(no, &desc, src, ts_ns, &announced_by(msg)),
                Err(_) => self.stats.sdp_errors += 1,
            }
        }
        if msg.is_request() {
            self.groups.link_by_signalling(
                &mut self.calls,
                &self.by_call_id,
                &self.cfg.legs,
                no,
                created,
                &p,
            );
        }
    }

    /// A new call for the first message of Call-ID `cid`; None past the
    /// open call cap.
    fn create_call(&mut self, cid: &[u8], p: &SipPacket<'_, '_>) -> Option<u64> {
        if self.calls.len() >= self.cfg.max_calls {
            self.stats.calls_rejected_limit += 1;
            return None;
        }
        let method = match (p.msg.start(), p.msg.cseq()) {
            (StartLine::Request { method, .. }, _) => method.as_str().to_string(),
            (_, Some((_, m))) => m.as_str().to_string(),
            _ => "UNKNOWN".to_string(),
        };
        let no = self.next_no;
        self.next_no += 1;
        let mut call = Call::new(no, cid, method, p.ts_ns);
        if let StartLine::Request {
            method: Method::Invite,
            ..
        } = p.msg.start()
        {
            let facing = legs::facing(p.src.ip(), p.dst.ip(), &self.cfg.legs);
            call.set_first_invite(p.src, p.dst, facing);
        }
        self.calls.insert(no, call);
        self.by_call_id.insert(cid.into(), no);
        self.groups.add(no);
        self.stats.calls_created += 1;
        Some(no)
    }

    /// An SDP of call `no` from `src`, carried by `by`: each m= line's
    /// endpoints now receive media for the call, and media held for them
    /// before is handed over.
    fn register_media(
        &mut self,
        no: u64,
        desc: &sdp::SessionDescription,
        src: SocketAddr,
        ts_ns: u64,
        by: &str,
    ) {
        let Some(call) = self.calls.get_mut(&no) else {
            return;
        };
        let mut claims: Vec<(SocketAddr, EndpointUse)> = Vec::new();
        for m in &desc.media {
            let info = endpoints::media_info(desc, m, src, ts_ns, by);
            let disabled = info.disabled;
            let idx = call.add_media(info);
            if !disabled {
                claims.extend(endpoints::claims(no, idx, &call.media()[idx]));
            }
        }
        for (ep, u) in claims {
            self.endpoints.announce(ep, u);
            for o in self.orphans.claim(ep) {
                self.stats.orphans_claimed += 1;
                if let Some(call) = self.calls.get_mut(&no) {
                    call.on_orphan(u.media_idx, &o);
                }
            }
        }
    }

    /// The Call-ID of the call that owns media between `src` and `dst`, and
    /// whether that m= line is SRTP (its RTCP is then encrypted).
    pub fn media_call_id(&self, src: SocketAddr, dst: SocketAddr) -> Option<(&[u8], bool)> {
        let (u, _) = self.endpoints.find(src, dst)?;
        let call = self.calls.get(&u.call)?;
        let srtp = call.media().get(u.media_idx).is_some_and(|m| m.is_srtp());
        Some((call.call_id_raw(), srtp))
    }

    /// A UDP datagram that is not SIP. Returns true when it belonged to a call
    /// (or was held as early media).
    pub fn on_udp(
        &mut self,
        ts_ns: u64,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
        refs: &[(u64, PacketRef)],
    ) -> bool {
        self.tick(ts_ns);
        let Some((u, src_known)) = self.endpoints.find(src, dst) else {
            let held = self.orphans.hold_datagram(payload, src, dst, refs, ts_ns);
            if !held {
                self.stats.unmatched_udp += 1;
            }
            return held;
        };
        if !src_known {
            self.latch(u, src, dst, ts_ns);
        }
        let Some(call) = self.calls.get_mut(&u.call) else {
            return false;
        };
        self.stats.media_packets += 1;
        call.note_media(ts_ns, refs);
        let rtcp_like = rtp::looks_like_rtcp(payload);
        if u.role == Role::Rtcp || rtcp_like {
            if !call.on_rtcp(u.media_idx, payload, rtcp_like) {
                self.stats.media_unparsed += 1;
            }
            return true;
        }
        let Ok(p) = RtpPacket::new_checked(payload) else {
            // STUN, DTLS, ZRTP or junk on a media port: part of the call's
            // capture, but not a stream.
            self.stats.media_unparsed += 1;
            return true;
        };
        let seen = call.on_rtp(src, dst, u.media_idx, ts_ns, &p);
        if seen.is_new || seen.early {
            self.groups
                .link_by_media(&mut self.calls, &self.cfg, u.call, seen, ts_ns, &p);
        }
        true
    }

    /// Media arriving at an announced endpoint from an address no SDP of the
    /// call named (NAT): accept it for the call, as an RTP proxy latches,
    /// and remember the real address so traffic sent back to it matches.
    fn latch(&mut self, u: EndpointUse, src: SocketAddr, dst: SocketAddr, ts_ns: u64) {
        let window = self.cfg.latch_window_ns;
        let Some(call) = self.calls.get_mut(&u.call) else {
            return;
        };
        if call.try_latch(u.media_idx, src, dst, ts_ns, window) {
            self.stats.media_latched += 1;
            self.endpoints.latch(src, u);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::CallState;

    fn invite(cid: &str) -> Vec<u8> {
        format!(
            "INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK{cid}\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: {cid}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    /// A flood of INVITEs with random Call-IDs and no BYE: open calls stay
    /// under the cap (the rest counted, not stored), and every call times
    /// out, so memory returns to nothing.
    #[test]
    fn sip_flood_is_bounded_and_times_out() {
        let mut t = CallTable::new(CallConfig {
            max_calls: 1000,
            idle_timeout_ns: 60 * 1_000_000_000,
            ..Default::default()
        });
        let a: SocketAddr = "10.0.0.1:5060".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:5060".parse().unwrap();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..5000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let raw = invite(&format!("{x:016x}@flood"));
            let m = voxtap_proto::sip::parse(&raw).unwrap();
            t.on_sip(1_000_000_000 + i * 1_000_000, a, b, "UDP", &m, &[]);
            assert!(t.open_calls() <= 1000);
        }
        assert_eq!(t.open_calls(), 1000);
        assert_eq!(t.stats().calls_rejected_limit, 4000);
        // Two idle timeouts later (capture time), every call is closed.
        t.tick(200 * 1_000_000_000);
        assert_eq!(t.open_calls(), 0);
        let ended = t.drain_ended();
        assert_eq!(ended.len(), 1000);
        assert!(
            ended.iter().all(|c| c.state() == CallState::TimedOut
                && c.end_reason() == Some(EndReason::IdleTimeout))
        );
        assert!(t.by_call_id.is_empty() && t.groups.is_empty());
    }
}
