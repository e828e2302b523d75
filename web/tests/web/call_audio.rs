//! The call page says per stream whether its audio was decoded, and why
//! not when it was not: a G.711 call (decoded) and an iLBC call (no
//! licence-clean decoder: statistics only), made with the codec-call
//! generator and imported with the media step.

use crate::common;

use common::*;
use reqwest::header::COOKIE;
use voxtap_engine::import::{ImportOptions, run_import};
use voxtap_engine::index::{CallQuery, INDEX_FILE, Index};
use voxtap_engine::media::MediaOptions;
use voxtap_engine::pipeline::PipelineConfig;
use voxtap_engine::synth::codec_call::{self, CodecCall, RtpSlot, Slot};

fn call(n: u8, call_id: &str, pt: u8, attrs: &[&str], payload: Vec<u8>) -> CodecCall {
    let slot = |i: u8| RtpSlot {
        units: 160,
        slot: Slot::Send {
            pt,
            payload: payload.iter().map(|b| b ^ (i & 1)).collect(),
        },
    };
    CodecCall {
        call_id: call_id.into(),
        n,
        payload_types: vec![pt],
        attributes: attrs.iter().map(|a| a.to_string()).collect(),
        clock: 8000,
        caller: (0..100).map(slot).collect(),
        callee: (0..100).map(slot).collect(),
    }
}

#[tokio::test]
async fn streams_say_whether_audio_was_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (name, c) in [
        ("pcmu", call(0, "pcmu@audio.test", 0, &[], vec![0xFF; 160])),
        (
            "ilbc",
            call(
                1,
                "ilbc@audio.test",
                97,
                &["rtpmap:97 iLBC/8000", "fmtp:97 mode=20"],
                vec![0x5A; 38],
            ),
        ),
    ] {
        let p = dir.path().join(format!("{name}.pcap"));
        codec_call::write(&c, std::fs::File::create(&p).unwrap()).unwrap();
        files.push(p);
    }
    let data = dir.path().join("data");
    run_import(&ImportOptions {
        files,
        out: data.clone(),
        pipeline: PipelineConfig::default(),
        call_files: true,
        media: Some(MediaOptions::default()),
    })
    .unwrap();
    let idx = Index::open(&data.join(INDEX_FILE)).unwrap();
    let rows = idx
        .search(&CallQuery {
            limit: 10,
            ..Default::default()
        })
        .unwrap()
        .rows;
    assert_eq!(rows.len(), 2);
    let running = common::start(&data.canonicalize().unwrap()).await;
    let base = format!("http://{}", running.addr);
    let cookie = login(&base, USER, PASSWORD).await.expect("login");
    for r in rows {
        let html = client()
            .get(format!("{base}/calls/{}", r.id))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let section = &html[html.find("<h2>Streams").expect("streams section")..];
        if r.call_id.starts_with("pcmu") {
            assert_eq!(section.matches(">decoded<").count(), 2, "{section}");
            assert!(!section.contains("not decoded"), "{section}");
        } else {
            assert_eq!(section.matches(">not decoded<").count(), 2, "{section}");
            assert!(
                section.contains(
                    "iLBC: no decoder with an Apache-2.0-compatible licence; statistics only"
                ),
                "{section}"
            );
            assert!(section.contains("iLBC (97)"), "{section}");
        }
    }
}
