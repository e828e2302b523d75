//! Media of a call, after capture (never on the capture hot path): SRTP
//! decryption with SDES keys, decrypted pcaps, audio as WAV, DTMF and
//! per-stream quality. [`MediaProcessor`] plugs into the
//! [`CallWriter`](crate::output::CallWriter); [`process_call`] is the same
//! work on any frames (the `voxtap media` command, tests).
//!
//! Per call folder: `media.pcap` (RTP/RTCP frames as captured),
//! `call-decrypted.pcap` and `media-decrypted.pcap` (when the call carried
//! SRTP), `caller.wav`, `callee.wav`, `stereo.wav` (caller left, callee
//! right), `dtmf.csv`, `quality.json`.

pub mod codec;
pub mod dtmf;
mod layout;
pub mod quality;
mod rewrite;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine;
use thiserror::Error;

use crate::calls::{Call, Endpoint, StreamKey};
use crate::output::{CallFrame, CallProcessor, CsvWriter, OutputError, format_ts, write_pcap_each};
use dtmf::{DtmfEvent, Rfc4733Detector};
use layout::{MediaPacket, PtMap, StreamAudio, Track};
use quality::{Arrival, CodecImpairment, QualityParams, StreamQuality};
use voxtap_codecs::{CodecKind, Concealment};
use voxtap_proto::decode::{Decoder as FrameDecoder, FragLimits, L4};
use voxtap_proto::rtp::RtpPacket;
use voxtap_proto::srtp::{SrtpContext, SrtpKeys, Suite};

#[derive(Debug, Error)]
pub enum MediaError {
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing WAV {path}: {source}")]
    Wav { path: PathBuf, source: hound::Error },
    #[error("{0}")]
    Output(#[from] OutputError),
}

/// Which packets a hand-given key is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySelector {
    Ssrc(u32),
    /// The sender's address (the key of the side that sends from there).
    Source(SocketAddr),
    Flow {
        src: SocketAddr,
        dst: SocketAddr,
    },
}

/// An SRTP key given by hand: `ssrc=0x1234ABCD,SUITE,BASE64`,
/// `src=IP:PORT,SUITE,BASE64` or `flow=IP:PORT-IP:PORT,SUITE,BASE64`
/// (IPv6 as `[::1]:5000`). BASE64 is key||salt as in `a=crypto inline:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManualKey {
    pub selector: KeySelector,
    pub keys: SrtpKeys,
}

impl FromStr for ManualKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut it = s.split(',');
        let (sel, suite, key) = match (it.next(), it.next(), it.next(), it.next()) {
            (Some(a), Some(b), Some(c), None) => (a.trim(), b.trim(), c.trim()),
            _ => return Err(format!("SRTP key {s:?}: want SELECTOR,SUITE,BASE64")),
        };
        let selector = if let Some(v) = sel.strip_prefix("ssrc=") {
            let v = v.trim();
            let n = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
                Some(h) => u32::from_str_radix(h, 16),
                None => v.parse(),
            };
            KeySelector::Ssrc(n.map_err(|_| format!("bad SSRC {v:?}"))?)
        } else if let Some(v) = sel.strip_prefix("src=") {
            KeySelector::Source(v.parse().map_err(|_| format!("bad address {v:?}"))?)
        } else if let Some(v) = sel.strip_prefix("flow=") {
            let (a, b) = v
                .split_once('-')
                .ok_or_else(|| format!("flow {v:?}: want SRC-DST"))?;
            KeySelector::Flow {
                src: a.parse().map_err(|_| format!("bad address {a:?}"))?,
                dst: b.parse().map_err(|_| format!("bad address {b:?}"))?,
            }
        } else {
            return Err(format!(
                "SRTP key selector {sel:?}: want ssrc=, src= or flow="
            ));
        };
        let suite_v = Suite::from_name(suite).ok_or_else(|| format!("unknown suite {suite:?}"))?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(key.trim_start_matches("inline:"))
            .map_err(|e| format!("key is not base64: {e}"))?;
        let need = suite_v.key_len() + suite_v.salt_len();
        let raw = raw
            .get(..need)
            .ok_or_else(|| format!("key||salt is {} bytes, {suite} needs {need}", raw.len()))?;
        let keys = SrtpKeys::from_key_salt(suite_v, raw).map_err(|e| e.to_string())?;
        Ok(ManualKey { selector, keys })
    }
}

#[derive(Clone, Debug)]
pub struct MediaOptions {
    /// Write WAV files.
    pub audio: bool,
    pub keys: Vec<ManualKey>,
    pub quality: QualityParams,
}

impl Default for MediaOptions {
    fn default() -> Self {
        MediaOptions {
            audio: true,
            keys: Vec::new(),
            quality: QualityParams::default(),
        }
    }
}

/// Who sent a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Party {
    Caller,
    Callee,
    Unknown,
}

impl Party {
    pub fn as_str(self) -> &'static str {
        match self {
            Party::Caller => "caller",
            Party::Callee => "callee",
            Party::Unknown => "unknown",
        }
    }
}

