//! The one packet path: every source (pcap file, XDP, RPCAP) hands frames to
//! [`Pipeline::process`], which decodes them, finds SIP on the configured
//! ports and by content anywhere else, frames SIP over TCP (plain, WebSocket,
//! TLS when keys are given: [`tls`]) and SCTP ([`sctp`]), and feeds the call
//! table.

mod sctp;
mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::calls::{Call, CallConfig, CallTable, CallTableStats, PacketRef, SipPacket};
pub use voxtap_proto::decode::TunnelConfig;
use voxtap_proto::decode::{Decoder, Encap, FragLimits, L4};
use voxtap_proto::pcapio::LinkType;
use voxtap_proto::sctp::SctpLimits;
use voxtap_proto::sdp::{self, SessionDescription};
use voxtap_proto::sip::{self, StreamReassembler};
use voxtap_proto::tls::TlsKeys;

#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// Ports on which UDP/TCP is taken as SIP without looking at it first.
    pub sip_ports: Vec<u16>,
    /// Also recognise SIP by its start line on any port.
    pub sip_by_content: bool,
    pub calls: CallConfig,
    pub frag: FragLimits,
    /// UDP ports of VXLAN, Geneve and GTP-U, and how many encapsulation
    /// headers a frame may have.
    pub tunnels: TunnelConfig,
    /// TCP flows without a byte for this long (capture time) are forgotten.
    pub tcp_idle_ns: u64,
    /// Cap on tracked SIP/TCP flows.
    pub max_tcp_flows: usize,
    /// Where SIP, RTCP and ended calls are also handed (HEP export).
    pub tap: Option<crate::tap::TapFactory>,
    /// Bounds on SCTP user messages held while their fragments arrive.
    pub sctp: SctpLimits,
    /// Keys that decrypt SIP over TLS (key log, RSA keys); without any, TLS
    /// connections on SIP ports are listed as encrypted signalling.
    pub tls_keys: TlsKeys,
    /// Destinations many calls send media to (a media server's single
    /// port): the parallel engine steers datagrams to them by both ends
    /// instead of by destination, so that their streams spread over the
    /// workers ([`crate::parallel::Owners`]). No effect with one pipeline.
    pub shared_media: Vec<std::net::SocketAddr>,
    /// Test knobs of the parallel engine (a stalled or failing worker).
    #[doc(hidden)]
    pub engine_faults: crate::parallel::Faults,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            sip_ports: vec![5060, 5061],
            sip_by_content: true,
            calls: CallConfig::default(),
            frag: FragLimits::default(),
            tunnels: TunnelConfig::default(),
            tcp_idle_ns: 600 * 1_000_000_000,
            max_tcp_flows: 65_536,
            tap: None,
            sctp: SctpLimits::default(),
            tls_keys: TlsKeys::new(),
            shared_media: Vec::new(),
            engine_faults: crate::parallel::Faults::default(),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct PipelineStats {
    pub frames: u64,
    pub bytes: u64,
    /// Frames the decoder rejected (malformed headers); counted and skipped.
    pub malformed: u64,
    /// Frames that are not IP UDP/TCP, or fragments still being reassembled.
    pub not_udp_tcp: u64,
    pub sip_messages: u64,
    /// SIP messages past the limits a SIP stack takes (thousands of
    /// headers, a header section over 64 KiB), attributed to their calls
    /// anyway (also counted in `sip_messages`).
    pub sip_oversized: u64,
    pub sip_errors: u64,
    pub sip_keepalives: u64,
    pub tcp_flows: u64,
    pub tcp_flows_dropped: u64,
    pub tcp_other: u64,
    pub media: u64,
    pub other_udp: u64,
    /// SIP over WebSocket: TCP directions that turned out to carry it.
    pub websocket_flows: u64,
    pub sctp: sctp::SctpPipelineStats,
    pub tls: tls::TlsPipelineStats,
}

struct TcpFlow {
    reasm: StreamReassembler,
    /// Segments holding bytes of the message still being assembled.
    pending: Vec<(u64, PacketRef)>,
    last_ns: u64,
}

