//! Searches and call details in the central index, answered as the local
//! index's types (`CallPage`, `CallDetail`) so the pages are the same; each
//! row carries its sensor.
//!
//! Numbers: exact (`4930123`), prefix (`4930*`), suffix (`*0123`) on the
//! From/To users and the request URI's user (btree indexes, the suffix on
//! the reversed number); a term with `@` or `:` is a URI and is matched
//! exactly (or by prefix) on the From/To/request URIs within the other
//! filters.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use voxtap_engine::index::{
    CallDetail, CallPage, CallQuery, CallRow, DtmfRow, FaxRow, LegRow, SipRow, SortKey, StreamRow,
};

use super::{Hub, unavailable};
use crate::handlers::AppError;

/// Past this many matches the count says "10000+", as locally.
const COUNT_CAP: i64 = 10_000;

/// Filters only the hub has.
#[derive(Clone, Debug, Default)]
pub struct HubFilter {
    pub sensor: Option<String>,
    pub status_code: Option<i16>,
}

pub(super) type Param = Box<dyn ToSql + Sync + Send>;

fn time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

fn ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// WHERE conditions and their parameters.
pub(super) struct Where {
    conds: Vec<String>,
    params: Vec<Param>,
    /// Searching by IP: the rows come from `call_ips` joined to `calls`.
    by_ip: bool,
}

impl Where {
    fn arg(&mut self, p: impl ToSql + Sync + Send + 'static) -> String {
        self.params.push(Box::new(p));
        format!("${}", self.params.len())
    }

    fn party(&mut self, term: &str) {
        let uri = term.contains(['@', ':']);
        let (cols, rev): (&[&str], _) = if uri {
            (&["c.from_uri", "c.to_uri", "c.request_uri"], false)
        } else {
            (&["c.from_user", "c.to_user", "c.ruri_user"], true)
        };
        let (pattern, reversed, exact) = match (term.strip_suffix('*'), term.strip_prefix('*')) {
            (Some(p), _) if !p.is_empty() => (format!("{}%", like_escape(p)), false, false),
            (_, Some(s)) if !s.is_empty() && rev => {
                let r: String = s.chars().rev().collect();
                (format!("{}%", like_escape(&r)), true, false)
            }
            _ => (term.to_string(), false, true),
        };
        let p = self.arg(pattern);
        let ors: Vec<String> = cols
            .iter()
            .map(|c| match (exact, reversed) {
                (true, _) => format!("{c} = {p}"),
                (false, true) => format!("reverse({c}) LIKE {p}"),
                (false, false) => format!("{c} LIKE {p}"),
            })
            .collect();
        self.conds.push(format!("({})", ors.join(" OR ")));
    }