/// One RTP stream as the media step saw it.
#[derive(Clone, Debug)]
pub struct StreamMedia {
    pub key: StreamKey,
    pub party: Party,
    /// The encoding name of `payload_type`, as streams.csv names it
    /// (`PT96` when no SDP and no static type names it).
    pub codec: String,
    /// The payload type the stream is named and rated by: its first that
    /// is not comfort noise or RFC 4733 events.
    pub payload_type: Option<u8>,
    /// That payload type's codec (guessed when `codec_guess` is set).
    pub kind: CodecKind,
    /// "guessed from payload size and timing: …" for a payload type
    /// nobody signalled.
    pub codec_guess: Option<String>,
    /// Why its audio is not decoded (this build, the codec, the payload
    /// type); None when it is decodable.
    pub undecodable: Option<String>,
    /// What the audio layout did with its packets (None: no WAV written).
    pub audio: Option<StreamAudio>,
    pub srtp: bool,
    pub srtp_suite: Option<Suite>,
    /// Packets decrypted (or plain), and SRTP packets that failed.
    pub rtp_ok: u64,
    pub auth_failures: u64,
    pub roc: u32,
    pub quality: StreamQuality,
    /// Plain RTP packets (decrypted when SRTP), in capture order.
    pub packets: Vec<MediaPacket>,
}

/// What [`process_call`] did.
#[derive(Clone, Debug, Default)]
pub struct MediaSummary {
    pub streams: Vec<StreamMedia>,
    pub dtmf: Vec<DtmfEvent>,
    pub srtcp_ok: u64,
    pub srtcp_auth_failures: u64,
    /// Frames whose payload we could not rewrite (fragments, odd links):
    /// they are in the decrypted pcaps as captured.
    pub not_rewritten: u64,
    pub wavs: Vec<PathBuf>,
}

impl MediaSummary {
    pub fn auth_failures(&self) -> u64 {
        self.streams.iter().map(|s| s.auth_failures).sum::<u64>() + self.srtcp_auth_failures
    }
}

/// The CallProcessor: media outputs for every call the writer writes.
pub struct MediaProcessor {
    pub opts: MediaOptions,
}

impl MediaProcessor {
    pub fn new(opts: MediaOptions) -> Self {
        MediaProcessor { opts }
    }
}

impl CallProcessor for MediaProcessor {
    fn process(
        &mut self,
        call: &Call,
        frames: &[CallFrame],
        folder: &Path,
    ) -> Result<(), OutputError> {
        process_call(Some(call), frames, folder, &self.opts)
            .map(|_| ())
            .map_err(|e| OutputError::Processor {
                call_id: call.call_id().to_string(),
                message: format!("media: {e}"),
            })
    }

    fn fork(&self) -> Box<dyn CallProcessor> {
        Box::new(MediaProcessor::new(self.opts.clone()))
    }
}

/// SRTP state of one sender (endpoint, SSRC): candidate keys in order of
/// preference; the first that authenticates is kept.
struct Crypto {
    candidates: Vec<SrtpContext>,
    chosen: Option<usize>,
    auth_failures: u64,
    rtcp_failures: u64,
}

impl Crypto {
    fn new(keys: Vec<SrtpKeys>) -> Self {
        Crypto {
            candidates: keys.into_iter().map(SrtpContext::new).collect(),
            chosen: None,
            auth_failures: 0,
            rtcp_failures: 0,
        }
    }

    fn unprotect(&mut self, pkt: &[u8], rtcp: bool) -> Option<Vec<u8>> {
        let order: Vec<usize> = self
            .chosen
            .into_iter()
            .chain((0..self.candidates.len()).filter(|&i| Some(i) != self.chosen))
            .collect();
        for i in order {
            let c = &mut self.candidates[i];
            let r = if rtcp {
                c.unprotect_rtcp(pkt)
            } else {
                c.unprotect_rtp(pkt)
            };
            if let Ok(u) = r {
                self.chosen = Some(i);
                return Some(u.packet);
            }
        }
        if rtcp {
            self.rtcp_failures += 1;
        } else {
            self.auth_failures += 1;
        }
        None
    }
}

/// Keys a sender at `src` may use, from the SDP that announced `src` as its
/// media address: the crypto line whose tag and suite the other side
/// accepted first, then the others, latest SDP first.
fn sdp_keys(call: &Call, src: SocketAddr) -> Vec<SrtpKeys> {
    let accepted: HashSet<(u32, String)> = call
        .media()
        .iter()
        .filter(|m| m.rtp != src)
        .flat_map(|m| m.crypto().iter().map(|c| (c.tag, c.suite.clone())))
        .collect();
    let mut lines = Vec::new();
    for m in call
        .media()
        .iter()
        .rev()
        .filter(|m| m.rtp == src || (m.rtcp == src && !m.rtcp_mux))
    {
        let mut cs: Vec<_> = m.crypto().iter().collect();
        cs.sort_by_key(|c| !accepted.contains(&(c.tag, c.suite.clone())));
        lines.extend(cs);
    }
    let mut out: Vec<SrtpKeys> = Vec::new();
    for c in lines {
        match SrtpKeys::from_sdes(&c.suite, &c.key_params, &c.session_params) {
            Ok(k) if !out.contains(&k) => out.push(k),
            Ok(_) => {}
            Err(e) => tracing::debug!(call_id = %call.call_id(), "a=crypto ignored: {e}"),
        }
    }
    out
}

