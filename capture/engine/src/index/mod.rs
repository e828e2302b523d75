//! The call index: one SQLite file (`index.sqlite`, WAL mode) beside the call
//! folders, written as calls end (by `import`, later by the live sensor) and
//! read by the web UI.
//!
//! Paths stored in it (`folder`, `pcap`) are relative to the directory that
//! holds the index file, so a data directory can be moved as a whole.

mod noncall;
mod recent;
mod record;
mod rollup;
mod schema;

pub use noncall::{MediaStreamRow, PingRow, RegistrationQuery, RegistrationRow, SignallingTotals};
pub use recent::RecentCall;
pub use rollup::COLS as ROLLUP_COLS;
pub use rollup::{
    Bucket, Counts, DashQuery, MOS_BOUNDS, NER_CODES, NOTABLE_CODES, TrunkRule, bad_prefix,
};

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{
    Connection, OptionalExtension, Params, Row, params, params_from_iter, types::Value,
};
use serde::Serialize;
use thiserror::Error;

use crate::calls::Call;

/// The file name of the index inside a data directory.
pub const INDEX_FILE: &str = "index.sqlite";

#[derive(Debug, Error)]
pub enum IndexError {
    #[error("call index {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "call index {path} has schema version {found}, newer than this voxtap knows ({known}); upgrade voxtap"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: usize,
    },
}

/// Where CallWriter put a call's files, relative to the index's directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallFiles {
    /// The call's folder (holding call.pcap, sip.txt, later WAVs).
    pub folder: Option<String>,
    pub pcap: Option<String>,
}

impl CallFiles {
    /// A folder holding `call.pcap`, as `CallWriter` writes it.
    pub fn folder(folder: &str) -> Self {
        CallFiles {
            folder: Some(folder.to_string()),
            pcap: Some(format!("{folder}/call.pcap")),
        }
    }
}

/// One call as the list shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CallRow {
    pub id: i64,
    pub call_id: String,
    pub method: String,
    pub from_user: String,
    pub to_user: String,
    pub from_uri: String,
    pub to_uri: String,
    pub request_uri: String,
    pub start_ns: u64,
    pub ringing_ns: Option<u64>,
    pub answer_ns: Option<u64>,
    pub end_ns: u64,
    pub duration_ms: u64,
    pub talk_ms: Option<u64>,
    pub state: String,
    pub status_code: Option<u16>,
    pub end_reason: Option<String>,
    pub sip_packets: u64,
    pub rtp_packets: u64,
    pub rtcp_packets: u64,
    pub stream_count: u64,
    pub mos: Option<f64>,
    pub folder: Option<String>,
    pub pcap: Option<String>,
    /// SIP messages past the limits a SIP stack takes, attributed anyway.
    pub sip_oversized: u64,
    /// SIP messages whose text was not kept (over the call's SIP budget):
    /// the index lacks their text, the call's pcap has them.
    pub sip_truncated: u64,
    /// '' for SIP in the clear, else how it was protected (calls.csv's
    /// `encrypted_signalling`).
    pub encrypted_signalling: String,
    /// The encapsulations its SIP came in; empty when none.
    pub outer_path: String,
    /// The fleet sensor that saw the call, when it comes from the central
    /// index (voxtap-web's hub); None in a sensor's own index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sensor: Option<String>,
}

const CALL_COLS: &str = "id, call_id, method, from_user, to_user, from_uri, to_uri, request_uri, \
    start_ns, ringing_ns, answer_ns, end_ns, duration_ms, talk_ms, state, status_code, end_reason, \
    sip_packets, rtp_packets, rtcp_packets, stream_count, mos, folder, pcap, sip_oversized, sip_truncated, encrypted_signalling, outer_path";

fn u(v: i64) -> u64 {
    v.max(0) as u64
}

