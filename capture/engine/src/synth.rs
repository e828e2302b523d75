//! Synthetic traffic for benchmarks and tests: N concurrent G.711 calls with
//! SIP over UDP and 20 ms RTP both ways, optionally with loss and jitter,
//! written as a time-ordered pcap.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};

use voxtap_proto::pcapio::{LinkType, PcapWriter};
use voxtap_proto::wire::{Emit, ethernet, ethernet::ethertype, ipv4, udp};

pub mod codec_call;
pub mod held;

#[derive(Clone, Debug)]
pub struct SynthConfig {
    pub calls: u32,
    /// Talk time of every call, seconds.
    pub seconds: u32,
    /// Calls start spread over this many seconds.
    pub ramp_seconds: u32,
    /// Random loss, percent of RTP packets.
    pub loss_pct: f64,
    /// Random extra delay per RTP packet, up to this many ms (packets stay in
    /// capture-time order, so this also reorders them when larger than 20).
    pub jitter_ms: f64,
    pub seed: u64,
    /// Every callee answers with its media at this one address and port, as
    /// a media server's single port does (None: each at its own).
    pub media_server: Option<SocketAddrV4>,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            calls: 100,
            seconds: 10,
            ramp_seconds: 1,
            loss_pct: 0.0,
            jitter_ms: 0.0,
            seed: 1,
            media_server: None,
        }
    }
}

/// What was generated, to check an import against.
#[derive(Clone, Debug, Default)]
pub struct SynthSummary {
    pub packets: u64,
    pub sip_packets: u64,
    pub rtp_packets: u64,
    pub rtp_dropped: u64,
}

/// xorshift64*: deterministic, allocation-free randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const T0_NS: u64 = 1_767_225_600 * 1_000_000_000; // 2026-01-01T00:00:00Z
const PTIME_NS: u64 = 20_000_000;

pub(crate) fn caller_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a01_0000 | (i & 0xffff))
}

pub(crate) fn callee_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a02_0000 | (i & 0xffff))
}

pub(crate) fn rtp_port(i: u32) -> u16 {
    10_000 + ((i % 25_000) * 2) as u16
}

pub fn call_id(i: u32) -> String {
    format!("synth-{i}@voxtap.test")
}

