//! The call search's loss filter (`loss_min`, percent of RTP lost in the
//! call's worse direction) against the same figure computed here from
//! streams.csv alone; the CSV export and the saved-search link keep it.
//! The hub's side of the filter is checked in `hub::` against the sensors'
//! own searches.

use crate::common;
use crate::dashboards::{data_dir, get_json, server};

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use voxtap_testkit::csv::read_csv;

/// Per Call-ID, the loss in percent of its worse direction: streams split
/// by their source IP, lost (negative counts as 0) over expected summed per
/// side. Calls whose streams have no expected packet are absent.
fn worst_loss_from_streams_csv(path: &std::path::Path) -> BTreeMap<String, f64> {
    // (call, source IP) -> (lost, expected)
    let mut sides: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for r in read_csv(path) {
        let ip = r["src"].rsplit_once(':').unwrap().0.to_string();
        let s = sides.entry((r["call_id"].clone(), ip)).or_default();
        s.0 += r["lost"].parse::<i64>().unwrap().max(0);
        s.1 += r["expected"].parse::<i64>().unwrap();
    }
    let mut ips: BTreeMap<String, usize> = BTreeMap::new();
    let mut worst: BTreeMap<String, f64> = BTreeMap::new();
    for ((call, _), (lost, expected)) in sides {
        *ips.entry(call.clone()).or_default() += 1;
        if expected > 0 {
            let pct = lost as f64 * 100.0 / expected as f64;
            let w = worst.entry(call).or_insert(pct);
            *w = w.max(pct);
        }
    }
    // Two sources at most: a split by source IP is the split by direction
    // (from the first SIP message's source, or not) the index makes.
    assert!(ips.values().all(|n| *n <= 2), "{ips:?}");
    worst
}

/// The Call-IDs a search lists, page by page.
async fn searched(base: &str, cookie: &str, filters: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for page in 1.. {
        let p = get_json(
            base,
            cookie,
            &format!("/api/calls?{filters}&per_page=500&page={page}"),
        )
        .await;
        let rows = p["rows"].as_array().unwrap();
        ids.extend(
            rows.iter()
                .map(|r| r["call_id"].as_str().unwrap().to_string()),
        );
        if rows.len() < 500 {
            break;
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_filter_equals_streams_csv() {
    let dir = data_dir();
    let data = dir.path().join("data").canonicalize().unwrap();
    let worst = worst_loss_from_streams_csv(&data.join("streams.csv"));
    let running = server(&data).await;
    let base = format!("http://{}", running.addr);
    let cookie = login(&base, USER, PASSWORD).await.unwrap();
    let all = searched(&base, &cookie, "").await;
    for x in [0.5, 2.75, 4.25, 100.0] {
        let want: BTreeSet<String> = worst
            .iter()
            .filter(|(_, l)| **l >= x)
            .map(|(c, _)| c.clone())
            .collect();
        // No call sits on the threshold, where float rounding may decide.
        assert!(worst.values().all(|l| (l - x).abs() > 1e-9), "{x}");
        let got = searched(&base, &cookie, &format!("loss_min={x}")).await;
        assert_eq!(got, want, "loss >= {x} %");
        eprintln!(
            "sensor: loss >= {x} %: {} of {} calls",
            got.len(),
            all.len()
        );
        if x < 100.0 {
            assert!(
                !got.is_empty() && got.len() < all.len(),
                "{x}: {}",
                got.len()
            );
        }
    }
    // Combined with another filter, the CSV export and the saved-search
    // link keep it.
    let filters = "loss_min=3&state=answered&sort=start&dir=asc";
    let want = searched(&base, &cookie, filters).await;
    let r = client()
        .get(format!("{base}/calls/export/calls.csv?{filters}"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let csv = dir.path().join("export.csv");
    std::fs::write(&csv, r.text().await.unwrap()).unwrap();
    let exported: BTreeSet<String> = read_csv(&csv)
        .into_iter()
        .map(|r| r["call_id"].clone())
        .collect();
    assert_eq!(exported, want);
    let page = get_page(&base, &cookie, &format!("/calls?{filters}")).await;
    assert!(page.contains("name=\"loss_min\" inputmode=\"decimal\" value=\"3\""));
    assert!(
        page.contains("loss_min=3"),
        "the permalink keeps the filter"
    );
    for bad in ["loss_min=101", "loss_min=-1", "loss_min=x"] {
        let r = client()
            .get(format!("{base}/api/calls?{bad}"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
}

/// The hub's search (central SQL on `loss_fwd`/`loss_rev`) finds the same
/// calls as streams.csv, the sensor's calls shipped as sensor s1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_loss_filter_equals_streams_csv() {
    use crate::hub::{Certs, setup_central, ship, start_hub};
    let dir = data_dir();
    let data = dir.path().join("data").canonicalize().unwrap();
    let worst = worst_loss_from_streams_csv(&data.join("streams.csv"));
    let certs = Certs::new();
    let pg = setup_central(&certs, "hub-loss").await;
    let calls = read_csv(&data.join("calls.csv")).len() as u64;
    assert_eq!(ship(&certs, &pg, "s1", &data).await, calls);
    let (_srv, _hub_dir, base) = start_hub(&certs, &pg, &[], config()).await;
    let cookie = login(&base, USER, PASSWORD).await.unwrap();
    for x in [0.5, 2.75, 4.25, 100.0] {
        let want: BTreeSet<String> = worst
            .iter()
            .filter(|(_, l)| **l >= x)
            .map(|(c, _)| c.clone())
            .collect();
        let got = searched(&base, &cookie, &format!("loss_min={x}")).await;
        assert_eq!(got, want, "hub: loss >= {x} %");
        eprintln!("hub: loss >= {x} %: {} of {calls} calls", got.len());
    }
}