/// A stream's rated payload type, whether this build decodes its codec
/// (None when no SDP or static type names the payload type: the media
/// step may still guess it) and why not.
pub(crate) fn audio_of(
    call: &Call,
    s: &crate::calls::Stream,
    payload_types: &[u8],
) -> (u8, Option<bool>, Option<String>) {
    let t = crate::media::codec::StreamCodecs::for_stream(call, s);
    let pt = t
        .rated_payload_type(payload_types.iter().copied())
        .unwrap_or(0);
    match t.get(pt) {
        Some((kind, _)) => {
            let why = crate::media::codec::undecodable_reason(kind, pt, true);
            (pt, Some(why.is_none()), why)
        }
        None => {
            let why = crate::media::codec::undecodable_reason(
                voxtap_codecs::CodecKind::Unsupported,
                pt,
                false,
            );
            (pt, None, why)
        }
    }
}

impl CallRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(CallRow {
            id: r.get(0)?,
            call_id: r.get(1)?,
            method: r.get(2)?,
            from_user: r.get(3)?,
            to_user: r.get(4)?,
            from_uri: r.get(5)?,
            to_uri: r.get(6)?,
            request_uri: r.get(7)?,
            start_ns: u(r.get(8)?),
            ringing_ns: r.get::<_, Option<i64>>(9)?.map(u),
            answer_ns: r.get::<_, Option<i64>>(10)?.map(u),
            end_ns: u(r.get(11)?),
            duration_ms: u(r.get(12)?),
            talk_ms: r.get::<_, Option<i64>>(13)?.map(u),
            state: r.get(14)?,
            status_code: r.get(15)?,
            end_reason: r.get(16)?,
            sip_packets: u(r.get(17)?),
            rtp_packets: u(r.get(18)?),
            rtcp_packets: u(r.get(19)?),
            stream_count: u(r.get(20)?),
            mos: r.get(21)?,
            folder: r.get(22)?,
            pcap: r.get(23)?,
            sip_oversized: u(r.get(24)?),
            sip_truncated: u(r.get(25)?),
            encrypted_signalling: r.get(26)?,
            outer_path: r.get(27)?,
            sensor: None,
        })
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SipRow {
    pub seq: u32,
    pub ts_ns: u64,
    pub src: String,
    pub dst: String,
    pub transport: String,
    pub summary: String,
    pub text: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StreamRow {
    pub id: i64,
    pub ssrc: u32,
    pub src: String,
    pub dst: String,
    pub payload_type: u8,
    pub codec: String,
    pub first_ns: Option<u64>,
    pub last_ns: Option<u64>,
    pub packets: u64,
    pub expected: u64,
    pub lost: i64,
    pub out_of_order: u64,
    pub duplicates: u64,
    pub jitter_ms: f64,
    pub max_jitter_ms: f64,
    pub max_delta_ms: f64,
    pub ptime_ms: Option<f64>,
    pub rtcp_reports: u32,
    pub rtcp_fraction_lost: Option<u8>,
    pub rtcp_cumulative_lost: Option<i32>,
    pub rtcp_jitter_ms: Option<f64>,
    pub mos: Option<f64>,
    /// Whether this build decodes the stream's codec (None: not known,
    /// e.g. a payload type no SDP named, or a row indexed before).
    pub audio_decodable: Option<bool>,
    /// Why its audio is not decoded.
    pub audio_reason: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DtmfRow {
    pub ts_ns: u64,
    pub digit: String,
    pub duration_ms: Option<u32>,
    pub source: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LegRow {
    pub other_call: i64,
    pub method: String,
    pub confidence: Option<f64>,
    /// Why the legs were linked (header value, SSRC and timing...).
    pub detail: Option<String>,
}

/// One direction of a T.38 fax.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FaxRow {
    pub src: String,
    pub dst: String,
    pub first_ns: u64,
    pub last_ns: u64,
    pub packets: u64,
    pub expected: u64,
    pub lost: i64,
}

impl SipRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(SipRow {
            seq: r.get(0)?,
            ts_ns: u(r.get(1)?),
            src: r.get(2)?,
            dst: r.get(3)?,
            transport: r.get(4)?,
            summary: r.get(5)?,
            text: r.get(6)?,
        })
    }
}

