//! A codec guess for a stream seen without its signalling (a media-only
//! capture, a dynamic payload type whose SDP was missed): from the RTP
//! clock implied by timestamp steps over arrival intervals, the usual
//! payload size for that packet duration, and the structure of the
//! payloads where the format has one (GSM's signature, AMR's table of
//! contents, Opus's TOC octet). Always labelled as a guess: G.726's
//! packing and G.711's law, in particular, cannot be told from sizes.

use crate::amr::{self, MAX_FRAMES, TocEntry};
use crate::{AmrParams, CodecKind, G726Packing};

/// One packet as the guess needs it.
#[derive(Clone, Copy, Debug)]
pub struct Sample<'a> {
    pub arrival_ns: u64,
    pub timestamp: u32,
    pub payload: &'a [u8],
}

/// A guessed codec: never as sure as an SDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Guess {
    pub kind: CodecKind,
    /// The RTP clock the timing implies.
    pub clock: u32,
    /// What the guess rests on, for the call page.
    pub basis: &'static str,
}

impl Guess {
    /// "guessed from payload size and timing: …".
    pub fn label(&self) -> String {
        format!("guessed from payload size and timing: {}", self.basis)
    }
}

fn median(mut v: Vec<u64>) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    Some(v[v.len() / 2])
}

