//! The pages for what is not a call: registrations (searchable, failed
//! first), media without signalling (statistics, audio, pcap), and the
//! registration and ping figures in `/metrics`.

use crate::common;

use common::*;
use reqwest::StatusCode;
use reqwest::header::AUTHORIZATION;
use voxtap_engine::import::{ImportOptions, run_import};
use voxtap_engine::pipeline::PipelineConfig;

fn bearer() -> String {
    format!("Bearer {API_USER}:{API_TOKEN}")
}

/// A data directory with the corpus's REGISTER capture and SIPp's RTP
/// without SIP, imported with the media outputs (WAV).
fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    run_import(&ImportOptions {
        files: vec![corpus("ndpi/sip_hello.pcapng"), corpus("sipp/g711a.pcap")],
        out: dir.path().to_path_buf(),
        pipeline: PipelineConfig::default(),
        call_files: true,
        media: Some(voxtap_engine::media::MediaOptions::default()),
    })
    .expect("import");
    dir
}

async fn get(base: &str, path: &str) -> (StatusCode, String, Option<String>) {
    let r = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .header(AUTHORIZATION, bearer())
        .send()
        .await
        .unwrap();
    let status = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    (status, r.text().await.unwrap_or_default(), ct)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_media_only_and_metrics() {
    let dir = data_dir();
    let data = dir.path().canonicalize().unwrap();
    let running = start(&data).await;
    let base = format!("http://{}", running.addr);

    // Not without a login.
    let anon = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{base}/registrations"))
        .send()
        .await
        .unwrap();
    assert_ne!(anon.status(), StatusCode::OK);

    let (s, page, _) = get(&base, "/registrations").await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("id=\"registrations\""), "{page}");
    assert!(page.contains("26841945") && page.contains("registered"));
    assert!(page.contains("href=\"/registrations\""), "nav link");
    let (_, page, _) = get(&base, "/registrations?q=2684*").await;
    assert!(page.contains("sip:26841945@10.231.142.84:5060"));
    let (_, page, _) = get(&base, "/registrations?q=10.99.99.99").await;
    assert!(page.contains("id=\"no-registrations\""));
    let (_, page, _) = get(&base, "/registrations?q=172.29.38.91").await;
    assert!(page.contains("26841945"));
    let (_, json, _) = get(&base, "/api/registrations").await;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["registrations"][0]["refreshes"], 1);
    assert_eq!(v["registrations"][0]["challenges"], 2);

    let (s, page, _) = get(&base, "/media").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        page.contains("0xDEE0EE8F") && page.contains("10.1.3.143:5000"),
        "{page}"
    );
    let wav = page
        .split("src=\"")
        .skip(1)
        .map(|x| x.split('"').next().unwrap())
        .find(|u| u.ends_with(".wav"))
        .expect("an audio player")
        .to_string();
    let (s, body, ct) = get(&base, &wav).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ct.as_deref(), Some("audio/wav"));
    assert!(body.len() > 44);
    let pcap = wav.rsplit_once('/').unwrap().0.to_string() + "/call.pcap";
    assert_eq!(get(&base, &pcap).await.0, StatusCode::OK);
    let bad = wav.rsplit_once('/').unwrap().0.to_string() + "/..%2Findex.sqlite";
    assert_ne!(get(&base, &bad).await.0, StatusCode::OK);

    let (s, m, _) = get(&base, "/metrics").await;
    assert_eq!(s, StatusCode::OK);
    for line in [
        "voxtap_calls_indexed 0",
        "voxtap_registration_bindings 1",
        "voxtap_registration_bindings_failing 0",
        "voxtap_registration_failures{kind=\"challenged\"} 2",
        "voxtap_media_only_streams 1",
    ] {
        assert!(m.lines().any(|l| l == line), "{line} in\n{m}");
    }
}

/// Ping loss per pair of peers, as `/metrics` exposes it.
#[test]
fn ping_loss_per_peer_in_the_exposition() {
    let dir = tempfile::tempdir().unwrap();
    let mut idx =
        voxtap_engine::index::Index::open(&dir.path().join(voxtap_engine::index::INDEX_FILE))
            .unwrap();
    let mut s = voxtap_engine::signalling::Signalling::new(Default::default());
    let (a, b) = (
        "10.0.0.1:5060".parse().unwrap(),
        "10.0.0.2:5060".parse().unwrap(),
    );
    for i in 0..4u32 {
        let req = format!(
            "OPTIONS sip:b SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK{i}\r\nFrom: <sip:a@a>;tag=1\r\nTo: <sip:b@b>\r\nCall-ID: p{i}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        let t = u64::from(i) * 2_000_000_000;
        s.on_sip(t, a, b, &voxtap_proto::sip::parse(req.as_bytes()).unwrap());
        if i != 1 {
            let resp = req.replacen("OPTIONS sip:b SIP/2.0", "SIP/2.0 200 OK", 1);
            s.on_sip(
                t + 1_000_000,
                b,
                a,
                &voxtap_proto::sip::parse(resp.as_bytes()).unwrap(),
            );
        }
    }
    s.tick(100_000_000_000);
    idx.record_signalling(&s.snapshot()).unwrap();
    let pings = idx.pings(10).unwrap();
    let text = voxtap_web::signalling_exposition(&idx.signalling_totals().unwrap(), &pings);
    assert!(
        text.contains("voxtap_ping_loss_ratio{src=\"10.0.0.1\",dst=\"10.0.0.2\"} 0.25"),
        "{text}"
    );
    assert!(text.contains("voxtap_pings_unanswered{src=\"10.0.0.1\",dst=\"10.0.0.2\"} 1"));
}