impl StreamRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(StreamRow {
            id: r.get(0)?,
            ssrc: r.get(1)?,
            src: r.get(2)?,
            dst: r.get(3)?,
            payload_type: r.get(4)?,
            codec: r.get(5)?,
            first_ns: r.get::<_, Option<i64>>(6)?.map(u),
            last_ns: r.get::<_, Option<i64>>(7)?.map(u),
            packets: u(r.get(8)?),
            expected: u(r.get(9)?),
            lost: r.get(10)?,
            out_of_order: u(r.get(11)?),
            duplicates: u(r.get(12)?),
            jitter_ms: r.get(13)?,
            max_jitter_ms: r.get(14)?,
            max_delta_ms: r.get(15)?,
            ptime_ms: r.get(16)?,
            rtcp_reports: r.get(17)?,
            rtcp_fraction_lost: r.get(18)?,
            rtcp_cumulative_lost: r.get(19)?,
            rtcp_jitter_ms: r.get(20)?,
            mos: r.get(21)?,
            audio_decodable: r.get(22)?,
            audio_reason: r.get(23)?,
        })
    }
}

impl DtmfRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(DtmfRow {
            ts_ns: u(r.get(0)?),
            digit: r.get(1)?,
            duration_ms: r.get(2)?,
            source: r.get(3)?,
        })
    }
}

impl LegRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(LegRow {
            other_call: r.get(0)?,
            method: r.get(1)?,
            confidence: r.get(2)?,
            detail: r.get(3)?,
        })
    }
}

/// Everything the call page shows.
#[derive(Clone, Debug, Serialize)]
pub struct CallDetail {
    pub call: CallRow,
    pub sip: Vec<SipRow>,
    pub streams: Vec<StreamRow>,
    pub dtmf: Vec<DtmfRow>,
    pub legs: Vec<LegRow>,
    /// When an offer/answer turned the call into T.38 fax, and its UDPTL
    /// streams.
    pub fax_ns: Option<u64>,
    pub fax: Vec<FaxRow>,
}

/// Sort orders the list offers (a closed set: column names never come
/// from the request).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortKey {
    #[default]
    Start,
    Duration,
    Mos,
    From,
    To,
    State,
}

impl SortKey {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "start" => SortKey::Start,
            "duration" => SortKey::Duration,
            "mos" => SortKey::Mos,
            "from" => SortKey::From,
            "to" => SortKey::To,
            "state" => SortKey::State,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::Start => "start",
            SortKey::Duration => "duration",
            SortKey::Mos => "mos",
            SortKey::From => "from",
            SortKey::To => "to",
            SortKey::State => "state",
        }
    }

    fn column(self) -> &'static str {
        match self {
            SortKey::Start => "start_ns",
            SortKey::Duration => "duration_ms",
            SortKey::Mos => "mos",
            SortKey::From => "from_user",
            SortKey::To => "to_user",
            SortKey::State => "state",
        }
    }
}

