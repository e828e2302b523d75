//! Media step speed per codec: decoded seconds of audio per CPU second of
//! the whole media step (`media::process_call`: demultiplexing, quality,
//! DTMF, decoding with concealment, the WAV files), on a call of about
//! nine seconds of speech each way made with the reference encoders.
//! Ignored by default; run it optimised:
//! `cargo test -p voxtap-engine --release --test media_speed -- --ignored --nocapture`
//! (add `--features gpl-codecs` for G.729).

#[path = "../../codecs/tests/codecs/common.rs"]
mod common;

use common::{Pkt, build, one_per_packet, reference};
use voxtap_engine::calls::{Call, PacketRef};
use voxtap_engine::media::{MediaOptions, process_call};
use voxtap_engine::output::CallFrame;
use voxtap_engine::pipeline::{Pipeline, PipelineConfig};
use voxtap_engine::synth::codec_call::{self, CodecCall, RtpSlot, Slot};
use voxtap_proto::pcapio::PcapReader;

/// CPU time of this thread (Linux: the first field of schedstat, ns).
fn thread_cpu_s() -> f64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    s.split_whitespace().next().unwrap().parse::<f64>().unwrap() / 1e9
}

/// The call's frames and the call as the pipeline builds it.
fn call_frames(c: &CodecCall) -> (Call, Vec<CallFrame>) {
    let mut buf = Vec::new();
    codec_call::write(c, &mut buf).unwrap();
    let mut r = PcapReader::new(std::io::Cursor::new(buf)).unwrap();
    let mut p = Pipeline::new(PipelineConfig::default());
    let mut frames = Vec::new();
    while let Some(rec) = r.next_packet().unwrap() {
        p.process(rec.link, rec.ts_ns, PacketRef::new(0, rec.offset), rec.data);
        frames.push(CallFrame {
            ts_ns: rec.ts_ns,
            orig_len: rec.orig_len,
            link: rec.link,
            data: rec.data.into(),
        });
    }
    p.finish();
    (p.drain_ended().remove(0), frames)
}

/// Run the media step on a call carrying `pkts` both ways.
fn speed(name: &str, rate: u32, pt: u8, attrs: &[&str], pkts: &[Pkt]) {
    let slots: Vec<RtpSlot> = pkts
        .iter()
        .map(|p| RtpSlot {
            units: p.samples as u32,
            slot: match &p.payload {
                Some(b) => Slot::Send {
                    pt,
                    payload: b.clone(),
                },
                None => Slot::Silent,
            },
        })
        .collect();
    let c = CodecCall {
        call_id: format!("{name}@speed.test"),
        n: 0,
        payload_types: vec![pt],
        attributes: attrs.iter().map(|a| a.to_string()).collect(),
        clock: rate,
        caller: slots.clone(),
        callee: slots,
    };
    let (call, frames) = call_frames(&c);
    let audio_s = 2.0 * pkts.iter().map(|p| p.samples).sum::<usize>() as f64 / f64::from(rate);
    let dir = tempfile::tempdir().unwrap();
    let opts = MediaOptions::default();
    let (mut runs, t0) = (0u32, thread_cpu_s());
    while runs < 3 || thread_cpu_s() - t0 < 1.0 {
        let sum = process_call(Some(&call), &frames, dir.path(), &opts).unwrap();
        assert_eq!(sum.wavs.len(), 3, "{name}");
        runs += 1;
    }
    let cpu = (thread_cpu_s() - t0) / f64::from(runs);
    println!(
        "{name:16} {:>8.0} s of audio per CPU second ({audio_s:.1} s in {:.1} ms)",
        audio_s / cpu,
        cpu * 1000.0
    );
}

#[test]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
fn media_step_speed_per_codec() {
    let pcmu: Vec<Pkt> = (0..450)
        .map(|i| Pkt {
            payload: Some(vec![(i % 251) as u8; 160]),
            samples: 160,
        })
        .collect();
    speed("G.711", 8000, 0, &[], &pcmu);
    let g722: Vec<Pkt> = (0..450)
        .map(|i| Pkt {
            payload: Some(vec![(i % 251) as u8; 160]),
            samples: 160,
        })
        .collect();
    speed("G.722", 8000, 9, &[], &g722);
    let g726 = build("g726", &["-lspandsp"]);
    let f = reference(&g726, 8000, &["32000", "2"]).0;
    speed(
        "G.726-32",
        8000,
        96,
        &["rtpmap:96 G726-32/8000"],
        &one_per_packet(&f, 160),
    );
    let f = reference(&build("dvi4", &["-lspandsp"]), 8000, &["160"]).0;
    speed("DVI4", 8000, 5, &[], &one_per_packet(&f, 160));
    let f = reference(&build("gsm", &["-lgsm"]), 8000, &[]).0;
    speed("GSM", 8000, 3, &[], &one_per_packet(&f, 160));
    let spx = build("speex", &["-lspeex"]);
    let f = reference(&spx, 8000, &["0", "8"]).0;
    speed(
        "Speex NB",
        8000,
        97,
        &["rtpmap:97 speex/8000"],
        &one_per_packet(&f, 160),
    );
    let f = reference(&spx, 16_000, &["1", "8"]).0;
    speed(
        "Speex WB",
        16_000,
        97,
        &["rtpmap:97 speex/16000"],
        &one_per_packet(&f, 320),
    );
    let f = reference(&build("amrnb", &["-lopencore-amrnb"]), 8000, &["7", "1"]).0;
    let p = common::amr_packets(&f, true, false);
    speed(
        "AMR 12.2",
        8000,
        96,
        &["rtpmap:96 AMR/8000", "fmtp:96 octet-align=1"],
        &p,
    );
    let amrwb = build("amrwb", &["-lvo-amrwbenc", "-lopencore-amrwb"]);
    let f = reference(&amrwb, 16_000, &["8", "1"]).0;
    let p = common::amr_packets(&f, true, true);
    speed(
        "AMR-WB 23.85",
        16_000,
        96,
        &["rtpmap:96 AMR-WB/16000", "fmtp:96 octet-align=1"],
        &p,
    );
    let f = reference(&build("opus", &["-lopus"]), 48_000, &["1", "32000"]).0;
    speed(
        "Opus mono",
        48_000,
        111,
        &["rtpmap:111 opus/48000/2"],
        &one_per_packet(&f, 960),
    );
    #[cfg(feature = "gpl-codecs")]
    {
        let f = reference(&build("g729", &["-lbcg729"]), 8000, &[]).0;
        speed("G.729", 8000, 18, &[], &common::g729_packets(&f));
    }
}
