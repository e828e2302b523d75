//! One m= line as a SIP message announced it: 88 bytes of every open
//! call's two or more (184 before its texts and rare parts were packed
//! below).

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
    /// Its media kind, transport and announcing message ([`Self::kind`]...):
    /// each an index into [`INTERNED`], or [`OWNED`] when it is not a usual
    /// value (then in `extra`). 3 bytes: an enum of the codes or a box took
    /// 16, and with it an m= line 104 bytes, two of them a 224-byte chunk
    /// of glibc's where 88 bytes make two 192.
    texts: [u8; 3],
    /// Its fmtp and crypto lines and unusual texts, which most calls do not
    /// have.
    extra: Option<Box<Extra>>,
}

/// A code of [`MediaInfo::texts`]: the text is in [`Extra::texts`].
const OWNED: u8 = u8::MAX;

#[derive(Clone, Debug, Default)]
struct Extra {
    fmtp: Box<[(u8, String)]>,
    crypto: Box<[Crypto]>,
    /// The texts coded [`OWNED`] (the others empty).
    texts: [Box<str>; 3],
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

/// The codes of `texts` (see [`MediaInfo::texts`]) and the texts that
/// are not usual values (empty where they are).
fn intern(texts: [&str; 3]) -> ([u8; 3], [Box<str>; 3]) {
    let code = |s: &str| {
        INTERNED
            .iter()
            .position(|&k| k == s)
            .and_then(|i| u8::try_from(i).ok())
            .filter(|&c| c != OWNED)
    };
    let codes = texts.map(|s| code(s).unwrap_or(OWNED));
    let mut owned: [Box<str>; 3] = Default::default();
    for ((o, c), s) in owned.iter_mut().zip(codes).zip(texts) {
        if c == OWNED {
            *o = s.into();
        }
    }
    (codes, owned)
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
        let (texts, owned) = intern([&m.media, &m.proto, by]);
        let unusual = texts.contains(&OWNED);
        let extra = (!m.fmtp.is_empty() || !m.crypto.is_empty() || unusual).then(|| {
            Box::new(Extra {
                fmtp: m.fmtp.as_slice().into(),
                crypto: m.crypto.as_slice().into(),
                texts: owned,
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
            texts,
            extra,
        }
    }

    /// Text `i` of [`Self::texts`].
    fn text(&self, i: usize) -> &str {
        match self.texts.get(i).copied() {
            Some(OWNED) => self
                .extra
                .as_ref()
                .and_then(|e| e.texts.get(i))
                .map_or("", |t| t),
            Some(c) => INTERNED.get(usize::from(c)).copied().unwrap_or(""),
            None => "",
        }
    }

    /// The media kind: "audio", "image"...
    pub fn kind(&self) -> &str {
        self.text(0)
    }

    /// The transport: "RTP/AVP", "udptl"...
    pub fn proto(&self) -> &str {
        self.text(1)
    }

    /// "INVITE", "200 INVITE", "UPDATE"...: which message carried it.
    pub fn announced_by(&self) -> &str {
        self.text(2)
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
        let (codes, owned) = intern(["audio", "RTP/AVP", "200 INVITE"]);
        assert!(!codes.contains(&OWNED) && owned.iter().all(|t| t.is_empty()));
        let (codes, owned) = intern(["audio", "RTP/XYZ", "INFO"]);
        assert_eq!([codes[1], codes[2]], [OWNED, OWNED]);
        assert_eq!(&*owned[1], "RTP/XYZ");
        let sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                   m=audio 4000 RTP/AVP 0\r\nm=audio 4002 RTP/XYZ 0\r\n";
        let desc = sdp::parse(sdp.as_bytes()).unwrap();
        let src: SocketAddr = "10.0.0.1:5060".parse().unwrap();
        for (m, want) in desc.media.iter().zip([
            ["audio", "RTP/AVP", "200 INVITE"],
            ["audio", "RTP/XYZ", "INFO"],
        ]) {
            let i = MediaInfo::from_sdp(&desc, m, src, 1, want[2]);
            assert_eq!([i.kind(), i.proto(), i.announced_by()], want);
            // Only unusual texts take the extra box.
            assert_eq!(i.extra.is_some(), want[1] == "RTP/XYZ");
        }
        assert!(INTERNED.len() < usize::from(OWNED));
    }
}
