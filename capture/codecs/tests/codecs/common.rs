//! Test helpers: speech from espeak-ng, the reference programs in
//! `capture/codecs/tests/reference/` built with gcc against Debian's codec
//! libraries, RTP packetising of their frames, and the comparisons. Also
//! included by the end-to-end codec tests (`tests/tests/codecs.rs`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use voxtap_codecs::{CodecKind, Decoder};

/// Serialises the steps that write shared files (speech, binaries).
static LOCK: Mutex<()> = Mutex::new(());

/// Per package: the codec tests and the end-to-end tests may run at the
/// same time and must not write each other's files.
pub fn tmp() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(concat!("codec-reference-", env!("CARGO_PKG_NAME")));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read_i16(path: &Path) -> Vec<i16> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

fn write_i16(path: &Path, pcm: &[i16]) {
    let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

const SENTENCES: [&str; 2] = [
    "The quick brown fox jumps over the lazy dog. Voice over IP calls are recorded by the capture appliance.",
    "Every codec is checked against an independent decoder, one packet at a time.",
];

/// About nine seconds of espeak-ng speech at `rate`: two sentences with
/// a second of faint noise between them and half a second after (so the
/// encoders with VAD/DTX send SID frames).
pub fn speech(rate: u32) -> Vec<i16> {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let path = tmp().join(format!("speech{rate}.raw"));
    if !path.exists() {
        let mut all = Vec::new();
        for (i, text) in SENTENCES.iter().enumerate() {
            let wav = tmp().join(format!("sentence{i}.wav"));
            let raw = tmp().join(format!("sentence{i}-{rate}.raw"));
            run(Command::new("espeak-ng").arg("-w").arg(&wav).arg(text));
            // -D: no dither. sox dithers with a random seed by default
            // when it requantizes, so every run made different speech and
            // the G.729 source figure moved across the 0.90 floor.
            run(Command::new("sox")
                .arg("-D")
                .arg(&wav)
                .args(["-r", &rate.to_string()])
                .args(["-c", "1", "-b", "16", "-e", "signed-integer", "-L"])
                .arg(&raw)
                .args(["norm", "-3"]));
            all.extend(read_i16(&raw));
            // Faint noise (about -60 dBov), deterministic.
            let mut seed = 0x2545_F491u32;
            let pause = if i == 0 { rate } else { rate / 2 };
            all.extend((0..pause).map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                (seed % 61) as i16 - 30
            }));
        }
        write_i16(&path, &all);
    }
    read_i16(&path)
}

/// `capture/codecs/tests/reference`, from whichever package includes this.
fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("capture/codecs/tests/reference"))
        .find(|d| d.is_dir())
        .expect("capture/codecs/tests/reference")
}

/// Build `capture/codecs/tests/reference/<name>.c` with gcc (once per test binary run).
pub fn build(name: &str, libs: &[&str]) -> PathBuf {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let bin = tmp().join(format!("ref-{name}"));
    let src = reference_dir().join(format!("{name}.c"));
    let fresh = |b: &Path| {
        let t = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let hdr = src.with_file_name("common.h");
        matches!((t(b), t(&src), t(&hdr)), (Some(b), Some(s), Some(h)) if b > s && b > h)
    };
    if !fresh(&bin) {
        let tmp_bin = bin.with_extension("tmp");
        run(Command::new("gcc")
            .args(["-O2", "-Wall", "-Werror", "-o"])
            .arg(&tmp_bin)
            .arg(&src)
            .args(libs));
        std::fs::rename(&tmp_bin, &bin).unwrap();
    }
    bin
}

/// Run a reference program on the speech at `rate`: the encoded frames
/// (records) and the reference decoder's output.
pub fn reference(bin: &Path, rate: u32, args: &[&str]) -> (Vec<Vec<u8>>, Vec<i16>) {
    let src = tmp().join(format!("speech{rate}.raw"));
    speech(rate);
    let tag = format!(
        "{}-{}",
        bin.file_name().unwrap().to_string_lossy(),
        args.join("-")
    );
    let pk = tmp().join(format!("{tag}.frames"));
    let pcm = tmp().join(format!("{tag}.pcm"));
    run(Command::new(bin).arg(&src).arg(&pk).arg(&pcm).args(args));
    let data = std::fs::read(&pk).unwrap();
    let mut frames = Vec::new();
    let mut i = 0;
    while i + 2 <= data.len() {
        let n = usize::from(u16::from_le_bytes([data[i], data[i + 1]]));
        frames.push(data[i + 2..i + 2 + n].to_vec());
        i += 2 + n;
    }
    (frames, read_i16(&pcm))
}

/// One RTP packet of a test stream: `None` is a packet not sent (DTX) —
/// its `samples` are concealed like a lost one.
#[derive(Clone, Debug)]
pub struct Pkt {
    pub payload: Option<Vec<u8>>,
    pub samples: usize,
}