    pub(super) fn new(q: &CallQuery, h: &HubFilter) -> Where {
        let mut w = Where {
            conds: Vec::new(),
            params: Vec::new(),
            by_ip: q.ip.is_some(),
        };
        for (t, op) in [(q.start_from_ns, ">="), (q.start_to_ns, "<")] {
            let Some(t) = t else { continue };
            let p = w.arg(time(t));
            w.conds.push(format!("c.start_at {op} {p}"));
            if w.by_ip {
                // The planner carries the join's equality from one table
                // to the other, not ranges: the window again on
                // call_ips's own column bounds its index range and days.
                w.conds.push(format!("i.call_start {op} {p}"));
            }
        }
        if let Some(party) = q.party.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            w.party(party);
        }
        if let Some(cid) = q
            .call_id
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let p = w.arg(cid.to_string());
            w.conds.push(format!("c.call_id = {p}"));
        }
        if let Some(ip) = q.ip {
            let p = w.arg(ip);
            w.conds.push(format!("i.ip = {p}::inet"));
        }
        if let Some(s) = q.state.as_deref().filter(|s| !s.is_empty()) {
            let p = w.arg(s.to_string());
            w.conds.push(format!("c.state = {p}"));
        }
        if let Some(code) = h.status_code {
            let p = w.arg(code);
            w.conds.push(format!("c.status_code = {p}"));
        }
        for (v, op) in [(q.mos_min, ">="), (q.mos_max, "<=")] {
            if let Some(m) = v {
                let p = w.arg(m as f32);
                w.conds.push(format!("c.mos {op} {p}"));
            }
        }
        for (v, op) in [(q.duration_min_ms, ">="), (q.duration_max_ms, "<=")] {
            if let Some(d) = v {
                let p = w.arg(i64::try_from(d).unwrap_or(i64::MAX));
                w.conds.push(format!("c.duration_ms {op} {p}"));
            }
        }
        if let Some(l) = q.loss_min_pct {
            // The worse direction; greatest() skips a direction without
            // streams (NULL). Percent in double, as the sensor compares.
            let p = w.arg(l);
            w.conds.push(format!(
                "greatest(c.loss_fwd, c.loss_rev)::float8 * 100 >= {p}"
            ));
        }
        // The dashboards' drill-down (central migration 4's columns).
        for (col, v) in [
            ("c.method", &q.method),
            ("coalesce(c.trunk, '')", &q.trunk),
            ("coalesce(c.codec, '')", &q.codec),
        ] {
            if let Some(v) = v {
                let p = w.arg(v.clone());
                w.conds.push(format!("{col} = {p}"));
            }
        }
        if let Some(s) = h.sensor.as_deref().filter(|s| !s.is_empty()) {
            let p = w.arg(s.to_string());
            w.conds.push(format!(
                "c.sensor = (SELECT id FROM voxtap.sensors WHERE name = {p})"
            ));
        }
        w
    }

    /// The calls searched: with an IP, those of the address's rows in
    /// `call_ips` (one per call and address), whose (ip, call_start) index
    /// gives the newest calls of the window first.
    pub(super) fn from(&self) -> &'static str {
        if self.by_ip {
            // By id alone: adding the start's equality makes the planner
            // multiply two selectivities, expect one row and sort every
            // match of a busy address instead of stopping at the page.
            "voxtap.call_ips i JOIN voxtap.calls c ON c.id = i.id"
        } else {
            "voxtap.calls c"
        }
    }

    /// The capped count. By IP with no filter on the calls' own columns
    /// (the window is `call_ips`'s too), `call_ips` alone: an index-only
    /// range instead of joining every match of a busy address.
    fn count_sql(&self) -> String {
        let window_or_ip = |c: &String| c.starts_with("i.") || c.starts_with("c.start_at ");
        let (from, clause) = if self.by_ip && self.conds.iter().all(window_or_ip) {
            let conds: Vec<&str> = self
                .conds
                .iter()
                .filter(|c| c.starts_with("i."))
                .map(String::as_str)
                .collect();
            (
                "voxtap.call_ips i",
                format!(" WHERE {}", conds.join(" AND ")),
            )
        } else {
            (self.from(), self.clause())
        };
        format!("SELECT count(*) FROM (SELECT 1 FROM {from}{clause} LIMIT {COUNT_CAP}) x")
    }

    pub(super) fn clause(&self) -> String {
        if self.conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conds.join(" AND "))
        }
    }

    pub(super) fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

pub(super) const CALL_COLS: &str = "c.id, c.call_id, c.method, c.from_user, c.to_user, c.from_uri, c.to_uri, \
    c.request_uri, c.start_at, c.ringing_at, c.answer_at, c.end_at, c.duration_ms, c.talk_ms, c.state, \
    c.status_code, c.end_reason, c.sip_packets, c.rtp_packets, c.rtcp_packets, c.stream_count, c.mos, \
    c.folder, c.pcap, s.name, c.sip_oversized, c.sip_truncated, c.encrypted_signalling, c.encap";

fn u(v: i64) -> u64 {
    v.max(0) as u64
}

