//! The call table: SIP messages create and drive calls, SDP registers the
//! (address, port) endpoints each side will receive media on, and RTP/RTCP
//! packets are attributed to calls by those endpoints (never by SSRC: real
//! captures reuse SSRCs across calls).

use std::collections::HashMap;
use std::net::SocketAddr;

use super::call::{Call, CallState, EndReason, MediaInfo, PacketRef, SipEntry, StreamKey};
use super::legs::{self, LegConfig, LegIndex, Link, LinkMethod, RecentInvite, RecentStream};
use super::orphans::{OrphanRtp, Orphans};
use voxtap_proto::rtcp::{self, RtcpPacket};
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

/// A receiving endpoint that started or stopped being used by any open call,
/// for a live sensor that keeps its kernel filter in step with the table
/// (collected only after [`CallTable::track_endpoints`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointEvent {
    Added(SocketAddr),
    Removed(SocketAddr),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Rtp,
    Rtcp,
}

#[derive(Clone, Copy, Debug)]
struct EndpointUse {
    call: u64,
    role: Role,
    media_idx: usize,
}

pub struct CallTable {
    cfg: CallConfig,
    calls: HashMap<u64, Call>,
    by_call_id: HashMap<Box<[u8]>, u64>,
    /// Receiving endpoints announced in SDP, newest use last.
    endpoints: HashMap<SocketAddr, Vec<EndpointUse>>,
    orphans: Orphans,
    next_no: u64,
    ended: Vec<Call>,
    last_sweep_ns: u64,
    now_ns: u64,
    stats: CallTableStats,
    /// `None` unless a live sensor asked for them: import has no filter to
    /// update and must not accumulate events.
    endpoint_events: Option<Vec<EndpointEvent>>,
    legs: LegIndex,
    /// Call -> the first call of its logical call (group root).
    group_of: HashMap<u64, u64>,
    /// Group root -> every call of the group.
    members: HashMap<u64, Vec<u64>>,
    /// Closed calls waiting for the other legs of their group to close, so
    /// a logical call is handed out whole.
    parked: HashMap<u64, Call>,
    /// Call-IDs named by correlation headers before that call was seen.
    pending_names: HashMap<Box<[u8]>, Vec<PendingName>>,
}

/// A leg that named a Call-ID not seen yet: (that leg, method, evidence).
type PendingName = (u64, LinkMethod, String);

const SWEEP_EVERY_NS: u64 = 1_000_000_000;

impl CallTable {
    pub fn new(cfg: CallConfig) -> Self {
        let orphans = Orphans::new(cfg.max_orphans, cfg.orphan_max_age_ns);
        CallTable {
            cfg,
            calls: HashMap::new(),
            by_call_id: HashMap::new(),
            endpoints: HashMap::new(),
            orphans,
            next_no: 1,
            ended: Vec::new(),
            last_sweep_ns: 0,
            now_ns: 0,
            stats: CallTableStats::default(),
            endpoint_events: None,
            legs: LegIndex::default(),
            group_of: HashMap::new(),
            members: HashMap::new(),
            parked: HashMap::new(),
            pending_names: HashMap::new(),
        }
    }

    fn call_mut(&mut self, no: u64) -> Option<&mut Call> {
        match self.calls.get_mut(&no) {
            Some(c) => Some(c),
            None => self.parked.get_mut(&no),
        }
    }

    fn call_id_of(&self, no: u64) -> Option<String> {
        self.calls
            .get(&no)
            .or_else(|| self.parked.get(&no))
            .map(|c| c.call_id.clone())
    }

