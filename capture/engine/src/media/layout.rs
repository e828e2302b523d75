//! Audio layout: decoded RTP payloads placed on a timeline by their RTP
//! timestamps, so loss, silence suppression and hold become silence of the
//! right length, reordered packets land in order and duplicates are dropped.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use voxtap_codecs::{CodecKind, Concealment, Decoder};

/// One RTP packet of a stream, already decrypted.
#[derive(Clone, Debug)]
pub struct MediaPacket {
    pub arrival_ns: u64,
    pub seq: u16,
    pub timestamp: u32,
    pub pt: u8,
    pub payload: Vec<u8>,
}

/// How to decode payload type `pt`: codec and RTP clock rate.
pub(crate) type PtMap = HashMap<u8, (CodecKind, u32)>;

/// A decoded track: interleaved samples at `rate` with `channels`.
#[derive(Clone, Debug, Default)]
pub struct Track {
    pub rate: u32,
    pub channels: u8,
    pub samples: Vec<i16>,
    /// Packets placed, and packets we could not decode (unknown codec).
    pub placed: u64,
    pub undecodable: u64,
    pub duplicates: u64,
    /// Per input stream, in the order given.
    pub streams: Vec<StreamAudio>,
}

/// What the layout did with one stream's packets.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamAudio {
    /// Audio packets decoded and placed.
    pub decoded: u64,
    /// Audio packets not decoded, with the first reason.
    pub undecodable: u64,
    pub reason: Option<String>,
    /// Audio filled by concealment, ms: lost packets, and the gaps after a
    /// SID or comfort-noise packet.
    pub concealed_ms: f64,
    /// The concealment of the decoder that filled the most recent gap.
    pub concealment: Option<Concealment>,
}

/// Longest track we build (memory bound against absurd timestamps): 4 h.
const MAX_SECONDS: u64 = 4 * 3600;

/// Longest gap one concealment fills, seconds: beyond that (hold, a
/// sender that stopped without a SID) the rest of the gap stays silent,
/// so hours of codec PLC are never run.
const MAX_CONCEAL_SECONDS: u64 = 30;

/// Extend 16-bit sequence numbers (packets in arrival order).
fn extend_seqs(pkts: &[MediaPacket]) -> Vec<i64> {
    let mut out = Vec::with_capacity(pkts.len());
    let mut hi: Option<i64> = None;
    for p in pkts {
        let e = match hi {
            None => i64::from(p.seq),
            Some(h) => h + i64::from(p.seq.wrapping_sub((h & 0xFFFF) as u16) as i16),
        };
        hi = Some(hi.map_or(e, |h| h.max(e)));
        out.push(e);
    }
    out
}

/// Packet indices in sequence order without duplicates, split into runs of
/// one clock rate (a codec change to another clock starts a run); packets
/// of payload types `pts` does not know are counted as undecodable.
fn runs_of(pkts: &[MediaPacket], pts: &PtMap, t: &mut Track) -> Vec<Vec<usize>> {
    let ext = extend_seqs(pkts);
    let mut order: Vec<usize> = (0..pkts.len()).collect();
    order.sort_by_key(|&i| ext[i]);
    let mut seen = HashSet::new();
    order.retain(|&i| {
        let fresh = seen.insert(ext[i]);
        if !fresh {
            t.duplicates += 1;
        }
        fresh
    });
    let mut runs: Vec<Vec<usize>> = Vec::new();
    let mut last_clock = None;
    for &i in &order {
        let Some(&(_, clock)) = pts.get(&pkts[i].pt) else {
            t.undecodable += 1;
            continue;
        };
        if last_clock != Some(clock) {
            runs.push(Vec::new());
            last_clock = Some(clock);
        }
        if let Some(r) = runs.last_mut() {
            r.push(i);
        }
    }
    runs
}

