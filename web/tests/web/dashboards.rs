//! Dashboards and CDR export: ASR/ACD/NER/PDD from the rollups against the
//! same figures computed here from calls.csv; the rollups against a
//! recomputation from the calls table; a drill-down in Chromium landing on
//! exactly the bucket's calls; the CSV/JSON export against the search.
//! The large-index timing is `dash_bench` (ignored: minutes).

use crate::common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Instant;

use common::*;
use fantoccini::Locator;
use voxtap_engine::import::{ImportOptions, run_import};
use voxtap_engine::index::{INDEX_FILE, Index};
use voxtap_engine::pipeline::PipelineConfig;
use voxtap_engine::synth::{SynthConfig, generate, udp_frame};
use voxtap_proto::pcapio::{LinkType, PcapWriter};
use voxtap_testkit::csv::read_csv;
use voxtap_web::config::TrunkConfig;

/// 2026-02-01T00:00:00Z.
pub(crate) const T0: u64 = 1_769_904_000 * 1_000_000_000;
const MS: u64 = 1_000_000;
const NER_CODES: [&str; 5] = ["480", "486", "487", "600", "603"];

pub(crate) fn trunks() -> Vec<TrunkConfig> {
    vec![
        TrunkConfig {
            name: "carrier-a".into(),
            ips: vec!["10.9.1.0/24".into()],
            numbers: vec![],
        },
        TrunkConfig {
            name: "mobile".into(),
            ips: vec![],
            numbers: vec!["49170".into()],
        },
    ]
}

/// One SIP message of outcome call `i` (caller 10.9.{1,2}.x, callee
/// 10.20.0.1).
fn sip(i: u32, first: &str, cseq: &str, to_tag: bool) -> Vec<u8> {
    let to = if i.is_multiple_of(3) {
        format!("49170{i:05}")
    } else {
        format!("4930{i:05}")
    };
    format!(
        "{first}\r\nVia: SIP/2.0/UDP {a}:5060;branch=z9hG4bKo{i}{c}\r\nFrom: <sip:4420{i:05}@{a}>;tag=f{i}\r\n\
         To: <sip:{to}@10.20.0.1>{tt}\r\nCall-ID: outcome-{i}@test\r\nCSeq: {cseq}\r\nContact: <sip:{a}:5060>\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        a = caller(i),
        c = cseq.len(),
        tt = if to_tag { format!(";tag=t{i}") } else { String::new() },
    )
    .into_bytes()
}

fn caller(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 9, 1 + (i % 2) as u8, 1 + (i % 200) as u8)
}

/// The messages of call `i`: (ms after its INVITE, from the callee, text).
fn outcome(i: u32) -> Vec<(u64, bool, Vec<u8>)> {
    let to = if i.is_multiple_of(3) {
        format!("49170{i:05}")
    } else {
        format!("4930{i:05}")
    };
    let ruri = |m: &str| format!("{m} sip:{to}@10.20.0.1 SIP/2.0");
    let pdd = 100 + 7 * u64::from(i);
    let mut m = vec![(0, false, sip(i, &ruri("INVITE"), "1 INVITE", false))];
    let mut resp = |t: u64, line: &str| m.push((t, true, sip(i, line, "1 INVITE", true)));
    match i % 6 {
        0 | 5 => {
            resp(
                pdd,
                if i.is_multiple_of(6) {
                    "SIP/2.0 180 Ringing"
                } else {
                    "SIP/2.0 183 Session Progress"
                },
            );
            resp(pdd + 500, "SIP/2.0 200 OK");
            let bye = pdd + 600 + 1000 * u64::from(3 + i % 7);
            m.push((pdd + 510, false, sip(i, &ruri("ACK"), "1 ACK", true)));
            m.push((bye, false, sip(i, &ruri("BYE"), "2 BYE", true)));
            m.push((bye + 5, true, sip(i, "SIP/2.0 200 OK", "2 BYE", true)));
        }
        1 => {
            resp(pdd, "SIP/2.0 180 Ringing");
            resp(pdd + 300, "SIP/2.0 486 Busy Here");
            m.push((pdd + 310, false, sip(i, &ruri("ACK"), "1 ACK", true)));
        }
        3 => {
            resp(pdd, "SIP/2.0 183 Session Progress");
            m.push((
                pdd + 2000,
                false,
                sip(i, &ruri("CANCEL"), "1 CANCEL", false),
            ));
            m.push((pdd + 2005, true, sip(i, "SIP/2.0 200 OK", "1 CANCEL", true)));
            m.push((
                pdd + 2010,
                true,
                sip(i, "SIP/2.0 487 Request Terminated", "1 INVITE", true),
            ));
            m.push((pdd + 2020, false, sip(i, &ruri("ACK"), "1 ACK", true)));
        }
        k => {
            resp(
                pdd,
                if k == 2 {
                    "SIP/2.0 503 Service Unavailable"
                } else {
                    "SIP/2.0 404 Not Found"
                },
            );
            m.push((pdd + 10, false, sip(i, &ruri("ACK"), "1 ACK", true)));
        }
    }
    m
}

