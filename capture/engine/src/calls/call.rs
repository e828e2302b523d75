//! One call (one SIP dialog set, keyed by Call-ID) and what we learnt about it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;

use super::Endpoint;
use super::endpoints::AddrHash;
use super::legs::{Facing, Link};
use super::packet_log::PacketLog;
use voxtap_proto::stream_stats::StreamStats;

mod dialog;
mod fax;
mod media;
mod names;
mod replica;
mod sip_text;
pub(in crate::calls) use sip_text::SipBudget;
mod streams;

pub(crate) use dialog::SipPacket;
pub(super) use dialog::{announced_by, is_new_initial_invite};
pub use fax::FaxStream;
pub use media::MediaInfo;
use names::Name;
pub(super) use streams::{EARLY_PACKETS, RtpSeen};

/// Where a packet lies in the capture: the source (file) index in the top 16
/// bits and the byte offset of its record in the low 48, so a call's PCAP can
/// be cut later from the original files without rescanning them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PacketRef(pub u64);

impl PacketRef {
    pub const OFFSET_BITS: u32 = 48;
    /// A frame the live store could not keep (its disk was full): the call
    /// still counts it, but there is nothing to read back.
    pub const NOT_STORED: PacketRef = PacketRef(u64::MAX);

    pub fn new(source: u16, offset: u64) -> Self {
        PacketRef(
            (u64::from(source) << Self::OFFSET_BITS) | (offset & ((1 << Self::OFFSET_BITS) - 1)),
        )
    }

    pub fn source(self) -> u16 {
        (self.0 >> Self::OFFSET_BITS) as u16
    }

    pub fn offset(self) -> u64 {
        self.0 & ((1 << Self::OFFSET_BITS) - 1)
    }
}

/// The dialog's outcome, as a carrier engineer names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallState {
    /// No final response yet (the capture ended first).
    InProgress,
    /// 18x seen, no final response yet.
    Ringing,
    /// 2xx to the initial INVITE.
    Answered,
    /// 486 Busy Here or 600 Busy Everywhere.
    Busy,
    /// 603 Decline.
    Declined,
    /// CANCEL, or 487 Request Terminated.
    Cancelled,
    /// 408 / 480: nobody picked up.
    NoAnswer,
    /// Any other final failure; see the status code.
    Failed,
    /// Neither a final response nor a BYE before the idle timeout.
    TimedOut,
    /// A non-INVITE transaction (REGISTER, OPTIONS, MESSAGE...) that got a 2xx.
    Completed,
}

impl CallState {
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::InProgress => "in_progress",
            CallState::Ringing => "ringing",
            CallState::Answered => "answered",
            CallState::Busy => "busy",
            CallState::Declined => "declined",
            CallState::Cancelled => "cancelled",
            CallState::NoAnswer => "no_answer",
            CallState::Failed => "failed",
            CallState::TimedOut => "timed_out",
            CallState::Completed => "completed",
        }
    }

    /// A final state of the initial transaction: later responses to it
    /// (retransmissions) do not change it.
    pub fn is_final(self) -> bool {
        !matches!(self, CallState::InProgress | CallState::Ringing)
    }
}

/// Why the call was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    Bye,
    Cancel,
    FinalResponse,
    IdleTimeout,
    EndOfCapture,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Bye => "bye",
            EndReason::Cancel => "cancel",
            EndReason::FinalResponse => "final_response",
            EndReason::IdleTimeout => "idle_timeout",
            EndReason::EndOfCapture => "end_of_capture",
        }
    }
}

/// RTCP figures a peer reported about one of our streams (from SR/RR report
/// blocks naming its SSRC), kept beside what we measured.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RtcpView {
    pub reports: u32,
    pub fraction_lost: u8,
    pub cumulative_lost: i32,
    /// Interarrival jitter in RTP timestamp units, as reported.
    pub jitter_units: u32,
}