/// Lay out the packets of one direction (several SSRCs allowed, each
/// `(stream packets in arrival order, its payload types)`) from
/// `origin_ns` at `rate` Hz and `channels`. Each run of packets of one
/// SSRC with the same clock rate is anchored on arrival time (so SSRC and
/// codec changes land where they happened) and laid out inside by RTP
/// timestamps; a gap between the end of one packet's audio and the next
/// packet is filled by the decoder's concealment (see [`Decoder::conceal`]:
/// PLC, comfort noise after a SID or RFC 3389 packet, or silence).
pub fn layout(
    streams: &[(&[MediaPacket], &PtMap)],
    origin_ns: u64,
    rate: u32,
    channels: u8,
) -> Track {
    let mut t = Track {
        rate,
        channels: channels.max(1),
        ..Default::default()
    };
    for &(pkts, pts) in streams {
        let mut audio = StreamAudio::default();
        let mut decoders: HashMap<u8, Result<Decoder, String>> = HashMap::new();
        for run in runs_of(pkts, pts, &mut t) {
            let mut r = RunLayout::new(pkts, &run, pts, origin_ns);
            for &i in &run {
                r.packet(&pkts[i], &mut decoders, &mut t, &mut audio);
            }
        }
        t.streams.push(audio);
    }
    t
}

/// One run's timeline: where media time 0 is on the track, and where the
/// audio decoded so far ends.
struct RunLayout<'a> {
    pts: &'a PtMap,
    clock: f64,
    ts0: u32,
    /// Track time (seconds) of media time 0.
    base: f64,
    /// End of the audio so far, in RTP units from `ts0`.
    end: Option<i64>,
    /// The decoder that fills a gap: the codec of the last audio packet,
    /// or the comfort noise of the last RFC 3389 packet.
    filler: Option<u8>,
    pcm: Vec<i16>,
}

type Decoders = HashMap<u8, Result<Decoder, String>>;

impl<'a> RunLayout<'a> {
    fn new(pkts: &[MediaPacket], run: &[usize], pts: &'a PtMap, origin_ns: u64) -> Self {
        let i0 = run[0];
        let clock = f64::from(pts.get(&pkts[i0].pt).map_or(8000, |x| x.1).max(1));
        let ts0 = pkts[i0].timestamp;
        let rel = |i: usize| f64::from(pkts[i].timestamp.wrapping_sub(ts0) as i32) / clock;
        // Anchor: the earliest (arrival - media time): the packet that
        // suffered least delay defines where media time 0 is.
        let anchor = run
            .iter()
            .map(|&i| pkts[i].arrival_ns as f64 / 1e9 - rel(i))
            .fold(f64::INFINITY, f64::min);
        RunLayout {
            pts,
            clock,
            ts0,
            base: (anchor - origin_ns as f64 / 1e9).max(0.0),
            end: None,
            filler: None,
            pcm: Vec::new(),
        }
    }

    /// Decode one packet onto the track, concealing the gap before it.
    fn packet(
        &mut self,
        p: &MediaPacket,
        decoders: &mut Decoders,
        t: &mut Track,
        a: &mut StreamAudio,
    ) {
        let Some(&(kind, clock)) = self.pts.get(&p.pt) else {
            return;
        };
        if kind == CodecKind::TelephoneEvent {
            return;
        }
        let rel = i64::from(p.timestamp.wrapping_sub(self.ts0) as i32);
        if let Some(end) = self.end
            && rel > end
        {
            self.fill_gap(end, rel - end, decoders, t, a);
        }
        let entry = decoders
            .entry(p.pt)
            .or_insert_with(|| Decoder::with_clock(kind, clock).map_err(|e| e.to_string()));
        let dec = match entry {
            Ok(d) => d,
            Err(why) => {
                a.undecodable += 1;
                t.undecodable += 1;
                a.reason.get_or_insert_with(|| why.clone());
                return;
            }
        };
        self.pcm.clear();
        if let Err(e) = dec.try_decode(&p.payload, &mut self.pcm) {
            // Concealed with the gap before the next packet.
            a.undecodable += 1;
            t.undecodable += 1;
            a.reason.get_or_insert_with(|| e.to_string());
            return;
        }
        self.filler = Some(p.pt);
        if kind == CodecKind::Cn {
            // A SID: no samples; its noise fills the gap after it.
            self.end = Some(self.end.map_or(rel, |e| e.max(rel)));
            return;
        }
        let (rate, ch) = (dec.sample_rate(), dec.channels());
        let frames = self.pcm.len() / usize::from(ch.max(1));
        self.place(rel, rate, ch, t);
        self.end = Some(rel + (frames as f64 * self.clock / f64::from(rate)).round() as i64);
        a.decoded += 1;
        t.placed += 1;
    }

