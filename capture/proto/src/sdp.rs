//! Lenient SDP (RFC 8866 / 4566) parser for call setup tracking.
//!
//! Real SDP is often slightly broken (empty `c=IN IP4`, bracketed IPv6 in
//! `o=`, missing final CRLF, vendor lines). A strict parser would lose the
//! whole call over one bad line, so every line is parsed on its own and a
//! line that does not parse is skipped. Runs once per SIP body, so owned
//! values are fine here.

use std::borrow::Cow;
use std::net::IpAddr;

/// Media direction attribute (RFC 8866 section 6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionDescription {
    /// Address from `o=` (hostnames and unparsable addresses give `None`).
    pub origin_addr: Option<IpAddr>,
    /// Session-level `c=`.
    pub connection: Option<IpAddr>,
    /// Session-level direction attribute.
    pub direction: Option<Direction>,
    pub media: Vec<MediaDescription>,
    pub session_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MediaDescription {
    /// "audio", "video", ...
    pub media: String,
    /// 0 = disabled stream.
    pub port: u16,
    /// From "m=audio 49170/2" (default 1).
    pub port_count: u16,
    /// "RTP/AVP", "RTP/SAVP", "UDP/TLS/RTP/SAVPF" ...
    pub proto: String,
    /// Payload types (non-numeric formats and values > 127 skipped).
    pub formats: Vec<u8>,
    /// Media-level `c=`.
    pub connection: Option<IpAddr>,
    /// Media-level direction attribute.
    pub direction: Option<Direction>,
    pub rtpmap: Vec<RtpMap>,
    pub fmtp: Vec<(u8, String)>,
    pub crypto: Vec<Crypto>,
    /// `a=rtcp:port [IN IP4 addr]` (RFC 3605).
    pub rtcp: Option<(u16, Option<IpAddr>)>,
    pub rtcp_mux: bool,
    pub ptime: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub pt: u8,
    /// Shared when it is a usual name ([`encoding_name`]): a call keeps its
    /// SDP's rtpmaps while open, and a separate allocation for "PCMU" or
    /// "telephone-event" in each was 32 bytes of heap apiece.
    pub encoding: Cow<'static, str>,
    pub clock_rate: u32,
    /// Default 1 when not given.
    pub channels: u8,
}

/// `a=crypto:<tag> <suite> <key-params> [<session-params>]` (RFC 4568).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crypto {
    pub tag: u32,
    pub suite: String,
    /// Each `inline:KEY|lifetime|MKI:len` key parameter (split on ';').
    pub key_params: Vec<String>,
    pub session_params: Vec<String>,
}

impl Crypto {
    /// Base64 key||salt of the first `inline:` key parameter.
    pub fn inline_key(&self) -> Option<&str> {
        self.key_params.iter().find_map(|k| {
            let v = k.strip_prefix("inline:")?;
            v.split('|').next()
        })
    }
}

#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum SdpError {
    /// Neither a `v=` nor an `m=` line: this is not SDP.
    #[error("not an SDP body (no v= and no m= line)")]
    NotSdp,
}

impl SessionDescription {
    /// Address media for `m` is sent to: media `c=`, else session `c=`, else
    /// the `o=` address (unless unspecified, which says nothing), else
    /// `fallback` (the packet's source address).
    pub fn media_addr(&self, m: &MediaDescription, fallback: IpAddr) -> IpAddr {
        m.connection
            .or(self.connection)
            .or(self.origin_addr.filter(|a| !a.is_unspecified()))
            .unwrap_or(fallback)
    }

    /// Media attribute, else session attribute, else sendrecv.
    pub fn media_direction(&self, m: &MediaDescription) -> Direction {
        m.direction.or(self.direction).unwrap_or_default()
    }
}

impl MediaDescription {
    pub fn rtpmap_for(&self, pt: u8) -> Option<&RtpMap> {
        self.rtpmap.iter().find(|r| r.pt == pt)
    }

    /// Whether the profile is SRTP (RTP/SAVP, RTP/SAVPF, UDP/TLS/RTP/SAVP[F]).
    /// Asked for each RTCP packet: compared in place, with no upper-case
    /// copy of the profile.
    pub fn is_srtp(&self) -> bool {
        self.proto
            .as_bytes()
            .windows(4)
            .any(|w| w.eq_ignore_ascii_case(b"SAVP"))
    }
}