/// A call search. Empty fields do not filter.
#[derive(Clone, Debug, Default)]
pub struct CallQuery {
    /// Calls starting at or after this (ns since the epoch).
    pub start_from_ns: Option<u64>,
    /// Calls starting before this.
    pub start_to_ns: Option<u64>,
    /// A number or URI: exact, or a prefix when it ends with `*`. Matches
    /// From/To user and URI, the request URI and its user part.
    pub party: Option<String>,
    pub call_id: Option<String>,
    pub ip: Option<IpAddr>,
    pub state: Option<String>,
    pub mos_min: Option<f64>,
    pub mos_max: Option<f64>,
    pub duration_min_ms: Option<u64>,
    pub duration_max_ms: Option<u64>,
    /// Calls with RTP loss of at least this many percent in their worst
    /// direction: lost / expected summed over the streams sent from the
    /// first SIP message's source IP, and over the others (the hub's
    /// `loss_fwd` / `loss_rev`, so both searches find the same calls).
    pub loss_min_pct: Option<f64>,
    /// Calls of this trunk group ('' = none matched).
    pub trunk: Option<String>,
    /// Calls whose main stream has this codec.
    pub codec: Option<String>,
    /// `INVITE` (the dashboards count only INVITE dialogs).
    pub method: Option<String>,
    pub sort: SortKey,
    pub descending: bool,
    pub limit: u32,
    pub offset: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct CallPage {
    /// Matching calls in all pages, counted up to `COUNT_CAP`.
    pub total: u64,
    pub total_capped: bool,
    pub rows: Vec<CallRow>,
}

/// Counting every match of a broad filter over millions of rows costs more
/// than the page itself; past this the UI says "10000+".
pub(crate) const COUNT_CAP: u64 = 10_000;

/// One line of the access log.
#[derive(Clone, Debug, Serialize)]
pub struct AccessEntry {
    pub ts_ns: u64,
    pub user: String,
    pub remote: String,
    pub action: String,
    pub call: Option<i64>,
    pub detail: String,
}

/// The condition of [`CallQuery::loss_min_pct`] on `calls`, `p` the
/// threshold's parameter. Streams are split by direction as the central
/// mapping does (the IP of `ip:port`, IPv6 brackets kept); a call without
/// SIP messages or without expected packets never matches.
fn worst_loss_at_least(p: &str) -> String {
    const IP: &str = "rtrim(rtrim({}, '0123456789'), ':')";
    let ip = |col: &str| IP.replace("{}", col);
    format!(
        "EXISTS (SELECT {} = (SELECT {} FROM sip_messages m WHERE m.call = calls.id \
         ORDER BY m.seq LIMIT 1) AS fwd FROM streams s WHERE s.call = calls.id GROUP BY fwd \
         HAVING fwd IS NOT NULL AND sum(s.expected) > 0 \
         AND sum(max(s.lost, 0)) * 100.0 >= {p} * sum(s.expected))",
        ip("s.src"),
        ip("m.src"),
    )
}

pub struct Index {
    conn: Connection,
    path: PathBuf,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The user part of a SIP URI (`sip:1234@host;x` -> `1234`).
fn uri_user(uri: &str) -> Option<&str> {
    let rest = uri
        .strip_prefix("sips:")
        .or_else(|| uri.strip_prefix("sip:"))
        .or_else(|| uri.strip_prefix("tel:"))?;
    let end = rest.find(['@', ';', '?', '>']).unwrap_or(rest.len());
    let user = &rest[..end];
    (!user.is_empty()).then_some(user)
}

impl Index {
    /// Open (creating if needed) the index at `path` and bring its schema up
    /// to date.
    pub fn open(path: &Path) -> Result<Index, IndexError> {
        let err = |source| IndexError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        // WAL: the web UI reads while the sensor writes. NORMAL sync is
        // durable across application crashes, and a power loss can only
        // lose the last transactions (the call folders are on disk anyway).
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        // A writer holding the lock for a batch must not make readers fail.
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        let mut idx = Index {
            conn,
            path: path.to_path_buf(),
        };
        idx.migrate()?;
        Ok(idx)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self) -> impl FnOnce(rusqlite::Error) -> IndexError + '_ {
        move |source| IndexError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// The schema version (number of migrations applied).
    pub fn schema_version(&self) -> Result<i64, IndexError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(self.err())
    }

    fn migrate(&mut self) -> Result<(), IndexError> {
        let found = self.schema_version()?;
        if found > schema::MIGRATIONS.len() as i64 {
            return Err(IndexError::TooNew {
                path: self.path.clone(),
                found,
                known: schema::MIGRATIONS.len(),
            });
        }
        let path = self.path.clone();
        let err = |source| IndexError::Sqlite {
            path: path.clone(),
            source,
        };
        for (n, sql) in schema::MIGRATIONS.iter().enumerate().skip(found as usize) {
            // Each migration and its version bump commit together, so a
            // crash leaves the schema at a known version.
            let tx = self.conn.transaction().map_err(err)?;
            tx.execute_batch(sql).map_err(err)?;
            tx.pragma_update(None, "user_version", (n + 1) as i64)
                .map_err(err)?;
            tx.commit().map_err(err)?;
            tracing::info!(index = %self.path.display(), version = n + 1, "call index schema migrated");
        }
        // Calls indexed before the rollups existed (migration 7) are added
        // to them once.
        if found > 0 && found < 7 && schema::MIGRATIONS.len() >= 7 {
            self.rebuild_rollups()?;
        }
        Ok(())
    }

    /// Record one call; see [`Index::record_calls`].
    pub fn record_call(&mut self, call: &Call, files: &CallFiles) -> Result<i64, IndexError> {
        Ok(self.record_calls(&[(call, files.clone())])?[0])
    }

