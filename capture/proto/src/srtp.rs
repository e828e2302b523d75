//! SRTP/SRTCP unprotect (RFC 3711, RFC 6188 AES-256, RFC 7714 AES-GCM) for
//! SDES keys (RFC 4568). Pure: bytes in, plaintext out; never panics.
//!
//! We are a passive observer, not an endpoint: there is no replay window
//! (a retransmitted packet decrypts again, the layout step drops duplicates)
//! and the rollover counter (ROC) is estimated from sequence numbers, with a
//! search over ROC values when the capture starts after the sender's first
//! wrap — the authentication tag tells which ROC is right.

use aes::cipher::{KeyIvInit, StreamCipher};
use aes_gcm::aead::{AeadInPlace, KeyInit};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use thiserror::Error;

use crate::rtp::RtpPacket;
use crate::wire::be32;

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;
type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;
type HmacSha1 = Hmac<Sha1>;

/// How many ROC values the first packet of a stream may try. 2^16 covers a
/// sender that has wrapped 65535 times (about 7 years of 20 ms packets);
/// it costs one HMAC per try, once per stream.
const ROC_SEARCH: u32 = 1 << 16;
/// Give up searching after this many packets failed it (a wrong key would
/// otherwise cost the full search on every packet).
const ROC_SEARCH_TRIES: u32 = 3;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SrtpError {
    #[error("unknown SRTP crypto suite {0:?}")]
    UnknownSuite(String),
    #[error("a=crypto {suite}: no inline key")]
    NoInlineKey { suite: String },
    #[error("a=crypto {suite}: key is not valid base64: {reason}")]
    BadBase64 { suite: String, reason: String },
    #[error("a=crypto {suite}: key||salt is {got} bytes, the suite needs {need}")]
    BadKeyLength {
        suite: String,
        got: usize,
        need: usize,
    },
    #[error("a=crypto {suite}: bad key parameter {param:?}: {reason}")]
    BadKeyParam {
        suite: String,
        param: String,
        reason: &'static str,
    },
    #[error("a=crypto {suite}: session parameter {0} is not supported", suite = .1)]
    Unsupported(String, String),
    #[error("packet too short for SRTP ({len} bytes)")]
    TooShort { len: usize },
    #[error("not an RTP/RTCP version 2 packet")]
    NotRtp,
    #[error("authentication failed")]
    AuthFailed,
    #[error("MKI {0:02x?} names no key we know")]
    UnknownMki(Vec<u8>),
    #[error("master key used past its lifetime ({packets} packets)")]
    LifetimeExceeded { packets: u64 },
}

/// The SDES suites we decrypt (RFC 4568, RFC 6188, RFC 7714 names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Suite {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
    AesCm256HmacSha1_80,
    AesCm256HmacSha1_32,
    AeadAes128Gcm,
    AeadAes256Gcm,
}

impl Suite {
    pub const ALL: [Suite; 6] = [
        Suite::AesCm128HmacSha1_80,
        Suite::AesCm128HmacSha1_32,
        Suite::AesCm256HmacSha1_80,
        Suite::AesCm256HmacSha1_32,
        Suite::AeadAes128Gcm,
        Suite::AeadAes256Gcm,
    ];

    pub fn from_name(name: &str) -> Option<Suite> {
        Some(match name.trim() {
            "AES_CM_128_HMAC_SHA1_80" => Suite::AesCm128HmacSha1_80,
            "AES_CM_128_HMAC_SHA1_32" => Suite::AesCm128HmacSha1_32,
            "AES_256_CM_HMAC_SHA1_80" | "AES_CM_256_HMAC_SHA1_80" => Suite::AesCm256HmacSha1_80,
            "AES_256_CM_HMAC_SHA1_32" | "AES_CM_256_HMAC_SHA1_32" => Suite::AesCm256HmacSha1_32,
            "AEAD_AES_128_GCM" => Suite::AeadAes128Gcm,
            "AEAD_AES_256_GCM" => Suite::AeadAes256Gcm,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            Suite::AesCm256HmacSha1_80 => "AES_256_CM_HMAC_SHA1_80",
            Suite::AesCm256HmacSha1_32 => "AES_256_CM_HMAC_SHA1_32",
            Suite::AeadAes128Gcm => "AEAD_AES_128_GCM",
            Suite::AeadAes256Gcm => "AEAD_AES_256_GCM",
        }
    }

    pub fn key_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 | Suite::AesCm128HmacSha1_32 | Suite::AeadAes128Gcm => 16,
            _ => 32,
        }
    }

    /// RFC 7714 uses a 96-bit salt; RFC 3711/6188 a 112-bit one.
    pub fn salt_len(self) -> usize {
        if self.is_gcm() { 12 } else { 14 }
    }

    pub fn is_gcm(self) -> bool {
        matches!(self, Suite::AeadAes128Gcm | Suite::AeadAes256Gcm)
    }

    /// Tag length on SRTP packets.
    pub fn rtp_tag_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_32 | Suite::AesCm256HmacSha1_32 => 4,
            Suite::AeadAes128Gcm | Suite::AeadAes256Gcm => 16,
            _ => 10,
        }
    }

    /// SRTCP always carries an 80-bit HMAC tag, even for the _32 suites
    /// (RFC 4568 section 6.2.1).
    pub fn rtcp_tag_len(self) -> usize {
        if self.is_gcm() { 16 } else { 10 }
    }
}