pub(super) fn call_row(r: &Row) -> CallRow {
    let t = |i: usize| r.get::<_, Option<SystemTime>>(i).map(ns);
    CallRow {
        id: r.get(0),
        call_id: r.get(1),
        method: r.get(2),
        from_user: r.get(3),
        to_user: r.get(4),
        from_uri: r.get(5),
        to_uri: r.get(6),
        request_uri: r.get(7),
        start_ns: t(8).unwrap_or(0),
        ringing_ns: t(9),
        answer_ns: t(10),
        end_ns: t(11).unwrap_or(0),
        duration_ms: u(r.get(12)),
        talk_ms: r.get::<_, Option<i64>>(13).map(u),
        state: r.get(14),
        status_code: r.get::<_, Option<i16>>(15).map(|c| c.max(0) as u16),
        end_reason: r.get(16),
        sip_packets: u(r.get(17)),
        rtp_packets: u(r.get(18)),
        rtcp_packets: u(r.get(19)),
        stream_count: u(i64::from(r.get::<_, i16>(20))),
        mos: r.get::<_, Option<f32>>(21).map(f64::from),
        folder: r.get(22),
        pcap: r.get(23),
        sensor: Some(r.get(24)),
        sip_oversized: u(r.get(25)),
        sip_truncated: u(r.get(26)),
        encrypted_signalling: r.get(27),
        outer_path: r.get::<_, Option<String>>(28).unwrap_or_default(),
    }
}

pub(super) fn order(q: &CallQuery) -> String {
    let dir = if q.descending { "DESC" } else { "ASC" };
    if q.ip.is_some() && q.sort == SortKey::Start {
        // The same order (call_start is the call's start, id its id) as
        // call_ips's index gives it: the planner does not know they are
        // equal, since the join is by id alone.
        return format!("i.call_start {dir}, i.id {dir}");
    }
    let col = match q.sort {
        SortKey::Start => "c.start_at",
        SortKey::Duration => "c.duration_ms",
        SortKey::Mos => "c.mos",
        SortKey::From => "c.from_user",
        SortKey::To => "c.to_user",
        SortKey::State => "c.state",
    };
    format!("{col} {dir}, c.id {dir}")
}

impl Hub {
    /// One page of calls of every sensor matching `q` and `h`.
    pub async fn search(&self, q: &CallQuery, h: &HubFilter) -> Result<CallPage, AppError> {
        let w = Where::new(q, h);
        let (from, clause) = (w.from(), w.clause());
        let sql = format!(
            "SELECT {CALL_COLS} FROM {from} JOIN voxtap.sensors s ON s.id = c.sensor{clause} \
             ORDER BY {} LIMIT {} OFFSET {}",
            order(q),
            q.limit.clamp(1, 1000),
            q.offset
        );
        let count_sql = w.count_sql();
        // The page and the count on two connections: the server answers
        // them at once rather than one after the other on one.
        let (c, counter) = (self.client().await?, self.client().await?);
        let refs = w.refs();
        let (rows, total) =
            tokio::try_join!(c.query(&sql, &refs), counter.query_one(&count_sql, &refs))
                .map_err(unavailable)?;
        let total: i64 = total.get(0);
        Ok(CallPage {
            total: u(total),
            total_capped: total >= COUNT_CAP,
            rows: rows.iter().map(call_row).collect(),
        })
    }

    pub async fn count_calls(&self) -> Result<u64, AppError> {
        let c = self.client().await?;
        // The planner's estimate: an exact count of a billion rows is a
        // table scan.
        let r = c
            .query_one(
                "SELECT coalesce(sum(greatest(reltuples, 0)), 0)::bigint FROM pg_class k \
                 JOIN pg_inherits i ON i.inhrelid = k.oid \
                 WHERE i.inhparent = 'voxtap.calls'::regclass",
                &[],
            )
            .await
            .map_err(unavailable)?;
        Ok(u(r.get(0)))
    }

    pub async fn call(&self, id: i64) -> Result<Option<CallRow>, AppError> {
        let c = self.client().await?;
        let sql = format!(
            "SELECT {CALL_COLS} FROM voxtap.calls c JOIN voxtap.sensors s ON s.id = c.sensor WHERE c.id = $1"
        );
        let row = c.query_opt(&sql, &[&id]).await.map_err(unavailable)?;
        Ok(row.as_ref().map(call_row))
    }