    /// Record a batch of ended calls in one transaction (one fsync per batch,
    /// not per call). Returns their row ids (0 for a media-only record, which
    /// has no `calls` row: its streams are in `media_streams`).
    pub fn record_calls(&mut self, calls: &[(&Call, CallFiles)]) -> Result<Vec<i64>, IndexError> {
        let path = self.path.clone();
        let err = |source| IndexError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let rows = record::insert_calls(&tx, calls).map_err(err)?;
        let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
        record::insert_legs(&tx, calls, &ids).map_err(err)?;
        rollup::add_new_calls(&tx, &rows).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(ids)
    }

    /// Replace the registrations and pings with the signalling tables as
    /// they are now (an import's end, a sensor's snapshot).
    pub fn record_signalling(
        &mut self,
        s: &crate::signalling::SignallingSnapshot,
    ) -> Result<(), IndexError> {
        let path = self.path.clone();
        let err = |source| IndexError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        record::replace_signalling(&tx, s).map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Set a call's MOS (worst stream) once the media work has computed it.
    pub fn set_call_mos(&mut self, id: i64, mos: Option<f64>) -> Result<(), IndexError> {
        let path = self.path.clone();
        let err = |source| IndexError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        rollup::move_mos(&tx, id, mos).map_err(err)?;
        tx.execute("UPDATE calls SET mos = ?2 WHERE id = ?1", params![id, mos])
            .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Store the trunk groups calls are classified by; when they differ
    /// from the stored ones, reclassify every call and rebuild the rollups
    /// (one transaction). Returns whether they changed.
    pub fn set_trunks(&mut self, rules: &[TrunkRule]) -> Result<bool, IndexError> {
        let path = self.path.clone();
        let err = |source| IndexError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let changed = rollup::set_trunks(&tx, rules).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(changed)
    }

    /// The trunk groups stored in the index, in the order they are matched.
    pub fn trunks(&self) -> Result<Vec<TrunkRule>, IndexError> {
        rollup::stored_trunks(&self.conn).map_err(self.err())
    }

    /// Recompute every call's trunk and the rollups from the calls table.
    pub fn rebuild_rollups(&mut self) -> Result<(), IndexError> {
        let path = self.path.clone();
        let err = |source| IndexError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        rollup::rebuild(&tx).map_err(err)?;
        tx.commit().map_err(err)
    }

    /// The dashboard's buckets (from the per-minute rollups).
    pub fn dashboard(&self, q: &DashQuery) -> Result<Vec<Bucket>, IndexError> {
        rollup::dashboard(&self.conn, q).map_err(self.err())
    }

    /// The codecs of calls that started in [from_ns, to_ns).
    pub fn dashboard_codecs(&self, from_ns: u64, to_ns: u64) -> Result<Vec<String>, IndexError> {
        rollup::codecs(&self.conn, from_ns, to_ns).map_err(self.err())
    }

    pub fn count_calls(&self) -> Result<u64, IndexError> {
        self.conn
            .query_row("SELECT count(*) FROM calls", [], |r| r.get::<_, i64>(0))
            .map(u)
            .map_err(self.err())
    }

    /// The WHERE clause and its parameters for `q`.
    fn filter(q: &CallQuery) -> (String, Vec<Value>) {
        let mut conds: Vec<String> = Vec::new();
        let mut args: Vec<Value> = Vec::new();
        let arg = |v: Value, args: &mut Vec<Value>| {
            args.push(v);
            format!("?{}", args.len())
        };
        if let Some(t) = q.start_from_ns {
            let p = arg(Value::Integer(i(t)), &mut args);
            conds.push(format!("start_ns >= {p}"));
        }
        if let Some(t) = q.start_to_ns {
            let p = arg(Value::Integer(i(t)), &mut args);
            conds.push(format!("start_ns < {p}"));
        }
        if let Some(party) = q.party.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            match party.strip_suffix('*') {
                // A prefix as a range on the (value, call) key: an index
                // seek, where LIKE would scan.
                Some(prefix) if !prefix.is_empty() => {
                    let lo = arg(Value::Text(prefix.to_string()), &mut args);
                    let hi = arg(Value::Text(format!("{prefix}\u{10FFFF}")), &mut args);
                    conds.push(format!(
                        "id IN (SELECT call FROM call_parties WHERE value >= {lo} AND value < {hi})"
                    ));
                }
                _ => {
                    let p = arg(Value::Text(party.to_string()), &mut args);
                    conds.push(format!(
                        "id IN (SELECT call FROM call_parties WHERE value = {p})"
                    ));
                }
            }
        }
        if let Some(cid) = q
            .call_id
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let p = arg(Value::Text(cid.to_string()), &mut args);
            conds.push(format!("call_id = {p}"));
        }
        if let Some(ip) = q.ip {
            let p = arg(Value::Text(ip.to_string()), &mut args);
            conds.push(format!("id IN (SELECT call FROM call_ips WHERE ip = {p})"));
        }
        if let Some(state) = q.state.as_deref().filter(|s| !s.is_empty()) {
            let p = arg(Value::Text(state.to_string()), &mut args);
            conds.push(format!("state = {p}"));
        }
        for (col, v) in [
            ("trunk", &q.trunk),
            ("codec", &q.codec),
            ("method", &q.method),
        ] {
            if let Some(v) = v {
                let p = arg(Value::Text(v.clone()), &mut args);
                conds.push(format!("{col} = {p}"));
            }
        }
        if let Some(m) = q.mos_min {
            let p = arg(Value::Real(m), &mut args);
            conds.push(format!("mos >= {p}"));
        }
        if let Some(m) = q.mos_max {
            let p = arg(Value::Real(m), &mut args);
            conds.push(format!("mos <= {p}"));
        }
        if let Some(d) = q.duration_min_ms {
            let p = arg(Value::Integer(i(d)), &mut args);
            conds.push(format!("duration_ms >= {p}"));
        }
        if let Some(d) = q.duration_max_ms {
            let p = arg(Value::Integer(i(d)), &mut args);
            conds.push(format!("duration_ms <= {p}"));
        }
        if let Some(l) = q.loss_min_pct {
            let p = arg(Value::Real(l), &mut args);
            conds.push(worst_loss_at_least(&p));
        }
        let clause = if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        };
        (clause, args)
    }

