//! Every codec end to end, each in a call of its own: espeak-ng speech
//! encoded by the reference encoder (the C programs in
//! `capture/codecs/tests/reference/`), packed into RTP behind SIP/SDP in a
//! pcap (`voxtap_engine::synth::codec_call`), imported with the media
//! step. caller.wav must correlate >= 0.99 with the reference decoder's
//! output of the same bitstream and >= 0.9 with the source speech in the
//! codec's band; with 5 % of the packets lost it keeps its length and
//! alignment. quality.json, streams.csv and the call index must agree.

use crate::codec_ref as common;

use std::path::{Path, PathBuf};

use common::{Pkt, band, build, corr, lose_5pct, one_per_packet, reference, speech};
use voxtap_e2e::read_csv;
use voxtap_engine::import::{ImportOptions, run_import};
use voxtap_engine::index::{CallQuery, Index};
use voxtap_engine::media::MediaOptions;
use voxtap_engine::pipeline::PipelineConfig;
use voxtap_engine::synth::codec_call::{self, CodecCall, RtpSlot, Slot};

/// One codec configuration and its reference material.
struct Case {
    name: String,
    /// Audio rate of the codec (its RTP clock too, for every codec here).
    rate: u32,
    channels: u16,
    /// The m= line's payload types and the `a=` lines.
    pts: Vec<u8>,
    attrs: Vec<String>,
    pt: u8,
    pkts: Vec<Pkt>,
    /// The reference decoder's output of every frame, interleaved.
    reference: Vec<i16>,
    /// The source speech, per channel.
    source: Vec<Vec<i16>>,
    /// What quality.json should say fills the gaps of lost packets.
    concealment: &'static str,
}

/// What one import gave.
struct Imported {
    _dir: tempfile::TempDir,
    folder: PathBuf,
    out: PathBuf,
    rate: u32,
    channels: u16,
    samples: Vec<i16>,
}

fn slots(c: &Case, lost: &dyn Fn(usize) -> bool) -> Vec<RtpSlot> {
    let ch = usize::from(c.channels);
    c.pkts
        .iter()
        .enumerate()
        .map(|(i, p)| RtpSlot {
            units: (p.samples / ch.max(1)) as u32,
            slot: match &p.payload {
                Some(_) if lost(i) => Slot::Lost,
                Some(b) => Slot::Send {
                    pt: c.pt,
                    payload: b.clone(),
                },
                None => Slot::Silent,
            },
        })
        .collect()
}

fn import(c: &Case, lost: &dyn Fn(usize) -> bool) -> Imported {
    let dir = tempfile::tempdir().unwrap();
    let call = CodecCall {
        call_id: format!("{}@codecs.test", c.name.replace(' ', "-")),
        n: 0,
        payload_types: c.pts.clone(),
        attributes: c.attrs.clone(),
        clock: c.rate,
        caller: slots(c, lost),
        callee: Vec::new(),
    };
    let pcap = dir.path().join("call.pcap");
    codec_call::write(&call, std::fs::File::create(&pcap).unwrap()).unwrap();
    let out = dir.path().join("out");
    run_import(&ImportOptions {
        files: vec![pcap],
        out: out.clone(),
        pipeline: PipelineConfig::default(),
        call_files: true,
        media: Some(MediaOptions::default()),
    })
    .expect("import");
    let calls = read_csv(&out.join("calls.csv"));
    assert_eq!(calls.len(), 1, "{calls:?}");
    let folder = out.join(&calls[0]["pcap"]).parent().unwrap().to_path_buf();
    let (rate, channels, samples) = read_wav(&folder.join("caller.wav"));
    Imported {
        _dir: dir,
        folder,
        out,
        rate,
        channels,
        samples,
    }
}

/// The lag (0..=`max_lag` samples of `out` behind `src`) that best aligns
/// the two, and the correlation of the whole signals there. The lag is
/// searched on two seconds of speech, coarsely at 8 kHz and then at full
/// rate around the best (the whole signals at every lag would take
/// minutes unoptimised).
fn aligned(out: &[i16], src: &[i16], rate: u32, max_lag: usize) -> (usize, f64) {
    let r = rate as usize;
    let d = (r / 8000).max(1);
    let window =
        |x: &[i16], from: usize| x[from.min(x.len())..(from + 2 * r).min(x.len())].to_vec();
    let decimate = |x: Vec<i16>| -> Vec<i16> {
        x.chunks(d)
            .map(|c| (c.iter().map(|&v| i32::from(v)).sum::<i32>() / c.len() as i32) as i16)
            .collect()
    };
    let best = |lags: &mut dyn Iterator<Item = usize>, f: &dyn Fn(usize) -> f64| {
        lags.map(|lag| (lag, f(lag)))
            .fold((0, f64::MIN), |b, x| if x.1 > b.1 { x } else { b })
            .0
    };
    let src_coarse = decimate(window(src, r / 2));
    let coarse = best(&mut (0..=max_lag / d), &|l| {
        corr(&decimate(window(out, r / 2 + l * d)), &src_coarse)
    });
    let src_w = window(src, r / 2);
    let around = (coarse * d).saturating_sub(d)..=(coarse * d + d).min(max_lag);
    let lag = best(&mut around.into_iter(), &|l| {
        corr(&window(out, r / 2 + l), &src_w)
    });
    (lag, corr(&out[lag.min(out.len())..], src))
}