    /// `gap` RTP units of audio that did not arrive, from `end` on.
    fn fill_gap(
        &mut self,
        end: i64,
        gap: i64,
        decoders: &mut Decoders,
        t: &mut Track,
        a: &mut StreamAudio,
    ) {
        let Some(Ok(dec)) = self.filler.and_then(|pt| decoders.get_mut(&pt)) else {
            return;
        };
        let rate = dec.sample_rate();
        let frames = (gap as f64 * f64::from(rate) / self.clock).round() as u64;
        let frames = frames.min(MAX_CONCEAL_SECONDS * u64::from(rate)) as usize;
        self.pcm.clear();
        dec.conceal(frames, &mut self.pcm);
        let ch = dec.channels();
        a.concealed_ms += frames as f64 * 1000.0 / f64::from(rate.max(1));
        a.concealment = Some(dec.concealment());
        self.place(end, rate, ch, t);
    }

    /// Put `self.pcm` (at `rate`, `ch`) on the track at RTP time `rel`.
    fn place(&self, rel: i64, rate: u32, ch: u8, t: &mut Track) {
        let tch = usize::from(t.channels.max(1));
        let frames = convert(&self.pcm, usize::from(ch.max(1)), rate, tch, t.rate);
        let start_s = self.base + rel as f64 / self.clock;
        if start_s < 0.0 {
            return;
        }
        let start = (start_s * f64::from(t.rate)).round() as u64;
        if start + (frames.len() / tch) as u64 > MAX_SECONDS * u64::from(t.rate) {
            return;
        }
        let at = start as usize * tch;
        if t.samples.len() < at + frames.len() {
            t.samples.resize(at + frames.len(), 0);
        }
        t.samples[at..at + frames.len()].copy_from_slice(&frames);
    }
}

/// Channel and rate conversion (linear interpolation): enough for putting a
/// codec change on one timeline; not a studio resampler.
fn convert(pcm: &[i16], src_ch: usize, src_rate: u32, dst_ch: usize, dst_rate: u32) -> Vec<i16> {
    let n_in = pcm.len() / src_ch.max(1);
    if n_in == 0 {
        return Vec::new();
    }
    let frame = |i: usize, c: usize| -> f64 {
        let i = i.min(n_in - 1);
        if dst_ch == src_ch {
            f64::from(pcm[i * src_ch + c])
        } else if dst_ch == 1 {
            (0..src_ch)
                .map(|k| f64::from(pcm[i * src_ch + k]))
                .sum::<f64>()
                / src_ch as f64
        } else {
            f64::from(pcm[i * src_ch + c.min(src_ch - 1)])
        }
    };
    if src_rate == dst_rate && src_ch == dst_ch {
        return pcm[..n_in * src_ch].to_vec();
    }
    let n_out = (n_in as u64 * u64::from(dst_rate) / u64::from(src_rate.max(1))) as usize;
    let mut out = Vec::with_capacity(n_out * dst_ch);
    for j in 0..n_out {
        let x = j as f64 * f64::from(src_rate) / f64::from(dst_rate);
        let i = x.floor() as usize;
        let f = x - i as f64;
        for c in 0..dst_ch {
            let v = frame(i, c) * (1.0 - f) + frame(i + 1, c) * f;
            out.push(v.round().clamp(-32768.0, 32767.0) as i16);
        }
    }
    out
}

/// A track as mono at `rate`: borrowed when it already is (no copy of a
/// whole call's samples), converted otherwise.
fn mono_at(t: &Track, rate: u32) -> Cow<'_, [i16]> {
    let ch = usize::from(t.channels.max(1));
    if ch == 1 && t.rate.max(1) == rate {
        return Cow::Borrowed(&t.samples);
    }
    Cow::Owned(convert(&t.samples, ch, t.rate.max(1), 1, rate))
}

/// Interleave two mono-ized tracks of the same rate as left/right.
pub fn stereo(left: &Track, right: &Track, rate: u32) -> Vec<i16> {
    let (l, r) = (mono_at(left, rate), mono_at(right, rate));
    let n = l.len().max(r.len());
    // Zero-filled, then each side written into its slots: the shorter side
    // ends in silence, and the loops have no per-sample bounds branch.
    let mut out = vec![0i16; 2 * n];
    for (o, &s) in out.chunks_exact_mut(2).zip(l.iter()) {
        o[0] = s;
    }
    for (o, &s) in out.chunks_exact_mut(2).zip(r.iter()) {
        o[1] = s;
    }
    out
}

