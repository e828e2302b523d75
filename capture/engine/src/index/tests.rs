use std::net::SocketAddr;
use std::time::Instant;

use super::*;
use crate::calls::{CallState, EndReason, SipEntry};

pub(super) const T0: u64 = 1_700_000_000_000_000_000;

/// A call as the pipeline would hand it over, with `n` steering every field
/// so each query kind has a known answer.
pub(super) fn call(n: u64) -> Call {
    let start = T0 + n * 1_000_000_000;
    let mut c = Call::new(
        n,
        format!("cid-{n}@host").as_bytes(),
        "INVITE".into(),
        start,
    );
    let to_user = format!("49402{:07}", n % 1000);
    let request_uri = format!("sip:{to_user}@10.0.0.2:5060");
    c.set_parties_for_test(format!("49301{n:07}"), to_user, request_uri);
    let state = match n % 4 {
        0 => CallState::Answered,
        1 => CallState::Busy,
        2 => CallState::Cancelled,
        _ => CallState::Failed,
    };
    let status_code = if n.is_multiple_of(4) { 200 } else { 486 };
    let end_ns = start + (n % 600) * 1_000_000_000;
    c.set_outcome_for_test(state, status_code, EndReason::Bye, end_ns);
    let a: SocketAddr = format!("10.{}.{}.{}:5060", (n >> 16) & 255, (n >> 8) & 255, n & 255)
        .parse()
        .unwrap();
    let b: SocketAddr = "10.0.0.2:5060".parse().unwrap();
    for (i, (src, dst, summary)) in [(a, b, "INVITE"), (b, a, "200 OK")].into_iter().enumerate() {
        c.push_sip_for_test(SipEntry {
            ts_ns: start + i as u64 * 1000,
            src: src.into(),
            dst: dst.into(),
            transport: "UDP",
            summary: summary.into(),
            text: format!("{summary} sip:x SIP/2.0\r\nCall-ID: cid-{n}@host\r\n\r\n").into(),
            text_rec: 0,
        });
    }
    c
}

pub(super) fn temp_index() -> (tempfile::TempDir, Index) {
    let dir = tempfile::tempdir().unwrap();
    let idx = Index::open(&dir.path().join(INDEX_FILE)).unwrap();
    (dir, idx)
}

fn ids(page: &CallPage) -> Vec<String> {
    page.rows.iter().map(|r| r.call_id.clone()).collect()
}

fn q() -> CallQuery {
    CallQuery {
        limit: 100,
        ..Default::default()
    }
}

#[test]
fn migrations_run_once_and_reopen() {
    let (dir, idx) = temp_index();
    assert_eq!(
        idx.schema_version().unwrap(),
        schema::MIGRATIONS.len() as i64
    );
    let mode: String = idx
        .conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    drop(idx);
    // Reopening must not re-run migration 1 (CREATE TABLE would fail).
    let idx = Index::open(&dir.path().join(INDEX_FILE)).unwrap();
    assert_eq!(
        idx.schema_version().unwrap(),
        schema::MIGRATIONS.len() as i64
    );
    for table in ["calls", "streams", "legs", "dtmf", "quality", "access_log"] {
        let n: i64 = idx
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type='table' AND name=?1",
                [table],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "table {table}");
    }
}

#[test]
fn refuses_a_newer_schema() {
    let (dir, idx) = temp_index();
    idx.conn.pragma_update(None, "user_version", 999).unwrap();
    drop(idx);
    let e = Index::open(&dir.path().join(INDEX_FILE)).err().unwrap();
    assert!(
        e.to_string().contains("newer than this voxtap knows"),
        "{e}"
    );
}

