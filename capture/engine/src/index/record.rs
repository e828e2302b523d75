//! Writing ended calls into the index: one row per call, its parties, IPs,
//! SIP messages and streams, then the links between legs.

use std::collections::BTreeSet;

use rusqlite::{CachedStatement, OptionalExtension, Transaction, params};

use super::rollup::{CallRows, StreamRow};
use super::{CallFiles, i, now_ns, u, uri_user};
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
                 sip_packets, rtp_packets, rtcp_packets, stream_count, mos, folder, pcap, indexed_at, \
                 sip_oversized, sip_truncated, encrypted_signalling, outer_path, codec, capture_loss) \
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24,?25,?26,?27,?28,?29,?30)",
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
                 rtcp_reports, rtcp_fraction_lost, rtcp_cumulative_lost, rtcp_jitter_ms, mos, \
                 audio_decodable, audio_reason) \
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24)",
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
        rows: &CallRows,
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
            rows.talk_ms,
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
            i(call.sip_oversized()),
            i(call.sip_truncated()),
            call.encrypted_signalling(),
            call.outer_path(),
            rows.codec,
            rows.capture_loss,
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

    /// Every IP its SIP or media used; returns them.
    fn ips(&mut self, id: i64, call: &Call) -> rusqlite::Result<Vec<std::net::IpAddr>> {
        let mut ips = BTreeSet::new();
        for e in call.sip() {
            ips.insert(e.src.ip());
            ips.insert(e.dst.ip());
        }
        for s in call.streams() {
            ips.insert(s.key.src.ip());
            ips.insert(s.key.dst.ip());
        }
        for ip in &ips {
            self.ip.execute(params![id, ip.to_string()])?;
        }
        Ok(ips.into_iter().collect())
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
    ) -> rusqlite::Result<StreamRow> {
        let sum = s.stats.summary();
        let (pt, decodable, reason) = super::audio_of(call, s, &sum.payload_types);
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
            (rtcp && s.clock_rate() > 0)
                .then(|| f64::from(s.rtcp.jitter_units) * 1000.0 / f64::from(s.clock_rate())),
            mos,
            decodable,
            reason,
        ])?;
        // As the row reads back: the integers through `i`, the addresses
        // through their text.
        Ok(StreamRow {
            ips: Some((s.key.src.ip(), s.key.dst.ip())),
            packets: i(sum.packets),
            lost: sum.lost,
            expected: i(sum.expected),
        })
    }
}

/// What the rollups read of the call's row, from the values its insert
/// binds (read back through `u`, as `rollup::read_rows` does; SQLite stores
/// a NaN as NULL): the insert takes its talk time, codec and capture loss
/// from here.
fn call_rows(call: &Call, call_mos: Option<f64>, codec: String) -> CallRows {
    let end = call.end_or_last();
    CallRows {
        method: call.method().to_string(),
        start_ns: u(i(call.start_ns())),
        ringing_ns: call.ringing_ns().map(|t| u(i(t))),
        answer_ns: call.answer_ns().map(|t| u(i(t))),
        end_ns: u(i(end)),
        talk_ms: call
            .answer_ns()
            .map(|a| i(end.saturating_sub(a) / 1_000_000)),
        status_code: call.status_code(),
        mos: call_mos.filter(|m| !m.is_nan()),
        codec,
        capture_loss: i(call.capture_loss()),
        numbers: [
            call.from_user().to_string(),
            call.to_user().to_string(),
            uri_user(call.request_uri()).unwrap_or_default().to_string(),
        ],
        stale: false,
        ips: Vec::new(),
        streams: Vec::new(),
    }
}

/// The codec of the stream with the most packets ("" without media): the
/// dashboards' per-codec dimension.
fn main_codec(call: &Call) -> String {
    // Reversed: of equals, max_by_key keeps the last, so the first stream.
    call.streams()
        .iter()
        .rev()
        .map(|s| (s, s.stats.summary()))
        .max_by_key(|(_, sum)| sum.packets)
        .map(|(s, sum)| {
            let (pt, _) = crate::media::codec::stream_codec(call, s, &sum.payload_types);
            call.codec_name(s, pt)
        })
        .unwrap_or_default()
}