/// One master key from an `inline:` parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterKey {
    pub key: Vec<u8>,
    pub salt: Vec<u8>,
    /// The MKI value this key is named by, if the SDP gave one.
    pub mki: Option<Vec<u8>>,
    /// Packets this key may protect (`|2^31|`), if given.
    pub lifetime: Option<u64>,
}

/// Everything needed to unprotect one direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrtpKeys {
    pub suite: Suite,
    pub keys: Vec<MasterKey>,
    /// MKI length on the wire (0: no MKI field).
    pub mki_len: usize,
    /// Session parameters that switch encryption/authentication off.
    pub unencrypted_srtp: bool,
    pub unencrypted_srtcp: bool,
    pub unauthenticated_srtp: bool,
}

impl SrtpKeys {
    /// One plain key||salt for `suite` (hand-given keys).
    pub fn from_key_salt(suite: Suite, key_salt: &[u8]) -> Result<SrtpKeys, SrtpError> {
        let need = suite.key_len() + suite.salt_len();
        let split = key_salt
            .split_at_checked(suite.key_len())
            .filter(|_| key_salt.len() == need);
        let Some((key, salt)) = split else {
            return Err(SrtpError::BadKeyLength {
                suite: suite.name().into(),
                got: key_salt.len(),
                need,
            });
        };
        Ok(SrtpKeys {
            suite,
            keys: vec![MasterKey {
                key: key.to_vec(),
                salt: salt.to_vec(),
                mki: None,
                lifetime: None,
            }],
            mki_len: 0,
            unencrypted_srtp: false,
            unencrypted_srtcp: false,
            unauthenticated_srtp: false,
        })
    }

