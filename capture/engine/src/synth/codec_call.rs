//! One SIP call carrying given RTP payloads: the codec end-to-end tests
//! encode speech with a reference encoder, and this packs the frames into
//! RTP, offers and answers them in SDP (rtpmap, fmtp), and writes the call
//! as a capture (INVITE, 200, ACK, the media both ways, BYE, 200).

use std::io::Write;
use std::net::Ipv4Addr;

use voxtap_proto::pcapio::{LinkType, PcapWriter};

use super::udp_frame;

/// What one RTP time slot of a direction holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Slot {
    /// A packet sent and captured.
    Send { pt: u8, payload: Vec<u8> },
    /// A packet sent and lost before the capture point: its sequence
    /// number is used, nothing is captured.
    Lost,
    /// Nothing sent (DTX, silence suppression): no sequence number used;
    /// the next packet sent carries the marker bit.
    Silent,
}

/// A slot and its length in RTP clock units.
#[derive(Clone, Debug, PartialEq)]
pub struct RtpSlot {
    pub units: u32,
    pub slot: Slot,
}

/// The call: its SDP media description and each direction's slots.
#[derive(Clone, Debug)]
pub struct CodecCall {
    pub call_id: String,
    /// Which call this is among several written into one import: the
    /// n-th call's hosts are 10.1.0.(n+1) and 10.2.0.(n+1) and it starts
    /// n minutes after the first.
    pub n: u8,
    /// The m= line's payload types.
    pub payload_types: Vec<u8>,
    /// `a=` lines after the m= line, without `a=` (`rtpmap:96 AMR/8000`...).
    pub attributes: Vec<String>,
    /// The RTP clock the slots' units count.
    pub clock: u32,
    pub caller: Vec<RtpSlot>,
    pub callee: Vec<RtpSlot>,
}

/// What was written.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CodecCallSummary {
    pub frames: u64,
    pub rtp_packets: u64,
}

const T0_NS: u64 = 1_767_225_600 * 1_000_000_000;
const CALLER_RTP: u16 = 20_000;
const CALLEE_RTP: u16 = 30_000;
/// Media starts this long after the INVITE.
const MEDIA_START_NS: u64 = 100_000_000;

/// Start time and (caller, callee) hosts of call `n`.
fn place(n: u8) -> (u64, Ipv4Addr, Ipv4Addr) {
    (
        T0_NS + u64::from(n) * 60_000_000_000,
        Ipv4Addr::new(10, 1, 0, n.wrapping_add(1)),
        Ipv4Addr::new(10, 2, 0, n.wrapping_add(1)),
    )
}

fn sdp(c: &CodecCall, ip: Ipv4Addr, port: u16) -> String {
    let pts: Vec<String> = c.payload_types.iter().map(u8::to_string).collect();
    let mut s = format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {}\r\n",
        pts.join(" ")
    );
    for a in &c.attributes {
        s.push_str(&format!("a={a}\r\n"));
    }
    s.push_str("a=sendrecv\r\n");
    s
}

fn sip(c: &CodecCall, start: &str, cseq: &str, body: Option<&str>, to_tag: bool) -> Vec<u8> {
    let (_, a, b) = place(c.n);
    let body = body.unwrap_or("");
    let mut m = format!(
        "{start}\r\nVia: SIP/2.0/UDP {a}:5060;branch=z9hG4bK-{}\r\nFrom: <sip:alice@{a}>;tag=a1\r\nTo: <sip:bob@{b}>{}\r\nCall-ID: {}\r\nCSeq: {cseq}\r\nContact: <sip:alice@{a}:5060>\r\nMax-Forwards: 70\r\n",
        cseq.replace(' ', "-"),
        if to_tag { ";tag=b1" } else { "" },
        c.call_id,
    );
    if !body.is_empty() {
        m.push_str("Content-Type: application/sdp\r\n");
    }
    m.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    m.into_bytes()
}

/// (time, src, dst, UDP payload).
type Datagram = (u64, (Ipv4Addr, u16), (Ipv4Addr, u16), Vec<u8>);

/// Every RTP packet of one direction.
fn rtp_events(
    t0: u64,
    slots: &[RtpSlot],
    clock: u32,
    ssrc: u32,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
) -> Vec<Datagram> {
    let mut out = Vec::new();
    let (mut seq, mut ts, mut units_total) = (1000u16, 0x1234_0000u32, 0u64);
    let mut marker = true;
    for s in slots {
        let at = t0 + MEDIA_START_NS + units_total * 1_000_000_000 / u64::from(clock.max(1));
        match &s.slot {
            Slot::Send { pt, payload } => {
                let mut p = Vec::with_capacity(12 + payload.len());
                p.extend_from_slice(&[0x80, (u8::from(marker) << 7) | (pt & 0x7F)]);
                p.extend_from_slice(&seq.to_be_bytes());
                p.extend_from_slice(&ts.to_be_bytes());
                p.extend_from_slice(&ssrc.to_be_bytes());
                p.extend_from_slice(payload);
                out.push((at, src, dst, p));
                seq = seq.wrapping_add(1);
                marker = false;
            }
            Slot::Lost => seq = seq.wrapping_add(1),
            Slot::Silent => marker = true,
        }
        ts = ts.wrapping_add(s.units);
        units_total += u64::from(s.units);
    }
    out
}

