//! The call table: INVITE dialogs create and drive calls, SDP registers the
//! (address, port) endpoints each side will receive media on, and RTP/RTCP
//! packets are attributed to calls by those endpoints (never by SSRC: real
//! captures reuse SSRCs across calls). SIP outside any INVITE dialog
//! (REGISTER, OPTIONS, SUBSCRIBE/NOTIFY, MESSAGE...) goes to
//! [`Signalling`]; media no SDP claims becomes media-only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::call::{Call, EndReason, MediaInfo, PacketRef, SipBudget, SipPacket, announced_by};
use super::call_ids::CallIds;
use super::closed::Closed;
use super::endpoints::{self, AddrHash, EndpointEvent, EndpointUse, Endpoints, Role};
use super::floods::{FloodSummary, Floods, NewDialog};
use super::legs::{self, Groups, LegConfig, MediaEvidence, MergedRuns, PostedEvidence, PostedLink};
use super::media_only::MediaOnly;
use super::orphans::{OrphanRtp, Orphans};
use super::spill::{Spill, SpillStats};
use super::trim;
use crate::signalling::{Signalling, SignallingConfig};
use voxtap_proto::rtp::{self, RtpPacket};
use voxtap_proto::sdp;
use voxtap_proto::sip::{Message, Method, StartLine};

mod latches;
mod unclaimed;
pub use latches::PostedLatch;
use unclaimed::{Datagram, Unclaimed};

#[derive(Clone, Debug)]
pub struct CallConfig {
    /// A call with no packet for this long (capture time) is closed.
    pub idle_timeout_ns: u64,
    /// After BYE, CANCEL or a final failure, how long trailing packets
    /// (200 to BYE, ACK, last RTP) still count for the call.
    pub linger_ns: u64,
    /// A call whose ending transactions are not complete (a BYE or CANCEL
    /// without its response, a final failure without its ACK) waits this
    /// long after its last SIP before it closes, so retransmissions stay
    /// with it (RFC 3261 Timers F, H and J: 64*T1 = 32 s); a closed call's
    /// Call-ID absorbs late messages for as long.
    pub transaction_wait_ns: u64,
    /// Every dialog is a call, whatever its method (REGISTER, OPTIONS,
    /// SUBSCRIBE...), as before non-call traffic had tables of its own.
    pub all_dialogs: bool,
    /// Hard cap on open calls; new Call-IDs beyond it are counted and ignored.
    pub max_calls: usize,
    /// Media seen before its SDP: how many packets are held, and how long.
    pub max_orphans: usize,
    pub orphan_max_age_ns: u64,
    /// Media no SDP claimed: records (pairs of endpoints) kept open at most,
    /// and how long one stays open without a packet.
    pub max_media_only: usize,
    pub media_only_idle_ns: u64,
    /// Linking the legs of B2BUA/SBC calls.
    pub legs: LegConfig,
    /// Media from an address the SDP never named is latched to the call
    /// for this long after the SDP that announced the endpoint it reached.
    pub latch_window_ns: u64,
    /// A relay forwards a packet within this long: identical payloads
    /// further apart on two legs are not the same media.
    pub payload_match_window_ns: u64,
    /// SIP text one call keeps in memory (for sip.txt, the index and the
    /// call page), in bytes; past it, summaries only, then a count
    /// (`Call::sip_truncated`). `call.pcap` has every message regardless.
    pub call_sip_bytes: usize,
    /// SIP text all open calls keep together, in bytes.
    pub sip_bytes_total: usize,
    /// What the open calls may hold in memory (estimated); past it, new
    /// dialogs are summarised (`drain_floods`) instead of recorded.
    pub memory_bytes: usize,
    /// New INVITE dialogs per second from one source, with as many open
    /// and unanswered, past which its new INVITEs are summarised instead
    /// of recorded (0: never).
    pub flood_invites_per_s: u32,
    /// Registrations, pings and other transactions outside calls.
    pub signalling: SignallingConfig,
    /// Where calls spill their older packet references (segment files,
    /// unlinked at once), so a call's memory does not grow with its
    /// duration; None keeps every reference in memory.
    pub spill_dir: Option<std::path::PathBuf>,
    /// Keep each call's packet references (to cut its PCAP). False when
    /// no call folder is written (`voxtap import --csv-only`): no
    /// reference is stored or spilled.
    pub keep_packet_refs: bool,
}