    /// Join the logical calls of `a` and `b`, recording why on both legs.
    fn link(&mut self, a: u64, b: u64, method: LinkMethod, detail: String) {
        let (Some(&ra), Some(&rb)) = (self.group_of.get(&a), self.group_of.get(&b)) else {
            return;
        };
        if ra == rb {
            return;
        }
        let (Some(ida), Some(idb)) = (self.call_id_of(a), self.call_id_of(b)) else {
            return;
        };
        if let Some(c) = self.call_mut(a) {
            c.links.push(Link {
                other: idb,
                method,
                detail: detail.clone(),
            });
        }
        if let Some(c) = self.call_mut(b) {
            c.links.push(Link {
                other: ida,
                method,
                detail,
            });
        }
        self.stats.legs_linked += 1;
        // The older group absorbs the newer; its first leg names the call.
        let (keep, gone) = if ra < rb { (ra, rb) } else { (rb, ra) };
        let moved = self.members.remove(&gone).unwrap_or_default();
        for m in &moved {
            self.group_of.insert(*m, keep);
        }
        let members = self.members.entry(keep).or_default();
        members.extend(moved);
        members.sort_unstable();
        let members = members.clone();
        let Some(name) = self.call_id_of(keep) else {
            return;
        };
        for m in members {
            if let Some(c) = self.call_mut(m) {
                c.group = name.clone();
            }
        }
    }

    pub fn stats(&self) -> CallTableStats {
        let mut s = self.stats.clone();
        let o = self.orphans.stats();
        s.orphans_expired = o.expired;
        s.orphans_dropped = o.dropped;
        s
    }

    pub fn open_calls(&self) -> usize {
        self.calls.len()
    }

    /// Start collecting [`EndpointEvent`]s (drain them with
    /// [`Self::drain_endpoint_events`]).
    pub fn track_endpoints(&mut self) {
        self.endpoint_events.get_or_insert_with(Vec::new);
    }

    /// Moves the endpoint events since the last drain into `out` (which keeps
    /// its capacity: no allocation in steady state).
    pub fn drain_endpoint_events(&mut self, out: &mut Vec<EndpointEvent>) {
        if let Some(ev) = &mut self.endpoint_events {
            out.append(ev);
        }
    }

