//! The call page's quality-over-time series against tshark, and the audio
//! waveform against the samples of a WAV made by sox.

use crate::common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use common::*;
use voxtap_engine::index::{CallQuery, INDEX_FILE, Index};

/// One row of `tshark -z rtp,streams`: (src, dst, ssrc) -> (packets, lost, max jitter).
fn tshark_streams(file: &Path) -> HashMap<(String, String, u32), (u64, i64, f64)> {
    let out = tshark(&[
        "-q",
        "-r",
        file.to_str().unwrap(),
        "-o",
        "rtp.heuristic_rtp:TRUE",
        "-z",
        "rtp,streams",
    ]);
    let mut m = HashMap::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.get(6).is_none_or(|t| !t.starts_with("0x")) {
            continue;
        }
        let Some(pct) = f
            .iter()
            .position(|t| t.starts_with('(') && t.ends_with("%)"))
        else {
            continue;
        };
        m.insert(
            (
                format!("{}:{}", f[2], f[3]),
                format!("{}:{}", f[4], f[5]),
                u32::from_str_radix(f[6].trim_start_matches("0x"), 16).unwrap(),
            ),
            (
                f[pct - 2].parse().unwrap(),
                f[pct - 1].parse().unwrap(),
                f[pct + 6].parse().unwrap(),
            ),
        );
    }
    m
}

