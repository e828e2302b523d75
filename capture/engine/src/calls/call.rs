//! One call (one SIP dialog set, keyed by Call-ID) and what we learnt about it.

use std::collections::HashMap;
use std::net::SocketAddr;

use voxtap_proto::sdp::{Crypto, Direction, RtpMap};
use voxtap_proto::stream_stats::StreamStats;

/// Where a packet lies in the capture: the source (file) index in the top 16
/// bits and the byte offset of its record in the low 48, so a call's PCAP can
/// be cut later from the original files without rescanning them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

/// One m= line as a SIP message announced it.
#[derive(Clone, Debug)]
pub struct MediaInfo {
    /// Where this side wants to receive RTP.
    pub rtp: SocketAddr,
    /// Where it wants to receive RTCP (a=rtcp, or RTP port + 1).
    pub rtcp: SocketAddr,
    pub rtcp_mux: bool,
    pub kind: String,
    pub proto: String,
    pub direction: Direction,
    pub rtpmap: Vec<RtpMap>,
    /// `a=fmtp` parameters by payload type (Opus stereo, AMR packing...).
    pub fmtp: Vec<(u8, String)>,
    pub crypto: Vec<Crypto>,
    pub ptime: Option<u32>,
    /// Capture time of the SIP message that carried it.
    pub announced_ns: u64,
    /// "INVITE", "200 INVITE", "UPDATE"...: which message carried it.
    pub announced_by: String,
    /// True when the SDP said port 0 (stream refused or removed).
    pub disabled: bool,
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

/// Identity of an RTP stream: 5-tuple (UDP implied) plus SSRC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StreamKey {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub ssrc: u32,
}

pub struct Stream {
    pub key: StreamKey,
    pub stats: StreamStats,
    /// The m= line (index into `Call::media`) whose endpoint matched.
    pub media_idx: Option<usize>,
    pub clock_rate: u32,
    pub rtcp: RtcpView,
    /// Sender reports this SSRC sent about itself.
    pub sender_reports: u32,
    /// Sequence number of the latest packet (for matching the same stream
    /// on another leg).
    pub last_seq: u16,
    /// Capture time of the latest packet.
    pub last_ns: u64,
    /// Packets seen so far, counted up to a small cap: only a stream's
    /// first packets are fingerprinted for leg linking.
    pub early_packets: u8,
}

/// A SIP message as kept for `sip.txt` and the ladder diagram.
#[derive(Clone, Debug)]
pub struct SipEntry {
    pub ts_ns: u64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub transport: &'static str,
    /// Start line summary, e.g. "INVITE sip:bob@x" or "200 OK".
    pub summary: String,
    pub text: String,
}

pub struct Call {
    pub no: u64,
    /// The Call-ID for display (lossy UTF-8) ...
    pub call_id: String,
    /// ... and as it was on the wire, which is what identifies the call.
    pub call_id_raw: Box<[u8]>,
    /// The method that created the dialog (INVITE, REGISTER, ...).
    pub method: String,
    pub from_user: String,
    pub to_user: String,
    pub from_uri: String,
    pub to_uri: String,
    pub request_uri: String,
    pub start_ns: u64,
    pub ringing_ns: Option<u64>,
    pub answer_ns: Option<u64>,
    pub end_ns: Option<u64>,
    pub last_ns: u64,
    pub state: CallState,
    pub status_code: Option<u16>,
    pub end_reason: Option<EndReason>,
    /// CSeq of the latest initial INVITE (a 401/407 challenge makes the
    /// caller send a new one with a higher CSeq).
    pub invite_cseq: Option<u32>,
    pub sip_packets: u64,
    pub rtp_packets: u64,
    pub rtcp_packets: u64,
    /// Every packet of the call: (capture time, where it is).
    pub packets: Vec<(u64, PacketRef)>,
    pub sip: Vec<SipEntry>,
    pub media: Vec<MediaInfo>,
    pub streams: Vec<Stream>,
    pub stream_index: HashMap<StreamKey, usize>,
    /// RTCP reports about SSRCs we have not (yet) seen as a stream.
    pub rtcp_unmatched: u32,
    /// Links to the other legs of the same logical call, with why.
    pub links: Vec<super::legs::Link>,
    /// The logical call this leg belongs to: the Call-ID of its first leg
    /// (its own Call-ID when it stands alone).
    pub group: String,
    /// Which way the first INVITE faced (carrier or core networks).
    pub facing: super::legs::Facing,
    /// Media that arrived from an address the SDP never named (NAT), as
    /// (announced endpoint it was sent to, real source).
    pub latched: Vec<(SocketAddr, SocketAddr)>,
    /// Where the first INVITE came from and went to.
    pub first_invite: Option<(SocketAddr, SocketAddr)>,
    /// Capture time after which the call is closed (set by BYE, CANCEL or a
    /// final failure; media and ACKs may still trail until then).
    pub linger_until: Option<u64>,
    /// Packets the capture itself lost while this call was open (kernel ring
    /// full, or a sensor stage dropping): the sensor cannot tell whose they
    /// were, so every call open at the time carries the count. Distinct from
    /// network loss, which the RTP sequence numbers measure per stream.
    pub capture_loss: u64,
}

