//! Synthetic traffic for benchmarks and tests: N concurrent G.711 calls with
//! SIP over UDP and 20 ms RTP both ways, optionally with loss and jitter,
//! written as a time-ordered pcap.

use std::io::Write;
use std::net::Ipv4Addr;

use voxtap_proto::pcapio::{LinkType, PcapWriter};
use voxtap_proto::wire::{Emit, ethernet, ethernet::ethertype, ipv4, udp};

pub mod codec_call;

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

fn caller_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a01_0000 | (i & 0xffff))
}

fn callee_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a02_0000 | (i & 0xffff))
}

fn rtp_port(i: u32) -> u16 {
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

/// Write the synthetic capture to `w`.
pub fn generate<W: Write>(cfg: &SynthConfig, w: W) -> std::io::Result<SynthSummary> {
    let mut pcap = PcapWriter::new(w, LinkType::Ethernet, 65_535)?;
    let mut rng = Rng(cfg.seed.max(1));
    let mut sum = SynthSummary::default();
    let ramp_ns = u64::from(cfg.ramp_seconds.max(1)) * 1_000_000_000;
    let talk_ns = u64::from(cfg.seconds) * 1_000_000_000;
    let starts: Vec<u64> = (0..cfg.calls)
        .map(|i| T0_NS + ramp_ns * u64::from(i) / u64::from(cfg.calls.max(1)))
        .collect();
    let end_ns = T0_NS + ramp_ns + talk_ns + 1_000_000_000;
    let payload = [0xffu8; 160];
    let mut frame = Vec::with_capacity(2048);
    // Walk time in 20 ms slices; gather the slice's packets, sort, write.
    let mut slice: Vec<Event> = Vec::new();
    let mut carry: Vec<Event> = Vec::new();
    let mut t = T0_NS;
    while t < end_ns {
        let t_next = t + PTIME_NS;
        let (now, later): (Vec<Event>, Vec<Event>) =
            carry.drain(..).partition(|e| e.ts_ns < t_next);
        slice.extend(now);
        carry = later;
        for i in 0..cfg.calls {
            let s = starts[i as usize];
            let (a, b) = ((caller_ip(i), 5060u16), (callee_ip(i), 5060u16));
            let (ra, rb) = ((caller_ip(i), rtp_port(i)), (callee_ip(i), rtp_port(i)));
            let sip_at = |off_ms: u64| s + off_ms * 1_000_000;
            // Called only for messages due in this slice; a reply due after
            // the slice's end waits for the next one.
            let mut push_sip = |ts: u64, src, dst, p: Vec<u8>| {
                let ev = Event {
                    ts_ns: ts,
                    src,
                    dst,
                    payload: p,
                    is_sip: true,
                };
                if ts < t_next {
                    slice.push(ev);
                } else {
                    carry.push(ev);
                }
            };
            let uri = format!("INVITE sip:+4430{i:07}@{} SIP/2.0", callee_ip(i));
            if sip_at(0) >= t && sip_at(0) < t_next {
                push_sip(
                    sip_at(0),
                    a,
                    b,
                    sip_msg(&uri, i, "1 INVITE", Some(&sdp(ra.0, ra.1)), false),
                );
            }
            if sip_at(10) >= t && sip_at(10) < t_next {
                push_sip(
                    sip_at(10),
                    b,
                    a,
                    sip_msg("SIP/2.0 180 Ringing", i, "1 INVITE", None, true),
                );
            }
            if sip_at(20) >= t && sip_at(20) < t_next {
                push_sip(
                    sip_at(20),
                    b,
                    a,
                    sip_msg(
                        "SIP/2.0 200 OK",
                        i,
                        "1 INVITE",
                        Some(&sdp(rb.0, rb.1)),
                        true,
                    ),
                );
            }
            if sip_at(30) >= t && sip_at(30) < t_next {
                let ack = format!("ACK sip:+4430{i:07}@{} SIP/2.0", callee_ip(i));
                push_sip(sip_at(30), a, b, sip_msg(&ack, i, "1 ACK", None, true));
            }
            let bye_at = s + 40_000_000 + talk_ns;
            if bye_at >= t && bye_at < t_next {
                let bye = format!("BYE sip:+4430{i:07}@{} SIP/2.0", callee_ip(i));
                push_sip(bye_at, a, b, sip_msg(&bye, i, "2 BYE", None, true));
                push_sip(
                    bye_at + 1_000_000,
                    b,
                    a,
                    sip_msg("SIP/2.0 200 OK", i, "2 BYE", None, true),
                );
            }
            // RTP: one packet each way per 20 ms between answer and BYE.
            let media_start = s + 40_000_000;
            if t + PTIME_NS > media_start && t < bye_at {
                // First 20 ms tick of the call at or after t.
                let n = t.saturating_sub(media_start).div_ceil(PTIME_NS);
                let base = media_start + n * PTIME_NS;
                if base >= t && base < t_next && base < bye_at {
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
                        let seq = n as u16;
                        let ts = (n as u32).wrapping_mul(160);
                        let ssrc = 0x1000_0000 | (i << 1) | dir;
                        let mut rtp = Vec::with_capacity(172);
                        rtp.extend_from_slice(&[0x80, if n == 0 { 0x80 } else { 0x00 }]);
                        rtp.extend_from_slice(&seq.to_be_bytes());
                        rtp.extend_from_slice(&ts.to_be_bytes());
                        rtp.extend_from_slice(&ssrc.to_be_bytes());
                        rtp.extend_from_slice(&payload);
                        let ev = Event {
                            ts_ns: base + jitter + u64::from(dir) * 100_000,
                            src,
                            dst,
                            payload: rtp,
                            is_sip: false,
                        };
                        if ev.ts_ns < t_next {
                            slice.push(ev);
                        } else {
                            carry.push(ev);
                        }
                    }
                }
            }
        }
        slice.sort_by_key(|e| e.ts_ns);
        for e in slice.drain(..) {
            udp_frame(&mut frame, e.src, e.dst, &e.payload);
            pcap.write_packet(e.ts_ns, frame.len() as u32, &frame)?;
            sum.packets += 1;
            if e.is_sip {
                sum.sip_packets += 1;
            } else {
                sum.rtp_packets += 1;
            }
        }
        t = t_next;
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