/// `n` calls of six outcomes, one every 150 s from T0 (3 hours for 72).
pub(crate) fn outcome_pcap(path: &Path, n: u32) {
    let mut ev: Vec<(u64, u32, bool, Vec<u8>)> = Vec::new();
    for i in 0..n {
        let start = T0 + u64::from(i) * 150_000 * MS;
        for (t, back, text) in outcome(i) {
            ev.push((start + t * MS, i, back, text));
        }
    }
    ev.sort_by_key(|e| e.0);
    let mut w = PcapWriter::new(
        std::fs::File::create(path).unwrap(),
        LinkType::Ethernet,
        65_535,
    )
    .unwrap();
    let mut frame = Vec::new();
    for (ts, i, back, text) in ev {
        let (a, b) = ((caller(i), 5060), (Ipv4Addr::new(10, 20, 0, 1), 5060));
        let (src, dst) = if back { (b, a) } else { (a, b) };
        frame.clear();
        udp_frame(&mut frame, src, dst, &text);
        w.write_packet(ts, frame.len() as u32, &frame).unwrap();
    }
}

/// A data directory imported from the outcome calls, synthetic G.711
/// calls with loss, and corpus captures.
pub(crate) fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let outcomes = dir.path().join("outcomes.pcap");
    outcome_pcap(&outcomes, 72);
    let synth = dir.path().join("synth.pcap");
    let cfg = SynthConfig {
        calls: 300,
        seconds: 2,
        ramp_seconds: 600,
        loss_pct: 3.0,
        ..Default::default()
    };
    generate(&cfg, std::fs::File::create(&synth).unwrap()).unwrap();
    let data = dir.path().join("data");
    run_import(&ImportOptions {
        files: vec![
            outcomes,
            synth,
            corpus("generated/sipp-netns-udp-2calls.pcap"),
            corpus("generated/baresip-g722-1call.pcap"),
        ],
        out: data,
        pipeline: PipelineConfig::default(),
        call_files: false,
        media: None,
    })
    .expect("import");
    dir
}

/// calls.csv's `2026-02-01T00:02:30.100000Z` as ns.
fn ns(s: &str) -> Option<u64> {
    voxtap_web::parse_time(s)
}

/// ASR/ACD/NER/PDD inputs per hour, from calls.csv alone.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Fig {
    pub attempts: u64,
    pub answered: u64,
    pub ner_ok: u64,
    pub talk_s: f64,
    pub pdd_ms: f64,
    pub pdd_n: u64,
}

pub(crate) fn figures_from_csv(path: &Path) -> BTreeMap<u64, Fig> {
    let mut m: BTreeMap<u64, Fig> = BTreeMap::new();
    for r in read_csv(path) {
        if r["method"] != "INVITE" {
            continue;
        }
        let start = ns(&r["start"]).unwrap();
        let f = m.entry(start / 3_600_000_000_000).or_default();
        f.attempts += 1;
        let answered = !r["answer"].is_empty();
        if answered {
            f.answered += 1;
            f.talk_s += r["talk_s"].parse::<f64>().unwrap();
        }
        if answered || NER_CODES.contains(&r["status_code"].as_str()) {
            f.ner_ok += 1;
        }
        let first = [&r["ringing"], &r["answer"]]
            .iter()
            .filter_map(|s| ns(s))
            .min();
        if let Some(t) = first {
            f.pdd_ms += (t - start) as f64 / 1e6;
            f.pdd_n += 1;
        }
    }
    m
}