/// Identity of an RTP stream: 5-tuple (UDP implied) plus SSRC, in 44
/// bytes (two [`Endpoint`]s; with `SocketAddr`s it took 68).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StreamKey {
    pub src: Endpoint,
    pub dst: Endpoint,
    pub ssrc: u32,
}

impl StreamKey {
    pub fn new(src: SocketAddr, dst: SocketAddr, ssrc: u32) -> Self {
        StreamKey {
            src: src.into(),
            dst: dst.into(),
            ssrc,
        }
    }
}

pub struct Stream {
    pub key: StreamKey,
    pub stats: StreamStats,
    /// The m= line (index into `Call::media`) whose endpoint matched:
    /// [`Self::media_idx`] (32 bits, [`NO_MEDIA`] for none: 12 bytes less
    /// than an `Option<usize>`).
    media: u32,
    pub rtcp: RtcpView,
    /// Sender reports this SSRC sent about itself.
    pub sender_reports: u32,
    /// Packets seen so far, counted up to a small cap: only a stream's
    /// first packets are fingerprinted for leg linking (their evidence is
    /// weighed at sweeps, `legs/evidence.rs`).
    pub early_packets: u8,
}

/// One of a stream's first packets, as leg linking compares them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecentPacket {
    /// Capture time (0: none yet).
    pub ns: u64,
    pub rtp_ts: u32,
    /// The low 32 bits of [`crate::calls::legs::payload_hash`] of its
    /// payload (with SSRC, sequence number and timestamp equal too, a
    /// false match is one in 2^32).
    pub hash: u32,
}

impl RecentPacket {
    pub fn new(ns: u64, rtp_ts: u32, hash: u64) -> Self {
        RecentPacket {
            ns,
            rtp_ts,
            hash: hash as u32,
        }
    }

    /// Whether `hash` (a full payload hash) is this packet's.
    pub fn same_payload(&self, hash: u64) -> bool {
        self.hash == hash as u32
    }
}

/// [`Stream::media`] when no m= line matched (a call never has 2^32).
const NO_MEDIA: u32 = u32::MAX;

impl Stream {
    /// The m= line (index into `Call::media`) whose endpoint matched.
    pub fn media_idx(&self) -> Option<usize> {
        (self.media != NO_MEDIA).then_some(self.media as usize)
    }

    pub(super) fn set_media_idx(&mut self, media_idx: Option<usize>) {
        self.media = media_idx
            .and_then(|m| u32::try_from(m).ok())
            .unwrap_or(NO_MEDIA);
    }

    /// The RTP clock of its first packet's payload type (from the SDP,
    /// else RFC 3551's table, else 8 kHz): what RTCP jitter is read in.
    pub fn clock_rate(&self) -> u32 {
        self.stats.default_clock_rate()
    }
}

/// A SIP message as kept for `sip.txt` and the ladder diagram. `text` is
/// empty when the call's SIP budget left room for the summary only (the
/// message is in `call.pcap` whatever the budget).
#[derive(Clone, Debug)]
pub struct SipEntry {
    pub ts_ns: u64,
    pub src: Endpoint,
    pub dst: Endpoint,
    pub transport: &'static str,
    /// Start line summary, e.g. "INVITE sip:bob@x" or "200 OK (INVITE)":
    /// the usual responses' are shared statics (see `dialog::summary`).
    pub summary: Cow<'static, str>,
    /// Boxed (16 bytes, not a String's 24): set once, never grown.
    pub text: Box<str>,
    /// While the call is open, where its text waits in the table's spill
    /// (0: the text is in `text`, or there is none): here rather than in
    /// a Vec of the call's own, one allocation less a call.
    pub(crate) text_rec: super::spill::ChunkPtr,
}