    /// From an SDP `a=crypto` line (RFC 4568): every `inline:` key with its
    /// lifetime and MKI, and the session parameters that matter to us.
    pub fn from_sdes(
        suite_name: &str,
        key_params: &[String],
        session_params: &[String],
    ) -> Result<SrtpKeys, SrtpError> {
        let suite = Suite::from_name(suite_name)
            .ok_or_else(|| SrtpError::UnknownSuite(suite_name.to_string()))?;
        let sname = || suite.name().to_string();
        let mut keys = Vec::new();
        let mut mki_len = 0;
        for kp in key_params {
            let Some(v) = kp.trim().strip_prefix("inline:") else {
                continue;
            };
            let (mk, key_mki_len) = parse_inline(suite, v)?;
            mki_len = key_mki_len.unwrap_or(mki_len);
            keys.push(mk);
        }
        if keys.is_empty() {
            return Err(SrtpError::NoInlineKey { suite: sname() });
        }
        let mut out = SrtpKeys {
            suite,
            keys,
            mki_len,
            unencrypted_srtp: false,
            unencrypted_srtcp: false,
            unauthenticated_srtp: false,
        };
        for sp in session_params {
            match sp.trim() {
                "UNENCRYPTED_SRTP" => out.unencrypted_srtp = true,
                "UNENCRYPTED_SRTCP" => out.unencrypted_srtcp = true,
                "UNAUTHENTICATED_SRTP" => out.unauthenticated_srtp = true,
                s if s.starts_with("KDR=") && s != "KDR=0" => {
                    return Err(SrtpError::Unsupported(s.to_string(), sname()));
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

/// One `inline:` value (after the prefix): `key||salt|lifetime|MKI:length`,
/// lifetime and MKI optional, in any order. The MKI length, when given.
fn parse_inline(suite: Suite, v: &str) -> Result<(MasterKey, Option<usize>), SrtpError> {
    let sname = || suite.name().to_string();
    let mut parts = v.split('|');
    let b64 = parts.next().unwrap_or("");
    let raw = decode_b64(b64).map_err(|reason| SrtpError::BadBase64 {
        suite: sname(),
        reason,
    })?;
    let need = suite.key_len() + suite.salt_len();
    // Some endpoints pad the key with extra salt bytes; more than needed is
    // tolerated (the first `need` bytes are key||salt, as libsrtp reads
    // them), fewer is not.
    let Some((key, salt)) = raw
        .get(..need)
        .and_then(|ks| ks.split_at_checked(suite.key_len()))
    else {
        return Err(SrtpError::BadKeyLength {
            suite: sname(),
            got: raw.len(),
            need,
        });
    };
    let mut mk = MasterKey {
        key: key.to_vec(),
        salt: salt.to_vec(),
        mki: None,
        lifetime: None,
    };
    let mut mki_len = None;
    for p in parts {
        let bad = |reason| SrtpError::BadKeyParam {
            suite: sname(),
            param: p.to_string(),
            reason,
        };
        if let Some((val, len)) = p.split_once(':') {
            let val: u64 = val.trim().parse().map_err(|_| bad("MKI value"))?;
            let len: usize = len.trim().parse().map_err(|_| bad("MKI length"))?;
            if !(1..=128).contains(&len) {
                return Err(bad("MKI length must be 1..128"));
            }
            mki_len = Some(len);
            // The value's low bytes, right-aligned in `len` bytes.
            let mut m = vec![0u8; len];
            for (d, s) in m.iter_mut().rev().zip(val.to_be_bytes().iter().rev()) {
                *d = *s;
            }
            mk.mki = Some(m);
        } else {
            mk.lifetime = Some(parse_lifetime(p).ok_or_else(|| bad("lifetime"))?);
        }
    }
    Ok((mk, mki_len))
}

fn decode_b64(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim();
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .or_else(|_| {
            base64::engine::general_purpose::STANDARD_NO_PAD.decode(s.trim_end_matches('='))
        })
        .map_err(|e| e.to_string())
}

/// `2^31` or a decimal count.
fn parse_lifetime(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(e) = s.strip_prefix("2^") {
        let e: u32 = e.parse().ok()?;
        return 1u64.checked_shl(e).filter(|_| e < 64);
    }
    s.parse().ok()
}

/// RFC 3711 section 4.3.1 key derivation with kdr = 0: AES in counter mode
/// keyed by the master key, IV = (master_salt XOR label<<48) * 2^16. For
/// GCM, RFC 7714 section 11 uses the same PRF with the 96-bit salt padded
/// to 112 bits with zeros (as libsrtp does).
pub fn derive(master_key: &[u8], master_salt: &[u8], label: u8, len: usize) -> Vec<u8> {
    let mut iv = [0u8; 16];
    // At most 14 bytes of salt: a 96-bit GCM salt is padded with zeros.
    for (d, s) in iv.iter_mut().zip(master_salt).take(14) {
        *d = *s;
    }
    iv[7] ^= label;
    let mut out = vec![0u8; len];
    ctr_apply(master_key, &iv, &mut out);
    out
}

/// AES-CTR over `buf` with a 128- or 256-bit key (other lengths leave `buf`
/// as it is; callers validate key lengths first).
fn ctr_apply(key: &[u8], iv: &[u8; 16], buf: &mut [u8]) {
    match key.len() {
        16 => {
            if let Ok(mut c) = Aes128Ctr::new_from_slices(key, iv) {
                c.apply_keystream(buf);
            }
        }
        32 => {
            if let Ok(mut c) = Aes256Ctr::new_from_slices(key, iv) {
                c.apply_keystream(buf);
            }
        }
        _ => {}
    }
}

/// Session keys of one master key.
#[derive(Clone)]
struct SessionKeys {
    enc: Vec<u8>,
    salt: Vec<u8>,
    auth: Vec<u8>,
}

impl SessionKeys {
    fn new(suite: Suite, mk: &MasterKey, rtcp: bool) -> Self {
        let base = if rtcp { 3 } else { 0 };
        SessionKeys {
            enc: derive(&mk.key, &mk.salt, base, suite.key_len()),
            auth: if suite.is_gcm() {
                Vec::new()
            } else {
                derive(&mk.key, &mk.salt, base + 1, 20)
            },
            salt: derive(&mk.key, &mk.salt, base + 2, suite.salt_len()),
        }
    }
}

/// What [`SrtpContext::unprotect_rtp`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unprotected {
    /// The plain RTP/RTCP packet (header + payload, no tag, no MKI).
    pub packet: Vec<u8>,
    /// SRTP packet index (ROC << 16 | SEQ) or SRTCP index.
    pub index: u64,
}

/// Per-direction unprotect state: session keys per master key, the ROC
/// estimate and counters.
pub struct SrtpContext {
    keys: SrtpKeys,
    rtp: Vec<SessionKeys>,
    rtcp: Vec<SessionKeys>,
    roc: u32,
    s_l: u16,
    /// No RTP packet has authenticated yet: the ROC is unknown.
    roc_known: bool,
    search_failures: u32,
    /// Packets protected per master key (lifetime check).
    used: Vec<u64>,
    pub rtp_ok: u64,
    pub rtcp_ok: u64,
    pub auth_failures: u64,
}

impl SrtpContext {
    pub fn new(keys: SrtpKeys) -> Self {
        let rtp = keys
            .keys
            .iter()
            .map(|k| SessionKeys::new(keys.suite, k, false))
            .collect();
        let rtcp = keys
            .keys
            .iter()
            .map(|k| SessionKeys::new(keys.suite, k, true))
            .collect();
        let used = vec![0; keys.keys.len()];
        SrtpContext {
            keys,
            rtp,
            rtcp,
            roc: 0,
            s_l: 0,
            roc_known: false,
            search_failures: 0,
            used,
            rtp_ok: 0,
            rtcp_ok: 0,
            auth_failures: 0,
        }
    }

    pub fn suite(&self) -> Suite {
        self.keys.suite
    }

    /// The current rollover counter estimate.
    pub fn roc(&self) -> u32 {
        self.roc
    }

    /// Which master key a packet names (by MKI), and where the MKI sits.
    fn pick_key(&self, mki: Option<&[u8]>) -> Result<usize, SrtpError> {
        match mki {
            None => Ok(0),
            Some(m) => self
                .keys
                .keys
                .iter()
                .position(|k| k.mki.as_deref() == Some(m))
                .ok_or_else(|| SrtpError::UnknownMki(m.to_vec())),
        }
    }

    fn count_use(&mut self, k: usize) -> Result<(), SrtpError> {
        let Some(u) = self.used.get_mut(k) else {
            return Ok(());
        };
        *u += 1;
        if let Some(l) = self.keys.keys.get(k).and_then(|mk| mk.lifetime)
            && *u > l
        {
            return Err(SrtpError::LifetimeExceeded { packets: l });
        }
        Ok(())
    }

    /// RFC 3711 appendix A: the ROC guess for `seq` given the highest
    /// sequence number seen (`s_l`) and the current ROC.
    fn guess_roc(&self, seq: u16) -> u32 {
        if !self.roc_known {
            return self.roc;
        }
        let (s_l, roc) = (i32::from(self.s_l), self.roc);
        let seq = i32::from(seq);
        if s_l < 32768 {
            if seq - s_l > 32768 {
                roc.wrapping_sub(1)
            } else {
                roc
            }
        } else if s_l - 32768 > seq {
            roc.wrapping_add(1)
        } else {
            roc
        }
    }

    fn accept_index(&mut self, roc: u32, seq: u16) {
        if !self.roc_known {
            self.roc_known = true;
            self.roc = roc;
            self.s_l = seq;
            return;
        }
        let new = (u64::from(roc) << 16) | u64::from(seq);
        let cur = (u64::from(self.roc) << 16) | u64::from(self.s_l);
        if new > cur {
            self.roc = roc;
            self.s_l = seq;
        }
    }

    /// Unprotect one SRTP packet. Failures are counted in `auth_failures`
    /// (for tag mismatches) and returned; the context stays usable.
    pub fn unprotect_rtp(&mut self, pkt: &[u8]) -> Result<Unprotected, SrtpError> {
        let r = self.unprotect_rtp_inner(pkt);
        if matches!(r, Err(SrtpError::AuthFailed)) {
            self.auth_failures += 1;
        }
        r
    }

    fn unprotect_rtp_inner(&mut self, pkt: &[u8]) -> Result<Unprotected, SrtpError> {
        let parts = self.rtp_parts(pkt)?;
        let k = self.pick_key(parts.mki)?;
        let (seq, tag_len) = (parts.seq, parts.tag.len());
        let guess = self.guess_roc(seq);
        let try_roc = |ctx: &Self, roc: u32| ctx.try_rtp(k, &parts, roc);
        let mut found = try_roc(self, guess).map(|p| (guess, p));
        if found.is_none() && self.roc_known {
            // Heavy loss can defeat the RFC estimate by one wrap either way.
            for roc in [guess.wrapping_add(1), guess.wrapping_sub(1)] {
                if let Some(p) = try_roc(self, roc) {
                    found = Some((roc, p));
                    break;
                }
            }
        }
        let authenticated = tag_len > 0 || self.keys.suite.is_gcm();
        if found.is_none()
            && !self.roc_known
            && self.search_failures < ROC_SEARCH_TRIES
            && authenticated
        {
            // Captured after the sender's wraps: find the ROC the tag agrees with.
            found = (1..ROC_SEARCH).find_map(|roc| try_roc(self, roc).map(|p| (roc, p)));
            if found.is_none() {
                self.search_failures += 1;
            }
        }
        let (roc, packet) = found.ok_or(SrtpError::AuthFailed)?;
        self.accept_index(roc, seq);
        self.count_use(k)?;
        self.rtp_ok += 1;
        Ok(Unprotected {
            packet,
            index: (u64::from(roc) << 16) | u64::from(seq),
        })
    }

    /// Cuts an SRTP packet into header, protected body, MKI and tag.
    /// RFC 3711: header || payload || MKI || tag. RFC 7714: header ||
    /// ciphertext+tag || MKI.
    fn rtp_parts<'p>(&self, pkt: &'p [u8]) -> Result<SrtpParts<'p>, SrtpError> {
        let suite = self.keys.suite;
        // The header only: padding is encrypted, and the last byte is the tag.
        let rtp = RtpPacket::new_checked_header(pkt).map_err(|_| SrtpError::NotRtp)?;
        let tag_len = if self.keys.unauthenticated_srtp && !suite.is_gcm() {
            0
        } else {
            suite.rtp_tag_len()
        };
        let mki_len = self.keys.mki_len;
        let too_short = SrtpError::TooShort { len: pkt.len() };
        if pkt.len() < rtp.header_len() + tag_len + mki_len {
            return Err(too_short);
        }
        let hmac_tag_len = if suite.is_gcm() { 0 } else { tag_len };
        let (rest, tag) = split_tail(pkt, hmac_tag_len).ok_or(too_short.clone())?;
        let (body, mki) = split_tail(rest, mki_len).ok_or(too_short)?;
        Ok(SrtpParts {
            body,
            hdr_len: rtp.header_len(),
            tag,
            mki: (mki_len > 0).then_some(mki),
            seq: rtp.sequence(),
            ssrc: rtp.ssrc(),
        })
    }

    fn try_rtp(&self, k: usize, parts: &SrtpParts<'_>, roc: u32) -> Option<Vec<u8>> {
        let sk = self.rtp.get(k)?;
        if self.keys.suite.is_gcm() {
            return self.try_rtp_gcm(sk, parts, roc);
        }
        if !parts.tag.is_empty() {
            let mut mac = <HmacSha1 as Mac>::new_from_slice(&sk.auth).ok()?;
            mac.update(parts.body);
            mac.update(&roc.to_be_bytes());
            let full = mac.finalize().into_bytes();
            if !ct_eq(full.get(..parts.tag.len())?, parts.tag) {
                return None;
            }
        }
        let mut out = parts.body.to_vec();
        if !self.keys.unencrypted_srtp {
            let mut iv = [0u8; 16];
            iv[..14].copy_from_slice(sk.salt.get(..14)?);
            xor_into(&mut iv[4..8], &parts.ssrc.to_be_bytes());
            let index = (u64::from(roc) << 16) | u64::from(parts.seq);
            xor_into(&mut iv[8..14], &index.to_be_bytes()[2..]);
            ctr_apply(&sk.enc, &iv, out.get_mut(parts.hdr_len..)?);
        }
        Some(out)
    }

    fn try_rtp_gcm(&self, sk: &SessionKeys, parts: &SrtpParts<'_>, roc: u32) -> Option<Vec<u8>> {
        // RFC 7714 8.1: IV = (0x0000 || SSRC || ROC || SEQ) XOR salt.
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&parts.ssrc.to_be_bytes());
        iv[6..10].copy_from_slice(&roc.to_be_bytes());
        iv[10..12].copy_from_slice(&parts.seq.to_be_bytes());
        xor_into(&mut iv, &sk.salt);
        let (sealed, tag) = split_tail(parts.body, 16)?;
        if self.keys.unencrypted_srtp {
            // Authenticated-only GCM is GMAC over header||payload.
            gcm_open(&sk.enc, &iv, sealed, &mut [], tag)?;
            return Some(sealed.to_vec());
        }
        let (header, ciphertext) = sealed.split_at_checked(parts.hdr_len)?;
        let mut body = ciphertext.to_vec();
        gcm_open(&sk.enc, &iv, header, &mut body, tag)?;
        let mut out = header.to_vec();
        out.extend_from_slice(&body);
        Some(out)
    }

    /// Unprotect one SRTCP packet (compound packets included).
    pub fn unprotect_rtcp(&mut self, pkt: &[u8]) -> Result<Unprotected, SrtpError> {
        let r = self.unprotect_rtcp_inner(pkt);
        if matches!(r, Err(SrtpError::AuthFailed)) {
            self.auth_failures += 1;
        }
        r
    }

    fn unprotect_rtcp_inner(&mut self, pkt: &[u8]) -> Result<Unprotected, SrtpError> {
        let parts = self.rtcp_parts(pkt)?;
        let k = self.pick_key(parts.mki)?;
        let sk = self.rtcp.get(k).ok_or(SrtpError::AuthFailed)?;
        let packet = if self.keys.suite.is_gcm() {
            open_rtcp_gcm(sk, &parts)?
        } else {
            open_rtcp_hmac(sk, &parts)?
        };
        self.count_use(k)?;
        self.rtcp_ok += 1;
        Ok(Unprotected {
            packet,
            index: u64::from(parts.index()),
        })
    }

    /// Cuts an SRTCP packet into its parts. RFC 3711: ... || E|index ||
    /// MKI || tag. RFC 7714: ... || ct+tag || E|index || MKI.
    fn rtcp_parts<'p>(&self, pkt: &'p [u8]) -> Result<SrtcpParts<'p>, SrtpError> {
        let suite = self.keys.suite;
        if pkt.first().map(|b| b >> 6) != Some(2) {
            return Err(SrtpError::NotRtp);
        }
        let tag_len = suite.rtcp_tag_len();
        let mki_len = self.keys.mki_len;
        let too_short = SrtpError::TooShort { len: pkt.len() };
        if pkt.len() < 8 + 4 + tag_len + mki_len {
            return Err(too_short);
        }
        let hmac_tag_len = if suite.is_gcm() { 0 } else { tag_len };
        let (rest, tag) = split_tail(pkt, hmac_tag_len).ok_or(too_short.clone())?;
        let (authenticated, mki) = split_tail(rest, mki_len).ok_or(too_short.clone())?;
        let (head, e_index) = authenticated
            .split_last_chunk::<4>()
            .ok_or(too_short.clone())?;
        let (header, body) = head.split_at_checked(8).ok_or(too_short)?;
        Ok(SrtcpParts {
            header,
            body,
            e_index: u32::from_be_bytes(*e_index),
            authenticated,
            tag,
            mki: (mki_len > 0).then_some(mki),
            ssrc: be32(header, 4),
            len: pkt.len(),
        })
    }
}