/// Decode a stream; packets for which `lost(i)` holds are concealed.
/// Checks that every packet yields exactly its samples (the alignment
/// the media step's layout relies on).
pub fn decode_all(
    kind: CodecKind,
    clock: u32,
    pkts: &[Pkt],
    lost: impl Fn(usize) -> bool,
) -> Vec<i16> {
    let mut d = Decoder::with_clock(kind, clock).unwrap();
    let mut out = Vec::new();
    for (i, p) in pkts.iter().enumerate() {
        let before = out.len();
        match &p.payload {
            Some(pl) if !lost(i) => d
                .try_decode(pl, &mut out)
                .unwrap_or_else(|e| panic!("{kind:?} packet {i}: {e}")),
            _ => d.conceal(p.samples, &mut out),
        }
        assert_eq!(out.len() - before, p.samples, "{kind:?} packet {i}");
    }
    out
}

pub fn corr(a: &[i16], b: &[i16]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let ma = a.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
    let mb = b.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x) - ma, f64::from(y) - mb);
        sab += x * y;
        saa += x * x;
        sbb += y * y;
    }
    if saa == 0.0 || sbb == 0.0 {
        return 0.0;
    }
    sab / (saa * sbb).sqrt()
}

/// The best correlation of `out` with `src` delayed by 0..=`max_lag`
/// samples (codecs delay their output), and that lag.
pub fn aligned(out: &[i16], src: &[i16], max_lag: usize) -> (usize, f64) {
    (0..=max_lag)
        .map(|lag| (lag, corr(&out[lag.min(out.len())..], src)))
        .fold((0, f64::MIN), |best, x| if x.1 > best.1 { x } else { best })
}