/// What few calls have (RTCP about unknown SSRCs, legs linked, NAT
/// latching, capture loss, SIP over budget, fax, TLS, tunnels): boxed on
/// first use, so the others do not carry its 200 bytes.
#[derive(Default)]
pub(super) struct Rare {
    /// RTCP reports about SSRCs we have not (yet) seen as a stream.
    pub rtcp_unmatched: u32,
    /// Links to the other legs of the same logical call, with why.
    pub links: Vec<Link>,
    /// Media that arrived from an address the SDP never named (NAT), as
    /// (announced endpoint it was sent to, real source).
    pub latched: Vec<(SocketAddr, SocketAddr)>,
    /// Packets the capture itself lost while this call was open (kernel ring
    /// full, or a sensor stage dropping): the sensor cannot tell whose they
    /// were, so every call open at the time carries the count. Distinct from
    /// network loss, which the RTP sequence numbers measure per stream.
    pub capture_loss: u64,
    /// SIP messages whose text was not kept (over the budget).
    pub sip_truncated: u64,
    /// SIP messages past the limits a SIP stack takes (thousands of
    /// headers, a header section over 64 KiB), parsed and attributed anyway.
    pub sip_oversized: u64,
    /// The packets of the messages whose text was not kept: the call's
    /// pcap has them, the outputs built in memory from its frames do not.
    pub sip_unkept: Vec<PacketRef>,
    /// When an offer/answer turned one of its media lines into T.38 fax
    /// (`m=image ... udptl t38`).
    pub fax_ns: Option<u64>,
    /// UDPTL (T.38) packets per direction: fax, never RTP.
    pub fax: Vec<FaxStream>,
    /// Empty for SIP in the clear; "tls (decrypted)" when its SIP came over
    /// TLS and was decrypted; "tls (not decrypted: why)" for a TLS
    /// connection listed in place of the calls it hid.
    pub encrypted_signalling: String,
    /// The encapsulations its first tunnelled SIP message came in, e.g.
    /// `erspan(7)/vlan(100)`; empty when its SIP came plain.
    pub outer_path: String,
    /// A media-only record's pair of endpoints (ports folded to even), what
    /// identifies it across the parallel engine's replicas.
    pub media_pair: Option<(SocketAddr, SocketAddr)>,
    /// The Call-ID as it was on the wire when it was not valid UTF-8 (the
    /// display form is then lossy; otherwise both are the same).
    pub call_id_raw: Option<Box<[u8]>>,
    /// Streams by key once there are more than [`STREAMS_SCANNED`] of them
    /// (fewer are found by a scan: most calls have two).
    pub stream_index: Option<HashMap<StreamKey, usize, AddrHash>>,
}

/// The [`Rare`] of a call that has none of it.
static NO_RARE: Rare = Rare {
    rtcp_unmatched: 0,
    links: Vec::new(),
    latched: Vec::new(),
    capture_loss: 0,
    sip_truncated: 0,
    sip_oversized: 0,
    sip_unkept: Vec::new(),
    fax_ns: None,
    fax: Vec::new(),
    encrypted_signalling: String::new(),
    outer_path: String::new(),
    media_pair: None,
    call_id_raw: None,
    stream_index: None,
};

/// The times of [`Call::marks`].
#[derive(Clone, Copy)]
enum Mark {
    /// The first 18x.
    Ringing,
    /// The 2xx to the initial INVITE.
    Answer,
    /// See [`Call::end_ns`].
    End,
    /// Capture time after which the call is closed (set by BYE, CANCEL or
    /// a final failure; media and ACKs may still trail until then).
    LingerUntil,
}