pub struct Pipeline {
    decoder: Decoder,
    calls: CallTable,
    tcp: HashMap<(SocketAddr, SocketAddr), TcpFlow>,
    sctp: sctp::SctpFlows,
    tls: tls::TlsFlows,
    sip_ports: Box<[u64; 1024]>,
    sip_by_content: bool,
    tcp_idle_ns: u64,
    max_tcp_flows: usize,
    last_tcp_sweep_ns: u64,
    refs: Vec<(u64, PacketRef)>,
    stats: PipelineStats,
    tap: Option<Box<dyn crate::tap::PacketTap>>,
    /// In the parallel engine: which media worker this is (of how many).
    shard: Option<Shard>,
}

/// A media worker of the parallel engine: it takes the UDP that is not SIP
/// only when it owns it (`crate::parallel::Owners`: the destination's hash).
#[derive(Clone, Debug)]
struct Shard {
    me: usize,
    owners: crate::parallel::Owners,
}

impl Pipeline {
    pub fn new(cfg: PipelineConfig) -> Self {
        let mut sip_ports = Box::new([0u64; 1024]);
        for p in &cfg.sip_ports {
            sip_ports[usize::from(*p) / 64] |= 1 << (p % 64);
        }
        Pipeline {
            decoder: Decoder::with_tunnels(cfg.frag, cfg.tunnels),
            calls: CallTable::new(cfg.calls),
            tcp: HashMap::new(),
            sctp: sctp::SctpFlows::new(cfg.sctp, cfg.max_tcp_flows),
            tls: tls::TlsFlows::new(cfg.tls_keys, cfg.max_tcp_flows),
            sip_ports,
            sip_by_content: cfg.sip_by_content,
            tcp_idle_ns: cfg.tcp_idle_ns,
            max_tcp_flows: cfg.max_tcp_flows,
            last_tcp_sweep_ns: 0,
            refs: Vec::with_capacity(64),
            stats: PipelineStats::default(),
            tap: cfg.tap.as_ref().map(|f| f.make()),
            shard: None,
        }
    }

    /// Makes this pipeline media worker `me` in the parallel engine
    /// (`crate::parallel`): it sees all SIP but takes only the media that
    /// `owners` gives it, and its call table sweeps only when told.
    pub(crate) fn set_shard(&mut self, me: usize, owners: crate::parallel::Owners) {
        self.shard = Some(Shard { me, owners });
        self.calls.set_explicit_sweeps();
    }