/// Parses an SDP body leniently: unknown or broken lines are skipped; CRLF or
/// LF line ends; a last line without line end is kept. `Err` only when there
/// is no `v=` and no `m=` line at all.
pub fn parse(body: &[u8]) -> Result<SessionDescription, SdpError> {
    let mut sd = SessionDescription::default();
    let mut saw_v = false;
    let mut saw_m = false;
    // false after a broken m= line: its attributes must not land on the
    // previous media section.
    let mut in_valid_media = false;

    // Checked as UTF-8 once: each line is then a slice of it (a line that
    // is not valid text alone makes the whole body fail, and every line
    // is then checked, and converted, on its own).
    let text = std::str::from_utf8(body).ok();
    let mut at = 0usize;
    for raw_line in body.split(|b| *b == b'\n') {
        let start = at;
        at = at.saturating_add(raw_line.len() + 1);
        let line = raw_line.strip_suffix(b"\r").unwrap_or(raw_line);
        let (kind, rest) = match line {
            [k, b'=', rest @ ..] => (*k, rest),
            _ => continue,
        };
        let value = match text.and_then(|t| t.get(start + 2..start + 2 + rest.len())) {
            Some(v) => Cow::Borrowed(v),
            None => crate::utf8_lossy(rest),
        };
        let value = trim(&value);
        match kind {
            b'v' => saw_v = true,
            b'o' if !saw_m => sd.origin_addr = parse_origin(value),
            b's' if !saw_m && sd.session_name.is_none() => {
                sd.session_name = Some(value.to_string());
            }
            b'c' => {
                // A broken c= leaves the connection unknown (None) rather
                // than failing, and never clears an earlier valid one.
                if let Some(addr) = parse_connection(value) {
                    if !saw_m {
                        sd.connection.get_or_insert(addr);
                    } else if in_valid_media && let Some(m) = sd.media.last_mut() {
                        m.connection.get_or_insert(addr);
                    }
                }
            }
            b'm' => {
                saw_m = true;
                match parse_media_line(value) {
                    Some(m) => {
                        sd.media.push(m);
                        in_valid_media = true;
                    }
                    None => in_valid_media = false,
                }
            }
            b'a' => {
                if !saw_m {
                    if let Some(d) = parse_direction(value) {
                        sd.direction = Some(d);
                    }
                } else if in_valid_media && let Some(m) = sd.media.last_mut() {
                    apply_media_attr(m, value);
                }
            }
            _ => {}
        }
    }
    if !saw_v && !saw_m {
        return Err(SdpError::NotSdp);
    }
    Ok(sd)
}

/// `o=<user> <sess-id> <sess-version> <nettype> <addrtype> <addr>`.
fn parse_origin(v: &str) -> Option<IpAddr> {
    let addr = v.split_whitespace().nth(5)?;
    parse_ip(addr)
}

/// `c=<nettype> <addrtype> <addr>[/ttl][/count]`.
fn parse_connection(v: &str) -> Option<IpAddr> {
    let mut it = v.split_whitespace();
    let _nettype = it.next()?;
    let _addrtype = it.next()?;
    let addr = it.next()?;
    parse_ip(addr)
}

/// An IP literal, tolerating IPv6 in brackets (seen in `o=` from SIPp) and
/// the `/ttl` / `/count` multicast suffixes.
fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.split('/').next()?;
    let s = s
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(s);
    s.parse().ok()
}

/// `m=<media> <port>[/<count>] <proto> <fmt> ...`.
fn parse_media_line(v: &str) -> Option<MediaDescription> {
    let mut it = v.split_whitespace();
    let media = it.next()?.to_string();
    let port_field = it.next()?;
    let (port, port_count) = match port_field.split_once('/') {
        Some((p, n)) => (p.parse::<u16>().ok()?, n.parse::<u16>().unwrap_or(1)),
        None => (port_field.parse::<u16>().ok()?, 1),
    };
    let proto = it.next()?.to_string();
    let formats = it
        .filter_map(|f| f.parse::<u8>().ok())
        .filter(|pt| *pt <= 127)
        .collect();
    Some(MediaDescription {
        media,
        port,
        port_count,
        proto,
        formats,
        ..MediaDescription::default()
    })
}