/// One call: the dialog's state (driven by its SIP, in `dialog`), the media
/// its SDP announced, and its streams (driven by RTP/RTCP, in `streams`).
/// The call table owns calls and routes packets to them; everyone else reads
/// them through the accessors below.
pub struct Call {
    no: u64,
    /// The Call-ID for display (lossy UTF-8), the method, parties,
    /// Request-URI and group (see the accessors) ...
    names: names::Names,
    start_ns: u64,
    /// The times a call may not have yet, by [`Mark`], each valid when its
    /// bit of `marks_set` is: 8 bytes each rather than an `Option<u64>`'s
    /// 16, with no value kept from use as a sentinel.
    marks: [u64; 4],
    marks_set: u8,
    last_ns: u64,
    state: CallState,
    status_code: Option<u16>,
    end_reason: Option<EndReason>,
    /// CSeq of the latest initial INVITE (a 401/407 challenge makes the
    /// caller send a new one with a higher CSeq).
    invite_cseq: Option<u32>,
    /// Frames that carried its SIP (a message split over TCP segments is
    /// several frames; one segment carrying two messages counts for each).
    sip_packets: u64,
    /// SIP messages (what tshark counts).
    sip_messages: u64,
    /// Hash of the From-tag of its first message, and the highest request
    /// CSeq: what tells a retransmission from a new call on the Call-ID.
    from_tag: u64,
    max_cseq: u32,
    /// Capture time of its latest SIP message.
    last_sip_ns: u64,
    /// Ending transactions not complete yet (`dialog::AWAIT_*` bits).
    awaiting: u8,
    rtp_packets: u64,
    rtcp_packets: u64,
    /// Every packet of the call: (capture time, where it is); the older
    /// ones spilled to disk.
    packets: PacketLog,
    /// Its SIP messages; while the call is open their texts are in
    /// `sip_texts`' spill (each entry's `text_rec`), not in the entries.
    sip: Vec<SipEntry>,
    sip_texts: sip_text::SpilledTexts,
    media: Vec<MediaInfo>,
    streams: Vec<Stream>,
    /// What few calls have, boxed on first use (see [`Rare`]).
    rare: Option<Box<Rare>>,
    /// Which way the first INVITE faced (carrier or core networks).
    facing: Facing,
    /// Where the first INVITE came from and went to.
    first_invite: Option<(Endpoint, Endpoint)>,
    /// Bytes its kept SIP entries take (entries, summaries and texts), held
    /// to `CallConfig::call_sip_bytes`.
    sip_bytes: usize,
    /// Media that no SIP claimed (found by the RTP heuristic): a record of
    /// its own, without dialog, Call-ID or calls.csv row.
    media_only: bool,
}

impl Call {
    pub(crate) fn new(no: u64, call_id: &[u8], method: String, start_ns: u64) -> Self {
        let mut c = Call {
            no,
            names: Default::default(),
            start_ns,
            marks: [0; 4],
            marks_set: 0,
            last_ns: start_ns,
            state: CallState::InProgress,
            status_code: None,
            end_reason: None,
            invite_cseq: None,
            sip_packets: 0,
            sip_messages: 0,
            from_tag: 0,
            max_cseq: 0,
            last_sip_ns: start_ns,
            awaiting: 0,
            rtp_packets: 0,
            rtcp_packets: 0,
            packets: PacketLog::default(),
            sip: Vec::new(),
            sip_texts: Default::default(),
            media: Vec::new(),
            streams: Vec::new(),
            rare: None,
            facing: Facing::Unknown,
            first_invite: None,
            sip_bytes: 0,
            media_only: false,
        };
        if std::str::from_utf8(call_id).is_err() {
            c.rare_mut().call_id_raw = Some(call_id.into());
        }
        let id = String::from_utf8_lossy(call_id);
        c.names.set(&[
            (Name::CallId, &id),
            (Name::Group, &id),
            (Name::Method, &method),
        ]);
        c
    }

    /// A record for media no SIP claimed (see `media_only`) between the
    /// endpoints of `pair`.
    pub(crate) fn media_only(no: u64, start_ns: u64, pair: (SocketAddr, SocketAddr)) -> Self {
        let mut c = Call::new(no, b"", String::new(), start_ns);
        c.media_only = true;
        c.rare_mut().media_pair = Some(pair);
        c
    }

    /// A media-only record's endpoints (ports folded to even, lower first).
    pub fn media_pair(&self) -> Option<(SocketAddr, SocketAddr)> {
        self.rare().media_pair
    }

    /// The table's number for this call (unique within one run).
    pub fn no(&self) -> u64 {
        self.no
    }