fn manual_keys(opts: &MediaOptions, src: SocketAddr, dst: SocketAddr, ssrc: u32) -> Vec<SrtpKeys> {
    opts.keys
        .iter()
        .filter(|k| match &k.selector {
            KeySelector::Ssrc(s) => *s == ssrc,
            KeySelector::Source(a) => *a == src,
            KeySelector::Flow { src: a, dst: b } => *a == src && *b == dst,
        })
        .map(|k| k.keys.clone())
        .collect()
}

/// The RTP endpoint a RTCP source address belongs to (its m= line's RTP
/// address), else itself.
fn rtp_endpoint_of_rtcp(call: Option<&Call>, src: SocketAddr) -> SocketAddr {
    call.and_then(|c| {
        c.media()
            .iter()
            .rev()
            .find(|m| m.rtcp == src)
            .map(|m| m.rtp.to_socket_addr())
    })
    .unwrap_or(src)
}

fn party_sets(call: &Call) -> (HashSet<Endpoint>, HashSet<Endpoint>) {
    let mut media: Vec<_> = call.media().iter().collect();
    media.sort_by_key(|m| m.announced_ns);
    // The first SDP is the offer: from the caller when a request (INVITE)
    // carried it, from the callee when a response did (late offer).
    let first_is_request = media
        .first()
        .is_some_and(|m| !m.announced_by().starts_with(|c: char| c.is_ascii_digit()));
    let first_ts = media.first().map(|m| m.announced_ns);
    let mut first_set = HashSet::new();
    let mut other_set = HashSet::new();
    for m in &media {
        if Some(m.announced_ns) == first_ts {
            first_set.insert(m.rtp);
        } else if !first_set.contains(&m.rtp) {
            // A later SDP from the same side reuses its IP (and usually its
            // port); from the other side it names the other endpoint.
            let same_ip = first_set
                .iter()
                .any(|a| a.ip() == m.rtp.ip() && a.port() == m.rtp.port());
            if !same_ip {
                other_set.insert(m.rtp);
            }
        }
    }
    if first_is_request {
        (first_set, other_set)
    } else {
        (other_set, first_set)
    }
}

/// Decrypt, decode and assess the media in `frames`; write the outputs
/// into `folder`. `call` gives SDP keys, codecs, parties and SIP INFO; with
/// None (a capture without SIP), hand-given keys and static payload types
/// are all there is.
pub fn process_call(
    call: Option<&Call>,
    frames: &[CallFrame],
    folder: &Path,
    opts: &MediaOptions,
) -> Result<MediaSummary, MediaError> {
    let mut demux = Demux::new(call, opts, frames.len());
    for (n, f) in frames.iter().enumerate() {
        demux.frame(n, f);
    }
    let Demux {
        mut summary,
        cryptos,
        media_raw,
        media_dec,
        call_dec,
        any_srtp,
        ..
    } = demux;
    summary.record_crypto(&cryptos);

    // Parties, codecs, quality.
    let (pt_maps, origin) = assess_streams(call, &mut summary, opts);

    // DTMF: RFC 4733 over every stream, plus SIP INFO.
    summary.dtmf = detect_dtmf(call, &summary, &pt_maps);

    // Outputs.
    if !media_raw.is_empty() {
        let raw = media_raw.iter().map(|&n| &frames[n]);
        write_pcap_each(raw, &folder.join("media.pcap"))?;
    }
    if any_srtp {
        let call_dec = call_dec.iter().map(|o| o.frame(frames));
        write_pcap_each(call_dec, &folder.join("call-decrypted.pcap"))?;
        let media_dec = media_dec.iter().map(|o| o.frame(frames));
        write_pcap_each(media_dec, &folder.join("media-decrypted.pcap"))?;
    }
    if opts.audio && !summary.streams.is_empty() {
        write_audio(&mut summary, &pt_maps, origin, folder)?;
    }
    write_dtmf_csv(&summary.dtmf, &folder.join("dtmf.csv"))?;
    write_quality_json(call, &summary, opts, &folder.join("quality.json"))?;
    Ok(summary)
}

/// A frame of a decrypted capture: the call's frame as it is (by index, not
/// copied: most are), or rewritten.
enum OutFrame {
    Same(usize),
    Changed(CallFrame),
}

impl OutFrame {
    fn frame<'f>(&'f self, frames: &'f [CallFrame]) -> &'f CallFrame {
        match self {
            OutFrame::Same(n) => &frames[*n],
            OutFrame::Changed(f) => f,
        }
    }
}

/// The first pass over a call's frames: SIP and media apart, SRTP
/// decrypted, the decrypted captures built, RTP packets gathered per stream.
struct Demux<'c> {
    call: Option<&'c Call>,
    opts: &'c MediaOptions,
    dec: FrameDecoder,
    cryptos: HashMap<(SocketAddr, u32), Crypto>,
    stream_idx: HashMap<StreamKey, usize>,
    summary: MediaSummary,
    /// RTP/RTCP frames as captured (their indices).
    media_raw: Vec<usize>,
    /// RTP/RTCP frames decrypted.
    media_dec: Vec<OutFrame>,
    /// Every frame, media decrypted and SDP saying RTP/AVP.
    call_dec: Vec<OutFrame>,
    any_srtp: bool,
}