fn parse_direction(attr: &str) -> Option<Direction> {
    let a = trim(attr);
    if a.eq_ignore_ascii_case("sendrecv") {
        Some(Direction::SendRecv)
    } else if a.eq_ignore_ascii_case("sendonly") {
        Some(Direction::SendOnly)
    } else if a.eq_ignore_ascii_case("recvonly") {
        Some(Direction::RecvOnly)
    } else if a.eq_ignore_ascii_case("inactive") {
        Some(Direction::Inactive)
    } else {
        None
    }
}

fn apply_media_attr(m: &mut MediaDescription, attr: &str) {
    if let Some(d) = parse_direction(attr) {
        m.direction = Some(d);
        return;
    }
    let (name, value) = match attr.split_once(':') {
        Some((n, v)) => (trim(n), trim(v)),
        None => (trim(attr), ""),
    };
    let mut lower = [0u8; 8];
    match lower_name(name, &mut lower).unwrap_or_default() {
        b"rtpmap" => {
            if let Some(r) = parse_rtpmap(value) {
                m.rtpmap.push(r);
            }
        }
        b"fmtp" => {
            if let Some((pt, params)) = value.split_once(char::is_whitespace)
                && let Some(pt) = parse_pt(pt)
            {
                m.fmtp.push((pt, trim(params).to_string()));
            }
        }
        b"crypto" => {
            if let Some(c) = parse_crypto(value) {
                m.crypto.push(c);
            }
        }
        b"rtcp" => {
            let mut it = value.split_whitespace();
            if let Some(port) = it.next().and_then(|p| p.parse::<u16>().ok()) {
                // "<port> IN IP4 <addr>": the address is the third token after the port.
                let addr = it.nth(2).and_then(parse_ip);
                m.rtcp = Some((port, addr));
            }
        }
        b"rtcp-mux" => m.rtcp_mux = true,
        b"ptime" => {
            // Some endpoints write "20.0": the integer part is what matters.
            let int = value.split('.').next().unwrap_or("");
            if let Ok(p) = trim(int).parse::<u32>() {
                m.ptime = Some(p);
            }
        }
        _ => {}
    }
}

/// `str::trim`'s answer, found cheaply for the usual text: ASCII
/// whitespace cut a byte at a time, and Unicode's rule applied only when
/// what is left starts or ends with a byte it might still cut (a vertical
/// tab, or a byte of a multi-byte character).
fn trim(s: &str) -> &str {
    let t = s.trim_ascii();
    let plain = |b: u8| b < 0x80 && b != 0x0b;
    match (t.as_bytes().first(), t.as_bytes().last()) {
        (Some(&first), Some(&last)) if !(plain(first) && plain(last)) => t.trim(),
        _ => t,
    }
}

/// `name` in lower case, written into `buf` rather than a heap copy; None
/// when it is longer than any attribute name acted on (8 bytes).
fn lower_name<'b>(name: &str, buf: &'b mut [u8; 8]) -> Option<&'b [u8]> {
    let out = buf.get_mut(..name.len())?;
    out.copy_from_slice(name.as_bytes());
    out.make_ascii_lowercase();
    Some(out)
}

fn parse_pt(s: &str) -> Option<u8> {
    trim(s).parse::<u8>().ok().filter(|pt| *pt <= 127)
}

/// `<pt> <encoding>/<clock>[/<channels>]`.
fn parse_rtpmap(v: &str) -> Option<RtpMap> {
    let (pt, rest) = v.split_once(char::is_whitespace)?;
    let pt = parse_pt(pt)?;
    let mut parts = trim(rest).split('/');
    let encoding = trim(parts.next()?);
    if encoding.is_empty() {
        return None;
    }
    let clock_rate = trim(parts.next()?).parse::<u32>().ok()?;
    let channels = match parts.next() {
        Some(c) => trim(c).parse::<u8>().ok()?,
        None => 1,
    };
    Some(RtpMap {
        pt,
        encoding: encoding_name(encoding),
        clock_rate,
        channels,
    })
}

/// Encoding names most SDP offers carry (RFC 3551, 4733, 7587, 4867...),
/// as they are usually written.
const ENCODINGS: &[&str] = &[
    "PCMU",
    "PCMA",
    "G722",
    "G729",
    "G723",
    "GSM",
    "iLBC",
    "speex",
    "opus",
    "AMR",
    "AMR-WB",
    "EVS",
    "G726-32",
    "CN",
    "telephone-event",
    "red",
    "H264",
    "VP8",
    "t38",
];

