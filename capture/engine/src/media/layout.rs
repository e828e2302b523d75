//! Audio layout: decoded RTP payloads placed on a timeline by their RTP
//! timestamps, so loss, silence suppression and hold become silence of the
//! right length, reordered packets land in order and duplicates are dropped.

use std::collections::{HashMap, HashSet};

use voxtap_codecs::{CodecKind, Decoder};

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
}

/// Longest track we build (memory bound against absurd timestamps): 4 h.
const MAX_SECONDS: u64 = 4 * 3600;

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

/// Lay out the packets of one direction (several SSRCs allowed, each
/// `(stream packets in arrival order)`) from `origin_ns` at `rate` Hz and
/// `channels`. Each run of packets of one SSRC with the same clock rate
/// is anchored on arrival time (so SSRC and codec changes land where they
/// happened) and laid out inside by RTP timestamps.
pub fn layout(
    streams: &[&[MediaPacket]],
    pts: &PtMap,
    origin_ns: u64,
    rate: u32,
    channels: u8,
) -> Track {
    let ch = usize::from(channels.max(1));
    let mut t = Track {
        rate,
        channels: channels.max(1),
        ..Default::default()
    };
    let max_frames = MAX_SECONDS * u64::from(rate);
    for pkts in streams {
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
        // Split into runs of one clock rate (codec change to another clock).
        let mut runs: Vec<Vec<usize>> = Vec::new();
        let mut last_clock = None;
        for &i in &order {
            let clock = pts.get(&pkts[i].pt).map(|x| x.1);
            let Some(clock) = clock else {
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
        let mut decoders: HashMap<u8, Decoder> = HashMap::new();
        for run in runs {
            let Some(&i0) = run.first() else { continue };
            let clock = f64::from(pts.get(&pkts[i0].pt).map_or(8000, |x| x.1).max(1));
            let ts0 = pkts[i0].timestamp;
            // Extended timestamp relative to the run's first packet.
            let rel = |i: usize| f64::from(pkts[i].timestamp.wrapping_sub(ts0) as i32) / clock;
            // Anchor: the earliest (arrival - media time): the packet that
            // suffered least delay defines where media time 0 is.
            let anchor = run
                .iter()
                .map(|&i| pkts[i].arrival_ns as f64 / 1e9 - rel(i))
                .fold(f64::INFINITY, f64::min);
            let base = (anchor - origin_ns as f64 / 1e9).max(0.0);
            let mut pcm = Vec::new();
            for &i in &run {
                let p = &pkts[i];
                let Some(&(kind, _)) = pts.get(&p.pt) else {
                    continue;
                };
                if !kind.is_audio() {
                    // CN, events: nothing is written, the gap stays silent.
                    continue;
                }
                let dec = match decoders.entry(p.pt) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => match Decoder::new(kind) {
                        Ok(d) => v.insert(d),
                        Err(_) => {
                            t.undecodable += 1;
                            continue;
                        }
                    },
                };
                pcm.clear();
                dec.decode(&p.payload, &mut pcm);
                let src_rate = kind.sample_rate(clock as u32);
                let src_ch = usize::from(kind.channels().max(1));
                let frames = convert(&pcm, src_ch, src_rate, ch, rate);
                let start_s = base + rel(i);
                if start_s < 0.0 {
                    continue;
                }
                let start = (start_s * f64::from(rate)).round() as u64;
                if start + (frames.len() / ch) as u64 > max_frames {
                    continue;
                }
                let at = start as usize * ch;
                if t.samples.len() < at + frames.len() {
                    t.samples.resize(at + frames.len(), 0);
                }
                t.samples[at..at + frames.len()].copy_from_slice(&frames);
                t.placed += 1;
            }
        }
    }
    t
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

/// Interleave two mono-ized tracks of the same rate as left/right.
pub fn stereo(left: &Track, right: &Track, rate: u32) -> Vec<i16> {
    let l = convert(
        &left.samples,
        usize::from(left.channels.max(1)),
        left.rate.max(1),
        1,
        rate,
    );
    let r = convert(
        &right.samples,
        usize::from(right.channels.max(1)),
        right.rate.max(1),
        1,
        rate,
    );
    let n = l.len().max(r.len());
    let mut out = Vec::with_capacity(2 * n);
    for i in 0..n {
        out.push(l.get(i).copied().unwrap_or(0));
        out.push(r.get(i).copied().unwrap_or(0));
    }
    out
}

/// Write a 16-bit PCM WAV.
pub(crate) fn write_wav(
    path: &std::path::Path,
    rate: u32,
    channels: u8,
    samples: &[i16],
) -> Result<(), hound::Error> {
    let spec = hound::WavSpec {
        channels: u16::from(channels.max(1)),
        sample_rate: rate.max(1),
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    let ch = usize::from(channels.max(1));
    // Whole frames only: a WAV's data is frames of `channels` samples.
    for &s in &samples[..samples.len() / ch * ch] {
        w.write_sample(s)?;
    }
    w.finalize()
}