    /// The Call-ID for display (lossy UTF-8).
    pub fn call_id(&self) -> &str {
        self.names.get(Name::CallId)
    }

    /// The Call-ID as it was on the wire.
    pub fn call_id_raw(&self) -> &[u8] {
        match &self.rare().call_id_raw {
            Some(raw) => raw,
            None => self.call_id().as_bytes(),
        }
    }

    /// The method that created the dialog (INVITE, REGISTER, ...).
    pub fn method(&self) -> &str {
        self.names.get(Name::Method)
    }

    pub fn from_user(&self) -> &str {
        self.names.get(Name::FromUser)
    }

    pub fn to_user(&self) -> &str {
        self.names.get(Name::ToUser)
    }

    pub fn from_uri(&self) -> &str {
        self.names.get(Name::FromUri)
    }

    pub fn to_uri(&self) -> &str {
        self.names.get(Name::ToUri)
    }

    pub fn request_uri(&self) -> &str {
        self.names.get(Name::RequestUri)
    }

    pub fn start_ns(&self) -> u64 {
        self.start_ns
    }

    /// The first 18x.
    pub fn ringing_ns(&self) -> Option<u64> {
        self.mark(Mark::Ringing)
    }

    /// The 2xx to the initial INVITE.
    pub fn answer_ns(&self) -> Option<u64> {
        self.mark(Mark::Answer)
    }

    /// The BYE, CANCEL or final response that ended the call, or its last
    /// packet when it timed out or the capture ended.
    pub fn end_ns(&self) -> Option<u64> {
        self.mark(Mark::End)
    }

    /// Capture time of its latest packet.
    pub fn last_ns(&self) -> u64 {
        self.last_ns
    }

    pub fn state(&self) -> CallState {
        self.state
    }

    /// The final status code of the initial transaction.
    pub fn status_code(&self) -> Option<u16> {
        self.status_code
    }

    pub fn end_reason(&self) -> Option<EndReason> {
        self.end_reason
    }

    /// Frames that carried its SIP bytes.
    pub fn sip_packets(&self) -> u64 {
        self.sip_packets
    }

    /// Its SIP messages (tshark's count; fewer than `sip_packets` when
    /// messages were split over TCP segments).
    pub fn sip_messages(&self) -> u64 {
        self.sip_messages
    }

    /// When an offer/answer turned the call into T.38 fax.
    pub fn fax_ns(&self) -> Option<u64> {
        self.rare().fax_ns
    }

    /// Its UDPTL (T.38 fax) streams, one per direction.
    pub fn fax_streams(&self) -> &[FaxStream] {
        &self.rare().fax
    }

    /// Media that no SIP claimed: no dialog, no Call-ID, no calls.csv row.
    pub fn is_media_only(&self) -> bool {
        self.media_only
    }

    pub fn rtp_packets(&self) -> u64 {
        self.rtp_packets
    }

    pub fn rtcp_packets(&self) -> u64 {
        self.rtcp_packets
    }

