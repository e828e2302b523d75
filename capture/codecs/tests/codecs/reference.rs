//! Every decoder against an independent reference, run here: espeak-ng
//! speech is encoded by the reference encoder (spandsp for G.726 and
//! DVI4, opencore-amrnb, vo-amrwbenc, libgsm, libspeex, bcg729), the
//! frames are packed into RTP payloads by this test, decoded by our
//! decoder, and compared with the reference decoder's output of the same
//! bitstream and with the source speech; then again with 5 % of the
//! packets lost.

use crate::common;

use common::{Pkt, amr_packets, build, check, one_per_packet, reference, speech};
use voxtap_codecs::{AmrParams, CodecKind, G726Packing};

#[test]
fn g726_all_rates_both_packings() {
    let bin = build("g726", &["-lspandsp"]);
    let src = speech(8000);
    for kbps in [16u8, 24, 32, 40] {
        for (packing, spandsp, name) in [
            (G726Packing::Rfc3551, "2", "G726"),
            (G726Packing::Aal2, "1", "AAL2-G726"),
        ] {
            let rate = (u32::from(kbps) * 1000).to_string();
            let (frames, ref_pcm) = reference(&bin, 8000, &[&rate, spandsp]);
            let kind = CodecKind::from_rtpmap(&format!("{name}-{kbps}"), 8000, 1, None);
            assert_eq!(kind, CodecKind::G726 { kbps, packing });
            let f = check(
                &format!("{name}-{kbps}"),
                kind,
                8000,
                &one_per_packet(&frames, 160),
                &ref_pcm,
                &src,
                0.9,
            );
            assert_eq!(f.source_lag, 0);
        }
    }
}

#[test]
fn dvi4_8_and_16_khz() {
    let bin = build("dvi4", &["-lspandsp"]);
    for (rate, pt) in [(8000u32, 5u8), (16_000, 6)] {
        let src = speech(rate);
        let per = (rate / 50) as usize;
        let (frames, ref_pcm) = reference(&bin, rate, &[&per.to_string()]);
        assert!(frames.iter().all(|f| f.len() == 4 + per / 2));
        let kind = CodecKind::from_static_pt(pt);
        assert_eq!(kind, CodecKind::Dvi4 { rate });
        check(
            &format!("DVI4/{rate}"),
            kind,
            rate,
            &one_per_packet(&frames, per),
            &ref_pcm,
            &src,
            0.9,
        );
    }
}

#[test]
fn gsm() {
    let bin = build("gsm", &["-lgsm"]);
    let src = speech(8000);
    let (frames, ref_pcm) = reference(&bin, 8000, &[]);
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
    check(
        "GSM",
        CodecKind::from_static_pt(3),
        8000,
        &pkts,
        &ref_pcm,
        &src,
        0.9,
    );
}

#[test]
fn speex_narrowband_and_wideband() {
    let bin = build("speex", &["-lspeex"]);
    for (rate, mode) in [(8000u32, "0"), (16_000, "1")] {
        let src = speech(rate);
        let (frames, ref_pcm) = reference(&bin, rate, &[mode, "8"]);
        let kind = CodecKind::from_rtpmap("speex", rate, 1, None);
        let per = (rate / 50) as usize;
        check(
            &format!("Speex/{rate} q8"),
            kind,
            rate,
            &one_per_packet(&frames, per),
            &ref_pcm,
            &src,
            0.9,
        );
    }
}

fn amr_case(wideband: bool, mode: u8, min_src: f64) {
    let rate = if wideband { 16_000 } else { 8000 };
    let bin = if wideband {
        build("amrwb", &["-lvo-amrwbenc", "-lopencore-amrwb"])
    } else {
        build("amrnb", &["-lopencore-amrnb"])
    };
    let src = speech(rate);
    let (frames, ref_pcm) = reference(&bin, rate, &[&mode.to_string(), "1"]);
    let sid_ft = if wideband { 9 } else { 8 };
    let count = |ft: u8| frames.iter().filter(|f| (f[0] >> 3) & 15 == ft).count();
    assert!(count(sid_ft) >= 3, "DTX made SID frames");
    assert!(count(15) >= 20, "DTX made NO_DATA frames");
    let name = if wideband { "AMR-WB" } else { "AMR" };
    for (octet, fmtp) in [(false, None), (true, Some("octet-align=1"))] {
        let kind = CodecKind::from_rtpmap(name, rate, 1, fmtp);
        assert_eq!(
            kind,
            CodecKind::Amr(AmrParams {
                wideband,
                octet_aligned: octet,
                ..Default::default()
            })
        );
        let pkts = amr_packets(&frames, octet, wideband);
        assert!(pkts.iter().any(|p| p.payload.is_none()));
        let label = format!(
            "{name} mode {mode} {}",
            if octet { "octet" } else { "bw-eff" }
        );
        check(&label, kind, rate, &pkts, &ref_pcm, &src, min_src);
    }
}

#[test]
fn amr_both_formats_with_dtx() {
    amr_case(false, 7, 0.9);
    // 4.75 kbit/s keeps the spectrum more than the waveform.
    amr_case(false, 0, 0.83);
}

#[test]
fn amr_wb_both_formats_with_dtx() {
    amr_case(true, 8, 0.9);
    amr_case(true, 2, 0.9);
}

#[cfg(feature = "gpl-codecs")]
#[test]
fn g729_with_annex_b_sid_frames() {
    let bin = build("g729", &["-lbcg729"]);
    let src = speech(8000);
    let (frames, ref_pcm) = reference(&bin, 8000, &[]);
    assert!(
        frames.iter().filter(|f| f.len() == 2).count() >= 3,
        "VAD made SID frames"
    );
    let pkts = common::g729_packets(&frames);
    assert!(
        pkts.iter()
            .any(|p| p.payload.as_ref().is_some_and(|b| b.len() % 10 == 2))
    );
    check(
        "G.729 (Annex B)",
        CodecKind::from_static_pt(18),
        8000,
        &pkts,
        &ref_pcm,
        &src,
        0.9,
    );
}