pub(crate) async fn server(data: &Path) -> voxtap_web::Running {
    let mut config = config();
    config.trunks = trunks();
    voxtap_web::start(voxtap_web::ServeOptions {
        data: data.to_path_buf(),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        config,
        insecure_no_auth: false,
    })
    .await
    .expect("server starts")
}

pub(crate) async fn get_json(base: &str, cookie: &str, path: &str) -> serde_json::Value {
    let r = client()
        .get(format!("{base}{path}"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

pub(crate) fn close(a: f64, b: f64, tol: f64, what: &str) {
    assert!(
        (a - b).abs() <= tol,
        "{what}: dashboard {a} vs calls.csv {b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_figures_equal_calls_csv() {
    let dir = data_dir();
    let data = dir.path().join("data").canonicalize().unwrap();
    let want = figures_from_csv(&data.join("calls.csv"));
    assert!(want.len() >= 4, "hours with calls: {want:?}");
    let running = server(&data).await;
    let base = format!("http://{}", running.addr);
    let cookie = login(&base, USER, PASSWORD).await.unwrap();
    let days: BTreeSet<u64> = want.keys().map(|h| h / 24).collect();
    let mut seen = 0;
    for day in days {
        let from = voxtap_engine::output::format_ts(day * 86_400_000_000_000);
        let to = voxtap_engine::output::format_ts((day + 1) * 86_400_000_000_000);
        let path = format!(
            "/api/dashboard?from={}&to={}&step=hour",
            &from[..19],
            &to[..19]
        );
        let d = get_json(&base, &cookie, &path).await;
        for b in d["buckets"].as_array().unwrap() {
            let hour = b["start_ns"].as_u64().unwrap() / 3_600_000_000_000;
            let c = &b["counts"];
            let Some(f) = want.get(&hour) else {
                assert_eq!(c["attempts"], 0, "hour {hour} has no calls in calls.csv");
                continue;
            };
            seen += 1;
            assert_eq!(c["attempts"].as_u64().unwrap(), f.attempts, "hour {hour}");
            assert_eq!(c["answered"].as_u64().unwrap(), f.answered, "hour {hour}");
            assert_eq!(c["ner_ok"].as_u64().unwrap(), f.ner_ok, "hour {hour}");
            close(
                b["asr"].as_f64().unwrap(),
                f.answered as f64 / f.attempts as f64,
                1e-9,
                "ASR",
            );
            close(
                b["ner"].as_f64().unwrap(),
                f.ner_ok as f64 / f.attempts as f64,
                1e-9,
                "NER",
            );
            if f.answered > 0 {
                // The index keeps ms (truncated), calls.csv rounds to ms.
                close(
                    b["acd_s"].as_f64().unwrap(),
                    f.talk_s / f.answered as f64,
                    0.002,
                    "ACD",
                );
            }
            if f.pdd_n > 0 {
                assert_eq!(c["pdd_n"].as_u64().unwrap(), f.pdd_n);
                close(
                    b["pdd_ms"].as_f64().unwrap(),
                    f.pdd_ms / f.pdd_n as f64,
                    1.0,
                    "PDD",
                );
            }
        }
    }
    assert_eq!(seen, want.len(), "every hour of calls.csv had a bucket");
    // The outcome calls' hours: 12 of each outcome in 72 calls.
    let d = get_json(
        &base,
        &cookie,
        "/api/dashboard?from=2026-02-01T00:00&to=2026-02-01T03:00&step=hour",
    )
    .await;
    let t = &d["totals"]["counts"];
    assert_eq!(t["attempts"], 72);
    assert_eq!(t["answered"], 24);
    // Answered 24 + 486 12 + 487 12.
    assert_eq!(t["ner_ok"], 48);
    assert_eq!(t["codes"][3], 12, "486: {t}");
    assert_eq!(t["codes"][5], 12, "503: {t}");
    // Per trunk: carrier-a by IP (even calls), mobile by number (the rest
    // of every third), the others none; the three add up.
    let mut by_trunk = 0;
    for trunk in ["carrier-a", "mobile", "-"] {
        let p = format!(
            "/api/dashboard?from=2026-02-01T00:00&to=2026-02-01T03:00&step=hour&trunk={trunk}"
        );
        by_trunk += get_json(&base, &cookie, &p).await["totals"]["counts"]["attempts"]
            .as_u64()
            .unwrap();
    }
    assert_eq!(by_trunk, 72);
    let p = "/api/dashboard?from=2026-02-01T00:00&to=2026-02-01T03:00&step=hour&trunk=carrier-a";
    assert_eq!(
        get_json(&base, &cookie, p).await["totals"]["counts"]["attempts"],
        36
    );
    let p = "/api/dashboard?from=2026-02-01T00:00&to=2026-02-01T03:00&step=hour&trunk=mobile";
    assert_eq!(
        get_json(&base, &cookie, p).await["totals"]["counts"]["attempts"],
        12
    );
}

/// The rollup rows recomputed here from the calls table (SQL over the
/// rows, the concurrency in Rust) equal the ones kept incrementally.
#[test]
fn rollups_equal_a_recomputation() {
    let dir = data_dir();
    let path = dir.path().join("data").join(INDEX_FILE);
    let kept_sql = "SELECT minute, trunk, codec, attempts, answered, ner_ok, answered_ms, pdd_ms, pdd_n, \
        r2, r4, r5, r6, mos_none, mos5, one_way, active_ms FROM rollup_minute";
    // As the import's batches of inserts left them.
    {
        let db = rusqlite::Connection::open(&path).unwrap();
        let (kept, recomputed) = (rollup_sums(&db, kept_sql), recompute(&db));
        assert!(kept.values().map(|v| v[0]).sum::<i64>() > 300);
        assert_eq!(kept, recomputed);
    }
    // Then reclassified into trunks and rebuilt.
    {
        let mut idx = Index::open(&path).unwrap();
        let rules: Vec<_> = trunks().iter().map(TrunkConfig::rule).collect();
        assert!(idx.set_trunks(&rules).unwrap());
    }
    let db = rusqlite::Connection::open(&path).unwrap();
    let kept = rollup_sums(&db, kept_sql);
    let recomputed = recompute(&db);
    assert_eq!(kept.len(), recomputed.len());
    for (k, v) in &recomputed {
        assert_eq!(kept.get(k), Some(v), "rollup row {k:?}");
    }
    assert!(kept.keys().any(|k| k.1 == "carrier-a") && kept.keys().any(|k| k.1 == "mobile"));
}

type Key = (i64, String, String);

fn rollup_sums(db: &rusqlite::Connection, sql: &str) -> HashMap<Key, Vec<i64>> {
    let mut st = db.prepare(sql).unwrap();
    let mut m = HashMap::new();
    let mut rows = st.query([]).unwrap();
    while let Some(r) = rows.next().unwrap() {
        let v: Vec<i64> = (3..17).map(|k| r.get(k).unwrap()).collect();
        if v.iter().any(|x| *x != 0) {
            m.insert((r.get(0).unwrap(), r.get(1).unwrap(), r.get(2).unwrap()), v);
        }
    }
    m
}

fn recompute(db: &rusqlite::Connection) -> HashMap<Key, Vec<i64>> {
    let sql = "SELECT start_ns / 60000000000, trunk, codec, count(*), count(answer_ns), \
        sum(coalesce(answer_ns IS NOT NULL OR status_code IN (480, 486, 487, 600, 603), 0)), \
        sum(CASE WHEN answer_ns IS NOT NULL THEN coalesce(talk_ms, 0) ELSE 0 END), \
        sum(CASE WHEN coalesce(ringing_ns, answer_ns) IS NOT NULL \
            THEN (min(coalesce(ringing_ns, answer_ns), coalesce(answer_ns, ringing_ns)) - start_ns) / 1000000 ELSE 0 END), \
        count(coalesce(ringing_ns, answer_ns)), \
        sum(coalesce(status_code / 100 = 2, 0)), sum(coalesce(status_code / 100 = 4, 0)), sum(coalesce(status_code / 100 = 5, 0)), sum(coalesce(status_code / 100 = 6, 0)), \
        sum(mos IS NULL), sum(coalesce(mos >= 4, 0)), sum(one_way), 0 \
        FROM calls WHERE method = 'INVITE' GROUP BY 1, 2, 3";
    let mut m = rollup_sums(db, sql);
    // In-progress time per minute, from each call's start and end.
    let mut st = db
        .prepare("SELECT start_ns, end_ns, trunk, codec FROM calls WHERE method = 'INVITE'")
        .unwrap();
    let mut rows = st.query([]).unwrap();
    while let Some(r) = rows.next().unwrap() {
        let (s, e): (i64, i64) = (r.get(0).unwrap(), r.get(1).unwrap());
        let (trunk, codec): (String, String) = (r.get(2).unwrap(), r.get(3).unwrap());
        let minute = 60_000_000_000i64;
        let mut m0 = s / minute;
        while m0 * minute < e {
            let ov = (e.min((m0 + 1) * minute) - s.max(m0 * minute)) / 1_000_000;
            if ov > 0 {
                let row = m
                    .entry((m0, trunk.clone(), codec.clone()))
                    .or_insert(vec![0; 14]);
                row[13] += ov;
            }
            m0 += 1;
        }
    }
    m
}

/// The ids of the calls the list shows, as a browser sees them.
pub(crate) async fn listed_call_ids(c: &fantoccini::Client) -> BTreeSet<String> {
    let v = c
        .execute(
            "return Array.from(document.querySelectorAll('#rows td.callid')).map(td => td.title)",
            vec![],
        )
        .await
        .unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_down_in_chromium_lands_on_the_bucket_calls() {
    let dir = data_dir();
    let data = dir.path().join("data").canonicalize().unwrap();
    let running = server(&data).await;
    let base = format!("http://{}", running.addr);
    let (_driver, c) = browser().await;
    c.goto(&format!("{base}/login")).await.unwrap();
    log_in(&c, USER, PASSWORD).await;
    c.wait()
        .for_element(Locator::Css("table#calls"))
        .await
        .unwrap();
    c.goto(&format!(
        "{base}/dashboards?from=2026-02-01T00:00&to=2026-02-01T03:00&step=hour&trunk=carrier-a"
    ))
    .await
    .unwrap();
    c.wait().for_element(Locator::Css("svg#asr")).await.unwrap();
    c.set_window_size(1366, 3200).await.unwrap();
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshots_dir().join("dashboards.png"), png).unwrap();
    c.set_window_size(1366, 900).await.unwrap();
    // The second hour's ASR bar.
    let sel = "svg#asr a.drill[data-i='1']";
    let bar = c.find(Locator::Css(sel)).await.unwrap();
    if bar.click().await.is_err() {
        // Some drivers refuse to click an SVG link: the same click by script.
        let js = format!(
            "document.querySelector(\"{sel}\").dispatchEvent(new MouseEvent('click', {{bubbles: true}}))"
        );
        c.execute(&js, vec![]).await.unwrap();
    }
    c.wait()
        .for_element(Locator::Css("table#calls"))
        .await
        .unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/calls");
    // Independently: calls.csv's INVITEs of 01:00-02:00 whose caller is in
    // 10.9.1.0/24 (carrier-a): the outcome calls with an even index.
    let want: BTreeSet<String> = read_csv(&data.join("calls.csv"))
        .into_iter()
        .filter(|r| r["method"] == "INVITE" && r["start"].starts_with("2026-02-01T01:"))
        .map(|r| r["call_id"].clone())
        .filter(|id| {
            id.strip_prefix("outcome-")
                .and_then(|s| s.strip_suffix("@test"))
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n % 2 == 0)
        })
        .collect();
    assert!(!want.is_empty());
    assert_eq!(listed_call_ids(&c).await, want);
    full_page_screenshot(&c).await;
}

async fn full_page_screenshot(c: &fantoccini::Client) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshots_dir().join("dashboards-drilldown.png"), png).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_and_saved_search_match_the_search() {
    let dir = data_dir();
    let data = dir.path().join("data").canonicalize().unwrap();
    let running = server(&data).await;
    let base = format!("http://{}", running.addr);
    let cookie = login(&base, USER, PASSWORD).await.unwrap();
    let filters = "from=2026-01-01T00:00&to=2026-02-02T00:00&state=answered&sort=start&dir=asc";
    // The search's rows, page by page.
    let mut rows = Vec::new();
    for page in 1.. {
        let p = get_json(
            &base,
            &cookie,
            &format!("/api/calls?{filters}&per_page=100&page={page}"),
        )
        .await;
        let got = p["rows"].as_array().unwrap().clone();
        let n = got.len();
        rows.extend(got);
        if n < 100 {
            break;
        }
    }
    assert!(rows.len() > 100, "{} rows", rows.len());
    let json = get_json(
        &base,
        &cookie,
        &format!("/calls/export/calls.json?{filters}"),
    )
    .await;
    assert_eq!(json.as_array().unwrap(), &rows);
    let r = client()
        .get(format!("{base}/calls/export/calls.csv?{filters}"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let text = r.text().await.unwrap();
    let csv = dir.path().join("export.csv");
    std::fs::write(&csv, &text).unwrap();
    let lines = read_csv(&csv);
    assert_eq!(lines.len(), rows.len());
    for (l, r) in lines.iter().zip(&rows) {
        assert_eq!(l["id"], r["id"].to_string());
        assert_eq!(l["call_id"], r["call_id"].as_str().unwrap());
        assert_eq!(l["state"], r["state"].as_str().unwrap());
        assert_eq!(l["from_user"], r["from_user"].as_str().unwrap());
    }
    // The saved-search link round-trips: opened, it shows the same calls
    // and the same link.
    let first = get_page(
        &base,
        &cookie,
        &format!("/calls?{filters}&party=4420*&dur_min=1&trunk=-&method=INVITE&per_page=500"),
    )
    .await;
    let link = attr(&first, "permalink", "href");
    let again = get_page(&base, &cookie, &link.replace("&amp;", "&")).await;
    assert_eq!(attr(&again, "permalink", "href"), link);
    assert_eq!(ids_in(&again), ids_in(&first));
    assert!(!ids_in(&first).is_empty());
    saved_search_opens_the_same_calls(&base, &cookie, &first).await;
    // Every export above is in the audit log with its file and search.
    let audit = get_json(&base, &cookie, "/api/audit?action=export").await;
    let details: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    let search = "from=2026-01-01T00:00&to=2026-02-02T00:00&state=answered&sort=start&dir=asc";
    for file in ["calls.json", "calls.csv"] {
        let want = format!("{file}?{}", search.replace(':', "%3A"));
        assert!(details.contains(&want.as_str()), "{want} in {details:?}");
    }
}

/// A named saved search: saved from the calls page's form (with its CSRF
/// token), listed there as a link that opens the same calls, kept per
/// user, removable; without the token it is refused.
async fn saved_search_opens_the_same_calls(base: &str, cookie: &str, page: &str) {
    let link = attr(page, "permalink", "href").replace("&amp;", "&");
    let query = link.trim_start_matches("/calls?").to_string();
    let post = |path: &'static str, form: Vec<(&'static str, String)>| {
        let r = client()
            .post(format!("{base}{path}"))
            .header("cookie", cookie)
            .header("accept", "application/json")
            .form(&form)
            .send();
        async move {
            let r = r.await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let name = || ("name", "answered in January".to_string());
    let (s, _) = post("/calls/saved", vec![name(), ("query", query.clone())]).await;
    assert_eq!(s, 403, "saved without the CSRF token");
    let csrf = ("csrf", hidden_csrf(page));
    let form = vec![name(), ("query", query.clone()), csrf.clone()];
    let (s, body) = post("/calls/saved", form).await;
    assert_eq!(s, 200, "{body}");
    let bad = vec![name(), ("query", "ip=10.1".to_string()), csrf.clone()];
    assert_eq!(post("/calls/saved", bad).await.0, 400);
    let listed = get_json(base, cookie, "/api/saved").await;
    assert_eq!(listed["searches"][0]["name"], "answered in January");
    let saved_q = listed["searches"][0]["query"].as_str().unwrap().to_string();
    // The calls page lists it; its link shows the same calls.
    let calls = get_page(base, cookie, "/calls").await;
    let href = format!("href=\"/calls?{}\"", saved_q.replace('&', "&amp;"));
    assert!(calls.contains(&href), "{href} not on the calls page");
    let opened = get_page(base, cookie, &format!("/calls?{saved_q}")).await;
    assert_eq!(ids_in(&opened), ids_in(page));
    // Another user has none of it.
    let other = get_json_bearer(base, "/api/saved").await;
    assert_eq!(other["searches"].as_array().unwrap().len(), 0);
    let gone = vec![name(), csrf];
    assert_eq!(post("/calls/saved/delete", gone.clone()).await.0, 200);
    assert_eq!(post("/calls/saved/delete", gone).await.0, 404);
}

async fn get_json_bearer(base: &str, path: &str) -> serde_json::Value {
    let r = client()
        .get(format!("{base}{path}"))
        .bearer_auth(format!("{API_USER}:{API_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

fn attr(html: &str, id: &str, name: &str) -> String {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}"));
    let tag_start = html[..at].rfind('<').unwrap();
    let tag = &html[tag_start..tag_start + html[tag_start..].find('>').unwrap()];
    let k = tag.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
    tag[k..k + tag[k..].find('"').unwrap()].to_string()
}

fn ids_in(html: &str) -> Vec<String> {
    html.split("<tr data-id=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].to_string())
        .collect()
}

/// Server time of the pages with a large index: `VOXTAP_BENCH_CALLS`
/// calls (default 1 000 000) over 30 days, written straight into the index
/// and rolled up by the engine's rebuild (`page_bench` times every page). Run with
/// `cargo test --release -p voxtap-web --test web dash_bench -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn dash_bench() {
    let n: u64 = std::env::var("VOXTAP_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let (loaded, rolled) = crate::page_bench::load_calls(&dir.path().join(INDEX_FILE), n);
    let running = voxtap_web::start(voxtap_web::ServeOptions {
        data: dir.path().to_path_buf(),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        config: config(),
        insecure_no_auth: false,
    })
    .await
    .unwrap();
    let base = format!("http://{}", running.addr);
    let cookie = login(&base, USER, PASSWORD).await.unwrap();
    println!("{n} calls: loaded in {loaded:?}, rollups rebuilt in {rolled:?}");
    for p in [
        "/dashboards",
        "/dashboards?from=2026-02-01T00:00&to=2026-02-01T06:00&step=minute",
        "/dashboards?from=2026-02-01T00:00&to=2026-02-15T00:00&step=hour",
        "/dashboards?from=2026-02-01T00:00&to=2026-03-03T00:00&step=day",
        "/dashboards?from=2026-02-01T00:00&to=2026-03-03T00:00&step=day&codec=G722",
        "/calls",
        "/calls?from=2026-02-10T00:00&to=2026-02-10T01:00&method=INVITE&codec=G722",
    ] {
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let r = client()
                .get(format!("{base}{p}"))
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{p}");
            let body = r.bytes().await.unwrap();
            times.push((t.elapsed().as_secs_f64() * 1000.0, body.len()));
        }
        times.sort_by(|a, b| a.0.total_cmp(&b.0));
        println!(
            "{p}: median {:.1} ms, max {:.1} ms, {} bytes",
            times[2].0, times[4].0, times[2].1
        );
    }
    let t = Instant::now();
    let r = client()
        .get(format!(
            "{base}/calls/export/calls.csv?from=2026-02-01T00:00&to=2026-02-04T00:00"
        ))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let body = r.bytes().await.unwrap();
    println!(
        "CSV export of 3 days: {} bytes in {:?}",
        body.len(),
        t.elapsed()
    );
}