    /// Every packet of the call: (capture time, where it is), in the order
    /// they were added; the spilled ones are read back from disk.
    pub fn packets(&self) -> std::io::Result<Cow<'_, [(u64, PacketRef)]>> {
        self.packets.all()
    }

    /// How many packet references the call has.
    pub fn packet_count(&self) -> u64 {
        self.packets.len()
    }

    /// Bytes its packet references take in memory (not the spilled ones).
    pub fn packet_bytes_held(&self) -> usize {
        self.packets.held_bytes()
    }

    /// Its packet references, read back into memory first, for a store that
    /// finds it did not keep some of them (it marks those
    /// [`PacketRef::NOT_STORED`]).
    pub fn packets_mut(&mut self) -> std::io::Result<&mut [(u64, PacketRef)]> {
        self.packets.load()?;
        Ok(self.packets.tail_mut())
    }

    /// Older packet references go to `spill` from now on; with `!keep_refs`
    /// (nothing will cut its PCAP) none are kept at all.
    pub(crate) fn spill_to(&mut self, spill: Option<super::Spill>, keep_refs: bool) {
        if self.sip.is_empty() {
            self.sip_texts.set_spill(spill.clone());
        }
        self.packets.set_spill(spill);
        if !keep_refs {
            self.packets.discard();
        }
    }

    /// Its SIP messages in capture order. The texts of an open call's
    /// messages are in the spill until it closes: their `text` is empty
    /// while it is open (the live view reads summaries only).
    pub fn sip(&self) -> &[SipEntry] {
        &self.sip
    }

    /// Every m= line its SDP announced, in order.
    pub fn media(&self) -> &[MediaInfo] {
        &self.media
    }

    /// Its RTP streams in order of first packet.
    pub fn streams(&self) -> &[Stream] {
        &self.streams
    }

    /// The stream identified by `key`.
    pub fn stream(&self, key: &StreamKey) -> Option<&Stream> {
        self.stream_idx(key).map(|i| &self.streams[i])
    }

    /// RTCP reports about SSRCs not seen as a stream.
    pub fn rtcp_unmatched(&self) -> u32 {
        self.rare().rtcp_unmatched
    }

    /// Links to the other legs of the same logical call, with why.
    pub fn links(&self) -> &[Link] {
        &self.rare().links
    }

    /// The Call-ID of the first leg of its logical call.
    pub fn group(&self) -> &str {
        self.names.get(Name::Group)
    }

    /// Which way the first INVITE faced.
    pub fn facing(&self) -> Facing {
        self.facing
    }

    /// Media latched from an address no SDP named, as (announced endpoint it
    /// was sent to, real source).
    pub fn latched(&self) -> &[(SocketAddr, SocketAddr)] {
        &self.rare().latched
    }

    /// Where the first INVITE came from and went to.
    pub fn first_invite(&self) -> Option<(SocketAddr, SocketAddr)> {
        self.first_invite
            .map(|(s, d)| (s.to_socket_addr(), d.to_socket_addr()))
    }

    /// Packets the capture lost while this call was open.
    pub fn capture_loss(&self) -> u64 {
        self.rare().capture_loss
    }

    /// SIP messages whose text was not kept in memory (the call's SIP
    /// budget was spent): `sip.txt`, the index and the call page lack their
    /// text, `call.pcap` has them.
    pub fn sip_truncated(&self) -> u64 {
        self.rare().sip_truncated
    }

    /// SIP messages past the limits a SIP stack takes, attributed anyway.
    pub fn sip_oversized(&self) -> u64 {
        self.rare().sip_oversized
    }

    /// Packets of the SIP messages whose text was not kept.
    pub fn sip_unkept(&self) -> &[PacketRef] {
        &self.rare().sip_unkept
    }

    /// How the signalling was protected (see the field): empty when clear.
    pub fn encrypted_signalling(&self) -> &str {
        &self.rare().encrypted_signalling
    }

    pub fn is_invite(&self) -> bool {
        self.method() == "INVITE"
    }

    /// End time for reports: the BYE/final response, else the last packet.
    pub fn end_or_last(&self) -> u64 {
        self.end_ns().unwrap_or(self.last_ns)
    }

    pub fn duration_s(&self) -> f64 {
        self.end_or_last().saturating_sub(self.start_ns) as f64 / 1e9
    }

    /// Talk time: from the answer to the end.
    pub fn talk_s(&self) -> Option<f64> {
        self.answer_ns()
            .map(|a| self.end_or_last().saturating_sub(a) as f64 / 1e9)
    }

    /// Codec name of payload type `pt` on `stream`: the rtpmap of the SDP
    /// that announced the stream's receiving endpoint, else RFC 3551's table.
    pub fn codec_name(&self, stream: &Stream, pt: u8) -> String {
        let from_sdp = stream
            .media_idx()
            .and_then(|m| self.media.get(m))
            .and_then(|m| m.rtpmap.iter().find(|r| r.pt == pt))
            .or_else(|| {
                self.media
                    .iter()
                    .flat_map(|m| m.rtpmap.iter())
                    .find(|r| r.pt == pt)
            });
        match from_sdp {
            Some(r) => r.encoding.to_string(),
            None => voxtap_proto::rtp::static_codec(pt)
                .map(|c| c.name.to_string())
                .unwrap_or_else(|| format!("PT{pt}")),
        }
    }
}