/// One SRTP packet cut into its parts.
struct SrtpParts<'p> {
    /// Header and protected payload (for GCM, ending with the tag): what
    /// is authenticated and decrypted; MKI and HMAC tag are not in it.
    body: &'p [u8],
    hdr_len: usize,
    /// The HMAC tag; empty for GCM (its tag ends `body`) and when
    /// unauthenticated.
    tag: &'p [u8],
    mki: Option<&'p [u8]>,
    seq: u16,
    ssrc: u32,
}

/// One SRTCP packet cut into its parts.
struct SrtcpParts<'p> {
    /// The first 8 bytes: header and sender SSRC, never encrypted.
    header: &'p [u8],
    /// The rest up to E|index: encrypted compound packets (for GCM, ending
    /// with the tag).
    body: &'p [u8],
    e_index: u32,
    /// header || body || E|index: what the HMAC covers.
    authenticated: &'p [u8],
    /// The HMAC tag; empty for GCM.
    tag: &'p [u8],
    mki: Option<&'p [u8]>,
    ssrc: u32,
    /// Of the whole packet.
    len: usize,
}

impl SrtcpParts<'_> {
    fn encrypted(&self) -> bool {
        self.e_index & 0x8000_0000 != 0
    }

    fn index(&self) -> u32 {
        self.e_index & 0x7FFF_FFFF
    }
}

