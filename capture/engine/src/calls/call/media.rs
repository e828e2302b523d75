//! One m= line as a SIP message announced it: about 100 bytes of every
//! open call's two or more (184 before its texts and rare parts were
//! packed below).

use std::borrow::Cow;
use std::net::SocketAddr;

use crate::calls::Endpoint;
use voxtap_proto::sdp::{self, Crypto, Direction, RtpMap};

/// One m= line as a SIP message announced it.
#[derive(Clone, Debug)]
pub struct MediaInfo {
    /// Where this side wants to receive RTP.
    pub rtp: Endpoint,
    /// Where it wants to receive RTCP (a=rtcp, or RTP port + 1).
    pub rtcp: Endpoint,
    pub rtcp_mux: bool,
    pub direction: Direction,
    /// True when the SDP said port 0 (stream refused or removed).
    pub disabled: bool,
    /// A boxed slice (16 bytes, not a Vec's 24): set once per SDP.
    pub rtpmap: Box<[RtpMap]>,
    pub ptime: Option<u32>,
    /// Capture time of the SIP message that carried it.
    pub announced_ns: u64,
    /// Its media kind, transport and announcing message ([`Self::kind`]...).
    texts: Texts,
    /// Its fmtp and crypto lines, which most calls do not have.
    extra: Option<Box<Extra>>,
}

/// A media line's kind, transport and announcing message: three indexes
/// into [`INTERNED`] when all three are usual values (16 bytes in all
/// rather than three `Cow`s' 72), else owned.
#[derive(Clone, Debug)]
enum Texts {
    Usual([u8; 3]),
    Owned(Box<[Cow<'static, str>; 3]>),
}

#[derive(Clone, Debug, Default)]
struct Extra {
    fmtp: Box<[(u8, String)]>,
    crypto: Box<[Crypto]>,
}

/// The usual media kinds, transports and announcing messages, shared by
/// every call that names them instead of allocated per media line.
const INTERNED: &[&str] = &[
    "audio",
    "video",
    "image",
    "application",
    "text",
    "message",
    "RTP/AVP",
    "RTP/SAVP",
    "RTP/AVPF",
    "RTP/SAVPF",
    "UDP/TLS/RTP/SAVP",
    "UDP/TLS/RTP/SAVPF",
    "udptl",
    "UDPTL",
    "INVITE",
    "UPDATE",
    "ACK",
    "PRACK",
    "180 INVITE",
    "183 INVITE",
    "200 INVITE",
    "200 UPDATE",
    "200 PRACK",
];

impl Texts {
    fn new(texts: [&str; 3]) -> Self {
        let code = |s: &str| INTERNED.iter().position(|&k| k == s);
        match texts.map(code) {
            [Some(a), Some(b), Some(c)] => Texts::Usual([a, b, c].map(|i| i as u8)),
            _ => Texts::Owned(Box::new(texts.map(|s| match code(s) {
                Some(i) => Cow::Borrowed(INTERNED[i]),
                None => Cow::Owned(s.to_string()),
            }))),
        }
    }

    fn get(&self, i: usize) -> &str {
        match self {
            Texts::Usual(codes) => codes
                .get(i)
                .and_then(|&c| INTERNED.get(usize::from(c)))
                .copied()
                .unwrap_or(""),
            Texts::Owned(t) => t.get(i).map_or("", |s| s),
        }
    }
}

impl MediaInfo {
    /// One m= line of an SDP from `src` at `ts_ns`, carried by `by`: where
    /// that side receives RTP and RTCP.
    pub(in crate::calls) fn from_sdp(
        desc: &sdp::SessionDescription,
        m: &sdp::MediaDescription,
        src: SocketAddr,
        ts_ns: u64,
        by: &str,
    ) -> MediaInfo {
        let ip = desc.media_addr(m, src.ip());
        let rtp = SocketAddr::new(ip, m.port);
        let rtcp = match m.rtcp {
            Some((port, addr)) => SocketAddr::new(addr.unwrap_or(ip), port),
            None if m.rtcp_mux => rtp,
            None => SocketAddr::new(ip, m.port.wrapping_add(1)),
        };
        let extra = (!m.fmtp.is_empty() || !m.crypto.is_empty()).then(|| {
            Box::new(Extra {
                fmtp: m.fmtp.as_slice().into(),
                crypto: m.crypto.as_slice().into(),
            })
        });
        MediaInfo {
            rtp: rtp.into(),
            rtcp: rtcp.into(),
            rtcp_mux: m.rtcp_mux,
            direction: desc.media_direction(m),
            disabled: m.port == 0 || ip.is_unspecified(),
            rtpmap: m.rtpmap.as_slice().into(),
            ptime: m.ptime,
            announced_ns: ts_ns,
            texts: Texts::new([&m.media, &m.proto, by]),
            extra,
        }
    }

    /// The media kind: "audio", "image"...
    pub fn kind(&self) -> &str {
        self.texts.get(0)
    }

    /// The transport: "RTP/AVP", "udptl"...
    pub fn proto(&self) -> &str {
        self.texts.get(1)
    }

    /// "INVITE", "200 INVITE", "UPDATE"...: which message carried it.
    pub fn announced_by(&self) -> &str {
        self.texts.get(2)
    }

    /// `a=fmtp` parameters by payload type (Opus stereo, AMR packing...).
    pub fn fmtp(&self) -> &[(u8, String)] {
        self.extra.as_ref().map_or(&[], |e| &e.fmtp)
    }

    pub fn crypto(&self) -> &[Crypto] {
        self.extra.as_ref().map_or(&[], |e| &e.crypto)
    }

    /// SRTP (RTP/SAVP, RTP/SAVPF): its RTCP is encrypted too.
    pub fn is_srtp(&self) -> bool {
        self.proto().contains("SAVP")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Usual texts take no allocation, unusual ones are kept as they
    /// were, and every text reads back as given.
    #[test]
    fn texts_read_back_as_given() {
        let usual = Texts::new(["audio", "RTP/AVP", "200 INVITE"]);
        assert!(matches!(usual, Texts::Usual(_)));
        let odd = Texts::new(["audio", "RTP/XYZ", "INFO"]);
        assert!(matches!(odd, Texts::Owned(_)));
        for (t, want) in [
            (usual, ["audio", "RTP/AVP", "200 INVITE"]),
            (odd, ["audio", "RTP/XYZ", "INFO"]),
        ] {
            assert_eq!([t.get(0), t.get(1), t.get(2)], want);
        }
        assert!(INTERNED.len() <= usize::from(u8::MAX));
    }
}