fn bearer() -> String {
    format!("Bearer {API_USER}:{API_TOKEN}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quality_series_add_up_to_tshark_figures() {
    // Two stretches of RTP cut out of the SIPp capture: real gaps in the
    // sequence numbers of several streams.
    let tmp = tempfile::tempdir().unwrap();
    let lossy = tmp.path().join("lossy.pcap");
    let st = Command::new("editcap")
        .arg(corpus("generated/sipp-netns-udp-2calls.pcap"))
        .arg(&lossy)
        .args(["150-165", "600-604"])
        .status()
        .expect("editcap (wireshark-common) must be installed");
    assert!(st.success());
    let want = tshark_streams(&lossy);
    assert!(
        want.values().any(|v| v.1 > 0),
        "the cut made losses: {want:?}"
    );

    // Arrival time of every RTP packet by stream, in one tshark pass.
    let mut rtp_times: HashMap<String, Vec<u64>> = HashMap::new();
    for line in tshark(&[
        "-r",
        lossy.to_str().unwrap(),
        "-o",
        "rtp.heuristic_rtp:TRUE",
        "-Y",
        "rtp && !icmp",
        "-T",
        "fields",
        "-e",
        "ip.src",
        "-e",
        "udp.srcport",
        "-e",
        "ip.dst",
        "-e",
        "udp.dstport",
        "-e",
        "rtp.ssrc",
        "-e",
        "frame.time_epoch",
    ])
    .lines()
    {
        let f: Vec<&str> = line.split('\t').collect();
        let [sip, sport, dip, dport, ssrc, t] = f[..] else {
            continue;
        };
        let ssrc = u32::from_str_radix(ssrc.trim_start_matches("0x"), 16).unwrap();
        let (secs, frac) = t.split_once('.').unwrap();
        let ns = secs.parse::<u64>().unwrap() * 1_000_000_000
            + format!("{frac:0<9}")[..9].parse::<u64>().unwrap();
        rtp_times
            .entry(format!("{sip}:{sport}->{dip}:{dport}/{ssrc}"))
            .or_default()
            .push(ns);
    }

    let dir = data_dir_with(&lossy);
    let data = dir.path().canonicalize().unwrap();
    let calls = Index::open(&data.join(INDEX_FILE))
        .unwrap()
        .search(&CallQuery {
            limit: 10,
            ..Default::default()
        })
        .unwrap()
        .rows;
    assert_eq!(calls.len(), 2);
    let running = start(&data).await;
    let http = reqwest::Client::new();
    let mut checked = 0;
    let mut lossy_intervals = 0;
    for c in &calls {
        let v: serde_json::Value = serde_json::from_str(
            &http
                .get(format!(
                    "http://{}/api/calls/{}/timeline",
                    running.addr, c.id
                ))
                .header("authorization", bearer())
                .send()
                .await
                .unwrap()
                .error_for_status()
                .unwrap()
                .text()
                .await
                .unwrap(),
        )
        .unwrap();
        let start_ns = v["start_ns"].as_u64().unwrap();
        assert_eq!(v["interval_ms"], 1000, "a 10 s call is charted per second");
        for s in v["streams"].as_array().unwrap() {
            let (src, dst) = (s["src"].as_str().unwrap(), s["dst"].as_str().unwrap());
            let ssrc = s["ssrc"].as_u64().unwrap() as u32;
            let (pk, lost, maxj) = want[&(src.to_string(), dst.to_string(), ssrc)];
            let b = s["timeline"]["buckets"].as_array().unwrap();
            let sum_pk: u64 = b.iter().map(|x| x["packets"].as_u64().unwrap()).sum();
            let sum_lost: i64 = b.iter().map(|x| x["lost"].as_i64().unwrap()).sum();
            let max_j = b
                .iter()
                .filter_map(|x| x["max_jitter_ms"].as_f64())
                .fold(0.0, f64::max);
            assert_eq!(sum_pk, pk, "{src}->{dst} {ssrc:08x} packets");
            assert_eq!(sum_lost, lost, "{src}->{dst} {ssrc:08x} lost");
            assert!(
                (max_j - maxj).abs() < 0.0015,
                "{src}->{dst} {ssrc:08x} max jitter {max_j} vs tshark {maxj}"
            );
            lossy_intervals += b.iter().filter(|x| x["lost"].as_i64().unwrap() > 0).count();
            // Packets per second against the frame times tshark reports.
            let key = format!("{src}->{dst}/{ssrc}");
            let times = rtp_times.get(&key).map(Vec::as_slice).unwrap_or_default();
            let mut per_s = vec![0u64; b.len()];
            for &ns in times {
                per_s[((ns - start_ns) / 1_000_000_000) as usize] += 1;
            }
            let got: Vec<u64> = b.iter().map(|x| x["packets"].as_u64().unwrap()).collect();
            assert_eq!(got, per_s, "{src}->{dst} {ssrc:08x} packets per second");
            checked += 1;
        }
    }
    assert_eq!(checked, want.len(), "every tshark stream is charted");
    assert!(lossy_intervals > 0);

    // The call page draws one chart per stream.
    let page = http
        .get(format!("http://{}/calls/{}", running.addr, calls[0].id))
        .header("authorization", bearer())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        page.matches("<svg class=\"timeline\"").count() as u64,
        calls[0].stream_count
    );
    running.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waveform_peaks_follow_the_samples() {
    let dir = data_dir_with(&corpus("generated/sipp-netns-udp-2calls.pcap"));
    let data = dir.path().canonicalize().unwrap();
    let call = Index::open(&data.join(INDEX_FILE))
        .unwrap()
        .search(&CallQuery {
            limit: 1,
            ..Default::default()
        })
        .unwrap()
        .rows
        .remove(0);
    let folder = data.join(call.folder.as_ref().unwrap());
    // Stereo: 440 Hz left, 300 Hz right, at half scale, 2 s at 8 kHz.
    let wav = folder.join("stereo.wav");
    let st = Command::new("sox")
        .args(["-n", "-r", "8000", "-b", "16", "-c", "2"])
        .arg(&wav)
        .args(["synth", "2", "sine", "440", "sine", "300", "vol", "0.5"])
        .args(["remix", "1", "2"])
        .status()
        .expect("sox must be installed");
    assert!(st.success());

    let p = voxtap_web::charts::peaks(&wav, 800).unwrap();
    assert_eq!(p.rate, 8000);
    assert_eq!(p.samples_per_channel, 16000);
    assert_eq!(p.channels.len(), 2);
    assert_eq!(p.channels[0].len(), 800);
    // Independent fold of the samples hound reads: 20 frames per column.
    let mut r = hound::WavReader::open(&wav).unwrap();
    let samples: Vec<i16> = r.samples::<i16>().map(Result::unwrap).collect();
    for ch in 0..2 {
        for col in 0..800 {
            let vals: Vec<f32> = (col * 20..col * 20 + 20)
                .map(|f| f32::from(samples[f * 2 + ch]) / 32768.0)
                .collect();
            let lo = vals.iter().copied().fold(f32::MAX, f32::min);
            let hi = vals.iter().copied().fold(f32::MIN, f32::max);
            assert_eq!(p.channels[ch][col], (lo, hi), "channel {ch} column {col}");
        }
        // sox's "vol 0.5": the loudest column reaches half scale.
        let top = p.channels[ch].iter().map(|c| c.1).fold(f32::MIN, f32::max);
        assert!((top - 0.5).abs() < 0.01, "channel {ch} peak {top}");
    }

    // Served as SVG above the audio player, through the call's folder only.
    let running = start(&data).await;
    let http = reqwest::Client::new();
    let get = |path: String| {
        http.get(format!("http://{}{path}", running.addr))
            .header("authorization", bearer())
            .send()
    };
    let resp = get(format!("/calls/{}/waveform/stereo.wav", call.id))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/svg+xml");
    let svg = resp.text().await.unwrap();
    assert!(svg.contains("data-columns=\"800\""), "{}", &svg[..300]);
    assert!(svg.contains("data-channels=\"2\""));
    assert_eq!(svg.matches("<path class=\"ch").count(), 2);
    let page = get(format!("/calls/{}", call.id))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(&format!("src=\"/calls/{}/waveform/stereo.wav\"", call.id)));
    for bad in ["..%2f..%2fetc%2fpasswd", "%2e%2e", "call.pcap", "nope.wav"] {
        let s = get(format!("/calls/{}/waveform/{bad}", call.id))
            .await
            .unwrap()
            .status();
        assert!(s == 400 || s == 404, "{bad}: {s}");
    }
    running.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b2bua_legs_side_by_side() {
    let pcap = corpus("generated/baresip-b2bua-2legs-srtp-to-rtp.pcap");
    let dir = data_dir_with(&pcap);
    let data = dir.path().canonicalize().unwrap();
    let calls = Index::open(&data.join(INDEX_FILE))
        .unwrap()
        .search(&CallQuery {
            limit: 10,
            ..Default::default()
        })
        .unwrap()
        .rows;
    assert_eq!(calls.len(), 2);
    let running = start(&data).await;
    let http = reqwest::Client::new();
    // Legs in start order: the caller's leg first.
    let mut by_start = calls.clone();
    by_start.sort_by_key(|c| c.start_ns);
    let per_leg: Vec<usize> = by_start
        .iter()
        .map(|c| sip_message_count(&pcap, &c.call_id))
        .collect();
    assert!(per_leg.iter().all(|n| *n > 0));
    for c in &calls {
        let page = http
            .get(format!("http://{}/calls/{}", running.addr, c.id))
            .header("authorization", bearer())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("id=\"legs\""), "legs section");
        assert_eq!(
            page.matches("<div class=\"leg\" ").count()
                + page.matches("<div class=\"leg current\" ").count(),
            2,
            "one column per leg"
        );
        assert_eq!(
            page.matches("<div class=\"leg current\"").count(),
            1,
            "this call is marked"
        );
        for (n, leg) in by_start.iter().enumerate() {
            // Each leg's column names its Call-ID, and its arrows in the
            // combined ladder are as many as tshark's SIP frames of it.
            assert!(page.contains(&leg.call_id));
            let arrows = page
                .matches(&format!("class=\"legmsg\" data-leg=\"{}\"", n + 1))
                .count();
            assert_eq!(arrows, per_leg[n], "leg {} arrows vs tshark", n + 1);
            assert!(page.contains(&format!("<a href=\"/calls/{}#msg-0\"", leg.id)));
        }
        // The call's own ladder still has only its own messages.
        assert_eq!(
            page.matches("class=\"msg ").count(),
            sip_message_count(&pcap, &c.call_id)
        );
    }
    running.task.abort();
}