/// (timestamp step, clock) from packets in arrival order, or `None` when
/// the timing fits no usual audio clock.
fn clock_of(pkts: &[Sample<'_>]) -> Option<(u32, u32)> {
    let steps: Vec<u64> = pkts
        .windows(2)
        .map(|w| u64::from(w[1].timestamp.wrapping_sub(w[0].timestamp)))
        .filter(|&d| d > 0 && d < 48_000)
        .collect();
    let step = median(steps)?;
    // Intervals of the packets one step apart (not across DTX gaps).
    let gaps: Vec<u64> = pkts
        .windows(2)
        .filter(|w| u64::from(w[1].timestamp.wrapping_sub(w[0].timestamp)) == step)
        .map(|w| w[1].arrival_ns.saturating_sub(w[0].arrival_ns))
        .collect();
    let interval = median(gaps)?.max(1);
    let clock = step as f64 * 1e9 / interval as f64;
    [8000u32, 16_000, 48_000]
        .into_iter()
        .find(|&c| (clock / f64::from(c) - 1.0).abs() < 0.15)
        .map(|c| (step as u32, c))
}

/// The most common payload length.
fn usual_len(pkts: &[Sample<'_>]) -> usize {
    let mut lens: Vec<usize> = pkts.iter().map(|p| p.payload.len()).collect();
    lens.sort_unstable();
    let (mut best, mut best_n, mut i) = (0, 0, 0);
    while i < lens.len() {
        let j = lens[i..].iter().take_while(|&&l| l == lens[i]).count();
        if j > best_n {
            (best, best_n) = (lens[i], j);
        }
        i += j;
    }
    best
}

/// Whether every payload is an RFC 4867 packet of exactly its length whose
/// frames fill `step` samples.
fn all_amr(pkts: &[Sample<'_>], params: AmrParams, step: u32) -> bool {
    let per_frame = if params.wideband { 320 } else { 160 };
    let mut toc = [TocEntry { ft: 0, good: true }; MAX_FRAMES];
    pkts.iter().all(|p| {
        let Some(&first) = p.payload.first() else {
            return false;
        };
        let cmr = first >> 4;
        let cmr_ok = cmr == 15 || cmr <= if params.wideband { 8 } else { 7 };
        let pad_ok = !params.octet_aligned || first & 0x0F == 0;
        match amr::parse(p.payload, params, &mut toc) {
            Ok(parsed) => {
                cmr_ok
                    && pad_ok
                    && parsed.used_bits.div_ceil(8) == p.payload.len()
                    && (parsed.frames * per_frame) as u32 <= step.max(per_frame as u32)
            }
            Err(_) => false,
        }
    })
}

fn guess_amr(pkts: &[Sample<'_>], clock: u32, step: u32) -> Option<Guess> {
    let wideband = clock == 16_000;
    for octet_aligned in [true, false] {
        let params = AmrParams {
            wideband,
            octet_aligned,
            ..Default::default()
        };
        if all_amr(pkts, params, step) {
            let basis = match (wideband, octet_aligned) {
                (false, true) => "AMR, octet-aligned (every payload parses as RFC 4867)",
                (false, false) => "AMR, bandwidth-efficient (every payload parses as RFC 4867)",
                (true, true) => "AMR-WB, octet-aligned (every payload parses as RFC 4867)",
                (true, false) => "AMR-WB, bandwidth-efficient (every payload parses as RFC 4867)",
            };
            return Some(Guess {
                kind: CodecKind::Amr(params),
                clock,
                basis,
            });
        }
    }
    None
}

/// G.711's law from the octets: silence and quiet speech sit next to
/// 0xFF/0x7F in µ-law and next to 0xD5/0x55 in A-law.
fn g711_law(pkts: &[Sample<'_>]) -> CodecKind {
    let (mut mu, mut a) = (0usize, 0usize);
    for &b in pkts.iter().flat_map(|p| p.payload) {
        match b & 0x7F {
            0x70..=0x7F => mu += 1,
            0x50..=0x5F => a += 1,
            _ => {}
        }
    }
    if a > mu {
        CodecKind::Pcma
    } else {
        CodecKind::Pcmu
    }
}

/// Narrowband codecs by octets per packet for `n` samples.
fn guess_8k(pkts: &[Sample<'_>], n: usize, len: usize) -> Option<(CodecKind, &'static str)> {
    let gsm = |p: &Sample<'_>| p.payload.chunks(33).all(|f| f[0] >> 4 == 0xD);
    let g726 = |kbps: u8| CodecKind::G726 {
        kbps,
        packing: G726Packing::Rfc3551,
    };
    Some(match len {
        _ if len == n => (
            g711_law(pkts),
            "G.711, one octet per sample (law from octet values)",
        ),
        _ if len == 4 + n / 2 => (
            CodecKind::Dvi4 { rate: 8000 },
            "DVI4, 4 bits per sample + header",
        ),
        _ if n.is_multiple_of(160) && len == 33 * n / 160 && pkts.iter().all(gsm) => (
            CodecKind::Gsm,
            "GSM 06.10, 33-octet frames with the 0xD signature",
        ),
        _ if n.is_multiple_of(80) && len == 10 * n / 80 => {
            (CodecKind::G729, "G.729, 10 octets per 10 ms")
        }
        _ if n == 160 && len == 38 => (CodecKind::Ilbc { frame_ms: 20 }, "iLBC 20 ms, 38 octets"),
        _ if n == 240 && len == 50 => (CodecKind::Ilbc { frame_ms: 30 }, "iLBC 30 ms, 50 octets"),
        _ if n == 240 && (len == 24 || len == 20) => {
            (CodecKind::G7231, "G.723.1, 24/20 octets per 30 ms")
        }
        _ if len * 8 == n * 2 => (
            g726(16),
            "G.726-16 (2 bits per sample; packing assumed RFC 3551)",
        ),
        _ if len * 8 == n * 3 => (
            g726(24),
            "G.726-24 (3 bits per sample; packing assumed RFC 3551)",
        ),
        _ if len * 8 == n * 5 => (
            g726(40),
            "G.726-40 (5 bits per sample; packing assumed RFC 3551)",
        ),
        _ => return None,
    })
}

/// Guess the codec of packets of one stream in arrival order (a few
/// seconds' worth is plenty). `None` when nothing fits.
pub fn guess(pkts: &[Sample<'_>]) -> Option<Guess> {
    if pkts.len() < 3 {
        return None;
    }
    let (step, clock) = clock_of(pkts)?;
    let n = step as usize;
    let len = usual_len(pkts);
    let (kind, basis) = match clock {
        48_000 => {
            // Opus TOC: the s bit (0x04) says stereo.
            let stereo = pkts
                .iter()
                .filter(|p| p.payload.first().is_some_and(|b| b & 4 != 0));
            let channels = if stereo.count() * 2 > pkts.len() {
                2
            } else {
                1
            };
            (
                CodecKind::Opus { channels },
                "Opus, the only usual codec on a 48 kHz clock",
            )
        }
        16_000 => {
            if let Some(g) = guess_amr(pkts, clock, step) {
                return Some(g);
            }
            if len == 4 + n / 2 {
                (
                    CodecKind::Dvi4 { rate: 16_000 },
                    "DVI4, 4 bits per sample + header",
                )
            } else if len == 2 * n {
                (
                    CodecKind::L16 { channels: 1 },
                    "L16 mono, 2 octets per sample",
                )
            } else {
                return None;
            }
        }
        _ => {
            // AMR first: its 12.2 kbit/s octet-aligned packets are 33
            // octets like GSM's, but start with a CMR, not 0xD.
            if let Some(g) = guess_amr(pkts, clock, step) {
                return Some(g);
            }
            // G.726-32 has DVI4's size less the header: check it here.
            if len * 2 == n {
                let k = CodecKind::G726 {
                    kbps: 32,
                    packing: G726Packing::Rfc3551,
                };
                (k, "G.726-32 (4 bits per sample; packing assumed RFC 3551)")
            } else {
                guess_8k(pkts, n, len)?
            }
        }
    };
    Some(Guess { kind, clock, basis })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(
        len: usize,
        step: u32,
        ms: u64,
        fill: impl Fn(usize) -> Vec<u8>,
    ) -> Vec<(u64, u32, Vec<u8>)> {
        (0..50)
            .map(|i| {
                let mut p = fill(i);
                p.resize(len, 0);
                (i as u64 * ms * 1_000_000, i as u32 * step, p)
            })
            .collect()
    }

    fn run(s: &[(u64, u32, Vec<u8>)]) -> Option<Guess> {
        let v: Vec<Sample<'_>> = s
            .iter()
            .map(|(a, t, p)| Sample {
                arrival_ns: *a,
                timestamp: *t,
                payload: p,
            })
            .collect();
        guess(&v)
    }

    #[test]
    fn sizes_and_structure() {
        let g = |len, step, ms, first: u8| {
            run(&stream(len, step, ms, |_| vec![first; len])).map(|g| g.kind)
        };
        assert_eq!(g(20, 160, 20, 0x11), Some(CodecKind::G729));
        assert_eq!(g(33, 160, 20, 0xD3), Some(CodecKind::Gsm));
        assert_eq!(g(84, 160, 20, 0x00), Some(CodecKind::Dvi4 { rate: 8000 }));
        assert_eq!(
            g(164, 320, 20, 0x00),
            Some(CodecKind::Dvi4 { rate: 16_000 })
        );
        assert_eq!(g(160, 160, 20, 0xD5), Some(CodecKind::Pcma));
        assert_eq!(g(160, 160, 20, 0xFF), Some(CodecKind::Pcmu));
        assert_eq!(g(50, 240, 30, 0x00), Some(CodecKind::Ilbc { frame_ms: 30 }));
        assert_eq!(
            g(60, 160, 20, 0x00),
            Some(CodecKind::G726 {
                kbps: 24,
                packing: G726Packing::Rfc3551
            })
        );
        assert_eq!(g(120, 960, 20, 0x7C), Some(CodecKind::Opus { channels: 2 }));
        assert_eq!(g(77, 160, 20, 0x00), None);
        // AMR 12.2 octet-aligned: CMR 0xF0, ToC F=0 FT=7 Q=1 (0x3C), 31
        // octets of speech: 33 octets like GSM, but not GSM.
        let amr = run(&stream(33, 160, 20, |_| vec![0xF0, 0x3C, 0xAA])).unwrap();
        assert_eq!(
            amr.kind,
            CodecKind::Amr(AmrParams {
                octet_aligned: true,
                ..Default::default()
            })
        );
        assert!(
            amr.label()
                .starts_with("guessed from payload size and timing: AMR")
        );
        // AMR-WB 23.85 bandwidth-efficient: 4 + 6 + 477 bits = 61 octets.
        let wb = run(&stream(61, 320, 20, |_| vec![0xF4, 0x40])).unwrap();
        assert_eq!(
            wb.kind,
            CodecKind::Amr(AmrParams {
                wideband: true,
                ..Default::default()
            })
        );
    }
}
