//! Decoding speed per codec: decoded seconds of audio per CPU second of
//! this thread. Ignored by default; run it optimised:
//! `cargo test -p voxtap-codecs --release --test bench -- --ignored --nocapture`
//! (add `--features gpl-codecs` for G.729).

use crate::common;

use common::{Pkt, build, reference};
use voxtap_codecs::{CodecKind, Decoder};

/// CPU time of this thread (Linux: the first field of schedstat, ns).
fn thread_cpu_s() -> f64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    s.split_whitespace().next().unwrap().parse::<f64>().unwrap() / 1e9
}

fn speed(name: &str, kind: CodecKind, clock: u32, pkts: &[Pkt]) {
    let mut out = Vec::with_capacity(1 << 20);
    let mut decoded = 0usize;
    let rate = f64::from(kind.sample_rate(clock));
    let t0 = thread_cpu_s();
    while thread_cpu_s() - t0 < 0.5 {
        let mut d = Decoder::with_clock(kind, clock).unwrap();
        for p in pkts {
            out.clear();
            match &p.payload {
                Some(pl) => d.try_decode(pl, &mut out).unwrap(),
                None => d.conceal(p.samples, &mut out),
            }
            decoded += out.len();
        }
    }
    let cpu = thread_cpu_s() - t0;
    println!(
        "{name:24} {:>9.0} s of audio per CPU second",
        decoded as f64 / rate / cpu
    );
}

fn frames_of(bin: &str, libs: &[&str], rate: u32, args: &[&str]) -> Vec<Vec<u8>> {
    reference(&build(bin, libs), rate, args).0
}

fn packets(frames: Vec<Vec<u8>>, samples: usize) -> Vec<Pkt> {
    frames
        .into_iter()
        .map(|f| Pkt {
            payload: (!f.is_empty()).then_some(f),
            samples,
        })
        .collect()
}

#[test]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
fn decode_speed_per_codec() {
    let g711: Vec<Pkt> = (0..500)
        .map(|i| Pkt {
            payload: Some(vec![(i % 251) as u8; 160]),
            samples: 160,
        })
        .collect();
    speed("PCMU", CodecKind::Pcmu, 8000, &g711);
    speed(
        "G.722",
        CodecKind::G722,
        8000,
        &packets(vec![vec![0x5A; 160]; 500], 320),
    );
    for (kbps, rate) in [(16, "16000"), (32, "32000"), (40, "40000")] {
        let f = frames_of("g726", &["-lspandsp"], 8000, &[rate, "2"]);
        let kind = CodecKind::from_rtpmap(&format!("G726-{kbps}"), 8000, 1, None);
        speed(&format!("G.726-{kbps}"), kind, 8000, &packets(f, 160));
    }
    let f = frames_of("dvi4", &["-lspandsp"], 8000, &["160"]);
    speed(
        "DVI4/8000",
        CodecKind::Dvi4 { rate: 8000 },
        8000,
        &packets(f, 160),
    );
    let f = frames_of("gsm", &["-lgsm"], 8000, &[]);
    speed("GSM", CodecKind::Gsm, 8000, &packets(f, 160));
    let f = frames_of("speex", &["-lspeex"], 8000, &["0", "8"]);
    speed(
        "Speex/8000",
        CodecKind::Speex { rate: 8000 },
        8000,
        &packets(f, 160),
    );
    let f = frames_of("speex", &["-lspeex"], 16_000, &["1", "8"]);
    speed(
        "Speex/16000",
        CodecKind::Speex { rate: 16_000 },
        16_000,
        &packets(f, 320),
    );
    // AMR: one frame per packet in the bandwidth-efficient format is
    // what the depacketiser sees most; octet-aligned is one octet more.
    let amr = |frames: Vec<Vec<u8>>, wb: bool| -> Vec<Pkt> {
        frames
            .into_iter()
            .map(|f| {
                let ft = (f[0] >> 3) & 15;
                let mut p = vec![0xF0, (ft << 3) | 4];
                p.extend_from_slice(&f[1..]);
                Pkt {
                    payload: (ft != 15).then_some(p),
                    samples: if wb { 320 } else { 160 },
                }
            })
            .collect()
    };
    let oa = |wideband| {
        CodecKind::Amr(voxtap_codecs::AmrParams {
            wideband,
            octet_aligned: true,
            ..Default::default()
        })
    };
    let f = frames_of("amrnb", &["-lopencore-amrnb"], 8000, &["7", "1"]);
    speed("AMR 12.2", oa(false), 8000, &amr(f, false));
    let f = frames_of(
        "amrwb",
        &["-lvo-amrwbenc", "-lopencore-amrwb"],
        16_000,
        &["8", "1"],
    );
    speed("AMR-WB 23.85", oa(true), 16_000, &amr(f, true));
    #[cfg(feature = "gpl-codecs")]
    {
        let f = frames_of("g729", &["-lbcg729"], 8000, &[]);
        speed("G.729 (bcg729)", CodecKind::G729, 8000, &packets(f, 80));
    }
}