    /// One page of calls matching `q`.
    pub fn search(&self, q: &CallQuery) -> Result<CallPage, IndexError> {
        let (clause, args) = Self::filter(q);
        let dir = if q.descending { "DESC" } else { "ASC" };
        // id breaks ties so paging is stable.
        let sql = format!(
            "SELECT {CALL_COLS} FROM calls{clause} ORDER BY {} {dir}, id {dir} LIMIT {} OFFSET {}",
            q.sort.column(),
            q.limit.clamp(1, 1000),
            q.offset
        );
        let rows = self.rows(&sql, params_from_iter(args.iter()), CallRow::from_row)?;
        let count_sql =
            format!("SELECT count(*) FROM (SELECT 1 FROM calls{clause} LIMIT {COUNT_CAP})");
        let total: i64 = self
            .conn
            .prepare_cached(&count_sql)
            .and_then(|mut s| s.query_row(params_from_iter(args.iter()), |r| r.get(0)))
            .map_err(self.err())?;
        let total = u(total);
        Ok(CallPage {
            total,
            total_capped: total >= COUNT_CAP,
            rows,
        })
    }

    /// Every call matching `q` (its limit and offset ignored), in its
    /// order, one at a time to `each` until it returns false: an export
    /// streams them without holding the result in memory.
    pub fn scan_calls(
        &self,
        q: &CallQuery,
        mut each: impl FnMut(CallRow) -> bool,
    ) -> Result<(), IndexError> {
        let (clause, args) = Self::filter(q);
        let dir = if q.descending { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT {CALL_COLS} FROM calls{clause} ORDER BY {} {dir}, id {dir}",
            q.sort.column()
        );
        let mut st = self.conn.prepare(&sql).map_err(self.err())?;
        let mut rows = st
            .query(params_from_iter(args.iter()))
            .map_err(self.err())?;
        while let Some(r) = rows.next().map_err(self.err())? {
            if !each(CallRow::from_row(r).map_err(self.err())?) {
                break;
            }
        }
        Ok(())
    }

