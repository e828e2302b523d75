//! The hub tunnel's wire contract, shared by the sensor (`tunnel`) and the
//! hub (voxtap-web): the sensor's login, the hub's signed requests and the
//! frames of the answers.
//!
//! * Login: the sensor opens `GET /central/tunnel` (WebSocket) with
//!   `X-Voxtap-Sensor`, `X-Voxtap-Time` (unix seconds) and `X-Voxtap-Auth` =
//!   HMAC-SHA256(secret, "tunnel\n<sensor>\n<time>"), within
//!   [`MAX_SKEW`] of the hub's clock.
//! * Request (hub → sensor, a text frame): a [`FileRequest`] naming the
//!   user, the call (Call-ID and start) and the file, with an expiry, signed
//!   with the same per-sensor secret. The sensor checks the signature and
//!   the expiry, logs the request, and answers only with files of calls in
//!   its index.
//! * Answer (sensor → hub, binary frames): 8 bytes request id (big endian),
//!   one byte [`Frame`] kind, then the payload (file bytes, or the error's
//!   message).
//! * Live calls (sensor → hub, a text frame, once per [`LIVE_EVERY`]): a
//!   [`LivePush`], the sensor's latest live calls snapshot capped by its
//!   [`LiveCaps`] (default [`LIVE_MAX_CALLS`] open calls and
//!   [`LIVE_MAX_BYTES`]; the hub caps again by its own: it trusts a
//!   logged-in sensor, not its sizes).

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub const PATH: &str = "/central/tunnel";
pub const H_SENSOR: &str = "x-voxtap-sensor";
pub const H_TIME: &str = "x-voxtap-time";
pub const H_AUTH: &str = "x-voxtap-auth";
/// Largest clock difference a login or request may show.
pub const MAX_SKEW: u64 = 300;
/// Bytes of file per data frame.
pub const CHUNK: usize = 256 << 10;
/// How often a sensor pushes its live calls.
pub const LIVE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// Open calls per push by default (the newest: the snapshot lists them
/// newest first); `[central] live_max_calls`.
pub const LIVE_MAX_CALLS: usize = 200;
/// Calls that just ended per push by default; `live_max_ended`.
pub const LIVE_MAX_ENDED: usize = 50;
/// Largest push by default, in bytes of JSON; `live_max_bytes`.
pub const LIVE_MAX_BYTES: usize = 2 << 20;

/// The caps of a live push: the sensor's (what it sends) and the hub's
/// (what it keeps of any sensor), each from its own `[central]` keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveCaps {
    pub max_calls: usize,
    pub max_ended: usize,
    pub max_bytes: usize,
}

impl Default for LiveCaps {
    fn default() -> LiveCaps {
        LiveCaps {
            max_calls: LIVE_MAX_CALLS,
            max_ended: LIVE_MAX_ENDED,
            max_bytes: LIVE_MAX_BYTES,
        }
    }
}

impl LiveCaps {
    /// The caps of the config keys (`live_max_calls`, `live_max_ended`,
    /// `live_max_bytes`), today's defaults for those not set; an error
    /// names a key out of its range (calls 1 to 10 000, ended 0 to 1000,
    /// bytes 4 KiB to 64 MiB: one push is one WebSocket frame held in
    /// memory on both ends).
    pub fn from_keys(
        calls: Option<usize>,
        ended: Option<usize>,
        bytes: Option<usize>,
    ) -> Result<LiveCaps, String> {
        let d = LiveCaps::default();
        let pick = |key: &str, v: Option<usize>, def: usize, lo: usize, hi: usize| {
            let v = v.unwrap_or(def);
            if (lo..=hi).contains(&v) {
                Ok(v)
            } else {
                Err(format!("central.{key} = {v}: must be {lo} to {hi}"))
            }
        };
        Ok(LiveCaps {
            max_calls: pick("live_max_calls", calls, d.max_calls, 1, 10_000)?,
            max_ended: pick("live_max_ended", ended, d.max_ended, 0, 1000)?,
            max_bytes: pick("live_max_bytes", bytes, d.max_bytes, 4 << 10, 64 << 20)?,
        })
    }
}

/// Sensor → hub: the sensor's live calls (`DATA/live/calls.json`).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct LivePush {
    pub live: crate::status::LiveCallsFile,
}