/// `name` as a shared static when it is one of [`ENCODINGS`] (exactly, so
/// the case written is kept), else owned.
pub fn encoding_name(name: &str) -> Cow<'static, str> {
    match ENCODINGS.iter().find(|&&k| k == name) {
        Some(&k) => Cow::Borrowed(k),
        None => Cow::Owned(name.to_string()),
    }
}

/// `<tag> <suite> <key-params> [<session-params>...]`.
fn parse_crypto(v: &str) -> Option<Crypto> {
    let mut it = v.split_whitespace();
    let tag = it.next()?.parse::<u32>().ok()?;
    let suite = it.next()?.to_string();
    let key_params: Vec<String> = it
        .next()?
        .split(';')
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect();
    if key_params.is_empty() {
        return None;
    }
    let session_params = it.map(str::to_string).collect();
    Some(Crypto {
        tag,
        suite,
        key_params,
        session_params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }
    const FALLBACK: IpAddr = IpAddr::V4(Ipv4Addr::new(9, 9, 9, 9));

    /// SDP body of a SIP message fixture.
    fn fixture_sdp(sip: &[u8]) -> SessionDescription {
        let m = crate::sip::parse(sip).unwrap();
        parse(m.sdp().unwrap()).unwrap()
    }

    /// SRTP profiles in any case; plain RTP and short or empty profiles not.
    #[test]
    fn srtp_profiles_in_any_case() {
        let srtp = |proto: &str| {
            MediaDescription {
                proto: proto.to_string(),
                ..MediaDescription::default()
            }
            .is_srtp()
        };
        for p in ["RTP/SAVP", "rtp/savpf", "UDP/TLS/RTP/SAVPF", "RTP/sAvP"] {
            assert!(srtp(p), "{p}");
        }
        for p in ["RTP/AVP", "RTP/AVPF", "SAV", "", "udptl"] {
            assert!(!srtp(p), "{p}");
        }
    }

    /// `trim` gives `str::trim`'s answer: ASCII and Unicode whitespace
    /// (the vertical tab and U+0085 are not ASCII whitespace to
    /// `trim_ascii`), around text of one byte, of none, and multi-byte.
    #[test]
    fn trim_is_strs_trim() {
        let spaces = [
            "", " ", "\t", "\r", "\n", "\x0b", "\x0c", "\u{85}", "\u{a0}", "\u{2003}", "\u{3000}",
            " \x0b ", "\u{a0} ",
        ];
        let cores = ["", "a", "PCMU/8000", "é", "\u{a0}x\u{a0}", "a b", "\x0bx"];
        for l in spaces {
            for c in cores {
                for r in spaces {
                    let s = format!("{l}{c}{r}");
                    assert_eq!(trim(&s), s.trim(), "{s:?}");
                }
            }
        }
    }

    /// Attribute names in any case, with their values read as before; one
    /// line that is not UTF-8 leaves the others read from the body's text;
    /// a longer name (of 10 bytes, and past the 8 a name is lowered in)
    /// is not taken for a shorter one.
    #[test]
    fn attribute_names_in_any_case_and_a_line_not_utf8() {
        let sd = parse(
            b"v=0\r\ns=caf\xe9\r\nc=IN IP4 10.0.0.2\r\nm=audio 4000 RTP/AVP 0 8\r\n\
a=RtpMap:8 PCMA/8000\r\na=PTIME:30\r\na=rtcp-MUX\r\na=FMTP:8 x=1\r\n\
m=audio 4002 RTP/AVP 0\r\na=rtcp-mux-x\r\na=RTCP-MUXES\r\n",
        )
        .unwrap();
        assert_eq!(sd.session_name.as_deref(), Some("caf\u{fffd}"));
        assert_eq!(sd.connection, Some(v4(10, 0, 0, 2)));
        let m = &sd.media[0];
        assert_eq!(m.rtpmap_for(8).map(|r| r.clock_rate), Some(8000));
        assert_eq!(m.ptime, Some(30));
        assert!(m.rtcp_mux);
        assert_eq!(m.fmtp, vec![(8, "x=1".to_string())]);
        // Longer names that start like one acted on are none of them.
        assert!(!sd.media[1].rtcp_mux);
    }

    #[test]
    fn session_and_media_level_connection() {
        let sd = parse(
            b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=call\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0\r\nc=IN IP4 10.0.0.3/127\r\n\
m=audio 4002 RTP/AVP 8\r\n",
        )
        .unwrap();
        assert_eq!(sd.session_name.as_deref(), Some("call"));
        assert_eq!(sd.origin_addr, Some(v4(10, 0, 0, 1)));
        assert_eq!(sd.connection, Some(v4(10, 0, 0, 2)));
        assert_eq!(sd.media.len(), 2);
        assert_eq!(sd.media[0].connection, Some(v4(10, 0, 0, 3)));
        assert_eq!(sd.media_addr(&sd.media[0], FALLBACK), v4(10, 0, 0, 3));
        assert_eq!(sd.media_addr(&sd.media[1], FALLBACK), v4(10, 0, 0, 2));
    }

    #[test]
    fn missing_or_broken_c_falls_back_to_origin_then_source() {
        let sd = parse(b"v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\nm=audio 5000 RTP/AVP 0\r\n").unwrap();
        assert_eq!(sd.connection, None);
        assert_eq!(sd.media_addr(&sd.media[0], FALLBACK), v4(192, 0, 2, 7));
        for broken in [
            &b"c=IN IP4\r\n"[..],
            b"c=IN IP4 999.1.1.1\r\n",
            b"c=IN IP4 \r\n",
            b"c=\r\n",
        ] {
            let mut body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\n".to_vec();
            body.extend_from_slice(broken);
            body.extend_from_slice(b"m=audio 5000 RTP/AVP 0\r\n");
            body.extend_from_slice(broken);
            let sd = parse(&body).unwrap();
            assert_eq!(sd.connection, None);
            assert_eq!(sd.media[0].connection, None);
            assert_eq!(sd.media_addr(&sd.media[0], FALLBACK), v4(192, 0, 2, 7));
        }
        // No usable address anywhere (hostname o=, 0.0.0.0 o=): the packet source.
        let sd =
            parse(b"v=0\r\no=- 1 1 IN IP4 host.example\r\nm=audio 5000 RTP/AVP 0\r\n").unwrap();
        assert_eq!(sd.media_addr(&sd.media[0], FALLBACK), FALLBACK);
        let sd = parse(b"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nm=audio 5000 RTP/AVP 0\r\n").unwrap();
        assert_eq!(sd.media_addr(&sd.media[0], FALLBACK), FALLBACK);
    }

    #[test]
    fn ipv6_connection_and_bracketed_origin() {
        let sd = parse(
            b"v=0\no=u 1 2 IN IP6 [fd00::1]\nc=IN IP6 fd00::2\nm=audio 6000 RTP/AVP 0\nc=IN IP6 2001:db8::5\n",
        )
        .unwrap();
        assert_eq!(
            sd.origin_addr,
            Some("fd00::1".parse::<Ipv6Addr>().unwrap().into())
        );
        assert_eq!(
            sd.connection,
            Some("fd00::2".parse::<Ipv6Addr>().unwrap().into())
        );
        assert_eq!(
            sd.media_addr(&sd.media[0], FALLBACK),
            "2001:db8::5".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn m_line_port_zero_port_count_and_formats() {
        let sd = parse(
            b"v=0\r\nm=audio 49170/2 RTP/AVP 0 8 97 abc 300\r\nm=video 0 RTP/AVP 31\r\nm=application 5000 UDP/DTLS/SCTP webrtc-datachannel\r\nm=broken\r\na=rtpmap:0 PCMU/8000\r\n",
        )
        .unwrap();
        assert_eq!(sd.media.len(), 3);
        let a = &sd.media[0];
        assert_eq!(
            (a.media.as_str(), a.port, a.port_count),
            ("audio", 49170, 2)
        );
        assert_eq!(a.proto, "RTP/AVP");
        assert_eq!(a.formats, vec![0, 8, 97]);
        assert_eq!((sd.media[1].port, sd.media[1].port_count), (0, 1));
        assert!(sd.media[2].formats.is_empty());
        // The attribute after the broken m= line went nowhere.
        assert!(sd.media.iter().all(|m| m.rtpmap.is_empty()));
    }

    #[test]
    fn direction_at_both_levels() {
        let sd = parse(
            b"v=0\r\na=sendonly\r\nm=audio 1 RTP/AVP 0\r\nm=audio 2 RTP/AVP 0\r\na=recvonly\r\nm=audio 3 RTP/AVP 0\r\na=inactive\r\nm=audio 4 RTP/AVP 0\r\na=sendrecv\r\n",
        )
        .unwrap();
        assert_eq!(sd.direction, Some(Direction::SendOnly));
        let dirs: Vec<Direction> = sd.media.iter().map(|m| sd.media_direction(m)).collect();
        assert_eq!(
            dirs,
            [
                Direction::SendOnly,
                Direction::RecvOnly,
                Direction::Inactive,
                Direction::SendRecv
            ]
        );
        let sd = parse(b"v=0\r\nm=audio 1 RTP/AVP 0\r\n").unwrap();
        assert_eq!(sd.media_direction(&sd.media[0]), Direction::SendRecv);
        assert_eq!(sd.media[0].direction, None);
    }

    #[test]
    fn rtpmap_fmtp_ptime_rtcp() {
        let sd = parse(
            b"v=0\r\nm=audio 5004 RTP/AVP 0 96 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\na=rtpmap:bad x/y\r\na=fmtp:101 0-15\r\na=fmtp:96 stereo=1; sprop-stereo=1\r\na=ptime:20\r\na=rtcp:5005\r\na=rtcp-mux\r\nm=audio 6000 RTP/AVP 0\r\na=rtcp:6001 IN IP4 10.1.1.1\r\na=ptime:30.0",
        )
        .unwrap();
        let a = &sd.media[0];
        assert_eq!(a.rtpmap.len(), 3);
        assert_eq!(
            a.rtpmap_for(96),
            Some(&RtpMap {
                pt: 96,
                encoding: "opus".into(),
                clock_rate: 48000,
                channels: 2
            })
        );
        assert_eq!(a.rtpmap_for(0).unwrap().channels, 1);
        assert_eq!(a.rtpmap_for(8), None);
        assert_eq!(
            a.fmtp,
            vec![
                (101, "0-15".to_string()),
                (96, "stereo=1; sprop-stereo=1".to_string())
            ]
        );
        assert_eq!(a.ptime, Some(20));
        assert_eq!(a.rtcp, Some((5005, None)));
        assert!(a.rtcp_mux);
        let b = &sd.media[1];
        assert_eq!(b.rtcp, Some((6001, Some(v4(10, 1, 1, 1)))));
        assert!(!b.rtcp_mux);
        // Last line without a line end is kept.
        assert_eq!(b.ptime, Some(30));
    }

    /// Usual encoding names are shared statics, others owned; the name
    /// reads as written either way (case kept).
    #[test]
    fn usual_encoding_names_are_shared() {
        let sd = parse(
            b"v=0\r\nm=audio 5004 RTP/AVP 0 101 96 97\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=rtpmap:96 pcmu/8000\r\na=rtpmap:97 X-Vendor/16000/2\r\n",
        )
        .unwrap();
        let got: Vec<(u8, &str, bool, u32, u8)> = sd.media[0]
            .rtpmap
            .iter()
            .map(|r| {
                let shared = matches!(r.encoding, Cow::Borrowed(_));
                (r.pt, &*r.encoding, shared, r.clock_rate, r.channels)
            })
            .collect();
        assert_eq!(
            got,
            [
                (0, "PCMU", true, 8000, 1),
                (101, "telephone-event", true, 8000, 1),
                (96, "pcmu", false, 8000, 1),
                (97, "X-Vendor", false, 16000, 2),
            ]
        );
    }

    #[test]
    fn crypto_with_mki_and_lifetime() {
        let sd = parse(
            b"v=0\r\nm=audio 5004 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4\r\na=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:KEY1|2^20|1:4;inline:KEY2|2^20|2:4 KDR=1 UNENCRYPTED_SRTCP\r\na=crypto:x broken\r\n",
        )
        .unwrap();
        let m = &sd.media[0];
        assert!(m.is_srtp());
        assert_eq!(m.crypto.len(), 2);
        assert_eq!(m.crypto[0].tag, 1);
        assert_eq!(m.crypto[0].suite, "AES_CM_128_HMAC_SHA1_80");
        assert_eq!(
            m.crypto[0].key_params,
            vec!["inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4".to_string()]
        );
        assert_eq!(
            m.crypto[0].inline_key(),
            Some("PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR")
        );
        assert!(m.crypto[0].session_params.is_empty());
        assert_eq!(m.crypto[1].key_params.len(), 2);
        assert_eq!(
            m.crypto[1].session_params,
            vec!["KDR=1".to_string(), "UNENCRYPTED_SRTCP".to_string()]
        );
    }

    #[test]
    fn not_sdp_is_an_error_but_partial_sdp_is_not() {
        assert_eq!(parse(b""), Err(SdpError::NotSdp));
        assert_eq!(parse(b"hello world\r\n"), Err(SdpError::NotSdp));
        assert_eq!(parse(&[0xff, 0xfe, b'\n', b'=']), Err(SdpError::NotSdp));
        let sd = parse(b"m=audio 1 RTP/AVP 0").unwrap();
        assert_eq!(sd.media.len(), 1);
        let sd = parse(b"v=0").unwrap();
        assert!(sd.media.is_empty());
    }

    #[test]
    fn baresip_srtp_offer_and_answer() {
        let sd = fixture_sdp(include_bytes!("sip/testdata/baresip_1.sip"));
        assert_eq!(sd.origin_addr, Some(v4(127, 0, 0, 1)));
        assert_eq!(sd.connection, Some(v4(127, 0, 0, 1)));
        let m = &sd.media[0];
        assert_eq!((m.port, m.proto.as_str()), (20090, "RTP/SAVP"));
        assert_eq!(m.formats, vec![0, 101]);
        assert!(m.is_srtp());
        assert_eq!(m.rtpmap_for(101).unwrap().encoding, "telephone-event");
        assert_eq!(
            m.crypto[0].inline_key(),
            Some("WWaGzdA0EF8TuIroqK0ra6R3FJKG1tJDgRnEBm15")
        );
        assert_eq!(m.ptime, Some(20));
        assert_eq!(sd.media_direction(m), Direction::SendRecv);
        let ans = fixture_sdp(include_bytes!("sip/testdata/baresip_5.sip"));
        assert_eq!(ans.media.len(), 1);
        assert_eq!(ans.media[0].crypto.len(), 1);
    }

    #[test]
    fn volte_amr_offer_from_ipv6frag() {
        let sd = fixture_sdp(include_bytes!("sip/testdata/v6_2.sip"));
        let v6: IpAddr = "fd17:625c:f037:2:a00:27ff:feb9:1521".parse().unwrap();
        assert_eq!(sd.origin_addr, Some(v6));
        assert_eq!(sd.connection, Some(v6));
        assert_eq!(sd.session_name.as_deref(), Some("-"));
        let m = &sd.media[0];
        assert_eq!((m.port, m.proto.as_str()), (15062, "RTP/AVP"));
        assert_eq!(m.formats, vec![100, 101, 0, 120, 121]);
        assert!(!m.is_srtp());
        assert_eq!(
            m.rtpmap_for(100),
            Some(&RtpMap {
                pt: 100,
                encoding: "AMR-WB".into(),
                clock_rate: 16000,
                channels: 1
            })
        );
        assert_eq!(m.rtpmap_for(110).unwrap().encoding, "AMR");
        assert_eq!(m.rtpmap_for(110).unwrap().clock_rate, 8000);
        assert_eq!(m.rtpmap_for(121).unwrap().encoding, "telephone-event");
        assert_eq!(m.fmtp.len(), 4);
        assert_eq!(
            m.fmtp[0],
            (100, "mode-set=\"0,1,2\";octet-align=0".to_string())
        );
        assert_eq!(sd.media_addr(m, FALLBACK), v6);
        // The UPDATE answer-side offer (precondition attributes are skipped).
        let up = fixture_sdp(include_bytes!("sip/testdata/v6_12.sip"));
        assert_eq!(up.media[0].formats, vec![100, 121]);
        assert_eq!(up.media[0].direction, None);
    }

    #[test]
    fn never_panics_on_fixture_prefixes() {
        let m = crate::sip::parse(include_bytes!("sip/testdata/v6_2.sip")).unwrap();
        let body = m.sdp().unwrap();
        for cut in 0..body.len() {
            let _ = parse(&body[..cut]);
            let _ = parse(&body[cut..]);
        }
    }
}