    #[cfg(test)]
    fn is_sip_port(&self, port: u16) -> bool {
        self.sip_ports[usize::from(port) / 64] & (1 << (port % 64)) != 0
    }

    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }

    pub fn call_stats(&self) -> CallTableStats {
        self.calls.stats()
    }

    pub fn decode_stats(&self) -> &voxtap_proto::decode::DecodeStats {
        self.decoder.stats()
    }

    /// The call table, read (live snapshots).
    pub fn calls(&self) -> &CallTable {
        &self.calls
    }

    /// The call table, for a live sensor (endpoint events, capture loss).
    pub fn calls_mut(&mut self) -> &mut CallTable {
        &mut self.calls
    }

    pub fn open_calls(&self) -> usize {
        self.calls.open_calls()
    }

    /// Calls that closed since the last call (BYE, final response, timeout),
    /// and media-only records ([`Call::is_media_only`]).
    pub fn drain_ended(&mut self) -> Vec<Call> {
        let ended = self.calls.drain_ended();
        if let Some(tap) = &mut self.tap {
            for call in ended.iter().filter(|c| !c.is_media_only()) {
                tap.call_ended(call);
            }
        }
        ended
    }

    /// Floods of new dialogs summarised instead of recorded (for
    /// `floods.csv`; see `calls::FloodSummary`).
    pub fn drain_floods(&mut self) -> Vec<crate::calls::FloodSummary> {
        self.calls.drain_floods()
    }

    /// Registrations, pings and transactions outside calls.
    pub fn signalling(&self) -> &crate::signalling::Signalling {
        self.calls.signalling()
    }

    /// Transactions outside calls that are done (see
    /// [`crate::signalling::Signalling::drain_transactions`]).
    pub fn drain_transactions(&mut self) -> Vec<crate::signalling::Transaction> {
        self.calls.signalling_mut().drain_transactions()
    }

    /// End of the capture: lists TLS connections that stayed encrypted,
    /// then closes every open call.
    pub fn finish(&mut self) {
        self.tls.finish(&mut self.calls, &mut self.stats);
        self.calls.finish();
    }

    /// More bytes of a key log file that is being written (a sensor
    /// following it): connections waiting for these keys decrypt now.
    pub fn add_tls_keylog(&mut self, bytes: &[u8]) {
        let Pipeline {
            calls,
            stats,
            tls,
            tap,
            ..
        } = self;
        tls.add_keylog(bytes, calls, stats, tap.as_deref_mut());
    }

    /// One captured frame.
    pub fn process(&mut self, link: LinkType, ts_ns: u64, pref: PacketRef, frame: &[u8]) {
        self.stats.frames += 1;
        self.stats.bytes += frame.len() as u64;
        let Pipeline {
            decoder,
            calls,
            tcp,
            sctp,
            tls,
            refs,
            stats,
            sip_ports,
            sip_by_content,
            max_tcp_flows,
            tap,
            shard,
            ..
        } = self;
        let dg = match decoder.decode(link, ts_ns, pref.0, frame) {
            Ok(Some(dg)) => dg,
            Ok(None) => {
                stats.not_udp_tcp += 1;
                calls.tick(ts_ns);
                return;
            }
            Err(_) => {
                stats.malformed += 1;
                return;
            }
        };
        refs.clear();
        // Earlier fragments of a reassembled datagram belong to it too.
        refs.extend(dg.fragments.iter().map(|&r| (ts_ns, PacketRef(r))));
        refs.push((ts_ns, pref));
        let is_sip_port = |p: u16| sip_ports[usize::from(p) / 64] & (1 << (p % 64)) != 0;
        let sip_port = is_sip_port(dg.src.port()) || is_sip_port(dg.dst.port());
        let sip_like = sip_port || (*sip_by_content && sip::looks_like_sip(dg.payload));
        let mut route = Route {
            calls,
            stats,
            tap: tap.as_deref_mut(),
            ts_ns,
            src: dg.src,
            dst: dg.dst,
            refs,
            encap: dg.encap,
            shard: shard.as_ref(),
            mine: None,
        };
        match dg.l4 {
            L4::Udp => route.udp(dg.payload, sip_like, None),
            L4::Tcp { seq, flags } => {
                if !tls.segment(&mut route, seq, flags, dg.payload, sip_port) {
                    route.tcp(tcp, *max_tcp_flows, seq, dg.payload, sip_like);
                }
            }
            L4::Sctp { .. } => route.sctp(sctp, dg.payload, sip_port, *sip_by_content),
        }
        self.sweep_tcp(ts_ns);
    }

    /// One UDP datagram the parallel engine's dispatcher already decoded
    /// (not a fragment; SIP only outside tunnels): as [`Self::process`]
    /// would take it, without decoding the frame again. `sip`: the message
    /// as the dispatcher parsed it, read back from `payload` instead of
    /// parsed again.
    pub(crate) fn process_udp(&mut self, d: &DecodedUdp, payload: &[u8], sip: Option<&ParsedSip>) {
        self.stats.frames += 1;
        self.stats.bytes += u64::from(d.frame_len);
        self.refs.clear();
        self.refs.push((d.ts_ns, d.pref));
        let mut route = Route {
            calls: &mut self.calls,
            stats: &mut self.stats,
            tap: self.tap.as_deref_mut(),
            ts_ns: d.ts_ns,
            src: d.src,
            dst: d.dst,
            refs: &self.refs,
            encap: &Encap::EMPTY,
            shard: self.shard.as_ref(),
            mine: Some(d.mine),
        };
        route.udp(payload, d.sip_like, sip);
        self.sweep_tcp(d.ts_ns);
    }

    fn sweep_tcp(&mut self, now_ns: u64) {
        if now_ns.saturating_sub(self.last_tcp_sweep_ns) < 10_000_000_000 {
            return;
        }
        self.last_tcp_sweep_ns = now_ns;
        let idle = self.tcp_idle_ns;
        self.tcp
            .retain(|_, f| f.last_ns.saturating_add(idle) > now_ns);
        self.sctp.sweep(now_ns, idle);
        self.tls
            .sweep(now_ns, idle, &mut self.calls, &mut self.stats);
    }
}