impl<'c> Demux<'c> {
    fn new(call: Option<&'c Call>, opts: &'c MediaOptions, frames: usize) -> Self {
        Demux {
            call,
            opts,
            dec: FrameDecoder::new(FragLimits::default()),
            cryptos: HashMap::new(),
            stream_idx: HashMap::new(),
            summary: MediaSummary::default(),
            media_raw: Vec::new(),
            media_dec: Vec::new(),
            call_dec: Vec::with_capacity(frames),
            any_srtp: false,
        }
    }

    fn frame(&mut self, n: usize, f: &CallFrame) {
        let (src, dst, payload) = match self.dec.decode(f.link, f.ts_ns, n as u64, &f.data) {
            Ok(Some(d)) if d.l4 == L4::Udp => (d.src, d.dst, d.payload.to_vec()),
            _ => {
                self.call_dec.push(OutFrame::Same(n));
                return;
            }
        };
        // RTP and RTCP are version 2 with at least 8 bytes.
        let is_media = payload.len() >= 8 && payload.first().is_some_and(|b| b >> 6 == 2);
        if is_media {
            self.media(n, f, src, dst, &payload);
        } else {
            let out = sip_frame(f, &payload).map_or(OutFrame::Same(n), OutFrame::Changed);
            self.call_dec.push(out);
        }
    }

    /// Keys a sender may use: hand-given ones first, then the SDP's.
    fn keys_for(&self, src: SocketAddr, dst: SocketAddr, ssrc: u32) -> Vec<SrtpKeys> {
        let mut k = manual_keys(self.opts, src, dst, ssrc);
        if let Some(c) = self.call {
            k.extend(sdp_keys(c, src));
        }
        k
    }

    /// One RTP or RTCP datagram.
    fn media(&mut self, n: usize, f: &CallFrame, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
        self.media_raw.push(n);
        let rtcp = voxtap_proto::srtp::looks_like_srtcp(payload);
        let ssrc = if rtcp {
            // The sender's SSRC follows the RTCP header, never encrypted.
            payload
                .get(4..)
                .and_then(|b| b.first_chunk().copied())
                .map(u32::from_be_bytes)
        } else {
            // Header only: SRTP encrypts the padding.
            RtpPacket::new_checked_header(payload)
                .ok()
                .map(|p| p.ssrc())
        };
        let Some(ssrc) = ssrc else {
            self.call_dec.push(OutFrame::Same(n));
            self.media_dec.push(OutFrame::Same(n));
            return;
        };
        let endpoint = if rtcp {
            rtp_endpoint_of_rtcp(self.call, src)
        } else {
            src
        };
        let ckey = (endpoint, ssrc);
        if !self.cryptos.contains_key(&ckey) {
            let keys = self.keys_for(endpoint, dst, ssrc);
            let keys = if keys.is_empty() && rtcp {
                self.keys_for(src, dst, ssrc)
            } else {
                keys
            };
            self.cryptos.insert(ckey, Crypto::new(keys));
        }
        let crypto = self
            .cryptos
            .get_mut(&ckey)
            .filter(|c| !c.candidates.is_empty());
        let is_srtp = crypto.is_some();
        self.any_srtp |= is_srtp;
        let plain = match crypto {
            Some(c) => c.unprotect(payload, rtcp),
            None => Some(payload.to_vec()),
        };
        match (&plain, is_srtp) {
            (Some(p), true) => match self.decrypted_frame(f, p) {
                Some(d) => {
                    self.call_dec.push(OutFrame::Changed(d.clone()));
                    self.media_dec.push(OutFrame::Changed(d));
                }
                None => self.push_same(n),
            },
            _ => self.push_same(n),
        }
        if rtcp {
            if plain.is_some() && is_srtp {
                self.summary.srtcp_ok += 1;
            }
            return;
        }
        let idx = self.stream(StreamKey::new(src, dst, ssrc), is_srtp);
        let Some(p) = plain else { return };
        let Ok(rtp) = RtpPacket::new_checked(&p) else {
            return;
        };
        if let Some(s) = self.summary.streams.get_mut(idx) {
            s.rtp_ok += 1;
            s.packets.push(MediaPacket {
                arrival_ns: f.ts_ns,
                seq: rtp.sequence(),
                timestamp: rtp.timestamp(),
                pt: rtp.payload_type(),
                payload: rtp.payload().to_vec(),
            });
        }
    }

    /// A media frame in both decrypted captures as captured.
    fn push_same(&mut self, n: usize) {
        self.call_dec.push(OutFrame::Same(n));
        self.media_dec.push(OutFrame::Same(n));
    }