impl Default for CallConfig {
    fn default() -> Self {
        CallConfig {
            idle_timeout_ns: 300 * 1_000_000_000,
            linger_ns: 5 * 1_000_000_000,
            transaction_wait_ns: 32 * 1_000_000_000,
            all_dialogs: false,
            max_calls: 1_000_000,
            max_orphans: 200_000,
            orphan_max_age_ns: 30 * 1_000_000_000,
            max_media_only: 10_000,
            media_only_idle_ns: 30 * 1_000_000_000,
            legs: LegConfig::default(),
            latch_window_ns: 30 * 1_000_000_000,
            payload_match_window_ns: 250_000_000,
            call_sip_bytes: 1 << 20,
            sip_bytes_total: 256 << 20,
            memory_bytes: 1 << 30,
            flood_invites_per_s: 100,
            signalling: SignallingConfig::default(),
            spill_dir: Some(std::env::temp_dir()),
            keep_packet_refs: true,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct CallTableStats {
    pub calls_created: u64,
    pub calls_ended: u64,
    pub calls_rejected_limit: u64,
    pub sip_without_call_id: u64,
    /// SIP outside any INVITE dialog, handed to the signalling tables.
    pub sip_not_calls: u64,
    /// Late messages (retransmissions, a NOTIFY after BYE) of a call that
    /// was already closed: absorbed, no new record.
    pub sip_after_close: u64,
    /// Closed calls whose Call-ID could not be remembered (cap reached).
    pub closed_not_remembered: u64,
    /// New initial INVITEs on the Call-ID of a call that had ended.
    pub calls_reusing_call_id: u64,
    pub sdp_errors: u64,
    pub media_packets: u64,
    pub media_unparsed: u64,
    /// UDPTL (T.38 fax) packets on a media line turned into fax.
    pub fax_packets: u64,
    pub unmatched_udp: u64,
    pub orphans_claimed: u64,
    pub orphans_expired: u64,
    pub orphans_dropped: u64,
    /// Media-only records (pairs of endpoints), their packets, packets not
    /// kept (record cap), and records joined to a call by a later SDP.
    pub media_only_records: u64,
    pub media_only_packets: u64,
    pub media_only_dropped: u64,
    pub media_only_joined: u64,
    pub legs_linked: u64,
    /// Links another replica posted (parallel engine) that named a call
    /// not known here. Every replica has the same open and parked calls at
    /// a meeting, so this stays 0 (the engine-split tests check it).
    pub legs_links_unresolved: u64,
    pub media_latched: u64,
    /// Datagrams no call took that a replica (parallel engine) could not
    /// keep whole until the next sweep meeting (its budget): a latch made
    /// elsewhere gives the call only their headers.
    pub unclaimed_not_kept: u64,
    /// New dialogs summarised in `floods.csv` instead of recorded.
    pub dialogs_summarised: u64,
    /// SIP text the open calls keep, in bytes.
    pub sip_bytes: u64,
    /// What the open calls hold in memory, estimated, in bytes.
    pub memory_bytes: u64,
}

pub struct CallTable {
    cfg: CallConfig,
    /// Boxed: the map's spare slots (up to half of them after it grows)
    /// then cost a pointer each, not a whole call.
    calls: legs::OpenCalls,
    /// Open calls by Call-ID (the calls keep the Call-IDs).
    by_call_id: CallIds,
    closed: Closed,
    endpoints: Endpoints,
    orphans: Orphans,
    media_only: MediaOnly,
    signalling: Signalling,
    groups: Groups,
    next_no: u64,
    ended: Vec<Call>,
    last_sweep_ns: u64,
    now_ns: u64,
    expired: Vec<OrphanRtp>,
    stats: CallTableStats,
    floods: Floods,
    /// Open INVITE calls with no response yet, with the source of their
    /// INVITE (the flood rule counts them).
    unanswered: HashMap<u64, std::net::IpAddr, AddrHash>,
    /// SIP text the open calls keep (exact), and what they hold in memory
    /// (estimated at each sweep, kept up to date in between).
    sip_bytes: usize,
    mem_bytes: usize,
    spill: Option<Spill>,
    /// Sweeps only when told ([`Self::sweep_due`], [`Self::sweep_agreed`]):
    /// a replica of the parallel engine, whose sweeps happen at the same
    /// global moments as every other replica's (`crate::parallel`).
    explicit_sweeps: bool,
    /// Calls keep their SIP entries and texts (all but a replica whose
    /// entries nobody reads, [`Self::keep_no_sip_texts`]).
    sip_texts: bool,
    /// Latches made since the last sweep (a replica posts them there).
    posted_latches: Vec<PostedLatch>,
    /// Weighs leg-linking evidence (all but a replica that leaves it to
    /// another, [`Self::weigh_elsewhere`]).
    weighs: bool,
    /// What a replica found no call for since the last sweep meeting.
    unclaimed: Unclaimed,
}

/// What one replica found due at a sweep (parallel engine): calls by
/// Call-ID (their numbers differ between replicas), media-only records by
/// endpoint pair, and the media-only records it holds that are not due.
#[derive(Clone, Debug, Default)]
pub struct DueSet {
    pub calls: Vec<Box<[u8]>>,
    pub media_only_due: Vec<(SocketAddr, SocketAddr)>,
    pub media_only_live: Vec<(SocketAddr, SocketAddr)>,
    /// NAT latches it made since the last sweep.
    pub latches: Vec<PostedLatch>,
    /// Leg-linking evidence of the streams it holds, since the last sweep
    /// (shared: the weighing replica reads it, none copies it).
    pub evidence: Arc<PostedEvidence>,
    /// The links the weighing replica made weighing everyone's evidence
    /// (a meeting's last round; empty from the other replicas).
    pub links: Arc<Vec<PostedLink>>,
}

/// What every replica agreed to close at a sweep (see [`DueSet`]).
#[derive(Clone, Debug, Default)]
pub struct Agreed {
    pub calls: std::collections::HashSet<Box<[u8]>>,
    pub media_only: std::collections::HashSet<(SocketAddr, SocketAddr)>,
    /// Every replica's latches, in capture order: each adopts them all.
    pub latches: Vec<PostedLatch>,
    /// Every replica's leg-linking evidence (one post per replica): the
    /// weighing replica weighs it all, in capture order.
    pub evidence: Vec<Arc<PostedEvidence>>,
    /// The links weighing made, each replica's post in replica order (one
    /// replica weighs): every other replica makes them, in that order.
    pub links: Vec<Arc<Vec<PostedLink>>>,
}

impl Agreed {
    /// A call closes when every replica found it due (media keeps it alive
    /// in the replica that sees that media); a media-only record when it is
    /// due in every replica that holds it.
    pub fn from_replicas(sets: &[&DueSet]) -> Agreed {
        let mut agreed = Agreed::default();
        let Some((first, rest)) = sets.split_first() else {
            return agreed;
        };
        agreed.calls = first.calls.iter().cloned().collect();
        for s in rest {
            let here: std::collections::HashSet<&[u8]> = s.calls.iter().map(|c| &c[..]).collect();
            agreed.calls.retain(|c| here.contains(&c[..]));
        }
        let live: std::collections::HashSet<_> =
            sets.iter().flat_map(|s| s.media_only_live.iter()).collect();
        agreed.media_only = sets
            .iter()
            .flat_map(|s| s.media_only_due.iter())
            .filter(|p| !live.contains(p))
            .copied()
            .collect();
        agreed.latches = sets
            .iter()
            .flat_map(|s| s.latches.iter())
            .copied()
            .collect();
        agreed.latches.sort_by_key(PostedLatch::at);
        agreed.latches.dedup();
        agreed.evidence = sets.iter().map(|s| Arc::clone(&s.evidence)).collect();
        agreed.links = sets
            .iter()
            .filter(|s| !s.links.is_empty())
            .map(|s| Arc::clone(&s.links))
            .collect();
        agreed
    }
}

const SWEEP_EVERY_NS: u64 = 1_000_000_000;
/// What the table spends on a call besides the call itself (its entries in
/// the maps of Call-IDs, leg groups and recent INVITEs, unanswered INVITEs,
/// allocator overhead), estimated: a call of one INVITE takes 2.5 KB of RSS
/// (`memory_estimate_against_rss`), 1.4 KB of it counted by
/// `Call::mem_estimate`.
const TABLE_BYTES_PER_CALL: usize = 1_152;

impl CallTable {
    pub fn new(cfg: CallConfig) -> Self {
        let orphans = Orphans::new(cfg.max_orphans, cfg.orphan_max_age_ns);
        let cfg_flood_rate = cfg.flood_invites_per_s;
        let mut signalling_cfg = cfg.signalling.clone();
        signalling_cfg.transaction_wait_ns = cfg.transaction_wait_ns;
        let spill = cfg.spill_dir.as_deref().map(Spill::new);
        let mut media_only = MediaOnly::new(cfg.max_media_only, cfg.media_only_idle_ns);
        media_only.spill_to(spill.clone(), cfg.keep_packet_refs);
        CallTable {
            closed: Closed::new(cfg.max_calls),
            media_only,
            spill,
            signalling: Signalling::new(signalling_cfg),
            cfg,
            calls: Default::default(),
            by_call_id: CallIds::default(),
            endpoints: Endpoints::default(),
            orphans,
            groups: Groups::default(),
            next_no: 1,
            ended: Vec::new(),
            last_sweep_ns: 0,
            now_ns: 0,
            expired: Vec::new(),
            stats: CallTableStats::default(),
            floods: Floods::new(cfg_flood_rate),
            unanswered: HashMap::default(),
            sip_bytes: 0,
            mem_bytes: 0,
            explicit_sweeps: false,
            sip_texts: true,
            posted_latches: Vec::new(),
            weighs: true,
            unclaimed: Unclaimed::default(),
        }
    }

    /// From now on the table sweeps only when told: packets advance capture
    /// time but never close anything by themselves (parallel engine).
    pub fn set_explicit_sweeps(&mut self) {
        self.explicit_sweeps = true;
        if self.weighs {
            // Its links by signalling are posted at the next meeting.
            self.groups.record_links();
        }
    }

    /// From now on calls keep no entries of their SIP messages, neither
    /// texts nor summaries (counted as if kept, so budgets decide as in a
    /// table that keeps them): a parallel engine's replica other than
    /// worker 0's, whose SIP part neither the joining thread (it keeps the
    /// first replica's, worker 0's) nor the live view (it takes worker 0's
    /// calls' SIP) ever reads. Every replica wrote every text to its spill
    /// and read it back at close, for nothing, and formatted and held every
    /// summary.
    pub fn keep_no_sip_texts(&mut self) {
        self.sip_texts = false;
    }

    /// From now on the table links no legs by itself: another replica of
    /// the parallel engine (worker 0's) links by signalling and weighs
    /// every replica's media evidence, and posts the links it made, which
    /// this one makes ([`Self::apply_links`]). It still notes and posts its
    /// evidence, but reads no correlation headers and keeps no early
    /// streams, recent INVITEs, shared keys or pending names.
    pub fn weigh_elsewhere(&mut self) {
        self.weighs = false;
        self.groups.take_made();
    }

    /// What linking by signalling keeps here (`Groups::signalling_state`).
    #[cfg(test)]
    pub(in crate::calls) fn signalling_state(&self) -> usize {
        self.groups.signalling_state()
    }

    /// Capture time moves to `now_ns` (if later) without a sweep.
    pub fn advance(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
    }

    /// The spill of older packet references (None: kept in memory).
    pub fn spill_stats(&self) -> Option<SpillStats> {
        self.spill.as_ref().map(Spill::stats)
    }

    pub fn stats(&self) -> CallTableStats {
        let mut s = self.stats.clone();
        let o = self.orphans.stats();
        s.orphans_expired = o.expired;
        s.orphans_dropped = o.dropped;
        s.legs_linked = self.groups.linked();
        s.unclaimed_not_kept = self.unclaimed.not_kept();
        s.dialogs_summarised = self.floods.summarised();
        s.sip_bytes = self.sip_bytes as u64;
        s.memory_bytes = self.mem_bytes as u64;
        let m = self.media_only.stats();
        s.media_only_records = m.records;
        s.media_only_dropped = m.dropped;
        s.media_only_joined = m.joined;
        (s.sip_after_close, s.closed_not_remembered) = self.closed.counts();
        s
    }

    /// Floods of new dialogs summarised since the last call (a summary is
    /// handed out once its source has been quiet for a while, or at the end
    /// of the capture), for `floods.csv`.
    pub fn drain_floods(&mut self) -> Vec<FloodSummary> {
        self.floods.drain()
    }

    /// Registrations, pings and transactions outside calls.
    pub fn signalling(&self) -> &Signalling {
        &self.signalling
    }

    pub fn signalling_mut(&mut self) -> &mut Signalling {
        &mut self.signalling
    }

    pub fn open_calls(&self) -> usize {
        self.calls.len()
    }

    /// Bytes the open calls hold in memory for their packet references (the
    /// spilled ones are on disk).
    pub fn packet_bytes_held(&self) -> usize {
        self.calls.values().map(|c| c.packet_bytes_held()).sum()
    }

    /// The open calls, in no particular order (a live snapshot reads them
    /// once per tick; see [`crate::live_calls`]).
    pub fn open(&self) -> impl Iterator<Item = &Call> {
        self.calls.values().map(|c| &**c)
    }

    /// Capture time: the latest packet or tick seen.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
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

    /// The capture lost `n` media packets whose destination endpoint
    /// satisfies `lost_here` (the live sensor: one kernel ring's loss, the
    /// ring being a hash of the destination): only the open calls with a
    /// stream to such an endpoint, or an SDP endpoint that is one, may have
    /// lost some, so only they record it.
    pub fn note_capture_loss_where(
        &mut self,
        n: u64,
        mut lost_here: impl FnMut(std::net::SocketAddr) -> bool,
    ) {
        for c in self.calls.values_mut() {
            let hit = c.streams().iter().any(|s| lost_here(s.key.dst.into()))
                || c.media()
                    .iter()
                    .any(|m| lost_here(m.rtp.into()) || lost_here(m.rtcp.into()));
            if hit {
                c.add_capture_loss(n);
            }
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
            .get(call_id, &self.calls)
            .and_then(|no| self.calls.get_mut(&no))
        {
            c.note_outer_path(path);
        }
    }

    /// Calls (and media-only records) closed since the last call, in the
    /// order they closed.
    pub fn drain_ended(&mut self) -> Vec<Call> {
        std::mem::take(&mut self.ended)
    }

    /// Advance capture time: closes idle and lingering calls, ages orphans
    /// (what no SDP claimed becomes media-only) and pending transactions.
    pub fn tick(&mut self, now_ns: u64) {
        self.advance(now_ns);
        if self.explicit_sweeps || self.now_ns.saturating_sub(self.last_sweep_ns) < SWEEP_EVERY_NS {
            return;
        }
        self.last_sweep_ns = self.now_ns;
        let now = self.now_ns;
        self.groups.weigh_noted(&mut self.calls, &self.cfg);
        let closing: Vec<u64> = self.due_calls(now).map(|c| c.no()).collect();
        for no in closing {
            self.finalize(no, EndReason::IdleTimeout);
        }
        self.age_orphans(now);
        self.ended.extend(self.media_only.expire(now));
        self.sweep_rest(now);
    }

    fn due_calls(&self, now: u64) -> impl Iterator<Item = &Call> {
        let (idle, wait) = (self.cfg.idle_timeout_ns, self.cfg.transaction_wait_ns);
        self.calls
            .values()
            .map(|c| &**c)
            .filter(move |c| c.due(now, idle, wait))
    }

    /// First half of a sweep at `now_ns` in a replica (parallel engine):
    /// held media past its age becomes media-only (as [`Self::tick`] does),
    /// then what this replica would close. Every replica's sets then meet
    /// ([`Agreed::from_replicas`]) before [`Self::sweep_agreed`].
    pub fn sweep_due(&mut self, now_ns: u64) -> DueSet {
        self.advance(now_ns);
        let now = self.now_ns;
        let mut due = DueSet {
            calls: self
                .due_calls(now)
                .map(|c| c.call_id_raw().into())
                .collect(),
            ..Default::default()
        };
        // Aging orphans touches neither calls nor endpoints, so it may come
        // before the calls close (a single table closes them first).
        self.age_orphans(now);
        self.media_only
            .due_pairs(now, &mut due.media_only_due, &mut due.media_only_live);
        self.post(&mut due);
        due
    }

    /// What a replica posts at a sweep meeting besides what is due: its
    /// latches and leg-linking evidence since the last one (the engine's
    /// last meeting, at the end of the capture, posts only these, and so
    /// does each further round of a meeting, for what adopting the
    /// latches of the round before made here).
    pub fn post(&mut self, due: &mut DueSet) {
        due.latches = std::mem::take(&mut self.posted_latches);
        let calls = &self.calls;
        due.evidence = Arc::new(PostedEvidence::new(self.groups.take_noted(), |no| {
            calls.get(&no).map(|c| c.call_id_raw().into())
        }));
    }

    /// Every replica's leg-linking evidence, from a meeting (its latches
    /// already adopted, [`Self::adopt_latches`]): weighed here, as one
    /// table weighs its own, in the weighing replica (else nothing). The
    /// links it made, in order, for the other replicas to make.
    pub fn weigh_posted(&mut self, posted: &[Arc<PostedEvidence>]) -> Vec<PostedLink> {
        if !self.weighs {
            return Vec::new();
        }
        // Kept: the links by signalling made since the last meeting, first.
        self.groups.record_links();
        let nos: Vec<Vec<Option<u64>>> = posted
            .iter()
            .map(|p| p.call_nos(|id| self.by_call_id.get(id, &self.calls)))
            .collect();
        let runs = posted.iter().zip(&nos).map(|(p, nos)| p.resolved(nos));
        if posted.iter().all(|p| p.in_order()) {
            // Each replica's items are in capture order: merged as they
            // are read, not copied and sorted.
            self.groups
                .weigh(&mut self.calls, &self.cfg, MergedRuns::new(runs));
        } else {
            let mut evidence: Vec<MediaEvidence> = runs.flatten().collect();
            evidence.sort_by_key(MediaEvidence::at);
            self.groups.weigh(&mut self.calls, &self.cfg, evidence);
        }
        let made = self.groups.take_made();
        if self.explicit_sweeps {
            self.groups.record_links();
        }
        made
    }

    /// The links the weighing replica posted at a meeting (every round's
    /// latches adopted), made here in the same order, before anything
    /// closes (the weighing replica made them already: nothing there);
    /// then the calls held since the last meeting close, as they closed
    /// there ([`Self::finalize_between_meetings`]).
    pub fn apply_links(&mut self, posted: &[Arc<Vec<PostedLink>>]) {
        if self.weighs {
            return;
        }
        for links in posted {
            let unresolved = self
                .groups
                .apply_links(&mut self.calls, &self.by_call_id, links);
            self.stats.legs_links_unresolved += unresolved;
        }
        let closed = self.groups.close_held(&self.calls);
        self.ended.extend(closed);
    }

    /// Second half of a sweep, every replica's latches adopted
    /// ([`Self::adopt_latches`]) and its evidence weighed by the weighing
    /// replica ([`Self::weigh_posted`]): make the links that made (in the
    /// other replicas), close what every replica agreed on, then the rest
    /// of [`Self::tick`]'s sweep. (A call that latched since the last
    /// sweep had media then, so it is not due anywhere while idle timeouts
    /// are longer than a sweep's interval: adopting cannot change what
    /// closes.)
    pub fn sweep_agreed(&mut self, agreed: &Agreed) {
        self.apply_links(&agreed.links);
        self.unclaimed.clear();
        let now = self.now_ns;
        let closing: Vec<u64> = self
            .due_calls(now)
            .filter(|c| agreed.calls.contains(c.call_id_raw()))
            .map(|c| c.no())
            .collect();
        for no in closing {
            self.finalize(no, EndReason::IdleTimeout);
        }
        self.ended
            .extend(self.media_only.expire_pairs(&agreed.media_only));
        self.sweep_rest(now);
    }

    /// What a sweep does besides closing calls and media-only records.
    fn sweep_rest(&mut self, now: u64) {
        // What the last sweep's shrinks freed, and the calls it closed
        // (dropped by the caller since), given back before this one's.
        trim::at_sweep();
        self.closed.expire(now);
        self.groups.expire(now, &self.cfg.legs);
        self.floods.sweep(now);
        self.mem_bytes = self
            .calls
            .values()
            .map(|c| c.mem_estimate() + TABLE_BYTES_PER_CALL)
            .sum();
        self.signalling.tick(now);
        self.give_back();
    }

    /// Maps that a burst grew and that hold less than half of it now are
    /// shrunk (a map keeps its room when emptied): the sources of new
    /// dialogs, unanswered INVITEs, open calls and their Call-IDs, the
    /// Call-IDs of closed calls, endpoints.
    fn give_back(&mut self) {
        self.floods.give_back();
        trim::shrink_map(&mut self.unanswered);
        trim::shrink_map(&mut self.calls);
        self.by_call_id.give_back();
        self.closed.give_back();
        self.endpoints.give_back();
    }

    /// Held media older than the orphan age (all of it with `u64::MAX`)
    /// becomes media-only.
    fn age_orphans(&mut self, now_ns: u64) {
        self.orphans.expire(now_ns, &mut self.expired);
        for o in self.expired.drain(..) {
            self.media_only.take_orphan(&o, &mut self.next_no);
        }
    }

    /// End of capture: close every open call and media-only record.
    pub fn finish(&mut self) {
        self.groups.weigh_noted(&mut self.calls, &self.cfg);
        // Held without a last meeting (none when the engine holds one).
        let held = self.groups.close_held(&self.calls);
        self.ended.extend(held);
        let mut open: Vec<(u64, u64)> = self
            .calls
            .values()
            .map(|c| (c.start_ns(), c.no()))
            .collect();
        open.sort_unstable();
        for (_, no) in open {
            self.finalize(no, EndReason::EndOfCapture);
        }
        self.floods.finish();
        self.age_orphans(u64::MAX);
        self.ended.extend(self.media_only.expire(u64::MAX));
        self.signalling.finish();
    }

    /// Close call `no` (for `reason`, unless it ended by its own SIP), free
    /// its endpoints, remember its Call-ID for late messages, and hand it
    /// out with the rest of its logical call.
    fn finalize(&mut self, no: u64, reason: EndReason) {
        if let Some(call) = self.close_call(no, reason) {
            let out = self.groups.close(&self.calls, call);
            self.ended.extend(out);
        }
    }

    /// [`Self::finalize`] between sweeps. A replica that makes the links
    /// another posts holds the call until the next meeting's are made
    /// (`Groups::hold`): worker 0 may have linked it by signalling since
    /// the last one.
    fn finalize_between_meetings(&mut self, no: u64, reason: EndReason) {
        if self.weighs {
            self.finalize(no, reason);
        } else if let Some(call) = self.close_call(no, reason) {
            self.groups.hold(call);
        }
    }

    /// Close call `no` and release what the table keeps for it: the call,
    /// for its group to hand out.
    fn close_call(&mut self, no: u64, reason: EndReason) -> Option<Call> {
        let mut call = self.calls.remove(&no).map(|c| *c)?;
        call.close(reason);
        call.load_sip_texts();
        for ep in call.endpoints() {
            self.endpoints.release(no, ep);
        }
        self.by_call_id.remove(&call);
        if let Some(ip) = self.unanswered.remove(&no) {
            self.floods.settled(ip);
        }
        self.sip_bytes = self.sip_bytes.saturating_sub(call.sip_bytes());
        self.mem_bytes = self
            .mem_bytes
            .saturating_sub(call.mem_estimate() + TABLE_BYTES_PER_CALL);
        let until = call
            .last_sip_ns()
            .saturating_add(self.cfg.transaction_wait_ns)
            .max(self.now_ns);
        self.closed
            .add(call.call_id_raw(), call.dialog_marks(), until);
        self.stats.calls_ended += 1;
        Some(call)
    }

    /// A CRLF keep-alive from `src` to `dst`.
    pub fn on_keepalive(&mut self, ts_ns: u64, src: SocketAddr, dst: SocketAddr) {
        self.tick(ts_ns);
        self.signalling.on_keepalive(ts_ns, src, dst);
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
        let p = SipPacket {
            ts_ns,
            src,
            dst,
            transport,
            msg,
            refs,
        };
        self.on_sip_parsed(&p, None);
    }

    /// [`Self::on_sip`] with the message's SDP, when it has one, already
    /// parsed: the parallel engine's dispatcher parses it once for every
    /// replica.
    pub(crate) fn on_sip_parsed(
        &mut self,
        p: &SipPacket<'_, '_>,
        sdp: Option<&sdp::SessionDescription>,
    ) {
        let (ts_ns, src, msg) = (p.ts_ns, p.src, p.msg);
        self.tick(ts_ns);
        let Some(cid) = msg.call_id() else {
            self.stats.sip_without_call_id += 1;
            return;
        };
        let Some((no, created)) = self.route_sip(cid, p) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&no) else {
            return;
        };
        let room = self.cfg.sip_bytes_total.saturating_sub(self.sip_bytes);
        let budget = SipBudget {
            allowance: self.cfg.call_sip_bytes,
            room,
            texts: self.sip_texts,
        };
        let kept = call.on_sip(p, self.cfg.linger_ns, budget);
        self.sip_bytes += kept;
        self.mem_bytes += kept;
        if !msg.is_request()
            && let Some(ip) = self.unanswered.remove(&no)
        {
            self.floods.settled(ip);
        }
        if let Some(body) = msg.sdp() {
            let parsed;
            let desc = match sdp {
                Some(desc) => Some(desc),
                None => {
                    parsed = sdp::parse(body).ok();
                    parsed.as_ref()
                }
            };
            match desc {
                Some(desc) => self.register_media(no, desc, src, ts_ns, &announced_by(msg)),
                None => self.stats.sdp_errors += 1,
            }
        }
        // A replica that makes posted links keeps none of this (worker 0
        // links by signalling for all).
        if msg.is_request() && self.weighs {
            self.groups.link_by_signalling(
                &mut self.calls,
                &self.by_call_id,
                &self.cfg.legs,
                no,
                created,
                p,
            );
        }
    }

    /// A TLS connection from `client` to `server` whose SIP could not be
    /// read (`note` says why): listed as a call of its own, named by its
    /// addresses and start, holding its packets, and closed at once.
    pub fn on_encrypted_signalling(
        &mut self,
        first_ns: u64,
        last_ns: u64,
        client: SocketAddr,
        server: SocketAddr,
        note: &str,
        refs: &[(u64, PacketRef)],
    ) {
        if self.calls.len() >= self.cfg.max_calls {
            self.stats.calls_rejected_limit += 1;
            return;
        }
        let cid = format!("tls-{client}-{server}-{}", first_ns / 1_000_000);
        let no = self.next_no;
        self.next_no += 1;
        let mut call = Call::new(no, cid.as_bytes(), String::new(), first_ns);
        call.set_encrypted(note, last_ns, refs);
        self.calls.insert(no, Box::new(call));
        self.by_call_id.insert(&self.calls[&no], &self.calls);
        self.stats.calls_created += 1;
        self.finalize(no, EndReason::EndOfCapture);
    }

    /// The call a SIP message on Call-ID `cid` belongs to (and whether it
    /// created it): its open call, unless that one ended and this is a new
    /// initial INVITE; nothing for a late message of a closed call or for
    /// SIP outside INVITE dialogs (the signalling tables take it).
    fn route_sip(&mut self, cid: &[u8], p: &SipPacket<'_, '_>) -> Option<(u64, bool)> {
        if let Some(no) = self.by_call_id.get(cid, &self.calls) {
            if !self
                .calls
                .get(&no)
                .is_some_and(|c| c.starts_new_call(p.msg))
            {
                return Some((no, false));
            }
            self.stats.calls_reusing_call_id += 1;
            self.finalize_between_meetings(no, EndReason::EndOfCapture);
        } else if self.closed.absorbs(cid, p.msg, p.ts_ns) {
            return None;
        }
        let invite = matches!(
            p.msg.start(),
            StartLine::Request {
                method: Method::Invite,
                ..
            }
        );
        if !invite && !self.cfg.all_dialogs {
            self.stats.sip_not_calls += 1;
            self.signalling.on_sip(p.ts_ns, p.src, p.dst, p.msg);
            return None;
        }
        self.create_call(cid, p).map(|no| (no, true))
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
        let invite = matches!(
            p.msg.start(),
            StartLine::Request {
                method: Method::Invite,
                ..
            }
        );
        let dialog = NewDialog {
            ts_ns: p.ts_ns,
            src: p.src,
            dst: p.dst,
            method: &method,
            invite,
            call_id: cid,
        };
        if !self
            .floods
            .admit(&dialog, self.mem_bytes > self.cfg.memory_bytes)
        {
            return None;
        }
        let no = self.next_no;
        self.next_no += 1;
        let mut call = Call::new(no, cid, method, p.ts_ns);
        call.spill_to(self.spill.clone(), self.cfg.keep_packet_refs);
        if invite {
            let facing = legs::facing(p.src.ip(), p.dst.ip(), &self.cfg.legs);
            call.set_first_invite(p.src, p.dst, facing);
            self.unanswered.insert(no, p.src.ip());
        }
        self.mem_bytes += call.mem_estimate() + TABLE_BYTES_PER_CALL;
        self.calls.insert(no, Box::new(call));
        self.by_call_id.insert(&self.calls[&no], &self.calls);
        self.stats.calls_created += 1;
        Some(no)
    }

    /// An SDP of call `no` from `src`, carried by `by`: each m= line's
    /// endpoints now receive media for the call, and media held for them
    /// before (orphans, media-only records) is handed over.
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
            let info = MediaInfo::from_sdp(desc, m, src, ts_ns, by);
            let disabled = info.disabled;
            let idx = call.add_media(info);
            if !disabled {
                if endpoints::is_fax(&call.media()[idx]) {
                    call.note_t38(idx);
                }
                claims.extend(endpoints::claims(no, idx, &call.media()[idx]));
            }
        }
        for (ep, u) in claims {
            self.endpoints.announce(ep, u);
            let Some(call) = self.calls.get_mut(&no) else {
                return;
            };
            for o in self.orphans.claim(ep) {
                self.stats.orphans_claimed += 1;
                call.on_orphan(Some(u.media_idx()), &o);
            }
            for rec in self.media_only.claim(ep) {
                call.absorb_media_only(u.media_idx(), rec);
            }
        }
    }

    /// The Call-ID of the call that owns media between `src` and `dst`, and
    /// whether that m= line is SRTP (its RTCP is then encrypted).
    pub fn media_call_id(&self, src: SocketAddr, dst: SocketAddr) -> Option<(&[u8], bool)> {
        let (u, _) = self.endpoints.find(src, dst)?;
        let call = self.calls.get(&u.call)?;
        let srtp = call.media().get(u.media_idx()).is_some_and(|m| m.is_srtp());
        Some((call.call_id_raw(), srtp))
    }

    /// A UDP datagram that is not SIP. Returns true when it belonged to a call
    /// (or was held as early media, or is media-only).
    pub fn on_udp(
        &mut self,
        ts_ns: u64,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
        refs: &[(u64, PacketRef)],
    ) -> bool {
        self.tick(ts_ns);
        let d = Datagram {
            ts_ns,
            src,
            dst,
            payload,
            refs,
        };
        let Some((u, src_known)) = self.endpoints.find(src, dst) else {
            return self.on_unclaimed(&d);
        };
        self.on_found(u, src_known, &d)
    }

    /// A datagram of the call whose endpoint use `u` it matched
    /// ([`Endpoints::find`]; `src_known`: its source is one of the call's).
    fn on_found(&mut self, u: EndpointUse, src_known: bool, d: &Datagram<'_>) -> bool {
        let Datagram {
            ts_ns,
            src,
            dst,
            payload,
            refs,
        } = *d;
        // The datagram's last frame names it in a posted latch or evidence.
        let pref = refs.last().map_or(PacketRef::default(), |r| r.1);
        if !src_known {
            self.latch(u, src, dst, ts_ns, pref);
        }
        let Some(call) = self.calls.get_mut(&u.call) else {
            return false;
        };
        self.stats.media_packets += 1;
        call.note_media(ts_ns, refs);
        if u.fax && u.role == Role::Rtp {
            // T.38 after the offer/answer: UDPTL, never RTP.
            if call.on_udptl(src, dst, ts_ns, payload) {
                self.stats.fax_packets += 1;
            } else {
                self.stats.media_unparsed += 1;
            }
            return true;
        }
        let rtcp_like = rtp::looks_like_rtcp(payload);
        if u.role == Role::Rtcp || rtcp_like {
            if !call.on_rtcp(u.media_idx(), payload, rtcp_like) {
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
        let seen = call.on_rtp(src, dst, Some(u.media_idx()), ts_ns, &p);
        if seen.is_new || seen.early {
            let e = MediaEvidence::new(u.call, &seen, ts_ns, pref, &p);
            self.groups.note_media(e);
        }
        true
    }

    /// RTCP that another replica owns (parallel engine): its report blocks
    /// update the streams this replica holds; nothing is counted here.
    pub fn on_rtcp_elsewhere(
        &mut self,
        ts_ns: u64,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
    ) {
        self.tick(ts_ns);
        let Some((u, _)) = self.endpoints.find(src, dst) else {
            return;
        };
        if u.fax && u.role == Role::Rtp || !rtp::looks_like_rtcp(payload) {
            return;
        }
        if let Some(call) = self.calls.get_mut(&u.call) {
            call.on_rtcp_elsewhere(u.media_idx(), payload);
        }
    }

    /// A datagram no call's endpoints claim: media-only when its endpoints
    /// already are, else held until an SDP claims it or it ages into
    /// media-only. False when it is neither RTP nor RTCP. A replica also
    /// keeps what it held or dropped until the next meeting, whole
    /// (`unclaimed.rs`): a latch made elsewhere may make it a call's.
    fn on_unclaimed(&mut self, d: &Datagram<'_>) -> bool {
        let Datagram {
            ts_ns,
            src,
            dst,
            payload,
            refs,
        } = *d;
        if self.media_only.on_datagram(ts_ns, src, dst, payload, refs) {
            self.stats.media_only_packets += 1;
            return true;
        }
        let held = self.orphans.hold_datagram(payload, src, dst, refs, ts_ns);
        if !held {
            self.stats.unmatched_udp += 1;
        }
        if self.explicit_sweeps {
            self.unclaimed.note(d, held);
        }
        held
    }

    /// Media arriving at an announced endpoint from an address no SDP of the
    /// call named (NAT): accept it for the call, as an RTP proxy latches,
    /// and remember the real address so traffic sent back to it matches.
    /// A replica of the parallel engine posts the latch at the next sweep
    /// (`latches.rs`): traffic sent back may go to another worker.
    fn latch(
        &mut self,
        u: EndpointUse,
        src: SocketAddr,
        dst: SocketAddr,
        ts_ns: u64,
        pref: PacketRef,
    ) {
        if self.latch_here(u, src, dst, ts_ns) && self.explicit_sweeps {
            self.posted_latches.push(PostedLatch {
                src,
                dst,
                ts_ns,
                pref,
            });
        }
    }

    /// [`Self::latch`] in this table only; true when it latched.
    fn latch_here(&mut self, u: EndpointUse, src: SocketAddr, dst: SocketAddr, ts_ns: u64) -> bool {
        let window = self.cfg.latch_window_ns;
        let Some(call) = self.calls.get_mut(&u.call) else {
            return false;
        };
        if !call.try_latch(u.media_idx(), src, dst, ts_ns, window) {
            return false;
        }
        self.stats.media_latched += 1;
        self.endpoints.latch(src, u);
        true
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

    /// One Call-ID with 4,000 INFO messages of 60 KB: the call keeps text
    /// up to its budget, then summaries up to a quarter more, then counts;
    /// every packet is still the call's.
    #[test]
    fn sip_text_of_a_call_is_held_to_its_budget() {
        let budget = 1 << 20;
        let (c, held) = big_info_call(budget, true);
        assert!(held.iter().all(|&h| h <= budget + budget / 4), "{held:?}");
        assert_eq!(c.sip_packets(), 4001);
        assert_eq!(c.packet_count(), 4000);
        let with_text = c.sip().iter().filter(|e| !e.text.is_empty()).count();
        assert_eq!(with_text, 1 + (budget - 1000) / 60_400, "texts kept");
        assert!(c.sip().len() > with_text, "summaries past the texts");
        assert_eq!(c.sip_truncated(), 4001 - with_text as u64);
        assert_eq!(c.sip_unkept().len() as u64, c.sip_truncated());
    }

    /// A replica that keeps no SIP texts (`keep_no_sip_texts`) keeps no
    /// entries either but counts them as if it kept them: its table holds
    /// the same bytes after every message and the call the same truncation
    /// and unkept packets.
    #[test]
    fn a_table_without_sip_texts_counts_them_as_kept() {
        let budget = 1 << 20;
        let (with, held_with) = big_info_call(budget, true);
        let (without, held_without) = big_info_call(budget, false);
        assert_eq!(held_with, held_without, "bytes held after each message");
        assert!(with.sip().iter().any(|e| !e.text.is_empty()));
        assert!(with.sip().len() > 1000, "{}", with.sip().len());
        assert!(without.sip().is_empty());
        assert_eq!(with.sip_truncated(), without.sip_truncated());
        assert_eq!(with.sip_unkept(), without.sip_unkept());
    }

    /// A call of an INVITE and 4,000 INFOs of 60 KB through a table with
    /// `budget` SIP bytes a call, with or without texts: the call, and the
    /// SIP bytes the table held after each message.
    fn big_info_call(budget: usize, texts: bool) -> (Call, Vec<usize>) {
        let mut t = CallTable::new(CallConfig {
            call_sip_bytes: budget,
            ..Default::default()
        });
        if !texts {
            t.keep_no_sip_texts();
        }
        let a: SocketAddr = "10.0.0.1:5060".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:5060".parse().unwrap();
        let m = invite("big@x");
        t.on_sip(1, a, b, "UDP", &voxtap_proto::sip::parse(&m).unwrap(), &[]);
        let mut held = vec![t.sip_bytes];
        let pad = "x".repeat(60_000);
        for i in 0..4000u64 {
            let raw = format!(
                "INFO sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK{i}\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: big@x\r\nCSeq: {} INFO\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{pad}",
                i + 2,
                pad.len()
            );
            let m = voxtap_proto::sip::parse(raw.as_bytes()).unwrap();
            let refs = [(i, PacketRef::new(0, i * 61_000))];
            t.on_sip(2 + i, a, b, "UDP", &m, &refs);
            held.push(t.sip_bytes);
        }
        assert!(
            t.stats().memory_bytes < 4 * budget as u64,
            "{}",
            t.stats().memory_bytes
        );
        t.finish();
        assert_eq!(t.sip_bytes, 0, "freed with the call");
        (t.drain_ended().pop().unwrap(), held)
    }

    /// How close the table's memory estimate is to what open calls really
    /// take (run by hand: `cargo test -p voxtap-engine --lib
    /// memory_estimate -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn memory_estimate_against_rss() {
        let rss = || {
            let s = std::fs::read_to_string("/proc/self/status").unwrap();
            let l = s
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .unwrap()
                .to_string();
            l[6..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap()
                * 1024
        };
        let mut t = CallTable::new(CallConfig {
            flood_invites_per_s: 0,
            ..Default::default()
        });
        let b: SocketAddr = "10.0.0.2:5060".parse().unwrap();
        let before = rss();
        let n = 50_000u32;
        for i in 0..n {
            let a = SocketAddr::from((std::net::Ipv4Addr::from(0x0a40_0000 + i), 5060));
            let raw = invite(&format!("{i:08x}-spoofed@h"));
            let m = voxtap_proto::sip::parse(&raw).unwrap();
            t.on_sip(
                1_000_000_000 + u64::from(i) * 1_000,
                a,
                b,
                "UDP",
                &m,
                &[(0, PacketRef(u64::from(i)))],
            );
        }
        t.tick(1_000_000_000 + u64::from(n) * 1_000 + 2_000_000_000);
        let real = rss() - before;
        println!(
            "{n} calls: RSS +{} B/call, estimate {} B/call",
            real / u64::from(n),
            t.stats().memory_bytes / u64::from(n)
        );
    }

    /// A flood of INVITEs with random Call-IDs and no BYE: open calls stay
    /// under the cap (the rest counted, not stored), and every call times
    /// out, so memory returns to nothing.
    #[test]
    fn sip_flood_is_bounded_and_times_out() {
        let mut t = CallTable::new(CallConfig {
            max_calls: 1000,
            idle_timeout_ns: 60 * 1_000_000_000,
            // The cap on open calls, not the flood summary, is under test.
            flood_invites_per_s: 0,
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

    fn msg(cid: &str, start: &str, cseq: &str, tags: (&str, &str)) -> Vec<u8> {
        let line = if start.starts_with(|c: char| c.is_ascii_digit()) {
            format!("SIP/2.0 {start}")
        } else {
            format!("{start} SIP/2.0")
        };
        let tt = if tags.1.is_empty() {
            String::new()
        } else {
            format!(";tag={}", tags.1)
        };
        format!(
            "{line}\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag={}\r\nTo: <sip:b@x>{tt}\r\nCall-ID: {cid}\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n",
            tags.0
        )
        .into_bytes()
    }

    /// A BYE without its 200 keeps the call open past the linger until the
    /// transaction wait; a closed call's Call-ID absorbs late messages for
    /// the transaction wait after its last SIP, then forgets it; a new
    /// initial INVITE makes a new call.
    #[test]
    fn transaction_wait_and_closed_call_ids() {
        let s = 1_000_000_000u64;
        let mut t = CallTable::new(CallConfig::default());
        let (a, b): (SocketAddr, SocketAddr) = (
            "10.0.0.1:5060".parse().unwrap(),
            "10.0.0.2:5060".parse().unwrap(),
        );
        let feed = |t: &mut CallTable, at: u64, raw: Vec<u8>| {
            let m = voxtap_proto::sip::parse(&raw).unwrap();
            t.on_sip(at, a, b, "UDP", &m, &[]);
        };
        let (fg, f) = (("f", "g"), ("f", ""));
        feed(&mut t, s, msg("c1", "INVITE sip:b@x", "1 INVITE", f));
        feed(&mut t, 2 * s, msg("c1", "200 OK", "1 INVITE", fg));
        feed(&mut t, 3 * s, msg("c1", "BYE sip:b@x", "2 BYE", fg));
        // Linger (5 s) is over, but the BYE is not answered.
        t.tick(10 * s);
        assert_eq!(t.open_calls(), 1);
        feed(&mut t, 20 * s, msg("c1", "BYE sip:b@x", "2 BYE", fg));
        t.tick(51 * s);
        assert_eq!(t.open_calls(), 1, "32 s after the last retransmission");
        t.tick(53 * s);
        assert_eq!(t.open_calls(), 0);
        assert_eq!(t.drain_ended()[0].sip_messages(), 4);

        // Answered BYE: closed after the linger, late copies absorbed.
        feed(&mut t, 100 * s, msg("c2", "INVITE sip:b@x", "1 INVITE", f));
        feed(&mut t, 101 * s, msg("c2", "BYE sip:b@x", "2 BYE", fg));
        feed(&mut t, 101 * s + 1, msg("c2", "200 OK", "2 BYE", fg));
        t.tick(107 * s);
        assert_eq!(t.open_calls(), 0);
        // c1's Call-ID was forgotten 32 s after its last BYE.
        assert_eq!(t.closed.len(), 1);
        feed(&mut t, 120 * s, msg("c2", "BYE sip:b@x", "2 BYE", fg));
        assert_eq!((t.open_calls(), t.stats().sip_after_close), (0, 1));
        t.tick(140 * s);
        assert_eq!(t.closed.len(), 0);
        feed(
            &mut t,
            141 * s,
            msg("c2", "INVITE sip:b@x", "9 INVITE", ("h", "")),
        );
        assert_eq!(t.open_calls(), 1);
        assert_eq!(t.stats().calls_created, 3);
    }
}