impl Call {
    pub fn new(no: u64, call_id: &[u8], method: String, start_ns: u64) -> Self {
        Call {
            no,
            call_id: String::from_utf8_lossy(call_id).into_owned(),
            call_id_raw: call_id.into(),
            method,
            from_user: String::new(),
            to_user: String::new(),
            from_uri: String::new(),
            to_uri: String::new(),
            request_uri: String::new(),
            start_ns,
            ringing_ns: None,
            answer_ns: None,
            end_ns: None,
            last_ns: start_ns,
            state: CallState::InProgress,
            status_code: None,
            end_reason: None,
            invite_cseq: None,
            sip_packets: 0,
            rtp_packets: 0,
            rtcp_packets: 0,
            packets: Vec::new(),
            sip: Vec::new(),
            media: Vec::new(),
            streams: Vec::new(),
            stream_index: HashMap::new(),
            rtcp_unmatched: 0,
            links: Vec::new(),
            group: String::from_utf8_lossy(call_id).into_owned(),
            facing: super::legs::Facing::Unknown,
            latched: Vec::new(),
            first_invite: None,
            linger_until: None,
            capture_loss: 0,
        }
    }

    pub fn is_invite(&self) -> bool {
        self.method == "INVITE"
    }

    /// End time for reports: the BYE/final response, else the last packet.
    pub fn end_or_last(&self) -> u64 {
        self.end_ns.unwrap_or(self.last_ns)
    }

    pub fn duration_s(&self) -> f64 {
        self.end_or_last().saturating_sub(self.start_ns) as f64 / 1e9
    }

    /// Talk time: from the answer to the end.
    pub fn talk_s(&self) -> Option<f64> {
        self.answer_ns
            .map(|a| self.end_or_last().saturating_sub(a) as f64 / 1e9)
    }

    /// The stream for `key`, created on first sight.
    pub fn stream_mut(&mut self, key: StreamKey, media_idx: Option<usize>, pt: u8) -> &mut Stream {
        let idx = match self.stream_index.get(&key) {
            Some(&i) => i,
            None => {
                let clock_rate = media_idx
                    .and_then(|m| self.media.get(m))
                    .and_then(|m| m.rtpmap.iter().find(|r| r.pt == pt))
                    .map(|r| r.clock_rate)
                    .or_else(|| voxtap_proto::rtp::static_codec(pt).map(|c| c.clock_rate))
                    .unwrap_or(8000);
                let mut stats = StreamStats::new(clock_rate);
                // Jitter needs a dynamic PT's clock from the SDP that
                // announced the receiver, as in Wireshark: a PT it does not
                // map has no jitter, nor has telephone-event, whose
                // timestamp stands still for a whole event (RFC 4733).
                let rtpmap = media_idx
                    .and_then(|m| self.media.get(m))
                    .map_or(&[][..], |m| &m.rtpmap[..]);
                if !rtpmap.is_empty() {
                    for dyn_pt in 96..=127u8 {
                        let rate = rtpmap
                            .iter()
                            .find(|r| r.pt == dyn_pt)
                            .filter(|r| !r.encoding.eq_ignore_ascii_case("telephone-event"))
                            .map_or(0, |r| r.clock_rate);
                        stats.set_pt_clock_rate(dyn_pt, rate);
                    }
                }
                self.streams.push(Stream {
                    key,
                    stats,
                    media_idx,
                    clock_rate,
                    rtcp: RtcpView::default(),
                    sender_reports: 0,
                    last_seq: 0,
                    last_ns: 0,
                    early_packets: 0,
                });
                let i = self.streams.len() - 1;
                self.stream_index.insert(key, i);
                i
            }
        };
        &mut self.streams[idx]
    }

    /// Codec name of payload type `pt` on `stream`: the rtpmap of the SDP
    /// that announced the stream's receiving endpoint, else RFC 3551's table.
    pub fn codec_name(&self, stream: &Stream, pt: u8) -> String {
        let from_sdp = stream
            .media_idx
            .and_then(|m| self.media.get(m))
            .and_then(|m| m.rtpmap.iter().find(|r| r.pt == pt))
            .or_else(|| {
                self.media
                    .iter()
                    .flat_map(|m| m.rtpmap.iter())
                    .find(|r| r.pt == pt)
            });
        match from_sdp {
            Some(r) => r.encoding.clone(),
            None => voxtap_proto::rtp::static_codec(pt)
                .map(|c| c.name.to_string())
                .unwrap_or_else(|| format!("PT{pt}")),
        }
    }
}
