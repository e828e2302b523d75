//! Writing ended calls into the index: one row per call, its parties, IPs,
//! SIP messages and streams, then the links between legs.

use std::collections::BTreeSet;

use rusqlite::{CachedStatement, OptionalExtension, Transaction, params};

use super::{CallFiles, i, now_ns, uri_user};
use crate::calls::{Call, Stream};

/// The statements one batch of calls is written with, prepared once.
struct Inserts<'t> {
    call: CachedStatement<'t>,
    party: CachedStatement<'t>,
    ip: CachedStatement<'t>,
    sip: CachedStatement<'t>,
    stream: CachedStatement<'t>,
}

impl<'t> Inserts<'t> {
    fn prepare(tx: &'t Transaction<'_>) -> rusqlite::Result<Self> {
        Ok(Inserts {
            call: tx.prepare_cached(
                "INSERT INTO calls (call_id, method, from_user, to_user, from_uri, to_uri, request_uri, \
                 start_ns, ringing_ns, answer_ns, end_ns, duration_ms, talk_ms, state, status_code, end_reason, \
                 sip_packets, rtp_packets, rtcp_packets, stream_count, mos, folder, pcap, indexed_at, outer_path) \
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24,?25)",
            )?,
            party: tx.prepare_cached(
                "INSERT OR IGNORE INTO call_parties (call, value) VALUES (?1, ?2)",
            )?,
            ip: tx.prepare_cached("INSERT OR IGNORE INTO call_ips (call, ip) VALUES (?1, ?2)")?,
            sip: tx.prepare_cached(
                "INSERT INTO sip_messages (call, seq, ts_ns, src, dst, transport, summary, text) \
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
            )?,
            stream: tx.prepare_cached(
                "INSERT INTO streams (call, ssrc, src, dst, payload_type, codec, first_ns, last_ns, packets, \
                 expected, lost, out_of_order, duplicates, jitter_ms, max_jitter_ms, max_delta_ms, ptime_ms, \
                 rtcp_reports, rtcp_fraction_lost, rtcp_cumulative_lost, rtcp_jitter_ms, mos) \
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22)",
            )?,
        })
    }

    /// The call's own row; returns its id.
    fn call(
        &mut self,
        tx: &Transaction<'_>,
        call: &Call,
        files: &CallFiles,
        call_mos: Option<f64>,
        indexed_at: i64,
    ) -> rusqlite::Result<i64> {
        let end = call.end_or_last();
        self.call.execute(params![
            call.call_id(),
            call.method(),
            call.from_user(),
            call.to_user(),
            call.from_uri(),
            call.to_uri(),
            call.request_uri(),
            i(call.start_ns()),
            call.ringing_ns().map(i),
            call.answer_ns().map(i),
            i(end),
            i(end.saturating_sub(call.start_ns()) / 1_000_000),
            call.answer_ns()
                .map(|a| i(end.saturating_sub(a) / 1_000_000)),
            call.state().as_str(),
            call.status_code(),
            call.end_reason().map(|r| r.as_str()),
            i(call.sip_packets()),
            i(call.rtp_packets()),
            i(call.rtcp_packets()),
            call.streams().len() as i64,
            call_mos,
            files.folder,
            files.pcap,
            indexed_at,
            call.outer_path(),
        ])?;
        Ok(tx.last_insert_rowid())
    }

    /// Every number and URI the call can be searched by.
    fn parties(&mut self, id: i64, call: &Call) -> rusqlite::Result<()> {
        let mut parties = BTreeSet::new();
        for v in [
            call.from_user(),
            call.to_user(),
            call.from_uri(),
            call.to_uri(),
            call.request_uri(),
        ] {
            if !v.is_empty() {
                parties.insert(v);
            }
        }
        if let Some(user) = uri_user(call.request_uri()) {
            parties.insert(user);
        }
        for p in parties {
            self.party.execute(params![id, p])?;
        }
        Ok(())
    }

    /// Every IP its SIP or media used.
    fn ips(&mut self, id: i64, call: &Call) -> rusqlite::Result<()> {
        let mut ips = BTreeSet::new();
        for e in call.sip() {
            ips.insert(e.src.ip());
            ips.insert(e.dst.ip());
        }
        for s in call.streams() {
            ips.insert(s.key.src.ip());
            ips.insert(s.key.dst.ip());
        }
        for ip in ips {
            self.ip.execute(params![id, ip.to_string()])?;
        }
        Ok(())
    }

