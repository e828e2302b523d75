//! Frames of answered G.711 calls held open (INVITE and 200 OK with SDP,
//! RTP both ways, BYE), built one at a time for benchmarks and tests that
//! feed a [`crate::pipeline::Pipeline`] directly: a capture file of 50,000
//! calls × 10 minutes would be 650 GB.
//!
//! Call `i` names its Call-ID, users and SSRCs; `host` picks its addresses
//! (a soak reuses addresses of long-ended calls, a memory test does not).

use std::net::Ipv4Addr;

use super::udp_frame;
use crate::calls::PacketRef;
use crate::pipeline::Pipeline;
use voxtap_proto::pcapio::LinkType;

/// The SIP messages of one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msg {
    /// INVITE with the caller's SDP.
    Invite,
    /// 200 OK to it with the callee's SDP.
    Answer,
    /// BYE from the caller.
    Bye,
    /// 200 OK to the BYE.
    ByeOk,
}

/// Address of `host` on `side` (1 caller, 2 callee): 10.side.x.y, 65,536
/// hosts per side, then the next /16.
pub fn ip(side: u32, host: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 | ((side + 2 * (host >> 16)) << 16) | (host & 0xffff))
}

/// RTP port both sides of `host` announce.
pub fn media_port(host: u32) -> u16 {
    20_000 + 2 * (host % 20_000) as u16
}

fn sdp(a: Ipv4Addr, port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {a}\r\ns=-\r\nc=IN IP4 {a}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n"
    )
}

/// SIP message `msg` of call `i` between the addresses of `host`.
pub fn sip(msg: Msg, i: u32, host: u32) -> Vec<u8> {
    let (a, b) = (ip(1, host), ip(2, host));
    let (start, cseq, to_tag, body) = match msg {
        Msg::Invite => (
            format!("INVITE sip:+4430{i:07}@{b} SIP/2.0"),
            "1 INVITE",
            false,
            sdp(a, media_port(host)),
        ),
        Msg::Answer => (
            "SIP/2.0 200 OK".into(),
            "1 INVITE",
            true,
            sdp(b, media_port(host)),
        ),
        Msg::Bye => (
            format!("BYE sip:+4430{i:07}@{b} SIP/2.0"),
            "2 BYE",
            true,
            String::new(),
        ),
        Msg::ByeOk => ("SIP/2.0 200 OK".into(), "2 BYE", true, String::new()),
    };
    let ctype = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{start}\r\nVia: SIP/2.0/UDP {a}:5060;branch=z9hG4bKh{i}\r\nFrom: <sip:+4420{i:07}@{a}>;tag=f{i}\r\nTo: <sip:+4430{i:07}@{b}>{tt}\r\nCall-ID: held-{i}@voxtap.test\r\nCSeq: {cseq}\r\nContact: <sip:{a}:5060>\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
        body.len(),
        tt = if to_tag { format!(";tag=t{i}") } else { String::new() },
    )
    .into_bytes()
}

/// Ethernet frame of SIP message `msg` of call `i` (requests from the
/// caller, responses from the callee), into `out`.
pub fn sip_frame(out: &mut Vec<u8>, msg: Msg, i: u32, host: u32) {
    let (a, b) = ((ip(1, host), 5060), (ip(2, host), 5060));
    let (src, dst) = match msg {
        Msg::Invite | Msg::Bye => (a, b),
        Msg::Answer | Msg::ByeOk => (b, a),
    };
    udp_frame(out, src, dst, &sip(msg, i, host));
}

/// A G.711 RTP packet (160 bytes of payload, PT 0).
pub fn g711(seq: u16, ssrc: u32) -> [u8; 172] {
    let mut p = [0xffu8; 172];
    p[0] = 0x80;
    p[1] = 0;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p
}

/// Ethernet frame of RTP packet `seq` of call `i`, caller to callee
/// (`forward`, SSRC `i`) or back (SSRC `!i`), into `out`.
pub fn rtp_frame(out: &mut Vec<u8>, i: u32, host: u32, seq: u16, forward: bool) {
    let port = media_port(host);
    let (a, b) = ((ip(1, host), port), (ip(2, host), port));
    if forward {
        udp_frame(out, a, b, &g711(seq, i));
    } else {
        udp_frame(out, b, a, &g711(seq, !i));
    }
}

/// Held calls' frames pushed straight into a pipeline, each referenced as
/// a capture file would have it (230 bytes a record, as G.711 frames in a
/// pcap).
pub struct Feed {
    pub pipeline: Pipeline,
    frame: Vec<u8>,
    /// Frames pushed so far.
    pub frames: u64,
}

impl Feed {
    pub fn new(pipeline: Pipeline) -> Self {
        Feed {
            pipeline,
            frame: Vec::with_capacity(2048),
            frames: 0,
        }
    }

    fn push(&mut self, ts: u64) {
        let r = PacketRef::new(0, 24 + self.frames * 230);
        self.pipeline
            .process(LinkType::Ethernet, ts, r, &self.frame);
        self.frames += 1;
    }

    /// Call `i` (on host `i`): its INVITE at `ts`, the 200 OK 1 ns later.
    pub fn answer(&mut self, ts: u64, i: u32) {
        sip_frame(&mut self.frame, Msg::Invite, i, i);
        self.push(ts);
        sip_frame(&mut self.frame, Msg::Answer, i, i);
        self.push(ts + 1);
    }

    /// One RTP packet each way, sequence `seq`, at `ts` for calls
    /// `0..calls`.
    pub fn rtp_round(&mut self, ts: u64, seq: u16, calls: u32) {
        for i in 0..calls {
            rtp_frame(&mut self.frame, i, i, seq, true);
            self.push(ts);
            rtp_frame(&mut self.frame, i, i, seq, false);
            self.push(ts);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_parse_and_name_the_call() {
        for msg in [Msg::Invite, Msg::Answer, Msg::Bye, Msg::ByeOk] {
            let raw = sip(msg, 7, 7);
            let m = voxtap_proto::sip::parse(&raw).unwrap();
            assert_eq!(m.call_id(), Some(&b"held-7@voxtap.test"[..]), "{msg:?}");
            let body = !matches!(msg, Msg::Bye | Msg::ByeOk);
            assert_eq!(m.body().starts_with(b"v=0"), body, "{msg:?}");
        }
        assert_eq!(ip(2, 65_537), Ipv4Addr::new(10, 4, 0, 1));
    }
}