/// Keeps at most `caps.max_calls` open and `caps.max_ended` ended calls,
/// saying so as the engine's own cap does.
pub fn cap_live(f: &mut crate::status::LiveCallsFile, caps: LiveCaps) {
    let s = &mut f.snapshot;
    if s.calls.len() > caps.max_calls {
        s.calls.truncate(caps.max_calls);
        s.truncated = true;
        s.max_calls = caps.max_calls as u64;
    }
    s.ended.truncate(caps.max_ended);
}

/// The text frame of a push; None past `caps.max_bytes`.
pub fn live_push(mut live: crate::status::LiveCallsFile, caps: LiveCaps) -> Option<String> {
    cap_live(&mut live, caps);
    let text = serde_json::to_string(&LivePush { live }).ok()?;
    (text.len() <= caps.max_bytes).then_some(text)
}

/// A push as the hub reads it: size checked, capped.
pub fn parse_live(text: &str, caps: LiveCaps) -> Option<crate::status::LiveCallsFile> {
    if text.len() > caps.max_bytes {
        return None;
    }
    let mut p: LivePush = serde_json::from_str(text).ok()?;
    cap_live(&mut p.live, caps);
    Some(p.live)
}

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], parts: &[&str]) -> HmacSha256 {
    // HMAC takes a key of any length.
    let mut m = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            m.update(b"\n");
        }
        m.update(p.as_bytes());
    }
    m
}

/// Hex HMAC-SHA256 of `parts` joined by newlines.
pub fn sign(secret: &[u8], parts: &[&str]) -> String {
    mac(secret, parts)
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `sig` (hex) signs `parts`; constant time.
pub fn verify(secret: &[u8], parts: &[&str], sig: &str) -> bool {
    let Some(bytes) = unhex(sig) else {
        return false;
    };
    mac(secret, parts).verify_slice(&bytes).is_ok()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The login's signature.
pub fn login_sig(secret: &[u8], sensor: &str, time: u64) -> String {
    sign(secret, &["tunnel", sensor, &time.to_string()])
}

pub fn login_ok(secret: &[u8], sensor: &str, time: u64, sig: &str, now: u64) -> bool {
    now.abs_diff(time) <= MAX_SKEW && verify(secret, &["tunnel", sensor, &time.to_string()], sig)
}

/// A hub → sensor request for one file of one call.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct FileRequest {
    pub id: u64,
    /// Who asked on the hub (logged by the sensor).
    pub user: String,
    pub call_id: String,
    /// The call's start, ns since the epoch (microsecond precision: as the
    /// central index holds it).
    pub start_ns: u64,
    /// A file of the call's folder (`call.pcap`, `sip.txt`, a WAV).
    pub name: String,
    pub expires_unix: u64,
    pub sig: String,
}

impl FileRequest {
    /// What the signature covers: the user, the path and the expiry.
    fn parts(&self) -> [String; 4] {
        [
            self.id.to_string(),
            self.user.clone(),
            self.path(),
            self.expires_unix.to_string(),
        ]
    }

    /// `calls/<Call-ID>/<start ns>/<file>`, as logged.
    pub fn path(&self) -> String {
        format!("calls/{}/{}/{}", self.call_id, self.start_ns, self.name)
    }

    pub fn new_signed(
        secret: &[u8],
        id: u64,
        user: &str,
        (call_id, start_ns): (&str, u64),
        name: &str,
        expires_unix: u64,
    ) -> FileRequest {
        let mut r = FileRequest {
            id,
            user: user.to_string(),
            call_id: call_id.to_string(),
            start_ns,
            name: name.to_string(),
            expires_unix,
            sig: String::new(),
        };
        let parts = r.parts();
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        r.sig = sign(secret, &refs);
        r
    }

    /// Signed with `secret`, not expired, not valid for longer than
    /// [`MAX_SKEW`].
    pub fn check(&self, secret: &[u8], now: u64) -> Result<(), &'static str> {
        let parts = self.parts();
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        if !verify(secret, &refs, &self.sig) {
            return Err("bad signature");
        }
        if self.expires_unix < now {
            return Err("expired");
        }
        if self.expires_unix > now + MAX_SKEW {
            return Err("expiry too far ahead");
        }
        Ok(())
    }
}

/// The kind byte of an answer frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Frame {
    Data = 0,
    End = 1,
    NotFound = 2,
    Refused = 3,
    Failed = 4,
}

impl Frame {
    pub fn parse(b: u8) -> Option<Frame> {
        Some(match b {
            0 => Frame::Data,
            1 => Frame::End,
            2 => Frame::NotFound,
            3 => Frame::Refused,
            4 => Frame::Failed,
            _ => return None,
        })
    }
}