#[test]
fn records_and_finds_by_every_filter() {
    let (_dir, mut idx) = temp_index();
    let calls: Vec<Call> = (0..40).map(call).collect();
    let batch: Vec<(&Call, CallFiles)> = calls
        .iter()
        .map(|c| (c, CallFiles::folder(c.call_id())))
        .collect();
    let row_ids = idx.record_calls(&batch).unwrap();
    assert_eq!(row_ids.len(), 40);
    assert_eq!(idx.count_calls().unwrap(), 40);

    // Call-ID
    let page = idx
        .search(&CallQuery {
            call_id: Some("cid-7@host".into()),
            ..q()
        })
        .unwrap();
    assert_eq!(ids(&page), ["cid-7@host"]);
    assert_eq!(page.rows[0].pcap.as_deref(), Some("cid-7@host/call.pcap"));

    // Number exact (From user), number of the To side (shared by n%1000),
    // request-URI user part, and a prefix.
    let by_from = idx
        .search(&CallQuery {
            party: Some("493010000012".into()),
            ..q()
        })
        .unwrap();
    assert_eq!(ids(&by_from), ["cid-12@host"]);
    let by_ruri = idx
        .search(&CallQuery {
            party: Some("sip:494020000005@10.0.0.2:5060".into()),
            ..q()
        })
        .unwrap();
    assert_eq!(ids(&by_ruri), ["cid-5@host"]);
    let by_prefix = idx
        .search(&CallQuery {
            party: Some("49301000001*".into()),
            ..q()
        })
        .unwrap();
    assert_eq!(by_prefix.rows.len(), 10, "{:?}", ids(&by_prefix));

    // IP: only call 3 used 10.0.0.3
    let by_ip = idx
        .search(&CallQuery {
            ip: Some("10.0.0.3".parse().unwrap()),
            ..q()
        })
        .unwrap();
    assert_eq!(ids(&by_ip), ["cid-3@host"]);
    // 10.0.0.2 is in every call
    let by_ip = idx
        .search(&CallQuery {
            ip: Some("10.0.0.2".parse().unwrap()),
            ..q()
        })
        .unwrap();
    assert_eq!(by_ip.total, 40);

    // State
    let busy = idx
        .search(&CallQuery {
            state: Some("busy".into()),
            ..q()
        })
        .unwrap();
    assert_eq!(busy.total, 10);
    assert!(busy.rows.iter().all(|r| r.state == "busy"));

    // Time range: calls 10..20 start in [T0+10s, T0+20s)
    let range = idx
        .search(&CallQuery {
            start_from_ns: Some(T0 + 10_000_000_000),
            start_to_ns: Some(T0 + 20_000_000_000),
            ..q()
        })
        .unwrap();
    assert_eq!(range.total, 10);

    // Duration: n seconds long for n < 600
    let long = idx
        .search(&CallQuery {
            duration_min_ms: Some(35_000),
            ..q()
        })
        .unwrap();
    assert_eq!(ids(&long).len(), 5);

    // MOS: none yet, then set two.
    let mos = CallQuery {
        mos_min: Some(3.0),
        ..q()
    };
    assert_eq!(idx.search(&mos).unwrap().total, 0);
    idx.set_call_mos(row_ids[1], Some(4.1)).unwrap();
    idx.set_call_mos(row_ids[2], Some(2.0)).unwrap();
    assert_eq!(ids(&idx.search(&mos).unwrap()), ["cid-1@host"]);

    // Sort and paging: newest first, pages of 15.
    let mut all = Vec::new();
    for page in 0..3 {
        let p = idx
            .search(&CallQuery {
                descending: true,
                limit: 15,
                offset: page * 15,
                ..q()
            })
            .unwrap();
        all.extend(p.rows.into_iter().map(|r| r.start_ns));
    }
    assert_eq!(all.len(), 40);
    assert!(all.windows(2).all(|w| w[0] > w[1]));
}

#[test]
fn detail_has_sip_in_order() {
    let (_dir, mut idx) = temp_index();
    let c = call(3);
    let id = idx.record_call(&c, &CallFiles::default()).unwrap();
    let d = idx.call_detail(id).unwrap().unwrap();
    assert_eq!(d.sip.len(), 2);
    assert_eq!(d.sip[0].summary, "INVITE");
    assert_eq!(d.sip[1].summary, "200 OK");
    assert_eq!(d.sip[0].src, "10.0.0.3:5060");
    assert!(d.call.folder.is_none());
    assert!(idx.call_detail(id + 1).unwrap().is_none());
}

#[test]
fn absorb_prefixes_paths_and_keeps_children() {
    let dir = tempfile::tempdir().unwrap();
    let mut main = Index::open(&dir.path().join(INDEX_FILE)).unwrap();
    main.record_call(&call(1), &CallFiles::folder("c1"))
        .unwrap();
    std::fs::create_dir(dir.path().join("imports")).unwrap();
    let sub_path = dir.path().join("imports/index.sqlite");
    let mut sub = Index::open(&sub_path).unwrap();
    sub.record_call(&call(2), &CallFiles::folder("c2")).unwrap();
    drop(sub);
    assert_eq!(main.absorb(&sub_path, "imports").unwrap(), 1);
    assert_eq!(main.count_calls().unwrap(), 2);
    let page = main
        .search(&CallQuery {
            call_id: Some("cid-2@host".into()),
            ..q()
        })
        .unwrap();
    assert_eq!(page.rows[0].pcap.as_deref(), Some("imports/c2/call.pcap"));
    let d = main.call_detail(page.rows[0].id).unwrap().unwrap();
    assert_eq!(d.sip.len(), 2);
    // Its parties came along too.
    let p = main
        .search(&CallQuery {
            party: Some("493010000002".into()),
            ..q()
        })
        .unwrap();
    assert_eq!(p.total, 1);
}

