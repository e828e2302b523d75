//! Lenient SDP (RFC 8866 / 4566) parser for call setup tracking.
//!
//! Real SDP is often slightly broken (empty `c=IN IP4`, bracketed IPv6 in
//! `o=`, missing final CRLF, vendor lines). A strict parser would lose the
//! whole call over one bad line, so every line is parsed on its own and a
//! line that does not parse is skipped. Runs once per SIP body, so owned
//! values are fine here.

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
    pub encoding: String,
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
    pub fn is_srtp(&self) -> bool {
        self.proto.to_ascii_uppercase().contains("SAVP")
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

    for raw_line in body.split(|b| *b == b'\n') {
        let line = raw_line.strip_suffix(b"\r").unwrap_or(raw_line);
        let (kind, value) = match line {
            [k, b'=', rest @ ..] => (*k, String::from_utf8_lossy(rest)),
            _ => continue,
        };
        let value = value.trim();
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
    let a = attr.trim();
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
        Some((n, v)) => (n.trim(), v.trim()),
        None => (attr.trim(), ""),
    };
    let name = name.to_ascii_lowercase();
    match name.as_str() {
        "rtpmap" => {
            if let Some(r) = parse_rtpmap(value) {
                m.rtpmap.push(r);
            }
        }
        "fmtp" => {
            if let Some((pt, params)) = value.split_once(char::is_whitespace)
                && let Some(pt) = parse_pt(pt)
            {
                m.fmtp.push((pt, params.trim().to_string()));
            }
        }
        "crypto" => {
            if let Some(c) = parse_crypto(value) {
                m.crypto.push(c);
            }
        }
        "rtcp" => {
            let mut it = value.split_whitespace();
            if let Some(port) = it.next().and_then(|p| p.parse::<u16>().ok()) {
                let addr = it.nth(1).and_then(parse_ip);
                m.rtcp = Some((port, addr));
            }
        }
        "rtcp-mux" => m.rtcp_mux = true,
        "ptime" => {
            // Some endpoints write "20.0": the integer part is what matters.
            let int = value.split('.').next().unwrap_or("");
            if let Ok(p) = int.trim().parse::<u32>() {
                m.ptime = Some(p);
            }
        }
        _ => {}
    }
}

fn parse_pt(s: &str) -> Option<u8> {
    s.trim().parse::<u8>().ok().filter(|pt| *pt <= 127)
}

/// `<pt> <encoding>/<clock>[/<channels>]`.
fn parse_rtpmap(v: &str) -> Option<RtpMap> {
    let (pt, rest) = v.split_once(char::is_whitespace)?;
    let pt = parse_pt(pt)?;
    let mut parts = rest.trim().split('/');
    let encoding = parts.next()?.trim();
    if encoding.is_empty() {
        return None;
    }
    let clock_rate = parts.next()?.trim().parse::<u32>().ok()?;
    let channels = match parts.next() {
        Some(c) => c.trim().parse::<u8>().ok()?,
        None => 1,
    };
    Some(RtpMap {
        pt,
        encoding: encoding.to_string(),
        clock_rate,
        channels,
    })
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