/// A call's streams found by a scan, not a map: a map of two keys takes
/// more than the scan costs.
const STREAMS_SCANNED: usize = 16;

/// Pushes `x` onto `v`, growing it by doubling from one element: most calls
/// have one or two of each (media lines, streams, SIP messages), and Vec's
/// own first growth (to four) would hold two unused 1 KB streams per call.
pub(super) fn push_tight<T>(v: &mut Vec<T>, x: T) {
    if v.len() == v.capacity() {
        v.reserve_exact(v.len().max(1));
    }
    v.push(x);
}

impl Call {
    fn rare(&self) -> &Rare {
        self.rare.as_deref().unwrap_or(&NO_RARE)
    }

    fn mark(&self, m: Mark) -> Option<u64> {
        let i = m as usize;
        (self.marks_set & (1 << i) != 0).then(|| self.marks[i])
    }

    fn set_mark(&mut self, m: Mark, t: Option<u64>) {
        let i = m as usize;
        match t {
            Some(t) => {
                self.marks[i] = t;
                self.marks_set |= 1 << i;
            }
            None => self.marks_set &= !(1 << i),
        }
    }

    /// Sets mark `m` unless it is set already (the first one wins).
    fn mark_first(&mut self, m: Mark, t: u64) {
        if self.mark(m).is_none() {
            self.set_mark(m, Some(t));
        }
    }

    pub(super) fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// Index of the stream identified by `key`. The scan compares the SSRC
    /// first: one integer that differs between a call's streams, where
    /// comparing two `SocketAddr`s is a dozen branches.
    pub(super) fn stream_idx(&self, key: &StreamKey) -> Option<usize> {
        match &self.rare().stream_index {
            Some(map) => map.get(key).copied(),
            None => self
                .streams
                .iter()
                .position(|s| s.key.ssrc == key.ssrc && s.key == *key),
        }
    }

    /// Adds a stream not seen before; returns its index.
    pub(super) fn add_stream(&mut self, s: Stream) -> usize {
        let i = self.streams.len();
        if let Some(map) = self.rare.as_mut().and_then(|r| r.stream_index.as_mut()) {
            map.insert(s.key, i);
        } else if i == STREAMS_SCANNED {
            let map = self.streams.iter().enumerate().map(|(i, s)| (s.key, i));
            let mut map: HashMap<_, _, AddrHash> = map.collect();
            map.insert(s.key, i);
            self.rare_mut().stream_index = Some(map);
        }
        push_tight(&mut self.streams, s);
        i
    }
}

/// What the call table and the leg grouping change on a call besides its
/// SIP and media (those are in `dialog` and `streams`).
impl Call {
    /// Capture time of its latest SIP message.
    pub(super) fn last_sip_ns(&self) -> u64 {
        self.last_sip_ns
    }

    /// The first INVITE created the call: where it came from and went to,
    /// and which way it faced.
    pub(super) fn set_first_invite(&mut self, src: SocketAddr, dst: SocketAddr, facing: Facing) {
        self.first_invite = Some((src.into(), dst.into()));
        self.facing = facing;
    }

    pub(super) fn add_link(&mut self, link: Link) {
        self.rare_mut().links.push(link);
    }

    pub(super) fn set_group(&mut self, group: String) {
        self.names.set(&[(Name::Group, &group)]);
    }

    /// Adds an m= line its SDP announced; returns its index.
    pub(super) fn add_media(&mut self, m: MediaInfo) -> usize {
        push_tight(&mut self.media, m);
        self.media.len() - 1
    }