#[test]
fn access_log_round_trip() {
    let (_dir, mut idx) = temp_index();
    idx.log_access(&AccessEntry {
        ts_ns: 5,
        user: "alice".into(),
        remote: "127.0.0.1".into(),
        action: "download".into(),
        call: Some(1),
        detail: "call.pcap".into(),
    })
    .unwrap();
    let log = idx.access_log(10).unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].user, "alice");
}

/// The million-call benchmark: `cargo xtask bench-index` (release build).
/// Prints one line per query kind; VOXTAP_BENCH_CALLS overrides the count.
#[test]
#[ignore = "benchmark: run by `cargo xtask bench-index`"]
fn bench_index_million_calls() {
    let n: u64 = std::env::var("VOXTAP_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let (dir, mut idx) = temp_index();
    let t = Instant::now();
    let batch = 10_000;
    let mut k = 0;
    while k < n {
        let calls: Vec<Call> = (k..(k + batch).min(n)).map(call).collect();
        let refs: Vec<(&Call, CallFiles)> = calls
            .iter()
            .map(|c| (c, CallFiles::folder(c.call_id())))
            .collect();
        idx.record_calls(&refs).unwrap();
        k += batch;
    }
    // MOS is not computed yet by the pipeline: spread synthetic values.
    idx.conn
        .execute("UPDATE calls SET mos = 1.0 + (id * 7 % 350) / 100.0", [])
        .unwrap();
    idx.conn.execute_batch("ANALYZE").unwrap();
    let insert_s = t.elapsed().as_secs_f64();
    let size = std::fs::metadata(dir.path().join(INDEX_FILE))
        .unwrap()
        .len()
        + std::fs::metadata(dir.path().join("index.sqlite-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    println!(
        "bench-index: inserted {n} calls in {insert_s:.1} s ({:.0} calls/s), index {:.0} MiB",
        n as f64 / insert_s,
        size as f64 / 1048576.0
    );
    let mid = n / 2;
    let kinds: Vec<(&str, CallQuery)> = vec![
        (
            "latest 50 (no filter)",
            CallQuery {
                descending: true,
                limit: 50,
                ..q()
            },
        ),
        (
            "time range 1 h",
            CallQuery {
                start_from_ns: Some(T0 + mid * 1_000_000_000),
                start_to_ns: Some(T0 + (mid + 3600) * 1_000_000_000),
                limit: 50,
                ..q()
            },
        ),
        (
            "number exact (From)",
            CallQuery {
                party: Some(format!("49301{mid:07}")),
                limit: 50,
                ..q()
            },
        ),
        (
            "number exact (To, 1000 calls)",
            CallQuery {
                party: Some("494020000777".into()),
                descending: true,
                limit: 50,
                ..q()
            },
        ),
        (
            "number prefix",
            CallQuery {
                party: Some(format!("49301{:05}*", mid / 100)),
                limit: 50,
                ..q()
            },
        ),
        (
            "request URI",
            CallQuery {
                party: Some("sip:494020000777@10.0.0.2:5060".into()),
                limit: 50,
                ..q()
            },
        ),
        (
            "Call-ID",
            CallQuery {
                call_id: Some(format!("cid-{mid}@host")),
                limit: 50,
                ..q()
            },
        ),
        (
            "IP",
            CallQuery {
                ip: Some(
                    format!(
                        "10.{}.{}.{}",
                        (mid >> 16) & 255,
                        (mid >> 8) & 255,
                        mid & 255
                    )
                    .parse()
                    .unwrap(),
                ),
                limit: 50,
                ..q()
            },
        ),
        (
            "state busy, newest",
            CallQuery {
                state: Some("busy".into()),
                descending: true,
                limit: 50,
                ..q()
            },
        ),
        (
            "MOS < 2.0, newest",
            CallQuery {
                mos_max: Some(2.0),
                descending: true,
                limit: 50,
                ..q()
            },
        ),
        (
            "MOS < 2.0, sorted by MOS",
            CallQuery {
                mos_max: Some(2.0),
                sort: SortKey::Mos,
                limit: 50,
                ..q()
            },
        ),
        (
            "duration > 590 s",
            CallQuery {
                duration_min_ms: Some(590_000),
                descending: true,
                limit: 50,
                ..q()
            },
        ),
        (
            "state + 1 h range",
            CallQuery {
                state: Some("answered".into()),
                start_from_ns: Some(T0 + mid * 1_000_000_000),
                start_to_ns: Some(T0 + (mid + 3600) * 1_000_000_000),
                limit: 50,
                ..q()
            },
        ),
        (
            "page 100 (offset 5000)",
            CallQuery {
                descending: true,
                limit: 50,
                offset: 5000,
                ..q()
            },
        ),
    ];
    for (name, query) in kinds {
        // Warm once, then take the median of 5.
        let first = idx.search(&query).unwrap();
        let mut times: Vec<f64> = (0..5)
            .map(|_| {
                let t = Instant::now();
                let p = idx.search(&query).unwrap();
                assert_eq!(p.rows.len(), first.rows.len());
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        times.sort_by(f64::total_cmp);
        assert!(!first.rows.is_empty(), "{name} found nothing");
        println!(
            "bench-index: {name:<32} {:>8.2} ms  ({} rows, total {}{})",
            times[2],
            first.rows.len(),
            first.total,
            if first.total_capped { "+" } else { "" }
        );
    }
    let t = Instant::now();
    let d = idx.call_detail(mid as i64 + 1).unwrap().unwrap();
    println!(
        "bench-index: {:<32} {:>8.2} ms",
        "call detail (page)",
        t.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(d.sip.len(), 2);
    bench_alert_reads(&idx, n);
}

/// The alert evaluator's reads on the benchmark's index: a tick reading the
/// 500 rows added since the last one, the first look over the last hour.
fn bench_alert_reads(idx: &Index, n: u64) {
    let upto = idx.max_call_id().unwrap();
    let timed = |name: &str, f: &dyn Fn() -> usize| {
        let t = Instant::now();
        let rows = f();
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        println!("bench-index: {name:<32} {ms:>8.2} ms  ({rows} rows)");
    };
    timed("alerts: tick, 500 new rows", &|| {
        idx.calls_added(upto - 500, upto, 0).unwrap().len()
    });
    timed("alerts: first look, last hour", &|| {
        let hour_ago = T0 + n.saturating_sub(3600) * 1_000_000_000;
        idx.calls_ended_since(upto, hour_ago, hour_ago)
            .unwrap()
            .len()
    });
    timed("alerts: registration failures", &|| {
        idx.registration_failures_total().unwrap() as usize
    });
}

/// The alert evaluator's reads: new rows by id past a row, the first look
/// by start time, each with its IPs; ended-before rows left out.
#[test]
fn recent_calls_by_row_and_by_time() {
    let (_dir, mut idx) = temp_index();
    assert_eq!(idx.max_call_id().unwrap(), 0);
    let calls: Vec<Call> = (1..=6).map(call).collect();
    let batch: Vec<_> = calls.iter().map(|c| (c, CallFiles::default())).collect();
    let ids = idx.record_calls(&batch).unwrap();
    let upto = idx.max_call_id().unwrap();
    assert_eq!(upto, *ids.last().unwrap());
    // Call n ends at T0 + n s + (n % 600) s = T0 + 2n s.
    let since = T0 + 8 * 1_000_000_000;
    let after_first_two = idx.calls_added(ids[1], upto, since).unwrap();
    let got: Vec<i64> = after_first_two.iter().map(|c| c.id).collect();
    assert_eq!(got, ids[3..].to_vec(), "rows 3..6 end at or after 8 s");
    let c4 = &after_first_two[0];
    assert_eq!(
        (c4.method.as_str(), c4.state.as_str()),
        ("INVITE", "answered")
    );
    assert_eq!(c4.status_code, Some(200));
    assert_eq!(c4.end_ns, T0 + 8 * 1_000_000_000);
    let mut ips: Vec<String> = c4.ips.iter().map(|i| i.to_string()).collect();
    ips.sort();
    assert_eq!(ips, ["10.0.0.2", "10.0.0.4"]);
    let first_look = idx
        .calls_ended_since(upto, T0 + 5 * 1_000_000_000, since)
        .unwrap();
    assert_eq!(
        first_look.iter().map(|c| c.id).collect::<Vec<_>>(),
        ids[4..].to_vec()
    );
    assert!(idx.calls_added(upto, upto, 0).unwrap().is_empty());
    assert_eq!(idx.registration_failures_total().unwrap(), 0);
}