    /// `f` with its payload replaced by the decrypted `plain` (None: it
    /// could not be rewritten, it stays as captured).
    fn decrypted_frame(&mut self, f: &CallFrame, plain: &[u8]) -> Option<CallFrame> {
        match rewrite::replace_udp_payload(f.link, &f.data, plain) {
            Some(data) => Some(CallFrame {
                ts_ns: f.ts_ns,
                orig_len: (f.orig_len as i64 + data.len() as i64 - f.data.len() as i64).max(0)
                    as u32,
                link: f.link,
                data: data.into(),
            }),
            None => {
                self.summary.not_rewritten += 1;
                None
            }
        }
    }

    /// The index of `key`'s stream in the summary, added on first sight.
    fn stream(&mut self, key: StreamKey, srtp: bool) -> usize {
        let streams = &mut self.summary.streams;
        *self.stream_idx.entry(key).or_insert_with(|| {
            streams.push(StreamMedia {
                key,
                party: Party::Unknown,
                codec: String::new(),
                payload_type: None,
                kind: CodecKind::Unsupported,
                codec_guess: None,
                undecodable: None,
                audio: None,
                srtp,
                srtp_suite: None,
                rtp_ok: 0,
                auth_failures: 0,
                roc: 0,
                quality: StreamQuality::default(),
                packets: Vec::new(),
            });
            streams.len() - 1
        })
    }
}

/// A SIP (or other non-media) frame for the decrypted capture: SIP whose
/// SDP says RTP/SAVP must say RTP/AVP there, or Wireshark decodes the
/// plain RTP as SRTP. None when it stays as captured.
fn sip_frame(f: &CallFrame, payload: &[u8]) -> Option<CallFrame> {
    let data = rewrite::plain_sdp(payload)
        .and_then(|p| rewrite::replace_udp_payload(f.link, &f.data, &p))?;
    Some(CallFrame {
        ts_ns: f.ts_ns,
        orig_len: data.len() as u32,
        link: f.link,
        data: data.into(),
    })
}

impl MediaSummary {
    /// Each stream's SRTP outcome: failures, the suite that worked, its ROC.
    fn record_crypto(&mut self, cryptos: &HashMap<(SocketAddr, u32), Crypto>) {
        for s in &mut self.streams {
            if let Some(c) = cryptos.get(&(s.key.src.into(), s.key.ssrc)) {
                s.auth_failures = c.auth_failures;
                if let Some(ctx) = c.chosen.and_then(|i| c.candidates.get(i)) {
                    s.srtp_suite = Some(ctx.suite());
                    s.roc = ctx.roc();
                }
            }
        }
        self.srtcp_auth_failures = cryptos.values().map(|c| c.rtcp_failures).sum();
    }
}

/// Parties, codecs and quality of every stream; the payload-type map of
/// each stream (in stream order) and the time origin of the audio.
fn assess_streams(
    call: Option<&Call>,
    summary: &mut MediaSummary,
    opts: &MediaOptions,
) -> (Vec<PtMap>, u64) {
    let (caller, callee) = call.map(party_sets).unwrap_or_default();
    let origin = summary
        .streams
        .iter()
        .flat_map(|s| s.packets.iter().map(|p| p.arrival_ns))
        .min()
        .unwrap_or(0);
    let mut pt_maps = Vec::new();
    for s in &mut summary.streams {
        s.party = if caller.contains(&s.key.src) || callee.contains(&s.key.dst) {
            Party::Caller
        } else if callee.contains(&s.key.src) || caller.contains(&s.key.dst) {
            Party::Callee
        } else {
            Party::Unknown
        };
        let map = resolve_codec(call, s);
        let clock = s
            .payload_type
            .and_then(|pt| map.get(&pt))
            .map_or(8000, |v| v.1);
        let arrival = |p: &MediaPacket| Arrival {
            seq: p.seq,
            timestamp: p.timestamp,
            arrival_ns: p.arrival_ns,
        };
        let (timed, untimed): (Vec<&MediaPacket>, Vec<&MediaPacket>) =
            s.packets.iter().partition(|p| Some(p.pt) == s.payload_type);
        let timed: Vec<Arrival> = timed.into_iter().map(arrival).collect();
        let untimed: Vec<Arrival> = untimed.into_iter().map(arrival).collect();
        let imp = CodecImpairment::for_kind(s.kind);
        s.quality = quality::assess_stream(&timed, &untimed, clock, imp, opts.quality);
        pt_maps.push(map);
    }
    (pt_maps, origin)
}

/// Name, codec and decodability of one stream (see [`codec`]); its
/// payload-type map, with the guess added when its rated payload type
/// was signalled nowhere.
fn resolve_codec(call: Option<&Call>, s: &mut StreamMedia) -> PtMap {
    let call_stream = call.and_then(|c| {
        let st = c.stream(&s.key)?;
        Some((c, st))
    });
    let media_idx = call_stream.and_then(|(_, st)| st.media_idx());
    let mut map = codec::pt_map(call, media_idx, s.key.dst.into());
    let mut by_time: Vec<&MediaPacket> = s.packets.iter().collect();
    by_time.sort_by_key(|p| p.arrival_ns);
    let mut order: Vec<u8> = Vec::new();
    for p in by_time {
        if !order.contains(&p.pt) {
            order.push(p.pt);
        }
    }
    s.payload_type = codec::rated_payload_type(order, &map);
    let Some(pt) = s.payload_type else {
        return map;
    };
    s.codec = match call_stream {
        Some((c, st)) => c.codec_name(st, pt),
        None => codec_name(call, pt),
    };
    if !map.contains_key(&pt)
        && let Some(g) = codec::guess_codec(&s.packets, pt)
    {
        map.insert(pt, (g.kind, g.clock));
        s.codec_guess = Some(g.label());
    }
    let known = map.get(&pt);
    s.kind = known.map_or(CodecKind::Unsupported, |v| v.0);
    s.undecodable = codec::undecodable_reason(s.kind, pt, known.is_some()).map(|why| match known {
        Some(_) => why,
        None => format!("{why}, and its packets fit no codec we know"),
    });
    map
}

