//! What the web's alert evaluator reads each few seconds: the calls that
//! ended recently (fetched incrementally by row id, so a tick costs the new
//! rows, not a rescan of the window) and the registration failure total.

use std::net::IpAddr;

use rusqlite::{Row, params};

use super::{Index, IndexError, i, u};

/// One ended call as the alert metrics need it.
#[derive(Clone, Debug, PartialEq)]
pub struct RecentCall {
    pub id: i64,
    pub method: String,
    pub state: String,
    pub status_code: Option<u16>,
    pub mos: Option<f64>,
    pub end_ns: u64,
    /// Every IP its SIP or media used (`call_ips`).
    pub ips: Vec<IpAddr>,
}

const COLUMNS: &str = "c.id, c.method, c.state, c.status_code, c.mos, c.end_ns, \
     (SELECT group_concat(ip, ' ') FROM call_ips WHERE call = c.id)";

fn recent_row(r: &Row<'_>) -> rusqlite::Result<RecentCall> {
    let ips: Option<String> = r.get(6)?;
    Ok(RecentCall {
        id: r.get(0)?,
        method: r.get(1)?,
        state: r.get(2)?,
        status_code: r.get::<_, Option<i64>>(3)?.map(|c| c as u16),
        mos: r.get(4)?,
        end_ns: u(r.get(5)?),
        ips: ips
            .unwrap_or_default()
            .split(' ')
            .filter_map(|s| s.parse().ok())
            .collect(),
    })
}

impl Index {
    /// The highest call row id (0 for an empty index).
    pub fn max_call_id(&self) -> Result<i64, IndexError> {
        self.conn
            .query_row("SELECT coalesce(max(id), 0) FROM calls", [], |r| r.get(0))
            .map_err(self.err())
    }

    /// Calls with `after < id <= upto` that ended at or after `ended_since_ns`
    /// (a range of the primary key: the rows added since the last look).
    pub fn calls_added(
        &self,
        after: i64,
        upto: i64,
        ended_since_ns: u64,
    ) -> Result<Vec<RecentCall>, IndexError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM calls c WHERE c.id > ?1 AND c.id <= ?2 AND c.end_ns >= ?3 ORDER BY c.id"
        );
        let mut st = self.conn.prepare_cached(&sql).map_err(self.err())?;
        let rows = st
            .query_map(params![after, upto, i(ended_since_ns)], recent_row)
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Calls up to row `upto` that started at or after `started_since_ns` and
    /// ended at or after `ended_since_ns` (the start-time index bounds the
    /// scan: the evaluator's first look, before it follows row ids).
    pub fn calls_ended_since(
        &self,
        upto: i64,
        started_since_ns: u64,
        ended_since_ns: u64,
    ) -> Result<Vec<RecentCall>, IndexError> {
        let sql = format!(
            // No ORDER BY: sorting by id made SQLite walk the primary key
            // (every row) instead of the start-time index.
            "SELECT {COLUMNS} FROM calls c INDEXED BY calls_start WHERE c.start_ns >= ?2 AND c.end_ns >= ?3 AND c.id <= ?1"
        );
        let mut st = self.conn.prepare_cached(&sql).map_err(self.err())?;
        let rows = st
            .query_map(
                params![upto, i(started_since_ns), i(ended_since_ns)],
                recent_row,
            )
            .map_err(self.err())?;
        let mut calls: Vec<RecentCall> = rows.collect::<Result<_, _>>().map_err(self.err())?;
        calls.sort_unstable_by_key(|c| c.id);
        Ok(calls)
    }

    /// REGISTER transactions refused or unanswered, summed over every
    /// binding (a counter the evaluator differences over its window).
    pub fn registration_failures_total(&self) -> Result<u64, IndexError> {
        self.conn
            .query_row(
                "SELECT coalesce(sum(failures), 0) + coalesce(sum(unanswered), 0) FROM registrations",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(u)
            .map_err(self.err())
    }
}