    /// The capture lost `n` packets just now: every open call may have lost
    /// some of its own, so each records it.
    pub fn note_capture_loss(&mut self, n: u64) {
        for c in self.calls.values_mut() {
            c.capture_loss += n;
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
            .filter(|c| {
                c.linger_until.is_some_and(|t| t <= now) || c.last_ns.saturating_add(idle) <= now
            })
            .map(|c| c.no)
            .collect();
        for no in closing {
            let lingering = self
                .calls
                .get(&no)
                .is_some_and(|c| c.linger_until.is_some());
            if lingering {
                self.finalize(no, None);
            } else {
                self.finalize(no, Some(EndReason::IdleTimeout));
            }
        }
        self.orphans.expire(now);
        self.legs.expire(now, &self.cfg.legs);
    }

    /// End of capture: close every open call.
    pub fn finish(&mut self) {
        let mut open: Vec<(u64, u64)> = self.calls.values().map(|c| (c.start_ns, c.no)).collect();
        open.sort_unstable();
        for (_, no) in open {
            let lingering = self
                .calls
                .get(&no)
                .is_some_and(|c| c.linger_until.is_some());
            self.finalize(
                no,
                if lingering {
                    None
                } else {
                    Some(EndReason::EndOfCapture)
                },
            );
        }
    }

    fn finalize(&mut self, no: u64, reason: Option<EndReason>) {
        let Some(mut call) = self.calls.remove(&no) else {
            return;
        };
        if let Some(reason) = reason {
            if reason == EndReason::IdleTimeout && !call.state.is_final() {
                call.state = CallState::TimedOut;
            }
            if call.end_reason.is_none() {
                call.end_reason = Some(reason);
            }
            if call.end_ns.is_none() {
                call.end_ns = Some(call.last_ns);
            }
        }
        for m in &call.media {
            for ep in [m.rtp, m.rtcp] {
                if let Some(uses) = self.endpoints.get_mut(&ep) {
                    uses.retain(|u| u.call != no);
                    if uses.is_empty() {
                        self.endpoints.remove(&ep);
                        if let Some(ev) = &mut self.endpoint_events {
                            ev.push(EndpointEvent::Removed(ep));
                        }
                    }
                }
            }
        }
        for (_, actual) in &call.latched {
            if let Some(uses) = self.endpoints.get_mut(actual) {
                uses.retain(|u| u.call != no);
                if uses.is_empty() {
                    self.endpoints.remove(actual);
                    if let Some(ev) = &mut self.endpoint_events {
                        ev.push(EndpointEvent::Removed(*actual));
                    }
                }
            }
        }
        if self.by_call_id.get(&call.call_id_raw) == Some(&no) {
            self.by_call_id.remove(&call.call_id_raw);
        }
        self.stats.calls_ended += 1;
        let root = self.group_of.get(&no).copied().unwrap_or(no);
        let members = self.members.get(&root).cloned().unwrap_or_default();
        if members.iter().any(|m| self.calls.contains_key(m)) {
            self.parked.insert(no, call);
            return;
        }
        let mut out: Vec<Call> = members
            .iter()
            .filter_map(|m| self.parked.remove(m))
            .collect();
        out.push(call);
        out.sort_by_key(|c| (c.start_ns, c.no));
        for c in &out {
            self.group_of.remove(&c.no);
            self.legs.forget(c.no);
        }
        self.members.remove(&root);
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
        let cseq = msg.cseq();
        let mut created = false;
        let no = match self.by_call_id.get(cid) {
            Some(&no) => no,
            None => {
                if self.calls.len() >= self.cfg.max_calls {
                    self.stats.calls_rejected_limit += 1;
                    return;
                }
                let method = match (msg.start(), &cseq) {
                    (StartLine::Request { method, .. }, _) => method.as_str().to_string(),
                    (_, Some((_, m))) => m.as_str().to_string(),
                    _ => "UNKNOWN".to_string(),
                };
                let no = self.next_no;
                self.next_no += 1;
                let mut call = Call::new(no, cid, method, ts_ns);
                if let StartLine::Request {
                    method: Method::Invite,
                    ..
                } = msg.start()
                {
                    call.first_invite = Some((src, dst));
                    call.facing = legs::facing(src.ip(), dst.ip(), &self.cfg.legs);
                }
                self.calls.insert(no, call);
                self.by_call_id.insert(cid.into(), no);
                self.group_of.insert(no, no);
                self.members.insert(no, vec![no]);
                self.stats.calls_created += 1;
                created = true;
                no
            }
        };
        let linger = self.cfg.linger_ns;
        let Some(call) = self.calls.get_mut(&no) else {
            return;
        };
        call.last_ns = call.last_ns.max(ts_ns);
        call.sip_packets += refs.len().max(1) as u64;
        call.packets.extend_from_slice(refs);
        if call.from_uri.is_empty() {
            if let Some(f) = msg.from() {
                call.from_uri = lossy(f.uri);
                call.from_user = voxtap_proto::sip::uri_user(f.uri)
                    .map(lossy)
                    .unwrap_or_default();
            }
            if let Some(t) = msg.to() {
                call.to_uri = lossy(t.uri);
                call.to_user = voxtap_proto::sip::uri_user(t.uri)
                    .map(lossy)
                    .unwrap_or_default();
            }
        }
        let summary = match msg.start() {
            StartLine::Request { method, uri } => format!("{} {}", method.as_str(), lossy(uri)),
            StartLine::Response { code, reason } => {
                let m = cseq
                    .as_ref()
                    .map(|(_, m)| m.as_str().to_string())
                    .unwrap_or_default();
                format!("{code} {} ({m})", lossy(reason))
            }
        };
        call.sip.push(SipEntry {
            ts_ns,
            src,
            dst,
            transport,
            summary,
            text: lossy(msg.raw()),
        });

        match msg.start() {
            StartLine::Request { method, uri } => match method {
                Method::Invite => {
                    // An initial INVITE (no dialog yet): a new CSeq here is the
                    // re-sent INVITE after a 401/407 challenge.
                    if call.answer_ns.is_none() && !call.state.is_final() {
                        if let Some((n, _)) = cseq {
                            call.invite_cseq = Some(n);
                        }
                        if call.request_uri.is_empty() {
                            call.request_uri = lossy(uri);
                        }
                    }
                }
                Method::Cancel => {
                    if !call.state.is_final() {
                        call.state = CallState::Cancelled;
                        call.end_ns.get_or_insert(ts_ns);
                        call.end_reason.get_or_insert(EndReason::Cancel);
                        call.linger_until = Some(ts_ns.saturating_add(linger));
                    }
                }
                Method::Bye => {
                    call.end_ns.get_or_insert(ts_ns);
                    call.end_reason.get_or_insert(EndReason::Bye);
                    call.linger_until = Some(ts_ns.saturating_add(linger));
                }
                _ => {
                    if !call.is_invite() && call.request_uri.is_empty() {
                        call.request_uri = lossy(uri);
                    }
                }
            },
            StartLine::Response { code, .. } => {
                let code = *code;
                let is_invite_tx = matches!(cseq, Some((_, Method::Invite)));
                let initial = match (call.invite_cseq, &cseq) {
                    (Some(want), Some((n, _))) => want == *n,
                    (None, _) => true,
                    _ => false,
                };
                if call.is_invite() && is_invite_tx && initial {
                    apply_invite_response(call, code, ts_ns, linger);
                } else if !call.is_invite()
                    && cseq
                        .as_ref()
                        .is_some_and(|(_, m)| m.as_str() == call.method.as_str())
                    && code >= 200
                    && !matches!(code, 401 | 407)
                    && !call.state.is_final()
                {
                    call.state = if code < 300 {
                        CallState::Completed
                    } else {
                        CallState::Failed
                    };
                    call.status_code = Some(code);
                    call.end_ns = Some(ts_ns);
                    call.end_reason = Some(EndReason::FinalResponse);
                    call.linger_until = Some(ts_ns.saturating_add(linger));
                }
            }
        }

        if let Some(body) = msg.sdp() {
            let by = match msg.start() {
                StartLine::Request { method, .. } => method.as_str().to_string(),
                StartLine::Response { code, .. } => {
                    let m = cseq
                        .as_ref()
                        .map(|(_, m)| m.as_str().to_string())
                        .unwrap_or_default();
                    format!("{code} {m}")
                }
            };
            match sdp::parse(body) {
                Ok(desc) => self.register_media(no, &desc, src, ts_ns, by),
                Err(_) => self.stats.sdp_errors += 1,
            }
        }
        if msg.is_request() {
            self.link_by_signalling(no, created, cid, ts_ns, src, dst, msg);
        }
    }

    /// Correlation headers, and an INVITE leaving the box another reached.
    #[allow(clippy::too_many_arguments)]
    fn link_by_signalling(
        &mut self,
        no: u64,
        created: bool,
        cid: &[u8],
        ts_ns: u64,
        src: SocketAddr,
        dst: SocketAddr,
        msg: &Message<'_>,
    ) {
        if created && let Some(waiting) = self.pending_names.remove(cid) {
            for (other, method, detail) in waiting {
                self.link(no, other, method, detail);
            }
        }
        let keys = legs::message_keys(msg, &self.cfg.legs);
        for (name, method, detail) in keys.names {
            match self.by_call_id.get(name.as_bytes()).copied() {
                Some(other) if other != no => self.link(no, other, method, detail),
                Some(_) => {}
                None => {
                    // Bounded: a flood of bogus names must not grow memory.
                    if self.pending_names.len() >= 100_000 {
                        self.pending_names.clear();
                    }
                    self.pending_names
                        .entry(name.into_bytes().into_boxed_slice())
                        .or_default()
                        .push((no, method, detail));
                }
            }
        }
        for (key, method) in keys.shared {
            match self.legs.shared_keys.get(&key).copied() {
                Some(other) if other != no => self.link(no, other, method, key),
                Some(_) => {}
                None => self.legs.add_shared(key, no),
            }
        }
        let initial_invite = created
            && matches!(
                msg.start(),
                StartLine::Request {
                    method: Method::Invite,
                    ..
                }
            );
        if !initial_invite {
            return;
        }
        let Some((from, to)) = legs::invite_numbers(msg, &self.cfg.legs) else {
            return;
        };
        self.legs.expire(ts_ns, &self.cfg.legs);
        let window = self.cfg.legs.signalling_window_ns;
        let hit = self
            .legs
            .invites
            .iter()
            .rev()
            .find(|r| {
                // The box that received the first INVITE sends the second,
                // to somewhere else; the same UA calling twice is no hop.
                r.call_no != no
                    && r.dst.ip() == src.ip()
                    && r.src != src
                    && r.dst != dst
                    && r.from == from
                    && r.to == to
                    && ts_ns.saturating_sub(r.ts_ns) <= window
            })
            .cloned();
        if let Some(r) = hit {
            let detail = format!(
                "INVITE {from} -> {to} reached {} and left {} {:.1} ms later",
                r.dst,
                src,
                ts_ns.saturating_sub(r.ts_ns) as f64 / 1e6
            );
            self.link(no, r.call_no, LinkMethod::Signalling, detail);
        }
        self.legs.invites.push_back(RecentInvite {
            call_no: no,
            ts_ns,
            src,
            dst,
            from,
            to,
        });
    }

    fn register_media(
        &mut self,
        no: u64,
        desc: &sdp::SessionDescription,
        src: SocketAddr,
        ts_ns: u64,
        by: String,
    ) {
        let mut claims: Vec<(SocketAddr, EndpointUse)> = Vec::new();
        let Some(call) = self.calls.get_mut(&no) else {
            return;
        };
        for m in &desc.media {
            let ip = desc.media_addr(m, src.ip());
            let disabled = m.port == 0 || ip.is_unspecified();
            let rtp_ep = SocketAddr::new(ip, m.port);
            let rtcp_ep = match m.rtcp {
                Some((port, addr)) => SocketAddr::new(addr.unwrap_or(ip), port),
                None if m.rtcp_mux => rtp_ep,
                None => SocketAddr::new(ip, m.port.wrapping_add(1)),
            };
            call.media.push(MediaInfo {
                rtp: rtp_ep,
                rtcp: rtcp_ep,
                rtcp_mux: m.rtcp_mux,
                kind: m.media.clone(),
                proto: m.proto.clone(),
                direction: desc.media_direction(m),
                rtpmap: m.rtpmap.clone(),
                fmtp: m.fmtp.clone(),
                crypto: m.crypto.clone(),
                ptime: m.ptime,
                announced_ns: ts_ns,
                announced_by: by.clone(),
                disabled,
            });
            let idx = call.media.len() - 1;
            if disabled {
                continue;
            }
            claims.push((
                rtp_ep,
                EndpointUse {
                    call: no,
                    role: Role::Rtp,
                    media_idx: idx,
                },
            ));
            if rtcp_ep != rtp_ep {
                claims.push((
                    rtcp_ep,
                    EndpointUse {
                        call: no,
                        role: Role::Rtcp,
                        media_idx: idx,
                    },
                ));
            }
        }
        for (ep, u) in claims {
            let uses = self.endpoints.entry(ep).or_default();
            if uses.is_empty()
                && let Some(ev) = &mut self.endpoint_events
            {
                ev.push(EndpointEvent::Added(ep));
            }
            // A re-INVITE that repeats an endpoint keeps the first use (its
            // media index names the m= line the stream started under).
            if !uses.iter().any(|x| x.call == no && x.role == u.role) {
                uses.push(u);
            }
            for o in self.orphans.claim(ep) {
                self.stats.orphans_claimed += 1;
                self.apply_orphan(no, u, o);
            }
        }
    }

    fn apply_orphan(&mut self, no: u64, u: EndpointUse, o: OrphanRtp) {
        let Some(call) = self.calls.get_mut(&no) else {
            return;
        };
        call.packets.push((o.ts_ns, o.pref));
        if o.is_rtcp {
            call.rtcp_packets += 1;
            return;
        }
        call.rtp_packets += 1;
        let key = StreamKey {
            src: o.src,
            dst: o.dst,
            ssrc: o.ssrc,
        };
        let s = call.stream_mut(key, Some(u.media_idx), o.pt);
        s.stats.update(
            o.ts_ns,
            o.seq,
            o.rtp_ts,
            o.pt,
            o.payload_len as usize,
            o.marker,
        );
    }

    /// Which call a UDP packet between `src` and `dst` belongs to, by the
    /// endpoints its SDP announced: a call that names both ends wins, then the
    /// newest call receiving at `dst`, then the newest one sending from `src`
    /// (symmetric RTP sends from the port it receives on). The flag says
    /// whether `src` is a known endpoint of that call.
    fn match_endpoint(&self, src: SocketAddr, dst: SocketAddr) -> Option<(EndpointUse, bool)> {
        let d = self.endpoints.get(&dst);
        let s = self.endpoints.get(&src);
        if let (Some(d), Some(s)) = (d, s)
            && let Some(u) = d.iter().rev().find(|u| s.iter().any(|x| x.call == u.call))
        {
            return Some((*u, true));
        }
        if let Some(u) = d.and_then(|d| d.last().copied()) {
            let src_known = s.is_some_and(|s| s.iter().any(|x| x.call == u.call));
            return Some((u, src_known));
        }
        s.and_then(|s| s.last().copied()).map(|u| (u, true))
    }

    /// The Call-ID of the call that owns media between `src` and `dst`, and
    /// whether that m= line is SRTP (its RTCP is then encrypted).
    pub fn media_call_id(&self, src: SocketAddr, dst: SocketAddr) -> Option<(&[u8], bool)> {
        let (u, _) = self.match_endpoint(src, dst)?;
        let call = self.calls.get(&u.call)?;
        let srtp = call
            .media
            .get(u.media_idx)
            .is_some_and(|m| m.proto.contains("SAVP"));
        Some((&call.call_id_raw, srtp))
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
        let Some((u, src_known)) = self.match_endpoint(src, dst) else {
            return self.hold_orphan(ts_ns, src, dst, payload, refs);
        };
        if !src_known {
            self.latch(u, src, dst, ts_ns);
        }
        let Some(call) = self.calls.get_mut(&u.call) else {
            return false;
        };
        self.stats.media_packets += 1;
        call.last_ns = call.last_ns.max(ts_ns);
        call.packets.extend_from_slice(refs);
        let rtcp_like = rtp::looks_like_rtcp(payload);
        if u.role == Role::Rtcp || rtcp_like {
            // SRTCP keeps the first RTCP header in the clear but appends an
            // index and a tag, so the compound walk fails on it: the header
            // alone says it is RTCP.
            let srtp = call
                .media
                .get(u.media_idx)
                .is_some_and(|m| m.proto.contains("SAVP"));
            if rtcp_like && !srtp {
                call.rtcp_packets += 1;
                note_rtcp(call, payload);
            } else if rtcp_header(payload) {
                call.rtcp_packets += 1;
            } else {
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
        call.rtp_packets += 1;
        let key = StreamKey {
            src,
            dst,
            ssrc: p.ssrc(),
        };
        let is_new = !call.stream_index.contains_key(&key);
        let s = call.stream_mut(key, Some(u.media_idx), p.payload_type());
        s.stats.update(
            ts_ns,
            p.sequence(),
            p.timestamp(),
            p.payload_type(),
            p.payload().len(),
            p.marker(),
        );
        s.last_seq = p.sequence();
        s.last_ns = ts_ns;
        let early = s.early_packets < 16;
        if early {
            s.early_packets += 1;
        }
        if is_new || early {
            self.link_by_media(u.call, is_new, early, ts_ns, &p);
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
        let announced_at = call.media.get(u.media_idx).map_or(0, |m| m.announced_ns);
        // Only media reaching an endpoint an SDP announced latches; traffic
        // sent back to a latched address is already the call's.
        let to_announced = call.media.iter().any(|m| m.rtp == dst || m.rtcp == dst);
        if !to_announced
            || ts_ns.saturating_sub(announced_at) > window
            || call.latched.iter().any(|l| l.1 == src)
        {
            return;
        }
        call.latched.push((dst, src));
        self.stats.media_latched += 1;
        let uses = self.endpoints.entry(src).or_default();
        if uses.is_empty()
            && let Some(ev) = &mut self.endpoint_events
        {
            ev.push(EndpointEvent::Added(src));
        }
        if !uses.iter().any(|x| x.call == u.call) {
            uses.push(u);
        }
    }

    /// The same stream seen on another leg: same SSRC with the sequence
    /// a few packets behind the other leg's (a relay forwards with a small
    /// delay), or identical distinctive payload bytes within a short time
    /// (a relay that rewrites the SSRC).
    fn link_by_media(
        &mut self,
        call_no: u64,
        is_new: bool,
        early: bool,
        ts_ns: u64,
        p: &RtpPacket<'_>,
    ) {
        let window = self.cfg.legs.media_window_ns;
        let (ssrc, seq) = (p.ssrc(), p.sequence());
        if is_new {
            let candidates: Vec<u64> = self
                .legs
                .streams_by_ssrc
                .get(&ssrc)
                .map(|v| {
                    v.iter()
                        .filter(|r| r.call_no != call_no && ts_ns.saturating_sub(r.ts_ns) <= window)
                        .map(|r| r.call_no)
                        .collect()
                })
                .unwrap_or_default();
            for other in candidates {
                let behind = self.calls.get(&other).and_then(|c| {
                    c.streams
                        .iter()
                        // Still flowing on the other leg right now.
                        .filter(|s| {
                            s.key.ssrc == ssrc && ts_ns.saturating_sub(s.last_ns) <= 100_000_000
                        })
                        .map(|s| s.last_seq.wrapping_sub(seq) as i16)
                        .find(|d| (0..=8).contains(d))
                });
                if let Some(d) = behind {
                    let detail =
                        format!("SSRC 0x{ssrc:08X}, sequence {seq} is {d} behind the other leg");
                    self.link(call_no, other, LinkMethod::MediaSsrc, detail);
                }
            }
            self.legs
                .streams_by_ssrc
                .entry(ssrc)
                .or_default()
                .push(RecentStream {
                    call_no,
                    ts_ns,
                    ssrc,
                    seq,
                });
        }
        if early && let Some(h) = legs::distinctive_payload_hash(p.payload()) {
            let near = self.cfg.payload_match_window_ns;
            match self.legs.payloads.get(&h).copied() {
                Some((other, t)) if other != call_no && ts_ns.saturating_sub(t) <= near => {
                    let detail = format!(
                        "identical {}-byte RTP payload {:.1} ms apart (SSRC 0x{ssrc:08X})",
                        p.payload().len(),
                        ts_ns.saturating_sub(t) as f64 / 1e6
                    );
                    self.link(call_no, other, LinkMethod::MediaPayload, detail);
                }
                Some(_) => {}
                None => {
                    self.legs.payloads.insert(h, (call_no, ts_ns));
                }
            }
        }
    }

    fn hold_orphan(
        &mut self,
        ts_ns: u64,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
        refs: &[(u64, PacketRef)],
    ) -> bool {
        let is_rtcp = rtp::looks_like_rtcp(payload);
        let header = if is_rtcp {
            None
        } else if rtp::looks_like_rtp(payload) {
            RtpPacket::new_checked(payload).ok()
        } else {
            None
        };
        if !is_rtcp && header.is_none() {
            self.stats.unmatched_udp += 1;
            return false;
        }
        let mut held = false;
        for &(ts, pref) in refs {
            let o = OrphanRtp {
                ts_ns: ts,
                pref,
                src,
                dst,
                is_rtcp,
                ssrc: header.as_ref().map_or(0, |p| p.ssrc()),
                seq: header.as_ref().map_or(0, |p| p.sequence()),
                rtp_ts: header.as_ref().map_or(0, |p| p.timestamp()),
                pt: header.as_ref().map_or(0, |p| p.payload_type()),
                marker: header.as_ref().is_some_and(|p| p.marker()),
                payload_len: header.as_ref().map_or(0, |p| p.payload().len() as u32),
            };
            held |= self.orphans.hold(dst, o, ts_ns);
        }
        if !held {
            self.stats.unmatched_udp += 1;
        }
        held
    }
}

fn apply_invite_response(call: &mut Call, code: u16, ts_ns: u64, linger: u64) {
    match code {
        100..=179 | 190..=199 => {}
        180..=189 => {
            call.ringing_ns.get_or_insert(ts_ns);
            if call.state == CallState::InProgress {
                call.state = CallState::Ringing;
            }
        }
        200..=299 => {
            if call.answer_ns.is_none() {
                call.answer_ns = Some(ts_ns);
                // A 2xx that crosses a CANCEL wins: the call was set up and
                // will be ended by a BYE.
                if call.end_reason == Some(EndReason::Cancel) {
                    call.end_ns = None;
                    call.end_reason = None;
                    call.linger_until = None;
                }
                call.state = CallState::Answered;
                call.status_code = Some(code);
            }
        }
        // Authentication challenges are not an outcome: the caller retries.
        401 | 407 => {}
        _ => {
            if call.answer_ns.is_none() && call.state != CallState::Answered {
                let state = match code {
                    486 | 600 => CallState::Busy,
                    603 => CallState::Declined,
                    487 => CallState::Cancelled,
                    408 | 480 => CallState::NoAnswer,
                    _ => CallState::Failed,
                };
                // A CANCEL already set the state; the 487 confirms it.
                if !(call.state == CallState::Cancelled && code == 487) {
                    call.state = state;
                }
                call.status_code = Some(code);
                call.end_ns.get_or_insert(ts_ns);
                call.end_reason.get_or_insert(EndReason::FinalResponse);
                call.linger_until = Some(ts_ns.saturating_add(linger));
            }
        }
    }
}

/// Keep what RTCP says about the call's streams beside our own figures.
fn note_rtcp(call: &mut Call, payload: &[u8]) {
    for pkt in rtcp::parse_compound(payload) {
        let Ok(pkt) = pkt else { break };
        let blocks = match pkt {
            RtcpPacket::SenderReport { ssrc, reports, .. } => {
                for s in call.streams.iter_mut().filter(|s| s.key.ssrc == ssrc) {
                    s.sender_reports += 1;
                }
                reports
            }
            RtcpPacket::ReceiverReport { reports, .. } => reports,
            _ => continue,
        };
        for b in blocks {
            let mut found = false;
            for s in call.streams.iter_mut().filter(|s| s.key.ssrc == b.ssrc) {
                s.rtcp.reports += 1;
                s.rtcp.fraction_lost = b.fraction_lost;
                s.rtcp.cumulative_lost = b.cumulative_lost;
                s.rtcp.jitter_units = b.jitter;
                found = true;
            }
            if !found {
                call.rtcp_unmatched += 1;
            }
        }
    }
}

/// Version 2 and an RTCP packet type (SR, RR, SDES, BYE, APP, RTPFB, PSFB, XR).
fn rtcp_header(p: &[u8]) -> bool {
    matches!(p, [b0, b1, _, _, ..] if b0 >> 6 == 2 && (200..=207).contains(b1))
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(ended.iter().all(
            |c| c.state == CallState::TimedOut && c.end_reason == Some(EndReason::IdleTimeout)
        ));
        assert!(t.by_call_id.is_empty() && t.members.is_empty() && t.group_of.is_empty());
    }
}