/// Bytes of samples written at once.
const WAV_CHUNK_BYTES: usize = 64 * 1024;

/// Write a 16-bit PCM WAV. Up to two channels, the header is hound's
/// PCMWAVEFORMAT one with the sizes known up front, and the samples go out
/// in 64 KiB writes (hound wrote them one checked sample at a time through
/// its buffer, then sought back to patch the sizes: about 3 % of an import
/// with every output). More channels (WAVEFORMATEXTENSIBLE) or a data
/// chunk over 4 GiB: through hound.
pub(crate) fn write_wav(
    path: &std::path::Path,
    rate: u32,
    channels: u8,
    samples: &[i16],
) -> Result<(), hound::Error> {
    let ch = usize::from(channels.max(1));
    // Whole frames only: a WAV's data is frames of `channels` samples.
    let whole = &samples[..samples.len() / ch * ch];
    let data_len = whole
        .len()
        .checked_mul(2)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n <= u32::MAX - 36);
    match data_len {
        Some(n) if ch <= 2 => {
            write_pcm_wav(path, rate.max(1), ch as u16, whole, n).map_err(hound::Error::IoError)
        }
        _ => write_wav_hound(path, rate, channels, whole),
    }
}

/// The 44-byte header hound writes for 16-bit PCM with one or two channels.
fn pcm_wav_header(rate: u32, channels: u16, data_len: u32) -> [u8; 44] {
    let block = 2 * channels;
    let mut h = [0u8; 44];
    let parts: [&[u8]; 13] = [
        b"RIFF",
        &(36 + data_len).to_le_bytes(),
        b"WAVE",
        b"fmt ",
        &16u32.to_le_bytes(),
        &1u16.to_le_bytes(),
        &channels.to_le_bytes(),
        &rate.to_le_bytes(),
        &rate.wrapping_mul(u32::from(block)).to_le_bytes(),
        &block.to_le_bytes(),
        &16u16.to_le_bytes(),
        b"data",
        &data_len.to_le_bytes(),
    ];
    let mut at = 0;
    for p in parts {
        h[at..at + p.len()].copy_from_slice(p);
        at += p.len();
    }
    h
}

fn write_pcm_wav(
    path: &std::path::Path,
    rate: u32,
    channels: u16,
    samples: &[i16],
    data_len: u32,
) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    let mut buf = Vec::with_capacity(WAV_CHUNK_BYTES);
    buf.extend_from_slice(&pcm_wav_header(rate, channels, data_len));
    for chunk in samples.chunks(WAV_CHUNK_BYTES / 2) {
        buf.extend(chunk.iter().flat_map(|s| s.to_le_bytes()));
        f.write_all(&buf)?;
        buf.clear();
    }
    f.write_all(&buf)
}

