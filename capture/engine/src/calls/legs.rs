//! Linking the legs of one logical call: B2BUAs, SBCs and media relays give
//! each hop its own Call-ID and media ports. Legs are linked by correlation
//! headers, by the same media seen on two legs, or by an INVITE leaving a
//! box shortly after one arrived for the same numbers. Every link records
//! the method and the evidence, so users see why two legs were joined.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use voxtap_proto::sip::{Message, Method, StartLine, uri_user};

use super::call::{Call, SipPacket, StreamKey};
use super::endpoints::AddrHash;

mod evidence;
mod posted;
mod recent;
pub(in crate::calls) use evidence::MergedRuns;
pub use evidence::{MediaEvidence, PostedEvidence};
pub use posted::{CallName, PostedLink};

/// Why two legs were joined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkMethod {
    /// A configured correlation header (X-Call-ID, X-CID, ...) names the
    /// other leg's Call-ID.
    Header,
    /// Same P-Charging-Vector icid-value.
    ChargingVector,
    /// Same RFC 7989 Session-ID.
    SessionId,
    /// Replaces (or Refer-To ...?Replaces=) names the other leg: a transfer.
    Replaces,
    /// The same RTP stream forwarded by a relay: same SSRC, sequence number,
    /// timestamp and payload a moment later, on the far side of the relay.
    MediaSsrc,
    /// Identical RTP payloads a moment later on the far side of a relay,
    /// with constant sequence and timestamp offsets (a relay that rewrites
    /// the SSRC).
    MediaPayload,
    /// An INVITE left the address another INVITE had just reached, for the
    /// same caller and callee numbers.
    Signalling,
}

impl LinkMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkMethod::Header => "header",
            LinkMethod::ChargingVector => "p-charging-vector",
            LinkMethod::SessionId => "session-id",
            LinkMethod::Replaces => "replaces",
            LinkMethod::MediaSsrc => "media-ssrc",
            LinkMethod::MediaPayload => "media-payload",
            LinkMethod::Signalling => "signalling",
        }
    }
}

/// One link from a leg to another.
#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    /// The other leg's Call-ID.
    pub other: String,
    pub method: LinkMethod,
    /// The evidence: the header value, the SSRC, the box address...
    pub detail: String,
}

#[derive(Clone, Debug)]
pub struct LegConfig {
    /// Headers whose value is another leg's Call-ID (case-insensitive; a
    /// header may carry several comma-separated values).
    pub correlation_headers: Vec<String>,
    /// An outgoing INVITE within this long of an incoming one may be its
    /// next hop.
    pub signalling_window_ns: u64,
    /// A stream on another leg within this long may be the same media.
    pub media_window_ns: u64,
    /// Media relays and SBCs (their media addresses): a stream leaving one
    /// may be the forwarded copy of a stream that reached another address.
    /// A relay with one address is recognised without being named here.
    pub relays: Vec<IpNet>,
    /// Prefixes stripped from numbers before comparing them (e.g. "+",
    /// "00", "+44", "0"), longest first.
    pub strip_prefixes: Vec<String>,
    /// Networks on the carrier side and on the core side, to tell which
    /// way a leg faces.
    pub carrier_networks: Vec<IpNet>,
    pub core_networks: Vec<IpNet>,
}

impl Default for LegConfig {
    fn default() -> Self {
        LegConfig {
            correlation_headers: [
                "X-Call-ID",
                "X-CID",
                "X-Original-Call-ID",
                "X-Orig-Call-ID",
                "X-Leg-Call-ID",
                "X-Related-Call-ID",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            signalling_window_ns: 2_000_000_000,
            media_window_ns: 5_000_000_000,
            relays: Vec::new(),
            strip_prefixes: vec!["+".into()],
            carrier_networks: Vec::new(),
            core_networks: Vec::new(),
        }
    }
}

/// An IPv4 or IPv6 network in CIDR form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    pub fn parse(s: &str) -> Option<IpNet> {
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.trim().parse().ok()?
        };
        (prefix <= max).then_some(IpNet { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> u128 {
            match ip {
                IpAddr::V4(v) => u128::from(u32::from(v)) << 96,
                IpAddr::V6(v) => u128::from(v),
            }
        };
        if self.addr.is_ipv4() != ip.is_ipv4() {
            return false;
        }
        let shift = if self.addr.is_ipv4() { 32 } else { 128 } - u32::from(self.prefix);
        let mask = if self.prefix == 0 {
            0
        } else {
            (!0u128) << (shift + if self.addr.is_ipv4() { 96 } else { 0 })
        };
        bits(self.addr) & mask == bits(ip) & mask
    }
}