    pub fn call(&self, id: i64) -> Result<Option<CallRow>, IndexError> {
        self.conn
            .query_row(
                &format!("SELECT {CALL_COLS} FROM calls WHERE id = ?1"),
                [id],
                CallRow::from_row,
            )
            .optional()
            .map_err(self.err())
    }

    /// A call with its SIP messages, streams, DTMF and linked legs.
    pub fn call_detail(&self, id: i64) -> Result<Option<CallDetail>, IndexError> {
        let Some(call) = self.call(id)? else {
            return Ok(None);
        };
        Ok(Some(CallDetail {
            call,
            sip: self.rows(
                "SELECT seq, ts_ns, src, dst, transport, summary, text FROM sip_messages WHERE call = ?1 ORDER BY seq",
                [id],
                SipRow::from_row,
            )?,
            streams: self.rows(
                "SELECT id, ssrc, src, dst, payload_type, codec, first_ns, last_ns, packets, expected, lost, \
                 out_of_order, duplicates, jitter_ms, max_jitter_ms, max_delta_ms, ptime_ms, rtcp_reports, \
                 rtcp_fraction_lost, rtcp_cumulative_lost, rtcp_jitter_ms, mos, audio_decodable, audio_reason \
                 FROM streams WHERE call = ?1 ORDER BY id",
                [id],
                StreamRow::from_row,
            )?,
            dtmf: self.rows(
                "SELECT ts_ns, digit, duration_ms, source FROM dtmf WHERE call = ?1 ORDER BY ts_ns",
                [id],
                DtmfRow::from_row,
            )?,
            legs: self.rows(
                "SELECT other_call, method, confidence, detail FROM legs WHERE call = ?1 \
                 UNION SELECT call, method, confidence, detail FROM legs WHERE other_call = ?1",
                [id],
                LegRow::from_row,
            )?,
            fax_ns: self
                .conn
                .query_row("SELECT turned_ns FROM fax WHERE call = ?1", [id], |r| {
                    r.get::<_, i64>(0)
                })
                .optional()
                .map_err(self.err())?
                .map(u),
            fax: self.rows(
                "SELECT src, dst, first_ns, last_ns, packets, expected, lost FROM fax_streams \
                 WHERE call = ?1 ORDER BY first_ns",
                [id],
                |r| {
                    Ok(FaxRow {
                        src: r.get(0)?,
                        dst: r.get(1)?,
                        first_ns: u(r.get(2)?),
                        last_ns: u(r.get(3)?),
                        packets: u(r.get(4)?),
                        expected: u(r.get(5)?),
                        lost: r.get(6)?,
                    })
                },
            )?,
        }))
    }