/// Write the call to `w` as an Ethernet pcap.
pub fn write<W: Write>(c: &CodecCall, w: W) -> std::io::Result<CodecCallSummary> {
    let mut pcap = PcapWriter::new(w, LinkType::Ethernet, 65_535)?;
    let (t0, caller, callee) = place(c.n);
    let (a, b) = ((caller, 5060), (callee, 5060));
    let (ra, rb) = ((caller, CALLER_RTP), (callee, CALLEE_RTP));
    let offer = sdp(c, caller, CALLER_RTP);
    let answer = sdp(c, callee, CALLEE_RTP);
    let ms = |n: u64| t0 + n * 1_000_000;
    let ruri = format!("sip:bob@{callee} SIP/2.0");
    let mut ev = vec![
        (
            ms(0),
            a,
            b,
            sip(
                c,
                &format!("INVITE {ruri}"),
                "1 INVITE",
                Some(&offer),
                false,
            ),
        ),
        (
            ms(20),
            b,
            a,
            sip(c, "SIP/2.0 200 OK", "1 INVITE", Some(&answer), true),
        ),
        (
            ms(40),
            a,
            b,
            sip(c, &format!("ACK {ruri}"), "1 ACK", None, true),
        ),
    ];
    let up = rtp_events(t0, &c.caller, c.clock, 0x1111_1111, ra, rb);
    let down = rtp_events(t0, &c.callee, c.clock, 0x2222_2222, rb, ra);
    let rtp_packets = (up.len() + down.len()) as u64;
    let last = up.iter().chain(&down).map(|e| e.0).max().unwrap_or(ms(100));
    ev.extend(up);
    ev.extend(down);
    let bye = format!("BYE {ruri}");
    ev.push((last + 20_000_000, a, b, sip(c, &bye, "2 BYE", None, true)));
    ev.push((
        last + 30_000_000,
        b,
        a,
        sip(c, "SIP/2.0 200 OK", "2 BYE", None, true),
    ));
    ev.sort_by_key(|e| e.0);
    let mut frame = Vec::with_capacity(2048);
    for (t, src, dst, payload) in &ev {
        udp_frame(&mut frame, *src, *dst, payload);
        pcap.write_packet(*t, frame.len() as u32, &frame)?;
    }
    pcap.flush()?;
    Ok(CodecCallSummary {
        frames: ev.len() as u64,
        rtp_packets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::PacketRef;
    use crate::pipeline::{Pipeline, PipelineConfig};
    use voxtap_proto::pcapio::PcapReader;

    /// Lost slots are sequence-number gaps, silent ones are not; the SDP's
    /// fmtp reaches the call's media description.
    #[test]
    fn slots_become_packets_and_gaps() {
        let send = |b: u8| RtpSlot {
            units: 160,
            slot: Slot::Send {
                pt: 96,
                payload: vec![b; 20],
            },
        };
        let gap = |slot| RtpSlot { units: 160, slot };
        let c = CodecCall {
            call_id: "codec-call@test".into(),
            n: 0,
            payload_types: vec![96],
            attributes: vec!["rtpmap:96 AMR/8000".into(), "fmtp:96 octet-align=1".into()],
            clock: 8000,
            caller: vec![
                send(1),
                gap(Slot::Lost),
                send(2),
                gap(Slot::Silent),
                send(3),
            ],
            callee: vec![send(4)],
        };
        let mut buf = Vec::new();
        let sum = write(&c, &mut buf).unwrap();
        assert_eq!(sum.rtp_packets, 4);
        assert_eq!(sum.frames, 3 + 4 + 2);
        let mut r = PcapReader::new(std::io::Cursor::new(buf)).unwrap();
        let mut p = Pipeline::new(PipelineConfig::default());
        while let Some(rec) = r.next_packet().unwrap() {
            p.process(rec.link, rec.ts_ns, PacketRef::new(0, rec.offset), rec.data);
        }
        p.finish();
        let calls = p.drain_ended();
        assert_eq!(calls.len(), 1);
        let call = &calls[0];
        assert_eq!(call.state().as_str(), "answered");
        assert_eq!(
            call.media()[0].fmtp()[..],
            [(96, "octet-align=1".to_string())]
        );
        let up = call
            .streams()
            .iter()
            .find(|s| s.key.ssrc == 0x1111_1111)
            .unwrap();
        let sum = up.stats.summary();
        assert_eq!((sum.packets, sum.lost), (3, 1));
    }
}