/// Which side of the network a leg faces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Facing {
    Carrier,
    Core,
    Unknown,
}

impl Facing {
    pub fn as_str(self) -> &'static str {
        match self {
            Facing::Carrier => "carrier",
            Facing::Core => "core",
            Facing::Unknown => "",
        }
    }
}

/// Correlation keys found in one SIP message.
#[derive(Default, Debug)]
pub(crate) struct MessageKeys {
    /// Call-IDs of other legs named by headers, with the method.
    pub names: Vec<(String, LinkMethod, String)>,
    /// Keys shared by all legs of a call (icid, Session-ID).
    pub shared: Vec<(String, LinkMethod)>,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_string()
}

/// Headers every request is read for besides the configured ones.
const KEY_HEADERS: [&str; 4] = ["P-Charging-Vector", "Session-ID", "Replaces", "Refer-To"];

/// Read the correlation headers of `msg`, in one read of its header lines
/// (a lookup per name read a message of thousands of headers ten times).
pub(crate) fn message_keys(msg: &Message<'_>, cfg: &LegConfig) -> MessageKeys {
    let mut k = MessageKeys::default();
    let configured = cfg.correlation_headers.len();
    let names: Vec<&str> = cfg
        .correlation_headers
        .iter()
        .map(String::as_str)
        .chain(KEY_HEADERS)
        .collect();
    let mut found: Vec<(usize, &[u8])> = msg.headers_among(&names).collect();
    // Grouped by configured name, in message order within each.
    found.sort_by_key(|f| f.0);
    let first = |i: usize| found.iter().find(|f| f.0 == configured + i).map(|f| f.1);
    for &(i, v) in found.iter().take_while(|f| f.0 < configured) {
        let name = names.get(i).copied().unwrap_or_default();
        for id in v.split(|&b| b == b',') {
            let id = lossy(id);
            if !id.is_empty() {
                k.names
                    .push((id.clone(), LinkMethod::Header, format!("{name}: {id}")));
            }
        }
    }
    if let Some(v) = first(0) {
        charging_vector_keys(v, &mut k);
    }
    if let Some(v) = first(1) {
        session_id_keys(v, &mut k);
    }
    if let Some(v) = first(2) {
        let s = lossy(v);
        if let Some(id) = s.split(';').next().map(str::trim).filter(|s| !s.is_empty()) {
            k.names.push((
                id.to_string(),
                LinkMethod::Replaces,
                format!("Replaces: {s}"),
            ));
        }
    }
    // REFER with Refer-To: <sip:x@y?Replaces=callid%3Bto-tag%3D...>
    if let Some(v) = first(3) {
        let s = lossy(v);
        if let Some(pos) = s.to_ascii_lowercase().find("replaces=") {
            let rest = &s[pos + "replaces=".len()..];
            let enc: String = rest
                .chars()
                .take_while(|c| !matches!(c, '>' | '&' | ';'))
                .collect();
            let dec = percent_decode(&enc);
            if let Some(id) = dec.split(';').next().filter(|s| !s.is_empty()) {
                k.names.push((
                    id.to_string(),
                    LinkMethod::Replaces,
                    format!("Refer-To: {s}"),
                ));
            }
        }
    }
    k
}

/// P-Charging-Vector: its `icid-value`, the same on every leg.
fn charging_vector_keys(v: &[u8], k: &mut MessageKeys) {
    for param in v.split(|&b| b == b';') {
        let p = lossy(param);
        if let Some((n, val)) = p.split_once('=')
            && n.trim().eq_ignore_ascii_case("icid-value")
        {
            let val = val.trim().trim_matches('"').to_string();
            if !val.is_empty() {
                k.shared
                    .push((format!("icid:{val}"), LinkMethod::ChargingVector));
            }
        }
    }
}

