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
    for pt in STATIC_AUDIO {
        let clock = voxtap_proto::rtp::static_codec(pt).map_or(8000, |c| c.clock_rate);
        map.insert(pt, (CodecKind::from_static_pt(pt), clock));
    }
    let Some(call) = call else { return map };
    let mut media: Vec<(usize, &MediaInfo)> = call.media().iter().enumerate().collect();
    media.sort_by_key(|(i, m)| (Some(*i) == media_idx, m.rtp == dst, m.announced_ns));
    for (_, m) in media {
        for r in &m.rtpmap {
            let fmtp = m
                .fmtp
                .iter()
                .find(|(pt, _)| *pt == r.pt)
                .map(|(_, f)| f.as_str());
            let kind = CodecKind::from_rtpmap(&r.encoding, r.clock_rate, r.channels, fmtp);
            map.insert(r.pt, (kind, r.clock_rate.max(1)));
        }
    }
    map
}

/// The payload type a stream is named and rated by: the first one seen
/// (`pts` in first-seen order) that is not comfort noise or RFC 4733
/// events; else the first. A payload type `map` does not know counts.
pub fn rated_payload_type(pts: impl IntoIterator<Item = u8>, map: &PtMap) -> Option<u8> {
    let mut first = None;
    for pt in pts {
        first.get_or_insert(pt);
        let side = map
            .get(&pt)
            .is_some_and(|(k, _)| matches!(k, CodecKind::Cn | CodecKind::TelephoneEvent));
        if !side {
            return Some(pt);
        }
    }
    first
}

/// [`pt_map`] for a stream of the call table.
pub fn stream_pt_map(call: &Call, s: &Stream) -> PtMap {
    pt_map(Some(call), s.media_idx(), s.key.dst)
}

/// The codec a call-table stream is rated by (what streams.csv and the
/// index say): its rated payload type and that payload type's codec.
pub fn stream_codec(call: &Call, s: &Stream, payload_types: &[u8]) -> (u8, CodecKind) {
    let map = stream_pt_map(call, s);
    let pt = rated_payload_type(payload_types.iter().copied(), &map).unwrap_or(0);
    let kind = map.get(&pt).map_or(CodecKind::Unsupported, |v| v.0);
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