fn read_wav(p: &Path) -> (u32, u16, Vec<i16>) {
    let mut r = hound::WavReader::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let spec = r.spec();
    let s = r.samples::<i16>().map(Result::unwrap).collect();
    (spec.sample_rate, spec.channels, s)
}

fn channel(s: &[i16], channels: u16, c: usize) -> Vec<i16> {
    s.chunks_exact(usize::from(channels))
        .map(|f| f[c])
        .collect()
}

fn quality_stream(folder: &Path) -> serde_json::Value {
    let q: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("quality.json")).unwrap())
            .unwrap();
    let streams = q["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1, "{q:#}");
    streams[0].clone()
}

/// quality.json, streams.csv and the call index describe the stream alike.
fn check_agreement(name: &str, imp: &Imported, decodable: bool) -> serde_json::Value {
    let q = quality_stream(&imp.folder);
    let rows = read_csv(&imp.out.join("streams.csv"));
    assert_eq!(rows.len(), 1, "{name}: {rows:?}");
    let row = &rows[0];
    assert_eq!(q["codec"].as_str(), Some(row["codec"].as_str()), "{name}");
    assert_eq!(q["payload_type"].to_string(), row["payload_type"], "{name}");
    assert_eq!(q["received"].to_string(), row["packets"], "{name}");
    assert_eq!(q["expected"].to_string(), row["expected"], "{name}");
    assert_eq!(q["lost"].to_string(), row["lost"], "{name}");
    // streams.csv rates loss as random (BurstR 1) and has no jitter
    // buffer; quality.json sees bursts (BurstR > 1 lowers its MOS, < 1
    // raises it) and late packets. Without them the two are the same
    // computation.
    let (jm, cm) = (
        q["mos"].as_f64().unwrap(),
        row["mos"].parse::<f64>().unwrap(),
    );
    let random = q["burst_ratio"].as_f64() == Some(1.0) && q["jitter_buffer_discards"] == 0;
    let burst = q["burst_ratio"].as_f64().unwrap();
    if random {
        assert!((jm - cm).abs() < 0.01, "{name}: MOS {jm} vs {cm}");
    } else if burst >= 1.0 {
        assert!(jm <= cm + 0.01, "{name}: MOS {jm} vs {cm} (BurstR {burst})");
    } else {
        // Loss more regular than random (BurstR < 1) rates better.
        assert!(jm >= cm - 0.01, "{name}: MOS {jm} vs {cm} (BurstR {burst})");
    }
    let idx = Index::open(&imp.out.join("index.sqlite")).unwrap();
    let page = idx
        .search(&CallQuery {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    let d = idx.call_detail(page.rows[0].id).unwrap().unwrap();
    assert_eq!(d.streams[0].audio_decodable, Some(decodable), "{name}");
    assert_eq!(
        d.streams[0].audio_reason.as_deref(),
        q["audio"]["reason"].as_str(),
        "{name}"
    );
    q
}

/// The whole check of one case; returns (vs reference, vs source, 5 %
/// loss vs clean) for the summary line.
fn run(c: &Case) -> (f64, f64, f64) {
    let clean = import(c, &|_| false);
    assert_eq!(
        (clean.rate, clean.channels),
        (c.rate, c.channels),
        "{}",
        c.name
    );
    // The WAV runs from the first packet to the end of the last one sent.
    let last_sent = c.pkts.iter().rposition(|p| p.payload.is_some()).unwrap();
    let len: usize = c.pkts[..=last_sent].iter().map(|p| p.samples).sum();
    assert_eq!(clean.samples.len(), len, "{}: WAV length", c.name);
    let vs_reference = corr(&clean.samples, &c.reference[..len]);
    let ch = c.channels;
    let (lo, hi) = if c.rate >= 16_000 {
        (50.0, 7000.0)
    } else {
        (300.0, 3400.0)
    };
    let max_lag = c.rate as usize * 30 / 1000;
    let vs_source = (0..usize::from(ch))
        .map(|k| {
            let ours = band(&channel(&clean.samples, ch, k), c.rate, lo, hi);
            aligned(&ours, &band(&c.source[k], c.rate, lo, hi), c.rate, max_lag).1
        })
        .fold(f64::MAX, f64::min);
    let q = check_agreement(&c.name, &clean, true);
    assert_eq!(q["audio"]["decoded"], true, "{}: {q:#}", c.name);
    // 5 % of the packets lost (never the first or the last one sent).
    let lost = |i: usize| i > 0 && i < last_sent && lose_5pct(i);
    let n_lost = (0..c.pkts.len())
        .filter(|&i| lost(i) && c.pkts[i].payload.is_some())
        .count();
    let lossy = import(c, &lost);
    assert_eq!(lossy.samples.len(), len, "{}: length with loss", c.name);
    let mut loss_vs_clean = f64::MAX;
    for k in 0..usize::from(ch) {
        let (lag, r) = aligned(
            &channel(&lossy.samples, ch, k),
            &channel(&clean.samples, ch, k),
            c.rate,
            max_lag,
        );
        assert_eq!(lag, 0, "{}: loss moved the audio", c.name);
        loss_vs_clean = loss_vs_clean.min(r);
    }
    let lq = check_agreement(&c.name, &lossy, true);
    assert_eq!(lq["lost"], n_lost as u64, "{}", c.name);
    assert_eq!(
        lq["audio"]["concealment"], c.concealment,
        "{}: {lq:#}",
        c.name
    );
    let exact = if clean.samples == c.reference[..len] {
        " (bit-exact)"
    } else {
        ""
    };
    println!(
        "{:24} vs reference {vs_reference:.4}{exact} | vs source {vs_source:.3} in band | 5% loss ({n_lost} packets) vs clean {loss_vs_clean:.3} | MOS {:.2} -> {:.2}",
        c.name, q["mos"], lq["mos"]
    );
    assert!(
        vs_reference >= 0.99,
        "{}: {vs_reference} vs reference",
        c.name
    );
    assert!(vs_source >= 0.9, "{}: {vs_source} vs source", c.name);
    assert!(
        loss_vs_clean >= 0.85,
        "{}: {loss_vs_clean} with loss",
        c.name
    );
    (vs_reference, vs_source, loss_vs_clean)
}

fn mono(rate: u32) -> Vec<Vec<i16>> {
    vec![speech(rate)]
}

#[test]
fn g726_all_rates_both_packings() {
    let bin = build("g726", &["-lspandsp"]);
    for kbps in [16u32, 24, 32, 40] {
        for (name, spandsp_packing) in [("G726", "2"), ("AAL2-G726", "1")] {
            let (frames, reference) =
                reference(&bin, 8000, &[&(kbps * 1000).to_string(), spandsp_packing]);
            run(&Case {
                name: format!("{name}-{kbps}"),
                rate: 8000,
                channels: 1,
                pts: vec![96],
                attrs: vec![format!("rtpmap:96 {name}-{kbps}/8000")],
                pt: 96,
                pkts: one_per_packet(&frames, 160),
                reference,
                source: mono(8000),
                concealment: "silence",
            });
        }
    }
}

#[test]
fn dvi4_8_and_16_khz_by_static_payload_type() {
    let bin = build("dvi4", &["-lspandsp"]);
    for (rate, pt) in [(8000u32, 5u8), (16_000, 6)] {
        let per = (rate / 50) as usize;
        let (frames, reference) = reference(&bin, rate, &[&per.to_string()]);
        run(&Case {
            name: format!("DVI4/{rate}"),
            rate,
            channels: 1,
            pts: vec![pt],
            attrs: Vec::new(),
            pt,
            pkts: one_per_packet(&frames, per),
            reference,
            source: mono(rate),
            concealment: "silence",
        });
    }
}

#[test]
fn gsm_by_static_payload_type() {
    let bin = build("gsm", &["-lgsm"]);
    let (frames, reference) = reference(&bin, 8000, &[]);
    // One or two frames per packet (RFC 3551 allows several).
    let mut pkts = Vec::new();
    let mut i = 0;
    while i < frames.len() {
        let k = if pkts.len() % 3 == 2 { 2 } else { 1 }.min(frames.len() - i);
        pkts.push(Pkt {
            payload: Some(frames[i..i + k].concat()),
            samples: 160 * k,
        });
        i += k;
    }
    run(&Case {
        name: "GSM".into(),
        rate: 8000,
        channels: 1,
        pts: vec![3],
        attrs: Vec::new(),
        pt: 3,
        pkts,
        reference,
        source: mono(8000),
        concealment: "plc",
    });
}

#[test]
fn speex_narrowband_and_wideband() {
    let bin = build("speex", &["-lspeex"]);
    for (rate, mode) in [(8000u32, "0"), (16_000, "1")] {
        let (frames, reference) = reference(&bin, rate, &[mode, "8"]);
        run(&Case {
            name: format!("Speex/{rate}"),
            rate,
            channels: 1,
            pts: vec![97],
            attrs: vec![format!("rtpmap:97 speex/{rate}")],
            pt: 97,
            pkts: one_per_packet(&frames, (rate / 50) as usize),
            reference,
            source: mono(rate),
            concealment: "plc",
        });
    }
}

fn amr(wideband: bool) {
    let (rate, name, bin, mode) = if wideband {
        let b = build("amrwb", &["-lvo-amrwbenc", "-lopencore-amrwb"]);
        (16_000u32, "AMR-WB", b, "8")
    } else {
        (8000, "AMR", build("amrnb", &["-lopencore-amrnb"]), "7")
    };
    let (frames, reference) = reference(&bin, rate, &[mode, "1"]);
    let sid = if wideband { 9 } else { 8 };
    assert!(
        frames.iter().any(|f| (f[0] >> 3) & 15 == sid),
        "DTX made SID frames"
    );
    for (octet, fmtp) in [(false, None), (true, Some("octet-align=1"))] {
        let pkts = common::amr_packets(&frames, octet, wideband);
        assert!(pkts.iter().any(|p| p.payload.is_none()), "DTX left gaps");
        let mut attrs = vec![format!("rtpmap:96 {name}/{rate}")];
        attrs.extend(fmtp.map(|f| format!("fmtp:96 {f}")));
        run(&Case {
            name: format!(
                "{name} {}",
                if octet {
                    "octet-aligned"
                } else {
                    "bw-efficient"
                }
            ),
            rate,
            channels: 1,
            pts: vec![96],
            attrs,
            pt: 96,
            pkts,
            reference: reference.clone(),
            source: mono(rate),
            concealment: "plc",
        });
    }
}

#[test]
fn amr_both_payload_formats_with_dtx() {
    amr(false);
}

#[test]
fn amr_wb_both_payload_formats_with_dtx() {
    amr(true);
}

#[test]
fn opus_mono_and_stereo_as_the_fmtp_says() {
    let bin = build("opus", &["-lopus"]);
    let src = speech(48_000);
    // The right channel opus.c makes: the speech 250 ms later, half level.
    let right: Vec<i16> = (0..src.len())
        .map(|j| if j >= 12_000 { src[j - 12_000] / 2 } else { 0 })
        .collect();
    for (channels, fmtp, bitrate) in [
        (1u16, "useinbandfec=1", "32000"),
        (2, "useinbandfec=1; stereo=1; sprop-stereo=1", "64000"),
    ] {
        let (frames, reference) = reference(&bin, 48_000, &[&channels.to_string(), bitrate]);
        let per = 960 * usize::from(channels);
        let source = if channels == 1 {
            vec![src.clone()]
        } else {
            vec![src.clone(), right.clone()]
        };
        run(&Case {
            name: format!("Opus {}", if channels == 1 { "mono" } else { "stereo" }),
            rate: 48_000,
            channels,
            pts: vec![111],
            attrs: vec!["rtpmap:111 opus/48000/2".into(), format!("fmtp:111 {fmtp}")],
            pt: 111,
            pkts: one_per_packet(&frames, per),
            reference,
            source,
            concealment: "plc",
        });
    }
}

#[cfg(feature = "gpl-codecs")]
#[test]
fn g729_with_annex_b_sid_frames() {
    let bin = build("g729", &["-lbcg729"]);
    let (frames, reference) = reference(&bin, 8000, &[]);
    let pkts = common::g729_packets(&frames);
    assert!(
        pkts.iter()
            .any(|p| p.payload.as_ref().is_some_and(|b| b.len() % 10 == 2)),
        "Annex B SID frames"
    );
    assert!(pkts.iter().any(|p| p.payload.is_none()), "DTX gaps");
    run(&Case {
        name: "G.729 Annex B".into(),
        rate: 8000,
        channels: 1,
        pts: vec![18],
        attrs: vec!["rtpmap:18 G729/8000".into(), "fmtp:18 annexb=yes".into()],
        pt: 18,
        pkts,
        reference,
        source: mono(8000),
        concealment: "plc",
    });
}

/// A call whose codec this build does not decode keeps its statistics,
/// rated with the codec's own impairment, and says why there is no audio.
fn statistics_only(name: &str, pt: u8, attrs: &[&str], frame: usize, reason: &str) {
    let c = Case {
        name: name.into(),
        rate: 8000,
        channels: 1,
        pts: vec![pt],
        attrs: attrs.iter().map(|s| s.to_string()).collect(),
        pt,
        pkts: (0..250)
            .map(|i| Pkt {
                payload: Some(vec![(i % 251) as u8; frame]),
                samples: 160,
            })
            .collect(),
        reference: Vec::new(),
        source: Vec::new(),
        concealment: "",
    };
    let dir = tempfile::tempdir().unwrap();
    let call = CodecCall {
        call_id: format!("{name}@codecs.test"),
        n: 0,
        payload_types: c.pts.clone(),
        attributes: c.attrs.clone(),
        clock: 8000,
        caller: slots(&c, &|i| i % 20 == 7),
        callee: Vec::new(),
    };
    let pcap = dir.path().join("call.pcap");
    codec_call::write(&call, std::fs::File::create(&pcap).unwrap()).unwrap();
    let out = dir.path().join("out");
    run_import(&ImportOptions {
        files: vec![pcap],
        out: out.clone(),
        pipeline: PipelineConfig::default(),
        call_files: true,
        media: Some(MediaOptions::default()),
    })
    .unwrap();
    let calls = read_csv(&out.join("calls.csv"));
    let folder = out.join(&calls[0]["pcap"]).parent().unwrap().to_path_buf();
    assert!(!folder.join("caller.wav").exists(), "{name}: no audio");
    let imp = Imported {
        _dir: dir,
        folder,
        out,
        rate: 0,
        channels: 0,
        samples: Vec::new(),
    };
    let q = check_agreement(name, &imp, false);
    assert_eq!(q["received"], 237, "{name}: {q:#}");
    assert_eq!(q["lost"], 13, "{name}");
    assert_eq!(q["audio"]["decoded"], false);
    let why = q["audio"]["reason"].as_str().unwrap();
    assert!(why.contains(reason), "{name}: {why}");
    println!("{name:24} statistics only: MOS {} ({why})", q["mos"]);
}

#[test]
fn ilbc_keeps_statistics_and_says_why() {
    statistics_only(
        "iLBC",
        97,
        &["rtpmap:97 iLBC/8000", "fmtp:97 mode=20"],
        38,
        "iLBC: no decoder with an Apache-2.0-compatible licence",
    );
}

#[cfg(not(feature = "gpl-codecs"))]
#[test]
fn g729_without_the_feature_keeps_statistics_and_says_why() {
    statistics_only(
        "G.729",
        18,
        &[],
        20,
        "decoded only by a build with the gpl-codecs feature",
    );
}

/// A payload type no SDP names: the codec is guessed from the packets,
/// labelled as a guess, and decoded.
#[test]
fn unsignalled_payload_type_is_guessed_and_labelled() {
    let bin = build("amrnb", &["-lopencore-amrnb"]);
    let (frames, reference) = reference(&bin, 8000, &["7", "0"]);
    let c = Case {
        name: "AMR unsignalled".into(),
        rate: 8000,
        channels: 1,
        pts: vec![96],
        attrs: Vec::new(),
        pt: 96,
        pkts: common::amr_packets(&frames, true, false)
            .into_iter()
            .filter(|p| p.samples == 160)
            .collect(),
        reference,
        source: mono(8000),
        concealment: "plc",
    };
    let imp = import(&c, &|_| false);
    let q = quality_stream(&imp.folder);
    assert_eq!(q["codec"], "PT96");
    let label = q["codec_guess"].as_str().unwrap();
    assert!(
        label.starts_with("guessed from payload size and timing: AMR, octet-aligned"),
        "{label}"
    );
    assert_eq!(q["audio"]["decoded"], true, "{q:#}");
    assert_eq!(imp.rate, 8000);
    // The index cannot know (it has the SDP only) and says so.
    let idx = Index::open(&imp.out.join("index.sqlite")).unwrap();
    let page = idx
        .search(&CallQuery {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    let d = idx.call_detail(page.rows[0].id).unwrap().unwrap();
    assert_eq!(d.streams[0].audio_decodable, None);
    println!("{:24} {label}", c.name);
}