    /// A call with its SIP, streams, DTMF and legs.
    pub async fn call_detail(&self, id: i64) -> Result<Option<CallDetail>, AppError> {
        let Some(call) = self.call(id).await? else {
            return Ok(None);
        };
        let c = self.client().await?;
        let key = "call_id = $1 AND sensor = (SELECT id FROM voxtap.sensors WHERE name = $2) AND call_start = $3";
        let start = time(call.start_ns);
        let sensor = call.sensor.clone().unwrap_or_default();
        let args: [&(dyn ToSql + Sync); 3] = [&call.call_id, &sensor, &start];
        let streams = c
            .query(
                &format!(
                    "SELECT ordinal, ssrc, src_ip, src_port, dst_ip, dst_port, payload_type, codec, first_at, \
                     last_at, packets, expected, lost, out_of_order, duplicates, jitter_ms, max_jitter_ms, \
                     max_delta_ms, ptime_ms, rtcp_reports, rtcp_fraction_lost, rtcp_cumulative_lost, \
                     rtcp_jitter_ms, mos, decoded, audio_reason FROM voxtap.streams WHERE {key} ORDER BY ordinal"
                ),
                &args,
            )
            .await
            .map_err(unavailable)?;
        let sip = c
            .query_opt(
                &format!("SELECT messages::text, dtmf::text FROM voxtap.call_sip WHERE {key}"),
                &args,
            )
            .await
            .map_err(unavailable)?;
        let (sip, dtmf) = match sip {
            Some(r) => (
                sip_rows(&r.get::<_, String>(0)),
                dtmf_rows(&r.get::<_, String>(1)),
            ),
            None => (Vec::new(), Vec::new()),
        };
        let legs = self.legs(&c, &call).await?;
        let fax = c
            .query(
                &format!(
                    "SELECT src, dst, first_at, last_at, packets, expected, lost \
                     FROM voxtap.call_fax WHERE {key} ORDER BY ordinal"
                ),
                &args,
            )
            .await
            .map_err(unavailable)?
            .iter()
            .map(fax_row)
            .collect();
        let fax_ns = c
            .query_one("SELECT fax_at FROM voxtap.calls WHERE id = $1", &[&id])
            .await
            .map_err(unavailable)?
            .get::<_, Option<SystemTime>>(0)
            .map(ns);
        Ok(Some(CallDetail {
            call,
            sip,
            streams: streams.iter().map(stream_row).collect(),
            dtmf,
            legs,
            fax_ns,
            fax,
        }))
    }

    /// The call's legs, both ways, as central ids.
    async fn legs(
        &self,
        c: &tokio_postgres::Client,
        call: &CallRow,
    ) -> Result<Vec<LegRow>, AppError> {
        let start = time(call.start_ns);
        let sensor = call.sensor.clone().unwrap_or_default();
        let rows = c
            .query(
                "WITH me AS (SELECT id FROM voxtap.sensors WHERE name = $2), \
                 l AS (SELECT other_call_id AS cid, other_start AS st, method, confidence, detail FROM voxtap.legs \
                       WHERE call_id = $1 AND sensor = (SELECT id FROM me) AND call_start = $3 \
                       UNION SELECT call_id, call_start, method, confidence, detail FROM voxtap.legs \
                       WHERE other_call_id = $1 AND sensor = (SELECT id FROM me) AND other_start = $3) \
                 SELECT c.id, l.method, l.confidence, l.detail FROM l JOIN voxtap.calls c \
                   ON c.call_id = l.cid AND c.start_at = l.st AND c.sensor = (SELECT id FROM me) \
                 ORDER BY c.id",
                &[&call.call_id, &sensor, &start],
            )
            .await
            .map_err(unavailable)?;
        Ok(rows
            .iter()
            .map(|r| LegRow {
                other_call: r.get(0),
                method: r.get(1),
                confidence: r.get::<_, Option<f32>>(2).map(f64::from),
                detail: r.get(3),
            })
            .collect())
    }
}

fn addr(ip: Option<IpAddr>, port: Option<i32>) -> String {
    match ip {
        Some(ip) => SocketAddr::new(ip, port.unwrap_or(0).clamp(0, 65535) as u16).to_string(),
        None => String::new(),
    }
}

