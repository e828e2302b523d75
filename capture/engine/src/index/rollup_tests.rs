//! Trunk classification, the rollups of recorded calls, a MOS set later,
//! and an index of schema 6 migrated with its calls rolled up.

use super::tests::{T0, call, temp_index};
use super::*;

fn record(idx: &mut Index, n: u64) -> Vec<i64> {
    let calls: Vec<Call> = (0..n).map(call).collect();
    let batch: Vec<(&Call, CallFiles)> = calls.iter().map(|c| (c, CallFiles::default())).collect();
    idx.record_calls(&batch).unwrap()
}

fn totals(idx: &Index, trunk: Option<&str>) -> Counts {
    let q = DashQuery {
        from_ns: 0,
        to_ns: u64::MAX / 2,
        step_minutes: 1_000_000_000,
        trunk: trunk.map(String::from),
        codec: None,
    };
    let mut t = Counts::default();
    for b in idx.dashboard(&q).unwrap() {
        t.add(&b.counts);
    }
    t
}

#[test]
fn calls_are_rolled_up_and_classified_into_trunks() {
    let (_dir, mut idx) = temp_index();
    record(&mut idx, 40);
    let all = totals(&idx, None);
    // call(n): a 200 when n % 4 == 0 (with no answer time: not counted
    // answered), else 486 (busy: the network did its job).
    assert_eq!(all.attempts, 40);
    assert_eq!(all.answered, 0);
    assert_eq!(all.ner_ok, 30);
    assert_eq!(all.codes[3], 30);
    assert_eq!(all.classes[2], 10);
    assert_eq!(all.classes[4], 30);
    assert_eq!(totals(&idx, Some("")).attempts, 40);
    let rules = vec![
        TrunkRule {
            name: "low".into(),
            ip_prefixes: vec!["10.0.0.16/28".into()],
            number_prefixes: vec![],
        },
        TrunkRule {
            name: "num".into(),
            ip_prefixes: vec![],
            number_prefixes: vec!["49301000003".into()],
        },
    ];
    assert!(idx.set_trunks(&rules).unwrap());
    assert!(
        !idx.set_trunks(&rules).unwrap(),
        "unchanged rules rebuild nothing"
    );
    assert_eq!(idx.trunks().unwrap(), rules);
    // 10.0.0.16-31 are calls 16..=31; numbers 49301000003x are 30..=39,
    // of which 30 and 31 matched the first rule.
    assert_eq!(totals(&idx, Some("low")).attempts, 16);
    assert_eq!(totals(&idx, Some("num")).attempts, 8);
    assert_eq!(totals(&idx, Some("")).attempts, 16);
    // Calls recorded later are classified as they come.
    let more: Vec<Call> = (40..48).map(call).collect();
    let batch: Vec<(&Call, CallFiles)> = more.iter().map(|c| (c, CallFiles::default())).collect();
    idx.record_calls(&batch).unwrap();
    assert_eq!(totals(&idx, Some("")).attempts, 24);
    let page = idx
        .search(&CallQuery {
            trunk: Some("low".into()),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page.rows.len(), 16);
}

#[test]
fn a_mos_set_later_moves_the_call_between_buckets() {
    let (_dir, mut idx) = temp_index();
    let ids = record(&mut idx, 4);
    assert_eq!(totals(&idx, None).mos, [4, 0, 0, 0, 0, 0]);
    idx.set_call_mos(ids[0], Some(4.2)).unwrap();
    idx.set_call_mos(ids[1], Some(1.5)).unwrap();
    idx.set_call_mos(ids[1], Some(3.2)).unwrap();
    assert_eq!(totals(&idx, None).mos, [2, 0, 0, 1, 0, 1]);
}

#[test]
fn an_index_of_schema_6_is_migrated_with_its_calls_rolled_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(INDEX_FILE);
    {
        let c = Connection::open(&path).unwrap();
        for sql in &schema::MIGRATIONS[..6] {
            c.execute_batch(sql).unwrap();
        }
        c.pragma_update(None, "user_version", 6).unwrap();
        c.execute_batch(
            "INSERT INTO calls (call_id, method, from_user, to_user, from_uri, to_uri, request_uri, start_ns, \
             ringing_ns, answer_ns, end_ns, duration_ms, talk_ms, state, status_code, sip_packets, rtp_packets, \
             rtcp_packets, stream_count, indexed_at) VALUES \
             ('a', 'INVITE', '1', '2', '', '', '', 60000000000, 60100000000, 60300000000, 70300000000, 10300, 10000, 'answered', 200, 4, 0, 0, 0, 0), \
             ('b', 'INVITE', '1', '2', '', '', '', 61000000000, NULL, NULL, 61500000000, 500, NULL, 'failed', 503, 2, 0, 0, 0, 0);",
        )
        .unwrap();
    }
    let idx = Index::open(&path).unwrap();
    let t = totals(&idx, None);
    assert_eq!((t.attempts, t.answered, t.answered_ms), (2, 1, 10_000));
    assert_eq!((t.pdd_ms, t.pdd_n), (100, 1));
    assert_eq!(t.codes[5], 1);
    // In progress: 10.3 s and 0.5 s.
    assert_eq!(t.active_ms, 10_800);
}