fn open_rtcp_gcm(sk: &SessionKeys, parts: &SrtcpParts<'_>) -> Result<Vec<u8>, SrtpError> {
    // RFC 7714 9.1: IV = (0x0000 || SSRC || 0x0000 || 0 || index) XOR salt.
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&parts.ssrc.to_be_bytes());
    iv[8..12].copy_from_slice(&parts.index().to_be_bytes());
    xor_into(&mut iv, &sk.salt);
    let too_short = SrtpError::TooShort { len: parts.len };
    let (ciphertext, tag) = split_tail(parts.body, 16).ok_or(too_short)?;
    let e_index = parts.e_index.to_be_bytes();
    if parts.encrypted() {
        let mut aad = parts.header.to_vec();
        aad.extend_from_slice(&e_index);
        let mut body = ciphertext.to_vec();
        gcm_open(&sk.enc, &iv, &aad, &mut body, tag).ok_or(SrtpError::AuthFailed)?;
        let mut out = parts.header.to_vec();
        out.extend_from_slice(&body);
        Ok(out)
    } else {
        let mut plain = parts.header.to_vec();
        plain.extend_from_slice(ciphertext);
        let mut aad = plain.clone();
        aad.extend_from_slice(&e_index);
        gcm_open(&sk.enc, &iv, &aad, &mut [], tag).ok_or(SrtpError::AuthFailed)?;
        Ok(plain)
    }
}