fn stream_row(r: &Row) -> StreamRow {
    let f = |i: usize| f64::from(r.get::<_, f32>(i));
    let fo = |i: usize| r.get::<_, Option<f32>>(i).map(f64::from);
    let t = |i: usize| r.get::<_, Option<SystemTime>>(i).map(ns);
    StreamRow {
        id: i64::from(r.get::<_, i16>(0)),
        ssrc: r.get::<_, i64>(1) as u32,
        src: addr(r.get(2), r.get(3)),
        dst: addr(r.get(4), r.get(5)),
        payload_type: r.get::<_, i16>(6).clamp(0, 255) as u8,
        codec: r.get(7),
        first_ns: t(8),
        last_ns: t(9),
        packets: u(r.get(10)),
        expected: u(r.get(11)),
        lost: r.get(12),
        out_of_order: u(r.get(13)),
        duplicates: u(r.get(14)),
        jitter_ms: f(15),
        max_jitter_ms: f(16),
        max_delta_ms: f(17),
        ptime_ms: fo(18),
        rtcp_reports: r.get::<_, i32>(19).max(0) as u32,
        rtcp_fraction_lost: r.get::<_, Option<i16>>(20).map(|v| v.clamp(0, 255) as u8),
        rtcp_cumulative_lost: r.get(21),
        rtcp_jitter_ms: fo(22),
        mos: fo(23),
        audio_decodable: r.get(24),
        audio_reason: r.get(25),
    }
}

fn fax_row(r: &Row) -> FaxRow {
    let t = |i: usize| r.get::<_, SystemTime>(i);
    FaxRow {
        src: r.get(0),
        dst: r.get(1),
        first_ns: ns(t(2)),
        last_ns: ns(t(3)),
        packets: u(r.get(4)),
        expected: u(r.get(5)),
        lost: r.get(6),
    }
}

fn sip_rows(json: &str) -> Vec<SipRow> {
    let v: Vec<serde_json::Value> = serde_json::from_str(json).unwrap_or_default();
    let s = |m: &serde_json::Value, k: &str| m[k].as_str().unwrap_or("").to_string();
    v.iter()
        .enumerate()
        .map(|(i, m)| SipRow {
            seq: i as u32,
            ts_ns: m["ts_ns"].as_u64().unwrap_or(0),
            src: s(m, "src"),
            dst: s(m, "dst"),
            transport: s(m, "transport"),
            summary: s(m, "summary"),
            text: s(m, "text"),
        })
        .collect()
}

fn dtmf_rows(json: &str) -> Vec<DtmfRow> {
    let v: Vec<serde_json::Value> = serde_json::from_str(json).unwrap_or_default();
    v.iter()
        .map(|m| DtmfRow {
            ts_ns: m["ts_ns"].as_u64().unwrap_or(0),
            digit: m["digit"].as_str().unwrap_or("").to_string(),
            duration_ms: m["duration_ms"].as_u64().map(|d| d as u32),
            source: m["source"].as_str().unwrap_or("").to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conds(party: &str) -> (String, usize) {
        let q = CallQuery {
            party: Some(party.into()),
            ..Default::default()
        };
        let w = Where::new(&q, &HubFilter::default());
        (w.clause(), w.params.len())
    }

    #[test]
    fn party_terms() {
        assert_eq!(
            conds("4930123").0,
            " WHERE (c.from_user = $1 OR c.to_user = $1 OR c.ruri_user = $1)"
        );
        assert!(conds("4930*").0.contains("c.from_user LIKE $1"));
        assert!(conds("*0123").0.contains("reverse(c.to_user) LIKE $1"));
        assert!(conds("sip:bob@x").0.contains("c.from_uri = $1"));
        assert_eq!(like_escape("a_b%"), "a\\_b\\%");
    }

    #[test]
    fn ip_search_ranges_over_call_ips() {
        let mut q = CallQuery {
            ip: Some("192.0.2.1".parse().unwrap()),
            start_from_ns: Some(1),
            descending: true,
            ..Default::default()
        };
        let w = Where::new(&q, &HubFilter::default());
        assert_eq!(
            w.clause(),
            " WHERE c.start_at >= $1 AND i.call_start >= $1 AND i.ip = $2::inet"
        );
        assert!(
            w.from()
                .starts_with("voxtap.call_ips i JOIN voxtap.calls c")
        );
        // Nothing but the window and the address: the count skips calls.
        assert!(
            w.count_sql().contains(
                "FROM voxtap.call_ips i WHERE i.call_start >= $1 AND i.ip = $2::inet LIMIT"
            )
        );
        assert_eq!(order(&q), "i.call_start DESC, i.id DESC");
        q.state = Some("failed".into());
        let w = Where::new(&q, &HubFilter::default());
        assert!(w.count_sql().contains("JOIN voxtap.calls c ON c.id = i.id"));
    }
}