    fn sip(&mut self, id: i64, call: &Call) -> rusqlite::Result<()> {
        for (seq, e) in call.sip().iter().enumerate() {
            self.sip.execute(params![
                id,
                seq as i64,
                i(e.ts_ns),
                e.src.to_string(),
                e.dst.to_string(),
                e.transport,
                e.summary,
                e.text,
            ])?;
        }
        Ok(())
    }

    fn stream(
        &mut self,
        id: i64,
        call: &Call,
        s: &Stream,
        mos: Option<f64>,
    ) -> rusqlite::Result<()> {
        let sum = s.stats.summary();
        let pt = sum.payload_types.first().copied().unwrap_or(0);
        let rtcp = s.rtcp.reports > 0;
        self.stream.execute(params![
            id,
            s.key.ssrc,
            s.key.src.to_string(),
            s.key.dst.to_string(),
            pt,
            call.codec_name(s, pt),
            (sum.packets > 0).then(|| i(sum.first_ns)),
            (sum.packets > 0).then(|| i(sum.last_ns)),
            i(sum.packets),
            i(sum.expected),
            sum.lost,
            i(sum.out_of_order),
            i(sum.duplicates),
            sum.mean_jitter_ms,
            sum.max_jitter_ms,
            sum.max_delta_ms,
            sum.ptime_ms,
            s.rtcp.reports,
            rtcp.then_some(s.rtcp.fraction_lost),
            rtcp.then_some(s.rtcp.cumulative_lost),
            (rtcp && s.clock_rate > 0)
                .then(|| f64::from(s.rtcp.jitter_units) * 1000.0 / f64::from(s.clock_rate)),
            mos,
        ])?;
        Ok(())
    }
}

/// Each stream's MOS: the same summary E-model estimate as streams.csv.
fn stream_mos(call: &Call) -> Vec<Option<f64>> {
    call.streams()
        .iter()
        .map(|s| {
            let sum = s.stats.summary();
            let pt = sum.payload_types.first().copied().unwrap_or(0);
            crate::media::quality::summary_estimate(
                &call.codec_name(s, pt),
                sum.lost,
                sum.expected,
                sum.ptime_ms,
            )
            .map(|e| e.1)
        })
        .collect()
}

/// Writes `calls` with their parties, IPs, SIP and streams; returns their
/// row ids.
pub(super) fn insert_calls(
    tx: &Transaction<'_>,
    calls: &[(&Call, CallFiles)],
) -> rusqlite::Result<Vec<i64>> {
    let mut ins = Inserts::prepare(tx)?;
    let indexed_at = i(now_ns());
    let mut ids = Vec::with_capacity(calls.len());
    for (call, files) in calls {
        let mos = stream_mos(call);
        // The call's MOS is its worst stream's.
        let call_mos = mos.iter().flatten().copied().reduce(f64::min);
        let id = ins.call(tx, call, files, call_mos, indexed_at)?;
        ids.push(id);
        ins.parties(id, call)?;
        ins.ips(id, call)?;
        ins.sip(id, call)?;
        for (s, mos) in call.streams().iter().zip(mos) {
            ins.stream(id, call, s, mos)?;
        }
    }
    Ok(ids)
}

/// The links of `calls` (row ids `ids`) to their other legs: those are in
/// this batch (the call table hands out a logical call's legs together) or
/// were indexed before.
pub(super) fn insert_legs(
    tx: &Transaction<'_>,
    calls: &[(&Call, CallFiles)],
    ids: &[i64],
) -> rusqlite::Result<()> {
    let mut find =
        tx.prepare_cached("SELECT id FROM calls WHERE call_id = ?1 ORDER BY id DESC LIMIT 1")?;
    let mut ins_leg = tx.prepare_cached(
        "INSERT OR IGNORE INTO legs (call, other_call, method) VALUES (?1, ?2, ?3)",
    )?;
    for ((call, _), id) in calls.iter().zip(ids) {
        for l in call.links() {
            let other: Option<i64> = find.query_row(params![l.other], |r| r.get(0)).optional()?;
            if let Some(other) = other {
                ins_leg.execute(params![id, other, l.method.as_str()])?;
            }
        }
    }
    Ok(())
}
