//! Trunk classification, the rollups of recorded calls, a MOS set later,
//! and an index of schema 6 migrated with its calls rolled up.

use super::tests::{T0, call, temp_index};
use super::*;
use std::collections::HashSet;

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
                    b.counts.values().to_vec(),
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

/// Calls from the call table (SDP, RTP both ways and one way, a lost
/// packet) and the fixtures without media: what the writer hands the
/// rollups is what reading the rows back gives, field for field.
#[test]
fn the_rows_handed_over_are_the_rows_read_back() {
    use crate::calls::{CallConfig, CallTable, PacketRef};
    const MS: u64 = 1_000_000;
    let addr = |s: &str| -> std::net::SocketAddr { s.parse().unwrap() };
    let mut t = CallTable::new(CallConfig::default());
    let sip = |t: &mut CallTable, ts: u64, src: &str, dst: &str, text: String| {
        let m = voxtap_proto::sip::parse(text.as_bytes()).unwrap();
        t.on_sip(ts, addr(src), addr(dst), "UDP", &m, &[(ts, PacketRef(ts))]);
    };
    let with_sdp = |head: String, ip: &str, port: u16| {
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
        );
        format!(
            "{head}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
    };
    for n in 0..3u16 {
        let t0 = T0 + u64::from(n) * 1000 * MS;
        let head = |first: &str, cseq: &str, tag: &str| {
            format!(
                "{first}\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK{n}\r\nFrom: <sip:4930{n}@x>;tag=1\r\nTo: <sip:bob@x>{tag}\r\nCall-ID: c{n}@x\r\nCSeq: {cseq}\r\n"
            )
        };
        let inv = with_sdp(
            head("INVITE sip:bob@x SIP/2.0", "1 INVITE", ""),
            "10.0.0.1",
            4000 + n,
        );
        let ok = with_sdp(
            head("SIP/2.0 200 OK", "1 INVITE", ";tag=2"),
            "10.0.0.2",
            5000 + n,
        );
        sip(&mut t, t0, "10.0.0.1:5060", "10.0.0.2:5060", inv);
        sip(&mut t, t0 + 100 * MS, "10.0.0.2:5060", "10.0.0.1:5060", ok);
        // Call 0 both ways, call 1 one way, call 2 one way with a gap.
        let ways: &[(String, String)] = &[
            (
                format!("10.0.0.2:{}", 5000 + n),
                format!("10.0.0.1:{}", 4000 + n),
            ),
            (
                format!("10.0.0.1:{}", 4000 + n),
                format!("10.0.0.2:{}", 5000 + n),
            ),
        ];
        for (w, (src, dst)) in ways.iter().enumerate().take(if n == 0 { 2 } else { 1 }) {
            for seq in 0..50u16 {
                if n == 2 && seq == 20 {
                    continue;
                }
                let ts = t0 + 200 * MS + u64::from(seq) * 20 * MS;
                let mut p = vec![0x80, 8];
                p.extend_from_slice(&seq.to_be_bytes());
                p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
                p.extend_from_slice(&(0x1000 + w as u32).to_be_bytes());
                p.extend_from_slice(&[0xd5; 160]);
                t.on_udp(ts, addr(src), addr(dst), &p, &[(ts, PacketRef(ts))]);
            }
        }
        let bye = head("BYE sip:bob@x SIP/2.0", "2 BYE", ";tag=2");
        sip(
            &mut t,
            t0 + 1500 * MS,
            "10.0.0.1:5060",
            "10.0.0.2:5060",
            format!("{bye}\r\n"),
        );
    }
    t.finish();
    let mut calls = t.drain_ended();
    assert_eq!(calls.len(), 3);
    calls.extend((0..8).map(call));
    let (_dir, mut idx) = temp_index();
    let batch: Vec<(&Call, CallFiles)> = calls.iter().map(|c| (c, CallFiles::default())).collect();
    let tx = idx.conn.transaction().unwrap();
    let handed = record::insert_calls(&tx, &batch).unwrap();
    assert_eq!(handed.len(), 11);
    let with_streams = handed.iter().filter(|(_, r)| !r.streams.is_empty()).count();
    assert_eq!(with_streams, 3);
    for (id, mut rows) in handed {
        let mut back = rollup::read_rows(&tx, id).unwrap().unwrap();
        rows.ips.sort();
        back.ips.sort();
        assert_eq!(rows, back, "call {id}");
    }
}

/// Every row of a rollup table, every column, in key order.
fn all_rows(idx: &Index, table: &str) -> Vec<Vec<rusqlite::types::Value>> {
    let mut st = idx
        .conn
        .prepare(&format!("SELECT * FROM {table} ORDER BY 1, 2, 3"))
        .unwrap();
    let n = st.column_count();
    st.query_map([], |r| (0..n).map(|k| r.get(k)).collect())
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// A batch's rollup writes, summed per row, leave the tables as one call
/// per batch (the writes of one call at a time) leaves them: calls over
/// several hours, of two trunks, in one batch, in batches of one, and
/// through a rebuild.
#[test]
fn a_batch_rolls_up_as_its_calls_one_by_one() {
    let rules = vec![TrunkRule {
        name: "odd".into(),
        ip_prefixes: vec![],
        number_prefixes: vec!["4930100000".into()],
    }];
    let calls: Vec<Call> = (0..300).map(|k| call(k * 17)).collect();
    let (_d1, mut one_by_one) = temp_index();
    let (_d2, mut batched) = temp_index();
    for idx in [&mut one_by_one, &mut batched] {
        idx.set_trunks(&rules).unwrap();
    }
    for c in &calls {
        one_by_one
            .record_calls(&[(c, CallFiles::default())])
            .unwrap();
    }
    let batch: Vec<(&Call, CallFiles)> = calls.iter().map(|c| (c, CallFiles::default())).collect();
    batched.record_calls(&batch).unwrap();
    for (table, at_least) in [("rollup_minute", 60), ("rollup_hour", 3)] {
        let want = all_rows(&one_by_one, table);
        assert!(want.len() >= at_least, "{table}: {} rows", want.len());
        assert_eq!(all_rows(&batched, table), want, "{table}");
    }
    let trunks: HashSet<String> = all_rows(&batched, "rollup_minute")
        .iter()
        .map(|r| format!("{:?}", r[1]))
        .collect();
    assert_eq!(trunks.len(), 2, "{trunks:?}");
    hours_match_minutes(&batched);
    let before = all_rows(&batched, "rollup_minute");
    batched.rebuild_rollups().unwrap();
    assert_eq!(all_rows(&batched, "rollup_minute"), before);
}

#[test]
fn counts_add_sums_every_column() {
    // Every column a different value, so a swapped or missing one shows.
    let distinct: Vec<i64> = (1..=rollup::COLS.len() as i64).collect();
    let one = rollup::Counts::from_sums(&distinct);
    assert_eq!(one.values().to_vec(), distinct);
    let mut two = one;
    two.add(&one);
    let doubled: Vec<i64> = distinct.iter().map(|x| 2 * x).collect();
    assert_eq!(two.values().to_vec(), doubled);
    let mut zero = Counts::default();
    zero.add(&Counts::default());
    assert_eq!(zero, Counts::default());
}