    /// Every row `sql` selects with `args`, read by `row`.
    fn rows<T>(
        &self,
        sql: &str,
        args: impl Params,
        row: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, IndexError> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut s| s.query_map(args, row)?.collect())
            .map_err(self.err())
    }

    pub fn log_access(&mut self, e: &AccessEntry) -> Result<(), IndexError> {
        self.conn
            .execute(
                "INSERT INTO access_log (ts_ns, user, remote, action, call, detail) VALUES (?1,?2,?3,?4,?5,?6)",
                params![i(e.ts_ns), e.user, e.remote, e.action, e.call, e.detail],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// The latest access log entries, newest first.
    pub fn access_log(&self, limit: u32) -> Result<Vec<AccessEntry>, IndexError> {
        self.rows(
            "SELECT ts_ns, user, remote, action, call, detail FROM access_log ORDER BY id DESC LIMIT ?1",
            [limit],
            |r| {
                Ok(AccessEntry {
                    ts_ns: u(r.get(0)?),
                    user: r.get(1)?,
                    remote: r.get(2)?,
                    action: r.get(3)?,
                    call: r.get(4)?,
                    detail: r.get(5)?,
                })
            },
        )
    }

    /// Copy every call of another index (an import made into a sub-folder)
    /// into this one, prefixing its file paths with `folder_prefix` (the
    /// sub-folder's path relative to this index's directory). One
    /// transaction; returns the number of calls copied.
    pub fn absorb(&mut self, other: &Path, folder_prefix: &str) -> Result<u64, IndexError> {
        let path = self.path.clone();
        let err = |source| IndexError::Sqlite {
            path: path.clone(),
            source,
        };
        // Bring the other file to our schema first.
        drop(Index::open(other)?);
        self.conn
            .execute(
                "ATTACH DATABASE ?1 AS src",
                [other.to_string_lossy().as_ref()],
            )
            .map_err(err)?;
        let res = (|| -> rusqlite::Result<u64> {
            // IMMEDIATE: take the write lock (waiting the busy timeout) before
            // reading max(id); a deferred transaction that read first fails
            // with "database is locked" if another writer commits meanwhile.
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let offset: i64 =
                tx.query_row("SELECT coalesce(max(id), 0) FROM main.calls", [], |r| {
                    r.get(0)
                })?;
            let soffset: i64 =
                tx.query_row("SELECT coalesce(max(id), 0) FROM main.streams", [], |r| {
                    r.get(0)
                })?;
            let prefix = format!("{}/", folder_prefix.trim_end_matches('/'));
            let n = tx.execute(
                "INSERT INTO main.calls SELECT id + ?1, call_id, method, from_user, to_user, from_uri, to_uri, \
                     request_uri, start_ns, ringing_ns, answer_ns, end_ns, duration_ms, talk_ms, state, status_code, \
                     end_reason, sip_packets, rtp_packets, rtcp_packets, stream_count, mos, \
                     CASE WHEN folder IS NULL THEN NULL ELSE ?2 || folder END, \
                     CASE WHEN pcap IS NULL THEN NULL ELSE ?2 || pcap END, indexed_at, sip_oversized, sip_truncated, encrypted_signalling, outer_path, \
                     trunk, codec, one_way, capture_loss FROM src.calls",
                params![offset, prefix],
            )?;
            tx.execute(
                "INSERT INTO main.call_parties SELECT call + ?1, value FROM src.call_parties",
                [offset],
            )?;
            tx.execute(
                "INSERT INTO main.call_ips SELECT call + ?1, ip FROM src.call_ips",
                [offset],
            )?;
            tx.execute(
                "INSERT INTO main.sip_messages SELECT call + ?1, seq, ts_ns, src, dst, transport, summary, text FROM src.sip_messages",
                [offset],
            )?;
            tx.execute(
                "INSERT INTO main.streams SELECT id + ?2, call + ?1, ssrc, src, dst, payload_type, codec, first_ns, \
                 last_ns, packets, expected, lost, out_of_order, duplicates, jitter_ms, max_jitter_ms, max_delta_ms, \
                 ptime_ms, rtcp_reports, rtcp_fraction_lost, rtcp_cumulative_lost, rtcp_jitter_ms, mos, \
                 audio_decodable, audio_reason FROM src.streams",
                [offset, soffset],
            )?;
            tx.execute(
                "INSERT INTO main.legs (call, other_call, method, confidence, detail) \
                 SELECT call + ?1, other_call + ?1, method, confidence, detail FROM src.legs",
                [offset],
            )?;
            noncall::absorb(&tx, offset, &prefix)?;
            tx.execute(
                "INSERT INTO main.dtmf SELECT call + ?1, ts_ns, digit, duration_ms, source, stream + ?2 FROM src.dtmf",
                [offset, soffset],
            )?;
            tx.execute(
                "INSERT INTO main.quality SELECT call + ?1, stream + ?2, start_ns, end_ns, mos, r_factor, loss_pct, jitter_ms FROM src.quality",
                [offset, soffset],
            )?;
            // Classified by this index's trunks and added to its rollups.
            let ids: Vec<i64> = tx
                .prepare("SELECT id FROM main.calls WHERE id > ?1 ORDER BY id")?
                .query_map([offset], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            rollup::add_calls(&tx, &ids)?;
            tx.commit()?;
            Ok(n as u64)
        })();
        let detach = self.conn.execute("DETACH DATABASE src", []);
        let n = res.map_err(err)?;
        detach.map_err(err)?;
        Ok(n)
    }
}

#[cfg(test)]
mod rollup_tests;
#[cfg(test)]
mod tests;