pub fn frame(id: u64, kind: Frame, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + payload.len());
    v.extend_from_slice(&id.to_be_bytes());
    v.push(kind as u8);
    v.extend_from_slice(payload);
    v
}

/// (request id, kind, payload) of an answer frame.
pub fn parse_frame(b: &[u8]) -> Option<(u64, Frame, &[u8])> {
    let id = u64::from_be_bytes(b.get(..8)?.try_into().ok()?);
    Some((id, Frame::parse(*b.get(8)?)?, b.get(9..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_signed_and_expire() {
        let r = FileRequest::new_signed(b"k", 7, "alice", ("c@h", 5_000), "call.pcap", 1000);
        assert!(r.check(b"k", 900).is_ok());
        assert_eq!(r.check(b"other", 900), Err("bad signature"));
        assert_eq!(r.check(b"k", 1001), Err("expired"));
        assert_eq!(r.check(b"k", 100), Err("expiry too far ahead"));
        for tamper in [
            FileRequest {
                user: "mallory".into(),
                ..r.clone()
            },
            FileRequest {
                name: "../../etc/passwd".into(),
                ..r.clone()
            },
            FileRequest {
                expires_unix: 1100,
                ..r.clone()
            },
            FileRequest {
                start_ns: 6_000,
                ..r.clone()
            },
        ] {
            assert_eq!(tamper.check(b"k", 900), Err("bad signature"));
        }
    }

    #[test]
    fn live_pushes_are_capped() {
        let mut f = crate::status::LiveCallsFile::default();
        let call = voxtap_engine::live_calls::LiveCall {
            call_id: "c".into(),
            ..Default::default()
        };
        f.snapshot.calls = vec![call.clone(); LIVE_MAX_CALLS + 5];
        f.snapshot.ended = vec![call; LIVE_MAX_ENDED + 1];
        f.snapshot.seq = 7;
        let d = LiveCaps::default();
        assert_eq!(LiveCaps::from_keys(None, None, None), Ok(d));
        let text = live_push(f.clone(), d).unwrap();
        let back = parse_live(&text, d).unwrap();
        assert_eq!(back.snapshot.seq, 7);
        assert_eq!(back.snapshot.calls.len(), LIVE_MAX_CALLS);
        assert!(back.snapshot.truncated);
        assert_eq!(back.snapshot.ended.len(), LIVE_MAX_ENDED);
        assert!(parse_live("{}", d).is_none());
        assert!(parse_live(&" ".repeat(LIVE_MAX_BYTES + 1), d).is_none());
        // Configured caps: the sensor's smaller, the hub's smaller still.
        let small = LiveCaps::from_keys(Some(20), Some(3), Some(64 << 10)).unwrap();
        let text = live_push(f.clone(), small).unwrap();
        assert!(text.len() <= 64 << 10);
        let hub = LiveCaps::from_keys(Some(5), Some(0), None).unwrap();
        let back = parse_live(&text, hub).unwrap();
        assert_eq!(
            (back.snapshot.calls.len(), back.snapshot.ended.len()),
            (5, 0)
        );
        assert_eq!(back.snapshot.max_calls, 5);
        // A push larger than the bytes cap is not sent, nor accepted.
        let tiny = LiveCaps::from_keys(None, None, Some(4 << 10)).unwrap();
        assert!(live_push(f, tiny).is_none());
        assert!(
            parse_live(
                &text,
                LiveCaps {
                    max_bytes: text.len() - 1,
                    ..d
                }
            )
            .is_none()
        );
        let e = LiveCaps::from_keys(Some(0), None, None).unwrap_err();
        assert!(e.contains("live_max_calls"), "{e}");
        assert!(LiveCaps::from_keys(None, None, Some(100)).is_err());
    }

    #[test]
    fn login_and_frames() {
        let s = login_sig(b"k", "s1", 100);
        assert!(login_ok(b"k", "s1", 100, &s, 150));
        assert!(!login_ok(b"k", "s2", 100, &s, 150));
        assert!(!login_ok(b"k", "s1", 100, &s, 100 + MAX_SKEW + 1));
        assert!(!login_ok(b"k", "s1", 100, "zz", 150));
        let f = frame(9, Frame::Data, b"abc");
        assert_eq!(parse_frame(&f), Some((9, Frame::Data, &b"abc"[..])));
        assert_eq!(parse_frame(&f[..5]), None);
    }
}