#[test]
fn ip_prefixes() {
    let ok = |r: &str| {
        bad_prefix(&TrunkRule {
            ip_prefixes: vec![r.into()],
            ..Default::default()
        })
        .is_none()
    };
    assert!(ok("10.0.0.0/8") && ok("192.0.2.7") && ok("2001:db8::/32") && ok("0.0.0.0/0"));
    assert!(!ok("10.0.0.0/33") && !ok("10.0.0") && !ok("host.example"));
}

/// The non-zero rows of `sql` (key columns, then the 30 sums).
fn rows_of(idx: &Index, sql: &str) -> Vec<(i64, String, String, Vec<i64>)> {
    let mut st = idx.conn.prepare(sql).unwrap();
    st.query_map([], |r| {
        let v: Vec<i64> = (3..33).map(|k| r.get(k).unwrap()).collect();
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, v))
    })
    .unwrap()
    .map(Result::unwrap)
    .filter(|r| r.3.iter().any(|x| *x != 0))
    .collect()
}

/// `rollup_hour` holds exactly the sums of `rollup_minute` by hour.
fn hours_match_minutes(idx: &Index) {
    let cols = rollup::COLS.join(", ");
    let sums: Vec<String> = rollup::COLS.iter().map(|c| format!("sum({c})")).collect();
    let hours = rows_of(
        idx,
        &format!("SELECT hour, trunk, codec, {cols} FROM rollup_hour ORDER BY 1, 2, 3"),
    );
    let minutes = rows_of(
        idx,
        &format!(
            "SELECT minute / 60, trunk, codec, {} FROM rollup_minute GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            sums.join(", ")
        ),
    );
    assert!(hours.len() >= 3, "calls over several hours: {hours:?}");
    assert_eq!(hours, minutes);
}

#[test]
fn hourly_rollups_follow_the_minutes_and_serve_whole_hours() {
    let (_dir, mut idx) = temp_index();
    // 24 calls 577 s apart (up to ten minutes long): almost four hours.
    let calls: Vec<Call> = (0..24).map(|k| call(k * 577)).collect();
    let batch: Vec<(&Call, CallFiles)> = calls.iter().map(|c| (c, CallFiles::default())).collect();
    let ids = idx.record_calls(&batch).unwrap();
    hours_match_minutes(&idx);
    // A MOS set later (an UPDATE of a minute row).
    idx.set_call_mos(ids[4], Some(1.2)).unwrap();
    hours_match_minutes(&idx);
    // A rebuild (every minute row deleted and added again).
    let rules = vec![TrunkRule {
        name: "low".into(),
        ip_prefixes: vec!["10.0.0.0/20".into()],
        number_prefixes: vec![],
    }];
    assert!(idx.set_trunks(&rules).unwrap());
    hours_match_minutes(&idx);
    // Hourly and daily buckets over a range with ragged ends equal the
    // minute rows summed here by bucket.
    const MIN: u64 = 60_000_000_000;
    let (from, to) = (T0 - 17 * MIN, T0 + 3 * 60 * MIN + 23 * MIN);
    for (step, trunk) in [(60, None), (60, Some("low")), (1440, None), (1, None)] {
        let q = DashQuery {
            from_ns: from,
            to_ns: to,
            step_minutes: step,
            trunk: trunk.map(String::from),
            codec: None,
        };
        let got: Vec<(i64, String, String, Vec<i64>)> = idx
            .dashboard(&q)
            .unwrap()
            .into_iter()
            .map(|b| {
                (
                    i(b.start_ns / MIN / step),
                    String::new(),
                    String::new(),
                    b.counts.values(),
                )
            })
            .filter(|r| r.3.iter().any(|x| *x != 0))
            .collect();
        let sums: Vec<String> = rollup::COLS.iter().map(|c| format!("sum({c})")).collect();
        let want = rows_of(
            &idx,
            &format!(
                "SELECT minute / {step}, '', '', {} FROM rollup_minute WHERE minute >= {} AND minute < {} \
                 AND trunk = coalesce({}, trunk) GROUP BY 1 ORDER BY 1",
                sums.join(", "),
                from / MIN,
                to.div_ceil(MIN),
                trunk.map_or("NULL".to_string(), |t| format!("'{t}'")),
            ),
        );
        assert!(!want.is_empty());
        assert_eq!(got, want, "step {step} trunk {trunk:?}");
    }
}