/// Through hound (channels over two, or the reference in the tests).
fn write_wav_hound(
    path: &std::path::Path,
    rate: u32,
    channels: u8,
    whole: &[i16],
) -> Result<(), hound::Error> {
    let spec = hound::WavSpec {
        channels: u16::from(channels.max(1)),
        sample_rate: rate.max(1),
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    for chunk in whole.chunks(16 * 1024) {
        let mut sw = w.get_i16_writer(chunk.len() as u32);
        for &s in chunk {
            sw.write_sample(s);
        }
        sw.flush()?;
    }
    w.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our WAV writer gives hound's bytes, for one and two channels, odd
    /// lengths (a partial last frame dropped), empty data and several rates;
    /// three channels go through hound itself.
    #[test]
    fn wav_files_are_byte_identical_to_hounds() {
        let dir = std::env::temp_dir().join(format!("voxtap-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let samples: Vec<i16> = (0..100_001)
            .map(|i| (i * 7919 % 65536 - 32768) as i16)
            .collect();
        for (ch, rate, n) in [
            (1, 8000, 100_001),
            (2, 16000, 100_001),
            (2, 48000, 0),
            (1, 44100, 1),
            (3, 8000, 99),
        ] {
            let (a, b) = (dir.join("ours.wav"), dir.join("hound.wav"));
            write_wav(&a, rate, ch, &samples[..n]).unwrap();
            let whole = &samples[..n / usize::from(ch) * usize::from(ch)];
            write_wav_hound(&b, rate, ch, whole).unwrap();
            let (x, y) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
            assert_eq!(x.len(), y.len(), "ch={ch} rate={rate} n={n}");
            assert!(x == y, "ch={ch} rate={rate} n={n}");
            let r = hound::WavReader::open(&a).unwrap();
            assert_eq!(r.len() as usize, whole.len());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Stereo interleaves the two sides, the shorter one padded with
    /// silence, and converts a side of another rate or channel count first.
    #[test]
    fn stereo_interleaves_and_pads() {
        let t = |rate, channels, samples: Vec<i16>| Track {
            rate,
            channels,
            samples,
            ..Default::default()
        };
        let st = stereo(&t(8000, 1, vec![1, 2, 3]), &t(8000, 1, vec![10]), 8000);
        assert_eq!(st, vec![1, 10, 2, 0, 3, 0]);
        // A stereo right side is averaged to mono.
        let st = stereo(&t(8000, 1, vec![]), &t(8000, 2, vec![10, 20, 30, 50]), 8000);
        assert_eq!(st, vec![0, 15, 0, 40]);
        assert!(stereo(&t(8000, 1, vec![]), &t(8000, 1, vec![]), 8000).is_empty());
    }

    fn pkt(seq: u16, pt: u8, payload: Vec<u8>) -> MediaPacket {
        MediaPacket {
            arrival_ns: 1_000_000_000 + u64::from(seq) * 20_000_000,
            seq,
            timestamp: u32::from(seq) * 160,
            pt,
            payload,
        }
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
    }

    /// A lost packet keeps its place (G.711: silence), a CN packet's level
    /// fills the silence after it with noise, and the audio after both
    /// lands where its timestamp says.
    #[test]
    fn gaps_are_concealed_in_place() {
        let pts: PtMap = [(0, (CodecKind::Pcmu, 8000)), (13, (CodecKind::Cn, 8000))]
            .into_iter()
            .collect();
        // 0x80 is µ-law's loudest positive value: easy to find.
        let mut pkts: Vec<MediaPacket> = (0..10).map(|i| pkt(i, 0, vec![0x80; 160])).collect();
        pkts.remove(4); // lost
        // Seq 10: a SID at -40 dBov; 11 more 20 ms slots of DTX, then speech.
        pkts.push(pkt(10, 13, vec![40]));
        let mut last = pkt(11, 0, vec![0x80; 160]);
        last.timestamp = 22 * 160;
        last.arrival_ns = 1_000_000_000 + 22 * 20_000_000;
        pkts.push(last);
        let t = layout(&[(&pkts, &pts)], 1_000_000_000, 8000, 1);
        assert_eq!(t.samples.len(), 23 * 160);
        assert!(
            t.samples[4 * 160..5 * 160].iter().all(|&v| v == 0),
            "loss: silence"
        );
        assert!(t.samples[..4 * 160].iter().all(|&v| v == 32124));
        let noise = &t.samples[10 * 160..22 * 160];
        let want = 32767.0 * 10f64.powf(-2.0);
        assert!(
            (rms(noise) / want - 1.0).abs() < 0.1,
            "{} vs {want}",
            rms(noise)
        );
        assert!(t.samples[22 * 160..].iter().all(|&v| v == 32124));
        let a = &t.streams[0];
        assert_eq!((a.decoded, a.undecodable), (10, 0));
        assert_eq!(a.concealment, Some(Concealment::Noise));
        assert!((a.concealed_ms - 260.0).abs() < 1e-6, "{}", a.concealed_ms);
    }

    /// A codec this build cannot decode leaves no samples and says why.
    #[test]
    fn undecodable_streams_say_why() {
        let pts: PtMap = [(97, (CodecKind::Ilbc { frame_ms: 20 }, 8000))]
            .into_iter()
            .collect();
        let pkts: Vec<MediaPacket> = (0..5).map(|i| pkt(i, 97, vec![0; 38])).collect();
        let t = layout(&[(&pkts, &pts)], 0, 8000, 1);
        assert_eq!(t.placed, 0);
        assert!(t.samples.is_empty());
        let a = &t.streams[0];
        assert_eq!(a.undecodable, 5);
        assert!(a.reason.as_deref().unwrap().starts_with("iLBC: no decoder"));
    }
}