    /// Media from `src`, an address no SDP of the call named, reached `dst`:
    /// latched when `dst` is an endpoint an SDP announced (traffic sent back
    /// to a latched address is already the call's), within `window_ns` of the
    /// SDP of m= line `media_idx`, and `src` is not latched yet.
    pub(super) fn try_latch(
        &mut self,
        media_idx: usize,
        src: SocketAddr,
        dst: SocketAddr,
        ts_ns: u64,
        window_ns: u64,
    ) -> bool {
        let announced_at = self.media.get(media_idx).map_or(0, |m| m.announced_ns);
        let to_announced = self.media.iter().any(|m| m.rtp == dst || m.rtcp == dst);
        if !to_announced
            || ts_ns.saturating_sub(announced_at) > window_ns
            || self.rare().latched.iter().any(|l| l.1 == src)
        {
            return false;
        }
        self.rare_mut().latched.push((dst, src));
        true
    }

    /// Every address the call receives on: the endpoints its SDP announced
    /// and the sources it latched.
    pub(super) fn endpoints(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.media
            .iter()
            .flat_map(|m| [m.rtp.to_socket_addr(), m.rtcp.to_socket_addr()])
            .chain(self.rare().latched.iter().map(|l| l.1))
    }

    /// Its SIP came over TLS, decrypted.
    pub(super) fn note_tls(&mut self) {
        if self.rare().encrypted_signalling.is_empty() {
            self.rare_mut().encrypted_signalling = "tls (decrypted)".to_string();
        }
    }

    /// A TLS connection that could not be decrypted, standing for the calls
    /// it carried: its packets and times, and why (`note`).
    pub(super) fn set_encrypted(&mut self, note: &str, last_ns: u64, refs: &[(u64, PacketRef)]) {
        self.rare_mut().encrypted_signalling = note.to_string();
        self.last_ns = self.last_ns.max(last_ns);
        self.sip_packets = refs.len() as u64;
        self.packets.extend(refs);
    }

    /// The encapsulations (VLAN, MPLS, GRE, ERSPAN, VXLAN, ...) around its
    /// SIP, outermost first; empty when none.
    pub fn outer_path(&self) -> &str {
        &self.rare().outer_path
    }

    /// Records the path of a tunnelled SIP message, unless one is known.
    pub(crate) fn note_outer_path(&mut self, path: &voxtap_proto::decode::Encap) {
        if self.rare().outer_path.is_empty() && !path.is_empty() {
            self.rare_mut().outer_path = path.to_string();
        }
    }

    /// The capture lost `n` packets while the call was open (or a store
    /// could not keep `n` of its packets).
    pub fn add_capture_loss(&mut self, n: u64) {
        if n > 0 {
            self.rare_mut().capture_loss += n;
        }
    }
}

/// A call with its figures set directly, for tests of what reads calls.
#[cfg(test)]
impl Call {
    pub(crate) fn set_parties_for_test(
        &mut self,
        from_user: String,
        to_user: String,
        request_uri: String,
    ) {
        self.names.set(&[
            (Name::FromUri, &format!("sip:{from_user}@a.example")),
            (Name::ToUri, &format!("sip:{to_user}@b.example")),
            (Name::FromUser, &from_user),
            (Name::ToUser, &to_user),
            (Name::RequestUri, &request_uri),
        ]);
    }

    pub(crate) fn set_outcome_for_test(
        &mut self,
        state: CallState,
        status_code: u16,
        end_reason: EndReason,
        end_ns: u64,
    ) {
        self.state = state;
        self.status_code = Some(status_code);
        self.end_reason = Some(end_reason);
        self.set_mark(Mark::End, Some(end_ns));
        self.last_ns = end_ns;
    }

    pub(crate) fn push_sip_for_test(&mut self, e: SipEntry) {
        self.sip_packets += 1;
        push_tight(&mut self.sip, e);
    }
}