/// The codec's passband (two one-pole high-passes at `lo` Hz and two
/// one-pole low-passes at `hi` Hz): narrowband codecs are specified for
/// 300-3400 Hz and their input high-pass and post-filters reshape what
/// lies outside, so the comparison with the source is made in the band.
pub fn band(x: &[i16], rate: u32, lo: f64, hi: f64) -> Vec<i16> {
    let dt = 1.0 / f64::from(rate);
    let mut y: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    for _ in 0..2 {
        let rc = 1.0 / (2.0 * std::f64::consts::PI * lo);
        let a = rc / (rc + dt);
        let (mut prev_in, mut prev_out) = (y[0], 0.0);
        for v in y.iter_mut().skip(1) {
            let out = a * (prev_out + *v - prev_in);
            prev_in = *v;
            *v = out;
            prev_out = out;
        }
        y[0] = 0.0;
        let rc = 1.0 / (2.0 * std::f64::consts::PI * hi);
        let a = dt / (rc + dt);
        let mut acc = 0.0;
        for v in y.iter_mut() {
            acc += a * (*v - acc);
            *v = acc;
        }
    }
    y.iter()
        .map(|&v| v.round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// Packet `i` is lost: 5 % of the packets, spread pseudo-randomly.
pub fn lose_5pct(i: usize) -> bool {
    (i.wrapping_mul(2_654_435_761) >> 7) % 20 == 3
}

pub struct Figures {
    pub vs_reference: f64,
    pub vs_source: f64,
    pub source_lag: usize,
    pub loss_vs_clean: f64,
}

/// The whole check of one codec configuration: our decoder against the
/// reference decoder's output of the same bitstream (>= 0.99) and the
/// source speech in the codec's band (>= `min_source`), then 5 % loss keeping length and
/// alignment. Prints the figures (run with --nocapture to see them).
pub fn check(
    name: &str,
    kind: CodecKind,
    clock: u32,
    pkts: &[Pkt],
    reference_pcm: &[i16],
    source: &[i16],
    min_source: f64,
) -> Figures {
    let ours = decode_all(kind, clock, pkts, |_| false);
    assert_eq!(
        ours.len(),
        reference_pcm.len(),
        "{name}: length vs reference"
    );
    let vs_reference = corr(&ours, reference_pcm);
    let max_lag = clock as usize * 30 / 1000;
    let (lo, hi) = if clock >= 16_000 {
        (50.0, 7000.0)
    } else {
        (300.0, 3400.0)
    };
    let (source_lag, vs_source) = aligned(
        &band(&ours, clock, lo, hi),
        &band(source, clock, lo, hi),
        max_lag,
    );
    let full_band = corr(&ours[source_lag..], source);
    let lossy = decode_all(kind, clock, pkts, lose_5pct);
    assert_eq!(lossy.len(), ours.len(), "{name}: length with loss");
    let (loss_lag, loss_vs_clean) = aligned(&lossy, &ours, max_lag);
    let exact = ours == reference_pcm;
    println!(
        "{name:28} vs reference {vs_reference:.4}{} | vs source {vs_source:.3} in band, {full_band:.3} full band (lag {source_lag}) | 5% loss vs clean {loss_vs_clean:.3}",
        if exact { " (bit-exact)" } else { "" }
    );
    assert!(vs_reference >= 0.99, "{name}: {vs_reference} vs reference");
    assert!(vs_source >= min_source, "{name}: {vs_source} vs source");
    assert_eq!(loss_lag, 0, "{name}: loss moved the audio");
    assert!(loss_vs_clean >= 0.85, "{name}: {loss_vs_clean} with loss");
    Figures {
        vs_reference,
        vs_source,
        source_lag,
        loss_vs_clean,
    }
}

/// MSB-first bit writer (RFC 4867 payloads).
#[derive(Default)]
pub struct BitWriter {
    pub bytes: Vec<u8>,
    bits: usize,
}

impl BitWriter {
    pub fn put(&mut self, value: u32, n: usize) {
        for k in (0..n).rev() {
            if self.bits.is_multiple_of(8) {
                self.bytes.push(0);
            }
            let bit = ((value >> k) & 1) as u8;
            let last = self.bytes.len() - 1;
            self.bytes[last] |= bit << (7 - self.bits % 8);
            self.bits += 1;
        }
    }

    /// `n` bits of `data`, MSB first.
    pub fn put_bits(&mut self, data: &[u8], n: usize) {
        for k in 0..n {
            self.put(u32::from((data[k / 8] >> (7 - k % 8)) & 1), 1);
        }
    }

    pub fn align(&mut self) {
        self.bits = self.bytes.len() * 8;
    }
}

/// One packet per frame record.
pub fn one_per_packet(frames: &[Vec<u8>], samples: usize) -> Vec<Pkt> {
    frames
        .iter()
        .map(|f| Pkt {
            payload: Some(f.clone()),
            samples,
        })
        .collect()
}

/// Speech bits per frame type (3GPP TS 26.101 / 26.201).
pub fn amr_bits(ft: u8, wideband: bool) -> usize {
    const NB: [usize; 16] = [
        95, 103, 118, 134, 148, 159, 204, 244, 39, 0, 0, 0, 0, 0, 0, 0,
    ];
    const WB: [usize; 16] = [
        132, 177, 253, 285, 317, 365, 397, 461, 477, 40, 0, 0, 0, 0, 0, 0,
    ];
    (if wideband { WB } else { NB })[usize::from(ft & 15)]
}

/// Pack storage-format frames into one RFC 4867 payload.
pub fn amr_payload(frames: &[&Vec<u8>], octet_aligned: bool, wideband: bool) -> Vec<u8> {
    let mut w = BitWriter::default();
    // A CMR asking for mode 5: a request for the other direction that
    // the decoder must ignore.
    w.put(5, 4);
    if octet_aligned {
        w.put(0, 4);
    }
    for (i, f) in frames.iter().enumerate() {
        let ft = (f[0] >> 3) & 15;
        let q = (f[0] >> 2) & 1;
        w.put(u32::from(i + 1 < frames.len()), 1);
        w.put(u32::from(ft), 4);
        w.put(u32::from(q), 1);
        if octet_aligned {
            w.put(0, 2);
        }
    }
    for f in frames {
        let n = amr_bits((f[0] >> 3) & 15, wideband);
        w.put_bits(&f[1..], n);
        if octet_aligned {
            w.align();
        }
    }
    w.bytes
}

/// Group frames 1, 2, 3, 1, 2, 3... per packet; a group of NO_DATA frames
/// only is not sent (DTX), a mixed one carries them in its ToC.
pub fn amr_packets(frames: &[Vec<u8>], octet_aligned: bool, wideband: bool) -> Vec<Pkt> {
    let per = if wideband { 320 } else { 160 };
    let mut pkts = Vec::new();
    let mut i = 0;
    while i < frames.len() {
        let k = (pkts.len() % 3 + 1).min(frames.len() - i);
        let group: Vec<&Vec<u8>> = frames[i..i + k].iter().collect();
        let all_no_data = group.iter().all(|f| (f[0] >> 3) & 15 == 15);
        pkts.push(Pkt {
            payload: (!all_no_data).then(|| amr_payload(&group, octet_aligned, wideband)),
            samples: per * k,
        });
        i += k;
    }
    pkts
}

/// G.729 frames (10 octets, 2-octet Annex B SIDs, 0 for untransmitted)
/// into 20 ms packets: two speech frames, or speech then a SID, or a SID
/// alone; untransmitted frames are gaps.
pub fn g729_packets(frames: &[Vec<u8>]) -> Vec<Pkt> {
    let mut pkts: Vec<Pkt> = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut n = 0;
    let flush = |pkts: &mut Vec<Pkt>, cur: &mut Vec<u8>, n: &mut usize| {
        if *n > 0 {
            pkts.push(Pkt {
                payload: Some(std::mem::take(cur)),
                samples: 80 * *n,
            });
            *n = 0;
        }
    };
    for f in frames {
        match f.len() {
            0 => {
                flush(&mut pkts, &mut cur, &mut n);
                pkts.push(Pkt {
                    payload: None,
                    samples: 80,
                });
            }
            2 => {
                cur.extend_from_slice(f);
                n += 1;
                flush(&mut pkts, &mut cur, &mut n);
            }
            _ => {
                cur.extend_from_slice(f);
                n += 1;
                if n == 2 {
                    flush(&mut pkts, &mut cur, &mut n);
                }
            }
        }
    }
    flush(&mut pkts, &mut cur, &mut n);
    pkts
}
