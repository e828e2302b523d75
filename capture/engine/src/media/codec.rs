//! Which codec each RTP stream carries: the payload-type map from the
//! call's SDP (rtpmap and fmtp) over RFC 3551's static table, the payload
//! type a stream is named and rated by, and for a payload type nobody
//! signalled, a labelled guess from the packets. streams.csv, the call
//! index and the media step all resolve codecs here, so they agree.

use std::net::SocketAddr;

use voxtap_codecs::guess::{self, Sample};
use voxtap_codecs::{CodecKind, Unavailable};

use super::layout::{MediaPacket, PtMap};
use crate::calls::{Call, MediaInfo, Stream};

/// RFC 3551's static payload types that name audio or comfort noise, with
/// their clocks (table 4).
const STATIC_AUDIO: [u8; 13] = [0, 3, 4, 5, 6, 8, 9, 10, 11, 13, 16, 17, 18];

/// How many packets the guess looks at (a few seconds is plenty).
const GUESS_PACKETS: usize = 250;

/// The codec of each payload type a stream may use: RFC 3551's static
/// table, then every SDP of the call, the receiver's (those announcing
/// `dst`) and the stream's own m= line (`media_idx`) last so they win
/// (payload type numbers are the receiver's).
pub fn pt_map(call: Option<&Call>, media_idx: Option<usize>, dst: SocketAddr) -> PtMap {
    let mut map = PtMap::new();
    fill(call, media_idx, dst, |pt, v| {
        map.insert(pt, v);
    });
    map
}

/// Every (payload type, (codec, clock)) of [`pt_map`], in its order: a
/// later one for the same payload type wins.
fn fill(
    call: Option<&Call>,
    media_idx: Option<usize>,
    dst: SocketAddr,
    mut put: impl FnMut(u8, (CodecKind, u32)),
) {
    for pt in STATIC_AUDIO {
        let clock = voxtap_proto::rtp::static_codec(pt).map_or(8000, |c| c.clock_rate);
        put(pt, (CodecKind::from_static_pt(pt), clock));
    }
    let Some(call) = call else { return };
    let mut media: Vec<(usize, &MediaInfo)> = call.media().iter().enumerate().collect();
    media.sort_by_key(|(i, m)| (Some(*i) == media_idx, m.rtp == dst, m.announced_ns));
    for (_, m) in media {
        for r in &m.rtpmap {
            let fmtp = m
                .fmtp()
                .iter()
                .find(|(pt, _)| *pt == r.pt)
                .map(|(_, f)| f.as_str());
            let kind = CodecKind::from_rtpmap(&r.encoding, r.clock_rate, r.channels, fmtp);
            put(r.pt, (kind, r.clock_rate.max(1)));
        }
    }
}

/// [`pt_map`] as a table indexed by payload type. Streams.csv, the index's
/// stream rows and each call's main codec ask it for every stream written;
/// the map's hashing of RFC 3551's static types and the SDP's took about
/// 13% of an import's output thread (callgrind, 2,000 calls).
pub struct StreamCodecs(Box<[Option<(CodecKind, u32)>; 256]>);

impl StreamCodecs {
    pub fn new(call: Option<&Call>, media_idx: Option<usize>, dst: SocketAddr) -> Self {
        let mut t = Box::new([None; 256]);
        fill(call, media_idx, dst, |pt, v| t[usize::from(pt)] = Some(v));
        StreamCodecs(t)
    }

    /// The table of a call-table stream, as [`stream_pt_map`].
    pub fn for_stream(call: &Call, s: &Stream) -> Self {
        StreamCodecs::new(Some(call), s.media_idx(), s.key.dst.into())
    }

    /// The codec and clock of `pt`, None if nothing names it.
    pub fn get(&self, pt: u8) -> Option<(CodecKind, u32)> {
        self.0[usize::from(pt)]
    }

    /// [`rated_payload_type`] with this table.
    pub fn rated_payload_type(&self, pts: impl IntoIterator<Item = u8>) -> Option<u8> {
        rated_by(pts, |pt| self.get(pt).map(|v| v.0))
    }
}

/// The payload type a stream is named and rated by: the first one seen
/// (`pts` in first-seen order) that is not comfort noise or RFC 4733
/// events; else the first. A payload type `map` does not know counts.
pub fn rated_payload_type(pts: impl IntoIterator<Item = u8>, map: &PtMap) -> Option<u8> {
    rated_by(pts, |pt| map.get(&pt).map(|v| v.0))
}

/// [`rated_payload_type`] with `kind` saying what a payload type carries.
fn rated_by(
    pts: impl IntoIterator<Item = u8>,
    kind: impl Fn(u8) -> Option<CodecKind>,
) -> Option<u8> {
    let mut first = None;
    for pt in pts {
        first.get_or_insert(pt);
        let side = kind(pt).is_some_and(|k| matches!(k, CodecKind::Cn | CodecKind::TelephoneEvent));
        if !side {
            return Some(pt);
        }
    }
    first
}

/// [`pt_map`] for a stream of the call table.
pub fn stream_pt_map(call: &Call, s: &Stream) -> PtMap {
    pt_map(Some(call), s.media_idx(), s.key.dst.into())
}

/// The codec a call-table stream is rated by (what streams.csv and the
/// index say): its rated payload type and that payload type's codec.
pub fn stream_codec(call: &Call, s: &Stream, payload_types: &[u8]) -> (u8, CodecKind) {
    let t = StreamCodecs::for_stream(call, s);
    let pt = t
        .rated_payload_type(payload_types.iter().copied())
        .unwrap_or(0);
    let kind = t.get(pt).map_or(CodecKind::Unsupported, |v| v.0);
    (pt, kind)
}