/// The encoding name of `pt` for a stream the call table does not have:
/// from the call's SDP, else RFC 3551's table, else `PT<n>`.
fn codec_name(call: Option<&Call>, pt: u8) -> String {
    let from_sdp = call.and_then(|c| {
        c.media()
            .iter()
            .flat_map(|m| m.rtpmap.iter())
            .find(|r| r.pt == pt)
            .map(|r| r.encoding.to_string())
    });
    from_sdp
        .or_else(|| voxtap_proto::rtp::static_codec(pt).map(|c| c.name.to_string()))
        .unwrap_or_else(|| format!("PT{pt}"))
}

/// RFC 4733 events over every stream (by the stream's telephone-event
/// payload types, or by their look without SDP), plus SIP INFO digits,
/// in time order.
fn detect_dtmf(call: Option<&Call>, summary: &MediaSummary, pt_maps: &[PtMap]) -> Vec<DtmfEvent> {
    let mut det = Rfc4733Detector::new();
    for (s, map) in summary.streams.iter().zip(pt_maps) {
        let ev_pts: Vec<u8> = map
            .iter()
            .filter(|(_, v)| v.0 == CodecKind::TelephoneEvent)
            .map(|(k, _)| *k)
            .collect();
        let mut by_time: Vec<&MediaPacket> = s.packets.iter().collect();
        by_time.sort_by_key(|p| p.arrival_ns);
        for p in by_time {
            let is_ev = if ev_pts.is_empty() {
                (96..=127).contains(&p.pt) && matches!(p.payload[..], [code, _, _, _] if code <= 16)
            } else {
                ev_pts.contains(&p.pt)
            };
            if is_ev {
                let clock = map.get(&p.pt).map_or(8000, |v| v.1);
                det.push_payload(
                    p.arrival_ns,
                    Some(s.key.src.into()),
                    Some(s.key.dst.into()),
                    s.key.ssrc,
                    p.timestamp,
                    clock,
                    &p.payload,
                );
            }
        }
    }
    let mut events = det.finish();
    if let Some(c) = call {
        events.extend(dtmf::sip_info_events(
            c.sip()
                .iter()
                .map(|e| (e.ts_ns, e.src.into(), e.dst.into(), &*e.text)),
        ));
    }
    events.sort_by_key(|e| e.ts_ns);
    events
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> MediaError + '_ {
    move |source| MediaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Output rate and channels of a track holding `streams` (the highest any
/// of their audio payload types needs).
fn track_format(streams: &[(&[MediaPacket], &PtMap)]) -> (u32, u8) {
    let mut rate = 8000;
    let mut ch = 1;
    for (pkts, map) in streams {
        for p in pkts.iter() {
            if let Some((k, clock)) = map.get(&p.pt)
                && k.is_audio()
            {
                rate = rate.max(k.sample_rate(*clock));
                ch = ch.max(k.channels());
            }
        }
    }
    (rate, ch)
}

fn wav_err(p: &Path) -> impl FnOnce(hound::Error) -> MediaError + '_ {
    move |source| MediaError::Wav {
        path: p.to_path_buf(),
        source,
    }
}

/// caller.wav, callee.wav, stereo.wav and a WAV per stream of no party;
/// records what the layout did with each stream's packets.
fn write_audio(
    summary: &mut MediaSummary,
    maps: &[PtMap],
    origin: u64,
    folder: &Path,
) -> Result<(), MediaError> {
    let mut outcome: Vec<Option<StreamAudio>> = vec![None; summary.streams.len()];
    let mut layout_of = |idx: &[usize], streams: &[StreamMedia]| -> Track {
        let input: Vec<(&[MediaPacket], &PtMap)> = idx
            .iter()
            .map(|&i| (streams[i].packets.as_slice(), &maps[i]))
            .collect();
        let (rate, ch) = track_format(&input);
        let t = layout::layout(&input, origin, rate, ch);
        for (&i, a) in idx.iter().zip(&t.streams) {
            outcome[i] = Some(a.clone());
        }
        t
    };
    let of_party = |party: Party| -> Vec<usize> {
        (0..summary.streams.len())
            .filter(|&i| summary.streams[i].party == party)
            .collect()
    };
    let (caller_idx, callee_idx) = (of_party(Party::Caller), of_party(Party::Callee));
    let caller = (!caller_idx.is_empty()).then(|| layout_of(&caller_idx, &summary.streams));
    let callee = (!callee_idx.is_empty()).then(|| layout_of(&callee_idx, &summary.streams));
    let mut wavs = Vec::new();
    for (name, t) in [("caller.wav", &caller), ("callee.wav", &callee)] {
        if let Some(t) = t.as_ref().filter(|t| t.placed > 0) {
            let p = folder.join(name);
            layout::write_wav(&p, t.rate, t.channels, &t.samples).map_err(wav_err(&p))?;
            wavs.push(p);
        }
    }
    let placed = |t: &Option<Track>| t.as_ref().is_some_and(|t| t.placed > 0);
    if placed(&caller) || placed(&callee) {
        let empty = Track::default();
        let l = caller.as_ref().unwrap_or(&empty);
        let r = callee.as_ref().unwrap_or(&empty);
        let rate = l.rate.max(r.rate).max(8000);
        let st = layout::stereo(l, r, rate);
        let p = folder.join("stereo.wav");
        layout::write_wav(&p, rate, 2, &st).map_err(wav_err(&p))?;
        wavs.push(p);
    }
    for i in of_party(Party::Unknown) {
        let t = layout_of(&[i], &summary.streams);
        if t.placed == 0 {
            continue;
        }
        let s = &summary.streams[i];
        let p = folder.join(format!(
            "stream-{:08X}-{}.wav",
            s.key.ssrc,
            s.key.src.port()
        ));
        layout::write_wav(&p, t.rate, t.channels, &t.samples).map_err(wav_err(&p))?;
        wavs.push(p);
    }
    for (s, a) in summary.streams.iter_mut().zip(outcome) {
        s.audio = a;
    }
    summary.wavs = wavs;
    Ok(())
}

pub(crate) const DTMF_HEADER: &[&str] = &[
    "time",
    "source",
    "digit",
    "duration_ms",
    "src",
    "dst",
    "ssrc_hex",
    "volume",
    "ended",
];

fn write_dtmf_csv(events: &[DtmfEvent], path: &Path) -> Result<(), MediaError> {
    let f = File::create(path).map_err(io_err(path))?;
    let mut w = CsvWriter::new(BufWriter::new(f));
    w.row(DTMF_HEADER.iter().copied()).map_err(io_err(path))?;
    for e in events {
        let row = [
            format_ts(e.ts_ns),
            e.source.as_str().to_string(),
            e.digit.to_string(),
            e.duration_ms.map(|d| format!("{d:.1}")).unwrap_or_default(),
            e.src.map(|a| a.to_string()).unwrap_or_default(),
            e.dst.map(|a| a.to_string()).unwrap_or_default(),
            e.ssrc.map(|s| format!("0x{s:08X}")).unwrap_or_default(),
            e.volume.map(|v| v.to_string()).unwrap_or_default(),
            e.ended.to_string(),
        ];
        w.row(row.iter().map(String::as_str))
            .map_err(io_err(path))?;
    }
    w.into_inner().flush().map_err(io_err(path))
}

/// quality.json's `audio` object: whether the stream's audio was decoded
/// into a WAV, why not when it was not, and how gaps were filled.
fn audio_json(s: &StreamMedia) -> serde_json::Value {
    let a = s.audio.as_ref();
    let decoded = a.is_some_and(|a| a.decoded > 0);
    let reason = match a {
        _ if decoded => None,
        Some(a) => s.undecodable.clone().or_else(|| a.reason.clone()),
        None => s
            .undecodable
            .clone()
            .or_else(|| Some("audio output off".to_string())),
    };
    let concealment = a.and_then(|a| a.concealment).map(|c| match c {
        Concealment::Plc => "plc",
        Concealment::Noise => "noise",
        Concealment::Silence => "silence",
    });
    serde_json::json!({
        "decoded": decoded,
        "reason": reason,
        "packets_decoded": a.map_or(0, |a| a.decoded),
        "packets_undecodable": a.map_or(0, |a| a.undecodable),
        "concealed_ms": a.map(|a| a.concealed_ms.round()),
        "concealment": concealment,
    })
}

fn write_quality_json(
    call: Option<&Call>,
    summary: &MediaSummary,
    opts: &MediaOptions,
    path: &Path,
) -> Result<(), MediaError> {
    let streams: Vec<serde_json::Value> = summary
        .streams
        .iter()
        .map(|s| {
            let mut v = s.quality.to_json();
            let rtcp = call
                .and_then(|c| c.stream(&s.key))
                .filter(|st| st.rtcp.reports > 0)
                .map(|st| {
                    let clock = f64::from(st.clock_rate().max(1));
                    serde_json::json!({
                        "reports": st.rtcp.reports,
                        "fraction_lost_pct": f64::from(st.rtcp.fraction_lost) * 100.0 / 256.0,
                        "cumulative_lost": st.rtcp.cumulative_lost,
                        "jitter_ms": f64::from(st.rtcp.jitter_units) * 1000.0 / clock,
                    })
                });
            if let Some(o) = v.as_object_mut() {
                o.insert("ssrc".into(), format!("0x{:08X}", s.key.ssrc).into());
                o.insert("src".into(), s.key.src.to_string().into());
                o.insert("dst".into(), s.key.dst.to_string().into());
                o.insert("party".into(), s.party.as_str().into());
                o.insert("codec".into(), s.codec.clone().into());
                o.insert("payload_type".into(), s.payload_type.into());
                o.insert("codec_guess".into(), s.codec_guess.clone().into());
                o.insert("audio".into(), audio_json(s));
                o.insert("srtp".into(), s.srtp.into());
                o.insert("srtp_suite".into(), s.srtp_suite.map(|x| x.name()).into());
                o.insert("srtp_auth_failures".into(), s.auth_failures.into());
                o.insert("srtp_roc".into(), s.roc.into());
                o.insert("rtcp".into(), rtcp.unwrap_or(serde_json::Value::Null));
            }
            v
        })
        .collect();
    let doc = serde_json::json!({
        "call_id": call.map(|c| c.call_id().to_string()),
        "model": "ITU-T G.107 E-model, see docs/media.md",
        "jitter_buffer_ms": opts.quality.jitter_buffer_ms,
        "network_delay_ms": opts.quality.network_delay_ms,
        "srtcp_decrypted": summary.srtcp_ok,
        "srtcp_auth_failures": summary.srtcp_auth_failures,
        "dtmf_events": summary.dtmf.len(),
        "streams": streams,
    });
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    std::fs::write(path, text + "\n").map_err(io_err(path))
}

/// `voxtap media`: re-read one call's `call.pcap` from an import output
/// folder, rebuild the call from it (SIP, SDP keys, streams) with `pipeline`
/// (its TLS keys, for SIP over TLS) and write the media outputs into its
/// folder again.
pub fn regenerate(
    out_dir: &Path,
    call_id: &str,
    opts: &MediaOptions,
    pipeline: crate::pipeline::PipelineConfig,
) -> Result<MediaSummary, RegenerateError> {
    // Not an import output folder: say so, as before.
    std::fs::metadata(out_dir.join("calls.csv"))
        .map_err(|e| RegenerateError::Read(out_dir.join("calls.csv"), e))?;
    // calls.csv shows a Call-ID that looks like a formula with a leading '
    // (output::safe_cell): accept it as shown there too.
    let (call_id, folder) = match (
        find_call_folder(out_dir, call_id),
        call_id.strip_prefix('\''),
    ) {
        (Err(RegenerateError::NoCall(_)), Some(shown)) => {
            (shown, find_call_folder(out_dir, shown)?)
        }
        (found, _) => (call_id, found?),
    };
    let pcap = folder.join("call.pcap");
    let mut pipeline = crate::pipeline::Pipeline::new(pipeline);
    let mut reader = crate::pcapfile::open(&pcap)
        .map_err(|e| RegenerateError::Pcap(pcap.clone(), e.to_string()))?;
    let mut frames = Vec::new();
    while let Some(rec) = reader
        .next_packet()
        .map_err(|e| RegenerateError::Pcap(pcap.clone(), e.to_string()))?
    {
        pipeline.process(
            rec.link,
            rec.ts_ns,
            crate::calls::PacketRef::new(0, rec.offset),
            rec.data,
        );
        frames.push(CallFrame {
            ts_ns: rec.ts_ns,
            orig_len: rec.orig_len,
            link: rec.link,
            data: rec.data.into(),
        });
    }
    pipeline.finish();
    let calls = pipeline.drain_ended();
    let call = calls.iter().find(|c| c.call_id() == call_id);
    process_call(call, &frames, &folder, opts).map_err(RegenerateError::Media)
}

/// The folder of call `call_id` in an import output: named after the
/// Call-ID (`output::folder_base_name`, then `-2`, `-3`... for a reused
/// Call-ID), else any folder whose sip.txt names it (outputs of older
/// versions, which named folders differently).
fn find_call_folder(out_dir: &Path, call_id: &str) -> Result<PathBuf, RegenerateError> {
    let base = crate::output::folder_base_name(call_id.as_bytes());
    for n in 1..=64u32 {
        let name = if n == 1 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        let dir = out_dir.join(&name);
        if !dir.exists() {
            break;
        }
        if call_id_in_folder(&dir, call_id) {
            return Ok(dir);
        }
    }
    let entries =
        std::fs::read_dir(out_dir).map_err(|e| RegenerateError::Read(out_dir.to_path_buf(), e))?;
    entries
        .flatten()
        .map(|e| e.path())
        .find(|p| call_id_in_folder(p, call_id))
        .ok_or_else(|| RegenerateError::NoCall(call_id.to_string()))
}

/// Whether `folder` holds a call.pcap and a sip.txt naming Call-ID `call_id`.
fn call_id_in_folder(folder: &Path, call_id: &str) -> bool {
    if !folder.join("call.pcap").exists() {
        return false;
    }
    let sip = std::fs::read_to_string(folder.join("sip.txt")).unwrap_or_default();
    sip.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            (k.eq_ignore_ascii_case("call-id") || k == "i") && v.trim() == call_id
        })
    })
}

#[derive(Debug, Error)]
pub enum RegenerateError {
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("no call folder with Call-ID {0}")]
    NoCall(String),
    #[error("reading {0}: {1}")]
    Pcap(PathBuf, String),
    #[error(transparent)]
    Media(MediaError),
}