fn sdp(ip: Ipv4Addr, port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

fn sip_msg(start: &str, i: u32, cseq: &str, body: Option<&str>, to_tag: bool) -> Vec<u8> {
    let (a, b) = (caller_ip(i), callee_ip(i));
    let body = body.unwrap_or("");
    let mut m = format!(
        "{start}\r\nVia: SIP/2.0/UDP {a}:5060;branch=z9hG4bK{i}x{cseq_n}\r\nFrom: <sip:+4420{i:07}@{a}>;tag=f{i}\r\nTo: <sip:+4430{i:07}@{b}>{tt}\r\nCall-ID: {cid}\r\nCSeq: {cseq}\r\nContact: <sip:{a}:5060>\r\nMax-Forwards: 70\r\n",
        cseq_n = cseq.len(),
        tt = if to_tag {
            format!(";tag=t{i}")
        } else {
            String::new()
        },
        cid = call_id(i),
    );
    if !body.is_empty() {
        m.push_str("Content-Type: application/sdp\r\n");
    }
    m.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    m.into_bytes()
}

/// An RTCP sender report (no report blocks) from `ssrc`, `packets` sent
/// (160 bytes each).
pub fn sender_report(ssrc: u32, packets: u32) -> Vec<u8> {
    let mut r = vec![0x80, 200, 0, 6];
    r.extend_from_slice(&ssrc.to_be_bytes());
    r.extend_from_slice(&[0; 12]); // NTP and RTP timestamps
    r.extend_from_slice(&packets.to_be_bytes());
    r.extend_from_slice(&(packets * 160).to_be_bytes());
    r
}

/// Ethernet + IPv4 + UDP around `payload`, into `out` (left empty when
/// the payload does not fit one IPv4 packet).
pub fn udp_frame(out: &mut Vec<u8>, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) {
    out.clear();
    let eth = ethernet::Repr {
        dst_addr: [0x02, 0, 0, 0, 0, 2],
        src_addr: [0x02, 0, 0, 0, 0, 1],
        ethertype: ethertype::IPV4,
    };
    let ip = ipv4::Repr {
        src_addr: src.0,
        dst_addr: dst.0,
        protocol: ipv4::protocol::UDP,
        payload_len: udp::HEADER_LEN + payload.len(),
        ttl: 64,
        tos: 0,
        ident: 0,
        dont_frag: false,
        more_frags: false,
        frag_offset: 0,
        options: &[],
    };
    let dgram = udp::Repr {
        src_port: src.1,
        dst_port: dst.1,
        payload_len: payload.len(),
    };
    // UDP checksum left 0: "not computed", valid for IPv4.
    let built = eth
        .append(out)
        .and_then(|_| ip.append(out))
        .and_then(|_| dgram.append(out));
    match built {
        Ok(_) => out.extend_from_slice(payload),
        Err(_) => out.clear(),
    }
}

struct Event {
    ts_ns: u64,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    payload: Vec<u8>,
    is_sip: bool,
}

/// The packets of one 20 ms slice of capture time, and those generated
/// early that belong to a later slice (a reply due after the slice's end).
struct Slice {
    t: u64,
    t_next: u64,
    due: Vec<Event>,
    carry: Vec<Event>,
}

impl Slice {
    /// Move to the slice starting at `t`: carried packets now due join it.
    fn start(&mut self, t: u64) {
        self.t = t;
        self.t_next = t + PTIME_NS;
        let t_next = self.t_next;
        let (now, later): (Vec<Event>, Vec<Event>) =
            self.carry.drain(..).partition(|e| e.ts_ns < t_next);
        self.due.extend(now);
        self.carry = later;
    }

    fn covers(&self, ts: u64) -> bool {
        ts >= self.t && ts < self.t_next
    }

    fn push(&mut self, ev: Event) {
        if ev.ts_ns < self.t_next {
            self.due.push(ev);
        } else {
            self.carry.push(ev);
        }
    }
}

/// One call's fixed facts: its index, start and end of talk.
struct CallPlan {
    i: u32,
    start: u64,
    bye_at: u64,
    /// Where the callee receives (and sends) its media.
    callee_media: (Ipv4Addr, u16),
}

impl CallPlan {
    fn sip(&self, ts: u64, from_callee: bool, payload: Vec<u8>) -> Event {
        let (a, b) = ((caller_ip(self.i), 5060u16), (callee_ip(self.i), 5060u16));
        let (src, dst) = if from_callee { (b, a) } else { (a, b) };
        Event {
            ts_ns: ts,
            src,
            dst,
            payload,
            is_sip: true,
        }
    }

    /// The call's SIP messages due in this slice: INVITE, 180, 200, ACK at
    /// 0/10/20/30 ms from its start, BYE and its 200 after the talk time.
    fn push_sip(&self, slice: &mut Slice) {
        let i = self.i;
        let at = |off_ms: u64| self.start + off_ms * 1_000_000;
        let callee = callee_ip(i);
        if slice.covers(at(0)) {
            let uri = format!("INVITE sip:+4430{i:07}@{callee} SIP/2.0");
            let offer = sdp(caller_ip(i), rtp_port(i));
            let m = sip_msg(&uri, i, "1 INVITE", Some(&offer), false);
            slice.push(self.sip(at(0), false, m));
        }
        if slice.covers(at(10)) {
            let m = sip_msg("SIP/2.0 180 Ringing", i, "1 INVITE", None, true);
            slice.push(self.sip(at(10), true, m));
        }
        if slice.covers(at(20)) {
            let answer = sdp(self.callee_media.0, self.callee_media.1);
            let m = sip_msg("SIP/2.0 200 OK", i, "1 INVITE", Some(&answer), true);
            slice.push(self.sip(at(20), true, m));
        }
        if slice.covers(at(30)) {
            let ack = format!("ACK sip:+4430{i:07}@{callee} SIP/2.0");
            slice.push(self.sip(at(30), false, sip_msg(&ack, i, "1 ACK", None, true)));
        }
        if slice.covers(self.bye_at) {
            let bye = format!("BYE sip:+4430{i:07}@{callee} SIP/2.0");
            let m = sip_msg(&bye, i, "2 BYE", None, true);
            slice.push(self.sip(self.bye_at, false, m));
            let ok = sip_msg("SIP/2.0 200 OK", i, "2 BYE", None, true);
            slice.push(self.sip(self.bye_at + 1_000_000, true, ok));
        }
    }

    /// RTP: one packet each way per 20 ms between answer and BYE, each
    /// dropped or delayed at random as configured.
    fn push_rtp(
        &self,
        slice: &mut Slice,
        cfg: &SynthConfig,
        rng: &mut Rng,
        sum: &mut SynthSummary,
    ) {
        let media_start = self.start + 40_000_000;
        let t = slice.t;
        if t + PTIME_NS <= media_start || t >= self.bye_at {
            return;
        }
        // First 20 ms tick of the call at or after t.
        let n = t.saturating_sub(media_start).div_ceil(PTIME_NS);
        let base = media_start + n * PTIME_NS;
        if !slice.covers(base) || base >= self.bye_at {
            return;
        }
        let ra = (caller_ip(self.i), rtp_port(self.i));
        let rb = self.callee_media;
        for (dir, (src, dst)) in [(0u32, (ra, rb)), (1, (rb, ra))] {
            if cfg.loss_pct > 0.0 && rng.unit() * 100.0 < cfg.loss_pct {
                sum.rtp_dropped += 1;
                continue;
            }
            let jitter = if cfg.jitter_ms > 0.0 {
                (rng.unit() * cfg.jitter_ms * 1e6) as u64
            } else {
                0
            };
            slice.push(Event {
                ts_ns: base + jitter + u64::from(dir) * 100_000,
                src,
                dst,
                payload: rtp_packet(n, 0x1000_0000 | (self.i << 1) | dir),
                is_sip: false,
            });
        }
    }
}

/// A G.711 RTP packet: the `n`th of its stream (marker on the first).
fn rtp_packet(n: u64, ssrc: u32) -> Vec<u8> {
    let mut rtp = Vec::with_capacity(172);
    rtp.extend_from_slice(&[0x80, if n == 0 { 0x80 } else { 0x00 }]);
    rtp.extend_from_slice(&(n as u16).to_be_bytes());
    rtp.extend_from_slice(&(n as u32).wrapping_mul(160).to_be_bytes());
    rtp.extend_from_slice(&ssrc.to_be_bytes());
    rtp.extend_from_slice(&[0xffu8; 160]);
    rtp
}

/// Write the synthetic capture to `w`.
pub fn generate<W: Write>(cfg: &SynthConfig, w: W) -> std::io::Result<SynthSummary> {
    let mut pcap = PcapWriter::new(w, LinkType::Ethernet, 65_535)?;
    let mut rng = Rng(cfg.seed.max(1));
    let mut sum = SynthSummary::default();
    let ramp_ns = u64::from(cfg.ramp_seconds.max(1)) * 1_000_000_000;
    let talk_ns = u64::from(cfg.seconds) * 1_000_000_000;
    let plans: Vec<CallPlan> = (0..cfg.calls)
        .map(|i| {
            let start = T0_NS + ramp_ns * u64::from(i) / u64::from(cfg.calls.max(1));
            let bye_at = start + 40_000_000 + talk_ns;
            let callee_media = cfg
                .media_server
                .map_or((callee_ip(i), rtp_port(i)), |s| (*s.ip(), s.port()));
            CallPlan {
                i,
                start,
                bye_at,
                callee_media,
            }
        })
        .collect();
    let end_ns = T0_NS + ramp_ns + talk_ns + 1_000_000_000;
    let mut frame = Vec::with_capacity(2048);
    let mut slice = Slice {
        t: T0_NS,
        t_next: T0_NS,
        due: Vec::new(),
        carry: Vec::new(),
    };
    // Walk time in 20 ms slices; gather the slice's packets, sort, write.
    let mut t = T0_NS;
    while t < end_ns {
        slice.start(t);
        for plan in &plans {
            plan.push_sip(&mut slice);
            plan.push_rtp(&mut slice, cfg, &mut rng, &mut sum);
        }
        slice.due.sort_by_key(|e| e.ts_ns);
        for e in slice.due.drain(..) {
            udp_frame(&mut frame, e.src, e.dst, &e.payload);
            pcap.write_packet(e.ts_ns, frame.len() as u32, &frame)?;
            sum.packets += 1;
            if e.is_sip {
                sum.sip_packets += 1;
            } else {
                sum.rtp_packets += 1;
            }
        }
        t += PTIME_NS;
    }
    pcap.flush()?;
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::PacketRef;
    use crate::pipeline::{Pipeline, PipelineConfig};
    use voxtap_proto::pcapio::PcapReader;

    /// The generated capture holds exactly what it claims: every call set up
    /// and torn down, two streams per call with one packet per 20 ms and no
    /// loss, in capture-time order.
    #[test]
    fn synthetic_calls_import_as_generated() {
        // Enough calls that replies fall across 20 ms slice edges.
        let cfg = SynthConfig {
            calls: 400,
            seconds: 1,
            ..Default::default()
        };
        let mut buf = Vec::new();
        let sum = generate(&cfg, &mut buf).unwrap();
        // 6 SIP messages per call; 1 s of 20 ms RTP both ways.
        assert_eq!(sum.sip_packets, 400 * 6);
        assert_eq!(sum.rtp_packets, 400 * 2 * 50);
        let per_stream = 50;

        let mut r = PcapReader::new(std::io::Cursor::new(buf)).unwrap();
        let mut p = Pipeline::new(PipelineConfig::default());
        let mut last_ts = 0;
        while let Some(rec) = r.next_packet().unwrap() {
            assert!(rec.ts_ns >= last_ts, "capture order");
            last_ts = rec.ts_ns;
            p.process(rec.link, rec.ts_ns, PacketRef::new(0, rec.offset), rec.data);
        }
        p.finish();
        let calls = p.drain_ended();
        assert_eq!(calls.len(), 400);
        for c in &calls {
            assert_eq!(c.state().as_str(), "answered");
            assert_eq!(c.sip_packets(), 6);
            assert_eq!(c.streams().len(), 2);
            for s in c.streams() {
                let sum = s.stats.summary();
                assert_eq!(sum.packets, per_stream);
                assert_eq!(sum.lost, 0);
                assert_eq!(sum.ptime_ms, Some(20.0));
            }
        }
    }

    #[test]
    fn loss_is_seen_as_loss() {
        let cfg = SynthConfig {
            calls: 10,
            seconds: 4,
            loss_pct: 5.0,
            ..Default::default()
        };
        let mut buf = Vec::new();
        let sum = generate(&cfg, &mut buf).unwrap();
        assert!(sum.rtp_dropped > 0);
        let mut r = PcapReader::new(std::io::Cursor::new(buf)).unwrap();
        let mut p = Pipeline::new(PipelineConfig::default());
        while let Some(rec) = r.next_packet().unwrap() {
            p.process(rec.link, rec.ts_ns, PacketRef::new(0, rec.offset), rec.data);
        }
        p.finish();
        let lost: i64 = p
            .drain_ended()
            .iter()
            .flat_map(|c| c.streams().iter())
            .map(|s| s.stats.summary().lost)
            .sum();
        // Drops at the very end of a stream are invisible to sequence
        // numbers; every other drop is counted.
        assert!(
            lost as u64 <= sum.rtp_dropped && lost as u64 + 20 >= sum.rtp_dropped,
            "{lost} vs {}",
            sum.rtp_dropped
        );
    }
}
