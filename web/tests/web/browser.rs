//! The UI in headless Chromium (WebDriver through chromedriver): log in,
//! search, open a call, check the ladder against tshark, the audio player,
//! download the PCAP and check it with tshark; screenshots land in
//! target/screenshots/.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::*;
use fantoccini::{Client, Locator};
use voxtap_engine::index::{CallQuery, INDEX_FILE, Index};

/// Chromium screenshots only the viewport: grow it to the page first.
async fn full_page_screenshot(c: &Client, name: &str) {
    let h = c
        .execute("return document.documentElement.scrollHeight", vec![])
        .await
        .unwrap()
        .as_u64()
        .unwrap_or(900)
        .clamp(600, 4000);
    c.set_window_size(1366, h as u32 + 140).await.unwrap();
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshots_dir().join(name), png).unwrap();
    c.set_window_size(1366, 900).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_open_listen_download() {
    let original = corpus("generated/sipp-netns-udp-2calls.pcap");
    let dir = data_dir_with(&original);
    let data = dir.path().canonicalize().unwrap();
    let idx = Index::open(&data.join(INDEX_FILE)).unwrap();
    let calls = idx
        .search(&CallQuery {
            limit: 10,
            ..Default::default()
        })
        .unwrap()
        .rows;
    assert_eq!(calls.len(), 2);
    let (with_wav, without_wav) = (&calls[0], &calls[1]);
    // A WAV in the first call's folder, as the media work will write.
    let wav = data
        .join(with_wav.folder.as_ref().unwrap())
        .join("caller.wav");
    let st = Command::new("sox")
        .args(["-n", "-r", "8000", "-c", "1"])
        .arg(&wav)
        .args(["synth", "1", "sine", "440"])
        .status()
        .expect("sox must be installed");
    assert!(st.success());

    let running = start(&data).await;
    let base = format!("http://{}", running.addr);
    let (_driver, c) = browser().await;

    // Not logged in: the calls page sends us to the login form.
    c.goto(&format!("{base}/calls")).await.unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/login");
    log_in(&c, USER, PASSWORD).await;
    if c.wait()
        .for_element(Locator::Css("table#calls"))
        .await
        .is_err()
    {
        panic!(
            "no calls table after login at {}:\n{}",
            c.current_url().await.unwrap(),
            c.source().await.unwrap()
        );
    }
    assert_eq!(c.current_url().await.unwrap().path(), "/calls");
    let rows = c.find_all(Locator::Css("#rows tr")).await.unwrap();
    assert_eq!(rows.len(), 2);
    full_page_screenshot(&c, "calls.png").await;

    // Search by Call-ID.
    let cid = &with_wav.call_id;
    c.find(Locator::Css("input[name=call_id]"))
        .await
        .unwrap()
        .send_keys(cid)
        .await
        .unwrap();
    c.find(Locator::Id("search"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The search is a GET form: wait for the new page.
    for _ in 0..100 {
        let u = c.current_url().await.unwrap();
        if u.query().is_some_and(|q| q.contains("call_id=")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.wait()
        .for_element(Locator::Css("table#calls"))
        .await
        .unwrap();
    let rows = c.find_all(Locator::Css("#rows tr")).await.unwrap();
    assert_eq!(rows.len(), 1, "search by Call-ID");
    assert!(rows[0].text().await.unwrap().contains(cid.as_str()));

    // Open it: the ladder has one arrow per SIP message tshark sees.
    rows[0]
        .find(Locator::Css("td.callid a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("svg.ladder"))
        .await
        .unwrap();
    let arrows = c.find_all(Locator::Css("svg.ladder a.msg")).await.unwrap();
    let expected = sip_message_count(&original, cid);
    assert!(expected > 0);
    assert_eq!(arrows.len(), expected, "ladder arrows vs tshark SIP frames");
    // Click the first arrow: the INVITE shows in the panel.
    arrows[0].click().await.unwrap();
    let panel = c.find(Locator::Id("msgpanel")).await.unwrap();
    assert!(panel.is_displayed().await.unwrap());
    let text = panel.text().await.unwrap();
    assert!(text.contains("INVITE sip:"), "{text}");
    assert!(text.contains(cid.as_str()));

    // The audio player is there because the folder has a WAV, and plays it.
    let audio = c.find(Locator::Css("section#audio audio")).await.unwrap();
    let src = audio.attr("src").await.unwrap().unwrap();
    assert!(src.ends_with("/files/caller.wav"), "{src}");
    let dur = wait_audio_duration(&c).await;
    assert!(
        (dur - 1.0).abs() < 0.01,
        "WAV duration in the browser {dur}"
    );
    // Quality over time: one chart per stream, drawn by the server.
    let charts = c
        .find_all(Locator::Css("section#quality svg.timeline"))
        .await
        .unwrap();
    assert_eq!(
        charts.len() as u64,
        with_wav.stream_count,
        "one chart per stream"
    );
    assert!(!charts.is_empty());
    let bars = c
        .find_all(Locator::Css("section#quality svg.timeline rect.packets"))
        .await
        .unwrap();
    assert!(!bars.is_empty(), "packet bars drawn");
    // The waveform above the player is an SVG the browser decoded.
    let loaded = wait_image(&c, "section#audio img.waveform").await;
    assert_eq!(loaded, 800.0, "waveform image width");
    full_page_screenshot(&c, "call.png").await;

    // The session cookie the browser holds downloads the PCAP.
    let session = c.get_named_cookie("voxtap_session").await.unwrap();
    let href = c
        .find(Locator::Id("dl-pcap"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let body = reqwest::Client::new()
        .get(format!("{base}{href}"))
        .header("cookie", format!("voxtap_session={}", session.value()))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let got = data.join("downloaded.pcap");
    std::fs::write(&got, &body).unwrap();
    let got_frames = tshark_frames(&got, None);
    let want = tshark_call_frames(&original, cid);
    assert_eq!(
        got_frames.len(),
        want.len(),
        "frames in the downloaded PCAP"
    );
    assert_eq!(got_frames, want, "same frames (time, length) as tshark's");
    assert_eq!(
        got_frames.len() as u64,
        with_wav.sip_packets + with_wav.rtp_packets + with_wav.rtcp_packets
    );

    // The other call has no WAV: no player.
    c.goto(&format!("{base}/calls/{}", without_wav.id))
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("svg.ladder"))
        .await
        .unwrap();
    assert!(
        c.find_all(Locator::Css("audio")).await.unwrap().is_empty(),
        "no audio element without a WAV"
    );

    // Live refresh of the list: a call indexed while the page is open (as
    // a live capture does) appears without a reload.
    c.goto(&format!("{base}/calls")).await.unwrap();
    c.wait()
        .for_element(Locator::Id("live"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(c.find_all(Locator::Css("#rows tr")).await.unwrap().len(), 2);
    let more = data_dir_with(&corpus("generated/sipp-netns-ipv6-udp-1call.pcap"));
    Index::open(&data.join(INDEX_FILE))
        .unwrap()
        .absorb(&more.path().join(INDEX_FILE), "imports/live")
        .unwrap();
    let mut rows = 0;
    for _ in 0..80 {
        rows = c.find_all(Locator::Css("#rows tr")).await.unwrap().len();
        if rows == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rows, 3, "the new call appeared by live refresh");
    c.find(Locator::Id("live"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The sensor page shows the live status file, as `voxtap run` writes
    // it, and refreshes it.
    use voxtap_sensor::live::status::{LiveCounters, RunFacts, SensorPublisher};
    use voxtap_sensor::xdp::{COUNTERS, Counter};
    let live = LiveCounters::default();
    LiveCounters::set(&live.frames, 123_456);
    LiveCounters::set(&live.bytes, 26_000_000);
    LiveCounters::set(&live.calls_open, 4);
    LiveCounters::set(&live.calls_written, 310);
    LiveCounters::set(&live.store_files, 12);
    LiveCounters::set(&live.store_bytes, 3 << 30);
    let mut k = [0u64; COUNTERS];
    k[Counter::Seen as usize] = 200_000;
    k[Counter::KeptSip as usize] = 2_000;
    k[Counter::KeptMedia as usize] = 121_456;
    k[Counter::Passed as usize] = 76_544;
    let mut publisher = SensorPublisher::new(
        &data,
        RunFacts {
            iface: "mirror0".into(),
            attach_mode: "Native".into(),
            ring_bytes: 64 << 20,
            rings: 1,
            pipeline: 1,
            store: data.clone(),
            max_bytes: 100 << 30,
            max_age_seconds: 7 * 86_400,
            min_free_bytes: 1 << 30,
        },
    );
    publisher.publish(&k, &live, true);
    c.goto(&format!("{base}/sensor")).await.unwrap();
    c.wait()
        .for_element(Locator::Id("status-sensor"))
        .await
        .unwrap();
    // Read in one script: the refresh replaces the card every 2 s.
    let card = c
        .execute(
            "return document.getElementById('status-sensor').innerText",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        card.as_str().is_some_and(|t| t.contains("calls active")),
        "{card}"
    );
    LiveCounters::set(&live.calls_open, 77);
    publisher.publish(&k, &live, true);
    let mut refreshed = false;
    for _ in 0..60 {
        // Read in one script: the refresh replaces the elements, so a
        // found element can go stale before its text is read.
        let t = c
            .execute(
                "const td = document.querySelector('#status-sensor tr[data-field=calls_active] td'); return td ? td.textContent : '';",
                vec![],
            )
            .await
            .unwrap();
        if t == "77" {
            refreshed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refreshed, "the sensor page re-read the status file");
    full_page_screenshot(&c, "sensor.png").await;
    c.close().await.unwrap();
}

/// The natural width of an image once the browser decoded it.
async fn wait_image(c: &Client, css: &str) -> f64 {
    for _ in 0..50 {
        let v = c
            .execute(
                "const i = document.querySelector(arguments[0]); return i && i.complete ? i.naturalWidth : -1;",
                vec![serde_json::json!(css)],
            )
            .await
            .unwrap();
        if let Some(w) = v.as_f64().filter(|w| *w > 0.0) {
            return w;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the browser never loaded {css}");
}

async fn wait_audio_duration(c: &Client) -> f64 {
    for _ in 0..50 {
        let v = c
            .execute(
                "const a = document.querySelector('section#audio audio'); return isFinite(a.duration) ? a.duration : -1;",
                vec![],
            )
            .await
            .unwrap();
        if let Some(d) = v.as_f64().filter(|d| *d > 0.0) {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the browser never loaded the WAV's metadata");
}