fn open_rtcp_hmac(sk: &SessionKeys, parts: &SrtcpParts<'_>) -> Result<Vec<u8>, SrtpError> {
    let mut mac = <HmacSha1 as Mac>::new_from_slice(&sk.auth).map_err(|_| SrtpError::AuthFailed)?;
    mac.update(parts.authenticated);
    let full = mac.finalize().into_bytes();
    let want = full.get(..parts.tag.len()).ok_or(SrtpError::AuthFailed)?;
    if !ct_eq(want, parts.tag) {
        return Err(SrtpError::AuthFailed);
    }
    let mut out = parts.header.to_vec();
    out.extend_from_slice(parts.body);
    if parts.encrypted() {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(sk.salt.get(..14).ok_or(SrtpError::AuthFailed)?);
        xor_into(&mut iv[4..8], &parts.ssrc.to_be_bytes());
        xor_into(&mut iv[10..14], &parts.index().to_be_bytes());
        ctr_apply(&sk.enc, &iv, out.get_mut(8..).unwrap_or_default());
    }
    Ok(out)
}

/// `b` without its last `n` bytes, and those bytes.
fn split_tail(b: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    b.split_at_checked(b.len().checked_sub(n)?)
}

/// XORs `src` into `dst`, as far as both go.
fn xor_into(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= s;
    }
}

fn gcm_open(key: &[u8], iv: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8]) -> Option<()> {
    if tag.len() != 16 {
        return None;
    }
    let nonce = aes_gcm::Nonce::from_slice(iv);
    let tag = aes_gcm::Tag::from_slice(tag);
    match key.len() {
        16 => aes_gcm::Aes128Gcm::new_from_slice(key)
            .ok()?
            .decrypt_in_place_detached(nonce, aad, buf, tag)
            .ok(),
        32 => aes_gcm::Aes256Gcm::new_from_slice(key)
            .ok()?
            .decrypt_in_place_detached(nonce, aad, buf, tag)
            .ok(),
        _ => None,
    }
}