/// What the parallel engine's dispatcher found in a UDP frame
/// ([`Pipeline::process_udp`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct DecodedUdp {
    pub ts_ns: u64,
    pub pref: PacketRef,
    /// The captured frame's length.
    pub frame_len: u32,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// On a SIP port, or looking like SIP.
    pub sip_like: bool,
    /// This worker owns it (`crate::parallel::Owners`).
    pub mine: bool,
}

/// A SIP datagram as the parallel engine's dispatcher parsed it, once for
/// every replica ([`Pipeline::process_udp`]): where its parts are in the
/// payload, and its SDP.
#[derive(Clone, Debug)]
pub(crate) struct ParsedSip {
    pub layout: sip::Layout,
    pub sdp: Option<Arc<SessionDescription>>,
}

impl ParsedSip {
    /// None for what does not parse (a keep-alive, a broken message) or
    /// is not a datagram's size, which each replica then handles itself.
    pub fn of(payload: &[u8]) -> Option<ParsedSip> {
        let msg = sip::parse(payload).ok()?;
        Some(ParsedSip {
            layout: msg.layout(payload)?,
            sdp: msg.sdp().and_then(|b| sdp::parse(b).ok()).map(Arc::new),
        })
    }
}

/// One decoded datagram on its way to the call table (and the tap).
struct Route<'a> {
    calls: &'a mut CallTable,
    stats: &'a mut PipelineStats,
    tap: Option<&'a mut (dyn crate::tap::PacketTap + 'static)>,
    ts_ns: u64,
    src: SocketAddr,
    dst: SocketAddr,
    /// The packets that carried it.
    refs: &'a [(u64, PacketRef)],
    /// The encapsulations it came in.
    encap: &'a Encap,
    shard: Option<&'a Shard>,
    /// In a media worker: whether it owns the datagram, when the dispatcher
    /// already said (else found here).
    mine: Option<bool>,
}