/// Why audio of `kind` on payload type `pt` is not decoded by this build,
/// or None when it is. `known`: whether anything (SDP, RFC 3551, a guess)
/// said what the payload type carries.
pub fn undecodable_reason(kind: CodecKind, pt: u8, known: bool) -> Option<String> {
    if !known {
        return Some(format!(
            "payload type {pt} is named by no SDP of the call nor by RFC 3551"
        ));
    }
    kind.unavailable().map(|u| match u {
        Unavailable::NotSupported => "codec not supported".to_string(),
        other => other.to_string(),
    })
}

/// For a payload type nobody signalled: a guess from the packets of that
/// payload type (arrival order), or None.
pub fn guess_codec(packets: &[MediaPacket], pt: u8) -> Option<guess::Guess> {
    let mut by_time: Vec<&MediaPacket> = packets.iter().filter(|p| p.pt == pt).collect();
    by_time.sort_by_key(|p| p.arrival_ns);
    let samples: Vec<Sample<'_>> = by_time
        .iter()
        .take(GUESS_PACKETS)
        .map(|p| Sample {
            arrival_ns: p.arrival_ns,
            timestamp: p.timestamp,
            payload: &p.payload,
        })
        .collect();
    guess::guess(&samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(u8, CodecKind)]) -> PtMap {
        entries.iter().map(|&(pt, k)| (pt, (k, 8000))).collect()
    }

    #[test]
    fn rated_payload_type_skips_comfort_noise_and_events() {
        let m = map(&[
            (13, CodecKind::Cn),
            (101, CodecKind::TelephoneEvent),
            (18, CodecKind::G729),
        ]);
        assert_eq!(rated_payload_type([13, 101, 18], &m), Some(18));
        assert_eq!(rated_payload_type([101, 96], &m), Some(96));
        assert_eq!(rated_payload_type([13], &m), Some(13));
        assert_eq!(rated_payload_type([], &m), None);
    }

    /// The table answers as the map for every payload type, for a call
    /// whose offer and answer name the same payload types differently (and
    /// redefine a static one), whichever m= line and destination the
    /// stream has, and for no call at all.
    #[test]
    fn stream_codecs_answer_as_the_map() {
        use crate::calls::{CallConfig, CallTable, PacketRef};
        let addr = |s: &str| -> SocketAddr { s.parse().unwrap() };
        let mut t = CallTable::new(CallConfig::default());
        let msg = |first: &str, tag: &str, ip: &str, port: u16, fmt: &str, maps: &str| {
            let sdp = format!(
                "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {fmt}\r\n{maps}"
            );
            format!(
                "{first}\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>{tag}\r\nCall-ID: c@x\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            )
        };
        let offer = msg(
            "INVITE sip:b@x SIP/2.0",
            "",
            "10.0.0.1",
            4000,
            "0 8 96 101 13",
            "a=rtpmap:96 opus/48000/2\r\na=fmtp:96 stereo=1\r\na=rtpmap:101 telephone-event/8000\r\na=rtpmap:8 G722/8000\r\n",
        );
        let answer = msg(
            "SIP/2.0 200 OK",
            ";tag=2",
            "10.0.0.2",
            5000,
            "96 18 101",
            "a=rtpmap:96 telephone-event/8000\r\na=rtpmap:101 PCMU/8000\r\na=rtpmap:18 G729/8000\r\n",
        );
        for (ts, src, dst, text) in [
            (1, "10.0.0.1:5060", "10.0.0.2:5060", offer),
            (2, "10.0.0.2:5060", "10.0.0.1:5060", answer),
        ] {
            let m = voxtap_proto::sip::parse(text.as_bytes()).unwrap();
            t.on_sip(ts, addr(src), addr(dst), "UDP", &m, &[(ts, PacketRef(ts))]);
        }
        let call = t.open().next().unwrap();
        assert_eq!(call.media().len(), 2);
        let mut differ = 0;
        for c in [None, Some(call)] {
            for idx in [None, Some(0), Some(1)] {
                for dst in ["10.0.0.1:4000", "10.0.0.2:5000", "10.9.9.9:1"] {
                    let dst = addr(dst);
                    let (map, table) = (pt_map(c, idx, dst), StreamCodecs::new(c, idx, dst));
                    for pt in 0..=255u8 {
                        assert_eq!(table.get(pt), map.get(&pt).copied(), "{pt} {idx:?} {dst}");
                    }
                    for pts in [&[96u8, 8][..], &[101, 13, 0], &[13], &[], &[127, 96]] {
                        assert_eq!(
                            table.rated_payload_type(pts.iter().copied()),
                            rated_payload_type(pts.iter().copied(), &map)
                        );
                    }
                    differ += usize::from(map.get(&96) != pt_map(None, None, dst).get(&96));
                }
            }
        }
        // The SDPs did change what payload types mean.
        assert!(differ > 0);
    }

    #[test]
    fn static_types_are_known_without_sdp() {
        let m = pt_map(None, None, "10.0.0.1:4000".parse().unwrap());
        assert_eq!(m[&18], (CodecKind::G729, 8000));
        assert_eq!(m[&3], (CodecKind::Gsm, 8000));
        assert_eq!(m[&6], (CodecKind::Dvi4 { rate: 16_000 }, 16_000));
        assert!(!m.contains_key(&96));
    }

    #[test]
    fn reasons() {
        assert_eq!(undecodable_reason(CodecKind::Gsm, 3, true), None);
        assert_eq!(
            undecodable_reason(CodecKind::Unsupported, 97, true).as_deref(),
            Some("codec not supported")
        );
        assert!(
            undecodable_reason(CodecKind::Pcmu, 96, false)
                .unwrap()
                .contains("payload type 96")
        );
    }
}