/// Constant-time compare: we are not an endpoint, but a tag check that
/// leaks timing is a bad pattern to keep around.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// RTCP packet types are 192..=223 in the second byte (RFC 5761 section 4):
/// how an RTP/RTCP-muxed port tells SRTCP from SRTP.
pub fn looks_like_srtcp(pkt: &[u8]) -> bool {
    matches!(pkt, [b0, b1, _, _, _, _, _, _, ..] if b0 >> 6 == 2 && (192..=223).contains(b1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn garbage_never_panics() {
        let keys = SrtpKeys::from_key_salt(Suite::AesCm128HmacSha1_80, &[7; 30]).unwrap();
        let mut c = SrtpContext::new(keys);
        for len in 0..64 {
            let mut p = vec![0x80u8; len];
            if len > 1 {
                p[1] = 200;
            }
            let _ = c.unprotect_rtp(&p);
            let _ = c.unprotect_rtcp(&p);
        }
    }

    #[test]
    fn key_derivation_rfc3711_b3() {
        let mk = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
        let ms = hex("0EC675AD498AFEEBB6960B3AABE6");
        assert_eq!(
            derive(&mk, &ms, 0, 16),
            hex("C61E7A93744F39EE10734AFE3FF7A087")
        );
        assert_eq!(derive(&mk, &ms, 2, 14), hex("30CBBC08863D8C85D49DB34A9AE1"));
        assert_eq!(
            derive(&mk, &ms, 1, 20),
            hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
        );
    }

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    #[test]
    fn sdes_keys_with_mki_and_lifetime() {
        let (k1, k2) = ([1u8; 30], [2u8; 30]);
        let params = [
            format!("inline:{}|2^20|1:4", b64(&k1)),
            format!("inline:{}|1000|258:2", b64(&k2)),
        ];
        let keys = SrtpKeys::from_sdes("AES_CM_128_HMAC_SHA1_80", &params, &[]).unwrap();
        assert_eq!(keys.mki_len, 2);
        assert_eq!(keys.keys[0].mki, Some(vec![0, 0, 0, 1]));
        assert_eq!(keys.keys[0].lifetime, Some(1 << 20));
        assert_eq!(
            (&keys.keys[0].key[..], &keys.keys[0].salt[..]),
            (&k1[..16], &k1[16..])
        );
        assert_eq!(keys.keys[1].mki, Some(vec![1, 2]));
        assert_eq!(keys.keys[1].lifetime, Some(1000));
        // A 10-byte MKI holds the 8-byte value right-aligned.
        let p = [format!("inline:{}|7:10", b64(&k1))];
        let keys = SrtpKeys::from_sdes("AES_CM_128_HMAC_SHA1_80", &p, &[]).unwrap();
        assert_eq!(keys.keys[0].mki, Some(vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 7]));
        // Extra key bytes are tolerated, missing ones are not.
        let p = [format!("inline:{}", b64(&[3; 33]))];
        let keys = SrtpKeys::from_sdes("AES_CM_128_HMAC_SHA1_80", &p, &[]).unwrap();
        assert_eq!(keys.keys[0].salt, vec![3; 14]);
        let p = [format!("inline:{}", b64(&[3; 29]))];
        assert!(matches!(
            SrtpKeys::from_sdes("AES_CM_128_HMAC_SHA1_80", &p, &[]),
            Err(SrtpError::BadKeyLength {
                got: 29,
                need: 30,
                ..
            })
        ));
        let p = [format!("inline:{}|1:0", b64(&k1))];
        assert!(matches!(
            SrtpKeys::from_sdes("AES_CM_128_HMAC_SHA1_80", &p, &[]),
            Err(SrtpError::BadKeyParam {
                reason: "MKI length must be 1..128",
                ..
            })
        ));
        assert!(matches!(
            SrtpKeys::from_key_salt(Suite::AesCm128HmacSha1_80, &k1[..29]),
            Err(SrtpError::BadKeyLength {
                got: 29,
                need: 30,
                ..
            })
        ));
    }

    /// RFC 3711 protection by hand (AES-CM, HMAC-SHA1): header ||
    /// payload (encrypted unless `encrypt` is false) || MKI || tag.
    fn protect_rtp(sk: &SessionKeys, pkt: &[u8], roc: u32, mki: &[u8], encrypt: bool) -> Vec<u8> {
        let (seq, ssrc) = (u16::from_be_bytes([pkt[2], pkt[3]]), &pkt[8..12]);
        let mut out = pkt.to_vec();
        if encrypt {
            let mut iv = [0u8; 16];
            iv[..14].copy_from_slice(&sk.salt);
            xor_into(&mut iv[4..8], ssrc);
            let index = (u64::from(roc) << 16) | u64::from(seq);
            xor_into(&mut iv[8..14], &index.to_be_bytes()[2..]);
            ctr_apply(&sk.enc, &iv, &mut out[12..]);
        }
        let mut mac = <HmacSha1 as Mac>::new_from_slice(&sk.auth).unwrap();
        mac.update(&out);
        mac.update(&roc.to_be_bytes());
        let tag = mac.finalize().into_bytes();
        out.extend_from_slice(mki);
        out.extend_from_slice(&tag[..10]);
        out
    }

    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 160, 0xca, 0xfe, 0xba, 0xbe];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend((0..160).map(|i| i as u8));
        p
    }

    #[test]
    fn mki_names_the_key() {
        let (k1, k2) = ([1u8; 30], [2u8; 30]);
        let params = [
            format!("inline:{}|1:2", b64(&k1)),
            format!("inline:{}|2:2", b64(&k2)),
        ];
        let keys = SrtpKeys::from_sdes("AES_CM_128_HMAC_SHA1_80", &params, &[]).unwrap();
        let suite = keys.suite;
        let sk2 = SessionKeys::new(suite, &keys.keys[1], false);
        let sk1 = SessionKeys::new(suite, &keys.keys[0], false);
        let mut ctx = SrtpContext::new(keys);
        let p = rtp(7);
        let u = ctx
            .unprotect_rtp(&protect_rtp(&sk2, &p, 0, &[0, 2], true))
            .unwrap();
        assert_eq!((u.packet, u.index), (p.clone(), 7));
        let p = rtp(8);
        let u = ctx
            .unprotect_rtp(&protect_rtp(&sk1, &p, 0, &[0, 1], true))
            .unwrap();
        assert_eq!(u.packet, p);
        // The MKI is not authenticated but picks the key: the wrong one fails.
        let wrong = protect_rtp(&sk1, &rtp(9), 0, &[0, 2], true);
        assert_eq!(ctx.unprotect_rtp(&wrong), Err(SrtpError::AuthFailed));
        let unknown = protect_rtp(&sk1, &rtp(9), 0, &[0, 3], true);
        assert_eq!(
            ctx.unprotect_rtp(&unknown),
            Err(SrtpError::UnknownMki(vec![0, 3]))
        );
        assert_eq!((ctx.rtp_ok, ctx.auth_failures), (2, 1));
    }

    #[test]
    fn unencrypted_srtp_is_authenticated_only() {
        let k = [5u8; 30];
        let params = [format!("inline:{}", b64(&k))];
        let session = ["UNENCRYPTED_SRTP".to_string()];
        let keys = SrtpKeys::from_sdes("AES_CM_128_HMAC_SHA1_80", &params, &session).unwrap();
        let sk = SessionKeys::new(keys.suite, &keys.keys[0], false);
        let mut ctx = SrtpContext::new(keys);
        let p = rtp(100);
        let prot = protect_rtp(&sk, &p, 0, &[], false);
        assert_eq!(&prot[..p.len()], &p[..]);
        assert_eq!(ctx.unprotect_rtp(&prot).unwrap().packet, p);
        let mut bad = prot.clone();
        bad[20] ^= 1;
        assert_eq!(ctx.unprotect_rtp(&bad), Err(SrtpError::AuthFailed));
    }

    #[test]
    fn srtcp_with_mki() {
        let k = [9u8; 30];
        let params = [format!("inline:{}|5:1", b64(&k))];
        let keys = SrtpKeys::from_sdes("AES_CM_128_HMAC_SHA1_32", &params, &[]).unwrap();
        let sk = SessionKeys::new(keys.suite, &keys.keys[0], true);
        let mut ctx = SrtpContext::new(keys);
        // RR with one report block; E=1, index 42.
        let mut plain = vec![0x81, 201, 0, 7, 0xca, 0xfe, 0xba, 0xbe];
        plain.extend((0..24).map(|i| i as u8));
        let index = 42u32;
        let mut out = plain.clone();
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&sk.salt);
        xor_into(&mut iv[4..8], &plain[4..8]);
        xor_into(&mut iv[10..14], &index.to_be_bytes());
        ctr_apply(&sk.enc, &iv, &mut out[8..]);
        out.extend_from_slice(&(0x8000_0000 | index).to_be_bytes());
        let mut mac = <HmacSha1 as Mac>::new_from_slice(&sk.auth).unwrap();
        mac.update(&out);
        let tag = mac.finalize().into_bytes();
        out.push(5); // MKI
        // SRTCP carries the 80-bit tag even for the _32 suites.
        out.extend_from_slice(&tag[..10]);
        assert!(looks_like_srtcp(&out));
        let u = ctx.unprotect_rtcp(&out).unwrap();
        assert_eq!((u.packet, u.index), (plain, 42));
        out[9] ^= 1;
        assert_eq!(ctx.unprotect_rtcp(&out), Err(SrtpError::AuthFailed));
        assert_eq!(
            ctx.unprotect_rtcp(&out[..8 + 4 + 10]),
            Err(SrtpError::TooShort { len: 22 })
        );
    }
}