/// Session-ID (RFC 7989): "local-uuid;remote=remote-uuid". The pair,
/// unordered, is the same on every leg once both ends have answered; the
/// first leg's INVITE carries only its own uuid, so each uuid is a key.
fn session_id_keys(v: &[u8], k: &mut MessageKeys) {
    let s = lossy(v).to_ascii_lowercase();
    let mut parts = s.split(';');
    if let Some(local) = parts.next().map(str::trim).filter(|u| is_session_uuid(u)) {
        k.shared
            .push((format!("sid:{local}"), LinkMethod::SessionId));
    }
    for p in parts {
        if let Some(r) = p
            .trim()
            .strip_prefix("remote=")
            .filter(|u| is_session_uuid(u))
        {
            k.shared.push((format!("sid:{r}"), LinkMethod::SessionId));
        }
    }
}

/// RFC 7989 uuids are 32 hex digits; the all-zero "null" uuid says the far
/// end is unknown and must not link anything.
fn is_session_uuid(u: &str) -> bool {
    u.len() == 32 && u.bytes().all(|b| b.is_ascii_hexdigit()) && u.bytes().any(|b| b != b'0')
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(h) = b.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(&String::from_utf8_lossy(h), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A number as compared between legs: the user part without configured
/// prefixes and visual separators.
pub(crate) fn normalise_number(user: &str, cfg: &LegConfig) -> String {
    let mut u: String = user
        .chars()
        .filter(|c| !matches!(c, '-' | '.' | '(' | ')' | ' '))
        .collect();
    let mut prefixes: Vec<&String> = cfg.strip_prefixes.iter().collect();
    prefixes.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in prefixes {
        if let Some(rest) = u.strip_prefix(p.as_str()) {
            u = rest.to_string();
            break;
        }
    }
    u
}

/// An initial INVITE seen recently, for the signalling method.
#[derive(Clone, Debug)]
pub(crate) struct RecentInvite {
    pub call_no: u64,
    pub ts_ns: u64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub from: Number,
    pub to: Number,
}

/// A caller or callee number as the recent INVITEs keep it: inline up to
/// 22 bytes (a number is shorter), so that an INVITE allocates nothing for
/// it. As Strings they were two small allocations a call made among its
/// lasting ones and freed two seconds later: holes in the heap that calls
/// starting together left for good (some 60 bytes of RSS a call).
#[derive(Clone, Debug)]
pub(crate) enum Number {
    Inline(u8, [u8; NUMBER_INLINE]),
    Heap(Box<str>),
}

const NUMBER_INLINE: usize = 22;

impl Number {
    fn new(s: &str) -> Self {
        let mut b = [0u8; NUMBER_INLINE];
        match b.get_mut(..s.len()) {
            Some(to) => {
                to.copy_from_slice(s.as_bytes());
                Number::Inline(s.len() as u8, b)
            }
            None => Number::Heap(s.into()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            // Whole strings only are kept inline: always UTF-8.
            Number::Inline(n, b) => b
                .get(..usize::from(*n))
                .and_then(|b| std::str::from_utf8(b).ok())
                .unwrap_or(""),
            Number::Heap(s) => s,
        }
    }
}

/// A stream start seen recently, for the media methods.
#[derive(Clone, Copy, Debug)]
pub struct RecentStream {
    pub call_no: u64,
    pub ts_ns: u64,
    pub ssrc: u32,
    pub seq: u16,
}

/// Recent initial INVITEs, found by where they went and their numbers
/// (the next hop's INVITE leaves the box the first one reached, for the
/// same numbers): a scan of every recent INVITE cost O(calls starting in
/// the window) per INVITE, a quarter of a call's SIP work with 2,000 calls
/// starting in a second and growing with them (every replica of the
/// parallel engine repeats it). One ring for the whole engine
/// ([`recent::Recent`], keyed by [`hop_key`]), not a queue per key: with
/// distinct numbers per call that was a 512-byte allocation per call
/// starting, which the allocator kept after the window passed.
#[derive(Default)]
pub(crate) struct RecentInvites {
    ring: recent::Recent<RecentInvite>,
}

/// The key an INVITE is found by: the address it reached and its numbers.
fn hop_key(ip: IpAddr, from: &str, to: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one((ip, from, to))
}

impl recent::Keyed for RecentInvite {
    type Key = u64;
    fn key(&self) -> u64 {
        hop_key(self.dst.ip(), self.from.as_str(), self.to.as_str())
    }
}

impl RecentInvites {
    fn push(&mut self, r: RecentInvite) {
        self.ring.push(r);
    }

    /// Drops the INVITEs older than `window` at the front of the ring.
    fn expire(&mut self, now_ns: u64, window: u64) {
        self.ring.expire_front(|r| r.ts_ns + window < now_ns);
    }

    /// The latest INVITE that reached `ip` for these numbers and matches.
    fn latest(
        &self,
        ip: IpAddr,
        from: &str,
        to: &str,
        matches: impl Fn(&RecentInvite) -> bool,
    ) -> Option<&RecentInvite> {
        // A hash: the fields are checked.
        self.ring.newest(hop_key(ip, from, to), |r| {
            r.dst.ip() == ip && r.from.as_str() == from && r.to.as_str() == to && matches(r)
        })
    }
}

impl recent::Keyed for RecentStream {
    type Key = u32;
    fn key(&self) -> u32 {
        self.ssrc
    }
}

/// Recent evidence, bounded by time windows.
#[derive(Default)]
pub(crate) struct LegIndex {
    pub invites: RecentInvites,
    streams_by_ssrc: recent::Recent<RecentStream>,
    /// Hash of a distinctive payload -> where it was first seen.
    pub payloads: HashMap<u64, SeenPayload>,
    /// Streams whose payloads matched another leg's: how consistently.
    runs: HashMap<(StreamKey, StreamKey), PayloadRun>,
    pub shared_keys: HashMap<String, u64>,
    keys_of: HashMap<u64, Vec<String>>,
}

impl LegIndex {
    /// Drops the INVITEs older than the signalling window: a few at the
    /// front of a queue, cheap enough for every INVITE.
    pub fn expire_invites(&mut self, now_ns: u64, cfg: &LegConfig) {
        self.invites.expire(now_ns, cfg.signalling_window_ns);
    }

    /// Everything older than its window. The media maps are walked whole,
    /// so this runs at sweeps (once a second of capture time), not per
    /// INVITE: at every INVITE it cost O(open streams) each, a third of the
    /// CPU when 25,000 calls started together. Lookups check the windows
    /// themselves, so what they find does not depend on when this ran.
    pub fn expire(&mut self, now_ns: u64, cfg: &LegConfig) {
        self.expire_invites(now_ns, cfg);
        let w = cfg.media_window_ns;
        self.streams_by_ssrc.retain(|s| s.ts_ns + w >= now_ns);
        self.payloads.retain(|_, p| p.ns + w >= now_ns);
        self.runs.retain(|_, r| r.last_ns + w >= now_ns);
    }

    /// Remember a key shared by all legs of a call (icid, Session-ID).
    pub fn add_shared(&mut self, key: String, call_no: u64) {
        self.keys_of.entry(call_no).or_default().push(key.clone());
        self.shared_keys.insert(key, call_no);
    }

    /// One more identical payload between the streams of `pair` at
    /// `offsets` (sequence, timestamp): the run once it is long enough to
    /// link them (and then forgotten), else None. Other offsets start over.
    fn note_run(
        &mut self,
        pair: (StreamKey, StreamKey),
        offsets: (u16, u32),
        delay_ns: u64,
        ts_ns: u64,
        window_ns: u64,
    ) -> Option<PayloadRun> {
        if self.runs.len() >= MAX_RUNS {
            self.runs.clear();
        }
        let fresh = PayloadRun {
            seq_offset: offsets.0,
            ts_offset: offsets.1,
            matches: 0,
            delay_ns,
            last_ns: ts_ns,
        };
        let run = self.runs.entry(pair).or_insert(fresh);
        // A run older than the media window is over (the sweep may not
        // have removed it yet).
        if (run.seq_offset, run.ts_offset) != offsets || run.last_ns + window_ns < ts_ns {
            *run = fresh;
        }
        run.matches += 1;
        run.last_ns = ts_ns;
        if run.matches < PAYLOAD_RUN {
            return None;
        }
        self.runs.remove(&pair)
    }

    /// Forget a call that was closed: its keys must not link new calls.
    /// Invites, streams and payloads age out by their time windows, and a
    /// stale entry naming a closed call links nothing.
    pub fn forget(&mut self, call_no: u64) {
        for k in self.keys_of.remove(&call_no).unwrap_or_default() {
            if self.shared_keys.get(&k) == Some(&call_no) {
                self.shared_keys.remove(&k);
            }
        }
    }
}

/// An early packet of a stream, fingerprinted for the payload method.
#[derive(Clone, Copy, Debug)]
pub struct SeenPayload {
    pub call_no: u64,
    pub key: StreamKey,
    pub seq: u16,
    pub rtp_ts: u32,
    pub ns: u64,
}

/// Identical payloads between a new stream and one on another leg, so far
/// with the same sequence and timestamp offsets.
#[derive(Clone, Copy, Debug)]
struct PayloadRun {
    seq_offset: u16,
    ts_offset: u32,
    matches: u8,
    delay_ns: u64,
    last_ns: u64,
}

/// Identical payloads in this many packets, at constant offsets, link legs
/// whose relay rewrote the SSRC.
const PAYLOAD_RUN: u8 = 3;

/// Runs tracked at most (a flood of look-alike streams must not grow it).
const MAX_RUNS: usize = 10_000;

/// A fast 64-bit hash of bytes (8 at a time), to compare payloads and keep
/// tags and keys without their bytes. Not for anything adversarial beyond
/// a bounded map key.
pub fn payload_hash(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ (b.len() as u64);
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= h >> 29;
    }
    for &x in chunks.remainder() {
        h = (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3);
    }
    h ^ (h >> 32)
}

/// Whether a stream (`new`) can be another one (`old`) forwarded by a
/// relay, and why: it leaves from the host the old one went to (a relay
/// with one address), or from a configured relay, or the two share no host
/// (a relay with an address on each side). Two streams between the same two
/// hosts are parallel calls (SIPp plays the same audio with the same SSRC in
/// every call) or an echo, never a hop.
pub fn relay_hop(old: &StreamKey, new: &StreamKey, cfg: &LegConfig) -> Option<String> {
    let (os, od, ns, nd) = (old.src.ip(), old.dst.ip(), new.src.ip(), new.dst.ip());
    if (os, od) == (ns, nd) || (os, od) == (nd, ns) || nd == os {
        return None;
    }
    if ns == od {
        return Some(format!(
            "it leaves {} from the host the other leg's stream went to ({})",
            new.src, old.dst
        ));
    }
    if let Some(r) = cfg.relays.iter().find(|r| r.contains(ns) && r.contains(od)) {
        return Some(format!(
            "it leaves {} and the other leg's stream went to {}, both of the configured relay {}/{}",
            new.src, old.dst, r.addr, r.prefix
        ));
    }
    if ns != os && nd != od && ns != od && nd != os {
        return Some(format!(
            "the other leg's stream {} -> {} and this one {} -> {} share no host (a relay with an address on each side)",
            old.src, old.dst, new.src, new.dst
        ));
    }
    None
}

/// A payload worth matching across legs: enough distinct byte values that
/// two calls carrying it by chance (silence, comfort noise, tones) is
/// implausible.
pub(crate) fn distinctive_payload_hash(payload: &[u8]) -> Option<u64> {
    if payload.len() < 40 {
        return None;
    }
    let mut seen = [false; 256];
    let mut distinct = 0;
    for &b in payload {
        if !seen[usize::from(b)] {
            seen[usize::from(b)] = true;
            distinct += 1;
        }
    }
    if distinct < 24 {
        return None;
    }
    // FNV-1a: fast, no allocation, good enough to key a time-bounded map.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in payload {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    Some(h)
}

/// Caller and callee numbers of an initial INVITE, normalised.
pub(crate) fn invite_numbers(msg: &Message<'_>, cfg: &LegConfig) -> Option<(String, String)> {
    if !matches!(msg.start(), StartLine::Request { .. }) {
        return None;
    }
    let from = msg.from().and_then(|f| uri_user(f.uri)).map(lossy)?;
    // The request URI names the callee as this hop routes it; To keeps the
    // number the caller dialled. Either matching the other leg counts, so
    // use To (stable across hops).
    let to = msg.to().and_then(|t| uri_user(t.uri)).map(lossy)?;
    Some((normalise_number(&from, cfg), normalise_number(&to, cfg)))
}

pub(crate) fn facing(src: IpAddr, dst: IpAddr, cfg: &LegConfig) -> Facing {
    let in_any = |nets: &[IpNet], ip: IpAddr| nets.iter().any(|n| n.contains(ip));
    if in_any(&cfg.carrier_networks, src) || in_any(&cfg.carrier_networks, dst) {
        Facing::Carrier
    } else if in_any(&cfg.core_networks, src) || in_any(&cfg.core_networks, dst) {
        Facing::Core
    } else {
        Facing::Unknown
    }
}

/// A leg that named a Call-ID not seen yet: (that leg, method, evidence).
type PendingName = (u64, LinkMethod, String);

/// Open calls by number (the call table's store).
/// Open calls by number: looked up for every media packet, so hashed with
/// foldhash, not SipHash (numbers are ours, not an attacker's).
pub(super) type OpenCalls = HashMap<u64, Box<Call>, AddrHash>;

/// Calls grouped into logical calls: the evidence that links legs, which
/// group each call is in, and the closed legs waiting for the rest of their
/// group, so a logical call is handed out whole.
#[derive(Default)]
pub(super) struct Groups {
    index: LegIndex,
    /// Call -> the first call of its logical call (group root), and group
    /// root -> every call of the group: for linked calls only (a call alone
    /// is its own root and only member, which most calls are: two map
    /// entries and a Vec each would cost them 80 bytes).
    group_of: HashMap<u64, u64, AddrHash>,
    members: HashMap<u64, Vec<u64>, AddrHash>,
    /// Closed calls waiting for the other legs of their group to close.
    parked: HashMap<u64, Call, AddrHash>,
    /// Call-IDs named by correlation headers before that call was seen.
    pending_names: HashMap<Box<[u8]>, Vec<PendingName>>,
    /// Links made so far.
    linked: u64,
    /// Media evidence noted since the last sweep, and the first packets of
    /// recent streams it gave (`evidence.rs`; empty in a replica that
    /// leaves weighing to another, `posted.rs`).
    noted: Vec<MediaEvidence>,
    early: recent::Recent<evidence::EarlyStream>,
    /// Links made while recording them (`posted.rs`).
    made: Option<Vec<PostedLink>>,
    /// Calls closed between meetings, parked until the links posted at
    /// the next one are made (`posted.rs`, a replica that makes them).
    held: Vec<u64>,
}

/// Pending names kept at most: a flood of bogus names must not grow memory.
const MAX_PENDING_NAMES: usize = 100_000;

impl Groups {
    /// The group root of call `no`, if it is open or parked.
    fn root(&self, open: &OpenCalls, no: u64) -> Option<u64> {
        self.group_of
            .get(&no)
            .copied()
            .or_else(|| (open.contains_key(&no) || self.parked.contains_key(&no)).then_some(no))
    }

    pub fn linked(&self) -> u64 {
        self.linked
    }

    pub fn expire(&mut self, now_ns: u64, cfg: &LegConfig) {
        self.index.expire(now_ns, cfg);
        self.expire_early(now_ns, cfg.media_window_ns);
    }

    /// Call `call` closed. Returns its group's calls, in start order, when it
    /// was the last open one; else parks it until the others close.
    pub fn close(&mut self, open: &OpenCalls, call: Call) -> Vec<Call> {
        let no = call.no();
        let root = self.group_of.get(&no).copied().unwrap_or(no);
        let members = self
            .members
            .get(&root)
            .cloned()
            .unwrap_or_else(|| vec![root]);
        if members.iter().any(|m| open.contains_key(m)) {
            self.parked.insert(no, call);
            return Vec::new();
        }
        let mut out: Vec<Call> = members
            .iter()
            .filter_map(|m| self.parked.remove(m))
            .collect();
        out.push(call);
        out.sort_by_key(|c| (c.start_ns(), c.no()));
        for c in &out {
            self.group_of.remove(&c.no());
            self.index.forget(c.no());
        }
        self.members.remove(&root);
        out
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.group_of.is_empty()
            && self.members.is_empty()
            && self.parked.is_empty()
            && self.held.is_empty()
    }

    /// What linking by signalling keeps: pending names, shared keys and
    /// recent INVITEs.
    #[cfg(test)]
    pub fn signalling_state(&self) -> usize {
        self.pending_names.len() + self.index.shared_keys.len() + self.index.invites.ring.len()
    }

    fn call_mut<'c>(&'c mut self, open: &'c mut OpenCalls, no: u64) -> Option<&'c mut Call> {
        match open.get_mut(&no) {
            Some(c) => Some(c),
            None => self.parked.get_mut(&no),
        }
    }

    fn call_id_of(&self, open: &OpenCalls, no: u64) -> Option<String> {
        open.get(&no)
            .map(|c| &**c)
            .or_else(|| self.parked.get(&no))
            .map(|c| c.call_id().to_string())
    }

    /// Join the logical calls of `a` and `b`, recording why on both legs.
    /// Whether it did (not when they are one logical call already, or one
    /// is neither open nor parked).
    fn link(
        &mut self,
        open: &mut OpenCalls,
        a: u64,
        b: u64,
        method: LinkMethod,
        detail: String,
    ) -> bool {
        let (Some(ra), Some(rb)) = (self.root(open, a), self.root(open, b)) else {
            return false;
        };
        if ra == rb {
            return false;
        }
        let (Some(ida), Some(idb)) = (self.call_id_of(open, a), self.call_id_of(open, b)) else {
            return false;
        };
        if let Some(c) = self.call_mut(open, a) {
            c.add_link(Link {
                other: idb,
                method,
                detail: detail.clone(),
            });
        }
        if let Some(c) = self.call_mut(open, b) {
            c.add_link(Link {
                other: ida,
                method,
                detail,
            });
        }
        self.linked += 1;
        // The older group absorbs the newer; its first leg names the call.
        let (keep, gone) = if ra < rb { (ra, rb) } else { (rb, ra) };
        let moved = self.members.remove(&gone).unwrap_or_else(|| vec![gone]);
        for m in &moved {
            self.group_of.insert(*m, keep);
        }
        let members = self.members.entry(keep).or_insert_with(|| vec![keep]);
        members.extend(moved);
        members.sort_unstable();
        let members = members.clone();
        let Some(name) = self.call_id_of(open, keep) else {
            return true;
        };
        for m in members {
            if let Some(c) = self.call_mut(open, m) {
                c.set_group(name.clone());
            }
        }
        true
    }

    /// A SIP request of call `no` (`created` by it): correlation headers
    /// naming other legs, and an initial INVITE leaving the box another
    /// reached. Every link is recorded while recording (the parallel
    /// engine's worker 0 posts them; the other replicas never come here).
    pub fn link_by_signalling(
        &mut self,
        open: &mut OpenCalls,
        by_call_id: &super::call_ids::CallIds,
        cfg: &LegConfig,
        no: u64,
        created: bool,
        p: &SipPacket<'_, '_>,
    ) {
        if created
            && let Some(cid) = p.msg.call_id()
            && let Some(waiting) = self.pending_names.remove(cid)
        {
            for (other, method, detail) in waiting {
                self.link_recorded(open, (no, other), method, detail);
            }
        }
        self.link_by_keys(open, by_call_id, message_keys(p.msg, cfg), no);
        let initial_invite = created
            && matches!(
                p.msg.start(),
                StartLine::Request {
                    method: Method::Invite,
                    ..
                }
            );
        if initial_invite {
            self.link_next_hop(open, cfg, no, p);
        }
    }

    /// Headers naming another leg's Call-ID (remembered until that call is
    /// seen), and keys shared by every leg.
    fn link_by_keys(
        &mut self,
        open: &mut OpenCalls,
        by_call_id: &super::call_ids::CallIds,
        keys: MessageKeys,
        no: u64,
    ) {
        for (name, method, detail) in keys.names {
            match by_call_id.get(name.as_bytes(), open) {
                Some(other) if other != no => {
                    self.link_recorded(open, (no, other), method, detail);
                }
                Some(_) => {}
                None => {
                    if self.pending_names.len() >= MAX_PENDING_NAMES {
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
            match self.index.shared_keys.get(&key).copied() {
                Some(other) if other != no => {
                    self.link_recorded(open, (no, other), method, key);
                }
                Some(_) => {}
                None => self.index.add_shared(key, no),
            }
        }
    }

    /// The initial INVITE of call `no` left the address another INVITE for
    /// the same numbers had just reached: the next hop of that call.
    fn link_next_hop(
        &mut self,
        open: &mut OpenCalls,
        cfg: &LegConfig,
        no: u64,
        p: &SipPacket<'_, '_>,
    ) {
        let Some((from, to)) = invite_numbers(p.msg, cfg) else {
            return;
        };
        let (ts_ns, src, dst) = (p.ts_ns, p.src, p.dst);
        self.index.expire_invites(ts_ns, cfg);
        let window = cfg.signalling_window_ns;
        let hit = self
            .index
            .invites
            .latest(src.ip(), &from, &to, |r| {
                // The box that received the first INVITE sends the second,
                // to somewhere else; the same UA calling twice is no hop.
                r.call_no != no
                    && r.src != src
                    && r.dst != dst
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
            self.link_recorded(open, (no, r.call_no), LinkMethod::Signalling, detail);
        }
        self.index.invites.push(RecentInvite {
            call_no: no,
            ts_ns,
            src,
            dst,
            from: Number::new(&from),
            to: Number::new(&to),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(extra: &str) -> Vec<u8> {
        format!(
            "INVITE sip:+15551234@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:+4420555@10.0.0.1>;tag=a\r\nTo: <sip:+15551234@10.0.0.2>\r\nCall-ID: leg-b@sbc\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn keys(extra: &str) -> MessageKeys {
        let raw = msg(extra);
        let m = voxtap_proto::sip::parse(&raw).unwrap();
        message_keys(&m, &LegConfig::default())
    }

    #[test]
    fn correlation_headers_with_several_values() {
        let k = keys("X-Call-ID: leg-a@pbx, leg-z@pbx\r\nX-CID: other@x\r\n");
        let names: Vec<&str> = k.names.iter().map(|n| n.0.as_str()).collect();
        assert_eq!(names, ["leg-a@pbx", "leg-z@pbx", "other@x"]);
        assert!(k.names.iter().all(|n| n.1 == LinkMethod::Header));
        let k = keys("x-original-call-id: orig@1\r\n");
        assert_eq!(k.names[0].0, "orig@1");
    }

    #[test]
    fn charging_vector_and_session_id() {
        let k = keys(
            "P-Charging-Vector: icid-value=\"AyretyU0dm+6O2IrT5tAFrbHLso=\";orig-ioi=home1.net\r\n",
        );
        assert_eq!(
            k.shared,
            [(
                "icid:AyretyU0dm+6O2IrT5tAFrbHLso=".to_string(),
                LinkMethod::ChargingVector
            )]
        );
        let k = keys(
            "Session-ID: ab30317f1a784dc48ff824d0d3715d86;remote=47755a9de7794ba387653f2099600ef2\r\n",
        );
        assert_eq!(k.shared.len(), 2);
        assert!(k.shared.iter().all(|s| s.1 == LinkMethod::SessionId));
        // The null uuid links nothing.
        let k = keys(
            "Session-ID: ab30317f1a784dc48ff824d0d3715d86;remote=00000000000000000000000000000000\r\n",
        );
        assert_eq!(k.shared.len(), 1);
    }

    #[test]
    fn replaces_and_refer_to() {
        let k = keys("Replaces: 425928@bobster.example.org;to-tag=7743;from-tag=6472\r\n");
        assert_eq!(k.names[0].0, "425928@bobster.example.org");
        assert_eq!(k.names[0].1, LinkMethod::Replaces);
        let k = keys(
            "Refer-To: <sip:dave@denver.example.org?Replaces=12345%40192.168.118.3%3Bto-tag%3D12345%3Bfrom-tag%3D5FFE-3994>\r\n",
        );
        assert_eq!(k.names[0].0, "12345@192.168.118.3");
    }

    #[test]
    fn numbers_normalised() {
        let cfg = LegConfig {
            strip_prefixes: vec!["+".into(), "+44".into(), "0".into()],
            ..Default::default()
        };
        assert_eq!(normalise_number("+44 20-7946(0000)", &cfg), "2079460000");
        assert_eq!(normalise_number("02079460000", &cfg), "2079460000");
    }

    #[test]
    fn networks() {
        let n = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.200.0.1".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(!n.contains("::1".parse().unwrap()));
        let n6 = IpNet::parse("2001:db8::/32").unwrap();
        assert!(n6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(
            IpNet::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(IpNet::parse("10.0.0.0/33").is_none());
    }

    #[test]
    fn silence_is_not_distinctive() {
        assert!(distinctive_payload_hash(&[0xff; 160]).is_none());
        let speech: Vec<u8> = (0..160u32).map(|i| (i * 37 % 251) as u8).collect();
        assert!(distinctive_payload_hash(&speech).is_some());
    }
}