impl Route<'_> {
    /// A call keeps the tunnel path its SIP came in.
    fn note_path(&mut self, msg: &sip::Message<'_>) {
        if !self.encap.is_empty()
            && let Some(cid) = msg.call_id()
        {
            self.calls.note_outer_path(cid, self.encap);
        }
    }

    /// A UDP datagram: SIP when `sip_like` (on a SIP port or looking like
    /// SIP) and it parses, else media or other traffic.
    fn udp(&mut self, payload: &[u8], sip_like: bool, sip: Option<&ParsedSip>) {
        let (ts_ns, src, dst) = (self.ts_ns, self.src, self.dst);
        if sip_like {
            if payload.iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
                self.stats.sip_keepalives += 1;
                self.calls.on_keepalive(ts_ns, src, dst);
                return;
            }
            let parsed = match sip.and_then(|s| s.layout.message(payload)) {
                Some(msg) => Ok(msg),
                None => sip::parse(payload),
            };
            match parsed {
                Ok(msg) => {
                    self.stats.sip_messages += 1;
                    self.stats.sip_oversized += u64::from(msg.oversized());
                    if let (Some(t), Some(cid)) = (self.tap.as_mut(), msg.call_id()) {
                        t.sip(ts_ns, src, dst, false, cid, payload);
                    }
                    let p = SipPacket {
                        ts_ns,
                        src,
                        dst,
                        transport: "UDP",
                        msg: &msg,
                        refs: self.refs,
                    };
                    self.calls
                        .on_sip_parsed(&p, sip.and_then(|s| s.sdp.as_deref()));
                    self.note_path(&msg);
                }
                Err(_) => {
                    self.stats.sip_errors += 1;
                    // Not SIP after all (or broken): it may still be
                    // media on a port that a call announced.
                    if self.owned(payload) && self.calls.on_udp(ts_ns, src, dst, payload, self.refs)
                    {
                        self.stats.media += 1;
                    }
                }
            }
        } else if !self.owned(payload) {
            // Another media worker's datagram.
        } else if self.calls.on_udp(ts_ns, src, dst, payload, self.refs) {
            self.stats.media += 1;
            if let Some(t) = self.tap.as_mut()
                && voxtap_proto::rtp::looks_like_rtcp(payload)
                && let Some((cid, false)) = self.calls.media_call_id(src, dst)
            {
                t.rtcp(ts_ns, src, dst, cid, payload);
            }
        } else {
            self.stats.other_udp += 1;
        }
    }

    /// Whether this pipeline takes this datagram that is not SIP: always,
    /// but in a media worker only when its destination hashes to it. RTCP
    /// another worker owns still updates the streams held here (a report
    /// names its stream by SSRC, whichever worker has it).
    fn owned(&mut self, payload: &[u8]) -> bool {
        let Some(Shard { me, owners }) = self.shard else {
            return true;
        };
        let mine = self
            .mine
            .unwrap_or_else(|| owners.owner(self.src, self.dst) == *me);
        if mine {
            return true;
        }
        self.calls
            .on_rtcp_elsewhere(self.ts_ns, self.src, self.dst, payload);
        false
    }

    /// A TCP segment: SIP/TCP flows are reassembled into messages; other
    /// TCP is counted and skipped.
    fn tcp(
        &mut self,
        flows: &mut HashMap<(SocketAddr, SocketAddr), TcpFlow>,
        max_flows: usize,
        seq: u32,
        payload: &[u8],
        sip_like: bool,
    ) {
        self.calls.tick(self.ts_ns);
        if payload.is_empty() {
            return;
        }
        let key = (self.src, self.dst);
        let known = flows.contains_key(&key);
        if !known && !sip_like && !sip::looks_like_sip_over_websocket(payload) {
            self.stats.tcp_other += 1;
            return;
        }
        if !known {
            if flows.len() >= max_flows {
                self.stats.tcp_flows_dropped += 1;
                return;
            }
            self.stats.tcp_flows += 1;
        }
        let flow = flows.entry(key).or_insert_with(|| TcpFlow {
            reasm: StreamReassembler::new(),
            pending: Vec::new(),
            last_ns: self.ts_ns,
        });
        flow.last_ns = self.ts_ns;
        let was_ws = flow.reasm.is_websocket();
        flow.reasm.push(seq, payload);
        flow.pending.extend_from_slice(self.refs);
        self.sip_messages(flow, ["TCP", "WS"]);
        if !was_ws && flow.reasm.is_websocket() {
            self.stats.websocket_flows += 1;
        }
    }

    /// The SIP messages this segment completed in `flow`; `transport`
    /// names them as plain SIP or SIP over WebSocket.
    fn sip_messages(&mut self, flow: &mut TcpFlow, transport: [&'static str; 2]) -> u64 {
        let (ts_ns, src, dst) = (self.ts_ns, self.src, self.dst);
        let mut n = 0;
        let mut first = true;
        // `refs` ends with this segment's own packet.
        let last_ref = *self.refs.last().unwrap_or(&(ts_ns, PacketRef(0)));
        while let Some((bytes, ws)) = flow.reasm.next_framed() {
            let transport = transport[usize::from(ws)];
            match sip::parse(bytes) {
                Ok(msg) => {
                    self.stats.sip_messages += 1;
                    self.stats.sip_oversized += u64::from(msg.oversized());
                    // The first message completed here owns every
                    // segment that carried it; later ones in the same
                    // segment own just this segment.
                    let owned: &[(u64, PacketRef)] = if first {
                        &flow.pending
                    } else {
                        std::slice::from_ref(&last_ref)
                    };
                    if let (Some(t), Some(cid)) = (self.tap.as_mut(), msg.call_id()) {
                        t.sip(ts_ns, src, dst, true, cid, bytes);
                    }
                    self.calls.on_sip(ts_ns, src, dst, transport, &msg, owned);
                    self.note_path(&msg);
                    first = false;
                    n += 1;
                }
                Err(_) => self.stats.sip_errors += 1,
            }
        }
        if !first {
            flow.pending.clear();
            if flow.reasm.buffered() > 0 {
                flow.pending.push(last_ref);
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_port_bitmap() {
        let p = Pipeline::new(PipelineConfig {
            sip_ports: vec![5060, 6060, 0, 65535],
            ..Default::default()
        });
        assert!(p.is_sip_port(5060));
        assert!(p.is_sip_port(6060));
        assert!(p.is_sip_port(0));
        assert!(p.is_sip_port(65535));
        assert!(!p.is_sip_port(5061));
    }

    /// What the dispatcher hands every replica for a SIP datagram reads
    /// back as the parse of the replica's copy, with the SDP of its body;
    /// a keep-alive and a broken message travel without one (each replica
    /// handles them itself).
    #[test]
    fn a_parsed_sip_datagram_reads_back_with_its_sdp() {
        let body = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8\r\n";
        let invite = format!(
            "INVITE sip:b@x SIP/2.0\r\nCall-ID: p@x\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let parsed = ParsedSip::of(invite.as_bytes()).expect("an INVITE parses");
        let copy = invite.as_bytes().to_vec();
        let msg = parsed.layout.message(&copy).expect("spans in the copy");
        assert_eq!(msg.call_id(), Some(&b"p@x"[..]));
        assert_eq!(msg.sdp(), Some(body.as_bytes()));
        let sdp = parsed.sdp.expect("its SDP");
        assert_eq!(*sdp, sdp::parse(body.as_bytes()).expect("the body parses"));
        assert_eq!(
            sdp.media.first().map(|m| m.formats.clone()),
            Some(vec![0, 8])
        );
        let bye = b"BYE sip:b@x SIP/2.0\r\nCall-ID: p@x\r\nCSeq: 2 BYE\r\n\r\n";
        assert!(ParsedSip::of(bye).expect("a BYE parses").sdp.is_none());
        assert!(ParsedSip::of(b"\r\n\r\n").is_none());
        assert!(ParsedSip::of(b"INVITE nothing\r\n\r\n").is_none());
    }

    /// One answered call, then `rtp` RTP packets each way; returns the
    /// references fed for the call (time, where), in order.
    fn feed_call(p: &mut Pipeline, rtp: u16) -> Vec<(u64, PacketRef)> {
        use crate::synth::udp_frame;
        use std::net::Ipv4Addr;
        let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let sdp = |ip: Ipv4Addr| {
            format!(
                "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
            )
        };
        let sip = |start: &str, to_tag: &str, body: String| {
            format!(
                "{start}\r\nVia: SIP/2.0/UDP {a}:5060;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>{to_tag}\r\nCall-ID: long@x\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let mut fed = Vec::new();
        let mut frame = Vec::new();
        let mut ts = 1_000_000_000u64;
        let mut feed = |p: &mut Pipeline, frame: &[u8], ts: u64| {
            let r = PacketRef::new(0, 24 + fed.len() as u64 * 300);
            p.process(LinkType::Ethernet, ts, r, frame);
            fed.push((ts, r));
        };
        let inv = sip("INVITE sip:b@x SIP/2.0", "", sdp(a));
        udp_frame(&mut frame, (a, 5060), (b, 5060), inv.as_bytes());
        feed(p, &frame, ts);
        let ok = sip("SIP/2.0 200 OK", ";tag=2", sdp(b));
        udp_frame(&mut frame, (b, 5060), (a, 5060), ok.as_bytes());
        feed(p, &frame, ts + 1);
        let mut pkt = [0u8; 172];
        pkt[0] = 0x80;
        for seq in 0..rtp {
            pkt[2..4].copy_from_slice(&seq.to_be_bytes());
            ts += 20_000_000;
            for (src, dst, ssrc) in [(a, b, 1u8), (b, a, 2)] {
                pkt[11] = ssrc;
                udp_frame(&mut frame, (src, 4000), (dst, 4000), &pkt);
                feed(p, &frame, ts);
            }
        }
        fed
    }

    fn spill_config(name: &str) -> (PipelineConfig, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("voxtap-{name}-{}", std::process::id()));
        let mut cfg = PipelineConfig::default();
        cfg.calls.spill_dir = Some(dir.clone());
        (cfg, dir)
    }

    /// What an open call holds in memory for its packet references does not
    /// grow with its length: the older ones are spilled, and all of them
    /// come back, in order, when it ends.
    #[test]
    fn memory_for_an_open_calls_packets_does_not_grow_with_its_length() {
        let (cfg, dir) = spill_config("pipeline-spill");
        let mut short = Pipeline::new(cfg.clone());
        feed_call(&mut short, 100);
        let mut long = Pipeline::new(cfg);
        let fed = feed_call(&mut long, 30_000);
        let (held_short, held_long) = (
            short.calls.packet_bytes_held(),
            long.calls.packet_bytes_held(),
        );
        assert!(held_short > 0);
        // The unspilled references are held encoded: a later chunk may take
        // up to one reference (20 bytes) more than the first did.
        assert!(
            held_long <= held_short + 20,
            "{held_long} bytes held after 60,002 packets, {held_short} after 202"
        );
        assert!(long.calls.spill_stats().unwrap().chunks >= 60_000 / 32);
        long.finish();
        let ended = long.drain_ended();
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].packet_count(), fed.len() as u64);
        assert_eq!(ended[0].packets().unwrap().as_ref(), fed.as_slice());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Without a spill every reference stays in memory: the figure above
    /// is what spilling changes.
    #[test]
    fn without_a_spill_an_open_calls_memory_grows_with_its_length() {
        let mut cfg = PipelineConfig::default();
        cfg.calls.spill_dir = None;
        let mut p = Pipeline::new(cfg);
        let fed = feed_call(&mut p, 5_000);
        assert!(p.calls.packet_bytes_held() >= fed.len() * 16);
    }

    /// Without packet references (a CSV-only import) a call holds none and
    /// spills nothing, and its figures are those of a call that keeps them.
    #[test]
    fn a_call_keeping_no_packet_references_spills_nothing_and_counts_the_same() {
        let (cfg, dir) = spill_config("pipeline-norefs");
        let mut kept = Pipeline::new(cfg.clone());
        let fed = feed_call(&mut kept, 3_000);
        let mut cfg = cfg;
        cfg.calls.keep_packet_refs = false;
        let mut bare = Pipeline::new(cfg);
        feed_call(&mut bare, 3_000);
        assert_eq!(bare.calls.packet_bytes_held(), 0);
        assert_eq!(bare.calls.spill_stats().unwrap().chunks, 0);
        assert!(kept.calls.spill_stats().unwrap().chunks >= 6_000 / 32);
        kept.finish();
        bare.finish();
        let (kept, bare) = (kept.drain_ended(), bare.drain_ended());
        assert_eq!((kept.len(), bare.len()), (1, 1));
        assert_eq!(kept[0].packet_count(), fed.len() as u64);
        assert_eq!(bare[0].packet_count(), 0);
        assert_eq!(bare[0].rtp_packets(), kept[0].rtp_packets());
        assert_eq!(bare[0].sip_packets(), kept[0].sip_packets());
        let streams = |c: &crate::calls::Call| -> Vec<(u32, u64)> {
            c.streams()
                .iter()
                .map(|s| (s.key.ssrc, s.stats.summary().packets))
                .collect()
        };
        assert_eq!(streams(&bare[0]), streams(&kept[0]));
        assert_eq!(streams(&bare[0]).len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