/// Each stream's MOS: the same summary E-model estimate as streams.csv.
fn stream_mos(call: &Call) -> Vec<Option<f64>> {
    call.streams()
        .iter()
        .map(|s| {
            let sum = s.stats.summary();
            let (pt, _) = crate::media::codec::stream_codec(call, s, &sum.payload_types);
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
/// row ids (0 for a media-only record, whose streams go to `media_streams`
/// and which has no `calls` row), each with what the rollups read of its
/// rows.
pub(super) fn insert_calls(
    tx: &Transaction<'_>,
    calls: &[(&Call, CallFiles)],
) -> rusqlite::Result<Vec<(i64, CallRows)>> {
    let mut ins = Inserts::prepare(tx)?;
    let indexed_at = i(now_ns());
    let mut out = Vec::with_capacity(calls.len());
    for (call, files) in calls {
        if call.is_media_only() {
            insert_media_only(tx, call, files, indexed_at)?;
            out.push((0, CallRows::default()));
            continue;
        }
        let mos = stream_mos(call);
        // The call's MOS is its worst stream's.
        let call_mos = mos.iter().flatten().copied().reduce(f64::min);
        let mut rows = call_rows(call, call_mos, main_codec(call));
        let id = ins.call(tx, call, files, call_mos, &rows, indexed_at)?;
        ins.parties(id, call)?;
        rows.ips = ins.ips(id, call)?;
        ins.sip(id, call)?;
        for (s, mos) in call.streams().iter().zip(mos) {
            rows.streams.push(ins.stream(id, call, s, mos)?);
        }
        insert_fax(tx, id, call)?;
        out.push((id, rows));
    }
    Ok(out)
}

/// When the call turned into T.38 fax, and its UDPTL streams.
fn insert_fax(tx: &Transaction<'_>, id: i64, call: &Call) -> rusqlite::Result<()> {
    let Some(t) = call.fax_ns() else {
        return Ok(());
    };
    tx.prepare_cached("INSERT INTO fax (call, turned_ns) VALUES (?1, ?2)")?
        .execute(params![id, i(t)])?;
    let mut ins = tx.prepare_cached(
        "INSERT INTO fax_streams (call, src, dst, first_ns, last_ns, packets, expected, lost, late, bytes) \
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
    )?;
    for f in call.fax_streams() {
        ins.execute(params![
            id,
            f.src.to_string(),
            f.dst.to_string(),
            i(f.first_ns),
            i(f.last_ns),
            i(f.packets),
            i(f.expected()),
            f.lost(),
            i(f.late),
            i(f.bytes),
        ])?;
    }
    Ok(())
}

/// The streams of a media-only record, with the folder of its files.
fn insert_media_only(
    tx: &Transaction<'_>,
    call: &Call,
    files: &CallFiles,
    indexed_at: i64,
) -> rusqlite::Result<()> {
    let mut ins = tx.prepare_cached(
        "INSERT INTO media_streams (folder, ssrc, src, dst, payload_type, codec, first_ns, last_ns, packets, \
         expected, lost, jitter_ms, max_jitter_ms, max_delta_ms, mos, indexed_at) \
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)",
    )?;
    for (s, mos) in call.streams().iter().zip(stream_mos(call)) {
        let sum = s.stats.summary();
        let pt = sum.payload_types.first().copied().unwrap_or(0);
        ins.execute(params![
            files.folder,
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
            sum.mean_jitter_ms,
            sum.max_jitter_ms,
            sum.max_delta_ms,
            mos,
            indexed_at,
        ])?;
    }
    Ok(())
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
        "INSERT OR IGNORE INTO legs (call, other_call, method, detail) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for ((call, _), id) in calls.iter().zip(ids) {
        for l in call.links() {
            let other: Option<i64> = find.query_row(params![l.other], |r| r.get(0)).optional()?;
            if let Some(other) = other {
                ins_leg.execute(params![id, other, l.method.as_str(), l.detail])?;
            }
        }
    }
    Ok(())
}

/// Replace the registrations and pings tables with the signalling tables as
/// they are now.
pub(super) fn replace_signalling(
    tx: &Transaction<'_>,
    s: &crate::signalling::SignallingSnapshot,
) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM registrations", [])?;
    tx.execute("DELETE FROM pings", [])?;
    let mut reg = tx.prepare_cached(
        "INSERT INTO registrations (user, aor, contact, client, client_ip, registrar, outcome, last_status, \
         expires, requests, registered, refreshes, challenges, failures, unanswered, first_ns, last_ns, call_id) \
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18)",
    )?;
    for b in &s.registrations {
        reg.execute(params![
            b.user,
            b.aor,
            b.contact,
            b.client.to_string(),
            b.client.ip().to_string(),
            b.registrar.to_string(),
            b.outcome(),
            b.last_status,
            b.expires,
            i(b.requests),
            i(b.registered),
            i(b.refreshes()),
            i(b.challenges),
            i(b.failures),
            i(b.unanswered),
            i(b.first_ns),
            i(b.last_ns),
            b.call_id,
        ])?;
    }
    let mut ping = tx.prepare_cached(
        "INSERT OR REPLACE INTO pings (src, dst, pings, requests, responses, codes, unanswered, loss_pct, \
         rtt_avg_ms, rtt_max_ms, keepalives, first_ns, last_ns) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)",
    )?;
    for p in &s.pings {
        let ms = |ns: u64| ns as f64 / 1e6;
        ping.execute(params![
            p.src.to_string(),
            p.dst.to_string(),
            i(p.pings()),
            i(p.requests),
            i(p.responses),
            p.codes_text(),
            i(p.unanswered),
            p.loss_pct(),
            p.rtt_avg_ns().map(ms),
            p.rtt_min_ns.map(|_| ms(p.rtt_max_ns)),
            i(p.keepalives),
            i(p.first_ns),
            i(p.last_ns),
        ])?;
    }
    Ok(())
}
